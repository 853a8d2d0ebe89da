use super::place::{place, Network, MIN_SPARE};
use super::*;
use crate::planner::{NodeView, Placed, PlanOutput, SiteCamera};
use std::collections::BTreeMap;
use vidar_protocol::{CameraId, NodeId};
use vidar_scheduler::ents::Policy;

/// The example job file shipped with Vidar.
pub(crate) const ATTRIBUTES: &str = include_str!("../../../deploy/jobs/attributes.toml");

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

fn view(node: &str, detect_fps: f64, links: &[(&str, f64)]) -> NodeView {
    NodeView {
        node: id(node),
        cores: 4,
        memory_mb: 4096,
        detect_fps,
        reid_crops_per_s: detect_fps * 10.0,
        reid_service: true,
        jpeg_encode_cost: 0.0,
        jpeg_decode_cost: 0.0,
        own_work_fps: 0.0,
        links: links.iter().map(|(n, r)| (id(n), *r)).collect(),
        upload_mbit_s: None,
        camera_bitrates: Vec::new(),
        camera_persons: Vec::new(),
        camera_detect_shares: Vec::new(),
        camera_fps: Vec::new(),
        job_flows: Vec::new(),
    }
}

fn camera(c: &str) -> SiteCamera {
    SiteCamera {
        camera: CameraId::new(c).expect("id"),
        source: "rtsp://x".into(),
        fps: 15.0,
        persons: 2.0,
        detect_share: 1.0,
        ingest_work: 0.0,
        width: 1280,
        height: 720,
        pinned: None,
    }
}

fn streams(placed: &[(&str, &str)]) -> PlanOutput {
    PlanOutput {
        streams: placed
            .iter()
            .map(|(c, n)| Placed {
                camera: CameraId::new(c).expect("id"),
                source: "rtsp://x".into(),
                node: id(n),
                reid_node: id(n),
            })
            .collect(),
        bandwidth: Vec::new(),
        cost: 0.0,
        predicted: Default::default(),
        reason: String::new(),
    }
}

#[test]
fn submit_list_cancel_and_refusals_name_the_stage() {
    let dir = tempfile::tempdir().expect("tmp");
    let book = Book::new(dir.path().join("jobs"));
    assert!(book.load().jobs.is_empty());
    let job = book.submit(ATTRIBUTES, "a.toml", false).expect("submitted");
    assert_eq!(job.id.as_str(), "attributes");
    assert_eq!(book.load().jobs.len(), 1);
    let again = book.submit(ATTRIBUTES, "a.toml", false).unwrap_err();
    assert!(again.contains("exists already"), "{again}");
    book.submit(ATTRIBUTES, "a.toml", true).expect("replaced");
    // Unknown model: refused, the stage named, nothing written.
    let e = book
        .submit(
            &ATTRIBUTES
                .replace("attributes", "other")
                .replace("osnet-x0-25-msmt17\"", "no-such-model\""),
            "b.toml",
            false,
        )
        .unwrap_err();
    assert!(
        e.contains("stage attr (onnx): model \"no-such-model\" is not an image model"),
        "{e}"
    );
    // The detector's post-processed model takes a uint8 NHWC tensor: an
    // `onnx` stage cannot feed it crops, so it is not offered.
    assert!(!image_models()
        .expect("manifest")
        .contains_key("ssd-mobilenet-v2-coco"));
    assert_eq!(book.load().jobs.len(), 1);
    // A hand-edited file under the wrong name is refused on load, with why.
    std::fs::write(book.dir().join("wrong.toml"), ATTRIBUTES).expect("write");
    let c = book.load();
    assert_eq!(c.jobs.len(), 1);
    assert!(
        c.refused[0].1.contains("must be named <id>.toml"),
        "{:?}",
        c.refused
    );
    book.cancel("attributes").expect("cancelled");
    assert!(book.cancel("attributes").unwrap_err().starts_with("no job"));
}

