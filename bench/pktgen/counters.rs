//! What the kernel already counts: an interface's packet and byte counters under
//! `/sys/class/net`, and each CPU's time under `/proc/stat`.
//!
//! The sink reads counters rather than receiving frames: a receiving socket would copy every
//! frame, and that copy would run on the core the middle is measured on. `/sys` shows the
//! network namespace the process's mounts belong to, so run the tool with `ip netns exec`,
//! which mounts the namespace's own.

use std::fs;
use std::io;
use std::path::PathBuf;

/// Counters of one interface at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

impl InterfaceCounters {
    pub fn read(interface: &str) -> io::Result<InterfaceCounters> {
        if interface.is_empty() || interface.contains(['/', '\0']) || interface.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{interface:?} is not an interface name"),
            ));
        }
        let dir = PathBuf::from("/sys/class/net")
            .join(interface)
            .join("statistics");
        let read = |name: &str| -> io::Result<u64> {
            let path = dir.join(name);
            let text = fs::read_to_string(&path).map_err(|error| {
                io::Error::new(error.kind(), format!("{}: {error}", path.display()))
            })?;
            text.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a number: {text:?}", path.display()),
                )
            })
        };
        Ok(InterfaceCounters {
            rx_packets: read("rx_packets")?,
            rx_bytes: read("rx_bytes")?,
            rx_dropped: read("rx_dropped")?,
            tx_packets: read("tx_packets")?,
            tx_dropped: read("tx_dropped")?,
        })
    }

    /// What happened between `earlier` and `self` (counters only grow; a reset reads as 0).
    pub fn since(&self, earlier: &InterfaceCounters) -> InterfaceCounters {
        InterfaceCounters {
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            rx_dropped: self.rx_dropped.saturating_sub(earlier.rx_dropped),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            tx_dropped: self.tx_dropped.saturating_sub(earlier.tx_dropped),
        }
    }
}

/// Busy, softirq and total time of each CPU, in `/proc/stat` ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Per CPU, in CPU order.
    per_cpu: Vec<CpuTicks>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CpuTicks {
    busy: u64,
    softirq: u64,
    total: u64,
}

impl CpuTimes {
    pub fn read() -> io::Result<CpuTimes> {
        Ok(CpuTimes::parse(&fs::read_to_string("/proc/stat")?))
    }

    /// Reads the `cpuN` lines: busy is everything but idle and iowait; softirq is where the
    /// kernel's own forwarding runs, whichever task it interrupted (tick accounting charges a
    /// tick spent in softirq to softirq, not to the task).
    fn parse(text: &str) -> CpuTimes {
        let per_cpu = text
            .lines()
            .filter(|line| {
                line.strip_prefix("cpu")
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .map(|line| {
                let fields: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .map(|field| field.parse().unwrap_or(0))
                    .collect();
                // user nice system idle iowait irq softirq steal (guest time is inside user).
                let total: u64 = fields.iter().take(8).sum();
                let field = |i: usize| fields.get(i).copied().unwrap_or(0);
                CpuTicks {
                    busy: total.saturating_sub(field(3) + field(4)),
                    softirq: field(6),
                    total,
                }
            })
            .collect();
        CpuTimes { per_cpu }
    }

    /// Share of each CPU that was busy between `earlier` and `self`, 0 to 1.
    pub fn busy_since(&self, earlier: &CpuTimes) -> Vec<f64> {
        self.share_since(earlier, |ticks| ticks.busy)
    }

    /// Share of each CPU spent in softirq between `earlier` and `self`, 0 to 1.
    pub fn softirq_since(&self, earlier: &CpuTimes) -> Vec<f64> {
        self.share_since(earlier, |ticks| ticks.softirq)
    }

    fn share_since(&self, earlier: &CpuTimes, part: impl Fn(&CpuTicks) -> u64) -> Vec<f64> {
        self.per_cpu
            .iter()
            .zip(&earlier.per_cpu)
            .map(|(now, before)| {
                let total = now.total.saturating_sub(before.total);
                if total == 0 {
                    0.0
                } else {
                    part(now).saturating_sub(part(before)) as f64 / total as f64
                }
            })
            .collect()
    }
}

/// User plus system time of process `pid` (`/proc/PID/stat`), in ticks of `USER_HZ`, not
/// counting softirq ticks that landed while it ran.
pub fn process_ticks(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path)?;
    parse_process_ticks(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected format"),
        )
    })
}

