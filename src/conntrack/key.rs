//! The tracker's view of a packet, and the key both directions of a connection share.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};

use super::tcp::{self, TcpEvent};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_UDPLITE: u8 = 136;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;
const ICMPV6_DEST_UNREACHABLE: u8 = 1;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_TIME_EXCEEDED: u8 = 3;
const ICMPV6_PARAMETER_PROBLEM: u8 = 4;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// What connection tracking needs of one packet. The packet path fills it from its parsed
/// headers; ports are 0 for protocols without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// The TCP header's flags byte (CWR ECE URG ACK PSH RST SYN FIN); 0 for other protocols.
    pub tcp_flags: u8,
    /// For ICMP (protocol 1) and ICMPv6 (58): the message. Without it such a packet is
    /// judged packet by packet.
    pub icmp: Option<IcmpInfo>,
}

/// An ICMP or ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpInfo {
    pub icmp_type: u8,
    pub code: u8,
    /// The identifier of an echo request or reply; ignored for other types.
    pub echo_id: u16,
    /// For an error message: the leading headers of the packet that caused it, as quoted.
    pub inner: Option<InnerPacket>,
}

/// The packet quoted in an ICMP error: the packet as its sender sent it, so its source is
/// the host the error is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// For a quoted ICMP or ICMPv6 message: its type and echo identifier.
    pub icmp_type: u8,
    pub echo_id: u16,
}

/// One end of a key. A packet whose source is end `A` of its key travels from A to B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Which way a packet travels relative to the packet that created its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The same way as the first packet.
    Original,
    /// The other way: a reply.
    Reply,
}

impl Direction {
    /// The direction of a packet sent from end `side` of a connection opened from end
    /// `originator`.
    pub fn of(side: Side, originator: Side) -> Direction {
        if side == originator {
            Direction::Original
        } else {
            Direction::Reply
        }
    }
}

/// Identifies a connection whichever way its packets travel.
///
/// For port-based protocols the ends are ordered by (address, port), so a packet and its
/// reply build the same key. ICMP echo is keyed by role instead: end A is the host that sent
/// the request, end B the one that answers, both "ports" hold the identifier. So A pinging B
/// and B pinging A with the same identifier are two connections, as in Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnKey {
    a: IpAddr,
    b: IpAddr,
    a_port: u16,
    b_port: u16,
    protocol: u8,
}

impl Default for ConnKey {
    /// Filler for empty table slots; never looked up.
    fn default() -> Self {
        ConnKey {
            a: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            b: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            a_port: 0,
            b_port: 0,
            protocol: 0,
        }
    }
}

/// Hashed as few whole words (two for IPv4, five for IPv6) rather than field by field: a
/// table lookup hashes one key, and the per-call cost of a hasher is per word written.
impl Hash for ConnKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let tail = u64::from(self.a_port) << 48
            | u64::from(self.b_port) << 32
            | u64::from(self.protocol) << 8
            | u64::from(self.a.is_ipv6()) << 1
            | u64::from(self.b.is_ipv6());
        match (self.a, self.b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                state.write_u64(u64::from(a.to_bits()) << 32 | u64::from(b.to_bits()));
            }
            (a, b) => {
                state.write_u128(address_bits(a));
                state.write_u128(address_bits(b));
            }
        }
        state.write_u64(tail);
    }
}

/// Whether `(src, src_port) <= (dst, dst_port)`, the order that makes a key's end A. Two
/// IPv4 addresses compare as the numbers they are, which is their order as `IpAddr`s too,
/// in a few instructions rather than the generic comparison's dozens.
#[inline]
fn source_first(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> bool {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            (u64::from(s.to_bits()) << 16 | u64::from(src_port))
                <= (u64::from(d.to_bits()) << 16 | u64::from(dst_port))
        }
        _ => (src, src_port) <= (dst, dst_port),
    }
}

/// An address as a number; the family is hashed apart.
fn address_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

