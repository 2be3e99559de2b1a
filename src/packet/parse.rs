//! Ethernet, VLAN tags, IPv4 and IPv6: the layers down to the transport header.

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
/// RFC 4861: neighbour discovery is only valid with the hop limit a router never leaves.
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
    let (kind, ip) = match l2.ether_type {
        ETHER_TYPE_IPV4 => (FrameKind::Ipv4, Some(parse_ipv4(network, l3_offset)?)),
        ETHER_TYPE_IPV6 => {
            let ip = parse_ipv6(network, l3_offset)?;
            (ipv6_kind(&ip), Some(ip))
        }
        ETHER_TYPE_ARP => (FrameKind::Arp, None),
        other => (FrameKind::OtherEtherType(other), None),
    };
    Ok(PacketMeta {
        frame_len: offset_u32(frame.len()),
        l2,
        kind,
        ip,
    })
}

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
