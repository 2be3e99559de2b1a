//! The IP fragment tracker: the verdict of a datagram's first fragment, which alone carries
//! the ports policy needs, is remembered by (source, destination, protocol, IP id) and
//! applied to the datagram's later fragments (SPEC §A2).
//!
//! Fragments are not reassembled. What is refused instead:
//! - a later fragment whose first fragment was not seen (or was forgotten): Linux would
//!   queue it, but remembering unjudged data is what this tracker exists to avoid;
//! - a first fragment too short to hold its transport header (the tiny-fragment attack of
//!   RFC 1858), and an IPv4 TCP fragment at offset 8 bytes, which could rewrite the TCP
//!   flags of the first;
//! - overlapping fragments (RFC 5722 for IPv6; for IPv4 overlaps are how filters are
//!   evaded): the datagram is poisoned and every later fragment of it dropped;
//! - a fragment beyond the end the last fragment announced.
//!
//! Memory is capped at `fragmentTrackerMaxEntries` datagrams, sharded and allocated up front
//! like the connection table. A datagram is forgotten when all its bytes have been seen, or
//! [`ConntrackConfig::fragment_timeout`] after its first fragment (Linux's `ipfrag_time`,
//! 30 s, likewise not restarted by later fragments).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicUsize;

use parking_lot::Mutex;

use super::key::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE};
use super::table::Table;
use super::{
    ConntrackConfig, ConntrackError, Tick, build_shards, nanos, shard_count, sweep_shards,
};

const PROTO_SCTP: u8 = 132;

/// Byte ranges remembered per datagram. In-order fragments merge into one range, so this
/// only fills up when fragments arrive badly out of order.
const MAX_PIECES: usize = 6;

/// Slots searched for an expired datagram before a full shard refuses a new one.
const RECLAIM_SCAN: usize = 32;

/// What the tracker needs of one fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The upper-layer protocol (IPv4 protocol field, or the IPv6 next header after the
    /// fragment header).
    pub protocol: u8,
    /// IPv4 identification (16 bits) or IPv6 fragment identification (32 bits).
    pub id: u32,
    /// Where this fragment's data starts in the datagram's payload, in bytes.
    pub offset: u32,
    /// Payload bytes this fragment carries.
    pub len: u32,
    /// The more-fragments flag; false on the last fragment.
    pub more: bool,
}

/// What to do with a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentOutcome {
    /// The datagram's first fragment was allowed.
    Allow,
    /// The datagram's first fragment was denied by policy.
    Deny,
    /// Dropped by the tracker itself.
    Drop(FragmentDrop),
}

/// Why the tracker dropped a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentDrop {
    /// A later fragment with no remembered first fragment.
    NoFirstFragment,
    /// Overlaps bytes already seen (a repeated fragment included); poisons the datagram.
    Overlap,
    /// Lies past the end announced by the last fragment, or announces an end that
    /// contradicts one; poisons the datagram.
    PastEnd,
    /// Belongs to a datagram poisoned by an earlier fragment.
    Poisoned,
    /// Out of order beyond what is tracked per datagram; poisons the datagram.
    TooManyPieces,
    /// A first fragment while its shard of the tracker is full.
    TrackerFull,
    /// A first fragment too short to hold its transport header.
    TinyFirstFragment,
    /// An IPv4 TCP fragment at offset 8 bytes; poisons the datagram.
    TcpOffsetOne,
}

/// Counters, summed over shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Datagrams followed now.
    pub entries: u64,
    /// First fragments remembered.
    pub tracked: u64,
    /// Datagrams forgotten because all their bytes were seen.
    pub completed: u64,
    /// Datagrams forgotten at their timeout.
    pub expirations: u64,
    pub no_first_fragment: u64,
    pub overlaps: u64,
    pub past_end: u64,
    pub poisoned: u64,
    pub too_many_pieces: u64,
    pub tracker_full: u64,
    pub tiny_first_fragment: u64,
    pub tcp_offset_one: u64,
}

