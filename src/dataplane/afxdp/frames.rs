//! Who holds each frame of a worker's UMEM, and every ring operation that moves one.
//!
//! One UMEM serves both ports of a worker, so forwarding a frame is handing its descriptor
//! from one port's RX ring to the other port's TX ring. Each frame has exactly one owner:
//!
//! ```text
//!            refill                 receive                forward
//!   Free ───────────▶ Fill(p) ─────────────▶ InHand(p) ─────────────▶ Tx(q = other p)
//!    ▲                  ▲                       │  drop, or TX ring full    │
//!    │                  └───────────────────────┘                           │
//!    └────────────────────────────── completion on q ◀────────────────────┘
//! ```
//!
//! - `Free`: in the free list, ours, on no ring.
//! - `Fill(p)`: on port p's fill ring or, once the kernel has taken it, holding a frame on its
//!   way to p's RX ring. The kernel's until it comes out of p's RX ring.
//! - `InHand(p)`: received on p, out of every ring: the only state in which we read the bytes.
//! - `Tx(q)`: on port q's TX ring or being sent. The kernel's until it comes out of q's
//!   completion ring.
//!
//! A dropped frame goes straight back to the fill ring it came from (it came out of that
//! ring, so the ring has room for it). Completed frames go to the free list, and the free list
//! tops up both fill rings. Frames never leave these five places, so none leaks: the
//! [`Ledger`] counts every state (kept in all builds, it is what the worker's waiting and
//! refilling read), and in debug builds also records each frame's owner and panics on a move
//! that does not start where the frame is — the mistake that would hand the kernel a frame
//! twice.
//!
//! This module holds all the `unsafe` that xsk-rs asks for: its ring calls are `unsafe`
//! because submitting a frame that is already on a ring, or reading one the kernel may write,
//! is undefined behaviour. Everything outside sees safe batch calls only.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use xsk_rs::config::{BindFlags, FrameSize, QueueSize, SocketConfig, UmemConfig, XdpFlags};
use xsk_rs::socket::{Socket, SocketCreateError};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use super::super::{Disposition, PortSide};

/// Where one frame is. See the module documentation for the moves between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Free,
    Fill(PortSide),
    InHand(PortSide),
    Tx(PortSide),
}

impl Owner {
    const COUNT: usize = 7;

    fn index(self) -> usize {
        match self {
            Owner::Free => 0,
            Owner::Fill(side) => 1 + side.index(),
            Owner::InHand(side) => 3 + side.index(),
            Owner::Tx(side) => 5 + side.index(),
        }
    }
}

/// How many frames are in each state and, in debug builds, which state each frame is in.
#[derive(Debug)]
pub(crate) struct Ledger {
    counts: [usize; Owner::COUNT],
    #[cfg(debug_assertions)]
    frame_size: usize,
    #[cfg(debug_assertions)]
    owners: Vec<Owner>,
}

impl Ledger {
    /// A ledger for `frames` frames of `frame_size` bytes, all free.
    pub(crate) fn new(frames: usize, frame_size: usize) -> Ledger {
        let mut counts = [0; Owner::COUNT];
        counts[Owner::Free.index()] = frames;
        #[cfg(not(debug_assertions))]
        let _ = frame_size;
        Ledger {
            counts,
            #[cfg(debug_assertions)]
            frame_size,
            #[cfg(debug_assertions)]
            owners: vec![Owner::Free; frames],
        }
    }

    /// Records that the frame at UMEM offset `addr` (anywhere inside it) moved.
    ///
    /// # Panics
    /// In debug builds, when the frame is not where `from` says: a bookkeeping bug that would
    /// otherwise put one frame on two rings.
    pub(crate) fn transfer(&mut self, addr: usize, from: Owner, to: Owner) {
        #[cfg(debug_assertions)]
        {
            let frame = addr / self.frame_size;
            let owner = self.owners.get_mut(frame);
            assert!(
                owner.as_deref() == Some(&from),
                "frame {frame} (offset {addr:#x}) moved from {from:?} but is at {owner:?}"
            );
            if let Some(owner) = owner {
                *owner = to;
            }
        }
        #[cfg(not(debug_assertions))]
        let _ = addr;
        self.counts[from.index()] -= 1;
        self.counts[to.index()] += 1;
    }

