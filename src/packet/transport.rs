//! Transport headers: ports and flags for policy and conntrack, ICMP types, and the header an
//! ICMP error quotes (so conntrack can find the connection it is RELATED to).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::drop::DropReason;
use super::ipv6_ext;
use super::meta::{
    FragmentInfo, IcmpMessage, IcmpMeta, InnerFlow, InnerTransport, TcpFlags, Transport, protocol,
};

/// The IP version a transport header travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
}

const TCP_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const SCTP_HEADER_LEN: usize = 12;
/// Type, code, checksum and the 4 bytes every message has (identifier and sequence for echo,
/// unused or MTU or pointer for errors); an error's quote follows.
const ICMP_HEADER_LEN: usize = 8;
/// Bytes of a quoted transport header that hold the ports (TCP, UDP, UDP-Lite, SCTP alike).
const QUOTED_PORTS_LEN: usize = 4;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;
const ICMPV6_DEST_UNREACHABLE: u8 = 1;
const ICMPV6_PARAMETER_PROBLEM: u8 = 4;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// Reads the transport header of `protocol` at the start of `segment` (the IP payload after
/// the network headers, cut to the IP length).
#[inline(always)]
pub(super) fn parse(
    family: Family,
    protocol: u8,
    segment: &[u8],
    fragment: Option<FragmentInfo>,
) -> Result<Transport, DropReason> {
    if icmp_family(protocol).is_some_and(|icmp| icmp != family) {
        return Err(DropReason::MixedFamilies);
    }
    if fragment.is_some_and(|f| f.is_non_first()) {
        return Ok(Transport::None);
    }
    let reader = HeaderReader {
        first_fragment: fragment.is_some(),
    };
    match protocol {
        protocol::TCP => reader.tcp(segment),
        protocol::UDP | protocol::UDPLITE => reader.udp(protocol, segment),
        protocol::SCTP => reader.sctp(segment),
        protocol::ICMP | protocol::ICMPV6 => reader.icmp(family, segment),
        _ => Ok(Transport::None),
    }
}

/// The family an ICMP protocol number belongs to, if it is one.
fn icmp_family(protocol: u8) -> Option<Family> {
    match protocol {
        protocol::ICMP => Some(Family::V4),
        protocol::ICMPV6 => Some(Family::V6),
        _ => None,
    }
}

/// Reads transport headers; knows whether the segment is a first fragment, which changes
/// what a short header means.
struct HeaderReader {
    first_fragment: bool,
}

impl HeaderReader {
    /// A header that does not fit a first fragment is a first fragment too short to hold it:
    /// its ports or flags would arrive in a fragment policy never sees whole.
    fn short(&self, reason: DropReason) -> DropReason {
        if self.first_fragment {
            DropReason::FragmentTooShort
        } else {
            reason
        }
    }

    #[inline(always)]
    fn tcp(&self, segment: &[u8]) -> Result<Transport, DropReason> {
        let header: &[u8; TCP_HEADER_LEN] = segment
            .first_chunk()
            .ok_or(self.short(DropReason::TruncatedTcp))?;
        let header_len = usize::from(header[12] >> 4) * 4;
        if header_len < TCP_HEADER_LEN {
            return Err(DropReason::TcpDataOffsetTooSmall);
        }
        if header_len > segment.len() {
            return Err(self.short(DropReason::TcpDataOffsetBeyondSegment));
        }
        Ok(Transport::Tcp {
            src_port: u16::from_be_bytes([header[0], header[1]]),
            dst_port: u16::from_be_bytes([header[2], header[3]]),
            flags: TcpFlags(header[13]),
        })
    }

    #[inline(always)]
    fn udp(&self, protocol: u8, segment: &[u8]) -> Result<Transport, DropReason> {
        let header: &[u8; UDP_HEADER_LEN] = segment
            .first_chunk()
            .ok_or(self.short(DropReason::TruncatedUdp))?;
        let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
        // A first fragment holds only the start of the datagram its length describes.
        let beyond_payload = !self.first_fragment && length > segment.len();
        let valid = if protocol == protocol::UDPLITE {
            // RFC 3828: the field is checksum coverage; 0 means the whole datagram.
            length == 0 || (length >= UDP_HEADER_LEN && !beyond_payload)
        } else {
            length >= UDP_HEADER_LEN && !beyond_payload
        };
        if !valid {
            return Err(DropReason::UdpLengthMismatch);
        }
        Ok(Transport::Udp {
            src_port: u16::from_be_bytes([header[0], header[1]]),
            dst_port: u16::from_be_bytes([header[2], header[3]]),
        })
    }

    #[inline(always)]
    fn sctp(&self, segment: &[u8]) -> Result<Transport, DropReason> {
        let header: &[u8; SCTP_HEADER_LEN] = segment
            .first_chunk()
            .ok_or(self.short(DropReason::TruncatedSctp))?;
        Ok(Transport::Sctp {
            src_port: u16::from_be_bytes([header[0], header[1]]),
            dst_port: u16::from_be_bytes([header[2], header[3]]),
        })
    }

