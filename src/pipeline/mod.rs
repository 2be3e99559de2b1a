//! The path of one frame (SPEC §A2): parse → non-IP handling → anti-spoofing → fragments →
//! failsafe → untracked stage → conntrack → preDNAT → normal → forward or drop.
//!
//! Two halves. [`PathShared`] holds what every worker shares (the connection table, the
//! fragment tracker, the Log-action rate limiter and the per-rule ledger) and is built once
//! at start from the settings. [`WorkerPath`] is one worker's: it judges frames against the
//! snapshot the worker loaded for the batch and counts what it did in its own
//! [`WorkerCounters`], which control threads read while the worker runs.
//!
//! This module never reads a clock or loads a snapshot on its own: the worker loop does
//! both once per batch ([`clock_now`], `SnapshotHandle::load`) and passes them in, so that a
//! batch is judged by one policy at one time.
//!
//! ```text
//! frame ─► parse ──────────────── malformed ─► drop (its DropReason)
//!            │ ARP, IPv6 ND ───────────────────► forward, no policy
//!            │ other EtherType ── allowed? ────► forward / drop ethertype_not_allowed
//!            ▼ IP
//!          anti-spoofing ────────────────────► drop spoofed
//!            │ non-first fragment ─ tracker ──► first fragment's verdict / drop fragment_*
//!            ▼
//!          any untracked policy in the snapshot?
//!            ├ yes: decide (policy, once) ──┬ a side denied in the untracked stage ─► drop
//!            │                              ├ every side allowed there ─► forward untracked
//!            │                              └ otherwise: keep the verdict for below
//!            ▼
//!          conntrack lookup ─┬ Established / Related ─► forward, no policy
//!          (worker's cache,  ├ Invalid ───────────────► drop conntrack_invalid
//!           then the table)  └ New / NewMidStream / Stateless
//!                                 └ decide (unless already) ─ denied ─► drop policy
//!                                        allowed: New* ─► insert (full ─► drop conntrack_full)
//!                                                 Stateless ─► forward, nothing tracked
//! a first fragment's outcome is remembered by the tracker before anything is inserted
//! ```
//!
//! **Combining the stages.** [`Snapshot::decide`] runs, for each side (egress of a source
//! endpoint, ingress of a destination endpoint), failsafe → untracked → preDNAT → normal, and
//! returns the deciding rule; its stage says where the side was decided. The packet path
//! reads it so that policy runs at most once per packet:
//! - the untracked stage denies the packet if any side was denied there (SPEC §A2: a Deny
//!   there drops, before conntrack);
//! - the packet is untracked (forwarded with no conntrack entry, replies need their own
//!   untracked allow) only if every side that ran was allowed in the untracked stage. A
//!   flow with one side allowed untracked and the other decided later is tracked: the
//!   gateway has one connection table for both hosts, and the later side's verdict needs
//!   conntrack to let the replies back;
//! - otherwise conntrack decides established and related packets, and the verdict (both
//!   sides allowed) decides new and stateless ones. A side admitted by a failsafe port or a
//!   preDNAT Allow is tracked like any other: its replies pass through conntrack.
//!
//! When the snapshot has no untracked policy at all ([`Snapshot::has_untracked_policy`]),
//! no side can be decided in the untracked stage, so conntrack is asked first and an
//! established packet costs no policy evaluation.
//!
//! **Counting.** Every frame is counted exactly once: forwarded or dropped, by port of
//! arrival, and a drop under exactly one [`DropReason`]. Per-rule hits and Log lines follow
//! the stages that really ran for the packet: rules of the untracked stage for every
//! packet that went through it, later stages only when their verdict was applied (the first
//! packet of a connection, stateless and untracked traffic); never for an established
//! packet, which no later stage sees.

mod convert;
mod counters;
mod log;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;

use crate::conntrack::{
    ConnPacket, Conntrack, ConntrackConfig, ConntrackError, ConntrackStats, FlowCache,
    FragmentDrop, FragmentOutcome, FragmentStats, FragmentTracker, InsertError, Lookup, Tick,
};
use crate::dataplane::{Disposition, PortSide};
use crate::model::Settings;
use crate::packet::{self, DropReason, FragmentInfo, FrameKind, IpMeta, PacketMeta};
use crate::snapshot::{FlowOutcome, FlowVerdict, RuleId, RuleStage, SideVerdict, Snapshot};

