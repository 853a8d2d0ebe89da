//! The node's zenoh session and the state its cluster threads share.

use super::links::LinkTable;
use crate::bandwidth::TokenBucket;
use crate::config::EdgeConfig;
use crate::identify::ClusterReid;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vidar_link::{Garbage, Mode};
use vidar_protocol::messages::{
    IdentityAnnounce, IdentityJoined, IdentitySeen, ReidReply, ReidRequest,
};
use vidar_protocol::{CameraId, NodeId, UnixMs};

/// What the newest plan says this node must do with its crops.
#[derive(Debug, Default)]
pub(super) struct Routes {
    /// camera -> node whose re-ID service embeds its crops (only when not this node).
    pub(super) remote: HashMap<CameraId, NodeId>,
    /// Nodes whose crops the plan sends to this node's re-ID service; no
    /// other node is served.
    pub(super) askers: std::collections::HashSet<NodeId>,
    /// Bandwidth buckets towards each node (plan shares from this node).
    pub(super) buckets: HashMap<NodeId, TokenBucket>,
    /// Every other node the plan names: the peers whose links are probed.
    pub(super) peers: std::collections::BTreeSet<NodeId>,
    /// Every camera of the plan: the node that ingests it and the node
    /// whose re-ID decides its tracks (the only nodes believed about where
    /// its tracks' identities are seen).
    pub(super) deciders: HashMap<CameraId, (NodeId, NodeId)>,
    /// The cameras the newest plan moved, with the nodes that ingested
    /// and decided them before, and when this node took that plan: word
    /// they sent before the hand-over may still be on its way
    /// ([`HANDOVER_GRACE_MS`]).
    pub(super) handed_over: HashMap<CameraId, (NodeId, NodeId)>,
    /// When [`Routes::handed_over`] was taken.
    pub(super) handed_over_at: UnixMs,
}

impl Routes {
    /// Takes the newest plan's deciders: the cameras whose ingesting or
    /// deciding node changed keep their old ones, heard until
    /// [`HANDOVER_GRACE_MS`] after `now`.
    pub(super) fn set_deciders(
        &mut self,
        deciders: HashMap<CameraId, (NodeId, NodeId)>,
        now: UnixMs,
    ) {
        let old = std::mem::replace(&mut self.deciders, deciders);
        self.handed_over = old
            .into_iter()
            .filter(|(camera, was)| self.deciders.get(camera) != Some(was))
            .collect();
        self.handed_over_at = now;
    }

    /// Whether `node` ingests or decides `camera` under the newest plan,
    /// or did under the one before and handed it over at most
    /// [`HANDOVER_GRACE_MS`] before `now`.
    fn speaks_for(&self, node: &NodeId, camera: &CameraId, now: UnixMs) -> bool {
        let names = |d: Option<&(NodeId, NodeId)>| {
            d.is_some_and(|(ingest, reid)| ingest == node || reid == node)
        };
        names(self.deciders.get(camera))
            || (now.0.saturating_sub(self.handed_over_at.0) <= HANDOVER_GRACE_MS
                && names(self.handed_over.get(camera)))
    }
}

/// How long after this node takes a plan that moved a camera the nodes
/// that had it before are still heard about it, ms: what they sent just
/// before the hand-over reaches this node after the plan did (seen in the
/// testbed within 120 ms of it), and is neither forged nor stale.
pub(super) const HANDOVER_GRACE_MS: i64 = 5_000;

/// State shared by the zenoh callbacks and the node's threads.
pub(super) struct Shared {
    pub(super) node: NodeId,
    /// The typed transport (session, keys, refusals).
    pub(super) link: vidar_link::Link,
    pub(super) routes: Mutex<Routes>,
    pub(super) plan_version: AtomicU64,
    pub(super) reid_timeout: Duration,
    /// The master has committed this node's records up to this seq.
    pub(super) acked: AtomicU64,
    /// Re-ID requests refused: an asker the plan does not pair with us, or
    /// one that names itself differently from its key.
    pub(super) refused_askers: Arc<AtomicU64>,
    /// What the link probes found, per peer.
    pub(super) links: Arc<LinkTable>,
}

impl Shared {
    /// Whether the re-ID request received on `key` may be served: sent to
    /// this node, by the node its key names (under a bundle the master's
    /// access list lets a node ask only under its own name), and one whose
    /// crops the newest plan sends here.
    pub(super) fn asker_allowed(&self, key: &str, req: &ReidRequest) -> Result<(), String> {
        let Some((server, asker)) = self.link.keys().reid_from_key(key) else {
            return Err(format!("{key}: not a re-ID key of this site"));
        };
        if server != self.node {
            return Err(format!("{key}: addressed to {server}, not {}", self.node));
        }
        if req.from != asker {
            return Err(format!(
                "the request says it is from {} but was sent as {asker}",
                req.from
            ));
        }
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if !routes.askers.contains(&asker) {
            return Err(format!(
                "the plan does not send {asker}'s crops to {}",
                self.node
            ));
        }
        Ok(())
    }
}

