//! Tests of the master's configuration.
use super::*;

fn parse(text: &str) -> Result<MasterConfig, ConfigError> {
    MasterConfig::parse(text, Path::new("master.toml"))
}

#[test]
fn a_config_from_a_newer_release_is_refused_by_name() {
    let ok = parse("config_version = 1\ndatabase = \"/tmp/x/g.db\"\nauth = \"none\"\n");
    assert_eq!(ok.expect("valid").config_version, 1);
    let err = parse("config_version = 2\ndatabase = \"/tmp/x/g.db\"\nauth = \"none\"\n")
        .expect_err("newer")
        .to_string();
    assert!(err.contains("config_version: 2 is newer"), "{err}");
}

#[test]
fn minimal_config_takes_defaults() {
    let c = parse("database = \"/tmp/x/global.db\"\nauth = \"none\"\n").expect("valid");
    assert_eq!(c.master_id, "master");
    assert_eq!(c.http_addr, "127.0.0.1:8080");
    assert_eq!(c.sync_every_s, 10.0);
    assert_eq!(c.sync_batch, 5000);
    assert_eq!(c.plan_every_s, 30.0);
    assert_eq!(
        c.plan_algorithm,
        vidar_scheduler::jstsh::StreamAlgorithm::Jstsh
    );
    assert_eq!(c.node_timeout_s, 5.0);
    assert_eq!(c.merge_threshold, 0.72);
    assert!(c.cameras.is_empty());
    assert_eq!(c.cluster, LinkSettings::default());
}

#[test]
fn valid_full_config() {
    let c = parse(
        r#"
        master_id = "m1"
        database = "/var/lib/vidar/global.db"
        http_addr = "0.0.0.0:9000"
        sync_every_s = 2.5
        sync_batch = 100
        plan_every_s = 10
        plan_algorithm = "nmwo"
        node_timeout_s = 3
        merge_threshold = 0.75

        [[tokens]]
        name = "ci"
        role = "viewer"
        token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

        [cluster]
        site = "plant-3"
        mode = "router"
        listen = ["tcp/0.0.0.0:7447"]
        insecure_plaintext = true

        [[cameras]]
        camera = "lobby"
        source = "rtsp://10.0.0.5/stream1"

        [[cameras]]
        camera = "dock"
        source = "rtsp://10.0.0.6/stream1"
        fps = 15
        persons = 4
        width = 1920
        height = 1080
        node = "edge-2"
        "#,
    )
    .expect("valid");
    assert_eq!(
        c.plan_algorithm,
        vidar_scheduler::jstsh::StreamAlgorithm::Nmwo
    );
    let cams = c.site_cameras().expect("cameras");
    assert_eq!(cams.len(), 2);
    assert_eq!(cams[0].fps, 10.0);
    assert_eq!(cams[0].persons, 2.0);
    assert_eq!((cams[0].width, cams[0].height), (1280, 720));
    assert_eq!(cams[0].pinned, None);
    assert_eq!(cams[1].pinned.as_ref().map(|n| n.as_str()), Some("edge-2"));
    assert_eq!(c.master_node().map(|n| n.to_string()), Ok("m1".into()));
}

#[test]
fn every_problem_is_listed_with_file_and_key() {
    let err = parse(
        r#"
        master_id = "bad id"
        database = "/tmp/g.db"
        http_addr = "nowhere"
        sync_every_s = 0
        sync_batch = 0
        plan_every_s = -1
        plan_algorithm = "exact"
        node_timeout_s = inf
        merge_threshold = 1.5

        [cluster]
        site = "a/b"
        connect = ["nonsense"]

        [[cameras]]
        camera = "cam 1"
        source = ""
        fps = 0
        persons = -1
        width = 0
        node = "x/y"

        [[cameras]]
        camera = "c2"
        source = "rtsp://h/s"

        [[cameras]]
        camera = "c2"
        source = "no-scheme"
        "#,
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    for needle in [
        "master.toml: invalid configuration",
        "master_id:",
        "http_addr:",
        "sync_every_s:",
        "sync_batch:",
        "plan_every_s:",
        "plan_algorithm: exact is exponential",
        "node_timeout_s:",
        "merge_threshold:",
        "cluster.site:",
        "cluster.connect[0]:",
        "cameras[0].camera:",
        "cameras[0].source: empty",
        "cameras[0].fps:",
        "cameras[0].persons:",
        "cameras[0].width:",
        "cameras[0].node:",
        "cameras[2].camera: \"c2\" is listed more than once",
        "cameras[2].source:",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("cameras[1]"), "{err}");
}

#[test]
fn unknown_keys_and_missing_database_are_refused() {
    let err = parse("database = \"/tmp/g.db\"\nsync_evry_s = 3\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("master.toml") && err.contains("sync_evry_s"),
        "{err}"
    );
    let err = parse("[[cameras]]\ncamera = \"a\"\nsource = \"rtsp://x\"\nfsp = 3\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("fsp"), "{err}");
    let err = parse("master_id = \"m\"\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("database"), "{err}");
    let err = MasterConfig::load(Path::new("/nonexistent/vidar/master.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("/nonexistent/vidar/master.toml"), "{err}");
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("master.example.toml");
    let text = std::fs::read_to_string(&path).expect("example config");
    let c = MasterConfig::parse(&text, &path).expect("the example is valid");
    assert_eq!(c.cameras.len(), 2);
}

#[test]
fn bad_training_settings_are_named_and_the_defaults_are_valid() {
    let c = parse("database = \"/tmp/x/g.db\"\nauth = \"none\"\n").expect("valid");
    assert_eq!(c.training, crate::training::TrainingConfig::default());
    let err = parse(
        "database = \"/tmp/x/g.db\"\nauth = \"none\"\n[training]\ncuts = [0, 131]\nbatches = 0\n\
         ids = 1\nlr = 2.0\nmargin = -1\nbandwidth_mbit_s = 0\nstep_timeout_s = 0\nprofile_batch = 0\n\
         algorithm = \"edgesplit_fix\"\n",
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    for key in [
        "training.cuts:",
        "training.batches:",
        "training.ids:",
        "training.lr:",
        "training.margin:",
        "training.bandwidth_mbit_s:",
        "training.step_timeout_s:",
        "training.profile_batch:",
    ] {
        assert!(err.contains(key), "missing {key:?} in:\n{err}");
    }
    let e =
        parse("database = \"/tmp/x/g.db\"\nauth = \"none\"\n[training]\nalgorithm = \"best\"\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
    assert!(e.contains("algorithm") && e.contains("`best`"), "{e}");
}
