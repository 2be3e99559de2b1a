//! The AF_PACKET backend: the fallback for kernels and NICs without AF_XDP.
//!
//! Each worker owns one `AF_PACKET`/`SOCK_RAW` socket per port, bound to the interface for
//! every protocol, in promiscuous mode, and blind to frames leaving the interface
//! (`PACKET_IGNORE_OUTGOING`). The kernel never shows a socket (or a fanout group) the frames
//! it sent itself, but it does show it those that anything else sends out of the port — the
//! kernel's own traffic, a capture tool's injection — and the gateway would otherwise forward
//! those to the other side as if they had arrived. With several workers, each port's sockets
//! form one `PACKET_FANOUT` group in hash mode, so one flow stays on one worker and every
//! frame reaches exactly one of them.
//!
//! A batch is one `ppoll` over both sockets, one `recvmmsg` per readable port and one
//! `sendmmsg` per port that has frames to send, whatever the number of frames. `recvmmsg`
//! rather than a `TPACKET_V3` ring: a V3 ring hands a block to user space only when the block
//! is full or its retire timer fires (at best one jiffy, 4 ms at HZ=250), which at low rates
//! adds that much to every frame crossing the gateway in each direction — a TCP handshake
//! through the gateway would pay it three times. `recvmmsg` returns each frame as soon as it is
//! queued, for the same number of system calls per batch; the price is one copy per frame on
//! receive, which the AF_XDP backend exists to avoid.
//!
//! **VLAN tags.** The kernel takes the outer 802.1Q/802.1ad tag out of every received frame
//! and reports it in `PACKET_AUXDATA`. Each frame is received four bytes into its slot; when a
//! tag was taken out, the twelve address bytes move back four and the tag goes where it was,
//! so `decide` sees, and the other port sends, the frame exactly as it arrived, without a
//! second copy.
//!
//! **Kernel drops.** When a socket's receive queue is full (the worker fell behind), the
//! kernel drops the frames arriving for it and counts them on that socket. A poll that finds
//! nothing to do, and at least every 500 ms (`STATISTICS_EVERY`) under continuous traffic,
//! reads each port socket's `PACKET_STATISTICS`; the kernel resets the count at each read, so
//! the pair keeps running totals, reported by [`PortPair::kernel_drops`] as
//! `socket_queue_full`. Each worker owns its own socket per port (a fanout group hands every
//! frame to exactly one of them), so the workers' totals add up to the port's without
//! counting a frame twice.

pub(crate) mod sys;

use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::{
    BackendConfig, BackendError, BackendInfo, BatchStats, Disposition, KernelDrops, PortPair,
    PortSide, statistics_due,
};

use sys::{MessageBatch, PacketSocket, Received, VlanTag};

/// Room in front of each receive slot for the tag the kernel took out.
const TAG_ROOM: usize = 4;
const ETHERNET_HEADER: usize = 14;
const VLAN_HEADER: usize = 4;
/// Destination and source MAC addresses: what moves to make room for a restored tag.
const MAC_ADDRESSES: usize = 12;
/// Socket receive buffer: about 2700 full-size frames, enough to ride out a slow batch.
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;
/// Largest batch accepted; more only costs memory.
const MAX_BATCH: usize = 1024;
/// `sendmmsg` calls interrupted by a signal that are retried before giving up on the batch.
const SEND_RETRIES: usize = 4;

/// One worker's sockets on both gateway ports.
///
/// `BatchStats::forwarded` counts the frames actually sent; a frame `decide` wanted forwarded
/// that the other port refused is in `tx_failed` instead. A frame larger than its receive slot
/// (e.g. merged by GRO/LRO on the port) is counted in `received` and `truncated` and never
/// reaches `decide`: it could not be forwarded whole.
pub struct AfPacketPair {
    /// Dropped before the sockets (declaration order), so that a pair opened while this one
    /// closes finds the group gone and asks the kernel for a new one, rather than joining an
    /// id that is about to be freed.
    _fanout: Option<[Arc<FanoutGroup>; 2]>,
    ports: [Port; 2],
    worker: usize,
    mode: String,
    /// When the sockets' kernel statistics were last read.
    statistics_read: Option<Instant>,
}

