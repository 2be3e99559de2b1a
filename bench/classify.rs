//! Classifying the first packet of a flow: the compiled snapshot against the reference
//! evaluator, and the cost of compiling.
//!
//! Cases:
//! - `classify/compiled/{10,100,1000,10000}`: `Snapshot::decide` on one flow key.
//! - `classify/reference/{10,100,1000,10000}`: `policy::evaluate` on one flow.
//! - `compile/{1000,10000}`: `compile::compile` of the whole resolved policy set.
//!
//! N is the total number of rules (ingress and egress), spread over four tiers (three ending
//! in Pass, then the default tier) and N/10 (N/20 from 1000 up) GlobalNetworkPolicies, each
//! selecting a group of endpoints. Rules combine CIDRs, port ranges, label selectors over
//! endpoints and network sets, and are mostly narrow, so that most flows walk past many rules
//! and reach a late rule or a default. The directory and the flows come from a fixed seed;
//! each iteration decides the next flow of a fixed set of 1024, so times are per verdict.
//!
//! Outside the timing, each N prints to stderr the snapshot's `memory_bytes()`, how many bench
//! flows the compiled path decides differently from the reference (should be 0), and a
//! latency distribution of single compiled verdicts (criterion reports means and medians
//! only; tails matter for a packet path).
//!
//! Counting instructions instead of time (the machine is shared, timings are noisy, and the
//! VM exposes no hardware counters to `perf stat`): with `CLASSIFY_DRIVE=N:ROUNDS` the binary
//! skips criterion, builds size N only and decides the 1024 bench flows ROUNDS times in
//! [`drive_rounds`]; under `valgrind --tool=callgrind --toggle-collect='*drive_rounds*'` the
//! instructions collected divided by `1024 * ROUNDS` are the instructions per verdict, and
//! `perf record` on the same run shows where the time goes.
//!
//! Which flows make the tail: `CLASSIFY_FLOWS=N:ROUNDS` times each of the 1024 flows
//! ROUNDS times (flows in bench order, round after round) and prints the slowest with what
//! their walk did (`compile::profile`), and mean per-flow medians by feature
//! (`CLASSIFY_FLOWS_SHOW=K` rows, 30 by default).

// A benchmark may panic on setup failure: that is a broken benchmark, not bad input.
#![allow(clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use portcullis::compile;
use portcullis::model::{Limits, Model, Settings, load, validate};
use portcullis::policy::{self, Flow, Resolved};
use portcullis::snapshot::{FlowKey, Snapshot};

const SIZES: [usize; 4] = [10, 100, 1000, 10_000];
const COMPILE_SIZES: [usize; 2] = [1000, 10_000];
const SEED: u64 = 0x5eed_c1a5_51f1;
const WORKLOADS: usize = 48;
const HOSTS: usize = 8;
const SETS: usize = 8;
const FLOWS: usize = 1024;
const CUSTOM_TIERS: usize = 3;
/// Single verdicts timed for the latency distribution, at most, and the time allowed for it.
const LATENCY_SAMPLES: usize = 200_000;
const LATENCY_BUDGET: Duration = Duration::from_secs(3);

/// SplitMix64: small, fast and fixed, so every run sees the same directory and flows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

// ---------------------------------------------------------------------------------------------
// The directory

fn workload_v4(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 10 + k as u8)
}

fn workload_v6(k: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + k as u16)
}

fn host_v4(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, 10 + k as u8)
}

/// Network set `i` holds 198.51.100.(32i)/27.
fn set_member(i: usize, offset: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, (32 * i + offset % 32) as u8)
}

const ROLES: [&str; 3] = ["web", "db", "cache"];
const APP_GROUPS: usize = 12;

