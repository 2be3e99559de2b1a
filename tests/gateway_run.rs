//! `portcullis run` as a real process: each test writes a small policy directory, builds its
//! own `scripts/harness` topology (removed on drop), starts the binary in the gateway
//! namespace with `--backend afpacket`, and probes with ping and TCP between the harness
//! hosts. The process and probe helpers live in `tests/gateway`; the scenarios that must hold
//! for both backends (truth table, return traffic, doNotTrack, established connections across
//! a reload, SIGTERM) are in `gateway_truth.rs`.
//!
//! Needs root; skips with a message without it, fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway;
mod support;

use std::process::Command;

use gateway::{
    Backend, ConfigDir, EchoServers, GatewayProcess, OPEN_POLICY, Signal, counter_after,
    hosts_send_anything, inside_endpoints, tcp_echo,
};
use support::{INSIDE_V4, INSIDE_V6, Side, Topology};

/// The ports the inside hosts listen on.
const WEB: u16 = 80;
const OTHER: u16 = 81;

/// The policy after the change: `.110` answers ping only, `.111` now takes TCP 80.
const CHANGED_POLICY: &str = concat!(
    inside_endpoints!(),
    r#"---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: web
spec:
  selector: role == 'web'
  ingress:
    - action: Allow
      protocol: ICMP
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: closed-opens
spec:
  selector: role == 'closed'
  ingress:
    - action: Allow
      protocol: TCP
      destination: { ports: [80] }
---
"#,
    hosts_send_anything!()
);

/// Two problems: an action that does not exist and a selector that does not parse.
const BROKEN_POLICY: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: broken
spec:
  selector: role == 'web' &&
  ingress:
    - action: Alow
"#;

#[test]
fn an_invalid_directory_is_refused_before_any_interface_is_looked_at() {
    // No harness needed: ports that do not exist prove the directory is checked first.
    let dir = ConfigDir::new("run-invalid");
    dir.write("policy.yaml", OPEN_POLICY);
    dir.write("zz-broken.yaml", BROKEN_POLICY);
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "--config"])
        .arg(dir.path())
        .args(["--outside", "pcnone-o", "--inside", "pcnone-i"])
        .args(["--backend", "afpacket"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("zz-broken.yaml:"))
        .collect();
    assert!(
        problems.len() >= 2,
        "every problem printed, FILE:LINE first: {stderr}"
    );
    for problem in &problems {
        let after_file = problem.split("zz-broken.yaml:").nth(1).unwrap();
        let line = after_file.split(':').next().unwrap();
        assert!(line.parse::<usize>().is_ok(), "no line number in {problem}");
        assert!(problem.contains("GlobalNetworkPolicy/broken"), "{problem}");
    }
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(
        !stderr.contains("pcnone"),
        "an interface was looked at: {stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing forwarded, no counters");
}

#[test]
fn a_missing_interface_is_named_with_what_to_do() {
    let dir = ConfigDir::new("run-missing");
    dir.write("policy.yaml", OPEN_POLICY);
    for backend in [&["--backend", "afpacket"][..], &[]] {
        let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "--config"])
            .arg(dir.path())
            .args(["--outside", "pcnone-o", "--inside", "pcnone-i"])
            .args(backend)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{backend:?}: {stderr}");
        assert!(
            stderr.contains("pcnone-o: no such network interface")
                && stderr.contains("ip netns exec"),
            "{backend:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn allowed_flows_pass_denied_ones_do_not_and_sigterm_prints_the_counters() {
    let Some(topology) = Topology::new("gr") else {
        return;
    };
    let dir = ConfigDir::new("run-allow");
    dir.write("policy.yaml", OPEN_POLICY);
    let _servers = EchoServers::start(&topology, &[WEB, OTHER]);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), Backend::Afpacket, &[]);

    let mut mismatches = Vec::new();
    let pings = [
        (INSIDE_V4[0], true),
        (INSIDE_V4[1], false),
        (INSIDE_V6[0], true),
        (INSIDE_V6[1], false),
    ];
    for (address, expected) in pings {
        if topology.ping(Side::Outside, address) != expected {
            mismatches.push(format!("ping {address}: expected allowed={expected}"));
        }
    }
    let connections = [
        (INSIDE_V4[0], WEB, true),
        (INSIDE_V4[0], OTHER, false),
        (INSIDE_V4[1], WEB, false),
        (INSIDE_V6[0], WEB, true),
        (INSIDE_V6[1], WEB, false),
    ];
    for (address, port, expected) in connections {
        let passed = tcp_echo(&topology, address, port).is_ok();
        if passed != expected {
            mismatches.push(format!("tcp {address}:{port}: expected allowed={expected}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{mismatches:#?}\n{}",
        gateway.stderr()
    );

    let status = gateway.stop(Signal::Term);
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());
    let stdout = gateway.stdout();
    let forwarded = counter_after(&stdout, "outside  forwarded ");
    let dropped = counter_after(&stdout, "dropped ");
    assert!(forwarded > 0, "{stdout}");
    assert!(dropped > 0, "{stdout}");
    assert!(stdout.contains("policy "), "drops by reason: {stdout}");
    assert!(stdout.contains("conntrack entries"), "{stdout}");
}

#[test]
fn sighup_applies_a_changed_directory_to_new_flows() {
    let Some(topology) = Topology::new("gh") else {
        return;
    };
    let dir = ConfigDir::new("run-change");
    dir.write("policy.yaml", OPEN_POLICY);
    let _servers = EchoServers::start(&topology, &[WEB, OTHER]);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), Backend::Afpacket, &[]);
    assert!(tcp_echo(&topology, INSIDE_V4[0], WEB).is_ok(), "web host");
    assert!(
        tcp_echo(&topology, INSIDE_V4[1], WEB).is_err(),
        "closed host"
    );

    dir.write("policy.yaml", CHANGED_POLICY);
    gateway.signal(Signal::Hup);
    gateway.wait_for_stderr("generation 2 published");

    let mut mismatches = Vec::new();
    if tcp_echo(&topology, INSIDE_V4[0], WEB).is_ok() {
        mismatches.push("a new connection to .110:80 passed after the change".to_string());
    }
    if let Err(error) = tcp_echo(&topology, INSIDE_V4[1], WEB) {
        mismatches.push(format!("a new connection to .111:80 failed: {error}"));
    }
    if !topology.ping(Side::Outside, INSIDE_V4[0]) {
        mismatches.push("ping .110 failed after the change".to_string());
    }
    if topology.ping(Side::Outside, INSIDE_V6[0]) {
        mismatches.push("ping ::110 passed after the change".to_string());
    }
    assert!(
        mismatches.is_empty(),
        "{mismatches:#?}\n{}",
        gateway.stderr()
    );
    assert!(gateway.stop(Signal::Term).success());
}