pub use counters::{
    Counter, CounterTotals, DROPPED, FORWARDED, RuleHitTotal, RuleHits, RuleLabel, WorkerCounters,
};
pub use log::{
    LINE_CAPACITY, LogSink, PolicyLogRecord, StderrSink, format_policy_log, format_suppressed,
};

use counters::RuleLedger;
use log::{LineBuf, LogLimiter};

/// Why the shared part of the path could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("connection table: {0}")]
    Conntrack(#[from] ConntrackError),
}

/// Slots of the connection table the sweeper examines per housekeeping call.
const CONNTRACK_SWEEP_BUDGET: usize = 4096;
/// Slots of the fragment tracker examined per housekeeping call.
const FRAGMENT_SWEEP_BUDGET: usize = 1024;
/// Retired per-rule tables folded per housekeeping call.
const RULE_TABLES_PER_HOUSEKEEPING: usize = 4;

/// A reading of the process's monotonic clock, for the worker loop to take once per batch.
pub fn clock_now() -> Tick {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    Tick::from_nanos(u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// What all workers share.
#[derive(Debug)]
pub struct PathShared {
    conntrack: Conntrack,
    fragments: FragmentTracker,
    log_limiter: LogLimiter,
    log_sink: Arc<dyn LogSink>,
    ledger: Mutex<RuleLedger>,
}

impl PathShared {
    /// Allocates the connection table and fragment tracker at the sizes the settings give;
    /// Log-action lines go to stderr.
    pub fn new(settings: &Settings) -> Result<PathShared, PathError> {
        PathShared::with_log_sink(settings, Arc::new(StderrSink))
    }

    /// As [`PathShared::new`], with Log-action lines going to `sink`.
    pub fn with_log_sink(
        settings: &Settings,
        sink: Arc<dyn LogSink>,
    ) -> Result<PathShared, PathError> {
        PathShared::with_config(&ConntrackConfig::from(settings), sink)
    }

    /// From a tracker configuration directly (tests and benches choose shard counts).
    pub fn with_config(
        config: &ConntrackConfig,
        sink: Arc<dyn LogSink>,
    ) -> Result<PathShared, PathError> {
        Ok(PathShared {
            conntrack: Conntrack::new(config)?,
            fragments: FragmentTracker::new(config)?,
            log_limiter: LogLimiter::default(),
            log_sink: sink,
            ledger: Mutex::new(RuleLedger::default()),
        })
    }

    /// Periodic upkeep, bounded in work so that a housekeeping thread can call it every few
    /// milliseconds: expiry of idle connections and fragments, the once-a-second summary of
    /// suppressed Log lines, folding of per-rule tables retired by reloads.
    pub fn housekeeping(&self, now: Tick) {
        self.conntrack.sweep(now, CONNTRACK_SWEEP_BUDGET);
        self.fragments.sweep(now, FRAGMENT_SWEEP_BUDGET);
        if let Some(suppressed) = self.log_limiter.take_summary(now) {
            let mut line = LineBuf::new();
            let _ = format_suppressed(&mut line, suppressed);
            self.log_sink.write_line(line.as_str());
        }
        if let Some(mut ledger) = self.ledger.try_lock() {
            ledger.fold_retired(RULE_TABLES_PER_HOUSEKEEPING);
        }
    }

    pub fn conntrack_stats(&self) -> ConntrackStats {
        self.conntrack.stats()
    }

    pub fn fragment_stats(&self) -> FragmentStats {
        self.fragments.stats()
    }

    /// The connection table, for inspection.
    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }

    /// Log-action lines suppressed by the rate limit since start.
    pub fn log_lines_suppressed(&self) -> u64 {
        self.log_limiter.suppressed_total()
    }

    /// `revalidateOnReload`: re-judges every tracked connection against `snapshot` (as its
    /// first packet would be judged) and removes those it no longer allows. Returns the
    /// number removed. Call it after publishing the snapshot; it locks each shard in turn.
    pub fn revalidate(&self, snapshot: &Snapshot, now: Tick) -> usize {
        self.conntrack
            .revalidate(now, snapshot.generation(), |flow| {
                snapshot
                    .decide(&convert::flow_key_of_connection(flow))
                    .allowed
            })
    }

    /// Per-rule packet and byte hits over all workers and all snapshots since start, by
    /// rule label. Exact: a worker retires a table and installs the next under the lock
    /// this holds.
    pub fn rule_hit_totals(&self) -> Vec<(RuleLabel, RuleHitTotal)> {
        self.ledger.lock().totals().into_iter().collect()
    }

    /// Every worker's counters, summed.
    pub fn counter_totals(&self) -> CounterTotals {
        let ledger = self.ledger.lock();
        let mut totals = CounterTotals::default();
        for worker in ledger.workers() {
            totals.add(worker);
        }
        totals
    }
}

/// A packet on its way through the stages.
struct InFlight<'a> {
    ip: &'a IpMeta,
    port: PortSide,
    now: Tick,
    bytes: u64,
}

