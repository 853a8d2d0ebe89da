//! Ingest configuration for one camera: what the user sets, with defaults that
//! work for a single box. Kept apart from the running [`crate::Ingest`].

use crate::queue::DEFAULT_QUEUE_CAPACITY;
use crate::source::Source;
use crate::{Ingest, IngestError};
use serde::Deserialize;
use std::time::Duration;
use vidar_config::{Config, Problem, Problems};
use vidar_protocol::CameraId;

/// RTSP lower transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP first, falling back to TCP (interleaved) when no UDP arrives.
    #[default]
    Auto,
    /// RTP interleaved over the RTSP TCP connection (firewall-friendly).
    Tcp,
    /// RTP over UDP only (lowest latency on a clean LAN).
    Udp,
}

/// What happens when the consumer is slower than the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// Drop the oldest waiting frame and count it: latency stays bounded
    /// (default; the only sensible policy for live cameras).
    #[default]
    DropOldest,
    /// Wait for the consumer (back-pressure): no frame is lost, latency grows.
    /// For files processed offline and benchmarks; refused for RTSP sources.
    Block,
}

/// Which decoder to use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderChoice {
    /// The first available hardware decoder (`nvv4l2decoder`, VA-API, V4L2,
    /// NVDEC), else software (`avdec_h264`/`avdec_h265`).
    #[default]
    Auto,
    /// Software decoding only.
    Software,
    /// This GStreamer element, by factory name.
    #[serde(untagged)]
    Element(String),
}

/// The pixel layout frames are handed over in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// The source's own: I420 for decoded video (RTSP, files), which skips
    /// converting every whole frame to RGB; RGB for synthetic sources
    /// (rendered in RGB).
    #[default]
    Auto,
    /// Packed RGB: every frame converted by `videoconvert`.
    Rgb,
    /// Planar YUV 4:2:0 (a decoder's usual output; others are converted).
    I420,
}

/// Configuration of one camera's ingest. Durations are in milliseconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Camera id (letters, digits, `_`, `.`, `-`). Required.
    pub camera: CameraId,
    /// Source: `rtsp://...`, a file path, or `synthetic:?...`. Required.
    pub source: String,
    /// RTSP transport: `auto` (default), `tcp` or `udp`.
    #[serde(default)]
    pub transport: Transport,
    /// RTSP jitter-buffer latency, ms. Default 100.
    #[serde(default = "defaults::latency_ms")]
    pub latency_ms: u32,
    /// Output width in pixels; unset keeps the stream's own size.
    #[serde(default)]
    pub width: Option<u32>,
    /// Output height in pixels; unset keeps the stream's own size.
    #[serde(default)]
    pub height: Option<u32>,
    /// Frames the stream's queue holds before dropping the oldest. Default 4
    /// ([`DEFAULT_QUEUE_CAPACITY`]).
    #[serde(default = "defaults::queue_capacity")]
    pub queue_capacity: usize,
    /// `drop_oldest` (default) or `block` (files only: back-pressure, no loss).
    #[serde(default)]
    pub queue_policy: QueuePolicy,
    /// Give up a connection attempt when no frame arrives within this, ms. Default 10000.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Reconnect when a streaming source delivers no frame for this long, ms. Default 5000.
    #[serde(default = "defaults::stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// First reconnect delay, ms; doubles per failure (with ±20 % jitter). Default 500.
    #[serde(default = "defaults::backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay, ms. Default 30000.
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Files and synthetic sources: deliver at the stream's frame rate (true,
    /// default) or as fast as decoding allows (false, for benchmarks).
    #[serde(default = "defaults::yes")]
    pub realtime: bool,
    /// Files: start again at the end (default true); false stops at the end.
    #[serde(default = "defaults::yes")]
    pub loop_file: bool,
    /// Decoder: `auto` (default), `software`, or an element name.
    #[serde(default)]
    pub decoder: DecoderChoice,
    /// Worker threads of a software decoder (libav's `max-threads`; 0 = one
    /// per core). Default 1: a node decodes many cameras at once, each on
    /// its own streaming thread, and frame threading adds a frame of delay
    /// and hand-offs between threads to every one of them
    /// (docs/benchmarks.md, "Decoder threads").
    #[serde(default = "defaults::one_thread")]
    pub decoder_threads: u32,
    /// Threads for colour conversion/scaling (0 = one per core). Default 1.
    #[serde(default = "defaults::one_thread")]
    pub convert_threads: u32,
    /// Frames' pixel layout: `auto` (default: I420 for decoded video, RGB
    /// for synthetic sources), `rgb` or `i420`.
    #[serde(default)]
    pub pixel_format: PixelFormat,
}

