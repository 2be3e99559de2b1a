//! `/metrics`: a [`Scrape`] in the Prometheus text exposition format, version 0.0.4.
//!
//! Every family has `# HELP` and `# TYPE` lines, counters end in `_total`, label values are
//! escaped (`\\`, `\"`, `\n`), and each family's series are written together in a stable
//! order. Per-rule series are merged by label set, so that two rules that would carry the
//! same labels can never produce a duplicate series (which would make the whole scrape
//! invalid).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::state::{RuleSample, Scrape};
use crate::packet::DropReason;
use crate::snapshot::{DefaultKind, RuleAction, RuleStage};

/// `Content-Type` of the 0.0.4 text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Port of arrival, in `PortSide::index` order, and where such a frame is heading.
const PORTS: [(&str, &str); 2] = [("outside", "inbound"), ("inside", "outbound")];
/// Verdicts in `pipeline::FORWARDED`, `pipeline::DROPPED` order.
const VERDICTS: [&str; 2] = ["forwarded", "dropped"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
}

/// Writes families one after another.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Type, help: &str) {
        let kind = match kind {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write(&mut self.out);
        self.out.push('\n');
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: Type, help: &str, value: impl Value) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

trait Value {
    fn write(self, out: &mut String);
}

impl Value for u64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write(self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// `# HELP` text: backslash and newline escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value: backslash, double quote and newline escaped.
pub fn escape_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn stage_name(stage: RuleStage) -> &'static str {
    match stage {
        RuleStage::Failsafe => "failsafe",
        RuleStage::Untracked => "untracked",
        RuleStage::PreDnat => "pre_dnat",
        RuleStage::Normal => "normal",
        RuleStage::Profile => "profile",
    }
}

pub fn action_name(action: RuleAction) -> &'static str {
    match action {
        RuleAction::Allow => "allow",
        RuleAction::Deny => "deny",
        RuleAction::Pass => "pass",
        RuleAction::Log => "log",
    }
}

pub fn default_name(default: DefaultKind) -> &'static str {
    match default {
        DefaultKind::TierEnd => "tier_end",
        DefaultKind::ProfilesNoMatch => "profiles_no_match",
        DefaultKind::WorkloadAllow => "workload_allow",
        DefaultKind::HostDeny => "host_deny",
        DefaultKind::Failsafe => "failsafe",
        DefaultKind::UnmatchedTraffic => "unmatched_traffic",
    }
}

/// The label values of a rule's series, in [`RULE_LABELS`] order. A default's `policy`,
/// `direction` and `rule` are empty: one default stands for both sides of an endpoint.
pub fn rule_labels(rule: &RuleSample) -> RuleLabelValues {
    [
        stage_name(rule.stage).to_owned(),
        rule.tier.clone().unwrap_or_default(),
        rule.policy.clone().unwrap_or_default(),
        rule.direction
            .map(|d| d.name())
            .unwrap_or_default()
            .to_owned(),
        rule.index.map(|i| i.to_string()).unwrap_or_default(),
        action_name(rule.action).to_owned(),
        rule.default
            .map(default_name)
            .unwrap_or_default()
            .to_owned(),
    ]
}

/// The label names of the per-rule series. `direction` is the policy's rule list
/// (`ingress`, `egress`), unlike the `direction` of the traffic families, which says where a
/// frame is heading (`inbound`, `outbound`).
pub const RULE_LABELS: [&str; 7] = [
    "stage",
    "tier",
    "policy",
    "direction",
    "rule",
    "action",
    "default",
];

/// A rule series' label values, in [`RULE_LABELS`] order.
pub type RuleLabelValues = [String; RULE_LABELS.len()];

/// Per-rule totals merged by label set, in label order.
pub fn merged_rules(rules: &[RuleSample]) -> BTreeMap<RuleLabelValues, (u64, u64)> {
    let mut merged = BTreeMap::new();
    for rule in rules {
        let entry: &mut (u64, u64) = merged.entry(rule_labels(rule)).or_default();
        entry.0 += rule.packets;
        entry.1 += rule.bytes;
    }
    merged
}

