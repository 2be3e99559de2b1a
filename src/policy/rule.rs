//! The normalized rule: one shape for v3 policies, v1 policies, profiles and converted
//! Kubernetes policies, with every selector already in its effective form (SPEC §5).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::flow::protocol;
use super::labels;
use crate::model::Problem;
use crate::model::Resource;
use crate::model::resources::{self, IcmpFields, PortValue, ProtocolValue};
use crate::selector::Selector;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
    /// Skip the rest of the tier (in a profile: the rest of the profile).
    Pass,
    /// Note the packet and carry on with the next rule; never decides.
    Log,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
            Action::Log => "Log",
        }
    }
}

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    pub fn of_addr(addr: IpAddr) -> IpVersion {
        if addr.is_ipv4() {
            IpVersion::V4
        } else {
            IpVersion::V6
        }
    }

    pub fn of_net(net: &IpNet) -> IpVersion {
        IpVersion::of_addr(net.addr())
    }

    pub fn number(self) -> u8 {
        match self {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        }
    }
}

/// An ICMP match: a type with any code, or an exact type and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

impl fmt::Display for IcmpMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "type {} code {}", self.icmp_type, code),
            None => write!(f, "type {}", self.icmp_type),
        }
    }
}

/// One entry of `ports`/`notPorts`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// Inclusive range; a single port N is `Range(N, N)`.
    Range(u16, u16),
    /// A named port, resolved per endpoint (SPEC §5).
    Named(String),
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortMatch::Range(lo, hi) if lo == hi => write!(f, "{lo}"),
            PortMatch::Range(lo, hi) => write!(f, "{lo}:{hi}"),
            PortMatch::Named(name) => f.write_str(name),
        }
    }
}

/// The source or destination criteria of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Side {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    /// The effective positive selector (SPEC §5): namespace scoping, namespace selector and
    /// service accounts folded in. Matched with IP-set semantics.
    pub selector: Option<Selector>,
    /// Used raw: no namespace scoping, no prefixing.
    pub not_selector: Option<Selector>,
    pub ports: Vec<PortMatch>,
    pub not_ports: Vec<PortMatch>,
}

impl Side {
    /// Whether this side sets no criterion at all.
    pub fn is_unconstrained(&self) -> bool {
        *self == Side::default()
    }

    fn all_nets(&self) -> impl Iterator<Item = &IpNet> {
        self.nets.iter().chain(self.not_nets.iter())
    }
}

/// One normalized rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    /// The family the rule is limited to: `ipVersion`, else implied by protocol ICMP (IPv4) or
    /// ICMPv6 (IPv6), else by the family of its CIDRs.
    pub ip_version: Option<IpVersion>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub src: Side,
    pub dst: Side,
    /// Index of the rule this one came from in its resource's list for the direction (for a
    /// Kubernetes policy, the Kubernetes rule that produced it).
    pub source_index: usize,
}

impl Rule {
    /// An Allow rule with no criteria.
    pub fn allow_all(source_index: usize) -> Rule {
        Rule {
            action: Action::Allow,
            protocol: None,
            not_protocol: None,
            ip_version: None,
            icmp: None,
            not_icmp: None,
            src: Side::default(),
            dst: Side::default(),
            source_index,
        }
    }

    /// Every CIDR of the rule, on both sides, positive and negative.
    pub fn all_nets(&self) -> impl Iterator<Item = &IpNet> {
        self.src.all_nets().chain(self.dst.all_nets())
    }
}

// ---------------------------------------------------------------------------------------------
// Normalization

/// Which rule dialect a resource speaks: names and actions differ in case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    V3,
    V1,
}

/// A source or destination block before its selectors are combined (SPEC §5). Kubernetes
/// peers are converted into this form too, so that every kind goes through one combination.
#[derive(Debug, Clone, Default)]
pub(crate) struct EntityParts {
    pub selector: Option<Selector>,
    pub not_selector: Option<Selector>,
    pub namespace_selector: Option<Selector>,
    pub service_account_names: Vec<String>,
    pub service_account_selector: Option<Selector>,
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    pub ports: Vec<PortMatch>,
    pub not_ports: Vec<PortMatch>,
}

