//! Serde shapes of the YAML resources, exactly as Calico and Kubernetes users write them.
//!
//! These types hold what the file says, not what it means: values that need checking
//! (ports, protocols, actions, CIDRs, selectors) stay raw here and are checked by
//! [`super::validate`], so that one bad value yields a precise problem instead of a
//! failed decode of the whole resource. Unknown fields are decode errors everywhere
//! (`deny_unknown_fields`), which catches typos.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Label map of a resource or a profile's `labelsToApply`.
pub type Labels = BTreeMap<String, String>;

/// Kubernetes-style object metadata. The fields a `kubectl get -o yaml` dump carries are
/// accepted so that such a dump loads; only name, namespace and labels mean anything here.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub generation: Option<i64>,
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    #[serde(default)]
    pub generate_name: Option<String>,
    #[serde(default)]
    pub self_link: Option<String>,
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
    #[serde(default)]
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(default)]
    pub finalizers: Vec<String>,
    #[serde(default)]
    pub owner_references: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub managed_fields: Option<serde::de::IgnoredAny>,
}

/// A port as written: a number, or a string holding `"lo:hi"`, a digit string, or a name.
#[derive(Debug, Clone, PartialEq)]
pub enum PortValue {
    Number(i64),
    Text(String),
}

/// A protocol as written: a number, or a string holding a name or digits.
#[derive(Debug, Clone, PartialEq)]
pub enum ProtocolValue {
    Number(i64),
    Text(String),
}

/// Kubernetes `IntOrString`, used by KNP ports.
#[derive(Debug, Clone, PartialEq)]
pub enum IntOrString {
    Int(i64),
    Text(String),
}

/// Failsafe port list of a FelixConfiguration: the word `none`, or a list of entries.
#[derive(Debug, Clone, PartialEq)]
pub enum FailsafeList {
    None,
    Ports(Vec<FailsafePort>),
}

