//! `vidar-edge bench trajectories`: identity accuracy from pixels to
//! trajectory, against ground truth.
//!
//! `vidar-camera` (a child process) serves a composite scene per camera:
//! labelled person images (any folder in the `labels.csv` layout) walking
//! over an empty street, data-set camera k on scene camera k, each person
//! reaching the next camera after a transit time; it writes the ground truth
//! (every box and who it is) as it sends the frames. The whole node runs in
//! this process on the RTSP streams (ingest, detection, tracking, re-ID,
//! store) for `--seconds`; then its database is scored by `vidar-trajeval`:
//! detection recall and precision, MOTA and IDF1 per camera, pairwise
//! cross-camera identity precision/recall/F1, completeness per person,
//! purity per identity, and identities given to two people at once.
//!
//! Each `--models` entry is one run on the same scene (same seed), one after
//! the other.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_protocol::UnixMs;
use vidar_trajeval::{EvalConfig, GtFrame, Report, Sighting};

use crate::config::EdgeConfig;
use crate::node;

/// Arguments of `bench trajectories`.
#[derive(Args, Debug)]
pub struct TrajectoriesBenchArgs {
    /// Labelled folder (labels.csv with file,person_id,camera) whose people walk the scene.
    #[arg(long)]
    pub people: PathBuf,
    /// Cameras (scene camera k shows the data set's camera k).
    #[arg(long, default_value_t = 2)]
    pub cameras: u32,
    /// Seconds the node runs per model.
    #[arg(long, default_value_t = 90)]
    pub seconds: u64,
    /// Edge nodes: 1 runs the node in this process; more run a real site (a
    /// `vidar-master` and that many `vidar-edge` processes over zenoh on
    /// loopback, camera k at node k mod N), scored as the global database
    /// answers (every node's records, identities as the master merged them).
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Seconds at the start not scored (streams connecting).
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Re-ID models to compare, comma-separated (manifest names).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "osnet-x0-25-msmt17-combineall,mobilenetv2-deepsort"
    )]
    pub models: Vec<String>,
    /// Scene seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// People in the scene.
    #[arg(long, default_value_t = 12)]
    pub count: u32,
    /// Mean transit time between cameras, seconds.
    #[arg(long, default_value_t = 8.0)]
    pub transit: f64,
    /// Mean time between arrivals, seconds.
    #[arg(long, default_value_t = 3.0)]
    pub gap: f64,
    /// Extra `composite:` parameters (`key=value&...`), e.g. a background image.
    /// Default: people 140-220 px tall on the 768x576 street, the size at which
    /// SSD-MobileNet finds most pasted data-set crops.
    #[arg(long, default_value = "near=220&far=140")]
    pub scene: String,
    /// The detector's score threshold: pasted data-set crops score lower on
    /// SSD-MobileNet (0.2-0.9) than real pedestrians (0.7-0.95 on vtest.avi).
    #[arg(long, default_value_t = 0.3)]
    pub score_threshold: f32,
    /// ONNX Runtime intra-op threads per session (0 = one per core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The detector's precision (`[detector] precision`: fp32, int8, or fp16
    /// with TensorRT; default: the float model).
    #[arg(long)]
    pub precision: Option<String>,
    /// Keep the work folder (databases, ground truth) here instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Extra gallery settings, `key=value` (TOML values), comma-separated,
    /// e.g. `crowd_step=0.08,ambiguity_margin=0.05`.
    #[arg(long, value_delimiter = ',')]
    pub gallery: Vec<String>,
    /// Motion-gated detection (`[motion] enabled`, the node's default: on).
    #[arg(long, value_enum, default_value = "on")]
    pub motion: super::cameras::Toggle,
    /// Adaptive per-camera detection rates (`[detection_rate] adaptive`, the node's default: off).
    #[arg(long, value_enum, default_value = "off")]
    pub adaptive: super::cameras::Toggle,
    /// With motion gating, frames in a row the tracker may predict over
    /// when only tracked people move along their paths (`[motion]
    /// track_skip`; default: the node's).
    #[arg(long)]
    pub track_skip: Option<u32>,
    /// The cameras' pixel layout (`pixel_format`; auto: I420 from the
    /// decoder). One node only: a site's cameras come with the master's plan.
    #[arg(long, value_enum, default_value = "auto")]
    pub pixels: super::pipeline::Pixels,
    /// Other weights for the re-ID model(s): an ONNX file of the same graph
    /// (`vidar-train adapt --out`). The node starts with them as it would
    /// after the master deployed them (an applied model refresh). One node.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Only people with ids in this range walk the scene (`LO-HI`), e.g.
    /// ids a model was not adapted on.
    #[arg(long)]
    pub ids: Option<vidar_reid::eval::IdRange>,
}

