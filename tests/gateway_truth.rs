//! The dataplane's proof: real `portcullis run` processes in a `scripts/harness` topology,
//! every scenario once with `--backend afpacket` and once with `--backend afxdp` (the
//! `both_backends!` table at the bottom makes one test per backend per scenario).
//!
//! - `truth_table`: 4 outside × 4 inside addresses, both families, ping + TCP 80 + TCP 22 +
//!   UDP 5353, under a config with a tier that Passes, a Kubernetes NetworkPolicy on workload
//!   endpoints, a GlobalNetworkPolicy Deny, host endpoints with default deny and failsafe
//!   port 22. Each cell's expected verdict is what `portcullis eval` says for that flow on
//!   the same directory; a few cells are also pinned by hand.
//! - `return_traffic`: replies pass only for connections that were allowed.
//! - `do_not_track`: an untracked allow without a return rule breaks TCP; with one it works.
//! - `established_survives_reload`: a live connection outlives a change denying new ones.
//! - `sigterm_cleans_up`: exit 0, final counters, no XDP program left, nothing forwards.
//! - `counters`: the policy drops a known stream caused, in `/metrics` and the final counters.
//!
//! Needs root; skips with a message without it, fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway;
mod support;

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use gateway::{
    Backend, ConfigDir, EchoServers, GatewayProcess, Signal, connect_from, connect_in, echo,
    ping_from, tcp_echo_from, udp_echo_from, udp_socket, value, web_endpoint,
};
use portcullis::dataplane::PortSide;
use support::{INSIDE_V4, INSIDE_V6, OUTSIDE_V4, OUTSIDE_V6, Side, Topology};

/// Gateways of this file running at once: each test runs a gateway and several probe
/// threads, and the machine is small and shared.
const CONCURRENT_SCENARIOS: usize = 3;
/// Probes of the truth table in flight at once.
const PROBES_IN_FLIGHT: usize = 32;

// ---- scenario 1: the truth table ----

/// `.110`/`.111` are pods (workload endpoints of namespace `shop`) under Kubernetes
/// NetworkPolicies; `.112` is a host endpoint no policy allows (default deny; failsafe 22
/// still open); `.113` a host endpoint open to ping, TCP 80 and UDP 5353, with an ordered
/// Deny for UDP from `.10`. The `security` tier runs first: TCP from the blocked network set
/// (`.13`) is denied, everything else Passes to the default tier.
const TRUTH_POLICY: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: { team: shop }
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-web-eth0
  namespace: shop
  labels: { app: web }
spec:
  orchestrator: k8s
  node: node1
  pod: web
  endpoint: eth0
  interfaceName: caliweb0
  ipNetworks: ["203.0.113.110/32", "2001:db8:2::110/128"]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-db-eth0
  namespace: shop
  labels: { app: db }
spec:
  orchestrator: k8s
  node: node1
  pod: db
  endpoint: eth0
  interfaceName: calidb0
  ipNetworks: ["203.0.113.111/32", "2001:db8:2::111/128"]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: locked
  labels: { role: locked }
spec:
  node: locked
  expectedIPs: ["203.0.113.112", "2001:db8:2::112"]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: app
  labels: { role: app }
