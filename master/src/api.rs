//! The master's HTTP API (JSON): record queries over the global database, plus
//! what the edges hold but have not synchronised yet; the cluster's nodes and
//! plan; health and Prometheus metrics.
//!
//! Every handler validates its parameters first (a malformed one is a 400 whose
//! JSON names it), reads the database on the blocking pool through the store's
//! bound-parameter queries, and asks every reachable edge in parallel (each on
//! the blocking pool, [`EDGE_TIMEOUT`] at most), merging by record key `(node,
//! seq)`. Edges that did not answer are listed in the reply. The routes are built
//! by [`router`], so the UI can add its own; every `/api` route passes through
//! [`authenticate`]: no valid session or bearer token is a 401, a viewer
//! calling anything but GET/HEAD is a 403 (see [`crate::ui::auth`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use vidar_link::{request, zenoh, Garbage};
use vidar_protocol::messages::{QueryReply, QueryRequest};
use vidar_protocol::{CameraId, IdentityId, Keys, NodeId};
use vidar_store::{
    IdentitySeen, KeyedRecord, Reader, Record, RecordKey, Sighting, StoreError, Stored, TimeRange,
    WriterHandle, MAX_QUERY_ROWS,
};

use crate::membership::{Membership, NodeInfo};
use crate::merges::MergeCounters;
use crate::plans::Plans;
use crate::sync::Sync;

/// How long a query waits for each edge.
pub const EDGE_TIMEOUT: Duration = Duration::from_secs(1);
/// Rows returned when the request sets no `limit`.
pub const DEFAULT_LIMIT: usize = 1000;

/// Everything the handlers need.
#[derive(Debug)]
pub struct ApiContext {
    /// The global database.
    pub database: PathBuf,
    /// The zenoh session (edge queries).
    pub session: zenoh::Session,
    /// The site's keys.
    pub keys: Keys,
    /// The membership table.
    pub membership: Membership,
    /// The plan service's handle.
    pub plans: Plans,
    /// The sync service's handle.
    pub sync: Sync,
    /// Merge counters.
    pub merges: Arc<MergeCounters>,
    /// Refused payloads, all keys.
    pub garbage: Arc<Garbage>,
    /// The global database's writer (stats).
    pub writer: WriterHandle,
    /// How long to wait for each edge.
    pub edge_timeout: Duration,
    /// The web UI's state (authentication, live tiles, floor plan).
    pub ui: crate::ui::UiState,
}

type Ctx = State<Arc<ApiContext>>;
pub(crate) type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The API's routes, with `state`; the UI merges its own routes into it.
pub fn router(state: Arc<ApiContext>) -> Router {
    let api = Router::new()
        .route("/api/trajectory", get(trajectory))
        .route("/api/sightings", get(sightings))
        .route("/api/identities", get(identities))
        .route("/api/nodes", get(nodes))
        .route("/api/plan", get(plan))
        .route("/api/snapshot/{identity}", get(snapshot))
        .route("/api/sync", post(sync_now))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let metrics = if state.ui.auth.metrics_public() {
        get(metrics)
    } else {
        get(metrics).route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
    };
    Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/metrics", metrics)
        .with_state(state)
}

/// The authentication of every `/api` route (and of /metrics unless public):
/// the caller's session or bearer token, else 401; GET and HEAD for everyone,
/// anything else (it changes state) for admins only, else 403. A session
/// cookie on a cross-origin request that changes state is a 403 too. The
/// [`Principal`](crate::ui::auth::Principal) is left in the request's extensions.
pub async fn authenticate(State(ctx): Ctx, mut req: Request, next: Next) -> Response {
    use crate::config::Role;
    use crate::ui::auth::Via;
    let Some(who) = ctx.ui.auth.principal(req.headers()) else {
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

/// Whether a browser's `Origin` (when it sends one) names the `Host` asked.
pub(crate) fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// An error answer: status, message, and the parameter at fault if any.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    parameter: Option<&'static str>,
    message: String,
}

impl ApiError {
    fn bad(parameter: &'static str, message: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            parameter: Some(parameter),
            message: format!("{parameter}: {message}"),
        }
    }

    fn internal(message: String) -> ApiError {
        tracing::error!(error = %message, "API request failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            parameter: None,
            message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(format!("global database: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "parameter": self.parameter });
        (self.status, Json(body)).into_response()
    }
}

/// The query's parameters, refusing any not in `allowed`.
pub(crate) fn params(q: Params, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let Query(p) = q.map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        parameter: None,
        message: format!("malformed query string: {e}"),
    })?;
    if let Some(k) = p.keys().find(|k| !allowed.contains(&k.as_str())) {
        let shown: String = k.chars().take(64).collect();
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            parameter: None,
            message: format!(
                "unknown parameter {shown:?}; expected {}",
                allowed.join(", ")
            ),
        });
    }
    Ok(p)
}