/// Opens worker `worker`'s sockets on both ports of `config`. Workers may be opened in any
/// order, from any threads; each must be opened in the network namespace of the ports.
pub fn open(config: &BackendConfig, worker: usize) -> Result<AfPacketPair, BackendError> {
    check_config(config, worker)?;
    let batch = config.batch_size;
    let fanout = config.workers > 1;
    let (outside, outside_group) = Port::open(&config.outside, worker, batch, fanout)?;
    let (inside, inside_group) = Port::open(&config.inside, worker, batch, fanout)?;
    let groups = outside_group.zip(inside_group);
    let mode = match &groups {
        Some((outside, inside)) => format!(
            "recvmmsg/sendmmsg, batch {batch}, fanout hash over {} workers (groups {:#06x}/{:#06x})",
            config.workers, outside.id, inside.id
        ),
        None => format!("recvmmsg/sendmmsg, batch {batch}, one worker"),
    };
    Ok(AfPacketPair {
        _fanout: groups.map(|(outside, inside)| [outside, inside]),
        ports: [outside, inside],
        worker,
        mode,
        statistics_read: None,
    })
}

impl AfPacketPair {
    fn port(&self, side: PortSide) -> &Port {
        &self.ports[side.index()]
    }

    /// Frames the kernel dropped on each port's socket (outside, inside) since the pair was
    /// opened, read now.
    pub fn read_kernel_drops(&mut self) -> [KernelDrops; 2] {
        self.count_kernel_drops(Instant::now());
        self.reported_kernel_drops()
    }

    fn count_kernel_drops(&mut self, now: Instant) {
        for port in &mut self.ports {
            port.count_kernel_drops(self.worker);
        }
        self.statistics_read = Some(now);
    }

    fn reported_kernel_drops(&self) -> [KernelDrops; 2] {
        self.ports
            .each_ref()
            .map(|port| KernelDrops::afpacket(port.kernel_drops.total))
    }
}

fn check_config(config: &BackendConfig, worker: usize) -> Result<(), BackendError> {
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
    Ok(())
}

impl PortPair for AfPacketPair {
    fn poll<F>(&mut self, timeout: Duration, mut decide: F) -> Result<BatchStats, BackendError>
    where
        F: FnMut(PortSide, &[u8]) -> Disposition,
    {
        let mut stats = BatchStats::default();
        let [outside, inside] = &self.ports;
        let ready = sys::wait_readable([outside.socket.as_fd(), inside.socket.as_fd()], timeout)
            .map_err(|source| BackendError::Io {
                interface: format!("{} and {}", outside.interface, inside.interface),
                queue: queue_number(self.worker),
                operation: "wait for frames (ppoll)",
                source,
            })?;
        for side in PortSide::BOTH {
            let port = &mut self.ports[side.index()];
            port.forward.clear();
            if ready[side.index()] {
                port.receive(self.worker)?;
                port.decide(side, &mut decide, &mut stats);
            }
        }
        let [outside, inside] = &mut self.ports;
        transmit_between(outside, inside, PortSide::Outside, self.worker, &mut stats)?;
        transmit_between(inside, outside, PortSide::Inside, self.worker, &mut stats)?;
        // Idle, the statistics cost nothing that matters; under a flood the worker never
        // finds its sockets empty, so they are read on a clock as well.
        let now = Instant::now();
        if stats.received == [0, 0] || statistics_due(self.statistics_read, now) {
            self.count_kernel_drops(now);
        }
        Ok(stats)
    }

    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "afpacket",
            mode: self.mode.clone(),
        }
    }

    /// As last read: when a poll finds nothing to do, and at least every
    /// `STATISTICS_EVERY` under traffic.
    fn kernel_drops(&self) -> Option<[KernelDrops; 2]> {
        Some(self.reported_kernel_drops())
    }
}

impl std::fmt::Debug for AfPacketPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPair")
            .field("outside", &self.port(PortSide::Outside).interface)
            .field("inside", &self.port(PortSide::Inside).interface)
            .field("worker", &self.worker)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Sends the frames `from` received and `decide` forwarded out of `to`, counting them under
/// `side`, the port they arrived on.
fn transmit_between(
    from: &Port,
    to: &mut Port,
    side: PortSide,
    worker: usize,
    stats: &mut BatchStats,
) -> Result<(), BackendError> {
    if from.forward.is_empty() {
        return Ok(());
    }
    let Port {
        socket, messages, ..
    } = to;
    let outcome = send_all(&from.forward, |frames| {
        socket.send_batch(messages, &from.slots.bytes, frames)
    })
    .map_err(|source| to.error(worker, "send (sendmmsg)", source))?;
    stats.forwarded[side.index()] += count(outcome.sent);
    stats.tx_failed[side.index()] += count(outcome.failed);
    Ok(())
}

