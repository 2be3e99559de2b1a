//! Parsers for the raw values of rules and endpoints: protocols, ports, CIDRs and addresses.
//!
//! Validation uses these to decide what is wrong; code that reads an already validated model
//! may call them too, so that both agree on what a value means. Errors are messages that say
//! what would be right.

use std::net::IpAddr;

use ipnet::IpNet;

use super::names;
use crate::model::resources::{PortValue, ProtocolValue};

/// Which rule language a value comes from: Calico v3 (capitalised names) or the old v1
/// policy (lower-case names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    V3,
    V1,
}

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;
pub const PROTO_UDPLITE: u8 = 136;

/// Protocol names as written in v3, with their numbers.
const V3_PROTOCOLS: [(&str, u8); 6] = [
    ("TCP", PROTO_TCP),
    ("UDP", PROTO_UDP),
    ("ICMP", PROTO_ICMP),
    ("ICMPv6", PROTO_ICMPV6),
    ("SCTP", PROTO_SCTP),
    ("UDPLite", PROTO_UDPLITE),
];

/// The IP protocol number a rule's `protocol` names.
pub fn protocol(value: &ProtocolValue, dialect: Dialect) -> Result<u8, String> {
    match value {
        ProtocolValue::Number(n) => protocol_number(*n, &n.to_string(), dialect),
        ProtocolValue::Text(text)
            if !text.is_empty() && text.bytes().all(|c| c.is_ascii_digit()) =>
        {
            let shown = format!("{text:?}");
            match text.parse::<i64>() {
                Ok(n) => protocol_number(n, &shown, dialect),
                Err(_) => Err(protocol_error(&shown, dialect)),
            }
        }
        ProtocolValue::Text(text) => V3_PROTOCOLS
            .iter()
            .find(|(name, _)| match dialect {
                Dialect::V3 => *name == text,
                Dialect::V1 => name.to_ascii_lowercase() == *text,
            })
            .map(|(_, number)| *number)
            .ok_or_else(|| protocol_error(&format!("{text:?}"), dialect)),
    }
}

/// `shown` is the value as messages write it: bare for a number, quoted for text.
fn protocol_number(n: i64, shown: &str, dialect: Dialect) -> Result<u8, String> {
    match u8::try_from(n) {
        Ok(number) if number >= 1 => Ok(number),
        _ => Err(protocol_error(shown, dialect)),
    }
}

fn protocol_error(shown: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::V3 => format!(
            "protocol {shown} is not valid in projectcalico.org/v3: use TCP, UDP, ICMP, \
             ICMPv6, SCTP, UDPLite or a number 1-255"
        ),
        Dialect::V1 => format!(
            "protocol {shown} is not valid in a v1 policy: use tcp, udp, icmp, icmpv6, sctp, \
             udplite or a number 1-255"
        ),
    }
}

/// How a protocol is written back in messages.
pub fn protocol_name(number: u8, dialect: Dialect) -> String {
    match V3_PROTOCOLS.iter().find(|(_, n)| *n == number) {
        Some((name, _)) if dialect == Dialect::V3 => (*name).to_owned(),
        Some((name, _)) => name.to_ascii_lowercase(),
        None => number.to_string(),
    }
}

/// Whether rules may match ports with this protocol: TCP, UDP and SCTP only.
pub fn supports_ports(protocol: u8) -> bool {
    matches!(protocol, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
}

/// The IP family an ICMP protocol implies (ICMP → 4, ICMPv6 → 6).
pub fn icmp_family(protocol: u8) -> Option<u8> {
    match protocol {
        PROTO_ICMP => Some(4),
        PROTO_ICMPV6 => Some(6),
        _ => None,
    }
}

/// One entry of a rule's `ports`/`notPorts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortEntry<'a> {
    /// Inclusive range; a single port N is N..N.
    Range(u16, u16),
    /// A port name, resolved per endpoint.
    Named(&'a str),
}

/// A rule port entry: a number, `"lo:hi"`, a digit string, or an IANA port name.
pub fn port(value: &PortValue) -> Result<PortEntry<'_>, String> {
    match value {
        PortValue::Number(n) => port_number(*n, &n.to_string()).map(|p| PortEntry::Range(p, p)),
        PortValue::Text(text) => {
            if let Some((lo, hi)) = text.split_once(':') {
                let lo = port_digits(lo, text)?;
                let hi = port_digits(hi, text)?;
                if lo > hi {
                    return Err(format!(
                        "port range {text:?} is backwards: write the lower port first \
                         (\"{hi}:{lo}\")"
                    ));
                }
                Ok(PortEntry::Range(lo, hi))
            } else if !text.is_empty() && text.bytes().all(|c| c.is_ascii_digit()) {
                port_digits(text, text).map(|p| PortEntry::Range(p, p))
            } else {
                names::check_port_name(text).map(|()| PortEntry::Named(text))
            }
        }
    }
}

