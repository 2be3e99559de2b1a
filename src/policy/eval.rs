//! The reference evaluator: decides one flow exactly as Calico would, by walking the resolved
//! policy set step by step (SPEC §3.3–§5, §A1). It favours being obviously right over being
//! fast; the compiled classification trees are tested against it. The same walk, with its
//! narration switched on, is what `explain` prints.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::flow::{Flow, protocol};
use super::resolve::{
    Direction, Endpoint, EndpointKind, Policy, Resolved, Stage, Tier, TierDefaultAction,
};
use super::rule::{Action, IcmpMatch, IpVersion, PortMatch, Rule, Side};
use crate::model::settings::{FailsafePort, FailsafeProtocol, UnmatchedTrafficAction};
use crate::selector::Selector;

/// Note attached to the decision of a flow whose addresses are of different families.
pub const MIXED_FAMILIES_NOTE: &str =
    "source and destination are of different address families; such a flow is undefined and denied";

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// Which side of the flow a trace entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceSide {
    /// The destination endpoint's ingress policy.
    Ingress,
    /// The source endpoint's egress policy.
    Egress,
    /// Neither address is an endpoint.
    None,
}

/// The step of the pipeline that decided a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TraceStage {
    #[serde(rename = "failsafe")]
    Failsafe,
    #[serde(rename = "untracked")]
    Untracked,
    #[serde(rename = "preDNAT")]
    PreDnat,
    #[serde(rename = "normal")]
    Normal,
    /// After the tiers: profiles, or the endpoint default when nothing else decided.
    #[serde(rename = "profile")]
    Profile,
}

impl TraceStage {
    fn of(stage: Stage) -> TraceStage {
        match stage {
            Stage::Untracked => TraceStage::Untracked,
            Stage::PreDnat => TraceStage::PreDnat,
            Stage::Normal => TraceStage::Normal,
        }
    }
}

/// Which default decided, when no rule did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultReason {
    /// The end of a tier with defaultAction Deny, reached with no Pass.
    TierEnd,
    /// The endpoint lists profiles and none of them decided.
    ProfilesNoMatch,
    /// A workload endpoint with nothing deciding and no profiles: allowed.
    WorkloadAllow,
    /// A host endpoint with nothing deciding and no profiles: denied.
    HostDeny,
    /// Admitted by a failsafe port ahead of all policy.
    Failsafe,
    /// Neither address is an endpoint: the `unmatchedTrafficAction` setting applies.
    UnmatchedTraffic,
}

/// A Log rule that matched before the side was decided.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LoggedRule {
    /// `None` for a profile's rule.
    pub tier: Option<String>,
    pub policy: String,
    pub rule: usize,
}

/// How one side of the flow was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEntry {
    pub side: TraceSide,
    /// `HostEndpoint/NAME` or `WorkloadEndpoint/NAMESPACE/NAME`; `None` when no endpoint.
    pub endpoint: Option<String>,
    pub stage: TraceStage,
    pub tier: Option<String>,
    /// `KIND/NAME`, `KIND/NAMESPACE/NAME` or `Profile/NAME`; `None` when a default decided.
    pub policy: Option<String>,
    /// Index of the deciding rule in its policy's rule list for this direction.
    pub rule: Option<usize>,
    pub action: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<DefaultReason>,
    pub logged: Vec<LoggedRule>,
}

/// The verdict on a flow and how each side reached it; serializes to the `eval` output line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// One entry per side that ran: egress of the source endpoint, then ingress of the
    /// destination endpoint.
    pub trace: Vec<TraceEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Decision {
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// The trace entry of one side, if that side ran.
    pub fn side(&self, side: TraceSide) -> Option<&TraceEntry> {
        self.trace.iter().find(|t| t.side == side)
    }

    /// The `eval` output line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize decision: {e}\"}}"))
    }
}

/// Decide one flow.
pub fn evaluate(resolved: &Resolved, flow: &Flow) -> Decision {
    decide(resolved, flow, &mut Narration::silent())
}

// ---------------------------------------------------------------------------------------------
// Narration: what `explain` prints, recorded only when asked for.

/// Lines of the explanation, each with its indentation depth.
pub(crate) struct Narration {
    lines: Option<Vec<(usize, String)>>,
}

impl Narration {
    pub fn silent() -> Narration {
        Narration { lines: None }
    }

    pub fn recording() -> Narration {
        Narration {
            lines: Some(Vec::new()),
        }
    }

