use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::*;
use crate::admin::state::{GatewayInfo, Readiness, ReloadAttempt, ReloadRecord};
use crate::conntrack::ConntrackStats;
use crate::dataplane::KernelDrops;
use crate::snapshot::RuleDirection;

fn rule(
    tier: Option<&str>,
    policy: Option<&str>,
    index: Option<u32>,
    action: RuleAction,
    default: Option<DefaultKind>,
    packets: u64,
    bytes: u64,
) -> RuleSample {
    RuleSample {
        stage: RuleStage::Normal,
        tier: tier.map(str::to_owned),
        policy: policy.map(str::to_owned),
        // The ingress list unless a test says otherwise; a default has none.
        direction: policy.map(|_| RuleDirection::Ingress),
        index,
        action,
        default,
        packets,
        bytes,
    }
}

fn known() -> Scrape {
    let mut s = Scrape::empty(GatewayInfo {
        workers: 2,
        ..GatewayInfo::default()
    });
    s.readiness = Readiness {
        snapshot_enforced: true,
        workers_alive: true,
    };
    s.packets = [[10, 3], [7, 0]];
    s.bytes = [[1000, 180], [700, 0]];
    s.drops[DropReason::Policy.index()] = 2;
    s.drops[DropReason::TruncatedTcp.index()] = 1;
    s.rules = vec![
        rule(
            Some("default"),
            Some("GlobalNetworkPolicy/allow-web"),
            Some(0),
            RuleAction::Allow,
            None,
            4,
            400,
        ),
        rule(
            Some("default"),
            Some("NetworkPolicy/prod/say \"hi\"\\now"),
            Some(1),
            RuleAction::Deny,
            None,
            2,
            120,
        ),
        rule(
            Some("default"),
            None,
            None,
            RuleAction::Deny,
            Some(DefaultKind::TierEnd),
            1,
            60,
        ),
        // Same labels as the first: merged into one series.
        rule(
            Some("default"),
            Some("GlobalNetworkPolicy/allow-web"),
            Some(0),
            RuleAction::Allow,
            None,
            1,
            100,
        ),
    ];
    s.conntrack = ConntrackStats {
        entries: 5,
        inserts: 9,
        evictions: 1,
        insert_failures: 2,
        expirations: 3,
        ..ConntrackStats::default()
    };
    s.conntrack_max_entries = 262_144;
    s.generation = Some(3);
    s.reloads = ReloadRecord {
        successes: 3,
        failures: 1,
        last: Some(ReloadAttempt {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_100_500),
            successful: false,
            trigger: "files".to_owned(),
            generation: 3,
            duration: Duration::from_millis(12),
            problems: 2,
        }),
        last_success_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
    };
    s.log_lines = 4;
    s.log_suppressed = 6;
    s.tx_failed = [0, 1];
    s
}

