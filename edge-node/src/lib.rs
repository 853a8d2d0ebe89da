//! The Vidar edge node as a library: `vidar-edge` (src/main.rs) only parses
//! arguments and calls [`command`].
//!
//! One module per concern, layered bottom-up (no module imports one above
//! it; `tools/check-modules` checks there are no circles):
//!
//! - [`telemetry`]: metric values, stream statuses, the Prometheus endpoint;
//! - [`media`]: JPEG crops, snapshots, live tiles;
//! - [`recorder`]: everything recorded goes through the one database writer;
//! - [`sightings`]: open tracks and the sightings they become (10 s split);
//! - [`cameras`]: the camera slots being analysed and how a camera starts;
//! - [`config`]: the node's TOML config and its problems;
//! - [`detect_pool`]: detector threads batching across cameras;
//! - [`identify`]: the re-ID worker (embedder + gallery on their own thread);
//! - [`analysis`]: the analysis loop tying frames, detectors, trackers and re-ID;
//! - [`profiling`]: capacity measured at start-up;
//! - [`cluster`]: plans, services, bandwidth, status and tiles over zenoh;
//! - [`node`]: builds and runs a node from its config;
//! - [`command`]: the subcommands of `vidar-edge`.

pub mod analysis;
pub mod analytics;
pub mod bandwidth;
pub mod cameras;
pub mod cluster;
pub mod command;
pub mod config;
pub mod cpu;
pub mod detect_pool;
pub mod identify;
pub mod media;
pub mod node;
pub mod profiling;
pub mod recorder;
pub mod refresh;
pub mod sightings;
pub mod telemetry;
pub mod training;