    /// Record a line; the text is only built when recording.
    pub fn say(&mut self, depth: usize, text: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            lines.push((depth, text()));
        }
    }

    pub fn into_lines(self) -> Vec<(usize, String)> {
        self.lines.unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// The flow verdict (§4.4)

pub(crate) fn decide(resolved: &Resolved, flow: &Flow, n: &mut Narration) -> Decision {
    if flow.mixes_families() {
        n.say(0, || MIXED_FAMILIES_NOTE.to_owned());
        return Decision {
            verdict: Verdict::Deny,
            trace: Vec::new(),
            note: Some(MIXED_FAMILIES_NOTE.to_owned()),
        };
    }
    let source = resolved.endpoint_at(flow.src);
    let destination = resolved.endpoint_at(flow.dst);
    narrate_owner(n, "source", flow.src, source, Direction::Egress);
    narrate_owner(n, "destination", flow.dst, destination, Direction::Ingress);

    if source.is_none() && destination.is_none() {
        return unmatched_traffic(resolved.settings.unmatched_traffic_action, n);
    }
    let mut trace = Vec::new();
    if let Some(endpoint) = source {
        trace.push(evaluate_side(
            resolved,
            endpoint,
            Direction::Egress,
            flow,
            n,
        ));
    }
    if let Some(endpoint) = destination {
        trace.push(evaluate_side(
            resolved,
            endpoint,
            Direction::Ingress,
            flow,
            n,
        ));
    }
    let verdict = if trace.iter().all(|t| t.action == Verdict::Allow) {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    Decision {
        verdict,
        trace,
        note: None,
    }
}

fn narrate_owner(
    n: &mut Narration,
    what: &str,
    addr: IpAddr,
    owner: Option<&Endpoint>,
    direction: Direction,
) {
    n.say(0, || match owner {
        Some(e) => format!(
            "{what} {addr} is {}: its {} policy runs",
            e.display_name,
            direction.name()
        ),
        None => format!(
            "{what} {addr} is not an endpoint: no {} side",
            direction.name()
        ),
    });
}

fn unmatched_traffic(action: UnmatchedTrafficAction, n: &mut Narration) -> Decision {
    let verdict = match action {
        UnmatchedTrafficAction::Allow => Verdict::Allow,
        UnmatchedTrafficAction::Deny => Verdict::Deny,
    };
    n.say(0, || {
        format!(
            "neither address is an endpoint: unmatchedTrafficAction {} applies",
            verdict.name()
        )
    });
    Decision {
        verdict,
        trace: vec![TraceEntry {
            side: TraceSide::None,
            endpoint: None,
            stage: TraceStage::Normal,
            tier: None,
            policy: None,
            rule: None,
            action: verdict,
            default: Some(DefaultReason::UnmatchedTraffic),
            logged: Vec::new(),
        }],
        note: None,
    }
}

// ---------------------------------------------------------------------------------------------
// One side: failsafe, stages, tiers, profiles, defaults (§3.3, §3.4, §4.3)

/// What decided a side, before the logged rules are attached.
struct Decided {
    stage: TraceStage,
    tier: Option<String>,
    policy: Option<String>,
    rule: Option<usize>,
    action: Verdict,
    default: Option<DefaultReason>,
}

impl Decided {
    fn by_default(
        stage: TraceStage,
        tier: Option<String>,
        action: Verdict,
        reason: DefaultReason,
    ) -> Decided {
        Decided {
            stage,
            tier,
            policy: None,
            rule: None,
            action,
            default: Some(reason),
        }
    }
}

/// The walk over one side of a flow.
struct SideWalk<'a, 'n> {
    resolved: &'a Resolved,
    endpoint: &'a Endpoint,
    direction: Direction,
    flow: &'a Flow,
    logged: Vec<LoggedRule>,
    n: &'n mut Narration,
}

fn evaluate_side(
    resolved: &Resolved,
    endpoint: &Endpoint,
    direction: Direction,
    flow: &Flow,
    n: &mut Narration,
) -> TraceEntry {
    n.say(0, || {
        format!("{} of {}", direction.name(), endpoint.display_name)
    });
    let mut walk = SideWalk {
        resolved,
        endpoint,
        direction,
        flow,
        logged: Vec::new(),
        n,
    };
    let decided = walk.run();
    walk.n.say(1, || {
        format!(
            "=> {} {}: {}",
            direction.name(),
            decided.action.name(),
            describe_decider(&decided)
        )
    });
    TraceEntry {
        side: match direction {
            Direction::Ingress => TraceSide::Ingress,
            Direction::Egress => TraceSide::Egress,
        },
        endpoint: Some(endpoint.display_name.clone()),
        stage: decided.stage,
        tier: decided.tier,
        policy: decided.policy,
        rule: decided.rule,
        action: decided.action,
        default: decided.default,
        logged: walk.logged,
    }
}

fn describe_decider(d: &Decided) -> String {
    match (&d.policy, d.rule, d.default) {
        (Some(policy), Some(rule), _) => format!("{policy} rule {rule}"),
        (_, _, Some(DefaultReason::TierEnd)) => {
            format!("end of tier {}", d.tier.as_deref().unwrap_or("?"))
        }
        (_, _, Some(DefaultReason::ProfilesNoMatch)) => "no profile decided".to_owned(),
        (_, _, Some(DefaultReason::WorkloadAllow)) => "workload default (allow)".to_owned(),
        (_, _, Some(DefaultReason::HostDeny)) => "host endpoint default (deny)".to_owned(),
        (_, _, Some(DefaultReason::Failsafe)) => "failsafe port".to_owned(),
        (_, _, Some(DefaultReason::UnmatchedTraffic)) => "unmatched traffic".to_owned(),
        _ => "?".to_owned(),
    }
}

impl SideWalk<'_, '_> {
    fn run(&mut self) -> Decided {
        if self.endpoint.kind == EndpointKind::Host {
            if let Some(decided) = self.failsafe() {
                return decided;
            }
            // doNotTrack and preDNAT policies exist only for host endpoints; for workloads
            // they neither allow nor deny nor count as selecting the endpoint.
            for stage in self.early_stages() {
                self.n.say(1, || format!("{} stage:", stage_name(stage)));
                if let Some(decided) = self.run_tiers(stage) {
                    return decided;
                }
                self.n
                    .say(2, || "nothing decided: on to the next stage".to_owned());
            }
        }
        self.n.say(1, || "normal stage:".to_owned());
        if let Some(decided) = self.run_tiers(Stage::Normal) {
            return decided;
        }
        self.run_profiles()
    }

    /// Untracked, then (ingress only) preDNAT.
    fn early_stages(&self) -> Vec<Stage> {
        match self.direction {
            Direction::Ingress => vec![Stage::Untracked, Stage::PreDnat],
            Direction::Egress => vec![Stage::Untracked],
        }
    }

    /// Failsafe ports: inbound ones on ingress to the host, outbound ones on egress from it,
    /// both by destination port; a failsafe `net` restricts the remote address.
    fn failsafe(&mut self) -> Option<Decided> {
        let (ports, remote, which) = match self.direction {
            Direction::Ingress => (
                &self.resolved.settings.failsafe_inbound,
                self.flow.src,
                "inbound",
            ),
            Direction::Egress => (
                &self.resolved.settings.failsafe_outbound,
                self.flow.dst,
                "outbound",
            ),
        };
        let hit = ports.iter().find(|p| failsafe_admits(p, self.flow, remote));
        match hit {
            Some(p) => {
                self.n.say(1, || {
                    format!(
                        "failsafe: {which} {} port {} admits this flow ahead of all policy",
                        failsafe_protocol_name(p.protocol),
                        p.port
                    )
                });
                Some(Decided::by_default(
                    TraceStage::Failsafe,
                    None,
                    Verdict::Allow,
                    DefaultReason::Failsafe,
                ))
            }
            None => {
                self.n
                    .say(1, || format!("failsafe: no {which} failsafe port matches"));
                None
            }
        }
    }

    /// The tiers of one stage (§4.3). `None` when no tier decided: the flow passed through
    /// every tier, or (untracked and preDNAT stages) reached a tier end, which is a Pass there.
    fn run_tiers(&mut self, stage: Stage) -> Option<Decided> {
        for tier in &self.resolved.tiers {
            let applicable: Vec<&Policy> = tier
                .policies
                .iter()
                .filter(|p| self.applies(p, stage))
                .collect();
            if applicable.is_empty() {
                self.n.say(2, || {
                    format!(
                        "tier {}: skipped, no {} policy selects this endpoint for {}",
                        tier.name,
                        stage_name(stage),
                        self.direction.name()
                    )
                });
                continue;
            }
            self.n.say(2, || describe_tier(tier));
            match self.run_tier_policies(tier, stage) {
                TierResult::Decided(decided) => return Some(decided),
                TierResult::Passed => continue,
                TierResult::NoMatch => {}
            }
            if stage != Stage::Normal {
                self.n.say(3, || {
                    format!(
                        "end of tier {}: implicit Pass in the {} stage",
                        tier.name,
                        stage_name(stage)
                    )
                });
                continue;
            }
            match tier.default_action {
                TierDefaultAction::Deny => {
                    self.n.say(3, || {
                        format!("end of tier {}: default action Deny", tier.name)
                    });
                    return Some(Decided::by_default(
                        TraceStage::Normal,
                        Some(tier.name.clone()),
                        Verdict::Deny,
                        DefaultReason::TierEnd,
                    ));
                }
                TierDefaultAction::Pass => {
                    self.n.say(3, || {
                        format!(
                            "end of tier {}: default action Pass, on to the next tier",
                            tier.name
                        )
                    });
                }
            }
        }
        None
    }

    /// The policies of one tier that take part, in order; the others of the same stage are
    /// only narrated, with the reason they do not take part.
    fn run_tier_policies(&mut self, tier: &Tier, stage: Stage) -> TierResult {
        for policy in tier.policies.iter().filter(|p| p.stage == stage) {
            if !self.applies(policy, stage) {
                self.narrate_inapplicable(policy);
                continue;
            }
            self.n.say(3, || {
                format!(
                    "policy {}{}",
                    policy.display_name,
                    describe_order(policy.order)
                )
            });
            let rules = policy.rules(self.direction).unwrap_or_default();
            if rules.is_empty() {
                self.n
                    .say(4, || format!("no {} rules", self.direction.name()));
            }
            for (index, rule) in rules.iter().enumerate() {
                match self.try_rule(rule, index, Some(&tier.name), &policy.display_name) {
                    RuleResult::Decides(action) => {
                        return TierResult::Decided(Decided {
                            stage: TraceStage::of(stage),
                            tier: Some(tier.name.clone()),
                            policy: Some(policy.display_name.clone()),
                            rule: Some(index),
                            action,
                            default: None,
                        });
                    }
                    RuleResult::Pass => {
                        self.n
                            .say(4, || "Pass: skipping the rest of this tier".to_owned());
                        return TierResult::Passed;
                    }
                    RuleResult::Continue => {}
                }
            }
        }
        TierResult::NoMatch
    }

    /// Profiles in the endpoint's order, then the endpoint default (§4.3).
    fn run_profiles(&mut self) -> Decided {
        let endpoint = self.endpoint;
        if endpoint.profiles.is_empty() {
            let (action, reason, why) = match endpoint.kind {
                EndpointKind::Workload => (
                    Verdict::Allow,
                    DefaultReason::WorkloadAllow,
                    "no profiles: a workload endpoint defaults to allow",
                ),
                EndpointKind::Host => (
                    Verdict::Deny,
                    DefaultReason::HostDeny,
                    "no profiles: a host endpoint defaults to deny",
                ),
            };
            self.n.say(1, || format!("profiles: {why}"));
            return Decided::by_default(TraceStage::Profile, None, action, reason);
        }
        self.n.say(1, || "profiles:".to_owned());
        for profile in self.resolved.profiles_of(endpoint) {
            self.n
                .say(2, || format!("profile {}", profile.display_name));
            for (index, rule) in profile.rules(self.direction).iter().enumerate() {
                match self.try_rule(rule, index, None, &profile.display_name) {
                    RuleResult::Decides(action) => {
                        return Decided {
                            stage: TraceStage::Profile,
                            tier: None,
                            policy: Some(profile.display_name.clone()),
                            rule: Some(index),
                            action,
                            default: None,
                        };
                    }
                    RuleResult::Pass => {
                        self.n.say(3, || "Pass: on to the next profile".to_owned());
                        break;
                    }
                    RuleResult::Continue => {}
                }
            }
        }
        self.n.say(2, || "no profile decided: deny".to_owned());
        Decided::by_default(
            TraceStage::Profile,
            None,
            Verdict::Deny,
            DefaultReason::ProfilesNoMatch,
        )
    }

    /// Match one rule; Log rules are recorded here and never decide.
    fn try_rule(
        &mut self,
        rule: &Rule,
        index: usize,
        tier: Option<&str>,
        policy: &str,
    ) -> RuleResult {
        let depth = if tier.is_some() { 4 } else { 3 };
        match match_rule(self.resolved, rule, self.flow) {
            Err(mismatch) => {
                self.n.say(depth, || {
                    format!(
                        "rule {index} ({}): no match: {mismatch}",
                        rule.action.name()
                    )
                });
                RuleResult::Continue
            }
            Ok(()) => {
                self.n.say(depth, || {
                    format!("rule {index} ({}): matched", rule.action.name())
                });
                match rule.action {
                    Action::Allow => RuleResult::Decides(Verdict::Allow),
                    Action::Deny => RuleResult::Decides(Verdict::Deny),
                    Action::Pass => RuleResult::Pass,
                    Action::Log => {
                        self.logged.push(LoggedRule {
                            tier: tier.map(str::to_owned),
                            policy: policy.to_owned(),
                            rule: index,
                        });
                        self.n
                            .say(depth + 1, || "logged; evaluation continues".to_owned());
                        RuleResult::Continue
                    }
                }
            }
        }
    }

    fn applies(&self, policy: &Policy, stage: Stage) -> bool {
        policy.applies_to(self.endpoint, self.direction, stage)
    }

    fn narrate_inapplicable(&mut self, policy: &Policy) {
        let direction = self.direction;
        self.n.say(3, || {
            let why = if policy.governs(direction) {
                format!("does not select this endpoint ({})", policy.selector)
            } else {
                format!("does not govern {}", direction.name())
            };
            format!("policy {}: not applicable, {why}", policy.display_name)
        });
    }
}

enum TierResult {
    Decided(Decided),
    Passed,
    NoMatch,
}

enum RuleResult {
    Decides(Verdict),
    Pass,
    Continue,
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Untracked => "untracked",
        Stage::PreDnat => "preDNAT",
        Stage::Normal => "normal",
    }
}

fn describe_tier(tier: &Tier) -> String {
    let action = match tier.default_action {
        TierDefaultAction::Deny => "Deny",
        TierDefaultAction::Pass => "Pass",
    };
    format!(
        "tier {}{}, default action {action}",
        tier.name,
        describe_order(tier.order)
    )
}

fn describe_order(order: Option<f64>) -> String {
    match order {
        Some(o) => format!(" (order {o})"),
        None => " (no order)".to_owned(),
    }
}

fn failsafe_admits(port: &FailsafePort, flow: &Flow, remote: IpAddr) -> bool {
    let protocol_matches = match port.protocol {
        FailsafeProtocol::Tcp => flow.protocol == protocol::TCP,
        FailsafeProtocol::Udp => flow.protocol == protocol::UDP,
    };
    protocol_matches
        && flow.dst_port == Some(port.port)
        && port.net.is_none_or(|net| net.contains(&remote))
}

fn failsafe_protocol_name(p: FailsafeProtocol) -> &'static str {
    match p {
        FailsafeProtocol::Tcp => "TCP",
        FailsafeProtocol::Udp => "UDP",
    }
}

