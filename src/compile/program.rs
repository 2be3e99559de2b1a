//! A compiled program: what one endpoint direction runs, as a flat list of entries, and the
//! walk over it.
//!
//! The entries of a program are, in evaluation order: the rules of each applicable tier's
//! applicable policies for every stage that runs (untracked and preDNAT for host endpoints,
//! then normal), a synthetic always-matching Deny at the end of each normal-stage tier whose
//! default action is Deny, the rules of each profile, and a final always-matching entry with
//! the endpoint default. A Pass entry carries the index where evaluation resumes: the first
//! entry after its tier (or profile). An untracked or preDNAT tier simply has no end entry:
//! its implicit Pass falls through to what follows, which is exactly "next tier, else next
//! stage". Failsafe ports are checked before the program, as in the reference.
//!
//! The walk asks the field bitsets for the first entry at or after a cursor that every field
//! accepts; Log records and moves the cursor one on, Pass moves it to its target, Allow and
//! Deny decide. Entries with named ports are over-approximated in the port fields and
//! checked exactly here when the walk lands on them.

use std::net::IpAddr;

use super::bitset::{FieldBits, ProbeSet};
use super::table::{ClassTable, IntervalTable};
use crate::snapshot::RuleId;

/// What an entry does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Act {
    Allow,
    Deny,
    Pass,
    Log,
}

/// Index of the program direction arrays: ingress programs see the endpoint as destination.
pub(crate) const INGRESS: usize = 0;
pub(crate) const EGRESS: usize = 1;

/// One entry of a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub act: Act,
    /// For Pass: the entry evaluation resumes at.
    pub target: u32,
    pub rule: RuleId,
    /// Index into [`Program::checks`], or [`NO_CHECK`].
    pub check: u32,
}

pub(crate) const NO_CHECK: u32 = u32::MAX;

/// A `ports` or `notPorts` list that holds named ports, for the exact check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PortList {
    pub ranges: Box<[(u16, u16)]>,
    /// Index into [`NamedPorts`] of the (endpoint, protocol, port) triples its names stand
    /// for, or `None` when the list has no named entry.
    pub named: Option<u32>,
}

/// The port criteria of one side of a rule that uses named ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SideCheck {
    pub ports: Option<PortList>,
    pub not_ports: Option<PortList>,
}

/// The exact port check of an entry whose rule uses named ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct NamedCheck {
    pub src: Option<SideCheck>,
    pub dst: Option<SideCheck>,
}

/// A port declared by name on an endpoint: (endpoint, protocol, port).
pub(crate) type DeclaredPort = (u32, u8, u16);

/// Named ports resolved per endpoint: for each distinct (side selector, names) pair, the
/// sorted ports a flow's address, protocol and port must equal one of.
#[derive(Debug, Clone, Default)]
pub(crate) struct NamedPorts {
    pub sets: Box<[Box<[DeclaredPort]>]>,
}

/// What the exact check needs of the flow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PortFacts {
    pub protocol: u8,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// Endpoints owning the source and destination addresses.
    pub src_endpoint: Option<u32>,
    pub dst_endpoint: Option<u32>,
}

impl NamedPorts {
    fn has(&self, set: u32, endpoint: Option<u32>, protocol: u8, port: u16) -> bool {
        let Some(endpoint) = endpoint else {
            return false;
        };
        self.sets
            .get(set as usize)
            .is_some_and(|s| s.binary_search(&(endpoint, protocol, port)).is_ok())
    }

    /// The reference's port matching for one side: a range contains the port, or a named
    /// entry is declared by the endpoint at that address with the flow's protocol and port.
    fn side_matches(
        &self,
        check: &SideCheck,
        endpoint: Option<u32>,
        protocol: u8,
        port: Option<u16>,
    ) -> bool {
        let Some(port) = port else {
            return false;
        };
        let hit = |list: &PortList| {
            list.ranges.iter().any(|&(lo, hi)| lo <= port && port <= hi)
                || list
                    .named
                    .is_some_and(|set| self.has(set, endpoint, protocol, port))
        };
        check.ports.as_ref().is_none_or(hit) && !check.not_ports.as_ref().is_some_and(hit)
    }

    pub fn check(&self, check: &NamedCheck, facts: &PortFacts) -> bool {
        let src = check.src.as_ref().is_none_or(|c| {
            self.side_matches(c, facts.src_endpoint, facts.protocol, facts.src_port)
        });
        src && check.dst.as_ref().is_none_or(|c| {
            self.side_matches(c, facts.dst_endpoint, facts.protocol, facts.dst_port)
        })
    }

    pub fn heap_bytes(&self) -> usize {
        self.sets.len() * std::mem::size_of::<Box<[DeclaredPort]>>()
            + self
                .sets
                .iter()
                .map(|s| s.len() * std::mem::size_of::<DeclaredPort>())
                .sum::<usize>()
    }
}

