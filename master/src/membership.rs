//! Who is in the cluster: a table of nodes fed by their liveliness tokens and
//! their `NodeStatus` reports, with join and leave detection.
//!
//! A node is *live* (plannable) while its liveliness token is present and its
//! last status arrived less than `node_timeout` ago; a node whose token is gone
//! is dead at once. The table is shared: zenoh callbacks update it (short lock,
//! no I/O under it), the planner sweeps it for status timeouts, the API reads
//! snapshots. Garbage on the status keys is counted by the shared
//! [`vidar_link::Garbage`] and ignored. This module must not plan or sync: it only tells
//! others, through a wake-up channel, that membership changed, and when the
//! next status timeout falls due ([`Membership::next_expiry`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use vidar_link::{Link, LinkError};
use vidar_protocol::messages::NodeStatus;
use vidar_protocol::{Keys, NodeId, NodeKey, UnixMs};

/// How long the start-up liveliness query waits for tokens already declared.
const LIVELINESS_GET_TIMEOUT: Duration = Duration::from_secs(1);
/// Most nodes the table tracks; tokens or statuses of further nodes are refused
/// (and counted), so a flood of fake node ids cannot grow it without bound.
pub const MAX_NODES: usize = 4096;

/// A change of membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// The node became live (token present and a fresh status).
    Join(NodeId),
    /// The node stopped being live, and why.
    Leave(NodeId, &'static str),
}

#[derive(Debug, Default)]
struct Entry {
    token: bool,
    status: Option<NodeStatus>,
    status_at: Option<Instant>,
    live: bool,
    /// Wall-clock ms of the last join or leave.
    changed_ms: UnixMs,
}

impl Entry {
    fn should_be_live(&self, now: Instant, timeout: Duration) -> Result<(), &'static str> {
        if !self.token {
            return Err("liveliness token gone");
        }
        match self.status_at {
            None => Err("no status yet"),
            Some(at) if now.saturating_duration_since(at) > timeout => Err("status timed out"),
            Some(_) => Ok(()),
        }
    }
}

/// One node as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    /// The node.
    pub node: NodeId,
    /// Whether it is live (plannable).
    pub live: bool,
    /// Whether its liveliness token is present.
    pub token: bool,
    /// Seconds since its last status arrived, if any did.
    pub status_age_s: Option<f64>,
    /// Wall-clock ms of its last join or leave.
    pub changed_ms: UnixMs,
    /// Its last status report.
    pub status: Option<NodeStatus>,
}

#[derive(Debug)]
struct Shared {
    table: Mutex<BTreeMap<NodeId, Entry>>,
    timeout: Duration,
    wake: SyncSender<()>,
    /// Statuses decoded fine but refused (published under another node's key, table full).
    refused: AtomicU64,
    /// The enrolled nodes, when the site has a bundle (replaced while the
    /// master runs: [`Membership::set_roster`]).
    roster: Option<Mutex<std::collections::HashSet<NodeId>>>,
    /// Tokens and statuses of nodes not enrolled.
    unknown: AtomicU64,
}

/// The membership table; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Membership {
    shared: Arc<Shared>,
}

impl Membership {
    /// An empty table; `wake` gets a (coalesced) message on every join or leave.
    pub fn new(timeout: Duration, wake: SyncSender<()>) -> Membership {
        Membership::build(timeout, wake, None)
    }

    /// A table that takes only the nodes in `enrolled` (the site bundle's
    /// roster); every other node id is ignored and counted.
    pub fn enrolled(timeout: Duration, wake: SyncSender<()>, enrolled: &[NodeId]) -> Membership {
        Membership::build(timeout, wake, Some(enrolled.iter().cloned().collect()))
    }

    fn build(
        timeout: Duration,
        wake: SyncSender<()>,
        roster: Option<std::collections::HashSet<NodeId>>,
    ) -> Membership {
        Membership {
            shared: Arc::new(Shared {
                table: Mutex::new(BTreeMap::new()),
                timeout,
                wake,
                refused: AtomicU64::new(0),
                roster: roster.map(Mutex::new),
                unknown: AtomicU64::new(0),
            }),
        }
    }

