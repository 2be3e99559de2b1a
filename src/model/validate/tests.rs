//! Table of validation cases over resources built directly (specs written as JSON, which
//! decodes into the same serde shapes as YAML). Each case lists the exact problems expected,
//! as field path plus a fragment of the message; valid cases expect none.

use serde_json::{Value, json};

use super::validate;
use crate::model::{Kind, Limits, Metadata, Origin, Resource, Spec};

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

fn spec_of(kind: Kind, spec: Value) -> Spec {
    match kind {
        Kind::Namespace => Spec::Namespace(decode(spec)),
        Kind::WorkloadEndpoint => Spec::WorkloadEndpoint(decode(spec)),
        Kind::HostEndpoint => Spec::HostEndpoint(decode(spec)),
        Kind::NetworkSet => Spec::NetworkSet(decode(spec)),
        Kind::GlobalNetworkSet => Spec::GlobalNetworkSet(decode(spec)),
        Kind::Profile => Spec::Profile(decode(spec)),
        Kind::Tier => Spec::Tier(decode(spec)),
        Kind::GlobalNetworkPolicy => Spec::GlobalNetworkPolicy(decode(spec)),
        Kind::NetworkPolicy => Spec::NetworkPolicy(decode(spec)),
        Kind::V1Policy => Spec::V1Policy(decode(spec)),
        Kind::K8sNetworkPolicy => Spec::K8sNetworkPolicy(decode(spec)),
        Kind::FelixConfiguration => Spec::FelixConfiguration(decode(spec)),
        Kind::GatewayConfiguration => Spec::GatewayConfiguration(decode(spec)),
    }
}

/// A resource with the given metadata, from `test.yaml` at a line that tells resources apart.
fn with_metadata(kind: Kind, metadata: Value, spec: Value) -> Resource {
    Resource {
        origin: Origin {
            file: "test.yaml".to_owned(),
            line: 1,
        },
        metadata: decode::<Metadata>(metadata),
        spec: spec_of(kind, spec),
        fields: Default::default(),
    }
}

fn named(kind: Kind, name: &str, spec: Value) -> Resource {
    with_metadata(kind, json!({ "name": name }), spec)
}

fn gnp(spec: Value) -> Resource {
    named(Kind::GlobalNetworkPolicy, "p", spec)
}

fn v1(spec: Value) -> Resource {
    named(Kind::V1Policy, "p", spec)
}

fn knp(spec: Value) -> Resource {
    with_metadata(
        Kind::K8sNetworkPolicy,
        json!({ "name": "p", "namespace": "ns" }),
        spec,
    )
}

/// A GNP with one ingress rule.
fn rule(rule: Value) -> Resource {
    gnp(json!({ "ingress": [rule] }))
}

/// A v1 policy with one ingress rule.
fn v1_rule(rule: Value) -> Resource {
    v1(json!({ "ingress": [rule] }))
}

fn hep(name: &str, spec: Value) -> Resource {
    named(Kind::HostEndpoint, name, spec)
}

fn wep(name: &str, spec: Value) -> Resource {
    with_metadata(
        Kind::WorkloadEndpoint,
        json!({ "name": name, "namespace": "ns" }),
        spec,
    )
}

struct Case {
    name: &'static str,
    resources: Vec<Resource>,
    /// (field path, fragment of the message), in the order validation reports them.
    expect: &'static [(&'static str, &'static str)],
}

fn case(
    name: &'static str,
    resources: Vec<Resource>,
    expect: &'static [(&'static str, &'static str)],
) -> Case {
    Case {
        name,
        resources,
        expect,
    }
}

