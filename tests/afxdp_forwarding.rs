//! The AF_XDP backend pushing real frames between two veth hosts: each test builds its own
//! `scripts/harness` topology (removed on drop), runs the backend on threads inside the gateway
//! namespace with a `decide` closure, and sends bounded traffic between documentation
//! addresses. Every wait has a time limit.
//!
//! Needs root; skips with a message without it, fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use portcullis::dataplane::afxdp::{self, AfXdpOptions};
use portcullis::dataplane::netns::NetNs;
use portcullis::dataplane::{BackendConfig, BackendError, Disposition, PortPair, PortSide};
use support::{
    Gateway, INJECTED_SOURCE_MAC, INSIDE_V4, INSIDE_V6, INSIDE_VLAN_V4, OUTSIDE_V4, OUTSIDE_V6,
    OUTSIDE_VLAN_V4, Side, Topology, Totals, capture_marked, marked_udp_frame, open_port,
    udp_ports, with_tags,
};

const IO_TIMEOUT: Duration = Duration::from_secs(3);

fn forward_all(_: usize, _: PortSide, _: &[u8]) -> Disposition {
    Disposition::Forward
}

fn start<D>(topology: &Topology, decide: D) -> Gateway
where
    D: Fn(usize, PortSide, &[u8]) -> Disposition + Send + Sync + 'static,
{
    Gateway::start_with(topology, 1, afxdp::open, decide)
}

fn start_with_options<D>(topology: &Topology, options: AfXdpOptions, decide: D) -> Gateway
where
    D: Fn(usize, PortSide, &[u8]) -> Disposition + Send + Sync + 'static,
{
    let open = move |config: &BackendConfig, worker| afxdp::open_with(config, worker, &options);
    Gateway::start_with(topology, 1, open, decide)
}

/// Counts of frames `decide` saw, per port of arrival.
#[derive(Default)]
struct Seen([AtomicU64; 2]);

impl Seen {
    fn count(&self, side: PortSide) -> u64 {
        // Relaxed: a plain counter, read after the traffic it counts has been waited for.
        self.0[side.index()].load(Ordering::Relaxed)
    }

    fn note(&self, side: PortSide) {
        // Relaxed: see `count`.
        self.0[side.index()].fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn forwarding_everything_carries_ping_tcp_and_udp_both_ways() {
    let Some(topology) = Topology::new("xfwd") else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    let gateway = start(&topology, move |_, side, _| {
        counter.note(side);
        Disposition::Forward
    });
    // A veth runs XDP programs in its driver but cannot bind zero-copy sockets.
    assert!(
        gateway
            .info()
            .starts_with("afxdp (native, copy, need_wakeup;"),
        "{}",
        gateway.info()
    );

    let mut failures = Vec::new();
    let pings = [
        (Side::Outside, INSIDE_V4[0]),
        (Side::Outside, INSIDE_V4[3]),
        (Side::Outside, INSIDE_V6[0]),
        (Side::Inside, OUTSIDE_V4[0]),
        (Side::Inside, OUTSIDE_V6[2]),
    ];
    for (from, to) in pings {
        if !topology.ping(from, to) {
            failures.push(format!("ping {from:?} -> {to}"));
        }
    }
    let exchanges = [
        (Side::Outside, Side::Inside, INSIDE_V4[1]),
        (Side::Inside, Side::Outside, OUTSIDE_V4[2]),
        (Side::Outside, Side::Inside, INSIDE_V6[1]),
        (Side::Inside, Side::Outside, OUTSIDE_V6[3]),
    ];
    for (client, server, to) in exchanges {
        let message = format!("hello from the {client:?} side");
        if let Err(error) = tcp_exchange(&topology, client, (server, to), message.as_bytes()) {
            failures.push(format!("tcp {client:?} -> {to}: {error}"));
        }
    }
    let datagrams = [
        (Side::Outside, OUTSIDE_V4[1], Side::Inside, INSIDE_V4[2]),
        (Side::Inside, INSIDE_V4[3], Side::Outside, OUTSIDE_V4[3]),
        (Side::Outside, OUTSIDE_V6[1], Side::Inside, INSIDE_V6[2]),
        (Side::Inside, INSIDE_V6[3], Side::Outside, OUTSIDE_V6[0]),
    ];
    for (from_side, from, to_side, to) in datagrams {
        const COUNT: usize = 20;
        let receiver = bind_udp(&topology, to_side, to, 45000);
        let target = SocketAddr::new(to.parse().unwrap(), 45000);
        send_udp(&topology, from_side, from, 45001, COUNT, target);
        let arrived = receive_udp(&receiver, COUNT);
        if arrived != COUNT {
            failures.push(format!("udp {from} -> {to}: {arrived} of {COUNT} arrived"));
        }
    }
    let totals = Totals::sum(&gateway.stop());
    assert!(
        failures.is_empty(),
        "through a forwarding gateway: {failures:#?}"
    );
    for side in PortSide::BOTH {
        let i = side.index();
        assert!(
            seen.count(side) > 0,
            "decide saw nothing from {}",
            side.name()
        );
        assert_eq!(totals.received[i], seen.count(side), "{}", side.name());
        assert_eq!(totals.forwarded[i], seen.count(side), "{}", side.name());
        assert_eq!(
            totals.dropped[i] + totals.tx_failed[i] + totals.truncated[i],
            0,
            "{totals:?}"
        );
    }
}

/// `decide` drops one UDP flow: that flow's datagrams never arrive, the other flow's all do,
/// and the drops are exactly the dropped flow's datagrams.
#[test]
fn a_dropped_flow_is_dropped_and_only_it() {
    const DATAGRAMS: usize = 100;
    const DROPPED_PORT: u16 = 46000;
    const PASSED_PORT: u16 = 46001;
    let Some(topology) = Topology::new("xflow") else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    let gateway = start(&topology, move |_, side, frame| match udp_ports(frame) {
        Some((_, DROPPED_PORT)) => {
            counter.note(side);
            Disposition::Drop
        }
        _ => Disposition::Forward,
    });
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[0]),
        "no path before the flows"
    );
    let dropped = bind_udp(&topology, Side::Inside, INSIDE_V4[0], DROPPED_PORT);
    let passed = bind_udp(&topology, Side::Inside, INSIDE_V4[0], PASSED_PORT);
    for port in [DROPPED_PORT, PASSED_PORT] {
        let target = SocketAddr::new(INSIDE_V4[0].parse().unwrap(), port);
        send_udp(
            &topology,
            Side::Outside,
            OUTSIDE_V4[0],
            port + 100,
            DATAGRAMS,
            target,
        );
    }
    let arrived_passed = receive_udp(&passed, DATAGRAMS);
    let arrived_dropped = receive_udp(&dropped, 0);
    let totals = Totals::sum(&gateway.stop());

