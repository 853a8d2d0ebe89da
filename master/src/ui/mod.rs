//! The web UI served by the master: the login page, the operator's page (live
//! tiles, trajectory search, cluster view) and the API routes only the UI
//! needs (tiles, events, exports, floor plan), all behind [`auth`].
//!
//! The page is static HTML, CSS and vanilla JS embedded in the binary
//! (`master/ui/`); it builds the DOM from API JSON with `textContent`, never
//! `innerHTML`, and a strict Content-Security-Policy forbids inline scripts
//! and anything not from the master itself.

pub mod auth;
pub mod export;
pub mod tiles;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::api::{self, ApiContext};
use crate::config::MasterConfig;

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const LOGIN_HTML: &str = include_str!("../../ui/login.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");
/// Where [`LOGIN_HTML`] puts the message of a refused login.
const MESSAGE_SLOT: &str = "<!--message-->";
/// Largest login form body, bytes.
const MAX_LOGIN_BODY: usize = 8 * 1024;
/// The Content-Security-Policy of every answer.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The UI's running state, in [`ApiContext::ui`].
#[derive(Debug)]
pub struct UiState {
    /// Users, tokens and sessions.
    pub auth: Arc<auth::Auth>,
    /// The latest tile of every camera.
    pub tiles: Arc<tiles::Tiles>,
    /// The floor plan, when configured.
    pub floor_plan: Option<Arc<export::FloorPlan>>,
    /// The site's name (shown in the page's title).
    pub site: String,
    /// Password checks allowed at once ([`MAX_PASSWORD_CHECKS`]).
    pub password_checks: tokio::sync::Semaphore,
}

/// Password checks (PBKDF2, slow on purpose) running at once at most.
pub const MAX_PASSWORD_CHECKS: usize = 2;

impl UiState {
    /// Builds the UI's state from a validated config (reads the floor plan).
    pub fn build(c: &MasterConfig) -> Result<UiState, String> {
        Ok(UiState {
            auth: Arc::new(auth::Auth::from_config(c)?),
            tiles: Arc::new(tiles::Tiles::default()),
            floor_plan: c
                .floor_plan
                .as_ref()
                .map(export::FloorPlan::load)
                .transpose()?
                .map(Arc::new),
            site: c.cluster.site.clone(),
            password_checks: tokio::sync::Semaphore::new(MAX_PASSWORD_CHECKS),
        })
    }
}

/// The peer's address of a connection (plain or TLS), for the login rate limit.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerAddr(*s.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, tls::TlsListener>> for PeerAddr {
    fn connect_info(s: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        PeerAddr(*s.remote_addr())
    }
}

/// The whole HTTP application: the API ([`api::router`]), the UI's pages and
/// API routes, and the security headers on every answer.
pub fn app(state: Arc<ApiContext>) -> Router {
    let ui_api = Router::new()
        .route("/api/me", get(me))
        .route("/api/tiles", get(tiles::list))
        .route("/api/tiles/{file}", get(tiles::jpeg))
        .route("/api/events", get(tiles::events))
        .route("/api/trajectory.csv", get(export::trajectory_csv))
        .route("/api/trajectory.json", get(export::trajectory_json))
        .route("/api/floorplan", get(export::floorplan))
        .route("/api/floorplan.png", get(export::floorplan_image))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            api::authenticate,
        ));
    let pages = Router::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/static/app.js", get(app_js))
        .route("/static/app.css", get(app_css));
    api::router(state.clone())
        .merge(ui_api.with_state(state.clone()))
        .merge(pages.with_state(state))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not no-referrer: with it, browsers send `Origin: null` on same-origin
    // form posts, and the login's origin check could not tell.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The login page with `message` (plain text, escaped here) in its slot.
fn login_html(status: StatusCode, message: &str) -> Response {
    let slot = if message.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"error\" id=\"login-error\" role=\"alert\">{}</p>",
            escape_html(message)
        )
    };
    html(status, LOGIN_HTML.replace(MESSAGE_SLOT, &slot))
}

