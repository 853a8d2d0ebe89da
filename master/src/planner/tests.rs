//! The planner's tests: placement quality, pinning, stability and errors,
//! through [`super::plan`] only.

use super::model::MBIT;
use super::*;

fn node(name: &str, detect: f64, reid: f64) -> NodeView {
    NodeView {
        node: NodeId::new(name).unwrap(),
        cores: 4,
        memory_mb: 4096,
        detect_fps: detect,
        reid_crops_per_s: reid,
        reid_service: true,
        jpeg_encode_cost: 0.0,
        jpeg_decode_cost: 0.0,
        own_work_fps: 0.0,
        links: Vec::new(),
        upload_mbit_s: None,
        camera_bitrates: Vec::new(),
        camera_persons: Vec::new(),
        camera_detect_shares: Vec::new(),
        camera_fps: Vec::new(),
        job_flows: Vec::new(),
    }
}

fn cam(name: &str, fps: f64) -> SiteCamera {
    SiteCamera {
        camera: CameraId::new(name).unwrap(),
        source: format!("rtsp://cams/{name}"),
        fps,
        persons: 2.0,
        detect_share: 1.0,
        ingest_work: 0.0,
        width: 1280,
        height: 720,
        pinned: None,
    }
}

fn cams(n: usize) -> Vec<SiteCamera> {
    (0..n).map(|i| cam(&format!("cam{i}"), 10.0)).collect()
}

/// Two fast nodes and one 12x slower.
fn site() -> Vec<NodeView> {
    vec![
        node("fast-a", 60.0, 60.0),
        node("slow", 5.0, 5.0),
        node("fast-b", 60.0, 60.0),
    ]
}

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// A node computing `fps` (detection and re-ID) with measured `links`
/// (peer, Mbit/s).
fn linked(name: &str, fps: f64, links: &[(&str, f64)]) -> NodeView {
    NodeView {
        links: links.iter().map(|(n, r)| (id(n), *r)).collect(),
        upload_mbit_s: None,
        ..node(name, fps, fps)
    }
}

/// `n` cameras like the testbed's (768x576 at 10 fps).
fn testbed_cams(n: usize) -> Vec<SiteCamera> {
    (0..n)
        .map(|i| SiteCamera {
            width: 768,
            height: 576,
            ..cam(&format!("cam{i}"), 10.0)
        })
        .collect()
}

fn count_on(out: &PlanOutput, n: &str) -> usize {
    out.streams.iter().filter(|s| s.node.as_str() == n).count()
}

fn assert_each_once(out: &PlanOutput, cameras: &[SiteCamera]) {
    assert_eq!(out.streams.len(), cameras.len());
    for c in cameras {
        assert_eq!(
            out.streams.iter().filter(|s| s.camera == c.camera).count(),
            1,
            "{} placed once",
            c.camera
        );
    }
}

#[test]
fn every_camera_placed_exactly_once() {
    let cameras = cams(9);
    let out = plan(&cameras, &site(), None, 1).unwrap();
    assert_each_once(&out, &cameras);
    assert!(out.cost.is_finite() && out.cost > 0.0);
    for (s, c) in out.streams.iter().zip(&cameras) {
        assert_eq!(s.source, c.source);
    }
}

#[test]
fn slow_node_gets_fewer_streams_and_offloads_reid() {
    let cameras = cams(4);
    let out = plan(&cameras, &site(), None, 7).unwrap();
    assert_each_once(&out, &cameras);
    let slow = count_on(&out, "slow");
    assert!(slow < count_on(&out, "fast-a"), "{out:?}");
    assert!(slow < count_on(&out, "fast-b"), "{out:?}");
    for s in out.streams.iter().filter(|s| s.node.as_str() == "slow") {
        assert_ne!(s.reid_node.as_str(), "slow", "{out:?}");
    }
    assert!(out.streams.iter().all(|s| s.reid_node.as_str() != "slow"));
}

