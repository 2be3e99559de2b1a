//! `/status`: the gateway's state as JSON, and the human summary `portcullis status` prints
//! from it. Both sides use the one [`Status`] type, so the reader always understands what
//! the server wrote.

use std::fmt::Write;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::metrics::merged_rules;
use super::state::{RuleSample, Scrape};
use crate::dataplane::{KernelDropReason, KernelDrops};
use crate::packet::DropReason;
use crate::pipeline::{DROPPED, FORWARDED};

/// How many rules `/status` lists, most packets first.
pub const TOP_RULES: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub ready: bool,
    pub readiness: String,
    pub uptime_seconds: Option<f64>,
    pub config_dir: String,
    /// Generation of the snapshot in force; `None` before the first.
    pub generation: Option<u64>,
    pub last_reload: Option<LastReload>,
    pub reloads: ReloadCounts,
    pub ports: Ports,
    pub traffic: Vec<PortTraffic>,
    /// Drop reasons that happened, by name.
    pub drops: Vec<NamedCount>,
    pub conntrack: Conntrack,
    /// Frames the kernel dropped before a worker saw them, by port; `None` before a worker
    /// reported, or from an older gateway that did not count them (afpacket).
    #[serde(default)]
    pub kernel_drops: Option<Vec<PortKernelDrops>>,
    pub log_suppressed: u64,
    pub top_rules: Vec<RuleHits>,
}

/// One port's kernel drops by reason: only the reasons the backend counts are present
/// (afxdp: `fill_ring_empty`, `rx_ring_full`; afpacket: `socket_queue_full`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortKernelDrops {
    pub port: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_ring_empty: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_ring_full: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_queue_full: Option<u64>,
}

impl PortKernelDrops {
    fn new(port: &str, drops: &KernelDrops) -> PortKernelDrops {
        PortKernelDrops {
            port: port.to_owned(),
            fill_ring_empty: drops.fill_ring_empty,
            rx_ring_full: drops.rx_ring_full,
            socket_queue_full: drops.socket_queue_full,
        }
    }

