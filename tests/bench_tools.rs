//! The forwarding benchmark's tools on real veths: `AfPacketPort::send_batch` and the
//! `portcullis-pktgen` binary's gen, forward and sink modes, each on its own `scripts/harness`
//! topology (removed on drop). Traffic is bounded in count and time and uses documentation
//! addresses only.
//!
//! Needs root; skips with a message without it, fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use portcullis::dataplane::PortSide;
use portcullis::dataplane::afpacket::AfPacketPort;
use support::{Side, Topology};

const PKTGEN: &str = env!("CARGO_BIN_EXE_portcullis-pktgen");
const MARK_SOURCE_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x31];

/// A UDP frame from documentation addresses whose payload is its sequence number.
fn numbered_frame(number: u32, payload_len: usize) -> Vec<u8> {
    let mut payload = vec![0u8; payload_len.max(4)];
    payload[..4].copy_from_slice(&number.to_be_bytes());
    let builder = PacketBuilder::ethernet2(MARK_SOURCE_MAC, [0x02, 0, 0x5e, 0x10, 0, 0x32])
        .ipv4([192, 0, 2, 10], [203, 0, 113, 10], 64)
        .udp(1024, 5201);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, &payload).unwrap();
    frame
}

fn frame_number(frame: &[u8]) -> u32 {
    let payload = &frame[42..46];
    u32::from_be_bytes(payload.try_into().unwrap())
}

#[test]
fn send_batch_puts_every_frame_on_the_wire_in_order_and_skips_one_too_long() {
    const FRAMES: u32 = 100;
    const TOO_LONG_AT: usize = 37;
    let Some(topology) = Topology::new("sb") else {
        return;
    };
    let host = topology.host_interface(PortSide::Outside);
    let port = topology.port(PortSide::Outside);
    // Batches of 16: several sendmmsg calls for one send_batch.
    let mut sender = topology
        .netns(Side::Outside)
        .run(move || AfPacketPort::open(&host, 16))
        .unwrap()
        .unwrap();
    let mut receiver = topology
        .netns(Side::Gateway)
        .run(move || AfPacketPort::open(&port, 64))
        .unwrap()
        .unwrap();

    let mut buf = Vec::new();
    let mut ranges = Vec::new();
    for number in 0..FRAMES {
        if ranges.len() == TOO_LONG_AT {
            let start = buf.len();
            buf.extend_from_slice(&numbered_frame(u32::MAX, 3000));
            ranges.push(start..buf.len());
        }
        let start = buf.len();
        buf.extend_from_slice(&numbered_frame(number, 18));
        ranges.push(start..buf.len());
    }
    let sent = sender.send_batch(&buf, &ranges).unwrap();
    assert_eq!(sent, FRAMES as usize, "frames sent");

    let mut numbers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while numbers.len() < FRAMES as usize && Instant::now() < deadline {
        receiver
            .receive(Duration::from_millis(100), |frame| {
                if frame[6..12] == MARK_SOURCE_MAC {
                    numbers.push(frame_number(frame));
                }
            })
            .unwrap();
    }
    assert_eq!(numbers, (0..FRAMES).collect::<Vec<_>>());
}

/// Starts `args` in namespace `namespace` with stdout captured.
fn spawn_in(namespace: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", namespace, PKTGEN])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `child` says on stderr that it is ready (its sockets open, or its first
/// counters read); panics if it ends first. Every mode is bounded in time, so this is too.
fn wait_until_ready(mut child: Child) -> Child {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("ended before it was ready: {said}");
        }
        if line.contains(": ready") {
            return child;
        }
        said.push_str(&line);
    }
}

