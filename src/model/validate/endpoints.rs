//! Endpoints and network sets. Addresses shared between endpoints and references to profiles
//! are checked across the directory in `cross`.

use std::net::IpAddr;

use super::values::{self, Dialect};
use super::{Check, names};
use crate::model::resources::{
    EndpointPort, HostEndpointSpec, NetworkSetSpec, WorkloadEndpointSpec,
};

/// `interfaceName: "*"` is Calico's all-interfaces host endpoint.
const ALL_INTERFACES: &str = "*";

pub(super) fn check_host_endpoint(check: &mut Check, spec: &HostEndpointSpec) {
    match spec.node.as_deref() {
        None | Some("") => check.report(
            "spec.node",
            "a HostEndpoint needs node: the name of the host it belongs to",
        ),
        Some(node) => check_node_name(check, node),
    }
    match spec.interface_name.as_deref() {
        Some(ALL_INTERFACES) => {}
        Some(name) => {
            check.accept(names::check_interface_name(name), || {
                "spec.interfaceName".to_owned()
            });
        }
        None if spec.expected_ips.is_empty() => check.report(
            "spec",
            "a HostEndpoint needs interfaceName or expectedIPs (portcullis finds host endpoints \
             by their expectedIPs)",
        ),
        None => {}
    }
    for (i, ip) in spec.expected_ips.iter().enumerate() {
        check.accept(values::bare_ip(ip), || format!("spec.expectedIPs[{i}]"));
    }
    check_profile_names(check, &spec.profiles);
    check_endpoint_ports(check, &spec.ports);
}

pub(super) fn check_workload_endpoint(check: &mut Check, spec: &WorkloadEndpointSpec) {
    match spec.interface_name.as_deref() {
        None | Some("") => check.report(
            "spec.interfaceName",
            "a WorkloadEndpoint needs interfaceName (e.g. cali0123456789a)",
        ),
        Some(name) => {
            check.accept(names::check_interface_name(name), || {
                "spec.interfaceName".to_owned()
            });
        }
    }
    if let Some(node) = spec.node.as_deref() {
        check_node_name(check, node);
    }
    for (i, network) in spec.ip_networks.iter().enumerate() {
        check.accept(values::endpoint_network(network), || {
            format!("spec.ipNetworks[{i}]")
        });
    }
    for (i, nat) in spec.ip_nats.iter().enumerate() {
        check.accept(values::bare_ip(&nat.internal_ip), || {
            format!("spec.ipNATs[{i}].internalIP")
        });
        check.accept(values::bare_ip(&nat.external_ip), || {
            format!("spec.ipNATs[{i}].externalIP")
        });
    }
    check_gateway(check, "spec.ipv4Gateway", spec.ipv4_gateway.as_deref(), 4);
    check_gateway(check, "spec.ipv6Gateway", spec.ipv6_gateway.as_deref(), 6);
    if let Some(mac) = spec.mac.as_deref() {
        if !is_mac(mac) {
            check.report(
                "spec.mac",
                format!("{mac:?} is not a MAC address: write six hex pairs like 02:00:5e:10:00:01"),
            );
        }
    }
    if let Some(account) = spec.service_account_name.as_deref() {
        if !names::is_dns_subdomain(account) {
            check.report(
                "spec.serviceAccountName",
                format!(
                    "service account name {account:?} is not valid: use a DNS subdomain \
                     (lower-case letters, digits, '-' and '.')"
                ),
            );
        }
    }
    check_profile_names(check, &spec.profiles);
    check_endpoint_ports(check, &spec.ports);
}

/// NetworkSet and GlobalNetworkSet `nets`: any parseable CIDR or address; host bits are
/// allowed here (unlike in rules) and mean the enclosing network.
pub(super) fn check_network_set(check: &mut Check, spec: &NetworkSetSpec) {
    for (i, net) in spec.nets.iter().enumerate() {
        check.accept(values::net(net), || format!("spec.nets[{i}]"));
    }
}

fn check_node_name(check: &mut Check, node: &str) {
    if !names::is_dns_subdomain(node) {
        check.report(
            "spec.node",
            format!(
                "node name {node:?} is not valid: use a DNS subdomain (lower-case letters, \
                 digits, '-' and '.')"
            ),
        );
    }
}

fn check_gateway(check: &mut Check, field: &str, gateway: Option<&str>, family: u8) {
    let Some(text) = gateway else {
        return;
    };
    let ok = match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => family == 4,
        Ok(IpAddr::V6(_)) => family == 6,
        Err(_) => false,
    };
    if !ok {
        check.report(
            field,
            format!("{text:?} is not an IPv{family} address: write one IPv{family} address"),
        );
    }
}

fn is_mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

fn check_profile_names(check: &mut Check, profiles: &[String]) {
    for (i, profile) in profiles.iter().enumerate() {
        if !names::is_dns_subdomain(profile) {
            check.report(
                &format!("spec.profiles[{i}]"),
                format!(
                    "profile name {profile:?} is not valid: use a DNS subdomain (lower-case \
                     letters, digits, '-' and '.')"
                ),
            );
        }
    }
}

/// Named ports declared by an endpoint: IANA name, TCP/UDP/SCTP, port 1–65535.
fn check_endpoint_ports(check: &mut Check, ports: &[EndpointPort]) {
    for (i, port) in ports.iter().enumerate() {
        check.accept(names::check_port_name(&port.name), || {
            format!("spec.ports[{i}].name")
        });
        check.accept(
            values::port_number(port.port, &port.port.to_string()),
            || format!("spec.ports[{i}].port"),
        );
        let protocol = check.accept(values::protocol(&port.protocol, Dialect::V3), || {
            format!("spec.ports[{i}].protocol")
        });
        if let Some(number) = protocol.filter(|n| !values::supports_ports(*n)) {
            check.report(
                &format!("spec.ports[{i}].protocol"),
                format!(
                    "a named port's protocol must be TCP, UDP or SCTP, not {}",
                    values::protocol_name(number, Dialect::V3)
                ),
            );
        }
        if let Some(host_port) = port.host_port {
            check.accept(
                values::port_number(host_port, &host_port.to_string()),
                || format!("spec.ports[{i}].hostPort"),
            );
        }
        if let Some(host_ip) = port.host_ip.as_deref() {
            check.accept(values::bare_ip(host_ip), || {
                format!("spec.ports[{i}].hostIP")
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses() {
        let cases = [
            ("02:00:5e:10:00:01", true),
            ("02-00-5E-10-00-01", true),
            ("02:00:5e:10:00", false),
            ("02:00:5e:10:00:0g", false),
            ("0200.5e10.0001", false),
            ("", false),
        ];
        for (text, want) in cases {
            assert_eq!(is_mac(text), want, "{text:?}");
        }
    }
}
