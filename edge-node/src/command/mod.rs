//! Subcommands of `vidar-edge`, one module each.

pub mod bench;

pub mod eval;
pub mod probe;
pub mod query;
pub mod run;

use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Sets up `tracing` to stderr: `human` or `json`, level from `RUST_LOG`
/// (default `info`).
pub fn init_logging(format: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "human" => builder.init(),
        "json" => builder.json().init(),
        other => bail!("--log-format {other:?}: expected human or json"),
    }
    Ok(())
}

/// A flag set by SIGINT/SIGTERM.
pub fn shutdown_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// Whether the shutdown flag is set.
pub fn stopping(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}
