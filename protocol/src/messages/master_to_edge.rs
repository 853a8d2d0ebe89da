//! What the master tells the edges: the plan (who ingests what, who serves
//! re-ID for whom, how bandwidth is shared), identity merges, and its requests
//! for records.

use crate::time::UnixMs;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use super::{
    check_len, check_text, MAX_BANDWIDTH_SHARES, MAX_BATCH_RECORDS, MAX_MERGES, MAX_PLAN_JOBS,
    MAX_PLAN_STREAMS, MAX_SOURCE_LEN, MAX_TEXT_LEN,
};
use crate::record::{RecordKey, TimeRange};
use crate::wire::{Message, MessageKind};
use crate::{CameraId, IdentityId, NodeId, TrackId};

/// The master's placement of the cluster's work. Each version replaces the
/// previous one entirely; a node runs the streams assigned to it and stops the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Increases with every plan the master issues.
    pub version: u64,
    /// When it was issued, ms since the epoch.
    pub issued_ms: UnixMs,
    /// Why it was issued (a node joined, left, overloaded...), for logs and the UI.
    pub reason: String,
    /// Who ingests each camera; each camera at most once.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_PLAN_STREAMS>")]
    pub streams: Vec<StreamAssignment>,
    /// Bandwidth allotted between node pairs; each `(from, to)` at most once.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_BANDWIDTH_SHARES>")]
    pub bandwidth: Vec<BandwidthShare>,
    /// Analytics jobs: where each stage runs and the shares of the inputs
    /// that cross nodes (OTFA, see `vidar-master`'s `jobs`).
    #[serde(
        default,
        deserialize_with = "crate::bounded::vec::<_, _, MAX_PLAN_JOBS>"
    )]
    pub jobs: Vec<super::JobAssignment>,
}

/// One camera's placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamAssignment {
    /// The camera.
    pub camera: CameraId,
    /// Its source URL (`rtsp://...`, `file://...`).
    pub source: String,
    /// The node that ingests, detects and tracks it.
    pub node: NodeId,
    /// The node that embeds its crops (may be `node` itself).
    pub reid_node: NodeId,
}

/// The rate `from` may send to `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandwidthShare {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// Allotted rate, bytes per second.
    pub bytes_per_s: u64,
}

impl Plan {
    /// The streams `node` must ingest.
    pub fn streams_for<'a>(
        &'a self,
        node: &'a NodeId,
    ) -> impl Iterator<Item = &'a StreamAssignment> + 'a {
        self.streams.iter().filter(move |s| &s.node == node)
    }

    /// The node that serves re-ID for `camera`, if the camera is in the plan.
    pub fn reid_node_for(&self, camera: &CameraId) -> Option<&NodeId> {
        self.streams
            .iter()
            .find(|s| &s.camera == camera)
            .map(|s| &s.reid_node)
    }

    /// The bytes per second `from` may send to `to`, if the plan sets it.
    pub fn share(&self, from: &NodeId, to: &NodeId) -> Option<u64> {
        self.bandwidth
            .iter()
            .find(|b| &b.from == from && &b.to == to)
            .map(|b| b.bytes_per_s)
    }
}

impl Message for Plan {
    const KIND: MessageKind = MessageKind::Plan;

    fn validate(&self) -> Result<(), String> {
        check_text("reason", &self.reason, MAX_TEXT_LEN)?;
        check_len("streams", self.streams.len(), MAX_PLAN_STREAMS)?;
        let mut cameras = HashSet::new();
        for (k, s) in self.streams.iter().enumerate() {
            if !cameras.insert(&s.camera) {
                return Err(format!(
                    "streams[{k}].camera: {} is assigned more than once",
                    s.camera
                ));
            }
            if s.source.is_empty() {
                return Err(format!("streams[{k}].source: empty"));
            }
            check_text(&format!("streams[{k}].source"), &s.source, MAX_SOURCE_LEN)?;
        }
        check_len("bandwidth", self.bandwidth.len(), MAX_BANDWIDTH_SHARES)?;
        let mut pairs = HashSet::new();
        for (k, b) in self.bandwidth.iter().enumerate() {
            if !pairs.insert((&b.from, &b.to)) {
                return Err(format!(
                    "bandwidth[{k}]: {} -> {} is set more than once",
                    b.from, b.to
                ));
            }
        }
        check_len("jobs", self.jobs.len(), MAX_PLAN_JOBS)?;
        let mut ids = HashSet::new();
        for (k, j) in self.jobs.iter().enumerate() {
            if !ids.insert(&j.spec.id) {
                return Err(format!(
                    "jobs[{k}]: job {} is placed more than once",
                    j.spec.id
                ));
            }
            j.check(&format!("jobs[{k}]"))?;
        }
        Ok(())
    }
}

/// The master's decision that two identities are one person; every node maps
/// `from` to `into` from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeAnnounce {
    /// The identity merged away.
    pub from: IdentityId,
    /// The identity it joins.
    pub into: IdentityId,
    /// When the merge was decided, ms since the epoch.
    pub decided_ms: UnixMs,
}

impl MergeAnnounce {
    fn check(&self, field: &str) -> Result<(), String> {
        if self.from == self.into {
            return Err(format!(
                "{field}into: {} is the identity merged away (from)",
                self.into
            ));
        }
        Ok(())
    }
}

impl Message for MergeAnnounce {
    const KIND: MessageKind = MessageKind::MergeAnnounce;

