//! Every system call of the AF_PACKET backend (and the `setns` that [`crate::dataplane::netns`]
//! needs), behind safe functions. Nothing here decides anything: it moves bytes between the
//! kernel and buffers the caller owns, and reports what the kernel said.
//!
//! Each raw pointer handed to the kernel is derived from a borrow that outlives the call, and
//! each length passed with it is the length of that borrow; the `SAFETY` notes say which.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;
use std::time::Duration;

/// `ETH_P_ALL`: every protocol, so the socket sees every frame of its interface.
const ETH_P_ALL: u16 = 0x0003;

/// Longest interface name the kernel accepts (`IFNAMSIZ` less the terminating NUL).
pub(crate) const MAX_INTERFACE_NAME: usize = libc::IFNAMSIZ - 1;

/// An 802.1Q/802.1ad tag the kernel took out of a frame and reported beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VlanTag {
    /// The tag protocol identifier (0x8100, 0x88a8, ...).
    pub tpid: u16,
    /// Priority, drop-eligible bit and VLAN id, as on the wire.
    pub tci: u16,
}

/// What the kernel reported about one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// The frame's length without the tag the kernel took out; more than the slot held when
    /// `truncated`.
    pub len: usize,
    /// The frame did not fit its slot (only its first part was stored), or its metadata did
    /// not fit the control buffer (a tag may be missing).
    pub truncated: bool,
    pub vlan: Option<VlanTag>,
}

