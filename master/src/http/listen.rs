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

/// Handshakes in progress at most.
pub const MAX_HANDSHAKES: usize = 256;
/// Longest handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
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
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
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
