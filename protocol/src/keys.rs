//! Every zenoh key expression Vidar uses, built in one place.
//!
//! All keys of one deployment ("site") live under `vidar/<site>`, so several
//! sites can share a zenoh network without seeing each other. Ids are
//! `[A-Za-z0-9_.-]{1,64}` (see [`crate::ids`]), so they are always one plain key
//! chunk: never empty, never a wildcard, never a `/`.
//!
//! | key                               | method                  | what                             | payload                             |
//! |-----------------------------------|-------------------------|----------------------------------|-------------------------------------|
//! | `vidar/<site>/alive/<node>`       | [`Keys::node_alive`]    | liveliness token, one per node   | none                                |
//! | `vidar/<site>/alive/*`            | [`Keys::alive_all`]     | liveliness subscription (master) |                                     |
//! | `vidar/<site>/status/<node>`      | [`Keys::status`]        | put by each node, about 1 Hz     | [`NodeStatus`](crate::messages::NodeStatus) |
//! | `vidar/<site>/status/*`           | [`Keys::status_all`]    | subscription (master)            |                                     |
//! | `vidar/<site>/plan`               | [`Keys::plan`]          | put by the master on change      | [`Plan`](crate::messages::Plan)     |
//! | `vidar/<site>/reid/<node>/<asker>` | [`Keys::reid`]         | a re-ID node's queryable is `reid/<node>/*`; the asker names itself in the last chunk (the master's ACL checks it) | [`ReidRequest`](crate::messages::ReidRequest) -> [`ReidReply`](crate::messages::ReidReply) |
//! | `vidar/<site>/probe/<node>/<asker>` | [`Keys::probe`]       | each node's link-probe queryable is `probe/<node>/*`; the prober names itself in the last chunk (the master's ACL checks it) | [`LinkProbe`](crate::messages::LinkProbe) -> [`LinkProbeReply`](crate::messages::LinkProbeReply) |
//! | `vidar/<site>/sync/<node>`        | [`Keys::sync`]          | queryable of each edge           | [`SyncRequest`](crate::messages::SyncRequest) -> [`SyncBatch`](crate::messages::SyncBatch) |
//! | `vidar/<site>/query/<node>`       | [`Keys::query`]         | queryable of each edge           | [`QueryRequest`](crate::messages::QueryRequest) -> [`QueryReply`](crate::messages::QueryReply) |
//! | `vidar/<site>/identities/<node>`  | [`Keys::identities`]    | put by the minting node          | [`IdentityAnnounce`](crate::messages::IdentityAnnounce) |
//! | `vidar/<site>/identities/*`       | [`Keys::identities_all`] | subscription (nodes, master)    |                                     |
//! | `vidar/<site>/merges`             | [`Keys::merges`]        | put by the master                | [`MergeAnnounce`](crate::messages::MergeAnnounce) or [`Merges`](crate::messages::Merges) |
//! | `vidar/<site>/tile/<node>/<cam>`  | [`Keys::tile`]          | put by the ingesting node, low rate | [`CameraTile`](crate::messages::CameraTile) |
//! | `vidar/<site>/tile/*/*`           | [`Keys::tiles_all`]     | subscription (master UI)         |                                     |
//! | `vidar/<site>/job/<node>/<sender>` | [`Keys::job`]          | put by the node of a job stage's input; the receiver subscribes `job/<node>/*` | [`JobItem`](crate::messages::JobItem) |
//! | `vidar/<site>/jobout/<node>/<job>` | [`Keys::job_output`]   | put by a job's topic sink        | [`JobItem`](crate::messages::JobItem) |
//! | `vidar/<site>/train/<node>`       | [`Keys::train`]         | queryable of each node taking part in split training | [`TrainRequest`](crate::messages::TrainRequest) -> [`TrainReply`](crate::messages::TrainReply) |
//!
//! Payloads are [`crate::wire`] encodings; those on [`Keys::signed`] keys are
//! wrapped in the master's signature (see `vidar-link`). Where one key carries several message
//! types (`merges`), [`crate::wire::peek`] tells which.
//!
//! Versioning: the protocol version is in every payload's header, not in the key,
//! so nodes of different versions still see each other's messages and refuse
//! them with a clear error ([`DecodeError::UnsupportedVersion`](crate::wire::DecodeError::UnsupportedVersion))
//! instead of silently missing each other.
//!
//! This module only builds and parses strings; it must not depend on zenoh.

