//! Who is calling: password hashes (PBKDF2-HMAC-SHA256), login sessions (a
//! random 256-bit id in an HttpOnly, SameSite=Strict cookie, a server-side
//! table with absolute and idle expiry), bearer tokens (stored as SHA-256),
//! and the rate limit on failed logins.
//!
//! Secrets are compared in constant time. Password hashing is slow on
//! purpose: callers run [`Auth::check_password`] on the blocking pool. This
//! module decides who a request is; the routes decide what it may do
//! ([`crate::api::authenticate`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::{AuthMode, Role};
use crate::MasterConfig;

/// The session cookie's name.
pub const COOKIE: &str = "vidar_session";
/// PBKDF2 iterations of `vidar-master hash-password` (OWASP's 2023 figure).
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// Fewest PBKDF2 iterations accepted in a configured hash.
pub const MIN_ITERATIONS: u32 = 1_000;
/// Most PBKDF2 iterations accepted (a login must not take minutes).
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Most sessions held; beyond, the least recently used one is dropped.
pub const MAX_SESSIONS: usize = 10_000;
/// Failed logins of one user name in [`FAILURE_WINDOW`] before it is locked.
pub const MAX_USER_FAILURES: u32 = 5;
/// Failed logins from one address in [`FAILURE_WINDOW`] before it is locked.
pub const MAX_IP_FAILURES: u32 = 20;
/// How long failures count, and how long a lock lasts.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Most (user or address) failure counters kept.
const MAX_FAILURE_KEYS: usize = 10_000;

type HmacSha256 = Hmac<Sha256>;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const B64_NO_PAD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// PBKDF2-HMAC-SHA256 with a 32-byte output (one block, RFC 8018).
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(key) = HmacSha256::new_from_slice(password) else {
        return [0; 32];
    };
    let mut mac = key.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut mac = key.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// Whether `a == b`, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A parsed `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PasswordHash(pbkdf2-sha256, {} iterations)",
            self.iterations
        )
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).or_else(|_| B64_NO_PAD.decode(s)).ok()
}

impl PasswordHash {
    /// Parses a configured hash, saying what is wrong with it.
    pub fn parse(s: &str) -> Result<PasswordHash, String> {
        let parts: Vec<&str> = s.split('$').collect();
        let [scheme, iterations, salt, hash] = parts[..] else {
            return Err("expected pbkdf2-sha256$<iterations>$<salt base64>$<hash base64> (run `vidar-master hash-password`)".into());
        };
        if scheme != "pbkdf2-sha256" {
            return Err(format!(
                "scheme {scheme:?}, only pbkdf2-sha256 is supported"
            ));
        }
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(n))
            .ok_or_else(|| {
                format!("iterations {iterations:?}, {MIN_ITERATIONS}..={MAX_ITERATIONS} expected")
            })?;
        let salt = b64(salt)
            .filter(|s| s.len() >= 8)
            .ok_or("salt: base64 of at least 8 bytes expected")?;
        let hash = b64(hash)
            .filter(|h| h.len() == 32)
            .ok_or("hash: base64 of 32 bytes expected")?;
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Hashes `password` with a fresh random 16-byte salt.
    pub fn create(password: &str, iterations: u32) -> Result<PasswordHash, String> {
        let mut salt = vec![0u8; 16];
        rand::rngs::OsRng
            .try_fill_bytes(&mut salt)
            .map_err(|e| format!("the system's random source failed: {e}"))?;
        let hash = pbkdf2_sha256(password.as_bytes(), &salt, iterations).to_vec();
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// The configuration form.
    pub fn encode(&self) -> String {
        format!(
            "pbkdf2-sha256${}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.hash)
        )
    }

    /// Whether `password` matches (slow: run it on the blocking pool).
    pub fn verify(&self, password: &str) -> bool {
        let got = pbkdf2_sha256(password.as_bytes(), &self.salt, self.iterations);
        constant_time_eq(&got, &self.hash)
    }
}

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

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
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
    failures: Mutex<HashMap<String, Failures>>,
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
            .map(|(_, h)| h.iterations)
            .max()
            .unwrap_or(MIN_ITERATIONS);
        let dummy = PasswordHash {
            iterations,
            salt: vec![0; 16],
            hash: vec![0; 32],
        };
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
            failures: Mutex::new(HashMap::new()),
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
        let id = cookie(headers, COOKIE)?;
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

