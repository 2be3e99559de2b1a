//! Per-field bitsets over the entries of a program, and the AND that finds the first entry
//! every field allows.
//!
//! For one field (say the destination port), each elementary interval of the key space has
//! the bitset of the entries whose criterion accepts it; a field's distinct bitsets are
//! numbered, and its interval table maps a packet's value to that number.
//!
//! Two layouts, chosen by the program's size (all fields of a program share it):
//! - *plain*, up to [`DENSE_MAX_WORDS`] 64-entry words: each bitset stored whole. AND-ing
//!   a few dozen words straight from memory beats two dependent loads per word.
//! - *indexed*, for larger programs: the words of all of a field's bitsets are deduplicated
//!   into a pool, each bitset is a row of pool indices, plus a summary with one bit per
//!   non-zero word. Most words of most bitsets are the same few values (all-wild, empty),
//!   so rows cost 4 bytes a word instead of 8 and the pool stays small; the summaries let
//!   the search skip every word in which some field allows nothing. Reading a word is two
//!   loads and no bit counting (an earlier packed layout needed a popcount per word and took
//!   twice the instructions per verdict at 10,000 rules).
//!
//! Where the walk starts: packing beside each class's bitset id the first word its bitset
//! holds any entry in (so the walk could start past words some probe rules out, with no line
//! of its own) was tried and not kept: at 10,000 bench rules 11.88 -> 11.66 L1 misses but
//! 783 -> 802 instructions per verdict, and more instructions at 10, 100 and 1,000 rules.
//!
//! How the plain walk reads words: the AND of the first two probes four words at a time,
//! branch-free (SSE2), skipping zero chunks and reading the other probes lazily within a
//! chunk, was tried and not kept: 893 -> 892 instructions per verdict at 10,000 bench rules
//! but up at 10, 100 and 1,000 (476 -> 493, 761 -> 808, 774 -> 827), L1 misses 12.2 -> 12.7
//! (the second probe's words read where the first was zero); with the probes' code inlined
//! as it is now, 798 -> 838 instructions at 10,000 rules, misses 12.05 -> 12.78. Chunks of
//! the first probe alone: 951. Most bench walks end within a few words, so the chunk's
//! extra reads are not paid back.
//!
//! Two later variants of the plain walk, also not kept (callgrind per verdict at 10,000
//! bench rules, with `--branch-sim=yes`, whose simple predictor counts 5.5 mispredicted
//! branches a verdict there, 2.4 of them in this loop, against 2.2 in all at 10 rules):
//! - every probe's word ANDed without stopping at the first zero: mispredicts 5.54 -> 4.72
//!   but instructions 590 -> 599 and L1 misses 9.92 -> 10.29 (words read that the stop
//!   skipped); dropping only the stop among the other probes changed nothing (589, 5.59).
//! - a summary word leading each plain bitset (bit `w` set when word `w` holds an entry),
//!   the walk visiting only the words every probe's summary marks: 590 -> 691
//!   instructions, 9.92 -> 10.14 misses, 4.58 mispredicts, and 490 -> 549 instructions at
//!   1,000 rules: the summaries are ANDed again on every search after a Log or Pass entry,
//!   and most walks end within a few words anyway.
//! - a set of its own for a side of exactly two probes (every side of a flow between two
//!   endpoints at 10,000 bench rules), ANDing both words of each position with no test
//!   between them, two positions a step (callgrind on the 2-vCPU AMD EPYC, D1 32 KiB): at
//!   10,000 rules 590 -> 575 instructions, 5.54 -> 4.81 mispredicts, but L1 misses 12.16 ->
//!   12.55 and 53 -> 58 stores a verdict; at 1,000 rules 490 -> 509 instructions. Six runs
//!   by turns with this build (the variant first): `classify/compiled/10000` medians 82
//!   against 80 ns, p99 of single verdicts 300 against 350 ns (lower in 5 of 6 pairs);
//!   per-flow timings (`CLASSIFY_FLOWS`) of either build swung more between two runs (p99
//!   190-261 ns) than between the builds. One position a step instead: 589 instructions,
//!   63 stores.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