#[test]
fn otfa_keeps_frames_off_a_slow_link_and_splits_shares_by_bytes() {
    let job = parse(ATTRIBUTES, "job").expect("job");
    // edge-1 ingests cam-0 and is nearly full; edge-2 is idle behind a fast
    // link, edge-3 idle behind a slow one.
    let views = [
        view("edge-1", 16.0, &[("edge-2", 100.0), ("edge-3", 2.0)]),
        view("edge-2", 40.0, &[("edge-1", 100.0), ("edge-3", 2.0)]),
        view("edge-3", 40.0, &[("edge-1", 2.0), ("edge-2", 2.0)]),
    ];
    let cams = [camera("cam-0")];
    let out = place(
        std::slice::from_ref(&job),
        &cams,
        &views,
        &streams(&[("cam-0", "edge-1")]),
        &[],
        Policy::Otfa,
        Network::ThroughRouter,
    );
    assert!(out.waiting.is_empty(), "{:?}", out.waiting);
    let a = &out.placed[0];
    assert_eq!(
        a.nodes[0],
        id("edge-1"),
        "the source runs where the camera is ingested"
    );
    assert_eq!(
        a.nodes[1],
        id("edge-2"),
        "the detector goes to the idle node behind the fast link"
    );
    assert!(a.predicted_rate > 0.0 && a.predicted_rate <= 5.0);
    // Frames never go behind the slow links (crops may: they are small).
    for f in &a.flows {
        assert!(f.bytes_per_s > 0, "{f:?}");
        if f.to_stage.as_str() == "det" {
            assert_ne!(a.node_of(&f.to_stage).expect("stage"), &id("edge-3"));
        }
    }
    // LR puts the whole job on one node: the one with the most free capacity.
    let lr = place(
        std::slice::from_ref(&job),
        &cams,
        &views,
        &streams(&[("cam-0", "edge-1")]),
        &[],
        Policy::Lr,
        Network::ThroughRouter,
    );
    let nodes = &lr.placed[0].nodes;
    assert!(nodes[1..].iter().all(|n| n == &nodes[1]), "{nodes:?}");
}

#[test]
fn measured_bytes_per_item_replace_the_model_once_enough_items_were_sent() {
    use super::place::MIN_MEASURED_ITEMS;
    let job = parse(ATTRIBUTES, "job").expect("job");
    // edge-1 ingests cam-0 and is nearly full; edge-2 is idle behind a
    // 4 Mbit/s link: the detector goes there and the frames' bytes bound
    // the job's rate.
    let views = |frames: Option<(u64, f64)>| {
        let mut v = [
            view("edge-1", 16.0, &[("edge-2", 4.0)]),
            view("edge-2", 40.0, &[("edge-1", 4.0)]),
        ];
        if let Some((items, per_item)) = frames {
            v[0].job_flows = vec![(
                job.id.clone(),
                vidar_protocol::StageId::new("det").expect("id"),
                items,
                per_item,
            )];
        }
        v
    };
    let placed = |frames| {
        let out = place(
            std::slice::from_ref(&job),
            &[camera("cam-0")],
            &views(frames),
            &streams(&[("cam-0", "edge-1")]),
            &[],
            Policy::Otfa,
            Network::ThroughRouter,
        );
        assert!(out.waiting.is_empty(), "{:?}", out.waiting);
        assert_eq!(out.placed[0].nodes[1], id("edge-2"));
        out.placed[0].predicted_rate
    };
    // Modelled: a 1280 x 720 frame at 0.2 B/px is 184 kB; 0.9 of 4 Mbit/s
    // carries at most 2.44 of them a second (a little less with the crops
    // that follow).
    let modelled = placed(None);
    assert!(modelled > 2.0 && modelled < 2.45, "{modelled}");
    // Frames measured at half that: 4 a second fit (the job's rate).
    let measured = placed(Some((MIN_MEASURED_ITEMS, 92_160.0)));
    assert!((measured - 4.0).abs() < 1e-6, "{measured}");
    // Too few items measured: the model stands.
    let few = placed(Some((MIN_MEASURED_ITEMS - 1, 92_160.0)));
    assert!((few - modelled).abs() < 1e-9, "{few}");
}