fn endpoints_yaml(out: &mut String) {
    for k in 0..WORKLOADS {
        let _ = write!(
            out,
            "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: w{k}\n\
             \x20 namespace: prod\n  labels:\n    app: app{app}\n    role: {role}\nspec:\n\
             \x20 orchestrator: k8s\n  node: node1\n  interfaceName: cali{k}\n\
             \x20 ipNetworks: [\"{v4}/32\", \"{v6}/128\"]\n  ports:\n\
             \x20   - {{name: http, protocol: TCP, port: {http}}}\n",
            app = k % APP_GROUPS,
            role = ROLES[k % ROLES.len()],
            v4 = workload_v4(k),
            v6 = workload_v6(k),
            http = 8080 + k % 2,
        );
    }
    for k in 0..HOSTS {
        let _ = write!(
            out,
            "---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: h{k}\n\
             \x20 labels:\n    gw: gw{g}\nspec:\n  node: node{k}\n  expectedIPs: [\"{ip}\"]\n",
            g = k % 2,
            ip = host_v4(k),
        );
    }
    for i in 0..SETS {
        let _ = write!(
            out,
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: s{i}\n\
             \x20 labels:\n    zone: z{i}\nspec:\n  nets: [\"{net}/27\"]\n",
            net = set_member(i, 0),
        );
    }
}

fn tiers_yaml(out: &mut String) {
    for t in 0..CUSTOM_TIERS {
        let _ = write!(
            out,
            "---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: t{t}\n\
             spec:\n  order: {order}\n  defaultAction: Pass\n",
            order = 100 * (t + 1),
        );
    }
}

/// The endpoints a policy applies to: an app group, a role, every workload, or hosts.
fn policy_selector(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=4 => format!("app == 'app{}'", rng.below(APP_GROUPS)),
        5..=7 => format!("role == '{}'", ROLES[rng.below(ROLES.len())]),
        8 => "has(app)".to_owned(),
        _ => format!("gw == 'gw{}'", rng.below(2)),
    }
}

/// A random narrow port range.
fn port_range(rng: &mut Rng) -> String {
    let lo = 1000 + rng.below(50_000);
    format!("\"{lo}:{}\"", lo + 10 + rng.below(500))
}

/// One rule, mostly narrow so that flows walk on past it.
fn rule_yaml(rng: &mut Rng, last: bool) -> String {
    let action = if last {
        if rng.chance(50) { "Allow" } else { "Pass" }
    } else if rng.chance(10) {
        "Log"
    } else if rng.chance(50) {
        "Deny"
    } else {
        "Allow"
    };
    let body = match rng.below(7) {
        0 => format!(
            "protocol: TCP\nsource: {{nets: [\"198.51.100.{}/28\"]}}\ndestination: {{ports: [{}]}}",
            16 * rng.below(16),
            port_range(rng)
        ),
        1 => format!(
            "protocol: UDP\ndestination: {{ports: [{}]}}",
            1000 + rng.below(60_000)
        ),
        2 => format!(
            "protocol: TCP\nsource: {{selector: \"app == 'app{}'\"}}\ndestination: {{ports: [{}, {}]}}",
            rng.below(APP_GROUPS),
            1000 + rng.below(60_000),
            port_range(rng)
        ),
        3 => format!(
            "protocol: TCP\ndestination: {{nets: [\"{}/32\"], notPorts: [22]}}\nsource: {{notNets: [\"192.0.2.0/24\"]}}",
            workload_v4(rng.below(WORKLOADS))
        ),
        4 => format!(
            "protocol: TCP\nsource: {{selector: \"zone == 'z{}'\"}}\ndestination: {{ports: [{}]}}",
            rng.below(SETS),
            port_range(rng)
        ),
        5 => format!("protocol: ICMP\nicmp: {{type: {}}}", rng.below(20)),
        _ => format!(
            "protocol: TCP\nsource: {{selector: \"role == '{}'\", notSelector: \"app == 'app{}'\"}}\ndestination: {{ports: [http]}}",
            ROLES[rng.below(ROLES.len())],
            rng.below(APP_GROUPS)
        ),
    };
    let body = if last && rng.chance(50) {
        // A broad last rule, so that some flows are decided late by a rule.
        "protocol: TCP\ndestination: {ports: [\"8000:9000\"]}".to_owned()
    } else {
        body
    };
    format!("- action: {action}\n  {}\n", body.replace('\n', "\n  "))
}

fn rules_yaml(rng: &mut Rng, count: usize) -> String {
    let mut out = String::new();
    for r in 0..count {
        out.push_str(&rule_yaml(rng, r + 1 == count));
    }
    out.replace('\n', "\n    ").trim_end().to_owned()
}

/// Policies per direction and rules per policy direction, for N rules in total.
fn shape(rules: usize) -> (usize, usize) {
    let per_direction = if rules >= 1000 { 10 } else { 5 };
    ((rules / (2 * per_direction)).max(1), per_direction)
}

