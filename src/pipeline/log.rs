//! The Log action (SPEC §A6): one structured line per frame that reaches a Log rule while
//! policy is evaluated, rate-limited across all workers, with what was suppressed summarised
//! once a second by housekeeping.
//!
//! On the hot path a Log hit costs one shared atomic add (the rate limiter) and, when the
//! line is admitted, formatting into a fixed stack buffer and one write to the sink: nothing
//! allocates. Lines are formatted here and nowhere else ([`format_policy_log`],
//! [`format_suppressed`]); where they go is a [`LogSink`] (stderr unless a test or the
//! runtime supplies another).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::conntrack::Tick;
use crate::dataplane::PortSide;
use crate::snapshot::RuleInfo;

/// Where Log-action lines go. Called from workers: it must not block for long.
pub trait LogSink: Send + Sync + fmt::Debug {
    /// One complete line, without its newline.
    fn write_line(&self, line: &str);
}

/// Writes each line to stderr with one write.
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrSink;

impl LogSink for StderrSink {
    fn write_line(&self, line: &str) {
        let mut buf = LineBuf::new();
        // The line came out of a LineBuf of the same capacity, so the newline may be what
        // is cut; a line is never longer than the buffer either way.
        let _ = buf.write_str(line);
        let _ = buf.write_char('\n');
        // A failed write to stderr has nowhere to be reported; the line is lost.
        let _ = std::io::stderr().lock().write_all(buf.as_str().as_bytes());
    }
}

/// Longest line written; longer ones are cut at a character boundary.
pub const LINE_CAPACITY: usize = 1024;

/// A fixed buffer that `write!` fills without allocating, cutting what does not fit.
pub(crate) struct LineBuf {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
}

