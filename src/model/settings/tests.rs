use serde_json::{Value, json};

use super::*;
use crate::model::{Metadata, Origin};

fn config(name: &str, spec: Spec) -> Resource {
    Resource {
        origin: Origin {
            file: "config.yaml".to_owned(),
            line: 3,
        },
        metadata: Metadata {
            name: Some(name.to_owned()),
            ..Metadata::default()
        },
        spec,
        fields: Default::default(),
    }
}

fn felix(name: &str, spec: Value) -> Resource {
    config(
        name,
        Spec::FelixConfiguration(serde_json::from_value(spec).unwrap()),
    )
}

fn gateway(name: &str, spec: Value) -> Resource {
    config(
        name,
        Spec::GatewayConfiguration(serde_json::from_value(spec).unwrap()),
    )
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn tcp(port: u16) -> FailsafePort {
    FailsafePort {
        protocol: FailsafeProtocol::Tcp,
        port,
        net: None,
    }
}

fn udp(port: u16) -> FailsafePort {
    FailsafePort {
        protocol: FailsafeProtocol::Udp,
        port,
        net: None,
    }
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

#[test]
fn defaults_follow_calico_and_linux() {
    let s = Settings::default();
    assert_eq!(
        s.failsafe_inbound,
        [
            tcp(22),
            udp(68),
            tcp(179),
            tcp(2379),
            tcp(2380),
            tcp(5473),
            tcp(6443),
            tcp(6666),
            tcp(6667)
        ]
    );
    assert_eq!(
        s.failsafe_outbound,
        [
            udp(53),
            udp(67),
            tcp(179),
            tcp(2379),
            tcp(2380),
            tcp(5473),
            tcp(6443),
            tcp(6666),
            tcp(6667)
        ]
    );
    assert_eq!(s.log_severity, "Info");
    assert!(s.metrics_enabled && s.health_enabled);
    assert_eq!(
        (s.metrics_host.as_str(), s.metrics_port),
        ("127.0.0.1", 9091)
    );
    assert_eq!((s.health_host.as_str(), s.health_port), ("127.0.0.1", 9091));
    assert_eq!(s.unmatched_traffic_action, UnmatchedTrafficAction::Deny);
    assert!(s.anti_spoof);
    assert!(s.inside_nets.is_empty() && s.allowed_ether_types.is_empty());
    assert_eq!(s.conntrack_max_entries, 262_144);
    let t = &s.conntrack_timeouts;
    let secs = [
        t.tcp_syn_sent,
        t.tcp_established,
        t.tcp_fin_wait,
        t.tcp_close_wait,
        t.tcp_time_wait,
        t.tcp_close,
        t.udp_unreplied,
        t.udp_replied,
        t.icmp,
        t.other,
    ]
    .map(|d| d.as_secs());
    assert_eq!(secs, [120, 432_000, 120, 60, 120, 10, 30, 120, 30, 600]);
    assert!(s.tcp_loose_pickup);
    assert!(!s.revalidate_on_reload);
    assert_eq!(s.fragment_tracker_max_entries, 8192);
    assert_eq!(s.log_rate_limit_per_second, 100);
}

#[test]
fn from_resources_reads_the_default_configurations() {
    let resources = [
        felix(
            "default",
            json!({
                "failsafeInboundHostPorts": [
                    {"protocol": "TCP", "port": 2222, "net": "192.0.2.7/24"},
                    {"protocol": "udp", "port": 68}
                ],
                "failsafeOutboundHostPorts": "none",
                "logSeverityScreen": "debug",
                "prometheusMetricsEnabled": false,
                "prometheusMetricsHost": "0.0.0.0",
                "prometheusMetricsPort": 9100,
                "healthEnabled": false,
                "healthHost": "localhost",
                "healthPort": 9099,
                "bpfEnabled": true
            }),
        ),
        gateway(
            "default",
            json!({
                "unmatchedTrafficAction": "Allow",
                "antiSpoof": false,
                "insideNets": ["192.0.2.0/24", "2001:db8::/64"],
                "allowedEtherTypes": [0x88cc],
                "conntrackMaxEntries": 2000,
                "conntrackTimeouts": {"tcpEstablished": "1h30m", "udpUnreplied": "250ms"},
                "tcpLoosePickup": false,
                "revalidateOnReload": true,
                "fragmentTrackerMaxEntries": 16,
                "logRateLimitPerSecond": 5
            }),
        ),
        // Not named default: ignored here (validation refuses it).
        gateway("other", json!({"conntrackMaxEntries": 7})),
    ];
    let s = Settings::from_resources(&resources).unwrap();
    assert_eq!(
        s.failsafe_inbound,
        [
            FailsafePort {
                protocol: FailsafeProtocol::Tcp,
                port: 2222,
                net: Some(net("192.0.2.0/24")),
            },
            udp(68)
        ]
    );
    assert!(s.failsafe_outbound.is_empty());
    assert_eq!(s.log_severity, "Debug");
    assert!(!s.metrics_enabled && !s.health_enabled);
    assert_eq!((s.metrics_host.as_str(), s.metrics_port), ("0.0.0.0", 9100));
    assert_eq!((s.health_host.as_str(), s.health_port), ("localhost", 9099));
    assert_eq!(s.unmatched_traffic_action, UnmatchedTrafficAction::Allow);
    assert!(!s.anti_spoof);
    assert_eq!(s.inside_nets, [net("192.0.2.0/24"), net("2001:db8::/64")]);
    assert_eq!(s.allowed_ether_types, [0x88cc]);
    assert_eq!(s.conntrack_max_entries, 2000);
    assert_eq!(
        s.conntrack_timeouts.tcp_established,
        Duration::from_secs(5400)
    );
    assert_eq!(
        s.conntrack_timeouts.udp_unreplied,
        Duration::from_millis(250)
    );
    assert_eq!(
        s.conntrack_timeouts.tcp_syn_sent,
        ConntrackTimeouts::default().tcp_syn_sent
    );
    assert!(!s.tcp_loose_pickup && s.revalidate_on_reload);
    assert_eq!(s.fragment_tracker_max_entries, 16);
    assert_eq!(s.log_rate_limit_per_second, 5);
}

#[test]
fn from_resources_without_configuration_is_default() {
    assert_eq!(Settings::from_resources(&[]).unwrap(), Settings::default());
}

#[test]
fn from_resources_reports_bad_values_with_file_and_line() {
    let resources = [
        felix("default", json!({"prometheusMetricsPort": 0})),
        gateway("default", json!({"conntrackTimeouts": {"icmp": "soon"}})),
    ];
    let problems = Settings::from_resources(&resources).unwrap_err();
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "config.yaml:3: FelixConfiguration/default: spec.prometheusMetricsPort: port 0 is out \
             of range: use 1-65535",
            "config.yaml:3: GatewayConfiguration/default: spec.conntrackTimeouts.icmp: duration \
             \"soon\" is not valid: use whole numbers with units ms, s, m or h, such as 30s, 5m, \
             120h or 1h30m",
        ]
    );
}

