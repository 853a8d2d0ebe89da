//! Following the master's newest plan: cameras to ingest, where crops go,
//! bandwidth shares.

use super::shared::Shared;
use crate::bandwidth::TokenBucket;
use crate::cameras::{ingest_config, source_name, CameraSlot, Control};
use crate::config::EdgeConfig;
use crate::recorder::Recorder;
use anyhow::Result;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_protocol::messages::Plan;
use vidar_protocol::{CameraId, UnixMs};

/// How often a node with no plan yet asks the master for the current one.
const ASK_EVERY: Duration = Duration::from_secs(2);

/// Follows the newest plan: the cameras this node ingests, and where their
/// crops go.
pub(super) struct PlanFollower {
    pub(super) shared: Arc<Shared>,
    /// camera -> source being ingested.
    pub(super) cameras: HashMap<CameraId, String>,
    pub(super) control: Sender<Control>,
    pub(super) config: EdgeConfig,
    pub(super) recorder: Recorder,
    /// Analytics jobs' stages on this node.
    pub(super) jobs: Arc<crate::analytics::runtime::JobRuntime>,
}

impl PlanFollower {
    /// Applies the plans that arrive on `rx` until a `None` (the stop) or
    /// `stop`. Until the first plan, it asks the master for the current one
    /// every [`ASK_EVERY`]; after that it sleeps until a plan or the stop
    /// wakes it.
    pub(super) fn run(
        mut self,
        rx: std::sync::mpsc::Receiver<Option<Plan>>,
        stop: &vidar_runtime::Shutdown,
    ) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut asked: Option<Instant> = None;
        while !stop.is_triggered() {
            let got = if self.shared.plan_version.load(Ordering::Relaxed) == 0 {
                if asked.is_none_or(|at| at.elapsed() >= ASK_EVERY) {
                    asked = Some(Instant::now());
                    self.ask_for_plan();
                }
                let next =
                    asked.map_or(Duration::ZERO, |at| ASK_EVERY.saturating_sub(at.elapsed()));
                rx.recv_timeout(next)
            } else {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match got {
                Ok(Some(plan)) => self.apply(plan),
                Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    pub(super) fn ask_for_plan(&mut self) {
        let net = &self.shared.link;
        for p in net.fetch::<Plan>(&net.keys().plan(), Duration::from_secs(1)) {
            self.apply(p);
        }
    }

    pub(super) fn apply(&mut self, plan: Plan) {
        let current = self.shared.plan_version.load(Ordering::Relaxed);
        match newer(plan.version, current, UnixMs::now()) {
            Ok(true) => {}
            Ok(false) => return,
            Err(why) => {
                tracing::warn!(version = plan.version, current, why, "plan refused");
                return;
            }
        }
        let me = self.shared.node.clone();
        let mine: HashMap<CameraId, String> = plan
            .streams_for(&me)
            .map(|s| (s.camera.clone(), s.source.clone()))
            .collect();
        // Cameras taken away, or moved to another source.
        let gone: Vec<CameraId> = self
            .cameras
            .iter()
            .filter(|(c, src)| mine.get(*c) != Some(*src))
            .map(|(c, _)| c.clone())
            .collect();
        for c in gone {
            self.cameras.remove(&c);
            let _ = self.control.send(Control::Remove(c));
        }
        for (camera, source) in &mine {
            if self.cameras.contains_key(camera) {
                continue;
            }
            match self.slot(camera, source) {
                Ok(slot) => {
                    self.recorder.camera(camera, source_name(source).as_str());
                    if self.control.send(Control::Add(Box::new(slot))).is_ok() {
                        self.cameras.insert(camera.clone(), source.clone());
                    }
                }
                Err(e) => {
                    tracing::error!(camera = %camera, error = %format!("{e:#}"), "cannot ingest the camera the plan gives this node")
                }
            }
        }
        {
            let mut routes = self.shared.routes.lock().unwrap_or_else(|p| p.into_inner());
            routes.remote = plan
                .streams_for(&me)
                .filter(|s| s.reid_node != me)
                .map(|s| (s.camera.clone(), s.reid_node.clone()))
                .collect();
            routes.askers = plan
                .streams
                .iter()
                .filter(|s| s.reid_node == me && s.node != me)
                .map(|s| s.node.clone())
                .collect();
            routes.set_deciders(
                plan.streams
                    .iter()
                    .map(|s| (s.camera.clone(), (s.node.clone(), s.reid_node.clone())))
                    .collect(),
                UnixMs::now(),
            );
            routes.peers = plan
                .streams
                .iter()
                .flat_map(|s| [&s.node, &s.reid_node])
                .chain(plan.bandwidth.iter().flat_map(|b| [&b.from, &b.to]))
                .chain(plan.jobs.iter().flat_map(|j| j.nodes.iter()))
                .filter(|n| **n != me)
                .cloned()
                .collect();
            let mut buckets = std::mem::take(&mut routes.buckets);
            routes.buckets = plan
                .bandwidth
                .iter()
                .filter(|b| b.from == me)
                .map(|b| {
                    let bucket = match buckets.remove(&b.to) {
                        Some(mut old) => {
                            old.set_rate(b.bytes_per_s);
                            old
                        }
                        None => TokenBucket::new(b.bytes_per_s),
                    };
                    (b.to.clone(), bucket)
                })
                .collect();
        }
        self.shared
            .plan_version
            .store(plan.version, Ordering::Relaxed);
        self.jobs.apply(&plan);
        tracing::info!(version = plan.version, cameras = mine.len(), jobs = plan.jobs.len(), reason = %plan.reason, "following plan");
    }

    /// Starts ingesting `camera` with the `[sharing.ingest]` template.
    pub(super) fn slot(&self, camera: &CameraId, source: &str) -> Result<CameraSlot> {
        let source = self.config.sharing.source_for(camera, source)?;
        let cfg = ingest_config(&self.config.sharing.ingest, camera, &source)?;
        CameraSlot::start(cfg, &self.config.tracker, &self.config.motion)
    }
}

/// How far a plan's version (the master's clock, ms) may be ahead of this
/// node's clock: clock skew, not more. A version far ahead would make every
/// real plan after it look old.
pub const MAX_PLAN_AHEAD_MS: i64 = 10 * 60 * 1000;

/// Whether a plan of `version` replaces the one of `current`, at `now_ms`:
/// Ok(true) newer, Ok(false) not newer, Err when its version is implausible.
/// A version is the master's clock when it made the plan (or one more than
/// the last version, whichever is larger).
fn newer(version: u64, current: u64, now: UnixMs) -> Result<bool, &'static str> {
    let latest = u64::try_from((now + MAX_PLAN_AHEAD_MS).ms()).unwrap_or(0);
    if version > latest {
        return Err("its version is more than 10 minutes ahead of this node's clock");
    }
    Ok(version > current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_newer_plausible_versions_replace_the_plan() {
        let v = 1_800_000_000_000u64;
        let now = UnixMs(1_800_000_000_000);
        assert_eq!(newer(v, v - 5, now), Ok(true));
        assert_eq!(newer(v - 10, v - 5, now), Ok(false));
        assert_eq!(newer(v - 5, v - 5, now), Ok(false));
        // The master's clock a few minutes ahead: fine.
        assert_eq!(newer(v + 60_000, v, now), Ok(true));
        assert_eq!(newer(v + 10 * 60 * 1000, v, now), Ok(true));
        // A forged u64::MAX (issue 16) would freeze the node: refused.
        assert!(newer(u64::MAX, v, now).is_err());
        assert!(newer(v + 10 * 60 * 1000 + 1, v, now).is_err());
    }
}