/// `s` safe to put in HTML text or a quoted attribute.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn index(State(ctx): State<Arc<ApiContext>>, req: Request) -> Response {
    if ctx.ui.auth.principal(req.headers()).is_none() {
        return Redirect::to("/login").into_response();
    }
    html(StatusCode::OK, INDEX_HTML.to_string())
}

async fn login_page(State(ctx): State<Arc<ApiContext>>, req: Request) -> Response {
    if ctx.ui.auth.is_open() || ctx.ui.auth.principal(req.headers()).is_some() {
        return Redirect::to("/").into_response();
    }
    login_html(StatusCode::OK, "")
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(State(ctx): State<Arc<ApiContext>>, req: Request) -> Response {
    if ctx.ui.auth.is_open() {
        return Redirect::to("/").into_response();
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0 .0.ip());
    if !api::same_origin(req.headers()) {
        return login_html(StatusCode::FORBIDDEN, "Cross-origin login refused.");
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_LOGIN_BODY).await {
        Ok(b) => b,
        Err(_) => return login_html(StatusCode::PAYLOAD_TOO_LARGE, "Login form too large."),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return login_html(
            StatusCode::BAD_REQUEST,
            "The login form needs a user and a password.",
        );
    };
    // Each check is deliberately slow: bound how many run at once, so a
    // flood of logins cannot take every core.
    let Ok(_permit) = ctx.ui.password_checks.acquire().await else {
        return login_html(StatusCode::SERVICE_UNAVAILABLE, "The master is stopping.");
    };
    let a = ctx.ui.auth.clone();
    let r = tokio::task::spawn_blocking(move || a.login(&form.user, &form.password, ip)).await;
    match r {
        Ok(Ok((id, _))) => {
            let mut res = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&ctx.ui.auth.set_cookie(&id)) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Ok(Err(auth::LoginRefused::Wrong)) => {
            login_html(StatusCode::UNAUTHORIZED, "Wrong user name or password.")
        }
        Ok(Err(auth::LoginRefused::Locked(s))) => {
            let mut res = login_html(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many failed logins: try again in {s} s."),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "login task failed");
            login_html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Login failed; see the master's log.",
            )
        }
    }
}

async fn logout(State(ctx): State<Arc<ApiContext>>, req: Request) -> Response {
    if !api::same_origin(req.headers()) {
        return (StatusCode::FORBIDDEN, "cross-origin logout refused").into_response();
    }
    if let Some(id) = auth::cookie(req.headers(), auth::COOKIE) {
        ctx.ui.auth.logout(id);
    }
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&ctx.ui.auth.clear_cookie()) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn me(
    State(ctx): State<Arc<ApiContext>>,
    Extension(who): Extension<auth::Principal>,
) -> impl IntoResponse {
    Json(json!({
        "name": who.name,
        "role": who.role,
        "site": ctx.ui.site,
        "auth": !ctx.ui.auth.is_open(),
    }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from(body),
    )
        .into_response()
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<img src=x onerror='a()'>&\""),
            "&lt;img src=x onerror=&#39;a()&#39;&gt;&amp;&quot;"
        );
    }

    #[test]
    fn assets_are_light_and_self_contained() {
        let total = INDEX_HTML.len() + LOGIN_HTML.len() + APP_JS.len() + APP_CSS.len();
        assert!(total < 60 * 1024, "UI assets are {total} bytes");
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("login.html", LOGIN_HTML),
            ("app.js", APP_JS),
            ("app.css", APP_CSS),
        ] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{name} loads something external"
            );
            assert!(!text.contains("innerHTML"), "{name} uses innerHTML");
            assert!(!text.contains("<script>"), "{name} has an inline script");
        }
        assert!(LOGIN_HTML.contains(MESSAGE_SLOT));
    }
}
