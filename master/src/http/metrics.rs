//! `/metrics`: the master's metrics in the Prometheus text exposition,
//! rendered from the services' counters at each scrape (nothing is kept here).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use vidar_protocol::NodeId;
use vidar_runtime::metrics::{Exposition, Families, CONTENT_TYPE};

use super::state::ApiContext;

/// `GET /metrics`.
pub(super) async fn metrics(State(ctx): State<Arc<ApiContext>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render_metrics(&ctx))
}

/// The Prometheus text exposition of the master's metrics now.
pub fn render_metrics(ctx: &Arc<ApiContext>) -> String {
    let mut expo = Exposition::default();
    let ctx = Arc::clone(ctx);
    expo.collect(move |f| families(f, &ctx));
    expo.render()
}

/// Each family once: membership, plans, sync, refusals, merges, corrections
/// and the global database's writer.
fn families(f: &mut Families<'_>, ctx: &ApiContext) -> fmt::Result {
    let members = ctx.membership.snapshot();
    let live = members.iter().filter(|m| m.live).count();
    let plan = ctx.plans.counters();
    let version = ctx.plans.current().map_or(0, |c| c.plan.version);
    f.gauge(
        "vidar_master_nodes_live",
        "Nodes with a liveliness token and a fresh status.",
        live as u64,
    )?;
    f.gauge(
        "vidar_master_nodes_known",
        "Nodes in the membership table.",
        members.len() as u64,
    )?;
    f.gauge(
        "vidar_master_plan_version",
        "Version of the plan in force (0: none).",
        version,
    )?;
    f.counter(
        "vidar_master_replans",
        "Times the planner ran.",
        plan.replans,
    )?;
    f.counter(
        "vidar_master_plan_versions",
        "Plan versions issued.",
        plan.versions,
    )?;
    f.counter(
        "vidar_master_plan_failures",
        "Planner or encoding failures.",
        plan.failures,
    )?;
    f.counter(
        "vidar_master_plan_publications",
        "Plan publications, repeats included.",
        plan.published,
    )?;
    f.counter(
        "vidar_master_sync_records",
        "Edge records stored in the global database.",
        ctx.sync.records(),
    )?;
    f.gauge(
        "vidar_master_sync_records_per_second",
        "Records per second of the last sync round.",
        ctx.sync.rate(),
    )?;
    f.counter(
        "vidar_master_sync_rounds",
        "Sync rounds completed.",
        ctx.sync.rounds(),
    )?;
    let sync = ctx.sync.nodes();
    let node = |n: &NodeId| [("node", n.as_str().to_owned())];
    f.gauges(
        "vidar_master_sync_lag_records",
        "Records an edge holds beyond the master's cursor.",
        sync.iter()
            .filter_map(|(n, s)| s.lag_records.map(|l| (node(n), l))),
    )?;
    f.gauges(
        "vidar_master_sync_since_success_seconds",
        "Seconds since the last complete sync of an edge.",
        sync.iter()
            .filter_map(|(n, s)| s.since_success_s.map(|v| (node(n), v))),
    )?;
    f.gauges(
        "vidar_master_sync_failures",
        "Consecutive failed sync rounds of an edge.",
        sync.iter().map(|(n, s)| (node(n), s.failures)),
    )?;
    f.counter(
        "vidar_master_refused_messages",
        "Messages refused on Vidar's keys (undecodable, wrong version, inconsistent).",
        ctx.refused(),
    )?;
    if let Some(n) = ctx.membership.enrolled_count() {
        f.gauge(
            "vidar_master_enrolled_nodes",
            "Nodes on the site's roster (re-read every 2 s from the master's bundle).",
            n,
        )?;
    }
    f.counter(
        "vidar_master_unknown_nodes",
        "Liveliness tokens and statuses of node ids not on the site's roster, ignored.",
        ctx.membership.unknown(),
    )?;
    f.counter(
        "vidar_master_identity_announcements",
        "Identity announcements received.",
        ctx.merges.announcements.load(Ordering::Relaxed),
    )?;
    f.counter(
        "vidar_master_identity_joins",
        "Nodes' joins of an identity they minted to a known one, taken (each stored and sent as a merge).",
        ctx.merges.joins.load(Ordering::Relaxed),
    )?;
    f.counter(
        "vidar_master_merges",
        "Identity merges decided.",
        ctx.merges.merges.load(Ordering::Relaxed),
    )?;
    f.gauge(
        "vidar_master_merge_window_identities",
        "Identities the merge book compares new ones against (at most 10,000, none older than an hour).",
        ctx.merges.window.load(Ordering::Relaxed),
    )?;
    f.gauge(
        "vidar_master_merge_window_bytes",
        "Heap those identities hold (embeddings included), bytes: fills for the first hour, then stays.",
        ctx.merges.window_bytes.load(Ordering::Relaxed),
    )?;
    f.counter(
        "vidar_master_corrections",
        "Operators' corrections stored since start.",
        ctx.corrections.recorded.load(Ordering::Relaxed),
    )?;
    f.counter(
        "vidar_master_corrections_refused",
        "Operators' corrections refused since start (bad, unknown or contradicting what is stored).",
        ctx.corrections.refused.load(Ordering::Relaxed),
    )?;
    let w = ctx.writer.stats();
    f.counter(
        "vidar_master_db_records",
        "Records committed to the global database since start.",
        w.records,
    )?;
    f.gauge(
        "vidar_master_db_queued",
        "Messages waiting for the global database's writer.",
        w.queued,
    )?;
    f.gauge(
        "vidar_sqlite_memory_bytes",
        "Heap SQLite holds in this process (page caches, statements; capped per connection).",
        vidar_store::sqlite_memory_bytes(),
    )?;
    let t = ctx.training.state();
    f.gauge(
        "vidar_training_running",
        "Whether split training rounds are running (1) or not (0).",
        u64::from(t.running),
    )?;
    f.counter(
        "vidar_training_rounds",
        "Split training rounds finished since start.",
        t.totals.rounds,
    )?;
    f.counter(
        "vidar_training_up_bytes",
        "Bytes the nodes sent the trainer in split training (activations, weights).",
        t.totals.up_bytes,
    )?;
    f.counter(
        "vidar_training_down_bytes",
        "Bytes the trainer sent the nodes in split training (weights, gradients).",
        t.totals.down_bytes,
    )?;
    f.counter(
        "vidar_training_nodes_dropped",
        "Nodes dropped from a split training round (a failed step, no answer).",
        t.totals.dropped,
    )?;
    if let Some(last) = t.rounds.back() {
        f.gauge(
            "vidar_training_last_round_seconds",
            "Wall time of the last split training round.",
            last.seconds,
        )?;
        f.gauge(
            "vidar_training_last_round_loss",
            "Mean triplet loss of the last split training round.",
            last.loss,
        )?;
    }
    vidar_runtime::heap::encode(f)?;
    vidar_runtime::metrics::certificate_expiry(
        f,
        ctx.link.certificate_expires().map(|t| t.0 / 1000),
    )
}
