//! Helpers for the reload and admin tests: `portcullis run` as a process in a harness
//! topology, its admin listener reached from inside the gateway namespace, policy
//! directories (plain or laid out as a Kubernetes ConfigMap volume), and numbered UDP
//! datagrams between the outside and inside hosts.
//!
//! Every wait is bounded; the process is ended only through its own PID.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use portcullis::dataplane::PortSide;

use crate::support::{Side, Topology};

/// Longest wait for the gateway to start, reload or stop: generous, the machine is shared.
pub const PROCESS_WAIT: Duration = Duration::from_secs(30);
/// The admin listener, inside the gateway namespace.
pub const ADMIN: &str = "127.0.0.1:9091";

// ---- the gateway process ----

/// `portcullis run` in the gateway namespace (`ip netns exec` replaces itself with the binary,
/// so the child's PID is the gateway's). Killed by that PID on drop if still running.
pub struct GatewayProcess {
    child: Child,
    namespace: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl GatewayProcess {
    /// Starts the gateway without waiting for it.
    pub fn spawn(topology: &Topology, dir: &Path, extra: &[&str]) -> GatewayProcess {
        GatewayProcess::spawn_with_env(topology, dir, extra, &[])
    }

    /// As [`GatewayProcess::spawn`], with extra environment variables.
    pub fn spawn_with_env(
        topology: &Topology,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> GatewayProcess {
        let namespace = topology.namespace(Side::Gateway);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &namespace])
            .arg(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "--config"])
            .arg(dir)
            .args(["--outside", &topology.port(PortSide::Outside)])
            .args(["--inside", &topology.port(PortSide::Inside)])
            .args(["--backend", "afpacket", "--admin-listen", ADMIN])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        GatewayProcess {
            child,
            namespace,
            stdout,
            stderr,
            readers,
        }
    }

    /// Starts the gateway and waits until it forwards.
    pub fn start(topology: &Topology, dir: &Path, extra: &[&str]) -> GatewayProcess {
        let gateway = GatewayProcess::spawn(topology, dir, extra);
        gateway.wait_for_stderr("forwarding between");
        gateway
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn wait_for_stderr(&self, needle: &str) {
        let started = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(
                started.elapsed() < PROCESS_WAIT,
                "no {needle:?} from the gateway:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {}", self.child.id());
    }

    /// SIGTERM, then waits for the exit and the last of the output.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("-TERM");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < PROCESS_WAIT,
                "the gateway did not exit:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }

    /// `GET path` on the admin listener: status code and body; `None` when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.namespace, path)
    }

    /// `/metrics` as a map from series (name and labels, as written) to value.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let Some((status, body)) = self.get("/metrics") else {
            panic!("the admin listener does not answer\n{}", self.stderr());
        };
        assert_eq!(status, 200, "{body}");
        parse_metrics(&body)
    }

    /// Polls `/metrics` until `done` holds for it; returns that scrape.
    pub fn wait_for_metrics(
        &self,
        what: &str,
        done: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> BTreeMap<String, f64> {
        let started = Instant::now();
        loop {
            let metrics = self.metrics();
            if done(&metrics) {
                return metrics;
            }
            assert!(
                started.elapsed() < PROCESS_WAIT,
                "{what} never happened; last scrape:\n{metrics:#?}\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGKILL to this child's PID only.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    })
}

/// One `GET` inside `namespace`; `None` when the connection is refused.
pub fn http_get(namespace: &str, path: &str) -> Option<(u16, String)> {
    let ns = portcullis::dataplane::netns::NetNs::open(namespace).unwrap();
    let addr: SocketAddr = ADMIN.parse().unwrap();
    let stream = ns
        .run(move || TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .unwrap();
    let mut stream = stream.ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {ADMIN}\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of a series, 0 when absent.
pub fn value(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}

pub const RELOAD_OK: &str = "portcullis_config_reloads_total{result=\"success\"}";
pub const RELOAD_FAILED: &str = "portcullis_config_reloads_total{result=\"failure\"}";
pub const LAST_RELOAD_OK: &str = "portcullis_config_last_reload_successful";
pub const GENERATION: &str = "portcullis_policy_generation";

// ---- policy directories ----

/// A policy directory `base/config`, removed on drop. Plain, or laid out like a Kubernetes
/// ConfigMap volume (`x.yaml -> ..data/x.yaml`, `..data -> ..<version>`).
pub struct ConfigDir {
    base: PathBuf,
    versions: AtomicUsize,
}

impl ConfigDir {
    pub fn new(tag: &str) -> ConfigDir {
        let base =
            std::env::temp_dir().join(format!("portcullis-observe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("config")).unwrap();
        ConfigDir {
            base,
            versions: AtomicUsize::new(0),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.base.join("config")
    }

    /// Replaces `name` in one step (write aside under a hidden name, rename).
    pub fn write(&self, name: &str, text: &str) {
        let aside = self.path().join(format!(".{name}.tmp"));
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, self.path().join(name)).unwrap();
    }

    /// Swaps in a new version of the ConfigMap holding `files`, as the kubelet does: a new
    /// timestamped directory, `..data_tmp` renamed over `..data`, links for new names, old
    /// version removed. The first call lays the volume out.
    pub fn swap(&self, files: &[(&str, &str)]) {
        let dir = self.path();
        let version = self.versions.fetch_add(1, Ordering::Relaxed);
        let data = format!("..v{version}");
        std::fs::create_dir(dir.join(&data)).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(&data).join(name), text).unwrap();
        }
        symlink(&data, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        for (name, _) in files {
            if std::fs::symlink_metadata(dir.join(name)).is_err() {
                symlink(format!("..data/{name}"), dir.join(name)).unwrap();
            }
        }
        if version > 0 {
            std::fs::remove_dir_all(dir.join(format!("..v{}", version - 1))).unwrap();
        }
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

// ---- quiet hosts ----

/// Removes background frames so that counters see only the test's traffic: IPv6 off on the
/// hosts (no router solicitations, MLD, DAD) and permanent neighbour entries (no ARP).
pub fn quiet_hosts(topology: &Topology) {
    for side in [Side::Outside, Side::Inside] {
        let out = topology.exec(
            side,
            &["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = topology.exec(
            side,
            &["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mac = |side: Side, port: PortSide| {
        let interface = topology.host_interface(port);
        let out = topology.exec(
            side,
            &["cat", &format!("/sys/class/net/{interface}/address")],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let outside_mac = mac(Side::Outside, PortSide::Outside);
    let inside_mac = mac(Side::Inside, PortSide::Inside);
    let pin = |side: Side, port: PortSide, addresses: &[&str], lladdr: &str| {
        let interface = topology.host_interface(port);
        for address in addresses {
            let out = topology.exec(
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
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
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

/// A UDP socket of the outside hosts' namespace, bound to `from` (port 0: any).
pub fn udp_from(topology: &Topology, from: &str, port: u16) -> UdpSocket {
    let addr: SocketAddr = SocketAddr::new(from.parse().unwrap(), port);
    topology
        .netns(Side::Outside)
        .run(move || UdpSocket::bind(addr))
        .unwrap()
        .unwrap()
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
    let socket = udp_from(topology, crate::support::OUTSIDE_V4[0], 0);
    socket.send_to(token.as_bytes(), (to, port)).unwrap();
    sink.wait_for(token.as_bytes(), patience).is_some()
}

// ---- policies ----

/// `.110` is a host endpoint; `allowed` lists the UDP ports its ingress allows (rule 0 each,
/// one policy per port), `denied` the ones an explicit Deny rule refuses (policy `deny-udp`).
pub fn udp_policy(allowed: &[u16], denied: &[u16]) -> String {
    let mut text = String::from(
        r#"apiVersion: projectcalico.org/v3
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
  name: hosts-send-anything
spec:
  selector: has(role)
  types: [Egress]
  egress:
    - action: Allow
"#,
    );
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
