//! The plan service's decisions, pure: the planner's view of a node from its
//! status, the wire plan of a planner output, whether a new plan places work
//! differently from the one in force, and whether the load calls for a
//! replan. No clock is read here: callers pass the time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use vidar_protocol::messages::{BandwidthShare, CameraLoad, NodeStatus, Plan, StreamAssignment};
use vidar_protocol::{CameraId, NodeId, StreamState, UnixMs};

use super::Current;
use crate::planner::{NodeView, PlanOutput};

/// A node whose detector is busier than this fraction triggers a replan.
pub const BUSY_THRESHOLD: f64 = 0.9;
/// How long a node has, after a plan, to start streaming a camera before its
/// absence counts as a load shift.
pub const STREAM_GRACE: Duration = Duration::from_secs(20);
/// A bandwidth share that moves by more than this fraction makes a new version.
const SHARE_CHANGE: f64 = 0.2;

/// A link whose measured rate moves by more than this fraction since the
/// plan in force was made triggers a replan.
pub const LINK_CHANGE: f64 = 0.3;
/// Above this rate (Mbit/s, the planner's default for an unmeasured link) a
/// link's crops cost a few ms at most: its probes' jitter triggers nothing.
pub const LINK_AMPLE_MBIT_S: f64 = crate::planner::DEFAULT_LINK_MBIT_S;

/// Why the measured links call for a replan, if they do: a link whose rate
/// moved by more than [`LINK_CHANGE`] from the one the plan in force was
/// made with (the planner's default, [`LINK_AMPLE_MBIT_S`], for a link not
/// measured then), unless both are at least [`LINK_AMPLE_MBIT_S`]. A link
/// no longer measured changes nothing by itself (a node that left replans
/// anyway).
pub(super) fn link_shift(
    planned: &BTreeMap<(NodeId, NodeId), f64>,
    now: &BTreeMap<(NodeId, NodeId), f64>,
) -> Option<String> {
    for ((a, b), &r) in now {
        let p = planned
            .get(&(a.clone(), b.clone()))
            .copied()
            .unwrap_or(LINK_AMPLE_MBIT_S);
        if rate_moved(p, r) {
            return Some(format!("link {a}-{b} {p:.1} -> {r:.1} Mbit/s"));
        }
    }
    None
}

/// Whether a rate moved from `p` to `r` by more than [`LINK_CHANGE`], unless
/// both are at least [`LINK_AMPLE_MBIT_S`].
fn rate_moved(p: f64, r: f64) -> bool {
    let ample = p.min(r) >= LINK_AMPLE_MBIT_S;
    !ample && (r - p).abs() > LINK_CHANGE * p.max(r)
}

/// Nodes' uploads as jobs are planned with them (`NodeView::upload_mbit_s`,
/// Mbit/s), those measured.
pub(super) fn uploads(views: &[NodeView]) -> BTreeMap<NodeId, f64> {
    views
        .iter()
        .filter_map(|v| Some((v.node.clone(), v.upload_mbit_s?)))
        .collect()
}

/// [`link_shift`] for the nodes' uploads: jobs through the router share a
/// node's upload, and a pair's rate is only what other flows left of it.
pub(super) fn upload_shift(
    planned: &BTreeMap<NodeId, f64>,
    now: &BTreeMap<NodeId, f64>,
) -> Option<String> {
    now.iter().find_map(|(n, &r)| {
        let p = planned.get(n).copied().unwrap_or(LINK_AMPLE_MBIT_S);
        rate_moved(p, r).then(|| format!("upload of {n} {p:.1} -> {r:.1} Mbit/s"))
    })
}

/// What `s`'s own work (its process's CPU less its jobs') cost it, in
/// detector frames/s: 0 when it did not say (no detector cores, or
/// figures that are not finite).
fn own_work_fps(s: &NodeStatus) -> f64 {
    let (c, l) = (&s.capacity, &s.load);
    let own = (l.cpu_cores - l.job_cpu_cores).max(0.0) * c.detect_fps / c.detect_cores;
    if c.detect_cores > 0.0 && own.is_finite() {
        own
    } else {
        0.0
    }
}

/// `figure` of each camera `s` ingests, for those where it is a positive
/// number.
fn positive(s: &NodeStatus, figure: impl Fn(&CameraLoad) -> f64) -> Vec<(CameraId, f64)> {
    (s.load.cameras.iter())
        .map(|c| (c.camera.clone(), figure(c)))
        .filter(|(_, v)| v.is_finite() && *v > 0.0)
        .collect()
}