spec:
  node: app
  expectedIPs: ["203.0.113.113", "2001:db8:2::113"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: blocked
  labels: { threat: blocked }
spec:
  nets: ["203.0.113.13/32", "2001:db8:2::13/128"]
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 100
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: security.gate
spec:
  tier: security
  order: 10
  selector: all()
  types: [Ingress]
  ingress:
    - action: Deny
      protocol: TCP
      source:
        selector: threat == 'blocked'
    - action: Pass
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata:
  name: web-public
  namespace: shop
spec:
  podSelector:
    matchLabels: { app: web }
  policyTypes: [Ingress]
  ingress:
    - from:
        - ipBlock: { cidr: 203.0.113.0/24, except: [203.0.113.11/32] }
        - ipBlock: { cidr: "2001:db8:2::/64", except: ["2001:db8:2::11/128"] }
      ports:
        - { protocol: TCP, port: 80 }
        - { protocol: UDP, port: 5353 }
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata:
  name: db-from-12
  namespace: shop
spec:
  podSelector:
    matchLabels: { app: db }
  policyTypes: [Ingress]
  ingress:
    - from:
        - ipBlock: { cidr: 203.0.113.12/32 }
        - ipBlock: { cidr: "2001:db8:2::12/128" }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: app-open
spec:
  order: 100
  selector: role == 'app'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: ICMP
    - action: Allow
      protocol: ICMPv6
    - action: Allow
      protocol: TCP
      destination: { ports: [80] }
    - action: Allow
      protocol: UDP
      destination: { ports: [5353] }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-10-to-app-udp
spec:
  order: 50
  selector: role == 'app'
  types: [Ingress]
  ingress:
    - action: Deny
      protocol: UDP
      source: { nets: ["203.0.113.10/32"] }
    - action: Deny
      protocol: UDP
      source: { nets: ["2001:db8:2::10/128"] }
"#;

const HTTP: u16 = 80;
const SSH: u16 = 22;
const MDNS: u16 = 5353;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Ping,
    Tcp(u16),
    Udp(u16),
}

const PROBES: [Probe; 4] = [
    Probe::Ping,
    Probe::Tcp(HTTP),
    Probe::Tcp(SSH),
    Probe::Udp(MDNS),
];

impl Probe {
    fn label(self) -> String {
        match self {
            Probe::Ping => "ping".to_string(),
            Probe::Tcp(port) => format!("tcp/{port}"),
            Probe::Udp(port) => format!("udp/{port}"),
        }
    }

    /// The `portcullis eval` input line for the first packet of this probe.
    fn flow(self, src: &str, dst: &str) -> String {
        let v6 = src.contains(':');
        match self {
            Probe::Ping if v6 => format!(
                r#"{{"src":"{src}","dst":"{dst}","protocol":"icmpv6","icmpType":128,"icmpCode":0}}"#
            ),
            Probe::Ping => format!(
                r#"{{"src":"{src}","dst":"{dst}","protocol":"icmp","icmpType":8,"icmpCode":0}}"#
            ),
            Probe::Tcp(port) => format!(
                r#"{{"src":"{src}","dst":"{dst}","protocol":"tcp","srcPort":40000,"dstPort":{port}}}"#
            ),
            Probe::Udp(port) => format!(
                r#"{{"src":"{src}","dst":"{dst}","protocol":"udp","srcPort":40000,"dstPort":{port}}}"#
            ),
        }
    }

    /// Sends this probe from outside `src` to inside `dst`: true when the answer came back.
    fn passes(self, topology: &Topology, src: &str, dst: &str) -> bool {
        match self {
            Probe::Ping => ping_from(topology, src, dst),
            Probe::Tcp(port) => tcp_echo_from(topology, src, dst, port).is_ok(),
            Probe::Udp(port) => udp_echo_from(topology, src, dst, port),
        }
    }
}

/// One cell: a probe from an outside address to an inside address.
#[derive(Debug, Clone)]
struct Cell {
    src: &'static str,
    dst: &'static str,
    probe: Probe,
    expected: bool,
    observed: bool,
}

fn truth_cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    for (outside, inside) in [(OUTSIDE_V4, INSIDE_V4), (OUTSIDE_V6, INSIDE_V6)] {
        for src in outside {
            for dst in inside {
                for probe in PROBES {
                    cells.push(Cell {
                        src,
                        dst,
                        probe,
                        expected: false,
                        observed: false,
                    });
                }
            }
        }
    }
    cells
}

