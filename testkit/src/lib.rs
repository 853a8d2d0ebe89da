//! Test support shared by Vidar's tests and benchmarks.
//!
//! [`process`]: child processes with their output in a log file, found by
//! the ready file they write once they serve: every listener binds port 0
//! and the child reports the port the kernel gave it, so no port is chosen
//! by one process for another to bind (used by tests and by
//! `vidar-cluster-bench`).
//!
//! [`http`]: `GET` on a child's port and a metric from its text.
//!
//! [`ports`]: a port nothing listens on (for "connection refused" tests) and
//! the one case [`process`] cannot cover, a process restarted on the port it
//! had.
//!
//! [`fakes`] (feature `fakes`): a detector and an embedder that run on synthetic frames without
//! ONNX Runtime, so the edge node's core (analysis loop, re-ID worker,
//! recorder) is tested in milliseconds. They are honest stand-ins, not
//! stubs: the detector really finds the people drawn in a frame, and the
//! embedder really derives each crop's vector from its pixels, so a test
//! fails when the node crops the wrong place or mixes frames up.

#[cfg(feature = "fakes")]
pub mod fakes;
pub mod http;
pub mod ports;
pub mod process;
