//! Connection tracking for the packet path: a sharded table of flows keyed so that both
//! directions of a connection find the same entry, per-protocol states and timeouts, bounded
//! capacity with eviction of never-replied entries, and a tracker for IP fragments.
//!
//! Nothing here reads a clock: every call takes `now` ([`Tick`]) as an argument, read once
//! per batch by the caller.
//!
//! How the packet path uses it, per packet (SPEC §A2):
//!
//! ```text
//! lookup(pkt, now) ─┬─ Established / Related ──► forward, no policy
//!                   ├─ New / NewMidStream ─────► policy; if allowed: insert(pkt, now, gen)
//!                   ├─ Stateless ──────────────► policy, nothing is tracked
//!                   └─ Invalid ────────────────► drop
//! ```
//!
//! A sweeper thread calls [`Conntrack::sweep`] with a budget to remove expired entries; a
//! lookup that meets an expired entry removes it too, so correctness never waits on the
//! sweeper. On reload with `revalidateOnReload`, [`Conntrack::revalidate`] re-judges every
//! entry against the new policy.
//!
//! Locking: N shards, each a `parking_lot::Mutex` around a fixed-capacity open-addressing
//! table (`table.rs`, a 64-byte slot and a 1-byte tag per slot, 1.25 slots per entry: 81
//! bytes per entry, all allocated at construction; each slot on its own cache line; all
//! shards' slots in one mapping on 2 MiB pages where the kernel gives them,
//! `dataplane::memory`, so that a hit is not also a TLB miss). A call
//! locks exactly one shard once and never holds a lock across packets. The key is hashed
//! once with a randomly keyed hasher (a folded multiply under secret words drawn per table,
//! `hash.rs`; SipHash cost as much as the rest of a hit) and that hash picks both the shard
//! and the slot, so keys chosen to collide under a known hash gain an attacker nothing.
//!
//! Workers' caches: the packet path calls [`Conntrack::lookup_cached`] with its own
//! [`FlowCache`], which answers a packet that cannot change its connection's state (a plain
//! ACK of an established TCP connection, a datagram) without the lock or the table's memory,
//! as long as the shard's epoch says nothing was removed or changed state since the line
//! was filled, and for at most a second after the table last restarted the entry's timer
//! (`cache.rs`). Every `ShardGuard` moves the epoch on at release when its shard changed.
//!
//! Capacity (SPEC §A2): each shard holds `max_entries / shards`. A full shard frees the slot
//! of an expired entry if one is near, else evicts a never-replied entry, else refuses the
//! new connection ([`InsertError::Full`], counted). Entries that have seen a reply are never
//! evicted.

mod cache;
mod config;
mod fragments;
mod hash;
mod key;
mod table;
mod tcp;

use std::hash::BuildHasher;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};

pub use cache::{FlowCache, REFRESH_SLACK_NANOS};
pub use config::{ConntrackConfig, DEFAULT_FRAGMENT_TIMEOUT, Timeouts};
pub use fragments::{Fragment, FragmentDrop, FragmentOutcome, FragmentStats, FragmentTracker};
pub use hash::{FlowHashBuilder, FoldHasher};
pub use key::{ConnFlow, ConnKey, ConnPacket, Direction, IcmpInfo, InnerPacket, Side};
pub use tcp::TcpState;

use cache::CachedFlow;
use key::{Class, FlowPacket, PROTO_ICMP, PROTO_ICMPV6, PROTO_UDP, PROTO_UDPLITE};
use table::{SweepStep, Table};
use tcp::{Step, TcpEvent, TcpProgress};

/// A reading of a monotonic clock in nanoseconds. Only differences matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tick(pub u64);

impl Tick {
    pub const fn from_nanos(nanos: u64) -> Tick {
        Tick(nanos)
    }

    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// The tick `nanos` later, saturating: a timeout of centuries never wraps to the past.
    pub const fn after(self, nanos: u64) -> Tick {
        Tick(self.0.saturating_add(nanos))
    }
}

