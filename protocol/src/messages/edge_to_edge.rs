//! What edges exchange among themselves: re-identification served by one node
//! for another's cameras, and newly minted identities (the master listens too).

use crate::time::UnixMs;
use serde::{Deserialize, Serialize};

use super::{
    check_embedding, check_jpeg, check_len, check_text, MAX_CROPS_PER_REQUEST, MAX_CROP_SIDE,
    MAX_PROBE_BYTES, MAX_TEXT_LEN,
};
use crate::wire::{Message, MessageKind};
use crate::{CameraId, IdentityId, NodeId, TrackId};

/// Person crops to re-identify, sent to the camera's re-ID node
/// ([`Plan::reid_node_for`](super::Plan::reid_node_for)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReidRequest {
    /// The asking node.
    pub from: NodeId,
    /// Chosen by the asking node, echoed in the reply.
    pub request_id: u64,
    /// The crops, 1..=[`MAX_CROPS_PER_REQUEST`](super::MAX_CROPS_PER_REQUEST).
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_CROPS_PER_REQUEST>")]
    pub crops: Vec<Crop>,
}

/// One person crop of one track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crop {
    /// The camera it was cut from.
    pub camera: CameraId,
    /// The track it shows.
    pub track: TrackId,
    /// Capture time of the frame, ms since the epoch.
    pub capture_ms: UnixMs,
    /// Width, pixels, 1..=[`MAX_CROP_SIDE`](super::MAX_CROP_SIDE).
    pub width: u32,
    /// Height, pixels, 1..=[`MAX_CROP_SIDE`](super::MAX_CROP_SIDE).
    pub height: u32,
    /// How `data` is encoded.
    pub encoding: CropEncoding,
    /// The pixels: `width * height * 3` bytes for [`CropEncoding::Rgb8`], a JPEG
    /// file for [`CropEncoding::Jpeg`].
    #[serde(with = "crate::bytes")]
    pub data: Vec<u8>,
}

/// How a [`Crop`]'s pixels are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CropEncoding {
    /// Packed 8-bit RGB, rows top to bottom, no padding.
    Rgb8,
    /// A JPEG file (smaller on slow links).
    Jpeg,
}

impl Crop {
    fn check(&self, field: &str) -> Result<(), String> {
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v > MAX_CROP_SIDE {
                return Err(format!(
                    "{field}.{name}: {v} pixels, 1..={MAX_CROP_SIDE} allowed"
                ));
            }
        }
        match self.encoding {
            CropEncoding::Rgb8 => {
                let want = u64::from(self.width) * u64::from(self.height) * 3;
                if self.data.len() as u64 != want {
                    return Err(format!(
                        "{field}.data: {} bytes, an RGB {}x{} crop has {want}",
                        self.data.len(),
                        self.width,
                        self.height
                    ));
                }
            }
            CropEncoding::Jpeg => check_jpeg(&format!("{field}.data"), &self.data)?,
        }
        Ok(())
    }
}

impl Message for ReidRequest {
    const KIND: MessageKind = MessageKind::ReidRequest;

    fn validate(&self) -> Result<(), String> {
        if self.crops.is_empty() {
            return Err("crops: empty".to_string());
        }
        check_len("crops", self.crops.len(), MAX_CROPS_PER_REQUEST)?;
        for (k, c) in self.crops.iter().enumerate() {
            c.check(&format!("crops[{k}]"))?;
        }
        Ok(())
    }
}

/// The re-ID node's answer to a [`ReidRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReidReply {
    /// The request's `request_id`.
    pub request_id: u64,
    /// The node that computed it.
    pub served_by: NodeId,
    /// One answer per crop that was identified, at most
    /// [`MAX_CROPS_PER_REQUEST`](super::MAX_CROPS_PER_REQUEST).
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_CROPS_PER_REQUEST>")]
    pub results: Vec<ReidAnswer>,
    /// Why some or all crops got no answer (overloaded, model failed), if so.
    pub error: Option<String>,
}

/// The identity given to one crop's track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReidAnswer {
    /// The crop's camera.
    pub camera: CameraId,
    /// The crop's track.
    pub track: TrackId,
    /// The identity matched or minted.
    pub identity: IdentityId,
    /// Cosine similarity to the matched identity (1.0 for a minted one).
    pub similarity: f32,
    /// Whether `identity` is new (announced with an [`IdentityAnnounce`]).
    pub minted: bool,
}

impl Message for ReidReply {
    const KIND: MessageKind = MessageKind::ReidReply;

    fn validate(&self) -> Result<(), String> {
        check_len("results", self.results.len(), MAX_CROPS_PER_REQUEST)?;
        for (k, a) in self.results.iter().enumerate() {
            if !a.similarity.is_finite() {
                return Err(format!(
                    "results[{k}].similarity: {} is not finite",
                    a.similarity
                ));
            }
        }
        if let Some(e) = &self.error {
            check_text("error", e, MAX_TEXT_LEN)?;
        }
        Ok(())
    }
}

