//! `vidar-cluster-bench`: the cluster's numbers (issue 6), printed as a
//! Markdown table.
//!
//! 1. Remote re-ID round trip over zenoh on loopback, excluding inference:
//!    a router session (as the master runs) and two peer sessions; the client
//!    sends `ReidRequest`s of 8 JPEG-sized crops to the server's queryable,
//!    which decodes them and answers a `ReidReply` of 8 identities. p50/p99
//!    of one request at a time, and crops/s with 4 requests in flight.
//! 2. Record sync: an edge database pre-filled with `--records` records, a
//!    real `vidar-edge` serving it (cluster mode, no cameras) and a real
//!    `vidar-master` pulling it: records/s from the first to the last record
//!    committed in the global database.
//! 3. Sync lag and stream reassignment: a `vidar-camera` with two synthetic
//!    streams, two `vidar-edge` nodes; lag (records and seconds behind the
//!    edge) sampled every second for `--lag-seconds`; then the node holding a
//!    camera is killed (SIGKILL) and the time until the plan moves its camera
//!    and until the other node reports it streaming is measured, `--kills` times.
//!
//! Needs `ORT_DYLIB_PATH` and `VIDAR_MODEL_DIR` (the edges load their models)
//! and the `vidar-edge`, `vidar-master` and `vidar-camera` binaries next to
//! this one (`cargo build --release --workspace --bins`).

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_link::zenoh::Wait;
use vidar_link::{request, Garbage, LinkSettings, Mode};
use vidar_protocol::messages::{Crop, CropEncoding, ReidAnswer, ReidReply, ReidRequest};
use vidar_protocol::record::{BoxPoint, IdentityRecord, Record, Sighting};
use vidar_protocol::{wire, BBox, CameraId, IdentityId, Keys, NodeId, TrackId};

