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
//! 4. With `--compare-tls ROUNDS`: only the cost of mutual TLS (issue 16):
//!    re-ID round trip and sync throughput, plaintext and mTLS interleaved
//!    (A, B, A, B...) for ROUNDS rounds; medians and the per-round ratios.
//!
//! Needs `ORT_DYLIB_PATH` and `VIDAR_MODEL_DIR` (the edges load their models)
//! and the `vidar-edge`, `vidar-master` and `vidar-camera` binaries next to
//! this one (`cargo build --release --workspace --bins`).
//!
//! One module per measurement (`reid`, `sync`, `reassign`); `harness` starts
//! and stops the processes and reads their HTTP endpoints.

mod harness;
mod reassign;
mod reid;
mod sync;
mod tls;

use anyhow::Result;
use clap::Parser;

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
    /// Measure only what mutual TLS costs: this many interleaved rounds of
    /// plaintext and mTLS (re-ID round trip, then sync of `--records`).
    #[arg(long)]
    compare_tls: Option<usize>,
    /// (Internal, for --compare-tls: one re-ID side in a fresh process.)
    #[arg(long, hide = true)]
    reid_side: Option<usize>,
    /// (Internal: the CA directory of the mTLS side.)
    #[arg(long, hide = true)]
    ca: Option<std::path::PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    if let Some(side) = args.reid_side {
        return tls::one_side(side, args.requests, args.crop_bytes, args.ca.as_deref());
    }
    if let Some(rounds) = args.compare_tls {
        tls::compare(
            rounds,
            args.requests,
            args.crop_bytes,
            args.records,
            &mut rows,
        )?;
        print_rows(rows);
        return Ok(());
    }
    reid::round_trip(args.requests, args.crop_bytes, &mut rows)?;
    if !args.reid_only {
        let dir = std::env::temp_dir().join(format!("vidar-cluster-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let result = sync::throughput(args.records, &dir, &mut rows).and_then(|()| {
            reassign::lag_and_reassignment(args.lag_seconds, args.kills, &dir, &mut rows)
        });
        let _ = std::fs::remove_dir_all(&dir);
        result?;
    }
    print_rows(rows);
    Ok(())
}

fn print_rows(rows: Vec<(String, String, String)>) {
    println!("\n| measurement | value | how |");
    println!("|---|---:|---|");
    for (m, v, how) in rows {
        println!("| {m} | {v} | {how} |");
    }
}
