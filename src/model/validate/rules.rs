//! Calico rules: v3 (`projectcalico.org/v3` policies and profiles) and the old v1 policy.
//!
//! Both dialects are checked by one core over a borrowed view of the rule; the dialect decides
//! the spelling of actions and protocols and whether CIDRs must be strictly masked. What only
//! one dialect has (v3 `http`/`services`, v1 `net`/`tag`) is checked beside the core.

use super::Check;
use super::selectors::{self, Place};
use super::values::{self, Dialect, PortEntry};
use crate::model::resources::{
    EntityRule, IcmpFields, PortValue, ProtocolValue, Rule, V1EntityRule, V1Rule,
};

const V3_ACTIONS: [&str; 4] = ["Allow", "Deny", "Log", "Pass"];
const V1_ACTIONS: [&str; 4] = ["allow", "deny", "log", "pass"];
const MAX_ICMP_TYPE: i64 = 254;
const MAX_ICMP_CODE: i64 = 255;

/// Checks the v3 rules of one list, e.g. `spec.ingress`.
pub(super) fn check_v3_rules(check: &mut Check, list: &str, rules: &[Rule]) {
    for (i, rule) in rules.iter().enumerate() {
        check_v3_rule(check, &format!("{list}[{i}]"), rule);
    }
}

/// Checks the rules of one v1 policy list.
pub(super) fn check_v1_rules(check: &mut Check, list: &str, rules: &[V1Rule]) {
    for (i, rule) in rules.iter().enumerate() {
        check_v1_rule(check, &format!("{list}[{i}]"), rule);
    }
}

fn check_v3_rule(check: &mut Check, path: &str, rule: &Rule) {
    if rule.http.is_some() {
        check.report(
            &format!("{path}.http"),
            "http matches are not supported: portcullis filters at layers 3 and 4; remove the \
             http block",
        );
    }
    for (side, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
        check_v3_entity(check, path, side, entity);
    }
    let core = RuleCore {
        path,
        dialect: Dialect::V3,
        action: &rule.action,
        protocol: rule.protocol.as_ref(),
        not_protocol: rule.not_protocol.as_ref(),
        icmp: rule.icmp.as_ref(),
        not_icmp: rule.not_icmp.as_ref(),
        ip_version: rule.ip_version,
        sides: [
            v3_side("source", &rule.source),
            v3_side("destination", &rule.destination),
        ],
    };
    check_core(check, &core);
}

fn check_v3_entity(check: &mut Check, path: &str, side: &str, entity: &EntityRule) {
    if entity.services.is_some() {
        check.report(
            &format!("{path}.{side}.services"),
            "services matches are not supported: match the service's endpoints with a selector \
             or nets instead",
        );
    }
    let fields = [
        ("selector", entity.selector.as_deref(), Place::Plain),
        ("notSelector", entity.not_selector.as_deref(), Place::Plain),
        (
            "namespaceSelector",
            entity.namespace_selector.as_deref(),
            Place::RuleNamespaceSelector,
        ),
        (
            "serviceAccounts.selector",
            entity
                .service_accounts
                .as_ref()
                .and_then(|sa| sa.selector.as_deref()),
            Place::Plain,
        ),
    ];
    for (name, text, place) in fields {
        if let Some(text) = text {
            selectors::check(check, || format!("{path}.{side}.{name}"), text, place);
        }
    }
}

fn v3_side<'a>(name: &'static str, entity: &'a EntityRule) -> Side<'a> {
    let nets = list_nets("nets", &entity.nets, false)
        .chain(list_nets("notNets", &entity.not_nets, true))
        .collect();
    Side {
        name,
        nets,
        ports: &entity.ports,
        not_ports: &entity.not_ports,
    }
}

fn check_v1_rule(check: &mut Check, path: &str, rule: &V1Rule) {
    for (side, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
        check_v1_entity(check, path, side, entity);
    }
    check_v1_net_forms(check, path, rule);
    let core = RuleCore {
        path,
        dialect: Dialect::V1,
        action: &rule.action,
        protocol: rule.protocol.as_ref(),
        not_protocol: rule.not_protocol.as_ref(),
        icmp: rule.icmp.as_ref(),
        not_icmp: rule.not_icmp.as_ref(),
        ip_version: rule.ip_version,
        sides: [
            v1_side("source", &rule.source),
            v1_side("destination", &rule.destination),
        ],
    };
    check_core(check, &core);
}