impl EntityParts {
    /// Combine into a [`Side`] for a rule of a policy in namespace `ns` (empty for global
    /// policies and profiles).
    pub fn into_side(self, ns: &str) -> Side {
        let selector = effective_rule_selector(&self, ns);
        Side {
            nets: self.nets,
            not_nets: self.not_nets,
            selector,
            not_selector: self.not_selector,
            ports: self.ports,
            not_ports: self.not_ports,
        }
    }
}

/// The effective positive selector of a rule block (SPEC §5), as Calico's converter builds it:
/// service accounts AND selector, then the namespace part when the policy is namespaced or a
/// namespaceSelector is set, but only if some selector field is used at all.
pub(crate) fn effective_rule_selector(parts: &EntityParts, ns: &str) -> Option<Selector> {
    let service_accounts = and_all([
        (!parts.service_account_names.is_empty())
            .then(|| Selector::in_set(labels::SERVICE_ACCOUNT, &parts.service_account_names)),
        parts
            .service_account_selector
            .as_ref()
            .map(|s| s.with_prefixed_labels(labels::SERVICE_ACCOUNT_PREFIX)),
    ]);
    let selector = and_all([service_accounts, parts.selector.clone()]);

    let namespace_part = match (&parts.namespace_selector, ns) {
        (Some(ns_selector), _) => Some(namespace_selector_to_label_selector(ns_selector)),
        (None, "") => None,
        (None, ns) => Some(Selector::equals(labels::NAMESPACE, ns)),
    };
    let any_selector_field =
        selector.is_some() || parts.not_selector.is_some() || parts.namespace_selector.is_some();
    match namespace_part {
        Some(ns_part) if any_selector_field => and_all([Some(ns_part), selector]),
        _ => selector,
    }
}

/// A rule's `namespaceSelector` as a selector over entity labels: namespace labels carry the
/// `pcns.` prefix, `all()` means "in some namespace" and `global()` "in no namespace".
pub(crate) fn namespace_selector_to_label_selector(ns_selector: &Selector) -> Selector {
    ns_selector
        .with_prefixed_labels(labels::NAMESPACE_PREFIX)
        .replace_all(&Selector::has(labels::NAMESPACE))
        .replace_global(&Selector::has(labels::NAMESPACE).negate())
}

/// AND of the selectors present, or `None` when none is.
pub(crate) fn and_all<const N: usize>(parts: [Option<Selector>; N]) -> Option<Selector> {
    parts.into_iter().flatten().reduce(|acc, s| acc.and(&s))
}

/// Normalizes the rules of one resource, collecting problems with field paths.
pub(crate) struct RuleNormalizer<'a> {
    pub resource: &'a Resource,
    pub dialect: Dialect,
    /// Namespace of the policy (empty for global policies, v1 policies and profiles).
    pub namespace: &'a str,
}