fn shown(v: &str) -> String {
    let s: String = v.chars().take(64).collect();
    format!("{s:?}")
}

/// A time in ms since the epoch, `0..=i64::MAX`.
fn time(p: &HashMap<String, String>, name: &'static str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(t) if t >= 0 => Ok(t),
            _ => Err(ApiError::bad(
                name,
                format!(
                    "{} is not a time in milliseconds since the epoch (0..={})",
                    shown(v),
                    i64::MAX
                ),
            )),
        },
    }
}

/// `[from, to)`; both optional (all time).
fn range(p: &HashMap<String, String>) -> Result<TimeRange, ApiError> {
    let from = time(p, "from", 0)?;
    let to = time(p, "to", i64::MAX)?;
    if to < from {
        return Err(ApiError::bad("to", format!("{to} is before from ({from})")));
    }
    Ok(TimeRange::new(from, to))
}

fn limit(p: &HashMap<String, String>) -> Result<usize, ApiError> {
    match p.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_QUERY_ROWS).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(
                "limit",
                format!("{} is not a row count in 1..={MAX_QUERY_ROWS}", shown(v)),
            )),
        },
    }
}

/// An identity, `12` or `p12`.
fn identity(name: &'static str, v: Option<&String>) -> Result<IdentityId, ApiError> {
    let Some(v) = v else {
        return Err(ApiError::bad(name, "required".into()));
    };
    let digits = v.strip_prefix('p').unwrap_or(v);
    match digits.parse::<u64>() {
        Ok(n) if !digits.starts_with('+') => Ok(IdentityId(n)),
        _ => Err(ApiError::bad(
            name,
            format!("{} is not an identity like 12 or p12", shown(v)),
        )),
    }
}

fn camera(v: Option<&String>) -> Result<CameraId, ApiError> {
    let Some(v) = v else {
        return Err(ApiError::bad("camera", "required".into()));
    };
    CameraId::new(v).map_err(|e| ApiError::bad("camera", format!("{}: {e}", shown(v))))
}

/// Runs a database read on the blocking pool.
async fn read_db<T: Send + 'static>(
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

/// An edge that did not answer, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Unanswered {
    /// The node.
    pub node: NodeId,
    /// What happened.
    pub error: String,
}

/// The edges' answers to one query.
#[derive(Debug, Default)]
pub(crate) struct EdgeAnswers {
    records: Vec<KeyedRecord>,
    pub(crate) asked: Vec<NodeId>,
    pub(crate) unanswered: Vec<Unanswered>,
}

/// Asks every reachable edge, in parallel, for `q`.
async fn ask_edges(ctx: &Arc<ApiContext>, q: QueryRequest) -> EdgeAnswers {
    let mut tasks = Vec::new();
    for node in ctx.membership.reachable() {
        let (c, q, n) = (ctx.clone(), q.clone(), node.clone());
        let task = tokio::task::spawn_blocking(move || {
            request::<QueryRequest, QueryReply>(
                &c.session,
                &c.keys.query(&n),
                &q,
                c.edge_timeout,
                &c.garbage,
            )
        });
        tasks.push((node, task));
    }
    let mut out = EdgeAnswers::default();
    for (node, task) in tasks {
        out.asked.push(node.clone());
        match task.await {
            Ok(Ok(reply)) => out.records.extend(reply.records),
            Ok(Err(e)) => out.unanswered.push(Unanswered {
                node,
                error: e.to_string(),
            }),
            Err(e) => out.unanswered.push(Unanswered {
                node,
                error: format!("query task: {e}"),
            }),
        }
    }
    out
}

