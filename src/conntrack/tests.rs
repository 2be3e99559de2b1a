use std::net::IpAddr;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use proptest::prelude::*;

use super::tcp::{ACK, FIN, PSH, RST, SYN};
use super::*;

const SECOND: u64 = 1_000_000_000;
const A: &str = "192.0.2.1";
const B: &str = "198.51.100.2";
const ROUTER: &str = "203.0.113.1";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn at(seconds: u64) -> Tick {
    Tick(seconds * SECOND)
}

/// Timeouts that all differ, so that a state given the wrong one shows.
fn distinct_timeouts() -> Timeouts {
    let s = Duration::from_secs;
    Timeouts {
        tcp_syn_sent: s(11),
        tcp_established: s(12),
        tcp_fin_wait: s(13),
        tcp_close_wait: s(14),
        tcp_time_wait: s(15),
        tcp_close: s(16),
        udp_unreplied: s(17),
        udp_replied: s(18),
        icmp: s(19),
        other: s(20),
    }
}

fn config(max_entries: u32, shards: usize) -> ConntrackConfig {
    ConntrackConfig {
        max_entries,
        shards: Some(shards),
        timeouts: distinct_timeouts(),
        ..ConntrackConfig::default()
    }
}

fn table() -> Conntrack {
    Conntrack::new(&config(1024, 4)).unwrap()
}

