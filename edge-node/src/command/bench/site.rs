//! `bench trajectories --nodes N` (N > 1): the scene through a real site,
//! as a user deploys one. A `vidar-master` and N `vidar-edge` processes
//! (next to this binary) join over zenoh on loopback; the master's plan pins
//! camera k to node `edge-(k mod N + 1)`, so a person crossing cameras
//! crosses nodes, and identities must meet through the cluster: announced
//! mints, remote re-ID where the plan offloads it, the master's merges and
//! nodes' joins. What is scored is what the global database answers once
//! synced: every node's own records, each identity read as the master's
//! merges join it.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vidar_protocol::{CameraId, IdentityId, UnixMs};
use vidar_store::{Reader, TimeRange};
use vidar_testkit::http::{camera_metric, get, metric};
use vidar_testkit::process::Proc;
use vidar_trajeval::Sighting;

/// How long a process may take to start serving.
const START: Duration = Duration::from_secs(120);
/// How long the streams may take to be placed and streaming.
const PLACED: Duration = Duration::from_secs(90);

/// What the site recorded while it ran.
pub(super) struct SiteRun {
    /// When the streams were placed (scoring starts a warm-up after).
    pub start_ms: UnixMs,
    /// When the nodes were told to stop.
    pub end_ms: UnixMs,
    /// Frames each camera's node analysed (`vidar_frames_detected_total`).
    pub detected: Vec<(String, u64)>,
    /// Every node's sightings of the cameras, each identity as merged.
    pub sightings: Vec<Sighting>,
    /// Tracks recorded without an identity, all nodes.
    pub unidentified: usize,
    /// Merges the master decided (its own, nodes' joins included).
    pub merges: u64,
}

fn ready_port(p: &mut Proc, what: &str) -> Result<vidar_testkit::process::Ready> {
    p.wait_ready(START)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("starting {what}"))
}