    fn get(&self, reason: KernelDropReason) -> Option<u64> {
        match reason {
            KernelDropReason::FillRingEmpty => self.fill_ring_empty,
            KernelDropReason::RxRingFull => self.rx_ring_full,
            KernelDropReason::SocketQueueFull => self.socket_queue_full,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastReload {
    pub successful: bool,
    pub trigger: String,
    /// Unix time, seconds.
    pub at: f64,
    pub duration_ms: f64,
    pub generation: u64,
    pub problems: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadCounts {
    pub successes: u64,
    pub failures: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub outside: String,
    pub inside: String,
    pub backend: String,
    pub mode: String,
    pub workers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortTraffic {
    pub port: String,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCount {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conntrack {
    pub entries: u64,
    pub max_entries: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub insert_failures: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHits {
    pub stage: String,
    pub tier: String,
    pub policy: String,
    /// `ingress` or `egress`; empty for a default. Absent from an older gateway's answer.
    #[serde(default)]
    pub direction: String,
    pub rule: String,
    pub action: String,
    pub default: String,
    pub packets: u64,
    pub bytes: u64,
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Status {
    /// The status of a gateway as scraped at `now`.
    pub fn from_scrape(s: &Scrape, now: SystemTime) -> Status {
        let info = &s.info;
        let traffic = ["outside", "inside"]
            .iter()
            .enumerate()
            .map(|(i, port)| PortTraffic {
                port: (*port).to_owned(),
                forwarded_packets: s.packets[i][FORWARDED],
                forwarded_bytes: s.bytes[i][FORWARDED],
                dropped_packets: s.packets[i][DROPPED],
                dropped_bytes: s.bytes[i][DROPPED],
            })
            .collect();
        let drops = DropReason::ALL
            .iter()
            .filter_map(|r| {
                let count = s.drops.get(r.index()).copied().unwrap_or(0);
                (count > 0).then(|| NamedCount {
                    name: r.name().to_owned(),
                    count,
                })
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ready: s.readiness.is_ready(),
            readiness: s.readiness.reason().to_owned(),
            uptime_seconds: info
                .started_at
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs_f64()),
            config_dir: info.config_dir.clone(),
            generation: s.generation,
            last_reload: s.reloads.last.as_ref().map(|a| LastReload {
                successful: a.successful,
                trigger: a.trigger.clone(),
                at: unix_seconds(a.at),
                duration_ms: a.duration.as_secs_f64() * 1000.0,
                generation: a.generation,
                problems: a.problems,
            }),
            reloads: ReloadCounts {
                successes: s.reloads.successes,
                failures: s.reloads.failures,
            },
            ports: Ports {
                outside: info.outside.clone(),
                inside: info.inside.clone(),
                backend: info.backend.clone(),
                mode: info.mode.clone(),
                workers: info.workers,
            },
            traffic,
            drops,
            conntrack: Conntrack {
                entries: s.conntrack.entries,
                max_entries: s.conntrack_max_entries,
                inserts: s.conntrack.inserts,
                evictions: s.conntrack.evictions,
                insert_failures: s.conntrack.insert_failures,
            },
            kernel_drops: s.kernel_drops.map(|drops| {
                ["outside", "inside"]
                    .iter()
                    .zip(&drops)
                    .map(|(port, d)| PortKernelDrops::new(port, d))
                    .collect()
            }),
            log_suppressed: s.log_suppressed,
            top_rules: top_rules(&s.rules, TOP_RULES),
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail; an empty object
        // would still be valid JSON if it somehow did.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The summary `portcullis status` prints; `now` is the reader's clock.
    pub fn summary(&self, now: SystemTime) -> String {
        let mut out = String::new();
        let generation = self
            .generation
            .map_or_else(|| "none yet".to_owned(), |g| g.to_string());
        let _ = writeln!(
            out,
            "portcullis {}: {} ({})",
            self.version,
            if self.ready { "ready" } else { "NOT READY" },
            self.readiness
        );
        if let Some(up) = self.uptime_seconds {
            let _ = writeln!(out, "  uptime          {}", human_duration(up));
        }
        let _ = writeln!(
            out,
            "  policy          {} generation {generation}",
            self.config_dir
        );
        match &self.last_reload {
            Some(r) => {
                let ago = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64() - r.at)
                    .unwrap_or(0.0)
                    .max(0.0);
                let result = if r.successful {
                    format!("ok, generation {}", r.generation)
                } else {
                    format!(
                        "FAILED with {} problem(s), generation {} kept",
                        r.problems, r.generation
                    )
                };
                let _ = writeln!(
                    out,
                    "  last reload     {result} ({}, {} ago, took {:.1} ms)",
                    r.trigger,
                    human_duration(ago),
                    r.duration_ms
                );
            }
            None => {
                let _ = writeln!(out, "  last reload     none");
            }
        }
        let _ = writeln!(
            out,
            "  reloads         {} ok, {} failed",
            self.reloads.successes, self.reloads.failures
        );
        let p = &self.ports;
        let _ = writeln!(
            out,
            "  ports           outside {}, inside {}; backend {} ({}), {} worker(s)",
            p.outside, p.inside, p.backend, p.mode, p.workers
        );
        for t in &self.traffic {
            let _ = writeln!(
                out,
                "  {:<15} forwarded {} packets ({} bytes), dropped {} packets ({} bytes)",
                format!("from {}", t.port),
                t.forwarded_packets,
                t.forwarded_bytes,
                t.dropped_packets,
                t.dropped_bytes
            );
        }
        let drops = if self.drops.is_empty() {
            "none".to_owned()
        } else {
            self.drops
                .iter()
                .map(|d| format!("{} {}", d.name, d.count))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "  drops           {drops}");
        let c = &self.conntrack;
        let use_percent = if c.max_entries > 0 {
            c.entries as f64 * 100.0 / c.max_entries as f64
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "  conntrack       {} of {} entries ({use_percent:.1}%), {} inserts, {} evictions, {} \
             insert failures",
            c.entries, c.max_entries, c.inserts, c.evictions, c.insert_failures
        );
        let _ = writeln!(out, "  kernel drops    {}", self.kernel_drops_text());
        if self.log_suppressed > 0 {
            let _ = writeln!(out, "  log lines suppressed {}", self.log_suppressed);
        }
        if self.top_rules.is_empty() {
            let _ = writeln!(out, "  top rules       none hit yet");
        } else {
            let _ = writeln!(out, "  top rules by packets:");
            for r in &self.top_rules {
                let _ = writeln!(
                    out,
                    "    {:>12} pkts {:>14} bytes  {}",
                    r.packets,
                    r.bytes,
                    rule_text(r)
                );
            }
        }
        out
    }
}

impl Status {
    /// `outside 0 fill ring empty, 0 RX ring full; inside ...` (the reasons the backend
    /// counts), or why there is nothing.
    fn kernel_drops_text(&self) -> String {
        match &self.kernel_drops {
            Some(ports) => ports
                .iter()
                .map(|p| {
                    let reasons: Vec<String> = KernelDropReason::ALL
                        .into_iter()
                        .filter_map(|r| p.get(r).map(|n| format!("{n} {}", r.description())))
                        .collect();
                    format!("{} {}", p.port, reasons.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; "),
            None if self.ports.backend.is_empty() => "none yet".to_owned(),
            None => format!("not counted by the {} backend", self.ports.backend),
        }
    }
}

/// `tier default, GlobalNetworkPolicy/x ingress rule 2 (allow, normal)` or
/// `tier t, default tier_end (deny, normal)`.
fn rule_text(r: &RuleHits) -> String {
    let mut text = String::new();
    if !r.tier.is_empty() {
        let _ = write!(text, "tier {}, ", r.tier);
    }
    if r.policy.is_empty() {
        let _ = write!(text, "default {}", r.default);
    } else {
        let _ = write!(text, "{}", r.policy);
        match (r.direction.is_empty(), r.rule.is_empty()) {
            (_, true) => {}
            (true, false) => {
                let _ = write!(text, " rule {}", r.rule);
            }
            (false, false) => {
                let _ = write!(text, " {} rule {}", r.direction, r.rule);
            }
        }
    }
    let _ = write!(text, " ({}, {})", r.action, r.stage);
    text
}

/// The `n` rules with the most packets (ties: label order), merged by label set as in
/// `/metrics`.
fn top_rules(rules: &[RuleSample], n: usize) -> Vec<RuleHits> {
    let mut list: Vec<RuleHits> = merged_rules(rules)
        .into_iter()
        .filter(|(_, (packets, _))| *packets > 0)
        .map(
            |([stage, tier, policy, direction, rule, action, default], (packets, bytes))| {
                RuleHits {
                    stage,
                    tier,
                    policy,
                    direction,
                    rule,
                    action,
                    default,
                    packets,
                    bytes,
                }
            },
        )
        .collect();
    // Stable: equal counts keep label order.
    list.sort_by_key(|r| std::cmp::Reverse(r.packets));
    list.truncate(n);
    list
}

fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests;
