//! `/metrics`: the master's metrics in the Prometheus text exposition,
//! rendered from the services' counters at each scrape (nothing is kept here).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use vidar_protocol::NodeId;

use super::state::ApiContext;

/// `GET /metrics`.
pub(super) async fn metrics(State(ctx): State<Arc<ApiContext>>) -> impl IntoResponse {
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
        &[(None, ctx.refused() as f64)],
    );
    metric(
        "vidar_master_unknown_nodes_total",
        "counter",
        "Liveliness tokens and statuses of node ids not on the site's roster, ignored.",
        &[(None, ctx.membership.unknown() as f64)],
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
    metric(
        "vidar_master_corrections_total",
        "counter",
        "Operators' corrections stored since start.",
        &[(
            None,
            ctx.corrections.recorded.load(Ordering::Relaxed) as f64,
        )],
    );
    metric(
        "vidar_master_corrections_refused_total",
        "counter",
        "Operators' corrections refused since start (bad, unknown or contradicting what is stored).",
        &[(None, ctx.corrections.refused.load(Ordering::Relaxed) as f64)],
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