/// Where a tracked connection stands, as reported by a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    Tcp(TcpState),
    /// A UDP, echo or other pseudo-connection that has not seen a reply yet.
    Unreplied,
    /// A UDP, echo or other pseudo-connection that has seen a reply.
    Replied,
}

/// Why a packet is invalid for connection tracking (and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// A TCP flag combination no stack sends (SYN+FIN, no flags, FIN without ACK, ...).
    TcpFlags,
    /// A TCP segment that cannot start a connection (RST, SYN-ACK, FIN, or any non-SYN when
    /// loose pickup is off) and belongs to none.
    TcpNoConnection,
    /// A TCP segment impossible in its connection's state (a SYN-ACK from the originator,
    /// an ACK before the SYN-ACK, ...).
    TcpOutOfState,
}

/// What the table says about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Belongs to a tracked connection: forward without policy. Despite the name this
    /// includes a UDP flow's second packet before any reply, as the entry exists because
    /// policy admitted the flow.
    Established {
        state: FlowState,
        direction: Direction,
    },
    /// An ICMP error about a tracked connection, travelling in `direction` of it: forward
    /// without policy. Nothing is created or refreshed.
    Related { direction: Direction },
    /// The first packet of a connection: judge by policy, then [`Conntrack::insert`] if
    /// allowed.
    New,
    /// A TCP segment of a connection not in the table, with loose pickup on: judge by policy
    /// like a new connection; if allowed, [`Conntrack::insert`] picks it up as established.
    NewMidStream,
    /// Not tracked (ICMP types other than echo, errors about nothing tracked, an echo reply
    /// without a request): judge by policy packet by packet and do not insert.
    Stateless,
    /// Drop.
    Invalid(InvalidReason),
}

/// Why [`Conntrack::insert`] stored nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// The shard is full of connections that have seen replies: the new connection is
    /// dropped (counted in [`ConntrackStats::insert_failures`]).
    #[error("connection table full")]
    Full,
    /// The packet cannot open a connection: its lookup did not say `New` or `NewMidStream`.
    #[error("packet cannot open a connection")]
    NotTrackable,
}

/// Why a table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConntrackError {
    #[error("cannot allocate about {bytes} bytes for a table of {entries} entries")]
    OutOfMemory { entries: usize, bytes: usize },
}

/// One connection as [`Conntrack::peek`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryInfo {
    pub flow: ConnFlow,
    pub state: FlowState,
    pub expires: Tick,
    /// Low 32 bits of the policy generation that admitted it, or that last revalidated it.
    pub generation: u32,
}

/// Counters, summed over shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackStats {
    /// Entries in the table now.
    pub entries: u64,
    pub inserts: u64,
    /// Never-replied entries removed to make room.
    pub evictions: u64,
    /// New connections refused because their shard was full.
    pub insert_failures: u64,
    /// Entries removed because they timed out (by the sweeper, or met by a packet).
    pub expirations: u64,
    /// Entries removed by [`Conntrack::revalidate`].
    pub revalidation_drops: u64,
    /// Finished TCP connections (TIME_WAIT, CLOSE) removed because a SYN reopened them.
    pub reopens: u64,
}

impl ConntrackStats {
    fn add(&mut self, other: &ConntrackStats) {
        self.entries += other.entries;
        self.inserts += other.inserts;
        self.evictions += other.evictions;
        self.insert_failures += other.insert_failures;
        self.expirations += other.expirations;
        self.revalidation_drops += other.revalidation_drops;
        self.reopens += other.reopens;
    }
}

/// The stored state of one connection: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    expires: Tick,
    generation: u32,
    originator: Side,
    replied: bool,
    tcp: Option<TcpProgress>,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            expires: Tick(0),
            generation: 0,
            originator: Side::A,
            replied: false,
            tcp: None,
        }
    }
}

impl Entry {
    fn is_expired(&self, now: Tick) -> bool {
        now >= self.expires
    }

    fn state(&self) -> FlowState {
        match (self.tcp, self.replied) {
            (Some(tcp), _) => FlowState::Tcp(tcp.state),
            (None, false) => FlowState::Unreplied,
            (None, true) => FlowState::Replied,
        }
    }
}

