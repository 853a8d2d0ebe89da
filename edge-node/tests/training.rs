//! Split training rounds on a real site (EdgeSplit, issue 13): a real
//! `vidar-master` (the trainer) and three real `vidar-edge` processes with
//! `[training] rounds`, under the site CA's mutual TLS and the master's
//! access list, each holding its own training file of crops. Checks that
//! rounds run over zenoh with the real re-ID model (OSNet x0.25, real ONNX
//! weights made trainable), every node answers its steps, the trainer adds
//! a candidate to the registry without deploying it, and a node killed in
//! the middle of a round is dropped while the others finish it.
//!
//! Needs `VIDAR_MODEL_DIR` and every binary built (`make test` does both).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use vidar_protocol::{CameraId, NodeId, TrackId, UnixMs};
use vidar_store::training::{Sample, Tracklet, TrainingBounds, TrainingStore};
use vidar_testkit::http::get_status as http_get;
use vidar_testkit::process::{wait_for as wait, Proc};

fn bin(name: &str) -> PathBuf {
    vidar_testkit::process::sibling_bin(env!("CARGO_BIN_EXE_vidar-edge"), name)
}

const START: Duration = Duration::from_secs(120);

/// A crop of "person" `p`: a shirt and trousers of their own colours, a
/// little noise and lighting per crop, as a 64x128 JPEG.
fn person_jpeg(p: u32, rng: &mut impl Rng) -> Vec<u8> {
    let colour = |k: u32| -> [f32; 3] {
        let h = p.wrapping_mul(2_654_435_761).rotate_left(k * 7);
        [
            (h & 255) as f32,
            ((h >> 8) & 255) as f32,
            ((h >> 16) & 255) as f32,
        ]
    };
    let (shirt, trousers) = (colour(1), colour(2));
    let light: f32 = rng.gen_range(0.8..1.2);
    let img = image::RgbImage::from_fn(64, 128, |_, y| {
        let c = if y < 60 { shirt } else { trousers };
        let n: f32 = rng.gen_range(-12.0..12.0);
        image::Rgb(c.map(|v| (v * light + n).clamp(0.0, 255.0) as u8))
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("jpeg");
    out.into_inner()
}

/// A node's training file: two cameras, six tracklets each, four crops each.
fn training_file(path: &Path, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut store = TrainingStore::open(
        path,
        TrainingBounds {
            max_samples: 1000,
            retention: Duration::from_secs(3600),
        },
    )
    .expect("training file");
    let now = UnixMs::now();
    for (c, camera) in ["door", "yard"].into_iter().enumerate() {
        for t in 0..6u32 {
            let person = seed as u32 * 100 + c as u32 * 10 + t;
            let samples = (0..4)
                .map(|k| Sample {
                    t_ms: UnixMs(now.0 - 60_000 + k),
                    quality: 0.9,
                    jpeg: person_jpeg(person, &mut rng),
                })
                .collect::<Vec<_>>();
            let tracklet = Tracklet {
                id: 0,
                camera: CameraId::new(camera).expect("camera"),
                track: TrackId(u64::from(t) + 1),
                identity: None,
                first_ms: UnixMs(now.0 - 60_000),
                last_ms: UnixMs(now.0 - 50_000),
                crops: 8,
                samples,
            };
            store.add(&tracklet, now).expect("add");
        }
    }
}

fn counter(metrics: u16, name: &str) -> f64 {
    let text = http_get(metrics, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    vidar_testkit::http::metric(&text, name).unwrap_or(0.0)
}

fn training_state(http: u16) -> serde_json::Value {
    let (status, body) = http_get(http, "/api/training").expect("GET /api/training");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn post(http: u16, path: &str, body: &str) -> (u16, String) {
    vidar_testkit::http::request(http, "POST", path, body).expect("POST")
}

/// `GET /api/training` once the rounds asked for have ended.
fn finished(http: u16, what: &str, logs: &dyn Fn() -> String) -> serde_json::Value {
    wait(what, Duration::from_secs(600), logs, || {
        let s = training_state(http);
        (s["state"]["running"] == false).then_some(s)
    })
}

#[test]
fn split_rounds_run_over_zenoh_and_a_node_killed_mid_round_is_dropped() {
    vidar_testkit::require_node_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let site = format!("tr{}", std::process::id());
    let ca = dir.path().join("ca");
    vidar_link::pki::init_ca(&ca, &site, 30).expect("ca init");
    let names = ["edge-1", "edge-2", "edge-3"];
    for n in names {
        vidar_link::pki::enroll(&ca, &NodeId::new(n).expect("id"), 30).expect("enroll");
    }
    let master_toml = format!(
        "master_id = \"master\"\ndatabase = \"{db}\"\nhttp_addr = \"127.0.0.1:0\"\n\
         node_timeout_s = 3\nauth = \"none\"\nmodels_dir = \"{models}\"\n\
         [cluster]\nsite = \"{site}\"\nlisten = [\"tls/127.0.0.1:0\"]\nbundle = \"{bundle}\"\n\
         [training]\ncuts = [3, 131]\nbatches = 3\nids = 2\nper_id = 2\nprofile_batch = 2\n\
         lr = 1e-4\nstep_timeout_s = 60\n",
        db = dir.path().join("global.db").display(),
        models = dir.path().join("models").display(),
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
    let http = ready.http.expect("the master's API").port();
    let zport = ready.zenoh_port().expect("zenoh port");
    let mut edges: Vec<(Proc, u16)> = Vec::new();
    for (i, id) in names.iter().enumerate() {
        let samples = dir.path().join(format!("{id}-training.db"));
        training_file(&samples, i as u64 + 1);
        let toml = format!(
            "node_id = \"{id}\"\ndatabase = \"{db}\"\nmetrics_addr = \"127.0.0.1:0\"\n\
             [cluster]\nsite = \"{site}\"\nconnect = [\"tls/127.0.0.1:{zport}\"]\nbundle = \"{bundle}\"\n\
             [sharing]\nstatus_every_ms = 500\n\
             [training]\ncollect = true\nrounds = true\nround_threads = 1\npath = \"{samples}\"\n",
            db = dir.path().join(format!("{id}.db")).display(),
            bundle = ca.join("nodes").join(id).display(),
            samples = samples.display(),
        );
        let cfg = dir.path().join(format!("{id}.toml"));
        std::fs::write(&cfg, toml).expect("edge config");
        let mut p = Proc::spawn(
            dir.path(),
            id,
            &bin("vidar-edge"),
            &["run", "--config", &cfg.to_string_lossy()],
        )
        .expect("spawn an edge");
        let ready = p.wait_ready(START).unwrap_or_else(|e| panic!("{e}"));
        edges.push((p, ready.http.expect("edge metrics").port()));
    }
    let logs = |edges: &[(Proc, u16)], master: &Proc| {
        let mut out: Vec<String> = edges.iter().map(|(p, _)| p.tail(2000)).collect();
        out.push(master.tail(4000));
        out.join("\n")
    };
    // All three live in the master's view.
    wait(
        "three live nodes",
        Duration::from_secs(60),
        &|| logs(&edges, &master),
        || {
            let (_, body) = http_get(http, "/api/nodes")?;
            (body.matches("\"live\":true").count() == 3).then_some(())
        },
    );

    // Bad requests are refused by name; then two rounds.
    let (code, body) = post(http, "/api/training", "{\"rounds\": 0}");
    assert!(code == 400 && body.contains("rounds"), "{code} {body}");
    let (code, body) = post(
        http,
        "/api/training",
        "{\"rounds\": 2, \"algorithm\": \"edgesplit\"}",
    );
    assert_eq!(code, 202, "{body}");
    let (code, body) = post(http, "/api/training", "{\"rounds\": 1}");
    assert_eq!(code, 409, "a second run while one runs: {body}");
    let state = finished(http, "two rounds", &|| logs(&edges, &master));
    let st = &state["state"];
    assert!(st["error"].is_null(), "{state}");
    let rounds = st["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{state}");
    for r in rounds {
        let nodes = r["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), 3, "{r}");
        for n in nodes {
            assert!(n["dropped"].is_null(), "{n}");
            assert_eq!(n["batches"], 3, "{n}");
            assert_eq!(n["crops"], 12, "{n}");
            assert!(
                n["up_bytes"].as_u64().unwrap_or(0) > 0
                    && n["down_bytes"].as_u64().unwrap_or(0) > 0,
                "{n}"
            );
            assert!([3, 131].contains(&n["cut"].as_u64().unwrap_or(0)), "{n}");
        }
        assert!(r["predicted_s"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    }
    // The candidate is in the registry, not deployed.
    let version = st["candidate"].as_str().expect("a candidate").to_string();
    let (_, models) = http_get(http, "/api/models").expect("models");
    assert!(models.contains(&version), "{models}");
    let registry: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("models").join("registry.json"))
            .expect("registry"),
    )
    .expect("registry json");
    assert_eq!(
        registry["deployments"].as_array().map(Vec::len),
        Some(0),
        "{registry}"
    );
    let v = &registry["versions"][0];
    assert_eq!(v["metrics"]["rounds"], 2.0, "{v}");
    for (_, m) in &edges {
        assert!(
            counter(*m, "vidar_training_round_steps") >= 2.0 * 8.0,
            "{}",
            logs(&edges, &master)
        );
    }
    assert!(counter(http, "vidar_training_rounds") >= 2.0);

    // A node killed in the middle of a round: the round completes without it.
    let steps_before = counter(edges[2].1, "vidar_training_round_steps");
    let (code, body) = post(http, "/api/training", "{\"rounds\": 1}");
    assert_eq!(code, 202, "{body}");
    wait(
        "edge-3 in the round",
        Duration::from_secs(120),
        &|| logs(&edges, &master),
        || {
            // Begin and at least one forward pass.
            (counter(edges[2].1, "vidar_training_round_steps") >= steps_before + 2.0).then_some(())
        },
    );
    edges[2].0.kill();
    let state = finished(http, "the round without edge-3", &|| logs(&edges, &master));
    let st = &state["state"];
    assert!(st["error"].is_null(), "{state}");
    let last = st["rounds"]
        .as_array()
        .and_then(|r| r.last())
        .expect("a round");
    for n in last["nodes"].as_array().expect("nodes") {
        if n["node"] == "edge-3" {
            assert!(n["dropped"].is_string(), "{n}");
        } else {
            assert!(n["dropped"].is_null() && n["batches"] == 3, "{n}");
        }
    }
    assert_eq!(st["totals"]["dropped"], 1, "{state}");
}
