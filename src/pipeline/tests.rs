//! The packet path end to end: crafted frames through [`WorkerPath::judge`] against small
//! policy directories written as YAML, with a fake clock and a recording log sink.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use etherparse::{IpHeaders, PacketBuilder, PacketBuilderStep};
use parking_lot::Mutex;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use super::*;
use crate::compile::compile;
use crate::model::{Limits, Model, load_model_str};
use crate::policy::resolve;
use crate::snapshot::RuleAction;

// ---------------------------------------------------------------------------------------------
// Policy directories

/// Host endpoints behind `inside`: `web` serves TCP 80 and 8080 (with a Log rule on 8080),
/// UDP 53 and ping; `db` has no normal policy (host default deny) but a preDNAT allow on
/// TCP 5432; `cache` is left to the untracked policies added by some tests. Failsafe ports
/// are Calico's defaults (inbound TCP 22 among them).
const BASE: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: web, labels: { role: web } }
spec: { node: n1, expectedIPs: ["203.0.113.10", "2001:db8:2::10"] }
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: db, labels: { role: db } }
spec: { node: n2, expectedIPs: ["203.0.113.20"] }
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: cache, labels: { role: cache } }
spec: { node: n3, expectedIPs: ["203.0.113.30"] }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: allow-web }
spec:
  selector: role == 'web'
  types: [Ingress]
  ingress:
    - action: Log
      protocol: TCP
      destination: { ports: [8080] }
    - action: Allow
      protocol: TCP
      destination: { ports: [80, 8080] }
    - action: Allow
      protocol: UDP
      destination: { ports: [53] }
    - action: Allow
      protocol: ICMP
      icmp: { type: 8 }
    - action: Allow
      protocol: ICMPv6
      icmp: { type: 128 }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: db-prednat }
spec:
  selector: role == 'db'
  preDNAT: true
  applyOnForward: true
  ingress:
    - action: Allow
      protocol: TCP
      destination: { ports: [5432] }
"#;

/// doNotTrack: TCP 6379 into `cache`, with no rule for the replies.
const UNTRACKED_IN: &str = r#"
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: cache-in }
spec:
  selector: role == 'cache'
  doNotTrack: true
  applyOnForward: true
  ingress:
    - action: Allow
      protocol: TCP
      destination: { ports: [6379] }
    - action: Deny
      protocol: UDP
"#;

/// doNotTrack: the replies of `cache`'s TCP 6379.
const UNTRACKED_RETURN: &str = r#"
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: cache-out }
spec:
  selector: role == 'cache'
  doNotTrack: true
  applyOnForward: true
  egress:
    - action: Allow
      protocol: TCP
      source: { ports: [6379] }
"#;

/// `web` allows nothing new: what a stricter reload looks like.
const WEB_CLOSED: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: web, labels: { role: web } }
spec: { node: n1, expectedIPs: ["203.0.113.10", "2001:db8:2::10"] }
"#;

/// The base directory with gateway settings (YAML lines under `spec:`; a small table by
/// default) and extra resources.
fn world(settings: &str, extra: &str) -> String {
    let settings = if settings.is_empty() {
        "  conntrackMaxEntries: 1024"
    } else {
        settings
    };
    format!(
        "apiVersion: portcullis/v1\nkind: GatewayConfiguration\nmetadata: {{ name: default }}\n\
         spec:\n{settings}\n---\n{BASE}{extra}"
    )
}

fn model(yaml: &str) -> Model {
    load_model_str("test.yaml", yaml, &Limits::default())
        .unwrap_or_else(|problems| panic!("invalid test YAML: {problems:#?}"))
}

fn snapshot_of(model: &Model, generation: u64) -> Snapshot {
    compile(&resolve(model).unwrap(), generation)
}

// ---------------------------------------------------------------------------------------------
// The rig: one worker, a fake clock, a recording log sink

#[derive(Debug, Default)]
struct RecordingSink(Mutex<Vec<String>>);

impl LogSink for RecordingSink {
    fn write_line(&self, line: &str) {
        self.0.lock().push(line.to_owned());
    }
}

