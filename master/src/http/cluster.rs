//! The cluster routes: `/api/nodes` (membership with each node's sync
//! state), `/api/plan` (the plan in force), `POST /api/sync` (a sync round
//! now) and `/healthz`. They read the services' handles in
//! [`ApiContext`]; they change nothing but triggering a sync.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use vidar_protocol::NodeId;

use super::error::ApiError;
use super::state::ApiContext;
use crate::membership::NodeInfo;

type Ctx = State<Arc<ApiContext>>;

/// `GET /api/nodes`: every known node, live or not, with its sync state.
pub(super) async fn nodes(State(ctx): Ctx) -> impl IntoResponse {
    let mut sync = ctx.sync.nodes();
    let mut out: BTreeMap<NodeId, serde_json::Value> = BTreeMap::new();
    for info in ctx.membership.snapshot() {
        let s = sync.remove(&info.node);
        let NodeInfo {
            node,
            live,
            token,
            status_age_s,
            changed_ms,
            status,
        } = info;
        let v = json!({
            "node": node, "live": live, "token": token, "status_age_s": status_age_s,
            "changed_ms": changed_ms, "status": status, "sync": s,
        });
        out.insert(node, v);
    }
    for (node, s) in sync {
        let v = json!({ "node": node, "live": false, "token": false, "sync": s });
        out.insert(node, v);
    }
    Json(json!({
        "nodes": out.into_values().collect::<Vec<_>>(),
        "refused_messages": ctx.refused(),
    }))
}

/// The plan in force with its fields at the top level (`version`, `streams`,
/// `bandwidth`, ...; `version` null while there is none), plus its cost, the
/// nodes it was made for, the site's cameras and the plan counters.
/// The model registry: its versions, every deployment, and the refresh in
/// force (what every node is told to run; `null`: the weights they ship with).
pub(super) async fn models(State(ctx): Ctx) -> Result<Json<serde_json::Value>, ApiError> {
    let dir = ctx.models_dir.clone();
    let r = tokio::task::spawn_blocking(move || crate::models::Registry::load(&dir))
        .await
        .map_err(|e| ApiError::internal(format!("reading the model registry: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({
        "versions": r.versions,
        "deployments": r.deployments,
        "in_force": r.refresh(),
    })))
}

pub(super) async fn plan(State(ctx): Ctx) -> Result<Json<serde_json::Value>, ApiError> {
    let mut v = match ctx.plans.current() {
        Some(c) => {
            let mut v = serde_json::to_value(&c.plan)
                .map_err(|e| ApiError::internal(format!("plan as JSON: {e}")))?;
            v["cost"] = json!(c.predicted.load_aware_cost);
            v["predicted"] = json!(c.predicted);
            v["algorithm"] = json!(c.algorithm);
            v["nodes"] = json!(c.nodes);
            v
        }
        None => json!({ "version": null, "streams": [], "bandwidth": [], "nodes": [] }),
    };
    v["cameras"] = json!(ctx.plans.cameras());
    v["planned"] = json!(ctx.plans.planned());
    v["counters"] = json!(ctx.plans.counters());
    // Camera URLs carry credentials: never shown (issue 16).
    for list in ["streams", "cameras", "planned"] {
        if let Some(items) = v.get_mut(list).and_then(|x| x.as_array_mut()) {
            for item in items {
                if let Some(src) = item.get("source").and_then(|s| s.as_str()) {
                    let shown = vidar_protocol::secret::redact_url(src);
                    item["source"] = json!(shown);
                }
            }
        }
    }
    Ok(Json(v))
}

/// `POST /api/sync`: starts a sync round now (202).
pub(super) async fn sync_now(State(ctx): Ctx) -> impl IntoResponse {
    ctx.sync.trigger();
    (StatusCode::ACCEPTED, Json(json!({ "sync": "triggered" })))
}

/// `GET /healthz`: 200 `ok` when the writer and every service thread run,
/// else 503 `unhealthy` naming the failed ones; live nodes, plan version.
pub(super) async fn healthz(State(ctx): Ctx) -> impl IntoResponse {
    let report = ctx.health.report();
    let subsystems: BTreeMap<String, String> = report
        .subsystems
        .iter()
        .map(|(name, failed)| {
            let state = match failed {
                None => "ok".to_string(),
                Some(why) => format!("failed: {why}"),
            };
            (name.clone(), state)
        })
        .collect();
    let code = if report.ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({
            "status": if report.ok() { "ok" } else { "unhealthy" },
            "stopping": report.stopping,
            "subsystems": subsystems,
            "nodes_live": ctx.membership.live().len(),
            "plan_version": ctx.plans.current().map(|c| c.plan.version),
        })),
    )
}
