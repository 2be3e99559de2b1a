//! Frames for the packet tests: etherparse's builder for valid frames, bytes laid by hand where
//! the builder cannot go (SCTP, UDP-Lite, malformed and unusual headers).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ethernet2Header, PacketBuilder, PacketBuilderStep};

pub const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SRC4: [u8; 4] = [192, 0, 2, 10];
pub const DST4: [u8; 4] = [198, 51, 100, 20];
pub const SRC6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
pub const DST6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20,
];
/// Hop limit / TTL of every hand-built and builder-made packet unless a test says otherwise.
pub const HOPS: u8 = 64;

/// Offset of the network header in an untagged frame.
pub const L3: usize = 14;

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;

pub const HOP_BY_HOP: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const AUTH: u8 = 51;
pub const DEST_OPTS: u8 = 60;

pub fn ip(bytes: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(bytes))
}

pub fn ip6(bytes: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(bytes))
}

/// Writes a finished builder step to a new frame.
macro_rules! build {
    ($builder:expr) => {
        build!($builder, &[])
    };
    ($builder:expr, $payload:expr) => {{
        let mut frame = Vec::new();
        $builder.write(&mut frame, $payload).unwrap();
        frame
    }};
}
pub(crate) use build;

pub fn eth() -> PacketBuilderStep<Ethernet2Header> {
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
}

/// An Ethernet header with `ether_type`, then `payload`.
pub fn ethernet(ether_type: u16, payload: &[u8]) -> Vec<u8> {
    [&MAC_DST[..], &MAC_SRC, &ether_type.to_be_bytes(), payload].concat()
}

/// `frame` with `bytes` written over it at `at`.
pub fn patched(mut frame: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    frame[at..at + bytes.len()].copy_from_slice(bytes);
    frame
}

/// An IPv4 packet with consistent IHL and total length, id 0x1234, no fragmentation.
pub fn ipv4(protocol: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "options must fill whole words");
    let header_len = 20 + options.len();
    let total = u16::try_from(header_len + payload.len()).unwrap();
    let version_ihl = 0x40 | u8::try_from(header_len / 4).unwrap();
    let [total_hi, total_lo] = total.to_be_bytes();
    let fixed = [
        version_ihl,
        0,
        total_hi,
        total_lo,
        0x12,
        0x34,
        0,
        0,
        HOPS,
        protocol,
        0,
        0,
    ];
    [&fixed[..], &SRC4, &DST4, options, payload].concat()
}

/// An IPv4 fragment: `ipv4` with the flags and offset field set.
pub fn fragment_v4(protocol: u8, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let field = (offset / 8) | if more { 0x2000 } else { 0 };
    patched(ipv4(protocol, &[], payload), 6, &field.to_be_bytes())
}

/// An IPv6 packet with a consistent payload length.
pub fn ipv6(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap().to_be_bytes();
    let fixed = [0x60, 0, 0, 0, len[0], len[1], next_header, HOPS];
    [&fixed[..], &SRC6, &DST6, payload].concat()
}

/// An 8-byte extension header in the generic layout (hop-by-hop, routing, destination
/// options...) carrying a PadN option.
pub fn ext(next_header: u8) -> Vec<u8> {
    vec![next_header, 0, 1, 4, 0, 0, 0, 0]
}

/// An IPv6 fragment header.
pub fn fragment_header(next_header: u8, offset: u16, more: bool, id: u32) -> Vec<u8> {
    let field = (offset & 0xfff8 | u16::from(more)).to_be_bytes();
    [&[next_header, 0][..], &field, &id.to_be_bytes()].concat()
}

/// A chain of 8-byte extension headers of the given kinds, ending in `upper`, then `rest`.
pub fn chain(kinds: &[u8], upper: u8, rest: &[u8]) -> (u8, Vec<u8>) {
    let mut bytes = Vec::new();
    for (i, &kind) in kinds.iter().enumerate() {
        let next = kinds.get(i + 1).copied().unwrap_or(upper);
        bytes.extend(if kind == FRAGMENT {
            fragment_header(next, 0, true, 77)
        } else {
            ext(next)
        });
    }
    bytes.extend(rest);
    (kinds.first().copied().unwrap_or(upper), bytes)
}

/// A TCP header with `data_offset` words (options zero-filled), no payload.
pub fn tcp(src_port: u16, dst_port: u16, flags: u8, data_offset: u8) -> Vec<u8> {
    let mut header = [
        &src_port.to_be_bytes()[..],
        &dst_port.to_be_bytes(),
        &[0; 16],
    ]
    .concat();
    header[12] = data_offset << 4;
    header[13] = flags;
    header.resize(usize::from(data_offset.max(5)) * 4, 0);
    header
}

/// A UDP header whose length field says `length`.
pub fn udp(src_port: u16, dst_port: u16, length: u16) -> Vec<u8> {
    [
        src_port.to_be_bytes(),
        dst_port.to_be_bytes(),
        length.to_be_bytes(),
        [0, 0],
    ]
    .concat()
}

/// An SCTP common header followed by a 4-byte chunk header.
pub fn sctp(src_port: u16, dst_port: u16) -> Vec<u8> {
    [
        &src_port.to_be_bytes()[..],
        &dst_port.to_be_bytes(),
        &[0, 0, 0, 1, 0, 0, 0, 0],
        &[1, 0, 0, 4],
    ]
    .concat()
}

/// An 8-byte ICMP or ICMPv6 header.
pub fn icmp(icmp_type: u8, code: u8, rest: [u8; 4]) -> Vec<u8> {
    [&[icmp_type, code, 0, 0][..], &rest].concat()
}