fn run(cases: Vec<Case>, limits: &Limits) {
    let mut failures = Vec::new();
    for case in cases {
        let problems = validate(&case.resources, limits);
        let got: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.message.as_str()))
            .collect();
        let matches = got.len() == case.expect.len()
            && got
                .iter()
                .zip(case.expect)
                .all(|((field, message), (want_field, fragment))| {
                    field == want_field && message.contains(fragment)
                });
        if !matches {
            failures.push(format!(
                "{}:\n  expected {:?}\n  got      {:#?}",
                case.name, case.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn names_namespaces_and_labels() {
    let long_tier = "t".repeat(64);
    run(
        vec![
            case(
                "gnp tier-prefixed name",
                vec![named(
                    Kind::GlobalNetworkPolicy,
                    "security.allow-dns",
                    json!({}),
                )],
                &[],
            ),
            case(
                "gnp upper case",
                vec![named(Kind::GlobalNetworkPolicy, "Allow", json!({}))],
                &[("metadata.name", "not valid for a GlobalNetworkPolicy")],
            ),
            case(
                "gnp two dots",
                vec![named(Kind::GlobalNetworkPolicy, "a.b.c", json!({}))],
                &[("metadata.name", "at most one '.'")],
            ),
            case(
                "gnp underscore",
                vec![named(Kind::GlobalNetworkPolicy, "a_b", json!({}))],
                &[("metadata.name", "not valid")],
            ),
            case(
                "np converted knp name",
                vec![with_metadata(
                    Kind::NetworkPolicy,
                    json!({"name": "knp.default.allow-web", "namespace": "ns"}),
                    json!({}),
                )],
                &[],
            ),
            case(
                "np two dots",
                vec![with_metadata(
                    Kind::NetworkPolicy,
                    json!({"name": "a.b.c", "namespace": "ns"}),
                    json!({}),
                )],
                &[("metadata.name", "knp.default.<name>")],
            ),
            case(
                "tier with dot",
                vec![named(Kind::Tier, "sec.ops", json!({}))],
                &[("metadata.name", "no dots")],
            ),
            case(
                "tier too long",
                vec![with_metadata(
                    Kind::Tier,
                    json!({"name": long_tier}),
                    json!({}),
                )],
                &[("metadata.name", "at most 63")],
            ),
            case(
                "v1 permissive name",
                vec![named(Kind::V1Policy, "Allow_X.v2", json!({}))],
                &[],
            ),
            case(
                "v1 name with space",
                vec![named(Kind::V1Policy, "a b", json!({}))],
                &[("metadata.name", "1 to 128 characters")],
            ),
            case(
                "name missing",
                vec![with_metadata(Kind::GlobalNetworkSet, json!({}), json!({}))],
                &[("metadata.name", "needs metadata.name")],
            ),
            case(
                "profile subdomain",
                vec![named(Kind::Profile, "kns.default", json!({}))],
                &[],
            ),
            case(
                "profile upper case",
                vec![named(Kind::Profile, "Web", json!({}))],
                &[("metadata.name", "DNS subdomain")],
            ),
            case(
                "namespace not a label",
                vec![with_metadata(
                    Kind::NetworkSet,
                    json!({"name": "s", "namespace": "Bad_NS"}),
                    json!({}),
                )],
                &[("metadata.namespace", "DNS label")],
            ),
            case(
                "namespace on a global kind",
                vec![with_metadata(
                    Kind::GlobalNetworkPolicy,
                    json!({"name": "p", "namespace": "ns"}),
                    json!({}),
                )],
                &[("metadata.namespace", "not namespaced")],
            ),
            case(
                "valid labels",
                vec![with_metadata(
                    Kind::GlobalNetworkSet,
                    json!({"name": "s", "labels": {"app.kubernetes.io/name": "web", "tier": "", "x": "a_b.c-d"}}),
                    json!({}),
                )],
                &[],
            ),
            case(
                "label key with space",
                vec![with_metadata(
                    Kind::GlobalNetworkSet,
                    json!({"name": "s", "labels": {"my app": "web"}}),
                    json!({}),
                )],
                &[("metadata.labels.my app", "label key \"my app\"")],
            ),
            case(
                "label key bad prefix",
                vec![with_metadata(
                    Kind::GlobalNetworkSet,
                    json!({"name": "s", "labels": {"Example.com/app": "web"}}),
                    json!({}),
                )],
                &[("metadata.labels.Example.com/app", "prefix")],
            ),
            case(
                "label value with space",
                vec![with_metadata(
                    Kind::GlobalNetworkSet,
                    json!({"name": "s", "labels": {"app": "has space"}}),
                    json!({}),
                )],
                &[("metadata.labels.app", "label value \"has space\"")],
            ),
            case(
                "label value too long",
                vec![with_metadata(
                    Kind::GlobalNetworkSet,
                    json!({"name": "s", "labels": {"app": "v".repeat(64)}}),
                    json!({}),
                )],
                &[("metadata.labels.app", "at most 63")],
            ),
            case(
                "network set claims namespace label",
                vec![with_metadata(
                    Kind::NetworkSet,
                    json!({"name": "s", "namespace": "ns", "labels": {"projectcalico.org/namespace": "other"}}),
                    json!({}),
                )],
                &[(
                    "metadata.labels.projectcalico.org/namespace",
                    "may not carry",
                )],
            ),
            case(
                "gns claims namespace label",
                vec![with_metadata(
                    Kind::GlobalNetworkSet,
                    json!({"name": "s", "labels": {"projectcalico.org/namespace": "ns"}}),
                    json!({}),
                )],
                &[(
                    "metadata.labels.projectcalico.org/namespace",
                    "may not carry",
                )],
            ),
            case(
                "profile labelsToApply checked",
                vec![named(
                    Kind::Profile,
                    "p",
                    json!({"labelsToApply": {"ok": "yes", "bad key": "x"}}),
                )],
                &[("spec.labelsToApply.bad key", "label key")],
            ),
        ],
        &Limits::default(),
    );
}

#[test]
fn actions_types_ip_version_and_protocols() {
    run(
        vec![
            case(
                "v3 actions",
                vec![gnp(
                    json!({"ingress": [{"action": "Allow"}, {"action": "Deny"}, {"action": "Log"}, {"action": "Pass"}]}),
                )],
                &[],
            ),
            case(
                "v3 lower-case action",
                vec![rule(json!({"action": "allow"}))],
                &[("spec.ingress[0].action", "use Allow, Deny, Log or Pass")],
            ),
            case(
                "v3 Reject",
                vec![rule(json!({"action": "Reject"}))],
                &[(
                    "spec.ingress[0].action",
                    "not valid in projectcalico.org/v3",
                )],
            ),
            case(
                "v1 lower-case actions",
                vec![v1(
                    json!({"egress": [{"action": "allow"}, {"action": "deny"}, {"action": "log"}, {"action": "pass"}]}),
                )],
                &[],
            ),
            case(
                "v1 capitalised action",
                vec![v1(json!({"egress": [{"action": "Allow"}]}))],
                &[("spec.egress[0].action", "use allow, deny, log or pass")],
            ),
            case(
                "v3 types",
                vec![gnp(json!({"types": ["Ingress", "Egress"]}))],
                &[],
            ),
            case(
                "v3 lower-case type",
                vec![gnp(json!({"types": ["ingress"]}))],
                &[("spec.types[0]", "use Ingress or Egress")],
            ),
            case(
                "repeated type",
                vec![gnp(json!({"types": ["Egress", "Egress"]}))],
                &[("spec.types[1]", "listed twice")],
            ),
            case(
                "v1 types",
                vec![v1(json!({"types": ["ingress", "egress"]}))],
                &[],
            ),
            case(
                "v1 capitalised type",
                vec![v1(json!({"types": ["Ingress"]}))],
                &[("spec.types[0]", "use ingress or egress")],
            ),
            case(
                "ipVersion 4 and 6",
                vec![gnp(
                    json!({"ingress": [{"action": "Allow", "ipVersion": 4}, {"action": "Allow", "ipVersion": 6}]}),
                )],
                &[],
            ),
            case(
                "ipVersion 5",
                vec![rule(json!({"action": "Allow", "ipVersion": 5}))],
                &[("spec.ingress[0].ipVersion", "use 4 or 6")],
            ),
            case(
                "protocol names",
                vec![gnp(
                    json!({"ingress": json!(["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite", "6", 255]).as_array().unwrap().iter().map(|p| json!({"action": "Allow", "protocol": p})).collect::<Vec<_>>()}),
                )],
                &[],
            ),
            case(
                "protocol tcp in v3",
                vec![rule(json!({"action": "Allow", "protocol": "tcp"}))],
                &[(
                    "spec.ingress[0].protocol",
                    "protocol \"tcp\" is not valid in projectcalico.org/v3: use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255",
                )],
            ),
            case(
                "protocol 0",
                vec![rule(json!({"action": "Allow", "protocol": 0}))],
                &[("spec.ingress[0].protocol", "number 1-255")],
            ),
            case(
                "protocol 256",
                vec![rule(json!({"action": "Allow", "protocol": 256}))],
                &[("spec.ingress[0].protocol", "number 1-255")],
            ),
            case(
                "notProtocol checked",
                vec![rule(json!({"action": "Allow", "notProtocol": "udp"}))],
                &[("spec.ingress[0].notProtocol", "not valid")],
            ),
            case(
                "v1 protocol tcp",
                vec![v1_rule(json!({"action": "allow", "protocol": "tcp"}))],
                &[],
            ),
            case(
                "v1 protocol TCP",
                vec![v1_rule(json!({"action": "allow", "protocol": "TCP"}))],
                &[("spec.ingress[0].protocol", "use tcp, udp")],
            ),
        ],
        &Limits::default(),
    );
}

#[test]
fn ports() {
    run(
        vec![
            case(
                "numeric ports with TCP",
                vec![rule(
                    json!({"action": "Allow", "protocol": "TCP", "destination": {"ports": [1, 65535, "8000:9000", "443"]}}),
                )],
                &[],
            ),
            case(
                "protocol 6 with ports",
                vec![rule(
                    json!({"action": "Allow", "protocol": 6, "source": {"notPorts": [80]}}),
                )],
                &[],
            ),
            case(
                "named ports without protocol",
                vec![rule(
                    json!({"action": "Allow", "destination": {"ports": ["http", "metrics"]}}),
                )],
                &[],
            ),
            case(
                "empty ports with any protocol",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMP", "destination": {"ports": []}}),
                )],
                &[],
            ),
            case(
                "port 0",
                vec![rule(
                    json!({"action": "Allow", "protocol": "TCP", "destination": {"ports": [0]}}),
                )],
                &[("spec.ingress[0].destination.ports[0]", "use 1-65535")],
            ),
            case(
                "port 65536",
                vec![rule(
                    json!({"action": "Allow", "protocol": "TCP", "destination": {"ports": [80, 65536]}}),
                )],
                &[("spec.ingress[0].destination.ports[1]", "out of range")],
            ),
            case(
                "backwards range",
                vec![rule(
                    json!({"action": "Allow", "protocol": "UDP", "source": {"ports": ["9000:8000"]}}),
                )],
                &[("spec.ingress[0].source.ports[0]", "backwards")],
            ),
            case(
                "upper-case name",
                vec![rule(
                    json!({"action": "Allow", "destination": {"ports": ["HTTP"]}}),
                )],
                &[(
                    "spec.ingress[0].destination.ports[0]",
                    "not a valid port name",
                )],
            ),
            case(
                "dash range is a name",
                vec![rule(
                    json!({"action": "Allow", "protocol": "TCP", "destination": {"ports": ["8000-9000"]}}),
                )],
                &[(
                    "spec.ingress[0].destination.ports[0]",
                    "\"8000-9000\" is not a valid port name",
                )],
            ),
            case(
                "numeric port without protocol",
                vec![rule(
                    json!({"action": "Allow", "destination": {"ports": ["http", 80]}}),
                )],
                &[(
                    "spec.ingress[0].destination.ports[1]",
                    "port 80 needs a protocol",
                )],
            ),
            case(
                "numeric notPorts without protocol",
                vec![rule(
                    json!({"action": "Allow", "source": {"notPorts": ["1:1024"]}}),
                )],
                &[("spec.ingress[0].source.notPorts[0]", "needs a protocol")],
            ),
            case(
                "ports with ICMP",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMP", "destination": {"ports": [80]}}),
                )],
                &[("spec.ingress[0].destination.ports", "protocol is ICMP")],
            ),
            case(
                "named ports with UDPLite",
                vec![rule(
                    json!({"action": "Allow", "protocol": "UDPLite", "destination": {"ports": ["http"]}}),
                )],
                &[("spec.ingress[0].destination.ports", "protocol is UDPLite")],
            ),
            case(
                "ports with protocol 47",
                vec![rule(
                    json!({"action": "Allow", "protocol": 47, "source": {"ports": [1]}}),
                )],
                &[("spec.ingress[0].source.ports", "protocol is 47")],
            ),
            case(
                "ports with SCTP",
                vec![rule(
                    json!({"action": "Allow", "protocol": "SCTP", "destination": {"ports": [3868]}}),
                )],
                &[],
            ),
            case(
                "v1 ports with udplite",
                vec![v1_rule(
                    json!({"action": "allow", "protocol": "udplite", "destination": {"ports": [1]}}),
                )],
                &[(
                    "spec.ingress[0].destination.ports",
                    "need protocol tcp, udp or sctp",
                )],
            ),
        ],
        &Limits::default(),
    );
}

