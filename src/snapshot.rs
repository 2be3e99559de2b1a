//! PLACEHOLDER API: the compiled, immutable policy snapshot and its arc-swap handle (being replaced).
#![allow(unused_variables, clippy::todo)]

use std::net::IpAddr;
use std::sync::Arc;

/// What the classifier looks at for the first packet of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

/// The compiled verdict of a flow, without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowVerdict {
    pub allowed: bool,
}

#[derive(Debug)]
pub struct Snapshot {
    _p: (),
}

impl Snapshot {
    pub fn generation(&self) -> u64 {
        todo!()
    }
    pub fn decide(&self, key: &FlowKey) -> FlowVerdict {
        todo!()
    }
    pub fn memory_bytes(&self) -> usize {
        todo!()
    }
}

/// The snapshot shared by the config thread (publishes) and the workers (load once per batch).
#[derive(Debug)]
pub struct SnapshotHandle {
    _p: (),
}

impl SnapshotHandle {
    pub fn new(snapshot: Snapshot) -> SnapshotHandle {
        todo!()
    }
    pub fn load(&self) -> Arc<Snapshot> {
        todo!()
    }
    pub fn publish(&self, snapshot: Snapshot) {
        todo!()
    }
}