impl RecordingSink {
    fn lines(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

struct Rig {
    shared: Arc<PathShared>,
    worker: WorkerPath,
    snapshot: Snapshot,
    sink: Arc<RecordingSink>,
    now: Tick,
}

const SECOND: u64 = 1_000_000_000;

impl Rig {
    fn new(yaml: &str) -> Rig {
        let model = model(yaml);
        let sink = Arc::new(RecordingSink::default());
        let shared = Arc::new(
            PathShared::with_log_sink(&model.settings, Arc::clone(&sink) as Arc<dyn LogSink>)
                .unwrap(),
        );
        Rig {
            worker: WorkerPath::new(Arc::clone(&shared)),
            snapshot: snapshot_of(&model, 1),
            shared,
            sink,
            now: Tick::from_nanos(10 * SECOND),
        }
    }

    fn reload(&mut self, yaml: &str) {
        let generation = self.snapshot.generation() + 1;
        self.snapshot = snapshot_of(&model(yaml), generation);
    }

    fn send(&mut self, port: PortSide, frame: &[u8]) -> Disposition {
        self.worker.judge(&self.snapshot, self.now, port, frame)
    }

    fn totals(&self) -> CounterTotals {
        self.worker.counters().read()
    }

    /// A TCP handshake from `CLIENT:client_port` (outside) to `server:port` (inside), each
    /// of its three frames expected forwarded.
    #[track_caller]
    fn handshake(&mut self, client_port: u16, server: &str, port: u16) {
        let (c, p) = (client_port, port);
        self.expect("syn", Outside, &tcp(CLIENT, c, server, p, "S"), None);
        self.expect("syn-ack", Inside, &tcp(server, p, CLIENT, c, "SA"), None);
        self.expect("ack", Outside, &tcp(CLIENT, c, server, p, "A"), None);
    }

    /// Sends a frame and checks its fate: forwarded, or dropped and counted under exactly
    /// `reason`.
    #[track_caller]
    fn expect(&mut self, name: &str, port: PortSide, frame: &[u8], expected: Option<DropReason>) {
        let before = self.totals();
        let got = self.send(port, frame);
        let after = self.totals();
        let changed: Vec<DropReason> = DropReason::ALL
            .iter()
            .copied()
            .filter(|&r| after.drops_of(r) != before.drops_of(r))
            .collect();
        match expected {
            None => {
                assert_eq!(got, Disposition::Forward, "{name}: dropped as {changed:?}");
                assert!(changed.is_empty(), "{name}");
            }
            Some(reason) => {
                assert_eq!(got, Disposition::Drop, "{name}: forwarded");
                assert_eq!(changed, vec![reason], "{name}");
                assert_eq!(
                    after.drops_of(reason),
                    before.drops_of(reason) + 1,
                    "{name}"
                );
            }
        }
    }
}

use PortSide::{Inside, Outside};

// ---------------------------------------------------------------------------------------------
// Frames

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn ip_step(src: &str, dst: &str, hops: u8) -> PacketBuilderStep<IpHeaders> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    match (addr(src), addr(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), hops),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), hops),
        _ => panic!("mixed families"),
    }
}

/// A TCP segment; `flags` spells them: S(YN) A(CK) F(IN) R(ST) P(SH).
fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: &str) -> Vec<u8> {
    let mut step = ip_step(src, dst, 64).tcp(sport, dport, 1000, 64240);
    for flag in flags.chars() {
        step = match flag {
            'S' => step.syn(),
            'A' => step.ack(1),
            'F' => step.fin(),
            'R' => step.rst(),
            'P' => step.psh(),
            other => panic!("flag {other}"),
        };
    }
    let mut frame = Vec::new();
    step.write(&mut frame, &[]).unwrap();
    frame
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    ip_step(src, dst, 64)
        .udp(sport, dport)
        .write(&mut frame, b"query")
        .unwrap();
    frame
}

fn ping(src: &str, dst: &str, id: u16, request: bool) -> Vec<u8> {
    let mut frame = Vec::new();
    let step = ip_step(src, dst, 64);
    match (addr(src).is_ipv4(), request) {
        (true, true) => step.icmpv4_echo_request(id, 1).write(&mut frame, b"ping"),
        (true, false) => step.icmpv4_echo_reply(id, 1).write(&mut frame, b"ping"),
        (false, true) => step.icmpv6_echo_request(id, 1).write(&mut frame, b"ping"),
        (false, false) => step.icmpv6_echo_reply(id, 1).write(&mut frame, b"ping"),
    }
    .unwrap();
    frame
}

/// An IPv4 fragment laid by hand: 20-byte header, `payload` at byte `offset` of the
/// datagram.
fn fragment4(
    src: &str,
    dst: &str,
    protocol: u8,
    id: u16,
    offset: u16,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (addr(src), addr(dst)) else {
        panic!("IPv4 only");
    };
    let total = (20 + payload.len()) as u16;
    let flags_offset = (u16::from(more) << 13) | (offset / 8);
    let mut frame = [&MAC_B[..], &MAC_A, &[0x08, 0x00]].concat();
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&total.to_be_bytes());
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&flags_offset.to_be_bytes());
    frame.extend_from_slice(&[64, protocol, 0, 0]);
    frame.extend_from_slice(&s.octets());
    frame.extend_from_slice(&d.octets());
    frame.extend_from_slice(payload);
    frame
}

/// The first 24 bytes of a UDP datagram of 48: its header, then data.
fn udp_head(sport: u16, dport: u16) -> Vec<u8> {
    let mut head = Vec::new();
    head.extend_from_slice(&sport.to_be_bytes());
    head.extend_from_slice(&dport.to_be_bytes());
    head.extend_from_slice(&48u16.to_be_bytes());
    head.extend_from_slice(&[0, 0]);
    head.extend_from_slice(&[0xab; 16]);
    head
}

fn ethernet(ether_type: u16, payload: &[u8]) -> Vec<u8> {
    [&MAC_B[..], &MAC_A, &ether_type.to_be_bytes(), payload].concat()
}

fn arp() -> Vec<u8> {
    let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
    body.extend_from_slice(&MAC_A);
    body.extend_from_slice(&[198, 51, 100, 7]);
    body.extend_from_slice(&[0; 6]);
    body.extend_from_slice(&[203, 0, 113, 10]);
    ethernet(0x0806, &body)
}

