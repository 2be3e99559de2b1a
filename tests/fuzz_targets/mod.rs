//! The bodies of the fuzz targets, shared by path between the cargo-fuzz crate in
//! `tests/fuzz/` (nightly, libFuzzer) and `tests/fuzz_corpus.rs` (stable, replays every
//! input of `tests/fuzz/corpus/<target>/` as a plain test).
//!
//! ```text
//! tests/fuzz/fuzz_targets/<target>.rs ─┐
//!                                      ├─► fuzz_targets::<target>(&[u8]) ─► portcullis
//! tests/fuzz_corpus.rs (every input) ──┘
//! ```
//!
//! Each body takes arbitrary bytes and must not panic; beyond that it asserts the
//! invariants a caller relies on (one outcome counted per frame, a table never above its
//! capacity, a printed selector that parses back to the same selector). An assertion that
//! fails is a finding, as a panic would be.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod frames;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portcullis::compile::compile;
use portcullis::conntrack::{
    ConnPacket, Conntrack, ConntrackConfig, Fragment, FragmentTracker, IcmpInfo, InnerPacket,
    Lookup, Tick, Timeouts,
};
use portcullis::dataplane::{Disposition, PortSide};
use portcullis::model::{Limits, load_model};
use portcullis::packet::{DropReason, parse};
use portcullis::pipeline::{LogSink, PathShared, WorkerPath};
use portcullis::policy::resolve::resolve;
use portcullis::selector::Selector;
use portcullis::snapshot::Snapshot;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name: the names are the directories of `tests/fuzz/corpus/` and the
/// binaries of `tests/fuzz/fuzz_targets/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_parser", frame_parser),
    ("selector_parser", selector_parser),
    ("yaml_validate", yaml_validate),
    ("pipeline", pipeline),
    ("conntrack", conntrack),
];

// ---------------------------------------------------------------------------------------------
// frame_parser

/// `packet::parse` on any bytes: a `PacketMeta` or a drop reason of the parse stage.
pub fn frame_parser(data: &[u8]) {
    match parse(data) {
        Ok(meta) => {
            assert_eq!(meta.frame_len as usize, data.len(), "frame length");
            let _ = meta.flow_key();
        }
        Err(reason) => {
            assert_eq!(
                reason.stage(),
                portcullis::packet::DropStage::Parse,
                "{reason} raised by the parser"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// selector_parser

/// `Selector::parse` on any text; a selector that parses prints to text that parses back
/// to an equal selector, and evaluates without panicking.
pub fn selector_parser(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = Selector::parse(text) else {
        return;
    };
    let printed = selector.to_string();
    let again = Selector::parse(&printed)
        .unwrap_or_else(|e| panic!("printed form {printed:?} of {text:?} does not parse: {e}"));
    assert_eq!(
        again.to_string(),
        printed,
        "printing is not stable for {text:?}"
    );
    let labels: BTreeMap<String, String> = [("app", "web"), ("role", "db"), ("a", "")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(
        selector.matches(&labels),
        again.matches(&labels),
        "{text:?} and its printed form {printed:?} disagree"
    );
}

// ---------------------------------------------------------------------------------------------
// yaml_validate

/// A directory holding one file, `fuzz.yaml`, with the input: loaded and validated as
/// `portcullis validate` does; a directory that validates is resolved and compiled too.
pub fn yaml_validate(data: &[u8]) {
    let dir = scratch_dir();
    std::fs::write(dir.join("fuzz.yaml"), data).expect("write the scratch file");
    let Ok(model) = load_model(&dir, &Limits::default()) else {
        return;
    };
    if let Ok(resolved) = resolve(&model) {
        let _ = compile(&resolved, 1);
    }
}

/// One directory per process (and thread, for the parallel test runner).
fn scratch_dir() -> PathBuf {
    thread_local! {
        static DIR: PathBuf = {
            let dir = std::env::temp_dir().join(format!(
                "portcullis-fuzz-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&dir).expect("create the scratch directory");
            dir
        };
    }
    DIR.with(Clone::clone)
}

// ---------------------------------------------------------------------------------------------
// pipeline

/// The fixed policy of the pipeline target: two protected hosts (`web` serves TCP 80,
/// UDP 53, ping, with a Log rule; `db` only a preDNAT TCP 5432), an untracked allow to
/// `cache`, small tables so that capacity paths are reached.
pub const PIPELINE_POLICY: &str = r#"
apiVersion: portcullis/v1
kind: GatewayConfiguration
metadata: { name: default }
spec:
  conntrackMaxEntries: 16
  fragmentTrackerMaxEntries: 4
  insideNets: ["203.0.113.0/24", "2001:db8:2::/48"]
---
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
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: cache-untracked }
spec:
  selector: role == 'cache'
  doNotTrack: true
  applyOnForward: true
  ingress:
    - action: Allow
      protocol: TCP
      destination: { ports: [6379] }
"#;

struct Fixed {
    snapshot: Snapshot,
    settings: portcullis::model::Settings,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("portcullis-fuzz-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the policy directory");
        std::fs::write(dir.join("policy.yaml"), PIPELINE_POLICY).expect("write the policy");
        let model = load_model(&dir, &Limits::default()).expect("the fixed policy is valid");
        let _ = std::fs::remove_dir_all(&dir);
        let resolved = resolve(&model).expect("the fixed policy resolves");
        Fixed {
            snapshot: compile(&resolved, 1),
            settings: model.settings,
        }
    })
}

/// The fixed snapshot of the pipeline target, for tests that judge frames by hand.
pub fn fixed_snapshot() -> &'static Snapshot {
    &fixed().snapshot
}

/// A fresh shared half and one worker under the fixed policy's settings.
pub fn fresh_path() -> (Arc<PathShared>, WorkerPath) {
    let shared = Arc::new(
        PathShared::with_log_sink(&fixed().settings, Arc::new(NullSink)).expect("tables allocate"),
    );
    let worker = WorkerPath::new(Arc::clone(&shared));
    (shared, worker)
}

#[derive(Debug)]
struct NullSink;

impl LogSink for NullSink {
    fn write_line(&self, _line: &str) {}
}

/// Splits the input into frames: each is `[control][length: u16 LE][length bytes]`, the last
/// one shorter if the input ends. Control bit 0 is the port of arrival (1 = inside), bits
/// 1–5 advance the clock by that many seconds before the frame, bits 6–7 = 3 run
/// housekeeping first.
pub fn pipeline_frames(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&control, tail) = rest.split_first()?;
        let (len, tail) = match tail {
            [lo, hi, tail @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), tail),
            _ => (0, &[][..]),
        };
        let (frame, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        Some((control, frame))
    })
}

