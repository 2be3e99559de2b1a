//! The AF_XDP backend, the default: frames go from one port's RX ring to the other port's TX
//! ring by descriptor, never copied by the gateway (in copy mode the kernel copies them into
//! the UMEM on receive and out of it on send; in zero-copy mode nobody does).
//!
//! ```text
//!  outside NIC queue i ──XDP redirect──▶ RX(outside) ─┐            ┌─▶ TX(inside) ──▶ inside NIC
//!                                                     ├─ decide ───┤
//!  inside NIC queue i  ──XDP redirect──▶ RX(inside)  ─┘  (drop:    └─▶ TX(outside) ─▶ outside NIC
//!                                                        back to the fill ring it came from)
//!                 one UMEM per worker, shared by both ports; completions refill the fill rings
//! ```
//!
//! Each worker opens one AF_XDP socket per port on queue `worker`, both on one UMEM
//! (`XDP_SHARED_UMEM` across two interfaces: libxdp gives the second socket its own fill and
//! completion rings, which xsk-rs hands back). Which frame is where lives in `frames.rs`, the
//! one module that touches the rings. The XDP program that redirects to the sockets is
//! libxdp's; `program.rs` makes sure a program left by a killed gateway is replaced rather
//! than reused (see there for what libxdp leaves behind).
//!
//! **Modes.** Each port tries native (driver) XDP with zero-copy, then native with copy, then
//! generic (skb) XDP with copy, and the pair reports what it got, e.g.
//! `afxdp (native, copy, need_wakeup)`. A veth gets native copy: veth runs XDP programs but
//! cannot bind a zero-copy socket. The second port's socket shares the first one's UMEM and
//! so its copy mode: if the first got zero-copy and the second cannot follow, both are bound
//! again in copy mode. `need_wakeup` is always asked for; the kernel is woken
//! only when it sets the flag (in copy mode it always does for TX, since the `sendto` is what
//! sends).
//!
//! **A poll** reclaims completions and tops up both fill rings, takes up to one batch from
//! each RX ring, hands every frame to `decide`, puts forwarded frames on the other port's TX
//! ring in one go and dropped ones back on their fill ring in one go, then wakes the kernel
//! where it asked to be. When both RX rings are empty it looks again a bounded number of
//! times if frames came within the last 200 µs (`spin.rs`; with busy polling asked for, each
//! look runs the kernel's receive processing), and only then waits in `poll(2)`.
//!
//! **Ring sizes.** 4096 entries per ring by default, and four rings' worth of 4 KiB frames
//! (64 MiB of UMEM per worker): a worker that is not scheduled for a while (a busy core, a
//! burst of softirq work) loses frames once the RX ring or the fill ring runs out, and at
//! 130,000 frames/s a 1024-entry ring covers only 8 ms of that. A port never has more
//! frames with the kernel (fill ring and RX ring together) than its RX ring holds, so that
//! a worker that falls behind has the kernel drop at the fill ring, before copying, rather
//! than at the RX ring, after (`frames::fill_quota`).
//!
//! **Frames longer than a UMEM frame** (4096 bytes by default; a veth with XDP attached caps
//! its MTU below that) are dropped by the kernel before we see them; the socket's statistics,
//! read when a poll finds nothing to do (and every 500 ms under traffic), add them to
//! `received` and `truncated`. Multi-buffer frames are not asked for. Frames the kernel dropped because the gateway did not keep up
//! (fill ring empty, RX ring full) are in [`PortPair::kernel_drops`].
//!
//! **VLAN tags** reach `decide` as they are in the frame's bytes. A tag that the sending
//! side's offload put into packet metadata rather than into the bytes (a veth peer's VLAN
//! device does that) is not part of what XDP sees, in native or generic mode alike, and so is
//! not forwarded: turn VLAN TX offload off on such peers (`ethtool -K DEV txvlan off`), and
//! VLAN RX offload (`rxvlan`) off on NIC ports. The AF_PACKET backend restores such tags.

pub(crate) mod frames;
pub(crate) mod program;
pub(crate) mod spin;

use std::io;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use xsk_rs::config::{BindFlags, XdpFlags};

use super::{
    BackendConfig, BackendError, BackendInfo, BatchStats, Disposition, KernelDrops, PortPair,
    PortSide, statistics_due,
};
use frames::{BindError, Frames, Owner, Sizes};
use program::{AttachMode, ClaimError, PortClaim};
use spin::SpinThenSleep;

/// Largest batch accepted: at most one ring's worth.
const MAX_BATCH: usize = 1024;
/// Frames the kernel sends per `sendto` in copy mode (its default TX budget is 32); a flush
/// asks again while the ring still holds frames, up to this many times per poll.
const MAX_TX_KICKS: usize = 64;
/// How long a poll waits at most while frames are still being sent, so that their
/// completions are reclaimed promptly.
const SENDING_WAIT: Duration = Duration::from_millis(1);

