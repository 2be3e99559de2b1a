//! Pinning a worker thread to one CPU core (`sched_setaffinity`), so that its caches, and the
//! queue interrupts steered to that core, stay warm; and, when asked, running it at a real-time
//! priority (`SCHED_FIFO`).
//!
//! Why a worker may want `SCHED_FIFO`: where the kernel's receive work for the worker's ports
//! runs in threads on the worker's core (threaded NAPI, which a veth with XDP attached needs to
//! keep that work off the sender's core) and those threads are real-time, a normal worker is
//! preempted by them whenever a frame arrives. Flooded, the core then spends itself receiving
//! frames into the worker's rings that the worker has no time left to forward (receive
//! livelock). At the same `SCHED_FIFO` priority neither preempts the other: the worker runs
//! until it has drained its rings and waits in `poll(2)`, the receive threads run until they
//! have filled them, and a flood is dropped where it is cheapest, at the port's own queue,
//! before any copy. The policy is per thread and set by the thread itself, so the process's
//! other threads (configuration, admin, housekeeping) stay normal. A worker at `SCHED_FIFO`
//! that never runs out of frames leaves normal tasks on its core only the share the kernel
//! keeps for them (`sched_rt_runtime_us`, 5% by default): give such workers cores of their own.
//!
//! The masks are plain `[u64; N]` arrays handed to the kernel as its `cpu_set_t` (the same
//! bitmap layout: bit `i % 64` of word `i / 64` is CPU `i`), which keeps every bit operation
//! in safe code and leaves two system calls in the `unsafe` blocks.

#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;

/// CPUs a mask can name: glibc's `CPU_SETSIZE`, the size of `libc::cpu_set_t`.
const MAX_CPUS: usize = 1024;
const WORDS: usize = MAX_CPUS / 64;

type Mask = [u64; WORDS];

// The kernel reads and writes exactly `size_of::<Mask>()` bytes; `cpu_set_t` is the same size,
// so the mask is also what a libc `cpu_set_t` would be.
const _: () = assert!(size_of::<Mask>() == size_of::<libc::cpu_set_t>());

/// The CPUs this thread may run on (inherited by the threads it starts), lowest first.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let mut mask: Mask = [0; WORDS];
    // SAFETY: `mask` is a writable buffer of exactly the size passed; the kernel writes at most
    // that many bytes into it and keeps no reference after the call returns. Pid 0 is the
    // calling thread.
    let written = unsafe {
        libc::sched_getaffinity(
            0,
            size_of::<Mask>(),
            mask.as_mut_ptr().cast::<libc::cpu_set_t>(),
        )
    };
    if written != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cpus_in(&mask))
}

/// Restricts the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let mask = single_cpu_mask(cpu).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is beyond the {MAX_CPUS} an affinity mask can name"),
        )
    })?;
    // SAFETY: `mask` is a readable buffer of exactly the size passed; the kernel only reads it,
    // during the call. Pid 0 is the calling thread.
    let result = unsafe {
        libc::sched_setaffinity(
            0,
            size_of::<Mask>(),
            mask.as_ptr().cast::<libc::cpu_set_t>(),
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A `SCHED_FIFO` priority: 1 (lowest) to 99.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FifoPriority(u8);

impl FifoPriority {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 99;

    /// `None` outside 1..=99.
    pub fn new(priority: u8) -> Option<FifoPriority> {
        (Self::MIN..=Self::MAX)
            .contains(&priority)
            .then_some(FifoPriority(priority))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl std::fmt::Display for FifoPriority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for FifoPriority {
    type Err = String;

    fn from_str(text: &str) -> Result<FifoPriority, String> {
        text.parse::<u8>()
            .ok()
            .and_then(FifoPriority::new)
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a SCHED_FIFO priority ({} to {})",
                    Self::MIN,
                    Self::MAX
                )
            })
    }
}

/// How a thread is scheduled, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    /// `SCHED_OTHER`: the normal time-sharing policy.
    Normal,
    /// `SCHED_FIFO` at this priority.
    Fifo(u8),
    /// Any other policy (`SCHED_RR`, `SCHED_BATCH`, `SCHED_IDLE`, ...), by its number, and
    /// its static priority.
    Other { policy: i32, priority: i32 },
}

