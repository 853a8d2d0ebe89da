//! Analytics jobs on real processes (issue 15, item 2): a master (mutual
//! TLS, its access list), a slow node with the camera behind a link `tc`
//! shapes to 4 Mbit/s each way, a fast node on the host. A job file is
//! submitted through the API; OTFA places its stages; each stage runs where
//! the plan says (the nodes' metrics) and fails on no item (a records sink
//! and a topic sink), the frames crossing the shaped link
//! stay within the flow's share, results reach the master's database, and a
//! cancelled job stops. Job files that are wrong are refused, the stage named.
//!
//! Needs root for `ip netns` and `tc` (CI runs as root), plus
//! `ORT_DYLIB_PATH`, `VIDAR_MODEL_DIR` and every binary built (`make test`).

mod common;

use common::{bin, START};
use std::time::{Duration, Instant};
use vidar_testkit::http::{get_status as http_get, request};
use vidar_testkit::process::Proc;
use vidar_testkit::VTEST;

/// The shaped rate, each way.
const RATE_MBIT: f64 = 4.0;

/// The example job file, on this site's camera, taking all its frames,
/// with a re-ID branch to a topic sink.
fn job() -> String {
    let example = include_str!("../../deploy/jobs/attributes.toml")
        .replace("camera = \"cam-0\"", "camera = \"ca\"")
        .replace("rate = 4.0", "rate = 10.0");
    format!(
        "{example}\n[[stage]]\nname = \"emb\"\nkind = \"reid\"\ninput = \"trk\"\n\
         [[stage]]\nname = \"pub\"\nkind = \"sink\"\nsink = \"topic\"\ninput = \"emb\"\n"
    )
}

/// Each node's last status at the master (`/api/nodes`), by node; empty
/// when the API does not answer.
fn statuses(http: u16) -> std::collections::BTreeMap<String, serde_json::Value> {
    let Some((_, body)) = http_get(http, "/api/nodes") else {
        return Default::default();
    };
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let nodes = v["nodes"]
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    nodes
        .into_iter()
        .filter_map(|mut n| Some((n["node"].as_str()?.to_string(), n["status"].take())))
        .collect()
}

/// `name{job="attributes",stage="<stage>",...}` in `text`.
fn stage_metric(text: &str, name: &str, stage: &str) -> Option<f64> {
    vidar_runtime::metrics::value(text, name, &[("job", "attributes"), ("stage", stage)])
}

