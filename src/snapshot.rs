//! The compiled, immutable policy snapshot and the handle through which the config thread
//! publishes it and the workers load it.
//!
//! A [`Snapshot`] is built off to the side by [`crate::compile::compile`] and never changes.
//! [`Snapshot::decide`] classifies the first packet of a flow without allocating or locking
//! and returns a [`FlowVerdict`]: the verdict, and for each side that ran the deciding rule and
//! the Log rules hit, as [`RuleId`]s. The dataplane counts per-rule hits by id and names them
//! with [`Snapshot::rule`] when it writes metrics or log lines.
//!
//! This module is what the hot path sees: it uses no model, selector or policy types.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use ipnet::IpNet;

use crate::compile::classify;
use crate::compile::program::{FailsafePorts, NamedPorts, Program};
use crate::compile::table::{AddressIndex, RemoteClasses, ServiceClasses};

/// What the classifier looks at for the first packet of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

/// A rule of the snapshot: a policy or profile rule, or a default that can decide (tier end,
/// endpoint default, failsafe, unmatched traffic). Dense from zero to
/// [`Snapshot::rule_count`], so that per-rule counters can be a plain array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u32);

/// An endpoint of the snapshot, dense from zero to [`Snapshot::endpoint_count`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub u32);

/// How many Log rules a side records without allocating; more are counted, not kept.
pub const LOGGED_CAPACITY: usize = 4;

/// The Log rules a side hit, in evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedRules {
    ids: [RuleId; LOGGED_CAPACITY],
    len: u8,
    total: u32,
}

impl Default for LoggedRules {
    fn default() -> Self {
        LoggedRules {
            ids: [RuleId(0); LOGGED_CAPACITY],
            len: 0,
            total: 0,
        }
    }
}

impl LoggedRules {
    pub(crate) fn push(&mut self, rule: RuleId) {
        if let Some(slot) = self.ids.get_mut(usize::from(self.len)) {
            *slot = rule;
            self.len += 1;
        }
        self.total = self.total.saturating_add(1);
    }

    /// The recorded Log rules (at most [`LOGGED_CAPACITY`]).
    pub fn iter(&self) -> impl Iterator<Item = RuleId> + '_ {
        self.ids.iter().take(usize::from(self.len)).copied()
    }

    /// How many Log rules matched, recorded or not.
    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// How one side (egress of the source endpoint, ingress of the destination endpoint) went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideVerdict {
    pub endpoint: EndpointId,
    pub allowed: bool,
    /// The rule or default that decided.
    pub rule: RuleId,
    pub logged: LoggedRules,
}

/// Which case of the flow verdict applied (SPEC §A1, §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowOutcome {
    /// At least one address is an endpoint; its side(s) ran.
    Evaluated,
    /// Neither address is an endpoint: the `unmatchedTrafficAction` setting, as this rule.
    Unmatched(RuleId),
    /// The addresses are of different families: undefined, denied.
    MixedFamilies,
}

/// The compiled verdict of a flow, without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowVerdict {
    pub allowed: bool,
    pub outcome: FlowOutcome,
    pub egress: Option<SideVerdict>,
    pub ingress: Option<SideVerdict>,
}

/// Where in an endpoint's pipeline a rule sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleStage {
    Failsafe,
    Untracked,
    PreDnat,
    Normal,
    /// Profiles and the endpoint defaults after them.
    Profile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Allow,
    Deny,
    Pass,
    Log,
}

/// The side of an endpoint a policy or profile rule belongs to: its `ingress` or `egress`
/// list. Defaults have none: one default id stands for both sides (a tier's end, an
/// endpoint default, failsafe, unmatched traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleDirection {
    Ingress,
    Egress,
}

impl RuleDirection {
    /// `ingress` or `egress`, as in metric labels, `/status` and log lines.
    pub fn name(self) -> &'static str {
        match self {
            RuleDirection::Ingress => "ingress",
            RuleDirection::Egress => "egress",
        }
    }
}

/// Which default a synthetic rule stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultKind {
    TierEnd,
    ProfilesNoMatch,
    WorkloadAllow,
    HostDeny,
    Failsafe,
    UnmatchedTraffic,
}

