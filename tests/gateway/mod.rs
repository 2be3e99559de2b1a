//! `portcullis run` as a real process in a `scripts/harness` topology, for the tests that
//! drive the binary (`gateway_run`, `gateway_truth`, and through `observe` `reload` and
//! `admin`): the process in the gateway namespace with either backend, its admin listener, a
//! policy directory (plain or laid out as a Kubernetes ConfigMap volume), echo servers on the
//! inside hosts and probes (ping, TCP, UDP) from a chosen outside address.
//!
//! The process is ended only through its own PID (a signal, or SIGKILL on drop), and every
//! wait and every traffic loop has a time limit.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use portcullis::dataplane::PortSide;

use crate::support::{Side, Topology};

/// Longest wait for the gateway to start, reload or stop: generous, as the machine is shared.
pub const PROCESS_WAIT: Duration = Duration::from_secs(30);
/// Longest a TCP connect, echo or UDP reply may take before it counts as blocked.
pub const TCP_WAIT: Duration = Duration::from_secs(2);
/// The admin listener's default address, inside the gateway namespace.
pub const ADMIN: &str = "127.0.0.1:9091";
/// Longest the echo servers run, whatever the test does.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);

/// The dataplane backend a gateway runs (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Afpacket,
    Afxdp,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Afpacket => "afpacket",
            Backend::Afxdp => "afxdp",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Signal {
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

// ---- policies ----

/// YAML: the inside host endpoint `.110` (`web`, label `role: web`), both families, ending in
/// a newline. A macro, so that `concat!` can build constant policies from it.
macro_rules! web_endpoint {
    () => {
        r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: web
  labels: { role: web }
spec:
  node: web
  expectedIPs: ["203.0.113.110", "2001:db8:2::110"]
"#
    };
}

/// YAML: the host endpoints `.110` (`web`) and `.111` (`closed`, label `role: closed`), both
/// families each.
macro_rules! inside_endpoints {
    () => {
        concat!(
            $crate::gateway::web_endpoint!(),
            r#"---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: closed
  labels: { role: closed }
spec:
  node: closed
  expectedIPs: ["203.0.113.111", "2001:db8:2::111"]
"#
        )
    };
}

/// YAML: every host endpoint may send anything, so that replies never depend on connection
/// tracking alone.
macro_rules! hosts_send_anything {
    () => {
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: hosts-send-anything
spec:
  selector: has(role)
  types: [Egress]
  egress:
    - action: Allow
"#
    };
}

#[allow(unused_imports)]
pub(crate) use {hosts_send_anything, inside_endpoints, web_endpoint};

/// `.110` (web) answers ping and TCP 80; `.111` (closed) has no policy: host endpoints deny
/// by default. Both may send anything.
pub const OPEN_POLICY: &str = concat!(
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
    - action: Allow
      protocol: ICMPv6
    - action: Allow
      protocol: TCP
      destination: { ports: [80] }
---
"#,
    hosts_send_anything!()
);

// ---- the gateway process ----

/// `portcullis run` in the gateway namespace. `ip netns exec` replaces itself with the
/// binary, so the child's PID is the gateway's. Killed (by that PID) on drop if still running.
pub struct GatewayProcess {
    child: Child,
    namespace: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl GatewayProcess {
    /// Starts the gateway with `backend` and waits until it forwards.
    pub fn start(
        topology: &Topology,
        dir: &Path,
        backend: Backend,
        extra: &[&str],
    ) -> GatewayProcess {
        GatewayProcess::start_with(topology, dir, Some(backend), extra)
    }

    /// Starts the gateway with `backend` (`None`: the binary's default, no `--backend`) and
    /// waits until it forwards.
    pub fn start_with(
        topology: &Topology,
        dir: &Path,
        backend: Option<Backend>,
        extra: &[&str],
    ) -> GatewayProcess {
        let gateway = GatewayProcess::spawn(topology, dir, backend, extra, &[]);
        gateway.wait_for_stderr("forwarding between");
        gateway
    }

    /// Starts the gateway with `backend` (`None`: the default) and the environment variables
    /// `env`, without waiting for it.
    pub fn spawn(
        topology: &Topology,
        dir: &Path,
        backend: Option<Backend>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> GatewayProcess {
        let namespace = topology.namespace(Side::Gateway);
        let backend = backend.map(|backend| ["--backend", backend.name()]);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &namespace])
            .arg(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "--config"])
            .arg(dir)
            .args(["--outside", &topology.port(PortSide::Outside)])
            .args(["--inside", &topology.port(PortSide::Inside)])
            .args(backend.iter().flatten())
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn wait_for_stderr(&self, needle: &str) {
        self.wait_for_count(needle, 1);
    }

    /// Waits until `needle` stands `count` times in the standard error; the test fails if
    /// the gateway exits first.
    pub fn wait_for_count(&self, needle: &str, count: usize) {
        let started = Instant::now();
        while self.stderr().matches(needle).count() < count {
            assert!(
                started.elapsed() < PROCESS_WAIT,
                "not {count} × {needle:?} from the gateway:\n{}",
                self.stderr()
            );
            assert!(self.running(), "the gateway exited:\n{}", self.stderr());
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process still runs (not yet a zombie); `try_wait` would need `&mut`.
    fn running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
                Some(state != "Z" && state != "X")
            })
            .unwrap_or(false)
    }

    pub fn signal(&self, signal: Signal) {
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

    /// Sends `signal` and waits (at most `PROCESS_WAIT`) for the exit, then for the last of
    /// the output.
    pub fn stop(&mut self, signal: Signal) -> ExitStatus {
        self.stop_within(signal, PROCESS_WAIT)
    }

    /// Sends `signal` and waits at most `limit` for the exit; the test fails otherwise.
    pub fn stop_within(&mut self, signal: Signal, limit: Duration) -> ExitStatus {
        self.signal(signal);
        self.wait_exit(limit, &format!("{signal:?}"))
    }

    /// SIGKILL (to this child's PID only), then waits for the exit.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.wait_exit(PROCESS_WAIT, "SIGKILL")
    }

    /// Waits at most `limit` for the exit (after `what`), then for the last of the output.
    fn wait_exit(&mut self, limit: Duration, what: &str) -> ExitStatus {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < limit,
                "the gateway did not exit within {limit:?} after {what}:\n{}",
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

    /// `/metrics` of the admin listener as a map from series (name and labels, as written)
    /// to value.
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

/// The number right after `prefix` in `text`.
pub fn counter_after(text: &str, prefix: &str) -> u64 {
    let rest = text
        .split(prefix)
        .nth(1)
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {text}"))
}

/// One `GET` on the admin listener inside `namespace`; `None` when nothing answers.
pub fn http_get(namespace: &str, path: &str) -> Option<(u16, String)> {
    let ns = portcullis::dataplane::netns::NetNs::open(namespace).unwrap();
    let addr: SocketAddr = ADMIN.parse().unwrap();
    let stream = ns
        .run(move || TcpStream::connect_timeout(&addr, TCP_WAIT))
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

// ---- the policy directory ----

/// A policy directory under the temporary directory, removed on drop. Plain, or laid out
/// like a Kubernetes ConfigMap volume (`x.yaml -> ..data/x.yaml`, `..data -> ..<version>`).
pub struct ConfigDir {
    path: PathBuf,
    versions: AtomicUsize,
}

impl ConfigDir {
    /// `tag` must be unique among the tests of one process.
    pub fn new(tag: &str) -> ConfigDir {
        let path =
            std::env::temp_dir().join(format!("portcullis-gateway-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        ConfigDir {
            path,
            versions: AtomicUsize::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces `name` in one step (write aside, rename), as a careful operator would.
    pub fn write(&self, name: &str, text: &str) {
        let aside = self.path.join(format!(".{name}.tmp"));
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, self.path.join(name)).unwrap();
    }

    /// Swaps in a new version of the ConfigMap holding `files`, as the kubelet does: a new
    /// versioned directory, `..data_tmp` renamed over `..data`, links for new names, old
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
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---- echo servers on the inside hosts ----

/// Echo servers in one hosts' namespace: TCP on `tcp_ports` of every address (each
/// connection served on its own thread), UDP on `udp_ports` of each of `udp_addresses` (one
/// socket per address, so that a reply leaves from the address the request went to).
/// Stopped on drop, and after two minutes whatever happens.
pub struct EchoServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServers {
    /// TCP only, on the inside hosts.
    pub fn start(topology: &Topology, tcp_ports: &[u16]) -> EchoServers {
        EchoServers::start_in(topology, Side::Inside, tcp_ports, &[], &[])
    }

    /// As described above, in `side`'s namespace.
    pub fn start_in(
        topology: &Topology,
        side: Side,
        tcp_ports: &[u16],
        udp_addresses: &[&str],
        udp_ports: &[u16],
    ) -> EchoServers {
        let stop = Arc::new(AtomicBool::new(false));
        let inside = topology.netns(side);
        let mut threads = Vec::new();
        for &port in tcp_ports {
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
            threads.push(thread::spawn(move || serve_tcp(listener, &stop)));
        }
        for address in udp_addresses {
            for &port in udp_ports {
                let address = SocketAddr::new(address.parse().unwrap(), port);
                let socket = inside
                    .run(move || {
                        let socket = UdpSocket::bind(address)?;
                        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
                        Ok::<_, io::Error>(socket)
                    })
                    .unwrap()
                    .unwrap();
                let stop = Arc::clone(&stop);
                threads.push(thread::spawn(move || serve_udp(&socket, &stop)));
            }
        }
        EchoServers { stop, threads }
    }
}

fn serve_tcp(listener: TcpListener, stop: &AtomicBool) {
    let started = Instant::now();
    let mut connections = Vec::new();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < SERVER_LIFETIME {
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

fn serve_udp(socket: &UdpSocket, stop: &AtomicBool) {
    let started = Instant::now();
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) && started.elapsed() < SERVER_LIFETIME {
        if let Ok((n, from)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(&buffer[..n], from);
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

// ---- probes from the outside hosts ----

/// A connection from the outside hosts' namespace to `address:port` (source address chosen
/// by the kernel).
pub fn connect(topology: &Topology, address: &str, port: u16) -> io::Result<TcpStream> {
    connect_from(topology, None, address, port)
}

/// A connection from the outside hosts' namespace to `address:port`, from `from` when given.
pub fn connect_from(
    topology: &Topology,
    from: Option<&str>,
    address: &str,
    port: u16,
) -> io::Result<TcpStream> {
    connect_in(topology, Side::Outside, from, address, port)
}

/// A connection from `side`'s namespace to `address:port`, from `from` when given.
pub fn connect_in(
    topology: &Topology,
    side: Side,
    from: Option<&str>,
    address: &str,
    port: u16,
) -> io::Result<TcpStream> {
    let to = SocketAddr::new(address.parse::<IpAddr>().unwrap(), port);
    let from = from.map(|from| SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0));
    let stream = topology
        .netns(side)
        .run(move || {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(to),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            if let Some(from) = from {
                socket.bind(&from.into())?;
            }
            socket.connect_timeout(&to.into(), TCP_WAIT)?;
            Ok::<_, io::Error>(TcpStream::from(socket))
        })
        .unwrap()?;
    stream.set_read_timeout(Some(TCP_WAIT))?;
    stream.set_write_timeout(Some(TCP_WAIT))?;
    Ok(stream)
}

/// Sends `message` and reads it back.
pub fn echo(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
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
pub fn tcp_echo(topology: &Topology, address: &str, port: u16) -> io::Result<()> {
    let mut stream = connect(topology, address, port)?;
    echo(&mut stream, b"hello")
}

/// [`tcp_echo`] from the outside address `from`.
pub fn tcp_echo_from(topology: &Topology, from: &str, address: &str, port: u16) -> io::Result<()> {
    let mut stream = connect_from(topology, Some(from), address, port)?;
    echo(&mut stream, b"hello")
}

/// A UDP socket of `side`'s namespace bound to `from:port` (port 0: any).
pub fn udp_socket(topology: &Topology, side: Side, from: &str, port: u16) -> UdpSocket {
    let addr = SocketAddr::new(from.parse().unwrap(), port);
    let socket = topology
        .netns(side)
        .run(move || UdpSocket::bind(addr))
        .unwrap()
        .unwrap();
    socket.set_read_timeout(Some(TCP_WAIT)).unwrap();
    socket
}

/// One datagram from `from` (outside) to `address:port` (an inside echo server); true when
/// the echo comes back within `TCP_WAIT`.
pub fn udp_echo_from(topology: &Topology, from: &str, address: &str, port: u16) -> bool {
    let socket = udp_socket(topology, Side::Outside, from, 0);
    let message = format!("udp {from} -> {address}:{port}");
    socket.send_to(message.as_bytes(), (address, port)).unwrap();
    let mut buffer = [0u8; 256];
    match socket.recv_from(&mut buffer) {
        Ok((n, _)) => &buffer[..n] == message.as_bytes(),
        Err(_) => false,
    }
}

/// One echo request from the outside address `from` to `address`, waiting at most a second
/// for the reply.
pub fn ping_from(topology: &Topology, from: &str, address: &str) -> bool {
    topology
        .exec_outside(&[
            "ping", "-q", "-n", "-c", "1", "-W", "1", "-w", "2", "-I", from, address,
        ])
        .status
        .success()
}