#[test]
fn environment_overrides_resources() {
    let resources = [gateway(
        "default",
        json!({"conntrackMaxEntries": 5000, "antiSpoof": false, "tcpLoosePickup": false}),
    )];
    let mut s = Settings::from_resources(&resources).unwrap();
    s.apply_env(env(&[
        ("PORTCULLIS_CONNTRACK_MAX_ENTRIES", "2000"),
        ("PORTCULLIS_ANTI_SPOOF", "true"),
        ("PATH", "/usr/bin"),
        ("PORTCULLIS_LOG_FORMAT", "json"),
    ]))
    .unwrap();
    assert_eq!(s.conntrack_max_entries, 2000);
    assert!(s.anti_spoof);
    // Not overridden: the resource's value stays.
    assert!(!s.tcp_loose_pickup);
}

#[test]
fn environment_values_of_every_form() {
    let mut s = Settings::default();
    s.apply_env(env(&[
        ("PORTCULLIS_FAILSAFE_INBOUND_HOST_PORTS", "none"),
        (
            "PORTCULLIS_FAILSAFE_OUTBOUND_HOST_PORTS",
            "tcp:22, UDP:68,443,tcp:192.0.2.0/24:179,udp:[2001:db8::/64]:53",
        ),
        ("PORTCULLIS_LOG_SEVERITY_SCREEN", "WARNING"),
        ("PORTCULLIS_PROMETHEUS_METRICS_ENABLED", "no"),
        ("PORTCULLIS_PROMETHEUS_METRICS_HOST", "::1"),
        ("PORTCULLIS_PROMETHEUS_METRICS_PORT", "9200"),
        ("PORTCULLIS_HEALTH_ENABLED", "FALSE"),
        ("PORTCULLIS_HEALTH_HOST", "gateway.example"),
        ("PORTCULLIS_HEALTH_PORT", "9201"),
        ("PORTCULLIS_UNMATCHED_TRAFFIC_ACTION", "Allow"),
        ("PORTCULLIS_ANTI_SPOOF", "false"),
        ("PORTCULLIS_INSIDE_NETS", "192.0.2.0/24,2001:db8::/64"),
        ("PORTCULLIS_ALLOWED_ETHER_TYPES", "0x88cc, 35020, 0x88B5"),
        ("PORTCULLIS_CONNTRACK_MAX_ENTRIES", "0x100"),
        ("PORTCULLIS_CONNTRACK_TIMEOUTS_TCP_SYN_SENT", "1m"),
        ("PORTCULLIS_CONNTRACK_TIMEOUTS_TCP_ESTABLISHED", "2h"),
        ("PORTCULLIS_CONNTRACK_TIMEOUTS_TCP_FIN_WAIT", "3m"),
        ("PORTCULLIS_CONNTRACK_TIMEOUTS_TCP_CLOSE_WAIT", "4m"),
        ("PORTCULLIS_CONNTRACK_TIMEOUTS_TCP_TIME_WAIT", "5m"),
        ("PORTCULLIS_CONNTRACK_TIMEOUTS_TCP_CLOSE", "6s"),
        ("PORTCULLIS_CONNTRACK_TIMEOUTS_UDP_UNREPLIED", "7s"),
        ("PORTCULLIS_CONNTRACK_TIMEOUTS_UDP_REPLIED", "8s"),
        ("PORTCULLIS_CONNTRACK_TIMEOUTS_ICMP", "9s"),
        ("PORTCULLIS_CONNTRACK_TIMEOUTS_OTHER", "1h1m1s"),
        ("PORTCULLIS_TCP_LOOSE_PICKUP", "0"),
        ("PORTCULLIS_REVALIDATE_ON_RELOAD", "1"),
        ("PORTCULLIS_FRAGMENT_TRACKER_MAX_ENTRIES", "64"),
        ("PORTCULLIS_LOG_RATE_LIMIT_PER_SECOND", "7"),
    ]))
    .unwrap();
    assert!(s.failsafe_inbound.is_empty());
    assert_eq!(
        s.failsafe_outbound,
        [
            tcp(22),
            udp(68),
            tcp(443),
            FailsafePort {
                protocol: FailsafeProtocol::Tcp,
                port: 179,
                net: Some(net("192.0.2.0/24")),
            },
            FailsafePort {
                protocol: FailsafeProtocol::Udp,
                port: 53,
                net: Some(net("2001:db8::/64")),
            },
        ]
    );
    assert_eq!(s.log_severity, "Warning");
    assert!(!s.metrics_enabled && !s.health_enabled);
    assert_eq!((s.metrics_host.as_str(), s.metrics_port), ("::1", 9200));
    assert_eq!(
        (s.health_host.as_str(), s.health_port),
        ("gateway.example", 9201)
    );
    assert_eq!(s.unmatched_traffic_action, UnmatchedTrafficAction::Allow);
    assert!(!s.anti_spoof);
    assert_eq!(s.inside_nets, [net("192.0.2.0/24"), net("2001:db8::/64")]);
    assert_eq!(s.allowed_ether_types, [0x88cc, 0x88cc, 0x88b5]);
    assert_eq!(s.conntrack_max_entries, 256);
    let t = &s.conntrack_timeouts;
    let secs = [
        t.tcp_syn_sent,
        t.tcp_established,
        t.tcp_fin_wait,
        t.tcp_close_wait,
        t.tcp_time_wait,
        t.tcp_close,
        t.udp_unreplied,
        t.udp_replied,
        t.icmp,
        t.other,
    ]
    .map(|d| d.as_secs());
    assert_eq!(secs, [60, 7200, 180, 240, 300, 6, 7, 8, 9, 3661]);
    assert!(!s.tcp_loose_pickup && s.revalidate_on_reload);
    assert_eq!(s.fragment_tracker_max_entries, 64);
    assert_eq!(s.log_rate_limit_per_second, 7);
}

