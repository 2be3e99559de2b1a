//! Every YAML example of the seed documents (`/work/shared/seeds/`), each as a fixture directory
//! under `tests/fixtures/seeds/` with endpoints added, and a table of flows with the verdict
//! and how each side was decided.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use portcullis::model::{Limits, load_model};
use portcullis::policy::{Decision, Flow, evaluate, resolve};

/// One row: a flow written `PROTO SRC -> DST:PORT` (source port 40000), the verdict, and each
/// side that ran as `SIDE: ACTION by POLICY rule N` or `SIDE: ACTION by DEFAULT`, plus
/// `SIDE logged POLICY rule N` for Log rules hit.
type Row<'a> = (&'a str, &'a str, &'a [&'a str]);

fn check(fixture: &str, rows: &[Row<'_>]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seeds")
        .join(fixture);
    let model =
        load_model(&dir, &Limits::default()).unwrap_or_else(|p| panic!("{fixture}: {p:#?}"));
    let resolved = resolve(&model).unwrap_or_else(|p| panic!("{fixture}: {p:#?}"));
    for (flow, verdict, sides) in rows {
        let decision = evaluate(&resolved, &parse_flow(flow));
        assert_eq!(
            (decision.verdict.name(), describe(&decision)),
            (
                *verdict,
                sides.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
            ),
            "{fixture}: {flow}"
        );
    }
}

/// `tcp 192.0.2.11 -> 192.0.2.10:6379`, read through the `eval` input format.
fn parse_flow(text: &str) -> Flow {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [protocol, src, "->", dst] = parts[..] else {
        panic!("bad flow {text:?}")
    };
    let (dst, port) = dst.rsplit_once(':').unwrap();
    let line = format!(
        r#"{{"src":"{src}","dst":"{dst}","protocol":"{protocol}","srcPort":40000,"dstPort":{port}}}"#
    );
    Flow::from_json_line(&line).unwrap()
}

fn describe(decision: &Decision) -> Vec<String> {
    let mut lines = Vec::new();
    for t in &decision.trace {
        let side = serde_json::to_value(t.side).unwrap();
        let side = side.as_str().unwrap();
        let by = match (&t.policy, t.rule, t.default) {
            (Some(policy), Some(rule), _) => format!("{policy} rule {rule}"),
            (_, _, Some(reason)) => serde_json::to_value(reason)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned(),
            _ => "?".to_owned(),
        };
        lines.push(format!("{side}: {} by {by}", t.action.name()));
        for logged in &t.logged {
            lines.push(format!(
                "{side} logged {} rule {}",
                logged.policy, logged.rule
            ));
        }
    }
    lines
}

#[test]
fn seed_000_v1_policy_allow_tcp_6379() {
    let p = "ingress: allow by policy/allow-tcp-6379 rule 0";
    check(
        "v1-allow-tcp-6379",
        &[
            (
                "tcp 192.0.2.11 -> 192.0.2.10:6379",
                "allow",
                &["egress: allow by workload-allow", p],
            ),
            (
                "tcp 192.0.2.11 -> 192.0.2.10:5432",
                "deny",
                &[
                    "egress: allow by workload-allow",
                    "ingress: deny by tier-end",
                ],
            ),
            (
                "udp 192.0.2.11 -> 192.0.2.10:6379",
                "deny",
                &[
                    "egress: allow by workload-allow",
                    "ingress: deny by tier-end",
                ],
            ),
            (
                "tcp 192.0.2.12 -> 192.0.2.10:6379",
                "deny",
                &[
                    "egress: allow by workload-allow",
                    "ingress: deny by tier-end",
                ],
            ),
            (
                "tcp 198.51.100.7 -> 192.0.2.10:6379",
                "deny",
                &["ingress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.10 -> 198.51.100.7:443",
                "allow",
                &["egress: allow by policy/allow-tcp-6379 rule 0"],
            ),
            (
                "tcp 192.0.2.10 -> 192.0.2.11:80",
                "allow",
                &[
                    "egress: allow by policy/allow-tcp-6379 rule 0",
                    "ingress: allow by workload-allow",
                ],
            ),
        ],
    );
}

#[test]
fn seed_001_np_allow_tcp_6379() {
    let p = "ingress: allow by NetworkPolicy/production/allow-tcp-6379 rule 0";
    let wl = "egress: allow by workload-allow";
    check(
        "np-allow-tcp-6379",
        &[
            ("tcp 192.0.2.11 -> 192.0.2.10:6379", "allow", &[wl, p]),
            // Rule selectors of a NetworkPolicy stay in its namespace.
            (
                "tcp 192.0.2.21 -> 192.0.2.10:6379",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.12 -> 192.0.2.10:6379",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.11 -> 192.0.2.10:80",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
            (
                "tcp 198.51.100.7 -> 192.0.2.10:6379",
                "deny",
                &["ingress: deny by tier-end"],
            ),
            // Types default to Ingress: egress of red is not governed.
            ("tcp 192.0.2.10 -> 198.51.100.7:443", "allow", &[wl]),
        ],
    );
}

#[test]
fn seed_001_np_allow_tcp_6379_with_namespace_selector() {
    let wl = "egress: allow by workload-allow";
    check(
        "np-allow-tcp-6379-namespace-selector",
        &[
            (
                "tcp 192.0.2.21 -> 192.0.2.10:6379",
                "allow",
                &[
                    wl,
                    "ingress: allow by NetworkPolicy/production/allow-tcp-6379 rule 0",
                ],
            ),
            // The namespace selector replaces the policy's own namespace: production is square.
            (
                "tcp 192.0.2.11 -> 192.0.2.10:6379",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
        ],
    );
}

#[test]
fn seed_001_gnp_deny_blue() {
    let wl = "egress: allow by workload-allow";
    let p = "ingress: deny by GlobalNetworkPolicy/deny-blue rule 0";
    check(
        "gnp-deny-blue",
        &[
            ("tcp 192.0.2.11 -> 192.0.2.10:6379", "deny", &[wl, p]),
            ("tcp 192.0.2.21 -> 192.0.2.10:80", "deny", &[wl, p]),
            // The policy selects red for ingress, so red is isolated: the tier end denies.
            (
                "udp 192.0.2.11 -> 192.0.2.10:53",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.12 -> 192.0.2.10:80",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.10 -> 192.0.2.11:80",
                "allow",
                &[wl, "ingress: allow by workload-allow"],
            ),
        ],
    );
}

#[test]
fn seed_001_gnp_deny_circle_blue() {
    let wl = "egress: allow by workload-allow";
    check(
        "gnp-deny-circle-blue",
        &[
            (
                "tcp 192.0.2.21 -> 192.0.2.10:80",
                "deny",
                &[
                    wl,
                    "ingress: deny by GlobalNetworkPolicy/deny-circle-blue rule 0",
                ],
            ),
            (
                "tcp 192.0.2.11 -> 192.0.2.10:80",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
        ],
    );
}

#[test]
fn seed_001_np_allow_egress_external() {
    let p = "egress: allow by NetworkPolicy/production/allow-egress-external rule 0";
    check(
        "np-allow-egress-external",
        &[
            ("tcp 192.0.2.10 -> 203.0.113.5:443", "allow", &[p]),
            (
                "tcp 192.0.2.10 -> 198.51.100.7:443",
                "deny",
                &["egress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.10 -> 192.0.2.11:80",
                "deny",
                &[
                    "egress: deny by tier-end",
                    "ingress: allow by workload-allow",
                ],
            ),
            (
                "tcp 198.51.100.7 -> 192.0.2.10:80",
                "allow",
                &["ingress: allow by workload-allow"],
            ),
        ],
    );
}

#[test]
fn seed_001_order_10_before_20() {
    check(
        "gnp-order-10-vs-20",
        &[
            (
                "tcp 192.0.2.11 -> 192.0.2.10:80",
                "allow",
                &[
                    "egress: allow by workload-allow",
                    "ingress: allow by GlobalNetworkPolicy/allow-cluster-internal-ingress rule 0",
                ],
            ),
            (
                "tcp 198.51.100.7 -> 192.0.2.10:80",
                "deny",
                &["ingress: deny by GlobalNetworkPolicy/drop-other-ingress rule 0"],
            ),
        ],
    );
}

#[test]
fn seed_001_log_then_deny() {
    let wl = "egress: allow by workload-allow";
    check(
        "np-log-then-deny",
        &[
            (
                "tcp 192.0.2.11 -> 192.0.2.10:6379",
                "deny",
                &[
                    wl,
                    "ingress: deny by NetworkPolicy/production/allow-tcp-6379 rule 1",
                    "ingress logged NetworkPolicy/production/allow-tcp-6379 rule 0",
                ],
            ),
            // A frontend of another namespace is not selected: nothing logged.
            (
                "tcp 192.0.2.21 -> 192.0.2.10:6379",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
            (
                "udp 192.0.2.11 -> 192.0.2.10:53",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
            // Egress is listed in types with no egress rule: default deny.
            (
                "tcp 192.0.2.10 -> 198.51.100.7:443",
                "deny",
                &["egress: deny by tier-end"],
            ),
        ],
    );
}

#[test]
fn seed_003_knp_allow_same_namespace() {
    let wl = "egress: allow by workload-allow";
    check(
        "knp-allow-same-namespace",
        &[
            (
                "tcp 192.0.2.11 -> 192.0.2.10:80",
                "allow",
                &[
                    wl,
                    "ingress: allow by KubernetesNetworkPolicy/default/allow-same-namespace rule 0",
                ],
            ),
            (
                "tcp 192.0.2.21 -> 192.0.2.10:80",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.11 -> 192.0.2.10:443",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
            // A port without protocol means TCP.
            (
                "udp 192.0.2.11 -> 192.0.2.10:80",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
            (
                "tcp 198.51.100.7 -> 192.0.2.10:80",
                "deny",
                &["ingress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.10 -> 192.0.2.11:80",
                "allow",
                &[wl, "ingress: allow by workload-allow"],
            ),
        ],
    );
}

#[test]
fn seed_003_knp_allow_from_another_namespace() {
    let wl = "egress: allow by workload-allow";
    check(
        "knp-allow-other-namespace",
        &[
            (
                "tcp 192.0.2.21 -> 192.0.2.10:80",
                "allow",
                &[
                    wl,
                    "ingress: allow by KubernetesNetworkPolicy/default/allow-same-namespace rule 0",
                ],
            ),
            (
                "tcp 192.0.2.11 -> 192.0.2.10:80",
                "deny",
                &[wl, "ingress: deny by tier-end"],
            ),
        ],
    );
}

#[test]
fn seed_003_knp_allow_egress_same_namespace() {
    check(
        "knp-allow-egress-same-namespace",
        &[
            (
                "tcp 192.0.2.10 -> 192.0.2.11:80",
                "allow",
                &[
                    "egress: allow by KubernetesNetworkPolicy/default/allow-egress-same-namespace rule 0",
                    "ingress: allow by workload-allow",
                ],
            ),
            (
                "tcp 192.0.2.10 -> 192.0.2.21:80",
                "deny",
                &[
                    "egress: deny by tier-end",
                    "ingress: allow by workload-allow",
                ],
            ),
            (
                "tcp 192.0.2.10 -> 198.51.100.7:80",
                "deny",
                &["egress: deny by tier-end"],
            ),
            // No policyTypes and egress rules: the API server adds Ingress too.
            (
                "tcp 192.0.2.11 -> 192.0.2.10:80",
                "deny",
                &[
                    "egress: allow by workload-allow",
                    "ingress: deny by tier-end",
                ],
            ),
        ],
    );
}

#[test]
fn seed_003_knp_allow_egress_external() {
    let p = "egress: allow by KubernetesNetworkPolicy/default/allow-egress-external rule 0";
    check(
        "knp-allow-egress-external",
        &[
            ("tcp 192.0.2.11 -> 198.51.100.7:443", "allow", &[p]),
            // No ports: every protocol.
            ("udp 192.0.2.11 -> 198.51.100.7:53", "allow", &[p]),
            (
                "tcp 192.0.2.11 -> 203.0.113.5:443",
                "deny",
                &["egress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.10 -> 192.0.2.11:80",
                "deny",
                &[
                    "egress: allow by workload-allow",
                    "ingress: deny by tier-end",
                ],
            ),
        ],
    );
}

#[test]
fn seed_003_knp_default_deny() {
    check(
        "knp-default-deny",
        &[
            (
                "tcp 192.0.2.31 -> 192.0.2.32:80",
                "deny",
                &["egress: deny by tier-end", "ingress: deny by tier-end"],
            ),
            (
                "tcp 198.51.100.7 -> 192.0.2.31:80",
                "deny",
                &["ingress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.31 -> 198.51.100.7:80",
                "deny",
                &["egress: deny by tier-end"],
            ),
            (
                "tcp 192.0.2.10 -> 192.0.2.11:80",
                "allow",
                &[
                    "egress: allow by workload-allow",
                    "ingress: allow by workload-allow",
                ],
            ),
        ],
    );
}
