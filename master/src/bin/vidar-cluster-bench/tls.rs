//! What mutual TLS costs (issue 16): the re-ID round trip and record sync,
//! plaintext (A) and mTLS through the master's access list (B), interleaved
//! A, B, A, B... so both sides see the same machine load; medians of each
//! side and of the per-round ratios, with their spread.

use std::path::Path;

use anyhow::Result;
use vidar_protocol::NodeId;

use crate::harness::percentile;
use crate::{reid, sync};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.3}-{hi:.3}")
}

/// Runs `rounds` interleaved rounds and adds the table rows.
pub fn compare(
    rounds: usize,
    requests: usize,
    crop_bytes: usize,
    records: usize,
    rows: &mut Vec<(String, String, String)>,
) -> Result<()> {
    let rounds = rounds.max(1);
    let dir = std::env::temp_dir().join(format!("vidar-tls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(rounds, requests, crop_bytes, records, &dir, rows);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(
    rounds: usize,
    requests: usize,
    crop_bytes: usize,
    records: usize,
    dir: &Path,
    rows: &mut Vec<(String, String, String)>,
) -> Result<()> {
    // One CA for the re-ID runs (the sync runs make their own per site).
    let ca = dir.join("reid-ca");
    vidar_link::pki::init_ca(&ca, "reidbench", 30)?;
    for n in ["server", "client"] {
        vidar_link::pki::enroll(&ca, &NodeId::new(n)?, 30)?;
    }
    // Re-ID sides: plaintext peers (direct), plaintext clients through the
    // router (the topology a bundle imposes), mTLS clients through the
    // router's access list.
    let sides = [
        ("plaintext peers", false, false),
        ("plaintext clients", false, true),
        ("mTLS clients", true, true),
    ];
    let mut p99 = [Vec::new(), Vec::new(), Vec::new()];
    let mut crops = [Vec::new(), Vec::new(), Vec::new()];
    let mut sync_rate = [Vec::new(), Vec::new()];
    let mut crashed = [0usize; 3];
    for round in 0..rounds {
        for (side, (name, _, _)) in sides.iter().enumerate() {
            // Each side in a fresh process: zenoh's runtime is per process,
            // and a crash of one side must not end the benchmark.
            let out = std::process::Command::new(std::env::current_exe()?)
                .args(["--reid-side", &side.to_string()])
                .args(["--requests", &requests.to_string()])
                .args(["--crop-bytes", &crop_bytes.to_string()])
                .arg("--ca")
                .arg(&ca)
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let parsed = text.lines().find_map(|l| {
                let v: Vec<f64> = l
                    .strip_prefix("SIDE ")?
                    .split(' ')
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (v.len() == 2).then(|| (v[0], v[1]))
            });
            match parsed {
                Some((p, c)) if out.status.success() => {
                    p99[side].push(p);
                    crops[side].push(c);
                    eprintln!("round {round} {name}: re-ID p99 {p:.2} ms, {c:.0} crops/s");
                }
                _ => {
                    // Rounds stay aligned: a failed run is NaN, left out.
                    p99[side].push(f64::NAN);
                    crops[side].push(f64::NAN);
                    crashed[side] += 1;
                    eprintln!(
                        "round {round} {name}: FAILED ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                            .lines()
                            .last()
                            .unwrap_or("")
                    );
                }
            }
        }
        for (side, secure) in [(0, false), (1, true)] {
            let (rate, _) = sync::measure(records, dir, secure)?;
            sync_rate[side].push(rate);
            let name = if secure { "mTLS" } else { "plaintext" };
            eprintln!("round {round} sync {name}: {rate:.0} records/s");
        }
    }
    let how = format!(
        "{rounds} rounds, sides interleaved in each round; ratio = B / A per round, median (min-max)"
    );
    let table: [(&str, &[f64], &[f64], usize); 5] = [
        (
            "re-ID p99 of 8 crops, ms: A plaintext clients, B mTLS clients",
            &p99[1],
            &p99[2],
            2,
        ),
        (
            "re-ID p99 of 8 crops, ms: A plaintext peers, B mTLS clients",
            &p99[0],
            &p99[2],
            2,
        ),
        (
            "re-ID crops/s, 4 in flight: A plaintext clients, B mTLS clients",
            &crops[1],
            &crops[2],
            0,
        ),
        (
            "re-ID crops/s, 4 in flight: A plaintext peers, B plaintext clients",
            &crops[0],
            &crops[1],
            0,
        ),
        (
            "sync records/s: A plaintext, B mTLS",
            &sync_rate[0],
            &sync_rate[1],
            0,
        ),
    ];
    for (side, (name, _, _)) in sides.iter().enumerate() {
        if crashed[side] > 0 {
            rows.push((
                format!("re-ID {name}: runs that failed"),
                format!("{} of {rounds}", crashed[side]),
                "the side's process exited without a result (see stderr); its rounds are left out of the ratios".into(),
            ));
        }
    }
    for (name, a, b, fmt) in table {
        let r: Vec<f64> = a
            .iter()
            .zip(b)
            .map(|(a, b)| b / a)
            .filter(|x| x.is_finite())
            .collect();
        if r.is_empty() {
            continue;
        }
        let a: Vec<f64> = a.iter().copied().filter(|x| x.is_finite()).collect();
        let b: Vec<f64> = b.iter().copied().filter(|x| x.is_finite()).collect();
        rows.push((
            format!("{name} (ratio)"),
            format!(
                "A {:.*} / B {:.*} ({:.3}, {})",
                fmt,
                median(a),
                fmt,
                median(b),
                median(r.clone()),
                spread(&r)
            ),
            how.clone(),
        ));
    }
    Ok(())
}

/// One re-ID side (0: plaintext peers, 1: plaintext clients, 2: mTLS
/// clients with the CA in `ca`), printed as `SIDE p99_ms crops_per_s`.
pub fn one_side(side: usize, requests: usize, crop_bytes: usize, ca: Option<&Path>) -> Result<()> {
    let (ca, clients) = match side {
        0 => (None, false),
        1 => (None, true),
        _ => (ca, true),
    };
    let r = reid::measure(requests, crop_bytes, ca, clients)?;
    println!("SIDE {} {}", r.p99, r.crops_s);
    Ok(())
}
