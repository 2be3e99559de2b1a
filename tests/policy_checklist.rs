//! SPEC §8, the corner cases an implementer is likely to get wrong: one test per item, each a
//! small policy directory (inline YAML, or a fixture under `tests/fixtures/checklist/`) and the
//! verdicts and deciding rules the reference evaluator must reach. Items about the selector
//! language or validation assert through `Selector::parse` and `model::validate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use portcullis::model::{Limits, Model, Problem, Settings, load, load_model, validate};
use portcullis::policy::{
    Decision, DefaultReason, Flow, Resolved, TraceSide, TraceStage, Verdict, evaluate, resolve,
};
use portcullis::selector::Selector;

// ---------------------------------------------------------------------------------------------
// The shared world: two namespaces, Kubernetes pods and a non-Kubernetes workload, a host,
// a global and a namespaced network set. Tests add policies to it.

const POD_API: &str = "192.0.2.10"; // prod, app=api, k8s, named port http=TCP 8080
const POD_WEB: &str = "192.0.2.11"; // prod, app=web, k8s, named port http=TCP 8081
const DEV_API: &str = "192.0.2.12"; // dev, app=api, k8s
const VM_API: &str = "192.0.2.13"; // prod, app=api, orchestrator openstack
const HOST: &str = "203.0.113.10"; // HostEndpoint gw, role=gw
const PARTNER: &str = "198.51.100.5"; // in GlobalNetworkSet partners (trust=partner)
const EXT_SET: &str = "198.51.100.70"; // in NetworkSet prod/ext (kind=ext)
const OUTSIDE: &str = "198.51.100.200"; // in no entity

const WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels:
    env: prod
---
apiVersion: v1
kind: Namespace
metadata:
  name: dev
  labels:
    env: dev
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: api
  namespace: prod
  labels:
    app: api
spec:
  orchestrator: k8s
  node: node1
  interfaceName: cali10
  ipNetworks: ["192.0.2.10/32"]
  ports:
    - name: http
      port: 8080
      protocol: TCP
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: web
  namespace: prod
  labels:
    app: web
spec:
  orchestrator: k8s
  node: node1
  interfaceName: cali11
  ipNetworks: ["192.0.2.11/32"]
  ports:
    - name: http
      port: 8081
      protocol: TCP
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: api
  namespace: dev
  labels:
    app: api
spec:
  orchestrator: k8s
  node: node1
  interfaceName: cali12
  ipNetworks: ["192.0.2.12/32"]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: vm
  namespace: prod
  labels:
    app: api
spec:
  orchestrator: openstack
  node: node1
  interfaceName: tap13
  ipNetworks: ["192.0.2.13/32"]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: gw
  labels:
    role: gw
