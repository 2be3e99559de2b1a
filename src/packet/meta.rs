//! What `parse` learns about a frame: everything conntrack, the fragment tracker and the
//! classifier need, so nothing after the parser slices the raw bytes again.

use std::net::IpAddr;
use std::ops::Range;

use crate::snapshot::FlowKey;

/// IANA protocol numbers the dataplane reads headers for.
pub mod protocol {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// Transmission Control Protocol.
    pub const TCP: u8 = 6;
    /// User Datagram Protocol.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// Stream Control Transmission Protocol.
    pub const SCTP: u8 = 132;
    /// UDP-Lite (RFC 3828): UDP's header, with checksum coverage where UDP has its length.
    pub const UDPLITE: u8 = 136;
}

/// The parsed view of one Ethernet frame. `Copy`, no heap, no borrow of the frame.
///
/// Invariant kept by `parse`: `ip` is `Some` exactly when `kind` is `Ipv4`, `Ipv6` or
/// `Ipv6NeighborDiscovery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Length of the whole frame in bytes, as received (Ethernet padding included).
    pub frame_len: u32,
    /// Ethernet header and VLAN tags.
    pub l2: L2Meta,
    /// What the frame carries, which decides how the pipeline treats it.
    pub kind: FrameKind,
    /// Network and transport layer of an IP frame.
    pub ip: Option<IpMeta>,
}

/// Classification of a frame by what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// An IPv4 packet.
    Ipv4,
    /// An IPv6 packet that is not neighbour discovery.
    Ipv6,
    /// ARP: passes without policy so that L2 stays transparent.
    Arp,
    /// IPv6 neighbour discovery (ICMPv6 types 133–137, hop limit 255, unfragmented): passes
    /// without policy so that L2 stays transparent. Hosts discard ND messages with any other
    /// hop limit (RFC 4861 §6.1, §7.1), so those, and fragmented ones (RFC 6980), are classified
    /// as plain `Ipv6` and judged by policy rather than let through.
    Ipv6NeighborDiscovery,
    /// Any other EtherType, or an 802.3 length below 0x0600. The pipeline drops it unless the
    /// value is in the `allowedEtherTypes` setting.
    OtherEtherType(u16),
}

/// Layer 2: where the VLAN tags are and what follows them. The frame is forwarded unchanged,
/// so this only records the tags; it never strips them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L2Meta {
    /// The EtherType after the VLAN tags.
    pub ether_type: u16,
    /// How many VLAN tags the frame carries (0, 1 or 2).
    pub vlan_count: u8,
    /// The tags in frame order, outer first; only the first `vlan_count` are meaningful.
    pub vlans: [VlanTag; 2],
    /// Offset of the network header: 14 plus 4 per VLAN tag.
    pub l3_offset: u16,
}

/// One 802.1Q / 802.1ad tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    /// Tag protocol identifier: 0x8100, 0x88A8 or 0x9100.
    pub tpid: u16,
    /// Tag control information: priority (3 bits), drop eligible (1), VLAN id (12).
    pub tci: u16,
}

/// Network and transport layer of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpMeta {
    /// Source address; its family is the packet's IP version.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The upper-layer protocol: for IPv6 the Next Header after the extension-header chain
    /// (an unknown value is taken as a protocol with no ports), for a non-first IPv6 fragment
    /// the fragment header's Next Header.
    pub protocol: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
    /// Offset in the frame of the upper-layer data: the transport header, or the fragment data
    /// of a non-first fragment.
    pub l4_offset: u32,
    /// Set for a piece of a fragmented packet; `None` for a whole packet, including IPv6
    /// atomic fragments (offset 0, no more fragments: RFC 6946 treats them as whole).
    pub fragment: Option<FragmentInfo>,
    /// What the transport header says.
    pub transport: Transport,
}

/// One fragment of a fragmented IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentInfo {
    /// The packet's identification: 16 bits for IPv4, 32 for IPv6.
    pub id: u32,
    /// Offset of this fragment's data in the original payload, in bytes (a multiple of 8).
    pub offset: u16,
    /// More fragments follow this one.
    pub more_fragments: bool,
    /// The protocol number that every fragment of the packet carries, to key the fragment
    /// tracker by (src, dst, protocol, id): IPv4's protocol field, or the Next Header of the
    /// IPv6 fragment header. For IPv6 it can differ from [`IpMeta::protocol`] of the first
    /// fragment when extension headers follow the fragment header.
    pub protocol: u8,
}

