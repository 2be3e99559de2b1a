//! From a [`Resolved`] policy set to a [`Snapshot`].
//!
//! Steps: number every rule and default (rule ids and their names); find, per endpoint and
//! direction, the policies that apply (with [`Policy::applies_to`], evaluated once per
//! distinct label set); build one program per distinct (endpoint kind, direction, applicable
//! policies, profiles), shared by every endpoint with that key; index endpoint addresses.
//! A rule's criteria become key sets once per rule, whatever the number of programs that
//! hold it, and a selector's address set once per selector, whatever the number of rules
//! that use it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use ipnet::IpNet;

use super::addrset::{AddrSet, Family, Key, RangeSet};
use super::bitset::{FieldBits, build_field, build_joint};
use super::keys;
use super::program::{
    Act, ClassedField, DeclaredPort, EGRESS, Entry, FailsafePorts, Field, INGRESS, JointField,
    L4Field, NO_CHECK, NamedCheck, NamedPorts, NetRange, PortList, ProbeField, ProbeOrder, Program,
    RemoteField, ServiceField, SideCheck,
};
use super::table::{AddressIndex, ClassTable, IntervalTable, RemoteClasses, ServiceClasses};
use crate::model::resources::Labels;
use crate::model::settings::UnmatchedTrafficAction;
use crate::model::settings::{FailsafePort as SettingsFailsafePort, FailsafeProtocol};
use crate::policy::resolve::PathSettings;
use crate::policy::{
    Action, Direction, Endpoint, EndpointKind, IcmpMatch, IpVersion, Policy, PortMatch, Resolved,
    Rule, Side, Stage, TierDefaultAction,
};
use crate::selector::Selector;
use crate::snapshot::{
    AddressEntry, DefaultKind, PathPolicy, RuleAction, RuleDirection, RuleId, RuleMeta, RuleStage,
    RuleTable, Snapshot,
};

const DIRECTIONS: [Direction; 2] = [Direction::Ingress, Direction::Egress];

fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Ingress => INGRESS,
        Direction::Egress => EGRESS,
    }
}

/// Compile `resolved` into a snapshot tagged `generation`.
pub(crate) fn build(resolved: &Resolved, generation: u64) -> Snapshot {
    build_with(resolved, generation, shared_classes_budget)
}

/// [`build`], with `class_budget` giving the bytes the class arrays of a shared field
/// (remote address per family, service) may take from the bytes of the programs' own tables
/// of that field (tests force either layout).
pub(crate) fn build_with(
    resolved: &Resolved,
    generation: u64,
    class_budget: fn(usize) -> usize,
) -> Snapshot {
    build_with_joint(resolved, generation, class_budget, JOINT_BUDGET)
}

/// [`build_with`], with `joint_budget` for the joint address fields.
pub(crate) fn build_with_joint(
    resolved: &Resolved,
    generation: u64,
    class_budget: fn(usize) -> usize,
    joint_budget: JointBudget,
) -> Snapshot {
    let mut b = Builder::new(resolved);
    b.icmp_in_service = b.icmp_foldable();
    let endpoint_programs = b.assign_programs();
    let remote_classes = share_remote_classes(&mut b.programs, class_budget);
    join_addresses(&mut b.programs, joint_budget);
    let service_classes = share_service_classes(&mut b.programs, class_budget, b.icmp_in_service);
    let (index_v4, index_v6) = b.index_addresses(&endpoint_programs, &remote_classes);
    let endpoint_names = resolved
        .endpoints
        .iter()
        .map(|e| e.display_name.clone())
        .collect();
    let compiled_entries = b.programs.iter().map(|p| p.program.entries.len()).sum();
    let rules = b.ids.metas.into_boxed_slice();
    let has_untracked = b.programs.iter().any(|p| {
        p.program.entries.iter().any(|e| {
            rules
                .get(e.rule.0 as usize)
                .is_some_and(|m| m.stage == RuleStage::Untracked)
        })
    });
    let programs = b.programs.into_iter().map(|p| p.program).collect();
    Snapshot {
        generation,
        index_v4,
        index_v6,
        endpoint_names,
        programs,
        service_classes,
        remote_classes,
        failsafe: [
            compile_failsafe(&resolved.settings.failsafe_inbound),
            compile_failsafe(&resolved.settings.failsafe_outbound),
        ],
        named_ports: NamedPorts {
            sets: b
                .named_sets
                .into_iter()
                .map(Vec::into_boxed_slice)
                .collect(),
        },
        unmatched_allowed: resolved.settings.unmatched_traffic_action
            == UnmatchedTrafficAction::Allow,
        unmatched_rule: b.ids.unmatched,
        failsafe_rule: b.ids.failsafe,
        rule_table: Arc::new(RuleTable {
            rules,
            tier_names: resolved.tiers.iter().map(|t| t.name.clone()).collect(),
            policy_names: b.ids.policy_names.into_boxed_slice(),
        }),
        has_untracked,
        path: path_policy(&resolved.path),
        compiled_entries,
    }
}

/// The class arrays of a shared field over all programs may take this many bytes, or
/// [`SHARED_CLASSES_TABLE_FACTOR`] times what the programs' own tables of that field take
/// if that is more; beyond, each program keeps its own table. The arrays cost programs ×
/// classes ids, which a directory with many distinct programs and many distinct bounds
/// (large, or hostile) makes quadratic, where the own tables grow only with the bounds.
const SHARED_CLASSES_FLOOR: usize = 1 << 20;
const SHARED_CLASSES_TABLE_FACTOR: usize = 2;

fn shared_classes_budget(own_table_bytes: usize) -> usize {
    SHARED_CLASSES_FLOOR.max(own_table_bytes.saturating_mul(SHARED_CLASSES_TABLE_FACTOR))
}

/// The fields a family of `program` probes, the sparsest first: the walk stops AND-ing a
/// word at its first zero. Only fields that constrain something; the joint address field
/// in place of the own and other address where the family has it.
fn probe_order(program: &Program, family: usize) -> ProbeOrder {
    let (remote, joint) = if family == 0 {
        (&program.remote_v4.bits, &program.joint_v4)
    } else {
        (&program.remote_v6.bits, &program.joint_v6)
    };
    let local = program.local.get(family).unwrap_or(remote);
    let addresses = if joint.is_used() {
        vec![(ProbeField::Joint, &joint.bits)]
    } else {
        vec![(ProbeField::Local, local), (ProbeField::Remote, remote)]
    };
    let mut order: Vec<(ProbeField, u32)> = addresses
        .into_iter()
        .chain([
            (ProbeField::Service, &program.service.bits),
            (ProbeField::SrcPort, &program.src_port.bits),
            (ProbeField::Icmp, &program.icmp.field.bits),
        ])
        .filter(|(_, bits)| bits.is_active())
        .map(|(field, bits)| (field, bits.density()))
        .collect();
    order.sort_by_key(|&(_, density)| density);
    ProbeOrder::new(order.into_iter().map(|(field, _)| field))
}