fn neighbour_solicitation(src: &str, dst: &str) -> Vec<u8> {
    let mut frame = Vec::new();
    ip_step(src, dst, 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(
            &mut frame,
            &[
                0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ],
        )
        .unwrap();
    frame
}

const CLIENT: &str = "198.51.100.7";
const CLIENT6: &str = "2001:db8:1::7";
const WEB: &str = "203.0.113.10";
const WEB6: &str = "2001:db8:2::10";
const DB: &str = "203.0.113.20";
const CACHE: &str = "203.0.113.30";
const STRANGER: &str = "198.51.100.99";

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn truth_table_with_and_without_untracked_policy() {
    use DropReason::{EtherTypeNotAllowed, Policy, Spoofed};
    let rows: &[(&str, PortSide, Vec<u8>, Option<DropReason>)] = &[
        (
            "tcp to web:80",
            Outside,
            tcp(CLIENT, 40001, WEB, 80, "S"),
            None,
        ),
        (
            "tcp6 to web:80",
            Outside,
            tcp(CLIENT6, 40001, WEB6, 80, "S"),
            None,
        ),
        (
            "tcp to web:81",
            Outside,
            tcp(CLIENT, 40002, WEB, 81, "S"),
            Some(Policy),
        ),
        ("udp to web:53", Outside, udp(CLIENT, 5353, WEB, 53), None),
        (
            "udp to web:54",
            Outside,
            udp(CLIENT, 5353, WEB, 54),
            Some(Policy),
        ),
        ("ping web", Outside, ping(CLIENT, WEB, 7, true), None),
        ("ping6 web", Outside, ping(CLIENT6, WEB6, 7, true), None),
        (
            "tcp to db:80 (host default deny)",
            Outside,
            tcp(CLIENT, 40003, DB, 80, "S"),
            Some(Policy),
        ),
        (
            "web initiates (no egress allow)",
            Inside,
            tcp(WEB, 40004, CLIENT, 443, "S"),
            Some(Policy),
        ),
        (
            "neither address an endpoint",
            Outside,
            tcp(CLIENT, 40005, STRANGER, 80, "S"),
            Some(Policy),
        ),
        (
            "web's address from outside",
            Outside,
            tcp(WEB, 40006, DB, 5432, "S"),
            Some(Spoofed),
        ),
        ("arp", Outside, arp(), None),
        (
            "neighbour solicitation",
            Inside,
            neighbour_solicitation("fe80::1", "ff02::1:ff00:10"),
            None,
        ),
        (
            "lldp",
            Inside,
            ethernet(0x88cc, &[0; 46]),
            Some(EtherTypeNotAllowed),
        ),
    ];
    for extra in ["", UNTRACKED_IN] {
        let mut rig = Rig::new(&world("", extra));
        assert_eq!(rig.snapshot.has_untracked_policy(), !extra.is_empty());
        for (name, port, frame, expected) in rows {
            rig.expect(name, *port, frame, *expected);
        }
    }
}

#[test]
fn tcp_replies_pass_only_for_allowed_connections() {
    for extra in ["", UNTRACKED_IN] {
        let mut rig = Rig::new(&world("", extra));
        rig.handshake(40000, WEB, 80);
        rig.expect(
            "data back",
            Inside,
            &tcp(WEB, 80, CLIENT, 40000, "PA"),
            None,
        );
        rig.expect("fin", Outside, &tcp(CLIENT, 40000, WEB, 80, "FA"), None);
        rig.expect("fin back", Inside, &tcp(WEB, 80, CLIENT, 40000, "FA"), None);

        let denied = "denied syn";
        rig.expect(
            denied,
            Outside,
            &tcp(CLIENT, 40001, DB, 80, "S"),
            Some(DropReason::Policy),
        );
        rig.expect(
            "syn-ack of a denied connection",
            Inside,
            &tcp(DB, 80, CLIENT, 40001, "SA"),
            Some(DropReason::ConntrackInvalid),
        );
        rig.expect(
            "ack of a denied connection is judged (and denied) by policy",
            Inside,
            &tcp(DB, 80, CLIENT, 40001, "A"),
            Some(DropReason::Policy),
        );
        rig.expect(
            "udp reply with no request",
            Inside,
            &udp(WEB, 53, CLIENT, 5353),
            Some(DropReason::Policy),
        );
        rig.expect("udp request", Outside, &udp(CLIENT, 5353, WEB, 53), None);
        rig.expect("udp reply", Inside, &udp(WEB, 53, CLIENT, 5353), None);
        rig.expect(
            "echo reply before request",
            Inside,
            &ping(WEB, CLIENT, 9, false),
            Some(DropReason::Policy),
        );
        rig.expect("echo request", Outside, &ping(CLIENT, WEB, 9, true), None);
        rig.expect("echo reply", Inside, &ping(WEB, CLIENT, 9, false), None);
    }
}

#[test]
fn established_packets_evaluate_no_policy_without_untracked_policy() {
    let mut rig = Rig::new(&world("", ""));
    rig.send(Outside, &tcp(CLIENT, 40000, WEB, 80, "S"));
    assert_eq!(rig.totals().policy_evaluations, 1);
    for _ in 0..5 {
        rig.expect("reply", Inside, &tcp(WEB, 80, CLIENT, 40000, "SA"), None);
    }
    let totals = rig.totals();
    assert_eq!(
        totals.policy_evaluations, 1,
        "established packets skip policy"
    );
    assert_eq!(totals.established, 5);

    let mut rig = Rig::new(&world("", UNTRACKED_IN));
    rig.send(Outside, &tcp(CLIENT, 40000, WEB, 80, "S"));
    rig.send(Inside, &tcp(WEB, 80, CLIENT, 40000, "SA"));
    assert_eq!(
        rig.totals().policy_evaluations,
        2,
        "with untracked policy, every packet runs the untracked stage, once"
    );
}

#[test]
fn do_not_track_replies_need_their_own_rule() {
    let mut rig = Rig::new(&world("", UNTRACKED_IN));
    rig.expect("syn", Outside, &tcp(CLIENT, 40000, CACHE, 6379, "S"), None);
    assert_eq!(
        rig.shared.conntrack_stats().entries,
        0,
        "untracked: no entry"
    );
    assert_eq!(rig.totals().untracked, 1);
    rig.expect(
        "syn-ack without a return rule",
        Inside,
        &tcp(CACHE, 6379, CLIENT, 40000, "SA"),
        Some(DropReason::ConntrackInvalid),
    );
    rig.expect(
        "an untracked deny drops before conntrack",
        Outside,
        &udp(CLIENT, 5353, CACHE, 53),
        Some(DropReason::Policy),
    );

    let mut rig = Rig::new(&world("", &format!("{UNTRACKED_IN}{UNTRACKED_RETURN}")));
    rig.handshake(40000, CACHE, 6379);
    rig.expect("data", Inside, &tcp(CACHE, 6379, CLIENT, 40000, "PA"), None);
    assert_eq!(rig.shared.conntrack_stats().entries, 0);
    assert_eq!(rig.totals().untracked, 4);
}

#[test]
fn established_connection_survives_a_stricter_snapshot_until_revalidated() {
    let mut rig = Rig::new(&world("", ""));
    rig.expect("syn", Outside, &tcp(CLIENT, 40000, WEB, 80, "S"), None);
    rig.expect("syn-ack", Inside, &tcp(WEB, 80, CLIENT, 40000, "SA"), None);
    rig.reload(WEB_CLOSED);
    rig.expect(
        "ack after reload",
        Outside,
        &tcp(CLIENT, 40000, WEB, 80, "A"),
        None,
    );
    rig.expect(
        "data back",
        Inside,
        &tcp(WEB, 80, CLIENT, 40000, "PA"),
        None,
    );
    rig.expect(
        "new connection after reload",
        Outside,
        &tcp(CLIENT, 40001, WEB, 80, "S"),
        Some(DropReason::Policy),
    );

    let removed = rig.shared.revalidate(&rig.snapshot, rig.now);
    assert_eq!(removed, 1);
    assert_eq!(rig.shared.conntrack_stats().entries, 0);
    rig.expect(
        "data after revalidation is a new, denied connection",
        Outside,
        &tcp(CLIENT, 40000, WEB, 80, "PA"),
        Some(DropReason::Policy),
    );
}

#[test]
fn a_connection_answered_by_the_worker_cache_still_times_out() {
    let mut rig = Rig::new(&world("", ""));
    rig.handshake(40002, WEB, 80);
    // Steady packets in the same instant: answered by the worker's cache.
    for _ in 0..3 {
        rig.expect("data", Outside, &tcp(CLIENT, 40002, WEB, 80, "PA"), None);
        rig.expect(
            "data back",
            Inside,
            &tcp(WEB, 80, CLIENT, 40002, "PA"),
            None,
        );
    }
    assert_eq!(rig.totals().established, 8);
    assert_eq!(rig.totals().policy_evaluations, 1);
    // No new connections to web, and five days of silence (the established timeout) with
    // no sweeper: the next segment finds no connection, whatever the cache held.
    rig.reload(WEB_CLOSED);
    rig.now = rig.now.after(432_000 * SECOND);
    rig.expect(
        "data after the timeout is a new, denied connection",
        Outside,
        &tcp(CLIENT, 40002, WEB, 80, "PA"),
        Some(DropReason::Policy),
    );
    assert_eq!(rig.shared.conntrack_stats().expirations, 1);
}

#[test]
fn revalidate_keeps_connections_still_allowed() {
    let mut rig = Rig::new(&world("", ""));
    rig.send(Outside, &tcp(CLIENT, 40000, WEB, 80, "S"));
    rig.send(Outside, &udp(CLIENT, 5353, WEB, 53));
    rig.send(Outside, &ping(CLIENT, WEB, 3, true));
    assert_eq!(rig.shared.conntrack_stats().entries, 3);
    rig.reload(&world("", ""));
    assert_eq!(rig.shared.revalidate(&rig.snapshot, rig.now), 0);
    assert_eq!(rig.shared.conntrack_stats().entries, 3);
}

#[test]
fn failsafe_ssh_to_a_deny_all_host_is_tracked() {
    let mut rig = Rig::new(&world("", ""));
    rig.expect(
        "ssh syn to db",
        Outside,
        &tcp(CLIENT, 40000, DB, 22, "S"),
        None,
    );
    rig.expect("syn-ack", Inside, &tcp(DB, 22, CLIENT, 40000, "SA"), None);
    rig.expect("ack", Outside, &tcp(CLIENT, 40000, DB, 22, "A"), None);
    rig.expect("data back", Inside, &tcp(DB, 22, CLIENT, 40000, "PA"), None);
    assert_eq!(rig.shared.conntrack_stats().entries, 1);
    rig.expect(
        "a failsafe source port opens nothing",
        Outside,
        &tcp(CLIENT, 22, DB, 80, "S"),
        Some(DropReason::Policy),
    );
}

#[test]
fn prednat_allow_admits_a_tracked_connection() {
    for extra in ["", UNTRACKED_IN] {
        let mut rig = Rig::new(&world("", extra));
        rig.expect(
            "syn to db:5432",
            Outside,
            &tcp(CLIENT, 40000, DB, 5432, "S"),
            None,
        );
        assert_eq!(rig.shared.conntrack_stats().entries, 1);
        rig.expect("syn-ack", Inside, &tcp(DB, 5432, CLIENT, 40000, "SA"), None);
        rig.expect("ack", Outside, &tcp(CLIENT, 40000, DB, 5432, "A"), None);
    }
}

#[test]
fn anti_spoofing_table() {
    let nets = "  insideNets: [203.0.113.0/24, 2001:db8:2::/64]";
    let strict = world(nets, "");
    let off = world(&format!("{nets}\n  antiSpoof: false"), "");
    let basic = world("", "");
    // (config, name, port, frame, spoofed)
    let rows: &[(&str, &str, PortSide, Vec<u8>, bool)] = &[
        (
            &basic,
            "host endpoint source from outside",
            Outside,
            udp(WEB, 53, CLIENT, 9),
            true,
        ),
        (
            &basic,
            "other inside source from outside: basic form lets it be",
            Outside,
            udp("203.0.113.99", 1, WEB, 53),
            false,
        ),
        (
            &basic,
            "outside source from inside: basic form lets it be",
            Inside,
            udp(CLIENT, 1, WEB, 53),
            false,
        ),
        (
            &strict,
            "host endpoint source from outside",
            Outside,
            udp(WEB, 53, CLIENT, 9),
            true,
        ),
        (
            &strict,
            "inside-net source from outside",
            Outside,
            udp("203.0.113.99", 1, WEB, 53),
            true,
        ),
        (
            &strict,
            "inside-net v6 source from outside",
            Outside,
            udp("2001:db8:2::99", 1, WEB6, 53),
            true,
        ),
        (
            &strict,
            "outside source from inside",
            Inside,
            udp(CLIENT, 1, WEB, 53),
            true,
        ),
        (
            &strict,
            "link-local v6 source from inside",
            Inside,
            udp("fe80::1", 546, "fe80::2", 547),
            false,
        ),
        (
            &strict,
            "unspecified v4 source from inside",
            Inside,
            udp("0.0.0.0", 68, "255.255.255.255", 67),
            false,
        ),
        (
            &strict,
            "link-local v4 source from inside",
            Inside,
            udp("169.254.7.7", 5353, WEB, 53),
            false,
        ),
        (
            &strict,
            "link-local v6 source from outside: no exemption needed, not inside",
            Outside,
            udp("fe80::1", 546, "fe80::2", 547),
            false,
        ),
        (
            &strict,
            "outside source from outside",
            Outside,
            udp(CLIENT, 1, WEB, 53),
            false,
        ),
        (
            &strict,
            "inside source from inside",
            Inside,
            udp(WEB, 53, CLIENT, 9),
            false,
        ),
        (
            &off,
            "host endpoint source from outside, check off",
            Outside,
            udp(WEB, 53, CLIENT, 9),
            false,
        ),
        (
            &off,
            "outside source from inside, check off",
            Inside,
            udp(CLIENT, 1, WEB, 53),
            false,
        ),
    ];
    for (config, name, port, frame, spoofed) in rows {
        let mut rig = Rig::new(config);
        let before = rig.totals().drops_of(DropReason::Spoofed);
        rig.send(*port, frame);
        let counted = rig.totals().drops_of(DropReason::Spoofed) - before;
        assert_eq!(counted, u64::from(*spoofed), "{name}");
    }
}

#[test]
fn spoofing_settings_follow_a_reload() {
    let mut rig = Rig::new(&world("", ""));
    rig.expect(
        "spoofed",
        Outside,
        &udp(WEB, 53, CLIENT, 9),
        Some(DropReason::Spoofed),
    );
    rig.reload(&world("  antiSpoof: false", ""));
    rig.expect(
        "check off: policy decides",
        Outside,
        &udp(WEB, 53, CLIENT, 9),
        Some(DropReason::Policy),
    );
}

#[test]
fn non_ip_frames_and_the_ether_type_allow_list() {
    let mut rig = Rig::new(&world("  allowedEtherTypes: [0x88cc]", ""));
    rig.expect("arp", Inside, &arp(), None);
    rig.expect(
        "nd",
        Outside,
        &neighbour_solicitation("fe80::1", "ff02::1:ff00:10"),
        None,
    );
    rig.expect("allowed lldp", Inside, &ethernet(0x88cc, &[0; 46]), None);
    rig.expect(
        "other",
        Inside,
        &ethernet(0x88b5, &[0; 46]),
        Some(DropReason::EtherTypeNotAllowed),
    );
    rig.expect(
        "802.3 length",
        Inside,
        &ethernet(0x0040, &[0; 46]),
        Some(DropReason::EtherTypeNotAllowed),
    );
    assert_eq!(rig.totals().policy_evaluations, 0);
}

#[test]
fn fragments_follow_their_first_fragment() {
    let mut rig = Rig::new(&world("", ""));
    let udp_proto = 17;
    rig.expect(
        "allowed first",
        Outside,
        &fragment4(CLIENT, WEB, udp_proto, 1, 0, true, &udp_head(5000, 53)),
        None,
    );
    rig.expect(
        "allowed middle",
        Outside,
        &fragment4(CLIENT, WEB, udp_proto, 1, 24, true, &[0; 8]),
        None,
    );
    rig.expect(
        "allowed last",
        Outside,
        &fragment4(CLIENT, WEB, udp_proto, 1, 32, false, &[0; 16]),
        None,
    );
    assert_eq!(rig.shared.fragment_stats().completed, 1);

    rig.expect(
        "denied first",
        Outside,
        &fragment4(CLIENT, DB, udp_proto, 2, 0, true, &udp_head(5000, 53)),
        Some(DropReason::Policy),
    );
    rig.expect(
        "denied later",
        Outside,
        &fragment4(CLIENT, DB, udp_proto, 2, 24, false, &[0; 24]),
        Some(DropReason::Policy),
    );

    rig.expect(
        "later without first",
        Outside,
        &fragment4(CLIENT, WEB, udp_proto, 3, 24, false, &[0; 24]),
        Some(DropReason::FragmentWithoutFirst),
    );

    rig.expect(
        "first",
        Outside,
        &fragment4(CLIENT, WEB, udp_proto, 4, 0, true, &udp_head(5001, 53)),
        None,
    );
    rig.expect(
        "overlapping",
        Outside,
        &fragment4(CLIENT, WEB, udp_proto, 4, 16, true, &[0; 16]),
        Some(DropReason::FragmentOverlap),
    );
    rig.expect(
        "after the overlap, the datagram is poisoned",
        Outside,
        &fragment4(CLIENT, WEB, udp_proto, 4, 40, false, &[0; 8]),
        Some(DropReason::FragmentPoisoned),
    );
}

#[test]
fn fragment_tracker_full_drops_first_fragments() {
    let mut rig = Rig::new(&world("  fragmentTrackerMaxEntries: 2", ""));
    for id in 1..=2 {
        rig.expect(
            "tracked",
            Outside,
            &fragment4(CLIENT, WEB, 17, id, 0, true, &udp_head(5000, 53)),
            None,
        );
    }
    rig.expect(
        "tracker full",
        Outside,
        &fragment4(CLIENT, WEB, 17, 3, 0, true, &udp_head(5000, 53)),
        Some(DropReason::FragmentTrackerFull),
    );
}

#[test]
fn conntrack_full_is_a_counted_drop() {
    let mut rig = Rig::new(&world("  conntrackMaxEntries: 4", ""));
    for port in 0..4 {
        rig.expect("request", Outside, &udp(CLIENT, 6000 + port, WEB, 53), None);
        rig.expect("reply", Inside, &udp(WEB, 53, CLIENT, 6000 + port), None);
    }
    rig.expect(
        "a fifth connection finds every entry replied",
        Outside,
        &udp(CLIENT, 7000, WEB, 53),
        Some(DropReason::ConntrackFull),
    );
    let totals = rig.totals();
    assert_eq!(totals.conntrack_insert_failures, 1);
    assert_eq!(totals.conntrack_inserts, 4);
    assert_eq!(rig.shared.conntrack_stats().insert_failures, 1);
}

#[test]
fn malformed_frames_are_dropped_under_their_reason() {
    use DropReason::*;
    let good = udp(CLIENT, 5353, WEB, 53);
    let patched = |at: usize, bytes: &[u8]| {
        let mut frame = good.clone();
        frame[at..at + bytes.len()].copy_from_slice(bytes);
        frame
    };
    let rows: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("empty", vec![], TruncatedEthernet),
        ("13 bytes", vec![0; 13], TruncatedEthernet),
        ("vlan tag cut", ethernet(0x8100, &[0, 1]), TruncatedVlan),
        (
            "ipv4 header cut",
            ethernet(0x0800, &[0x45, 0, 0]),
            TruncatedIpv4,
        ),
        (
            "ipv6 header cut",
            ethernet(0x86dd, &[0x60; 20]),
            TruncatedIpv6,
        ),
        (
            "version 6 in an ipv4 frame",
            patched(14, &[0x65]),
            IpVersionMismatch,
        ),
        ("ihl 4", patched(14, &[0x44]), Ipv4HeaderLengthTooSmall),
        (
            "total length past the frame",
            patched(16, &[0x05, 0xdc]),
            Ipv4TotalLengthBeyondFrame,
        ),
        (
            "total length below the header",
            patched(16, &[0, 10]),
            Ipv4TotalLengthBelowHeader,
        ),
        (
            "udp length too small",
            patched(38, &[0, 4]),
            UdpLengthMismatch,
        ),
        (
            "udp length past the payload",
            patched(38, &[0x05, 0]),
            UdpLengthMismatch,
        ),
        (
            "tcp data offset 4",
            {
                let mut f = tcp(CLIENT, 1, WEB, 80, "S");
                f[46] = 0x40;
                f
            },
            TcpDataOffsetTooSmall,
        ),
        (
            "tcp cut",
            {
                let f = tcp(CLIENT, 1, WEB, 80, "S");
                let mut f = f[..44].to_vec();
                f[16..18].copy_from_slice(&30u16.to_be_bytes());
                f
            },
            TruncatedTcp,
        ),
        ("syn+fin", tcp(CLIENT, 1, WEB, 80, "SF"), ConntrackInvalid),
    ];
    let mut rig = Rig::new(&world("", ""));
    for (name, frame, reason) in &rows {
        rig.expect(name, Outside, frame, Some(*reason));
    }
    let totals = rig.totals();
    assert_eq!(totals.packets[Outside.index()][DROPPED], rows.len() as u64);
    assert_eq!(totals.drops.iter().sum::<u64>(), rows.len() as u64);
}

