//! Gateway settings: defaults, then FelixConfiguration `default` and GatewayConfiguration
//! `default` from the directory, then `PORTCULLIS_*` environment variables (later wins;
//! command-line flags, applied by the caller, come last).
//!
//! Metrics and health share one admin HTTP listener (SPEC §A6: `/metrics`, `/liveness`,
//! `/readiness`, `/status`), so both default to `127.0.0.1:9091`. FelixConfiguration can still
//! set them apart (`prometheusMetricsHost/Port`, `healthHost/Port`); these settings only carry
//! the values and the listener decides how to serve them.
//!
//! The parsing of each value lives here once: validation reports a bad value in a
//! FelixConfiguration or GatewayConfiguration by overlaying it on scratch settings.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::resources::{self, FailsafeList, FelixConfigurationSpec, GatewayConfigurationSpec};
use super::validate::{names, values};
use super::{Problem, Resource, Spec};

/// IP protocol of a failsafe port entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailsafeProtocol {
    Tcp,
    Udp,
}

/// One failsafe port: traffic to (inbound) or from (outbound) a host endpoint whose
/// destination port is `port` is admitted ahead of all policy. `net`, when set, restricts
/// the remote address (Calico's `net` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailsafePort {
    pub protocol: FailsafeProtocol,
    pub port: u16,
    pub net: Option<IpNet>,
}

/// What happens to a flow in which neither address is an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmatchedTrafficAction {
    Deny,
    Allow,
}

/// Conntrack timeouts (Linux's defaults unless set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackTimeouts {
    pub tcp_syn_sent: Duration,
    pub tcp_established: Duration,
    pub tcp_fin_wait: Duration,
    pub tcp_close_wait: Duration,
    pub tcp_time_wait: Duration,
    pub tcp_close: Duration,
    pub udp_unreplied: Duration,
    pub udp_replied: Duration,
    pub icmp: Duration,
    pub other: Duration,
}

/// Every gateway setting, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub failsafe_inbound: Vec<FailsafePort>,
    pub failsafe_outbound: Vec<FailsafePort>,
    pub log_severity: String,
    pub metrics_enabled: bool,
    pub metrics_host: String,
    pub metrics_port: u16,
    pub health_enabled: bool,
    pub health_host: String,
    pub health_port: u16,
    pub unmatched_traffic_action: UnmatchedTrafficAction,
    pub anti_spoof: bool,
    pub inside_nets: Vec<IpNet>,
    pub allowed_ether_types: Vec<u16>,
    pub conntrack_max_entries: u32,
    pub conntrack_timeouts: ConntrackTimeouts,
    pub tcp_loose_pickup: bool,
    pub revalidate_on_reload: bool,
    pub fragment_tracker_max_entries: u32,
    pub log_rate_limit_per_second: u32,
}

/// Only the FelixConfiguration and GatewayConfiguration with this name are read.
pub const DEFAULT_CONFIGURATION_NAME: &str = "default";

/// `file` of a problem found in an environment variable.
pub const ENVIRONMENT: &str = "environment";

/// Calico's default failsafe ports (SPEC §3.4), in Calico's order.
const DEFAULT_FAILSAFE_INBOUND: [(FailsafeProtocol, u16); 9] = [
    (FailsafeProtocol::Tcp, 22),
    (FailsafeProtocol::Udp, 68),
    (FailsafeProtocol::Tcp, 179),
    (FailsafeProtocol::Tcp, 2379),
    (FailsafeProtocol::Tcp, 2380),
    (FailsafeProtocol::Tcp, 5473),
    (FailsafeProtocol::Tcp, 6443),
    (FailsafeProtocol::Tcp, 6666),
    (FailsafeProtocol::Tcp, 6667),
];
const DEFAULT_FAILSAFE_OUTBOUND: [(FailsafeProtocol, u16); 9] = [
    (FailsafeProtocol::Udp, 53),
    (FailsafeProtocol::Udp, 67),
    (FailsafeProtocol::Tcp, 179),
    (FailsafeProtocol::Tcp, 2379),
    (FailsafeProtocol::Tcp, 2380),
    (FailsafeProtocol::Tcp, 5473),
    (FailsafeProtocol::Tcp, 6443),
    (FailsafeProtocol::Tcp, 6666),
    (FailsafeProtocol::Tcp, 6667),
];

