//! Checks across the directory: duplicate resources, addresses claimed by two endpoints, and
//! references to tiers and profiles that are not defined (SPEC §6, **[DESIGN]**).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::policies::DEFAULT_TIER;
use super::values;
use crate::model::{Kind, Problem, Resource, Spec};

pub(super) fn check(resources: &[Resource], problems: &mut Vec<Problem>) {
    check_duplicates(resources, problems);
    check_endpoint_addresses(resources, problems);
    check_tier_references(resources, problems);
    check_profile_references(resources, problems);
}

fn located(resource: &Resource) -> String {
    format!("{}:{}", resource.origin.file, resource.origin.line)
}

/// One resource per kind, namespace and name. A Kubernetes NetworkPolicy and a Calico
/// NetworkPolicy are different kinds and may share a name.
fn check_duplicates(resources: &[Resource], problems: &mut Vec<Problem>) {
    let mut seen: HashMap<(Kind, &str, &str), &Resource> = HashMap::with_capacity(resources.len());
    for resource in resources {
        if resource.name().is_empty() {
            continue;
        }
        let key = (resource.kind(), resource.namespace(), resource.name());
        match seen.get(&key) {
            Some(first) => problems.push(resource.problem(
                "metadata.name",
                format!(
                    "{} is defined twice: it is also defined at {}",
                    resource.display_name(),
                    located(first)
                ),
            )),
            None => {
                seen.insert(key, resource);
            }
        }
    }
}

/// Where an endpoint address is written.
struct AddressSite<'a> {
    resource: &'a Resource,
    field: String,
}

/// An address may belong to one endpoint only, compared as parsed IPs
/// (`2001:db8::1` is `2001:DB8:0:0::1`). Unparseable entries were reported already.
fn check_endpoint_addresses(resources: &[Resource], problems: &mut Vec<Problem>) {
    let mut owners: HashMap<IpAddr, AddressSite> = HashMap::new();
    for resource in resources {
        let addresses: Vec<(IpAddr, String)> = match &resource.spec {
            Spec::WorkloadEndpoint(spec) => spec
                .ip_networks
                .iter()
                .enumerate()
                .filter_map(|(i, text)| {
                    let ip = values::endpoint_network(text).ok()?;
                    Some((ip, format!("spec.ipNetworks[{i}]")))
                })
                .collect(),
            Spec::HostEndpoint(spec) => spec
                .expected_ips
                .iter()
                .enumerate()
                .filter_map(|(i, text)| {
                    let ip = values::bare_ip(text).ok()?;
                    Some((ip, format!("spec.expectedIPs[{i}]")))
                })
                .collect(),
            _ => continue,
        };
        for (ip, field) in addresses {
            match owners.get(&ip) {
                Some(owner) if !std::ptr::eq(owner.resource, resource) => {
                    problems.push(resource.problem(
                        &field,
                        format!(
                            "address {ip} is also an address of {} ({}, {}): an address may \
                             belong to one endpoint only",
                            owner.resource.display_name(),
                            owner.field,
                            located(owner.resource),
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    owners.insert(ip, AddressSite { resource, field });
                }
            }
        }
    }
}

fn check_tier_references(resources: &[Resource], problems: &mut Vec<Problem>) {
    let tiers: HashSet<&str> = resources
        .iter()
        .filter(|r| r.kind() == Kind::Tier)
        .map(Resource::name)
        .chain([DEFAULT_TIER])
        .collect();
    for resource in resources {
        let tier = match &resource.spec {
            Spec::GlobalNetworkPolicy(spec) => spec.tier.as_deref(),
            Spec::NetworkPolicy(spec) => spec.tier.as_deref(),
            _ => None,
        };
        // An empty tier is Calico's way of writing the default tier.
        if let Some(tier) = tier.filter(|t| !t.is_empty() && !tiers.contains(t)) {
            problems.push(resource.problem(
                "spec.tier",
                format!(
                    "tier {tier:?} is not defined: add a Tier named {tier:?}, or remove \
                     spec.tier to use the default tier"
                ),
            ));
        }
    }
}

fn check_profile_references(resources: &[Resource], problems: &mut Vec<Problem>) {
    let profiles: HashSet<&str> = resources
        .iter()
        .filter(|r| r.kind() == Kind::Profile)
        .map(Resource::name)
        .collect();
    for resource in resources {
        let listed = match &resource.spec {
            Spec::WorkloadEndpoint(spec) => &spec.profiles,
            Spec::HostEndpoint(spec) => &spec.profiles,
            _ => continue,
        };
        for (i, profile) in listed.iter().enumerate() {
            if !profiles.contains(profile.as_str()) {
                problems.push(resource.problem(
                    &format!("spec.profiles[{i}]"),
                    format!(
                        "profile {profile:?} is not defined: add a Profile named {profile:?} or \
                         remove it from spec.profiles"
                    ),
                ));
            }
        }
    }
}
