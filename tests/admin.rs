//! The admin listener of the real gateway on the veth harness (SPEC §A6): counters scraped
//! from `/metrics` equal the traffic sent, `/readiness` is false until the first snapshot is
//! enforced, `/status` and `portcullis status` tell the same story.
//!
//! Needs root; skips with a message without it, fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway;
mod observe;
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gateway::{ConfigDir, PROCESS_WAIT, udp_socket, value, web_endpoint};
use observe::{
    GENERATION, UdpSink, large_policy, quiet_hosts, spawn_gateway, start_gateway, udp_policy,
};
use support::{INSIDE_V4, OUTSIDE_V4, Side, Topology};

const FLOWS_ALLOWED: u16 = 5;
const PACKETS_PER_FLOW: u32 = 10;
const FLOWS_DENIED: u16 = 7;
/// Payload of every test datagram; a frame is Ethernet 14 + IPv4 20 + UDP 8 + this.
const PAYLOAD: usize = 32;
const FRAME: f64 = (14 + 20 + 8 + PAYLOAD) as f64;

fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

fn traffic(name: &str, port: &str, verdict: &str) -> String {
    let direction = if port == "outside" {
        "inbound"
    } else {
        "outbound"
    };
    series(
        name,
        &[
            ("port", port),
            ("direction", direction),
            ("verdict", verdict),
        ],
    )
}

fn rule(name: &str, policy: &str, action: &str) -> String {
    rule_of(name, policy, "ingress", action)
}

fn rule_of(name: &str, policy: &str, direction: &str, action: &str) -> String {
    series(
        name,
        &[
            ("stage", "normal"),
            ("tier", "default"),
            ("policy", policy),
            ("direction", direction),
            ("rule", "0"),
            ("action", action),
            ("default", ""),
        ],
    )
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>, series: &str) -> f64 {
    value(after, series) - value(before, series)
}