/// What the stages decided for a packet that may pass.
enum Admit {
    /// Forward; nothing to record.
    Forward,
    /// Forward, and track the connection this packet opens.
    Track(ConnPacket),
}

/// Which stages' rules a verdict is accounted for (hits and Log lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stages {
    /// The untracked stage only: it ran, the later ones have not (yet).
    Untracked,
    /// Every stage but the untracked one, which was accounted before.
    Tracked,
    /// Every stage.
    All,
}

impl Stages {
    fn includes(self, stage: Option<RuleStage>) -> bool {
        let untracked = stage == Some(RuleStage::Untracked);
        match self {
            Stages::Untracked => untracked,
            Stages::Tracked => !untracked,
            Stages::All => true,
        }
    }
}

/// What the untracked stage made of a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UntrackedOutcome {
    /// A side was denied in the untracked stage.
    Deny,
    /// Every side was allowed in the untracked stage.
    Allow,
    /// Conntrack and the later stages decide.
    Tracked,
}

fn untracked_outcome(snapshot: &Snapshot, verdict: &FlowVerdict) -> UntrackedOutcome {
    let sides = [verdict.egress, verdict.ingress];
    let in_untracked = |s: &SideVerdict| snapshot.rule_stage(s.rule) == Some(RuleStage::Untracked);
    let mut ran = sides.iter().flatten().peekable();
    if ran.peek().is_none() {
        return UntrackedOutcome::Tracked;
    }
    if ran.clone().any(|s| in_untracked(s) && !s.allowed) {
        return UntrackedOutcome::Deny;
    }
    if ran.all(|s| in_untracked(s) && s.allowed) {
        return UntrackedOutcome::Allow;
    }
    UntrackedOutcome::Tracked
}

/// One worker's half of the path.
#[derive(Debug)]
pub struct WorkerPath {
    shared: Arc<PathShared>,
    counters: Arc<WorkerCounters>,
    /// The table of the snapshot in force, also published in `counters`; kept here so the
    /// hot path reaches it without an atomic load.
    hits: Arc<RuleHits>,
    /// This worker's cache of steady connections: an established packet is answered
    /// without the shard lock or the table's memory when it can be.
    flows: FlowCache,
}

impl WorkerPath {
    pub fn new(shared: Arc<PathShared>) -> WorkerPath {
        let counters = Arc::new(WorkerCounters::default());
        shared.ledger.lock().register(Arc::clone(&counters));
        WorkerPath {
            hits: counters.rule_hits(),
            shared,
            counters,
            flows: FlowCache::default(),
        }
    }

    /// The counters this worker writes, for control threads to read.
    pub fn counters(&self) -> Arc<WorkerCounters> {
        Arc::clone(&self.counters)
    }