#[test]
fn environment_problems_leave_settings_unchanged() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "PORTCULLIS_CONNTRACK_MAX_ENTRIES",
            "lots",
            "not a whole number",
        ),
        ("PORTCULLIS_CONNTRACK_MAX_ENTRIES", "0", "from 1 to"),
        ("PORTCULLIS_ANTI_SPOOF", "maybe", "not a boolean"),
        ("PORTCULLIS_ANTI_SPOOF", "", "not a boolean"),
        ("PORTCULLIS_INSIDE_NETS", "192.0.2.1/24", "host bits"),
        (
            "PORTCULLIS_ALLOWED_ETHER_TYPES",
            "0x0806",
            "ARP always passes",
        ),
        ("PORTCULLIS_FAILSAFE_INBOUND_HOST_PORTS", "", "write none"),
        (
            "PORTCULLIS_FAILSAFE_INBOUND_HOST_PORTS",
            "icmp:8",
            "use tcp or udp",
        ),
        (
            "PORTCULLIS_FAILSAFE_INBOUND_HOST_PORTS",
            "tcp:http",
            "proto:port",
        ),
        (
            "PORTCULLIS_FAILSAFE_INBOUND_HOST_PORTS",
            "tcp:0",
            "use 1-65535",
        ),
        (
            "PORTCULLIS_FAILSAFE_OUTBOUND_HOST_PORTS",
            "udp:nonsense:53",
            "not a valid CIDR",
        ),
        (
            "PORTCULLIS_CONNTRACK_TIMEOUTS_TCP_ESTABLISHED",
            "5 days",
            "not valid",
        ),
        (
            "PORTCULLIS_CONNTRACK_TIMEOUTS_UDP_REPLIED",
            "0ms",
            "longer than zero",
        ),
        ("PORTCULLIS_LOG_SEVERITY_SCREEN", "Trace", "use Debug, Info"),
        ("PORTCULLIS_HEALTH_PORT", "65536", "use 1-65535"),
        (
            "PORTCULLIS_PROMETHEUS_METRICS_HOST",
            "",
            "not a valid listen address",
        ),
        (
            "PORTCULLIS_UNMATCHED_TRAFFIC_ACTION",
            "deny",
            "use Deny or Allow",
        ),
        (
            "PORTCULLIS_ANTI_SPOOFING",
            "false",
            "did you mean PORTCULLIS_ANTI_SPOOF?",
        ),
        (
            "PORTCULLIS_CONNTRACK_MAX_ENTRY",
            "5",
            "did you mean PORTCULLIS_CONNTRACK_MAX_ENTRIES?",
        ),
        (
            "PORTCULLIS_LOG_SEVERITY",
            "Debug",
            "did you mean PORTCULLIS_LOG_SEVERITY_SCREEN?",
        ),
        (
            "PORTCULLIS_ANTI_SPOOF_ENABLED",
            "true",
            "did you mean PORTCULLIS_ANTI_SPOOF?",
        ),
        ("PORTCULLIS_CONNTRACK_TIMEOUT_SCTP", "5s", "unknown setting"),
    ];
    for (name, value, fragment) in cases {
        let mut s = Settings::default();
        // A valid variable alongside: it must not apply when another one fails.
        let result = s.apply_env(env(&[
            (name, value),
            ("PORTCULLIS_REVALIDATE_ON_RELOAD", "true"),
        ]));
        let Err(problems) = result else {
            panic!("{name}={value:?} was accepted");
        };
        assert_eq!(problems.len(), 1, "{name}={value:?}: {problems:?}");
        let p = &problems[0];
        assert_eq!(
            (
                p.file.as_str(),
                p.line,
                p.resource.as_str(),
                p.field.as_str()
            ),
            (ENVIRONMENT, 0, "-", *name),
            "{name}"
        );
        assert!(
            p.message.contains(fragment),
            "{name}={value:?}: {}",
            p.message
        );
        assert_eq!(s, Settings::default(), "{name}: settings changed");
    }
}

