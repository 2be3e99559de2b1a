//! The running gateway as the admin listener sees it ([`AdminSource`]).
//!
//! ```text
//!  run(): Observed::new ──► admin listener may answer already: not ready, zero counters
//!         first load     ──► reloads.record("start")
//!         workers up     ──► Observed::forwarding(snapshots, shared, workers) ─► ready
//!  scrape: PathShared::counter_totals / rule_hit_totals / conntrack_stats
//!          + BackendCounters of each worker, summed here
//! ```
//!
//! Ready means a valid snapshot is enforced on both ports (the workers, which judge every
//! frame of both ports with it, are running) and no worker has stopped: a worker that ends
//! sets the gateway's stop flag, which this reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::worker::BackendCounters;
use crate::admin::{AdminSource, GatewayInfo, Readiness, ReloadLog, RuleSample, Scrape};
use crate::pipeline::PathShared;
use crate::snapshot::SnapshotHandle;

/// What is known once the workers run.
struct Forwarding {
    snapshots: Arc<SnapshotHandle>,
    shared: Arc<PathShared>,
    backends: Vec<Arc<BackendCounters>>,
    info: GatewayInfo,
    conntrack_max_entries: u64,
}

/// Shared by the control thread (fills it in), the config thread (records reloads) and the
/// admin listener (reads it).
pub struct Observed {
    info: GatewayInfo,
    reloads: Arc<ReloadLog>,
    stop: Arc<AtomicBool>,
    forwarding: OnceLock<Forwarding>,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("forwarding", &self.forwarding.get().is_some())
            .finish()
    }
}

impl Observed {
    pub fn new(info: GatewayInfo, reloads: Arc<ReloadLog>, stop: Arc<AtomicBool>) -> Observed {
        Observed {
            info,
            reloads,
            stop,
            forwarding: OnceLock::new(),
        }
    }

    pub fn reloads(&self) -> &Arc<ReloadLog> {
        &self.reloads
    }

    /// The workers run with the first snapshot: from now on the gateway may be ready.
    pub fn forwarding(
        &self,
        snapshots: Arc<SnapshotHandle>,
        shared: Arc<PathShared>,
        backends: Vec<Arc<BackendCounters>>,
        backend: &str,
        mode: &str,
        conntrack_max_entries: u64,
    ) {
        let info = GatewayInfo {
            backend: backend.to_owned(),
            mode: mode.to_owned(),
            workers: backends.len(),
            ..self.info.clone()
        };
        let _ = self.forwarding.set(Forwarding {
            snapshots,
            shared,
            backends,
            info,
            conntrack_max_entries,
        });
    }
}

impl AdminSource for Observed {
    fn readiness(&self) -> Readiness {
        Readiness {
            snapshot_enforced: self.forwarding.get().is_some(),
            // Relaxed: a flag; the value read is recent enough for a health probe.
            workers_alive: self.forwarding.get().is_some() && !self.stop.load(Ordering::Relaxed),
        }
    }

    fn scrape(&self) -> Scrape {
        let Some(f) = self.forwarding.get() else {
            let mut scrape = Scrape::empty(self.info.clone());
            scrape.reloads = self.reloads.read();
            return scrape;
        };
        let totals = f.shared.counter_totals();
        let mut scrape = Scrape::empty(f.info.clone());
        scrape.readiness = self.readiness();
        scrape.packets = totals.packets;
        scrape.bytes = totals.bytes;
        scrape.drops = totals.drops;
        scrape.log_lines = totals.log_lines;
        scrape.log_suppressed = f.shared.log_lines_suppressed();
        scrape.rules = f
            .shared
            .rule_hit_totals()
            .into_iter()
            .map(|(label, hits)| RuleSample {
                stage: label.stage,
                tier: label.tier,
                policy: label.policy,
                index: label.index,
                action: label.action,
                default: label.default,
                packets: hits.packets,
                bytes: hits.bytes,
            })
            .collect();
        scrape.conntrack = f.shared.conntrack_stats();
        scrape.conntrack_max_entries = f.conntrack_max_entries;
        scrape.generation = Some(f.snapshots.generation());
        scrape.reloads = self.reloads.read();
        for backend in &f.backends {
            for side in 0..2 {
                scrape.tx_failed[side] += backend.tx_failed[side].get();
                scrape.truncated[side] += backend.truncated[side].get();
            }
        }
        scrape
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Settings;

    #[test]
    fn not_ready_before_the_workers_run_nor_after_one_stops() {
        let stop = Arc::new(AtomicBool::new(false));
        let observed = Observed::new(
            GatewayInfo::default(),
            Arc::new(ReloadLog::default()),
            Arc::clone(&stop),
        );
        assert!(!observed.readiness().is_ready());
        let before = observed.scrape();
        assert_eq!(before.generation, None);

        let model = crate::model::Model {
            resources: Vec::new(),
            settings: Settings::default(),
        };
        let snapshot = crate::compile::compile(&crate::policy::resolve(&model).unwrap(), 1);
        let shared = Arc::new(PathShared::new(&Settings::default()).unwrap());
        observed.forwarding(
            Arc::new(SnapshotHandle::new(snapshot)),
            shared,
            vec![Arc::new(BackendCounters::default())],
            "afpacket",
            "test",
            1024,
        );
        assert!(observed.readiness().is_ready());
        let after = observed.scrape();
        assert_eq!(after.generation, Some(1));
        assert_eq!(
            (after.info.backend.as_str(), after.info.workers),
            ("afpacket", 1)
        );
        assert_eq!(after.conntrack_max_entries, 1024);

        stop.store(true, Ordering::Relaxed);
        assert_eq!(
            observed.readiness().reason(),
            "not ready: a worker has stopped"
        );
    }
}