    /// Judge one frame received on `port`, and count it.
    pub fn judge(
        &mut self,
        snapshot: &Snapshot,
        now: Tick,
        port: PortSide,
        frame: &[u8],
    ) -> Disposition {
        if !self.hits.is_for(snapshot.rule_table()) {
            self.switch_snapshot(snapshot);
        }
        let verdict = self.verdict(snapshot, now, port, frame);
        self.count(port, frame.len() as u64, verdict)
    }

    /// The first frame under a new snapshot: a new per-rule table, the old one retired to
    /// the ledger. Allocates, once per snapshot.
    #[cold]
    fn switch_snapshot(&mut self, snapshot: &Snapshot) {
        let hits = Arc::new(RuleHits::new(
            Arc::clone(snapshot.rule_table()),
            snapshot.generation(),
        ));
        let mut ledger = self.shared.ledger.lock();
        let old = self.counters.install_rule_hits(Arc::clone(&hits));
        ledger.retire(old);
        drop(ledger);
        self.hits = hits;
    }

    #[inline]
    fn count(&self, port: PortSide, bytes: u64, verdict: Result<(), DropReason>) -> Disposition {
        let side = port.index();
        match verdict {
            Ok(()) => {
                self.counters.packets[side][FORWARDED].add(1);
                self.counters.bytes[side][FORWARDED].add(bytes);
                Disposition::Forward
            }
            Err(reason) => {
                self.counters.packets[side][DROPPED].add(1);
                self.counters.bytes[side][DROPPED].add(bytes);
                if let Some(c) = self.counters.drops.get(reason.index()) {
                    c.add(1);
                }
                Disposition::Drop
            }
        }
    }

    #[inline]
    fn verdict(
        &mut self,
        snapshot: &Snapshot,
        now: Tick,
        port: PortSide,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        // Matched in place: `?` would move the parsed frame out of the result first.
        let parsed = packet::parse(frame);
        let meta = match &parsed {
            Ok(meta) => meta,
            Err(reason) => return Err(*reason),
        };
        let ip = match (meta.kind, meta.ip.as_ref()) {
            (FrameKind::Arp | FrameKind::Ipv6NeighborDiscovery, _) => return Ok(()),
            (FrameKind::OtherEtherType(ether_type), _) => {
                return match snapshot.path_policy().allows_ether_type(ether_type) {
                    true => Ok(()),
                    false => Err(DropReason::EtherTypeNotAllowed),
                };
            }
            (FrameKind::Ipv4 | FrameKind::Ipv6, Some(ip)) => ip,
            // `parse` gives every IP frame its IpMeta; fail closed should that ever break.
            (FrameKind::Ipv4 | FrameKind::Ipv6, None) => return Err(DropReason::Policy),
        };
        check_source(snapshot, port, ip)?;
        let packet = InFlight {
            ip,
            port,
            now,
            bytes: frame.len() as u64,
        };
        match ip.fragment {
            None => {
                let admit = self.admit(snapshot, &packet)?;
                self.commit(snapshot, &packet, admit)
            }
            Some(info) => self.fragment(snapshot, &packet, frame, meta, info),
        }
    }

    /// A piece of a fragmented datagram. The first carries the transport header and is
    /// judged like a whole packet; the tracker remembers that outcome for the rest before
    /// anything is inserted, so a refused first fragment leaves no connection behind.
    #[cold]
    fn fragment(
        &mut self,
        snapshot: &Snapshot,
        packet: &InFlight<'_>,
        frame: &[u8],
        meta: &PacketMeta,
        info: FragmentInfo,
    ) -> Result<(), DropReason> {
        let Some(piece) = convert::fragment(frame, meta, packet.ip) else {
            return Err(DropReason::FragmentTooShort);
        };
        if info.is_non_first() {
            return match self.shared.fragments.later(&piece, packet.now) {
                FragmentOutcome::Allow => Ok(()),
                FragmentOutcome::Deny => Err(DropReason::Policy),
                FragmentOutcome::Drop(reason) => Err(fragment_drop(reason)),
            };
        }
        let admit = self.admit(snapshot, packet);
        match self
            .shared
            .fragments
            .first(&piece, admit.is_ok(), packet.now)
        {
            FragmentOutcome::Allow => self.commit(snapshot, packet, admit?),
            FragmentOutcome::Deny => Err(admit.err().unwrap_or(DropReason::Policy)),
            FragmentOutcome::Drop(reason) => Err(fragment_drop(reason)),
        }
    }

