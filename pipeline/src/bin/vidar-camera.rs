//! `vidar-camera`: serves test RTSP streams (synthetic scenes, composite
//! scenes of labelled people with ground truth, or looped files).
//!
//! ```text
//! vidar-camera --port 8554 --mount cam1='synthetic:?width=1280&height=720&fps=30&seed=1' \
//!              --mount street=/usr/share/doc/opencv-doc/examples/data/vtest.avi
//! vidar-camera --ground-truth /tmp/gt \
//!              --mount cam0='composite:?people=../shared/data/reid/cuhk01&camera=0&seed=7' \
//!              --mount cam1='composite:?people=../shared/data/reid/cuhk01&camera=1&seed=7'
//! vidar-camera encode --source 'synthetic:?width=1920&height=1080' --frames 300 --out clip.mkv
//! vidar-camera mot-truth --source 'composite:?people=DIR&camera=1' --frames 600 --out gt.txt
//! ```

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use vidar_pipeline::camera::{self, CameraConfig, Mount};
use vidar_pipeline::composite::serve::{CompositeMount, CompositeServeConfig};
use vidar_pipeline::composite::{self, Background, CompositeScene, CompositeSpec};
use vidar_pipeline::{SceneSpec, Source};

/// A `--mount` argument: one the camera module serves, or a composite scene.
#[derive(Debug, Clone)]
enum MountArg {
    Plain(Mount),
    Composite { name: String, spec: CompositeSpec },
}

