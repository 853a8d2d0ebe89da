//! The plan service: decides when to replan, calls [`planner::plan`] with the
//! live nodes, versions and publishes the result on `keys.plan()`, republishes
//! it every [`REPUBLISH`] for late joiners, and answers queries for it.
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

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use vidar_link::zenoh::{self, Wait};
use vidar_protocol::messages::{BandwidthShare, NodeStatus, Plan, StreamAssignment};
use vidar_protocol::{wire, Keys, NodeId, StreamState};

use crate::clock::now_ms;
use crate::membership::Membership;
use crate::planner::{self, NodeView, PlanOutput, SiteCamera};

/// How long after a membership change the planner waits for more changes.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// How often the current plan is published even when unchanged.
pub const REPUBLISH: Duration = Duration::from_secs(2);
/// A node whose detector is busier than this fraction triggers a replan.
pub const BUSY_THRESHOLD: f64 = 0.9;
/// Least time between two replans caused by load.
pub const LOAD_REPLAN_MIN: Duration = Duration::from_secs(15);
/// How long a node has, after a plan, to start streaming a camera before its
/// absence counts as a load shift.
pub const STREAM_GRACE: Duration = Duration::from_secs(20);
/// How often the service looks at membership and load.
const TICK: Duration = Duration::from_millis(100);
/// A bandwidth share that moves by more than this fraction makes a new version.
const SHARE_CHANGE: f64 = 0.2;

/// The plan in force, as published.
#[derive(Debug, Clone, Serialize)]
pub struct Current {
    /// The published plan.
    pub plan: Plan,
    /// JSTSH's objective of it (s).
    pub cost: f64,
    /// The nodes it was made for.
    pub nodes: Vec<NodeId>,
    /// When it was issued, on this process's monotonic clock.
    #[serde(skip)]
    pub issued_at: Option<Instant>,
    /// Its encoding, ready to put or reply.
    #[serde(skip)]
    pub encoded: Vec<u8>,
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
    wake: SyncSender<()>,
    replan_requested: Mutex<Option<String>>,
    replans: AtomicU64,
    versions: AtomicU64,
    failures: AtomicU64,
    published: AtomicU64,
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
                wake,
                replan_requested: Mutex::new(None),
                replans: AtomicU64::new(0),
                versions: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                published: AtomicU64::new(0),
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

