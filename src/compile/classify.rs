//! The hot path: one flow through a [`Snapshot`] (SPEC §A1, §3.3–§4.4).
//!
//! Per flow: one endpoint-index probe per address and one lookup of the snapshot's service
//! class (protocol and destination port, or ICMP type and code, shared by both sides and
//! every program); per side that runs, the failsafe ports (host endpoints), then one table
//! lookup per remaining active field of the side's program (the endpoint's own address needs
//! none: its bitset id sits in the index entry; the service and other-address fields read
//! their class's bitset id from an array, and the other address's class sits in its index
//! entry when it is an endpoint's; the joint address field reads its bitset id from one
//! array by both) and the walk.
//! Nothing allocates: probes live in a fixed array, Log rules go to a fixed-size record.
//! This module must not use model, selector or policy types (STYLE §2).
//!
//! Prefetching the ingress side's rows before the egress walk (software prefetch of every
//! line of its plain probes' rows) was tried and not kept. Making the probes a second time
//! for the prefetch: 401 -> 476 instructions a verdict at 10 bench rules, 789 -> 964 at
//! 10,000; making both sides' probes first and keeping them through the egress walk: 554
//! and 1,091 (the probe lists copied, the walk out of line). Neither was faster: criterion
//! medians at 10,000 rules 197-243 ns against 166-197 ns without, first variant; 265 ns
//! against 224 ns, second (alternating runs on the shared machine, load 2-3.5).
//!
//! Service regions (a first cut of each large program on the service key) were tried and
//! not kept (the commit before the one that took them out holds the code). The snapshot's
//! service classes were split into regions (one per protocol the rules name and the gaps
//! between them, plus K chunks of a protocol's keys cut at quantiles of the starts of the
//! rules' narrow ranges); each program of 4 words or more got one variant per distinct set
//! of entries a region keeps (entries whose service set meets it, order kept, Pass targets
//! moved to the next kept entry, every field's bitsets projected onto the kept entries with
//! a word-wise bit compress, class arrays cut to the region's classes); the flow's service
//! class carried its region in its top bits and each side read its slot's (program, class
//! offset) from a dispatch table. Exact (unit cases with a forced split, the 1,024 bench
//! flows), and the walk read fewer words: the slowest bench flows at 10,000 rules 19+19
//! words per side before, 12-14 with protocol regions only, 5-6 with K = 4. But per
//! verdict at 10,000 bench rules (callgrind, D1 48 KiB): instructions 678 -> 654 (protocol
//! regions, 106 programs instead of 28), 624 (K = 2, 184), 607 (K = 4, 340); L1 misses
//! 9.87 -> 9.59, 11.0, 12.4: the word loop was only about 165 of the 678 instructions (most
//! walks end within a few words), and each variant has its own rows and class arrays, so
//! the flows reuse fewer lines and misses grow with the variants. Criterion estimates of
//! `classify/compiled/10000`, old and protocol regions by turns: 174/146, 103/104,
//! 126/155, 153/165, 149/175 ns (no gain above the noise; K = 4: 128, 93, 172 ns). The
//! cost: `compile/10000` 59-88 ms -> 97-134 ms (protocol regions) and 134-191 ms (K = 4),
//! over the 100 ms target; snapshot 10.7 MB -> 11.5 MB and 19.9 MB; and where nothing
//! splits (10, 100 and 1,000 rules) about 40 instructions more per verdict for the dispatch
//! (382 -> 421, 598 -> 639, 578 -> 618).
//!
//! What a verdict writes: each side returns (allowed, rule) in registers and writes only
//! its Log record; the verdict is one literal built in the caller's slot, and the flow
//! fields hold the two index entries by reference (the named-port check gathers its port
//! facts only when an entry has one). Before, the verdict was a local decided in place and
//! copied out whole, and the flow fields copied the remote classes and port facts: per
//! verdict (callgrind) 82.1 -> 70.6 stores at 10 bench rules, 97.8 -> 84.9 at 10,000, and
//! 382 -> 371 instructions, 678 -> 674. Building the sides with `Option` combinators
//! (`map`, `is_none_or`) saved the same stores but took 14-21 instructions more a verdict
//! (396 at 10 rules, 699 at 10,000): LLVM tested each option's tag again.
//!
//! How a dense side holds its probes: made straight into the set its walk reads, by the
//! length of the program's probe order (a field that gives none stands as every entry).
//! Before, they were pushed into a list of five (pointer, length) slots, all written with
//! a filler first and read back: per verdict 371 -> 328 instructions and 70.6 -> 48.4
//! stores at 10 bench rules, 674 -> 600 and 84.9 -> 58.6 at 10,000. Made by a closure, the
//! probe stayed out of line (a call a probe): 358 and 667 instructions, stores 66.0 and
//! 85.8. The indexed layout (programs over 32 words) and the diagnostic profile still use
//! the list. The service probe is written out in the side, not made through
//! `ClassedField::probe_with`, whose class closure LLVM kept out of line once the probes
//! were made in place: 328 -> 326 instructions at 10 bench rules, 600 -> 590 at 10,000,
//! stores 59.3 -> 53.6 at 100 and 58.6 -> 53.3 at 10,000. Criterion medians of the three
//! rounds together, old and new by turns (shared machine, noisy: earlier turns of the
//! same binaries gave 88-172 ns at 10,000 rules either way): `classify/compiled/10000`
//! 164.5/130.4, 153.0/120.8, 156.2/128.7 ns; `/10` 65.5/53.0, 68.6/59.1, 68.4/54.6 ns.
//!
//! Not kept either (callgrind per verdict, 10 / 10,000 bench rules; as built here 326 / 590
//! instructions, 5.54 mispredicted branches at 10,000): looking the flow's service class up
//! before its sides wherever every program reads the shared classes (so that neither side
//! tests whether it is already known): 336 / 583 instructions, 5.15 mispredicts; criterion
//! medians alternating with this build by turns, four each, no better (`/10000` 83 against
//! 77 ns, single-verdict p50 119 against 107 ns). Class arrays of `u16` instead of `u32`:
//! L1 misses at 10,000 rules 9.92 -> 9.88, as the misses there are first touches of a
//! (program, class) pair, not lines crowded out.

