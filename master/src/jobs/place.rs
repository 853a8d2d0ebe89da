//! Placing jobs on the live nodes with ENTS (`vidar_scheduler::ents`): OTFA
//! by default, or `jobs_policy`. Pure: the same inputs give the same placement.
//!
//! # How jobs and camera streams share the site
//! JSTSH places the cameras first (their ingest, detection, tracking and
//! re-ID); jobs get what it leaves:
//! - **Compute.** A node's capacity `PS_u` is counted in detector frames per
//!   second (its profiled `detect_fps`), less the frames/s of the cameras
//!   JSTSH gave it and the re-ID crops it serves (the planner's
//!   `REID_CROPS_PER_PERSON_S` a person, each worth `detect_fps /
//!   reid_crops_per_s` frames), but never below [`MIN_SPARE`] of it (a job
//!   on a full node runs slowly, it is not refused).
//! - **Memory.** `memory_mb`, less a detector if it ingests cameras and a
//!   re-ID model if it serves re-ID.
//! - **Links** ([`Network`]). On a site with a bundle, nodes are zenoh
//!   clients of the master's router and every byte between two nodes goes
//!   through it: a node's access link is two one-way links to the router,
//!   its upload and its download, and everything it sends to any peer
//!   shares its upload (two jobs sending frames from one node to two peers
//!   share one link, not two). Without a bundle, nodes may connect to each
//!   other directly, and every pair of live nodes is one link at the rate
//!   measured between them. Rates are measured by the nodes' probes
//!   ([`access_rates`], [`pair_rates`]), bounded until measured
//!   ([`unmeasured_pair`]); no relaying through a third node is modelled,
//!   and `k_paths = 1` (there is one path). Jobs may plan with
//!   [`LINK_HEADROOM`] of a link less the crops JSTSH sends across it (their
//!   expected bytes, not their share, which is a bound), but never less
//!   than [`MIN_SPARE`] of it.
//! - **A job** is one ENTS job: its source node is where JSTSH ingests its
//!   camera (the source stage always runs there; it is not an ENTS task), its
//!   rate the lower of its own and the camera's. Each other stage is a task:
//!   work per item in detector frames (`detect` 1, `onnx` on a frame 1, `reid`
//!   and `onnx` per crop the site's median cost of a re-ID crop in detector
//!   frames, `track` and `sink` a token [`LIGHT_WORK`]); bytes per item of
//!   what its input produces: as the node sending it measures them once it
//!   has sent [`MIN_MEASURED_ITEMS`] (`NodeStatus::job_flows`), else
//!   modelled ([`bytes_per_item`]) for the camera's people per frame (as
//!   its node measures them, else configured).
//!
//! A job whose camera is not placed, or which the policy cannot place (no
//! memory), waits, with why.
//!
//! Shares: the policy's shares of a pair are then scaled up together to all
//! that jobs may use of it ([`spread_spare`]): a share is a cap, and items
//! larger than modelled need the room.
//!
//! Stability: the placement in force of each job is kept (its routes and
//! shares set afresh for the new inputs) unless a fresh one places more
//! jobs or is better by more than [`JOB_CHURN`], both judged by the same
//! model on the same inputs.

use std::collections::BTreeMap;

use vidar_protocol::messages::{DataKind, JobAssignment, JobFlow, JobSpec, StageKind};
use vidar_protocol::{CameraId, JobId, NodeId};
use vidar_scheduler::cluster::{Cluster, Link, Node};
use vidar_scheduler::ents::{self, Job, JobInstance, Policy, Task, TaskInput};

use crate::planner::{ordered, pair_rates, NodeView, PlanOutput, SiteCamera, DEFAULT_LINK_MBIT_S};
use crate::planner::{CROP_BYTES, DETECTOR_MEMORY_MB, REID_CROPS_PER_PERSON_S, REID_MEMORY_MB};