    pub(crate) fn count(&self, owner: Owner) -> usize {
        self.counts[owner.index()]
    }

    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.counts.iter().sum()
    }
}

/// One port's four rings on the worker's UMEM.
struct PortRings {
    fill: FillQueue,
    completion: CompQueue,
    rx: RxQueue,
    tx: TxQueue,
    fill_size: u32,
    rx_size: u32,
    tx_size: u32,
}

/// The sizes of a worker's UMEM and rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sizes {
    /// Frames in the UMEM, shared by both ports.
    pub frames: u32,
    /// Bytes per frame: a power of two, at least 2048.
    pub frame_size: u32,
    /// Entries in each ring (fill, completion, RX, TX): a power of two.
    pub ring: u32,
}

/// Why a frame handed to `decide` was not forwarded or dropped in one piece.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decided {
    pub received: u32,
    pub received_bytes: u64,
    pub dropped: u32,
    /// Descriptors the kernel marked as part of a multi-buffer frame or whose length does not
    /// fit their frame: never handed to `decide`, dropped.
    pub malformed: u32,
}

/// A worker's UMEM, the rings of both its ports, and who owns each frame.
pub(crate) struct Frames {
    /// Dropped first (declaration order): a socket must go before the UMEM it uses.
    ports: [Option<PortRings>; 2],
    umem: Umem,
    frame_size: usize,
    free: Vec<FrameDesc>,
    ledger: Ledger,
    /// Received frames, per port of arrival, for the batch being decided: the first
    /// `received_count` of each (the buffers keep their length, so that a receive writes
    /// descriptors without clearing first).
    received: [Vec<FrameDesc>; 2],
    received_count: [usize; 2],
    /// Frames to send out of each port.
    outgoing: [Vec<FrameDesc>; 2],
    /// Frames going back to each port's fill ring.
    recycle: [Vec<FrameDesc>; 2],
    /// Scratch for completion-ring reads, one ring long.
    completed: Vec<FrameDesc>,
}

/// A socket creation that failed, with the errno when libxdp gave one.
#[derive(Debug)]
pub(crate) struct BindError {
    pub reason: String,
    pub errno: Option<i32>,
}

impl From<SocketCreateError> for BindError {
    fn from(error: SocketCreateError) -> BindError {
        let errno = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error);
        let reason = match errno {
            Some(errno) => format!("{error}: {}", io::Error::from_raw_os_error(errno)),
            None => error.to_string(),
        };
        BindError { reason, errno }
    }
}

/// How many more frames a port's fill ring may get when `with_kernel` frames are already the
/// kernel's for that port (on its fill ring, or received and not yet taken off its RX ring):
/// never more in all than its RX ring holds, so the RX ring can never overflow. A worker
/// that falls behind then has the kernel drop at an empty fill ring, where its copy mode
/// finds no frame to copy into, rather than at a full RX ring, which it finds only after
/// taking a frame and copying the packet into it (Linux 6.x, single-buffer frames): work
/// for frames dropped anyway, done ahead of the worker on its core (the receive livelock of
/// the forwarding benchmark). Caught up, the RX ring is near empty and the fill ring holds a
/// ring's worth as before, so a stall is absorbed as before.
#[inline]
fn fill_quota(with_kernel: usize, rx_size: usize) -> usize {
    rx_size.saturating_sub(with_kernel)
}

/// How many frames ahead of the one being decided `decide` starts loading. A frame's bytes
/// were written by the kernel's copy a while ago (as long ago as the RX ring is deep) and
/// each frame has its own 4 KiB page: reading one can cost a cache and a TLB miss, which
/// the frames before it now overlap. (The do-nothing forwarder never reads a frame, so this
/// is a cost only the gateway pays.)
const PREFETCH_AHEAD: usize = 2;

/// Whether the frame `desc` names lies whole within its UMEM frame (one buffer, its length
/// inside the frame).
#[inline]
fn is_whole(desc: &FrameDesc, frame_size: usize) -> bool {
    !desc.has_more_frames()
        && (desc.addr() % frame_size).checked_add(desc.lengths().data()) <= Some(frame_size)
}

