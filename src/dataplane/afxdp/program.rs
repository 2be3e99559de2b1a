//! The XDP program on each gateway port: who may touch it, and what a killed gateway left.
//!
//! libxdp attaches its redirect program (`xsk_def_prog`) when the first AF_XDP socket binds
//! to an interface and detaches it when the last one closes, counting sockets in a map of the
//! program itself. A process killed with SIGKILL never decrements that count. What it leaves
//! (seen with libxdp 1.6 on Linux 6.18, veth, native mode): the program stays attached to
//! both ports, by netlink (`ip link` shows `prog/xdp ... name xsk_def_prog`; there is no
//! `bpf_link` that would have gone with the process, and libxdp attached it on its own, not
//! through its dispatcher, so nothing is pinned under `/sys/fs/bpf/xdp`); its sockets are
//! closed, which empties their slots in the redirect map, so frames fall through to the
//! kernel stack, which neither bridges nor routes between the ports: nothing crosses. A new
//! gateway left to libxdp would find the program, bump the stale count and reuse it, and no
//! later clean exit would bring the count to zero: the program would stay for good.
//!
//! So each process claims a port before binding to it: an exclusive `flock` on a file named
//! after the port (network namespace and interface index), taken by the first worker and
//! shared by the others through [`PortClaim`]. The kernel drops the lock when its holder dies,
//! so whoever takes it knows that no live gateway uses the port, and that an `xsk_def_prog`
//! still attached is a leftover: it is detached (its dispatcher unpinned) before the first
//! socket binds, and libxdp attaches a fresh program with a true count. When the last worker
//! of the process lets the claim go, its sockets are closed and libxdp has detached the
//! program; the claim checks, detaches what is left if anything, and unlocks.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The name libxdp gives its AF_XDP redirect program.
const XSK_PROGRAM_NAME: &CStr = c"xsk_def_prog";
/// Where libxdp looks for bpffs, and where it is mounted when missing.
const BPFFS: &CStr = c"/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where the per-port lock files live (tmpfs: they go away with a reboot, as do the ports'
/// XDP programs).
const LOCK_DIRECTORY: &str = "/run/portcullis";

/// How the XDP program of a port is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttachMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// In the generic path, after an skb is built (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

impl AttachMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// A port of this process: the lock that keeps other gateways off it, and how its program is
/// attached once the first worker has bound.
#[derive(Debug)]
pub(crate) struct PortClaim {
    key: PortKey,
    /// Held for its lock; closing it unlocks.
    _lock: File,
    /// Set by the first worker that binds; later workers attach the same way, so that the
    /// last socket to close detaches in the mode the program was attached in.
    pub(crate) mode: Mutex<Option<AttachMode>>,
    /// The id of a leftover program detached when the port was claimed.
    pub(crate) replaced: Option<u32>,
}

/// An interface, named so that it stays unique across network namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortKey {
    namespace: (u64, u64),
    ifindex: u32,
}

/// This process's claimed ports. Entries are weak: the claim goes when its last pair does.
static CLAIMS: Mutex<Vec<(PortKey, Weak<PortClaim>)>> = Mutex::new(Vec::new());

/// Serialises every `open` of this process, so that a second worker never looks at a port
/// while the first is still attaching to it.
pub(crate) static OPENING: Mutex<()> = Mutex::new(());

