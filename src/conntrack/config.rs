//! What the connection tracker is told by the gateway settings.
//!
//! This file is the boundary with the control side: the one `From<&Settings>` below is the
//! only code of the module that names `model`. Everything else sees [`ConntrackConfig`].

use std::time::Duration;

use crate::model::Settings;

/// Idle timeouts per connection state. Linux's `nf_conntrack_*_timeout*` defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// SYN seen, no SYN-ACK yet; also SYN_RECV, and a picked-up connection that has not yet
    /// seen a reply (see [`crate::conntrack::TcpState`]).
    pub tcp_syn_sent: Duration,
    pub tcp_established: Duration,
    pub tcp_fin_wait: Duration,
    pub tcp_close_wait: Duration,
    pub tcp_time_wait: Duration,
    pub tcp_close: Duration,
    pub udp_unreplied: Duration,
    pub udp_replied: Duration,
    /// ICMP and ICMPv6 echo, replied or not.
    pub icmp: Duration,
    /// Any other protocol, replied or not.
    pub other: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
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

/// Linux's `ipfrag_time`: how long a datagram's first-fragment verdict is remembered.
pub const DEFAULT_FRAGMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the connection and fragment trackers need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Connections held at most, summed over all shards.
    pub max_entries: u32,
    /// Number of shards, rounded up to a power of two; `None` picks one from `max_entries`.
    pub shards: Option<usize>,
    pub timeouts: Timeouts,
    /// Whether a TCP segment of a connection not in the table may be picked up as
    /// established (Linux's `nf_conntrack_tcp_loose`); when off such a segment is invalid.
    pub tcp_loose_pickup: bool,
    /// Datagrams whose fragments are followed at once.
    pub fragment_max_entries: u32,
    pub fragment_timeout: Duration,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max_entries: 262_144,
            shards: None,
            timeouts: Timeouts::default(),
            tcp_loose_pickup: true,
            fragment_max_entries: 8192,
            fragment_timeout: DEFAULT_FRAGMENT_TIMEOUT,
        }
    }
}

impl From<&Settings> for ConntrackConfig {
    fn from(settings: &Settings) -> Self {
        let t = &settings.conntrack_timeouts;
        ConntrackConfig {
            max_entries: settings.conntrack_max_entries,
            shards: None,
            timeouts: Timeouts {
                tcp_syn_sent: t.tcp_syn_sent,
                tcp_established: t.tcp_established,
                tcp_fin_wait: t.tcp_fin_wait,
                tcp_close_wait: t.tcp_close_wait,
                tcp_time_wait: t.tcp_time_wait,
                tcp_close: t.tcp_close,
                udp_unreplied: t.udp_unreplied,
                udp_replied: t.udp_replied,
                icmp: t.icmp,
                other: t.other,
            },
            tcp_loose_pickup: settings.tcp_loose_pickup,
            fragment_max_entries: settings.fragment_tracker_max_entries,
            fragment_timeout: DEFAULT_FRAGMENT_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_agree_with_the_default_settings() {
        assert_eq!(
            ConntrackConfig::from(&Settings::default()),
            ConntrackConfig::default()
        );
    }

    #[test]
    fn every_setting_is_carried_over() {
        let mut settings = Settings {
            conntrack_max_entries: 1000,
            tcp_loose_pickup: false,
            fragment_tracker_max_entries: 17,
            ..Settings::default()
        };
        let t = &mut settings.conntrack_timeouts;
        let values = [
            &mut t.tcp_syn_sent,
            &mut t.tcp_established,
            &mut t.tcp_fin_wait,
            &mut t.tcp_close_wait,
            &mut t.tcp_time_wait,
            &mut t.tcp_close,
            &mut t.udp_unreplied,
            &mut t.udp_replied,
            &mut t.icmp,
            &mut t.other,
        ];
        for (i, value) in values.into_iter().enumerate() {
            *value = Duration::from_millis(1000 + i as u64);
        }
        let config = ConntrackConfig::from(&settings);
        assert_eq!(config.max_entries, 1000);
        assert!(!config.tcp_loose_pickup);
        assert_eq!(config.fragment_max_entries, 17);
        let c = &config.timeouts;
        let carried = [
            c.tcp_syn_sent,
            c.tcp_established,
            c.tcp_fin_wait,
            c.tcp_close_wait,
            c.tcp_time_wait,
            c.tcp_close,
            c.udp_unreplied,
            c.udp_replied,
            c.icmp,
            c.other,
        ];
        for (i, value) in carried.into_iter().enumerate() {
            assert_eq!(value, Duration::from_millis(1000 + i as u64), "timeout {i}");
        }
    }
}
