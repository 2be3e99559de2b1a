//! What the admin endpoints show, as plain data gathered at request time.
//!
//! The gateway implements [`AdminSource`]; a request calls it once and renders the answer
//! from the values it returns ([`Scrape`] for `/metrics` and `/status`, [`Readiness`] for
//! `/readiness`). Counters are read from the workers' own counters and summed here, at
//! scrape time: nothing on the packet path knows the admin listener exists.

use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::conntrack::ConntrackStats;
use crate::dataplane::KernelDrops;
use crate::packet::DropReason;
use crate::snapshot::{DefaultKind, RuleAction, RuleDirection, RuleStage};

/// The gateway as the admin listener sees it.
pub trait AdminSource: Send + Sync + 'static {
    /// Every counter, summed over workers, now.
    fn scrape(&self) -> Scrape;
    /// Whether the gateway is ready to forward.
    fn readiness(&self) -> Readiness;
}

/// `/readiness`: a valid snapshot enforced on both ports, and every worker alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub snapshot_enforced: bool,
    pub workers_alive: bool,
}

impl Readiness {
    pub fn is_ready(self) -> bool {
        self.snapshot_enforced && self.workers_alive
    }

    /// Why not ready, for the `/readiness` body.
    pub fn reason(self) -> &'static str {
        match (self.snapshot_enforced, self.workers_alive) {
            (true, true) => "ready",
            (false, _) => "not ready: no valid policy snapshot enforced yet",
            (true, false) => "not ready: a worker has stopped",
        }
    }
}

/// What does not change while the gateway runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewayInfo {
    pub config_dir: String,
    pub outside: String,
    pub inside: String,
    /// `afxdp` or `afpacket`.
    pub backend: String,
    /// How the backend runs (zero-copy or copy, native or generic, fanout), as it reports it.
    pub mode: String,
    pub workers: usize,
    pub started_at: Option<SystemTime>,
}

/// Per-rule hits under the rule's labels (one series per label set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSample {
    pub stage: RuleStage,
    pub tier: Option<String>,
    /// `KIND/NAME`, `KIND/NAMESPACE/NAME` or `Profile/NAME`; `None` for a default.
    pub policy: Option<String>,
    /// The policy's `ingress` or `egress` list; `None` for a default, which serves both.
    pub direction: Option<RuleDirection>,
    pub index: Option<u32>,
    pub action: RuleAction,
    pub default: Option<DefaultKind>,
    pub packets: u64,
    pub bytes: u64,
}

/// Every counter the gateway exposes, summed over workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    pub info: GatewayInfo,
    pub readiness: Readiness,
    /// Frames by port of arrival ([`crate::dataplane::PortSide::index`]) × verdict
    /// (`pipeline::FORWARDED`, `pipeline::DROPPED`).
    pub packets: [[u64; 2]; 2],
    pub bytes: [[u64; 2]; 2],
    /// By [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    pub rules: Vec<RuleSample>,
    pub conntrack: ConntrackStats,
    pub conntrack_max_entries: u64,
    /// Generation of the snapshot in force; `None` before the first.
    pub generation: Option<u64>,
    pub reloads: ReloadRecord,
    pub log_lines: u64,
    pub log_suppressed: u64,
    /// By port of arrival: forwarded by the path but refused by the other port's send.
    pub tx_failed: [u64; 2],
    /// By port of arrival: frames too long for the backend's buffers.
    pub truncated: [u64; 2],
    /// Frames the kernel dropped on the sockets before a worker saw them, by port of arrival,
    /// summed over workers: only the reasons the backend counts (AF_XDP: fill ring empty, RX
    /// ring full; AF_PACKET: socket queue full); `None` before any worker reported.
    pub kernel_drops: Option<[KernelDrops; 2]>,
}

impl Scrape {
    /// A scrape of a gateway that has counted nothing yet.
    pub fn empty(info: GatewayInfo) -> Scrape {
        Scrape {
            info,
            readiness: Readiness {
                snapshot_enforced: false,
                workers_alive: false,
            },
            packets: [[0; 2]; 2],
            bytes: [[0; 2]; 2],
            drops: [0; DropReason::COUNT],
            rules: Vec::new(),
            conntrack: ConntrackStats::default(),
            conntrack_max_entries: 0,
            generation: None,
            reloads: ReloadRecord::default(),
            log_lines: 0,
            log_suppressed: 0,
            tx_failed: [0; 2],
            truncated: [0; 2],
            kernel_drops: None,
        }
    }
}

/// One load of the configuration directory, at start or on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadAttempt {
    pub at: SystemTime,
    pub successful: bool,
    /// What started it: `start`, `files`, `SIGHUP`, ...
    pub trigger: String,
    /// The generation in force after the attempt.
    pub generation: u64,
    pub duration: Duration,
    /// Problems found; 0 when successful.
    pub problems: usize,
}

/// Every load so far, in short.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadRecord {
    pub successes: u64,
    pub failures: u64,
    pub last: Option<ReloadAttempt>,
    pub last_success_at: Option<SystemTime>,
}

impl ReloadRecord {
    pub fn record(&mut self, attempt: ReloadAttempt) {
        if attempt.successful {
            self.successes += 1;
            self.last_success_at = Some(attempt.at);
        } else {
            self.failures += 1;
        }
        self.last = Some(attempt);
    }
}

/// The reload record shared by the config thread (writes) and the admin listener (reads).
/// A lock on the control side only, taken once per reload and once per scrape.
#[derive(Debug, Default)]
pub struct ReloadLog(Mutex<ReloadRecord>);

impl ReloadLog {
    pub fn record(&self, attempt: ReloadAttempt) {
        self.0.lock().record(attempt);
    }

    pub fn read(&self) -> ReloadRecord {
        self.0.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(successful: bool, secs: u64) -> ReloadAttempt {
        ReloadAttempt {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            successful,
            trigger: "files".to_owned(),
            generation: 1,
            duration: Duration::from_millis(5),
            problems: usize::from(!successful),
        }
    }

    #[test]
    fn the_record_counts_and_keeps_the_last_success_time() {
        let log = ReloadLog::default();
        log.record(attempt(true, 10));
        log.record(attempt(false, 20));
        let record = log.read();
        assert_eq!((record.successes, record.failures), (1, 1));
        assert_eq!(record.last, Some(attempt(false, 20)));
        assert_eq!(
            record.last_success_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(10))
        );
    }

    #[test]
    fn readiness_needs_both_conditions() {
        let cases = [
            (false, false, false),
            (false, true, false),
            (true, false, false),
            (true, true, true),
        ];
        for (snapshot_enforced, workers_alive, ready) in cases {
            let r = Readiness {
                snapshot_enforced,
                workers_alive,
            };
            assert_eq!(r.is_ready(), ready, "{r:?}");
            assert_eq!(r.reason() == "ready", ready, "{r:?}");
        }
    }
}