/// (policy, rule index, action, packets, bytes).
type HitRow<'a> = (Option<&'a str>, Option<u32>, RuleAction, u64, u64);

#[test]
fn counters_are_exact_for_a_known_sequence() {
    let mut rig = Rig::new(&world("", ""));
    let syn = tcp(CLIENT, 40000, WEB, 8080, "S");
    let syn_ack = tcp(WEB, 8080, CLIENT, 40000, "SA");
    let ack = tcp(CLIENT, 40000, WEB, 8080, "A");
    let denied = tcp(CLIENT, 40001, WEB, 81, "S");
    let stranger = udp(CLIENT, 1, STRANGER, 2);
    let junk = vec![0u8; 10];
    let sequence: Vec<(PortSide, &Vec<u8>)> = vec![
        (Outside, &syn),
        (Inside, &syn_ack),
        (Outside, &ack),
        (Outside, &ack),
        (Outside, &denied),
        (Outside, &denied),
        (Outside, &stranger),
        (Inside, &junk),
    ];
    for (port, frame) in &sequence {
        rig.send(*port, frame);
    }
    let len = |f: &Vec<u8>| f.len() as u64;
    let t = rig.totals();
    let (out, ins) = (Outside.index(), Inside.index());
    assert_eq!(t.packets[out][FORWARDED], 3);
    assert_eq!(t.bytes[out][FORWARDED], len(&syn) + 2 * len(&ack));
    assert_eq!(t.packets[out][DROPPED], 3);
    assert_eq!(t.bytes[out][DROPPED], 2 * len(&denied) + len(&stranger));
    assert_eq!(t.packets[ins][FORWARDED], 1);
    assert_eq!(t.bytes[ins][FORWARDED], len(&syn_ack));
    assert_eq!(t.packets[ins][DROPPED], 1);
    assert_eq!(t.bytes[ins][DROPPED], len(&junk));
    assert_eq!(t.drops_of(DropReason::Policy), 3);
    assert_eq!(t.drops_of(DropReason::TruncatedEthernet), 1);
    assert_eq!(t.drops.iter().sum::<u64>(), 4);
    assert_eq!(
        (t.established, t.policy_evaluations, t.conntrack_inserts),
        (3, 4, 1)
    );

    let hits = rig.worker.counters().rule_hits();
    assert_eq!(hits.generation(), 1);
    let mut seen: Vec<HitRow<'_>> = hits
        .iter()
        .map(|(id, h)| {
            let info = hits.rule(id).unwrap();
            (info.policy, info.index, info.action, h.packets, h.bytes)
        })
        .collect();
    seen.sort_by_key(|s| (s.0, s.1, s.3));
    let mut expected = vec![
        // The Log rule and the Allow after it, for the SYN only.
        (
            Some("GlobalNetworkPolicy/allow-web"),
            Some(0),
            RuleAction::Log,
            1,
            len(&syn),
        ),
        (
            Some("GlobalNetworkPolicy/allow-web"),
            Some(1),
            RuleAction::Allow,
            1,
            len(&syn),
        ),
        // Port 81: the end of the default tier, twice.
        (None, None, RuleAction::Deny, 2, 2 * len(&denied)),
        // Neither address an endpoint: the unmatched-traffic default.
        (None, None, RuleAction::Deny, 1, len(&stranger)),
    ];
    expected.sort_by_key(|s| (s.0, s.1, s.3));
    assert_eq!(seen, expected);
}

