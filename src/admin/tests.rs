use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// A gateway that becomes ready when told and has counted one forwarded frame.
struct Fake {
    ready: AtomicBool,
}

impl AdminSource for Fake {
    fn scrape(&self) -> Scrape {
        let mut s = Scrape::empty(GatewayInfo {
            outside: "o0".to_owned(),
            inside: "i0".to_owned(),
            ..GatewayInfo::default()
        });
        s.readiness = self.readiness();
        s.packets[0][0] = 1;
        s.generation = self.ready.load(Ordering::Relaxed).then_some(1);
        s
    }

    fn readiness(&self) -> Readiness {
        Readiness {
            snapshot_enforced: self.ready.load(Ordering::Relaxed),
            workers_alive: true,
        }
    }
}

fn get(path: &str) -> Request {
    Request {
        method: Method::Get,
        path: path.to_owned(),
    }
}

#[test]
fn routes() {
    let fake = Fake {
        ready: AtomicBool::new(false),
    };
    let cases: [(Method, &str, u16); 9] = [
        (Method::Get, "/metrics", 200),
        (Method::Head, "/metrics", 200),
        (Method::Get, "/liveness", 200),
        (Method::Get, "/readiness", 503),
        (Method::Get, "/status", 200),
        (Method::Get, "/", 200),
        (Method::Get, "/nope", 404),
        (Method::Other("POST".to_owned()), "/metrics", 405),
        (Method::Other("DELETE".to_owned()), "/nope", 404),
    ];
    for (method, path, status) in cases {
        let request = Request {
            method: method.clone(),
            path: path.to_owned(),
        };
        assert_eq!(route(&fake, &request).status, status, "{method:?} {path}");
    }
    let metrics = route(&fake, &get("/metrics"));
    assert_eq!(metrics.content_type, metrics::CONTENT_TYPE);
    fake.ready.store(true, Ordering::Relaxed);
    let ready = route(&fake, &get("/readiness"));
    assert_eq!(
        (ready.status, ready.body.as_slice()),
        (200, &b"ready\n"[..])
    );
}

#[test]
fn listen_addresses() {
    let cases = [
        ("off", Ok(AdminListen::Off)),
        ("Disabled", Ok(AdminListen::Off)),
        (
            "127.0.0.1:9091",
            Ok(AdminListen::At("127.0.0.1:9091".parse().unwrap())),
        ),
        ("[::1]:80", Ok(AdminListen::At("[::1]:80".parse().unwrap()))),
    ];
    for (text, expected) in cases {
        assert_eq!(text.parse::<AdminListen>(), expected, "{text}");
    }
    for bad in ["127.0.0.1", "127.0.0.1:99999", "", "::1:80:x"] {
        assert!(bad.parse::<AdminListen>().is_err(), "{bad}");
    }
}

#[test]
fn listen_address_from_settings() {
    let mut settings = Settings::default();
    assert_eq!(
        AdminListen::from_settings(&settings),
        Ok(AdminListen::At("127.0.0.1:9091".parse().unwrap()))
    );
    settings.metrics_host = "::".to_owned();
    settings.metrics_port = 9100;
    assert_eq!(
        AdminListen::from_settings(&settings),
        Ok(AdminListen::At("[::]:9100".parse().unwrap()))
    );
    settings.metrics_enabled = false;
    assert_eq!(
        AdminListen::from_settings(&settings),
        Ok(AdminListen::At("127.0.0.1:9091".parse().unwrap()))
    );
    settings.health_enabled = false;
    assert_eq!(AdminListen::from_settings(&settings), Ok(AdminListen::Off));
}

#[test]
fn status_is_fetched_over_http() {
    let fake = Arc::new(Fake {
        ready: AtomicBool::new(true),
    });
    let server = AdminServer::spawn("127.0.0.1:0".parse().unwrap(), fake).unwrap();
    let status = fetch_status(server.local_addr()).unwrap();
    assert_eq!(status.generation, Some(1));
    assert_eq!(status.ports.outside, "o0");
    assert_eq!(status.traffic[0].forwarded_packets, 1);
    let addr = server.local_addr();
    server.stop();
    let err = fetch_status(addr).unwrap_err();
    assert!(matches!(err, StatusError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("nothing answers at"), "{err}");
}