/// Timeouts in nanoseconds, converted once.
#[derive(Debug, Clone, Copy)]
struct TimeoutNanos {
    tcp_syn_sent: u64,
    tcp_established: u64,
    tcp_fin_wait: u64,
    tcp_close_wait: u64,
    tcp_time_wait: u64,
    tcp_close: u64,
    udp_unreplied: u64,
    udp_replied: u64,
    icmp: u64,
    other: u64,
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl TimeoutNanos {
    fn new(t: &Timeouts) -> Self {
        TimeoutNanos {
            tcp_syn_sent: nanos(t.tcp_syn_sent),
            tcp_established: nanos(t.tcp_established),
            tcp_fin_wait: nanos(t.tcp_fin_wait),
            tcp_close_wait: nanos(t.tcp_close_wait),
            tcp_time_wait: nanos(t.tcp_time_wait),
            tcp_close: nanos(t.tcp_close),
            udp_unreplied: nanos(t.udp_unreplied),
            udp_replied: nanos(t.udp_replied),
            icmp: nanos(t.icmp),
            other: nanos(t.other),
        }
    }

    /// The idle timeout of an entry in its current state.
    fn of(&self, protocol: u8, entry: &Entry) -> u64 {
        if let Some(tcp) = entry.tcp {
            return match tcp.state {
                TcpState::SynSent | TcpState::SynRecv => self.tcp_syn_sent,
                // A connection picked up mid-stream is half-open until the other side
                // speaks; it does not get five days on the word of one side.
                TcpState::Established if !entry.replied => self.tcp_syn_sent,
                TcpState::Established => self.tcp_established,
                TcpState::FinWait => self.tcp_fin_wait,
                TcpState::CloseWait => self.tcp_close_wait,
                TcpState::TimeWait => self.tcp_time_wait,
                TcpState::Close => self.tcp_close,
            };
        }
        match (protocol, entry.replied) {
            (PROTO_UDP | PROTO_UDPLITE, false) => self.udp_unreplied,
            (PROTO_UDP | PROTO_UDPLITE, true) => self.udp_replied,
            (PROTO_ICMP | PROTO_ICMPV6, _) => self.icmp,
            _ => self.other,
        }
    }
}

/// How many slots each eviction window looks at for a victim.
const EVICTION_SCAN: usize = 32;

/// Slots the sweeper examines per lock hold, so that a large budget does not stall a
/// shard's packets.
const SLOTS_PER_LOCK: usize = 1024;

/// Shards chosen automatically: enough that workers rarely meet on one lock, few enough
/// that each shard holds a useful number of entries.
const MAX_AUTO_SHARDS: usize = 256;
const MIN_ENTRIES_PER_AUTO_SHARD: usize = 256;
const MAX_SHARDS: usize = 1 << 16;

#[derive(Debug)]
struct Shard {
    table: Table<ConnKey, Entry>,
    /// Something changed that a worker's cached line may not outlive (see `cache.rs`): the
    /// epoch moves on when the lock is released.
    dirty: bool,
    /// Where the fallback eviction search starts: a hand that moves on each time, so that
    /// repeated searches cover the whole table.
    evict_cursor: usize,
    /// Where the sweeper resumes in this shard.
    sweep_cursor: usize,
    stats: ConntrackStats,
}

/// A shard on its own cache line, so that two workers locking neighbouring shards do not
/// contend for one line, with the epoch workers' caches check their lines against.
#[derive(Debug)]
#[repr(align(64))]
struct PaddedShard {
    shard: Mutex<Shard>,
    /// Moved on, under the lock, after every change a cached line may not outlive; read
    /// without the lock by [`Conntrack::lookup_cached`].
    epoch: AtomicU32,
}

impl PaddedShard {
    fn new(shard: Shard) -> PaddedShard {
        PaddedShard {
            shard: Mutex::new(shard),
            epoch: AtomicU32::new(0),
        }
    }

    fn lock(&self) -> ShardGuard<'_> {
        ShardGuard {
            shard: self.shard.lock(),
            epoch: &self.epoch,
        }
    }
}

