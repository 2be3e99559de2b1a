//! The veth harness for integration tests: the topology of `scripts/harness` (built by that
//! very script, so the two cannot drift apart), with names unique to one test of one process,
//! removed on drop; and a gateway running a backend on threads inside it.
//!
//! Without root, `ip netns` or the tools the harness uses, tests skip with a message, except
//! under `CI=true`, where they fail: CI must really push packets.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use portcullis::dataplane::afpacket::{self, AfPacketPort};
use portcullis::dataplane::netns::{NetNs, NetnsThread};
use portcullis::dataplane::{
    BackendConfig, BackendError, BatchStats, Disposition, PortPair, PortSide,
};

/// Outside hosts, then inside hosts, as `scripts/harness` numbers them.
pub const OUTSIDE_V4: [&str; 4] = [
    "203.0.113.10",
    "203.0.113.11",
    "203.0.113.12",
    "203.0.113.13",
];
pub const INSIDE_V4: [&str; 4] = [
    "203.0.113.110",
    "203.0.113.111",
    "203.0.113.112",
    "203.0.113.113",
];
pub const OUTSIDE_V6: [&str; 4] = [
    "2001:db8:2::10",
    "2001:db8:2::11",
    "2001:db8:2::12",
    "2001:db8:2::13",
];
pub const INSIDE_V6: [&str; 4] = [
    "2001:db8:2::110",
    "2001:db8:2::111",
    "2001:db8:2::112",
    "2001:db8:2::113",
];
/// The VLAN sub-interfaces' addresses (`scripts/harness vlan`).
pub const OUTSIDE_VLAN_V4: &str = "198.51.100.10";
pub const INSIDE_VLAN_V4: &str = "198.51.100.110";

/// Longest topology name: interface names add up to three characters and may have 15.
const MAX_NAME: usize = 12;

/// Longest a gateway runs, whatever the test does: no test can leave one forwarding forever.
const GATEWAY_LIFETIME: Duration = Duration::from_secs(120);
/// How long a gateway's poll waits; also how long stopping one takes at most.
const GATEWAY_POLL: Duration = Duration::from_millis(20);

/// One side of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Outside,
    Inside,
    Gateway,
}

impl Side {
    fn harness_name(self) -> &'static str {
        match self {
            Side::Outside => "outside",
            Side::Inside => "inside",
            Side::Gateway => "gateway",
        }
    }
}

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/harness")
}

/// `ip netns add` makes `/run/netns` a shared mount on first use; tests building topologies at
/// once take turns so that they do not race on that.
static HARNESS_LOCK: Mutex<()> = Mutex::new(());

fn run_harness(args: &[&str]) -> Output {
    let _turn = HARNESS_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Command::new(harness())
        .args(args)
        .output()
        .expect("run scripts/harness")
}

/// Whether this machine can build the harness; `Err` says why not.
fn harness_available() -> &'static Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE.get_or_init(|| {
        for tool in ["ip", "ethtool", "ping"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|output| output.status.success());
            if !found {
                return Err(format!(
                    "{tool} is not installed (scripts/setup installs it)"
                ));
            }
        }
        let probe = format!("pcprobe{}", std::process::id());
        let added = Command::new("ip").args(["netns", "add", &probe]).output();
        match added {
            Ok(output) if output.status.success() => {
                let _ = Command::new("ip")
                    .args(["netns", "delete", &probe])
                    .output();
                Ok(())
            }
            Ok(output) => Err(format!(
                "cannot create a network namespace (needs root): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(error) => Err(format!("cannot run ip: {error}")),
        }
    })
}

/// True when the harness can run. Otherwise prints why the test is skipped and returns false,
/// or, under `CI=true`, fails the test.
pub fn harness_or_skip(test: &str) -> bool {
    match harness_available() {
        Ok(()) => true,
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: the veth harness cannot run under CI=true: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED {test}: the veth harness cannot run here: {reason}");
            false
        }
    }
}

/// The harness's namespaces and veths for one test, removed on drop.
#[derive(Debug)]
pub struct Topology {
    name: String,
}