/// `portcullis eval --config dir` on `flows`: each flow's verdict (true = allow).
fn eval_verdicts(dir: &std::path::Path, flows: &[String]) -> Vec<bool> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["eval", "--config"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for flow in flows {
        writeln!(stdin, "{flow}").unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "portcullis eval: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdicts: Vec<bool> = stdout
        .lines()
        .map(|line| {
            let answer: serde_json::Value = serde_json::from_str(line).unwrap();
            match answer["verdict"].as_str() {
                Some("allow") => true,
                Some("deny") => false,
                _ => panic!("eval answered {line}"),
            }
        })
        .collect();
    assert_eq!(verdicts.len(), flows.len(), "{stdout}");
    verdicts
}

/// One verdict of `portcullis eval` for a single flow.
fn eval_one(dir: &std::path::Path, flow: &str) -> bool {
    eval_verdicts(dir, &[flow.to_string()])[0]
}

/// The cells as a table: one row per (source, destination), one column per probe, each
/// entry `expected/observed` (A allow, D deny), `!` marking a mismatch.
fn render(cells: &[Cell]) -> String {
    let mut out = format!("{:<36}", "outside -> inside");
    for probe in PROBES {
        let _ = write!(out, "{:>10}", probe.label());
    }
    out.push('\n');
    for row in cells.chunks(PROBES.len()) {
        let _ = write!(out, "{:<36}", format!("{} -> {}", row[0].src, row[0].dst));
        for cell in row {
            let letter = |allowed| if allowed { 'A' } else { 'D' };
            let mark = if cell.expected == cell.observed {
                ' '
            } else {
                '!'
            };
            let _ = write!(
                out,
                "{:>10}",
                format!("{}/{}{mark}", letter(cell.expected), letter(cell.observed))
            );
        }
        out.push('\n');
    }
    out.push_str("(expected from portcullis eval / observed through the gateway)\n");
    out
}

fn truth_table(backend: Backend) {
    let Some(scenario) = Scenario::start("tt", "truth", backend, TRUTH_POLICY) else {
        return;
    };
    let Scenario { topology, dir, .. } = scenario;

    let mut cells = truth_cells();
    let flows: Vec<String> = cells.iter().map(|c| c.probe.flow(c.src, c.dst)).collect();
    for (cell, verdict) in cells.iter_mut().zip(eval_verdicts(dir.path(), &flows)) {
        cell.expected = verdict;
    }
    // Pinned by hand, so that an evaluator allowing (or denying) everything cannot pass.
    let pinned = [
        // The Kubernetes policy admits the outside /24 but .11, on TCP 80.
        (OUTSIDE_V4[0], INSIDE_V4[0], Probe::Tcp(HTTP), true),
        (OUTSIDE_V4[1], INSIDE_V4[0], Probe::Tcp(HTTP), false),
        (OUTSIDE_V6[2], INSIDE_V6[0], Probe::Tcp(HTTP), true),
        (OUTSIDE_V6[1], INSIDE_V6[0], Probe::Tcp(HTTP), false),
        // Nothing else on the pod: not ping.
        (OUTSIDE_V4[0], INSIDE_V4[0], Probe::Ping, false),
        // The security tier's Deny beats the default tier's Allow.
        (OUTSIDE_V4[3], INSIDE_V4[3], Probe::Tcp(HTTP), false),
        (OUTSIDE_V6[3], INSIDE_V6[3], Probe::Tcp(HTTP), false),
        (OUTSIDE_V4[2], INSIDE_V4[3], Probe::Tcp(HTTP), true),
        // Host endpoint default deny, failsafe 22 open even to the blocked host.
        (OUTSIDE_V4[2], INSIDE_V4[2], Probe::Tcp(HTTP), false),
        (OUTSIDE_V4[3], INSIDE_V4[2], Probe::Tcp(SSH), true),
        (OUTSIDE_V6[0], INSIDE_V6[2], Probe::Tcp(SSH), true),
        (OUTSIDE_V6[0], INSIDE_V6[2], Probe::Ping, false),
        // The ordered Deny of UDP from .10 comes before app-open.
        (OUTSIDE_V4[0], INSIDE_V4[3], Probe::Udp(MDNS), false),
        (OUTSIDE_V6[1], INSIDE_V6[3], Probe::Udp(MDNS), true),
    ];
    for (src, dst, probe, allowed) in pinned {
        let cell = cells
            .iter()
            .find(|c| c.src == src && c.dst == dst && c.probe == probe)
            .unwrap();
        assert_eq!(
            cell.expected,
            allowed,
            "portcullis eval disagrees with the hand-checked verdict for {} {src} -> {dst}\n{}",
            probe.label(),
            render(&cells)
        );
    }

    let _servers = EchoServers::start_in(
        &topology,
        Side::Inside,
        &[HTTP, SSH],
        &[INSIDE_V4, INSIDE_V6].concat(),
        &[MDNS],
    );
    let mut gateway = GatewayProcess::start(&topology, dir.path(), backend, &[]);
    for chunk in cells.chunks_mut(PROBES_IN_FLIGHT) {
        std::thread::scope(|scope| {
            for cell in chunk.iter_mut() {
                let topology = &topology;
                scope.spawn(move || {
                    cell.observed = cell.probe.passes(topology, cell.src, cell.dst);
                });
            }
        });
    }
    // A probe that should pass but did not gets a second, lone try: the machine is shared,
    // and a timed-out answer is not a verdict. A denied probe that passed stays a failure.
    for cell in cells.iter_mut().filter(|c| c.expected && !c.observed) {
        cell.observed = cell.probe.passes(&topology, cell.src, cell.dst);
    }
    let mismatches = cells.iter().filter(|c| c.expected != c.observed).count();
    assert!(
        mismatches == 0,
        "{backend:?}: {mismatches} cell(s) differ from portcullis eval:\n{}\n{}",
        render(&cells),
        gateway.stderr()
    );
    assert!(gateway.stop(Signal::Term).success(), "{}", gateway.stderr());
}

// ---- scenario 2: return traffic only for allowed connections ----

/// `.110` (client) may send anything and receives nothing; `.111` (server) takes TCP 80 and
/// UDP 5353 and may send nothing: every reply either way rides on connection tracking.
const RETURN_POLICY: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: client
  labels: { role: client }
spec:
  node: client
  expectedIPs: ["203.0.113.110", "2001:db8:2::110"]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: server
  labels: { role: server }
spec:
  node: server
  expectedIPs: ["203.0.113.111", "2001:db8:2::111"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: client-out
spec:
  selector: role == 'client'
  types: [Egress]
  egress:
    - action: Allow
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: server-in
spec:
  selector: role == 'server'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      destination: { ports: [80] }
    - action: Allow
      protocol: UDP
      destination: { ports: [5353] }
"#;

fn return_traffic(backend: Backend) {
    let Some(scenario) = Scenario::start("rt", "return", backend, RETURN_POLICY) else {
        return;
    };
    let Scenario { topology, dir, .. } = scenario;
    let (client, server, outside) = (INSIDE_V4[0], INSIDE_V4[1], OUTSIDE_V4[0]);
    // The premises, from the evaluator: replies are not allowed by policy on their own, and
    // the client's outgoing connection is.
    let reply = format!(
        r#"{{"src":"{server}","dst":"{outside}","protocol":"tcp","srcPort":80,"dstPort":40000}}"#
    );
    assert!(!eval_one(dir.path(), &reply), "server replies denied");
    let opened_from_outside = Probe::Tcp(HTTP).flow(outside, client);
    assert!(!eval_one(dir.path(), &opened_from_outside));
    let opened_from_inside = Probe::Tcp(HTTP).flow(client, outside);
    assert!(eval_one(dir.path(), &opened_from_inside));

    let _inside = EchoServers::start_in(&topology, Side::Inside, &[HTTP], &[server], &[MDNS]);
    let _outside = EchoServers::start_in(&topology, Side::Outside, &[HTTP], &[outside], &[MDNS]);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), backend, &[]);
    let mut failures = Vec::new();

    // Allowed outside -> inside: the replies come back.
    if let Err(error) = tcp_echo_from(&topology, outside, server, HTTP) {
        failures.push(format!(
            "TCP {outside} -> {server}:80 (allowed) failed: {error}"
        ));
    }
    if !udp_echo_from(&topology, outside, server, MDNS) {
        failures.push(format!(
            "UDP {outside} -> {server}:5353 (allowed) got no reply"
        ));
    }
    // Allowed only inside -> outside: works that way round, not from outside.
    match connect_in(&topology, Side::Inside, Some(client), outside, HTTP) {
        Ok(mut stream) => {
            if let Err(error) = echo(&mut stream, b"out") {
                failures.push(format!("TCP {client} -> {outside}:80 echo failed: {error}"));
            }
        }
        Err(error) => failures.push(format!(
            "TCP {client} -> {outside}:80 (allowed) failed: {error}"
        )),
    }
    let _client_listener = EchoServers::start_in(&topology, Side::Inside, &[8080], &[], &[]);
    if connect_from(&topology, Some(outside), client, 8080).is_ok() {
        failures.push(format!(
            "TCP {outside} -> {client}:8080 connected: a SYN from outside passed"
        ));
    }
    // An unsolicited UDP "reply" (from a port the client talks to) is dropped; the same
    // socket then receives a real reply to its own request.
    let client_socket = udp_socket(&topology, Side::Inside, client, 40000);
    let stranger = udp_socket(&topology, Side::Outside, OUTSIDE_V4[1], MDNS);
    stranger.send_to(b"unsolicited", (client, 40000)).unwrap();
    let mut buffer = [0u8; 64];
    if let Ok((n, from)) = client_socket.recv_from(&mut buffer) {
        failures.push(format!(
            "unsolicited UDP from {from} reached {client}:40000: {:?}",
            String::from_utf8_lossy(&buffer[..n])
        ));
    }
    client_socket.send_to(b"request", (outside, MDNS)).unwrap();
    match client_socket.recv_from(&mut buffer) {
        Ok((n, _)) if &buffer[..n] == b"request" => {}
        other => failures.push(format!(
            "UDP {client}:40000 -> {outside}:5353 got no reply: {other:?}"
        )),
    }
    assert!(
        failures.is_empty(),
        "{backend:?}: {failures:#?}\n{}",
        gateway.stderr()
    );
    assert!(gateway.stop(Signal::Term).success(), "{}", gateway.stderr());
}

