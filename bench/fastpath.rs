//! The packet path's per-packet costs, against the targets of the dataplane issue.
//!
//! Cases (one frame, lookup or insert per iteration; throughput in packets):
//! - `fastpath/parse`: `packet::parse` of TCP ACK frames (IPv4, 66 bytes).
//! - `fastpath/conntrack_hit`: lookups of UDP flows in a table holding 10,000 of them
//!   (target ≤ 50 ns).
//! - `fastpath/conntrack_hit_cached`: the same lookups through one worker's cache of steady
//!   connections (`Conntrack::lookup_cached`, as the packet path does), the 10,000 flows
//!   visited round-robin: the worst order for a cache of 16,384 lines (in sets of sixteen),
//!   where flows that share a set beyond its size evict each other on every visit.
//! - `fastpath/conntrack_hit_1m`: the same with 1,000,000 flows in a table of 2^20
//!   (target ≤ 150 ns).
//! - `fastpath/conntrack_insert`: inserts of new flows into a table of 2^20 that stays under
//!   60% full, its memory touched beforehand (target ≥ 2 M/s, ≤ 500 ns).
//! - `fastpath/pipeline_established`: `WorkerPath::judge` of TCP ACKs of 10,000 established
//!   connections arriving on `outside`: parse, anti-spoofing, conntrack hit, counters
//!   (target ≤ 100 ns).
//! - `fastpath/pipeline_new_flow`: `judge` of first packets of new, allowed UDP flows: parse,
//!   anti-spoofing, conntrack miss, policy, insert.
//!
//! Bytes per conntrack entry are printed to stderr (target ≤ 128). Inputs come from
//! fixed-seed generators, so runs are comparable.
//!
//! Counting instead of timing (the machine is shared and its VM exposes no hardware
//! counters): with `FASTPATH_DRIVE=CASE:N` (CASE `hit`, `hit_cached`, `hit_1m` or
//! `established`) the binary skips criterion, builds that case's table and runs N lookups or
//! judgements in the same order as the bench, inside [`drive_hits`], [`drive_cached_hits`]
//! or [`drive_established`]. Under `valgrind --tool=cachegrind --cache-sim=yes` (or
//! callgrind with `--toggle-collect='*drive_*'`) the instructions and D1/LL misses of a run
//! with N minus those of a run with N = 0, divided by N, are the cost per packet.

// A benchmark may panic on setup failure: that is a broken benchmark, not bad input.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use etherparse::PacketBuilder;
use portcullis::compile::compile;
use portcullis::conntrack::{ConnPacket, Conntrack, ConntrackConfig, FlowCache, Lookup, Tick};
use portcullis::dataplane::{Disposition, PortSide};
use portcullis::model::{Limits, Model, load_model_str};
use portcullis::packet;
use portcullis::pipeline::{LogSink, PathShared, WorkerPath};
use portcullis::policy::resolve;
use portcullis::snapshot::Snapshot;

const UDP: u8 = 17;
const FLOWS: usize = 10_000;
const MILLION: usize = 1_000_000;

/// Inside hosts with a web policy and a default-deny database: a small, realistic directory.
const CONFIG: &str = r#"
apiVersion: portcullis/v1
kind: GatewayConfiguration
metadata: { name: default }
spec:
  conntrackMaxEntries: 262144
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: web, labels: { role: web } }
spec: { node: n1, expectedIPs: ["203.0.113.10"] }
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: db, labels: { role: db } }
spec: { node: n2, expectedIPs: ["203.0.113.20"] }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: allow-web }
spec:
  selector: role == 'web'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      destination: { ports: [80, 443] }
    - action: Allow
      protocol: UDP
      destination: { ports: [53] }
"#;

const WEB: [u8; 4] = [203, 0, 113, 10];

/// xorshift64*: a fixed-seed generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Log lines are not expected here; drop them.
#[derive(Debug)]
struct Discard;

impl LogSink for Discard {
    fn write_line(&self, _: &str) {}
}

fn model() -> Model {
    load_model_str("bench.yaml", CONFIG, &Limits::default())
        .unwrap_or_else(|problems| panic!("{problems:#?}"))
}

fn snapshot(model: &Model) -> Snapshot {
    compile(&resolve(model).expect("resolves"), 1)
}

/// A client in 198.51.100.0/24 with a port, from a random number.
fn client(r: u64) -> ([u8; 4], u16) {
    ([198, 51, 100, (r >> 8) as u8], (r >> 16) as u16 | 1024)
}

fn tcp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, syn: bool, ack: bool) -> Vec<u8> {
    let mut step = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 64240);
    if syn {
        step = step.syn();
    }
    if ack {
        step = step.ack(1);
    }
    let mut frame = Vec::new();
    step.write(&mut frame, &[]).expect("frame");
    frame
}

fn udp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut frame, b"query")
        .expect("frame");
    frame
}

