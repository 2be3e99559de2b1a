//! When a burst of directory changes has settled enough to reload.
//!
//! One editor save or one ConfigMap swap is a handful of events within a few milliseconds;
//! they must give one reload. A reload is due once no relevant event came for `quiet`, or
//! `max_delay` after the first event of the burst, whichever is sooner: the second bound keeps
//! a directory that never stops changing from postponing enforcement for ever (SPEC §A5: a
//! change is enforced within 1 s of the write).
//!
//! Pure state over instants passed in, so that the tests drive it with made-up times.

use std::time::{Duration, Instant};

/// How long to wait for a burst to settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebounceConfig {
    /// Reload once no relevant event came for this long.
    pub quiet: Duration,
    /// Reload at the latest this long after the first event of a burst.
    pub max_delay: Duration,
}

impl Default for DebounceConfig {
    /// 100 ms of quiet, at most 400 ms: well inside the 1 s budget with a compile of tens of
    /// thousands of rules after it.
    fn default() -> Self {
        DebounceConfig {
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
        }
    }
}

/// The burst being collected, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    config: DebounceConfig,
    burst: Option<Burst>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Burst {
    first: Instant,
    last: Instant,
}

impl Debounce {
    pub fn new(config: DebounceConfig) -> Debounce {
        Debounce {
            config,
            burst: None,
        }
    }

    /// A relevant event happened at `now`.
    pub fn event(&mut self, now: Instant) {
        match &mut self.burst {
            Some(burst) => burst.last = burst.last.max(now),
            None => {
                self.burst = Some(Burst {
                    first: now,
                    last: now,
                })
            }
        }
    }

    /// When the pending burst is due; `None` when nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.burst
            .map(|b| (b.last + self.config.quiet).min(b.first + self.config.max_delay))
    }

    /// Whether a reload is due at `now`; if so the burst is consumed.
    pub fn take_due(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(deadline) if now >= deadline => {
                self.burst = None;
                true
            }
            _ => false,
        }
    }

    /// Forget the pending burst (a forced reload covers it).
    pub fn clear(&mut self) {
        self.burst = None;
    }

    pub fn is_pending(&self) -> bool {
        self.burst.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: DebounceConfig = DebounceConfig {
        quiet: Duration::from_millis(100),
        max_delay: Duration::from_millis(400),
    };

    /// Feeds events at the given millisecond offsets, polling at every millisecond up to
    /// `until`, and returns the offsets at which a reload was due.
    fn reloads(events: &[u64], until: u64) -> Vec<u64> {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut debounce = Debounce::new(CONFIG);
        let mut fired = Vec::new();
        for ms in 0..=until {
            for _ in events.iter().filter(|&&e| e == ms) {
                debounce.event(at(ms));
            }
            if debounce.take_due(at(ms)) {
                fired.push(ms);
            }
        }
        fired
    }

    #[test]
    fn bursts_give_one_reload_each() {
        let cases: [(&str, &[u64], &[u64]); 6] = [
            ("nothing happens", &[], &[]),
            ("one event", &[0], &[100]),
            (
                "an editor save: several events at once",
                &[5, 5, 5, 6, 7],
                &[107],
            ),
            ("a burst with small gaps", &[0, 50, 90, 150], &[250]),
            ("two bursts apart", &[0, 1, 500, 501], &[101, 601]),
            (
                "events that never settle are cut at max_delay",
                &[0, 60, 120, 180, 240, 300, 360, 420, 480],
                &[400, 580],
            ),
        ];
        for (name, events, expected) in cases {
            assert_eq!(reloads(events, 2000), expected, "{name}");
        }
    }

    #[test]
    fn deadline_is_none_until_an_event_and_after_the_reload() {
        let now = Instant::now();
        let mut debounce = Debounce::new(CONFIG);
        assert_eq!(debounce.deadline(), None);
        assert!(!debounce.take_due(now + Duration::from_secs(10)));
        debounce.event(now);
        assert_eq!(debounce.deadline(), Some(now + CONFIG.quiet));
        assert!(!debounce.take_due(now + Duration::from_millis(99)));
        assert!(debounce.take_due(now + CONFIG.quiet));
        assert_eq!(debounce.deadline(), None);
        assert!(!debounce.is_pending());
    }

    #[test]
    fn clear_drops_the_pending_burst() {
        let now = Instant::now();
        let mut debounce = Debounce::new(CONFIG);
        debounce.event(now);
        debounce.clear();
        assert!(!debounce.take_due(now + Duration::from_secs(1)));
    }
}
