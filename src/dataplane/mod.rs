//! The packet path's edge: backends that receive frames from the two gateway ports and
//! forward or drop them, and (later) the pinned workers that drive them.
//!
//! A backend owns its frames from receive to transmit: the worker only sees each received
//! frame as a byte slice and answers with a [`Disposition`]. That keeps frame ownership (and
//! every `unsafe` that ring buffers need) inside the backend modules, and lets an AF_XDP
//! backend forward by passing a descriptor while an AF_PACKET backend copies.
//!
//! Frames the kernel drops before a backend sees them (its rings or its socket queue full:
//! the workers did not keep up) are counted by each backend for the [`KernelDropReason`]s it
//! knows, and read back through [`PortPair::kernel_drops`] after each batch.

use std::fmt;
use std::time::{Duration, Instant};

pub mod affinity;
pub mod afpacket;
pub mod afxdp;
pub mod netns;

/// One of the gateway's two ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortSide {
    /// `--outside`: the untrusted network.
    Outside = 0,
    /// `--inside`: the protected hosts.
    Inside = 1,
}

impl PortSide {
    pub const BOTH: [PortSide; 2] = [PortSide::Outside, PortSide::Inside];

    /// The port a frame received here is forwarded to.
    pub fn other(self) -> PortSide {
        match self {
            PortSide::Outside => PortSide::Inside,
            PortSide::Inside => PortSide::Outside,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            PortSide::Outside => "outside",
            PortSide::Inside => "inside",
        }
    }
}

/// What the worker decided for one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Send the frame, unchanged, out of the other port.
    Forward,
    /// Discard it (the worker has counted why).
    Drop,
}

/// What one `poll` did, per port of arrival.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub received: [u32; 2],
    pub received_bytes: [u64; 2],
    pub forwarded: [u32; 2],
    pub dropped: [u32; 2],
    /// Frames the worker wanted forwarded that the other port could not take (ring full).
    pub tx_failed: [u32; 2],
    /// Frames received that the backend could not hold whole (longer than its receive buffer,
    /// e.g. merged by GRO/LRO on the port): counted in `received`, never handed to the worker,
    /// dropped, since forwarding part of a frame would not be forwarding it unchanged.
    pub truncated: [u32; 2],
}

/// Settings shared by the backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub outside: String,
    pub inside: String,
    /// Number of workers (queues) to open; each opens both ports' queue `i`.
    pub workers: usize,
    /// Frames handled per poll, per port.
    pub batch_size: usize,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            outside: String::new(),
            inside: String::new(),
            workers: 1,
            batch_size: 64,
        }
    }
}

/// Why a backend could not start or keep running. Every variant names the interface (and
/// queue when it matters) and the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{interface}: no such network interface")]
    NoSuchInterface { interface: String },
    #[error("{interface} queue {queue}: {operation}: {source}")]
    Io {
        interface: String,
        queue: u32,
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{interface}: {message}")]
    Unsupported { interface: String, message: String },
}

/// How a backend runs on its ports, for logs and status (e.g. "afpacket, TPACKET_V3 ring").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    pub backend: &'static str,
    pub mode: String,
}

impl fmt::Display for BackendInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.backend, self.mode)
    }
}

/// Both ports' queue `i`, as owned by one worker.
pub trait PortPair: Send {
    /// Receive up to one batch from each port, waiting at most `timeout` when nothing is
    /// pending; hand each frame (VLAN tags in place, exactly as on the wire) to `decide`;
    /// forward or drop it as told. Never blocks longer than `timeout`.
    fn poll<F>(&mut self, timeout: Duration, decide: F) -> Result<BatchStats, BackendError>
    where
        F: FnMut(PortSide, &[u8]) -> Disposition;

    /// How this pair runs, for logs and status.
    fn info(&self) -> BackendInfo;