/// One interface's socket with the buffers of one batch.
struct Port {
    interface: String,
    socket: PacketSocket,
    messages: MessageBatch,
    slots: Slots,
    received: Vec<Received>,
    /// Where, in `slots`, the frames to send out of the other port are.
    forward: Vec<Range<usize>>,
    kernel_drops: SocketDrops,
}

impl Port {
    /// Opens and sets up the socket. The order matters: the drop-all filter goes on before the
    /// bind and comes off after the fanout join, so that a socket never queues frames outside
    /// its group (with several workers, every frame would reach that socket and the group).
    fn open(
        interface: &str,
        worker: usize,
        batch: usize,
        fanout: bool,
    ) -> Result<(Port, Option<Arc<FanoutGroup>>), BackendError> {
        let error = |operation: &'static str| {
            move |source: io::Error| BackendError::Io {
                interface: interface.to_string(),
                queue: queue_number(worker),
                operation,
                source,
            }
        };
        let ifindex = sys::interface_index(interface)
            .map_err(error("look up the interface"))?
            .ok_or_else(|| BackendError::NoSuchInterface {
                interface: interface.to_string(),
            })?;
        let socket = PacketSocket::new().map_err(error("open an AF_PACKET socket"))?;
        socket
            .attach_drop_all_filter()
            .map_err(error("attach the start-up filter (SO_ATTACH_FILTER)"))?;
        socket
            .enable_auxdata()
            .map_err(error("ask for VLAN metadata (PACKET_AUXDATA)"))?;
        socket.ignore_outgoing().map_err(|source| {
            if source.raw_os_error() == Some(libc::ENOPROTOOPT) {
                BackendError::Unsupported {
                    interface: interface.to_string(),
                    message: "the kernel lacks PACKET_IGNORE_OUTGOING (Linux 4.20 or later)"
                        .to_string(),
                }
            } else {
                error("ignore outgoing frames (PACKET_IGNORE_OUTGOING)")(source)
            }
        })?;
        socket
            .set_receive_buffer(RECEIVE_BUFFER_BYTES)
            .map_err(error("size the receive buffer (SO_RCVBUF)"))?;
        let mtu = socket
            .interface_mtu(interface)
            .map_err(error("read the MTU (SIOCGIFMTU)"))?;
        socket.bind(ifindex).map_err(error("bind"))?;
        socket
            .add_promiscuous_membership(ifindex)
            .map_err(error("enable promiscuous mode (PACKET_ADD_MEMBERSHIP)"))?;
        let group = if fanout {
            let key = FanoutKey::of(ifindex).map_err(error("identify the network namespace"))?;
            Some(
                join_fanout_group(&socket, key)
                    .map_err(error("join the fanout group (PACKET_FANOUT)"))?,
            )
        } else {
            None
        };
        socket
            .detach_filter()
            .map_err(error("remove the start-up filter (SO_DETACH_FILTER)"))?;
        let port = Port {
            interface: interface.to_string(),
            socket,
            messages: MessageBatch::new(batch),
            slots: Slots::new(batch, slot_len(mtu)),
            received: Vec::with_capacity(batch),
            forward: Vec::with_capacity(batch),
            kernel_drops: SocketDrops::default(),
        };
        Ok((port, group))
    }

    fn error(&self, worker: usize, operation: &'static str, source: io::Error) -> BackendError {
        BackendError::Io {
            interface: self.interface.clone(),
            queue: queue_number(worker),
            operation,
            source,
        }
    }

    /// Receives what is queued, up to one batch. A link that went down is not an error: the
    /// kernel reports it once on the socket, and the socket works again when the link is up.
    fn receive(&mut self, worker: usize) -> Result<(), BackendError> {
        let result = self.socket.receive_batch(
            &mut self.messages,
            &mut self.slots.bytes,
            self.slots.slot_len,
            TAG_ROOM,
            &mut self.received,
        );
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::ENETDOWN) => {
                self.received.clear();
                Ok(())
            }
            Err(source) => Err(self.error(worker, "receive (recvmmsg)", source)),
        }
    }

    /// Adds what the kernel dropped on the socket since the last look. A failed look is
    /// logged once and otherwise ignored: the count is not forwarding, and the kernel keeps
    /// what it counted for the next look that works.
    fn count_kernel_drops(&mut self, worker: usize) {
        let reading = self.socket.take_drop_count();
        if let Some(error) = self.kernel_drops.record(reading) {
            tracing::warn!(
                interface = %self.interface,
                queue = worker,
                %error,
                "cannot read the socket's drop count (PACKET_STATISTICS): kernel drops are not \
                 counted while this lasts; further failures are not logged"
            );
        }
    }

    /// Hands each received frame, tag restored, to `decide` and notes those to forward.
    fn decide<F>(&mut self, side: PortSide, decide: &mut F, stats: &mut BatchStats)
    where
        F: FnMut(PortSide, &[u8]) -> Disposition,
    {
        let i = side.index();
        for (slot, frame) in self.received.iter().enumerate() {
            let tag_len = if frame.vlan.is_some() { VLAN_HEADER } else { 0 };
            stats.received[i] += 1;
            stats.received_bytes[i] += (frame.len + tag_len) as u64;
            let range = if frame.truncated {
                None
            } else {
                self.slots.slot_mut(slot).and_then(|(start, bytes)| {
                    restore_frame(bytes, frame.len, frame.vlan).map(|r| offset(r, start))
                })
            };
            let Some(range) = range else {
                stats.truncated[i] += 1;
                continue;
            };
            match decide(side, &self.slots.bytes[range.clone()]) {
                Disposition::Forward => self.forward.push(range),
                Disposition::Drop => stats.dropped[i] += 1,
            }
        }
    }
}