    assert_eq!(arrived_passed, DATAGRAMS, "datagrams of the passed flow");
    assert_eq!(arrived_dropped, 0, "datagrams of the dropped flow");
    assert_eq!(seen.count(PortSide::Outside), DATAGRAMS as u64);
    assert_eq!(
        totals.dropped[PortSide::Outside.index()],
        DATAGRAMS as u64,
        "{totals:?}"
    );
}

/// 20,000 frames through a UMEM of 256 frames with rings of 64: a frame lost to the
/// bookkeeping at any point would, a few hundred frames in, leave the fill rings empty and
/// stop forwarding. Sent in bursts that fit the rings, each waited for.
#[test]
fn descriptors_are_not_leaked_over_many_batches() {
    const BURST: usize = 40;
    const BURSTS: usize = 500;
    const PORT: u16 = 47000;
    let Some(topology) = Topology::new("xleak") else {
        return;
    };
    // Busy polling on: the other tests run without it, so both ways of waiting for frames
    // are covered.
    let options = AfXdpOptions {
        ring_size: 64,
        frame_size: 2048,
        frames: 256,
        busy_poll: true,
    };
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    let gateway = start_with_options(&topology, options, move |_, side, frame| {
        if udp_ports(frame).is_some_and(|(_, port)| port == PORT) {
            counter.note(side);
        }
        // Every other frame of the flow is dropped, so both ways back to a ring are used.
        if udp_ports(frame).is_some_and(|(source, _)| source % 2 == 1) {
            Disposition::Drop
        } else {
            Disposition::Forward
        }
    });
    assert!(
        gateway.info().contains("UMEM 256 x 2048 B"),
        "{}",
        gateway.info()
    );
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[1]),
        "no path before the bursts"
    );
    let receiver = bind_udp(&topology, Side::Inside, INSIDE_V4[1], PORT);
    let target = SocketAddr::new(INSIDE_V4[1].parse().unwrap(), PORT);
    let from = IpAddr::from(OUTSIDE_V4[1].parse::<Ipv4Addr>().unwrap());
    let senders = topology
        .netns(Side::Outside)
        .run(|| [48000, 48001].map(|port| UdpSocket::bind(SocketAddr::new(from, port)).unwrap()))
        .unwrap();
    let mut arrived = 0;
    for _ in 0..BURSTS {
        for i in 0..BURST {
            senders[i % 2].send_to(b"burst", target).unwrap();
        }
        arrived += receive_udp_quick(&receiver, BURST / 2);
    }
    let still_forwarding = topology.ping(Side::Outside, INSIDE_V4[1]);
    let totals = Totals::sum(&gateway.stop());

    assert_eq!(seen.count(PortSide::Outside), (BURST * BURSTS) as u64);
    assert_eq!(
        arrived,
        BURST * BURSTS / 2,
        "forwarded datagrams that arrived"
    );
    assert!(still_forwarding, "no ping after the bursts");
    assert_eq!(totals.tx_failed, [0, 0], "{totals:?}");
}

