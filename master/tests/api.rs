//! The HTTP API on a real global database written through `vidar_store`, with
//! no edge connected: queries, 400s on malformed parameters, metrics.

mod common;

use std::time::Duration;

use common::*;
use vidar_master::Master;
use vidar_protocol::{IdentityId, UnixMs};
use vidar_store::{IdentityMerge, Record};

fn seeded_master() -> (tempfile::TempDir, Master) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = seed_database(
        dir.path(),
        vec![
            sighting(1, "c1", 1_000, 2_000),
            sighting(1, "c2", 5_000, 6_000),
            sighting(2, "c1", 3_000, 3_500),
            sighting(3, "c2", 10_000, 11_000),
            identity(1, "c1", 1_000),
            identity(2, "c1", 3_000),
            snapshot(1, "c1", 1_500),
            // 3 (merged into 1) on c2: the snapshot of 1's sighting on c2 at 10 s.
            Record::Snapshot(vidar_store::Snapshot {
                identity: IdentityId(3),
                camera: cam("c2"),
                t_ms: UnixMs(10_200),
                jpeg: vec![0xFF, 0xD8, 0xFF, 0xE0, 9, 9, 9],
            }),
            // 3 was merged into 1 (a master record in real life; the key's node
            // does not matter to queries).
            Record::Merge(IdentityMerge {
                from: IdentityId(3),
                into: IdentityId(1),
                decided_ms: UnixMs(12_000),
            }),
        ],
    );
    let cfg = config(&db, &unique_site(), "");
    let m = Master::start(&cfg).expect("master starts");
    (dir, m)
}

