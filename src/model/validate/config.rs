//! FelixConfiguration and GatewayConfiguration. Their values are checked by overlaying them
//! on scratch settings, so that validation and [`Settings`] parse each value the same way.

use super::{Check, names};
use crate::model::Settings;
use crate::model::resources::{FelixConfigurationSpec, GatewayConfigurationSpec};
use crate::model::settings::DEFAULT_CONFIGURATION_NAME;

/// Fields of Calico's FelixConfiguration that portcullis does not use. They are accepted so
/// that a real deployment's configuration loads; anything else is a typo. Sorted, for binary
/// search. (The fields portcullis reads are modelled in `FelixConfigurationSpec`.)
const CALICO_FELIX_FIELDS: &[&str] = &[
    "allowIPIPPacketsFromWorkloads",
    "allowVXLANPacketsFromWorkloads",
    "awsSrcDstCheck",
    "bpfCTLBLogFilter",
    "bpfConnectTimeLoadBalancing",
    "bpfConnectTimeLoadBalancingEnabled",
    "bpfDSROptoutCIDRs",
    "bpfDataIfacePattern",
    "bpfDisableGROForIfaces",
    "bpfDisableUnprivileged",
    "bpfEnabled",
    "bpfEnforceRPF",
    "bpfExcludeCIDRsFromNAT",
    "bpfExtToServiceConnmark",
    "bpfExternalServiceMode",
    "bpfForceTrackPacketsFromIfaces",
    "bpfHostConntrackBypass",
    "bpfHostNetworkedNATWithoutCTLB",
    "bpfKubeProxyEndpointSlicesEnabled",
    "bpfKubeProxyIptablesCleanupEnabled",
    "bpfKubeProxyMinSyncPeriod",
    "bpfL3IfacePattern",
    "bpfLogFilters",
    "bpfLogLevel",
    "bpfMapSizeConntrack",
    "bpfMapSizeIPSets",
    "bpfMapSizeIfState",
    "bpfMapSizeNATAffinity",
    "bpfMapSizeNATBackend",
    "bpfMapSizeNATFrontend",
    "bpfMapSizeRoute",
    "bpfPSNATPorts",
    "bpfPolicyDebugEnabled",
    "bpfProfiling",
    "bpfRedirectToPeer",
    "chainInsertMode",
    "dataplaneDriver",
    "dataplaneWatchdogTimeout",
    "debugDisableLogDropping",
    "debugHost",
    "debugMemoryProfilePath",
    "debugPort",
    "debugSimulateCalcGraphHangAfter",
    "debugSimulateDataplaneApplyDelay",
    "debugSimulateDataplaneHangAfter",
    "defaultEndpointToHostAction",
    "deviceRouteProtocol",
    "deviceRouteSourceAddress",
    "deviceRouteSourceAddressIPv6",
    "disableConntrackInvalidCheck",
    "endpointReportingDelay",
    "endpointReportingEnabled",
    "endpointStatusPathPrefix",
    "externalNodesList",
    "featureDetectOverride",
    "featureGates",
    "floatingIPs",
    "genericXDPEnabled",
    "goGCThreshold",
    "goMaxProcs",
    "goMemoryLimitMB",
    "healthTimeoutOverrides",
    "interfaceExclude",
    "interfacePrefix",
    "interfaceRefreshInterval",
    "ipForwarding",
    "ipipEnabled",
    "ipipMTU",
    "ipsetsRefreshInterval",
    "iptablesBackend",
    "iptablesFilterAllowAction",
    "iptablesFilterDenyAction",
    "iptablesLockFilePath",
    "iptablesLockProbeInterval",
    "iptablesLockTimeout",
    "iptablesMangleAllowAction",
    "iptablesMarkMask",
    "iptablesNATOutgoingInterfaceFilter",
    "iptablesPostWriteCheckInterval",
    "iptablesRefreshInterval",
    "ipv6Support",
    "kubeNodePortRanges",
    "logDebugFilenameRegex",
    "logFilePath",
    "logPrefix",
    "logSeverityFile",
    "logSeveritySys",
    "maxIpsetSize",
    "metadataAddr",
    "metadataPort",
    "mtuIfacePattern",
    "natOutgoingAddress",
    "natPortRange",
    "netlinkTimeout",
    "nftablesFilterAllowAction",
    "nftablesFilterDenyAction",
    "nftablesMangleAllowAction",
    "nftablesMarkMask",
    "nftablesMode",
    "nftablesRefreshInterval",
    "openstackRegion",
    "policySyncPathPrefix",
    "prometheusGoMetricsEnabled",
    "prometheusProcessMetricsEnabled",
    "prometheusWireGuardMetricsEnabled",
    "removeExternalRoutes",
    "reportingInterval",
    "reportingTTL",
    "routeRefreshInterval",
    "routeSource",
    "routeSyncDisabled",
    "routeTableRange",
    "routeTableRanges",
    "serviceLoopPrevention",
    "sidecarAccelerationEnabled",
    "usageReportingEnabled",
    "usageReportingInitialDelay",
    "usageReportingInterval",
    "useInternalDataplaneDriver",
    "vxlanEnabled",
    "vxlanMTU",
    "vxlanMTUV6",
    "vxlanPort",
    "vxlanVNI",
    "windowsManageFirewallRules",
    "wireguardEnabled",
    "wireguardEnabledV6",
    "wireguardHostEncryptionEnabled",
    "wireguardInterfaceName",
    "wireguardInterfaceNameV6",
    "wireguardKeepAlive",
    "wireguardListeningPort",
    "wireguardListeningPortV6",
    "wireguardMTU",
    "wireguardMTUV6",
    "wireguardRoutingRulePriority",
    "wireguardThreadingEnabled",
    "workloadSourceSpoofing",
    "xdpEnabled",
    "xdpRefreshInterval",
];

