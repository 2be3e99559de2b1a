//! Policy resolution and the reference evaluator.
//!
//! [`resolve`] turns a validated model into a [`Resolved`] policy set: endpoints with their
//! effective labels, the labelled IP sets rule selectors match, ordered tiers of policies with
//! effective selectors and normalized [`Rule`]s (Kubernetes policies converted into the same
//! form), profiles, and the settings verdicts need. [`evaluate`] decides one [`Flow`] on it the
//! way Calico would, slowly and plainly, for `eval --reference`, for tests and as the oracle the
//! compiled trees are checked against; [`explain`] tells the same decision to a person.

pub mod eval;
pub mod explain;
pub mod flow;
mod k8s;
pub mod labels;
pub mod resolve;
pub mod rule;
#[cfg(test)]
mod testing;

pub use eval::{
    Decision, DefaultReason, LoggedRule, TraceEntry, TraceSide, TraceStage, Verdict, evaluate,
};
pub use explain::explain;
pub use flow::Flow;
pub use resolve::{
    Direction, Endpoint, EndpointKind, Entity, EntityKind, NamedPort, Policy, PolicyKind, Profile,
    Resolved, Stage, Tier, TierDefaultAction, VerdictSettings, resolve,
};
pub use rule::{Action, IcmpMatch, IpVersion, PortMatch, Rule, Side};