/// Least share of a node's capacity, or of a link's rate, left to jobs.
pub const MIN_SPARE: f64 = 0.1;
/// Share of a link's measured rate jobs may plan with at most: the rest is
/// for what is not planned (status, sync, probes, plans).
pub const LINK_HEADROOM: f64 = 0.9;
/// Work per item of a tracker or a sink, detector frames.
pub const LIGHT_WORK: f64 = 0.02;
/// Bytes per pixel of a frame as a job carries it (JPEG at quality 80).
pub const FRAME_JPEG_BYTES_PER_PIXEL: f64 = 0.2;
/// Bytes of one person crop as a job carries it (JPEG at quality 80).
pub const JOB_CROP_BYTES: f64 = 8_000.0;
/// Items a flow must have carried before its measured bytes per item
/// replace the model's.
pub const MIN_MEASURED_ITEMS: u64 = 20;
/// Items vary in size (a frame with more in view is a larger JPEG, and has
/// more crops): a job given exactly its rate times the mean bytes per item
/// drops every larger item at its share (the testbed's 1 frame/s job lost
/// 0.36 items/s so). Jobs are planned at this much above their rate, and
/// their predicted rate is the rate at most.
pub const ITEM_SLACK: f64 = 0.2;
/// Memory of a light stage (tracker, sink), MiB.
pub const LIGHT_MEMORY_MB: u64 = 16;
const MIB: u64 = 1 << 20;

/// What is placed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// The placed jobs.
    pub placed: Vec<JobAssignment>,
    /// Jobs not placed, with why.
    pub waiting: Vec<(JobId, String)>,
}