#[test]
fn icmp() {
    run(
        vec![
            case(
                "icmp type and code",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}}),
                )],
                &[],
            ),
            case(
                "icmpv6 type 254 and code 255",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMPv6", "icmp": {"type": 254, "code": 255}}),
                )],
                &[],
            ),
            case(
                "icmp type 255",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMP", "icmp": {"type": 255}}),
                )],
                &[("spec.ingress[0].icmp.type", "use 0-254")],
            ),
            case(
                "icmp code 256",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMP", "icmp": {"type": 3, "code": 256}}),
                )],
                &[("spec.ingress[0].icmp.code", "use 0-255")],
            ),
            case(
                "icmp code without type",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMP", "icmp": {"code": 0}}),
                )],
                &[("spec.ingress[0].icmp.code", "needs a type")],
            ),
            case(
                "icmp without protocol",
                vec![rule(json!({"action": "Allow", "icmp": {"type": 8}}))],
                &[("spec.ingress[0].icmp", "needs protocol ICMP or ICMPv6")],
            ),
            case(
                "icmp with TCP",
                vec![rule(
                    json!({"action": "Allow", "protocol": "TCP", "icmp": {"type": 8}}),
                )],
                &[("spec.ingress[0].icmp", "protocol is TCP")],
            ),
            case(
                "notICMP type 255",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 255}}),
                )],
                &[("spec.ingress[0].notICMP.type", "use 0-254")],
            ),
            case(
                "notICMP code without type",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMPv6", "notICMP": {"code": 1}}),
                )],
                &[("spec.ingress[0].notICMP.code", "needs a type")],
            ),
            case(
                "ICMP with ipVersion 6",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMP", "ipVersion": 6}),
                )],
                &[("spec.ingress[0].protocol", "IPv4 only but ipVersion is 6")],
            ),
            case(
                "ICMPv6 with ipVersion 4",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMPv6", "ipVersion": 4}),
                )],
                &[("spec.ingress[0].protocol", "IPv6 only but ipVersion is 4")],
            ),
            case(
                "notProtocol ICMP with ipVersion 6",
                vec![rule(
                    json!({"action": "Allow", "notProtocol": "ICMP", "ipVersion": 6}),
                )],
                &[("spec.ingress[0].notProtocol", "IPv4 only")],
            ),
            case(
                "ICMP with ipVersion 4",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMP", "ipVersion": 4}),
                )],
                &[],
            ),
            case(
                "v1 icmp",
                vec![v1_rule(
                    json!({"action": "allow", "protocol": "icmp", "icmp": {"type": 0}}),
                )],
                &[],
            ),
        ],
        &Limits::default(),
    );
}

