//! Test support shared by Vidar's tests and benchmarks.
//!
//! [`ports`]: TCP ports for child processes without the bind-close-rebind
//! race (no dependencies: the benchmark binaries use it too).
//!
//! [`fakes`] (feature `fakes`): a detector and an embedder that run on synthetic frames without
//! ONNX Runtime, so the edge node's core (analysis loop, re-ID worker,
//! recorder) is tested in milliseconds. They are honest stand-ins, not
//! stubs: the detector really finds the people drawn in a frame, and the
//! embedder really derives each crop's vector from its pixels, so a test
//! fails when the node crops the wrong place or mixes frames up.

#[cfg(feature = "fakes")]
pub mod fakes;
pub mod ports;
