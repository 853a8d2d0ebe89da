//! The runtime layer both Vidar binaries share (see README.md): a shutdown
//! token that wakes waiters, a health registry whose failures turn `/healthz`
//! red and restart or stop under a policy, and HTTP serving with deadlines.

pub mod config;
pub mod health;
pub mod http;
pub mod shutdown;

pub use health::{Health, HealthReport, Policy, Subsystem};
pub use http::{serve, serve_on, HttpLimits, HttpServer, HttpStats};
pub use shutdown::Shutdown;