spec:
  node: gw
  expectedIPs: ["203.0.113.10"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: partners
  labels:
    trust: partner
spec:
  nets: ["198.51.100.0/26"]
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata:
  name: ext
  namespace: prod
  labels:
    kind: ext
spec:
  nets: ["198.51.100.64/26"]
"#;

fn limits() -> Limits {
    Limits::default()
}

/// Every load and validation problem of one YAML text.
fn problems_of(yaml: &str) -> Vec<Problem> {
    let (resources, mut problems) = load::load_str("checklist.yaml", yaml, &limits());
    problems.extend(validate::validate(&resources, &limits()));
    problems
}

/// A valid model from YAML text (the test fails on any problem).
fn model_of(yaml: &str) -> Model {
    let (resources, mut problems) = load::load_str("checklist.yaml", yaml, &limits());
    problems.extend(validate::validate(&resources, &limits()));
    assert!(problems.is_empty(), "unexpected problems: {problems:#?}");
    let settings = Settings::from_resources(&resources).expect("settings");
    Model {
        resources,
        settings,
    }
}

/// The shared world plus `extra` resources, resolved.
fn world(extra: &str) -> Resolved {
    resolve(&model_of(&format!("{WORLD}\n---\n{extra}"))).expect("resolves")
}

fn fixture(name: &str) -> Resolved {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checklist")
        .join(name);
    let model = load_model(&dir, &limits()).unwrap_or_else(|p| panic!("{name}: {p:#?}"));
    resolve(&model).expect("resolves")
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn tcp(src: &str, dst: &str, port: u16) -> Flow {
    Flow::tcp(ip(src), 40000, ip(dst), port)
}

fn udp(src: &str, dst: &str, port: u16) -> Flow {
    Flow::udp(ip(src), 40000, ip(dst), port)
}

fn icmp(src: &str, dst: &str, icmp_type: u8, code: u8) -> Flow {
    Flow::icmp(ip(src), ip(dst), icmp_type, code)
}

/// How one side was decided: (action, deciding policy and rule, or the default).
#[derive(Debug, PartialEq)]
enum How {
    Rule(Verdict, &'static str, usize),
    Default(Verdict, DefaultReason),
}

fn how(decision: &Decision, side: TraceSide) -> How {
    let t = decision
        .side(side)
        .unwrap_or_else(|| panic!("no {side:?} side in {decision:?}"));
    match (&t.policy, t.rule, t.default) {
        (Some(policy), Some(rule), None) => How::Rule(t.action, leak(policy), rule),
        (None, None, Some(reason)) => How::Default(t.action, reason),
        _ => panic!("inconsistent trace entry {t:?}"),
    }
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

fn ingress(r: &Resolved, flow: Flow) -> How {
    how(&evaluate(r, &flow), TraceSide::Ingress)
}

fn egress(r: &Resolved, flow: Flow) -> How {
    how(&evaluate(r, &flow), TraceSide::Egress)
}

fn verdict(r: &Resolved, flow: Flow) -> Verdict {
    evaluate(r, &flow).verdict
}

use How::{Default, Rule};
use Verdict::{Allow, Deny};

const TIER_END: DefaultReason = DefaultReason::TierEnd;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

fn matches(selector: &str, pairs: &[(&str, &str)]) -> bool {
    Selector::parse(selector)
        .unwrap_or_else(|e| panic!("{selector:?}: {e}"))
        .matches(&labels(pairs))
}

/// Whether some problem names a field containing `field`.
fn has_problem_at(problems: &[Problem], field: &str) -> bool {
    problems.iter().any(|p| p.field.contains(field))
}

// ---------------------------------------------------------------------------------------------

#[test]
fn checklist_01_selector_newline_is_error() {
    for bad in [
        "a == 'x'\n",
        "a == 'x'\r",
        "a == 'x'\r\n",
        "a ==\n'x'",
        "has(a)\u{0c}",
    ] {
        assert!(Selector::parse(bad).is_err(), "{bad:?} parsed");
    }
    assert!(Selector::parse(" \ta == 'x'\t ").is_ok());
    // A YAML literal block keeps the trailing newline: invalid. A folded `>-` block is fine.
    let policy = |style: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: {style}\n    role == 'db'\n"
        )
    };
    assert!(has_problem_at(&problems_of(&policy("|")), "spec.selector"));
    assert!(problems_of(&policy(">-")).is_empty());
}

#[test]
fn checklist_02_string_literals_have_no_escapes() {
    assert!(Selector::parse(r#"a == "a\"b""#).is_err());
    assert!(matches(r#"a == "a\b""#, &[("a", r"a\b")]));
    assert!(matches(r#"a == 'say "hi"'"#, &[("a", r#"say "hi""#)]));
    assert!(matches(r#"a == "it's""#, &[("a", "it's")]));
    assert!(matches("a == ''", &[("a", "")]));
}

#[test]
fn checklist_03_not_binds_tighter_than_equals() {
    assert!(matches("!a == 'x'", &[]));
    assert!(matches("!a == 'x'", &[("a", "y")]));
    assert!(!matches("!a == 'x'", &[("a", "x")]));
    assert!(!matches("!a == 'x' && b == 'y'", &[("b", "z")]));
    assert!(matches("!a == 'x' && b == 'y'", &[("b", "y")]));
    assert!(matches("!!a == 'x'", &[("a", "x")]));
}

#[test]
fn checklist_04_missing_labels_make_negations_true() {
    let absent: &[(&str, &str)] = &[];
    for (selector, when_absent) in [
        ("k != 'v'", true),
        ("k not in {'v'}", true),
        ("k == 'v'", false),
        ("k in {'v'}", false),
        ("k contains 'v'", false),
        ("k starts with 'v'", false),
        ("k ends with 'v'", false),
        ("has(k)", false),
    ] {
        assert_eq!(matches(selector, absent), when_absent, "{selector}");
    }
    assert!(matches("has(k)", &[("k", "")]));
    assert!(matches("k contains ''", &[("k", "abc")]));
}

#[test]
fn checklist_05_operator_words_only_after_a_label() {
    assert!(matches(r#"not in {"x"}"#, &[("not", "x")]));
    assert!(!matches(r#"not in {"x"}"#, &[]));
    assert!(matches("a startswith 'x'", &[("a", "xyz")]));
    assert!(matches("a endswith 'z'", &[("a", "xyz")]));
    assert!(matches("a notin {'x'}", &[("a", "y")]));
    assert!(matches(r#"a in{"x"}"#, &[("a", "x")]));
    assert!(matches("has == 'x'", &[("has", "x")]));
    for bad in [
        "has (a)",
        "starts with 'x'",
        "a inx {'x'}",
        "HAS(a)",
        "a !== 'x'",
    ] {
        assert!(Selector::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn checklist_06_sets_allow_a_trailing_comma_and_may_be_empty() {
    assert!(matches("a in {'x', 'y',}", &[("a", "y")]));
    assert!(!matches("a in {}", &[("a", "")]));
    assert!(!matches("a in {}", &[]));
    assert!(matches("a not in {}", &[("a", "x")]));
    assert!(matches("a not in {}", &[]));
    for bad in ["a in {,}", "a in {'a' 'b'}", "a in {x}"] {
        assert!(Selector::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn checklist_07_positive_selectors_never_match_unknown_addresses() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: from-selected
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: all()
      destination:
        ports: [80]
    - action: Allow
      protocol: TCP
      source:
        selector: role != 'x'
      destination:
        ports: [81]
    - action: Allow
      protocol: TCP
      source:
        notSelector: trust == 'partner'
      destination:
        ports: [82]
"#,
    );
    let p = "GlobalNetworkPolicy/from-selected";
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 80)),
        Default(Deny, TIER_END)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 81)),
        Default(Deny, TIER_END)
    );
    assert_eq!(ingress(&r, tcp(POD_WEB, POD_API, 80)), Rule(Allow, p, 0));
    assert_eq!(ingress(&r, tcp(PARTNER, POD_API, 81)), Rule(Allow, p, 1));
    // notSelector does match an address no entity contains.
    assert_eq!(ingress(&r, tcp(OUTSIDE, POD_API, 82)), Rule(Allow, p, 2));
    assert_eq!(
        ingress(&r, tcp(PARTNER, POD_API, 82)),
        Default(Deny, TIER_END)
    );
}

#[test]
fn checklist_08_network_sets_match_by_containment_as_a_union() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: wide
  labels:
    trust: wide
spec:
  nets: ["198.51.100.0/24"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: from-sets
spec:
  selector: role == 'gw'
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: trust == 'wide'
      destination:
        ports: [80]
    - action: Allow
      protocol: TCP
      source:
        selector: trust == 'partner'
      destination:
        ports: [81]
"#,
    );
    let p = "GlobalNetworkPolicy/from-sets";
    // PARTNER is in both sets; the narrower one does not "own" it.
    assert_eq!(ingress(&r, tcp(PARTNER, HOST, 80)), Rule(Allow, p, 0));
    assert_eq!(ingress(&r, tcp(PARTNER, HOST, 81)), Rule(Allow, p, 1));
    assert_eq!(ingress(&r, tcp(OUTSIDE, HOST, 80)), Rule(Allow, p, 0));
    assert_eq!(ingress(&r, tcp(OUTSIDE, HOST, 81)), Default(Deny, TIER_END));
    assert_eq!(
        ingress(&r, tcp("203.0.113.99", HOST, 80)),
        Default(Deny, TIER_END)
    );
}

#[test]
fn checklist_09_namespaced_rule_selectors_stay_in_the_namespace() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: not-web
  namespace: prod
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      protocol: TCP
      source:
        notSelector: app == 'web'
      destination:
        ports: [80]
    - action: Allow
      protocol: TCP
      source:
        selector: trust == 'partner' || role == 'gw'
      destination:
        ports: [81]
    - action: Allow
      protocol: TCP
      source:
        selector: trust == 'partner' || role == 'gw'
        namespaceSelector: global()
      destination:
        ports: [82]
"#,
    );
    let p = "NetworkPolicy/prod/not-web";
    let cases = [
        (VM_API, 80, Rule(Allow, p, 0)),
        (EXT_SET, 80, Rule(Allow, p, 0)),
        (POD_WEB, 80, Default(Deny, TIER_END)),
        (DEV_API, 80, Default(Deny, TIER_END)),
        (OUTSIDE, 80, Default(Deny, TIER_END)),
        (PARTNER, 80, Default(Deny, TIER_END)),
        (HOST, 80, Default(Deny, TIER_END)),
        (PARTNER, 81, Default(Deny, TIER_END)),
        (HOST, 81, Default(Deny, TIER_END)),
        (PARTNER, 82, Rule(Allow, p, 2)),
        (HOST, 82, Rule(Allow, p, 2)),
    ];
    for (src, port, want) in cases {
        assert_eq!(
            ingress(&r, tcp(src, POD_API, port)),
            want,
            "from {src} port {port}"
        );
    }
}

#[test]
fn checklist_10_namespace_selector_all_and_global() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: by-namespace
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      protocol: TCP
      source:
        namespaceSelector: all()
      destination:
        ports: [80]
    - action: Allow
      protocol: TCP
      source:
        namespaceSelector: global( )
      destination:
        ports: [81]
    - action: Allow
      protocol: TCP
      source:
        namespaceSelector: env == 'dev'
      destination:
        ports: [82]
"#,
    );
    let p = "GlobalNetworkPolicy/by-namespace";
    let cases = [
        (POD_WEB, 80, Rule(Allow, p, 0)),
        (DEV_API, 80, Rule(Allow, p, 0)),
        (EXT_SET, 80, Rule(Allow, p, 0)),
        (HOST, 80, Default(Deny, TIER_END)),
        (PARTNER, 80, Default(Deny, TIER_END)),
        (OUTSIDE, 80, Default(Deny, TIER_END)),
        (HOST, 81, Rule(Allow, p, 1)),
        (PARTNER, 81, Rule(Allow, p, 1)),
        (POD_WEB, 81, Default(Deny, TIER_END)),
        (EXT_SET, 81, Default(Deny, TIER_END)),
        (OUTSIDE, 81, Default(Deny, TIER_END)),
        (DEV_API, 82, Rule(Allow, p, 2)),
        (POD_WEB, 82, Default(Deny, TIER_END)),
    ];
    for (src, port, want) in cases {
        assert_eq!(
            ingress(&r, tcp(src, POD_API, port)),
            want,
            "from {src} port {port}"
        );
    }
}

#[test]
fn checklist_11_np_never_selects_hosts_or_other_namespaces_and_knp_only_k8s_pods() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: deny-everything
  namespace: prod
spec:
  order: 1
  selector: all()
  ingress:
    - action: Deny
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-everything
spec:
  order: 100
  selector: all()
  ingress:
    - action: Allow
"#,
    );
    let np = "NetworkPolicy/prod/deny-everything";
    let gnp = "GlobalNetworkPolicy/allow-everything";
    // The NP selects every workload of prod, Kubernetes or not ...
    assert_eq!(ingress(&r, tcp(OUTSIDE, POD_API, 80)), Rule(Deny, np, 0));
    assert_eq!(ingress(&r, tcp(OUTSIDE, VM_API, 80)), Rule(Deny, np, 0));
    // ... but never a host endpoint or a workload of another namespace.
    assert_eq!(ingress(&r, tcp(OUTSIDE, HOST, 80)), Rule(Allow, gnp, 0));
    assert_eq!(ingress(&r, tcp(OUTSIDE, DEV_API, 80)), Rule(Allow, gnp, 0));

    let r = world(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: isolate-pods
  namespace: prod
spec:
  podSelector:
    matchLabels:
      app: api
  policyTypes: [Ingress]
"#,
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 80)),
        Default(Deny, TIER_END)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, VM_API, 80)),
        Default(Allow, DefaultReason::WorkloadAllow)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, DEV_API, 80)),
        Default(Allow, DefaultReason::WorkloadAllow)
    );
}

#[test]
fn checklist_12_types_default_from_rules_and_explicit_types_win() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: no-rules
spec:
  selector: app == 'api' && projectcalico.org/namespace == 'prod'
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: egress-only
spec:
  selector: app == 'web'
  egress:
    - action: Allow
      protocol: TCP
      destination:
        ports: [443]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: typed-ingress
spec:
  selector: projectcalico.org/namespace == 'dev'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      destination:
        ports: [80]
  egress:
    - action: Deny
"#,
    );
    // A policy with no rules governs ingress only: ingress isolated, egress untouched.
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 80)),
        Default(Deny, TIER_END)
    );
    assert_eq!(
        egress(&r, tcp(POD_API, OUTSIDE, 80)),
        Default(Allow, DefaultReason::WorkloadAllow)
    );
    // Egress rules only: egress governed, ingress untouched.
    assert_eq!(
        egress(&r, tcp(POD_WEB, OUTSIDE, 443)),
        Rule(Allow, "GlobalNetworkPolicy/egress-only", 0)
    );
    assert_eq!(
        egress(&r, tcp(POD_WEB, OUTSIDE, 80)),
        Default(Deny, TIER_END)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_WEB, 80)),
        Default(Allow, DefaultReason::WorkloadAllow)
    );
    // Explicit types: the egress Deny rule is ignored.
    assert_eq!(
        egress(&r, tcp(DEV_API, OUTSIDE, 80)),
        Default(Allow, DefaultReason::WorkloadAllow)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, DEV_API, 80)),
        Rule(Allow, "GlobalNetworkPolicy/typed-ingress", 0)
    );
}

