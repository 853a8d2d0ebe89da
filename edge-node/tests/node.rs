//! The edge node as a user runs it: real `vidar-edge` processes, real RTSP
//! cameras on 127.0.0.1, real ONNX Runtime on the real model files, a real
//! SQLite file. Needs `ORT_DYLIB_PATH` and `VIDAR_MODEL_DIR` (`make test` sets
//! both after `deploy/setup.sh` and `make models`).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vidar_pipeline::camera::{self, CameraConfig, Mount, MountSource};
use vidar_protocol::{IdentityId, NodeId};
use vidar_store::{Reader, TimeRange};

use vidar_testkit::VTEST;

fn edge_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vidar-edge")
}

use vidar_testkit::ports::unused_port;
use vidar_testkit::process::Proc;

use vidar_testkit::require_node_env as require_env;

/// An in-process RTSP camera serving vtest.avi on `mounts` (name, start s).
fn vtest_camera(port: u16, mounts: &[(&str, f64)]) -> camera::Camera {
    let config = CameraConfig {
        port,
        mounts: mounts
            .iter()
            .map(|(n, s)| Mount {
                name: (*n).into(),
                source: MountSource::File(VTEST.into(), *s),
                phase_s: None,
            })
            .collect(),
        ..Default::default()
    };
    camera::serve(&config).expect("camera")
}

struct Node {
    proc: Proc,
    /// The `/metrics` port (0 until the node is ready).
    metrics: u16,
    db: PathBuf,
}

impl Node {
    /// Starts a node and waits until it serves (its ready file).
    fn start(dir: &Path, cameras: &[(&str, String)], extra: &str) -> Node {
        let mut n = Node::spawn(dir, cameras, extra);
        let ready = n
            .proc
            .wait_ready(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}"));
        n.metrics = ready.http.expect("the node announces /metrics").port();
        n
    }

    /// Starts a node without waiting for it (metrics at port 0: the
    /// kernel's pick, in the ready file).
    fn spawn(dir: &Path, cameras: &[(&str, String)], extra: &str) -> Node {
        let db = dir.join("edge.db");
        let mut toml = format!(
            "node_id = \"edge-t\"\ndatabase = \"{}\"\nmetrics_addr = \"127.0.0.1:0\"\n{extra}\n",
            db.display()
        );
        for (name, url) in cameras {
            toml.push_str(&format!(
                "[[cameras]]\ncamera = \"{name}\"\nsource = \"{url}\"\ntransport = \"tcp\"\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\nstall_timeout_ms = 2000\nconnect_timeout_ms = 4000\n"
            ));
        }
        let cfg = dir.join("edge.toml");
        std::fs::write(&cfg, toml).expect("config");
        let cfg = cfg.to_string_lossy().to_string();
        let proc = Proc::spawn(
            dir,
            "edge-t",
            Path::new(edge_bin()),
            &["run", "--config", &cfg],
        )
        .expect("spawn vidar-edge");
        Node {
            proc,
            metrics: 0,
            db,
        }
    }

    fn log(&self) -> String {
        self.proc.log()
    }