impl ConnKey {
    /// The key of a port-based flow and the end the packet comes from. A flow whose two ends
    /// are equal (a host talking to itself on one port) sees every packet as end A.
    pub fn ports(
        protocol: u8,
        src: IpAddr,
        src_port: u16,
        dst: IpAddr,
        dst_port: u16,
    ) -> (ConnKey, Side) {
        if source_first(src, src_port, dst, dst_port) {
            let key = ConnKey {
                a: src,
                b: dst,
                a_port: src_port,
                b_port: dst_port,
                protocol,
            };
            (key, Side::A)
        } else {
            let key = ConnKey {
                a: dst,
                b: src,
                a_port: dst_port,
                b_port: src_port,
                protocol,
            };
            (key, Side::B)
        }
    }

    /// The key of an echo exchange between `requester` and `responder`.
    pub fn echo(protocol: u8, requester: IpAddr, responder: IpAddr, id: u16) -> ConnKey {
        ConnKey {
            a: requester,
            b: responder,
            a_port: id,
            b_port: id,
            protocol,
        }
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// The flow as its first packet saw it, the connection having been opened from end
    /// `originator`.
    pub fn flow(&self, originator: Side) -> ConnFlow {
        let (src, src_port, dst, dst_port) = match originator {
            Side::A => (self.a, self.a_port, self.b, self.b_port),
            Side::B => (self.b, self.b_port, self.a, self.a_port),
        };
        ConnFlow {
            src,
            dst,
            protocol: self.protocol,
            src_port,
            dst_port,
        }
    }
}

/// A tracked connection as its first packet saw it, which is what policy judged. For an
/// ICMP or ICMPv6 connection (always an echo exchange) the first packet was an echo request
/// and both ports hold its identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnFlow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// What kind of tracked packet this is, for the state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowPacket {
    Tcp(TcpEvent),
    Datagram,
    EchoRequest,
    EchoReply,
}

/// A packet sorted by how the tracker treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Belongs to a trackable flow.
    Flow {
        key: ConnKey,
        side: Side,
        packet: FlowPacket,
    },
    /// An ICMP error quoting a trackable flow; `side` is the end of that flow the error is
    /// sent from (the opposite of the quoted packet's source).
    Error { key: ConnKey, side: Side },
    /// Judged by policy packet by packet, never tracked.
    Stateless,
    /// A TCP segment whose flag combination no stack sends.
    BadTcpFlags,
}

/// Sorts a packet: its key and end, or why it has none.
pub fn classify(pkt: &ConnPacket) -> Class {
    match pkt.protocol {
        PROTO_TCP => match tcp::event(pkt.tcp_flags) {
            Some(event) => port_flow(pkt, FlowPacket::Tcp(event)),
            None => Class::BadTcpFlags,
        },
        PROTO_ICMP | PROTO_ICMPV6 => match &pkt.icmp {
            Some(icmp) => classify_icmp(pkt, icmp),
            None => Class::Stateless,
        },
        _ => port_flow(pkt, FlowPacket::Datagram),
    }
}

