//! Why a frame was dropped: [`DropReason`], the dataplane's one numbered table of drop
//! counters, declared once below so numbers, names and stages cannot drift apart. The unit
//! tests pin every (number, name) pair.

use std::fmt;

/// Which part of the dataplane raises a reason; it also tells a reader where to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropStage {
    /// `packet::parse`: the frame is malformed, or is a fragment that no host should accept.
    Parse,
    /// The fragment tracker, which needs state across frames.
    Fragment,
    /// The pipeline: EtherType allow-list, anti-spoofing, snapshot, policy, conntrack.
    Pipeline,
}

/// Declares the enum and its table from one list so numbers, names and stages cannot drift.
macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident = $number:literal, $name:literal, $stage:ident; )*) => {
        /// Why a frame was dropped: one table for the whole dataplane.
        ///
        /// The number of a reason is its counter index (`[AtomicU64; DropReason::COUNT]`,
        /// [`index`](DropReason::index)) and its [`name`](DropReason::name) is the `reason`
        /// label of `portcullis_drops_total`. Both are a contract with dashboards and alerts:
        /// numbers never change. A new reason takes the next number; a number is never reused
        /// or renumbered; a reason no longer raised stays, documented as unused.
        #[repr(u8)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropReason {
            $( $(#[$doc])* $variant = $number, )*
        }

        impl DropReason {
            /// Every reason, in number order: `ALL[r.index()] == r`.
            pub const ALL: &'static [DropReason] = &[$( DropReason::$variant, )*];

            /// The stable `snake_case` name, used as the metrics label.
            pub const fn name(self) -> &'static str {
                match self {
                    $( DropReason::$variant => $name, )*
                }
            }

            /// The part of the dataplane that raises this reason.
            pub const fn stage(self) -> DropStage {
                match self {
                    $( DropReason::$variant => DropStage::$stage, )*
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than the 14-byte Ethernet header.
    TruncatedEthernet = 0, "truncated_ethernet", Parse;
    /// An 802.1Q/802.1ad tag announced by its TPID does not fit in the frame.
    TruncatedVlan = 1, "truncated_vlan", Parse;
    /// More than two VLAN tags (802.1Q, 802.1ad or 0x9100 QinQ) in a row.
    TooManyVlanTags = 2, "too_many_vlan_tags", Parse;
    /// EtherType IPv4, but the 20-byte header, or the header with its options, does not fit.
    TruncatedIpv4 = 3, "truncated_ipv4", Parse;
    /// EtherType IPv6, but the 40-byte header does not fit.
    TruncatedIpv6 = 4, "truncated_ipv6", Parse;
    /// The 20-byte TCP header does not fit in the IP payload.
    TruncatedTcp = 5, "truncated_tcp", Parse;
    /// The 8-byte UDP or UDP-Lite header does not fit in the IP payload.
    TruncatedUdp = 6, "truncated_udp", Parse;
    /// The 8-byte ICMP header does not fit in the IP payload.
    TruncatedIcmp = 7, "truncated_icmp", Parse;
    /// The 8-byte ICMPv6 header does not fit in the IP payload.
    TruncatedIcmpv6 = 8, "truncated_icmpv6", Parse;
    /// The 12-byte SCTP common header does not fit in the IP payload.
    TruncatedSctp = 9, "truncated_sctp", Parse;
    /// The IP version nibble does not match the EtherType (4 for 0x0800, 6 for 0x86DD).
    IpVersionMismatch = 10, "ip_version_mismatch", Parse;
    /// IPv4 IHL below 5 words: the header would be shorter than its fixed part.
    Ipv4HeaderLengthTooSmall = 11, "ipv4_ihl_too_small", Parse;
    /// IPv4 total length runs past the end of the frame.
    Ipv4TotalLengthBeyondFrame = 12, "ipv4_total_length_beyond_frame", Parse;
    /// IPv4 total length is smaller than the header length given by IHL.
    Ipv4TotalLengthBelowHeader = 13, "ipv4_total_length_below_header", Parse;
    /// An IPv4 option has no length byte, a length below 2, or runs past the header.
    Ipv4OptionsMalformed = 14, "ipv4_options_malformed", Parse;
    /// TCP data offset below 5 words: the header would be shorter than its fixed part.
    TcpDataOffsetTooSmall = 15, "tcp_data_offset_too_small", Parse;
    /// TCP data offset (header with options) runs past the end of the segment.
    TcpDataOffsetBeyondSegment = 16, "tcp_data_offset_beyond_segment", Parse;
    /// UDP length below 8 or beyond the IP payload; UDP-Lite checksum coverage 1–7 or beyond
    /// the IP payload.
    UdpLengthMismatch = 17, "udp_length_mismatch", Parse;
    /// IPv6 payload length runs past the end of the frame.
    Ipv6PayloadLengthBeyondFrame = 18, "ipv6_payload_length_beyond_frame", Parse;
    /// An IPv6 extension header does not fit in the IPv6 payload.
    Ipv6ExtensionTruncated = 19, "ipv6_ext_truncated", Parse;
    /// More than 8 IPv6 extension headers.
    Ipv6ExtensionChainTooLong = 20, "ipv6_ext_chain_too_long", Parse;
    /// An IPv6 extension header appears more often than RFC 8200 allows: destination options
    /// more than twice, any other extension header (hop-by-hop included) more than once.
    Ipv6ExtensionRepeated = 21, "ipv6_ext_repeated", Parse;
    /// A hop-by-hop options header that does not directly follow the IPv6 header.
    Ipv6HopByHopNotFirst = 22, "ipv6_hop_by_hop_not_first", Parse;
    /// A first fragment too short to hold the whole transport header (IPv4 and IPv6) or, for
    /// IPv6, the whole extension-header chain (RFC 7112): its ports or flags could be hidden in
    /// a later fragment.
    FragmentTooShort = 23, "fragment_too_short", Parse;
    /// An IPv4 TCP fragment at offset 8 bytes, which can rewrite the TCP flags of the first
    /// fragment (RFC 1858).
    FragmentTcpOffsetOne = 24, "fragment_tcp_offset_one", Parse;
    /// A fragment overlapping one already seen of the same packet.
    FragmentOverlap = 25, "fragment_overlap", Fragment;
    /// A non-first fragment whose first fragment has not been seen (or has been forgotten).
    FragmentWithoutFirst = 26, "fragment_without_first", Fragment;
    /// A first fragment that could not be remembered: the fragment tracker is at capacity.
    FragmentTrackerFull = 27, "fragment_tracker_full", Fragment;
    /// Families mixed in one packet: ICMPv6 over IPv4, ICMP over IPv6, or an ICMP error
    /// quoting a header of the other IP version.
    MixedFamilies = 28, "mixed_families", Parse;
    /// An EtherType other than IPv4, IPv6 and ARP that is not in `allowedEtherTypes`.
    EtherTypeNotAllowed = 29, "ethertype_not_allowed", Pipeline;
    /// Denied by policy (or by the default action when no policy decided).
    Policy = 30, "policy", Pipeline;
    /// The source address may not arrive on this port (anti-spoofing).
    Spoofed = 31, "spoofed", Pipeline;
    /// No valid policy snapshot is in force yet.
    NoSnapshot = 32, "no_snapshot", Pipeline;
    /// A new connection could not be tracked: its conntrack shard is full and nothing could be
    /// evicted.
    ConntrackFull = 33, "conntrack_full", Pipeline;
    /// Connection tracking found the packet impossible: a TCP flag combination no stack
    /// sends, a segment that cannot open a connection and belongs to none (a stray SYN-ACK,
    /// FIN or RST, or any non-SYN when loose pickup is off), or one out of its connection's
    /// state.
    ConntrackInvalid = 34, "conntrack_invalid", Pipeline;
    /// A fragment past the end announced by the datagram's last fragment, or a last
    /// fragment contradicting it.
    FragmentPastEnd = 35, "fragment_past_end", Fragment;
    /// A datagram's fragments arrived too far out of order to be followed.
    FragmentOutOfOrder = 36, "fragment_out_of_order", Fragment;
    /// A fragment of a datagram already refused (overlap, past end, out of order, TCP at
    /// offset 8): the rest of it is dropped too.
    FragmentPoisoned = 37, "fragment_poisoned", Fragment;
}

impl DropReason {
    /// How many reasons there are: the length of a per-reason counter array.
    pub const COUNT: usize = Self::ALL.len();

    /// The counter index: the reason's number.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The reason with this number, if there is one.
    pub fn from_index(index: usize) -> Option<DropReason> {
        Self::ALL.get(index).copied()
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The published numbering. Append rows here when a reason is added; never edit a row.
    const PUBLISHED: &[(u8, &str)] = &[
        (0, "truncated_ethernet"),
        (1, "truncated_vlan"),
        (2, "too_many_vlan_tags"),
        (3, "truncated_ipv4"),
        (4, "truncated_ipv6"),
        (5, "truncated_tcp"),
        (6, "truncated_udp"),
        (7, "truncated_icmp"),
        (8, "truncated_icmpv6"),
        (9, "truncated_sctp"),
        (10, "ip_version_mismatch"),
        (11, "ipv4_ihl_too_small"),
        (12, "ipv4_total_length_beyond_frame"),
        (13, "ipv4_total_length_below_header"),
        (14, "ipv4_options_malformed"),
        (15, "tcp_data_offset_too_small"),
        (16, "tcp_data_offset_beyond_segment"),
        (17, "udp_length_mismatch"),
        (18, "ipv6_payload_length_beyond_frame"),
        (19, "ipv6_ext_truncated"),
        (20, "ipv6_ext_chain_too_long"),
        (21, "ipv6_ext_repeated"),
        (22, "ipv6_hop_by_hop_not_first"),
        (23, "fragment_too_short"),
        (24, "fragment_tcp_offset_one"),
        (25, "fragment_overlap"),
        (26, "fragment_without_first"),
        (27, "fragment_tracker_full"),
        (28, "mixed_families"),
        (29, "ethertype_not_allowed"),
        (30, "policy"),
        (31, "spoofed"),
        (32, "no_snapshot"),
        (33, "conntrack_full"),
        (34, "conntrack_invalid"),
        (35, "fragment_past_end"),
        (36, "fragment_out_of_order"),
        (37, "fragment_poisoned"),
    ];

    #[test]
    fn published_numbers_and_names_never_change() {
        assert_eq!(
            DropReason::COUNT,
            PUBLISHED.len(),
            "a reason was added or removed"
        );
        for &(number, name) in PUBLISHED {
            let reason = DropReason::from_index(usize::from(number)).unwrap();
            assert_eq!(reason as u8, number);
            assert_eq!(reason.name(), name, "reason {number} was renamed");
        }
    }

    #[test]
    fn numbers_are_dense_and_in_order() {
        for (position, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(
                reason.index(),
                position,
                "{reason:?} is out of place or leaves a gap"
            );
        }
        assert_eq!(DropReason::from_index(DropReason::COUNT), None);
    }

    #[test]
    fn names_are_unique_snake_case_labels() {
        let mut seen = HashSet::new();
        for reason in DropReason::ALL {
            let name = reason.name();
            assert!(seen.insert(name), "duplicate name {name}");
            assert!(
                name.starts_with(|c: char| c.is_ascii_lowercase())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !name.ends_with('_')
                    && !name.contains("__"),
                "{name} is not a snake_case label"
            );
            assert_eq!(reason.to_string(), name);
        }
    }
}
