//! Telemetry: metric values the node's threads update, stream statuses, the
//! Prometheus exposition, the HTTP endpoint for metrics and health, and the
//! live summary line.

mod metrics;
mod render;
pub mod server;
mod status;
mod summary;

pub use metrics::{
    CameraMetrics, Histogram, NodeMetrics, Sample, SampleRing, LATENCY_BUCKETS, STALL,
};
pub use render::{exposition, render_node, render_store};
pub use status::{CameraRegistry, StatusBoard};
pub use summary::Summary;
