//! One flow to decide: the first packet of a new connection, as `eval` reads it from a JSON
//! line, plus the IP protocol numbers and names the rest of the engine shares.

use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

/// IP protocol numbers that policy refers to by name.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
    pub const UDPLITE: u8 = 136;

    /// The names Calico knows, lower case, with their numbers.
    const NAMES: [(&str, u8); 6] = [
        ("tcp", TCP),
        ("udp", UDP),
        ("icmp", ICMP),
        ("icmpv6", ICMPV6),
        ("sctp", SCTP),
        ("udplite", UDPLITE),
    ];

    /// The v3 spelling of each name (`TCP`, `ICMPv6`, `UDPLite`, ...).
    const V3_NAMES: [(&str, u8); 6] = [
        ("TCP", TCP),
        ("UDP", UDP),
        ("ICMP", ICMP),
        ("ICMPv6", ICMPV6),
        ("SCTP", SCTP),
        ("UDPLite", UDPLITE),
    ];

    /// A protocol name in any case (`tcp`, `TCP`, `IcMpV6`), as `eval` input allows.
    pub fn from_name_any_case(name: &str) -> Option<u8> {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, p)| p)
    }

    /// A projectcalico.org/v3 protocol name, exact case (`TCP`, `ICMPv6`, `UDPLite`).
    pub fn from_v3_name(name: &str) -> Option<u8> {
        V3_NAMES.iter().find(|(n, _)| *n == name).map(|&(_, p)| p)
    }

    /// An old `apiVersion: v1` protocol name, lower case only.
    pub fn from_v1_name(name: &str) -> Option<u8> {
        NAMES.iter().find(|(n, _)| *n == name).map(|&(_, p)| p)
    }

    /// A protocol written as a number: 1–255 (0 is not a protocol a rule can name).
    pub fn from_rule_number(n: i64) -> Option<u8> {
        u8::try_from(n).ok().filter(|&p| p != 0)
    }

    /// The lower-case name of a protocol number Calico has a name for.
    pub fn name(number: u8) -> Option<&'static str> {
        NAMES.iter().find(|&&(_, p)| p == number).map(|&(n, _)| n)
    }

    /// `tcp`, `icmpv6`, or the number for protocols without a name.
    pub fn display(number: u8) -> String {
        match name(number) {
            Some(n) => n.to_owned(),
            None => number.to_string(),
        }
    }

    /// Whether packets of this protocol carry source and destination ports.
    pub fn has_ports(number: u8) -> bool {
        matches!(number, TCP | UDP | SCTP | UDPLITE)
    }

    /// Whether this is ICMP or ICMPv6, whose packets carry a type and code instead of ports.
    pub fn is_icmp(number: u8) -> bool {
        matches!(number, ICMP | ICMPV6)
    }
}

/// The first packet of a new connection, as far as policy cares.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

impl Flow {
    /// A TCP flow.
    pub fn tcp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Flow {
        Flow::with_ports(protocol::TCP, src, src_port, dst, dst_port)
    }

    /// A UDP flow.
    pub fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Flow {
        Flow::with_ports(protocol::UDP, src, src_port, dst, dst_port)
    }

    /// A flow of a protocol that has ports (TCP, UDP, SCTP, UDPLite).
    pub fn with_ports(
        protocol: u8,
        src: IpAddr,
        src_port: u16,
        dst: IpAddr,
        dst_port: u16,
    ) -> Flow {
        Flow {
            src,
            dst,
            protocol,
            src_port: Some(src_port),
            dst_port: Some(dst_port),
            icmp_type: None,
            icmp_code: None,
        }
    }

    /// An ICMP flow (ICMPv6 when the addresses are IPv6).
    pub fn icmp(src: IpAddr, dst: IpAddr, icmp_type: u8, icmp_code: u8) -> Flow {
        let protocol = if src.is_ipv6() {
            protocol::ICMPV6
        } else {
            protocol::ICMP
        };
        Flow {
            src,
            dst,
            protocol,
            src_port: None,
            dst_port: None,
            icmp_type: Some(icmp_type),
            icmp_code: Some(icmp_code),
        }
    }

