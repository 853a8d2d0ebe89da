//! `vidar-edge eval reid`: re-identification accuracy of a manifest model on a
//! labelled folder, through the node's own pre-processing and ONNX Runtime
//! path (the embedder the node runs; the whole image is the crop).
//!
//! The protocol and the numbers are `vidar_reid::eval`'s.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Instant;
use vidar_config::Config;
use vidar_models::image::RgbFrame;
use vidar_models::{ModelStore, RuntimeConfig, SessionFactory};
use vidar_protocol::BBox;
use vidar_reid::eval::{self, IdRange, Protocol};
use vidar_reid::{Crop, Embedder, EmbedderConfig, Embedding};

/// Arguments of `eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub what: EvalWhat,
}

/// What to evaluate.
#[derive(Subcommand, Debug)]
pub enum EvalWhat {
    /// Cross-camera re-ID: rank-1/5, mAP, true-match rate at 1 % and 0.1 % false matches.
    Reid(ReidEvalArgs),
}

/// Arguments of `eval reid`.
#[derive(Args, Debug)]
pub struct ReidEvalArgs {
    /// Folder of images with a labels.csv (columns file,person_id,camera; others ignored).
    #[arg(long)]
    pub data: PathBuf,
    /// Manifest embedding model (default: the node's default re-ID model).
    #[arg(long)]
    pub model: Option<String>,
    /// Other weights for that model: an ONNX file of the same graph (a
    /// candidate for `vidar-master model add`, measured before it is
    /// promoted). Its graph is checked against the model's.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Only these person ids, `A-B` inclusive.
    #[arg(long)]
    pub ids: Option<IdRange>,
    /// Only images of this camera query (default: every image queries the other cameras).
    #[arg(long)]
    pub query_camera: Option<u32>,
    /// Crops per inference run.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Embed each image and its mirror image (the node's `[embedder] flip`,
    /// off by default): `--flip true`.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub flip: bool,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs the chosen evaluation.
pub fn run(args: EvalArgs) -> Result<()> {
    match args.what {
        EvalWhat::Reid(a) => reid(a),
    }
}

fn reid(args: ReidEvalArgs) -> Result<()> {
    let mut labels = eval::read_labels(&args.data)?;
    if let Some(range) = args.ids {
        labels.retain(|l| range.contains(l.person));
        if labels.is_empty() {
            bail!(
                "{}: no image of a person in --ids {}-{}",
                args.data.join("labels.csv").display(),
                range.lo,
                range.hi
            );
        }
    }
    let config = EmbedderConfig {
        model: args
            .model
            .clone()
            .unwrap_or_else(|| EmbedderConfig::default().model),
        max_batch: args.batch,
        flip: args.flip,
        ..EmbedderConfig::default()
    };
    let runtime = RuntimeConfig {
        intra_threads: args.threads,
        ..RuntimeConfig::default()
    };
    let mut store = ModelStore::from_env()?;
    // Weights of our own: a store in a private temporary folder whose
    // manifest has the model's file replaced by them.
    let _weights_dir;
    if let Some(w) = &args.weights {
        let bytes =
            std::fs::read(w).with_context(|| format!("reading --weights {}", w.display()))?;
        let dir = tempfile::tempdir().context("a temporary folder for --weights")?;
        let file = "weights.onnx";
        std::fs::write(dir.path().join(file), &bytes)
            .with_context(|| format!("copying --weights {}", w.display()))?;
        let manifest = store.manifest().refreshed(
            &config.model,
            file,
            &vidar_models::store::sha256_bytes(&bytes),
            bytes.len() as u64,
        )?;
        store = ModelStore::new(dir.path(), manifest);
        _weights_dir = dir;
    }
    let factory = SessionFactory::new(store, runtime)?;
    let mut embedder = config
        .build(&factory)
        .with_context(|| format!("loading re-ID model {}", config.model))?;
    let mut embeddings: Vec<Embedding> = Vec::with_capacity(labels.len());
    let mut out = Vec::new();
    let start = Instant::now();
    for chunk in labels.chunks(args.batch.max(1)) {
        let mut images = Vec::with_capacity(chunk.len());
        for l in chunk {
            let path = args.data.join(&l.file);
            let img = image::ImageReader::open(&path)
                .with_context(|| format!("{}: cannot open (listed in labels.csv)", path.display()))?
                .with_guessed_format()
                .with_context(|| format!("{}: cannot read", path.display()))?
                .decode()
                .with_context(|| format!("{}: not a decodable image", path.display()))?
                .to_rgb8();
            images.push(img);
        }
        let crops = images
            .iter()
            .map(|img| {
                let frame = RgbFrame::packed(img.width(), img.height(), img.as_raw())?;
                Ok(Crop {
                    frame: frame.into(),
                    bbox: BBox {
                        x: 0.0,
                        y: 0.0,
                        w: img.width() as f32,
                        h: img.height() as f32,
                    },
                })
            })
            .collect::<Result<Vec<_>, vidar_models::ImageError>>()?;
        embedder.embed_into(&crops, &mut out)?;
        embeddings.append(&mut out);
    }
    let seconds = start.elapsed().as_secs_f64();
    let people: Vec<u64> = labels.iter().map(|l| l.person).collect();
    let cameras: Vec<u32> = labels.iter().map(|l| l.camera).collect();
    let metrics = eval::evaluate(
        &embeddings,
        &people,
        &cameras,
        Protocol {
            query_camera: args.query_camera,
        },
    )?;
    let crops_per_s = labels.len() as f64 / seconds.max(1e-9);
    if args.json {
        let value = serde_json::json!({
            "data": args.data.display().to_string(),
            "model": embedder.name(),
            "model_tag": embedder.model_tag(),
            "weights": args.weights.as_ref().map(|w| w.display().to_string()),
            "ids": args.ids.map(|r| format!("{}-{}", r.lo, r.hi)),
            "query_camera": args.query_camera,
            "crops_per_s": crops_per_s,
            "metrics": metrics,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "re-ID evaluation of {}{} on {}{} ({} crops/s end to end, decode included)\n",
            embedder.name(),
            args.weights
                .as_ref()
                .map(|w| format!(" with the weights of {}", w.display()))
                .unwrap_or_default(),
            args.data.display(),
            args.ids
                .map(|r| format!(", ids {}-{}", r.lo, r.hi))
                .unwrap_or_default(),
            crops_per_s.round()
        );
        println!("{metrics}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up folder: 2 people x 2 cameras, solid colours.
    fn folder(dir: &std::path::Path) {
        let mut csv = String::from("file,person_id,camera\n");
        for (p, colour) in [(1u8, [200u8, 30, 30]), (2, [30, 30, 200])] {
            for cam in 0..2u8 {
                let name = format!("{p}_{cam}.png");
                let img = image::RgbImage::from_pixel(64, 128, image::Rgb(colour));
                img.save(dir.join(&name)).expect("png");
                csv.push_str(&format!("{name},{p},{cam}\n"));
            }
        }
        std::fs::write(dir.join("labels.csv"), csv).expect("labels");
    }

    fn args(dir: &std::path::Path, weights: Option<PathBuf>) -> ReidEvalArgs {
        ReidEvalArgs {
            data: dir.to_path_buf(),
            model: None,
            weights,
            ids: None,
            query_camera: None,
            batch: 4,
            flip: false,
            threads: 1,
            json: true,
        }
    }

    #[test]
    fn candidate_weights_are_evaluated_as_the_model_and_another_graph_is_refused() {
        vidar_testkit::require_node_env();
        let tmp = tempfile::tempdir().expect("tmp");
        folder(tmp.path());
        let models = PathBuf::from(std::env::var_os("VIDAR_MODEL_DIR").expect("models"));
        reid(args(
            tmp.path(),
            Some(models.join("reid_osnet_x0_25_market1501.onnx")),
        ))
        .expect("the same graph, other weights");
        let e = reid(args(
            tmp.path(),
            Some(models.join("ssd_mobilenet_v2_coco_quant.onnx")),
        ))
        .expect_err("a detector as re-ID weights");
        let e = format!("{e:#}");
        assert!(e.contains("osnet-x0-25-msmt17-combineall"), "{e}");
        let e = reid(args(tmp.path(), Some(tmp.path().join("missing.onnx")))).expect_err("no file");
        assert!(format!("{e:#}").contains("missing.onnx"), "{e:#}");
    }
}