impl FragmentStats {
    fn add(&mut self, o: &FragmentStats) {
        self.entries += o.entries;
        self.tracked += o.tracked;
        self.completed += o.completed;
        self.expirations += o.expirations;
        self.no_first_fragment += o.no_first_fragment;
        self.overlaps += o.overlaps;
        self.past_end += o.past_end;
        self.poisoned += o.poisoned;
        self.too_many_pieces += o.too_many_pieces;
        self.tracker_full += o.tracker_full;
        self.tiny_first_fragment += o.tiny_first_fragment;
        self.tcp_offset_one += o.tcp_offset_one;
    }

    fn count(&mut self, reason: FragmentDrop) {
        let counter = match reason {
            FragmentDrop::NoFirstFragment => &mut self.no_first_fragment,
            FragmentDrop::Overlap => &mut self.overlaps,
            FragmentDrop::PastEnd => &mut self.past_end,
            FragmentDrop::Poisoned => &mut self.poisoned,
            FragmentDrop::TooManyPieces => &mut self.too_many_pieces,
            FragmentDrop::TrackerFull => &mut self.tracker_full,
            FragmentDrop::TinyFirstFragment => &mut self.tiny_first_fragment,
            FragmentDrop::TcpOffsetOne => &mut self.tcp_offset_one,
        };
        *counter += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DatagramKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
}

impl Default for DatagramKey {
    fn default() -> Self {
        DatagramKey {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            id: 0,
            protocol: 0,
        }
    }
}

/// Bytes `start..end` of the datagram's payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Piece {
    start: u32,
    end: u32,
}