mod defaults {
    pub fn latency_ms() -> u32 {
        100
    }
    pub fn queue_capacity() -> usize {
        super::DEFAULT_QUEUE_CAPACITY
    }
    pub fn connect_timeout_ms() -> u64 {
        10_000
    }
    pub fn stall_timeout_ms() -> u64 {
        5_000
    }
    pub fn backoff_initial_ms() -> u64 {
        500
    }
    pub fn backoff_max_ms() -> u64 {
        30_000
    }
    pub fn yes() -> bool {
        true
    }
    pub fn one_thread() -> u32 {
        1
    }
}

impl IngestConfig {
    /// A config with every default, for `camera` reading `source`.
    pub fn new(camera: CameraId, source: impl Into<String>) -> Self {
        IngestConfig {
            camera,
            source: source.into(),
            transport: Transport::default(),
            latency_ms: defaults::latency_ms(),
            width: None,
            height: None,
            queue_capacity: defaults::queue_capacity(),
            queue_policy: QueuePolicy::default(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
            stall_timeout_ms: defaults::stall_timeout_ms(),
            backoff_initial_ms: defaults::backoff_initial_ms(),
            backoff_max_ms: defaults::backoff_max_ms(),
            realtime: true,
            loop_file: true,
            decoder: DecoderChoice::default(),
            decoder_threads: defaults::one_thread(),
            convert_threads: defaults::one_thread(),
            pixel_format: PixelFormat::default(),
        }
    }

    /// The parsed source of a config without problems.
    pub fn checked_source(&self) -> Result<Source, IngestError> {
        let invalid = |reason: String| IngestError::Config {
            camera: self.camera.to_string(),
            reason,
        };
        self.check().map_err(|e| invalid(e.to_string()))?;
        Source::parse(&self.source).map_err(|e| invalid(format!("source: {e}")))
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub(crate) fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.stall_timeout_ms)
    }
}

impl Config for IngestConfig {
    type Output = Ingest;
    type Context = ();
    type Error = IngestError;

    fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        let source = match Source::parse(&self.source) {
            Ok(s) => Some(s),
            Err(e) => {
                p.push("source", e.to_string());
                None
            }
        };
        for (key, v) in [("width", self.width), ("height", self.height)] {
            if let Some(v) = v {
                if !(16..=7680).contains(&v) || v % 2 != 0 {
                    p.push(key, format!("{v} must be an even number in 16..=7680"));
                }
            }
        }
        if self.width.is_some() != self.height.is_some() {
            p.push(
                "width",
                "width and height must be set together (or neither)",
            );
        }
        if !(1..=256).contains(&self.queue_capacity) {
            p.push(
                "queue_capacity",
                format!("{} must be in 1..=256", self.queue_capacity),
            );
        }
        if self.queue_policy == QueuePolicy::Block && source.as_ref().is_some_and(|s| s.is_live()) {
            p.push(
                "queue_policy",
                "block would let latency build up on a live camera; use drop_oldest",
            );
        }
        if self.latency_ms > 10_000 {
            p.push("latency_ms", format!("{} is above 10000", self.latency_ms));
        }
        for (key, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("stall_timeout_ms", self.stall_timeout_ms),
            ("backoff_initial_ms", self.backoff_initial_ms),
            ("backoff_max_ms", self.backoff_max_ms),
        ] {
            if !(10..=3_600_000).contains(&v) {
                p.push(key, format!("{v} must be in 10..=3600000 ms"));
            }
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            p.push(
                "backoff_initial_ms",
                format!(
                    "{} exceeds backoff_max_ms ({})",
                    self.backoff_initial_ms, self.backoff_max_ms
                ),
            );
        }
        for (key, v) in [
            ("decoder_threads", self.decoder_threads),
            ("convert_threads", self.convert_threads),
        ] {
            if v > 64 {
                p.push(key, format!("{v} is above 64"));
            }
        }
        p.into_vec()
    }

    /// Starts ingesting (see [`Ingest::start`]).
    fn build(&self, _: &()) -> Result<Ingest, IngestError> {
        Ingest::start(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam() -> CameraId {
        CameraId::new("c1").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_validate() {
        let c = IngestConfig::new(cam(), "rtsp://127.0.0.1:8554/cam");
        assert!(c.check().is_ok());
        assert!(c.checked_source().is_ok());
    }

    #[test]
    fn reports_every_problem() {
        let mut c = IngestConfig::new(cam(), "rtsp://:x");
        c.width = Some(15);
        c.queue_capacity = 0;
        c.backoff_initial_ms = 50_000;
        c.decoder_threads = 1000;
        let problems = c.problems();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "source",
                "width",
                "width",
                "queue_capacity",
                "backoff_initial_ms",
                "decoder_threads"
            ]
        );
        let all = c.check().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(all.contains("set together"), "{all}");
        assert!(all.contains("1000 is above 64"), "{all}");
        assert!(c.checked_source().is_err());
    }

    #[test]
    fn parses_toml_with_unknown_field_refused() {
        let ok: Result<IngestConfig, _> = toml_like(
            r#"{"camera":"c1","source":"synthetic:","transport":"tcp","decoder":"avdec_h264"}"#,
        );
        let ok = ok.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.transport, Transport::Tcp);
        assert_eq!(ok.decoder, DecoderChoice::Element("avdec_h264".into()));
        let bad: Result<IngestConfig, _> =
            toml_like(r#"{"camera":"c1","source":"x","latncy_ms":5}"#);
        assert!(bad
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("latncy_ms"));
    }

    #[test]
    fn pixel_formats_parse_and_a_bad_one_is_named() {
        let parse = |f: &str| {
            toml_like(&format!(
                r#"{{"camera":"c1","source":"synthetic:","pixel_format":"{f}"}}"#
            ))
        };
        for (name, want) in [
            ("auto", PixelFormat::Auto),
            ("rgb", PixelFormat::Rgb),
            ("i420", PixelFormat::I420),
        ] {
            let c = parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(c.pixel_format, want);
        }
        let e = parse("nv12").expect_err("nv12").to_string();
        assert!(e.contains("nv12") && e.contains("i420"), "{e}");
        // Auto: the decoder's I420 for video, RGB for synthetic sources.
        let mut c = IngestConfig::new(cam(), "synthetic:?width=64&height=48");
        let synthetic = c.checked_source().expect("source");
        assert_eq!(
            crate::build::pixel_format_of(&c, &synthetic),
            PixelFormat::Rgb
        );
        c.source = "rtsp://127.0.0.1:8554/x".into();
        let rtsp = c.checked_source().expect("source");
        assert_eq!(crate::build::pixel_format_of(&c, &rtsp), PixelFormat::I420);
        c.pixel_format = PixelFormat::Rgb;
        assert_eq!(crate::build::pixel_format_of(&c, &rtsp), PixelFormat::Rgb);
    }

    fn toml_like(json: &str) -> Result<IngestConfig, serde_json::Error> {
        serde_json::from_str(json)
    }
}