fn flow(protocol: u8, src: &str, sport: u16, dst: &str, dport: u16) -> ConnPacket {
    ConnPacket {
        src: ip(src),
        dst: ip(dst),
        protocol,
        src_port: sport,
        dst_port: dport,
        tcp_flags: 0,
        icmp: None,
    }
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> ConnPacket {
    ConnPacket {
        tcp_flags: flags,
        ..flow(6, src, sport, dst, dport)
    }
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> ConnPacket {
    flow(17, src, sport, dst, dport)
}

fn icmp(protocol: u8, src: &str, dst: &str, icmp_type: u8, id: u16) -> ConnPacket {
    ConnPacket {
        icmp: Some(IcmpInfo {
            icmp_type,
            code: 0,
            echo_id: id,
            inner: None,
        }),
        ..flow(protocol, src, 0, dst, 0)
    }
}

/// An ICMP error from `src` to `dst` quoting `quoted`.
fn error(protocol: u8, src: &str, dst: &str, icmp_type: u8, quoted: &ConnPacket) -> ConnPacket {
    let (inner_type, echo_id) = quoted.icmp.map_or((0, 0), |i| (i.icmp_type, i.echo_id));
    ConnPacket {
        icmp: Some(IcmpInfo {
            icmp_type,
            code: 0,
            echo_id: 0,
            inner: Some(InnerPacket {
                src: quoted.src,
                dst: quoted.dst,
                protocol: quoted.protocol,
                src_port: quoted.src_port,
                dst_port: quoted.dst_port,
                icmp_type: inner_type,
                echo_id,
            }),
        }),
        ..flow(protocol, src, 0, dst, 0)
    }
}

fn reversed(pkt: &ConnPacket) -> ConnPacket {
    ConnPacket {
        src: pkt.dst,
        dst: pkt.src,
        src_port: pkt.dst_port,
        dst_port: pkt.src_port,
        ..*pkt
    }
}

/// Runs a packet as the packet path would with a policy that allows everything: look up,
/// and insert what is new.
fn pass(ct: &Conntrack, pkt: &ConnPacket, now: Tick) -> Lookup {
    let lookup = ct.lookup(pkt, now);
    if matches!(lookup, Lookup::New | Lookup::NewMidStream) {
        ct.insert(pkt, now, 1).unwrap();
    }
    lookup
}

fn established(state: FlowState, direction: Direction) -> Lookup {
    Lookup::Established { state, direction }
}

use Direction::{Original, Reply};
use FlowState::Tcp;
use TcpState::*;

#[derive(Clone, Copy)]
enum Way {
    /// From A:40000 to B:443.
    Out,
    /// From B:443 to A:40000.
    Back,
}

fn segment(way: Way, flags: u8) -> ConnPacket {
    match way {
        Way::Out => tcp(A, 40000, B, 443, flags),
        Way::Back => tcp(B, 443, A, 40000, flags),
    }
}

/// A scenario: its name and each segment with what its lookup must say.
type Scenario<'a> = (&'a str, &'a [(Way, u8, Lookup)]);

#[test]
fn tcp_connections_through_their_states() {
    use Way::{Back, Out};
    let est = |state, dir| established(Tcp(state), dir);
    let no_conn = Lookup::Invalid(InvalidReason::TcpNoConnection);
    let out_of_state = Lookup::Invalid(InvalidReason::TcpOutOfState);
    let cases: &[Scenario<'_>] = &[
        (
            "handshake, data, close from the client",
            &[
                (Out, SYN, Lookup::New),
                (Back, SYN | ACK, est(SynRecv, Reply)),
                (Out, ACK, est(Established, Original)),
                (Back, ACK | PSH, est(Established, Reply)),
                (Out, FIN | ACK, est(FinWait, Original)),
                (Back, ACK, est(CloseWait, Reply)),
                (Back, FIN | ACK, est(TimeWait, Reply)),
                (Out, ACK, est(TimeWait, Original)),
            ],
        ),
        (
            "both sides close at once",
            &[
                (Out, SYN, Lookup::New),
                (Back, SYN | ACK, est(SynRecv, Reply)),
                (Out, ACK, est(Established, Original)),
                (Back, FIN | ACK, est(FinWait, Reply)),
                (Out, FIN | ACK, est(TimeWait, Original)),
            ],
        ),
        (
            "reset by the server closes",
            &[
                (Out, SYN, Lookup::New),
                (Back, RST | ACK, est(Close, Reply)),
                (Out, ACK, est(Close, Original)),
            ],
        ),
        (
            "a new SYN over TIME_WAIT opens a new connection",
            &[
                (Out, SYN, Lookup::New),
                (Back, SYN | ACK, est(SynRecv, Reply)),
                (Out, ACK, est(Established, Original)),
                (Out, FIN | ACK, est(FinWait, Original)),
                (Back, FIN | ACK, est(TimeWait, Reply)),
                (Out, SYN, Lookup::New),
                (Out, SYN, est(SynSent, Original)),
            ],
        ),
        (
            "impossible segments are invalid and change nothing",
            &[
                (Out, SYN, Lookup::New),
                (Out, ACK, out_of_state),
                (Out, SYN | ACK, out_of_state),
                (Out, FIN | ACK, out_of_state),
                (Back, SYN | ACK, est(SynRecv, Reply)),
                (Out, SYN | FIN, Lookup::Invalid(InvalidReason::TcpFlags)),
                (Out, ACK, est(Established, Original)),
            ],
        ),
        (
            "loose pickup of a connection already running",
            &[
                (Out, ACK | PSH, Lookup::NewMidStream),
                (Out, ACK, est(Established, Original)),
                (Back, ACK, est(Established, Reply)),
            ],
        ),
        (
            "stray segments open nothing",
            &[
                (Back, SYN | ACK, no_conn),
                (Out, RST, no_conn),
                (Out, FIN | ACK, no_conn),
                (Out, FIN, Lookup::Invalid(InvalidReason::TcpFlags)),
            ],
        ),
    ];
    for (name, steps) in cases {
        let ct = table();
        for (i, &(way, flags, expected)) in steps.iter().enumerate() {
            let got = pass(&ct, &segment(way, flags), at(i as u64));
            assert_eq!(got, expected, "{name}: step {i}");
        }
    }
}

#[test]
fn both_directions_find_one_entry() {
    let ct = table();
    let out = segment(Way::Out, SYN);
    assert_eq!(pass(&ct, &out, at(0)), Lookup::New);
    let back = segment(Way::Back, SYN | ACK);
    assert_eq!(ct.peek(&out, at(1)), ct.peek(&back, at(1)));
    let entry = ct.peek(&back, at(1)).unwrap();
    assert_eq!((entry.flow.src, entry.flow.src_port), (ip(A), 40000));
    assert_eq!(entry.generation, 1);
    assert_eq!(ct.lookup(&back, at(1)), established(Tcp(SynRecv), Reply));
    assert_eq!(ct.len(), 1);
}

#[test]
fn strict_mode_refuses_mid_stream_segments() {
    let ct = Conntrack::new(&ConntrackConfig {
        tcp_loose_pickup: false,
        ..config(64, 1)
    })
    .unwrap();
    let segment = segment(Way::Out, ACK);
    assert_eq!(
        ct.lookup(&segment, at(0)),
        Lookup::Invalid(InvalidReason::TcpNoConnection)
    );
    assert_eq!(
        ct.insert(&segment, at(0), 1),
        Err(InsertError::NotTrackable)
    );
    assert_eq!(ct.lookup(&tcp(A, 1, B, 2, SYN), at(0)), Lookup::New);
    assert!(ct.is_empty());
}

/// A state, the segments that lead to it, and its timeout.
type TimeoutCase = (&'static str, &'static [(Way, u8)], Duration);

#[test]
fn each_state_expires_exactly_at_its_timeout() {
    use Way::{Back, Out};
    let t = distinct_timeouts();
    let tcp_cases: &[TimeoutCase] = &[
        ("SYN_SENT", &[(Out, SYN)], t.tcp_syn_sent),
        ("SYN_RECV", &[(Out, SYN), (Back, SYN | ACK)], t.tcp_syn_sent),
        (
            "ESTABLISHED",
            &[(Out, SYN), (Back, SYN | ACK), (Out, ACK)],
            t.tcp_established,
        ),
        ("picked up, no reply", &[(Out, ACK)], t.tcp_syn_sent),
        (
            "picked up, replied",
            &[(Out, ACK), (Back, ACK)],
            t.tcp_established,
        ),
        (
            "FIN_WAIT",
            &[(Out, SYN), (Back, SYN | ACK), (Out, ACK), (Out, FIN | ACK)],
            t.tcp_fin_wait,
        ),
        (
            "CLOSE_WAIT",
            &[(Out, ACK), (Back, ACK), (Out, FIN | ACK), (Back, ACK)],
            t.tcp_close_wait,
        ),
        (
            "TIME_WAIT",
            &[(Out, ACK), (Back, FIN | ACK), (Out, FIN | ACK)],
            t.tcp_time_wait,
        ),
        (
            "CLOSE",
            &[(Out, ACK), (Back, ACK), (Back, RST)],
            t.tcp_close,
        ),
    ];
    let mut cases: Vec<(String, Vec<ConnPacket>, Duration)> = tcp_cases
        .iter()
        .map(|(name, steps, timeout)| {
            let packets = steps.iter().map(|&(w, f)| segment(w, f)).collect();
            (name.to_string(), packets, *timeout)
        })
        .collect();
    let u = udp(A, 5353, B, 53);
    let echo = icmp(1, A, B, 8, 9);
    let echo6 = icmp(58, "2001:db8::1", "2001:db8::2", 128, 9);
    let gre = flow(47, A, 0, B, 0);
    let datagram_cases = [
        ("UDP unreplied", vec![u], t.udp_unreplied),
        ("UDP replied", vec![u, reversed(&u)], t.udp_replied),
        ("echo request", vec![echo], t.icmp),
        ("echo replied", vec![echo, icmp(1, B, A, 0, 9)], t.icmp),
        ("ICMPv6 echo", vec![echo6], t.icmp),
        ("other protocol", vec![gre, reversed(&gre)], t.other),
    ];
    cases.extend(
        datagram_cases
            .into_iter()
            .map(|(name, packets, timeout)| (name.to_string(), packets, timeout)),
    );

    for (name, packets, timeout) in cases {
        let ct = table();
        let last = at(packets.len() as u64);
        for (i, pkt) in packets.iter().enumerate() {
            let got = pass(&ct, pkt, at(i as u64 + 1));
            assert!(
                !matches!(got, Lookup::Invalid(_) | Lookup::Stateless),
                "{name}: {got:?}"
            );
        }
        let probe = &packets[0];
        let deadline = last.after(timeout.as_nanos() as u64);
        let before = Tick(deadline.nanos() - 1);
        assert_eq!(
            ct.peek(probe, before).map(|e| e.expires),
            Some(deadline),
            "{name}"
        );
        assert!(
            ct.peek(probe, deadline).is_none(),
            "{name}: alive at its timeout"
        );
        let relooked = ct.lookup(probe, deadline);
        assert!(
            !matches!(relooked, Lookup::Established { .. }),
            "{name}: {relooked:?}"
        );
        assert_eq!(ct.stats().expirations, 1, "{name}");
        assert!(ct.is_empty(), "{name}");
    }
}

#[test]
fn udp_moves_from_unreplied_to_replied() {
    let ct = table();
    let out = udp(A, 5353, B, 53);
    assert_eq!(pass(&ct, &out, at(0)), Lookup::New);
    assert_eq!(
        pass(&ct, &out, at(1)),
        established(FlowState::Unreplied, Original)
    );
    assert_eq!(
        pass(&ct, &reversed(&out), at(2)),
        established(FlowState::Replied, Reply)
    );
    assert_eq!(
        pass(&ct, &out, at(3)),
        established(FlowState::Replied, Original)
    );
    let expires = ct.peek(&out, at(3)).unwrap().expires;
    assert_eq!(expires, at(3 + 18));
}

#[test]
fn echo_is_tracked_by_identifier() {
    let ct = table();
    assert_eq!(pass(&ct, &icmp(1, A, B, 8, 7), at(0)), Lookup::New);
    let cases = [
        (icmp(1, B, A, 0, 7), established(FlowState::Replied, Reply)),
        (
            icmp(1, A, B, 8, 7),
            established(FlowState::Replied, Original),
        ),
        (icmp(1, B, A, 0, 8), Lookup::Stateless),
        (icmp(1, A, B, 8, 8), Lookup::New),
        // B pinging A with the same identifier is another exchange.
        (icmp(1, B, A, 8, 7), Lookup::New),
        // Other types are never tracked.
        (icmp(1, A, B, 13, 7), Lookup::Stateless),
        (
            icmp(58, "2001:db8::1", "2001:db8::2", 135, 0),
            Lookup::Stateless,
        ),
    ];
    for (pkt, expected) in cases {
        assert_eq!(ct.lookup(&pkt, at(1)), expected, "{pkt:?}");
    }
    assert_eq!(
        ct.insert(&icmp(1, B, A, 0, 8), at(1), 1),
        Err(InsertError::NotTrackable)
    );
    assert_eq!(
        ct.insert(&icmp(1, A, B, 13, 7), at(1), 1),
        Err(InsertError::NotTrackable)
    );
    assert_eq!(ct.len(), 1);
}

#[test]
fn icmp_errors_relate_to_the_connection_they_quote() {
    let ct = table();
    let out = udp(A, 5353, B, 53);
    let back = reversed(&out);
    let v6 = tcp("2001:db8::1", 40000, "2001:db8::2", 22, SYN);
    let ping = icmp(1, A, B, 8, 3);
    for pkt in [&out, &v6, &ping] {
        assert_eq!(pass(&ct, pkt, at(0)), Lookup::New);
    }
    let related = |direction| Lookup::Related { direction };
    let cases = [
        // A router between A and B says A's datagram could not be delivered: the error
        // travels back towards A, the reply direction.
        (
            "unreachable to A",
            error(1, ROUTER, A, 3, &out),
            related(Reply),
        ),
        (
            "unreachable from B",
            error(1, B, A, 3, &out),
            related(Reply),
        ),
        (
            "time exceeded to A",
            error(1, ROUTER, A, 11, &out),
            related(Reply),
        ),
        (
            "parameter problem to A",
            error(1, ROUTER, A, 12, &out),
            related(Reply),
        ),
        // B's reply could not reach A: the error goes to B, the original direction.
        (
            "unreachable to B",
            error(1, ROUTER, B, 3, &back),
            related(Original),
        ),
        (
            "packet too big, v6",
            error(58, "2001:db8::ff", "2001:db8::1", 2, &v6),
            related(Reply),
        ),
        (
            "v6 unreachable from the far side",
            error(58, "2001:db8::ff", "2001:db8::2", 1, &reversed(&v6)),
            related(Original),
        ),
        (
            "about an echo request",
            error(1, ROUTER, A, 11, &ping),
            related(Reply),
        ),
        (
            "about an untracked flow",
            error(1, ROUTER, A, 3, &udp(A, 1, B, 2)),
            Lookup::Stateless,
        ),
        (
            "quote of A's packet addressed to someone else",
            error(1, ROUTER, "192.0.2.99", 3, &out),
            Lookup::Stateless,
        ),
        (
            "quote of B's packet addressed to A",
            error(1, ROUTER, A, 3, &back),
            Lookup::Stateless,
        ),
        (
            "redirect is not an error",
            error(1, ROUTER, A, 5, &out),
            Lookup::Stateless,
        ),
        (
            "an error about an error",
            error(1, ROUTER, A, 3, &error(1, ROUTER, B, 3, &back)),
            Lookup::Stateless,
        ),
    ];
    for (name, pkt, expected) in cases {
        assert_eq!(ct.lookup(&pkt, at(1)), expected, "{name}");
    }
    // Related packets refresh nothing: the entry still expires on its first schedule.
    assert_eq!(ct.peek(&out, at(1)).unwrap().expires, at(17));
    assert_eq!(
        ct.lookup(&error(1, ROUTER, A, 3, &out), at(17)),
        Lookup::Stateless
    );
    assert_eq!(ct.len(), 2);
}

/// A handshake through to ESTABLISHED from `port` on A.
fn open_tcp(ct: &Conntrack, port: u16, now: Tick) {
    let out = tcp(A, port, B, 443, SYN);
    assert_eq!(pass(ct, &out, now), Lookup::New);
    pass(ct, &tcp(B, 443, A, port, SYN | ACK), now);
    pass(ct, &tcp(A, port, B, 443, ACK), now);
}

#[test]
fn a_full_shard_evicts_the_never_replied_entry_nearest_expiry() {
    let ct = Conntrack::new(&config(4, 1)).unwrap();
    open_tcp(&ct, 1, at(0));
    open_tcp(&ct, 2, at(0));
    let older = udp(A, 3, B, 53);
    let newer = udp(A, 4, B, 53);
    pass(&ct, &older, at(1));
    pass(&ct, &newer, at(2));
    assert_eq!(ct.len(), 4);

    let incoming = udp(A, 5, B, 53);
    assert_eq!(ct.insert(&incoming, at(3), 1), Ok(()));
    assert!(
        ct.peek(&older, at(3)).is_none(),
        "the older unreplied entry stays"
    );
    for kept in [
        &newer,
        &incoming,
        &tcp(A, 1, B, 443, ACK),
        &tcp(A, 2, B, 443, ACK),
    ] {
        assert!(ct.peek(kept, at(3)).is_some(), "{kept:?} was evicted");
    }
    let stats = ct.stats();
    assert_eq!((stats.evictions, stats.entries, stats.inserts), (1, 4, 5));
}

#[test]
fn a_shard_full_of_replied_entries_refuses_new_connections() {
    let ct = Conntrack::new(&config(3, 1)).unwrap();
    open_tcp(&ct, 1, at(0));
    open_tcp(&ct, 2, at(0));
    let replied = udp(A, 3, B, 53);
    pass(&ct, &replied, at(0));
    pass(&ct, &reversed(&replied), at(0));

    assert_eq!(
        ct.insert(&udp(A, 9, B, 53), at(1), 1),
        Err(InsertError::Full)
    );
    assert_eq!(
        ct.insert(&tcp(A, 9, B, 443, SYN), at(1), 1),
        Err(InsertError::Full)
    );
    let stats = ct.stats();
    assert_eq!(
        (stats.insert_failures, stats.evictions, stats.entries),
        (2, 0, 3)
    );
    // Once one of them has expired, its slot is taken without an eviction.
    assert_eq!(ct.insert(&udp(A, 9, B, 53), at(100), 1), Ok(()));
    let stats = ct.stats();
    assert_eq!((stats.evictions, stats.expirations), (0, 1));
}

#[test]
fn the_table_never_holds_more_than_its_maximum() {
    let ct = Conntrack::new(&config(100, 8)).unwrap();
    for port in 0..1000u16 {
        let _ = ct.insert(&udp(A, port, B, 53), at(0), 1);
    }
    let stats = ct.stats();
    assert_eq!(ct.len(), 100);
    assert_eq!(stats.inserts - stats.evictions, 100);
    assert_eq!(ct.capacity(), 100);
    assert_eq!(ct.shard_count(), 8);
}

#[test]
fn a_flood_of_new_flows_keeps_the_table_short_and_open() {
    // Fixed hash words: the longest cluster depends on where the keys land, and random
    // words would make the bound below hold only most of the time.
    let fixed = FlowHashBuilder::with_words(0x5EED_0001, 0x5EED_0002, 0x5EED_0003);
    let ct = Conntrack::with_hasher(&config(1024, 1), fixed).unwrap();
    let mut x: u64 = 0x5EED_CAFE_F00D_0002;
    for _ in 0..100_000 {
        // xorshift64: distinct flows from all over the address space.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let pkt = ConnPacket {
            src: IpAddr::from((x as u32).to_be_bytes()),
            src_port: (x >> 32) as u16,
            dst_port: (x >> 48) as u16,
            ..udp(A, 0, B, 0)
        };
        assert_eq!(ct.insert(&pkt, at(0), 1), Ok(()));
    }
    let stats = ct.stats();
    assert_eq!((stats.entries, stats.insert_failures), (1024, 0));
    // Evictions must fall evenly: uneven ones pile entries into clusters of many hundreds of
    // slots. At 80% load, linear probing alone leaves clusters of about a hundred (132 with
    // this fixed key), so the bound sits well above that and well below the failure.
    let longest = ct.shards[0].lock().table.longest_cluster();
    assert!(longest < 250, "a cluster of {longest} slots");
}

#[test]
fn sweep_removes_only_expired_entries() {
    let ct = Conntrack::new(&config(64, 4)).unwrap();
    for port in 0..20u16 {
        pass(&ct, &udp(A, port, B, 53), at(0)); // expires at 17 s
    }
    for port in 100..110u16 {
        open_tcp(&ct, port, at(0)); // expires at 12 s
    }
    assert_eq!(ct.sweep(at(11), usize::MAX), 0);
    assert_eq!(ct.sweep(at(12), usize::MAX), 10);
    assert_eq!(ct.len(), 20);
    assert_eq!(ct.sweep(at(16), usize::MAX), 0);
    assert_eq!(ct.sweep(at(17), usize::MAX), 20);
    assert!(ct.is_empty());
    assert_eq!(ct.stats().expirations, 30);
}

#[test]
fn sweep_respects_its_budget_and_resumes() {
    let ct = Conntrack::new(&config(40, 2)).unwrap();
    for port in 0..40u16 {
        pass(&ct, &udp(A, port, B, 53), at(0));
    }
    // Shards fill unevenly (a full one evicts), so count what is there.
    let entries = ct.len();
    assert!(entries >= 20);
    // 2 shards of 20 entries, 26 slots each: 52 slots in all.
    let slots = 52;
    let mut removed = 0;
    let mut calls = 0;
    while !ct.is_empty() {
        let gone = ct.sweep(at(100), 5);
        assert!(gone <= 5, "removed {gone} with a budget of 5");
        removed += gone;
        calls += 1;
        assert!(calls <= slots + entries, "sweep makes no progress");
    }
    assert_eq!(removed, entries);
    // Each call examines 5 slots, and each removal examines its slot once more; the last
    // call may stop early.
    let examined = slots + entries;
    assert!(
        calls >= examined / 5 - 2,
        "{calls} calls for {examined} slots"
    );
    assert_eq!(ct.sweep(at(100), 0), 0);
}

#[test]
fn revalidate_drops_what_the_new_policy_refuses() {
    let ct = table();
    pass(&ct, &tcp(A, 1, B, 22, SYN), at(0));
    pass(&ct, &tcp(B, 22, A, 1, SYN | ACK), at(0));
    pass(&ct, &udp(A, 2, B, 53), at(0));
    pass(&ct, &tcp(B, 3, A, 80, SYN), at(0));
    pass(&ct, &tcp("2001:db8::2", 4, "2001:db8::1", 22, ACK), at(0));
    assert_eq!(ct.len(), 4);

    let seen = StdMutex::new(Vec::new());
    let removed = ct.revalidate(at(1), 2, |flow| {
        seen.lock().unwrap().push(*flow);
        flow.dst_port != 22
    });
    assert_eq!(removed, 2);
    assert_eq!(ct.len(), 2);
    assert!(ct.peek(&tcp(A, 1, B, 22, ACK), at(1)).is_none());
    let mut seen = seen.into_inner().unwrap();
    seen.sort_by_key(|f| f.src_port);
    let originators: Vec<(IpAddr, u16, u16)> = seen
        .iter()
        .map(|f| (f.src, f.src_port, f.dst_port))
        .collect();
    assert_eq!(
        originators,
        vec![
            (ip(A), 1, 22),
            (ip(A), 2, 53),
            (ip(B), 3, 80),
            (ip("2001:db8::2"), 4, 22)
        ]
    );
    assert_eq!(ct.peek(&udp(A, 2, B, 53), at(1)).unwrap().generation, 2);

    // Entries already judged under generation 2 are not judged again.
    let calls = StdMutex::new(0);
    assert_eq!(
        ct.revalidate(at(1), 2, |_| {
            *calls.lock().unwrap() += 1;
            false
        }),
        0
    );
    assert_eq!(*calls.lock().unwrap(), 0);
    assert_eq!(ct.revalidate(at(1), 3, |_| false), 2);
    assert_eq!(ct.stats().revalidation_drops, 4);
}

#[test]
fn entries_fit_a_cache_line_and_memory_follows_the_maximum() {
    assert_eq!(std::mem::size_of::<table::Slot<ConnKey, Entry>>(), 64);
    let small = Conntrack::new(&config(1024, 4)).unwrap();
    let large = Conntrack::new(&config(65536, 4)).unwrap();
    let per_entry = |ct: &Conntrack| ct.memory_bytes() as f64 / ct.capacity() as f64;
    for ct in [&small, &large] {
        let bytes = per_entry(ct);
        assert!((81.0..83.0).contains(&bytes), "{bytes} bytes per entry");
    }
}

#[test]
fn a_table_too_large_to_build_is_an_error() {
    let Err(ConntrackError::OutOfMemory { entries, bytes }) = Conntrack::new(&config(u32::MAX, 1))
    else {
        panic!("a single shard of 4 billion entries was built");
    };
    assert_eq!(entries, u32::MAX as usize);
    assert!(bytes > 300 << 30, "{bytes}");
}

#[test]
fn ticks_saturate_instead_of_wrapping() {
    assert_eq!(Tick(u64::MAX - 1).after(10), Tick(u64::MAX));
    let ct = Conntrack::new(&ConntrackConfig {
        timeouts: Timeouts {
            udp_unreplied: Duration::MAX,
            ..distinct_timeouts()
        },
        ..config(8, 1)
    })
    .unwrap();
    let pkt = udp(A, 1, B, 2);
    pass(&ct, &pkt, Tick(u64::MAX - 5));
    assert!(ct.peek(&pkt, Tick(u64::MAX - 1)).is_some());
}

#[test]
fn workers_in_parallel_keep_the_totals_consistent() {
    const THREADS: u16 = 4;
    const FLOWS: u16 = 2000;
    let total = u64::from(THREADS * FLOWS);
    // Room for every flow: nothing may be lost.
    let roomy = Conntrack::new(&config(10_000, 16)).unwrap();
    // Room for a quarter: unreplied flows evict each other, and the cap holds.
    let tight = Conntrack::new(&config(2000, 16)).unwrap();
    std::thread::scope(|scope| {
        for worker in 0..THREADS {
            let (roomy, tight) = (&roomy, &tight);
            scope.spawn(move || {
                for port in 0..FLOWS {
                    let out = udp(A, port, B, worker);
                    assert_eq!(roomy.lookup(&out, at(0)), Lookup::New);
                    roomy.insert(&out, at(0), 1).unwrap();
                    assert_eq!(
                        roomy.lookup(&reversed(&out), at(1)),
                        established(FlowState::Replied, Reply)
                    );
                    assert_eq!(tight.lookup(&out, at(0)), Lookup::New);
                    tight.insert(&out, at(0), 1).unwrap();
                }
            });
        }
    });
    let stats = roomy.stats();
    assert_eq!(
        (stats.inserts, stats.entries, stats.evictions),
        (total, total, 0)
    );
    assert_eq!(roomy.len() as u64, total);

    let stats = tight.stats();
    assert_eq!(stats.inserts, total);
    assert_eq!(stats.insert_failures, 0);
    assert_eq!(stats.inserts - stats.evictions, stats.entries);
    assert!(
        tight.len() <= 2000 && tight.len() > 1900,
        "{} entries",
        tight.len()
    );
}

#[derive(Debug, Clone)]
struct Step {
    packet: ConnPacket,
    advance: u64,
    insert: bool,
}

fn arbitrary_packet() -> impl Strategy<Value = ConnPacket> {
    let addr = prop_oneof![
        (0u8..4).prop_map(|n| IpAddr::from([192, 0, 2, n])),
        (0u16..3).prop_map(|n| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, n])),
    ];
    let protocol = prop_oneof![Just(6u8), Just(17), Just(1), Just(58), Just(47)];
    let icmp_type = prop_oneof![
        Just(0u8),
        Just(8),
        Just(3),
        Just(11),
        Just(128),
        Just(129),
        Just(1),
        Just(2),
        any::<u8>()
    ];
    let inner = proptest::option::of(
        (
            addr.clone(),
            addr.clone(),
            protocol.clone(),
            0u16..4,
            0u16..4,
            icmp_type.clone(),
        )
            .prop_map(|(src, dst, protocol, sp, dp, t)| InnerPacket {
                src,
                dst,
                protocol,
                src_port: sp,
                dst_port: dp,
                icmp_type: t,
                echo_id: sp,
            }),
    );
    let icmp =
        proptest::option::of(
            (icmp_type, 0u16..4, inner).prop_map(|(t, id, inner)| IcmpInfo {
                icmp_type: t,
                code: 0,
                echo_id: id,
                inner,
            }),
        );
    (
        addr.clone(),
        addr,
        protocol,
        0u16..4,
        0u16..4,
        any::<u8>(),
        icmp,
    )
        .prop_map(|(src, dst, protocol, sp, dp, flags, icmp)| ConnPacket {
            src,
            dst,
            protocol,
            src_port: sp,
            dst_port: dp,
            tcp_flags: flags,
            icmp,
        })
}