/// A frame longer than a UMEM frame cannot be received whole: the kernel drops it before the
/// gateway sees it, the gateway counts it, and forwarding goes on.
#[test]
fn frames_longer_than_a_umem_frame_are_counted_not_forwarded() {
    let Some(topology) = Topology::new("xbig") else {
        return;
    };
    let options = AfXdpOptions {
        frame_size: 2048,
        ..AfXdpOptions::default()
    };
    let longest = Arc::new(AtomicU64::new(0));
    let recorder = longest.clone();
    let gateway = start_with_options(&topology, options, move |_, _, frame| {
        // Relaxed: a plain maximum, read after the gateway has stopped.
        recorder.fetch_max(frame.len() as u64, Ordering::Relaxed);
        Disposition::Forward
    });
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[0]),
        "no path for small frames"
    );
    let port = topology.port(PortSide::Outside);
    let host = topology.host_interface(PortSide::Outside);
    let raised = [
        topology.exec_gateway(&["ip", "link", "set", &port, "mtu", "3000"]),
        topology.exec_outside(&["ip", "link", "set", &host, "mtu", "3000"]),
    ];
    assert!(
        raised.iter().all(|output| output.status.success()),
        "{raised:?}"
    );
    let big = [
        "ping", "-q", "-n", "-c", "1", "-W", "1", "-w", "2", "-M", "do", "-s", "2500",
    ];
    let answered = topology
        .exec_outside(&[&big[..], &[INSIDE_V4[0]]].concat())
        .status
        .success();
    let small_after = topology.ping(Side::Outside, INSIDE_V4[0]);
    let totals = Totals::sum(&gateway.stop());

    assert!(
        !answered,
        "a 2528-byte frame crossed with 2048-byte UMEM frames"
    );
    assert!(small_after, "no forwarding after the long frame");
    let outside = PortSide::Outside.index();
    assert!(totals.truncated[outside] >= 1, "{totals:?}");
    assert_eq!(
        totals.forwarded[outside] + totals.truncated[outside] + totals.dropped[outside],
        totals.received[outside],
        "{totals:?}"
    );
    assert!(
        longest.load(Ordering::Relaxed) <= 2048,
        "decide saw more than a UMEM frame"
    );
}

/// Tagged frames injected on the outside host's interface, as raw bytes: `decide` must see
/// each exactly as sent, and the inside host must receive each exactly as sent.
#[test]
fn vlan_tags_in_the_frame_reach_decide_and_the_far_side_unchanged() {
    let Some(topology) = Topology::new("xvtag") else {
        return;
    };
    let cases: [&[(u16, u16)]; 6] = [
        &[],
        &[(0x8100, 100)],
        &[(0x8100, 0xa000)],
        &[(0x8100, 0)],
        &[(0x88a8, 200), (0x8100, 100)],
        &[(0x8100, 300), (0x8100, 100)],
    ];
    let frames: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(case, tags)| with_tags(&marked_udp_frame(case), tags))
        .collect();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let recorder = seen.clone();
    let gateway = start(&topology, move |_, _, frame| {
        if frame[6..12] == INJECTED_SOURCE_MAC {
            recorder.lock().unwrap().push(frame.to_vec());
        }
        Disposition::Forward
    });
    let mut capture = open_port(
        &topology,
        Side::Inside,
        &topology.host_interface(PortSide::Inside),
    );
    let mut injector = open_port(
        &topology,
        Side::Outside,
        &topology.host_interface(PortSide::Outside),
    );
    for frame in &frames {
        injector.send(frame).unwrap();
    }
    let captured = capture_marked(&mut capture, frames.len(), IO_TIMEOUT);
    gateway.stop();

    assert_eq!(*seen.lock().unwrap(), frames, "frames as decide saw them");
    assert_eq!(captured, frames, "frames as the inside host received them");
}

