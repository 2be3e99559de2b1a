//! The parser's [`IpMeta`] in the shapes conntrack, the fragment tracker and the classifier
//! take, and back from a tracked connection to a classifier key (for revalidation).

use crate::conntrack::{ConnFlow, ConnPacket, Fragment, IcmpInfo, InnerPacket};
use crate::packet::{FrameKind, InnerFlow, InnerTransport, IpMeta, PacketMeta, protocol};
use crate::snapshot::FlowKey;

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// The classifier's key of a packet (see [`PacketMeta::flow_key`], which this mirrors
/// without the `Option` of a non-IP frame).
#[inline]
pub(crate) fn flow_key(ip: &IpMeta) -> FlowKey {
    let ports = ip.transport.ports();
    let icmp = ip.transport.icmp();
    FlowKey {
        src: ip.src,
        dst: ip.dst,
        protocol: ip.protocol,
        src_port: ports.map(|(src, _)| src),
        dst_port: ports.map(|(_, dst)| dst),
        icmp_type: icmp.map(|icmp| icmp.icmp_type),
        icmp_code: icmp.map(|icmp| icmp.code),
    }
}

/// Conntrack's view of a packet.
#[inline]
pub(crate) fn conn_packet(ip: &IpMeta) -> ConnPacket {
    let (src_port, dst_port) = ip.transport.ports().unwrap_or((0, 0));
    ConnPacket {
        src: ip.src,
        dst: ip.dst,
        protocol: ip.protocol,
        src_port,
        dst_port,
        tcp_flags: ip.transport.tcp_flags().map_or(0, |f| f.0),
        icmp: ip.transport.icmp().map(|icmp| IcmpInfo {
            icmp_type: icmp.icmp_type,
            code: icmp.code,
            echo_id: icmp.echo_id().unwrap_or(0),
            inner: icmp.inner().map(inner_packet),
        }),
    }
}

fn inner_packet(inner: &InnerFlow) -> InnerPacket {
    let (src_port, dst_port, icmp_type, echo_id) = match inner.transport {
        InnerTransport::None => (0, 0, 0, 0),
        InnerTransport::Ports { src_port, dst_port } => (src_port, dst_port, 0, 0),
        InnerTransport::Echo { request, id } => (0, 0, echo_type(inner.protocol, request), id),
    };
    InnerPacket {
        src: inner.src,
        dst: inner.dst,
        protocol: inner.protocol,
        src_port,
        dst_port,
        icmp_type,
        echo_id,
    }
}

fn echo_type(icmp_protocol: u8, request: bool) -> u8 {
    match (icmp_protocol == protocol::ICMPV6, request) {
        (false, true) => ICMP_ECHO_REQUEST,
        (false, false) => ICMP_ECHO_REPLY,
        (true, true) => ICMPV6_ECHO_REQUEST,
        (true, false) => ICMPV6_ECHO_REPLY,
    }
}

/// The classifier's key of a tracked connection's first packet. An ICMP connection is
/// always an echo exchange opened by a request; protocols without ports have none.
pub(crate) fn flow_key_of_connection(flow: &ConnFlow) -> FlowKey {
    let mut key = FlowKey {
        src: flow.src,
        dst: flow.dst,
        protocol: flow.protocol,
        src_port: None,
        dst_port: None,
        icmp_type: None,
        icmp_code: None,
    };
    match flow.protocol {
        protocol::ICMP | protocol::ICMPV6 => {
            key.icmp_type = Some(echo_type(flow.protocol, true));
            key.icmp_code = Some(0);
        }
        protocol::TCP | protocol::UDP | protocol::UDPLITE | protocol::SCTP => {
            key.src_port = Some(flow.src_port);
            key.dst_port = Some(flow.dst_port);
        }
        _ => {}
    }
    key
}

/// The fragment tracker's view of a fragment: its data runs from the upper-layer offset to
/// the end the IP header announces (not the frame's end, which may hold Ethernet padding).
///
/// Known approximation: for an IPv6 first fragment whose extension headers continue after
/// the fragment header, the data is counted from the transport header, so the tracker sees
/// a few bytes fewer than were sent. That can only hide an overlap inside those extension
/// headers, which no later fragment can rewrite without also overlapping the transport
/// header's bytes the tracker does know.
pub(crate) fn fragment(frame: &[u8], meta: &PacketMeta, ip: &IpMeta) -> Option<Fragment> {
    let info = ip.fragment?;
    let end = ip_end(frame, meta)?;
    Some(Fragment {
        src: ip.src,
        dst: ip.dst,
        protocol: info.protocol,
        id: info.id,
        offset: u32::from(info.offset),
        len: end.saturating_sub(ip.l4_offset),
        more: info.more_fragments,
    })
}

/// Offset in the frame of the end of the IP packet, from its length field. The parser has
/// already checked that the field fits the frame.
fn ip_end(frame: &[u8], meta: &PacketMeta) -> Option<u32> {
    let l3 = usize::from(meta.l2.l3_offset);
    let read = |at: usize| -> Option<u32> {
        let bytes = frame.get(l3 + at..l3 + at + 2)?;
        Some(u32::from(u16::from_be_bytes([
            *bytes.first()?,
            *bytes.get(1)?,
        ])))
    };
    match meta.kind {
        FrameKind::Ipv4 => Some(l3 as u32 + read(2)?),
        FrameKind::Ipv6 | FrameKind::Ipv6NeighborDiscovery => Some(l3 as u32 + 40 + read(4)?),
        FrameKind::Arp | FrameKind::OtherEtherType(_) => None,
    }
}
