//! Random policy directories and flows for the differential and metamorphic tests.
//!
//! A [`Config`] is a structured description of a policy directory that is valid by
//! construction: every cross reference (tier, profile, namespace) is an index taken modulo the
//! number of things it can point at, so shrinking (which drops tiers, profiles, endpoints,
//! rules) never breaks it. It renders to resources (`serde_json::Value`s), which are laid out
//! into files of block YAML, loaded, validated and resolved exactly as a directory would be.
//!
//! Labels, selectors, CIDRs and ports come from small vocabularies so that selectors match
//! often, network sets overlap endpoints and rule CIDRs, and flows land on the boundaries.
//! Addresses are documentation ranges only (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32); the `0.0.0.0/0` and `::/0` CIDRs are rule criteria, not addresses.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::option::{of, weighted};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value, json};

use portcullis::model::{Limits, Model, Settings, load, validate};
use portcullis::policy::eval::MIXED_FAMILIES_NOTE;
use portcullis::policy::{
    self, Decision, DefaultReason, Flow, LoggedRule, Resolved, TraceEntry, TraceSide, TraceStage,
    Verdict,
};
use portcullis::snapshot::{
    DefaultKind, FlowKey, FlowOutcome, FlowVerdict, LOGGED_CAPACITY, RuleId, RuleStage,
    SideVerdict, Snapshot,
};

// ---------------------------------------------------------------------------------------------
// Vocabularies

const KEYS: &[&str] = &["app", "role", "env"];
/// Label values; the empty value is legal and makes `has(k)` true with `k == ''` possible.
const LABEL_VALUES: &[&str] = &["a", "a", "b", "b", "c", ""];
const SELECTOR_VALUES: &[&str] = &["a", "b", "c"];
const NAMESPACES: &[&str] = &["ns1", "ns2", "default"];
const SERVICE_ACCOUNTS: &[&str] = &["sa1", "sa2"];
const SERVICE_ACCOUNT_SELECTORS: &[&str] = &[
    "projectcalico.org/name == 'sa1'",
    "has(projectcalico.org/name)",
    "projectcalico.org/name != 'sa2'",
];
/// Name stems chosen so that order ties are broken by byte-wise comparison in unobvious ways;
/// a two-digit index follows, so that no two stems make the same name.
const NAME_STEMS: &[&str] = &["a", "a-x", "b", "a1", "z"];
const TIER_ORDERS: &[Option<f64>] = &[
    None,
    Some(1.0),
    Some(10.0),
    Some(10.0),
    Some(100.0),
    Some(10.5),
    Some(-5.0),
    Some(1_000_000.0),
    Some(2_000_000.0),
];
const POLICY_ORDERS: &[Option<f64>] = &[
    None,
    None,
    Some(0.0),
    Some(5.0),
    Some(10.0),
    Some(10.0),
    Some(100.0),
    Some(20.0),
    Some(1000.0),
    Some(10.5),
    Some(-1.0),
];

/// Rule CIDRs (strictly masked or bare, as v3 requires) and, at the same index, a spelling
/// with host bits set that only v1 accepts (it normalises them). The last entry of each list
/// is the catch-all, which is valid in `nets` only.
const RULE_NETS_V4: &[(&str, &str)] = &[
    ("192.0.2.0/24", "192.0.2.77/24"),
    ("192.0.2.0/28", "192.0.2.5/28"),
    ("192.0.2.16/28", "192.0.2.17/28"),
    ("192.0.2.12/32", "192.0.2.12"),
    ("198.51.100.0/24", "198.51.100.9/24"),
    ("198.51.100.0/25", "198.51.100.100/25"),
    ("198.51.100.7", "198.51.100.7/32"),
    ("203.0.113.0/24", "203.0.113.1/24"),
    ("0.0.0.0/0", "0.0.0.0/0"),
];
const RULE_NETS_V6: &[(&str, &str)] = &[
    ("2001:db8::/32", "2001:db8::1/32"),
    ("2001:db8::/64", "2001:db8::5/64"),
    ("2001:db8::10/124", "2001:db8::1f/124"),
    ("2001:db8::12/128", "2001:db8::12"),
    ("2001:db8:1::/48", "2001:db8:1::9/48"),
    ("2001:db8:1::5", "2001:db8:1::5/128"),
    ("2001:db8::/120", "2001:db8::ff/120"),
    ("::/0", "::/0"),
];
/// Network set members: any parseable CIDR or IP, host bits allowed.
const SET_NETS: &[&str] = &[
    "198.51.100.0/24",
    "198.51.100.0/28",
    "198.51.100.5/24",
    "198.51.100.7",
    "192.0.2.0/28",
    "192.0.2.12/30",
    "203.0.113.0/25",
    "2001:db8:1::/48",
    "2001:db8::10/126",
    "2001:db8::/64",
    "2001:db8:1::5",
];
/// Kubernetes ipBlocks: a CIDR (host bits allowed) and excepts strictly inside it.
const IP_BLOCKS: &[(&str, &[&str])] = &[
    ("192.0.2.0/24", &["192.0.2.16/28"]),
    ("192.0.2.0/24", &[]),
    ("198.51.100.0/24", &["198.51.100.0/25"]),
    ("0.0.0.0/0", &["192.0.2.0/28", "198.51.100.0/24"]),
    ("192.0.2.77/24", &["192.0.2.0/28"]),
    ("2001:db8::/32", &["2001:db8::10/124"]),
    ("2001:db8::/64", &[]),
];
const FAILSAFE_NETS: &[&str] = &[
    "198.51.100.0/24",
    "192.0.2.5/28",
    "2001:db8::/64",
    "203.0.113.0/24",
];
const FAILSAFE_PORTS: &[u16] = &[22, 53, 67, 68, 80, 443, 8080];
const ENDPOINT_PORT_NAMES: &[&str] = &["http", "dns", "metrics"];
const RULE_PORT_NAMES: &[&str] = &["http", "dns", "metrics", "nope"];
const ENDPOINT_PORT_NUMBERS: &[u16] = &[53, 80, 8080, 8081, 9090];
const RULE_PORT_NUMBERS: &[u16] = &[1, 22, 53, 68, 80, 443, 8080, 8081, 65535];
const RULE_PORT_RANGES: &[&str] = &["1:1023", "1024:65535", "8080:8081", "50:60", "443:443"];
const ICMP_TYPES: &[u8] = &[0, 3, 8, 11, 128, 129, 254];
const ICMP_CODES: &[u8] = &[0, 1, 4];

/// Flow addresses besides the endpoints': set and CIDR boundaries, endpoint slots that may be
/// empty, and addresses in no entity at all, down to the ends of the address space (never
/// configured, but the classifier's tables must handle them).
const POOL_V4: &[&str] = &[
    "0.0.0.0",
    "255.255.255.255",
    "192.0.2.0",
    "192.0.2.10",
    "192.0.2.12",
    "192.0.2.13",
    "192.0.2.15",
    "192.0.2.16",
    "192.0.2.19",
    "192.0.2.31",
    "192.0.2.255",
    "198.51.100.0",
    "198.51.100.5",
    "198.51.100.7",
    "198.51.100.15",
    "198.51.100.16",
    "198.51.100.127",
    "198.51.100.128",
    "198.51.100.255",
    "203.0.113.0",
    "203.0.113.127",
    "203.0.113.128",
    "203.0.113.200",
];
const POOL_V6: &[&str] = &[
    "::",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:db8::",
    "2001:db8::f",
    "2001:db8::10",
    "2001:db8::12",
    "2001:db8::13",
    "2001:db8::1f",
    "2001:db8::20",
    "2001:db8::ff",
    "2001:db8::100",
    "2001:db8:0:1::1",
    "2001:db8:1::",
    "2001:db8:1::5",
    "2001:db8:1:ffff::1",
    "2001:db8:ffff::1",
];
/// Flow ports: every rule and endpoint port, its neighbours, and the ends of the range.
const FLOW_PORTS: &[u16] = &[
    0, 1, 2, 21, 22, 23, 49, 50, 52, 53, 54, 60, 61, 67, 68, 69, 79, 80, 81, 179, 442, 443, 444,
    1023, 1024, 5473, 6443, 8079, 8080, 8081, 8082, 9089, 9090, 9091, 40000, 65534, 65535,
];
const FLOW_ICMP_TYPES: &[u8] = &[
    0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 127, 128, 129, 130, 253, 254, 255,
];
const FLOW_ICMP_CODES: &[u8] = &[0, 1, 2, 3, 4, 5, 255];

/// Most endpoints a config has; endpoint `k` owns 192.0.2.(10+k) and/or 2001:db8::(0x10+k).
const MAX_ENDPOINTS: usize = 10;

// ---------------------------------------------------------------------------------------------
// The configuration description

pub type Labels = BTreeMap<&'static str, &'static str>;

