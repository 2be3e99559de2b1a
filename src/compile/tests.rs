//! The compiled snapshot against the reference evaluator: a table of policy directories
//! written as YAML, each feature in its own case, each decided for a grid of flows (every
//! pair of interesting addresses, both families, across protocols, ports and ICMP types).
//! The compiled `Decision` must equal the reference `Decision` exactly, trace included.
//! A few structural checks follow (program sharing, the hot-path verdict, memory).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use super::{compile, evaluate, flow_key};
use crate::model::load::load_str;
use crate::model::validate::validate;
use crate::model::{Limits, Settings, load_model};
use crate::policy::resolve::{VerdictSettings, resolve_resources};
use crate::policy::{Flow, Resolved, evaluate as reference};
use crate::snapshot::{FlowOutcome, RuleAction, RuleDirection, SnapshotHandle};

/// Endpoints, sets and a profile most cases build on.
const WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: { name: prod, labels: { team: a } }
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: h1, labels: { role: web } }
spec:
  node: n1
  expectedIPs: ["192.0.2.10", "2001:db8::10"]
  ports:
    - { name: http, port: 80, protocol: TCP }
    - { name: dns, port: 53, protocol: UDP }
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: h2, labels: { role: web } }
spec:
  node: n2
  expectedIPs: ["192.0.2.11"]
  ports:
    - { name: http, port: 8080, protocol: TCP }
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: { name: db, labels: { role: db } }
spec:
  node: n3
  expectedIPs: ["192.0.2.20", "2001:db8::20"]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: { name: pod-a, namespace: prod, labels: { app: api } }
spec:
  orchestrator: k8s
  interfaceName: cali0
  serviceAccountName: sa1
  ipNetworks: ["192.0.2.30/32", "2001:db8::30/128"]
  ports:
    - { name: http, port: 8081, protocol: TCP }
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: { name: pod-b, namespace: prod, labels: { app: api } }
spec:
  orchestrator: k8s
  interfaceName: cali1
  serviceAccountName: sa1
  ipNetworks: ["192.0.2.31"]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: { name: pod-c, namespace: dev, labels: { app: web } }
spec:
  orchestrator: k8s
  interfaceName: cali2
  ipNetworks: ["192.0.2.40"]
  profiles: [p1, p2]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: { name: partners, labels: { trust: partner } }
spec:
  nets: ["198.51.100.0/26"]
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: { name: ext, namespace: prod, labels: { kind: ext } }
spec:
  nets: ["198.51.100.0/24", "2001:db8:ff::/48"]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: { name: p1 }
spec:
  ingress:
    - { action: Log, protocol: TCP }
    - { action: Pass, protocol: TCP, destination: { ports: [22] } }
    - { action: Deny, protocol: UDP }
  egress:
    - { action: Allow, protocol: UDP }
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: { name: p2 }
spec:
  ingress:
    - { action: Allow, protocol: TCP, destination: { ports: ["1:1000"] } }
"#;

/// One case per feature: (name, YAML added to the world, whether to add the world).
const CASES: &[(&str, &str, bool)] = &[
    ("no policy: endpoint and profile defaults", "", true),
    (
        "tier ends deny, Pass skips to the next applicable tier",
        r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: { name: security }
spec: { order: 100 }
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: { name: empty }
spec: { order: 200 }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: security.screen }
spec:
  tier: security
  order: 1
  selector: all()
  types: [Ingress, Egress]
  ingress:
    - { action: Deny, protocol: TCP, destination: { ports: [23] } }
    - { action: Pass, protocol: TCP }
    - { action: Pass, protocol: ICMP }
    - { action: Allow, protocol: UDP, destination: { ports: [53] } }
  egress:
    - { action: Pass }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: security.later }
spec:
  tier: security
  order: 2
  selector: role == 'web'
  ingress:
    - { action: Allow, protocol: UDP }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: empty.other }
spec:
  tier: empty
  selector: role == 'nothing'
  ingress: [{ action: Deny }]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: web }
spec:
  selector: role == 'web' || app == 'api'
  types: [Ingress, Egress]
  ingress:
    - { action: Allow, protocol: TCP, destination: { ports: [80, 443] } }
  egress:
    - { action: Deny, protocol: UDP }
"#,
        true,
    ),
    (
        "tier with defaultAction Pass, and Log never decides",
        r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: { name: soft }
spec: { order: 10, defaultAction: Pass }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: soft.log }
spec:
  tier: soft
  selector: all()
  types: [Ingress, Egress]
  ingress:
    - { action: Log }
    - { action: Log, protocol: TCP }
    - { action: Deny, protocol: TCP, destination: { ports: [25] } }
    - { action: Log, protocol: UDP }
    - { action: Pass, protocol: UDP }
    - { action: Log }
  egress:
    - { action: Log, destination: { nets: ["198.51.100.0/24"] } }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: after }
spec:
  order: 5
  selector: has(role)
  ingress:
    - { action: Log, protocol: UDP }
    - { action: Allow, protocol: TCP, destination: { ports: ["80:90"] } }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: deny-only }
spec:
  order: 6
  selector: app == 'api'
  ingress:
    - { action: Deny, protocol: UDP }
"#,
        true,
    ),
    (
        "host stages: untracked, preDNAT, normal; failsafe ports",
        r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: { name: default }
spec:
  failsafeInboundHostPorts:
    - { protocol: tcp, port: 22 }
    - { protocol: tcp, port: 179, net: "198.51.100.0/28" }
  failsafeOutboundHostPorts:
    - { protocol: udp, port: 53 }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: untracked }
spec:
  order: 1
  selector: has(role)
  doNotTrack: true
  applyOnForward: true
  types: [Ingress, Egress]
  ingress:
    - { action: Allow, protocol: UDP, destination: { ports: [123] } }
    - { action: Log, protocol: TCP }
    - { action: Deny, protocol: TCP, destination: { ports: [7] } }
  egress:
    - { action: Deny, protocol: UDP, destination: { ports: [9] } }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: pre }
spec:
  order: 2
  selector: role == 'web'
  preDNAT: true
  applyOnForward: true
  ingress:
    - { action: Deny, source: { nets: ["198.51.100.0/24"] } }
    - { action: Pass, protocol: TCP, destination: { ports: [8] } }
    - { action: Allow, protocol: TCP, destination: { ports: [8, 9] } }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: normal }
spec:
  order: 3
  selector: has(role) || has(app)
  ingress:
    - { action: Allow, protocol: TCP, destination: { ports: [80] } }
"#,
        true,
    ),
    (
        "named ports resolve per endpoint, per protocol, within the side's selector",
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: named }
spec:
  selector: all()
  types: [Ingress, Egress]
  ingress:
    - { action: Deny, protocol: TCP, source: { ports: [http] } }
    - { action: Allow, protocol: TCP, destination: { ports: [http], selector: role == 'web' } }
    - { action: Allow, destination: { ports: [dns] } }
    - { action: Allow, protocol: TCP, destination: { notPorts: [http, "1:79"] } }
    - { action: Allow, protocol: UDP, destination: { ports: [http, 9999] } }
  egress:
    - { action: Allow, protocol: TCP, destination: { ports: [http, "8000:8079"] } }
    - { action: Deny, protocol: UDP, destination: { notPorts: [dns] } }