use super::addrset::{Key, RangeSet};
use super::table::IntervalTable;

/// Programs of at most this many 64-entry words (2,048 entries) keep plain bitsets, four
/// cache lines each at most. At 10,000 bench rules a workload's program is about 1,200
/// entries: plain bitsets there take 1,192 instructions per verdict instead of 1,363 with
/// the indexed layout (counted under callgrind), for 6.6 MB of snapshot instead of 5.3 MB.
pub(crate) const DENSE_MAX_WORDS: usize = 32;

/// The bitsets of one field of one program. In declaration order (`repr(C)`), what a plain
/// probe reads first: its 32 bytes share a line more often than when spread over the 72.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct FieldBits {
    /// Plain: bitset `id` is `pool[id * words ..][..words]`. Indexed: the distinct words.
    pool: Box<[u64]>,
    /// 64-entry words per bitset.
    words: usize,
    /// Whether any entry is constrained in this field; if none is, the field is skipped.
    active: bool,
    /// Plain layout (else indexed).
    dense: bool,
    /// Mean share of entries a bitset holds, in 1/1024ths (1024 when inactive): how little
    /// the field tells entries apart.
    density: u32,
    /// Summary words per bitset (indexed layout).
    stride: usize,
    /// Indexed: bitset `id`'s words are `pool[rows[id * words + w]]`.
    rows: Box<[u32]>,
    /// Indexed: bitset `id`'s summary is `summaries[id * stride ..][..stride]`.
    summaries: Box<[u64]>,
}

impl FieldBits {
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Whether the bitsets are plain.
    pub fn is_dense(&self) -> bool {
        self.dense
    }

    /// Number of distinct bitsets.
    pub fn distinct(&self) -> usize {
        let stored = if self.dense {
            self.pool.len()
        } else {
            self.rows.len()
        };
        stored / self.words.max(1)
    }

    /// A field that constrains nothing and holds no bitset.
    pub fn inactive() -> FieldBits {
        Store::new(1, true).finish(false, 0)
    }

    /// The words of bitset `id` into `out` (`words` long); zeros past the stored ones.
    fn read_row(&self, id: usize, out: &mut [u64]) {
        let start = id * self.words;
        for (w, slot) in out.iter_mut().enumerate() {
            *slot = if self.dense {
                self.pool.get(start + w).copied().unwrap_or(0)
            } else {
                let at = self.rows.get(start + w).map_or(0, |&i| i as usize);
                self.pool.get(at).copied().unwrap_or(0)
            };
        }
    }

    /// Whether entry `e` is in bitset `id` (tests).
    #[cfg(test)]
    pub fn contains(&self, id: usize, e: usize) -> bool {
        let probe = Probe::new(self, id);
        let word = if self.dense {
            probe.dense_word(e >> 6)
        } else {
            probe.indexed_word(e >> 6)
        };
        word >> (e & 63) & 1 == 1
    }

    /// Mean share of entries a bitset holds, in 1/1024ths.
    pub fn density(&self) -> u32 {
        self.density
    }

    pub fn heap_bytes(&self) -> usize {
        (self.pool.len() + self.summaries.len()) * 8 + self.rows.len() * 4
    }
}

/// A field's bitset as the walk reads it: built from the field and the bitset id its table
/// gave the flow. One type per layout, so that the walk over plain bitsets reads each word
/// straight from a slice held in the probe list, without going through the field.
pub(crate) trait ProbeOf<'a>: Copy {
    /// The probe of bitset `id` of `bits` (a field in this layout).
    fn of(bits: &'a FieldBits, id: u32) -> Self;
    /// What fills the unused slots of a [`ProbeList`] (never read): cheap to make from any
    /// field of the program.
    fn filler(bits: &'a FieldBits) -> Self;
}

/// A side's probes, as the walk asks them.
pub(crate) trait ProbeSet {
    /// The first entry at or after `cursor` every probe allows, among `entries` entries.
    fn first_match(&self, cursor: usize, entries: usize) -> Option<usize>;
}

/// No probes: every entry is allowed.
pub(crate) struct AllEntries;

impl ProbeSet for AllEntries {
    #[inline]
    fn first_match(&self, cursor: usize, entries: usize) -> Option<usize> {
        (cursor < entries).then_some(cursor)
    }
}

/// Plain probes: the first (most selective) one's words, and the others as a fixed array
/// of one to four slices (every program's case: five fields at most) or a slice. Matched
/// into an array once per side, the loop over the other probes unrolls and their slices
/// stay in registers.
pub(crate) struct PlainSet<'a, R> {
    pub first: PlainProbe<'a>,
    pub rest: R,
}

