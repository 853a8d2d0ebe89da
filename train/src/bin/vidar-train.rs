//! `vidar-train`: the training service's commands.
//!
//! - `cuts`: where a manifest model can be split between a node and the
//!   trainer, with what crosses each cut and how many parameters each side
//!   holds (EdgeSplit's inputs).
//! - `adapt`: adapts a re-ID model to a site's own labelled crops (a folder
//!   with `labels.csv`, as `vidar-edge eval reid` reads), every step split
//!   at `--cut` as EdgeSplit splits it, and writes the adapted weights into
//!   the same ONNX graph (measure it with `vidar-edge eval reid --weights`,
//!   deploy it with `vidar-master model add`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::{Parser, Subcommand};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vidar_models::ModelStore;
use vidar_reid::eval::{self, IdRange};
use vidar_reid::EmbedderConfig;
use vidar_train::adapt::{self, AdaptConfig, Schedule};
use vidar_train::data::{self, Preprocess, Sample};
use vidar_train::Graph;

#[derive(Parser, Debug)]
#[command(
    name = "vidar-train",
    version,
    about = "Vidar's training service (EdgeSplit)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Where a model can be cut, and what crosses each cut.
    Cuts(CutsArgs),
    /// Adapts a re-ID model to labelled crops.
    Adapt(Box<AdaptArgs>),
}

#[derive(clap::Args, Debug)]
struct ModelArgs {
    /// Manifest embedding model (default: the node's default re-ID model).
    #[arg(long)]
    model: Option<String>,
    /// Start from these weights (an ONNX file of the model's graph) instead of the manifest's.
    #[arg(long)]
    weights: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct CutsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Also time the edge node's side at each cut on this machine: its
    /// forward pass, and forward plus backward, per crop (batches of
    /// `--batch`, median of `--rounds`), EdgeSplit's compute profile.
    #[arg(long)]
    profile: bool,
    /// Crops per timed batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed rounds per cut.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(clap::Args, Debug)]
struct AdaptArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder of crops with a labels.csv (file,person_id,camera): each
    /// (person, camera) is one pseudo-identity, as a node's track is; no
    /// label is shared across cameras.
    #[arg(
        long,
        required_unless_present = "training_file",
        conflicts_with = "training_file"
    )]
    data: Option<PathBuf>,
    /// A node's training file (`[training] collect`), each of its tracklets
    /// one pseudo-identity; repeat for several nodes (a centralised run:
    /// the crops are read where they lie).
    #[arg(long)]
    training_file: Vec<PathBuf>,
    /// Labelled folder for --eval-ids (default: --data).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Person ids to train on, `A-B`.
    #[arg(long)]
    ids: Option<IdRange>,
    /// Held-out person ids to report cross-camera rank-1 on after every epoch (never trained on).
    #[arg(long)]
    eval_ids: Option<IdRange>,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Pseudo-identities per batch (P).
    #[arg(long, default_value_t = 16)]
    batch_ids: usize,
    /// Crops per pseudo-identity in a batch (K).
    #[arg(long, default_value_t = 2)]
    per_id: usize,
    /// Learning rate (AdamW).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// How the learning rate moves: `constant`, or `cosine` (from --lr
    /// down to 0 over the epochs, step by step).
    #[arg(long, value_enum, default_value_t = Schedule::Constant)]
    lr_schedule: Schedule,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Triplet margin.
    #[arg(long, default_value_t = 0.3)]
    margin: f64,
    /// Nodes of the graph on the edge node's side of the split (a cut of
    /// `vidar-train cuts`; 0: the trainer runs everything).
    #[arg(long, default_value_t = 0)]
    cut: usize,
    /// Leave the edge node's side as it is (train only after the cut).
    #[arg(long)]
    freeze_node_side: bool,
    /// Merge pseudo-identities of two cameras whose mean embeddings are
    /// mutual nearest neighbours at or above this cosine (re-estimated
    /// before every epoch), and draw batches across cameras.
    #[arg(long)]
    cross_camera: Option<f32>,
    /// Probability of mirroring a crop.
    #[arg(long, default_value_t = 0.5)]
    flip: f64,
    /// Random seed (batches and mirroring).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the adapted model.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Cuts(a) => cuts(&a),
        Command::Adapt(a) => adapt(&a),
    }
}

struct Loaded {
    graph: Graph,
    pre: Preprocess,
    name: String,
}

fn load(args: &ModelArgs) -> Result<Loaded> {
    let store = ModelStore::from_env()?;
    let name = args
        .model
        .clone()
        .unwrap_or_else(|| EmbedderConfig::default().model);
    let spec = store
        .manifest()
        .model(&name)
        .with_context(|| format!("model {name}"))?;
    let path = match &args.weights {
        Some(w) => w.clone(),
        None => store.verified_path(&spec.file)?,
    };
    let graph = Graph::load(&path, &Device::Cpu, DType::F32)?;
    let pre = Preprocess::for_model(spec)?;
    Ok(Loaded { graph, pre, name })
}