const SEVERITIES: [&str; 5] = ["Debug", "Info", "Warning", "Error", "Fatal"];

/// EtherTypes that are never listed in `allowedEtherTypes`: IP goes through policy, ARP
/// always passes, and VLAN tags are parsed through.
const HANDLED_ETHER_TYPES: [(u16, &str); 5] = [
    (0x0800, "IPv4 always goes through policy"),
    (0x86DD, "IPv6 always goes through policy"),
    (0x0806, "ARP always passes"),
    (0x8100, "802.1Q VLAN tags are always parsed through"),
    (0x88A8, "802.1ad (QinQ) tags are always parsed through"),
];
/// Smallest EtherType value (below it the field is an 802.3 length).
const MIN_ETHER_TYPE: i64 = 0x0600;

fn failsafe_ports(list: &[(FailsafeProtocol, u16)]) -> Vec<FailsafePort> {
    list.iter()
        .map(|&(protocol, port)| FailsafePort {
            protocol,
            port,
            net: None,
        })
        .collect()
}

impl Default for ConntrackTimeouts {
    /// Linux's `nf_conntrack_*_timeout*` defaults.
    fn default() -> Self {
        ConntrackTimeouts {
            tcp_syn_sent: Duration::from_secs(120),
            tcp_established: Duration::from_secs(432_000),
            tcp_fin_wait: Duration::from_secs(120),
            tcp_close_wait: Duration::from_secs(60),
            tcp_time_wait: Duration::from_secs(120),
            tcp_close: Duration::from_secs(10),
            udp_unreplied: Duration::from_secs(30),
            udp_replied: Duration::from_secs(120),
            icmp: Duration::from_secs(30),
            other: Duration::from_secs(600),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            failsafe_inbound: failsafe_ports(&DEFAULT_FAILSAFE_INBOUND),
            failsafe_outbound: failsafe_ports(&DEFAULT_FAILSAFE_OUTBOUND),
            log_severity: "Info".to_owned(),
            metrics_enabled: true,
            metrics_host: "127.0.0.1".to_owned(),
            metrics_port: 9091,
            health_enabled: true,
            health_host: "127.0.0.1".to_owned(),
            health_port: 9091,
            unmatched_traffic_action: UnmatchedTrafficAction::Deny,
            anti_spoof: true,
            inside_nets: Vec::new(),
            allowed_ether_types: Vec::new(),
            conntrack_max_entries: 262_144,
            conntrack_timeouts: ConntrackTimeouts::default(),
            tcp_loose_pickup: true,
            revalidate_on_reload: false,
            fragment_tracker_max_entries: 8192,
            log_rate_limit_per_second: 100,
        }
    }
}