use std::cell::Cell;
use std::net::IpAddr;

use super::addrset::Key;
use super::bitset::{
    AllEntries, FieldBits, PlainProbe, PlainProbes, PlainSet, Probe, ProbeList, ProbeOf, ProbeSet,
};
use super::keys;
use super::program::{
    Act, EGRESS, Entry, INGRESS, JointField, PortFacts, ProbeField, Program, RemoteField,
};
use super::table::{AddressIndex, ClassTable};
use crate::snapshot::{
    AddressEntry, EndpointId, FlowKey, FlowOutcome, FlowVerdict, LoggedRules, RuleId, SideVerdict,
    Snapshot,
};

/// Decide a flow; `log` also sees every Log rule hit, with the direction of its side
/// (`program::INGRESS` or `EGRESS`), beyond what [`LoggedRules`] keeps.
#[inline]
pub(crate) fn classify(
    snapshot: &Snapshot,
    key: &FlowKey,
    log: &mut impl FnMut(usize, RuleId),
) -> FlowVerdict {
    match (key.src, key.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            classify_in(snapshot, key, u32::from(s), u32::from(d), log)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            classify_in(snapshot, key, u128::from(s), u128::from(d), log)
        }
        _ => FlowVerdict {
            allowed: false,
            outcome: FlowOutcome::MixedFamilies,
            egress: None,
            ingress: None,
        },
    }
}

/// An address family's key type, with the tables of that family.
pub(crate) trait FamilyKey: Key {
    const FAMILY: usize;
    fn index(snapshot: &Snapshot) -> &AddressIndex<Self, AddressEntry>;
    fn remote(program: &Program) -> &RemoteField<Self>;
    fn joint(program: &Program) -> &JointField;
    fn remote_classes(snapshot: &Snapshot) -> &ClassTable<Self>;
}

impl FamilyKey for u32 {
    const FAMILY: usize = 0;
    #[inline]
    fn index(snapshot: &Snapshot) -> &AddressIndex<u32, AddressEntry> {
        &snapshot.index_v4
    }
    #[inline]
    fn remote(program: &Program) -> &RemoteField<u32> {
        &program.remote_v4
    }
    #[inline]
    fn joint(program: &Program) -> &JointField {
        &program.joint_v4
    }
    #[inline]
    fn remote_classes(snapshot: &Snapshot) -> &ClassTable<u32> {
        &snapshot.remote_classes.v4
    }
}