#[test]
fn rule_cidrs() {
    run(
        vec![
            case(
                "masked cidrs and bare ips",
                vec![rule(
                    json!({"action": "Allow", "source": {"nets": ["192.0.2.0/24", "198.51.100.7"], "notNets": ["192.0.2.128/25"]}, "destination": {"nets": ["203.0.113.0/24"]}}),
                )],
                &[],
            ),
            case(
                "host bits set",
                vec![rule(
                    json!({"action": "Allow", "source": {"nets": ["192.0.2.5/24"]}}),
                )],
                &[(
                    "spec.ingress[0].source.nets[0]",
                    "has host bits set: write the network as 192.0.2.0/24",
                )],
            ),
            case(
                "unparseable",
                vec![rule(
                    json!({"action": "Allow", "destination": {"notNets": ["192.0.2.0/33"]}}),
                )],
                &[("spec.ingress[0].destination.notNets[0]", "not a valid CIDR")],
            ),
            case(
                "mixed within a list",
                vec![rule(
                    json!({"action": "Allow", "source": {"nets": ["192.0.2.0/24", "2001:db8::/32"]}}),
                )],
                &[(
                    "spec.ingress[0].source.nets[1]",
                    "may not mix IPv4 and IPv6",
                )],
            ),
            case(
                "mixed across sides",
                vec![rule(
                    json!({"action": "Allow", "source": {"nets": ["2001:db8::/32"]}, "destination": {"notNets": ["192.0.2.0/24"]}}),
                )],
                &[("spec.ingress[0].destination.notNets[0]", "source.nets[0]")],
            ),
            case(
                "ipVersion disagrees",
                vec![rule(
                    json!({"action": "Allow", "ipVersion": 4, "destination": {"nets": ["2001:db8::/32"]}}),
                )],
                &[(
                    "spec.ingress[0].destination.nets[0]",
                    "is IPv6 but the rule has ipVersion 4",
                )],
            ),
            case(
                "ICMP with IPv6 nets",
                vec![rule(
                    json!({"action": "Allow", "protocol": "ICMP", "destination": {"nets": ["2001:db8::/32"]}}),
                )],
                &[(
                    "spec.ingress[0].destination.nets[0]",
                    "protocol ICMP only matches IPv4",
                )],
            ),
            case(
                "catch-all notNets v4",
                vec![rule(
                    json!({"action": "Allow", "source": {"notNets": ["0.0.0.0/0"]}}),
                )],
                &[(
                    "spec.ingress[0].source.notNets[0]",
                    "excludes every IPv4 address",
                )],
            ),
            case(
                "catch-all notNets v6",
                vec![rule(
                    json!({"action": "Allow", "source": {"notNets": ["::/0"]}}),
                )],
                &[(
                    "spec.ingress[0].source.notNets[0]",
                    "excludes every IPv6 address",
                )],
            ),
            case(
                "catch-all nets is fine",
                vec![rule(
                    json!({"action": "Allow", "source": {"nets": ["0.0.0.0/0"]}}),
                )],
                &[],
            ),
            case(
                "v1 normalises host bits",
                vec![v1(
                    json!({"ingress": [{"action": "allow", "source": {"nets": ["192.0.2.5/24"]}}, {"action": "allow", "destination": {"net": "198.51.100.1/24"}}]}),
                )],
                &[],
            ),
            case(
                "v1 mixes net and nets",
                vec![v1_rule(
                    json!({"action": "allow", "source": {"net": "192.0.2.0/24", "nets": ["198.51.100.0/24"]}}),
                )],
                &[(
                    "spec.ingress[0].source.net",
                    "may not mix the old net/notNet",
                )],
            ),
            case(
                "v1 mixes across sides",
                vec![v1_rule(
                    json!({"action": "allow", "source": {"notNet": "192.0.2.0/24"}, "destination": {"nets": ["198.51.100.0/24"]}}),
                )],
                &[("spec.ingress[0].source.notNet", "may not mix")],
            ),
            case(
                "v1 family mixing",
                vec![v1_rule(
                    json!({"action": "allow", "source": {"net": "192.0.2.0/24"}, "destination": {"net": "2001:db8::/32"}}),
                )],
                &[(
                    "spec.ingress[0].destination.net",
                    "may not mix IPv4 and IPv6",
                )],
            ),
        ],
        &Limits::default(),
    );
}

