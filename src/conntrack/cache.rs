//! One worker's cache of steady connections: the packet path's answer for the next packet
//! of a connection it has just seen, without the shard lock and without the table's memory.
//!
//! Why: the table is allocated for its full capacity (21 MB by default), so a hit in it is a
//! random cache line and, at 4 KiB pages, a TLB miss; it also takes the shard's lock. The
//! cache is small ([`FlowCache::DEFAULT_SLOTS`] lines per worker, in sets of [`WAYS`]),
//! owned by one worker, and read without any lock.
//!
//! Why sets of [`WAYS`] lines with one line of tags per set: 10,000 flows in a
//! direct-mapped cache of 16,384 lines share a line for about 45% of them (birthday
//! collisions), and two flows that share a line and alternate evict each other on every
//! packet: such a miss costs the probe of the cache and the table's path and the refill, more
//! than the table alone. The more lines a set has, the fewer flows overflow it: in sets of
//! four, up to a quarter of 10,000 flows visited in turn (the worst order) did; in sets of
//! sixteen, under one in a hundred. But a set whose lines are searched one by one costs a
//! cache miss per line passed, so each set keeps the tags of its lines (32 bits of each
//! key's hash, 0 for an empty line) together in one 64-byte line of their own: a lookup
//! reads the set's tag line and then only the line whose tag matches, two lines at most
//! however many ways the set has, and a flow not in the cache costs the tag line alone.
//!
//! When a cached answer is trusted ([`crate::conntrack::Conntrack::lookup_cached`]):
//! - the packet cannot move its connection's state: a plain TCP ACK (no SYN, FIN or RST) of
//!   an established connection that has seen a reply, or a datagram or echo message of a
//!   pseudo-connection, unless it is the first reply of one that has not seen one;
//! - the shard's epoch is the one read when the line was filled. Every change to a shard
//!   other than an insert or a refreshed timer (a removal for any reason: expiry, sweep,
//!   eviction, revalidation, reopening; a TCP state change; a first reply) moves the epoch
//!   on, so a line filled before such a change is never trusted after it. The epoch is 32
//!   bits wide: a line is trusted for at most [`REFRESH_SLACK_NANOS`], and no shard changes
//!   2^32 times in a second;
//! - the table's timer was restarted less than [`REFRESH_SLACK_NANOS`] ago and has not run
//!   out. A trusted hit does not restart the timer (that would need the lock), so a busy
//!   connection's entry may expire up to that slack earlier than its last packet says, the
//!   tolerance Linux allows itself too (it skips timer refreshes of under a second). A packet
//!   after the slack takes the table's path, which restarts the timer and refills the line.
//!
//! Everything else takes the table's path, which refills the line when the connection is
//! steady after the packet.

use super::key::{ConnKey, Direction, Side};
use super::{FlowState, Lookup, Tick};
use crate::dataplane::memory::{LANES, equal_lanes};

/// How long after the table's timer was restarted a cached line may answer for it.
pub const REFRESH_SLACK_NANOS: u64 = 1_000_000_000;

/// Lines per set: as many as one 64-byte line of 32-bit tags names.
pub const WAYS: usize = LANES;

/// One cached connection, on its own cache line. Its tag is in its set's [`Tags`].
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
pub(super) struct CachedFlow {
    pub key: ConnKey,
    /// The earlier of the entry's expiry and its last timer restart plus the slack.
    pub trusted_until: Tick,
    pub epoch: u32,
    pub originator: Side,
    pub state: FlowState,
}

impl Default for CachedFlow {
    /// Filler for an empty line, which its [`EMPTY`] tag keeps from ever being compared.
    fn default() -> Self {
        CachedFlow {
            key: ConnKey::default(),
            trusted_until: Tick(0),
            epoch: 0,
            originator: Side::A,
            state: FlowState::Unreplied,
        }
    }
}

impl CachedFlow {
    /// The answer for a packet that cannot change the connection's state, sent from end
    /// `side` of `key`; `None` when the line cannot answer for it.
    #[inline]
    pub fn answer(&self, key: &ConnKey, side: Side, now: Tick, epoch: u32) -> Option<Lookup> {
        if self.epoch != epoch || now >= self.trusted_until || self.key != *key {
            return None;
        }
        let direction = Direction::of(side, self.originator);
        // The first reply of a pseudo-connection marks it replied: a change of state.
        if direction == Direction::Reply && self.state == FlowState::Unreplied {
            return None;
        }
        Some(Lookup::Established {
            state: self.state,
            direction,
        })
    }
}

/// The tags of one set's lines, way by way: [`EMPTY`] for a line that holds nothing.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Tags([u32; WAYS]);

/// The tag of a line that holds nothing; no hash has it (see [`tag_of`]).
const EMPTY: u32 = 0;

impl Tags {
    /// The ways whose tag is `tag`, one bit each (bit `way`), the whole set compared at once.
    #[inline]
    fn matching(&self, tag: u32) -> u32 {
        equal_lanes(&self.0, tag)
    }
}

/// The ways of a bit mask from [`Tags::matching`], lowest first.
#[inline]
fn ways(mut mask: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let way = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(way)
    })
}