impl FamilyKey for u128 {
    const FAMILY: usize = 1;
    #[inline]
    fn index(snapshot: &Snapshot) -> &AddressIndex<u128, AddressEntry> {
        &snapshot.index_v6
    }
    #[inline]
    fn remote(program: &Program) -> &RemoteField<u128> {
        &program.remote_v6
    }
    #[inline]
    fn joint(program: &Program) -> &JointField {
        &program.joint_v6
    }
    #[inline]
    fn remote_classes(snapshot: &Snapshot) -> &ClassTable<u128> {
        &snapshot.remote_classes.v6
    }
}

/// The index entry of an endpoint address.
pub(crate) fn address_entry(snapshot: &Snapshot, addr: IpAddr) -> Option<&AddressEntry> {
    match addr {
        IpAddr::V4(a) => u32::index(snapshot).lookup(u32::from(a)),
        IpAddr::V6(a) => u128::index(snapshot).lookup(u128::from(a)),
    }
}

#[inline]
fn classify_in<K: FamilyKey>(
    snapshot: &Snapshot,
    key: &FlowKey,
    src: K,
    dst: K,
    log: &mut impl FnMut(usize, RuleId),
) -> FlowVerdict {
    let index = K::index(snapshot);
    let source = index.lookup(src);
    let destination = index.lookup(dst);
    if source.is_none() && destination.is_none() {
        return FlowVerdict {
            allowed: snapshot.unmatched_allowed,
            outcome: FlowOutcome::Unmatched(snapshot.unmatched_rule),
            egress: None,
            ingress: None,
        };
    }
    let flow = FlowFields::new(key, source, destination);
    // Each side's result comes back in registers and its Log record in a local; the verdict
    // is one literal, built in the caller's slot (a verdict built first and decided in
    // place was copied out whole).
    let (mut allowed, mut egress, mut ingress) = (true, None, None);
    if let Some(a) = source {
        let mut logged = LoggedRules::default();
        let side = run_side(snapshot, a, EGRESS, dst, &flow, &mut logged, log);
        allowed = side.allowed;
        egress = Some(side.verdict(a, logged));
    }
    if let Some(a) = destination {
        let mut logged = LoggedRules::default();
        let side = run_side(snapshot, a, INGRESS, src, &flow, &mut logged, log);
        allowed &= side.allowed;
        ingress = Some(side.verdict(a, logged));
    }
    FlowVerdict {
        allowed,
        outcome: FlowOutcome::Evaluated,
        egress,
        ingress,
    }
}

/// A service class not yet looked up (no snapshot has 2^32 classes).
const NOT_LOOKED_UP: u32 = u32::MAX;

impl<'a> FlowFields<'a> {
    /// The keys of a flow between these index entries (`None`: not an endpoint).
    #[inline]
    pub(super) fn new(
        key: &'a FlowKey,
        source: Option<&'a AddressEntry>,
        destination: Option<&'a AddressEntry>,
    ) -> FlowFields<'a> {
        FlowFields {
            key,
            service_class: Cell::new(NOT_LOOKED_UP),
            source,
            destination,
        }
    }

    /// The remote-address class of the side's other address when it is an endpoint's (its
    /// index entry holds it): ingress sides see the source as the other address, egress
    /// sides the destination.
    #[inline]
    pub(super) fn remote_class(&self, direction: usize) -> Option<u32> {
        let other = if direction == INGRESS {
            self.source
        } else {
            self.destination
        };
        other.map(|a| a.remote_class)
    }

    /// What the exact named-port check needs: made only when an entry has one (rare).
    pub(super) fn facts(&self) -> PortFacts {
        let k = self.key;
        PortFacts {
            protocol: k.protocol,
            src_port: k.src_port,
            dst_port: k.dst_port,
            src_endpoint: self.source.map(|a| a.endpoint),
            dst_endpoint: self.destination.map(|a| a.endpoint),
        }
    }

    #[inline(always)]
    fn service_class(&self, snapshot: &Snapshot) -> u32 {
        let mut class = self.service_class.get();
        if class == NOT_LOOKED_UP {
            let k = self.key;
            class =
                snapshot
                    .service_classes
                    .lookup(k.protocol, k.dst_port, k.icmp_type, k.icmp_code);
            self.service_class.set(class);
        }
        class
    }
}