#[test]
fn pinned_camera_on_slow_node_offloads_its_reid() {
    let mut cameras = cams(4);
    cameras[2].pinned = Some(NodeId::new("slow").unwrap());
    let out = plan(&cameras, &site(), None, 7).unwrap();
    assert_each_once(&out, &cameras);
    let s = &out.streams[2];
    assert_eq!(s.node.as_str(), "slow");
    assert_ne!(s.reid_node.as_str(), "slow");
    // Its crops cross a link that carries no other flow: it has the whole link.
    let flow = out
        .bandwidth
        .iter()
        .find(|f| f.0 == s.node && f.1 == s.reid_node)
        .expect("a flow for the offloaded crops");
    assert_eq!(flow.2, (DEFAULT_LINK_MBIT_S * MBIT) as u64);
    assert_eq!(count_on(&out, "slow"), 1);
}

#[test]
fn pinned_cameras_are_honoured() {
    let mut cameras = cams(6);
    for c in &mut cameras {
        c.pinned = Some(NodeId::new("fast-b").unwrap());
    }
    cameras[0].pinned = Some(NodeId::new("slow").unwrap());
    let out = plan(&cameras, &site(), None, 3).unwrap();
    assert_eq!(out.streams[0].node.as_str(), "slow");
    for s in &out.streams[1..] {
        assert_eq!(s.node.as_str(), "fast-b");
    }
}

#[test]
fn camera_pinned_to_absent_node_is_placed_elsewhere() {
    let mut cameras = cams(2);
    cameras[0].pinned = Some(NodeId::new("gone").unwrap());
    let out = plan(&cameras, &site(), None, 3).unwrap();
    assert_each_once(&out, &cameras);
    assert_ne!(out.streams[0].node.as_str(), "gone");
}

#[test]
fn removed_node_cameras_move_to_remaining_nodes() {
    let cameras = cams(6);
    let nodes = site();
    let before = plan(&cameras, &nodes, None, 5).unwrap();
    assert!(count_on(&before, "fast-b") > 0);
    let left: Vec<NodeView> = nodes
        .into_iter()
        .filter(|n| n.node.as_str() != "fast-b")
        .collect();
    for prev in [None, Some(&before)] {
        let out = plan(&cameras, &left, prev, 5).unwrap();
        assert_each_once(&out, &cameras);
        for s in &out.streams {
            assert_ne!(s.node.as_str(), "fast-b");
            assert_ne!(s.reid_node.as_str(), "fast-b");
        }
        assert!(out
            .bandwidth
            .iter()
            .all(|b| b.0.as_str() != "fast-b" && b.1.as_str() != "fast-b"));
    }
}

#[test]
fn same_inputs_with_previous_are_kept() {
    let cameras = cams(5);
    let first = plan(&cameras, &site(), None, 9).unwrap();
    let second = plan(&cameras, &site(), Some(&first), 9).unwrap();
    assert_eq!(second.reason, "kept");
    assert_eq!(second.streams, first.streams);
    assert_eq!(second.bandwidth, first.bandwidth);
    assert!((second.cost - first.cost).abs() < 1e-12);
}

#[test]
fn much_worse_previous_is_replaced() {
    let cameras = cams(4);
    let first = plan(&cameras, &site(), None, 9).unwrap();
    let mut bad = first.clone();
    for s in &mut bad.streams {
        s.node = NodeId::new("slow").unwrap();
        s.reid_node = NodeId::new("slow").unwrap();
    }
    let out = plan(&cameras, &site(), Some(&bad), 9).unwrap();
    assert!(out.reason.starts_with("replanned"), "{}", out.reason);
    assert_eq!(out.streams, first.streams);
}

