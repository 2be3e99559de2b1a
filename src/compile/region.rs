//! Service regions: a first cut of every large program on the service key, so that a side
//! walks only the entries that can match its flow's protocol (and port range).
//!
//! An entry whose service set (the service keys its rule accepts, as the service field holds
//! them: named ports over-approximated, checked exactly at the walk) meets no key of a set
//! R of keys can never match a flow whose key is in R. So the snapshot's service classes
//! are split into *regions*, runs of consecutive classes (one per protocol the rules name,
//! the gaps between them, and, where it pays, a protocol's keys cut into a few chunks at the
//! starts of the rules' narrow ranges), and each large program gets one *variant* per
//! distinct set of entries a region keeps: the same program over only those entries, in
//! order, Pass targets moved to the first kept entry at or after the old target. Tier ends
//! and the default constrain no service, so every variant keeps them.
//!
//! Data flow per side: the endpoint's index entry names a program *slot*; with more than one
//! region, the flow's service class (looked up once per flow, as the service field needs it
//! anyway) gives its region by a few compares against [`Regions::starts`], and the slot's
//! [`Variant`] for that region names the program to walk and what to add to the class to
//! index the variant's service class array. A variant's class array covers only its
//! regions' classes (concatenated in region order), so the arrays of all the variants of a
//! program add up to one program's.
//!
//! Variants are projections of the program as built ([`Keep`]): every field's bitsets
//! projected onto the kept entries and deduplicated, their tables and class arrays
//! renumbered; the own-address field keeps its ids, which the endpoint index holds per slot.
//! A field that rules out no kept entry in a variant is not probed there.
//!
//! How far to cut is a budget ([`SplitBudget`]): programs of fewer than `min_words` words
//! keep one variant for every region; the number of chunks per protocol is the largest
//! whose variants add up to at most `entry_factor` times the split programs' entries; a
//! program whose own variants would exceed that keeps one variant; and the variants may add
//! at most `snapshot_bytes` to the snapshot, taken by programs in order (the others keep one
//! variant).

use std::collections::HashMap;

use super::bitset::{DENSE_MAX_WORDS, Keep};
use super::keys;
use super::program::{ClassedField, Entry, Field, JointField, L4Field, Program};
use super::table::ServiceClasses;

/// The most regions a snapshot has: a flow's service class carries its region in its top
/// bits, from [`REGION_SHIFT`] up.
pub(crate) const MAX_REGIONS: usize = 16;
pub(crate) const REGION_SHIFT: u32 = 28;

/// Each program slot's variant per region of the snapshot's service classes.
#[derive(Debug, Clone)]
pub(crate) struct Regions {
    count: usize,
    /// Slot `s`'s variant in region `r`: `dispatch[s * count + r]`; empty with one region,
    /// each slot then walking its own program.
    dispatch: Box<[Variant]>,
}

/// What a side walks: a program, and what to add (wrapping) to the flow's service class
/// (region bits included) to index that program's service class array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Variant {
    pub program: u32,
    pub delta: u32,
}

impl Regions {
    /// One region: every slot walks its own program.
    pub fn single() -> Regions {
        Regions {
            count: 1,
            dispatch: Box::default(),
        }
    }

    /// The variant slot `slot` walks for a flow of service class `class` (asked only when
    /// there are several regions). Out of range (only a broken snapshot's), no program:
    /// the side stays denied.
    #[inline]
    pub fn pick(&self, slot: u32, class: impl FnOnce() -> u32) -> Variant {
        if self.count <= 1 {
            return Variant {
                program: slot,
                delta: 0,
            };
        }
        let region = (class() >> REGION_SHIFT) as usize;
        let at = slot as usize * self.count + region;
        match self.dispatch.get(at) {
            Some(&v) if region < self.count => v,
            _ => Variant {
                program: u32::MAX,
                delta: 0,
            },
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.dispatch.len() * std::mem::size_of::<Variant>()
    }
}

/// How far programs are split (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SplitBudget {
    /// Programs of fewer words keep one variant.
    pub min_words: usize,
    /// A split program's variants may hold at most this many times its entries.
    pub entry_factor: usize,
    /// Bytes the variants may add to the snapshot (over the programs they replace).
    pub snapshot_bytes: usize,
}