/// What the joint address fields ([`JointField`]) may take: per program (its ids and
/// rows), and over the whole snapshot, taken by programs in order until spent. The joint
/// field is an accelerator: past its budget a program probes the two fields apart, as fast
/// as before. At 10,000 bench rules the largest program's joint field takes about 140 KB
/// (845 rows of 19 words, 48 × 69 ids), and the joint fields of both families of all 28
/// programs add about 3.0 MB net (they replace the two fields) to a 7.8 MB snapshot; at
/// 1,000 rules 0.26 MB to 0.75 MB. The per-program cap is about twice the largest and
/// bounds the work a hostile directory's product can cost (the AND stops as soon as it is
/// over); the snapshot cap keeps the joint fields from more than doubling such a snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JointBudget {
    pub per_program: usize,
    pub snapshot: usize,
}

pub(crate) const JOINT_BUDGET: JointBudget = JointBudget {
    per_program: 256 << 10,
    snapshot: 8 << 20,
};

/// No joint field anywhere (tests compare against the fields apart).
#[cfg(test)]
pub(crate) const NO_JOINT: JointBudget = JointBudget {
    per_program: 0,
    snapshot: 0,
};

/// Give each program, per family, its joint address field where both address fields are
/// active, the program uses the shared remote classes and the field fits `budget`; then
/// its probe order anew.
fn join_addresses(programs: &mut [BuiltProgram], budget: JointBudget) {
    let mut left = budget.snapshot;
    for built in programs.iter_mut() {
        let p = &mut built.program;
        let entries = p.entries.len();
        p.joint_v4 = join_family(
            &mut p.local[0],
            &mut p.remote_v4,
            entries,
            &mut left,
            budget,
        );
        p.joint_v6 = join_family(
            &mut p.local[1],
            &mut p.remote_v6,
            entries,
            &mut left,
            budget,
        );
        p.order = [0, 1].map(|family| probe_order(p, family));
    }
}

/// The joint field of one family's own and other address, if wanted and within budget
/// (taken from `left`); then the two fields it replaces are dropped, the walk reading
/// only it. Else an unused one, the two fields left as they are.
fn join_family<K: Key>(
    local: &mut FieldBits,
    remote: &mut RemoteField<K>,
    entries: usize,
    left: &mut usize,
    budget: JointBudget,
) -> JointField {
    let wanted = local.is_active() && remote.bits.is_active() && !remote.by_class.is_empty();
    let max_bytes = budget.per_program.min(*left);
    let Some((bits, ids)) = wanted
        .then(|| build_joint(local, &remote.bits, &remote.by_class, entries, max_bytes))
        .flatten()
    else {
        return JointField::unused();
    };
    let joint = JointField {
        ids,
        classes: remote.by_class.len(),
        bits,
    };
    *left -= joint.heap_bytes();
    *local = FieldBits::inactive();
    remote.bits = FieldBits::inactive();
    remote.by_class = Box::default();
    joint
}

/// One service class table for the snapshot, each program keeping its bitset id per class,
/// unless the class arrays would take more than `budget` gives (see
/// [`shared_classes_budget`]): then an empty one, each program keeping its own table.
fn share_service_classes(
    programs: &mut [BuiltProgram],
    budget: fn(usize) -> usize,
    icmp_in_service: bool,
) -> ServiceClasses {
    let classes = share_classes(programs, |p| &mut p.program.service, budget);
    ServiceClasses::new(classes, icmp_in_service)
}

/// One remote-address class table per family for the snapshot, unless its class arrays
/// would take more than `budget` gives (see [`shared_classes_budget`]).
fn share_remote_classes(
    programs: &mut [BuiltProgram],
    budget: fn(usize) -> usize,
) -> RemoteClasses {
    RemoteClasses {
        v4: share_classes(programs, |p| &mut p.program.remote_v4, budget),
        v6: share_classes(programs, |p| &mut p.program.remote_v6, budget),
    }
}

/// The class table of one field over all programs, each program's field switched to its
/// class array and its own table dropped; or, over budget, an empty class table and every
/// program's field left on its own table.
fn share_classes<K: Key>(
    programs: &mut [BuiltProgram],
    field: fn(&mut BuiltProgram) -> &mut ClassedField<K>,
    budget: fn(usize) -> usize,
) -> ClassTable<K> {
    let fields: Vec<&mut ClassedField<K>> = programs.iter_mut().map(field).collect();
    let tables: Vec<&IntervalTable<K>> = fields.iter().map(|f| &f.table).collect();
    let own_bytes: usize = tables.iter().map(|t| t.heap_bytes()).sum();
    let Some((classes, by_class)) = ClassTable::within(&tables, budget(own_bytes)) else {
        return ClassTable::new(&[]).0;
    };
    for (f, by_class) in fields.into_iter().zip(by_class) {
        f.by_class = by_class;
        f.table = IntervalTable::from_breaks([], 0);
    }
    classes
}

fn path_policy(settings: &PathSettings) -> PathPolicy {
    PathPolicy {
        anti_spoof: settings.anti_spoof,
        inside_nets: settings.inside_nets.iter().map(IpNet::trunc).collect(),
        allowed_ether_types: settings.allowed_ether_types.clone().into_boxed_slice(),
        log_rate_limit_per_second: settings.log_rate_limit_per_second,
    }
}

fn compile_failsafe(ports: &[SettingsFailsafePort]) -> FailsafePorts {
    FailsafePorts::new(ports.iter().map(|p| {
        let protocol = match p.protocol {
            FailsafeProtocol::Tcp => keys_protocol::TCP,
            FailsafeProtocol::Udp => keys_protocol::UDP,
        };
        (protocol, p.port, p.net.as_ref().map(net_range))
    }))
}