impl FragmentInfo {
    /// The fragment holding the start of the payload, and with it the transport header.
    pub const fn is_first(&self) -> bool {
        self.offset == 0
    }

    /// A later fragment: it carries no transport header, so it has no ports of its own.
    pub const fn is_non_first(&self) -> bool {
        self.offset != 0
    }
}

/// The transport header, as far as policy and conntrack care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No transport header was read: a non-first fragment, or a protocol whose header holds
    /// nothing policy matches on (GRE, ESP, IPv6 no-next-header, an unknown number).
    None,
    /// TCP.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Flags byte.
        flags: TcpFlags,
    },
    /// UDP or UDP-Lite ([`IpMeta::protocol`] tells which).
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// SCTP.
    Sctp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP over IPv4 or ICMPv6 over IPv6.
    Icmp(IcmpMeta),
}

impl Transport {
    /// (source, destination) ports of TCP, UDP, UDP-Lite and SCTP.
    pub const fn ports(&self) -> Option<(u16, u16)> {
        match *self {
            Transport::Tcp {
                src_port, dst_port, ..
            }
            | Transport::Udp { src_port, dst_port }
            | Transport::Sctp { src_port, dst_port } => Some((src_port, dst_port)),
            Transport::None | Transport::Icmp(_) => None,
        }
    }

    /// TCP flags, for a TCP header.
    pub const fn tcp_flags(&self) -> Option<TcpFlags> {
        match *self {
            Transport::Tcp { flags, .. } => Some(flags),
            _ => None,
        }
    }

    /// The ICMP or ICMPv6 header.
    pub const fn icmp(&self) -> Option<&IcmpMeta> {
        match self {
            Transport::Icmp(icmp) => Some(icmp),
            _ => None,
        }
    }

    /// Whether a transport header was read.
    pub const fn is_present(&self) -> bool {
        !matches!(self, Transport::None)
    }
}

/// The TCP flags byte (CWR down to FIN); the NS bit is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field is significant.
    pub const URG: u8 = 0x20;
    /// ECN echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;

    /// Whether every flag of `mask` is set.
    pub const fn contains(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
}

/// An ICMP or ICMPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpMeta {
    /// Message type.
    pub icmp_type: u8,
    /// Message code.
    pub code: u8,
    /// What conntrack makes of the message.
    pub message: IcmpMessage,
}

/// The ICMP messages conntrack treats specially (SPEC §A2); everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpMessage {
    /// Echo request (ICMP 8, ICMPv6 128): opens a pseudo-connection keyed by `id`.
    EchoRequest {
        /// Echo identifier.
        id: u16,
    },
    /// Echo reply (ICMP 0, ICMPv6 129).
    EchoReply {
        /// Echo identifier.
        id: u16,
    },
    /// An error (destination unreachable, time exceeded, parameter problem; ICMPv6 packet too
    /// big). It is RELATED to the connection of the quoted header, when one could be read.
    Error {
        /// The quoted packet's header, if enough of it was quoted to read addresses and
        /// protocol.
        inner: Option<InnerFlow>,
    },
    /// Any other message: judged by policy packet by packet.
    Other,
}

impl IcmpMeta {
    /// The echo identifier of an echo request or reply.
    pub const fn echo_id(&self) -> Option<u16> {
        match self.message {
            IcmpMessage::EchoRequest { id } | IcmpMessage::EchoReply { id } => Some(id),
            IcmpMessage::Error { .. } | IcmpMessage::Other => None,
        }
    }

    /// The quoted header of an ICMP error.
    pub const fn inner(&self) -> Option<&InnerFlow> {
        match &self.message {
            IcmpMessage::Error { inner } => inner.as_ref(),
            _ => None,
        }
    }
}

/// The header an ICMP error quotes: the packet that caused it, as its sender sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InnerFlow {
    /// Source of the quoted packet (normally the address the error is sent to).
    pub src: IpAddr,
    /// Destination of the quoted packet.
    pub dst: IpAddr,
    /// Upper-layer protocol of the quoted packet.
    pub protocol: u8,
    /// What the quoted transport header identifies the connection by.
    pub transport: InnerTransport,
}

/// The connection-identifying part of a quoted transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InnerTransport {
    /// Not quoted far enough, a non-first fragment, or a protocol without ports.
    None,
    /// Ports of quoted TCP, UDP, UDP-Lite or SCTP (the first four bytes of each).
    Ports {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// A quoted echo request or reply.
    Echo {
        /// True for a request, false for a reply.
        request: bool,
        /// Echo identifier.
        id: u16,
    },
}