/// At 10,000 bench rules a program is 18-19 words; at 1,000 rules 2-3. A program of a few
/// words is read in a line or two whatever its variants, and splitting it would cost a
/// dispatch read for nothing.
pub(crate) const SPLIT_BUDGET: SplitBudget = SplitBudget {
    min_words: 4,
    entry_factor: 2,
    snapshot_bytes: 16 << 20,
};

/// Chunks per protocol tried, most first.
const CHUNK_CHOICES: [usize; 5] = [8, 6, 4, 2, 1];

/// A narrow range (for chunk cuts) spans at most this many keys: a sixteenth of a port
/// protocol's keys. Wider ones (`notPorts: [22]`) are in every chunk whatever the cuts.
const NARROW_KEYS: u32 = (keys::PORT_MAX + 1) / 16;

/// The service-key ranges of the snapshot's rules, as the chunk cuts read them.
pub(crate) fn narrow_starts(ranges: impl IntoIterator<Item = (u32, u32)>) -> Vec<u32> {
    let mut starts: Vec<u32> = ranges
        .into_iter()
        .filter(|&(lo, hi)| hi - lo < NARROW_KEYS && lo >> 17 == hi >> 17)
        .map(|(lo, _)| lo)
        .collect();
    starts.sort_unstable();
    starts
}

/// Split the programs (see the module documentation): variants replace a split program in
/// its slot (the first) and are appended (the others). `narrow` are the narrow range starts
/// of the rules ([`narrow_starts`]). Returns the regions, with one for the snapshot when no
/// program is split.
pub(crate) fn split_programs(
    programs: &mut Vec<Program>,
    service: &mut ServiceClasses,
    narrow: &[u32],
    budget: SplitBudget,
) {
    let classes = service.table();
    let large: Vec<usize> = (0..programs.len())
        .filter(|&p| {
            let program = &programs[p];
            program.entries.len() >= budget.min_words * 64
                && program.service.bits.is_active()
                && program.service.by_class.len() == classes.len()
        })
        .collect();
    if large.is_empty() || classes.len() < 2 || classes.len() >= 1 << REGION_SHIFT {
        return;
    }
    let class_starts: Vec<u32> = classes.starts().collect();
    let Some((starts, plans)) = choose_regions(programs, &large, &class_starts, narrow, budget)
    else {
        return;
    };
    let count = starts.len() + 1;
    let slots = programs.len();
    let bounds = region_bounds(&starts, classes.len());
    // Unsplit slots: their own program, indexed by the class without its region.
    let mut dispatch: Vec<Variant> = (0..slots as u32)
        .flat_map(|slot| {
            (0..count as u32).map(move |r| Variant {
                program: slot,
                delta: 0u32.wrapping_sub(r << REGION_SHIFT),
            })
        })
        .collect();
    let mut left = budget.snapshot_bytes;
    for (slot, plan) in plans {
        let parent = &programs[slot];
        let variants: Vec<(Program, Vec<(usize, u32)>)> = plan
            .iter()
            .map(|(mask, regions)| project_variant(parent, mask, regions, &bounds))
            .collect();
        let added = variants
            .iter()
            .map(|(v, _)| program_bytes(v))
            .sum::<usize>()
            .saturating_sub(program_bytes(parent));
        if added > left {
            continue;
        }
        left -= added;
        for (i, (variant, deltas)) in variants.into_iter().enumerate() {
            let at = if i == 0 {
                programs[slot] = variant;
                slot
            } else {
                programs.push(variant);
                programs.len() - 1
            };
            for (region, delta) in deltas {
                dispatch[slot * count + region] = Variant {
                    program: at as u32,
                    delta,
                };
            }
        }
    }
    service.set_regions(
        Regions {
            count,
            dispatch: dispatch.into_boxed_slice(),
        },
        &bounds,
    );
}

/// What a program takes, as the snapshot counts it.
pub(crate) fn program_bytes(program: &Program) -> usize {
    std::mem::size_of::<Program>() + program.heap_bytes()
}

/// The classes of each region: `bounds[r]..bounds[r + 1]`.
fn region_bounds(starts: &[u32], classes: usize) -> Vec<u32> {
    std::iter::once(0)
        .chain(starts.iter().copied())
        .chain(std::iter::once(classes as u32))
        .collect()
}

/// A split program's variants: per distinct kept-entry mask, the regions it serves.
type Plan = Vec<(Vec<u64>, Vec<usize>)>;