/// A locked shard. Releasing it publishes its changes to the epoch, so no path that changes
/// a shard can forget to.
struct ShardGuard<'a> {
    shard: MutexGuard<'a, Shard>,
    epoch: &'a AtomicU32,
}

impl ShardGuard<'_> {
    /// Moves the epoch on if the shard changed; returns the epoch.
    fn publish(&mut self) -> u32 {
        if self.shard.dirty {
            self.shard.dirty = false;
            // Release: a worker that reads the new epoch also sees that its line is stale;
            // one that reads the old epoch answers as if before the change.
            self.epoch.fetch_add(1, Ordering::Release);
        }
        self.epoch.load(Ordering::Relaxed)
    }
}

impl Drop for ShardGuard<'_> {
    fn drop(&mut self) {
        // Still under the lock: fields are dropped after this body.
        self.publish();
    }
}

impl Deref for ShardGuard<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        &self.shard
    }
}

impl DerefMut for ShardGuard<'_> {
    fn deref_mut(&mut self) -> &mut Shard {
        &mut self.shard
    }
}

/// The connection table. Share it between workers by reference (`&Conntrack` or `Arc`).
#[derive(Debug)]
pub struct Conntrack<S = FlowHashBuilder> {
    shards: Box<[PaddedShard]>,
    shard_mask: usize,
    hasher: S,
    timeouts: TimeoutNanos,
    loose_pickup: bool,
    max_entries: usize,
    /// The shard the sweeper resumes at.
    sweep_shard: AtomicUsize,
}

impl Conntrack<FlowHashBuilder> {
    /// A table with a fresh random hash key. All its memory is allocated here.
    pub fn new(config: &ConntrackConfig) -> Result<Self, ConntrackError> {
        Conntrack::with_hasher(config, FlowHashBuilder::new())
    }
}

impl<S: BuildHasher> Conntrack<S> {
    /// A table hashing with `hasher`, which must be randomly keyed outside benchmarks.
    pub fn with_hasher(config: &ConntrackConfig, hasher: S) -> Result<Self, ConntrackError> {
        let max_entries = config.max_entries as usize;
        let count = shard_count(config.shards, max_entries);
        let shards = build_shards(count, max_entries, |table| {
            PaddedShard::new(Shard {
                table,
                dirty: false,
                evict_cursor: 0,
                sweep_cursor: 0,
                stats: ConntrackStats::default(),
            })
        })?;
        Ok(Conntrack {
            shards,
            shard_mask: count - 1,
            hasher,
            timeouts: TimeoutNanos::new(&config.timeouts),
            loose_pickup: config.tcp_loose_pickup,
            max_entries,
            sweep_shard: AtomicUsize::new(0),
        })
    }

    /// Classifies a packet against the table and, for a packet of a tracked connection,
    /// moves its state on and restarts its idle timer.
    pub fn lookup(&self, pkt: &ConnPacket, now: Tick) -> Lookup {
        match key::classify(pkt) {
            Class::Flow { key, side, packet } => self.lookup_flow(&key, side, packet, now),
            Class::Error { key, side } => self.lookup_related(&key, side, now),
            Class::Stateless => Lookup::Stateless,
            Class::BadTcpFlags => Lookup::Invalid(InvalidReason::TcpFlags),
        }
    }

