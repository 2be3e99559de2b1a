//! portcullis: a userspace bump-in-the-wire gateway that enforces Calico network policy.
//!
//! Data flow: the control side (left) builds an immutable snapshot; the packet side (right)
//! only reads it.
//!
//! ```text
//!  YAML directory ──► model ──► selector ──► policy ──► compile ──► snapshot ◄── pipeline ◄── packet
//!   files, docs      typed      label        which        per-field            (per frame)    frame
//!                    resources, selectors    policies     lookup      ▲                       bytes
//!                    validation              apply,       tables      │ arc-swap, one load    │
//!                                            reference                │ per batch             │
//!                                            evaluator             conntrack          dataplane (ports)
//! ```
//!
//! - [`model`]: reads every `*.yaml`/`*.yml` of a directory into typed resources, each with its
//!   origin (file, line), and validates them, collecting every problem.
//! - [`selector`]: the Calico label-selector language: parse, evaluate against labels, rewrite.
//! - [`policy`]: resolution of the validated model (effective labels, effective selectors,
//!   ordered tiers and policies, Kubernetes conversion, failsafe ports) and the slow, obviously
//!   right reference evaluator that decides one flow.
//! - [`compile`]: resolved policy → [`snapshot::Snapshot`]: per-endpoint programs of tiers,
//!   policies and rules with per-field lookup tables, so a flow is decided at a cost that does
//!   not grow with the number of rules.
//! - [`snapshot`]: the immutable compiled policy and the `arc-swap` handle the packet path
//!   loads once per batch.
//! - [`packet`]: frame bytes to `PacketMeta`, or the numbered `DropReason` of a malformed frame.
//! - [`pipeline`]: the path of one frame: parse, stages, conntrack, verdict, counters.
//! - [`dataplane`]: backends that move frames between the two ports.
//! - [`conntrack`]: connection tracking: sharded flow table, TCP states, timeouts, fragments.
//! - [`gateway`]: `portcullis run`: workers driving the dataplane through the pipeline,
//!   housekeeping, signals and reloads.
//! - [`watch`]: the config thread: watches the policy directory, debounces, calls the reload.
//! - [`admin`]: the admin HTTP listener: `/metrics`, `/liveness`, `/readiness`, `/status`.
//! - [`logging`]: `tracing` to standard error, text or JSON, level from the settings.
//! - [`systemd`]: READY/RELOADING/STOPPING notifications for `Type=notify` units.
//! - [`cli`]: the subcommands.

pub mod admin;
pub mod cli;
pub mod compile;
pub mod conntrack;
pub mod dataplane;
pub mod gateway;
pub mod logging;
pub mod model;
pub mod packet;
pub mod pipeline;
pub mod policy;
pub mod selector;
pub mod snapshot;
pub mod systemd;
pub mod watch;
