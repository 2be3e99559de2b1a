use std::time::Duration;

use super::*;
use crate::admin::state::{GatewayInfo, Readiness, ReloadAttempt};
use crate::conntrack::ConntrackStats;
use crate::dataplane::KernelDrops;
use crate::snapshot::{DefaultKind, RuleAction, RuleDirection, RuleStage};

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn sample(policy: Option<&str>, index: Option<u32>, packets: u64) -> RuleSample {
    RuleSample {
        stage: RuleStage::Normal,
        tier: Some("default".to_owned()),
        policy: policy.map(str::to_owned),
        direction: policy.map(|_| RuleDirection::Ingress),
        index,
        action: if policy.is_some() {
            RuleAction::Allow
        } else {
            RuleAction::Deny
        },
        default: policy.is_none().then_some(DefaultKind::TierEnd),
        packets,
        bytes: packets * 100,
    }
}

fn scrape() -> Scrape {
    let mut s = Scrape::empty(GatewayInfo {
        config_dir: "/etc/portcullis".to_owned(),
        outside: "eth0".to_owned(),
        inside: "eth1".to_owned(),
        backend: "afxdp".to_owned(),
        mode: "native, zero-copy".to_owned(),
        workers: 2,
        started_at: Some(at(T0)),
    });
    s.readiness = Readiness {
        snapshot_enforced: true,
        workers_alive: true,
    };
    s.packets = [[10, 3], [7, 0]];
    s.bytes = [[1000, 180], [700, 0]];
    s.drops[DropReason::Policy.index()] = 3;
    s.conntrack = ConntrackStats {
        entries: 512,
        inserts: 900,
        evictions: 1,
        insert_failures: 0,
        ..ConntrackStats::default()
    };
    s.conntrack_max_entries = 2048;
    s.kernel_drops = Some([KernelDrops::afxdp(0, 2, 0), KernelDrops::afxdp(0, 0, 7)]);
    s.generation = Some(4);
    s.reloads.record(ReloadAttempt {
        at: at(T0 + 50),
        successful: true,
        trigger: "files".to_owned(),
        generation: 4,
        duration: Duration::from_micros(12_340),
        problems: 0,
    });
    s.rules = vec![
        sample(Some("GlobalNetworkPolicy/a"), Some(0), 5),
        sample(None, None, 3),
        sample(Some("GlobalNetworkPolicy/b"), Some(2), 9),
        sample(Some("GlobalNetworkPolicy/never"), Some(1), 0),
    ];
    s
}

#[test]
fn the_summary_reads_well() {
    let status = Status::from_scrape(&scrape(), at(T0 + 3725));
    let summary = status.summary(at(T0 + 110));
    let expected = format!(
        "portcullis {}: ready (ready)
  uptime          1h02m
  policy          /etc/portcullis generation 4
  last reload     ok, generation 4 (files, 1m00s ago, took 12.3 ms)
  reloads         1 ok, 0 failed
  ports           outside eth0, inside eth1; backend afxdp (native, zero-copy), 2 worker(s)
  from outside    forwarded 10 packets (1000 bytes), dropped 3 packets (180 bytes)
  from inside     forwarded 7 packets (700 bytes), dropped 0 packets (0 bytes)
  drops           policy 3
  conntrack       512 of 2048 entries (25.0%), 900 inserts, 1 evictions, 0 insert failures
  kernel drops    outside 2 fill ring empty, 0 RX ring full; inside 0 fill ring empty, 7 RX ring full
  top rules by packets:
               9 pkts            900 bytes  tier default, GlobalNetworkPolicy/b ingress rule 2 (allow, normal)
               5 pkts            500 bytes  tier default, GlobalNetworkPolicy/a ingress rule 0 (allow, normal)
               3 pkts            300 bytes  tier default, default tier_end (deny, normal)
",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(summary, expected);
}

#[test]
fn a_failed_reload_and_no_snapshot_say_so() {
    let mut s = Scrape::empty(GatewayInfo::default());
    s.reloads.record(ReloadAttempt {
        at: at(T0),
        successful: false,
        trigger: "SIGHUP".to_owned(),
        generation: 0,
        duration: Duration::from_millis(2),
        problems: 2,
    });
    let summary = Status::from_scrape(&s, at(T0)).summary(at(T0 + 5));
    for line in [
        "NOT READY (not ready: no valid policy snapshot enforced yet)",
        "generation none yet",
        "last reload     FAILED with 2 problem(s), generation 0 kept (SIGHUP, 5s ago",
        "top rules       none hit yet",
        "kernel drops    none yet",
    ] {
        assert!(summary.contains(line), "{line}\n{summary}");
    }
}

#[test]
fn json_round_trips() {
    let status = Status::from_scrape(&scrape(), at(T0 + 10));
    let json = status.to_json();
    let back: Status = serde_json::from_str(&json).unwrap();
    assert_eq!(back, status);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["generation"], 4);
    assert_eq!(value["top_rules"][0]["policy"], "GlobalNetworkPolicy/b");
    assert_eq!(value["top_rules"][0]["direction"], "ingress");
    assert_eq!(value["top_rules"][2]["direction"], "", "a default has none");
    assert_eq!(value["top_rules"].as_array().unwrap().len(), 3);
    assert_eq!(value["kernel_drops"][1]["port"], "inside");
    assert_eq!(value["kernel_drops"][1]["rx_ring_full"], 7);
    assert!(
        value["kernel_drops"][1].get("socket_queue_full").is_none(),
        "afxdp does not count socket queue drops: {value}"
    );
}

