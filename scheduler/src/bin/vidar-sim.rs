//! `vidar-sim`: solve one JSON instance, or run the published experiments and
//! write CSV, SVG figures and `RESULTS.md`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[path = "vidar_sim/experiments.rs"]
mod experiments;
#[path = "vidar_sim/measured.rs"]
mod measured;
#[path = "vidar_sim/plot.rs"]
mod plot;
#[path = "vidar_sim/solve.rs"]
mod solve;
#[path = "vidar_sim/timing.rs"]
mod timing;

#[derive(Debug, Parser)]
#[command(
    name = "vidar-sim",
    about = "Vidar scheduler: solve instances, reproduce the published experiments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an algorithm on a JSON instance and print the plan as JSON.
    Solve {
        /// jstsh, jstsh_greedy, nmno, wmno, nmwo, exact | otfa, otfs, tp, lr, br | edgesplit, edgesplit_fix, adaptive_fl, vanilla_fl, splitpipe
        algorithm: String,
        /// Instance file (JSON; see scheduler/README.md).
        instance: PathBuf,
        /// Seed for the random baselines.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Run every experiment; write CSV and SVG under --out and RESULTS.md beside it.
    All {
        /// Output folder for CSV and figures.
        #[arg(long, default_value = "scheduler/results")]
        out: PathBuf,
        /// Fewer seeds and points (CI-sized).
        #[arg(long)]
        quick: bool,
    },
    /// JSTSH's gap to the exact optimum on small instances (links read as
    /// the widest path, and direct rates) as markdown tables.
    Optimality {
        /// Seeded instances per cost model.
        #[arg(long, default_value_t = 300)]
        seeds: u64,
    },
    /// Time the solvers at the sizes and print a markdown table.
    Bench {
        /// Fewer repetitions.
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Solve {
            algorithm,
            instance,
            seed,
        } => solve::run(&algorithm, &instance, seed),
        Command::All { out, quick } => experiments::run_all(&out, quick),
        Command::Optimality { seeds } => {
            print!("{}", measured::optimality_tables(seeds)?);
            Ok(())
        }
        Command::Bench { quick } => {
            print!("{}", timing::run(quick)?);
            Ok(())
        }
    }
}
