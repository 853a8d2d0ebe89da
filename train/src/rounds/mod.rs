//! Split training rounds (EdgeSplit, ALGORITHMS.md section 3) between the
//! trainer and the nodes, whatever carries the messages:
//!
//! - [`node`]: a node's side. It answers [`TrainRequest`]s with its own
//!   crops, which never leave it (a cut of 0, which would send them, is
//!   refused): the layers before its cut forward and backward, its own
//!   AdamW, its weights at the end.
//! - [`trainer`]: the trainer's side. It drives every node through a round
//!   from a thread each, runs the layers after each node's cut one batch
//!   at a time, drops a node that fails a step, and averages the weights.
//! - [`plan`]: each round's cuts and link shares from what the nodes
//!   measure of themselves, by `vidar_scheduler::edgesplit` (Algorithm 6,
//!   or a baseline).
//!
//! [`TrainRequest`]: vidar_protocol::messages::TrainRequest

pub mod node;
pub mod plan;
pub mod trainer;

pub use node::{crops_from_training_file, Crop, CropSource, NodeTrainer};
pub use trainer::{NodeOutcome, NodePart, RoundConfig, RoundReport, Trainer, Transport};