/// The whole `/metrics` answer.
pub fn render(scrape: &Scrape) -> String {
    let mut e = Exposition {
        out: String::with_capacity(8192 + scrape.rules.len() * 256),
    };
    traffic(&mut e, scrape);
    drops(&mut e, scrape);
    rules(&mut e, scrape);
    conntrack(&mut e, scrape);
    config(&mut e, scrape);
    process(&mut e, scrape);
    e.out
}

fn traffic(e: &mut Exposition, s: &Scrape) {
    let families: [(&str, &str, &[[u64; 2]; 2]); 2] = [
        (
            "portcullis_packets_total",
            "Frames received, by port of arrival, direction and verdict.",
            &s.packets,
        ),
        (
            "portcullis_bytes_total",
            "Bytes of the frames received, by port of arrival, direction and verdict.",
            &s.bytes,
        ),
    ];
    for (name, help, values) in families {
        e.family(name, Type::Counter, help);
        for (port_index, (port, direction)) in PORTS.iter().enumerate() {
            for (verdict_index, verdict) in VERDICTS.iter().enumerate() {
                let labels = [
                    ("port", *port),
                    ("direction", *direction),
                    ("verdict", *verdict),
                ];
                e.sample(name, &labels, values[port_index][verdict_index]);
            }
        }
    }
}

fn drops(e: &mut Exposition, s: &Scrape) {
    let name = "portcullis_drops_total";
    e.family(
        name,
        Type::Counter,
        "Dropped frames by reason (policy denies under policy, anti-spoofing under spoofed, \
         each kind of malformed frame under its own reason).",
    );
    for reason in DropReason::ALL {
        let count = s.drops.get(reason.index()).copied().unwrap_or(0);
        e.sample(name, &[("reason", reason.name())], count);
    }
}

fn rules(e: &mut Exposition, s: &Scrape) {
    let merged = merged_rules(&s.rules);
    type Pick = fn(&(u64, u64)) -> u64;
    let families: [(&str, &str, Pick); 2] = [
        (
            "portcullis_rule_packets_total",
            "Frames whose verdict a rule (or a default) decided, or that reached a Log rule.",
            |h| h.0,
        ),
        (
            "portcullis_rule_bytes_total",
            "Bytes of the frames counted in portcullis_rule_packets_total.",
            |h| h.1,
        ),
    ];
    for (name, help, pick) in families {
        e.family(name, Type::Counter, help);
        for (values, hits) in &merged {
            let labels: Vec<(&str, &str)> = RULE_LABELS
                .iter()
                .zip(values.iter())
                .map(|(l, v)| (*l, v.as_str()))
                .collect();
            e.sample(name, &labels, pick(hits));
        }
    }
}

fn conntrack(e: &mut Exposition, s: &Scrape) {
    let c = &s.conntrack;
    e.single(
        "portcullis_conntrack_entries",
        Type::Gauge,
        "Connections in the connection table.",
        c.entries,
    );
    e.single(
        "portcullis_conntrack_max_entries",
        Type::Gauge,
        "Capacity of the connection table (conntrackMaxEntries).",
        s.conntrack_max_entries,
    );
    e.single(
        "portcullis_conntrack_inserts_total",
        Type::Counter,
        "Connections added to the connection table.",
        c.inserts,
    );
    e.single(
        "portcullis_conntrack_evictions_total",
        Type::Counter,
        "Never-replied connections removed to make room for new ones.",
        c.evictions,
    );
    e.single(
        "portcullis_conntrack_insert_failures_total",
        Type::Counter,
        "New connections refused because their part of the table was full.",
        c.insert_failures,
    );
    e.single(
        "portcullis_conntrack_expirations_total",
        Type::Counter,
        "Connections removed because they timed out.",
        c.expirations,
    );
}