/// How long after the last frames a poll that finds the RX rings empty keeps looking (busy
/// polling) before it sleeps, and how many times at most per poll (see `spin.rs`).
const SPIN_WINDOW: Duration = Duration::from_micros(200);
const SPIN_ROUNDS: u32 = 32;

/// How long a bind waits at most for the kernel to release a queue that a failed attempt in
/// another mode bound, and how often it tries meanwhile.
const RELEASE_WAIT: Duration = Duration::from_millis(500);
const RELEASE_POLL: Duration = Duration::from_millis(10);

/// The UMEM and ring sizes of each worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfXdpOptions {
    /// Entries in each of the eight rings (four per port): a power of two.
    pub ring_size: u32,
    /// Bytes per UMEM frame, headroom included: a power of two from 2048 to the page size.
    pub frame_size: u32,
    /// Frames in the UMEM; 0 means enough for every ring to be full (four rings' worth).
    pub frames: u32,
    /// Ask the kernel for preferred busy polling on the sockets, so that the worker runs the
    /// ports' receive processing itself in its receive calls (where the kernel refuses, the
    /// processing stays in softirq). Off by default: on a veth the kernel accepts the options
    /// but never busy-polls (its XDP receive queue carries no NAPI id), and on NICs it wants
    /// `napi_defer_hard_irqs` and `gro_flush_timeout` tuned along with it.
    pub busy_poll: bool,
}

impl Default for AfXdpOptions {
    fn default() -> Self {
        AfXdpOptions {
            ring_size: 4096,
            frame_size: 4096,
            frames: 0,
            busy_poll: false,
        }
    }
}

/// One worker's AF_XDP sockets on both gateway ports, on one UMEM.
///
/// Drop it on a thread in the network namespace it was opened in: closing the sockets
/// detaches the XDP program from the ports by interface index, which means something only
/// there.
///
/// `BatchStats::forwarded` counts frames put on the other port's TX ring; `tx_failed` those
/// the ring had no room for (they go back to the fill ring). Frames the kernel dropped for
/// being longer than a UMEM frame are counted in `received` and `truncated`.
pub struct AfXdpPair {
    /// Dropped first (declaration order): the sockets close, and libxdp detaches its program
    /// with the last of them, before the claims on the ports are let go.
    frames: Frames,
    ports: [Port; 2],
    _claims: [Arc<PortClaim>; 2],
    worker: usize,
    mode: String,
    /// Whether the kernel runs the ports' receive processing in this worker's receive calls.
    busy_poll: bool,
    spin: SpinThenSleep,
    /// When the kernel statistics were last read.
    statistics_read: Option<Instant>,
}

/// What a pair knows about one of its ports.
struct Port {
    interface: String,
    /// The kernel's counts for this socket, as last read.
    kernel: XdpDrops,
}

/// Frames the kernel dropped on a port's socket before the gateway could see them, since the
/// pair was opened (from the socket's `XDP_STATISTICS`, which the kernel never resets; read
/// when a poll finds nothing to do and at least every `STATISTICS_EVERY` under traffic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct XdpDrops {
    /// Longer than a UMEM frame; also counted in `BatchStats::truncated`.
    too_long: u64,
    /// No free frame on the fill ring: the gateway did not keep up.
    fill_ring_empty: u64,
    /// The RX ring was full: the gateway did not keep up.
    rx_ring_full: u64,
}

impl XdpDrops {
    fn from_statistics(statistics: &xsk_rs::socket::XdpStatistics) -> XdpDrops {
        // The kernel's `rx_dropped` counts frames too long for a UMEM frame and frames that
        // found the fill ring empty; the latter are also in `rx_fill_ring_empty`.
        XdpDrops {
            too_long: statistics
                .rx_dropped()
                .saturating_sub(statistics.rx_fill_ring_empty_descs()),
            fill_ring_empty: statistics.rx_fill_ring_empty_descs(),
            rx_ring_full: statistics.rx_ring_full(),
        }
    }

    fn reported(self) -> KernelDrops {
        KernelDrops::afxdp(self.too_long, self.fill_ring_empty, self.rx_ring_full)
    }
}

/// How one port's socket runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortMode {
    attach: AttachMode,
    zero_copy: bool,
}

impl PortMode {
    fn describe(self) -> String {
        let copy = if self.zero_copy { "zero-copy" } else { "copy" };
        format!("{}, {copy}", self.attach.name())
    }
}