// ---- scenario 3: doNotTrack ----

/// `.110` takes TCP 80 in the untracked stage; `with_return` adds the untracked rule for
/// its replies (nothing else lets them out: a host endpoint denies by default).
fn untracked_policy(with_return: bool) -> String {
    let mut text = String::from(concat!(
        web_endpoint!(),
        r#"---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: untracked-web
spec:
  selector: role == 'web'
  doNotTrack: true
  applyOnForward: true
"#
    ));
    if with_return {
        text.push_str("  types: [Ingress, Egress]\n");
    } else {
        text.push_str("  types: [Ingress]\n");
    }
    text.push_str(
        r#"  ingress:
    - action: Allow
      protocol: TCP
      destination: { ports: [80] }
"#,
    );
    if with_return {
        text.push_str(
            r#"  egress:
    - action: Allow
      protocol: TCP
      source: { ports: [80] }
"#,
        );
    }
    text
}

fn do_not_track(backend: Backend) {
    let Some(scenario) = Scenario::start("nt", "untracked", backend, &untracked_policy(false))
    else {
        return;
    };
    let Scenario { topology, dir, .. } = scenario;
    let (web, outside) = (INSIDE_V4[0], OUTSIDE_V4[0]);
    let syn = Probe::Tcp(HTTP).flow(outside, web);
    let syn_ack = format!(
        r#"{{"src":"{web}","dst":"{outside}","protocol":"tcp","srcPort":80,"dstPort":40000}}"#
    );
    assert!(eval_one(dir.path(), &syn));
    assert!(!eval_one(dir.path(), &syn_ack), "no return rule yet");

    let _servers = EchoServers::start(&topology, &[HTTP]);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), backend, &[]);
    let without = tcp_echo_from(&topology, outside, web, HTTP);
    assert!(
        without.is_err(),
        "{backend:?}: TCP to the untracked :80 worked without a return rule\n{}",
        gateway.stderr()
    );

    dir.write("policy.yaml", &untracked_policy(true));
    assert!(eval_one(dir.path(), &syn_ack), "the return rule allows it");
    gateway.signal(Signal::Hup);
    gateway.wait_for_stderr("generation 2 published");
    if let Err(error) = tcp_echo_from(&topology, outside, web, HTTP) {
        panic!(
            "{backend:?}: TCP to the untracked :80 failed with the return rule: {error}\n{}",
            gateway.stderr()
        );
    }
    assert!(gateway.stop(Signal::Term).success(), "{}", gateway.stderr());
}

