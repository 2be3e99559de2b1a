//! One worker's cache of steady connections: the packet path's answer for the next packet
//! of a connection it has just seen, without the shard lock and without the table's memory.
//!
//! Why: the table is allocated for its full capacity (21 MB by default), so a hit in it is a
//! random cache line and, at 4 KiB pages, a TLB miss; it also takes the shard's lock. The
//! cache is small (a direct-mapped array of [`FlowCache::DEFAULT_SLOTS`] lines per worker),
//! owned by one worker, and read without any lock.
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

/// How long after the table's timer was restarted a cached line may answer for it.
pub const REFRESH_SLACK_NANOS: u64 = 1_000_000_000;

/// One cached connection, on its own cache line.
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

/// A worker's cache; see the module documentation. Not shared: each worker owns one and
/// passes it by `&mut`.
#[derive(Debug)]
pub struct FlowCache {
    lines: Box<[Option<CachedFlow>]>,
    mask: usize,
}

impl FlowCache {
    /// Lines per worker by default: 16,384 × 64 bytes = 1 MiB, within a core's L2 and 256
    /// pages of TLB reach.
    pub const DEFAULT_SLOTS: usize = 16_384;

    /// A cache of `slots` lines, rounded up to a power of two (at least one).
    pub fn new(slots: usize) -> FlowCache {
        let count = slots.max(1).next_power_of_two();
        FlowCache {
            lines: vec![None; count].into_boxed_slice(),
            mask: count - 1,
        }
    }

    /// The line a key with this hash uses. Bits 40 and up: the table's slot uses the low 32
    /// bits and the shard, at the usual counts of up to 256, bits 32 to 39, so one shard's
    /// keys spread over the whole cache.
    #[inline]
    fn index(&self, hash: u64) -> usize {
        (hash >> 40) as usize & self.mask
    }

    #[inline]
    pub(super) fn line(&self, hash: u64) -> Option<&CachedFlow> {
        self.lines.get(self.index(hash))?.as_ref()
    }

    #[inline]
    pub(super) fn fill(&mut self, hash: u64, flow: CachedFlow) {
        let index = self.index(hash);
        if let Some(line) = self.lines.get_mut(index) {
            *line = Some(flow);
        }
    }
}

impl Default for FlowCache {
    fn default() -> Self {
        FlowCache::new(FlowCache::DEFAULT_SLOTS)
    }
}