/// Starts loading the first bytes of a received frame that `decide` reads soon.
#[inline]
fn prefetch_frame(umem: &Umem, desc: &FrameDesc, frame_size: usize) {
    if !is_whole(desc, frame_size) {
        return;
    }
    // SAFETY: as in `decide`: the frame is in hand (out of every ring, so the kernel does not
    // write it) and lies inside its UMEM frame; only its address is taken here.
    let data = unsafe { umem.data(desc) };
    prefetch_read(data.contents().as_ptr());
}

#[inline]
fn prefetch_read(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults and reads nothing into the program;
    // SSE, which it needs, is part of every x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

impl Frames {
    /// Creates the UMEM. `batch` is the most frames handled per port per poll.
    pub(crate) fn new(sizes: Sizes, batch: usize) -> Result<Frames, BindError> {
        let invalid = |reason: String| BindError {
            reason,
            errno: None,
        };
        let queue = |size: u32| {
            QueueSize::new(size).map_err(|error| invalid(format!("ring size: {error}")))
        };
        let frame_size = FrameSize::new(sizes.frame_size)
            .map_err(|error| invalid(format!("frame size: {error}")))?;
        let config = UmemConfig::builder()
            .frame_size(frame_size)
            .fill_queue_size(queue(sizes.ring)?)
            .comp_queue_size(queue(sizes.ring)?)
            .frame_headroom(0)
            .build()
            .map_err(|error| invalid(format!("UMEM layout: {error}")))?;
        let count = std::num::NonZeroU32::new(sizes.frames)
            .ok_or_else(|| invalid("a UMEM needs at least one frame".to_string()))?;
        let (umem, free) = Umem::new(config, count, false).map_err(|error| {
            let source = std::error::Error::source(&error)
                .and_then(|source| source.downcast_ref::<io::Error>());
            BindError {
                reason: match source {
                    Some(source) => format!("{error}: {source}"),
                    None => error.to_string(),
                },
                errno: source.and_then(io::Error::raw_os_error),
            }
        })?;
        let batch = batch.max(1);
        Ok(Frames {
            ports: [None, None],
            umem,
            frame_size: sizes.frame_size as usize,
            ledger: Ledger::new(free.len(), sizes.frame_size as usize),
            free,
            received: [
                vec![FrameDesc::default(); batch],
                vec![FrameDesc::default(); batch],
            ],
            received_count: [0, 0],
            outgoing: [Vec::with_capacity(batch), Vec::with_capacity(batch)],
            // A port's dropped frames and those the other port's TX ring refused.
            recycle: [Vec::with_capacity(2 * batch), Vec::with_capacity(2 * batch)],
            completed: vec![FrameDesc::default(); sizes.ring as usize],
        })
    }

    /// Opens `side`'s socket on `interface` queue `queue`, on this UMEM with its own fill and
    /// completion rings, and fills its fill ring with up to half the free frames.
    pub(crate) fn bind(
        &mut self,
        side: PortSide,
        interface: &str,
        queue: u32,
        (xdp_flags, bind_flags): (XdpFlags, BindFlags),
        ring: u32,
    ) -> Result<(), BindError> {
        let name = interface.parse().map_err(|_| BindError {
            reason: "the interface name holds a NUL byte".to_string(),
            errno: None,
        })?;
        let size = QueueSize::new(ring).map_err(|error| BindError {
            reason: format!("ring size: {error}"),
            errno: None,
        })?;
        let config = SocketConfig::builder()
            .rx_queue_size(size)
            .tx_queue_size(size)
            .xdp_flags(xdp_flags)
            .bind_flags(bind_flags)
            .build();
        // SAFETY: xsk-rs requires XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD only when this UMEM is
        // already bound to the same (interface, queue); a worker binds each of its two ports
        // once, and the two ports are different interfaces (`open` compares their indexes), so
        // no pair is bound twice from this UMEM.
        let (tx, rx, rings) = unsafe { Socket::new(config, &self.umem, &name, queue) }?;
        let Some((fill, completion)) = rings else {
            return Err(BindError {
                reason: "libxdp shared an existing fill ring: this interface and queue are \
                         already bound on this UMEM"
                    .to_string(),
                errno: None,
            });
        };
        self.ports[side.index()] = Some(PortRings {
            fill,
            completion,
            rx,
            tx,
            fill_size: ring,
            rx_size: ring,
            tx_size: ring,
        });
        let share = self.free.len() / (2 - usize::from(side == PortSide::Inside));
        self.refill(side, share);
        Ok(())
    }

    /// The socket descriptor of `side`, for `poll` and wakeups.
    pub(crate) fn fd(&self, side: PortSide) -> Option<RawFd> {
        self.port(side).map(|port| port.rx.fd().as_raw_fd())
    }

    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn port(&self, side: PortSide) -> Option<&PortRings> {
        self.ports[side.index()].as_ref()
    }

    /// Moves the frames `side` has finished sending to the free list; returns how many.
    pub(crate) fn reclaim_completed(&mut self, side: PortSide) -> usize {
        let Some(port) = self.ports[side.index()].as_mut() else {
            return 0;
        };
        let in_flight = self.ledger.count(Owner::Tx(side));
        if in_flight == 0 {
            return 0;
        }
        let want = in_flight.min(self.completed.len());
        // SAFETY: the completion ring only returns frames the kernel has finished sending,
        // which the ledger holds as `Tx(side)`; each is recorded below before any other use.
        let done = unsafe { port.completion.consume(&mut self.completed[..want]) };
        for desc in &self.completed[..done] {
            self.ledger
                .transfer(desc.addr(), Owner::Tx(side), Owner::Free);
        }
        self.free.extend_from_slice(&self.completed[..done]);
        done
    }

    /// Puts up to `at_most` free frames on `side`'s fill ring, as many as it has room for
    /// and as [`fill_quota`] allows.
    pub(crate) fn refill(&mut self, side: PortSide, at_most: usize) -> usize {
        let Some(port) = self.ports[side.index()].as_mut() else {
            return 0;
        };
        let room = port.fill.nb_free(port.fill_size) as usize;
        let quota = fill_quota(self.ledger.count(Owner::Fill(side)), port.rx_size as usize);
        let count = room.min(quota).min(at_most).min(self.free.len());
        if count == 0 {
            return 0;
        }
        let start = self.free.len() - count;
        // SAFETY: frames in the free list are on no ring and nobody reads them (`Free` in the
        // ledger); the ones produced are recorded as `Fill(side)` and leave the free list.
        let produced = unsafe { port.fill.produce(&self.free[start..]) };
        for desc in &self.free[start..start + produced] {
            self.ledger
                .transfer(desc.addr(), Owner::Free, Owner::Fill(side));
        }
        // The produced frames are the first `produced` of the tail; keep the rest free.
        self.free.drain(start..start + produced);
        produced
    }

    /// Keeps both fill rings as full as the free frames allow, fairly: each port gets half of
    /// what is free, then whatever the other could not take.
    pub(crate) fn refill_both(&mut self) {
        let half = self.free.len().div_ceil(2);
        self.refill(PortSide::Outside, half);
        self.refill(PortSide::Inside, half);
        let rest = self.free.len();
        self.refill(PortSide::Outside, rest);
    }

    /// Takes up to one batch of received frames off `side`'s RX ring; returns how many.
    pub(crate) fn receive(&mut self, side: PortSide) -> usize {
        let Some(port) = self.ports[side.index()].as_mut() else {
            return 0;
        };
        let received = &mut self.received[side.index()];
        // SAFETY: the RX ring only returns frames this port's fill ring gave the kernel
        // (`Fill(side)`); each is recorded as in hand below before its bytes are read.
        let count = unsafe { port.rx.consume(received) };
        self.received_count[side.index()] = count;
        for desc in &received[..count] {
            self.ledger
                .transfer(desc.addr(), Owner::Fill(side), Owner::InHand(side));
        }
        count
    }

    /// Hands each frame received on `side` to `decide`: a frame to forward is queued for the
    /// other port, a frame to drop for `side`'s fill ring.
    pub(crate) fn decide<F>(&mut self, side: PortSide, decide: &mut F) -> Decided
    where
        F: FnMut(PortSide, &[u8]) -> Disposition,
    {
        let mut decided = Decided::default();
        let Frames {
            umem,
            received,
            received_count,
            outgoing,
            recycle,
            frame_size,
            ..
        } = self;
        let count = std::mem::take(&mut received_count[side.index()]);
        let descs = &received[side.index()][..count];
        for desc in descs.iter().take(PREFETCH_AHEAD) {
            prefetch_frame(umem, desc, *frame_size);
        }
        for (i, desc) in descs.iter().copied().enumerate() {
            if let Some(ahead) = descs.get(i + PREFETCH_AHEAD) {
                prefetch_frame(umem, ahead, *frame_size);
            }
            decided.received += 1;
            let len = desc.lengths().data();
            decided.received_bytes += len as u64;
            let whole = is_whole(&desc, *frame_size);
            let disposition = if whole {
                // SAFETY: the frame is `InHand(side)`: out of every ring, so the kernel does not
                // write it, and this is the only reference to it; its length was checked to
                // stay inside its frame just above.
                let data = unsafe { umem.data(&desc) };
                decide(side, data.contents())
            } else {
                decided.malformed += 1;
                Disposition::Drop
            };
            match disposition {
                Disposition::Forward => outgoing[side.other().index()].push(desc),
                Disposition::Drop => {
                    if whole {
                        decided.dropped += 1;
                    }
                    recycle[side.index()].push(desc);
                }
            }
        }
        decided
    }

    /// Puts the frames forwarded to `side` on its TX ring. Returns (sent, refused): frames the
    /// ring had no room for go back to the fill ring of the port they came from.
    pub(crate) fn transmit(&mut self, side: PortSide) -> (usize, usize) {
        let from = side.other();
        let outgoing = &mut self.outgoing[side.index()];
        if outgoing.is_empty() {
            return (0, 0);
        }
        let Some(port) = self.ports[side.index()].as_mut() else {
            let refused = outgoing.len();
            self.recycle[from.index()].append(outgoing);
            return (0, refused);
        };
        // SAFETY: every frame here is `InHand(from)`: out of every ring and no longer read
        // (`decide` has returned). Those produced are recorded as `Tx(side)` at once.
        let sent = unsafe { port.tx.produce(outgoing) };
        for desc in &outgoing[..sent] {
            self.ledger
                .transfer(desc.addr(), Owner::InHand(from), Owner::Tx(side));
        }
        let refused = outgoing.len() - sent;
        self.recycle[from.index()].extend_from_slice(&outgoing[sent..]);
        outgoing.clear();
        (sent, refused)
    }

    /// Gives the frames dropped on `side` back to its fill ring (to the free list if, against
    /// expectation, the ring is full).
    pub(crate) fn recycle(&mut self, side: PortSide) {
        let recycle = &mut self.recycle[side.index()];
        if recycle.is_empty() {
            return;
        }
        let produced = match self.ports[side.index()].as_mut() {
            // SAFETY: every frame here is `InHand(side)`: out of every ring, no longer read.
            // Those produced are recorded as `Fill(side)` at once.
            Some(port) => unsafe { port.fill.produce(recycle) },
            None => 0,
        };
        for desc in &recycle[..produced] {
            self.ledger
                .transfer(desc.addr(), Owner::InHand(side), Owner::Fill(side));
        }
        for desc in &recycle[produced..] {
            self.ledger
                .transfer(desc.addr(), Owner::InHand(side), Owner::Free);
        }
        self.free.extend_from_slice(&recycle[produced..]);
        recycle.clear();
    }

    /// Frames on `side`'s TX ring the kernel has not taken yet.
    pub(crate) fn tx_queued(&mut self, side: PortSide) -> u32 {
        self.ports[side.index()]
            .as_mut()
            .map_or(0, |port| port.tx_size - port.tx.nb_free_exact())
    }

    /// Whether the kernel asked to be told about new TX entries (`need_wakeup`; always so in
    /// copy mode, where sending happens in the `sendto` call).
    pub(crate) fn tx_needs_wakeup(&self, side: PortSide) -> bool {
        self.port(side).is_some_and(|port| port.tx.needs_wakeup())
    }

    /// Tells the kernel to send what is on `side`'s TX ring (`sendto`, not blocking).
    pub(crate) fn kick_tx(&self, side: PortSide) -> io::Result<()> {
        match self.port(side) {
            Some(port) => port.tx.wakeup(),
            None => Ok(()),
        }
    }

    /// Whether the kernel asked to be told that `side`'s fill ring has frames again.
    pub(crate) fn fill_needs_wakeup(&self, side: PortSide) -> bool {
        self.port(side).is_some_and(|port| port.fill.needs_wakeup())
    }

    /// Waits at most `timeout` until either port's RX ring has frames. In `need_wakeup` mode
    /// the `poll` also wakes a driver that asked to be told about a refilled fill ring.
    pub(crate) fn wait_readable(&self, timeout: std::time::Duration) -> io::Result<()> {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }; 2];
        for side in PortSide::BOTH {
            if let Some(fd) = self.fd(side) {
                fds[side.index()].fd = fd;
            }
        }
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `fds` is a live array of two pollfd structs, as the count says; descriptors
        // of -1 are ignored by poll.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, millis) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Asks the kernel to let this worker run `side`'s receive processing (the NAPI instance
    /// that feeds its RX ring) from its own receive calls, `budget` frames a time, rather than
    /// in softirq, which may run on another core (on a veth: the sender's). Fails on kernels
    /// without preferred busy polling (before 5.11) or without the privilege to set it.
    pub(crate) fn prefer_busy_poll(&self, side: PortSide, budget: u16) -> io::Result<()> {
        let Some(fd) = self.fd(side) else {
            return Ok(());
        };
        // Microseconds a blocking receive would spin: the worker's receives never block, so
        // this only has to be non-zero for the kernel to busy-poll at all.
        set_socket_option(fd, libc::SO_BUSY_POLL, 20)?;
        set_socket_option(fd, libc::SO_PREFER_BUSY_POLL, 1)?;
        set_socket_option(fd, libc::SO_BUSY_POLL_BUDGET, i32::from(budget))
    }

    /// Tells the kernel that `side`'s fill ring has frames again (`recvfrom`, not blocking).
    pub(crate) fn wake_rx(&self, side: PortSide) -> io::Result<()> {
        let Some(fd) = self.fd(side) else {
            return Ok(());
        };
        // SAFETY: a zero-length receive with no buffer and no address, on a descriptor this
        // struct keeps open.
        let result = unsafe {
            libc::recvfrom(
                fd,
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if result < 0 {
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EAGAIN | libc::EBUSY | libc::ENETDOWN | libc::ENOBUFS | libc::EINTR) => {
                }
                _ => return Err(error),
            }
        }
        Ok(())
    }

    /// Statistics the kernel keeps for `side`'s socket.
    pub(crate) fn kernel_statistics(
        &self,
        side: PortSide,
    ) -> io::Result<Option<xsk_rs::socket::XdpStatistics>> {
        self.port(side)
            .map(|port| port.rx.fd().xdp_statistics())
            .transpose()
    }
}