/// VLAN 100 interfaces on both hosts, with VLAN TX offload off so that the tag is in the
/// frame's bytes when it reaches the gateway (see the module documentation of `afxdp`).
#[test]
fn ping_over_a_vlan_crosses_the_gateway_with_its_tag() {
    let Some(topology) = Topology::new("xvlan") else {
        return;
    };
    if let Err(error) = topology.add_vlan() {
        eprintln!("SKIPPED vlan interfaces: this kernel cannot make them: {error}");
        return;
    }
    for side in PortSide::BOTH {
        let host = topology.host_interface(side);
        let namespace = match side {
            PortSide::Outside => Side::Outside,
            PortSide::Inside => Side::Inside,
        };
        let output = topology.exec(namespace, &["ethtool", "-K", &host, "txvlan", "off"]);
        assert!(output.status.success(), "{output:?}");
    }
    let tags: Arc<Mutex<Vec<u16>>> = Arc::default();
    let recorder = tags.clone();
    let gateway = start(&topology, move |_, _, frame| {
        if frame[12..14] == [0x81, 0x00] {
            let vlan = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
            recorder.lock().unwrap().push(vlan);
        }
        Disposition::Forward
    });
    let there = topology.ping(Side::Outside, INSIDE_VLAN_V4);
    let back = topology.ping(Side::Inside, OUTSIDE_VLAN_V4);
    gateway.stop();
    assert!(
        there && back,
        "ping over VLAN 100: there {there}, back {back}"
    );
    let tags = tags.lock().unwrap();
    assert!(
        tags.iter().filter(|vlan| **vlan == 100).count() >= 4,
        "tagged frames seen: {tags:?}"
    );
}

#[test]
fn a_stopped_gateway_leaves_no_xdp_program_and_forwards_nothing() {
    let Some(topology) = Topology::new("xstop") else {
        return;
    };
    let gateway = start(&topology, forward_all);
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[0]),
        "no path while running"
    );
    for side in PortSide::BOTH {
        assert!(
            xdp_program(&topology, side).is_some(),
            "no XDP program on the {} port while running",
            side.name()
        );
    }
    gateway.stop();
    for side in PortSide::BOTH {
        assert_eq!(
            xdp_program(&topology, side),
            None,
            "XDP program left on the {} port",
            side.name()
        );
    }
    let answered: Vec<_> = [(Side::Outside, INSIDE_V4[0]), (Side::Inside, OUTSIDE_V6[0])]
        .into_iter()
        .filter(|(from, to)| topology.ping(*from, to))
        .collect();
    assert!(
        answered.is_empty(),
        "answered with the gateway stopped: {answered:?}"
    );
}

/// What the child process of [`a_gateway_killed_with_sigkill_is_replaced_on_restart`] runs:
/// opens the backend in the namespace it is given, says so, and forwards until it is killed
/// (a minute at most). Not a test of its own, hence ignored; it does nothing when run by hand.
#[test]
#[ignore = "run as a child process by a_gateway_killed_with_sigkill_is_replaced_on_restart"]
fn sigkill_child() {
    let (Ok(namespace), Ok(outside), Ok(inside)) = (
        std::env::var(CHILD_NAMESPACE),
        std::env::var(CHILD_OUTSIDE),
        std::env::var(CHILD_INSIDE),
    ) else {
        eprintln!("sigkill_child: only meaningful as a child of the SIGKILL test");
        return;
    };
    let config = BackendConfig {
        outside,
        inside,
        ..BackendConfig::default()
    };
    NetNs::open(&namespace)
        .unwrap()
        .run(|| {
            let mut pair = afxdp::open(&config, 0).unwrap();
            println!("{CHILD_READY} {}", pair.info());
            io::stdout().flush().unwrap();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                pair.poll(Duration::from_millis(20), |_, _| Disposition::Forward)
                    .unwrap();
            }
        })
        .unwrap();
}

const CHILD_NAMESPACE: &str = "PORTCULLIS_SIGKILL_CHILD_NETNS";
const CHILD_OUTSIDE: &str = "PORTCULLIS_SIGKILL_CHILD_OUTSIDE";
const CHILD_INSIDE: &str = "PORTCULLIS_SIGKILL_CHILD_INSIDE";
const CHILD_READY: &str = "SIGKILL-CHILD-READY";