use crate::ids::{CameraId, IdError, NodeId};

/// The per-node key families: `vidar/<site>/<family>/<node>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKey {
    /// Liveliness tokens ([`Keys::node_alive`]).
    Alive,
    /// Status publications ([`Keys::status`]).
    Status,
    /// Sync queryables ([`Keys::sync`]).
    Sync,
    /// Record query queryables ([`Keys::query`]).
    Query,
    /// Split training queryables ([`Keys::train`]).
    Train,
}

impl NodeKey {
    /// The key chunk naming the family.
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeKey::Alive => "alive",
            NodeKey::Status => "status",
            NodeKey::Sync => "sync",
            NodeKey::Query => "query",
            NodeKey::Train => "train",
        }
    }
}

/// Builds the key expressions of one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `vidar/<site>`.
    prefix: String,
}

impl Default for Keys {
    /// The keys of site `default`.
    fn default() -> Self {
        Keys {
            prefix: "vidar/default".to_string(),
        }
    }
}

impl Keys {
    /// The keys of `site`, which must be a valid id (like a [`NodeId`]).
    pub fn new(site: &str) -> Result<Keys, IdError> {
        let site = NodeId::new(site)?;
        Ok(Keys {
            prefix: format!("vidar/{site}"),
        })
    }

    /// `vidar/<site>`, the root of every key of this site.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `vidar/<site>/<family>/<node>`.
    pub fn node_key(&self, family: NodeKey, node: &NodeId) -> String {
        format!("{}/{}/{node}", self.prefix, family.as_str())
    }

    fn all(&self, family: NodeKey) -> String {
        format!("{}/{}/*", self.prefix, family.as_str())
    }

    /// `vidar/<site>/alive/<node>`: the node's liveliness token.
    pub fn node_alive(&self, node: &NodeId) -> String {
        self.node_key(NodeKey::Alive, node)
    }

    /// `vidar/<site>/alive/*`: every node's liveliness token.
    pub fn alive_all(&self) -> String {
        self.all(NodeKey::Alive)
    }

    /// `vidar/<site>/job/<to>/<from>`: job items `from` sends to `to`.
    pub fn job(&self, to: &NodeId, from: &NodeId) -> String {
        format!("{}/job/{to}/{from}", self.prefix)
    }

    /// `vidar/<site>/job/<to>/*`: every job item sent to `to`.
    pub fn job_to(&self, to: &NodeId) -> String {
        format!("{}/job/{to}/*", self.prefix)
    }

    /// `vidar/<site>/job/*/<from>`: every job item `from` may send.
    pub fn job_from(&self, from: &NodeId) -> String {
        format!("{}/job/*/{from}", self.prefix)
    }

    /// The sender named by a [`Keys::job`] key sent to `to`.
    pub fn job_sender(&self, key: &str, to: &NodeId) -> Option<NodeId> {
        let rest = key.strip_prefix(&format!("{}/job/{to}/", self.prefix))?;
        NodeId::new(rest).ok()
    }

    /// `vidar/<site>/jobout/<node>/<job>`: a job's topic sink on `node`.
    pub fn job_output(&self, node: &NodeId, job: &crate::JobId) -> String {
        format!("{}/jobout/{node}/{job}", self.prefix)
    }

    /// `vidar/<site>/jobout/**`: every job output.
    pub fn job_outputs_all(&self) -> String {
        format!("{}/jobout/*/*", self.prefix)
    }

