//! Resolution: a validated [`Model`] becomes a [`Resolved`] policy set, normalized and ready to
//! evaluate. Effective labels (§2), effective selectors (§3.1, §5), direction defaulting (§3.2),
//! stages (§3.3), ordered tiers and policies (§4.1–4.2), Kubernetes conversion (§7) and the
//! settings a verdict needs all happen here, once, so that the reference evaluator and the
//! compiler of classification trees read the same thing.
//!
//! Resolution runs on a model that validation has accepted, so it is not expected to fail.
//! Should something slip through anyway (an unparseable selector, an undefined tier or
//! profile, a duplicate endpoint address), it returns every such [`Problem`] rather than
//! guessing or skipping: a skipped policy would silently change verdicts, and the caller
//! already knows how to refuse a configuration with problems.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::k8s;
use super::labels::{self, WorkloadLabelSources};
use super::rule::{Dialect, Rule, RuleNormalizer, collect_all, parse_net};
use crate::model::resources::{
    EndpointPort, GlobalNetworkPolicySpec, HostEndpointSpec, Labels, NetworkPolicySpec,
    NetworkSetSpec, ProfileSpec, Spec, TierSpec, V1PolicySpec, WorkloadEndpointSpec,
};
use crate::model::settings::{FailsafePort, UnmatchedTrafficAction};
use crate::model::{Model, Origin, Problem, Resource, Settings};
use crate::selector::Selector;

/// Name of the tier that always exists.
pub const DEFAULT_TIER: &str = "default";
/// Order of the default tier (Calico 3.29+).
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// Order Calico gives every Kubernetes NetworkPolicy.
pub const K8S_POLICY_ORDER: f64 = 1000.0;

/// The policy set, normalized and ordered.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Workload and host endpoints, in directory order.
    pub endpoints: Vec<Endpoint>,
    /// Labelled IP sets that rule selectors match: one per endpoint (same index as in
    /// `endpoints`), then every NetworkSet and GlobalNetworkSet.
    pub entities: Vec<Entity>,
    /// Tiers in evaluation order, each with its policies in evaluation order.
    pub tiers: Vec<Tier>,
    /// Every Profile, in directory order; endpoints refer to them by index.
    pub profiles: Vec<Profile>,
    pub settings: VerdictSettings,
    /// Settings the packet path applies around policy. [`resolve`] fills them from the
    /// model's settings; [`resolve_resources`] leaves the defaults.
    pub path: PathSettings,
    /// Endpoint index of every endpoint address.
    address_index: BTreeMap<IpAddr, usize>,
}

impl Resolved {
    /// The endpoint that owns `addr`, if any (SPEC §2.4).
    pub fn endpoint_at(&self, addr: IpAddr) -> Option<&Endpoint> {
        self.endpoint_index_at(addr)
            .and_then(|i| self.endpoints.get(i))
    }

    /// Index in `endpoints` of the endpoint that owns `addr`.
    pub fn endpoint_index_at(&self, addr: IpAddr) -> Option<usize> {
        self.address_index.get(&addr).copied()
    }

    /// Every endpoint address with its endpoint index.
    pub fn address_index(&self) -> &BTreeMap<IpAddr, usize> {
        &self.address_index
    }

    /// Entities whose addresses contain `addr` (overlaps are a union: all of them).
    pub fn entities_containing(&self, addr: IpAddr) -> impl Iterator<Item = &Entity> {
        self.entities.iter().filter(move |e| e.contains(addr))
    }

    /// The profiles an endpoint lists, in its order.
    pub fn profiles_of<'a>(&'a self, endpoint: &'a Endpoint) -> impl Iterator<Item = &'a Profile> {
        endpoint
            .profiles
            .iter()
            .filter_map(|&i| self.profiles.get(i))
    }
}

/// Settings that take part in verdicts.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictSettings {
    /// Admitted ahead of policy on ingress to a host endpoint, by destination port.
    pub failsafe_inbound: Vec<FailsafePort>,
    /// Admitted ahead of policy on egress from a host endpoint, by destination port.
    pub failsafe_outbound: Vec<FailsafePort>,
    /// Verdict of a flow in which neither address is an endpoint.
    pub unmatched_traffic_action: UnmatchedTrafficAction,
}

impl VerdictSettings {
    pub fn from_settings(settings: &Settings) -> VerdictSettings {
        VerdictSettings {
            failsafe_inbound: settings.failsafe_inbound.clone(),
            failsafe_outbound: settings.failsafe_outbound.clone(),
            unmatched_traffic_action: settings.unmatched_traffic_action,
        }
    }
}

/// Settings the packet path applies around policy (SPEC §A1, §A6). They live with the
/// policy so that a reload changes them together with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSettings {
    /// Drop frames whose source address may not arrive on their port.
    pub anti_spoof: bool,
    /// The networks behind `--inside`, for the strict form of anti-spoofing.
    pub inside_nets: Vec<IpNet>,
    /// EtherTypes forwarded beyond IPv4, IPv6 and ARP.
    pub allowed_ether_types: Vec<u16>,
    /// Log-action lines written per second at most.
    pub log_rate_limit_per_second: u32,
}

impl PathSettings {
    pub fn from_settings(settings: &Settings) -> PathSettings {
        PathSettings {
            anti_spoof: settings.anti_spoof,
            inside_nets: settings.inside_nets.clone(),
            allowed_ether_types: settings.allowed_ether_types.clone(),
            log_rate_limit_per_second: settings.log_rate_limit_per_second,
        }
    }
}

impl Default for PathSettings {
    fn default() -> Self {
        PathSettings::from_settings(&Settings::default())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    Workload,
    Host,
}

/// A WorkloadEndpoint or HostEndpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub kind: EndpointKind,
    pub name: String,
    /// Namespace of a workload endpoint; empty for host endpoints.
    pub namespace: String,
    /// `WorkloadEndpoint/NAMESPACE/NAME` or `HostEndpoint/NAME`, as traces name it.
    pub display_name: String,
    /// Effective labels (SPEC §2.2).
    pub labels: Labels,
    pub addresses: Vec<IpAddr>,
    /// Named ports declared in `spec.ports`.
    pub ports: Vec<NamedPort>,
    /// Indices into [`Resolved::profiles`], in `spec.profiles` order.
    pub profiles: Vec<usize>,
    pub origin: Origin,
}

impl Endpoint {
    /// `KIND/NAME`, as problem lines name a resource.
    pub fn problem_label(&self) -> String {
        let kind = match self.kind {
            EndpointKind::Workload => "WorkloadEndpoint",
            EndpointKind::Host => "HostEndpoint",
        };
        format!("{kind}/{}", self.name)
    }
}