    fn validate(&self) -> Result<(), String> {
        self.check("")
    }
}

/// An operator's split: the sighting `sighting` (track `track` on `camera`,
/// `first_ms..=last_ms`), shown under `from`, is another person, `into`. The
/// node that recorded it learns from it (see the edge's re-ID worker); the
/// others learn `into` from that node's announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitAnnounce {
    /// The sighting's record key (its node is the node that recorded it).
    pub sighting: RecordKey,
    /// Its camera.
    pub camera: CameraId,
    /// Its track on that camera.
    pub track: TrackId,
    /// Its first time, ms since the epoch.
    pub first_ms: UnixMs,
    /// Its last time, ms since the epoch.
    pub last_ms: UnixMs,
    /// The identity it was shown under.
    pub from: IdentityId,
    /// The identity it belongs to now.
    pub into: IdentityId,
    /// When the operator decided, ms since the epoch.
    pub decided_ms: UnixMs,
}

impl Message for SplitAnnounce {
    const KIND: MessageKind = MessageKind::SplitAnnounce;

    fn validate(&self) -> Result<(), String> {
        if self.from == self.into {
            return Err(format!(
                "into: {} is the identity split from (from)",
                self.into
            ));
        }
        if self.last_ms < self.first_ms {
            return Err(format!(
                "last_ms: {} is before first_ms {}",
                self.last_ms, self.first_ms
            ));
        }
        Ok(())
    }
}

/// An operator undid their merge of `from` into `into`: the two are two
/// people again. Nodes whose galleries joined them take `from` apart again:
/// `into` loses the views that look like `from`'s, and `from` is known again
/// by `view`, its appearance as the global database last recorded it (none
/// when it holds no embedding for it: then only the merge is forgotten).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeepApart {
    /// The identity the undone merge had joined to `into`.
    pub from: IdentityId,
    /// The identity it had joined.
    pub into: IdentityId,
    /// `from`'s last recorded appearance (its `identity` is `from`).
    pub view: Option<super::IdentityAnnounce>,
    /// When the operator undid the merge, ms since the epoch.
    pub decided_ms: UnixMs,
}

impl Message for KeepApart {
    const KIND: MessageKind = MessageKind::KeepApart;

    fn validate(&self) -> Result<(), String> {
        if self.from == self.into {
            return Err(format!(
                "into: {} is the identity kept apart (from)",
                self.into
            ));
        }
        if let Some(v) = &self.view {
            if v.identity != self.from {
                return Err(format!(
                    "view.identity: {} is not the identity kept apart ({})",
                    v.identity, self.from
                ));
            }
            v.validate().map_err(|e| format!("view.{e}"))?;
        }
        Ok(())
    }
}

/// Several merges at once (a node catching up, or one decision joining many).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merges {
    /// The merges, in decision order, at most [`MAX_MERGES`](super::MAX_MERGES).
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_MERGES>")]
    pub merges: Vec<MergeAnnounce>,
}

impl Message for Merges {
    const KIND: MessageKind = MessageKind::Merges;

    fn validate(&self) -> Result<(), String> {
        check_len("merges", self.merges.len(), MAX_MERGES)?;
        for (k, m) in self.merges.iter().enumerate() {
            m.check(&format!("merges[{k}]."))?;
        }
        Ok(())
    }
}

/// The master pulling an edge's records (answered with a
/// [`SyncBatch`](super::SyncBatch)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Send records with seq above this (the master's cursor for the node).
    pub after_seq: u64,
    /// Send at most this many records, 1..=[`MAX_BATCH_RECORDS`](super::MAX_BATCH_RECORDS).
    pub max_records: u32,
    /// The master has committed every record of this node with seq <= this, so
    /// the edge may prune them.
    pub ack_through: u64,
}

impl Message for SyncRequest {
    const KIND: MessageKind = MessageKind::SyncRequest;

    fn validate(&self) -> Result<(), String> {
        let n = self.max_records as usize;
        if n == 0 || n > MAX_BATCH_RECORDS {
            return Err(format!("max_records: {n}, 1..={MAX_BATCH_RECORDS} allowed"));
        }
        Ok(())
    }
}

/// The master asking an edge for records it may not have synchronised yet
/// (answered with a [`QueryReply`](super::QueryReply)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryRequest {
    /// Sightings of an identity (and of identities merged into it the edge knows).
    Trajectory {
        /// The identity.
        identity: IdentityId,
        /// The time range.
        range: TimeRange,
    },
    /// Sightings on one camera.
    SightingsByCamera {
        /// The camera.
        camera: CameraId,
        /// The time range.
        range: TimeRange,
    },
    /// Identity records first seen in a range.
    IdentitiesInRange {
        /// The time range.
        range: TimeRange,
    },
}

impl QueryRequest {
    /// The time range asked about.
    pub fn range(&self) -> TimeRange {
        match self {
            QueryRequest::Trajectory { range, .. }
            | QueryRequest::SightingsByCamera { range, .. }
            | QueryRequest::IdentitiesInRange { range } => *range,
        }
    }
}

impl Message for QueryRequest {
    const KIND: MessageKind = MessageKind::QueryRequest;

    fn validate(&self) -> Result<(), String> {
        let r = self.range();
        if r.end_ms < r.start_ms {
            return Err(format!(
                "range: end_ms {} is before start_ms {}",
                r.end_ms, r.start_ms
            ));
        }
        Ok(())
    }
}