/// A field with its lookup table.
/// The table first, then the bitsets, whose first bytes are all a probe reads of them
/// (`repr(C)`: see [`Program`]).
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Field<K> {
    pub table: IntervalTable<K>,
    pub bits: FieldBits,
}

impl<K: super::addrset::Key> Field<K> {
    /// The bitset of `key` (the field and the bitset's id), if the field constrains anything.
    #[inline]
    pub fn probe(&self, key: K) -> Option<(&FieldBits, u32)> {
        self.bits
            .is_active()
            .then(|| (&self.bits, self.table.lookup(key)))
    }

    pub fn heap_bytes(&self) -> usize {
        self.bits.heap_bytes() + self.table.heap_bytes()
    }
}

/// A field whose key space the snapshot may share among all programs: the other address
/// (per family, [`RemoteClasses`](super::table::RemoteClasses)) and the service, protocol
/// and destination port ([`ServiceClasses`](super::table::ServiceClasses)). When shared,
/// the program keeps only each class's bitset id: the class table is one per snapshot,
/// looked up once per flow, and stays in cache, where at 10,000 rules the programs' own
/// tables did not (about 1.9 L1 misses per remote lookup). When sharing would cost too much
/// memory (programs × classes ids), `by_class` is empty and the program's own table answers.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct ClassedField<K> {
    /// Bitset id per shared class; empty when the program uses `table`.
    pub by_class: Box<[u32]>,
    pub bits: FieldBits,
    pub table: IntervalTable<K>,
}

/// The other address's field.
pub(crate) type RemoteField<K> = ClassedField<K>;

/// The service field (protocol and destination port, as a service key).
pub(crate) type ServiceField = ClassedField<u32>;

impl<K: super::addrset::Key> ClassedField<K> {
    /// The bitset of a key, if the field constrains anything: by the key's shared class
    /// (`class`), else by the key itself in the program's own table (`key`, asked only
    /// then). No test of the layout: a program on its own table has no class array, so
    /// every class misses it; one on the shared classes has an empty table, whose lookup
    /// gives bitset 0, as a class out of range always did. Always inlined: with the ICMP
    /// type and code in the service key's closure, LLVM kept it out of line (about 6 more
    /// instructions a verdict at 10 bench rules).
    #[inline(always)]
    pub fn probe_with(
        &self,
        class: impl FnOnce() -> u32,
        key: impl FnOnce() -> K,
    ) -> Option<(&FieldBits, u32)> {
        if !self.bits.is_active() {
            return None;
        }
        Some((&self.bits, self.id_of_class(class(), key)))
    }

    /// The bitset id of a key of shared class `class`, else of the key itself in the
    /// program's own table (`key`, asked only then); see [`ClassedField::probe_with`].
    #[inline(always)]
    pub fn id_of_class(&self, class: u32, key: impl FnOnce() -> K) -> u32 {
        match self.by_class.get(class as usize) {
            Some(&id) => id,
            None => self.table.lookup(key()),
        }
    }

    /// The bitset of `key`, if the field constrains anything. If the program uses the
    /// snapshot's `classes`, `known` is the key's class when the caller has it at hand (an
    /// endpoint address's index entry holds it), else it is looked up.
    #[inline]
    pub fn probe(
        &self,
        key: K,
        known: Option<u32>,
        classes: &ClassTable<K>,
    ) -> Option<(&FieldBits, u32)> {
        self.probe_with(|| known.unwrap_or_else(|| classes.lookup(key)), || key)
    }

    pub fn heap_bytes(&self) -> usize {
        self.bits.heap_bytes() + self.by_class.len() * 4 + self.table.heap_bytes()
    }
}

/// The own and the other address of one family as one field, where it pays and fits (see
/// `build::join_addresses`): its bitset of (own-address bitset id, other address's shared
/// class) is the AND of the two fields' bitsets, made at compile time, so that a side reads
/// one row instead of two and ANDs one probe fewer in every word it scans. At 10,000 bench
/// rules a program's 30-48 own-address bitsets and 69 classes make only 386-845 distinct
/// ANDs. When not in use (`ids` empty) the program probes the two fields apart.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct JointField {
    /// Joint bitset id of own-address bitset `a` and class `c`: `ids[a * classes + c]`.
    pub ids: Box<[u32]>,
    /// The shared remote classes of the family.
    pub classes: usize,
    pub bits: FieldBits,
}

impl JointField {
    /// No joint field: the program probes both address fields.
    pub fn unused() -> JointField {
        JointField {
            ids: Box::default(),
            classes: 0,
            bits: FieldBits::inactive(),
        }
    }

    pub fn is_used(&self) -> bool {
        !self.ids.is_empty()
    }