/// A sighting in a reply.
#[derive(Debug, Serialize)]
pub(crate) struct SightingOut {
    pub(crate) node: NodeId,
    pub(crate) seq: u64,
    /// Whether it came from the global database (else only an edge has it so far).
    pub(crate) synced: bool,
    #[serde(flatten)]
    pub(crate) sighting: Sighting,
}

fn overlaps(s: &Sighting, r: TimeRange) -> bool {
    s.last_ms >= r.start_ms && s.first_ms < r.end_ms
}

/// The database's sightings plus the edges' not already there, deduplicated by
/// key, in time order, at most `limit`; and whether some were cut.
fn merge_sightings(
    db: Vec<Stored<Sighting>>,
    edge: Vec<KeyedRecord>,
    keep: impl Fn(&Sighting) -> bool,
    limit: usize,
) -> (Vec<SightingOut>, bool) {
    let mut seen: HashSet<RecordKey> = HashSet::new();
    let mut out = Vec::new();
    for s in db {
        if seen.insert(s.key.clone()) {
            out.push(SightingOut {
                node: s.key.node,
                seq: s.key.seq,
                synced: true,
                sighting: s.value,
            });
        }
    }
    for r in edge {
        if let Record::Sighting(s) = r.record {
            if keep(&s) && seen.insert(r.key.clone()) {
                out.push(SightingOut {
                    node: r.key.node,
                    seq: r.key.seq,
                    synced: false,
                    sighting: s,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (a.sighting.first_ms, &a.node, a.seq).cmp(&(b.sighting.first_ms, &b.node, b.seq))
    });
    let truncated = out.len() > limit;
    out.truncate(limit);
    (out, truncated)
}

pub(crate) fn sightings_reply(
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

async fn trajectory(State(ctx): Ctx, q: Params) -> Result<impl IntoResponse, ApiError> {
    let (out, truncated, edges) = trajectory_of(&ctx, q).await?;
    Ok(sightings_reply(out, truncated, edges))
}

/// The trajectory asked by `q` (`identity`, `from`, `to`, `limit`): the
/// sightings in time order, whether some were cut, and the edges' answers.
pub(crate) async fn trajectory_of(
    ctx: &Arc<ApiContext>,
    q: Params,
) -> Result<(Vec<SightingOut>, bool, EdgeAnswers), ApiError> {
    let p = params(q, &["identity", "from", "to", "limit"])?;
    let id = identity("identity", p.get("identity"))?;
    let r = range(&p)?;
    let n = limit(&p)?;
    let (db, cluster) = read_db(ctx, move |reader| {
        Ok((reader.trajectory(id, r, n)?, reader.identity_cluster(id)?))
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
    let keep = |s: &Sighting| cluster.contains(&s.identity) && overlaps(s, r);
    let (out, truncated) = merge_sightings(db, records, keep, n);
    Ok((out, truncated, edges))
}

async fn sightings(State(ctx): Ctx, q: Params) -> Result<impl IntoResponse, ApiError> {
    let p = params(q, &["camera", "from", "to", "limit"])?;
    let cam = camera(p.get("camera"))?;
    let r = range(&p)?;
    let n = limit(&p)?;
    let c = cam.clone();
    let db = read_db(&ctx, move |reader| reader.sightings_by_camera(&c, r, n)).await?;
    let mut edges = ask_edges(
        &ctx,
        QueryRequest::SightingsByCamera {
            camera: cam.clone(),
            range: r,
        },
    )
    .await;
    let records = std::mem::take(&mut edges.records);
    let keep = |s: &Sighting| s.camera == cam && overlaps(s, r);
    let (out, truncated) = merge_sightings(db, records, keep, n);
    Ok(sightings_reply(out, truncated, edges))
}

/// An identity in a reply.
#[derive(Debug, Serialize)]
struct IdentityOut {
    #[serde(flatten)]
    seen: IdentitySeen,
    /// Whether the global database knows it (else only an edge has it so far).
    synced: bool,
}

async fn identities(State(ctx): Ctx, q: Params) -> Result<impl IntoResponse, ApiError> {
    let p = params(q, &["from", "to", "limit"])?;
    let r = range(&p)?;
    let n = limit(&p)?;
    let db = read_db(&ctx, move |reader| reader.identities_in_range(r, n)).await?;
    let mut edges = ask_edges(&ctx, QueryRequest::IdentitiesInRange { range: r }).await;
    let mut known: HashSet<IdentityId> = db.iter().map(|s| s.identity).collect();
    let mut out: Vec<IdentityOut> = db
        .into_iter()
        .map(|seen| IdentityOut { seen, synced: true })
        .collect();
    // Edges report identity records (first sightings), not aggregates: an
    // identity only an edge knows shows with its first time and no count yet.
    for rec in std::mem::take(&mut edges.records) {
        if let Record::Identity(i) = rec.record {
            let t = i.first_seen_ms;
            if t >= r.start_ms && t < r.end_ms && known.insert(i.identity) {
                out.push(IdentityOut {
                    seen: IdentitySeen {
                        identity: i.identity,
                        first_ms: t,
                        last_ms: t,
                        sightings: 0,
                        cameras: 1,
                    },
                    synced: false,
                });
            }
        }
    }
    out.sort_by_key(|o| (o.seen.first_ms, o.seen.identity));
    let truncated = out.len() > n;
    out.truncate(n);
    Ok(Json(json!({
        "identities": out,
        "truncated": truncated,
        "edges_asked": edges.asked,
        "edges_unanswered": edges.unanswered,
    })))
}

async fn nodes(State(ctx): Ctx) -> impl IntoResponse {
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
        "refused_messages": refused(&ctx),
    }))
}

/// The plan in force with its fields at the top level (`version`, `streams`,
/// `bandwidth`, ...; `version` null while there is none), plus its cost, the
/// nodes it was made for, the site's cameras and the plan counters.
async fn plan(State(ctx): Ctx) -> Result<Json<serde_json::Value>, ApiError> {
    let mut v = match ctx.plans.current() {
        Some(c) => {
            let mut v = serde_json::to_value(&c.plan)
                .map_err(|e| ApiError::internal(format!("plan as JSON: {e}")))?;
            v["cost"] = json!(c.cost);
            v["nodes"] = json!(c.nodes);
            v
        }
        None => json!({ "version": null, "streams": [], "bandwidth": [], "nodes": [] }),
    };
    v["cameras"] = json!(ctx.plans.cameras());
    v["counters"] = json!(ctx.plans.counters());
    Ok(Json(v))
}

/// `/api/snapshot/{identity}[?camera=C&t=MS]`: the identity's snapshot taken
/// on that camera closest to that time (a sighting's own thumbnail), else
/// the closest on any camera, else its first.
async fn snapshot(
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
        Some(_) => Some(time(&p, "t", 0)?),
        None => None,
    };
    let shot = read_db(&ctx, move |reader| {
        reader.snapshot_near(id, cam.as_ref(), t)
    })
    .await?;
    match shot {
        Some(s) => Ok(([(header::CONTENT_TYPE, "image/jpeg")], s.value.jpeg).into_response()),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            parameter: None,
            message: format!("no snapshot of {id} in the global database"),
        }),
    }
}