/// Frames the kernel dropped on one socket since it opened: the sum of its
/// `PACKET_STATISTICS` reads, each of which resets the kernel's count.
#[derive(Debug, Default)]
struct SocketDrops {
    total: u64,
    /// A failed read would fail again at every idle poll: only the first is reported.
    failure_reported: bool,
}

impl SocketDrops {
    /// Adds one read's count; returns the error of the first failed read, to be reported.
    /// A failed read changes nothing: the kernel did not reset its count.
    fn record(&mut self, reading: io::Result<u32>) -> Option<io::Error> {
        match reading {
            Ok(dropped) => {
                self.total = self.total.saturating_add(u64::from(dropped));
                None
            }
            Err(_) if self.failure_reported => None,
            Err(error) => {
                self.failure_reported = true;
                Some(error)
            }
        }
    }
}

/// A batch's receive slots, one frame each, in one allocation reused for every batch.
struct Slots {
    bytes: Vec<u8>,
    slot_len: usize,
}

impl Slots {
    fn new(batch: usize, slot_len: usize) -> Slots {
        Slots {
            bytes: vec![0; batch * slot_len],
            slot_len,
        }
    }

    /// Slot `index`: where it starts in `bytes`, and its bytes.
    fn slot_mut(&mut self, index: usize) -> Option<(usize, &mut [u8])> {
        let start = index.checked_mul(self.slot_len)?;
        let bytes = self
            .bytes
            .get_mut(start..start.checked_add(self.slot_len)?)?;
        Some((start, bytes))
    }
}

/// A slot long enough for a full-MTU frame with an inner tag left in it, behind the room for
/// the outer tag the kernel takes out; rounded to a cache line.
fn slot_len(mtu: u32) -> usize {
    let frame = mtu as usize + ETHERNET_HEADER + VLAN_HEADER;
    (TAG_ROOM + frame).next_multiple_of(64)
}

/// Puts back the tag the kernel took out of the frame stored at `slot[TAG_ROOM..][..len]`, and
/// returns where in `slot` the whole frame now is. `None` when the frame is not all there:
/// longer than the slot, or too short to hold the addresses a tag follows.
fn restore_frame(slot: &mut [u8], len: usize, tag: Option<VlanTag>) -> Option<Range<usize>> {
    let end = TAG_ROOM.checked_add(len)?;
    if end > slot.len() {
        return None;
    }
    let Some(tag) = tag else {
        return Some(TAG_ROOM..end);
    };
    if len < MAC_ADDRESSES {
        return None;
    }
    slot.copy_within(TAG_ROOM..TAG_ROOM + MAC_ADDRESSES, 0);
    slot[MAC_ADDRESSES..MAC_ADDRESSES + 2].copy_from_slice(&tag.tpid.to_be_bytes());
    slot[MAC_ADDRESSES + 2..MAC_ADDRESSES + 4].copy_from_slice(&tag.tci.to_be_bytes());
    Some(0..end)
}

fn offset(range: Range<usize>, by: usize) -> Range<usize> {
    range.start + by..range.end + by
}

/// What became of the frames handed to [`send_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct SendOutcome {
    sent: usize,
    failed: usize,
}

/// How a failed send affects the frames still to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendFailure {
    /// This frame cannot be sent (too long for the port, malformed); the next may.
    Frame,
    /// The port takes nothing more now (queue full, link down); the rest of the batch fails.
    Port,
    /// Retry the same frames.
    Retry,
    /// The socket or interface is gone: the worker cannot go on.
    Fatal,
}