fn arbitrary_step() -> impl Strategy<Value = Step> {
    (
        arbitrary_packet(),
        prop_oneof![Just(0u64), 0..30 * SECOND],
        any::<bool>(),
    )
        .prop_map(|(packet, advance, insert)| Step {
            packet,
            advance,
            insert,
        })
}

proptest! {
    #[test]
    fn arbitrary_traffic_never_panics_or_overfills(
        steps in proptest::collection::vec(arbitrary_step(), 1..200),
        max in 0u32..24,
        shards in 1usize..4,
        loose in any::<bool>(),
    ) {
        let ct = Conntrack::new(&ConntrackConfig {
            tcp_loose_pickup: loose,
            ..config(max, shards)
        })
        .unwrap();
        let mut now = Tick(0);
        for step in &steps {
            now = now.after(step.advance);
            let lookup = ct.lookup(&step.packet, now);
            let insertable = matches!(lookup, Lookup::New | Lookup::NewMidStream);
            if step.insert || insertable {
                let inserted = ct.insert(&step.packet, now, 7);
                if insertable {
                    prop_assert_ne!(inserted, Err(InsertError::NotTrackable), "{:?}", lookup);
                }
                if inserted.is_ok() {
                    prop_assert!(ct.peek(&step.packet, now).is_some());
                    let reply = ct.lookup(&reversed(&step.packet), now);
                    prop_assert!(!matches!(reply, Lookup::New | Lookup::NewMidStream) || step.packet.protocol == 1 || step.packet.protocol == 58, "{:?}", reply);
                }
            }
            prop_assert!(ct.len() <= max as usize);
            if step.advance > 20 * SECOND {
                ct.sweep(now, 7);
            }
        }
        let stats = ct.stats();
        prop_assert_eq!(stats.entries, ct.len() as u64);
        prop_assert_eq!(
            stats.inserts,
            stats.entries + stats.evictions + stats.expirations + stats.reopens
        );
    }
}