// ---------------------------------------------------------------------------------------------
// Rule matching (§5)

/// Which end of the packet a side criterion looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Source,
    Destination,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Source => "source",
            End::Destination => "destination",
        }
    }
}

/// The first criterion of a rule that a flow fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch<'a> {
    IpVersion {
        rule: IpVersion,
        flow: IpVersion,
    },
    /// Some nets/notNets list is non-empty but holds no CIDR of the flow's family.
    NetsFamily {
        flow: IpVersion,
    },
    Protocol {
        rule: u8,
        flow: u8,
    },
    NotProtocol {
        excluded: u8,
    },
    NotIcmpFlow,
    IcmpTypeMissing,
    IcmpCodeMissing,
    Icmp {
        rule: IcmpMatch,
        flow_type: u8,
        flow_code: Option<u8>,
    },
    NotIcmp {
        excluded: IcmpMatch,
    },
    Nets {
        end: End,
        addr: IpAddr,
        nets: &'a [IpNet],
    },
    NotNets {
        end: End,
        addr: IpAddr,
        net: &'a IpNet,
    },
    Selector {
        end: End,
        addr: IpAddr,
        selector: &'a Selector,
    },
    NotSelector {
        end: End,
        addr: IpAddr,
        selector: &'a Selector,
        entity: String,
    },
    PortMissing {
        end: End,
    },
    Ports {
        end: End,
        port: u16,
        ports: &'a [PortMatch],
    },
    NotPorts {
        end: End,
        port: u16,
        entry: &'a PortMatch,
    },
}