fn check_v1_entity(check: &mut Check, path: &str, side: &str, entity: &V1EntityRule) {
    for (name, value) in [("tag", &entity.tag), ("notTag", &entity.not_tag)] {
        if value.is_some() {
            check.report(
                &format!("{path}.{side}.{name}"),
                format!(
                    "{name} matches are not supported (profile tags were removed from Calico): \
                     match labels with a {} instead",
                    if name == "tag" {
                        "selector"
                    } else {
                        "notSelector"
                    }
                ),
            );
        }
    }
    for (name, text) in [
        ("selector", entity.selector.as_deref()),
        ("notSelector", entity.not_selector.as_deref()),
    ] {
        if let Some(text) = text {
            selectors::check(
                check,
                || format!("{path}.{side}.{name}"),
                text,
                Place::Plain,
            );
        }
    }
}

/// v1 had single `net`/`notNet` fields before the `nets`/`notNets` lists; one rule may use
/// one form or the other, not both.
fn check_v1_net_forms(check: &mut Check, path: &str, rule: &V1Rule) {
    let sides = [("source", &rule.source), ("destination", &rule.destination)];
    let old_form = sides.iter().find_map(|(side, e)| {
        if e.net.is_some() {
            Some(format!("{side}.net"))
        } else if e.not_net.is_some() {
            Some(format!("{side}.notNet"))
        } else {
            None
        }
    });
    let new_form = sides
        .iter()
        .any(|(_, e)| !e.nets.is_empty() || !e.not_nets.is_empty());
    if let (Some(old), true) = (old_form, new_form) {
        check.report(
            &format!("{path}.{old}"),
            "a rule may not mix the old net/notNet fields with nets/notNets: use nets/notNets \
             only",
        );
    }
}

fn v1_side<'a>(name: &'static str, entity: &'a V1EntityRule) -> Side<'a> {
    let single = |list: &'static str, value: &'a Option<String>, negated: bool| {
        value.as_deref().map(|text| NetRef {
            list,
            index: None,
            text,
            negated,
        })
    };
    let nets = single("net", &entity.net, false)
        .into_iter()
        .chain(single("notNet", &entity.not_net, true))
        .chain(list_nets("nets", &entity.nets, false))
        .chain(list_nets("notNets", &entity.not_nets, true))
        .collect();
    Side {
        name,
        nets,
        ports: &entity.ports,
        not_ports: &entity.not_ports,
    }
}

fn list_nets<'a>(
    list: &'static str,
    texts: &'a [String],
    negated: bool,
) -> impl Iterator<Item = NetRef<'a>> {
    texts.iter().enumerate().map(move |(i, text)| NetRef {
        list,
        index: Some(i),
        text,
        negated,
    })
}

/// What both dialects share, borrowed from the rule.
struct RuleCore<'a> {
    path: &'a str,
    dialect: Dialect,
    action: &'a str,
    protocol: Option<&'a ProtocolValue>,
    not_protocol: Option<&'a ProtocolValue>,
    icmp: Option<&'a IcmpFields>,
    not_icmp: Option<&'a IcmpFields>,
    ip_version: Option<i64>,
    sides: [Side<'a>; 2],
}

struct Side<'a> {
    /// `source` or `destination`.
    name: &'static str,
    nets: Vec<NetRef<'a>>,
    ports: &'a [PortValue],
    not_ports: &'a [PortValue],
}

/// One CIDR of a side, with where it is written.
struct NetRef<'a> {
    /// Field name: `nets`, `notNets`, or v1's single `net`/`notNet`.
    list: &'static str,
    index: Option<usize>,
    text: &'a str,
    negated: bool,
}

impl NetRef<'_> {
    fn field(&self, path: &str, side: &str) -> String {
        match self.index {
            Some(i) => format!("{path}.{side}.{}[{i}]", self.list),
            None => format!("{path}.{side}.{}", self.list),
        }
    }
}

/// A rule's protocol after checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Unset,
    /// Already reported; checks that depend on the protocol stay quiet.
    Invalid,
    Number(u8),
}

fn check_core(check: &mut Check, rule: &RuleCore) {
    check_action(check, rule);
    let ip_version = check_ip_version(check, rule);
    let protocol = check_protocol(check, rule, "protocol", rule.protocol);
    let not_protocol = check_protocol(check, rule, "notProtocol", rule.not_protocol);
    for (field, proto) in [("protocol", protocol), ("notProtocol", not_protocol)] {
        check_icmp_family(check, rule, field, proto, ip_version);
    }
    check_icmp(check, rule, "icmp", rule.icmp, protocol);
    check_icmp(check, rule, "notICMP", rule.not_icmp, protocol);
    for side in &rule.sides {
        check_ports(check, rule, side, "ports", side.ports, protocol);
        check_ports(check, rule, side, "notPorts", side.not_ports, protocol);
    }
    check_nets(check, rule, ip_version, protocol);
}