fn parse_mount(s: &str) -> Result<MountArg, String> {
    let (name, src) = s
        .split_once('=')
        .ok_or_else(|| format!("mount {s:?} is not NAME=SOURCE"))?;
    match composite::parse_source(src) {
        None => Mount::parse(s).map(MountArg::Plain),
        Some(spec) => {
            // Same name rule as the camera module's mounts.
            Mount::parse(&format!("{name}=synthetic:"))?;
            let spec = spec.map_err(|e| format!("mount {name}: {e}"))?;
            Ok(MountArg::Composite {
                name: name.to_string(),
                spec,
            })
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "vidar-camera",
    version,
    about = "A test IP camera: RTSP server of synthetic scenes or looped video files"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// RTSP port (0 picks a free one; the URL is printed).
    #[arg(long, default_value_t = 8554)]
    port: u16,
    /// A mount point NAME=SOURCE; SOURCE is `synthetic:?width=..&height=..&fps=..&seed=..&people=..`,
    /// `composite:?people=DIR&camera=K&seed=S&fps=F&count=N&transit=T&...` or a video file path.
    /// A file may end in `#start=SECONDS` (where it begins); a file or synthetic scene in
    /// `#phase=SECONDS` (where its frames fall in each frame period of this camera's clock,
    /// whoever connects and whenever, as a real camera's do). Repeatable. Composite mounts cannot be mixed with the others in one process.
    /// Default: cam1 = 1280x720@30 synthetic scene.
    #[arg(long = "mount", value_parser = parse_mount)]
    mounts: Vec<MountArg>,
    /// Folder for the ground truth of composite mounts: `<mount>.gt.csv`
    /// (frame,unix_ms,person_id,x,y,w,h,visibility), `<mount>.frames.csv`
    /// (frame,unix_ms) and `<mount>.people.csv` (person_id,camera,file).
    #[arg(long)]
    ground_truth: Option<PathBuf>,
    /// H.264 bitrate of synthetic mounts, kbit/s.
    #[arg(long, default_value_t = 4000)]
    bitrate_kbps: u32,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Encode a synthetic scene to an H.264 file (.mkv or .h264).
    Encode {
        /// The synthetic source spec.
        #[arg(long, default_value = "synthetic:")]
        source: String,
        /// Number of frames.
        #[arg(long, default_value_t = 300)]
        frames: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the MOT-format ground truth (frame,id,x,y,w,h,1,-1,-1,-1; frames
    /// from 1) of a composite scene mount, without GStreamer unless the
    /// background is a video.
    MotTruth {
        /// The composite source spec.
        #[arg(long)]
        source: String,
        /// Number of frames.
        #[arg(long, default_value_t = 600)]
        frames: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Render frames of a composite scene mount to PNG files (with the ground
    /// truth boxes outlined when --boxes), to look at a scene.
    Snapshot {
        /// The composite source spec.
        #[arg(long)]
        source: String,
        /// Frame numbers, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0,50,100")]
        frames: Vec<u64>,
        /// Outline the ground-truth boxes (green; red when under half visible).
        #[arg(long)]
        boxes: bool,
        /// Output folder (`frame-N.png`).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match args.command {
        Some(Command::Encode {
            source,
            frames,
            out,
        }) => {
            let spec = match Source::parse(&source)? {
                Source::Synthetic(spec) => spec,
                _ => bail!("encode takes a synthetic: source, got {source:?}"),
            };
            camera::encode_scene_to_file(&spec, frames, &out)
                .with_context(|| format!("encoding {frames} frames to {}", out.display()))?;
            println!("wrote {}", out.display());
            return Ok(());
        }
        Some(Command::MotTruth {
            source,
            frames,
            out,
        }) => {
            let spec = match composite::parse_source(&source) {
                Some(spec) => spec?,
                None => bail!("mot-truth takes a composite: source, got {source:?}"),
            };
            let scene = CompositeScene::open(spec).context("loading the composite scene")?;
            composite::write_mot_ground_truth(&scene, frames, &out)?;
            println!("wrote {}", out.display());
            return Ok(());
        }
        Some(Command::Snapshot {
            source,
            frames,
            boxes,
            out,
        }) => return snapshot(&source, &frames, boxes, &out),
        None => {}
    }
    let (plain, composites): (Vec<_>, Vec<_>) = args
        .mounts
        .into_iter()
        .partition(|m| matches!(m, MountArg::Plain(_)));
    if !composites.is_empty() {
        if !plain.is_empty() {
            bail!(
                "composite mounts cannot share a vidar-camera with synthetic or file mounts; \
                 run a second vidar-camera for those"
            );
        }
        return serve_composites(
            args.address,
            args.port,
            args.bitrate_kbps,
            args.ground_truth,
            composites,
        );
    }
    if args.ground_truth.is_some() {
        bail!("--ground-truth needs at least one composite: mount");
    }
    let mut mounts: Vec<Mount> = plain
        .into_iter()
        .filter_map(|m| match m {
            MountArg::Plain(m) => Some(m),
            MountArg::Composite { .. } => None,
        })
        .collect();
    if mounts.is_empty() {
        mounts.push(Mount {
            name: "cam1".into(),
            source: camera::MountSource::Synthetic(SceneSpec::default()),
            phase_s: None,
        });
    }
    let config = CameraConfig {
        address: args.address,
        port: args.port,
        mounts,
        bitrate_kbps: args.bitrate_kbps,
    };
    let cam = camera::serve(&config).context("starting the RTSP server")?;
    let mut out = std::io::stdout().lock();
    for (url, m) in cam.urls().iter().zip(&config.mounts) {
        let what = match &m.source {
            camera::MountSource::Synthetic(s) => format!(
                "synthetic {}x{}@{} seed {}",
                s.width, s.height, s.fps, s.seed
            ),
            camera::MountSource::File(p, start) => format!("{} from {start} s", p.display()),
        };
        let what = match m.phase_s {
            Some(p) => format!("{what}, frames at phase {p} s"),
            None => what,
        };
        writeln!(out, "serving {url} ({what})")?;
    }
    ready(&mut out, &config.address, cam.port())?;
    drop(out);
    let (tx, rx) = sync_channel(4);
    watch_signals(tx)?;
    let stop = rx.recv().unwrap_or(Stop::Signal);
    drop(cam);
    match stop {
        Stop::Signal => Ok(()),
        Stop::Failure(msg) => bail!(msg),
    }
}

/// Writes frames of a composite scene as PNG files.
fn snapshot(source: &str, frames: &[u64], boxes: bool, out: &std::path::Path) -> Result<()> {
    let spec = match composite::parse_source(source) {
        Some(spec) => spec?,
        None => bail!("snapshot takes a composite: source, got {source:?}"),
    };
    let scene = CompositeScene::open(spec).context("loading the composite scene")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (w, h) = scene.size();
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    for &n in frames {
        let truth = scene.render(n, &mut buf, w as usize * 3);
        if boxes {
            for b in &truth {
                let c = if b.visibility >= 0.5 {
                    [0, 255, 0]
                } else {
                    [255, 0, 0]
                };
                let mut put = |x: u32, y: u32| {
                    let i = (y as usize * w as usize + x as usize) * 3;
                    buf[i..i + 3].copy_from_slice(&c);
                };
                for x in b.x..b.x + b.w {
                    put(x, b.y);
                    put(x, b.y + b.h - 1);
                }
                for y in b.y..b.y + b.h {
                    put(b.x, y);
                    put(b.x + b.w - 1, y);
                }
            }
        }
        let path = out.join(format!("frame-{n}.png"));
        image::RgbImage::from_raw(w, h, buf.clone())
            .context("frame buffer size")?
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} ({} people)", path.display(), truth.len());
    }
    Ok(())
}

/// Why the server stops.
#[derive(Debug)]
enum Stop {
    Signal,
    Failure(String),
}

/// Loads the composite scenes (backgrounds decoded once per file) and serves
/// them until a signal or a failure.
fn serve_composites(
    address: String,
    port: u16,
    bitrate_kbps: u32,
    ground_truth: Option<PathBuf>,
    mounts: Vec<MountArg>,
) -> Result<()> {
    let mut backgrounds: HashMap<(PathBuf, u32), Background> = HashMap::new();
    let mut scenes = Vec::new();
    for m in mounts {
        let MountArg::Composite { name, spec } = m else {
            continue;
        };
        let key = (spec.background_path(), spec.bg_frames);
        let bg = match backgrounds.get(&key) {
            Some(bg) => bg.clone(),
            None => {
                let bg = Background::load(&key.0, key.1)
                    .with_context(|| format!("mount {name}: loading the background"))?;
                backgrounds.insert(key, bg.clone());
                bg
            }
        };
        let scene = CompositeScene::open_with_background(spec, bg)
            .with_context(|| format!("mount {name}: loading the composite scene"))?;
        scenes.push(CompositeMount {
            name,
            scene: Arc::new(scene),
        });
    }
    let (tx, rx) = sync_channel(4);
    let failures = tx.clone();
    let config = CompositeServeConfig {
        address,
        port,
        mounts: scenes,
        bitrate_kbps,
        ground_truth,
        on_failure: Arc::new(move |msg| {
            let _ = failures.try_send(Stop::Failure(msg));
        }),
    };
    let cam = composite::serve::serve(&config).context("starting the RTSP server")?;
    let mut out = std::io::stdout().lock();
    for (url, m) in cam.urls().iter().zip(&config.mounts) {
        let s = m.scene.spec();
        let (w, h) = m.scene.size();
        writeln!(
            out,
            "serving {url} (composite {}x{}@{} camera {} of {} seed {} people {} period {} frames)",
            w,
            h,
            s.fps,
            s.camera,
            s.cameras,
            s.seed,
            m.scene.people().len(),
            m.scene.period_frames()
        )?;
    }
    ready(&mut out, &config.address, cam.port())?;
    drop(out);
    watch_signals(tx)?;
    let stop = rx.recv().unwrap_or(Stop::Signal);
    drop(cam);
    match stop {
        Stop::Signal => Ok(()),
        Stop::Failure(msg) => bail!(msg),
    }
}

/// Sends [`Stop::Signal`] on SIGINT or SIGTERM.
fn watch_signals(tx: SyncSender<Stop>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = tx.send(Stop::Signal);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Tells whoever started this camera where it serves: `ready port=N` on
/// stdout, and the ready file when `VIDAR_READY_FILE` is set (see
/// `vidar_config::ready`).
fn ready(out: &mut impl Write, address: &str, port: u16) -> Result<()> {
    writeln!(out, "ready port={port}")?;
    out.flush()?;
    let ip: Option<std::net::IpAddr> = address.parse().ok();
    vidar_config::ready::Ready {
        rtsp: ip.map(|ip| std::net::SocketAddr::new(ip, port)),
        ..vidar_config::ready::Ready::this_process()
    }
    .announce()
    .context("writing the ready file (VIDAR_READY_FILE)")?;
    Ok(())
}
