//! Ethernet, VLAN tags, IPv4 and IPv6: the layers down to the transport header.
//!
//! The per-layer functions here and in `transport` are `#[inline(always)]`: each returns a
//! large value, and only when they are inlined does the compiler build the result in place
//! instead of copying it up the call chain (295 → 259 instructions per IPv4/TCP frame under
//! callgrind; a plain `#[inline]` hint changed nothing).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::EtherType;

use super::drop::DropReason;
use super::ipv6_ext;
use super::meta::{FragmentInfo, FrameKind, IpMeta, L2Meta, PacketMeta, VlanTag, protocol};
use super::transport::{self, Family};

/// Where the EtherType (or the first VLAN tag's TPID) sits: after two MAC addresses.
pub(super) const ETHER_TYPE_OFFSET: usize = 12;
const ETHERNET_HEADER_LEN: usize = 14;
pub(super) const VLAN_TAG_LEN: usize = 4;

const ETHER_TYPE_IPV4: u16 = EtherType::IPV4.0;
const ETHER_TYPE_IPV6: u16 = EtherType::IPV6.0;
const ETHER_TYPE_ARP: u16 = EtherType::ARP.0;
/// 802.1Q customer tag.
const TPID_8021Q: u16 = EtherType::VLAN_TAGGED_FRAME.0;
/// 802.1ad service tag.
const TPID_8021AD: u16 = EtherType::PROVIDER_BRIDGING.0;
/// Pre-standard QinQ outer tag, still emitted by some switches.
const TPID_QINQ_LEGACY: u16 = EtherType::VLAN_DOUBLE_TAGGED_FRAME.0;

const IPV4_HEADER_LEN: usize = 20;
/// RFC 4861: neighbour discovery must arrive with hop limit 255, which no router has
/// decremented, so it proves the sender is on the link.
const ND_HOP_LIMIT: u8 = 255;
/// Router solicitation, router advertisement, neighbour solicitation and advertisement,
/// redirect.
const ND_TYPES: std::ops::RangeInclusive<u8> = 133..=137;

/// Parses one Ethernet frame.
///
/// Never panics and never allocates, whatever the bytes. Each layer is cut to the length its
/// header announces (IPv4 total length, IPv6 payload length), so Ethernet padding is ignored.
/// Checksums are not verified: the end hosts do that, and veth offload leaves partial ones.
pub fn parse(frame: &[u8]) -> Result<PacketMeta, DropReason> {
    let l2 = parse_l2(frame)?;
    let l3_offset = usize::from(l2.l3_offset);
    let network = frame.get(l3_offset..).unwrap_or_default();
    let frame_len = offset_u32(frame.len());
    // Each arm builds the whole answer: a (kind, ip) pair assembled afterwards was copied
    // into the result field by field, a fifth of the parse of a TCP segment.
    match l2.ether_type {
        ETHER_TYPE_IPV4 => Ok(PacketMeta {
            frame_len,
            l2,
            kind: FrameKind::Ipv4,
            ip: Some(parse_ipv4(network, l3_offset)?),
        }),
        ETHER_TYPE_IPV6 => {
            let ip = parse_ipv6(network, l3_offset)?;
            Ok(PacketMeta {
                frame_len,
                l2,
                kind: ipv6_kind(&ip),
                ip: Some(ip),
            })
        }
        ETHER_TYPE_ARP => Ok(PacketMeta {
            frame_len,
            l2,
            kind: FrameKind::Arp,
            ip: None,
        }),
        other => Ok(PacketMeta {
            frame_len,
            l2,
            kind: FrameKind::OtherEtherType(other),
            ip: None,
        }),
    }
}

#[inline(always)]
fn parse_l2(frame: &[u8]) -> Result<L2Meta, DropReason> {
    let ethernet: &[u8; ETHERNET_HEADER_LEN] =
        frame.first_chunk().ok_or(DropReason::TruncatedEthernet)?;
    let mut ether_type = u16::from_be_bytes([ethernet[12], ethernet[13]]);
    let mut vlans = [VlanTag::default(); 2];
    let mut vlan_count: u8 = 0;
    let mut l3_offset = ETHERNET_HEADER_LEN;
    while matches!(ether_type, TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY) {
        let slot = vlans
            .get_mut(usize::from(vlan_count))
            .ok_or(DropReason::TooManyVlanTags)?;
        // The TPID just read is the tag's first half; TCI and the next EtherType follow.
        let &[tci_hi, tci_lo, type_hi, type_lo] = frame
            .get(l3_offset..)
            .and_then(<[u8]>::first_chunk)
            .ok_or(DropReason::TruncatedVlan)?;
        *slot = VlanTag {
            tpid: ether_type,
            tci: u16::from_be_bytes([tci_hi, tci_lo]),
        };
        ether_type = u16::from_be_bytes([type_hi, type_lo]);
        vlan_count += 1;
        l3_offset += VLAN_TAG_LEN;
    }
    Ok(L2Meta {
        ether_type,
        vlan_count,
        vlans,
        // At most 14 + 2 * 4 bytes.
        l3_offset: u16::try_from(l3_offset).unwrap_or(u16::MAX),
    })
}

#[inline(always)]
fn parse_ipv4(packet: &[u8], l3_offset: usize) -> Result<IpMeta, DropReason> {
    let truncated = DropReason::TruncatedIpv4;
    let (fixed, rest) = packet.split_first_chunk::<12>().ok_or(truncated)?;
    let (src, rest) = rest.split_first_chunk::<4>().ok_or(truncated)?;
    let (dst, _) = rest.split_first_chunk::<4>().ok_or(truncated)?;
    if fixed[0] >> 4 != 4 {
        return Err(DropReason::IpVersionMismatch);
    }
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    if header_len < IPV4_HEADER_LEN {
        return Err(DropReason::Ipv4HeaderLengthTooSmall);
    }
    let options = packet.get(IPV4_HEADER_LEN..header_len).ok_or(truncated)?;
    let total_len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    if total_len < header_len {
        return Err(DropReason::Ipv4TotalLengthBelowHeader);
    }
    let payload = packet
        .get(header_len..total_len)
        .ok_or(DropReason::Ipv4TotalLengthBeyondFrame)?;
    check_ipv4_options(options)?;
    let protocol = fixed[9];
    let fragment = ipv4_fragment(fixed);
    // RFC 1858: a TCP fragment at offset 8 can overwrite the flags of the first fragment.
    if protocol == protocol::TCP && fragment.is_some_and(|f| f.offset == 8) {
        return Err(DropReason::FragmentTcpOffsetOne);
    }
    let transport = transport::parse(Family::V4, protocol, payload, fragment)?;
    Ok(IpMeta {
        src: IpAddr::V4(Ipv4Addr::from(*src)),
        dst: IpAddr::V4(Ipv4Addr::from(*dst)),
        protocol,
        hop_limit: fixed[8],
        l4_offset: offset_u32(l3_offset + header_len),
        fragment,
        transport,
    })
}

/// Walks the option list (RFC 791 §3.1) only far enough to know each option's length fits.
/// Option contents are the receiving host's business.
#[inline(always)]
fn check_ipv4_options(mut options: &[u8]) -> Result<(), DropReason> {
    const END_OF_LIST: u8 = 0;
    const NO_OPERATION: u8 = 1;
    while let Some((&kind, after_kind)) = options.split_first() {
        match kind {
            // What follows the end of the list is padding.
            END_OF_LIST => return Ok(()),
            NO_OPERATION => options = after_kind,
            _ => {
                let length = after_kind
                    .first()
                    .map(|&length| usize::from(length))
                    .filter(|&length| length >= 2)
                    .ok_or(DropReason::Ipv4OptionsMalformed)?;
                options = options
                    .get(length..)
                    .ok_or(DropReason::Ipv4OptionsMalformed)?;
            }
        }
    }
    Ok(())
}

