//! What is running: stream statuses and the cameras being analysed, published
//! by the analysis thread for `/metrics`, `/healthz` and the node's status.

use super::CameraMetrics;
use std::sync::Arc;
use vidar_protocol::{CameraId, StreamStatus};

/// The latest status of every stream, published by the analysis thread once
/// a second for `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct StatusBoard {
    inner: std::sync::Mutex<Vec<(String, StreamStatus)>>,
}

impl StatusBoard {
    /// Replaces the snapshot.
    pub fn publish(&self, v: Vec<(String, StreamStatus)>) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }
    /// A copy of the snapshot.
    pub fn snapshot(&self) -> Vec<(String, StreamStatus)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn any_streaming(&self) -> bool {
        self.snapshot()
            .iter()
            .any(|(_, s)| s.state == vidar_protocol::StreamState::Streaming)
    }
}

/// The cameras being analysed and their metrics, for `/metrics` and status.
#[derive(Debug, Default)]
pub struct CameraRegistry {
    inner: std::sync::Mutex<Vec<(CameraId, Arc<CameraMetrics>)>>,
}

impl CameraRegistry {
    /// A copy of the list.
    pub fn snapshot(&self) -> Vec<(CameraId, Arc<CameraMetrics>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Replaces the list.
    pub fn set(&self, cams: Vec<(CameraId, Arc<CameraMetrics>)>) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = cams;
    }
}