#[test]
fn unrelated_portcullis_variables_are_left_alone() {
    let mut s = Settings::default();
    s.apply_env(env(&[
        ("PORTCULLIS_LOG", "debug"),
        ("PORTCULLIS_LOG_FORMAT", "json"),
        ("PORTCULLIS_CONFIG", "/etc/portcullis"),
        ("PORTCULLIS_ADMIN_LISTEN", "127.0.0.1:9091"),
        ("portcullis_anti_spoof", "nonsense"),
    ]))
    .unwrap();
    assert_eq!(s, Settings::default());
}

#[test]
fn every_environment_setting_is_upper_snake_case_of_a_resource_field() {
    let resource_fields = [
        "failsafeInboundHostPorts",
        "failsafeOutboundHostPorts",
        "logSeverityScreen",
        "prometheusMetricsEnabled",
        "prometheusMetricsHost",
        "prometheusMetricsPort",
        "healthEnabled",
        "healthHost",
        "healthPort",
        "unmatchedTrafficAction",
        "antiSpoof",
        "insideNets",
        "allowedEtherTypes",
        "conntrackMaxEntries",
        "conntrackTimeoutsTcpSynSent",
        "conntrackTimeoutsTcpEstablished",
        "conntrackTimeoutsTcpFinWait",
        "conntrackTimeoutsTcpCloseWait",
        "conntrackTimeoutsTcpTimeWait",
        "conntrackTimeoutsTcpClose",
        "conntrackTimeoutsUdpUnreplied",
        "conntrackTimeoutsUdpReplied",
        "conntrackTimeoutsIcmp",
        "conntrackTimeoutsOther",
        "tcpLoosePickup",
        "revalidateOnReload",
        "fragmentTrackerMaxEntries",
        "logRateLimitPerSecond",
    ];
    let upper_snake = |camel: &str| {
        camel.chars().fold(String::new(), |mut out, c| {
            if c.is_ascii_uppercase() {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
            out
        })
    };
    let expected: Vec<String> = resource_fields.iter().map(|f| upper_snake(f)).collect();
    let actual: Vec<&str> = ENV_SETTINGS.iter().map(|s| s.name).collect();
    assert_eq!(actual, expected);
}

#[test]
fn durations() {
    let cases: &[(&str, Option<u64>)] = &[
        ("30s", Some(30_000)),
        ("5m", Some(300_000)),
        ("120h", Some(432_000_000)),
        ("250ms", Some(250)),
        ("1h30m", Some(5_400_000)),
        ("1m30s500ms", Some(90_500)),
        ("0s", Some(0)),
        ("", None),
        ("10", None),
        ("s", None),
        ("1.5h", None),
        ("1d", None),
        ("-1s", None),
        ("1 s", None),
        ("99999999999999999999h", None),
        ("5124095576030431h", None),
    ];
    for (text, want) in cases {
        let got = parse_duration(text).ok().map(|d| d.as_millis() as u64);
        assert_eq!(got, *want, "{text:?}");
    }
}
