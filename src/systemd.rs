//! Readiness and reload notifications to systemd (`Type=notify`, see
//! `config/portcullis.service`), over the datagram socket named by `$NOTIFY_SOCKET`.
//!
//! ```text
//!  first snapshot enforced ─► READY=1
//!  reload starts           ─► RELOADING=1        (the unit shows "reloading")
//!  reload ends             ─► READY=1 + STATUS=… (whatever the result: the old policy runs)
//!  stopping                ─► STOPPING=1
//! ```
//!
//! Without `$NOTIFY_SOCKET` (not started by systemd) every call does nothing. A failed send
//! is not an error for the gateway: it is logged once and forwarding goes on.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where to tell systemd, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    warned: AtomicBool,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`: a path, or `@name` for an abstract socket.
    pub fn from_env() -> Notifier {
        Notifier::to(
            std::env::var_os("NOTIFY_SOCKET")
                .as_deref()
                .and_then(|s| s.to_str()),
        )
    }

    /// To the socket named `name` (as `$NOTIFY_SOCKET` would), or nowhere.
    pub fn to(name: Option<&str>) -> Notifier {
        let target = name.filter(|n| !n.is_empty()).and_then(|name| {
            let addr = match name.strip_prefix('@') {
                Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()),
                None => SocketAddr::from_pathname(name),
            };
            match (UnixDatagram::unbound(), addr) {
                (Ok(socket), Ok(addr)) => Some((socket, addr)),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(socket = name, %error, "cannot notify systemd");
                    None
                }
            }
        });
        Notifier {
            target,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether notifications go anywhere.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Send `state` (newline-separated `KEY=value` assignments).
    pub fn notify(&self, state: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(error) = send(socket, addr, state) {
            // Relaxed: a once-only warning flag, no data published through it.
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, "cannot notify systemd; further failures are not logged");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn reloading(&self) {
        self.notify("RELOADING=1");
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }
}

fn send(socket: &UnixDatagram, addr: &SocketAddr, state: &str) -> io::Result<()> {
    let sent = socket.send_to_addr(state.as_bytes(), addr)?;
    if sent == state.len() {
        Ok(())
    } else {
        Err(io::Error::other("short write"))
    }
}

/// A `STATUS=` value must stay on one line.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let path = std::env::temp_dir().join(format!("portcullis-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::to(path.to_str());
        assert!(notifier.is_active());
        notifier.ready("generation 1\nok");
        assert_eq!(receive(&systemd), "READY=1\nSTATUS=generation 1 ok");
        notifier.reloading();
        assert_eq!(receive(&systemd), "RELOADING=1");
        notifier.stopping();
        assert_eq!(receive(&systemd), "STOPPING=1");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("portcullis-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::to(Some(&format!("@{name}"))).reloading();
        assert_eq!(receive(&systemd), "RELOADING=1");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        for name in [None, Some("")] {
            let notifier = Notifier::to(name);
            assert!(!notifier.is_active());
            notifier.ready("x");
        }
        // A socket nobody listens on: the send fails, quietly after one warning.
        let gone = Notifier::to(Some("/nonexistent/portcullis/notify"));
        gone.ready("x");
        gone.ready("y");
        assert!(gone.warned.load(Ordering::Relaxed));
    }
}