    /// Replaces the site's cameras and replans at once.
    pub fn set_cameras(&self, cameras: Vec<SiteCamera>) {
        *self
            .shared
            .cameras
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = cameras;
        self.request_replan("camera list changed");
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

/// The planner's view of a node, from its last status. Links that the planner
/// would refuse (to itself, not positive, repeated) are left out.
pub fn node_view(s: &NodeStatus) -> NodeView {
    let mut seen = BTreeSet::new();
    let links = s
        .links
        .iter()
        .filter(|l| l.to != s.node && l.mbit_s.is_finite() && l.mbit_s > 0.0)
        .filter(|l| seen.insert(l.to.clone()))
        .map(|l| (l.to.clone(), l.mbit_s))
        .collect();
    NodeView {
        node: s.node.clone(),
        cores: s.capacity.cores,
        memory_mb: s.capacity.memory_mb,
        detect_fps: s.capacity.detect_fps,
        reid_crops_per_s: s.capacity.reid_crops_per_s,
        reid_service: s.capacity.reid_service,
        links,
    }
}

/// The wire plan for a planner output.
fn to_plan(out: &PlanOutput, version: u64) -> Plan {
    Plan {
        version,
        issued_ms: now_ms(),
        reason: out.reason.clone(),
        streams: out
            .streams
            .iter()
            .map(|p| StreamAssignment {
                camera: p.camera.clone(),
                source: p.source.clone(),
                node: p.node.clone(),
                reid_node: p.reid_node.clone(),
            })
            .collect(),
        bandwidth: out
            .bandwidth
            .iter()
            .map(|(from, to, b)| BandwidthShare {
                from: from.clone(),
                to: to.clone(),
                bytes_per_s: *b,
            })
            .collect(),
    }
}

/// Whether `new` places work differently from `old` (streams, flows, or a
/// bandwidth share moved by more than [`SHARE_CHANGE`]).
pub fn placement_changed(old: &Plan, new: &Plan) -> bool {
    if old.streams != new.streams || old.bandwidth.len() != new.bandwidth.len() {
        return true;
    }
    old.bandwidth
        .iter()
        .any(|o| match new.share(&o.from, &o.to) {
            None => true,
            Some(n) => {
                let (a, b) = (o.bytes_per_s as f64, n as f64);
                (a - b).abs() > SHARE_CHANGE * a.max(b)
            }
        })
}

/// Why the load calls for a replan, if it does.
fn load_shift(current: Option<&Current>, live: &[NodeStatus], now: Instant) -> Option<String> {
    if let Some(s) = live.iter().find(|s| s.load.detect_busy > BUSY_THRESHOLD) {
        return Some(format!(
            "node {} detector busy {:.0} %",
            s.node,
            100.0 * s.load.detect_busy
        ));
    }
    let c = current?;
    let settled = c
        .issued_at
        .is_some_and(|at| now.saturating_duration_since(at) > STREAM_GRACE);
    if !settled {
        return None;
    }
    for a in &c.plan.streams {
        let Some(s) = live.iter().find(|s| s.node == a.node) else {
            continue;
        };
        if s.plan_version != c.plan.version {
            continue;
        }
        let streaming = s
            .load
            .cameras
            .iter()
            .any(|l| l.camera == a.camera && l.state == StreamState::Streaming);
        if !streaming {
            return Some(format!("camera {} not streaming on {}", a.camera, a.node));
        }
    }
    None
}

/// What the plan service needs to run.
#[derive(Debug)]
pub struct PlanService {
    /// The zenoh session.
    pub session: zenoh::Session,
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
    /// Set to stop the service.
    pub stop: Arc<AtomicBool>,
}

struct Loop {
    svc: PlanService,
    publisher: zenoh::pubsub::Publisher<'static>,
    planned_nodes: BTreeSet<NodeId>,
    previous: Option<PlanOutput>,
    pending: Option<(Instant, String)>,
    last_plan: Option<Instant>,
    last_publish: Option<Instant>,
    last_load_replan: Option<Instant>,
    warned_no_nodes: bool,
    seed: u64,
}

impl PlanService {
    /// Declares the publisher and the queryable, then runs the service on its own thread.
    pub fn spawn(self) -> Result<(JoinHandle<()>, zenoh::query::Queryable<()>), zenoh::Error> {
        let publisher = self.session.declare_publisher(self.keys.plan()).wait()?;
        let plans = self.plans.clone();
        let key = self.keys.plan();
        let queryable = self
            .session
            .declare_queryable(self.keys.plan())
            .callback(move |query| {
                // Clone the bytes out; reply with no lock held, on the plan's
                // own key (the query's may be a wildcard).
                if let Some(c) = plans.current() {
                    if let Err(e) = query.reply(key.as_str(), c.encoded.clone()).wait() {
                        tracing::debug!(error = %e, "replying to a plan query");
                    }
                }
            })
            .wait()?;
        let mut l = Loop {
            svc: self,
            publisher,
            planned_nodes: BTreeSet::new(),
            previous: None,
            pending: None,
            last_plan: None,
            last_publish: None,
            last_load_replan: None,
            warned_no_nodes: false,
            seed: 0x5eed,
        };
        let thread = std::thread::Builder::new()
            .name("vidar-plans".into())
            .spawn(move || l.run())
            .map_err(|e| -> zenoh::Error { Box::new(e) })?;
        Ok((thread, queryable))
    }
}

impl Loop {
    fn run(&mut self) {
        while !self.svc.stop.load(Ordering::Relaxed) {
            match self.svc.wake.recv_timeout(TICK) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
            }
            self.tick(Instant::now());
        }
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
            }
        }
        if let Some((at, _)) = &self.pending {
            if *at <= now {
                if let Some((_, reason)) = self.pending.take() {
                    self.replan(now, live, live_set, &reason);
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
        match self.publisher.put(c.encoded.clone()).wait() {
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
        let views: Vec<NodeView> = live.iter().map(node_view).collect();
        let cameras = self.svc.plans.cameras();
        shared.replans.fetch_add(1, Ordering::Relaxed);
        self.seed = self.seed.wrapping_add(1);
        let out = match planner::plan(&cameras, &views, self.previous.as_ref(), self.seed) {
            Ok(out) => out,
            Err(e) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, trigger, nodes = live.len(), "planning failed; the previous plan stays");
                return;
            }
        };
        let current = self.svc.plans.current();
        let prev_version = current.as_ref().map_or(0, |c| c.plan.version);
        let candidate = to_plan(&out, prev_version);
        let changed = current
            .as_ref()
            .is_none_or(|c| placement_changed(&c.plan, &candidate));
        self.previous = Some(out.clone());
        if !changed {
            tracing::debug!(
                trigger,
                version = prev_version,
                "replanned: placement unchanged"
            );
            return;
        }
        let version = (prev_version + 1).max(now_ms());
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
        let encoded = match wire::encode(&plan) {
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
            nodes = live_set.len(),
            cost = out.cost,
            "new plan"
        );
        let c = Arc::new(Current {
            plan,
            cost: out.cost,
            nodes: live_set.into_iter().collect(),
            issued_at: Some(now),
            encoded,
        });
        self.svc.plans.set_current(Some(c.clone()));
        self.publish(&c, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidar_protocol::messages::{CameraLoad, LinkRate, NodeCapacity, NodeLoad};
    use vidar_protocol::CameraId;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).expect("valid id")
    }

    fn status(node: &str, busy: f64) -> NodeStatus {
        NodeStatus {
            node: id(node),
            sent_ms: 1,
            started_ms: 1,
            plan_version: 7,
            capacity: NodeCapacity {
                cores: 4,
                memory_mb: 4096,
                detect_fps: 30.0,
                reid_crops_per_s: 50.0,
                reid_service: true,
            },
            load: NodeLoad {
                cameras: vec![CameraLoad {
                    camera: CameraId::new("c1").expect("id"),
                    state: StreamState::Streaming,
                    fps: 10.0,
                    analysed_fps: 10.0,
                    dropped: 0,
                    reconnects: 0,
                    tracks: 0,
                }],
                detect_busy: busy,
                reid_busy: 0.1,
                reid_queue: 0,
                records_last_seq: 0,
                unsynced: 0,
            },
            links: vec![
                LinkRate {
                    to: id("b"),
                    mbit_s: 50.0,
                    rtt_ms: 1.0,
                },
                LinkRate {
                    to: id("b"),
                    mbit_s: 60.0,
                    rtt_ms: 1.0,
                },
                LinkRate {
                    to: id(node),
                    mbit_s: 60.0,
                    rtt_ms: 1.0,
                },
                LinkRate {
                    to: id("c"),
                    mbit_s: 0.0,
                    rtt_ms: 1.0,
                },
            ],
            metrics_addr: None,
        }
    }

    fn plan(streams: &[(&str, &str)], shares: &[u64]) -> Plan {
        Plan {
            version: 7,
            issued_ms: 0,
            reason: String::new(),
            streams: streams
                .iter()
                .map(|(c, n)| StreamAssignment {
                    camera: CameraId::new(c).expect("id"),
                    source: "rtsp://x".into(),
                    node: id(n),
                    reid_node: id(n),
                })
                .collect(),
            bandwidth: shares
                .iter()
                .map(|b| BandwidthShare {
                    from: id("a"),
                    to: id("b"),
                    bytes_per_s: *b,
                })
                .collect(),
        }
    }

    #[test]
    fn node_view_keeps_plannable_links() {
        let v = node_view(&status("a", 0.1));
        assert_eq!(v.links, vec![(id("b"), 50.0)]);
        assert_eq!(v.detect_fps, 30.0);
        assert!(v.reid_service);
    }

    #[test]
    fn placement_change_ignores_small_share_moves() {
        let a = plan(&[("c1", "a")], &[1000]);
        assert!(!placement_changed(&a, &plan(&[("c1", "a")], &[1100])));
        assert!(placement_changed(&a, &plan(&[("c1", "a")], &[2000])));
        assert!(placement_changed(&a, &plan(&[("c1", "b")], &[1000])));
        assert!(placement_changed(&a, &plan(&[("c1", "a")], &[])));
    }

    #[test]
    fn load_shift_on_busy_node_or_missing_stream() {
        let now = Instant::now();
        assert!(load_shift(None, &[status("a", 0.5)], now).is_none());
        assert!(load_shift(None, &[status("a", 0.95)], now).is_some());
        let p = plan(&[("c1", "a"), ("c2", "a")], &[]);
        let c = Current {
            plan: p,
            cost: 0.0,
            nodes: vec![id("a")],
            issued_at: now.checked_sub(STREAM_GRACE * 2),
            encoded: Vec::new(),
        };
        let why = load_shift(Some(&c), &[status("a", 0.5)], now);
        assert_eq!(why.as_deref(), Some("camera c2 not streaming on a"));
        let fresh = Current {
            issued_at: Some(now),
            ..c
        };
        assert!(load_shift(Some(&fresh), &[status("a", 0.5)], now).is_none());
    }
}
