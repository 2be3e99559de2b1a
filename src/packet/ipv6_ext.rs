//! The IPv6 extension-header chain (RFC 8200 §4), walked with the limits of SPEC §A2.
//!
//! Linux accepts extension headers in any order and number; we do not, because a long or
//! repetitive chain is how ports get pushed out of the first fragment or past a middlebox's
//! parse budget. The rules: at most 8 extension headers; hop-by-hop only directly after the
//! IPv6 header; destination options at most twice (before routing, before the upper layer);
//! every other extension header at most once. A Next Header value that is not an extension
//! header ends the chain and is the upper-layer protocol, whether or not we know it. ESP ends
//! the chain too: what follows it is encrypted.

use super::drop::DropReason;
use super::meta::FragmentInfo;

/// Most extension headers a packet may carry before we call the chain hostile.
pub(super) const MAX_EXTENSION_HEADERS: u8 = 8;

/// Size of the IPv6 fragment header, which has no length field.
const FRAGMENT_HEADER_LEN: usize = 8;

/// The extension headers IANA lists that share the (Next Header, length) layout and that we
/// therefore walk through. Discriminants index the once-only bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extension {
    HopByHop,
    Routing,
    Fragment,
    Authentication,
    DestinationOptions,
    Mobility,
    HostIdentity,
    Shim6,
    Experimental253,
    Experimental254,
}

impl Extension {
    fn from_next_header(next_header: u8) -> Option<Extension> {
        Some(match next_header {
            0 => Extension::HopByHop,
            43 => Extension::Routing,
            44 => Extension::Fragment,
            51 => Extension::Authentication,
            60 => Extension::DestinationOptions,
            135 => Extension::Mobility,
            139 => Extension::HostIdentity,
            140 => Extension::Shim6,
            253 => Extension::Experimental253,
            254 => Extension::Experimental254,
            _ => return None,
        })
    }

    /// Length in bytes announced by the second byte of the header. The fragment header has
    /// no length field and is not asked.
    fn announced_len(self, length_field: u8) -> usize {
        let field = usize::from(length_field);
        match self {
            // RFC 4302: AH's length is in 4-byte words, minus 2.
            Extension::Authentication => (field + 2) * 4,
            // RFC 8200: 8-byte units, not counting the first 8 bytes.
            _ => (field + 1) * 8,
        }
    }

    fn once_bit(self) -> u16 {
        1 << self as u16
    }
}

/// Where the chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChainEnd {
    /// The upper-layer protocol (for a non-first fragment: the fragment header's Next Header).
    pub protocol: u8,
    /// Offset of the upper-layer data from the start of the IPv6 payload.
    pub offset: usize,
    /// The fragment header's content, unless absent or atomic.
    pub fragment: Option<FragmentInfo>,
}

/// Counts what the chain has shown so far against the rules of the module documentation.
#[derive(Debug, Default)]
struct ChainRules {
    walked: u8,
    seen_once: u16,
    destination_options: u8,
}

impl ChainRules {
    fn admit(&mut self, extension: Extension) -> Result<(), DropReason> {
        if self.walked == MAX_EXTENSION_HEADERS {
            return Err(DropReason::Ipv6ExtensionChainTooLong);
        }
        if extension == Extension::DestinationOptions {
            if self.destination_options == 2 {
                return Err(DropReason::Ipv6ExtensionRepeated);
            }
            self.destination_options += 1;
        } else {
            if self.seen_once & extension.once_bit() != 0 {
                return Err(DropReason::Ipv6ExtensionRepeated);
            }
            self.seen_once |= extension.once_bit();
        }
        if extension == Extension::HopByHop && self.walked != 0 {
            return Err(DropReason::Ipv6HopByHopNotFirst);
        }
        self.walked += 1;
        Ok(())
    }
}

/// Walks the chain that starts with `next_header` at the start of `payload` (the IPv6 payload,
/// already cut to its payload length).
pub(super) fn walk(next_header: u8, payload: &[u8]) -> Result<ChainEnd, DropReason> {
    let mut rules = ChainRules::default();
    let mut next = next_header;
    let mut offset = 0;
    let mut fragment = None;
    while let Some(extension) = Extension::from_next_header(next) {
        rules.admit(extension)?;
        // Behind a first fragment's header, the rest of the chain must be in this fragment
        // (RFC 7112), so running out of bytes there is a too-short first fragment.
        let truncated = if fragment.is_some() {
            DropReason::FragmentTooShort
        } else {
            DropReason::Ipv6ExtensionTruncated
        };
        let header = payload.get(offset..).unwrap_or_default();
        if extension == Extension::Fragment {
            let fixed: &[u8; FRAGMENT_HEADER_LEN] = header.first_chunk().ok_or(truncated)?;
            fragment = fragment_info(fixed);
            offset += FRAGMENT_HEADER_LEN;
            next = fixed[0];
            if fragment.is_some_and(|f| f.is_non_first()) {
                // What follows is the middle of someone's payload, not headers.
                break;
            }
        } else {
            let &[following, length_field] = header.first_chunk().ok_or(truncated)?;
            let len = extension.announced_len(length_field);
            if header.len() < len {
                return Err(truncated);
            }
            offset += len;
            next = following;
        }
    }
    Ok(ChainEnd {
        protocol: next,
        offset,
        fragment,
    })
}