impl LineBuf {
    pub(crate) fn new() -> LineBuf {
        LineBuf {
            bytes: [0; LINE_CAPACITY],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole characters are ever copied in (see write_str), so this cannot fail.
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE_CAPACITY - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        if let (Some(dst), Some(src)) = (
            self.bytes.get_mut(self.len..self.len + take),
            s.as_bytes().get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        Ok(())
    }
}

/// What a Log-action line says.
#[derive(Debug, Clone, Copy)]
pub struct PolicyLogRecord<'a> {
    pub generation: u64,
    pub rule: RuleInfo<'a>,
    /// The side whose policy holds the rule: `ingress` or `egress`.
    pub direction: &'static str,
    /// The endpoint that side ran for.
    pub endpoint: Option<&'a str>,
    pub port: PortSide,
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

/// A `-` for what is absent.
struct Opt<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The one format of a Log-action line: `key=value` pairs, `-` for an absent value.
pub fn format_policy_log(out: &mut impl fmt::Write, r: &PolicyLogRecord<'_>) -> fmt::Result {
    write!(
        out,
        "policy-log generation={} tier={} policy={} rule={} direction={} endpoint={} port={} \
         protocol={} src={} src_port={} dst={} dst_port={}",
        r.generation,
        Opt(r.rule.tier),
        Opt(r.rule.policy),
        Opt(r.rule.index),
        r.direction,
        Opt(r.endpoint),
        r.port.name(),
        r.protocol,
        r.src,
        Opt(r.src_port),
        r.dst,
        Opt(r.dst_port),
    )
}

/// The line summarising suppressed Log-action lines.
pub fn format_suppressed(out: &mut impl fmt::Write, suppressed: u64) -> fmt::Result {
    write!(out, "policy-log suppressed={suppressed} reason=rate_limit")
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A per-second budget of lines shared by all workers.
///
/// Accepted race: at the turn of a second, workers racing between the window reset and
/// their own count may let a few lines beyond the limit through, or count a few against
/// the wrong second. The budget never grows without bound, and every line is either
/// written or counted as suppressed.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    /// The second (plus one, so that 0 means none yet) the budget is counted for.
    second: AtomicU64,
    /// Lines admitted or refused in that second.
    used: AtomicU64,
    /// Suppressed since the last summary.
    pending: AtomicU64,
    /// Suppressed ever.
    suppressed_total: AtomicU64,
    /// The second (plus one) of the last summary.
    summarised: AtomicU64,
}

impl LogLimiter {
    /// Whether one more line may be written at `now` under `limit` lines per second.
    pub(crate) fn admit(&self, now: Tick, limit: u32) -> bool {
        let second = now.nanos() / NANOS_PER_SECOND + 1;
        // Relaxed everywhere: these atomics guard no other data; each is only a count.
        let seen = self.second.load(Ordering::Relaxed);
        if second > seen
            && self
                .second
                .compare_exchange(seen, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < u64::from(limit) {
            return true;
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.suppressed_total.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Suppressed lines to summarise, at most once per second.
    pub(crate) fn take_summary(&self, now: Tick) -> Option<u64> {
        let second = now.nanos() / NANOS_PER_SECOND + 1;
        if second <= self.summarised.load(Ordering::Relaxed) {
            return None;
        }
        self.summarised.store(second, Ordering::Relaxed);
        let pending = self.pending.swap(0, Ordering::Relaxed);
        (pending > 0).then_some(pending)
    }

    pub(crate) fn suppressed_total(&self) -> u64 {
        self.suppressed_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{RuleAction, RuleDirection, RuleStage};

    #[test]
    fn line_buffer_cuts_at_a_character_boundary() {
        let mut buf = LineBuf::new();
        let filler = "x".repeat(LINE_CAPACITY - 1);
        buf.write_str(&filler).unwrap();
        buf.write_str("é").unwrap();
        assert_eq!(buf.as_str().len(), LINE_CAPACITY - 1);
        buf.write_str("y").unwrap();
        assert_eq!(buf.as_str().len(), LINE_CAPACITY);
        assert!(buf.as_str().ends_with("xy"));
    }

    #[test]
    fn policy_log_line_names_every_field() {
        let record = PolicyLogRecord {
            generation: 7,
            rule: RuleInfo {
                stage: RuleStage::Normal,
                tier: Some("security"),
                policy: Some("GlobalNetworkPolicy/audit"),
                direction: Some(RuleDirection::Ingress),
                index: Some(2),
                action: RuleAction::Log,
                default: None,
            },
            direction: "ingress",
            endpoint: Some("HostEndpoint/web-1"),
            port: PortSide::Outside,
            protocol: 6,
            src: "2001:db8::1".parse().unwrap(),
            dst: "203.0.113.10".parse().unwrap(),
            src_port: Some(40000),
            dst_port: None,
        };
        let mut buf = LineBuf::new();
        format_policy_log(&mut buf, &record).unwrap();
        assert_eq!(
            buf.as_str(),
            "policy-log generation=7 tier=security policy=GlobalNetworkPolicy/audit rule=2 \
             direction=ingress endpoint=HostEndpoint/web-1 port=outside protocol=6 \
             src=2001:db8::1 src_port=40000 dst=203.0.113.10 dst_port=-"
        );
    }

    #[test]
    fn limiter_admits_the_budget_per_second_and_counts_the_rest() {
        let limiter = LogLimiter::default();
        let t = |ms: u64| Tick::from_nanos(ms * 1_000_000);
        let admitted = (0..5).filter(|_| limiter.admit(t(100), 3)).count();
        assert_eq!(admitted, 3);
        assert_eq!(limiter.take_summary(t(200)), Some(2));
        assert_eq!(limiter.take_summary(t(900)), None, "once per second");
        let admitted = (0..5).filter(|_| limiter.admit(t(1100), 3)).count();
        assert_eq!(admitted, 3, "a new second brings a new budget");
        assert_eq!(limiter.take_summary(t(1200)), Some(2));
        assert_eq!(limiter.take_summary(t(2200)), None, "nothing suppressed");
        assert_eq!(limiter.suppressed_total(), 4);
    }
}
