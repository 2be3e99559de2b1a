//! Interval tables: the per-field lookup of the classifier.
//!
//! A table splits a key space into elementary intervals and gives each a `u32` value (an id of
//! a bitset, or of an endpoint address). A lookup is a search for the interval holding the
//! key. Plain binary search over 20,000 bounds costs about 15 dependent cache-missing loads;
//! instead a radix index splits the span of the bounds into up to 2^16 equal buckets, each
//! remembering where its bounds start, so a lookup is one bucket read and a search over the
//! few bounds that fall in that bucket. The index holds about two buckets per bound, so its
//! memory stays proportional to the table.
//!
//! Each bound sits beside the value that starts at it, so the search over a bucket's bounds
//! and the answer share a cache line: a lookup reads the bucket (most buckets hold no bound,
//! and then the bucket holds the answer) and then the line or two of its bounds, where
//! separate bound and value arrays cost one more line per lookup.
//!
//! Clustered bounds (a /24 of workloads, /28s of network sets, far apart) crowd a few
//! buckets; nesting a radix index in each crowded bucket was tried and cost more (one more
//! bucket line per level, 18.4 against 17.2 D1 misses per verdict at 10,000 bench rules)
//! than the binary search over a crowded bucket, whose first probes stay in cache.

use super::addrset::Key;
use super::keys;

/// Largest radix index, in buckets.
const MAX_BUCKETS: usize = 1 << 16;

/// Keys split into intervals, each with a value.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct IntervalTable<K> {
    /// The radix index: the first bound, the bucket width in bits, and for each bucket the
    /// number of bounds below its start with the value at its start (one more entry holding
    /// the number of bounds). Most buckets hold no bound, and then that value is the answer.
    /// (`repr(C)`, in this order: no padding for either key type.)
    lo: K,
    buckets: Box<[(u32, u32)]>,
    /// Start key of every interval but the first (which starts at zero), ascending, each
    /// with the value of its interval: `steps[i].1` for `steps[i].0 <= key < steps[i+1].0`.
    steps: Box<[(K, u32)]>,
    shift: u32,
    /// The value of keys below the first bound.
    below: u32,
}

impl<K: Key> IntervalTable<K> {
    /// A table from breakpoints: each `(start, value)` gives the value from `start` up to the
    /// next start. Starts must ascend strictly; keys below the first start get `default`.
    /// Neighbouring intervals with the same value are merged.
    pub fn from_breaks(breaks: impl IntoIterator<Item = (K, u32)>, default: u32) -> Self {
        let mut below = default;
        let mut steps: Vec<(K, u32)> = Vec::new();
        for (start, value) in breaks {
            let last = steps.last().map_or(below, |&(_, v)| v);
            if start == K::ZERO {
                below = value;
            } else if last != value {
                debug_assert!(steps.last().is_none_or(|&(b, _)| b < start));
                steps.push((start, value));
            }
        }
        let bounds: Vec<K> = steps.iter().map(|&(bound, _)| bound).collect();
        let (lo, shift, starts) = radix_index(&bounds);
        // The value at a bucket's start: that of the last bound below it.
        let buckets = starts
            .iter()
            .map(|&start| {
                let value = match (start as usize).checked_sub(1) {
                    Some(i) => steps.get(i).map_or(below, |&(_, v)| v),
                    None => below,
                };
                (start, value)
            })
            .collect();
        IntervalTable {
            below,
            steps: steps.into_boxed_slice(),
            lo,
            shift,
            buckets,
        }
    }

    /// The value of the interval holding `key`.
    #[inline]
    pub fn lookup(&self, key: K) -> u32 {
        if key < self.lo || self.steps.is_empty() {
            return self.below;
        }
        let last = self.buckets.len() - 2;
        let b = key.bucket(self.lo, self.shift, last);
        let (start, first) = self.buckets[b];
        let (start, end) = (start as usize, self.buckets[b + 1].0 as usize);
        let run = &self.steps[start..end];
        match run.partition_point(|&(bound, _)| bound <= key) {
            0 => first,
            within => run[within - 1].1,
        }
    }

    /// Number of intervals.
    pub fn intervals(&self) -> usize {
        self.steps.len() + 1
    }

