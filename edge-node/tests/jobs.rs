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

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use vidar_protocol::NodeId;
use vidar_testkit::http::{get_status as http_get, request};
use vidar_testkit::netns::{is_root, Namespace};
use vidar_testkit::process::Proc;
use vidar_testkit::VTEST;

/// The shaped rate, each way.
const RATE_MBIT: f64 = 4.0;
/// How long a process may take to start serving.
const START: Duration = Duration::from_secs(120);

fn bin(name: &str) -> PathBuf {
    vidar_testkit::process::sibling_bin(env!("CARGO_BIN_EXE_vidar-edge"), name)
}

const JOB: &str = r#"
id = "attributes"
rate = 10.0
[[stage]]
name = "cam"
kind = "source"
camera = "ca"
[[stage]]
name = "det"
kind = "detect"
input = "cam"
[[stage]]
name = "trk"
kind = "track"
input = "det"
[[stage]]
name = "attr"
kind = "onnx"
model = "osnet-x0-25-msmt17"
input = "trk"
[[stage]]
name = "out"
kind = "sink"
sink = "records"
input = "attr"
[[stage]]
name = "emb"
kind = "reid"
input = "trk"
[[stage]]
name = "pub"
kind = "sink"
sink = "topic"
input = "emb"
"#;

/// `name{job="attributes",stage="<stage>",...}` in `text`.
fn stage_metric(text: &str, name: &str, stage: &str) -> Option<f64> {
    vidar_runtime::metrics::value(text, name, &[("job", "attributes"), ("stage", stage)])
}

