//! `vidar-master run --config FILE [--check]`: parses arguments, sets up logging
//! and signals, and hands over to [`vidar_master::run`].
//! `vidar-master hash-password`: prints the `password_hash` of a `[[users]]`
//! entry for a password read from stdin.
//! `vidar-master ca init`, `enroll NODE`, `revoke NODE`: the site's keys
//! (see `vidar_link::pki`).
//! `vidar-master model add|list|promote|rollback`: the re-ID weights the
//! nodes run (see `vidar_master::models`).
//! `vidar-master jobs submit|list|cancel`: analytics jobs (see
//! `vidar_master::jobs`).

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
    /// Copies the global database into a new file while the master runs
    /// (a consistent snapshot, checked before it is called good). Restore:
    /// stop the master, copy the file over the database, start it.
    Backup {
        /// The master's config (its `database`).
        #[arg(
            long,
            conflicts_with = "database",
            required_unless_present = "database"
        )]
        config: Option<PathBuf>,
        /// Or the database file itself.
        #[arg(long)]
        database: Option<PathBuf>,
        /// The new file (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
    /// Checks a database (SQLite's full integrity check); exit 1 if damaged.
    CheckDatabase {
        /// The database file.
        database: PathBuf,
    },
    /// The model registry: the re-ID weights every node runs.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Analytics jobs: DAGs of stages placed on the nodes by OTFA.
    Jobs {
        #[command(subcommand)]
        command: vidar_master::jobs::cli::JobsCommand,
    },
    /// The site certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Issues (or renews) a node's bundle: its key and certificate from the
    /// site CA, the CA, and the master's public key. Adds it to the roster;
    /// a running master whose bundle is DIR/master lets it in within 2 s.
    Enroll {
        /// The node id (its `node_id`, and its certificate's name).
        node: String,
        /// The CA directory written by `ca init`.
        #[arg(long, default_value = "vidar-ca")]
        dir: PathBuf,
        /// Certificate validity, days.
        #[arg(long, default_value_t = vidar_link::pki::DEFAULT_DAYS)]
        days: u32,
    },
    /// Takes a node off the roster and deletes its bundle from the CA
    /// directory; a running master whose bundle is DIR/master cuts it off
    /// within 2 s.
    Revoke {
        /// The node id.
        node: String,
        /// The CA directory written by `ca init`.
        #[arg(long, default_value = "vidar-ca")]
        dir: PathBuf,
    },
}