    /// The joint bitset of own-address bitset `local` and remote class `class`. Out of
    /// range (only a broken snapshot's), bitset 0: entries wild in both fields.
    #[inline]
    pub fn probe(&self, local: u32, class: u32) -> (&FieldBits, u32) {
        let id = if (class as usize) < self.classes {
            let at = local as usize * self.classes + class as usize;
            self.ids.get(at).copied().unwrap_or(0)
        } else {
            0
        };
        (&self.bits, id)
    }

    pub fn heap_bytes(&self) -> usize {
        self.ids.len() * 4 + self.bits.heap_bytes()
    }
}

/// The ICMP field: most flows carry no ICMP type, and their bitset id is read from a
/// 256-entry array by protocol number instead of searching the table. Inactive in every
/// program of a snapshot that folds ICMP type and code into the service field (any
/// snapshot whose rules put no port criterion on ICMP, which validation refuses: see
/// [`keys`](super::keys)).
#[derive(Debug, Clone)]
pub(crate) struct L4Field {
    pub field: Field<u32>,
    pub by_protocol: Box<[u32]>,
}

impl L4Field {
    pub fn new(field: Field<u32>) -> L4Field {
        let by_protocol = (0..=255u8)
            .map(|p| field.table.lookup(super::keys::protocol_base(p)))
            .collect();
        L4Field { field, by_protocol }
    }

    #[inline]
    pub fn probe(&self, key: u32) -> Option<(&FieldBits, u32)> {
        if !self.field.bits.is_active() {
            return None;
        }
        let id = match super::keys::bare_protocol(key) {
            Some(p) => self.by_protocol.get(p).copied().unwrap_or(0),
            None => self.field.table.lookup(key),
        };
        Some((&self.field.bits, id))
    }

    pub fn heap_bytes(&self) -> usize {
        self.field.heap_bytes() + self.by_protocol.len() * 4
    }
}

/// The fields a program can probe, in the order its walk probes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ProbeField {
    /// The endpoint's own address.
    Local,
    /// The other address.
    Remote,
    /// Own and other address together ([`JointField`]), in place of `Local` and `Remote`.
    Joint,
    /// Protocol and destination port.
    Service,
    SrcPort,
    Icmp,
}

/// The active fields of a program in the order its walk probes them, held inline: reading
/// them costs no pointer to follow and no line of its own per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeOrder {
    fields: [ProbeField; 5],
    len: u8,
}

impl ProbeOrder {
    /// The first five of `fields` (a family of a program probes five fields at most).
    pub fn new(fields: impl IntoIterator<Item = ProbeField>) -> ProbeOrder {
        let mut order = ProbeOrder {
            fields: [ProbeField::Local; 5],
            len: 0,
        };
        for (slot, field) in order.fields.iter_mut().zip(fields) {
            *slot = field;
            order.len += 1;
        }
        order
    }

    #[inline]
    pub fn as_slice(&self) -> &[ProbeField] {
        self.fields.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// One compiled endpoint direction. Fields in declaration order (`repr(C)`), those every
/// side reads first: at 10,000 rules the programs' headers do not stay in L1, and a side
/// reads a few of their lines before its first table lookup.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Program {
    pub entries: Box<[Entry]>,
    /// Per family, the active fields by increasing density of their bitsets: the sparsest
    /// first (with `Joint` in place of `Local` and `Remote` where the family has it).
    pub order: [ProbeOrder; 2],
    /// Whether the fields keep plain bitsets (see [`FieldBits`]); the same for all of them.
    pub dense: bool,
    /// Whether every entry the ICMP field can rule out is one whose service field already
    /// rules out every protocol but ICMP and ICMPv6: then flows of other protocols (nearly
    /// all of them) skip the ICMP probe.
    pub icmp_only_for_icmp: bool,
    pub service: ServiceField,
    /// Own and other address together, per family, where in use.
    pub joint_v4: JointField,
    /// The other address, per family.
    pub remote_v4: RemoteField<u32>,
    pub src_port: Field<u32>,
    /// The endpoint's own address (destination of ingress, source of egress), per family.
    /// Its bitset id is resolved at compile time per endpoint address, so it has no table.
    pub local: [FieldBits; 2],
    pub icmp: L4Field,
    pub remote_v6: RemoteField<u128>,
    pub joint_v6: JointField,
    pub checks: Box<[NamedCheck]>,
}

impl Program {
    /// Walk the program. Returns the deciding entry; `log` sees every matching Log entry
    /// before it, in order. `probes` must be of the program's layout ([`Program::dense`]).
    #[inline]
    pub fn run<S: ProbeSet + ?Sized>(
        &self,
        probes: &S,
        named: &NamedPorts,
        facts: &impl Fn() -> PortFacts,
        log: &mut impl FnMut(RuleId),
    ) -> Option<&Entry> {
        let mut cursor = 0;
        loop {
            let i = probes.first_match(cursor, self.entries.len())?;
            let entry = self.entries.get(i)?;
            cursor = i + 1;
            if entry.check != NO_CHECK && !self.named_check_passes(entry.check, named, facts) {
                continue;
            }
            match entry.act {
                Act::Allow | Act::Deny => return Some(entry),
                Act::Log => log(entry.rule),
                Act::Pass => cursor = entry.target as usize,
            }
        }
    }

