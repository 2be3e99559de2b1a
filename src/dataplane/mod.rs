//! The packet path's edge: backends that receive frames from the two gateway ports and
//! forward or drop them, and (later) the pinned workers that drive them.
//!
//! A backend owns its frames from receive to transmit: the worker only sees each received
//! frame as a byte slice and answers with a [`Disposition`]. That keeps frame ownership (and
//! every `unsafe` that ring buffers need) inside the backend modules, and lets an AF_XDP
//! backend forward by passing a descriptor while an AF_PACKET backend copies.

use std::fmt;
use std::time::Duration;

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
    /// (outside, inside), since the pair opened; `None` when the backend does not count them.
    fn kernel_drops(&self) -> Option<[afxdp::KernelDrops; 2]> {
        None
    }
}