/// utime and stime are fields 14 and 15; the command name (field 2) may hold spaces and
/// parentheses, so counting starts after its last `)`.
fn parse_process_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `USER_HZ`: the unit of `/proc/PID/stat` times, 100 on every Linux architecture ABI.
pub const USER_HZ: f64 = 100.0;

/// Nanoseconds this process has run on a CPU (`/proc/self/schedstat`), when the kernel says.
pub fn own_cpu_nanoseconds() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  30 0 20 100 0 0 10 0 0 0\n\
                        cpu0 10 0 10 80 0 0 0 0 0 0\n\
                        cpu1 20 0 10 20 0 0 10 0 0 0\n\
                        intr 12345\n";
    const STAT_LATER: &str = "cpu  0\n\
                              cpu0 15 0 15 170 0 0 0 0 0 0\n\
                              cpu1 20 0 10 20 5 0 110 0 0 0\n";

    #[test]
    fn busy_share_counts_softirq_and_not_idle_or_iowait() {
        let before = CpuTimes::parse(STAT);
        let after = CpuTimes::parse(STAT_LATER);
        let busy = after.busy_since(&before);
        assert_eq!(busy.len(), 2);
        assert!((busy[0] - 10.0 / 100.0).abs() < 1e-9, "{busy:?}");
        assert!((busy[1] - 100.0 / 105.0).abs() < 1e-9, "{busy:?}");
    }

    #[test]
    fn softirq_share_is_read_per_cpu() {
        let before = CpuTimes::parse(STAT);
        let after = CpuTimes::parse(STAT_LATER);
        let softirq = after.softirq_since(&before);
        assert!((softirq[0] - 0.0).abs() < 1e-9, "{softirq:?}");
        assert!((softirq[1] - 100.0 / 105.0).abs() < 1e-9, "{softirq:?}");
    }

    #[test]
    fn process_times_are_found_after_odd_command_names() {
        let cases = [
            ("1234 (forward) S 1 2 3 4 5 6 7 8 9 10 25 17 0 0", Some(42)),
            ("1234 (a b) c)) R 1 2 3 4 5 6 7 8 9 10 1 2 0 0", Some(3)),
            ("1234 (short) S 1 2", None),
            ("no parenthesis", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_process_ticks(text), expected, "{text}");
        }
        assert!(process_ticks(std::process::id()).is_ok());
    }

    #[test]
    fn no_time_passed_reads_as_idle() {
        let stat = CpuTimes::parse(STAT);
        assert_eq!(stat.busy_since(&stat), vec![0.0, 0.0]);
    }

    #[test]
    fn counter_deltas_never_go_negative() {
        let earlier = InterfaceCounters {
            rx_packets: 10,
            rx_bytes: 640,
            ..InterfaceCounters::default()
        };
        let later = InterfaceCounters {
            rx_packets: 25,
            rx_bytes: 100,
            ..InterfaceCounters::default()
        };
        let delta = later.since(&earlier);
        assert_eq!((delta.rx_packets, delta.rx_bytes), (15, 0));
    }

    #[test]
    fn odd_interface_names_are_refused() {
        for name in ["", "../x", "a/b", ".", ".."] {
            assert!(InterfaceCounters::read(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn loopback_counters_are_readable() {
        assert!(InterfaceCounters::read("lo").is_ok());
    }
}
