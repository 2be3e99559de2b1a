//! The AF_PACKET backend pushing real frames between two veth hosts: each test builds its own
//! `scripts/harness` topology (removed on drop), runs the backend on threads inside the gateway
//! namespace with a `decide` closure, and sends bounded traffic between documentation
//! addresses. Every wait has a time limit.
//!
//! Needs root; skips with a message without it, fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use portcullis::dataplane::afpacket;
use portcullis::dataplane::{BackendError, Disposition, PortPair, PortSide};
use support::{
    Gateway, INJECTED_DESTINATION_MAC, INJECTED_SOURCE_MAC, INSIDE_V4, INSIDE_V6, INSIDE_VLAN_V4,
    OUTSIDE_V4, OUTSIDE_V6, OUTSIDE_VLAN_V4, Side, Topology, Totals, capture_marked,
    marked_udp_frame, open_port, udp_ports, with_tags,
};

const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to watch for frames that must not come, once those that must have come: many
/// times the gateway's poll interval.
const QUIET: Duration = Duration::from_millis(500);

fn forward_all(_: usize, _: PortSide, _: &[u8]) -> Disposition {
    Disposition::Forward
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
fn forwarding_everything_carries_ping_and_tcp_both_ways() {
    let Some(topology) = Topology::new("fwd") else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    let gateway = Gateway::start(&topology, 1, move |_, side, _| {
        counter.note(side);
        Disposition::Forward
    });
    assert!(
        gateway.info().starts_with("afpacket (recvmmsg/sendmmsg"),
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
            0
        );
    }
}

#[test]
fn dropping_everything_stops_ping() {
    let Some(topology) = Topology::new("drop") else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    let gateway = Gateway::start(&topology, 1, move |_, side, _| {
        counter.note(side);
        Disposition::Drop
    });
    let pings = [
        (Side::Outside, INSIDE_V4[0]),
        (Side::Outside, INSIDE_V6[0]),
        (Side::Inside, OUTSIDE_V4[1]),
        (Side::Inside, OUTSIDE_V6[1]),
    ];
    let answered: Vec<_> = pings
        .iter()
        .filter(|(from, to)| topology.ping(*from, to))
        .collect();
    let totals = Totals::sum(&gateway.stop());
    assert!(
        answered.is_empty(),
        "answered through a dropping gateway: {answered:?}"
    );
    for side in PortSide::BOTH {
        let i = side.index();
        assert!(
            seen.count(side) > 0,
            "decide saw nothing from {}",
            side.name()
        );
        assert_eq!(totals.dropped[i], seen.count(side), "{}", side.name());
        assert_eq!(totals.forwarded[i], 0, "{}", side.name());
    }
}

#[test]
fn decide_sees_exactly_the_frames_sent() {
    const DATAGRAMS: usize = 200;
    const SOURCE_PORT: u16 = 40000;
    const DESTINATION_PORT: u16 = 40001;
    let Some(topology) = Topology::new("count") else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    let gateway = Gateway::start(&topology, 1, move |_, side, frame| {
        if udp_ports(frame) == Some((SOURCE_PORT, DESTINATION_PORT)) {
            counter.note(side);
        }
        Disposition::Forward
    });
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[0]),
        "no path before the burst"
    );

    let receiver = bind_udp(&topology, Side::Inside, INSIDE_V4[0], DESTINATION_PORT);
    let target = SocketAddr::new(INSIDE_V4[0].parse().unwrap(), DESTINATION_PORT);
    send_udp(&topology, OUTSIDE_V4[0], &[SOURCE_PORT], DATAGRAMS, target);
    let arrived = receive_udp(&receiver, DATAGRAMS);
    let totals = Totals::sum(&gateway.stop());

    assert_eq!(
        seen.count(PortSide::Outside),
        DATAGRAMS as u64,
        "frames decide saw"
    );
    assert_eq!(
        seen.count(PortSide::Inside),
        0,
        "frames decide saw on the inside port"
    );
    assert_eq!(arrived, DATAGRAMS, "datagrams that reached the inside host");
    assert_eq!(totals.tx_failed, [0, 0]);
}

