//! Crafted frames: valid ones from etherparse's builder, malformed ones laid by hand, each
//! malformed case naming the drop reason SPEC §A2 gives it. Used for the fuzz seeds and by
//! `tests/adversarial.rs`, which pushes the same table through the running gateway.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use etherparse::{IpHeaders, PacketBuilder, PacketBuilderStep};
use portcullis::packet::DropReason;

pub const MAC_OUT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_IN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn v4(text: &str) -> [u8; 4] {
    match addr(text) {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => panic!("{text} is not IPv4"),
    }
}

fn v6(text: &str) -> [u8; 16] {
    match addr(text) {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => panic!("{text} is not IPv6"),
    }
}

fn ip_step(src: &str, dst: &str) -> PacketBuilderStep<IpHeaders> {
    let eth = PacketBuilder::ethernet2(MAC_OUT, MAC_IN);
    match (addr(src), addr(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    }
}

/// A TCP segment; `flags` spells them: S(YN) A(CK) F(IN) R(ST).
pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: &str) -> Vec<u8> {
    let mut step = ip_step(src, dst).tcp(sport, dport, 1000, 64240);
    for flag in flags.chars() {
        step = match flag {
            'S' => step.syn(),
            'A' => step.ack(1),
            'F' => step.fin(),
            'R' => step.rst(),
            other => panic!("flag {other}"),
        };
    }
    let mut frame = Vec::new();
    step.write(&mut frame, &[]).unwrap();
    frame
}

pub fn udp(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    ip_step(src, dst)
        .udp(sport, dport)
        .write(&mut frame, payload)
        .unwrap();
    frame
}

pub fn ping(src: &str, dst: &str, id: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    let step = ip_step(src, dst);
    if addr(src).is_ipv4() {
        step.icmpv4_echo_request(id, 1).write(&mut frame, b"ping")
    } else {
        step.icmpv6_echo_request(id, 1).write(&mut frame, b"ping")
    }
    .unwrap();
    frame
}

pub fn ethernet(ether_type: u16, payload: &[u8]) -> Vec<u8> {
    [&MAC_IN[..], &MAC_OUT, &ether_type.to_be_bytes(), payload].concat()
}

/// An IPv4 header (no options unless `ihl` > 5, padded with NOPs) and `payload`;
/// `total` overrides the total length.
pub fn ipv4_raw(
    src: &str,
    dst: &str,
    protocol: u8,
    ihl: u8,
    total: Option<u16>,
    id_flags_offset: (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let header_len = usize::from(ihl.max(5)) * 4;
    let total = total.unwrap_or((header_len + payload.len()) as u16);
    let mut ip = vec![0x40 | (ihl & 0x0f), 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&id_flags_offset.0.to_be_bytes());
    ip.extend_from_slice(&id_flags_offset.1.to_be_bytes());
    ip.extend_from_slice(&[64, protocol, 0, 0]);
    ip.extend_from_slice(&v4(src));
    ip.extend_from_slice(&v4(dst));
    ip.resize(header_len, 1);
    ip.extend_from_slice(payload);
    ethernet(0x0800, &ip)
}

/// An IPv4 fragment: `payload` at byte `offset` of the datagram.
pub fn fragment4(
    src: &str,
    dst: &str,
    protocol: u8,
    id: u16,
    offset: u16,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let flags_offset = (u16::from(more) << 13) | (offset / 8);
    ipv4_raw(src, dst, protocol, 5, None, (id, flags_offset), payload)
}

/// An IPv6 header whose payload is `payload` (starting with the header `next_header`
/// names); `payload_len` overrides the payload length.
pub fn ipv6_raw(
    src: &str,
    dst: &str,
    next_header: u8,
    payload_len: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    let len = payload_len.unwrap_or(payload.len() as u16);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&len.to_be_bytes());
    ip.extend_from_slice(&[next_header, 64]);
    ip.extend_from_slice(&v6(src));
    ip.extend_from_slice(&v6(dst));
    ip.extend_from_slice(payload);
    ethernet(0x86dd, &ip)
}

/// An 8-byte extension header of the (Next Header, length) layout.
pub fn ext(next: u8) -> [u8; 8] {
    [next, 0, 1, 4, 0, 0, 0, 0]
}

/// An IPv6 fragment header.
pub fn ext_fragment(next: u8, offset: u16, more: bool, id: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset & !7) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