// ---- scenario 4: an established connection survives a policy change ----

/// `.110` takes TCP 80 and ping; after the change, ping only.
fn web_policy(allow_http: bool) -> String {
    let http = if allow_http {
        "    - action: Allow\n      protocol: TCP\n      destination: { ports: [80] }\n"
    } else {
        ""
    };
    format!(
        r#"{endpoint}---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: web
spec:
  selector: role == 'web'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: ICMP
{http}"#,
        endpoint = web_endpoint!()
    )
}

fn established_survives_reload(backend: Backend) {
    let Some(scenario) = Scenario::start("es", "established", backend, &web_policy(true)) else {
        return;
    };
    let Scenario { topology, dir, .. } = scenario;
    let (web, outside) = (INSIDE_V4[0], OUTSIDE_V4[0]);
    let _servers = EchoServers::start(&topology, &[HTTP]);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), backend, &[]);
    let mut established =
        connect_from(&topology, Some(outside), web, HTTP).expect("TCP 80 allowed");
    echo(&mut established, b"before").expect("echo before the change");

    dir.write("policy.yaml", &web_policy(false));
    assert!(!eval_one(dir.path(), &Probe::Tcp(HTTP).flow(outside, web)));
    gateway.signal(Signal::Hup);
    gateway.wait_for_stderr("generation 2 published");

    assert!(
        tcp_echo_from(&topology, outside, web, HTTP).is_err(),
        "{backend:?}: a new connection to :80 passed after the change\n{}",
        gateway.stderr()
    );
    for round in 0..3 {
        if let Err(error) = echo(&mut established, format!("after {round}").as_bytes()) {
            panic!(
                "{backend:?}: the established connection broke: {error}\n{}",
                gateway.stderr()
            );
        }
    }
    // Closed while the gateway still forwards, so that the server sees the FIN and its
    // thread ends now rather than at its idle timeout.
    drop(established);
    assert!(gateway.stop(Signal::Term).success(), "{}", gateway.stderr());
}