#[test]
fn rule_hits_stay_exact_across_snapshot_changes() {
    let mut rig = Rig::new(&world("", ""));
    let allow_80 = |totals: &[(RuleLabel, RuleHitTotal)]| {
        totals
            .iter()
            .find(|(l, _)| {
                l.policy.as_deref() == Some("GlobalNetworkPolicy/allow-web") && l.index == Some(1)
            })
            .map(|(_, h)| h.packets)
    };
    rig.send(Outside, &tcp(CLIENT, 40000, WEB, 80, "S"));
    assert_eq!(allow_80(&rig.shared.rule_hit_totals()), Some(1));
    rig.reload(&world("", ""));
    rig.send(Outside, &tcp(CLIENT, 40001, WEB, 80, "S"));
    assert_eq!(rig.worker.counters().rule_hits().generation(), 2);
    assert_eq!(
        allow_80(&rig.shared.rule_hit_totals()),
        Some(2),
        "live + retired"
    );
    rig.shared.housekeeping(rig.now);
    assert_eq!(
        allow_80(&rig.shared.rule_hit_totals()),
        Some(2),
        "folded + live"
    );
    rig.reload(WEB_CLOSED);
    rig.send(Outside, &tcp(CLIENT, 40002, WEB, 80, "S"));
    rig.shared.housekeeping(rig.now);
    assert_eq!(
        allow_80(&rig.shared.rule_hit_totals()),
        Some(2),
        "the rule is gone"
    );
}