/// Where the model registry is: the master's config, or the folder itself.
#[derive(Debug, clap::Args)]
struct RegistryArgs {
    /// The master's config (its `models_dir`, default `models` beside the database).
    #[arg(long, conflicts_with = "dir", required_unless_present = "dir")]
    config: Option<PathBuf>,
    /// Or the registry folder itself.
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl RegistryArgs {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        match (&self.config, &self.dir) {
            (_, Some(d)) => Ok(d.clone()),
            (Some(c), None) => Ok(MasterConfig::load(c)?.models_dir()),
            (None, None) => anyhow::bail!("--config or --dir is required"),
        }
    }
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Adds an ONNX file as a new version of a manifest model's weights
    /// (copied into the registry under its sha256; nothing is deployed).
    Add {
        /// The ONNX file: the model's graph with new weights.
        file: PathBuf,
        /// The manifest model it is weights for.
        #[arg(long, default_value = "osnet-x0-25-msmt17-combineall")]
        model: String,
        /// The version's name (unique; never replaced).
        #[arg(long)]
        version: String,
        /// The version it was trained from.
        #[arg(long)]
        parent: Option<String>,
        /// A measurement that comes with it, `NAME=VALUE` (repeatable), e.g.
        /// `rank1=0.91` from `vidar-edge eval reid`.
        #[arg(long = "metric", value_name = "NAME=VALUE")]
        metrics: Vec<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Lists the versions and the deployments, the one in force last.
    List {
        /// As JSON (the registry file).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Deploys a version to every node: a running master publishes it,
    /// signed, within 2 s; each node checks and swaps it in without a restart.
    Promote {
        /// The version.
        version: String,
        /// The metric the version must beat the deployed one on (as added
        /// with --metric, measured on your held-out set).
        #[arg(long, default_value = "rank1")]
        gate: String,
        /// Deploy without comparing (a version with no measurement, or a
        /// deliberate step back).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Deploys again the version in force before the current one.
    Rollback {
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Creates the site CA, the master's signing key and the master's bundle
    /// (DIR/master: point the master's `[cluster] bundle` at it).
    Init {
        /// Where to write it (created 0700; refuses an existing CA).
        #[arg(long, default_value = "vidar-ca")]
        dir: PathBuf,
        /// The site (`[cluster] site` of every process).
        #[arg(long, default_value = "default")]
        site: String,
        /// Validity of the master's and nodes' certificates, days.
        #[arg(long, default_value_t = vidar_link::pki::DEFAULT_DAYS)]
        days: u32,
        /// Also enroll these nodes (repeatable), as `enroll` would.
        #[arg(long = "enroll", value_name = "NODE")]
        nodes: Vec<String>,
        /// If DIR already holds a CA, keep it (exit 0) and only enroll the
        /// `--enroll` nodes that have no bundle yet: for container starts.
        #[arg(long)]
        if_missing: bool,
    },
    /// Renews the master's certificate (a new key and certificate in
    /// DIR/master) keeping the site's signing key and the roster: nodes need
    /// nothing new. Restart the master to use it. (A node's certificate is
    /// renewed by enrolling it again.)
    RenewMaster {
        /// The CA directory written by `ca init`.
        #[arg(long, default_value = "vidar-ca")]
        dir: PathBuf,
        /// Certificate validity, days.
        #[arg(long, default_value_t = vidar_link::pki::DEFAULT_DAYS)]
        days: u32,
    },
}

fn main() -> anyhow::Result<()> {
    // Before any thread starts: a flat RSS for months (two malloc arenas, a
    // fixed mmap threshold; see `vidar_runtime::heap::steady` and the soak in
    // docs/benchmarks.md). Measured at no cost to re-ID round trips or sync.
    let steady = vidar_runtime::heap::steady();
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
    if steady != Some(true) {
        tracing::debug!(
            ?steady,
            "the allocator's steady settings did not take (not glibc?)"
        );
    }
    match cli.command {
        Command::HashPassword { iterations } => hash_password(iterations),
        Command::Backup {
            config,
            database,
            to,
        } => {
            let db = match (config, database) {
                (_, Some(db)) => db,
                (Some(c), None) => MasterConfig::load(&c)?.database,
                (None, None) => anyhow::bail!("--config or --database is required"),
            };
            let b = vidar_store::maintenance::backup(&db, &to)
                .with_context(|| format!("backing up {}", db.display()))?;
            println!(
                "{}: {} bytes, checked, in {:.1} s",
                b.path.display(),
                b.bytes,
                b.took.as_secs_f64()
            );
            Ok(())
        }
        Command::Model { command } => model(command),
        Command::Jobs { command } => vidar_master::jobs::cli::run(command),
        Command::CheckDatabase { database } => {
            vidar_store::maintenance::check(&database, vidar_store::maintenance::Check::Full)?;
            println!("{}: ok", database.display());
            Ok(())
        }
        Command::Ca {
            command:
                CaCommand::Init {
                    dir,
                    site,
                    days,
                    nodes,
                    if_missing,
                },
        } => {
            let ids = nodes
                .iter()
                .map(|n| vidar_protocol::NodeId::new(n).with_context(|| format!("--enroll {n:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let exists = dir.join("ca.key").exists();
            if if_missing && exists {
                let kept = vidar_link::pki::ca_site(&dir)?;
                anyhow::ensure!(
                    kept == site,
                    "{}: holds the CA of site {kept:?}, not {site:?}",
                    dir.display()
                );
                for id in &ids {
                    if !dir
                        .join("nodes")
                        .join(id.as_str())
                        .join("bundle.toml")
                        .exists()
                    {
                        vidar_link::pki::enroll(&dir, id, days)?;
                        println!("{id}: enrolled");
                    }
                }
                println!("{}: CA kept", dir.display());
                return Ok(());
            }
            let master = vidar_link::pki::init_ca(&dir, &site, days)?;
            for id in &ids {
                vidar_link::pki::enroll(&dir, id, days)?;
                println!("{id}: enrolled");
            }
            println!(
                "site {site:?}: CA in {}; master bundle in {}\n\
                 next: set [cluster] bundle = {:?} and listen = [\"tls/0.0.0.0:7447\"] in the master's config,\n\
                 then `vidar-master enroll NODE --dir {}` for each edge node",
                dir.display(),
                master.display(),
                master.display().to_string(),
                dir.display()
            );
            Ok(())
        }
        Command::Ca {
            command: CaCommand::RenewMaster { dir, days },
        } => {
            let master = vidar_link::pki::renew_master(&dir, days)?;
            // Loads as the master will (and says so if it does not).
            vidar_link::Bundle::load(&master)?;
            println!(
                "master: certificate renewed in {} for {days} days; restart the master to use it (nodes keep their bundles)",
                master.display()
            );
            Ok(())
        }
        Command::Enroll { node, dir, days } => {
            let id =
                vidar_protocol::NodeId::new(&node).with_context(|| format!("node id {node:?}"))?;
            let bundle = vidar_link::pki::enroll(&dir, &id, days)?;
            println!(
                "{node}: bundle in {}\n\
                 copy it to the node (e.g. /etc/vidar/bundle, key.pem mode 600), set [cluster] bundle to it and\n\
                 connect = [\"tls/MASTER:7447\"]; a running master whose bundle is {} lets {node} in within 2 s",
                bundle.display(),
                dir.join("master").display()
            );
            Ok(())
        }
        Command::Revoke { node, dir } => {
            let id =
                vidar_protocol::NodeId::new(&node).with_context(|| format!("node id {node:?}"))?;
            if vidar_link::pki::revoke(&dir, &id)? {
                println!(
                    "{node}: off the roster; a running master whose bundle is {} cuts it off within 2 s",
                    dir.join("master").display()
                );
            } else {
                println!("{node}: was not enrolled");
            }
            Ok(())
        }
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

fn model(command: ModelCommand) -> anyhow::Result<()> {
    use vidar_master::models::Registry;
    let print = |r: &Registry| {
        for v in &r.versions {
            let metrics: Vec<String> = v.metrics.iter().map(|(k, x)| format!("{k}={x}")).collect();
            println!(
                "version {}  model {}  parent {}  sha256 {}  {} bytes  {}",
                v.version,
                v.model,
                v.parent.as_deref().unwrap_or("-"),
                v.sha256,
                v.size,
                metrics.join(" ")
            );
        }
        for d in &r.deployments {
            println!(
                "deployment {}  {}  {}  at {}",
                d.serial, d.how, d.version, d.issued_ms
            );
        }
        match r.deployed() {
            Some((d, v)) => println!("in force: {} ({}), serial {}", v.version, v.model, d.serial),
            None => println!("in force: none (nodes run the weights they ship with)"),
        }
    };
    match command {
        ModelCommand::Add {
            file,
            model,
            version,
            parent,
            metrics,
            registry,
        } => {
            let dir = registry.dir()?;
            let mut parsed = std::collections::BTreeMap::new();
            for m in &metrics {
                let (k, v) = m
                    .split_once('=')
                    .with_context(|| format!("--metric {m:?}: NAME=VALUE expected"))?;
                let x: f64 = v
                    .trim()
                    .parse()
                    .with_context(|| format!("--metric {m:?}: {v:?} is not a number"))?;
                parsed.insert(k.trim().to_owned(), x);
            }
            let v = Registry::edit(&dir, |r| {
                r.add(&dir, &file, &model, &version, parent.as_deref(), parsed)
                    .cloned()
            })?;
            println!(
                "{}: version {} of {} ({} bytes, sha256 {}) added to {}; deploy it with `vidar-master model promote {}`",
                file.display(),
                v.version,
                v.model,
                v.size,
                v.sha256,
                dir.display(),
                v.version
            );
            Ok(())
        }
        ModelCommand::List { json, registry } => {
            let r = Registry::load(&registry.dir()?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print(&r);
            }
            Ok(())
        }
        ModelCommand::Promote {
            version,
            gate,
            force,
            registry,
        } => {
            let dir = registry.dir()?;
            let d = Registry::edit(&dir, |r| {
                r.promote(&version, (!force).then_some(gate.as_str()))
                    .cloned()
            })?;
            println!(
                "version {} deployed (serial {}): a running master publishes it within 2 s",
                d.version, d.serial
            );
            Ok(())
        }
        ModelCommand::Rollback { registry } => {
            let dir = registry.dir()?;
            let d = Registry::edit(&dir, |r| r.rollback().cloned())?;
            println!(
                "rolled back to version {} (serial {}): a running master publishes it within 2 s",
                d.version, d.serial
            );
            Ok(())
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