fn policies_yaml(rng: &mut Rng, rules: usize, out: &mut String) {
    let (policies, per_direction) = shape(rules);
    for p in 0..policies {
        // Tiers t0..t2, then the default tier, in round robin.
        let tier = match p % (CUSTOM_TIERS + 1) {
            t if t < CUSTOM_TIERS => format!("t{t}"),
            _ => "default".to_owned(),
        };
        let _ = write!(
            out,
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p{p}\n\
             spec:\n  tier: {tier}\n  order: {order}\n  selector: \"{selector}\"\n\
             \x20 types: [Ingress, Egress]\n  ingress:\n    {ingress}\n  egress:\n    {egress}\n",
            order = p,
            selector = policy_selector(rng),
            ingress = rules_yaml(rng, per_direction),
            egress = rules_yaml(rng, per_direction),
        );
    }
}

fn directory(rules: usize) -> String {
    let mut rng = Rng(SEED ^ rules as u64);
    let mut out = String::new();
    endpoints_yaml(&mut out);
    tiers_yaml(&mut out);
    policies_yaml(&mut rng, rules, &mut out);
    out
}

fn resolve(rules: usize) -> Resolved {
    let text = directory(rules);
    let limits = Limits::default();
    let (resources, mut problems) = load::load_str("classify.yaml", &text, &limits);
    problems.extend(validate::validate(&resources, &limits));
    if !problems.is_empty() {
        let shown: Vec<String> = problems.iter().take(5).map(|p| p.to_string()).collect();
        panic!("bench directory is invalid:\n{}", shown.join("\n"));
    }
    let settings = Settings::from_resources(&resources).expect("bench settings");
    policy::resolve(&Model {
        resources,
        settings,
    })
    .expect("bench directory resolves")
}

// ---------------------------------------------------------------------------------------------
// Flows

fn any_address(rng: &mut Rng, v6: bool) -> IpAddr {
    if v6 {
        return match rng.below(4) {
            0 => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                1,
                0,
                0,
                0,
                0,
                rng.below(99) as u16,
            )),
            _ => IpAddr::V6(workload_v6(rng.below(WORKLOADS))),
        };
    }
    match rng.below(10) {
        0..=5 => IpAddr::V4(workload_v4(rng.below(WORKLOADS))),
        6 => IpAddr::V4(host_v4(rng.below(HOSTS))),
        7 | 8 => IpAddr::V4(set_member(rng.below(SETS), rng.below(32))),
        _ => IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.below(256) as u8)),
    }
}

fn flows() -> Vec<Flow> {
    let mut rng = Rng(SEED);
    (0..FLOWS)
        .map(|_| {
            let v6 = rng.chance(10);
            let src = any_address(&mut rng, v6);
            let dst = any_address(&mut rng, v6);
            match rng.below(20) {
                0 => Flow::icmp(src, dst, rng.below(20) as u8, 0),
                1..=5 => Flow::udp(src, 40000, dst, (1000 + rng.below(60_000)) as u16),
                6..=9 => Flow::tcp(src, 40000, dst, (8000 + rng.below(1000)) as u16),
                _ => Flow::tcp(src, 40000, dst, (1 + rng.below(65_000)) as u16),
            }
        })
        .collect()
}

fn key(flow: &Flow) -> FlowKey {
    FlowKey {
        src: flow.src,
        dst: flow.dst,
        protocol: flow.protocol,
        src_port: flow.src_port,
        dst_port: flow.dst_port,
        icmp_type: flow.icmp_type,
        icmp_code: flow.icmp_code,
    }
}

/// One size: the resolved policy, its snapshot, and the bench flows.
struct World {
    rules: usize,
    resolved: Resolved,
    snapshot: Snapshot,
    flows: Vec<Flow>,
    keys: Vec<FlowKey>,
}

fn world(rules: usize) -> World {
    let resolved = resolve(rules);
    let snapshot = compile::compile(&resolved, 1);
    let flows = flows();
    let keys = flows.iter().map(key).collect();
    World {
        rules,
        resolved,
        snapshot,
        flows,
        keys,
    }
}

// ---------------------------------------------------------------------------------------------
// Figures outside the timing