    /// `vidar/<site>/status/<node>`: where the node puts its `NodeStatus`.
    pub fn status(&self, node: &NodeId) -> String {
        self.node_key(NodeKey::Status, node)
    }

    /// `vidar/<site>/status/*`: every node's status.
    pub fn status_all(&self) -> String {
        self.all(NodeKey::Status)
    }

    /// `vidar/<site>/plan`: where the master puts each `Plan`.
    pub fn plan(&self) -> String {
        format!("{}/plan", self.prefix)
    }

    /// `vidar/<site>/reid/<server>/<asker>`: where `asker` sends crops for
    /// `server` to re-identify.
    pub fn reid(&self, server: &NodeId, asker: &NodeId) -> String {
        format!("{}/reid/{server}/{asker}", self.prefix)
    }

    /// `vidar/<site>/reid/<server>/*`: the re-ID queryable of `server`.
    pub fn reid_served_by(&self, server: &NodeId) -> String {
        format!("{}/reid/{server}/*", self.prefix)
    }

    /// `vidar/<site>/reid/*/<asker>`: every re-ID request `asker` may send.
    pub fn reid_asked_by(&self, asker: &NodeId) -> String {
        format!("{}/reid/*/{asker}", self.prefix)
    }

    /// The server and asker named by a [`reid`](Self::reid) key of this site.
    pub fn reid_from_key(&self, key: &str) -> Option<(NodeId, NodeId)> {
        self.pair_from_key(key, "reid")
    }

    /// The two nodes named by `vidar/<site>/<family>/<a>/<b>`.
    fn pair_from_key(&self, key: &str, family: &str) -> Option<(NodeId, NodeId)> {
        let rest = key
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?
            .strip_prefix(family)?
            .strip_prefix('/')?;
        let (a, b) = rest.split_once('/')?;
        Some((NodeId::new(a).ok()?, NodeId::new(b).ok()?))
    }

    /// `vidar/<site>/probe/<target>/<asker>`: where `asker` times its link
    /// to `target`.
    pub fn probe(&self, target: &NodeId, asker: &NodeId) -> String {
        format!("{}/probe/{target}/{asker}", self.prefix)
    }

    /// `vidar/<site>/probe/<target>/*`: the link-probe queryable of `target`.
    pub fn probe_served_by(&self, target: &NodeId) -> String {
        format!("{}/probe/{target}/*", self.prefix)
    }

    /// `vidar/<site>/probe/*/<asker>`: every probe `asker` may send.
    pub fn probe_asked_by(&self, asker: &NodeId) -> String {
        format!("{}/probe/*/{asker}", self.prefix)
    }

    /// The target and asker named by a [`probe`](Self::probe) key of this site.
    pub fn probe_from_key(&self, key: &str) -> Option<(NodeId, NodeId)> {
        self.pair_from_key(key, "probe")
    }

    /// `vidar/<site>/sync/<node>`: the node's record sync queryable.
    pub fn sync(&self, node: &NodeId) -> String {
        self.node_key(NodeKey::Sync, node)
    }

    /// `vidar/<site>/query/<node>`: the node's record query queryable.
    pub fn query(&self, node: &NodeId) -> String {
        self.node_key(NodeKey::Query, node)
    }

    /// `vidar/<site>/train/<node>`: the node's split training queryable
    /// (EdgeSplit rounds; only the master asks).
    pub fn train(&self, node: &NodeId) -> String {
        self.node_key(NodeKey::Train, node)
    }

    /// `vidar/<site>/identities/<node>`: where `node` announces the
    /// identities it mints.
    pub fn identities(&self, node: &NodeId) -> String {
        format!("{}/identities/{node}", self.prefix)
    }

    /// `vidar/<site>/identities/*`: every node's announcements.
    pub fn identities_all(&self) -> String {
        format!("{}/identities/*", self.prefix)
    }