// ---------------------------------------------------------------------------------------------
// Calico projectcalico.org/v3 rules

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub action: String,
    #[serde(default)]
    pub protocol: Option<ProtocolValue>,
    #[serde(default)]
    pub not_protocol: Option<ProtocolValue>,
    #[serde(default)]
    pub icmp: Option<IcmpFields>,
    #[serde(default, rename = "notICMP")]
    pub not_icmp: Option<IcmpFields>,
    #[serde(default)]
    pub ip_version: Option<i64>,
    #[serde(default)]
    pub source: EntityRule,
    #[serde(default)]
    pub destination: EntityRule,
    /// Application-layer match: unsupported, rejected by validation when present.
    #[serde(default)]
    pub http: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub metadata: Option<RuleMetadata>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IcmpFields {
    #[serde(default, rename = "type")]
    pub icmp_type: Option<i64>,
    #[serde(default)]
    pub code: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntityRule {
    #[serde(default)]
    pub nets: Vec<String>,
    #[serde(default)]
    pub not_nets: Vec<String>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub not_selector: Option<String>,
    #[serde(default)]
    pub namespace_selector: Option<String>,
    #[serde(default)]
    pub ports: Vec<PortValue>,
    #[serde(default)]
    pub not_ports: Vec<PortValue>,
    #[serde(default)]
    pub service_accounts: Option<ServiceAccountMatch>,
    /// Kubernetes Service match: unsupported, rejected by validation when present.
    #[serde(default)]
    pub services: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountMatch {
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub selector: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Calico projectcalico.org/v3 resources

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GlobalNetworkPolicySpec {
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub order: Option<f64>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub namespace_selector: Option<String>,
    #[serde(default)]
    pub service_account_selector: Option<String>,
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub ingress: Vec<Rule>,
    #[serde(default)]
    pub egress: Vec<Rule>,
    #[serde(default)]
    pub do_not_track: bool,
    #[serde(default, rename = "preDNAT")]
    pub pre_dnat: bool,
    #[serde(default)]
    pub apply_on_forward: bool,
    /// Accepted for compatibility; no effect here.
    #[serde(default)]
    pub performance_hints: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub order: Option<f64>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub service_account_selector: Option<String>,
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub ingress: Vec<Rule>,
    #[serde(default)]
    pub egress: Vec<Rule>,
    /// Accepted for compatibility; no effect here.
    #[serde(default)]
    pub performance_hints: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TierSpec {
    #[serde(default)]
    pub order: Option<f64>,
    #[serde(default)]
    pub default_action: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileSpec {
    #[serde(default)]
    pub ingress: Vec<Rule>,
    #[serde(default)]
    pub egress: Vec<Rule>,
    #[serde(default)]
    pub labels_to_apply: Labels,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkSetSpec {
    #[serde(default)]
    pub nets: Vec<String>,
}

/// A named port declared on an endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointPort {
    pub name: String,
    pub port: i64,
    pub protocol: ProtocolValue,
    #[serde(default)]
    pub host_port: Option<i64>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostEndpointSpec {
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub interface_name: Option<String>,
    #[serde(default, rename = "expectedIPs")]
    pub expected_ips: Vec<String>,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEndpointSpec {
    #[serde(default)]
    pub orchestrator: Option<String>,
    #[serde(default)]
    pub workload: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default, rename = "containerID")]
    pub container_id: Option<String>,
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub service_account_name: Option<String>,
    #[serde(default)]
    pub ip_networks: Vec<String>,
    #[serde(default, rename = "ipNATs")]
    pub ip_nats: Vec<IpNat>,
    #[serde(default)]
    pub ipv4_gateway: Option<String>,
    #[serde(default)]
    pub ipv6_gateway: Option<String>,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub interface_name: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpNat {
    #[serde(rename = "internalIP")]
    pub internal_ip: String,
    #[serde(rename = "externalIP")]
    pub external_ip: String,
}

/// One entry of a FelixConfiguration failsafe port list.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FailsafePort {
    pub protocol: String,
    pub port: i64,
    #[serde(default)]
    pub net: Option<String>,
}

/// FelixConfiguration `default`: the fields that apply to portcullis. Every other field of
/// Calico's FelixConfiguration is accepted (so real deployments load) and collected in `other`,
/// where validation checks the name against Calico's list and rejects typos.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    #[serde(default)]
    pub failsafe_inbound_host_ports: Option<FailsafeList>,
    #[serde(default)]
    pub failsafe_outbound_host_ports: Option<FailsafeList>,
    #[serde(default)]
    pub log_severity_screen: Option<String>,
    #[serde(default)]
    pub prometheus_metrics_enabled: Option<bool>,
    #[serde(default)]
    pub prometheus_metrics_port: Option<i64>,
    #[serde(default)]
    pub prometheus_metrics_host: Option<String>,
    #[serde(default)]
    pub health_enabled: Option<bool>,
    #[serde(default)]
    pub health_port: Option<i64>,
    #[serde(default)]
    pub health_host: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde::de::IgnoredAny>,
}

/// Conntrack timeouts of a GatewayConfiguration, as duration strings (`30s`, `5m`, `120h`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConntrackTimeouts {
    #[serde(default)]
    pub tcp_syn_sent: Option<String>,
    #[serde(default)]
    pub tcp_established: Option<String>,
    #[serde(default)]
    pub tcp_fin_wait: Option<String>,
    #[serde(default)]
    pub tcp_close_wait: Option<String>,
    #[serde(default)]
    pub tcp_time_wait: Option<String>,
    #[serde(default)]
    pub tcp_close: Option<String>,
    #[serde(default)]
    pub udp_unreplied: Option<String>,
    #[serde(default)]
    pub udp_replied: Option<String>,
    #[serde(default)]
    pub icmp: Option<String>,
    #[serde(default)]
    pub other: Option<String>,
}

/// GatewayConfiguration `default` (`apiVersion: portcullis/v1`): portcullis-specific settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayConfigurationSpec {
    #[serde(default)]
    pub unmatched_traffic_action: Option<String>,
    #[serde(default)]
    pub anti_spoof: Option<bool>,
    #[serde(default)]
    pub inside_nets: Vec<String>,
    #[serde(default)]
    pub allowed_ether_types: Vec<i64>,
    #[serde(default)]
    pub conntrack_max_entries: Option<i64>,
    #[serde(default)]
    pub conntrack_timeouts: Option<ConntrackTimeouts>,
    #[serde(default)]
    pub tcp_loose_pickup: Option<bool>,
    #[serde(default)]
    pub revalidate_on_reload: Option<bool>,
    #[serde(default)]
    pub fragment_tracker_max_entries: Option<i64>,
    #[serde(default)]
    pub log_rate_limit_per_second: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Old `apiVersion: v1` policy

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct V1PolicySpec {
    #[serde(default)]
    pub order: Option<f64>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub ingress: Vec<V1Rule>,
    #[serde(default)]
    pub egress: Vec<V1Rule>,
    #[serde(default)]
    pub do_not_track: bool,
    #[serde(default, rename = "preDNAT")]
    pub pre_dnat: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct V1Rule {
    pub action: String,
    #[serde(default)]
    pub protocol: Option<ProtocolValue>,
    #[serde(default)]
    pub not_protocol: Option<ProtocolValue>,
    #[serde(default)]
    pub icmp: Option<IcmpFields>,
    #[serde(default, rename = "notICMP")]
    pub not_icmp: Option<IcmpFields>,
    #[serde(default)]
    pub ip_version: Option<i64>,
    #[serde(default)]
    pub source: V1EntityRule,
    #[serde(default)]
    pub destination: V1EntityRule,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct V1EntityRule {
    /// Deprecated tag match: unsupported, rejected by validation when present.
    #[serde(default)]
    pub tag: Option<String>,
    /// Deprecated tag match: unsupported, rejected by validation when present.
    #[serde(default)]
    pub not_tag: Option<String>,
    #[serde(default)]
    pub net: Option<String>,
    #[serde(default)]
    pub not_net: Option<String>,
    #[serde(default)]
    pub nets: Vec<String>,
    #[serde(default)]
    pub not_nets: Vec<String>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub not_selector: Option<String>,
    #[serde(default)]
    pub ports: Vec<PortValue>,
    #[serde(default)]
    pub not_ports: Vec<PortValue>,
}

// ---------------------------------------------------------------------------------------------
// Kubernetes networking.k8s.io/v1 NetworkPolicy and v1 Namespace

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: Labels,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sNetworkPolicySpec {
    #[serde(default)]
    pub pod_selector: LabelSelector,
    #[serde(default)]
    pub policy_types: Vec<String>,
    #[serde(default)]
    pub ingress: Vec<K8sIngressRule>,
    #[serde(default)]
    pub egress: Vec<K8sEgressRule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct K8sIngressRule {
    #[serde(default)]
    pub from: Vec<K8sPeer>,
    #[serde(default)]
    pub ports: Vec<K8sPort>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct K8sEgressRule {
    #[serde(default)]
    pub to: Vec<K8sPeer>,
    #[serde(default)]
    pub ports: Vec<K8sPort>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sPeer {
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub ip_block: Option<IpBlock>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: String,
    #[serde(default)]
    pub except: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sPort {
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub port: Option<IntOrString>,
    #[serde(default)]
    pub end_port: Option<i64>,
}

/// Kubernetes Namespace: only its labels matter. `spec` and `status` of a dump are accepted.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    #[serde(default)]
    pub finalizers: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// One decoded resource

/// One resource of the directory, decoded into the shape its `apiVersion`/`kind` names.
/// `metadata` is shared by all kinds and held beside the spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Namespace(NamespaceSpec),
    WorkloadEndpoint(WorkloadEndpointSpec),
    HostEndpoint(HostEndpointSpec),
    NetworkSet(NetworkSetSpec),
    GlobalNetworkSet(NetworkSetSpec),
    Profile(ProfileSpec),
    Tier(TierSpec),
    GlobalNetworkPolicy(GlobalNetworkPolicySpec),
    NetworkPolicy(NetworkPolicySpec),
    V1Policy(V1PolicySpec),
    K8sNetworkPolicy(K8sNetworkPolicySpec),
    FelixConfiguration(FelixConfigurationSpec),
    GatewayConfiguration(GatewayConfigurationSpec),
}

/// The kinds a directory may hold, with the `apiVersion` each belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    WorkloadEndpoint,
    HostEndpoint,
    NetworkSet,
    GlobalNetworkSet,
    Profile,
    Tier,
    GlobalNetworkPolicy,
    NetworkPolicy,
    V1Policy,
    K8sNetworkPolicy,
    FelixConfiguration,
    GatewayConfiguration,
}

pub const CALICO_V3: &str = "projectcalico.org/v3";
pub const K8S_NETWORKING_V1: &str = "networking.k8s.io/v1";
pub const CORE_V1: &str = "v1";
pub const PORTCULLIS_V1: &str = "portcullis/v1";

impl Kind {
    /// The kind named by a resource header, or `None` for an unknown pair.
    pub fn from_header(api_version: &str, kind: &str) -> Option<Kind> {
        Some(match (api_version, kind) {
            (CORE_V1, "Namespace") => Kind::Namespace,
            (CORE_V1, "policy") => Kind::V1Policy,
            (CALICO_V3, "WorkloadEndpoint") => Kind::WorkloadEndpoint,
            (CALICO_V3, "HostEndpoint") => Kind::HostEndpoint,
            (CALICO_V3, "NetworkSet") => Kind::NetworkSet,
            (CALICO_V3, "GlobalNetworkSet") => Kind::GlobalNetworkSet,
            (CALICO_V3, "Profile") => Kind::Profile,
            (CALICO_V3, "Tier") => Kind::Tier,
            (CALICO_V3, "GlobalNetworkPolicy") => Kind::GlobalNetworkPolicy,
            (CALICO_V3, "NetworkPolicy") => Kind::NetworkPolicy,
            (CALICO_V3, "FelixConfiguration") => Kind::FelixConfiguration,
            (K8S_NETWORKING_V1, "NetworkPolicy") => Kind::K8sNetworkPolicy,
            (PORTCULLIS_V1, "GatewayConfiguration") => Kind::GatewayConfiguration,
            _ => return None,
        })
    }

    /// The `kind:` word as written in YAML (used in problem messages: `KIND/NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::HostEndpoint => "HostEndpoint",
            Kind::NetworkSet => "NetworkSet",
            Kind::GlobalNetworkSet => "GlobalNetworkSet",
            Kind::Profile => "Profile",
            Kind::Tier => "Tier",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::V1Policy => "policy",
            Kind::K8sNetworkPolicy => "NetworkPolicy",
            Kind::FelixConfiguration => "FelixConfiguration",
            Kind::GatewayConfiguration => "GatewayConfiguration",
        }
    }

    /// Whether resources of this kind live in a namespace (`metadata.namespace`, default `default`).
    pub fn is_namespaced(self) -> bool {
        matches!(
            self,
            Kind::WorkloadEndpoint
                | Kind::NetworkSet
                | Kind::NetworkPolicy
                | Kind::K8sNetworkPolicy
        )
    }
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Namespace(_) => Kind::Namespace,
            Spec::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            Spec::HostEndpoint(_) => Kind::HostEndpoint,
            Spec::NetworkSet(_) => Kind::NetworkSet,
            Spec::GlobalNetworkSet(_) => Kind::GlobalNetworkSet,
            Spec::Profile(_) => Kind::Profile,
            Spec::Tier(_) => Kind::Tier,
            Spec::GlobalNetworkPolicy(_) => Kind::GlobalNetworkPolicy,
            Spec::NetworkPolicy(_) => Kind::NetworkPolicy,
            Spec::V1Policy(_) => Kind::V1Policy,
            Spec::K8sNetworkPolicy(_) => Kind::K8sNetworkPolicy,
            Spec::FelixConfiguration(_) => Kind::FelixConfiguration,
            Spec::GatewayConfiguration(_) => Kind::GatewayConfiguration,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values that may be written as a number or as a string

/// Visitor for "number or string" values; `make_int`/`make_text` build the concrete type.
struct NumberOrText<T> {
    expecting: &'static str,
    make_int: fn(i64) -> T,
    make_text: fn(String) -> T,
}

impl<'de, T> serde::de::Visitor<'de> for NumberOrText<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        Ok((self.make_int)(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        i64::try_from(v)
            .map(self.make_int)
            .map_err(|_| E::custom(format!("number {v} is out of range")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        Ok((self.make_text)(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<T, E> {
        Ok((self.make_text)(v))
    }
}

impl<'de> Deserialize<'de> for PortValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrText {
            expecting: "a port number, a \"lo:hi\" range or a port name",
            make_int: PortValue::Number,
            make_text: PortValue::Text,
        })
    }
}

impl<'de> Deserialize<'de> for ProtocolValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrText {
            expecting: "a protocol name or number",
            make_int: ProtocolValue::Number,
            make_text: ProtocolValue::Text,
        })
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrText {
            expecting: "a number or a string",
            make_int: IntOrString::Int,
            make_text: IntOrString::Text,
        })
    }
}

impl<'de> Deserialize<'de> for FailsafeList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FailsafeList;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`none` or a list of {protocol, port} entries")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FailsafeList, E> {
                if v.eq_ignore_ascii_case("none") {
                    Ok(FailsafeList::None)
                } else {
                    Err(E::custom(format!(
                        "expected `none` or a list of {{protocol, port}} entries, found {v:?}"
                    )))
                }
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FailsafeList, A::Error> {
                let mut ports = Vec::new();
                while let Some(p) = seq.next_element()? {
                    ports.push(p);
                }
                Ok(FailsafeList::Ports(ports))
            }
        }
        d.deserialize_any(V)
    }
}