impl RuleNormalizer<'_> {
    pub fn problem(&self, path: &str, message: impl Into<String>) -> Problem {
        self.resource.problem(path, message)
    }

    pub fn v3_rules(
        &self,
        list_path: &str,
        rules: &[resources::Rule],
    ) -> Result<Vec<Rule>, Vec<Problem>> {
        collect_all(
            rules
                .iter()
                .enumerate()
                .map(|(index, rule)| self.v3_rule(&format!("{list_path}[{index}]"), index, rule)),
        )
    }

    pub fn v1_rules(
        &self,
        list_path: &str,
        rules: &[resources::V1Rule],
    ) -> Result<Vec<Rule>, Vec<Problem>> {
        collect_all(
            rules
                .iter()
                .enumerate()
                .map(|(index, rule)| self.v1_rule(&format!("{list_path}[{index}]"), index, rule)),
        )
    }

    fn v3_rule(&self, path: &str, index: usize, rule: &resources::Rule) -> Result<Rule, Problem> {
        if rule.http.is_some() {
            return Err(self.problem(&format!("{path}.http"), "HTTP matches are not supported"));
        }
        let src = self.v3_entity(&format!("{path}.source"), &rule.source)?;
        let dst = self.v3_entity(&format!("{path}.destination"), &rule.destination)?;
        self.finish_rule(
            path,
            index,
            CommonFields {
                action: &rule.action,
                protocol: rule.protocol.as_ref(),
                not_protocol: rule.not_protocol.as_ref(),
                icmp: rule.icmp.as_ref(),
                not_icmp: rule.not_icmp.as_ref(),
                ip_version: rule.ip_version,
            },
            src,
            dst,
        )
    }

    fn v1_rule(&self, path: &str, index: usize, rule: &resources::V1Rule) -> Result<Rule, Problem> {
        let src = self.v1_entity(&format!("{path}.source"), &rule.source)?;
        let dst = self.v1_entity(&format!("{path}.destination"), &rule.destination)?;
        self.finish_rule(
            path,
            index,
            CommonFields {
                action: &rule.action,
                protocol: rule.protocol.as_ref(),
                not_protocol: rule.not_protocol.as_ref(),
                icmp: rule.icmp.as_ref(),
                not_icmp: rule.not_icmp.as_ref(),
                ip_version: rule.ip_version,
            },
            src,
            dst,
        )
    }

    fn finish_rule(
        &self,
        path: &str,
        index: usize,
        fields: CommonFields<'_>,
        src: EntityParts,
        dst: EntityParts,
    ) -> Result<Rule, Problem> {
        let action = self.action(&format!("{path}.action"), fields.action)?;
        let protocol = fields
            .protocol
            .map(|p| self.protocol(&format!("{path}.protocol"), p))
            .transpose()?;
        let not_protocol = fields
            .not_protocol
            .map(|p| self.protocol(&format!("{path}.notProtocol"), p))
            .transpose()?;
        let icmp = self.icmp(&format!("{path}.icmp"), fields.icmp)?;
        let not_icmp = self.icmp(&format!("{path}.notICMP"), fields.not_icmp)?;
        let explicit_version = fields
            .ip_version
            .map(|v| match v {
                4 => Ok(IpVersion::V4),
                6 => Ok(IpVersion::V6),
                other => Err(self.problem(
                    &format!("{path}.ipVersion"),
                    format!("ipVersion must be 4 or 6, not {other}"),
                )),
            })
            .transpose()?;
        let mut rule = Rule {
            action,
            protocol,
            not_protocol,
            ip_version: None,
            icmp,
            not_icmp,
            src: src.into_side(self.namespace),
            dst: dst.into_side(self.namespace),
            source_index: index,
        };
        rule.ip_version = rule_ip_version(explicit_version, &rule)
            .map_err(|message| self.problem(path, message))?;
        Ok(rule)
    }

    fn v3_entity(
        &self,
        path: &str,
        entity: &resources::EntityRule,
    ) -> Result<EntityParts, Problem> {
        if entity.services.is_some() {
            return Err(self.problem(
                &format!("{path}.services"),
                "service matches are not supported",
            ));
        }
        let (service_account_names, service_account_selector) = match &entity.service_accounts {
            Some(sa) => (
                sa.names.clone(),
                self.optional_selector(
                    &format!("{path}.serviceAccounts.selector"),
                    sa.selector.as_deref(),
                )?,
            ),
            None => (Vec::new(), None),
        };
        Ok(EntityParts {
            selector: self
                .optional_selector(&format!("{path}.selector"), entity.selector.as_deref())?,
            not_selector: self.optional_selector(
                &format!("{path}.notSelector"),
                entity.not_selector.as_deref(),
            )?,
            namespace_selector: self.optional_selector(
                &format!("{path}.namespaceSelector"),
                entity.namespace_selector.as_deref(),
            )?,
            service_account_names,
            service_account_selector,
            nets: self.nets(&format!("{path}.nets"), &entity.nets)?,
            not_nets: self.nets(&format!("{path}.notNets"), &entity.not_nets)?,
            ports: self.ports(&format!("{path}.ports"), &entity.ports)?,
            not_ports: self.ports(&format!("{path}.notPorts"), &entity.not_ports)?,
        })
    }

    /// v1 blocks: the old single `net`/`notNet` fold into the lists.
    fn v1_entity(
        &self,
        path: &str,
        entity: &resources::V1EntityRule,
    ) -> Result<EntityParts, Problem> {
        if entity.tag.is_some() || entity.not_tag.is_some() {
            return Err(self.problem(&format!("{path}.tag"), "tag matches are not supported"));
        }
        let mut nets = self.nets(&format!("{path}.nets"), &entity.nets)?;
        if let Some(net) = &entity.net {
            nets.push(self.net(&format!("{path}.net"), net)?);
        }
        let mut not_nets = self.nets(&format!("{path}.notNets"), &entity.not_nets)?;
        if let Some(net) = &entity.not_net {
            not_nets.push(self.net(&format!("{path}.notNet"), net)?);
        }
        Ok(EntityParts {
            selector: self
                .optional_selector(&format!("{path}.selector"), entity.selector.as_deref())?,
            not_selector: self.optional_selector(
                &format!("{path}.notSelector"),
                entity.not_selector.as_deref(),
            )?,
            nets,
            not_nets,
            ports: self.ports(&format!("{path}.ports"), &entity.ports)?,
            not_ports: self.ports(&format!("{path}.notPorts"), &entity.not_ports)?,
            ..EntityParts::default()
        })
    }

    fn action(&self, path: &str, text: &str) -> Result<Action, Problem> {
        let action = match (self.dialect, text) {
            (Dialect::V3, "Allow") | (Dialect::V1, "allow") => Action::Allow,
            (Dialect::V3, "Deny") | (Dialect::V1, "deny") => Action::Deny,
            (Dialect::V3, "Pass") | (Dialect::V1, "pass") => Action::Pass,
            (Dialect::V3, "Log") | (Dialect::V1, "log") => Action::Log,
            _ => return Err(self.problem(path, format!("unknown action {text:?}"))),
        };
        Ok(action)
    }

    pub fn protocol(&self, path: &str, value: &ProtocolValue) -> Result<u8, Problem> {
        let number = match value {
            ProtocolValue::Number(n) => protocol::from_rule_number(*n),
            ProtocolValue::Text(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                t.parse::<i64>().ok().and_then(protocol::from_rule_number)
            }
            ProtocolValue::Text(t) => match self.dialect {
                Dialect::V3 => protocol::from_v3_name(t),
                Dialect::V1 => protocol::from_v1_name(t),
            },
        };
        number.ok_or_else(|| self.problem(path, format!("unknown protocol {value:?}")))
    }

    fn icmp(&self, path: &str, fields: Option<&IcmpFields>) -> Result<Option<IcmpMatch>, Problem> {
        let Some(fields) = fields else {
            return Ok(None);
        };
        let in_range = |v: i64, what: &str| {
            u8::try_from(v)
                .map_err(|_| self.problem(path, format!("ICMP {what} {v} is out of range")))
        };
        match (fields.icmp_type, fields.code) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(self.problem(path, "an ICMP code needs a type")),
            (Some(t), code) => Ok(Some(IcmpMatch {
                icmp_type: in_range(t, "type")?,
                code: code.map(|c| in_range(c, "code")).transpose()?,
            })),
        }
    }

    /// A selector field; an empty string counts as not set, as in Calico.
    pub fn optional_selector(
        &self,
        path: &str,
        text: Option<&str>,
    ) -> Result<Option<Selector>, Problem> {
        match text {
            None | Some("") => Ok(None),
            Some(text) => Selector::parse(text)
                .map(Some)
                .map_err(|e| self.problem(path, format!("invalid selector: {e}"))),
        }
    }

    pub fn nets(&self, path: &str, texts: &[String]) -> Result<Vec<IpNet>, Problem> {
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| self.net(&format!("{path}[{i}]"), text))
            .collect()
    }

    /// A CIDR or bare IP, with host bits cleared (v1 and Kubernetes normalise them; v3 rules
    /// are validated as already masked, so clearing changes nothing there).
    pub fn net(&self, path: &str, text: &str) -> Result<IpNet, Problem> {
        parse_net(text)
            .map(|n| n.trunc())
            .ok_or_else(|| self.problem(path, format!("invalid CIDR {text:?}")))
    }

    pub fn ports(&self, path: &str, values: &[PortValue]) -> Result<Vec<PortMatch>, Problem> {
        values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                parse_port(value).ok_or_else(|| {
                    self.problem(&format!("{path}[{i}]"), format!("invalid port {value:?}"))
                })
            })
            .collect()
    }
}