#[test]
fn a_pair_not_yet_measured_is_no_faster_than_either_nodes_fastest_measured_pair() {
    use super::place::unmeasured_pair;
    use crate::planner::DEFAULT_LINK_MBIT_S;
    let measured: std::collections::BTreeMap<(NodeId, NodeId), f64> = [
        ((id("a"), id("b")), 3.0),
        ((id("a"), id("c")), 2.5),
        ((id("b"), id("d")), 40.0),
    ]
    .into_iter()
    .collect();
    // c-d: c's link carries at least 2.5 (its pair with a), d's at least 40.
    assert_eq!(unmeasured_pair(&measured, &id("c"), &id("d")), 2.5);
    assert_eq!(unmeasured_pair(&measured, &id("d"), &id("c")), 2.5);
    // One end never measured: the other end's bound.
    assert_eq!(unmeasured_pair(&measured, &id("d"), &id("e")), 40.0);
    // Neither: the default.
    assert_eq!(
        unmeasured_pair(&measured, &id("e"), &id("f")),
        DEFAULT_LINK_MBIT_S
    );
    // In a placement: edge-2 (the camera's node, nearly full) has probed
    // no one yet, edge-1 and edge-3 each other at 3 Mbit/s: every pair is
    // planned at 3 Mbit/s at most, so no flow gets more than 0.9 of that
    // (with the default it was 0.9 of 100 Mbit/s).
    let job = parse(ATTRIBUTES, "job").expect("job");
    let views = [
        view("edge-1", 40.0, &[("edge-3", 3.0)]),
        view("edge-2", 16.0, &[]),
        view("edge-3", 40.0, &[("edge-1", 3.0)]),
    ];
    let out = place(
        std::slice::from_ref(&job),
        &[camera("cam-0")],
        &views,
        &streams(&[("cam-0", "edge-2")]),
        &[],
        Policy::Otfa,
        Network::ThroughRouter,
    );
    let a = &out.placed[0];
    assert!(!a.flows.is_empty(), "{a:?}");
    for f in &a.flows {
        assert!(
            f.bytes_per_s as f64 <= 0.9 * 3.0e6 / 8.0 + 1.0,
            "a flow into {} at {} B/s",
            f.to_stage,
            f.bytes_per_s
        );
    }
}

#[test]
fn a_job_waits_while_its_camera_is_not_ingested_and_spare_is_floored() {
    let job = parse(ATTRIBUTES, "job").expect("job");
    let views = [view("edge-1", 10.0, &[])];
    let out = place(
        std::slice::from_ref(&job),
        &[camera("cam-0")],
        &views,
        &streams(&[]),
        &[],
        Policy::Otfa,
        Network::ThroughRouter,
    );
    assert!(out.placed.is_empty());
    assert!(
        out.waiting[0].1.contains("not ingested"),
        "{:?}",
        out.waiting
    );
    // On a node whose cameras take all its detector, a job still runs, slowly.
    let out = place(
        std::slice::from_ref(&job),
        &[camera("cam-0")],
        &views,
        &streams(&[("cam-0", "edge-1")]),
        &[],
        Policy::Otfa,
        Network::ThroughRouter,
    );
    let rate = out.placed[0].predicted_rate;
    assert!(rate > 0.0 && rate <= MIN_SPARE * 10.0 + 1e-9, "{rate}");
}