mod keys_protocol {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

fn net_range(net: &IpNet) -> NetRange {
    match net {
        IpNet::V4(n) => NetRange::V4(u32::from(n.network()), u32::from(n.broadcast())),
        IpNet::V6(n) => NetRange::V6(u128::from(n.network()), u128::from(n.broadcast())),
    }
}

// ---------------------------------------------------------------------------------------------
// Rule ids and their names

/// A policy in evaluation order, with its tier.
struct Placed<'a> {
    tier: usize,
    policy: &'a Policy,
}

/// Rule numbering: every policy and profile rule, then the defaults.
struct RuleIds<'a> {
    metas: Vec<RuleMeta>,
    policy_names: Vec<String>,
    /// The rules themselves by id (`None` for defaults).
    rules: Vec<Option<&'a Rule>>,
    /// Id of rule 0 of each policy, per direction.
    policy_base: Vec<[u32; 2]>,
    profile_base: Vec<[u32; 2]>,
    tier_end: Vec<RuleId>,
    profiles_no_match: RuleId,
    workload_allow: RuleId,
    host_deny: RuleId,
    failsafe: RuleId,
    unmatched: RuleId,
}

impl<'a> RuleIds<'a> {
    fn new(resolved: &'a Resolved, placed: &[Placed<'a>]) -> RuleIds<'a> {
        let mut ids = RuleIds {
            metas: Vec::new(),
            policy_names: Vec::new(),
            rules: Vec::new(),
            policy_base: Vec::new(),
            profile_base: Vec::new(),
            tier_end: Vec::new(),
            profiles_no_match: RuleId(0),
            workload_allow: RuleId(0),
            host_deny: RuleId(0),
            failsafe: RuleId(0),
            unmatched: RuleId(0),
        };
        for p in placed {
            let name = ids.name(&p.policy.display_name);
            let stage = match p.policy.stage {
                Stage::Untracked => RuleStage::Untracked,
                Stage::PreDnat => RuleStage::PreDnat,
                Stage::Normal => RuleStage::Normal,
            };
            let base = DIRECTIONS.map(|d| {
                ids.add_rules(
                    p.policy.rules(d).unwrap_or_default(),
                    d,
                    stage,
                    Some(p.tier as u32),
                    name,
                )
            });
            ids.policy_base.push(base);
        }
        for profile in &resolved.profiles {
            let name = ids.name(&profile.display_name);
            let base = DIRECTIONS
                .map(|d| ids.add_rules(profile.rules(d), d, RuleStage::Profile, None, name));
            ids.profile_base.push(base);
        }
        for tier in 0..resolved.tiers.len() {
            let id = ids.add_default(
                RuleStage::Normal,
                Some(tier as u32),
                RuleAction::Deny,
                DefaultKind::TierEnd,
            );
            ids.tier_end.push(id);
        }
        use DefaultKind as D;
        use RuleAction::{Allow, Deny};
        ids.profiles_no_match = ids.add_default(RuleStage::Profile, None, Deny, D::ProfilesNoMatch);
        ids.workload_allow = ids.add_default(RuleStage::Profile, None, Allow, D::WorkloadAllow);
        ids.host_deny = ids.add_default(RuleStage::Profile, None, Deny, D::HostDeny);
        ids.failsafe = ids.add_default(RuleStage::Failsafe, None, Allow, D::Failsafe);
        let unmatched = match resolved.settings.unmatched_traffic_action {
            UnmatchedTrafficAction::Allow => Allow,
            UnmatchedTrafficAction::Deny => Deny,
        };
        ids.unmatched = ids.add_default(RuleStage::Normal, None, unmatched, D::UnmatchedTraffic);
        ids
    }

    fn name(&mut self, name: &str) -> u32 {
        self.policy_names.push(name.to_owned());
        (self.policy_names.len() - 1) as u32
    }

    /// Number `rules`; returns the id of the first.
    fn add_rules(
        &mut self,
        rules: &'a [Rule],
        direction: Direction,
        stage: RuleStage,
        tier: Option<u32>,
        policy: u32,
    ) -> u32 {
        let base = self.metas.len() as u32;
        let direction = match direction {
            Direction::Ingress => RuleDirection::Ingress,
            Direction::Egress => RuleDirection::Egress,
        };
        for (index, rule) in rules.iter().enumerate() {
            self.metas.push(RuleMeta {
                stage,
                tier,
                policy: Some(policy),
                direction: Some(direction),
                index: Some(index as u32),
                action: match rule.action {
                    Action::Allow => RuleAction::Allow,
                    Action::Deny => RuleAction::Deny,
                    Action::Pass => RuleAction::Pass,
                    Action::Log => RuleAction::Log,
                },
                default: None,
            });
            self.rules.push(Some(rule));
        }
        base
    }

    fn add_default(
        &mut self,
        stage: RuleStage,
        tier: Option<u32>,
        action: RuleAction,
        default: DefaultKind,
    ) -> RuleId {
        self.metas.push(RuleMeta {
            stage,
            tier,
            policy: None,
            direction: None,
            index: None,
            action,
            default: Some(default),
        });
        self.rules.push(None);
        RuleId((self.metas.len() - 1) as u32)
    }
}

// ---------------------------------------------------------------------------------------------
// The builder

/// What a rule accepts in each field; `None` accepts everything.
#[derive(Debug, Clone, Default)]
struct RuleFields {
    src_v4: Option<RangeSet<u32>>,
    src_v6: Option<RangeSet<u128>>,
    dst_v4: Option<RangeSet<u32>>,
    dst_v6: Option<RangeSet<u128>>,
    service: Option<RangeSet<u32>>,
    icmp: Option<RangeSet<u32>>,
    src_port: Option<RangeSet<u32>>,
    check: Option<NamedCheck>,
    /// The service and ICMP criteria together as folded service keys (see
    /// [`folded_service`]), for snapshots that fold ICMP into the service field.
    folded_service: Option<RangeSet<u32>>,
    /// The rule's service criterion tells ICMP flows apart by port, so ICMP type and code
    /// cannot take the port's place in the key (see [`folded_service`]).
    icmp_unfoldable: bool,
}

/// The programs an endpoint runs, keyed by what determines them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProgramKey {
    host: bool,
    direction: usize,
    /// Indices into the placed policies, in evaluation order.
    policies: Vec<u32>,
    profiles: Vec<usize>,
}

/// A program with the tables of its own-address field, needed only while indexing addresses.
struct BuiltProgram {
    program: Program,
    local_v4: IntervalTable<u32>,
    local_v6: IntervalTable<u128>,
}

