//! The zenoh link every Vidar process opens: one settings block (the
//! `[cluster]` table of the master and edge configs), one way to open a
//! session from it, and the one place where bytes from the network become
//! typed messages — malformed, foreign or wrong-version payloads are counted
//! and logged (with exponential spacing), never trusted and never fatal.

use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use vidar_protocol::wire::{self, DecodeError, Message};
use vidar_protocol::Keys;
use zenoh::Wait;

pub mod typed;
pub use typed::{
    AliveToken, AliveWatch, Encoded, Link, Payload, Publisher, Queue, QueueError, Responder,
    Service, Subscription,
};

/// How a process joins the zenoh network.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkSettings {
    /// Site name: every key is under `vidar/<site>/`, so two sites on one
    /// network never see each other. Default `default`.
    #[serde(default = "default_site")]
    pub site: String,
    /// zenoh mode: `router` (the master's default: edges connect to it),
    /// `peer` (the edges' default: peers also talk directly, so remote re-ID
    /// keeps working while the master is down) or `client`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Endpoints to connect to, e.g. `["tcp/10.0.0.2:7447"]`.
    #[serde(default)]
    pub connect: Vec<String>,
    /// Endpoints to listen on, e.g. `["tcp/0.0.0.0:7447"]`; empty = zenoh's
    /// default for the mode.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Find peers by UDP multicast on the LAN. Default false: list `connect`
    /// endpoints instead (multicast is often filtered, and is noisy in tests).
    #[serde(default)]
    pub multicast_scouting: bool,
    /// A zenoh JSON5 configuration file applied first (TLS certificates,
    /// access control, ...); the keys above override it.
    #[serde(default)]
    pub zenoh_config: Option<std::path::PathBuf>,
}

/// zenoh session mode.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Routes for others; the master's default.
    Router,
    /// Talks to peers directly; the edge nodes' default.
    Peer,
    /// Talks through a router only.
    Client,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Router => "router",
            Mode::Peer => "peer",
            Mode::Client => "client",
        }
    }
}

fn default_site() -> String {
    "default".into()
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            site: default_site(),
            mode: None,
            connect: Vec::new(),
            listen: Vec::new(),
            multicast_scouting: false,
            zenoh_config: None,
        }
    }
}

/// Why the link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A setting is invalid.
    #[error("cluster.{key}: {reason}")]
    Setting {
        /// The key under `[cluster]`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// zenoh refused to open the session.
    #[error(
        "opening the zenoh session ({mode}, connect {connect:?}, listen {listen:?}): {reason}"
    )]
    Open {
        /// Mode used.
        mode: &'static str,
        /// Endpoints connected to.
        connect: Vec<String>,
        /// Endpoints listened on.
        listen: Vec<String>,
        /// zenoh's error.
        reason: String,
    },
    /// A declaration (subscriber, publisher, queryable, token) failed.
    #[error("declaring a {what}: {reason}")]
    Declare {
        /// What was declared, and on which key.
        what: String,
        /// zenoh's error.
        reason: String,
    },
    /// A message could not be encoded.
    #[error("encoding a message: {0}")]
    Encode(String),
    /// zenoh could not send a message.
    #[error("sending a message: {0}")]
    Send(String),
}

