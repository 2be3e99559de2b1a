//! `explain`: the decision on one flow, for a person. It is the reference evaluator's own walk
//! with its narration recorded, so it cannot disagree with [`super::eval::evaluate`]: every
//! tier and policy considered in order, why each rule matched or which criterion failed first,
//! Pass and Log effects, tier ends, profiles, defaults, failsafe ports and the verdict.

use super::eval::{Decision, Narration, TraceSide, decide};
use super::flow::Flow;
use super::resolve::Resolved;

/// The explanation of one flow, as lines of text ending in `verdict: allow|deny`.
pub fn explain(resolved: &Resolved, flow: &Flow) -> String {
    explain_decision(resolved, flow).1
}

/// The decision on one flow together with its explanation.
pub fn explain_decision(resolved: &Resolved, flow: &Flow) -> (Decision, String) {
    let mut narration = Narration::recording();
    let decision = decide(resolved, flow, &mut narration);
    let mut text = format!("flow: {flow}\n");
    for (depth, line) in narration.into_lines() {
        text.push_str(&"  ".repeat(depth));
        text.push_str(&line);
        text.push('\n');
    }
    for entry in &decision.trace {
        // A Log rule sits in the rule list of the side that reached it, as in metrics.
        let direction = match entry.side {
            TraceSide::Ingress => "ingress ",
            TraceSide::Egress => "egress ",
            TraceSide::None => "",
        };
        for logged in &entry.logged {
            text.push_str(&format!(
                "logged by {}{} {direction}rule {}\n",
                logged.policy,
                logged
                    .tier
                    .as_deref()
                    .map(|t| format!(" (tier {t})"))
                    .unwrap_or_default(),
                logged.rule
            ));
        }
    }
    text.push_str(&format!("verdict: {}\n", decision.verdict.name()));
    (decision, text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::Resource;
    use crate::policy::eval::evaluate;
    use crate::policy::flow::protocol;
    use crate::policy::resolve::resolve_resources;
    use crate::policy::testing::{default_failsafe, ip, res};

    /// A small deployment touching every part of the walk: tiers with Pass and Log, a
    /// skipped tier, stages, profiles, named ports, network sets, failsafe ports.
    fn deployment() -> Vec<Resource> {
        vec![
            res("Namespace", "shop", &[("team", "blue")], json!({})),
            res("Tier", "security", &[], json!({ "order": 100 })),
            res("Tier", "unused", &[], json!({ "order": 200 })),
            res(
                "Profile",
                "base",
                &[],
                json!({ "ingress": [{ "action": "Allow", "protocol": "UDP" }] }),
            ),
            res(
                "GlobalNetworkSet",
                "blocklist",
                &[("threat", "yes")],
                json!({ "nets": ["198.51.100.200/29"] }),
            ),
            res(
                "HostEndpoint",
                "web",
                &[("role", "web")],
                json!({ "node": "n", "expectedIPs": ["203.0.113.10", "2001:db8:2::10"],
                "ports": [{ "name": "http", "port": 80, "protocol": "TCP" }] }),
            ),
            res(
                "HostEndpoint",
                "db",
                &[("role", "db")],
                json!({ "node": "n", "expectedIPs": ["203.0.113.20"], "profiles": ["base"] }),
            ),
            res(
                "WorkloadEndpoint",
                "shop/pod",
                &[("app", "api")],
                json!({ "orchestrator": "k8s", "interfaceName": "c0",
                "ipNetworks": ["203.0.113.40"] }),
            ),
            res(
                "GlobalNetworkPolicy",
                "security.block",
                &[],
                json!({ "tier": "security", "order": 1, "selector": "all()",
                "types": ["Ingress", "Egress"],
                "ingress": [{ "action": "Log", "protocol": "TCP", "destination": { "ports": [23] } },
                            { "action": "Deny", "source": { "selector": "threat == 'yes'" } },
                            { "action": "Pass" }],
                "egress": [{ "action": "Pass" }] }),
            ),
            res(
                "GlobalNetworkPolicy",
                "unused.none",
                &[],
                json!({ "tier": "unused", "selector": "role == 'nobody'" }),
            ),
            res(
                "GlobalNetworkPolicy",
                "pre",
                &[],
                json!({ "selector": "role == 'db'", "preDNAT": true, "applyOnForward": true,
                "ingress": [{ "action": "Deny", "source": { "nets": ["198.51.100.128/25"] } }] }),
            ),
            res(
                "GlobalNetworkPolicy",
                "web",
                &[],
                json!({ "order": 10, "selector": "role == 'web'",
                "ingress": [{ "action": "Allow", "protocol": "TCP", "destination": { "ports": ["http", 443] } },
                            { "action": "Allow", "protocol": "ICMP", "icmp": { "type": 8 } }] }),
            ),
            res(
                "NetworkPolicy",
                "shop/api",
                &[],
                json!({ "selector": "app == 'api'",
                "ingress": [{ "action": "Allow", "protocol": "TCP", "source": { "selector": "all()" } }] }),
            ),
            res(
                "KNP",
                "shop/k",
                &[],
                json!({ "podSelector": {}, "egress": [{ "ports": [{ "port": 53, "protocol": "UDP" }] }] }),
            ),
        ]
    }

    fn flows() -> Vec<Flow> {
        let addresses = [
            "203.0.113.10",
            "203.0.113.20",
            "203.0.113.40",
            "198.51.100.1",
            "198.51.100.201",
            "198.51.100.130",
            "192.0.2.99",
        ];
        let mut flows = Vec::new();
        for src in addresses {
            for dst in addresses {
                for port in [22, 23, 53, 80, 443, 8080] {
                    flows.push(Flow::tcp(ip(src), 40000, ip(dst), port));
                    flows.push(Flow::udp(ip(src), 40000, ip(dst), port));
                }
                flows.push(Flow::icmp(ip(src), ip(dst), 8, 0));
                flows.push(Flow::bare(protocol::ICMP, ip(src), ip(dst)));
                flows.push(Flow::bare(47, ip(src), ip(dst)));
            }
        }
        flows.push(Flow::tcp(ip("203.0.113.10"), 1, ip("2001:db8:2::10"), 80));
        flows.push(Flow::tcp(ip("2001:db8:1::1"), 1, ip("2001:db8:2::10"), 80));
        flows
    }

    /// Every decision on `flows()` for the deployment given.
    fn decisions(resources: &[Resource]) -> Vec<crate::policy::Decision> {
        let resolved = resolve_resources(resources, default_failsafe()).unwrap();
        flows().iter().map(|f| evaluate(&resolved, f)).collect()
    }

    #[test]
    fn directory_order_changes_nothing() {
        let original = decisions(&deployment());
        let mut reversed = deployment();
        reversed.reverse();
        assert_eq!(decisions(&reversed), original);
        let mut rotated = deployment();
        rotated.rotate_left(5);
        assert_eq!(decisions(&rotated), original);
    }

    #[test]
    fn an_unrelated_tier_that_passes_everything_changes_no_verdict() {
        let original = decisions(&deployment());
        let mut with_tier = deployment();
        with_tier.push(res("Tier", "first", &[], json!({ "order": 1 })));
        with_tier.push(res(
            "GlobalNetworkPolicy",
            "first.pass",
            &[],
            json!({
            "tier": "first", "selector": "all()", "types": ["Ingress", "Egress"],
            "ingress": [{ "action": "Pass" }], "egress": [{ "action": "Pass" }] }),
        ));
        let verdicts =
            |d: &[crate::policy::Decision]| d.iter().map(|d| d.verdict).collect::<Vec<_>>();
        assert_eq!(verdicts(&decisions(&with_tier)), verdicts(&original));
    }

    #[test]
    fn explanation_agrees_with_evaluate_on_many_flows() {
        let resolved = resolve_resources(&deployment(), default_failsafe()).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for flow in flows() {
            let reference = evaluate(&resolved, &flow);
            let (decision, text) = explain_decision(&resolved, &flow);
            assert_eq!(decision, reference, "{flow}");
            let last = text.lines().last().unwrap();
            assert_eq!(
                last,
                format!("verdict: {}", reference.verdict.name()),
                "{flow}\n{text}"
            );
            assert!(text.starts_with(&format!("flow: {flow}\n")));
            seen.insert(reference.verdict.name());
        }
        assert_eq!(seen.len(), 2, "the flows exercise both verdicts");
    }

    fn explained(flow: Flow) -> String {
        let resolved = resolve_resources(&deployment(), default_failsafe()).unwrap();
        explain(&resolved, &flow)
    }

    #[test]
    fn explanation_names_each_step() {
        let text = explained(Flow::tcp(
            ip("198.51.100.1"),
            40000,
            ip("203.0.113.10"),
            8080,
        ));
        for want in [
            "source 198.51.100.1 is not an endpoint: no egress side",
            "destination 203.0.113.10 is HostEndpoint/web: its ingress policy runs",
            "failsafe: no inbound failsafe port matches",
            "tier security (order 100), default action Deny",
            "policy GlobalNetworkPolicy/security.block (order 1)",
            "rule 0 (Log): no match: destination port 8080 not in 23",
            "rule 1 (Deny): no match: source 198.51.100.1 not in any entity selected by threat == \"yes\"",
            "rule 2 (Pass): matched",
            "Pass: skipping the rest of this tier",
            "tier unused: skipped, no normal policy selects this endpoint for ingress",
            "rule 0 (Allow): no match: destination port 8080 not in http,443",
            "rule 1 (Allow): no match: protocol tcp is not icmp",
            "end of tier default: default action Deny",
            "=> ingress deny: end of tier default",
            "verdict: deny",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn explanation_covers_failsafe_profiles_logs_and_stages() {
        let cases: Vec<(Flow, &[&str])> = vec![
            (
                Flow::tcp(ip("198.51.100.1"), 40000, ip("203.0.113.10"), 22),
                &[
                    "failsafe: inbound TCP port 22 admits this flow ahead of all policy",
                    "verdict: allow",
                ],
            ),
            (
                Flow::tcp(ip("198.51.100.1"), 40000, ip("203.0.113.10"), 23),
                &[
                    "rule 0 (Log): matched",
                    "logged; evaluation continues",
                    "logged by GlobalNetworkPolicy/security.block (tier security) ingress rule 0",
                ],
            ),
            (
                Flow::udp(ip("198.51.100.1"), 40000, ip("203.0.113.20"), 5000),
                &[
                    "preDNAT stage:",
                    "profile Profile/base",
                    "rule 0 (Allow): matched",
                    "verdict: allow",
                ],
            ),
            (
                Flow::udp(ip("198.51.100.130"), 40000, ip("203.0.113.20"), 5000),
                &[
                    "rule 0 (Deny): matched",
                    "=> ingress deny: GlobalNetworkPolicy/pre rule 0",
                ],
            ),
            (
                Flow::tcp(ip("203.0.113.40"), 40000, ip("198.51.100.1"), 80),
                &[
                    "egress of WorkloadEndpoint/shop/pod",
                    "policy KubernetesNetworkPolicy/shop/k (order 1000)",
                    "no match: protocol tcp is not udp",
                ],
            ),
            (
                Flow::tcp(ip("192.0.2.1"), 1, ip("192.0.2.2"), 80),
                &[
                    "neither address is an endpoint: unmatchedTrafficAction deny applies",
                    "verdict: deny",
                ],
            ),
            (
                Flow::tcp(ip("203.0.113.10"), 1, ip("2001:db8:2::10"), 80),
                &["different address families", "verdict: deny"],
            ),
        ];
        for (flow, wants) in cases {
            let text = explained(flow.clone());
            for want in wants {
                assert!(text.contains(want), "{flow}: missing {want:?} in:\n{text}");
            }
        }
    }
}