"#,
        true,
    ),
    (
        "family rule: nets of one family never match the other; ipVersion; ICMP families",
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: family }
spec:
  selector: all()
  types: [Ingress, Egress]
  ingress:
    - { action: Deny, source: { notNets: ["203.0.113.0/24"] }, protocol: UDP }
    - { action: Allow, source: { nets: ["198.51.100.0/24"] } }
    - { action: Allow, ipVersion: 6, protocol: UDP }
    - { action: Allow, protocol: ICMP }
    - { action: Deny, destination: { notNets: ["2001:db8::30/128"] } }
  egress:
    - { action: Deny, notProtocol: ICMPv6, destination: { nets: ["2001:db8::/64"] } }
    - { action: Allow, notProtocol: TCP }
"#,
        true,
    ),
    (
        "selectors: union of overlapping sets, notSelector, namespace scoping",
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: { name: scoped, namespace: prod }
spec:
  selector: app == 'api'
  types: [Ingress, Egress]
  ingress:
    - { action: Deny, source: { notSelector: kind == 'ext' }, protocol: UDP }
    - { action: Allow, source: { selector: all() }, protocol: TCP }
    - { action: Allow, source: { namespaceSelector: global() }, protocol: UDP }
    - { action: Allow, source: { serviceAccounts: { names: [sa1] } } }
  egress:
    - { action: Allow, destination: { selector: trust == 'partner', namespaceSelector: global() } }
    - { action: Deny, destination: { notSelector: role == 'db' } }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: sets }
spec:
  selector: has(role)
  ingress:
    - { action: Deny, source: { selector: trust == 'partner' }, protocol: UDP }
    - { action: Allow, source: { selector: kind == 'ext' } }
    - { action: Allow, source: { selector: role == 'web', notSelector: has(nothing) } }
    - { action: Allow, source: { selector: "trust != 'x'" }, protocol: ICMP }
"#,
        true,
    ),
    (
        "ICMP types and codes",
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: icmp }
spec:
  selector: all()
  ingress:
    - { action: Deny, protocol: ICMP, icmp: { type: 3, code: 4 } }
    - { action: Allow, protocol: ICMP, icmp: { type: 3 } }
    - { action: Allow, protocol: ICMP, notICMP: { type: 8 } }
    - { action: Allow, protocol: ICMPv6, notICMP: { type: 1, code: 3 } }
    - { action: Log, protocol: ICMPv6, icmp: { type: 128 } }
    - { action: Allow, notProtocol: ICMP }
"#,
        true,
    ),
    (
        "ICMP criteria beside named ports without a protocol",
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: icmp-named }
spec:
  selector: all()
  ingress:
    - { action: Log, destination: { ports: [http] } }
    - { action: Deny, protocol: ICMP, icmp: { type: 8, code: 0 } }
    - { action: Allow, destination: { notPorts: [dns] } }
    - { action: Allow, protocol: ICMPv6, notICMP: { type: 128 } }
  egress:
    - { action: Deny, protocol: ICMP, notICMP: { type: 3 } }
    - { action: Allow, destination: { ports: [http] } }
    - { action: Allow, protocol: ICMP, icmp: { type: 3, code: 13 } }
"#,
        true,
    ),
    (
        "Kubernetes policies and unmatched traffic allowed",
        r#"
apiVersion: portcullis/v1
kind: GatewayConfiguration
metadata: { name: default }
spec: { unmatchedTrafficAction: Allow }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: k, namespace: prod }
spec:
  podSelector: { matchLabels: { app: api } }
  ingress:
    - from: [{ ipBlock: { cidr: 198.51.100.0/24, except: [198.51.100.0/28] } }]
      ports: [{ port: 80 }, { protocol: UDP, port: 53, endPort: 60 }]
    - from: [{ podSelector: {} }]
  egress:
    - to: [{ namespaceSelector: {} }]
"#,
        true,
    ),
];

fn limits() -> Limits {
    Limits::default()
}

/// Load, validate and resolve one YAML text; panics with the problems if it is invalid.
fn resolve_yaml(text: &str) -> Resolved {
    let (resources, mut problems) = load_str("test.yaml", text, &limits());
    problems.extend(validate(&resources, &limits()));
    assert!(problems.is_empty(), "invalid test YAML: {problems:#?}");
    let settings = Settings::from_resources(&resources).unwrap();
    resolve_resources(&resources, VerdictSettings::from_settings(&settings)).unwrap()
}

/// Addresses worth trying: every endpoint address, the first and last address of every set,
/// and addresses outside everything, in both families.
fn addresses(r: &Resolved) -> Vec<IpAddr> {
    let mut set: BTreeSet<IpAddr> = r.address_index().keys().copied().collect();
    for entity in &r.entities {
        for net in &entity.nets {
            set.insert(net.network());
            set.insert(net.broadcast());
        }
    }
    for extra in ["203.0.113.250", "198.51.100.3", "2001:db8:1::1", "10.0.0.1"] {
        set.insert(extra.parse().unwrap());
    }
    set.into_iter().collect()
}

/// Protocol/port/ICMP variants of a flow, given its addresses.
fn variants(src: IpAddr, dst: IpAddr, ports: &[u16]) -> Vec<Flow> {
    let mut flows = Vec::new();
    for &port in ports {
        flows.push(Flow::tcp(src, 40000, dst, port));
        flows.push(Flow::udp(src, 40000, dst, port));
    }
    // Source ports that are named ports somewhere.
    flows.push(Flow::tcp(src, 80, dst, 5000));
    flows.push(Flow::tcp(src, 8081, dst, 80));
    flows.push(Flow::with_ports(132, src, 1, dst, 80));
    flows.push(Flow::bare(47, src, dst));
    flows.push(Flow::bare(6, src, dst));
    for protocol in [1, 58] {
        for (t, c) in [
            (None, None),
            (Some(3), Some(4)),
            (Some(3), Some(13)),
            (Some(3), None),
            (Some(8), Some(0)),
            (Some(1), Some(3)),
            (Some(128), Some(0)),
            (None, Some(2)),
        ] {
            flows.push(Flow {
                icmp_type: t,
                icmp_code: c,
                ..Flow::bare(protocol, src, dst)
            });
        }
        // ICMP with ports: no packet has them, a flow given to `eval` may, and folding
        // ICMP type and code into the service key leaves the port out of it.
        for (port, t) in [(80, Some(8)), (53, None), (8081, Some(3))] {
            flows.push(Flow {
                dst_port: Some(port),
                icmp_type: t,
                icmp_code: t.map(|_| 0),
                ..Flow::bare(protocol, src, dst)
            });
        }
    }
    flows
}

/// Ports worth trying: the ones the cases mention and every named port number.
fn ports(r: &Resolved) -> Vec<u16> {
    let mut ports: BTreeSet<u16> = [
        1, 7, 8, 9, 22, 23, 25, 53, 60, 79, 80, 85, 90, 123, 179, 443, 999, 1000, 1001, 8000, 8079,
        9999, 65535,
    ]
    .into();
    for e in &r.endpoints {
        ports.extend(e.ports.iter().map(|p| p.port));
    }
    ports.into_iter().collect()
}

/// Every flow of the grid; returns how many were compared.
fn assert_same_decisions(name: &str, r: &Resolved) -> usize {
    assert_same_decisions_of(name, r, &compile(r, 1))
}

/// [`assert_same_decisions`] for a snapshot of `r` built in some other way.
fn assert_same_decisions_of(
    name: &str,
    r: &Resolved,
    snapshot: &crate::snapshot::Snapshot,
) -> usize {
    let addrs = addresses(r);
    let ports = ports(r);
    let mut compared = 0;
    for &src in &addrs {
        for &dst in &addrs {
            if src == dst {
                continue;
            }
            for flow in variants(src, dst, &ports) {
                let want = reference(r, &flow);
                let got = evaluate(snapshot, &flow);
                assert_eq!(got, want, "{name}: {flow:?}");
                let fast = snapshot.decide(&flow_key(&flow));
                assert_eq!(fast.allowed, want.is_allowed(), "{name}: {flow:?}");
                compared += 1;
            }
        }
    }
    compared
}