/// How far ahead of this node's clock another node's word of where an
/// identity is seen may be dated, ms: clocks differ a little, but a word
/// from further ahead would hold an identity until then.
pub(super) const SEEN_MAX_AHEAD_MS: i64 = 60_000;

impl Shared {
    /// Why another node's word of where an identity is seen, put under `key`
    /// and heard at `now`, is not believed, if it is not: it must come under
    /// its own node's key, the newest plan must have that node ingest the
    /// camera or decide its tracks (or the plan before, when the newest
    /// moved the camera less than [`HANDOVER_GRACE_MS`] ago), and it must
    /// not be dated more than [`SEEN_MAX_AHEAD_MS`] ahead of `now`.
    pub(super) fn believe_seen(
        &self,
        key: &str,
        s: &IdentitySeen,
        now: UnixMs,
    ) -> Result<(), String> {
        if !self.link.keys().identities_of(key, &s.node) {
            return Err(format!("IdentitySeen from {} put under {key}", s.node));
        }
        let decides = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .speaks_for(&s.node, &s.camera, now);
        if !decides {
            return Err(format!(
                "IdentitySeen: the plan has {} neither ingest nor decide {}",
                s.node, s.camera
            ));
        }
        let ahead = now + SEEN_MAX_AHEAD_MS;
        if s.first_ms > ahead || s.last_ms.is_some_and(|l| l > ahead) {
            return Err(format!(
                "IdentitySeen from {}: dated {} ms, more than {SEEN_MAX_AHEAD_MS} ms ahead of this clock ({})",
                s.node,
                s.last_ms.unwrap_or(s.first_ms).max(s.first_ms).0,
                now.0
            ));
        }
        Ok(())
    }
}

/// The re-ID worker's view of the cluster.
struct ReidLink(Arc<Shared>);

impl ClusterReid for ReidLink {
    fn node(&self) -> &NodeId {
        &self.0.node
    }

    fn remote_for(&self, camera: &CameraId) -> Option<NodeId> {
        let routes = self.0.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.remote.get(camera).cloned()
    }

    fn take_bandwidth(&self, to: &NodeId, bytes: usize) -> bool {
        let mut routes = self.0.routes.lock().unwrap_or_else(|p| p.into_inner());
        match routes.buckets.get_mut(to) {
            Some(b) => b.take_at(bytes, Instant::now()),
            // The plan gives this flow no share: not limited.
            None => true,
        }
    }

    fn send_remote(
        &self,
        to: &NodeId,
        req: &ReidRequest,
        done: crate::identify::RemoteDone,
    ) -> Result<(), String> {
        let key = self.0.link.keys().reid(to, &self.0.node);
        self.0
            .link
            .request_then::<ReidRequest, ReidReply>(&key, req, self.0.reid_timeout, move |r| {
                done(r.map_err(|e| e.to_string()))
            })
            .map_err(|e| e.to_string())
    }

    fn reply_within(&self) -> Duration {
        self.0.reid_timeout
    }

    fn announce(&self, identity: &IdentityAnnounce) {
        let key = self.0.link.keys().identities(&self.0.node);
        if let Err(e) = self.0.link.put(&key, identity) {
            tracing::debug!(error = %e, "identity announcement not sent");
        }
    }

    fn joined(&self, join: &IdentityJoined) {
        // Under the node's own key, like its announcements: the master
        // takes a join only from the node that minted the identity.
        let key = self.0.link.keys().identities(&self.0.node);
        if let Err(e) = self.0.link.put(&key, join) {
            tracing::warn!(from = %join.from, into = %join.into, error = %e, "a join of a minted identity not sent: the master will not merge them");
        }
    }

    fn seen(&self, seen: &IdentitySeen) {
        let key = self.0.link.keys().identities(&self.0.node);
        if let Err(e) = self.0.link.put(&key, seen) {
            tracing::debug!(error = %e, "where an identity is seen not sent");
        }
    }
}

/// The node's zenoh session, opened before the re-ID worker starts (which
/// needs [`Link::reid`]).
pub struct Link {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("node", &self.shared.node)
            .finish()
    }
}

impl Link {
    /// The locators the session listens on (ports picked for `:0` included).
    pub fn locators(&self) -> Vec<String> {
        self.shared.link.locators()
    }

