//! A small HTTP/1.1 server for the admin endpoints, on `std::net::TcpListener`.
//!
//! ```text
//!  accept loop (thread "admin") ──► one thread per connection (at most MAX_CONNECTIONS)
//!                                    read the head (≤ MAX_HEAD_BYTES, ≤ READ_TIMEOUT)
//!                                    parse_head ──► handler(&Request) ──► write, close
//! ```
//!
//! One request per connection (`Connection: close`), no request bodies, GET and HEAD only.
//! Anything else gets a 4xx/5xx answer and the connection is closed; junk never panics and
//! never holds a thread for longer than the read timeout. The admin endpoints are scraped a
//! few times a minute, so simplicity beats throughput here.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest request head read; a longer one is refused.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are answered 503 straight away.
pub const MAX_CONNECTIONS: usize = 8;

/// The parts of a request the admin endpoints look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path without the query string.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other token: answered 405.
    Other(String),
}

/// Why a request head was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// More than [`MAX_HEAD_BYTES`] without the end of the head.
    TooLarge,
    /// Not an HTTP/1.x request line, or bad bytes.
    Malformed(&'static str),
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// `Allow` header, for 405 answers.
    pub allow: Option<&'static str>,
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            allow: None,
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, TEXT, body.into())
    }

    pub fn not_found() -> Response {
        Response::text(404, "not found\n")
    }

    pub fn method_not_allowed() -> Response {
        Response {
            allow: Some("GET, HEAD"),
            ..Response::text(405, "method not allowed\n")
        }
    }

    fn error(e: &HeadError) -> Response {
        match e {
            HeadError::TooLarge => Response::text(431, "request head too large\n"),
            HeadError::Malformed(why) => Response::text(400, format!("bad request: {why}\n")),
        }
    }

    /// The bytes on the wire; without the body for HEAD.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
             Cache-Control: no-store\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            out.push_str("Allow: ");
            out.push_str(allow);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Where the head ends (the index after the blank line), if it has ended.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parse a request head; `Ok(None)` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, HeadError> {
    let Some(end) = head_end(buf) else {
        return if buf.len() >= MAX_HEAD_BYTES {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let line = head
        .split('\n')
        .next()
        .map(|l| l.trim_end_matches('\r'))
        .unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Malformed("not HTTP/1.0 or HTTP/1.1"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("bad method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(HeadError::Malformed("target is not an absolute path"));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_owned()),
    };
    Ok(Some(Request {
        method,
        path: path.to_owned(),
    }))
}

/// Answers one request. Runs on a connection thread; must not panic (a panic only loses that
/// connection, but it is still a bug).
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A running server; stopping (or dropping) it closes the listener and waits for the accept
/// loop. Connection threads finish on their own within the timeouts.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serve `handler` on `listener` on a new thread.
    pub fn spawn(listener: TcpListener, handler: Arc<Handler>) -> io::Result<HttpServer> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("admin".to_owned())
            .spawn(move || accept_loop(&listener, &handler, &flag))?;
        Ok(HttpServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address actually bound (the port is known after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Release: pairs with the Acquire load after `accept` returns.
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&wake_address(self.addr), Duration::from_secs(1));
        if thread.join().is_err() {
            tracing::error!("the admin listener thread panicked");
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A connectable address for a listener bound to `addr` (the unspecified address is not).
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

fn accept_loop(listener: &TcpListener, handler: &Arc<Handler>, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                // Out of descriptors and the like: back off a little rather than spin.
                tracing::warn!(%error, "admin listener: accept failed");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Relaxed: a plain count of threads in flight; no data is published through it.
        if active.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::Relaxed);
            reject_busy(stream);
            continue;
        }
        let handler = Arc::clone(handler);
        let done = Arc::clone(&active);
        let spawned = thread::Builder::new()
            .name("admin-conn".to_owned())
            .spawn(move || {
                serve_connection(stream, &*handler);
                done.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(error) = spawned {
            active.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%error, "admin listener: cannot start a connection thread");
        }
    }
}

fn reject_busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(&Response::text(503, "busy\n").to_bytes(false));
}

/// Read one request, answer it, close.
pub fn serve_connection(mut stream: TcpStream, handler: &Handler) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let response = match read_head(&mut stream) {
        Ok(Some(request)) => {
            let head_only = request.method == Method::Head;
            let response = handler(&request);
            let _ = stream.write_all(&response.to_bytes(head_only));
            return;
        }
        // The client went away or said nothing in time: nobody to answer.
        Ok(None) => return,
        Err(e) => Response::error(&e),
    };
    let _ = stream.write_all(&response.to_bytes(false));
}

/// The request head, `None` if the peer closed or timed out before sending one.
fn read_head(stream: &mut TcpStream) -> Result<Option<Request>, HeadError> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Ok(None);
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        // Keep no more than the limit (and the blank line after it): a longer head is refused.
        let room = (MAX_HEAD_BYTES + 4).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..n.min(room)]);
        if let Some(request) = parse_head(&buf)? {
            return Ok(Some(request));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_that_parse() {
        let cases: [(&[u8], Method, &str); 5] = [
            (
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                Method::Get,
                "/metrics",
            ),
            (b"HEAD /status HTTP/1.0\r\n\r\n", Method::Head, "/status"),
            (
                b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n",
                Method::Get,
                "/metrics",
            ),
            (b"GET /readiness HTTP/1.1\n\n", Method::Get, "/readiness"),
            (
                b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
                Method::Other("POST".to_owned()),
                "/metrics",
            ),
        ];
        for (head, method, path) in cases {
            let request = parse_head(head).unwrap().unwrap();
            assert_eq!(request.method, method, "{head:?}");
            assert_eq!(request.path, path, "{head:?}");
        }
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        for head in [
            &b""[..],
            b"GET",
            b"GET /metrics HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            assert_eq!(parse_head(head), Ok(None), "{head:?}");
        }
    }

    #[test]
    fn junk_is_refused_without_panicking() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        let endless = "X".repeat(MAX_HEAD_BYTES);
        let cases: [(&[u8], HeadError); 10] = [
            (
                b"\r\n\r\n",
                HeadError::Malformed("request line is not METHOD TARGET VERSION"),
            ),
            (
                b"GET /\r\n\r\n",
                HeadError::Malformed("request line is not METHOD TARGET VERSION"),
            ),
            (
                b"GET / HTTP/1.1 extra\r\n\r\n",
                HeadError::Malformed("request line is not METHOD TARGET VERSION"),
            ),
            (
                b"GET / HTTP/2.0\r\n\r\n",
                HeadError::Malformed("not HTTP/1.0 or HTTP/1.1"),
            ),
            (
                b"GET / SPDY\r\n\r\n",
                HeadError::Malformed("not HTTP/1.0 or HTTP/1.1"),
            ),
            (
                b"get / HTTP/1.1\r\n\r\n",
                HeadError::Malformed("bad method"),
            ),
            (
                b"GET metrics HTTP/1.1\r\n\r\n",
                HeadError::Malformed("target is not an absolute path"),
            ),
            (
                b"GET /\x01 HTTP/1.1\r\n\r\n",
                HeadError::Malformed("target is not an absolute path"),
            ),
            (
                b"GET /\xff HTTP/1.1\r\n\r\n",
                HeadError::Malformed("not UTF-8"),
            ),
            (endless.as_bytes(), HeadError::TooLarge),
        ];
        for (head, expected) in cases {
            assert_eq!(parse_head(head), Err(expected), "{head:?}");
        }
        assert_eq!(parse_head(long_line.as_bytes()), Err(HeadError::TooLarge));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A fixed pseudo-random walk over short byte strings, with the separators common.
        let alphabet = b"GET /\r\nHTTP1.0\xff\x00?";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let len = (state % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            let _ = parse_head(&bytes);
        }
    }

    #[test]
    fn responses_on_the_wire() {
        let ok = Response::text(200, "ready\n");
        assert_eq!(
            String::from_utf8(ok.to_bytes(false)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n\
             Connection: close\r\nCache-Control: no-store\r\n\r\nready\n"
        );
        let head = String::from_utf8(ok.to_bytes(true)).unwrap();
        assert!(
            head.ends_with(
                "Content-Length: 6\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
            ),
            "{head}"
        );
        let refused = String::from_utf8(Response::method_not_allowed().to_bytes(false)).unwrap();
        assert!(
            refused.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{refused}"
        );
        assert!(refused.contains("\r\nAllow: GET, HEAD\r\n"), "{refused}");
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn a_server_answers_and_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let handler: Arc<Handler> = Arc::new(|request: &Request| match request.path.as_str() {
            "/hello" => Response::text(200, "hello\n"),
            _ => Response::not_found(),
        });
        let server = HttpServer::spawn(listener, handler).unwrap();
        let addr = server.local_addr();
        let hello = exchange(addr, b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(
            hello.starts_with("HTTP/1.1 200 OK\r\n") && hello.ends_with("\r\n\r\nhello\n"),
            "{hello}"
        );
        let missing = exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        let junk = exchange(
            addr,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        );
        assert!(junk.starts_with("HTTP/1.1 400 "), "{junk}");
        // A client that connects and sends nothing only costs its own thread until timeout.
        let _silent = TcpStream::connect(addr).unwrap();
        let still = exchange(addr, b"GET /hello HTTP/1.1\r\n\r\n");
        assert!(still.starts_with("HTTP/1.1 200 OK\r\n"), "{still}");
        server.stop();
        assert!(
            TcpStream::connect(addr).is_err(),
            "still listening after stop"
        );
    }
}
