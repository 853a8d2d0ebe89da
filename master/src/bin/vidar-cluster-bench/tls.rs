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
    let (mut p99, mut crops, mut sync_rate) = (
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
    );
    for round in 0..rounds {
        for (side, secure) in [(0, false), (1, true)] {
            let r = reid::measure(requests, crop_bytes, secure.then_some(ca.as_path()))?;
            p99[side].push(r.p99);
            crops[side].push(r.crops_s);
            let (rate, _) = sync::measure(records, dir, secure)?;
            sync_rate[side].push(rate);
            eprintln!(
                "round {round} {}: re-ID p99 {:.2} ms, {:.0} crops/s; sync {rate:.0} records/s",
                if secure { "mTLS" } else { "plaintext" },
                r.p99,
                r.crops_s
            );
        }
    }
    let ratio =
        |v: &[Vec<f64>; 2]| -> Vec<f64> { v[0].iter().zip(&v[1]).map(|(a, b)| b / a).collect() };
    let how = format!(
        "{rounds} rounds, plaintext and mTLS interleaved; ratio = mTLS / plaintext per round, median (min-max)"
    );
    for (name, v, fmt) in [
        ("remote re-ID p99 of 8 crops, ms", &p99, 2usize),
        ("remote re-ID crops/s, 4 in flight", &crops, 0),
        ("sync throughput, records/s", &sync_rate, 0),
    ] {
        let r = ratio(v);
        rows.push((
            format!("{name}: plaintext / mTLS (ratio)"),
            format!(
                "{:.*} / {:.*} ({:.3}, {})",
                fmt,
                median(v[0].clone()),
                fmt,
                median(v[1].clone()),
                median(r.clone()),
                spread(&r)
            ),
            how.clone(),
        ));
    }
    Ok(())
}