/// Encodes frames for [`pipeline`] (seeds and regression tests).
pub fn encode_pipeline_frames<'a>(frames: impl IntoIterator<Item = (u8, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (control, frame) in frames {
        out.push(control);
        out.extend_from_slice(&u16::try_from(frame.len()).unwrap().to_le_bytes());
        out.extend_from_slice(frame);
    }
    out
}

/// A sequence of frames through one `WorkerPath` on the fixed snapshot with a fake clock:
/// every frame is counted exactly once, a drop under exactly one reason.
pub fn pipeline(data: &[u8]) {
    let fixed = fixed();
    let (shared, mut worker) = fresh_path();
    let counters = worker.counters();
    let mut now = Tick::from_nanos(1_000_000_000);
    for (control, frame) in pipeline_frames(data).take(256) {
        now = Tick::from_nanos(now.0 + u64::from((control >> 1) & 0x1f) * 1_000_000_000);
        if control >> 6 == 3 {
            shared.housekeeping(now);
        }
        let port = if control & 1 == 0 {
            PortSide::Outside
        } else {
            PortSide::Inside
        };
        let before = counters.read();
        let disposition = worker.judge(&fixed.snapshot, now, port, frame);
        let after = counters.read();
        let packets =
            |t: &portcullis::pipeline::CounterTotals| -> u64 { t.packets.iter().flatten().sum() };
        assert_eq!(packets(&after), packets(&before) + 1, "one packet counted");
        let changed: Vec<DropReason> = DropReason::ALL
            .iter()
            .copied()
            .filter(|&r| after.drops_of(r) != before.drops_of(r))
            .collect();
        match disposition {
            Disposition::Forward => assert!(changed.is_empty(), "forwarded yet {changed:?}"),
            Disposition::Drop => {
                assert_eq!(changed.len(), 1, "dropped under {changed:?}");
                assert_eq!(after.drops_of(changed[0]), before.drops_of(changed[0]) + 1);
            }
        }
    }
    let stats = shared.conntrack_stats();
    assert!(stats.entries as usize <= shared.conntrack().capacity());
}

// ---------------------------------------------------------------------------------------------
// conntrack

/// Reads an input as a stream of small numbers; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A few addresses of each family, so that keys meet.
fn address(n: u8) -> IpAddr {
    match n % 6 {
        0 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        1 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
        2 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 3)),
        3 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        4 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2)),
        _ => IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)),
    }
}

fn protocol(n: u8) -> u8 {
    match n % 8 {
        0 | 1 => 6,
        2 => 17,
        3 => 1,
        4 => 58,
        5 => 132,
        6 => 136,
        _ => n,
    }
}

fn port(n: u8) -> u16 {
    match n % 4 {
        0 => 80,
        1 => 40_000,
        2 => 53,
        _ => u16::from(n) << 4,
    }
}

