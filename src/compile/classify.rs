//! The hot path: one flow through a [`Snapshot`] (SPEC §A1, §3.3–§4.4).
//!
//! Per flow: one endpoint-index lookup per address; per side that runs, the failsafe ports
//! (host endpoints), then one table lookup per active field of the side's program (the
//! endpoint's own address needs none: its bitset id sits in the index entry) and the walk.
//! Nothing allocates: probes live in a fixed array, Log rules go to a fixed-size record.
//! This module must not use model, selector or policy types (STYLE §2).

use std::net::IpAddr;

use super::addrset::Key;
use super::bitset::Probe;
use super::keys;
use super::program::{EGRESS, Field, INGRESS, PortFacts, Program};
use crate::snapshot::{
    AddressEntry, EndpointId, FlowKey, FlowOutcome, FlowVerdict, LoggedRules, RuleId, SideVerdict,
    Snapshot,
};

/// Where Log rules go: a fixed record on the hot path, a list for full decisions.
pub(crate) trait LogSink: Default {
    fn log(&mut self, rule: RuleId);
}

impl LogSink for LoggedRules {
    fn log(&mut self, rule: RuleId) {
        self.push(rule);
    }
}

impl LogSink for Vec<RuleId> {
    fn log(&mut self, rule: RuleId) {
        self.push(rule);
    }
}

/// One side's result, with its Log rules in whichever sink was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Side<S> {
    pub endpoint: u32,
    pub allowed: bool,
    pub rule: RuleId,
    pub logged: S,
}

/// A flow's classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified<S> {
    pub outcome: FlowOutcome,
    pub egress: Option<Side<S>>,
    pub ingress: Option<Side<S>>,
}

impl<S> Classified<S> {
    pub fn allowed(&self, snapshot: &Snapshot) -> bool {
        match self.outcome {
            FlowOutcome::MixedFamilies => false,
            FlowOutcome::Unmatched(_) => snapshot.unmatched_allowed,
            FlowOutcome::Evaluated => [&self.egress, &self.ingress]
                .into_iter()
                .flatten()
                .all(|s| s.allowed),
        }
    }
}

pub(crate) fn decide(snapshot: &Snapshot, key: &FlowKey) -> FlowVerdict {
    let c: Classified<LoggedRules> = classify(snapshot, key);
    let side = |s: Option<Side<LoggedRules>>| {
        s.map(|s| SideVerdict {
            endpoint: EndpointId(s.endpoint),
            allowed: s.allowed,
            rule: s.rule,
            logged: s.logged,
        })
    };
    FlowVerdict {
        allowed: c.allowed(snapshot),
        outcome: c.outcome,
        egress: side(c.egress),
        ingress: side(c.ingress),
    }
}

/// An address family's key type, with the tables of that family.
pub(crate) trait FamilyKey: Key {
    const FAMILY: usize;
    fn index(snapshot: &Snapshot) -> &super::table::IntervalTable<Self>;
    fn remote(program: &Program) -> &Field<Self>;
}

impl FamilyKey for u32 {
    const FAMILY: usize = 0;
    #[inline]
    fn index(snapshot: &Snapshot) -> &super::table::IntervalTable<u32> {
        &snapshot.index_v4
    }
    #[inline]
    fn remote(program: &Program) -> &Field<u32> {
        &program.remote_v4
    }
}

impl FamilyKey for u128 {
    const FAMILY: usize = 1;
    #[inline]
    fn index(snapshot: &Snapshot) -> &super::table::IntervalTable<u128> {
        &snapshot.index_v6
    }
    #[inline]
    fn remote(program: &Program) -> &Field<u128> {
        &program.remote_v6
    }
}

pub(crate) fn classify<S: LogSink>(snapshot: &Snapshot, key: &FlowKey) -> Classified<S> {
    match (key.src, key.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => classify_in(snapshot, key, u32::from(s), u32::from(d)),
        (IpAddr::V6(s), IpAddr::V6(d)) => classify_in(snapshot, key, u128::from(s), u128::from(d)),
        _ => Classified {
            outcome: FlowOutcome::MixedFamilies,
            egress: None,
            ingress: None,
        },
    }
}

/// The index entry of an endpoint address.
pub(crate) fn address_entry(snapshot: &Snapshot, addr: IpAddr) -> Option<&AddressEntry> {
    match addr {
        IpAddr::V4(a) => lookup_address(snapshot, u32::from(a)),
        IpAddr::V6(a) => lookup_address(snapshot, u128::from(a)),
    }
}

