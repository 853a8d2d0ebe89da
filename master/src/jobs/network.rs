//! The links jobs are planned over ([`Network`]): through the master's
//! router (a node's upload and download, shared by all it sends or
//! receives) or directly between nodes (a link per pair), at the rates the
//! nodes' probes measure, and the spare that [`spread_spare`] hands out.

use std::collections::BTreeMap;

use vidar_protocol::messages::JobAssignment;
use vidar_protocol::{CameraId, NodeId};
use vidar_scheduler::cluster::{Link, Node};

use crate::planner::CROP_BYTES;
use crate::planner::{ordered, pair_rates, NodeView, PlanOutput, SiteCamera, DEFAULT_LINK_MBIT_S};

/// Least share of a node's capacity, or of a link's rate, left to jobs.
pub const MIN_SPARE: f64 = 0.1;
/// Share of a link's measured rate jobs may plan with at most: the rest is
/// for what is not planned (status, sync, probes, plans).
pub const LINK_HEADROOM: f64 = 0.9;

/// The scheduler's id of a node.
pub(super) fn sched_id(n: &NodeId) -> Result<vidar_scheduler::NodeId, String> {
    vidar_scheduler::NodeId::new(n.as_str()).map_err(|e| e.to_string())
}

/// How bytes between two nodes travel, which sets the links jobs are
/// planned over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// Through the master's router (nodes with a site bundle are its zenoh
    /// clients): a node's upload is shared by everything it sends, its
    /// download by everything it receives.
    #[default]
    ThroughRouter,
    /// Directly between nodes (peers without a bundle): every pair of nodes
    /// is a link of its own.
    Direct,
}

impl Network {
    /// The network of a master whose cluster settings have a bundle
    /// (`bundled`) or not.
    pub fn of_site(bundled: bool) -> Self {
        if bundled {
            Self::ThroughRouter
        } else {
            Self::Direct
        }
    }
}

/// A link jobs are planned over.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Hop {
    /// A node's upload to the router.
    Up(NodeId),
    /// A node's download from the router.
    Down(NodeId),
    /// A pair of nodes connected directly (in name order).
    Pair(NodeId, NodeId),
}

/// The links bytes from `from` to `to` cross.
pub(super) fn hops(net: Network, from: &NodeId, to: &NodeId) -> Vec<Hop> {
    match net {
        Network::ThroughRouter => vec![Hop::Up(from.clone()), Hop::Down(to.clone())],
        Network::Direct => {
            let (a, b) = ordered(from, to);
            vec![Hop::Pair(a, b)]
        }
    }
}

/// The router in a [`Network::ThroughRouter`] cluster: a scheduler id no
/// node can have (node ids have no `:`). It has no memory, so no task is
/// placed on it.
const ROUTER: &str = "router:site";

/// Each live node's upload and download, Mbit/s, as the link probes bound
/// them. A probe from `a` to `b` goes through the router and measures
/// `min(a's upload, b's download)` less what else crosses them: `a`'s upload
/// is at least the fastest rate `a` measured to a peer, and at least the
/// upload its probes saw with all its jobs' bytes to every peer
/// (`NodeView::upload_mbit_s`: the rate to one peer is what the flows to
/// the others left); `b`'s download is at least the fastest any peer
/// measured to `b` (exact when some peer's link is as fast). A direction
/// not measured takes the other's figure; a node not measured at all takes
/// [`DEFAULT_LINK_MBIT_S`], so that a path to it is bounded by the other
/// end's measured link, as [`unmeasured_pair`] bounds a pair.
pub fn access_rates(views: &[NodeView]) -> BTreeMap<NodeId, (f64, f64)> {
    use crate::planner::model::fastest;
    let live: std::collections::BTreeSet<&NodeId> = views.iter().map(|v| &v.node).collect();
    let reports = || {
        views.iter().flat_map(|v| {
            v.links
                .iter()
                .filter(|(to, _)| *to != v.node && live.contains(to))
                .map(move |(to, r)| (&v.node, to, *r))
        })
    };
    views
        .iter()
        .map(|v| {
            let own = reports().filter(|(a, _, _)| *a == &v.node).map(|x| x.2);
            let up = fastest(own.chain(v.upload_mbit_s));
            let down = fastest(reports().filter(|(_, b, _)| *b == &v.node).map(|x| x.2));
            let rates = match (up, down) {
                (Some(u), Some(d)) => (u, d),
                (Some(x), None) | (None, Some(x)) => (x, x),
                (None, None) => (DEFAULT_LINK_MBIT_S, DEFAULT_LINK_MBIT_S),
            };
            (v.node.clone(), rates)
        })
        .collect()
}

/// The rate a pair not yet measured is planned with, Mbit/s. Every byte
/// between two nodes goes through the router, so a pair is no faster than
/// either node's own link, and a node's link is at least as fast as the
/// fastest pair it is in that was measured: the lower of the two ends'
/// fastest measured pairs, where known, else [`DEFAULT_LINK_MBIT_S`]. (Until
/// session 25 it was the default outright: a node behind a 3 Mbit/s link
/// was planned at 100 Mbit/s to a peer it had not probed yet, and its jobs'
/// frames were sent at that share, filling its link until its status and
/// liveliness were lost.)
pub fn unmeasured_pair(measured: &BTreeMap<(NodeId, NodeId), f64>, a: &NodeId, b: &NodeId) -> f64 {
    let fastest = |n: &NodeId| {
        crate::planner::model::fastest(
            measured
                .iter()
                .filter(|((x, y), _)| x == n || y == n)
                .map(|(_, r)| *r),
        )
    };
    match (fastest(a), fastest(b)) {
        (Some(x), Some(y)) => x.min(y),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => DEFAULT_LINK_MBIT_S,
    }
}