/// Kills the child by its PID when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A gateway process killed with SIGKILL leaves libxdp's program attached (by netlink; see
/// `afxdp::program`). A new gateway must replace it, forward, and leave nothing when stopped.
#[test]
fn a_gateway_killed_with_sigkill_is_replaced_on_restart() {
    let Some(topology) = Topology::new("xkill") else {
        return;
    };
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "sigkill_child", "--nocapture"])
        .env(CHILD_NAMESPACE, topology.namespace(Side::Gateway))
        .env(CHILD_OUTSIDE, topology.port(PortSide::Outside))
        .env(CHILD_INSIDE, topology.port(PortSide::Inside))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) if line.starts_with(CHILD_READY) => break line,
            Ok(_) => continue,
            Err(error) => panic!("the child gateway did not start: {error}"),
        }
    };
    assert!(ready.contains("afxdp (native"), "{ready}");
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[0]),
        "no path through the child gateway"
    );
    // While the child lives, its ports are its own: no takeover of a live gateway's program.
    let config = topology.backend_config(1);
    let refused = topology
        .netns(Side::Gateway)
        .run(|| afxdp::open(&config, 0).map(|pair| pair.info()))
        .unwrap();
    let error = refused.unwrap_err();
    assert!(
        error.to_string().contains("another gateway process"),
        "{error}"
    );
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[0]),
        "the child gateway stopped forwarding after the refused open"
    );

    child.0.kill().unwrap(); // SIGKILL, to this child's PID
    child.0.wait().unwrap();
    let left = PortSide::BOTH.map(|side| xdp_program(&topology, side));
    assert!(
        left.iter().all(Option::is_some),
        "libxdp's program did not outlive its process: {left:?}"
    );
    assert!(
        !topology.ping(Side::Outside, INSIDE_V4[0]),
        "frames crossed with the gateway killed"
    );

    let gateway = start(&topology, forward_all);
    assert!(
        gateway.info().contains("replaced the XDP program"),
        "{}",
        gateway.info()
    );
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[0]),
        "no path through the new gateway"
    );
    gateway.stop();
    let left = PortSide::BOTH.map(|side| xdp_program(&topology, side));
    assert_eq!(left, [None, None], "programs left after a clean stop");
}

/// Two workers, each on its own queue of both ports: the veths get a second queue (`ethtool
/// -L`, up to the queue count they were created with), the outside host spreads its flows
/// over its two TX queues by hash, and each flow crosses on the worker of its queue.
#[test]
fn two_workers_forward_the_flows_of_their_queues() {
    const WORKERS: usize = 2;
    const FLOWS: u16 = 64;
    const FIRST_SOURCE_PORT: u16 = 41000;
    const DESTINATION_PORT: u16 = 42000;
    let Some(topology) = Topology::new("xtwo") else {
        return;
    };
    let interfaces = [
        (Side::Gateway, topology.port(PortSide::Outside)),
        (Side::Gateway, topology.port(PortSide::Inside)),
        (Side::Outside, topology.host_interface(PortSide::Outside)),
        (Side::Inside, topology.host_interface(PortSide::Inside)),
    ];
    for (side, interface) in &interfaces {
        let output = topology.exec(*side, &["ethtool", "-L", interface, "rx", "2", "tx", "2"]);
        if !output.status.success() {
            let reason = format!(
                "{interface} cannot have two queues: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
            eprintln!("SKIPPED two_workers_forward_the_flows_of_their_queues: {reason}");
            return;
        }
    }
    let per_worker: Arc<Mutex<BTreeMap<usize, u64>>> = Arc::default();
    let counter = per_worker.clone();
    let gateway = Gateway::start_with(&topology, WORKERS, afxdp::open, move |worker, _, frame| {
        let flows = FIRST_SOURCE_PORT..FIRST_SOURCE_PORT + FLOWS;
        if let Some((source, DESTINATION_PORT)) = udp_ports(frame) {
            if flows.contains(&source) {
                *counter.lock().unwrap().entry(worker).or_default() += 1;
            }
        }
        Disposition::Forward
    });
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[1]),
        "no path before the flows"
    );
    let receiver = bind_udp(&topology, Side::Inside, INSIDE_V4[1], DESTINATION_PORT);
    let target = SocketAddr::new(INSIDE_V4[1].parse().unwrap(), DESTINATION_PORT);
    for source in FIRST_SOURCE_PORT..FIRST_SOURCE_PORT + FLOWS {
        send_udp(&topology, Side::Outside, OUTSIDE_V4[1], source, 1, target);
    }
    let arrived = receive_udp(&receiver, usize::from(FLOWS));
    let totals = Totals::sum(&gateway.stop());

    let per_worker = per_worker.lock().unwrap().clone();
    assert_eq!(
        per_worker.values().sum::<u64>(),
        u64::from(FLOWS),
        "{per_worker:?}"
    );
    assert_eq!(
        per_worker.len(),
        WORKERS,
        "the flows did not spread: {per_worker:?}"
    );
    assert_eq!(
        arrived,
        usize::from(FLOWS),
        "datagrams that reached the inside host"
    );
    assert_eq!(totals.tx_failed, [0, 0], "{totals:?}");
    for side in PortSide::BOTH {
        assert_eq!(
            xdp_program(&topology, side),
            None,
            "XDP program left on the {} port after both workers stopped",
            side.name()
        );
    }
}

