//! `vidar-edge`: the Vidar edge node. This file only parses arguments and
//! dispatches to one module per subcommand under `command/`.

use anyhow::Result;
use clap::{Parser, Subcommand};

use vidar_edge_node::command;

#[derive(Parser, Debug)]
#[command(
    name = "vidar-edge",
    version,
    about = "Vidar edge node: ingest, detect, track, re-identify, record"
)]
struct Cli {
    /// Log format: human (default) or json.
    #[arg(long, global = true, default_value = "human")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the edge node from a TOML config until SIGINT/SIGTERM.
    Run(command::run::RunArgs),
    /// Query the local database: trajectories, sightings, identities.
    Query(command::query::QueryArgs),
    /// Watch one stream and print its stats once a second (for installers).
    Probe(command::probe::ProbeArgs),
    /// Whole-system benchmarks that print a table.
    Bench(Box<command::bench::BenchArgs>),
    /// Accuracy evaluations on labelled data (re-ID).
    Eval(command::eval::EvalArgs),
    /// The training samples a node collected (`[training] collect`).
    Training(TrainingArgs),
}

#[derive(clap::Args, Debug)]
struct TrainingArgs {
    #[command(subcommand)]
    command: TrainingCommand,
}

#[derive(Subcommand, Debug)]
enum TrainingCommand {
    /// Writes the samples as JPEGs and a labels.csv (a person is a
    /// tracklet; `vidar-edge eval reid --data OUT` reads the layout).
    Export {
        /// The samples' file (`[training] path`, default `training.db` beside the database).
        #[arg(long)]
        file: std::path::PathBuf,
        /// The folder to write (created 0700).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Writes a labelled folder (a labels.csv with file,person_id,camera,
    /// as `eval reid` reads) into a samples' file as a node would have
    /// collected it: one tracklet per person and camera. For seeding a
    /// node with an operator's labelled crops, and for benchmarks.
    Import {
        /// The labelled folder.
        #[arg(long)]
        data: std::path::PathBuf,
        /// Person ids, `A-B`.
        #[arg(long, default_value = "0-18446744073709551615")]
        ids: String,
        /// Only ids with `id % OF == PART`, as `PART/OF` (several nodes
        /// each taking a share of one folder).
        #[arg(long, default_value = "0/1")]
        part: String,
        /// The samples' file to write (created or added to).
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    command::init_logging(&cli.log_format)?;
    match cli.command {
        Command::Run(args) => command::run::run(args),
        Command::Probe(args) => command::probe::run(args),
        Command::Query(args) => command::query::run(args),
        Command::Bench(args) => command::bench::run(*args),
        Command::Eval(args) => command::eval::run(args),
        Command::Training(TrainingArgs {
            command: TrainingCommand::Export { file, out },
        }) => {
            let (tracklets, images) = vidar_edge_node::training::export(&file, &out)?;
            println!(
                "{}: {tracklets} tracklets, {images} images written to {}",
                file.display(),
                out.display()
            );
            Ok(())
        }
        Command::Training(TrainingArgs {
            command:
                TrainingCommand::Import {
                    data,
                    ids,
                    part,
                    file,
                },
        }) => {
            let pair = |s: &str, sep: char, what: &str| -> Result<(u64, u64)> {
                let (a, b) = s
                    .split_once(sep)
                    .ok_or_else(|| anyhow::anyhow!("--{what} {s:?}: A{sep}B expected"))?;
                let n = |v: &str| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|e| anyhow::anyhow!("--{what} {s:?}: {e}"))
                };
                Ok((n(a)?, n(b)?))
            };
            let (from, to) = pair(&ids, '-', "ids")?;
            let (p, of) = pair(&part, '/', "part")?;
            let share = vidar_edge_node::training::Share {
                from,
                to,
                part: p,
                of,
            };
            let bounds = vidar_store::training::TrainingBounds {
                max_samples: 1_000_000,
                retention: std::time::Duration::from_secs(365 * 24 * 3600),
            };
            let (t, n) = vidar_edge_node::training::import(&data, share, &file, bounds)?;
            println!(
                "{}: {t} tracklets, {n} images from {}",
                file.display(),
                data.display()
            );
            Ok(())
        }
    }
}