#[test]
fn log_lines_are_rate_limited_and_summarised() {
    let mut rig = Rig::new(&world("  logRateLimitPerSecond: 2", ""));
    for port in 0..5 {
        rig.expect(
            "logged syn",
            Outside,
            &tcp(CLIENT, 41000 + port, WEB, 8080, "S"),
            None,
        );
    }
    rig.expect(
        "established: no log",
        Inside,
        &tcp(WEB, 8080, CLIENT, 41000, "SA"),
        None,
    );
    rig.expect(
        "port 80: no log rule",
        Outside,
        &tcp(CLIENT, 42000, WEB, 80, "S"),
        None,
    );
    let lines = rig.sink.lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(
        lines[0],
        "policy-log generation=1 tier=default policy=GlobalNetworkPolicy/allow-web rule=0 \
         direction=ingress endpoint=HostEndpoint/web port=outside protocol=6 \
         src=198.51.100.7 src_port=41000 dst=203.0.113.10 dst_port=8080"
    );
    let totals = rig.totals();
    assert_eq!((totals.log_lines, totals.log_suppressed), (2, 3));

    rig.shared.housekeeping(rig.now);
    rig.shared.housekeeping(rig.now);
    let lines = rig.sink.lines();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2], "policy-log suppressed=3 reason=rate_limit");
    assert_eq!(rig.shared.log_lines_suppressed(), 3);

    rig.now = rig.now.after(SECOND);
    rig.send(Outside, &tcp(CLIENT, 43000, WEB, 8080, "S"));
    assert_eq!(rig.sink.lines().len(), 4, "a new second, a new budget");
    rig.shared.housekeeping(rig.now);
    assert_eq!(
        rig.sink.lines().len(),
        4,
        "nothing suppressed, nothing summarised"
    );
}

