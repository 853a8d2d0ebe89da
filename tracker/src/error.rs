//! Typed errors of the tracker crate, one enum per concern.

use thiserror::Error;

/// A tracker configuration with problems; lists every one, each naming its key.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("invalid tracker config: {0}")]
pub struct ConfigError(pub vidar_config::Invalid);

impl From<vidar_config::Invalid> for ConfigError {
    fn from(invalid: vidar_config::Invalid) -> Self {
        ConfigError(invalid)
    }
}

/// Misuse of a running tracker.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrackError {
    /// Frames must arrive with strictly increasing indices.
    #[error("frame {got} is not after the previous frame {previous}")]
    FrameOutOfOrder {
        /// Index of the frame processed last.
        previous: u64,
        /// Index of the frame just offered.
        got: u64,
    },
}

/// Failure to read or write a MOT Challenge text file.
#[derive(Debug, Error)]
pub enum MotError {
    /// The underlying reader or writer failed.
    #[error("MOT file I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A line could not be parsed.
    #[error("MOT line {line}: {message}: {text:?}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
        /// The offending line.
        text: String,
    },
}