/// What a [`RuleId`] stands for, with names for metrics and log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInfo<'a> {
    pub stage: RuleStage,
    pub tier: Option<&'a str>,
    /// `KIND/NAME`, `KIND/NAMESPACE/NAME` or `Profile/NAME`; `None` for a default.
    pub policy: Option<&'a str>,
    /// The policy's rule list the rule sits in; `None` for a default.
    pub direction: Option<RuleDirection>,
    /// Index in the policy's rule list for its direction; `None` for a default.
    pub index: Option<u32>,
    pub action: RuleAction,
    pub default: Option<DefaultKind>,
}

/// A rule's metadata, with names as indices into the snapshot's name tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuleMeta {
    pub stage: RuleStage,
    pub tier: Option<u32>,
    pub policy: Option<u32>,
    pub direction: Option<RuleDirection>,
    pub index: Option<u32>,
    pub action: RuleAction,
    pub default: Option<DefaultKind>,
}

/// Every rule id's metadata and the names it refers to. Shared (`Arc`) so that per-rule
/// counters kept for a snapshot can still be named after the snapshot is gone.
#[derive(Debug, Default)]
pub struct RuleTable {
    pub(crate) rules: Box<[RuleMeta]>,
    pub(crate) tier_names: Box<[String]>,
    pub(crate) policy_names: Box<[String]>,
}

impl RuleTable {
    /// What a rule id stands for.
    pub fn rule(&self, id: RuleId) -> Option<RuleInfo<'_>> {
        let meta = self.rules.get(id.0 as usize)?;
        fn name(table: &[String], i: Option<u32>) -> Option<&str> {
            i.and_then(|i| table.get(i as usize)).map(String::as_str)
        }
        Some(RuleInfo {
            stage: meta.stage,
            tier: name(&self.tier_names, meta.tier),
            policy: name(&self.policy_names, meta.policy),
            direction: meta.direction,
            index: meta.index,
            action: meta.action,
            default: meta.default,
        })
    }

    /// The stage a rule belongs to, without resolving its names.
    #[inline]
    pub fn stage(&self, id: RuleId) -> Option<RuleStage> {
        self.rules.get(id.0 as usize).map(|m| m.stage)
    }

    /// Number of rule ids.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        let strings = |v: &[String]| {
            v.iter()
                .map(|s| s.capacity() + std::mem::size_of::<String>())
                .sum::<usize>()
        };
        self.rules.len() * std::mem::size_of::<RuleMeta>()
            + strings(&self.tier_names)
            + strings(&self.policy_names)
    }
}

/// Settings the packet path applies around policy, compiled in so that a reload changes
/// them together with the policy (SPEC §A1, §A4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPolicy {
    /// Anti-spoofing on: a host endpoint's address arriving on `outside` is dropped.
    pub anti_spoof: bool,
    /// The strict form: sources inside these arrive only on `inside`, others only on
    /// `outside`. Empty: no strict form.
    pub inside_nets: Box<[IpNet]>,
    /// EtherTypes forwarded beyond IPv4, IPv6 and ARP.
    pub allowed_ether_types: Box<[u16]>,
    /// Log-action lines per second at most.
    pub log_rate_limit_per_second: u32,
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy {
            anti_spoof: true,
            inside_nets: Box::new([]),
            allowed_ether_types: Box::new([]),
            log_rate_limit_per_second: 100,
        }
    }
}

impl PathPolicy {
    /// Whether frames of this EtherType (not IPv4, IPv6 or ARP) are forwarded.
    #[inline]
    pub fn allows_ether_type(&self, ether_type: u16) -> bool {
        self.allowed_ether_types.contains(&ether_type)
    }

    /// Whether `addr` lies in one of the inside networks.
    #[inline]
    pub fn is_inside(&self, addr: IpAddr) -> bool {
        self.inside_nets.iter().any(|net| net.contains(&addr))
    }
}

/// One endpoint address, with what the classifier needs of its endpoint so that one index
/// probe is enough: the endpoint, its kind, its program per direction and, per direction, the
/// bitset id of this address in that program's own-address field (resolved at compile time:
/// the address of the endpoint a program runs for is always this one), and its remote-address
/// class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddressEntry {
    pub endpoint: u32,
    pub host: bool,
    pub programs: [u32; 2],
    pub local: [u32; 2],
    /// This address's class among the snapshot's remote-address classes: the other side
    /// of a flow with this address needs no class lookup.
    pub remote_class: u32,
}