/// Bytes per item of `kind` for a camera of `width x height` with `persons`
/// people per frame; `output_values` for tensors.
pub fn bytes_per_item(
    kind: DataKind,
    width: u32,
    height: u32,
    persons: f64,
    output_values: usize,
) -> f64 {
    let persons = persons.max(0.5);
    match kind {
        DataKind::Frames => f64::from(width) * f64::from(height) * FRAME_JPEG_BYTES_PER_PIXEL,
        DataKind::Crops | DataKind::Tracks => persons * JOB_CROP_BYTES,
        DataKind::Embeddings => persons * (512.0 * 4.0 + 48.0),
        DataKind::Tensors => persons * (output_values as f64 * 4.0 + 48.0),
    }
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
enum Hop {
    /// A node's upload to the router.
    Up(NodeId),
    /// A node's download from the router.
    Down(NodeId),
    /// A pair of nodes connected directly (in name order).
    Pair(NodeId, NodeId),
}

/// The links bytes from `from` to `to` cross.
fn hops(net: Network, from: &NodeId, to: &NodeId) -> Vec<Hop> {
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

fn sched_id(n: &NodeId) -> Result<vidar_scheduler::NodeId, String> {
    vidar_scheduler::NodeId::new(n.as_str()).map_err(|e| e.to_string())
}

fn router() -> vidar_scheduler::NodeId {
    vidar_scheduler::NodeId::new(ROUTER).expect("a valid scheduler id")
}

/// A fresh placement replaces the one in force only when its mean
/// predicted rate is higher by more than this fraction, both judged on the
/// same inputs (moving a stage restarts it and loads its model again).
pub const JOB_CHURN: f64 = 0.15;

/// Places `jobs` (each checked) given the cameras, the live nodes, the
/// stream plan in force and the jobs' placement in force (`previous`), with
/// `policy`.
pub fn place(
    jobs: &[JobSpec],
    cameras: &[SiteCamera],
    views: &[NodeView],
    streams: &PlanOutput,
    previous: &[JobAssignment],
    policy: Policy,
    net: Network,
) -> Placement {
    let mut out = Placement::default();
    if jobs.is_empty() {
        return out;
    }
    if views.is_empty() {
        out.waiting = jobs
            .iter()
            .map(|j| (j.id.clone(), "no live node".to_string()))
            .collect();
        return out;
    }
    let models = super::image_models().unwrap_or_default();
    // The cluster: what JSTSH leaves.
    let ingest: BTreeMap<&CameraId, &NodeId> = streams
        .streams
        .iter()
        .map(|s| (&s.camera, &s.node))
        .collect();
    let fps_of: BTreeMap<&CameraId, &SiteCamera> = cameras.iter().map(|c| (&c.camera, c)).collect();
    let mut nodes = Vec::new();
    for v in views {
        // Detection of the cameras it ingests, re-ID of those it serves
        // (in detector frames: a crop costs detect_fps / reid_crops_per_s).
        let crop_cost = if v.reid_crops_per_s > 0.0 {
            v.detect_fps / v.reid_crops_per_s
        } else {
            0.0
        };
        let used: f64 = streams
            .streams
            .iter()
            .filter_map(|s| {
                let c = fps_of.get(&s.camera)?;
                let detect = if s.node == v.node { c.fps } else { 0.0 };
                let reid = if s.reid_node == v.node {
                    c.persons * REID_CROPS_PER_PERSON_S * crop_cost
                } else {
                    0.0
                };
                Some(detect + reid)
            })
            .sum();
        let detect = v.detect_fps.max(0.1);
        let capacity = (detect - used).max(MIN_SPARE * detect);
        let mut mem_mb = v.memory_mb;
        if used > 0.0 {
            mem_mb = mem_mb.saturating_sub(DETECTOR_MEMORY_MB);
        }
        if v.reid_service {
            mem_mb = mem_mb.saturating_sub(REID_MEMORY_MB);
        }
        let id = match sched_id(&v.node) {
            Ok(id) => id,
            Err(e) => {
                out.waiting = jobs.iter().map(|j| (j.id.clone(), e.clone())).collect();
                return out;
            }
        };
        nodes.push(Node {
            id,
            capacity,
            memory: mem_mb.max(64) * MIB,
        });
    }
    // The crops JSTSH sends across each link: what they are expected to
    // carry (the planner's model), not their share (an upper bound, which
    // is the whole link when they are its only flow).
    let mut crop_bytes: BTreeMap<Hop, f64> = BTreeMap::new();
    for s in streams.streams.iter().filter(|s| s.node != s.reid_node) {
        let Some(c) = fps_of.get(&s.camera) else {
            continue;
        };
        for hop in hops(net, &s.node, &s.reid_node) {
            *crop_bytes.entry(hop).or_default() += c.persons * REID_CROPS_PER_PERSON_S * CROP_BYTES;
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
        let link = match &hop {
            Hop::Up(n) => sched_id(n).map(|n| Link::one_way(n, router(), bandwidth)),
            Hop::Down(n) => sched_id(n).map(|n| Link::one_way(router(), n, bandwidth)),
            Hop::Pair(a, b) => sched_id(a).and_then(|a| Ok(Link::new(a, sched_id(b)?, bandwidth))),
        };
        for_jobs.insert(hop, bandwidth);
        if let Ok(link) = link {
            links.push(link);
        }
    }
    // A re-ID crop's cost in detector frames: the median over the nodes
    // that profiled both.
    let mut ratios: Vec<f64> = views
        .iter()
        .filter(|v| v.detect_fps > 0.0 && v.reid_crops_per_s > 0.0)
        .map(|v| v.detect_fps / v.reid_crops_per_s)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let crop_cost = ratios.get(ratios.len() / 2).copied().unwrap_or(0.1);
    // Measured bytes per item of the flows into each stage: the sender
    // that offered the most items (after a move, the old sender's figure
    // lingers until the job leaves it).
    let mut measured_bytes: BTreeMap<(&JobId, &vidar_protocol::StageId), (u64, f64)> =
        BTreeMap::new();
    for (job, stage, items, per_item) in views.iter().flat_map(|v| &v.job_flows) {
        if *items < MIN_MEASURED_ITEMS || !per_item.is_finite() || *per_item <= 0.0 {
            continue;
        }
        let e = measured_bytes.entry((job, stage)).or_insert((0, 0.0));
        if *items > e.0 {
            *e = (*items, *per_item);
        }
    }
    // The jobs.
    let mut ents_jobs = Vec::new();
    let mut specs = Vec::new();
    for spec in jobs {
        let checked = match spec.check() {
            Ok(c) => c,
            Err(e) => {
                out.waiting.push((spec.id.clone(), e));
                continue;
            }
        };
        let Some(camera) = spec.camera() else {
            out.waiting
                .push((spec.id.clone(), "no source camera".into()));
            continue;
        };
        let Some(cam) = fps_of.get(camera) else {
            out.waiting.push((
                spec.id.clone(),
                format!("camera {camera} is not one of the site's cameras"),
            ));
            continue;
        };
        let Some(&source) = ingest.get(camera) else {
            out.waiting.push((
                spec.id.clone(),
                format!("camera {camera} is not ingested by any node yet"),
            ));
            continue;
        };
        let source_id = match sched_id(source) {
            Ok(id) => id,
            Err(e) => {
                out.waiting
                    .push((spec.id.clone(), format!("source node {source}: {e}")));
                continue;
            }
        };
        let bytes = |kind: DataKind, model: Option<&String>| {
            let values = model
                .and_then(|m| models.get(m))
                .map_or(512, |m| m.output_values);
            bytes_per_item(kind, cam.width, cam.height, cam.persons, values)
        };
        let mut frame_bytes = bytes(DataKind::Frames, None);
        // Bytes per item into each stage from its input.
        let edge_bytes: Vec<f64> = checked
            .inputs
            .iter()
            .zip(&spec.stages)
            .map(|(p, s)| {
                let modelled = match p {
                    Some(p) if *p == checked.source => frame_bytes,
                    Some(p) => checked.produces[*p]
                        .map_or(0.0, |k| bytes(k, spec.stages[*p].model.as_ref())),
                    None => 0.0,
                };
                measured_bytes
                    .get(&(&spec.id, &s.name))
                    .map_or(modelled, |m| m.1)
            })
            .collect();
        // The job's input (frames from its source) as measured into the
        // first stage fed by the source that was measured.
        if let Some(b) = (checked.inputs.iter().zip(&spec.stages))
            .filter(|(p, _)| **p == Some(checked.source))
            .find_map(|(_, s)| measured_bytes.get(&(&spec.id, &s.name)))
        {
            frame_bytes = b.1;
        }
        let mut tasks = Vec::new();
        for (i, s) in spec.stages.iter().enumerate() {
            if i == checked.source {
                continue;
            }
            let per_crop = cam.persons.max(0.5) * crop_cost;
            let (work, memory_mb) = match s.kind {
                StageKind::Detect => (1.0, DETECTOR_MEMORY_MB),
                StageKind::Reid => (per_crop, REID_MEMORY_MB),
                StageKind::Onnx if checked.takes[i] == Some(DataKind::Frames) => {
                    (1.0, REID_MEMORY_MB)
                }
                StageKind::Onnx => (per_crop, REID_MEMORY_MB),
                StageKind::Track | StageKind::Sink | StageKind::Source => {
                    (LIGHT_WORK, LIGHT_MEMORY_MB)
                }
            };
            let inputs = match checked.inputs[i] {
                Some(p) if p != checked.source => vec![TaskInput {
                    from: spec.stages[p].name.to_string(),
                    bytes: edge_bytes[i],
                }],
                _ => Vec::new(),
            };
            tasks.push(Task {
                name: s.name.to_string(),
                work,
                memory: memory_mb * MIB,
                inputs,
            });
        }
        ents_jobs.push(Job {
            id: spec.id.to_string(),
            source: source_id,
            input_bytes: frame_bytes,
            // Planned with room for larger items than the mean.
            rate: spec.rate.min(cam.fps) * (1.0 + ITEM_SLACK),
            tasks,
        });
        specs.push((spec, checked, source.clone(), edge_bytes));
    }
    if ents_jobs.is_empty() {
        return out;
    }
    let inst = JobInstance {
        cluster: Cluster { nodes, links },
        jobs: ents_jobs,
        k_paths: 1,
    };
    // The placement in force of every job whose spec and source are
    // unchanged: kept unless a fresh one is better by more than JOB_CHURN.
    let mut keep = BTreeMap::new();
    for (spec, checked, source, _) in &specs {
        let Some(old) = previous.iter().find(|a| a.spec == **spec) else {
            continue;
        };
        if old.nodes.get(checked.source) != Some(source) {
            continue;
        }
        let tasks: BTreeMap<String, vidar_scheduler::NodeId> = spec
            .stages
            .iter()
            .zip(&old.nodes)
            .enumerate()
            .filter(|(i, _)| *i != checked.source)
            .filter_map(|(_, (s, n))| Some((s.name.to_string(), sched_id(n).ok()?)))
            .collect();
        keep.insert(spec.id.to_string(), tasks);
    }
    let solved = ents::solve(&inst, policy).and_then(|fresh| {
        if keep.is_empty() {
            return Ok(fresh);
        }
        let kept = ents::solve_keeping(&inst, policy, &keep)?;
        let better = fresh.placed.len() > kept.placed.len()
            || (fresh.placed.len() == kept.placed.len()
                && fresh.mean_throughput > (1.0 + JOB_CHURN) * kept.mean_throughput);
        Ok(if better { fresh } else { kept })
    });
    let plan = match solved {
        Ok(p) => p,
        Err(e) => {
            for (spec, _, _, _) in &specs {
                out.waiting.push((
                    spec.id.clone(),
                    format!("the {} scheduler: {e}", policy.name()),
                ));
            }
            return out;
        }
    };
    for w in &plan.waiting {
        if let Ok(id) = JobId::new(w) {
            out.waiting
                .push((id, "no node has the memory its stages need".into()));
        }
    }
    for p in &plan.placed {
        let Some((spec, checked, source, edge_bytes)) =
            specs.iter().find(|(s, _, _, _)| s.id.as_str() == p.job)
        else {
            continue;
        };
        let mut nodes = Vec::with_capacity(spec.stages.len());
        for (i, s) in spec.stages.iter().enumerate() {
            let node = if i == checked.source {
                Some(source.clone())
            } else {
                p.tasks
                    .get(s.name.as_str())
                    .and_then(|n| NodeId::new(n.as_str()).ok())
            };
            match node {
                Some(n) => nodes.push(n),
                None => break,
            }
        }
        if nodes.len() != spec.stages.len() {
            out.waiting.push((
                spec.id.clone(),
                "the scheduler left a stage unplaced".into(),
            ));
            continue;
        }
        // A pair's share is split among the stage inputs crossing it in
        // proportion to their bytes per item.
        let mut flows = Vec::new();
        for (i, s) in spec.stages.iter().enumerate() {
            let Some(p_i) = checked.inputs[i] else {
                continue;
            };
            if nodes[p_i] == nodes[i] {
                continue;
            }
            let share = p
                .flows
                .iter()
                .find(|f| {
                    f.from.as_str() == nodes[p_i].as_str() && f.to.as_str() == nodes[i].as_str()
                })
                .filter(|f| f.bytes > 0.0)
                .map_or(0.0, |f| f.bandwidth * edge_bytes[i] / f.bytes);
            flows.push(JobFlow {
                to_stage: s.name.clone(),
                bytes_per_s: share.max(0.0) as u64,
            });
        }
        out.placed.push(JobAssignment {
            spec: (*spec).clone(),
            nodes,
            flows,
            predicted_rate: p.throughput.min(
                (spec.camera().and_then(|c| fps_of.get(c)))
                    .map_or(spec.rate, |c| spec.rate.min(c.fps)),
            ),
        });
    }
    spread_spare(&mut out.placed, &for_jobs, net);
    out
}

/// Shares are caps (token buckets), and a link's bandwidth that no flow
/// was given is of no use to anyone: each flow is scaled up by the least,
/// over the links it crosses, of what jobs may use of the link over what
/// its flows were given (so no link is given more than jobs may use of it),
/// keeping the proportions the policy set on the link that binds. OTFA
/// gives a flow what its job's compute can use at the modelled bytes per
/// item; when items are larger than modelled (more people in view than the
/// camera's `persons`), the spare is what lets them through.
fn spread_spare(placed: &mut [JobAssignment], for_jobs: &BTreeMap<Hop, f64>, net: Network) {
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