impl fmt::Display for Mismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::IpVersion { rule, flow } => write!(
                f,
                "flow is IPv{}, rule matches IPv{} only",
                flow.number(),
                rule.number()
            ),
            Mismatch::NetsFamily { flow } => {
                write!(f, "rule CIDRs hold no IPv{} network", flow.number())
            }
            Mismatch::Protocol { rule, flow } => write!(
                f,
                "protocol {} is not {}",
                protocol::display(*flow),
                protocol::display(*rule)
            ),
            Mismatch::NotProtocol { excluded } => {
                write!(
                    f,
                    "protocol is {} (notProtocol)",
                    protocol::display(*excluded)
                )
            }
            Mismatch::NotIcmpFlow => {
                f.write_str("rule matches ICMP fields and the flow is not ICMP")
            }
            Mismatch::IcmpTypeMissing => {
                f.write_str("flow has no ICMP type, so no type-specific rule matches it")
            }
            Mismatch::IcmpCodeMissing => {
                f.write_str("flow has no ICMP code, so no code-specific rule matches it")
            }
            Mismatch::Icmp {
                rule,
                flow_type,
                flow_code,
            } => {
                write!(f, "ICMP type {flow_type}")?;
                if let Some(code) = flow_code {
                    write!(f, " code {code}")?;
                }
                write!(f, " is not {rule}")
            }
            Mismatch::NotIcmp { excluded } => write!(f, "ICMP {excluded} is excluded by notICMP"),
            Mismatch::Nets { end, addr, nets } => {
                write!(f, "{} {addr} not in {}", end.name(), join(nets.iter()))
            }
            Mismatch::NotNets { end, addr, net } => {
                write!(f, "{} {addr} is in notNets {net}", end.name())
            }
            Mismatch::Selector {
                end,
                addr,
                selector,
            } => write!(
                f,
                "{} {addr} not in any entity selected by {selector}",
                end.name()
            ),
            Mismatch::NotSelector {
                end,
                addr,
                selector,
                entity,
            } => write!(
                f,
                "{} {addr} is in {entity}, selected by notSelector {selector}",
                end.name()
            ),
            Mismatch::PortMissing { end } => write!(f, "flow has no {} port", end.name()),
            Mismatch::Ports { end, port, ports } => {
                write!(
                    f,
                    "{} port {port} not in {}",
                    end.name(),
                    join(ports.iter())
                )
            }
            Mismatch::NotPorts { end, port, entry } => {
                write!(
                    f,
                    "{} port {port} matches notPorts entry {entry}",
                    end.name()
                )
            }
        }
    }
}

fn join<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// Whether `rule` matches `flow`: every criterion it sets must hold. On a mismatch, says which
/// criterion failed first.
pub fn match_rule<'a>(
    resolved: &Resolved,
    rule: &'a Rule,
    flow: &Flow,
) -> Result<(), Mismatch<'a>> {
    match_family(rule, flow)?;
    match_protocol(rule, flow)?;
    match_icmp(rule, flow)?;
    match_side(
        resolved,
        &rule.src,
        End::Source,
        flow.src,
        flow.src_port,
        flow.protocol,
    )?;
    match_side(
        resolved,
        &rule.dst,
        End::Destination,
        flow.dst,
        flow.dst_port,
        flow.protocol,
    )
}

fn match_family<'a>(rule: &'a Rule, flow: &Flow) -> Result<(), Mismatch<'a>> {
    let family = IpVersion::of_addr(flow.src);
    if let Some(version) = rule.ip_version
        && version != family
    {
        return Err(Mismatch::IpVersion {
            rule: version,
            flow: family,
        });
    }
    // A rule with CIDRs of the other family only does not exist for this family at all, even
    // when the CIDRs are in notNets (Felix drops it when rendering that family).
    let lists = [
        &rule.src.nets,
        &rule.src.not_nets,
        &rule.dst.nets,
        &rule.dst.not_nets,
    ];
    for list in lists {
        if !list.is_empty() && !list.iter().any(|n| IpVersion::of_net(n) == family) {
            return Err(Mismatch::NetsFamily { flow: family });
        }
    }
    Ok(())
}

fn match_protocol<'a>(rule: &'a Rule, flow: &Flow) -> Result<(), Mismatch<'a>> {
    if let Some(p) = rule.protocol
        && p != flow.protocol
    {
        return Err(Mismatch::Protocol {
            rule: p,
            flow: flow.protocol,
        });
    }
    if let Some(p) = rule.not_protocol
        && p == flow.protocol
    {
        return Err(Mismatch::NotProtocol { excluded: p });
    }
    Ok(())
}

/// `icmp` and `notICMP`: only ICMP/ICMPv6 flows that carry a type can match them, and a
/// criterion that names a code needs the flow's code.
fn match_icmp<'a>(rule: &'a Rule, flow: &Flow) -> Result<(), Mismatch<'a>> {
    if rule.icmp.is_none() && rule.not_icmp.is_none() {
        return Ok(());
    }
    if !protocol::is_icmp(flow.protocol) {
        return Err(Mismatch::NotIcmpFlow);
    }
    let Some(flow_type) = flow.icmp_type else {
        return Err(Mismatch::IcmpTypeMissing);
    };
    let same = |m: &IcmpMatch| -> Result<bool, Mismatch<'a>> {
        match (m.code, flow.icmp_code) {
            (None, _) => Ok(m.icmp_type == flow_type),
            (Some(_), None) => Err(Mismatch::IcmpCodeMissing),
            (Some(code), Some(flow_code)) => Ok(m.icmp_type == flow_type && code == flow_code),
        }
    };
    if let Some(m) = &rule.icmp
        && !same(m)?
    {
        return Err(Mismatch::Icmp {
            rule: *m,
            flow_type,
            flow_code: flow.icmp_code,
        });
    }
    if let Some(m) = &rule.not_icmp
        && same(m)?
    {
        return Err(Mismatch::NotIcmp { excluded: *m });
    }
    Ok(())
}

fn match_side<'a>(
    resolved: &Resolved,
    side: &'a Side,
    end: End,
    addr: IpAddr,
    port: Option<u16>,
    flow_protocol: u8,
) -> Result<(), Mismatch<'a>> {
    if !side.nets.is_empty() && !side.nets.iter().any(|n| n.contains(&addr)) {
        return Err(Mismatch::Nets {
            end,
            addr,
            nets: &side.nets,
        });
    }
    if let Some(net) = side.not_nets.iter().find(|n| n.contains(&addr)) {
        return Err(Mismatch::NotNets { end, addr, net });
    }
    if let Some(selector) = &side.selector
        && !selected(resolved, selector, addr)
    {
        return Err(Mismatch::Selector {
            end,
            addr,
            selector,
        });
    }
    if let Some(selector) = &side.not_selector
        && let Some(entity) = resolved
            .entities_containing(addr)
            .find(|e| selector.matches(&e.labels))
    {
        return Err(Mismatch::NotSelector {
            end,
            addr,
            selector,
            entity: entity.display_name.clone(),
        });
    }
    if side.ports.is_empty() && side.not_ports.is_empty() {
        return Ok(());
    }
    let Some(port) = port else {
        return Err(Mismatch::PortMissing { end });
    };
    let ctx = PortContext {
        resolved,
        selector: side.selector.as_ref(),
        addr,
        protocol: flow_protocol,
        port,
    };
    if !side.ports.is_empty() && !side.ports.iter().any(|m| ctx.matches(m)) {
        return Err(Mismatch::Ports {
            end,
            port,
            ports: &side.ports,
        });
    }
    if let Some(entry) = side.not_ports.iter().find(|m| ctx.matches(m)) {
        return Err(Mismatch::NotPorts { end, port, entry });
    }
    Ok(())
}

/// IP-set semantics of a positive selector: some entity whose labels it matches contains the
/// address. An address in no entity never matches, whatever the selector.
fn selected(resolved: &Resolved, selector: &Selector, addr: IpAddr) -> bool {
    resolved
        .entities_containing(addr)
        .any(|e| selector.matches(&e.labels))
}

/// What a port entry is matched against.
struct PortContext<'a> {
    resolved: &'a Resolved,
    /// The side's positive selector, which limits the endpoints whose named ports count.
    selector: Option<&'a Selector>,
    addr: IpAddr,
    protocol: u8,
    port: u16,
}