/// Opens worker `worker`'s sockets on both ports of `config`, with the default sizes. Must be
/// called in the network namespace of the ports.
pub fn open(config: &BackendConfig, worker: usize) -> Result<AfXdpPair, BackendError> {
    open_with(config, worker, &AfXdpOptions::default())
}

/// [`open`] with chosen UMEM and ring sizes.
pub fn open_with(
    config: &BackendConfig,
    worker: usize,
    options: &AfXdpOptions,
) -> Result<AfXdpPair, BackendError> {
    let sizes = check_config(config, worker, options)?;
    let queue = queue_number(worker);
    let ifindexes = [
        interface_index(&config.outside)?,
        interface_index(&config.inside)?,
    ];
    if ifindexes[0] == ifindexes[1] {
        // Two names of one interface (an alternative name): binding it twice on one UMEM is
        // what xsk-rs forbids without INHIBIT_PROG_LOAD, and a gateway needs two ports anyway.
        return Err(BackendError::Unsupported {
            interface: config.outside.clone(),
            message: format!(
                "is the same interface as {}: the gateway needs two interfaces",
                config.inside
            ),
        });
    }
    program::silence_libraries();
    let bpffs = program::ensure_bpffs();
    // One opening at a time in this process: a port's first worker decides its mode.
    let _opening = program::OPENING
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let names = [config.outside.as_str(), config.inside.as_str()];
    let claims = [
        claim_port(names[0], queue, ifindexes[0])?,
        claim_port(names[1], queue, ifindexes[1])?,
    ];
    // A zero-copy UMEM makes the second port zero-copy too (the kernel binds a socket that
    // shares a UMEM the way the UMEM's first socket was bound): if the inside port cannot,
    // both start again in copy mode.
    let (frames, modes) = match bind_both(config, sizes, names, queue, &claims, true) {
        Err(Retry::WithoutZeroCopy(_)) => bind_both(config, sizes, names, queue, &claims, false),
        result => result,
    }
    .map_err(Retry::into_error)?;
    let replaced = [claims[0].replaced, claims[1].replaced];
    let mut mode = describe_mode(config, replaced, modes, bpffs, sizes);
    let busy_poll = options.busy_poll && enable_busy_poll(&frames, config.batch_size);
    if busy_poll {
        mode.push_str("; busy polling");
    }
    Ok(AfXdpPair {
        frames,
        ports: names.map(|interface| Port {
            interface: interface.to_string(),
            kernel: XdpDrops::default(),
        }),
        _claims: claims,
        worker,
        mode,
        busy_poll,
        spin: SpinThenSleep::new(SPIN_WINDOW, SPIN_ROUNDS),
        statistics_read: None,
    })
}

/// Asks for preferred busy polling on both sockets, a batch at a time; false if the kernel
/// refused it on either (then receive processing stays in softirq, which works too).
fn enable_busy_poll(frames: &Frames, batch: usize) -> bool {
    let budget = u16::try_from(batch).unwrap_or(u16::MAX);
    PortSide::BOTH
        .iter()
        .all(|side| frames.prefer_busy_poll(*side, budget).is_ok())
}

/// Why binding both ports failed.
enum Retry {
    /// The outside port took zero-copy and the inside port could not follow (its error).
    WithoutZeroCopy(BackendError),
    No(BackendError),
}

impl Retry {
    fn into_error(self) -> BackendError {
        match self {
            Retry::WithoutZeroCopy(error) | Retry::No(error) => error,
        }
    }
}

/// A new UMEM with both ports' sockets bound on it, outside first.
///
/// Each attempt on the outside port starts from a new UMEM: the outside socket is the UMEM's
/// own socket, and when libxdp fails to attach its program after binding it, it keeps that
/// socket open and bound, so a second attempt on the same UMEM would find the queue busy.
fn bind_both(
    config: &BackendConfig,
    sizes: Sizes,
    names: [&str; 2],
    queue: u32,
    claims: &[Arc<PortClaim>; 2],
    allow_zero_copy: bool,
) -> Result<(Frames, [PortMode; 2]), Retry> {
    let copies: &[bool] = if allow_zero_copy {
        &[true, false]
    } else {
        &[false]
    };
    let mut bound = None;
    let outside = bind_port(names[0], queue, &claims[0], copies, |mode| {
        let mut frames = Frames::new(sizes, config.batch_size)?;
        frames.bind(
            PortSide::Outside,
            names[0],
            queue,
            socket_flags(mode),
            sizes.ring,
        )?;
        bound = Some(frames);
        Ok(())
    })
    .map_err(Retry::No)?;
    let Some(mut frames) = bound else {
        // `bind_port` returns a mode only after an attempt succeeded, which set `bound`.
        return Err(Retry::No(BackendError::Unsupported {
            interface: names[0].to_string(),
            message: "no UMEM after a successful bind".to_string(),
        }));
    };
    let inside = bind_port(names[1], queue, &claims[1], &[outside.zero_copy], |mode| {
        // The inside socket shares the UMEM; libxdp closes it when an attempt fails.
        frames.bind(
            PortSide::Inside,
            names[1],
            queue,
            socket_flags(mode),
            sizes.ring,
        )
    })
    .map_err(|error| {
        if outside.zero_copy {
            Retry::WithoutZeroCopy(error)
        } else {
            Retry::No(error)
        }
    })?;
    Ok((frames, [outside, inside]))
}

