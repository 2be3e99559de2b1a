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

/// Programs of at most this many 64-entry words keep plain bitsets (one cache line each):
/// AND-ing a few words beats walking summaries when there are so few of them.
pub(crate) const DENSE_MAX_WORDS: usize = 8;

/// The bitsets of one field of one program: plain (`dense`) when the program has at most
/// [`DENSE_MAX_WORDS`] words, else compressed (`sparse`); the other one is empty.
#[derive(Debug, Clone)]
pub(crate) struct FieldBits {
    /// Whether any entry is constrained in this field; if none is, the field is skipped.
    active: bool,
    /// 64-entry words per bitset.
    words: usize,
    /// Row length per id: `words` (plain) or summary words (compressed).
    row_len: usize,
    /// Bitset `id` is `dense[id * words ..][..words]`, wild entries included.
    dense: Box<[u64]>,
    sparse: SparseBits,
}

/// Bitsets as the field's wild bitset OR a compressed specific part.
#[derive(Debug, Clone, Default)]
pub(crate) struct SparseBits {
    /// Summary words per bitset: one bit per 64-entry word.
    stride: usize,
    /// Entries that accept every key of the field.
    wild: Box<[u64]>,
    wild_summary: Box<[u64]>,
    /// Specific part of bitset `id`: `rows[id * stride ..][..stride]`, each a summary word
    /// with where its words start in `packed` (side by side: one cache line serves both).
    rows: Box<[(u64, u64)]>,
    /// The non-zero specific words, then one zero word so that a lookup of an absent word
    /// stays in bounds.
    packed: Box<[u64]>,
}

impl FieldBits {
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Whether the bitsets are plain.
    pub fn is_dense(&self) -> bool {
        self.words <= DENSE_MAX_WORDS && !self.dense.is_empty()
    }

    /// Number of distinct bitsets.
    #[cfg(test)]
    pub fn distinct(&self) -> usize {
        if self.is_dense() {
            self.dense.len() / self.words
        } else {
            self.sparse.rows.len() / self.sparse.stride
        }
    }

    /// Whether entry `e` is in bitset `id` (tests).
    #[cfg(test)]
    pub fn contains(&self, id: usize, e: usize) -> bool {
        let probe = Probe::new(self, id);
        let word = if self.is_dense() {
            probe.dense_word(e >> 6)
        } else {
            probe.sparse_word(e >> 6)
        };
        word >> (e & 63) & 1 == 1
    }

    pub fn heap_bytes(&self) -> usize {
        let s = &self.sparse;
        (self.dense.len() + s.wild.len() + s.wild_summary.len() + s.packed.len()) * 8
            + s.rows.len() * 16
    }
}

/// The bitset a field gives the flow: the field and the row of the bitset's id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe<'a> {
    bits: &'a FieldBits,
    /// `id * words` (plain) or `id * stride` (compressed).
    row: usize,
}

impl<'a> Probe<'a> {
    #[inline]
    pub fn new(bits: &'a FieldBits, id: usize) -> Probe<'a> {
        Probe {
            bits,
            row: id * bits.row_len,
        }
    }

    #[inline]
    fn dense_word(&self, w: usize) -> u64 {
        self.bits.dense.get(self.row + w).copied().unwrap_or(0)
    }

    /// The compressed bitset's slices, cut once per walk.
    #[inline]
    fn sparse_view(&self) -> SparseView<'a> {
        let b = &self.bits.sparse;
        SparseView {
            rows: b
                .rows
                .get(self.row..self.row + b.stride)
                .unwrap_or_default(),
            packed: &b.packed,
            wild: &b.wild,
            wild_summary: &b.wild_summary,
        }
    }

    #[cfg(test)]
    fn sparse_word(&self, w: usize) -> u64 {
        self.sparse_view().word(w)
    }
}

/// One compressed bitset, as slices.
#[derive(Debug, Clone, Copy, Default)]
struct SparseView<'a> {
    rows: &'a [(u64, u64)],
    packed: &'a [u64],
    wild: &'a [u64],
    wild_summary: &'a [u64],
}

impl SparseView<'_> {
    #[inline]
    fn summary(&self, s: usize) -> u64 {
        self.rows.get(s).map_or(0, |r| r.0) | self.wild_summary.get(s).copied().unwrap_or(0)
    }

    #[inline]
    fn word(&self, w: usize) -> u64 {
        let (s, bit) = (w >> 6, w & 63);
        let (summary, base) = self.rows.get(s).copied().unwrap_or((0, 0));
        let rank = (summary & ((1u64 << bit) - 1)).count_ones() as u64;
        let present = (summary >> bit) & 1;
        // Branch-free: when the word is absent, the packed word read is its successor (or the
        // final pad) and the mask clears it.
        let specific = self
            .packed
            .get((base + rank) as usize)
            .copied()
            .unwrap_or(0)
            & present.wrapping_neg();
        self.wild.get(w).copied().unwrap_or(0) | specific
    }
}

