//! End to end in headless Chromium (chromedriver): a real master with users, a
//! floor plan and a global database holding one person seen by two cameras,
//! and a fake edge publishing camera tiles over zenoh. A wrong password is
//! refused; after logging in the tiles appear and update; clicking the person
//! in a tile gives their trajectory (two cameras); the CSV export holds it; the
//! cluster view shows the plan; a viewer cannot submit a job, an admin can,
//! and the cluster view shows where its stages run; an admin asks for split
//! training rounds from the page and sees why they stopped; after logging out the
//! API refuses the browser.
//!
//! Screenshots go to the test's temp dir, and to `docs/screenshots/` when
//! `VIDAR_SCREENSHOTS=1`. Skipped (with a message) when chromedriver or
//! chromium is not installed.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_config::Config;

use common::webdriver::{Driver, Session};
use common::*;
use serde_json::json;
use vidar_link::{LinkSettings, Mode};
use vidar_master::Master;
use vidar_protocol::messages::{CameraTile, NodeStatus, QueryReply, SyncBatch, TileBox};
use vidar_protocol::{wire, BBox, IdentityId, Keys, NodeId, StreamState, TrackId, UnixMs};
use vidar_store::{BoxPoint, Record, Sighting, Snapshot, WriterConfig};
use zenoh::Wait;

const WAIT: Duration = Duration::from_secs(15);

/// A job on the lobby camera: detect, then record.
const JOB: &str =
    "id = \"faces\"\n[[stage]]\nname = \"cam\"\nkind = \"source\"\ncamera = \"lobby\"\n\
    [[stage]]\nname = \"det\"\nkind = \"detect\"\ninput = \"cam\"\n\
    [[stage]]\nname = \"out\"\nkind = \"sink\"\nsink = \"records\"\ninput = \"det\"\n";
/// Identities as nodes mint them: the node's prefix (0xb34e) above the
/// sequence number, far above 2^53, so the page must keep them exact.
const P1: u64 = (0xb34e << 48) | 1;
const P2: u64 = (0xb34e << 48) | 2;
const TILE_W: u32 = 320;
const TILE_H: u32 = 180;

fn seen(identity: u64, camera: &str, first_ms: i64, last_ms: i64) -> Record {
    Record::Sighting(Sighting {
        identity: IdentityId(identity),
        camera: cam(camera),
        track: TrackId(identity),
        first_ms: UnixMs(first_ms),
        last_ms: UnixMs(last_ms),
        path: vec![BoxPoint {
            t_ms: UnixMs(first_ms),
            bbox: BBox {
                x: 130.0,
                y: 40.0,
                w: 60.0,
                h: 130.0,
            },
        }],
    })
}

/// The global database: p1 in the lobby then at the dock, p2 in the lobby.
fn fill_database(db: &Path, now: i64) {
    let w = WriterConfig::new(db, node("edge-1"))
        .build(&())
        .expect("writer");
    let min = 60_000;
    for r in [
        seen(P1, "lobby", now - 9 * min, now - 8 * min),
        seen(P2, "lobby", now - 7 * min, now - 6 * min),
        seen(P1, "dock", now - 5 * min, now - 4 * min),
        seen(P1, "lobby", now - 2 * min, now - min),
        Record::Snapshot(Snapshot {
            identity: IdentityId(P1),
            camera: cam("lobby"),
            t_ms: UnixMs(now - 9 * min),
            jpeg: jpeg(64, 128, (16, 8, 32, 112), 200),
        }),
    ] {
        w.write(r).expect("write");
    }
    w.shutdown().expect("shutdown");
}

/// A floor plan: two rooms and a corridor.
fn floor_plan(path: &Path) {
    let img = image::RgbImage::from_fn(600, 260, |x, y| {
        let wall = x < 4 || y < 4 || x >= 596 || y >= 256 || (x == 300 && !(100..160).contains(&y));
        if wall {
            image::Rgb([60, 70, 90])
        } else if x < 300 {
            image::Rgb([236, 241, 248])
        } else {
            image::Rgb([244, 240, 230])
        }
    });
    img.save(path).expect("floor plan PNG");
}