fn config(e: &mut Exposition, s: &Scrape) {
    let r = &s.reloads;
    e.single(
        "portcullis_policy_generation",
        Type::Gauge,
        "Generation of the policy snapshot in force (0 before the first).",
        s.generation.unwrap_or(0),
    );
    let last_ok = r.last.as_ref().is_some_and(|a| a.successful);
    e.single(
        "portcullis_config_last_reload_successful",
        Type::Gauge,
        "Whether the last load of the configuration directory succeeded (1) or was refused (0).",
        u64::from(last_ok),
    );
    e.single(
        "portcullis_config_last_reload_successful_timestamp_seconds",
        Type::Gauge,
        "Unix time of the last successful load of the configuration directory.",
        r.last_success_at.map_or(0.0, unix_seconds),
    );
    e.single(
        "portcullis_config_last_reload_timestamp_seconds",
        Type::Gauge,
        "Unix time of the last load attempt, successful or not.",
        r.last.as_ref().map_or(0.0, |a| unix_seconds(a.at)),
    );
    e.single(
        "portcullis_config_last_reload_duration_seconds",
        Type::Gauge,
        "How long the last load attempt took: read, validate, compile and publish.",
        r.last.as_ref().map_or(0.0, |a| seconds(a.duration)),
    );
    let name = "portcullis_config_reloads_total";
    e.family(
        name,
        Type::Counter,
        "Loads of the configuration directory by result.",
    );
    e.sample(name, &[("result", "success")], r.successes);
    e.sample(name, &[("result", "failure")], r.failures);
}

/// Only the reasons the backend counts (AF_XDP: fill_ring_empty, rx_ring_full; AF_PACKET:
/// socket_queue_full): a series for any other would claim zeros nobody measured.
fn kernel_drops(e: &mut Exposition, s: &Scrape) {
    let Some(drops) = &s.kernel_drops else {
        return;
    };
    let name = "portcullis_kernel_drops_total";
    e.family(
        name,
        Type::Counter,
        "Frames the kernel dropped on the gateway's sockets before a worker saw them, by port \
         of arrival and reason (fill_ring_empty, rx_ring_full: AF_XDP; socket_queue_full: \
         AF_PACKET; each means the workers did not keep up). Read when a worker's poll finds \
         no frame waiting, and at least every 500 ms under traffic.",
    );
    for (i, (port, _)) in PORTS.iter().enumerate() {
        for (reason, count) in drops[i].counted() {
            e.sample(name, &[("port", *port), ("reason", reason.name())], count);
        }
    }
}

fn process(e: &mut Exposition, s: &Scrape) {
    e.single(
        "portcullis_log_lines_total",
        Type::Counter,
        "Log-action lines written.",
        s.log_lines,
    );
    e.single(
        "portcullis_log_suppressed_total",
        Type::Counter,
        "Log-action lines not written because of logRateLimitPerSecond.",
        s.log_suppressed,
    );
    kernel_drops(e, s);
    let families: [(&str, &str, &[u64; 2]); 2] = [
        (
            "portcullis_backend_tx_failed_total",
            "Frames allowed by policy that the other port could not send, by port of arrival.",
            &s.tx_failed,
        ),
        (
            "portcullis_backend_truncated_total",
            "Frames too long for the backend's buffers, never judged, by port of arrival.",
            &s.truncated,
        ),
    ];
    for (name, help, values) in families {
        e.family(name, Type::Counter, help);
        for (i, (port, _)) in PORTS.iter().enumerate() {
            e.sample(name, &[("port", *port)], values[i]);
        }
    }
    e.single(
        "portcullis_ready",
        Type::Gauge,
        "Whether a valid snapshot is enforced and every worker is alive (as /readiness).",
        u64::from(s.readiness.is_ready()),
    );
    e.single(
        "portcullis_workers",
        Type::Gauge,
        "Worker threads forwarding frames.",
        s.info.workers as u64,
    );
}

#[cfg(test)]
mod tests;
