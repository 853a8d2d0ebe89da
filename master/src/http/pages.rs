//! The web UI's pages: the login page, the operator's page (live tiles,
//! trajectory search, cluster view), its script and style sheet, login,
//! logout and `/api/me`.
//!
//! The page is static HTML, CSS and vanilla JS embedded in the binary
//! (`master/ui/`); it builds the DOM from API JSON with `textContent`, never
//! `innerHTML`, and the Content-Security-Policy of
//! [`super::middleware::security_headers`] forbids inline scripts and
//! anything not from the master itself.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::auth::{cookie, LoginRefused, Principal};
use super::middleware::same_origin;
use super::state::ApiContext;

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const LOGIN_HTML: &str = include_str!("../../ui/login.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");
/// Where [`LOGIN_HTML`] puts the message of a refused login.
const MESSAGE_SLOT: &str = "<!--message-->";
/// Largest login form body, bytes.
const MAX_LOGIN_BODY: usize = 8 * 1024;

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

/// `GET /`: the operator's page, or a redirect to the login page.
pub(super) async fn index(State(ctx): State<Arc<ApiContext>>, req: Request) -> Response {
    if ctx.ui.auth.principal(req.headers()).is_none() {
        return Redirect::to("/login").into_response();
    }
    html(StatusCode::OK, INDEX_HTML.to_string())
}

/// `GET /login`.
pub(super) async fn login_page(State(ctx): State<Arc<ApiContext>>, req: Request) -> Response {
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

/// `POST /login`: checks the form (at most
/// [`MAX_PASSWORD_CHECKS`](super::state::MAX_PASSWORD_CHECKS) at once),
/// opens a session and sets its cookie.
pub(super) async fn login(State(ctx): State<Arc<ApiContext>>, req: Request) -> Response {
    if ctx.ui.auth.is_open() {
        return Redirect::to("/").into_response();
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if !same_origin(req.headers()) {
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
        Ok(Err(LoginRefused::Wrong)) => {
            login_html(StatusCode::UNAUTHORIZED, "Wrong user name or password.")
        }
        Ok(Err(LoginRefused::Locked(s))) => {
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

/// `POST /logout`.
pub(super) async fn logout(State(ctx): State<Arc<ApiContext>>, req: Request) -> Response {
    if !same_origin(req.headers()) {
        return (StatusCode::FORBIDDEN, "cross-origin logout refused").into_response();
    }
    if let Some(id) = cookie(req.headers(), ctx.ui.auth.cookie_name()) {
        ctx.ui.auth.logout(id);
    }
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&ctx.ui.auth.clear_cookie()) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `GET /api/me`: who is calling, and the site.
pub(super) async fn me(
    State(ctx): State<Arc<ApiContext>>,
    Extension(who): Extension<Principal>,
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

/// `GET /static/app.js`.
pub(super) async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /static/app.css`.
pub(super) async fn app_css() -> Response {
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
