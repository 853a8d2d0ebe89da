//! What the plan service keeps across a master restart (`state_dir/plan.json`):
//! the plan in force, the planner's output it came from, the links and
//! uploads it was made with, and the figures the nodes measured for each
//! camera (people, detector share, the rest of a frame's work).
//!
//! Without it a restarted master planned afresh, with the configured
//! figures, from whichever nodes had reported in its first 300 ms: cameras
//! moved off nodes that had merely not spoken yet, then moved again once
//! the figures were measured (45 s and more for a frame's other work). With
//! it the restarted master takes the plan back as the one in force, waits
//! for that plan's nodes, and its first replan keeps what is still good.
//!
//! The file is the master's own, written whole or not at all (0600, a
//! temporary file renamed over it). A file that cannot be read or is wrong
//! is named in a warning and ignored: the master then plans afresh.
//! Camera credentials are never written: sources are stripped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vidar_protocol::messages::Plan;
use vidar_protocol::{CameraId, NodeId};
use vidar_scheduler::jstsh::StreamAlgorithm;

use super::measured::MAX_INGEST_WORK;
use crate::planner::PlanOutput;

/// The file's format; a file of another format is ignored.
pub const FORMAT: u32 = 1;
/// The file's name in the master's `state_dir`.
pub const FILE: &str = "plan.json";
/// Largest file read (a plan of thousands of cameras is a few MB).
const MAX_BYTES: u64 = 64 << 20;

/// The plan service's state, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// [`FORMAT`].
    pub format: u32,
    /// The plan in force, as published.
    pub plan: Plan,
    /// The planner's output it came from (sources stripped of credentials).
    pub output: PlanOutput,
    /// The algorithm that placed it.
    pub algorithm: StreamAlgorithm,
    /// The nodes it was made for.
    pub nodes: Vec<NodeId>,
    /// The measured pair rates it was made with, Mbit/s.
    pub links: Vec<(NodeId, NodeId, f64)>,
    /// The nodes' uploads it was made with, Mbit/s.
    pub uploads: Vec<(NodeId, f64)>,
    /// People per frame, as held for each camera.
    pub persons: BTreeMap<CameraId, f64>,
    /// Detector runs per frame, as held.
    pub detect_shares: BTreeMap<CameraId, f64>,
    /// The rest of a frame's work, as held (detector frames per frame).
    pub ingest_work: BTreeMap<CameraId, f64>,
}

/// Why a saved state was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    /// Reading or writing the file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// `reading` or `writing`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a state this build takes.
    #[error("{path}: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        why: String,
    },
}

/// The state file in `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

impl Saved {
    /// Every problem of a state read back, each naming its field.
    fn check(&self) -> Vec<String> {
        let mut bad = Vec::new();
        if self.format != FORMAT {
            bad.push(format!(
                "format {} (this build reads {FORMAT})",
                self.format
            ));
        }
        let figures = [
            ("persons", &self.persons, 0.0, f64::INFINITY),
            ("detect_shares", &self.detect_shares, f64::MIN_POSITIVE, 1.0),
            ("ingest_work", &self.ingest_work, 0.0, MAX_INGEST_WORK),
        ];
        for (name, map, lo, hi) in figures {
            for (camera, v) in map {
                if !(v.is_finite() && (lo..=hi).contains(v)) {
                    bad.push(format!("{name}.{camera}: {v} is outside {lo}..={hi}"));
                }
            }
        }
        let rate_ok = |r: f64| r.is_finite() && r > 0.0;
        for (a, b, r) in &self.links {
            if !rate_ok(*r) {
                bad.push(format!("links {a}-{b}: {r} Mbit/s is not a positive rate"));
            }
        }
        for (n, r) in &self.uploads {
            if !rate_ok(*r) {
                bad.push(format!("uploads.{n}: {r} Mbit/s is not a positive rate"));
            }
        }
        let placed: Vec<_> = self.output.streams.iter().map(|s| &s.camera).collect();
        let published: Vec<_> = self.plan.streams.iter().map(|s| &s.camera).collect();
        if placed != published {
            bad.push("output.streams: not the cameras of plan.streams".into());
        }
        bad
    }
}