/// Nanoseconds of an empty `Instant` pair, subtracted from each single-verdict sample.
fn timer_overhead() -> u64 {
    let mut samples: Vec<u64> = (0..10_000)
        .map(|_| {
            let t = Instant::now();
            black_box(());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(w: &World, overhead: u64) {
    let mismatches = w
        .flows
        .iter()
        .zip(&w.keys)
        .filter(|(f, k)| {
            policy::evaluate(&w.resolved, f).is_allowed() != w.snapshot.decide(k).allowed
        })
        .count();
    let allowed = w
        .keys
        .iter()
        .filter(|k| w.snapshot.decide(k).allowed)
        .count();
    let (by_rule, by_default) = w
        .flows
        .iter()
        .flat_map(|f| policy::evaluate(&w.resolved, f).trace)
        .fold((0, 0), |(r, d), side| match side.rule {
            Some(_) => (r + 1, d),
            None => (r, d + 1),
        });
    // Warm caches the way the criterion run does, then time single verdicts.
    for k in &w.keys {
        black_box(w.snapshot.decide(black_box(k)));
    }
    let mut samples: Vec<u64> = Vec::with_capacity(LATENCY_SAMPLES);
    let started = Instant::now();
    while samples.len() < LATENCY_SAMPLES && started.elapsed() < LATENCY_BUDGET {
        let k = &w.keys[samples.len() % w.keys.len()];
        let t = Instant::now();
        black_box(w.snapshot.decide(black_box(k)));
        samples.push((t.elapsed().as_nanos() as u64).saturating_sub(overhead));
    }
    samples.sort_unstable();
    let (policies, per_direction) = shape(w.rules);
    eprintln!(
        "classify N={:>5} ({policies} policies x 2 x {per_direction} rules): memory_bytes {:>10}, \
         {allowed}/{} bench flows allowed (sides decided by a rule {by_rule}, by a default \
         {by_default}), {mismatches} verdicts differ from the reference; compiled single verdict \
         ns over {} samples: p50 {} p99 {} p99.9 {} max {} (timer overhead {overhead} ns \
         subtracted)",
        w.rules,
        w.snapshot.memory_bytes(),
        w.keys.len(),
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        percentile(&samples, 0.999),
        samples.last().copied().unwrap_or_default(),
    );
}

// ---------------------------------------------------------------------------------------------
// Benchmarks

fn classify(c: &mut Criterion) {
    let worlds: Vec<World> = SIZES.iter().map(|&n| world(n)).collect();
    let overhead = timer_overhead();
    for w in &worlds {
        report(w, overhead);
    }

    let mut group = c.benchmark_group("classify");
    group.warm_up_time(Duration::from_secs(1));
    for w in &worlds {
        group.sample_size(50);
        group.measurement_time(Duration::from_secs(3));
        group.bench_with_input(BenchmarkId::new("compiled", w.rules), w, |b, w| {
            let mut i = 0usize;
            b.iter(|| {
                let k = &w.keys[i % w.keys.len()];
                i = i.wrapping_add(1);
                w.snapshot.decide(black_box(k))
            });
        });
    }
    for w in &worlds {
        // The reference walks every rule: fewer samples where it is slow.
        let (samples, seconds) = match w.rules {
            n if n >= 10_000 => (10, 8),
            n if n >= 1000 => (20, 5),
            _ => (50, 3),
        };
        group.sample_size(samples);
        group.measurement_time(Duration::from_secs(seconds));
        group.bench_with_input(BenchmarkId::new("reference", w.rules), w, |b, w| {
            let mut i = 0usize;
            b.iter(|| {
                let f = &w.flows[i % w.flows.len()];
                i = i.wrapping_add(1);
                policy::evaluate(&w.resolved, black_box(f))
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for w in worlds.iter().filter(|w| COMPILE_SIZES.contains(&w.rules)) {
        group.bench_with_input(BenchmarkId::from_parameter(w.rules), w, |b, w| {
            b.iter(|| compile::compile(black_box(&w.resolved), 2));
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// Instruction-count driver

/// Decide every key `rounds` times; returns the number of allowed verdicts so that nothing
/// is optimized away. Kept out of line so that a profiler can collect exactly this loop.
#[inline(never)]
fn drive_rounds(snapshot: &Snapshot, keys: &[FlowKey], rounds: usize) -> usize {
    let mut allowed = 0;
    for _ in 0..rounds {
        for k in keys {
            allowed += usize::from(snapshot.decide(black_box(k)).allowed);
        }
    }
    allowed
}

/// `CLASSIFY_DRIVE=N:ROUNDS`: see the module documentation.
fn drive(spec: &str) {
    let (rules, rounds) = spec
        .split_once(':')
        .and_then(|(n, r)| Some((n.parse().ok()?, r.parse().ok()?)))
        .expect("CLASSIFY_DRIVE is N:ROUNDS");
    let w = world(rules);
    let started = Instant::now();
    let allowed = drive_rounds(&w.snapshot, &w.keys, rounds);
    eprintln!(
        "drive N={rules}: {} verdicts ({allowed} allowed) in {:?}, memory_bytes {}",
        rounds * w.keys.len(),
        started.elapsed(),
        w.snapshot.memory_bytes()
    );
}

// ---------------------------------------------------------------------------------------------
// Per-flow latency diagnostic

/// `CLASSIFY_FLOWS=N:ROUNDS`: time each bench flow ROUNDS times, the flows in their bench
/// order round after round (as the single-verdict report and the criterion loop see them,
/// caches warmed by the others), then print the slowest flows with what their walk did
/// (`compile::profile`) and which of them make up the tail above the overall p99.
fn flow_latencies(spec: &str) {
    let (rules, rounds): (usize, usize) = spec
        .split_once(':')
        .and_then(|(n, r)| Some((n.parse().ok()?, r.parse().ok()?)))
        .expect("CLASSIFY_FLOWS is N:ROUNDS");
    let w = world(rules);
    let overhead = timer_overhead();
    for k in &w.keys {
        black_box(w.snapshot.decide(black_box(k)));
    }
    let mut per_flow: Vec<Vec<u64>> = vec![Vec::with_capacity(rounds); w.keys.len()];
    for _ in 0..rounds {
        for (k, samples) in w.keys.iter().zip(per_flow.iter_mut()) {
            let t = Instant::now();
            black_box(w.snapshot.decide(black_box(k)));
            samples.push((t.elapsed().as_nanos() as u64).saturating_sub(overhead));
        }
    }
    let mut all: Vec<u64> = per_flow.iter().flatten().copied().collect();
    all.sort_unstable();
    let p99 = percentile(&all, 0.99);
    eprintln!(
        "flows N={rules}: {} samples, p50 {} p90 {} p99 {} p99.9 {} ns (timer overhead {overhead} ns subtracted)",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.9),
        p99,
        percentile(&all, 0.999),
    );
    struct Row {
        flow: usize,
        p50: u64,
        p90: u64,
        above_p99: usize,
    }
    let mut rows: Vec<Row> = per_flow
        .iter_mut()
        .enumerate()
        .map(|(flow, samples)| {
            samples.sort_unstable();
            Row {
                flow,
                p50: percentile(samples, 0.5),
                p90: percentile(samples, 0.9),
                above_p99: samples.iter().filter(|&&t| t > p99).count(),
            }
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.p50));
    let tail: usize = rows.iter().map(|r| r.above_p99).sum();
    let mut by_tail: Vec<usize> = rows.iter().map(|r| r.above_p99).collect();
    by_tail.sort_unstable_by(|a, b| b.cmp(a));
    let top = |n: usize| by_tail.iter().take(n).sum::<usize>();
    eprintln!(
        "samples above p99: {tail}; the 10 / 50 / 100 flows with most of them hold {} / {} / {}",
        top(10),
        top(50),
        top(100)
    );
    // Per-flow medians by feature: what a slow flow has in common.
    let mut median_of: Vec<u64> = vec![0; w.keys.len()];
    for r in &rows {
        median_of[r.flow] = r.p50;
    }
    let shown = std::env::var("CLASSIFY_FLOWS_SHOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    eprintln!("slowest flows by median (ns p50 / p90, samples above p99):");
    for r in rows.iter().take(shown) {
        eprintln!(
            "  #{:<4} {:>5} / {:>5} {:>4}  {}",
            r.flow,
            r.p50,
            r.p90,
            r.above_p99,
            describe(&w, r.flow)
        );
    }
    eprintln!("fastest flows:");
    for r in rows.iter().rev().take(5) {
        eprintln!(
            "  #{:<4} {:>5} / {:>5} {:>4}  {}",
            r.flow,
            r.p50,
            r.p90,
            r.above_p99,
            describe(&w, r.flow)
        );
    }
    feature_table(&w, &median_of);
    let mut tail_by_protocol: std::collections::BTreeMap<u8, (usize, usize)> = Default::default();
    for r in &rows {
        let t = tail_by_protocol.entry(w.keys[r.flow].protocol).or_default();
        t.0 += r.above_p99;
        t.1 += 1;
    }
    let cells: Vec<String> = tail_by_protocol
        .iter()
        .map(|(p, (above, n))| format!("protocol {p}: {above} of {tail} over {n} flows"))
        .collect();
    eprintln!("samples above p99 by protocol: {}", cells.join(", "));
}

/// One flow and what deciding it took, on one line.
fn describe(w: &World, flow: usize) -> String {
    let k = &w.keys[flow];
    let kind = |a: IpAddr| match w.snapshot.endpoint_at(a) {
        Some(_) if w.snapshot.is_host_address(a) => "host",
        Some(_) => "wep",
        None => "ext",
    };
    let profile = compile::profile::walk_profile(&w.snapshot, k);
    let mut out = format!(
        "{} p{} {}->{} dport {:?}:",
        if profile.v6 { "v6" } else { "v4" },
        k.protocol,
        kind(k.src),
        kind(k.dst),
        k.dst_port.or(k.icmp_type.map(u16::from)),
    );
    for s in &profile.sides {
        let _ = write!(
            out,
            " [{} {}e probes {} remote {} calls {} words {}+{} log {} pass {} named {}/{} at {:?}{}]",
            if s.egress { "eg" } else { "in" },
            s.entries,
            s.probes,
            match (s.remote_probed, s.remote_class_from_index) {
                (false, _) => "-",
                (true, true) => "idx",
                (true, false) => "search",
            },
            s.first_match_calls,
            s.first_words,
            s.other_words,
            s.logs,
            s.passes,
            s.named_failed,
            s.named_checks,
            s.decided_at,
            if s.failsafe { " failsafe" } else { "" },
        );
    }
    out
}

/// Mean of the per-flow medians grouped by a few features.
fn feature_table(w: &World, median_of: &[u64]) {
    let profiles: Vec<_> = w
        .keys
        .iter()
        .map(|k| compile::profile::walk_profile(&w.snapshot, k))
        .collect();
    let group = |name: &str, key: &dyn Fn(&compile::profile::FlowProfile) -> String| {
        let mut groups: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for (p, &m) in profiles.iter().zip(median_of) {
            let g = groups.entry(key(p)).or_default();
            g.0 += m;
            g.1 += 1;
        }
        let cells: Vec<String> = groups
            .iter()
            .map(|(k, (sum, n))| format!("{k}: {} ns x{n}", sum / n))
            .collect();
        eprintln!("  by {name}: {}", cells.join(", "));
    };
    eprintln!("mean of per-flow medians:");
    group("sides", &|p| p.sides.len().to_string());
    group("probes", &|p| {
        let probes: Vec<String> = p.sides.iter().map(|s| s.probes.to_string()).collect();
        probes.join("+")
    });
    group("family", &|p| if p.v6 { "v6" } else { "v4" }.to_owned());
    group("calls", &|p| {
        both_sides(p, |s| s.first_match_calls).to_string()
    });
    group("first-probe words (/10)", &|p| {
        (both_sides(p, |s| s.first_words) / 10).to_string()
    });
    group("other words (/10)", &|p| {
        (both_sides(p, |s| s.other_words) / 10).to_string()
    });
    group("remote class searched", &|p| {
        p.sides
            .iter()
            .filter(|s| s.remote_probed && !s.remote_class_from_index)
            .count()
            .to_string()
    });
    group("named checks", &|p| {
        both_sides(p, |s| s.named_checks).to_string()
    });
    group("host sides", &|p| {
        p.sides.iter().filter(|s| s.host).count().to_string()
    });
}

/// A count summed over the sides of a flow that ran.
fn both_sides(
    p: &compile::profile::FlowProfile,
    count: impl Fn(&compile::profile::SideProfile) -> usize,
) -> usize {
    p.sides.iter().map(count).sum()
}

criterion_group!(benches, classify);

fn main() {
    if let Ok(spec) = std::env::var("CLASSIFY_DRIVE") {
        drive(&spec);
        return;
    }
    if let Ok(spec) = std::env::var("CLASSIFY_FLOWS") {
        flow_latencies(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
