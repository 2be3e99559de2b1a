//! The generator's frames: one UDP/IPv4 frame per flow, built once before the first send, laid
//! end to end in one buffer so that a batch is a list of ranges into it.
//!
//! Flow `i` goes from `192.0.2.(SOURCE_HOST_FIRST + i % SOURCE_HOSTS)` port
//! `SOURCE_PORT_FIRST + i / SOURCE_HOSTS` to one destination address and port: the flows
//! differ in both source fields, as many clients of one server would, and every one of them
//! matches the benchmark policy's last rule (`192.0.2.0/24`, the destination port).

use std::net::Ipv4Addr;
use std::ops::Range;

use etherparse::PacketBuilder;

/// Ethernet (14) + IPv4 (20) + UDP (8): the smallest frame the generator builds.
pub const HEADERS: usize = 42;
/// Largest frame: a 1500-byte MTU plus the Ethernet header.
pub const MAX_FRAME: usize = 1514;
/// Most flows: every source host and port combination below is distinct up to this.
pub const MAX_FLOWS: usize = SOURCE_HOSTS * (u16::MAX as usize + 1 - SOURCE_PORT_FIRST as usize);

const SOURCE_HOSTS: usize = 64;
const SOURCE_HOST_FIRST: u8 = 10;
const SOURCE_PORT_FIRST: u16 = 1024;
const TTL: u8 = 64;

/// What every frame shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    pub source_mac: [u8; 6],
    pub destination_mac: [u8; 6],
    pub destination: Ipv4Addr,
    pub destination_port: u16,
    /// Whole frame as handed to the interface (no FCS on a veth).
    pub size: usize,
}

/// The flows' frames, end to end.
#[derive(Debug)]
pub struct FramePool {
    bytes: Vec<u8>,
    frames: Vec<Range<usize>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame size {0} is not within {HEADERS}..={MAX_FRAME}")]
    Size(usize),
    #[error("{0} flows is not within 1..={MAX_FLOWS}")]
    Flows(usize),
    #[error("building a frame: {0}")]
    Build(String),
}

