//! The split training routes: `GET /api/training` (what runs, every kept
//! round with each node's cut, share, bytes and time against the plan's
//! prediction) and `POST /api/training` (admins: run rounds, JSON
//! `{"rounds": N, "algorithm": "edgesplit"}`; 202, or 409 while rounds run).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::ApiContext;
use crate::training::RunRequest;

type Ctx = State<Arc<ApiContext>>;

/// `GET /api/training`.
pub(super) async fn state(State(ctx): Ctx) -> impl IntoResponse {
    Json(json!({ "config": &ctx.training_config, "state": ctx.training.state() }))
}

/// `POST /api/training`.
pub(super) async fn start(State(ctx): Ctx, body: String) -> Result<impl IntoResponse, ApiError> {
    let req: RunRequest = serde_json::from_str(&body)
        .map_err(|e| ApiError::malformed(format!("the request body: {e}")))?;
    match ctx.training.start(req) {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(json!({ "rounds": req.rounds })))),
        Err(e) if e.contains("are running") => Err(ApiError::conflict(e)),
        Err(e) => Err(ApiError::malformed(e)),
    }
}