#[test]
fn policy_stages_orders_tiers_and_unsupported_features() {
    run(
        vec![
            case(
                "doNotTrack with applyOnForward",
                vec![gnp(json!({"doNotTrack": true, "applyOnForward": true}))],
                &[],
            ),
            case(
                "preDNAT ingress with applyOnForward",
                vec![gnp(
                    json!({"preDNAT": true, "applyOnForward": true, "types": ["Ingress"], "ingress": [{"action": "Deny"}]}),
                )],
                &[],
            ),
            case(
                "doNotTrack and preDNAT",
                vec![gnp(
                    json!({"doNotTrack": true, "preDNAT": true, "applyOnForward": true}),
                )],
                &[("spec.preDNAT", "cannot both be true")],
            ),
            case(
                "preDNAT with egress rules",
                vec![gnp(
                    json!({"preDNAT": true, "applyOnForward": true, "egress": [{"action": "Allow"}]}),
                )],
                &[("spec.egress", "may not have egress rules")],
            ),
            case(
                "preDNAT with Egress type",
                vec![gnp(
                    json!({"preDNAT": true, "applyOnForward": true, "types": ["Ingress", "Egress"]}),
                )],
                &[("spec.types[1]", "may not list Egress")],
            ),
            case(
                "doNotTrack without applyOnForward",
                vec![gnp(json!({"doNotTrack": true}))],
                &[(
                    "spec.applyOnForward",
                    "doNotTrack policy needs applyOnForward: true",
                )],
            ),
            case(
                "preDNAT without applyOnForward",
                vec![gnp(json!({"preDNAT": true}))],
                &[(
                    "spec.applyOnForward",
                    "preDNAT policy needs applyOnForward: true",
                )],
            ),
            case(
                "v1 doNotTrack needs no applyOnForward",
                vec![v1(json!({"doNotTrack": true}))],
                &[],
            ),
            case(
                "v1 doNotTrack and preDNAT",
                vec![v1(json!({"doNotTrack": true, "preDNAT": true}))],
                &[("spec.preDNAT", "cannot both be true")],
            ),
            case(
                "v1 preDNAT with egress",
                vec![v1(
                    json!({"preDNAT": true, "types": ["egress"], "egress": [{"action": "allow"}]}),
                )],
                &[
                    ("spec.egress", "egress rules"),
                    ("spec.types[0]", "may not list egress"),
                ],
            ),
            case("fractional order", vec![gnp(json!({"order": 10.5}))], &[]),
            case(
                "performance hint",
                vec![gnp(
                    json!({"performanceHints": ["AssumeNeededOnEveryNode"]}),
                )],
                &[],
            ),
            case(
                "unknown performance hint",
                vec![gnp(json!({"performanceHints": ["Fast"]}))],
                &[("spec.performanceHints[0]", "AssumeNeededOnEveryNode")],
            ),
            case(
                "tier actions",
                vec![
                    named(
                        Kind::Tier,
                        "a",
                        json!({"order": 100, "defaultAction": "Pass"}),
                    ),
                    named(Kind::Tier, "b", json!({"defaultAction": "Deny"})),
                ],
                &[],
            ),
            case(
                "tier Allow",
                vec![named(Kind::Tier, "a", json!({"defaultAction": "Allow"}))],
                &[("spec.defaultAction", "use Deny or Pass")],
            ),
            case(
                "tier without order",
                vec![named(Kind::Tier, "later", json!({}))],
                &[],
            ),
            case(
                "declared default tier",
                vec![named(
                    Kind::Tier,
                    "default",
                    json!({"order": 1_000_000, "defaultAction": "Deny"}),
                )],
                &[],
            ),
            case(
                "default tier wrong order",
                vec![named(Kind::Tier, "default", json!({"order": 100}))],
                &[("spec.order", "must be 1000000")],
            ),
            case(
                "default tier Pass",
                vec![named(
                    Kind::Tier,
                    "default",
                    json!({"order": 1_000_000, "defaultAction": "Pass"}),
                )],
                &[("spec.defaultAction", "must be Deny")],
            ),
            case(
                "default tier without order",
                vec![named(
                    Kind::Tier,
                    "default",
                    json!({"defaultAction": "Deny"}),
                )],
                &[("spec.order", "must be 1000000")],
            ),
            case(
                "default tier without defaultAction",
                vec![named(Kind::Tier, "default", json!({"order": 1_000_000}))],
                &[],
            ),
            case(
                "http match",
                vec![rule(
                    json!({"action": "Allow", "http": {"methods": ["GET"]}}),
                )],
                &[("spec.ingress[0].http", "not supported")],
            ),
            case(
                "services match",
                vec![rule(
                    json!({"action": "Allow", "destination": {"services": {"name": "web", "namespace": "ns"}}}),
                )],
                &[("spec.ingress[0].destination.services", "not supported")],
            ),
            case(
                "v1 tag",
                vec![v1_rule(
                    json!({"action": "allow", "source": {"tag": "web"}}),
                )],
                &[("spec.ingress[0].source.tag", "not supported")],
            ),
            case(
                "v1 notTag",
                vec![v1_rule(
                    json!({"action": "allow", "destination": {"notTag": "web"}}),
                )],
                &[("spec.ingress[0].destination.notTag", "not supported")],
            ),
            case(
                "profile rules checked",
                vec![named(
                    Kind::Profile,
                    "p",
                    json!({"egress": [{"action": "allow"}]}),
                )],
                &[("spec.egress[0].action", "use Allow")],
            ),
            case(
                "np rules checked",
                vec![with_metadata(
                    Kind::NetworkPolicy,
                    json!({"name": "p", "namespace": "ns"}),
                    json!({"ingress": [{"action": "Allow", "protocol": "tcp"}]}),
                )],
                &[("spec.ingress[0].protocol", "not valid")],
            ),
        ],
        &Limits::default(),
    );
}

#[test]
fn non_finite_order_is_refused() {
    // JSON cannot spell NaN, so the spec is built directly.
    let mut policy = gnp(json!({}));
    if let Spec::GlobalNetworkPolicy(spec) = &mut policy.spec {
        spec.order = Some(f64::NAN);
    }
    let problems = validate(&[policy], &Limits::default());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field, "spec.order");
    assert!(problems[0].message.contains("finite"));
}

#[test]
fn rules_per_policy_limit() {
    let limits = Limits {
        max_rules_per_policy: 2,
        ..Limits::default()
    };
    let rules = |n: usize| vec![json!({"action": "Allow", "protocol": "tcp"}); n];
    run(
        vec![
            case(
                "at the limit",
                vec![gnp(json!({"ingress": rules(1), "egress": rules(1)}))],
                &[
                    ("spec.ingress[0].protocol", "not valid"),
                    ("spec.egress[0].protocol", "not valid"),
                ],
            ),
            case(
                "over the limit",
                vec![gnp(json!({"ingress": rules(2), "egress": rules(1)}))],
                &[(
                    "spec",
                    "3 rules (ingress and egress together) exceed the limit of 2",
                )],
            ),
            case(
                "v1 over the limit",
                vec![v1(json!({"ingress": rules(3)}))],
                &[("spec", "exceed the limit")],
            ),
            case(
                "knp over the limit",
                vec![knp(json!({"ingress": [{}, {}, {}]}))],
                &[("spec", "exceed the limit")],
            ),
        ],
        &limits,
    );
}

