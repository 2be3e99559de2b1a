//! Gateway settings: FelixConfiguration `default`, GatewayConfiguration `default`, then
//! `PORTCULLIS_*` environment variables (later wins). PLACEHOLDER bodies: being replaced.
#![allow(unused_variables, clippy::todo)]

use std::time::Duration;

use ipnet::IpNet;

use super::{Problem, Resource};

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

impl Default for Settings {
    fn default() -> Self {
        todo!()
    }
}

impl Settings {
    /// Settings from the directory's FelixConfiguration and GatewayConfiguration named `default`.
    pub fn from_resources(resources: &[Resource]) -> Result<Settings, Vec<Problem>> {
        todo!()
    }

    /// Overlay `PORTCULLIS_<SETTING>` variables (upper snake case of the field name).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), Vec<Problem>> {
        todo!()
    }
}
