//! Sets of keys as sorted, disjoint inclusive ranges, and address sets built from them.
//!
//! Every field the classifier looks at is a key in a totally ordered space: IPv4 addresses as
//! `u32`, IPv6 addresses as `u128`, ports and protocol/ICMP combinations as `u32` (see
//! [`super::keys`]). What a rule accepts in one field is a [`RangeSet`] over that space; the
//! compiler intersects, subtracts and unites them here, once, so that the hot path only ever
//! looks a key up in a table built from them. Build-time code: nothing here runs per packet.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::IpAddr;

use ipnet::IpNet;

/// An unsigned key type: the ordered space a field's values live in.
pub(crate) trait Key: Copy + Ord + Eq + Hash + Debug + Send + Sync + 'static {
    const ZERO: Self;
    const MAX: Self;
    /// `self + 1`, or `None` at `MAX`.
    fn succ(self) -> Option<Self>;
    /// `self - 1`, or `None` at zero.
    fn pred(self) -> Option<Self>;
    /// Number of significant bits of `self - lo`; `self >= lo`.
    fn bits_above(self, lo: Self) -> u32;
    /// `((self - lo) >> shift)`, at most `last`; `self >= lo`.
    fn bucket(self, lo: Self, shift: u32, last: usize) -> usize;
    /// A well-mixed 64-bit hash (Fibonacci hashing: use the high bits).
    fn mix(self) -> u64;
}

/// 2^64 / φ: multiplying by it spreads neighbouring keys over the high bits.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

impl Key for u32 {
    const ZERO: u32 = 0;
    const MAX: u32 = u32::MAX;
    fn succ(self) -> Option<u32> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<u32> {
        self.checked_sub(1)
    }
    fn bits_above(self, lo: u32) -> u32 {
        u32::BITS - self.wrapping_sub(lo).leading_zeros()
    }
    #[inline]
    fn bucket(self, lo: u32, shift: u32, last: usize) -> usize {
        (self.wrapping_sub(lo).checked_shr(shift).unwrap_or(0) as usize).min(last)
    }
    #[inline]
    fn mix(self) -> u64 {
        u64::from(self).wrapping_mul(FIBONACCI)
    }
}

impl Key for u128 {
    const ZERO: u128 = 0;
    const MAX: u128 = u128::MAX;
    fn succ(self) -> Option<u128> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<u128> {
        self.checked_sub(1)
    }
    fn bits_above(self, lo: u128) -> u32 {
        u128::BITS - self.wrapping_sub(lo).leading_zeros()
    }
    #[inline]
    fn bucket(self, lo: u128, shift: u32, last: usize) -> usize {
        let d = self.wrapping_sub(lo).checked_shr(shift).unwrap_or(0);
        // Compare before narrowing: the offset of a key far above the table can exceed usize.
        if d >= last as u128 { last } else { d as usize }
    }
    #[inline]
    fn mix(self) -> u64 {
        let folded = (self as u64) ^ ((self >> 64) as u64).rotate_left(29);
        folded.wrapping_mul(FIBONACCI)
    }
}

/// A set of keys: sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct RangeSet<K> {
    ranges: Vec<(K, K)>,
}

impl<K: Key> RangeSet<K> {
    pub fn empty() -> RangeSet<K> {
        RangeSet { ranges: Vec::new() }
    }

    /// Every key from zero to `max`.
    pub fn full(max: K) -> RangeSet<K> {
        RangeSet {
            ranges: vec![(K::ZERO, max)],
        }
    }

    pub fn single(lo: K, hi: K) -> RangeSet<K> {
        RangeSet::from_ranges(vec![(lo, hi)])
    }

