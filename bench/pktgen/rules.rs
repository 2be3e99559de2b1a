//! One description of the benchmark policy, written out three ways: a Calico directory for
//! portcullis, and nftables rulesets for the kernel (bridge family: linear rules and one set
//! lookup; inet family: routing with conntrack and the set).
//!
//! The policy allows UDP to the sink from `count` (source, destination port) pairs. The first
//! `count - 1` are decoys that the generator's traffic never matches (sources in
//! 198.51.100.0/24, ports from [`DECOY_PORT_FIRST`] on); the last allows the generator's
//! sources, 192.0.2.0/24, to the measured port. So a linear ruleset tests every rule before
//! it accepts a packet, which is the cost a kernel firewall pays for a long policy whose
//! busy rule is not first.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Most rules one policy may hold in portcullis (its per-policy limit).
pub const MAX_RULES: usize = 10_000;
const DECOY_PORT_FIRST: u16 = 20_000;

/// One allow rule: UDP from `source/prefix` to the sink's `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub source: Ipv4Addr,
    pub prefix: u8,
    pub port: u16,
}

impl Rule {
    fn source_cidr(&self) -> String {
        format!("{}/{}", self.source, self.prefix)
    }

    /// nft writes a host as a bare address.
    fn nft_source(&self) -> String {
        if self.prefix == 32 {
            self.source.to_string()
        } else {
            self.source_cidr()
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0} rules is not within 1..={MAX_RULES}")]
pub struct RuleCountError(usize);

/// The `count` rules, the one the traffic matches last.
pub fn rules(count: usize, port: u16) -> Result<Vec<Rule>, RuleCountError> {
    if !(1..=MAX_RULES).contains(&count) {
        return Err(RuleCountError(count));
    }
    let mut rules: Vec<Rule> = (0..count - 1)
        .map(|i| Rule {
            source: Ipv4Addr::new(198, 51, 100, 1 + (i % 254) as u8),
            prefix: 32,
            // `count` ≤ MAX_RULES keeps this below 65535.
            port: DECOY_PORT_FIRST + i as u16,
        })
        .collect();
    rules.push(Rule {
        source: Ipv4Addr::new(192, 0, 2, 0),
        prefix: 24,
        port,
    });
    Ok(rules)
}

/// A HostEndpoint for the sink and one GlobalNetworkPolicy holding every rule, in order.
pub fn calico_yaml(rules: &[Rule], sink: Ipv4Addr) -> String {
    let mut yaml = format!(
        "# The forwarding benchmark's policy: {} rules, the last one matching the traffic.\n\
         apiVersion: projectcalico.org/v3\n\
         kind: HostEndpoint\n\
         metadata:\n  name: bench-sink\n  labels:\n    role: bench-sink\n\
         spec:\n  node: bench\n  expectedIPs: [\"{sink}\"]\n\
         ---\n\
         apiVersion: projectcalico.org/v3\n\
         kind: GlobalNetworkPolicy\n\
         metadata:\n  name: bench-allow\n\
         spec:\n  selector: role == 'bench-sink'\n  types: [Ingress]\n  ingress:\n",
        rules.len()
    );
    for rule in rules {
        // Writing to a String cannot fail.
        let _ = writeln!(
            yaml,
            "  - action: Allow\n    protocol: UDP\n    source:\n      nets: [\"{}\"]\n    \
             destination:\n      ports: [{}]",
            rule.source_cidr(),
            rule.port
        );
    }
    yaml
}

fn nft_set(rules: &[Rule]) -> String {
    let mut set = String::from(
        "  set allow {\n    type ipv4_addr . inet_service\n    flags interval\n    elements = {\n",
    );
    for (i, rule) in rules.iter().enumerate() {
        let separator = if i + 1 == rules.len() { "" } else { "," };
        let _ = writeln!(
            set,
            "      {} . {}{separator}",
            rule.nft_source(),
            rule.port
        );
    }
    set.push_str("    }\n  }\n");
    set
}

/// Table `bridge pcbench`: the set, a chain of linear rules and a chain doing one set lookup.
/// Neither is hooked: the benchmark adds a `forward` base chain that jumps to one of them, and
/// deletes it for the unfiltered bridge, which then pays for no hook at all. Loading the file
/// replaces any earlier version of the table.
pub fn nft_bridge(rules: &[Rule]) -> String {
    let mut text =
        String::from("table bridge pcbench\ndelete table bridge pcbench\ntable bridge pcbench {\n");
    text.push_str(&nft_set(rules));
    text.push_str("  chain linear {\n");
    for rule in rules {
        let _ = writeln!(
            text,
            "    ip saddr {} udp dport {} accept",
            rule.nft_source(),
            rule.port
        );
    }
    text.push_str("    drop\n  }\n");
    text.push_str("  chain viaset {\n    ip saddr . udp dport @allow accept\n    drop\n  }\n}\n");
    text
}

/// Table `inet pcbench`: the kernel's best stateful set-up for routed traffic, established and
/// related first, then one set lookup, anything else dropped.
pub fn nft_inet(rules: &[Rule]) -> String {
    let mut text =
        String::from("table inet pcbench\ndelete table inet pcbench\ntable inet pcbench {\n");
    text.push_str(&nft_set(rules));
    text.push_str(
        "  chain forward {\n    type filter hook forward priority 0; policy drop;\n    \
         ct state established,related accept\n    ip saddr . udp dport @allow accept\n  }\n}\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::flow_source;

    #[test]
    fn only_the_last_rule_matches_the_generated_flows() {
        let rules = rules(1000, 5201).unwrap();
        assert_eq!(rules.len(), 1000);
        for flow in [0, 1, 63, 64, 9_999] {
            let (source, _) = flow_source(flow);
            let matching: Vec<usize> = rules
                .iter()
                .enumerate()
                .filter(|(_, rule)| {
                    let mask = u32::MAX << (32 - rule.prefix);
                    u32::from(source) & mask == u32::from(rule.source) && rule.port == 5201
                })
                .map(|(i, _)| i)
                .collect();
            assert_eq!(matching, [999], "flow {flow}");
        }
    }

    #[test]
    fn rule_counts_outside_the_limit_are_refused() {
        assert_eq!(rules(0, 5201), Err(RuleCountError(0)));
        assert_eq!(
            rules(MAX_RULES + 1, 5201),
            Err(RuleCountError(MAX_RULES + 1))
        );
        let most = rules(MAX_RULES, 5201).unwrap();
        assert!(
            most.iter()
                .all(|rule| rule.port != 5201 || rule.prefix == 24)
        );
    }

    #[test]
    fn every_rendering_holds_every_rule() {
        let rules = rules(10, 5201).unwrap();
        let yaml = calico_yaml(&rules, Ipv4Addr::new(203, 0, 113, 10));
        let bridge = nft_bridge(&rules);
        let inet = nft_inet(&rules);
        assert_eq!(yaml.matches("action: Allow").count(), 10);
        assert!(yaml.contains("nets: [\"192.0.2.0/24\"]\n    destination:\n      ports: [5201]"));
        assert_eq!(
            bridge.matches(" accept\n").count(),
            10 + 1,
            "linear rules and the set rule"
        );
        assert!(bridge.contains("ip saddr 198.51.100.1 udp dport 20000 accept"));
        assert!(bridge.contains("192.0.2.0/24 . 5201\n"));
        assert!(inet.contains("ct state established,related accept\n    ip saddr . udp dport"));
        assert_eq!(inet.matches(" . 2").count(), 9);
    }

    #[test]
    fn the_calico_directory_is_valid() {
        let rules = rules(50, 5201).unwrap();
        let dir = std::env::temp_dir().join(format!("pcbench-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("policy.yaml"),
            calico_yaml(&rules, Ipv4Addr::new(203, 0, 113, 10)),
        )
        .unwrap();
        let loaded = portcullis::model::load_model(&dir, &portcullis::model::Limits::default());
        std::fs::remove_dir_all(&dir).unwrap();
        let model = loaded.unwrap_or_else(|problems| panic!("{problems:?}"));
        assert_eq!(model.resources.len(), 2);
    }
}