async fn sync_now(State(ctx): Ctx) -> impl IntoResponse {
    ctx.sync.trigger();
    (StatusCode::ACCEPTED, Json(json!({ "sync": "triggered" })))
}

async fn healthz(State(ctx): Ctx) -> impl IntoResponse {
    Json(json!({
        "status": "ok",
        "nodes_live": ctx.membership.live().len(),
        "plan_version": ctx.plans.current().map(|c| c.plan.version),
    }))
}

fn refused(ctx: &ApiContext) -> u64 {
    ctx.garbage.refused() + ctx.membership.refused()
}

async fn metrics(State(ctx): Ctx) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&ctx),
    )
}

/// The Prometheus text exposition of the master's metrics.
pub fn render_metrics(ctx: &ApiContext) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, values: &[(Option<&NodeId>, f64)]| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (node, v) in values {
            match node {
                Some(n) => {
                    let _ = writeln!(s, "{name}{{node=\"{n}\"}} {v}");
                }
                None => {
                    let _ = writeln!(s, "{name} {v}");
                }
            }
        }
    };
    let members = ctx.membership.snapshot();
    let live = members.iter().filter(|m| m.live).count();
    let plan = ctx.plans.counters();
    let version = ctx.plans.current().map_or(0, |c| c.plan.version);
    metric(
        "vidar_master_nodes_live",
        "gauge",
        "Nodes with a liveliness token and a fresh status.",
        &[(None, live as f64)],
    );
    metric(
        "vidar_master_nodes_known",
        "gauge",
        "Nodes in the membership table.",
        &[(None, members.len() as f64)],
    );
    metric(
        "vidar_master_plan_version",
        "gauge",
        "Version of the plan in force (0: none).",
        &[(None, version as f64)],
    );
    metric(
        "vidar_master_replans_total",
        "counter",
        "Times the planner ran.",
        &[(None, plan.replans as f64)],
    );
    metric(
        "vidar_master_plan_versions_total",
        "counter",
        "Plan versions issued.",
        &[(None, plan.versions as f64)],
    );
    metric(
        "vidar_master_plan_failures_total",
        "counter",
        "Planner or encoding failures.",
        &[(None, plan.failures as f64)],
    );
    metric(
        "vidar_master_plan_publications_total",
        "counter",
        "Plan publications, repeats included.",
        &[(None, plan.published as f64)],
    );
    metric(
        "vidar_master_sync_records_total",
        "counter",
        "Edge records stored in the global database.",
        &[(None, ctx.sync.records() as f64)],
    );
    metric(
        "vidar_master_sync_records_per_second",
        "gauge",
        "Records per second of the last sync round.",
        &[(None, ctx.sync.rate())],
    );
    metric(
        "vidar_master_sync_rounds_total",
        "counter",
        "Sync rounds completed.",
        &[(None, ctx.sync.rounds() as f64)],
    );
    let sync = ctx.sync.nodes();
    let lag: Vec<_> = sync
        .iter()
        .filter_map(|(n, s)| s.lag_records.map(|l| (Some(n), l as f64)))
        .collect();
    metric(
        "vidar_master_sync_lag_records",
        "gauge",
        "Records an edge holds beyond the master's cursor.",
        &lag,
    );
    let since: Vec<_> = sync
        .iter()
        .filter_map(|(n, s)| s.since_success_s.map(|v| (Some(n), v)))
        .collect();
    metric(
        "vidar_master_sync_since_success_seconds",
        "gauge",
        "Seconds since the last complete sync of an edge.",
        &since,
    );
    let fails: Vec<_> = sync
        .iter()
        .map(|(n, s)| (Some(n), s.failures as f64))
        .collect();
    metric(
        "vidar_master_sync_failures",
        "gauge",
        "Consecutive failed sync rounds of an edge.",
        &fails,
    );
    metric(
        "vidar_master_refused_messages_total",
        "counter",
        "Messages refused on Vidar's keys (undecodable, wrong version, inconsistent).",
        &[(None, refused(ctx) as f64)],
    );
    metric(
        "vidar_master_identity_announcements_total",
        "counter",
        "Identity announcements received.",
        &[(
            None,
            ctx.merges.announcements.load(Ordering::Relaxed) as f64,
        )],
    );
    metric(
        "vidar_master_merges_total",
        "counter",
        "Identity merges decided.",
        &[(None, ctx.merges.merges.load(Ordering::Relaxed) as f64)],
    );
    let w = ctx.writer.stats();
    metric(
        "vidar_master_db_records_total",
        "counter",
        "Records committed to the global database since start.",
        &[(None, w.records as f64)],
    );
    metric(
        "vidar_master_db_queued",
        "gauge",
        "Messages waiting for the global database's writer.",
        &[(None, w.queued as f64)],
    );
    s
}