impl<'r, R: AsRef<[PlainProbe<'r>]>> ProbeSet for PlainSet<'_, R> {
    #[inline]
    fn first_match(&self, cursor: usize, entries: usize) -> Option<usize> {
        if cursor >= entries {
            return None;
        }
        scan_plain(self.first, &self.rest, cursor)
    }
}

impl ProbeSet for [Probe<'_>] {
    #[inline]
    fn first_match(&self, cursor: usize, entries: usize) -> Option<usize> {
        if cursor >= entries {
            None
        } else if self.is_empty() {
            Some(cursor)
        } else {
            first_match_indexed(self, cursor, entries)
        }
    }
}

/// A plain bitset: its words (fewer only if the id is out of range, which allows less:
/// fail-closed).
pub(crate) type PlainProbe<'a> = &'a [u64];

impl<'a> ProbeOf<'a> for PlainProbe<'a> {
    #[inline]
    fn of(bits: &'a FieldBits, id: u32) -> Self {
        let start = id as usize * bits.words;
        bits.pool.get(start..start + bits.words).unwrap_or_default()
    }

    #[inline]
    fn filler(_: &'a FieldBits) -> Self {
        &[]
    }
}

/// Every entry of a plain program, for a field that gives a flow no probe: the words of
/// [`ALL_ENTRIES`] a bitset of `bits` has (none past [`DENSE_MAX_WORDS`], which allows
/// nothing: fail-closed; no plain field has more).
pub(crate) trait PlainProbes<'a> {
    fn all_entries(bits: &FieldBits) -> Self;
}

static ALL_ENTRIES: [u64; DENSE_MAX_WORDS] = [!0; DENSE_MAX_WORDS];

impl PlainProbes<'_> for PlainProbe<'_> {
    #[inline]
    fn all_entries(bits: &FieldBits) -> Self {
        ALL_ENTRIES.get(..bits.words).unwrap_or_default()
    }
}

/// A bitset of the indexed layout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe<'a> {
    bits: &'a FieldBits,
    /// `id * words`.
    row: usize,
    /// `id * stride`.
    summary_row: usize,
}

impl<'a> ProbeOf<'a> for Probe<'a> {
    #[inline]
    fn of(bits: &'a FieldBits, id: u32) -> Self {
        Probe::new(bits, id as usize)
    }

    #[inline]
    fn filler(bits: &'a FieldBits) -> Self {
        Probe::new(bits, 0)
    }
}

impl<'a> Probe<'a> {
    #[inline]
    pub fn new(bits: &'a FieldBits, id: usize) -> Probe<'a> {
        Probe {
            bits,
            row: id * bits.words,
            summary_row: id * bits.stride,
        }
    }

    #[cfg(test)]
    fn dense_word(&self, w: usize) -> u64 {
        self.bits.pool.get(self.row + w).copied().unwrap_or(0)
    }

    #[inline]
    fn summary(&self, s: usize) -> u64 {
        let b = self.bits;
        b.summaries.get(self.summary_row + s).copied().unwrap_or(0)
    }

    #[inline]
    fn indexed_word(&self, w: usize) -> u64 {
        let b = self.bits;
        let at = b.rows.get(self.row + w).map_or(0, |&i| i as usize);
        b.pool.get(at).copied().unwrap_or(0)
    }
}

/// The most fields a program probes: own address, other address, L4, source and
/// destination port.
const MAX_PROBES: usize = 5;

/// The probes of one side, one per active field, in a fixed array: the indexed layout's
/// (a dense side makes its probes straight into a [`PlainSet`]) and the diagnostic profile's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeList<P> {
    probes: [P; MAX_PROBES],
    len: usize,
}