// ---- scenario 5: SIGTERM ----

/// `ip -d link show dev` of a gateway port.
fn link_details(topology: &Topology, side: PortSide) -> String {
    let output = topology.exec_gateway(&["ip", "-d", "link", "show", "dev", &topology.port(side)]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn sigterm_cleans_up(backend: Backend) {
    let Some(scenario) = Scenario::start("st", "sigterm", backend, &web_policy(true)) else {
        return;
    };
    let Scenario { topology, dir, .. } = scenario;
    let (web, outside) = (INSIDE_V4[0], OUTSIDE_V4[0]);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), backend, &[]);
    assert!(
        ping_from(&topology, outside, web),
        "{backend:?}: ping through the running gateway\n{}",
        gateway.stderr()
    );
    if backend == Backend::Afxdp {
        // The check below must be able to see a program: it is there while running.
        for side in PortSide::BOTH {
            let link = link_details(&topology, side);
            assert!(link.contains("xdp"), "no XDP program while running: {link}");
        }
    }

    let status = gateway.stop_within(Signal::Term, Duration::from_secs(5));
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());
    let stdout = gateway.stdout();
    assert!(stdout.contains("final counters"), "{stdout}");
    assert!(
        gateway::counter_after(&stdout, "outside  forwarded ") > 0,
        "{stdout}"
    );
    for side in PortSide::BOTH {
        let link = link_details(&topology, side);
        assert!(!link.contains("xdp"), "{backend:?}: left attached: {link}");
    }
    assert!(
        !ping_from(&topology, outside, web),
        "{backend:?}: a ping passed with no gateway running"
    );
}

