//! Runs the re-ID benchmark and prints its table (until `vidar-edge bench reid` wires it).
//!
//! `cargo run --release -p vidar-reid --example bench_reid -- [--iterations N] [--threads N] [--frame WxH]`
//! Needs ORT_DYLIB_PATH and VIDAR_MODEL_DIR (the Makefile exports both).

use std::process::ExitCode;

use vidar_models::{ModelStore, RuntimeConfig, SessionFactory};
use vidar_reid::bench::{run, BenchConfig};

fn main() -> ExitCode {
    let mut config = BenchConfig::default();
    let mut runtime = RuntimeConfig::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().map(String::as_str).unwrap_or("");
        let parsed = match flag.as_str() {
            "--iterations" => value.parse().map(|n| config.iterations = n).is_ok(),
            "--threads" => value.parse().map(|n| runtime.intra_threads = n).is_ok(),
            "--frame" => value
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .map(|s| config.frame_size = s)
                .is_some(),
            _ => false,
        };
        if !parsed {
            eprintln!("usage: bench_reid [--iterations N] [--threads N] [--frame WxH] (bad {flag} {value})");
            return ExitCode::from(2);
        }
    }
    let report = ModelStore::from_env()
        .and_then(|store| SessionFactory::new(store, runtime))
        .map_err(vidar_reid::ReidError::from)
        .and_then(|factory| run(&factory, &config));
    match report {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench reid: {e}");
            ExitCode::FAILURE
        }
    }
}
