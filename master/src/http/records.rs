//! The record routes: `/api/trajectory`, `/api/sightings`, `/api/identities`
//! and `/api/snapshot/{identity}`, over the global database plus what the
//! edges hold but have not synchronised yet.
//!
//! Every handler validates its parameters first ([`super::params`]), reads the
//! database on the blocking pool through the store's bound-parameter queries,
//! and asks every reachable edge ([`crate::query`]), merging by record key.
//! Edges that did not answer are listed in the reply.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use vidar_protocol::messages::QueryRequest;
use vidar_protocol::{IdentityId, UnixMs};
use vidar_store::{Reader, Sighting, StoreError};

use super::error::ApiError;
use super::params::{camera, identity, limit, params, range, time, Params};
use super::state::ApiContext;
use crate::query::{self, EdgeAnswers, Edges, SightingOut};

type Ctx = State<Arc<ApiContext>>;

/// Runs a database read on the blocking pool.
pub(super) async fn read_db<T: Send + 'static>(
    ctx: &Arc<ApiContext>,
    f: impl FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let path = ctx.database.clone();
    tokio::task::spawn_blocking(move || {
        let reader = Reader::open(&path)?;
        f(&reader)
    })
    .await
    .map_err(|e| ApiError::internal(format!("database task: {e}")))?
    .map_err(ApiError::from)
}

/// Asks every reachable edge, in parallel, for `q`.
async fn ask_edges(ctx: &ApiContext, q: QueryRequest) -> EdgeAnswers {
    let edges = Edges {
        link: &ctx.link,
        keys: &ctx.keys,
        timeout: ctx.edge_timeout,
        silence: &ctx.edge_silence,
    };
    edges.ask(ctx.membership.reachable(), q).await
}

/// The JSON of a sightings answer (also `/api/trajectory.json`'s).
pub(super) fn sightings_reply(
    sightings: Vec<SightingOut>,
    truncated: bool,
    edges: EdgeAnswers,
) -> Json<serde_json::Value> {
    Json(json!({
        "sightings": sightings,
        "truncated": truncated,
        "edges_asked": edges.asked,
        "edges_unanswered": edges.unanswered,
    }))
}

/// `GET /api/trajectory?identity=…[&from&to&limit]`.
pub(super) async fn trajectory(State(ctx): Ctx, q: Params) -> Result<impl IntoResponse, ApiError> {
    let (out, truncated, edges) = trajectory_of(&ctx, q).await?;
    Ok(sightings_reply(out, truncated, edges))
}

/// The trajectory asked by `q` (`identity`, `from`, `to`, `limit`): the
/// sightings in time order, whether some were cut, and the edges' answers.
pub(super) async fn trajectory_of(
    ctx: &Arc<ApiContext>,
    q: Params,
) -> Result<(Vec<SightingOut>, bool, EdgeAnswers), ApiError> {
    let p = params(q, &["identity", "from", "to", "limit"])?;
    let id = identity("identity", p.get("identity"))?;
    let r = range(&p)?;
    let n = limit(&p)?;
    let (db, cluster, corrections) = read_db(ctx, move |reader| {
        Ok((
            reader.trajectory(id, r, n)?,
            reader.identity_cluster(id)?,
            reader.corrections_in_force()?,
        ))
    })
    .await?;
    let mut edges = ask_edges(
        ctx,
        QueryRequest::Trajectory {
            identity: id,
            range: r,
        },
    )
    .await;
    let cluster: HashSet<IdentityId> = cluster.into_iter().chain([id]).collect();
    let records = std::mem::take(&mut edges.records);
    let keep = |s: &Sighting| cluster.contains(&s.identity) && query::overlaps(s, r);
    let (out, truncated) = query::merge_sightings(db, records, &corrections, keep, n);
    Ok((out, truncated, edges))
}

/// `GET /api/sightings?camera=…[&from&to&limit]`.
pub(super) async fn sightings(State(ctx): Ctx, q: Params) -> Result<impl IntoResponse, ApiError> {
    let p = params(q, &["camera", "from", "to", "limit"])?;
    let cam = camera(p.get("camera"))?;
    let r = range(&p)?;
    let n = limit(&p)?;
    let c = cam.clone();
    let (db, corrections) = read_db(&ctx, move |reader| {
        Ok((
            reader.sightings_by_camera(&c, r, n)?,
            reader.corrections_in_force()?,
        ))
    })
    .await?;
    let mut edges = ask_edges(
        &ctx,
        QueryRequest::SightingsByCamera {
            camera: cam.clone(),
            range: r,
        },
    )
    .await;
    let records = std::mem::take(&mut edges.records);
    let keep = |s: &Sighting| s.camera == cam && query::overlaps(s, r);
    let (out, truncated) = query::merge_sightings(db, records, &corrections, keep, n);
    Ok(sightings_reply(out, truncated, edges))
}

/// `GET /api/identities[?from&to&limit]`: identities seen in the range.
pub(super) async fn identities(State(ctx): Ctx, q: Params) -> Result<impl IntoResponse, ApiError> {
    let p = params(q, &["from", "to", "limit"])?;
    let r = range(&p)?;
    let n = limit(&p)?;
    let db = read_db(&ctx, move |reader| reader.identities_in_range(r, n)).await?;
    let mut edges = ask_edges(&ctx, QueryRequest::IdentitiesInRange { range: r }).await;
    let records = std::mem::take(&mut edges.records);
    let (out, truncated) = query::merge_identities(db, records, r, n);
    Ok(Json(json!({
        "identities": out,
        "truncated": truncated,
        "edges_asked": edges.asked,
        "edges_unanswered": edges.unanswered,
    })))
}

/// `/api/snapshot/{identity}[?camera=C&t=MS]`: the identity's snapshot taken
/// on that camera closest to that time (a sighting's own thumbnail), else
/// the closest on any camera, else its first.
pub(super) async fn snapshot(
    State(ctx): Ctx,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    let id = identity("identity", Some(&id))?;
    let p = params(q, &["camera", "t"])?;
    let cam = match p.get("camera") {
        Some(_) => Some(camera(p.get("camera"))?),
        None => None,
    };
    let t = match p.get("t") {
        Some(_) => Some(time(&p, "t", UnixMs::EPOCH)?),
        None => None,
    };
    let shot = read_db(&ctx, move |reader| {
        reader.snapshot_near(id, cam.as_ref(), t)
    })
    .await?;
    match shot {
        Some(s) => Ok(([(header::CONTENT_TYPE, "image/jpeg")], s.value.jpeg).into_response()),
        None => Err(ApiError::not_found(format!(
            "no snapshot of {id} in the global database"
        ))),
    }
}
