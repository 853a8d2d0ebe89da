//! The runtime layer both Vidar binaries share (see README.md): a shutdown
//! token that wakes waiters, a health registry whose failures turn `/healthz`
//! red and restart or stop under a policy, HTTP serving with deadlines, and
//! the metrics exposition.

pub mod files;
pub mod health;
pub mod heap;
pub mod http;
pub mod metrics;
pub mod priority;
pub mod shutdown;

pub use health::{Health, HealthReport, Policy, Subsystem};
pub use http::{serve, serve_on, HttpLimits, HttpServer, HttpStats};
pub use metrics::{Exposition, Families};
pub use shutdown::Shutdown;