#[test]
fn fanout_workers_share_the_frames_each_once() {
    const WORKERS: usize = 3;
    const FLOWS: u16 = 240;
    const FIRST_SOURCE_PORT: u16 = 41000;
    const DESTINATION_PORT: u16 = 42000;
    let Some(topology) = Topology::new("fan") else {
        return;
    };
    let per_worker: Arc<Mutex<BTreeMap<usize, u64>>> = Arc::default();
    let counter = per_worker.clone();
    let gateway = Gateway::start(&topology, WORKERS, move |worker, _, frame| {
        let flows = FIRST_SOURCE_PORT..FIRST_SOURCE_PORT + FLOWS;
        if let Some((source, DESTINATION_PORT)) = udp_ports(frame) {
            if flows.contains(&source) {
                *counter.lock().unwrap().entry(worker).or_default() += 1;
            }
        }
        Disposition::Forward
    });
    assert!(
        gateway.info().contains("fanout hash over 3 workers"),
        "{}",
        gateway.info()
    );
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[1]),
        "no path before the burst"
    );

    let receiver = bind_udp(&topology, Side::Inside, INSIDE_V4[1], DESTINATION_PORT);
    let target = SocketAddr::new(INSIDE_V4[1].parse().unwrap(), DESTINATION_PORT);
    let sources: Vec<u16> = (FIRST_SOURCE_PORT..FIRST_SOURCE_PORT + FLOWS).collect();
    send_udp(&topology, OUTSIDE_V4[1], &sources, 1, target);
    let arrived = receive_udp(&receiver, usize::from(FLOWS));
    gateway.stop();

    let per_worker = per_worker.lock().unwrap().clone();
    assert_eq!(
        per_worker.values().sum::<u64>(),
        u64::from(FLOWS),
        "{per_worker:?}"
    );
    assert!(
        per_worker.len() >= 2,
        "the flows did not spread over the workers: {per_worker:?}"
    );
    assert_eq!(
        arrived,
        usize::from(FLOWS),
        "datagrams that reached the inside host"
    );
}

/// A megabyte each way over one connection: full-size frames, many per batch, checksums
/// intact.
#[test]
fn a_bulk_tcp_transfer_arrives_intact() {
    const BYTES: usize = 1 << 20;
    let Some(topology) = Topology::new("bulk") else {
        return;
    };
    let gateway = Gateway::start(&topology, 1, forward_all);
    // Not a repeating pattern of a length dividing a segment: a misplaced segment shows.
    let payload: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
    let result = tcp_exchange(
        &topology,
        Side::Outside,
        (Side::Inside, INSIDE_V4[2]),
        &payload,
    );
    let totals = Totals::sum(&gateway.stop());
    result.unwrap();
    assert!(
        totals.forwarded[PortSide::Outside.index()] >= (BYTES / 1500) as u64,
        "{totals:?}"
    );
    assert_eq!(totals.truncated, [0, 0], "{totals:?}");
}

