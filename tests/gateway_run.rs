//! `portcullis run` as a real process: each test writes a small policy directory, builds its
//! own `scripts/harness` topology (removed on drop), starts the binary in the gateway
//! namespace with `--backend afpacket`, and probes with ping and TCP between the harness
//! hosts. The process is ended only through its own PID (a signal, or SIGKILL on drop), and
//! every wait has a time limit.
//!
//! Needs root; skips with a message without it, fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use portcullis::dataplane::PortSide;
use support::{INSIDE_V4, INSIDE_V6, Side, Topology};

/// Longest wait for the gateway to start, reload or stop: generous, as the machine is shared.
const PROCESS_WAIT: Duration = Duration::from_secs(20);
/// Longest a TCP connect or echo may take before it counts as blocked.
const TCP_WAIT: Duration = Duration::from_secs(2);
/// The ports the inside hosts listen on.
const WEB: u16 = 80;
const OTHER: u16 = 81;

/// `.110` (web) answers ping and TCP 80; `.111` (closed) has no policy: host endpoints deny
/// by default. Both may send anything, so that replies never depend on connection tracking.
const OPEN_POLICY: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: web
  labels: { role: web }
spec:
  node: web
  expectedIPs: ["203.0.113.110", "2001:db8:2::110"]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: closed
  labels: { role: closed }
spec:
  node: closed
  expectedIPs: ["203.0.113.111", "2001:db8:2::111"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: web
spec:
  selector: role == 'web'
  ingress:
    - action: Allow
      protocol: ICMP
    - action: Allow
      protocol: ICMPv6
    - action: Allow
      protocol: TCP
      destination: { ports: [80] }
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
"#;

/// The policy after the change: `.110` answers ping only, `.111` now takes TCP 80.
const CHANGED_POLICY: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: web
  labels: { role: web }
spec:
  node: web
  expectedIPs: ["203.0.113.110", "2001:db8:2::110"]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: closed
  labels: { role: closed }
spec:
  node: closed
  expectedIPs: ["203.0.113.111", "2001:db8:2::111"]
---
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
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: hosts-send-anything
spec:
  selector: has(role)
  types: [Egress]
  egress:
    - action: Allow
"#;

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
    let dir = ConfigDir::new("invalid");
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
    let dir = ConfigDir::new("missing");
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
    let dir = ConfigDir::new("allow");
    dir.write("policy.yaml", OPEN_POLICY);
    let _servers = EchoServers::start(&topology);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), &[]);

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
    let dir = ConfigDir::new("change");
    dir.write("policy.yaml", OPEN_POLICY);
    let _servers = EchoServers::start(&topology);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), &[]);
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
fn an_established_connection_survives_a_reload_that_denies_new_ones() {
    let Some(topology) = Topology::new("ge") else {
        return;
    };
    let dir = ConfigDir::new("established");
    dir.write("policy.yaml", OPEN_POLICY);
    let _servers = EchoServers::start(&topology);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), &[]);
    let mut established = connect(&topology, INSIDE_V4[0], WEB).expect("TCP 80 allowed");
    echo(&mut established, b"before").expect("echo before the change");

    dir.write("policy.yaml", CHANGED_POLICY);
    gateway.signal(Signal::Hup);
    gateway.wait_for_stderr("generation 2 published");

    assert!(
        tcp_echo(&topology, INSIDE_V4[0], WEB).is_err(),
        "a new connection to .110:80 passed after the change"
    );
    if let Err(error) = echo(&mut established, b"after") {
        panic!(
            "the established connection broke: {error}\n{}",
            gateway.stderr()
        );
    }
    assert!(gateway.stop(Signal::Term).success());
}

#[test]
fn sighup_with_a_broken_directory_keeps_the_old_policy() {
    let Some(topology) = Topology::new("gb") else {
        return;
    };
    let dir = ConfigDir::new("broken");
    dir.write("policy.yaml", OPEN_POLICY);
    let _servers = EchoServers::start(&topology);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), &[]);

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
    let dir = ConfigDir::new("workers");
    dir.write("policy.yaml", OPEN_POLICY);
    let _servers = EchoServers::start(&topology);
    let mut gateway = GatewayProcess::start(&topology, dir.path(), &["--workers", "2"]);
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

// ---- the gateway process ----

#[derive(Debug, Clone, Copy)]
enum Signal {
    Term,
    Int,
    Hup,
}

impl Signal {
    fn flag(self) -> &'static str {
        match self {
            Signal::Term => "-TERM",
            Signal::Int => "-INT",
            Signal::Hup => "-HUP",
        }
    }
}

