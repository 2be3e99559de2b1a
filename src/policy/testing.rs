//! Builders for unit tests: resources written as JSON (the same shapes as the YAML), resolved
//! with fixed settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::flow::Flow;
use super::resolve::{Resolved, VerdictSettings, resolve_resources};
use crate::model::resources::{Labels, Metadata, Spec};
use crate::model::settings::{FailsafePort, FailsafeProtocol, UnmatchedTrafficAction};
use crate::model::{FieldLines, Origin, Resource};

/// One resource: `kind` is the YAML kind (`KNP` for a Kubernetes NetworkPolicy, `policy` for
/// the v1 kind), `name` may be `namespace/name` for namespaced kinds.
pub fn res(kind: &str, name: &str, labels: &[(&str, &str)], spec: Value) -> Resource {
    let (namespace, name) = match name.split_once('/') {
        Some((ns, n)) => (Some(ns.to_owned()), n.to_owned()),
        None => (None, name.to_owned()),
    };
    let spec = match kind {
        "Namespace" => Spec::Namespace(from(spec)),
        "WorkloadEndpoint" => Spec::WorkloadEndpoint(from(spec)),
        "HostEndpoint" => Spec::HostEndpoint(from(spec)),
        "NetworkSet" => Spec::NetworkSet(from(spec)),
        "GlobalNetworkSet" => Spec::GlobalNetworkSet(from(spec)),
        "Profile" => Spec::Profile(from(spec)),
        "Tier" => Spec::Tier(from(spec)),
        "GlobalNetworkPolicy" => Spec::GlobalNetworkPolicy(from(spec)),
        "NetworkPolicy" => Spec::NetworkPolicy(from(spec)),
        "policy" => Spec::V1Policy(from(spec)),
        "KNP" => Spec::K8sNetworkPolicy(from(spec)),
        other => panic!("unknown kind {other}"),
    };
    Resource {
        origin: Origin {
            file: "test.yaml".to_owned(),
            line: 1,
        },
        metadata: Metadata {
            name: Some(name),
            namespace,
            labels: labels_of(labels),
            ..Metadata::default()
        },
        spec,
        fields: FieldLines::default(),
    }
}

fn from<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("test spec decodes")
}

pub fn labels_of(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Settings with no failsafe ports, so that tests see policy alone.
pub fn no_failsafe() -> VerdictSettings {
    VerdictSettings {
        failsafe_inbound: Vec::new(),
        failsafe_outbound: Vec::new(),
        unmatched_traffic_action: UnmatchedTrafficAction::Deny,
    }
}

/// Calico's default failsafe ports.
pub fn default_failsafe() -> VerdictSettings {
    let ports = |list: &[(FailsafeProtocol, u16)]| {
        list.iter()
            .map(|&(protocol, port)| FailsafePort {
                protocol,
                port,
                net: None,
            })
            .collect()
    };
    use FailsafeProtocol::{Tcp, Udp};
    VerdictSettings {
        failsafe_inbound: ports(&[
            (Tcp, 22),
            (Udp, 68),
            (Tcp, 179),
            (Tcp, 2379),
            (Tcp, 2380),
            (Tcp, 5473),
            (Tcp, 6443),
            (Tcp, 6666),
            (Tcp, 6667),
        ]),
        failsafe_outbound: ports(&[
            (Udp, 53),
            (Udp, 67),
            (Tcp, 179),
            (Tcp, 2379),
            (Tcp, 2380),
            (Tcp, 5473),
            (Tcp, 6443),
            (Tcp, 6666),
            (Tcp, 6667),
        ]),
        unmatched_traffic_action: UnmatchedTrafficAction::Deny,
    }
}

pub fn resolved(resources: Vec<Resource>) -> Resolved {
    resolve_resources(&resources, no_failsafe()).expect("test resources resolve")
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

pub fn tcp(src: &str, dst: &str, dst_port: u16) -> Flow {
    Flow::tcp(ip(src), 40000, ip(dst), dst_port)
}

pub fn udp(src: &str, dst: &str, dst_port: u16) -> Flow {
    Flow::udp(ip(src), 40000, ip(dst), dst_port)
}
