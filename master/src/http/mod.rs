//! The master's HTTP side: the JSON API (record queries over the global
//! database plus what the edges hold but have not synchronised yet; the
//! cluster's nodes and plan; health and Prometheus metrics) and the web UI
//! (login, the operator's page, live tiles, exports, floor plan), as one
//! axum [`app`].
//!
//! Layers, each using only those above it in this list:
//! - [`listen`]: how connections arrive (TLS, the peer's address);
//! - [`auth`]: who is calling (sessions, bearer tokens, failed-login limit;
//!   password hashes are [`crate::password`]'s);
//! - [`floor_plan`]: the floor plan image, loaded at start;
//! - [`state`]: [`ApiContext`], what every route reads;
//! - [`middleware`]: what a caller may do, and the security headers;
//! - [`error`] and [`params`]: error answers and checked query parameters;
//! - the routes: [`records`] (asking the edges through [`crate::query`]),
//!   [`corrections`] (operators' corrections through [`crate::corrections`]),
//!   [`cluster`], [`metrics`], and the UI's [`pages`], [`tiles`] and [`export`].
//!
//! Every `/api` route passes through [`middleware::authenticate`]: no valid
//! session or bearer token is a 401, a viewer calling anything but GET/HEAD is
//! a 403. `/metrics` does too unless configured public; `/healthz`, the pages
//! and their assets do not.

pub mod auth;
pub mod cluster;
pub mod corrections;
pub mod error;
pub mod export;
pub mod floor_plan;
pub mod jobs;
pub mod listen;
pub mod metrics;
pub mod middleware;
pub mod pages;
pub mod params;
pub mod records;
pub mod state;
pub mod throttle;
pub mod tiles;
pub mod training;

use std::sync::Arc;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
pub use metrics::render_metrics;
pub use state::{ApiContext, UiState, EDGE_TIMEOUT};

/// Limits of the master's HTTP server (`vidar_runtime::serve_on`): requests
/// fan out to edges (1 s each) and password checks queue, hence the 30 s
/// deadline; live-tile streams hold a connection each, and an office behind
/// one proxy shares one address, hence 64 an address.
pub const LIMITS: vidar_runtime::HttpLimits = vidar_runtime::HttpLimits {
    header_timeout: std::time::Duration::from_secs(10),
    request_timeout: std::time::Duration::from_secs(30),
    max_connections: 1024,
    max_per_addr: 64,
    keep_alive: true,
};

/// The whole HTTP application on `state`: the API's and the UI's routes, and
/// the security headers on every answer. Serve it with
/// `vidar_runtime::serve_on`, which gives the routes the peer's address as
/// `ConnectInfo<SocketAddr>` (the login's rate limit reads it).
pub fn app(state: Arc<ApiContext>) -> Router {
    let authenticate = || from_fn_with_state(state.clone(), middleware::authenticate);
    let api = Router::new()
        .route("/api/trajectory", get(records::trajectory))
        .route("/api/sightings", get(records::sightings))
        .route("/api/identities", get(records::identities))
        .route("/api/snapshot/{identity}", get(records::snapshot))
        .route(
            "/api/corrections",
            get(corrections::list).post(corrections::correct),
        )
        .route("/api/nodes", get(cluster::nodes))
        .route("/api/plan", get(cluster::plan))
        .route("/api/models", get(cluster::models))
        .route("/api/sync", post(cluster::sync_now))
        .route("/api/jobs", get(jobs::list).post(jobs::submit))
        .route("/api/jobs/{id}", axum::routing::delete(jobs::cancel))
        .route("/api/jobs/{id}/results", get(jobs::results))
        .route("/api/training", get(training::state).post(training::start))
        .route("/api/me", get(pages::me))
        .route("/api/tiles", get(tiles::list))
        .route("/api/tiles/{file}", get(tiles::jpeg))
        .route("/api/events", get(tiles::events))
        .route("/api/trajectory.csv", get(export::trajectory_csv))
        .route("/api/trajectory.json", get(export::trajectory_json))
        .route("/api/floorplan", get(export::floorplan))
        .route("/api/floorplan.png", get(export::floorplan_image))
        .route_layer(authenticate());
    let scrape = if state.ui.auth.metrics_public() {
        get(metrics::metrics)
    } else {
        get(metrics::metrics).route_layer(authenticate())
    };
    let pages = Router::new()
        .route("/", get(pages::index))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/static/app.js", get(pages::app_js))
        .route("/static/app.css", get(pages::app_css));
    let tls = state.ui.auth.tls();
    let check_host = from_fn_with_state(state.clone(), middleware::check_host);
    let router = Router::new()
        .merge(api)
        .route("/healthz", get(cluster::healthz))
        .route("/metrics", scrape)
        .merge(pages)
        .layer(check_host)
        .with_state(state);
    if tls {
        router.layer(axum::middleware::from_fn(middleware::security_headers_tls))
    } else {
        router.layer(axum::middleware::from_fn(middleware::security_headers))
    }
}
