//! The jobs routes: `GET /api/jobs` (every job with where its stages run),
//! `POST /api/jobs[?replace=true]` (admins: submit a job file, TOML in the
//! body), `DELETE /api/jobs/{id}` (admins: cancel), and
//! `GET /api/jobs/{id}/results[?limit]` (what reached its `records` sinks,
//! from the global database, newest first).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use vidar_protocol::JobId;

use super::error::ApiError;
use super::params::{limit, params, Params};
use super::records::read_db;
use super::ApiContext;

type Ctx = State<Arc<ApiContext>>;

/// Runs a job book operation on the blocking pool.
async fn with_book<T: Send + 'static>(
    ctx: &Arc<ApiContext>,
    f: impl FnOnce(&crate::jobs::Book) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let book = ctx.jobs.clone();
    tokio::task::spawn_blocking(move || f(&book))
        .await
        .map_err(|e| ApiError::internal(format!("job book task: {e}")))
}

/// `GET /api/jobs`: every job of the book; for each, its stages with the
/// node that runs each (none while it waits), the flows that cross nodes
/// with their shares, the predicted rate, or why it waits.
pub(super) async fn list(State(ctx): Ctx) -> Result<impl IntoResponse, ApiError> {
    let contents = with_book(&ctx, |b| b.load()).await?;
    let current = ctx.plans.current();
    let state = ctx.plans.jobs();
    let jobs: Vec<serde_json::Value> = contents
        .jobs
        .values()
        .map(|spec| {
            let placed = current
                .as_ref()
                .and_then(|c| c.plan.jobs.iter().find(|j| j.spec.id == spec.id));
            let waiting = state
                .waiting
                .iter()
                .find(|(id, _)| id == &spec.id)
                .map(|(_, why)| why.clone());
            let stages: Vec<serde_json::Value> = spec
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["node"] = json!(placed
                        .filter(|p| p.spec == *spec)
                        .and_then(|p| p.nodes.get(i)));
                    v
                })
                .collect();
            json!({
                "id": spec.id,
                "rate": spec.rate,
                "state": if placed.is_some() { "placed" } else { "waiting" },
                "waiting": waiting,
                "stages": stages,
                "flows": placed.map(|p| p.flows.clone()).unwrap_or_default(),
                "predicted_rate": placed.map(|p| p.predicted_rate),
                "plan_version": placed.and(current.as_ref().map(|c| c.plan.version)),
            })
        })
        .collect();
    Ok(Json(json!({
        "jobs": jobs,
        "policy": state.policy,
        "refused_files": state.refused.iter().chain(&contents.refused)
            .map(|(f, why)| json!({"file": f, "why": why}))
            .collect::<Vec<_>>(),
        "dir": ctx.jobs.dir(),
    })))
}

/// `POST /api/jobs[?replace=true]` with a job file (TOML) as the body.
pub(super) async fn submit(
    State(ctx): Ctx,
    q: Params,
    body: String,
) -> Result<impl IntoResponse, ApiError> {
    let p = params(q, &["replace"])?;
    let replace = match p.get("replace").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "replace",
                format!("{other:?}: true or false expected"),
            ))
        }
    };
    let done = with_book(&ctx, move |b| b.submit(&body, "the job file", replace)).await?;
    match done {
        Ok(job) => {
            ctx.plans
                .request_replan(&format!("job {} submitted", job.id));
            Ok((StatusCode::CREATED, Json(json!({ "job": job }))))
        }
        Err(e) if e.contains("exists already") => Err(ApiError::conflict(e)),
        Err(e) => Err(ApiError::malformed(e)),
    }
}

/// `DELETE /api/jobs/{id}`.
pub(super) async fn cancel(
    State(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let job = id.clone();
    match with_book(&ctx, move |b| b.cancel(&job)).await? {
        Ok(()) => {
            ctx.plans.request_replan(&format!("job {id} cancelled"));
            Ok(Json(json!({ "cancelled": id })))
        }
        Err(e) if e.starts_with("no job") => Err(ApiError::not_found(e)),
        Err(e) => Err(ApiError::bad("id", e)),
    }
}

/// `GET /api/jobs/{id}/results[?limit]`: the newest results of the job's
/// `records` sinks that the master has synced (newest first), and their count.
pub(super) async fn results(
    State(ctx): Ctx,
    Path(id): Path<String>,
    q: Params,
) -> Result<impl IntoResponse, ApiError> {
    let p = params(q, &["limit"])?;
    let n = if p.contains_key("limit") {
        limit(&p)?
    } else {
        100
    };
    let job = JobId::new(&id).map_err(|e| ApiError::bad("id", format!("{id:?}: {e}")))?;
    let (total, rows) = read_db(&ctx, move |r| r.job_results(&job, n)).await?;
    let results: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|s| {
            json!({
                "node": s.key.node,
                "seq": s.key.seq,
                "stage": s.value.stage,
                "camera": s.value.camera,
                "captured_ms": s.value.captured_ms,
                "item": s.value.item,
                "kind": s.value.kind,
                "items": s.value.items,
            })
        })
        .collect();
    Ok(Json(
        json!({ "job": id, "total": total, "results": results }),
    ))
}