// ---- scenario 6: counters ----

/// `.110` takes UDP 5353; policy `deny-9999` refuses UDP 9999 by an explicit rule; anything
/// else to it is refused by the host endpoint's default deny.
const COUNTED_POLICY: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: web
  labels: { role: web }
spec:
  node: web
  expectedIPs: ["203.0.113.110"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-9999
spec:
  order: 10
  selector: role == 'web'
  types: [Ingress]
  ingress:
    - action: Deny
      protocol: UDP
      destination: { ports: [9999] }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: mdns
spec:
  order: 20
  selector: role == 'web'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: UDP
      destination: { ports: [5353] }
"#;

const POLICY_DROPS: &str = r#"portcullis_drops_total{reason="policy"}"#;

/// The sum of the `portcullis_rule_packets_total` series of GlobalNetworkPolicy `policy`.
fn rule_hits(metrics: &std::collections::BTreeMap<String, f64>, policy: &str) -> f64 {
    let label = format!("policy=\"GlobalNetworkPolicy/{policy}\"");
    metrics
        .iter()
        .filter(|(series, _)| {
            series.starts_with("portcullis_rule_packets_total") && series.contains(&label)
        })
        .map(|(_, hits)| hits)
        .sum()
}

fn counters(backend: Backend) {
    const DENIED: usize = 5;
    const ALLOWED: usize = 3;
    let Some(scenario) = Scenario::start("ct", "counters", backend, COUNTED_POLICY) else {
        return;
    };
    let Scenario { topology, dir, .. } = scenario;
    let (web, outside) = (INSIDE_V4[0], OUTSIDE_V4[0]);
    let _servers = EchoServers::start_in(&topology, Side::Inside, &[], &[web], &[MDNS, 9999]);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), backend, &[]);
    let before = gateway.metrics();

    // A known stream: each denied datagram from its own socket (a new flow each).
    for _ in 0..ALLOWED {
        assert!(
            udp_echo_from(&topology, outside, web, MDNS),
            "{backend:?}: allowed UDP\n{}",
            gateway.stderr()
        );
    }
    for i in 0..DENIED {
        let socket = udp_socket(&topology, Side::Outside, outside, 0);
        socket
            .send_to(format!("denied {i}").as_bytes(), (web, 9999))
            .unwrap();
    }
    let denied = DENIED as f64;
    let after = gateway.wait_for_metrics("the denied datagrams counted", |m| {
        value(m, POLICY_DROPS) - value(&before, POLICY_DROPS) >= denied
            && rule_hits(m, "deny-9999") - rule_hits(&before, "deny-9999") >= denied
    });
    assert_eq!(
        rule_hits(&after, "deny-9999") - rule_hits(&before, "deny-9999"),
        denied,
        "{backend:?}: exactly the denied datagrams hit the Deny rule"
    );
    assert!(
        rule_hits(&after, "mdns") - rule_hits(&before, "mdns") >= ALLOWED as f64,
        "{backend:?}: the allowed flows hit the Allow rule\n{after:#?}"
    );
    // Each backend's kernel drop counts are exported, only for the reasons it counts (their
    // values depend on load): AF_XDP's rings, AF_PACKET's socket queues.
    let mut kernel_series: Vec<&str> = after
        .keys()
        .filter(|k| k.starts_with("portcullis_kernel_drops_total{"))
        .map(String::as_str)
        .collect();
    kernel_series.sort_unstable();
    let mut expected_series: Vec<&str> = match backend {
        Backend::Afxdp => vec![
            r#"portcullis_kernel_drops_total{port="outside",reason="fill_ring_empty"}"#,
            r#"portcullis_kernel_drops_total{port="outside",reason="rx_ring_full"}"#,
            r#"portcullis_kernel_drops_total{port="inside",reason="fill_ring_empty"}"#,
            r#"portcullis_kernel_drops_total{port="inside",reason="rx_ring_full"}"#,
        ],
        Backend::Afpacket => vec![
            r#"portcullis_kernel_drops_total{port="outside",reason="socket_queue_full"}"#,
            r#"portcullis_kernel_drops_total{port="inside",reason="socket_queue_full"}"#,
        ],
    };
    expected_series.sort_unstable();
    assert_eq!(kernel_series, expected_series, "{backend:?}");

    let status = gateway.stop(Signal::Term);
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());
    let stdout = gateway.stdout();
    let policy_drops = gateway::counter_after(&stdout, "policy ");
    assert!(
        policy_drops >= DENIED as u64,
        "{backend:?}: final counters show {policy_drops} policy drops, sent {DENIED}: {stdout}"
    );
}