    /// The roster, locked (`None` without a bundle).
    fn roster_guard(&self) -> Option<MutexGuard<'_, std::collections::HashSet<NodeId>>> {
        let r = self.shared.roster.as_ref()?;
        // A panic while holding the lock leaves plain data behind; keep going.
        Some(r.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Whether `node` may join: enrolled, or no roster. Counts the others.
    fn admitted(&self, node: &NodeId) -> bool {
        let enrolled = self.roster_guard().is_none_or(|r| r.contains(node));
        if !enrolled {
            self.shared.unknown.fetch_add(1, Ordering::Relaxed);
            self.refuse("not enrolled", node);
        }
        enrolled
    }

    /// Takes `enrolled` as the site's roster from now on (a table made by
    /// [`Membership::new`], with no roster, is left as it is). Nodes off
    /// the new roster are forgotten at once: a live one leaves ("revoked"),
    /// which wakes the planner. Returns the nodes forgotten.
    pub fn set_roster(&self, enrolled: &[NodeId]) -> Vec<NodeId> {
        if self.shared.roster.is_none() {
            return Vec::new();
        }
        let enrolled: std::collections::HashSet<NodeId> = enrolled.iter().cloned().collect();
        let (gone, events) = {
            let mut table = self.table();
            if let Some(mut r) = self.roster_guard() {
                r.clone_from(&enrolled);
            }
            let gone: Vec<NodeId> = table
                .keys()
                .filter(|n| !enrolled.contains(*n))
                .cloned()
                .collect();
            let mut events = Vec::new();
            for n in &gone {
                if table.remove(n).is_some_and(|e| e.live) {
                    events.push(MemberEvent::Leave(n.clone(), "revoked"));
                }
            }
            (gone, events)
        };
        self.announce(events);
        gone
    }

    /// The enrolled nodes, in name order, when the site has a roster.
    pub fn roster(&self) -> Option<std::collections::BTreeSet<NodeId>> {
        Some(self.roster_guard()?.iter().cloned().collect())
    }

    /// How many nodes are enrolled, when the site has a roster.
    pub fn enrolled_count(&self) -> Option<usize> {
        Some(self.roster_guard()?.len())
    }

    /// Tokens and statuses of node ids that are not enrolled, ignored.
    pub fn unknown(&self) -> u64 {
        self.shared.unknown.load(Ordering::Relaxed)
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<NodeId, Entry>> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.shared
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn refuse(&self, what: &'static str, node: &NodeId) {
        let n = self.shared.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(node = %node, reason = what, refused_total = n, "refused a status");
        }
    }

    /// Records that `node`'s liveliness token appeared (`present`) or vanished.
    pub fn token(&self, node: NodeId, present: bool) {
        if !self.admitted(&node) {
            return;
        }
        let events = {
            let mut table = self.table();
            if !table.contains_key(&node) && (!present || table.len() >= MAX_NODES) {
                if present {
                    drop(table);
                    self.refuse("node table full", &node);
                }
                return;
            }
            let entry = table.entry(node).or_default();
            entry.token = present;
            if !present {
                // A node that comes back must report again before it is planned on.
                entry.status_at = None;
            }
            self.recompute(&mut table, Instant::now())
        };
        self.announce(events);
    }

    /// Records a status received on `key_node`'s status key.
    pub fn status(&self, key_node: &NodeId, status: NodeStatus) {
        if &status.node != key_node {
            self.refuse("status names another node than its key", key_node);
            return;
        }
        if !self.admitted(key_node) {
            return;
        }
        let events = {
            let mut table = self.table();
            if !table.contains_key(key_node) && table.len() >= MAX_NODES {
                drop(table);
                self.refuse("node table full", key_node);
                return;
            }
            let entry = table.entry(key_node.clone()).or_default();
            entry.status = Some(status);
            entry.status_at = Some(Instant::now());
            self.recompute(&mut table, Instant::now())
        };
        self.announce(events);
    }

    /// When the first live node's status times out if no newer one arrives
    /// (the next [`Membership::sweep`] that can change anything), or `None`
    /// while no node is live.
    pub fn next_expiry(&self) -> Option<Instant> {
        let timeout = self.shared.timeout;
        self.table()
            .values()
            .filter(|e| e.live)
            .filter_map(|e| e.status_at)
            .min()
            // `should_be_live` times out strictly after `timeout`.
            .map(|at| at + timeout + Duration::from_millis(1))
    }

    /// Re-evaluates status timeouts at `now`; returns (and logs) the changes.
    pub fn sweep(&self, now: Instant) -> Vec<MemberEvent> {
        let events = {
            let mut table = self.table();
            self.recompute(&mut table, now)
        };
        self.announce(events.clone());
        events
    }

    fn recompute(&self, table: &mut BTreeMap<NodeId, Entry>, now: Instant) -> Vec<MemberEvent> {
        let mut events = Vec::new();
        let mut forget = Vec::new();
        for (node, e) in table.iter_mut() {
            let verdict = e.should_be_live(now, self.shared.timeout);
            match (e.live, verdict) {
                (false, Ok(())) => {
                    e.live = true;
                    e.changed_ms = UnixMs::now();
                    events.push(MemberEvent::Join(node.clone()));
                }
                (true, Err(why)) => {
                    e.live = false;
                    e.changed_ms = UnixMs::now();
                    events.push(MemberEvent::Leave(node.clone(), why));
                }
                _ => {}
            }
            if !e.token && e.status_at.is_none() && !e.live {
                // Keep gone nodes for the API, but not ones never heard of
                // beyond a token (bounded by MAX_NODES anyway).
                if e.status.is_none() {
                    forget.push(node.clone());
                }
            }
        }
        for node in forget {
            table.remove(&node);
        }
        events
    }

    fn announce(&self, events: Vec<MemberEvent>) {
        if events.is_empty() {
            return;
        }
        for ev in &events {
            match ev {
                MemberEvent::Join(n) => tracing::info!(node = %n, "node joined"),
                MemberEvent::Leave(n, why) => tracing::warn!(node = %n, reason = why, "node left"),
            }
        }
        // Full: a wake-up is already pending, which is all we need.
        let _ = self.shared.wake.try_send(());
    }

    /// The last status of every live node, by node id.
    pub fn live(&self) -> Vec<NodeStatus> {
        self.table()
            .values()
            .filter(|e| e.live)
            .filter_map(|e| e.status.clone())
            .collect()
    }

    /// Nodes whose liveliness token is present (they may answer queries), by id.
    pub fn reachable(&self) -> Vec<NodeId> {
        self.table()
            .iter()
            .filter(|(_, e)| e.token)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every known node, for the API.
    pub fn snapshot(&self) -> Vec<NodeInfo> {
        let now = Instant::now();
        self.table()
            .iter()
            .map(|(n, e)| NodeInfo {
                node: n.clone(),
                live: e.live,
                token: e.token,
                status_age_s: e
                    .status_at
                    .map(|at| now.saturating_duration_since(at).as_secs_f64()),
                changed_ms: e.changed_ms,
                status: e.status.clone(),
            })
            .collect()
    }

    /// Statuses refused after decoding (wrong key, table full).
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

/// The subscriptions that keep a [`Membership`] up to date.
pub struct Feed {
    _alive: vidar_link::AliveWatch,
    _status: vidar_link::Subscription,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("membership::Feed")
    }
}

/// Subscribes `membership` to the site's liveliness tokens (with history, so
/// nodes already up are seen) and status reports, then queries the tokens
/// present once more.
pub fn attach(link: &Link, keys: &Keys, membership: &Membership) -> Result<Feed, LinkError> {
    let (m, k) = (membership.clone(), keys.clone());
    let alive = link.watch_alive(&keys.alive_all(), move |key, up| {
        if let Some(node) = k.node_from_key(key, NodeKey::Alive) {
            m.token(node, up);
        }
    })?;
    let (m, k) = (membership.clone(), keys.clone());
    let status = link.subscribe(&keys.status_all(), move |key, status: NodeStatus| {
        if let Some(node) = k.node_from_key(key, NodeKey::Status) {
            m.status(&node, status);
        }
    })?;
    for key in link.alive_now(&keys.alive_all(), LIVELINESS_GET_TIMEOUT) {
        if let Some(node) = keys.node_from_key(&key, NodeKey::Alive) {
            membership.token(node, true);
        }
    }
    Ok(Feed {
        _alive: alive,
        _status: status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use vidar_protocol::messages::{NodeCapacity, NodeLoad};

    fn id(s: &str) -> NodeId {
        NodeId::new(s).expect("valid id")
    }

    fn status(node: &str) -> NodeStatus {
        NodeStatus {
            node: id(node),
            sent_ms: UnixMs(1),
            started_ms: UnixMs(1),
            plan_version: 0,
            capacity: NodeCapacity {
                cores: 4,
                memory_mb: 4096,
                detect_fps: 30.0,
                reid_crops_per_s: 50.0,
                reid_service: true,
                jpeg_encode_cost: 0.6,
                jpeg_decode_cost: 0.3,
                detect_cores: 4.0,
            },
            load: NodeLoad {
                cameras: Vec::new(),
                detect_busy: 0.1,
                reid_busy: 0.1,
                cpu_cores: 0.0,
                job_cpu_cores: 0.0,
                reid_queue: 0,
                records_last_seq: 0,
                unsynced: 0,
            },
            links: Vec::new(),
            metrics_addr: None,
            job_flows: Vec::new(),
        }
    }

    #[test]
    fn join_needs_token_and_status_leave_on_either() {
        let (tx, rx) = mpsc::sync_channel(1);
        let m = Membership::new(Duration::from_millis(200), tx);
        m.token(id("a"), true);
        assert!(m.live().is_empty());
        assert_eq!(m.reachable(), vec![id("a")]);
        m.status(&id("a"), status("a"));
        assert_eq!(m.live().len(), 1);
        assert!(rx.try_recv().is_ok());
        // Token gone: dead at once.
        m.token(id("a"), false);
        assert!(m.live().is_empty());
        // Back, but must report again.
        m.token(id("a"), true);
        assert!(m.live().is_empty());
        m.status(&id("a"), status("a"));
        assert_eq!(m.live().len(), 1);
        // Status timeout.
        let later = Instant::now() + Duration::from_millis(300);
        assert_eq!(
            m.sweep(later),
            vec![MemberEvent::Leave(id("a"), "status timed out")]
        );
        assert!(m.live().is_empty());
        assert_eq!(m.snapshot().len(), 1);
    }

    #[test]
    fn status_under_another_key_is_refused() {
        let (tx, _rx) = mpsc::sync_channel(1);
        let m = Membership::new(Duration::from_secs(5), tx);
        m.token(id("a"), true);
        m.status(&id("a"), status("b"));
        assert!(m.live().is_empty());
        assert_eq!(m.refused(), 1);
    }

    #[test]
    fn only_enrolled_nodes_join_and_the_others_are_counted() {
        let (tx, _rx) = mpsc::sync_channel(1);
        let m = Membership::enrolled(Duration::from_secs(5), tx, &[id("a")]);
        for n in ["a", "ghost"] {
            m.token(id(n), true);
            m.status(&id(n), status(n));
        }
        assert_eq!(m.reachable(), vec![id("a")]);
        assert_eq!(m.live().len(), 1);
        assert_eq!(m.unknown(), 2, "the ghost's token and status");
        assert!(m.snapshot().iter().all(|n| n.node == id("a")));
    }

    #[test]
    fn a_new_roster_lets_enrolled_nodes_in_and_forgets_revoked_ones() {
        let (tx, rx) = mpsc::sync_channel(1);
        let m = Membership::enrolled(Duration::from_secs(5), tx, &[id("a"), id("b")]);
        for n in ["a", "b", "late"] {
            m.token(id(n), true);
            m.status(&id(n), status(n));
        }
        assert_eq!(m.reachable(), vec![id("a"), id("b")]);
        while rx.try_recv().is_ok() {}
        // late enrolled, b revoked.
        assert_eq!(m.set_roster(&[id("a"), id("late")]), vec![id("b")]);
        assert!(rx.try_recv().is_ok(), "b's leave wakes the planner");
        assert_eq!(m.reachable(), vec![id("a")], "b is forgotten at once");
        // b's later reports are ignored and counted; late's now count.
        let unknown = m.unknown();
        m.status(&id("b"), status("b"));
        assert_eq!(m.unknown(), unknown + 1);
        m.token(id("late"), true);
        m.status(&id("late"), status("late"));
        let live: Vec<NodeId> = m.live().into_iter().map(|s| s.node).collect();
        assert_eq!(live, vec![id("a"), id("late")]);
        // A table with no roster (no bundle) has none to replace.
        let (tx, _rx) = mpsc::sync_channel(1);
        let open = Membership::new(Duration::from_secs(5), tx);
        open.token(id("x"), true);
        assert!(open.set_roster(&[]).is_empty());
        assert_eq!(open.reachable(), vec![id("x")]);
    }
}