#[test]
fn jobs_are_placed_by_otfa_run_where_placed_keep_their_share_and_record_results() {
    assert!(
        is_root(),
        "this test shapes a link in a network namespace (ip netns, tc): run it as root, as CI does"
    );
    vidar_testkit::require_node_env();
    let tag = std::process::id() % 10_000;
    let subnet = format!("10.214.{}", tag % 64 * 4);
    let (host_ip, ns_ip) = (format!("{subnet}.1"), format!("{subnet}.2"));
    let ns = Namespace::create(
        &format!("vidar-jobs-{tag}"),
        &format!("vj{tag}"),
        &host_ip,
        &ns_ip,
        RATE_MBIT,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let site = format!("j{tag}");
    let ca = dir.path().join("ca");
    vidar_link::pki::init_ca(&ca, &site, 30).expect("ca init");
    for n in ["edge-a", "edge-b"] {
        vidar_link::pki::enroll(&ca, &NodeId::new(n).expect("id"), 30).expect("enroll");
    }
    // The camera beside the slow node, inside the namespace.
    let mount = format!("ca={VTEST}");
    let mut cam = Proc::spawn_command(
        dir.path(),
        "ca",
        ns.command(
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
    let master_toml = format!(
        "master_id = \"master\"\ndatabase = \"{db}\"\nhttp_addr = \"127.0.0.1:0\"\n\
         sync_every_s = 2\nplan_every_s = 60\nnode_timeout_s = 5\nauth = \"none\"\n\
         [cluster]\nsite = \"{site}\"\nlisten = [\"tls/{host_ip}:0\"]\nbundle = \"{bundle}\"\n\
         [[cameras]]\ncamera = \"ca\"\nsource = \"rtsp://127.0.0.1:{cport}/ca\"\nfps = 10\nwidth = 768\nheight = 576\nnode = \"edge-a\"\n",
        db = dir.path().join("global.db").display(),
        bundle = ca.join("master").display(),
    );
    let cfg = dir.path().join("master.toml");
    std::fs::write(&cfg, master_toml).expect("master config");
    let mut master = Proc::spawn(
        dir.path(),
        "master",
        &bin("vidar-master"),
        &["run", "--config", &cfg.to_string_lossy()],
    )
    .expect("spawn the master");
    let ready = master.wait_ready(START).unwrap_or_else(|e| panic!("{e}"));
    let http = ready.http.expect("the master announces its API").port();
    let zport = ready
        .zenoh_port()
        .unwrap_or_else(|| panic!("no zenoh locator in {ready:?}"));
    let router = format!("{host_ip}:{zport}");
    let mut edges = Vec::new();
    // edge-a: the camera's node, a slow detector (its camera takes all of
    // it), re-ID fast enough for its camera (no crops cross the link);
    // edge-b: a fast detector.
    for (id, inside, fps, reid) in [("edge-a", true, 5.0, 60.0), ("edge-b", false, 60.0, 60.0)] {
        let metrics = if inside { ns_ip.as_str() } else { "127.0.0.1" };
        let toml = format!(
            "node_id = \"{id}\"\ndatabase = \"{db}\"\nmetrics_addr = \"{metrics}:0\"\n\
             detection_interval = 5\ninference_workers = 1\n[models.runtime]\nintra_threads = 1\n\
             [detector]\nmax_batch = 1\n\
             [cluster]\nsite = \"{site}\"\nconnect = [\"tls/{router}\"]\nbundle = \"{bundle}\"\n\
             [sharing]\nstatus_every_ms = 500\ntile_every_ms = 0\n\
             detect_fps = {fps}\nreid_crops_per_s = {reid}\n\
             [sharing.ingest]\ntransport = \"tcp\"\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n",
            db = dir.path().join(format!("{id}.db")).display(),
            bundle = dir.path().join("ca").join("nodes").join(id).display(),
        );
        let cfg = dir.path().join(format!("{id}.toml"));
        std::fs::write(&cfg, toml).expect("edge config");
        let cfg = cfg.to_string_lossy().to_string();
        let args = ["run", "--config", cfg.as_str()];
        let cmd = if inside {
            ns.command(&bin("vidar-edge"), &args)
        } else {
            let mut c = Command::new(bin("vidar-edge"));
            c.args(args);
            c
        };
        edges.push(Proc::spawn_command(dir.path(), id, cmd).expect("spawn an edge"));
    }
    let mut metrics = Vec::new();
    for e in &mut edges {
        let ready = e.wait_ready(START).unwrap_or_else(|e| panic!("{e}"));
        metrics.push(ready.http.expect("an edge announces /metrics"));
    }
    let logs = || {
        let mut out: Vec<String> = edges.iter().map(|e| e.tail(4000)).collect();
        out.push(master.tail(4000));
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

    // Wrong job files: refused, the stage named, nothing added.
    for (bad, want) in [
        (
            JOB.replace(
                "input = \"det\"\n[[stage]]\nname = \"attr\"",
                "input = \"attr\"\n[[stage]]\nname = \"attr\"",
            ),
            "cycle",
        ),
        (
            JOB.replace("osnet-x0-25-msmt17", "no-such-model"),
            "stage attr (onnx): model \\\"no-such-model\\\" is not an image model",
        ),
        (
            JOB.replace(
                "kind = \"track\"\ninput = \"det\"",
                "kind = \"track\"\ninput = \"cam\"",
            ),
            "stage trk (track): takes crops, but its input cam produces frames",
        ),
        (
            JOB.replace("input = \"attr\"", "input = \"nothing\""),
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
            let Some((_, body)) = http_get(http, "/api/nodes") else {
                return false;
            };
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let rate = |from: &str, to: &str| {
                v["nodes"].as_array().and_then(|ns| {
                    let n = ns.iter().find(|n| n["node"] == from)?;
                    n["status"]["links"]
                        .as_array()?
                        .iter()
                        .find(|l| l["to"] == to)?["mbit_s"]
                        .as_f64()
                })
            };
            [rate("edge-a", "edge-b"), rate("edge-b", "edge-a")]
                .iter()
                .all(|r| r.is_some_and(|r| r < 2.0 * RATE_MBIT))
        },
    );
    let (status, body) = request(http, "POST", "/api/jobs", JOB).expect("the API answers");
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
