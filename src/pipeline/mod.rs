//! The path of one frame (SPEC §A2): parse → non-IP handling → fragments → failsafe →
//! untracked stage → conntrack → preDNAT → normal → forward or drop.
//!
//! Two halves. [`PathShared`] holds what every worker shares (the connection table and the
//! fragment tracker) and is built once at start from the settings. [`WorkerPath`] is one
//! worker's: it judges frames against the snapshot the worker loaded for the batch and
//! counts what it did in its own [`WorkerCounters`], which control threads read while the
//! worker runs.
//!
//! This module never reads a clock or loads a snapshot: the worker loop does both once per
//! batch and passes them in, so that a batch is judged by one policy at one time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::conntrack::{Conntrack, ConntrackConfig, ConntrackError, ConntrackStats, Tick};
use crate::dataplane::{Disposition, PortSide};
use crate::model::Settings;
use crate::packet::{self, DropReason, FrameKind};
use crate::snapshot::Snapshot;

/// Why the shared part of the path could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("connection table: {0}")]
    Conntrack(#[from] ConntrackError),
}

/// What all workers share.
#[derive(Debug)]
pub struct PathShared {
    conntrack: Conntrack,
}

impl PathShared {
    /// Allocates the connection table (and fragment tracker) at the sizes the settings give.
    pub fn new(settings: &Settings) -> Result<PathShared, PathError> {
        Ok(PathShared {
            conntrack: Conntrack::new(&ConntrackConfig::from(settings))?,
        })
    }

    /// Periodic upkeep (expiry of idle connections and fragments), bounded in work so that a
    /// housekeeping thread can call it every few milliseconds.
    pub fn housekeeping(&self, now: Tick) {
        self.conntrack.sweep(now, 4096);
    }

    pub fn conntrack_stats(&self) -> ConntrackStats {
        self.conntrack.stats()
    }
}

/// A counter written by one worker only and read by anyone: a relaxed load and store, no
/// locked instruction on the hot path.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
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
    /// Frames by port of arrival × verdict (`FORWARDED`, `DROPPED`).
    pub packets: [[Counter; 2]; 2],
    pub bytes: [[Counter; 2]; 2],
    /// Dropped frames by [`DropReason::index`].
    pub drops: [Counter; DropReason::COUNT],
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            packets: Default::default(),
            bytes: Default::default(),
            drops: std::array::from_fn(|_| Counter::default()),
        }
    }
}

/// One worker's half of the path.
#[derive(Debug)]
pub struct WorkerPath {
    shared: Arc<PathShared>,
    counters: Arc<WorkerCounters>,
}

impl WorkerPath {
    pub fn new(shared: Arc<PathShared>) -> WorkerPath {
        WorkerPath {
            shared,
            counters: Arc::new(WorkerCounters::default()),
        }
    }

    /// The counters this worker writes, for control threads to read.
    pub fn counters(&self) -> Arc<WorkerCounters> {
        Arc::clone(&self.counters)
    }

    /// Judge one frame received on `port`.
    pub fn judge(
        &mut self,
        snapshot: &Snapshot,
        now: Tick,
        port: PortSide,
        frame: &[u8],
    ) -> Disposition {
        let _ = (&self.shared, now);
        let verdict = match packet::parse(frame) {
            Err(reason) => Err(reason),
            Ok(meta) => match meta.kind {
                FrameKind::Arp | FrameKind::Ipv6NeighborDiscovery => Ok(()),
                FrameKind::OtherEtherType(_) => Err(DropReason::EtherTypeNotAllowed),
                FrameKind::Ipv4 | FrameKind::Ipv6 => match meta.flow_key() {
                    Some(key) if snapshot.decide(&key).allowed => Ok(()),
                    _ => Err(DropReason::Policy),
                },
            },
        };
        let len = frame.len() as u64;
        let side = port.index();
        match verdict {
            Ok(()) => {
                self.counters.packets[side][FORWARDED].add(1);
                self.counters.bytes[side][FORWARDED].add(len);
                Disposition::Forward
            }
            Err(reason) => {
                self.counters.packets[side][DROPPED].add(1);
                self.counters.bytes[side][DROPPED].add(len);
                if let Some(c) = self.counters.drops.get(reason.index()) {
                    c.add(1);
                }
                Disposition::Drop
            }
        }
    }
}
