//! PLACEHOLDER API: resolved policy → compiled snapshot (being replaced).
#![allow(unused_variables, clippy::todo)]

use crate::policy::{Decision, Flow, Resolved};
use crate::snapshot::Snapshot;

/// Compile a resolved policy set into an immutable snapshot tagged with `generation`.
pub fn compile(resolved: &Resolved, generation: u64) -> Snapshot {
    todo!()
}

/// Decide `flow` with the compiled snapshot, with the same trace as the reference evaluator.
pub fn evaluate(snapshot: &Snapshot, flow: &Flow) -> Decision {
    todo!()
}
