//! portcullis: a userspace bump-in-the-wire gateway that enforces Calico network policy.
//!
//! Data flow, left to right on the control side:
//!
//! ```text
//!  YAML directory ──► model ──► selector ──► policy ──► (compile ──► snapshot)
//!   files, docs       typed       label        which policies
//!                     resources,  selectors    apply, ordering,
//!                     validation               reference evaluator
//! ```
//!
//! - [`model`]: reads every `*.yaml`/`*.yml` of a directory into typed resources, each with its
//!   origin (file, line), and validates them, collecting every problem.
//! - [`selector`]: the Calico label-selector language: parse, evaluate against labels, rewrite.
//! - [`policy`]: resolution of the validated model (effective labels, effective selectors,
//!   ordered tiers and policies, Kubernetes conversion, failsafe ports) and the slow, obviously
//!   right reference evaluator that decides one flow.
//! - [`packet`]: frame bytes to `PacketMeta`, or the numbered `DropReason` of a malformed frame.
//! - [`cli`]: the subcommands.

pub mod cli;
pub mod compile;
pub mod model;
pub mod packet;
pub mod policy;
pub mod selector;
pub mod snapshot;