#[test]
fn a_slot_is_one_cache_line() {
    // A hit reads one slot: a slot across two lines would cost two memory accesses.
    assert_eq!(std::mem::size_of::<table::Slot<ConnKey, Entry>>(), 64);
    assert_eq!(std::mem::align_of::<table::Slot<ConnKey, Entry>>(), 64);
}

#[test]
fn both_directions_hash_alike_and_families_apart() {
    let builder = FlowHashBuilder::with_words(1, 3, 5);
    let v4 = |a: [u8; 4]| IpAddr::from(a);
    let (key, _) = ConnKey::ports(17, v4([192, 0, 2, 1]), 5353, v4([198, 51, 100, 2]), 53);
    let (reverse, _) = ConnKey::ports(17, v4([198, 51, 100, 2]), 53, v4([192, 0, 2, 1]), 5353);
    assert_eq!(builder.hash_one(key), builder.hash_one(reverse));
    let mapped = |a: [u8; 4]| IpAddr::from(std::net::Ipv4Addr::from(a).to_ipv6_mapped());
    let (v6, _) = ConnKey::ports(
        17,
        mapped([192, 0, 2, 1]),
        5353,
        mapped([198, 51, 100, 2]),
        53,
    );
    assert_ne!(builder.hash_one(key), builder.hash_one(v6));
    let (other_port, _) = ConnKey::ports(17, v4([192, 0, 2, 1]), 5354, v4([198, 51, 100, 2]), 53);
    assert_ne!(builder.hash_one(key), builder.hash_one(other_port));
}

