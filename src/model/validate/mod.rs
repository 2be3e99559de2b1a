//! Validation of the configuration directory (SPEC Part B §6, Part A §A4).
//!
//! [`validate`] checks every resource on its own (names, labels, selectors, rules, endpoints,
//! settings) and then the directory as a whole (duplicates, shared endpoint addresses,
//! references to tiers and profiles). It never stops at the first problem: each one becomes a
//! [`Problem`] located at the field it is about, with a message saying what is wrong and what
//! would be right.
//!
//! Submodules, one concern each:
//! - `names`: name rules per kind, label keys and values, port and interface names;
//! - `values`: parsers for protocols, ports, CIDRs and addresses (public: later stages read
//!   validated values with the same parsers);
//! - `metadata`: `metadata.name`, `metadata.namespace`, `metadata.labels`;
//! - `selectors`: selector syntax, length cap and the `global()` placement rule;
//! - `rules`: Calico v3 and v1 rules;
//! - `policies`: GlobalNetworkPolicy, NetworkPolicy, v1 policy, Tier, Profile;
//! - `endpoints`: WorkloadEndpoint, HostEndpoint, NetworkSet, GlobalNetworkSet;
//! - `k8s`: Kubernetes NetworkPolicy (light API validation);
//! - `config`: FelixConfiguration and GatewayConfiguration;
//! - `cross`: checks across resources.

mod config;
mod cross;
mod endpoints;
mod k8s;
mod metadata;
pub(crate) mod names;
mod policies;
mod rules;
mod selectors;
pub mod values;

use super::{Limits, Problem, Resource, Spec};

/// Every problem of `resources`, in file and line order; empty when the directory is valid.
pub fn validate(resources: &[Resource], limits: &Limits) -> Vec<Problem> {
    let mut problems = Vec::new();
    for resource in resources {
        let mut check = Check {
            resource,
            limits,
            problems: &mut problems,
        };
        check_resource(&mut check);
    }
    cross::check(resources, &mut problems);
    // Stable: problems on one line keep the order in which they were found.
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    problems
}

fn check_resource(check: &mut Check) {
    metadata::check(check);
    let resource = check.resource;
    match &resource.spec {
        Spec::Namespace(_) => {}
        Spec::WorkloadEndpoint(spec) => endpoints::check_workload_endpoint(check, spec),
        Spec::HostEndpoint(spec) => endpoints::check_host_endpoint(check, spec),
        Spec::NetworkSet(spec) | Spec::GlobalNetworkSet(spec) => {
            endpoints::check_network_set(check, spec)
        }
        Spec::Profile(spec) => policies::check_profile(check, spec),
        Spec::Tier(spec) => policies::check_tier(check, spec),
        Spec::GlobalNetworkPolicy(spec) => policies::check_global_network_policy(check, spec),
        Spec::NetworkPolicy(spec) => policies::check_network_policy(check, spec),
        Spec::V1Policy(spec) => policies::check_v1_policy(check, spec),
        Spec::K8sNetworkPolicy(spec) => k8s::check_network_policy(check, spec),
        Spec::FelixConfiguration(spec) => config::check_felix_configuration(check, spec),
        Spec::GatewayConfiguration(spec) => config::check_gateway_configuration(check, spec),
    }
}

/// The resource being checked and where its problems go.
struct Check<'a> {
    resource: &'a Resource,
    limits: &'a Limits,
    problems: &'a mut Vec<Problem>,
}

impl Check<'_> {
    fn report(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(self.resource.problem(field, message));
    }

    /// The value of `result`, or `None` after reporting its error at the field `field()`
    /// names (built only when there is something to report).
    fn accept<T>(
        &mut self,
        result: Result<T, String>,
        field: impl FnOnce() -> String,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.report(&field(), message);
                None
            }
        }
    }

    /// False, after reporting, when a policy has more rules than the limit allows; its rules
    /// are then not checked one by one.
    fn rule_count_within_limit(&mut self, rules: usize) -> bool {
        let max = self.limits.max_rules_per_policy;
        if rules > max {
            self.report(
                "spec",
                format!(
                    "{rules} rules (ingress and egress together) exceed the limit of {max} per \
                     policy: split the policy"
                ),
            );
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests;
