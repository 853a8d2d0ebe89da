//! Status of one ingested video stream, as reported to metrics and the master.

use serde::{Deserialize, Serialize};

/// Where a stream's ingest is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// Building the pipeline and waiting for the first frame.
    Connecting,
    /// Frames are arriving.
    Streaming,
    /// The last attempt failed; waiting before the next one.
    BackingOff,
    /// Gave up for good (a file that is not video, a bad URL); see the error.
    Failed,
    /// Stopped on request, or a non-looping file reached its end.
    Stopped,
}

impl StreamState {
    /// Stable lowercase name, for metrics labels and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamState::Connecting => "connecting",
            StreamState::Streaming => "streaming",
            StreamState::BackingOff => "backing_off",
            StreamState::Failed => "failed",
            StreamState::Stopped => "stopped",
        }
    }
}

/// Monotonic counters of one stream since its ingest started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamCounters {
    /// Frames delivered by the decoder into Vidar.
    pub frames: u64,
    /// Frames dropped because the consumer was slower than the stream.
    pub dropped: u64,
    /// Times the pipeline was rebuilt after an error, end of stream or stall.
    pub reconnects: u64,
    /// Decoder or demuxer warnings/errors about corrupt data.
    pub decode_errors: u64,
    /// Encoded bytes received (RTP packets of the video, network sources
    /// only; 0 for files and synthetic sources).
    #[serde(default)]
    pub bytes: u64,
}

/// A point-in-time view of one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// Current state.
    pub state: StreamState,
    /// Counters since start.
    pub counters: StreamCounters,
    /// Size of the last delivered frame, pixels.
    pub width: u32,
    /// Height of the last delivered frame, pixels.
    pub height: u32,
    /// Frames currently waiting in the stream's queue.
    pub queue_depth: usize,
    /// The decoder element in use, when known.
    pub decoder: Option<String>,
    /// The last error, with the element that raised it.
    pub last_error: Option<String>,
}