impl L2Meta {
    /// The VLAN tags present, outer first.
    pub fn vlan_tags(&self) -> &[VlanTag] {
        self.vlans
            .get(..usize::from(self.vlan_count))
            .unwrap_or(&[])
    }

    /// The bytes of the frame holding the VLAN tags (TPID and TCI of each), empty without tags.
    /// A backend that receives the outer tag out of band puts it back here.
    pub fn vlan_tag_range(&self) -> Range<usize> {
        use super::parse::{ETHER_TYPE_OFFSET, VLAN_TAG_LEN};
        ETHER_TYPE_OFFSET..ETHER_TYPE_OFFSET + VLAN_TAG_LEN * usize::from(self.vlan_count)
    }
}

impl VlanTag {
    /// The 12-bit VLAN identifier.
    pub const fn vlan_id(&self) -> u16 {
        self.tci & 0x0fff
    }

    /// The 3-bit priority code point.
    pub const fn priority(&self) -> u8 {
        // Shifting a u16 right by 13 leaves 3 bits, so the cast keeps every bit.
        (self.tci >> 13) as u8
    }
}

impl PacketMeta {
    /// The classifier's input for this packet, or `None` for a frame that is not IP.
    ///
    /// A non-first fragment has no ports: its verdict comes from the fragment tracker, which
    /// remembers the first fragment's. ICMP errors are keyed by their own type and code; the
    /// quoted header is for conntrack (RELATED), not for the classifier.
    pub fn flow_key(&self) -> Option<FlowKey> {
        let ip = self.ip.as_ref()?;
        let ports = ip.transport.ports();
        let icmp = ip.transport.icmp();
        Some(FlowKey {
            src: ip.src,
            dst: ip.dst,
            protocol: ip.protocol,
            src_port: ports.map(|(src, _)| src),
            dst_port: ports.map(|(_, dst)| dst),
            icmp_type: icmp.map(|icmp| icmp.icmp_type),
            icmp_code: icmp.map(|icmp| icmp.code),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));
    const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
    const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20));

    fn frame(kind: FrameKind, ip: Option<IpMeta>) -> PacketMeta {
        PacketMeta {
            frame_len: 64,
            l2: L2Meta {
                ether_type: 0x0800,
                vlan_count: 0,
                vlans: [VlanTag::default(); 2],
                l3_offset: 14,
            },
            kind,
            ip,
        }
    }

    fn ip_frame(src: IpAddr, dst: IpAddr, protocol: u8, transport: Transport) -> PacketMeta {
        with_fragment(src, dst, protocol, transport, None)
    }

    fn with_fragment(
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        transport: Transport,
        fragment: Option<FragmentInfo>,
    ) -> PacketMeta {
        let kind = if src.is_ipv4() {
            FrameKind::Ipv4
        } else {
            FrameKind::Ipv6
        };
        frame(
            kind,
            Some(IpMeta {
                src,
                dst,
                protocol,
                hop_limit: 64,
                l4_offset: 34,
                fragment,
                transport,
            }),
        )
    }

    fn key(
        (src, dst, protocol): (IpAddr, IpAddr, u8),
        ports: Option<(u16, u16)>,
        icmp: Option<(u8, u8)>,
    ) -> Option<FlowKey> {
        Some(FlowKey {
            src,
            dst,
            protocol,
            src_port: ports.map(|p| p.0),
            dst_port: ports.map(|p| p.1),
            icmp_type: icmp.map(|i| i.0),
            icmp_code: icmp.map(|i| i.1),
        })
    }

    fn icmp(icmp_type: u8, code: u8, message: IcmpMessage) -> Transport {
        Transport::Icmp(IcmpMeta {
            icmp_type,
            code,
            message,
        })
    }

    #[test]
    fn flow_key_table() {
        use protocol::{ICMP, ICMPV6, SCTP, TCP, UDP, UDPLITE};
        let syn = TcpFlags(TcpFlags::SYN);
        let tcp = Transport::Tcp {
            src_port: 40000,
            dst_port: 443,
            flags: syn,
        };
        let udp = Transport::Udp {
            src_port: 5353,
            dst_port: 53,
        };
        let quote = InnerFlow {
            src: B4,
            dst: A4,
            protocol: UDP,
            transport: InnerTransport::Ports {
                src_port: 1,
                dst_port: 2,
            },
        };
        let first = FragmentInfo {
            id: 9,
            offset: 0,
            more_fragments: true,
            protocol: TCP,
        };
        let later = FragmentInfo {
            offset: 1480,
            ..first
        };
        let cases = [
            (
                "ipv4 tcp",
                ip_frame(A4, B4, TCP, tcp),
                key((A4, B4, TCP), Some((40000, 443)), None),
            ),
            (
                "ipv6 udp",
                ip_frame(A6, B6, UDP, udp),
                key((A6, B6, UDP), Some((5353, 53)), None),
            ),
            (
                "udp-lite keeps its own protocol number",
                ip_frame(A4, B4, UDPLITE, udp),
                key((A4, B4, UDPLITE), Some((5353, 53)), None),
            ),
            (
                "sctp",
                ip_frame(
                    A6,
                    B6,
                    SCTP,
                    Transport::Sctp {
                        src_port: 2905,
                        dst_port: 38412,
                    },
                ),
                key((A6, B6, SCTP), Some((2905, 38412)), None),
            ),
            (
                "icmp echo: type and code, the identifier is conntrack's",
                ip_frame(A4, B4, ICMP, icmp(8, 0, IcmpMessage::EchoRequest { id: 7 })),
                key((A4, B4, ICMP), None, Some((8, 0))),
            ),
            (
                "icmp error: its own type and code, not the quoted flow",
                ip_frame(
                    A4,
                    B4,
                    ICMP,
                    icmp(3, 4, IcmpMessage::Error { inner: Some(quote) }),
                ),
                key((A4, B4, ICMP), None, Some((3, 4))),
            ),
            (
                "icmpv6 neighbour solicitation is still an IP flow",
                frame(
                    FrameKind::Ipv6NeighborDiscovery,
                    ip_frame(A6, B6, ICMPV6, icmp(135, 0, IcmpMessage::Other)).ip,
                ),
                key((A6, B6, ICMPV6), None, Some((135, 0))),
            ),
            (
                "first fragment has ports",
                with_fragment(A4, B4, TCP, tcp, Some(first)),
                key((A4, B4, TCP), Some((40000, 443)), None),
            ),
            (
                "non-first fragment has none",
                with_fragment(A4, B4, TCP, Transport::None, Some(later)),
                key((A4, B4, TCP), None, None),
            ),
            (
                "protocol without ports",
                ip_frame(A6, B6, 47, Transport::None),
                key((A6, B6, 47), None, None),
            ),
            ("arp", frame(FrameKind::Arp, None), None),
            (
                "other EtherType",
                frame(FrameKind::OtherEtherType(0x88cc), None),
                None,
            ),
        ];
        for (name, meta, expected) in cases {
            assert_eq!(meta.flow_key(), expected, "{name}");
        }
    }

    #[test]
    fn transport_accessors() {
        let tcp = Transport::Tcp {
            src_port: 1,
            dst_port: 2,
            flags: TcpFlags(TcpFlags::SYN | TcpFlags::ACK),
        };
        assert_eq!(tcp.ports(), Some((1, 2)));
        let flags = tcp.tcp_flags().unwrap();
        assert!(flags.contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(!flags.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(tcp.is_present() && tcp.icmp().is_none());
        assert!(!Transport::None.is_present());
        assert_eq!(Transport::None.ports(), None);

        let echo = icmp(128, 0, IcmpMessage::EchoReply { id: 3 });
        let echo = echo.icmp().unwrap();
        assert_eq!((echo.echo_id(), echo.inner()), (Some(3), None));
        let quote = InnerFlow {
            src: A6,
            dst: B6,
            protocol: 58,
            transport: InnerTransport::Echo {
                request: true,
                id: 3,
            },
        };
        let error = icmp(1, 0, IcmpMessage::Error { inner: Some(quote) });
        let error = error.icmp().unwrap();
        assert_eq!((error.echo_id(), error.inner()), (None, Some(&quote)));
        assert_eq!(
            Transport::Udp {
                src_port: 1,
                dst_port: 2
            }
            .tcp_flags(),
            None
        );
    }

    #[test]
    fn packet_meta_stays_small() {
        let size = std::mem::size_of::<PacketMeta>();
        // It is returned by value once per packet; growing it is a decision, not an accident.
        assert!(size <= 128, "PacketMeta is {size} bytes");
    }
}