/// The most fields a program probes: own address, other address, L4, source and
/// destination port.
const MAX_PROBES: usize = 5;

/// The probes of one flow, one per active field, in a fixed array.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeList<'a> {
    probes: [Probe<'a>; MAX_PROBES],
    len: usize,
}

impl<'a> ProbeList<'a> {
    /// An empty list; `filler` only occupies the unused slots.
    #[inline]
    pub fn new(filler: Probe<'a>) -> ProbeList<'a> {
        ProbeList {
            probes: [filler; MAX_PROBES],
            len: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, probe: Option<Probe<'a>>) {
        if let (Some(p), Some(slot)) = (probe, self.probes.get_mut(self.len)) {
            *slot = p;
            self.len += 1;
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[Probe<'a>] {
        self.probes.get(..self.len).unwrap_or_default()
    }
}

/// The first entry at or after `cursor` that every probe allows, among `entries` entries.
/// With no probes every entry is allowed. `dense` says how the program's fields store their
/// bitsets (all alike: they share the entry count).
#[inline]
pub(crate) fn first_match(
    probes: &[Probe<'_>],
    dense: bool,
    cursor: usize,
    entries: usize,
) -> Option<usize> {
    if cursor >= entries {
        None
    } else if probes.is_empty() {
        Some(cursor)
    } else if dense {
        first_match_dense(probes, cursor, entries)
    } else {
        first_match_sparse(probes, cursor, entries)
    }
}

/// Word by word: at most [`DENSE_MAX_WORDS`] of them. A word stops being AND-ed as soon as
/// it is zero, so the first (most selective) probes do most of the work.
#[inline]
fn first_match_dense(probes: &[Probe<'_>], cursor: usize, entries: usize) -> Option<usize> {
    let mut mask = !0u64 << (cursor & 63);
    for w in (cursor >> 6)..entries.div_ceil(64) {
        let mut x = mask;
        for p in probes {
            x &= p.dense_word(w);
            if x == 0 {
                break;
            }
        }
        if x != 0 {
            return Some((w << 6) | x.trailing_zeros() as usize);
        }
        mask = !0;
    }
    None
}

/// Summary word by summary word: only words whose summary bit every field has set are read,
/// and AND-ing stops at the first zero.
fn first_match_sparse(probes: &[Probe<'_>], cursor: usize, entries: usize) -> Option<usize> {
    let mut views = [SparseView::default(); MAX_PROBES];
    for (view, p) in views.iter_mut().zip(probes) {
        *view = p.sparse_view();
    }
    let views = views.get(..probes.len()).unwrap_or_default();
    let start_word = cursor >> 6;
    let mut summary_mask = !0u64 << (start_word & 63);
    for s in (start_word >> 6)..entries.div_ceil(64).div_ceil(64) {
        let mut candidates = summary_mask;
        summary_mask = !0;
        for v in views {
            candidates &= v.summary(s);
            if candidates == 0 {
                break;
            }
        }
        while candidates != 0 {
            let w = (s << 6) | candidates.trailing_zeros() as usize;
            let mut hits = if w == start_word {
                !0u64 << (cursor & 63)
            } else {
                !0
            };
            for v in views {
                hits &= v.word(w);
                if hits == 0 {
                    break;
                }
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
    build_field_with(sets, max, DENSE_MAX_WORDS)
}

/// [`build_field`] with plain bitsets up to `dense_max_words` words.
fn build_field_with<K: Key>(
    sets: &[Option<&RangeSet<K>>],
    max: K,
    dense_max_words: usize,
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

    let mut store = if words <= dense_max_words {
        Store::Dense(DenseStore::new(wild.clone()))
    } else {
        Store::Sparse(SpecificStore::new(stride))
    };
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
    let (dense, sparse) = match store {
        Store::Dense(d) => (d.bits.into_boxed_slice(), SparseBits::default()),
        Store::Sparse(s) => {
            let wild_summary = summarize(&wild, stride);
            (
                Box::default(),
                s.finish(wild.into_boxed_slice(), wild_summary),
            )
        }
    };
    let row_len = if dense.is_empty() {
        sparse.stride
    } else {
        words
    };
    let bits = FieldBits {
        active,
        words,
        row_len,
        dense,
        sparse,
    };
    (bits, table)
}

/// Where distinct bitsets go while a field is built.
enum Store {
    Dense(DenseStore),
    Sparse(SpecificStore),
}

impl Store {
    fn intern(&mut self, specific: &[u64]) -> u32 {
        match self {
            Store::Dense(d) => d.intern(specific),
            Store::Sparse(s) => s.intern(specific),
        }
    }
}

/// Distinct plain bitsets (wild entries merged in), with their ids.
struct DenseStore {
    wild: Vec<u64>,
    ids: HashMap<Vec<u64>, u32>,
    bits: Vec<u64>,
}

impl DenseStore {
    fn new(wild: Vec<u64>) -> DenseStore {
        DenseStore {
            wild,
            ids: HashMap::new(),
            bits: Vec::new(),
        }
    }

    fn intern(&mut self, specific: &[u64]) -> u32 {
        let full: Vec<u64> = specific
            .iter()
            .zip(&self.wild)
            .map(|(s, w)| s | w)
            .collect();
        if let Some(&id) = self.ids.get(&full) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.bits.extend_from_slice(&full);
        self.ids.insert(full, id);
        id
    }
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
    rows: Vec<(u64, u64)>,
    packed: Vec<u64>,
}

impl SpecificStore {
    fn new(stride: usize) -> SpecificStore {
        SpecificStore {
            stride,
            ids: HashMap::new(),
            rows: Vec::new(),
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
            self.rows.push((word, next as u64));
            next += word.count_ones() as usize;
        }
        self.packed.extend_from_slice(&compressed[self.stride..]);
        self.ids.insert(compressed, id);
        id
    }

    fn finish(self, wild: Box<[u64]>, wild_summary: Box<[u64]>) -> SparseBits {
        let mut packed = self.packed;
        packed.push(0);
        SparseBits {
            stride: self.stride,
            wild,
            wild_summary,
            rows: self.rows.into_boxed_slice(),
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

    /// Both representations: plain (within the dense limit) and compressed (always).
    const DENSE_LIMITS: [usize; 2] = [DENSE_MAX_WORDS, 0];

    #[test]
    fn field_bitsets_hold_exactly_the_entries_that_accept_a_key() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let sizes = [1, 5, 64, 65, 200, 4500];
        for (entries, dense_max) in sizes.into_iter().flat_map(|n| DENSE_LIMITS.map(|d| (n, d))) {
            let sets = random_sets(&mut rng, entries);
            let refs: Vec<Option<&RangeSet<u32>>> = sets.iter().map(Option::as_ref).collect();
            let (bits, table) = build_field_with(&refs, 63, dense_max);
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
        let sizes = [1, 3, 64, 130, 500, 5000];
        for (entries, dense_max) in sizes.into_iter().flat_map(|n| DENSE_LIMITS.map(|d| (n, d))) {
            let fields: Vec<Vec<Option<RangeSet<u32>>>> =
                (0..3).map(|_| random_sets(&mut rng, entries)).collect();
            let built: Vec<(FieldBits, IntervalTable<u32>)> = fields
                .iter()
                .map(|sets| {
                    let refs: Vec<_> = sets.iter().map(Option::as_ref).collect();
                    build_field_with(&refs, 63, dense_max)
                })
                .collect();
            for _ in 0..50 {
                let keys: Vec<u32> = (0..3).map(|_| rng.below(64) as u32).collect();
                let probes: Vec<Probe<'_>> = built
                    .iter()
                    .zip(&keys)
                    .map(|((bits, table), &k)| Probe::new(bits, table.lookup(k) as usize))
                    .collect();
                let dense = built[0].0.is_dense();
                let accepts = |e: usize| {
                    fields
                        .iter()
                        .zip(&keys)
                        .all(|(sets, &k)| sets[e].as_ref().is_none_or(|s| s.contains(k)))
                };
                for cursor in [0, 1, 63, 64, 65, entries / 2, entries - 1, entries] {
                    let want = (cursor..entries).find(|&e| accepts(e));
                    assert_eq!(
                        first_match(&probes, dense, cursor, entries),
                        want,
                        "entries {entries} dense up to {dense_max} cursor {cursor} keys {keys:?}"
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
        assert_eq!(first_match(&[], true, 1, 2), Some(1));
        assert_eq!(first_match(&[], false, 2, 2), None);
        let three = set(&[(3, 3)]);
        for dense_max in DENSE_LIMITS {
            let (bits, table) = build_field_with(&[None, Some(&three)], 63, dense_max);
            assert!(bits.is_active());
            assert_eq!(bits.distinct(), 2);
            let first = |k, cursor| {
                let probe = Probe::new(&bits, table.lookup(k) as usize);
                first_match(&[probe], bits.is_dense(), cursor, 2)
            };
            assert_eq!(first(3, 1), Some(1));
            assert_eq!(first(4, 1), None);
            assert_eq!(first(4, 0), Some(0));
        }
    }
}