/// `portcullis run` in the gateway namespace. `ip netns exec` replaces itself with the
/// binary, so the child's PID is the gateway's. Killed (by that PID) on drop if still running.
struct GatewayProcess {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl GatewayProcess {
    fn start(topology: &Topology, dir: &Path, extra: &[&str]) -> GatewayProcess {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &topology.namespace(Side::Gateway)])
            .arg(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "--config"])
            .arg(dir)
            .args(["--outside", &topology.port(PortSide::Outside)])
            .args(["--inside", &topology.port(PortSide::Inside)])
            .args(["--backend", "afpacket"])
            .args(extra)
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
        let gateway = GatewayProcess {
            child,
            stdout,
            stderr,
            readers,
        };
        gateway.wait_for_stderr("forwarding between");
        gateway
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn wait_for_stderr(&self, needle: &str) {
        let started = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(
                started.elapsed() < PROCESS_WAIT,
                "no {needle:?} from the gateway:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: Signal) {
        let status = Command::new("kill")
            .arg(signal.flag())
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "kill {} {}",
            signal.flag(),
            self.child.id()
        );
    }

    /// Sends `signal` and waits for the exit, then for the last of the output.
    fn stop(&mut self, signal: Signal) -> ExitStatus {
        self.signal(signal);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < PROCESS_WAIT,
                "the gateway did not exit after {signal:?}:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
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

/// The number right after `prefix` in `text`.
fn counter_after(text: &str, prefix: &str) -> u64 {
    let rest = text
        .split(prefix)
        .nth(1)
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {text}"))
}

// ---- the policy directory ----

struct ConfigDir(PathBuf);

impl ConfigDir {
    fn new(tag: &str) -> ConfigDir {
        let path = std::env::temp_dir().join(format!(
            "portcullis-gateway-run-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        ConfigDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Replaces `name` in one step (write aside, rename), as a careful operator would.
    fn write(&self, name: &str, text: &str) {
        let aside = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, self.0.join(name)).unwrap();
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- TCP through the gateway ----

/// Echo servers on ports `WEB` and `OTHER` of every inside address, each connection served on
/// its own thread; stopped on drop, and after two minutes whatever happens.
struct EchoServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServers {
    fn start(topology: &Topology) -> EchoServers {
        let stop = Arc::new(AtomicBool::new(false));
        let inside = topology.netns(Side::Inside);
        let mut threads = Vec::new();
        for port in [WEB, OTHER] {
            // The IPv6 wildcard takes IPv4 too (as v4-mapped addresses): a new namespace has
            // net.ipv6.bindv6only = 0.
            let address = SocketAddr::new("::".parse().unwrap(), port);
            let listener = inside
                .run(move || {
                    let listener = TcpListener::bind(address)?;
                    listener.set_nonblocking(true)?;
                    Ok::<_, io::Error>(listener)
                })
                .unwrap()
                .unwrap();
            let stop = Arc::clone(&stop);
            threads.push(thread::spawn(move || serve(listener, &stop)));
        }
        EchoServers { stop, threads }
    }
}

fn serve(listener: TcpListener, stop: &AtomicBool) {
    let started = Instant::now();
    let mut connections = Vec::new();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
        match listener.accept() {
            Ok((stream, _)) => connections.push(thread::spawn(move || echo_back(stream))),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break,
        }
    }
    drop(listener);
    for connection in connections {
        let _ = connection.join();
    }
}

/// Echoes until the peer closes, an error, or 30 s without data.
fn echo_back(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buffer = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 || stream.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
}

impl Drop for EchoServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A connection from the outside hosts' namespace to `address:port`.
fn connect(topology: &Topology, address: &str, port: u16) -> io::Result<TcpStream> {
    let to = SocketAddr::new(address.parse::<IpAddr>().unwrap(), port);
    let stream = topology
        .netns(Side::Outside)
        .run(move || TcpStream::connect_timeout(&to, TCP_WAIT))
        .unwrap()?;
    stream.set_read_timeout(Some(TCP_WAIT))?;
    stream.set_write_timeout(Some(TCP_WAIT))?;
    Ok(stream)
}

/// Sends `message` and reads it back.
fn echo(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    stream.write_all(message)?;
    let mut reply = vec![0u8; message.len()];
    stream.read_exact(&mut reply)?;
    if reply == message {
        Ok(())
    } else {
        Err(io::Error::other("a different reply"))
    }
}

/// A new connection to `address:port` from outside that carries one echo.
fn tcp_echo(topology: &Topology, address: &str, port: u16) -> io::Result<()> {
    let mut stream = connect(topology, address, port)?;
    echo(&mut stream, b"hello")
}