/// Two workers' caches over one table.
fn two_caches() -> (FlowCache, FlowCache) {
    (FlowCache::new(64), FlowCache::new(64))
}

/// An established TCP connection A:port → B:443 seen through `cache`, so that its line is
/// filled.
fn cached_tcp(ct: &Conntrack, cache: &mut FlowCache, port: u16, now: Tick) -> ConnPacket {
    open_tcp(ct, port, now);
    let ack = tcp(A, port, B, 443, ACK);
    assert_eq!(
        ct.lookup_cached(&ack, now, cache),
        established(Tcp(Established), Original)
    );
    ack
}

#[test]
fn a_cached_line_answers_steady_packets_only_while_the_entry_lives() {
    let ct = table();
    let (mut cache, _) = two_caches();
    let ack = cached_tcp(&ct, &mut cache, 1000, at(0));
    let reply = reversed(&ack);
    for pkt in [&ack, &reply] {
        assert!(matches!(
            ct.lookup_cached(pkt, at(0), &mut cache),
            Lookup::Established { .. }
        ));
    }
    // Expired (12 s) with no sweeper: the line must not keep it alive.
    assert_eq!(
        ct.lookup_cached(&ack, at(12), &mut cache),
        Lookup::NewMidStream
    );
    assert!(ct.is_empty());
}

