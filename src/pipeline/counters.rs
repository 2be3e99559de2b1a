//! What the packet path counts: one [`WorkerCounters`] per worker, written by that worker
//! only and read by control threads while it runs, and per-rule hit tables that stay
//! exact across snapshot changes.
//!
//! ```text
//! worker ──judge──► WorkerCounters { packets, bytes, drops, ... }      (relaxed, one writer)
//!          └──────► RuleHits of the snapshot in force ──(new snapshot)──► RuleLedger.retired
//!                                                                            │ housekeeping
//! exporter ◄── PathShared::rule_hit_totals() = totals + retired + live ◄────┘ folds by label
//! ```
//!
//! Rule ids are only meaningful within their snapshot, so each table keeps the snapshot's
//! [`RuleTable`] (an `Arc`, shared with the snapshot, so keeping it costs no copy) and is
//! named with it. A worker allocates a new table at the first packet of a new snapshot (once
//! per reload, never per packet) and retires the old one to the ledger under its lock; the
//! ledger folds retired tables into totals keyed by the rule's labels (stage, tier, policy,
//! direction, rule index, action), so a rule that survives a reload keeps counting in one series.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::packet::DropReason;
use crate::snapshot::{
    DefaultKind, RuleAction, RuleDirection, RuleId, RuleInfo, RuleStage, RuleTable,
};

/// A counter written by one worker only and read by anyone: a relaxed load and store, no
/// locked instruction on the hot path.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        // Single writer: the load and store cannot lose another writer's increment. Relaxed
        // is enough; readers only need each value to be one the counter really held.
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Verdict index of the packet counters.
pub const FORWARDED: usize = 0;
pub const DROPPED: usize = 1;

/// One worker's counters, on their own cache lines.
#[derive(Debug)]
#[repr(align(64))]
pub struct WorkerCounters {
    /// Frames by port of arrival ([`crate::dataplane::PortSide::index`]) × verdict
    /// (`FORWARDED`, `DROPPED`).
    pub packets: [[Counter; 2]; 2],
    pub bytes: [[Counter; 2]; 2],
    /// Dropped frames by [`DropReason::index`].
    pub drops: [Counter; DropReason::COUNT],
    /// Frames forwarded because conntrack knew their connection (established or related).
    pub established: Counter,
    /// Frames forwarded by the untracked stage, with no conntrack entry.
    pub untracked: Counter,
    /// Policy evaluations (at most one per frame).
    pub policy_evaluations: Counter,
    /// Connections this worker added to the connection table.
    pub conntrack_inserts: Counter,
    /// New connections refused because their conntrack shard was full.
    pub conntrack_insert_failures: Counter,
    /// Log-action lines written.
    pub log_lines: Counter,
    /// Log-action lines not written because of `logRateLimitPerSecond`.
    pub log_suppressed: Counter,
    /// Per-rule hits for the snapshot this worker judges with.
    rule_hits: ArcSwap<RuleHits>,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            packets: Default::default(),
            bytes: Default::default(),
            drops: std::array::from_fn(|_| Counter::default()),
            established: Counter::default(),
            untracked: Counter::default(),
            policy_evaluations: Counter::default(),
            conntrack_inserts: Counter::default(),
            conntrack_insert_failures: Counter::default(),
            log_lines: Counter::default(),
            log_suppressed: Counter::default(),
            rule_hits: ArcSwap::from_pointee(RuleHits::empty()),
        }
    }
}

impl WorkerCounters {
    /// The per-rule table of the snapshot this worker judges with now. Its counts are
    /// final once a later snapshot replaces it; use [`crate::pipeline::PathShared::
    /// rule_hit_totals`] for totals across snapshots.
    pub fn rule_hits(&self) -> Arc<RuleHits> {
        self.rule_hits.load_full()
    }

    pub(crate) fn install_rule_hits(&self, hits: Arc<RuleHits>) -> Arc<RuleHits> {
        self.rule_hits.swap(hits)
    }

    /// A plain copy of the counters.
    pub fn read(&self) -> CounterTotals {
        let mut totals = CounterTotals::default();
        totals.add(self);
        totals
    }
}

/// Counters as plain numbers, summed over any number of workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterTotals {
    pub packets: [[u64; 2]; 2],
    pub bytes: [[u64; 2]; 2],
    pub drops: [u64; DropReason::COUNT],
    pub established: u64,
    pub untracked: u64,
    pub policy_evaluations: u64,
    pub conntrack_inserts: u64,
    pub conntrack_insert_failures: u64,
    pub log_lines: u64,
    pub log_suppressed: u64,
}

impl Default for CounterTotals {
    fn default() -> Self {
        CounterTotals {
            packets: [[0; 2]; 2],
            bytes: [[0; 2]; 2],
            drops: [0; DropReason::COUNT],
            established: 0,
            untracked: 0,
            policy_evaluations: 0,
            conntrack_inserts: 0,
            conntrack_insert_failures: 0,
            log_lines: 0,
            log_suppressed: 0,
        }
    }
}

impl CounterTotals {
    /// Adds one worker's counters.
    pub fn add(&mut self, c: &WorkerCounters) {
        for port in 0..2 {
            for verdict in 0..2 {
                self.packets[port][verdict] += c.packets[port][verdict].get();
                self.bytes[port][verdict] += c.bytes[port][verdict].get();
            }
        }
        for (total, counter) in self.drops.iter_mut().zip(&c.drops) {
            *total += counter.get();
        }
        self.established += c.established.get();
        self.untracked += c.untracked.get();
        self.policy_evaluations += c.policy_evaluations.get();
        self.conntrack_inserts += c.conntrack_inserts.get();
        self.conntrack_insert_failures += c.conntrack_insert_failures.get();
        self.log_lines += c.log_lines.get();
        self.log_suppressed += c.log_suppressed.get();
    }