fn cuts(args: &CutsArgs) -> Result<()> {
    let Loaded {
        graph, pre, name, ..
    } = load(&args.model)?;
    let total: usize = graph.params().iter().map(|p| p.var.elem_count()).sum();
    println!("{name}: {} nodes, {total} parameters", graph.len());
    let mut header = "| cut (nodes on the edge node) | values crossing per crop | bytes per crop (f32) | edge node's parameters |".to_string();
    let mut rule = "|---:|---:|---:|---:|".to_string();
    if args.profile {
        header += " node forward, ms per crop | node forward + backward, ms per crop |";
        rule += "---:|---:|";
    }
    println!("{header}\n{rule}");
    let cuts = graph.cuts();
    let first = graph.start();
    let one = candle_core::Tensor::zeros((1, 3, pre.height, pre.width), DType::F32, &Device::Cpu)?;
    let batch = args.batch.max(1);
    let x =
        candle_core::Tensor::randn(0f32, 1f32, (batch, 3, pre.height, pre.width), &Device::Cpu)?;
    for c in &cuts {
        let act = graph.run(first, *c, &one)?;
        let node: usize = graph
            .params_of(0..c.at)
            .iter()
            .map(|&p| graph.params()[p].var.elem_count())
            .sum();
        let mut line = format!(
            "| {} | {} | {} | {node} |",
            c.at,
            act.elem_count(),
            act.elem_count() * 4
        );
        if args.profile {
            let (mut fwd, mut both) = (Vec::new(), Vec::new());
            for _ in 0..args.rounds.max(1) {
                let t = Instant::now();
                let a = graph.run(first, *c, &x)?;
                fwd.push(t.elapsed().as_secs_f64());
                if c.at > 0 {
                    a.sum_all()?.backward()?;
                }
                both.push(t.elapsed().as_secs_f64());
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2] * 1000.0 / batch as f64
            };
            line += &format!(" {:.1} | {:.1} |", median(&mut fwd), median(&mut both));
        }
        println!("{line}");
    }
    Ok(())
}

fn read(dir: &std::path::Path, ids: Option<IdRange>, pre: &mut Preprocess) -> Result<Vec<Sample>> {
    let mut labels = eval::read_labels(dir)?;
    if let Some(r) = ids {
        labels.retain(|l| r.contains(l.person));
    }
    if labels.is_empty() {
        bail!(
            "{}: no image in the chosen ids",
            dir.join("labels.csv").display()
        );
    }
    labels
        .iter()
        .map(|l| {
            // One pseudo-identity per (person, camera): person * 16 + camera.
            let person = u32::try_from(l.person)
                .ok()
                .and_then(|p| p.checked_mul(16))
                .with_context(|| format!("{}: person id {} is too large", l.file, l.person))?;
            if l.camera >= 16 {
                bail!(
                    "{}: camera {}: at most 16 cameras (0-15) in a folder",
                    l.file,
                    l.camera
                );
            }
            Ok(Sample {
                chw: pre.file(&dir.join(&l.file))?,
                label: person + l.camera,
                camera: l.camera,
                person: Some(l.person),
            })
        })
        .collect()
}

fn adapt(args: &AdaptArgs) -> Result<()> {
    let Loaded {
        graph,
        mut pre,
        name,
        ..
    } = load(&args.model)?;
    let t0 = Instant::now();
    let samples = match &args.data {
        Some(dir) => read(dir, args.ids, &mut pre)?,
        None => {
            let (samples, cameras) = data::from_training_files(&args.training_file, &mut pre)?;
            eprintln!("cameras: {}", cameras.join(", "));
            samples
        }
    };
    let held_out = match (
        args.eval_ids,
        args.eval_data.as_ref().or(args.data.as_ref()),
    ) {
        (Some(r), Some(dir)) => read(dir, Some(r), &mut pre)?,
        (Some(_), None) => bail!("--eval-ids needs --eval-data (a labelled folder)"),
        (None, _) => Vec::new(),
    };
    eprintln!(
        "{name}: {} training crops, {} held out, read in {:.1} s; cut after {} of {} nodes",
        samples.len(),
        held_out.len(),
        t0.elapsed().as_secs_f64(),
        args.cut,
        graph.len()
    );
    let config = AdaptConfig {
        epochs: args.epochs,
        batch_ids: args.batch_ids,
        per_id: args.per_id,
        lr: args.lr,
        schedule: args.lr_schedule,
        weight_decay: args.weight_decay,
        margin: args.margin,
        cut: args.cut,
        freeze_node_side: args.freeze_node_side,
        flip: args.flip,
        cross_camera: args.cross_camera,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    adapt::adapt(&graph, &pre, &samples, &held_out, &config, &mut rng, |r| {
        let mut line = format!("epoch {}", r.epoch);
        if r.epoch > 0 {
            line += &format!(
                ": {} batches, loss {:.4}, {:.1} s, activations {:.1} MB up, gradients {:.1} MB down",
                r.batches,
                r.loss,
                r.seconds,
                r.up_bytes as f64 / 1e6,
                r.down_bytes as f64 / 1e6
            );
        }
        if let Some((merged, pure)) = r.merged {
            line += &format!(", {merged} labels merge pseudo-identities across cameras");
            if let Some(p) = pure {
                line += &format!(" ({p} of them one person)");
            }
        }
        if let Some(r1) = r.held_out_rank1 {
            line += &format!(", held-out rank-1 {r1:.4}");
        }
        println!("{line}");
    })?;
    let bytes = graph.to_onnx()?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {} ({} bytes)", args.out.display(), bytes.len());
    Ok(())
}