/// The planner's view of a node, from its last status. Links that the planner
/// would refuse (to itself, not positive, repeated) are left out.
pub fn node_view(s: &NodeStatus) -> NodeView {
    let mut seen = BTreeSet::new();
    let kept: Vec<_> = s
        .links
        .iter()
        .filter(|l| l.to != s.node && l.mbit_s.is_finite() && l.mbit_s > 0.0)
        .filter(|l| seen.insert(l.to.clone()))
        .collect();
    let links = kept.iter().map(|l| (l.to.clone(), l.mbit_s)).collect();
    // Its upload: the highest its probes saw (each at least the rate to
    // its peer).
    let upload_mbit_s =
        crate::planner::model::fastest(kept.iter().map(|l| l.upload_mbit_s.max(l.mbit_s)));
    NodeView {
        node: s.node.clone(),
        cores: s.capacity.cores,
        memory_mb: s.capacity.memory_mb,
        detect_fps: s.capacity.detect_fps,
        reid_crops_per_s: s.capacity.reid_crops_per_s,
        reid_service: s.capacity.reid_service,
        jpeg_encode_cost: s.capacity.jpeg_encode_cost,
        jpeg_decode_cost: s.capacity.jpeg_decode_cost,
        own_work_fps: own_work_fps(s),
        links,
        upload_mbit_s,
        camera_bitrates: positive(s, |c| c.bitrate_bps),
        camera_persons: positive(s, |c| c.persons),
        camera_detect_shares: (positive(s, |c| c.detect_share).into_iter())
            .map(|(c, share)| (c, share.min(1.0)))
            .collect(),
        camera_fps: positive(s, |c| c.fps),
        job_flows: s
            .job_flows
            .iter()
            .filter(|f| f.items > 0)
            .map(|f| {
                let per_item = f.bytes as f64 / f.items as f64;
                (f.job.clone(), f.to_stage.clone(), f.items, per_item)
            })
            .collect(),
    }
}

/// The wire plan for a planner output, issued at `issued_ms`.
pub(super) fn to_plan(out: &PlanOutput, version: u64, issued_ms: UnixMs) -> Plan {
    Plan {
        version,
        issued_ms,
        reason: out.reason.clone(),
        streams: out
            .streams
            .iter()
            .map(|p| StreamAssignment {
                camera: p.camera.clone(),
                // Never a camera's credentials: the node that ingests it
                // holds them (issue 16).
                source: vidar_protocol::secret::strip_credentials(&p.source),
                node: p.node.clone(),
                reid_node: p.reid_node.clone(),
            })
            .collect(),
        bandwidth: out
            .bandwidth
            .iter()
            .map(|(from, to, b)| BandwidthShare {
                from: from.clone(),
                to: to.clone(),
                bytes_per_s: *b,
            })
            .collect(),
        jobs: Vec::new(),
    }
}

/// Whether `new` places work differently from `old` (streams, flows, or a
/// bandwidth share moved by more than [`SHARE_CHANGE`]).
pub fn placement_changed(old: &Plan, new: &Plan) -> bool {
    if old.streams != new.streams || old.bandwidth.len() != new.bandwidth.len() {
        return true;
    }
    let moved = |a: u64, b: u64| {
        let (a, b) = (a as f64, b as f64);
        (a - b).abs() > SHARE_CHANGE * a.max(b)
    };
    if old.jobs.len() != new.jobs.len()
        || old.jobs.iter().zip(&new.jobs).any(|(o, n)| {
            o.spec != n.spec
                || o.nodes != n.nodes
                || o.flows.len() != n.flows.len()
                || o.flows
                    .iter()
                    .zip(&n.flows)
                    .any(|(a, b)| a.to_stage != b.to_stage || moved(a.bytes_per_s, b.bytes_per_s))
        })
    {
        return true;
    }
    old.bandwidth
        .iter()
        .any(|o| match new.share(&o.from, &o.to) {
            None => true,
            Some(n) => {
                let (a, b) = (o.bytes_per_s as f64, n as f64);
                (a - b).abs() > SHARE_CHANGE * a.max(b)
            }
        })
}

