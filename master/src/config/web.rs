//! The web side of the master's configuration (HTTP API and UI): users,
//! bearer tokens, sessions, TLS and the floor plan, with their validation.
//!
//! This module only parses and checks (no file is opened except to see that
//! the TLS and floor plan files exist); [`crate::http::UiState::build`] turns a
//! valid config into the running pieces.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vidar_config::{Problem, Problems};
use vidar_protocol::CameraId;

use super::MasterConfig;
use crate::password::PasswordHash;

/// Shortest accepted session lifetime or idle time, seconds.
const MIN_SESSION_S: f64 = 1.0;
/// Longest accepted session lifetime or idle time, seconds: 30 days.
const MAX_SESSION_S: f64 = 30.0 * 86_400.0;

/// Whether the UI and API ask who is calling.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Users (`[[users]]`) log in; tools send a bearer token (`[[tokens]]`). The default.
    #[default]
    Password,
    /// Nobody logs in and every caller is an admin: only allowed with a
    /// loopback `http_addr` (a developer's machine, tests).
    None,
}

/// What a user or token may do.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything (tiles, trajectories, cluster).
    Viewer,
    /// Also changes state (POST /api/sync and every other non-GET route).
    Admin,
}

impl Role {
    /// Its lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// One user of the web UI (`[[users]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name, 1..=64 characters, no control characters. Required.
    pub name: String,
    /// `viewer` or `admin`. Required.
    pub role: Role,
    /// `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`, as printed by
    /// `vidar-master hash-password`. Required.
    pub password_hash: String,
}

/// One bearer token for tools (`[[tokens]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs. Required.
    pub name: String,
    /// `viewer` or `admin`. Required.
    pub role: Role,
    /// SHA-256 of the token, 64 hex digits (`printf %s TOKEN | sha256sum`). Required.
    pub token_sha256: String,
}

/// The site's floor plan (`[floor_plan]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FloorPlanConfig {
    /// A PNG or JPEG image of the floor, at most 10 MiB. Required.
    pub image: PathBuf,
    /// Where each camera is on it. Default none.
    #[serde(default)]
    pub cameras: Vec<FloorCameraConfig>,
}

/// A camera's position on the floor plan (`[[floor_plan.cameras]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FloorCameraConfig {
    /// The camera id. Required.
    pub camera: String,
    /// Horizontal position, image pixels from the left. Required.
    pub x: f64,
    /// Vertical position, image pixels from the top. Required.
    pub y: f64,
}

/// Largest floor plan image, bytes.
pub const MAX_FLOOR_PLAN_BYTES: u64 = 10 * 1024 * 1024;

pub(crate) fn default_session_ttl_s() -> f64 {
    8.0 * 3600.0
}
pub(crate) fn default_session_idle_s() -> f64 {
    3600.0
}

/// Every problem of the UI keys of `c`, each starting with its key.
pub fn problems(c: &MasterConfig) -> Vec<Problem> {
    let mut p = Problems::new();
    let loopback = c
        .http_addr
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    match c.auth {
        AuthMode::None => {
            if !loopback {
                p.push(
                    "auth",
                    format!(
                    "\"none\" is only allowed with a loopback http_addr (127.0.0.1:PORT), not {:?}",
                    c.http_addr
                ),
                );
            }
            if !c.users.is_empty() || !c.tokens.is_empty() {
                p.push(
                    "auth",
                    "\"none\" with [[users]] or [[tokens]]: remove them or the auth key",
                );
            }
        }
        AuthMode::Password => {
            if c.users.is_empty() && c.tokens.is_empty() {
                p.push(
                    "users",
                    "none configured; add [[users]] (see `vidar-master hash-password`) \
                     or [[tokens]], or set auth = \"none\" (loopback http_addr only)",
                );
            }
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, u) in c.users.iter().enumerate() {
        if u.name.is_empty() || u.name.chars().count() > 64 || u.name.chars().any(char::is_control)
        {
            p.push(
                format!("users[{i}].name"),
                format!(
                    "{:?}: 1..=64 characters without control characters expected",
                    u.name
                ),
            );
        } else if !names.insert(u.name.as_str()) {
            p.push(
                format!("users[{i}].name"),
                format!("{:?} is listed more than once", u.name),
            );
        }
        if let Err(e) = PasswordHash::parse(&u.password_hash) {
            p.push(format!("users[{i}].password_hash"), e.to_string());
        }
    }
    let mut digests = std::collections::HashSet::new();
    for (i, t) in c.tokens.iter().enumerate() {
        if t.name.is_empty() || t.name.chars().any(char::is_control) {
            p.push(
                format!("tokens[{i}].name"),
                format!("{:?}: a non-empty name expected", t.name),
            );
        }
        let d = t.token_sha256.to_ascii_lowercase();
        if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
            p.push(
                format!("tokens[{i}].token_sha256"),
                format!(
                    "64 hex digits expected (printf %s TOKEN | sha256sum), got {} characters",
                    t.token_sha256.len()
                ),
            );
        } else if !digests.insert(d) {
            p.push(
                format!("tokens[{i}].token_sha256"),
                "the same token is listed more than once",
            );
        }
    }
    for (key, v) in [
        ("session_ttl_s", c.session_ttl_s),
        ("session_idle_s", c.session_idle_s),
    ] {
        if !(v.is_finite() && (MIN_SESSION_S..=MAX_SESSION_S).contains(&v)) {
            p.push(
                key,
                format!("{v} s, {MIN_SESSION_S}..={MAX_SESSION_S} allowed"),
            );
        }
    }
    for (k, f) in [("tls_cert", &c.tls_cert), ("tls_key", &c.tls_key)] {
        if let Some(f) = f.as_ref().filter(|f| !f.is_file()) {
            p.push(k, format!("{} is not a readable file", f.display()));
        }
    }
    match (&c.tls_cert, &c.tls_key) {
        (Some(_), None) => p.push("tls_key", "required with tls_cert"),
        (None, Some(_)) => p.push("tls_cert", "required with tls_key"),
        _ => {}
    }
    if let Some(fp) = &c.floor_plan {
        match std::fs::metadata(&fp.image) {
            Ok(m) if m.is_file() && m.len() <= MAX_FLOOR_PLAN_BYTES => {}
            Ok(m) if m.is_file() => p.push(
                "floor_plan.image",
                format!(
                    "{} is {} bytes, at most {MAX_FLOOR_PLAN_BYTES} allowed",
                    fp.image.display(),
                    m.len()
                ),
            ),
            _ => p.push(
                "floor_plan.image",
                format!("{} is not a readable file", fp.image.display()),
            ),
        }
        let mut seen = std::collections::HashSet::new();
        for (i, fc) in fp.cameras.iter().enumerate() {
            match CameraId::new(&fc.camera) {
                Ok(id) => {
                    if !seen.insert(id) {
                        p.push(
                            format!("floor_plan.cameras[{i}].camera"),
                            format!("{:?} is listed more than once", fc.camera),
                        );
                    }
                }
                Err(e) => p.push(
                    format!("floor_plan.cameras[{i}].camera"),
                    format!("{:?}: {e}", fc.camera),
                ),
            }
            for (k, v) in [("x", fc.x), ("y", fc.y)] {
                if !(v.is_finite() && (0.0..=100_000.0).contains(&v)) {
                    p.push(
                        format!("floor_plan.cameras[{i}].{k}"),
                        format!("{v}, image pixels 0..=100000 expected"),
                    );
                }
            }
        }
    }
    p.into_vec()
}