fn port_digits(digits: &str, written: &str) -> Result<u16, String> {
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "port {written:?} is not valid: use a number 1-65535, a range \"lo:hi\" or a port name"
        ));
    }
    let n = digits.parse::<i64>().unwrap_or(i64::MAX);
    port_number(n, written)
}

/// A port number 1–65535.
pub fn port_number(n: i64, written: &str) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(format!("port {written} is out of range: use 1-65535")),
    }
}

/// An IP address or CIDR; a bare address is its own /32 or /128.
pub fn net(text: &str) -> Result<IpNet, String> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    text.parse::<IpNet>().map_err(|_| {
        format!(
            "{text:?} is not a valid CIDR or IP address (e.g. 192.0.2.0/24, 2001:db8::/32 or \
             192.0.2.10)"
        )
    })
}

/// A CIDR of a rule's `nets`/`notNets`: like [`net`], and with `strict` no host bits may be
/// set (`192.0.2.5/24` is refused; the caller decides for v1, which normalises them).
pub fn rule_net(text: &str, strict: bool) -> Result<IpNet, String> {
    let parsed = net(text)?;
    let network = parsed.trunc();
    if strict && network != parsed {
        return Err(format!(
            "{text:?} has host bits set: write the network as {network} (or {}/{} for the \
             single address)",
            parsed.addr(),
            parsed.max_prefix_len()
        ));
    }
    Ok(network)
}

/// The address of a WorkloadEndpoint `ipNetworks` entry: a bare IP, or a /32 or /128.
pub fn endpoint_network(text: &str) -> Result<IpAddr, String> {
    match net(text) {
        Ok(n) if n.prefix_len() == n.max_prefix_len() => Ok(n.addr()),
        Ok(n) => Err(format!(
            "{text:?} is not a single address: a workload's ipNetworks entry is one IP, written \
             bare or as /{} (e.g. {}/{})",
            n.max_prefix_len(),
            n.addr(),
            n.max_prefix_len()
        )),
        Err(e) => Err(e),
    }
}

/// A HostEndpoint `expectedIPs` entry: a bare IP address.
pub fn bare_ip(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>()
        .map_err(|_| match text.parse::<IpNet>() {
            Ok(n) => format!(
                "{text:?} is a CIDR: expectedIPs holds bare IP addresses (write {})",
                n.addr()
            ),
            Err(_) => {
                format!("{text:?} is not a valid IP address (e.g. 192.0.2.10 or 2001:db8::10)")
            }
        })
}