/// Waits for `child` (every mode is bounded in time) and parses its JSON line.
fn report_of(child: Child) -> serde_json::Value {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "portcullis-pktgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn mac_of(topology: &Topology, side: Side, interface: &str) -> String {
    let output = topology.exec(
        side,
        &["cat", &format!("/sys/class/net/{interface}/address")],
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[test]
fn generated_frames_cross_the_afpacket_do_nothing_forwarder_and_are_counted_by_the_sink() {
    through_the_do_nothing_forwarder("pgp", "afpacket", None);
}

/// As the benchmark runs it: the forwarding thread at SCHED_FIFO, read back in its report.
#[test]
fn the_afpacket_do_nothing_forwarder_forwards_at_the_fifo_priority_asked_for() {
    through_the_do_nothing_forwarder("pgf", "afpacket", Some("2"));
}

#[test]
fn generated_frames_cross_the_afxdp_do_nothing_forwarder_and_are_counted_by_the_sink() {
    through_the_do_nothing_forwarder("pgx", "afxdp", Some("1"));
}

/// `fifo`: the forwarder's `--worker-fifo` priority, if any.
fn through_the_do_nothing_forwarder(tag: &str, backend: &str, fifo: Option<&str>) {
    const FRAMES: u64 = 5000;
    // How long the forwarder and the sink wait after the last frame before they report.
    // Generous: on a loaded machine a starved generator or forwarder pauses for hundreds of
    // milliseconds (a 400 ms window once ended the sink's count at 3,518 of 5,000 frames
    // that all crossed).
    const IDLE_MS: &str = "2000";
    let Some(topology) = Topology::new(tag) else {
        return;
    };
    let outside_host = topology.host_interface(PortSide::Outside);
    let inside_host = topology.host_interface(PortSide::Inside);
    let sink_mac = mac_of(&topology, Side::Inside, &inside_host);
    let (gateway_out, gateway_in) = (
        topology.port(PortSide::Outside),
        topology.port(PortSide::Inside),
    );

    let mut forward_args = vec![
        "forward",
        "--backend",
        backend,
        "--outside",
        &gateway_out,
        "--inside",
        &gateway_in,
        "--duration",
        "10",
        "--idle-exit",
        IDLE_MS,
    ];
    if let Some(priority) = fifo {
        forward_args.extend(["--worker-fifo", priority]);
    }
    let forward = spawn_in(&topology.namespace(Side::Gateway), &forward_args);
    let sink = spawn_in(
        &topology.namespace(Side::Inside),
        &[
            "sink",
            "--interface",
            &inside_host,
            "--until-idle",
            IDLE_MS,
            "--duration",
            "8",
            "--wait-start",
            "5",
        ],
    );
    let (forward, sink) = (wait_until_ready(forward), wait_until_ready(sink));
    let generator = spawn_in(
        &topology.namespace(Side::Outside),
        &[
            "gen",
            "--interface",
            &outside_host,
            "--dst-mac",
            &sink_mac,
            "--flows",
            "100",
            "--rate",
            "20000",
            "--count",
            &FRAMES.to_string(),
            "--duration",
            "5",
        ],
    );
    let generated = report_of(generator);
    let sunk = report_of(sink);
    let forwarded = report_of(forward);

    assert_eq!(generated["sent"], FRAMES, "{generated}");
    assert_eq!(
        generated["skipped_late"], 0,
        "no catch-up limit: {generated}"
    );
    let scheduling = match fifo {
        Some(priority) => format!("SCHED_FIFO {priority}"),
        None => "normal".to_string(),
    };
    assert_eq!(forwarded["scheduling"], scheduling.as_str(), "{forwarded}");
    // The hosts may send a stray frame of their own (neighbour discovery) meanwhile.
    let crossed = forwarded["forwarded"][0].as_u64().unwrap();
    assert!(
        (FRAMES..FRAMES + 10).contains(&crossed),
        "forwarded {crossed}: {forwarded}"
    );
    let packets = sunk["packets"].as_u64().unwrap();
    assert!(
        (FRAMES..FRAMES + 10).contains(&packets),
        "sink counted {packets}: {sunk}"
    );
    assert_eq!(sunk["traffic"], true);
    // Each backend reports the kernel drops it counts, and is silent on the others.
    let (counted, not_counted) = match backend {
        "afpacket" => ("socket_queue_full", "fill_ring_empty"),
        _ => ("fill_ring_empty", "socket_queue_full"),
    };
    for port in 0..2 {
        let drops = &forwarded["kernel_drops"][port];
        assert!(drops[counted].is_u64(), "{counted}: {forwarded}");
        assert!(
            drops.get(not_counted).is_none(),
            "{not_counted}: {forwarded}"
        );
    }
}

/// The benchmark stops a flat-out generator when the sink's window ends and reads what it
/// offered from its report: SIGTERM must end the run early with that report, not silently.
#[test]
fn a_generator_stopped_by_sigterm_reports_what_it_offered_so_far() {
    let Some(topology) = Topology::new("pgt") else {
        return;
    };
    let outside_host = topology.host_interface(PortSide::Outside);
    let inside_host = topology.host_interface(PortSide::Inside);
    let sink_mac = mac_of(&topology, Side::Inside, &inside_host);
    let started = Instant::now();
    let generator = spawn_in(
        &topology.namespace(Side::Outside),
        &[
            "gen",
            "--interface",
            &outside_host,
            "--dst-mac",
            &sink_mac,
            "--rate",
            "2000",
            "--count",
            "100000",
            "--duration",
            "10",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    let killed = Command::new("kill")
        .args(["-TERM", &generator.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let generated = report_of(generator);

    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the generator ran on after SIGTERM"
    );
    let attempted = generated["attempted"].as_u64().unwrap();
    let seconds = generated["seconds"].as_f64().unwrap();
    // 2,000 frames/s for a fraction of a second: some sent, far from the count.
    assert!((1..100_000).contains(&attempted), "{generated}");
    assert!(seconds > 0.0 && seconds < 8.0, "{generated}");
}

/// Without the right to SCHED_FIFO (`CAP_SYS_NICE` taken from the bounding set, `RLIMIT_RTPRIO`
/// 0), `forward --worker-fifo` exits with what is missing instead of measuring at the normal
/// policy.
#[test]
fn a_forwarder_refused_its_fifo_priority_exits_with_the_reason() {
    let Some(topology) = Topology::new("pgn") else {
        return;
    };
    let output = topology
        .without_realtime_rights()
        .args([PKTGEN, "forward", "--backend", "afpacket", "--outside"])
        .arg(topology.port(PortSide::Outside))
        .arg("--inside")
        .arg(topology.port(PortSide::Inside))
        .args(["--duration", "2", "--worker-fifo", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty(), "no report: {output:?}");
    for needed in [
        "cannot run at SCHED_FIFO priority 1",
        "CAP_SYS_NICE",
        "RLIMIT_RTPRIO",
    ] {
        assert!(stderr.contains(needed), "{needed}: {stderr}");
    }
}
