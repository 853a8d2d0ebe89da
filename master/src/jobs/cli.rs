//! `vidar-master jobs submit|list|cancel`: the job book from the command
//! line (a running master places what is submitted within 2 s).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::config::MasterConfig;

/// Where the job book is: the master's config, or the folder itself.
#[derive(Debug, clap::Args)]
pub struct BookArgs {
    /// The master's config (its `jobs_dir`, default `jobs` beside the database).
    #[arg(long, conflicts_with = "dir", required_unless_present = "dir")]
    config: Option<PathBuf>,
    /// Or the job folder itself.
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl BookArgs {
    fn book(&self) -> anyhow::Result<super::Book> {
        let dir = match (&self.config, &self.dir) {
            (_, Some(d)) => d.clone(),
            (Some(c), None) => MasterConfig::load(c)?.jobs_dir(),
            (None, None) => anyhow::bail!("--config or --dir is required"),
        };
        Ok(super::Book::new(dir))
    }
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Checks a job file and adds it; a running master places it within 2 s
    /// (`GET /api/jobs` shows where).
    Submit {
        /// The job file (TOML).
        file: PathBuf,
        /// Replace a job with the same id.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        book: BookArgs,
    },
    /// The jobs and their stages.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        book: BookArgs,
    },
    /// Removes a job; a running master stops its stages within 2 s.
    Cancel {
        /// The job id.
        id: String,
        #[command(flatten)]
        book: BookArgs,
    },
}

/// Runs a `vidar-master jobs` command.
pub fn run(command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::Submit {
            file,
            replace,
            book,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let book = book.book()?;
            let job = book
                .submit(&text, &file.display().to_string(), replace)
                .map_err(anyhow::Error::msg)?;
            println!(
                "job {} ({} stages) added to {}; a running master places it within 2 s",
                job.id,
                job.stages.len(),
                book.dir().display()
            );
            Ok(())
        }
        JobsCommand::List { json, book } => {
            let c = book.book()?.load();
            if json {
                println!("{}", serde_json::to_string_pretty(&c.jobs)?);
            } else {
                for j in c.jobs.values() {
                    let stages: Vec<String> = j
                        .stages
                        .iter()
                        .map(|s| format!("{}:{}", s.name, s.kind.as_str()))
                        .collect();
                    println!("{}  rate {}  {}", j.id, j.rate, stages.join(" "));
                }
            }
            for (file, why) in &c.refused {
                eprintln!("refused {file}: {why}");
            }
            Ok(())
        }
        JobsCommand::Cancel { id, book } => {
            book.book()?.cancel(&id).map_err(anyhow::Error::msg)?;
            println!("job {id} cancelled; a running master stops its stages within 2 s");
            Ok(())
        }
    }
}