#[derive(Debug, Clone)]
pub struct Config {
    /// Namespace resources: index into NAMESPACES and its labels (a namespace may be missing).
    pub namespaces: Vec<(usize, Labels)>,
    pub tiers: Vec<TierGen>,
    /// Declare the `default` tier explicitly (its order must be written), and whether to write
    /// its defaultAction.
    pub default_tier: Option<bool>,
    pub profiles: Vec<ProfileGen>,
    pub endpoints: Vec<EndpointGen>,
    pub sets: Vec<SetGen>,
    pub policies: Vec<PolicyGen>,
    pub felix: Option<FelixGen>,
    /// GatewayConfiguration unmatchedTrafficAction: Some(true) = Allow.
    pub gateway: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct TierGen {
    pub order: Option<f64>,
    pub default_action: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct ProfileGen {
    pub labels_to_apply: Labels,
    pub ingress: Vec<RuleGen>,
    pub egress: Vec<RuleGen>,
}

#[derive(Debug, Clone)]
pub struct EndpointGen {
    pub host: bool,
    pub namespace: usize,
    pub labels: Labels,
    /// `k8s`, `openstack`, or unset.
    pub orchestrator: Option<&'static str>,
    pub service_account: Option<&'static str>,
    pub v4: bool,
    pub v6: bool,
    /// Write WEP addresses as bare IPs rather than /32 or /128.
    pub bare: bool,
    pub ports: Vec<(&'static str, &'static str, u16)>,
    pub profiles: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct SetGen {
    pub global: bool,
    pub namespace: usize,
    pub labels: Labels,
    pub nets: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageGen {
    Normal,
    DoNotTrack,
    PreDnat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypesGen {
    Unset,
    Ingress,
    Egress,
    Both,
    BothReversed,
}

#[derive(Debug, Clone)]
pub enum PolicyGen {
    Global(GlobalPolicyGen),
    Namespaced(NamespacedPolicyGen),
    Kubernetes(KubernetesPolicyGen),
    V1(V1PolicyGen),
}

#[derive(Debug, Clone)]
pub struct GlobalPolicyGen {
    pub stem: &'static str,
    /// Index into tiers + [default]; `None` leaves `tier` out.
    pub tier: Option<usize>,
    pub tier_prefixed_name: bool,
    pub order: Option<f64>,
    pub selector: Option<String>,
    pub namespace_selector: Option<String>,
    pub service_account_selector: Option<&'static str>,
    pub types: TypesGen,
    pub ingress: Vec<RuleGen>,
    pub egress: Vec<RuleGen>,
    pub stage: StageGen,
    pub apply_on_forward: bool,
}

#[derive(Debug, Clone)]
pub struct NamespacedPolicyGen {
    pub stem: &'static str,
    pub namespace: usize,
    pub tier: Option<usize>,
    pub tier_prefixed_name: bool,
    pub order: Option<f64>,
    pub selector: Option<String>,
    pub service_account_selector: Option<&'static str>,
    pub types: TypesGen,
    pub ingress: Vec<RuleGen>,
    pub egress: Vec<RuleGen>,
}

#[derive(Debug, Clone)]
pub struct V1PolicyGen {
    pub stem: &'static str,
    pub order: Option<f64>,
    pub selector: Option<String>,
    pub types: TypesGen,
    pub ingress: Vec<RuleGen>,
    pub egress: Vec<RuleGen>,
    pub stage: StageGen,
}

#[derive(Debug, Clone)]
pub struct KubernetesPolicyGen {
    pub stem: &'static str,
    pub namespace: usize,
    pub pod_selector: LabelSelectorGen,
    pub policy_types: TypesGen,
    pub ingress: Vec<KubernetesRuleGen>,
    pub egress: Vec<KubernetesRuleGen>,
}

#[derive(Debug, Clone)]
pub struct LabelSelectorGen {
    pub match_labels: Vec<(&'static str, &'static str)>,
    /// (key, operator, values); values are dropped for Exists/DoesNotExist.
    pub expressions: Vec<(&'static str, &'static str, Vec<&'static str>)>,
}

#[derive(Debug, Clone)]
pub struct KubernetesRuleGen {
    pub peers: Vec<PeerGen>,
    pub ports: Vec<KubernetesPortGen>,
}

#[derive(Debug, Clone)]
pub enum PeerGen {
    Pods(LabelSelectorGen),
    Namespaces(LabelSelectorGen),
    PodsInNamespaces(LabelSelectorGen, LabelSelectorGen),
    IpBlock(usize),
}

#[derive(Debug, Clone)]
pub struct KubernetesPortGen {
    pub protocol: Option<&'static str>,
    pub port: Option<KubernetesPortValue>,
    /// endPort = port + this, for numeric ports.
    pub end_offset: Option<u16>,
}

#[derive(Debug, Clone)]
pub enum KubernetesPortValue {
    Number(u16),
    Name(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionGen {
    Allow,
    Deny,
    Pass,
    Log,
}

/// Rule protocols: v3 name, v1 name, number. A number written as such has no names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolGen {
    pub v3: Option<&'static str>,
    pub v1: Option<&'static str>,
    pub number: u8,
    /// Write the number as a string of digits.
    pub digits_as_text: bool,
}

const fn named(v3: &'static str, v1: &'static str, number: u8) -> ProtocolGen {
    ProtocolGen {
        v3: Some(v3),
        v1: Some(v1),
        number,
        digits_as_text: false,
    }
}

const fn numbered(number: u8, digits_as_text: bool) -> ProtocolGen {
    ProtocolGen {
        v3: None,
        v1: None,
        number,
        digits_as_text,
    }
}

const TCP: ProtocolGen = named("TCP", "tcp", 6);
const UDP: ProtocolGen = named("UDP", "udp", 17);
const ICMP: ProtocolGen = named("ICMP", "icmp", 1);
const ICMPV6: ProtocolGen = named("ICMPv6", "icmpv6", 58);
const SCTP: ProtocolGen = named("SCTP", "sctp", 132);
const UDPLITE: ProtocolGen = named("UDPLite", "udplite", 136);

impl ProtocolGen {
    fn render(self, v1: bool) -> Value {
        match (if v1 { self.v1 } else { self.v3 }, self.digits_as_text) {
            (Some(name), _) => json!(name),
            (None, true) => json!(self.number.to_string()),
            (None, false) => json!(self.number),
        }
    }

    fn has_ports(self) -> bool {
        matches!(self.number, 6 | 17 | 132)
    }

    fn icmp_family(self) -> Option<Family> {
        match self.number {
            1 => Some(Family::V4),
            58 => Some(Family::V6),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

#[derive(Debug, Clone)]
pub struct RuleGen {
    pub action: ActionGen,
    pub protocol: Option<ProtocolGen>,
    pub not_protocol: Option<ProtocolGen>,
    /// The family of the rule's CIDRs (forced by an ICMP protocol); `None`: no CIDRs.
    pub family: Option<Family>,
    pub write_ip_version: bool,
    pub icmp: Option<(u8, Option<u8>)>,
    pub not_icmp: Option<(u8, Option<u8>)>,
    pub source: SideGen,
    pub destination: SideGen,
    /// v1 only: use the old single `net`/`notNet` fields and host-bit spellings.
    pub v1_old_nets: bool,
}

#[derive(Debug, Clone)]
pub struct SideGen {
    pub nets: Vec<usize>,
    pub not_nets: Vec<usize>,
    pub selector: Option<String>,
    pub not_selector: Option<String>,
    pub namespace_selector: Option<NamespaceSelectorGen>,
    pub service_accounts: Option<(bool, Option<&'static str>)>,
    pub ports: Vec<PortGen>,
    pub not_ports: Vec<PortGen>,
}

#[derive(Debug, Clone)]
pub enum NamespaceSelectorGen {
    Selector(String),
    All,
    Global,
    GlobalWithSpace,
}

#[derive(Debug, Clone)]
pub enum PortGen {
    Number(u16),
    Range(&'static str),
    Named(&'static str),
}

#[derive(Debug, Clone)]
pub struct FelixGen {
    pub inbound: FailsafeGen,
    pub outbound: FailsafeGen,
}

#[derive(Debug, Clone)]
pub enum FailsafeGen {
    Unset,
    Disabled,
    /// (udp?, port, net)
    Ports(Vec<(bool, u16, Option<&'static str>)>),
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn labels() -> impl Strategy<Value = Labels> {
    vec((select(KEYS), select(LABEL_VALUES)), 0..=3).prop_map(|pairs| pairs.into_iter().collect())
}

fn selector_atom() -> impl Strategy<Value = String> {
    let key = || select(KEYS);
    let value = || select(SELECTOR_VALUES);
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| format!("{k} == '{v}'")),
        2 => (key(), value()).prop_map(|(k, v)| format!("{k} != '{v}'")),
        2 => key().prop_map(|k| format!("has({k})")),
        1 => key().prop_map(|k| format!("!has({k})")),
        2 => (key(), value(), value()).prop_map(|(k, a, b)| format!("{k} in {{'{a}', '{b}'}}")),
        1 => (key(), value()).prop_map(|(k, v)| format!("{k} not in {{'{v}',}}")),
        1 => (key(), value()).prop_map(|(k, v)| format!("{k} starts with '{v}'")),
        1 => key().prop_map(|k| format!("{k} == ''")),
        2 => Just("all()".to_owned()),
        1 => select(NAMESPACES).prop_map(|ns| format!("projectcalico.org/namespace == '{ns}'")),
        1 => Just("projectcalico.org/orchestrator == 'k8s'".to_owned()),
    ]
}

/// A selector over the label vocabulary: an atom, or two combined.
pub fn selector() -> BoxedStrategy<String> {
    prop_oneof![
        3 => selector_atom(),
        1 => (selector_atom(), selector_atom(), any::<bool>()).prop_map(|(a, b, and)| {
            format!("({a}) {} ({b})", if and { "&&" } else { "||" })
        }),
        1 => selector_atom().prop_map(|a| format!("!({a})")),
    ]
    .boxed()
}

fn types() -> impl Strategy<Value = TypesGen> {
    prop_oneof![
        4 => Just(TypesGen::Unset),
        2 => Just(TypesGen::Ingress),
        2 => Just(TypesGen::Egress),
        1 => Just(TypesGen::Both),
        1 => Just(TypesGen::BothReversed),
    ]
}

pub fn stage() -> impl Strategy<Value = StageGen> {
    prop_oneof![
        8 => Just(StageGen::Normal),
        1 => Just(StageGen::DoNotTrack),
        1 => Just(StageGen::PreDnat),
    ]
}

fn action() -> impl Strategy<Value = ActionGen> {
    prop_oneof![
        4 => Just(ActionGen::Allow),
        3 => Just(ActionGen::Deny),
        2 => Just(ActionGen::Pass),
        2 => Just(ActionGen::Log),
    ]
}

fn rule_protocol() -> impl Strategy<Value = Option<ProtocolGen>> {
    prop_oneof![
        8 => Just(None),
        5 => Just(Some(TCP)),
        3 => Just(Some(UDP)),
        2 => Just(Some(ICMP)),
        2 => Just(Some(ICMPV6)),
        1 => Just(Some(SCTP)),
        1 => Just(Some(UDPLITE)),
        1 => Just(Some(numbered(6, false))),
        1 => Just(Some(numbered(17, true))),
        1 => Just(Some(numbered(47, false))),
    ]
}

fn not_protocol() -> impl Strategy<Value = Option<ProtocolGen>> {
    weighted(
        0.15,
        prop_oneof![
            Just(TCP),
            Just(UDP),
            Just(ICMP),
            Just(ICMPV6),
            Just(numbered(47, false))
        ],
    )
}

fn icmp_match() -> impl Strategy<Value = (u8, Option<u8>)> {
    (select(ICMP_TYPES), of(select(ICMP_CODES)))
}

fn port_entry() -> impl Strategy<Value = PortGen> {
    prop_oneof![
        3 => select(RULE_PORT_NUMBERS).prop_map(PortGen::Number),
        2 => select(RULE_PORT_RANGES).prop_map(PortGen::Range),
        2 => select(RULE_PORT_NAMES).prop_map(PortGen::Named),
    ]
}

fn namespace_selector() -> impl Strategy<Value = NamespaceSelectorGen> {
    prop_oneof![
        3 => selector().prop_map(NamespaceSelectorGen::Selector),
        1 => Just(NamespaceSelectorGen::All),
        1 => Just(NamespaceSelectorGen::Global),
        1 => Just(NamespaceSelectorGen::GlobalWithSpace),
    ]
}

impl SideGen {
    pub fn empty() -> SideGen {
        SideGen {
            nets: Vec::new(),
            not_nets: Vec::new(),
            selector: None,
            not_selector: None,
            namespace_selector: None,
            service_accounts: None,
            ports: Vec::new(),
            not_ports: Vec::new(),
        }
    }
}

/// A rule side: often empty, so that rules match often enough to decide.
fn side() -> BoxedStrategy<SideGen> {
    let constrained = (
        weighted(0.35, vec(0..16usize, 1..=2)),
        weighted(0.15, 0..16usize),
        weighted(0.4, selector()),
        weighted(0.15, selector()),
        weighted(0.15, namespace_selector()),
        weighted(0.08, (any::<bool>(), of(select(SERVICE_ACCOUNT_SELECTORS)))),
        weighted(0.35, vec(port_entry(), 1..=2)),
        weighted(0.12, port_entry()),
    )
        .prop_map(
            |(nets, not_net, selector, not_selector, ns, sa, ports, not_port)| SideGen {
                nets: nets.unwrap_or_default(),
                not_nets: not_net.into_iter().collect(),
                selector,
                not_selector,
                namespace_selector: ns,
                service_accounts: sa,
                ports: ports.unwrap_or_default(),
                not_ports: not_port.into_iter().collect(),
            },
        );
    prop_oneof![2 => Just(SideGen::empty()), 3 => constrained].boxed()
}

fn family() -> impl Strategy<Value = Option<Family>> {
    prop_oneof![3 => Just(None), 2 => Just(Some(Family::V4)), 1 => Just(Some(Family::V6))]
}

pub fn rule() -> BoxedStrategy<RuleGen> {
    (
        action(),
        rule_protocol(),
        not_protocol(),
        family(),
        any::<bool>(),
        weighted(0.5, icmp_match()),
        weighted(0.2, icmp_match()),
        side(),
        side(),
        weighted(0.3, Just(())),
    )
        .prop_map(
            |(action, protocol, not_protocol, family, ipv, icmp, not_icmp, src, dst, old)| {
                RuleGen {
                    action,
                    protocol,
                    not_protocol,
                    family,
                    write_ip_version: ipv,
                    icmp,
                    not_icmp,
                    source: src,
                    destination: dst,
                    v1_old_nets: old.is_some(),
                }
            },
        )
        .boxed()
}

/// A Log rule that matches everything: it makes sides with many Log rules.
fn log_everything() -> BoxedStrategy<RuleGen> {
    rule()
        .prop_map(|r| RuleGen {
            action: ActionGen::Log,
            protocol: None,
            not_protocol: None,
            family: None,
            icmp: None,
            not_icmp: None,
            source: SideGen::empty(),
            destination: SideGen::empty(),
            ..r
        })
        .boxed()
}

pub fn rules(max: usize) -> BoxedStrategy<Vec<RuleGen>> {
    vec(prop_oneof![8 => rule(), 1 => log_everything()], 0..=max).boxed()
}

fn tier() -> impl Strategy<Value = TierGen> {
    (
        select(TIER_ORDERS),
        select(&[None, Some("Deny"), Some("Pass"), Some("Pass")][..]),
    )
        .prop_map(|(order, default_action)| TierGen {
            order,
            default_action,
        })
}

fn profile() -> BoxedStrategy<ProfileGen> {
    (labels(), rules(2), rules(2))
        .prop_map(|(labels_to_apply, ingress, egress)| ProfileGen {
            labels_to_apply,
            ingress,
            egress,
        })
        .boxed()
}

fn endpoint() -> BoxedStrategy<EndpointGen> {
    (
        weighted(0.3, Just(())),
        0..NAMESPACES.len(),
        labels(),
        select(&[Some("k8s"), Some("k8s"), Some("openstack"), None][..]),
        weighted(0.3, select(SERVICE_ACCOUNTS)),
        (0..3usize, any::<bool>()),
        vec(
            (
                select(ENDPOINT_PORT_NAMES),
                select(&["TCP", "TCP", "UDP", "SCTP"][..]),
                select(ENDPOINT_PORT_NUMBERS),
            ),
            0..=2,
        ),
        weighted(0.3, vec(0..4usize, 1..=2)),
    )
        .prop_map(
            |(host, namespace, labels, orchestrator, sa, (families, bare), ports, profiles)| {
                EndpointGen {
                    host: host.is_some(),
                    namespace,
                    labels,
                    orchestrator,
                    service_account: sa,
                    v4: families != 1,
                    v6: families != 0,
                    bare,
                    ports,
                    profiles: profiles.unwrap_or_default(),
                }
            },
        )
        .boxed()
}

fn network_set() -> BoxedStrategy<SetGen> {
    (
        any::<bool>(),
        0..NAMESPACES.len(),
        labels(),
        vec(select(SET_NETS), 1..=3),
    )
        .prop_map(|(global, namespace, labels, nets)| SetGen {
            global,
            namespace,
            labels,
            nets,
        })
        .boxed()
}

fn label_selector() -> BoxedStrategy<LabelSelectorGen> {
    (
        vec((select(KEYS), select(SELECTOR_VALUES)), 0..=2),
        vec(
            (
                select(KEYS),
                select(&["In", "NotIn", "Exists", "DoesNotExist"][..]),
                vec(select(SELECTOR_VALUES), 1..=2),
            ),
            0..=1,
        ),
    )
        .prop_map(|(match_labels, expressions)| LabelSelectorGen {
            match_labels,
            expressions,
        })
        .boxed()
}

fn peer() -> BoxedStrategy<PeerGen> {
    prop_oneof![
        2 => label_selector().prop_map(PeerGen::Pods),
        1 => label_selector().prop_map(PeerGen::Namespaces),
        1 => (label_selector(), label_selector())
            .prop_map(|(p, n)| PeerGen::PodsInNamespaces(p, n)),
        2 => (0..IP_BLOCKS.len()).prop_map(PeerGen::IpBlock),
    ]
    .boxed()
}

fn kubernetes_port() -> impl Strategy<Value = KubernetesPortGen> {
    (
        weighted(0.6, select(&["TCP", "UDP", "SCTP"][..])),
        weighted(
            0.8,
            prop_oneof![
                3 => select(RULE_PORT_NUMBERS).prop_map(KubernetesPortValue::Number),
                1 => select(RULE_PORT_NAMES).prop_map(KubernetesPortValue::Name),
            ],
        ),
        weighted(0.3, select(&[0u16, 1, 100][..])),
    )
        .prop_map(|(protocol, port, end_offset)| KubernetesPortGen {
            protocol,
            port,
            end_offset,
        })
}

fn kubernetes_rule() -> BoxedStrategy<KubernetesRuleGen> {
    (vec(peer(), 0..=2), vec(kubernetes_port(), 0..=2))
        .prop_map(|(peers, ports)| KubernetesRuleGen { peers, ports })
        .boxed()
}

/// A random policy of any of the four kinds.
pub fn policy() -> BoxedStrategy<PolicyGen> {
    policy_with_rules(3)
}

/// A random policy of any of the four kinds with up to `max_rules` rules per direction.
pub fn policy_with_rules(max_rules: usize) -> BoxedStrategy<PolicyGen> {
    let stem = || select(NAME_STEMS);
    let order = || select(POLICY_ORDERS);
    let global = (
        (stem(), of(0..4usize), weighted(0.15, Just(())), order()),
        (
            of(selector()),
            weighted(0.15, selector()),
            weighted(0.05, select(SERVICE_ACCOUNT_SELECTORS)),
        ),
        (
            types(),
            rules(max_rules),
            rules(max_rules),
            stage(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (stem, tier, prefixed, order),
                (selector, namespace_selector, sa),
                (types, ingress, egress, stage, aof),
            )| {
                PolicyGen::Global(GlobalPolicyGen {
                    stem,
                    tier,
                    tier_prefixed_name: prefixed.is_some(),
                    order,
                    selector,
                    namespace_selector,
                    service_account_selector: sa,
                    types,
                    ingress,
                    egress,
                    stage,
                    apply_on_forward: aof,
                })
            },
        );
    let namespaced = (
        (
            stem(),
            0..NAMESPACES.len(),
            of(0..4usize),
            weighted(0.15, Just(())),
            order(),
        ),
        (
            of(selector()),
            weighted(0.05, select(SERVICE_ACCOUNT_SELECTORS)),
        ),
        (types(), rules(max_rules), rules(max_rules)),
    )
        .prop_map(
            |(
                (stem, namespace, tier, prefixed, order),
                (selector, sa),
                (types, ingress, egress),
            )| {
                PolicyGen::Namespaced(NamespacedPolicyGen {
                    stem,
                    namespace,
                    tier,
                    tier_prefixed_name: prefixed.is_some(),
                    order,
                    selector,
                    service_account_selector: sa,
                    types,
                    ingress,
                    egress,
                })
            },
        );
    let kubernetes = (
        stem(),
        0..NAMESPACES.len(),
        label_selector(),
        types(),
        vec(kubernetes_rule(), 0..=2),
        vec(kubernetes_rule(), 0..=2),
    )
        .prop_map(
            |(stem, namespace, pod_selector, policy_types, ingress, egress)| {
                PolicyGen::Kubernetes(KubernetesPolicyGen {
                    stem,
                    namespace,
                    pod_selector,
                    policy_types,
                    ingress,
                    egress,
                })
            },
        );
    let v1 = (
        stem(),
        order(),
        of(selector()),
        types(),
        rules(max_rules),
        rules(max_rules),
        stage(),
    )
        .prop_map(|(stem, order, selector, types, ingress, egress, stage)| {
            PolicyGen::V1(V1PolicyGen {
                stem,
                order,
                selector,
                types,
                ingress,
                egress,
                stage,
            })
        });
    prop_oneof![5 => global, 3 => namespaced, 2 => kubernetes, 1 => v1].boxed()
}

fn failsafe() -> impl Strategy<Value = FailsafeGen> {
    prop_oneof![
        1 => Just(FailsafeGen::Unset),
        1 => Just(FailsafeGen::Disabled),
        2 => vec(
            (any::<bool>(), select(FAILSAFE_PORTS), weighted(0.4, select(FAILSAFE_NETS))),
            1..=3,
        )
        .prop_map(FailsafeGen::Ports),
    ]
}

/// A random valid policy directory.
pub fn config() -> BoxedStrategy<Config> {
    (
        vec((0..NAMESPACES.len(), labels()), 0..=2),
        vec(tier(), 0..=3),
        weighted(0.15, any::<bool>()),
        vec(profile(), 0..=2),
        vec(endpoint(), 1..=MAX_ENDPOINTS),
        vec(network_set(), 0..=3),
        // Now and then many policies with many rules: programs of more than one 64-entry
        // bitset word, and more Log rules than a side keeps.
        prop_oneof![
            5 => vec(policy(), 0..=8),
            1 => vec(policy_with_rules(8), 10..=30),
        ],
        weighted(0.25, (failsafe(), failsafe())),
        weighted(0.2, any::<bool>()),
    )
        .prop_map(
            |(namespaces, tiers, default_tier, profiles, endpoints, sets, policies, felix, gw)| {
                Config {
                    namespaces,
                    tiers,
                    default_tier,
                    profiles,
                    endpoints,
                    sets,
                    policies,
                    felix: felix.map(|(inbound, outbound)| FelixGen { inbound, outbound }),
                    gateway: gw,
                }
            },
        )
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Rendering to resources

fn labels_value(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect(),
    )
}

fn metadata(name: &str, namespace: Option<&str>, labels: &Labels) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    if let Some(ns) = namespace {
        m.insert("namespace".into(), json!(ns));
    }
    if !labels.is_empty() {
        m.insert("labels".into(), labels_value(labels));
    }
    Value::Object(m)
}

fn resource(api_version: &str, kind: &str, metadata: Value, spec: Map<String, Value>) -> Value {
    json!({ "apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec })
}

/// Insert `key: value` when `value` is `Some`.
fn put(m: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        m.insert(key.to_owned(), v);
    }
}

fn types_value(types: TypesGen, v1: bool) -> Option<Value> {
    let (i, e) = if v1 {
        ("ingress", "egress")
    } else {
        ("Ingress", "Egress")
    };
    match types {
        TypesGen::Unset => None,
        TypesGen::Ingress => Some(json!([i])),
        TypesGen::Egress => Some(json!([e])),
        TypesGen::Both => Some(json!([i, e])),
        TypesGen::BothReversed => Some(json!([e, i])),
    }
}

/// Types of a preDNAT policy: never Egress.
fn ingress_only(types: TypesGen) -> TypesGen {
    match types {
        TypesGen::Unset | TypesGen::Egress => TypesGen::Unset,
        _ => TypesGen::Ingress,
    }
}

fn order_value(order: Option<f64>) -> Option<Value> {
    order.map(|o| json!(o))
}

/// Rendering context of a rule: which dialect and whether namespace fields exist.
#[derive(Clone, Copy)]
struct Dialect {
    v1: bool,
}

impl ActionGen {
    fn name(self, v1: bool) -> &'static str {
        match (self, v1) {
            (ActionGen::Allow, false) => "Allow",
            (ActionGen::Deny, false) => "Deny",
            (ActionGen::Pass, false) => "Pass",
            (ActionGen::Log, false) => "Log",
            (ActionGen::Allow, true) => "allow",
            (ActionGen::Deny, true) => "deny",
            (ActionGen::Pass, true) => "pass",
            (ActionGen::Log, true) => "log",
        }
    }
}

fn net_text(family: Family, index: usize, negated: bool, loose: bool) -> &'static str {
    let list = match family {
        Family::V4 => RULE_NETS_V4,
        Family::V6 => RULE_NETS_V6,
    };
    // notNets may not hold the catch-all (the last entry).
    let len = if negated { list.len() - 1 } else { list.len() };
    let (strict, with_host_bits) = list[index % len];
    if loose { with_host_bits } else { strict }
}

fn port_value(p: &PortGen) -> Value {
    match p {
        PortGen::Number(n) => json!(n),
        PortGen::Range(r) => json!(r),
        PortGen::Named(n) => json!(n),
    }
}

/// Port entries a rule with this protocol may carry: all of them with TCP/UDP/SCTP, only named
/// ones without a protocol, none otherwise.
fn allowed_ports(ports: &[PortGen], protocol: Option<ProtocolGen>) -> Vec<Value> {
    ports
        .iter()
        .filter(|p| match protocol {
            Some(proto) => proto.has_ports(),
            None => matches!(p, PortGen::Named(_)),
        })
        .map(port_value)
        .collect()
}

fn icmp_value((t, code): (u8, Option<u8>)) -> Value {
    match code {
        Some(c) => json!({ "type": t, "code": c }),
        None => json!({ "type": t }),
    }
}

impl RuleGen {
    fn render(&self, dialect: Dialect) -> Value {
        let v1 = dialect.v1;
        let mut m = Map::new();
        m.insert("action".into(), json!(self.action.name(v1)));
        let icmp_family = self.protocol.and_then(ProtocolGen::icmp_family);
        let family = icmp_family.or(self.family);
        put(&mut m, "protocol", self.protocol.map(|p| p.render(v1)));
        let ip_version = family.filter(|_| self.write_ip_version);
        if let Some(f) = ip_version {
            m.insert(
                "ipVersion".into(),
                json!(if f == Family::V4 { 4 } else { 6 }),
            );
        }
        // notProtocol ICMP(v6) may not contradict an explicit ipVersion.
        let not_protocol = self
            .not_protocol
            .filter(|np| match (np.icmp_family(), ip_version) {
                (Some(implied), Some(v)) => implied == v,
                _ => true,
            });
        put(&mut m, "notProtocol", not_protocol.map(|p| p.render(v1)));
        if icmp_family.is_some() {
            put(&mut m, "icmp", self.icmp.map(icmp_value));
            put(&mut m, "notICMP", self.not_icmp.map(icmp_value));
        }
        let old_nets = v1 && self.v1_old_nets;
        for (key, side) in [("source", &self.source), ("destination", &self.destination)] {
            let rendered = side.render(dialect, family, self.protocol, old_nets);
            if !rendered.is_empty() {
                m.insert(key.into(), Value::Object(rendered));
            }
        }
        Value::Object(m)
    }
}

impl SideGen {
    fn render(
        &self,
        dialect: Dialect,
        family: Option<Family>,
        protocol: Option<ProtocolGen>,
        old_nets: bool,
    ) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(family) = family {
            if old_nets {
                let net = self.nets.first().map(|&i| net_text(family, i, false, true));
                let not_net = self
                    .not_nets
                    .first()
                    .map(|&i| net_text(family, i, true, true));
                put(&mut m, "net", net.map(|n| json!(n)));
                put(&mut m, "notNet", not_net.map(|n| json!(n)));
            } else {
                let loose = dialect.v1;
                let nets: Vec<_> = self
                    .nets
                    .iter()
                    .map(|&i| net_text(family, i, false, loose && i % 2 == 0))
                    .collect();
                let not_nets: Vec<_> = self
                    .not_nets
                    .iter()
                    .map(|&i| net_text(family, i, true, loose && i % 2 == 0))
                    .collect();
                if !nets.is_empty() {
                    m.insert("nets".into(), json!(nets));
                }
                if !not_nets.is_empty() {
                    m.insert("notNets".into(), json!(not_nets));
                }
            }
        }
        put(&mut m, "selector", self.selector.as_ref().map(|s| json!(s)));
        put(
            &mut m,
            "notSelector",
            self.not_selector.as_ref().map(|s| json!(s)),
        );
        if !dialect.v1 {
            let ns = self.namespace_selector.as_ref().map(|n| match n {
                NamespaceSelectorGen::Selector(s) => json!(s),
                NamespaceSelectorGen::All => json!("all()"),
                NamespaceSelectorGen::Global => json!("global()"),
                NamespaceSelectorGen::GlobalWithSpace => json!("global( )"),
            });
            put(&mut m, "namespaceSelector", ns);
            if let Some((names, selector)) = &self.service_accounts {
                let mut sa = Map::new();
                if *names {
                    sa.insert("names".into(), json!(["sa1"]));
                }
                put(&mut sa, "selector", selector.map(|s| json!(s)));
                if !sa.is_empty() {
                    m.insert("serviceAccounts".into(), Value::Object(sa));
                }
            }
        }
        let ports = allowed_ports(&self.ports, protocol);
        if !ports.is_empty() {
            m.insert("ports".into(), json!(ports));
        }
        let not_ports = allowed_ports(&self.not_ports, protocol);
        if !not_ports.is_empty() {
            m.insert("notPorts".into(), json!(not_ports));
        }
        m
    }
}

fn render_rules(rules: &[RuleGen], dialect: Dialect) -> Option<Value> {
    (!rules.is_empty()).then(|| Value::Array(rules.iter().map(|r| r.render(dialect)).collect()))
}

impl LabelSelectorGen {
    fn render(&self) -> Value {
        let mut m = Map::new();
        if !self.match_labels.is_empty() {
            let labels: Map<String, Value> = self
                .match_labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect();
            m.insert("matchLabels".into(), Value::Object(labels));
        }
        if !self.expressions.is_empty() {
            let expressions: Vec<Value> = self
                .expressions
                .iter()
                .map(|(key, op, values)| match *op {
                    "Exists" | "DoesNotExist" => json!({ "key": key, "operator": op }),
                    _ => json!({ "key": key, "operator": op, "values": values }),
                })
                .collect();
            m.insert("matchExpressions".into(), json!(expressions));
        }
        Value::Object(m)
    }
}

impl PeerGen {
    fn render(&self) -> Value {
        match self {
            PeerGen::Pods(p) => json!({ "podSelector": p.render() }),
            PeerGen::Namespaces(n) => json!({ "namespaceSelector": n.render() }),
            PeerGen::PodsInNamespaces(p, n) => {
                json!({ "podSelector": p.render(), "namespaceSelector": n.render() })
            }
            PeerGen::IpBlock(i) => {
                let (cidr, except) = IP_BLOCKS[i % IP_BLOCKS.len()];
                if except.is_empty() {
                    json!({ "ipBlock": { "cidr": cidr } })
                } else {
                    json!({ "ipBlock": { "cidr": cidr, "except": except } })
                }
            }
        }
    }
}

impl KubernetesPortGen {
    fn render(&self) -> Value {
        let mut m = Map::new();
        put(&mut m, "protocol", self.protocol.map(|p| json!(p)));
        match &self.port {
            Some(KubernetesPortValue::Number(n)) => {
                m.insert("port".into(), json!(n));
                if let Some(offset) = self.end_offset {
                    m.insert("endPort".into(), json!(n.saturating_add(offset)));
                }
            }
            Some(KubernetesPortValue::Name(name)) => {
                m.insert("port".into(), json!(name));
            }
            None => {}
        }
        Value::Object(m)
    }
}

impl KubernetesRuleGen {
    fn render(&self, peers_key: &str) -> Value {
        let mut m = Map::new();
        if !self.peers.is_empty() {
            let peers: Vec<Value> = self.peers.iter().map(PeerGen::render).collect();
            m.insert(peers_key.into(), json!(peers));
        }
        if !self.ports.is_empty() {
            let ports: Vec<Value> = self.ports.iter().map(KubernetesPortGen::render).collect();
            m.insert("ports".into(), json!(ports));
        }
        Value::Object(m)
    }
}

fn stage_fields(m: &mut Map<String, Value>, stage: StageGen) {
    match stage {
        StageGen::Normal => {}
        StageGen::DoNotTrack => {
            m.insert("doNotTrack".into(), json!(true));
        }
        StageGen::PreDnat => {
            m.insert("preDNAT".into(), json!(true));
        }
    }
}

/// A GlobalNetworkPolicy resource named `name` in `tier` (the default tier when `None`).
pub fn global_policy(p: &GlobalPolicyGen, name: &str, tier: Option<&str>) -> Value {
    let v3 = Dialect { v1: false };
    let mut spec = Map::new();
    put(&mut spec, "tier", tier.map(|t| json!(t)));
    put(&mut spec, "order", order_value(p.order));
    put(&mut spec, "selector", p.selector.as_ref().map(|s| json!(s)));
    put(
        &mut spec,
        "namespaceSelector",
        p.namespace_selector.as_ref().map(|s| json!(s)),
    );
    put(
        &mut spec,
        "serviceAccountSelector",
        p.service_account_selector.map(|s| json!(s)),
    );
    let pre_dnat = p.stage == StageGen::PreDnat;
    let types = if pre_dnat {
        ingress_only(p.types)
    } else {
        p.types
    };
    put(&mut spec, "types", types_value(types, false));
    put(&mut spec, "ingress", render_rules(&p.ingress, v3));
    if !pre_dnat {
        put(&mut spec, "egress", render_rules(&p.egress, v3));
    }
    stage_fields(&mut spec, p.stage);
    if p.stage != StageGen::Normal || p.apply_on_forward {
        spec.insert("applyOnForward".into(), json!(true));
    }
    resource(
        "projectcalico.org/v3",
        "GlobalNetworkPolicy",
        metadata(name, None, &Labels::new()),
        spec,
    )
}

/// A projectcalico.org/v3 NetworkPolicy resource named `name` in `tier`.
pub fn namespaced_policy(p: &NamespacedPolicyGen, name: &str, tier: Option<&str>) -> Value {
    let v3 = Dialect { v1: false };
    let mut spec = Map::new();
    put(&mut spec, "tier", tier.map(|t| json!(t)));
    put(&mut spec, "order", order_value(p.order));
    put(&mut spec, "selector", p.selector.as_ref().map(|s| json!(s)));
    put(
        &mut spec,
        "serviceAccountSelector",
        p.service_account_selector.map(|s| json!(s)),
    );
    put(&mut spec, "types", types_value(p.types, false));
    put(&mut spec, "ingress", render_rules(&p.ingress, v3));
    put(&mut spec, "egress", render_rules(&p.egress, v3));
    resource(
        "projectcalico.org/v3",
        "NetworkPolicy",
        metadata(name, Some(NAMESPACES[p.namespace]), &Labels::new()),
        spec,
    )
}

/// A Tier resource.
pub fn tier_resource(name: &str, order: Option<f64>, default_action: Option<&str>) -> Value {
    let mut spec = Map::new();
    put(&mut spec, "order", order_value(order));
    put(&mut spec, "defaultAction", default_action.map(|a| json!(a)));
    resource(
        "projectcalico.org/v3",
        "Tier",
        metadata(name, None, &Labels::new()),
        spec,
    )
}

impl FailsafeGen {
    fn render(&self) -> Option<Value> {
        match self {
            FailsafeGen::Unset => None,
            FailsafeGen::Disabled => Some(json!("none")),
            FailsafeGen::Ports(ports) => Some(Value::Array(
                ports
                    .iter()
                    .map(|(udp, port, net)| {
                        let protocol = if *udp { "udp" } else { "tcp" };
                        match net {
                            Some(n) => json!({ "protocol": protocol, "port": port, "net": n }),
                            None => json!({ "protocol": protocol, "port": port }),
                        }
                    })
                    .collect(),
            )),
        }
    }
}

impl Config {
    /// The IPv4 address of endpoint `k`.
    pub fn endpoint_v4(k: usize) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, 10 + k as u8)
    }

    /// The IPv6 address of endpoint `k`.
    pub fn endpoint_v6(k: usize) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + k as u16)
    }

    fn tier_name(&self, tier: Option<usize>) -> Option<String> {
        tier.map(|i| match self.tiers.len() {
            0 => "default".to_owned(),
            n if i % (n + 1) == n => "default".to_owned(),
            n => format!("t{}", i % (n + 1)),
        })
    }

    fn policy_name(&self, stem: &str, index: usize, tier: Option<&str>, prefixed: bool) -> String {
        match tier {
            Some(t) if prefixed => format!("{t}.{stem}{index:02}"),
            _ => format!("{stem}{index:02}"),
        }
    }

    /// Every resource of the directory, in a canonical order.
    pub fn resources(&self) -> Vec<Value> {
        let mut out = Vec::new();
        self.render_namespaces(&mut out);
        self.render_tiers(&mut out);
        self.render_profiles(&mut out);
        self.render_endpoints(&mut out);
        self.render_sets(&mut out);
        for (i, p) in self.policies.iter().enumerate() {
            out.push(self.render_policy(i, p));
        }
        self.render_settings(&mut out);
        out
    }

    fn render_namespaces(&self, out: &mut Vec<Value>) {
        let mut seen = [false; 3];
        for (ns, labels) in &self.namespaces {
            if std::mem::replace(&mut seen[*ns], true) {
                continue;
            }
            out.push(json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": metadata(NAMESPACES[*ns], None, labels),
            }));
        }
    }

    fn render_tiers(&self, out: &mut Vec<Value>) {
        for (i, t) in self.tiers.iter().enumerate() {
            out.push(tier_resource(&format!("t{i}"), t.order, t.default_action));
        }
        if let Some(action) = self.default_tier {
            out.push(tier_resource(
                "default",
                Some(1_000_000.0),
                action.then_some("Deny"),
            ));
        }
    }

    fn render_profiles(&self, out: &mut Vec<Value>) {
        let v3 = Dialect { v1: false };
        for (i, p) in self.profiles.iter().enumerate() {
            let mut spec = Map::new();
            if !p.labels_to_apply.is_empty() {
                spec.insert("labelsToApply".into(), labels_value(&p.labels_to_apply));
            }
            put(&mut spec, "ingress", render_rules(&p.ingress, v3));
            put(&mut spec, "egress", render_rules(&p.egress, v3));
            out.push(resource(
                "projectcalico.org/v3",
                "Profile",
                metadata(&format!("prof{i}"), None, &Labels::new()),
                spec,
            ));
        }
    }

    /// The endpoint's profile names; a profile may be listed twice, which is valid.
    fn endpoint_profiles(&self, e: &EndpointGen) -> Vec<String> {
        if self.profiles.is_empty() {
            return Vec::new();
        }
        e.profiles
            .iter()
            .map(|&i| format!("prof{}", i % self.profiles.len()))
            .collect()
    }

    fn render_endpoints(&self, out: &mut Vec<Value>) {
        for (k, e) in self.endpoints.iter().enumerate() {
            let v4 = e.v4 || !e.v6;
            let mut addresses = Vec::new();
            if v4 {
                addresses.push((Self::endpoint_v4(k).to_string(), 32));
            }
            if e.v6 {
                addresses.push((Self::endpoint_v6(k).to_string(), 128));
            }
            let mut spec = Map::new();
            // Two ports may share a name: each of them is that named port.
            let ports: Vec<Value> = e
                .ports
                .iter()
                .map(|(name, protocol, port)| {
                    json!({ "name": name, "protocol": protocol, "port": port })
                })
                .collect();
            if !ports.is_empty() {
                spec.insert("ports".into(), json!(ports));
            }
            let profiles = self.endpoint_profiles(e);
            if !profiles.is_empty() {
                spec.insert("profiles".into(), json!(profiles));
            }
            if e.host {
                spec.insert("node".into(), json!("node1"));
                let ips: Vec<&String> = addresses.iter().map(|(a, _)| a).collect();
                spec.insert("expectedIPs".into(), json!(ips));
                if k % 2 == 0 {
                    spec.insert("interfaceName".into(), json!(format!("eth{k}")));
                }
                out.push(resource(
                    "projectcalico.org/v3",
                    "HostEndpoint",
                    metadata(&format!("host{k}"), None, &e.labels),
                    spec,
                ));
            } else {
                let nets: Vec<String> = addresses
                    .iter()
                    .map(|(a, len)| {
                        if e.bare {
                            a.clone()
                        } else {
                            format!("{a}/{len}")
                        }
                    })
                    .collect();
                spec.insert("ipNetworks".into(), json!(nets));
                spec.insert("interfaceName".into(), json!(format!("cali{k}")));
                spec.insert("node".into(), json!("node1"));
                put(&mut spec, "orchestrator", e.orchestrator.map(|o| json!(o)));
                put(
                    &mut spec,
                    "serviceAccountName",
                    e.service_account.map(|s| json!(s)),
                );
                let ns = NAMESPACES[e.namespace];
                // The default namespace is sometimes left implicit.
                let ns = (ns != "default" || k % 2 == 0).then_some(ns);
                out.push(resource(
                    "projectcalico.org/v3",
                    "WorkloadEndpoint",
                    metadata(&format!("wep{k}"), ns, &e.labels),
                    spec,
                ));
            }
        }
    }

    fn render_sets(&self, out: &mut Vec<Value>) {
        for (i, s) in self.sets.iter().enumerate() {
            let mut spec = Map::new();
            spec.insert("nets".into(), json!(s.nets));
            if s.global {
                out.push(resource(
                    "projectcalico.org/v3",
                    "GlobalNetworkSet",
                    metadata(&format!("gset{i}"), None, &s.labels),
                    spec,
                ));
            } else {
                out.push(resource(
                    "projectcalico.org/v3",
                    "NetworkSet",
                    metadata(&format!("set{i}"), Some(NAMESPACES[s.namespace]), &s.labels),
                    spec,
                ));
            }
        }
    }

    fn render_policy(&self, index: usize, policy: &PolicyGen) -> Value {
        match policy {
            PolicyGen::Global(p) => {
                let tier = self.tier_name(p.tier);
                let name = self.policy_name(p.stem, index, tier.as_deref(), p.tier_prefixed_name);
                global_policy(p, &name, tier.as_deref())
            }
            PolicyGen::Namespaced(p) => {
                let tier = self.tier_name(p.tier);
                let name = self.policy_name(p.stem, index, tier.as_deref(), p.tier_prefixed_name);
                namespaced_policy(p, &name, tier.as_deref())
            }
            PolicyGen::Kubernetes(p) => {
                let mut spec = Map::new();
                spec.insert("podSelector".into(), p.pod_selector.render());
                put(&mut spec, "policyTypes", types_value(p.policy_types, false));
                if !p.ingress.is_empty() {
                    let rules: Vec<Value> = p.ingress.iter().map(|r| r.render("from")).collect();
                    spec.insert("ingress".into(), json!(rules));
                }
                if !p.egress.is_empty() {
                    let rules: Vec<Value> = p.egress.iter().map(|r| r.render("to")).collect();
                    spec.insert("egress".into(), json!(rules));
                }
                resource(
                    "networking.k8s.io/v1",
                    "NetworkPolicy",
                    metadata(
                        &format!("{}{index:02}", p.stem),
                        Some(NAMESPACES[p.namespace]),
                        &Labels::new(),
                    ),
                    spec,
                )
            }
            PolicyGen::V1(p) => {
                let v1 = Dialect { v1: true };
                let mut spec = Map::new();
                put(&mut spec, "order", order_value(p.order));
                put(&mut spec, "selector", p.selector.as_ref().map(|s| json!(s)));
                let pre_dnat = p.stage == StageGen::PreDnat;
                let types = if pre_dnat {
                    ingress_only(p.types)
                } else {
                    p.types
                };
                put(&mut spec, "types", types_value(types, true));
                put(&mut spec, "ingress", render_rules(&p.ingress, v1));
                if !pre_dnat {
                    put(&mut spec, "egress", render_rules(&p.egress, v1));
                }
                stage_fields(&mut spec, p.stage);
                resource(
                    "v1",
                    "policy",
                    metadata(&format!("{}{index:02}", p.stem), None, &Labels::new()),
                    spec,
                )
            }
        }
    }

    fn render_settings(&self, out: &mut Vec<Value>) {
        if let Some(felix) = &self.felix {
            let mut spec = Map::new();
            put(
                &mut spec,
                "failsafeInboundHostPorts",
                felix.inbound.render(),
            );
            put(
                &mut spec,
                "failsafeOutboundHostPorts",
                felix.outbound.render(),
            );
            out.push(resource(
                "projectcalico.org/v3",
                "FelixConfiguration",
                metadata("default", None, &Labels::new()),
                spec,
            ));
        }
        if let Some(allow) = self.gateway {
            let mut spec = Map::new();
            spec.insert(
                "unmatchedTrafficAction".into(),
                json!(if allow { "Allow" } else { "Deny" }),
            );
            out.push(resource(
                "portcullis/v1",
                "GatewayConfiguration",
                metadata("default", None, &Labels::new()),
                spec,
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files

/// How resources are spread over files: file count, a file number per resource (taken
/// modulo), which file (if any) wraps its documents in a `kind: List`, and `.yml` or `.yaml`.
#[derive(Debug, Clone)]
pub struct LayoutGen {
    pub files: usize,
    pub assignment: Vec<usize>,
    pub list_file: Option<usize>,
    pub yml: bool,
}

pub fn layout() -> impl Strategy<Value = LayoutGen> {
    (
        1..=4usize,
        vec(0..4usize, 16),
        weighted(0.3, 0..4usize),
        any::<bool>(),
    )
        .prop_map(|(files, assignment, list_file, yml)| LayoutGen {
            files,
            assignment,
            list_file,
            yml,
        })
}

/// A directory: (file name, YAML text), sorted by name as the loader reads them.
pub type Dir = Vec<(String, String)>;

/// Lay `resources` out into files, keeping their order within each file.
pub fn lay_out(resources: &[Value], layout: &LayoutGen) -> Dir {
    let mut files: Vec<Vec<&Value>> = vec![Vec::new(); layout.files];
    for (i, r) in resources.iter().enumerate() {
        let f = layout.assignment[i % layout.assignment.len()] % layout.files;
        files[f].push(r);
    }
    let ext = if layout.yml { "yml" } else { "yaml" };
    files
        .into_iter()
        .enumerate()
        .filter(|(_, docs)| !docs.is_empty())
        .map(|(i, docs)| {
            let text = if layout.list_file.is_some_and(|l| l % layout.files == i) {
                let items: Vec<Value> = docs.into_iter().cloned().collect();
                to_yaml(&json!({ "apiVersion": "v1", "kind": "List", "items": items }))
            } else {
                docs.iter()
                    .map(|d| to_yaml(d))
                    .collect::<Vec<_>>()
                    .join("---\n")
            };
            (format!("f{i}.{ext}"), text)
        })
        .collect()
}

/// A permutation of `len` items driven by `keys`.
pub fn permutation(len: usize, keys: &[u32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by_key(|&i| (keys[i % keys.len()], i));
    order
}

/// The directory text for a failure message.
pub fn show_dir(dir: &Dir) -> String {
    let mut out = String::new();
    for (name, text) in dir {
        let _ = writeln!(out, "# ======== {name}");
        out.push_str(text);
    }
    out
}

/// Block-style YAML for a JSON value; strings double-quoted (JSON escapes are valid there).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_block(value, 0, &mut out);
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => serde_json::to_string(s).unwrap(),
        Value::Object(m) if m.is_empty() => "{}".to_owned(),
        Value::Array(a) if a.is_empty() => "[]".to_owned(),
        other => other.to_string(),
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn key_text(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'));
    if plain {
        key.to_owned()
    } else {
        serde_json::to_string(key).unwrap()
    }
}

fn write_block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                if is_block(v) {
                    let _ = writeln!(out, "{pad}{}:", key_text(k));
                    let child = if matches!(v, Value::Array(_)) {
                        indent
                    } else {
                        indent + 2
                    };
                    write_block(v, child, out);
                } else {
                    let _ = writeln!(out, "{pad}{}: {}", key_text(k), scalar(v));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                if is_block(item) {
                    // The first line of the item goes after the dash.
                    let mut inner = String::new();
                    write_block(item, indent + 2, &mut inner);
                    let rest = inner.get(indent + 2..).unwrap_or("");
                    let _ = write!(out, "{pad}- {rest}");
                } else {
                    let _ = writeln!(out, "{pad}- {}", scalar(item));
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Load, validate and resolve a directory as `portcullis` does (environment overrides left
/// out, so runs are reproducible). `Err` holds every problem, one per line.
pub fn build(dir: &Dir) -> Result<Resolved, String> {
    let limits = Limits::default();
    let mut resources = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in dir {
        let (r, p) = load::load_str(name, text, &limits);
        resources.extend(r);
        problems.extend(p);
    }
    problems.extend(validate::validate(&resources, &limits));
    let settings = Settings::from_resources(&resources).map_err(|p| {
        problems.extend(p);
    });
    if !problems.is_empty() {
        return Err(problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n"));
    }
    let model = Model {
        resources,
        settings: settings.unwrap_or_default(),
    };
    policy::resolve(&model).map_err(|ps| {
        ps.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

// ---------------------------------------------------------------------------------------------
// Flows

#[derive(Debug, Clone, Copy)]
pub enum AddrGen {
    /// An address of the endpoint at this index (modulo), of the flow's family if it has one.
    Endpoint(usize),
    /// An address of the pool of the flow's family.
    Pool(usize),
}

#[derive(Debug, Clone, Copy)]
pub enum FlowProtocolGen {
    Tcp,
    Udp,
    Sctp,
    UdpLite,
    /// ICMP on IPv4, ICMPv6 on IPv6.
    Icmp,
    /// ICMP of the other family (odd, but a flow may say so).
    WrongIcmp,
    Other(u8),
}

#[derive(Debug, Clone)]
pub struct FlowGen {
    pub v6: bool,
    /// The destination is of the other family.
    pub mixed: bool,
    pub src: AddrGen,
    pub dst: AddrGen,
    pub protocol: FlowProtocolGen,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// Keep every field whatever the protocol (ports on ICMP, a code without a type): such a
    /// flow never comes from `eval` input, but `Flow` and `FlowKey` can hold it and both
    /// evaluators define an answer.
    pub raw: bool,
}

fn addr() -> impl Strategy<Value = AddrGen> {
    prop_oneof![
        3 => (0..MAX_ENDPOINTS).prop_map(AddrGen::Endpoint),
        1 => (0..64usize).prop_map(AddrGen::Pool),
    ]
}

fn flow_protocol() -> impl Strategy<Value = FlowProtocolGen> {
    prop_oneof![
        8 => Just(FlowProtocolGen::Tcp),
        5 => Just(FlowProtocolGen::Udp),
        4 => Just(FlowProtocolGen::Icmp),
        1 => Just(FlowProtocolGen::Sctp),
        1 => Just(FlowProtocolGen::UdpLite),
        1 => Just(FlowProtocolGen::WrongIcmp),
        1 => select(&[47u8, 50, 0, 255][..]).prop_map(FlowProtocolGen::Other),
    ]
}

fn flow_port() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![
        8 => select(FLOW_PORTS).prop_map(Some),
        1 => any::<u16>().prop_map(Some),
        1 => Just(None),
    ]
}

/// A flow, to be placed in a config with [`Config::flow`].
pub fn flow() -> BoxedStrategy<FlowGen> {
    (
        weighted(0.35, Just(())),
        weighted(0.01, Just(())),
        addr(),
        addr(),
        flow_protocol(),
        prop_oneof![2 => Just(Some(40000u16)), 3 => flow_port()],
        flow_port(),
        weighted(0.9, select(FLOW_ICMP_TYPES)),
        weighted(0.7, select(FLOW_ICMP_CODES)),
        weighted(0.03, Just(())),
    )
        .prop_map(
            |(v6, mixed, src, dst, protocol, src_port, dst_port, icmp_type, icmp_code, raw)| {
                FlowGen {
                    v6: v6.is_some(),
                    mixed: mixed.is_some(),
                    src,
                    dst,
                    protocol,
                    src_port,
                    dst_port,
                    icmp_type,
                    icmp_code,
                    raw: raw.is_some(),
                }
            },
        )
        .boxed()
}

impl Config {
    /// An address of endpoint `k`, if it has one of the family.
    fn endpoint_address(&self, k: usize, v6: bool) -> Option<IpAddr> {
        let e = self.endpoints.get(k)?;
        let has_v4 = e.v4 || !e.v6;
        match (v6, has_v4, e.v6) {
            (false, true, _) => Some(IpAddr::V4(Self::endpoint_v4(k))),
            (true, _, true) => Some(IpAddr::V6(Self::endpoint_v6(k))),
            _ => None,
        }
    }

    fn address(&self, a: AddrGen, v6: bool) -> IpAddr {
        let n = self.endpoints.len();
        let endpoint = match a {
            // The chosen endpoint, or the next one that has an address of the family.
            AddrGen::Endpoint(i) => (0..n).find_map(|d| self.endpoint_address((i + d) % n, v6)),
            AddrGen::Pool(_) => None,
        };
        endpoint.unwrap_or_else(|| {
            let i = match a {
                AddrGen::Endpoint(i) | AddrGen::Pool(i) => i,
            };
            let pool = if v6 { POOL_V6 } else { POOL_V4 };
            pool[i % pool.len()].parse().unwrap()
        })
    }

    /// The concrete flow `f` describes in this configuration.
    pub fn flow(&self, f: &FlowGen) -> Flow {
        let src = self.address(f.src, f.v6);
        let dst = self.address(f.dst, f.v6 != f.mixed);
        let (protocol, ports, icmp) = match f.protocol {
            FlowProtocolGen::Tcp => (6, true, false),
            FlowProtocolGen::Udp => (17, true, false),
            FlowProtocolGen::Sctp => (132, true, false),
            FlowProtocolGen::UdpLite => (136, true, false),
            FlowProtocolGen::Icmp => (if f.v6 { 58 } else { 1 }, false, true),
            FlowProtocolGen::WrongIcmp => (if f.v6 { 1 } else { 58 }, false, true),
            FlowProtocolGen::Other(p) => (p, false, false),
        };
        if f.raw {
            return Flow {
                src,
                dst,
                protocol,
                src_port: f.src_port,
                dst_port: f.dst_port,
                icmp_type: f.icmp_type,
                icmp_code: f.icmp_code,
            };
        }
        let icmp_type = f.icmp_type.filter(|_| icmp);
        Flow {
            src,
            dst,
            protocol,
            src_port: f.src_port.filter(|_| ports),
            dst_port: f.dst_port.filter(|_| ports),
            icmp_type,
            icmp_code: f.icmp_code.filter(|_| icmp_type.is_some()),
        }
    }
}

/// The classifier's key of a flow.
pub fn key(flow: &Flow) -> FlowKey {
    FlowKey {
        src: flow.src,
        dst: flow.dst,
        protocol: flow.protocol,
        src_port: flow.src_port,
        dst_port: flow.dst_port,
        icmp_type: flow.icmp_type,
        icmp_code: flow.icmp_code,
    }
}

// ---------------------------------------------------------------------------------------------
// The allocation-free verdict, named

/// What `Snapshot::decide` said, its ids named through the snapshot, in the shape of the
/// reference [`Decision`] so that the two compare field by field. `decide` keeps at most
/// [`LOGGED_CAPACITY`] Log rules per side and counts the rest: compare with [`capped`].
pub fn name_verdict(snapshot: &Snapshot, v: &FlowVerdict) -> (Decision, Vec<u32>) {
    let verdict = if v.allowed {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    let (trace, note, logged_totals) = match v.outcome {
        FlowOutcome::MixedFamilies => (Vec::new(), Some(MIXED_FAMILIES_NOTE.to_owned()), vec![]),
        FlowOutcome::Unmatched(rule) => {
            let mut entry = named_rule(snapshot, TraceSide::None, rule, v.allowed);
            entry.endpoint = None;
            (vec![entry], None, vec![0])
        }
        FlowOutcome::Evaluated => {
            let sides = [
                (TraceSide::Egress, v.egress),
                (TraceSide::Ingress, v.ingress),
            ];
            let named: Vec<(TraceEntry, u32)> = sides
                .into_iter()
                .filter_map(|(side, s)| s.map(|s| named_side(snapshot, side, &s)))
                .collect();
            let totals = named.iter().map(|(_, t)| *t).collect();
            (named.into_iter().map(|(e, _)| e).collect(), None, totals)
        }
    };
    let decision = Decision {
        verdict,
        trace,
        note,
    };
    (decision, logged_totals)
}

/// The reference decision with each side's Log rules cut to what `decide` keeps, and how many
/// each side had.
pub fn capped(decision: &Decision) -> (Decision, Vec<u32>) {
    let mut capped = decision.clone();
    let mut totals = Vec::new();
    for entry in &mut capped.trace {
        totals.push(entry.logged.len() as u32);
        entry.logged.truncate(LOGGED_CAPACITY);
    }
    (capped, totals)
}

fn named_side(snapshot: &Snapshot, side: TraceSide, v: &SideVerdict) -> (TraceEntry, u32) {
    let mut entry = named_rule(snapshot, side, v.rule, v.allowed);
    entry.endpoint = Some(snapshot.endpoint_name(v.endpoint).map_or_else(
        || format!("<unknown endpoint {:?}>", v.endpoint),
        str::to_owned,
    ));
    entry.logged = v
        .logged
        .iter()
        .map(|id| match snapshot.rule(id) {
            Some(info) => LoggedRule {
                tier: info.tier.map(str::to_owned),
                policy: info.policy.unwrap_or("<no policy>").to_owned(),
                rule: info.index.map_or(usize::MAX, |i| i as usize),
            },
            None => LoggedRule {
                tier: None,
                policy: format!("<unknown rule {id:?}>"),
                rule: usize::MAX,
            },
        })
        .collect();
    (entry, v.logged.total())
}

/// A trace entry for the deciding rule `id`; the endpoint and Log rules are filled in after.
fn named_rule(snapshot: &Snapshot, side: TraceSide, id: RuleId, allowed: bool) -> TraceEntry {
    let action = if allowed {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    let Some(info) = snapshot.rule(id) else {
        return TraceEntry {
            side,
            endpoint: None,
            stage: TraceStage::Normal,
            tier: None,
            policy: Some(format!("<unknown rule {id:?}>")),
            rule: None,
            action,
            default: None,
            logged: Vec::new(),
        };
    };
    TraceEntry {
        side,
        endpoint: None,
        stage: match info.stage {
            RuleStage::Failsafe => TraceStage::Failsafe,
            RuleStage::Untracked => TraceStage::Untracked,
            RuleStage::PreDnat => TraceStage::PreDnat,
            RuleStage::Normal => TraceStage::Normal,
            RuleStage::Profile => TraceStage::Profile,
        },
        tier: info.tier.map(str::to_owned),
        policy: info.policy.map(str::to_owned),
        rule: info.index.map(|i| i as usize),
        action,
        default: info.default.map(|d| match d {
            DefaultKind::TierEnd => DefaultReason::TierEnd,
            DefaultKind::ProfilesNoMatch => DefaultReason::ProfilesNoMatch,
            DefaultKind::WorkloadAllow => DefaultReason::WorkloadAllow,
            DefaultKind::HostDeny => DefaultReason::HostDeny,
            DefaultKind::Failsafe => DefaultReason::Failsafe,
            DefaultKind::UnmatchedTraffic => DefaultReason::UnmatchedTraffic,
        }),
        logged: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Running

/// A runner with `cases` cases (or `PORTCULLIS_PROPTEST_CASES`, for longer runs), seeded from
/// `PORTCULLIS_PROPTEST_SEED` (64 hex digits) when set, else randomly; the seed is printed so
/// that a failure can be replayed.
pub fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PORTCULLIS_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    let seed: [u8; 32] = match std::env::var("PORTCULLIS_PROPTEST_SEED") {
        Ok(hex) => parse_seed(&hex),
        Err(_) => random_seed(),
    };
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    eprintln!("PORTCULLIS_PROPTEST_SEED={hex}");
    let config = ProptestConfig {
        cases,
        max_shrink_iters: 4096,
        max_global_rejects: cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
}

/// 32 random bytes from the standard library's per-process hash keys.
fn random_seed() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    seed
}

fn parse_seed(hex: &str) -> [u8; 32] {
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16)
            .expect("PORTCULLIS_PROPTEST_SEED must be 64 hex digits");
    }
    seed
}