/// The fields every rule dialect shares.
struct CommonFields<'a> {
    action: &'a str,
    protocol: Option<&'a ProtocolValue>,
    not_protocol: Option<&'a ProtocolValue>,
    icmp: Option<&'a IcmpFields>,
    not_icmp: Option<&'a IcmpFields>,
    ip_version: Option<i64>,
}

/// The family a rule is limited to. Validation rejects rules whose family indications
/// disagree; should one get here anyway it is a problem, not a silent guess.
pub(crate) fn rule_ip_version(
    explicit: Option<IpVersion>,
    rule: &Rule,
) -> Result<Option<IpVersion>, String> {
    let implied_by_protocol = match rule.protocol {
        Some(protocol::ICMP) => Some(IpVersion::V4),
        Some(protocol::ICMPV6) => Some(IpVersion::V6),
        _ => None,
    };
    let mut version = explicit;
    let indications = implied_by_protocol
        .into_iter()
        .chain(rule.all_nets().map(IpVersion::of_net));
    for indicated in indications {
        match version {
            Some(v) if v != indicated => {
                return Err(format!(
                    "rule mixes IPv{} and IPv{} (ipVersion, ICMP protocol and CIDRs must agree)",
                    v.number(),
                    indicated.number()
                ));
            }
            _ => version = Some(indicated),
        }
    }
    Ok(version)
}