#[test]
fn a_line_is_not_trusted_after_its_entry_is_swept_or_revalidated_away() {
    let ct = table();
    let (mut cache, _) = two_caches();
    let ack = cached_tcp(&ct, &mut cache, 1001, at(0));
    assert_eq!(ct.revalidate(at(0), 2, |_| false), 1);
    assert_eq!(
        ct.lookup_cached(&ack, at(0), &mut cache),
        Lookup::NewMidStream
    );

    let ack = cached_tcp(&ct, &mut cache, 1002, at(0));
    // The sweeper runs at 12 s; the packet comes at the same instant, judged by the table.
    assert_eq!(ct.sweep(at(12), usize::MAX), 1);
    assert_eq!(
        ct.lookup_cached(&ack, at(12), &mut cache),
        Lookup::NewMidStream
    );
}

#[test]
fn a_line_is_not_trusted_after_its_entry_is_evicted() {
    let ct = Conntrack::new(&config(2, 1)).unwrap();
    let (mut cache, _) = two_caches();
    let out = udp(A, 5000, B, 53);
    assert_eq!(pass(&ct, &out, Tick(0)), Lookup::New);
    assert_eq!(
        ct.lookup_cached(&out, Tick(0), &mut cache),
        established(FlowState::Unreplied, Original)
    );
    // Two more never-replied flows a nanosecond later (well within the line's trust): the
    // table holds two, so the one nearest expiry goes.
    pass(&ct, &udp(A, 5001, B, 53), Tick(1));
    pass(&ct, &udp(A, 5002, B, 53), Tick(1));
    assert_eq!(ct.stats().evictions, 1);
    assert_eq!(ct.lookup_cached(&out, Tick(1), &mut cache), Lookup::New);
}