#[test]
fn checklist_13_a_selecting_policy_isolates_even_with_only_deny_rules() {
    let deny_only = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-redis
spec:
  order: 1
  selector: app == 'api'
  ingress:
    - action: Deny
      protocol: TCP
      destination:
        ports: [6379]
"#;
    let r = world(deny_only);
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 6379)),
        Rule(Deny, "GlobalNetworkPolicy/deny-redis", 0)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 80)),
        Default(Deny, TIER_END)
    );
    // A non-matching policy does not deny by itself: the next one in the tier still runs.
    let r = world(&format!(
        "{deny_only}\n---\n{}",
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-web
spec:
  order: 2
  selector: app == 'api'
  ingress:
    - action: Allow
      protocol: TCP
      destination:
        ports: [80, 6379]
"#
    ));
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 80)),
        Rule(Allow, "GlobalNetworkPolicy/allow-web", 0)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 6379)),
        Rule(Deny, "GlobalNetworkPolicy/deny-redis", 0)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 81)),
        Default(Deny, TIER_END)
    );
}

#[test]
fn checklist_14_pass_goes_to_the_next_applicable_tier_then_profiles() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: first
spec:
  order: 1
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: second
spec:
  order: 2
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: first.pass
spec:
  tier: first
  selector: all()
  ingress:
    - action: Log
    - action: Pass
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: second.nobody
spec:
  tier: second
  selector: app == 'nobody'
  ingress:
    - action: Deny
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-80
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      protocol: TCP
      destination:
        ports: [80]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: pass-first