    /// The start keys of every interval but the first.
    pub(crate) fn bounds(&self) -> impl Iterator<Item = K> + '_ {
        self.steps.iter().map(|&(bound, _)| bound)
    }

    pub fn heap_bytes(&self) -> usize {
        self.steps.len() * std::mem::size_of::<(K, u32)>() + self.buckets.len() * 8
    }
}

/// Equivalence classes of one key space shared by several tables: the union of their
/// bounds splits the keys into classes, one lookup gives the class, and each table's value
/// for it is one read from that table's class array. Looked up once per flow and shared by
/// every program, the class table stays in cache where a table per program would not.
#[derive(Debug, Clone)]
pub(crate) struct ClassTable<K> {
    /// Key → class id (class `c` starts at the `c`-th bound of the union, class 0 at zero).
    classes: IntervalTable<K>,
}

/// A class table with each of its tables' value per class (in the tables' order).
pub(crate) type WithValues<K> = (ClassTable<K>, Vec<Box<[u32]>>);

impl<K: Key> ClassTable<K> {
    /// The class table of `tables`, with each table's value per class (in `tables` order).
    pub fn new(tables: &[&IntervalTable<K>]) -> WithValues<K> {
        ClassTable::from_starts(tables, union_of_bounds(tables))
    }

    /// The class table whose classes start at `starts`, the union of the tables' bounds.
    fn from_starts(tables: &[&IntervalTable<K>], starts: Vec<K>) -> WithValues<K> {
        let classes = IntervalTable::from_breaks(starts.iter().copied().zip(1..), 0);
        let per_table = tables.iter().map(|t| t.values_at_starts(&starts)).collect();
        (ClassTable { classes }, per_table)
    }

    /// The class of `key`.
    #[inline]
    pub fn lookup(&self, key: K) -> u32 {
        self.classes.lookup(key)
    }

    /// Number of classes.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.classes.intervals()
    }

    pub fn heap_bytes(&self) -> usize {
        self.classes.heap_bytes()
    }

    /// [`ClassTable::new`], unless the per-table class arrays would take more than
    /// `budget` bytes (classes × tables × 4: with many tables and many distinct bounds the
    /// product grows faster than the tables themselves).
    pub fn within(tables: &[&IntervalTable<K>], budget: usize) -> Option<WithValues<K>> {
        let starts = union_of_bounds(tables);
        let bytes = (starts.len() + 1)
            .saturating_mul(tables.len())
            .saturating_mul(4);
        (bytes <= budget).then(|| ClassTable::from_starts(tables, starts))
    }
}

/// The snapshot's service classes (protocol and destination port), or a single class when
/// the programs keep their own service tables (their class arrays would cost too much).
/// The TCP and UDP classes are also held by port in direct arrays when the table is large:
/// at 10,000 bench rules its bounds fill its buckets and a lookup cost about two L1 misses
/// (the bucket and its bounds), where a direct array costs one read.
#[derive(Debug, Clone)]
pub(crate) struct ServiceClasses {
    table: ClassTable<u32>,
    /// Whether the snapshot's service keys of ICMP flows carry their type and code (see
    /// [`keys::flow_service_key`]); the same for every program, as the classes are.
    pub icmp_in_service: bool,
    /// Class by port key (see [`keys::port_key`]) of TCP, then of UDP; both empty when the
    /// table is small (it stays in cache) or has more classes than a `u16` holds.
    tcp: Box<[u16]>,
    udp: Box<[u16]>,
}

/// Service tables of fewer classes keep no direct arrays: they stay in cache as they are,
/// and two arrays of 128 KiB would not.
const DIRECT_SERVICE_MIN_CLASSES: usize = 1024;

impl ServiceClasses {
    pub fn new(table: ClassTable<u32>, icmp_in_service: bool) -> ServiceClasses {
        let classes = table.classes.intervals();
        let direct = (DIRECT_SERVICE_MIN_CLASSES..=usize::from(u16::MAX)).contains(&classes);
        let by_port = |protocol: u8| -> Box<[u16]> {
            if !direct {
                return Box::default();
            }
            let first = keys::service_key(protocol, None);
            (0..=keys::PORT_MAX)
                .map(|port| u16::try_from(table.lookup(first + port)).unwrap_or(u16::MAX))
                .collect()
        };
        ServiceClasses {
            tcp: by_port(keys::TCP),
            udp: by_port(keys::UDP),
            table,
            icmp_in_service,
        }
    }