/// An entry before its fields are built.
struct Draft {
    act: Act,
    target: u32,
    rule: RuleId,
    fields: Rc<RuleFields>,
}

struct Builder<'a> {
    resolved: &'a Resolved,
    placed: Vec<Placed<'a>>,
    ids: RuleIds<'a>,
    compiled: Vec<Option<Rc<RuleFields>>>,
    wild: Rc<RuleFields>,
    /// Entities grouped by identical labels, each group with its addresses.
    label_groups: Vec<(&'a Labels, AddrSet)>,
    selector_sets: HashMap<Selector, Rc<AddrSet>>,
    named_sets: Vec<Vec<DeclaredPort>>,
    named_index: HashMap<(Option<Selector>, Vec<String>), u32>,
    programs: Vec<BuiltProgram>,
    program_index: HashMap<ProgramKey, u32>,
    /// Whether the programs' service fields hold the ICMP criteria (see
    /// [`Builder::icmp_foldable`]).
    icmp_in_service: bool,
}

impl<'a> Builder<'a> {
    fn new(resolved: &'a Resolved) -> Builder<'a> {
        let placed: Vec<Placed<'a>> = resolved
            .tiers
            .iter()
            .enumerate()
            .flat_map(|(tier, t)| t.policies.iter().map(move |policy| Placed { tier, policy }))
            .collect();
        let ids = RuleIds::new(resolved, &placed);
        let compiled = vec![None; ids.metas.len()];
        Builder {
            resolved,
            placed,
            ids,
            compiled,
            wild: Rc::new(RuleFields::default()),
            label_groups: label_groups(resolved),
            selector_sets: HashMap::new(),
            named_sets: Vec::new(),
            named_index: HashMap::new(),
            programs: Vec::new(),
            program_index: HashMap::new(),
            icmp_in_service: false,
        }
    }

    /// Whether every rule's criteria can be held as folded service keys (ICMP type and
    /// code in the port's place for ICMP protocols): then no program needs an ICMP field,
    /// and ICMP flows probe one field fewer per side. The service classes are the
    /// snapshot's, so the choice is too. Compiles every rule's criteria, which the programs
    /// would compile anyway (memoized), but for rules no endpoint runs.
    fn icmp_foldable(&mut self) -> bool {
        (0..self.ids.rules.len() as u32).all(|i| !self.rule_fields(RuleId(i)).icmp_unfoldable)
    }

    /// Each endpoint's program per direction, building programs as new keys appear.
    fn assign_programs(&mut self) -> Vec<[u32; 2]> {
        // Applicability depends only on labels (and the fixed policy set): evaluate the
        // selectors once per distinct label set.
        let mut applicable: HashMap<&'a Labels, [Vec<u32>; 2]> = HashMap::new();
        let resolved = self.resolved;
        resolved
            .endpoints
            .iter()
            .map(|endpoint| {
                let lists = applicable
                    .entry(&endpoint.labels)
                    .or_insert_with(|| DIRECTIONS.map(|d| self.applicable(endpoint, d)))
                    .clone();
                DIRECTIONS.map(|d| {
                    let host = endpoint.kind == EndpointKind::Host;
                    let di = direction_index(d);
                    let policies = lists[di]
                        .iter()
                        .copied()
                        .filter(|&p| stage_runs(self.placed[p as usize].policy.stage, host, d))
                        .collect();
                    let key = ProgramKey {
                        host,
                        direction: di,
                        policies,
                        profiles: endpoint.profiles.clone(),
                    };
                    self.program_for(key)
                })
            })
            .collect()
    }

    /// Policies that apply to `endpoint` for `direction` in their own stage.
    fn applicable(&self, endpoint: &Endpoint, direction: Direction) -> Vec<u32> {
        self.placed
            .iter()
            .enumerate()
            .filter(|(_, p)| p.policy.applies_to(endpoint, direction, p.policy.stage))
            .map(|(i, _)| i as u32)
            .collect()
    }

    fn program_for(&mut self, key: ProgramKey) -> u32 {
        if let Some(&id) = self.program_index.get(&key) {
            return id;
        }
        let built = self.build_program(&key);
        let id = self.programs.len() as u32;
        self.programs.push(built);
        self.program_index.insert(key, id);
        id
    }

    // -----------------------------------------------------------------------------------------
    // Program layout

    fn build_program(&mut self, key: &ProgramKey) -> BuiltProgram {
        let direction = DIRECTIONS[key.direction];
        let mut drafts: Vec<Draft> = Vec::new();
        let stages: &[Stage] = match (key.host, direction) {
            (true, Direction::Ingress) => &[Stage::Untracked, Stage::PreDnat, Stage::Normal],
            (true, Direction::Egress) => &[Stage::Untracked, Stage::Normal],
            (false, _) => &[Stage::Normal],
        };
        for &stage in stages {
            self.lay_out_stage(&mut drafts, key, direction, stage);
        }
        let resolved = self.resolved;
        for &profile_index in &key.profiles {
            let Some(profile) = resolved.profiles.get(profile_index) else {
                continue;
            };
            let start = drafts.len();
            let base = self.ids.profile_base[profile_index][key.direction];
            for i in 0..profile.rules(direction).len() {
                self.push_rule(&mut drafts, RuleId(base + i as u32));
            }
            set_pass_targets(&mut drafts, start);
        }
        let end = match (key.profiles.is_empty(), key.host) {
            (false, _) => self.ids.profiles_no_match,
            (true, false) => self.ids.workload_allow,
            (true, true) => self.ids.host_deny,
        };
        self.push_default(&mut drafts, end);
        self.assemble(drafts, key.direction)
    }

    /// The tiers of one stage: each tier with applicable policies is a block of their rules,
    /// closed in the normal stage by its Deny end when that is its default action.
    fn lay_out_stage(
        &mut self,
        drafts: &mut Vec<Draft>,
        key: &ProgramKey,
        direction: Direction,
        stage: Stage,
    ) {
        // (tier, policy) of the stage's policies; placed policies are tier-major, so a tier's
        // policies are contiguous.
        let in_stage: Vec<(usize, u32)> = key
            .policies
            .iter()
            .map(|&p| (self.placed[p as usize].tier, p))
            .filter(|&(_, p)| self.placed[p as usize].policy.stage == stage)
            .collect();
        for block in in_stage.chunk_by(|a, b| a.0 == b.0) {
            let start = drafts.len();
            let tier = block[0].0;
            for &(_, p) in block {
                let count = self.placed[p as usize]
                    .policy
                    .rules(direction)
                    .map_or(0, <[Rule]>::len);
                let base = self.ids.policy_base[p as usize][direction_index(direction)];
                for i in 0..count {
                    self.push_rule(drafts, RuleId(base + i as u32));
                }
            }
            let deny_at_end = stage == Stage::Normal
                && self.resolved.tiers[tier].default_action == TierDefaultAction::Deny;
            if deny_at_end {
                self.push_default(drafts, self.ids.tier_end[tier]);
            }
            set_pass_targets(drafts, start);
        }
    }

    fn push_rule(&mut self, drafts: &mut Vec<Draft>, id: RuleId) {
        let act = match self.ids.metas[id.0 as usize].action {
            RuleAction::Allow => Act::Allow,
            RuleAction::Deny => Act::Deny,
            RuleAction::Pass => Act::Pass,
            RuleAction::Log => Act::Log,
        };
        let fields = self.rule_fields(id);
        drafts.push(Draft {
            act,
            target: 0,
            rule: id,
            fields,
        });
    }

    fn push_default(&self, drafts: &mut Vec<Draft>, id: RuleId) {
        let act = match self.ids.metas[id.0 as usize].action {
            RuleAction::Allow => Act::Allow,
            _ => Act::Deny,
        };
        drafts.push(Draft {
            act,
            target: 0,
            rule: id,
            fields: Rc::clone(&self.wild),
        });
    }

    /// Entries and field bitsets from the drafts.
    fn assemble(&self, drafts: Vec<Draft>, direction: usize) -> BuiltProgram {
        let mut checks = Vec::new();
        let entries: Box<[Entry]> = drafts
            .iter()
            .map(|d| Entry {
                act: d.act,
                target: d.target,
                rule: d.rule,
                check: match &d.fields.check {
                    Some(c) => {
                        checks.push(c.clone());
                        (checks.len() - 1) as u32
                    }
                    None => NO_CHECK,
                },
            })
            .collect();
        let fields: Vec<&RuleFields> = drafts.iter().map(|d| d.fields.as_ref()).collect();
        let column4 =
            |f: fn(&RuleFields) -> Option<&RangeSet<u32>>| -> Vec<Option<&RangeSet<u32>>> {
                fields.iter().map(|r| f(r)).collect()
            };
        let column6 =
            |f: fn(&RuleFields) -> Option<&RangeSet<u128>>| -> Vec<Option<&RangeSet<u128>>> {
                fields.iter().map(|r| f(r)).collect()
            };
        let src4 = build_field(&column4(|r| r.src_v4.as_ref()), u32::MAX);
        let src6 = build_field(&column6(|r| r.src_v6.as_ref()), u128::MAX);
        let dst4 = build_field(&column4(|r| r.dst_v4.as_ref()), u32::MAX);
        let dst6 = build_field(&column6(|r| r.dst_v6.as_ref()), u128::MAX);
        // Folded, the service field holds the ICMP criteria and the ICMP field none.
        let (service, service_table) = if self.icmp_in_service {
            build_field(&column4(|r| r.folded_service.as_ref()), keys::L4_MAX)
        } else {
            build_field(&column4(|r| r.service.as_ref()), keys::L4_MAX)
        };
        let (icmp, icmp_table) = if self.icmp_in_service {
            build_field(&vec![None; fields.len()], keys::L4_MAX)
        } else {
            build_field(&column4(|r| r.icmp.as_ref()), keys::L4_MAX)
        };
        let icmp_only_for_icmp = icmp_only_for_icmp(&fields);
        let (sp, sp_table) = build_field(&column4(|r| r.src_port.as_ref()), keys::PORT_MAX);
        // Ingress runs for the destination endpoint, egress for the source one.
        let (
            (local4, local4_table),
            (remote4, remote4_table),
            (local6, local6_table),
            (remote6, remote6_table),
        ) = if direction == INGRESS {
            (dst4, src4, dst6, src6)
        } else {
            (src4, dst4, src6, dst6)
        };
        let mut program = Program {
            entries,
            dense: service.is_dense(),
            order: [ProbeOrder::new([]); 2],
            local: [local4, local6],
            remote_v4: RemoteField {
                by_class: Box::default(),
                bits: remote4,
                table: remote4_table,
            },
            remote_v6: RemoteField {
                by_class: Box::default(),
                bits: remote6,
                table: remote6_table,
            },
            service: ServiceField {
                by_class: Box::default(),
                bits: service,
                table: service_table,
            },
            icmp: L4Field::new(Field {
                bits: icmp,
                table: icmp_table,
            }),
            icmp_only_for_icmp,
            src_port: Field {
                bits: sp,
                table: sp_table,
            },
            checks: checks.into_boxed_slice(),
            joint_v4: JointField::unused(),
            joint_v6: JointField::unused(),
        };
        program.order = [0, 1].map(|family| probe_order(&program, family));
        BuiltProgram {
            program,
            local_v4: local4_table,
            local_v6: local6_table,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Endpoint address index

    fn index_addresses(
        &self,
        endpoint_programs: &[[u32; 2]],
        remote_classes: &RemoteClasses,
    ) -> (
        AddressIndex<u32, AddressEntry>,
        AddressIndex<u128, AddressEntry>,
    ) {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (e, endpoint) in self.resolved.endpoints.iter().enumerate() {
            let programs = endpoint_programs[e];
            for &addr in &endpoint.addresses {
                let local = [INGRESS, EGRESS].map(|d| {
                    let built = &self.programs[programs[d] as usize];
                    match addr {
                        IpAddr::V4(a) => built.local_v4.lookup(u32::from(a)),
                        IpAddr::V6(a) => built.local_v6.lookup(u128::from(a)),
                    }
                });
                let entry = AddressEntry {
                    endpoint: e as u32,
                    host: endpoint.kind == EndpointKind::Host,
                    programs,
                    local,
                    remote_class: match addr {
                        IpAddr::V4(a) => remote_classes.v4.lookup(u32::from(a)),
                        IpAddr::V6(a) => remote_classes.v6.lookup(u128::from(a)),
                    },
                };
                match addr {
                    IpAddr::V4(a) => v4.push((u32::from(a), entry)),
                    IpAddr::V6(a) => v6.push((u128::from(a), entry)),
                }
            }
        }
        (AddressIndex::new(&v4), AddressIndex::new(&v6))
    }

    // -----------------------------------------------------------------------------------------
    // Rule criteria as key sets

    fn rule_fields(&mut self, id: RuleId) -> Rc<RuleFields> {
        let i = id.0 as usize;
        if let Some(Some(fields)) = self.compiled.get(i) {
            return Rc::clone(fields);
        }
        let fields = match self.ids.rules.get(i).copied().flatten() {
            Some(rule) => Rc::new(self.compile_rule(rule)),
            None => Rc::clone(&self.wild),
        };
        if let Some(slot) = self.compiled.get_mut(i) {
            *slot = Some(Rc::clone(&fields));
        }
        fields
    }

    fn compile_rule(&mut self, rule: &Rule) -> RuleFields {
        let src = self.side_addresses(&rule.src);
        let dst = self.side_addresses(&rule.dst);
        let excluded = Family::BOTH.map(|f| family_excluded(rule, f));
        // The family exclusion goes into the source field: both fields are always probed
        // for every flow, so one is enough.
        let src_v4 = if excluded[0] {
            Some(RangeSet::empty())
        } else {
            src.as_ref().map(|s| s.v4.clone())
        };
        let src_v6 = if excluded[1] {
            Some(RangeSet::empty())
        } else {
            src.as_ref().map(|s| s.v6.clone())
        };
        let src_check = self.side_check(&rule.src);
        let dst_check = self.side_check(&rule.dst);
        let check = (src_check.is_some() || dst_check.is_some()).then_some(NamedCheck {
            src: src_check,
            dst: dst_check,
        });
        let service = service_set(rule, self.port_set(&rule.dst));
        let icmp = icmp_set(rule);
        let dst_checked = check.as_ref().is_some_and(|c| c.dst.is_some());
        let folded = folded_service(service.as_ref(), icmp.as_ref(), dst_checked);
        RuleFields {
            src_v4,
            src_v6,
            dst_v4: dst.as_ref().map(|s| s.v4.clone()),
            dst_v6: dst.map(|s| s.v6),
            icmp_unfoldable: folded.is_none(),
            folded_service: folded.flatten(),
            service,
            icmp,
            src_port: self.port_set(&rule.src),
            check,
        }
    }

    /// nets ∩ ¬notNets ∩ selector set ∩ ¬notSelector set, or `None` with no such criterion.
    fn side_addresses(&mut self, side: &Side) -> Option<AddrSet> {
        if side.nets.is_empty()
            && side.not_nets.is_empty()
            && side.selector.is_none()
            && side.not_selector.is_none()
        {
            return None;
        }
        let mut set = if side.nets.is_empty() {
            AddrSet::full()
        } else {
            AddrSet::from_nets(&side.nets)
        };
        if !side.not_nets.is_empty() {
            set = set.minus(&AddrSet::from_nets(&side.not_nets));
        }
        if let Some(selector) = &side.selector {
            set = set.intersect(&self.selector_set(selector));
        }
        if let Some(selector) = &side.not_selector {
            set = set.minus(&self.selector_set(selector));
        }
        Some(set)
    }

    /// Union of the addresses of every entity the selector matches (SPEC §5: IP-set
    /// semantics, overlaps are a union).
    fn selector_set(&mut self, selector: &Selector) -> Rc<AddrSet> {
        if let Some(set) = self.selector_sets.get(selector) {
            return Rc::clone(set);
        }
        let mut ranges4 = Vec::new();
        let mut ranges6 = Vec::new();
        for (labels, set) in &self.label_groups {
            if selector.matches(labels) {
                ranges4.extend_from_slice(set.v4.ranges());
                ranges6.extend_from_slice(set.v6.ranges());
            }
        }
        let set = Rc::new(AddrSet {
            v4: RangeSet::from_ranges(ranges4),
            v6: RangeSet::from_ranges(ranges6),
        });
        self.selector_sets.insert(selector.clone(), Rc::clone(&set));
        set
    }

    /// The port keys a side accepts. Named ports are over-approximated (their numbers in
    /// `ports`, nothing taken away in `notPorts`) and checked exactly by [`NamedCheck`].
    fn port_set(&mut self, side: &Side) -> Option<RangeSet<u32>> {
        if side.ports.is_empty() && side.not_ports.is_empty() {
            return None;
        }
        let key_range = |lo: u16, hi: u16| (u32::from(lo) + 1, u32::from(hi) + 1);
        let mut set = RangeSet::single(1, keys::PORT_MAX);
        if !side.ports.is_empty() {
            let mut accepted: Vec<(u32, u32)> = ranges_of(&side.ports)
                .map(|(lo, hi)| key_range(lo, hi))
                .collect();
            let names = names_of(&side.ports);
            if !names.is_empty() {
                let set_id = self.named_set(side.selector.as_ref(), names);
                accepted.extend(
                    self.named_sets[set_id as usize]
                        .iter()
                        .map(|&(_, _, port)| key_range(port, port)),
                );
            }
            set = set.intersect(&RangeSet::from_ranges(accepted));
        }
        if !side.not_ports.is_empty() {
            let excluded = ranges_of(&side.not_ports)
                .map(|(lo, hi)| key_range(lo, hi))
                .collect();
            set = set.minus(&RangeSet::from_ranges(excluded));
        }
        Some(set)
    }

    /// The exact port check of a side with named ports, else `None`.
    fn side_check(&mut self, side: &Side) -> Option<SideCheck> {
        let named = |list: &[PortMatch]| list.iter().any(|p| matches!(p, PortMatch::Named(_)));
        if !named(&side.ports) && !named(&side.not_ports) {
            return None;
        }
        let mut list = |entries: &[PortMatch]| {
            (!entries.is_empty()).then(|| {
                let names = names_of(entries);
                PortList {
                    ranges: ranges_of(entries).collect(),
                    named: (!names.is_empty())
                        .then(|| self.named_set(side.selector.as_ref(), names)),
                }
            })
        };
        let ports = list(&side.ports);
        let not_ports = list(&side.not_ports);
        Some(SideCheck { ports, not_ports })
    }

    /// The (endpoint, protocol, port) triples that named ports `names` stand for on a side
    /// with positive selector `selector` (SPEC §5: declared by an endpoint the selector
    /// selects, or by any endpoint without one).
    fn named_set(&mut self, selector: Option<&Selector>, mut names: Vec<String>) -> u32 {
        names.sort();
        names.dedup();
        let key = (selector.cloned(), names);
        if let Some(&id) = self.named_index.get(&key) {
            return id;
        }
        let mut triples: Vec<DeclaredPort> = self
            .resolved
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| selector.is_none_or(|s| s.matches(&e.labels)))
            .flat_map(|(i, e)| {
                e.ports
                    .iter()
                    .filter(|p| key.1.contains(&p.name))
                    .map(move |p| (i as u32, p.protocol, p.port))
            })
            .collect();
        triples.sort_unstable();
        triples.dedup();
        let id = self.named_sets.len() as u32;
        self.named_sets.push(triples);
        self.named_index.insert(key, id);
        id
    }
}

/// Whether a stage's policies run for this kind of endpoint and direction (SPEC §3.3).
fn stage_runs(stage: Stage, host: bool, direction: Direction) -> bool {
    match stage {
        Stage::Normal => true,
        Stage::Untracked => host,
        Stage::PreDnat => host && direction == Direction::Ingress,
    }
}

/// Point the Pass entries of the block that starts at `start` (and ends with `drafts`) at
/// the entry after it.
fn set_pass_targets(drafts: &mut [Draft], start: usize) {
    let end = drafts.len() as u32;
    for d in drafts.iter_mut().skip(start).filter(|d| d.act == Act::Pass) {
        d.target = end;
    }
}

/// Entities grouped by identical labels, with the union of their networks.
fn label_groups(resolved: &Resolved) -> Vec<(&Labels, AddrSet)> {
    let mut groups: HashMap<&Labels, Vec<IpNet>> = HashMap::new();
    let mut order: Vec<&Labels> = Vec::new();
    for entity in &resolved.entities {
        let nets = groups.entry(&entity.labels).or_insert_with(|| {
            order.push(&entity.labels);
            Vec::new()
        });
        nets.extend_from_slice(&entity.nets);
    }
    order
        .into_iter()
        .map(|labels| {
            let set = groups
                .get(labels)
                .map(AddrSet::from_nets)
                .unwrap_or_default();
            (labels, set)
        })
        .collect()
}

/// The family rule (SPEC §5): a rule limited to the other family, or one of whose CIDR lists
/// is non-empty with no CIDR of this family, matches nothing of this family.
fn family_excluded(rule: &Rule, family: Family) -> bool {
    let version = match family {
        Family::V4 => IpVersion::V4,
        Family::V6 => IpVersion::V6,
    };
    if rule.ip_version.is_some_and(|v| v != version) {
        return true;
    }
    [
        &rule.src.nets,
        &rule.src.not_nets,
        &rule.dst.nets,
        &rule.dst.not_nets,
    ]
    .into_iter()
    .any(|list| !list.is_empty() && !list.iter().any(|n| Family::of_net(n) == family))
}

/// The service keys a rule accepts: its protocols (protocol, notProtocol) times its
/// destination ports, or `None` when it constrains neither.
fn service_set(rule: &Rule, ports: Option<RangeSet<u32>>) -> Option<RangeSet<u32>> {
    if rule.protocol.is_none() && rule.not_protocol.is_none() && ports.is_none() {
        return None;
    }
    let mut protocols = RangeSet::full(255u32);
    if let Some(p) = rule.protocol {
        protocols = protocols.intersect(&RangeSet::single(u32::from(p), u32::from(p)));
    }
    if let Some(p) = rule.not_protocol {
        protocols = protocols.minus(&RangeSet::single(u32::from(p), u32::from(p)));
    }
    let base = |p: u32| keys::protocol_base(p as u8);
    let last = |p: u32| keys::protocol_last(p as u8);
    let product = match ports {
        // Every port: whole protocol blocks, one range per run of protocols.
        None => protocols
            .ranges()
            .iter()
            .map(|&(lo, hi)| (base(lo), last(hi)))
            .collect(),
        Some(ports) => protocols
            .ranges()
            .iter()
            .flat_map(|&(lo, hi)| lo..=hi)
            .flat_map(|p| {
                ports
                    .ranges()
                    .iter()
                    .map(move |&(a, b)| (base(p) | a, base(p) | b))
            })
            .collect(),
    };
    Some(RangeSet::from_ranges(product))
}

/// A rule's service and ICMP criteria as one set of folded service keys (see
/// [`keys::flow_service_key`]): of protocols other than ICMP and ICMPv6, the service keys it
/// accepts (none if it has an ICMP criterion, which only ICMP flows can meet); of each ICMP
/// protocol it accepts, the L4 keys its ICMP criterion accepts (all if none). `None` inside:
/// no criterion; `None` outside: not foldable, its service criterion accepting part of an
/// ICMP protocol's keys (a port criterion on ICMP, which validation refuses), unless
/// `dst_checked`: an exact named-port check of the destination then rules out the ports
/// the whole protocol stands in for (named ports are declared for TCP, UDP and SCTP only,
/// so on ICMP they only come from named ports without a protocol).
fn folded_service(
    service: Option<&RangeSet<u32>>,
    icmp: Option<&RangeSet<u32>>,
    dst_checked: bool,
) -> Option<Option<RangeSet<u32>>> {
    if service.is_none() && icmp.is_none() {
        return Some(None);
    }
    let full = RangeSet::single(0, keys::L4_MAX);
    let service = service.unwrap_or(&full);
    let mut icmp_part = RangeSet::empty();
    let mut icmp_blocks = RangeSet::empty();
    for protocol in [keys::ICMP, keys::ICMPV6] {
        let block = RangeSet::single(keys::protocol_base(protocol), keys::protocol_last(protocol));
        let accepted = service.intersect(&block);
        let whole = accepted.ranges() == block.ranges();
        if !accepted.ranges().is_empty() && !whole && !dst_checked {
            return None;
        }
        if !accepted.ranges().is_empty() {
            icmp_part = icmp_part.union(&block);
        }
        icmp_blocks = icmp_blocks.union(&block);
    }
    let folded = match icmp {
        Some(icmp) => icmp_part.intersect(icmp),
        None => service.minus(&icmp_blocks).union(&icmp_part),
    };
    Some(Some(folded))
}

/// Whether every entry with an ICMP criterion has a service criterion within the ICMP and
/// ICMPv6 blocks: then, for a flow of another protocol, the ICMP field rules out nothing the
/// service field does not (see [`Program::icmp_only_for_icmp`]).
fn icmp_only_for_icmp(fields: &[&RuleFields]) -> bool {
    let blocks = |p: u8| (keys::protocol_base(p), keys::protocol_last(p));
    let icmp_blocks = RangeSet::from_ranges(vec![blocks(keys::ICMP), blocks(keys::ICMPV6)]);
    fields.iter().all(|r| {
        r.icmp.is_none()
            || r.service
                .as_ref()
                .is_some_and(|s| s.minus(&icmp_blocks).ranges().is_empty())
    })
}

/// The L4 keys `icmp`/`notICMP` accept (the protocol itself is the service field's).
fn icmp_set(rule: &Rule) -> Option<RangeSet<u32>> {
    if rule.icmp.is_none() && rule.not_icmp.is_none() {
        return None;
    }
    let subs = icmp_subs(rule.icmp, rule.not_icmp);
    let in_icmp_blocks = [keys::ICMP, keys::ICMPV6]
        .into_iter()
        .map(|p| subs.map_ranges(|k| k.checked_add(keys::protocol_base(p))))
        .fold(RangeSet::empty(), |acc, s| acc.union(&s));
    Some(in_icmp_blocks)
}

/// The ICMP sub-keys `icmp`/`notICMP` accept: the flow must carry a type; a criterion naming
/// a code needs the flow's code (either criterion's code, as in the reference).
fn icmp_subs(icmp: Option<IcmpMatch>, not_icmp: Option<IcmpMatch>) -> RangeSet<u32> {
    let matching = |m: IcmpMatch| match m.code {
        None => RangeSet::single(
            keys::icmp_sub(m.icmp_type, None),
            keys::icmp_sub(m.icmp_type, Some(255)),
        ),
        Some(code) => {
            let k = keys::icmp_sub(m.icmp_type, Some(code));
            RangeSet::single(k, k)
        }
    };
    let mut set = RangeSet::single(1, keys::ICMP_SUB_MAX);
    if let Some(m) = icmp {
        set = set.intersect(&matching(m));
    }
    if let Some(m) = not_icmp {
        set = set.minus(&matching(m));
    }
    let needs_code =
        icmp.is_some_and(|m| m.code.is_some()) || not_icmp.is_some_and(|m| m.code.is_some());
    if needs_code {
        let with_code = (0..=255u8)
            .map(|t| (keys::icmp_sub(t, Some(0)), keys::icmp_sub(t, Some(255))))
            .collect();
        set = set.intersect(&RangeSet::from_ranges(with_code));
    }
    set
}

fn ranges_of(list: &[PortMatch]) -> impl Iterator<Item = (u16, u16)> + '_ {
    list.iter().filter_map(|p| match p {
        PortMatch::Range(lo, hi) => Some((*lo, *hi)),
        PortMatch::Named(_) => None,
    })
}

fn names_of(list: &[PortMatch]) -> Vec<String> {
    list.iter()
        .filter_map(|p| match p {
            PortMatch::Named(n) => Some(n.clone()),
            PortMatch::Range(..) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn icmp_block(p: u8) -> RangeSet<u32> {
        RangeSet::single(keys::protocol_base(p), keys::protocol_last(p))
    }

    #[test]
    fn the_icmp_field_is_redundant_only_behind_an_icmp_service() {
        let base = keys::protocol_base(keys::ICMP);
        let icmp_type = || Some(RangeSet::single(base | 1, base | 9));
        let wild = RuleFields::default();
        let icmp_only = RuleFields {
            service: Some(icmp_block(keys::ICMP).union(&icmp_block(keys::ICMPV6))),
            icmp: icmp_type(),
            ..RuleFields::default()
        };
        let no_service = RuleFields {
            icmp: icmp_type(),
            ..RuleFields::default()
        };
        let tcp_too = RuleFields {
            service: Some(icmp_block(keys::ICMP).union(&icmp_block(6))),
            icmp: icmp_type(),
            ..RuleFields::default()
        };
        assert!(icmp_only_for_icmp(&[&wild, &icmp_only]));
        assert!(icmp_only_for_icmp(&[&wild]));
        assert!(!icmp_only_for_icmp(&[&icmp_only, &no_service]));
        assert!(!icmp_only_for_icmp(&[&tcp_too, &wild]));
    }

    #[test]
    fn folded_service_keys_hold_the_service_and_icmp_criteria_together() {
        let icmp = icmp_block(keys::ICMP);
        let icmp6 = icmp_block(keys::ICMPV6);
        let tcp = icmp_block(keys::TCP);
        let base = keys::protocol_base(keys::ICMP);
        let type_8 = RangeSet::single(
            base | keys::icmp_sub(8, None),
            base | keys::icmp_sub(8, Some(255)),
        );
        let tcp_80 = RangeSet::single(
            keys::service_key(keys::TCP, Some(80)),
            keys::service_key(keys::TCP, Some(80)),
        );
        let icmp_port_80 = RangeSet::single(base | 81, base | 81);
        // (service, icmp, destination named-port check) -> folded keys
        type Keys<'a> = Option<&'a RangeSet<u32>>;
        let cases: [(Keys<'_>, Keys<'_>, bool, _); 9] = [
            (None, None, false, Some(None)),
            (
                Some(&icmp6.union(&tcp_80)),
                None,
                false,
                Some(Some(icmp6.union(&tcp_80))),
            ),
            (Some(&tcp_80), None, false, Some(Some(tcp_80.clone()))),
            (
                Some(&tcp),
                Some(&type_8),
                false,
                Some(Some(RangeSet::empty())),
            ),
            (Some(&icmp), None, false, Some(Some(icmp.clone()))),
            (
                Some(&icmp),
                Some(&type_8),
                false,
                Some(Some(type_8.clone())),
            ),
            (None, Some(&type_8), false, Some(Some(type_8.clone()))),
            // A port on ICMP: not foldable, unless an exact check sees the ports.
            (Some(&icmp_port_80), None, false, None),
            (
                Some(&icmp_port_80.union(&tcp_80)),
                None,
                true,
                Some(Some(icmp.union(&tcp_80))),
            ),
        ];
        for (i, (service, icmp_set, checked, want)) in cases.into_iter().enumerate() {
            let got = folded_service(service, icmp_set, checked);
            let ranges = |s: &Option<Option<RangeSet<u32>>>| {
                s.as_ref().map(|s| s.as_ref().map(|s| s.ranges().to_vec()))
            };
            assert_eq!(ranges(&got), ranges(&want), "case {i}");
        }
    }
}
