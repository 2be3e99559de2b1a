//! Connection table lookups and inserts.
//!
//! Cases (one lookup or insert per iteration, throughput in packets):
//! - `conntrack/hit`: UDP packets of 50,000 tracked flows, in a shuffled fixed order, on the
//!   default table (262,144 entries, automatic shards).
//! - `conntrack/miss`: first packets of flows not in that table (answer `New`).
//! - `conntrack/insert`: new flows into a table full of never-replied flows, so each insert
//!   also evicts one: the cost under a flood of new connections.
//! - `conntrack/lookup_random`: lookups of 1,024 random flows in a one-shard table of 4,096.
//! - `conntrack/lookup_adversarial`: the same, with 1,024 flows chosen so that they all share
//!   one home slot under a fixed, unkeyed hash (SipHash with a zero key), as an attacker who
//!   knew the hash would choose them. With the randomly keyed hash they scatter, so this must
//!   cost the same as `lookup_random`.
//! - `conntrack/lookup_adversarial_unkeyed`: those flows in a table that does hash with the
//!   fixed key, to show what the keying prevents.
//!
//! After criterion's runs, each case is timed packet by packet and its p50 and p99 are
//! printed to stderr (minus the median cost of reading the clock twice, printed too);
//! `lookup_random` and `lookup_adversarial` are timed alternately so that both see the same
//! machine noise.
//! Inputs come from a fixed-seed generator, so runs are comparable.

// A benchmark may panic on setup failure: that is a broken benchmark, not bad input.
#![allow(clippy::expect_used, clippy::panic)]

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::conntrack::{
    ConnKey, ConnPacket, Conntrack, ConntrackConfig, ConntrackError, Lookup, Tick,
};

const UDP: u8 = 17;
const TRACKED: usize = 50_000;
const SMALL_TABLE: u32 = 4096;
const CHOSEN: usize = 1024;
const TIMED: usize = 200_000;

/// xorshift64*: a fixed-seed generator, enough for spreading addresses and ports.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> ConnPacket {
    ConnPacket {
        src,
        dst,
        protocol: UDP,
        src_port,
        dst_port,
        tcp_flags: 0,
        icmp: None,
    }
}

/// Random flows from 10.0.0.0/8 to 192.0.2.0/24.
fn random_flows(rng: &mut Rng, count: usize) -> Vec<ConnPacket> {
    (0..count)
        .map(|_| {
            let r = rng.next();
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0x00ff_ffff)));
            let dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, (r >> 32) as u8));
            udp(src, (r >> 40) as u16 | 1024, dst, 53)
        })
        .collect()
}

/// Flows whose keys all land in one slot of a one-shard table of `SMALL_TABLE` entries
/// under the fixed hash: the search an attacker would run offline.
fn colliding_flows() -> Vec<ConnPacket> {
    let fixed = BuildHasherDefault::<DefaultHasher>::default();
    // The table's slot count and home-slot rule (see conntrack::table).
    let buckets = u64::from(SMALL_TABLE + SMALL_TABLE / 4 + 1);
    let home = |hash: u64| (u64::from(hash as u32) * buckets) >> 32;
    let dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53));
    let mut found = Vec::with_capacity(CHOSEN);
    let mut target = None;
    for n in 0u64.. {
        let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (n >> 16) as u32));
        let pkt = udp(src, n as u16, dst, 53);
        let (key, _) = ConnKey::ports(UDP, pkt.src, pkt.src_port, pkt.dst, pkt.dst_port);
        let slot = home(fixed.hash_one(key));
        if *target.get_or_insert(slot) == slot {
            found.push(pkt);
            if found.len() == CHOSEN {
                break;
            }
        }
    }
    found
}

fn small_config() -> ConntrackConfig {
    ConntrackConfig {
        max_entries: SMALL_TABLE,
        shards: Some(1),
        ..ConntrackConfig::default()
    }
}

fn filled<S: BuildHasher>(
    ct: Result<Conntrack<S>, ConntrackError>,
    flows: &[ConnPacket],
) -> Conntrack<S> {
    let ct = ct.expect("table allocated");
    for pkt in flows {
        ct.insert(pkt, Tick(0), 1).expect("room for every flow");
    }
    ct
}