impl Settings {
    /// Settings from the directory's FelixConfiguration and GatewayConfiguration named
    /// `default` (other names are refused by validation and ignored here).
    pub fn from_resources(resources: &[Resource]) -> Result<Settings, Vec<Problem>> {
        let mut settings = Settings::default();
        let mut problems = Vec::new();
        for resource in resources {
            if resource.name() != DEFAULT_CONFIGURATION_NAME {
                continue;
            }
            match &resource.spec {
                Spec::FelixConfiguration(spec) => {
                    settings.overlay_felix(resource, spec, &mut problems)
                }
                Spec::GatewayConfiguration(spec) => {
                    settings.overlay_gateway(resource, spec, &mut problems)
                }
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }

    /// Overlays the fields of a FelixConfiguration that apply to portcullis; a bad value is
    /// reported and leaves the setting as it was.
    pub(crate) fn overlay_felix(
        &mut self,
        resource: &Resource,
        spec: &FelixConfigurationSpec,
        problems: &mut Vec<Problem>,
    ) {
        let mut out = Overlay { resource, problems };
        if let Some(list) = &spec.failsafe_inbound_host_ports {
            out.set(
                &mut self.failsafe_inbound,
                "spec.failsafeInboundHostPorts",
                |o, f| o.failsafe_list(f, list),
            );
        }
        if let Some(list) = &spec.failsafe_outbound_host_ports {
            out.set(
                &mut self.failsafe_outbound,
                "spec.failsafeOutboundHostPorts",
                |o, f| o.failsafe_list(f, list),
            );
        }
        out.parse(
            &mut self.log_severity,
            "spec.logSeverityScreen",
            spec.log_severity_screen.as_deref(),
            parse_severity,
        );
        if let Some(enabled) = spec.prometheus_metrics_enabled {
            self.metrics_enabled = enabled;
        }
        out.parse(
            &mut self.metrics_port,
            "spec.prometheusMetricsPort",
            spec.prometheus_metrics_port,
            parse_listen_port,
        );
        out.parse(
            &mut self.metrics_host,
            "spec.prometheusMetricsHost",
            spec.prometheus_metrics_host.as_deref(),
            parse_host,
        );
        if let Some(enabled) = spec.health_enabled {
            self.health_enabled = enabled;
        }
        out.parse(
            &mut self.health_port,
            "spec.healthPort",
            spec.health_port,
            parse_listen_port,
        );
        out.parse(
            &mut self.health_host,
            "spec.healthHost",
            spec.health_host.as_deref(),
            parse_host,
        );
    }

    /// Overlays a GatewayConfiguration; a bad value is reported and leaves the setting as it
    /// was.
    pub(crate) fn overlay_gateway(
        &mut self,
        resource: &Resource,
        spec: &GatewayConfigurationSpec,
        problems: &mut Vec<Problem>,
    ) {
        let mut out = Overlay { resource, problems };
        out.parse(
            &mut self.unmatched_traffic_action,
            "spec.unmatchedTrafficAction",
            spec.unmatched_traffic_action.as_deref(),
            parse_unmatched_action,
        );
        if let Some(on) = spec.anti_spoof {
            self.anti_spoof = on;
        }
        if !spec.inside_nets.is_empty() {
            out.set(&mut self.inside_nets, "spec.insideNets", |o, field| {
                o.each(field, &spec.inside_nets, |text| parse_inside_net(text))
            });
        }
        if !spec.allowed_ether_types.is_empty() {
            out.set(
                &mut self.allowed_ether_types,
                "spec.allowedEtherTypes",
                |o, field| o.each(field, &spec.allowed_ether_types, |n| parse_ether_type(*n)),
            );
        }
        out.parse(
            &mut self.conntrack_max_entries,
            "spec.conntrackMaxEntries",
            spec.conntrack_max_entries,
            parse_capacity,
        );
        if let Some(timeouts) = &spec.conntrack_timeouts {
            overlay_timeouts(&mut out, &mut self.conntrack_timeouts, timeouts);
        }
        if let Some(on) = spec.tcp_loose_pickup {
            self.tcp_loose_pickup = on;
        }
        if let Some(on) = spec.revalidate_on_reload {
            self.revalidate_on_reload = on;
        }
        out.parse(
            &mut self.fragment_tracker_max_entries,
            "spec.fragmentTrackerMaxEntries",
            spec.fragment_tracker_max_entries,
            parse_capacity,
        );
        out.parse(
            &mut self.log_rate_limit_per_second,
            "spec.logRateLimitPerSecond",
            spec.log_rate_limit_per_second,
            parse_capacity,
        );
    }

    /// Overlay `PORTCULLIS_<SETTING>` variables: `PORTCULLIS_` + the resource field name in
    /// upper snake case, e.g. `PORTCULLIS_CONNTRACK_MAX_ENTRIES=2000`,
    /// `PORTCULLIS_CONNTRACK_TIMEOUTS_TCP_ESTABLISHED=2h`, `PORTCULLIS_LOG_SEVERITY_SCREEN=Debug`
    /// (the full list is [`ENV_SETTINGS`]). Lists are comma-separated:
    /// `PORTCULLIS_INSIDE_NETS=192.0.2.0/24,2001:db8::/64`, failsafe ports as
    /// `PORTCULLIS_FAILSAFE_INBOUND_HOST_PORTS=tcp:22,udp:68` (also `proto:net:port`, with an
    /// IPv6 net in brackets, or `none`).
    ///
    /// All or nothing: on any problem `self` is left unchanged. A bad value is a problem with
    /// file `environment`, resource `-` and the variable's name as field. An unknown
    /// `PORTCULLIS_*` variable is a problem only when its name looks like a misspelt setting
    /// (close to a setting's name, a setting's name with more words, a shortening of a
    /// multi-word one, or in a settings group such as `PORTCULLIS_CONNTRACK_*`), so variables
    /// that other parts of portcullis may read are left alone.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), Vec<Problem>> {
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        // Stable, so that of two entries for one name the later one wins.
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut updated = self.clone();
        let mut problems = Vec::new();
        for (name, value) in &vars {
            let setting = &name[ENV_PREFIX.len()..];
            match ENV_SETTINGS.iter().find(|s| s.name == setting) {
                Some(known) => {
                    if let Err(message) = (known.apply)(&mut updated, value) {
                        problems.push(env_problem(name, message));
                    }
                }
                None => {
                    if let Some(message) = unknown_setting_message(setting) {
                        problems.push(env_problem(name, message));
                    }
                }
            }
        }
        if problems.is_empty() {
            *self = updated;
            Ok(())
        } else {
            Err(problems)
        }
    }
}

fn overlay_timeouts(
    out: &mut Overlay,
    target: &mut ConntrackTimeouts,
    timeouts: &resources::ConntrackTimeouts,
) {
    let fields: [(&str, &Option<String>, &mut Duration); 10] = [
        (
            "tcpSynSent",
            &timeouts.tcp_syn_sent,
            &mut target.tcp_syn_sent,
        ),
        (
            "tcpEstablished",
            &timeouts.tcp_established,
            &mut target.tcp_established,
        ),
        (
            "tcpFinWait",
            &timeouts.tcp_fin_wait,
            &mut target.tcp_fin_wait,
        ),
        (
            "tcpCloseWait",
            &timeouts.tcp_close_wait,
            &mut target.tcp_close_wait,
        ),
        (
            "tcpTimeWait",
            &timeouts.tcp_time_wait,
            &mut target.tcp_time_wait,
        ),
        ("tcpClose", &timeouts.tcp_close, &mut target.tcp_close),
        (
            "udpUnreplied",
            &timeouts.udp_unreplied,
            &mut target.udp_unreplied,
        ),
        ("udpReplied", &timeouts.udp_replied, &mut target.udp_replied),
        ("icmp", &timeouts.icmp, &mut target.icmp),
        ("other", &timeouts.other, &mut target.other),
    ];
    for (name, value, slot) in fields {
        out.parse(
            slot,
            &format!("spec.conntrackTimeouts.{name}"),
            value.as_deref(),
            parse_timeout,
        );
    }
}

/// Where overlay problems go, and the resource they are located in.
struct Overlay<'a> {
    resource: &'a Resource,
    problems: &'a mut Vec<Problem>,
}

