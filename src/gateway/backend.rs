//! Which backend moves the frames, and opening it for every worker.
//!
//! [`PortPair`] is generic over its `decide` closure, so it cannot be a trait object: the
//! worker loop is generic instead, and the choice of backend is made once, here, by a `match`
//! whose arms each name one backend's `open`. Adding a backend is adding an arm.
//!
//! Every worker's pair is opened before any worker starts, so that a port that cannot be
//! opened stops the gateway before it forwards anything, and so that the default choice can
//! fall back from AF_XDP to AF_PACKET as a whole (never one worker on each).

use std::io;

use super::log::warning;
use crate::dataplane::{BackendConfig, BackendError, PortPair, afpacket, afxdp};

/// The `--backend` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// AF_XDP sockets (zero-copy where the driver allows).
    Afxdp,
    /// AF_PACKET sockets: works on any kernel and NIC, one copy per frame.
    Afpacket,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Afxdp => "afxdp",
            BackendKind::Afpacket => "afpacket",
        }
    }
}

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// `--backend` was given: that backend or nothing.
    Explicit(BackendKind),
    /// No `--backend`: AF_XDP (SPEC's default), or AF_PACKET with a warning saying why.
    Default,
}

/// Something that can run one worker loop over any backend: the generic half of the dispatch.
pub trait WithPairs {
    type Output;
    fn run<P: PortPair + 'static>(self, kind: BackendKind, pairs: Vec<P>) -> Self::Output;
}

/// Opens every worker's ports with the chosen backend and hands them to `with`.
pub fn open_and_run<W: WithPairs>(
    choice: BackendChoice,
    config: &BackendConfig,
    with: W,
) -> Result<W::Output, BackendError> {
    let kind = match choice {
        BackendChoice::Explicit(kind) => kind,
        BackendChoice::Default => BackendKind::Afxdp,
    };
    match open_kind(kind, config, with) {
        Ok(output) => Ok(output),
        Err((error, with)) if fallback_allowed(choice, &error) => {
            warning!(
                "AF_XDP is not available ({error}); falling back to the afpacket backend \
                 (choose it with --backend afpacket to silence this)"
            );
            open_kind(BackendKind::Afpacket, config, with).map_err(|(error, _)| error)
        }
        Err((error, _)) => Err(error),
    }
}

/// The dispatch: one arm per backend. On failure `with` comes back, unused, for a fallback.
fn open_kind<W: WithPairs>(
    kind: BackendKind,
    config: &BackendConfig,
    with: W,
) -> Result<W::Output, (BackendError, W)> {
    match kind {
        BackendKind::Afpacket => start(kind, config, with, afpacket::open),
        BackendKind::Afxdp => start(kind, config, with, afxdp::open),
    }
}

/// Whether AF_PACKET may be tried after AF_XDP failed with `error`: only when the operator
/// did not ask for AF_XDP, and not for a missing interface, which AF_PACKET would not find
/// either (better to say so once).
fn fallback_allowed(choice: BackendChoice, error: &BackendError) -> bool {
    choice == BackendChoice::Default && !matches!(error, BackendError::NoSuchInterface { .. })
}

/// Opens worker 0, 1, ... in order, then runs them. On a failure the pairs already open are
/// closed (dropped) before the error is returned, so nothing stays attached to the ports.
fn start<W: WithPairs, P: PortPair + 'static>(
    kind: BackendKind,
    config: &BackendConfig,
    with: W,
    open: impl Fn(&BackendConfig, usize) -> Result<P, BackendError>,
) -> Result<W::Output, (BackendError, W)> {
    let pairs: Result<Vec<P>, BackendError> = (0..config.workers)
        .map(|worker| open(config, worker))
        .collect();
    match pairs {
        Ok(pairs) => Ok(with.run(kind, pairs)),
        Err(error) => Err((error, with)),
    }
}

/// What to tell an operator whose ports could not be opened: the backend's error, and what
/// to do about it when the cause is a common one.
pub fn explain_backend_error(error: &BackendError) -> String {
    let hint = match error {
        BackendError::NoSuchInterface { .. } => Some(
            "check --outside/--inside (`ip link` lists the interfaces), and run portcullis in \
             the network namespace that holds the ports (e.g. `ip netns exec NS portcullis run ...`)",
        ),
        BackendError::Io { source, .. } => match source.kind() {
            io::ErrorKind::PermissionDenied => Some(
                "opening packet sockets needs CAP_NET_RAW and CAP_NET_ADMIN: run as root or grant \
                 the capabilities (setcap cap_net_raw,cap_net_admin+ep)",
            ),
            _ if source.raw_os_error() == Some(libc::ENETDOWN) => {
                Some("the interface is down: `ip link set IF up`")
            }
            _ => None,
        },
        BackendError::Unsupported { .. } => None,
    };
    match hint {
        Some(hint) => format!("{error} ({hint})"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_failures_come_with_what_to_do() {
        let missing = BackendError::NoSuchInterface {
            interface: "eth9".to_string(),
        };
        let denied = BackendError::Io {
            interface: "eth0".to_string(),
            queue: 0,
            operation: "open an AF_PACKET socket",
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let text = explain_backend_error(&missing);
        assert!(
            text.starts_with("eth9: no such network interface"),
            "{text}"
        );
        assert!(text.contains("ip netns exec"), "{text}");
        let text = explain_backend_error(&denied);
        assert!(
            text.contains("eth0") && text.contains("CAP_NET_RAW"),
            "{text}"
        );
    }

    #[test]
    fn only_the_default_choice_falls_back() {
        let unsupported = || BackendError::Unsupported {
            interface: "eth0".to_string(),
            message: "no AF_XDP support in this kernel".to_string(),
        };
        let missing = || BackendError::NoSuchInterface {
            interface: "eth9".to_string(),
        };
        let explicit = BackendChoice::Explicit(BackendKind::Afxdp);
        let cases = [
            (BackendChoice::Default, unsupported(), true),
            (BackendChoice::Default, missing(), false),
            (explicit, unsupported(), false),
            (explicit, missing(), false),
        ];
        for (choice, error, expected) in cases {
            assert_eq!(
                fallback_allowed(choice, &error),
                expected,
                "{choice:?} {error}"
            );
        }
    }
}
