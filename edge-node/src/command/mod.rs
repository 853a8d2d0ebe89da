//! Subcommands of `vidar-edge`, one module each.

pub mod bench;

pub mod eval;
pub mod probe;
pub mod query;
pub mod run;

use anyhow::{bail, Result};

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

/// The process's shutdown token, triggered by SIGINT/SIGTERM.
pub fn shutdown_on_signals() -> Result<vidar_runtime::Shutdown> {
    let shutdown = vidar_runtime::Shutdown::new();
    shutdown.on_signals()?;
    Ok(shutdown)
}
