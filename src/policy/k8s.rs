//! Kubernetes NetworkPolicy conversion (SPEC §7), following Calico's converter: each KNP becomes
//! a policy of the default tier with order 1000, and each Kubernetes rule becomes one Allow
//! rule per (protocol, peer) pair, in the same normalized [`Rule`] form as every other kind.

use std::collections::BTreeMap;

use super::labels;
use super::resolve::{Direction, Directions, K8S_POLICY_ORDER, Policy, PolicyKind, Stage, both};
use super::rule::{
    Dialect, EntityParts, PortMatch, Rule, RuleNormalizer, collect_all, parse_port_text,
    rule_ip_version,
};
use crate::model::resources::{
    IntOrString, K8sNetworkPolicySpec, K8sPeer, K8sPort, LabelSelector, LabelSelectorRequirement,
};
use crate::model::{Problem, Resource};
use crate::selector::Selector;

/// Convert one Kubernetes NetworkPolicy.
pub(crate) fn kubernetes_network_policy(
    resource: &Resource,
    spec: &K8sNetworkPolicySpec,
) -> Result<Policy, Vec<Problem>> {
    let namespace = resource.namespace();
    let rules = RuleNormalizer {
        resource,
        dialect: Dialect::V3,
        namespace,
    };
    let selector = pod_selector(&rules, "spec.podSelector", Some(&spec.pod_selector))
        .map(|s| s.and(&Selector::equals(labels::NAMESPACE, namespace)))
        .map_err(|p| vec![p]);
    let directions = policy_types(resource, spec).map_err(|p| vec![p]);
    let ingress = collect_nested(
        spec.ingress
            .iter()
            .enumerate()
            .map(|(i, r)| convert_rule(&rules, Direction::Ingress, i, &r.from, &r.ports)),
    );
    let egress = collect_nested(
        spec.egress
            .iter()
            .enumerate()
            .map(|(i, r)| convert_rule(&rules, Direction::Egress, i, &r.to, &r.ports)),
    );
    let ((selector, directions), (ingress, egress)) =
        both(both(selector, directions), both(ingress, egress))?;
    Ok(Policy {
        kind: PolicyKind::KubernetesNetworkPolicy,
        name: resource.name().to_owned(),
        namespace: namespace.to_owned(),
        display_name: format!(
            "{}/{}/{}",
            PolicyKind::KubernetesNetworkPolicy.name(),
            namespace,
            resource.name()
        ),
        order: Some(K8S_POLICY_ORDER),
        selector,
        stage: Stage::Normal,
        ingress: directions.ingress.then_some(ingress),
        egress: directions.egress.then_some(egress),
        origin: resource.origin.clone(),
    })
}

/// `policyTypes` as the API server defaults it (SPEC §7.2, [DESIGN]): when none are listed,
/// Ingress always, plus Egress when there are egress rules.
pub(crate) fn policy_types(
    resource: &Resource,
    spec: &K8sNetworkPolicySpec,
) -> Result<Directions, Problem> {
    if spec.policy_types.is_empty() {
        return Ok(Directions {
            ingress: true,
            egress: !spec.egress.is_empty(),
        });
    }
    let mut directions = Directions::default();
    for (i, t) in spec.policy_types.iter().enumerate() {
        match t.as_str() {
            "Ingress" => directions.ingress = true,
            "Egress" => directions.egress = true,
            other => {
                return Err(resource.problem(
                    &format!("spec.policyTypes[{i}]"),
                    format!("unknown policy type {other:?}"),
                ));
            }
        }
    }
    Ok(directions)
}

