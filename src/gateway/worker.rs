//! The workers: one thread per queue, pinned to a core, owning both ports' queue `i`, and at
//! `SCHED_FIFO` when asked (`portcullis run --worker-fifo P`: see `dataplane::affinity` for
//! why). Each worker sets its own core and policy before it polls, and reports how that went
//! before [`SpawnWorkers`] returns: a policy that was asked for and refused stops the gateway
//! before it forwards anything; a core it cannot pin to is only warned about.
//!
//! ```text
//!   loop until `stop`:
//!     pair.poll(timeout, |port, frame| {
//!       at the batch's first frame: snapshot = snapshots.load(), now = clock_now()
//!       path.judge(&snapshot, now, port, frame)
//!     })
//!     count what the backend did (received, failed sends, truncated frames) and copy its
//!     kernel drop counts (AF_XDP: fill ring empty, RX ring full; AF_PACKET: socket queue
//!     full)
//! ```
//!
//! A batch is judged by one snapshot at one time. The snapshot and the clock are read when
//! the batch's first frame is judged, after the poll's wait, not before it: otherwise a frame
//! arriving at an idle port would be judged by the policy in force when the wait began, up to
//! [`POLL_TIMEOUT`] after a reload published the next one. Nothing in the loop allocates or
//! takes a lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use signal_hook::iterator::Handle as SignalsHandle;

use super::backend::{BackendKind, WithPairs};
use super::log::{error, warning};
use crate::dataplane::affinity::FifoPriority;
use crate::dataplane::{
    BackendError, BatchStats, KernelDropReason, KernelDrops, PortPair, affinity,
};
use crate::pipeline::{Counter, PathShared, WorkerCounters, WorkerPath, clock_now};
use crate::snapshot::SnapshotHandle;

/// How long a poll waits for frames: also the longest a worker takes to notice `stop`.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(20);

/// What the backend reports per batch beyond the path's own counters, per port of arrival:
/// frames that never reached the path (truncated) or that it forwarded but the other port
/// refused (failed sends). Written by one worker, read by anyone.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct BackendCounters {
    pub received: [Counter; 2],
    pub received_bytes: [Counter; 2],
    pub tx_failed: [Counter; 2],
    pub truncated: [Counter; 2],
    /// Frames the kernel dropped on this worker's sockets before the worker saw them.
    pub kernel: KernelDropCounts,
}

impl BackendCounters {
    fn add(&self, batch: &BatchStats) {
        for side in 0..2 {
            self.received[side].add(u64::from(batch.received[side]));
            self.received_bytes[side].add(batch.received_bytes[side]);
            self.tx_failed[side].add(u64::from(batch.tx_failed[side]));
            self.truncated[side].add(u64::from(batch.truncated[side]));
        }
    }
}

/// The kernel's drop counts for one worker's sockets, by reason and port: totals since the
/// pair was opened, copied from the backend after each batch (so stored, not added). Written
/// by one worker, read by anyone. Frames too long for the backend are not here: they are in
/// [`BackendCounters::truncated`].
#[derive(Debug, Default)]
pub struct KernelDropCounts {
    /// Whether the backend counts each reason at all, by [`KernelDropReason::index`].
    counted: [AtomicBool; KernelDropReason::COUNT],
    /// By reason, then port.
    counts: [[AtomicU64; 2]; KernelDropReason::COUNT],
}