impl Overlay<'_> {
    fn report(&mut self, field: &str, message: String) {
        self.problems.push(self.resource.problem(field, message));
    }

    /// Sets `target` from `value` when present and valid; reports otherwise.
    fn parse<T, V>(
        &mut self,
        target: &mut T,
        field: &str,
        value: Option<V>,
        parse: impl FnOnce(V) -> Result<T, String>,
    ) {
        if let Some(value) = value {
            match parse(value) {
                Ok(parsed) => *target = parsed,
                Err(message) => self.report(field, message),
            }
        }
    }

    /// Sets `target` from a builder that reports its own problems (lists, whose entries are
    /// located one by one) and returns `None` when it found any.
    fn set<T>(
        &mut self,
        target: &mut T,
        field: &str,
        build: impl FnOnce(&mut Self, &str) -> Option<T>,
    ) {
        if let Some(value) = build(self, field) {
            *target = value;
        }
    }

    /// Parses every entry of a list, reporting each bad one at `field[i]`.
    fn each<E, T>(
        &mut self,
        field: &str,
        entries: &[E],
        parse: impl Fn(&E) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let mut parsed = Vec::with_capacity(entries.len());
        let mut ok = true;
        for (i, entry) in entries.iter().enumerate() {
            match parse(entry) {
                Ok(value) => parsed.push(value),
                Err(message) => {
                    ok = false;
                    self.report(&format!("{field}[{i}]"), message);
                }
            }
        }
        ok.then_some(parsed)
    }

    fn failsafe_list(&mut self, field: &str, list: &FailsafeList) -> Option<Vec<FailsafePort>> {
        let FailsafeList::Ports(entries) = list else {
            return Some(Vec::new());
        };
        let mut parsed = Vec::with_capacity(entries.len());
        let mut ok = true;
        for (i, entry) in entries.iter().enumerate() {
            let protocol = parse_failsafe_protocol(&entry.protocol);
            let port = parse_failsafe_port(entry.port);
            let net = entry
                .net
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(parse_failsafe_net)
                .transpose();
            match (protocol, port, net) {
                (Ok(protocol), Ok(port), Ok(net)) => parsed.push(FailsafePort {
                    protocol,
                    port,
                    net,
                }),
                (protocol, port, net) => {
                    ok = false;
                    for (name, result) in [
                        ("protocol", protocol.err()),
                        ("port", port.err()),
                        ("net", net.err()),
                    ] {
                        if let Some(message) = result {
                            self.report(&format!("{field}[{i}].{name}"), message);
                        }
                    }
                }
            }
        }
        ok.then_some(parsed)
    }
}

