//! The plan service's thread: watches membership, camera changes and load,
//! debounces, calls [`planner::plan`], versions and publishes the result on
//! `keys.plan()`, republishes it every [`REPUBLISH`], and answers queries for
//! it. When to replan and what changed are [`super::policy`]'s decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vidar_link::LinkError;
use vidar_protocol::messages::{NodeStatus, Plan};
use vidar_protocol::{Keys, NodeId, UnixMs};

use super::measured::{
    measured_detect_shares, measured_frame_work, measured_persons, INGEST_SETTLE,
};
use super::policy::{
    link_shift, load_shift, node_view, placement_changed, to_plan, upload_shift, uploads,
};
use super::saved::Saved;
use super::{Current, Plans};
use crate::membership::Membership;
use crate::planner::{self, NodeView, PlanOutput};

mod restart;

/// How long after a membership change the planner waits for more changes.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// How often the current plan is published even when unchanged.
pub const REPUBLISH: Duration = Duration::from_secs(2);
/// Least time between two replans caused by load.
pub const LOAD_REPLAN_MIN: Duration = Duration::from_secs(15);

/// What the plan service needs to run.
#[derive(Debug)]
pub struct PlanService {
    /// The zenoh session.
    pub link: vidar_link::Link,
    /// The site's keys.
    pub keys: Keys,
    /// The membership table.
    pub membership: Membership,
    /// The handle shared with the API.
    pub plans: Plans,
    /// The receiver of the wake-up channel shared by membership and `plans`.
    pub wake: Receiver<()>,
    /// Periodic replan interval.
    pub every: Duration,
    /// How cameras and re-ID are placed (`plan_algorithm`).
    pub algorithm: vidar_scheduler::jstsh::StreamAlgorithm,
    /// The job book.
    pub jobs: crate::jobs::Book,
    /// How job stages are placed (`jobs_policy`).
    pub jobs_policy: vidar_scheduler::ents::Policy,
    /// How bytes travel between nodes, for placing job stages.
    pub jobs_network: crate::jobs::place::Network,
    /// Triggered to stop the service (with a wake, see [`Plans::wake`]).
    pub stop: vidar_runtime::Shutdown,
    /// Where the plan in force and the measured figures are kept across
    /// restarts (`plans::saved`).
    pub state_dir: std::path::PathBuf,
    /// How long after start the first plan waits for the nodes it expects
    /// (those of the saved plan, else the enrolled ones, else any): a node
    /// that lives reports within this (the master's `node_timeout_s`).
    pub startup_wait: Duration,
}

/// The first plan after start waits until `until`, or until every node of
/// `nodes` is live (when there are any).
#[derive(Debug)]
struct Startup {
    until: Instant,
    nodes: BTreeSet<NodeId>,
}

impl Startup {
    fn waits(&self, now: Instant, live: &BTreeSet<NodeId>) -> bool {
        now < self.until && (self.nodes.is_empty() || !self.nodes.is_subset(live))
    }
}

struct Loop {
    svc: PlanService,
    publisher: vidar_link::Publisher<Plan>,
    planned_nodes: BTreeSet<NodeId>,
    /// The measured links the last plan was made with (Mbit/s by pair).
    planned_links: BTreeMap<(NodeId, NodeId), f64>,
    /// Nodes' uploads when the plan in force was made (jobs plan with them).
    planned_uploads: BTreeMap<NodeId, f64>,
    /// The people per frame each camera is planned with, once measured
    /// ([`measured_persons`]).
    persons: BTreeMap<vidar_protocol::CameraId, f64>,
    /// The detector shares planned with, per camera
    /// ([`measured_detect_shares`]).
    detect_shares: BTreeMap<vidar_protocol::CameraId, f64>,
    /// The rest of a frame's work planned with, per camera
    /// ([`measured_frame_work`]).
    ingest_work: BTreeMap<vidar_protocol::CameraId, f64>,
    previous: Option<PlanOutput>,
    pending: Option<(Instant, String)>,
    last_plan: Option<Instant>,
    last_publish: Option<Instant>,
    last_load_replan: Option<Instant>,
    warned_no_nodes: bool,
    seed: u64,
    /// The job book's folder as last read, and what it held.
    jobs_seen: Option<Vec<(String, u64, Option<std::time::SystemTime>)>>,
    jobs: crate::jobs::Contents,
    jobs_looked: Option<Instant>,
    /// Until the first plan after start may be made.
    startup: Option<Startup>,
    /// The state last saved, and why the last save failed (warned once).
    saved: Option<Saved>,
    save_failed: Option<String>,
}