/// More work than capacity: every plan overloads a node. A fresh plan that
/// only trades the overloaded node for another about as loaded (here 4 %
/// faster) does not move cameras back and forth (CI saw a camera moved twice
/// in a minute that way, on link-rate noise); one that ends the overload does.
#[test]
fn overload_traded_for_a_like_overload_keeps_the_plan() {
    let nodes = vec![
        node("a", 10.4, 600.0),
        node("b", 10.0, 600.0),
        node("c", 10.0, 600.0),
    ];
    let cameras = cams(4);
    let fresh = plan(&cameras, &nodes, None, 3).unwrap();
    assert_eq!(count_on(&fresh, "a"), 2, "{:?}", fresh.streams);
    // The previous plan doubled up on b instead.
    let mut prev = fresh.clone();
    let moved = prev
        .streams
        .iter()
        .position(|s| s.node.as_str() == "a")
        .unwrap();
    prev.streams[moved].node = NodeId::new("b").unwrap();
    prev.streams[moved].reid_node = NodeId::new("b").unwrap();
    let out = plan(&cameras, &nodes, Some(&prev), 3).unwrap();
    assert_eq!(out.reason, "kept");
    assert_eq!(out.streams, prev.streams);
    // A fourth node ends the overload: now the fresh plan wins.
    let mut more = nodes.clone();
    more.push(node("d", 10.0, 600.0));
    let out = plan(&cameras, &more, Some(&prev), 3).unwrap();
    assert!(out.reason.starts_with("replanned"), "{}", out.reason);
    assert!(out
        .streams
        .iter()
        .all(|s| count_on(&out, s.node.as_str()) == 1));
}

#[test]
fn new_camera_keeps_the_others_in_place() {
    let cameras = cams(4);
    let first = plan(&cameras, &site(), None, 2).unwrap();
    let more = cams(5);
    let out = plan(&more, &site(), Some(&first), 2).unwrap();
    assert_each_once(&out, &more);
    assert_eq!(out.streams[..4], first.streams[..]);
    assert!(out.reason.starts_with("kept 4"), "{}", out.reason);
}

#[test]
fn no_reid_service_node_serves_only_its_own_streams() {
    let mut nodes = vec![node("weak", 60.0, 1.0), node("big", 60.0, 600.0)];
    nodes[1].reid_service = false;
    let mut cameras = cams(3);
    cameras[0].pinned = Some(NodeId::new("weak").unwrap());
    let out = plan(&cameras, &nodes, None, 1).unwrap();
    for s in &out.streams {
        if s.reid_node.as_str() == "big" {
            assert_eq!(s.node.as_str(), "big", "{out:?}");
        }
    }
    // With the service on, the weak node's re-ID goes to the big one.
    nodes[1].reid_service = true;
    let out = plan(&cameras, &nodes, None, 1).unwrap();
    assert_eq!(out.streams[0].reid_node.as_str(), "big", "{out:?}");
}

#[test]
fn node_without_reid_model_never_runs_reid() {
    let nodes = vec![node("a", 60.0, 0.0), node("b", 60.0, 60.0)];
    let mut cameras = cams(3);
    cameras[0].pinned = Some(NodeId::new("a").unwrap());
    let out = plan(&cameras, &nodes, None, 1).unwrap();
    assert_eq!(out.streams[0].node.as_str(), "a");
    assert!(
        out.streams.iter().all(|s| s.reid_node.as_str() == "b"),
        "{out:?}"
    );
}

#[test]
fn empty_node_list_errors_clearly() {
    let err = plan(&cams(2), &[], None, 0).unwrap_err();
    assert_eq!(err, PlanError::NoNodes { cameras: 2 });
    assert!(err.to_string().contains("no live nodes"));
}

#[test]
fn no_cameras_gives_an_empty_plan() {
    let out = plan(&[], &site(), None, 0).unwrap();
    assert!(out.streams.is_empty() && out.bandwidth.is_empty());
    assert_eq!(out.cost, 0.0);
}

