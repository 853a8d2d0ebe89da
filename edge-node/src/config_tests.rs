//! Tests of `config`.
use super::*;

#[test]
fn minimal_config_gets_defaults() {
    let c = EdgeConfig::parse(
        "node_id = \"edge-1\"\n[[cameras]]\ncamera = \"c1\"\nsource = \"rtsp://127.0.0.1:8554/cam1\"\n",
        "test.toml",
    )
    .expect("valid");
    assert_eq!(c.detection_interval, 1);
    assert_eq!(c.database, PathBuf::from("vidar-edge.db"));
    assert_eq!(c.cameras.len(), 1);
}

/// Depth 2 where inference leaves a core (or runs on a GPU), 1 where
/// ONNX Runtime spreads each run over every core; an explicit depth wins.
#[test]
fn the_automatic_inference_depth_follows_what_inference_leaves_free() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = |extra: &str| {
        EdgeConfig::parse(
            &format!(
                "node_id = \"edge-1\"\n{extra}\n[[cameras]]\ncamera = \"c1\"\nsource = \"rtsp://127.0.0.1:8554/c\"\n"
            ),
            "test.toml",
        )
        .expect("valid")
    };
    assert_eq!(
        config("[models.runtime]\nintra_threads = 0").detector_depth(),
        1,
        "intra_threads 0: every core"
    );
    assert_eq!(
        config("").models.runtime.intra_threads,
        1,
        "one intra-op thread by default"
    );
    let one = config("[models.runtime]\nintra_threads = 1");
    assert_eq!(one.detector_threads(), 1, "one camera, one thread");
    assert_eq!(one.detector_depth(), if cores > 1 { 2 } else { 1 });
    let all = config(&format!("[models.runtime]\nintra_threads = {cores}"));
    assert_eq!(all.detector_depth(), 1, "{cores} intra threads");
    let gpu = config("[[models.runtime.providers]]\nkind = \"cuda\"");
    assert_eq!(gpu.detector_depth(), 2, "a GPU runs the model");
    assert_eq!(config("inference_depth = 1").detector_depth(), 1);
    assert_eq!(config("inference_depth = 2").detector_depth(), 2);
    let err = EdgeConfig::parse(
        "node_id = \"e\"\ninference_depth = 3\n[[cameras]]\ncamera = \"c1\"\nsource = \"x.mp4\"\n",
        "bad.toml",
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("inference_depth: 3 must be 0 (automatic), 1 or 2"),
        "{err}"
    );
}

#[test]
fn reports_every_problem_with_its_key() {
    let err = EdgeConfig::parse(
        "node_id = \"edge-1\"\ndetection_interval = 0\nmetrics_addr = \"nowhere\"\n\
         [[cameras]]\ncamera = \"c1\"\nsource = \"rtsp://\"\n\
         [[cameras]]\ncamera = \"c1\"\nsource = \"x.mp4\"\nqueue_capacity = 0\n",
        "bad.toml",
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    for needle in [
        "bad.toml",
        "detection_interval",
        "metrics_addr",
        "cameras[0].source: ",
        "cameras[1].camera: c1 is used twice",
        "cameras[1].queue_capacity: 0 must be in 1..=256",
        "used twice",
        "queue_capacity",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

/// The config contract: a nested table's problems carry its full key,
/// and the node refuses to build from a config that has any.
#[test]
fn nested_tables_report_full_keys() {
    let c: EdgeConfig = toml::from_str(
        "node_id = \"e\"\n[cluster]\nsite = \"a/b\"\nsend_buffer_bytes = 100\n\
         [gallery]\nmatch_threshold = 2.0\n[tracker]\nmin_hits = 0\n\
         [detector]\nnms_iou = -1.0\n[embedder]\nmax_batch = 0\n[motion]\nthreshold = 0\n\
         [[models.runtime.providers]]\nkind = \"cuda\"\ndevice_id = -1\n\
         [sharing]\njpeg_encode_cost = -1.0\njpeg_decode_cost = nan\n",
    )
    .expect("parses");
    let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
    for key in [
        "cluster.site",
        "cluster.send_buffer_bytes",
        "sharing.jpeg_encode_cost",
        "sharing.jpeg_decode_cost",
        "detector.nms_iou",
        "embedder.max_batch",
        "motion.threshold",
        "gallery.match_threshold",
        "tracker.min_hits",
        "models.runtime.providers[0].device_id",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
    let err = c
        .build(&vidar_runtime::Shutdown::new())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("gallery.match_threshold: "), "{err}");
}

#[test]
fn unknown_keys_and_bad_ids_are_refused() {
    let err = EdgeConfig::parse("node_id = \"e\"\ndetction_interval = 2\n", "a.toml")
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("detction_interval")));
    let err = EdgeConfig::parse("node_id = \"a/b\"\n", "b.toml")
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("'/'")));
}