/// One Kubernetes rule: an Allow rule per protocol group (outer, sorted by protocol name as
/// Calico does) and per peer (inner, in list order).
fn convert_rule(
    rules: &RuleNormalizer<'_>,
    direction: Direction,
    index: usize,
    peers: &[K8sPeer],
    ports: &[K8sPort],
) -> Result<Vec<Rule>, Vec<Problem>> {
    let path = format!("spec.{}[{index}]", direction.name());
    let peer_field = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let groups = port_groups(rules, &format!("{path}.ports"), ports).map_err(|p| vec![p]);
    let peers: Result<Vec<EntityParts>, Vec<Problem>> = if peers.is_empty() {
        Ok(vec![EntityParts::default()])
    } else {
        collect_all(
            peers
                .iter()
                .enumerate()
                .map(|(i, peer)| peer_parts(rules, &format!("{path}.{peer_field}[{i}]"), peer)),
        )
    };
    let (groups, peers) = both(groups, peers)?;

    let mut converted = Vec::new();
    for (protocol, group_ports) in &groups {
        for peer in &peers {
            let ports_only = EntityParts {
                ports: group_ports.clone(),
                ..EntityParts::default()
            };
            // Ingress: the peer is the source, ports are on the destination. Egress: peer and
            // ports are both on the destination.
            let (src, dst) = match direction {
                Direction::Ingress => (peer.clone(), ports_only),
                Direction::Egress => (
                    EntityParts::default(),
                    EntityParts {
                        ports: group_ports.clone(),
                        ..peer.clone()
                    },
                ),
            };
            let mut rule = Rule {
                protocol: *protocol,
                src: src.into_side(rules.namespace),
                dst: dst.into_side(rules.namespace),
                ..Rule::allow_all(index)
            };
            rule.ip_version =
                rule_ip_version(None, &rule).map_err(|m| vec![rules.problem(&path, m)])?;
            converted.push(rule);
        }
    }
    Ok(converted)
}

/// A protocol (`None`: every protocol) and its ports (empty: every port).
type PortGroup = (Option<u8>, Vec<PortMatch>);

/// Ports grouped by protocol: `(None, [])` when the rule has no ports (every protocol), else
/// one group per protocol keyed and ordered by its Kubernetes name, an empty list meaning
/// every port of that protocol. A port entry without a protocol means TCP.
fn port_groups(
    rules: &RuleNormalizer<'_>,
    path: &str,
    ports: &[K8sPort],
) -> Result<Vec<PortGroup>, Problem> {
    if ports.is_empty() {
        return Ok(vec![(None, Vec::new())]);
    }
    // `None` = every port of the protocol, which no specific port can narrow again.
    let mut groups: BTreeMap<&str, (u8, Option<Vec<PortMatch>>)> = BTreeMap::new();
    for (i, port) in ports.iter().enumerate() {
        let entry_path = format!("{path}[{i}]");
        let (name, number) = k8s_protocol(rules, &entry_path, port.protocol.as_deref())?;
        let matched = k8s_port(rules, &entry_path, port)?;
        let group = groups.entry(name).or_insert((number, Some(Vec::new())));
        match (matched, &mut group.1) {
            (None, all) => *all = None,
            (Some(m), Some(list)) => list.push(m),
            (Some(_), None) => {}
        }
    }
    Ok(groups
        .into_values()
        .map(|(number, ports)| (Some(number), ports.unwrap_or_default()))
        .collect())
}

fn k8s_protocol(
    rules: &RuleNormalizer<'_>,
    path: &str,
    protocol: Option<&str>,
) -> Result<(&'static str, u8), Problem> {
    use super::flow::protocol::{SCTP, TCP, UDP};
    match protocol {
        None | Some("TCP") => Ok(("TCP", TCP)),
        Some("UDP") => Ok(("UDP", UDP)),
        Some("SCTP") => Ok(("SCTP", SCTP)),
        Some(other) => Err(rules.problem(
            &format!("{path}.protocol"),
            format!("protocol must be TCP, UDP or SCTP, not {other:?}"),
        )),
    }
}

/// The port match of one entry, or `None` for "every port". Like Calico, an `endPort` without
/// a `port` is ignored.
fn k8s_port(
    rules: &RuleNormalizer<'_>,
    path: &str,
    port: &K8sPort,
) -> Result<Option<PortMatch>, Problem> {
    let bad = |message: String| rules.problem(&format!("{path}.port"), message);
    let single = |n: i64| {
        u16::try_from(n)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad(format!("port {n} is out of range (1-65535)")))
    };
    let matched = match (&port.port, port.end_port) {
        (None, _) => return Ok(None),
        (Some(IntOrString::Int(n)), None) => {
            let p = single(*n)?;
            PortMatch::Range(p, p)
        }
        (Some(IntOrString::Int(n)), Some(end)) => {
            let (lo, hi) = (single(*n)?, single(end)?);
            if hi < lo {
                return Err(bad(format!("endPort {hi} is below port {lo}")));
            }
            PortMatch::Range(lo, hi)
        }
        (Some(IntOrString::Text(text)), end) => match (parse_port_text(text), end) {
            (Some(PortMatch::Named(name)), None) if !name.contains(':') => PortMatch::Named(name),
            (Some(PortMatch::Range(lo, hi)), None) if lo == hi && lo != 0 => {
                PortMatch::Range(lo, hi)
            }
            _ => return Err(bad(format!("invalid port {text:?}"))),
        },
    };
    Ok(Some(matched))
}