/// Why a port could not be claimed.
#[derive(Debug)]
pub(crate) enum ClaimError {
    /// Another live process holds the port.
    Busy,
    Io(&'static str, io::Error),
}

/// Claims the interface with index `ifindex` for this process, or joins this process's
/// claim. Call with [`OPENING`] held.
pub(crate) fn claim(ifindex: u32) -> Result<Arc<PortClaim>, ClaimError> {
    let key =
        PortKey::of(ifindex).map_err(|e| ClaimError::Io("identify the network namespace", e))?;
    let mut claims = CLAIMS.lock().unwrap_or_else(PoisonError::into_inner);
    claims.retain(|(_, claim)| claim.strong_count() > 0);
    if let Some(claim) = claims
        .iter()
        .find(|(candidate, _)| *candidate == key)
        .and_then(|(_, claim)| claim.upgrade())
    {
        return Ok(claim);
    }
    let lock = lock_port(key)?;
    let replaced = detach_xsk_program(ifindex)
        .map_err(|e| ClaimError::Io("detach the XDP program a previous gateway left", e))?;
    let claim = Arc::new(PortClaim {
        key,
        _lock: lock,
        mode: Mutex::new(None),
        replaced,
    });
    claims.push((key, Arc::downgrade(&claim)));
    Ok(claim)
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        // Every socket of this process on the port is closed by now (pairs drop their sockets
        // before their claims), so libxdp has detached its program; this only catches a
        // program whose count went wrong. Interface indexes are per namespace: from another
        // namespace, this one's interface cannot be reached by index, so leave it. Nothing to
        // report to: a drop cannot fail.
        if PortKey::of(self.key.ifindex).is_ok_and(|here| here == self.key) {
            let _ = detach_xsk_program(self.key.ifindex);
        }
    }
}

impl PortKey {
    fn of(ifindex: u32) -> io::Result<PortKey> {
        use std::os::unix::fs::MetadataExt;
        let namespace = std::fs::metadata("/proc/thread-self/ns/net")?;
        Ok(PortKey {
            namespace: (namespace.dev(), namespace.ino()),
            ifindex,
        })
    }

    fn lock_path(&self) -> PathBuf {
        let (dev, ino) = self.namespace;
        PathBuf::from(LOCK_DIRECTORY).join(format!("xdp-{dev}-{ino}-{}.lock", self.ifindex))
    }
}

fn lock_port(key: PortKey) -> Result<File, ClaimError> {
    std::fs::create_dir_all(LOCK_DIRECTORY)
        .map_err(|e| ClaimError::Io("create the lock directory /run/portcullis", e))?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(key.lock_path())
        .map_err(|e| ClaimError::Io("open the port's lock file in /run/portcullis", e))?;
    // SAFETY: `flock` on a descriptor this function owns; no memory is passed.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked == 0 {
        return Ok(file);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(ClaimError::Busy)
    } else {
        Err(ClaimError::Io("lock the port (flock)", error))
    }
}

/// Detaches libxdp's AF_XDP program from `ifindex` if it is attached (alone or in a
/// dispatcher; other programs in the dispatcher stay). Returns its id.
pub(crate) fn detach_xsk_program(ifindex: u32) -> io::Result<Option<u32>> {
    let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::other("interface index"))?;
    // SAFETY: a plain query; the result is checked for libxdp's error encoding before use and
    // closed below on every path.
    let multiprog = unsafe { libxdp_sys::xdp_multiprog__get_from_ifindex(ifindex) };
    if let Some(errno) = libxdp_error(multiprog) {
        return if errno == libc::ENOENT || multiprog.is_null() {
            Ok(None)
        } else {
            Err(io::Error::from_raw_os_error(errno))
        };
    }
    let result = detach_from(multiprog, ifindex);
    // SAFETY: `multiprog` is a valid handle from the call above, closed once, here.
    unsafe { libxdp_sys::xdp_multiprog__close(multiprog) };
    result
}