#[test]
fn compiled_decisions_equal_the_reference_for_every_case() {
    for &(name, yaml, with_world) in CASES {
        let text = if with_world {
            format!("{WORLD}\n---\n{yaml}")
        } else {
            yaml.to_owned()
        };
        let r = resolve_yaml(&text);
        let compared = assert_same_decisions(name, &r);
        assert!(compared > 1000, "{name}: only {compared} flows");
    }
}

#[test]
fn compiled_decisions_equal_the_reference_on_the_example_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let model = load_model(&dir, &limits()).unwrap();
    let r = crate::policy::resolve(&model).unwrap();
    assert_same_decisions("config/", &r);
}

#[test]
fn endpoints_with_the_same_policies_share_one_program() {
    let r = resolve_yaml(&format!("{WORLD}\n---\n{}", CASES[1].1));
    let snapshot = compile(&r, 7);
    let program = |addr: &str| {
        super::classify::address_entry(&snapshot, addr.parse().unwrap())
            .unwrap()
            .programs
    };
    // pod-a and pod-b: same labels, kind and profiles. h1 and h2: same labels, different
    // named ports (resolved per address, not per program).
    assert_eq!(program("192.0.2.30"), program("192.0.2.31"));
    assert_eq!(program("192.0.2.10"), program("192.0.2.11"));
    assert_ne!(program("192.0.2.10"), program("192.0.2.20"));
    assert_ne!(
        program("192.0.2.30"),
        program("192.0.2.40"),
        "profiles differ"
    );
    // Six endpoints, two directions: fewer programs than sides.
    assert!(
        snapshot.program_count() < 12,
        "{}",
        snapshot.program_count()
    );
    assert_eq!(snapshot.generation(), 7);
}

#[test]
fn the_hot_path_verdict_names_the_deciding_and_logged_rules() {
    let r = resolve_yaml(&format!("{WORLD}\n---\n{}", CASES[2].1));
    let snapshot = compile(&r, 1);
    let flow = Flow::udp(
        "203.0.113.250".parse().unwrap(),
        1,
        "192.0.2.10".parse().unwrap(),
        53,
    );
    let v = snapshot.decide(&flow_key(&flow));
    let want = reference(&r, &flow);
    assert_eq!(v.outcome, FlowOutcome::Evaluated);
    assert!(v.egress.is_none());
    let ingress = v.ingress.unwrap();
    assert_eq!(
        snapshot.endpoint_name(ingress.endpoint),
        Some("HostEndpoint/h1")
    );
    let trace = &want.trace[0];
    let rule = snapshot.rule(ingress.rule).unwrap();
    assert_eq!(rule.policy, trace.policy.as_deref());
    assert_eq!(rule.index.map(|i| i as usize), trace.rule);
    let logged: Vec<(Option<&str>, usize)> = ingress
        .logged
        .iter()
        .map(|id| {
            let info = snapshot.rule(id).unwrap();
            assert_eq!(info.action, RuleAction::Log);
            (info.policy, info.index.unwrap() as usize)
        })
        .collect();
    let want_logged: Vec<(Option<&str>, usize)> = trace
        .logged
        .iter()
        .map(|l| (Some(l.policy.as_str()), l.rule))
        .collect();
    assert_eq!(ingress.logged.total() as usize, want_logged.len());
    assert!(want_logged.len() >= 3, "{want_logged:?}");
    assert_eq!(logged, want_logged);
}

/// Six Log rules on the ingress side (more than a side records) and two on the egress
/// side, all hit by one flow between two endpoints: each side keeps its own hits, the
/// first [`LOGGED_CAPACITY`] in order, and counts them all.
const LOGS_ON_BOTH_SIDES: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: logs }
spec:
  selector: all()
  types: [Ingress, Egress]
  ingress:
    - { action: Log }
    - { action: Log, protocol: TCP }
    - { action: Log }
    - { action: Log, protocol: UDP }
    - { action: Log, protocol: TCP, destination: { ports: [80] } }
    - { action: Log }
    - { action: Log, protocol: TCP }
    - { action: Allow }
  egress:
    - { action: Log, protocol: TCP }
    - { action: Log }
    - { action: Deny, protocol: UDP }
    - { action: Allow }
"#;

#[test]
fn each_side_records_its_own_log_hits_up_to_capacity_and_counts_them_all() {
    use crate::snapshot::LOGGED_CAPACITY;
    let r = resolve_yaml(&format!("{WORLD}\n---\n{LOGS_ON_BOTH_SIDES}"));
    let snapshot = compile(&r, 1);
    let flow = Flow::tcp(
        "192.0.2.30".parse().unwrap(),
        1,
        "192.0.2.20".parse().unwrap(),
        80,
    );
    let v = snapshot.decide(&flow_key(&flow));
    assert_eq!(evaluate(&snapshot, &flow), reference(&r, &flow));
    assert!(v.allowed);
    let indices = |logged: &crate::snapshot::LoggedRules, direction| -> Vec<u32> {
        logged
            .iter()
            .map(|id| {
                let info = snapshot.rule(id).unwrap();
                assert_eq!(info.action, RuleAction::Log);
                assert_eq!(info.direction, Some(direction));
                info.index.unwrap()
            })
            .collect()
    };
    let egress = v.egress.unwrap();
    assert_eq!(
        snapshot.endpoint_name(egress.endpoint),
        Some("WorkloadEndpoint/prod/pod-a")
    );
    assert_eq!(egress.logged.total(), 2);
    assert_eq!(indices(&egress.logged, RuleDirection::Egress), [0, 1]);
    let ingress = v.ingress.unwrap();
    assert_eq!(
        snapshot.endpoint_name(ingress.endpoint),
        Some("HostEndpoint/db")
    );
    // Ingress Log rules 0, 1, 2, 4, 5, 6 match a TCP flow to port 80 (3 is UDP only).
    assert_eq!(ingress.logged.total(), 6);
    assert_eq!(
        indices(&ingress.logged, RuleDirection::Ingress),
        [0, 1, 2, 4][..LOGGED_CAPACITY]
    );
    // The same flow the other way: the sides swap, each with its own record.
    let back = Flow::tcp(
        "192.0.2.20".parse().unwrap(),
        80,
        "192.0.2.30".parse().unwrap(),
        1,
    );
    let v = snapshot.decide(&flow_key(&back));
    assert_eq!(evaluate(&snapshot, &back), reference(&r, &back));
    assert_eq!(v.egress.unwrap().logged.total(), 2);
    // Port 1: Log rule 4 (port 80) does not match.
    assert_eq!(v.ingress.unwrap().logged.total(), 5);
    assert_eq!(
        indices(&v.ingress.unwrap().logged, RuleDirection::Ingress),
        [0, 1, 2, 5]
    );
}

#[test]
fn unmatched_and_mixed_family_flows() {
    let r = resolve_yaml(WORLD);
    let snapshot = compile(&r, 1);
    let outside = Flow::tcp(
        "203.0.113.250".parse().unwrap(),
        1,
        "10.0.0.1".parse().unwrap(),
        80,
    );
    let v = snapshot.decide(&flow_key(&outside));
    assert!(matches!(v.outcome, FlowOutcome::Unmatched(_)));
    assert!(!v.allowed);
    let mixed = Flow::tcp(
        "192.0.2.30".parse().unwrap(),
        1,
        "2001:db8::30".parse().unwrap(),
        80,
    );
    let v = snapshot.decide(&flow_key(&mixed));
    assert_eq!(v.outcome, FlowOutcome::MixedFamilies);
    assert!(!v.allowed);
    assert_eq!(evaluate(&snapshot, &mixed), reference(&r, &mixed));
}