/// An immutable compiled policy set.
pub struct Snapshot {
    pub(crate) generation: u64,
    pub(crate) index_v4: AddressIndex<u32, AddressEntry>,
    pub(crate) index_v6: AddressIndex<u128, AddressEntry>,
    /// Endpoint names by [`EndpointId`].
    pub(crate) endpoint_names: Box<[String]>,
    pub(crate) programs: Box<[Program]>,
    /// Protocol and destination port → service class, for every program at once; a single
    /// class when the programs keep their own service tables (over the memory budget).
    pub(crate) service_classes: ServiceClasses,
    /// The other address of a side → remote-address class, per family, for every program;
    /// likewise a single class per family when the programs keep their own tables.
    pub(crate) remote_classes: RemoteClasses,
    /// Failsafe ports per direction (`program::INGRESS`, `program::EGRESS`).
    pub(crate) failsafe: [FailsafePorts; 2],
    pub(crate) named_ports: NamedPorts,
    pub(crate) unmatched_allowed: bool,
    pub(crate) unmatched_rule: RuleId,
    pub(crate) failsafe_rule: RuleId,
    pub(crate) rule_table: Arc<RuleTable>,
    /// Whether any program holds an untracked (doNotTrack) rule: when none does, the
    /// packet path can ask conntrack before policy.
    pub(crate) has_untracked: bool,
    pub(crate) path: PathPolicy,
    /// Rules the compiled programs hold, counting each shared program once.
    pub(crate) compiled_entries: usize,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("endpoints", &self.endpoint_names.len())
            .field("programs", &self.programs.len())
            .field("entries", &self.compiled_entries)
            .field("rules", &self.rule_table.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl Snapshot {
    /// The generation the caller gave [`crate::compile::compile`]: the config thread numbers
    /// its reloads, so that counters and logs can say which policy decided.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Decide the first packet of a flow. No allocation, no lock.
    pub fn decide(&self, key: &FlowKey) -> FlowVerdict {
        classify::classify(self, key, &mut |_, _| {})
    }

    /// An honest estimate of the heap bytes the snapshot holds.
    pub fn memory_bytes(&self) -> usize {
        let strings = |v: &[String]| {
            v.iter()
                .map(|s| s.capacity() + std::mem::size_of::<String>())
                .sum::<usize>()
        };
        std::mem::size_of::<Snapshot>()
            + self.index_v4.heap_bytes()
            + self.index_v6.heap_bytes()
            + self.service_classes.heap_bytes()
            + self.remote_classes.heap_bytes()
            + strings(&self.endpoint_names)
            + self
                .programs
                .iter()
                .map(|p| std::mem::size_of::<Program>() + p.heap_bytes())
                .sum::<usize>()
            + self
                .failsafe
                .iter()
                .map(FailsafePorts::heap_bytes)
                .sum::<usize>()
            + self.named_ports.heap_bytes()
            + self.rule_table.heap_bytes()
            + self
                .path
                .inside_nets
                .len()
                .saturating_mul(std::mem::size_of::<IpNet>())
            + self.path.allowed_ether_types.len() * 2
    }

    /// Number of rule ids (policy and profile rules plus the defaults that can decide).
    pub fn rule_count(&self) -> usize {
        self.rule_table.len()
    }

    /// Number of endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.endpoint_names.len()
    }

    /// Number of distinct compiled programs (endpoints with the same policies share one).
    pub fn program_count(&self) -> usize {
        self.programs.len()
    }

    /// Entries over all programs: rules and synthetic defaults, each shared program once.
    pub fn entry_count(&self) -> usize {
        self.compiled_entries
    }

    /// What a rule id stands for.
    pub fn rule(&self, id: RuleId) -> Option<RuleInfo<'_>> {
        self.rule_table.rule(id)
    }

    /// The stage of a rule id, cheaply (no names resolved).
    #[inline]
    pub fn rule_stage(&self, id: RuleId) -> Option<RuleStage> {
        self.rule_table.stage(id)
    }

    /// Every rule id's metadata, shared: per-rule counters keep it to name their rules
    /// after this snapshot is replaced.
    pub fn rule_table(&self) -> &Arc<RuleTable> {
        &self.rule_table
    }

