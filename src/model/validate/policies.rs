//! Policies (GlobalNetworkPolicy, NetworkPolicy, v1 policy), tiers and profiles.
//! References to tiers are checked across the directory in `cross`.

use super::rules::{check_v1_rules, check_v3_rules};
use super::selectors::{self, Place};
use super::values::Dialect;
use super::{Check, metadata};
use crate::model::resources::{
    GlobalNetworkPolicySpec, NetworkPolicySpec, ProfileSpec, TierSpec, V1PolicySpec,
};

/// The only performance hint Calico defines.
const PERFORMANCE_HINTS: [&str; 1] = ["AssumeNeededOnEveryNode"];
/// Name, order and default action of the tier that always exists.
pub(super) const DEFAULT_TIER: &str = "default";
const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
const TIER_ACTIONS: [&str; 2] = ["Deny", "Pass"];

pub(super) fn check_global_network_policy(check: &mut Check, spec: &GlobalNetworkPolicySpec) {
    check_order(check, spec.order);
    check_policy_selectors(
        check,
        &[
            ("spec.selector", spec.selector.as_deref()),
            ("spec.namespaceSelector", spec.namespace_selector.as_deref()),
            (
                "spec.serviceAccountSelector",
                spec.service_account_selector.as_deref(),
            ),
        ],
    );
    check_types(check, &spec.types, Dialect::V3);
    check_performance_hints(check, &spec.performance_hints);
    let stages = Stages {
        do_not_track: spec.do_not_track,
        pre_dnat: spec.pre_dnat,
        apply_on_forward: Some(spec.apply_on_forward),
        has_egress_rules: !spec.egress.is_empty(),
    };
    check_stages(check, &stages, &spec.types, "Egress");
    if check.rule_count_within_limit(spec.ingress.len() + spec.egress.len()) {
        check_v3_rules(check, "spec.ingress", &spec.ingress);
        check_v3_rules(check, "spec.egress", &spec.egress);
    }
}

pub(super) fn check_network_policy(check: &mut Check, spec: &NetworkPolicySpec) {
    check_order(check, spec.order);
    check_policy_selectors(
        check,
        &[
            ("spec.selector", spec.selector.as_deref()),
            (
                "spec.serviceAccountSelector",
                spec.service_account_selector.as_deref(),
            ),
        ],
    );
    check_types(check, &spec.types, Dialect::V3);
    check_performance_hints(check, &spec.performance_hints);
    if check.rule_count_within_limit(spec.ingress.len() + spec.egress.len()) {
        check_v3_rules(check, "spec.ingress", &spec.ingress);
        check_v3_rules(check, "spec.egress", &spec.egress);
    }
}

pub(super) fn check_v1_policy(check: &mut Check, spec: &V1PolicySpec) {
    check_order(check, spec.order);
    check_policy_selectors(check, &[("spec.selector", spec.selector.as_deref())]);
    check_types(check, &spec.types, Dialect::V1);
    let stages = Stages {
        do_not_track: spec.do_not_track,
        pre_dnat: spec.pre_dnat,
        apply_on_forward: None,
        has_egress_rules: !spec.egress.is_empty(),
    };
    check_stages(check, &stages, &spec.types, "egress");
    if check.rule_count_within_limit(spec.ingress.len() + spec.egress.len()) {
        check_v1_rules(check, "spec.ingress", &spec.ingress);
        check_v1_rules(check, "spec.egress", &spec.egress);
    }
}

pub(super) fn check_tier(check: &mut Check, spec: &TierSpec) {
    check_order(check, spec.order);
    if let Some(action) = spec.default_action.as_deref() {
        if !TIER_ACTIONS.contains(&action) {
            check.report(
                "spec.defaultAction",
                format!("defaultAction {action:?} is not valid for a tier: use Deny or Pass"),
            );
        }
    }
    if check.resource.name() != DEFAULT_TIER {
        return;
    }
    // As Calico's CRD rule says, a declared default tier states its order: a tier without one
    // would sort last, which the default tier never does. An unset defaultAction is Deny, the
    // default of every tier, so only a different explicit value is wrong there.
    if spec.order != Some(DEFAULT_TIER_ORDER) {
        check.report(
            "spec.order",
            "the default tier's order must be 1000000: set spec.order to 1000000",
        );
    }
    if spec.default_action.as_deref().is_some_and(|a| a != "Deny") {
        check.report(
            "spec.defaultAction",
            "the default tier's defaultAction must be Deny: remove spec.defaultAction or set it \
             to Deny",
        );
    }
}