#[test]
fn scraped_counters_equal_the_traffic_sent() {
    let Some(topology) = Topology::new("ac") else {
        return;
    };
    quiet_hosts(&topology);
    let dir = ConfigDir::new("counters");
    dir.write("policy.yaml", &udp_policy(&[5000], &[5001]));
    let sink = UdpSink::start(&topology, &[5000, 5001]);
    let gateway = start_gateway(&topology, dir.path());
    let before = gateway.metrics();

    let payload = |flow: u16, seq: u32| {
        let mut p = format!("f{flow:03}-s{seq:05}").into_bytes();
        p.resize(PAYLOAD, b'.');
        p
    };
    for flow in 0..FLOWS_ALLOWED {
        let socket = udp_socket(&topology, Side::Outside, OUTSIDE_V4[0], 41_000 + flow);
        for seq in 0..PACKETS_PER_FLOW {
            socket
                .send_to(&payload(flow, seq), (INSIDE_V4[0], 5000))
                .unwrap();
        }
    }
    for flow in 0..FLOWS_DENIED {
        let socket = udp_socket(&topology, Side::Outside, OUTSIDE_V4[0], 42_000 + flow);
        socket
            .send_to(&payload(100 + flow, 0), (INSIDE_V4[0], 5001))
            .unwrap();
    }
    let allowed = u64::from(FLOWS_ALLOWED) * u64::from(PACKETS_PER_FLOW);
    let allowed_f = allowed as f64;
    let denied_f = f64::from(FLOWS_DENIED);
    let after = gateway.wait_for_metrics("every test frame counted", |m| {
        delta(
            m,
            &before,
            &traffic("portcullis_packets_total", "outside", "forwarded"),
        ) >= allowed_f
            && delta(
                m,
                &before,
                &traffic("portcullis_packets_total", "outside", "dropped"),
            ) >= denied_f
    });
    // Nothing else may trickle in: wait a little and scrape again.
    thread::sleep(Duration::from_millis(500));
    let after_settle = gateway.metrics();
    let moved: Vec<&String> = after
        .keys()
        .filter(|k| {
            k.starts_with("portcullis_packets_total") && after.get(*k) != after_settle.get(*k)
        })
        .collect();
    assert!(
        moved.is_empty(),
        "counters moved after the traffic stopped: {moved:?}"
    );

    let expected = [
        (
            traffic("portcullis_packets_total", "outside", "forwarded"),
            allowed_f,
        ),
        (
            traffic("portcullis_packets_total", "outside", "dropped"),
            denied_f,
        ),
        (
            traffic("portcullis_packets_total", "inside", "forwarded"),
            0.0,
        ),
        (
            traffic("portcullis_packets_total", "inside", "dropped"),
            0.0,
        ),
        (
            traffic("portcullis_bytes_total", "outside", "forwarded"),
            allowed_f * FRAME,
        ),
        (
            traffic("portcullis_bytes_total", "outside", "dropped"),
            denied_f * FRAME,
        ),
        (
            "portcullis_drops_total{reason=\"policy\"}".to_owned(),
            denied_f,
        ),
        // The allow rule decides the first packet of each flow; the rest are established.
        (
            rule(
                "portcullis_rule_packets_total",
                "GlobalNetworkPolicy/allow-udp-5000",
                "allow",
            ),
            f64::from(FLOWS_ALLOWED),
        ),
        (
            rule(
                "portcullis_rule_bytes_total",
                "GlobalNetworkPolicy/allow-udp-5000",
                "allow",
            ),
            f64::from(FLOWS_ALLOWED) * FRAME,
        ),
        // A denied flow gets no entry: the deny rule decides every one of its packets.
        (
            rule(
                "portcullis_rule_packets_total",
                "GlobalNetworkPolicy/deny-udp",
                "deny",
            ),
            denied_f,
        ),
        (
            "portcullis_conntrack_inserts_total".to_owned(),
            f64::from(FLOWS_ALLOWED),
        ),
    ];
    let mismatches: Vec<String> = expected
        .iter()
        .filter_map(|(series, want)| {
            let got = delta(&after_settle, &before, series);
            (got != *want).then(|| format!("{series}: {got}, expected {want}"))
        })
        .collect();
    let received = sink.received().len() as u64;
    assert!(
        mismatches.is_empty(),
        "{mismatches:#?}\nreceived {received} datagrams\n{}",
        gateway.stderr()
    );
    assert_eq!(
        received, allowed,
        "every allowed datagram arrived, no denied one"
    );

    // /status says the same, and so does `portcullis status`.
    let (code, json) = gateway.get("/status").unwrap();
    assert_eq!(code, 200, "{json}");
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["generation"], 1);
    assert_eq!(status["ready"], true);
    assert_eq!(status["ports"]["backend"], "afpacket");
    assert_eq!(
        status["kernel_drops"],
        serde_json::json!([
            { "port": "outside", "socket_queue_full": 0 },
            { "port": "inside", "socket_queue_full": 0 },
        ]),
        "{json}"
    );
    let output = Command::new("ip")
        .args(["netns", "exec", &topology.namespace(Side::Gateway)])
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .args(["status", "--admin", gateway::ADMIN])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for needle in [
        "ready (ready)",
        "generation 1",
        "last reload     ok, generation 1 (start,",
        "backend afpacket",
        "drops           policy 7",
        "GlobalNetworkPolicy/deny-udp ingress rule 0 (deny, normal)",
        // A few dozen frames never fill a socket's receive queue.
        "kernel drops    outside 0 socket queue full; inside 0 socket queue full",
    ] {
        assert!(summary.contains(needle), "{needle:?} in\n{summary}");
    }
}

/// `web` (.110) with one policy whose ingress rule 0 and egress rule 0 both allow: UDP 5000
/// in, UDP 6000 out.
const BOTH_WAYS_POLICY: &str = concat!(
    web_endpoint!(),
    r#"---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: both-ways
spec:
  order: 10
  selector: role == 'web'
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      protocol: UDP
      destination: { ports: [5000] }
  egress:
    - action: Allow
      protocol: UDP
      destination: { ports: [6000] }
"#
);