spec:
  ingress:
    - action: Log
    - action: Pass
      protocol: TCP
    - action: Deny
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: allow-tcp
spec:
  ingress:
    - action: Allow
      protocol: TCP
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: profiled
  namespace: prod
  labels:
    app: profiled
spec:
  orchestrator: k8s
  interfaceName: cali20
  ipNetworks: ["192.0.2.20"]
  profiles: [pass-first, allow-tcp]
"#,
    );
    // Passed by `first`, `second` does not apply, the default tier decides.
    let d = evaluate(&r, &tcp(OUTSIDE, POD_API, 80));
    assert_eq!(
        how(&d, TraceSide::Ingress),
        Rule(Allow, "GlobalNetworkPolicy/allow-80", 0)
    );
    assert_eq!(d.trace[0].logged.len(), 1, "Log never stops evaluation");
    assert_eq!(d.trace[0].logged[0].tier.as_deref(), Some("first"));
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 81)),
        Default(Deny, TIER_END)
    );
    // Pass in the last applicable tier: no profiles, a workload is allowed.
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_WEB, 81)),
        Default(Allow, DefaultReason::WorkloadAllow)
    );
    // ... and a host denied.
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, HOST, 81)),
        Default(Deny, DefaultReason::HostDeny)
    );
    // With profiles: Pass inside a profile moves on to the next profile.
    let d = evaluate(&r, &tcp(OUTSIDE, "192.0.2.20", 81));
    assert_eq!(
        how(&d, TraceSide::Ingress),
        Rule(Allow, "Profile/allow-tcp", 0)
    );
    assert_eq!(d.trace[0].stage, TraceStage::Profile);
    assert_eq!(d.trace[0].logged.len(), 2);
    assert_eq!(
        ingress(&r, udp(OUTSIDE, "192.0.2.20", 81)),
        Rule(Deny, "Profile/pass-first", 2)
    );
}