    /// Value of the first metric line starting with `prefix`.
    fn metric(&self, prefix: &str) -> Option<f64> {
        let body = http_get(self.metrics, "/metrics")?;
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn wait_metric(&self, prefix: &str, min: f64, timeout: Duration) -> f64 {
        let start = Instant::now();
        loop {
            let v = self.metric(prefix).unwrap_or(-1.0);
            if v >= min || start.elapsed() > timeout {
                return v;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        match self.proc.terminate(Duration::from_secs(20)) {
            Some(st) => st,
            None => panic!("node did not stop on SIGTERM:\n{}", self.log()),
        }
    }

    fn kill9(mut self) {
        self.proc.kill();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut s = String::new();
    c.read_to_string(&mut s).ok()?;
    Some(s)
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn records_are_queryable_and_a_person_keeps_one_identity_across_cameras() {
    let _g = serial();
    require_env();
    let dir = tempfile::tempdir().expect("tmp");
    // Two cameras cut from one street video, the second 3 s behind: the same
    // people walk through camera a, then camera b.
    let cam = vtest_camera(0, &[("a", 3.0), ("b", 0.0)]);
    let urls: Vec<_> = cam.urls();
    let node = Node::start(
        dir.path(),
        &[("a", urls[0].clone()), ("b", urls[1].clone())],
        "",
    );
    let sightings = node.wait_metric("vidar_records_written_total", 40.0, Duration::from_secs(90));
    assert!(
        sightings >= 40.0,
        "records written: {sightings}\n{}",
        node.log()
    );
    let committed = node.wait_metric(
        "vidar_store_records_committed_total",
        1.0,
        Duration::from_secs(10),
    );
    assert!(
        committed >= 1.0,
        "the writer's commits are exported: {committed}"
    );
    let health = http_get(node.metrics, "/healthz").unwrap_or_default();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let status = node.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    let reader = Reader::open(node_db(dir.path())).expect("db opens");
    let counts: std::collections::HashMap<_, _> =
        reader.counts().expect("counts").into_iter().collect();
    assert!(
        counts["sightings"] > 0 && counts["identities"] > 0 && counts["cameras"] == 2,
        "{counts:?}"
    );
    let seen = reader
        .identities_in_range(TimeRange::all(), 10_000)
        .expect("identities");
    let both: Vec<_> = seen.iter().filter(|s| s.cameras >= 2).collect();
    assert!(
        !both.is_empty(),
        "someone seen by a then b keeps one identity: {seen:?}"
    );
    // The trajectory of such a person spans both cameras, in time order.
    let id: IdentityId = both[0].identity;
    let traj = reader
        .trajectory(id, TimeRange::all(), 1000)
        .expect("trajectory");
    let cams: HashSet<_> = traj.iter().map(|s| s.value.camera.to_string()).collect();
    assert_eq!(cams.len(), 2, "{traj:?}");
    assert!(traj
        .windows(2)
        .all(|w| w[0].value.first_ms <= w[1].value.first_ms));
    assert!(traj
        .iter()
        .all(|s| !s.value.path.is_empty() && s.value.first_ms <= s.value.last_ms));
    // Two people on screen together get two identities: no identity holds
    // two different tracks that overlap in time on one camera, while people
    // with different identities do overlap (vtest.avi has crowds).
    let mut all = Vec::new();
    for s in &seen {
        for t in reader
            .trajectory(s.identity, TimeRange::all(), 10_000)
            .expect("trajectory")
        {
            all.push((s.identity, t.value));
        }
    }
    let overlap = |a: &vidar_store::Sighting, b: &vidar_store::Sighting| {
        a.camera == b.camera
            && a.track != b.track
            && a.first_ms < b.last_ms
            && b.first_ms < a.last_ms
    };
    let (mut shared, mut together) = (Vec::new(), 0);
    for (i, (ia, a)) in all.iter().enumerate() {
        for (ib, b) in &all[i + 1..] {
            if overlap(a, b) {
                if ia == ib {
                    shared.push((ia.0, a.camera.to_string(), a.track.0, b.track.0));
                } else {
                    together += 1;
                }
            }
        }
    }
    assert!(
        shared.is_empty(),
        "identities held by two tracks at once on one camera: {shared:?}"
    );
    assert!(
        together > 0,
        "no two identified people were ever on screen together"
    );
    // And the query command prints it.
    let out = Command::new(edge_bin())
        .args(["query", "--db"])
        .arg(node_db(dir.path()))
        .args(["trajectory", &id.0.to_string()])
        .output()
        .expect("query");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains(&format!("{} sightings of identity {}", traj.len(), id.0)),
        "{text}"
    );
}

fn node_db(dir: &Path) -> PathBuf {
    dir.join("edge.db")
}

#[test]
fn kill_9_loses_nothing_committed_and_duplicates_nothing() {
    let _g = serial();
    require_env();
    let dir = tempfile::tempdir().expect("tmp");
    let cam = vtest_camera(0, &[("a", 0.0)]);
    let node = Node::start(dir.path(), &[("a", cam.urls()[0].clone())], "");
    let node_id = NodeId::new("edge-t").expect("id");
    // Wait until a good number of records are committed, note them, kill -9.
    let start = Instant::now();
    let committed = loop {
        let n = Reader::open(&node.db)
            .ok()
            .and_then(|r| r.last_seq(&node_id).ok())
            .unwrap_or(0);
        if n >= 30 || start.elapsed() > Duration::from_secs(90) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        committed >= 30,
        "records committed before the kill: {committed}\n{}",
        node.log()
    );
    let before = Reader::open(&node.db)
        .expect("open")
        .records_after(&node_id, 0, 1_000_000)
        .expect("records");
    node.kill9();

    let reader =
        Reader::open(node_db(dir.path())).expect("the database opens cleanly after SIGKILL");
    let after = reader
        .records_after(&node_id, 0, 1_000_000)
        .expect("records");
    for r in &before {
        assert!(
            after.contains(r),
            "record {:?} committed before the kill is gone",
            r.key
        );
    }
    let keys: HashSet<_> = after.iter().map(|r| r.key.seq).collect();
    assert_eq!(keys.len(), after.len(), "no duplicates");
    let last = reader.last_seq(&node_id).expect("seq");
    drop(reader);

    // Restarted, the node continues the sequence without reusing a number.
    let node = Node::start(dir.path(), &[("a", cam.urls()[0].clone())], "");
    node.wait_metric("vidar_identities_total", 2.0, Duration::from_secs(60));
    node.wait_metric("vidar_records_written_total", 8.0, Duration::from_secs(60));
    // The gauges that tell a cache filling from a leak (`make soak` reads them).
    let gallery = node.metric("vidar_gallery_identities{").unwrap_or(0.0);
    assert!(gallery >= 1.0, "gallery identities {gallery}");
    let sqlite = node.metric("vidar_sqlite_memory_bytes{").unwrap_or(0.0);
    assert!(sqlite > 0.0, "SQLite heap {sqlite}");
    let log = node.log();
    assert!(node.terminate().success());
    let reader = Reader::open(node_db(dir.path())).expect("open");
    let all = reader
        .records_after(&node_id, 0, 1_000_000)
        .expect("records");
    let newer: Vec<_> = all.iter().filter(|r| !after.contains(r)).collect();
    assert!(!newer.is_empty());
    assert!(
        newer.iter().all(|r| r.key.seq > last),
        "new seqs continue after {last}"
    );
    // Identity numbers minted after the restart are new ones, never reused.
    let minted = |rs: &mut dyn Iterator<Item = &vidar_store::KeyedRecord>| -> HashSet<u64> {
        rs.filter_map(|r| match &r.record {
            vidar_store::Record::Identity(i) => Some(i.identity.0),
            _ => None,
        })
        .collect()
    };
    let old_ids = minted(&mut after.iter());
    let new_ids = minted(&mut newer.iter().copied());
    assert!(!old_ids.is_empty() && !new_ids.is_empty());
    assert!(
        log.contains("restored identities from the database"),
        "identities known before the kill are restored into the gallery:\n{log}"
    );
    assert!(
        old_ids.is_disjoint(&new_ids),
        "identity ids reused after restart: {:?}",
        old_ids.intersection(&new_ids).collect::<Vec<_>>()
    );
}

#[test]
fn a_dead_camera_does_not_stall_the_others_and_comes_back() {
    let _g = serial();
    require_env();
    let dir = tempfile::tempdir().expect("tmp");
    let steady = vtest_camera(0, &[("steady", 0.0)]);
    let flaky_bin = Path::new(edge_bin()).with_file_name("vidar-camera");
    assert!(
        flaky_bin.is_file(),
        "{} missing: build the workspace bins (make test does)",
        flaky_bin.display()
    );
    // The kernel picks its port; it comes back on the same one.
    let spawn_flaky = |port: u16| {
        let port = port.to_string();
        let mut c = Proc::spawn(
            dir.path(),
            "flaky",
            &flaky_bin,
            &[
                "--port",
                &port,
                "--mount",
                "flaky=synthetic:?width=320&height=240&fps=15",
            ],
        )
        .expect("camera");
        let ready = c
            .wait_ready(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        let port = ready.rtsp.expect("the camera announces its server").port();
        (c, port)
    };
    let (mut flaky, port) = spawn_flaky(0);
    let node = Node::start(
        dir.path(),
        &[
            ("steady", steady.urls()[0].clone()),
            ("flaky", format!("rtsp://127.0.0.1:{port}/flaky")),
        ],
        "",
    );
    let p_steady = "vidar_frames_analysed_total{node=\"edge-t\",camera=\"steady\"}";
    let p_flaky = "vidar_frames_total{node=\"edge-t\",camera=\"flaky\"}";
    assert!(
        node.wait_metric(p_flaky, 20.0, Duration::from_secs(60)) >= 20.0,
        "{}",
        node.log()
    );
    flaky.kill();
    std::thread::sleep(Duration::from_secs(1));
    let s0 = node.metric(p_steady).unwrap_or(0.0);
    std::thread::sleep(Duration::from_secs(5));
    let s1 = node.metric(p_steady).unwrap_or(0.0);
    assert!(
        s1 >= s0 + 10.0,
        "the steady camera kept being analysed while the other was down: {s0} -> {s1}"
    );
    let up = node
        .metric("vidar_stream_up{node=\"edge-t\",camera=\"flaky\"")
        .unwrap_or(1.0);
    assert_eq!(up, 0.0, "the dead camera is reported down");
    let f0 = node.metric(p_flaky).unwrap_or(0.0);
    let (mut flaky, _) = spawn_flaky(port);
    let f1 = node.wait_metric(p_flaky, f0 + 20.0, Duration::from_secs(30));
    assert!(
        f1 >= f0 + 20.0,
        "the camera's stream resumed: {f0} -> {f1}\n{}",
        node.log()
    );
    let reconnects = node
        .metric("vidar_reconnects_total{node=\"edge-t\",camera=\"flaky\"}")
        .unwrap_or(0.0);
    assert!(reconnects >= 1.0);
    assert!(node.terminate().success());
    flaky.kill();
}

fn run_expect_failure(config: &Path) -> String {
    let out = Command::new(edge_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run");
    assert!(!out.status.success(), "must refuse to start");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_config_missing_and_wrong_models_fail_at_start_with_clear_errors() {
    require_env();
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "node_id = \"e\"\ndetection_interval = 0\n[[cameras]]\ncamera = \"c\"\nsource = \"rtsp://\"\n").expect("write");
    let err = run_expect_failure(&cfg);
    assert!(
        err.contains("bad.toml")
            && err.contains("detection_interval")
            && err.contains("cameras[0]"),
        "{err}"
    );

    std::fs::write(&cfg, "node_id = \"e\"\n[[cameras]\n").expect("write");
    let err = run_expect_failure(&cfg);
    assert!(err.contains("bad.toml"), "{err}");

    // An empty model directory: the missing file is named.
    let empty = dir.path().join("models");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let base = format!(
        "node_id = \"e\"\nmetrics_addr = \"127.0.0.1:0\"\ndatabase = \"{}\"\n[models]\ndir = \"{}\"\n[[cameras]]\ncamera = \"c\"\nsource = \"synthetic:\"\n",
        dir.path().join("e.db").display(),
        empty.display()
    );
    std::fs::write(&cfg, &base).expect("write");
    let err = run_expect_failure(&cfg);
    assert!(
        err.contains("ssd_mobilenet_v2_person") && err.contains(&empty.display().to_string()),
        "{err}"
    );

    // A wrong model under the right name: refused, naming the file.
    let models = PathBuf::from(std::env::var_os("VIDAR_MODEL_DIR").expect("VIDAR_MODEL_DIR"));
    for entry in std::fs::read_dir(&models).expect("models") {
        let p = entry.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, empty.join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let raw = std::fs::read_dir(&empty)
        .expect("dir")
        .map(|e| e.expect("e").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n == "ssd_mobilenet_v2_person.onnx")
        })
        .expect("the default detector's file");
    std::fs::copy(empty.join("reid_mobilenetv2_deepsort.onnx"), &raw).expect("swap");
    let err = run_expect_failure(&cfg);
    assert!(
        err.contains(&raw.file_name().expect("n").to_string_lossy().to_string()),
        "{err}"
    );
}

/// Bucket counts of `vidar_capture_to_result_seconds` for `camera`, by `le`.
fn latency_buckets(node: &Node, camera: &str) -> Vec<(f64, f64)> {
    let body = http_get(node.metrics, "/metrics").unwrap_or_default();
    let prefix = format!(
        "vidar_capture_to_result_seconds_bucket{{node=\"edge-t\",camera=\"{camera}\",le=\""
    );
    body.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// Smallest bucket bound holding 99 % of the observations between two scrapes.
fn p99_between(a: &[(f64, f64)], b: &[(f64, f64)]) -> f64 {
    let total = b.last().map(|x| x.1).unwrap_or(0.0) - a.last().map(|x| x.1).unwrap_or(0.0);
    for ((le, cb), (_, ca)) in b.iter().zip(a) {
        if cb - ca >= 0.99 * total {
            return *le;
        }
    }
    f64::INFINITY
}

#[test]
fn a_detector_slower_than_the_cameras_drops_frames_and_latency_stays_flat() {
    let _g = serial();
    require_env();
    let dir = tempfile::tempdir().expect("tmp");
    // Two 30 fps cameras: more than this machine's detector can take.
    let cam = camera::serve(&CameraConfig {
        port: 0,
        mounts: ["a", "b"]
            .iter()
            .map(|n| Mount {
                name: (*n).into(),
                source: MountSource::Synthetic(vidar_pipeline::SceneSpec {
                    width: 640,
                    height: 360,
                    fps: 30,
                    ..Default::default()
                }),
                phase_s: None,
            })
            .collect(),
        ..Default::default()
    })
    .expect("camera");
    let urls = cam.urls();
    let node = Node::start(
        dir.path(),
        &[("a", urls[0].clone()), ("b", urls[1].clone())],
        "",
    );
    let frames = "vidar_frames_total{node=\"edge-t\",camera=\"a\"}";
    assert!(
        node.wait_metric(frames, 60.0, Duration::from_secs(60)) >= 60.0,
        "{}",
        node.log()
    );
    std::thread::sleep(Duration::from_secs(5));
    let first = latency_buckets(&node, "a");
    std::thread::sleep(Duration::from_secs(20));
    let middle = latency_buckets(&node, "a");
    std::thread::sleep(Duration::from_secs(20));
    let last = latency_buckets(&node, "a");
    let dropped = node
        .metric("vidar_frames_dropped_total{node=\"edge-t\",camera=\"a\"}")
        .unwrap_or(0.0);
    let depth = node
        .metric("vidar_queue_depth{node=\"edge-t\",camera=\"a\"}")
        .unwrap_or(99.0);
    let analysed = node
        .metric("vidar_frames_analysed_total{node=\"edge-t\",camera=\"a\"}")
        .unwrap_or(0.0);
    let decoded = node.metric(frames).unwrap_or(0.0);
    assert!(node.terminate().success());
    assert!(
        dropped > 0.0,
        "frames the detector could not take are dropped and counted"
    );
    let capacity = vidar_pipeline::queue::DEFAULT_QUEUE_CAPACITY as f64;
    assert!(
        depth <= capacity,
        "queue depth bounded by its capacity ({capacity}): {depth}"
    );
    // Ingest counters are published once a second while the analysed count is
    // live: allow one second of frames (30) plus the queue either way. A
    // frame lost silently would show as hundreds missing over this run.
    assert!(
        (analysed + dropped - decoded).abs() <= 33.0 + capacity,
        "every decoded frame is analysed or counted as dropped: {analysed} analysed + {dropped} dropped vs {decoded} decoded"
    );
    let (p1, p2) = (p99_between(&first, &middle), p99_between(&middle, &last));
    assert!(
        p1 <= 1.0 && p2 <= 1.0,
        "p99 capture-to-result stays under 1 s: {p1} then {p2}"
    );
    assert!(
        p2 <= p1 * 2.5 + 0.05,
        "latency does not build up: p99 {p1} s then {p2} s"
    );
}

/// A node with a bundle joins through the master's router and waits for it
/// (zenoh clients open only once connected); it says so, and SIGTERM while
/// it waits stops it cleanly (issue 16).
#[test]
fn a_node_waiting_for_its_master_says_so_and_stops_on_sigterm() {
    require_env();
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let ca = dir.path().join("ca");
    vidar_link::pki::init_ca(&ca, "waiting", 30).expect("ca");
    let id = vidar_protocol::NodeId::new("edge-t").expect("id");
    let bundle = vidar_link::pki::enroll(&ca, &id, 30).expect("enroll");
    // Nobody listens on this port: the master is down.
    let extra = format!(
        "[cluster]\nsite = \"waiting\"\nconnect = [\"tls/127.0.0.1:{}\"]\nbundle = \"{}\"\n",
        unused_port(),
        bundle.display()
    );
    let node = Node::spawn(dir.path(), &[], &extra);
    let start = Instant::now();
    while !node.log().contains("waiting for the master's router") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no word of waiting:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = node.log();
    let status = node.terminate();
    assert!(
        status.success(),
        "clean exit on SIGTERM while waiting: {status:?}\n{log}"
    );
}
