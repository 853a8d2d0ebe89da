//! The zenoh link every Vidar process opens: one settings block (the
//! `[cluster]` table of the master and edge configs), one way to open a
//! session from it, and the one place where bytes from the network become
//! typed messages — malformed, foreign or wrong-version payloads are counted
//! and logged (with exponential spacing), never trusted and never fatal.

use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use vidar_config::{Config, Invalid, Problem, Problems};
use vidar_protocol::wire::{self, Message};
use vidar_protocol::Keys;
use zenoh::Wait;

pub mod pki;
mod secure;
pub mod sign;
pub mod typed;
pub use pki::{Bundle, PkiError, Role};
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
    /// Endpoints to listen on, e.g. `["tls/0.0.0.0:7447"]`; empty = loopback
    /// (`tcp/127.0.0.1:7447` for a router, any port for a peer), or zenoh's
    /// default for the mode (every interface) with `insecure_plaintext`.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Find peers by UDP multicast on the LAN. Default false: list `connect`
    /// endpoints instead (multicast is often filtered, and is noisy in tests).
    #[serde(default)]
    pub multicast_scouting: bool,
    /// A zenoh JSON5 configuration file applied first (tuning); the keys
    /// above, and a bundle's TLS and access control, override it.
    #[serde(default)]
    pub zenoh_config: Option<std::path::PathBuf>,
    /// This process's site bundle (`vidar-master ca init` / `enroll`): mutual
    /// TLS with the site CA on `tls/` endpoints, a default-deny access list
    /// keyed on certificate names, and signed plans and merges. Nodes with a
    /// bundle are clients of the master's router.
    #[serde(default)]
    pub bundle: Option<std::path::PathBuf>,
    /// Allow plain TCP off loopback without a bundle: then anyone who can
    /// reach the port can steer, read and forge the cluster. Default false.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// The TCP send buffer of this process's zenoh links, bytes; 0 (the
    /// default) leaves it to the kernel's autotuning. On a slow upload the
    /// autotuned buffer holds seconds of data, and whatever zenoh sends
    /// next waits behind it however urgent (a status behind a records sync
    /// reply); bounded, zenoh's priorities decide more of the order. Linux
    /// doubles it: 65536 holds a quarter second at 4 Mbit/s, and still
    /// carries 1 Gbit/s at a 1 ms round trip. 4096 to 67108864.
    #[serde(default)]
    pub send_buffer_bytes: u32,
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
            bundle: None,
            insecure_plaintext: false,
            send_buffer_bytes: 0,
        }
    }
}

/// Why the link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The settings have problems (keys relative to `[cluster]`).
    #[error("{}", .0.clone().under("cluster"))]
    Invalid(#[from] Invalid),
    /// A setting is unusable.
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

impl Config for LinkSettings {
    type Output = Link;
    /// The mode when neither the settings nor a bundle decide it.
    type Context = Mode;
    type Error = LinkError;

    /// Every problem, each naming its key (relative to the `[cluster]` table).
    fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        if let Err(e) = Keys::new(&self.site) {
            p.push("site", format!("{:?}: {e}", self.site));
        }
        for (key, list) in [("connect", &self.connect), ("listen", &self.listen)] {
            for (i, e) in list.iter().enumerate() {
                if e.parse::<zenoh::config::EndPoint>().is_err() {
                    p.push(
                        format!("{key}[{i}]"),
                        format!("{e:?} is not a zenoh endpoint like tcp/127.0.0.1:7447"),
                    );
                }
            }
        }
        if self.send_buffer_bytes != 0 && !(4096..=1 << 26).contains(&self.send_buffer_bytes) {
            p.push(
                "send_buffer_bytes",
                format!(
                    "{} must be 0 (the kernel's autotuning) or 4096 to 67108864",
                    self.send_buffer_bytes
                ),
            );
        }
        if let Some(path) = &self.zenoh_config {
            if !path.is_file() {
                p.push(
                    "zenoh_config",
                    format!("{} is not a readable file", path.display()),
                );
            }
        }
        match self.bundle() {
            Ok(Some(b)) => self.bundle_problems(&b, &mut p),
            Ok(None) => self.plaintext_problems(&mut p),
            Err(LinkError::Setting { key, reason }) => p.push(key, reason),
            Err(e) => p.push("bundle", e.to_string()),
        }
        p.into_vec()
    }

    /// Joins the site (see [`LinkSettings::open`]).
    fn build(&self, default_mode: &Mode) -> Result<Link, LinkError> {
        self.open(*default_mode)
    }
}