#[test]
fn a_placement_in_force_is_kept_unless_a_fresh_one_is_clearly_better() {
    let job = parse(ATTRIBUTES, "job").expect("job");
    let cams = [camera("cam-0")];
    let views = |fast: f64| {
        [
            view("edge-1", 16.0, &[("edge-2", 100.0), ("edge-3", 100.0)]),
            view("edge-2", fast, &[("edge-1", 100.0), ("edge-3", 100.0)]),
            view("edge-3", 40.0, &[("edge-1", 100.0), ("edge-2", 100.0)]),
        ]
    };
    let place_with = |fast: f64, previous: &[vidar_protocol::messages::JobAssignment]| {
        place(
            std::slice::from_ref(&job),
            &cams,
            &views(fast),
            &streams(&[("cam-0", "edge-1")]),
            previous,
            Policy::Otfa,
            Network::ThroughRouter,
        )
    };
    // edge-2 a bit faster than edge-3: the detector goes there.
    let first = place_with(44.0, &[]);
    assert_eq!(first.placed[0].nodes[1], id("edge-2"));
    // edge-2 now a bit slower: a fresh plan would move the detector to
    // edge-3 for a few per cent; the placement in force stays.
    let fresh = place_with(36.0, &[]);
    assert_eq!(fresh.placed[0].nodes[1], id("edge-3"));
    let kept = place_with(36.0, &first.placed);
    assert_eq!(kept.placed[0].nodes, first.placed[0].nodes);
    // edge-2 much slower: the move pays, and is made.
    let moved = place_with(2.0, &first.placed);
    assert_eq!(moved.placed[0].nodes[1], id("edge-3"));
}

/// The example job on `camera` as `id`, taking `rate` frames/s.
fn job_on(id: &str, camera: &str, rate: f64) -> vidar_protocol::messages::JobSpec {
    let text = ATTRIBUTES
        .replace("id = \"attributes\"", &format!("id = \"{id}\""))
        .replace("camera = \"cam-0\"", &format!("camera = \"{camera}\""))
        .replacen("rate = 4.0", &format!("rate = {rate:?}"), 1);
    parse(&text, id).expect("job")
}

/// Bytes/s each node is given to send to other nodes, over all jobs.
fn sent_by(placed: &[vidar_protocol::messages::JobAssignment]) -> BTreeMap<NodeId, u64> {
    let mut out = BTreeMap::new();
    for a in placed {
        for f in &a.flows {
            let input = a
                .spec
                .stages
                .iter()
                .find(|s| s.name == f.to_stage)
                .and_then(|s| s.input.as_ref())
                .expect("a flow into a stage with an input");
            let from = a.node_of(input).expect("placed").clone();
            *out.entry(from).or_default() += f.bytes_per_s;
        }
    }
    out
}

/// edge-1 ingests cam-0 and cam-1 with no detector to spare, behind an
/// 8 Mbit/s upload (its probes read 8 to both peers); edge-2 and edge-3 are
/// idle behind 50 Mbit/s.
fn behind_one_upload() -> [NodeView; 3] {
    [
        view("edge-1", 16.0, &[("edge-2", 8.0), ("edge-3", 8.0)]),
        view("edge-2", 40.0, &[("edge-1", 50.0), ("edge-3", 50.0)]),
        view("edge-3", 40.0, &[("edge-1", 50.0), ("edge-2", 50.0)]),
    ]
}

#[test]
fn jobs_sending_from_one_node_share_its_upload_through_the_router() {
    let jobs = [job_on("a", "cam-0", 4.0), job_on("b", "cam-1", 4.0)];
    let cams = [camera("cam-0"), camera("cam-1")];
    let placed = |net| {
        place(
            &jobs,
            &cams,
            &behind_one_upload(),
            &streams(&[("cam-0", "edge-1"), ("cam-1", "edge-1")]),
            &[],
            Policy::Otfa,
            net,
        )
    };
    let router = placed(Network::ThroughRouter);
    assert!(router.waiting.is_empty(), "{:?}", router.waiting);
    // The detectors go to the two idle nodes, one each: two flows of
    // frames out of edge-1, to two peers.
    let dets: Vec<&NodeId> = router.placed.iter().map(|a| &a.nodes[1]).collect();
    assert_eq!(dets, [&id("edge-2"), &id("edge-3")]);
    // Through the router they share edge-1's upload: together at most what
    // jobs may use of it, 0.9 of 8 Mbit/s.
    let upload = 0.9 * 8e6 / 8.0;
    let sent = sent_by(&router.placed)[&id("edge-1")] as f64;
    assert!(sent <= upload + 2.0 && sent > 0.99 * upload, "{sent} B/s");
    // The frames the plan expects fit in it (their crops cross it too:
    // the light stages may come back to edge-1).
    let frames: f64 = router
        .placed
        .iter()
        .map(|a| a.predicted_rate * 184_320.0)
        .sum();
    assert!(frames <= upload, "{frames} B/s of frames");
    // Planned as two direct pairs (nodes that reach each other directly),
    // each flow is given all of its pair: twice the upload.
    let direct = placed(Network::Direct);
    let sent = sent_by(&direct.placed)[&id("edge-1")] as f64;
    assert!(sent > 1.9 * upload, "{sent} B/s");
}