#[test]
fn a_reset_seen_by_one_worker_reaches_the_other_workers_next_packet() {
    let ct = table();
    let (mut first, mut second) = two_caches();
    let ack = cached_tcp(&ct, &mut first, 1003, at(0));
    let rst = tcp(B, 443, A, 1003, RST);
    assert_eq!(
        ct.lookup_cached(&rst, at(0), &mut second),
        established(Tcp(Close), Reply)
    );
    assert_eq!(
        ct.lookup_cached(&ack, at(0), &mut first),
        established(Tcp(Close), Original)
    );
    // And a FIN never comes from a line: it moves the state on in the table.
    let ack = cached_tcp(&ct, &mut first, 1004, at(0));
    let fin = tcp(A, 1004, B, 443, FIN | ACK);
    assert_eq!(
        ct.lookup_cached(&fin, at(0), &mut first),
        established(Tcp(FinWait), Original)
    );
    assert_eq!(
        ct.lookup_cached(&reversed(&ack), at(0), &mut first),
        established(Tcp(CloseWait), Reply)
    );
}

#[test]
fn a_first_reply_goes_to_the_table_and_marks_the_flow_replied() {
    let ct = table();
    let (mut cache, _) = two_caches();
    let out = udp(A, 5003, B, 53);
    pass(&ct, &out, at(0));
    ct.lookup_cached(&out, at(0), &mut cache);
    assert_eq!(
        ct.lookup_cached(&reversed(&out), at(0), &mut cache),
        established(FlowState::Replied, Reply)
    );
    assert_eq!(
        ct.peek(&out, at(0)).map(|e| e.state),
        Some(FlowState::Replied)
    );
}