#[test]
fn checklist_15_tier_default_action_pass() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: soft
spec:
  order: 10
  defaultAction: Pass
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: soft.deny-redis
spec:
  tier: soft
  selector: all()
  ingress:
    - action: Deny
      protocol: TCP
      destination:
        ports: [6379]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-gw
spec:
  selector: role == 'gw'
  ingress:
    - action: Allow
"#,
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, HOST, 6379)),
        Rule(Deny, "GlobalNetworkPolicy/soft.deny-redis", 0)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, HOST, 80)),
        Rule(Allow, "GlobalNetworkPolicy/allow-gw", 0)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 80)),
        Default(Allow, DefaultReason::WorkloadAllow)
    );
}

#[test]
fn checklist_16_tier_order_is_numeric_with_default_at_one_million() {
    let r = fixture("16-tier-order");
    let names: Vec<&str> = r.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["t20", "t100", "default", "late", "unordered"]);
    let g = |name: &'static str| -> &'static str { leak(&format!("GlobalNetworkPolicy/{name}")) };
    let cases = [
        // Tier orders compare as numbers: t20 denies 81 before t100 could allow it.
        (81, Rule(Deny, g("t20.deny-81"), 0)),
        // The default tier (1 000 000) runs before `late` (2 000 000).
        (80, Rule(Deny, g("default-deny-80"), 0)),
        (82, Rule(Allow, g("late.allow"), 0)),
        // A tier without an order comes last.
        (83, Rule(Deny, g("unordered.deny"), 0)),
    ];
    for (port, want) in cases {
        assert_eq!(ingress(&r, tcp(OUTSIDE, HOST, port)), want, "port {port}");
    }
}

#[test]
fn checklist_17_unordered_policies_last_and_ties_by_plain_name() {
    let r = fixture("17-policy-order");
    let names: Vec<&str> = r.tiers[0]
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["o20", "o100", "a10", "a9", "b"]);
    let g = |name: &'static str| -> &'static str { leak(&format!("GlobalNetworkPolicy/{name}")) };
    let cases = [
        (81, Rule(Allow, g("o20"), 0)),
        // Orders compare as numbers: 20 before 100 (as strings "100" < "20").
        (82, Rule(Allow, g("o20"), 0)),
        // Every ordered policy before any unordered one: o100 denies 83 before b allows it.
        (83, Rule(Deny, g("o100"), 0)),
        // Among the unordered, plain byte-wise names: a10 before a9.
        (80, Rule(Deny, g("a10"), 0)),
        (84, Rule(Allow, g("b"), 0)),
    ];
    for (port, want) in cases {
        assert_eq!(ingress(&r, tcp(OUTSIDE, HOST, port)), want, "port {port}");
    }
}