fn check_config(
    config: &BackendConfig,
    worker: usize,
    options: &AfXdpOptions,
) -> Result<Sizes, BackendError> {
    let unsupported = |message: String| BackendError::Unsupported {
        interface: config.outside.clone(),
        message,
    };
    if config.outside == config.inside {
        return Err(unsupported(
            "is both the outside and the inside port: the gateway needs two interfaces".to_string(),
        ));
    }
    if worker >= config.workers {
        return Err(unsupported(format!(
            "worker {worker} does not exist: {} workers configured",
            config.workers
        )));
    }
    if config.batch_size == 0 || config.batch_size > MAX_BATCH {
        return Err(unsupported(format!(
            "batch size {} is not within 1..={MAX_BATCH}",
            config.batch_size
        )));
    }
    let ring = options.ring_size;
    if !ring.is_power_of_two() || (ring as usize) < config.batch_size {
        return Err(unsupported(format!(
            "ring size {ring} must be a power of two no smaller than the batch size {}",
            config.batch_size
        )));
    }
    if !options.frame_size.is_power_of_two() || !(2048..=65536).contains(&options.frame_size) {
        return Err(unsupported(format!(
            "frame size {} must be a power of two from 2048",
            options.frame_size
        )));
    }
    let frames = match options.frames {
        0 => ring.saturating_mul(4),
        frames => frames,
    };
    if (frames as usize) < 2 * config.batch_size {
        return Err(unsupported(format!(
            "{frames} UMEM frames cannot hold a batch of {} on each port",
            config.batch_size
        )));
    }
    Ok(Sizes {
        frames,
        frame_size: options.frame_size,
        ring,
    })
}

fn interface_index(interface: &str) -> Result<u32, BackendError> {
    let missing = || BackendError::NoSuchInterface {
        interface: interface.to_string(),
    };
    let name = std::ffi::CString::new(interface).map_err(|_| missing())?;
    match program::interface_index(&name) {
        0 => Err(missing()),
        index => Ok(index),
    }
}

fn claim_port(interface: &str, queue: u32, ifindex: u32) -> Result<Arc<PortClaim>, BackendError> {
    program::claim(ifindex).map_err(|error| match error {
        ClaimError::Busy => BackendError::Io {
            interface: interface.to_string(),
            queue,
            operation: "claim the port",
            source: io::Error::other(
                "another gateway process is running on this port: stop it first",
            ),
        },
        ClaimError::Io(operation, source) => BackendError::Io {
            interface: interface.to_string(),
            queue,
            operation,
            source,
        },
    })
}

/// Binds a port's socket in the best mode it offers, by calling `attempt` with each mode in
/// turn: native (zero-copy, then copy, of those in `copies`), then generic copy. A port that
/// another worker of this process has bound keeps its attach mode.
fn bind_port<F>(
    interface: &str,
    queue: u32,
    claim: &PortClaim,
    copies: &[bool],
    mut attempt: F,
) -> Result<PortMode, BackendError>
where
    F: FnMut(PortMode) -> Result<(), BindError>,
{
    let mut decided = claim.mode.lock().unwrap_or_else(PoisonError::into_inner);
    let attaches: &[AttachMode] = match *decided {
        Some(AttachMode::Native) => &[AttachMode::Native],
        Some(AttachMode::Generic) => &[AttachMode::Generic],
        None => &[AttachMode::Native, AttachMode::Generic],
    };
    let mut failures = Vec::new();
    for &attach in attaches {
        for &zero_copy in copies {
            if zero_copy && attach == AttachMode::Generic {
                continue;
            }
            let mode = PortMode { attach, zero_copy };
            let mut result = attempt(mode);
            // A failed attempt may have bound the queue before failing to attach the program;
            // the kernel lets go of the queue in a work item after the socket closes, so the
            // next attempt can find it busy for a moment.
            let mut waited = Duration::ZERO;
            while !failures.is_empty()
                && waited < RELEASE_WAIT
                && result
                    .as_ref()
                    .is_err_and(|error| error.errno == Some(libc::EBUSY))
            {
                std::thread::sleep(RELEASE_POLL);
                waited += RELEASE_POLL;
                result = attempt(mode);
            }
            match result {
                Ok(()) => {
                    *decided = Some(attach);
                    return Ok(mode);
                }
                Err(error) => failures.push((MODE_NAMES[mode_index(mode)], error)),
            }
        }
    }
    Err(bind_failure(
        interface,
        queue,
        "bind an AF_XDP socket",
        &failures,
    ))
}