    /// `Some(seconds to wait)` if `user` or `ip` is locked after failures.
    pub fn locked(&self, user: &str, ip: Option<IpAddr>) -> Option<u64> {
        let failures = lock(&self.failures);
        let mut wait = None;
        for (key, max) in failure_keys(user, ip) {
            if let Some(f) = failures.get(&key) {
                let age = f.since.elapsed();
                if f.count >= max && age < FAILURE_WINDOW {
                    let left = (FAILURE_WINDOW - age).as_secs() + 1;
                    wait = Some(wait.map_or(left, |w: u64| w.max(left)));
                }
            }
        }
        wait
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
            self.fail(user, ip);
            tracing::warn!(user = %user.escape_debug(), ip = ?ip, "login refused");
            return Err(LoginRefused::Wrong);
        };
        lock(&self.failures).remove(&format!("user:{user}"));
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

    fn fail(&self, user: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_FAILURE_KEYS {
            failures.retain(|_, f| now.duration_since(f.since) < FAILURE_WINDOW);
            if failures.len() >= MAX_FAILURE_KEYS {
                // Flooded with distinct names: forget the user counters, keep
                // the per-address ones that stop the flood.
                failures.retain(|k, _| k.starts_with("ip:"));
            }
        }
        for (key, _) in failure_keys(user, ip) {
            let f = failures.entry(key).or_insert(Failures {
                count: 0,
                since: now,
            });
            if now.duration_since(f.since) >= FAILURE_WINDOW {
                *f = Failures {
                    count: 0,
                    since: now,
                };
            }
            f.count += 1;
        }
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

    /// The `Set-Cookie` value that opens session `id`.
    pub fn set_cookie(&self, id: &str) -> String {
        format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.ttl.as_secs(),
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }
}

fn failure_keys(user: &str, ip: Option<IpAddr>) -> Vec<(String, u32)> {
    let name: String = user.chars().take(64).collect();
    let mut keys = vec![(format!("user:{name}"), MAX_USER_FAILURES)];
    if let Some(ip) = ip {
        keys.push((format!("ip:{ip}"), MAX_IP_FAILURES));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn hexs(b: &[u8]) -> String {
        hex(b)
    }

    #[test]
    fn pbkdf2_matches_known_vectors() {
        // RFC 7914 section 11 (first 32 bytes) and the common SHA-256 vectors.
        assert_eq!(
            hexs(&pbkdf2_sha256(b"passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        assert_eq!(
            hexs(&pbkdf2_sha256(b"password", b"salt", 1)),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
        assert_eq!(
            hexs(&pbkdf2_sha256(b"password", b"salt", 4096)),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn hashes_round_trip_and_bad_ones_are_explained() {
        let h = PasswordHash::create("s3cret", 1000).expect("random");
        let text = h.encode();
        assert!(text.starts_with("pbkdf2-sha256$1000$"), "{text}");
        let back = PasswordHash::parse(&text).expect("parses");
        assert!(back.verify("s3cret"));
        assert!(!back.verify("s3cret "));
        assert!(!back.verify(""));
        for (bad, why) in [
            ("plain", "expected pbkdf2-sha256$"),
            ("md5$1000$c2FsdHNhbHQ=$aGFzaA==", "scheme"),
            ("pbkdf2-sha256$10$c2FsdHNhbHQ=$aGFzaA==", "iterations"),
            ("pbkdf2-sha256$1000$!!$aGFzaA==", "salt"),
            ("pbkdf2-sha256$1000$c2FsdHNhbHQ=$aGFzaA==", "hash"),
        ] {
            let e = PasswordHash::parse(bad).err().unwrap_or_default();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

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
            Err(LoginRefused::Locked(s)) if s > 0 && s <= FAILURE_WINDOW.as_secs() + 1
        ));
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