fn conn_packet(b: &mut Bytes<'_>) -> ConnPacket {
    let src = address(b.u8());
    let dst = address(b.u8());
    let protocol = protocol(b.u8());
    let ports = b.u8();
    let tcp_flags = b.u8();
    let icmp_type = b.u8();
    let icmp = matches!(protocol, 1 | 58).then(|| {
        let inner = (icmp_type & 0x80 != 0).then(|| InnerPacket {
            src: dst,
            dst: src,
            protocol: protocol_of_inner(icmp_type),
            src_port: port(ports >> 4),
            dst_port: port(ports),
            icmp_type: icmp_type & 0x0f,
            echo_id: u16::from(ports),
        });
        IcmpInfo {
            icmp_type: icmp_type & 0x8f,
            code: tcp_flags & 3,
            echo_id: u16::from(ports & 3),
            inner,
        }
    });
    ConnPacket {
        src,
        dst,
        protocol,
        src_port: port(ports),
        dst_port: port(ports >> 4),
        tcp_flags: if protocol == 6 { tcp_flags } else { 0 },
        icmp,
    }
}

fn protocol_of_inner(n: u8) -> u8 {
    protocol(n >> 4)
}

/// Conntrack and the fragment tracker under an arbitrary sequence of packets, clock steps,
/// sweeps and revalidations, with a fake clock and tiny tables: no panic, never more entries
/// than the capacity, a connection just inserted is found, and memory never changes after
/// construction.
pub fn conntrack(data: &[u8]) {
    let mut b = Bytes(data);
    let config = ConntrackConfig {
        max_entries: u32::from(b.u8() % 32) + 1,
        shards: Some(1 << (b.u8() % 3)),
        timeouts: Timeouts {
            tcp_syn_sent: Duration::from_secs(4),
            tcp_established: Duration::from_secs(60),
            tcp_fin_wait: Duration::from_secs(4),
            tcp_close_wait: Duration::from_secs(4),
            tcp_time_wait: Duration::from_secs(4),
            tcp_close: Duration::from_secs(1),
            udp_unreplied: Duration::from_secs(3),
            udp_replied: Duration::from_secs(10),
            icmp: Duration::from_secs(3),
            other: Duration::from_secs(5),
        },
        tcp_loose_pickup: b.u8() & 1 == 0,
        fragment_max_entries: u32::from(b.u8() % 8) + 1,
        fragment_timeout: Duration::from_secs(5),
    };
    let Ok(table) = Conntrack::new(&config) else {
        return;
    };
    let Ok(fragments) = FragmentTracker::new(&config) else {
        return;
    };
    let memory = (table.memory_bytes(), fragments.memory_bytes());
    let mut now = Tick::from_nanos(1_000_000_000);
    let mut steps = 0;
    while !b.is_empty() && steps < 512 {
        steps += 1;
        match b.u8() % 8 {
            0..=3 => {
                let pkt = conn_packet(&mut b);
                let generation = u64::from(b.u8() & 3);
                if let Lookup::New | Lookup::NewMidStream = table.lookup(&pkt, now) {
                    if table.insert(&pkt, now, generation).is_ok() {
                        assert!(
                            table.peek(&pkt, now).is_some(),
                            "inserted connection not found: {pkt:?}"
                        );
                    }
                }
            }
            4 => now = Tick::from_nanos(now.0 + u64::from(b.u8()) * 100_000_000),
            5 => {
                let budget = usize::from(b.u8());
                table.sweep(now, budget);
                fragments.sweep(now, budget);
            }
            6 => {
                let keep = b.u8();
                let generation = u64::from(b.u8() & 3);
                table.revalidate(now, generation, |flow| {
                    (flow.src_port ^ flow.dst_port) & u16::from(keep) == 0
                });
            }
            _ => {
                let frag = Fragment {
                    src: address(b.u8()),
                    dst: address(b.u8()),
                    protocol: protocol(b.u8()),
                    id: u32::from(b.u8() & 7),
                    offset: u32::from(b.u16() & 0x1ff8),
                    len: u32::from(b.u16() & 0x7ff),
                    more: b.u8() & 1 == 0,
                };
                let control = b.u8();
                if frag.offset == 0 {
                    fragments.first(&frag, control & 1 == 0, now);
                } else {
                    fragments.later(&frag, now);
                }
            }
        }
        assert!(table.len() <= table.capacity(), "table above capacity");
        assert!(
            fragments.len() <= config.fragment_max_entries as usize,
            "fragment tracker above capacity"
        );
    }
    let stats = table.stats();
    assert_eq!(stats.entries as usize, table.len());
    assert_eq!(
        (table.memory_bytes(), fragments.memory_bytes()),
        memory,
        "memory changed"
    );
}
