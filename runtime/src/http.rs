//! HTTP/1.1 serving of an [`axum::Router`] for untrusted clients.
//!
//! - A connection cap: beyond [`HttpLimits::max_connections`] a new
//!   connection is closed at once (counted), so idle or slow clients cannot
//!   use up the process; and one address holds at most
//!   [`HttpLimits::max_per_addr`] of them, so one client cannot take them all.
//! - TLS when asked ([`serve_on`]): the handshake runs on the connection's
//!   own task, within the header timeout, never in the accept loop.
//! - The peer's address reaches the routes as
//!   `axum::extract::ConnectInfo<SocketAddr>`.
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
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::rustls::ServerConfig;
use tower::ServiceExt;

/// Limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a client has to send its request head.
    pub header_timeout: Duration,
    /// Time a handler has to answer.
    pub request_timeout: Duration,
    /// Connections open at once; more are closed at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address; more are closed at once.
    pub max_per_addr: usize,
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
            max_per_addr: 16,
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
    /// TLS handshakes that failed or took longer than the header timeout.
    pub handshakes_failed: AtomicU64,
}

/// Connection slots: overall, and per address.
#[derive(Debug, Clone)]
struct Slots {
    all: Arc<tokio::sync::Semaphore>,
    per_addr: usize,
    by_addr: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A taken connection slot; given back when dropped.
#[derive(Debug)]
struct Slot {
    _all: tokio::sync::OwnedSemaphorePermit,
    ip: IpAddr,
    by_addr: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Slots {
    fn new(all: usize, per_addr: usize) -> Slots {
        Slots {
            all: Arc::new(tokio::sync::Semaphore::new(all)),
            per_addr,
            by_addr: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`, unless it or everyone has too many.
    fn take(&self, ip: IpAddr) -> Option<Slot> {
        let mut by = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if by.get(&ip).is_some_and(|n| *n >= self.per_addr) {
            return None;
        }
        let all = Arc::clone(&self.all).try_acquire_owned().ok()?;
        // Only addresses with a connection open are remembered.
        *by.entry(ip).or_insert(0) += 1;
        Some(Slot {
            _all: all,
            ip,
            by_addr: Arc::clone(&self.by_addr),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by.remove(&self.ip);
            }
        }
    }
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
    serve_on(listener, router, limits, shutdown, None)
}

/// Serves `router` on a bound `listener` under `limits`, over TLS with
/// `tls` when given, until `shutdown` is triggered or the returned server
/// is dropped.
pub fn serve_on(
    listener: std::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: &Shutdown,
    tls: Option<Arc<ServerConfig>>,
) -> std::io::Result<HttpServer> {
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
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
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
                let slots = Slots::new(limits.max_connections, limits.max_per_addr);
                loop {
                    let accepted = tokio::select! {
                        _ = process.triggered() => break,
                        _ = local.triggered() => break,
                        a = listener.accept() => a,
                    };
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: back off briefly.
                            tracing::debug!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let Some(slot) = slots.take(peer.ip()) else {
                        st.refused.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    };
                    st.connections.fetch_add(1, Ordering::Relaxed);
                    let service = router.clone().map_request(move |mut r: Request<Incoming>| {
                        r.extensions_mut().insert(ConnectInfo(peer));
                        r
                    });
                    let (acceptor, stats) = (acceptor.clone(), Arc::clone(&st));
                    tokio::spawn(async move {
                        let _slot = slot;
                        let Some(acceptor) = acceptor else {
                            connection(stream, service, &limits).await;
                            return;
                        };
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => connection(tls, service, &limits).await,
                            Ok(Err(e)) => {
                                stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(peer = %peer, "TLS handshake timed out");
                            }
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

/// Serves one connection's requests (HTTP/1.1) until it closes.
async fn connection<S, T>(io: T, service: S, limits: &HttpLimits)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(limits.keep_alive)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
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
    fn one_address_cannot_take_every_connection() {
        let slots = Slots::new(10, 4);
        let hog: IpAddr = [10, 0, 0, 66].into();
        let held: Vec<Slot> = std::iter::from_fn(|| slots.take(hog)).take(100).collect();
        assert_eq!(held.len(), 4);
        // Others still get slots, up to the overall limit.
        let others: Vec<Slot> = (1..=9u8)
            .filter_map(|i| slots.take([10, 0, 1, i].into()))
            .collect();
        assert_eq!(others.len(), 6);
        assert!(slots.take([10, 0, 2, 1].into()).is_none(), "overall limit");
        drop(held);
        let again = slots.take(hog);
        assert!(again.is_some(), "slots come back");
        // Only addresses with a connection open are remembered.
        assert_eq!(slots.by_addr.lock().map(|m| m.len()).unwrap_or(0), 7);
    }

    /// A connection to `addr` from the loopback address `from` (127.0.0.x).
    fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            s.bind(SocketAddr::from((from, 0))).expect("bind");
            let c = s.connect(addr).await.expect("connect");
            c.into_std().expect("std stream")
        })
    }

    #[test]
    fn one_client_holding_its_share_leaves_the_others_served() {
        let s = Shutdown::new();
        let limits = HttpLimits {
            max_connections: 16,
            max_per_addr: 4,
            ..HttpLimits::default()
        };
        let server = serve("0.0.0.0:0", app(), limits, &s).expect("serve");
        let addr = SocketAddr::from(([127, 0, 0, 1], server.addr().port()));
        let idle: Vec<TcpStream> = (0..4).map(|_| connect_from([127, 0, 0, 2], addr)).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.stats().connections.load(Ordering::Relaxed) < 4 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        // Its fifth is closed; another address is served.
        let mut fifth = connect_from([127, 0, 0, 2], addr);
        fifth
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = Vec::new();
        let _ = fifth.read_to_end(&mut out);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        let r = get_path(addr, "/healthz");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert_eq!(server.stats().refused.load(Ordering::Relaxed), 1);
        drop(idle);
    }

    #[test]
    fn tls_handshakes_run_beside_the_accept_loop_and_time_out() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(
            cert.signing_key.serialize_der(),
        )
        .expect("key");
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .expect("config");
        let s = Shutdown::new();
        let limits = HttpLimits {
            header_timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = serve_on(listener, app(), limits, &s, Some(Arc::new(config))).expect("serve");
        let addr = server.addr();
        // Ten clients that never say hello, and one that speaks plain HTTP.
        let silent: Vec<TcpStream> = (0..10)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let plain = get_path(addr, "/healthz");
        assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
        // All are cut off after the header timeout, counted.
        let t = Instant::now();
        for mut c in silent {
            c.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut b = Vec::new();
            let _ = c.read_to_end(&mut b);
        }
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        // The server drops a connection, then counts it: a client can see the
        // close a moment before the count moves.
        let failed = || server.stats().handshakes_failed.load(Ordering::Relaxed);
        let counted = Instant::now();
        while failed() < 11 && counted.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(failed() >= 11, "{} handshakes counted as failed", failed());
    }

    #[test]
    fn slow_and_idle_clients_do_not_block_healthz() {
        let s = Shutdown::new();
        let limits = HttpLimits {
            header_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(300),
            max_connections: 8,
            max_per_addr: 8,
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
            max_per_addr: 4,
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