fn router() -> vidar_scheduler::NodeId {
    vidar_scheduler::NodeId::new(ROUTER).expect("a valid scheduler id")
}

/// The links of `net` among `views` for ENTS (the router appended to
/// `nodes` when bytes go through it), and what jobs may use of each,
/// bytes/s: [`LINK_HEADROOM`] of its rate less the crops JSTSH is expected
/// to send across it (not their share, which is a bound: the whole link
/// when they are its only flow), never less than [`MIN_SPARE`] of it. An
/// error names a node id the scheduler refuses.
pub(super) fn links(
    net: Network,
    views: &[NodeView],
    streams: &PlanOutput,
    fps_of: &BTreeMap<&CameraId, &SiteCamera>,
    nodes: &mut Vec<Node>,
) -> Result<(Vec<Link>, BTreeMap<Hop, f64>), String> {
    // The crops JSTSH sends across each link: what they are expected to
    // carry (the planner's model), not their share (an upper bound, which
    // is the whole link when they are its only flow).
    let mut crop_bytes: BTreeMap<Hop, f64> = BTreeMap::new();
    for s in streams.streams.iter().filter(|s| s.node != s.reid_node) {
        let Some(c) = fps_of.get(&s.camera) else {
            continue;
        };
        for hop in hops(net, &s.node, &s.reid_node) {
            *crop_bytes.entry(hop).or_default() += c.reid_crops_per_s() * CROP_BYTES;
        }
    }
    // Every link, Mbit/s: measured, or bounded until it is (the nodes
    // probe the peers the plan names, so a link a job comes to use is
    // measured then, and the plan follows).
    let mut rates: Vec<(Hop, f64)> = Vec::new();
    match net {
        Network::ThroughRouter => {
            for (node, (up, down)) in access_rates(views) {
                rates.push((Hop::Up(node.clone()), up));
                rates.push((Hop::Down(node), down));
            }
            nodes.push(Node {
                id: router(),
                capacity: f64::MIN_POSITIVE,
                memory: 0,
            });
        }
        Network::Direct => {
            let measured = pair_rates(views);
            for (i, a) in views.iter().enumerate() {
                for b in &views[i + 1..] {
                    let (a, b) = ordered(&a.node, &b.node);
                    let mbit = measured
                        .get(&(a.clone(), b.clone()))
                        .copied()
                        .unwrap_or_else(|| unmeasured_pair(&measured, &a, &b));
                    rates.push((Hop::Pair(a, b), mbit));
                }
            }
        }
    }
    let mut links = Vec::new();
    // What jobs may use of each link, bytes/s.
    let mut for_jobs: BTreeMap<Hop, f64> = BTreeMap::new();
    for (hop, mbit) in rates {
        let rate = mbit * 1e6 / 8.0;
        let used = crop_bytes.get(&hop).copied().unwrap_or(0.0);
        let bandwidth = (LINK_HEADROOM * rate - used).max(MIN_SPARE * rate);
        links.push(match &hop {
            Hop::Up(n) => Link::one_way(sched_id(n)?, router(), bandwidth),
            Hop::Down(n) => Link::one_way(router(), sched_id(n)?, bandwidth),
            Hop::Pair(a, b) => Link::new(sched_id(a)?, sched_id(b)?, bandwidth),
        });
        for_jobs.insert(hop, bandwidth);
    }
    Ok((links, for_jobs))
}

/// Shares are caps (token buckets), and a link's bandwidth that no flow
/// was given is of no use to anyone: each flow is scaled up by the least,
/// over the links it crosses, of what jobs may use of the link over what
/// its flows were given (so no link is given more than jobs may use of it),
/// keeping the proportions the policy set on the link that binds. OTFA
/// gives a flow what its job's compute can use at the modelled bytes per
/// item; when items are larger than modelled (more people in view than the
/// camera's `persons`), the spare is what lets them through.
pub(super) fn spread_spare(
    placed: &mut [JobAssignment],
    for_jobs: &BTreeMap<Hop, f64>,
    net: Network,
) {
    let flow_hops = |a: &JobAssignment, stage: &vidar_protocol::StageId| -> Vec<Hop> {
        let ends = || {
            let i = a.spec.stages.iter().position(|s| &s.name == stage)?;
            let input = a.spec.stages[i].input.as_ref()?;
            let p = a.spec.stages.iter().position(|s| &s.name == input)?;
            Some((a.nodes.get(p)?, a.nodes.get(i)?))
        };
        ends().map_or_else(Vec::new, |(from, to)| hops(net, from, to))
    };
    let mut given: BTreeMap<Hop, f64> = BTreeMap::new();
    for a in placed.iter() {
        for f in &a.flows {
            for hop in flow_hops(a, &f.to_stage) {
                *given.entry(hop).or_default() += f.bytes_per_s as f64;
            }
        }
    }
    for a in placed.iter_mut() {
        let scaled: Vec<u64> = a
            .flows
            .iter()
            .map(|f| {
                let scale = flow_hops(a, &f.to_stage)
                    .iter()
                    .map(|h| Some(for_jobs.get(h)? / given.get(h)?))
                    .try_fold(f64::INFINITY, |m, s| Some(m.min(s?)))
                    .filter(|s| s.is_finite() && *s > 1.0)
                    .unwrap_or(1.0);
                (f.bytes_per_s as f64 * scale) as u64
            })
            .collect();
        for (f, b) in a.flows.iter_mut().zip(scaled) {
            f.bytes_per_s = b;
        }
    }
}