fn udp_packet(r: u64) -> ConnPacket {
    ConnPacket {
        src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0x00ff_ffff))),
        dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, (r >> 32) as u8)),
        protocol: UDP,
        src_port: (r >> 40) as u16 | 1024,
        dst_port: 53,
        tcp_flags: 0,
        icmp: None,
    }
}

/// The process's anonymous memory on transparent huge pages, from the kernel's own count:
/// shows whether the table got the 2 MiB pages it asked for.
fn huge_pages_in_use() -> String {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("AnonHugePages:"))
                .map(|line| {
                    line.split_whitespace()
                        .skip(1)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
        })
        .map_or_else(
            || "AnonHugePages unknown".to_string(),
            |size| format!("{size} of anonymous memory on huge pages"),
        )
}

/// A table holding `count` distinct random UDP flows, and those flows.
fn filled_table(max_entries: u32, count: usize, seed: u64) -> (Conntrack, Vec<ConnPacket>) {
    let config = ConntrackConfig {
        max_entries,
        ..ConntrackConfig::default()
    };
    let table = Conntrack::new(&config).expect("table allocated");
    let mut rng = Rng(seed);
    let mut flows = Vec::with_capacity(count);
    while flows.len() < count {
        let pkt = udp_packet(rng.next());
        if table.lookup(&pkt, Tick(1)) == Lookup::New {
            table.insert(&pkt, Tick(1), 1).expect("room");
            flows.push(pkt);
        }
    }
    (table, flows)
}

/// Touches a fresh table's memory (by filling it with `flows` and emptying it again), so
/// that the timed inserts do not pay the kernel's first-touch page faults.
fn prefault(table: &Conntrack, flows: &[ConnPacket], now: Tick) {
    for pkt in flows {
        table.insert(pkt, now, 1).ok();
    }
    table.revalidate(now, 2, |_| false);
    assert!(table.is_empty());
}

/// A worker path whose table holds `FLOWS` established TCP connections to the web host, and
/// an ACK from the client of each.
fn established_world(
    model: &Model,
    snap: &Snapshot,
    rng: &mut Rng,
    now: Tick,
) -> (WorkerPath, Vec<Vec<u8>>) {
    let shared = Arc::new(
        PathShared::with_log_sink(&model.settings, Arc::new(Discard)).expect("path allocated"),
    );
    let mut worker = WorkerPath::new(Arc::clone(&shared));
    let mut established = Vec::with_capacity(FLOWS);
    while established.len() < FLOWS {
        let (src, sport) = client(rng.next());
        let syn = tcp_frame(src, sport, WEB, 80, true, false);
        if worker.judge(snap, now, PortSide::Outside, &syn) != Disposition::Forward {
            continue; // the same client port twice: already open
        }
        let syn_ack = tcp_frame(WEB, 80, src, sport, true, true);
        assert_eq!(
            worker.judge(snap, now, PortSide::Inside, &syn_ack),
            Disposition::Forward
        );
        established.push(tcp_frame(src, sport, WEB, 80, false, true));
    }
    (worker, established)
}

/// `count` lookups of `flows`, visiting them `stride` apart as the bench does.
#[inline(never)]
fn drive_hits(table: &Conntrack, flows: &[ConnPacket], now: Tick, stride: usize, count: usize) {
    let mut at = 0usize;
    for _ in 0..count {
        at = (at + stride) % flows.len();
        black_box(table.lookup(&flows[at], now));
    }
}

/// As [`drive_hits`], through a worker's cache.
#[inline(never)]
fn drive_cached_hits(table: &Conntrack, flows: &[ConnPacket], now: Tick, count: usize) {
    let mut cache = FlowCache::default();
    for i in 0..count {
        black_box(table.lookup_cached(&flows[i % flows.len()], now, &mut cache));
    }
}

/// `count` judgements of established ACKs, in the bench's order.
#[inline(never)]
fn drive_established(
    worker: &mut WorkerPath,
    snap: &Snapshot,
    frames: &[Vec<u8>],
    now: Tick,
    count: usize,
) {
    for i in 0..count {
        black_box(worker.judge(snap, now, PortSide::Outside, &frames[i % frames.len()]));
    }
}

/// `FASTPATH_DRIVE=CASE:N`: see the module documentation.
fn drive(spec: &str) {
    let (case, count) = spec
        .split_once(':')
        .and_then(|(case, n)| Some((case, n.parse::<usize>().ok()?)))
        .expect("FASTPATH_DRIVE is CASE:N");
    let now = Tick::from_nanos(1_000_000_000);
    let started = Instant::now();
    match case {
        "hit" => {
            let (table, flows) = filled_table(262_144, FLOWS, 0x5EED_0002);
            drive_hits(&table, &flows, now, 1, count);
        }
        "hit_cached" => {
            let (table, flows) = filled_table(262_144, FLOWS, 0x5EED_0002);
            drive_cached_hits(&table, &flows, now, count);
        }
        "hit_1m" => {
            let (table, flows) = filled_table(1 << 20, MILLION, 0x5EED_0003);
            drive_hits(&table, &flows, now, 7919, count);
        }
        "established" => {
            let model = model();
            let snap = snapshot(&model);
            let mut rng = Rng(0x5EED_FA57_0000_0001);
            let (mut worker, frames) = established_world(&model, &snap, &mut rng, now);
            drive_established(&mut worker, &snap, &frames, now, count);
        }
        other => panic!("unknown FASTPATH_DRIVE case {other:?}"),
    }
    eprintln!("drive {case}: {count} in {:?}", started.elapsed());
}