fn parse_failsafe_protocol(text: &str) -> Result<FailsafeProtocol, String> {
    if text.eq_ignore_ascii_case("tcp") {
        Ok(FailsafeProtocol::Tcp)
    } else if text.eq_ignore_ascii_case("udp") {
        Ok(FailsafeProtocol::Udp)
    } else if text.eq_ignore_ascii_case("sctp") {
        Err("SCTP failsafe ports are not supported by portcullis: use tcp or udp".to_owned())
    } else {
        Err(format!(
            "failsafe protocol {text:?} is not valid: use tcp or udp"
        ))
    }
}

fn parse_failsafe_port(port: i64) -> Result<u16, String> {
    values::port_number(port, &port.to_string())
}

/// Felix reads failsafe nets with host bits allowed; they mean the enclosing network.
fn parse_failsafe_net(text: &str) -> Result<IpNet, String> {
    values::net(text).map(|n| n.trunc())
}

fn parse_severity(text: &str) -> Result<String, String> {
    SEVERITIES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(text))
        .map(|s| (*s).to_owned())
        .ok_or_else(|| {
            format!("log severity {text:?} is not valid: use Debug, Info, Warning, Error or Fatal")
        })
}

fn parse_listen_port(port: i64) -> Result<u16, String> {
    values::port_number(port, &port.to_string())
}

/// A listen address: an IP address or a host name.
fn parse_host(text: &str) -> Result<String, String> {
    let is_host_name = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        });
    if text.parse::<IpAddr>().is_ok() || is_host_name {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a valid listen address: use an IP address such as 127.0.0.1 or \
             0.0.0.0, or a host name"
        ))
    }
}