    /// Drops counted under `reason`.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }
}

/// Per-rule packet and byte hits of one snapshot, written by one worker.
///
/// What counts as a hit: the rule (or default) that decided a side whenever that decision
/// was applied to a frame (first packets of connections, untracked and stateless traffic;
/// an established packet applies no decision), and each Log rule a frame reached.
#[derive(Debug)]
pub struct RuleHits {
    table: Arc<RuleTable>,
    generation: u64,
    packets: Box<[Counter]>,
    bytes: Box<[Counter]>,
}

impl RuleHits {
    /// The table of no snapshot: counts nothing.
    pub(crate) fn empty() -> RuleHits {
        RuleHits::new(Arc::new(RuleTable::default()), 0)
    }

    /// A zeroed table for a snapshot's rules. Allocates: called once per snapshot.
    pub(crate) fn new(table: Arc<RuleTable>, generation: u64) -> RuleHits {
        let zeroed = |n: usize| (0..n).map(|_| Counter::default()).collect();
        RuleHits {
            packets: zeroed(table.len()),
            bytes: zeroed(table.len()),
            table,
            generation,
        }
    }

    /// Whether this table counts for the snapshot whose rule table is `table`.
    #[inline]
    pub(crate) fn is_for(&self, table: &Arc<RuleTable>) -> bool {
        Arc::ptr_eq(&self.table, table)
    }

    #[inline]
    pub(crate) fn record(&self, rule: RuleId, bytes: u64) {
        let i = rule.0 as usize;
        if let (Some(p), Some(b)) = (self.packets.get(i), self.bytes.get(i)) {
            p.add(1);
            b.add(bytes);
        }
    }

    /// Generation of the snapshot these counts belong to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What a rule id of this table stands for.
    pub fn rule(&self, id: RuleId) -> Option<RuleInfo<'_>> {
        self.table.rule(id)
    }

    /// (packets, bytes) hit by a rule.
    pub fn hits(&self, id: RuleId) -> Option<RuleHitTotal> {
        let i = id.0 as usize;
        Some(RuleHitTotal {
            packets: self.packets.get(i)?.get(),
            bytes: self.bytes.get(i)?.get(),
        })
    }

    /// Every rule with at least one hit.
    pub fn iter(&self) -> impl Iterator<Item = (RuleId, RuleHitTotal)> + '_ {
        (0..self.packets.len()).filter_map(|i| {
            let id = RuleId(i as u32);
            self.hits(id).filter(|h| h.packets > 0).map(|h| (id, h))
        })
    }
}

/// A rule named independently of any snapshot: the labels of its per-rule series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleLabel {
    pub stage: RuleStage,
    pub tier: Option<String>,
    pub policy: Option<String>,
    pub direction: Option<RuleDirection>,
    pub index: Option<u32>,
    pub action: RuleAction,
    pub default: Option<DefaultKind>,
}

impl RuleLabel {
    pub fn of(info: &RuleInfo<'_>) -> RuleLabel {
        RuleLabel {
            stage: info.stage,
            tier: info.tier.map(str::to_owned),
            policy: info.policy.map(str::to_owned),
            direction: info.direction,
            index: info.index,
            action: info.action,
            default: info.default,
        }
    }
}

/// Packets and bytes that hit a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleHitTotal {
    pub packets: u64,
    pub bytes: u64,
}

/// Where per-rule counts go when their snapshot is replaced, and the registry of workers
/// whose live tables make up the rest. Locked at reload time by workers, and by control
/// threads; never per packet.
#[derive(Debug, Default)]
pub(crate) struct RuleLedger {
    workers: Vec<Arc<WorkerCounters>>,
    retired: Vec<Arc<RuleHits>>,
    totals: HashMap<RuleLabel, RuleHitTotal>,
}

impl RuleLedger {
    pub(crate) fn register(&mut self, counters: Arc<WorkerCounters>) {
        self.workers.push(counters);
    }

    pub(crate) fn retire(&mut self, hits: Arc<RuleHits>) {
        if hits.packets.is_empty() {
            return;
        }
        self.retired.push(hits);
    }

    /// Folds up to `max` retired tables into the totals.
    pub(crate) fn fold_retired(&mut self, max: usize) {
        let n = self.retired.len().min(max);
        for hits in self.retired.drain(..n) {
            fold(&mut self.totals, &hits);
        }
    }

    /// Totals by rule label: everything folded, retired and live, in one consistent view
    /// (a worker retires a table and installs the next under the same lock).
    pub(crate) fn totals(&self) -> HashMap<RuleLabel, RuleHitTotal> {
        let mut totals = self.totals.clone();
        for hits in &self.retired {
            fold(&mut totals, hits);
        }
        for worker in &self.workers {
            fold(&mut totals, &worker.rule_hits());
        }
        totals
    }

    pub(crate) fn workers(&self) -> &[Arc<WorkerCounters>] {
        &self.workers
    }
}

fn fold(totals: &mut HashMap<RuleLabel, RuleHitTotal>, hits: &RuleHits) {
    for (id, hit) in hits.iter() {
        let Some(info) = hits.rule(id) else {
            continue;
        };
        let total = totals.entry(RuleLabel::of(&info)).or_default();
        total.packets += hit.packets;
        total.bytes += hit.bytes;
    }
}