#[test]
fn sighup_with_a_broken_directory_keeps_the_old_policy() {
    let Some(topology) = Topology::new("gb") else {
        return;
    };
    let dir = ConfigDir::new("run-broken");
    dir.write("policy.yaml", OPEN_POLICY);
    let _servers = EchoServers::start(&topology, &[WEB, OTHER]);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), Backend::Afpacket, &[]);

    // A valid change and a broken file at once: all or nothing, so neither applies.
    dir.write("policy.yaml", CHANGED_POLICY);
    dir.write("zz-broken.yaml", BROKEN_POLICY);
    gateway.signal(Signal::Hup);
    gateway.wait_for_stderr("generation 1 stays in force");
    let stderr = gateway.stderr();
    assert!(
        stderr.contains("zz-broken.yaml:"),
        "each problem logged: {stderr}"
    );

    let mut mismatches = Vec::new();
    if let Err(error) = tcp_echo(&topology, INSIDE_V4[0], WEB) {
        mismatches.push(format!(".110:80 (old policy: allowed) failed: {error}"));
    }
    if tcp_echo(&topology, INSIDE_V4[1], WEB).is_ok() {
        mismatches.push(".111:80 (old policy: denied) passed".to_string());
    }
    if !topology.ping(Side::Outside, INSIDE_V6[0]) {
        mismatches.push("ping ::110 (old policy: allowed) failed".to_string());
    }
    assert!(
        mismatches.is_empty(),
        "{mismatches:#?}\n{}",
        gateway.stderr()
    );

    // The next good state applies.
    std::fs::remove_file(dir.path().join("zz-broken.yaml")).unwrap();
    gateway.signal(Signal::Hup);
    gateway.wait_for_stderr("generation 2 published");
    assert!(
        tcp_echo(&topology, INSIDE_V4[1], WEB).is_ok(),
        "{}",
        gateway.stderr()
    );
    assert!(gateway.stop(Signal::Int).success());
}

#[test]
fn two_workers_share_the_flows() {
    let Some(topology) = Topology::new("gw") else {
        return;
    };
    let dir = ConfigDir::new("run-workers");
    dir.write("policy.yaml", OPEN_POLICY);
    let _servers = EchoServers::start(&topology, &[WEB, OTHER]);
    let mut gateway = GatewayProcess::start(
        &topology,
        dir.path(),
        Backend::Afpacket,
        &["--workers", "2"],
    );
    let stderr = gateway.stderr();
    assert!(
        stderr.contains("worker 0") && stderr.contains("worker 1"),
        "{stderr}"
    );
    // Different source ports hash to either worker; every connection must pass, and the
    // denied ones must stay denied whichever worker judges them.
    for round in 0..8 {
        assert!(
            tcp_echo(&topology, INSIDE_V4[0], WEB).is_ok(),
            "round {round}: {}",
            gateway.stderr()
        );
    }
    assert!(tcp_echo(&topology, INSIDE_V4[0], OTHER).is_err());
    assert!(topology.ping(Side::Outside, INSIDE_V4[0]));
    let status = gateway.stop(Signal::Term);
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());
    let stdout = gateway.stdout();
    assert!(
        counter_after(&stdout, "outside  forwarded ") >= 8 * 3,
        "{stdout}"
    );
}