/// Runs the calling thread (only it: the policy is per thread, and threads it starts later
/// inherit it) at `SCHED_FIFO` `priority`. Refused with `EPERM` without `CAP_SYS_NICE` unless
/// `RLIMIT_RTPRIO` allows the priority: [`explain_fifo_error`] says so.
pub fn run_current_thread_fifo(priority: FifoPriority) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority.get()),
    };
    // SAFETY: `param` is a valid, initialised `sched_param` the kernel only reads during the
    // call. Pid 0 is the calling thread.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's scheduling policy and priority.
pub fn current_thread_scheduling() -> io::Result<Scheduling> {
    // SAFETY: no pointers; pid 0 is the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a writable `sched_param` the kernel fills during the call and keeps no
    // reference to. Pid 0 is the calling thread.
    if unsafe { libc::sched_getparam(0, &mut param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(scheduling_of(policy, param.sched_priority))
}

/// The kernel's policy number (without `SCHED_RESET_ON_FORK`) and priority, named.
fn scheduling_of(policy: i32, priority: i32) -> Scheduling {
    match policy & !libc::SCHED_RESET_ON_FORK {
        libc::SCHED_OTHER => Scheduling::Normal,
        libc::SCHED_FIFO => match u8::try_from(priority) {
            Ok(priority) => Scheduling::Fifo(priority),
            Err(_) => Scheduling::Other { policy, priority },
        },
        policy => Scheduling::Other { policy, priority },
    }
}

/// Why [`run_current_thread_fifo`] failed, in a sentence that says what to do about it.
pub fn explain_fifo_error(priority: FifoPriority, error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::EPERM) => format!(
            "cannot run at SCHED_FIFO priority {priority}: not permitted ({error}); it needs \
             CAP_SYS_NICE (root, or AmbientCapabilities=CAP_SYS_NICE in a systemd unit) or an \
             RLIMIT_RTPRIO of at least {priority} (LimitRTPRIO=), or leave the option out"
        ),
        _ => format!("cannot run at SCHED_FIFO priority {priority}: {error}"),
    }
}

fn single_cpu_mask(cpu: usize) -> Option<Mask> {
    let mut mask: Mask = [0; WORDS];
    *mask.get_mut(cpu / 64)? |= 1 << (cpu % 64);
    Some(mask)
}

fn cpus_in(mask: &Mask) -> Vec<usize> {
    (0..MAX_CPUS)
        .filter(|&cpu| mask[cpu / 64] & (1 << (cpu % 64)) != 0)
        .collect()
}