#[test]
fn queries_read_the_global_database() {
    let (dir, m) = seeded_master();
    let a = m.http_addr();

    let (code, v) = get_json(a, "/api/trajectory?identity=1&from=0&to=100000");
    assert_eq!(code, 200, "{v}");
    let s = v["sightings"].as_array().expect("sightings");
    // 1's two sightings and 3's (merged into 1), in time order.
    let got: Vec<(i64, &str)> = s
        .iter()
        .map(|x| {
            (
                x["first_ms"].as_i64().unwrap_or(-1),
                x["camera"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(got, vec![(1_000, "c1"), (5_000, "c2"), (10_000, "c2")]);
    assert_eq!(s[0]["node"], "edge-a");
    assert_eq!(s[0]["synced"], true);
    assert_eq!(v["edges_unanswered"].as_array().map(|x| x.len()), Some(0));

    // p-prefixed ids and a time window.
    let (code, v) = get_json(a, "/api/trajectory?identity=p1&from=4000&to=7000");
    assert_eq!(code, 200);
    assert_eq!(v["sightings"].as_array().map(|x| x.len()), Some(1));

    let (code, v) = get_json(a, "/api/sightings?camera=c1");
    assert_eq!(code, 200);
    let ids: Vec<u64> = v["sightings"]
        .as_array()
        .expect("sightings")
        .iter()
        .filter_map(|x| x["identity"].as_str()?.parse().ok())
        .collect();
    assert_eq!(ids, vec![1, 2]);

    let (code, v) = get_json(a, "/api/sightings?camera=c1&limit=1");
    assert_eq!(code, 200);
    assert_eq!(v["sightings"].as_array().map(|x| x.len()), Some(1));

    let (code, v) = get_json(a, "/api/identities?from=0&to=4000");
    assert_eq!(code, 200);
    let ids: Vec<u64> = v["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .filter_map(|x| x["identity"].as_str()?.parse().ok())
        .collect();
    assert_eq!(ids, vec![1, 2]);

    let (code, body) = http(a, "GET", "/api/snapshot/1");
    assert_eq!(code, 200);
    assert!(body.starts_with(&[0xFF, 0xD8, 0xFF]));
    assert_eq!(body.last(), Some(&3), "the oldest without camera and time");
    // A sighting's own thumbnail: its camera, closest in time (following merges).
    let (code, body) = http(a, "GET", "/api/snapshot/1?camera=c2&t=10000");
    assert_eq!(code, 200);
    assert_eq!(body.last(), Some(&9));
    let (code, body) = http(a, "GET", "/api/snapshot/1?camera=c1&t=10000");
    assert_eq!((code, body.last()), (200, Some(&3)));
    let (code, _) = http(a, "GET", "/api/snapshot/1?t=soon");
    assert_eq!(code, 400);
    let (code, _) = http(a, "GET", "/api/snapshot/99");
    assert_eq!(code, 404);

    let (code, v) = get_json(a, "/api/plan");
    assert_eq!(code, 200);
    assert!(v["version"].is_null(), "no node, no plan: {v}");
    assert_eq!(v["streams"].as_array().map(|x| x.len()), Some(0));
    let (code, v) = get_json(a, "/api/nodes");
    assert_eq!(code, 200);
    assert_eq!(v["nodes"].as_array().map(|x| x.len()), Some(0));
    // The model registry: nothing deployed, then a version promoted as
    // `vidar-master model` would (the registry beside the database).
    let (code, v) = get_json(a, "/api/models");
    assert_eq!(code, 200);
    assert!(v["in_force"].is_null(), "{v}");
    let models = dir.path().join("models");
    let weights = dir.path().join("w.onnx");
    std::fs::write(&weights, b"not really a model").expect("weights");
    let mut r = vidar_master::models::Registry::load(&models).expect("registry");
    r.add(
        &models,
        &weights,
        "osnet-x0-25-msmt17-combineall",
        "site-1",
        None,
        Default::default(),
    )
    .expect("add");
    r.promote("site-1", None).expect("promote");
    r.save(&models).expect("save");
    let (code, v) = get_json(a, "/api/models");
    assert_eq!(code, 200);
    assert_eq!(v["in_force"]["version"], "site-1", "{v}");
    assert_eq!(v["versions"].as_array().map(|x| x.len()), Some(1));
    let (code, v) = get_json(a, "/healthz");
    assert_eq!((code, v["status"].as_str()), (200, Some("ok")));
    let (code, _) = http(a, "POST", "/api/sync");
    assert_eq!(code, 202);

    let (code, body) = http(a, "GET", "/metrics");
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body);
    for name in [
        "vidar_master_nodes_live 0",
        "vidar_master_plan_version 0",
        "vidar_master_replans_total",
        "vidar_master_sync_records_per_second",
        "vidar_master_refused_messages_total 0",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    m.shutdown().expect("clean shutdown");
}

#[test]
fn malformed_parameters_are_400_naming_the_parameter() {
    let (_dir, m) = seeded_master();
    let a = m.http_addr();
    let huge = "99999999999999999999999";
    for (path, param) in [
        ("/api/trajectory?identity=abc", "identity"),
        ("/api/trajectory", "identity"),
        ("/api/trajectory?identity=-1", "identity"),
        (
            &format!("/api/trajectory?identity={huge}") as &str,
            "identity",
        ),
        ("/api/trajectory?identity=1&from=-x", "from"),
        ("/api/trajectory?identity=1&from=-5", "from"),
        (&format!("/api/trajectory?identity=1&to={huge}"), "to"),
        ("/api/trajectory?identity=1&from=10&to=5", "to"),
        ("/api/trajectory?identity=1&limit=0", "limit"),
        ("/api/trajectory?identity=1&limit=lots", "limit"),
        ("/api/sightings?camera=c1'%20OR%20'1'='1", "camera"),
        (
            "/api/sightings?camera=c1%3B%20DROP%20TABLE%20sightings%3B--",
            "camera",
        ),
        ("/api/sightings?camera=", "camera"),
        ("/api/sightings", "camera"),
        ("/api/identities?from=1e3", "from"),
        ("/api/snapshot/abc", "identity"),
    ] {
        let (code, v) = get_json(a, path);
        assert_eq!(code, 400, "{path}: {v}");
        assert_eq!(v["parameter"], param, "{path}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.starts_with(param)),
            "{path}: {v}"
        );
    }
    let (code, v) = get_json(a, "/api/sightings?camera=c1&color=red");
    assert_eq!(code, 400);
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("color")),
        "{v}"
    );
    // The injection attempts left the data alone.
    let (code, v) = get_json(a, "/api/sightings?camera=c1");
    assert_eq!(code, 200);
    assert_eq!(v["sightings"].as_array().map(|x| x.len()), Some(2));
    std::thread::sleep(Duration::from_millis(10));
    m.shutdown().expect("clean shutdown");
}