#[inline]
fn lookup_address<K: FamilyKey>(snapshot: &Snapshot, addr: K) -> Option<&AddressEntry> {
    let slot = K::index(snapshot).lookup(addr);
    slot.checked_sub(1)
        .and_then(|i| snapshot.addresses.get(i as usize))
}

fn classify_in<K: FamilyKey, S: LogSink>(
    snapshot: &Snapshot,
    key: &FlowKey,
    src: K,
    dst: K,
) -> Classified<S> {
    let source = lookup_address(snapshot, src);
    let destination = lookup_address(snapshot, dst);
    if source.is_none() && destination.is_none() {
        return Classified {
            outcome: FlowOutcome::Unmatched(snapshot.unmatched_rule),
            egress: None,
            ingress: None,
        };
    }
    let flow = FlowFields {
        key,
        l4: keys::l4_key(key.protocol, key.icmp_type, key.icmp_code),
        src_port: keys::port_key(key.src_port),
        dst_port: keys::port_key(key.dst_port),
        facts: PortFacts {
            protocol: key.protocol,
            src_port: key.src_port,
            dst_port: key.dst_port,
            src_endpoint: source.map(|a| a.endpoint),
            dst_endpoint: destination.map(|a| a.endpoint),
        },
    };
    Classified {
        outcome: FlowOutcome::Evaluated,
        egress: source.map(|a| run_side(snapshot, a, EGRESS, dst, &flow)),
        ingress: destination.map(|a| run_side(snapshot, a, INGRESS, src, &flow)),
    }
}

/// The flow's keys, computed once for both sides.
struct FlowFields<'a> {
    key: &'a FlowKey,
    l4: u32,
    src_port: u32,
    dst_port: u32,
    facts: PortFacts,
}

fn run_side<K: FamilyKey, S: LogSink>(
    snapshot: &Snapshot,
    address: &AddressEntry,
    direction: usize,
    remote: K,
    flow: &FlowFields<'_>,
) -> Side<S> {
    let mut logged = S::default();
    let decided = |allowed: bool, rule: RuleId, logged: S| Side {
        endpoint: address.endpoint,
        allowed,
        rule,
        logged,
    };
    let Some(endpoint) = snapshot.endpoints.get(address.endpoint as usize) else {
        return decided(false, snapshot.unmatched_rule, logged);
    };
    if endpoint.host && failsafe_admits(snapshot, direction, flow) {
        return decided(true, snapshot.failsafe_rule, logged);
    }
    let Some(program) = snapshot.programs.get(endpoint.programs[direction] as usize) else {
        return decided(false, snapshot.unmatched_rule, logged);
    };

    // Any valid reference fills the unused slots; only the first `n` are read.
    let local = &program.local[K::FAMILY];
    let candidates = [
        local.is_active().then_some(Probe {
            bits: local,
            id: address.local[direction] as usize,
        }),
        K::remote(program).probe(remote),
        program.l4.probe(flow.l4),
        program.src_port.probe(flow.src_port),
        program.dst_port.probe(flow.dst_port),
    ];
    let mut probes = [Probe {
        bits: &program.l4.bits,
        id: 0,
    }; 5];
    let mut n = 0;
    for p in candidates.into_iter().flatten() {
        probes[n] = p;
        n += 1;
    }

    let hit = program.run(
        &probes[..n],
        &snapshot.named_ports,
        &flow.facts,
        &mut |rule| logged.log(rule),
    );
    match hit {
        Some(entry) => decided(entry.act == super::program::Act::Allow, entry.rule, logged),
        // Unreachable: every program ends in an entry that always matches. Deny, fail-closed.
        None => decided(false, snapshot.unmatched_rule, logged),
    }
}

/// Failsafe ports: inbound on ingress (remote = source), outbound on egress (remote =
/// destination), by destination port.
#[inline]
fn failsafe_admits(snapshot: &Snapshot, direction: usize, flow: &FlowFields<'_>) -> bool {
    let remote = if direction == INGRESS {
        flow.key.src
    } else {
        flow.key.dst
    };
    snapshot.failsafe[direction]
        .iter()
        .any(|f| f.admits(flow.key.protocol, flow.key.dst_port, remote))
}