/// A network namespace of this test's own with two `ifb` interfaces (no driver XDP), removed on
/// drop. No traffic: only attaching and detaching.
struct IfbNamespace(String);

impl IfbNamespace {
    fn new() -> Option<IfbNamespace> {
        let name = format!("xifb{}", std::process::id());
        let added = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(added.status.success(), "{added:?}");
        let namespace = IfbNamespace(name);
        for interface in ["xifb0", "xifb1"] {
            let made = namespace.ip(&["link", "add", interface, "type", "ifb"]);
            if !made.status.success() {
                let reason = String::from_utf8_lossy(&made.stderr).trim().to_string();
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "no ifb: {reason}"
                );
                eprintln!("SKIPPED generic-mode test: this kernel has no ifb: {reason}");
                return None;
            }
            assert!(
                namespace
                    .ip(&["link", "set", interface, "up"])
                    .status
                    .success()
            );
        }
        Some(namespace)
    }

    fn ip(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .unwrap()
    }

    fn xdp_program(&self, interface: &str) -> Option<String> {
        let output = self.ip(&["-d", "link", "show", interface]);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|line| line.contains("prog/xdp"))
            .map(|line| line.trim().to_string())
    }
}

impl Drop for IfbNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

/// Interfaces whose driver runs no XDP program get libxdp's program in generic (skb) mode,
/// the pair says so, and dropping it detaches the program.
#[test]
fn ports_without_driver_xdp_fall_back_to_generic_mode() {
    if !support::harness_or_skip("ports_without_driver_xdp_fall_back_to_generic_mode") {
        return;
    }
    let Some(namespace) = IfbNamespace::new() else {
        return;
    };
    let config = BackendConfig {
        outside: "xifb0".to_string(),
        inside: "xifb1".to_string(),
        ..BackendConfig::default()
    };
    let (info, attached) = NetNs::open(&namespace.0)
        .unwrap()
        .run(|| {
            let pair = afxdp::open(&config, 0).unwrap();
            let attached = ["xifb0", "xifb1"].map(|interface| namespace.xdp_program(interface));
            (pair.info().to_string(), attached)
        })
        .unwrap();
    assert!(
        info.starts_with("afxdp (generic, copy, need_wakeup;"),
        "{info}"
    );
    assert!(attached.iter().all(Option::is_some), "{attached:?}");
    let left = ["xifb0", "xifb1"].map(|interface| namespace.xdp_program(interface));
    assert_eq!(
        left,
        [None, None],
        "programs left after the pair was dropped"
    );
}

/// A second pair of this process on a queue already bound is refused as busy, and the first
/// pair keeps forwarding.
#[test]
fn ports_held_by_this_process_are_shared_and_a_second_pair_binds_nothing_twice() {
    let Some(topology) = Topology::new("xtwice") else {
        return;
    };
    let gateway = start(&topology, forward_all);
    let config = topology.backend_config(1);
    let second = topology
        .netns(Side::Gateway)
        .run(|| afxdp::open(&config, 0).map(|pair| pair.info()))
        .unwrap();
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[0]),
        "the first pair stopped forwarding"
    );
    gateway.stop();
    let error = second.unwrap_err();
    assert!(
        matches!(&error, BackendError::Io { operation, .. } if operation.contains("bind"))
            && error.to_string().contains("in use"),
        "{error}"
    );
}

#[test]
fn ports_in_another_namespace_are_not_found() {
    let Some(topology) = Topology::new("xnsif") else {
        return;
    };
    let error = afxdp::open(&topology.backend_config(1), 0).unwrap_err();
    let port = topology.port(PortSide::Outside);
    assert!(
        matches!(&error, BackendError::NoSuchInterface { interface } if *interface == port),
        "{error}"
    );
}