/// A program slot with its plan.
type SlotPlan = (usize, Plan);

/// The region starts (classes) and, per program to split, its plan: the most chunks per
/// protocol whose variants keep within the entry budget, or `None` when even the
/// protocol regions alone do not pay (no program would be split).
fn choose_regions(
    programs: &[Program],
    large: &[usize],
    class_starts: &[u32],
    narrow: &[u32],
    budget: SplitBudget,
) -> Option<(Vec<u32>, Vec<SlotPlan>)> {
    let class_of = |key: u32| class_starts.partition_point(|&s| s <= key) as u32;
    // The classes holding the first key of each protocol some class starts within, and of
    // the protocol after it.
    let mut protocols: Vec<u32> = class_starts.iter().map(|&key| key >> 17).collect();
    protocols.dedup();
    let protocol_starts: Vec<u32> = protocols
        .iter()
        .flat_map(|&p| [p << 17, (p + 1) << 17])
        .filter(|&key| key <= keys::L4_MAX)
        .map(class_of)
        .collect();
    let total_entries: usize = large.iter().map(|&p| programs[p].entries.len()).sum();
    for chunks in CHUNK_CHOICES {
        let mut starts = protocol_starts.clone();
        starts.extend(chunk_starts(narrow, chunks).into_iter().map(class_of));
        starts.retain(|&c| c > 0);
        starts.sort_unstable();
        starts.dedup();
        if starts.len() >= MAX_REGIONS {
            if chunks > 1 {
                continue;
            }
            // Too many protocols named: keep the first ones' starts only.
            starts.truncate(MAX_REGIONS - 1);
        }
        let bounds = region_bounds(&starts, class_starts.len() + 1);
        let plans: Vec<(usize, Plan, usize)> = large
            .iter()
            .map(|&p| {
                let (plan, kept) = plan_program(&programs[p], &bounds);
                (p, plan, kept)
            })
            .collect();
        let kept: usize = plans.iter().map(|(_, _, k)| k).sum();
        if kept <= total_entries * budget.entry_factor || chunks == 1 {
            let plans = plans
                .into_iter()
                .filter(|(p, plan, kept)| {
                    plan.len() > 1 && *kept <= programs[*p].entries.len() * budget.entry_factor
                })
                .map(|(p, plan, _)| (p, plan))
                .collect::<Vec<_>>();
            return (!plans.is_empty()).then_some((starts, plans));
        }
    }
    None
}

/// Cut keys that split each protocol's narrow ranges into `chunks` runs of equal count.
fn chunk_starts(narrow: &[u32], chunks: usize) -> Vec<u32> {
    if chunks <= 1 {
        return Vec::new();
    }
    narrow
        .chunk_by(|a, b| a >> 17 == b >> 17)
        .filter(|run| run.len() >= 4 * chunks)
        .flat_map(|run| (1..chunks).filter_map(move |i| run.get(i * run.len() / chunks).copied()))
        .collect()
}

/// A program's variants over these regions, and the entries they hold in all.
fn plan_program(program: &Program, bounds: &[u32]) -> (Plan, usize) {
    let service = &program.service;
    let words = service.bits.words();
    let mut row = vec![0u64; words];
    let mut plan: Plan = Vec::new();
    let mut index: HashMap<Vec<u64>, usize> = HashMap::new();
    for (region, range) in bounds.windows(2).enumerate() {
        let mut mask = vec![0u64; words];
        // Classes often share a bitset: each distinct id is OR-ed once.
        let mut last = u32::MAX;
        for c in range[0]..range[1] {
            let id = service.by_class.get(c as usize).copied().unwrap_or(0);
            if id == last {
                continue;
            }
            last = id;
            service.bits.read_row(id as usize, &mut row);
            for (m, &r) in mask.iter_mut().zip(&row) {
                *m |= r;
            }
        }
        match index.get(&mask) {
            Some(&v) => plan[v].1.push(region),
            None => {
                index.insert(mask.clone(), plan.len());
                plan.push((mask, vec![region]));
            }
        }
    }
    let kept = plan
        .iter()
        .map(|(mask, _)| mask.iter().map(|w| w.count_ones() as usize).sum::<usize>())
        .sum();
    (plan, kept)
}

