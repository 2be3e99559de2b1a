//! The workers: one thread per queue, pinned to a core, owning both ports' queue `i`.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use signal_hook::iterator::Handle as SignalsHandle;

use super::backend::{BackendKind, WithPairs};
use super::log::{error, warning};
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
        let thread = thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || {
                let _wake = wake;
                if let Some(Err(error)) = cpu.map(affinity::pin_current_thread) {
                    warning!("worker {index}: cannot pin to a CPU ({error}); runs unpinned");
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
        Ok(WorkerHandle {
            index,
            info: info.to_string(),
            backend: info.backend,
            mode: info.mode.clone(),
            cpu,
            path_counters,
            backend_counters,
            thread,
        })
    }
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