fn classify_send_error(error: &io::Error) -> SendFailure {
    if error.kind() == io::ErrorKind::Interrupted {
        return SendFailure::Retry;
    }
    if error.kind() == io::ErrorKind::WouldBlock {
        return SendFailure::Port;
    }
    match error.raw_os_error() {
        Some(libc::EMSGSIZE | libc::EINVAL) => SendFailure::Frame,
        Some(libc::ENOBUFS | libc::ENOMEM | libc::ENETDOWN) => SendFailure::Port,
        _ => SendFailure::Fatal,
    }
}

/// Sends `frames` with as few calls of `send` as the kernel allows. `send` sends a prefix of
/// the frames it is given and says how many, or fails on the first one. `sendmmsg` stops at
/// the first frame that fails and does not say why, so the next call starts at that frame and
/// learns the reason from its error.
fn send_all<S>(frames: &[Range<usize>], mut send: S) -> io::Result<SendOutcome>
where
    S: FnMut(&[Range<usize>]) -> io::Result<usize>,
{
    let mut outcome = SendOutcome::default();
    let mut next = 0;
    let mut retries = 0;
    while next < frames.len() {
        match send(&frames[next..]) {
            Ok(0) => {
                // Not something sendmmsg does with frames to send; give up rather than spin.
                outcome.failed += frames.len() - next;
                break;
            }
            Ok(sent) => {
                let sent = sent.min(frames.len() - next);
                outcome.sent += sent;
                next += sent;
            }
            Err(error) => match classify_send_error(&error) {
                SendFailure::Frame => {
                    outcome.failed += 1;
                    next += 1;
                }
                SendFailure::Port => {
                    outcome.failed += frames.len() - next;
                    break;
                }
                SendFailure::Retry if retries < SEND_RETRIES => retries += 1,
                SendFailure::Retry => {
                    outcome.failed += frames.len() - next;
                    break;
                }
                SendFailure::Fatal => return Err(error),
            },
        }
    }
    Ok(outcome)
}

/// The kernel's fanout group of one interface, shared by the workers' sockets on it.
#[derive(Debug)]
struct FanoutGroup {
    id: u16,
}

/// An interface, named so that it stays unique across network namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FanoutKey {
    namespace: (u64, u64),
    ifindex: u32,
}

impl FanoutKey {
    fn of(ifindex: u32) -> io::Result<FanoutKey> {
        use std::os::unix::fs::MetadataExt;
        let namespace = std::fs::metadata("/proc/thread-self/ns/net")?;
        Ok(FanoutKey {
            namespace: (namespace.dev(), namespace.ino()),
            ifindex,
        })
    }
}

/// The groups this process's open pairs are in. The first socket of an interface asks the
/// kernel for an id no other group in the namespace uses (`PACKET_FANOUT_FLAG_UNIQUEID`), so
/// that it can never join another program's group; the workers opened after it join that id.
/// Entries are weak: once every pair of a group has closed, the next opener starts afresh.
static FANOUT_GROUPS: Mutex<Vec<(FanoutKey, Weak<FanoutGroup>)>> = Mutex::new(Vec::new());

/// Hash mode, and the group ignores frames sent on the interface: the group replaces each
/// member's own receive hook, so the socket's `PACKET_IGNORE_OUTGOING` does not apply to it.
const FANOUT_MODE: u16 =
    (libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING) as u16;

fn join_fanout_group(socket: &PacketSocket, key: FanoutKey) -> io::Result<Arc<FanoutGroup>> {
    // The lock is held across the join so that two workers opening at once agree on one group.
    let mut groups = FANOUT_GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
    groups.retain(|(_, group)| group.strong_count() > 0);
    let existing = groups
        .iter()
        .find(|(candidate, _)| *candidate == key)
        .and_then(|(_, group)| group.upgrade());
    if let Some(group) = existing {
        socket.join_fanout(group.id, FANOUT_MODE)?;
        return Ok(group);
    }
    socket.join_fanout(0, FANOUT_MODE | libc::PACKET_FANOUT_FLAG_UNIQUEID as u16)?;
    let group = Arc::new(FanoutGroup {
        id: socket.fanout_id()?,
    });
    groups.push((key, Arc::downgrade(&group)));
    Ok(group)
}

fn queue_number(worker: usize) -> u32 {
    u32::try_from(worker).unwrap_or(u32::MAX)
}

fn count(frames: usize) -> u32 {
    u32::try_from(frames).unwrap_or(u32::MAX)
}

