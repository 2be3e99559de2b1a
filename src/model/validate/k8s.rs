//! Kubernetes NetworkPolicy: the light part of the Kubernetes API validation that keeps the
//! conversion of SPEC §7 well defined.

use ipnet::IpNet;

use super::{Check, names, values};
use crate::model::resources::{IntOrString, K8sNetworkPolicySpec, K8sPeer, K8sPort, LabelSelector};

const POLICY_TYPES: [&str; 2] = ["Ingress", "Egress"];
const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];

pub(super) fn check_network_policy(check: &mut Check, spec: &K8sNetworkPolicySpec) {
    check_label_selector(check, "spec.podSelector", &spec.pod_selector);
    check_policy_types(check, &spec.policy_types);
    if !check.rule_count_within_limit(spec.ingress.len() + spec.egress.len()) {
        return;
    }
    for (i, rule) in spec.ingress.iter().enumerate() {
        check_peers(check, &format!("spec.ingress[{i}].from"), &rule.from);
        check_ports(check, &format!("spec.ingress[{i}].ports"), &rule.ports);
    }
    for (i, rule) in spec.egress.iter().enumerate() {
        check_peers(check, &format!("spec.egress[{i}].to"), &rule.to);
        check_ports(check, &format!("spec.egress[{i}].ports"), &rule.ports);
    }
}

fn check_policy_types(check: &mut Check, types: &[String]) {
    for (i, t) in types.iter().enumerate() {
        if !POLICY_TYPES.contains(&t.as_str()) {
            check.report(
                &format!("spec.policyTypes[{i}]"),
                format!("policy type {t:?} is not valid: use Ingress or Egress"),
            );
        } else if types[..i].contains(t) {
            check.report(
                &format!("spec.policyTypes[{i}]"),
                format!("policy type {t:?} is listed twice: list each type once"),
            );
        }
    }
}

fn check_peers(check: &mut Check, list: &str, peers: &[K8sPeer]) {
    for (i, peer) in peers.iter().enumerate() {
        let path = format!("{list}[{i}]");
        let selectors = usize::from(peer.pod_selector.is_some())
            + usize::from(peer.namespace_selector.is_some());
        match (&peer.ip_block, selectors) {
            (None, 0) => check.report(
                &path,
                "a peer needs podSelector, namespaceSelector or ipBlock",
            ),
            (Some(_), 1..) => check.report(
                &path,
                "ipBlock cannot be combined with podSelector or namespaceSelector in one peer: \
                 use separate peers",
            ),
            _ => {}
        }
        if let Some(selector) = &peer.pod_selector {
            check_label_selector(check, &format!("{path}.podSelector"), selector);
        }
        if let Some(selector) = &peer.namespace_selector {
            check_label_selector(check, &format!("{path}.namespaceSelector"), selector);
        }
        if let Some(block) = &peer.ip_block {
            let block_path = format!("{path}.ipBlock");
            let block_net = check.accept(cidr(&block.cidr), || format!("{block_path}.cidr"));
            for (j, except) in block.except.iter().enumerate() {
                let field = || format!("{block_path}.except[{j}]");
                let Some(except_net) = check.accept(cidr(except), field) else {
                    continue;
                };
                if let Some(block_net) = block_net {
                    if let Err(message) = except_within(&block_net, &except_net, except) {
                        check.report(&field(), message);
                    }
                }
            }
        }
    }
}

/// Kubernetes ipBlock values are CIDRs, always with a prefix length.
fn cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .map_err(|_| format!("{text:?} is not a valid CIDR (e.g. 192.0.2.0/24 or 2001:db8::/32)"))
}

/// An `except` entry must lie strictly inside the block's CIDR.
fn except_within(cidr: &IpNet, except: &IpNet, text: &str) -> Result<(), String> {
    let (cidr, except) = (cidr.trunc(), except.trunc());
    if cidr.contains(&except) && except.prefix_len() > cidr.prefix_len() {
        Ok(())
    } else {
        Err(format!(
            "except {text:?} must be a strict subset of the block's cidr {cidr}"
        ))
    }
}

fn check_ports(check: &mut Check, list: &str, ports: &[K8sPort]) {
    for (i, port) in ports.iter().enumerate() {
        let path = format!("{list}[{i}]");
        if let Some(protocol) = port.protocol.as_deref() {
            if !PROTOCOLS.contains(&protocol) {
                check.report(
                    &format!("{path}.protocol"),
                    format!("protocol {protocol:?} is not valid: use TCP, UDP or SCTP"),
                );
            }
        }
        let start = match &port.port {
            Some(IntOrString::Int(n)) => check
                .accept(values::port_number(*n, &n.to_string()), || {
                    format!("{path}.port")
                }),
            Some(IntOrString::Text(name)) => {
                check.accept(names::check_port_name(name), || format!("{path}.port"));
                None
            }
            None => None,
        };
        let Some(end) = port.end_port else {
            continue;
        };
        let end_field = format!("{path}.endPort");
        if check
            .accept(values::port_number(end, &end.to_string()), || {
                end_field.clone()
            })
            .is_none()
        {
            continue;
        }
        match (&port.port, start) {
            (Some(IntOrString::Int(_)), Some(start)) if end < i64::from(start) => check.report(
                &end_field,
                format!("endPort {end} is below port {start}: endPort must be at least port"),
            ),
            (Some(IntOrString::Int(_)), _) => {}
            (Some(IntOrString::Text(_)), _) | (None, _) => check.report(
                &end_field,
                "endPort needs a numeric port: a range is port..endPort",
            ),
        }
    }
}

fn check_label_selector(check: &mut Check, path: &str, selector: &LabelSelector) {
    for (key, value) in &selector.match_labels {
        let field = || format!("{path}.matchLabels.{key}");
        if check.accept(names::check_label_key(key), field).is_some() {
            check.accept(names::check_label_value(value), field);
        }
    }
    for (i, requirement) in selector.match_expressions.iter().enumerate() {
        let base = format!("{path}.matchExpressions[{i}]");
        check.accept(names::check_label_key(&requirement.key), || {
            format!("{base}.key")
        });
        let values = &requirement.values;
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => check.report(
                &format!("{base}.values"),
                format!(
                    "operator {} needs at least one value: list the values to match",
                    requirement.operator
                ),
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => check.report(
                &format!("{base}.values"),
                format!(
                    "operator {} takes no values: remove values",
                    requirement.operator
                ),
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => check.report(
                &format!("{base}.operator"),
                format!("operator {other:?} is not valid: use In, NotIn, Exists or DoesNotExist"),
            ),
        }
        for (j, value) in values.iter().enumerate() {
            check.accept(names::check_label_value(value), || {
                format!("{base}.values[{j}]")
            });
        }
    }
}
