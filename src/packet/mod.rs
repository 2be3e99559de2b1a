//! Frame parsing for the dataplane (SPEC Part A §A1–§A2): Ethernet frame bytes to a compact
//! `PacketMeta`, or the numbered `DropReason` that says why the frame is junk.

mod drop;

pub use drop::{DropReason, DropStage};