#[test]
fn the_detector_resize_filter_is_chosen_by_name_and_bad_names_are_refused() {
    let cam = "[[cameras]]\ncamera = \"c\"\nsource = \"file:///x.mp4\"\n";
    let parse = |detector: &str| {
        EdgeConfig::parse(
            &format!("node_id = \"e\"\n{cam}[detector]\n{detector}"),
            "e.toml",
        )
    };
    let default = parse("").expect("valid");
    assert_eq!(default.detector.resize, vidar_models::Filter::Antialiased);
    let sampled = parse("resize = \"sampled\"\n").expect("valid");
    assert_eq!(sampled.detector.resize, vidar_models::Filter::Sampled);
    let err = parse("resize = \"nearest\"\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("nearest") && err.contains("sampled"), "{err}");
}

#[test]
fn a_config_from_a_newer_release_is_refused_by_name() {
    let cam = "[[cameras]]\ncamera = \"c\"\nsource = \"file:///x.mp4\"\n";
    let ok = EdgeConfig::parse(
        &format!("config_version = 1\nnode_id = \"e\"\n{cam}"),
        "e.toml",
    );
    assert_eq!(ok.expect("valid").config_version, 1);
    let err = EdgeConfig::parse(
        &format!("config_version = 9\nnode_id = \"e\"\n{cam}"),
        "e.toml",
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("config_version: 9 is newer"), "{err}");
}

#[test]
fn planned_cameras_get_this_nodes_credentials_never_the_plans() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("cameras.toml");
    std::fs::write(
        &file,
        "[[credentials]]\ncamera = \"dock\"\nusername = \"ops\"\npassword = \"d@ck pw\"\n",
    )
    .expect("write");
    let text = format!(
        "node_id = \"e1\"\n[cluster]\nsite = \"s\"\nlisten = [\"tcp/127.0.0.1:0\"]\n[sharing]\ncredentials_file = {:?}\n\
         [[sharing.credentials]]\ncamera = \"gate\"\nusername = \"admin\"\npassword = \"pa@ss\"\n",
        file.display().to_string()
    );
    let c = EdgeConfig::parse(&text, "t.toml").expect("valid");
    let cam = |n: &str| vidar_protocol::CameraId::new(n).expect("id");
    let s = &c.sharing;
    assert_eq!(
        s.source_for(&cam("gate"), "rtsp://10.0.0.5/s1")
            .expect("inline"),
        "rtsp://admin:pa%40ss@10.0.0.5/s1"
    );
    assert_eq!(
        s.source_for(&cam("dock"), "rtsp://10.0.0.6/s1")
            .expect("file"),
        "rtsp://ops:d%40ck%20pw@10.0.0.6/s1"
    );
    assert_eq!(
        s.source_for(&cam("yard"), "rtsp://10.0.0.7/s1")
            .expect("none"),
        "rtsp://10.0.0.7/s1"
    );
    assert!(
        !format!("{:?}", s.credentials).contains("pa@ss"),
        "no password in Debug"
    );
    std::fs::remove_file(&file).expect("rm");
    let e = s
        .source_for(&cam("dock"), "rtsp://10.0.0.6/s1")
        .expect_err("file gone");
    assert!(format!("{e:#}").contains("credentials_file"), "{e:#}");
}