/// Packet-by-packet timing of `op` over `TIMED` packets: (p50, p99) in nanoseconds.
fn percentiles(mut op: impl FnMut(usize)) -> (u64, u64) {
    let mut samples: Vec<u64> = (0..TIMED)
        .map(|i| {
            let start = Instant::now();
            op(i);
            start.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    (samples[TIMED / 2], samples[TIMED * 99 / 100])
}

fn report(name: &str, clock: u64, op: impl FnMut(usize)) {
    print_percentiles(name, clock, percentiles(op));
}

fn print_percentiles(name: &str, clock: u64, (p50, p99): (u64, u64)) {
    eprintln!(
        "conntrack/{name}: p50 {} ns, p99 {} ns per packet",
        p50.saturating_sub(clock),
        p99.saturating_sub(clock)
    );
}

/// Like [`percentiles`] for two operations timed alternately, so that both meet the same
/// machine noise and their tails compare fairly.
fn paired_percentiles(
    mut first: impl FnMut(usize),
    mut second: impl FnMut(usize),
) -> ((u64, u64), (u64, u64)) {
    let mut samples = [Vec::with_capacity(TIMED), Vec::with_capacity(TIMED)];
    for i in 0..TIMED {
        for (which, samples) in samples.iter_mut().enumerate() {
            let start = Instant::now();
            if which == 0 {
                first(i);
            } else {
                second(i);
            }
            samples.push(start.elapsed().as_nanos() as u64);
        }
    }
    let [mut a, mut b] = samples;
    a.sort_unstable();
    b.sort_unstable();
    let at = |s: &[u64]| (s[TIMED / 2], s[TIMED * 99 / 100]);
    (at(&a), at(&b))
}

fn conntrack(c: &mut Criterion) {
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    let now = Tick(1);

    let tracked = random_flows(&mut rng, TRACKED);
    let untracked = random_flows(&mut rng, TRACKED);
    let big = filled(Conntrack::new(&ConntrackConfig::default()), &tracked);
    assert_eq!(big.len(), TRACKED, "random flows repeat: pick another seed");

    let flood_config = ConntrackConfig {
        max_entries: 65_536,
        ..ConntrackConfig::default()
    };
    let flood = Conntrack::new(&flood_config).expect("table allocated");
    let mut flood_rng = Rng(0x5EED_CAFE_F00D_0002);
    let mut next_flow = move || {
        let r = flood_rng.next();
        udp(
            IpAddr::V4(Ipv4Addr::from(r as u32)),
            (r >> 32) as u16,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            (r >> 48) as u16,
        )
    };
    for _ in 0..flood_config.max_entries * 2 {
        let _ = flood.insert(&next_flow(), now, 1);
    }

    let random_small = random_flows(&mut rng, CHOSEN);
    let chosen = colliding_flows();
    let keyed_random = filled(Conntrack::new(&small_config()), &random_small);
    let keyed_chosen = filled(Conntrack::new(&small_config()), &chosen);
    let unkeyed = BuildHasherDefault::<DefaultHasher>::default();
    let unkeyed_chosen = filled(Conntrack::with_hasher(&small_config(), unkeyed), &chosen);

    let hit = |i: usize| {
        let lookup = big.lookup(&tracked[i % TRACKED], now);
        debug_assert!(matches!(lookup, Lookup::Established { .. }));
        black_box(lookup);
    };
    let miss = |i: usize| {
        let lookup = big.lookup(&untracked[i % TRACKED], now);
        debug_assert_eq!(lookup, Lookup::New);
        black_box(lookup);
    };
    let lookup_in = |table: &Conntrack<_>, flows: &[ConnPacket], i: usize| {
        black_box(table.lookup(&flows[i % flows.len()], now));
    };

    let mut group = c.benchmark_group("conntrack");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("hit", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            hit(i)
        })
    });
    group.bench_function("miss", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            miss(i)
        })
    });
    group.bench_function("insert", |b| {
        b.iter(|| black_box(flood.insert(&next_flow(), now, 1)))
    });
    group.bench_function("lookup_random", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            lookup_in(&keyed_random, &random_small, i)
        })
    });
    group.bench_function("lookup_adversarial", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            lookup_in(&keyed_chosen, &chosen, i)
        })
    });
    group.bench_function("lookup_adversarial_unkeyed", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(unkeyed_chosen.lookup(&chosen[i % CHOSEN], now));
        })
    });
    group.finish();

    let clock = percentiles(|_| {}).0;
    eprintln!("clock read pair: {clock} ns (subtracted below)");
    report("hit", clock, hit);
    report("miss", clock, miss);
    report("insert", clock, |_| {
        black_box(flood.insert(&next_flow(), now, 1)).ok();
    });
    let (random, adversarial) = paired_percentiles(
        |i| lookup_in(&keyed_random, &random_small, i),
        |i| lookup_in(&keyed_chosen, &chosen, i),
    );
    print_percentiles("lookup_random", clock, random);
    print_percentiles("lookup_adversarial", clock, adversarial);
    report("lookup_adversarial_unkeyed", clock, |i| {
        black_box(unkeyed_chosen.lookup(&chosen[i % CHOSEN], now));
    });
    eprintln!(
        "bytes per entry: {:.1} (default table: {} bytes for {} entries, {} shards)",
        big.memory_bytes() as f64 / big.capacity() as f64,
        big.memory_bytes(),
        big.capacity(),
        big.shard_count()
    );
    let stats = flood.stats();
    eprintln!(
        "flood table: {} inserts, {} evictions, {} refused",
        stats.inserts, stats.evictions, stats.insert_failures
    );
}

criterion_group!(benches, conntrack);
criterion_main!(benches);