impl LinkSettings {
    fn endpoints(&self) -> impl Iterator<Item = (&'static str, usize, &String)> {
        let c = self
            .connect
            .iter()
            .enumerate()
            .map(|(i, e)| ("connect", i, e));
        let l = self
            .listen
            .iter()
            .enumerate()
            .map(|(i, e)| ("listen", i, e));
        c.chain(l)
    }

    fn bundle_problems(&self, b: &Bundle, p: &mut Problems) {
        if b.site != self.site {
            p.push(
                "bundle",
                format!(
                    "{} is for site {:?}, this config joins {:?}",
                    b.dir.display(),
                    b.site,
                    self.site
                ),
            );
        }
        for (key, i, e) in self.endpoints() {
            if secure::protocol(e) != "tls" {
                p.push(
                    format!("{key}[{i}]"),
                    format!("{e:?}: with a bundle every endpoint is tls/HOST:PORT (mutual TLS)"),
                );
            }
        }
        match (b.role, self.mode) {
            (Role::Master, None | Some(Mode::Router)) => {
                if self.listen.is_empty() {
                    p.push("listen", "the master routes the site: give the tls/ endpoint to listen on, e.g. [\"tls/0.0.0.0:7447\"]");
                }
            }
            (Role::Node, None | Some(Mode::Client)) => {
                if self.connect.is_empty() {
                    p.push(
                        "connect",
                        "give the master's tls/ endpoint, e.g. [\"tls/10.0.0.2:7447\"]",
                    );
                }
                if !self.listen.is_empty() {
                    p.push("listen", "a node with a bundle is a client of the master's router and listens on nothing; remove it");
                }
            }
            (Role::Master, Some(m)) => p.push(
                "mode",
                format!(
                    "{:?}: the master with a bundle is the site's router",
                    m.as_str()
                ),
            ),
            (Role::Node, Some(m)) => p.push(
                "mode",
                format!(
                    "{:?}: a node with a bundle is a client of the master's router (its access list is enforced there)",
                    m.as_str()
                ),
            ),
        }
        if self.multicast_scouting {
            p.push(
                "multicast_scouting",
                "off under a bundle: list the master's endpoint in connect",
            );
        }
        if self.insecure_plaintext {
            p.push(
                "insecure_plaintext",
                "contradicts cluster.bundle; remove one",
            );
        }
    }

    fn plaintext_problems(&self, p: &mut Problems) {
        for (key, i, e) in self.endpoints() {
            if secure::protocol(e) == "tls" {
                p.push(
                    format!("{key}[{i}]"),
                    format!(
                        "{e:?}: tls/ needs cluster.bundle (from vidar-master ca init / enroll)"
                    ),
                );
            } else if !self.insecure_plaintext && !secure::is_loopback(e) {
                p.push(
                    format!("{key}[{i}]"),
                    format!(
                        "{e:?}: plain TCP off loopback lets anyone on the network steer, read and forge the cluster; set cluster.bundle (mutual TLS), or insecure_plaintext = true to accept that"
                    ),
                );
            }
        }
        if self.insecure_plaintext {
            return;
        }
        if self.multicast_scouting {
            p.push(
                "multicast_scouting",
                "finds peers across the LAN in plain TCP; set cluster.bundle, or insecure_plaintext = true",
            );
        }
    }

    /// The bundle named by `bundle`, loaded.
    pub fn bundle(&self) -> Result<Option<Bundle>, LinkError> {
        match &self.bundle {
            None => Ok(None),
            Some(dir) => Bundle::load(dir).map(Some).map_err(bundle_error),
        }
    }

    /// The key space of this site.
    pub fn keys(&self) -> Result<Keys, LinkError> {
        Keys::new(&self.site).map_err(|e| LinkError::Setting {
            key: "site",
            reason: e.to_string(),
        })
    }