    /// Failsafe, untracked stage, conntrack, preDNAT and normal stages for one packet.
    /// Inlined whole, as is [`WorkerPath::tracked`]: as calls, the two saved and restored
    /// registers and passed their results through memory, a tenth of an established packet.
    #[inline(always)]
    fn admit(&mut self, snapshot: &Snapshot, packet: &InFlight<'_>) -> Result<Admit, DropReason> {
        let conn = convert::conn_packet(packet.ip);
        if !snapshot.has_untracked_policy() {
            return self.tracked(snapshot, packet, &conn, None);
        }
        let verdict = self.evaluate(snapshot, packet);
        self.account(snapshot, packet, &verdict, Stages::Untracked);
        match untracked_outcome(snapshot, &verdict) {
            UntrackedOutcome::Deny => Err(DropReason::Policy),
            UntrackedOutcome::Allow => {
                self.counters.untracked.add(1);
                Ok(Admit::Forward)
            }
            UntrackedOutcome::Tracked => self.tracked(snapshot, packet, &conn, Some(verdict)),
        }
    }

    /// Conntrack, then (for what it does not know) the verdict, evaluated now unless the
    /// untracked stage already did.
    #[inline(always)]
    fn tracked(
        &mut self,
        snapshot: &Snapshot,
        packet: &InFlight<'_>,
        conn: &ConnPacket,
        evaluated: Option<FlowVerdict>,
    ) -> Result<Admit, DropReason> {
        let opens = match self
            .shared
            .conntrack
            .lookup_cached(conn, packet.now, &mut self.flows)
        {
            Lookup::Established { .. } | Lookup::Related { .. } => {
                self.counters.established.add(1);
                return Ok(Admit::Forward);
            }
            Lookup::Invalid(_) => return Err(DropReason::ConntrackInvalid),
            Lookup::New | Lookup::NewMidStream => true,
            Lookup::Stateless => false,
        };
        let (verdict, stages) = match evaluated {
            Some(verdict) => (verdict, Stages::Tracked),
            None => (self.evaluate(snapshot, packet), Stages::All),
        };
        self.account(snapshot, packet, &verdict, stages);
        match (verdict.allowed, opens) {
            (false, _) => Err(DropReason::Policy),
            (true, true) => Ok(Admit::Track(*conn)),
            (true, false) => Ok(Admit::Forward),
        }
    }

    /// Records the connection an admitted packet opens, if it opens one.
    #[inline(always)]
    fn commit(
        &self,
        snapshot: &Snapshot,
        packet: &InFlight<'_>,
        admit: Admit,
    ) -> Result<(), DropReason> {
        match admit {
            Admit::Forward => Ok(()),
            Admit::Track(conn) => self.track(snapshot, packet, &conn),
        }
    }

    /// Inserts the connection `conn` opens: the first packet's path, out of line.
    fn track(
        &self,
        snapshot: &Snapshot,
        packet: &InFlight<'_>,
        conn: &ConnPacket,
    ) -> Result<(), DropReason> {
        match self
            .shared
            .conntrack
            .insert(conn, packet.now, snapshot.generation())
        {
            Ok(()) => {
                self.counters.conntrack_inserts.add(1);
                Ok(())
            }
            Err(InsertError::Full) => {
                self.counters.conntrack_insert_failures.add(1);
                Err(DropReason::ConntrackFull)
            }
            // The lookup said the packet opens a connection, so this cannot happen; policy
            // allowed the packet, so it passes untracked, as a stateless one would.
            Err(InsertError::NotTrackable) => Ok(()),
        }
    }

    #[inline]
    fn evaluate(&self, snapshot: &Snapshot, packet: &InFlight<'_>) -> FlowVerdict {
        self.counters.policy_evaluations.add(1);
        snapshot.decide(&convert::flow_key(packet.ip))
    }

