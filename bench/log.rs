//! What a flood of frames reaching a Log rule costs the packet path (SPEC §A6: Log-action
//! lines are rate-limited), measured as `WorkerPath::judge` per frame.
//!
//! Cases (one frame per iteration; every frame is a new UDP datagram to `web`:9999 that the
//! policy denies, so no connection is tracked and policy runs for each one):
//! - `log/none`: the deny rule alone.
//! - `log/flood_rate_limited`: a Log rule ahead of the same deny rule, with the second's
//!   budget of lines already spent (the clock stands still), so every frame is a suppressed
//!   line: one shared atomic add in the limiter and a counter.
//! - `log/flood_written`: the same with a budget that never runs out and a sink that throws
//!   the line away: the cost of formatting each line, without the write.
//!
//! Before measuring, the suppressed path is checked not to allocate: a counting global
//! allocator counts allocations over 100,000 judged frames and the bench
//! refuses to run if there is one. The ratio of the first two medians is what a log flood
//! costs the gateway's throughput.
//!
//! Timings on this shared 2-core VM swing by ±40% from run to run, so the bench also counts
//! instructions: with `LOG_DRIVE=CASE:ROUNDS` (CASE one of the ids above) the binary skips
//! criterion and judges the bench frames ROUNDS times in [`drive_rounds`]; under
//! `valgrind --tool=callgrind --toggle-collect='*drive_rounds*'` the instructions collected
//! divided by `1024 * ROUNDS` are the instructions per frame.

// A benchmark may panic on setup failure: that is a broken benchmark, not bad input.
#![allow(clippy::expect_used, clippy::panic)]

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group};
use etherparse::PacketBuilder;
use portcullis::compile::compile;
use portcullis::conntrack::Tick;
use portcullis::dataplane::{Disposition, PortSide};
use portcullis::model::{Limits, Model, load_model_str};
use portcullis::pipeline::{LogSink, PathShared, WorkerPath};
use portcullis::policy::resolve;
use portcullis::snapshot::Snapshot;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// Counts every allocation of the process: the checks below run while no other thread of
/// the bench does anything.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const WEB: [u8; 4] = [203, 0, 113, 10];
const FRAMES: usize = 1024;

/// `web` denies UDP 9999; with `log`, a Log rule sees those datagrams first.
fn config(log: bool, rate: u32) -> String {
    let log_rule = if log {
        "    - action: Log\n      protocol: UDP\n      destination: { ports: [9999] }\n"
    } else {
        ""
    };
    format!(
        r#"
apiVersion: portcullis/v1
kind: GatewayConfiguration
metadata: {{ name: default }}
spec:
  conntrackMaxEntries: 65536
  logRateLimitPerSecond: {rate}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{ name: web, labels: {{ role: web }} }}
spec: {{ node: n1, expectedIPs: ["203.0.113.10"] }}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{ name: audit }}
spec:
  selector: role == 'web'
  types: [Ingress]
  ingress:
{log_rule}    - action: Deny
      protocol: UDP
      destination: {{ ports: [9999] }}
"#
    )
}

/// Throws lines away (what is measured is the path, not a terminal).
#[derive(Debug)]
struct Discard;

impl LogSink for Discard {
    fn write_line(&self, line: &str) {
        black_box(line);
    }
}

fn model(text: &str) -> Model {
    load_model_str("bench.yaml", text, &Limits::default())
        .unwrap_or_else(|problems| panic!("{problems:#?}"))
}

/// A worker path judging with the snapshot of `text`.
struct Rig {
    shared: Arc<PathShared>,
    worker: WorkerPath,
    snapshot: Snapshot,
}

impl Rig {
    fn new(text: &str) -> Rig {
        let model = model(text);
        let shared =
            Arc::new(PathShared::with_log_sink(&model.settings, Arc::new(Discard)).expect("path"));
        Rig {
            worker: WorkerPath::new(Arc::clone(&shared)),
            snapshot: compile(&resolve(&model).expect("resolves"), 1),
            shared,
        }
    }

    fn judge(&mut self, now: Tick, frame: &[u8]) -> Disposition {
        self.worker
            .judge(&self.snapshot, now, PortSide::Outside, frame)
    }
}