    #[inline(always)]
    fn icmp(&self, family: Family, segment: &[u8]) -> Result<Transport, DropReason> {
        let truncated = match family {
            Family::V4 => DropReason::TruncatedIcmp,
            Family::V6 => DropReason::TruncatedIcmpv6,
        };
        let (header, quote) = segment
            .split_first_chunk::<ICMP_HEADER_LEN>()
            .ok_or(self.short(truncated))?;
        let (icmp_type, code) = (header[0], header[1]);
        let id = u16::from_be_bytes([header[4], header[5]]);
        let message = match echo(family, icmp_type) {
            Some(true) => IcmpMessage::EchoRequest { id },
            Some(false) => IcmpMessage::EchoReply { id },
            None if is_error(family, icmp_type) => IcmpMessage::Error {
                inner: quoted_flow(family, quote)?,
            },
            None => IcmpMessage::Other,
        };
        Ok(Transport::Icmp(IcmpMeta {
            icmp_type,
            code,
            message,
        }))
    }
}

/// `Some(true)` for an echo request, `Some(false)` for an echo reply.
fn echo(family: Family, icmp_type: u8) -> Option<bool> {
    match (family, icmp_type) {
        (Family::V4, ICMP_ECHO_REQUEST) | (Family::V6, ICMPV6_ECHO_REQUEST) => Some(true),
        (Family::V4, ICMP_ECHO_REPLY) | (Family::V6, ICMPV6_ECHO_REPLY) => Some(false),
        _ => None,
    }
}

/// The errors conntrack relates to a connection (SPEC §A2); redirects and source quench are
/// judged by policy like any other ICMP message.
fn is_error(family: Family, icmp_type: u8) -> bool {
    match family {
        Family::V4 => matches!(
            icmp_type,
            ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
        ),
        // Destination unreachable, packet too big, time exceeded, parameter problem.
        Family::V6 => (ICMPV6_DEST_UNREACHABLE..=ICMPV6_PARAMETER_PROBLEM).contains(&icmp_type),
    }
}

/// The connection an ICMP error's quote belongs to. A quote too short or garbled to read is
/// not a drop (the error is then judged by policy); a quote of the other IP version is.
fn quoted_flow(family: Family, quote: &[u8]) -> Result<Option<InnerFlow>, DropReason> {
    let Some(first) = quote.first() else {
        return Ok(None);
    };
    match (family, first >> 4) {
        (Family::V4, 4) => Ok(quoted_ipv4(quote)),
        (Family::V6, 6) => Ok(quoted_ipv6(quote)),
        (Family::V4, 6) | (Family::V6, 4) => Err(DropReason::MixedFamilies),
        _ => Ok(None),
    }
}

/// Quotes are cut short by design (RFC 792: the header and 8 bytes; RFC 4443: as much as fits
/// in 1280 bytes), so the quoted length fields are not checked against the quote.
fn quoted_ipv4(quote: &[u8]) -> Option<InnerFlow> {
    let (fixed, rest) = quote.split_first_chunk::<12>()?;
    let (src, rest) = rest.split_first_chunk::<4>()?;
    let (dst, _) = rest.split_first_chunk::<4>()?;
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    if header_len < 20 {
        return None;
    }
    let protocol = fixed[9];
    let non_first_fragment = u16::from_be_bytes([fixed[6], fixed[7]]) & 0x1fff != 0;
    let transport = if non_first_fragment {
        InnerTransport::None
    } else {
        quoted_transport(Family::V4, protocol, quote.get(header_len..))
    };
    Some(InnerFlow {
        src: IpAddr::V4(Ipv4Addr::from(*src)),
        dst: IpAddr::V4(Ipv4Addr::from(*dst)),
        protocol,
        transport,
    })
}

fn quoted_ipv6(quote: &[u8]) -> Option<InnerFlow> {
    let (fixed, rest) = quote.split_first_chunk::<8>()?;
    let (src, rest) = rest.split_first_chunk::<16>()?;
    let (dst, rest) = rest.split_first_chunk::<16>()?;
    let chain = ipv6_ext::walk(fixed[6], rest).ok()?;
    let transport = if chain.fragment.is_some_and(|f| f.is_non_first()) {
        InnerTransport::None
    } else {
        quoted_transport(Family::V6, chain.protocol, rest.get(chain.offset..))
    };
    Some(InnerFlow {
        src: IpAddr::V6(Ipv6Addr::from(*src)),
        dst: IpAddr::V6(Ipv6Addr::from(*dst)),
        protocol: chain.protocol,
        transport,
    })
}

fn quoted_transport(family: Family, protocol: u8, header: Option<&[u8]>) -> InnerTransport {
    let header = header.unwrap_or_default();
    match protocol {
        protocol::TCP | protocol::UDP | protocol::UDPLITE | protocol::SCTP => {
            match header.first_chunk::<QUOTED_PORTS_LEN>() {
                Some(&[s0, s1, d0, d1]) => InnerTransport::Ports {
                    src_port: u16::from_be_bytes([s0, s1]),
                    dst_port: u16::from_be_bytes([d0, d1]),
                },
                None => InnerTransport::None,
            }
        }
        protocol::ICMP | protocol::ICMPV6 if icmp_family(protocol) == Some(family) => {
            match header.first_chunk::<ICMP_HEADER_LEN>() {
                Some(icmp) => match echo(family, icmp[0]) {
                    Some(request) => InnerTransport::Echo {
                        request,
                        id: u16::from_be_bytes([icmp[4], icmp[5]]),
                    },
                    None => InnerTransport::None,
                },
                None => InnerTransport::None,
            }
        }
        _ => InnerTransport::None,
    }
}
