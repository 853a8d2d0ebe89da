//! Sync lag and stream reassignment: a `vidar-camera` with two synthetic
//! streams and two `vidar-edge` nodes; lag (records and seconds behind the
//! edge) sampled every second; then the node holding a camera is killed
//! (SIGKILL) and the time until the plan moves its camera and until the other
//! node reports it streaming is measured, several times.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::harness::{http_get, percentile, ready, spawn, wait_for, Proc, Site};

/// Lag sampled for `lag_seconds`, then `kills` node kills.
pub fn lag_and_reassignment(
    lag_seconds: u64,
    kills: usize,
    dir: &Path,
    rows: &mut Vec<(String, String, String)>,
) -> Result<()> {
    let mut cam = spawn(
        dir,
        "camera",
        "vidar-camera",
        &[
            "--port",
            "0",
            "--mount",
            "c0=synthetic:?width=640&height=360&fps=10&seed=1&people=3",
            "--mount",
            "c1=synthetic:?width=640&height=360&fps=10&seed=2&people=3",
        ],
    )?;
    let port = ready(&mut cam)?
        .rtsp
        .context("vidar-camera announced no RTSP address")?
        .port();
    let result = (|| -> Result<()> {
        let mut site = Site::new()?;
        let cameras: Vec<(String, String)> = ["c0", "c1"]
            .iter()
            .map(|c| (c.to_string(), format!("rtsp://127.0.0.1:{port}/{c}")))
            .collect();
        let _master = site.master(dir, &cameras, 10.0)?;
        let ids = ["edge-a", "edge-b"];
        let mut ports = [0u16; 2];
        let mut edges: Vec<Proc> = Vec::new();
        for (id, p) in ids.iter().zip(&mut ports) {
            let (proc, metrics) = site.edge(dir, id, &dir.join(format!("{id}.db")), 0)?;
            edges.push(proc);
            *p = metrics;
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
        while t0.elapsed() < Duration::from_secs(lag_seconds) {
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
            format!("2 nodes x 1 synthetic stream (3 people, 10 fps), sync every 10 s, sampled 1/s for {} s", lag_seconds),
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
        for _ in 0..kills {
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
            // (On the port it had: the one port a test cannot leave to the kernel.)
            edges[victim] = site
                .edge(
                    dir,
                    ids[victim],
                    &dir.join(format!("{}.db", ids[victim])),
                    ports[victim],
                )?
                .0;
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
    cam.kill();
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