/// The variant of `parent` over the entries `mask` keeps, serving `regions`; with, per
/// region, the delta from a class of it to its index in the variant's class array.
fn project_variant(
    parent: &Program,
    mask: &[u64],
    regions: &[usize],
    bounds: &[u32],
) -> (Program, Vec<(usize, u32)>) {
    let keep = Keep::new(mask);
    let dense = keep.words_out() <= DENSE_MAX_WORDS;
    // The variant's classes, region after region.
    let mut classes: Vec<u32> = Vec::new();
    let mut deltas = Vec::new();
    for &r in regions {
        let (first, end) = (bounds[r], bounds[r + 1]);
        let tagged_first = first | (r as u32) << REGION_SHIFT;
        deltas.push((r, (classes.len() as u32).wrapping_sub(tagged_first)));
        classes.extend(first..end);
    }
    let entries = project_entries(&parent.entries, &keep);
    let service = {
        let old = &parent.service;
        let ids = classes
            .iter()
            .map(|&c| old.by_class.get(c as usize).copied().unwrap_or(0));
        let (bits, remap) = old.bits.project(&keep, ids.clone(), dense);
        ClassedField {
            by_class: ids.map(|id| remap_id(&remap, id)).collect(),
            bits,
            table: old.table.map_values(|id| remap_id(&remap, id)),
        }
    };
    let mut variant = Program {
        entries,
        order: parent.order,
        dense,
        icmp_only_for_icmp: parent.icmp_only_for_icmp,
        service,
        joint_v4: project_joint(&parent.joint_v4, &keep, dense),
        remote_v4: project_classed(&parent.remote_v4, &keep, dense),
        src_port: project_plain(&parent.src_port, &keep, dense),
        local: [
            parent.local[0].project_keeping_ids(&keep, dense),
            parent.local[1].project_keeping_ids(&keep, dense),
        ],
        icmp: {
            let field = project_plain(&parent.icmp.field, &keep, dense);
            L4Field::new(field)
        },
        remote_v6: project_classed(&parent.remote_v6, &keep, dense),
        joint_v6: project_joint(&parent.joint_v6, &keep, dense),
        checks: parent.checks.clone(),
    };
    variant.order = [0, 1].map(|family| super::build::probe_order(&variant, family));
    (variant, deltas)
}

fn remap_id(remap: &[u32], id: u32) -> u32 {
    remap.get(id as usize).copied().unwrap_or(0)
}

/// The kept entries, Pass targets moved to the first kept entry at or after theirs.
fn project_entries(entries: &[Entry], keep: &Keep) -> Box<[Entry]> {
    // New index of the first kept entry at or after each old index (and the end).
    let mut next = Vec::with_capacity(entries.len() + 1);
    let mut kept = 0u32;
    for e in 0..entries.len() {
        next.push(kept);
        kept += u32::from(keep.keeps(e));
    }
    next.push(kept);
    entries
        .iter()
        .enumerate()
        .filter(|&(e, _)| keep.keeps(e))
        .map(|(_, entry)| Entry {
            target: next.get(entry.target as usize).copied().unwrap_or(kept),
            ..*entry
        })
        .collect()
}

fn project_plain(field: &Field<u32>, keep: &Keep, dense: bool) -> Field<u32> {
    let (bits, remap) = field
        .bits
        .project(keep, 0..field.bits.distinct() as u32, dense);
    Field {
        table: field.table.map_values(|id| remap_id(&remap, id)),
        bits,
    }
}

fn project_classed<K: super::addrset::Key>(
    field: &ClassedField<K>,
    keep: &Keep,
    dense: bool,
) -> ClassedField<K> {
    let (bits, remap) = field
        .bits
        .project(keep, 0..field.bits.distinct() as u32, dense);
    ClassedField {
        by_class: field
            .by_class
            .iter()
            .map(|&id| remap_id(&remap, id))
            .collect(),
        table: field.table.map_values(|id| remap_id(&remap, id)),
        bits,
    }
}

fn project_joint(field: &JointField, keep: &Keep, dense: bool) -> JointField {
    if !field.is_used() {
        return JointField::unused();
    }
    let (bits, remap) = field
        .bits
        .project(keep, 0..field.bits.distinct() as u32, dense);
    JointField {
        ids: field.ids.iter().map(|&id| remap_id(&remap, id)).collect(),
        classes: field.classes,
        bits,
    }
}