    /// The service key of a flow's protocol, destination port and ICMP type and code.
    #[inline]
    pub fn key(
        &self,
        protocol: u8,
        dst_port: Option<u16>,
        icmp_type: Option<u8>,
        icmp_code: Option<u8>,
    ) -> u32 {
        keys::flow_service_key(
            self.icmp_in_service,
            protocol,
            dst_port,
            icmp_type,
            icmp_code,
        )
    }

    /// The class of a flow's protocol, destination port and ICMP type and code.
    #[inline]
    pub fn lookup(
        &self,
        protocol: u8,
        dst_port: Option<u16>,
        icmp_type: Option<u8>,
        icmp_code: Option<u8>,
    ) -> u32 {
        let key = || self.key(protocol, dst_port, icmp_type, icmp_code);
        let direct = match protocol {
            keys::TCP => &self.tcp,
            keys::UDP => &self.udp,
            _ => return self.table.lookup(key()),
        };
        match direct.get(keys::port_key(dst_port) as usize) {
            Some(&class) => u32::from(class),
            None => self.table.lookup(key()),
        }
    }

    /// Number of classes.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn heap_bytes(&self) -> usize {
        self.table.heap_bytes() + (self.tcp.len() + self.udp.len()) * 2
    }
}

/// Every bound of `tables`, ascending, once.
fn union_of_bounds<K: Key>(tables: &[&IntervalTable<K>]) -> Vec<K> {
    let mut starts: Vec<K> = tables.iter().flat_map(|t| t.bounds()).collect();
    starts.sort_unstable();
    starts.dedup();
    starts
}

/// The snapshot's classes of the other address of a side, per family: the union of every
/// program's remote-address bounds (see [`RemoteField`](super::program::RemoteField)).
#[derive(Debug, Clone)]
pub(crate) struct RemoteClasses {
    pub v4: ClassTable<u32>,
    pub v6: ClassTable<u128>,
}

impl RemoteClasses {
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }
}

impl<K: Key> IntervalTable<K> {
    /// The value at zero, then at each of `starts` (ascending, a superset of the bounds): one
    /// merge pass, not a lookup per start.
    fn values_at_starts(&self, starts: &[K]) -> Box<[u32]> {
        let mut at = 0;
        let mut value = self.below;
        std::iter::once(self.below)
            .chain(starts.iter().map(|&start| {
                while let Some(&(bound, v)) = self.steps.get(at)
                    && bound <= start
                {
                    value = v;
                    at += 1;
                }
                value
            }))
            .collect()
    }
}

/// Exact lookup of single keys (endpoint addresses): open addressing with linear probing,
/// at most half full, so a lookup is one probe most of the time. The interval tables'
/// radix index suits spread-out bounds; endpoint addresses come in dense runs (a pod CIDR,
/// a host subnet) that would crowd a few of its buckets. Values sit in the slots, so a hit
/// costs one cache line.
#[derive(Debug, Clone)]
pub(crate) struct AddressIndex<K, V> {
    slots: Box<[Option<(K, V)>]>,
    /// `64 - log2(slots.len())`: the hash's high bits pick the slot.
    shift: u32,
}