/// An `AF_PACKET`/`SOCK_RAW` socket, non-blocking, closed on drop.
#[derive(Debug)]
pub(crate) struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a socket for protocol 0, which receives nothing until [`PacketSocket::bind`]: the
    /// options set in between apply before the first frame arrives.
    pub(crate) fn new() -> io::Result<PacketSocket> {
        let kind = libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        // SAFETY: socket(2) takes no pointers; it only returns a descriptor or -1.
        let fd = unsafe { libc::socket(libc::AF_PACKET, kind, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2), is open, and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PacketSocket { fd })
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    fn raw(&self) -> libc::c_int {
        self.fd.as_raw_fd()
    }

    /// Sets an integer `SOL_PACKET` or `SOL_SOCKET` option.
    fn set_int(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        // SAFETY: every integer option of these levels reads exactly one `c_int`.
        unsafe { set_option(self.raw(), level, name, &value) }
    }

    /// Asks for `PACKET_AUXDATA` with every frame: that is where the kernel reports the VLAN
    /// tag it stripped.
    pub(crate) fn enable_auxdata(&self) -> io::Result<()> {
        self.set_int(libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
    }

    /// Stops the socket from receiving frames that are sent on its interface (ours included).
    pub(crate) fn ignore_outgoing(&self) -> io::Result<()> {
        self.set_int(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)
    }

    /// Sets the receive buffer, past `net.core.rmem_max` when the process may
    /// (`SO_RCVBUFFORCE` needs CAP_NET_ADMIN), within it otherwise.
    pub(crate) fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        match self.set_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes) {
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                self.set_int(libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)
            }
            other => other,
        }
    }

    /// Attaches a classic BPF filter that accepts nothing, so that a bound socket queues no
    /// frame while it is still being set up.
    pub(crate) fn attach_drop_all_filter(&self) -> io::Result<()> {
        // `ret #0`: keep zero bytes of every frame, i.e. drop it.
        let mut program = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let filter = libc::sock_fprog {
            len: 1,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: SO_ATTACH_FILTER reads one `sock_fprog`, whose `filter` points at `len` (1)
        // instructions in `program`, alive until this call returns; the kernel copies them.
        unsafe {
            set_option(
                self.raw(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &filter,
            )
        }
    }

    pub(crate) fn detach_filter(&self) -> io::Result<()> {
        self.set_int(libc::SOL_SOCKET, libc::SO_DETACH_FILTER, 0)
    }

    /// Binds to one interface, for every protocol: from here on the socket receives that
    /// interface's frames and sends out of it.
    pub(crate) fn bind(&self, ifindex: u32) -> io::Result<()> {
        let ifindex = to_c_int(ifindex)?;
        // SAFETY: all-zero bytes are a valid `sockaddr_ll` (integers and a byte array).
        let mut address: libc::sockaddr_ll = unsafe { mem::zeroed() };
        address.sll_family = libc::AF_PACKET as libc::c_ushort;
        address.sll_protocol = ETH_P_ALL.to_be();
        address.sll_ifindex = ifindex;
        let length = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `address` is a live `sockaddr_ll` and `length` is its size.
        let result = unsafe {
            libc::bind(
                self.raw(),
                ptr::from_ref(&address).cast::<libc::sockaddr>(),
                length,
            )
        };
        check(result)
    }

    /// Puts the interface in promiscuous mode for as long as this socket is open (the kernel
    /// drops the membership when the socket closes).
    pub(crate) fn add_promiscuous_membership(&self, ifindex: u32) -> io::Result<()> {
        let request = libc::packet_mreq {
            mr_ifindex: to_c_int(ifindex)?,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // SAFETY: PACKET_ADD_MEMBERSHIP reads one `packet_mreq`.
        unsafe {
            set_option(
                self.raw(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &request,
            )
        }
    }

    /// Joins fanout group `id` with the given mode and flags (`PACKET_FANOUT_*`).
    pub(crate) fn join_fanout(&self, id: u16, mode_and_flags: u16) -> io::Result<()> {
        let argument = u32::from(id) | (u32::from(mode_and_flags) << 16);
        self.set_int(
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            argument as libc::c_int,
        )
    }

    /// The id of the fanout group the socket is in (the kernel picks it for
    /// `PACKET_FANOUT_FLAG_UNIQUEID`).
    pub(crate) fn fanout_id(&self) -> io::Result<u16> {
        let mut value: libc::c_int = 0;
        let mut length = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: PACKET_FANOUT writes at most `length` bytes (one `c_int`) into `value` and
        // the actual length into `length`; both are live locals.
        let result = unsafe {
            libc::getsockopt(
                self.raw(),
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                ptr::from_mut(&mut value).cast::<libc::c_void>(),
                &mut length,
            )
        };
        check(result)?;
        Ok((value as u32 & 0xffff) as u16)
    }

    /// Frames the kernel dropped on this socket since the last call (or since it opened),
    /// from `PACKET_STATISTICS`: the receive queue was full (or, rarely, a copy of the frame
    /// could not be allocated). The kernel resets its counters at each read, so every drop
    /// is reported by exactly one call.
    pub(crate) fn take_drop_count(&self) -> io::Result<u32> {
        let mut statistics = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut length = mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: PACKET_STATISTICS writes at most `length` bytes (one `tpacket_stats`, the
        // layout for a socket without a TPACKET_V3 ring) into `statistics` and the actual
        // length into `length`; both are live locals.
        let result = unsafe {
            libc::getsockopt(
                self.raw(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                ptr::from_mut(&mut statistics).cast::<libc::c_void>(),
                &mut length,
            )
        };
        check(result)?;
        Ok(statistics.tp_drops)
    }

    /// The MTU of interface `name`.
    pub(crate) fn interface_mtu(&self, name: &str) -> io::Result<u32> {
        // SAFETY: all-zero bytes are a valid `ifreq` (a byte array and a union of integers,
        // addresses and a pointer that SIOCGIFMTU neither reads nor writes).
        let mut request: libc::ifreq = unsafe { mem::zeroed() };
        if name.len() > MAX_INTERFACE_NAME || name.as_bytes().contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
            *slot = byte as libc::c_char;
        }
        // SAFETY: SIOCGIFMTU reads the NUL-terminated name (at most 15 bytes were copied into
        // the zeroed 16-byte array) and writes `ifru_mtu` inside the live `request`.
        let result =
            unsafe { libc::ioctl(self.raw(), libc::SIOCGIFMTU, ptr::from_mut(&mut request)) };
        check(result)?;
        // SAFETY: a successful SIOCGIFMTU has written `ifru_mtu`, an integer.
        let mtu = unsafe { request.ifr_ifru.ifru_mtu };
        u32::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// Receives what is queued, up to one frame per slot and `batch`'s capacity, without
    /// waiting. Slot `i` is `slots[i * slot_len..][..slot_len]`; its frame is stored from byte
    /// `headroom` on. `out` is cleared and gets one entry per frame, in slot order. Nothing
    /// queued is not an error: `out` stays empty.
    pub(crate) fn receive_batch(
        &self,
        batch: &mut MessageBatch,
        slots: &mut [u8],
        slot_len: usize,
        headroom: usize,
        out: &mut Vec<Received>,
    ) -> io::Result<()> {
        out.clear();
        if headroom >= slot_len {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let capacity = slot_len - headroom;
        let mut count = 0;
        for (slot, iovec) in slots.chunks_exact_mut(slot_len).zip(&mut batch.iovecs) {
            let data = &mut slot[headroom..];
            *iovec = libc::iovec {
                iov_base: data.as_mut_ptr().cast::<libc::c_void>(),
                iov_len: data.len(),
            };
            count += 1;
        }
        let MessageBatch {
            headers,
            iovecs,
            control,
        } = batch;
        for ((header, iovec), space) in headers.iter_mut().zip(iovecs.iter_mut()).zip(control) {
            header.msg_len = 0;
            header.msg_hdr.msg_name = ptr::null_mut();
            header.msg_hdr.msg_namelen = 0;
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = space.0.as_mut_ptr().cast::<libc::c_void>();
            header.msg_hdr.msg_controllen = space.0.len() as _;
            header.msg_hdr.msg_flags = 0;
        }
        let count = count.min(headers.len());
        // MSG_TRUNC: report each frame's real length even when its slot was too short.
        let flags = libc::MSG_DONTWAIT | libc::MSG_TRUNC;
        // SAFETY: the first `count` headers each point at one iovec (a distinct slot of the
        // borrowed `slots`, `iov_len` bytes long) and at their own control buffer of
        // `msg_controllen` bytes, all alive for this call; `count` ≤ `headers.len()`.
        let received = unsafe {
            libc::recvmmsg(
                self.raw(),
                headers.as_mut_ptr(),
                count as libc::c_uint,
                flags,
                ptr::null_mut(),
            )
        };
        if received < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                _ => Err(error),
            };
        }
        for header in headers.iter().take(received as usize) {
            let len = header.msg_len as usize;
            let truncated = len > capacity
                || header.msg_hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
            out.push(Received {
                len,
                truncated,
                vlan: vlan_tag_of(&header.msg_hdr),
            });
        }
        Ok(())
    }

    /// Sends `buf[range]` for each of `frames`, in order, as separate frames, in one call,
    /// without waiting. Returns how many were sent (the first ones; at least one), or the
    /// error that stopped the first.
    pub(crate) fn send_batch(
        &self,
        batch: &mut MessageBatch,
        buf: &[u8],
        frames: &[Range<usize>],
    ) -> io::Result<usize> {
        let MessageBatch {
            headers, iovecs, ..
        } = batch;
        let mut count = 0;
        for (range, iovec) in frames.iter().zip(iovecs.iter_mut()) {
            let frame = buf
                .get(range.clone())
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
            *iovec = libc::iovec {
                // The kernel only reads through it (sendmmsg takes `*mut` for its own reasons).
                iov_base: frame.as_ptr().cast_mut().cast::<libc::c_void>(),
                iov_len: frame.len(),
            };
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        for (header, iovec) in headers.iter_mut().zip(iovecs.iter_mut()).take(count) {
            header.msg_len = 0;
            header.msg_hdr.msg_name = ptr::null_mut();
            header.msg_hdr.msg_namelen = 0;
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = ptr::null_mut();
            header.msg_hdr.msg_controllen = 0;
            header.msg_hdr.msg_flags = 0;
        }
        // SAFETY: the first `count` headers each point at one iovec describing a sub-slice of
        // the borrowed `buf` (checked by `get` above), alive for this call; no name, no
        // control data; `count` ≤ `headers.len()`. The kernel only reads the frames.
        let sent = unsafe {
            libc::sendmmsg(
                self.raw(),
                headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}

/// The VLAN tag that a `PACKET_AUXDATA` control message of a received `msghdr` reports.
fn vlan_tag_of(header: &libc::msghdr) -> Option<VlanTag> {
    let wanted = mem::size_of::<libc::tpacket_auxdata>();
    // SAFETY: `header` was filled by recvmmsg: `msg_control` points at a live control buffer
    // of which the kernel used `msg_controllen` bytes; CMSG_FIRSTHDR/CMSG_NXTHDR stay inside
    // those bytes and return null at their end.
    let mut message = unsafe { libc::CMSG_FIRSTHDR(header) };
    while !message.is_null() {
        // SAFETY: `message` is non-null and was returned by CMSG_FIRSTHDR/CMSG_NXTHDR, so it
        // points at a whole `cmsghdr` inside the control buffer.
        let cmsg = unsafe { &*message };
        // SAFETY: CMSG_LEN only computes a length.
        let needed = unsafe { libc::CMSG_LEN(wanted as libc::c_uint) } as usize;
        if cmsg.cmsg_level == libc::SOL_PACKET
            && cmsg.cmsg_type == libc::PACKET_AUXDATA
            && cmsg.cmsg_len as usize >= needed
        {
            // SAFETY: the message holds at least a whole `tpacket_auxdata` after its header
            // (checked against CMSG_LEN above); CMSG_DATA points at it, maybe unaligned.
            let aux = unsafe {
                ptr::read_unaligned(libc::CMSG_DATA(message).cast::<libc::tpacket_auxdata>())
            };
            return tag_from_auxdata(aux.tp_status, aux.tp_vlan_tpid, aux.tp_vlan_tci);
        }
        // SAFETY: as for CMSG_FIRSTHDR; `message` is a header of this same buffer.
        message = unsafe { libc::CMSG_NXTHDR(header, message) };
    }
    None
}

/// The tag an auxdata status reports: none unless `TP_STATUS_VLAN_VALID` (a TCI of 0 is a
/// real tag: priority 0, VLAN 0), and 802.1Q when the kernel does not say which TPID.
pub(crate) fn tag_from_auxdata(status: u32, tpid: u16, tci: u16) -> Option<VlanTag> {
    if status & libc::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
        tpid
    } else {
        0x8100
    };
    Some(VlanTag { tpid, tci })
}

/// Reusable `recvmmsg`/`sendmmsg` headers, iovecs and control buffers for one batch. The
/// pointers inside are rewritten before every call and mean nothing between calls.
pub(crate) struct MessageBatch {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    control: Vec<ControlSpace>,
}

/// Room for one `PACKET_AUXDATA` control message, aligned like a `cmsghdr`.
#[repr(C, align(8))]
struct ControlSpace([u8; CONTROL_SPACE]);

const CONTROL_SPACE: usize = 64;

// SAFETY: CMSG_SPACE only computes a length.
const _: () = assert!(
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::tpacket_auxdata>() as libc::c_uint) } as usize
        <= CONTROL_SPACE
);

impl MessageBatch {
    pub(crate) fn new(capacity: usize) -> MessageBatch {
        MessageBatch {
            // SAFETY: all-zero bytes are a valid `mmsghdr`: null pointers and zero lengths.
            headers: (0..capacity).map(|_| unsafe { mem::zeroed() }).collect(),
            iovecs: (0..capacity)
                .map(|_| libc::iovec {
                    iov_base: ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            control: (0..capacity)
                .map(|_| ControlSpace([0; CONTROL_SPACE]))
                .collect(),
        }
    }
}

// SAFETY: the raw pointers in a `MessageBatch` are only written from borrows held for the
// duration of one `receive_batch`/`send_batch` call and read by the kernel during it; between
// calls they are stale addresses that nothing dereferences, so moving the batch to another
// thread cannot create shared access.
unsafe impl Send for MessageBatch {}

/// Waits until one of `sockets` has something to receive (or an error to report), at most
/// `timeout`. Returns which are ready; none when the time ran out or a signal came.
pub(crate) fn wait_readable<const N: usize>(
    sockets: [BorrowedFd<'_>; N],
    timeout: Duration,
) -> io::Result<[bool; N]> {
    let mut fds = sockets.map(|socket| libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a live array of N `pollfd`s, each naming a descriptor borrowed for this
    // call; `timeout` is a live `timespec`; no signal mask is passed.
    let result = unsafe { libc::ppoll(fds.as_mut_ptr(), N as libc::nfds_t, &timeout, ptr::null()) };
    if result < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok([false; N]);
        }
        return Err(error);
    }
    Ok(fds.map(|fd| fd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0))
}

/// The index of interface `name` in the calling thread's network namespace, or `None` when it
/// has no such interface.
pub(crate) fn interface_index(name: &str) -> io::Result<Option<u32>> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME {
        return Ok(None);
    }
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    // SAFETY: `name` is a live NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index != 0 {
        return Ok(Some(index));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) => Ok(None),
        _ => Err(error),
    }
}

/// Moves the calling thread into the network namespace `namespace` (a file of `/run/netns`
/// or `/proc/PID/ns/net`). Only this thread moves; sockets opened before keep their own.
pub(crate) fn enter_network_namespace(namespace: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns(2) takes no pointers; the descriptor is borrowed, so open, for the call.
    let result = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
    check(result)
}

/// Sets a socket option from a value of the type the kernel expects.
///
/// # Safety
///
/// `T` must be the type that option `(level, name)` reads, and every pointer inside `value`
/// must be valid for what the kernel reads through it during the call.
unsafe fn set_option<T>(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let length = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live `T` of `length` bytes; the caller vouches that the kernel reads
    // a `T` for this option and that pointers inside it are valid.
    let result = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            ptr::from_ref(value).cast::<libc::c_void>(),
            length,
        )
    };
    check(result)
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn to_c_int(value: u32) -> io::Result<libc::c_int> {
    libc::c_int::try_from(value).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auxdata_status_decides_whether_and_which_tag() {
        let valid = libc::TP_STATUS_VLAN_VALID;
        let tpid_valid = libc::TP_STATUS_VLAN_TPID_VALID;
        let cases: [(u32, u16, u16, Option<VlanTag>); 5] = [
            (0, 0x8100, 100, None),
            (tpid_valid, 0x88a8, 100, None),
            (
                valid,
                0,
                100,
                Some(VlanTag {
                    tpid: 0x8100,
                    tci: 100,
                }),
            ),
            (
                valid | tpid_valid,
                0x88a8,
                0xa064,
                Some(VlanTag {
                    tpid: 0x88a8,
                    tci: 0xa064,
                }),
            ),
            (
                valid | tpid_valid,
                0x8100,
                0,
                Some(VlanTag {
                    tpid: 0x8100,
                    tci: 0,
                }),
            ),
        ];
        for (status, tpid, tci, expected) in cases {
            assert_eq!(
                tag_from_auxdata(status, tpid, tci),
                expected,
                "status {status:#x} tpid {tpid:#x} tci {tci:#x}"
            );
        }
    }

    #[test]
    fn unknown_or_impossible_interface_names_have_no_index() {
        for name in ["", "pc-no-such-if", "a-name-longer-than-15", "nul\0name"] {
            assert_eq!(interface_index(name).unwrap(), None, "{name:?}");
        }
    }

    #[test]
    fn loopback_has_an_index() {
        assert!(interface_index("lo").unwrap().is_some());
    }

    #[test]
    fn wait_readable_returns_when_the_time_is_up() {
        let (reader, _writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let reader_fd = std::os::fd::AsFd::as_fd(&reader);
        let started = std::time::Instant::now();
        let ready = wait_readable([reader_fd], Duration::from_millis(20)).unwrap();
        assert_eq!(ready, [false]);
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn wait_readable_reports_the_ready_descriptor() {
        use std::io::Write;
        let (quiet, _quiet_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (busy, mut busy_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        busy_peer.write_all(b"x").unwrap();
        let fds = [
            std::os::fd::AsFd::as_fd(&quiet),
            std::os::fd::AsFd::as_fd(&busy),
        ];
        assert_eq!(
            wait_readable(fds, Duration::from_secs(5)).unwrap(),
            [false, true]
        );
    }
}