fn detach_from(multiprog: *mut libxdp_sys::xdp_multiprog, ifindex: i32) -> io::Result<Option<u32>> {
    // SAFETY: `multiprog` is a valid handle (checked by the caller) and outlives every program
    // pointer taken from it here; names are NUL-terminated strings owned by libxdp.
    unsafe {
        let mut program = if libxdp_sys::xdp_multiprog__is_legacy(multiprog) {
            libxdp_sys::xdp_multiprog__main_prog(multiprog)
        } else {
            libxdp_sys::xdp_multiprog__next_prog(std::ptr::null(), multiprog)
        };
        while !program.is_null() {
            let name = libxdp_sys::xdp_program__name(program);
            if !name.is_null() && CStr::from_ptr(name) == XSK_PROGRAM_NAME {
                let id = libxdp_sys::xdp_program__id(program);
                let mode = libxdp_sys::xdp_multiprog__attach_mode(multiprog);
                let error = libxdp_sys::xdp_program__detach(program, ifindex, mode, 0);
                return if error == 0 {
                    Ok(Some(id))
                } else {
                    Err(io::Error::from_raw_os_error(-error))
                };
            }
            if libxdp_sys::xdp_multiprog__is_legacy(multiprog) {
                break;
            }
            program = libxdp_sys::xdp_multiprog__next_prog(program, multiprog);
        }
    }
    Ok(None)
}

/// The errno libxdp encoded in a returned pointer (`ERR_PTR`), or `Some(ENOENT)` for null.
fn libxdp_error<T>(pointer: *mut T) -> Option<i32> {
    let value = pointer as isize;
    if pointer.is_null() {
        Some(libc::ENOENT)
    } else if (-4095..0).contains(&value) {
        Some(-(value as i32))
    } else {
        None
    }
}

/// The index of the interface named `name` in this thread's network namespace; 0 if none.
pub(crate) fn interface_index(name: &CStr) -> u32 {
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

/// Mounts bpffs at `/sys/fs/bpf` when nothing is mounted there: libxdp keeps its
/// multi-program dispatcher's state there, and falls back to attaching its program alone
/// without it. Returns whether bpffs is there now.
pub(crate) fn ensure_bpffs() -> bool {
    if is_bpffs() {
        return true;
    }
    // SAFETY: all pointers are NUL-terminated string literals.
    let mounted = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            BPFFS.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    mounted == 0 || is_bpffs()
}

fn is_bpffs() -> bool {
    // SAFETY: `statfs` fills the zeroed struct it is given; the path is a literal.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::statfs(BPFFS.as_ptr(), &mut fs) == 0 && fs.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Keeps libxdp and libbpf quiet: every failure they would print comes back to us as an
/// error code, which `open` reports with the interface and operation; their notes about mode
/// fallbacks and object sections would only be noise on the gateway's stderr.
pub(crate) fn silence_libraries() {
    // SAFETY: installs pointers to functions with the libraries' print signatures that read
    // none of their arguments.
    unsafe {
        libxdp_sys::libxdp_set_print(Some(discard_libxdp));
        libbpf_sys::libbpf_set_print(Some(discard_libbpf));
    }
}

extern "C" fn discard_libxdp(
    _level: libxdp_sys::libxdp_print_level,
    _format: *const std::os::raw::c_char,
    _args: *mut libxdp_sys::__va_list_tag,
) -> std::os::raw::c_int {
    0
}

extern "C" fn discard_libbpf(
    _level: libbpf_sys::libbpf_print_level,
    _format: *const std::os::raw::c_char,
    _args: *mut libbpf_sys::__va_list_tag,
) -> std::os::raw::c_int {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libxdp_error_pointers_are_decoded() {
        let cases: [(isize, Option<i32>); 4] = [
            (0, Some(libc::ENOENT)),
            (-(libc::ENOENT as isize), Some(libc::ENOENT)),
            (-(libc::EPERM as isize), Some(libc::EPERM)),
            (0x7f00_0000_1000, None),
        ];
        for (value, expected) in cases {
            assert_eq!(libxdp_error(value as *mut u8), expected, "{value:#x}");
        }
    }

    #[test]
    fn lock_files_are_named_by_namespace_and_index() {
        let key = PortKey {
            namespace: (4, 4026531840),
            ifindex: 7,
        };
        assert_eq!(
            key.lock_path(),
            PathBuf::from("/run/portcullis/xdp-4-4026531840-7.lock")
        );
    }
}
