//! Effective labels of endpoints and network sets (SPEC §2.2–2.3), and the label names
//! Calico reserves.
//!
//! Every function layers label sources from the strongest to the weakest, inserting a key
//! only when no stronger source has set it: forced labels, then the entity's own labels, then
//! namespace-derived labels, then each profile's `labelsToApply` in list order. So inherited
//! labels never override the entity's own, and the first profile that defines a key wins.

use crate::model::resources::Labels;

/// Namespace of a namespaced entity; forced, so the real namespace cannot be spoofed.
pub const NAMESPACE: &str = "projectcalico.org/namespace";
/// `spec.orchestrator` of a workload endpoint (set even when empty).
pub const ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
/// `spec.serviceAccountName` of a workload endpoint.
pub const SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
/// Name of a namespace or service account, under the `pcns.` or `pcsa.` prefix.
pub const NAME: &str = "projectcalico.org/name";
/// Prefix of labels inherited from the namespace.
pub const NAMESPACE_PREFIX: &str = "pcns.";
/// Prefix of labels inherited from the service account.
pub const SERVICE_ACCOUNT_PREFIX: &str = "pcsa.";
/// The orchestrator value of Kubernetes pods, which Kubernetes policies select.
pub const K8S_ORCHESTRATOR: &str = "k8s";

/// What a workload endpoint's labels are made of.
pub struct WorkloadLabelSources<'a> {
    pub own: &'a Labels,
    pub namespace: &'a str,
    pub orchestrator: &'a str,
    /// `spec.serviceAccountName`, when set and non-empty.
    pub service_account: Option<&'a str>,
    /// Labels of the Namespace resource of that name, if the directory has one.
    pub namespace_labels: Option<&'a Labels>,
    pub profile_labels: &'a [&'a Labels],
}

/// Effective labels of a WorkloadEndpoint.
pub fn workload(sources: &WorkloadLabelSources<'_>) -> Labels {
    let mut labels = Labels::new();
    labels.insert(NAMESPACE.to_owned(), sources.namespace.to_owned());
    labels.insert(ORCHESTRATOR.to_owned(), sources.orchestrator.to_owned());
    if let Some(sa) = sources.service_account {
        labels.insert(SERVICE_ACCOUNT.to_owned(), sa.to_owned());
    }
    // The inherited prefixes are Calico's to set: an endpoint may not claim them itself.
    let own = sources.own.iter().filter(|(k, _)| {
        !k.starts_with(NAMESPACE_PREFIX) && !k.starts_with(SERVICE_ACCOUNT_PREFIX)
    });
    add_missing(&mut labels, own);
    add_missing(
        &mut labels,
        &namespace_derived(sources.namespace, sources.namespace_labels),
    );
    if let Some(sa) = sources.service_account {
        add_missing(&mut labels, &service_account_derived(sa));
    }
    for profile in sources.profile_labels {
        add_missing(&mut labels, profile.iter());
    }
    labels
}

/// Effective labels of a HostEndpoint: no namespace labels of any kind.
pub fn host(own: &Labels, profile_labels: &[&Labels]) -> Labels {
    let mut labels = own.clone();
    for profile in profile_labels {
        add_missing(&mut labels, profile.iter());
    }
    labels
}

/// Effective labels of a namespaced NetworkSet: it carries its namespace's profile.
pub fn network_set(own: &Labels, namespace: &str, namespace_labels: Option<&Labels>) -> Labels {
    let mut labels = Labels::new();
    labels.insert(NAMESPACE.to_owned(), namespace.to_owned());
    add_missing(&mut labels, own.iter());
    add_missing(&mut labels, &namespace_derived(namespace, namespace_labels));
    labels
}

/// The `pcns.` labels of namespace `name`: every label of its Namespace resource, plus
/// `pcns.projectcalico.org/name`, which is synthesised even without a Namespace resource and
/// overrides a namespace label of the same key.
pub fn namespace_derived(name: &str, namespace_labels: Option<&Labels>) -> Labels {
    let mut labels: Labels = namespace_labels
        .into_iter()
        .flatten()
        .map(|(k, v)| (format!("{NAMESPACE_PREFIX}{k}"), v.clone()))
        .collect();
    labels.insert(format!("{NAMESPACE_PREFIX}{NAME}"), name.to_owned());
    labels
}

/// The `pcsa.` labels of a service account: only its name, as there is no ServiceAccount kind.
pub fn service_account_derived(name: &str) -> Labels {
    Labels::from([(format!("{SERVICE_ACCOUNT_PREFIX}{NAME}"), name.to_owned())])
}

fn add_missing<'a>(
    labels: &mut Labels,
    source: impl IntoIterator<Item = (&'a String, &'a String)>,
) {
    for (k, v) in source {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn workload_labels_layer_forced_own_namespace_then_profiles() {
        let own = labels(&[
            ("app", "web"),
            ("projectcalico.org/namespace", "spoofed"),
            ("pcns.team", "spoofed"),
            ("pcsa.projectcalico.org/name", "spoofed"),
            ("tier", "own"),
        ]);
        let ns = labels(&[("team", "blue"), ("projectcalico.org/name", "ignored")]);
        let first = labels(&[
            ("tier", "first"),
            ("zone", "first"),
            ("pcns.team", "profile"),
        ]);
        let second = labels(&[("zone", "second"), ("rack", "second")]);
        let got = workload(&WorkloadLabelSources {
            own: &own,
            namespace: "prod",
            orchestrator: "k8s",
            service_account: Some("api"),
            namespace_labels: Some(&ns),
            profile_labels: &[&first, &second],
        });
        let want = labels(&[
            ("app", "web"),
            ("tier", "own"),
            ("projectcalico.org/namespace", "prod"),
            ("projectcalico.org/orchestrator", "k8s"),
            ("projectcalico.org/serviceaccount", "api"),
            ("pcns.team", "blue"),
            ("pcns.projectcalico.org/name", "prod"),
            ("pcsa.projectcalico.org/name", "api"),
            ("zone", "first"),
            ("rack", "second"),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn workload_without_orchestrator_or_namespace_resource_still_gets_forced_labels() {
        let got = workload(&WorkloadLabelSources {
            own: &Labels::new(),
            namespace: "default",
            orchestrator: "",
            service_account: None,
            namespace_labels: None,
            profile_labels: &[],
        });
        let want = labels(&[
            ("projectcalico.org/namespace", "default"),
            ("projectcalico.org/orchestrator", ""),
            ("pcns.projectcalico.org/name", "default"),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn host_labels_have_no_namespace_and_own_labels_win() {
        let own = labels(&[("role", "gateway")]);
        let profile = labels(&[("role", "other"), ("env", "prod")]);
        let got = host(&own, &[&profile]);
        assert_eq!(got, labels(&[("role", "gateway"), ("env", "prod")]));
    }

    #[test]
    fn network_set_labels_carry_namespace_labels() {
        let own = labels(&[("kind", "external"), ("pcns.team", "own")]);
        let ns = labels(&[("team", "blue"), ("zone", "a")]);
        let got = network_set(&own, "prod", Some(&ns));
        let want = labels(&[
            ("kind", "external"),
            ("projectcalico.org/namespace", "prod"),
            ("pcns.team", "own"),
            ("pcns.zone", "a"),
            ("pcns.projectcalico.org/name", "prod"),
        ]);
        assert_eq!(got, want);
    }
}