/// Why the load calls for a replan, if it does.
pub(super) fn load_shift(
    current: Option<&Current>,
    live: &[NodeStatus],
    now: Instant,
) -> Option<String> {
    if let Some(s) = live.iter().find(|s| s.load.detect_busy > BUSY_THRESHOLD) {
        return Some(format!(
            "node {} detector busy {:.0} %",
            s.node,
            100.0 * s.load.detect_busy
        ));
    }
    let c = current?;
    let settled = c
        .issued_at
        .is_some_and(|at| now.saturating_duration_since(at) > STREAM_GRACE);
    if !settled {
        return None;
    }
    for a in &c.plan.streams {
        let Some(s) = live.iter().find(|s| s.node == a.node) else {
            continue;
        };
        if s.plan_version != c.plan.version {
            continue;
        }
        let streaming = s
            .load
            .cameras
            .iter()
            .any(|l| l.camera == a.camera && l.state == StreamState::Streaming);
        if !streaming {
            return Some(format!("camera {} not streaming on {}", a.camera, a.node));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::SiteCamera;
    use crate::plans::measured::{measured_detect_shares, measured_persons};
    use vidar_protocol::messages::{CameraLoad, LinkRate, NodeCapacity, NodeLoad};
    use vidar_protocol::{CameraId, NodeId};

    fn id(s: &str) -> NodeId {
        NodeId::new(s).expect("valid id")
    }

    fn status(node: &str, busy: f64) -> NodeStatus {
        NodeStatus {
            node: id(node),
            sent_ms: UnixMs(1),
            started_ms: UnixMs(1),
            plan_version: 7,
            capacity: NodeCapacity {
                cores: 4,
                memory_mb: 4096,
                detect_fps: 30.0,
                reid_crops_per_s: 50.0,
                reid_service: true,
                jpeg_encode_cost: 0.6,
                jpeg_decode_cost: 0.3,
                detect_cores: 4.0,
            },
            load: NodeLoad {
                cameras: vec![CameraLoad {
                    camera: CameraId::new("c1").expect("id"),
                    state: StreamState::Streaming,
                    fps: 10.0,
                    analysed_fps: 10.0,
                    dropped: 0,
                    reconnects: 0,
                    tracks: 0,
                    bitrate_bps: 0.0,
                    persons: 0.0,
                    detect_share: 0.0,
                }],
                detect_busy: busy,
                reid_busy: 0.1,
                cpu_cores: 0.0,
                job_cpu_cores: 0.0,
                reid_queue: 0,
                records_last_seq: 0,
                unsynced: 0,
            },
            links: vec![
                LinkRate {
                    to: id("b"),
                    mbit_s: 50.0,
                    rtt_ms: 1.0,
                    upload_mbit_s: 50.0,
                },
                LinkRate {
                    to: id("b"),
                    mbit_s: 60.0,
                    rtt_ms: 1.0,
                    upload_mbit_s: 60.0,
                },
                LinkRate {
                    to: id(node),
                    mbit_s: 60.0,
                    rtt_ms: 1.0,
                    upload_mbit_s: 60.0,
                },
                LinkRate {
                    to: id("c"),
                    mbit_s: 0.0,
                    rtt_ms: 1.0,
                    upload_mbit_s: 0.0,
                },
            ],
            metrics_addr: None,
            job_flows: Vec::new(),
        }
    }

    fn plan(streams: &[(&str, &str)], shares: &[u64]) -> Plan {
        Plan {
            version: 7,
            issued_ms: UnixMs(0),
            reason: String::new(),
            streams: streams
                .iter()
                .map(|(c, n)| StreamAssignment {
                    camera: CameraId::new(c).expect("id"),
                    source: "rtsp://x".into(),
                    node: id(n),
                    reid_node: id(n),
                })
                .collect(),
            bandwidth: shares
                .iter()
                .map(|b| BandwidthShare {
                    from: id("a"),
                    to: id("b"),
                    bytes_per_s: *b,
                })
                .collect(),
            jobs: Vec::new(),
        }
    }

    #[test]
    fn node_view_keeps_plannable_links() {
        let v = node_view(&status("a", 0.1));
        assert_eq!(v.links, vec![(id("b"), 50.0)]);
        assert_eq!(v.upload_mbit_s, Some(50.0), "from the links kept");
        assert_eq!(v.detect_fps, 30.0);
        assert_eq!((v.jpeg_encode_cost, v.jpeg_decode_cost), (0.6, 0.3));
        assert!(v.reid_service);
        assert_eq!(v.own_work_fps, 0.0, "no CPU reported");
        let c1 = CameraId::new("c1").expect("id");
        assert_eq!(v.camera_fps, vec![(c1, 10.0)], "the frames it ingests");
        let mut s = status("a", 0.1);
        s.load.cameras[0].fps = 0.0;
        assert!(node_view(&s).camera_fps.is_empty(), "a camera not sending");
    }

    #[test]
    fn a_nodes_own_work_is_its_cpu_less_its_jobs_in_detector_frames() {
        let mut s = status("a", 0.1);
        // 30 detector frames/s over 4 cores: 7.5 a core.
        (s.load.cpu_cores, s.load.job_cpu_cores) = (2.0, 0.5);
        assert_eq!(node_view(&s).own_work_fps, 1.5 * 7.5);
        // Jobs' figure above the whole (smoothing apart): none of its own.
        s.load.job_cpu_cores = 2.5;
        assert_eq!(node_view(&s).own_work_fps, 0.0);
        // No detector cores said: not measured.
        (s.load.job_cpu_cores, s.capacity.detect_cores) = (0.5, 0.0);
        assert_eq!(node_view(&s).own_work_fps, 0.0);
    }

    #[test]
    fn cameras_are_planned_with_measured_people_held_against_small_moves() {
        let cam = |p: f64| SiteCamera {
            camera: CameraId::new("c1").expect("id"),
            source: "rtsp://x".into(),
            fps: 10.0,
            persons: p,
            detect_share: 1.0,
            ingest_work: 0.0,
            width: 768,
            height: 576,
            pinned: None,
        };
        let reporting = |persons: f64| {
            let mut s = status("a", 0.1);
            s.load.cameras[0].persons = persons;
            s.job_flows = vec![vidar_protocol::messages::JobFlowLoad {
                job: vidar_protocol::JobId::new("j").expect("id"),
                to_stage: vidar_protocol::StageId::new("det").expect("id"),
                items: 10,
                bytes: 250_000,
            }];
            vec![node_view(&s)]
        };
        let mut held = BTreeMap::new();
        let planned = |views: &[NodeView], held: &mut BTreeMap<CameraId, f64>| {
            let mut cams = [cam(2.0)];
            measured_persons(&mut cams, views, held);
            cams[0].persons
        };
        // Not measured yet (nobody seen): the configured figure.
        assert_eq!(planned(&reporting(0.0), &mut held), 2.0);
        // Measured: it replaces the configured one.
        let views = reporting(6.0);
        assert_eq!(views[0].job_flows[0].3, 25_000.0, "bytes per item");
        assert_eq!(planned(&views, &mut held), 6.0);
        // A move within PERSONS_CHANGE is held; a larger one followed.
        assert_eq!(planned(&reporting(7.2), &mut held), 6.0);
        assert_eq!(planned(&reporting(4.0), &mut held), 4.0);
        // A node that stops reporting leaves the last figure in place.
        assert_eq!(planned(&[], &mut held), 4.0);
    }

    #[test]
    fn cameras_are_planned_with_measured_detector_shares_held_against_small_moves() {
        let reporting = |share: f64| {
            let mut s = status("a", 0.1);
            s.load.cameras[0].detect_share = share;
            vec![node_view(&s)]
        };
        let mut held = BTreeMap::new();
        let planned = |views: &[NodeView], held: &mut BTreeMap<CameraId, f64>| {
            let mut cams = [SiteCamera {
                camera: CameraId::new("c1").expect("id"),
                source: "rtsp://x".into(),
                fps: 10.0,
                persons: 2.0,
                detect_share: 1.0,
                ingest_work: 0.0,
                width: 768,
                height: 576,
                pinned: None,
            }];
            measured_detect_shares(&mut cams, views, held);
            cams[0].detect_share
        };
        // Nothing analysed yet: every frame, as configured.
        assert_eq!(planned(&reporting(0.0), &mut held), 1.0);
        // Every 2nd frame detected: half a detector frame per frame.
        assert_eq!(planned(&reporting(0.5), &mut held), 0.5);
        // Within DETECT_SHARE_CHANGE: held; beyond it: followed.
        assert_eq!(planned(&reporting(0.6), &mut held), 0.5);
        assert_eq!(planned(&reporting(0.9), &mut held), 0.9);
        // A node that stops reporting leaves the last figure in place.
        assert_eq!(planned(&[], &mut held), 0.9);
    }

    #[test]
    fn placement_change_ignores_small_share_moves() {
        let a = plan(&[("c1", "a")], &[1000]);
        assert!(!placement_changed(&a, &plan(&[("c1", "a")], &[1100])));
        assert!(placement_changed(&a, &plan(&[("c1", "a")], &[2000])));
        assert!(placement_changed(&a, &plan(&[("c1", "b")], &[1000])));
        assert!(placement_changed(&a, &plan(&[("c1", "a")], &[])));
    }

    #[test]
    fn load_shift_on_busy_node_or_missing_stream() {
        let now = Instant::now();
        assert!(load_shift(None, &[status("a", 0.5)], now).is_none());
        assert!(load_shift(None, &[status("a", 0.95)], now).is_some());
        let p = plan(&[("c1", "a"), ("c2", "a")], &[]);
        let c = Current {
            plan: p,
            predicted: Default::default(),
            algorithm: vidar_scheduler::jstsh::StreamAlgorithm::Jstsh,
            nodes: vec![id("a")],
            issued_at: now.checked_sub(STREAM_GRACE * 2),
            encoded: Default::default(),
        };
        let why = load_shift(Some(&c), &[status("a", 0.5)], now);
        assert_eq!(why.as_deref(), Some("camera c2 not streaming on a"));
        let fresh = Current {
            issued_at: Some(now),
            ..c
        };
        assert!(load_shift(Some(&fresh), &[status("a", 0.5)], now).is_none());
    }

    #[test]
    fn plans_never_carry_camera_credentials() {
        let out = crate::planner::PlanOutput {
            streams: vec![crate::planner::Placed {
                camera: CameraId::new("gate").expect("id"),
                source: "rtsp://admin:pa@ss@10.0.0.5:554/s1".into(),
                node: id("a"),
                reid_node: id("a"),
            }],
            bandwidth: Vec::new(),
            cost: 0.0,
            predicted: Default::default(),
            reason: "test".into(),
        };
        let plan = to_plan(&out, 1, UnixMs(0));
        assert_eq!(plan.streams[0].source, "rtsp://10.0.0.5:554/s1");
    }

    /// A status of `node` reporting `links` (peer, Mbit/s).
    fn reporting(node: &str, links: &[(&str, f64)]) -> NodeStatus {
        let mut s = status(node, 0.1);
        s.links = links
            .iter()
            .map(|(to, r)| LinkRate {
                to: id(to),
                mbit_s: *r,
                rtt_ms: 1.0,
                upload_mbit_s: *r,
            })
            .collect();
        s
    }

    #[test]
    fn a_pair_is_rated_at_the_lower_of_its_two_ends_among_live_nodes() {
        let live = [
            reporting("b", &[("a", 8.0), ("c", 20.0), ("gone", 5.0)]),
            reporting("a", &[("b", 6.0)]),
            reporting("c", &[]),
        ];
        let views: Vec<NodeView> = live.iter().map(node_view).collect();
        let r = crate::planner::pair_rates(&views);
        let want: BTreeMap<(NodeId, NodeId), f64> =
            [((id("a"), id("b")), 6.0), ((id("b"), id("c")), 20.0)]
                .into_iter()
                .collect();
        assert_eq!(r, want, "a node that is not live is no pair");
    }

    #[test]
    fn a_link_that_moves_past_the_threshold_or_appears_calls_for_a_replan() {
        let pair = |r: f64| -> BTreeMap<(NodeId, NodeId), f64> {
            [((id("a"), id("b")), r)].into_iter().collect()
        };
        let planned = pair(10.0);
        assert_eq!(link_shift(&planned, &pair(10.0)), None);
        assert_eq!(link_shift(&planned, &pair(7.5)), None, "within 30 %");
        assert_eq!(link_shift(&planned, &pair(13.0)), None, "within 30 %");
        let down = link_shift(&planned, &pair(5.0)).expect("halved");
        assert!(down.contains("a-b 10.0 -> 5.0"), "{down}");
        assert!(link_shift(&planned, &pair(20.0)).is_some(), "doubled");
        // A first measurement is taken against the default it replaces.
        let new = link_shift(&BTreeMap::new(), &pair(5.0)).expect("new link");
        assert!(new.contains("a-b 100.0 -> 5.0"), "{new}");
        assert_eq!(
            link_shift(&BTreeMap::new(), &pair(80.0)),
            None,
            "within 30 %"
        );
        assert_eq!(link_shift(&BTreeMap::new(), &pair(900.0)), None, "ample");
        // A link no longer measured: nothing by itself.
        assert_eq!(link_shift(&planned, &BTreeMap::new()), None);
        // Uploads, the same way.
        let up = |r: f64| BTreeMap::from([(id("a"), r)]);
        assert_eq!(upload_shift(&up(8.0), &up(6.0)), None, "within 30 %");
        let down = upload_shift(&up(8.0), &up(4.0)).expect("halved");
        assert_eq!(down, "upload of a 8.0 -> 4.0 Mbit/s");
        assert!(upload_shift(&BTreeMap::new(), &up(6.0)).is_some(), "new");
        assert_eq!(upload_shift(&up(200.0), &up(900.0)), None, "ample");
        // Jitter on links far faster than crops need: nothing.
        let fast = pair(4.0 * LINK_AMPLE_MBIT_S);
        assert_eq!(link_shift(&fast, &pair(2.0 * LINK_AMPLE_MBIT_S)), None);
        assert!(link_shift(&fast, &pair(0.5 * LINK_AMPLE_MBIT_S)).is_some());
    }
}