#[derive(Parser, Debug)]
#[command(
    about = "Vidar cluster benchmarks: remote re-ID round trip, sync throughput and lag, reassignment time"
)]
struct Args {
    /// Re-ID requests measured (one at a time).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Bytes of each crop (a 160 px person crop at JPEG quality 90 is 4-8 KB).
    #[arg(long, default_value_t = 6000)]
    crop_bytes: usize,
    /// Records pre-filled into the edge database for the sync run.
    #[arg(long, default_value_t = 50_000)]
    records: usize,
    /// Seconds of lag sampling with live cameras.
    #[arg(long, default_value_t = 30)]
    lag_seconds: u64,
    /// Node kills measured.
    #[arg(long, default_value_t = 3)]
    kills: usize,
    /// Skip the multi-process parts (re-ID round trip only).
    #[arg(long)]
    reid_only: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    reid_round_trip(&args, &mut rows)?;
    if !args.reid_only {
        let dir = std::env::temp_dir().join(format!("vidar-cluster-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let result = sync_throughput(&args, &dir, &mut rows)
            .and_then(|()| lag_and_reassignment(&args, &dir, &mut rows));
        let _ = std::fs::remove_dir_all(&dir);
        result?;
    }
    println!("\n| measurement | value | how |");
    println!("|---|---:|---|");
    for (m, v, how) in rows {
        println!("| {m} | {v} | {how} |");
    }
    Ok(())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn reid_round_trip(args: &Args, rows: &mut Vec<(String, String, String)>) -> Result<()> {
    let site = format!("bench{}", std::process::id());
    let port = free_port()?;
    let router = LinkSettings {
        site: site.clone(),
        listen: vec![format!("tcp/127.0.0.1:{port}")],
        ..Default::default()
    }
    .open(Mode::Router)?;
    let peer = |name: &str| -> Result<vidar_link::zenoh::Session> {
        let _ = name;
        Ok(LinkSettings {
            site: site.clone(),
            connect: vec![format!("tcp/127.0.0.1:{port}")],
            listen: vec!["tcp/127.0.0.1:0".into()],
            ..Default::default()
        }
        .open(Mode::Peer)?)
    };
    let server = peer("server")?;
    let client = peer("client")?;
    let keys = Keys::new(&site)?;
    let node = NodeId::new("server")?;
    let garbage = Arc::new(Garbage::default());
    let g = Arc::clone(&garbage);
    let key = keys.reid(&node);
    let served_by = node.clone();
    let _queryable = server
        .declare_queryable(&key)
        .callback(move |query| {
            let k = query.key_expr().to_string();
            let Some(req) = query
                .payload()
                .map(|p| p.to_bytes())
                .and_then(|b| g.decode::<ReidRequest>(&k, &b))
            else {
                let _ = query.reply_err("expected a ReidRequest").wait();
                return;
            };
            let reply = ReidReply {
                request_id: req.request_id,
                served_by: served_by.clone(),
                results: req
                    .crops
                    .iter()
                    .enumerate()
                    .map(|(i, c)| ReidAnswer {
                        camera: c.camera.clone(),
                        track: c.track,
                        identity: IdentityId(1000 + i as u64),
                        similarity: 0.9,
                        minted: false,
                    })
                    .collect(),
                error: None,
            };
            if let Ok(bytes) = wire::encode(&reply) {
                let _ = query.reply(k, bytes).wait();
            }
        })
        .wait()
        .map_err(|e| anyhow::anyhow!("queryable: {e}"))?;
    // Let the peers discover each other's queryable.
    std::thread::sleep(Duration::from_millis(1500));
    let camera = CameraId::new("cam")?;
    // A JPEG-like payload: SOI marker, then bytes that do not compress.
    let mut data = vec![0xFF, 0xD8];
    let mut x: u32 = 0x1234_5678;
    while data.len() < args.crop_bytes {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push((x & 0xFF) as u8);
    }
    let from = NodeId::new("client")?;
    let make = |id: u64| ReidRequest {
        from: from.clone(),
        request_id: id,
        crops: (0..8)
            .map(|t| Crop {
                camera: camera.clone(),
                track: TrackId(t),
                capture_ms: 0,
                width: 64,
                height: 160,
                encoding: CropEncoding::Jpeg,
                data: data.clone(),
            })
            .collect(),
    };
    let timeout = Duration::from_secs(2);
    let garbage_c = Garbage::default();
    // Warm-up.
    for i in 0..50 {
        request::<ReidRequest, ReidReply>(&client, &key, &make(i), timeout, &garbage_c)?;
    }
    let mut rtts = Vec::with_capacity(args.requests);
    let bytes = wire::encode(&make(0))?.len();
    for i in 0..args.requests {
        let req = make(i as u64);
        let t0 = Instant::now();
        let reply: ReidReply = request(&client, &key, &req, timeout, &garbage_c)?;
        rtts.push(t0.elapsed().as_secs_f64() * 1000.0);
        if reply.results.len() != 8 {
            bail!("reply with {} answers", reply.results.len());
        }
    }
    rtts.sort_by(f64::total_cmp);
    // Throughput: 4 requesters at once for 3 s.
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let client = client.clone();
        let key = key.clone();
        let done = Arc::clone(&done);
        let stop = Arc::clone(&stop);
        let req = make(t);
        threads.push(std::thread::spawn(move || {
            let g = Garbage::default();
            while !stop.load(Ordering::Relaxed) {
                if request::<ReidRequest, ReidReply>(&client, &key, &req, timeout, &g).is_ok() {
                    done.fetch_add(8, Ordering::Relaxed);
                }
            }
        }));
    }
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let crops_s = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    let how = format!(
        "{} requests of 8 crops x {} B ({} B encoded), one at a time, router + 2 peers on loopback, no inference",
        args.requests, args.crop_bytes, bytes
    );
    rows.push((
        "remote re-ID round trip p50 / p99 / max, ms".into(),
        format!(
            "{:.2} / {:.2} / {:.2}",
            percentile(&rtts, 0.5),
            percentile(&rtts, 0.99),
            percentile(&rtts, 1.0)
        ),
        how,
    ));
    rows.push((
        "remote re-ID crops/s (transport + codec bound)".into(),
        format!("{crops_s:.0}"),
        "4 requests of 8 crops in flight for 3 s".into(),
    ));
    let _ = client.close().wait();
    let _ = server.close().wait();
    let _ = router.close().wait();
    eprintln!(
        "re-ID round trip done: p99 {:.2} ms",
        percentile(&rtts, 0.99)
    );
    Ok(())
}

/// A child process, killed when dropped; stderr goes to a file.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(dir: &Path, name: &str, bin: &str, args: &[&str]) -> Result<Proc> {
        let exe = std::env::current_exe()?.with_file_name(bin);
        if !exe.is_file() {
            bail!(
                "{} not found: build every binary (`cargo build --release --workspace --bins`)",
                exe.display()
            );
        }
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(&exe)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        Ok(Proc { child })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .reduce(f64::max)
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if t0.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Site {
    site: String,
    zport: u16,
    http: u16,
}

impl Site {
    fn new() -> Result<Site> {
        Ok(Site {
            site: format!("b{}x{}", std::process::id(), free_port()?),
            zport: free_port()?,
            http: free_port()?,
        })
    }

    fn master(&self, dir: &Path, cameras: &[(String, String)], sync_every: f64) -> Result<Proc> {
        let mut toml = format!(
            "database = \"{db}\"\nhttp_addr = \"127.0.0.1:{http}\"\nsync_every_s = {sync_every}\n\
             node_timeout_s = 3\nauth = \"none\"\n[cluster]\nsite = \"{site}\"\nlisten = [\"tcp/127.0.0.1:{zport}\"]\n",
            db = dir.join(format!("global-{}.db", self.site)).display(),
            http = self.http,
            site = self.site,
            zport = self.zport
        );
        for (c, src) in cameras {
            toml.push_str(&format!(
                "[[cameras]]\ncamera = \"{c}\"\nsource = \"{src}\"\n"
            ));
        }
        let cfg = dir.join(format!("master-{}.toml", self.site));
        std::fs::write(&cfg, toml)?;
        let cfg = cfg.to_string_lossy().to_string();
        Proc::spawn(
            dir,
            &format!("master-{}", self.site),
            "vidar-master",
            &["run", "--config", &cfg],
        )
    }

    fn edge(&self, dir: &Path, id: &str, db: &Path, metrics: u16) -> Result<Proc> {
        let toml = format!(
            "node_id = \"{id}\"\ndatabase = \"{db}\"\nmetrics_addr = \"127.0.0.1:{metrics}\"\n\
             inference_workers = 1\n[models.runtime]\nintra_threads = 1\n[detector]\nmax_batch = 1\n\
             [cluster]\nsite = \"{site}\"\nconnect = [\"tcp/127.0.0.1:{zport}\"]\nlisten = [\"tcp/127.0.0.1:{lport}\"]\n\
             [sharing]\nstatus_every_ms = 250\ndetect_fps = 30.0\nreid_crops_per_s = 30.0\n\
             [sharing.ingest]\ntransport = \"tcp\"\nbackoff_initial_ms = 100\nbackoff_max_ms = 500\n",
            db = db.display(),
            site = self.site,
            zport = self.zport,
            lport = free_port()?,
        );
        let cfg = dir.join(format!("{id}-{}.toml", self.site));
        std::fs::write(&cfg, toml)?;
        let cfg = cfg.to_string_lossy().to_string();
        Proc::spawn(
            dir,
            &format!("{id}-{}", self.site),
            "vidar-edge",
            &["run", "--config", &cfg],
        )
    }
}

fn sync_throughput(
    args: &Args,
    dir: &Path,
    rows: &mut Vec<(String, String, String)>,
) -> Result<()> {
    let node = NodeId::new("bench-edge")?;
    let db = dir.join("bench-edge.db");
    {
        let writer = vidar_store::WriterConfig::new(&db, node.clone()).build()?;
        let h = writer.handle();
        let camera = CameraId::new("cam")?;
        let t0 = 1_700_000_000_000i64;
        for i in 0..args.records {
            let record = if i % 10 == 0 {
                Record::Identity(IdentityRecord {
                    identity: IdentityId(i as u64),
                    camera: camera.clone(),
                    first_seen_ms: t0 + i as i64 * 100,
                    embedding: (0..512).map(|k| ((k + i) % 7) as f32 / 7.0).collect(),
                    model: "bench-model".into(),
                })
            } else {
                Record::Sighting(Sighting {
                    identity: IdentityId((i / 10 * 10) as u64),
                    camera: camera.clone(),
                    track: TrackId(i as u64),
                    first_ms: t0 + i as i64 * 100,
                    last_ms: t0 + i as i64 * 100 + 2000,
                    path: (0..20)
                        .map(|k| BoxPoint {
                            t_ms: t0 + i as i64 * 100 + k * 100,
                            bbox: BBox {
                                x: 10.0 + k as f32,
                                y: 20.0,
                                w: 40.0,
                                h: 100.0,
                            },
                        })
                        .collect(),
                })
            };
            h.submit(record)?;
        }
        h.flush()?;
        writer.shutdown()?;
    }
    eprintln!("edge database pre-filled with {} records", args.records);
    let site = Site::new()?;
    let metrics = free_port()?;
    let _master = site.master(dir, &[], 0.5)?;
    let t_start = Instant::now();
    let _edge = site.edge(dir, node.as_str(), &db, metrics)?;
    let total = args.records as f64;
    let mut first: Option<Instant> = None;
    let done = wait_for("every record synced", Duration::from_secs(300), || {
        let m = http_get(site.http, "/metrics")?;
        let n = metric(&m, "vidar_master_sync_records_total")?;
        if n > 0.0 && first.is_none() {
            first = Some(Instant::now());
        }
        (n >= total).then(Instant::now)
    })?;
    let first = first.unwrap_or(t_start);
    let secs = done.duration_since(first).as_secs_f64().max(1e-3);
    rows.push((
        "sync throughput, records/s".into(),
        format!("{:.0}", total / secs),
        format!(
            "{} records (90 % sightings with 20-box paths, 10 % identities with 512-d embeddings) from a real vidar-edge to a real vidar-master, batches of 5000; {:.1} s from first to last commit",
            args.records, secs
        ),
    ));
    eprintln!("sync done: {:.0} records/s", total / secs);
    Ok(())
}

fn lag_and_reassignment(
    args: &Args,
    dir: &Path,
    rows: &mut Vec<(String, String, String)>,
) -> Result<()> {
    let exe = std::env::current_exe()?.with_file_name("vidar-camera");
    let mut cam = Command::new(&exe)
        .args([
            "--port",
            "0",
            "--mount",
            "c0=synthetic:?width=640&height=360&fps=10&seed=1&people=3",
            "--mount",
            "c1=synthetic:?width=640&height=360&fps=10&seed=2&people=3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let out = cam.stdout.take().context("camera stdout")?;
    let mut port = 0u16;
    for line in BufReader::new(out).lines() {
        let line = line?;
        if let Some(p) = line.strip_prefix("ready port=") {
            port = p.trim().parse()?;
            break;
        }
    }
    if port == 0 {
        bail!("vidar-camera did not start");
    }
    let result = (|| -> Result<()> {
        let site = Site::new()?;
        let cameras: Vec<(String, String)> = ["c0", "c1"]
            .iter()
            .map(|c| (c.to_string(), format!("rtsp://127.0.0.1:{port}/{c}")))
            .collect();
        let _master = site.master(dir, &cameras, 10.0)?;
        let ids = ["edge-a", "edge-b"];
        let ports = [free_port()?, free_port()?];
        let mut edges: Vec<Proc> = Vec::new();
        for (id, p) in ids.iter().zip(ports) {
            edges.push(site.edge(dir, id, &dir.join(format!("{id}.db")), p)?);
        }
        let streaming = |p: u16| -> Vec<String> {
            http_get(p, "/metrics")
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("vidar_stream_up{") && l.ends_with(" 1"))
                .filter_map(|l| {
                    l.split("camera=\"")
                        .nth(1)?
                        .split('"')
                        .next()
                        .map(str::to_string)
                })
                .collect()
        };
        wait_for("both cameras streaming", Duration::from_secs(120), || {
            let n: usize = ports.iter().map(|p| streaming(*p).len()).sum();
            (n == 2).then_some(())
        })?;
        // Lag while recording, sync every 10 s (the default).
        let mut lag_records = Vec::new();
        let mut lag_secs = Vec::new();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(args.lag_seconds) {
            std::thread::sleep(Duration::from_secs(1));
            let Some(body) = http_get(site.http, "/api/nodes") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            let nodes = v
                .get("nodes")
                .and_then(|n| n.as_array())
                .cloned()
                .unwrap_or_default();
            for n in nodes {
                let sync = n.get("sync");
                if let Some(l) = sync
                    .and_then(|s| s.get("lag_records"))
                    .and_then(|x| x.as_f64())
                {
                    lag_records.push(l);
                }
                if let Some(s) = sync
                    .and_then(|s| s.get("since_success_s"))
                    .and_then(|x| x.as_f64())
                {
                    lag_secs.push(s);
                }
            }
        }
        lag_records.sort_by(f64::total_cmp);
        lag_secs.sort_by(f64::total_cmp);
        rows.push((
            "sync lag, records behind the edge: median / max".into(),
            format!("{:.0} / {:.0}", percentile(&lag_records, 0.5), percentile(&lag_records, 1.0)),
            format!("2 nodes x 1 synthetic stream (3 people, 10 fps), sync every 10 s, sampled 1/s for {} s", args.lag_seconds),
        ));
        rows.push((
            "sync lag, seconds since last successful sync: median / max".into(),
            format!(
                "{:.1} / {:.1}",
                percentile(&lag_secs, 0.5),
                percentile(&lag_secs, 1.0)
            ),
            "same run".into(),
        ));
        // Reassignment after a node dies.
        let mut plan_times = Vec::new();
        let mut stream_times = Vec::new();
        for _ in 0..args.kills {
            let (victim, other) = if streaming(ports[0]).is_empty() {
                (1, 0)
            } else {
                (0, 1)
            };
            let before = streaming(ports[other]).len();
            let lost = streaming(ports[victim]);
            edges[victim].kill();
            let t = Instant::now();
            wait_for("plan moves the camera", Duration::from_secs(30), || {
                let plan: serde_json::Value =
                    serde_json::from_str(&http_get(site.http, "/api/plan")?).ok()?;
                let streams = plan.get("streams")?.as_array()?;
                let moved = streams
                    .iter()
                    .all(|s| s.get("node").and_then(|n| n.as_str()) != Some(ids[victim]));
                (moved && streams.len() == 2).then_some(())
            })?;
            plan_times.push(t.elapsed().as_secs_f64());
            wait_for("the other node streams it", Duration::from_secs(30), || {
                (streaming(ports[other]).len() >= before + lost.len()).then_some(())
            })?;
            stream_times.push(t.elapsed().as_secs_f64());
            // Bring the node back for the next round.
            edges[victim] = site.edge(
                dir,
                ids[victim],
                &dir.join(format!("{}.db", ids[victim])),
                ports[victim],
            )?;
            std::thread::sleep(Duration::from_secs(8));
        }
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        rows.push((
            "reassignment after SIGKILL of a node: plan moved, s".into(),
            fmt(&plan_times),
            "liveliness token lost -> replan -> new plan version (node_timeout_s 3)".into(),
        ));
        rows.push((
            "reassignment after SIGKILL of a node: streaming on the other node, s".into(),
            fmt(&stream_times),
            "until the other node's /metrics shows the camera streaming (RTSP connect included)"
                .into(),
        ));
        let _ = edges;
        Ok(())
    })();
    let _ = cam.kill();
    let _ = cam.wait();
    if result.is_err() {
        for entry in std::fs::read_dir(dir)?.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: String = text
                    .chars()
                    .rev()
                    .take(1500)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                eprintln!("--- {} ---\n{tail}", p.display());
            }
        }
    }
    result
}
