//! `vidar-camera`: serves test RTSP streams (synthetic scenes or looped files).
//!
//! ```text
//! vidar-camera --port 8554 --mount cam1='synthetic:?width=1280&height=720&fps=30&seed=1' \
//!              --mount street=/usr/share/doc/opencv-doc/examples/data/vtest.avi
//! vidar-camera encode --source 'synthetic:?width=1920&height=1080' --frames 300 --out clip.mkv
//! ```

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use vidar_pipeline::camera::{self, CameraConfig, Mount};
use vidar_pipeline::{SceneSpec, Source};

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
    /// A mount point NAME=SOURCE; SOURCE is `synthetic:?width=..&height=..&fps=..&seed=..&people=..`
    /// or a video file path. Repeatable. Default: cam1 = 1280x720@30 synthetic scene.
    #[arg(long = "mount", value_parser = Mount::parse)]
    mounts: Vec<Mount>,
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
    if let Some(Command::Encode {
        source,
        frames,
        out,
    }) = args.command
    {
        let spec = match Source::parse(&source)? {
            Source::Synthetic(spec) => spec,
            _ => bail!("encode takes a synthetic: source, got {source:?}"),
        };
        camera::encode_scene_to_file(&spec, frames, &out)
            .with_context(|| format!("encoding {frames} frames to {}", out.display()))?;
        println!("wrote {}", out.display());
        return Ok(());
    }
    let mut mounts = args.mounts;
    if mounts.is_empty() {
        mounts.push(Mount {
            name: "cam1".into(),
            source: camera::MountSource::Synthetic(SceneSpec::default()),
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
        writeln!(out, "serving {url} ({what})")?;
    }
    writeln!(out, "ready port={}", cam.port())?;
    out.flush()?;
    drop(out);
    wait_for_signal();
    drop(cam);
    Ok(())
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() {
    let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let _ = signal_hook_register(sig, std::sync::Arc::clone(&term));
    }
    while !term.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn signal_hook_register(
    sig: i32,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    signal_hook::flag::register(sig, flag).map(|_| ())
}
