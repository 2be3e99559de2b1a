//! The running gateway as the admin listener sees it ([`AdminSource`]).
//!
//! ```text
//!  run(): Observed::new ──► admin listener may answer already: not ready, zero counters
//!         first load     ──► reloads.record("start")
//!         workers up     ──► Observed::forwarding(snapshots, shared, workers) ─► ready
//!  scrape: PathShared::counter_totals / rule_hit_totals / conntrack_stats
//!          + BackendCounters of each worker (failed sends, truncated frames, the kernel's
//!            drop counts where the backend has them), summed here
//! ```
//!
//! Ready means a valid snapshot is enforced on both ports (the workers, which judge every
//! frame of both ports with it, are running) and no worker has stopped: a worker that ends
//! sets the gateway's stop flag, which this reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::worker::BackendCounters;
use crate::admin::{AdminSource, GatewayInfo, Readiness, ReloadLog, RuleSample, Scrape};
use crate::dataplane::KernelDrops;
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
                direction: label.direction,
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
        scrape.kernel_drops = kernel_drop_totals(&f.backends);
        scrape
    }
}

/// The kernel's drop counts summed over the workers whose backend counts them; `None` when
/// none does.
fn kernel_drop_totals(backends: &[Arc<BackendCounters>]) -> Option<[KernelDrops; 2]> {
    let mut totals: Option<[KernelDrops; 2]> = None;
    for counts in backends.iter().filter_map(|b| b.kernel.read()) {
        let totals = totals.get_or_insert_default();
        for (total, worker) in totals.iter_mut().zip(&counts) {
            total.add(worker);
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::PortSide;
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

    #[test]
    fn kernel_drops_are_summed_over_the_workers_that_count_them() {
        let drops =
            |fill_ring_empty, rx_ring_full| KernelDrops::afxdp(99, fill_ring_empty, rx_ring_full);
        let a = Arc::new(BackendCounters::default());
        let b = Arc::new(BackendCounters::default());
        assert_eq!(kernel_drop_totals(&[Arc::clone(&a), Arc::clone(&b)]), None);
        a.kernel.store(&[drops(1, 2), drops(3, 4)]);
        // A later reading replaces the earlier: the backend reports totals.
        b.kernel.store(&[drops(1, 1), drops(1, 1)]);
        b.kernel.store(&[drops(10, 20), drops(30, 40)]);
        // Too long is not carried past the backend: it is in `truncated`.
        let total = |fill_ring_empty, rx_ring_full| KernelDrops {
            too_long: None,
            ..KernelDrops::afxdp(0, fill_ring_empty, rx_ring_full)
        };
        assert_eq!(
            kernel_drop_totals(&[a, b]),
            Some([total(11, 22), total(33, 44)])
        );
    }

    #[test]
    fn afpacket_socket_queue_drops_are_summed_and_nothing_else_is_claimed() {
        let workers: Vec<_> = (0..3)
            .map(|_| Arc::new(BackendCounters::default()))
            .collect();
        for (i, worker) in workers.iter().enumerate() {
            let i = i as u64;
            worker
                .kernel
                .store(&[KernelDrops::afpacket(i), KernelDrops::afpacket(10 * i)]);
        }
        let totals = kernel_drop_totals(&workers).unwrap();
        assert_eq!(
            totals,
            [KernelDrops::afpacket(3), KernelDrops::afpacket(30)]
        );
        assert_eq!(totals[0].fill_ring_empty, None);
        assert_eq!(totals[0].rx_ring_full, None);
    }

    /// `web` behind `inside`; one policy whose ingress rule 0 and egress rule 0 both allow.
    const BOTH_WAYS: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: web, labels: { role: web } }
spec: { node: n1, expectedIPs: ["203.0.113.10"] }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: both-ways }
spec:
  selector: role == 'web'
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      protocol: UDP
      destination: { ports: [5000] }
  egress:
    - action: Allow
      protocol: UDP
      destination: { ports: [6000] }
"#;

    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut frame, b"hello")
            .unwrap();
        frame
    }

    #[test]
    fn ingress_and_egress_rule_0_of_one_policy_scrape_as_two_series() {
        let limits = crate::model::Limits::default();
        let model = crate::model::load_model_str("t.yaml", BOTH_WAYS, &limits)
            .unwrap_or_else(|problems| panic!("{problems:#?}"));
        let snapshot = crate::compile::compile(&crate::policy::resolve(&model).unwrap(), 1);
        let shared = Arc::new(PathShared::new(&model.settings).unwrap());
        let mut worker = crate::pipeline::WorkerPath::new(Arc::clone(&shared));
        let now = crate::conntrack::Tick::from_nanos(1_000_000_000);
        let outside = [198, 51, 100, 7];
        let web = [203, 0, 113, 10];
        // New flows only: each one's first packet is decided by a rule.
        for flow in 0..3 {
            let frame = udp(outside, 40_000 + flow, web, 5000);
            worker.judge(&snapshot, now, PortSide::Outside, &frame);
        }
        for flow in 0..5 {
            let frame = udp(web, 41_000 + flow, outside, 6000);
            worker.judge(&snapshot, now, PortSide::Inside, &frame);
        }
        let observed = Observed::new(
            GatewayInfo::default(),
            Arc::new(ReloadLog::default()),
            Arc::new(AtomicBool::new(false)),
        );
        observed.forwarding(
            Arc::new(SnapshotHandle::new(snapshot)),
            shared,
            vec![Arc::new(BackendCounters::default())],
            "afpacket",
            "test",
            1024,
        );
        let text = crate::admin::metrics::render(&observed.scrape());
        let series = |direction: &str, packets: u64| {
            format!(
                "portcullis_rule_packets_total{{stage=\"normal\",tier=\"default\",\
                 policy=\"GlobalNetworkPolicy/both-ways\",direction=\"{direction}\",\
                 rule=\"0\",action=\"allow\",default=\"\"}} {packets}\n"
            )
        };
        assert!(text.contains(&series("ingress", 3)), "{text}");
        assert!(text.contains(&series("egress", 5)), "{text}");
    }
}