#[test]
fn cached_hits_let_an_entry_expire_at_most_the_slack_early() {
    let ct = table();
    let (mut cache, _) = two_caches();
    let slack = REFRESH_SLACK_NANOS;
    let ack = cached_tcp(&ct, &mut cache, 1005, at(0));
    // Within the slack: answered by the line, the timer stays where it was.
    let soon = Tick(slack / 2);
    assert!(matches!(
        ct.lookup_cached(&ack, soon, &mut cache),
        Lookup::Established { .. }
    ));
    assert_eq!(ct.peek(&ack, soon).map(|e| e.expires), Some(at(12)));
    // At the slack: the table's path, which restarts the timer.
    let later = Tick(slack);
    ct.lookup_cached(&ack, later, &mut cache);
    assert_eq!(
        ct.peek(&ack, later).map(|e| e.expires),
        Some(later.after(12 * SECOND))
    );
}

/// What one step of the differential test below does.
#[derive(Debug, Clone)]
enum Action {
    /// A packet through worker 0 or 1, inserted when new (policy allows all).
    Packet(ConnPacket, bool),
    Sweep,
    /// Revalidation that refuses flows from odd source ports.
    Revalidate,
}

/// Packets of few flows with the flags real stacks send, so that connections open, run
/// steady, close, and come back within one case.
fn few_flows_packet() -> impl Strategy<Value = ConnPacket> {
    let flags = prop_oneof![
        1 => Just(SYN),
        1 => Just(SYN | ACK),
        4 => Just(ACK),
        1 => Just(ACK | PSH),
        1 => Just(FIN | ACK),
        1 => Just(RST),
    ];
    let echo = prop_oneof![Just(8u8), Just(0)];
    (
        any::<bool>(),
        0u16..3,
        prop_oneof![Just(6u8), Just(17), Just(1)],
        flags,
        echo,
    )
        .prop_map(|(outbound, port, protocol, flags, echo)| {
            let (src, dst, sport, dport) = match outbound {
                true => (A, B, 40000 + port, 443),
                false => (B, A, 443, 40000 + port),
            };
            match protocol {
                6 => tcp(src, sport, dst, dport, flags),
                17 => udp(src, sport, dst, dport),
                _ => icmp(1, src, dst, echo, port),
            }
        })
}

fn arbitrary_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (few_flows_packet(), any::<bool>()).prop_map(|(p, w)| Action::Packet(p, w)),
        1 => (arbitrary_packet(), any::<bool>()).prop_map(|(p, w)| Action::Packet(p, w)),
        1 => Just(Action::Sweep),
        1 => Just(Action::Revalidate),
    ]
}

proptest! {
    /// Two workers with caches give exactly the answers of the table alone, and leave the
    /// table in the same state, when the clock moves by nothing or by at least the slack:
    /// a line that outlived an expiry, eviction, sweep, revalidation or state change would
    /// answer differently.
    #[test]
    fn caches_answer_as_the_table_does(
        actions in proptest::collection::vec(
            (arbitrary_action(), prop_oneof![3 => Just(0u64), 1 => 1u64..20]),
            1..300,
        ),
        max in 0u32..24,
        shards in 1usize..4,
    ) {
        let words = FlowHashBuilder::with_words(11, 13, 17);
        let cfg = config(max, shards);
        let plain = Conntrack::with_hasher(&cfg, words.clone()).unwrap();
        let cached = Conntrack::with_hasher(&cfg, words).unwrap();
        let mut caches = [FlowCache::new(8), FlowCache::new(8)];
        let mut now = Tick(0);
        let mut generation = 1;
        for (action, seconds) in &actions {
            now = now.after(seconds * REFRESH_SLACK_NANOS);
            match action {
                Action::Packet(pkt, worker) => {
                    let expected = plain.lookup(pkt, now);
                    let got = cached.lookup_cached(pkt, now, &mut caches[usize::from(*worker)]);
                    prop_assert_eq!(got, expected, "{:?} at {:?}", pkt, now);
                    if matches!(expected, Lookup::New | Lookup::NewMidStream) {
                        prop_assert_eq!(
                            plain.insert(pkt, now, generation),
                            cached.insert(pkt, now, generation)
                        );
                    }
                }
                Action::Sweep => {
                    prop_assert_eq!(plain.sweep(now, 16), cached.sweep(now, 16));
                }
                Action::Revalidate => {
                    generation += 1;
                    let keep = |flow: &ConnFlow| flow.src_port % 2 == 0;
                    prop_assert_eq!(
                        plain.revalidate(now, generation, keep),
                        cached.revalidate(now, generation, keep)
                    );
                }
            }
        }
        prop_assert_eq!(plain.stats(), cached.stats());
    }
}
