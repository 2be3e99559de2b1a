//! A flood of frames reaching a Log rule once the second's budget of lines is spent costs
//! the packet path no allocation (SPEC §A6: Log-action lines are rate-limited; the hot path
//! does not allocate). Every allocation of this test binary is counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;

use etherparse::PacketBuilder;
use portcullis::compile::compile;
use portcullis::conntrack::Tick;
use portcullis::dataplane::PortSide;
use portcullis::model::{Limits, load_model_str};
use portcullis::pipeline::{LogSink, PathShared, WorkerPath};
use portcullis::policy::resolve;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const RATE: u64 = 5;

/// `web` logs, then denies, UDP 9999; five Log lines a second at most.
const CONFIG: &str = r#"
apiVersion: portcullis/v1
kind: GatewayConfiguration
metadata: { name: default }
spec:
  conntrackMaxEntries: 1024
  logRateLimitPerSecond: 5
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: web, labels: { role: web } }
spec: { node: n1, expectedIPs: ["203.0.113.10"] }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: audit }
spec:
  selector: role == 'web'
  types: [Ingress]
  ingress:
    - action: Log
      protocol: UDP
      destination: { ports: [9999] }
    - action: Deny
      protocol: UDP
      destination: { ports: [9999] }
"#;

#[derive(Debug, Default)]
struct CountLines(std::sync::atomic::AtomicU64);

impl LogSink for CountLines {
    fn write_line(&self, _: &str) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn suppressed_log_lines_allocate_nothing() {
    let model = load_model_str("flood.yaml", CONFIG, &Limits::default())
        .unwrap_or_else(|problems| panic!("{problems:#?}"));
    let snapshot = compile(&resolve(&model).unwrap(), 1);
    let sink = Arc::new(CountLines::default());
    let shared = Arc::new(
        PathShared::with_log_sink(&model.settings, Arc::clone(&sink) as Arc<dyn LogSink>).unwrap(),
    );
    let mut worker = WorkerPath::new(Arc::clone(&shared));
    let frames: Vec<Vec<u8>> = (0..256u16)
        .map(|i| {
            let mut frame = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4([198, 51, 100, (i % 250) as u8 + 1], [203, 0, 113, 10], 64)
                .udp(1024 + i, 9999)
                .write(&mut frame, b"flood")
                .unwrap();
            frame
        })
        .collect();
    // One second's budget spent (the clock stands still), and the snapshot's per-rule table
    // allocated by its first frame: neither is what is measured.
    let now = Tick::from_nanos(3_000_000_000);
    for frame in &frames {
        worker.judge(&snapshot, now, PortSide::Outside, frame);
    }
    assert_eq!(sink.0.load(std::sync::atomic::Ordering::Relaxed), RATE);

    const FLOOD: usize = 20_000;
    let region = Region::new(ALLOCATOR);
    for i in 0..FLOOD {
        let verdict = worker.judge(&snapshot, now, PortSide::Outside, &frames[i % frames.len()]);
        black_box(verdict);
    }
    let change = region.change();
    // The counter counts: one allocation in a region of its own shows up.
    let control = Region::new(ALLOCATOR);
    black_box(vec![0u8; 64]);
    assert_eq!(control.change().allocations, 1, "the allocator counts");

    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "allocations while {FLOOD} Log lines were suppressed"
    );
    assert_eq!(sink.0.load(std::sync::atomic::Ordering::Relaxed), RATE);
    assert_eq!(
        shared.log_lines_suppressed(),
        (frames.len() + FLOOD) as u64 - RATE
    );
    let counters = worker.counters().read();
    assert_eq!(
        counters.drops.iter().sum::<u64>(),
        (frames.len() + FLOOD) as u64,
        "every frame denied"
    );
}