#[test]
fn the_handle_publishes_whole_snapshots() {
    let r = resolve_yaml(WORLD);
    let handle = SnapshotHandle::new(compile(&r, 1));
    let before = handle.load_full();
    handle.publish(compile(&r, 2));
    assert_eq!(before.generation(), 1, "a loaded snapshot stays as it was");
    assert_eq!(handle.load().generation(), 2);
    assert_eq!(handle.generation(), 2);
    assert!(before.memory_bytes() > 0);
}

// ---------------------------------------------------------------------------------------------
// Scale: a quick release-mode timing (the criterion benches live in bench/)

/// Deterministic pseudo-random numbers (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A policy directory with `rules` rules over a fixed population of 50 host endpoints, 200
/// workloads in 4 namespaces and 20 network sets. Rules come ten to a policy, in two tiers;
/// they match on protocol, destination ports (single or ranges), source CIDRs or
/// selectors, with some Log and Pass among Allow and Deny.
fn scale_yaml(rules: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut y = String::new();
    for i in 0..50 {
        y += &format!(
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {{ name: h{i}, labels: {{ role: r{} }} }}\nspec: {{ node: n, expectedIPs: [\"10.1.0.{i}\", \"2001:db8:1::{i:x}\"], ports: [{{ name: http, port: {}, protocol: TCP }}] }}\n---\n",
            i % 5,
            8000 + i
        );
    }
    for i in 0..200 {
        y += &format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{ name: w{i}, namespace: ns{}, labels: {{ app: a{} }} }}\nspec: {{ interfaceName: c{i}, orchestrator: k8s, ipNetworks: [\"10.2.{}.{}\"] }}\n---\n",
            i % 4,
            i % 10,
            i / 100,
            i % 100
        );
    }
    for i in 0..20 {
        y += &format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{ name: s{i}, labels: {{ zone: z{} }} }}\nspec: {{ nets: [\"172.{}.0.0/16\"] }}\n---\n",
            i % 7,
            16 + i
        );
    }
    y += "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: { name: sec }\nspec: { order: 10 }\n---\n";
    let selectors = [
        "all()",
        "has(role)",
        "has(app)",
        "role == 'r1'",
        "app in {'a1', 'a2'}",
    ];
    for p in 0..rules.div_ceil(10) {
        let tier = if p % 4 == 0 { "sec" } else { "default" };
        let name = if tier == "sec" {
            format!("sec.p{p}")
        } else {
            format!("p{p}")
        };
        y += &format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{ name: {name} }}\nspec:\n  tier: {tier}\n  order: {p}\n  selector: \"{}\"\n  types: [Ingress, Egress]\n  ingress:\n",
            selectors[p % selectors.len()]
        );
        let mut rule = |y: &mut String| {
            let action = match rng.below(20) {
                0 => "Log",
                1 if tier == "sec" => "Pass",
                n if n < 12 => "Allow",
                _ => "Deny",
            };
            let protocol = if rng.below(2) == 0 { "TCP" } else { "UDP" };
            let port = 1000 + rng.below(4000);
            let ports = if rng.below(4) == 0 {
                format!("\"{port}:{}\"", port + rng.below(50))
            } else {
                port.to_string()
            };
            let source = match rng.below(4) {
                0 => format!(
                    ", source: {{ nets: [\"10.{}.{}.0/24\"] }}",
                    128 + rng.below(128),
                    rng.below(256)
                ),
                1 => format!(", source: {{ selector: \"zone == 'z{}'\" }}", rng.below(7)),
                _ => String::new(),
            };
            *y += &format!(
                "    - {{ action: {action}, protocol: {protocol}{source}, destination: {{ ports: [{ports}] }} }}\n"
            );
        };
        let count = (rules - p * 10).min(10);
        for _ in 0..count.div_ceil(2) {
            rule(&mut y);
        }
        y += "  egress:\n";
        for _ in 0..count / 2 {
            rule(&mut y);
        }
        y += "---\n";
    }
    y
}

/// Random flows: sources outside (CIDR-matched ranges, network sets) or workloads,
/// destinations host endpoints or workloads, TCP or UDP to ports the rules use.
fn scale_flows(count: usize, seed: u64) -> Vec<Flow> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let src: IpAddr = match rng.below(3) {
                0 => format!(
                    "10.{}.{}.{}",
                    128 + rng.below(128),
                    rng.below(256),
                    rng.below(256)
                ),
                1 => format!("172.{}.1.{}", 16 + rng.below(24), rng.below(256)),
                _ => format!("10.2.{}.{}", rng.below(2), rng.below(100)),
            }
            .parse()
            .unwrap();
            let dst: IpAddr = if rng.below(2) == 0 {
                format!("10.1.0.{}", rng.below(50))
            } else {
                format!("10.2.{}.{}", rng.below(2), rng.below(100))
            }
            .parse()
            .unwrap();
            let port = 1000 + rng.below(4100) as u16;
            if rng.below(2) == 0 {
                Flow::tcp(src, 40000, dst, port)
            } else {
                Flow::udp(src, 40000, dst, port)
            }
        })
        .collect()
}

/// ns per verdict: median and 99th percentile over batches of 8 consecutive flows (so that
/// the timer's own ~30 ns is spread thin), and the mean of the fastest of several passes over
/// every flow (the machine is shared: the fastest pass is the least disturbed).
fn time_verdicts(
    snapshot: &crate::snapshot::Snapshot,
    keys: &[crate::snapshot::FlowKey],
) -> (f64, f64, f64) {
    use std::hint::black_box;
    use std::time::Instant;
    const BATCH: usize = 8;
    let mut best = f64::MAX;
    for _ in 0..7 {
        let start = Instant::now();
        for key in keys {
            black_box(snapshot.decide(black_box(key)));
        }
        best = best.min(start.elapsed().as_nanos() as f64 / keys.len() as f64);
    }
    let mut samples = Vec::new();
    for _ in 0..10 {
        for batch in keys.chunks_exact(BATCH) {
            let t = Instant::now();
            for key in batch {
                black_box(snapshot.decide(black_box(key)));
            }
            samples.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
        }
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    (at(0.5), at(0.99), best)
}

#[test]
#[ignore = "timing: run with --release -- --ignored --nocapture"]
fn scale_timing() {
    let flows = scale_flows(20_000, 7);
    let keys: Vec<_> = flows.iter().map(flow_key).collect();
    for rules in [10, 100, 1000, 10_000] {
        let r = resolve_yaml(&scale_yaml(rules, 42));
        let start = std::time::Instant::now();
        let snapshot = compile(&r, 1);
        let compile_ms = start.elapsed().as_secs_f64() * 1e3;
        // The fast path must agree with the reference on what it times.
        for flow in flows.iter().step_by(97) {
            assert_eq!(evaluate(&snapshot, flow), reference(&r, flow), "{flow:?}");
        }
        let allowed = keys.iter().filter(|k| snapshot.decide(k).allowed).count();
        let (median, p99, mean) = time_verdicts(&snapshot, &keys);
        println!(
            "rules {rules:>6}: median {median:>6.1} ns  p99 {p99:>6.1} ns  mean {mean:>6.1} ns  \
             compile {compile_ms:>7.1} ms  memory {:>9} B  programs {:>3}  entries {:>6}  allowed {:.0}%",
            snapshot.memory_bytes(),
            snapshot.program_count(),
            snapshot.entry_count(),
            100.0 * allowed as f64 / keys.len() as f64
        );
    }
}

#[test]
#[ignore = "profiling aid: PORTCULLIS_RULES=N PORTCULLIS_ROUNDS=M, run under perf with --release"]
fn scale_profile() {
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (rules, rounds) = (
        number("PORTCULLIS_RULES", 10_000),
        number("PORTCULLIS_ROUNDS", 500),
    );
    let r = resolve_yaml(&scale_yaml(rules, 42));
    let snapshot = compile(&r, 1);
    let keys: Vec<_> = scale_flows(20_000, 7).iter().map(flow_key).collect();
    let mut allowed = 0;
    for _ in 0..rounds {
        for key in &keys {
            allowed += usize::from(std::hint::black_box(&snapshot).decide(key).allowed);
        }
    }
    assert!(allowed < rounds * keys.len() || rounds == 0);
}

/// A program's probe fields, by name, in both families' orders.
fn probe_fields(
    program: &super::program::Program,
) -> impl Iterator<Item = super::program::ProbeField> + '_ {
    program
        .order
        .iter()
        .flat_map(|order| order.as_slice().iter().copied())
}