    /// Records a connection that policy admitted; `generation` is that policy's. The packet
    /// is the one whose lookup said `New` or `NewMidStream`. If another worker inserted the
    /// same connection meanwhile, that entry stays and this is a success.
    pub fn insert(&self, pkt: &ConnPacket, now: Tick, generation: u64) -> Result<(), InsertError> {
        let Class::Flow { key, side, packet } = key::classify(pkt) else {
            return Err(InsertError::NotTrackable);
        };
        let tcp = match packet {
            FlowPacket::Tcp(TcpEvent::Syn) => Some(TcpProgress::new(TcpState::SynSent)),
            FlowPacket::Tcp(TcpEvent::Ack) if self.loose_pickup => {
                Some(TcpProgress::new(TcpState::Established))
            }
            FlowPacket::Datagram | FlowPacket::EchoRequest => None,
            FlowPacket::Tcp(_) | FlowPacket::EchoReply => return Err(InsertError::NotTrackable),
        };
        let mut entry = Entry {
            expires: now,
            // Low bits only: revalidation compares for equality, and 2^32 reloads apart
            // is no concern.
            generation: generation as u32,
            originator: side,
            replied: false,
            tcp,
        };
        entry.expires = now.after(self.timeouts.of(key.protocol(), &entry));

        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        if shard.find_live(hash, &key, now).is_some() {
            return Ok(());
        }
        if shard.table.is_full() && !shard.make_room(hash, now) {
            shard.stats.insert_failures += 1;
            return Err(InsertError::Full);
        }
        match shard.table.insert(hash, key, entry) {
            Some(_) => {
                shard.stats.inserts += 1;
                Ok(())
            }
            None => {
                shard.stats.insert_failures += 1;
                Err(InsertError::Full)
            }
        }
    }