    /// The zenoh configuration these settings describe, with `default_mode`
    /// when none is set (a bundle decides it: router for the master, client
    /// for a node).
    pub(crate) fn zenoh_config(
        &self,
        default_mode: Mode,
        bundle: Option<&Bundle>,
    ) -> Result<zenoh::Config, LinkError> {
        let mut config = match &self.zenoh_config {
            Some(path) => zenoh::Config::from_file(path).map_err(|e| LinkError::Setting {
                key: "zenoh_config",
                reason: format!("{}: {e}", path.display()),
            })?,
            None => zenoh::Config::default(),
        };
        let mode = self.effective_mode(default_mode, bundle);
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
        if self.send_buffer_bytes > 0 {
            let n = self.send_buffer_bytes.to_string();
            set("transport/link/tcp/so_sndbuf", n.clone())?;
            set("transport/link/tls/so_sndbuf", n)?;
        }
        if !self.connect.is_empty() {
            set("connect/endpoints", json(&self.connect))?;
        }
        if !self.listen.is_empty() || bundle.is_some() {
            set("listen/endpoints", json(&self.listen))?;
        } else if !self.insecure_plaintext {
            // zenoh's default would be every interface, in plain TCP.
            let loopback = match mode {
                Mode::Router => vec!["tcp/127.0.0.1:7447".to_string()],
                Mode::Peer => vec!["tcp/127.0.0.1:0".to_string()],
                Mode::Client => Vec::new(),
            };
            set("listen/endpoints", json(&loopback))?;
        }
        set(
            "scouting/multicast/enabled",
            self.multicast_scouting.to_string(),
        )?;
        // Keep trying to reach the endpoints we were given: the master may
        // start after its edges, or restart.
        set("connect/timeout_ms", "-1".into())?;
        set("connect/exit_on_failure", "false".into())?;
        if let Some(b) = bundle {
            // Nodes learn of each other only through the router.
            set("scouting/gossip/enabled", "false".into())?;
            let keys = self.keys()?;
            let enrolled = b.enrolled().map_err(bundle_error)?;
            secure::apply(&mut config, b, &keys, &enrolled)?;
        }
        Ok(config)
    }

    /// The endpoints the session will listen on, as zenoh's JSON (what
    /// an empty `listen` becomes).
    pub fn listen_json(&self, default_mode: Mode) -> Result<String, LinkError> {
        let bundle = self.bundle()?;
        self.zenoh_config(default_mode, bundle.as_ref())?
            .get_json("listen/endpoints")
            .map_err(|e| LinkError::Setting {
                key: "listen",
                reason: e.to_string(),
            })
    }

    fn effective_mode(&self, default_mode: Mode, bundle: Option<&Bundle>) -> Mode {
        let default = match bundle.map(|b| b.role) {
            Some(Role::Master) => Mode::Router,
            Some(Role::Node) => Mode::Client,
            None => default_mode,
        };
        self.mode.unwrap_or(default)
    }

    /// Joins the site: opens the session, behind the typed layer. Every
    /// problem of [`LinkSettings::problems`] is refused here too, so no
    /// caller can open what the checks forbid.
    pub fn open(&self, default_mode: Mode) -> Result<Link, LinkError> {
        self.check()?;
        let keys = self.keys()?;
        let bundle = self.bundle()?;
        let mut trust = sign::Trust {
            signed_keys: keys.signed(),
            ..sign::Trust::default()
        };
        if let Some(b) = &bundle {
            trust.authority = Some(b.authority());
            trust.signer = b.signer().map_err(bundle_error)?;
        } else if self.insecure_plaintext
            && self.endpoints().any(|(_, _, e)| !secure::is_loopback(e))
        {
            tracing::warn!(
                connect = ?self.connect,
                listen = ?self.listen,
                "INSECURE: the cluster link is plain TCP off loopback (cluster.insecure_plaintext = true): anyone who reaches it can steer, read and forge this site. Set cluster.bundle."
            );
        }
        let session = self.open_with(default_mode, bundle.as_ref())?;
        Ok(Link::with_trust(session, keys, trust)
            .with_certificate_expiry(bundle.as_ref().map(|b| b.not_after)))
    }