#[test]
fn clock_is_monotonic() {
    let a = clock_now();
    let b = clock_now();
    assert!(b >= a);
}

/// Exactly one outcome per frame: one packet counted, and a drop reason exactly when
/// dropped.
fn check_one_outcome(rig: &mut Rig, port: PortSide, frame: &[u8]) -> Result<(), TestCaseError> {
    let before = rig.totals();
    let got = rig.send(port, frame);
    let after = rig.totals();
    let sum = |t: &CounterTotals| t.packets.iter().flatten().sum::<u64>();
    let drops = |t: &CounterTotals| t.drops.iter().sum::<u64>();
    let p = port.index();
    prop_assert_eq!(sum(&after), sum(&before) + 1);
    let dropped = after.packets[p][DROPPED] - before.packets[p][DROPPED];
    prop_assert_eq!(dropped, u64::from(got == Disposition::Drop));
    prop_assert_eq!(drops(&after) - drops(&before), dropped);
    Ok(())
}

#[test]
fn random_frames_never_panic_and_count_one_outcome() {
    let rig = RefCell::new(Rig::new(&world("", UNTRACKED_IN)));
    let valid = [
        tcp(CLIENT, 40000, WEB, 80, "S"),
        tcp(WEB, 80, CLIENT, 40000, "SA"),
        tcp(CLIENT6, 40000, WEB6, 80, "PA"),
        udp(CLIENT, 5353, WEB, 53),
        ping(CLIENT6, WEB6, 1, true),
        fragment4(CLIENT, WEB, 17, 9, 0, true, &udp_head(1, 53)),
        fragment4(CLIENT, WEB, 17, 9, 24, false, &[0; 8]),
        tcp(CLIENT, 1, CACHE, 6379, "S"),
        neighbour_solicitation("fe80::1", "ff02::1"),
        arp(),
    ];
    let mut runner = TestRunner::new(ProptestConfig::with_cases(512));
    let random = (
        proptest::collection::vec(any::<u8>(), 0..160),
        any::<bool>(),
    );
    runner
        .run(&random, |(bytes, inside)| {
            let port = if inside { Inside } else { Outside };
            check_one_outcome(&mut rig.borrow_mut(), port, &bytes)
        })
        .unwrap();
    let mutated = (
        0..valid.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        any::<prop::sample::Index>(),
        any::<bool>(),
    );
    runner
        .run(&mutated, |(which, edits, cut, inside)| {
            let mut frame = valid[which].clone();
            for (at, byte) in edits {
                let i = at.index(frame.len());
                frame[i] = byte;
            }
            let keep = frame.len() - cut.index(frame.len() / 4 + 1);
            frame.truncate(keep);
            let port = if inside { Inside } else { Outside };
            check_one_outcome(&mut rig.borrow_mut(), port, &frame)
        })
        .unwrap();
}