    /// The entry a packet belongs to, without touching it.
    pub fn peek(&self, pkt: &ConnPacket, now: Tick) -> Option<EntryInfo> {
        let Class::Flow { key, .. } = key::classify(pkt) else {
            return None;
        };
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash).lock();
        let index = shard.table.find(hash, &key)?;
        let slot = shard.table.slot(index)?;
        let entry = &slot.value;
        (!entry.is_expired(now)).then(|| EntryInfo {
            flow: key.flow(entry.originator),
            state: entry.state(),
            expires: entry.expires,
            generation: entry.generation,
        })
    }

    /// Removes expired entries, examining at most `budget` table slots (empty or not),
    /// resuming where the previous call stopped and moving on shard by shard. Returns the
    /// number removed. A pass over every slot costs about `max_entries × 1.25` of budget.
    pub fn sweep(&self, now: Tick, budget: usize) -> usize {
        sweep_shards(
            &self.sweep_shard,
            self.shard_mask,
            budget,
            |index, chunk| {
                let mut guard = self.shards[index].lock();
                let shard = &mut *guard.shard;
                let step = shard.table.sweep(&mut shard.sweep_cursor, chunk, |entry| {
                    entry.is_expired(now)
                });
                shard.stats.expirations += step.removed as u64;
                shard.dirty |= step.removed > 0;
                step
            },
        )
    }

    /// Re-judges every entry not yet judged under `generation`: `keep` receives each
    /// connection as its first packet saw it; entries it refuses are removed, the others are
    /// stamped with `generation` and skipped by later calls for it. Returns the number
    /// removed.
    ///
    /// Each shard stays locked for its whole pass (one policy decision per entry), so that
    /// no entry can move past the pass while it runs. Accepted race: a worker still on the
    /// previous policy may insert a connection into a shard this call has already passed;
    /// it keeps the old generation and is caught by the next call.
    pub fn revalidate(
        &self,
        now: Tick,
        generation: u64,
        keep: impl Fn(&ConnFlow) -> bool,
    ) -> usize {
        let generation = generation as u32;
        self.shards
            .iter()
            .map(|padded| padded.lock().revalidate(now, generation, &keep))
            .sum()
    }

    /// Entries in the table now (locks each shard in turn).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().table.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured maximum, which the table never exceeds.
    pub fn capacity(&self) -> usize {
        self.max_entries
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Counters summed over shards. Each shard's counters are plain integers under its
    /// lock, which is held anyway when they change; this locks each shard in turn.
    pub fn stats(&self) -> ConntrackStats {
        let mut total = ConntrackStats::default();
        for padded in self.shards.iter() {
            let shard = padded.lock();
            total.add(&shard.stats);
            total.entries += shard.table.len() as u64;
        }
        total
    }

    /// Bytes allocated for the table, all of it at construction.
    pub fn memory_bytes(&self) -> usize {
        let tables: usize = self
            .shards
            .iter()
            .map(|s| s.lock().table.memory_bytes())
            .sum();
        tables + std::mem::size_of_val(&*self.shards)
    }

    fn shard(&self, hash: u64) -> &PaddedShard {
        // Bits 32 and up: the table's slot uses the low 32 bits and its tag the top 7, so
        // the shard choice does not bias either within a shard.
        &self.shards[(hash >> 32) as usize & self.shard_mask]
    }

    fn lookup_flow(&self, key: &ConnKey, side: Side, packet: FlowPacket, now: Tick) -> Lookup {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        match shard.find_live(hash, key, now) {
            Some(index) => self.advance(&mut shard, index, key.protocol(), side, packet, now),
            None => self.first_packet(packet),
        }
    }

    /// What a packet with no entry is.
    fn first_packet(&self, packet: FlowPacket) -> Lookup {
        match packet {
            FlowPacket::Tcp(TcpEvent::Syn) => Lookup::New,
            // Linux's loose mode picks up only plain ACK segments (with or without data):
            // a stray FIN, RST or SYN-ACK opens nothing.
            FlowPacket::Tcp(TcpEvent::Ack) if self.loose_pickup => Lookup::NewMidStream,
            FlowPacket::Tcp(_) => Lookup::Invalid(InvalidReason::TcpNoConnection),
            FlowPacket::Datagram | FlowPacket::EchoRequest => Lookup::New,
            FlowPacket::EchoReply => Lookup::Stateless,
        }
    }

    /// Moves a tracked connection on by one packet.
    fn advance(
        &self,
        shard: &mut Shard,
        index: usize,
        protocol: u8,
        side: Side,
        packet: FlowPacket,
        now: Tick,
    ) -> Lookup {
        let Some(entry) = shard.table.value_mut(index) else {
            return self.first_packet(packet);
        };
        let before = entry.state();
        let direction = Direction::of(side, entry.originator);
        let step = match (packet, entry.tcp.as_mut()) {
            (FlowPacket::Tcp(event), Some(progress)) => tcp::advance(progress, event, direction),
            // The protocol is part of the key, so a TCP entry only ever meets TCP segments.
            (FlowPacket::Tcp(_), None) | (_, Some(_)) => Step::Invalid,
            // Echo keys put the requester at end A, so requests are always original and
            // replies always replies.
            (_, None) => Step::Accepted,
        };
        let answer = match step {
            Step::Accepted => {
                if direction == Direction::Reply {
                    entry.replied = true;
                }
                entry.expires = now.after(self.timeouts.of(protocol, entry));
                Lookup::Established {
                    state: entry.state(),
                    direction,
                }
            }
            Step::Ignored => Lookup::Established {
                state: entry.state(),
                direction,
            },
            Step::Invalid => Lookup::Invalid(InvalidReason::TcpOutOfState),
            Step::Reopen => {
                shard.remove(index);
                shard.stats.reopens += 1;
                return Lookup::New;
            }
        };
        // A first reply or a TCP transition: workers' cached lines must not answer for
        // the old state.
        if let Some(entry) = shard.table.slot(index)
            && entry.value.state() != before
        {
            shard.dirty = true;
        }
        answer
    }

    /// As [`Conntrack::lookup`], answering from the worker's `cache` when a line there can
    /// (see `cache.rs`) and refilling it otherwise. Same answers as `lookup`, except that a
    /// cached answer does not restart the entry's idle timer, which may then run out up to
    /// [`REFRESH_SLACK_NANOS`] early.
    pub fn lookup_cached(&self, pkt: &ConnPacket, now: Tick, cache: &mut FlowCache) -> Lookup {
        let Class::Flow { key, side, packet } = key::classify(pkt) else {
            return self.lookup(pkt, now);
        };
        let hash = self.hasher.hash_one(key);
        let padded = self.shard(hash);
        if cannot_change_state(packet) {
            // Acquire: pairs with the release in `ShardGuard::publish`.
            let epoch = padded.epoch.load(Ordering::Acquire);
            if let Some(answer) = cache
                .line(hash, &key)
                .and_then(|line| line.answer(&key, side, now, epoch))
            {
                return answer;
            }
        }
        let mut shard = padded.lock();
        let Some(index) = shard.find_live(hash, &key, now) else {
            return self.first_packet(packet);
        };
        let answer = self.advance(&mut shard, index, key.protocol(), side, packet, now);
        if let Lookup::Established { .. } = answer
            && let Some(entry) = shard.table.slot(index).map(|slot| slot.value)
            && let Some(trusted_until) = self.trusted_until(key.protocol(), &entry)
        {
            let epoch = shard.publish();
            cache.fill(
                hash,
                CachedFlow {
                    key,
                    trusted_until,
                    epoch,
                    originator: entry.originator,
                    state: entry.state(),
                },
                now,
            );
        }
        answer
    }

    /// Until when a cached line may answer for `entry`, if it may at all: only steady
    /// entries (established TCP that has seen a reply, or a pseudo-connection), and only
    /// within the slack after the table last restarted its timer.
    fn trusted_until(&self, protocol: u8, entry: &Entry) -> Option<Tick> {
        let steady = match entry.tcp {
            Some(tcp) => tcp.state == TcpState::Established && entry.replied,
            None => true,
        };
        if !steady {
            return None;
        }
        let restarted = entry
            .expires
            .nanos()
            .saturating_sub(self.timeouts.of(protocol, entry));
        Some(
            Tick(restarted)
                .after(REFRESH_SLACK_NANOS)
                .min(entry.expires),
        )
    }

    fn lookup_related(&self, key: &ConnKey, side: Side, now: Tick) -> Lookup {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        let Some(index) = shard.find_live(hash, key, now) else {
            return Lookup::Stateless;
        };
        match shard.table.slot(index) {
            Some(slot) => Lookup::Related {
                direction: Direction::of(side, slot.value.originator),
            },
            None => Lookup::Stateless,
        }
    }
}