    /// Opens a raw zenoh session with these settings: for tests and tools
    /// that must speak zenoh itself (fake or hostile peers). The binaries
    /// use [`LinkSettings::open`].
    pub fn open_session(&self, default_mode: Mode) -> Result<zenoh::Session, LinkError> {
        let bundle = self.bundle()?;
        self.open_with(default_mode, bundle.as_ref())
    }

    fn open_with(
        &self,
        default_mode: Mode,
        bundle: Option<&Bundle>,
    ) -> Result<zenoh::Session, LinkError> {
        let config = self.zenoh_config(default_mode, bundle)?;
        let mode = self.effective_mode(default_mode, bundle).as_str();
        zenoh::open(config).wait().map_err(|e| LinkError::Open {
            mode,
            connect: self.connect.clone(),
            listen: self.listen.clone(),
            reason: e.to_string(),
        })
    }
}

/// A bundle that cannot be used, as a `cluster.bundle` setting error.
fn bundle_error(e: PkiError) -> LinkError {
    LinkError::Setting {
        key: "bundle",
        reason: e.to_string(),
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
    pub fn refuse(&self, key: &str, e: &dyn std::fmt::Display) {
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
    trust: &sign::Trust,
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
                let k = sample.key_expr().as_str();
                if let Some(r) = trust
                    .body(garbage, k, &bytes)
                    .and_then(|b| garbage.decode::<R>(k, b))
                {
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
    trust: std::sync::Arc<sign::Trust>,
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
    session
        .get(key)
        .payload(payload)
        .timeout(timeout)
        .callback(move |reply| match reply.result() {
            Ok(sample) => {
                let bytes = sample.payload().to_bytes();
                let k = sample.key_expr().as_str();
                if let Some(r) = trust
                    .body(&garbage, k, &bytes)
                    .and_then(|b| garbage.decode::<R>(k, b))
                {
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
        let keys: Vec<String> = s.problems().into_iter().map(|p| p.key).collect();
        // The bad endpoint is both unparsable and off loopback: two problems, one key.
        assert_eq!(keys, ["site", "connect[0]", "connect[0]"]);
        let err = s.open(Mode::Peer).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("cluster.site: ")),
            "{err:?}"
        );
    }

    #[test]
    fn builds_a_zenoh_config() {
        let s = LinkSettings {
            connect: vec!["tcp/127.0.0.1:7447".into()],
            ..LinkSettings::default()
        };
        let c = s.zenoh_config(Mode::Peer, None).expect("config");
        let mode = c.get_json("mode").expect("mode");
        assert_eq!(mode, "\"peer\"");
        let ep = c.get_json("connect/endpoints").expect("endpoints");
        assert!(ep.contains("tcp/127.0.0.1:7447"), "{ep}");
        // The kernel's send buffer unless one is asked for, on both links.
        assert_eq!(
            c.get_json("transport/link/tls/so_sndbuf").ok().as_deref(),
            Some("null")
        );
        let bounded = LinkSettings {
            send_buffer_bytes: 65536,
            ..s.clone()
        };
        let c = bounded.zenoh_config(Mode::Peer, None).expect("config");
        for link in ["tcp", "tls"] {
            let v = c.get_json(&format!("transport/link/{link}/so_sndbuf"));
            assert_eq!(v.ok().as_deref(), Some("65536"), "{link}");
        }
    }

    #[test]
    fn a_send_buffer_is_the_kernels_or_a_sane_size() {
        for (bytes, ok) in [
            (0, true),
            (4096, true),
            (65536, true),
            (100, false),
            (1 << 30, false),
        ] {
            let s = LinkSettings {
                send_buffer_bytes: bytes,
                ..LinkSettings::default()
            };
            let keys: Vec<String> = s.problems().into_iter().map(|p| p.key).collect();
            assert_eq!(
                keys.contains(&"send_buffer_bytes".to_string()),
                !ok,
                "{bytes}: {keys:?}"
            );
        }
    }
}
