//! Placing jobs on the live nodes with ENTS (`vidar_scheduler::ents`): OTFA
//! by default, or `jobs_policy`. Pure: the same inputs give the same placement.
//!
//! # How jobs and camera streams share the site
//! JSTSH places the cameras first (their ingest, detection, tracking and
//! re-ID); jobs get what it leaves:
//! - **Compute.** A node's capacity `PS_u` is counted in detector frames per
//!   second (its profiled `detect_fps`), less the detector frames/s of the
//!   cameras JSTSH gave it (frames/s times each one's measured
//!   `detect_share` and `ingest_work`) and the re-ID crops it serves (the planner's
//!   `REID_CROPS_PER_PERSON_S` a person, each worth `detect_fps /
//!   reid_crops_per_s` frames), or by what its own work was measured to
//!   cost (`NodeView::own_work_fps`: the process's CPU less its jobs'),
//!   whichever is more, but never below [`MIN_SPARE`] of it (a job on a
//!   full node runs slowly, it is not refused).
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
//!   A frame sent to another node costs JPEG work on both ends (a
//!   [`Carry`], per megapixel as the nodes profile it: the camera node's
//!   own `jpeg_encode_cost`, and the site's median `jpeg_decode_cost`
//!   since the receiver is not chosen yet), so a camera box that sends its
//!   frames away is charged for encoding them.
//! - **Allocation** is [`Allocation::Period`]: a light stage stays with the
//!   stage that feeds it unless moving it shortens the job's period by more
//!   than `PERIOD_TOLERANCE` (ALGORITHMS.md's load-aware rule scattered
//!   trackers and sinks over idle nodes, a flow each).
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
use vidar_scheduler::cluster::{Cluster, Node};
use vidar_scheduler::ents::{self, Allocation, Carry, Job, JobInstance, Policy, Task, TaskInput};

use super::network::{self, sched_id, spread_spare};
pub use super::network::{access_rates, unmeasured_pair, Network, LINK_HEADROOM, MIN_SPARE};
use crate::planner::{NodeView, PlanOutput, SiteCamera};
use crate::planner::{DETECTOR_MEMORY_MB, REID_MEMORY_MB};

/// Work per item of a tracker or a sink, detector frames.
pub const LIGHT_WORK: f64 = 0.02;
/// Bytes per pixel of a frame as a job carries it (JPEG at quality 80,
/// 4:2:0: 0.17 on vtest.avi's frames; busier scenes more), until the
/// sender's measured figure replaces it.
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

/// The median of `values` (the upper one of an even count), if any.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
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
                let detect = if s.node == v.node {
                    c.fps * c.frame_work()
                } else {
                    0.0
                };
                let reid = if s.reid_node == v.node {
                    c.reid_crops_per_s() * crop_cost
                } else {
                    0.0
                };
                Some(detect + reid)
            })
            .sum();
        // Or what its own work measurably costs, decoding and the rest
        // included, which the model above leaves out.
        let used = used.max(v.own_work_fps);
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
    let (links, for_jobs) = match network::links(net, views, streams, &fps_of, &mut nodes) {
        Ok(l) => l,
        Err(e) => {
            out.waiting = jobs.iter().map(|j| (j.id.clone(), e.clone())).collect();
            return out;
        }
    };
    // A re-ID crop's cost in detector frames: the median over the nodes
    // that profiled both.
    let crop_cost = median(
        views
            .iter()
            .filter(|v| v.detect_fps > 0.0 && v.reid_crops_per_s > 0.0)
            .map(|v| v.detect_fps / v.reid_crops_per_s),
    )
    .unwrap_or(0.1);
    // Carrying a frame to another node, per megapixel, in detector frames:
    // encoding on the camera's node, as it profiled it; decoding on a node
    // not yet chosen, so the median over the nodes that profiled it (and
    // the median encoding for a node that did not; 0 when none did).
    let profiled =
        |f: fn(&NodeView) -> f64| median(views.iter().map(f).filter(|c| *c > 0.0)).unwrap_or(0.0);
    let (encode_mpx, decode_mpx) = (
        profiled(|v| v.jpeg_encode_cost),
        profiled(|v| v.jpeg_decode_cost),
    );
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
                // Crops, tracks and vectors are carried as they are.
                Some(p) if p != checked.source => vec![TaskInput {
                    from: spec.stages[p].name.to_string(),
                    bytes: edge_bytes[i],
                    carry: Carry::default(),
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
        let rate = spec.rate.min(cam.fps);
        let mpx = f64::from(cam.width) * f64::from(cam.height) / 1e6;
        let encode = views
            .iter()
            .find(|v| v.node == *source)
            .map(|v| v.jpeg_encode_cost)
            .filter(|c| *c > 0.0)
            .unwrap_or(encode_mpx);
        ents_jobs.push(Job {
            id: spec.id.to_string(),
            source: source_id,
            input_bytes: frame_bytes,
            // Frames leave their source as JPEG, and come in decoded.
            input_carry: Carry {
                send: encode * mpx,
                recv: decode_mpx * mpx,
            },
            // Planned with room for larger items than the mean.
            rate: rate * (1.0 + ITEM_SLACK),
            tasks,
        });
        specs.push((spec, checked, source.clone(), edge_bytes, rate));
    }
    if ents_jobs.is_empty() {
        return out;
    }
    let inst = JobInstance {
        cluster: Cluster { nodes, links },
        jobs: ents_jobs,
        k_paths: 1,
        allocation: Allocation::Period,
    };
    // The placement in force of every job whose spec and source are
    // unchanged: kept unless a fresh one is better by more than JOB_CHURN.
    let mut keep = BTreeMap::new();
    for (spec, checked, source, _, _) in &specs {
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
            for (spec, _, _, _, _) in &specs {
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
        let Some((spec, checked, source, edge_bytes, rate)) =
            specs.iter().find(|(s, ..)| s.id.as_str() == p.job)
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
            predicted_rate: p.throughput.min(*rate),
        });
    }
    spread_spare(&mut out.placed, &for_jobs, net);
    out
}