fn parse_unmatched_action(text: &str) -> Result<UnmatchedTrafficAction, String> {
    match text {
        "Deny" => Ok(UnmatchedTrafficAction::Deny),
        "Allow" => Ok(UnmatchedTrafficAction::Allow),
        _ => Err(format!(
            "unmatchedTrafficAction {text:?} is not valid: use Deny or Allow"
        )),
    }
}

/// `insideNets` are compared against packet addresses, so a CIDR with host bits set is
/// refused rather than guessed at.
fn parse_inside_net(text: &str) -> Result<IpNet, String> {
    values::rule_net(text, true)
}

fn parse_ether_type(n: i64) -> Result<u16, String> {
    let value = u16::try_from(n)
        .ok()
        .filter(|v| i64::from(*v) >= MIN_ETHER_TYPE)
        .ok_or_else(|| format!("EtherType {n} is out of range: use 0x0600-0xFFFF (1536-65535)"))?;
    match HANDLED_ETHER_TYPES.iter().find(|(t, _)| *t == value) {
        Some((_, why)) => Err(format!(
            "EtherType 0x{value:04X} may not be listed: {why}; allowedEtherTypes is for other \
             EtherTypes"
        )),
        None => Ok(value),
    }
}

/// A positive count that fits in 32 bits.
fn parse_capacity(n: i64) -> Result<u32, String> {
    u32::try_from(n).ok().filter(|v| *v > 0).ok_or_else(|| {
        format!(
            "{n} is not valid: use a whole number from 1 to {}",
            u32::MAX
        )
    })
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("timeout {text:?} must be longer than zero")),
        d => Ok(d),
    }
}

/// A duration such as `30s`, `5m`, `120h`, `250ms` or `1h30m`: one or more `<digits><unit>`
/// with unit `ms`, `s`, `m` or `h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "duration {text:?} is not valid: use whole numbers with units ms, s, m or h, such \
             as 30s, 5m, 120h or 1h30m"
        )
    };
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let amount: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let (millis_per_unit, unit_len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return Err(invalid());
        };
        rest = &rest[unit_len..];
        let part = amount
            .checked_mul(millis_per_unit)
            .map(Duration::from_millis)
            .ok_or_else(invalid)?;
        total = total.checked_add(part).ok_or_else(invalid)?;
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Environment variables

const ENV_PREFIX: &str = "PORTCULLIS_";

/// One setting read from `PORTCULLIS_<name>`.
pub struct EnvSetting {
    /// The variable name without `PORTCULLIS_`.
    pub name: &'static str,
    apply: fn(&mut Settings, &str) -> Result<(), String>,
}

/// One `EnvSetting` that parses the value with `$parse` and stores it in `$target`.
macro_rules! env_setting {
    ($name:literal, |$s:ident| $target:expr, $parse:expr) => {
        EnvSetting {
            name: $name,
            apply: |$s, value| {
                $target = $parse(value)?;
                Ok(())
            },
        }
    };
}