#[test]
fn ingress_and_egress_rule_0_of_one_policy_are_listed_apart() {
    let mut ingress = sample(Some("GlobalNetworkPolicy/both"), Some(0), 3);
    let mut egress = ingress.clone();
    ingress.direction = Some(RuleDirection::Ingress);
    egress.direction = Some(RuleDirection::Egress);
    egress.packets = 4;
    let top = top_rules(&[ingress, egress], TOP_RULES);
    let listed: Vec<(String, u64)> = top.iter().map(|r| (rule_text(r), r.packets)).collect();
    assert_eq!(
        listed,
        [
            (
                "tier default, GlobalNetworkPolicy/both egress rule 0 (allow, normal)".to_owned(),
                4
            ),
            (
                "tier default, GlobalNetworkPolicy/both ingress rule 0 (allow, normal)".to_owned(),
                3
            ),
        ]
    );
}

#[test]
fn an_afpacket_gateway_shows_its_socket_queue_drops_only() {
    let mut s = scrape();
    s.info.backend = "afpacket".to_owned();
    s.kernel_drops = Some([KernelDrops::afpacket(1500), KernelDrops::afpacket(3)]);
    let status = Status::from_scrape(&s, at(T0 + 10));
    let json = status.to_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        value["kernel_drops"],
        serde_json::json!([
            { "port": "outside", "socket_queue_full": 1500 },
            { "port": "inside", "socket_queue_full": 3 },
        ])
    );
    let back: Status = serde_json::from_str(&json).unwrap();
    assert_eq!(back, status);
    let summary = status.summary(at(T0 + 10));
    assert!(
        summary.contains(
            "  kernel drops    outside 1500 socket queue full; inside 3 socket queue full\n"
        ),
        "{summary}"
    );
}

#[test]
fn a_gateway_that_does_not_count_kernel_drops_says_so() {
    let mut s = scrape();
    s.info.backend = "afpacket".to_owned();
    s.kernel_drops = None;
    let status = Status::from_scrape(&s, at(T0 + 10));
    let value: serde_json::Value = serde_json::from_str(&status.to_json()).unwrap();
    assert!(value["kernel_drops"].is_null(), "{value}");
    assert!(
        status
            .summary(at(T0 + 10))
            .contains("  kernel drops    not counted by the afpacket backend\n")
    );
}

#[test]
fn an_older_afxdp_gateways_kernel_drops_still_read() {
    let json = r#"{"port": "outside", "fill_ring_empty": 4, "rx_ring_full": 0}"#;
    let port: PortKernelDrops = serde_json::from_str(json).unwrap();
    assert_eq!(
        port,
        PortKernelDrops::new("outside", &KernelDrops::afxdp(0, 4, 0))
    );
}

#[test]
fn an_older_gateways_rules_without_direction_still_read() {
    let status = Status::from_scrape(&scrape(), at(T0 + 10));
    let mut value: serde_json::Value = serde_json::from_str(&status.to_json()).unwrap();
    for rule in value["top_rules"].as_array_mut().unwrap() {
        rule.as_object_mut().unwrap().remove("direction");
    }
    let back: Status = serde_json::from_value(value).unwrap();
    assert_eq!(back.top_rules[0].direction, "");
    assert_eq!(
        rule_text(&back.top_rules[0]),
        "tier default, GlobalNetworkPolicy/b rule 2 (allow, normal)"
    );
}

#[test]
fn top_rules_keep_the_most_hit() {
    let rules: Vec<RuleSample> = (0..15)
        .map(|i| sample(Some("GlobalNetworkPolicy/p"), Some(i), u64::from(i) + 1))
        .collect();
    let top = top_rules(&rules, TOP_RULES);
    let packets: Vec<u64> = top.iter().map(|r| r.packets).collect();
    assert_eq!(packets, [15, 14, 13, 12, 11, 10, 9, 8, 7, 6]);
}

#[test]
fn durations_for_people() {
    let cases = [
        (0.4, "0s"),
        (59.9, "59s"),
        (60.0, "1m00s"),
        (3599.0, "59m59s"),
        (3600.0, "1h00m"),
        (90_000.0, "1d01h"),
        (-3.0, "0s"),
    ];
    for (seconds, text) in cases {
        assert_eq!(human_duration(seconds), text, "{seconds}");
    }
}
