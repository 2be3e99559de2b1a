//! A fixed-capacity open-addressing hash table, one per shard.
//!
//! Why not `std::collections::HashMap`: the packet path needs things it cannot give without a
//! second structure beside it. Memory is allocated once, for exactly the configured capacity;
//! the sweeper and the evictor walk slots by index with a cursor, so each call does bounded
//! work and resumes where the previous one stopped; and the caller hashes once (the same
//! keyed hash also picks the shard), so nothing is hashed twice per packet.
//!
//! Layout: linear probing over `buckets` slots of 64 bytes, with a parallel array of one-byte
//! tags (0 = empty, else `0x80 | top 7 bits of the hash`) so that a probe reads tags, not
//! slots, until a tag matches. The tag array is 1/64 of the slots' size, so it stays in cache
//! when the slots do not: a miss then costs no memory access and a hit one. (Measured: with
//! the hash in the slot and no tags, a miss in the default table cost as much as a hit.) A
//! lookup looks at its home slot first, though: most hits are there, and then the tag line is
//! not read at all.
//! Deletion shifts the rest of the cluster back (no tombstones), so a table never degrades
//! with churn. The home slot is `(low 32 bits of hash × buckets) >> 32`, which allows any
//! bucket count: `buckets = capacity × 5/4 + 1`, a load factor of at most 0.8.
//!
//! The hash must come from a randomly keyed hasher: with attacker-chosen keys and a fixed
//! hash, clusters grow without bound.

use crate::dataplane::memory::{self, Chunk};

/// One stored key and value with the hash it was stored under, starting on a cache line:
/// a conntrack slot is 64 bytes, so a hit reads one line rather than the two that an
/// 8-byte-aligned slot straddles seven times in eight.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
pub(super) struct Slot<K, V> {
    pub hash: u64,
    pub key: K,
    pub value: V,
}

#[derive(Debug)]
pub(super) struct Table<K, V> {
    tags: Chunk<u8>,
    slots: Chunk<Slot<K, V>>,
    len: usize,
    capacity: usize,
}

/// The tag of an empty slot: also the value of fresh tag memory.
const EMPTY: u8 = 0;

/// Slots for a table of `capacity` entries; `None` beyond 32 bits.
fn buckets_for(capacity: usize) -> Option<usize> {
    // One slot more than 5/4 of the capacity keeps an empty slot in every probe sequence,
    // so a probe always ends.
    let buckets = capacity.checked_add(capacity / 4)?.checked_add(1)?;
    u32::try_from(buckets).ok()?;
    Some(buckets)
}

fn tag_of(hash: u64) -> u8 {
    0x80 | (hash >> 57) as u8
}

impl<K: Copy + Default + Eq, V: Copy + Default> Table<K, V> {
    /// A table that holds up to `capacity` entries, allocated now and never again; `None`
    /// when that much memory cannot be had (or the slot count would not fit in 32 bits).
    #[cfg(test)]
    pub fn with_capacity(capacity: usize) -> Option<Self> {
        Table::many(&[capacity])?.pop()
    }