    /// The exact named-port check of an entry: rare, kept out of the walk's code, with the
    /// flow's facts gathered only here.
    #[cold]
    #[inline(never)]
    pub(super) fn named_check_passes(
        &self,
        check: u32,
        named: &NamedPorts,
        facts: &impl Fn() -> PortFacts,
    ) -> bool {
        self.checks
            .get(check as usize)
            .is_some_and(|c| named.check(c, &facts()))
    }

    pub fn heap_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry>()
            + self.local.iter().map(FieldBits::heap_bytes).sum::<usize>()
            + self.remote_v4.heap_bytes()
            + self.remote_v6.heap_bytes()
            + self.joint_v4.heap_bytes()
            + self.joint_v6.heap_bytes()
            + self.service.heap_bytes()
            + self.icmp.heap_bytes()
            + self.src_port.heap_bytes()
            + self.checks.len() * std::mem::size_of::<NamedCheck>()
            + self.checks.iter().map(check_heap_bytes).sum::<usize>()
    }
}

fn check_heap_bytes(check: &NamedCheck) -> usize {
    let list = |l: &Option<PortList>| l.as_ref().map_or(0, |l| l.ranges.len() * 4);
    [&check.src, &check.dst]
        .into_iter()
        .flatten()
        .map(|s| std::mem::size_of::<SideCheck>() + list(&s.ports) + list(&s.not_ports))
        .sum()
}

/// The failsafe ports of one direction, ahead of all policy on a host endpoint: each
/// `protocol << 16 | port` in a packed array (scanned in a few instructions), with the
/// network the remote address must be in, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FailsafePorts {
    /// Bit `port % 64` of every failsafe port: most flows miss here, in one test.
    port_bits: u64,
    pub keys: Box<[u32]>,
    pub nets: Box<[Option<NetRange>]>,
}

impl FailsafePorts {
    pub fn new(ports: impl IntoIterator<Item = (u8, u16, Option<NetRange>)>) -> FailsafePorts {
        let (keys, nets): (Vec<u32>, Vec<Option<NetRange>>) = ports
            .into_iter()
            .map(|(protocol, port, net)| (failsafe_key(protocol, port), net))
            .unzip();
        FailsafePorts {
            port_bits: keys.iter().fold(0, |bits, &k| bits | 1 << (k & 63)),
            keys: keys.into_boxed_slice(),
            nets: nets.into_boxed_slice(),
        }
    }

    /// Whether a flow to `dst_port` over `protocol`, with `remote` the other address, is
    /// admitted (by destination port only: a failsafe source port opens nothing).
    #[inline]
    pub fn admits(&self, protocol: u8, dst_port: Option<u16>, remote: IpAddr) -> bool {
        let Some(port) = dst_port else {
            return false;
        };
        if self.port_bits & (1 << (port & 63)) == 0 {
            return false;
        }
        let key = failsafe_key(protocol, port);
        self.keys
            .iter()
            .zip(self.nets.iter())
            .any(|(&k, net)| k == key && net.is_none_or(|n| n.contains(remote)))
    }

    pub fn heap_bytes(&self) -> usize {
        self.keys.len() * 4 + self.nets.len() * std::mem::size_of::<Option<NetRange>>()
    }
}

fn failsafe_key(protocol: u8, port: u16) -> u32 {
    u32::from(protocol) << 16 | u32::from(port)
}

/// An inclusive address range of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetRange {
    V4(u32, u32),
    V6(u128, u128),
}

impl NetRange {
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self, addr) {
            (NetRange::V4(lo, hi), IpAddr::V4(a)) => (*lo..=*hi).contains(&u32::from(a)),
            (NetRange::V6(lo, hi), IpAddr::V6(a)) => (*lo..=*hi).contains(&u128::from(a)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_order_keeps_its_fields_in_order() {
        use ProbeField::{Icmp, Local, Remote, Service, SrcPort};
        let cases: [&[ProbeField]; 4] = [
            &[],
            &[Service],
            &[Remote, Local, Icmp],
            &[SrcPort, Icmp, Service, Remote, Local],
        ];
        for fields in cases {
            assert_eq!(ProbeOrder::new(fields.iter().copied()).as_slice(), fields);
        }
    }
}