impl<K: Key, V: Copy> AddressIndex<K, V> {
    /// From entries with distinct keys (a repeated key keeps its last value).
    pub fn new(entries: &[(K, V)]) -> AddressIndex<K, V> {
        let len = (entries.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![None; len].into_boxed_slice();
        let shift = 64 - len.trailing_zeros();
        for &(key, value) in entries {
            let mut i = slot_of(key, shift);
            while slots[i].is_some_and(|(k, _)| k != key) {
                i = (i + 1) & (len - 1);
            }
            slots[i] = Some((key, value));
        }
        AddressIndex { slots, shift }
    }

    /// The value of `key`.
    #[inline]
    pub fn lookup(&self, key: K) -> Option<&V> {
        let mask = self.slots.len() - 1;
        let mut i = slot_of(key, self.shift);
        // Terminates: at most half the slots are used, so an empty one is always reached.
        loop {
            match &self.slots[i] {
                None => return None,
                Some((k, value)) if *k == key => return Some(value),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Option<(K, V)>>()
    }
}

#[inline]
fn slot_of<K: Key>(key: K, shift: u32) -> usize {
    (key.mix() >> shift) as usize
}

/// The radix index over sorted `bounds`: (first bound, shift, bucket starts).
fn radix_index<K: Key>(bounds: &[K]) -> (K, u32, Box<[u32]>) {
    let (Some(&lo), Some(&hi)) = (bounds.first(), bounds.last()) else {
        return (K::ZERO, 0, vec![0, 0].into_boxed_slice());
    };
    let wanted = (bounds.len() * 2).next_power_of_two().min(MAX_BUCKETS);
    let shift = hi.bits_above(lo).saturating_sub(wanted.trailing_zeros());
    let count = hi.bucket(lo, shift, MAX_BUCKETS) + 1;
    let mut per_bucket = vec![0u32; count + 1];
    for &bound in bounds {
        per_bucket[bound.bucket(lo, shift, count - 1) + 1] += 1;
    }
    // Prefix sums: bucket b starts after the bounds of every bucket before it.
    for b in 1..per_bucket.len() {
        per_bucket[b] += per_bucket[b - 1];
    }
    (lo, shift, per_bucket.into_boxed_slice())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The value a naive scan gives.
    fn naive<K: Key>(breaks: &[(K, u32)], default: u32, key: K) -> u32 {
        breaks
            .iter()
            .rev()
            .find(|(start, _)| *start <= key)
            .map_or(default, |&(_, v)| v)
    }

    #[test]
    fn lookups_agree_with_a_scan_for_u32_tables() {
        let tables: Vec<Vec<(u32, u32)>> = vec![
            vec![],
            vec![(0, 7)],
            vec![(10, 1), (20, 2), (30, 1)],
            vec![(0, 5), (1, 6), (u32::MAX, 9)],
            // Clustered bounds plus an outlier: most buckets empty, one crowded.
            (0..500u32)
                .map(|i| (1000 + i * 3, i % 7))
                .chain([(4_000_000_000, 99)])
                .collect(),
            (1..3000u32).map(|i| (i * 1_400_000, i)).collect(),
        ];
        for breaks in &tables {
            let table = IntervalTable::from_breaks(breaks.iter().copied(), 42);
            let mut probes: Vec<u32> = vec![0, 1, u32::MAX, u32::MAX - 1];
            for &(start, _) in breaks {
                probes.extend([start, start.wrapping_sub(1), start.wrapping_add(1)]);
            }
            probes.extend((0..2000u32).map(|i| i.wrapping_mul(2_654_435_761)));
            for key in probes {
                assert_eq!(table.lookup(key), naive(breaks, 42, key), "key {key}");
            }
        }
    }

    #[test]
    fn lookups_agree_with_a_scan_for_u128_tables() {
        let base: u128 = 0x2001_0db8 << 96;
        let breaks: Vec<(u128, u32)> = (0..300u128)
            .map(|i| (base + (i << 80) + i * 17, (i % 5) as u32))
            .chain([(u128::MAX, 77)])
            .collect();
        let table = IntervalTable::from_breaks(breaks.iter().copied(), 3);
        let mut probes = vec![0, 1, base - 1, u128::MAX, u128::MAX - 1];
        for &(start, _) in &breaks {
            probes.extend([start, start - 1, start.wrapping_add(1)]);
        }
        for key in probes {
            assert_eq!(table.lookup(key), naive(&breaks, 3, key), "key {key:#x}");
        }
    }

    /// Bound counts on both sides of the radix index's sizes, spread out and packed against
    /// the top of the key space, probed at each bound, beside it, and at both ends.
    #[test]
    fn lookups_agree_with_a_scan_at_index_size_boundaries() {
        for count in [1u32, 2, 3, 7, 8, 9, 63, 64, 65, 511, 512, 513, 4_100] {
            let spread: Vec<(u32, u32)> = (1..=count).map(|i| (i * 1000, i % 5)).collect();
            let top: Vec<(u32, u32)> = (0..count).map(|i| (u32::MAX - i, i % 3)).rev().collect();
            for breaks in [spread, top] {
                let table = IntervalTable::from_breaks(breaks.iter().copied(), 9);
                let mut probes = vec![0, 1, u32::MAX, u32::MAX - 1];
                for &(start, _) in &breaks {
                    probes.extend([start, start.wrapping_sub(1), start.saturating_add(1)]);
                }
                for key in probes {
                    assert_eq!(
                        table.lookup(key),
                        naive(&breaks, 9, key),
                        "{count} bounds, key {key}"
                    );
                }
            }
        }
    }

    #[test]
    fn ipv6_lookups_agree_at_prefix_boundaries() {
        // Prefixes from /32 to /128 under 2001:db8::/32: each starts a value where it begins
        // and ends it where it stops.
        let base: u128 = 0x2001_0db8 << 96;
        let mut breaks: Vec<(u128, u32)> = Vec::new();
        for (i, len) in [32u32, 48, 64, 96, 112, 120, 127, 128]
            .into_iter()
            .enumerate()
        {
            let size = 1u128 << (128 - len);
            let start = base + (i as u128) * (1u128 << 80);
            breaks.push((start, i as u32 + 1));
            breaks.push((start + size, 0));
        }
        breaks.sort_unstable();
        breaks.dedup_by_key(|b| b.0);
        let table = IntervalTable::from_breaks(breaks.iter().copied(), 0);
        let mut probes = vec![0, u128::MAX, base - 1, base];
        for &(start, _) in &breaks {
            probes.extend([start, start - 1, start + 1]);
        }
        for key in probes {
            assert_eq!(table.lookup(key), naive(&breaks, 0, key), "key {key:#x}");
        }
    }

    #[test]
    fn address_index_finds_exactly_its_keys() {
        // Dense runs, as endpoint addresses come, plus scattered keys.
        let keys: Vec<u32> = (0..300u32)
            .map(|i| 0x0a01_0000 + i)
            .chain((0..300).map(|i| 0x0a02_0000 + i * 7919))
            .collect();
        let entries: Vec<(u32, u32)> = keys.iter().zip(1..).map(|(&k, v)| (k, v)).collect();
        let index = AddressIndex::new(&entries);
        for &(k, v) in &entries {
            assert_eq!(index.lookup(k), Some(&v));
        }
        let absent = (0..5000u32).map(|i| i.wrapping_mul(2_654_435_761));
        for k in absent.filter(|k| !keys.contains(k)) {
            assert_eq!(index.lookup(k), None, "{k:#x}");
        }
        let v6 = AddressIndex::new(&[(u128::MAX, 3), (1u128 << 64, 4), (0, 5)]);
        assert_eq!(
            [u128::MAX, 1 << 64, 0, 1].map(|k| v6.lookup(k).copied()),
            [Some(3), Some(4), Some(5), None]
        );
        assert_eq!(AddressIndex::<u32, u8>::new(&[]).lookup(0), None);
    }

    /// Service-shaped fields of several programs (protocol blocks, port ranges, the
    /// no-port key, ICMP): the snapshot's class of a (protocol, port) gives each program the
    /// bitset id its own table gives, at port 0 and 65535, at every range edge and beside
    /// it, for protocols without ports and for ICMP and ICMPv6.
    #[test]
    fn service_classes_give_each_program_its_own_tables_bitset() {
        use crate::compile::addrset::RangeSet;
        use crate::compile::bitset::build_field;
        use crate::compile::keys::{self, ICMP, ICMPV6, L4_MAX, service_key};

        let block = |p: u8| RangeSet::single(keys::protocol_base(p), keys::protocol_last(p));
        let ports = |p: u8, lo: u16, hi: u16| {
            RangeSet::single(service_key(p, Some(lo)), service_key(p, Some(hi)))
        };
        let programs: Vec<Vec<Option<RangeSet<u32>>>> = vec![
            // No service criterion at all: an inactive field.
            vec![None, None],
            vec![
                Some(ports(6, 80, 80)),
                Some(ports(6, 0, 1023).union(&ports(17, 53, 53))),
                Some(block(ICMP).union(&block(ICMPV6))),
                None,
                Some(ports(6, 65535, 65535)),
            ],
            vec![
                Some(ports(6, 443, 8443)),
                Some(ports(132, 0, 65535)),
                Some(block(47)),
                // notProtocol: TCP.
                Some(RangeSet::full(L4_MAX).minus(&block(6))),
                Some(ports(17, 1000, 2000).union(&ports(6, 81, 81))),
            ],
            (0..40u16)
                .map(|i| {
                    Some(ports(
                        if i % 2 == 0 { 6 } else { 17 },
                        i * 1500,
                        i * 1500 + 7,
                    ))
                })
                .collect(),
        ];
        let built: Vec<_> = programs
            .iter()
            .map(|sets| {
                let refs: Vec<Option<&RangeSet<u32>>> = sets.iter().map(Option::as_ref).collect();
                build_field(&refs, L4_MAX).1
            })
            .collect();
        let tables: Vec<&IntervalTable<u32>> = built.iter().collect();
        let (classes, by_class) = ClassTable::new(&tables);

        let mut distinct: Vec<u32> = tables.iter().flat_map(|t| t.bounds()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(classes.len(), distinct.len() + 1);

        let mut probes = vec![0, 1, L4_MAX, L4_MAX - 1];
        for p in [0u8, 1, 6, 17, 47, 58, 132, 255] {
            probes.extend([service_key(p, None), keys::protocol_last(p)]);
            probes.extend(
                [0u16, 1, 79, 80, 81, 1023, 1024, 65534, 65535]
                    .map(|port| service_key(p, Some(port))),
            );
        }
        for &bound in &distinct {
            probes.extend([bound - 1, bound, bound.saturating_add(1).min(L4_MAX)]);
        }
        for (p, table) in tables.iter().enumerate() {
            assert_eq!(by_class[p].len(), classes.len());
            for &key in &probes {
                let class = classes.lookup(key) as usize;
                assert_eq!(
                    by_class[p][class],
                    table.lookup(key),
                    "program {p}, key {key:#x}"
                );
            }
        }
        assert!(
            programs[1].len() > 1 && tables[1].intervals() > 5,
            "the tables under test must split the key space"
        );
    }

    /// Service classes of many port ranges take the direct arrays, few do not; either way
    /// every TCP and UDP port (and no port) gets the class table's class, and so do other
    /// protocols.
    #[test]
    fn service_classes_by_port_agree_with_the_class_table() {
        use crate::compile::addrset::RangeSet;
        use crate::compile::bitset::build_field;
        use crate::compile::keys::{L4_MAX, TCP, UDP, service_key};

        let ports = |p: u8, lo: u16, hi: u16| {
            RangeSet::single(service_key(p, Some(lo)), service_key(p, Some(hi)))
        };
        for (ranges, direct) in [(3000u32, true), (20, false)] {
            let sets: Vec<RangeSet<u32>> = (0..ranges)
                .map(|i| {
                    let lo = (i * 7919 % 65000) as u16;
                    let protocol = [TCP, UDP, 132][i as usize % 3];
                    ports(protocol, lo, lo + (i % 40) as u16)
                })
                .chain([ports(TCP, 0, 0), ports(UDP, 65535, 65535)])
                .collect();
            let refs: Vec<Option<&RangeSet<u32>>> = sets.iter().map(Some).collect();
            let (_, table) = build_field(&refs, L4_MAX);
            let (classes, _) = ClassTable::new(&[&table]);
            let service = ServiceClasses::new(classes.clone(), false);
            assert_eq!(!service.tcp.is_empty() && !service.udp.is_empty(), direct);
            let mut wrong = 0;
            for protocol in [0u8, 1, TCP, UDP, 58, 132, 255] {
                let port_list = std::iter::once(None).chain((0..=65535u16).map(Some));
                for port in port_list {
                    let want = classes.lookup(service_key(protocol, port));
                    wrong += usize::from(service.lookup(protocol, port, None, None) != want);
                }
            }
            assert_eq!(wrong, 0, "{ranges} ranges");
            assert!((service.len() >= DIRECT_SERVICE_MIN_CLASSES) == direct);
        }
    }

    #[test]
    fn class_table_of_no_tables_or_boundless_tables_has_one_class() {
        let flat = IntervalTable::<u32>::from_breaks([], 5);
        let (classes, by_class) = ClassTable::new(&[&flat, &flat]);
        assert_eq!(classes.len(), 1);
        assert_eq!([0, 7, u32::MAX].map(|k| classes.lookup(k)), [0; 3]);
        assert_eq!(by_class, vec![vec![5].into_boxed_slice(); 2]);
        let (none, per) = ClassTable::<u32>::new(&[]);
        assert_eq!((none.len(), per.len()), (1, 0));
    }

    #[test]
    fn neighbours_with_one_value_merge() {
        let table = IntervalTable::from_breaks([(0u32, 1), (5, 1), (9, 2), (12, 2), (20, 1)], 0);
        assert_eq!(table.intervals(), 3);
        assert_eq!([0, 8, 9, 19, 20].map(|k| table.lookup(k)), [1, 1, 2, 2, 1]);
    }
}