impl FramePool {
    pub fn build(spec: &FrameSpec, flows: usize) -> Result<FramePool, FrameError> {
        if !(HEADERS..=MAX_FRAME).contains(&spec.size) {
            return Err(FrameError::Size(spec.size));
        }
        if !(1..=MAX_FLOWS).contains(&flows) {
            return Err(FrameError::Flows(flows));
        }
        let mut bytes = Vec::with_capacity(flows * spec.size);
        let mut frames = Vec::with_capacity(flows);
        // Same bytes in every payload: the frames differ only in their flow fields.
        let payload = vec![0x5a; spec.size - HEADERS];
        for flow in 0..flows {
            let (source, source_port) = flow_source(flow);
            let start = bytes.len();
            PacketBuilder::ethernet2(spec.source_mac, spec.destination_mac)
                .ipv4(source.octets(), spec.destination.octets(), TTL)
                .udp(source_port, spec.destination_port)
                .write(&mut bytes, &payload)
                .map_err(|error| FrameError::Build(error.to_string()))?;
            frames.push(start..bytes.len());
        }
        Ok(FramePool { bytes, frames })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Fills `batch` with the next `batch.capacity()`-or-fewer frames from flow `*next` on,
    /// wrapping round the flows, and advances `*next`.
    pub fn next_batch(&self, next: &mut usize, want: usize, batch: &mut Vec<Range<usize>>) {
        batch.clear();
        for _ in 0..want {
            let Some(frame) = self.frames.get(*next) else {
                *next = 0;
                break;
            };
            batch.push(frame.clone());
            *next += 1;
            if *next == self.frames.len() {
                *next = 0;
            }
        }
    }
}

/// Source address and port of flow `flow`.
pub fn flow_source(flow: usize) -> (Ipv4Addr, u16) {
    let host = SOURCE_HOST_FIRST + (flow % SOURCE_HOSTS) as u8;
    let port = SOURCE_PORT_FIRST as usize + flow / SOURCE_HOSTS;
    (
        Ipv4Addr::new(192, 0, 2, host),
        u16::try_from(port).unwrap_or(u16::MAX),
    )
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn spec(size: usize) -> FrameSpec {
        FrameSpec {
            source_mac: [2, 0, 0, 0, 0, 1],
            destination_mac: [2, 0, 0, 0, 0, 2],
            destination: Ipv4Addr::new(203, 0, 113, 10),
            destination_port: 5201,
            size,
        }
    }

    #[test]
    fn frames_have_the_size_asked_and_valid_headers() {
        for size in [HEADERS, 60, 64, 1500, MAX_FRAME] {
            let pool = FramePool::build(&spec(size), 3).unwrap();
            assert_eq!(pool.frames.len(), 3);
            for flow in 0..3 {
                let frame = &pool.bytes()[pool.frames[flow].clone()];
                assert_eq!(frame.len(), size);
                let sliced = SlicedPacket::from_ethernet(frame).unwrap();
                let Some(NetSlice::Ipv4(ip)) = sliced.net else {
                    panic!("not IPv4")
                };
                let header = ip.header().to_header();
                assert_eq!(header.header_checksum, header.calc_header_checksum());
                let (source, port) = flow_source(flow);
                assert_eq!(ip.header().source_addr(), source);
                assert_eq!(
                    ip.header().destination_addr(),
                    Ipv4Addr::new(203, 0, 113, 10)
                );
                let Some(TransportSlice::Udp(udp)) = sliced.transport else {
                    panic!("not UDP")
                };
                assert_eq!((udp.source_port(), udp.destination_port()), (port, 5201));
            }
        }
    }

    #[test]
    fn flows_are_distinct_and_inside_the_documentation_net() {
        let mut seen = std::collections::HashSet::new();
        for flow in 0..10_000 {
            let (address, port) = flow_source(flow);
            assert_eq!(address.octets()[..3], [192, 0, 2]);
            assert!(seen.insert((address, port)), "flow {flow} repeats");
        }
        let (address, port) = flow_source(MAX_FLOWS - 1);
        assert_eq!((address.octets()[3], port), (73, u16::MAX));
    }

    #[test]
    fn bad_sizes_and_flow_counts_are_refused() {
        let cases = [
            (HEADERS - 1, 1, FrameError::Size(HEADERS - 1)),
            (MAX_FRAME + 1, 1, FrameError::Size(MAX_FRAME + 1)),
            (64, 0, FrameError::Flows(0)),
            (64, MAX_FLOWS + 1, FrameError::Flows(MAX_FLOWS + 1)),
        ];
        for (size, flows, expected) in cases {
            assert_eq!(FramePool::build(&spec(size), flows).unwrap_err(), expected);
        }
    }

    #[test]
    fn batches_wrap_round_the_flows() {
        let pool = FramePool::build(&spec(64), 3).unwrap();
        let mut next = 0;
        let mut batch = Vec::new();
        pool.next_batch(&mut next, 4, &mut batch);
        let starts: Vec<usize> = batch.iter().map(|r| r.start / 64).collect();
        assert_eq!(starts, [0, 1, 2, 0]);
        pool.next_batch(&mut next, 2, &mut batch);
        let starts: Vec<usize> = batch.iter().map(|r| r.start / 64).collect();
        assert_eq!(starts, [1, 2]);
        assert_eq!(next, 0);
    }

    #[test]
    fn macs_parse_only_when_whole() {
        let cases = [
            ("02:00:5e:10:00:01", Some([2, 0, 0x5e, 0x10, 0, 1])),
            ("02:00:5E:10:00:01\n", Some([2, 0, 0x5e, 0x10, 0, 1])),
            ("02:00:5e:10:00", None),
            ("02:00:5e:10:00:01:02", None),
            ("02:00:5e:10:00:1", None),
            ("zz:00:5e:10:00:01", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_mac(text), expected, "{text}");
        }
    }
}
