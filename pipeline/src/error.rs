//! Errors of the ingest layer. Messages name the stream, the input and what
//! went wrong, so an installer can act on them without reading code.

use std::path::PathBuf;

/// Why a source specification was refused before any pipeline was built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The URL could not be parsed.
    #[error("invalid source URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `synthetic:` source had a bad parameter.
    #[error("invalid synthetic source {spec:?}: {reason}")]
    BadSynthetic {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Errors from starting ingest or building a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The source specification is invalid.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The configuration is invalid.
    #[error("invalid ingest config for camera {camera}: {reason}")]
    Config {
        /// Camera the config belongs to.
        camera: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration has problems (no camera named: see `Config`).
    #[error("invalid ingest config: {0}")]
    Invalid(#[from] vidar_config::Invalid),
    /// GStreamer could not be initialised.
    #[error("GStreamer failed to initialise: {0} (run deploy/setup.sh to install it)")]
    Init(String),
    /// A GStreamer element is not installed.
    #[error("GStreamer element {factory:?} is not installed ({hint}); run deploy/setup.sh")]
    MissingElement {
        /// The element factory name.
        factory: String,
        /// Which package usually provides it.
        hint: &'static str,
    },
    /// A file source does not exist or cannot be read.
    #[error("cannot read video file {path}: {reason}")]
    File {
        /// The path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Building or linking the pipeline failed.
    #[error("building the pipeline for {what} failed: {reason}")]
    Build {
        /// What was being built.
        what: String,
        /// GStreamer's reason.
        reason: String,
    },
    /// The ingest thread could not be spawned.
    #[error("could not start the ingest thread: {0}")]
    Thread(String),
}

/// Which package usually provides a GStreamer element, for error hints.
pub(crate) fn element_hint(factory: &str) -> &'static str {
    match factory {
        "rtspsrc" | "rtph264depay" | "rtph265depay" | "matroskademux" | "qtdemux" => {
            "gstreamer1.0-plugins-good"
        }
        "h264parse" | "h265parse" | "videoparse" => "gstreamer1.0-plugins-bad",
        "avdec_h264" | "avdec_h265" => "gstreamer1.0-libav",
        "x264enc" => "gstreamer1.0-plugins-ugly",
        _ => "gstreamer1.0-plugins-base",
    }
}
