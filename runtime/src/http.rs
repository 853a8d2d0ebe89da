//! HTTP/1.1 serving of an [`axum::Router`] for untrusted clients.
//!
//! - A connection cap: beyond [`HttpLimits::max_connections`] a new
//!   connection is closed at once (counted), so idle or slow clients cannot
//!   use up the process.
//! - A header read timeout: a client that does not finish its request head
//!   in [`HttpLimits::header_timeout`] is disconnected.
//! - A request deadline: a handler that does not answer in
//!   [`HttpLimits::request_timeout`] gets a 503.
//! - Every connection is its own task: one slow client never delays
//!   another's `/healthz`.
//!
//! The server runs on its own small tokio runtime thread and stops when the
//! [`Shutdown`] token is triggered or the [`HttpServer`] is dropped.

use crate::shutdown::Shutdown;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a client has to send its request head.
    pub header_timeout: Duration,
    /// Time a handler has to answer.
    pub request_timeout: Duration,
    /// Connections open at once; more are closed at once.
    pub max_connections: usize,
    /// Keep connections open between requests (off: one request per
    /// connection, which suits scrapes and health probes).
    pub keep_alive: bool,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_connections: 64,
            keep_alive: true,
        }
    }
}

/// Counters of a server.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Connections accepted and served.
    pub connections: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub refused: AtomicU64,
    /// Requests answered 503 because the handler missed its deadline.
    pub timed_out: AtomicU64,
}

/// A running server; dropping it stops it.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stats: Arc<HttpStats>,
    stop: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// The address bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<HttpStats> {
        Arc::clone(&self.stats)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.trigger("server dropped");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `addr` and serves `router` under `limits` until `shutdown` is
/// triggered or the returned server is dropped.
pub fn serve(
    addr: &str,
    router: Router,
    limits: HttpLimits,
    shutdown: &Shutdown,
) -> std::io::Result<HttpServer> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let stats = Arc::new(HttpStats::default());
    // Stops on the process's shutdown or on drop, whichever comes first.
    let stop = Shutdown::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("http")
        .enable_all()
        .build()?;
    let st = Arc::clone(&stats);
    let (process, local) = (shutdown.clone(), stop.clone());
    let timeout_stats = Arc::clone(&stats);
    let request_timeout = limits.request_timeout;
    let router = router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let stats = Arc::clone(&timeout_stats);
            async move {
                match tokio::time::timeout(request_timeout, next.run(req)).await {
                    Ok(r) => r,
                    Err(_) => {
                        stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "request deadline exceeded\n",
                        )
                            .into_response()
                    }
                }
            }
        },
    ));
    let thread = std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "HTTP listener not usable");
                        return;
                    }
                };
                let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
                loop {
                    let accepted = tokio::select! {
                        _ = process.triggered() => break,
                        _ = local.triggered() => break,
                        a = listener.accept() => a,
                    };
                    let (stream, _peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: back off briefly.
                            tracing::debug!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        st.refused.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    };
                    st.connections.fetch_add(1, Ordering::Relaxed);
                    let service = TowerToHyperService::new(router.clone());
                    let header_timeout = limits.header_timeout;
                    let keep_alive = limits.keep_alive;
                    tokio::spawn(async move {
                        let _permit = permit;
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(header_timeout)
                            .keep_alive(keep_alive)
                            .serve_connection(TokioIo::new(stream), service);
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "HTTP connection ended with an error");
                        }
                    });
                }
            });
            // Dropping the runtime here ends every connection task.
        })?;
    Ok(HttpServer {
        addr: bound,
        stats,
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    fn get_path(addr: SocketAddr, path: &str) -> String {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut out = String::new();
        // A refused connection may be closed before the request is written.
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if c.write_all(req.as_bytes()).is_err() {
            return out;
        }
        let _ = c.read_to_string(&mut out);
        out
    }

    fn app() -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
    }

    #[test]
    fn slow_and_idle_clients_do_not_block_healthz() {
        let s = Shutdown::new();
        let limits = HttpLimits {
            header_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(300),
            max_connections: 8,
            keep_alive: true,
        };
        let server = serve("127.0.0.1:0", app(), limits, &s).expect("serve");
        let addr = server.addr();
        // A client that sends half a request head and waits.
        let mut slow = TcpStream::connect(addr).expect("connect");
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
            .expect("write");
        // Others are answered meanwhile.
        let t = Instant::now();
        let r = get_path(addr, "/healthz");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(t.elapsed() < Duration::from_secs(5));
        // The slow client is cut off after the header timeout.
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = Vec::new();
        let t = Instant::now();
        let _ = slow.read_to_end(&mut buf);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // A handler past its deadline gets a 503.
        let r = get_path(addr, "/slow");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert_eq!(server.stats().timed_out.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn connections_beyond_the_cap_are_closed_and_the_rest_served() {
        let s = Shutdown::new();
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_connections: 4,
            keep_alive: true,
        };
        let server = serve("127.0.0.1:0", app(), limits, &s).expect("serve");
        let addr = server.addr();
        let idle: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.stats().connections.load(Ordering::Relaxed) < 4 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        // The fifth is closed without an answer.
        let r = get_path(addr, "/healthz");
        assert!(r.is_empty(), "{r}");
        assert!(server.stats().refused.load(Ordering::Relaxed) >= 1);
        drop(idle);
        // Once they go, service resumes.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = get_path(addr, "/healthz");
            if r.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "not served again");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Shutdown stops the server.
        s.trigger("test");
        drop(server);
        assert!(TcpStream::connect(addr)
            .and_then(|mut c| {
                c.set_read_timeout(Some(Duration::from_secs(2)))?;
                c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n")?;
                let mut b = [0u8; 1];
                c.read(&mut b)
            })
            .map_or(true, |n| n == 0));
    }
}
