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
    /// `rtsp://...`, a file path, or `synthetic:?width=..&height=..&fps=..`.
    pub source: String,
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
    let mut config = IngestConfig::new(CameraId::new("probe")?, &args.source);
    config.transport = match args.transport.as_str() {
        "auto" => Transport::Auto,
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        other => anyhow::bail!("--transport {other:?}: expected auto, tcp or udp"),
    };
    config.decoder = match args.decoder.as_str() {
        "auto" => DecoderChoice::Auto,
        "software" => DecoderChoice::Software,
        other => DecoderChoice::Element(other.to_string()),
    };
    let ingest = Ingest::start(config).with_context(|| format!("probing {}", args.source))?;
    let stop = super::shutdown_flag()?;
    let started = Instant::now();
    let mut out = std::io::stdout();
    if !args.json {
        writeln!(
            out,
            "{:>5} {:<11} {:>6} {:>8} {:>7} {:>6} {:>6} {:>10} {:>8}  {}",
            "t(s)",
            "state",
            "fps",
            "frames",
            "dropped",
            "recon",
            "errors",
            "size",
            "age(ms)",
            "decoder / last error"
        )?;
    }
    let mut last_frames = 0u64;
    let mut tick = Instant::now();
    let mut age_ms = 0.0f64;
    while !super::stopping(&stop)
        && args
            .seconds
            .is_none_or(|s| started.elapsed() < Duration::from_secs(s))
    {
        if let Some(frame) = ingest.recv_timeout(Duration::from_millis(50)) {
            age_ms = frame.age().as_secs_f64() * 1000.0;
        }
        if tick.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let dt = tick.elapsed().as_secs_f64();
        tick = Instant::now();
        let st = ingest.status();
        let fps = (st.counters.frames - last_frames) as f64 / dt;
        last_frames = st.counters.frames;
        if args.json {
            writeln!(
                out,
                "{{\"t\":{:.1},\"state\":\"{}\",\"fps\":{:.1},\"frames\":{},\"dropped\":{},\"reconnects\":{},\"decode_errors\":{},\"width\":{},\"height\":{},\"age_ms\":{:.0},\"decoder\":{:?},\"last_error\":{:?}}}",
                started.elapsed().as_secs_f64(), st.state.as_str(), fps, st.counters.frames, st.counters.dropped,
                st.counters.reconnects, st.counters.decode_errors, st.width, st.height, age_ms,
                st.decoder.unwrap_or_default(), st.last_error.unwrap_or_default()
            )?;
        } else {
            let note = match (&st.last_error, st.state) {
                (Some(e), s) if s != vidar_protocol::StreamState::Streaming => e.clone(),
                _ => st.decoder.clone().unwrap_or_default(),
            };
            writeln!(
                out,
                "{:>5.0} {:<11} {:>6.1} {:>8} {:>7} {:>6} {:>6} {:>10} {:>8.0}  {}",
                started.elapsed().as_secs_f64(),
                st.state.as_str(),
                fps,
                st.counters.frames,
                st.counters.dropped,
                st.counters.reconnects,
                st.counters.decode_errors,
                format!("{}x{}", st.width, st.height),
                age_ms,
                note
            )?;
        }
        out.flush()?;
    }
    ingest.stop();
    Ok(())
}