impl PortContext<'_> {
    /// A range contains the port; a named port matches when the address is an endpoint's (one
    /// the side's selector selects, if it has one) that declares a port of that name with the
    /// flow's protocol and port. So it resolves per endpoint and never matches an external
    /// address.
    fn matches(&self, entry: &PortMatch) -> bool {
        match entry {
            PortMatch::Range(lo, hi) => (*lo..=*hi).contains(&self.port),
            PortMatch::Named(name) => self.resolved.endpoint_at(self.addr).is_some_and(|e| {
                self.selector.is_none_or(|s| s.matches(&e.labels))
                    && e.ports.iter().any(|p| {
                        p.name == *name && p.protocol == self.protocol && p.port == self.port
                    })
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::Resource;
    use crate::policy::resolve::{VerdictSettings, resolve_resources};
    use crate::policy::testing::{default_failsafe, ip, no_failsafe, res, resolved, tcp, udp};

    const HOST: &str = "192.0.2.10";
    const WORKLOAD: &str = "192.0.2.20";
    const OUTSIDE: &str = "198.51.100.1";

    /// A host endpoint `host` (role=web) at HOST and a workload `prod/pod` (app=api) at
    /// WORKLOAD, plus the given resources.
    fn world(mut extra: Vec<Resource>) -> Vec<Resource> {
        let mut resources = vec![
            res(
                "HostEndpoint",
                "host",
                &[("role", "web")],
                json!({ "node": "n", "expectedIPs": [HOST] }),
            ),
            res(
                "WorkloadEndpoint",
                "prod/pod",
                &[("app", "api")],
                json!({ "orchestrator": "k8s", "interfaceName": "cali0", "ipNetworks": [WORKLOAD] }),
            ),
        ];
        resources.append(&mut extra);
        resources
    }

    fn gnp(name: &str, spec: serde_json::Value) -> Resource {
        res("GlobalNetworkPolicy", name, &[], spec)
    }

    /// (action, policy, rule, default) of one side of a decision.
    fn side_of(
        d: &Decision,
        side: TraceSide,
    ) -> (
        Verdict,
        Option<String>,
        Option<usize>,
        Option<DefaultReason>,
    ) {
        let t = d
            .side(side)
            .unwrap_or_else(|| panic!("no {side:?} side in {d:?}"));
        (t.action, t.policy.clone(), t.rule, t.default)
    }

    #[test]
    fn endpoints_without_policy_fall_to_their_defaults() {
        let r = resolved(world(vec![]));
        let d = evaluate(&r, &tcp(OUTSIDE, WORKLOAD, 80));
        assert_eq!(
            side_of(&d, TraceSide::Ingress),
            (
                Verdict::Allow,
                None,
                None,
                Some(DefaultReason::WorkloadAllow)
            )
        );
        assert!(d.is_allowed());
        let d = evaluate(&r, &tcp(OUTSIDE, HOST, 80));
        assert_eq!(
            side_of(&d, TraceSide::Ingress),
            (Verdict::Deny, None, None, Some(DefaultReason::HostDeny))
        );
        assert_eq!(d.verdict(), Verdict::Deny);
    }

    #[test]
    fn first_matching_rule_decides_and_tier_end_denies_the_rest() {
        let r = resolved(world(vec![
            gnp(
                "a-deny-ssh",
                json!({ "order": 1, "selector": "role == 'web'", "ingress": [
                    { "action": "Deny", "protocol": "TCP", "destination": { "ports": [22] } },
                ]}),
            ),
            gnp(
                "b-allow-web",
                json!({ "order": 2, "selector": "role == 'web'", "ingress": [
                    { "action": "Allow", "protocol": "TCP", "destination": { "ports": [80, 443] } },
                ]}),
            ),
        ]));
        let cases = [
            (
                22,
                (
                    Verdict::Deny,
                    Some("GlobalNetworkPolicy/a-deny-ssh".to_owned()),
                    Some(0),
                    None,
                ),
            ),
            // The deny-only policy does not deny port 443 itself: the next policy runs.
            (
                443,
                (
                    Verdict::Allow,
                    Some("GlobalNetworkPolicy/b-allow-web".to_owned()),
                    Some(0),
                    None,
                ),
            ),
            (
                8080,
                (Verdict::Deny, None, None, Some(DefaultReason::TierEnd)),
            ),
        ];
        for (port, want) in cases {
            let d = evaluate(&r, &tcp(OUTSIDE, HOST, port));
            assert_eq!(side_of(&d, TraceSide::Ingress), want, "port {port}");
        }
        let d = evaluate(&r, &tcp(OUTSIDE, HOST, 8080));
        assert_eq!(d.trace[0].tier.as_deref(), Some("default"));
        assert_eq!(d.trace[0].stage, TraceStage::Normal);
    }

    #[test]
    fn pass_skips_to_the_next_applicable_tier_and_then_to_the_defaults() {
        let pass_all = json!({ "tier": "first", "selector": "all()", "types": ["Ingress", "Egress"],
            "ingress": [{ "action": "Pass" }], "egress": [{ "action": "Pass" }] });
        let r = resolved(world(vec![
            res("Tier", "first", &[], json!({ "order": 1 })),
            res("Tier", "middle", &[], json!({ "order": 2 })),
            res("Tier", "last", &[], json!({ "order": 3 })),
            gnp("first.pass", pass_all.clone()),
            // Selects nothing here: the tier is skipped, its end does not deny.
            gnp(
                "middle.other",
                json!({ "tier": "middle", "selector": "role == 'nobody'" }),
            ),
            gnp(
                "last.web",
                json!({ "tier": "last", "selector": "role == 'web'", "ingress": [
                    { "action": "Allow", "protocol": "TCP", "destination": { "ports": [80] } },
                ]}),
            ),
        ]));
        let d = evaluate(&r, &tcp(OUTSIDE, HOST, 80));
        assert_eq!(
            side_of(&d, TraceSide::Ingress),
            (
                Verdict::Allow,
                Some("GlobalNetworkPolicy/last.web".into()),
                Some(0),
                None
            )
        );
        assert_eq!(d.trace[0].tier.as_deref(), Some("last"));
        let d = evaluate(&r, &tcp(OUTSIDE, HOST, 81));
        assert_eq!(
            side_of(&d, TraceSide::Ingress),
            (Verdict::Deny, None, None, Some(DefaultReason::TierEnd))
        );
        assert_eq!(d.trace[0].tier.as_deref(), Some("last"));
        // The workload: passed by `first`, no later tier applies: the workload default.
        let d = evaluate(&r, &tcp(OUTSIDE, WORKLOAD, 81));
        assert_eq!(
            side_of(&d, TraceSide::Ingress),
            (
                Verdict::Allow,
                None,
                None,
                Some(DefaultReason::WorkloadAllow)
            )
        );
    }

    #[test]
    fn tier_default_action_pass_moves_on() {
        let r = resolved(world(vec![
            res(
                "Tier",
                "soft",
                &[],
                json!({ "order": 1, "defaultAction": "Pass" }),
            ),
            gnp(
                "soft.deny-ssh",
                json!({ "tier": "soft", "selector": "all()", "ingress": [
                    { "action": "Deny", "protocol": "TCP", "destination": { "ports": [22] } },
                ]}),
            ),
            gnp(
                "allow-web",
                json!({ "selector": "role == 'web'", "ingress": [{ "action": "Allow" }] }),
            ),
        ]));
        assert_eq!(evaluate(&r, &tcp(OUTSIDE, HOST, 22)).verdict, Verdict::Deny);
        let d = evaluate(&r, &tcp(OUTSIDE, HOST, 80));
        assert_eq!(
            side_of(&d, TraceSide::Ingress),
            (
                Verdict::Allow,
                Some("GlobalNetworkPolicy/allow-web".into()),
                Some(0),
                None
            )
        );
    }

    #[test]
    fn log_rules_are_recorded_and_never_decide() {
        let r = resolved(world(vec![gnp(
            "log-then-deny",
            json!({ "order": 1, "selector": "all()", "ingress": [
                { "action": "Log", "protocol": "TCP" },
                { "action": "Log", "protocol": "UDP" },
                { "action": "Deny", "protocol": "TCP", "destination": { "ports": [23] } },
            ]}),
        )]));
        let d = evaluate(&r, &tcp(OUTSIDE, HOST, 23));
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(
            d.trace[0].logged,
            [LoggedRule {
                tier: Some("default".into()),
                policy: "GlobalNetworkPolicy/log-then-deny".into(),
                rule: 0
            }]
        );
        assert_eq!(d.trace[0].rule, Some(2));
        // Port 24: logged, nothing decides, the tier end denies.
        let d = evaluate(&r, &tcp(OUTSIDE, WORKLOAD, 24));
        assert_eq!(d.trace[0].default, Some(DefaultReason::TierEnd));
        assert_eq!(d.trace[0].logged.len(), 1);
    }

    #[test]
    fn profiles_run_after_the_tiers_in_order() {
        let r = resolved(vec![
            res(
                "Profile",
                "p-pass",
                &[],
                json!({ "ingress": [
                    { "action": "Log" },
                    { "action": "Pass", "protocol": "TCP", "destination": { "ports": [80] } },
                    { "action": "Deny" },
                ]}),
            ),
            res(
                "Profile",
                "p-allow-web",
                &[],
                json!({ "ingress": [
                    { "action": "Allow", "protocol": "TCP", "destination": { "ports": [80] } },
                ]}),
            ),
            res(
                "WorkloadEndpoint",
                "prod/pod",
                &[],
                json!({
                    "interfaceName": "cali0", "ipNetworks": [WORKLOAD], "profiles": ["p-pass", "p-allow-web"],
                }),
            ),
            res(
                "HostEndpoint",
                "host",
                &[],
                json!({ "node": "n", "expectedIPs": [HOST], "profiles": ["p-allow-web"] }),
            ),
        ]);
        let d = evaluate(&r, &tcp(OUTSIDE, WORKLOAD, 80));
        assert_eq!(
            side_of(&d, TraceSide::Ingress),
            (
                Verdict::Allow,
                Some("Profile/p-allow-web".into()),
                Some(0),
                None
            )
        );
        assert_eq!(d.trace[0].stage, TraceStage::Profile);
        assert_eq!(
            d.trace[0].logged,
            [LoggedRule {
                tier: None,
                policy: "Profile/p-pass".into(),
                rule: 0
            }]
        );
        let d = evaluate(&r, &tcp(OUTSIDE, WORKLOAD, 81));
        assert_eq!(
            side_of(&d, TraceSide::Ingress),
            (Verdict::Deny, Some("Profile/p-pass".into()), Some(2), None)
        );
        // A host whose profile does not match: denied, and said so.
        let d = evaluate(&r, &tcp(OUTSIDE, HOST, 81));
        assert_eq!(
            side_of(&d, TraceSide::Ingress),
            (
                Verdict::Deny,
                None,
                None,
                Some(DefaultReason::ProfilesNoMatch)
            )
        );
        // Egress of the workload: profiles listed, none has egress rules.
        let d = evaluate(&r, &tcp(WORKLOAD, OUTSIDE, 80));
        assert_eq!(
            side_of(&d, TraceSide::Egress),
            (
                Verdict::Deny,
                None,
                None,
                Some(DefaultReason::ProfilesNoMatch)
            )
        );
    }

    #[test]
    fn host_stages_run_untracked_then_prednat_then_normal() {
        let r = resolved(world(vec![
            gnp(
                "untracked",
                json!({ "selector": "all()", "doNotTrack": true, "applyOnForward": true,
                    "types": ["Ingress", "Egress"],
                    "ingress": [
                        { "action": "Allow", "protocol": "UDP", "destination": { "ports": [8125] } },
                        { "action": "Deny", "protocol": "UDP", "destination": { "ports": [9999] } },
                    ],
                    "egress": [{ "action": "Allow", "protocol": "UDP", "source": { "ports": [8125] } }],
                }),
            ),
            gnp(
                "pre",
                json!({ "selector": "all()", "preDNAT": true, "applyOnForward": true, "ingress": [
                    { "action": "Deny", "source": { "nets": ["198.51.100.128/25"] } },
                    { "action": "Allow", "protocol": "TCP", "destination": { "ports": [8443] } },
                ]}),
            ),
            gnp(
                "normal",
                json!({ "selector": "all()", "types": ["Ingress", "Egress"], "ingress": [
                    { "action": "Allow", "protocol": "TCP", "destination": { "ports": [80] } },
                ]}),
            ),
        ]));
        let stage_of = |flow: &Flow| {
            let d = evaluate(&r, flow);
            let t = d.trace.last().unwrap();
            (t.stage, t.action, t.policy.clone(), t.default)
        };
        let g = |s: &str| Some(format!("GlobalNetworkPolicy/{s}"));
        assert_eq!(
            stage_of(&udp(OUTSIDE, HOST, 8125)),
            (TraceStage::Untracked, Verdict::Allow, g("untracked"), None)
        );
        assert_eq!(
            stage_of(&udp(OUTSIDE, HOST, 9999)),
            (TraceStage::Untracked, Verdict::Deny, g("untracked"), None)
        );
        assert_eq!(
            stage_of(&tcp("198.51.100.200", HOST, 80)),
            (TraceStage::PreDnat, Verdict::Deny, g("pre"), None)
        );
        // preDNAT Allow skips the normal stage, which would deny 8443.
        assert_eq!(
            stage_of(&tcp(OUTSIDE, HOST, 8443)),
            (TraceStage::PreDnat, Verdict::Allow, g("pre"), None)
        );
        // Untracked and preDNAT tiers end in an implicit Pass: the normal stage decides.
        assert_eq!(
            stage_of(&tcp(OUTSIDE, HOST, 80)),
            (TraceStage::Normal, Verdict::Allow, g("normal"), None)
        );
        assert_eq!(
            stage_of(&tcp(OUTSIDE, HOST, 81)),
            (
                TraceStage::Normal,
                Verdict::Deny,
                None,
                Some(DefaultReason::TierEnd)
            )
        );
        // Egress: untracked, then normal (no preDNAT on egress).
        let egress = Flow::udp(ip(HOST), 8125, ip(OUTSIDE), 5000);
        assert_eq!(
            stage_of(&egress),
            (TraceStage::Untracked, Verdict::Allow, g("untracked"), None)
        );
        // A workload ignores doNotTrack and preDNAT policies entirely.
        assert_eq!(
            stage_of(&udp(OUTSIDE, WORKLOAD, 8125)),
            (
                TraceStage::Normal,
                Verdict::Deny,
                None,
                Some(DefaultReason::TierEnd)
            )
        );
        assert_eq!(
            stage_of(&tcp(OUTSIDE, WORKLOAD, 8443)),
            (
                TraceStage::Normal,
                Verdict::Deny,
                None,
                Some(DefaultReason::TierEnd)
            )
        );
    }

    #[test]
    fn workload_is_not_isolated_by_early_stage_policies_alone() {
        let r = resolved(world(vec![gnp(
            "untracked",
            json!({ "selector": "all()", "doNotTrack": true, "applyOnForward": true, "ingress": [{ "action": "Deny" }] }),
        )]));
        let d = evaluate(&r, &tcp(OUTSIDE, WORKLOAD, 80));
        assert_eq!(
            side_of(&d, TraceSide::Ingress),
            (
                Verdict::Allow,
                None,
                None,
                Some(DefaultReason::WorkloadAllow)
            )
        );
    }

    #[test]
    fn failsafe_ports_admit_host_traffic_by_destination_port_ahead_of_policy() {
        let resources = world(vec![gnp(
            "deny-all",
            json!({ "selector": "all()", "doNotTrack": true, "applyOnForward": true,
                "types": ["Ingress", "Egress"], "ingress": [{ "action": "Deny" }], "egress": [{ "action": "Deny" }] }),
        )]);
        let r = resolve_resources(&resources, default_failsafe()).unwrap();
        let failsafe = |flow: Flow| {
            let d = evaluate(&r, &flow);
            let t = d
                .trace
                .iter()
                .find(|t| t.endpoint.as_deref() == Some("HostEndpoint/host"))
                .unwrap()
                .clone();
            (t.stage, t.action, t.default)
        };
        let admitted = (
            TraceStage::Failsafe,
            Verdict::Allow,
            Some(DefaultReason::Failsafe),
        );
        assert_eq!(failsafe(tcp(OUTSIDE, HOST, 22)), admitted);
        assert_eq!(failsafe(udp(OUTSIDE, HOST, 68)), admitted);
        assert_eq!(failsafe(udp(HOST, OUTSIDE, 53)), admitted);
        assert_eq!(failsafe(tcp(HOST, OUTSIDE, 6443)), admitted);
        let denied = (TraceStage::Untracked, Verdict::Deny, None);
        // Wrong protocol, wrong direction, or only the source port: nothing opens.
        assert_eq!(failsafe(udp(OUTSIDE, HOST, 22)), denied);
        assert_eq!(failsafe(tcp(HOST, OUTSIDE, 22)), denied);
        assert_eq!(
            failsafe(Flow::tcp(ip(OUTSIDE), 22, ip(HOST), 40000)),
            denied
        );
        assert_eq!(failsafe(udp(OUTSIDE, HOST, 53)), denied);

        // A failsafe `net` restricts the remote address.
        let mut settings = no_failsafe();
        settings.failsafe_inbound = vec![FailsafePort {
            protocol: FailsafeProtocol::Tcp,
            port: 22,
            net: Some("198.51.100.0/28".parse().unwrap()),
        }];
        let r = resolve_resources(&resources, settings).unwrap();
        assert_eq!(
            evaluate(&r, &tcp("198.51.100.2", HOST, 22)).verdict,
            Verdict::Allow
        );
        assert_eq!(
            evaluate(&r, &tcp("198.51.100.99", HOST, 22)).verdict,
            Verdict::Deny
        );
        // Workloads have no failsafe ports (and ignore the untracked policy).
        let d = evaluate(&r, &tcp("198.51.100.2", WORKLOAD, 22));
        assert_eq!(
            (d.trace[0].stage, d.trace[0].default),
            (TraceStage::Profile, Some(DefaultReason::WorkloadAllow))
        );
    }

    #[test]
    fn both_sides_must_allow() {
        let r = resolved(world(vec![gnp(
            "web-egress",
            json!({ "selector": "role == 'web'", "egress": [
                { "action": "Allow", "protocol": "TCP", "destination": { "ports": [80] } },
            ]}),
        )]));
        let d = evaluate(&r, &tcp(HOST, WORKLOAD, 80));
        assert_eq!(d.trace.len(), 2);
        assert_eq!(d.trace[0].side, TraceSide::Egress);
        assert_eq!(d.trace[1].side, TraceSide::Ingress);
        assert!(d.is_allowed());
        let d = evaluate(&r, &tcp(HOST, WORKLOAD, 81));
        assert_eq!(side_of(&d, TraceSide::Egress).0, Verdict::Deny);
        assert_eq!(side_of(&d, TraceSide::Ingress).0, Verdict::Allow);
        assert_eq!(d.verdict, Verdict::Deny);
    }

    #[test]
    fn unmatched_and_mixed_family_flows() {
        let resources = world(vec![]);
        let r = resolved(resources.clone());
        let d = evaluate(&r, &tcp(OUTSIDE, "203.0.113.9", 80));
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(d.trace[0].side, TraceSide::None);
        assert_eq!(d.trace[0].endpoint, None);
        assert_eq!(d.trace[0].default, Some(DefaultReason::UnmatchedTraffic));
        let settings = VerdictSettings {
            unmatched_traffic_action: UnmatchedTrafficAction::Allow,
            ..no_failsafe()
        };
        let r2 = resolve_resources(&resources, settings).unwrap();
        assert_eq!(
            evaluate(&r2, &tcp(OUTSIDE, "203.0.113.9", 80)).verdict,
            Verdict::Allow
        );

        let mixed = Flow::tcp(ip(WORKLOAD), 1, ip("2001:db8::1"), 80);
        let d = evaluate(&r2, &mixed);
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(d.trace.is_empty());
        assert_eq!(d.note.as_deref(), Some(MIXED_FAMILIES_NOTE));
    }

    #[test]
    fn rule_criteria_match_as_section_five_says() {
        let r = resolved(world(vec![
            res(
                "GlobalNetworkSet",
                "partners",
                &[("trust", "partner")],
                json!({ "nets": ["198.51.100.0/26"] }),
            ),
            res(
                "GlobalNetworkSet",
                "wide",
                &[("trust", "wide")],
                json!({ "nets": ["198.51.100.0/24"] }),
            ),
            res(
                "HostEndpoint",
                "db",
                &[("role", "db")],
                json!({ "node": "n", "expectedIPs": ["192.0.2.30", "2001:db8::30"],
                "ports": [{ "name": "sql", "port": 5432, "protocol": "TCP" }, { "name": "sql", "port": 5433, "protocol": "UDP" }] }),
            ),
            res(
                "HostEndpoint",
                "db2",
                &[("role", "db")],
                json!({ "node": "n", "expectedIPs": ["192.0.2.31"],
                "ports": [{ "name": "sql", "port": 6432, "protocol": "TCP" }] }),
            ),
        ]));
        let rule = |spec: serde_json::Value| {
            let resources = vec![gnp("p", json!({ "ingress": [spec] }))];
            let policy = resolved(resources).tiers[0].policies[0].clone();
            policy.ingress.unwrap().remove(0)
        };
        let icmp = |src: &str, dst: &str, t: Option<u8>, c: Option<u8>| Flow {
            icmp_type: t,
            icmp_code: c,
            ..Flow::bare(
                if ip(src).is_ipv6() {
                    protocol::ICMPV6
                } else {
                    protocol::ICMP
                },
                ip(src),
                ip(dst),
            )
        };
        let cases: Vec<(&str, serde_json::Value, Flow, bool)> = vec![
            (
                "positive all() never matches an unknown address",
                json!({ "action": "Allow", "source": { "selector": "all()" } }),
                tcp("203.0.113.1", "192.0.2.30", 1),
                false,
            ),
            (
                "negated selector neither",
                json!({ "action": "Allow", "source": { "selector": "trust != 'x'" } }),
                tcp("203.0.113.1", "192.0.2.30", 1),
                false,
            ),
            (
                "a set member matches",
                json!({ "action": "Allow", "source": { "selector": "trust == 'partner'" } }),
                tcp("198.51.100.5", "192.0.2.30", 1),
                true,
            ),
            (
                "union of overlapping sets",
                json!({ "action": "Allow", "source": { "selector": "trust == 'wide'" } }),
                tcp("198.51.100.5", "192.0.2.30", 1),
                true,
            ),
            (
                "notSelector matches an unknown address",
                json!({ "action": "Allow", "source": { "notSelector": "trust == 'partner'" } }),
                tcp("203.0.113.1", "192.0.2.30", 1),
                true,
            ),
            (
                "notSelector excludes any containing set",
                json!({ "action": "Allow", "source": { "notSelector": "trust == 'wide'" } }),
                tcp("198.51.100.5", "192.0.2.30", 1),
                false,
            ),
            (
                "IPv4 nets never match IPv6",
                json!({ "action": "Allow", "source": { "nets": ["198.51.100.0/24"] } }),
                tcp("2001:db8::99", "2001:db8::30", 1),
                false,
            ),
            (
                "IPv4 notNets never match IPv6",
                json!({ "action": "Allow", "source": { "notNets": ["198.51.100.0/24"] } }),
                tcp("2001:db8::99", "2001:db8::30", 1),
                false,
            ),
            (
                "IPv4 notNets match other IPv4",
                json!({ "action": "Allow", "source": { "notNets": ["198.51.100.0/24"] } }),
                tcp("203.0.113.1", "192.0.2.30", 1),
                true,
            ),
            (
                "protocol ICMP never matches ICMPv6",
                json!({ "action": "Allow", "protocol": "ICMP" }),
                icmp("2001:db8::99", "2001:db8::30", Some(128), Some(0)),
                false,
            ),
            (
                "icmp type accepts any code",
                json!({ "action": "Allow", "protocol": "ICMP", "icmp": { "type": 3 } }),
                icmp(OUTSIDE, "192.0.2.30", Some(3), Some(13)),
                true,
            ),
            (
                "icmp type+code is exact",
                json!({ "action": "Allow", "protocol": "ICMP", "icmp": { "type": 3, "code": 4 } }),
                icmp(OUTSIDE, "192.0.2.30", Some(3), Some(13)),
                false,
            ),
            (
                "no icmpType: no type-specific match",
                json!({ "action": "Allow", "protocol": "ICMP", "icmp": { "type": 8 } }),
                icmp(OUTSIDE, "192.0.2.30", None, None),
                false,
            ),
            (
                "no icmpType: no notICMP match either",
                json!({ "action": "Allow", "protocol": "ICMP", "notICMP": { "type": 8 } }),
                icmp(OUTSIDE, "192.0.2.30", None, None),
                false,
            ),
            (
                "notICMP type+code excludes only that pair",
                json!({ "action": "Allow", "protocol": "ICMP", "notICMP": { "type": 3, "code": 4 } }),
                icmp(OUTSIDE, "192.0.2.30", Some(3), Some(5)),
                true,
            ),
            (
                "notICMP type+code excludes the pair",
                json!({ "action": "Allow", "protocol": "ICMP", "notICMP": { "type": 3, "code": 4 } }),
                icmp(OUTSIDE, "192.0.2.30", Some(3), Some(4)),
                false,
            ),
            (
                "notICMP type excludes every code",
                json!({ "action": "Allow", "protocol": "ICMP", "notICMP": { "type": 3 } }),
                icmp(OUTSIDE, "192.0.2.30", Some(3), Some(5)),
                false,
            ),
            (
                "notProtocol matches other protocols, ICMP included",
                json!({ "action": "Allow", "notProtocol": "TCP" }),
                icmp(OUTSIDE, "192.0.2.30", Some(8), Some(0)),
                true,
            ),
            (
                "notProtocol excludes its protocol",
                json!({ "action": "Allow", "notProtocol": "TCP" }),
                tcp(OUTSIDE, "192.0.2.30", 1),
                false,
            ),
            (
                "named port resolves per endpoint (db)",
                json!({ "action": "Allow", "protocol": "TCP", "destination": { "ports": ["sql"] } }),
                tcp(OUTSIDE, "192.0.2.30", 5432),
                true,
            ),
            (
                "named port resolves per endpoint (db2)",
                json!({ "action": "Allow", "protocol": "TCP", "destination": { "ports": ["sql"] } }),
                tcp(OUTSIDE, "192.0.2.31", 5432),
                false,
            ),
            (
                "named port per endpoint, other port",
                json!({ "action": "Allow", "protocol": "TCP", "destination": { "ports": ["sql"] } }),
                tcp(OUTSIDE, "192.0.2.31", 6432),
                true,
            ),
            (
                "named port per protocol",
                json!({ "action": "Allow", "destination": { "ports": ["sql"] } }),
                udp(OUTSIDE, "192.0.2.30", 5432),
                false,
            ),
            (
                "named port per protocol (UDP)",
                json!({ "action": "Allow", "destination": { "ports": ["sql"] } }),
                udp(OUTSIDE, "192.0.2.30", 5433),
                true,
            ),
            (
                "named port on an IPv6 address",
                json!({ "action": "Allow", "destination": { "ports": ["sql"] } }),
                tcp("2001:db8::99", "2001:db8::30", 5432),
                true,
            ),
            (
                "named port never matches an external address",
                json!({ "action": "Allow", "destination": { "ports": ["sql"] } }),
                tcp("192.0.2.30", OUTSIDE, 5432),
                false,
            ),
            (
                "named port limited by the side's selector",
                json!({ "action": "Allow", "destination": { "selector": "role == 'web'", "ports": ["sql", 5432] } }),
                tcp(OUTSIDE, "192.0.2.30", 5432),
                false,
            ),
            (
                "notPorts with a named port",
                json!({ "action": "Allow", "protocol": "TCP", "destination": { "notPorts": ["sql"] } }),
                tcp(OUTSIDE, "192.0.2.30", 5432),
                false,
            ),
            (
                "notPorts range",
                json!({ "action": "Allow", "protocol": "TCP", "destination": { "notPorts": ["1:1024"] } }),
                tcp(OUTSIDE, "192.0.2.30", 5432),
                true,
            ),
            (
                "source criteria test the source",
                json!({ "action": "Allow", "protocol": "TCP", "source": { "ports": [40000] } }),
                tcp(OUTSIDE, "192.0.2.30", 80),
                true,
            ),
            (
                "ipVersion 6 excludes IPv4",
                json!({ "action": "Allow", "ipVersion": 6 }),
                tcp(OUTSIDE, "192.0.2.30", 80),
                false,
            ),
        ];
        for (what, spec, flow, want) in cases {
            let rule = rule(spec);
            assert_eq!(
                match_rule(&r, &rule, &flow).is_ok(),
                want,
                "{what}: {:?}",
                match_rule(&r, &rule, &flow)
            );
        }
    }

    #[test]
    fn decision_serializes_to_the_eval_line() {
        let r = resolved(world(vec![gnp(
            "allow-web",
            json!({ "selector": "role == 'web'", "ingress": [{ "action": "Allow" }] }),
        )]));
        let d = evaluate(&r, &tcp(WORKLOAD, HOST, 80));
        let want = json!({"verdict":"allow","trace":[
            {"side":"egress","endpoint":"WorkloadEndpoint/prod/pod","stage":"profile","tier":null,"policy":null,"rule":null,"action":"allow","default":"workload-allow","logged":[]},
            {"side":"ingress","endpoint":"HostEndpoint/host","stage":"normal","tier":"default","policy":"GlobalNetworkPolicy/allow-web","rule":0,"action":"allow","logged":[]},
        ]});
        let line = d.to_json_line();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            want
        );
        assert!(line.starts_with(r#"{"verdict":"allow","trace":[{"side":"egress","endpoint":"#));
        let back: Decision = serde_json::from_str(&line).unwrap();
        assert_eq!(back, d);
        let stages = [
            (TraceStage::Failsafe, "failsafe"),
            (TraceStage::Untracked, "untracked"),
            (TraceStage::PreDnat, "preDNAT"),
            (TraceStage::Normal, "normal"),
            (TraceStage::Profile, "profile"),
        ];
        for (stage, name) in stages {
            assert_eq!(serde_json::to_value(stage).unwrap(), json!(name));
        }
        let defaults = [
            (DefaultReason::TierEnd, "tier-end"),
            (DefaultReason::ProfilesNoMatch, "profiles-no-match"),
            (DefaultReason::WorkloadAllow, "workload-allow"),
            (DefaultReason::HostDeny, "host-deny"),
            (DefaultReason::Failsafe, "failsafe"),
            (DefaultReason::UnmatchedTraffic, "unmatched-traffic"),
        ];
        for (reason, name) in defaults {
            assert_eq!(serde_json::to_value(reason).unwrap(), json!(name));
        }
    }
}