    /// Frames the kernel dropped on this pair's sockets before the gateway saw them, by port
    /// (outside, inside), since the pair opened, as last read; `None` when the backend does
    /// not count them.
    fn kernel_drops(&self) -> Option<[KernelDrops; 2]> {
        None
    }
}

/// How often a worker that never runs out of frames still reads its sockets' kernel
/// statistics (one `getsockopt` per port), so that drops under a continuous flood are seen.
pub(crate) const STATISTICS_EVERY: Duration = Duration::from_millis(500);

/// Whether a poll that received frames should read the kernel statistics too: a worker
/// under a continuous flood never finds its sockets empty, which is when they are read.
pub(crate) fn statistics_due(last_read: Option<Instant>, now: Instant) -> bool {
    last_read.is_none_or(|last| now.saturating_duration_since(last) >= STATISTICS_EVERY)
}

/// Why the kernel dropped a frame on a gateway socket before a worker saw it. Each backend
/// counts its own reasons: AF_XDP the first two, AF_PACKET the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelDropReason {
    /// AF_XDP: no free frame on the fill ring; the workers did not keep up.
    FillRingEmpty,
    /// AF_XDP: the RX ring was full; the workers did not keep up.
    RxRingFull,
    /// AF_PACKET: the socket's receive queue (`SO_RCVBUF`) was full; the workers did not
    /// keep up.
    SocketQueueFull,
}

impl KernelDropReason {
    pub const ALL: [KernelDropReason; 3] = [
        KernelDropReason::FillRingEmpty,
        KernelDropReason::RxRingFull,
        KernelDropReason::SocketQueueFull,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric label and JSON field name.
    pub fn name(self) -> &'static str {
        match self {
            KernelDropReason::FillRingEmpty => "fill_ring_empty",
            KernelDropReason::RxRingFull => "rx_ring_full",
            KernelDropReason::SocketQueueFull => "socket_queue_full",
        }
    }

    /// As people read it, in reports and `portcullis status`.
    pub fn description(self) -> &'static str {
        match self {
            KernelDropReason::FillRingEmpty => "fill ring empty",
            KernelDropReason::RxRingFull => "RX ring full",
            KernelDropReason::SocketQueueFull => "socket queue full",
        }
    }
}

/// Frames the kernel dropped on one port's sockets before the gateway saw them, totals by
/// reason; `None` for a reason the backend does not count, which is not the same as none
/// dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelDrops {
    /// AF_XDP: longer than a UMEM frame. Also counted in [`BatchStats::truncated`], so not a
    /// [`KernelDropReason`] of its own, and not carried past the backend.
    pub too_long: Option<u64>,
    pub fill_ring_empty: Option<u64>,
    pub rx_ring_full: Option<u64>,
    pub socket_queue_full: Option<u64>,
}

impl KernelDrops {
    /// The counts an AF_XDP socket keeps.
    pub fn afxdp(too_long: u64, fill_ring_empty: u64, rx_ring_full: u64) -> KernelDrops {
        KernelDrops {
            too_long: Some(too_long),
            fill_ring_empty: Some(fill_ring_empty),
            rx_ring_full: Some(rx_ring_full),
            socket_queue_full: None,
        }
    }

    /// The count an AF_PACKET socket keeps.
    pub fn afpacket(socket_queue_full: u64) -> KernelDrops {
        KernelDrops {
            socket_queue_full: Some(socket_queue_full),
            ..KernelDrops::default()
        }
    }

    pub fn get(&self, reason: KernelDropReason) -> Option<u64> {
        match reason {
            KernelDropReason::FillRingEmpty => self.fill_ring_empty,
            KernelDropReason::RxRingFull => self.rx_ring_full,
            KernelDropReason::SocketQueueFull => self.socket_queue_full,
        }
    }