impl KernelDropCounts {
    pub(super) fn store(&self, drops: &[KernelDrops; 2]) {
        // Relaxed: each value is a total on its own; readers need no order between them.
        for reason in KernelDropReason::ALL {
            let r = reason.index();
            for (side, d) in drops.iter().enumerate() {
                if let Some(count) = d.get(reason) {
                    self.counts[r][side].store(count, Ordering::Relaxed);
                    self.counted[r].store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// By port, the reasons the backend counts; `None` when it counts none.
    pub fn read(&self) -> Option<[KernelDrops; 2]> {
        let mut drops = [KernelDrops::default(); 2];
        let mut any = false;
        for reason in KernelDropReason::ALL {
            let r = reason.index();
            if !self.counted[r].load(Ordering::Relaxed) {
                continue;
            }
            any = true;
            for (side, d) in drops.iter_mut().enumerate() {
                d.set(reason, Some(self.counts[r][side].load(Ordering::Relaxed)));
            }
        }
        any.then_some(drops)
    }
}

/// What the control side needs to keep running one worker.
#[derive(Debug)]
pub struct WorkerHandle {
    pub index: usize,
    /// The backend and how it runs, e.g. `afpacket (recvmmsg/sendmmsg, batch 64, one worker)`.
    pub info: String,
    /// The backend's name and its mode, apart, for `/status`.
    pub backend: &'static str,
    pub mode: String,
    pub cpu: Option<usize>,
    /// The `SCHED_FIFO` priority the worker runs at; `None` for the normal policy.
    pub fifo: Option<FifoPriority>,
    pub path_counters: Arc<WorkerCounters>,
    pub backend_counters: Arc<BackendCounters>,
    pub thread: JoinHandle<Result<(), BackendError>>,
}

/// Runs one worker until `stop` is set or its backend fails.
pub fn run_worker<P: PortPair>(
    pair: &mut P,
    path: &mut WorkerPath,
    snapshots: &SnapshotHandle,
    stop: &AtomicBool,
    counters: &BackendCounters,
) -> Result<(), BackendError> {
    // Relaxed: the flag carries no data; the join that follows orders everything else.
    while !stop.load(Ordering::Relaxed) {
        // Loaded at the first frame of the batch, after the wait: a frame is never judged by
        // a snapshot older than its arrival, however long the port was idle.
        let mut batch_state = None;
        let batch = pair.poll(POLL_TIMEOUT, |port, frame| {
            let (snapshot, now) =
                batch_state.get_or_insert_with(|| (snapshots.load(), clock_now()));
            path.judge(snapshot, *now, port, frame)
        })?;
        counters.add(&batch);
        if let Some(drops) = pair.kernel_drops() {
            counters.kernel.store(&drops);
        }
    }
    Ok(())
}

/// Starts one pinned thread per opened pair: the [`WithPairs`] half of the backend dispatch.
pub struct SpawnWorkers {
    pub shared: Arc<PathShared>,
    pub snapshots: Arc<SnapshotHandle>,
    pub stop: Arc<AtomicBool>,
    /// Closed by a worker that ends, so that the control loop waiting on signals wakes up.
    pub signals: SignalsHandle,
    /// CPUs to pin workers to, in turn; empty to leave them unpinned.
    pub cpus: Vec<usize>,
    /// Run the workers (only them) at this `SCHED_FIFO` priority; `None` for the normal
    /// policy.
    pub fifo: Option<FifoPriority>,
}

impl WithPairs for SpawnWorkers {
    type Output = std::io::Result<Vec<WorkerHandle>>;

    fn run<P: PortPair + 'static>(self, kind: BackendKind, pairs: Vec<P>) -> Self::Output {
        let mut handles = Vec::with_capacity(pairs.len());
        for (index, pair) in pairs.into_iter().enumerate() {
            match self.spawn(kind, index, pair) {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    self.stop.store(true, Ordering::Relaxed);
                    for handle in handles {
                        let _ = handle.thread.join();
                    }
                    return Err(error);
                }
            }
        }
        Ok(handles)
    }
}

impl SpawnWorkers {
    fn spawn<P: PortPair + 'static>(
        &self,
        kind: BackendKind,
        index: usize,
        mut pair: P,
    ) -> std::io::Result<WorkerHandle> {
        let info = pair.info();
        debug_assert_eq!(info.backend, kind.name());
        let mut path = WorkerPath::new(Arc::clone(&self.shared));
        let path_counters = path.counters();
        let backend_counters = Arc::new(BackendCounters::default());
        let cpu = (!self.cpus.is_empty()).then(|| self.cpus[index % self.cpus.len()]);
        let snapshots = Arc::clone(&self.snapshots);
        let stop = Arc::clone(&self.stop);
        let counters = Arc::clone(&backend_counters);
        let wake = WakeOnExit {
            stop: Arc::clone(&self.stop),
            signals: self.signals.clone(),
        };
        let fifo = self.fifo;
        let (started_tx, started_rx) = mpsc::sync_channel(1);
        let thread = thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || {
                let _wake = wake;
                let placed = place_current_worker(index, cpu, fifo);
                let refused = placed.is_err();
                // The spawner waits for this; it is gone only if it panicked.
                let _ = started_tx.send(placed);
                if refused {
                    return Ok(());
                }
                let result = run_worker(&mut pair, &mut path, &snapshots, &stop, &counters);
                if let Err(error) = &result {
                    error!("worker {index}: {error}; stopping the gateway");
                }
                // The pair closes here, on the worker's thread: its sockets (and any XDP
                // program it attached) are gone before the thread is joined.
                drop(pair);
                result
            })?;
        let placed = started_rx.recv().unwrap_or_else(|_| {
            Err(std::io::Error::other(format!(
                "worker {index} ended before it started"
            )))
        });
        if let Err(error) = placed {
            let _ = thread.join();
            return Err(error);
        }
        Ok(WorkerHandle {
            index,
            info: info.to_string(),
            backend: info.backend,
            mode: info.mode.clone(),
            cpu,
            fifo,
            path_counters,
            backend_counters,
            thread,
        })
    }
}