/// One model's run.
#[derive(Debug, Serialize)]
struct Run {
    model: String,
    /// The weights it ran with, when not the shipped ones (`--weights`).
    weights: Option<String>,
    /// Edge nodes (more than one: a site with a master).
    nodes: u32,
    /// Merges the master decided (a site only).
    merges: Option<u64>,
    match_threshold: f32,
    seconds: u64,
    /// Tracks the node recorded without an identity (too short to decide).
    unidentified_tracks: usize,
    /// Frames the detector ran on, per camera (offered: the ground truth's frames).
    detected_frames: Vec<(String, u64)>,
    /// How each camera's frames fared (the node in this process only).
    load: Vec<CameraLoad>,
    report: Report,
}

/// How one camera's frames fared in the node, whole run.
#[derive(Debug, Serialize)]
struct CameraLoad {
    camera: String,
    /// Frames decoded.
    frames: u64,
    /// Frames its queue dropped (analysis fell behind).
    dropped: u64,
    /// Frames analysed (detected, or tracked over).
    analysed: u64,
    /// Capture-to-result latency, ms (histogram quantiles).
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    /// Its detection interval at the end.
    interval: u64,
}

/// The gallery threshold a model is run with: the calibrated default for
/// the default model, the old 0.8 for the MobileNetV2 alternative (its own
/// calibration, see docs/benchmarks.md).
fn threshold_for(model: &str) -> f32 {
    if model == "mobilenetv2-deepsort" {
        0.8
    } else {
        vidar_reid::GalleryConfig::default().match_threshold
    }
}