fn check_action(check: &mut Check, rule: &RuleCore) {
    let (allowed, api) = match rule.dialect {
        Dialect::V3 => (V3_ACTIONS, "projectcalico.org/v3"),
        Dialect::V1 => (V1_ACTIONS, "a v1 policy"),
    };
    if !allowed.contains(&rule.action) {
        check.report(
            &format!("{}.action", rule.path),
            format!(
                "action {:?} is not valid in {api}: use {}",
                rule.action,
                one_of(&allowed)
            ),
        );
    }
}

/// The rule's IP family restriction, when valid.
fn check_ip_version(check: &mut Check, rule: &RuleCore) -> Option<u8> {
    match rule.ip_version {
        None => None,
        Some(4) => Some(4),
        Some(6) => Some(6),
        Some(other) => {
            check.report(
                &format!("{}.ipVersion", rule.path),
                format!("ipVersion {other} is not valid: use 4 or 6"),
            );
            None
        }
    }
}

fn check_protocol(
    check: &mut Check,
    rule: &RuleCore,
    field: &str,
    value: Option<&ProtocolValue>,
) -> Protocol {
    let Some(value) = value else {
        return Protocol::Unset;
    };
    match check.accept(values::protocol(value, rule.dialect), || {
        format!("{}.{field}", rule.path)
    }) {
        Some(number) => Protocol::Number(number),
        None => Protocol::Invalid,
    }
}

/// ICMP is IPv4 and ICMPv6 is IPv6; `ipVersion` may not say otherwise.
fn check_icmp_family(
    check: &mut Check,
    rule: &RuleCore,
    field: &str,
    protocol: Protocol,
    ip_version: Option<u8>,
) {
    let Protocol::Number(number) = protocol else {
        return;
    };
    let (Some(implied), Some(version)) = (values::icmp_family(number), ip_version) else {
        return;
    };
    if implied != version {
        let other = if implied == 4 {
            values::PROTO_ICMPV6
        } else {
            values::PROTO_ICMP
        };
        check.report(
            &format!("{}.{field}", rule.path),
            format!(
                "{field} {} is IPv{implied} only but ipVersion is {version}: use {} for \
                 IPv{version}, or ipVersion {implied}",
                values::protocol_name(number, rule.dialect),
                values::protocol_name(other, rule.dialect),
            ),
        );
    }
}

fn check_icmp(
    check: &mut Check,
    rule: &RuleCore,
    field: &str,
    icmp: Option<&IcmpFields>,
    protocol: Protocol,
) {
    let Some(icmp) = icmp else {
        return;
    };
    let base = format!("{}.{field}", rule.path);
    if let Some(t) = icmp.icmp_type {
        if !(0..=MAX_ICMP_TYPE).contains(&t) {
            check.report(
                &format!("{base}.type"),
                format!("ICMP type {t} is out of range: use 0-{MAX_ICMP_TYPE}"),
            );
        }
    }
    if let Some(code) = icmp.code {
        if !(0..=MAX_ICMP_CODE).contains(&code) {
            check.report(
                &format!("{base}.code"),
                format!("ICMP code {code} is out of range: use 0-{MAX_ICMP_CODE}"),
            );
        }
        if icmp.icmp_type.is_none() {
            check.report(
                &format!("{base}.code"),
                format!("an ICMP code needs a type: set {field}.type too"),
            );
        }
    }
    let icmp_names = match rule.dialect {
        Dialect::V3 => "ICMP or ICMPv6",
        Dialect::V1 => "icmp or icmpv6",
    };
    match protocol {
        Protocol::Unset => check.report(
            &base,
            format!("{field} needs protocol {icmp_names}: set protocol"),
        ),
        Protocol::Number(n) if values::icmp_family(n).is_none() => check.report(
            &base,
            format!(
                "{field} needs protocol {icmp_names}, but protocol is {}",
                values::protocol_name(n, rule.dialect)
            ),
        ),
        Protocol::Number(_) | Protocol::Invalid => {}
    }
}