/// The fragment an IPv4 header describes, or `None` for a whole packet.
#[inline(always)]
fn ipv4_fragment(fixed: &[u8; 12]) -> Option<FragmentInfo> {
    const MORE_FRAGMENTS: u16 = 0x2000;
    const OFFSET_MASK: u16 = 0x1fff;
    let flags_and_offset = u16::from_be_bytes([fixed[6], fixed[7]]);
    let more_fragments = flags_and_offset & MORE_FRAGMENTS != 0;
    // 13 bits of 8-byte units: at most 65528 bytes, which fits.
    let offset = (flags_and_offset & OFFSET_MASK) << 3;
    (more_fragments || offset != 0).then(|| FragmentInfo {
        id: u32::from(u16::from_be_bytes([fixed[4], fixed[5]])),
        offset,
        more_fragments,
        protocol: fixed[9],
    })
}

#[inline(always)]
fn parse_ipv6(packet: &[u8], l3_offset: usize) -> Result<IpMeta, DropReason> {
    let truncated = DropReason::TruncatedIpv6;
    let (fixed, rest) = packet.split_first_chunk::<8>().ok_or(truncated)?;
    let (src, rest) = rest.split_first_chunk::<16>().ok_or(truncated)?;
    let (dst, rest) = rest.split_first_chunk::<16>().ok_or(truncated)?;
    if fixed[0] >> 4 != 6 {
        return Err(DropReason::IpVersionMismatch);
    }
    // A jumbogram (payload length 0 and a hop-by-hop jumbo option) cannot cross Ethernet; its
    // empty payload makes it fail as a truncated chain or transport header.
    let payload_len = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
    let payload = rest
        .get(..payload_len)
        .ok_or(DropReason::Ipv6PayloadLengthBeyondFrame)?;
    let chain = ipv6_ext::walk(fixed[6], payload)?;
    let upper = payload.get(chain.offset..).unwrap_or_default();
    let transport = transport::parse(Family::V6, chain.protocol, upper, chain.fragment)?;
    Ok(IpMeta {
        src: IpAddr::V6(Ipv6Addr::from(*src)),
        dst: IpAddr::V6(Ipv6Addr::from(*dst)),
        protocol: chain.protocol,
        hop_limit: fixed[7],
        l4_offset: offset_u32(l3_offset + 40 + chain.offset),
        fragment: chain.fragment,
        transport,
    })
}

#[inline(always)]
fn ipv6_kind(ip: &IpMeta) -> FrameKind {
    let neighbor_discovery = ip.hop_limit == ND_HOP_LIMIT
        && ip.fragment.is_none()
        && ip
            .transport
            .icmp()
            .is_some_and(|icmp| ND_TYPES.contains(&icmp.icmp_type));
    if neighbor_discovery {
        FrameKind::Ipv6NeighborDiscovery
    } else {
        FrameKind::Ipv6
    }
}