    /// A flow of any protocol with neither ports nor ICMP fields.
    pub fn bare(protocol: u8, src: IpAddr, dst: IpAddr) -> Flow {
        Flow {
            src,
            dst,
            protocol,
            src_port: None,
            dst_port: None,
            icmp_type: None,
            icmp_code: None,
        }
    }

    /// Parse one `eval` input line, for example
    /// `{"src":"198.51.100.10","dst":"203.0.113.5","protocol":"tcp","srcPort":40000,"dstPort":6379}`.
    ///
    /// Malformed JSON, a missing or invalid address or protocol, and out-of-range numbers are
    /// errors. What cannot change the question is accepted, so that flow files written by other
    /// tools read as they mean: fields other than the seven known ones are ignored (callers tag
    /// lines with ids or expectations), `null` means absent, numbers may be digit strings as the
    /// protocol may, and ports or ICMP type/code given for a protocol that does not carry them
    /// are dropped (a generator that always writes `"dstPort":0` still asks about ICMP).
    pub fn from_json_line(line: &str) -> Result<Flow, String> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(object) = value else {
            return Err(format!(
                "expected a JSON object, found {}",
                json_type_name(&value)
            ));
        };
        Flow::from_json_object(&object)
    }

    fn from_json_object(object: &Map<String, Value>) -> Result<Flow, String> {
        let src = required_address(object, "src")?;
        let dst = required_address(object, "dst")?;
        let protocol = match present(object, "protocol") {
            Some(v) => parse_protocol(v)?,
            None => return Err("missing field \"protocol\"".to_owned()),
        };
        let src_port = optional_number(object, "srcPort", u16::MAX.into())?;
        let dst_port = optional_number(object, "dstPort", u16::MAX.into())?;
        let icmp_type = optional_number(object, "icmpType", u8::MAX.into())?;
        let icmp_code = optional_number(object, "icmpCode", u8::MAX.into())?;

        let flow = Flow {
            src,
            dst,
            protocol,
            src_port: src_port.and_then(|p| u16::try_from(p).ok()),
            dst_port: dst_port.and_then(|p| u16::try_from(p).ok()),
            icmp_type: icmp_type.and_then(|t| u8::try_from(t).ok()),
            icmp_code: icmp_code.and_then(|c| u8::try_from(c).ok()),
        };
        Ok(flow.without_fields_the_protocol_lacks())
    }

    /// Ports only exist for TCP, UDP, SCTP and UDPLite, a type and code only for ICMP and
    /// ICMPv6; anything else given is not part of the packet, so no rule may look at it.
    fn without_fields_the_protocol_lacks(self) -> Flow {
        let ports = protocol::has_ports(self.protocol);
        let icmp = protocol::is_icmp(self.protocol);
        Flow {
            src_port: self.src_port.filter(|_| ports),
            dst_port: self.dst_port.filter(|_| ports),
            icmp_type: self.icmp_type.filter(|_| icmp),
            icmp_code: self.icmp_code.filter(|_| icmp),
            ..self
        }
    }

    /// Whether source and destination are of different address families (undefined; denied).
    pub fn mixes_families(&self) -> bool {
        self.src.is_ipv4() != self.dst.is_ipv4()
    }
}

impl fmt::Display for Flow {
    /// `tcp 198.51.100.10:40000 -> 203.0.113.5:6379`, `icmp 192.0.2.1 -> 192.0.2.2 type 8 code 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", protocol::display(self.protocol))?;
        write_endpoint(f, self.src, self.src_port)?;
        f.write_str(" -> ")?;
        write_endpoint(f, self.dst, self.dst_port)?;
        if let Some(t) = self.icmp_type {
            write!(f, " type {t}")?;
        }
        if let Some(c) = self.icmp_code {
            write!(f, " code {c}")?;
        }
        Ok(())
    }
}

fn write_endpoint(f: &mut fmt::Formatter<'_>, addr: IpAddr, port: Option<u16>) -> fmt::Result {
    match (addr, port) {
        (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
        (a, Some(p)) => write!(f, "{a}:{p}"),
        (a, None) => write!(f, "{a}"),
    }
}

/// A field's value, `null` counting as absent.
fn present<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    object.get(field).filter(|v| !v.is_null())
}