#[test]
fn jobs_are_placed_by_otfa_run_where_placed_keep_their_share_and_record_results() {
    let site = common::shaped_site("jobs", 214, RATE_MBIT, &["edge-a", "edge-b"]);
    // The camera beside the slow node, inside the namespace.
    let mount = format!("ca={VTEST}");
    let mut cam = Proc::spawn_command(
        site.dir.path(),
        "ca",
        site.ns.command(
            &bin("vidar-camera"),
            &["--port", "0", "--mount", mount.as_str()],
        ),
    )
    .expect("spawn the camera");
    let cport = cam
        .wait_ready(START)
        .unwrap_or_else(|e| panic!("{e}"))
        .rtsp
        .expect("a camera announces its RTSP port")
        .port();
    let master = site.start_master(&format!(
        "[[cameras]]\ncamera = \"ca\"\nsource = \"rtsp://127.0.0.1:{cport}/ca\"\n\
         fps = 10\nwidth = 768\nheight = 576\nnode = \"edge-a\"\n"
    ));
    let http = master.http;
    // edge-a: the camera's node, a slow detector (its camera takes all of
    // it), re-ID fast enough for its camera (no crops cross the link), and
    // frames cheap to send (as with a hardware JPEG encoder: measured, a
    // frame costs a fifth of a detector frame or more to encode, which on
    // a node offering 5 frames/s would rightly keep the detector there);
    // edge-b: a fast detector.
    let edges = site.start_edges(
        &master.router,
        &[
            ("edge-a", true, 5.0, 60.0, "jpeg_encode_cost = 0.05"),
            ("edge-b", false, 60.0, 60.0, ""),
        ],
    );
    let metrics: Vec<_> = edges.iter().map(|e| e.metrics).collect();
    let logs = || {
        let mut out: Vec<String> = edges.iter().map(|e| e.proc.tail(4000)).collect();
        out.push(master.proc.tail(4000));
        out.join("\n")
    };
    let wait = |what: &str, limit: Duration, f: &mut dyn FnMut() -> bool| {
        let t0 = Instant::now();
        while !f() {
            assert!(
                t0.elapsed() < limit,
                "timed out after {limit:?} waiting for: {what}\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let node_metrics = |k: usize| {
        vidar_testkit::http::get_status_at(metrics[k], "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    };

    let job = job();
    // Wrong job files: refused, the stage named, nothing added.
    for (bad, want) in [
        (job.replace("input = \"cam\"", "input = \"trk\""), "cycle"),
        (
            job.replace("osnet-x0-25-msmt17", "no-such-model"),
            "stage attr (onnx): model \\\"no-such-model\\\" is not an image model",
        ),
        (
            job.replace("input = \"det\"", "input = \"cam\""),
            "stage trk (track): takes crops, but its input cam produces frames",
        ),
        (
            job.replace("input = \"attr\"", "input = \"nothing\""),
            "stage out (sink): input nothing is not a stage",
        ),
    ] {
        let (status, body) = request(http, "POST", "/api/jobs", &bad).expect("the API answers");
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(want), "wanted {want:?} in {body}");
    }
    // The link measured near its shaped rate before the job is placed, so
    // OTFA plans with what the link really carries.
    wait(
        "both ends to measure the shaped link",
        Duration::from_secs(150),
        &mut || {
            let s = statuses(http);
            let rate = |from: &str, to: &str| {
                s.get(from)?["links"]
                    .as_array()?
                    .iter()
                    .find(|l| l["to"] == to)?["mbit_s"]
                    .as_f64()
            };
            [rate("edge-a", "edge-b"), rate("edge-b", "edge-a")]
                .iter()
                .all(|r| r.is_some_and(|r| r < 2.0 * RATE_MBIT))
        },
    );
    let (status, body) = request(http, "POST", "/api/jobs", &job).expect("the API answers");
    assert_eq!(status, 201, "{body}");
    // Placed: every stage on a node, the source where the camera is.
    let mut placed = std::collections::BTreeMap::new();
    wait("the job to be placed", Duration::from_secs(30), &mut || {
        let Some((_, body)) = http_get(http, "/api/jobs") else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let Some(job) = v["jobs"].as_array().and_then(|j| j.first()).cloned() else {
            return false;
        };
        if job["state"] != "placed" {
            return false;
        }
        placed = job["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                Some((
                    s["name"].as_str()?.to_string(),
                    s["node"].as_str()?.to_string(),
                ))
            })
            .collect();
        placed.len() == 7
    });
    eprintln!("placement: {placed:?}");
    assert_eq!(
        placed["cam"], "edge-a",
        "the source runs where the camera is"
    );
    // edge-a's detector is taken by its camera; edge-b has one to spare
    // and the frames fit the link: OTFA puts the detector there.
    assert_eq!(placed["det"], "edge-b", "{placed:?}");

    // Each stage runs where the plan says: it counts items there, none elsewhere.
    let index = |node: &str| usize::from(node == "edge-b");
    wait(
        "every stage to process items on its node",
        Duration::from_secs(90),
        &mut || {
            let texts = [node_metrics(0), node_metrics(1)];
            placed.iter().all(|(stage, node)| {
                let here = stage_metric(&texts[index(node)], "vidar_job_stage_items_total", stage);
                let there = stage_metric(
                    &texts[1 - index(node)],
                    "vidar_job_stage_items_total",
                    stage,
                );
                here.is_some_and(|v| v > 0.0) && there.unwrap_or(0.0) == 0.0
            })
        },
    );
    // No stage failed on an item (the topic sink's puts included).
    for (stage, node) in &placed {
        let errors = stage_metric(
            &node_metrics(index(node)),
            "vidar_job_stage_errors_total",
            stage,
        );
        assert_eq!(errors, Some(0.0), "stage {stage} on {node}\n{}", logs());
    }
    // The frames into the detector cross the shaped link within their
    // share; the source takes 10 a second, more than the link carries, so
    // the bucket holds them back (and counts what it drops).
    let flow = || {
        let t = node_metrics(0);
        (
            stage_metric(&t, "vidar_job_flow_bytes_total", "det").unwrap_or(0.0),
            stage_metric(&t, "vidar_job_flow_share_bytes_per_s", "det").unwrap_or(0.0),
            stage_metric(&t, "vidar_job_flow_dropped_total", "det").unwrap_or(0.0),
        )
    };
    let (b0, share0, _) = flow();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    let (b1, share1, dropped) = flow();
    let rate = (b1 - b0) / t0.elapsed().as_secs_f64();
    eprintln!(
        "flow into det: {rate:.0} B/s, share {share1:.0} B/s ({:.2}), dropped {dropped}",
        rate / share1.max(1.0)
    );
    let share1 = share0.max(share1);
    assert!(share1 > 0.0, "no share for the flow into det\n{}", logs());
    assert!(rate > 0.0, "no frame crossed the link\n{}", logs());
    // A bucket holds a second of its rate: at most that much above the share over 20 s.
    assert!(
        rate <= share1 * 1.1 + share1.max(65536.0) / 20.0,
        "{rate:.0} B/s sent against a share of {share1:.0} B/s"
    );

    // The node reports what the flow needs per item, and its camera's
    // people per frame, for the master to plan with.
    wait(
        "edge-a to report the flow into det and its camera's people",
        Duration::from_secs(30),
        &mut || {
            let Some(n) = statuses(http).remove("edge-a") else {
                return false;
            };
            let per_item = n["job_flows"].as_array().and_then(|fs| {
                let f = fs.iter().find(|f| f["to_stage"] == "det")?;
                Some(f["bytes"].as_f64()? / f["items"].as_f64()?)
            });
            let persons = n["load"]["cameras"][0]["persons"].as_f64().unwrap_or(0.0);
            let share = n["load"]["cameras"][0]["detect_share"]
                .as_f64()
                .unwrap_or(0.0);
            eprintln!(
                "reported: {per_item:?} bytes per frame into det, {persons:.2} people per frame, \
                 {share:.2} detector runs per frame"
            );
            // A 768 x 576 JPEG of vtest.avi, people in view, and one frame
            // in 5 detected (the site's `detection_interval = 5`; people
            // walk everywhere, so the motion gate skips few of those).
            per_item.is_some_and(|b| (10_000.0..400_000.0).contains(&b))
                && persons > 0.5
                && (0.15..=0.25).contains(&share)
        },
    );

    // Each node reports its process's CPU and, apart, its jobs' threads':
    // edge-b runs the detector and re-ID stages, edge-a ingests the camera.
    wait(
        "the nodes to report their CPU and their jobs' part of it",
        Duration::from_secs(60),
        &mut || {
            let s = statuses(http);
            let load = |node: &str| {
                let n = s.get(node)?;
                let l = &n["load"];
                let cores = n["capacity"]["detect_cores"].as_f64()?;
                Some((
                    l["cpu_cores"].as_f64()?,
                    l["job_cpu_cores"].as_f64()?,
                    cores,
                ))
            };
            let (Some(a), Some(b)) = (load("edge-a"), load("edge-b")) else {
                return false;
            };
            eprintln!("edge-a (cpu, jobs, detector cores) {a:?}, edge-b {b:?}");
            a.0 > 0.05 && a.2 > 0.0 && b.1 > 0.05 && b.1 <= b.0 && b.2 > 0.0
        },
    );

    // Results reach the master: one per frame, the re-ID vector per crop.
    wait(
        "results in the master's database",
        Duration::from_secs(60),
        &mut || {
            let Some((200, body)) = http_get(http, "/api/jobs/attributes/results?limit=50") else {
                return false;
            };
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let results = v["results"].as_array().cloned().unwrap_or_default();
            v["total"].as_u64().unwrap_or(0) > 0
                && results
                    .iter()
                    .all(|r| r["stage"] == "out" && r["kind"] == "tensors")
                && results.iter().any(|r| {
                    r["items"].as_array().is_some_and(|items| {
                        !items.is_empty()
                            && items
                                .iter()
                                .all(|i| i["values"].as_array().is_some_and(|v| v.len() == 512))
                    })
                })
        },
    );

    // Cancelled: gone from the plan, and its stages stop.
    let (status, body) =
        request(http, "DELETE", "/api/jobs/attributes", "").expect("the API answers");
    assert_eq!(status, 200, "{body}");
    let b = index(&placed["out"]);
    let items = || stage_metric(&node_metrics(b), "vidar_job_stage_items_total", "out");
    wait(
        "the cancelled job's stages to stop",
        Duration::from_secs(30),
        &mut || {
            let before = items();
            std::thread::sleep(Duration::from_secs(2));
            before.is_none() || before == items()
        },
    );
    let (status, _) = request(http, "DELETE", "/api/jobs/attributes", "").expect("the API answers");
    assert_eq!(status, 404, "cancelling twice");
    drop(cam);
}