/// FelixConfiguration fields that portcullis reads (suggested for typos too).
const MODELLED_FELIX_FIELDS: &[&str] = &[
    "failsafeInboundHostPorts",
    "failsafeOutboundHostPorts",
    "healthEnabled",
    "healthHost",
    "healthPort",
    "logSeverityScreen",
    "prometheusMetricsEnabled",
    "prometheusMetricsHost",
    "prometheusMetricsPort",
];

pub(super) fn check_felix_configuration(check: &mut Check, spec: &FelixConfigurationSpec) {
    check_only_default_is_read(check, "FelixConfiguration");
    for field in spec.other.keys() {
        if CALICO_FELIX_FIELDS.binary_search(&field.as_str()).is_err() {
            let known: Vec<&str> = CALICO_FELIX_FIELDS
                .iter()
                .chain(MODELLED_FELIX_FIELDS)
                .copied()
                .collect();
            let hint = match names::closest(field, &known) {
                Some(near) => format!(": did you mean {near}?"),
                None => String::new(),
            };
            check.report(
                &format!("spec.{field}"),
                format!("unknown field {field:?}: not a FelixConfiguration field{hint}"),
            );
        }
    }
    let resource = check.resource;
    Settings::default().overlay_felix(resource, spec, check.problems);
}

pub(super) fn check_gateway_configuration(check: &mut Check, spec: &GatewayConfigurationSpec) {
    check_only_default_is_read(check, "GatewayConfiguration");
    let resource = check.resource;
    Settings::default().overlay_gateway(resource, spec, check.problems);
}

/// A configuration under another name would be silently ignored, so it is refused.
fn check_only_default_is_read(check: &mut Check, kind: &str) {
    let name = check.resource.name();
    if !name.is_empty() && name != DEFAULT_CONFIGURATION_NAME {
        check.report(
            "metadata.name",
            format!(
                "only the {kind} named \"{DEFAULT_CONFIGURATION_NAME}\" is read, so {name:?} \
                 would have no effect: rename it to {DEFAULT_CONFIGURATION_NAME} or remove it"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn felix_field_list_is_sorted_unique_and_disjoint_from_modelled_fields() {
        assert!(CALICO_FELIX_FIELDS.windows(2).all(|w| w[0] < w[1]));
        for field in MODELLED_FELIX_FIELDS {
            assert!(CALICO_FELIX_FIELDS.binary_search(field).is_err(), "{field}");
        }
        assert!(CALICO_FELIX_FIELDS.len() >= 60);
    }
}