/// The IP family of a network: 4 or 6.
pub fn family(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> ProtocolValue {
        ProtocolValue::Text(s.to_owned())
    }

    #[test]
    fn protocols_by_dialect() {
        let cases: &[(ProtocolValue, Dialect, Option<u8>)] = &[
            (text("TCP"), Dialect::V3, Some(6)),
            (text("UDP"), Dialect::V3, Some(17)),
            (text("ICMP"), Dialect::V3, Some(1)),
            (text("ICMPv6"), Dialect::V3, Some(58)),
            (text("SCTP"), Dialect::V3, Some(132)),
            (text("UDPLite"), Dialect::V3, Some(136)),
            (text("tcp"), Dialect::V3, None),
            (text("Tcp"), Dialect::V3, None),
            (text("ICMPV6"), Dialect::V3, None),
            (text("tcp"), Dialect::V1, Some(6)),
            (text("icmpv6"), Dialect::V1, Some(58)),
            (text("udplite"), Dialect::V1, Some(136)),
            (text("TCP"), Dialect::V1, None),
            (text("6"), Dialect::V3, Some(6)),
            (text("255"), Dialect::V1, Some(255)),
            (text("0"), Dialect::V3, None),
            (text("256"), Dialect::V3, None),
            (text("99999999999999999999999"), Dialect::V3, None),
            (text(""), Dialect::V3, None),
            (text("-1"), Dialect::V3, None),
            (ProtocolValue::Number(1), Dialect::V3, Some(1)),
            (ProtocolValue::Number(255), Dialect::V3, Some(255)),
            (ProtocolValue::Number(0), Dialect::V3, None),
            (ProtocolValue::Number(256), Dialect::V3, None),
            (ProtocolValue::Number(-6), Dialect::V3, None),
        ];
        for (value, dialect, want) in cases {
            let got = protocol(value, *dialect);
            assert_eq!(
                got.as_ref().ok().copied(),
                *want,
                "{value:?} {dialect:?}: {got:?}"
            );
        }
        let message = protocol(&text("tcp"), Dialect::V3).unwrap_err();
        assert_eq!(
            message,
            "protocol \"tcp\" is not valid in projectcalico.org/v3: use TCP, UDP, ICMP, ICMPv6, \
             SCTP, UDPLite or a number 1-255"
        );
        assert_eq!(protocol_name(58, Dialect::V3), "ICMPv6");
        assert_eq!(protocol_name(58, Dialect::V1), "icmpv6");
        assert_eq!(protocol_name(99, Dialect::V3), "99");
    }

    #[test]
    fn ports() {
        let t = |s: &str| PortValue::Text(s.to_owned());
        let cases: &[(PortValue, Option<PortEntry>)] = &[
            (PortValue::Number(80), Some(PortEntry::Range(80, 80))),
            (PortValue::Number(1), Some(PortEntry::Range(1, 1))),
            (
                PortValue::Number(65535),
                Some(PortEntry::Range(65535, 65535)),
            ),
            (PortValue::Number(0), None),
            (PortValue::Number(65536), None),
            (PortValue::Number(-1), None),
            (t("443"), Some(PortEntry::Range(443, 443))),
            (t("0"), None),
            (t("8000:9000"), Some(PortEntry::Range(8000, 9000))),
            (t("80:80"), Some(PortEntry::Range(80, 80))),
            (t("9000:8000"), None),
            (t("0:10"), None),
            (t("1:65536"), None),
            (t(":80"), None),
            (t("80:"), None),
            (t("a:b"), None),
            (t("1:2:3"), None),
            (t("http"), Some(PortEntry::Named("http"))),
            (t("HTTP"), None),
            (t("8000-9000"), None),
            (t(""), None),
            (t(" 80"), None),
        ];
        for (value, want) in cases {
            let got = port(value);
            assert_eq!(got.as_ref().ok().copied(), *want, "{value:?}: {got:?}");
        }
        assert!(port(&t("9000:8000")).unwrap_err().contains("\"8000:9000\""));
    }

    #[test]
    fn rule_nets_are_strict_in_v3_and_lenient_in_v1() {
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("192.0.2.0/24", true, Some("192.0.2.0/24")),
            ("192.0.2.5", true, Some("192.0.2.5/32")),
            ("192.0.2.5/24", true, None),
            ("192.0.2.5/24", false, Some("192.0.2.0/24")),
            ("2001:db8::/32", true, Some("2001:db8::/32")),
            ("2001:DB8::1", true, Some("2001:db8::1/128")),
            ("2001:db8::1/64", true, None),
            ("0.0.0.0/0", true, Some("0.0.0.0/0")),
            ("192.0.2.0/33", true, None),
            ("300.0.0.0/8", true, None),
            ("", true, None),
            ("192.0.2.0/24 ", true, None),
        ];
        for (input, strict, want) in cases {
            let got = rule_net(input, *strict).map(|n| n.to_string());
            assert_eq!(
                got.as_deref().ok(),
                *want,
                "{input:?} strict={strict}: {got:?}"
            );
        }
        let message = rule_net("192.0.2.5/24", true).unwrap_err();
        assert!(
            message.contains("192.0.2.0/24") && message.contains("192.0.2.5/32"),
            "{message}"
        );
    }

    #[test]
    fn endpoint_addresses() {
        assert_eq!(
            endpoint_network("192.0.2.1/32").unwrap().to_string(),
            "192.0.2.1"
        );
        assert_eq!(
            endpoint_network("192.0.2.1").unwrap().to_string(),
            "192.0.2.1"
        );
        assert_eq!(
            endpoint_network("2001:DB8:0:0::1/128").unwrap(),
            endpoint_network("2001:db8::1").unwrap()
        );
        assert!(
            endpoint_network("192.0.2.0/24")
                .unwrap_err()
                .contains("single address")
        );
        assert!(endpoint_network("nonsense").is_err());
        assert_eq!(bare_ip("192.0.2.1").unwrap().to_string(), "192.0.2.1");
        assert!(
            bare_ip("192.0.2.1/32")
                .unwrap_err()
                .contains("write 192.0.2.1")
        );
        assert!(bare_ip("x").unwrap_err().contains("not a valid IP address"));
    }
}