    /// Tables holding up to `capacities[i]` entries each, as [`Table::with_capacity`], with
    /// all their slots in one region of memory and all their tags in another, each on huge
    /// pages when large enough (`dataplane::memory`): a shard's own slots would be too small
    /// for one.
    pub fn many(capacities: &[usize]) -> Option<Vec<Self>> {
        let buckets: Vec<usize> = capacities
            .iter()
            .map(|&capacity| buckets_for(capacity))
            .collect::<Option<_>>()?;
        let tags = memory::chunks::<u8>(&buckets)?;
        let slots = memory::chunks::<Slot<K, V>>(&buckets)?;
        Some(
            tags.into_iter()
                .zip(slots)
                .zip(capacities)
                .map(|((tags, slots), &capacity)| Table {
                    tags,
                    slots,
                    len: 0,
                    capacity,
                })
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Number of slots; valid indices are `0..buckets()`.
    pub fn buckets(&self) -> usize {
        self.slots.len()
    }

    /// Bytes that tables holding `capacity` entries in all allocate, about.
    pub fn memory_for(capacity: usize) -> usize {
        capacity
            .saturating_add(capacity / 4)
            .saturating_mul(1 + std::mem::size_of::<Slot<K, V>>())
    }

    /// Bytes held by the table's arrays.
    pub fn memory_bytes(&self) -> usize {
        self.buckets() * (1 + std::mem::size_of::<Slot<K, V>>())
    }

    /// The slot a key with this hash is stored at, or after if that one is taken.
    pub fn home(&self, hash: u64) -> usize {
        // Lemire's multiply-shift range reduction: uniform over any bucket count. The
        // constructor keeps `buckets` within 32 bits, so the product fits in 64.
        ((u64::from(hash as u32) * self.buckets() as u64) >> 32) as usize
    }

    fn next(&self, index: usize) -> usize {
        if index + 1 == self.buckets() {
            0
        } else {
            index + 1
        }
    }

    /// Index of the slot holding `key`, stored under `hash`.
    #[inline]
    pub fn find(&self, hash: u64, key: &K) -> Option<usize> {
        let home = self.home(hash);
        // Most keys sit in their home slot: check it before the tags, so that such a hit
        // reads one cache line, not two. An empty slot holds hash 0 and the default key, so a
        // key stored under hash 0 takes the tag path, which knows empty from occupied.
        let slot = &self.slots[home];
        if hash != 0 && slot.hash == hash && slot.key == *key {
            return Some(home);
        }
        self.probe(home, hash, key)
    }

    /// [`Table::find`] by the tags, from the home slot.
    fn probe(&self, home: usize, hash: u64, key: &K) -> Option<usize> {
        let tag = tag_of(hash);
        let mut index = home;
        loop {
            let here = self.tags[index];
            if here == EMPTY {
                return None;
            }
            if here == tag {
                let slot = &self.slots[index];
                if slot.hash == hash && slot.key == *key {
                    return Some(index);
                }
            }
            index = self.next(index);
        }
    }

    /// Stores a key that is not in the table; `None` when the table is full.
    pub fn insert(&mut self, hash: u64, key: K, value: V) -> Option<usize> {
        if self.is_full() {
            return None;
        }
        let mut index = self.home(hash);
        while self.tags[index] != EMPTY {
            index = self.next(index);
        }
        self.tags[index] = tag_of(hash);
        self.slots[index] = Slot { hash, key, value };
        self.len += 1;
        Some(index)
    }

    /// Whether the slot at `index` holds an entry. An empty slot holds hash 0, so a slot
    /// with any other hash is occupied without reading its tag's cache line; only hash 0
    /// asks the tag.
    #[inline]
    fn occupied(&self, index: usize) -> bool {
        match self.slots.get(index) {
            Some(slot) if slot.hash != 0 => true,
            Some(_) => self.tags.get(index).is_some_and(|&tag| tag != EMPTY),
            None => false,
        }
    }

    /// The entry at `index`, if that slot is occupied.
    #[inline]
    pub fn slot(&self, index: usize) -> Option<&Slot<K, V>> {
        self.slots.get(index).filter(|_| self.occupied(index))
    }

    /// The value at `index`, if that slot is occupied.
    #[inline]
    pub fn value_mut(&mut self, index: usize) -> Option<&mut V> {
        if !self.occupied(index) {
            return None;
        }
        self.slots.get_mut(index).map(|slot| &mut slot.value)
    }

    /// Empties the slot at `index` and shifts the rest of its cluster back so that every
    /// remaining key stays reachable from its home slot. Entries only ever move into the
    /// freed slot or later slots of the same cluster, so a cursor that re-reads `index`
    /// after a removal misses nothing.
    pub fn remove(&mut self, index: usize) {
        if self.slot(index).is_none() {
            return;
        }
        let mut hole = index;
        let mut probe = self.next(hole);
        while self.tags[probe] != EMPTY {
            let home = self.home(self.slots[probe].hash);
            if !cyclically_within(home, hole, probe) {
                self.tags[hole] = self.tags[probe];
                self.slots[hole] = self.slots[probe];
                hole = probe;
            }
            probe = self.next(probe);
        }
        self.tags[hole] = EMPTY;
        self.slots[hole] = Slot::default();
        self.len -= 1;
    }
}

/// What one bounded sweep step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SweepStep {
    /// Slots looked at, empty or not.
    pub examined: usize,
    pub removed: usize,
    /// The cursor went past the last slot and was reset to the first.
    pub finished: bool,
}

impl<K: Copy + Default + Eq, V: Copy + Default> Table<K, V> {
    /// Removes entries for which `dead` holds, looking at up to `budget` slots from
    /// `cursor` and leaving `cursor` where the next step should resume.
    pub fn sweep(
        &mut self,
        cursor: &mut usize,
        budget: usize,
        dead: impl Fn(&V) -> bool,
    ) -> SweepStep {
        let mut step = SweepStep {
            examined: 0,
            removed: 0,
            finished: false,
        };
        while step.examined < budget && *cursor < self.buckets() {
            step.examined += 1;
            if self.slot(*cursor).is_some_and(|slot| dead(&slot.value)) {
                // The next entry of the cluster may shift into this slot: look again.
                self.remove(*cursor);
                step.removed += 1;
            } else {
                *cursor += 1;
            }
        }
        if *cursor >= self.buckets() {
            *cursor = 0;
            step.finished = true;
        }
        step
    }
}

#[cfg(test)]
impl<K, V> Table<K, V> {
    /// The longest run of occupied slots (wrapping around), a measure of probe cost.
    pub fn longest_cluster(&self) -> usize {
        let n = self.tags.len();
        let mut longest = 0;
        let mut run = 0;
        for i in 0..2 * n {
            if self.tags[i % n] == EMPTY {
                run = 0;
            } else {
                run += 1;
                longest = longest.max(run.min(n));
            }
        }
        longest
    }
}

/// Whether `home` lies in the cyclic interval `(hole, probe]`: an entry whose home is there
/// would become unreachable if moved back to `hole`.
fn cyclically_within(home: usize, hole: usize, probe: usize) -> bool {
    if hole <= probe {
        hole < home && home <= probe
    } else {
        hole < home || home <= probe
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sizes_for_the_capacity_and_refuses_beyond_it() {
        let mut table: Table<u32, u32> = Table::with_capacity(4).unwrap();
        assert_eq!(table.buckets(), 6);
        for key in 0..4u32 {
            assert!(table.insert(u64::from(key) << 40, key, key).is_some());
        }
        assert!(table.is_full());
        assert_eq!(table.insert(99, 99, 99), None);
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn refuses_capacities_it_cannot_address_or_allocate() {
        // More slots than 32 bits address, and more bytes than any machine has.
        assert!(Table::<u32, u32>::with_capacity(u32::MAX as usize).is_none());
        assert!(Table::<[[u64; 32]; 32], u32>::with_capacity(1 << 31).is_none());
    }

    #[test]
    fn a_zero_hash_is_stored_and_found() {
        let mut table: Table<u32, u32> = Table::with_capacity(4).unwrap();
        table.insert(0, 5, 50).unwrap();
        table.insert(1, 6, 60).unwrap();
        assert_eq!(
            table
                .find(0, &5)
                .and_then(|i| table.slot(i))
                .map(|s| s.value),
            Some(50)
        );
        assert_eq!(
            table
                .find(1, &6)
                .and_then(|i| table.slot(i))
                .map(|s| s.value),
            Some(60)
        );
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn zero_capacity_holds_nothing_and_finds_nothing() {
        let mut table: Table<u32, u32> = Table::with_capacity(0).unwrap();
        assert_eq!(table.insert(1, 1, 1), None);
        assert_eq!(table.find(1, &1), None);
    }

    #[test]
    fn colliding_hashes_stay_reachable_after_removal_in_the_middle() {
        // Every key has the same hash: one cluster, the worst case for backward shifting.
        let mut table: Table<u32, u32> = Table::with_capacity(8).unwrap();
        let indices: Vec<usize> = (0..6u32)
            .map(|key| table.insert(7, key, key * 10).unwrap())
            .collect();
        table.remove(indices[2]);
        for key in [0u32, 1, 3, 4, 5] {
            let index = table.find(7, &key).unwrap();
            assert_eq!(table.slot(index).unwrap().value, key * 10);
        }
        assert_eq!(table.find(7, &2), None);
        assert_eq!(table.len(), 5);
    }

    #[test]
    fn a_cluster_that_wraps_past_the_end_survives_removals() {
        let mut table: Table<u32, u32> = Table::with_capacity(8).unwrap();
        // The largest low-32-bit value homes to the last bucket.
        let last = u64::from(u32::MAX);
        for key in 0..5u32 {
            table.insert(last, key, key).unwrap();
        }
        table.insert(0, 100, 100).unwrap();
        let first = table.find(last, &0).unwrap();
        table.remove(first);
        for key in [1u32, 2, 3, 4] {
            assert!(table.find(last, &key).is_some(), "key {key} lost");
        }
        assert!(table.find(0, &100).is_some());
    }

    #[test]
    fn sweep_resumes_at_its_cursor_and_stops_at_its_budget() {
        let mut table: Table<u32, u32> = Table::with_capacity(16).unwrap();
        for key in 0..16u32 {
            table
                .insert(u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15), key, key)
                .unwrap();
        }
        let buckets = table.buckets();
        let mut cursor = 0;
        let mut removed = 0;
        let mut rounds = 0;
        loop {
            let step = table.sweep(&mut cursor, 3, |value| value % 2 == 0);
            assert!(step.examined <= 3 && step.removed <= step.examined);
            removed += step.removed;
            rounds += 1;
            if step.finished {
                break;
            }
        }
        assert_eq!(removed, 8);
        assert_eq!(table.len(), 8);
        // Every slot is looked at once, plus once more per removal.
        assert!(
            rounds >= buckets / 3 && rounds <= (buckets + 8) / 3 + 1,
            "{rounds} rounds"
        );
        assert_eq!(cursor, 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
            any::<u8>().prop_map(Op::Remove),
        ]
    }

    /// A deliberately poor hash (few distinct values) so clusters form and wrap.
    fn poor_hash(key: u8) -> u64 {
        u64::from(key % 7) * 0x2545_F491_4F6C_DD1D
    }

    proptest! {
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec(op(), 0..300), cap in 0usize..40) {
            let mut table: Table<u8, u8> = Table::with_capacity(cap).unwrap();
            let mut model: HashMap<u8, u8> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(key, value) => {
                        let hash = poor_hash(key);
                        if table.find(hash, &key).is_none() {
                            let stored = table.insert(hash, key, value).is_some();
                            prop_assert_eq!(stored, model.len() < cap);
                            if stored {
                                model.insert(key, value);
                            }
                        }
                    }
                    Op::Remove(key) => {
                        if let Some(index) = table.find(poor_hash(key), &key) {
                            table.remove(index);
                        }
                        model.remove(&key);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                for (key, value) in &model {
                    let index = table.find(poor_hash(*key), key);
                    prop_assert_eq!(index.and_then(|i| table.slot(i)).map(|s| s.value), Some(*value));
                }
            }
        }
    }
}