/// Offsets and lengths inside one frame; a frame of 4 GiB does not exist, so saturating
/// loses nothing real.
fn offset_u32(offset: usize) -> u32 {
    u32::try_from(offset).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::DropStage;
    use crate::packet::meta::{
        IcmpMessage, IcmpMeta, InnerFlow, InnerTransport, TcpFlags, Transport,
    };
    use crate::packet::test_frames::*;
    use etherparse::VlanId;
    use std::collections::HashSet;

    const TCP: u8 = protocol::TCP;
    const UDP: u8 = protocol::UDP;
    const ICMP: u8 = protocol::ICMP;
    const ICMPV6: u8 = protocol::ICMPV6;
    const SCTP: u8 = protocol::SCTP;
    const UDPLITE: u8 = protocol::UDPLITE;
    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;

    fn v4(protocol: u8, l4_offset: u32, transport: Transport) -> IpMeta {
        IpMeta {
            src: ip(SRC4),
            dst: ip(DST4),
            protocol,
            hop_limit: HOPS,
            l4_offset,
            fragment: None,
            transport,
        }
    }

    fn v6(protocol: u8, l4_offset: u32, transport: Transport) -> IpMeta {
        IpMeta {
            src: ip6(SRC6),
            dst: ip6(DST6),
            ..v4(protocol, l4_offset, transport)
        }
    }

    fn tcp_t(src_port: u16, dst_port: u16, flags: u8) -> Transport {
        Transport::Tcp {
            src_port,
            dst_port,
            flags: TcpFlags(flags),
        }
    }

    fn udp_t(src_port: u16, dst_port: u16) -> Transport {
        Transport::Udp { src_port, dst_port }
    }

    fn icmp_t(icmp_type: u8, code: u8, message: IcmpMessage) -> Transport {
        Transport::Icmp(IcmpMeta {
            icmp_type,
            code,
            message,
        })
    }

    fn quoted(src: IpAddr, dst: IpAddr, protocol: u8, transport: InnerTransport) -> IcmpMessage {
        IcmpMessage::Error {
            inner: Some(InnerFlow {
                src,
                dst,
                protocol,
                transport,
            }),
        }
    }

    fn fragment(id: u32, offset: u16, more_fragments: bool, protocol: u8) -> Option<FragmentInfo> {
        Some(FragmentInfo {
            id,
            offset,
            more_fragments,
            protocol,
        })
    }

    fn vlan(id: u16) -> VlanId {
        VlanId::try_new(id).unwrap()
    }

    /// A valid frame and what `parse` must make of it.
    struct Valid {
        name: &'static str,
        frame: Vec<u8>,
        kind: FrameKind,
        /// (TPID, VLAN id) of each tag, outer first.
        tags: Vec<(u16, u16)>,
        ip: Option<IpMeta>,
    }

    fn row(name: &'static str, frame: Vec<u8>, kind: FrameKind, ip: Option<IpMeta>) -> Valid {
        Valid {
            name,
            frame,
            kind,
            tags: Vec::new(),
            ip,
        }
    }

    fn tagged(tags: &[(u16, u16)], mut valid: Valid) -> Valid {
        valid.tags = tags.to_vec();
        valid
    }

    fn valid_frames() -> Vec<Valid> {
        use FrameKind::{Ipv4, Ipv6};
        let v4_udp_quote = ipv4(UDP, &[], &udp(5353, 53, 120))[..28].to_vec();
        let v4_echo_quote = ipv4(ICMP, &[], &icmp(8, 0, [0, 42, 0, 1]));
        let v4_fragment_quote = fragment_v4(UDP, 64, false, &[0; 8]);
        let v6_tcp_quote = ipv6(TCP, &tcp(50000, 443, ACK, 5));
        let (first, v6_chain_quote) = chain(&[HOP_BY_HOP, DEST_OPTS], UDP, &udp(546, 547, 8));
        let v6_chain_quote = ipv6(first, &v6_chain_quote);
        let rr_options = [1, 1, 7, 7, 4, 0, 0, 0, 0, 0, 0, 0];
        let checksums_garbled = patched(
            build!(eth().ipv4(SRC4, DST4, HOPS).tcp(40000, 443, 1, 1024).syn()),
            L3 + 10,
            &[0xde, 0xad],
        );
        vec![
            row(
                "ipv4 tcp syn",
                build!(
                    eth().ipv4(SRC4, DST4, HOPS).tcp(40000, 443, 1, 1024).syn(),
                    b"hi"
                ),
                Ipv4,
                Some(v4(TCP, 34, tcp_t(40000, 443, SYN))),
            ),
            row(
                "ipv4 tcp ack psh fin",
                build!(
                    eth()
                        .ipv4(SRC4, DST4, HOPS)
                        .tcp(40000, 443, 9, 512)
                        .ack(1)
                        .psh()
                        .fin(),
                    b"bye"
                ),
                Ipv4,
                Some(v4(
                    TCP,
                    34,
                    tcp_t(40000, 443, ACK | TcpFlags::PSH | TcpFlags::FIN),
                )),
            ),
            row(
                "ipv4 udp",
                build!(eth().ipv4(SRC4, DST4, HOPS).udp(5353, 53), &[0; 12]),
                Ipv4,
                Some(v4(UDP, 34, udp_t(5353, 53))),
            ),
            row(
                "ipv4 icmp echo request",
                build!(
                    eth().ipv4(SRC4, DST4, HOPS).icmpv4_echo_request(7, 1),
                    b"ping"
                ),
                Ipv4,
                Some(v4(
                    ICMP,
                    34,
                    icmp_t(8, 0, IcmpMessage::EchoRequest { id: 7 }),
                )),
            ),
            row(
                "ipv4 icmp echo reply",
                build!(eth().ipv4(SRC4, DST4, HOPS).icmpv4_echo_reply(7, 1)),
                Ipv4,
                Some(v4(ICMP, 34, icmp_t(0, 0, IcmpMessage::EchoReply { id: 7 }))),
            ),
            row(
                "ipv4 icmp timestamp is neither echo nor error",
                build!(eth().ipv4(SRC4, DST4, HOPS).icmpv4_raw(13, 0, [0, 9, 0, 1])),
                Ipv4,
                Some(v4(ICMP, 34, icmp_t(13, 0, IcmpMessage::Other))),
            ),
            row(
                "ipv6 tcp ack",
                build!(eth().ipv6(SRC6, DST6, HOPS).tcp(50000, 22, 1, 1024).ack(5)),
                Ipv6,
                Some(v6(TCP, 54, tcp_t(50000, 22, ACK))),
            ),
            row(
                "ipv6 udp",
                build!(eth().ipv6(SRC6, DST6, HOPS).udp(546, 547), &[0; 3]),
                Ipv6,
                Some(v6(UDP, 54, udp_t(546, 547))),
            ),
            row(
                "ipv6 icmpv6 echo request",
                build!(eth().ipv6(SRC6, DST6, HOPS).icmpv6_echo_request(99, 1)),
                Ipv6,
                Some(v6(
                    ICMPV6,
                    54,
                    icmp_t(128, 0, IcmpMessage::EchoRequest { id: 99 }),
                )),
            ),
            row(
                "ipv6 icmpv6 echo reply",
                build!(eth().ipv6(SRC6, DST6, HOPS).icmpv6_echo_reply(99, 1)),
                Ipv6,
                Some(v6(
                    ICMPV6,
                    54,
                    icmp_t(129, 0, IcmpMessage::EchoReply { id: 99 }),
                )),
            ),
            row(
                "ipv6 neighbour solicitation with hop limit 255",
                build!(
                    eth().ipv6(SRC6, DST6, 255).icmpv6_raw(135, 0, [0; 4]),
                    &DST6
                ),
                FrameKind::Ipv6NeighborDiscovery,
                Some(IpMeta {
                    hop_limit: 255,
                    ..v6(ICMPV6, 54, icmp_t(135, 0, IcmpMessage::Other))
                }),
            ),
            row(
                "ipv6 router advertisement with hop limit 64 is judged by policy",
                build!(
                    eth()
                        .ipv6(SRC6, DST6, HOPS)
                        .icmpv6_raw(134, 0, [64, 0, 0, 0])
                ),
                Ipv6,
                Some(v6(ICMPV6, 54, icmp_t(134, 0, IcmpMessage::Other))),
            ),
            tagged(
                &[(0x8100, 100)],
                row(
                    "802.1Q ipv4 tcp",
                    build!(
                        eth()
                            .single_vlan(vlan(100))
                            .ipv4(SRC4, DST4, HOPS)
                            .tcp(40000, 443, 1, 1024)
                            .syn()
                    ),
                    Ipv4,
                    Some(v4(TCP, 38, tcp_t(40000, 443, SYN))),
                ),
            ),
            tagged(
                &[(0x88a8, 200), (0x8100, 300)],
                row(
                    "802.1ad QinQ ipv6 udp",
                    build!(
                        eth()
                            .double_vlan(vlan(200), vlan(300))
                            .ipv6(SRC6, DST6, HOPS)
                            .udp(546, 547)
                    ),
                    Ipv6,
                    Some(v6(UDP, 62, udp_t(546, 547))),
                ),
            ),
            tagged(
                &[(0x9100, 200), (0x8100, 300)],
                row(
                    "0x9100 QinQ ipv4 udp",
                    patched(
                        build!(
                            eth()
                                .double_vlan(vlan(200), vlan(300))
                                .ipv4(SRC4, DST4, HOPS)
                                .udp(5353, 53)
                        ),
                        12,
                        &[0x91, 0x00],
                    ),
                    Ipv4,
                    Some(v4(UDP, 42, udp_t(5353, 53))),
                ),
            ),
            tagged(
                &[(0x8100, 7)],
                row(
                    "802.1Q arp",
                    ethernet(0x8100, &[&[0, 7, 0x08, 0x06][..], &[0; 28]].concat()),
                    FrameKind::Arp,
                    None,
                ),
            ),
            row(
                "sctp over ipv4",
                ethernet(ETH_IPV4, &ipv4(SCTP, &[], &sctp(5000, 38412))),
                Ipv4,
                Some(v4(
                    SCTP,
                    34,
                    Transport::Sctp {
                        src_port: 5000,
                        dst_port: 38412,
                    },
                )),
            ),
            row(
                "sctp over ipv6",
                ethernet(ETH_IPV6, &ipv6(SCTP, &sctp(2905, 2905))),
                Ipv6,
                Some(v6(
                    SCTP,
                    54,
                    Transport::Sctp {
                        src_port: 2905,
                        dst_port: 2905,
                    },
                )),
            ),
            row(
                "udp-lite covering the whole datagram",
                ethernet(
                    ETH_IPV4,
                    &ipv4(UDPLITE, &[], &[udp(1, 2, 0), vec![9; 4]].concat()),
                ),
                Ipv4,
                Some(v4(UDPLITE, 34, udp_t(1, 2))),
            ),
            row(
                "udp-lite covering only its header",
                ethernet(
                    ETH_IPV4,
                    &ipv4(UDPLITE, &[], &[udp(1, 2, 8), vec![9; 4]].concat()),
                ),
                Ipv4,
                Some(v4(UDPLITE, 34, udp_t(1, 2))),
            ),
            row(
                "ipv4 options: no-op, no-op, record route, end of list",
                ethernet(ETH_IPV4, &ipv4(UDP, &rr_options, &udp(5353, 53, 8))),
                Ipv4,
                Some(v4(UDP, 46, udp_t(5353, 53))),
            ),
            row(
                "ipv4 options: all no-op",
                ethernet(ETH_IPV4, &ipv4(TCP, &[1; 40], &tcp(1, 2, SYN, 5))),
                Ipv4,
                Some(v4(TCP, 74, tcp_t(1, 2, SYN))),
            ),
            row(
                "ipv4 with don't fragment is whole",
                ethernet(
                    ETH_IPV4,
                    &patched(ipv4(UDP, &[], &udp(1, 2, 8)), 6, &[0x40, 0]),
                ),
                Ipv4,
                Some(v4(UDP, 34, udp_t(1, 2))),
            ),
            row(
                "ipv6 hop-by-hop, destination options, routing, authentication",
                {
                    let (first, payload) = chain(
                        &[HOP_BY_HOP, DEST_OPTS, ROUTING, AUTH],
                        TCP,
                        &tcp(50000, 443, SYN, 6),
                    );
                    ethernet(ETH_IPV6, &ipv6(first, &payload))
                },
                Ipv6,
                Some(v6(TCP, 86, tcp_t(50000, 443, SYN))),
            ),
            row(
                "ipv6 unknown next header after hop-by-hop is an upper layer without ports",
                {
                    let (first, payload) = chain(&[HOP_BY_HOP], 143, &[1, 2, 3]);
                    ethernet(ETH_IPV6, &ipv6(first, &payload))
                },
                Ipv6,
                Some(v6(143, 62, Transport::None)),
            ),
            row(
                "ipv6 no next header",
                ethernet(ETH_IPV6, &ipv6(59, &[])),
                Ipv6,
                Some(v6(59, 54, Transport::None)),
            ),
            row(
                "ipv6 esp ends the chain",
                ethernet(ETH_IPV6, &ipv6(50, &[0; 24])),
                Ipv6,
                Some(v6(50, 54, Transport::None)),
            ),
            row(
                "ipv4 gre has no ports",
                ethernet(ETH_IPV4, &ipv4(47, &[], &[0; 8])),
                Ipv4,
                Some(v4(47, 34, Transport::None)),
            ),
            row(
                "ipv4 first tcp fragment",
                ethernet(
                    ETH_IPV4,
                    &fragment_v4(TCP, 0, true, &[tcp(40000, 80, SYN, 5), vec![0; 8]].concat()),
                ),
                Ipv4,
                Some(IpMeta {
                    fragment: fragment(0x1234, 0, true, TCP),
                    ..v4(TCP, 34, tcp_t(40000, 80, SYN))
                }),
            ),
            row(
                "ipv4 first udp fragment: the udp length covers later fragments",
                ethernet(
                    ETH_IPV4,
                    &fragment_v4(UDP, 0, true, &[udp(1, 2, 3000), vec![0; 16]].concat()),
                ),
                Ipv4,
                Some(IpMeta {
                    fragment: fragment(0x1234, 0, true, UDP),
                    ..v4(UDP, 34, udp_t(1, 2))
                }),
            ),
            row(
                "ipv4 last tcp fragment",
                ethernet(ETH_IPV4, &fragment_v4(TCP, 1480, false, &[0xaa; 40])),
                Ipv4,
                Some(IpMeta {
                    fragment: fragment(0x1234, 1480, false, TCP),
                    ..v4(TCP, 34, Transport::None)
                }),
            ),
            row(
                "ipv4 udp fragment at offset 8 is allowed",
                ethernet(ETH_IPV4, &fragment_v4(UDP, 8, true, &[0; 16])),
                Ipv4,
                Some(IpMeta {
                    fragment: fragment(0x1234, 8, true, UDP),
                    ..v4(UDP, 34, Transport::None)
                }),
            ),
            row(
                "ipv6 first udp fragment",
                {
                    let (first, payload) = chain(&[FRAGMENT], UDP, &udp(546, 547, 1000));
                    ethernet(ETH_IPV6, &ipv6(first, &payload))
                },
                Ipv6,
                Some(IpMeta {
                    fragment: fragment(77, 0, true, UDP),
                    ..v6(UDP, 62, udp_t(546, 547))
                }),
            ),
            row(
                "ipv6 first fragment with destination options behind the fragment header",
                {
                    let (first, payload) =
                        chain(&[FRAGMENT, DEST_OPTS], TCP, &tcp(50000, 443, SYN, 5));
                    ethernet(ETH_IPV6, &ipv6(first, &payload))
                },
                Ipv6,
                Some(IpMeta {
                    fragment: fragment(77, 0, true, DEST_OPTS),
                    ..v6(TCP, 70, tcp_t(50000, 443, SYN))
                }),
            ),
            row(
                "ipv6 non-first fragment",
                ethernet(
                    ETH_IPV6,
                    &ipv6(
                        FRAGMENT,
                        &[fragment_header(UDP, 1232, true, 77), vec![0; 24]].concat(),
                    ),
                ),
                Ipv6,
                Some(IpMeta {
                    fragment: fragment(77, 1232, true, UDP),
                    ..v6(UDP, 62, Transport::None)
                }),
            ),
            row(
                "ipv6 atomic fragment is a whole packet",
                ethernet(
                    ETH_IPV6,
                    &ipv6(
                        FRAGMENT,
                        &[fragment_header(UDP, 0, false, 5), udp(1, 2, 8)].concat(),
                    ),
                ),
                Ipv6,
                Some(v6(UDP, 62, udp_t(1, 2))),
            ),
            row(
                "icmp destination unreachable quoting udp",
                ethernet(
                    ETH_IPV4,
                    &ipv4(ICMP, &[], &[icmp(3, 3, [0; 4]), v4_udp_quote].concat()),
                ),
                Ipv4,
                Some(v4(
                    ICMP,
                    34,
                    icmp_t(
                        3,
                        3,
                        quoted(
                            ip(SRC4),
                            ip(DST4),
                            UDP,
                            InnerTransport::Ports {
                                src_port: 5353,
                                dst_port: 53,
                            },
                        ),
                    ),
                )),
            ),
            row(
                "icmp time exceeded quoting an echo request",
                ethernet(
                    ETH_IPV4,
                    &ipv4(ICMP, &[], &[icmp(11, 0, [0; 4]), v4_echo_quote].concat()),
                ),
                Ipv4,
                Some(v4(
                    ICMP,
                    34,
                    icmp_t(
                        11,
                        0,
                        quoted(
                            ip(SRC4),
                            ip(DST4),
                            ICMP,
                            InnerTransport::Echo {
                                request: true,
                                id: 42,
                            },
                        ),
                    ),
                )),
            ),
            row(
                "icmp parameter problem quoting a non-first fragment",
                ethernet(
                    ETH_IPV4,
                    &ipv4(
                        ICMP,
                        &[],
                        &[icmp(12, 0, [0; 4]), v4_fragment_quote].concat(),
                    ),
                ),
                Ipv4,
                Some(v4(
                    ICMP,
                    34,
                    icmp_t(12, 0, quoted(ip(SRC4), ip(DST4), UDP, InnerTransport::None)),
                )),
            ),
            row(
                "icmp error with a quote too short to read",
                ethernet(
                    ETH_IPV4,
                    &ipv4(ICMP, &[], &[icmp(3, 1, [0; 4]), vec![0x45; 10]].concat()),
                ),
                Ipv4,
                Some(v4(
                    ICMP,
                    34,
                    icmp_t(3, 1, IcmpMessage::Error { inner: None }),
                )),
            ),
            row(
                "icmpv6 packet too big quoting tcp",
                ethernet(
                    ETH_IPV6,
                    &ipv6(ICMPV6, &[icmp(2, 0, [0, 0, 5, 0]), v6_tcp_quote].concat()),
                ),
                Ipv6,
                Some(v6(
                    ICMPV6,
                    54,
                    icmp_t(
                        2,
                        0,
                        quoted(
                            ip6(SRC6),
                            ip6(DST6),
                            TCP,
                            InnerTransport::Ports {
                                src_port: 50000,
                                dst_port: 443,
                            },
                        ),
                    ),
                )),
            ),
            row(
                "icmpv6 destination unreachable quoting udp behind extension headers",
                ethernet(
                    ETH_IPV6,
                    &ipv6(ICMPV6, &[icmp(1, 4, [0; 4]), v6_chain_quote].concat()),
                ),
                Ipv6,
                Some(v6(
                    ICMPV6,
                    54,
                    icmp_t(
                        1,
                        4,
                        quoted(
                            ip6(SRC6),
                            ip6(DST6),
                            UDP,
                            InnerTransport::Ports {
                                src_port: 546,
                                dst_port: 547,
                            },
                        ),
                    ),
                )),
            ),
            row(
                "icmpv6 time exceeded quoting garbage",
                ethernet(
                    ETH_IPV6,
                    &ipv6(ICMPV6, &[icmp(3, 0, [0; 4]), vec![0; 48]].concat()),
                ),
                Ipv6,
                Some(v6(
                    ICMPV6,
                    54,
                    icmp_t(3, 0, IcmpMessage::Error { inner: None }),
                )),
            ),
            row("arp", ethernet(0x0806, &[0; 28]), FrameKind::Arp, None),
            row(
                "lldp",
                ethernet(0x88cc, &[0; 32]),
                FrameKind::OtherEtherType(0x88cc),
                None,
            ),
            row(
                "802.3 length field",
                ethernet(0x0026, &[0x42; 38]),
                FrameKind::OtherEtherType(0x0026),
                None,
            ),
            row(
                "ethernet padding after a short packet is ignored",
                {
                    let mut frame = ethernet(ETH_IPV4, &ipv4(UDP, &[], &udp(1, 2, 8)));
                    frame.resize(60, 0xee);
                    frame
                },
                Ipv4,
                Some(v4(UDP, 34, udp_t(1, 2))),
            ),
            row(
                "checksums are not verified",
                patched(checksums_garbled, 34 + 16, &[0xbe, 0xef]),
                Ipv4,
                Some(v4(TCP, 34, tcp_t(40000, 443, SYN))),
            ),
        ]
    }

    #[test]
    fn valid_frames_parse_to_their_fields() {
        for case in valid_frames() {
            let meta = parse(&case.frame)
                .unwrap_or_else(|reason| panic!("{}: dropped as {reason}", case.name));
            assert_eq!(meta.kind, case.kind, "{}", case.name);
            assert_eq!(meta.ip, case.ip, "{}", case.name);
            let tags: Vec<(u16, u16)> = meta
                .l2
                .vlan_tags()
                .iter()
                .map(|tag| (tag.tpid, tag.vlan_id()))
                .collect();
            assert_eq!(tags, case.tags, "{}", case.name);
            assert_eq!(
                usize::from(meta.l2.l3_offset),
                L3 + 4 * tags.len(),
                "{}",
                case.name
            );
            assert_eq!(meta.frame_len as usize, case.frame.len(), "{}", case.name);
        }
    }

    #[test]
    fn vlan_tags_keep_priority_and_their_place_in_the_frame() {
        // Priority 5, drop eligible, VLAN 100; then priority 1, VLAN 4094.
        let frame = ethernet(
            0x88a8,
            &[
                &[0xb0, 0x64, 0x81, 0x00, 0x2f, 0xfe, 0x08, 0x06][..],
                &[0; 28],
            ]
            .concat(),
        );
        let meta = parse(&frame).unwrap();
        let [outer, inner] = meta.l2.vlans;
        assert_eq!(
            (outer.tpid, outer.vlan_id(), outer.priority()),
            (0x88a8, 100, 5)
        );
        assert_eq!(
            (inner.tpid, inner.vlan_id(), inner.priority()),
            (0x8100, 4094, 1)
        );
        assert_eq!(meta.l2.vlan_tag_range(), 12..20);
        assert_eq!(
            &frame[meta.l2.vlan_tag_range()],
            &[0x88, 0xa8, 0xb0, 0x64, 0x81, 0, 0x2f, 0xfe]
        );
        assert_eq!(meta.l2.ether_type, 0x0806);
        let untagged = parse(&ethernet(0x0806, &[0; 28])).unwrap();
        assert!(untagged.l2.vlan_tag_range().is_empty());
    }

    /// Every malformed frame `parse` must drop, with the reason it must give.
    fn malformed_frames() -> Vec<(&'static str, Vec<u8>, DropReason)> {
        use DropReason::*;
        let v4 = |packet: Vec<u8>| ethernet(ETH_IPV4, &packet);
        let v6 = |packet: Vec<u8>| ethernet(ETH_IPV6, &packet);
        let v6_chain = |kinds: &[u8], upper: u8, rest: &[u8]| {
            let (first, payload) = chain(kinds, upper, rest);
            ethernet(ETH_IPV6, &ipv6(first, &payload))
        };
        let udp_packet = ipv4(UDP, &[], &udp(1, 2, 8));
        let three_tags = [
            &[0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00, 0, 3, 0x08, 0x00][..],
            &udp_packet,
        ]
        .concat();
        let mut ipv4_in_ipv6_frame = ipv4(UDP, &[], &udp(1, 2, 8));
        ipv4_in_ipv6_frame.resize(48, 0);
        let mut v6_first_fragment_cut = chain(&[FRAGMENT, DEST_OPTS], TCP, &[]);
        v6_first_fragment_cut.1.truncate(12);
        vec![
            ("empty frame", vec![], TruncatedEthernet),
            ("13 bytes", vec![0; 13], TruncatedEthernet),
            (
                "802.1Q tag cut after its TCI",
                ethernet(0x8100, &[0, 100]),
                TruncatedVlan,
            ),
            (
                "802.1ad outer tag announcing a missing inner tag",
                ethernet(0x88a8, &[0, 100, 0x81, 0x00]),
                TruncatedVlan,
            ),
            (
                "three VLAN tags",
                ethernet(0x88a8, &three_tags),
                TooManyVlanTags,
            ),
            ("empty ipv4", v4(vec![]), TruncatedIpv4),
            (
                "ipv4 header of 19 bytes",
                v4(udp_packet[..19].to_vec()),
                TruncatedIpv4,
            ),
            (
                "ipv4 IHL 6 in a 20-byte packet",
                v4(patched(ipv4(UDP, &[], &[]), 0, &[0x46])),
                TruncatedIpv4,
            ),
            (
                "ipv6 header of 39 bytes",
                v6(ipv6(UDP, &[])[..39].to_vec()),
                TruncatedIpv6,
            ),
            (
                "tcp header of 19 bytes",
                v4(ipv4(TCP, &[], &tcp(1, 2, SYN, 5)[..19])),
                TruncatedTcp,
            ),
            ("tcp over ipv6, empty", v6(ipv6(TCP, &[])), TruncatedTcp),
            (
                "udp header of 7 bytes",
                v4(ipv4(UDP, &[], &udp(1, 2, 8)[..7])),
                TruncatedUdp,
            ),
            (
                "udp-lite header of 7 bytes",
                v6(ipv6(UDPLITE, &udp(1, 2, 0)[..7])),
                TruncatedUdp,
            ),
            (
                "icmp header of 7 bytes",
                v4(ipv4(ICMP, &[], &[8, 0, 0, 0, 0, 1, 0])),
                TruncatedIcmp,
            ),
            (
                "icmpv6 header of 4 bytes",
                v6(ipv6(ICMPV6, &[128, 0, 0, 0])),
                TruncatedIcmpv6,
            ),
            (
                "sctp header of 11 bytes",
                v4(ipv4(SCTP, &[], &sctp(1, 2)[..11])),
                TruncatedSctp,
            ),
            (
                "version 6 under EtherType IPv4",
                v4(ipv6(UDP, &udp(1, 2, 8))),
                IpVersionMismatch,
            ),
            (
                "version 4 under EtherType IPv6",
                v6(ipv4_in_ipv6_frame),
                IpVersionMismatch,
            ),
            (
                "IHL 4",
                v4(patched(udp_packet.clone(), 0, &[0x44])),
                Ipv4HeaderLengthTooSmall,
            ),
            (
                "IHL 0",
                v4(patched(udp_packet.clone(), 0, &[0x40])),
                Ipv4HeaderLengthTooSmall,
            ),
            (
                "ipv4 total length one past the frame",
                v4(patched(udp_packet.clone(), 2, &29u16.to_be_bytes())),
                Ipv4TotalLengthBeyondFrame,
            ),
            (
                "ipv4 total length 19",
                v4(patched(udp_packet.clone(), 2, &19u16.to_be_bytes())),
                Ipv4TotalLengthBelowHeader,
            ),
            (
                "ipv4 total length 20 with a 24-byte header",
                v4(patched(
                    ipv4(UDP, &[1; 4], &udp(1, 2, 8)),
                    2,
                    &20u16.to_be_bytes(),
                )),
                Ipv4TotalLengthBelowHeader,
            ),
            (
                "ipv4 option of length 1",
                v4(ipv4(UDP, &[7, 1, 0, 0], &udp(1, 2, 8))),
                Ipv4OptionsMalformed,
            ),
            (
                "ipv4 option running past the header",
                v4(ipv4(UDP, &[1, 7, 11, 4], &udp(1, 2, 8))),
                Ipv4OptionsMalformed,
            ),
            (
                "ipv4 option without its length byte",
                v4(ipv4(UDP, &[1, 1, 1, 7], &udp(1, 2, 8))),
                Ipv4OptionsMalformed,
            ),
            (
                "tcp data offset 4",
                v4(ipv4(TCP, &[], &tcp(1, 2, SYN, 4))),
                TcpDataOffsetTooSmall,
            ),
            (
                "tcp data offset 0 over ipv6",
                v6(ipv6(TCP, &tcp(1, 2, SYN, 0))),
                TcpDataOffsetTooSmall,
            ),
            (
                "tcp data offset 6 in a 20-byte segment",
                v4(ipv4(TCP, &[], &patched(tcp(1, 2, SYN, 5), 12, &[0x60]))),
                TcpDataOffsetBeyondSegment,
            ),
            (
                "udp length 7",
                v4(ipv4(UDP, &[], &udp(1, 2, 7))),
                UdpLengthMismatch,
            ),
            (
                "udp length one past the ip payload",
                v4(ipv4(UDP, &[], &udp(1, 2, 9))),
                UdpLengthMismatch,
            ),
            (
                "udp length 0 over ipv6",
                v6(ipv6(UDP, &udp(1, 2, 0))),
                UdpLengthMismatch,
            ),
            (
                "udp-lite coverage 4",
                v4(ipv4(UDPLITE, &[], &udp(1, 2, 4))),
                UdpLengthMismatch,
            ),
            (
                "udp-lite coverage past the payload",
                v6(ipv6(UDPLITE, &udp(1, 2, 16))),
                UdpLengthMismatch,
            ),
            (
                "ipv6 payload length one past the frame",
                v6(patched(ipv6(UDP, &udp(1, 2, 8)), 4, &9u16.to_be_bytes())),
                Ipv6PayloadLengthBeyondFrame,
            ),
            (
                "ipv6 hop-by-hop announcing 16 bytes in 8",
                v6(ipv6(HOP_BY_HOP, &[TCP, 1, 0, 0, 0, 0, 0, 0])),
                Ipv6ExtensionTruncated,
            ),
            (
                "ipv6 destination options of one byte",
                v6(ipv6(DEST_OPTS, &[TCP])),
                Ipv6ExtensionTruncated,
            ),
            (
                "ipv6 fragment header of 6 bytes",
                v6(ipv6(FRAGMENT, &fragment_header(UDP, 0, true, 1)[..6])),
                Ipv6ExtensionTruncated,
            ),
            (
                "ipv6 chain of 9 extension headers",
                v6_chain(&[0, 60, 43, 44, 51, 60, 139, 140, 253], UDP, &udp(1, 2, 8)),
                Ipv6ExtensionChainTooLong,
            ),
            (
                "ipv6 duplicated hop-by-hop",
                v6_chain(&[HOP_BY_HOP, HOP_BY_HOP], UDP, &udp(1, 2, 8)),
                Ipv6ExtensionRepeated,
            ),
            (
                "ipv6 duplicated fragment header",
                v6_chain(&[FRAGMENT, FRAGMENT], UDP, &udp(1, 2, 8)),
                Ipv6ExtensionRepeated,
            ),
            (
                "ipv6 duplicated routing header",
                v6_chain(&[ROUTING, DEST_OPTS, ROUTING], UDP, &udp(1, 2, 8)),
                Ipv6ExtensionRepeated,
            ),
            (
                "ipv6 three destination options headers",
                v6_chain(
                    &[DEST_OPTS, ROUTING, DEST_OPTS, DEST_OPTS],
                    UDP,
                    &udp(1, 2, 8),
                ),
                Ipv6ExtensionRepeated,
            ),
            (
                "ipv6 hop-by-hop after routing",
                v6_chain(&[ROUTING, HOP_BY_HOP], UDP, &udp(1, 2, 8)),
                Ipv6HopByHopNotFirst,
            ),
            (
                "ipv4 first fragment with 10 bytes of tcp",
                v4(fragment_v4(TCP, 0, true, &tcp(1, 2, SYN, 5)[..10])),
                FragmentTooShort,
            ),
            (
                "ipv4 first fragment whose tcp options continue in the next fragment",
                v4(fragment_v4(TCP, 0, true, &tcp(1, 2, SYN, 8)[..24])),
                FragmentTooShort,
            ),
            (
                "ipv4 first fragment with 4 bytes of udp",
                v4(fragment_v4(UDP, 0, true, &udp(1, 2, 8)[..4])),
                FragmentTooShort,
            ),
            (
                "ipv4 first fragment with 4 bytes of icmp",
                v4(fragment_v4(ICMP, 0, true, &[8, 0, 0, 0])),
                FragmentTooShort,
            ),
            (
                "ipv6 first fragment with 4 bytes of udp",
                v6_chain(&[FRAGMENT], UDP, &udp(1, 2, 8)[..4]),
                FragmentTooShort,
            ),
            (
                "ipv6 first fragment with 8 bytes of sctp",
                v6_chain(&[FRAGMENT], SCTP, &sctp(1, 2)[..8]),
                FragmentTooShort,
            ),
            (
                "ipv6 first fragment whose extension chain continues in the next fragment",
                v6(ipv6(v6_first_fragment_cut.0, &v6_first_fragment_cut.1)),
                FragmentTooShort,
            ),
            (
                "ipv4 tcp fragment at offset 8",
                v4(fragment_v4(TCP, 8, true, &[0; 16])),
                FragmentTcpOffsetOne,
            ),
            (
                "icmpv6 over ipv4",
                v4(ipv4(ICMPV6, &[], &icmp(128, 0, [0, 1, 0, 1]))),
                MixedFamilies,
            ),
            (
                "icmp over ipv6",
                v6(ipv6(ICMP, &icmp(8, 0, [0, 1, 0, 1]))),
                MixedFamilies,
            ),
            (
                "icmp error quoting ipv6",
                v4(ipv4(
                    ICMP,
                    &[],
                    &[icmp(3, 0, [0; 4]), ipv6(UDP, &udp(1, 2, 8))].concat(),
                )),
                MixedFamilies,
            ),
            (
                "icmpv6 error quoting ipv4",
                v6(ipv6(
                    ICMPV6,
                    &[icmp(1, 0, [0; 4]), udp_packet.clone()].concat(),
                )),
                MixedFamilies,
            ),
            (
                "a bad header behind a VLAN tag",
                ethernet(
                    0x8100,
                    &[
                        &[0, 5, 0x08, 0x00][..],
                        &patched(udp_packet.clone(), 0, &[0x43]),
                    ]
                    .concat(),
                ),
                Ipv4HeaderLengthTooSmall,
            ),
        ]
    }

    #[test]
    fn malformed_frames_are_dropped_with_their_reason() {
        for (name, frame, reason) in malformed_frames() {
            assert_eq!(parse(&frame), Err(reason), "{name}");
        }
    }

    #[test]
    fn every_parse_reason_has_a_malformed_frame() {
        let covered: HashSet<DropReason> = malformed_frames()
            .into_iter()
            .map(|(_, _, reason)| reason)
            .collect();
        for reason in DropReason::ALL {
            let raised_here = reason.stage() == DropStage::Parse;
            assert_eq!(
                covered.contains(reason),
                raised_here,
                "{reason}: a parse-stage reason needs a row; other stages must not come from parse"
            );
        }
    }

    mod properties {
        use super::*;
        use etherparse::{
            IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv6Extensions, Ipv6FragmentHeader,
            Ipv6Header, Ipv6RawExtHeader, NetSlice, SlicedPacket, TransportSlice,
        };
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::{Index, select};

        #[derive(Debug, Clone)]
        enum L4 {
            Tcp {
                src_port: u16,
                dst_port: u16,
                flags: u8,
            },
            Udp {
                src_port: u16,
                dst_port: u16,
            },
            Echo {
                request: bool,
                id: u16,
                seq: u16,
            },
        }

        #[derive(Debug, Clone, Copy)]
        enum Frag {
            Whole,
            /// IPv4: don't fragment set; IPv6: a fragment header with offset 0, no more.
            Atomic(u32),
            /// Offset 0, more fragments.
            First(u32),
        }

        /// The parameters of a valid frame.
        #[derive(Debug, Clone)]
        struct Spec {
            vlans: Vec<u16>,
            v6: bool,
            src: [u8; 16],
            dst: [u8; 16],
            hop_limit: u8,
            hop_by_hop: bool,
            dest_opts: bool,
            frag: Frag,
            l4: L4,
            payload: Vec<u8>,
        }

        fn arb_l4() -> impl Strategy<Value = L4> {
            let flags = select(
                &[
                    0,
                    SYN,
                    ACK,
                    SYN | ACK,
                    ACK | TcpFlags::PSH,
                    TcpFlags::FIN | ACK,
                    TcpFlags::RST,
                ][..],
            );
            prop_oneof![
                (any::<u16>(), any::<u16>(), flags).prop_map(|(src_port, dst_port, flags)| {
                    L4::Tcp {
                        src_port,
                        dst_port,
                        flags,
                    }
                }),
                (any::<u16>(), any::<u16>())
                    .prop_map(|(src_port, dst_port)| L4::Udp { src_port, dst_port }),
                (any::<bool>(), any::<u16>(), any::<u16>())
                    .prop_map(|(request, id, seq)| L4::Echo { request, id, seq }),
            ]
        }

        fn arb_frag() -> impl Strategy<Value = Frag> {
            prop_oneof![
                2 => Just(Frag::Whole),
                1 => any::<u32>().prop_map(Frag::Atomic),
                1 => any::<u32>().prop_map(Frag::First),
            ]
        }

        fn arb_spec() -> impl Strategy<Value = Spec> {
            (
                vec(1u16..4095, 0..=2),
                any::<bool>(),
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                any::<u8>(),
                (any::<bool>(), any::<bool>(), arb_frag()),
                arb_l4(),
                vec(any::<u8>(), 0..48),
            )
                .prop_map(
                    |(
                        vlans,
                        v6,
                        src,
                        dst,
                        hop_limit,
                        (hop_by_hop, dest_opts, frag),
                        l4,
                        payload,
                    )| Spec {
                        vlans,
                        v6,
                        src,
                        dst,
                        hop_limit,
                        hop_by_hop,
                        dest_opts,
                        frag,
                        l4,
                        payload,
                    },
                )
        }

        impl Spec {
            fn protocol(&self) -> u8 {
                match self.l4 {
                    L4::Tcp { .. } => TCP,
                    L4::Udp { .. } => UDP,
                    L4::Echo { .. } if self.v6 => ICMPV6,
                    L4::Echo { .. } => ICMP,
                }
            }

            fn src(&self) -> IpAddr {
                if self.v6 {
                    ip6(self.src)
                } else {
                    ip([self.src[0], self.src[1], self.src[2], self.src[3]])
                }
            }

            fn dst(&self) -> IpAddr {
                if self.v6 {
                    ip6(self.dst)
                } else {
                    ip([self.dst[0], self.dst[1], self.dst[2], self.dst[3]])
                }
            }

            fn ip_headers(&self) -> IpHeaders {
                // The builder fills in every Next Header, length and checksum.
                let placeholder = IpNumber(0);
                if self.v6 {
                    let option = |wanted: bool| {
                        wanted.then(|| {
                            Ipv6RawExtHeader::new_raw(placeholder, &[1, 4, 0, 0, 0, 0]).unwrap()
                        })
                    };
                    let fragment = |id, more| {
                        Some(Ipv6FragmentHeader::new(
                            placeholder,
                            IpFragOffset::ZERO,
                            more,
                            id,
                        ))
                    };
                    let header = Ipv6Header {
                        hop_limit: self.hop_limit,
                        source: self.src,
                        destination: self.dst,
                        ..Default::default()
                    };
                    let extensions = Ipv6Extensions {
                        hop_by_hop_options: option(self.hop_by_hop),
                        destination_options: option(self.dest_opts),
                        fragment: match self.frag {
                            Frag::Whole => None,
                            Frag::Atomic(id) => fragment(id, false),
                            Frag::First(id) => fragment(id, true),
                        },
                        ..Default::default()
                    };
                    IpHeaders::Ipv6(header, extensions)
                } else {
                    let [s0, s1, s2, s3, ..] = self.src;
                    let [d0, d1, d2, d3, ..] = self.dst;
                    let mut header = Ipv4Header::new(
                        0,
                        self.hop_limit,
                        placeholder,
                        [s0, s1, s2, s3],
                        [d0, d1, d2, d3],
                    )
                    .unwrap();
                    match self.frag {
                        Frag::Whole => {}
                        Frag::Atomic(id) => {
                            header.identification = id as u16;
                            header.dont_fragment = true;
                        }
                        Frag::First(id) => {
                            header.identification = id as u16;
                            header.more_fragments = true;
                        }
                    }
                    IpHeaders::Ipv4(header, Default::default())
                }
            }

            fn build(&self) -> Vec<u8> {
                let eth = eth();
                let step = match self.vlans[..] {
                    [] => eth.ip(self.ip_headers()),
                    [id] => eth.single_vlan(vlan(id)).ip(self.ip_headers()),
                    [outer, inner, ..] => eth
                        .double_vlan(vlan(outer), vlan(inner))
                        .ip(self.ip_headers()),
                };
                match self.l4 {
                    L4::Tcp {
                        src_port,
                        dst_port,
                        flags,
                    } => {
                        let mut tcp = step.tcp(src_port, dst_port, 1, 1024);
                        let has = |flag: u8| flags & flag != 0;
                        if has(SYN) {
                            tcp = tcp.syn();
                        }
                        if has(ACK) {
                            tcp = tcp.ack(1);
                        }
                        if has(TcpFlags::FIN) {
                            tcp = tcp.fin();
                        }
                        if has(TcpFlags::RST) {
                            tcp = tcp.rst();
                        }
                        if has(TcpFlags::PSH) {
                            tcp = tcp.psh();
                        }
                        build!(tcp, &self.payload)
                    }
                    L4::Udp { src_port, dst_port } => {
                        build!(step.udp(src_port, dst_port), &self.payload)
                    }
                    L4::Echo { request, id, seq } => match (self.v6, request) {
                        (false, true) => build!(step.icmpv4_echo_request(id, seq), &self.payload),
                        (false, false) => build!(step.icmpv4_echo_reply(id, seq), &self.payload),
                        (true, true) => build!(step.icmpv6_echo_request(id, seq), &self.payload),
                        (true, false) => build!(step.icmpv6_echo_reply(id, seq), &self.payload),
                    },
                }
            }

            fn expected(&self) -> IpMeta {
                let protocol = self.protocol();
                let fragment = match self.frag {
                    Frag::First(id) => Some(FragmentInfo {
                        id: if self.v6 { id } else { id & 0xffff },
                        offset: 0,
                        more_fragments: true,
                        // The builder puts the fragment header after destination options.
                        protocol,
                    }),
                    Frag::Whole | Frag::Atomic(_) => None,
                };
                let extensions = if self.v6 {
                    let fragment_header = !matches!(self.frag, Frag::Whole);
                    8 * [self.hop_by_hop, self.dest_opts, fragment_header]
                        .iter()
                        .filter(|&&b| b)
                        .count()
                } else {
                    0
                };
                let network = if self.v6 { 40 } else { 20 };
                let l4_offset = L3 + 4 * self.vlans.len() + network + extensions;
                let transport = match self.l4 {
                    L4::Tcp {
                        src_port,
                        dst_port,
                        flags,
                    } => tcp_t(src_port, dst_port, flags),
                    L4::Udp { src_port, dst_port } => udp_t(src_port, dst_port),
                    L4::Echo { request, id, .. } => {
                        let (icmp_type, message) = match (self.v6, request) {
                            (false, true) => (8, IcmpMessage::EchoRequest { id }),
                            (false, false) => (0, IcmpMessage::EchoReply { id }),
                            (true, true) => (128, IcmpMessage::EchoRequest { id }),
                            (true, false) => (129, IcmpMessage::EchoReply { id }),
                        };
                        icmp_t(icmp_type, 0, message)
                    }
                };
                IpMeta {
                    src: self.src(),
                    dst: self.dst(),
                    protocol,
                    hop_limit: self.hop_limit,
                    l4_offset: l4_offset as u32,
                    fragment,
                    transport,
                }
            }
        }

        /// What must hold of any result, whatever the input.
        fn check_invariants(
            frame: &[u8],
            result: &Result<PacketMeta, DropReason>,
        ) -> Result<(), TestCaseError> {
            let meta = match result {
                Err(reason) => {
                    prop_assert_eq!(reason.stage(), DropStage::Parse);
                    return Ok(());
                }
                Ok(meta) => meta,
            };
            prop_assert_eq!(meta.frame_len as usize, frame.len());
            let l3 = usize::from(meta.l2.l3_offset);
            prop_assert_eq!(l3, L3 + 4 * meta.l2.vlan_tags().len());
            prop_assert_eq!(&frame[l3 - 2..l3], &meta.l2.ether_type.to_be_bytes());
            match (meta.kind, &meta.ip) {
                (FrameKind::Ipv4, Some(ip)) => prop_assert!(ip.src.is_ipv4() && ip.dst.is_ipv4()),
                (FrameKind::Ipv6 | FrameKind::Ipv6NeighborDiscovery, Some(ip)) => {
                    prop_assert!(ip.src.is_ipv6() && ip.dst.is_ipv6())
                }
                (FrameKind::Arp | FrameKind::OtherEtherType(_), None) => {}
                (kind, ip) => prop_assert!(false, "{:?} with {:?}", kind, ip),
            }
            if let Some(ip) = &meta.ip {
                let l4 = ip.l4_offset as usize;
                prop_assert!(l4 <= frame.len());
                if ip.fragment.is_some_and(|f| f.is_non_first()) {
                    prop_assert!(!ip.transport.is_present());
                }
                // Ports are the first four bytes where the transport header is said to be.
                if let Some((src_port, dst_port)) = ip.transport.ports() {
                    let [s0, s1] = src_port.to_be_bytes();
                    let [d0, d1] = dst_port.to_be_bytes();
                    prop_assert_eq!(&frame[l4..l4 + 4], &[s0, s1, d0, d1]);
                }
            }
            Ok(())
        }

        /// Where etherparse's strict slicer also finds ports, it must find the same addresses
        /// and ports.
        fn check_against_etherparse(
            frame: &[u8],
            result: &Result<PacketMeta, DropReason>,
        ) -> Result<(), TestCaseError> {
            let (Ok(meta), Ok(sliced)) = (result, SlicedPacket::from_ethernet(frame)) else {
                return Ok(());
            };
            let Some(ip) = meta.ip else { return Ok(()) };
            let theirs_ports = match &sliced.transport {
                Some(TransportSlice::Tcp(tcp)) => Some((tcp.source_port(), tcp.destination_port())),
                Some(TransportSlice::Udp(udp)) => Some((udp.source_port(), udp.destination_port())),
                _ => None,
            };
            let (Some(ours), Some(theirs)) = (ip.transport.ports(), theirs_ports) else {
                return Ok(());
            };
            prop_assert_eq!(ours, theirs);
            let addresses = match &sliced.net {
                Some(NetSlice::Ipv4(v4)) => (
                    IpAddr::V4(v4.header().source_addr()),
                    IpAddr::V4(v4.header().destination_addr()),
                ),
                Some(NetSlice::Ipv6(v6)) => (
                    IpAddr::V6(v6.header().source_addr()),
                    IpAddr::V6(v6.header().destination_addr()),
                ),
                _ => return Ok(()),
            };
            prop_assert_eq!((ip.src, ip.dst), addresses);
            Ok(())
        }

        /// Random bytes behind an Ethernet header whose EtherType is worth parsing, and often
        /// a first byte that looks like an IP header.
        fn arb_frame_bytes() -> impl Strategy<Value = Vec<u8>> {
            let ether_type =
                select(&[0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x0806, 0x88cc][..]);
            let first = prop::option::of(select(&[0x45u8, 0x46, 0x4f, 0x60, 0x00, 0x81][..]));
            prop_oneof![
                vec(any::<u8>(), 0..96),
                (ether_type, first, vec(any::<u8>(), 0..160)).prop_map(
                    |(ether_type, first, rest)| {
                        ethernet(ether_type, &[first.as_slice(), &rest].concat())
                    }
                ),
            ]
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(frame in arb_frame_bytes()) {
                let result = parse(&frame);
                check_invariants(&frame, &result)?;
                check_against_etherparse(&frame, &result)?;
            }

            #[test]
            fn a_valid_frame_parses_to_what_it_was_built_from(spec in arb_spec()) {
                let frame = spec.build();
                let meta = parse(&frame)
                    .map_err(|reason| TestCaseError::fail(format!("dropped as {reason}")))?;
                let kind = if spec.v6 { FrameKind::Ipv6 } else { FrameKind::Ipv4 };
                prop_assert_eq!(meta.kind, kind);
                prop_assert_eq!(meta.ip, Some(spec.expected()));
                let vlan_ids: Vec<u16> =
                    meta.l2.vlan_tags().iter().map(|tag| tag.vlan_id()).collect();
                prop_assert_eq!(vlan_ids, spec.vlans.clone());
                check_invariants(&frame, &Ok(meta))?;
            }

            #[test]
            fn every_truncation_of_a_valid_frame_is_dropped(spec in arb_spec()) {
                let frame = spec.build();
                for cut in 0..frame.len() {
                    let result = parse(&frame[..cut]);
                    prop_assert!(result.is_err(), "cut at {}: {:?}", cut, result);
                    check_invariants(&frame[..cut], &result)?;
                }
            }

            #[test]
            fn bit_flips_of_a_valid_frame_never_panic(
                spec in arb_spec(),
                flips in vec((any::<Index>(), 0u8..8), 1..6),
            ) {
                let mut frame = spec.build();
                for (index, bit) in flips {
                    let at = index.index(frame.len());
                    frame[at] ^= 1 << bit;
                }
                let result = parse(&frame);
                check_invariants(&frame, &result)?;
                check_against_etherparse(&frame, &result)?;
            }

            #[test]
            fn ethernet_padding_changes_nothing(
                spec in arb_spec(),
                padding in vec(any::<u8>(), 1..64),
            ) {
                let frame = spec.build();
                let padded = [frame.clone(), padding].concat();
                let (plain, padded_meta) = (parse(&frame).unwrap(), parse(&padded).unwrap());
                prop_assert_eq!(plain.ip, padded_meta.ip);
                prop_assert_eq!(plain.l2, padded_meta.l2);
                prop_assert_eq!(padded_meta.frame_len as usize, padded.len());
            }
        }
    }
}