/// The receive slots are sized from the ports' MTU when the backend opens them; a frame
/// longer than that (the MTU raised later, or frames merged by GRO on a real NIC) cannot be
/// forwarded unchanged: it is counted, and `decide` never sees part of one.
#[test]
fn frames_longer_than_the_receive_slots_are_counted_not_forwarded() {
    let Some(topology) = Topology::new("big") else {
        return;
    };
    let longest = Arc::new(AtomicU64::new(0));
    let recorder = longest.clone();
    let gateway = Gateway::start(&topology, 1, move |_, _, frame| {
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
        topology.exec_gateway(&["ip", "link", "set", &port, "mtu", "4000"]),
        topology.exec_outside(&["ip", "link", "set", &host, "mtu", "4000"]),
    ];
    assert!(
        raised.iter().all(|output| output.status.success()),
        "{raised:?}"
    );
    let big = [
        "ping", "-q", "-n", "-c", "1", "-W", "1", "-w", "2", "-M", "do", "-s", "3000",
    ];
    let answered = topology
        .exec_outside(&[&big[..], &[INSIDE_V4[0]]].concat())
        .status
        .success();
    let totals = Totals::sum(&gateway.stop());

    assert!(!answered, "a 3000-byte ping crossed with 1536-byte slots");
    let outside = PortSide::Outside.index();
    assert!(totals.truncated[outside] >= 1, "{totals:?}");
    assert_eq!(
        totals.forwarded[outside] + totals.truncated[outside],
        totals.received[outside]
    );
    assert!(
        longest.load(Ordering::Relaxed) <= 1518,
        "decide saw part of a long frame"
    );
}

/// Tagged frames injected on the outside host's interface, as raw bytes: `decide` must see
/// each exactly as sent, and the inside host must receive each exactly as sent. Runs on
/// kernels without 802.1Q support too (no VLAN interface is needed to carry tagged frames).
#[test]
fn vlan_tags_reach_decide_and_the_far_side_unchanged() {
    let Some(topology) = Topology::new("vtag") else {
        return;
    };
    let cases: [&[(u16, u16)]; 6] = [
        &[],
        &[(0x8100, 100)],
        &[(0x8100, 0xa000)], // priority-tagged: VLAN 0, priority 5
        &[(0x8100, 0)],      // a tag whose TCI is all zero is still a tag
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
    let gateway = Gateway::start(&topology, 1, move |_, _, frame| {
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

/// Frames that something else sends out of a gateway port (here a second socket on the
/// inside port; in production the kernel or a capture tool) are leaving, not arriving: the
/// gateway must not forward them to the other side. The kernel already hides a socket's own
/// frames from it, and a fanout group's from the group; this is about everyone else's.
#[test]
fn frames_leaving_a_port_are_not_taken_as_arriving() {
    const FRAMES: usize = 5;
    let Some(topology) = Topology::new("out") else {
        return;
    };
    for workers in [1, 2] {
        let seen = Arc::new(Seen::default());
        let counter = seen.clone();
        let gateway = Gateway::start(&topology, workers, move |_, side, frame| {
            if frame[6..12] == INJECTED_SOURCE_MAC {
                counter.note(side);
            }
            Disposition::Forward
        });
        let mut inside_host = open_port(
            &topology,
            Side::Inside,
            &topology.host_interface(PortSide::Inside),
        );
        let mut outside_host = open_port(
            &topology,
            Side::Outside,
            &topology.host_interface(PortSide::Outside),
        );
        let mut other_sender =
            open_port(&topology, Side::Gateway, &topology.port(PortSide::Inside));
        for case in 0..FRAMES {
            other_sender.send(&marked_udp_frame(case)).unwrap();
        }
        let at_inside_host = capture_marked(&mut inside_host, FRAMES, IO_TIMEOUT);
        let at_outside_host = capture_marked(&mut outside_host, 1, QUIET);
        gateway.stop();
        assert_eq!(
            at_inside_host.len(),
            FRAMES,
            "{workers} workers: frames that left the port"
        );
        assert_eq!(
            seen.count(PortSide::Inside),
            0,
            "{workers} workers: taken as arriving"
        );
        assert!(
            at_outside_host.is_empty(),
            "{workers} workers: forwarded to the outside host"
        );
    }
}

/// A VLAN 100 interface on each host, pinging each other across the gateway. Needs a kernel
/// with 802.1Q support; the test above covers tags on kernels without.
#[test]
fn ping_over_a_vlan_crosses_the_gateway_with_its_tag() {
    let Some(topology) = Topology::new("vlan") else {
        return;
    };
    if let Err(error) = topology.add_vlan() {
        eprintln!("SKIPPED vlan interfaces: this kernel cannot make them: {error}");
        return;
    }
    let tags: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let recorder = tags.clone();
    let gateway = Gateway::start(&topology, 1, move |_, _, frame| {
        if frame[12..14] == [0x81, 0x00] {
            let vlan = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
            *recorder.lock().unwrap().entry(vlan).or_default() += 1;
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
        tags.get(&100).copied().unwrap_or(0) >= 4,
        "tagged frames seen: {tags:?}"
    );
}

#[test]
fn a_stopped_gateway_forwards_nothing() {
    let Some(topology) = Topology::new("stop") else {
        return;
    };
    let gateway = Gateway::start(&topology, 2, forward_all);
    assert!(
        topology.ping(Side::Outside, INSIDE_V4[0]),
        "no path while running"
    );
    assert!(
        topology.ping(Side::Inside, OUTSIDE_V6[0]),
        "no path while running"
    );
    assert_eq!(
        promiscuity(&topology, PortSide::Outside),
        2,
        "one socket per worker"
    );
    gateway.stop();

    let answered: Vec<_> = [
        (Side::Outside, INSIDE_V4[0]),
        (Side::Outside, INSIDE_V6[0]),
        (Side::Inside, OUTSIDE_V4[0]),
        (Side::Inside, OUTSIDE_V6[0]),
    ]
    .into_iter()
    .filter(|(from, to)| topology.ping(*from, to))
    .collect();
    assert!(
        answered.is_empty(),
        "answered with the gateway stopped: {answered:?}"
    );
    for side in PortSide::BOTH {
        assert_eq!(
            promiscuity(&topology, side),
            0,
            "{} port still promiscuous",
            side.name()
        );
    }
}

/// A pair that nobody polls while a burst arrives: the outside socket's receive queue fills
/// and the kernel drops the rest there. Every frame sent must then be either received once the
/// pair polls again or counted as `socket_queue_full`. Two bursts, so that the totals survive
/// the kernel resetting its count at every read.
#[test]
fn frames_dropped_at_a_full_socket_queue_are_counted() {
    socket_queue_overflow_is_counted("qfull", 1);
}

/// As above with two workers, whose sockets on a port share its frames through a fanout
/// group: each counts its own drops, and their sum accounts for every frame once.
#[test]
fn fanout_workers_count_their_own_socket_queue_drops() {
    socket_queue_overflow_is_counted("qfan", 2);
}

fn socket_queue_overflow_is_counted(tag: &str, workers: usize) {
    /// Well past the sockets' receive buffers (4 MiB asked, 8 MiB granted: about 3,600
    /// frames of this size each), and sent in well under a second.
    const BURST: u64 = 10_000;
    const FRAME_LEN: usize = 1400;
    /// Flows, so that a fanout group spreads the frames over its sockets.
    const FLOWS: u16 = 64;
    const FIRST_SOURCE_PORT: u16 = 45000;
    const DESTINATION_PORT: u16 = 46000;
    let Some(topology) = Topology::new(tag) else {
        return;
    };
    topology.silence_outside_host();
    let host = topology.host_interface(PortSide::Outside);
    let config = topology.backend_config(workers);
    let mut pairs: Vec<afpacket::AfPacketPair> = topology
        .netns(Side::Gateway)
        .run(move || {
            (0..workers)
                .map(|worker| afpacket::open(&config, worker).unwrap())
                .collect()
        })
        .unwrap();
    let mut generator = open_port(&topology, Side::Outside, &host);
    let frames: Vec<u8> = (0..FLOWS)
        .flat_map(|flow| udp_frame_of_len((FIRST_SOURCE_PORT + flow, DESTINATION_PORT), FRAME_LEN))
        .collect();
    let is_marked = |frame: &[u8]| {
        udp_ports(frame).is_some_and(|(source, destination)| {
            destination == DESTINATION_PORT
                && (FIRST_SOURCE_PORT..FIRST_SOURCE_PORT + FLOWS).contains(&source)
        })
    };

    let mut sent = 0;
    let mut received = vec![[0u64; 2]; workers];
    let mut marked = vec![0u64; workers];
    let mut dropped = 0;
    for burst in 1..=2 {
        sent += send_repeatedly(&mut generator, &frames, FRAME_LEN, BURST);
        for (worker, pair) in pairs.iter_mut().enumerate() {
            drain(pair, &mut received[worker], &mut marked[worker], is_marked);
        }
        let drops: Vec<[u64; 2]> = pairs
            .iter()
            .map(|pair| {
                pair.kernel_drops()
                    .expect("the afpacket backend counts its kernel drops")
                    .map(|d| d.socket_queue_full.expect("as socket_queue_full"))
            })
            .collect();
        let outside: u64 = drops.iter().map(|d| d[0]).sum();
        let context = format!(
            "{workers} worker(s), burst {burst}: sent {sent}, received {received:?} ({marked:?} \
             of them sent by the test), dropped {drops:?}"
        );
        eprintln!("{context}");
        assert_eq!(sent, burst * BURST, "{context}");
        assert!(
            outside > dropped,
            "the queues overflowed in each burst: {context}"
        );
        dropped = outside;
        assert_eq!(
            marked.iter().sum::<u64>() + outside,
            sent,
            "every frame accounted for, once: {context}"
        );
        for worker in 0..workers {
            assert_eq!(
                received[worker][PortSide::Outside.index()],
                marked[worker],
                "nothing but the test's frames: {context}"
            );
            assert!(marked[worker] > 0, "the fanout fed every worker: {context}");
            assert_eq!(
                drops[worker][1], 0,
                "nothing to drop on the idle port: {context}"
            );
        }
        for pair in &mut pairs {
            let reported = pair.kernel_drops();
            assert_eq!(reported.map(|d| d[0].fill_ring_empty), Some(None));
            assert_eq!(
                reported,
                Some(pair.read_kernel_drops()),
                "nothing dropped since: {context}"
            );
        }
    }
}

#[test]
fn ports_in_another_namespace_are_not_found() {
    let Some(topology) = Topology::new("nsif") else {
        return;
    };
    // This thread is in the test's own namespace, where the gateway's ports do not exist.
    let error = afpacket::open(&topology.backend_config(1), 0).unwrap_err();
    let port = topology.port(PortSide::Outside);
    assert!(
        matches!(&error, BackendError::NoSuchInterface { interface } if *interface == port),
        "{error}"
    );
}

#[test]
fn namespace_threads_use_the_namespace_network() {
    let Some(topology) = Topology::new("nsrun") else {
        return;
    };
    let host = SocketAddr::new(OUTSIDE_V4[0].parse().unwrap(), 0);
    let inside = topology
        .netns(Side::Outside)
        .run(|| UdpSocket::bind(host))
        .unwrap();
    assert!(
        inside.is_ok(),
        "binding {host} in its namespace: {inside:?}"
    );
    let spawned = topology
        .netns(Side::Inside)
        .spawn("probe", move || UdpSocket::bind(host).map(|_| ()))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        spawned.map_err(|error| error.kind()),
        Err(io::ErrorKind::AddrNotAvailable),
        "{host} belongs to the outside namespace only"
    );
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
            "{} bytes sent, {} bytes echoed, first difference at byte {:?}",
            payload.len(),
            reply.len(),
            reply.iter().zip(payload).position(|(a, b)| a != b)
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

/// Sends `per_source` datagrams from each of `sources` (ports of `from`) to `target`.
fn send_udp(
    topology: &Topology,
    from: &str,
    sources: &[u16],
    per_source: usize,
    target: SocketAddr,
) {
    let from: IpAddr = from.parse().unwrap();
    topology
        .netns(Side::Outside)
        .run(|| {
            for &port in sources {
                let socket = UdpSocket::bind(SocketAddr::new(from, port)).unwrap();
                for i in 0..per_source {
                    socket
                        .send_to(format!("datagram {i}").as_bytes(), target)
                        .unwrap();
                }
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

/// A UDP frame between documentation addresses from [`INJECTED_SOURCE_MAC`], `len` bytes long.
fn udp_frame_of_len((source, destination): (u16, u16), len: usize) -> Vec<u8> {
    const HEADERS: usize = 14 + 20 + 8;
    let builder = PacketBuilder::ethernet2(INJECTED_SOURCE_MAC, INJECTED_DESTINATION_MAC)
        .ipv4([198, 51, 100, 10], [198, 51, 100, 110], 64)
        .udp(source, destination);
    let payload = vec![0x5a; len - HEADERS];
    let mut frame = Vec::with_capacity(len);
    builder.write(&mut frame, &payload).unwrap();
    assert_eq!(frame.len(), len);
    frame
}

/// Sends the frames of `frames` (each `len` bytes, one after the other) in turn, `count` in
/// all, as fast as the port takes them, for at most 10 s; returns how many were sent.
fn send_repeatedly(
    port: &mut afpacket::AfPacketPort,
    frames: &[u8],
    len: usize,
    count: u64,
) -> u64 {
    let ranges: Vec<_> = (0..frames.len() / len)
        .map(|i| i * len..(i + 1) * len)
        .cycle()
        .take(256)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    while sent < count && Instant::now() < deadline {
        let wanted = ranges.len().min((count - sent) as usize);
        sent += port.send_batch(frames, &ranges[..wanted]).unwrap() as u64;
    }
    sent
}

/// Polls `pair` until two polls in a row find nothing (a poll that finds nothing reads the
/// kernel's drop counts), for at most 10 s; adds what it received to `received`, and the
/// frames `is_marked` picks to `marked`. Drops everything.
fn drain(
    pair: &mut afpacket::AfPacketPair,
    received: &mut [u64; 2],
    marked: &mut u64,
    is_marked: impl Fn(&[u8]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut idle = 0;
    while idle < 2 && Instant::now() < deadline {
        let stats = pair
            .poll(Duration::from_millis(50), |_, frame| {
                if is_marked(frame) {
                    *marked += 1;
                }
                Disposition::Drop
            })
            .unwrap();
        for (total, batch) in received.iter_mut().zip(stats.received) {
            *total += u64::from(batch);
        }
        idle = if stats.received == [0, 0] {
            idle + 1
        } else {
            0
        };
    }
    assert_eq!(idle, 2, "the pair was still receiving after 10 s");
}

/// The kernel's promiscuity count of a gateway port (one per socket that asked for it).
fn promiscuity(topology: &Topology, side: PortSide) -> u32 {
    let output = topology.exec_gateway(&["ip", "-d", "link", "show", &topology.port(side)]);
    let text = String::from_utf8_lossy(&output.stdout);
    let mut words = text.split_whitespace();
    words
        .find(|word| *word == "promiscuity")
        .and_then(|_| words.next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no promiscuity in {text}"))
}
