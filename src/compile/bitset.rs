//! Per-field bitsets over the entries of a program, and the AND that finds the first entry
//! every field allows.
//!
//! For one field (say the destination port), each elementary interval of the key space has
//! the bitset of entries whose criterion accepts it. Most entries leave most fields
//! unconstrained ("wild"), so a bitset is stored as the field's one wild bitset OR a
//! compressed specific part: a summary with one bit per 64-entry word that has any specific
//! entry, and only those words, packed. With 10,000 rules each holding one CIDR, a dense
//! table would keep ~10,000 distinct 1.25 KiB bitsets per field (12 MiB); packed they take a
//! few words each. The summaries also drive the search: AND-ing them first skips every word
//! in which some field allows nothing.

use std::collections::HashMap;

use super::addrset::{Key, RangeSet};
use super::table::IntervalTable;

/// The bitsets of one field of one program.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldBits {
    /// Whether any entry is constrained in this field; if none is, the field is skipped.
    active: bool,
    /// Summary words per bitset: one bit per 64-entry word.
    stride: usize,
    /// Entries that accept every key of the field.
    wild: Box<[u64]>,
    wild_summary: Box<[u64]>,
    /// Specific part of bitset `id`: `summaries[id * stride ..][..stride]`.
    summaries: Box<[u64]>,
    /// For each summary word of each bitset, where its words start in `packed`.
    bases: Box<[u32]>,
    /// The non-zero specific words, then one zero word so that a lookup of an absent word
    /// stays in bounds.
    packed: Box<[u64]>,
}

impl FieldBits {
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Number of distinct bitsets.
    #[cfg(test)]
    pub fn distinct(&self) -> usize {
        self.summaries.len().checked_div(self.stride).unwrap_or(0)
    }

    #[inline]
    fn summary(&self, id: usize, s: usize) -> u64 {
        self.summaries[id * self.stride + s] | self.wild_summary[s]
    }

    #[inline]
    fn word(&self, id: usize, w: usize) -> u64 {
        let i = id * self.stride + (w >> 6);
        let bit = w & 63;
        let summary = self.summaries[i];
        let rank = (summary & ((1u64 << bit) - 1)).count_ones() as usize;
        let present = (summary >> bit) & 1;
        // Branch-free: when the word is absent, `packed[..]` is its successor (or the pad) and
        // the mask clears it.
        let specific = self.packed[self.bases[i] as usize + rank] & present.wrapping_neg();
        self.wild[w] | specific
    }

    /// Whether entry `e` is in bitset `id` (tests and build-time checks).
    #[cfg(test)]
    pub fn contains(&self, id: usize, e: usize) -> bool {
        self.word(id, e >> 6) >> (e & 63) & 1 == 1
    }

    pub fn heap_bytes(&self) -> usize {
        (self.wild.len() + self.wild_summary.len() + self.summaries.len() + self.packed.len()) * 8
            + self.bases.len() * 4
    }
}

/// One field's bitset for the flow being classified.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe<'a> {
    pub bits: &'a FieldBits,
    pub id: usize,
}