/// The flow's keys, computed once for both sides. Only references and one cell: written
/// once per verdict, read by both sides (the ports and endpoints the named-port check needs
/// are gathered by [`FlowFields::facts`] when an entry has one).
pub(super) struct FlowFields<'a> {
    pub key: &'a FlowKey,
    /// The snapshot's service class of the protocol and destination port, looked up by the
    /// first side whose program has a service field using the shared classes (small
    /// policies often have none; a snapshot too large to share them has none either).
    service_class: Cell<u32>,
    /// The index entries of the source and destination (`None`: not an endpoint).
    source: Option<&'a AddressEntry>,
    destination: Option<&'a AddressEntry>,
}

/// How one side went, returned in registers: its Log record is written apart.
#[derive(Debug, Clone, Copy)]
struct Decided {
    allowed: bool,
    rule: RuleId,
}

impl Decided {
    /// A side not decided by its program: denied, fail-closed (only a broken snapshot's
    /// would not be).
    #[inline]
    fn denied(snapshot: &Snapshot) -> Decided {
        Decided {
            allowed: false,
            rule: snapshot.unmatched_rule,
        }
    }

    #[inline]
    fn verdict(self, address: &AddressEntry, logged: LoggedRules) -> SideVerdict {
        SideVerdict {
            endpoint: EndpointId(address.endpoint),
            allowed: self.allowed,
            rule: self.rule,
            logged,
        }
    }
}

