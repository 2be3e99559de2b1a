//! `metadata`: the name rule of each kind, namespaces, and labels.

use super::{Check, names};
use crate::model::Kind;
use crate::model::resources::Labels;

/// Calico sets this label on namespaced entities itself; a network set may not claim it.
const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";

pub(super) fn check(check: &mut Check) {
    let resource = check.resource;
    let kind = resource.kind();
    match resource.metadata.name.as_deref() {
        None | Some("") => check.report(
            "metadata.name",
            format!("a {} needs metadata.name", kind.name()),
        ),
        Some(name) => {
            check.accept(names::check_resource_name(kind, name), || {
                "metadata.name".to_owned()
            });
        }
    }
    check_namespace(check, kind, resource.metadata.namespace.as_deref());
    check_labels(check, "metadata.labels", &resource.metadata.labels);
    if matches!(kind, Kind::NetworkSet | Kind::GlobalNetworkSet)
        && resource.metadata.labels.contains_key(NAMESPACE_LABEL)
    {
        check.report(
            &format!("metadata.labels.{NAMESPACE_LABEL}"),
            format!(
                "a {} may not carry the label {NAMESPACE_LABEL}: it is reserved for the \
                 namespace Calico assigns",
                kind.name()
            ),
        );
    }
}

fn check_namespace(check: &mut Check, kind: Kind, namespace: Option<&str>) {
    let Some(namespace) = namespace.filter(|ns| !ns.is_empty()) else {
        return;
    };
    if !kind.is_namespaced() {
        check.report(
            "metadata.namespace",
            format!(
                "a {} is not namespaced: remove metadata.namespace",
                kind.name()
            ),
        );
    } else if !names::is_dns_label(namespace) {
        check.report(
            "metadata.namespace",
            format!(
                "namespace {namespace:?} is not valid: a namespace is a DNS label (lower-case \
                 letters, digits and '-', at most 63 characters)"
            ),
        );
    }
}

/// Label keys must be Kubernetes qualified names and values Kubernetes label values.
pub(super) fn check_labels(check: &mut Check, field: &str, labels: &Labels) {
    for (key, value) in labels {
        let key_ok = check
            .accept(names::check_label_key(key), || format!("{field}.{key}"))
            .is_some();
        if key_ok {
            check.accept(names::check_label_value(value), || format!("{field}.{key}"));
        }
    }
}