/// A CIDR, or a bare IP as a host network.
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A port as Calico reads it: a number, `"lo:hi"`, a digit string, else a name.
pub(crate) fn parse_port(value: &PortValue) -> Option<PortMatch> {
    match value {
        PortValue::Number(n) => u16::try_from(*n).ok().map(|p| PortMatch::Range(p, p)),
        PortValue::Text(text) => parse_port_text(text),
    }
}

pub(crate) fn parse_port_text(text: &str) -> Option<PortMatch> {
    let number = |t: &str| -> Option<u16> {
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if let Some((lo, hi)) = text.split_once(':') {
        let (lo, hi) = (number(lo)?, number(hi)?);
        return (lo <= hi).then_some(PortMatch::Range(lo, hi));
    }
    if let Some(p) = number(text) {
        return Some(PortMatch::Range(p, p));
    }
    (!text.is_empty()).then(|| PortMatch::Named(text.to_owned()))
}

/// Run every item, keeping all problems rather than stopping at the first.
pub(crate) fn collect_all<T>(
    items: impl Iterator<Item = Result<T, Problem>>,
) -> Result<Vec<T>, Vec<Problem>> {
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for item in items {
        match item {
            Ok(v) => values.push(v),
            Err(p) => problems.push(p),
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
    use super::*;
    use crate::model::resources::Labels;
    use crate::policy::testing::labels_of;

    fn sel(text: &str) -> Option<Selector> {
        Some(Selector::parse(text).unwrap())
    }

    /// Entities as rule selectors see them, each with effective labels.
    struct Zoo {
        wep_prod: Labels,
        wep_dev: Labels,
        set_prod: Labels,
        hep: Labels,
        gns: Labels,
    }

    fn zoo() -> Zoo {
        let namespaced = |ns: &str, extra: &[(&str, &str)]| {
            let mut l = labels_of(extra);
            l.insert(labels::NAMESPACE.into(), ns.into());
            l.insert(
                format!("{}{}", labels::NAMESPACE_PREFIX, labels::NAME),
                ns.into(),
            );
            l.insert("pcns.env".into(), ns.into());
            l
        };
        Zoo {
            wep_prod: namespaced(
                "prod",
                &[("role", "db"), ("projectcalico.org/serviceaccount", "api")],
            ),
            wep_dev: namespaced("dev", &[("role", "db")]),
            set_prod: namespaced("prod", &[("role", "db")]),
            hep: labels_of(&[("role", "db")]),
            gns: labels_of(&[("role", "db")]),
        }
    }

    /// What the effective selector of `parts` in namespace `ns` selects, in the order
    /// wep_prod, wep_dev, set_prod, hep, gns; `None` when there is no positive selector.
    fn selects(parts: EntityParts, ns: &str) -> Option<[bool; 5]> {
        let z = zoo();
        effective_rule_selector(&parts, ns)
            .map(|s| [&z.wep_prod, &z.wep_dev, &z.set_prod, &z.hep, &z.gns].map(|l| s.matches(l)))
    }

    #[test]
    fn effective_rule_selectors_follow_calico_scoping() {
        let cases: Vec<(&str, EntityParts, &str, Option<[bool; 5]>)> = vec![
            (
                "NP selector all(): the namespace's WEPs and sets",
                EntityParts {
                    selector: sel("all()"),
                    ..Default::default()
                },
                "prod",
                Some([true, false, true, false, false]),
            ),
            (
                "NP bare selector never reaches a HEP or GNS",
                EntityParts {
                    selector: sel("role == 'db'"),
                    ..Default::default()
                },
                "prod",
                Some([true, false, true, false, false]),
            ),
            (
                "NP namespaceSelector all(): every namespaced entity",
                EntityParts {
                    namespace_selector: sel("all()"),
                    ..Default::default()
                },
                "prod",
                Some([true, true, true, false, false]),
            ),
            (
                "NP namespaceSelector global(): only HEPs and GNSs",
                EntityParts {
                    namespace_selector: sel("global()"),
                    ..Default::default()
                },
                "prod",
                Some([false, false, false, true, true]),
            ),
            (
                "namespaceSelector is matched against pcns. labels",
                EntityParts {
                    namespace_selector: sel("env == 'dev'"),
                    selector: sel("role == 'db'"),
                    ..Default::default()
                },
                "prod",
                Some([false, true, false, false, false]),
            ),
            (
                "NP with only notSelector still gets the namespace term",
                EntityParts {
                    not_selector: sel("role == 'x'"),
                    ..Default::default()
                },
                "prod",
                Some([true, false, true, false, false]),
            ),
            (
                "GNP with only notSelector has no positive selector",
                EntityParts {
                    not_selector: sel("role == 'x'"),
                    ..Default::default()
                },
                "",
                None,
            ),
            (
                "GNP selector covers every kind in every namespace",
                EntityParts {
                    selector: sel("role == 'db'"),
                    ..Default::default()
                },
                "",
                Some([true, true, true, true, true]),
            ),
            (
                "GNP namespaceSelector all() drops HEPs and GNSs",
                EntityParts {
                    selector: sel("role == 'db'"),
                    namespace_selector: sel("all()"),
                    ..Default::default()
                },
                "",
                Some([true, true, true, false, false]),
            ),
            (
                "GNP namespaceSelector global() keeps only HEPs and GNSs",
                EntityParts {
                    selector: sel("all()"),
                    namespace_selector: sel("global()"),
                    ..Default::default()
                },
                "",
                Some([false, false, false, true, true]),
            ),
            (
                "service account names, scoped to the namespace",
                EntityParts {
                    service_account_names: vec!["api".into()],
                    ..Default::default()
                },
                "prod",
                Some([true, false, false, false, false]),
            ),
            (
                "no selector field in an NP: no positive selector at all",
                EntityParts {
                    nets: vec!["192.0.2.0/24".parse().unwrap()],
                    ..Default::default()
                },
                "prod",
                None,
            ),
        ];
        for (what, parts, ns, want) in cases {
            assert_eq!(selects(parts, ns), want, "{what}");
        }
    }

    #[test]
    fn service_account_selector_is_pcsa_prefixed() {
        let parts = EntityParts {
            service_account_selector: sel("projectcalico.org/name == 'api'"),
            ..Default::default()
        };
        let s = effective_rule_selector(&parts, "").unwrap();
        assert!(s.matches(&labels_of(&[("pcsa.projectcalico.org/name", "api")])));
        assert!(!s.matches(&labels_of(&[("projectcalico.org/name", "api")])));
    }

    #[test]
    fn ports_parse_as_calico_reads_them() {
        let cases = [
            (PortValue::Number(80), Some(PortMatch::Range(80, 80))),
            (
                PortValue::Text("443".into()),
                Some(PortMatch::Range(443, 443)),
            ),
            (
                PortValue::Text("8000:9000".into()),
                Some(PortMatch::Range(8000, 9000)),
            ),
            (PortValue::Text("9000:8000".into()), None),
            (
                PortValue::Text("http".into()),
                Some(PortMatch::Named("http".into())),
            ),
            // A dash is not a range: this is a (bad) name, rejected by validation.
            (
                PortValue::Text("8000-9000".into()),
                Some(PortMatch::Named("8000-9000".into())),
            ),
            (PortValue::Number(65536), None),
            (PortValue::Text(String::new()), None),
        ];
        for (value, want) in cases {
            assert_eq!(parse_port(&value), want, "{value:?}");
        }
    }
}