const MODE_NAMES: [&str; 3] = ["native zero-copy", "native copy", "generic copy"];

fn mode_index(mode: PortMode) -> usize {
    match (mode.attach, mode.zero_copy) {
        (AttachMode::Native, true) => 0,
        (AttachMode::Native, false) => 1,
        (AttachMode::Generic, _) => 2,
    }
}

fn socket_flags(mode: PortMode) -> (XdpFlags, BindFlags) {
    let xdp = match mode.attach {
        AttachMode::Native => XdpFlags::XDP_FLAGS_DRV_MODE,
        AttachMode::Generic => XdpFlags::XDP_FLAGS_SKB_MODE,
    };
    let copy = if mode.zero_copy {
        BindFlags::XDP_ZEROCOPY
    } else {
        BindFlags::XDP_COPY
    };
    (xdp, copy | BindFlags::XDP_USE_NEED_WAKEUP)
}

/// The error for a port on which no mode worked. "This kernel or NIC cannot do AF_XDP" is
/// `Unsupported`, so that the runtime can fall back to AF_PACKET; anything else (permission,
/// a busy queue, memory) is `Io`, since AF_PACKET would not fix it.
fn bind_failure(
    interface: &str,
    queue: u32,
    operation: &'static str,
    failures: &[(&str, BindError)],
) -> BackendError {
    let tried = failures
        .iter()
        .map(|(mode, error)| {
            if mode.is_empty() {
                error.reason.clone()
            } else {
                format!("{mode}: {}", error.reason)
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let errnos: Vec<i32> = failures.iter().filter_map(|(_, e)| e.errno).collect();
    let any = |codes: &[i32]| errnos.iter().any(|errno| codes.contains(errno));
    if any(&[libc::EBUSY]) {
        return BackendError::Io {
            interface: interface.to_string(),
            queue,
            operation,
            source: io::Error::other(format!(
                "queue {queue} is in use by another AF_XDP socket ({tried})"
            )),
        };
    }
    if any(&[libc::EPERM, libc::EACCES]) {
        return BackendError::Io {
            interface: interface.to_string(),
            queue,
            operation,
            source: io::Error::other(format!(
                "not permitted: AF_XDP needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF ({tried})"
            )),
        };
    }
    if any(&[libc::ENOMEM, libc::ENOBUFS]) {
        return BackendError::Io {
            interface: interface.to_string(),
            queue,
            operation,
            source: io::Error::other(format!(
                "out of memory: raise the locked-memory limit (ulimit -l) or use smaller rings \
                 ({tried})"
            )),
        };
    }
    let queue_hint = if queue > 0 {
        format!(
            " (if the interface has fewer than {} queues, use fewer workers)",
            queue + 1
        )
    } else {
        String::new()
    };
    BackendError::Unsupported {
        interface: interface.to_string(),
        message: format!(
            "queue {queue}: {operation}: AF_XDP not supported on this interface{queue_hint}: \
             use --backend afpacket ({tried})"
        ),
    }
}

/// The mode part of `info()`: how each port runs, the sizes, and anything replaced.
fn describe_mode(
    config: &BackendConfig,
    replaced: [Option<u32>; 2],
    modes: [PortMode; 2],
    bpffs: bool,
    sizes: Sizes,
) -> String {
    let [outside, inside] = modes.map(PortMode::describe);
    let mut mode = if outside == inside {
        format!("{outside}, need_wakeup")
    } else {
        format!("outside {outside}, inside {inside}, need_wakeup")
    };
    mode.push_str(&format!(
        "; UMEM {} x {} B shared by both ports, rings {}, batch {}",
        sizes.frames, sizes.frame_size, sizes.ring, config.batch_size
    ));
    if !bpffs {
        mode.push_str("; no bpffs at /sys/fs/bpf: libxdp attaches without its dispatcher");
    }
    for (replaced, interface) in replaced.iter().zip([&config.outside, &config.inside]) {
        if let Some(id) = replaced {
            mode.push_str(&format!(
                "; replaced the XDP program (id {id}) a previous gateway left on {interface}"
            ));
        }
    }
    mode
}

impl PortPair for AfXdpPair {
    fn poll<F>(&mut self, timeout: Duration, mut decide: F) -> Result<BatchStats, BackendError>
    where
        F: FnMut(PortSide, &[u8]) -> Disposition,
    {
        let mut stats = BatchStats::default();
        self.service_rings();
        let mut received = self.receive();
        if received == 0 {
            received = self.spin()?;
        }
        if received == 0 {
            self.wait(timeout)?;
            self.service_rings();
            received = self.receive();
            if received == 0 {
                self.count_kernel_drops(&mut stats)?;
                self.statistics_read = Some(Instant::now());
            }
        }
        if received > 0 {
            let now = Instant::now();
            self.spin.frames_seen(now);
            if statistics_due(self.statistics_read, now) {
                self.count_kernel_drops(&mut stats)?;
                self.statistics_read = Some(now);
            }
        }
        for side in PortSide::BOTH {
            let decided = self.frames.decide(side, &mut decide);
            let i = side.index();
            stats.received[i] += decided.received;
            stats.received_bytes[i] += decided.received_bytes;
            stats.dropped[i] += decided.dropped;
            stats.truncated[i] += decided.malformed;
        }
        for to in PortSide::BOTH {
            let (sent, refused) = self.frames.transmit(to);
            let from = to.other().index();
            stats.forwarded[from] += count(sent);
            stats.tx_failed[from] += count(refused);
        }
        for side in PortSide::BOTH {
            self.frames.recycle(side);
        }
        self.flush_tx()?;
        self.wake_fill()?;
        Ok(stats)
    }

    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "afxdp",
            mode: self.mode.clone(),
        }
    }

    /// As last read: when a poll finds nothing to do, and at least every
    /// `STATISTICS_EVERY` under traffic.
    fn kernel_drops(&self) -> Option<[KernelDrops; 2]> {
        Some(self.ports.each_ref().map(|port| port.kernel.reported()))
    }
}

impl AfXdpPair {
    fn error(&self, side: PortSide, operation: &'static str, source: io::Error) -> BackendError {
        BackendError::Io {
            interface: self.ports[side.index()].interface.clone(),
            queue: queue_number(self.worker),
            operation,
            source,
        }
    }

    /// Frames sent are reclaimed, and the free ones go to the fill rings.
    fn service_rings(&mut self) {
        for side in PortSide::BOTH {
            self.frames.reclaim_completed(side);
        }
        self.frames.refill_both();
    }

    /// Looks for frames again a few times before the poll sleeps, shortly after frames came
    /// (see `spin.rs`). With busy polling each look runs the ports' receive processing here.
    fn spin(&mut self) -> Result<usize, BackendError> {
        for _ in 0..self.spin.rounds(Instant::now()) {
            if self.busy_poll {
                for side in PortSide::BOTH {
                    self.frames
                        .wake_rx(side)
                        .map_err(|source| self.error(side, "busy poll (recvfrom)", source))?;
                }
            } else {
                std::hint::spin_loop();
            }
            self.service_rings();
            let received = self.receive();
            if received > 0 {
                return Ok(received);
            }
        }
        Ok(0)
    }

    fn receive(&mut self) -> usize {
        PortSide::BOTH
            .iter()
            .map(|side| self.frames.receive(*side))
            .sum()
    }

    /// Waits until a port has frames, or `timeout` (shorter while frames are being sent).
    fn wait(&mut self, timeout: Duration) -> Result<(), BackendError> {
        let sending = PortSide::BOTH
            .iter()
            .any(|side| self.frames.ledger().count(Owner::Tx(*side)) > 0);
        let timeout = if sending {
            timeout.min(SENDING_WAIT)
        } else {
            timeout
        };
        self.frames
            .wait_readable(timeout)
            .map_err(|source| BackendError::Io {
                interface: format!(
                    "{} and {}",
                    self.ports[0].interface, self.ports[1].interface
                ),
                queue: queue_number(self.worker),
                operation: "wait for frames (poll)",
                source,
            })
    }

    /// Tells the kernel to send what the TX rings hold, where it asked to be told. In copy
    /// mode one `sendto` sends a limited number of frames, so it is repeated while the ring
    /// still holds some and the kernel takes them.
    fn flush_tx(&mut self) -> Result<(), BackendError> {
        for side in PortSide::BOTH {
            let mut queued = self.frames.tx_queued(side);
            let mut kicks = 0;
            while queued > 0 && kicks < MAX_TX_KICKS && self.frames.tx_needs_wakeup(side) {
                self.frames
                    .kick_tx(side)
                    .map_err(|source| self.error(side, "send (sendto)", source))?;
                kicks += 1;
                self.frames.reclaim_completed(side);
                let left = self.frames.tx_queued(side);
                if left >= queued {
                    break;
                }
                queued = left;
            }
        }
        Ok(())
    }

    /// Tells the kernel that the fill rings have frames again, where it asked to be told.
    fn wake_fill(&mut self) -> Result<(), BackendError> {
        for side in PortSide::BOTH {
            if self.frames.fill_needs_wakeup(side) {
                self.frames
                    .wake_rx(side)
                    .map_err(|source| self.error(side, "wake receive (recvfrom)", source))?;
            }
        }
        Ok(())
    }

    /// Reads the sockets' kernel statistics; frames dropped for being longer than a UMEM
    /// frame since the last look go into `received` and `truncated`.
    fn count_kernel_drops(&mut self, stats: &mut BatchStats) -> Result<(), BackendError> {
        for side in PortSide::BOTH {
            let statistics = self
                .frames
                .kernel_statistics(side)
                .map_err(|source| self.error(side, "read statistics (XDP_STATISTICS)", source))?;
            let Some(statistics) = statistics else {
                continue;
            };
            let now = XdpDrops::from_statistics(&statistics);
            let port = &mut self.ports[side.index()];
            let new = now.too_long.saturating_sub(port.kernel.too_long);
            port.kernel = now;
            let new = u32::try_from(new).unwrap_or(u32::MAX);
            stats.received[side.index()] += new;
            stats.truncated[side.index()] += new;
        }
        Ok(())
    }

    /// Frames the kernel dropped on each port's socket (outside, inside) since the pair was
    /// opened, read now.
    pub fn read_kernel_drops(&self) -> Result<[KernelDrops; 2], BackendError> {
        let mut drops = [XdpDrops::default().reported(); 2];
        for side in PortSide::BOTH {
            let statistics = self
                .frames
                .kernel_statistics(side)
                .map_err(|source| self.error(side, "read statistics (XDP_STATISTICS)", source))?;
            if let Some(statistics) = statistics {
                drops[side.index()] = XdpDrops::from_statistics(&statistics).reported();
            }
        }
        Ok(drops)
    }
}

impl std::fmt::Debug for AfXdpPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpPair")
            .field("outside", &self.ports[0].interface)
            .field("inside", &self.ports[1].interface)
            .field("worker", &self.worker)
            .field("mode", &self.mode)
            .finish()
    }
}

