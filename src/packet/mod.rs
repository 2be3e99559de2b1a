//! Frame parsing for the dataplane (SPEC Part A §A1–§A2): Ethernet frame bytes to a compact
//! [`PacketMeta`], or the numbered [`DropReason`] that says why the frame is junk.
//!
//! ```text
//! frame ─► Ethernet ─► VLAN tags ─┬─► IPv4 + options ───────────┬─► TCP, UDP, UDP-Lite, SCTP ports
//!                                 ├─► IPv6 ─► extension headers ─┘   ICMP type, code, id, quote
//!                                 └─► ARP, other EtherTypes (classified only)
//! ```
//!
//! - `parse`: Ethernet, VLAN tags, IPv4 (options, fragments), IPv6 header; the entry point.
//! - `ipv6_ext`: the IPv6 extension-header chain and its limits.
//! - `transport`: transport headers and the header an ICMP error quotes.
//! - `meta`: [`PacketMeta`] and its parts; [`PacketMeta::flow_key`] for the classifier.
//! - `drop`: [`DropReason`], the dataplane's one table of drop counters.
//!
//! **Hand-read headers.** Headers are read here rather than through etherparse's slicers
//! because every strict check of SPEC §A2 must map to exactly one `DropReason`, and the lax
//! slicers accept what we must reject (repeated extension headers, UDP lengths past the
//! payload) while the strict ones stop at the first error in their own terms. etherparse
//! supplies the EtherType numbers and, in tests, the frame builder and an independent reading.
//!
//! **No panics.** Every read is `get`, `first_chunk` or `split_first_chunk` on a slice, or a
//! constant index into a fixed-size array those returned (which the compiler bounds-checks).
//!
//! **What is not a drop.** An unknown IP protocol (or an unknown IPv6 Next Header that is not
//! an extension header) is an upper-layer protocol without ports, judged by policy. An ICMP
//! error whose quote is too short to read simply has no inner flow. Checksums are never
//! verified. ARP and other EtherTypes are classified and left to the pipeline, which holds the
//! `allowedEtherTypes` setting.
//!
//! **Fragments.** `parse` itself drops first fragments too short for the transport header and
//! IPv4 TCP fragments at offset 8, which need no state. A non-first fragment parses with no
//! transport header and no ports; the fragment tracker gives it the verdict of its first
//! fragment, keyed by [`FragmentInfo::protocol`] and [`FragmentInfo::id`].

mod drop;
mod ipv6_ext;
mod meta;
mod parse;
#[cfg(test)]
mod test_frames;
mod transport;

pub use drop::{DropReason, DropStage};
pub use meta::{
    FragmentInfo, FrameKind, IcmpMessage, IcmpMeta, InnerFlow, InnerTransport, IpMeta, L2Meta,
    PacketMeta, TcpFlags, Transport, VlanTag, protocol,
};
pub use parse::parse;