#[test]
fn ingress_and_egress_rule_0_of_one_policy_count_apart() {
    const INBOUND_FLOWS: u16 = 3;
    const OUTBOUND_FLOWS: u16 = 4;
    let Some(topology) = Topology::new("ad") else {
        return;
    };
    quiet_hosts(&topology);
    let dir = ConfigDir::new("directions");
    dir.write("policy.yaml", BOTH_WAYS_POLICY);
    let sink = UdpSink::start(&topology, &[5000]);
    // The outside host takes UDP 6000, so that nothing answers with ICMP.
    let outside_sink = udp_socket(&topology, Side::Outside, OUTSIDE_V4[0], 6000);
    let gateway = start_gateway(&topology, dir.path());
    let before = gateway.metrics();
    for flow in 0..INBOUND_FLOWS {
        let socket = udp_socket(&topology, Side::Outside, OUTSIDE_V4[0], 43_000 + flow);
        socket.send_to(b"in", (INSIDE_V4[0], 5000)).unwrap();
    }
    for flow in 0..OUTBOUND_FLOWS {
        let socket = udp_socket(&topology, Side::Inside, INSIDE_V4[0], 44_000 + flow);
        socket.send_to(b"out", (OUTSIDE_V4[0], 6000)).unwrap();
    }
    let name = "portcullis_rule_packets_total";
    let ingress = rule_of(name, "GlobalNetworkPolicy/both-ways", "ingress", "allow");
    let egress = rule_of(name, "GlobalNetworkPolicy/both-ways", "egress", "allow");
    let after = gateway.wait_for_metrics("both directions counted", |m| {
        delta(m, &before, &ingress) >= f64::from(INBOUND_FLOWS)
            && delta(m, &before, &egress) >= f64::from(OUTBOUND_FLOWS)
    });
    thread::sleep(Duration::from_millis(300));
    let settled = gateway.metrics();
    assert_eq!(after.get(&ingress), settled.get(&ingress));
    assert_eq!(
        (
            delta(&settled, &before, &ingress),
            delta(&settled, &before, &egress)
        ),
        (f64::from(INBOUND_FLOWS), f64::from(OUTBOUND_FLOWS)),
        "{}",
        gateway.stderr()
    );
    assert_eq!(sink.received().len(), usize::from(INBOUND_FLOWS));
    drop(outside_sink);

    let (code, json) = gateway.get("/status").unwrap();
    assert_eq!(code, 200, "{json}");
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut listed: Vec<(String, u64)> = status["top_rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["policy"] == "GlobalNetworkPolicy/both-ways")
        .map(|r| {
            (
                r["direction"].as_str().unwrap().to_owned(),
                r["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("egress".to_owned(), u64::from(OUTBOUND_FLOWS)),
            ("ingress".to_owned(), u64::from(INBOUND_FLOWS)),
        ],
        "{json}"
    );
}

#[test]
fn readiness_is_false_until_the_first_snapshot_is_enforced() {
    let Some(topology) = Topology::new("ar") else {
        return;
    };
    let dir = ConfigDir::new("ready");
    // Large enough that loading and compiling take a while, so startup is observable.
    dir.write("policy.yaml", &large_policy(10_000));
    let namespace = topology.namespace(Side::Gateway);
    let gateway = spawn_gateway(&topology, dir.path(), &[]);
    let started = Instant::now();
    let mut answers = Vec::new();
    loop {
        let answer = gateway::http_get(&namespace, "/status");
        if let Some((200, body)) = &answer {
            let status: serde_json::Value = serde_json::from_str(body).unwrap();
            let ready = status["ready"].as_bool().unwrap();
            answers.push(ready);
            // Ready only with a snapshot in force.
            if ready {
                assert!(
                    status["generation"].as_u64().is_some_and(|g| g >= 1),
                    "{body}"
                );
                break;
            }
            assert!(
                status["generation"].is_null(),
                "a snapshot but not ready: {body}"
            );
        }
        assert!(
            started.elapsed() < PROCESS_WAIT,
            "never ready\n{}",
            gateway.stderr()
        );
        thread::sleep(Duration::from_millis(1));
    }
    let (code, body) = gateway.get("/readiness").unwrap();
    assert_eq!((code, body.as_str()), (200, "ready\n"));
    let not_ready = answers.iter().filter(|r| !**r).count();
    println!("{not_ready} not-ready answers before the first snapshot was enforced");
    assert!(
        not_ready > 0,
        "the listener answered only once ready: startup was not observed\n{}",
        gateway.stderr()
    );
    let (code, _) = gateway.get("/liveness").unwrap();
    assert_eq!(code, 200);
    assert_eq!(value(&gateway.metrics(), GENERATION), 1.0);
}

#[test]
fn status_without_a_gateway_says_nothing_answers() {
    // No harness: a port of the loopback address that nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["status", "--admin", &addr.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("nothing answers at {addr}")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