impl PlanService {
    /// Declares the publisher and the queryable, then runs the service on its own thread.
    pub fn spawn(self) -> Result<(JoinHandle<()>, vidar_link::Service), LinkError> {
        let publisher = self.link.publisher::<Plan>(&self.keys.plan())?;
        let plans = self.plans.clone();
        let queryable = self
            .link
            .serve_get::<Plan>(&self.keys.plan(), move |answer| {
                // The current plan's bytes, answered with no lock held.
                if let Some(c) = plans.current() {
                    answer.reply_encoded(&c.encoded);
                }
            })?;
        let mut l = Loop {
            svc: self,
            publisher,
            planned_nodes: BTreeSet::new(),
            planned_links: BTreeMap::new(),
            planned_uploads: BTreeMap::new(),
            persons: BTreeMap::new(),
            detect_shares: BTreeMap::new(),
            ingest_work: BTreeMap::new(),
            previous: None,
            pending: None,
            last_plan: None,
            last_publish: None,
            last_load_replan: None,
            warned_no_nodes: false,
            seed: 0x5eed,
            jobs_seen: None,
            jobs: Default::default(),
            jobs_looked: None,
            startup: None,
            saved: None,
            save_failed: None,
        };
        l.start(Instant::now());
        let thread = std::thread::Builder::new()
            .name("vidar-plans".into())
            .spawn(move || l.run())
            .map_err(|e| LinkError::Declare {
                what: "the plan thread".into(),
                reason: e.to_string(),
            })?;
        Ok((thread, queryable))
    }
}

impl Loop {
    /// Looks, then sleeps until the next thing falls due (a debounced
    /// replan, the periodic one, a republish, a node's status timing out,
    /// the end of the load cooldown) or a wake arrives (a join or leave, a
    /// replan request, the stop). Nothing polls. Load is judged from the
    /// statuses at each look: at least every [`REPUBLISH`] while a plan
    /// exists, well within [`LOAD_REPLAN_MIN`]; a status alone does not wake
    /// the thread (hundreds of nodes would wake it hundreds of times a
    /// second).
    fn run(&mut self) {
        while !self.svc.stop.is_triggered() {
            let now = Instant::now();
            self.tick(now);
            let wait = self.next_due(now).saturating_duration_since(Instant::now());
            if let Err(RecvTimeoutError::Disconnected) = self.svc.wake.recv_timeout(wait) {
                // Nobody can wake us any more: only deadlines and the stop.
                self.svc.stop.wait_timeout(wait);
            }
        }
    }