    /// Opens the session described by the config's `[cluster]` table. A
    /// node with a bundle is a zenoh client, which opens only once the
    /// master's router answers: this waits for it (saying so after a few
    /// seconds) until `stop` is triggered.
    pub fn open(
        config: &EdgeConfig,
        settings: &vidar_link::LinkSettings,
        stop: &vidar_runtime::Shutdown,
    ) -> Result<Link> {
        let (tx, rx) = std::sync::mpsc::channel();
        let s = settings.clone();
        std::thread::Builder::new()
            .name("cluster-open".into())
            .spawn(move || {
                let _ = tx.send(s.open(Mode::Peer));
            })
            .context("starting the thread that joins the cluster")?;
        let t0 = Instant::now();
        let mut told = false;
        let link = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(opened) => break opened.context("joining the cluster (config [cluster])")?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if stop.is_triggered() {
                        anyhow::bail!(
                            "stopped while waiting for the master's router at {:?}",
                            settings.connect
                        );
                    }
                    if !told && t0.elapsed() > Duration::from_secs(3) {
                        told = true;
                        tracing::warn!(connect = ?settings.connect, "waiting for the master's router (a node with a bundle joins through it)");
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the thread joining the cluster ended without a result")
                }
            }
        };
        Ok(Link {
            shared: Arc::new(Shared {
                node: config.node_id.clone(),
                link,
                routes: Mutex::new(Routes::default()),
                plan_version: AtomicU64::new(0),
                acked: AtomicU64::new(0),
                refused_askers: Arc::new(AtomicU64::new(0)),
                links: Arc::default(),
                reid_timeout: Duration::from_millis(config.sharing.reid_timeout_ms),
            }),
        })
    }

    /// Counts the messages refused on Vidar's keys.
    pub fn garbage(&self) -> Arc<Garbage> {
        Arc::clone(self.shared.link.garbage())
    }

    /// When this node's certificate expires (under a bundle).
    pub fn certificate_expires(&self) -> Option<vidar_protocol::UnixMs> {
        self.shared.link.certificate_expires()
    }

    /// Re-ID requests refused (an asker the plan does not pair with this
    /// node, or one naming itself differently from its key).
    pub fn refused_askers(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.refused_askers)
    }

    /// What the link probes found, per peer (reported in the status and as
    /// metrics).
    pub fn links(&self) -> Arc<LinkTable> {
        Arc::clone(&self.shared.links)
    }

    /// The re-ID worker's cluster handle.
    pub fn reid(&self) -> Box<dyn ClusterReid> {
        Box::new(ReidLink(Arc::clone(&self.shared)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidar_protocol::UnixMs;
    use vidar_protocol::{CameraId, TrackId};

    fn id(s: &str) -> NodeId {
        NodeId::new(s).expect("id")
    }

    fn shared() -> Shared {
        let link = vidar_link::LinkSettings {
            site: format!("shared{}", std::process::id()),
            listen: vec!["tcp/127.0.0.1:0".into()],
            ..Default::default()
        }
        .open(Mode::Peer)
        .expect("link");
        Shared {
            node: id("server"),
            link,
            routes: Mutex::new(Routes::default()),
            plan_version: AtomicU64::new(0),
            reid_timeout: Duration::from_secs(1),
            acked: AtomicU64::new(0),
            refused_askers: Arc::new(AtomicU64::new(0)),
            links: Arc::default(),
        }
    }

    fn request(from: &str) -> ReidRequest {
        ReidRequest {
            from: id(from),
            request_id: 1,
            crops: vec![vidar_protocol::messages::Crop {
                camera: CameraId::new("c").expect("id"),
                track: TrackId(1),
                capture_ms: UnixMs(0),
                width: 1,
                height: 1,
                encoding: vidar_protocol::messages::CropEncoding::Rgb8,
                data: vec![0, 0, 0],
            }],
        }
    }

    #[test]
    fn only_askers_the_plan_pairs_with_us_are_served_under_their_own_name() {
        let sh = shared();
        let keys = sh.link.keys().clone();
        let key = keys.reid(&id("server"), &id("a"));
        // No plan yet: nobody is paired with us.
        let e = sh.asker_allowed(&key, &request("a")).expect_err("unpaired");
        assert!(e.contains("plan"), "{e}");
        sh.routes.lock().expect("lock").askers.insert(id("a"));
        assert_eq!(sh.asker_allowed(&key, &request("a")), Ok(()));
        // Says it is b but asks under a's name; asks under b's name; sent to
        // another server; not a re-ID key.
        assert!(sh.asker_allowed(&key, &request("b")).is_err());
        let as_b = keys.reid(&id("server"), &id("b"));
        assert!(sh.asker_allowed(&as_b, &request("b")).is_err());
        let elsewhere = keys.reid(&id("other"), &id("a"));
        assert!(sh.asker_allowed(&elsewhere, &request("a")).is_err());
        assert!(sh.asker_allowed(&keys.plan(), &request("a")).is_err());
        sh.link.close();
    }
    #[test]
    fn where_an_identity_is_seen_is_believed_only_from_its_node_for_its_cameras_and_not_from_the_future(
    ) {
        let sh = shared();
        let cam = CameraId::new("c").expect("id");
        let now = UnixMs(1_000_000);
        let word =
            |node: &str, camera: &CameraId, first_ms: i64, last_ms: Option<i64>| IdentitySeen {
                identity: vidar_protocol::IdentityId(7),
                node: id(node),
                camera: camera.clone(),
                track: TrackId(1),
                first_ms: UnixMs(first_ms),
                last_ms: last_ms.map(UnixMs),
            };
        let keys = sh.link.keys().clone();
        let believe = |w: &IdentitySeen| sh.believe_seen(&keys.identities(&w.node), w, now);
        // No plan yet: no node speaks for any camera.
        assert!(believe(&word("a", &cam, 0, None)).is_err());
        sh.routes
            .lock()
            .expect("lock")
            .deciders
            .insert(cam.clone(), (id("a"), id("b")));
        assert_eq!(believe(&word("a", &cam, 0, None)), Ok(()), "ingests it");
        assert_eq!(
            believe(&word("b", &cam, 0, Some(5))),
            Ok(()),
            "decides its tracks"
        );
        let e = believe(&word("rogue", &cam, 0, None)).expect_err("neither");
        assert!(e.contains("rogue") && e.contains("neither"), "{e}");
        let d = CameraId::new("d").expect("id");
        assert!(believe(&word("a", &d, 0, None)).is_err());
        // Only under its own node's key.
        let e = sh
            .believe_seen(&keys.identities(&id("b")), &word("a", &cam, 0, None), now)
            .expect_err("under b's key");
        assert!(e.contains("put under"), "{e}");
        // Clocks may differ a little, not by more.
        let edge = now.0 + SEEN_MAX_AHEAD_MS;
        assert_eq!(believe(&word("a", &cam, edge, None)), Ok(()));
        let e = believe(&word("a", &cam, edge + 1, None)).expect_err("from the future");
        assert!(e.contains("ahead"), "{e}");
        assert!(believe(&word("a", &cam, 0, Some(edge + 1))).is_err());
        sh.link.close();
    }

    #[test]
    fn the_nodes_a_plan_moved_a_camera_from_are_heard_about_it_for_the_grace_only() {
        let sh = shared();
        let (cam, kept) = (
            CameraId::new("c").expect("id"),
            CameraId::new("k").expect("id"),
        );
        let word = |node: &str, camera: &CameraId| IdentitySeen {
            identity: vidar_protocol::IdentityId(7),
            node: id(node),
            camera: camera.clone(),
            track: TrackId(1),
            first_ms: UnixMs(0),
            last_ms: None,
        };
        let keys = sh.link.keys().clone();
        let believe =
            |w: &IdentitySeen, now: i64| sh.believe_seen(&keys.identities(&w.node), w, UnixMs(now));
        let plan = |c: (&str, &str), at: i64| {
            let d = [
                (cam.clone(), (id(c.0), id(c.1))),
                (kept.clone(), (id("x"), id("y"))),
            ];
            sh.routes
                .lock()
                .expect("lock")
                .set_deciders(d.into_iter().collect(), UnixMs(at));
        };
        plan(("a", "b"), 1_000);
        plan(("n", "b"), 2_000);
        // The new ingester and the unchanged decider, any time.
        assert_eq!(believe(&word("n", &cam), 60_000), Ok(()));
        assert_eq!(believe(&word("b", &cam), 60_000), Ok(()));
        // The old ingester: up to the grace after the hand-over, not after.
        assert_eq!(believe(&word("a", &cam), 2_000), Ok(()));
        assert_eq!(believe(&word("a", &cam), 2_000 + HANDOVER_GRACE_MS), Ok(()));
        let e = believe(&word("a", &cam), 2_001 + HANDOVER_GRACE_MS).expect_err("past the grace");
        assert!(e.contains("neither"), "{e}");
        // Only about the camera it had: not about one it never had.
        assert!(believe(&word("a", &kept), 2_000).is_err());
        assert_eq!(believe(&word("x", &kept), 2_000), Ok(()));
        // A plan that moves nothing ends the old ingester's grace at once.
        plan(("n", "b"), 3_000);
        assert!(believe(&word("a", &cam), 3_000).is_err());
        sh.link.close();
    }
}
