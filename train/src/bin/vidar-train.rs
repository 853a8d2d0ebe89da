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
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use clap::{Parser, Subcommand};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vidar_models::ModelStore;
use vidar_reid::eval::{self, IdRange, Protocol};
use vidar_reid::{EmbedderConfig, Embedding};
use vidar_train::data::{self, Preprocess, Sample};
use vidar_train::loss::batch_hard_triplet;
use vidar_train::split::Step;
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
    Cuts(ModelArgs),
    /// Adapts a re-ID model to labelled crops.
    Adapt(AdaptArgs),
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
struct AdaptArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder of crops with a labels.csv (file,person_id,camera): each
    /// (person, camera) is one pseudo-identity, as a node's track is; no
    /// label is shared across cameras.
    #[arg(long)]
    data: PathBuf,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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

fn cuts(args: &ModelArgs) -> Result<()> {
    let Loaded {
        graph, pre, name, ..
    } = load(args)?;
    let x = candle_core::Tensor::zeros((1, 3, pre.height, pre.width), DType::F32, &Device::Cpu)?;
    let total: usize = graph.params().iter().map(|p| p.var.elem_count()).sum();
    println!("{name}: {} nodes, {total} parameters", graph.len());
    println!("| cut (nodes on the edge node) | values crossing per crop | bytes per crop (f32) | edge node's parameters |");
    println!("|---:|---:|---:|---:|");
    let cuts = graph.cuts();
    let first = cuts[0];
    for c in &cuts {
        let act = graph.run(first, *c, &x)?;
        let node: usize = graph
            .params_of(0..c.at)
            .iter()
            .map(|&p| graph.params()[p].var.elem_count())
            .sum();
        println!(
            "| {} | {} | {} | {node} |",
            c.at,
            act.elem_count(),
            act.elem_count() * 4
        );
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
            let person = u32::try_from(l.person)
                .ok()
                .and_then(|p| p.checked_mul(16))
                .with_context(|| format!("person id {} is too large", l.person))?;
            Ok(Sample {
                chw: pre.file(&dir.join(&l.file))?,
                label: person + l.camera.min(15),
                camera: l.camera,
            })
        })
        .collect()
}

fn rank1(graph: &Graph, samples: &[Sample], pre: &Preprocess) -> Result<f64> {
    let (h, w) = (pre.height, pre.width);
    let mut embeddings = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(64) {
        let data: Vec<f32> = chunk.iter().flat_map(|s| s.chw.iter().copied()).collect();
        let x = candle_core::Tensor::from_vec(data, (chunk.len(), 3, h, w), &Device::Cpu)?;
        let out = graph.forward(&x)?.to_dtype(DType::F32)?;
        for row in out.to_vec2::<f32>()? {
            embeddings.push(Embedding::normalized(&row));
        }
    }
    let people: Vec<u64> = samples.iter().map(|s| u64::from(s.label / 16)).collect();
    let cameras: Vec<u32> = samples.iter().map(|s| s.camera).collect();
    let m = eval::evaluate(
        &embeddings,
        &people,
        &cameras,
        Protocol {
            query_camera: Some(0),
        },
    )?;
    Ok(m.rank1)
}

fn adapt(args: &AdaptArgs) -> Result<()> {
    let Loaded {
        graph,
        mut pre,
        name,
        ..
    } = load(&args.model)?;
    let cut = graph.cut(args.cut)?;
    let t0 = Instant::now();
    let samples = read(&args.data, args.ids, &mut pre)?;
    let held_out = match args.eval_ids {
        Some(r) => read(&args.data, Some(r), &mut pre)?,
        None => Vec::new(),
    };
    eprintln!(
        "{name}: {} training crops, {} held out, read in {:.1} s; cut after {} of {} nodes",
        samples.len(),
        held_out.len(),
        t0.elapsed().as_secs_f64(),
        cut.at,
        graph.len()
    );
    let params = ParamsAdamW {
        lr: args.lr,
        weight_decay: args.weight_decay,
        ..ParamsAdamW::default()
    };
    let node_vars = graph.vars(&graph.params_of(0..cut.at));
    let trainer_vars = graph.vars(&graph.params_of(cut.at..graph.len()));
    let mut node_opt = AdamW::new(node_vars, params.clone())?;
    let mut trainer_opt = AdamW::new(trainer_vars, params)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    if !held_out.is_empty() {
        println!(
            "epoch 0: held-out rank-1 {:.4}",
            rank1(&graph, &held_out, &pre)?
        );
    }
    for epoch in 1..=args.epochs {
        let start = Instant::now();
        let batches = data::epoch(&samples, args.batch_ids, args.per_id, &mut rng);
        let (mut loss_sum, mut up, mut down) = (0.0, 0usize, 0usize);
        for b in &batches {
            let (x, labels) = data::tensor(&samples, b, &pre, args.flip, &mut rng, &Device::Cpu)?;
            let step = Step::split(&graph, cut, &x, !args.freeze_node_side, |out| {
                batch_hard_triplet(out, &labels, args.margin)
            })?;
            if let Some(g) = &step.node {
                node_opt.step(g)?;
            }
            trainer_opt.step(&step.trainer)?;
            loss_sum += step.loss;
            up += step.up_bytes;
            down += step.down_bytes;
        }
        let mut line = format!(
            "epoch {epoch}: {} batches, loss {:.4}, {:.1} s, activations {:.1} MB up, gradients {:.1} MB down",
            batches.len(),
            loss_sum / batches.len().max(1) as f64,
            start.elapsed().as_secs_f64(),
            up as f64 / 1e6,
            down as f64 / 1e6
        );
        if !held_out.is_empty() {
            line += &format!(", held-out rank-1 {:.4}", rank1(&graph, &held_out, &pre)?);
        }
        println!("{line}");
    }
    let bytes = graph.to_onnx()?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {} ({} bytes)", args.out.display(), bytes.len());
    Ok(())
}