#[test]
fn checklist_18_kubernetes_policy_conversion() {
    let r = fixture("18-knp");
    let k = |name: &'static str| -> &'static str {
        leak(&format!("KubernetesNetworkPolicy/prod/{name}"))
    };
    let cases = [
        // Ordered before the KNPs (999 < 1000): its Deny wins.
        (
            tcp(POD_WEB, POD_API, 7000),
            Rule(Deny, "GlobalNetworkPolicy/before-knp", 0),
        ),
        // Port without protocol means TCP.
        (tcp(POD_WEB, POD_API, 8080), Rule(Allow, k("from-web"), 0)),
        (udp(POD_WEB, POD_API, 8080), Default(Deny, TIER_END)),
        // A podSelector peer matches pods only.
        (tcp(PARTNER, POD_API, 8080), Default(Deny, TIER_END)),
        (tcp(HOST, POD_API, 8080), Default(Deny, TIER_END)),
        (tcp(EXT_SET, POD_API, 8080), Default(Deny, TIER_END)),
        (tcp(DEV_API, POD_API, 8080), Default(Deny, TIER_END)),
        // Absent `from`: anyone, external included.
        (tcp(OUTSIDE, POD_API, 80), Rule(Allow, k("open-80"), 0)),
        // ipBlock applies to pod addresses too, and `except` can exclude one.
        (tcp(DEV_API, POD_API, 9090), Rule(Allow, k("ipblock"), 0)),
        (tcp(POD_WEB, POD_API, 9090), Default(Deny, TIER_END)),
        // The unordered GNP Deny comes after every KNP.
        (tcp(POD_WEB, POD_API, 7001), Rule(Allow, k("from-web"), 1)),
    ];
    for (flow, want) in cases {
        assert_eq!(ingress(&r, flow.clone()), want, "{flow}");
    }
    let p = r.tiers.iter().find(|t| t.name == "default").unwrap();
    assert!(
        p.policies
            .iter()
            .filter(|p| p.name == "from-web")
            .all(|p| p.order == Some(1000.0))
    );
}

#[test]
fn checklist_19_knp_with_egress_rules_and_no_policy_types_isolates_ingress_too() {
    let r = world(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: egress-only
  namespace: prod
spec:
  podSelector:
    matchLabels:
      app: api
  egress:
    - to:
        - ipBlock:
            cidr: 198.51.100.0/24
      ports:
        - port: 443
"#,
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 80)),
        Default(Deny, TIER_END)
    );
    assert_eq!(
        egress(&r, tcp(POD_API, OUTSIDE, 443)),
        Rule(Allow, "KubernetesNetworkPolicy/prod/egress-only", 0)
    );
    assert_eq!(
        egress(&r, tcp(POD_API, OUTSIDE, 80)),
        Default(Deny, TIER_END)
    );
    assert_eq!(
        egress(&r, tcp(POD_API, "203.0.113.99", 443)),
        Default(Deny, TIER_END)
    );
}

#[test]
fn checklist_20_rules_with_nets_of_one_family_never_match_the_other() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: gw6
  labels:
    role: gw
spec:
  node: gw
  expectedIPs: ["2001:db8::10"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: families
spec:
  selector: role == 'gw'
  ingress:
    - action: Allow
      protocol: TCP
      source:
        notNets: ["192.0.2.0/24"]
      destination:
        ports: [80]
    - action: Allow
      protocol: TCP
      source:
        nets: ["198.51.100.0/24"]
      destination:
        ports: [81]
    - action: Allow
      protocol: ICMP
"#,
    );
    let p = "GlobalNetworkPolicy/families";
    assert_eq!(ingress(&r, tcp(OUTSIDE, HOST, 80)), Rule(Allow, p, 0));
    assert_eq!(
        ingress(&r, tcp("2001:db8:1::1", "2001:db8::10", 80)),
        Default(Deny, TIER_END)
    );
    assert_eq!(
        ingress(&r, tcp("2001:db8:1::1", "2001:db8::10", 81)),
        Default(Deny, TIER_END)
    );
    assert_eq!(ingress(&r, icmp(OUTSIDE, HOST, 8, 0)), Rule(Allow, p, 2));
    assert_eq!(
        ingress(&r, icmp("2001:db8:1::1", "2001:db8::10", 128, 0)),
        Default(Deny, TIER_END)
    );
}

#[test]
fn checklist_21_icmp_type_and_code_matching() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: icmp
spec:
  selector: role == 'gw'
  ingress:
    - action: Allow
      protocol: ICMP
      notICMP:
        type: 8
        code: 0
    - action: Allow
      protocol: ICMP
      icmp:
        type: 8
        code: 1