fn queue_number(worker: usize) -> u32 {
    u32::try_from(worker).unwrap_or(u32::MAX)
}

fn count(frames: usize) -> u32 {
    u32::try_from(frames).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BackendConfig {
        BackendConfig {
            outside: "pc-no-out".to_string(),
            inside: "pc-no-in".to_string(),
            workers: 2,
            batch_size: 64,
        }
    }

    #[test]
    fn bad_configurations_are_refused_before_touching_an_interface() {
        let good = config();
        let options = AfXdpOptions::default();
        // (configuration, worker, options, what the message says)
        let cases = [
            (
                BackendConfig {
                    inside: good.outside.clone(),
                    ..good.clone()
                },
                0,
                options,
                "both",
            ),
            (good.clone(), 2, options, "worker 2 does not exist"),
            (
                BackendConfig {
                    batch_size: 0,
                    ..good.clone()
                },
                0,
                options,
                "batch size 0",
            ),
            (
                BackendConfig {
                    batch_size: MAX_BATCH + 1,
                    ..good.clone()
                },
                0,
                options,
                "batch size",
            ),
            (
                good.clone(),
                0,
                AfXdpOptions {
                    ring_size: 1000,
                    ..options
                },
                "ring size 1000",
            ),
            (
                good.clone(),
                0,
                AfXdpOptions {
                    ring_size: 32,
                    ..options
                },
                "ring size 32",
            ),
            (
                good.clone(),
                0,
                AfXdpOptions {
                    frame_size: 3000,
                    ..options
                },
                "frame size 3000",
            ),
            (
                good.clone(),
                0,
                AfXdpOptions {
                    frame_size: 1024,
                    ..options
                },
                "frame size 1024",
            ),
            (
                good.clone(),
                0,
                AfXdpOptions {
                    frames: 100,
                    ..options
                },
                "100 UMEM frames",
            ),
        ];
        for (config, worker, options, message) in cases {
            let error = open_with(&config, worker, &options).unwrap_err();
            assert!(
                matches!(error, BackendError::Unsupported { .. })
                    && error.to_string().contains(message),
                "{config:?} worker {worker} {options:?}: {error}"
            );
        }
    }

    #[test]
    fn default_sizes_fill_every_ring() {
        let sizes = check_config(&config(), 0, &AfXdpOptions::default()).unwrap();
        assert_eq!(sizes.frames, 4 * sizes.ring);
        assert_eq!(sizes.frame_size, 4096);
        // Deep enough to ride out a worker stall of 25 ms at 150,000 frames/s.
        assert!(sizes.ring >= 150_000 / 40, "ring {}", sizes.ring);
    }

    #[test]
    fn chosen_sizes_are_kept() {
        // (ring, frames asked for, frames in the UMEM)
        let cases = [
            (1024, 0, 4096),
            (2048, 0, 8192),
            (1024, 512, 512),
            (64, 0, 256),
        ];
        for (ring_size, frames, expected) in cases {
            let options = AfXdpOptions {
                ring_size,
                frames,
                ..AfXdpOptions::default()
            };
            let sizes = check_config(&config(), 0, &options).unwrap();
            assert_eq!((sizes.ring, sizes.frames), (ring_size, expected));
        }
    }

    #[test]
    fn a_missing_interface_is_named() {
        let error = open(&config(), 0).unwrap_err();
        assert!(
            matches!(error, BackendError::NoSuchInterface { .. }),
            "{error}"
        );
        assert_eq!(error.to_string(), "pc-no-out: no such network interface");
    }

    fn failed(errno: Option<i32>) -> BindError {
        BindError {
            reason: format!("errno {errno:?}"),
            errno,
        }
    }

    #[test]
    fn bind_failures_say_whether_afpacket_would_help() {
        // (errnos of the attempts, queue, unsupported?, what the message says)
        let cases: [(&[Option<i32>], u32, bool, &str); 7] = [
            (
                &[Some(libc::EOPNOTSUPP), Some(libc::EOPNOTSUPP)],
                0,
                true,
                "use --backend afpacket",
            ),
            (&[Some(libc::EAFNOSUPPORT)], 0, true, "AF_XDP not supported"),
            (&[None], 0, true, "use --backend afpacket"),
            (
                &[Some(libc::EINVAL)],
                3,
                true,
                "fewer than 4 queues, use fewer workers",
            ),
            (
                &[Some(libc::EOPNOTSUPP), Some(libc::EBUSY)],
                1,
                false,
                "queue 1 is in use",
            ),
            (&[Some(libc::EPERM)], 0, false, "CAP_NET_ADMIN"),
            (&[Some(libc::ENOMEM)], 0, false, "ulimit -l"),
        ];
        for (errnos, queue, unsupported, message) in cases {
            let failures: Vec<(&str, BindError)> = errnos
                .iter()
                .zip(MODE_NAMES)
                .map(|(errno, mode)| (mode, failed(*errno)))
                .collect();
            let error = bind_failure("pc-port", queue, "bind an AF_XDP socket", &failures);
            let text = error.to_string();
            assert_eq!(
                matches!(error, BackendError::Unsupported { .. }),
                unsupported,
                "{errnos:?}: {text}"
            );
            assert!(text.contains(message), "{errnos:?}: {text}");
            assert!(text.starts_with("pc-port"), "{text}");
            assert!(text.contains(&format!("queue {queue}")), "{text}");
            for (mode, _) in &failures {
                assert!(text.contains(mode), "{text} does not say what was tried");
            }
        }
    }

    #[test]
    fn the_mode_says_how_each_port_runs() {
        let sizes = Sizes {
            frames: 4096,
            frame_size: 4096,
            ring: 1024,
        };
        let native_copy = PortMode {
            attach: AttachMode::Native,
            zero_copy: false,
        };
        let generic = PortMode {
            attach: AttachMode::Generic,
            zero_copy: false,
        };
        let zero_copy = PortMode {
            attach: AttachMode::Native,
            zero_copy: true,
        };
        let config = config();
        let cases = [
            (
                [native_copy, native_copy],
                [None, None],
                true,
                "native, copy, need_wakeup; UMEM 4096 x 4096 B shared by both ports, rings 1024, \
                 batch 64",
            ),
            (
                [zero_copy, zero_copy],
                [None, None],
                true,
                "native, zero-copy, need_wakeup; UMEM",
            ),
            (
                [native_copy, generic],
                [None, None],
                true,
                "outside native, copy, inside generic, copy, need_wakeup; UMEM",
            ),
            (
                [native_copy, native_copy],
                [None, Some(17)],
                false,
                "attaches without its dispatcher; replaced the XDP program (id 17) a previous \
                 gateway left on pc-no-in",
            ),
        ];
        for (modes, replaced, bpffs, expected) in cases {
            let mode = describe_mode(&config, replaced, modes, bpffs, sizes);
            assert!(
                mode.starts_with(expected) || mode.ends_with(expected),
                "{mode}"
            );
        }
    }
}
