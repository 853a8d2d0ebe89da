//! Test support shared by Vidar's crates (a dev-dependency only).
//!
//! [`fakes`]: a detector and an embedder that run on synthetic frames without
//! ONNX Runtime, so the edge node's core (analysis loop, re-ID worker,
//! recorder) is tested in milliseconds. They are honest stand-ins, not
//! stubs: the detector really finds the people drawn in a frame, and the
//! embedder really derives each crop's vector from its pixels, so a test
//! fails when the node crops the wrong place or mixes frames up.

pub mod fakes;