"#,
    );
    let p = "GlobalNetworkPolicy/icmp";
    assert_eq!(
        ingress(&r, icmp(OUTSIDE, HOST, 8, 0)),
        Default(Deny, TIER_END)
    );
    assert_eq!(ingress(&r, icmp(OUTSIDE, HOST, 8, 3)), Rule(Allow, p, 0));
    assert_eq!(ingress(&r, icmp(OUTSIDE, HOST, 3, 0)), Rule(Allow, p, 0));
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: unreachable
spec:
  selector: role == 'gw'
  ingress:
    - action: Allow
      protocol: ICMP
      icmp:
        type: 3
"#,
    );
    let p = "GlobalNetworkPolicy/unreachable";
    for code in [0, 4, 13] {
        assert_eq!(ingress(&r, icmp(OUTSIDE, HOST, 3, code)), Rule(Allow, p, 0));
    }
    assert_eq!(
        ingress(&r, icmp(OUTSIDE, HOST, 11, 0)),
        Default(Deny, TIER_END)
    );
    // A flow without icmpType never matches a type-specific rule.
    let untyped = Flow::bare(1, ip(OUTSIDE), ip(HOST));
    assert_eq!(ingress(&r, untyped), Default(Deny, TIER_END));
}

#[test]
fn checklist_22_named_ports_resolve_per_endpoint_and_protocol() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: http
spec:
  selector: has(app)
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      destination:
        ports: [http]
  egress:
    - action: Allow
      destination:
        ports: [http]
"#,
    );
    let p = "GlobalNetworkPolicy/http";
    assert_eq!(ingress(&r, tcp(OUTSIDE, POD_API, 8080)), Rule(Allow, p, 0));
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 8081)),
        Default(Deny, TIER_END)
    );
    assert_eq!(ingress(&r, tcp(OUTSIDE, POD_WEB, 8081)), Rule(Allow, p, 0));
    assert_eq!(
        ingress(&r, udp(OUTSIDE, POD_API, 8080)),
        Default(Deny, TIER_END)
    );
    assert_eq!(egress(&r, tcp(POD_API, POD_WEB, 8081)), Rule(Allow, p, 0));
    assert_eq!(
        egress(&r, tcp(POD_API, OUTSIDE, 8080)),
        Default(Deny, TIER_END)
    );
    assert_eq!(
        egress(&r, tcp(POD_API, OUTSIDE, 8081)),
        Default(Deny, TIER_END)
    );
}

#[test]
fn checklist_23_profile_labels_inherited_own_labels_and_first_profile_win() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: p1
spec:
  labelsToApply:
    tier: gold
    zone: a
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: p2
spec:
  labelsToApply:
    zone: b
    color: green
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: labelled
  labels:
    tier: own
spec:
  node: h
  expectedIPs: ["203.0.113.23"]
  profiles: [p1, p2]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: wrong-labels
spec:
  order: 1
  selector: tier == 'gold' || zone == 'b'
  ingress:
    - action: Deny
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: right-labels
spec:
  order: 2
  selector: tier == 'own' && zone == 'a' && color == 'green'
  ingress:
    - action: Allow
  egress:
    - action: Deny
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: from-zone-a
spec:
  selector: role == 'gw'
  ingress:
    - action: Allow
      source:
        selector: zone == 'a'
"#,
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, "203.0.113.23", 80)),
        Rule(Allow, "GlobalNetworkPolicy/right-labels", 0)
    );
    // Rule selectors see inherited labels too.
    assert_eq!(
        ingress(&r, tcp("203.0.113.23", HOST, 80)),
        Rule(Allow, "GlobalNetworkPolicy/from-zone-a", 0)
    );
}

#[test]
fn checklist_24_endpoint_defaults() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: udp-only
spec:
  ingress:
    - action: Allow
      protocol: UDP
  egress:
    - action: Allow
      protocol: UDP
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: profiled
  namespace: prod
spec:
  orchestrator: k8s
  interfaceName: cali24
  ipNetworks: ["192.0.2.24"]
  profiles: [udp-only]
"#,
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, HOST, 80)),
        Default(Deny, DefaultReason::HostDeny)
    );
    assert_eq!(
        egress(&r, tcp(HOST, OUTSIDE, 80)),
        Default(Deny, DefaultReason::HostDeny)
    );
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, POD_API, 80)),
        Default(Allow, DefaultReason::WorkloadAllow)
    );
    assert_eq!(
        egress(&r, tcp(POD_API, OUTSIDE, 80)),
        Default(Allow, DefaultReason::WorkloadAllow)
    );
    assert_eq!(verdict(&r, tcp(POD_API, POD_WEB, 80)), Allow);
    assert_eq!(
        ingress(&r, tcp(OUTSIDE, "192.0.2.24", 80)),
        Default(Deny, DefaultReason::ProfilesNoMatch)
    );
    assert_eq!(
        ingress(&r, udp(OUTSIDE, "192.0.2.24", 80)),
        Rule(Allow, "Profile/udp-only", 0)
    );
}

