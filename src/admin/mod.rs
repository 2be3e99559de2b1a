//! The admin HTTP listener (SPEC §A6): `/metrics`, `/liveness`, `/readiness`, `/status`.
//!
//! ```text
//!  gateway ──implements──► AdminSource ◄── scrape()/readiness() per request
//!                               │
//!  HttpServer (thread "admin") ─┴─► route ─► metrics::render   (Prometheus text 0.0.4)
//!                                         ─► Status::to_json   (/status)
//!                                         ─► Readiness          (/readiness: 200 or 503)
//!  `portcullis status` ──GET /status──► Status::summary
//! ```
//!
//! A control thread, never a worker: a scrape reads the workers' counters (relaxed loads)
//! and sums them; it takes no lock a worker takes per packet.

pub mod http;
pub mod metrics;
pub mod state;
pub mod status;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use http::{HttpServer, Method, Request, Response};
pub use state::{
    AdminSource, GatewayInfo, Readiness, ReloadAttempt, ReloadLog, ReloadRecord, RuleSample, Scrape,
};
pub use status::Status;

use crate::model::Settings;

/// Where the admin listener listens, or that it is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    Off,
    At(SocketAddr),
}

/// The default of `--admin-listen` and of `portcullis status --admin`.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9091";

impl FromStr for AdminListen {
    type Err = String;

    /// `off` (also `none`, `disabled`), or `HOST:PORT` with an IP address or a host name
    /// (`[::1]:9091` for IPv6).
    fn from_str(text: &str) -> Result<AdminListen, String> {
        let text = text.trim();
        if ["off", "none", "disabled"]
            .iter()
            .any(|w| text.eq_ignore_ascii_case(w))
        {
            return Ok(AdminListen::Off);
        }
        resolve(text).map(AdminListen::At)
    }
}

impl fmt::Display for AdminListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminListen::Off => f.write_str("off"),
            AdminListen::At(addr) => write!(f, "{addr}"),
        }
    }
}

/// `HOST:PORT` as one socket address (the first a host name resolves to).
fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let invalid = |why: String| {
        format!(
            "{text:?} is not a listen address ({why}): use HOST:PORT such as 127.0.0.1:9091, or off"
        )
    };
    if !text.contains(':') {
        return Err(invalid("no port".to_owned()));
    }
    text.to_socket_addrs()
        .map_err(|e| invalid(e.to_string()))?
        .next()
        .ok_or_else(|| invalid("the name resolves to no address".to_owned()))
}

impl AdminListen {
    /// Where the settings put the listener: off when both metrics and health are disabled,
    /// else the metrics host and port (the one listener serves health too).
    pub fn from_settings(settings: &Settings) -> Result<AdminListen, String> {
        if !settings.metrics_enabled && !settings.health_enabled {
            return Ok(AdminListen::Off);
        }
        let (host, port) = if settings.metrics_enabled {
            (&settings.metrics_host, settings.metrics_port)
        } else {
            (&settings.health_host, settings.health_port)
        };
        let text = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port).to_string(),
            Err(_) => format!("{host}:{port}"),
        };
        resolve(&text).map(AdminListen::At)
    }
}

/// Why the listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin listener: cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("admin listener: cannot start its thread: {0}")]
    Thread(io::Error),
}

/// The running listener; stops when dropped.
#[derive(Debug)]
pub struct AdminServer {
    http: HttpServer,
}

impl AdminServer {
    pub fn spawn(
        addr: SocketAddr,
        source: Arc<dyn AdminSource>,
    ) -> Result<AdminServer, AdminError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| AdminError::Bind { addr, source })?;
        let handler: Arc<http::Handler> =
            Arc::new(move |request: &Request| route(&*source, request));
        let http = HttpServer::spawn(listener, handler).map_err(AdminError::Thread)?;
        Ok(AdminServer { http })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    pub fn stop(self) {
        self.http.stop();
    }
}

const INDEX: &str = "portcullis admin: /metrics /liveness /readiness /status\n";

/// The answer to one request.
pub fn route(source: &dyn AdminSource, request: &Request) -> Response {
    let known = matches!(
        request.path.as_str(),
        "/" | "/metrics" | "/liveness" | "/readiness" | "/status"
    );
    if !known {
        return Response::not_found();
    }
    if let Method::Other(_) = request.method {
        return Response::method_not_allowed();
    }
    match request.path.as_str() {
        "/metrics" => Response::new(
            200,
            metrics::CONTENT_TYPE,
            metrics::render(&source.scrape()),
        ),
        "/liveness" => Response::text(200, "ok\n"),
        "/readiness" => {
            let readiness = source.readiness();
            let status = if readiness.is_ready() { 200 } else { 503 };
            Response::text(status, format!("{}\n", readiness.reason()))
        }
        "/status" => {
            let status = Status::from_scrape(&source.scrape(), SystemTime::now());
            Response::new(200, http::JSON, status.to_json() + "\n")
        }
        _ => Response::text(200, INDEX),
    }
}

/// Why `portcullis status` got no status.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(
        "nothing answers at {addr} ({source}); is `portcullis run` running with its admin \
         listener there? (see --admin-listen)"
    )]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("{addr}: {message}")]
    Exchange { addr: SocketAddr, message: String },
}

/// Largest `/status` answer read.
const MAX_STATUS_BYTES: u64 = 16 * 1024 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /status` from a running gateway.
pub fn fetch_status(addr: SocketAddr) -> Result<Status, StatusError> {
    let exchange = |message: String| StatusError::Exchange { addr, message };
    let mut stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)
        .map_err(|source| StatusError::Connect { addr, source })?;
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    stream
        .write_all(
            format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .map_err(|e| exchange(format!("cannot send the request: {e}")))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_STATUS_BYTES)
        .read_to_end(&mut answer)
        .map_err(|e| exchange(format!("cannot read the answer: {e}")))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| exchange("the answer is not HTTP".to_owned()))?;
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split(' ').nth(1) != Some("200") {
        return Err(exchange(format!("answered {status_line:?}")));
    }
    serde_json::from_str(body)
        .map_err(|e| exchange(format!("the answer is not a portcullis status: {e}")))
}

#[cfg(test)]
mod tests;