fn required_address(object: &Map<String, Value>, field: &str) -> Result<IpAddr, String> {
    match present(object, field) {
        None => Err(format!("missing field {field:?}")),
        Some(Value::String(text)) => text
            .parse::<IpAddr>()
            .map_err(|_| format!("{field}: {text:?} is not an IPv4 or IPv6 address")),
        Some(other) => Err(format!(
            "{field}: expected an IP address string, found {}",
            json_type_name(other)
        )),
    }
}

fn parse_protocol(value: &Value) -> Result<u8, String> {
    match value {
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            protocol_number(text.parse::<u64>().ok(), text)
        }
        Value::String(text) => protocol::from_name_any_case(text).ok_or_else(|| {
            format!(
                "protocol: unknown protocol {text:?} (expected tcp, udp, icmp, icmpv6, sctp, \
                 udplite or a number 0-255)"
            )
        }),
        Value::Number(n) => protocol_number(n.as_u64(), &n.to_string()),
        other => Err(format!(
            "protocol: expected a name or a number, found {}",
            json_type_name(other)
        )),
    }
}

fn protocol_number(number: Option<u64>, shown: &str) -> Result<u8, String> {
    number
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| format!("protocol: {shown} is out of range (0-255)"))
}

fn optional_number(
    object: &Map<String, Value>,
    field: &str,
    max: u64,
) -> Result<Option<u64>, String> {
    match present(object, field) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= max => Ok(Some(v)),
            _ => Err(format!("{field}: {n} is out of range (0-{max})")),
        },
        Some(Value::String(text))
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            match text.parse::<u64>() {
                Ok(v) if v <= max => Ok(Some(v)),
                _ => Err(format!("{field}: {text} is out of range (0-{max})")),
            }
        }
        Some(other) => Err(format!(
            "{field}: expected a number, found {}",
            json_type_name(other)
        )),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_good_lines() {
        let cases: &[(&str, Flow)] = &[
            (
                r#"{"src":"198.51.100.10","dst":"203.0.113.5","protocol":"tcp","srcPort":40000,"dstPort":6379}"#,
                Flow::tcp(ip("198.51.100.10"), 40000, ip("203.0.113.5"), 6379),
            ),
            (
                r#"{"src":"198.51.100.10","dst":"203.0.113.5","protocol":"UDP","srcPort":53,"dstPort":53}"#,
                Flow::udp(ip("198.51.100.10"), 53, ip("203.0.113.5"), 53),
            ),
            (
                r#"{"src":"198.51.100.10","dst":"203.0.113.5","protocol":17,"dstPort":53}"#,
                Flow {
                    src_port: None,
                    ..Flow::udp(ip("198.51.100.10"), 0, ip("203.0.113.5"), 53)
                },
            ),
            (
                r#"{"src":"198.51.100.10","dst":"203.0.113.5","protocol":"6","srcPort":1,"dstPort":2}"#,
                Flow::tcp(ip("198.51.100.10"), 1, ip("203.0.113.5"), 2),
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"Icmp","icmpType":8,"icmpCode":0}"#,
                Flow::icmp(ip("192.0.2.1"), ip("192.0.2.2"), 8, 0),
            ),
            (
                r#"{"src":"2001:DB8::1","dst":"2001:db8:0:0::2","protocol":"ICMPv6","icmpType":128,"icmpCode":0}"#,
                Flow::icmp(ip("2001:db8::1"), ip("2001:db8::2"), 128, 0),
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"icmp","icmpType":3}"#,
                Flow {
                    icmp_code: None,
                    ..Flow::icmp(ip("192.0.2.1"), ip("192.0.2.2"), 3, 0)
                },
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":47}"#,
                Flow::bare(47, ip("192.0.2.1"), ip("192.0.2.2")),
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"sctp","srcPort":0,"dstPort":65535}"#,
                Flow::with_ports(protocol::SCTP, ip("192.0.2.1"), 0, ip("192.0.2.2"), 65535),
            ),
            (
                r#"{"id":"row-7","expect":"allow","src":"198.51.100.10","dst":"203.0.113.5","protocol":"tcp","dstPort":80}"#,
                Flow {
                    src_port: None,
                    ..Flow::tcp(ip("198.51.100.10"), 0, ip("203.0.113.5"), 80)
                },
            ),
            (
                r#"{"src":"198.51.100.10","dst":"203.0.113.5","protocol":"tcp","srcPort":null,"dstPort":"80","icmpType":null,"icmpCode":0}"#,
                Flow {
                    src_port: None,
                    ..Flow::tcp(ip("198.51.100.10"), 0, ip("203.0.113.5"), 80)
                },
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"icmp","srcPort":0,"dstPort":0,"icmpType":"8","icmpCode":0}"#,
                Flow::icmp(ip("192.0.2.1"), ip("192.0.2.2"), 8, 0),
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"icmp","icmpCode":3}"#,
                Flow {
                    icmp_code: Some(3),
                    ..Flow::bare(protocol::ICMP, ip("192.0.2.1"), ip("192.0.2.2"))
                },
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":47,"dstPort":80}"#,
                Flow::bare(47, ip("192.0.2.1"), ip("192.0.2.2")),
            ),
            (
                r#"  {"protocol":"udplite","dst":"192.0.2.2","src":"192.0.2.1","dstPort":9}  "#,
                Flow {
                    dst_port: Some(9),
                    ..Flow::bare(protocol::UDPLITE, ip("192.0.2.1"), ip("192.0.2.2"))
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(Flow::from_json_line(line).as_ref(), Ok(want), "{line}");
        }
    }

    #[test]
    fn rejects_bad_lines_with_a_clear_message() {
        let cases: &[(&str, &str)] = &[
            ("", "not valid JSON"),
            ("{", "not valid JSON"),
            ("[1]", "expected a JSON object, found an array"),
            (
                r#"{"dst":"192.0.2.2","protocol":"tcp"}"#,
                "missing field \"src\"",
            ),
            (
                r#"{"src":"192.0.2.1","protocol":"tcp"}"#,
                "missing field \"dst\"",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2"}"#,
                "missing field \"protocol\"",
            ),
            (
                r#"{"src":"192.0.2.300","dst":"192.0.2.2","protocol":"tcp"}"#,
                "src: \"192.0.2.300\" is not an IPv4 or IPv6 address",
            ),
            (
                r#"{"src":"192.0.2.1/32","dst":"192.0.2.2","protocol":"tcp"}"#,
                "is not an IPv4 or IPv6 address",
            ),
            (
                r#"{"src":17,"dst":"192.0.2.2","protocol":"tcp"}"#,
                "src: expected an IP address string, found a number",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"tcpp"}"#,
                "protocol: unknown protocol \"tcpp\"",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":256}"#,
                "protocol: 256 is out of range",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"999"}"#,
                "protocol: 999 is out of range",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":-1}"#,
                "protocol: -1 is out of range",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":6.5}"#,
                "protocol: 6.5 is out of range",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":true}"#,
                "protocol: expected a name or a number, found a boolean",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"tcp","dstPort":65536}"#,
                "dstPort: 65536 is out of range (0-65535)",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"tcp","srcPort":-5}"#,
                "srcPort: -5 is out of range",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"tcp","dstPort":"http"}"#,
                "dstPort: expected a number, found a string",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"tcp","dstPort":"65536"}"#,
                "dstPort: 65536 is out of range (0-65535)",
            ),
            (
                r#"{"src":null,"dst":"192.0.2.2","protocol":"tcp"}"#,
                "missing field \"src\"",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":null}"#,
                "missing field \"protocol\"",
            ),
            (
                r#"{"src":"192.0.2.1","dst":"192.0.2.2","protocol":"icmp","icmpType":256}"#,
                "icmpType: 256 is out of range (0-255)",
            ),
        ];
        for (line, want) in cases {
            match Flow::from_json_line(line) {
                Ok(flow) => panic!("{line}: accepted as {flow:?}"),
                Err(message) => assert!(
                    message.contains(want),
                    "{line}: message {message:?} does not contain {want:?}"
                ),
            }
        }
    }

    #[test]
    fn protocol_names_follow_each_api_case_rule() {
        assert_eq!(protocol::from_v3_name("ICMPv6"), Some(58));
        assert_eq!(protocol::from_v3_name("UDPLite"), Some(136));
        assert_eq!(protocol::from_v3_name("tcp"), None);
        assert_eq!(protocol::from_v3_name("Tcp"), None);
        assert_eq!(protocol::from_v1_name("sctp"), Some(132));
        assert_eq!(protocol::from_v1_name("TCP"), None);
        assert_eq!(protocol::from_name_any_case("uDp"), Some(17));
        assert_eq!(protocol::from_rule_number(0), None);
        assert_eq!(protocol::from_rule_number(255), Some(255));
        assert_eq!(protocol::from_rule_number(256), None);
        assert_eq!(protocol::display(47), "47");
        assert_eq!(protocol::display(1), "icmp");
    }

    fn to_json_line(flow: &Flow) -> String {
        let mut object = serde_json::json!({
            "src": flow.src.to_string(),
            "dst": flow.dst.to_string(),
            "protocol": flow.protocol,
        });
        let fields = [
            ("srcPort", flow.src_port.map(u32::from)),
            ("dstPort", flow.dst_port.map(u32::from)),
            ("icmpType", flow.icmp_type.map(u32::from)),
            ("icmpCode", flow.icmp_code.map(u32::from)),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                object[name] = v.into();
            }
        }
        object.to_string()
    }

    fn any_flow() -> impl proptest::strategy::Strategy<Value = Flow> {
        use proptest::prelude::*;
        let v4 = any::<[u8; 4]>().prop_map(IpAddr::from);
        let v6 = any::<[u8; 16]>().prop_map(IpAddr::from);
        let addresses = prop_oneof![(v4.clone(), v4), (v6.clone(), v6)];
        let ported = (
            prop_oneof![Just(6u8), Just(17), Just(132), Just(136)],
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
        )
            .prop_map(|(p, s, d)| (p, s, d, None, None));
        let icmp = (
            prop_oneof![Just(1u8), Just(58)],
            proptest::option::of((any::<u8>(), proptest::option::of(any::<u8>()))),
        )
            .prop_map(|(p, tc)| (p, None, None, tc.map(|t| t.0), tc.and_then(|t| t.1)));
        let other = (0u8..=255)
            .prop_filter("no ports or ICMP", |p| {
                !protocol::has_ports(*p) && !protocol::is_icmp(*p)
            })
            .prop_map(|p| (p, None, None, None, None));
        (addresses, prop_oneof![ported, icmp, other]).prop_map(
            |((src, dst), (protocol, sp, dp, t, c))| Flow {
                src,
                dst,
                protocol,
                src_port: sp,
                dst_port: dp,
                icmp_type: t,
                icmp_code: c,
            },
        )
    }

    proptest::proptest! {
        #[test]
        fn every_valid_flow_reads_back_from_its_json_line(flow in any_flow()) {
            let line = to_json_line(&flow);
            proptest::prop_assert_eq!(Flow::from_json_line(&line), Ok(flow), "{}", line);
        }

        #[test]
        fn arbitrary_text_never_panics(line in ".{0,200}") {
            let _ = Flow::from_json_line(&line);
        }
    }

    #[test]
    fn displays_for_people() {
        let flow = Flow::tcp(ip("2001:db8::1"), 4000, ip("2001:db8::2"), 443);
        assert_eq!(
            flow.to_string(),
            "tcp [2001:db8::1]:4000 -> [2001:db8::2]:443"
        );
        let ping = Flow::icmp(ip("192.0.2.1"), ip("192.0.2.2"), 8, 0);
        assert_eq!(
            ping.to_string(),
            "icmp 192.0.2.1 -> 192.0.2.2 type 8 code 0"
        );
        assert!(!ping.mixes_families());
        let mixed = Flow::bare(6, ip("192.0.2.1"), ip("2001:db8::2"));
        assert!(mixed.mixes_families());
    }
}