#[test]
fn otfa_gives_a_job_the_upload_another_job_cannot_use_and_tp_does_not() {
    // Two jobs send frames out of edge-1's upload: one would take 10 a
    // second, the other takes 1.
    let jobs = [job_on("fast", "cam-0", 10.0), job_on("slow", "cam-1", 1.0)];
    let cams = [camera("cam-0"), camera("cam-1")];
    let placed = |policy| {
        let out = place(
            &jobs,
            &cams,
            &behind_one_upload(),
            &streams(&[("cam-0", "edge-1"), ("cam-1", "edge-1")]),
            &[],
            policy,
            Network::ThroughRouter,
        );
        assert!(out.waiting.is_empty(), "{:?}", out.waiting);
        let rate = |j: &str| {
            out.placed
                .iter()
                .find(|a| a.spec.id.as_str() == j)
                .map_or(0.0, |a| a.predicted_rate)
        };
        // The slow job's frames are given room for frames larger than
        // the mean: its share is not all taken by the fast job.
        let slow_det = out
            .placed
            .iter()
            .find(|a| a.spec.id.as_str() == "slow")
            .and_then(|a| a.flows.iter().find(|f| f.to_stage.as_str() == "det"))
            .map_or(0, |f| f.bytes_per_s);
        let room = (1.0 + super::place::ITEM_SLACK) * 184_320.0;
        assert!(slow_det as f64 >= room - 1.0, "{policy:?}: {slow_det} B/s");
        (rate("fast"), rate("slow"))
    };
    // TP splits edge-1's upload equally between the flows that cross it:
    // the slow job uses 184 kB/s of its share, and the fast one cannot have
    // the rest. OTFA gives the fast job all that the slow one leaves.
    let (tp_fast, tp_slow) = placed(Policy::Tp);
    let (fast, slow) = placed(Policy::Otfa);
    assert!((tp_slow - 1.0).abs() < 1e-9, "TP {tp_slow}");
    assert!((slow - 1.0).abs() < 1e-9, "OTFA {slow}");
    assert!(fast > 1.5 * tp_fast, "OTFA {fast}, TP {tp_fast}");
    assert!((slow - 1.0).abs() < 1e-9, "OTFA {slow}");
}

#[test]
fn a_nodes_upload_is_planned_from_what_its_probes_saw_leave_with_its_jobs_bytes() {
    use super::place::access_rates;
    // edge-1's probes read 8 Mbit/s to each peer: what its jobs' flows left
    // of its link. With those flows' bytes, they saw 16 leave.
    let mut views = behind_one_upload();
    assert_eq!(access_rates(&views)[&id("edge-1")], (8.0, 50.0));
    views[0].upload_mbit_s = Some(16.0);
    assert_eq!(access_rates(&views)[&id("edge-1")], (16.0, 50.0));
    // The downloads are not moved by it, and a figure below the rates
    // measured to peers does not lower the upload.
    assert_eq!(access_rates(&views)[&id("edge-2")], (50.0, 50.0));
    views[0].upload_mbit_s = Some(4.0);
    assert_eq!(access_rates(&views)[&id("edge-1")], (8.0, 50.0));
    // A node that measured nothing: its reports' figure, else the default.
    let lone = [view("edge-9", 10.0, &[])];
    let d = crate::planner::DEFAULT_LINK_MBIT_S;
    assert_eq!(access_rates(&lone)[&id("edge-9")], (d, d));
}