/// A peer as the parts of a Calico rule block.
fn peer_parts(
    rules: &RuleNormalizer<'_>,
    path: &str,
    peer: &K8sPeer,
) -> Result<EntityParts, Problem> {
    if let Some(block) = &peer.ip_block {
        // An ipBlock peer is addresses only (Kubernetes forbids selectors beside it), and it
        // covers every address in the block, pods included.
        return Ok(EntityParts {
            nets: vec![rules.net(&format!("{path}.ipBlock.cidr"), &block.cidr)?],
            not_nets: rules.nets(&format!("{path}.ipBlock.except"), &block.except)?,
            ..EntityParts::default()
        });
    }
    let selector = pod_selector(
        rules,
        &format!("{path}.podSelector"),
        peer.pod_selector.as_ref(),
    )?;
    let namespace_selector = peer
        .namespace_selector
        .as_ref()
        .map(|s| namespace_selector(rules, &format!("{path}.namespaceSelector"), s))
        .transpose()?;
    Ok(EntityParts {
        selector: Some(selector),
        namespace_selector,
        ..EntityParts::default()
    })
}

/// `projectcalico.org/orchestrator == 'k8s'` AND the terms of the pod selector: a pod selector
/// only ever reaches Kubernetes pods.
fn pod_selector(
    rules: &RuleNormalizer<'_>,
    path: &str,
    selector: Option<&LabelSelector>,
) -> Result<Selector, Problem> {
    let is_pod = Selector::equals(labels::ORCHESTRATOR, labels::K8S_ORCHESTRATOR);
    let terms = selector
        .map(|s| label_selector_terms(rules, path, s))
        .transpose()?
        .unwrap_or_default();
    Ok(terms.iter().fold(is_pod, |acc, t| acc.and(t)))
}

/// A namespace selector over namespace labels; `{}` means every namespace (`all()`).
fn namespace_selector(
    rules: &RuleNormalizer<'_>,
    path: &str,
    selector: &LabelSelector,
) -> Result<Selector, Problem> {
    let terms = label_selector_terms(rules, path, selector)?;
    Ok(terms
        .into_iter()
        .reduce(|acc, t| acc.and(&t))
        .unwrap_or_else(Selector::all))
}