    /// Whether `key` is `node`'s [`identities`](Self::identities) key: the
    /// only key on which `node` may announce what it minted.
    pub fn identities_of(&self, key: &str, node: &NodeId) -> bool {
        key.strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix("/identities/"))
            == Some(node.as_str())
    }

    /// The keys whose payloads only the master sends, signed: the plan, the
    /// merges and the model refreshes.
    pub fn signed(&self) -> Vec<String> {
        vec![self.plan(), self.merges(), self.models()]
    }

    /// `vidar/<site>/models`: the model refresh in force, put by the master
    /// (signed) and served to a node that asks at start.
    pub fn models(&self) -> String {
        format!("{}/models", self.prefix)
    }

    /// `vidar/<site>/model-files`: where the master serves model files in chunks.
    pub fn model_files(&self) -> String {
        format!("{}/model-files", self.prefix)
    }

    /// `vidar/<site>/merges`: where the master announces identity merges.
    pub fn merges(&self) -> String {
        format!("{}/merges", self.prefix)
    }

    /// `vidar/<site>/tile/<node>/<camera>`: the camera's UI tiles.
    pub fn tile(&self, node: &NodeId, camera: &CameraId) -> String {
        format!("{}/tile/{node}/{camera}", self.prefix)
    }

    /// `vidar/<site>/tile/*/*`: every camera's UI tiles.
    pub fn tiles_all(&self) -> String {
        format!("{}/tile/*/*", self.prefix)
    }

    /// The node named by `key` if it is a key of `family` of this site
    /// (`vidar/<site>/<family>/<node>`), e.g. a liveliness token seen by the master.
    pub fn node_from_key(&self, key: &str, family: NodeKey) -> Option<NodeId> {
        let rest = key
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?
            .strip_prefix(family.as_str())?
            .strip_prefix('/')?;
        NodeId::new(rest).ok()
    }

    /// The node and camera named by a [`tile`](Self::tile) key of this site.
    pub fn tile_from_key(&self, key: &str) -> Option<(NodeId, CameraId)> {
        let rest = key
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("/tile/")?;
        let (node, camera) = rest.split_once('/')?;
        Some((NodeId::new(node).ok()?, CameraId::new(camera).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).expect("valid id")
    }

    #[test]
    fn exact_strings() {
        let k = Keys::new("plant-3").expect("valid site");
        let n = id("edge-1");
        let c = CameraId::new("lobby.east").expect("valid id");
        assert_eq!(k.prefix(), "vidar/plant-3");
        assert_eq!(k.node_alive(&n), "vidar/plant-3/alive/edge-1");
        assert_eq!(k.alive_all(), "vidar/plant-3/alive/*");
        assert_eq!(k.status(&n), "vidar/plant-3/status/edge-1");
        assert_eq!(k.status_all(), "vidar/plant-3/status/*");
        assert_eq!(k.plan(), "vidar/plant-3/plan");
        let m = id("edge-2");
        assert_eq!(k.reid(&n, &m), "vidar/plant-3/reid/edge-1/edge-2");
        assert_eq!(k.reid_served_by(&n), "vidar/plant-3/reid/edge-1/*");
        assert_eq!(k.reid_asked_by(&m), "vidar/plant-3/reid/*/edge-2");
        assert_eq!(
            k.reid_from_key(&k.reid(&n, &m)),
            Some((n.clone(), m.clone()))
        );
        assert_eq!(k.reid_from_key(&k.reid_served_by(&n)), None);
        assert_eq!(k.probe(&n, &m), "vidar/plant-3/probe/edge-1/edge-2");
        assert_eq!(k.probe_served_by(&n), "vidar/plant-3/probe/edge-1/*");
        assert_eq!(k.probe_asked_by(&m), "vidar/plant-3/probe/*/edge-2");
        assert_eq!(
            k.probe_from_key(&k.probe(&n, &m)),
            Some((n.clone(), m.clone()))
        );
        // Another family's key, a wildcard, a longer family name: not a probe key.
        assert_eq!(k.probe_from_key(&k.reid(&n, &m)), None);
        assert_eq!(k.reid_from_key(&k.probe(&n, &m)), None);
        assert_eq!(k.probe_from_key(&k.probe_served_by(&n)), None);
        assert_eq!(k.probe_from_key("vidar/plant-3/probes/edge-1/edge-2"), None);
        assert!(k.identities_of(&k.identities(&m), &m));
        assert!(!k.identities_of(&k.identities(&n), &m));
        assert!(!k.identities_of(&k.identities_all(), &m));
        assert!(!k.identities_of(&Keys::new("other").expect("site").identities(&m), &m));
        assert_eq!(k.signed(), vec![k.plan(), k.merges(), k.models()]);
        assert_eq!(k.models(), "vidar/plant-3/models");
        assert_eq!(k.model_files(), "vidar/plant-3/model-files");
        assert_eq!(k.sync(&n), "vidar/plant-3/sync/edge-1");
        assert_eq!(k.query(&n), "vidar/plant-3/query/edge-1");
        assert_eq!(k.identities(&n), "vidar/plant-3/identities/edge-1");
        assert_eq!(k.identities_all(), "vidar/plant-3/identities/*");
        assert_eq!(k.merges(), "vidar/plant-3/merges");
        assert_eq!(k.tile(&n, &c), "vidar/plant-3/tile/edge-1/lobby.east");
        assert_eq!(k.tiles_all(), "vidar/plant-3/tile/*/*");
    }

    #[test]
    fn default_site() {
        assert_eq!(Keys::default(), Keys::new("default").expect("valid site"));
        assert_eq!(Keys::default().plan(), "vidar/default/plan");
    }

    #[test]
    fn node_from_key_round_trips() {
        let k = Keys::default();
        let n = id("edge_2.b");
        for family in [
            NodeKey::Alive,
            NodeKey::Status,
            NodeKey::Sync,
            NodeKey::Query,
            NodeKey::Train,
        ] {
            assert_eq!(
                k.node_from_key(&k.node_key(family, &n), family),
                Some(n.clone())
            );
        }
        assert_eq!(
            k.node_from_key(&k.node_alive(&n), NodeKey::Alive),
            Some(n.clone())
        );
        assert_eq!(
            k.node_from_key(&k.status(&n), NodeKey::Status),
            Some(n.clone())
        );
        // Other family, other site, extra chunks, wildcards: not a node key.
        assert_eq!(k.node_from_key(&k.status(&n), NodeKey::Alive), None);
        let other = Keys::new("other").expect("valid site");
        assert_eq!(k.node_from_key(&other.status(&n), NodeKey::Status), None);
        assert_eq!(
            k.node_from_key("vidar/default/status/a/b", NodeKey::Status),
            None
        );
        assert_eq!(k.node_from_key(&k.status_all(), NodeKey::Status), None);
        assert_eq!(
            k.node_from_key("vidar/default/status/", NodeKey::Status),
            None
        );
        assert_eq!(
            k.node_from_key("vidar/defaultx/status/a", NodeKey::Status),
            None
        );
        let c = CameraId::new("cam-9").expect("valid id");
        assert_eq!(k.tile_from_key(&k.tile(&n, &c)), Some((n, c)));
        assert_eq!(k.tile_from_key(&k.tiles_all()), None);
    }

    #[test]
    fn invalid_site_refused() {
        assert_eq!(Keys::new(""), Err(IdError::Empty));
        assert_eq!(Keys::new("a/b"), Err(IdError::BadChar('/')));
        assert_eq!(Keys::new("**"), Err(IdError::BadChar('*')));
        assert_eq!(Keys::new(&"s".repeat(65)), Err(IdError::TooLong(65)));
    }
}
