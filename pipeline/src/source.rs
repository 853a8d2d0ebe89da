//! What to ingest: parsing and validating source specifications.
//!
//! Three kinds of sources are accepted, written as one string:
//! - `rtsp://[user:pass@]host[:port]/path` (also `rtsps://`): an IP camera;
//! - a file path or `file:///abs/path`: any container/codec GStreamer decodes;
//! - `synthetic:` with optional query parameters, e.g.
//!   `synthetic:?width=1280&height=720&fps=30&seed=7&people=4`: a deterministic
//!   scene of moving person-shaped figures, rendered in-process.

use crate::error::SourceError;
use crate::synthetic::SceneSpec;
use std::path::PathBuf;

/// A parsed, validated source.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// An RTSP camera URL (credentials kept in the URL, never logged).
    Rtsp {
        /// The full URL, as given.
        url: String,
        /// Host part, for messages.
        host: String,
        /// Port (554 when not given).
        port: u16,
    },
    /// A local file.
    File {
        /// Path to the file.
        path: PathBuf,
    },
    /// The in-process synthetic scene.
    Synthetic(SceneSpec),
}

impl Source {
    /// Parses a source string; see the module docs for the accepted forms.
    pub fn parse(spec: &str) -> Result<Source, SourceError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(SourceError::BadUrl {
                url: spec.into(),
                reason: "empty source".into(),
            });
        }
        if let Some(rest) = spec.strip_prefix("synthetic:") {
            let query = rest.trim_start_matches("//").trim_start_matches('?');
            return SceneSpec::from_query(query)
                .map(Source::Synthetic)
                .map_err(|reason| SourceError::BadSynthetic {
                    spec: spec.into(),
                    reason,
                });
        }
        if let Some(path) = spec.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad(
                    spec,
                    "file:// URLs need an absolute path (file:///...)",
                ));
            }
            return Ok(Source::File { path: path.into() });
        }
        let lower = spec.to_ascii_lowercase();
        if lower.starts_with("rtsp://") || lower.starts_with("rtsps://") {
            return parse_rtsp(spec);
        }
        if let Some(idx) = spec.find("://") {
            return Err(bad(
                spec,
                &format!(
                    "unsupported scheme {:?}; use rtsp://, rtsps://, file:// or synthetic:",
                    &spec[..idx]
                ),
            ));
        }
        Ok(Source::File { path: spec.into() })
    }

    /// A description safe to log (credentials removed).
    pub fn describe(&self) -> String {
        match self {
            Source::Rtsp { url, .. } => redact(url),
            Source::File { path } => path.display().to_string(),
            Source::Synthetic(s) => format!(
                "synthetic {}x{}@{} seed {} people {}",
                s.width, s.height, s.fps, s.seed, s.people
            ),
        }
    }

    /// Whether the source is live (an RTSP camera).
    pub fn is_live(&self) -> bool {
        matches!(self, Source::Rtsp { .. })
    }
}

fn bad(url: &str, reason: &str) -> SourceError {
    SourceError::BadUrl {
        url: redact(url),
        reason: reason.into(),
    }
}

/// Removes `user:pass@` from a URL for logs and errors (any password, `@`
/// included: see [`vidar_protocol::secret::redact_url`]).
pub fn redact(url: &str) -> String {
    vidar_protocol::secret::redact_url(url)
}

fn parse_rtsp(url: &str) -> Result<Source, SourceError> {
    let after = &url[url.find("://").map(|i| i + 3).unwrap_or(0)..];
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    if hostport.is_empty() {
        return Err(bad(url, "no host"));
    }
    if hostport.chars().any(|c| c.is_whitespace()) {
        return Err(bad(url, "whitespace in host"));
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        // IPv6 literal: [::1]:8554
        let end = rest
            .find(']')
            .ok_or_else(|| bad(url, "unclosed '[' in IPv6 host"))?;
        let host = &rest[..end];
        let tail = &rest[end + 1..];
        let port = match tail.strip_prefix(':') {
            Some(p) => parse_port(url, p)?,
            None if tail.is_empty() => 554,
            None => return Err(bad(url, "junk after IPv6 host")),
        };
        (host.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), parse_port(url, p)?),
            None => (hostport.to_string(), 554),
        }
    };
    if host.is_empty() {
        return Err(bad(url, "no host"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(bad(url, &format!("invalid host {host:?}")));
    }
    Ok(Source::Rtsp {
        url: url.to_string(),
        host,
        port,
    })
}

fn parse_port(url: &str, p: &str) -> Result<u16, SourceError> {
    match p.parse::<u16>() {
        Ok(0) => Err(bad(url, "port 0 is not valid")),
        Ok(n) => Ok(n),
        Err(_) => Err(bad(url, &format!("invalid port {p:?} (expected 1-65535)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rtsp_urls() {
        let s = Source::parse("rtsp://admin:secret@10.0.0.5:8554/stream1").ok();
        assert_eq!(
            s,
            Some(Source::Rtsp {
                url: "rtsp://admin:secret@10.0.0.5:8554/stream1".into(),
                host: "10.0.0.5".into(),
                port: 8554
            })
        );
        let s = Source::parse("rtsp://cam.local/live").ok();
        assert!(matches!(s, Some(Source::Rtsp { port: 554, .. })));
        let s = Source::parse("rtsp://[::1]:9000/x").ok();
        assert!(matches!(s, Some(Source::Rtsp { port: 9000, .. })));
    }

    #[test]
    fn refuses_bad_urls_with_reasons() {
        for (url, needle) in [
            ("rtsp://", "no host"),
            ("rtsp://host:99999/x", "invalid port"),
            ("rtsp://host:abc/x", "invalid port"),
            ("rtsp://ho st/x", "whitespace"),
            ("rtsp://h$st/x", "invalid host"),
            ("http://cam/x", "unsupported scheme"),
            ("", "empty"),
            ("file://relative", "absolute"),
        ] {
            let err = Source::parse(url)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains(needle),
                "{url:?}: {err:?} should mention {needle:?}"
            );
        }
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("rtsp://u:p@host:1/a"), "rtsp://***@host:1/a");
        assert_eq!(redact("rtsp://host/a@b"), "rtsp://host/a@b");
        let err = Source::parse("rtsp://u:p@host:0/x")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| !e.contains("u:p")));
    }

    #[test]
    fn files_and_synthetic() {
        assert_eq!(
            Source::parse("/tmp/a.mp4").ok(),
            Some(Source::File {
                path: "/tmp/a.mp4".into()
            })
        );
        assert_eq!(
            Source::parse("file:///tmp/a.mp4").ok(),
            Some(Source::File {
                path: "/tmp/a.mp4".into()
            })
        );
        let s = Source::parse("synthetic:?width=320&height=240&fps=15&seed=3").ok();
        assert!(matches!(
            s,
            Some(Source::Synthetic(SceneSpec {
                width: 320,
                height: 240,
                fps: 15,
                seed: 3,
                ..
            }))
        ));
        assert!(Source::parse("synthetic:?width=0").is_err());
        assert!(Source::parse("synthetic:?bogus=1").is_err());
    }
}