/// `matchLabels` (sorted by key) then `matchExpressions`, each as one Calico term.
fn label_selector_terms(
    rules: &RuleNormalizer<'_>,
    path: &str,
    selector: &LabelSelector,
) -> Result<Vec<Selector>, Problem> {
    let labels = selector
        .match_labels
        .iter()
        .map(|(k, v)| Selector::equals(k, v));
    let expressions = selector
        .match_expressions
        .iter()
        .enumerate()
        .map(|(i, e)| expression_term(rules, &format!("{path}.matchExpressions[{i}]"), e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(labels.chain(expressions).collect())
}

fn expression_term(
    rules: &RuleNormalizer<'_>,
    path: &str,
    expression: &LabelSelectorRequirement,
) -> Result<Selector, Problem> {
    // Calico writes `k in { '<values joined>' }`, so an empty list (which Kubernetes rejects)
    // would become the set {""}; keep that reading rather than inventing another.
    let values: Vec<String> = if expression.values.is_empty() {
        vec![String::new()]
    } else {
        expression.values.clone()
    };
    let key = expression.key.as_str();
    match expression.operator.as_str() {
        "In" => Ok(Selector::in_set(key, &values)),
        "NotIn" => Ok(Selector::not_in_set(key, &values)),
        "Exists" => Ok(Selector::has(key)),
        "DoesNotExist" => Ok(Selector::has(key).negate()),
        other => Err(rules.problem(
            &format!("{path}.operator"),
            format!("unknown operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"),
        )),
    }
}

fn collect_nested<T>(
    items: impl Iterator<Item = Result<Vec<T>, Vec<Problem>>>,
) -> Result<Vec<T>, Vec<Problem>> {
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for item in items {
        match item {
            Ok(mut v) => values.append(&mut v),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{Value, json};

    use crate::model::resources::Labels;
    use crate::policy::flow::protocol::{SCTP, TCP, UDP};
    use crate::policy::resolve::Policy;
    use crate::policy::rule::{PortMatch, Rule};
    use crate::policy::testing::{labels_of, res, resolved};

    fn knp(spec: Value) -> Policy {
        let r = resolved(vec![res("KNP", "shop/k", &[], spec)]);
        r.tiers[0].policies[0].clone()
    }

    fn pod(ns: &str, orchestrator: &str, extra: &[(&str, &str)]) -> Labels {
        let mut l = labels_of(extra);
        l.insert("projectcalico.org/namespace".into(), ns.into());
        l.insert("projectcalico.org/orchestrator".into(), orchestrator.into());
        l.insert("pcns.projectcalico.org/name".into(), ns.into());
        l.insert(
            "pcns.shape".into(),
            if ns == "shop" { "circle" } else { "square" }.into(),
        );
        l
    }

    #[test]
    fn policy_selects_kubernetes_pods_of_its_namespace_only() {
        let p = knp(json!({ "podSelector": { "matchLabels": { "app": "web" } } }));
        let cases = [
            (pod("shop", "k8s", &[("app", "web")]), true),
            (pod("shop", "k8s", &[("app", "db")]), false),
            (pod("shop", "openstack", &[("app", "web")]), false),
            (pod("other", "k8s", &[("app", "web")]), false),
            (labels_of(&[("app", "web")]), false),
        ];
        for (labels, want) in cases {
            assert_eq!(p.selector.matches(&labels), want, "{labels:?}");
        }
        let all = knp(json!({ "podSelector": {} }));
        assert!(all.selector.matches(&pod("shop", "k8s", &[])));
        assert_eq!(all.order, Some(1000.0));
        assert_eq!(all.display_name, "KubernetesNetworkPolicy/shop/k");
    }

    fn protocols_and_ports(rules: &[Rule]) -> Vec<(Option<u8>, Vec<PortMatch>)> {
        rules
            .iter()
            .map(|r| (r.protocol, r.dst.ports.clone()))
            .collect()
    }

    #[test]
    fn ports_group_by_protocol_with_tcp_as_the_default() {
        let p = knp(json!({ "podSelector": {}, "ingress": [{ "ports": [
            { "port": 80 },
            { "protocol": "UDP", "port": 53 },
            { "protocol": "TCP", "port": 8000, "endPort": 8100 },
            { "protocol": "SCTP" },
            { "port": "http" },
            { "protocol": "UDP", "port": "5353" },
        ]}]}));
        let ingress = p.ingress.unwrap();
        assert_eq!(
            protocols_and_ports(&ingress),
            [
                (Some(SCTP), vec![]),
                (
                    Some(TCP),
                    vec![
                        PortMatch::Range(80, 80),
                        PortMatch::Range(8000, 8100),
                        PortMatch::Named("http".into())
                    ]
                ),
                (
                    Some(UDP),
                    vec![PortMatch::Range(53, 53), PortMatch::Range(5353, 5353)]
                ),
            ]
        );
        assert!(
            ingress
                .iter()
                .all(|r| r.src.is_unconstrained() && r.source_index == 0)
        );
    }

    #[test]
    fn a_protocol_without_port_opens_every_port_of_it() {
        let p = knp(json!({ "podSelector": {}, "ingress": [{ "ports": [
            { "protocol": "TCP", "port": 80 }, { "protocol": "TCP" }, { "port": 443 },
        ]}]}));
        assert_eq!(
            protocols_and_ports(&p.ingress.unwrap()),
            [(Some(TCP), vec![])]
        );
    }

    #[test]
    fn rules_without_ports_or_peers_allow_everything() {
        let p = knp(json!({ "podSelector": {}, "ingress": [{}], "egress": [{}] }));
        for rules in [p.ingress.unwrap(), p.egress.unwrap()] {
            assert_eq!(rules.len(), 1);
            assert_eq!(rules[0], Rule::allow_all(0));
        }
    }

    #[test]
    fn one_rule_per_protocol_and_peer_with_the_peer_on_the_right_side() {
        let peers = json!([
            { "podSelector": { "matchLabels": { "color": "red" } } },
            { "ipBlock": { "cidr": "198.51.100.77/24", "except": ["198.51.100.128/26"] } },
        ]);
        let ports = json!([{ "port": 80 }, { "protocol": "UDP", "port": 53 }]);
        let p = knp(json!({ "podSelector": {},
            "ingress": [{ "from": peers, "ports": ports }],
            "egress": [{}, { "to": peers, "ports": ports }] }));
        let ingress = p.ingress.unwrap();
        assert_eq!(ingress.len(), 4);
        // Protocol outer (TCP before UDP), peers inner.
        assert_eq!(
            ingress.iter().map(|r| r.protocol).collect::<Vec<_>>(),
            [Some(TCP), Some(TCP), Some(UDP), Some(UDP)]
        );
        assert!(ingress[0].src.selector.is_some() && ingress[0].src.nets.is_empty());
        assert_eq!(ingress[1].src.nets, ["198.51.100.0/24".parse().unwrap()]);
        assert_eq!(
            ingress[1].src.not_nets,
            ["198.51.100.128/26".parse().unwrap()]
        );
        assert_eq!(ingress[1].src.selector, None);
        assert_eq!(ingress[1].dst.ports, [PortMatch::Range(80, 80)]);
        let egress = p.egress.unwrap();
        assert_eq!(egress.len(), 5);
        assert_eq!(egress[0], Rule::allow_all(0));
        assert!(
            egress[1..]
                .iter()
                .all(|r| r.source_index == 1 && r.src.is_unconstrained())
        );
        assert_eq!(egress[2].dst.nets, ["198.51.100.0/24".parse().unwrap()]);
        assert_eq!(egress[2].dst.ports, [PortMatch::Range(80, 80)]);
        assert_eq!(egress[2].ip_version, Some(crate::policy::IpVersion::V4));
    }

    /// Which of these label sets a single-peer rule's source selector matches.
    fn peer_matches(peer: Value) -> Vec<bool> {
        let p = knp(json!({ "podSelector": {}, "ingress": [{ "from": [peer] }] }));
        let selector = p.ingress.unwrap()[0].src.selector.clone().unwrap();
        let candidates = [
            pod("shop", "k8s", &[("color", "red"), ("tier", "be")]),
            pod("other", "k8s", &[("color", "red")]),
            pod("shop", "openstack", &[("color", "red")]),
            pod("shop", "k8s", &[("color", "blue")]),
            // A namespaced network set of the namespace, and a host endpoint.
            {
                let mut l = pod("shop", "", &[("color", "red")]);
                l.remove("projectcalico.org/orchestrator");
                l
            },
            labels_of(&[("color", "red")]),
        ];
        candidates.iter().map(|l| selector.matches(l)).collect()
    }

    #[test]
    fn selector_peers_reach_kubernetes_pods_only() {
        let cases = [
            (
                json!({ "podSelector": { "matchLabels": { "color": "red" } } }),
                vec![true, false, false, false, false, false],
            ),
            (
                json!({ "namespaceSelector": {} }),
                vec![true, true, false, true, false, false],
            ),
            (
                json!({ "namespaceSelector": { "matchLabels": { "shape": "square" } } }),
                vec![false, true, false, false, false, false],
            ),
            (
                json!({ "namespaceSelector": {}, "podSelector": { "matchLabels": { "color": "red" } } }),
                vec![true, true, false, false, false, false],
            ),
            (
                json!({ "podSelector": { "matchExpressions": [{ "key": "color", "operator": "In", "values": ["red", "green"] }] } }),
                vec![true, false, false, false, false, false],
            ),
            (
                json!({ "podSelector": { "matchExpressions": [{ "key": "tier", "operator": "NotIn", "values": ["be"] }] } }),
                vec![false, false, false, true, false, false],
            ),
            (
                json!({ "podSelector": { "matchExpressions": [{ "key": "tier", "operator": "Exists" }] } }),
                vec![true, false, false, false, false, false],
            ),
            (
                json!({ "podSelector": { "matchExpressions": [{ "key": "tier", "operator": "DoesNotExist" }] } }),
                vec![false, false, false, true, false, false],
            ),
        ];
        for (peer, want) in cases {
            assert_eq!(peer_matches(peer.clone()), want, "{peer}");
        }
    }

    #[test]
    fn bad_ports_and_operators_are_problems() {
        let cases = [
            json!({ "ingress": [{ "ports": [{ "port": 90, "endPort": 80 }] }] }),
            json!({ "ingress": [{ "ports": [{ "protocol": "ICMP" }] }] }),
            json!({ "ingress": [{ "ports": [{ "port": 0 }] }] }),
            json!({ "ingress": [{ "ports": [{ "port": "http", "endPort": 90 }] }] }),
            json!({ "podSelector": { "matchExpressions": [{ "key": "a", "operator": "Gt" }] } }),
            json!({ "policyTypes": ["ingress"] }),
        ];
        for spec in cases {
            let resources = vec![res("KNP", "shop/k", &[], spec.clone())];
            let result = crate::policy::resolve::resolve_resources(
                &resources,
                crate::policy::testing::no_failsafe(),
            );
            assert!(result.is_err(), "{spec} was accepted");
        }
    }
}