#[test]
fn bad_inputs_are_all_reported() {
    let mut cameras = cams(2);
    cameras[0].fps = 0.0;
    cameras[1].camera = cameras[0].camera.clone();
    let mut nodes = site();
    nodes[0].detect_fps = f64::NAN;
    let PlanError::Invalid(problems) = plan(&cameras, &nodes, None, 0).unwrap_err() else {
        panic!("expected Invalid");
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn deterministic_for_a_seed() {
    let cameras = cams(12);
    let a = plan(&cameras, &site(), None, 42).unwrap();
    let b = plan(&cameras, &site(), None, 42).unwrap();
    assert_eq!(a, b);
}

#[test]
fn measured_links_set_the_shares() {
    let mut nodes = vec![
        node("a", 60.0, 1.0),
        node("b", 60.0, 600.0),
        node("c", 60.0, 1.0),
    ];
    nodes[0].links = vec![(NodeId::new("b").unwrap(), 40.0)];
    nodes[1].links = vec![(NodeId::new("a").unwrap(), 80.0)];
    let mut cameras = cams(2);
    cameras[0].pinned = Some(NodeId::new("a").unwrap());
    cameras[1].pinned = Some(NodeId::new("c").unwrap());
    let out = plan(&cameras, &nodes, None, 1).unwrap();
    let a_b = out
        .bandwidth
        .iter()
        .find(|f| f.0.as_str() == "a" && f.1.as_str() == "b")
        .expect("a offloads to b");
    assert_eq!(a_b.2, (40.0 * MBIT) as u64);
}

#[test]
fn plan_output_round_trips_through_json() {
    let out = plan(&cams(3), &site(), None, 1).unwrap();
    let json = serde_json::to_string(&out).unwrap();
    let mut back: PlanOutput = serde_json::from_str(&json).unwrap();
    // serde_json parses a float to within one unit in the last place (its
    // exact mode is a workspace-wide feature not enabled): the figures
    // come back that close, everything else exactly.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(1.0);
    let (p, q) = (&back.predicted, &out.predicted);
    assert!(close(back.cost, out.cost), "{} vs {}", back.cost, out.cost);
    for (a, b) in [
        (p.published_cost, q.published_cost),
        (p.load_aware_cost, q.load_aware_cost),
        (p.mean_latency, q.mean_latency),
        (p.mean_fps, q.mean_fps),
        (p.max_utilisation, q.max_utilisation),
    ] {
        assert!(close(a, b), "{p:?} vs {q:?}");
    }
    back.cost = out.cost;
    back.predicted = out.predicted.clone();
    assert_eq!(back, out);
    let c: SiteCamera = serde_json::from_str(
        r#"{"camera":"c1","source":"rtsp://x","fps":10,"width":640,"height":480}"#,
    )
    .unwrap();
    assert_eq!(c.persons, 2.0);
    assert_eq!(c.pinned, None);
}

/// Cameras reachable by every node come in over the nodes' own links: with
/// the cameras' measured bitrate and the nodes' measured links, the planner
/// keeps them off the node whose link is slowest (the testbed's finding:
/// with the default camera rates and the 0.1 bit/px model it put cameras on
/// a 5 Mbit/s node while 20 Mbit/s ones idled). A pinned camera stays put.
/// The testbed's DCEI finding: four 2.2 Mbit/s cameras, three nodes behind
/// 5 Mbit/s links, one of them computing fastest. A plan made before the
/// bitrates were measured (0.44 Mbit/s a camera by the pixel model) put
/// three cameras on the fast node, more than its link carries. What the
/// nodes then report: the fast node receives 5 Mbit/s in all (1.67 a
/// camera), its peers' probes into it get the little left (0.5 Mbit/s), b
/// ingests one camera at 2.2. The streams a node ingests share its link,
/// so the plan is seen to nearly fill it, and is replaced by one that
/// leaves every link room. (Each camera alone reaches the fast node in
/// time: the per-stream model kept such plans.)
#[test]
fn cameras_that_fill_a_nodes_link_are_moved_off_it() {
    let cameras = testbed_cams(4);
    let mut nodes = vec![
        linked("fast", 90.0, &[("b", 2.8), ("c", 5.0)]),
        linked("b", 45.0, &[("fast", 0.5), ("c", 5.0)]),
        linked("c", 45.0, &[("fast", 0.5), ("b", 2.8)]),
    ];
    let mut prev = plan(&cameras, &nodes, None, 1).unwrap();
    for (k, s) in prev.streams.iter_mut().enumerate() {
        let on = if k < 3 { "fast" } else { "b" };
        s.node = id(on);
        s.reid_node = id(on);
    }
    nodes[0].camera_bitrates = cameras[..3]
        .iter()
        .map(|c| (c.camera.clone(), 1_670_000.0))
        .collect();
    nodes[1].camera_bitrates = vec![(cameras[3].camera.clone(), 2_200_000.0)];
    for seed in 1..=5 {
        let out = plan(&cameras, &nodes, Some(&prev), seed).unwrap();
        assert!(
            out.reason.starts_with("replanned"),
            "seed {seed}: {}",
            out.reason
        );
        assert_each_once(&out, &cameras);
        assert!(
            count_on(&out, "fast") <= 2,
            "seed {seed}: {:?}",
            out.streams
        );
        assert!(out.predicted.max_utilisation < 0.9, "{:?}", out.predicted);
        assert!(
            (out.predicted.mean_fps - 10.0).abs() < 1e-9,
            "{:?}",
            out.predicted
        );
    }
}

#[test]
fn unpinned_cameras_go_to_nodes_whose_links_carry_them() {
    // The slow-linked node computes fastest: on compute alone it would
    // take the cameras.
    let mut nodes = vec![
        linked("fast-a", 60.0, &[("fast-b", 20.0), ("slow", 5.0)]),
        linked("fast-b", 60.0, &[("fast-a", 20.0), ("slow", 5.0)]),
        linked("slow", 90.0, &[("fast-a", 5.0), ("fast-b", 5.0)]),
    ];
    let cameras = testbed_cams(2);
    // The slow node ingests both now and measures them at 2.2 Mbit/s.
    nodes[2].camera_bitrates = cameras
        .iter()
        .map(|c| (c.camera.clone(), 2_200_000.0))
        .collect();
    for seed in 1..=5 {
        let out = plan(&cameras, &nodes, None, seed).unwrap();
        assert_each_once(&out, &cameras);
        assert_eq!(count_on(&out, "slow"), 0, "seed {seed}: {:?}", out.streams);
    }
    // A node that measured nothing yet (back from a partition) is taken at
    // the others' median, not at the 100 Mbit/s default: it does not draw
    // the cameras from the measured fast ones.
    // Most of the measured links are slow here, so the median is slow.
    let mut back = nodes.clone();
    back.push(linked("slow-2", 90.0, &[("fast-a", 5.0)]));
    back.push(linked("slow-3", 90.0, &[("fast-b", 5.0)]));
    back.push(NodeView {
        links: Vec::new(),
        upload_mbit_s: None,
        ..node("returned", 90.0, 90.0)
    });
    for seed in 1..=3 {
        let out = plan(&cameras, &back, None, seed).unwrap();
        let on_fast = count_on(&out, "fast-a") + count_on(&out, "fast-b");
        assert_eq!(on_fast, 2, "seed {seed}: {:?}", out.streams);
    }
    // Pinned to the slow node: it stays there.
    let mut pinned = cameras.clone();
    pinned[0].pinned = Some(id("slow"));
    let out = plan(&pinned, &nodes, None, 1).unwrap();
    let p0 = out
        .streams
        .iter()
        .find(|p| p.camera == pinned[0].camera)
        .unwrap();
    assert_eq!(p0.node, id("slow"));
}

/// `plan_algorithm`: the baselines place by their own rules (re-ID local
/// for NMNO and WMNO), JSTSH's plan is no worse than any of them under the
/// scheduler's model, and every plan carries that model's prediction.
#[test]
fn baselines_place_by_their_own_rules_and_jstsh_beats_them() {
    use vidar_scheduler::jstsh::StreamAlgorithm as A;
    let cameras = cams(6);
    for seed in 1..=5 {
        let j = plan_with(&cameras, &site(), None, seed, A::Jstsh).unwrap();
        assert_each_once(&j, &cameras);
        assert!(j.predicted.mean_fps > 0.0 && j.predicted.max_utilisation > 0.0);
        assert!((j.predicted.load_aware_cost - j.cost).abs() < 1e-12);
        for alg in [A::JstshGreedy, A::Nmno, A::Wmno, A::Nmwo] {
            let b = plan_with(&cameras, &site(), None, seed, alg).unwrap();
            assert_each_once(&b, &cameras);
            if matches!(alg, A::Nmno | A::Wmno) {
                assert!(
                    b.streams.iter().all(|s| s.node == s.reid_node),
                    "{alg:?}: re-ID stays local: {:?}",
                    b.streams
                );
            }
            assert!(
                j.predicted.load_aware_cost <= b.predicted.load_aware_cost + 1e-9,
                "seed {seed}: jstsh {} > {alg:?} {}",
                j.predicted.load_aware_cost,
                b.predicted.load_aware_cost
            );
        }
    }
    // Random placement differs between seeds somewhere.
    let placements = |alg| -> Vec<Vec<String>> {
        (1..=5)
            .map(|seed| {
                plan_with(&cameras, &site(), None, seed, alg)
                    .unwrap()
                    .streams
                    .iter()
                    .map(|s| s.node.to_string())
                    .collect()
            })
            .collect()
    };
    let n = placements(A::Nmno);
    assert!(n.iter().any(|p| *p != n[0]), "{n:?}");
}

#[test]
fn a_camera_costs_its_measured_detector_share_and_ingest_work_per_frame() {
    // One node, two 10 fps cameras, nobody in view (no re-ID work): the
    // node's utilisation is the cameras' detector runs and the rest of
    // their frames' work over its rate.
    let nodes = [node("a", 25.0, 100.0)];
    let at = |share: f64, ingest: f64| {
        let cameras: Vec<SiteCamera> = ["c1", "c2"]
            .iter()
            .map(|n| SiteCamera {
                persons: 0.0,
                detect_share: share,
                ingest_work: ingest,
                ..cam(n, 10.0)
            })
            .collect();
        plan(&cameras, &nodes, None, 1).unwrap().predicted
    };
    let (every, half) = (at(1.0, 0.0), at(0.5, 0.0));
    assert!((every.max_utilisation - 0.8).abs() < 1e-9, "{every:?}");
    assert!((half.max_utilisation - 0.4).abs() < 1e-9, "{half:?}");
    // The load-aware latency falls with it: 1/25 s x 1/(1 - 0.8) per
    // frame against 0.5/25 s x 1/(1 - 0.4), transfer times aside.
    assert!(
        half.mean_latency < every.mean_latency / 3.0,
        "{half:?} {every:?}"
    );
    // Decoding and the rest at 0.2 detector frames a frame: the node is
    // as loaded as by 0.7 of detection each, and the detection waits
    // longer for it, but it is not in a frame's own path.
    let (rest, more) = (at(0.5, 0.2), at(0.7, 0.0));
    assert!((rest.max_utilisation - 0.56).abs() < 1e-9, "{rest:?}");
    assert!((more.max_utilisation - 0.56).abs() < 1e-9, "{more:?}");
    assert!(rest.mean_latency > half.mean_latency, "{rest:?} {half:?}");
    assert!(rest.mean_latency < more.mean_latency, "{rest:?} {more:?}");
    // A share outside (0, 1] or negative ingest work is refused, naming
    // the camera.
    for (share, ingest, what) in [(0.0, 0.0, "detect_share"), (0.5, -0.1, "ingest_work")] {
        let bad = [SiteCamera {
            detect_share: share,
            ingest_work: ingest,
            ..cam("c9", 10.0)
        }];
        let e = plan(&bad, &nodes, None, 1).unwrap_err().to_string();
        assert!(e.contains("c9") && e.contains(what), "{e}");
    }
}