/// The first entry at or after `cursor` that every probe allows, among `entries` entries.
/// With no probes every entry is allowed.
#[inline]
pub(crate) fn first_match(probes: &[Probe<'_>], cursor: usize, entries: usize) -> Option<usize> {
    if cursor >= entries {
        return None;
    }
    let Some(first) = probes.first() else {
        return Some(cursor);
    };
    let stride = first.bits.stride;
    let start_word = cursor >> 6;
    let mut summary_mask = !0u64 << (start_word & 63);
    for s in (start_word >> 6)..stride {
        let mut candidates = summary_mask;
        for p in probes {
            candidates &= p.bits.summary(p.id, s);
        }
        summary_mask = !0;
        while candidates != 0 {
            let w = (s << 6) | candidates.trailing_zeros() as usize;
            let mut hits = if w == start_word {
                !0u64 << (cursor & 63)
            } else {
                !0
            };
            for p in probes {
                hits &= p.bits.word(p.id, w);
            }
            if hits != 0 {
                return Some((w << 6) | hits.trailing_zeros() as usize);
            }
            candidates &= candidates - 1;
        }
    }
    None
}

/// Build one field: `sets[e]` is what entry `e` accepts (`None`: everything). Returns the
/// bitsets and the table from key to bitset id.
pub(crate) fn build_field<K: Key>(
    sets: &[Option<&RangeSet<K>>],
    max: K,
) -> (FieldBits, IntervalTable<K>) {
    let entries = sets.len();
    let words = entries.div_ceil(64).max(1);
    let stride = words.div_ceil(64);
    let mut wild = vec![0u64; words];
    let mut events: Vec<(K, u32, bool)> = Vec::new();
    let mut active = false;
    for (e, set) in sets.iter().enumerate() {
        match set {
            Some(set) if !set.is_full(max) => {
                active = true;
                for &(lo, hi) in set.ranges() {
                    if lo > max {
                        break;
                    }
                    events.push((lo, e as u32, true));
                    if let Some(next) = hi.succ()
                        && next <= max
                    {
                        events.push((next, e as u32, false));
                    }
                }
            }
            _ => wild[e >> 6] |= 1 << (e & 63),
        }
    }
    events.sort_unstable_by_key(|&(key, _, _)| key);

    let mut store = SpecificStore::new(stride);
    let empty = store.intern(&vec![0u64; words]);
    let mut current = vec![0u64; words];
    let mut breaks: Vec<(K, u32)> = Vec::new();
    let mut i = 0;
    while let Some(&(key, _, _)) = events.get(i) {
        while let Some(&(k, e, add)) = events.get(i)
            && k == key
        {
            let (w, bit) = (e as usize >> 6, e & 63);
            if add {
                current[w] |= 1 << bit;
            } else {
                current[w] &= !(1 << bit);
            }
            i += 1;
        }
        breaks.push((key, store.intern(&current)));
    }
    let table = IntervalTable::from_breaks(breaks, empty);
    let wild_summary = summarize(&wild, stride);
    let bits = store.finish(active, wild.into_boxed_slice(), wild_summary);
    (bits, table)
}

/// One bit per non-zero word.
fn summarize(words: &[u64], stride: usize) -> Box<[u64]> {
    let mut summary = vec![0u64; stride];
    for (w, &word) in words.iter().enumerate() {
        if word != 0 {
            summary[w >> 6] |= 1 << (w & 63);
        }
    }
    summary.into_boxed_slice()
}

/// Distinct specific bitsets, compressed, with their ids.
struct SpecificStore {
    stride: usize,
    ids: HashMap<Vec<u64>, u32>,
    summaries: Vec<u64>,
    bases: Vec<u32>,
    packed: Vec<u64>,
}

impl SpecificStore {
    fn new(stride: usize) -> SpecificStore {
        SpecificStore {
            stride,
            ids: HashMap::new(),
            summaries: Vec::new(),
            bases: Vec::new(),
            packed: Vec::new(),
        }
    }

    /// The id of a dense bitset, storing it if new.
    fn intern(&mut self, dense: &[u64]) -> u32 {
        // The compressed form (summary, then the non-zero words) identifies the set and is
        // what gets hashed: short for the sparse sets that dominate.
        let summary = summarize(dense, self.stride);
        let mut compressed: Vec<u64> = summary.to_vec();
        compressed.extend(dense.iter().copied().filter(|&w| w != 0));
        if let Some(&id) = self.ids.get(&compressed) {
            return id;
        }
        let id = self.ids.len() as u32;
        let mut next = self.packed.len();
        for &word in summary.iter() {
            self.summaries.push(word);
            self.bases.push(next as u32);
            next += word.count_ones() as usize;
        }
        self.packed.extend_from_slice(&compressed[self.stride..]);
        self.ids.insert(compressed, id);
        id
    }

    fn finish(self, active: bool, wild: Box<[u64]>, wild_summary: Box<[u64]>) -> FieldBits {
        let mut packed = self.packed;
        packed.push(0);
        FieldBits {
            active,
            stride: self.stride,
            wild,
            wild_summary,
            summaries: self.summaries.into_boxed_slice(),
            bases: self.bases.into_boxed_slice(),
            packed: packed.into_boxed_slice(),
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

    /// Deterministic pseudo-random numbers (xorshift), so that the tests need no seed crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random fields over keys 0..=63; some entries wild.
    fn random_sets(rng: &mut Rng, entries: usize) -> Vec<Option<RangeSet<u32>>> {
        (0..entries)
            .map(|_| {
                if rng.below(3) == 0 {
                    return None;
                }
                let ranges = (0..rng.below(3))
                    .map(|_| {
                        let lo = rng.below(64) as u32;
                        (lo, lo + rng.below(8) as u32)
                    })
                    .collect();
                Some(RangeSet::from_ranges(ranges))
            })
            .collect()
    }

    #[test]
    fn field_bitsets_hold_exactly_the_entries_that_accept_a_key() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for entries in [1, 5, 64, 65, 200, 4500] {
            let sets = random_sets(&mut rng, entries);
            let refs: Vec<Option<&RangeSet<u32>>> = sets.iter().map(Option::as_ref).collect();
            let (bits, table) = build_field(&refs, 63);
            for key in 0..=63u32 {
                let id = table.lookup(key) as usize;
                for (e, s) in sets.iter().enumerate() {
                    let want = s.as_ref().is_none_or(|s| s.contains(key));
                    assert_eq!(
                        bits.contains(id, e),
                        want,
                        "entries {entries} key {key} e {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn first_match_is_the_lowest_entry_all_fields_allow() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for entries in [1, 3, 64, 130, 5000] {
            let fields: Vec<Vec<Option<RangeSet<u32>>>> =
                (0..3).map(|_| random_sets(&mut rng, entries)).collect();
            let built: Vec<(FieldBits, IntervalTable<u32>)> = fields
                .iter()
                .map(|sets| {
                    let refs: Vec<_> = sets.iter().map(Option::as_ref).collect();
                    build_field(&refs, 63)
                })
                .collect();
            for _ in 0..50 {
                let keys: Vec<u32> = (0..3).map(|_| rng.below(64) as u32).collect();
                let probes: Vec<Probe<'_>> = built
                    .iter()
                    .zip(&keys)
                    .map(|((bits, table), &k)| Probe {
                        bits,
                        id: table.lookup(k) as usize,
                    })
                    .collect();
                let accepts = |e: usize| {
                    fields
                        .iter()
                        .zip(&keys)
                        .all(|(sets, &k)| sets[e].as_ref().is_none_or(|s| s.contains(k)))
                };
                for cursor in [0, 1, 63, 64, 65, entries / 2, entries - 1, entries] {
                    let want = (cursor..entries).find(|&e| accepts(e));
                    assert_eq!(
                        first_match(&probes, cursor, entries),
                        want,
                        "entries {entries} cursor {cursor} keys {keys:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn inactive_fields_and_no_probes() {
        let full = set(&[(0, 63)]);
        let (bits, table) = build_field(&[None, Some(&full)], 63);
        assert!(!bits.is_active(), "full sets count as wild");
        assert_eq!(table.intervals(), 1);
        assert_eq!(first_match(&[], 1, 2), Some(1));
        assert_eq!(first_match(&[], 2, 2), None);
        let three = set(&[(3, 3)]);
        let (bits, table) = build_field(&[None, Some(&three)], 63);
        assert!(bits.is_active());
        assert_eq!(bits.distinct(), 2);
        let probe = |k| Probe {
            bits: &bits,
            id: table.lookup(k) as usize,
        };
        assert_eq!(first_match(&[probe(3)], 1, 2), Some(1));
        assert_eq!(first_match(&[probe(4)], 1, 2), None);
    }
}