#[test]
fn a_jobs_light_stages_stay_with_its_detector_and_its_frames_cost_the_camera_node_their_encoding() {
    let job = [job_on("a", "cam-0", 10.0)];
    let cams = [camera("cam-0"), camera("cam-1")];
    let placed = |encode: f64, decode: f64| {
        let mut views = behind_one_upload();
        for v in &mut views {
            // The camera node's own encoding is what counts: the others'
            // (slower here) are not the median it is planned with.
            v.jpeg_encode_cost = if v.node == id("edge-1") {
                encode
            } else {
                5.0 * encode
            };
            v.jpeg_decode_cost = decode;
        }
        let out = place(
            &job,
            &cams,
            &views,
            &streams(&[("cam-0", "edge-1"), ("cam-1", "edge-1")]),
            &[],
            Policy::Otfa,
            Network::ThroughRouter,
        );
        assert!(out.waiting.is_empty(), "{:?}", out.waiting);
        out.placed.into_iter().next().expect("placed")
    };
    // edge-1 has 1.6 detector frames/s to spare (its floor); its frames of
    // 0.92 Mpx cost 0.8 a megapixel to encode: 0.74 frames of work each.
    let carried = placed(0.8, 0.4);
    // Every stage but the source on one idle node: one flow, the frames.
    let det = &carried.nodes[1];
    assert_ne!(det, &id("edge-1"));
    assert!(
        carried.nodes[1..].iter().all(|n| n == det),
        "{:?}",
        carried.nodes
    );
    assert_eq!(carried.flows.len(), 1, "{:?}", carried.flows);
    assert_eq!(carried.flows[0].to_stage.as_str(), "det");
    // Its predicted rate is what encoding leaves edge-1 able to send.
    let encode = 0.8 * 1280.0 * 720.0 / 1e6;
    let bound = 1.6 / encode;
    assert!(
        (carried.predicted_rate - bound).abs() < 1e-6 * bound,
        "{} against {bound}",
        carried.predicted_rate
    );
    // Unmeasured (0), the upload bounds it instead: 0.9 of 1 MB/s over
    // frames of 184 kB, planned 20 % above the rate, is over 4 items/s.
    let free = placed(0.0, 0.0);
    assert!(free.predicted_rate > 4.0, "{}", free.predicted_rate);
}

#[test]
fn a_nodes_measured_own_work_leaves_jobs_less_than_its_cameras_model_does() {
    let job = parse(ATTRIBUTES, "job").expect("job");
    let cams = [camera("cam-0")];
    let predicted = |own_work_fps: f64| {
        let mut v = view("edge-1", 30.0, &[]);
        v.own_work_fps = own_work_fps;
        let out = place(
            std::slice::from_ref(&job),
            &cams,
            &[v],
            &streams(&[("cam-0", "edge-1")]),
            &[],
            Policy::Otfa,
            Network::ThroughRouter,
        );
        assert!(out.waiting.is_empty(), "{:?}", out.waiting);
        out.placed[0].predicted_rate
    };
    // The model: 15 frames/s of the camera's detection and its people's
    // re-ID, of 30.
    let modelled = predicted(0.0);
    assert!(modelled > 0.0);
    // Measured below the model: the model stands.
    assert_eq!(predicted(5.0), modelled);
    // Measured above it (decoding and the rest): less for the job.
    let measured = predicted(29.0);
    assert!(
        measured < 0.75 * modelled,
        "{measured} items/s with the floor's 3 frames/s left, {modelled} with the model's"
    );
    // A full node still runs the job, slowly (its floor).
    assert!(predicted(80.0) > 0.0);
}
