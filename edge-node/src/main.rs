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
    }
}
