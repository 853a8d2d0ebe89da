//! The figures a plan takes from what the nodes measure of their cameras
//! (people per frame, detector runs per frame, the rest of a frame's work)
//! in place of the configured ones, each held against small moves so plans
//! do not follow every crowd.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use vidar_protocol::CameraId;

use crate::planner::{crop_work, NodeView, Placed, SiteCamera};

/// A camera's planned people per frame moves to the measured figure only
/// when that differs by more than this share of the planned one (at least
/// one person's worth): crowds come and go, plans should not follow each.
pub const PERSONS_CHANGE: f64 = 0.25;

/// Sets each camera's `persons` to what the node that ingests it measures
/// (its configured value until then), held in `held` until the measure
/// moves by more than [`PERSONS_CHANGE`].
pub fn measured_persons(
    cameras: &mut [SiteCamera],
    views: &[NodeView],
    held: &mut BTreeMap<CameraId, f64>,
) {
    let moved = |m: f64, h: f64| (m - h).abs() > PERSONS_CHANGE * h.max(1.0);
    let set = |c: &mut SiteCamera, h: f64| c.persons = h;
    hold(
        cameras,
        reported(views, |v| &v.camera_persons),
        held,
        moved,
        set,
    );
}

/// A camera's planned detector runs per frame move to the measured share
/// only when it differs by more than this (a camera whose motion comes and
/// goes moves between about 0.6 and 1).
pub const DETECT_SHARE_CHANGE: f64 = 0.15;

/// Sets each camera's `detect_share` to what the node that ingests it
/// measures (1, every frame, until then), held in `held` until the measure
/// moves by more than [`DETECT_SHARE_CHANGE`].
pub fn measured_detect_shares(
    cameras: &mut [SiteCamera],
    views: &[NodeView],
    held: &mut BTreeMap<CameraId, f64>,
) {
    let moved = |m: f64, h: f64| (m - h).abs() > DETECT_SHARE_CHANGE;
    let set = |c: &mut SiteCamera, h: f64| c.detect_share = h;
    let of = reported(views, |v| &v.camera_detect_shares);
    hold(cameras, of, held, moved, set);
}

/// A camera's planned `ingest_work` moves to the measured figure only when
/// it differs by more than this, in detector frames per frame (the CPU it
/// comes from is an average the people in view move by a few hundredths).
pub const INGEST_WORK_CHANGE: f64 = 0.05;
/// The most `ingest_work` a camera is planned with, detector frames per
/// frame: a node whose CPU goes mostly to something the model does not see
/// must not make its cameras look unplaceable anywhere.
pub const MAX_INGEST_WORK: f64 = 2.0;
/// How long a placement must have been in force before a node's CPU is
/// read as the cost of the cameras it places there: the nodes average
/// their CPU over about half a minute.
pub const INGEST_SETTLE: Duration = Duration::from_secs(45);

/// Sets each camera's `ingest_work` (the rest of a frame's work on the node
/// that ingests it, besides detection and re-ID) to what that node's CPU
/// says, held in `held` until it moves by more than [`INGEST_WORK_CHANGE`].
///
/// A node's rest is its own work (`NodeView::own_work_fps`: its process's
/// CPU less its jobs', in detector frames/s) less what the planner's model
/// charges it under `placed`: the detector share of each camera it ingests
/// and the re-ID of each camera it serves. Spread over the frames/s its
/// cameras send, it is what each of them costs besides (at least 0, at most
/// [`MAX_INGEST_WORK`]); a node's idle work (its link, probes, sync) is
/// counted in it, a small share on a node with cameras. Call it with the
/// placement in force once it has been for [`INGEST_SETTLE`], after
/// [`measured_persons`] and [`measured_detect_shares`] (it charges what
/// they set); `None` keeps every held figure. Only nodes that ingest
/// exactly the cameras `placed` gives them, each a site camera, are read:
/// a node's CPU in a hand-over belongs to no one plan.
pub fn measured_frame_work(
    cameras: &mut [SiteCamera],
    views: &[NodeView],
    placed: Option<&[Placed]>,
    held: &mut BTreeMap<CameraId, f64>,
) {
    let mut measured: HashMap<CameraId, f64> = HashMap::new();
    if let Some(placed) = placed {
        let rho = crop_work(views);
        let site: HashMap<&CameraId, &SiteCamera> =
            cameras.iter().map(|c| (&c.camera, c)).collect();
        for v in views {
            if let Some(rest) = node_rest(v, placed, &site, rho) {
                for (c, _) in &v.camera_fps {
                    measured.insert(c.clone(), rest);
                }
            }
        }
    }
    let moved = |m: f64, h: f64| (m - h).abs() > INGEST_WORK_CHANGE;
    let set = |c: &mut SiteCamera, h: f64| c.ingest_work = h;
    hold(cameras, |c| measured.get(c).copied(), held, moved, set);
}

