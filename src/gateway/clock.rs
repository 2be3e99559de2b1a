//! The packet path's clock: a monotonic [`Tick`] in nanoseconds, read once per batch by each
//! worker and every few milliseconds by housekeeping. Only differences between ticks matter;
//! they count from the first reading in the process, so one clock serves every thread.

use std::sync::OnceLock;
use std::time::Instant;

use crate::conntrack::Tick;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Now, as a tick. `Instant` is `CLOCK_MONOTONIC`, read through the vDSO: no system call.
pub fn clock_now() -> Tick {
    let epoch = *EPOCH.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years of uptime; saturate rather than wrap past that.
    let nanos = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    Tick::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_never_go_back() {
        let mut last = clock_now();
        for _ in 0..1000 {
            let now = clock_now();
            assert!(now >= last);
            last = now;
        }
    }
}
