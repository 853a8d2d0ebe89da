//! The middleware of the HTTP app: [`authenticate`] (what a caller may do,
//! once [`super::auth`] has said who it is), the same-origin check of
//! state-changing browser requests, and the [`security_headers`] of every
//! answer. It reads the state; it serves nothing itself.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::auth::Via;
use super::state::ApiContext;
use crate::config::Role;

/// The Content-Security-Policy of every answer.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The authentication of every `/api` route (and of /metrics unless public):
/// the caller's session or bearer token, else 401; GET and HEAD for everyone,
/// anything else (it changes state) for admins only, else 403. A session
/// cookie on a cross-origin request that changes state is a 403 too. The
/// [`Principal`](super::auth::Principal) is left in the request's extensions.
pub async fn authenticate(
    State(ctx): State<Arc<ApiContext>>,
    mut req: Request,
    next: Next,
) -> Response {
    let bearer = req.headers().contains_key(header::AUTHORIZATION);
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if bearer {
        if let Some(wait) = ctx.ui.auth.bearer_wait(ip) {
            let body = json!({ "error": format!("too many wrong tokens from this address: retry in {wait} s"), "parameter": null });
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, wait.to_string())],
                Json(body),
            )
                .into_response();
        }
    }
    let Some(who) = ctx.ui.auth.principal(req.headers()) else {
        if bearer {
            ctx.ui.auth.bearer_failed(ip);
        }
        let body = json!({ "error": "authentication required: log in at /login or send Authorization: Bearer TOKEN", "parameter": null });
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"vidar\"")],
            Json(body),
        )
            .into_response();
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let forbidden = |message: String| {
            let body = json!({ "error": message, "parameter": null });
            (StatusCode::FORBIDDEN, Json(body)).into_response()
        };
        if who.role != Role::Admin {
            tracing::warn!(user = %who.name, method = %req.method(), path = %req.uri().path(), "viewer refused a state change");
            return forbidden(format!(
                "{} {} needs the admin role; {} is a {}",
                req.method(),
                req.uri().path(),
                who.name,
                who.role.as_str()
            ));
        }
        if matches!(who.via, Via::Session(_)) && !same_origin(req.headers()) {
            return forbidden("cross-origin request refused".into());
        }
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

/// Answers 421 to a request whose `Host` is not one of
/// [`UiState::allowed_hosts`](super::state::UiState::allowed_hosts) (a page
/// on another name, e.g. DNS rebinding, reaching the API through a browser);
/// `/healthz` answers every name, for probes.
pub async fn check_host(State(ctx): State<Arc<ApiContext>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if req.uri().path() == "/healthz" || host_allowed(&ctx.ui.allowed_hosts, host) {
        return next.run(req).await;
    }
    let shown = host.unwrap_or("(none)");
    tracing::debug!(host = shown, "request for a host name not served");
    let body = json!({
        "error": format!("Host {shown:?} is not served here (allowed_hosts in the master's config)"),
        "parameter": null
    });
    (StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response()
}

/// Whether `host` (a `Host` header: name or address, maybe a port) is in
/// `allowed` (lower-case names without port); an empty list allows any.
pub fn host_allowed(allowed: &[String], host: Option<&str>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // [v6]:port or [v6]
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    allowed.contains(&name)
}

/// Whether a browser's `Origin` (when it sends one) names the `Host` asked.
pub fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// The security headers of every answer: a strict Content-Security-Policy,
/// no sniffing, no framing, same-origin referrers; `/api/` answers are not
/// cached unless their route says otherwise.
pub async fn security_headers(req: Request, next: Next) -> Response {
    headers_for(false, req, next).await
}

/// [`security_headers`] of a master serving HTTPS: also HSTS, so browsers
/// never go back to plain HTTP for this host.
pub async fn security_headers_tls(req: Request, next: Next) -> Response {
    headers_for(true, req, next).await
}

async fn headers_for(tls: bool, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn origin_must_name_the_host_when_sent() {
        assert!(same_origin(&headers(&[(header::HOST, "m:8080")])));
        assert!(same_origin(&headers(&[
            (header::HOST, "M:8080"),
            (header::ORIGIN, "https://m:8080"),
        ])));
        assert!(!same_origin(&headers(&[
            (header::HOST, "m:8080"),
            (header::ORIGIN, "https://evil:8080"),
        ])));
        assert!(!same_origin(&headers(&[
            (header::HOST, "m:8080"),
            (header::ORIGIN, "null"),
        ])));
        assert!(!same_origin(&headers(&[(header::ORIGIN, "http://m")])));
    }

    #[test]
    fn hosts_match_by_name_whatever_the_port_or_case() {
        let list: Vec<String> = ["localhost", "127.0.0.1", "::1", "vidar.example.com"]
            .map(String::from)
            .to_vec();
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "Vidar.Example.COM",
            "vidar.example.com.:443",
        ] {
            assert!(host_allowed(&list, Some(ok)), "{ok}");
        }
        for bad in [
            "attacker.example:8080",
            "127.0.0.2:8080",
            "[::2]:80",
            "",
            "localhost.evil",
        ] {
            assert!(!host_allowed(&list, Some(bad)), "{bad}");
        }
        assert!(!host_allowed(&list, None));
        assert!(host_allowed(&[], Some("anything")));
        assert!(host_allowed(&[], None));
    }
}