impl LinkSettings {
    /// Every problem, each naming its key (under `cluster.`).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = Keys::new(&self.site) {
            p.push(format!("cluster.site: {:?}: {e}", self.site));
        }
        for (key, list) in [("connect", &self.connect), ("listen", &self.listen)] {
            for (i, e) in list.iter().enumerate() {
                if e.parse::<zenoh::config::EndPoint>().is_err() {
                    p.push(format!(
                        "cluster.{key}[{i}]: {e:?} is not a zenoh endpoint like tcp/127.0.0.1:7447"
                    ));
                }
            }
        }
        if let Some(path) = &self.zenoh_config {
            if !path.is_file() {
                p.push(format!(
                    "cluster.zenoh_config: {} is not a readable file",
                    path.display()
                ));
            }
        }
        p
    }

    /// The key space of this site.
    pub fn keys(&self) -> Result<Keys, LinkError> {
        Keys::new(&self.site).map_err(|e| LinkError::Setting {
            key: "site",
            reason: e.to_string(),
        })
    }

    /// The zenoh configuration these settings describe, with `default_mode`
    /// when none is set.
    pub(crate) fn zenoh_config(&self, default_mode: Mode) -> Result<zenoh::Config, LinkError> {
        let mut config = match &self.zenoh_config {
            Some(path) => zenoh::Config::from_file(path).map_err(|e| LinkError::Setting {
                key: "zenoh_config",
                reason: format!("{}: {e}", path.display()),
            })?,
            None => zenoh::Config::default(),
        };
        let mode = self.mode.unwrap_or(default_mode);
        let json = |v: &[String]| {
            let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", quoted.join(","))
        };
        let mut set = |key: &'static str, value: String| {
            config
                .insert_json5(key, &value)
                .map_err(|e| LinkError::Setting {
                    key,
                    reason: format!("{value}: {e}"),
                })
        };
        set("mode", format!("{:?}", mode.as_str()))?;
        if !self.connect.is_empty() {
            set("connect/endpoints", json(&self.connect))?;
        }
        if !self.listen.is_empty() {
            set("listen/endpoints", json(&self.listen))?;
        }
        set(
            "scouting/multicast/enabled",
            self.multicast_scouting.to_string(),
        )?;
        // Keep trying to reach the endpoints we were given: the master may
        // start after its edges, or restart.
        set("connect/timeout_ms", "-1".into())?;
        set("connect/exit_on_failure", "false".into())?;
        Ok(config)
    }

    /// Joins the site: opens the session, behind the typed layer.
    pub fn open(&self, default_mode: Mode) -> Result<Link, LinkError> {
        let keys = self.keys()?;
        Ok(Link::new(self.open_session(default_mode)?, keys))
    }

    /// Opens a raw zenoh session with these settings: for tests and tools
    /// that must speak zenoh itself (fake or hostile peers). The binaries
    /// use [`LinkSettings::open`].
    pub fn open_session(&self, default_mode: Mode) -> Result<zenoh::Session, LinkError> {
        let config = self.zenoh_config(default_mode)?;
        let mode = self.mode.unwrap_or(default_mode).as_str();
        zenoh::open(config).wait().map_err(|e| LinkError::Open {
            mode,
            connect: self.connect.clone(),
            listen: self.listen.clone(),
            reason: e.to_string(),
        })
    }
}

/// Counts and logs the payloads refused on Vidar's keys.
#[derive(Debug, Default)]
pub struct Garbage {
    refused: AtomicU64,
}

impl Garbage {
    /// Decodes `bytes` received on `key` as an `M`; refusals are counted and
    /// logged on the 1st, 2nd, 4th, 8th... so a flood cannot fill the log.
    pub fn decode<M: Message>(&self, key: &str, bytes: &[u8]) -> Option<M> {
        match wire::decode::<M>(bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                self.refuse(key, &e);
                None
            }
        }
    }

    /// Counts one refused payload.
    pub fn refuse(&self, key: &str, e: &DecodeError) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(key, error = %e, refused_total = n, "refused a message");
        }
    }

    /// Payloads refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Sends a query with an encoded payload to `key` and returns the first
/// reply that decodes as an `R`, within `timeout`.
pub(crate) fn request<Q: Message, R: Message>(
    session: &zenoh::Session,
    key: &str,
    request: &Q,
    timeout: Duration,
    garbage: &Garbage,
) -> Result<R, RequestError> {
    let payload = wire::encode(request).map_err(|e| RequestError::Encode(e.to_string()))?;
    let replies = session
        .get(key)
        .payload(payload)
        .timeout(timeout)
        .wait()
        .map_err(|e| RequestError::Send(e.to_string()))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let reply = match replies.recv_timeout(left) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return Err(RequestError::Timeout(timeout)),
        };
        match reply.result() {
            Ok(sample) => {
                let bytes = sample.payload().to_bytes();
                if let Some(r) = garbage.decode::<R>(key, &bytes) {
                    return Ok(r);
                }
            }
            Err(e) => {
                return Err(RequestError::Refused(
                    String::from_utf8_lossy(&e.payload().to_bytes()).into_owned(),
                ))
            }
        }
    }
}