/// A worker's cache; see the module documentation. Not shared: each worker owns one and
/// passes it by `&mut`.
#[derive(Debug)]
pub struct FlowCache {
    /// One per set.
    tags: Box<[Tags]>,
    /// [`WAYS`] per set, set after set.
    lines: Box<[CachedFlow]>,
    /// Sets − 1: the set count is a power of two.
    set_mask: usize,
}

/// The bits of a hash a line's tag keeps to tell keys apart before comparing them: the low
/// 32, never [`EMPTY`] (a hash whose low bits are 0 shares its tag with those ending in 1).
#[inline]
pub(super) fn tag_of(hash: u64) -> u32 {
    (hash as u32).max(1)
}

impl FlowCache {
    /// Lines per worker by default: 16,384 × 64 bytes = 1 MiB and 64 KiB of tags, within a
    /// core's L2 and 272 pages of TLB reach.
    pub const DEFAULT_SLOTS: usize = 16_384;

    /// A cache of `slots` lines, rounded up to a power of two of at least [`WAYS`].
    pub fn new(slots: usize) -> FlowCache {
        let count = slots.max(WAYS).next_power_of_two();
        let sets = count / WAYS;
        FlowCache {
            tags: vec![Tags::default(); sets].into_boxed_slice(),
            lines: vec![CachedFlow::default(); count].into_boxed_slice(),
            set_mask: sets - 1,
        }
    }

    /// The set a key with this hash uses. Bits 40 and up: the table's slot uses the low 32
    /// bits and the shard, at the usual counts of up to 256, bits 32 to 39, so one shard's
    /// keys spread over the whole cache.
    #[inline]
    fn set_of(&self, hash: u64) -> usize {
        (hash >> 40) as usize & self.set_mask
    }

    /// The line of way `way` in set `set`.
    #[inline]
    fn line_at(&self, set: usize, way: usize) -> Option<&CachedFlow> {
        self.lines.get(set * WAYS + way)
    }

    /// The way holding `key` (hashed to `hash`) in set `set`, if any.
    #[inline]
    fn way_of(&self, set: usize, hash: u64, key: &ConnKey) -> Option<usize> {
        let tags = self.tags.get(set)?;
        ways(tags.matching(tag_of(hash)))
            .find(|&way| self.line_at(set, way).is_some_and(|line| line.key == *key))
    }

    /// The line holding `key` (hashed to `hash`), if any.
    #[inline]
    pub(super) fn line(&self, hash: u64, key: &ConnKey) -> Option<&CachedFlow> {
        let set = self.set_of(hash);
        let way = self.way_of(set, hash, key)?;
        self.line_at(set, way)
    }

    /// Stores `flow` (its key hashed to `hash`) in its set: over its own key's line, else in
    /// an empty line, else over a line no longer trusted at `now`, else over the line the
    /// hash picks. (Not the oldest: flows visited in turn, more of them than the set has
    /// lines, would then evict each other on every packet; a victim fixed per key keeps some
    /// of them.)
    #[inline]
    pub(super) fn fill(&mut self, hash: u64, flow: CachedFlow, now: Tick) {
        let set = self.set_of(hash);
        let Some(tags) = self.tags.get(set) else {
            return;
        };
        let way = self
            .way_of(set, hash, &flow.key)
            .or_else(|| ways(tags.matching(EMPTY)).next())
            .or_else(|| {
                (0..WAYS).find(|&way| {
                    self.line_at(set, way)
                        .is_some_and(|line| now >= line.trusted_until)
                })
            })
            .unwrap_or((hash >> 36) as usize % WAYS);
        if let (Some(tag), Some(line)) = (
            self.tags.get_mut(set).and_then(|tags| tags.0.get_mut(way)),
            self.lines.get_mut(set * WAYS + way),
        ) {
            *tag = tag_of(hash);
            *line = flow;
        }
    }
}