/// Frames per second through a do-nothing forward, AF_XDP and AF_PACKET, under a bounded
/// flood of small UDP frames injected on the outside host. Prints the figures; no assertion
/// on them (a shared machine's timing proves nothing). Run with
/// `cargo test --release --test afxdp_forwarding -- --ignored --nocapture measure_`.
#[test]
#[ignore = "a measurement, run by hand"]
fn measure_forwarding_rate() {
    const FRAMES: usize = 300_000;
    const LIMIT: Duration = Duration::from_secs(20);
    // Alternated, twice each: the machine's load drifts. A new topology each time, so that
    // the interface counters printed are this run's.
    for backend in ["afxdp", "afpacket", "afxdp", "afpacket"] {
        let Some(topology) = Topology::new("xrate") else {
            return;
        };
        let gateway = if backend == "afxdp" {
            start(&topology, forward_all)
        } else {
            Gateway::start(&topology, 1, forward_all)
        };
        let mut injector = open_port(
            &topology,
            Side::Outside,
            &topology.host_interface(PortSide::Outside),
        );
        let frame = marked_udp_frame(0);
        let started = Instant::now();
        let mut sent = 0;
        while sent < FRAMES && started.elapsed() < LIMIT {
            if injector.send(&frame).is_ok() {
                sent += 1;
            }
        }
        let sending = started.elapsed();
        thread::sleep(Duration::from_millis(300));
        // Where frames were lost: the host veth's TX drops (the gateway port's XDP ring was
        // full) and the gateway port's own counters.
        let host = topology.host_interface(PortSide::Outside);
        let port = topology.port(PortSide::Outside);
        let host_stats = topology.exec_outside(&["ip", "-s", "link", "show", &host]);
        let port_stats = topology.exec_gateway(&["ethtool", "-S", &port]);
        println!(
            "{backend} host interface:\n{}\ngateway port:\n{}",
            String::from_utf8_lossy(&host_stats.stdout),
            String::from_utf8_lossy(&port_stats.stdout)
                .lines()
                .filter(|line| !line.trim_end().ends_with(": 0"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let info = gateway.info().to_string();
        let totals = Totals::sum(&gateway.stop());
        let outside = PortSide::Outside.index();
        println!(
            "{backend}: {sent} frames injected in {:.2} s ({:.0}/s); gateway received {}, \
             forwarded {} ({:.0}/s over the injection time), dropped by the kernel before \
             the gateway saw them {}, tx_failed {} [{info}]",
            sending.as_secs_f64(),
            sent as f64 / sending.as_secs_f64(),
            totals.received[outside],
            totals.forwarded[outside],
            totals.forwarded[outside] as f64 / sending.as_secs_f64(),
            totals.truncated[outside],
            totals.tx_failed[outside],
        );
    }
}

/// The line `ip -d link show` gives about the XDP program on a gateway port, if any.
fn xdp_program(topology: &Topology, side: PortSide) -> Option<String> {
    let output = topology.exec_gateway(&["ip", "-d", "link", "show", &topology.port(side)]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|line| line.contains("prog/xdp"))
        .map(|line| line.trim().to_string())
}

/// A host on `client`'s side connects to `to` on `server`'s side, sends `payload`, and reads
/// it back echoed: both directions of a TCP connection through the gateway.
fn tcp_exchange(
    topology: &Topology,
    client: Side,
    (server, to): (Side, &str),
    payload: &[u8],
) -> io::Result<()> {
    let to: IpAddr = to.parse().unwrap();
    let listener = topology
        .netns(server)
        .run(|| TcpListener::bind(SocketAddr::new(to, 0)))
        .unwrap()?;
    let address = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let echo = thread::spawn(move || -> io::Result<()> {
        let started = Instant::now();
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if started.elapsed() > IO_TIMEOUT {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "no connection"));
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                Err(error) => return Err(error),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut request = Vec::new();
        stream.read_to_end(&mut request)?;
        stream.write_all(&request)
    });
    let reply = topology
        .netns(client)
        .run(|| -> io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect_timeout(&address, IO_TIMEOUT)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            stream.write_all(payload)?;
            stream.shutdown(Shutdown::Write)?;
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply)?;
            Ok(reply)
        })
        .unwrap();
    let served = echo.join().unwrap();
    let reply = reply?;
    served?;
    if reply == payload {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} bytes sent, {} bytes echoed",
            payload.len(),
            reply.len()
        )))
    }
}

fn bind_udp(topology: &Topology, side: Side, address: &str, port: u16) -> UdpSocket {
    let address = SocketAddr::new(address.parse().unwrap(), port);
    let socket = topology
        .netns(side)
        .run(|| UdpSocket::bind(address))
        .unwrap()
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    socket
}