/// A chain of 8-byte extension headers (by their Next Header values, the first being what
/// the IPv6 header names) ending in `upper` with `upper_payload`.
pub fn ipv6_chain(src: &str, dst: &str, chain: &[u8], upper: u8, upper_payload: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (i, _) in chain.iter().enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(upper);
        payload.extend_from_slice(&ext(next));
    }
    payload.extend_from_slice(upper_payload);
    ipv6_raw(
        src,
        dst,
        chain.first().copied().unwrap_or(upper),
        None,
        &payload,
    )
}

/// A 20-byte TCP header with `data_offset` words and SYN set.
pub fn tcp_header(sport: u16, dport: u16, data_offset: u8) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    h.extend_from_slice(&[data_offset << 4, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
    h
}

pub fn udp_header(sport: u16, dport: u16, length: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&length.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h
}

/// One malformed frame and the reason it must be dropped under.
#[derive(Debug, Clone)]
pub struct Malformed {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub reason: DropReason,
}

/// Malformed frames from `src` to `dst` (IPv4) and `src6` to `dst6`: every kind SPEC §A2
/// lists. `dport` is a TCP/UDP port the destination would accept, so that nothing but the
/// malformation decides. A frame is padded to Ethernet's 60-byte minimum only where the
/// padding cannot change its reading (it sits past the IP total length).
pub fn malformed(src: &str, dst: &str, src6: &str, dst6: &str, dport: u16) -> Vec<Malformed> {
    use DropReason::*;
    let tcp_ok = tcp_header(40_000, dport, 5);
    let cases = vec![
        ("truncated ethernet", vec![0x02; 10], TruncatedEthernet),
        (
            "truncated vlan tag",
            ethernet(0x8100, &[0x00]),
            TruncatedVlan,
        ),
        (
            "three vlan tags",
            ethernet(
                0x88a8,
                &[
                    0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00, 0, 3, 0x08, 0x00, 0x45, 0,
                ],
            ),
            TooManyVlanTags,
        ),
        (
            "truncated ipv4 header",
            ethernet(0x0800, &[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6]),
            TruncatedIpv4,
        ),
        (
            "ipv4 options past the frame",
            ethernet(
                0x0800,
                &ipv4_raw(src, dst, 6, 15, None, (1, 0), &[])[14..34],
            ),
            TruncatedIpv4,
        ),
        (
            "ipv4 ihl 4",
            ipv4_raw(src, dst, 6, 4, Some(40), (1, 0), &tcp_ok),
            Ipv4HeaderLengthTooSmall,
        ),
        (
            "ipv4 ihl 0",
            ipv4_raw(src, dst, 6, 0, Some(40), (1, 0), &tcp_ok),
            Ipv4HeaderLengthTooSmall,
        ),
        (
            "ipv4 total length beyond the frame",
            ipv4_raw(src, dst, 6, 5, Some(1400), (1, 0), &tcp_ok),
            Ipv4TotalLengthBeyondFrame,
        ),
        (
            "ipv4 total length below the header",
            ipv4_raw(src, dst, 6, 5, Some(12), (1, 0), &tcp_ok),
            Ipv4TotalLengthBelowHeader,
        ),
        (
            "ipv4 option with length 0",
            {
                let mut f = ipv4_raw(src, dst, 6, 6, None, (1, 0), &tcp_ok);
                f[14 + 20] = 0x44;
                f[14 + 21] = 0;
                f
            },
            Ipv4OptionsMalformed,
        ),
        (
            "version 6 in an ipv4 ethertype",
            {
                let mut f = ipv4_raw(src, dst, 6, 5, None, (1, 0), &tcp_ok);
                f[14] = 0x65;
                f
            },
            IpVersionMismatch,
        ),
        (
            "ipv4 tcp, no tcp header",
            ipv4_raw(src, dst, 6, 5, None, (1, 0), &[]),
            TruncatedTcp,
        ),
        (
            "ipv4 tcp, 12 bytes of tcp header",
            ipv4_raw(src, dst, 6, 5, None, (1, 0), &tcp_ok[..12]),
            TruncatedTcp,
        ),
        (
            "tcp data offset 4",
            ipv4_raw(src, dst, 6, 5, None, (1, 0), &tcp_header(40_000, dport, 4)),
            TcpDataOffsetTooSmall,
        ),
        (
            "tcp data offset 0",
            ipv4_raw(src, dst, 6, 5, None, (1, 0), &tcp_header(40_000, dport, 0)),
            TcpDataOffsetTooSmall,
        ),
        (
            "tcp data offset beyond the segment",
            ipv4_raw(src, dst, 6, 5, None, (1, 0), &tcp_header(40_000, dport, 15)),
            TcpDataOffsetBeyondSegment,
        ),
        (
            "ipv4 udp, no udp header",
            ipv4_raw(src, dst, 17, 5, None, (1, 0), &[]),
            TruncatedUdp,
        ),
        (
            "ipv4 udp, 4 bytes of udp header",
            ipv4_raw(
                src,
                dst,
                17,
                5,
                None,
                (1, 0),
                &udp_header(5000, dport, 8)[..4],
            ),
            TruncatedUdp,
        ),
        (
            "udp length beyond the payload",
            ipv4_raw(src, dst, 17, 5, None, (1, 0), &udp_header(5000, dport, 200)),
            UdpLengthMismatch,
        ),
        (
            "udp length below 8",
            ipv4_raw(src, dst, 17, 5, None, (1, 0), &udp_header(5000, dport, 3)),
            UdpLengthMismatch,
        ),
        (
            "ipv4 icmp, 4 bytes",
            ipv4_raw(src, dst, 1, 5, None, (1, 0), &[8, 0, 0, 0]),
            TruncatedIcmp,
        ),
        (
            "ipv4 sctp, 8 bytes",
            ipv4_raw(src, dst, 132, 5, None, (1, 0), &[0; 8]),
            TruncatedSctp,
        ),
        (
            "icmpv6 over ipv4",
            ipv4_raw(src, dst, 58, 5, None, (1, 0), &[128, 0, 0, 0, 0, 1, 0, 1]),
            MixedFamilies,
        ),
        (
            "tiny first fragment (tcp, 8 bytes)",
            fragment4(src, dst, 6, 7, 0, true, &tcp_ok[..8]),
            FragmentTooShort,
        ),
        (
            "ipv4 tcp fragment at offset 8",
            fragment4(src, dst, 6, 8, 8, false, &[0; 16]),
            FragmentTcpOffsetOne,
        ),
        (
            "later ipv4 fragment without a first",
            fragment4(src, dst, 17, 9, 64, false, &[0; 24]),
            FragmentWithoutFirst,
        ),
        (
            "truncated ipv6 header",
            ethernet(0x86dd, &[0x60, 0, 0, 0, 0, 8, 17, 64]),
            TruncatedIpv6,
        ),
        (
            "version 4 in an ipv6 ethertype",
            {
                let mut f = ipv6_raw(src6, dst6, 17, None, &udp_header(5000, dport, 8));
                f[14] = 0x45;
                f
            },
            IpVersionMismatch,
        ),
        (
            "ipv6 payload length beyond the frame",
            ipv6_raw(src6, dst6, 6, Some(1000), &tcp_ok),
            Ipv6PayloadLengthBeyondFrame,
        ),
        (
            "ipv6 hop-by-hop header cut short",
            ipv6_raw(src6, dst6, 0, None, &[6, 0, 1, 4]),
            Ipv6ExtensionTruncated,
        ),
        (
            "ipv6 hop-by-hop announcing 16 bytes, 8 present",
            ipv6_raw(src6, dst6, 0, None, &[6, 1, 1, 4, 0, 0, 0, 0]),
            Ipv6ExtensionTruncated,
        ),
        (
            "ipv6 chain of 9 extension headers",
            ipv6_chain(
                src6,
                dst6,
                &[0, 60, 43, 60, 135, 139, 140, 253, 254],
                6,
                &tcp_ok,
            ),
            Ipv6ExtensionChainTooLong,
        ),
        (
            "ipv6 routing header twice",
            ipv6_chain(src6, dst6, &[43, 43], 6, &tcp_ok),
            Ipv6ExtensionRepeated,
        ),
        (
            "ipv6 destination options three times",
            ipv6_chain(src6, dst6, &[60, 60, 60], 6, &tcp_ok),
            Ipv6ExtensionRepeated,
        ),
        (
            "ipv6 hop-by-hop after destination options",
            ipv6_chain(src6, dst6, &[60, 0], 6, &tcp_ok),
            Ipv6HopByHopNotFirst,
        ),
        (
            "ipv6 tcp, no tcp header",
            ipv6_raw(src6, dst6, 6, None, &[]),
            TruncatedTcp,
        ),
        (
            "ipv6 tcp data offset 2 behind two headers",
            ipv6_chain(src6, dst6, &[0, 60], 6, &tcp_header(40_000, dport, 2)),
            TcpDataOffsetTooSmall,
        ),
        (
            "ipv6 udp, 6 bytes",
            ipv6_raw(src6, dst6, 17, None, &udp_header(5000, dport, 8)[..6]),
            TruncatedUdp,
        ),
        (
            "ipv6 icmpv6, 4 bytes",
            ipv6_raw(src6, dst6, 58, None, &[128, 0, 0, 0]),
            TruncatedIcmpv6,
        ),
        (
            "icmp over ipv6",
            ipv6_raw(src6, dst6, 1, None, &[8, 0, 0, 0, 0, 1, 0, 1]),
            MixedFamilies,
        ),
        (
            "ipv6 tiny first fragment (tcp header in the next)",
            ipv6_raw(
                src6,
                dst6,
                44,
                None,
                &[&ext_fragment(6, 0, true, 77)[..], &tcp_ok[..8]].concat(),
            ),
            FragmentTooShort,
        ),
        (
            "ipv6 first fragment with the chain cut",
            ipv6_raw(
                src6,
                dst6,
                44,
                None,
                &[&ext_fragment(60, 0, true, 78)[..], &[6, 0, 1, 4][..]].concat(),
            ),
            FragmentTooShort,
        ),
        (
            "later ipv6 fragment without a first",
            ipv6_raw(
                src6,
                dst6,
                44,
                None,
                &[&ext_fragment(17, 64, false, 79)[..], &[0; 24][..]].concat(),
            ),
            FragmentWithoutFirst,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, frame, reason)| Malformed {
            name,
            frame,
            reason,
        })
        .collect()
}

/// Well-formed frames from `src` to `dst` (and the IPv6 pair) of many kinds: seeds, and
/// frames a policy judges.
pub fn valid(src: &str, dst: &str, src6: &str, dst6: &str, dport: u16) -> Vec<Vec<u8>> {
    let mut quote =
        ipv4_raw(dst, src, 17, 5, None, (3, 0), &udp_header(53, 5000, 8))[14..].to_vec();
    quote.truncate(28);
    let mut unreachable = vec![3, 3, 0, 0, 0, 0, 0, 0];
    unreachable.extend_from_slice(&quote);
    vec![
        tcp(src, 40_000, dst, dport, "S"),
        tcp(dst, dport, src, 40_000, "SA"),
        tcp(src, 40_000, dst, dport, "A"),
        tcp(src, 40_000, dst, dport, "F"),
        tcp(src, 40_000, dst, dport, "R"),
        tcp(src6, 40_000, dst6, dport, "S"),
        udp(src, 5000, dst, 53, b"query"),
        udp(src, 5000, dst, 53, b""),
        udp(src6, 5000, dst6, 53, b"query"),
        ping(src, dst, 7),
        ping(src6, dst6, 7),
        ipv4_raw(src, dst, 1, 5, None, (4, 0), &unreachable),
        ipv4_raw(src, dst, 47, 5, None, (5, 0), &[0; 8]),
        ipv4_raw(src, dst, 6, 8, None, (6, 0), &tcp_header(40_001, dport, 5)),
        ipv6_chain(src6, dst6, &[0, 60, 43], 6, &tcp_header(40_002, dport, 5)),
        ipv6_chain(src6, dst6, &[60], 143, &[0; 8]),
        fragment4(src, dst, 17, 10, 0, true, &udp_header(5000, 53, 48)),
        fragment4(src, dst, 17, 10, 8, true, &[0; 16]),
        fragment4(src, dst, 17, 10, 24, false, &[0; 16]),
        ipv6_raw(
            src6,
            dst6,
            44,
            None,
            &[
                &ext_fragment(17, 0, true, 80)[..],
                &udp_header(5000, 53, 40),
            ]
            .concat(),
        ),
        ipv6_raw(
            src6,
            dst6,
            44,
            None,
            &[&ext_fragment(17, 8, false, 80)[..], &[0; 32][..]].concat(),
        ),
        ethernet(
            0x8100,
            &[
                &[0, 100, 0x08, 0x00][..],
                &tcp(src, 1, dst, dport, "S")[14..],
            ]
            .concat(),
        ),
        ethernet(
            0x88a8,
            &[
                &[0, 200, 0x81, 0x00, 0, 100, 0x86, 0xdd][..],
                &udp(src6, 1, dst6, 53, b"x")[14..],
            ]
            .concat(),
        ),
        ethernet(
            0x0806,
            &[
                0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 10, 198, 51, 100, 7, 0, 0, 0, 0, 0, 0, 203,
                0, 113, 10,
            ],
        ),
        ethernet(0x88cc, &[0; 46]),
    ]
}