impl Default for FlowCache {
    fn default() -> Self {
        FlowCache::new(FlowCache::DEFAULT_SLOTS)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn key(port: u16) -> ConnKey {
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
        ConnKey::ports(17, a, port, b, 53).0
    }

    /// A hash in set `set` (of a cache with more sets than that), told apart by `low`.
    fn hash(set: u64, low: u32) -> u64 {
        (set << 40) | u64::from(low)
    }

    fn flow(key: ConnKey, trusted_until: u64) -> CachedFlow {
        CachedFlow {
            key,
            trusted_until: Tick(trusted_until),
            epoch: 0,
            originator: Side::A,
            state: FlowState::Unreplied,
        }
    }

    #[test]
    fn a_line_and_a_set_of_tags_are_one_cache_line_each() {
        assert_eq!(std::mem::size_of::<CachedFlow>(), 64);
        assert_eq!(std::mem::align_of::<CachedFlow>(), 64);
        assert_eq!(std::mem::size_of::<Tags>(), 64);
        assert_eq!(std::mem::align_of::<Tags>(), 64);
    }

    #[test]
    fn matching_names_every_way_with_the_tag_and_no_other() {
        let mut tags = Tags::default();
        assert_eq!(tags.matching(EMPTY), ((1u64 << WAYS) - 1) as u32);
        tags.0[0] = 7;
        tags.0[5] = 7;
        tags.0[WAYS - 1] = 7;
        tags.0[6] = 8;
        let mask = tags.matching(7);
        assert_eq!(ways(mask).collect::<Vec<_>>(), vec![0, 5, WAYS - 1]);
        assert_eq!(ways(tags.matching(8)).collect::<Vec<_>>(), vec![6]);
        assert_eq!(tags.matching(9), 0);
        assert_eq!(ways(0).count(), 0);
    }

    #[test]
    fn a_hash_whose_tag_bits_are_zero_is_still_found() {
        let mut cache = FlowCache::new(64);
        let h = hash(1, 0);
        assert_ne!(tag_of(h), EMPTY);
        cache.fill(h, flow(key(1), 100), Tick(0));
        assert!(cache.line(h, &key(1)).is_some());
        // An empty line's filler key is never an answer, whatever is asked.
        assert!(cache.line(hash(2, 0), &ConnKey::default()).is_none());
    }

    #[test]
    fn a_full_set_with_every_line_trusted_gives_up_the_line_its_hash_picks() {
        let mut cache = FlowCache::new(64);
        let flows: Vec<(u64, ConnKey)> = (0..WAYS as u16)
            .map(|i| (hash(3, u32::from(i) + 1), key(1000 + i)))
            .collect();
        for &(h, k) in &flows {
            cache.fill(h, flow(k, 500), Tick(0));
        }
        // Bits 36 to 39 pick the victim: way 2, which holds the third flow.
        let newcomer = (3u64 << 40) | (2u64 << 36) | 99;
        cache.fill(newcomer, flow(key(99), 500), Tick(100));
        assert!(cache.line(newcomer, &key(99)).is_some());
        for (i, &(h, k)) in flows.iter().enumerate() {
            assert_eq!(cache.line(h, &k).is_some(), i != 2, "flow {i}");
        }
    }

    #[test]
    fn as_many_flows_as_a_set_has_lines_share_it() {
        let mut cache = FlowCache::new(64);
        let flows: Vec<(u64, ConnKey)> = (0..WAYS as u16)
            .map(|i| (hash(3, u32::from(i) + 1), key(1000 + i)))
            .collect();
        for &(h, k) in &flows {
            cache.fill(h, flow(k, 100), Tick(0));
        }
        for &(h, k) in &flows {
            assert_eq!(cache.line(h, &k).map(|line| line.key), Some(k));
        }
        // Another set is untouched.
        assert!(cache.line(hash(4, 1), &flows[0].1).is_none());
    }

    #[test]
    fn a_key_is_found_only_under_its_own_hash_and_key() {
        let mut cache = FlowCache::new(64);
        let h = hash(1, 7);
        cache.fill(h, flow(key(1), 100), Tick(0));
        assert!(cache.line(h, &key(2)).is_none(), "same hash, other key");
        assert!(
            cache.line(hash(1, 8), &key(1)).is_none(),
            "same set, other tag"
        );
        assert!(cache.line(h, &key(1)).is_some());
    }

    #[test]
    fn a_refill_replaces_the_key_own_line() {
        let mut cache = FlowCache::new(64);
        let h = hash(2, 1);
        cache.fill(h, flow(key(1), 100), Tick(0));
        cache.fill(h, flow(key(1), 200), Tick(0));
        for (i, port) in (2..=WAYS as u16).enumerate() {
            let other = hash(2, 10 + i as u32);
            cache.fill(other, flow(key(port), 100), Tick(0));
        }
        // All WAYS keys still fit: the refill did not take a second line.
        assert_eq!(
            cache.line(h, &key(1)).map(|l| l.trusted_until),
            Some(Tick(200))
        );
        for (i, port) in (2..=WAYS as u16).enumerate() {
            assert!(cache.line(hash(2, 10 + i as u32), &key(port)).is_some());
        }
    }

    #[test]
    fn a_full_set_gives_up_a_line_no_longer_trusted_first() {
        let mut cache = FlowCache::new(64);
        let stale = WAYS as u16 - 1;
        for i in 0..WAYS as u16 {
            let h = hash(5, u32::from(i) + 1);
            let until = if i == stale { 50 } else { 500 };
            cache.fill(h, flow(key(i), until), Tick(0));
        }
        let newcomer = hash(5, 99);
        cache.fill(newcomer, flow(key(99), 500), Tick(100));
        assert!(cache.line(newcomer, &key(99)).is_some());
        assert!(
            cache
                .line(hash(5, u32::from(stale) + 1), &key(stale))
                .is_none(),
            "the line past its trust went"
        );
        for i in 0..stale {
            assert!(cache.line(hash(5, u32::from(i) + 1), &key(i)).is_some());
        }
    }

    #[test]
    fn a_tiny_cache_still_has_one_whole_set() {
        let mut cache = FlowCache::new(1);
        let h = hash(9, 1);
        cache.fill(h, flow(key(1), 100), Tick(0));
        assert!(cache.line(h, &key(1)).is_some());
    }
}
