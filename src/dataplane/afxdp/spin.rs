//! When to spin and when to sleep once both RX rings are empty.
//!
//! Right after frames came, more are usually on their way: sleeping in `poll(2)` then costs a
//! wakeup per burst, and while the worker sleeps the kernel's side (the veth's small ring, the
//! RX ring, the fill ring) fills up and overflows. So for a short window after the last frames a
//! poll asks again a bounded number of times, with busy polling doing the kernel's receive
//! work in the asking thread, and only then sleeps. Once traffic has paused for longer than
//! the window, polls sleep at once and an idle gateway costs nothing.
//!
//! ```text
//!   frames ──▶ frames_seen(t) ── rings empty at now ──▶ now - t < window ? max_rounds : 0
//! ```

use std::time::{Duration, Instant};

/// The spin-then-sleep policy of one worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpinThenSleep {
    window: Duration,
    max_rounds: u32,
    last_frames: Option<Instant>,
}

impl SpinThenSleep {
    /// Spins at most `max_rounds` times per poll, and only within `window` of the last frames.
    pub(crate) fn new(window: Duration, max_rounds: u32) -> SpinThenSleep {
        SpinThenSleep {
            window,
            max_rounds,
            last_frames: None,
        }
    }

    /// Records that a poll received frames at `now`.
    pub(crate) fn frames_seen(&mut self, now: Instant) {
        self.last_frames = Some(now);
    }

    /// How many more times to look for frames before sleeping, with both rings empty at `now`.
    pub(crate) fn rounds(&self, now: Instant) -> u32 {
        match self.last_frames {
            Some(last) if now.saturating_duration_since(last) < self.window => self.max_rounds,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_only_within_the_window_after_frames() {
        let window = Duration::from_micros(200);
        let start = Instant::now();
        let us = |n: u64| start + Duration::from_micros(n);
        // (last frames at, looked at, rounds)
        let cases = [
            (None, 0, 0),
            (None, 1_000, 0),
            (Some(0), 0, 16),
            (Some(0), 199, 16),
            (Some(0), 200, 0),
            (Some(0), 10_000, 0),
            (Some(500), 600, 16),
            // A clock read before the frames were recorded counts as no time passed.
            (Some(500), 400, 16),
        ];
        for (last, now, rounds) in cases {
            let mut policy = SpinThenSleep::new(window, 16);
            if let Some(last) = last {
                policy.frames_seen(us(last));
            }
            assert_eq!(policy.rounds(us(now)), rounds, "last {last:?}, now {now}");
        }
    }

    #[test]
    fn later_frames_move_the_window() {
        let start = Instant::now();
        let mut policy = SpinThenSleep::new(Duration::from_micros(100), 8);
        policy.frames_seen(start);
        let later = start + Duration::from_micros(150);
        assert_eq!(policy.rounds(later), 0);
        policy.frames_seen(later);
        assert_eq!(policy.rounds(later + Duration::from_micros(50)), 8);
    }

    #[test]
    fn no_rounds_means_never_spinning() {
        let now = Instant::now();
        let mut policy = SpinThenSleep::new(Duration::from_secs(1), 0);
        policy.frames_seen(now);
        assert_eq!(policy.rounds(now), 0);
    }
}
