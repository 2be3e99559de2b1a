//! Policy resolution and the reference evaluator.
//!
//! [`resolve()`] turns a validated model into a [`Resolved`] policy set: endpoints with their
//! effective labels, the labelled IP sets rule selectors match, ordered tiers of policies with
//! effective selectors and normalized [`Rule`]s (Kubernetes policies converted into the same
//! form), profiles, and the settings verdicts need. [`evaluate`] decides one [`Flow`] on it the
//! way Calico would, slowly and plainly, for `eval --reference`, for tests and as the oracle the
//! compiled trees are checked against; [`explain()`] tells the same decision to a person.
//!
//! Choices where the specification leaves room, made once here:
//! - Policy order ties are broken by the string `name/namespace/kind` compared byte-wise, as
//!   current Calico does (kinds `GlobalNetworkPolicy`, `NetworkPolicy`, `KubernetesNetworkPolicy`,
//!   and `policy` for v1); a missing order counts as +∞ for tiers and policies alike.
//! - Traces name a Kubernetes NetworkPolicy `KubernetesNetworkPolicy/NAMESPACE/NAME`, so that it
//!   cannot be mistaken for a Calico NetworkPolicy of the same name. The rule index of a KNP is
//!   its index among the converted rules, as in Calico.
//! - A rule's IP family is implied by protocol 1 (IPv4) and 58 (IPv6) whether written as a name
//!   or a number: on the wire they are the same thing.
//! - `icmp`/`notICMP` match only ICMP or ICMPv6 flows that carry a type; a criterion naming a
//!   code needs the flow's code too. A port criterion (`ports` or `notPorts`) needs the flow's
//!   port on that side. A flow that omits what a criterion looks at never satisfies it.
//! - When a default decides after the tiers (workload allow, host deny, no profile matched),
//!   the trace stage is `profile`; a tier end is `normal`; unmatched traffic is side `none`,
//!   stage `normal`.

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