    pub fn set(&mut self, reason: KernelDropReason, count: Option<u64>) {
        let slot = match reason {
            KernelDropReason::FillRingEmpty => &mut self.fill_ring_empty,
            KernelDropReason::RxRingFull => &mut self.rx_ring_full,
            KernelDropReason::SocketQueueFull => &mut self.socket_queue_full,
        };
        *slot = count;
    }

    /// The reasons counted, with their counts, in [`KernelDropReason::ALL`] order.
    pub fn counted(&self) -> impl Iterator<Item = (KernelDropReason, u64)> + '_ {
        KernelDropReason::ALL
            .into_iter()
            .filter_map(|reason| self.get(reason).map(|count| (reason, count)))
    }

    /// Every frame dropped, whatever the reason (`too_long` aside: it is in `truncated`).
    pub fn total(&self) -> u64 {
        self.counted()
            .fold(0, |total, (_, count)| total.saturating_add(count))
    }

    /// Adds `other`'s counts: a reason either counts is counted in the sum.
    pub fn add(&mut self, other: &KernelDrops) {
        fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                (a, b) => a.or(b),
            }
        }
        self.too_long = sum(self.too_long, other.too_long);
        for reason in KernelDropReason::ALL {
            self.set(reason, sum(self.get(reason), other.get(reason)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_are_read_under_a_flood_at_most_every_period() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        // (last read at, now, due)
        let cases = [
            (None, 0, true),
            (Some(0), 0, false),
            (Some(0), 499, false),
            (Some(0), 500, true),
            (Some(100), 2_000, true),
            // A clock that went backwards never makes a read due early.
            (Some(900), 100, false),
        ];
        for (last, now, due) in cases {
            assert_eq!(
                statistics_due(last.map(ms), ms(now)),
                due,
                "last read {last:?} ms, now {now} ms"
            );
        }
    }

    #[test]
    fn each_backend_counts_its_own_reasons_only() {
        let counted = |drops: KernelDrops| -> Vec<&str> {
            drops.counted().map(|(reason, _)| reason.name()).collect()
        };
        assert_eq!(
            counted(KernelDrops::afxdp(1, 2, 3)),
            ["fill_ring_empty", "rx_ring_full"]
        );
        assert_eq!(counted(KernelDrops::afpacket(4)), ["socket_queue_full"]);
        assert_eq!(counted(KernelDrops::default()), Vec::<&str>::new());
    }

    #[test]
    fn sums_keep_what_either_side_counts() {
        // (a, b, a + b)
        let cases = [
            (
                KernelDrops::afpacket(3),
                KernelDrops::afpacket(4),
                KernelDrops::afpacket(7),
            ),
            (
                KernelDrops::default(),
                KernelDrops::afpacket(4),
                KernelDrops::afpacket(4),
            ),
            (
                KernelDrops::afxdp(1, 2, 3),
                KernelDrops::afxdp(10, 20, 30),
                KernelDrops::afxdp(11, 22, 33),
            ),
            (
                KernelDrops::afpacket(u64::MAX),
                KernelDrops::afpacket(1),
                KernelDrops::afpacket(u64::MAX),
            ),
        ];
        for (a, b, sum) in cases {
            let mut total = a;
            total.add(&b);
            assert_eq!(total, sum, "{a:?} + {b:?}");
        }
        // Too long is in `truncated`: not part of the total.
        assert_eq!(KernelDrops::afxdp(100, 2, 3).total(), 5);
        assert_eq!(KernelDrops::afpacket(9).total(), 9);
    }

    #[test]
    fn reasons_have_distinct_names_in_index_order() {
        let names: std::collections::BTreeSet<&str> =
            KernelDropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), KernelDropReason::COUNT);
        for (i, reason) in KernelDropReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
            let mut drops = KernelDrops::default();
            drops.set(reason, Some(i as u64 + 1));
            assert_eq!(drops.get(reason), Some(i as u64 + 1));
            assert_eq!(
                drops.counted().collect::<Vec<_>>(),
                [(reason, i as u64 + 1)]
            );
        }
    }
}