/// Datagrams from many clients in 198.51.100.0/24 to `web`:9999.
fn frames() -> Vec<Vec<u8>> {
    (0..FRAMES)
        .map(|i| {
            let mut frame = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4([198, 51, 100, (i % 250) as u8 + 1], WEB, 64)
                .udp(1024 + i as u16, 9999)
                .write(&mut frame, b"flood")
                .expect("frame");
            frame
        })
        .collect()
}

/// Judges every frame once (the first frame of a snapshot allocates its per-rule table),
/// then counts this thread's allocations over `rounds` more frames.
fn allocations_over(rig: &mut Rig, now: Tick, frames: &[Vec<u8>], rounds: usize) -> u64 {
    for frame in frames {
        rig.judge(now, frame);
    }
    let region = Region::new(ALLOCATOR);
    for i in 0..rounds {
        black_box(rig.judge(now, &frames[i % frames.len()]));
    }
    let change = region.change();
    (change.allocations + change.reallocations) as u64
}

const NOW: Tick = Tick::from_nanos(5_000_000_000);

/// The rig of a case id: `none`, `flood_rate_limited` or `flood_written`.
fn rig(id: &str) -> Rig {
    match id {
        "none" => Rig::new(&config(false, 10)),
        "flood_rate_limited" => Rig::new(&config(true, 10)),
        "flood_written" => Rig::new(&config(true, 1_000_000_000)),
        _ => panic!("no case {id}"),
    }
}

/// Judges every frame `rounds` times; returns how many were dropped.
#[inline(never)]
fn drive_rounds(rig: &mut Rig, frames: &[Vec<u8>], rounds: usize) -> usize {
    let mut dropped = 0;
    for _ in 0..rounds {
        for frame in frames {
            dropped += usize::from(rig.judge(NOW, frame) == Disposition::Drop);
        }
    }
    dropped
}

/// `LOG_DRIVE=CASE:ROUNDS`: see the module documentation.
fn drive(spec: &str) {
    let (id, rounds) = spec
        .split_once(':')
        .and_then(|(id, r)| Some((id, r.parse().ok()?)))
        .expect("LOG_DRIVE is CASE:ROUNDS");
    let frames = frames();
    let mut rig = rig(id);
    // Outside the counted function: the per-rule table and the second's line budget.
    drive_rounds(&mut rig, &frames, 1);
    let dropped = drive_rounds(&mut rig, &frames, rounds);
    eprintln!(
        "drive {id}: {} frames, {dropped} dropped, {} lines suppressed",
        rounds * frames.len(),
        rig.shared.log_lines_suppressed()
    );
}

fn log(c: &mut Criterion) {
    let now = NOW;
    let frames = frames();
    let mut none = rig("none");
    let mut limited = rig("flood_rate_limited");
    let mut written = rig("flood_written");

    const ROUNDS: usize = 100_000;
    let suppressed_before = limited.shared.log_lines_suppressed();
    let allocated = allocations_over(&mut limited, now, &frames, ROUNDS);
    let suppressed = limited.shared.log_lines_suppressed() - suppressed_before;
    eprintln!(
        "log/flood_rate_limited: {allocated} allocations over {ROUNDS} suppressed lines \
         ({suppressed} suppressed, {} written)",
        limited.worker.counters().read().log_lines
    );
    assert_eq!(
        suppressed,
        (ROUNDS + FRAMES - 10) as u64,
        "all but the budget suppressed"
    );
    assert_eq!(allocated, 0, "a suppressed Log line allocated");
    let allocated = allocations_over(&mut none, now, &frames, ROUNDS);
    eprintln!("log/none: {allocated} allocations over {ROUNDS} frames");
    let allocated = allocations_over(&mut written, now, &frames, ROUNDS);
    eprintln!("log/flood_written: {allocated} allocations over {ROUNDS} written lines");

    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    for (id, rig) in [
        ("none", &mut none),
        ("flood_rate_limited", &mut limited),
        ("flood_written", &mut written),
    ] {
        group.bench_function(id, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(rig.judge(now, &frames[i % FRAMES]))
            })
        });
    }
    group.finish();
    for (id, rig) in [("none", &none), ("flood_rate_limited", &limited)] {
        let counters = rig.worker.counters().read();
        assert_eq!(
            counters.packets[0][1],
            counters.drops.iter().sum::<u64>(),
            "{id}: every frame denied"
        );
    }
}

criterion_group!(benches, log);

fn main() {
    if let Ok(spec) = std::env::var("LOG_DRIVE") {
        drive(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