/// [`measured_frame_work`]'s figure for the cameras of `v`, if it can be read.
fn node_rest(
    v: &NodeView,
    placed: &[Placed],
    site: &HashMap<&CameraId, &SiteCamera>,
    rho: f64,
) -> Option<f64> {
    if !(v.own_work_fps.is_finite() && v.own_work_fps > 0.0) {
        return None;
    }
    let planned: BTreeSet<&CameraId> = (placed.iter())
        .filter(|p| p.node == v.node)
        .map(|p| &p.camera)
        .collect();
    let ingesting: BTreeSet<&CameraId> = v.camera_fps.iter().map(|(c, _)| c).collect();
    if planned.is_empty() || planned != ingesting {
        return None;
    }
    let (mut frames, mut charged) = (0.0, 0.0);
    for (c, fps) in &v.camera_fps {
        let cam = site.get(c)?;
        frames += fps;
        charged += fps * cam.detect_work();
    }
    for p in placed.iter().filter(|p| p.reid_node == v.node) {
        if let Some(cam) = site.get(&p.camera) {
            charged += cam.reid_crops_per_s() * rho;
        }
    }
    let rest = (v.own_work_fps - charged) / frames;
    (frames > 0.0 && rest.is_finite()).then(|| rest.clamp(0.0, MAX_INGEST_WORK))
}

/// The figure each camera's node reports in `of`, looked up by camera.
fn reported<'a>(
    views: &'a [NodeView],
    of: impl Fn(&NodeView) -> &[(CameraId, f64)] + 'a,
) -> impl Fn(&CameraId) -> Option<f64> + 'a {
    move |id| {
        views
            .iter()
            .flat_map(&of)
            .find(|(c, _)| c == id)
            .map(|(_, p)| *p)
    }
}

