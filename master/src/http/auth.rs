//! Who is calling: login sessions (a random 256-bit id in an HttpOnly,
//! SameSite=Strict cookie, a server-side table with absolute and idle
//! expiry), bearer tokens (stored as SHA-256), and the rate limit on failed
//! logins. Password hashes are [`crate::password`]'s.
//!
//! Secrets are compared in constant time. Password checks are slow on
//! purpose: callers run [`Auth::login`] on the blocking pool. This
//! module decides who a request is; the middleware decides what it may do
//! ([`super::middleware::authenticate`]). It knows nothing of the routes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::throttle::Throttle;
use crate::config::{AuthMode, MasterConfig, Role};
use crate::password::{constant_time_eq, PasswordHash, MIN_ITERATIONS};

/// The session cookie's name over plain HTTP.
pub const COOKIE: &str = "vidar_session";
/// The session cookie's name under TLS: the `__Host-` prefix makes browsers
/// refuse it unless it is `Secure`, on `/` and set by this very host (no
/// `Domain`), so no other site or subdomain can plant or overwrite it.
pub const TLS_COOKIE: &str = "__Host-vidar_session";
/// Most sessions held; beyond, the least recently used one is dropped.
pub const MAX_SESSIONS: usize = 10_000;
/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A login session (its id).
    Session(String),
    /// A bearer token.
    Token,
    /// `auth = "none"`.
    Anonymous,
}

/// An authenticated caller.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// User or token name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// How it authenticated.
    #[serde(skip)]
    pub via: Via,
}

#[derive(Debug)]
struct Session {
    user: String,
    role: Role,
    created: Instant,
    last: Instant,
}

/// Why a login was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginRefused {
    /// Unknown user or wrong password (never says which).
    Wrong,
    /// Too many failures: retry after this many seconds.
    Locked(u64),
}

/// The users, tokens, sessions and failure counters.
#[derive(Debug)]
pub struct Auth {
    mode: AuthMode,
    users: HashMap<String, (Role, PasswordHash)>,
    tokens: Vec<(String, Role, [u8; 32])>,
    /// Checked for unknown users so that they take as long as known ones.
    dummy: PasswordHash,
    ttl: Duration,
    idle: Duration,
    secure_cookie: bool,
    metrics_public: bool,
    sessions: Mutex<HashMap<String, Session>>,
    throttle: Throttle,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// The value of cookie `name` in `headers`, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

impl Auth {
    /// The users and tokens of a validated config.
    pub fn from_config(c: &MasterConfig) -> Result<Auth, String> {
        let mut users = HashMap::new();
        for (i, u) in c.users.iter().enumerate() {
            let h = PasswordHash::parse(&u.password_hash)
                .map_err(|e| format!("users[{i}].password_hash: {e}"))?;
            users.insert(u.name.clone(), (u.role, h));
        }
        let mut tokens = Vec::new();
        for (i, t) in c.tokens.iter().enumerate() {
            let d = unhex(&t.token_sha256.to_ascii_lowercase())
                .ok_or_else(|| format!("tokens[{i}].token_sha256: 64 hex digits expected"))?;
            tokens.push((t.name.clone(), t.role, d));
        }
        let iterations = users
            .values()
            .map(|(_, h)| h.iterations())
            .max()
            .unwrap_or(MIN_ITERATIONS);
        let dummy = PasswordHash::placeholder(iterations);
        Ok(Auth {
            mode: c.auth,
            users,
            tokens,
            dummy,
            ttl: Duration::from_secs_f64(c.session_ttl_s),
            idle: Duration::from_secs_f64(c.session_idle_s),
            secure_cookie: c.tls_cert.is_some(),
            metrics_public: c.metrics_public,
            sessions: Mutex::new(HashMap::new()),
            throttle: Throttle::default(),
        })
    }

    /// Whether nobody needs to log in (`auth = "none"`).
    pub fn is_open(&self) -> bool {
        self.mode == AuthMode::None
    }

    /// Whether /metrics is served without authentication.
    pub fn metrics_public(&self) -> bool {
        self.metrics_public || self.is_open()
    }