fn port_flow(pkt: &ConnPacket, packet: FlowPacket) -> Class {
    let (key, side) = ConnKey::ports(pkt.protocol, pkt.src, pkt.src_port, pkt.dst, pkt.dst_port);
    Class::Flow { key, side, packet }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IcmpKind {
    EchoRequest,
    EchoReply,
    Error,
    Other,
}

fn icmp_kind(protocol: u8, icmp_type: u8) -> IcmpKind {
    match (protocol, icmp_type) {
        (PROTO_ICMP, ICMP_ECHO_REQUEST) | (PROTO_ICMPV6, ICMPV6_ECHO_REQUEST) => {
            IcmpKind::EchoRequest
        }
        (PROTO_ICMP, ICMP_ECHO_REPLY) | (PROTO_ICMPV6, ICMPV6_ECHO_REPLY) => IcmpKind::EchoReply,
        (PROTO_ICMP, ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM)
        | (
            PROTO_ICMPV6,
            ICMPV6_DEST_UNREACHABLE
            | ICMPV6_PACKET_TOO_BIG
            | ICMPV6_TIME_EXCEEDED
            | ICMPV6_PARAMETER_PROBLEM,
        ) => IcmpKind::Error,
        _ => IcmpKind::Other,
    }
}

fn classify_icmp(pkt: &ConnPacket, icmp: &IcmpInfo) -> Class {
    match icmp_kind(pkt.protocol, icmp.icmp_type) {
        IcmpKind::EchoRequest => Class::Flow {
            key: ConnKey::echo(pkt.protocol, pkt.src, pkt.dst, icmp.echo_id),
            side: Side::A,
            packet: FlowPacket::EchoRequest,
        },
        IcmpKind::EchoReply => Class::Flow {
            key: ConnKey::echo(pkt.protocol, pkt.dst, pkt.src, icmp.echo_id),
            side: Side::B,
            packet: FlowPacket::EchoReply,
        },
        IcmpKind::Error => match &icmp.inner {
            Some(inner) => classify_error(pkt, inner),
            None => Class::Stateless,
        },
        IcmpKind::Other => Class::Stateless,
    }
}

/// An error is related only if it goes back to the sender of the packet it quotes: errors
/// are always addressed to that sender, and accepting one addressed elsewhere would let a
/// forged quote carry packets to hosts outside the connection.
fn classify_error(pkt: &ConnPacket, inner: &InnerPacket) -> Class {
    if pkt.dst != inner.src {
        return Class::Stateless;
    }
    let quoted = match inner.protocol {
        PROTO_ICMP | PROTO_ICMPV6 => match icmp_kind(inner.protocol, inner.icmp_type) {
            IcmpKind::EchoRequest => (
                ConnKey::echo(inner.protocol, inner.src, inner.dst, inner.echo_id),
                Side::A,
            ),
            IcmpKind::EchoReply => (
                ConnKey::echo(inner.protocol, inner.dst, inner.src, inner.echo_id),
                Side::B,
            ),
            // Errors about errors, and about untracked messages, relate to nothing.
            IcmpKind::Error | IcmpKind::Other => return Class::Stateless,
        },
        protocol => ConnKey::ports(
            protocol,
            inner.src,
            inner.src_port,
            inner.dst,
            inner.dst_port,
        ),
    };
    let (key, quoted_side) = quoted;
    Class::Error {
        key,
        side: quoted_side.opposite(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn packet(protocol: u8, src: &str, sport: u16, dst: &str, dport: u16) -> ConnPacket {
        ConnPacket {
            src: ip(src),
            dst: ip(dst),
            protocol,
            src_port: sport,
            dst_port: dport,
            tcp_flags: tcp::ACK,
            icmp: None,
        }
    }

    fn icmp(protocol: u8, src: &str, dst: &str, icmp_type: u8, id: u16) -> ConnPacket {
        let mut p = packet(protocol, src, 0, dst, 0);
        p.icmp = Some(IcmpInfo {
            icmp_type,
            code: 0,
            echo_id: id,
            inner: None,
        });
        p
    }

    fn flow_of(class: Class) -> (ConnKey, Side) {
        match class {
            Class::Flow { key, side, .. } => (key, side),
            other => panic!("not a flow: {other:?}"),
        }
    }

    #[test]
    fn a_flow_and_its_reply_share_a_key_from_opposite_ends() {
        let cases = [
            packet(PROTO_TCP, "192.0.2.1", 40000, "198.51.100.2", 443),
            packet(PROTO_TCP, "198.51.100.2", 443, "192.0.2.1", 40000),
            packet(PROTO_UDP, "2001:db8::1", 53, "2001:db8::2", 5353),
            packet(PROTO_UDP, "192.0.2.1", 53, "192.0.2.1", 5353),
            packet(132, "192.0.2.9", 9, "192.0.2.1", 9),
        ];
        for pkt in cases {
            let reply = ConnPacket {
                src: pkt.dst,
                dst: pkt.src,
                src_port: pkt.dst_port,
                dst_port: pkt.src_port,
                ..pkt
            };
            let (key, side) = flow_of(classify(&pkt));
            let (reply_key, reply_side) = flow_of(classify(&reply));
            assert_eq!(key, reply_key, "{pkt:?}");
            assert_eq!(side.opposite(), reply_side, "{pkt:?}");
        }
    }

    #[test]
    fn echo_is_keyed_by_requester_and_identifier() {
        let request = flow_of(classify(&icmp(PROTO_ICMP, "192.0.2.1", "192.0.2.2", 8, 7)));
        let reply = flow_of(classify(&icmp(PROTO_ICMP, "192.0.2.2", "192.0.2.1", 0, 7)));
        let other_id = flow_of(classify(&icmp(PROTO_ICMP, "192.0.2.1", "192.0.2.2", 8, 8)));
        let reverse_ping = flow_of(classify(&icmp(PROTO_ICMP, "192.0.2.2", "192.0.2.1", 8, 7)));
        let v6 = flow_of(classify(&icmp(
            PROTO_ICMPV6,
            "2001:db8::1",
            "2001:db8::2",
            128,
            7,
        )));
        let v6_reply = flow_of(classify(&icmp(
            PROTO_ICMPV6,
            "2001:db8::2",
            "2001:db8::1",
            129,
            7,
        )));
        assert_eq!(request.0, reply.0);
        assert_eq!((request.1, reply.1), (Side::A, Side::B));
        assert_ne!(request.0, other_id.0);
        assert_ne!(request.0, reverse_ping.0);
        assert_eq!(v6.0, v6_reply.0);
    }

    #[test]
    fn icmp_types_sort_into_flows_errors_and_stateless() {
        // (protocol, type, expected: 'f' flow, 's' stateless, 'e' error)
        let cases = [
            (PROTO_ICMP, 8, 'f'),
            (PROTO_ICMP, 0, 'f'),
            (PROTO_ICMP, 3, 'e'),
            (PROTO_ICMP, 11, 'e'),
            (PROTO_ICMP, 12, 'e'),
            (PROTO_ICMP, 5, 's'),
            (PROTO_ICMP, 13, 's'),
            (PROTO_ICMP, 128, 's'),
            (PROTO_ICMPV6, 128, 'f'),
            (PROTO_ICMPV6, 129, 'f'),
            (PROTO_ICMPV6, 1, 'e'),
            (PROTO_ICMPV6, 2, 'e'),
            (PROTO_ICMPV6, 3, 'e'),
            (PROTO_ICMPV6, 4, 'e'),
            (PROTO_ICMPV6, 135, 's'),
            (PROTO_ICMPV6, 8, 's'),
        ];
        for (protocol, icmp_type, expected) in cases {
            let mut pkt = icmp(protocol, "192.0.2.1", "192.0.2.2", icmp_type, 1);
            if let Some(info) = pkt.icmp.as_mut() {
                info.inner = Some(InnerPacket {
                    src: ip("192.0.2.2"),
                    dst: ip("192.0.2.9"),
                    protocol: PROTO_UDP,
                    src_port: 1,
                    dst_port: 2,
                    icmp_type: 0,
                    echo_id: 0,
                });
            }
            let got = match classify(&pkt) {
                Class::Flow { .. } => 'f',
                Class::Error { .. } => 'e',
                Class::Stateless => 's',
                Class::BadTcpFlags => 'b',
            };
            assert_eq!(got, expected, "protocol {protocol} type {icmp_type}");
        }
    }

    #[test]
    fn an_error_comes_from_the_end_opposite_the_quoted_sender() {
        // 192.0.2.1:40000 sent UDP to 198.51.100.2:53; a router answers 192.0.2.1.
        let mut error = icmp(PROTO_ICMP, "203.0.113.1", "192.0.2.1", 3, 0);
        let inner = InnerPacket {
            src: ip("192.0.2.1"),
            dst: ip("198.51.100.2"),
            protocol: PROTO_UDP,
            src_port: 40000,
            dst_port: 53,
            icmp_type: 0,
            echo_id: 0,
        };
        if let Some(info) = error.icmp.as_mut() {
            info.inner = Some(inner);
        }
        let original = packet(PROTO_UDP, "192.0.2.1", 40000, "198.51.100.2", 53);
        let (key, side) = flow_of(classify(&original));
        assert_eq!(
            classify(&error),
            Class::Error {
                key,
                side: side.opposite()
            }
        );

        // The same quote addressed to someone other than its sender relates to nothing.
        error.dst = ip("192.0.2.77");
        assert_eq!(classify(&error), Class::Stateless);
    }

    #[test]
    fn the_flow_of_a_key_is_seen_from_the_originator() {
        let (key, side) = ConnKey::ports(PROTO_TCP, ip("198.51.100.2"), 443, ip("192.0.2.1"), 1);
        let flow = key.flow(side);
        assert_eq!((flow.src, flow.src_port), (ip("198.51.100.2"), 443));
        assert_eq!((flow.dst, flow.dst_port), (ip("192.0.2.1"), 1));
        let reverse = key.flow(side.opposite());
        assert_eq!((reverse.src, reverse.dst), (flow.dst, flow.src));
    }

    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
            // Few distinct addresses, so that equal ends and near-equal tuples occur.
            (0u8..3).prop_map(|n| IpAddr::from([192, 0, 2, n])),
        ]
    }

    proptest! {
        /// The IPv4 shortcut orders ends exactly as comparing `(IpAddr, port)` pairs does,
        /// equal addresses and ports included; other families take the generic order.
        #[test]
        fn source_first_is_the_order_of_address_and_port(
            a in any::<u32>(), b in any::<u32>(), pa in any::<u16>(), pb in any::<u16>(),
            same_address in any::<bool>(), same_port in any::<bool>(), v6 in any::<u128>(),
        ) {
            let src = IpAddr::V4(Ipv4Addr::from(a));
            let dst = IpAddr::V4(Ipv4Addr::from(if same_address { a } else { b }));
            let dst_port = if same_port { pa } else { pb };
            prop_assert_eq!(source_first(src, pa, dst, dst_port), (src, pa) <= (dst, dst_port));
            prop_assert_eq!(source_first(dst, dst_port, src, pa), (dst, dst_port) <= (src, pa));
            let six = IpAddr::V6(std::net::Ipv6Addr::from(v6));
            prop_assert_eq!(source_first(src, pa, six, pb), (src, pa) <= (six, pb));
            prop_assert_eq!(source_first(six, pb, src, pa), (six, pb) <= (src, pa));
        }

        #[test]
        fn both_directions_always_map_to_one_key(
            protocol in any::<u8>(),
            src in addr(),
            dst in addr(),
            sport in prop_oneof![any::<u16>(), 0u16..3],
            dport in prop_oneof![any::<u16>(), 0u16..3],
            flags in any::<u8>(),
            icmp_type in prop_oneof![any::<u8>(), Just(0u8), Just(8), Just(128), Just(129)],
            id in any::<u16>(),
        ) {
            let pkt = ConnPacket {
                src, dst, protocol, src_port: sport, dst_port: dport, tcp_flags: flags,
                icmp: Some(IcmpInfo { icmp_type, code: 0, echo_id: id, inner: None }),
            };
            let reply_type = match (protocol, icmp_type) {
                (PROTO_ICMP, ICMP_ECHO_REQUEST) => ICMP_ECHO_REPLY,
                (PROTO_ICMP, ICMP_ECHO_REPLY) => ICMP_ECHO_REQUEST,
                (PROTO_ICMPV6, ICMPV6_ECHO_REQUEST) => ICMPV6_ECHO_REPLY,
                (PROTO_ICMPV6, ICMPV6_ECHO_REPLY) => ICMPV6_ECHO_REQUEST,
                _ => icmp_type,
            };
            let reply = ConnPacket {
                src: dst, dst: src, src_port: dport, dst_port: sport,
                icmp: Some(IcmpInfo { icmp_type: reply_type, code: 0, echo_id: id, inner: None }),
                ..pkt
            };
            match (classify(&pkt), classify(&reply)) {
                (Class::Flow { key, side, .. }, Class::Flow { key: rkey, side: rside, .. }) => {
                    prop_assert_eq!(key, rkey);
                    if (src, sport) != (dst, dport) || matches!(protocol, PROTO_ICMP | PROTO_ICMPV6) {
                        prop_assert_eq!(side.opposite(), rside);
                    }
                    let flow = key.flow(side);
                    prop_assert_eq!((flow.src, flow.dst, flow.protocol), (src, dst, protocol));
                }
                (Class::Flow { .. }, other) => prop_assert!(false, "reply not a flow: {:?}", other),
                (_, Class::Flow { .. }) => prop_assert!(false, "reply of a non-flow is a flow"),
                _ => {}
            }
        }
    }
}