#[test]
fn icmp_criteria_fold_into_the_service_field() {
    use super::program::ProbeField;
    let r = resolve_yaml(&format!("{WORLD}\n---\n{}", CASES[7].1));
    let snapshot = compile(&r, 1);
    assert!(snapshot.service_classes.icmp_in_service);
    // No program keeps an ICMP field: the service field tells the types apart.
    for program in snapshot.programs.iter() {
        assert!(!program.icmp.field.bits.is_active());
        assert!(!probe_fields(program).any(|f| f == ProbeField::Icmp));
    }
    let classes = &snapshot.service_classes;
    let types = [(Some(3), Some(4)), (Some(3), Some(5)), (Some(8), Some(0))];
    let ids: BTreeSet<Option<u32>> = snapshot
        .programs
        .iter()
        .filter(|p| p.service.bits.is_active())
        .flat_map(|p| {
            types.map(|(t, c)| {
                p.service
                    .probe_with(
                        || classes.lookup(1, None, t, c),
                        || classes.key(1, None, t, c),
                    )
                    .map(|(_, id)| id)
            })
        })
        .collect();
    assert!(ids.len() >= 3, "ICMP types share service bitsets: {ids:?}");
    // The case's decisions are checked against the reference with the other cases.
}

#[test]
fn a_port_criterion_on_icmp_keeps_the_icmp_field() {
    use crate::policy::PortMatch;
    // Validation refuses ports on ICMP; a resolved set built otherwise still compiles
    // exactly, with the ICMP field kept.
    let mut r = resolve_yaml(&format!("{WORLD}\n---\n{}", CASES[7].1));
    let rules = r
        .tiers
        .iter_mut()
        .flat_map(|t| t.policies.iter_mut())
        .filter_map(|p| p.ingress.as_mut())
        .find(|rules| rules.len() > 2)
        .expect("the case's ingress rules");
    rules[1].dst.ports = vec![PortMatch::Range(7, 80)];
    let snapshot = compile(&r, 1);
    assert!(!snapshot.service_classes.icmp_in_service);
    assert!(
        snapshot
            .programs
            .iter()
            .any(|p| p.icmp.field.bits.is_active() && p.icmp_only_for_icmp)
    );
    // The plain walk of such a program stands every entry in for the ICMP field on flows
    // of other protocols (their probe is skipped), beside at least one real probe.
    assert!(snapshot.programs.iter().any(|p| {
        p.dense
            && p.icmp_only_for_icmp
            && p.order.iter().any(|o| {
                o.as_slice().len() >= 2 && o.as_slice().contains(&super::program::ProbeField::Icmp)
            })
    }));
    assert!(assert_same_decisions("port on ICMP", &r) > 1000);
}

#[test]
fn the_every_entry_stand_in_spans_each_dense_program() {
    use super::bitset::{PlainProbe, PlainProbes};
    // The plain walk takes the stand-in's length from the program's service field, so that
    // field must span the program's entries even where no rule constrains the service.
    // 70 address-only rules: two words, and a service field that constrains nothing.
    let rules: String = (0..70)
        .map(|i| format!("    - action: Deny\n      source: {{ nets: [198.51.100.{i}/32] }}\n"))
        .collect();
    let wide = format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{ name: wide }}\n\
         spec:\n  selector: role == 'web'\n  types: [Ingress]\n  ingress:\n{rules}"
    );
    let mut texts: Vec<String> = CASES
        .iter()
        .map(|(_, case, _)| (*case).to_owned())
        .collect();
    texts.push(wide);
    let mut checked_wide = false;
    for text in &texts {
        let snapshot = compile(&resolve_yaml(&format!("{WORLD}\n---\n{text}")), 1);
        for p in snapshot.programs.iter().filter(|p| p.dense) {
            let words = p.entries.len().div_ceil(64).max(1);
            assert_eq!(PlainProbe::all_entries(&p.service.bits).len(), words);
            checked_wide |= words > 1 && !p.service.bits.is_active();
        }
    }
    assert!(
        checked_wide,
        "no multi-word program without service criteria was built"
    );
}

// ---------------------------------------------------------------------------------------------
// Shared remote-address classes

/// Remote criteria of many prefix lengths in both families, over policies that select
/// different endpoints, so that programs have different remote tables.
const REMOTE_PREFIXES: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: wide }
spec:
  selector: role == 'web'
  types: [Ingress, Egress]
  ingress:
    - { action: Allow, source: { nets: ["0.0.0.0/1", "198.51.100.0/25"] } }
    - { action: Deny, source: { nets: ["2001:db8::/32"], notNets: ["2001:db8:ff::/48"] } }
    - { action: Log, source: { nets: ["2001:db8::30/127"] } }
  egress:
    - { action: Deny, destination: { nets: ["203.0.113.128/26", "255.255.255.255/32"] } }
    - { action: Allow, destination: { nets: ["ffff::/16", "2001:db8::20/128"] } }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: narrow }
spec:
  selector: app == 'api'
  types: [Ingress, Egress]
  ingress:
    - { action: Allow, source: { selector: "role == 'db'" } }
    - { action: Deny, source: { nets: ["192.0.2.0/28", "192.0.2.31/32", "0.0.0.0/32"] } }
    - { action: Allow, source: { nets: ["2001:db8:0:1::/64", "::/128", "::1/128"] } }
  egress:
    - { action: Deny, destination: { notNets: ["198.51.100.64/27"] } }
    - { action: Allow, destination: { selector: "trust == 'partner'" } }
    - { action: Deny, destination: { nets: ["2001:db8::/120"] } }
"#;

/// Every key worth probing in a remote table: zero, the top, each bound, beside each bound,
/// and each prefix end of the world's and the case's nets.
fn remote_probe_keys<K: super::addrset::Key>(
    own: &super::table::IntervalTable<K>,
    prefix_ends: &[K],
    max: K,
) -> Vec<K> {
    let mut keys = vec![K::ZERO, max];
    for &k in own.bounds().collect::<Vec<_>>().iter().chain(prefix_ends) {
        keys.push(k);
        keys.extend(k.succ());
        keys.extend(k.pred());
    }
    keys
}