    /// The earliest time at which [`Loop::tick`] has something to do with
    /// no wake (the periodic replan at the latest).
    fn next_due(&self, now: Instant) -> Instant {
        let periodic = self.last_plan.map_or(now, |at| at + self.svc.every);
        let pending = self.pending.as_ref().map(|(at, _)| *at);
        let republish = self
            .svc
            .plans
            .current()
            .map(|_| self.last_publish.map_or(now, |at| at + REPUBLISH));
        let cooldown = self
            .last_load_replan
            .map(|at| at + LOAD_REPLAN_MIN)
            .filter(|at| *at > now);
        let startup = self.startup.as_ref().map(|s| s.until);
        [
            startup,
            pending,
            republish,
            cooldown,
            self.svc.membership.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .fold(periodic, Instant::min)
    }

    fn schedule(&mut self, now: Instant, delay: Duration, reason: String) {
        match &mut self.pending {
            Some((at, r)) => {
                *at = (*at).min(now + delay);
                if !r.contains(&reason) {
                    r.push_str("; ");
                    r.push_str(&reason);
                }
            }
            None => self.pending = Some((now + delay, reason)),
        }
    }

    fn tick(&mut self, now: Instant) {
        let events = self.svc.membership.sweep(now);
        let live = self.svc.membership.live();
        let live_set: BTreeSet<NodeId> = live.iter().map(|s| s.node.clone()).collect();
        if live_set != self.planned_nodes || !events.is_empty() {
            let joined: Vec<_> = live_set.difference(&self.planned_nodes).collect();
            let left: Vec<_> = self.planned_nodes.difference(&live_set).collect();
            if !joined.is_empty() || !left.is_empty() {
                let names = |v: &[&NodeId]| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                    }
                };
                let reason = format!("nodes joined: {}; left: {}", names(&joined), names(&left));
                self.schedule(now, DEBOUNCE, reason);
            }
        }
        if let Some(reason) = self.svc.plans.take_request() {
            self.schedule(now, Duration::ZERO, reason);
        }
        if self
            .jobs_looked
            .is_none_or(|at| now.saturating_duration_since(at) >= REPUBLISH)
        {
            self.jobs_looked = Some(now);
            let seen = self.svc.jobs.fingerprint();
            if self.jobs_seen.as_ref() != Some(&seen) {
                let first = self.jobs_seen.is_none();
                self.jobs_seen = Some(seen);
                self.jobs = self.svc.jobs.load();
                for (file, why) in &self.jobs.refused {
                    tracing::warn!(file, why, "job file refused");
                }
                if !first || !self.jobs.jobs.is_empty() {
                    self.schedule(now, Duration::ZERO, "jobs changed".into());
                }
            }
        }
        let due = self
            .last_plan
            .is_none_or(|at| now.saturating_duration_since(at) >= self.svc.every);
        if due {
            self.schedule(now, Duration::ZERO, "periodic".into());
        }
        let load_ok = self
            .last_load_replan
            .is_none_or(|at| now.saturating_duration_since(at) >= LOAD_REPLAN_MIN);
        if self.pending.is_none() && load_ok {
            let current = self.svc.plans.current();
            if let Some(reason) = load_shift(current.as_deref(), &live, now) {
                self.last_load_replan = Some(now);
                self.schedule(now, Duration::ZERO, format!("load shift: {reason}"));
            } else if current.is_some() {
                // A pair's rate, or (jobs share it) a node's upload.
                let views: Vec<NodeView> = live.iter().map(node_view).collect();
                let jobs = !self.jobs.jobs.is_empty();
                let shift =
                    link_shift(&self.planned_links, &planner::pair_rates(&views)).or_else(|| {
                        jobs.then(|| upload_shift(&self.planned_uploads, &uploads(&views)))
                            .flatten()
                    });
                if let Some(reason) = shift {
                    self.last_load_replan = Some(now);
                    self.schedule(now, Duration::ZERO, format!("link shift: {reason}"));
                }
            }
        }
        if let Some(s) = self.startup.take_if(|s| !s.waits(now, &live_set)) {
            tracing::debug!(
                expected = s.nodes.len(),
                live = live_set.len(),
                "the first plan after start may be made"
            );
            self.drop_stale_restore(&live);
        }
        if let Some((at, _)) = self.pending.as_ref().filter(|_| self.startup.is_none()) {
            if *at <= now {
                if let Some((_, reason)) = self.pending.take() {
                    self.replan(now, live, live_set, &reason);
                    self.save();
                }
            }
        }
        if let Some(c) = self.svc.plans.current() {
            let stale = self
                .last_publish
                .is_none_or(|at| now.saturating_duration_since(at) >= REPUBLISH);
            if stale {
                self.publish(&c, now);
            }
        }
    }

    fn publish(&mut self, c: &Current, now: Instant) {
        self.last_publish = Some(now);
        match self.publisher.put_encoded(&c.encoded) {
            Ok(()) => {
                self.svc
                    .plans
                    .shared
                    .published
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, version = c.plan.version, "publishing the plan"),
        }
    }

    fn replan(
        &mut self,
        now: Instant,
        live: Vec<NodeStatus>,
        live_set: BTreeSet<NodeId>,
        trigger: &str,
    ) {
        self.last_plan = Some(now);
        self.planned_nodes = live_set.clone();
        let views: Vec<NodeView> = live.iter().map(node_view).collect();
        self.planned_links = planner::pair_rates(&views);
        self.planned_uploads = uploads(&views);
        let shared = &self.svc.plans.shared;
        if live.is_empty() {
            if self.svc.plans.current().is_some() || !self.warned_no_nodes {
                tracing::warn!(trigger, "no live node: no plan is published");
            }
            self.warned_no_nodes = true;
            self.svc.plans.set_current(None);
            return;
        }
        self.warned_no_nodes = false;
        let mut cameras = self.svc.plans.cameras();
        measured_persons(&mut cameras, &views, &mut self.persons);
        measured_detect_shares(&mut cameras, &views, &mut self.detect_shares);
        // The placement in force, once the nodes' CPU averages cover it.
        let settled = self.svc.plans.current().is_some_and(|c| {
            c.issued_at
                .is_some_and(|at| now.saturating_duration_since(at) >= INGEST_SETTLE)
        });
        let placed = (self.previous.as_ref())
            .filter(|_| settled)
            .map(|p| p.streams.as_slice());
        measured_frame_work(&mut cameras, &views, placed, &mut self.ingest_work);
        self.svc.plans.set_planned(cameras.clone());
        shared.replans.fetch_add(1, Ordering::Relaxed);
        self.seed = self.seed.wrapping_add(1);
        let out = match planner::plan_with(
            &cameras,
            &views,
            self.previous.as_ref(),
            self.seed,
            self.svc.algorithm,
        ) {
            Ok(out) => out,
            Err(e) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, trigger, nodes = live.len(), "planning failed; the previous plan stays");
                return;
            }
        };
        let current = self.svc.plans.current();
        let prev_version = current.as_ref().map_or(0, |c| c.plan.version);
        let clock = UnixMs::now();
        let mut candidate = to_plan(&out, prev_version, clock);
        let specs: Vec<_> = self.jobs.jobs.values().cloned().collect();
        let in_force = current.as_ref().map_or(&[][..], |c| c.plan.jobs.as_slice());
        let placed = crate::jobs::place::place(
            &specs,
            &cameras,
            &views,
            &out,
            in_force,
            self.svc.jobs_policy,
            self.svc.jobs_network,
        );
        for (job, why) in &placed.waiting {
            tracing::debug!(%job, why, "job waiting");
        }
        candidate.jobs = placed.placed;
        self.svc.plans.set_jobs(super::JobsState {
            waiting: placed.waiting,
            refused: self.jobs.refused.clone(),
            policy: Some(self.svc.jobs_policy),
        });
        let changed = current
            .as_ref()
            .is_none_or(|c| placement_changed(&c.plan, &candidate));
        self.previous = Some(out.clone());
        if !changed {
            // The same placement, predicted with the figures measured since.
            if let Some(c) = current.filter(|c| c.predicted != out.predicted) {
                self.svc.plans.set_current(Some(Arc::new(Current {
                    predicted: out.predicted.clone(),
                    ..(*c).clone()
                })));
            }
            tracing::debug!(
                trigger,
                version = prev_version,
                "replanned: placement unchanged"
            );
            return;
        }
        // A version is the clock when the plan was made (so a restarted
        // master's plans are newer than its previous life's), or one more
        // than the last.
        let version = (prev_version + 1).max(u64::try_from(clock.ms()).unwrap_or(0));
        let mut plan = candidate;
        plan.version = version;
        plan.reason = format!("{}: {}", trigger, out.reason);
        if plan.reason.len() > vidar_protocol::messages::MAX_TEXT_LEN {
            let mut cut = vidar_protocol::messages::MAX_TEXT_LEN;
            while !plan.reason.is_char_boundary(cut) {
                cut -= 1;
            }
            plan.reason.truncate(cut);
        }
        let encoded = match vidar_link::Encoded::new(&plan) {
            Ok(b) => b,
            Err(e) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, version, "encoding the plan; the previous plan stays");
                return;
            }
        };
        shared.versions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            version,
            trigger,
            reason = %out.reason,
            streams = plan.streams.len(),
            jobs = plan.jobs.len(),
            nodes = live_set.len(),
            cost = out.cost,
            "new plan"
        );
        let c = Arc::new(Current {
            plan,
            predicted: out.predicted.clone(),
            algorithm: self.svc.algorithm,
            nodes: live_set.into_iter().collect(),
            issued_at: Some(now),
            encoded,
        });
        self.svc.plans.set_current(Some(c.clone()));
        self.publish(&c, now);
    }
}