impl Topology {
    /// Builds the topology for test `tag` (a few characters, unique among the tests of this
    /// file), or returns `None` after saying why the test is skipped.
    pub fn new(tag: &str) -> Option<Topology> {
        // The test harness names each test's thread after the test.
        let current = std::thread::current();
        if !harness_or_skip(current.name().unwrap_or(tag)) {
            return None;
        }
        let name = format!("{tag}{}", base36(std::process::id()));
        assert!(
            name.len() <= MAX_NAME && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "topology name {name:?}: use a shorter tag"
        );
        let output = run_harness(&["up", &name]);
        assert!(
            output.status.success(),
            "scripts/harness up {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(Topology { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self, side: Side) -> String {
        match side {
            Side::Outside => format!("{}-out", self.name),
            Side::Inside => format!("{}-in", self.name),
            Side::Gateway => format!("{}-gw", self.name),
        }
    }

    pub fn netns(&self, side: Side) -> NetNs {
        NetNs::open(&self.namespace(side)).unwrap()
    }

    /// The gateway's port facing `side`'s hosts.
    pub fn port(&self, side: PortSide) -> String {
        match side {
            PortSide::Outside => format!("{}-go", self.name),
            PortSide::Inside => format!("{}-gi", self.name),
        }
    }

    /// The host interface on `side`.
    pub fn host_interface(&self, side: PortSide) -> String {
        match side {
            PortSide::Outside => format!("{}-o", self.name),
            PortSide::Inside => format!("{}-i", self.name),
        }
    }

    pub fn backend_config(&self, workers: usize) -> BackendConfig {
        BackendConfig {
            outside: self.port(PortSide::Outside),
            inside: self.port(PortSide::Inside),
            workers,
            batch_size: 64,
        }
    }

    /// Runs `command` in `side`'s namespace (through `scripts/harness exec`).
    pub fn exec(&self, side: Side, command: &[&str]) -> Output {
        let mut args = vec!["exec", &self.name, side.harness_name()];
        args.extend_from_slice(command);
        Command::new(harness())
            .args(&args)
            .output()
            .expect("run scripts/harness exec")
    }

    /// Turns IPv6 off on the outside host's interface (no neighbour discovery, MLD or router
    /// solicitations), so that every frame reaching the outside port is the test's own.
    pub fn silence_outside_host(&self) {
        let host = self.host_interface(PortSide::Outside);
        let silenced = self.exec_outside(&[
            "sh",
            "-c",
            &format!("echo 1 > /proc/sys/net/ipv6/conf/{host}/disable_ipv6"),
        ]);
        assert!(silenced.status.success(), "{silenced:?}");
    }

    /// A command to run in the gateway's namespace as a process without the right to
    /// `SCHED_FIFO`: `CAP_SYS_NICE` out of its bounding and inheritable sets, `RLIMIT_RTPRIO`
    /// 0, and ended by `timeout` (by its own PID) after 20 s whatever it does. Add the
    /// program and its arguments.
    pub fn without_realtime_rights(&self) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(Side::Gateway)])
            .args(["timeout", "20", "prlimit", "--rtprio=0"])
            .args(["setpriv", "--bounding-set", "-sys_nice"])
            .args(["--inh-caps", "-sys_nice"]);
        command
    }

    pub fn exec_outside(&self, command: &[&str]) -> Output {
        self.exec(Side::Outside, command)
    }

    pub fn exec_inside(&self, command: &[&str]) -> Output {
        self.exec(Side::Inside, command)
    }

    pub fn exec_gateway(&self, command: &[&str]) -> Output {
        self.exec(Side::Gateway, command)
    }

    /// One echo request from `from` to `address`, waiting at most a second for the reply.
    pub fn ping(&self, from: Side, address: &str) -> bool {
        self.exec(
            from,
            &["ping", "-q", "-n", "-c", "1", "-W", "1", "-w", "2", address],
        )
        .status
        .success()
    }

    /// Adds the VLAN 100 sub-interfaces; `Err` carries the harness's complaint (kernels
    /// without 802.1Q support cannot make them).
    pub fn add_vlan(&self) -> Result<(), String> {
        let output = run_harness(&["vlan", &self.name]);
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let output = run_harness(&["down", &self.name]);
        if !output.status.success() {
            eprintln!(
                "scripts/harness down {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

fn base36(mut value: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut digits = Vec::new();
    loop {
        digits.push(DIGITS[(value % 36) as usize]);
        value /= 36;
        if value == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap()
}

/// What one gateway worker did over its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub received: [u64; 2],
    pub forwarded: [u64; 2],
    pub dropped: [u64; 2],
    pub tx_failed: [u64; 2],
    pub truncated: [u64; 2],
}

impl Totals {
    fn add(&mut self, batch: &BatchStats) {
        for i in 0..2 {
            self.received[i] += u64::from(batch.received[i]);
            self.forwarded[i] += u64::from(batch.forwarded[i]);
            self.dropped[i] += u64::from(batch.dropped[i]);
            self.tx_failed[i] += u64::from(batch.tx_failed[i]);
            self.truncated[i] += u64::from(batch.truncated[i]);
        }
    }

    pub fn sum(all: &[Totals]) -> Totals {
        let mut total = Totals::default();
        for worker in all {
            for i in 0..2 {
                total.received[i] += worker.received[i];
                total.forwarded[i] += worker.forwarded[i];
                total.dropped[i] += worker.dropped[i];
                total.tx_failed[i] += worker.tx_failed[i];
                total.truncated[i] += worker.truncated[i];
            }
        }
        total
    }
}

pub type Decide = dyn Fn(usize, PortSide, &[u8]) -> Disposition + Send + Sync;

/// A backend forwarding between the topology's ports (AF_PACKET unless started with
/// [`Gateway::start_with`]), one thread per worker in the gateway namespace, each handing
/// frames to `decide(worker, side, frame)`.
pub struct Gateway {
    stop: Arc<AtomicBool>,
    workers: Vec<NetnsThread<Result<Totals, BackendError>>>,
    info: String,
}

impl Gateway {
    /// The AF_PACKET backend.
    pub fn start<D>(topology: &Topology, workers: usize, decide: D) -> Gateway
    where
        D: Fn(usize, PortSide, &[u8]) -> Disposition + Send + Sync + 'static,
    {
        Gateway::start_with(topology, workers, afpacket::open, decide)
    }

    /// The backend `open` opens (e.g. `afxdp::open`); panics if a worker cannot open.
    pub fn start_with<P, O, D>(topology: &Topology, workers: usize, open: O, decide: D) -> Gateway
    where
        P: PortPair + 'static,
        O: Fn(&BackendConfig, usize) -> Result<P, BackendError> + Send + Sync + 'static,
        D: Fn(usize, PortSide, &[u8]) -> Disposition + Send + Sync + 'static,
    {
        match Gateway::try_start_with(topology, workers, open, decide) {
            Ok(gateway) => gateway,
            Err(error) => panic!("gateway worker failed to open: {error}"),
        }
    }

    /// [`Gateway::start_with`], returning the first worker's error to open instead.
    pub fn try_start_with<P, O, D>(
        topology: &Topology,
        workers: usize,
        open: O,
        decide: D,
    ) -> Result<Gateway, String>
    where
        P: PortPair + 'static,
        O: Fn(&BackendConfig, usize) -> Result<P, BackendError> + Send + Sync + 'static,
        D: Fn(usize, PortSide, &[u8]) -> Disposition + Send + Sync + 'static,
    {
        let open = Arc::new(open);
        let decide: Arc<Decide> = Arc::new(decide);
        let stop = Arc::new(AtomicBool::new(false));
        let namespace = topology.netns(Side::Gateway);
        let config = topology.backend_config(workers);
        let (ready_tx, ready_rx) = mpsc::channel();
        let threads = (0..workers)
            .map(|worker| {
                let (open, decide, stop, config, ready) = (
                    open.clone(),
                    decide.clone(),
                    stop.clone(),
                    config.clone(),
                    ready_tx.clone(),
                );
                namespace
                    .spawn(&format!("gateway {worker}"), move || {
                        run_worker(&config, worker, &*open, &*decide, &stop, &ready)
                    })
                    .unwrap()
            })
            .collect();
        let mut gateway = Gateway {
            stop,
            workers: threads,
            info: String::new(),
        };
        let mut failure = None;
        for _ in 0..workers {
            let opened = ready_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("a gateway worker did not open its ports within 10 s");
            match opened {
                Ok(info) => gateway.info = info,
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        match failure {
            None => Ok(gateway),
            Some(error) => {
                // Stop the workers that did open; those that did not have returned already.
                gateway.stop.store(true, Ordering::Relaxed);
                for worker in gateway.workers.drain(..) {
                    let _ = worker.join();
                }
                Err(error)
            }
        }
    }

    /// The backend's description of itself (`PortPair::info`).
    pub fn info(&self) -> &str {
        &self.info
    }

    /// Stops the workers, closing their sockets, and returns what each did.
    pub fn stop(mut self) -> Vec<Totals> {
        self.stop_workers()
    }

    fn stop_workers(&mut self) -> Vec<Totals> {
        // Relaxed: the flag carries no data; the join below orders everything else.
        self.stop.store(true, Ordering::Relaxed);
        self.workers
            .drain(..)
            .map(|worker| {
                worker
                    .join()
                    .expect("gateway worker panicked")
                    .expect("gateway worker failed")
            })
            .collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop_workers();
        } else {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

fn run_worker<P, O>(
    config: &BackendConfig,
    worker: usize,
    open: &O,
    decide: &Decide,
    stop: &AtomicBool,
    ready: &mpsc::Sender<Result<String, String>>,
) -> Result<Totals, BackendError>
where
    P: PortPair,
    O: Fn(&BackendConfig, usize) -> Result<P, BackendError>,
{
    let mut pair = match open(config, worker) {
        Ok(pair) => pair,
        Err(error) => {
            let _ = ready.send(Err(error.to_string()));
            return Err(error);
        }
    };
    let _ = ready.send(Ok(pair.info().to_string()));
    let mut totals = Totals::default();
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < GATEWAY_LIFETIME {
        let batch = pair.poll(GATEWAY_POLL, |side, frame| decide(worker, side, frame))?;
        totals.add(&batch);
    }
    Ok(totals)
}

// Frames injected and captured on the harness ports, shared by the backends' tests.

/// The UDP ports of an Ethernet frame, if it carries UDP.
pub fn udp_ports(frame: &[u8]) -> Option<(u16, u16)> {
    match SlicedPacket::from_ethernet(frame).ok()?.transport? {
        TransportSlice::Udp(udp) => Some((udp.source_port(), udp.destination_port())),
        _ => None,
    }
}

pub const INJECTED_SOURCE_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
pub const INJECTED_DESTINATION_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x02];

/// An untagged UDP frame between documentation addresses, its payload naming the case.
pub fn marked_udp_frame(case: usize) -> Vec<u8> {
    let payload = format!("vlan case {case}");
    let builder = PacketBuilder::ethernet2(INJECTED_SOURCE_MAC, INJECTED_DESTINATION_MAC)
        .ipv4(
            Ipv4Addr::new(198, 51, 100, 10).octets(),
            Ipv4Addr::new(198, 51, 100, 110).octets(),
            64,
        )
        .udp(43000, 43001);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload.as_bytes()).unwrap();
    frame
}

/// `frame` with `tags` (TPID, TCI), outermost first, after its MAC addresses.
pub fn with_tags(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut tagged = frame[..12].to_vec();
    for (tpid, tci) in tags {
        tagged.extend_from_slice(&tpid.to_be_bytes());
        tagged.extend_from_slice(&tci.to_be_bytes());
    }
    tagged.extend_from_slice(&frame[12..]);
    tagged
}

pub fn open_port(topology: &Topology, side: Side, interface: &str) -> AfPacketPort {
    topology
        .netns(side)
        .run(|| AfPacketPort::open(interface, 16))
        .unwrap()
        .unwrap()
}

/// The frames from [`INJECTED_SOURCE_MAC`] that `port` receives until it has `expected` of
/// them or `limit` has passed.
pub fn capture_marked(port: &mut AfPacketPort, expected: usize, limit: Duration) -> Vec<Vec<u8>> {
    let mut captured = Vec::new();
    let deadline = Instant::now() + limit;
    while captured.len() < expected && Instant::now() < deadline {
        port.receive(Duration::from_millis(100), |frame| {
            if frame[6..12] == INJECTED_SOURCE_MAC {
                captured.push(frame.to_vec());
            }
        })
        .unwrap();
    }
    captured
}