/// Whether a packet of a tracked connection leaves its state as it is (given a steady
/// entry, see `cache.rs`): SYN, FIN and RST segments always go to the table.
fn cannot_change_state(packet: FlowPacket) -> bool {
    matches!(
        packet,
        FlowPacket::Tcp(TcpEvent::Ack)
            | FlowPacket::Datagram
            | FlowPacket::EchoRequest
            | FlowPacket::EchoReply
    )
}

/// Builds `count` shards holding `max_entries` in all: the first `max_entries % count`
/// take one more, so the caps sum to the maximum.
fn build_shards<K, V, T>(
    count: usize,
    max_entries: usize,
    wrap: impl Fn(Table<K, V>) -> T,
) -> Result<Box<[T]>, ConntrackError>
where
    K: Copy + Default + Eq,
    V: Copy + Default,
{
    let capacities: Vec<usize> = (0..count)
        .map(|i| max_entries / count + usize::from(i < max_entries % count))
        .collect();
    let tables = Table::many(&capacities).ok_or(ConntrackError::OutOfMemory {
        entries: max_entries,
        bytes: Table::<K, V>::memory_for(max_entries),
    })?;
    Ok(tables.into_iter().map(wrap).collect())
}

/// Runs bounded sweep steps shard after shard, starting at the shard `cursor` names, until
/// `budget` slots have been examined or every shard has been finished once; `step` sweeps
/// up to the given number of slots of one shard. Returns the number of entries removed.
fn sweep_shards(
    cursor: &AtomicUsize,
    shard_mask: usize,
    budget: usize,
    mut step: impl FnMut(usize, usize) -> SweepStep,
) -> usize {
    let mut left = budget;
    let mut removed = 0;
    // One more than the shard count: the first shard may be entered half-swept.
    let mut shards_left = shard_mask + 2;
    while left > 0 && shards_left > 0 {
        // Only the sweeper moves the cursor, and the shard lock orders what a step
        // touches, so relaxed ordering suffices.
        let index = cursor.load(Ordering::Relaxed) & shard_mask;
        let done = step(index, left.min(SLOTS_PER_LOCK));
        left -= done.examined;
        removed += done.removed;
        if done.finished {
            cursor.store((index + 1) & shard_mask, Ordering::Relaxed);
            shards_left -= 1;
        }
    }
    removed
}