    /// Whether any untracked (doNotTrack) rule exists. When none does, no packet can be
    /// decided in the untracked stage and conntrack may be asked before policy.
    #[inline]
    pub fn has_untracked_policy(&self) -> bool {
        self.has_untracked
    }

    /// The packet-path settings compiled into this snapshot.
    #[inline]
    pub fn path_policy(&self) -> &PathPolicy {
        &self.path
    }

    /// Whether `addr` belongs to a HostEndpoint (a protected host behind `inside`).
    #[inline]
    pub fn is_host_address(&self, addr: IpAddr) -> bool {
        classify::address_entry(self, addr).is_some_and(|a| a.host)
    }

    /// `HostEndpoint/NAME` or `WorkloadEndpoint/NAMESPACE/NAME`.
    pub fn endpoint_name(&self, id: EndpointId) -> Option<&str> {
        self.endpoint_names.get(id.0 as usize).map(String::as_str)
    }

    /// The endpoint that owns `addr`, if any.
    pub fn endpoint_at(&self, addr: IpAddr) -> Option<EndpointId> {
        classify::address_entry(self, addr).map(|a| EndpointId(a.endpoint))
    }
}

/// The snapshot shared by the config thread (publishes) and the workers (load once per batch).
pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
}

impl fmt::Debug for SnapshotHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotHandle")
            .field("generation", &self.current.load().generation)
            .finish()
    }
}

impl SnapshotHandle {
    pub fn new(snapshot: Snapshot) -> SnapshotHandle {
        SnapshotHandle {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The snapshot in force, for one batch. The guard is cheaper than an `Arc` clone (no
    /// shared counter touched in the common case); hold it for a batch, not for ever, and
    /// use [`SnapshotHandle::load_full`] to keep a snapshot longer.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The snapshot in force, as an `Arc` that may be kept.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Put a new snapshot in force with one atomic store. Loads that started before keep the
    /// old one until they drop it; every later load sees the new one. The generation is the
    /// one the caller compiled it with; publishing does not renumber.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// Generation of the snapshot in force.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::load::load_str;
    use crate::model::{Limits, Model, Settings};

    /// A policy with two ingress rules and one egress rule, and a profile with one of each.
    const RULES: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: web, labels: { role: web } }
spec: { node: n1, expectedIPs: ["203.0.113.10"], profiles: [base] }
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: { name: base }
spec:
  ingress: [{ action: Allow, protocol: UDP }]
  egress: [{ action: Deny }]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: p }
spec:
  selector: role == 'web'
  types: [Ingress, Egress]
  ingress: [{ action: Log }, { action: Allow, protocol: TCP }]
  egress: [{ action: Allow }]
"#;

    #[test]
    fn every_policy_and_profile_rule_knows_its_direction_and_defaults_have_none() {
        let limits = Limits::default();
        let (resources, problems) = load_str("rules.yaml", RULES, &limits);
        assert!(problems.is_empty(), "{problems:#?}");
        let settings = Settings::from_resources(&resources).unwrap();
        let model = Model {
            resources,
            settings,
        };
        let snapshot = crate::compile::compile(&crate::policy::resolve(&model).unwrap(), 1);
        let mut named = Vec::new();
        for id in 0..snapshot.rule_count() {
            let rule = snapshot.rule(RuleId(id as u32)).unwrap();
            assert_eq!(
                rule.direction.is_none(),
                rule.default.is_some(),
                "{rule:?}: a direction exactly when not a default"
            );
            if let (Some(policy), Some(direction), Some(index)) =
                (rule.policy, rule.direction, rule.index)
            {
                named.push((policy.to_owned(), direction.name(), index, rule.action));
            }
        }
        named.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        let expected = [
            ("GlobalNetworkPolicy/p", "egress", 0, RuleAction::Allow),
            ("GlobalNetworkPolicy/p", "ingress", 0, RuleAction::Log),
            ("GlobalNetworkPolicy/p", "ingress", 1, RuleAction::Allow),
            ("Profile/base", "egress", 0, RuleAction::Deny),
            ("Profile/base", "ingress", 0, RuleAction::Allow),
        ]
        .map(|(p, d, i, a)| (p.to_owned(), d, i, a));
        assert_eq!(named, expected);
    }
}