/// An ICMP error from `from` to the sender of `quoted` (an IPv4 frame), quoting its IP
/// header and first 8 bytes.
fn icmp_error(from: &str, quoted: &[u8]) -> Vec<u8> {
    let inner = &quoted[14..14 + 28];
    let IpAddr::V4(to) = IpAddr::from(<[u8; 4]>::try_from(&quoted[26..30]).unwrap()) else {
        unreachable!()
    };
    let mut frame = Vec::new();
    ip_step(from, &to.to_string(), 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut frame, inner)
        .unwrap();
    frame
}

#[test]
fn icmp_errors_about_tracked_connections_are_related() {
    let mut rig = Rig::new(&world("", ""));
    let request = udp(CLIENT, 5353, WEB, 53);
    rig.expect(
        "error about nothing tracked: judged by policy (web may not send it)",
        Inside,
        &icmp_error(WEB, &request),
        Some(DropReason::Policy),
    );
    rig.expect("request", Outside, &request, None);
    rig.expect(
        "port unreachable back",
        Inside,
        &icmp_error(WEB, &request),
        None,
    );
    assert_eq!(rig.totals().established, 1, "related, without policy");
    let other = udp(CLIENT, 5354, WEB, 53);
    rig.expect(
        "error about another flow",
        Inside,
        &icmp_error(WEB, &other),
        Some(DropReason::Policy),
    );
}

#[test]
fn vlan_tagged_frames_are_judged_like_untagged_ones() {
    let tagged = |src: &str, sport: u16, dst: &str, dport: u16, syn: bool| {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (addr(src), addr(dst)) else {
            unreachable!()
        };
        let mut step = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(etherparse::VlanId::try_new(42).unwrap())
            .ipv4(s.octets(), d.octets(), 64)
            .tcp(sport, dport, 1, 1000);
        step = if syn { step.syn() } else { step.ack(1) };
        let mut frame = Vec::new();
        step.write(&mut frame, &[]).unwrap();
        frame
    };
    let mut rig = Rig::new(&world("", ""));
    rig.expect(
        "allowed",
        Outside,
        &tagged(CLIENT, 40000, WEB, 80, true),
        None,
    );
    rig.expect(
        "reply",
        Inside,
        &tagged(WEB, 80, CLIENT, 40000, false),
        None,
    );
    rig.expect(
        "denied",
        Outside,
        &tagged(CLIENT, 40000, DB, 80, true),
        Some(DropReason::Policy),
    );
    rig.expect(
        "spoofed",
        Outside,
        &tagged(WEB, 80, DB, 80, true),
        Some(DropReason::Spoofed),
    );
}
