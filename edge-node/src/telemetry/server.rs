//! The node's HTTP endpoint: `/metrics` (Prometheus text) and `/healthz`
//! (the health registry: 200 when every subsystem is well, 503 naming the
//! failed ones), served by `vidar-runtime` with a header timeout, a request
//! deadline and a connection cap, so one slow client never blocks a probe.

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use vidar_runtime::metrics::{Exposition, CONTENT_TYPE};
use vidar_runtime::{Health, HttpLimits, HttpServer, Shutdown};

/// Limits of the telemetry endpoint: scrapes and probes, one request per
/// connection.
pub const LIMITS: HttpLimits = HttpLimits {
    header_timeout: Duration::from_secs(5),
    request_timeout: Duration::from_secs(5),
    max_connections: 32,
    max_per_addr: 16,
    keep_alive: false,
};

/// Binds `addr` and serves `/metrics` from `metrics` and `/healthz` from
/// `health` until `shutdown` is triggered or the server is dropped.
pub fn serve(
    addr: &str,
    metrics: Arc<Exposition>,
    health: Health,
    shutdown: &Shutdown,
) -> std::io::Result<HttpServer> {
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()) }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let health = health.clone();
                async move {
                    let report = health.report();
                    let code = if report.ok() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, report.text()).into_response()
                }
            }),
        );
    vidar_runtime::serve(addr, router, LIMITS, shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::Mutex;
    use vidar_runtime::Policy;

    fn get(addr: std::net::SocketAddr, req: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        c.write_all(req).expect("write");
        let mut s = String::new();
        let _ = c.read_to_string(&mut s);
        s
    }

    #[test]
    fn serves_metrics_and_health_and_refuses_junk() {
        let shutdown = Shutdown::new();
        let health = Health::new(&shutdown);
        let broken = Arc::new(Mutex::new(false));
        let b = Arc::clone(&broken);
        health.check("database writer", Policy::Report, move || {
            if *b.lock().unwrap() {
                Err("disk I/O error".into())
            } else {
                Ok(())
            }
        });
        let mut metrics = Exposition::new(&[("node", "n1")]);
        metrics.collect(|f| f.gauge("vidar_up", "1 while the node runs.", 1u64));
        let server = serve("127.0.0.1:0", Arc::new(metrics), health, &shutdown).expect("bind");
        let addr = server.addr();
        let r = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("vidar_up{node=\"n1\"} 1\n"),
            "{r}"
        );
        let r = get(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains("database writer: ok"),
            "{r}"
        );
        *broken.lock().unwrap() = true;
        let r = get(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("database writer: FAILED: disk I/O error"), "{r}");
        assert!(get(addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        let huge = get(addr, &[b'A'; 20000]);
        assert!(
            huge.is_empty() || huge.starts_with("HTTP/1.1 4"),
            "an oversized head is refused: {huge}"
        );
    }
}