#[test]
fn endpoints_and_sets() {
    run(
        vec![
            case(
                "hep with expectedIPs",
                vec![hep(
                    "h",
                    json!({"node": "gw1", "expectedIPs": ["192.0.2.10", "2001:db8::10"]}),
                )],
                &[],
            ),
            case(
                "hep with interface only",
                vec![hep("h", json!({"node": "gw1", "interfaceName": "eth0"}))],
                &[],
            ),
            case(
                "hep with all interfaces",
                vec![hep("h", json!({"node": "gw1", "interfaceName": "*"}))],
                &[],
            ),
            case(
                "hep without node",
                vec![hep("h", json!({"expectedIPs": ["192.0.2.10"]}))],
                &[("spec.node", "needs node")],
            ),
            case(
                "hep without interface or ips",
                vec![hep("h", json!({"node": "gw1"}))],
                &[("spec", "needs interfaceName or expectedIPs")],
            ),
            case(
                "hep expectedIP with prefix",
                vec![hep(
                    "h",
                    json!({"node": "gw1", "expectedIPs": ["192.0.2.10/32"]}),
                )],
                &[("spec.expectedIPs[0]", "bare IP addresses")],
            ),
            case(
                "hep bad interface",
                vec![hep("h", json!({"node": "gw1", "interfaceName": "eth0:1"}))],
                &[("spec.interfaceName", "interface name")],
            ),
            case(
                "wep addresses",
                vec![wep(
                    "w",
                    json!({"interfaceName": "cali0", "ipNetworks": ["192.0.2.1/32", "2001:db8::1/128", "192.0.2.2"]}),
                )],
                &[],
            ),
            case(
                "wep network not single",
                vec![wep(
                    "w",
                    json!({"interfaceName": "cali0", "ipNetworks": ["192.0.2.0/24"]}),
                )],
                &[("spec.ipNetworks[0]", "not a single address")],
            ),
            case(
                "wep without interface",
                vec![wep("w", json!({"ipNetworks": ["192.0.2.1"]}))],
                &[("spec.interfaceName", "needs interfaceName")],
            ),
            case(
                "wep interface too long",
                vec![wep("w", json!({"interfaceName": "cali0123456789ab"}))],
                &[("spec.interfaceName", "1 to 15 characters")],
            ),
            case(
                "wep other fields",
                vec![wep(
                    "w",
                    json!({"interfaceName": "cali0", "mac": "02:00:5e:10:00:01", "ipv4Gateway": "192.0.2.254", "ipv6Gateway": "2001:db8::fe", "ipNATs": [{"internalIP": "192.0.2.1", "externalIP": "203.0.113.1"}], "serviceAccountName": "web"}),
                )],
                &[],
            ),
            case(
                "wep bad other fields",
                vec![wep(
                    "w",
                    json!({"interfaceName": "cali0", "mac": "nope", "ipv4Gateway": "2001:db8::1", "ipNATs": [{"internalIP": "x", "externalIP": "203.0.113.1"}]}),
                )],
                &[
                    ("spec.ipNATs[0].internalIP", "not a valid IP"),
                    ("spec.ipv4Gateway", "not an IPv4 address"),
                    ("spec.mac", "not a MAC address"),
                ],
            ),
            case(
                "endpoint named ports",
                vec![wep(
                    "w",
                    json!({"interfaceName": "cali0", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": 17}]}),
                )],
                &[],
            ),
            case(
                "endpoint port bad name",
                vec![wep(
                    "w",
                    json!({"interfaceName": "cali0", "ports": [{"name": "HTTP", "port": 8080, "protocol": "TCP"}]}),
                )],
                &[("spec.ports[0].name", "not a valid port name")],
            ),
            case(
                "endpoint port ICMP",
                vec![hep(
                    "h",
                    json!({"node": "n", "interfaceName": "eth0", "ports": [{"name": "ping", "port": 1, "protocol": "ICMP"}]}),
                )],
                &[(
                    "spec.ports[0].protocol",
                    "must be TCP, UDP or SCTP, not ICMP",
                )],
            ),
            case(
                "endpoint port lower-case protocol",
                vec![hep(
                    "h",
                    json!({"node": "n", "interfaceName": "eth0", "ports": [{"name": "web", "port": 80, "protocol": "tcp"}]}),
                )],
                &[(
                    "spec.ports[0].protocol",
                    "not valid in projectcalico.org/v3",
                )],
            ),
            case(
                "endpoint port 0",
                vec![hep(
                    "h",
                    json!({"node": "n", "interfaceName": "eth0", "ports": [{"name": "web", "port": 0, "protocol": "TCP"}]}),
                )],
                &[("spec.ports[0].port", "use 1-65535")],
            ),
            case(
                "network set non-canonical",
                vec![with_metadata(
                    Kind::NetworkSet,
                    json!({"name": "s", "namespace": "ns"}),
                    json!({"nets": ["192.0.2.5/24", "2001:db8::1", "198.51.100.0/24"]}),
                )],
                &[],
            ),
            case(
                "network set bad cidr",
                vec![named(
                    Kind::GlobalNetworkSet,
                    "s",
                    json!({"nets": ["192.0.2.0/24", "bogus"]}),
                )],
                &[("spec.nets[1]", "not a valid CIDR")],
            ),
        ],
        &Limits::default(),
    );
}

#[test]
fn kubernetes_network_policies() {
    run(
        vec![
            case(
                "knp without policyTypes",
                vec![knp(
                    json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 80}]}]}),
                )],
                &[],
            ),
            case(
                "knp full",
                vec![knp(
                    json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "Exists"}]}, "policyTypes": ["Ingress", "Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}, {"namespaceSelector": {}, "podSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}, {"port": 8000, "endPort": 9000}, {"port": "http"}, {"protocol": "SCTP"}]}]}),
                )],
                &[],
            ),
            case(
                "endPort below port",
                vec![knp(
                    json!({"ingress": [{"ports": [{"port": 9000, "endPort": 8000}]}]}),
                )],
                &[("spec.ingress[0].ports[0].endPort", "below port 9000")],
            ),
            case(
                "endPort with named port",
                vec![knp(
                    json!({"ingress": [{"ports": [{"port": "http", "endPort": 8000}]}]}),
                )],
                &[("spec.ingress[0].ports[0].endPort", "needs a numeric port")],
            ),
            case(
                "knp protocol ICMP",
                vec![knp(json!({"egress": [{"ports": [{"protocol": "ICMP"}]}]}))],
                &[("spec.egress[0].ports[0].protocol", "use TCP, UDP or SCTP")],
            ),
            case(
                "knp lower-case policy type",
                vec![knp(json!({"policyTypes": ["ingress"]}))],
                &[("spec.policyTypes[0]", "use Ingress or Egress")],
            ),
            case(
                "knp repeated policy type",
                vec![knp(json!({"policyTypes": ["Ingress", "Ingress"]}))],
                &[("spec.policyTypes[1]", "listed twice")],
            ),
            case(
                "knp bad ipBlock",
                vec![knp(
                    json!({"ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0", "except": ["198.51.100.0/24"]}}]}]}),
                )],
                &[("spec.ingress[0].from[0].ipBlock.cidr", "not a valid CIDR")],
            ),
            case(
                "knp except outside block",
                vec![knp(
                    json!({"ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["198.51.100.0/24"]}}]}]}),
                )],
                &[("spec.ingress[0].from[0].ipBlock.except[0]", "strict subset")],
            ),
            case(
                "knp bad operator",
                vec![knp(
                    json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["a"]}]}}),
                )],
                &[(
                    "spec.podSelector.matchExpressions[0].operator",
                    "use In, NotIn, Exists or DoesNotExist",
                )],
            ),
            case(
                "knp In without values",
                vec![knp(
                    json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
                )],
                &[(
                    "spec.podSelector.matchExpressions[0].values",
                    "needs at least one value",
                )],
            ),
            case(
                "knp Exists with values",
                vec![knp(
                    json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["a"]}]}}),
                )],
                &[(
                    "spec.podSelector.matchExpressions[0].values",
                    "takes no values",
                )],
            ),
            case(
                "knp bad match label",
                vec![knp(
                    json!({"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a b"}}}]}]}),
                )],
                &[(
                    "spec.ingress[0].from[0].namespaceSelector.matchLabels.team",
                    "label value",
                )],
            ),
            case(
                "knp empty peer",
                vec![knp(json!({"ingress": [{"from": [{}]}]}))],
                &[(
                    "spec.ingress[0].from[0]",
                    "needs podSelector, namespaceSelector or ipBlock",
                )],
            ),
            case(
                "knp ipBlock with selector",
                vec![knp(
                    json!({"ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}, "podSelector": {}}]}]}),
                )],
                &[("spec.ingress[0].from[0]", "cannot be combined")],
            ),
            case(
                "knp numeric string port",
                vec![knp(json!({"ingress": [{"ports": [{"port": "80"}]}]}))],
                &[("spec.ingress[0].ports[0].port", "not a valid port name")],
            ),
        ],
        &Limits::default(),
    );
}