    /// The union of any inclusive ranges; ranges with `lo > hi` are ignored.
    pub fn from_ranges(mut ranges: Vec<(K, K)>) -> RangeSet<K> {
        ranges.retain(|(lo, hi)| lo <= hi);
        ranges.sort_unstable();
        let mut merged: Vec<(K, K)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                // Overlapping or adjacent: extend.
                Some(last) if last.1.succ().is_none_or(|next| lo <= next) => {
                    if hi > last.1 {
                        last.1 = hi;
                    }
                }
                _ => merged.push((lo, hi)),
            }
        }
        RangeSet { ranges: merged }
    }

    pub fn ranges(&self) -> &[(K, K)] {
        &self.ranges
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether the set holds every key from zero to `max`.
    pub fn is_full(&self, max: K) -> bool {
        matches!(self.ranges.as_slice(), [(lo, hi)] if *lo == K::ZERO && *hi >= max)
    }

    #[cfg(test)]
    pub fn contains(&self, key: K) -> bool {
        let i = self.ranges.partition_point(|&(lo, _)| lo <= key);
        i > 0 && self.ranges[i - 1].1 >= key
    }

    pub fn union(&self, other: &RangeSet<K>) -> RangeSet<K> {
        let mut all = Vec::with_capacity(self.ranges.len() + other.ranges.len());
        all.extend_from_slice(&self.ranges);
        all.extend_from_slice(&other.ranges);
        RangeSet::from_ranges(all)
    }

    pub fn intersect(&self, other: &RangeSet<K>) -> RangeSet<K> {
        let (a, b) = (&self.ranges, &other.ranges);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < a.len() && j < b.len() {
            let lo = a[i].0.max(b[j].0);
            let hi = a[i].1.min(b[j].1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a[i].1 < b[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        RangeSet { ranges: out }
    }

    /// The keys from zero to `max` that are not in the set.
    pub fn complement(&self, max: K) -> RangeSet<K> {
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut next = Some(K::ZERO);
        for &(lo, hi) in &self.ranges {
            if lo > max {
                break;
            }
            if let (Some(start), Some(end)) = (next, lo.pred())
                && start <= end
            {
                out.push((start, end));
            }
            next = hi.succ();
        }
        if let Some(start) = next
            && start <= max
        {
            out.push((start, max));
        }
        RangeSet { ranges: out }
    }

    /// The keys of `self` that are not in `other`.
    pub fn minus(&self, other: &RangeSet<K>) -> RangeSet<K> {
        self.intersect(&other.complement(K::MAX))
    }

    /// Each range with both ends mapped by `f`; a range whose ends do not map is dropped.
    pub fn map_ranges(&self, f: impl Fn(K) -> Option<K>) -> RangeSet<K> {
        RangeSet::from_ranges(
            self.ranges
                .iter()
                .filter_map(|&(lo, hi)| Some((f(lo)?, f(hi)?)))
                .collect(),
        )
    }
}

/// An address family, as an index into per-family arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    V4 = 0,
    V6 = 1,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        Family::of(net.addr())
    }
}

/// A set of IP addresses of both families.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct AddrSet {
    pub v4: RangeSet<u32>,
    pub v6: RangeSet<u128>,
}

impl AddrSet {
    pub fn full() -> AddrSet {
        AddrSet {
            v4: RangeSet::full(u32::MAX),
            v6: RangeSet::full(u128::MAX),
        }
    }