/// Writes `state` to `path` (inside `dir`), whole or not at all, with
/// every camera source stripped of its credentials.
pub fn save(dir: &Path, path: &Path, state: &Saved) -> Result<(), SavedError> {
    let mut state = state.clone();
    for s in &mut state.output.streams {
        s.source = vidar_protocol::secret::strip_credentials(&s.source);
    }
    let bytes = serde_json::to_vec_pretty(&state).map_err(|e| SavedError::Invalid {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    vidar_runtime::files::write_private(dir, path, &bytes).map_err(|source| SavedError::Io {
        what: "writing",
        path: path.to_owned(),
        source,
    })
}

/// Reads the state at `path`: `None` when there is none.
pub fn load(path: &Path) -> Result<Option<Saved>, SavedError> {
    use std::io::Read;
    let io = |source| SavedError::Io {
        what: "reading",
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let invalid = |why: String| SavedError::Invalid {
        path: path.to_owned(),
        why,
    };
    if bytes.len() as u64 > MAX_BYTES {
        return Err(invalid(format!("larger than {MAX_BYTES} bytes")));
    }
    let state: Saved = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    match state.check() {
        bad if bad.is_empty() => Ok(Some(state)),
        bad => Err(invalid(bad.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::Placed;
    use vidar_protocol::messages::StreamAssignment;
    use vidar_protocol::UnixMs;

    fn node(s: &str) -> NodeId {
        NodeId::new(s).expect("node id")
    }

    fn camera(s: &str) -> CameraId {
        CameraId::new(s).expect("camera id")
    }

    fn state() -> Saved {
        let placed = Placed {
            camera: camera("c1"),
            source: "rtsp://admin:secret@10.0.0.5/c1".into(),
            node: node("a"),
            reid_node: node("b"),
        };
        Saved {
            format: FORMAT,
            plan: Plan {
                version: 1_700_000_000_123,
                issued_ms: UnixMs(1_700_000_000_123),
                reason: "nodes joined".into(),
                streams: vec![StreamAssignment {
                    camera: camera("c1"),
                    source: "rtsp://10.0.0.5/c1".into(),
                    node: node("a"),
                    reid_node: node("b"),
                }],
                bandwidth: Vec::new(),
                jobs: Vec::new(),
            },
            output: PlanOutput {
                streams: vec![placed],
                bandwidth: vec![(node("a"), node("b"), 12_000)],
                cost: 0.05,
                predicted: Default::default(),
                reason: "fresh".into(),
            },
            algorithm: StreamAlgorithm::Jstsh,
            nodes: vec![node("a"), node("b")],
            links: vec![(node("a"), node("b"), 9.5)],
            uploads: vec![(node("a"), 9.5)],
            persons: [(camera("c1"), 1.5)].into(),
            detect_shares: [(camera("c1"), 0.5)].into(),
            ingest_work: [(camera("c1"), 0.4)].into(),
        }
    }

    #[test]
    fn a_saved_state_reads_back_whole_without_credentials() {
        let dir = tempfile::tempdir().expect("dir");
        let path = path_in(dir.path());
        assert!(load(&path).expect("no file is no state").is_none());
        save(dir.path(), &path, &state()).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("secret"), "a credential was written: {text}");
        let back = load(&path).expect("load").expect("a state");
        let mut want = state();
        want.output.streams[0].source = "rtsp://10.0.0.5/c1".into();
        assert_eq!(back, want);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the state file is the master's only");
        // Saved again over it: replaced whole, nothing else left beside it.
        let mut next = state();
        next.ingest_work.insert(camera("c1"), 0.6);
        save(dir.path(), &path, &next).expect("save again");
        assert_eq!(
            load(&path).expect("load").expect("state").ingest_work,
            next.ingest_work
        );
        let files: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(files.len(), 1, "only {FILE}: {files:?}");
    }

    #[test]
    fn a_wrong_state_file_is_refused_naming_the_file_and_what_is_wrong() {
        let dir = tempfile::tempdir().expect("dir");
        let path = path_in(dir.path());
        let refused = |s: &Saved| {
            save(dir.path(), &path, s).expect("save");
            load(&path).expect_err("refused").to_string()
        };
        let file = path.display().to_string();
        let mut s = state();
        s.format = 2;
        let e = refused(&s);
        assert!(e.contains(&file) && e.contains("format 2"), "{e}");
        let mut s = state();
        s.detect_shares.insert(camera("c1"), 1.5);
        s.ingest_work.insert(camera("c2"), -0.1);
        s.links[0].2 = 0.0;
        let e = refused(&s);
        for what in [
            "detect_shares.c1: 1.5",
            "ingest_work.c2: -0.1",
            "links a-b: 0",
        ] {
            assert!(e.contains(what), "{what} not named in: {e}");
        }
        let mut s = state();
        s.output.streams.clear();
        assert!(refused(&s).contains("output.streams"));
        std::fs::write(&path, b"{\"format\": 1, \"plan\": ").expect("write");
        let e = load(&path).expect_err("truncated").to_string();
        assert!(e.contains(&file) && e.contains("EOF"), "{e}");
        std::fs::write(&path, b"not json").expect("write");
        assert!(load(&path).is_err());
    }
}
