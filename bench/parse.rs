//! Frame parsing, per frame.
//!
//! Cases (fixed frames, built once with etherparse; throughput is in frames):
//! - `parse/ipv4_tcp`: IPv4, TCP ACK+PSH with 12 bytes of timestamp option, 64 bytes of data.
//! - `parse/ipv6_udp`: IPv6, UDP, 32 bytes of data.
//! - `parse/vlan_ipv4_tcp`: `ipv4_tcp` behind an 802.1Q tag.
//! - `parse/ipv6_ext_frag`: IPv6 with hop-by-hop and destination options headers and a first
//!   fragment header, then UDP: the longest walk a common frame takes.

// A benchmark may panic on setup failure: that is a broken benchmark, not bad input.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::{
    IpFragOffset, IpHeaders, IpNumber, Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header,
    Ipv6RawExtHeader, PacketBuilder, TcpHeader, TcpOptionElement, VlanId,
};
use portcullis::packet::parse;

const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SRC4: [u8; 4] = [198, 51, 100, 10];
const DST4: [u8; 4] = [203, 0, 113, 5];
const SRC6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const DST6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20,
];

fn tcp_header() -> TcpHeader {
    let mut tcp = TcpHeader::new(40000, 6379, 1_000_000, 502);
    tcp.ack = true;
    tcp.psh = true;
    tcp.acknowledgment_number = 2_000_000;
    tcp.set_options(&[
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(1, 2),
    ])
    .expect("timestamp option fits");
    tcp
}

fn ipv4_tcp(vlan: Option<u16>) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_SRC, MAC_DST);
    let builder = match vlan {
        None => eth.ipv4(SRC4, DST4, 64).tcp_header(tcp_header()),
        Some(id) => eth
            .single_vlan(VlanId::try_new(id).expect("valid VLAN id"))
            .ipv4(SRC4, DST4, 64)
            .tcp_header(tcp_header()),
    };
    let mut frame = Vec::new();
    builder
        .write(&mut frame, &[0x5a; 64])
        .expect("frame builds");
    frame
}

fn ipv6_udp() -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv6(SRC6, DST6, 64)
        .udp(5353, 53);
    let mut frame = Vec::new();
    builder
        .write(&mut frame, &[0x5a; 32])
        .expect("frame builds");
    frame
}

fn ipv6_ext_frag() -> Vec<u8> {
    // Next Header fields are filled in by the builder.
    let options = || Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 4, 0, 0, 0, 0]).ok();
    let extensions = Ipv6Extensions {
        hop_by_hop_options: options(),
        destination_options: options(),
        fragment: Some(Ipv6FragmentHeader::new(
            IpNumber(0),
            IpFragOffset::ZERO,
            true,
            0x1234_5678,
        )),
        ..Default::default()
    };
    let header = Ipv6Header {
        hop_limit: 64,
        source: SRC6,
        destination: DST6,
        ..Default::default()
    };
    let builder = PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ip(IpHeaders::Ipv6(header, extensions))
        .udp(5353, 53);
    let mut frame = Vec::new();
    builder
        .write(&mut frame, &[0x5a; 32])
        .expect("frame builds");
    frame
}

fn parse_benches(c: &mut Criterion) {
    let cases = [
        ("ipv4_tcp", ipv4_tcp(None)),
        ("ipv6_udp", ipv6_udp()),
        ("vlan_ipv4_tcp", ipv4_tcp(Some(100))),
        ("ipv6_ext_frag", ipv6_ext_frag()),
    ];
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in &cases {
        parse(frame).expect("benchmark frame parses");
        group.bench_function(*name, |b| b.iter(|| parse(black_box(frame))));
    }
    group.finish();
}

criterion_group!(benches, parse_benches);
criterion_main!(benches);