pub(super) fn check_profile(check: &mut Check, spec: &ProfileSpec) {
    metadata::check_labels(check, "spec.labelsToApply", &spec.labels_to_apply);
    if check.rule_count_within_limit(spec.ingress.len() + spec.egress.len()) {
        check_v3_rules(check, "spec.ingress", &spec.ingress);
        check_v3_rules(check, "spec.egress", &spec.egress);
    }
}

/// Orders are compared as floats; NaN or infinity would make that comparison meaningless.
fn check_order(check: &mut Check, order: Option<f64>) {
    if let Some(order) = order.filter(|o| !o.is_finite()) {
        check.report(
            "spec.order",
            format!("order {order} is not valid: use a finite number such as 100 or 10.5"),
        );
    }
}

/// Policy-level selectors, where `global()` is never allowed.
fn check_policy_selectors(check: &mut Check, fields: &[(&str, Option<&str>)]) {
    for (field, text) in fields {
        if let Some(text) = text {
            selectors::check(check, || (*field).to_owned(), text, Place::Plain);
        }
    }
}

fn check_types(check: &mut Check, types: &[String], dialect: Dialect) {
    let (allowed, api) = match dialect {
        Dialect::V3 => (["Ingress", "Egress"], "projectcalico.org/v3"),
        Dialect::V1 => (["ingress", "egress"], "a v1 policy"),
    };
    for (i, t) in types.iter().enumerate() {
        if !allowed.contains(&t.as_str()) {
            check.report(
                &format!("spec.types[{i}]"),
                format!(
                    "type {t:?} is not valid in {api}: use {} or {}",
                    allowed[0], allowed[1]
                ),
            );
        } else if types[..i].contains(t) {
            check.report(
                &format!("spec.types[{i}]"),
                format!("type {t:?} is listed twice: list each type once"),
            );
        }
    }
}

fn check_performance_hints(check: &mut Check, hints: &[String]) {
    for (i, hint) in hints.iter().enumerate() {
        if !PERFORMANCE_HINTS.contains(&hint.as_str()) {
            check.report(
                &format!("spec.performanceHints[{i}]"),
                format!("performance hint {hint:?} is not valid: use AssumeNeededOnEveryNode"),
            );
        }
    }
}

/// The untracked and preDNAT stage flags of a GNP or v1 policy.
struct Stages {
    do_not_track: bool,
    pre_dnat: bool,
    /// `None` for v1 policies, which have no such field.
    apply_on_forward: Option<bool>,
    has_egress_rules: bool,
}

/// doNotTrack and preDNAT exclude each other; preDNAT is ingress only; both need
/// applyOnForward (GNP).
fn check_stages(check: &mut Check, stages: &Stages, types: &[String], egress_type: &str) {
    if stages.do_not_track && stages.pre_dnat {
        check.report(
            "spec.preDNAT",
            "doNotTrack and preDNAT cannot both be true: a policy is either untracked or preDNAT",
        );
    }
    if stages.pre_dnat {
        if stages.has_egress_rules {
            check.report(
                "spec.egress",
                "a preDNAT policy may not have egress rules: preDNAT applies to ingress only",
            );
        }
        if let Some(i) = types.iter().position(|t| t == egress_type) {
            check.report(
                &format!("spec.types[{i}]"),
                format!(
                    "a preDNAT policy may not list {egress_type}: preDNAT applies to ingress only"
                ),
            );
        }
    }
    if stages.apply_on_forward == Some(false) && (stages.do_not_track || stages.pre_dnat) {
        let which = if stages.do_not_track {
            "doNotTrack"
        } else {
            "preDNAT"
        };
        check.report(
            "spec.applyOnForward",
            format!("a {which} policy needs applyOnForward: true (set it)"),
        );
    }
}