/// Takes `CAP_SYS_NICE` away from the calling thread (only it: capabilities are per thread;
/// threads it starts later inherit the loss) and lowers the process's soft `RLIMIT_RTPRIO` to
/// 0, so that the thread, and threads it starts, are refused `SCHED_FIFO` as an unprivileged
/// process is. For tests of that refusal.
#[cfg(test)]
pub(crate) fn lose_realtime_rights_in_this_thread() -> io::Result<()> {
    const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_SYS_NICE: u32 = 23;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: `header` and `data` are the kernel's `__user_cap_header_struct` and, for
    // version 3, two `__user_cap_data_struct`s; the kernel writes `data` during the call.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bit = 1 << CAP_SYS_NICE;
    data[0].effective &= !bit;
    data[0].permitted &= !bit;
    // SAFETY: as above; the kernel only reads them. Pid 0 in the header is the calling thread.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a writable `rlimit` the kernel fills during the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_RTPRIO, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_cur = 0;
    // SAFETY: `limit` is a valid `rlimit` the kernel reads during the call; lowering the soft
    // limit is always allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_RTPRIO, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this process may run threads at `SCHED_FIFO` (tried on a thread of its own), or why
/// not.
#[cfg(test)]
pub(crate) fn realtime_allowed() -> Result<(), String> {
    std::thread::spawn(|| {
        run_current_thread_fifo(FifoPriority(1))
            .map_err(|e| explain_fifo_error(FifoPriority(1), &e))
    })
    .join()
    .unwrap_or_else(|_| Err("the probe thread panicked".to_string()))
}

/// True when the process may use `SCHED_FIFO`; else prints why the test is skipped and returns
/// false, or, under `CI=true`, fails the test.
#[cfg(test)]
pub(crate) fn realtime_or_skip(test: &str) -> bool {
    match realtime_allowed() {
        Ok(()) => true,
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: SCHED_FIFO is needed under CI=true: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_name_the_cpus_they_hold() {
        for cpu in [0, 1, 63, 64, 65, 1023] {
            let mask = single_cpu_mask(cpu).unwrap();
            assert_eq!(cpus_in(&mask), vec![cpu]);
        }
        assert_eq!(single_cpu_mask(MAX_CPUS), None);
    }

    #[test]
    fn a_thread_pinned_to_an_allowed_cpu_runs_only_there() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        let last = *allowed.last().unwrap();
        // A thread of its own, so the test runner's thread keeps its affinity.
        let after = std::thread::spawn(move || {
            pin_current_thread(last).unwrap();
            allowed_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(after, vec![last]);
    }

    #[test]
    fn pinning_beyond_the_mask_is_refused() {
        let error = pin_current_thread(MAX_CPUS).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn fifo_priorities_are_1_to_99() {
        for (text, priority) in [
            ("1", Some(1)),
            ("99", Some(99)),
            ("50", Some(50)),
            ("0", None),
            ("100", None),
            ("-1", None),
            ("high", None),
            ("", None),
        ] {
            let parsed = text.parse::<FifoPriority>();
            assert_eq!(parsed.as_ref().ok().map(|p| p.get()), priority, "{text:?}");
            if let Err(message) = parsed {
                assert!(message.contains("1 to 99"), "{message}");
            }
        }
        assert_eq!(FifoPriority::new(0), None);
        assert_eq!(FifoPriority::new(7).map(FifoPriority::get), Some(7));
    }

    #[test]
    fn policies_are_named() {
        assert_eq!(scheduling_of(libc::SCHED_OTHER, 0), Scheduling::Normal);
        assert_eq!(scheduling_of(libc::SCHED_FIFO, 3), Scheduling::Fifo(3));
        assert_eq!(
            scheduling_of(libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, 2),
            Scheduling::Fifo(2)
        );
        assert_eq!(
            scheduling_of(libc::SCHED_RR, 5),
            Scheduling::Other {
                policy: libc::SCHED_RR,
                priority: 5
            }
        );
    }

    #[test]
    fn a_thread_set_to_fifo_reads_back_fifo_and_its_starter_stays_normal() {
        if !realtime_or_skip("a_thread_set_to_fifo_reads_back_fifo_and_its_starter_stays_normal") {
            return;
        }
        let before = current_thread_scheduling().unwrap();
        let priority = FifoPriority::new(2).unwrap();
        let inside = std::thread::spawn(move || {
            run_current_thread_fifo(priority).unwrap();
            current_thread_scheduling().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside, Scheduling::Fifo(2));
        assert_eq!(current_thread_scheduling().unwrap(), before);
        assert_eq!(before, Scheduling::Normal);
    }

    #[test]
    fn without_the_right_fifo_is_refused_and_the_message_says_what_is_missing() {
        let priority = FifoPriority::new(5).unwrap();
        let (result, after) = std::thread::spawn(move || {
            lose_realtime_rights_in_this_thread().unwrap();
            let result = run_current_thread_fifo(priority);
            (result, current_thread_scheduling().unwrap())
        })
        .join()
        .unwrap();
        let error = result.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM));
        assert_eq!(after, Scheduling::Normal, "the thread stays as it was");
        let message = explain_fifo_error(priority, &error);
        for needed in [
            "SCHED_FIFO priority 5",
            "CAP_SYS_NICE",
            "RLIMIT_RTPRIO of at least 5",
        ] {
            assert!(message.contains(needed), "{message}");
        }
    }

    #[test]
    fn other_failures_are_reported_as_they_are() {
        let priority = FifoPriority::new(1).unwrap();
        let error = io::Error::from_raw_os_error(libc::EINVAL);
        let message = explain_fifo_error(priority, &error);
        assert!(message.starts_with("cannot run at SCHED_FIFO priority 1: "));
        assert!(!message.contains("CAP_SYS_NICE"), "{message}");
    }
}