impl Piece {
    fn overlaps(&self, other: &Piece) -> bool {
        self.start < other.end && other.start < self.end
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Datagram {
    expires: Tick,
    allowed: bool,
    poisoned: bool,
    count: u8,
    pieces: [Piece; MAX_PIECES],
    /// The end announced by the last fragment, once seen.
    total: Option<u32>,
}

impl Datagram {
    fn first(expires: Tick, allowed: bool, len: u32) -> Datagram {
        let mut datagram = Datagram {
            expires,
            allowed,
            ..Datagram::default()
        };
        if len > 0 {
            datagram.pieces[0] = Piece { start: 0, end: len };
            datagram.count = 1;
        }
        datagram
    }

    fn verdict(&self) -> FragmentOutcome {
        if self.allowed {
            FragmentOutcome::Allow
        } else {
            FragmentOutcome::Deny
        }
    }

    fn pieces(&self) -> &[Piece] {
        &self.pieces[..usize::from(self.count)]
    }

    /// Records `piece`; on a drop reason the caller poisons the datagram.
    fn add(&mut self, piece: Piece, last: bool) -> Result<(), FragmentDrop> {
        let past_end = match self.total {
            Some(total) => piece.end > total || (last && piece.end != total),
            None => last && self.pieces().iter().any(|p| p.end > piece.end),
        };
        if past_end {
            return Err(FragmentDrop::PastEnd);
        }
        if self.pieces().iter().any(|p| p.overlaps(&piece)) {
            return Err(FragmentDrop::Overlap);
        }
        if last {
            self.total = Some(piece.end);
        }
        if piece.start == piece.end {
            return Ok(());
        }
        self.merge(piece)
    }

    /// Inserts a non-overlapping piece, joining it to neighbours that touch it.
    fn merge(&mut self, piece: Piece) -> Result<(), FragmentDrop> {
        let mut merged = piece;
        let mut kept = [Piece::default(); MAX_PIECES];
        let mut count = 0;
        for p in self.pieces() {
            if p.end == merged.start {
                merged.start = p.start;
            } else if p.start == merged.end {
                merged.end = p.end;
            } else {
                kept[count] = *p;
                count += 1;
            }
        }
        if count == MAX_PIECES {
            return Err(FragmentDrop::TooManyPieces);
        }
        kept[count] = merged;
        self.pieces = kept;
        self.count = count as u8 + 1;
        Ok(())
    }

    fn is_complete(&self) -> bool {
        match (self.total, self.pieces()) {
            (Some(total), [only]) => only.start == 0 && only.end == total,
            _ => false,
        }
    }
}

/// Smallest first fragment that holds the transport header policy looks at.
fn min_first_fragment(protocol: u8) -> u32 {
    match protocol {
        PROTO_TCP => 20,
        PROTO_UDP | PROTO_UDPLITE | PROTO_ICMP | PROTO_ICMPV6 => 8,
        PROTO_SCTP => 12,
        _ => 0,
    }
}

#[derive(Debug)]
struct Shard {
    table: Table<DatagramKey, Datagram>,
    reclaim_cursor: usize,
    sweep_cursor: usize,
    stats: FragmentStats,
}

#[derive(Debug)]
#[repr(align(64))]
struct PaddedShard(Mutex<Shard>);

/// Follows fragmented datagrams. Share between workers by reference.
#[derive(Debug)]
pub struct FragmentTracker<S = RandomState> {
    shards: Box<[PaddedShard]>,
    shard_mask: usize,
    hasher: S,
    timeout: u64,
    /// The shard the sweeper resumes at.
    sweep_shard: AtomicUsize,
}

impl FragmentTracker<RandomState> {
    /// A tracker with a fresh random hash key. All its memory is allocated here.
    pub fn new(config: &ConntrackConfig) -> Result<Self, ConntrackError> {
        FragmentTracker::with_hasher(config, RandomState::new())
    }
}

impl<S: BuildHasher> FragmentTracker<S> {
    /// A tracker hashing with `hasher`, which must be randomly keyed outside benchmarks.
    pub fn with_hasher(config: &ConntrackConfig, hasher: S) -> Result<Self, ConntrackError> {
        let max = config.fragment_max_entries as usize;
        let count = shard_count(config.shards, max);
        let shards = build_shards(count, max, |table| {
            PaddedShard(Mutex::new(Shard {
                table,
                reclaim_cursor: 0,
                sweep_cursor: 0,
                stats: FragmentStats::default(),
            }))
        })?;
        Ok(FragmentTracker {
            shards,
            shard_mask: count - 1,
            hasher,
            timeout: nanos(config.fragment_timeout),
            sweep_shard: AtomicUsize::new(0),
        })
    }

    /// Remembers the verdict of a datagram's first fragment (offset 0) and returns what to
    /// do with that fragment: the verdict, or a drop.
    pub fn first(&self, frag: &Fragment, allowed: bool, now: Tick) -> FragmentOutcome {
        if frag.offset != 0 {
            return self.later(frag, now);
        }
        let key = key_of(frag);
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        let datagram = Datagram::first(now.after(self.timeout), allowed, frag.len);
        if !frag.more {
            // Offset 0 and no more fragments: not a fragment, nothing to remember.
            return datagram.verdict();
        }
        if frag.len < min_first_fragment(frag.protocol) {
            return shard.refuse(FragmentDrop::TinyFirstFragment);
        }
        if let Some(index) = shard.find_live(hash, &key, now) {
            // A second first fragment overlaps the first.
            return shard.poison(index, FragmentDrop::Overlap);
        }
        if shard.table.is_full() && !shard.reclaim(now) {
            return shard.refuse(FragmentDrop::TrackerFull);
        }
        if shard.table.insert(hash, key, datagram).is_none() {
            return shard.refuse(FragmentDrop::TrackerFull);
        }
        shard.stats.tracked += 1;
        datagram.verdict()
    }

    /// What to do with a fragment after the first (offset above 0).
    pub fn later(&self, frag: &Fragment, now: Tick) -> FragmentOutcome {
        let key = key_of(frag);
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        let found = shard.find_live(hash, &key, now);
        if frag.offset == 8 && frag.protocol == PROTO_TCP && frag.src.is_ipv4() {
            return match found {
                Some(index) => shard.poison(index, FragmentDrop::TcpOffsetOne),
                None => shard.refuse(FragmentDrop::TcpOffsetOne),
            };
        }
        let Some(index) = found else {
            return shard.refuse(FragmentDrop::NoFirstFragment);
        };
        let piece = Piece {
            start: frag.offset,
            end: frag.offset.saturating_add(frag.len),
        };
        let Some(datagram) = shard.table.value_mut(index) else {
            return shard.refuse(FragmentDrop::NoFirstFragment);
        };
        if datagram.poisoned {
            return shard.refuse(FragmentDrop::Poisoned);
        }
        if let Err(reason) = datagram.add(piece, !frag.more) {
            return shard.poison(index, reason);
        }
        let verdict = datagram.verdict();
        if datagram.is_complete() {
            shard.table.remove(index);
            shard.stats.completed += 1;
        }
        verdict
    }

    /// Forgets expired datagrams, examining at most `budget` slots; see
    /// [`super::Conntrack::sweep`].
    pub fn sweep(&self, now: Tick, budget: usize) -> usize {
        sweep_shards(
            &self.sweep_shard,
            self.shard_mask,
            budget,
            |index, chunk| {
                let mut guard = self.shards[index].0.lock();
                let shard = &mut *guard;
                let step = shard
                    .table
                    .sweep(&mut shard.sweep_cursor, chunk, |d| now >= d.expires);
                shard.stats.expirations += step.removed as u64;
                step
            },
        )
    }

    /// Datagrams followed now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().table.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> FragmentStats {
        let mut total = FragmentStats::default();
        for padded in self.shards.iter() {
            let shard = padded.0.lock();
            total.add(&shard.stats);
            total.entries += shard.table.len() as u64;
        }
        total
    }

    /// Bytes allocated for the tracker, all of it at construction.
    pub fn memory_bytes(&self) -> usize {
        let tables: usize = self
            .shards
            .iter()
            .map(|s| s.0.lock().table.memory_bytes())
            .sum();
        tables + std::mem::size_of_val(&*self.shards)
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // As in the connection table: bits the slot and tag do not use.
        &self.shards[(hash >> 32) as usize & self.shard_mask].0
    }
}

fn key_of(frag: &Fragment) -> DatagramKey {
    DatagramKey {
        src: frag.src,
        dst: frag.dst,
        id: frag.id,
        protocol: frag.protocol,
    }
}

impl Shard {
    fn find_live(&mut self, hash: u64, key: &DatagramKey, now: Tick) -> Option<usize> {
        let index = self.table.find(hash, key)?;
        let expired = self
            .table
            .slot(index)
            .is_none_or(|slot| now >= slot.value.expires);
        if expired {
            self.table.remove(index);
            self.stats.expirations += 1;
            return None;
        }
        Some(index)
    }