/// Sends a query with an encoded payload to `key` and returns at once;
/// `done` is called exactly once, on a zenoh thread, with the first reply that
/// decodes as an `R`, the first refusal, or [`RequestError::Timeout`] when the
/// query ends (after `timeout`) without either. The caller never waits, so a
/// thread that also serves others' requests is never stuck behind its own.
pub(crate) fn request_then<Q: Message, R: Message + 'static>(
    session: &zenoh::Session,
    key: &str,
    request: &Q,
    timeout: Duration,
    garbage: std::sync::Arc<Garbage>,
    done: impl FnOnce(Result<R, RequestError>) + Send + 'static,
) -> Result<(), RequestError> {
    /// Calls `done` once: with the answer, or with a timeout when dropped
    /// unanswered (zenoh drops the reply callback when the query ends).
    struct Once<R, F: FnOnce(Result<R, RequestError>)> {
        done: std::sync::Mutex<Option<F>>,
        timeout: Duration,
        _r: std::marker::PhantomData<fn(R)>,
    }
    impl<R, F: FnOnce(Result<R, RequestError>)> Once<R, F> {
        fn answer(&self, r: Result<R, RequestError>) {
            let f = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(f) = f {
                f(r);
            }
        }
    }
    impl<R, F: FnOnce(Result<R, RequestError>)> Drop for Once<R, F> {
        fn drop(&mut self) {
            self.answer(Err(RequestError::Timeout(self.timeout)));
        }
    }
    let payload = wire::encode(request).map_err(|e| RequestError::Encode(e.to_string()))?;
    let once = Once {
        done: std::sync::Mutex::new(Some(done)),
        timeout,
        _r: std::marker::PhantomData,
    };
    let key_owned = key.to_string();
    session
        .get(key)
        .payload(payload)
        .timeout(timeout)
        .callback(move |reply| match reply.result() {
            Ok(sample) => {
                let bytes = sample.payload().to_bytes();
                if let Some(r) = garbage.decode::<R>(&key_owned, &bytes) {
                    once.answer(Ok(r));
                }
            }
            Err(e) => once.answer(Err(RequestError::Refused(
                String::from_utf8_lossy(&e.payload().to_bytes()).into_owned(),
            ))),
        })
        .wait()
        .map_err(|e| RequestError::Send(e.to_string()))
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request could not be encoded.
    #[error("encoding the request: {0}")]
    Encode(String),
    /// zenoh could not send it.
    #[error("sending the request: {0}")]
    Send(String),
    /// No usable reply in time (nobody serves the key, or it is too slow).
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The server replied with an error.
    #[error("the server refused: {0}")]
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_problems_name_their_keys() {
        let s: LinkSettings = toml::from_str(
            "site = \"a/b\"\nconnect = [\"nonsense\"]\nlisten = [\"tcp/127.0.0.1:0\"]\n",
        )
        .expect("parses");
        let p = s.problems().join("\n");
        assert!(p.contains("cluster.site"), "{p}");
        assert!(p.contains("cluster.connect[0]"), "{p}");
        assert!(!p.contains("cluster.listen"), "{p}");
    }

    #[test]
    fn builds_a_zenoh_config() {
        let s = LinkSettings {
            connect: vec!["tcp/127.0.0.1:7447".into()],
            ..LinkSettings::default()
        };
        let c = s.zenoh_config(Mode::Peer).expect("config");
        let mode = c.get_json("mode").expect("mode");
        assert_eq!(mode, "\"peer\"");
        let ep = c.get_json("connect/endpoints").expect("endpoints");
        assert!(ep.contains("tcp/127.0.0.1:7447"), "{ep}");
    }
}
