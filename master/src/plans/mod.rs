//! The plan service: decides when to replan, calls
//! [`crate::planner::plan`] with the live nodes, versions and publishes the
//! result on `keys.plan()`, republishes it every [`REPUBLISH`] for late
//! joiners, and answers queries for it.
//!
//! Replans happen on a join or leave (debounced by [`DEBOUNCE`], so a node's
//! cameras move within about a second of its token vanishing), on a camera list
//! change, on a load shift (a node's detector busier than [`BUSY_THRESHOLD`], or
//! a planned camera its node does not stream; at most once per
//! [`LOAD_REPLAN_MIN`]), and every `plan_every`. A new version is issued only
//! when the placement changed. Versions are `max(previous + 1, now in ms)`, so
//! they keep increasing across master restarts and nodes never mistake a new
//! plan for an old one. This module owns when and what is published; the
//! placement itself is the planner's.
//!
//! Split along its concerns: this module is the handle shared with the API
//! ([`Plans`]: the plan in force, the site's cameras, counters);
//! [`policy`] holds the pure decisions (a node's view for the planner, the
//! wire plan, whether a placement changed, whether the load calls for a
//! replan); [`service`] is the thread that replans and publishes.

pub mod measured;
pub mod policy;
pub mod saved;
pub mod service;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::Serialize;
use vidar_protocol::messages::Plan;
use vidar_protocol::NodeId;

use crate::planner::SiteCamera;
pub use policy::{node_view, placement_changed, BUSY_THRESHOLD, STREAM_GRACE};
pub use service::{PlanService, DEBOUNCE, LOAD_REPLAN_MIN, REPUBLISH};

/// The plan in force, as published.
#[derive(Debug, Clone, Serialize)]
pub struct Current {
    /// The published plan.
    pub plan: Plan,
    /// What the scheduler's load-aware model predicts for it: its JSTSH
    /// objective (`load_aware_cost`, s), per-frame latency, frames/s, the
    /// busiest node's utilisation (the simulator's figures, to hold against
    /// what the nodes measure).
    pub predicted: vidar_scheduler::jstsh::Objective,
    /// The algorithm that placed it (`plan_algorithm`).
    pub algorithm: vidar_scheduler::jstsh::StreamAlgorithm,
    /// The nodes it was made for.
    pub nodes: Vec<NodeId>,
    /// When it was issued, on this process's monotonic clock.
    #[serde(skip)]
    pub issued_at: Option<Instant>,
    /// Its encoding, ready to put or reply.
    #[serde(skip)]
    pub encoded: vidar_link::Encoded<Plan>,
}

/// Counters of the plan service.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct PlanCounters {
    /// Times the planner ran.
    pub replans: u64,
    /// Versions issued.
    pub versions: u64,
    /// Times the planner failed.
    pub failures: u64,
    /// Publications (new and repeated).
    pub published: u64,
}

#[derive(Debug)]
struct Shared {
    current: RwLock<Option<Arc<Current>>>,
    cameras: Mutex<Vec<SiteCamera>>,
    planned: Mutex<Vec<SiteCamera>>,
    wake: SyncSender<()>,
    replan_requested: Mutex<Option<String>>,
    replans: AtomicU64,
    versions: AtomicU64,
    failures: AtomicU64,
    published: AtomicU64,
    jobs: Mutex<JobsState>,
}

/// The jobs as the plan service last saw them: waiting ones with why, and
/// job files it refused.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobsState {
    /// `(job, why)` of every job not placed.
    pub waiting: Vec<(vidar_protocol::JobId, String)>,
    /// `(file, why)` of every job file refused.
    pub refused: Vec<(String, String)>,
    /// The policy that places them.
    pub policy: Option<vidar_scheduler::ents::Policy>,
}

/// A handle on the plan service: read the plan, change the cameras.
#[derive(Debug, Clone)]
pub struct Plans {
    shared: Arc<Shared>,
}

impl Plans {
    /// A handle for `cameras`; `wake` must be the sender of the service's wake-up channel.
    pub fn new(cameras: Vec<SiteCamera>, wake: SyncSender<()>) -> Plans {
        Plans {
            shared: Arc::new(Shared {
                current: RwLock::new(None),
                cameras: Mutex::new(cameras),
                planned: Mutex::new(Vec::new()),
                wake,
                replan_requested: Mutex::new(None),
                replans: AtomicU64::new(0),
                versions: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                published: AtomicU64::new(0),
                jobs: Mutex::new(JobsState::default()),
            }),
        }
    }

    /// The plan in force, if any (none while no node is live).
    pub fn current(&self) -> Option<Arc<Current>> {
        self.shared
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_current(&self, c: Option<Arc<Current>>) {
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = c;
    }

    /// The site's cameras.
    pub fn cameras(&self) -> Vec<SiteCamera> {
        self.shared
            .cameras
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The site's cameras as the last replan planned them: the figures
    /// its nodes measure (people, detector share, the rest of a frame's
    /// work) in place of the configured ones. Empty before the first.
    pub fn planned(&self) -> Vec<SiteCamera> {
        self.shared
            .planned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_planned(&self, cameras: Vec<SiteCamera>) {
        *self
            .shared
            .planned
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = cameras;
    }

    /// Replaces the site's cameras and replans at once.
    pub fn set_cameras(&self, cameras: Vec<SiteCamera>) {
        *self
            .shared
            .cameras
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = cameras;
        self.request_replan("camera list changed");
    }

    /// Wakes the plan thread (to see the master's stop at once).
    pub fn wake(&self) {
        let _ = self.shared.wake.try_send(());
    }

    /// Asks for a replan as soon as possible, for `reason`.
    pub fn request_replan(&self, reason: &str) {
        *self
            .shared
            .replan_requested
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
        let _ = self.shared.wake.try_send(());
    }

    fn take_request(&self) -> Option<String> {
        self.shared
            .replan_requested
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The jobs not placed and the job files refused, as of the last replan.
    pub fn jobs(&self) -> JobsState {
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_jobs(&self, j: JobsState) {
        *self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner()) = j;
    }

    /// Counters since start.
    pub fn counters(&self) -> PlanCounters {
        let s = &self.shared;
        PlanCounters {
            replans: s.replans.load(Ordering::Relaxed),
            versions: s.versions.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            published: s.published.load(Ordering::Relaxed),
        }
    }
}