// ---- the table: every scenario with both backends ----

/// What a scenario runs in: a turn among the scenarios running at once, its own topology,
/// and a policy directory holding its first policy.
struct Scenario {
    _turn: Turn,
    topology: Topology,
    dir: ConfigDir,
}

impl Scenario {
    /// `code` names the topology (with the backend's letter), `name` the directory; `None`
    /// when the harness is missing (see `Topology::new`).
    fn start(code: &str, name: &str, backend: Backend, policy: &str) -> Option<Scenario> {
        let turn = scenario_turn();
        let topology = Topology::new(&tag(code, backend))?;
        let dir = ConfigDir::new(&format!("{name}-{}", backend.name()));
        dir.write("policy.yaml", policy);
        Some(Scenario {
            _turn: turn,
            topology,
            dir,
        })
    }
}

/// A topology tag unique to one scenario and backend (kept short: interface names have at
/// most 15 characters).
fn tag(scenario: &str, backend: Backend) -> String {
    let letter = match backend {
        Backend::Afpacket => 'p',
        Backend::Afxdp => 'x',
    };
    format!("{scenario}{letter}")
}

/// A counting semaphore: at most `CONCURRENT_SCENARIOS` scenarios hold a turn at once.
struct Turns {
    taken: Mutex<usize>,
    freed: Condvar,
}

static TURNS: Turns = Turns {
    taken: Mutex::new(0),
    freed: Condvar::new(),
};

struct Turn;

impl Drop for Turn {
    fn drop(&mut self) {
        let mut taken = lock(&TURNS.taken);
        *taken -= 1;
        TURNS.freed.notify_one();
    }
}

fn lock(mutex: &Mutex<usize>) -> MutexGuard<'_, usize> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn scenario_turn() -> Turn {
    let mut taken = lock(&TURNS.taken);
    while *taken >= CONCURRENT_SCENARIOS {
        taken = TURNS
            .freed
            .wait(taken)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    *taken += 1;
    Turn
}

macro_rules! both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod afpacket {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(super::Backend::Afpacket);
                }
            )*
        }
        mod afxdp {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(super::Backend::Afxdp);
                }
            )*
        }
    };
}

both_backends!(
    truth_table,
    return_traffic,
    do_not_track,
    established_survives_reload,
    sigterm_cleans_up,
    counters,
);
