//! How the app is reached over HTTPS: the PEM certificate and key of the
//! config as a rustls server config. Serving (handshakes on their own tasks
//! within the header timeout, connection caps overall and per address) is
//! `vidar_runtime::serve_on`'s.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::{self, ServerConfig};

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