/// The fragment described by a fragment header, or `None` for an atomic fragment (offset 0,
/// no more fragments), which RFC 6946 says to process as a whole packet.
fn fragment_info(header: &[u8; FRAGMENT_HEADER_LEN]) -> Option<FragmentInfo> {
    let offset_and_flags = u16::from_be_bytes([header[2], header[3]]);
    // The 13-bit offset counts 8-byte units from bit 3 up, so masking the low 3 bits leaves
    // the offset in bytes.
    let offset = offset_and_flags & 0xfff8;
    let more_fragments = offset_and_flags & 1 != 0;
    (offset != 0 || more_fragments).then(|| FragmentInfo {
        id: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
        offset,
        more_fragments,
        protocol: header[0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_frames::{AUTH, DEST_OPTS, FRAGMENT, HOP_BY_HOP, ROUTING, chain};

    const TCP: u8 = 6;

    #[test]
    fn rules_table() {
        use DropReason::*;
        let cases: &[(&[u8], Result<usize, DropReason>)] = &[
            (&[], Ok(0)),
            (
                &[HOP_BY_HOP, DEST_OPTS, ROUTING, FRAGMENT, AUTH, DEST_OPTS],
                Ok(48),
            ),
            (&[DEST_OPTS, DEST_OPTS], Ok(16)),
            (
                &[DEST_OPTS, DEST_OPTS, DEST_OPTS],
                Err(Ipv6ExtensionRepeated),
            ),
            (&[HOP_BY_HOP, HOP_BY_HOP], Err(Ipv6ExtensionRepeated)),
            (&[DEST_OPTS, HOP_BY_HOP], Err(Ipv6HopByHopNotFirst)),
            (&[ROUTING, ROUTING], Err(Ipv6ExtensionRepeated)),
            (&[FRAGMENT, FRAGMENT], Err(Ipv6ExtensionRepeated)),
            (&[AUTH, DEST_OPTS, AUTH], Err(Ipv6ExtensionRepeated)),
            (&[135, 135], Err(Ipv6ExtensionRepeated)),
            (&[0, 60, 43, 44, 51, 60, 139, 140], Ok(64)),
            (
                &[0, 60, 43, 44, 51, 60, 139, 140, 253],
                Err(Ipv6ExtensionChainTooLong),
            ),
        ];
        for (kinds, expected) in cases {
            let (first, bytes) = chain(kinds, TCP, &[]);
            let got = walk(first, &bytes);
            match expected {
                Ok(offset) => {
                    let end = got.unwrap_or_else(|e| panic!("{kinds:?}: {e:?}"));
                    assert_eq!((end.protocol, end.offset), (TCP, *offset), "{kinds:?}");
                    assert_eq!(
                        end.fragment.is_some(),
                        kinds.contains(&FRAGMENT),
                        "{kinds:?}"
                    );
                }
                Err(reason) => assert_eq!(got, Err(*reason), "{kinds:?}"),
            }
        }
    }

    #[test]
    fn header_lengths_follow_each_kind_s_length_unit() {
        // Length field 2: generic headers are (2 + 1) * 8 = 24 bytes, AH (2 + 2) * 4 = 16.
        for (kind, len) in [(HOP_BY_HOP, 24), (DEST_OPTS, 24), (ROUTING, 24), (AUTH, 16)] {
            let mut bytes = vec![TCP, 2];
            bytes.resize(len, 0);
            assert_eq!(walk(kind, &bytes).unwrap().offset, len, "kind {kind}");
            assert_eq!(
                walk(kind, &bytes[..len - 1]),
                Err(DropReason::Ipv6ExtensionTruncated),
                "kind {kind}"
            );
        }
    }

    #[test]
    fn truncation_inside_a_first_fragment_is_a_short_fragment() {
        let (first, bytes) = chain(&[HOP_BY_HOP, FRAGMENT, DEST_OPTS], TCP, &[]);
        for cut in 0..bytes.len() {
            let expected = if cut < 16 {
                DropReason::Ipv6ExtensionTruncated
            } else {
                DropReason::FragmentTooShort
            };
            assert_eq!(walk(first, &bytes[..cut]), Err(expected), "cut at {cut}");
        }
    }

    #[test]
    fn a_non_first_fragment_ends_the_chain_at_the_fragment_header() {
        // Offset 16 bytes; behind it are bytes that would be a repeated fragment header.
        let bytes = [[DEST_OPTS, 0, 0, 16, 0, 0, 0, 9], [FRAGMENT; 8]].concat();
        let end = walk(FRAGMENT, &bytes).unwrap();
        assert_eq!(end.protocol, DEST_OPTS);
        assert_eq!(end.offset, 8);
        let fragment = end.fragment.unwrap();
        assert_eq!(
            (fragment.id, fragment.offset, fragment.protocol),
            (9, 16, DEST_OPTS)
        );
        assert!(!fragment.more_fragments);
        assert!(fragment.is_non_first());
    }

    #[test]
    fn an_atomic_fragment_is_a_whole_packet() {
        let bytes = [TCP, 0, 0, 0, 0, 0, 0, 9];
        let end = walk(FRAGMENT, &bytes).unwrap();
        assert_eq!((end.protocol, end.offset, end.fragment), (TCP, 8, None));
    }

    #[test]
    fn unknown_values_and_esp_end_the_chain_as_upper_layers() {
        for upper in [50, 59, 99, 143, 255] {
            let (first, bytes) = chain(&[HOP_BY_HOP], upper, &[]);
            let end = walk(first, &bytes).unwrap();
            assert_eq!((end.protocol, end.offset), (upper, 8));
        }
    }
}