fn shard_count(requested: Option<usize>, max_entries: usize) -> usize {
    let count = match requested {
        Some(n) => n,
        None => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let wanted = (cores * 16).clamp(64, MAX_AUTO_SHARDS);
            wanted.min(max_entries / MIN_ENTRIES_PER_AUTO_SHARD)
        }
    };
    count.clamp(1, MAX_SHARDS).next_power_of_two()
}

impl Shard {
    /// Removes the entry at `index`; cached lines of this shard go stale.
    fn remove(&mut self, index: usize) {
        self.table.remove(index);
        self.dirty = true;
    }

    /// The slot of a live entry for `key`; an expired one met on the way is removed.
    fn find_live(&mut self, hash: u64, key: &ConnKey, now: Tick) -> Option<usize> {
        let index = self.table.find(hash, key)?;
        let expired = self
            .table
            .slot(index)
            .is_none_or(|slot| slot.value.is_expired(now));
        if expired {
            self.remove(index);
            self.stats.expirations += 1;
            return None;
        }
        Some(index)
    }

    /// Frees one slot for a new entry stored under `hash`. Looks first at the
    /// [`EVICTION_SCAN`] slots from the newcomer's home slot (as Linux's `early_drop` looks
    /// in the newcomer's bucket), then at as many from a hand that moves on each time it is
    /// used. In each window the first expired entry goes, else the never-replied entry
    /// nearest expiry. Entries that have seen a reply are never chosen. Returns false when
    /// nothing could go.
    ///
    /// Why near the newcomer: its home is random under the keyed hash, so evictions fall
    /// evenly over the table and free a slot on the newcomer's own probe path. Evicting in
    /// the order of a sweeping hand instead empties the table behind the hand and packs it
    /// ahead, and linear probing then builds clusters hundreds of slots long.
    fn make_room(&mut self, hash: u64, now: Tick) -> bool {
        let home = self.table.home(hash);
        if self.evict_near(home, now) {
            return true;
        }
        let hand = self.evict_cursor;
        self.evict_cursor = (hand + EVICTION_SCAN) % self.table.buckets();
        self.evict_near(hand, now)
    }

    /// One eviction window of [`Shard::make_room`], starting at slot `start`.
    fn evict_near(&mut self, start: usize, now: Tick) -> bool {
        let buckets = self.table.buckets();
        let mut victim: Option<(usize, Tick)> = None;
        for step in 0..EVICTION_SCAN.min(buckets) {
            let index = (start + step) % buckets;
            let Some(slot) = self.table.slot(index) else {
                continue;
            };
            let entry = &slot.value;
            if entry.is_expired(now) {
                self.remove(index);
                self.stats.expirations += 1;
                return true;
            }
            if !entry.replied && victim.is_none_or(|(_, expires)| entry.expires < expires) {
                victim = Some((index, entry.expires));
            }
        }
        let Some((index, _)) = victim else {
            return false;
        };
        self.remove(index);
        self.stats.evictions += 1;
        true
    }

    fn revalidate(
        &mut self,
        now: Tick,
        generation: u32,
        keep: &impl Fn(&ConnFlow) -> bool,
    ) -> usize {
        let mut removed = 0;
        let mut index = 0;
        while index < self.table.buckets() {
            let Some(slot) = self.table.slot(index) else {
                index += 1;
                continue;
            };
            let entry = slot.value;
            // After a removal the next entry of the cluster may shift into this slot, so
            // the index stays put.
            if entry.is_expired(now) {
                self.remove(index);
                self.stats.expirations += 1;
                continue;
            }
            if entry.generation != generation {
                if !keep(&slot.key.flow(entry.originator)) {
                    self.remove(index);
                    self.stats.revalidation_drops += 1;
                    removed += 1;
                    continue;
                }
                if let Some(value) = self.table.value_mut(index) {
                    value.generation = generation;
                }
            }
            index += 1;
        }
        removed
    }
}

#[cfg(test)]
mod tests;