/// A fake node's status at `busy`; edge-1 reports 5 records written, as its
/// fake sync queryable says.
fn busy_status(node: &NodeId, busy: f64) -> NodeStatus {
    let mut s = status_of(node, if node.as_str() == "edge-1" { 5 } else { 0 });
    s.load.detect_busy = busy;
    s.load.reid_busy = busy / 2.0;
    s
}

/// Two edge nodes in one zenoh session: alive, reporting status, answering
/// sync (nothing new) and queries (nothing unsynced), and publishing a tile per
/// camera every 300 ms until `stop`.
fn fake_edge(site: &str, zenoh: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (site, zenoh) = (site.to_string(), zenoh.to_string());
    std::thread::spawn(move || {
        let edge = LinkSettings {
            site: site.clone(),
            connect: vec![zenoh],
            ..LinkSettings::default()
        }
        .open_session(Mode::Peer)
        .expect("edge session");
        let keys = Keys::new(&site).expect("keys");
        let nodes = [node("edge-1"), node("edge-2")];
        let mut held = Vec::new();
        for n in &nodes {
            let token = edge
                .liveliness()
                .declare_token(keys.node_alive(n))
                .wait()
                .expect("liveliness token");
            let who = n.clone();
            let sync = edge
                .declare_queryable(keys.sync(n))
                .callback(move |q| {
                    let batch = SyncBatch {
                        node: who.clone(),
                        records: Vec::new(),
                        last_seq: if who.as_str() == "edge-1" { 5 } else { 0 },
                        more: false,
                    };
                    let bytes = wire::encode(&batch).expect("encode");
                    let _ = q.reply(q.key_expr().clone(), bytes).wait();
                })
                .wait()
                .expect("sync queryable");
            let query = edge
                .declare_queryable(keys.query(n))
                .callback(move |q| {
                    let reply = QueryReply {
                        records: Vec::new(),
                    };
                    let bytes = wire::encode(&reply).expect("encode");
                    let _ = q.reply(q.key_expr().clone(), bytes).wait();
                })
                .wait()
                .expect("query queryable");
            held.push((token, sync, query));
        }
        // The person stands in the middle of the lobby's frame, so clicking
        // the middle of the tile hits them.
        let frames = [
            (
                "lobby",
                jpeg(TILE_W, TILE_H, (130, 40, 60, 130), 150),
                vec![(130.0, 40.0, 60.0, 130.0, P1)],
            ),
            (
                "dock",
                jpeg(TILE_W, TILE_H, (30, 60, 40, 100), 110),
                vec![(30.0, 60.0, 40.0, 100.0, P2)],
            ),
        ];
        while !stop.load(Ordering::Relaxed) {
            for (i, n) in nodes.iter().enumerate() {
                let status = busy_status(n, 0.3 + 0.2 * i as f64);
                let _ = edge
                    .put(keys.status(n), wire::encode(&status).expect("encode"))
                    .wait();
            }
            for (camera, jpeg, boxes) in &frames {
                let tile = CameraTile {
                    camera: cam(camera),
                    node: node("edge-1"),
                    captured_ms: UnixMs::now(),
                    state: StreamState::Streaming,
                    fps: 10.0,
                    dropped: 2,
                    width: TILE_W,
                    height: TILE_H,
                    jpeg: jpeg.clone(),
                    boxes: boxes
                        .iter()
                        .map(|&(x, y, w, h, id)| TileBox {
                            bbox: BBox { x, y, w, h },
                            track: TrackId(id & 0xff),
                            identity: Some(IdentityId(id)),
                        })
                        .collect(),
                };
                let key = keys.tile(&node("edge-1"), &cam(camera));
                let _ = edge
                    .put(key, wire::encode(&tile).expect("encode tile"))
                    .wait();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        drop(held);
        let _ = edge.close().wait();
    })
}

struct Shots {
    dirs: Vec<PathBuf>,
}

impl Shots {
    fn save(&self, b: &Session, name: &str) {
        let png = b.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        for d in &self.dirs {
            std::fs::create_dir_all(d).expect("screenshot dir");
            std::fs::write(d.join(format!("{name}.png")), &png).expect("write screenshot");
        }
    }
}

#[test]
fn operator_logs_in_sees_tiles_and_follows_a_person() {
    let started = Instant::now();
    let Some(driver) = Driver::start() else {
        // `make test` installs both (deploy/setup.sh), so there this is a
        // failure; a developer without them may opt out explicitly.
        assert!(
            std::env::var_os("VIDAR_SKIP_BROWSER").is_some(),
            "chromedriver or chromium not installed: run deploy/setup.sh (or set VIDAR_SKIP_BROWSER=1 to skip this test)"
        );
        eprintln!("SKIPPED (VIDAR_SKIP_BROWSER): chromedriver or chromium not installed");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("global.db");
    let now = UnixMs::now().ms();
    fill_database(&db, now);
    let plan = dir.path().join("floor.png");
    floor_plan(&plan);
    let site = unique_site();
    let extra = format!(
        "{users}\n[floor_plan]\nimage = {plan:?}\n\
         [[floor_plan.cameras]]\ncamera = \"lobby\"\nx = 150\ny = 130\n\
         [[floor_plan.cameras]]\ncamera = \"dock\"\nx = 450\ny = 130\n\
         [[cameras]]\ncamera = \"lobby\"\nsource = \"rtsp://10.0.0.5/lobby\"\n\
         [[cameras]]\ncamera = \"dock\"\nsource = \"rtsp://10.0.0.6/dock\"\n",
        users = users_toml(),
        plan = plan.display().to_string(),
    );
    let master = Master::start(&config(&db, &site, &extra)).expect("master starts");
    let base = format!("http://{}", master.http_addr());
    let stop = Arc::new(AtomicBool::new(false));
    let edge = fake_edge(&site, &zenoh_endpoint(&master), stop.clone());
    let mut shots = Shots {
        dirs: vec![dir.path().join("screenshots")],
    };
    if std::env::var("VIDAR_SCREENSHOTS").as_deref() == Ok("1") {
        shots
            .dirs
            .push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"));
    }

    let b = driver.session(1280, 860);
    // Not logged in: the page sends us to the login form.
    b.goto(&format!("{base}/"));
    assert!(b.url().ends_with("/login"), "{}", b.url());
    shots.save(&b, "login");

    // A wrong password is refused.
    let user = b.wait_find("#user", WAIT);
    b.send_keys(&user, "ann");
    b.send_keys(&b.wait_find("#password", WAIT), "not-her-password");
    b.click(&b.wait_find("#submit", WAIT));
    let err = b.wait_find("#login-error", WAIT);
    let shown = b.text(&err);
    assert!(shown.contains("Wrong user name or password"), "{shown}");
    assert!(b.url().ends_with("/login"), "{}", b.url());
    let r = b.execute_async(
        "fetch('/api/tiles').then(r => arguments[0](r.status))",
        json!([]),
    );
    assert_eq!(r, json!(401), "refused login leaves no session");

    // The right one logs in.
    let user = b.wait_find("#user", WAIT);
    b.clear(&user);
    b.send_keys(&user, "ann");
    b.send_keys(&b.wait_find("#password", WAIT), "ann-pw");
    b.click(&b.wait_find("#submit", WAIT));
    b.wait_script("return location.pathname === '/'", WAIT);
    b.wait_script(
        "return document.getElementById('who').textContent.includes('ann')",
        WAIT,
    );

    // Both tiles appear, with their images, and update.
    for camera in ["lobby", "dock"] {
        b.wait_script(
            &format!(
                "const t = document.querySelector('.tile[data-camera=\"{camera}\"]');\
                 return t && t.querySelector('img').naturalWidth > 0 && t.querySelector('.badge').textContent"
            ),
            WAIT,
        );
    }
    let badge = b.text(&b.wait_find(".tile[data-camera=\"lobby\"] .badge", WAIT));
    assert_eq!(badge, "streaming");
    let node_text = b.text(&b.wait_find(".tile[data-camera=\"lobby\"] .node", WAIT));
    assert_eq!(node_text, "on edge-1");
    let captured = "return Number(document.querySelector('.tile[data-camera=\"lobby\"] .when').dataset.captured)";
    let first = b.execute(captured, json!([])).as_u64().unwrap_or(0);
    b.wait_script(
        &format!("{captured} > {first} && document.querySelector('.tile[data-camera=\"lobby\"] img').src"),
        WAIT,
    );
    shots.save(&b, "live-tiles");

    // Click the person in the lobby's tile: their trajectory across both cameras.
    b.click(&b.wait_find(".tile[data-camera=\"lobby\"] canvas", WAIT));
    let cams = b.wait_script(
        "const li = [...document.querySelectorAll('#timeline li.sighting')];\
         return li.length >= 2 && li.map(l => l.dataset.camera)",
        WAIT,
    );
    let cams: Vec<&str> = cams
        .as_array()
        .expect("cameras")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert_eq!(cams, vec!["lobby", "dock", "lobby"]);
    let title = b.text(&b.wait_find("#result-title", WAIT));
    assert_eq!(title, "Trajectory of pb34e.1");
    let corrections_for_viewer = b.execute(
        "return document.querySelectorAll('#timeline .split').length + (document.getElementById('merge').hidden ? 0 : 1)",
        json!([]),
    );
    assert_eq!(
        corrections_for_viewer,
        json!(0),
        "a viewer corrects nothing"
    );
    assert!(b
        .text(&b.wait_find("#status", WAIT))
        .contains("3 sightings on 2 cameras"));
    // The thumbnail and the floor plan path are drawn.
    b.wait_script(
        "const i = document.querySelector('#timeline img'); return i.complete && i.naturalWidth > 0",
        WAIT,
    );
    b.wait_script(
        "return !document.getElementById('floor').hidden && document.getElementById('floor-img').naturalWidth > 0",
        WAIT,
    );
    shots.save(&b, "trajectory");

    // Export: the CSV link downloads p1's sightings.
    let csv = b.execute_async(
        "fetch(document.getElementById('export-csv').href).then(r => r.text()).then(arguments[0])",
        json!([]),
    );
    let csv = csv.as_str().expect("CSV text");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("identity,camera,node"), "{csv}");
    assert!(
        lines[1].starts_with(&format!("{P1},lobby,edge-1,")),
        "{csv}"
    );
    assert!(lines[2].starts_with(&format!("{P1},dock,edge-1,")), "{csv}");

    // Search by camera: the lobby's sightings, both people.
    let camera = b.wait_find("#camera", WAIT);
    b.send_keys(&camera, "lobby");
    b.click(&b.wait_find("#by-camera button", WAIT));
    b.wait_script(
        "return document.getElementById('result-title').textContent === 'Sightings on lobby' \
         && document.querySelectorAll('#timeline li.sighting').length === 3",
        WAIT,
    );

    // The cluster view: the plan's placement of the configured cameras.
    b.click(&b.wait_find("#tab-cluster", WAIT));
    b.wait_script(
        "return document.getElementById('plan-version').textContent.startsWith('version') \
         && document.querySelectorAll('#nodes tr[data-node]').length === 2 \
         && document.querySelectorAll('#plan tr[data-camera]').length === 2",
        WAIT,
    );
    let alive = b.text(&b.wait_find("#nodes tr[data-node=\"edge-1\"] td.live", WAIT));
    assert_eq!(alive, "alive");
    // Split training: nothing run yet, and no form for a viewer.
    b.wait_script(
        "return document.getElementById('training-state').textContent === '(idle)' \
         && document.querySelector('#training tbody').textContent.startsWith('No round run') \
         && document.getElementById('train').hidden",
        WAIT,
    );
    // A viewer cannot submit a job.
    let r = b.execute_async(
        "fetch('/api/jobs', {method: 'POST', body: arguments[0]}).then(r => arguments[1](r.status))",
        json!([JOB]),
    );
    assert_eq!(r, json!(403), "a viewer submitting a job");
    shots.save(&b, "cluster");

    // Log out: the page goes back to the login form and the API refuses us.
    b.click(&b.wait_find("#logout", WAIT));
    b.wait_script("return location.pathname === '/login'", WAIT);
    let r = b.execute_async(
        "fetch('/api/trajectory?identity=1').then(r => arguments[0](r.status))",
        json!([]),
    );
    assert_eq!(r, json!(401));
    b.goto(&format!("{base}/"));
    assert!(b.url().ends_with("/login"), "{}", b.url());

    // An admin corrects: splits the dock sighting off p1, undoes it, then
    // merges p2 into p1.
    b.send_keys(&b.wait_find("#user", WAIT), "root");
    b.send_keys(&b.wait_find("#password", WAIT), "root-pw");
    b.click(&b.wait_find("#submit", WAIT));
    b.wait_script("return location.pathname === '/'", WAIT);
    b.wait_script(
        "return document.getElementById('who').textContent.includes('admin')",
        WAIT,
    );
    // A job submitted through the API shows with where each stage runs.
    let r = b.execute_async(
        "fetch('/api/jobs', {method: 'POST', body: arguments[0]}).then(r => arguments[1](r.status))",
        json!([JOB]),
    );
    assert_eq!(r, json!(201), "submitting a job as admin");
    b.click(&b.wait_find("#tab-cluster", WAIT));
    b.wait_script(
        "const r = document.querySelector('#jobs tr[data-job=\"faces\"]'); \
         return r !== null && r.dataset.state === 'placed' && r.cells[1].textContent.includes('cam (source) @ edge-')",
        Duration::from_secs(30),
    );
    shots.save(&b, "jobs");
    // An admin asks for split training rounds from the page: the fake
    // nodes serve no training, so the run stops, and the page says why.
    b.wait_script("return !document.getElementById('train').hidden", WAIT);
    b.execute(
        "document.getElementById('train-rounds').value = '2'; \
         document.getElementById('train-algorithm').value = 'vanilla_fl'",
        json!([]),
    );
    b.click(&b.wait_find("#train button", WAIT));
    b.wait_script(
        "const n = document.getElementById('training-note'); \
         return n.className === 'error' && n.textContent.startsWith('Stopped: ') \
         && document.getElementById('training-state').textContent === '(idle)'",
        Duration::from_secs(30),
    );
    eprintln!(
        "training, as the page says: {}",
        b.text(&b.wait_find("#training-note", WAIT))
    );
    shots.save(&b, "training");
    b.click(&b.wait_find("#tab-search", WAIT));
    let id = b.wait_find("#identity", WAIT);
    b.send_keys(&id, "pb34e.1");
    b.click(&b.wait_find("#by-identity button", WAIT));
    b.wait_script(
        "return document.querySelectorAll('#timeline li.sighting .split').length === 3",
        WAIT,
    );
    b.click(&b.wait_find("#timeline li.sighting[data-camera=\"dock\"] .split", WAIT));
    b.wait_script(
        "return document.getElementById('status').textContent.startsWith('Split off as p') \
         && [...document.querySelectorAll('#timeline li.sighting')].map(l => l.dataset.camera).join() === 'lobby,lobby' \
         && !document.getElementById('corrections').hidden",
        WAIT,
    );
    shots.save(&b, "split");
    b.execute(
        "document.getElementById('corrections').open = true",
        json!([]),
    );
    b.click(&b.wait_find("#correction-list .undo", WAIT));
    b.wait_script(
        "return document.getElementById('status').textContent === 'Undone.' \
         && document.querySelectorAll('#timeline li.sighting').length === 3 \
         && document.querySelectorAll('#correction-list li').length === 2 \
         && document.querySelectorAll('#correction-list li.reverted').length === 1",
        WAIT,
    );
    b.send_keys(&b.wait_find("#merge-into", WAIT), "pb34e.2");
    b.send_keys(&b.wait_find("#merge-reason", WAIT), "same red coat");
    b.click(&b.wait_find("#merge button", WAIT));
    b.wait_script(
        "return document.getElementById('status').textContent === 'Merged into pb34e.2.' \
         && document.querySelectorAll('#timeline li.sighting').length === 4",
        WAIT,
    );
    let trail = b.execute_async(
        "fetch('/api/corrections').then(r => r.json()).then(j => arguments[0](j.corrections.map(c => c.actor + ' ' + c.action)))",
        json!([]),
    );
    assert_eq!(trail, json!(["root merge", "root revert", "root split"]));
    shots.save(&b, "merged");

    b.close();
    drop(driver);
    stop.store(true, Ordering::Relaxed);
    edge.join().expect("fake edge");
    master.shutdown().expect("clean shutdown");
    eprintln!("browser test took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(60));
}
