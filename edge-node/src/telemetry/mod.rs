//! Telemetry: metric values the node's threads update, stream statuses, the
//! Prometheus exposition, the HTTP endpoint for metrics and health, and the
//! live summary line.

mod metrics;
mod render;
pub mod server;
mod status;
mod summary;

pub use metrics::{
    header, render_histogram, CameraMetrics, Histogram, NodeMetrics, Render, Sample, SampleRing,
    LATENCY_BUCKETS,
};
pub use render::{render_node, render_store};
pub use status::{CameraRegistry, StatusBoard};
pub use summary::Summary;