fn fastpath(c: &mut Criterion) {
    let now = Tick::from_nanos(1_000_000_000);
    let mut rng = Rng(0x5EED_FA57_0000_0001);
    let mut group = c.benchmark_group("fastpath");
    group.throughput(Throughput::Elements(1));

    // parse
    let acks: Vec<Vec<u8>> = (0..1024)
        .map(|_| {
            let (src, sport) = client(rng.next());
            tcp_frame(src, sport, WEB, 80, false, true)
        })
        .collect();
    let mut i = 0usize;
    group.bench_function("parse", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(packet::parse(black_box(&acks[i % acks.len()]))).ok()
        })
    });

    // conntrack hits
    let (small, small_flows) = filled_table(262_144, FLOWS, 0x5EED_0002);
    group.bench_function("conntrack_hit", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(small.lookup(&small_flows[i % FLOWS], now))
        })
    });
    let mut cache = FlowCache::default();
    group.bench_function("conntrack_hit_cached", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(small.lookup_cached(&small_flows[i % FLOWS], now, &mut cache))
        })
    });
    eprintln!(
        "conntrack: {:.1} bytes per entry ({} bytes for {} entries, {} shards)",
        small.memory_bytes() as f64 / small.capacity() as f64,
        small.memory_bytes(),
        small.capacity(),
        small.shard_count()
    );
    eprintln!("conntrack: {}", huge_pages_in_use());
    drop(small);
    let (big, big_flows) = filled_table(1 << 20, MILLION, 0x5EED_0003);
    // Visit the million flows in a scattered order, as traffic would.
    let mut step = 0usize;
    group.bench_function("conntrack_hit_1m", |b| {
        b.iter(|| {
            step = (step + 7919) % MILLION;
            black_box(big.lookup(&big_flows[step], now))
        })
    });
    drop(big);
    drop(big_flows);

    // conntrack inserts: a fresh table per measurement, kept under 3/4 full.
    let mut seed = 0x5EED_0004u64;
    group.bench_function("conntrack_insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(600_000);
                let config = ConntrackConfig {
                    max_entries: 1 << 20,
                    ..ConntrackConfig::default()
                };
                let table = Conntrack::new(&config).expect("table allocated");
                seed = seed.wrapping_add(1);
                let mut rng = Rng(seed);
                let flows: Vec<ConnPacket> = (0..chunk).map(|_| udp_packet(rng.next())).collect();
                prefault(&table, &flows, now);
                let start = Instant::now();
                for pkt in &flows {
                    black_box(table.insert(pkt, now, 1)).ok();
                }
                total += start.elapsed();
                left -= chunk;
            }
            total
        })
    });

    // pipeline, established
    let model = model();
    let snap = snapshot(&model);
    let (mut worker, established) = established_world(&model, &snap, &mut rng, now);
    group.bench_function("pipeline_established", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(worker.judge(&snap, now, PortSide::Outside, &established[i % FLOWS]))
        })
    });
    let counters = worker.counters().read();
    assert_eq!(
        counters.drops.iter().sum::<u64>(),
        0,
        "established frames dropped"
    );

    // pipeline, new flows: a fresh path per measurement, so the table never fills.
    let mut seed = 0x5EED_0005u64;
    group.bench_function("pipeline_new_flow", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(100_000);
                let shared = Arc::new(
                    PathShared::with_log_sink(&model.settings, Arc::new(Discard))
                        .expect("path allocated"),
                );
                let mut worker = WorkerPath::new(Arc::clone(&shared));
                seed = seed.wrapping_add(1);
                let mut rng = Rng(seed);
                let frames: Vec<Vec<u8>> = (0..chunk)
                    .map(|_| {
                        let r = rng.next();
                        let src = [198, 51, (r >> 8) as u8, (r >> 16) as u8];
                        udp_frame(src, (r >> 24) as u16 | 1024, WEB, 53)
                    })
                    .collect();
                let decoys: Vec<ConnPacket> = (0..chunk).map(|_| udp_packet(rng.next())).collect();
                prefault(shared.conntrack(), &decoys, now);
                // The first frame of a snapshot allocates the per-rule table: not timed.
                worker.judge(&snap, now, PortSide::Outside, &acks[0]);
                let start = Instant::now();
                for frame in &frames {
                    black_box(worker.judge(&snap, now, PortSide::Outside, frame));
                }
                total += start.elapsed();
                left -= chunk;
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, fastpath);

fn main() {
    if let Ok(spec) = std::env::var("FASTPATH_DRIVE") {
        drive(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
