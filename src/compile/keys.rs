//! How the fields of a flow become keys of the classifier's lookup tables. Shared by the
//! compiler, which turns rule criteria into sets of keys, and the hot path, which turns a
//! packet's fields into keys, so that the two cannot drift apart.
//!
//! - Addresses: IPv4 as `u32`, IPv6 as `u128`, in network order.
//! - Ports: `0` when the flow has no port on that side, else `port + 1`. A port criterion
//!   never matches a flow without the port, so "no port" needs its own key.
//! - Protocol and destination port together ("service key"): `protocol << 17 | port key`.
//!   Rules name the two together (`protocol: TCP` with `ports: [443]`), so one field that
//!   holds both is far more selective than two that each hold half: an ICMP rule no longer
//!   passes the port field of every TCP flow. The product of a rule's protocols and ports
//!   stays small because port criteria need a protocol (named ports aside).
//! - For ICMP and ICMPv6, when the snapshot folds ICMP into the service field ("ICMP in
//!   service"), the service key is the flow's L4 key below instead: ICMP has no ports, so
//!   the port half of the key says nothing there, and the type and code in its place let
//!   the service field hold `icmp`/`notICMP` too, one probe fewer per side for ICMP flows.
//! - ICMP type and code ("L4 key"): `protocol << 17 | sub`, where `sub` is `0` for every
//!   protocol other than ICMP (1) and ICMPv6 (58) and, for those two, `0` when the flow
//!   carries no ICMP type, else `1 + type * 257 + c` with `c = 0` for no code and `code + 1`
//!   otherwise. The protocol number is part of the key because `icmp`/`notICMP` look at ICMP
//!   and ICMPv6 flows of either family alike.

/// IP protocol numbers the classifier treats specially.
pub(crate) const ICMP: u8 = 1;
pub(crate) const ICMPV6: u8 = 58;
pub(crate) const TCP: u8 = 6;
pub(crate) const UDP: u8 = 17;

const L4_SHIFT: u32 = 17;
/// Largest L4 key, and largest service key.
pub(crate) const L4_MAX: u32 = (256 << L4_SHIFT) - 1;
/// Largest ICMP sub-key (type 255, code 255).
pub(crate) const ICMP_SUB_MAX: u32 = 256 * 257;
/// Largest port key (port 65535).
pub(crate) const PORT_MAX: u32 = 65536;

pub(crate) fn is_icmp(protocol: u8) -> bool {
    protocol == ICMP || protocol == ICMPV6
}

/// The L4 key of a flow.
#[inline]
pub(crate) fn l4_key(protocol: u8, icmp_type: Option<u8>, icmp_code: Option<u8>) -> u32 {
    let sub = match icmp_type {
        Some(t) if is_icmp(protocol) => icmp_sub(t, icmp_code),
        _ => 0,
    };
    protocol_base(protocol) | sub
}

/// The protocol of an L4 key whose ICMP part is empty: every non-ICMP flow, and ICMP flows
/// without a type.
#[inline]
pub(crate) fn bare_protocol(key: u32) -> Option<usize> {
    (key & ((1 << L4_SHIFT) - 1) == 0).then_some((key >> L4_SHIFT) as usize)
}

/// The first L4 key of a protocol; its keys are `base ..= base + ICMP_SUB_MAX`.
#[inline]
pub(crate) fn protocol_base(protocol: u8) -> u32 {
    u32::from(protocol) << L4_SHIFT
}

/// Last L4 key of a protocol's block.
pub(crate) fn protocol_last(protocol: u8) -> u32 {
    protocol_base(protocol) | ((1 << L4_SHIFT) - 1)
}

/// The ICMP sub-key of a type and optional code.
#[inline]
pub(crate) fn icmp_sub(icmp_type: u8, icmp_code: Option<u8>) -> u32 {
    1 + u32::from(icmp_type) * 257 + icmp_code.map_or(0, |c| u32::from(c) + 1)
}

/// The service key of a flow.
#[inline]
pub(crate) fn service_key(protocol: u8, dst_port: Option<u16>) -> u32 {
    protocol_base(protocol) | port_key(dst_port)
}

/// The service key of a flow as the snapshot's service field reads it: with
/// `icmp_in_service`, the L4 key for ICMP and ICMPv6 flows (see the module documentation).
#[inline]
pub(crate) fn flow_service_key(
    icmp_in_service: bool,
    protocol: u8,
    dst_port: Option<u16>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
) -> u32 {
    if icmp_in_service && is_icmp(protocol) {
        l4_key(protocol, icmp_type, icmp_code)
    } else {
        service_key(protocol, dst_port)
    }
}

/// The key of a port, or of its absence.
#[inline]
pub(crate) fn port_key(port: Option<u16>) -> u32 {
    port.map_or(0, |p| u32::from(p) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_collide_and_stay_in_range() {
        // Every ICMP type/code combination of both ICMP protocols, plus a port protocol.
        let mut seen = std::collections::HashSet::new();
        for protocol in [ICMP, ICMPV6, 6] {
            let types = std::iter::once(None).chain((0..=255u8).map(Some));
            for t in types {
                let codes = std::iter::once(None).chain((0..=255u8).map(Some));
                for c in codes {
                    let key = l4_key(protocol, t, c);
                    assert!(key >= protocol_base(protocol) && key <= protocol_last(protocol));
                    assert!(key <= L4_MAX);
                    // Non-ICMP protocols ignore ICMP fields, and a code without a type
                    // counts for nothing: one key for each of those groups.
                    let distinct = if is_icmp(protocol) {
                        t.is_some() || c.is_none()
                    } else {
                        t.is_none() && c.is_none()
                    };
                    if distinct {
                        assert!(seen.insert(key), "{protocol} {t:?} {c:?}");
                    }
                }
            }
        }
        assert_eq!(l4_key(6, Some(3), Some(1)), protocol_base(6));
        // A code without a type is as good as no ICMP fields.
        assert_eq!(l4_key(ICMP, None, Some(4)), protocol_base(ICMP));
        assert_eq!(icmp_sub(255, Some(255)), ICMP_SUB_MAX);
        assert_eq!(port_key(None), 0);
        assert_eq!(service_key(6, Some(80)), protocol_base(6) + 81);
        assert!(service_key(255, Some(65535)) <= L4_MAX);
        assert!(service_key(6, Some(65535)) < protocol_base(7));
        assert_eq!(port_key(Some(65535)), PORT_MAX);
    }

    #[test]
    fn the_folded_service_key_of_icmp_flows_is_their_l4_key() {
        let cases = [
            (ICMP, Some(7), Some(8), Some(0)),
            (ICMPV6, None, Some(128), None),
            (ICMP, None, None, Some(3)),
        ];
        for (protocol, port, t, c) in cases {
            assert_eq!(
                flow_service_key(true, protocol, port, t, c),
                l4_key(protocol, t, c)
            );
            assert_eq!(
                flow_service_key(false, protocol, port, t, c),
                service_key(protocol, port)
            );
        }
        // Other protocols keep their port, folded or not.
        for fold in [false, true] {
            let key = flow_service_key(fold, TCP, Some(443), Some(8), Some(0));
            assert_eq!(key, service_key(TCP, Some(443)));
        }
    }
}