    /// The union of the networks.
    pub fn from_nets<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> AddrSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        AddrSet {
            v4: RangeSet::from_ranges(v4),
            v6: RangeSet::from_ranges(v6),
        }
    }

    pub fn intersect(&self, other: &AddrSet) -> AddrSet {
        AddrSet {
            v4: self.v4.intersect(&other.v4),
            v6: self.v6.intersect(&other.v6),
        }
    }

    pub fn minus(&self, other: &AddrSet) -> AddrSet {
        AddrSet {
            v4: self.v4.minus(&other.v4),
            v6: self.v6.minus(&other.v6),
        }
    }

    #[cfg(test)]
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.contains(u32::from(a)),
            IpAddr::V6(a) => self.v6.contains(u128::from(a)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn set(ranges: &[(u32, u32)]) -> RangeSet<u32> {
        RangeSet::from_ranges(ranges.to_vec())
    }

    /// Membership of every key 0..=40 (all sets in these tests live there).
    fn members(s: &RangeSet<u32>) -> Vec<u32> {
        (0..=40).filter(|&k| s.contains(k)).collect()
    }

    fn naive(s: &[(u32, u32)]) -> Vec<u32> {
        (0..=40)
            .filter(|&k| s.iter().any(|&(lo, hi)| lo <= k && k <= hi))
            .collect()
    }

    #[test]
    fn ranges_normalize_by_merging_overlaps_and_neighbours() {
        type Ranges = Vec<(u32, u32)>;
        let cases: Vec<(Ranges, Ranges)> = vec![
            (vec![(5, 7), (1, 2)], vec![(1, 2), (5, 7)]),
            (vec![(1, 3), (4, 6)], vec![(1, 6)]),
            (vec![(1, 10), (3, 4)], vec![(1, 10)]),
            (vec![(3, 1)], vec![]),
            (vec![(0, u32::MAX), (7, 9)], vec![(0, u32::MAX)]),
            (
                vec![(u32::MAX, u32::MAX), (0, 0)],
                vec![(0, 0), (u32::MAX, u32::MAX)],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                RangeSet::from_ranges(input.clone()).ranges(),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn set_algebra_agrees_with_membership() {
        let sets: Vec<Vec<(u32, u32)>> = vec![
            vec![],
            vec![(0, 40)],
            vec![(3, 9), (20, 25)],
            vec![(0, 0), (9, 21), (40, 40)],
            vec![(5, 5), (7, 30)],
        ];
        for a in &sets {
            for b in &sets {
                let (sa, sb) = (set(a), set(b));
                let (ma, mb) = (naive(a), naive(b));
                let union: Vec<u32> = (0..=40)
                    .filter(|k| ma.contains(k) || mb.contains(k))
                    .collect();
                let inter: Vec<u32> = ma.iter().copied().filter(|k| mb.contains(k)).collect();
                let minus: Vec<u32> = ma.iter().copied().filter(|k| !mb.contains(k)).collect();
                assert_eq!(members(&sa.union(&sb)), union, "{a:?} ∪ {b:?}");
                assert_eq!(members(&sa.intersect(&sb)), inter, "{a:?} ∩ {b:?}");
                assert_eq!(members(&sa.minus(&sb)), minus, "{a:?} - {b:?}");
            }
            let complement: Vec<u32> = (0..=40).filter(|k| !naive(a).contains(k)).collect();
            assert_eq!(members(&set(a).complement(40)), complement, "¬{a:?}");
        }
    }

    #[test]
    fn complement_handles_the_ends_of_the_key_space() {
        assert_eq!(
            RangeSet::<u32>::empty().complement(u32::MAX),
            RangeSet::full(u32::MAX)
        );
        assert!(RangeSet::full(u32::MAX).complement(u32::MAX).is_empty());
        assert_eq!(
            set(&[(0, 4), (u32::MAX - 1, u32::MAX)])
                .complement(u32::MAX)
                .ranges(),
            [(5, u32::MAX - 2)]
        );
        assert!(set(&[(0, 40)]).is_full(40));
        assert!(!set(&[(1, 40)]).is_full(40));
    }

    #[test]
    fn address_sets_from_networks() {
        let nets: Vec<IpNet> = ["192.0.2.0/25", "192.0.2.128/25", "2001:db8::/127"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let s = AddrSet::from_nets(&nets);
        assert_eq!(s.v4.ranges().len(), 1, "adjacent halves merge");
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert!(s.contains(ip("192.0.2.255")));
        assert!(!s.contains(ip("192.0.3.0")));
        assert!(s.contains(ip("2001:db8::1")));
        assert!(!s.contains(ip("2001:db8::2")));
        let rest = AddrSet::full().minus(&s);
        assert!(rest.contains(ip("192.0.3.0")) && !rest.contains(ip("192.0.2.7")));
        assert!(s.intersect(&rest).v4.is_empty() && s.intersect(&rest).v6.is_empty());
    }
}