    fn refuse(&mut self, reason: FragmentDrop) -> FragmentOutcome {
        self.stats.count(reason);
        FragmentOutcome::Drop(reason)
    }

    /// Marks the datagram so that its remaining fragments are dropped until it expires.
    fn poison(&mut self, index: usize, reason: FragmentDrop) -> FragmentOutcome {
        if let Some(datagram) = self.table.value_mut(index) {
            datagram.poisoned = true;
        }
        self.refuse(reason)
    }

    /// Frees the first expired datagram among the next [`RECLAIM_SCAN`] slots.
    fn reclaim(&mut self, now: Tick) -> bool {
        let buckets = self.table.buckets();
        for step in 0..RECLAIM_SCAN.min(buckets) {
            let index = (self.reclaim_cursor + step) % buckets;
            if self
                .table
                .slot(index)
                .is_some_and(|s| now >= s.value.expires)
            {
                self.table.remove(index);
                self.stats.expirations += 1;
                self.reclaim_cursor = index;
                return true;
            }
        }
        self.reclaim_cursor = (self.reclaim_cursor + RECLAIM_SCAN) % buckets;
        false
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn tracker(max: u32, shards: usize) -> FragmentTracker {
        FragmentTracker::new(&ConntrackConfig {
            fragment_max_entries: max,
            shards: Some(shards),
            ..ConntrackConfig::default()
        })
        .unwrap()
    }

    fn frag(protocol: u8, id: u32, offset: u32, len: u32, more: bool) -> Fragment {
        Fragment {
            src: "192.0.2.1".parse().unwrap(),
            dst: "198.51.100.2".parse().unwrap(),
            protocol,
            id,
            offset,
            len,
            more,
        }
    }

    fn udp(id: u32, offset: u32, len: u32, more: bool) -> Fragment {
        frag(PROTO_UDP, id, offset, len, more)
    }

    #[derive(Debug, Clone, Copy)]
    enum Op {
        /// A first fragment with the policy verdict for it.
        First(bool),
        Later,
    }

    /// A datagram's fragments: what arrives, when (seconds), and what must happen.
    type Step = (Op, Fragment, u64, FragmentOutcome);

    #[test]
    fn fragments_follow_their_first() {
        use FragmentOutcome::{Allow, Deny, Drop};
        use Op::{First, Later};
        let cases: &[(&str, &[Step], usize)] = &[
            (
                "in order, then forgotten when complete",
                &[
                    (First(true), udp(1, 0, 1480, true), 0, Allow),
                    (Later, udp(1, 1480, 1480, true), 0, Allow),
                    (Later, udp(1, 2960, 100, false), 0, Allow),
                ],
                0,
            ),
            (
                "out of order after the first",
                &[
                    (First(true), udp(1, 0, 8, true), 0, Allow),
                    (Later, udp(1, 24, 8, false), 0, Allow),
                    (Later, udp(1, 16, 8, true), 0, Allow),
                    (Later, udp(1, 8, 8, true), 0, Allow),
                ],
                0,
            ),
            (
                "denied first, denied rest",
                &[
                    (First(false), udp(1, 0, 64, true), 0, Deny),
                    (Later, udp(1, 64, 64, false), 0, Deny),
                ],
                0,
            ),
            (
                "a later fragment without its first",
                &[
                    (
                        Later,
                        udp(1, 64, 64, false),
                        0,
                        Drop(FragmentDrop::NoFirstFragment),
                    ),
                    (First(true), udp(2, 0, 64, true), 0, Allow),
                    (
                        Later,
                        udp(3, 64, 64, false),
                        0,
                        Drop(FragmentDrop::NoFirstFragment),
                    ),
                ],
                1,
            ),
            (
                "overlap poisons the datagram",
                &[
                    (First(true), udp(1, 0, 64, true), 0, Allow),
                    (Later, udp(1, 56, 64, true), 0, Drop(FragmentDrop::Overlap)),
                    (
                        Later,
                        udp(1, 64, 64, false),
                        0,
                        Drop(FragmentDrop::Poisoned),
                    ),
                ],
                1,
            ),
            (
                "a repeated fragment overlaps",
                &[
                    (First(true), udp(1, 0, 64, true), 0, Allow),
                    (Later, udp(1, 64, 64, true), 0, Allow),
                    (Later, udp(1, 64, 64, true), 0, Drop(FragmentDrop::Overlap)),
                ],
                1,
            ),
            (
                "a second first fragment overlaps",
                &[
                    (First(true), udp(1, 0, 64, true), 0, Allow),
                    (
                        First(true),
                        udp(1, 0, 64, true),
                        0,
                        Drop(FragmentDrop::Overlap),
                    ),
                    (Later, udp(1, 64, 8, false), 0, Drop(FragmentDrop::Poisoned)),
                ],
                1,
            ),
            (
                "data past the announced end",
                &[
                    (First(true), udp(1, 0, 64, true), 0, Allow),
                    (Later, udp(1, 128, 64, false), 0, Allow),
                    (Later, udp(1, 192, 8, true), 0, Drop(FragmentDrop::PastEnd)),
                ],
                1,
            ),
            (
                "a last fragment ending before data already seen",
                &[
                    (First(true), udp(1, 0, 64, true), 0, Allow),
                    (Later, udp(1, 128, 64, true), 0, Allow),
                    (Later, udp(1, 64, 8, false), 0, Drop(FragmentDrop::PastEnd)),
                ],
                1,
            ),
            (
                "too many gaps to follow",
                &[
                    (First(true), udp(1, 0, 8, true), 0, Allow),
                    (Later, udp(1, 16, 8, true), 0, Allow),
                    (Later, udp(1, 32, 8, true), 0, Allow),
                    (Later, udp(1, 48, 8, true), 0, Allow),
                    (Later, udp(1, 64, 8, true), 0, Allow),
                    (Later, udp(1, 80, 8, true), 0, Allow),
                    (
                        Later,
                        udp(1, 96, 8, true),
                        0,
                        Drop(FragmentDrop::TooManyPieces),
                    ),
                    (Later, udp(1, 8, 8, true), 0, Drop(FragmentDrop::Poisoned)),
                ],
                1,
            ),
            (
                "filling a gap joins the pieces around it",
                &[
                    (First(true), udp(1, 0, 8, true), 0, Allow),
                    (Later, udp(1, 16, 8, true), 0, Allow),
                    (Later, udp(1, 32, 8, true), 0, Allow),
                    (Later, udp(1, 48, 8, true), 0, Allow),
                    (Later, udp(1, 64, 8, true), 0, Allow),
                    (Later, udp(1, 80, 8, true), 0, Allow),
                    (Later, udp(1, 8, 8, true), 0, Allow),
                    (Later, udp(1, 96, 8, true), 0, Allow),
                ],
                1,
            ),
            (
                "tiny first fragments",
                &[
                    (
                        First(true),
                        frag(PROTO_TCP, 1, 0, 16, true),
                        0,
                        Drop(FragmentDrop::TinyFirstFragment),
                    ),
                    (First(true), frag(PROTO_TCP, 2, 0, 20, true), 0, Allow),
                    (
                        First(true),
                        udp(3, 0, 4, true),
                        0,
                        Drop(FragmentDrop::TinyFirstFragment),
                    ),
                    (First(true), frag(47, 4, 0, 0, true), 0, Allow),
                ],
                2,
            ),
            (
                "IPv4 TCP at offset 8 rewrites the header",
                &[
                    (First(true), frag(PROTO_TCP, 1, 0, 24, true), 0, Allow),
                    (
                        Later,
                        frag(PROTO_TCP, 1, 8, 16, true),
                        0,
                        Drop(FragmentDrop::TcpOffsetOne),
                    ),
                    (
                        Later,
                        frag(PROTO_TCP, 1, 24, 8, false),
                        0,
                        Drop(FragmentDrop::Poisoned),
                    ),
                ],
                1,
            ),
            (
                "forgotten at the timeout, not before",
                &[
                    (First(true), udp(1, 0, 64, true), 0, Allow),
                    (Later, udp(1, 64, 64, true), 29, Allow),
                    (
                        Later,
                        udp(1, 128, 64, false),
                        30,
                        Drop(FragmentDrop::NoFirstFragment),
                    ),
                ],
                0,
            ),
            (
                "an unfragmented packet is not remembered, nor judged for size",
                &[
                    (First(false), udp(1, 0, 64, false), 0, Deny),
                    (First(true), udp(2, 0, 4, false), 0, Allow),
                ],
                0,
            ),
        ];
        for (name, steps, left) in cases {
            let tracker = tracker(16, 1);
            for (i, &(op, fragment, seconds, expected)) in steps.iter().enumerate() {
                let now = Tick(seconds * SECOND);
                let got = match op {
                    Op::First(allowed) => tracker.first(&fragment, allowed, now),
                    Op::Later => tracker.later(&fragment, now),
                };
                assert_eq!(got, expected, "{name}: step {i}");
            }
            assert_eq!(tracker.len(), *left, "{name}: datagrams left");
        }
    }

    #[test]
    fn the_offset_8_rule_is_ipv4_only() {
        let tracker = tracker(16, 1);
        let v6 = |offset, len, more| Fragment {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            ..frag(PROTO_TCP, 70_000, offset, len, more)
        };
        assert_eq!(
            tracker.later(&v6(8, 16, true), Tick(0)),
            FragmentOutcome::Drop(FragmentDrop::NoFirstFragment)
        );
        assert_eq!(
            tracker.first(&v6(0, 24, true), true, Tick(0)),
            FragmentOutcome::Allow
        );
        // Over the TCP header of the first: caught as an overlap.
        assert_eq!(
            tracker.later(&v6(8, 16, true), Tick(0)),
            FragmentOutcome::Drop(FragmentDrop::Overlap)
        );
        assert_eq!(tracker.stats().tcp_offset_one, 0);
    }

    #[test]
    fn a_full_tracker_drops_new_datagrams_and_counts_them() {
        let tracker = tracker(2, 1);
        let now = Tick(0);
        assert_eq!(
            tracker.first(&udp(1, 0, 8, true), true, now),
            FragmentOutcome::Allow
        );
        assert_eq!(
            tracker.first(&udp(2, 0, 8, true), true, now),
            FragmentOutcome::Allow
        );
        assert_eq!(
            tracker.first(&udp(3, 0, 8, true), true, now),
            FragmentOutcome::Drop(FragmentDrop::TrackerFull)
        );
        // The datagrams already followed are unaffected.
        assert_eq!(
            tracker.later(&udp(2, 8, 8, false), now),
            FragmentOutcome::Allow
        );
        assert_eq!(
            tracker.first(&udp(3, 0, 8, true), true, now),
            FragmentOutcome::Allow
        );
        // Expired datagrams make room without the sweeper.
        let later = Tick(31 * SECOND);
        assert_eq!(
            tracker.first(&udp(4, 0, 8, true), false, later),
            FragmentOutcome::Deny
        );
        let stats = tracker.stats();
        assert_eq!(stats.tracker_full, 1);
        assert_eq!(stats.tracked, 4);
        assert_eq!(stats.completed, 1);
        assert_eq!(stats.expirations, 1);
        assert_eq!(stats.entries, 2);
    }

    #[test]
    fn sweep_forgets_expired_datagrams_only() {
        let tracker = tracker(64, 4);
        for id in 0..10 {
            tracker.first(&udp(id, 0, 8, true), true, Tick(0));
        }
        for id in 10..15 {
            tracker.first(&udp(id, 0, 8, true), true, Tick(10 * SECOND));
        }
        assert_eq!(tracker.sweep(Tick(30 * SECOND - 1), usize::MAX), 0);
        assert_eq!(tracker.sweep(Tick(30 * SECOND), usize::MAX), 10);
        assert_eq!(tracker.len(), 5);
        assert_eq!(tracker.stats().expirations, 10);
    }

    #[test]
    fn the_tracker_never_exceeds_its_cap_and_memory_follows_it() {
        let tracker = tracker(100, 4);
        for id in 0..1000 {
            tracker.first(&udp(id, 0, 8, true), true, Tick(0));
        }
        assert!(tracker.len() <= 100);
        let stats = tracker.stats();
        assert_eq!(stats.tracked + stats.tracker_full, 1000);
        let per_datagram = tracker.memory_bytes() / 100;
        assert!(per_datagram < 200, "{per_datagram} bytes per datagram");
    }

    fn arbitrary_fragment() -> impl Strategy<Value = (Fragment, bool, bool, u64)> {
        (
            prop_oneof![
                Just(PROTO_TCP),
                Just(PROTO_UDP),
                Just(PROTO_ICMPV6),
                any::<u8>()
            ],
            0u32..4,
            prop_oneof![
                Just(0u32),
                0u32..64,
                (0u32..8).prop_map(|n| n * 8),
                any::<u32>()
            ],
            prop_oneof![0u32..48, any::<u32>()],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(0u64), 0..40 * SECOND],
        )
            .prop_map(
                |(protocol, id, offset, len, more, first, allowed, advance)| {
                    let fragment = Fragment {
                        offset: if first { 0 } else { offset },
                        ..frag(protocol, id, offset, len, more)
                    };
                    (fragment, first, allowed, advance)
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_fragments_never_panic_or_overfill(
            steps in proptest::collection::vec(arbitrary_fragment(), 1..200),
            max in 0u32..6,
        ) {
            let tracker = tracker(max, 2);
            let mut now = Tick(0);
            for (fragment, first, allowed, advance) in steps {
                now = now.after(advance);
                let outcome = if first {
                    tracker.first(&fragment, allowed, now)
                } else {
                    tracker.later(&fragment, now)
                };
                if first && fragment.more && outcome != FragmentOutcome::Drop(FragmentDrop::TrackerFull) {
                    prop_assert_ne!(outcome, FragmentOutcome::Drop(FragmentDrop::NoFirstFragment));
                }
                prop_assert!(tracker.len() <= max as usize);
                if advance > 30 * SECOND {
                    tracker.sweep(now, 5);
                }
            }
            let stats = tracker.stats();
            prop_assert_eq!(stats.entries, tracker.len() as u64);
            prop_assert_eq!(stats.tracked, stats.entries + stats.completed + stats.expirations);
        }
    }
}
