//! What the walk did for one flow, counted: a diagnostic for the classify benchmark (which
//! flows are slow, and why), off the packet path. It follows the same steps as
//! [`classify`](super::classify) (index entries, failsafe ports, probes, walk) with its own
//! loop, so that the hot path carries no counters; a unit test checks that it lands on the
//! same deciding rule as [`Snapshot::decide`] for every flow it is given.

use std::net::IpAddr;

use super::bitset::{PlainProbe, Probe, ProbeSet};
use super::classify::{FamilyKey, FlowFields, Walk, failsafe_admits};
use super::program::{Act, EGRESS, INGRESS, NO_CHECK, ProbeField, Program};
use crate::snapshot::{AddressEntry, FlowKey, RuleId, Snapshot};

/// How one side's walk went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideProfile {
    /// Egress (the source endpoint's side) or ingress.
    pub egress: bool,
    /// The endpoint is a host endpoint.
    pub host: bool,
    /// Decided by a failsafe port, before the program.
    pub failsafe: bool,
    /// The program's entries and whether its bitsets are plain.
    pub entries: usize,
    pub dense: bool,
    /// Active probes (fields) of the program for this flow.
    pub probes: usize,
    /// The program probes the other address (alone or with the own one, as the joint
    /// field), and that address's class came from its index entry (an endpoint's) rather
    /// than a search of the class table.
    pub remote_probed: bool,
    pub remote_class_from_index: bool,
    /// Searches for the first entry every probe allows.
    pub first_match_calls: usize,
    /// Words of the first probe's row read, and words of the other probes read.
    pub first_words: usize,
    pub other_words: usize,
    pub logs: usize,
    pub passes: usize,
    /// Entries with a named-port check the walk landed on, and how many of them failed.
    pub named_checks: usize,
    pub named_failed: usize,
    /// The deciding entry's index in the program and its rule.
    pub decided_at: Option<usize>,
    pub rule: Option<RuleId>,
}

/// How a flow's walk went, per side that ran (egress first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowProfile {
    pub v6: bool,
    pub sides: Vec<SideProfile>,
}

/// Count what deciding `key` takes (see the module documentation).
pub fn walk_profile(snapshot: &Snapshot, key: &FlowKey) -> FlowProfile {
    match (key.src, key.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => profile_in(snapshot, key, u32::from(s), u32::from(d)),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = profile_in(snapshot, key, u128::from(s), u128::from(d));
            p.v6 = true;
            p
        }
        _ => FlowProfile::default(),
    }
}

fn profile_in<K: FamilyKey>(snapshot: &Snapshot, key: &FlowKey, src: K, dst: K) -> FlowProfile {
    let index = K::index(snapshot);
    let source = index.lookup(src);
    let destination = index.lookup(dst);
    let flow = FlowFields::new(key, source, destination);
    let mut sides = Vec::new();
    if let Some(a) = source {
        sides.push(profile_side(snapshot, a, EGRESS, dst, &flow));
    }
    if let Some(a) = destination {
        sides.push(profile_side(snapshot, a, INGRESS, src, &flow));
    }
    FlowProfile { v6: false, sides }
}

fn profile_side<K: FamilyKey>(
    snapshot: &Snapshot,
    address: &AddressEntry,
    direction: usize,
    remote: K,
    flow: &FlowFields<'_>,
) -> SideProfile {
    let mut side = SideProfile {
        egress: direction == EGRESS,
        host: address.host,
        ..SideProfile::default()
    };
    if address.host && failsafe_admits(snapshot, direction, flow) {
        side.failsafe = true;
        side.rule = Some(snapshot.failsafe_rule);
        return side;
    }
    let Some(program) = snapshot.programs.get(address.programs[direction] as usize) else {
        return side;
    };
    side.entries = program.entries.len();
    side.dense = program.dense;
    let order = program.order[K::FAMILY].as_slice();
    side.remote_probed = order.contains(&ProbeField::Joint)
        || order.contains(&ProbeField::Remote) && K::remote(program).bits.is_active();
    side.remote_class_from_index = side.remote_probed && flow.remote_class(direction).is_some();
    let walk = Walk {
        snapshot,
        program,
        address,
        direction,
        flow,
    };
    let entries = program.entries.len();
    // The probes are made once per side, as `run_side` does; each search counts its words.
    if program.dense {
        let probes = walk.probes::<K, PlainProbe<'_>>(remote);
        side.probes = probes.as_slice().len();
        follow(snapshot, program, flow, &mut side, |cursor, side| {
            counted_plain_scan(probes.as_slice(), cursor, entries, side)
        });
    } else {
        let probes = walk.probes::<K, Probe<'_>>(remote);
        side.probes = probes.as_slice().len();
        follow(snapshot, program, flow, &mut side, |cursor, _| {
            probes.as_slice().first_match(cursor, entries)
        });
    }
    side
}

/// The walk of `Program::run`, counting: `search` finds the first entry at or after a cursor
/// that every probe allows.
fn follow(
    snapshot: &Snapshot,
    program: &Program,
    flow: &FlowFields<'_>,
    side: &mut SideProfile,
    mut search: impl FnMut(usize, &mut SideProfile) -> Option<usize>,
) {
    let mut cursor = 0;
    loop {
        side.first_match_calls += 1;
        let Some(i) = search(cursor, side) else {
            return;
        };
        let Some(entry) = program.entries.get(i) else {
            return;
        };
        cursor = i + 1;
        if entry.check != NO_CHECK {
            side.named_checks += 1;
            if !program.named_check_passes(entry.check, &snapshot.named_ports, &|| flow.facts()) {
                side.named_failed += 1;
                continue;
            }
        }
        match entry.act {
            Act::Allow | Act::Deny => {
                side.decided_at = Some(i);
                side.rule = Some(entry.rule);
                return;
            }
            Act::Log => side.logs += 1,
            Act::Pass => {
                side.passes += 1;
                cursor = entry.target as usize;
            }
        }
    }
}

/// The plain walk's search (`bitset::scan_plain`), counting the words it reads.
fn counted_plain_scan(
    probes: &[PlainProbe<'_>],
    cursor: usize,
    entries: usize,
    side: &mut SideProfile,
) -> Option<usize> {
    if cursor >= entries {
        return None;
    }
    let Some((first, rest)) = probes.split_first() else {
        return Some(cursor);
    };
    let start = cursor >> 6;
    let mut mask = !0u64 << (cursor & 63);
    for (w, &word) in first.iter().enumerate().skip(start) {
        side.first_words += 1;
        let mut x = word & mask;
        mask = !0;
        if x == 0 {
            continue;
        }
        for row in rest {
            side.other_words += 1;
            x &= row.get(w).copied().unwrap_or(0);
            if x == 0 {
                break;
            }
        }
        if x != 0 {
            return Some((w << 6) | x.trailing_zeros() as usize);
        }
    }
    None
}
