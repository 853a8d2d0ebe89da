//! The live tiles' routes: `GET /api/tiles` (every camera's metadata),
//! `/api/tiles/{camera}.jpg` (the latest JPEG) and `/api/events` (a
//! Server-Sent Events stream of metadata updates). The tiles themselves are
//! kept by [`crate::tiles`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use vidar_protocol::CameraId;

use super::auth::Principal;
use super::state::ApiContext;
use crate::tiles::TileMeta;

/// `GET /api/tiles`.
pub async fn list(State(ctx): State<Arc<ApiContext>>) -> impl IntoResponse {
    Json(json!({ "tiles": ctx.ui.tiles.list(), "refused_tiles": ctx.ui.tiles.mismatched() }))
}

/// `GET /api/tiles/{camera}.jpg`.
pub async fn jpeg(State(ctx): State<Arc<ApiContext>>, Path(file): Path<String>) -> Response {
    let not_found = |message: String| {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": message, "parameter": null })),
        )
            .into_response()
    };
    let Some(name) = file.strip_suffix(".jpg") else {
        return not_found("tiles are at /api/tiles/CAMERA.jpg".into());
    };
    let camera = match CameraId::new(name) {
        Ok(c) => c,
        Err(e) => {
            let shown: String = name.chars().take(64).collect();
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("camera: {shown:?}: {e}"), "parameter": "camera" })),
            )
                .into_response();
        }
    };
    match ctx.ui.tiles.jpeg(&camera) {
        Some(b) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            b,
        )
            .into_response(),
        None => not_found(format!("no live tile of camera {camera}")),
    }
}

struct EventState {
    backlog: VecDeque<TileMeta>,
    rx: broadcast::Receiver<TileMeta>,
    closed: watch::Receiver<bool>,
    ctx: Arc<ApiContext>,
    who: Principal,
}

/// `GET /api/events`: `tile` events with a tile's metadata (every camera's
/// first, then each update). Ends when the session does or the server stops.
pub async fn events(
    State(ctx): State<Arc<ApiContext>>,
    Extension(who): Extension<Principal>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let state = EventState {
        backlog: ctx.ui.tiles.list().into(),
        rx: ctx.ui.tiles.subscribe(),
        closed: ctx.ui.tiles.closing(),
        ctx,
        who,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if *s.closed.borrow() || !s.ctx.ui.auth.still_valid(&s.who) {
                return None;
            }
            if let Some(m) = s.backlog.pop_front() {
                let ev = Event::default()
                    .event("tile")
                    .json_data(&m)
                    .unwrap_or_else(|_| Event::default().comment("unencodable"));
                return Some((Ok(ev), s));
            }
            tokio::select! {
                r = s.rx.recv() => match r {
                    Ok(m) => s.backlog.push_back(m),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        s.backlog = s.ctx.ui.tiles.list().into();
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = s.closed.changed() => return None,
                // Re-check the session now and then even without tiles.
                _ = tokio::time::sleep(Duration::from_secs(15)) => {}
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