/// Gives each camera with a held figure that figure (`set`): the one
/// measured for it (`measured`), which replaces the held one when
/// `moved(measured, held)`.
fn hold(
    cameras: &mut [SiteCamera],
    measured: impl Fn(&CameraId) -> Option<f64>,
    held: &mut BTreeMap<CameraId, f64>,
    moved: impl Fn(f64, f64) -> bool,
    set: impl Fn(&mut SiteCamera, f64),
) {
    for c in cameras.iter_mut() {
        if let Some(m) = measured(&c.camera) {
            let h = held.entry(c.camera.clone()).or_insert(m);
            if moved(m, *h) {
                *h = m;
            }
        }
        if let Some(&h) = held.get(&c.camera) {
            set(c, h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidar_protocol::NodeId;

    fn cid(s: &str) -> CameraId {
        CameraId::new(s).expect("camera id")
    }

    fn nid(s: &str) -> NodeId {
        NodeId::new(s).expect("node id")
    }

    /// A node profiled at 30 detector frames/s and 50 crops/s (a crop is
    /// worth 0.6 detector frames) whose own work measured `own` detector
    /// frames/s, sending `fps` of each of `cameras`.
    fn view(node: &str, own: f64, cameras: &[&str], fps: f64) -> NodeView {
        NodeView {
            node: nid(node),
            cores: 1,
            memory_mb: 4096,
            detect_fps: 30.0,
            reid_crops_per_s: 50.0,
            reid_service: true,
            jpeg_encode_cost: 0.0,
            jpeg_decode_cost: 0.0,
            own_work_fps: own,
            links: Vec::new(),
            upload_mbit_s: None,
            camera_bitrates: Vec::new(),
            camera_persons: Vec::new(),
            camera_detect_shares: Vec::new(),
            camera_fps: cameras.iter().map(|c| (cid(c), fps)).collect(),
            job_flows: Vec::new(),
        }
    }

    fn camera(c: &str) -> SiteCamera {
        SiteCamera {
            camera: cid(c),
            source: format!("rtsp://cams/{c}"),
            fps: 10.0,
            persons: 2.0,
            detect_share: 0.5,
            ingest_work: 0.0,
            width: 768,
            height: 576,
            pinned: None,
        }
    }

    fn placed(c: &str, node: &str, reid: &str) -> Placed {
        Placed {
            camera: cid(c),
            source: format!("rtsp://cams/{c}"),
            node: nid(node),
            reid_node: nid(reid),
        }
    }

    /// `measured_frame_work` over c1 and c2, returning their ingest work.
    fn planned(
        views: &[NodeView],
        placed: Option<&[Placed]>,
        held: &mut BTreeMap<CameraId, f64>,
    ) -> (f64, f64) {
        let mut cams = [camera("c1"), camera("c2")];
        measured_frame_work(&mut cams, views, placed, held);
        (cams[0].ingest_work, cams[1].ingest_work)
    }

    fn near(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9
    }

    #[test]
    fn a_nodes_cpu_beyond_what_the_model_charges_is_spread_over_its_cameras_frames() {
        // Node a ingests both 10 fps cameras, detecting every 2nd frame
        // (10 detector frames/s), and runs c1's re-ID: 2 people x 0.5
        // crops/s x 0.6 = 0.6. Its CPU says 20.6: 10 more over 20 frames/s.
        let plan = [placed("c1", "a", "a"), placed("c2", "a", "b")];
        let views = [
            view("a", 20.6, &["c1", "c2"], 10.0),
            view("b", 1.0, &[], 0.0),
        ];
        let mut held = BTreeMap::new();
        let got = planned(&views, Some(&plan), &mut held);
        assert!(near(got, (0.5, 0.5)), "{got:?}");
        // Small moves are held, larger ones followed.
        let views = [view("a", 21.4, &["c1", "c2"], 10.0)];
        assert!(near(planned(&views, Some(&plan), &mut held), (0.5, 0.5)));
        let views = [view("a", 16.6, &["c1", "c2"], 10.0)];
        let got = planned(&views, Some(&plan), &mut held);
        assert!(near(got, (0.3, 0.3)), "{got:?}");
        // Nothing to read (no placement in force yet): the held figures stay.
        assert!(near(planned(&[], None, &mut held), (0.3, 0.3)));
    }

    #[test]
    fn the_rest_is_bounded_and_read_only_from_nodes_running_the_placement() {
        let plan = [placed("c1", "a", "a"), placed("c2", "b", "b")];
        let fresh = |views: &[NodeView], placed: Option<&[Placed]>| {
            planned(views, placed, &mut BTreeMap::new())
        };
        // Two nodes, one camera each: each its own figure. Less CPU than
        // the model charges is no negative work; far more is bounded.
        let views = [
            view("a", 3.0, &["c1"], 10.0),
            view("b", 500.0, &["c2"], 10.0),
        ];
        let got = fresh(&views, Some(&plan));
        assert!(near(got, (0.0, MAX_INGEST_WORK)), "{got:?}");
        // Not read: no placement in force, a node in a hand-over (ingesting
        // what the plan does not give it), a node that measured no CPU, or
        // one ingesting a camera the site does not have.
        let views = [
            view("a", 15.6, &["c1"], 10.0),
            view("b", 15.6, &["c2"], 10.0),
        ];
        assert!(near(fresh(&views, Some(&plan)), (1.0, 1.0)));
        assert!(near(fresh(&views, None), (0.0, 0.0)));
        let handing = [view("a", 15.6, &["c1", "c2"], 10.0)];
        assert!(near(fresh(&handing, Some(&plan)), (0.0, 0.0)));
        let silent = [view("a", 0.0, &["c1"], 10.0)];
        assert!(near(fresh(&silent, Some(&plan)), (0.0, 0.0)));
        let stranger = [placed("c1", "a", "a"), placed("c9", "a", "a")];
        let views = [view("a", 15.6, &["c1", "c9"], 10.0)];
        assert!(near(fresh(&views, Some(&stranger)), (0.0, 0.0)));
    }
}