#[test]
fn checklist_25_untracked_and_prednat_policies_ignore_workloads() {
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: untracked-deny
spec:
  selector: all()
  doNotTrack: true
  applyOnForward: true
  ingress:
    - action: Deny
      protocol: TCP
      destination:
        ports: [80]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: prednat-deny
spec:
  selector: all()
  preDNAT: true
  applyOnForward: true
  ingress:
    - action: Deny
      protocol: TCP
      destination:
        ports: [81]
"#,
    );
    let d = evaluate(&r, &tcp(OUTSIDE, HOST, 80));
    assert_eq!(
        how(&d, TraceSide::Ingress),
        Rule(Deny, "GlobalNetworkPolicy/untracked-deny", 0)
    );
    assert_eq!(d.trace[0].stage, TraceStage::Untracked);
    let d = evaluate(&r, &tcp(OUTSIDE, HOST, 81));
    assert_eq!(d.trace[0].stage, TraceStage::PreDnat);
    for port in [80, 81] {
        assert_eq!(
            ingress(&r, tcp(OUTSIDE, POD_API, port)),
            Default(Allow, DefaultReason::WorkloadAllow)
        );
    }
    // Both need applyOnForward: true; preDNAT may not have egress.
    let gnp = |body: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: all()\n{body}"
        )
    };
    assert!(has_problem_at(
        &problems_of(&gnp("  doNotTrack: true\n  ingress:\n    - action: Deny\n")),
        "applyOnForward"
    ));
    assert!(has_problem_at(
        &problems_of(&gnp("  preDNAT: true\n  ingress:\n    - action: Deny\n")),
        "applyOnForward"
    ));
    assert!(
        !problems_of(&gnp(
            "  preDNAT: true\n  applyOnForward: true\n  egress:\n    - action: Deny\n"
        ))
        .is_empty()
    );
    assert!(
        problems_of(&gnp(
            "  preDNAT: true\n  applyOnForward: true\n  ingress:\n    - action: Deny\n"
        ))
        .is_empty()
    );
}

#[test]
fn checklist_26_names_are_case_sensitive_per_api_version() {
    let v3 = |rule: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - {rule}\n"
        )
    };
    let v1 = |rule: &str| {
        format!(
            "apiVersion: v1\nkind: policy\nmetadata:\n  name: Allow_X.v2\nspec:\n  ingress:\n    - {rule}\n"
        )
    };
    let cases = [
        (v3("action: allow"), Some("action")),
        (v3("action: Reject"), Some("action")),
        (v3("{action: Allow, protocol: tcp}"), Some("protocol")),
        (
            v3("{action: Allow, protocol: UDPLite, destination: {ports: [80]}}"),
            Some("ports"),
        ),
        (
            v3("{action: Allow, protocol: ICMP, icmp: {type: 255}}"),
            Some("icmp"),
        ),
        (
            v3("{action: Allow, protocol: ICMP, icmp: {type: 254, code: 255}}"),
            None,
        ),
        (
            v3("{action: Allow, protocol: TCP, destination: {ports: [80]}}"),
            None,
        ),
        (
            v1("{action: allow, protocol: tcp, destination: {ports: [80]}}"),
            None,
        ),
        (v1("{action: Allow}"), Some("action")),
        (v1("{action: allow, protocol: TCP}"), Some("protocol")),
    ];
    for (yaml, field) in cases {
        let problems = problems_of(&yaml);
        match field {
            Some(field) => assert!(has_problem_at(&problems, field), "{yaml}\n{problems:#?}"),
            None => assert!(problems.is_empty(), "{yaml}\n{problems:#?}"),
        }
    }
    let types = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  types: [ingress]\n";
    assert!(has_problem_at(&problems_of(types), "types"));
}

#[test]
fn checklist_27_rule_nets_strictly_masked_set_nets_not_and_dash_is_no_range() {
    let rule = |destination: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n    - action: Allow\n      protocol: TCP\n      destination: {destination}\n"
        )
    };
    assert!(has_problem_at(
        &problems_of(&rule("{nets: [192.0.2.5/24]}")),
        "nets"
    ));
    assert!(problems_of(&rule("{nets: [192.0.2.0/24, 192.0.2.5]}")).is_empty());
    assert!(has_problem_at(
        &problems_of(&rule("{ports: [\"8000-9000\"]}")),
        "ports"
    ));
    assert!(problems_of(&rule("{ports: [\"8000:9000\"]}")).is_empty());
    // A network set may be written non-canonically: 198.51.100.77/24 is the whole /24.
    let r = world(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: sloppy
  labels:
    sloppy: "yes"
spec:
  nets: ["203.0.113.77/24"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: from-sloppy
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source:
        selector: sloppy == 'yes'
"#,
    );
    assert_eq!(
        ingress(&r, tcp("203.0.113.1", POD_API, 80)),
        Rule(Allow, "GlobalNetworkPolicy/from-sloppy", 0)
    );
}