/// Two probes' bitsets hold the same entries (or both fields are inactive).
fn assert_same_bitset(
    got: Option<(&super::bitset::FieldBits, u32)>,
    want: Option<(&super::bitset::FieldBits, u32)>,
    entries: usize,
    what: &str,
) {
    match (got, want) {
        (None, None) => {}
        (Some((a, i)), Some((b, j))) => {
            for e in 0..entries {
                assert_eq!(
                    a.contains(i as usize, e),
                    b.contains(j as usize, e),
                    "{what}: entry {e}"
                );
            }
        }
        _ => panic!("{what}: one field active, the other not"),
    }
}

/// For every program, the remote field's bitset through the snapshot's shared classes has
/// exactly the entries of the bitset its own table gives, at every bound edge and prefix
/// end, in both families.
#[test]
fn shared_remote_classes_give_each_program_its_own_tables_bitset() {
    use super::build::{NO_JOINT, build_with, build_with_joint};
    let mut texts = vec![
        format!("{WORLD}\n---\n{REMOTE_PREFIXES}"),
        scale_yaml(300, 11),
    ];
    texts.extend(CASES.iter().map(|&(_, yaml, with_world)| {
        if with_world {
            format!("{WORLD}\n---\n{yaml}")
        } else {
            yaml.to_owned()
        }
    }));
    let mut shared_fields = 0;
    let mut endpoint_addresses = 0;
    for text in &texts {
        let r = resolve_yaml(text);
        // Joint address fields would drop the remote fields they replace.
        let shared = build_with_joint(&r, 1, |_| usize::MAX, NO_JOINT);
        let own = build_with(&r, 1, |_| 0);
        let mut v4_ends: Vec<u32> = Vec::new();
        let mut v6_ends: Vec<u128> = Vec::new();
        let nets = r.entities.iter().flat_map(|e| e.nets.iter());
        for net in nets {
            match (net.network(), net.broadcast()) {
                (IpAddr::V4(a), IpAddr::V4(b)) => v4_ends.extend([u32::from(a), u32::from(b)]),
                (IpAddr::V6(a), IpAddr::V6(b)) => v6_ends.extend([u128::from(a), u128::from(b)]),
                _ => {}
            }
        }
        assert_eq!(shared.programs.len(), own.programs.len());
        for (p, (a, b)) in shared.programs.iter().zip(own.programs.iter()).enumerate() {
            assert!(b.remote_v4.by_class.is_empty() && b.remote_v6.by_class.is_empty());
            assert!(!a.remote_v4.by_class.is_empty() && !a.remote_v6.by_class.is_empty());
            let entries = a.entries.len();
            for key in remote_probe_keys(&b.remote_v4.table, &v4_ends, u32::MAX) {
                let got = a.remote_v4.probe(key, None, &shared.remote_classes.v4);
                let want = b.remote_v4.probe(key, None, &own.remote_classes.v4);
                assert_same_bitset(got, want, entries, &format!("program {p}, v4 {key:#x}"));
            }
            for key in remote_probe_keys(&b.remote_v6.table, &v6_ends, u128::MAX) {
                let got = a.remote_v6.probe(key, None, &shared.remote_classes.v6);
                let want = b.remote_v6.probe(key, None, &own.remote_classes.v6);
                assert_same_bitset(got, want, entries, &format!("program {p}, v6 {key:#x}"));
            }
            shared_fields += usize::from(a.remote_v4.bits.is_active());
            shared_fields += usize::from(a.remote_v6.bits.is_active());
        }
        // The class an endpoint address's index entry holds is the one a lookup gives.
        for addr in r.endpoints.iter().flat_map(|e| e.addresses.iter()) {
            let entry = super::classify::address_entry(&shared, *addr).unwrap();
            let class = match *addr {
                IpAddr::V4(v) => shared.remote_classes.v4.lookup(u32::from(v)),
                IpAddr::V6(v) => shared.remote_classes.v6.lookup(u128::from(v)),
            };
            assert_eq!(entry.remote_class, class, "{addr}");
            endpoint_addresses += 1;
        }
    }
    assert!(
        shared_fields > 4,
        "too few active remote fields under test: {shared_fields}"
    );
    assert!(
        endpoint_addresses > 100,
        "too few endpoint addresses: {endpoint_addresses}"
    );
}

/// Many distinct programs, each with its own ports: the shared service classes would cost
/// programs × classes ids, far more than the programs' own tables.
fn many_service_programs_yaml(endpoints: usize) -> String {
    let mut y = String::new();
    for i in 0..endpoints {
        let (lo, hi) = (1000 + i * 40, 1000 + i * 40 + 9);
        let lines = [
            "apiVersion: projectcalico.org/v3".to_owned(),
            "kind: WorkloadEndpoint".to_owned(),
            format!("metadata: {{ name: w{i}, namespace: ns, labels: {{ app: a{i} }} }}"),
            format!(
                "spec: {{ interfaceName: c{i}, orchestrator: k8s, ipNetworks: [\"198.51.100.{i}\", \"2001:db8:2::{i:x}\"] }}"
            ),
            "---".to_owned(),
            "apiVersion: projectcalico.org/v3".to_owned(),
            "kind: GlobalNetworkPolicy".to_owned(),
            format!("metadata: {{ name: p{i} }}"),
            "spec:".to_owned(),
            format!("  selector: app == 'a{i}'"),
            "  types: [Ingress, Egress]".to_owned(),
            "  ingress:".to_owned(),
            format!(
                "    - {{ action: Allow, protocol: TCP, destination: {{ ports: [{lo}, \"{}:{hi}\", 65535] }} }}",
                lo + 3
            ),
            format!(
                "    - {{ action: Deny, protocol: UDP, destination: {{ notPorts: [\"{lo}:{hi}\", 1] }} }}"
            ),
            format!(
                "    - {{ action: Allow, protocol: 132, destination: {{ ports: [{}] }} }}",
                hi + 1
            ),
            format!(
                "    - {{ action: Log, protocol: ICMP, icmp: {{ type: {} }} }}",
                i % 256
            ),
            "    - { action: Deny, notProtocol: TCP }".to_owned(),
            "  egress:".to_owned(),
            format!(
                "    - {{ action: Deny, protocol: UDP, destination: {{ ports: [{}, 53] }} }}",
                lo + 5
            ),
            "    - { action: Allow, protocol: ICMPv6 }".to_owned(),
            format!(
                "    - {{ action: Allow, protocol: TCP, destination: {{ ports: [\"1:{}\"] }} }}",
                lo + 20
            ),
            "---".to_owned(),
        ];
        y += &lines.join("\n");
        y += "\n";
    }
    y
}

/// (protocol, destination port) pairs worth probing in a service table: beside each of its
/// bounds, and port 0, 65535 and no port for protocols with and without ports and ICMP.
fn service_probe_flows(own: &super::table::IntervalTable<u32>) -> Vec<(u8, Option<u16>)> {
    let decode = |key: u32| {
        let protocol = u8::try_from(key >> 17).ok()?;
        match key & ((1 << 17) - 1) {
            0 => Some((protocol, None)),
            k if k <= super::keys::PORT_MAX => Some((protocol, Some((k - 1) as u16))),
            _ => None,
        }
    };
    let mut flows: Vec<(u8, Option<u16>)> = own
        .bounds()
        .flat_map(|b| [b.wrapping_sub(1), b, b.wrapping_add(1)])
        .filter_map(decode)
        .collect();
    for protocol in [0, 1, 6, 17, 47, 58, 132, 255] {
        for port in [None, Some(0), Some(1), Some(65534), Some(65535)] {
            flows.push((protocol, port));
        }
    }
    flows
}

