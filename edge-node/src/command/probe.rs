//! `vidar-edge probe SOURCE`: ingest one stream and print its state and
//! counters once a second, so an installer can check a camera without the
//! rest of the node.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::time::{Duration, Instant};
use vidar_pipeline::{DecoderChoice, Ingest, IngestConfig, Transport};
use vidar_protocol::CameraId;

/// Arguments of `probe`.
#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// One or more sources: `rtsp://...`, a file path, or
    /// `synthetic:?width=..&height=..&fps=..`.
    #[arg(required = true)]
    pub sources: Vec<String>,
    /// RTSP transport: auto, tcp or udp.
    #[arg(long, default_value = "auto")]
    pub transport: String,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Decoder: auto, software, or an element name.
    #[arg(long, default_value = "auto")]
    pub decoder: String,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the probe until Ctrl-C or `--seconds`.
pub fn run(args: ProbeArgs) -> Result<()> {
    let transport = match args.transport.as_str() {
        "auto" => Transport::Auto,
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        other => anyhow::bail!("--transport {other:?}: expected auto, tcp or udp"),
    };
    let decoder = match args.decoder.as_str() {
        "auto" => DecoderChoice::Auto,
        "software" => DecoderChoice::Software,
        other => DecoderChoice::Element(other.to_string()),
    };
    let mut streams = Vec::new();
    for (i, source) in args.sources.iter().enumerate() {
        let mut config = IngestConfig::new(CameraId::new(&format!("stream{}", i + 1))?, source);
        config.transport = transport;
        config.decoder = decoder.clone();
        let ingest = Ingest::start(config).with_context(|| format!("probing {source}"))?;
        streams.push(Probe {
            ingest,
            last_frames: 0,
            age_ms: 0.0,
        });
    }
    let stop = super::shutdown_on_signals()?;
    let started = Instant::now();
    let mut out = std::io::stdout();
    if !args.json {
        let header = format!(
            "{:>5} {:<8} {:<11} {:>6} {:>8} {:>7} {:>6} {:>6} {:>10} {:>8}",
            "t(s)",
            "stream",
            "state",
            "fps",
            "frames",
            "dropped",
            "recon",
            "errors",
            "size",
            "age(ms)"
        );
        writeln!(out, "{header}  decoder / last error")?;
    }
    let mut tick = Instant::now();
    while !stop.is_triggered()
        && args
            .seconds
            .is_none_or(|s| started.elapsed() < Duration::from_secs(s))
    {
        let mut idle = true;
        for p in &mut streams {
            while let Some(frame) = p.ingest.try_recv() {
                p.age_ms = frame.age().as_secs_f64() * 1000.0;
                idle = false;
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(5));
        }
        if tick.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let dt = tick.elapsed().as_secs_f64();
        tick = Instant::now();
        let t = started.elapsed().as_secs_f64();
        for p in &mut streams {
            let st = p.ingest.status();
            let fps = (st.counters.frames - p.last_frames) as f64 / dt;
            p.last_frames = st.counters.frames;
            let name = p.ingest.camera().to_string();
            if args.json {
                let line = serde_json::json!({
                    "t": t, "stream": name, "state": st.state.as_str(), "fps": fps,
                    "frames": st.counters.frames, "dropped": st.counters.dropped,
                    "reconnects": st.counters.reconnects, "decode_errors": st.counters.decode_errors,
                    "width": st.width, "height": st.height, "age_ms": p.age_ms,
                    "decoder": st.decoder, "last_error": st.last_error,
                });
                writeln!(out, "{line}")?;
            } else {
                let note = match (&st.last_error, st.state) {
                    (Some(e), s) if s != vidar_protocol::StreamState::Streaming => e.clone(),
                    _ => st.decoder.clone().unwrap_or_default(),
                };
                writeln!(
                    out,
                    "{:>5.0} {:<8} {:<11} {:>6.1} {:>8} {:>7} {:>6} {:>6} {:>10} {:>8.0}  {}",
                    t,
                    name,
                    st.state.as_str(),
                    fps,
                    st.counters.frames,
                    st.counters.dropped,
                    st.counters.reconnects,
                    st.counters.decode_errors,
                    format!("{}x{}", st.width, st.height),
                    p.age_ms,
                    note
                )?;
            }
        }
        out.flush()?;
    }
    for p in streams {
        p.ingest.stop();
    }
    Ok(())
}

struct Probe {
    ingest: Ingest,
    last_frames: u64,
    age_ms: f64,
}
