//! `vidar-edge run --config FILE`: the edge node itself.

use crate::config::EdgeConfig;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The node's TOML configuration.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    pub check: bool,
    /// Print a one-line summary (fps, tracks, records, drops per camera) every
    /// this many seconds; 0 = never.
    #[arg(long, default_value_t = 0)]
    pub status_every: u64,
}

/// Loads the config and runs the node until SIGINT/SIGTERM.
pub fn run(args: RunArgs) -> Result<()> {
    let config = EdgeConfig::load(&args.config)?;
    if args.check {
        println!(
            "{}: ok ({} cameras)",
            args.config.display(),
            config.cameras.len()
        );
        return Ok(());
    }
    let stop = super::shutdown_on_signals()?;
    crate::node::run(config, stop, args.status_every)
}