#[test]
fn configuration_resources() {
    run(
        vec![
            case(
                "felix default",
                vec![named(
                    Kind::FelixConfiguration,
                    "default",
                    json!({"bpfEnabled": false, "ipipEnabled": true, "reportingInterval": "0s", "logSeverityScreen": "warning", "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22, "net": "192.0.2.0/24"}], "failsafeOutboundHostPorts": "none", "prometheusMetricsPort": 9091, "prometheusMetricsHost": "0.0.0.0", "healthHost": "localhost"}),
                )],
                &[],
            ),
            case(
                "felix unknown field",
                vec![named(
                    Kind::FelixConfiguration,
                    "default",
                    json!({"bpfEnabeld": true}),
                )],
                &[(
                    "spec.bpfEnabeld",
                    "unknown field \"bpfEnabeld\": not a FelixConfiguration field: did you mean bpfEnabled?",
                )],
            ),
            case(
                "felix other name",
                vec![named(Kind::FelixConfiguration, "node.gw1", json!({}))],
                &[(
                    "metadata.name",
                    "only the FelixConfiguration named \"default\" is read",
                )],
            ),
            case(
                "felix bad failsafe entries",
                vec![named(
                    Kind::FelixConfiguration,
                    "default",
                    json!({"failsafeInboundHostPorts": [{"protocol": "sctp", "port": 22}, {"protocol": "tcp", "port": 0, "net": "bogus"}]}),
                )],
                &[
                    (
                        "spec.failsafeInboundHostPorts[0].protocol",
                        "SCTP failsafe ports are not supported",
                    ),
                    ("spec.failsafeInboundHostPorts[1].port", "use 1-65535"),
                    ("spec.failsafeInboundHostPorts[1].net", "not a valid CIDR"),
                ],
            ),
            case(
                "felix bad severity and ports",
                vec![named(
                    Kind::FelixConfiguration,
                    "default",
                    json!({"logSeverityScreen": "Verbose", "prometheusMetricsPort": 70000, "healthPort": 0, "healthHost": "not a host"}),
                )],
                &[
                    (
                        "spec.logSeverityScreen",
                        "use Debug, Info, Warning, Error or Fatal",
                    ),
                    ("spec.prometheusMetricsPort", "use 1-65535"),
                    ("spec.healthPort", "use 1-65535"),
                    ("spec.healthHost", "not a valid listen address"),
                ],
            ),
            case(
                "gateway default",
                vec![named(
                    Kind::GatewayConfiguration,
                    "default",
                    json!({"unmatchedTrafficAction": "Allow", "antiSpoof": false, "insideNets": ["192.0.2.0/24", "2001:db8::/64"], "allowedEtherTypes": [0x88cc, 0x0600, 0xffff], "conntrackMaxEntries": 2000, "conntrackTimeouts": {"tcpEstablished": "1h30m", "udpUnreplied": "250ms"}, "tcpLoosePickup": false, "revalidateOnReload": true, "fragmentTrackerMaxEntries": 100, "logRateLimitPerSecond": 1}),
                )],
                &[],
            ),
            case(
                "gateway other name",
                vec![named(Kind::GatewayConfiguration, "gw", json!({}))],
                &[(
                    "metadata.name",
                    "only the GatewayConfiguration named \"default\" is read",
                )],
            ),
            case(
                "gateway bad values",
                vec![named(
                    Kind::GatewayConfiguration,
                    "default",
                    json!({"unmatchedTrafficAction": "allow", "insideNets": ["192.0.2.5/24"], "allowedEtherTypes": [100, 0x0800, 65536], "conntrackMaxEntries": 0, "conntrackTimeouts": {"tcpSynSent": "5 minutes", "icmp": "0s", "other": "10"}, "fragmentTrackerMaxEntries": -1, "logRateLimitPerSecond": 4_294_967_296_i64}),
                )],
                &[
                    ("spec.unmatchedTrafficAction", "use Deny or Allow"),
                    ("spec.insideNets[0]", "host bits"),
                    ("spec.allowedEtherTypes[0]", "out of range"),
                    (
                        "spec.allowedEtherTypes[1]",
                        "0x0800 may not be listed: IPv4",
                    ),
                    ("spec.allowedEtherTypes[2]", "out of range"),
                    ("spec.conntrackMaxEntries", "from 1 to"),
                    ("spec.conntrackTimeouts.tcpSynSent", "not valid"),
                    ("spec.conntrackTimeouts.icmp", "longer than zero"),
                    ("spec.conntrackTimeouts.other", "units ms, s, m or h"),
                    ("spec.fragmentTrackerMaxEntries", "from 1 to"),
                    ("spec.logRateLimitPerSecond", "from 1 to"),
                ],
            ),
        ],
        &Limits::default(),
    );
}

#[test]
fn across_the_directory() {
    run(
        vec![
            case(
                "duplicate gnp",
                vec![gnp(json!({})), gnp(json!({}))],
                &[(
                    "metadata.name",
                    "GlobalNetworkPolicy/p is defined twice: it is also defined at test.yaml:1",
                )],
            ),
            case(
                "same name in two namespaces",
                vec![
                    with_metadata(
                        Kind::NetworkPolicy,
                        json!({"name": "p", "namespace": "a"}),
                        json!({}),
                    ),
                    with_metadata(
                        Kind::NetworkPolicy,
                        json!({"name": "p", "namespace": "b"}),
                        json!({}),
                    ),
                ],
                &[],
            ),
            case(
                "default namespace spelled or not",
                vec![
                    with_metadata(Kind::NetworkPolicy, json!({"name": "p"}), json!({})),
                    with_metadata(
                        Kind::NetworkPolicy,
                        json!({"name": "p", "namespace": "default"}),
                        json!({}),
                    ),
                ],
                &[("metadata.name", "NetworkPolicy/default/p is defined twice")],
            ),
            case(
                "knp and np share a name",
                vec![
                    knp(json!({})),
                    with_metadata(
                        Kind::NetworkPolicy,
                        json!({"name": "p", "namespace": "ns"}),
                        json!({}),
                    ),
                ],
                &[],
            ),
            case(
                "gnp and gns share a name",
                vec![
                    gnp(json!({})),
                    named(Kind::GlobalNetworkSet, "p", json!({})),
                ],
                &[],
            ),
            case(
                "shared address",
                vec![
                    wep(
                        "w",
                        json!({"interfaceName": "cali0", "ipNetworks": ["2001:db8::1/128"]}),
                    ),
                    hep(
                        "h",
                        json!({"node": "n", "expectedIPs": ["2001:DB8:0:0::1"]}),
                    ),
                ],
                &[(
                    "spec.expectedIPs[0]",
                    "address 2001:db8::1 is also an address of WorkloadEndpoint/ns/w (spec.ipNetworks[0]",
                )],
            ),
            case(
                "distinct addresses",
                vec![
                    hep("a", json!({"node": "n", "expectedIPs": ["192.0.2.1"]})),
                    hep("b", json!({"node": "n", "expectedIPs": ["192.0.2.2"]})),
                ],
                &[],
            ),
            case(
                "undefined tier",
                vec![gnp(json!({"tier": "security"}))],
                &[("spec.tier", "tier \"security\" is not defined")],
            ),
            case(
                "defined tier",
                vec![
                    named(Kind::Tier, "security", json!({"order": 100})),
                    gnp(json!({"tier": "security"})),
                    with_metadata(
                        Kind::NetworkPolicy,
                        json!({"name": "security.p", "namespace": "ns"}),
                        json!({"tier": "security"}),
                    ),
                ],
                &[],
            ),
            case(
                "default tier always exists",
                vec![gnp(json!({"tier": "default"}))],
                &[],
            ),
            case(
                "undefined profile",
                vec![wep(
                    "w",
                    json!({"interfaceName": "cali0", "profiles": ["kns.ns"]}),
                )],
                &[("spec.profiles[0]", "profile \"kns.ns\" is not defined")],
            ),
            case(
                "defined profile",
                vec![
                    named(Kind::Profile, "edge", json!({})),
                    hep(
                        "h",
                        json!({"node": "n", "interfaceName": "eth0", "profiles": ["edge"]}),
                    ),
                ],
                &[],
            ),
            case(
                "two felix configurations",
                vec![
                    named(Kind::FelixConfiguration, "default", json!({})),
                    named(Kind::FelixConfiguration, "node.gw1", json!({})),
                ],
                &[(
                    "metadata.name",
                    "only the FelixConfiguration named \"default\" is read",
                )],
            ),
        ],
        &Limits::default(),
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let resources = vec![
        rule(json!({"action": "allow", "protocol": "tcp", "destination": {"ports": [0]}})),
        named(Kind::Tier, "Bad.Tier", json!({"defaultAction": "Allow"})),
        hep("h", json!({})),
    ];
    let problems = validate(&resources, &Limits::default());
    let fields: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.resource.as_str(), p.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("GlobalNetworkPolicy/p", "spec.ingress[0].action"),
            ("GlobalNetworkPolicy/p", "spec.ingress[0].protocol"),
            (
                "GlobalNetworkPolicy/p",
                "spec.ingress[0].destination.ports[0]"
            ),
            ("Tier/Bad.Tier", "metadata.name"),
            ("Tier/Bad.Tier", "spec.defaultAction"),
            ("HostEndpoint/h", "spec.node"),
            ("HostEndpoint/h", "spec"),
        ]
    );
}

#[test]
fn selectors() {
    let limits = Limits {
        max_selector_len: 20,
        ..Limits::default()
    };
    run(
        vec![
            case(
                "valid policy selectors",
                vec![gnp(
                    json!({"selector": "r == 'd' && !has(x)", "namespaceSelector": "all()", "serviceAccountSelector": "name in {'a',}"}),
                )],
                &[],
            ),
            case(
                "empty selector is all()",
                vec![gnp(json!({"selector": ""}))],
                &[],
            ),
            case(
                "parse error names the position",
                vec![gnp(json!({"selector": "role = 'db'"}))],
                &[("spec.selector", "invalid selector \"role = 'db'\": ")],
            ),
            case(
                "trailing newline",
                vec![gnp(json!({"selector": "a == 'b'\n"}))],
                &[("spec.selector", "invalid selector")],
            ),
            case(
                "rule selectors",
                vec![rule(
                    json!({"action": "Allow", "source": {"selector": "(a", "notSelector": "b ==", "serviceAccounts": {"names": ["x"], "selector": "has("}}}),
                )],
                &[
                    ("spec.ingress[0].source.selector", "invalid selector"),
                    ("spec.ingress[0].source.notSelector", "invalid selector"),
                    (
                        "spec.ingress[0].source.serviceAccounts.selector",
                        "invalid selector",
                    ),
                ],
            ),
            case(
                "global as a rule namespaceSelector",
                vec![rule(
                    json!({"action": "Allow", "destination": {"namespaceSelector": " global(\t) "}}),
                )],
                &[],
            ),
            case(
                "global combined",
                vec![rule(
                    json!({"action": "Allow", "destination": {"namespaceSelector": "global() || all()"}}),
                )],
                &[(
                    "spec.ingress[0].destination.namespaceSelector",
                    "may not be combined",
                )],
            ),
            case(
                "global elsewhere",
                vec![gnp(
                    json!({"serviceAccountSelector": "global()", "ingress": [{"action": "Allow", "source": {"notSelector": "global()"}}]}),
                )],
                &[
                    ("spec.serviceAccountSelector", "only be used as the whole"),
                    (
                        "spec.ingress[0].source.notSelector",
                        "only be used as the whole",
                    ),
                ],
            ),
            case(
                "global in a string literal is refused too",
                vec![gnp(json!({"selector": "a == 'global('"}))],
                &[("spec.selector", "only be used as the whole")],
            ),
            case(
                "np policy selector",
                vec![with_metadata(
                    Kind::NetworkPolicy,
                    json!({"name": "p", "namespace": "ns"}),
                    json!({"selector": "global()"}),
                )],
                &[("spec.selector", "only be used")],
            ),
            case(
                "v1 selectors",
                vec![v1(
                    json!({"selector": "a ==", "ingress": [{"action": "allow", "destination": {"selector": "global()"}}]}),
                )],
                &[
                    ("spec.selector", "invalid selector"),
                    ("spec.ingress[0].destination.selector", "only be used"),
                ],
            ),
            case(
                "at the length limit",
                vec![gnp(json!({"selector": "a == '0123456789abc'"}))],
                &[],
            ),
            case(
                "at the length limit in characters, over it in bytes",
                vec![gnp(json!({"selector": "a == 'ééééééééééééé'"}))],
                &[],
            ),
            case(
                "over the length limit",
                vec![gnp(json!({"selector": "a == '0123456789abcd'"}))],
                &[(
                    "spec.selector",
                    "selector is 21 characters long; at most 20 are allowed",
                )],
            ),
        ],
        &limits,
    );
}