/// Sends `count` datagrams from `from`:`port` (on `side`) to `target`.
fn send_udp(
    topology: &Topology,
    side: Side,
    from: &str,
    port: u16,
    count: usize,
    target: SocketAddr,
) {
    let from: IpAddr = from.parse().unwrap();
    topology
        .netns(side)
        .run(|| {
            let socket = UdpSocket::bind(SocketAddr::new(from, port)).unwrap();
            for i in 0..count {
                socket
                    .send_to(format!("datagram {i}").as_bytes(), target)
                    .unwrap();
            }
        })
        .unwrap();
}

/// Receives until `expected` datagrams came and then nothing more for a while, or the time is
/// up; returns how many came, so that a duplicate shows as one too many.
fn receive_udp(socket: &UdpSocket, expected: usize) -> usize {
    let mut count = 0;
    let mut buffer = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match socket.recv(&mut buffer) {
            Ok(_) => {
                count += 1;
                quiet_since = Instant::now();
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if count >= expected && quiet_since.elapsed() >= Duration::from_millis(300) {
                    break;
                }
            }
            Err(error) => panic!("receiving datagrams: {error}"),
        }
    }
    count
}

/// Receives until `expected` datagrams came or two seconds passed; returns how many came.
fn receive_udp_quick(socket: &UdpSocket, expected: usize) -> usize {
    let mut count = 0;
    let mut buffer = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(2);
    while count < expected && Instant::now() < deadline {
        match socket.recv(&mut buffer) {
            Ok(_) => count += 1,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(error) => panic!("receiving datagrams: {error}"),
        }
    }
    count
}

/// A pair that falls behind: nobody polls while a burst arrives, then one poll takes one batch
/// (16 of the 64 frames the RX ring holds), then a second burst arrives. The fill ring may be
/// topped up only to what the RX ring has room for, so the kernel runs out of fill frames
/// before the RX ring overflows: every frame it cannot take is dropped at the empty fill
/// ring (before it copies anything), none at a full RX ring (after copying). Every frame is
/// either received or counted.
#[test]
fn a_port_behind_drops_at_the_fill_ring_not_after_the_copy() {
    /// Bursts under the veth's 256-frame queue, so that none are lost before the socket.
    const BURST: usize = 200;
    let Some(topology) = Topology::new("xquota") else {
        return;
    };
    topology.silence_outside_host();
    let host = topology.host_interface(PortSide::Outside);
    let config = BackendConfig {
        batch_size: 16,
        ..topology.backend_config(1)
    };
    let options = AfXdpOptions {
        ring_size: 64,
        frame_size: 2048,
        frames: 256,
        busy_poll: false,
    };
    let mut pair = topology
        .netns(Side::Gateway)
        .run(move || afxdp::open_with(&config, 0, &options).unwrap())
        .unwrap();
    let mut generator = open_port(&topology, Side::Outside, &host);
    let frame = marked_udp_frame(0);
    let mut burst = || {
        let frames = vec![frame.clone(); BURST].concat();
        let ranges: Vec<_> = (0..BURST)
            .map(|i| i * frame.len()..(i + 1) * frame.len())
            .collect();
        let sent = generator.send_batch(&frames, &ranges).unwrap();
        // The veth hands the frames to the socket in the sender's softirq; give it time.
        thread::sleep(Duration::from_millis(200));
        sent as u64
    };
    let mut received = 0u64;
    let mut take = |pair: &mut afxdp::AfXdpPair| {
        let stats = pair
            .poll(Duration::from_millis(50), |_, _| Disposition::Drop)
            .unwrap();
        received += u64::from(stats.received[PortSide::Outside.index()]);
        stats.received
    };

    let mut sent = burst();
    let first = take(&mut pair);
    assert_eq!(first[0], 16, "one batch off a full RX ring: {first:?}");
    sent += burst();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut idle = 0;
    while idle < 2 && Instant::now() < deadline {
        idle = if take(&mut pair) == [0, 0] {
            idle + 1
        } else {
            0
        };
    }
    let drops = pair.read_kernel_drops().unwrap()[PortSide::Outside.index()];
    let context = format!("sent {sent}, received {received}, kernel drops {drops:?}");
    assert_eq!(sent, 2 * BURST as u64, "{context}");
    assert_eq!(drops.rx_ring_full, Some(0), "{context}");
    let at_fill = drops.fill_ring_empty.unwrap();
    assert!(
        at_fill > 0,
        "the bursts overflowed what the port had: {context}"
    );
    assert_eq!(
        received + at_fill,
        sent,
        "every frame accounted for: {context}"
    );
}