/// Each port entry must parse, and ports need a protocol that has them (TCP, UDP, SCTP). A
/// list of named ports only may go without a protocol: each name resolves per endpoint to
/// its declared protocol.
fn check_ports(
    check: &mut Check,
    rule: &RuleCore,
    side: &Side,
    list: &str,
    entries: &[PortValue],
    protocol: Protocol,
) {
    let mut first_numeric = None;
    for (i, entry) in entries.iter().enumerate() {
        let parsed = check.accept(values::port(entry), || {
            format!("{}.{}.{list}[{i}]", rule.path, side.name)
        });
        if let Some(PortEntry::Range(..)) = parsed {
            first_numeric.get_or_insert((i, entry));
        }
    }
    if entries.is_empty() {
        return;
    }
    let port_protocols = match rule.dialect {
        Dialect::V3 => "TCP, UDP or SCTP",
        Dialect::V1 => "tcp, udp or sctp",
    };
    match protocol {
        Protocol::Number(n) if !values::supports_ports(n) => check.report(
            &format!("{}.{}.{list}", rule.path, side.name),
            format!(
                "{list} need protocol {port_protocols}, but protocol is {}: remove the ports or \
                 change the protocol",
                values::protocol_name(n, rule.dialect)
            ),
        ),
        Protocol::Unset => {
            if let Some((i, entry)) = first_numeric {
                check.report(
                    &format!("{}.{}.{list}[{i}]", rule.path, side.name),
                    format!(
                        "port {} needs a protocol: set protocol to {port_protocols} (only named \
                         ports may be used without one)",
                        port_text(entry)
                    ),
                );
            }
        }
        Protocol::Number(_) | Protocol::Invalid => {}
    }
}

fn port_text(entry: &PortValue) -> String {
    match entry {
        PortValue::Number(n) => n.to_string(),
        PortValue::Text(t) => format!("{t:?}"),
    }
}

/// CIDRs must parse (strictly masked in v3), agree with `ipVersion` and with an ICMP
/// protocol's family, and one rule may not mix IPv4 and IPv6 across all four lists. A
/// catch-all `notNets` excludes every address of its family, so the rule could never match.
fn check_nets(check: &mut Check, rule: &RuleCore, ip_version: Option<u8>, protocol: Protocol) {
    let strict = rule.dialect == Dialect::V3;
    let implied = match protocol {
        Protocol::Number(n) => values::icmp_family(n),
        Protocol::Unset | Protocol::Invalid => None,
    };
    let mut first_seen: Option<(u8, String, &str)> = None;
    let mut mixing_reported = false;
    for side in &rule.sides {
        for net in &side.nets {
            let field = || net.field(rule.path, side.name);
            let Some(parsed) = check.accept(values::rule_net(net.text, strict), field) else {
                continue;
            };
            let family = values::family(&parsed);
            if net.negated && parsed.prefix_len() == 0 {
                check.report(
                    &field(),
                    format!(
                        "{} {:?} excludes every IPv{family} address, so the rule can never \
                         match: remove it",
                        net.list, net.text
                    ),
                );
            }
            if let Some(version) = ip_version.filter(|v| *v != family) {
                check.report(
                    &field(),
                    format!(
                        "{:?} is IPv{family} but the rule has ipVersion {version}: use an \
                         IPv{version} CIDR or change ipVersion",
                        net.text
                    ),
                );
                continue;
            }
            if let (Some(implied), Protocol::Number(n)) = (implied, protocol) {
                if implied != family {
                    check.report(
                        &field(),
                        format!(
                            "{:?} is IPv{family} but protocol {} only matches IPv{implied}: \
                             use an IPv{implied} CIDR or the other ICMP protocol",
                            net.text,
                            values::protocol_name(n, rule.dialect)
                        ),
                    );
                    continue;
                }
            }
            match &first_seen {
                None => first_seen = Some((family, field(), net.text)),
                Some((first_family, first_field, first_text))
                    if *first_family != family && !mixing_reported =>
                {
                    mixing_reported = true;
                    let first_field = first_field.strip_prefix(rule.path).unwrap_or(first_field);
                    check.report(
                        &field(),
                        format!(
                            "a rule may not mix IPv4 and IPv6: {:?} is IPv{family} but {} \
                             ({first_text:?}) is IPv{first_family}; split it into one rule per \
                             family",
                            net.text,
                            first_field.trim_start_matches('.')
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }
}

/// `A, B, C or D`.
fn one_of(words: &[&str]) -> String {
    match words.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_lists_words() {
        assert_eq!(
            one_of(&["Allow", "Deny", "Log", "Pass"]),
            "Allow, Deny, Log or Pass"
        );
        assert_eq!(one_of(&["a"]), "a");
        assert_eq!(one_of(&[]), "");
    }
}