/// Over budget, every program keeps its own service table: the snapshot holds no class
/// arrays, stays within the budget, and every program's service bitset is the one the
/// shared classes give, for every port edge, both port extremes, no-port protocols and ICMP.
#[test]
fn over_budget_service_classes_leave_each_program_its_own_table() {
    use super::build::build_with;
    let r = resolve_yaml(&many_service_programs_yaml(24));
    let budget: fn(usize) -> usize = |own| own.saturating_mul(2);
    let shared = build_with(&r, 1, |_| usize::MAX);
    let own = build_with(&r, 1, budget);
    assert_eq!(shared.programs.len(), own.programs.len());
    assert!(own.programs.len() >= 48, "{} programs", own.programs.len());

    // The case is over budget: the shared arrays would take more than it allows.
    let own_table_bytes: usize = own
        .programs
        .iter()
        .map(|p| p.service.table.heap_bytes())
        .sum();
    let class_array_bytes: usize = shared
        .programs
        .iter()
        .map(|p| p.service.by_class.len() * 4)
        .sum();
    assert!(
        class_array_bytes > budget(own_table_bytes),
        "{class_array_bytes} bytes of class arrays within {}",
        budget(own_table_bytes)
    );

    // (a) Per-program tables, and no shared classes to speak of.
    for (a, b) in shared.programs.iter().zip(own.programs.iter()) {
        assert!(!a.service.by_class.is_empty(), "shared: a class array");
        assert_eq!(a.service.table.intervals(), 1, "shared: no own table");
        assert!(b.service.by_class.is_empty(), "own: no class array");
        if b.service.bits.is_active() {
            assert!(b.service.table.intervals() > 1, "own: its table");
        }
    }
    assert_eq!(own.service_classes.len(), 1);
    assert!(shared.service_classes.len() > 24 * 4);

    // (b) Memory: the service field costs what the own tables cost, and the whole snapshot
    // less than the shared one.
    let own_service_bytes: usize = own
        .programs
        .iter()
        .map(|p| p.service.by_class.len() * 4 + p.service.table.heap_bytes())
        .sum::<usize>()
        + own.service_classes.heap_bytes();
    assert!(own_service_bytes <= budget(own_table_bytes));
    assert!(
        own.memory_bytes() < shared.memory_bytes(),
        "{} against {}",
        own.memory_bytes(),
        shared.memory_bytes()
    );

    // (c) The same bitset either way.
    let mut probed = 0;
    for (p, (a, b)) in shared.programs.iter().zip(own.programs.iter()).enumerate() {
        for (protocol, port) in service_probe_flows(&b.service.table) {
            let got = a.service.probe_with(
                || shared.service_classes.lookup(protocol, port, None, None),
                || shared.service_classes.key(protocol, port, None, None),
            );
            let want = b.service.probe_with(
                || own.service_classes.lookup(protocol, port, None, None),
                || own.service_classes.key(protocol, port, None, None),
            );
            let what = format!("program {p}, protocol {protocol}, port {port:?}");
            assert_same_bitset(got, want, a.entries.len(), &what);
            probed += 1;
        }
    }
    assert!(probed > 48 * 40, "only {probed} probes");

    // And whole decisions of the own-table snapshot equal the reference's.
    let outside: IpAddr = "203.0.113.7".parse().unwrap();
    let outside6: IpAddr = "2001:db8:ff::7".parse().unwrap();
    let mut ports: Vec<u16> = vec![0, 1, 53, 65534, 65535];
    ports.extend((0..24u16).flat_map(|i| {
        let lo = 1000 + i * 40;
        [lo - 1, lo, lo + 3, lo + 9, lo + 10, lo + 20, lo + 21]
    }));
    for e in &r.endpoints {
        for &addr in &e.addresses {
            let other = if addr.is_ipv4() { outside } else { outside6 };
            for (src, dst) in [(other, addr), (addr, other)] {
                for flow in variants(src, dst, &ports) {
                    let got = evaluate(&own, &flow);
                    assert_eq!(got, reference(&r, &flow), "{flow:?}");
                }
            }
        }
    }
}

#[test]
fn the_walk_profile_lands_on_the_deciding_rule_of_every_side() {
    let flows = scale_flows(2_000, 11);
    let (mut logs, mut passes) = (0, 0);
    for rules in [100, 1000, 10_000] {
        let r = resolve_yaml(&scale_yaml(rules, 5));
        let snapshot = compile(&r, 1);
        for flow in &flows {
            let key = flow_key(flow);
            let verdict = snapshot.decide(&key);
            let profile = super::profile::walk_profile(&snapshot, &key);
            let want: Vec<_> = [verdict.egress, verdict.ingress]
                .into_iter()
                .flatten()
                .map(|s| (s.rule, s.logged.total() as usize))
                .collect();
            let got: Vec<_> = profile
                .sides
                .iter()
                .map(|s| (s.rule.unwrap(), s.logs))
                .collect();
            assert_eq!(got, want, "{rules} rules: {flow:?}");
            for side in &profile.sides {
                assert!(side.failsafe || side.first_match_calls > side.logs + side.passes);
                logs += side.logs;
                passes += side.passes;
            }
        }
    }
    assert!(logs > 0 && passes > 0, "{logs} logs {passes} passes");
}

// ---------------------------------------------------------------------------------------------
// Joint own and other address fields

/// Rules constraining both the own and the other address, in both families, over policies
/// that select different endpoints: the programs get joint address fields.
const BOTH_ADDRESSES: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: both }
spec:
  selector: all()
  types: [Ingress, Egress]
  ingress:
    - { action: Allow, source: { nets: ["192.0.2.0/27"] }, destination: { selector: "app == 'api'" } }
    - { action: Allow, source: { nets: ["2001:db8::/124"] }, destination: { selector: "app == 'api'" } }
    - { action: Log, source: { selector: "role == 'db'" }, destination: { nets: ["192.0.2.10/31"] } }
    - { action: Log, source: { selector: "role == 'db'" }, destination: { nets: ["2001:db8::10/127"] } }
    - { action: Deny, source: { notNets: ["192.0.2.16/28"] }, destination: { notSelector: "role == 'web'" } }
    - { action: Allow, protocol: TCP, source: { nets: ["2001:db8::20/126"] }, destination: { nets: ["2001:db8::/120"] } }
  egress:
    - { action: Deny, source: { selector: "app == 'api'" }, destination: { nets: ["192.0.2.20/30"] } }
    - { action: Deny, source: { selector: "app == 'api'" }, destination: { nets: ["2001:db8::20/127"] } }
    - { action: Allow, source: { nets: ["192.0.2.8/29"] }, destination: { selector: "has(role)" } }
    - { action: Allow, source: { nets: ["2001:db8::10/124"] }, destination: { selector: "has(role)" } }
    - { action: Deny, protocol: UDP, destination: { notNets: ["198.51.100.0/24"] } }
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: { name: web-only }
spec:
  selector: role == 'web'
  types: [Ingress]
  ingress:
    - { action: Deny, source: { nets: ["192.0.2.30/32"] }, destination: { nets: ["192.0.2.11/32"] } }
    - { action: Deny, source: { nets: ["2001:db8::30/128"] }, destination: { nets: ["2001:db8::10/128"] } }
"#;

fn both_addresses() -> Resolved {
    resolve_yaml(&format!(
        "{WORLD}\n---\n{REMOTE_PREFIXES}\n---\n{BOTH_ADDRESSES}"
    ))
}

