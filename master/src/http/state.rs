//! The state every route reads: [`ApiContext`] (handles on the services,
//! the database's path, the zenoh session for edge queries) and its web part
//! [`UiState`] (users and sessions, live tiles, floor plan).
//!
//! The bottom of the HTTP side: it holds handles and builds the UI's pieces
//! from a validated config, and has no routes or middleware.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vidar_protocol::Keys;
use vidar_store::WriterHandle;

use super::auth::Auth;
use super::floor_plan::FloorPlan;
use crate::config::MasterConfig;
use crate::membership::Membership;
use crate::merge_service::MergeCounters;
use crate::plans::Plans;
use crate::sync::Sync;
use crate::tiles::Tiles;

/// How long a query waits for each edge.
pub const EDGE_TIMEOUT: Duration = Duration::from_secs(1);
/// Password checks (PBKDF2, slow on purpose) running at once at most.
pub const MAX_PASSWORD_CHECKS: usize = 2;

/// Everything the handlers need.
#[derive(Debug)]
pub struct ApiContext {
    /// The master's health registry (`/healthz`).
    pub health: vidar_runtime::Health,
    /// The global database.
    pub database: PathBuf,
    /// The site link (edge queries).
    pub link: vidar_link::Link,
    /// The site's keys.
    pub keys: Keys,
    /// The membership table.
    pub membership: Membership,
    /// The plan service's handle.
    pub plans: Plans,
    /// The sync service's handle.
    pub sync: Sync,
    /// Merge counters.
    pub merges: Arc<MergeCounters>,
    /// Operators' corrections.
    pub corrections: Arc<crate::corrections::Desk>,
    /// The global database's writer (stats).
    pub writer: WriterHandle,
    /// How long to wait for each edge.
    pub edge_timeout: Duration,
    /// The edges that did not answer lately (not asked until their back-off ends).
    pub edge_silence: crate::query::Silence,
    /// The web UI's state (authentication, live tiles, floor plan).
    pub ui: UiState,
    /// The model registry's folder (`/api/models`).
    pub models_dir: PathBuf,
    /// The job book (`jobs_dir`).
    pub jobs: crate::jobs::Book,
    /// Split training rounds (`/api/training`).
    pub training: crate::training::Training,
    /// `[training]` as configured.
    pub training_config: crate::training::TrainingConfig,
}

impl ApiContext {
    /// Messages refused on Vidar's keys: undecodable payloads on any key,
    /// statuses the membership table refused, identity announcements
    /// under another node's key, and sync records past what their node
    /// reported and past what was asked of it (`Sync::beyond`) or that
    /// only the master makes (merges, corrections).
    pub fn refused(&self) -> u64 {
        self.link.garbage().refused()
            + self.membership.refused()
            + self.sync.beyond()
            + self.sync.masters_only()
            + self
                .merges
                .refused
                .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The UI's running state, in [`ApiContext::ui`].
#[derive(Debug)]
pub struct UiState {
    /// Users, tokens and sessions.
    pub auth: Arc<Auth>,
    /// The latest tile of every camera.
    pub tiles: Arc<Tiles>,
    /// The floor plan, when configured.
    pub floor_plan: Option<Arc<FloorPlan>>,
    /// The site's name (shown in the page's title).
    pub site: String,
    /// Password checks allowed at once ([`MAX_PASSWORD_CHECKS`]).
    pub password_checks: tokio::sync::Semaphore,
    /// The `Host` names answered (lower case, no port); empty: any.
    pub allowed_hosts: Vec<String>,
}

impl UiState {
    /// Builds the UI's state from a validated config (reads the floor plan).
    pub fn build(c: &MasterConfig) -> Result<UiState, String> {
        Ok(UiState {
            auth: Arc::new(Auth::from_config(c)?),
            tiles: Arc::new(Tiles::default()),
            floor_plan: c
                .floor_plan
                .as_ref()
                .map(FloorPlan::load)
                .transpose()?
                .map(Arc::new),
            site: c.cluster.site.clone(),
            allowed_hosts: allowed_hosts(c),
            password_checks: tokio::sync::Semaphore::new(MAX_PASSWORD_CHECKS),
        })
    }
}

/// The host names the UI and API answer to: the configured ones, or the
/// loopback names when `http_addr` is on loopback, or any (empty).
fn allowed_hosts(c: &MasterConfig) -> Vec<String> {
    if !c.allowed_hosts.is_empty() {
        return c
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
    }
    let loopback = c
        .http_addr
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    if loopback {
        ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()
    } else {
        Vec::new()
    }
}
