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
//! [`netns`]: a network namespace behind a `tc`-shaped veth pair (root).
//!
//! [`fakes`] (feature `fakes`): a detector and an embedder that run on synthetic frames without
//! ONNX Runtime, so the edge node's core (analysis loop, re-ID worker,
//! recorder) is tested in milliseconds. They are honest stand-ins, not
//! stubs: the detector really finds the people drawn in a frame, and the
//! embedder really derives each crop's vector from its pixels, so a test
//! fails when the node crops the wrong place or mixes frames up.

#[cfg(feature = "fakes")]
pub mod fakes;
pub mod netns;

/// OpenCV's sample street video (Debian package opencv-doc), the real scene
/// the multi-process tests stream.
pub const VTEST: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

/// Asserts what a test that runs real nodes needs: `ORT_DYLIB_PATH` and
/// `VIDAR_MODEL_DIR` set (as `make test` does) and [`VTEST`] installed.
pub fn require_node_env() {
    for var in ["ORT_DYLIB_PATH", "VIDAR_MODEL_DIR"] {
        assert!(
            std::env::var_os(var).is_some(),
            "{var} is not set: run these tests with `make test` (or export it as the Makefile does)"
        );
    }
    assert!(
        std::path::Path::new(VTEST).is_file(),
        "{VTEST} missing: run deploy/setup.sh"
    );
}
pub mod http;
pub mod ports;
pub mod process;
