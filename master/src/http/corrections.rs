//! The corrections routes: `POST /api/corrections` (admins: split a sighting
//! off an identity, merge two, revert a correction) and `GET
//! /api/corrections` (the audit trail, for everyone signed in).
//!
//! The work is [`crate::corrections`]'s; here are the JSON shapes and the
//! statuses: 201 with the stored correction, 400 naming the field at fault,
//! 404 for something named that does not exist, 409 for a request that
//! contradicts what is stored (a stale view, done already, or two people on
//! one camera at once).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::json;
use vidar_store::{Audited, Correction, CorrectionAction, RecordKey};

use super::auth::Principal;
use super::error::ApiError;
use super::params::{identity, limit, params, range, Params};
use super::records::read_db;
use super::state::ApiContext;
use crate::corrections::{Refusal, Request};

type Ctx = State<Arc<ApiContext>>;

/// A correction as JSON: flat, with its key and the action's fields.
fn view(key: &RecordKey, c: &Correction, reverted: bool) -> serde_json::Value {
    let mut v = json!({
        "node": key.node, "seq": key.seq, "actor": c.actor, "reason": c.reason,
        "decided_ms": c.decided_ms, "reverted": reverted,
    });
    let fields = match &c.action {
        CorrectionAction::Split {
            sighting,
            from,
            into,
            scope,
        } => json!({
            "action": "split", "sighting": { "node": sighting.node, "seq": sighting.seq },
            "from": from, "into": into, "scope": scope.as_str(),
        }),
        CorrectionAction::Merge { from, into } => {
            json!({ "action": "merge", "from": from, "into": into })
        }
        CorrectionAction::Revert { correction } => json!({
            "action": "revert", "correction": { "node": correction.node, "seq": correction.seq },
        }),
    };
    if let (Some(v), serde_json::Value::Object(f)) = (v.as_object_mut(), fields) {
        v.extend(f);
    }
    v
}

/// `POST /api/corrections` with a JSON [`Request`].
pub(super) async fn correct(
    State(ctx): Ctx,
    Extension(who): Extension<Principal>,
    body: Result<Json<Request>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(req) = body.map_err(|e| {
        ApiError::malformed(format!(
            "the body is not a correction ({}): {}",
            "{\"action\": \"split\"|\"merge\"|\"revert\", ...}",
            e.body_text()
        ))
    })?;
    let desk = ctx.corrections.clone();
    let actor = who.name.clone();
    let done = tokio::task::spawn_blocking(move || desk.correct(&req, &actor))
        .await
        .map_err(|e| ApiError::internal(format!("correction task: {e}")))?;
    match done {
        Ok((key, c)) => Ok((StatusCode::CREATED, Json(view(&key, &c, false)))),
        Err(Refusal::Bad { field, message }) => Err(ApiError::bad(field, message)),
        Err(Refusal::NotFound(m)) => Err(ApiError::not_found(m)),
        Err(Refusal::Conflict(m)) => {
            // A sighting not synchronised yet: pull now, so a retry can work.
            ctx.sync.trigger();
            Err(ApiError::conflict(m))
        }
        Err(Refusal::Store(e)) => Err(e.into()),
    }
}

/// `GET /api/corrections[?identity&from&to&limit]`: the audit trail, newest
/// first (`from`/`to` bound the decision time).
pub(super) async fn list(State(ctx): Ctx, q: Params) -> Result<impl IntoResponse, ApiError> {
    let p = params(q, &["identity", "from", "to", "limit"])?;
    let who = match p.get("identity") {
        Some(_) => Some(identity("identity", p.get("identity"))?),
        None => None,
    };
    let r = range(&p)?;
    let n = limit(&p)?;
    let rows: Vec<Audited> = read_db(&ctx, move |reader| {
        reader.corrections(who, r.start_ms, r.end_ms, n)
    })
    .await?;
    let out: Vec<_> = rows
        .iter()
        .map(|a| view(&a.key, &a.correction, a.reverted))
        .collect();
    Ok(Json(json!({ "corrections": out })))
}
