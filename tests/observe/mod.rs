//! Helpers for the reload and admin tests on top of `gateway`: the gateway process started
//! the way these tests run it (afpacket, admin listener on `ADMIN`), quiet hosts, numbered
//! UDP datagrams between the outside and inside hosts, and the policies they load.
//!
//! Every wait is bounded; the process is ended only through its own PID.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use portcullis::dataplane::PortSide;

use crate::gateway::{ADMIN, Backend, GatewayProcess, hosts_send_anything, udp_socket};
use crate::support::{Side, Topology};

/// Starts the gateway (afpacket, admin listener on `ADMIN`) and waits until it forwards.
pub fn start_gateway(topology: &Topology, dir: &Path) -> GatewayProcess {
    let gateway = spawn_gateway(topology, dir, &[]);
    gateway.wait_for_stderr("forwarding between");
    gateway
}

/// As [`start_gateway`], with extra environment variables and without waiting for it.
pub fn spawn_gateway(topology: &Topology, dir: &Path, env: &[(&str, &str)]) -> GatewayProcess {
    GatewayProcess::spawn(
        topology,
        dir,
        Some(Backend::Afpacket),
        &["--admin-listen", ADMIN],
        env,
    )
}

pub const RELOAD_OK: &str = "portcullis_config_reloads_total{result=\"success\"}";
pub const RELOAD_FAILED: &str = "portcullis_config_reloads_total{result=\"failure\"}";
pub const LAST_RELOAD_OK: &str = "portcullis_config_last_reload_successful";
pub const GENERATION: &str = "portcullis_policy_generation";

// ---- quiet hosts ----

/// Runs `args` in `side`'s namespace; the test fails unless it succeeds.
fn exec_ok(topology: &Topology, side: Side, args: &[&str]) -> Output {
    let out = topology.exec(side, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Removes background frames so that counters see only the test's traffic: IPv6 off on the
/// hosts (no router solicitations, MLD, DAD) and permanent neighbour entries (no ARP).
pub fn quiet_hosts(topology: &Topology) {
    for side in [Side::Outside, Side::Inside] {
        for scope in ["all", "default"] {
            let setting = format!("net.ipv6.conf.{scope}.disable_ipv6=1");
            exec_ok(topology, side, &["sysctl", "-q", "-w", &setting]);
        }
    }
    let mac = |side: Side, port: PortSide| {
        let interface = topology.host_interface(port);
        let path = format!("/sys/class/net/{interface}/address");
        let out = exec_ok(topology, side, &["cat", &path]);
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let outside_mac = mac(Side::Outside, PortSide::Outside);
    let inside_mac = mac(Side::Inside, PortSide::Inside);
    let pin = |side: Side, port: PortSide, addresses: &[&str], lladdr: &str| {
        let interface = topology.host_interface(port);
        for address in addresses {
            exec_ok(
                topology,
                side,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    address,
                    "lladdr",
                    lladdr,
                    "dev",
                    &interface,
                    "nud",
                    "permanent",
                ],
            );
        }
    };
    pin(
        Side::Outside,
        PortSide::Outside,
        &crate::support::INSIDE_V4,
        &inside_mac,
    );
    pin(
        Side::Inside,
        PortSide::Inside,
        &crate::support::OUTSIDE_V4,
        &outside_mac,
    );
}

// ---- UDP ----

/// A datagram as received: the sender's port and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub from_port: u16,
    pub to_port: u16,
    pub payload: Vec<u8>,
    pub at: Instant,
}

/// Receivers on the given ports of the inside hosts' namespace (all addresses), recording
/// every datagram until dropped (and for two minutes at most).
pub struct UdpSink {
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Received>>>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpSink {
    pub fn start(topology: &Topology, ports: &[u16]) -> UdpSink {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let inside = topology.netns(Side::Inside);
        let mut threads = Vec::new();
        for &port in ports {
            let socket = inside
                .run(move || UdpSocket::bind(("0.0.0.0", port)))
                .unwrap()
                .unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let stop = Arc::clone(&stop);
            let received = Arc::clone(&received);
            threads.push(thread::spawn(move || {
                let started = Instant::now();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120)
                {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        received.lock().unwrap().push(Received {
                            from_port: from.port(),
                            to_port: port,
                            payload: buf[..n].to_vec(),
                            at: Instant::now(),
                        });
                    }
                }
            }));
        }
        UdpSink {
            stop,
            received,
            threads,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits up to `patience` for a datagram carrying `payload`.
    pub fn wait_for(&self, payload: &[u8], patience: Duration) -> Option<Received> {
        let started = Instant::now();
        loop {
            if let Some(r) = self.received().into_iter().find(|r| r.payload == payload) {
                return Some(r);
            }
            if started.elapsed() >= patience {
                return None;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Sends one datagram from a new socket (a new flow) and says whether it arrived within
/// `patience`.
pub fn new_flow_passes(
    topology: &Topology,
    sink: &UdpSink,
    to: &str,
    port: u16,
    token: &str,
    patience: Duration,
) -> bool {
    let socket = udp_socket(topology, Side::Outside, crate::support::OUTSIDE_V4[0], 0);
    socket.send_to(token.as_bytes(), (to, port)).unwrap();
    sink.wait_for(token.as_bytes(), patience).is_some()
}

// ---- policies ----

/// `.110` is a host endpoint; `allowed` lists the UDP ports its ingress allows (rule 0 each,
/// one policy per port), `denied` the ones an explicit Deny rule refuses (policy `deny-udp`).
pub fn udp_policy(allowed: &[u16], denied: &[u16]) -> String {
    let mut text = String::from(concat!(
        r#"apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: web
  labels: { role: web }
spec:
  node: web
  expectedIPs: ["203.0.113.110"]
---
"#,
        hosts_send_anything!()
    ));
    for port in allowed {
        text.push_str(&format!(
            r#"---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-udp-{port}
spec:
  order: 10
  selector: role == 'web'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: UDP
      destination: {{ ports: [{port}] }}
"#
        ));
    }
    if !denied.is_empty() {
        let ports: Vec<String> = denied.iter().map(u16::to_string).collect();
        text.push_str(&format!(
            r#"---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-udp
spec:
  order: 5
  selector: role == 'web'
  types: [Ingress]
  ingress:
    - action: Deny
      protocol: UDP
      destination: {{ ports: [{}] }}
"#,
            ports.join(", ")
        ));
    }
    text
}

/// A policy of `rules` rules on `.110` (each allowing TCP from one outside /32 to one port),
/// for measuring reloads of large directories.
pub fn large_policy(rules: usize) -> String {
    let mut text = udp_policy(&[5000], &[]);
    text.push_str(
        r#"---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: many-rules
spec:
  order: 20
  selector: role == 'web'
  types: [Ingress]
  ingress:
"#,
    );
    for i in 0..rules {
        text.push_str(&format!(
            "    - action: Allow\n      protocol: TCP\n      source: {{ nets: [\"198.51.100.{}/32\"] }}\n      destination: {{ ports: [{}] }}\n",
            i % 256,
            1024 + i % 50_000
        ));
    }
    text
}

/// The median of some durations.
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}