/// The lines of one family: its HELP and TYPE lines and its samples.
fn family(text: &str, name: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            inside = rest.split(' ').next() == Some(name);
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn traffic_families_exactly() {
    let text = render(&known());
    assert_eq!(
        family(&text, "portcullis_packets_total"),
        "# HELP portcullis_packets_total Frames received, by port of arrival, direction and verdict.
# TYPE portcullis_packets_total counter
portcullis_packets_total{port=\"outside\",direction=\"inbound\",verdict=\"forwarded\"} 10
portcullis_packets_total{port=\"outside\",direction=\"inbound\",verdict=\"dropped\"} 3
portcullis_packets_total{port=\"inside\",direction=\"outbound\",verdict=\"forwarded\"} 7
portcullis_packets_total{port=\"inside\",direction=\"outbound\",verdict=\"dropped\"} 0
"
    );
    assert!(
        text.contains(
            "portcullis_bytes_total{port=\"outside\",direction=\"inbound\",verdict=\"dropped\"} 180\n"
        ),
        "{text}"
    );
}

#[test]
fn every_drop_reason_has_a_series() {
    let text = render(&known());
    let drops = family(&text, "portcullis_drops_total");
    let samples: Vec<&str> = drops.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(samples.len(), DropReason::COUNT);
    assert!(
        drops.contains("\nportcullis_drops_total{reason=\"policy\"} 2\n"),
        "{drops}"
    );
    assert!(
        drops.contains("\nportcullis_drops_total{reason=\"truncated_tcp\"} 1\n"),
        "{drops}"
    );
    assert!(
        drops.contains("\nportcullis_drops_total{reason=\"spoofed\"} 0\n"),
        "{drops}"
    );
}

#[test]
fn rule_families_exactly_with_escaping_and_merging() {
    let text = render(&known());
    assert_eq!(
        family(&text, "portcullis_rule_packets_total"),
        "# HELP portcullis_rule_packets_total Frames whose verdict a rule (or a default) decided, or that reached a Log rule.
# TYPE portcullis_rule_packets_total counter
portcullis_rule_packets_total{stage=\"normal\",tier=\"default\",policy=\"\",direction=\"\",rule=\"\",action=\"deny\",default=\"tier_end\"} 1
portcullis_rule_packets_total{stage=\"normal\",tier=\"default\",policy=\"GlobalNetworkPolicy/allow-web\",direction=\"ingress\",rule=\"0\",action=\"allow\",default=\"\"} 5
portcullis_rule_packets_total{stage=\"normal\",tier=\"default\",policy=\"NetworkPolicy/prod/say \\\"hi\\\"\\\\now\",direction=\"ingress\",rule=\"1\",action=\"deny\",default=\"\"} 2
"
    );
    assert!(text.contains(
        "portcullis_rule_bytes_total{stage=\"normal\",tier=\"default\",policy=\"GlobalNetworkPolicy/allow-web\",direction=\"ingress\",rule=\"0\",action=\"allow\",default=\"\"} 500\n"
    ), "{text}");
}

#[test]
fn ingress_and_egress_rules_of_one_index_are_separate_series() {
    let mut s = Scrape::empty(GatewayInfo::default());
    let allow = |direction, packets| RuleSample {
        direction: Some(direction),
        ..rule(
            Some("default"),
            Some("GlobalNetworkPolicy/both"),
            Some(0),
            RuleAction::Allow,
            None,
            packets,
            packets * 100,
        )
    };
    s.rules = vec![
        allow(RuleDirection::Ingress, 3),
        allow(RuleDirection::Egress, 4),
        // A second worker's (or generation's) share of the ingress rule: merged with it.
        allow(RuleDirection::Ingress, 2),
    ];
    let text = render(&s);
    let labels = |direction: &str| {
        format!(
            "{{stage=\"normal\",tier=\"default\",policy=\"GlobalNetworkPolicy/both\",\
             direction=\"{direction}\",rule=\"0\",action=\"allow\",default=\"\"}}"
        )
    };
    assert_eq!(
        family(&text, "portcullis_rule_packets_total")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        [
            format!("portcullis_rule_packets_total{} 4", labels("egress")),
            format!("portcullis_rule_packets_total{} 5", labels("ingress")),
        ]
    );
    assert!(
        text.contains(&format!(
            "portcullis_rule_bytes_total{} 400\n",
            labels("egress")
        )),
        "{text}"
    );
    check_exposition(&text);
}

#[test]
fn kernel_drops_exactly_and_only_where_counted() {
    let mut s = known();
    assert!(
        !render(&s).contains("portcullis_kernel_drops_total"),
        "a backend that does not count them shows no family"
    );
    // (what the backend counted, by port; the samples expected)
    let cases: [([KernelDrops; 2], &[&str]); 2] = [
        (
            // AF_XDP; too long is in the truncated family, not here.
            [KernelDrops::afxdp(5, 3, 0), KernelDrops::afxdp(0, 0, 12)],
            &[
                "portcullis_kernel_drops_total{port=\"outside\",reason=\"fill_ring_empty\"} 3",
                "portcullis_kernel_drops_total{port=\"outside\",reason=\"rx_ring_full\"} 0",
                "portcullis_kernel_drops_total{port=\"inside\",reason=\"fill_ring_empty\"} 0",
                "portcullis_kernel_drops_total{port=\"inside\",reason=\"rx_ring_full\"} 12",
            ],
        ),
        (
            [KernelDrops::afpacket(41), KernelDrops::afpacket(0)],
            &[
                "portcullis_kernel_drops_total{port=\"outside\",reason=\"socket_queue_full\"} 41",
                "portcullis_kernel_drops_total{port=\"inside\",reason=\"socket_queue_full\"} 0",
            ],
        ),
    ];
    for (drops, expected) in cases {
        s.kernel_drops = Some(drops);
        let text = render(&s);
        let block = family(&text, "portcullis_kernel_drops_total");
        let samples: Vec<&str> = block
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>();
        assert_eq!(samples, expected);
        assert!(
            text.contains("# TYPE portcullis_kernel_drops_total counter\n"),
            "{text}"
        );
        check_exposition(&text);
    }
}

#[test]
fn config_and_conntrack_families_exactly() {
    let text = render(&known());
    let expected = [
        ("portcullis_policy_generation", "gauge", "", "3"),
        ("portcullis_config_last_reload_successful", "gauge", "", "0"),
        (
            "portcullis_config_last_reload_successful_timestamp_seconds",
            "gauge",
            "",
            "1700000000",
        ),
        (
            "portcullis_config_last_reload_timestamp_seconds",
            "gauge",
            "",
            "1700000100.5",
        ),
        (
            "portcullis_config_last_reload_duration_seconds",
            "gauge",
            "",
            "0.012",
        ),
        ("portcullis_conntrack_entries", "gauge", "", "5"),
        ("portcullis_conntrack_max_entries", "gauge", "", "262144"),
        ("portcullis_conntrack_inserts_total", "counter", "", "9"),
        ("portcullis_conntrack_evictions_total", "counter", "", "1"),
        (
            "portcullis_conntrack_insert_failures_total",
            "counter",
            "",
            "2",
        ),
        ("portcullis_log_suppressed_total", "counter", "", "6"),
        ("portcullis_ready", "gauge", "", "1"),
    ];
    for (name, kind, labels, value) in expected {
        let block = family(&text, name);
        assert!(
            block.contains(&format!("\n# TYPE {name} {kind}\n{name}{labels} {value}\n")),
            "{name}: {block}"
        );
    }
    let reloads = family(&text, "portcullis_config_reloads_total");
    assert!(reloads.ends_with(
        "portcullis_config_reloads_total{result=\"success\"} 3\nportcullis_config_reloads_total{result=\"failure\"} 1\n"
    ), "{reloads}");
}

#[test]
fn before_the_first_snapshot_everything_reads_zero() {
    let text = render(&Scrape::empty(GatewayInfo::default()));
    for line in [
        "portcullis_policy_generation 0\n",
        "portcullis_config_last_reload_successful 0\n",
        "portcullis_ready 0\n",
    ] {
        assert!(text.contains(line), "{line}");
    }
}

/// Checks the exposition rules a scraper relies on: every sample's family has HELP and TYPE
/// first, families are not split, series are unique, values parse.
fn check_exposition(text: &str) {
    let mut declared = BTreeSet::new();
    let mut current = String::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(
                declared.insert(name.clone()),
                "family {name} declared twice"
            );
            current = name;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            assert_eq!(parts.next(), Some(current.as_str()), "{line}");
            let kind = parts.next().unwrap();
            assert!(kind == "counter" || kind == "gauge", "{line}");
            if kind == "counter" {
                assert!(
                    current.ends_with("_total"),
                    "counter without _total: {current}"
                );
            }
        } else {
            let name_end = line.find(['{', ' ']).unwrap();
            assert_eq!(
                &line[..name_end],
                current,
                "sample outside its family: {line}"
            );
            let (key, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(series.insert(key.to_owned()), "duplicate series {key}");
        }
    }
}

#[test]
fn the_exposition_is_well_formed() {
    check_exposition(&render(&known()));
    check_exposition(&render(&Scrape::empty(GatewayInfo::default())));
}

#[test]
fn label_values_and_help_are_escaped() {
    let cases = [
        ("plain", "plain"),
        ("a\"b", "a\\\"b"),
        ("a\\b", "a\\\\b"),
        ("a\nb", "a\\nb"),
        ("ünï", "ünï"),
    ];
    for (raw, escaped) in cases {
        assert_eq!(escape_label(raw), escaped, "{raw:?}");
    }
    assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
}

#[test]
fn float_values_use_prometheus_spellings() {
    let cases = [
        (0.5, "0.5"),
        (1.0, "1"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
    ];
    for (value, text) in cases {
        let mut out = String::new();
        value.write(&mut out);
        assert_eq!(out, text);
    }
}
