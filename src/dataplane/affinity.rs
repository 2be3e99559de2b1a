//! Pinning a worker thread to one CPU core (`sched_setaffinity`), so that its caches, and the
//! queue interrupts steered to that core, stay warm.
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
}
