//! Name rules: resource names per kind, Kubernetes label keys and values, IANA port names,
//! interface names. Each check returns `Err(message)` with what would be right, so callers
//! only add the field path.

use crate::model::Kind;

/// Longest DNS subdomain (and so longest v3 resource name).
const MAX_SUBDOMAIN: usize = 253;
/// Longest DNS label, label value, qualified-name part and Tier name.
const MAX_LABEL: usize = 63;
/// Longest v1 policy name.
const MAX_V1_POLICY_NAME: usize = 128;
/// Longest IANA service name.
const MAX_PORT_NAME: usize = 15;
/// Longest Linux interface name (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME: usize = 15;

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` without a length cap.
fn is_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first)
                && is_lower_alnum(last)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// RFC 1123 label: at most 63 characters of `[a-z0-9-]`, alphanumeric at both ends.
pub(crate) fn is_dns_label(s: &str) -> bool {
    s.len() <= MAX_LABEL && is_label_shape(s)
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters in total.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= MAX_SUBDOMAIN && s.split('.').all(is_label_shape)
}

/// GNP and NP names: `label` or `label.label` (the second form covers tier-prefixed names).
fn is_policy_name(s: &str) -> bool {
    if s.len() > MAX_SUBDOMAIN {
        return false;
    }
    let mut parts = s.split('.');
    let first_ok = parts.next().is_some_and(is_label_shape);
    let second_ok = parts.next().is_none_or(is_label_shape);
    first_ok && second_ok && parts.next().is_none()
}

/// The name Calico gives a Kubernetes NetworkPolicy in the NP namespace.
fn is_converted_knp_name(s: &str) -> bool {
    s.len() <= MAX_SUBDOMAIN && s.strip_prefix("knp.default.").is_some_and(is_dns_subdomain)
}

fn is_v1_policy_name(s: &str) -> bool {
    (1..=MAX_V1_POLICY_NAME).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-'))
}

/// Checks `metadata.name` of a resource of `kind` (the name is known to be non-empty).
pub(crate) fn check_resource_name(kind: Kind, name: &str) -> Result<(), String> {
    let (ok, rule) = match kind {
        Kind::GlobalNetworkPolicy => (
            is_policy_name(name),
            "use lower-case letters, digits and '-', with at most one '.' (e.g. allow-dns or \
             security.allow-dns), at most 253 characters",
        ),
        Kind::NetworkPolicy => (
            is_policy_name(name) || is_converted_knp_name(name),
            "use lower-case letters, digits and '-', with at most one '.' (e.g. allow-dns or \
             security.allow-dns) or the form knp.default.<name>, at most 253 characters",
        ),
        Kind::Tier => (
            is_dns_label(name),
            "a tier name is a single DNS label: lower-case letters, digits and '-', no dots, \
             at most 63 characters",
        ),
        Kind::Namespace => (
            is_dns_label(name),
            "a namespace name is a DNS label: lower-case letters, digits and '-', no dots, \
             at most 63 characters",
        ),
        Kind::V1Policy => (
            is_v1_policy_name(name),
            "use 1 to 128 characters of letters, digits, '_', '.', '/' and '-'",
        ),
        Kind::WorkloadEndpoint
        | Kind::HostEndpoint
        | Kind::NetworkSet
        | Kind::GlobalNetworkSet
        | Kind::Profile
        | Kind::K8sNetworkPolicy
        | Kind::FelixConfiguration
        | Kind::GatewayConfiguration => (
            is_dns_subdomain(name),
            "use a DNS subdomain: lower-case letters, digits, '-' and '.', each dot-separated \
             part starting and ending with a letter or digit, at most 253 characters",
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} is not valid for a {}: {rule}",
            kind.name()
        ))
    }
}

/// Kubernetes name part of a label key or value: alphanumeric at both ends, `-_.` inside.
fn is_k8s_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A Kubernetes qualified name (label key): `[prefix/]name`, prefix a DNS subdomain, name at
/// most 63 characters, alphanumeric at both ends with `-_.` inside.
pub(crate) fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !is_dns_subdomain(prefix) {
            return Err(format!(
                "label key {key:?} is not valid: its prefix {prefix:?} must be a DNS subdomain \
                 (lower-case letters, digits, '-' and '.', e.g. example.com)"
            ));
        }
    }
    if name.len() > MAX_LABEL || !is_k8s_name_part(name) {
        return Err(format!(
            "label key {key:?} is not valid: the name after the optional prefix/ must be 1 to 63 \
             characters of letters, digits, '-', '_' and '.', starting and ending with a letter \
             or digit"
        ));
    }
    Ok(())
}

/// A Kubernetes label value: empty, or at most 63 characters, alphanumeric at both ends with
/// `-_.` inside.
pub(crate) fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= MAX_LABEL && is_k8s_name_part(value)) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} is not valid: use at most 63 characters of letters, digits, \
             '-', '_' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// An IANA service name, as used for named ports: at most 15 characters of `[a-z0-9-]` with at
/// least one letter, no `--`, and no `-` at either end.
pub(crate) fn check_port_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = (1..=MAX_PORT_NAME).contains(&b.len())
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && !name.contains("--")
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid port name: a named port is an IANA service name of at most \
             15 characters of [a-z0-9-] with at least one letter, no \"--\" and no '-' at either \
             end (numeric ranges are written \"lo:hi\")"
        ))
    }
}

/// A Linux interface name: 1 to 15 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn check_interface_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_INTERFACE_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "interface name {name:?} is not valid: use 1 to 15 characters of letters, digits, \
             '_', '.' and '-'"
        ))
    }
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a likely
/// typo (used to suggest a fix for unknown field and variable names).
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.len() / 4).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over bytes, ignoring ASCII case (names here are ASCII identifiers).
fn edit_distance(a: &str, b: &str) -> usize {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(!ca.eq_ignore_ascii_case(cb));
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_per_kind() {
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let long_name = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        let too_long_name = format!("{}.{}", "a".repeat(127), "b".repeat(126));
        let cases: &[(Kind, &str, bool)] = &[
            (Kind::GlobalNetworkPolicy, "allow-dns", true),
            (Kind::GlobalNetworkPolicy, "security.allow-dns", true),
            (Kind::GlobalNetworkPolicy, "a", true),
            (Kind::GlobalNetworkPolicy, "9", true),
            (Kind::GlobalNetworkPolicy, &long_name, true),
            (Kind::GlobalNetworkPolicy, &too_long_name, false),
            (Kind::GlobalNetworkPolicy, "Allow", false),
            (Kind::GlobalNetworkPolicy, "a.b.c", false),
            (Kind::GlobalNetworkPolicy, "a_b", false),
            (Kind::GlobalNetworkPolicy, "-a", false),
            (Kind::GlobalNetworkPolicy, "a-", false),
            (Kind::GlobalNetworkPolicy, "a..b", false),
            (Kind::GlobalNetworkPolicy, ".a", false),
            (Kind::GlobalNetworkPolicy, "knp.default.x", false),
            (Kind::NetworkPolicy, "allow-web", true),
            (Kind::NetworkPolicy, "tier1.allow-web", true),
            (Kind::NetworkPolicy, "knp.default.allow-web", true),
            (Kind::NetworkPolicy, "knp.default.a.b", true),
            (Kind::NetworkPolicy, "knp.default.", false),
            (Kind::NetworkPolicy, "knp.other.x", false),
            (Kind::NetworkPolicy, "a.b.c", false),
            (Kind::Tier, "security", true),
            (Kind::Tier, &long_label, true),
            (Kind::Tier, &too_long_label, false),
            (Kind::Tier, "sec.ops", false),
            (Kind::Tier, "Security", false),
            (Kind::Namespace, "kube-system", true),
            (Kind::Namespace, "a.b", false),
            (Kind::V1Policy, "Allow_X.v2", true),
            (Kind::V1Policy, "a/b-c", true),
            (Kind::V1Policy, &"x".repeat(128), true),
            (Kind::V1Policy, &"x".repeat(129), false),
            (Kind::V1Policy, "a b", false),
            (Kind::V1Policy, "a:b", false),
            (Kind::HostEndpoint, "node1.eth0", true),
            (Kind::HostEndpoint, "node1_eth0", false),
            (Kind::Profile, "kns.default", true),
            (Kind::Profile, "Kns", false),
            (Kind::WorkloadEndpoint, "node-k8s-pod--a-eth0", true),
            (Kind::GlobalNetworkSet, "a..b", false),
            (Kind::K8sNetworkPolicy, "allow.web", true),
        ];
        for (kind, name, valid) in cases {
            let result = check_resource_name(*kind, name);
            assert_eq!(result.is_ok(), *valid, "{kind:?} {name:?}: {result:?}");
            if let Err(message) = result {
                assert!(message.contains(kind.name()), "{message}");
            }
        }
    }

    #[test]
    fn label_keys_and_values() {
        let keys: &[(&str, bool)] = &[
            ("app", true),
            ("app.kubernetes.io/name", true),
            ("projectcalico.org/namespace", true),
            ("A_b.C-9", true),
            (&"k".repeat(63), true),
            (&"k".repeat(64), false),
            ("", false),
            ("/app", false),
            ("Example.com/app", false),
            ("a/b/c", false),
            ("-app", false),
            ("app-", false),
            ("my app", false),
            ("example.com/", false),
        ];
        for (key, valid) in keys {
            assert_eq!(check_label_key(key).is_ok(), *valid, "key {key:?}");
        }
        let values: &[(&str, bool)] = &[
            ("", true),
            ("db", true),
            ("v1.2_3-x", true),
            (&"v".repeat(63), true),
            (&"v".repeat(64), false),
            ("has space", false),
            ("-x", false),
            ("x.", false),
            ("a/b", false),
        ];
        for (value, valid) in values {
            assert_eq!(check_label_value(value).is_ok(), *valid, "value {value:?}");
        }
    }

    #[test]
    fn port_and_interface_names() {
        let ports: &[(&str, bool)] = &[
            ("http", true),
            ("http-alt", true),
            ("h2c", true),
            ("a", true),
            ("abcdefghijklmno", true),
            ("abcdefghijklmnop", false),
            ("HTTP", false),
            ("8000-9000", false),
            ("80", false),
            ("a--b", false),
            ("-http", false),
            ("http-", false),
            ("http_alt", false),
            ("", false),
        ];
        for (name, valid) in ports {
            assert_eq!(check_port_name(name).is_ok(), *valid, "port name {name:?}");
        }
        let interfaces: &[(&str, bool)] = &[
            ("eth0", true),
            ("cali1234567890a", true),
            ("cali1234567890ab", false),
            ("br-lan.100", true),
            ("my_if", true),
            ("", false),
            ("eth 0", false),
            ("eth0:1", false),
        ];
        for (name, valid) in interfaces {
            assert_eq!(
                check_interface_name(name).is_ok(),
                *valid,
                "interface {name:?}"
            );
        }
    }

    #[test]
    fn closest_suggests_only_near_names() {
        let candidates = ["bpfEnabled", "ipipEnabled", "logSeverityScreen"];
        assert_eq!(closest("bpfEnabeld", &candidates), Some("bpfEnabled"));
        assert_eq!(
            closest("logseverityscreen", &candidates),
            Some("logSeverityScreen")
        );
        assert_eq!(closest("somethingElse", &candidates), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
