//! Connection tracking for the packet path: a sharded table of flows keyed so that both
//! directions of a connection find the same entry, per-protocol states and timeouts, bounded
//! capacity with eviction of never-replied entries, and a tracker for IP fragments.
//!
//! Nothing here reads a clock: every call takes `now` as an argument.