/// A newly minted (or refreshed) identity and its embedding, so every re-ID
/// node can match against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityAnnounce {
    /// The identity.
    pub identity: IdentityId,
    /// The node that minted it.
    pub node: NodeId,
    /// The camera it was seen on.
    pub camera: CameraId,
    /// When it was seen, ms since the epoch.
    pub seen_ms: UnixMs,
    /// Its embedding, 1..=[`MAX_EMBEDDING_DIM`](crate::record::MAX_EMBEDDING_DIM)
    /// finite values.
    pub embedding: Vec<f32>,
    /// Tag of the model that made the embedding (at most
    /// [`MAX_MODEL_TAG`](crate::record::MAX_MODEL_TAG) bytes).
    pub model: String,
}

impl Message for IdentityAnnounce {
    const KIND: MessageKind = MessageKind::IdentityAnnounce;

    fn validate(&self) -> Result<(), String> {
        if self.model.len() > crate::record::MAX_MODEL_TAG {
            return Err(format!(
                "model: tag of {} bytes, at most {} allowed",
                self.model.len(),
                crate::record::MAX_MODEL_TAG
            ));
        }
        check_embedding("embedding", &self.embedding)
    }
}

/// A node's word that an identity it minted is one it already knew: a track
/// whose decision minted `from` matched `into` on later, better views (the
/// node's own gallery joined them). `from` was announced at once (an
/// [`IdentityAnnounce`]), so other nodes may already name the person by it;
/// the master records the merge and sends it to every node. Put under the
/// node's own `identities(node)` key, like its announcements, and taken from
/// no one else: a node may join away only what it minted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityJoined {
    /// The identity the node minted, joining `into`.
    pub from: IdentityId,
    /// The identity it is.
    pub into: IdentityId,
    /// The node that minted `from` and joined it.
    pub node: NodeId,
    /// When the node decided, ms since the epoch.
    pub decided_ms: UnixMs,
}

impl Message for IdentityJoined {
    const KIND: MessageKind = MessageKind::IdentityJoined;

    fn validate(&self) -> Result<(), String> {
        if self.from == self.into {
            return Err(format!(
                "into: {} is the identity joining (from)",
                self.into
            ));
        }
        Ok(())
    }
}

/// Where an identity is being seen: a track that the sending node's re-ID
/// decided carries `identity`, on screen since `first_ms` and still open
/// (`last_ms` None) or ended at `last_ms`. Put under the deciding node's own
/// `identities(node)` key when the decision is made, again about every
/// 10 s while the track stays open, and once when it ends, so that every
/// node's gallery knows where each identity is now: an identity on screen at
/// one node's camera is not given to another person at another node's at the
/// same time, and transits between cameras of different nodes are measured
/// from where the person was last seen, not from when they were first
/// announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySeen {
    /// The identity the track carries.
    pub identity: IdentityId,
    /// The node whose re-ID decided it.
    pub node: NodeId,
    /// The track's camera.
    pub camera: CameraId,
    /// The track on that camera.
    pub track: TrackId,
    /// When the track began, ms since the epoch.
    pub first_ms: UnixMs,
    /// When it ended; None while it is on screen.
    pub last_ms: Option<UnixMs>,
}

impl Message for IdentitySeen {
    const KIND: MessageKind = MessageKind::IdentitySeen;

    fn validate(&self) -> Result<(), String> {
        match self.last_ms {
            Some(last) if last < self.first_ms => Err(format!(
                "last_ms: {} is before first_ms {}",
                last.0, self.first_ms.0
            )),
            _ => Ok(()),
        }
    }
}

/// A link probe: `from` times how long its bytes take to reach the node its
/// key names (`probe/<target>/<from>`, see `Keys::probe`) and the answer to
/// come back. An empty `pad` times the round trip; a padded one adds the
/// transfer of `pad.len()` bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkProbe {
    /// The probing node.
    pub from: NodeId,
    /// Chosen by the prober, echoed in the reply.
    pub seq: u64,
    /// Filler, at most [`MAX_PROBE_BYTES`](super::MAX_PROBE_BYTES).
    #[serde(with = "crate::bytes")]
    pub pad: Vec<u8>,
}

impl Message for LinkProbe {
    const KIND: MessageKind = MessageKind::LinkProbe;

    fn validate(&self) -> Result<(), String> {
        check_len("pad", self.pad.len(), MAX_PROBE_BYTES)
    }
}

/// The probed node's answer: the probe's `seq` and how many filler bytes
/// arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkProbeReply {
    /// The probe's `seq`.
    pub seq: u64,
    /// `pad.len()` of the probe as received.
    pub received: u32,
}

impl Message for LinkProbeReply {
    const KIND: MessageKind = MessageKind::LinkProbeReply;
}