/// A family's (own-address bits, remote field, joint field, probe order) of a program.
fn family_fields(
    p: &super::program::Program,
    family: usize,
) -> (
    &super::bitset::FieldBits,
    &super::bitset::FieldBits,
    &[u32],
    &super::program::JointField,
    &[super::program::ProbeField],
) {
    let order = p.order[family].as_slice();
    if family == 0 {
        let r = &p.remote_v4;
        (&p.local[0], &r.bits, &r.by_class, &p.joint_v4, order)
    } else {
        let r = &p.remote_v6;
        (&p.local[1], &r.bits, &r.by_class, &p.joint_v6, order)
    }
}

/// Where a program has a joint address field, its bitset for every (own-address bitset,
/// remote class) pair holds exactly the entries of both separate bitsets (as a snapshot
/// without joint fields has them), the walk probes it in place of the two, and the two are
/// dropped; in both families. Decisions equal the reference's.
#[test]
fn joint_address_fields_are_the_and_of_the_own_and_other_address_bitsets() {
    use super::build::{NO_JOINT, build_with_joint};
    use super::program::ProbeField;
    let r = both_addresses();
    let snapshot = compile(&r, 1);
    let apart = build_with_joint(&r, 1, |_| usize::MAX, NO_JOINT);
    assert_eq!(snapshot.programs.len(), apart.programs.len());
    let mut joined = [0; 2];
    for (i, (p, q)) in snapshot
        .programs
        .iter()
        .zip(apart.programs.iter())
        .enumerate()
    {
        for family in [0, 1] {
            let (local, remote, by_class, _, _) = family_fields(q, family);
            let (own_left, remote_left, classes_left, joint, order) = family_fields(p, family);
            let both_active = local.is_active() && remote.is_active();
            assert_eq!(joint.is_used(), both_active, "program {i} family {family}");
            if !joint.is_used() {
                assert!(!order.contains(&ProbeField::Joint));
                continue;
            }
            joined[family] += 1;
            assert!(order.contains(&ProbeField::Joint), "program {i}: {order:?}");
            assert!(!order.contains(&ProbeField::Local) && !order.contains(&ProbeField::Remote));
            assert!(!own_left.is_active() && !remote_left.is_active() && classes_left.is_empty());
            assert_eq!(joint.classes, by_class.len());
            assert_eq!(joint.ids.len(), local.distinct() * by_class.len());
            for a in 0..local.distinct() {
                for (c, &b) in by_class.iter().enumerate() {
                    let (bits, id) = joint.probe(a as u32, c as u32);
                    for e in 0..p.entries.len() {
                        assert_eq!(
                            bits.contains(id as usize, e),
                            local.contains(a, e) && remote.contains(b as usize, e),
                            "program {i} family {family}: own {a}, class {c}, entry {e}"
                        );
                    }
                }
            }
        }
    }
    assert!(
        joined[0] >= 2 && joined[1] >= 2,
        "joint fields under test per family: {joined:?}"
    );
    let compared = assert_same_decisions_of("both addresses", &r, &snapshot);
    assert!(compared > 1000, "only {compared} flows");

    // The diagnostic walk probes the joint fields too, and lands on the same rules.
    let addrs = addresses(&r);
    let mut joint_sides = 0;
    for &src in &addrs {
        for &dst in &addrs {
            for flow in [
                Flow::tcp(src, 40000, dst, 80),
                Flow::udp(src, 53, dst, 8081),
            ] {
                let key = flow_key(&flow);
                let verdict = snapshot.decide(&key);
                let profile = super::profile::walk_profile(&snapshot, &key);
                let want: Vec<_> = [verdict.egress, verdict.ingress]
                    .into_iter()
                    .flatten()
                    .map(|s| s.rule)
                    .collect();
                let got: Vec<_> = profile.sides.iter().filter_map(|s| s.rule).collect();
                assert_eq!(got, want, "{flow:?}");
                joint_sides += profile.sides.iter().filter(|s| s.remote_probed).count();
            }
        }
    }
    assert!(
        joint_sides > 100,
        "{joint_sides} sides probing the other address"
    );
}

/// Past the joint budget, or without shared remote classes, a program probes the own and
/// the other address apart, as without joint fields; the snapshot-wide budget stops at the
/// programs it cannot hold; memory counts exactly the joint fields. Decisions stay the
/// reference's in every layout.
#[test]
fn joint_address_fields_fall_back_to_separate_probes_over_budget() {
    use super::build::{JOINT_BUDGET, JointBudget, NO_JOINT, build_with, build_with_joint};
    use super::program::ProbeField;
    let r = both_addresses();
    let shared: fn(usize) -> usize = |_| usize::MAX;
    let joint = build_with_joint(&r, 1, shared, JOINT_BUDGET);
    let apart = build_with_joint(&r, 1, shared, NO_JOINT);
    let joint_bytes = |s: &crate::snapshot::Snapshot| -> Vec<usize> {
        s.programs
            .iter()
            .flat_map(|p| [&p.joint_v4, &p.joint_v6])
            .filter(|j| j.is_used())
            .map(|j| j.heap_bytes())
            .collect()
    };
    let used = joint_bytes(&joint);
    assert!(used.len() >= 4, "{} joint fields", used.len());
    assert!(joint_bytes(&apart).is_empty());
    // Memory counts the joint fields, and not the separate fields they replace.
    let replaced: usize = joint
        .programs
        .iter()
        .zip(apart.programs.iter())
        .flat_map(|(p, q)| [0, 1].map(|f| (family_fields(p, f).3.is_used(), family_fields(q, f))))
        .filter(|&(used, _)| used)
        .map(|(_, (local, remote, by_class, _, _))| {
            local.heap_bytes() + remote.heap_bytes() + by_class.len() * 4
        })
        .sum();
    assert!(replaced > 0);
    assert_eq!(
        joint.memory_bytes() + replaced,
        apart.memory_bytes() + used.iter().sum::<usize>(),
        "memory counts the joint fields"
    );
    for (i, p) in apart.programs.iter().enumerate() {
        for family in [0, 1] {
            let (local, remote, _, _, order) = family_fields(p, family);
            assert!(!order.contains(&ProbeField::Joint));
            assert_eq!(order.contains(&ProbeField::Local), local.is_active(), "{i}");
            assert_eq!(
                order.contains(&ProbeField::Remote),
                remote.is_active(),
                "{i}"
            );
        }
    }

    // A snapshot budget of the first joint field only: that field, then nothing more.
    let first_only = JointBudget {
        per_program: usize::MAX,
        snapshot: used[0],
    };
    let partial = build_with_joint(&r, 1, shared, first_only);
    assert_eq!(joint_bytes(&partial), vec![used[0]]);

    // A per-program cap between the fields' sizes: exactly those within it.
    let mut sizes = used.clone();
    sizes.sort_unstable();
    let cap = sizes[sizes.len() / 2];
    let capped = build_with_joint(
        &r,
        1,
        shared,
        JointBudget {
            per_program: cap,
            snapshot: usize::MAX,
        },
    );
    let within: Vec<usize> = used.iter().copied().filter(|&b| b <= cap).collect();
    assert!(within.len() < used.len(), "{used:?} all within {cap}");
    assert_eq!(joint_bytes(&capped), within);

    // Programs on their own remote tables have no shared classes to join on.
    let own = build_with(&r, 1, |_| 0);
    assert!(joint_bytes(&own).is_empty());

    let layouts = [
        ("apart", &apart),
        ("partial", &partial),
        ("capped", &capped),
        ("own", &own),
    ];
    for (name, snapshot) in layouts {
        let compared = assert_same_decisions_of(name, &r, snapshot);
        assert!(compared > 1000, "{name}: only {compared} flows");
    }
}