fn set_socket_option(fd: RawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length says so; `fd` is a socket the caller
    // keeps open.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = 4096;
    const OUT: PortSide = PortSide::Outside;
    const IN: PortSide = PortSide::Inside;

    fn counts(ledger: &Ledger) -> [usize; Owner::COUNT] {
        ledger.counts
    }

    #[test]
    fn the_kernel_never_holds_more_frames_for_a_port_than_its_rx_ring() {
        // (frames the kernel has for the port, RX ring size, quota)
        let cases = [
            (0, 4096, 4096),
            (1000, 4096, 3096),
            (4096, 4096, 0),
            (5000, 4096, 0),
            (0, 64, 64),
        ];
        for (with_kernel, rx_size, quota) in cases {
            assert_eq!(
                fill_quota(with_kernel, rx_size),
                quota,
                "{with_kernel} of {rx_size}"
            );
        }
    }

    #[test]
    fn a_new_ledger_has_every_frame_free() {
        let ledger = Ledger::new(8, FRAME);
        assert_eq!(ledger.count(Owner::Free), 8);
        assert_eq!(ledger.total(), 8);
        assert_eq!(counts(&ledger)[1..], [0; Owner::COUNT - 1]);
    }

    #[test]
    fn every_path_of_the_diagram_is_a_legal_sequence_of_moves() {
        // (the path a frame takes, as the states it goes through)
        let paths: [&[Owner]; 4] = [
            // received on the outside, forwarded, completed
            &[
                Owner::Free,
                Owner::Fill(OUT),
                Owner::InHand(OUT),
                Owner::Tx(IN),
                Owner::Free,
            ],
            // received on the inside, dropped, received again, forwarded
            &[
                Owner::Free,
                Owner::Fill(IN),
                Owner::InHand(IN),
                Owner::Fill(IN),
                Owner::InHand(IN),
                Owner::Tx(OUT),
                Owner::Free,
            ],
            // TX ring full: back to the arrival port's fill ring
            &[
                Owner::Free,
                Owner::Fill(OUT),
                Owner::InHand(OUT),
                Owner::Fill(OUT),
            ],
            // fill ring full on a recycle: to the free list
            &[Owner::Free, Owner::Fill(IN), Owner::InHand(IN), Owner::Free],
        ];
        for path in paths {
            let mut ledger = Ledger::new(4, FRAME);
            // Frame 2, addressed anywhere inside it (the kernel hands back offsets past the
            // headroom).
            let addr = 2 * FRAME + 256;
            for step in path.windows(2) {
                ledger.transfer(addr, step[0], step[1]);
                assert_eq!(
                    ledger.count(step[1]),
                    1 + usize::from(step[1] == Owner::Free) * 3
                );
                assert_eq!(ledger.total(), 4, "{path:?}");
            }
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "moved from Free but is at Some(Fill(Outside))")]
    fn submitting_a_frame_twice_is_caught() {
        let mut ledger = Ledger::new(4, FRAME);
        ledger.transfer(FRAME, Owner::Free, Owner::Fill(OUT));
        ledger.transfer(FRAME, Owner::Free, Owner::Fill(IN));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "moved from Tx(Inside) but is at Some(Tx(Outside))")]
    fn a_completion_on_the_wrong_port_is_caught() {
        let mut ledger = Ledger::new(1, FRAME);
        ledger.transfer(0, Owner::Free, Owner::Fill(IN));
        ledger.transfer(0, Owner::Fill(IN), Owner::InHand(IN));
        ledger.transfer(0, Owner::InHand(IN), Owner::Tx(OUT));
        ledger.transfer(0, Owner::Tx(IN), Owner::Free);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "is at None")]
    fn an_offset_outside_the_umem_is_caught() {
        let mut ledger = Ledger::new(2, FRAME);
        ledger.transfer(2 * FRAME, Owner::Free, Owner::Fill(IN));
    }

    /// A model kernel and worker moving frames at random through the legal moves: the counts
    /// always add up, and each count matches the frames the model holds in that state.
    #[test]
    fn random_traffic_keeps_every_frame_accounted_for() {
        const FRAMES: usize = 64;
        let mut ledger = Ledger::new(FRAMES, FRAME);
        let mut model = [Owner::Free; FRAMES];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..100_000 {
            let frame = (next() % FRAMES as u64) as usize;
            let side = if next() % 2 == 0 { OUT } else { IN };
            let from = model[frame];
            let to = match from {
                Owner::Free => Owner::Fill(side),
                Owner::Fill(p) => Owner::InHand(p),
                Owner::InHand(p) => match next() % 3 {
                    0 => Owner::Fill(p),
                    1 => Owner::Tx(p.other()),
                    _ => Owner::Free,
                },
                Owner::Tx(_) => Owner::Free,
            };
            ledger.transfer(frame * FRAME + (next() % FRAME as u64) as usize, from, to);
            model[frame] = to;
        }
        assert_eq!(ledger.total(), FRAMES);
        for owner in [
            Owner::Free,
            Owner::Fill(OUT),
            Owner::Fill(IN),
            Owner::InHand(OUT),
            Owner::InHand(IN),
            Owner::Tx(OUT),
            Owner::Tx(IN),
        ] {
            let held = model.iter().filter(|o| **o == owner).count();
            assert_eq!(ledger.count(owner), held, "{owner:?}");
        }
    }
}
