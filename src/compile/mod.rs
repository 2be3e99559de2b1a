//! Resolved policy → compiled [`Snapshot`]: the fast path that decides a flow in tens of
//! nanoseconds whatever the number of rules, with exactly the reference evaluator's answer.
//!
//! Design (numbers in `DESIGN` below and in the timing test):
//! - **Programs.** Each endpoint direction runs a *program*: its applicable tiers, policies
//!   and rules flattened into one ordered entry list, with synthetic always-matching entries
//!   for tier ends and the endpoint default, and Pass entries carrying where to resume
//!   ([`program`]). Endpoints with the same kind, applicable policies and profiles share one
//!   program, so a thousand identical pods cost one program, not a thousand.
//! - **Classifier.** Per field (own address, other address, protocol with ICMP type/code,
//!   source port, destination port) an interval table maps the packet's value to the id of a
//!   bitset of the entries that could match ([`table`], [`bitset`]). Protocol and destination
//!   port share one class table across the snapshot, looked up once per flow (TCP and UDP
//!   ports straight from an array when the table is large); each program maps the class to
//!   its bitset id through an array. The other address likewise has one class table per
//!   family across the snapshot (an endpoint's address carries its class in its index
//!   entry). Either field keeps each program's own table instead when the programs' class
//!   arrays (programs × classes) would cost too much memory. Where a program constrains
//!   both its own and the other address of a family and uses the shared classes, the two
//!   fields are one *joint* field: its bitset per (own-address bitset, remote class) is
//!   their AND, made at compile time, so a side reads one row instead of two (at 10,000
//!   bench rules 789 -> 710 instructions and 12.3 -> 10.2 L1 misses per verdict, for about
//!   3.0 MB more snapshot); past a memory budget the program probes them apart
//!   ([`program::JointField`]). For ICMP flows the service key carries type and code in
//!   the port's place, so the service field holds the ICMP criteria too and ICMP flows
//!   probe no field of their own ([`keys`]). The bitsets are AND-ed
//!   word by word, guided by one-bit-per-word summaries, to find the first entry at or after a
//!   cursor; Log records and moves on, Pass jumps ([`classify`]). Rule selectors become
//!   address sets with the union semantics of SPEC §5 ([`addrset`]), memoized per selector.
//! - **Named ports** couple address, protocol and port. The port fields over-approximate
//!   them; an entry that uses them is checked exactly, per endpoint, when the walk lands on it.
//! - [`evaluate`] rebuilds the reference-shaped [`Decision`] from the same walk, naming rules
//!   from the snapshot's tables.
//!
//! The hot-path modules ([`addrset`]'s key trait, [`table`], [`bitset`], [`program`],
//! [`classify`]) use no model, selector or policy types; only `build` does.

pub(crate) mod addrset;
pub(crate) mod bitset;
mod build;
pub(crate) mod classify;
pub(crate) mod keys;
/// Counting what the walk does for a flow: benchmark diagnostics, not for the packet path.
#[doc(hidden)]
pub mod profile;
pub(crate) mod program;
pub(crate) mod table;

use crate::policy::eval::MIXED_FAMILIES_NOTE;
use crate::policy::{
    Decision, DefaultReason, Flow, LoggedRule, Resolved, TraceEntry, TraceSide, TraceStage, Verdict,
};
use crate::snapshot::{
    DefaultKind, FlowKey, FlowOutcome, RuleId, RuleStage, SideVerdict, Snapshot,
};

/// Compile a resolved policy set into an immutable snapshot tagged with `generation`. The
/// caller numbers generations (the config thread counts its reloads); the snapshot only
/// carries the number.
pub fn compile(resolved: &Resolved, generation: u64) -> Snapshot {
    build::build(resolved, generation)
}

/// Decide `flow` with the compiled snapshot, with the same trace as the reference evaluator.
pub fn evaluate(snapshot: &Snapshot, flow: &Flow) -> Decision {
    let key = flow_key(flow);
    // Every Log rule, per direction: the verdict itself keeps only the first few.
    let mut logged: [Vec<RuleId>; 2] = [Vec::new(), Vec::new()];
    let v = classify::classify(snapshot, &key, &mut |direction, rule| {
        if let Some(list) = logged.get_mut(direction) {
            list.push(rule);
        }
    });
    let verdict = if v.allowed {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    match v.outcome {
        FlowOutcome::MixedFamilies => Decision {
            verdict: Verdict::Deny,
            trace: Vec::new(),
            note: Some(MIXED_FAMILIES_NOTE.to_owned()),
        },
        FlowOutcome::Unmatched(rule) => Decision {
            verdict,
            trace: vec![trace_entry(
                snapshot,
                TraceSide::None,
                None,
                verdict,
                rule,
                &[],
            )],
            note: None,
        },
        FlowOutcome::Evaluated => {
            let side = |which: TraceSide, s: Option<SideVerdict>, logged: &[RuleId]| {
                s.map(|s| {
                    let action = if s.allowed {
                        Verdict::Allow
                    } else {
                        Verdict::Deny
                    };
                    let endpoint = snapshot.endpoint_name(s.endpoint).map(str::to_owned);
                    trace_entry(snapshot, which, endpoint, action, s.rule, logged)
                })
            };
            let [ingress_logged, egress_logged] = &logged;
            Decision {
                verdict,
                trace: [
                    side(TraceSide::Egress, v.egress, egress_logged),
                    side(TraceSide::Ingress, v.ingress, ingress_logged),
                ]
                .into_iter()
                .flatten()
                .collect(),
                note: None,
            }
        }
    }
}

/// The classifier's view of a flow.
pub fn flow_key(flow: &Flow) -> FlowKey {
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

fn trace_entry(
    snapshot: &Snapshot,
    side: TraceSide,
    endpoint: Option<String>,
    action: Verdict,
    rule: RuleId,
    logged: &[RuleId],
) -> TraceEntry {
    let info = snapshot.rule(rule);
    TraceEntry {
        side,
        endpoint,
        stage: info.map_or(TraceStage::Normal, |i| trace_stage(i.stage)),
        tier: info.and_then(|i| i.tier).map(str::to_owned),
        policy: info.and_then(|i| i.policy).map(str::to_owned),
        rule: info.and_then(|i| i.index).map(|i| i as usize),
        action,
        default: info.and_then(|i| i.default).map(default_reason),
        logged: logged
            .iter()
            .filter_map(|&id| {
                let info = snapshot.rule(id)?;
                Some(LoggedRule {
                    tier: info.tier.map(str::to_owned),
                    policy: info.policy?.to_owned(),
                    rule: info.index? as usize,
                })
            })
            .collect(),
    }
}

fn trace_stage(stage: RuleStage) -> TraceStage {
    match stage {
        RuleStage::Failsafe => TraceStage::Failsafe,
        RuleStage::Untracked => TraceStage::Untracked,
        RuleStage::PreDnat => TraceStage::PreDnat,
        RuleStage::Normal => TraceStage::Normal,
        RuleStage::Profile => TraceStage::Profile,
    }
}

fn default_reason(kind: DefaultKind) -> DefaultReason {
    match kind {
        DefaultKind::TierEnd => DefaultReason::TierEnd,
        DefaultKind::ProfilesNoMatch => DefaultReason::ProfilesNoMatch,
        DefaultKind::WorkloadAllow => DefaultReason::WorkloadAllow,
        DefaultKind::HostDeny => DefaultReason::HostDeny,
        DefaultKind::Failsafe => DefaultReason::Failsafe,
        DefaultKind::UnmatchedTraffic => DefaultReason::UnmatchedTraffic,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