/// One interface on its own, for tools and tests that inject or capture frames: the same
/// socket set-up (promiscuous, blind to its own frames) and the same tag restoration as a
/// gateway port.
pub struct AfPacketPort {
    port: Port,
}

impl AfPacketPort {
    pub fn open(interface: &str, batch_size: usize) -> Result<AfPacketPort, BackendError> {
        if batch_size == 0 || batch_size > MAX_BATCH {
            return Err(BackendError::Unsupported {
                interface: interface.to_string(),
                message: format!("batch size {batch_size} is not within 1..={MAX_BATCH}"),
            });
        }
        let (port, _) = Port::open(interface, 0, batch_size, false)?;
        Ok(AfPacketPort { port })
    }

    /// Sends one frame, as given.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), BackendError> {
        let Port {
            socket, messages, ..
        } = &mut self.port;
        let whole = 0..frame.len();
        let outcome = send_all(std::slice::from_ref(&whole), |frames| {
            socket.send_batch(messages, frame, frames)
        })
        .map_err(|source| self.port.error(0, "send (sendmmsg)", source))?;
        if outcome.sent == 1 {
            Ok(())
        } else {
            Err(self.port.error(
                0,
                "send (sendmmsg)",
                io::Error::other("the interface did not take the frame"),
            ))
        }
    }

    /// Sends `buf[range]` for each of `frames`, in order, with one `sendmmsg` per batch of the
    /// size the port was opened with. Returns how many were sent. A frame the port refuses on
    /// its own (too long) is skipped; once the port takes nothing more (queue full, link down)
    /// the rest are left unsent. Nothing is retried: a traffic generator counts and goes on.
    pub fn send_batch(
        &mut self,
        buf: &[u8],
        frames: &[Range<usize>],
    ) -> Result<usize, BackendError> {
        let Port {
            socket, messages, ..
        } = &mut self.port;
        let outcome = send_all(frames, |frames| socket.send_batch(messages, buf, frames))
            .map_err(|source| self.port.error(0, "send (sendmmsg)", source))?;
        Ok(outcome.sent)
    }

    /// Waits at most `timeout` for frames and hands each (tag restored) to `seen`; returns
    /// how many. Frames too long for the slots are skipped.
    pub fn receive<F>(&mut self, timeout: Duration, mut seen: F) -> Result<usize, BackendError>
    where
        F: FnMut(&[u8]),
    {
        let ready = sys::wait_readable([self.port.socket.as_fd()], timeout)
            .map_err(|source| self.port.error(0, "wait for frames (ppoll)", source))?;
        if !ready[0] {
            return Ok(0);
        }
        self.port.receive(0)?;
        let mut stats = BatchStats::default();
        self.port.decide(
            PortSide::Outside,
            &mut |_, frame: &[u8]| {
                seen(frame);
                Disposition::Drop
            },
            &mut stats,
        );
        Ok(stats.dropped[PortSide::Outside.index()] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 18] = [
        0x02, 0, 0, 0, 0, 0x02, // destination
        0x02, 0, 0, 0, 0, 0x01, // source
        0x08, 0x00, // IPv4
        0x45, 0, 0, 0x14, // a bit of header
    ];

    fn slot_with(frame: &[u8]) -> Vec<u8> {
        let mut slot = vec![0xee; TAG_ROOM + frame.len() + 8];
        slot[TAG_ROOM..TAG_ROOM + frame.len()].copy_from_slice(frame);
        slot
    }

    fn tagged(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
        let mut out = frame[..MAC_ADDRESSES].to_vec();
        for (tpid, tci) in tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&frame[MAC_ADDRESSES..]);
        out
    }

    #[test]
    fn restored_frames_are_the_frames_on_the_wire() {
        // (what the kernel stored, the tag it reported, what was on the wire)
        let cases: Vec<(Vec<u8>, Option<VlanTag>, Vec<u8>)> = vec![
            (FRAME.to_vec(), None, FRAME.to_vec()),
            (
                FRAME.to_vec(),
                Some(VlanTag {
                    tpid: 0x8100,
                    tci: 100,
                }),
                tagged(&FRAME, &[(0x8100, 100)]),
            ),
            (
                FRAME.to_vec(),
                Some(VlanTag {
                    tpid: 0x8100,
                    tci: 0,
                }),
                tagged(&FRAME, &[(0x8100, 0)]),
            ),
            // QinQ: the kernel takes the outer tag only; the inner one stays in the data.
            (
                tagged(&FRAME, &[(0x8100, 0x0064)]),
                Some(VlanTag {
                    tpid: 0x88a8,
                    tci: 0xe00a,
                }),
                tagged(&FRAME, &[(0x88a8, 0xe00a), (0x8100, 0x0064)]),
            ),
            (
                FRAME[..MAC_ADDRESSES].to_vec(),
                Some(VlanTag {
                    tpid: 0x8100,
                    tci: 7,
                }),
                tagged(&FRAME[..MAC_ADDRESSES], &[(0x8100, 7)]),
            ),
        ];
        for (stored, tag, wire) in cases {
            let mut slot = slot_with(&stored);
            let range = restore_frame(&mut slot, stored.len(), tag).unwrap();
            assert_eq!(slot[range], wire[..], "tag {tag:?}");
        }
    }

    #[test]
    fn frames_not_all_there_are_not_restored() {
        let mut slot = slot_with(&FRAME);
        let room = slot.len() - TAG_ROOM;
        assert_eq!(
            restore_frame(&mut slot, room + 1, None),
            None,
            "longer than the slot"
        );
        let short_tagged = restore_frame(
            &mut slot,
            MAC_ADDRESSES - 1,
            Some(VlanTag {
                tpid: 0x8100,
                tci: 1,
            }),
        );
        assert_eq!(short_tagged, None, "tagged, without room for the addresses");
        assert_eq!(
            restore_frame(&mut slot, usize::MAX, None),
            None,
            "overflowing length"
        );
    }

    #[test]
    fn slots_hold_a_full_mtu_frame_with_two_tags() {
        for mtu in [68, 1500, 9000] {
            let len = slot_len(mtu);
            let wire = mtu as usize + ETHERNET_HEADER + 2 * VLAN_HEADER;
            assert!(len >= wire, "mtu {mtu}: slot {len} < frame {wire}");
            assert_eq!(len % 64, 0);
            assert!(len < wire + 64, "mtu {mtu}: slot {len} wastes a cache line");
        }
    }

    #[test]
    fn send_errors_are_classified() {
        let cases = [
            (
                io::Error::from_raw_os_error(libc::EMSGSIZE),
                SendFailure::Frame,
            ),
            (
                io::Error::from_raw_os_error(libc::EINVAL),
                SendFailure::Frame,
            ),
            (
                io::Error::from_raw_os_error(libc::EAGAIN),
                SendFailure::Port,
            ),
            (
                io::Error::from_raw_os_error(libc::ENOBUFS),
                SendFailure::Port,
            ),
            (
                io::Error::from_raw_os_error(libc::ENETDOWN),
                SendFailure::Port,
            ),
            (
                io::Error::from_raw_os_error(libc::EINTR),
                SendFailure::Retry,
            ),
            (
                io::Error::from_raw_os_error(libc::ENXIO),
                SendFailure::Fatal,
            ),
            (
                io::Error::from_raw_os_error(libc::EBADF),
                SendFailure::Fatal,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(classify_send_error(&error), expected, "{error}");
        }
    }

    /// A fake `sendmmsg`: frames whose start is in `refuse` fail with the given error, others
    /// are sent, `per_call` at most per call.
    fn fake_send(
        per_call: usize,
        refuse: &[(usize, i32)],
        calls: &mut Vec<usize>,
    ) -> impl FnMut(&[Range<usize>]) -> io::Result<usize> {
        move |frames: &[Range<usize>]| {
            calls.push(frames[0].start);
            let mut sent = 0;
            for frame in frames.iter().take(per_call) {
                if let Some((_, errno)) = refuse.iter().find(|(start, _)| *start == frame.start) {
                    return if sent == 0 {
                        Err(io::Error::from_raw_os_error(*errno))
                    } else {
                        Ok(sent)
                    };
                }
                sent += 1;
            }
            Ok(sent)
        }
    }

    #[test]
    fn send_all_skips_bad_frames_and_stops_at_a_full_port() {
        let frames: Vec<Range<usize>> = (0..6).map(|i| i * 10..i * 10 + 5).collect();
        // (frames sent per call, refused frames, expected outcome, expected call starts)
        type Case = (usize, Vec<(usize, i32)>, SendOutcome, Vec<usize>);
        let cases: Vec<Case> = vec![
            (64, vec![], SendOutcome { sent: 6, failed: 0 }, vec![0]),
            (4, vec![], SendOutcome { sent: 6, failed: 0 }, vec![0, 40]),
            (
                64,
                vec![(20, libc::EMSGSIZE)],
                SendOutcome { sent: 5, failed: 1 },
                vec![0, 20, 30],
            ),
            (
                64,
                vec![(0, libc::EMSGSIZE), (50, libc::EINVAL)],
                SendOutcome { sent: 4, failed: 2 },
                vec![0, 10, 50],
            ),
            (
                64,
                vec![(30, libc::EAGAIN)],
                SendOutcome { sent: 3, failed: 3 },
                vec![0, 30],
            ),
            (
                64,
                vec![(0, libc::EINTR)],
                SendOutcome { sent: 0, failed: 6 },
                vec![0; SEND_RETRIES + 1],
            ),
        ];
        for (per_call, refuse, expected, expected_calls) in cases {
            let mut calls = Vec::new();
            let outcome = send_all(&frames, fake_send(per_call, &refuse, &mut calls)).unwrap();
            assert_eq!(outcome, expected, "refusing {refuse:?}");
            assert_eq!(calls, expected_calls, "refusing {refuse:?}");
        }
    }

    #[test]
    fn send_all_reports_a_gone_interface() {
        let frames = [0..5, 10..15];
        let mut calls = Vec::new();
        let error = send_all(&frames, fake_send(64, &[(10, libc::ENXIO)], &mut calls)).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENXIO));
    }

    #[test]
    fn bad_configurations_are_refused_before_touching_an_interface() {
        let good = BackendConfig {
            outside: "pc-no-out".to_string(),
            inside: "pc-no-in".to_string(),
            workers: 2,
            batch_size: 64,
        };
        let cases = [
            (
                BackendConfig {
                    inside: good.outside.clone(),
                    ..good.clone()
                },
                0,
                "both",
            ),
            (good.clone(), 2, "worker 2 does not exist"),
            (
                BackendConfig {
                    batch_size: 0,
                    ..good.clone()
                },
                0,
                "batch size 0",
            ),
            (
                BackendConfig {
                    batch_size: MAX_BATCH + 1,
                    ..good.clone()
                },
                0,
                "batch size",
            ),
        ];
        for (config, worker, message) in cases {
            let error = open(&config, worker).unwrap_err();
            assert!(
                matches!(error, BackendError::Unsupported { .. })
                    && error.to_string().contains(message),
                "{config:?} worker {worker}: {error}"
            );
        }
    }

    #[test]
    fn socket_drop_reads_add_up_and_failed_reads_are_reported_once() {
        let failed = || Err(io::Error::from_raw_os_error(libc::EBADF));
        // (the read, the total after it, whether it is reported)
        let reads: Vec<(io::Result<u32>, u64, bool)> = vec![
            (Ok(0), 0, false),
            (Ok(12), 12, false),
            (Ok(5), 17, false),
            (failed(), 17, true),
            (failed(), 17, false),
            (Ok(u32::MAX), 17 + u64::from(u32::MAX), false),
            (failed(), 17 + u64::from(u32::MAX), false),
            (Ok(1), 18 + u64::from(u32::MAX), false),
        ];
        let mut drops = SocketDrops::default();
        for (i, (reading, total, reported)) in reads.into_iter().enumerate() {
            let report = drops.record(reading);
            assert_eq!(report.is_some(), reported, "read {i}");
            assert_eq!(drops.total, total, "read {i}");
        }
    }

    /// The kernel's side: a count that grows with each drop and goes back to zero when read;
    /// a read that fails leaves it alone.
    #[derive(Default)]
    struct KernelCount(u32);

    impl KernelCount {
        fn read(&mut self, fails: bool) -> io::Result<u32> {
            if fails {
                return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
            }
            Ok(std::mem::take(&mut self.0))
        }
    }

    #[test]
    fn totals_match_the_kernels_drops_however_the_reads_fall() {
        proptest::proptest!(|(steps in proptest::collection::vec((0u32..1000, proptest::bool::ANY), 0..200))| {
            let mut kernel = KernelCount::default();
            let mut drops = SocketDrops::default();
            let mut dropped = 0u64;
            for (new, fails) in steps {
                kernel.0 += new;
                dropped += u64::from(new);
                drops.record(kernel.read(fails));
            }
            drops.record(kernel.read(false));
            proptest::prop_assert_eq!(drops.total, dropped);
        });
    }

    #[test]
    fn a_missing_interface_is_named() {
        let config = BackendConfig {
            outside: "pc-no-out".to_string(),
            inside: "pc-no-in".to_string(),
            ..BackendConfig::default()
        };
        let error = open(&config, 0).unwrap_err();
        assert!(
            matches!(error, BackendError::NoSuchInterface { .. }),
            "{error}"
        );
        assert_eq!(error.to_string(), "pc-no-out: no such network interface");
    }
}