/// A port declared by name on an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamedPort {
    pub name: String,
    pub protocol: u8,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    WorkloadEndpoint,
    HostEndpoint,
    NetworkSet,
    GlobalNetworkSet,
}

/// A labelled set of addresses that rule selectors match (SPEC §5): an endpoint with its own
/// addresses as host routes, or a network set with its CIDRs.
#[derive(Debug, Clone)]
pub struct Entity {
    pub kind: EntityKind,
    pub display_name: String,
    /// Effective labels (SPEC §2.2).
    pub labels: Labels,
    /// Networks with host bits cleared; a network set may be written non-canonically.
    pub nets: Vec<IpNet>,
    /// Index into [`Resolved::endpoints`] when the entity is an endpoint.
    pub endpoint: Option<usize>,
}

impl Entity {
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&addr))
    }
}

/// What a tier does with traffic its policies did not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TierDefaultAction {
    Deny,
    Pass,
}

#[derive(Debug, Clone)]
pub struct Tier {
    pub name: String,
    pub order: Option<f64>,
    pub default_action: TierDefaultAction,
    /// In evaluation order.
    pub policies: Vec<Policy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    GlobalNetworkPolicy,
    NetworkPolicy,
    KubernetesNetworkPolicy,
    /// The old `apiVersion: v1, kind: policy`.
    V1Policy,
}

impl PolicyKind {
    /// The kind as traces print it and as the order tie-break compares it.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::KubernetesNetworkPolicy => "KubernetesNetworkPolicy",
            PolicyKind::V1Policy => "policy",
        }
    }
}

/// Where in a host endpoint's pipeline a policy runs (SPEC §3.3). Workload endpoints run only
/// `Normal` policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// `doNotTrack`: before connection tracking.
    Untracked,
    /// `preDNAT`: ingress only, before DNAT.
    PreDnat,
    Normal,
}

/// Traffic direction from an endpoint's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: PolicyKind,
    pub name: String,
    /// Namespace of an NP or KNP; empty for global kinds.
    pub namespace: String,
    /// `KIND/NAME` or `KIND/NAMESPACE/NAME`, as traces name it.
    pub display_name: String,
    pub order: Option<f64>,
    /// Effective endpoint selector (SPEC §3.1).
    pub selector: Selector,
    pub stage: Stage,
    /// Ingress rules, or `None` when the policy does not govern ingress (its `types` after
    /// defaulting); rules of a direction not governed are dropped.
    pub ingress: Option<Vec<Rule>>,
    /// Egress rules, or `None` when the policy does not govern egress.
    pub egress: Option<Vec<Rule>>,
    pub origin: Origin,
}

impl Policy {
    /// The rules for `direction`, or `None` if the policy does not govern it.
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    pub fn governs(&self, direction: Direction) -> bool {
        self.rules(direction).is_some()
    }

    /// Whether the policy takes part when `stage` runs for `direction` of `endpoint` (§3):
    /// right stage, governs the direction, and its selector selects the endpoint.
    pub fn applies_to(&self, endpoint: &Endpoint, direction: Direction, stage: Stage) -> bool {
        self.stage == stage && self.governs(direction) && self.selector.matches(&endpoint.labels)
    }

    /// The tie-break key among equal orders: current Calico compares `name/namespace/kind`.
    pub fn tie_key(&self) -> String {
        format!("{}/{}/{}", self.name, self.namespace, self.kind.name())
    }
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// `Profile/NAME`.
    pub display_name: String,
    pub labels_to_apply: Labels,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub origin: Origin,
}