/// Runs the benchmark.
pub fn trajectories(args: TrajectoriesBenchArgs) -> Result<()> {
    if !args.people.join("labels.csv").is_file() {
        bail!(
            "{}: no labels.csv (a folder of person images with file,person_id,camera is needed, e.g. ../shared/data/reid/cuhk01)",
            args.people.display()
        );
    }
    if args.cameras == 0 || args.seconds <= args.warmup || args.nodes == 0 {
        bail!("--cameras and --nodes must be > 0 and --seconds above --warmup");
    }
    if args.nodes > 1 && args.pixels != super::pipeline::Pixels::Auto {
        bail!("--pixels is for one node: a site's cameras come with the master's plan (--nodes 1)");
    }
    if args.nodes > 1 && args.weights.is_some() {
        bail!("--weights is for one node (--nodes 1): a site's nodes take weights from the master (`vidar-master model promote`)");
    }
    let tmp;
    let work = match &args.keep {
        Some(p) => {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
            p.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let mut runs = Vec::new();
    for model in &args.models {
        let dir = work.join(model);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("gt"))?;
        eprintln!(
            "{model}: {} s of {} cameras of {} people ...",
            args.seconds,
            args.cameras,
            args.people.display()
        );
        runs.push(run_one(&args, model, &dir)?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        print_tables(&args, &runs);
    }
    Ok(())
}

fn run_one(args: &TrajectoriesBenchArgs, model: &str, dir: &Path) -> Result<Run> {
    let gt_dir = dir.join("gt");
    let people = args
        .people
        .canonicalize()
        .with_context(|| format!("{}", args.people.display()))?;
    let mut extra = if args.scene.is_empty() {
        String::new()
    } else {
        format!("&{}", args.scene)
    };
    if let Some(ids) = &args.ids {
        extra.push_str(&format!("&ids={ids}"));
    }
    let mounts: Vec<String> = (0..args.cameras)
        .map(|k| {
            format!(
                "c{k}=composite:?people={}&camera={k}&cameras={}&seed={}&count={}&transit={}&gap={}{extra}",
                people.display(),
                args.cameras,
                args.seed,
                args.count,
                args.transit,
                args.gap
            )
        })
        .collect();
    let camera = super::harness::spawn_camera_with(
        &["--ground-truth".into(), gt_dir.display().to_string()],
        mounts,
    )?;
    let port = camera.1;
    let threshold = threshold_for(model);
    let refresh = match &args.weights {
        Some(w) => Some(applied_weights(w, model, &dir.join("refresh"))?),
        None => None,
    };
    let mut node_toml = format!(
        "{refresh}[models.runtime]\nintra_threads = {threads}\n[detector]\nmax_batch = 1\nscore_threshold = {score}\n{precision}\
         [embedder]\nmodel = \"{model}\"\n[gallery]\nmatch_threshold = {threshold}\nconfident_threshold = {confident}\n",
        refresh = refresh
            .as_ref()
            .map(|d| format!("[models]\nrefresh_dir = {:?}\n", d.display().to_string()))
            .unwrap_or_default(),
        threads = args.threads,
        score = args.score_threshold,
        precision = super::harness::precision_line(args.precision.as_ref()),
        confident = threshold.max(vidar_reid::GalleryConfig::default().confident_threshold),
    );
    for setting in &args.gallery {
        let Some((key, value)) = setting.split_once('=') else {
            bail!("--gallery {setting:?}: expected key=value");
        };
        node_toml.push_str(&format!("{} = {}\n", key.trim(), value.trim()));
    }
    node_toml.push_str(&format!(
        "[motion]\nenabled = {}\n{}[detection_rate]\nadaptive = {}\n",
        args.motion == super::cameras::Toggle::On,
        args.track_skip
            .map(|k| format!("track_skip = {k}\n"))
            .unwrap_or_default(),
        args.adaptive == super::cameras::Toggle::On
    ));
    let mut load = Vec::new();
    let (start_ms, end_ms, detected_frames, recorded, unidentified, merges) = if args.nodes > 1 {
        let r = super::site::run(
            dir,
            port,
            args.cameras,
            args.nodes,
            args.seconds,
            &node_toml,
        )?;
        drop(camera);
        (
            r.start_ms,
            r.end_ms,
            r.detected,
            r.sightings,
            r.unidentified,
            Some(r.merges),
        )
    } else {
        let db = dir.join("edge.db");
        let mut ran = run_here(args, port, &db, &node_toml)?;
        drop(camera);
        load = std::mem::take(&mut ran.load);
        let (recorded, unidentified) = super::site::sightings_of(&db, args.cameras, Ok)?;
        (
            ran.start_ms,
            ran.end_ms,
            ran.detected,
            recorded,
            unidentified,
            None,
        )
    };

    // Ground truth, and the frames scored: every frame sent after the
    // warm-up while the node ran (the node analyses every frame it can; a
    // frame it saw nobody in must still count its misses).
    let from = start_ms.plus(Duration::from_secs(args.warmup));
    let mut gt: Vec<GtFrame> = Vec::new();
    for k in 0..args.cameras {
        let cam = format!("c{k}");
        let read = |ext: &str| {
            let p = gt_dir.join(format!("{cam}.{ext}"));
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
        };
        let frames =
            vidar_trajeval::parse_ground_truth(&cam, &read("frames.csv")?, &read("gt.csv")?)
                .with_context(|| format!("ground truth of {cam}"))?;
        gt.extend(
            frames
                .into_iter()
                .filter(|f| f.unix_ms >= from && f.unix_ms <= end_ms),
        );
    }
    let processed: Vec<(String, UnixMs)> =
        gt.iter().map(|f| (f.camera.clone(), f.unix_ms)).collect();
    let sightings: Vec<Sighting> = recorded
        .into_iter()
        .filter_map(|mut s| {
            s.path.retain(|p| p.0 >= from);
            (!s.path.is_empty()).then_some(s)
        })
        .collect();
    let report =
        vidar_trajeval::evaluate(&gt, &sightings, Some(&processed), &EvalConfig::default())?;
    Ok(Run {
        model: model.to_owned(),
        weights: args.weights.as_ref().map(|w| w.display().to_string()),
        nodes: args.nodes,
        merges,
        match_threshold: threshold,
        seconds: args.seconds - args.warmup,
        unidentified_tracks: unidentified,
        detected_frames,
        load,
        report,
    })
}

/// Runs the node in this process on the cameras at RTSP `port` for
/// `--seconds`, recording to `db`: when it started and stopped, and the
/// frames each camera's detector ran on.
fn run_here(args: &TrajectoriesBenchArgs, port: u16, db: &Path, node_toml: &str) -> Result<Ran> {
    let mut toml = format!(
        "node_id = \"bench\"\ndatabase = \"{db}\"\nmetrics_addr = \"127.0.0.1:0\"\n{node_toml}",
        db = db.display(),
    );
    for k in 0..args.cameras {
        toml.push_str(&format!(
            "[[cameras]]\ncamera = \"c{k}\"\nsource = \"rtsp://127.0.0.1:{port}/c{k}\"\ntransport = \"tcp\"\n{}",
            args.pixels.toml_line()
        ));
    }
    let config = EdgeConfig::parse(&toml, "bench trajectories")?;
    if args.weights.is_some() {
        // The node falls back to the shipped weights (with a warning) when
        // it cannot take a refresh: a run labelled with --weights must not.
        let refresher = node::refresher(&config, node::model_store(&config)?);
        if refresher.restore().is_none() {
            bail!("the node does not take --weights (the warning above says why)");
        }
    }
    let built = node::build(&config)?;
    let cams = built.cameras.clone();
    let statuses = Arc::clone(&built.statuses);
    let stop = vidar_runtime::Shutdown::new();
    let st = stop.clone();
    let analysis = built.analysis;
    let start_ms = UnixMs::now();
    let worker = std::thread::Builder::new()
        .name("analysis".into())
        .spawn(move || analysis.run_with_status(&st, &statuses))?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let end_ms = UnixMs::now();
    stop.trigger("benchmark done");
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("analysis panicked"))?;
    drop(built.store);
    let streams = built.statuses.snapshot();
    let load = cams
        .iter()
        .map(|(c, m)| {
            let counters = streams
                .iter()
                .find(|(name, _)| name.as_str() == c.as_str())
                .map(|(_, s)| s.counters)
                .unwrap_or_default();
            CameraLoad {
                camera: c.to_string(),
                frames: counters.frames,
                dropped: counters.dropped,
                analysed: m.analysed.load(Ordering::Relaxed),
                latency_p50_ms: m.latency.quantile(0.5) * 1000.0,
                latency_p99_ms: m.latency.quantile(0.99) * 1000.0,
                interval: m.detection_interval.load(Ordering::Relaxed),
            }
        })
        .collect();
    Ok(Ran {
        start_ms,
        end_ms,
        detected: cams
            .iter()
            .map(|(c, m)| (c.to_string(), m.detected.load(Ordering::Relaxed)))
            .collect(),
        load,
    })
}

/// When the node in this process ran, and the frames each camera's
/// detector ran on.
struct Ran {
    start_ms: UnixMs,
    end_ms: UnixMs,
    detected: Vec<(String, u64)>,
    load: Vec<CameraLoad>,
}

/// A refresh folder in which `weights` are the applied refresh of `model`
/// (its file under its sha256, and `applied.json`), as a node keeps one the
/// master deployed: the node starts with them, and refuses them (naming
/// why) if they are not the model's graph.
fn applied_weights(weights: &Path, model: &str, dir: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(weights)
        .with_context(|| format!("reading --weights {}", weights.display()))?;
    let sha256 = vidar_models::store::sha256_bytes(&bytes);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(format!("{sha256}.onnx")), &bytes)
        .with_context(|| format!("writing into {}", dir.display()))?;
    let refresh = vidar_protocol::messages::ModelRefresh {
        serial: 1,
        model: model.to_string(),
        version: "bench-weights".into(),
        parent: None,
        sha256,
        size: bytes.len() as u64,
        issued_ms: UnixMs::now(),
    };
    std::fs::write(
        dir.join("applied.json"),
        serde_json::to_vec_pretty(&refresh)?,
    )
    .with_context(|| format!("writing into {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

fn f(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.3}"))
}

fn print_tables(args: &TrajectoriesBenchArgs, runs: &[Run]) {
    println!(
        "Trajectories: {} cameras of a composite scene of {}{} (seed {}, {} people, transit {} s, gap {} s, {}), \
         detector score threshold {}, {} s scored per model after {} s warm-up; {}, \
         one ONNX Runtime thread per session.\n",
        args.cameras,
        args.people.display(),
        args.ids
            .as_ref()
            .map(|i| format!(", ids {i}"))
            .unwrap_or_default(),
        args.seed,
        args.count,
        args.transit,
        args.gap,
        args.scene,
        args.score_threshold,
        args.seconds - args.warmup,
        args.warmup,
        if args.nodes > 1 {
            format!(
                "a site of a vidar-master and {} vidar-edge processes over zenoh (camera k at node k mod {}) on RTSP, scored as the global database answers",
                args.nodes, args.nodes
            )
        } else {
            "the whole node over RTSP".to_string()
        }
    );
    println!("| re-ID model (threshold) | det. recall | det. precision | cross-camera identity P / R / F1 | completeness | purity | concurrent conflicts | sightings | no identity |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let p = &r.report;
        println!(
            "| {}{} ({}) | {} | {} | {} / {} / {} | {} | {} | {} | {} | {} |",
            r.model,
            r.weights
                .as_ref()
                .map(|w| format!(" with the weights of {w}"))
                .unwrap_or_default(),
            r.match_threshold,
            f(p.detection.recall),
            f(p.detection.precision),
            f(p.cross_camera.precision),
            f(p.cross_camera.recall),
            f(p.cross_camera.f1),
            f(p.mean_completeness),
            f(p.mean_purity),
            p.concurrent_conflicts,
            p.sightings,
            r.unidentified_tracks
        );
    }
    for r in runs {
        if let Some(m) = r.merges {
            println!(
                "\n{}: the master decided {m} merges (its own and nodes' joins).",
                r.model
            );
        }
    }
    println!();
    println!("| re-ID model | camera | frames detected (whole run) / scored | MOTA | IDF1 | ID switches | tracks | time offset ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in runs {
        for c in &r.report.cameras {
            let detected = r
                .detected_frames
                .iter()
                .find(|d| d.0 == c.camera)
                .map_or(0, |d| d.1);
            println!(
                "| {} | {} | {detected} / {} | {} | {} | {} | {} | {} |",
                r.model,
                c.camera,
                c.detection.gt_frames,
                f(c.mota),
                f(c.idf1),
                c.id_switches,
                c.tracks,
                c.time_offset_ms
            );
        }
    }
}
