//! `vidar-master run --config FILE [--check]`: parses arguments, sets up logging
//! and signals, and hands over to [`vidar_master::run`].
//! `vidar-master hash-password`: prints the `password_hash` of a `[[users]]`
//! entry for a password read from stdin.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use vidar_master::MasterConfig;

/// Vidar's master: cluster membership, plans, record sync and query API.
#[derive(Debug, Parser)]
#[command(name = "vidar-master", version)]
struct Cli {
    /// Log format (the filter comes from RUST_LOG, default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the master until SIGINT or SIGTERM.
    Run {
        /// The master's TOML configuration.
        #[arg(long)]
        config: PathBuf,
        /// Only validate the configuration, then exit.
        #[arg(long)]
        check: bool,
    },
    /// Reads a password from stdin (its first line) and prints its hash for
    /// the `password_hash` of a `[[users]]` entry.
    HashPassword {
        /// PBKDF2 iterations (more is slower to log in and to guess).
        #[arg(long, default_value_t = vidar_master::password::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match cli.log_format {
        LogFormat::Human => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    match cli.command {
        Command::HashPassword { iterations } => hash_password(iterations),
        Command::Run { config, check } => {
            let cfg = MasterConfig::load(&config)?;
            if check {
                println!("{}: valid", config.display());
                return Ok(());
            }
            let shutdown = vidar_runtime::Shutdown::new();
            shutdown
                .on_signals()
                .context("watching SIGINT and SIGTERM")?;
            vidar_master::run(&cfg, shutdown)
                .with_context(|| format!("running the master of {}", config.display()))
        }
    }
}

fn hash_password(iterations: u32) -> anyhow::Result<()> {
    use vidar_master::password::{PasswordHash, MAX_ITERATIONS, MIN_ITERATIONS};
    anyhow::ensure!(
        (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations),
        "--iterations {iterations}: {MIN_ITERATIONS}..={MAX_ITERATIONS} allowed"
    );
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("Password (input is shown; pipe it in to hide it):");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "empty password on stdin");
    let hash = PasswordHash::create(password, iterations).map_err(anyhow::Error::msg)?;
    println!("{}", hash.encode());
    Ok(())
}
