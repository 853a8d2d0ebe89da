//! Measured links on real processes and a real shaped link: one node in a
//! network namespace behind a veth pair that `tc tbf` limits to 8 Mbit/s each
//! way, one node on the host, and the master on the host (mutual TLS, its
//! access list). Each node probes the other through the master's router,
//! the path crops take, so the pair must come out near the shaped rate (not
//! the Gbit/s of loopback), at both ends, in the status the master plans
//! with.
//!
//! Needs root for `ip netns` and `tc` (CI runs as root; `deploy/setup.sh`
//! installs iproute2), plus `ORT_DYLIB_PATH`, `VIDAR_MODEL_DIR` and every
//! binary built (`make test` does all three).

mod common;

use common::{bin, START};
use std::process::Command;
use std::time::{Duration, Instant};
use vidar_testkit::http::get_status as http_get;
use vidar_testkit::process::Proc;

use vidar_testkit::VTEST;
/// The shaped rate, each way.
const RATE_MBIT: f64 = 8.0;

#[test]
fn probes_measure_a_shaped_link_through_the_router_and_the_master_plans_with_it() {
    let site = common::shaped_site("links", 213, RATE_MBIT, &["edge-a", "edge-b"]);
    let (ns, dir) = (&site.ns, &site.dir);

    // A camera beside each node (the namespace's on its own loopback), so
    // no video crosses the shaped link.
    let camera = |name: &str, inside: bool| -> (Proc, u16) {
        let program = bin("vidar-camera");
        let mount = format!("{name}={VTEST}");
        let args = ["--port", "0", "--mount", mount.as_str()];
        let cmd = if inside {
            ns.command(&program, &args)
        } else {
            let mut c = Command::new(&program);
            c.args(args);
            c
        };
        let mut p = Proc::spawn_command(dir.path(), name, cmd).expect("spawn a camera");
        let ready = p.wait_ready(START).unwrap_or_else(|e| panic!("{e}"));
        let port = ready.rtsp.expect("a camera announces its RTSP port").port();
        (p, port)
    };
    let (_cam_a, port_a) = camera("ca", true);
    let (_cam_b, port_b) = camera("cb", false);

    let master = site.start_master(&format!(
        "[[cameras]]\ncamera = \"ca\"\nsource = \"rtsp://127.0.0.1:{port_a}/ca\"\nfps = 10\nnode = \"edge-a\"\n\
         [[cameras]]\ncamera = \"cb\"\nsource = \"rtsp://127.0.0.1:{port_b}/cb\"\nfps = 10\nnode = \"edge-b\"\n"
    ));
    let http = master.http;
    let edges = site.start_edges(
        &master.router,
        &[
            ("edge-a", true, 30.0, 30.0, ""),
            ("edge-b", false, 30.0, 30.0, ""),
        ],
    );
    let metrics: Vec<_> = edges.iter().map(|e| e.metrics).collect();

    // Both nodes' reports of the pair, as the master has them.
    let logs = || {
        let mut out: Vec<String> = edges.iter().map(|e| e.proc.tail(3000)).collect();
        out.push(master.proc.tail(3000));
        out.join("\n")
    };
    let reported = || -> Option<[(f64, f64); 2]> {
        let (_, body) = http_get(http, "/api/nodes")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let nodes = v["nodes"].as_array()?;
        let link = |from: &str, to: &str| -> Option<(f64, f64)> {
            let n = nodes.iter().find(|n| n["node"] == from)?;
            let l = n["status"]["links"]
                .as_array()?
                .iter()
                .find(|l| l["to"] == to)?;
            Some((l["mbit_s"].as_f64()?, l["rtt_ms"].as_f64()?))
        };
        Some([link("edge-a", "edge-b")?, link("edge-b", "edge-a")?])
    };
    // The first rounds run while the nodes start their streams and sync
    // (other traffic on the shaped link lowers what a probe gets); the
    // estimate must settle near the shaped rate, and never read above it
    // by more than the bucket's burst allows.
    let within = |mbit: f64| (0.6 * RATE_MBIT..=1.25 * RATE_MBIT).contains(&mbit);
    let t0 = Instant::now();
    let mut seen = Vec::new();
    loop {
        if let Some(l) = reported() {
            if seen.last() != Some(&l) {
                eprintln!(
                    "measured (Mbit/s, RTT ms): edge-a -> edge-b {:?}, edge-b -> edge-a {:?}",
                    l[0], l[1]
                );
                seen.push(l);
            }
            for (who, (mbit, _)) in ["edge-a -> edge-b", "edge-b -> edge-a"].iter().zip(l) {
                assert!(
                    mbit <= 1.25 * RATE_MBIT,
                    "{who}: {mbit:.2} Mbit/s measured over a link shaped to {RATE_MBIT} Mbit/s\n{}",
                    logs()
                );
            }
            if l.iter()
                .all(|(mbit, rtt)| within(*mbit) && *rtt > 0.0 && *rtt < 1000.0)
            {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(150),
            "the measured link did not settle within 0.6-1.25 x {RATE_MBIT} Mbit/s in 150 s: {seen:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // What the probes cost: bytes edge-a sent over 45 s, against the link.
    let probe_bytes = || -> f64 {
        let (_, text) = vidar_testkit::http::get_status_at(metrics[0], "/metrics")
            .unwrap_or_else(|| panic!("edge-a's /metrics at {} did not answer", metrics[0]));
        vidar_runtime::metrics::value(&text, "vidar_link_probe_bytes_total", &[])
            .unwrap_or_else(|| panic!("no vidar_link_probe_bytes_total in\n{text}"))
    };
    let (b0, t) = (probe_bytes(), Instant::now());
    std::thread::sleep(Duration::from_secs(45));
    let bits = (probe_bytes() - b0) * 8.0;
    let share = bits / t.elapsed().as_secs_f64() / (RATE_MBIT * 1e6);
    eprintln!(
        "probes from edge-a: {:.0} bit/s, {:.3} % of the shaped link",
        bits / t.elapsed().as_secs_f64(),
        100.0 * share
    );
    assert!(bits > 0.0, "edge-a sent no probe in 45 s");
    assert!(
        share <= 0.01,
        "probes took {:.2} % of the link (goal: at most 1 %)",
        100.0 * share
    );
}