/// Every setting that an environment variable may set, named after its resource field.
pub const ENV_SETTINGS: &[EnvSetting] = &[
    env_setting!(
        "FAILSAFE_INBOUND_HOST_PORTS",
        |s| s.failsafe_inbound,
        parse_env_failsafe
    ),
    env_setting!(
        "FAILSAFE_OUTBOUND_HOST_PORTS",
        |s| s.failsafe_outbound,
        parse_env_failsafe
    ),
    env_setting!("LOG_SEVERITY_SCREEN", |s| s.log_severity, parse_severity),
    env_setting!(
        "PROMETHEUS_METRICS_ENABLED",
        |s| s.metrics_enabled,
        parse_env_bool
    ),
    env_setting!("PROMETHEUS_METRICS_HOST", |s| s.metrics_host, parse_host),
    env_setting!(
        "PROMETHEUS_METRICS_PORT",
        |s| s.metrics_port,
        parse_env_port
    ),
    env_setting!("HEALTH_ENABLED", |s| s.health_enabled, parse_env_bool),
    env_setting!("HEALTH_HOST", |s| s.health_host, parse_host),
    env_setting!("HEALTH_PORT", |s| s.health_port, parse_env_port),
    env_setting!(
        "UNMATCHED_TRAFFIC_ACTION",
        |s| s.unmatched_traffic_action,
        parse_unmatched_action
    ),
    env_setting!("ANTI_SPOOF", |s| s.anti_spoof, parse_env_bool),
    env_setting!("INSIDE_NETS", |s| s.inside_nets, parse_env_inside_nets),
    env_setting!(
        "ALLOWED_ETHER_TYPES",
        |s| s.allowed_ether_types,
        parse_env_ether_types
    ),
    env_setting!(
        "CONNTRACK_MAX_ENTRIES",
        |s| s.conntrack_max_entries,
        parse_env_capacity
    ),
    env_setting!(
        "CONNTRACK_TIMEOUTS_TCP_SYN_SENT",
        |s| s.conntrack_timeouts.tcp_syn_sent,
        parse_timeout
    ),
    env_setting!(
        "CONNTRACK_TIMEOUTS_TCP_ESTABLISHED",
        |s| s.conntrack_timeouts.tcp_established,
        parse_timeout
    ),
    env_setting!(
        "CONNTRACK_TIMEOUTS_TCP_FIN_WAIT",
        |s| s.conntrack_timeouts.tcp_fin_wait,
        parse_timeout
    ),
    env_setting!(
        "CONNTRACK_TIMEOUTS_TCP_CLOSE_WAIT",
        |s| s.conntrack_timeouts.tcp_close_wait,
        parse_timeout
    ),
    env_setting!(
        "CONNTRACK_TIMEOUTS_TCP_TIME_WAIT",
        |s| s.conntrack_timeouts.tcp_time_wait,
        parse_timeout
    ),
    env_setting!(
        "CONNTRACK_TIMEOUTS_TCP_CLOSE",
        |s| s.conntrack_timeouts.tcp_close,
        parse_timeout
    ),
    env_setting!(
        "CONNTRACK_TIMEOUTS_UDP_UNREPLIED",
        |s| s.conntrack_timeouts.udp_unreplied,
        parse_timeout
    ),
    env_setting!(
        "CONNTRACK_TIMEOUTS_UDP_REPLIED",
        |s| s.conntrack_timeouts.udp_replied,
        parse_timeout
    ),
    env_setting!(
        "CONNTRACK_TIMEOUTS_ICMP",
        |s| s.conntrack_timeouts.icmp,
        parse_timeout
    ),
    env_setting!(
        "CONNTRACK_TIMEOUTS_OTHER",
        |s| s.conntrack_timeouts.other,
        parse_timeout
    ),
    env_setting!("TCP_LOOSE_PICKUP", |s| s.tcp_loose_pickup, parse_env_bool),
    env_setting!(
        "REVALIDATE_ON_RELOAD",
        |s| s.revalidate_on_reload,
        parse_env_bool
    ),
    env_setting!(
        "FRAGMENT_TRACKER_MAX_ENTRIES",
        |s| s.fragment_tracker_max_entries,
        parse_env_capacity
    ),
    env_setting!(
        "LOG_RATE_LIMIT_PER_SECOND",
        |s| s.log_rate_limit_per_second,
        parse_env_capacity
    ),
];

/// Name prefixes (after `PORTCULLIS_`) under which every variable is taken to be a setting.
const ENV_SETTING_GROUPS: [&str; 5] = [
    "CONNTRACK_",
    "FAILSAFE_",
    "PROMETHEUS_",
    "HEALTH_",
    "FRAGMENT_",
];

