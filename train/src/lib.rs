//! Vidar's training service (issue 13, EdgeSplit): re-ID models trained in
//! Rust, with reverse-mode autodiff from `candle` (see the README for why),
//! straight from the ONNX graph the nodes run.
//!
//! - [`graph`]: an ONNX graph made trainable. Its initialisers become
//!   variables; its nodes run as candle operations; it can be cut wherever
//!   a single tensor crosses from one side to the other ([`Graph::cuts`]),
//!   which is where a node's layers end and the trainer's begin; and its
//!   new weights are written back into the same graph (same inputs,
//!   outputs and node list, new initialisers), which is what
//!   `vidar-master model add` takes.
//! - [`split`]: one training step split at a cut: the node side's forward
//!   pass, the activations it would send, the trainer's forward and
//!   backward, the gradient it would send back, and the node side's
//!   backward. Equal to the unsplit step (tested).
//! - [`loss`]: batch-hard triplet loss on L2-normalised embeddings.
//! - [`data`]: labelled crops as the model's input, and P x K batches drawn
//!   within one camera.
//!
//! - [`rounds`]: split training rounds between the trainer and the nodes,
//!   over any transport: a node's side, the trainer's side (a thread per
//!   node, FedAvg, nodes dropped mid-round), and each round's plan by
//!   `vidar-scheduler::edgesplit` from measured times.
//!
//! What this crate must not do: read video or talk to the network itself
//! (the master and the nodes carry [`rounds`]' messages over zenoh).

pub mod adapt;
pub mod data;
pub mod graph;
pub mod loss;
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]
pub mod onnx_pb;
mod ops;
pub mod pseudo;
pub mod rounds;
pub mod split;

pub use graph::{Cut, Graph};

/// What went wrong in training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The ONNX file cannot be decoded.
    #[error("{origin}: not an ONNX model: {message}")]
    Decode {
        /// The file or buffer.
        origin: String,
        /// What the decoder said.
        message: String,
    },
    /// The graph uses something this trainer does not implement.
    #[error("{origin}: node {node:?} ({op}): {message}")]
    Unsupported {
        /// The file or buffer.
        origin: String,
        /// The node's name (or its index when unnamed).
        node: String,
        /// Its operator.
        op: String,
        /// What is not supported.
        message: String,
    },
    /// The graph is malformed (a tensor used before it is made, a missing input...).
    #[error("{origin}: {message}")]
    Graph {
        /// The file or buffer.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A request this graph cannot serve (a cut that is not one, a bad batch).
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed.
    #[error("tensor operation: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;