impl Profile {
    pub fn rules(&self, direction: Direction) -> &[Rule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// Evaluation precedence of tiers and of policies within a tier: ascending `order` compared as
/// numbers, a missing order counting as +∞ (after every ordered one), ties broken by `key`
/// compared byte-wise. The one comparison both tiers and policies use.
pub fn precedence(
    a_order: Option<f64>,
    a_key: &str,
    b_order: Option<f64>,
    b_key: &str,
) -> Ordering {
    let a = a_order.unwrap_or(f64::INFINITY);
    let b = b_order.unwrap_or(f64::INFINITY);
    // partial_cmp keeps 0.0 == -0.0 as Calico's `==` does; total_cmp only orders NaN, which
    // a YAML `.nan` could produce, so that sorting stays a total order.
    a.partial_cmp(&b)
        .unwrap_or_else(|| a.total_cmp(&b))
        .then_with(|| a_key.as_bytes().cmp(b_key.as_bytes()))
}

/// Resolve a validated model. See the module documentation for when this returns problems.
pub fn resolve(model: &Model) -> Result<Resolved, Vec<Problem>> {
    let mut resolved = resolve_resources(
        &model.resources,
        VerdictSettings::from_settings(&model.settings),
    )?;
    resolved.path = PathSettings::from_settings(&model.settings);
    Ok(resolved)
}

/// Resolve resources with the given verdict settings.
pub fn resolve_resources(
    resources: &[Resource],
    settings: VerdictSettings,
) -> Result<Resolved, Vec<Problem>> {
    let mut problems = Vec::new();
    let namespaces = namespace_labels(resources);
    let profiles = keep(collect_profiles(resources), &mut problems);
    let profile_index: HashMap<&str, usize> = profiles
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let endpoint_ctx = EndpointContext {
        namespaces: &namespaces,
        profiles: &profiles,
        profile_index: &profile_index,
    };
    let endpoints = keep(collect_endpoints(resources, &endpoint_ctx), &mut problems);
    let address_index = keep(index_addresses(&endpoints), &mut problems);
    let entities = keep(
        collect_entities(resources, &endpoints, &namespaces),
        &mut problems,
    );
    let tiers = keep(collect_tiers(resources), &mut problems);
    let policies = keep(collect_policies(resources), &mut problems);
    let tiers = keep(place_policies(tiers, policies), &mut problems);

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Resolved {
        endpoints,
        entities,
        tiers,
        profiles,
        settings,
        path: PathSettings::default(),
        address_index,
    })
}

/// The value of a step that succeeded, or an empty default with its problems recorded.
fn keep<T: Default>(result: Result<T, Vec<Problem>>, problems: &mut Vec<Problem>) -> T {
    result.unwrap_or_else(|mut p| {
        problems.append(&mut p);
        T::default()
    })
}

fn namespace_labels(resources: &[Resource]) -> HashMap<&str, &Labels> {
    resources
        .iter()
        .filter(|r| matches!(r.spec, Spec::Namespace(_)))
        .map(|r| (r.name(), &r.metadata.labels))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Profiles

fn collect_profiles(resources: &[Resource]) -> Result<Vec<Profile>, Vec<Problem>> {
    let profiles = resources.iter().filter_map(|r| match &r.spec {
        Spec::Profile(spec) => Some(profile(r, spec)),
        _ => None,
    });
    flatten_problems(profiles)
}

fn profile(resource: &Resource, spec: &ProfileSpec) -> Result<Profile, Vec<Problem>> {
    let rules = RuleNormalizer {
        resource,
        dialect: Dialect::V3,
        namespace: "",
    };
    let ingress = rules.v3_rules("spec.ingress", &spec.ingress);
    let egress = rules.v3_rules("spec.egress", &spec.egress);
    let (ingress, egress) = both(ingress, egress)?;
    Ok(Profile {
        name: resource.name().to_owned(),
        display_name: resource.display_name(),
        labels_to_apply: spec.labels_to_apply.clone(),
        ingress,
        egress,
        origin: resource.origin.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Endpoints and entities

struct EndpointContext<'a> {
    namespaces: &'a HashMap<&'a str, &'a Labels>,
    profiles: &'a [Profile],
    profile_index: &'a HashMap<&'a str, usize>,
}

impl EndpointContext<'_> {
    fn profile_indices(
        &self,
        resource: &Resource,
        names: &[String],
    ) -> Result<Vec<usize>, Vec<Problem>> {
        collect_all(names.iter().enumerate().map(|(i, name)| {
            self.profile_index
                .get(name.as_str())
                .copied()
                .ok_or_else(|| {
                    resource.problem(
                        &format!("spec.profiles[{i}]"),
                        format!("profile {name:?} is not defined"),
                    )
                })
        }))
    }

    fn labels_to_apply(&self, indices: &[usize]) -> Vec<&Labels> {
        indices
            .iter()
            .filter_map(|&i| self.profiles.get(i))
            .map(|p| &p.labels_to_apply)
            .collect()
    }
}

fn collect_endpoints(
    resources: &[Resource],
    ctx: &EndpointContext<'_>,
) -> Result<Vec<Endpoint>, Vec<Problem>> {
    let endpoints = resources.iter().filter_map(|r| match &r.spec {
        Spec::WorkloadEndpoint(spec) => Some(workload_endpoint(r, spec, ctx)),
        Spec::HostEndpoint(spec) => Some(host_endpoint(r, spec, ctx)),
        _ => None,
    });
    flatten_problems(endpoints)
}

fn workload_endpoint(
    resource: &Resource,
    spec: &WorkloadEndpointSpec,
    ctx: &EndpointContext<'_>,
) -> Result<Endpoint, Vec<Problem>> {
    let profiles = ctx.profile_indices(resource, &spec.profiles);
    let addresses = collect_all(spec.ip_networks.iter().enumerate().map(|(i, text)| {
        workload_address(text).ok_or_else(|| {
            resource.problem(
                &format!("spec.ipNetworks[{i}]"),
                format!("{text:?} is not a single address (an IP, /32 or /128)"),
            )
        })
    }));
    let ports = named_ports(resource, &spec.ports);
    let (profiles, (addresses, ports)) = both(profiles, both(addresses, ports))?;
    let namespace = resource.namespace();
    let labels = labels::workload(&WorkloadLabelSources {
        own: &resource.metadata.labels,
        namespace,
        orchestrator: spec.orchestrator.as_deref().unwrap_or(""),
        service_account: spec
            .service_account_name
            .as_deref()
            .filter(|s| !s.is_empty()),
        namespace_labels: ctx.namespaces.get(namespace).copied(),
        profile_labels: &ctx.labels_to_apply(&profiles),
    });
    Ok(Endpoint {
        kind: EndpointKind::Workload,
        name: resource.name().to_owned(),
        namespace: namespace.to_owned(),
        display_name: resource.display_name(),
        labels,
        addresses,
        ports,
        profiles,
        origin: resource.origin.clone(),
    })
}

fn host_endpoint(
    resource: &Resource,
    spec: &HostEndpointSpec,
    ctx: &EndpointContext<'_>,
) -> Result<Endpoint, Vec<Problem>> {
    let profiles = ctx.profile_indices(resource, &spec.profiles);
    let addresses = collect_all(spec.expected_ips.iter().enumerate().map(|(i, text)| {
        text.parse::<IpAddr>().map_err(|_| {
            resource.problem(
                &format!("spec.expectedIPs[{i}]"),
                format!("{text:?} is not an IP address"),
            )
        })
    }));
    let ports = named_ports(resource, &spec.ports);
    let (profiles, (addresses, ports)) = both(profiles, both(addresses, ports))?;
    let labels = labels::host(&resource.metadata.labels, &ctx.labels_to_apply(&profiles));
    Ok(Endpoint {
        kind: EndpointKind::Host,
        name: resource.name().to_owned(),
        namespace: String::new(),
        display_name: resource.display_name(),
        labels,
        addresses,
        ports,
        profiles,
        origin: resource.origin.clone(),
    })
}

/// A WEP `ipNetworks` entry: a bare IP, or a /32 or /128.
fn workload_address(text: &str) -> Option<IpAddr> {
    let net = parse_net(text)?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

fn named_ports(
    resource: &Resource,
    ports: &[EndpointPort],
) -> Result<Vec<NamedPort>, Vec<Problem>> {
    let rules = RuleNormalizer {
        resource,
        dialect: Dialect::V3,
        namespace: "",
    };
    collect_all(ports.iter().enumerate().map(|(i, p)| {
        let path = format!("spec.ports[{i}]");
        let protocol = rules.protocol(&format!("{path}.protocol"), &p.protocol)?;
        if !matches!(
            protocol,
            super::flow::protocol::TCP | super::flow::protocol::UDP | super::flow::protocol::SCTP
        ) {
            return Err(resource.problem(
                &format!("{path}.protocol"),
                "a named port must be TCP, UDP or SCTP",
            ));
        }
        let port = u16::try_from(p.port)
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| {
                resource.problem(
                    &format!("{path}.port"),
                    format!("port {} is out of range", p.port),
                )
            })?;
        Ok(NamedPort {
            name: p.name.clone(),
            protocol,
            port,
        })
    }))
}

fn index_addresses(endpoints: &[Endpoint]) -> Result<BTreeMap<IpAddr, usize>, Vec<Problem>> {
    let mut index = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        for &addr in &endpoint.addresses {
            if let Some(&other) = index.get(&addr) {
                let owner = endpoints
                    .get(other)
                    .map_or("?", |e: &Endpoint| e.display_name.as_str());
                problems.push(Problem {
                    file: endpoint.origin.file.clone(),
                    line: endpoint.origin.line,
                    resource: endpoint.problem_label(),
                    field: "-".to_owned(),
                    message: format!("address {addr} is also an address of {owner}"),
                });
            } else {
                index.insert(addr, i);
            }
        }
    }
    if problems.is_empty() {
        Ok(index)
    } else {
        Err(problems)
    }
}

fn collect_entities(
    resources: &[Resource],
    endpoints: &[Endpoint],
    namespaces: &HashMap<&str, &Labels>,
) -> Result<Vec<Entity>, Vec<Problem>> {
    let endpoint_entities = endpoints.iter().enumerate().map(|(i, e)| {
        Ok(Entity {
            kind: match e.kind {
                EndpointKind::Workload => EntityKind::WorkloadEndpoint,
                EndpointKind::Host => EntityKind::HostEndpoint,
            },
            display_name: e.display_name.clone(),
            labels: e.labels.clone(),
            nets: e.addresses.iter().map(|&a| IpNet::from(a)).collect(),
            endpoint: Some(i),
        })
    });
    let set_entities = resources.iter().filter_map(|r| match &r.spec {
        Spec::NetworkSet(spec) => {
            let ns = r.namespace();
            let labels = labels::network_set(&r.metadata.labels, ns, namespaces.get(ns).copied());
            Some(network_set(r, spec, EntityKind::NetworkSet, labels))
        }
        Spec::GlobalNetworkSet(spec) => Some(network_set(
            r,
            spec,
            EntityKind::GlobalNetworkSet,
            r.metadata.labels.clone(),
        )),
        _ => None,
    });
    flatten_problems(endpoint_entities.chain(set_entities))
}

fn network_set(
    resource: &Resource,
    spec: &NetworkSetSpec,
    kind: EntityKind,
    labels: Labels,
) -> Result<Entity, Vec<Problem>> {
    let nets = collect_all(spec.nets.iter().enumerate().map(|(i, text)| {
        parse_net(text).map(|n| n.trunc()).ok_or_else(|| {
            resource.problem(&format!("spec.nets[{i}]"), format!("invalid CIDR {text:?}"))
        })
    }))?;
    Ok(Entity {
        kind,
        display_name: resource.display_name(),
        labels,
        nets,
        endpoint: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Tiers and policies

fn collect_tiers(resources: &[Resource]) -> Result<Vec<Tier>, Vec<Problem>> {
    let mut tiers = flatten_problems(resources.iter().filter_map(|r| match &r.spec {
        Spec::Tier(spec) => Some(tier(r, spec)),
        _ => None,
    }))?;
    if !tiers.iter().any(|t| t.name == DEFAULT_TIER) {
        tiers.push(Tier {
            name: DEFAULT_TIER.to_owned(),
            order: Some(DEFAULT_TIER_ORDER),
            default_action: TierDefaultAction::Deny,
            policies: Vec::new(),
        });
    }
    Ok(tiers)
}

fn tier(resource: &Resource, spec: &TierSpec) -> Result<Tier, Vec<Problem>> {
    let default_action = match spec.default_action.as_deref() {
        None | Some("Deny") => TierDefaultAction::Deny,
        Some("Pass") => TierDefaultAction::Pass,
        Some(other) => {
            return Err(vec![resource.problem(
                "spec.defaultAction",
                format!("defaultAction must be Deny or Pass, not {other:?}"),
            )]);
        }
    };
    Ok(Tier {
        name: resource.name().to_owned(),
        order: spec.order,
        default_action,
        policies: Vec::new(),
    })
}

/// A policy together with the tier it names.
struct TieredPolicy {
    tier: String,
    policy: Policy,
}

fn collect_policies(
    resources: &[Resource],
) -> Result<Vec<(TieredPolicy, &Resource)>, Vec<Problem>> {
    let policies = resources.iter().filter_map(|r| {
        let tiered = match &r.spec {
            Spec::GlobalNetworkPolicy(spec) => global_network_policy(r, spec),
            Spec::NetworkPolicy(spec) => network_policy(r, spec),
            Spec::V1Policy(spec) => v1_policy(r, spec),
            Spec::K8sNetworkPolicy(spec) => k8s::kubernetes_network_policy(r, spec)
                .map(|policy| (DEFAULT_TIER.to_owned(), policy)),
            _ => return None,
        };
        Some(tiered.map(|(tier, policy)| (TieredPolicy { tier, policy }, r)))
    });
    flatten_problems(policies)
}

fn place_policies(
    mut tiers: Vec<Tier>,
    policies: Vec<(TieredPolicy, &Resource)>,
) -> Result<Vec<Tier>, Vec<Problem>> {
    let mut problems = Vec::new();
    for (tiered, resource) in policies {
        match tiers.iter_mut().find(|t| t.name == tiered.tier) {
            Some(tier) => tier.policies.push(tiered.policy),
            None => problems.push(resource.problem(
                "spec.tier",
                format!("tier {:?} is not defined", tiered.tier),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    tiers.sort_by(|a, b| precedence(a.order, &a.name, b.order, &b.name));
    for tier in &mut tiers {
        tier.policies
            .sort_by(|a, b| precedence(a.order, &a.tie_key(), b.order, &b.tie_key()));
    }
    Ok(tiers)
}

fn global_network_policy(
    resource: &Resource,
    spec: &GlobalNetworkPolicySpec,
) -> Result<(String, Policy), Vec<Problem>> {
    let rules = RuleNormalizer {
        resource,
        dialect: Dialect::V3,
        namespace: "",
    };
    let selector = global_policy_selector(
        &rules,
        spec.selector.as_deref(),
        spec.namespace_selector.as_deref(),
        spec.service_account_selector.as_deref(),
    )
    .map_err(|p| vec![p]);
    let stage = stage(resource, spec.do_not_track, spec.pre_dnat).map_err(|p| vec![p]);
    let directions = directions(
        resource,
        Dialect::V3,
        &spec.types,
        !spec.ingress.is_empty(),
        !spec.egress.is_empty(),
    )
    .map_err(|p| vec![p]);
    let ingress = rules.v3_rules("spec.ingress", &spec.ingress);
    let egress = rules.v3_rules("spec.egress", &spec.egress);
    let ((selector, stage), (directions, (ingress, egress))) = both(
        both(selector, stage),
        both(directions, both(ingress, egress)),
    )?;
    Ok((
        tier_name(spec.tier.as_deref()),
        Policy {
            kind: PolicyKind::GlobalNetworkPolicy,
            name: resource.name().to_owned(),
            namespace: String::new(),
            display_name: resource.display_name(),
            order: spec.order,
            selector,
            stage,
            ingress: directions.ingress.then_some(ingress),
            egress: directions.egress.then_some(egress),
            origin: resource.origin.clone(),
        },
    ))
}

fn network_policy(
    resource: &Resource,
    spec: &NetworkPolicySpec,
) -> Result<(String, Policy), Vec<Problem>> {
    let namespace = resource.namespace();
    let rules = RuleNormalizer {
        resource,
        dialect: Dialect::V3,
        namespace,
    };
    let selector = namespaced_policy_selector(
        &rules,
        spec.selector.as_deref(),
        spec.service_account_selector.as_deref(),
        namespace,
    )
    .map_err(|p| vec![p]);
    let directions = directions(
        resource,
        Dialect::V3,
        &spec.types,
        !spec.ingress.is_empty(),
        !spec.egress.is_empty(),
    )
    .map_err(|p| vec![p]);
    let ingress = rules.v3_rules("spec.ingress", &spec.ingress);
    let egress = rules.v3_rules("spec.egress", &spec.egress);
    let ((selector, directions), (ingress, egress)) =
        both(both(selector, directions), both(ingress, egress))?;
    Ok((
        tier_name(spec.tier.as_deref()),
        Policy {
            kind: PolicyKind::NetworkPolicy,
            name: resource.name().to_owned(),
            namespace: namespace.to_owned(),
            display_name: resource.display_name(),
            order: spec.order,
            selector,
            stage: Stage::Normal,
            ingress: directions.ingress.then_some(ingress),
            egress: directions.egress.then_some(egress),
            origin: resource.origin.clone(),
        },
    ))
}

fn v1_policy(resource: &Resource, spec: &V1PolicySpec) -> Result<(String, Policy), Vec<Problem>> {
    let rules = RuleNormalizer {
        resource,
        dialect: Dialect::V1,
        namespace: "",
    };
    let selector = rules
        .optional_selector("spec.selector", spec.selector.as_deref())
        .map(|s| s.unwrap_or_else(Selector::all))
        .map_err(|p| vec![p]);
    let stage = stage(resource, spec.do_not_track, spec.pre_dnat).map_err(|p| vec![p]);
    let directions = directions(
        resource,
        Dialect::V1,
        &spec.types,
        !spec.ingress.is_empty(),
        !spec.egress.is_empty(),
    )
    .map_err(|p| vec![p]);
    let ingress = rules.v1_rules("spec.ingress", &spec.ingress);
    let egress = rules.v1_rules("spec.egress", &spec.egress);
    let ((selector, stage), (directions, (ingress, egress))) = both(
        both(selector, stage),
        both(directions, both(ingress, egress)),
    )?;
    Ok((
        DEFAULT_TIER.to_owned(),
        Policy {
            kind: PolicyKind::V1Policy,
            name: resource.name().to_owned(),
            namespace: String::new(),
            display_name: resource.display_name(),
            order: spec.order,
            selector,
            stage,
            ingress: directions.ingress.then_some(ingress),
            egress: directions.egress.then_some(egress),
            origin: resource.origin.clone(),
        },
    ))
}

fn tier_name(tier: Option<&str>) -> String {
    match tier {
        None | Some("") => DEFAULT_TIER.to_owned(),
        Some(name) => name.to_owned(),
    }
}

/// Effective endpoint selector of a GlobalNetworkPolicy (SPEC §3.1): the selector AND the
/// `pcns.`-prefixed namespaceSelector AND the `pcsa.`-prefixed serviceAccountSelector; when
/// either of the last two is set, `all()` anywhere in the result so far means "has a namespace"
/// (or "has a service account"), so that `namespaceSelector: all()` never selects a HEP.
pub(crate) fn global_policy_selector(
    rules: &RuleNormalizer<'_>,
    selector: Option<&str>,
    namespace_selector: Option<&str>,
    service_account_selector: Option<&str>,
) -> Result<Selector, Problem> {
    let mut combined = rules.optional_selector("spec.selector", selector)?;
    if let Some(ns) = rules.optional_selector("spec.namespaceSelector", namespace_selector)? {
        let ns = ns.with_prefixed_labels(labels::NAMESPACE_PREFIX);
        combined = Some(match combined {
            Some(s) => s.and(&ns),
            None => ns,
        });
        combined = combined.map(|s| s.replace_all(&Selector::has(labels::NAMESPACE)));
    }
    if let Some(sa) =
        rules.optional_selector("spec.serviceAccountSelector", service_account_selector)?
    {
        let sa = sa.with_prefixed_labels(labels::SERVICE_ACCOUNT_PREFIX);
        combined = Some(match combined {
            Some(s) => s.and(&sa),
            None => sa,
        });
        combined = combined.map(|s| s.replace_all(&Selector::has(labels::SERVICE_ACCOUNT)));
    }
    Ok(combined.unwrap_or_else(Selector::all))
}

/// Effective endpoint selector of a NetworkPolicy (SPEC §3.1): limited to its own namespace,
/// so it never selects a HEP or another namespace's WEP.
pub(crate) fn namespaced_policy_selector(
    rules: &RuleNormalizer<'_>,
    selector: Option<&str>,
    service_account_selector: Option<&str>,
    namespace: &str,
) -> Result<Selector, Problem> {
    let in_namespace = Selector::equals(labels::NAMESPACE, namespace);
    let mut combined = match rules.optional_selector("spec.selector", selector)? {
        Some(s) => s.and(&in_namespace),
        None => in_namespace,
    };
    if let Some(sa) =
        rules.optional_selector("spec.serviceAccountSelector", service_account_selector)?
    {
        combined = combined.and(&sa.with_prefixed_labels(labels::SERVICE_ACCOUNT_PREFIX));
    }
    Ok(combined)
}

fn stage(resource: &Resource, do_not_track: bool, pre_dnat: bool) -> Result<Stage, Problem> {
    match (do_not_track, pre_dnat) {
        (false, false) => Ok(Stage::Normal),
        (true, false) => Ok(Stage::Untracked),
        (false, true) => Ok(Stage::PreDnat),
        (true, true) => {
            Err(resource.problem("spec.preDNAT", "doNotTrack and preDNAT cannot both be set"))
        }
    }
}

/// Which directions a policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directions {
    pub ingress: bool,
    pub egress: bool,
}

/// `types` after defaulting (SPEC §3.2): listed types win; with none listed, a policy with
/// egress rules governs egress, plus ingress if it also has ingress rules, and any other
/// policy (even one with no rules) governs ingress only.
pub fn default_directions(has_ingress_rules: bool, has_egress_rules: bool) -> Directions {
    Directions {
        ingress: has_ingress_rules || !has_egress_rules,
        egress: has_egress_rules,
    }
}

fn directions(
    resource: &Resource,
    dialect: Dialect,
    types: &[String],
    has_ingress_rules: bool,
    has_egress_rules: bool,
) -> Result<Directions, Problem> {
    if types.is_empty() {
        return Ok(default_directions(has_ingress_rules, has_egress_rules));
    }
    let mut directions = Directions::default();
    for (i, t) in types.iter().enumerate() {
        match (dialect, t.as_str()) {
            (Dialect::V3, "Ingress") | (Dialect::V1, "ingress") => directions.ingress = true,
            (Dialect::V3, "Egress") | (Dialect::V1, "egress") => directions.egress = true,
            _ => {
                return Err(
                    resource.problem(&format!("spec.types[{i}]"), format!("unknown type {t:?}"))
                );
            }
        }
    }
    Ok(directions)
}

// ---------------------------------------------------------------------------------------------
// Collecting problems

/// Both results, or every problem of either.
pub(crate) fn both<A, B>(
    a: Result<A, Vec<Problem>>,
    b: Result<B, Vec<Problem>>,
) -> Result<(A, B), Vec<Problem>> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(mut pa), Err(mut pb)) => {
            pa.append(&mut pb);
            Err(pa)
        }
        (Err(p), Ok(_)) | (Ok(_), Err(p)) => Err(p),
    }
}

/// Every value, or every problem of every item.
fn flatten_problems<T>(
    items: impl Iterator<Item = Result<T, Vec<Problem>>>,
) -> Result<Vec<T>, Vec<Problem>> {
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for item in items {
        match item {
            Ok(v) => values.push(v),
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
    use serde_json::json;

    use super::*;
    use crate::policy::rule::PortMatch;
    use crate::policy::testing::{ip, labels_of, no_failsafe, res, resolved};

    #[test]
    fn precedence_orders_numerically_then_missing_last_then_by_bytes() {
        // Each list is in the expected order.
        let cases: &[&[(Option<f64>, &str)]] = &[
            &[(Some(20.0), "b"), (Some(100.0), "a")],
            &[(Some(-1.0), "z"), (Some(0.0), "a"), (Some(10.5), "a")],
            &[(Some(1e9), "z"), (None, "a")],
            &[(None, "a-x"), (None, "a10"), (None, "a9"), (None, "b")],
            &[(Some(5.0), "B"), (Some(5.0), "a")],
            &[
                (Some(1000.0), "a"),
                (Some(DEFAULT_TIER_ORDER), "a"),
                (Some(2e6), "a"),
            ],
            &[(Some(0.0), "a"), (Some(-0.0), "b")],
            &[(None, "x"), (Some(f64::NAN), "a")],
        ];
        for case in cases {
            for (i, a) in case.iter().enumerate() {
                for (j, b) in case.iter().enumerate() {
                    assert_eq!(
                        precedence(a.0, a.1, b.0, b.1),
                        i.cmp(&j),
                        "{a:?} vs {b:?} in {case:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn policy_tie_key_is_name_then_namespace_then_kind() {
        // Calico compares `name/namespace/kind`, so a shorter name is not always first:
        // '-' sorts before '/'.
        let r = resolved(vec![
            res("GlobalNetworkPolicy", "a", &[], json!({})),
            res("GlobalNetworkPolicy", "a-x", &[], json!({})),
            res("NetworkPolicy", "ns/a", &[], json!({})),
            res("KNP", "ns/a", &[], json!({})),
            res("policy", "a", &[], json!({})),
            res("GlobalNetworkPolicy", "a10", &[], json!({})),
            res("GlobalNetworkPolicy", "a9", &[], json!({ "order": 2000 })),
        ]);
        let names: Vec<&str> = r.tiers[0]
            .policies
            .iter()
            .map(|p| p.display_name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "KubernetesNetworkPolicy/ns/a",
                "GlobalNetworkPolicy/a9",
                "GlobalNetworkPolicy/a-x",
                "GlobalNetworkPolicy/a",
                "policy/a",
                "NetworkPolicy/ns/a",
                "GlobalNetworkPolicy/a10",
            ]
        );
    }

    #[test]
    fn tiers_sort_with_the_implicit_default_tier_at_one_million() {
        let r = resolved(vec![
            res("Tier", "late", &[], json!({ "order": 2_000_000 })),
            res("Tier", "unordered", &[], json!({})),
            res(
                "Tier",
                "security",
                &[],
                json!({ "order": 100, "defaultAction": "Pass" }),
            ),
            res("Tier", "b-tie", &[], json!({ "order": 100 })),
        ]);
        let tiers: Vec<(&str, TierDefaultAction)> = r
            .tiers
            .iter()
            .map(|t| (t.name.as_str(), t.default_action))
            .collect();
        assert_eq!(
            tiers,
            [
                ("b-tie", TierDefaultAction::Deny),
                ("security", TierDefaultAction::Pass),
                ("default", TierDefaultAction::Deny),
                ("late", TierDefaultAction::Deny),
                ("unordered", TierDefaultAction::Deny),
            ]
        );
    }

    #[test]
    fn types_default_from_the_rule_lists() {
        let cases = [
            (false, false, true, false),
            (true, false, true, false),
            (false, true, false, true),
            (true, true, true, true),
        ];
        for (has_ingress, has_egress, ingress, egress) in cases {
            assert_eq!(
                default_directions(has_ingress, has_egress),
                Directions { ingress, egress },
                "ingress rules {has_ingress}, egress rules {has_egress}"
            );
        }
    }

    #[test]
    fn explicit_types_override_and_drop_rules_of_other_directions() {
        let allow = json!([{ "action": "Allow" }]);
        let r = resolved(vec![
            res("GlobalNetworkPolicy", "no-rules", &[], json!({})),
            res(
                "GlobalNetworkPolicy",
                "egress-only",
                &[],
                json!({ "egress": allow }),
            ),
            res(
                "GlobalNetworkPolicy",
                "both",
                &[],
                json!({ "ingress": allow, "egress": allow }),
            ),
            res(
                "GlobalNetworkPolicy",
                "typed-egress",
                &[],
                json!({ "types": ["Egress"], "ingress": allow }),
            ),
            res(
                "policy",
                "v1-typed",
                &[],
                json!({ "types": ["ingress", "egress"] }),
            ),
            res("KNP", "ns/k-egress", &[], json!({ "egress": [{}] })),
            res("KNP", "ns/k-none", &[], json!({ "ingress": [{}] })),
            res(
                "KNP",
                "ns/k-typed",
                &[],
                json!({ "policyTypes": ["Ingress"], "egress": [{}] }),
            ),
        ]);
        let governs = |name: &str| {
            let p = r.tiers[0].policies.iter().find(|p| p.name == name).unwrap();
            (
                p.ingress.as_ref().map(Vec::len),
                p.egress.as_ref().map(Vec::len),
            )
        };
        assert_eq!(governs("no-rules"), (Some(0), None));
        assert_eq!(governs("egress-only"), (None, Some(1)));
        assert_eq!(governs("both"), (Some(1), Some(1)));
        assert_eq!(governs("typed-egress"), (None, Some(0)));
        assert_eq!(governs("v1-typed"), (Some(0), Some(0)));
        assert_eq!(governs("k-egress"), (Some(0), Some(1)));
        assert_eq!(governs("k-none"), (Some(1), None));
        assert_eq!(governs("k-typed"), (Some(0), None));
    }

    #[test]
    fn effective_policy_selectors_scope_by_namespace_and_service_account() {
        let wep = |name: &str, sa: &str, ip: &str| {
            res(
                "WorkloadEndpoint",
                name,
                &[("app", "x")],
                json!({ "interfaceName": "c0", "ipNetworks": [ip], "serviceAccountName": sa }),
            )
        };
        let mut resources = vec![
            res("Namespace", "prod", &[("env", "prod")], json!({})),
            res("Namespace", "dev", &[("env", "dev")], json!({})),
            wep("prod/a", "api", "192.0.2.1"),
            wep("dev/b", "web", "192.0.2.2"),
            res(
                "HostEndpoint",
                "h",
                &[("app", "x")],
                json!({ "node": "n", "expectedIPs": ["192.0.2.3"] }),
            ),
        ];
        let policies = [
            (
                "GlobalNetworkPolicy",
                "g-all",
                json!({ "selector": "all()" }),
            ),
            ("GlobalNetworkPolicy", "g-empty", json!({})),
            (
                "GlobalNetworkPolicy",
                "g-ns-all",
                json!({ "namespaceSelector": "all()" }),
            ),
            (
                "GlobalNetworkPolicy",
                "g-sel-ns-all",
                json!({ "selector": "all()", "namespaceSelector": "all()" }),
            ),
            (
                "GlobalNetworkPolicy",
                "g-ns-dev",
                json!({ "selector": "app == 'x'", "namespaceSelector": "env == 'dev'" }),
            ),
            (
                "GlobalNetworkPolicy",
                "g-sa-all",
                json!({ "serviceAccountSelector": "all()" }),
            ),
            (
                "GlobalNetworkPolicy",
                "g-sa-api",
                json!({ "serviceAccountSelector": "projectcalico.org/name == 'api'" }),
            ),
            (
                "NetworkPolicy",
                "prod/n-all",
                json!({ "selector": "all()" }),
            ),
            ("NetworkPolicy", "prod/n-empty", json!({})),
            (
                "NetworkPolicy",
                "dev/n-sa",
                json!({ "serviceAccountSelector": "projectcalico.org/name == 'web'" }),
            ),
            ("policy", "v1", json!({ "selector": "app == 'x'" })),
        ];
        for (kind, name, spec) in &policies {
            resources.push(res(kind, name, &[], spec.clone()));
        }
        let r = resolved(resources);
        let selects = |name: &str| -> [bool; 3] {
            let policy = r.tiers[0].policies.iter().find(|p| p.name == name).unwrap();
            [ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")]
                .map(|a| policy.selector.matches(&r.endpoint_at(a).unwrap().labels))
        };
        // Columns: prod/a (sa api), dev/b (sa web), host h.
        let cases = [
            ("g-all", [true, true, true]),
            ("g-empty", [true, true, true]),
            ("g-ns-all", [true, true, false]),
            ("g-sel-ns-all", [true, true, false]),
            ("g-ns-dev", [false, true, false]),
            ("g-sa-all", [true, true, false]),
            ("g-sa-api", [true, false, false]),
            ("n-all", [true, false, false]),
            ("n-empty", [true, false, false]),
            ("n-sa", [false, true, false]),
            ("v1", [true, true, true]),
        ];
        for (name, want) in cases {
            assert_eq!(selects(name), want, "{name}");
        }
    }

    #[test]
    fn stages_and_kinds_are_recorded() {
        let r = resolved(vec![
            res(
                "GlobalNetworkPolicy",
                "untracked",
                &[],
                json!({ "doNotTrack": true, "applyOnForward": true }),
            ),
            res(
                "GlobalNetworkPolicy",
                "pre",
                &[],
                json!({ "preDNAT": true, "applyOnForward": true }),
            ),
            res("policy", "old", &[], json!({ "doNotTrack": true })),
            res("KNP", "ns/k", &[], json!({})),
        ]);
        let stage = |name: &str| {
            let p = r.tiers[0].policies.iter().find(|p| p.name == name).unwrap();
            (p.kind, p.stage, p.order)
        };
        assert_eq!(
            stage("untracked"),
            (PolicyKind::GlobalNetworkPolicy, Stage::Untracked, None)
        );
        assert_eq!(
            stage("pre"),
            (PolicyKind::GlobalNetworkPolicy, Stage::PreDnat, None)
        );
        assert_eq!(stage("old"), (PolicyKind::V1Policy, Stage::Untracked, None));
        assert_eq!(
            stage("k"),
            (
                PolicyKind::KubernetesNetworkPolicy,
                Stage::Normal,
                Some(1000.0)
            )
        );
    }

    #[test]
    fn endpoints_get_effective_labels_addresses_ports_and_profiles() {
        let r = resolved(vec![
            res("Namespace", "shop", &[("team", "blue")], json!({})),
            res(
                "Profile",
                "p1",
                &[],
                json!({ "labelsToApply": { "zone": "a", "app": "profile" } }),
            ),
            res(
                "Profile",
                "p2",
                &[],
                json!({ "labelsToApply": { "zone": "b", "rack": "2" } }),
            ),
            res(
                "WorkloadEndpoint",
                "shop/pod",
                &[("app", "web")],
                json!({
                    "orchestrator": "k8s",
                    "serviceAccountName": "api",
                    "interfaceName": "cali0",
                    "ipNetworks": ["192.0.2.10/32", "2001:db8::10"],
                    "profiles": ["p1", "p2"],
                    "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
                }),
            ),
            res(
                "HostEndpoint",
                "host",
                &[("role", "gw")],
                json!({ "node": "n", "expectedIPs": ["192.0.2.20"], "profiles": ["p2"] }),
            ),
        ]);
        let pod = r.endpoint_at(ip("192.0.2.10")).unwrap();
        assert_eq!(pod.kind, EndpointKind::Workload);
        assert_eq!(pod.display_name, "WorkloadEndpoint/shop/pod");
        assert_eq!(
            pod.labels,
            labels_of(&[
                ("app", "web"),
                ("projectcalico.org/namespace", "shop"),
                ("projectcalico.org/orchestrator", "k8s"),
                ("projectcalico.org/serviceaccount", "api"),
                ("pcns.team", "blue"),
                ("pcns.projectcalico.org/name", "shop"),
                ("pcsa.projectcalico.org/name", "api"),
                ("zone", "a"),
                ("rack", "2"),
            ])
        );
        assert_eq!(pod.profiles, [0, 1]);
        assert_eq!(
            pod.ports,
            [NamedPort {
                name: "http".into(),
                protocol: 6,
                port: 8080
            }]
        );
        assert_eq!(
            r.endpoint_at(ip("2001:db8:0::10")).map(|e| &e.name),
            Some(&pod.name)
        );
        let host = r.endpoint_at(ip("192.0.2.20")).unwrap();
        assert_eq!(host.display_name, "HostEndpoint/host");
        assert_eq!(
            host.labels,
            labels_of(&[("role", "gw"), ("zone", "b"), ("rack", "2")])
        );
        assert!(r.endpoint_at(ip("192.0.2.21")).is_none());
        // Endpoints are entities too, as host routes.
        let kinds: Vec<EntityKind> = r
            .entities_containing(ip("192.0.2.10"))
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [EntityKind::WorkloadEndpoint]);
    }

    #[test]
    fn network_sets_are_entities_with_normalized_nets() {
        let r = resolved(vec![
            res("Namespace", "shop", &[("team", "blue")], json!({})),
            res(
                "NetworkSet",
                "shop/ext",
                &[("kind", "ext")],
                json!({ "nets": ["198.51.100.77/24"] }),
            ),
            res(
                "GlobalNetworkSet",
                "gns",
                &[("kind", "g")],
                json!({ "nets": ["198.51.100.0/25", "2001:db8::/32"] }),
            ),
        ]);
        let containing: Vec<(&str, EntityKind)> = r
            .entities_containing(ip("198.51.100.1"))
            .map(|e| (e.display_name.as_str(), e.kind))
            .collect();
        assert_eq!(
            containing,
            [
                ("NetworkSet/shop/ext", EntityKind::NetworkSet),
                ("GlobalNetworkSet/gns", EntityKind::GlobalNetworkSet),
            ]
        );
        assert_eq!(
            r.entities[0].nets,
            ["198.51.100.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            r.entities[0].labels,
            labels_of(&[
                ("kind", "ext"),
                ("projectcalico.org/namespace", "shop"),
                ("pcns.team", "blue"),
                ("pcns.projectcalico.org/name", "shop"),
            ])
        );
        assert_eq!(r.entities[1].labels, labels_of(&[("kind", "g")]));
    }

    #[test]
    fn v1_rules_fold_net_into_nets_and_mask_host_bits() {
        let r = resolved(vec![res(
            "policy",
            "old",
            &[],
            json!({ "ingress": [{
                "action": "allow",
                "protocol": "tcp",
                "source": { "net": "192.0.2.77/24", "nets": ["198.51.100.9/25"], "notNet": "192.0.2.128/25" },
                "destination": { "ports": [80, "8000:8080", "http"] },
            }]}),
        )]);
        let rule = &r.tiers[0].policies[0].ingress.as_ref().unwrap()[0];
        let nets = |list: &[&str]| {
            list.iter()
                .map(|n| n.parse::<IpNet>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(rule.src.nets, nets(&["198.51.100.0/25", "192.0.2.0/24"]));
        assert_eq!(rule.src.not_nets, nets(&["192.0.2.128/25"]));
        assert_eq!(rule.protocol, Some(6));
        assert_eq!(rule.ip_version, Some(crate::policy::IpVersion::V4));
        assert_eq!(
            rule.dst.ports,
            [
                PortMatch::Range(80, 80),
                PortMatch::Range(8000, 8080),
                PortMatch::Named("http".into())
            ]
        );
    }

    #[test]
    fn ip_version_is_implied_by_icmp_protocols_and_nets() {
        let r = resolved(vec![res(
            "GlobalNetworkPolicy",
            "p",
            &[],
            json!({ "ingress": [
                { "action": "Allow", "protocol": "ICMP" },
                { "action": "Allow", "protocol": "ICMPv6", "icmp": { "type": 128 } },
                { "action": "Allow", "destination": { "notNets": ["2001:db8::/48"] } },
                { "action": "Allow", "ipVersion": 4 },
                { "action": "Allow", "notProtocol": "ICMP" },
            ]}),
        )]);
        let versions: Vec<Option<u8>> = r.tiers[0].policies[0]
            .ingress
            .as_ref()
            .unwrap()
            .iter()
            .map(|rule| rule.ip_version.map(|v| v.number()))
            .collect();
        assert_eq!(versions, [Some(4), Some(6), Some(6), Some(4), None]);
    }

    #[test]
    fn inconsistencies_that_validation_should_have_caught_are_problems() {
        let cases = [
            (
                vec![res(
                    "GlobalNetworkPolicy",
                    "p",
                    &[],
                    json!({ "tier": "nope" }),
                )],
                "tier \"nope\" is not defined",
            ),
            (
                vec![res(
                    "HostEndpoint",
                    "h",
                    &[],
                    json!({ "node": "n", "expectedIPs": ["192.0.2.1"], "profiles": ["missing"] }),
                )],
                "profile \"missing\" is not defined",
            ),
            (
                vec![
                    res(
                        "HostEndpoint",
                        "h1",
                        &[],
                        json!({ "node": "n", "expectedIPs": ["192.0.2.1"] }),
                    ),
                    res(
                        "HostEndpoint",
                        "h2",
                        &[],
                        json!({ "node": "n", "expectedIPs": ["192.0.2.1"] }),
                    ),
                ],
                "address 192.0.2.1 is also an address of HostEndpoint/h1",
            ),
            (
                vec![res(
                    "GlobalNetworkPolicy",
                    "p",
                    &[],
                    json!({ "ingress": [{ "action": "allow" }] }),
                )],
                "unknown action \"allow\"",
            ),
            (
                vec![res(
                    "GlobalNetworkPolicy",
                    "p",
                    &[],
                    json!({ "ingress": [{ "action": "Allow", "ipVersion": 6, "protocol": "ICMP" }] }),
                )],
                "rule mixes IPv6 and IPv4",
            ),
            (
                vec![res(
                    "GlobalNetworkPolicy",
                    "p",
                    &[],
                    json!({ "doNotTrack": true, "preDNAT": true }),
                )],
                "doNotTrack and preDNAT cannot both be set",
            ),
            (
                vec![res(
                    "WorkloadEndpoint",
                    "ns/w",
                    &[],
                    json!({ "ipNetworks": ["192.0.2.0/24"] }),
                )],
                "is not a single address",
            ),
        ];
        for (resources, want) in cases {
            let problems = resolve_resources(&resources, no_failsafe()).unwrap_err();
            assert!(
                problems.iter().any(|p| p.message.contains(want)),
                "{want:?} not in {problems:?}"
            );
        }
    }
}