/// Runs `cameras` (served on RTSP `port`) through a master and `nodes`
/// edges for `seconds`; `node_toml` is the edge config's model, detector
/// and gallery tables (the single node's, without cameras), `dir` the work
/// folder (logs and databases stay there).
pub(super) fn run(
    dir: &Path,
    port: u16,
    cameras: u32,
    nodes: u32,
    seconds: u64,
    node_toml: &str,
) -> Result<SiteRun> {
    let site = format!("traj{}", std::process::id());
    let global = dir.join("global.db");
    let mut toml = format!(
        "master_id = \"master\"\ndatabase = \"{db}\"\nhttp_addr = \"127.0.0.1:0\"\n\
         sync_every_s = 2\nplan_every_s = 60\nnode_timeout_s = 3\nauth = \"none\"\n\
         [cluster]\nsite = \"{site}\"\nlisten = [\"tcp/127.0.0.1:0\"]\n",
        db = global.display()
    );
    let owner = |k: u32| format!("edge-{}", k % nodes + 1);
    for k in 0..cameras {
        toml.push_str(&format!(
            "[[cameras]]\ncamera = \"c{k}\"\nsource = \"rtsp://127.0.0.1:{port}/c{k}\"\nnode = \"{}\"\n",
            owner(k)
        ));
    }
    let cfg = dir.join("master.toml");
    std::fs::write(&cfg, toml)?;
    let mut master = Proc::spawn(
        dir,
        "master",
        &super::harness::sibling("vidar-master")?,
        &["run", "--config", &cfg.to_string_lossy()],
    )?;
    let ready = ready_port(&mut master, "vidar-master")?;
    let http = ready.http.context("the master announced no API")?.port();
    let zport = ready
        .zenoh_port()
        .context("the master announced no zenoh locator")?;

    let mut edges: Vec<(String, Proc, u16, PathBuf)> = Vec::new();
    for i in 1..=nodes {
        let id = format!("edge-{i}");
        let db = dir.join(format!("{id}.db"));
        let toml = format!(
            "node_id = \"{id}\"\ndatabase = \"{db}\"\nmetrics_addr = \"127.0.0.1:0\"\n{node_toml}\
             [cluster]\nsite = \"{site}\"\nconnect = [\"tcp/127.0.0.1:{zport}\"]\n\
             [sharing.ingest]\ntransport = \"tcp\"\n",
            db = db.display(),
        );
        let cfg = dir.join(format!("{id}.toml"));
        std::fs::write(&cfg, toml)?;
        let p = Proc::spawn(
            dir,
            &id,
            &super::harness::sibling("vidar-edge")?,
            &["run", "--config", &cfg.to_string_lossy()],
        )?;
        edges.push((id, p, 0, db));
    }
    for (id, p, metrics, _) in &mut edges {
        let r = ready_port(p, id)?;
        *metrics = r.http.context("an edge announced no /metrics")?.port();
    }

    // Every camera streaming at the node the plan pins it to.
    let t0 = Instant::now();
    loop {
        let placed = (0..cameras).all(|k| {
            let node = owner(k);
            edges.iter().any(|(id, _, m, _)| {
                *id == node
                    && get(*m, "/metrics").is_some_and(|t| {
                        camera_metric(&t, "vidar_stream_up", &format!("c{k}")) == Some(1.0)
                    })
            })
        });
        if placed {
            break;
        }
        if t0.elapsed() > PLACED {
            let logs: Vec<String> = edges.iter().map(|e| e.1.tail(2000)).collect();
            bail!(
                "the cameras were not streaming where planned after {PLACED:?}\n{}\n{}",
                master.tail(2000),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let start_ms = UnixMs::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let end_ms = UnixMs::now();
    let mut detected = Vec::new();
    for k in 0..cameras {
        let node = owner(k);
        let n = edges
            .iter()
            .find(|e| e.0 == node)
            .and_then(|e| get(e.2, "/metrics"))
            .and_then(|t| camera_metric(&t, "vidar_frames_detected_total", &format!("c{k}")))
            .unwrap_or(0.0);
        detected.push((format!("c{k}"), n as u64));
    }
    let merges = get(http, "/metrics")
        .and_then(|t| metric(&t, "vidar_master_merges_total"))
        .unwrap_or(0.0) as u64;
    // An orderly stop records every open track; then the master stops.
    for (id, p, _, _) in &mut edges {
        if p.terminate(Duration::from_secs(30)).is_none() {
            eprintln!("{id} did not stop within 30 s: killed, its open tracks lost");
        }
    }
    master.terminate(Duration::from_secs(30));

    // The master's merges, as the global database answers them.
    let global = Reader::open(&global).with_context(|| format!("opening {}", global.display()))?;
    let mut root: HashMap<u64, u64> = HashMap::new();
    let (mut sightings, mut unidentified) = (Vec::new(), 0);
    for (_, _, _, db) in &edges {
        let (mut s, n) = sightings_of(db, cameras, |id| {
            if let Some(r) = root.get(&id) {
                return Ok(*r);
            }
            let r = global
                .identity_cluster(IdentityId(id))?
                .first()
                .map_or(id, |r| r.0);
            root.insert(id, r);
            Ok(r)
        })?;
        sightings.append(&mut s);
        unidentified += n;
    }
    Ok(SiteRun {
        start_ms,
        end_ms,
        detected,
        sightings,
        unidentified,
        merges,
    })
}

/// The sightings of cameras `c0..c{cameras}` in the database at `db`, each
/// identity read through `identity` (the merges in force, or as recorded),
/// and the tracks it recorded without an identity.
pub(super) fn sightings_of(
    db: &Path,
    cameras: u32,
    mut identity: impl FnMut(u64) -> Result<u64>,
) -> Result<(Vec<Sighting>, usize)> {
    let reader = Reader::open(db).with_context(|| format!("opening {}", db.display()))?;
    let mut out = Vec::new();
    for k in 0..cameras {
        let cam = CameraId::new(&format!("c{k}"))?;
        for s in reader.sightings_by_camera(&cam, TimeRange::all(), 1_000_000)? {
            let s = s.value;
            out.push(Sighting {
                camera: s.camera.to_string(),
                track_id: s.track.0,
                identity: Some(identity(s.identity.0)?),
                path: s.path.iter().map(|p| (p.t_ms, p.bbox)).collect(),
            });
        }
    }
    let unidentified = reader
        .counts()?
        .into_iter()
        .find(|(table, _)| *table == "tracks")
        .map_or(0, |(_, n)| n as usize);
    Ok((out, unidentified))
}