fn env_problem(name: &str, message: String) -> Problem {
    Problem {
        file: ENVIRONMENT.to_owned(),
        line: 0,
        resource: "-".to_owned(),
        field: name.to_owned(),
        message,
    }
}

/// The problem for an unknown `PORTCULLIS_<setting>`, or `None` when the name does not look
/// like a setting (see [`Settings::apply_env`]).
fn unknown_setting_message(setting: &str) -> Option<String> {
    let known: Vec<&str> = ENV_SETTINGS.iter().map(|s| s.name).collect();
    let near = names::closest(setting, &known);
    let extends_known = known.iter().any(|k| {
        setting
            .strip_prefix(k)
            .is_some_and(|rest| rest.starts_with('_'))
    });
    let shortens_known = setting.contains('_')
        && known.iter().any(|k| {
            k.strip_prefix(setting)
                .is_some_and(|rest| rest.starts_with('_'))
        });
    let in_group = ENV_SETTING_GROUPS.iter().any(|g| setting.starts_with(g));
    if near.is_none() && !extends_known && !shortens_known && !in_group {
        return None;
    }
    let suggestion = near.or_else(|| {
        known
            .iter()
            .copied()
            .filter(|k| k.starts_with(setting) || setting.starts_with(k))
            .min_by_key(|k| k.len().abs_diff(setting.len()))
    });
    Some(match suggestion {
        Some(s) => format!("unknown setting {ENV_PREFIX}{setting}: did you mean {ENV_PREFIX}{s}?"),
        None => format!("unknown setting {ENV_PREFIX}{setting}"),
    })
}

fn parse_env_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean: use true or false")),
    }
}

/// A decimal or `0x` hexadecimal integer.
fn parse_env_int(text: &str) -> Result<i64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => text.parse::<i64>(),
    };
    parsed.map_err(|_| format!("{text:?} is not a whole number"))
}

fn parse_env_port(text: &str) -> Result<u16, String> {
    parse_listen_port(parse_env_int(text)?)
}

fn parse_env_capacity(text: &str) -> Result<u32, String> {
    parse_capacity(parse_env_int(text)?)
}

fn parse_env_inside_nets(text: &str) -> Result<Vec<IpNet>, String> {
    parse_env_list(text, parse_inside_net)
}

fn parse_env_ether_types(text: &str) -> Result<Vec<u16>, String> {
    parse_env_list(text, |entry| parse_ether_type(parse_env_int(entry)?))
}

/// A comma-separated list; empty means no entries.
fn parse_env_list<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(parse)
        .collect()
}

/// `none`, or comma-separated `proto:port`, `proto:net:port` (IPv6 net in brackets:
/// `tcp:[2001:db8::/64]:22`) or a bare `port` meaning TCP, as Felix writes them.
fn parse_env_failsafe(text: &str) -> Result<Vec<FailsafePort>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    if text.is_empty() {
        return Err("empty failsafe port list: write none to disable failsafe ports".to_owned());
    }
    parse_env_list(text, parse_env_failsafe_entry)
}

fn parse_env_failsafe_entry(entry: &str) -> Result<FailsafePort, String> {
    let invalid = || {
        format!(
            "failsafe port {entry:?} is not valid: use proto:port or proto:net:port, e.g. tcp:22 \
             or udp:192.0.2.0/24:68"
        )
    };
    let (protocol, rest) = match entry.split_once(':') {
        Some((protocol, rest)) => (parse_failsafe_protocol(protocol)?, rest),
        None => (FailsafeProtocol::Tcp, entry),
    };
    let (net, port) = match rest.rsplit_once(':') {
        Some((net, port)) => {
            let net = net
                .strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .unwrap_or(net);
            (Some(parse_failsafe_net(net)?), port)
        }
        None => (None, rest),
    };
    let port = port.parse::<i64>().map_err(|_| invalid())?;
    Ok(FailsafePort {
        protocol,
        port: parse_failsafe_port(port)?,
        net,
    })
}

#[cfg(test)]
mod tests;