impl<'a, P: ProbeOf<'a>> ProbeList<P> {
    /// An empty list; `filler` only occupies the unused slots.
    #[inline]
    pub fn new(filler: P) -> ProbeList<P> {
        ProbeList {
            probes: [filler; MAX_PROBES],
            len: 0,
        }
    }

    /// Add the probe of bitset `id` of `bits`.
    #[inline]
    pub fn push(&mut self, bits: &'a FieldBits, id: u32) {
        if let Some(slot) = self.probes.get_mut(self.len) {
            *slot = P::of(bits, id);
            self.len += 1;
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[P] {
        self.probes.get(..self.len).unwrap_or_default()
    }
}

/// The first entry at or after `cursor` that every probe allows, among `entries` entries.
/// With no probes every entry is allowed. `dense` says how the program's fields store their
/// bitsets (all alike: they share the entry count). AND-ing stops at the first zero, so the
/// first (most selective) probes do most of the work.
#[cfg(test)]
pub(crate) fn first_match(
    probes: &[Probe<'_>],
    dense: bool,
    cursor: usize,
    entries: usize,
) -> Option<usize> {
    if dense {
        let rows: Vec<PlainProbe<'_>> = probes
            .iter()
            .map(|p| {
                let words = p.bits.words;
                p.bits.pool.get(p.row..p.row + words).unwrap_or_default()
            })
            .collect();
        match rows.split_first() {
            None => AllEntries.first_match(cursor, entries),
            Some((&first, rest)) => PlainSet { first, rest }.first_match(cursor, entries),
        }
    } else {
        probes.first_match(cursor, entries)
    }
}

/// Word by word over the first probe's words (at most [`DENSE_MAX_WORDS`]); the other
/// probes are read only where the AND so far is not zero.
#[inline(always)]
fn scan_plain<'r, R: AsRef<[&'r [u64]]>>(first: &[u64], rest: R, cursor: usize) -> Option<usize> {
    let start = cursor >> 6;
    let mut mask = !0u64 << (cursor & 63);
    for (i, &word) in first.get(start..)?.iter().enumerate() {
        let mut x = word & mask;
        mask = !0;
        if x == 0 {
            continue;
        }
        let w = start + i;
        for row in rest.as_ref() {
            x &= row.get(w).copied().unwrap_or(0);
            if x == 0 {
                break;
            }
        }
        if x != 0 {
            return Some((w << 6) | x.trailing_zeros() as usize);
        }
    }
    None
}

/// Summary word by summary word: only words whose summary bit every field has set are read.
fn first_match_indexed(probes: &[Probe<'_>], cursor: usize, entries: usize) -> Option<usize> {
    let start_word = cursor >> 6;
    let mut summary_mask = !0u64 << (start_word & 63);
    for s in (start_word >> 6)..entries.div_ceil(64).div_ceil(64) {
        let mut candidates = summary_mask;
        summary_mask = !0;
        for p in probes {
            candidates &= p.summary(s);
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
            for p in probes {
                hits &= p.indexed_word(w);
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

    // Sweep the keys in order, keeping the bitset of the interval being crossed.
    let mut store = Store::new(words, words <= dense_max_words);
    let empty = store.intern(&wild);
    let mut current = wild;
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
    (store.finish(active, entries), table)
}

/// The joint field of two fields of one program (the same entries, the same layout): every
/// distinct AND of a bitset of `x` and a bitset of `y`, and `ids[a * of_class.len() + c]`,
/// the id of AND(`x`'s bitset `a`, `y`'s bitset `of_class[c]`) for every bitset `a` of `x`
/// and every class `c`. Id 0 is the AND of both fields' bitsets 0 (their wild entries).
/// `None` when the ids and the distinct rows would take more than `max_bytes`: the AND
/// stops as soon as they do, so a large product costs little to refuse.
pub(crate) fn build_joint(
    x: &FieldBits,
    y: &FieldBits,
    of_class: &[u32],
    entries: usize,
    max_bytes: usize,
) -> Option<(FieldBits, Box<[u32]>)> {
    let (rows_x, classes) = (x.distinct(), of_class.len());
    let words = x.words;
    let ids_bytes = rows_x.checked_mul(classes)?.checked_mul(4)?;
    if ids_bytes > max_bytes || y.words != words || y.dense != x.dense {
        return None;
    }
    let mut store = Store::new(words, x.dense);
    let (mut a, mut b, mut and) = (vec![0; words], vec![0; words], vec![0; words]);
    let mut intern = |store: &mut Store, ia: usize, ib: usize| {
        x.read_row(ia, &mut a);
        y.read_row(ib, &mut b);
        for ((o, &p), &q) in and.iter_mut().zip(&a).zip(&b) {
            *o = p & q;
        }
        let id = store.intern(&and);
        (ids_bytes + store.heap_bytes() <= max_bytes).then_some(id)
    };
    intern(&mut store, 0, 0)?;
    // Per bitset of `x`, the joint id of each bitset of `y`, made once whatever the number
    // of classes that share it.
    let mut joint_of_y: Vec<u32> = vec![u32::MAX; y.distinct()];
    let mut ids: Vec<u32> = Vec::with_capacity(rows_x * classes);
    for ia in 0..rows_x {
        joint_of_y.fill(u32::MAX);
        for &ib in of_class {
            let slot = joint_of_y.get_mut(ib as usize)?;
            if *slot == u32::MAX {
                *slot = intern(&mut store, ia, ib as usize)?;
            }
            ids.push(*slot);
        }
    }
    Some((store.finish(true, entries), ids.into_boxed_slice()))
}

/// How the bitsets being interned are hashed: a multiply-xor over their words from a
/// random seed, finished by a full mix. Rows are a few dozen words, interned by the
/// thousand per program (the joint fields: about 38,000 at 10,000 bench rules); std's
/// SipHash took about 1,700 instructions an intern there, most of the joint fields' build.
/// The keys come from the operator's own policy, and the joint budget bounds how many a
/// program interns.
#[derive(Debug, Clone, Copy)]
struct RowHashing {
    seed: u64,
}

impl RowHashing {
    fn new() -> RowHashing {
        RowHashing {
            seed: RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl BuildHasher for RowHashing {
    type Hasher = RowHasher;
    fn build_hasher(&self) -> RowHasher {
        RowHasher(self.seed)
    }
}

struct RowHasher(u64);

impl Hasher for RowHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    /// MurmurHash3's finalizer: every bit of the state reaches the top bits the table uses.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ h >> 33
    }
}

/// The distinct bitsets of a field while it is built, in either layout.
struct Store {
    words: usize,
    dense: bool,
    ids: HashMap<Vec<u64>, u32, RowHashing>,
    pool: Vec<u64>,
    word_ids: HashMap<u64, u32>,
    rows: Vec<u32>,
    summaries: Vec<u64>,
    /// Entries over all distinct bitsets.
    members: u64,
}

impl Store {
    fn new(words: usize, dense: bool) -> Store {
        Store {
            words,
            dense,
            ids: HashMap::with_hasher(RowHashing::new()),
            pool: Vec::new(),
            word_ids: HashMap::new(),
            rows: Vec::new(),
            summaries: Vec::new(),
            members: 0,
        }
    }

    /// The id of a bitset (wild entries included), storing it if new.
    fn intern(&mut self, bits: &[u64]) -> u32 {
        if let Some(&id) = self.ids.get(bits) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.members += bits.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
        if self.dense {
            self.pool.extend_from_slice(bits);
        } else {
            let mut summary = vec![0u64; self.words.div_ceil(64)];
            for (w, &word) in bits.iter().enumerate() {
                let next = self.pool.len() as u32;
                let at = *self.word_ids.entry(word).or_insert(next);
                if at == next {
                    self.pool.push(word);
                }
                self.rows.push(at);
                if word != 0 {
                    summary[w >> 6] |= 1 << (w & 63);
                }
            }
            self.summaries.extend_from_slice(&summary);
        }
        self.ids.insert(bits.to_vec(), id);
        id
    }

    /// What the bitsets stored so far take, as [`FieldBits::heap_bytes`] counts them.
    fn heap_bytes(&self) -> usize {
        (self.pool.len() + self.summaries.len()) * 8 + self.rows.len() * 4
    }

    fn finish(self, active: bool, entries: usize) -> FieldBits {
        let possible = (self.ids.len() * entries).max(1) as u64;
        FieldBits {
            density: if active {
                (self.members * 1024 / possible) as u32
            } else {
                1024
            },
            active,
            dense: self.dense,
            words: self.words,
            stride: if self.dense {
                0
            } else {
                self.words.div_ceil(64)
            },
            pool: self.pool.into_boxed_slice(),
            rows: self.rows.into_boxed_slice(),
            summaries: self.summaries.into_boxed_slice(),
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
    fn joint_bitsets_are_the_and_of_both_fields_in_either_layout() {
        let mut rng = Rng(0x0dd_ba11_cafe_f00d);
        for (entries, dense_max) in [5, 130, 2500]
            .into_iter()
            .flat_map(|n| DENSE_LIMITS.map(|d| (n, d)))
        {
            let xs = random_sets(&mut rng, entries);
            let ys = random_sets(&mut rng, entries);
            let build = |sets: &[Option<RangeSet<u32>>]| {
                let refs: Vec<_> = sets.iter().map(Option::as_ref).collect();
                build_field_with(&refs, 63, dense_max).0
            };
            let (x, y) = (build(&xs), build(&ys));
            // Classes: every bitset of `y`, some several times, in a shuffled order.
            let of_class: Vec<u32> = (0..y.distinct() * 2)
                .map(|_| rng.below(y.distinct() as u64) as u32)
                .collect();
            let (joint, ids) = build_joint(&x, &y, &of_class, entries, usize::MAX).unwrap();
            assert_eq!(joint.is_dense(), x.is_dense());
            assert_eq!(ids.len(), x.distinct() * of_class.len());
            for a in 0..x.distinct() {
                for (c, &b) in of_class.iter().enumerate() {
                    let id = ids[a * of_class.len() + c] as usize;
                    for e in 0..entries {
                        let want = x.contains(a, e) && y.contains(b as usize, e);
                        assert_eq!(
                            joint.contains(id, e),
                            want,
                            "{entries} entries: {a} {c} {e}"
                        );
                    }
                }
            }
            // Within its exact size it fits; a byte less and it does not.
            let size = ids.len() * 4 + joint.heap_bytes();
            assert!(build_joint(&x, &y, &of_class, entries, size).is_some());
            assert!(build_joint(&x, &y, &of_class, entries, size - 1).is_none());
        }
    }

    #[test]
    fn every_entry_stands_in_for_a_skipped_plain_probe() {
        let sets: Vec<Option<RangeSet<u32>>> = vec![None; 130];
        let refs: Vec<Option<&RangeSet<u32>>> = sets.iter().map(Option::as_ref).collect();
        let (bits, _) = build_field(&refs, 63);
        let all = PlainProbe::all_entries(&bits);
        assert_eq!(all, [!0u64; 3]);
        // With a real probe, exactly that probe's entries (none past the last entry).
        let one = set(&[(5, 5)]);
        let mut sets: Vec<Option<&RangeSet<u32>>> = vec![Some(&one); 130];
        sets[129] = None;
        let (bits, table) = build_field(&sets, 63);
        let only_wild = PlainProbe::of(&bits, table.lookup(6));
        let scan = PlainSet {
            first: all,
            rest: [only_wild],
        };
        assert_eq!(scan.first_match(0, 130), Some(129));
        assert_eq!(scan.first_match(130, 130), None);
        let scan = PlainSet {
            first: only_wild,
            rest: [all],
        };
        assert_eq!(scan.first_match(0, 130), Some(129));
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