/// Decide one side; its Log hits go to `logged` (and `log`).
#[inline]
fn run_side<K: FamilyKey>(
    snapshot: &Snapshot,
    address: &AddressEntry,
    direction: usize,
    remote: K,
    flow: &FlowFields<'_>,
    logged: &mut LoggedRules,
    log: &mut impl FnMut(usize, RuleId),
) -> Decided {
    if address.host && failsafe_admits(snapshot, direction, flow) {
        return Decided {
            allowed: true,
            rule: snapshot.failsafe_rule,
        };
    }
    let Some(program) = snapshot.programs.get(address.programs[direction] as usize) else {
        return Decided::denied(snapshot);
    };
    let mut log_side = |rule| {
        logged.push(rule);
        log(direction, rule);
    };
    let walk = Walk {
        snapshot,
        program,
        address,
        direction,
        flow,
    };
    // No hit is unreachable (every program ends in an entry that always matches): the
    // side stays a denial, fail-closed.
    let hit = if program.dense {
        // The probes made straight into the set the walk reads, by the order's length: no
        // list of slots written first and read back (see `PlainSet`). A field that gives no
        // probe (the ICMP field of a flow of another protocol) allows every entry.
        let all = PlainProbe::all_entries(&program.service.bits);
        let plain = |field| walk.plain_probe::<K>(field, remote, all);
        match *program.order[K::FAMILY].as_slice() {
            [] => walk.run(&AllEntries, &mut log_side),
            // Alone, a field that gives no probe leaves every entry (the words of `all` past
            // the entries are set: they must meet another probe's).
            [f] => match walk.probe::<K>(f, remote) {
                Some((bits, id)) => walk.run(
                    &PlainSet {
                        first: PlainProbe::of(bits, id),
                        rest: [] as [PlainProbe<'_>; 0],
                    },
                    &mut log_side,
                ),
                None => walk.run(&AllEntries, &mut log_side),
            },
            [f, a] => {
                let first = plain(f);
                walk.run(
                    &PlainSet {
                        first,
                        rest: [plain(a)],
                    },
                    &mut log_side,
                )
            }
            [f, a, b] => {
                let first = plain(f);
                let rest = [plain(a), plain(b)];
                walk.run(&PlainSet { first, rest }, &mut log_side)
            }
            [f, a, b, c] => {
                let first = plain(f);
                let rest = [plain(a), plain(b), plain(c)];
                walk.run(&PlainSet { first, rest }, &mut log_side)
            }
            // An order holds five fields at most.
            [f, a, b, c, d, ..] => {
                let first = plain(f);
                let rest = [plain(a), plain(b), plain(c), plain(d)];
                walk.run(&PlainSet { first, rest }, &mut log_side)
            }
        }
    } else {
        let probes = walk.probes::<K, Probe<'_>>(remote);
        walk.run(probes.as_slice(), &mut log_side)
    };
    match hit {
        Some(entry) => Decided {
            allowed: entry.act == Act::Allow,
            rule: entry.rule,
        },
        None => Decided::denied(snapshot),
    }
}

/// One side's program with what its probes are made of.
pub(super) struct Walk<'a, 'f> {
    pub snapshot: &'a Snapshot,
    pub program: &'a Program,
    pub address: &'a AddressEntry,
    pub direction: usize,
    pub flow: &'f FlowFields<'f>,
}

impl<'a> Walk<'a, '_> {
    /// One probe per active field of the program, in its order for the family. Always
    /// inlined: with the diagnostic [`profile`](super::profile) as a second caller, LLVM
    /// kept it out of line (about 100 more instructions a verdict at 10,000 rules).
    #[inline(always)]
    pub fn probes<K: FamilyKey, P: ProbeOf<'a>>(&self, remote: K) -> ProbeList<P> {
        let mut probes = ProbeList::new(P::filler(&self.program.service.bits));
        for &field in self.program.order[K::FAMILY].as_slice() {
            if let Some((bits, id)) = self.probe::<K>(field, remote) {
                probes.push(bits, id);
            }
        }
        probes
    }

    /// One field's plain probe for the flow; `all` (every entry) if the field gives none.
    /// Always inlined: as a closure, LLVM kept it out of line (a call a probe).
    #[inline(always)]
    fn plain_probe<K: FamilyKey>(
        &self,
        field: ProbeField,
        remote: K,
        all: PlainProbe<'a>,
    ) -> PlainProbe<'a> {
        match self.probe::<K>(field, remote) {
            Some((bits, id)) => PlainProbe::of(bits, id),
            None => all,
        }
    }

    /// The bitset of one field for the flow (the field and the bitset's id), if the field
    /// constrains the flow at all.
    #[inline(always)]
    pub fn probe<K: FamilyKey>(
        &self,
        field: ProbeField,
        remote: K,
    ) -> Option<(&'a FieldBits, u32)> {
        let (program, flow) = (self.program, self.flow);
        match field {
            ProbeField::Local => {
                let local = &program.local[K::FAMILY];
                local
                    .is_active()
                    .then(|| (local, self.address.local[self.direction]))
            }
            ProbeField::Remote => K::remote(program).probe(
                remote,
                flow.remote_class(self.direction),
                K::remote_classes(self.snapshot),
            ),
            ProbeField::Joint => Some(
                K::joint(program).probe(
                    self.address.local[self.direction],
                    flow.remote_class(self.direction)
                        .unwrap_or_else(|| K::remote_classes(self.snapshot).lookup(remote)),
                ),
            ),
            // Written out, not through `probe_with`: its class closure, made once per probe
            // the dense side matches, stayed out of line (a call a verdict).
            ProbeField::Service if program.service.bits.is_active() => {
                let service = &program.service;
                let id = service.id_of_class(flow.service_class(self.snapshot), || {
                    let k = flow.key;
                    let classes = &self.snapshot.service_classes;
                    classes.key(k.protocol, k.dst_port, k.icmp_type, k.icmp_code)
                });
                Some((&service.bits, id))
            }
            ProbeField::Service => None,
            ProbeField::SrcPort => program.src_port.probe(keys::port_key(flow.key.src_port)),
            ProbeField::Icmp if program.icmp_only_for_icmp && !keys::is_icmp(flow.key.protocol) => {
                None
            }
            ProbeField::Icmp => program.icmp.probe(keys::l4_key(
                flow.key.protocol,
                flow.key.icmp_type,
                flow.key.icmp_code,
            )),
        }
    }

    /// The walk over the program with these probes.
    #[inline]
    fn run<S: ProbeSet + ?Sized>(
        &self,
        probes: &S,
        log: &mut impl FnMut(RuleId),
    ) -> Option<&'a Entry> {
        self.program.run(
            probes,
            &self.snapshot.named_ports,
            &|| self.flow.facts(),
            log,
        )
    }
}

/// Failsafe ports: inbound on ingress (remote = source), outbound on egress (remote =
/// destination), by destination port.
#[inline]
pub(super) fn failsafe_admits(
    snapshot: &Snapshot,
    direction: usize,
    flow: &FlowFields<'_>,
) -> bool {
    let remote = if direction == INGRESS {
        flow.key.src
    } else {
        flow.key.dst
    };
    snapshot.failsafe[direction].admits(flow.key.protocol, flow.key.dst_port, remote)
}