    /// Per-rule hits and Log lines of the stages of `verdict` that ran for this packet.
    #[inline]
    fn account(
        &self,
        snapshot: &Snapshot,
        packet: &InFlight<'_>,
        verdict: &FlowVerdict,
        stages: Stages,
    ) {
        if let FlowOutcome::Unmatched(rule) = verdict.outcome
            && stages.includes(snapshot.rule_stage(rule))
        {
            self.hits.record(rule, packet.bytes);
        }
        let sides = [("egress", verdict.egress), ("ingress", verdict.ingress)];
        for (direction, side) in sides {
            let Some(side) = side else {
                continue;
            };
            if stages.includes(snapshot.rule_stage(side.rule)) {
                self.hits.record(side.rule, packet.bytes);
            }
            for rule in side.logged.iter() {
                if stages.includes(snapshot.rule_stage(rule)) {
                    self.hits.record(rule, packet.bytes);
                    self.log(snapshot, packet, direction, &side, rule);
                }
            }
        }
    }

    /// One Log-action line, if the rate limit allows.
    #[cold]
    fn log(
        &self,
        snapshot: &Snapshot,
        packet: &InFlight<'_>,
        direction: &'static str,
        side: &SideVerdict,
        rule: RuleId,
    ) {
        let limit = snapshot.path_policy().log_rate_limit_per_second;
        if !self.shared.log_limiter.admit(packet.now, limit) {
            self.counters.log_suppressed.add(1);
            return;
        }
        let Some(info) = snapshot.rule(rule) else {
            return;
        };
        let ports = packet.ip.transport.ports();
        let record = PolicyLogRecord {
            generation: snapshot.generation(),
            rule: info,
            direction,
            endpoint: snapshot.endpoint_name(side.endpoint),
            port: packet.port,
            protocol: packet.ip.protocol,
            src: packet.ip.src,
            dst: packet.ip.dst,
            src_port: ports.map(|p| p.0),
            dst_port: ports.map(|p| p.1),
        };
        let mut line = LineBuf::new();
        let _ = format_policy_log(&mut line, &record);
        self.shared.log_sink.write_line(line.as_str());
        self.counters.log_lines.add(1);
    }
}

/// Anti-spoofing (SPEC §A1): a host endpoint's address may not arrive on `outside`; with
/// `insideNets`, addresses inside them arrive only on `inside` and others only on `outside`.
#[inline]
fn check_source(snapshot: &Snapshot, port: PortSide, ip: &IpMeta) -> Result<(), DropReason> {
    let path = snapshot.path_policy();
    if !path.anti_spoof {
        return Ok(());
    }
    let strict = !path.inside_nets.is_empty();
    let spoofed = match port {
        PortSide::Outside => (strict && path.is_inside(ip.src)) || snapshot.is_host_address(ip.src),
        PortSide::Inside => strict && !path.is_inside(ip.src) && !is_link_scoped(ip.src),
    };
    if spoofed {
        Err(DropReason::Spoofed)
    } else {
        Ok(())
    }
}

/// Sources that name no routed host: the unspecified address (DHCP discovery, duplicate
/// address detection) and link-local addresses (MLD reports, IPv6 router solicitations from a
/// host without a global address). A host behind `inside` sends them legitimately whatever
/// `insideNets` says, so the strict form does not call them spoofed; policy still judges them.
fn is_link_scoped(addr: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_link_local(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_unicast_link_local(),
    }
}

fn fragment_drop(reason: FragmentDrop) -> DropReason {
    match reason {
        FragmentDrop::NoFirstFragment => DropReason::FragmentWithoutFirst,
        FragmentDrop::Overlap => DropReason::FragmentOverlap,
        FragmentDrop::PastEnd => DropReason::FragmentPastEnd,
        FragmentDrop::Poisoned => DropReason::FragmentPoisoned,
        FragmentDrop::TooManyPieces => DropReason::FragmentOutOfOrder,
        FragmentDrop::TrackerFull => DropReason::FragmentTrackerFull,
        FragmentDrop::TinyFirstFragment => DropReason::FragmentTooShort,
        FragmentDrop::TcpOffsetOne => DropReason::FragmentTcpOffsetOne,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