    /// Who sent a request with `headers`: a bearer token if there is an
    /// `Authorization` header (a wrong one is refused, never ignored), else the
    /// session cookie. Touches the session (idle expiry).
    pub fn principal(&self, headers: &HeaderMap) -> Option<Principal> {
        if self.is_open() {
            return Some(Principal {
                name: "anonymous".into(),
                role: Role::Admin,
                via: Via::Anonymous,
            });
        }
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            let v = v.to_str().ok()?;
            let (scheme, token) = v.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
            // Compare with every token, so the time does not tell which matched.
            let mut found = None;
            for (name, role, d) in &self.tokens {
                if constant_time_eq(&digest, d) {
                    found = Some((name, *role));
                }
            }
            return found.map(|(name, role)| Principal {
                name: name.clone(),
                role,
                via: Via::Token,
            });
        }
        let id = cookie(headers, self.cookie_name())?;
        self.session(id, true)
    }

    /// The session `id` if it is alive; `touch` records activity.
    pub fn session(&self, id: &str, touch: bool) -> Option<Principal> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(id)?;
        if now.duration_since(s.created) >= self.ttl || now.duration_since(s.last) >= self.idle {
            sessions.remove(id);
            return None;
        }
        if touch {
            s.last = now;
        }
        Some(Principal {
            name: s.user.clone(),
            role: s.role,
            via: Via::Session(id.to_string()),
        })
    }

    /// Whether `p` may still act (its session was not closed or expired).
    pub fn still_valid(&self, p: &Principal) -> bool {
        match &p.via {
            Via::Session(id) => self.session(id, false).is_some(),
            Via::Token | Via::Anonymous => true,
        }
    }

    /// `Some(seconds to wait)` when `user` from `ip` must wait before trying
    /// again (progressive slow-down after failures, see [`Throttle`]).
    pub fn locked(&self, user: &str, ip: Option<IpAddr>) -> Option<u64> {
        self.throttle.login_wait(user, ip)
    }

    /// `Some(seconds to wait)` when requests with a bearer token from `ip`
    /// must wait after wrong tokens.
    pub fn bearer_wait(&self, ip: Option<IpAddr>) -> Option<u64> {
        self.throttle.bearer_wait(ip)
    }

    /// Counts a wrong bearer token from `ip`.
    pub fn bearer_failed(&self, ip: Option<IpAddr>) {
        self.throttle.bearer_failed(ip)
    }

    /// Checks a login (slow: on the blocking pool). On success the user's
    /// failures are forgotten and a session opens; its id is returned.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<(String, Principal), LoginRefused> {
        if let Some(wait) = self.locked(user, ip) {
            return Err(LoginRefused::Locked(wait));
        }
        let ok = match self.users.get(user) {
            Some((role, h)) => h.verify(password).then_some(*role),
            None => {
                let _ = self.dummy.verify(password);
                None
            }
        };
        let Some(role) = ok else {
            self.throttle.login_failed(user, ip);
            tracing::warn!(user = %user.escape_debug(), ip = ?ip, "login refused");
            return Err(LoginRefused::Wrong);
        };
        self.throttle.login_ok(user, ip);
        let mut raw = [0u8; 32];
        if let Err(e) = rand::rngs::OsRng.try_fill_bytes(&mut raw) {
            tracing::error!(error = %e, "the system's random source failed; login refused");
            return Err(LoginRefused::Wrong);
        }
        let id = hex(&raw);
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| {
                now.duration_since(s.created) < self.ttl && now.duration_since(s.last) < self.idle
            });
        }
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                role,
                created: now,
                last: now,
            },
        );
        tracing::info!(user = %user, role = role.as_str(), ip = ?ip, "login");
        let p = Principal {
            name: user.to_string(),
            role,
            via: Via::Session(id.clone()),
        };
        Ok((id, p))
    }

    /// Ends session `id`.
    pub fn logout(&self, id: &str) {
        if let Some(s) = lock(&self.sessions).remove(id) {
            tracing::info!(user = %s.user, "logout");
        }
    }

    /// Sessions alive now.
    pub fn sessions(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Whether the master serves HTTPS (cookies `Secure`, HSTS sent).
    pub fn tls(&self) -> bool {
        self.secure_cookie
    }

    /// The session cookie's name: [`TLS_COOKIE`] under TLS, else [`COOKIE`].
    pub fn cookie_name(&self) -> &'static str {
        if self.secure_cookie {
            TLS_COOKIE
        } else {
            COOKIE
        }
    }

    /// The `Set-Cookie` value that opens session `id`.
    pub fn set_cookie(&self, id: &str) -> String {
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.cookie_name(),
            self.ttl.as_secs(),
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            self.cookie_name(),
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::throttle::{MAX_BEARER_FAILURES, MAX_DELAY, MAX_USER_FAILURES};
    use std::path::Path;

    fn auth(extra: &str) -> Auth {
        let h = PasswordHash::create("pw", 1000).expect("random").encode();
        let text = format!(
            "database = \"/tmp/x.db\"\n{extra}\n[[users]]\nname = \"ann\"\nrole = \"viewer\"\npassword_hash = \"{h}\"\n\
             [[tokens]]\nname = \"ci\"\nrole = \"admin\"\n\
             token_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n"
        );
        let c = MasterConfig::parse(&text, Path::new("t.toml")).expect("valid");
        Auth::from_config(&c).expect("auth")
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn sessions_tokens_and_lockout() {
        let a = auth("");
        assert!(a.principal(&HeaderMap::new()).is_none());
        // sha256("test") is the configured token.
        let p = a
            .principal(&headers(&[(header::AUTHORIZATION, "Bearer test")]))
            .expect("token");
        assert_eq!((p.name.as_str(), p.role), ("ci", Role::Admin));
        assert!(a
            .principal(&headers(&[(header::AUTHORIZATION, "Bearer nope")]))
            .is_none());
        assert!(a
            .principal(&headers(&[(header::AUTHORIZATION, "Basic dGVzdA==")]))
            .is_none());

        assert_eq!(a.login("ann", "bad", None).err(), Some(LoginRefused::Wrong));
        assert_eq!(a.login("bob", "pw", None).err(), Some(LoginRefused::Wrong));
        let (id, p) = a.login("ann", "pw", None).expect("login");
        assert_eq!(p.role, Role::Viewer);
        assert_eq!(id.len(), 64);
        let cookie = format!("other=1; {COOKIE}={id}");
        let p = a
            .principal(&headers(&[(header::COOKIE, &cookie)]))
            .expect("session");
        assert_eq!(p.name, "ann");
        assert!(a.still_valid(&p));
        assert!(a.set_cookie(&id).contains("HttpOnly; SameSite=Strict"));
        a.logout(&id);
        assert!(!a.still_valid(&p));
        assert!(a
            .principal(&headers(&[(header::COOKIE, &cookie)]))
            .is_none());

        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..MAX_USER_FAILURES {
            assert_eq!(
                a.login("ann", "bad", Some(ip)).err(),
                Some(LoginRefused::Wrong)
            );
        }
        assert!(matches!(
            a.login("ann", "pw", Some(ip)),
            Err(LoginRefused::Locked(s)) if s > 0 && s <= MAX_DELAY.as_secs()
        ));
    }

    #[test]
    fn failures_slow_the_guesser_down_not_the_user_nor_the_proxy() {
        let a = auth("");
        let attacker: IpAddr = [10, 0, 0, 66].into();
        let ann_home: IpAddr = [10, 0, 0, 7].into();
        // 40 guesses at ann's password from one address (waiting out each
        // delay is simulated by forgetting when the last failure was).
        for _ in 0..40 {
            let _ = a.login("ann", "bad", Some(attacker));
            a.throttle.backdate(MAX_DELAY);
        }
        // The attacker must wait, at most MAX_DELAY, never 300 s.
        let _ = a.login("ann", "bad", Some(attacker));
        match a.login("ann", "pw", Some(attacker)) {
            Err(LoginRefused::Locked(s)) => assert!(s <= MAX_DELAY.as_secs(), "{s}"),
            other => panic!("expected a wait, got {other:?}"),
        }
        // Ann, from her own address, logs in at once (issue 16: five
        // failures used to lock the account for everyone for 300 s).
        assert!(a.login("ann", "pw", Some(ann_home)).is_ok());
        // Someone else behind the attacker's address (a proxy) is not slowed.
        assert!(a.locked("ann", Some([10, 0, 0, 67].into())).is_none());
    }

    #[test]
    fn wrong_bearer_tokens_slow_down_their_address_only() {
        let a = auth("");
        let prober: IpAddr = [10, 0, 0, 66].into();
        for _ in 0..MAX_BEARER_FAILURES {
            assert!(a.bearer_wait(Some(prober)).is_none());
            a.bearer_failed(Some(prober));
        }
        let wait = a.bearer_wait(Some(prober)).expect("slowed");
        assert!(wait >= 1 && wait <= MAX_DELAY.as_secs(), "{wait}");
        assert!(a.bearer_wait(Some([10, 0, 0, 7].into())).is_none());
    }

    #[test]
    fn sessions_expire() {
        let a = auth("session_ttl_s = 1\nsession_idle_s = 1");
        let (id, _) = a.login("ann", "pw", None).expect("login");
        assert!(a.session(&id, true).is_some());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(a.session(&id, true).is_none());
        assert_eq!(a.sessions(), 0);
    }
}
