//! How the app is reached: HTTPS (the PEM certificate and key of the config,
//! and a listener that hands axum TLS streams) and [`PeerAddr`], the address
//! each connection, plain or TLS, reports to the routes.
//!
//! Handshakes run on their own tasks (at most [`MAX_HANDSHAKES`] at once,
//! [`HANDSHAKE_TIMEOUT`] each) so a slow or hostile client cannot stall the
//! accept loop; failed handshakes are logged at debug level and dropped.

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Handshakes in progress at most; beyond, new connections are closed at
/// once (never queued: the accept loop never waits).
pub const MAX_HANDSHAKES: usize = 256;
/// Handshakes in progress from one address at most (issue 16: 300 idle
/// connections from one client blocked HTTPS for everyone for 10 s).
pub const MAX_HANDSHAKES_PER_ADDR: usize = 8;
/// Longest handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshake slots, overall and per address.
#[derive(Debug, Clone)]
struct Slots {
    all: Arc<Semaphore>,
    by_addr: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// A taken handshake slot; given back when dropped.
#[derive(Debug)]
struct Slot {
    _all: tokio::sync::OwnedSemaphorePermit,
    ip: std::net::IpAddr,
    by_addr: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

impl Slots {
    fn new(all: usize) -> Slots {
        Slots {
            all: Arc::new(Semaphore::new(all)),
            by_addr: Arc::default(),
        }
    }

    /// A slot for a handshake from `ip`, unless it or everyone has too many.
    fn take(&self, ip: std::net::IpAddr) -> Option<Slot> {
        let mut by = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if by.get(&ip).is_some_and(|n| *n >= MAX_HANDSHAKES_PER_ADDR) {
            return None;
        }
        // Only addresses with a handshake in progress are kept.
        let all = Arc::clone(&self.all).try_acquire_owned().ok()?;
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

/// The peer's address of a connection (plain or TLS), for the login rate limit.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, TcpListener>> for PeerAddr {
    fn connect_info(s: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        PeerAddr(*s.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, TlsListener>> for PeerAddr {
    fn connect_info(s: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        PeerAddr(*s.remote_addr())
    }
}

/// Reads `cert` (PEM chain) and `key` (PEM PKCS#8, PKCS#1 or SEC1) into a
/// server config offering HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let open = |p: &Path, what: &str| {
        std::fs::File::open(p)
            .map(BufReader::new)
            .map_err(|e| format!("{what}: reading {}: {e}", p.display()))
    };
    let certs = rustls_pemfile::certs(&mut open(cert, "tls_cert")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls_cert: {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_cert: {} holds no PEM certificate",
            cert.display()
        ));
    }
    let private = rustls_pemfile::private_key(&mut open(key, "tls_key")?)
        .map_err(|e| format!("tls_key: {}: {e}", key.display()))?
        .ok_or_else(|| format!("tls_key: {} holds no PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| {
            format!(
                "tls_cert/tls_key: {} and {} do not make a usable pair: {e}",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts TCP connections and yields them once their TLS handshake is done.
#[derive(Debug)]
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp` (call inside the runtime).
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let slots = Slots::new(MAX_HANDSHAKES);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    r = tcp.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS listener: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = tx.closed() => return,
                };
                let Some(permit) = slots.take(peer.ip()) else {
                    tracing::debug!(peer = %peer, "too many TLS handshakes in progress; connection closed");
                    drop(stream);
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, addr, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task is gone (the runtime is stopping): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_handshake_slot() {
        let slots = Slots::new(10);
        let hog: std::net::IpAddr = [10, 0, 0, 66].into();
        let held: Vec<Slot> = std::iter::from_fn(|| slots.take(hog)).take(100).collect();
        assert_eq!(held.len(), MAX_HANDSHAKES_PER_ADDR);
        // Others still get slots, up to the overall limit.
        let others: Vec<Slot> = (1..=5u8)
            .filter_map(|i| slots.take([10, 0, 1, i].into()))
            .collect();
        assert_eq!(others.len(), 10 - MAX_HANDSHAKES_PER_ADDR);
        assert!(slots.take([10, 0, 2, 1].into()).is_none(), "overall limit");
        drop(held);
        assert!(slots.take(hog).is_some(), "slots come back");
        // Only addresses with a handshake in progress are remembered.
        assert_eq!(slots.by_addr.lock().unwrap().len(), 2);
    }
}