/// Puts the calling worker thread on its core (a failure is only warned about: the worker
/// runs anywhere) and, when asked, at `SCHED_FIFO` (a failure is the worker's error: the
/// operator asked for it, and a gateway that silently ran without it would fall into the
/// receive livelock it is meant to avoid).
fn place_current_worker(
    index: usize,
    cpu: Option<usize>,
    fifo: Option<FifoPriority>,
) -> std::io::Result<()> {
    if let Some(Err(error)) = cpu.map(affinity::pin_current_thread) {
        warning!("worker {index}: cannot pin to a CPU ({error}); runs unpinned");
    }
    if let Some(priority) = fifo {
        affinity::run_current_thread_fifo(priority).map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!(
                    "worker {index}: {}",
                    affinity::explain_fifo_error(priority, &error)
                ),
            )
        })?;
    }
    Ok(())
}

/// Stops the gateway when a worker ends for any reason (an error, a panic): a gateway with a
/// dead worker would silently stop forwarding that worker's share of the flows.
struct WakeOnExit {
    stop: Arc<AtomicBool>,
    signals: SignalsHandle,
}

impl Drop for WakeOnExit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.signals.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::affinity::Scheduling;
    use crate::dataplane::{Disposition, PortSide};
    use crate::model::Settings;
    use std::sync::Mutex;

    /// A pair with no traffic that notes how the thread polling it is scheduled.
    struct WatchedPair {
        seen: Arc<Mutex<Vec<Scheduling>>>,
    }

    impl PortPair for WatchedPair {
        fn poll<F>(&mut self, _: Duration, _: F) -> Result<BatchStats, BackendError>
        where
            F: FnMut(PortSide, &[u8]) -> Disposition,
        {
            let now = affinity::current_thread_scheduling().unwrap();
            self.seen.lock().unwrap().push(now);
            thread::sleep(Duration::from_millis(1));
            Ok(BatchStats::default())
        }

        fn info(&self) -> crate::dataplane::BackendInfo {
            crate::dataplane::BackendInfo {
                backend: BackendKind::Afpacket.name(),
                mode: "watched".to_string(),
            }
        }
    }

    fn spawner(fifo: Option<FifoPriority>) -> SpawnWorkers {
        let model = crate::model::Model {
            resources: Vec::new(),
            settings: Settings::default(),
        };
        let snapshot = crate::compile::compile(&crate::policy::resolve(&model).unwrap(), 1);
        let signals = signal_hook::iterator::Signals::new(Vec::<i32>::new()).unwrap();
        SpawnWorkers {
            shared: Arc::new(PathShared::new(&Settings::default()).unwrap()),
            snapshots: Arc::new(SnapshotHandle::new(snapshot)),
            stop: Arc::new(AtomicBool::new(false)),
            signals: signals.handle(),
            cpus: Vec::new(),
            fifo,
        }
    }

    /// Spawns one worker on a [`WatchedPair`], lets it poll a few times, stops it; returns
    /// what spawning returned and the policies the worker polled under.
    fn spawn_watched(fifo: Option<FifoPriority>) -> (Result<(), String>, Vec<Scheduling>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let spawn = spawner(fifo);
        let stop = Arc::clone(&spawn.stop);
        let pair = WatchedPair {
            seen: Arc::clone(&seen),
        };
        let spawned = spawn.run(BackendKind::Afpacket, vec![pair]);
        let result = match spawned {
            Ok(handles) => {
                assert_eq!(handles[0].fifo, fifo);
                while seen.lock().unwrap().len() < 3 {
                    thread::sleep(Duration::from_millis(1));
                }
                stop.store(true, Ordering::Relaxed);
                for handle in handles {
                    handle.thread.join().unwrap().unwrap();
                }
                Ok(())
            }
            Err(error) => Err(error.to_string()),
        };
        let seen = seen.lock().unwrap().clone();
        (result, seen)
    }

    #[test]
    fn workers_poll_at_the_fifo_priority_asked_for_and_nothing_else_changes() {
        if !affinity::realtime_or_skip(
            "workers_poll_at_the_fifo_priority_asked_for_and_nothing_else_changes",
        ) {
            return;
        }
        let (result, seen) = spawn_watched(FifoPriority::new(3));
        result.unwrap();
        assert!(seen.iter().all(|s| *s == Scheduling::Fifo(3)), "{seen:?}");
        // The spawning thread (the gateway's main thread) and threads started after the
        // workers (housekeeping) stay normal.
        assert_eq!(
            affinity::current_thread_scheduling().unwrap(),
            Scheduling::Normal
        );
        let later = thread::spawn(|| affinity::current_thread_scheduling().unwrap())
            .join()
            .unwrap();
        assert_eq!(later, Scheduling::Normal);
    }

    #[test]
    fn workers_poll_at_the_normal_policy_unless_asked() {
        let (result, seen) = spawn_watched(None);
        result.unwrap();
        assert!(!seen.is_empty());
        assert!(seen.iter().all(|s| *s == Scheduling::Normal), "{seen:?}");
    }

    #[test]
    fn a_refused_fifo_priority_fails_the_start_before_any_poll() {
        // On a thread of its own: the loss of the right is that thread's and its workers'.
        let (result, seen) = thread::spawn(|| {
            affinity::lose_realtime_rights_in_this_thread().unwrap();
            spawn_watched(FifoPriority::new(2))
        })
        .join()
        .unwrap();
        let message = result.unwrap_err();
        for needed in [
            "worker 0: cannot run at SCHED_FIFO priority 2",
            "not permitted",
            "CAP_SYS_NICE",
        ] {
            assert!(message.contains(needed), "{message}");
        }
        assert!(seen.is_empty(), "the worker never polled: {seen:?}");
    }

    #[test]
    fn kernel_drop_counts_keep_the_latest_totals_of_the_reasons_counted() {
        let afpacket = KernelDropCounts::default();
        assert_eq!(afpacket.read(), None, "nothing reported yet");
        afpacket.store(&[KernelDrops::afpacket(3), KernelDrops::afpacket(0)]);
        afpacket.store(&[KernelDrops::afpacket(8), KernelDrops::afpacket(2)]);
        assert_eq!(
            afpacket.read(),
            Some([KernelDrops::afpacket(8), KernelDrops::afpacket(2)])
        );

        let afxdp = KernelDropCounts::default();
        afxdp.store(&[KernelDrops::afxdp(5, 1, 2), KernelDrops::afxdp(0, 3, 4)]);
        let read = afxdp.read().unwrap();
        assert_eq!(
            read[1].counted().collect::<Vec<_>>(),
            [
                (KernelDropReason::FillRingEmpty, 3),
                (KernelDropReason::RxRingFull, 4)
            ]
        );
        assert_eq!(read[0].too_long, None, "counted in `truncated` instead");
        assert_eq!(read[0].socket_queue_full, None);

        let none = KernelDropCounts::default();
        none.store(&[KernelDrops::default(); 2]);
        assert_eq!(none.read(), None, "a backend that counts no reason");
    }
}
