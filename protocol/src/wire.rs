//! The codec: how every message between Vidar processes becomes bytes and back.
//!
//! A payload is a 5-byte header, then the message's postcard body:
//!
//! | bytes | content                                             |
//! |-------|-----------------------------------------------------|
//! | 0..2  | magic `b"VD"`                                       |
//! | 2..4  | [`PROTOCOL_VERSION`], u16 little-endian             |
//! | 4     | [`MessageKind`], u8                                 |
//! | 5..   | the message, [postcard](https://docs.rs/postcard)   |
//!
//! [`encode`] and [`decode`] are the only entry points; nothing else in Vidar
//! calls postcard. Both check the message's invariants ([`Message::validate`]),
//! so a sender learns at once that it built something its peers would refuse.
//!
//! Hostile input: [`decode`] refuses payloads over [`MAX_MESSAGE_BYTES`] before
//! looking inside, and postcard never allocates more than the input can fill:
//! strings and byte buffers are bounds-checked against the remaining input before
//! they are copied, and sequences pre-allocate at most what the remaining input
//! could hold (postcard drops a larger length hint, serde caps any hint at 1 MiB),
//! then grow one decoded element at a time. Message vectors are bounded while
//! decoding (a `Merges` of 10 001 entries fails at the 10 001st), so many tiny
//! elements cannot expand into much more memory than their bound. None of our
//! types is recursive, so decoding cannot overflow the stack. This module must
//! not panic on any input.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// The version of the wire format this build speaks, carried in every header.
pub const PROTOCOL_VERSION: u16 = 10;
/// The two bytes every Vidar payload starts with.
pub const MAGIC: [u8; 2] = *b"VD";
/// Length of the header in front of the postcard body, in bytes.
pub const HEADER_LEN: usize = 5;
/// Largest payload accepted (or produced), header included: 16 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Which message a payload holds; its byte is the header's last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    /// [`crate::messages::NodeStatus`].
    NodeStatus = 1,
    /// [`crate::messages::Plan`].
    Plan = 2,
    /// [`crate::messages::ReidRequest`].
    ReidRequest = 3,
    /// [`crate::messages::ReidReply`].
    ReidReply = 4,
    /// [`crate::messages::IdentityAnnounce`].
    IdentityAnnounce = 5,
    /// [`crate::messages::MergeAnnounce`].
    MergeAnnounce = 6,
    /// [`crate::messages::Merges`].
    Merges = 7,
    /// [`crate::messages::SyncRequest`].
    SyncRequest = 8,
    /// [`crate::messages::SyncBatch`].
    SyncBatch = 9,
    /// [`crate::messages::CameraTile`].
    CameraTile = 10,
    /// [`crate::messages::QueryRequest`].
    QueryRequest = 11,
    /// [`crate::messages::QueryReply`].
    QueryReply = 12,
    /// [`crate::messages::SplitAnnounce`].
    SplitAnnounce = 13,
    /// [`crate::messages::KeepApart`].
    KeepApart = 14,
    /// [`crate::messages::IdentityJoined`].
    IdentityJoined = 15,
    /// [`crate::messages::LinkProbe`].
    LinkProbe = 16,
    /// [`crate::messages::LinkProbeReply`].
    LinkProbeReply = 17,
    /// [`crate::messages::IdentitySeen`].
    IdentitySeen = 18,
    /// [`crate::messages::ModelRefresh`].
    ModelRefresh = 19,
    /// [`crate::messages::ModelChunkRequest`].
    ModelChunkRequest = 20,
    /// [`crate::messages::ModelChunk`].
    ModelChunk = 21,
    /// [`crate::messages::JobItem`].
    JobItem = 22,
    /// [`crate::messages::TrainRequest`].
    TrainRequest = 23,
    /// [`crate::messages::TrainReply`].
    TrainReply = 24,
}

impl MessageKind {
    /// Every kind, in byte order.
    pub const ALL: [MessageKind; 24] = [
        MessageKind::NodeStatus,
        MessageKind::Plan,
        MessageKind::ReidRequest,
        MessageKind::ReidReply,
        MessageKind::IdentityAnnounce,
        MessageKind::MergeAnnounce,
        MessageKind::Merges,
        MessageKind::SyncRequest,
        MessageKind::SyncBatch,
        MessageKind::CameraTile,
        MessageKind::QueryRequest,
        MessageKind::QueryReply,
        MessageKind::SplitAnnounce,
        MessageKind::KeepApart,
        MessageKind::IdentityJoined,
        MessageKind::LinkProbe,
        MessageKind::LinkProbeReply,
        MessageKind::IdentitySeen,
        MessageKind::ModelRefresh,
        MessageKind::ModelChunkRequest,
        MessageKind::ModelChunk,
        MessageKind::JobItem,
        MessageKind::TrainRequest,
        MessageKind::TrainReply,
    ];

    /// Stable name, for errors, logs and metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageKind::NodeStatus => "NodeStatus",
            MessageKind::Plan => "Plan",
            MessageKind::ReidRequest => "ReidRequest",
            MessageKind::ReidReply => "ReidReply",
            MessageKind::IdentityAnnounce => "IdentityAnnounce",
            MessageKind::MergeAnnounce => "MergeAnnounce",
            MessageKind::Merges => "Merges",
            MessageKind::SyncRequest => "SyncRequest",
            MessageKind::SyncBatch => "SyncBatch",
            MessageKind::CameraTile => "CameraTile",
            MessageKind::QueryRequest => "QueryRequest",
            MessageKind::QueryReply => "QueryReply",
            MessageKind::SplitAnnounce => "SplitAnnounce",
            MessageKind::KeepApart => "KeepApart",
            MessageKind::IdentityJoined => "IdentityJoined",
            MessageKind::LinkProbe => "LinkProbe",
            MessageKind::LinkProbeReply => "LinkProbeReply",
            MessageKind::IdentitySeen => "IdentitySeen",
            MessageKind::ModelRefresh => "ModelRefresh",
            MessageKind::ModelChunkRequest => "ModelChunkRequest",
            MessageKind::ModelChunk => "ModelChunk",
            MessageKind::JobItem => "JobItem",
            MessageKind::TrainRequest => "TrainRequest",
            MessageKind::TrainReply => "TrainReply",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<u8> for MessageKind {
    type Error = DecodeError;

    fn try_from(b: u8) -> Result<Self, DecodeError> {
        MessageKind::ALL
            .into_iter()
            .find(|k| *k as u8 == b)
            .ok_or(DecodeError::UnknownKind(b))
    }
}

/// A type that travels between Vidar processes through [`encode`] and [`decode`].
pub trait Message: Serialize + DeserializeOwned {
    /// The header byte that names this type.
    const KIND: MessageKind;

    /// Checks the invariants serde cannot express (bounds, finiteness,
    /// consistency); the error names the offending field and value.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the header.
    #[error("message is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    Truncated {
        /// Length of the payload.
        len: usize,
    },
    /// The payload does not start with [`MAGIC`].
    #[error("not a Vidar message: starts with {got:02x?}, expected the magic bytes \"VD\"")]
    BadMagic {
        /// The first two bytes found.
        got: [u8; 2],
    },
    /// The sender speaks another protocol version.
    #[error("protocol version {got} is not supported (this build speaks version {supported}); run the same Vidar release on every node")]
    UnsupportedVersion {
        /// The header's version.
        got: u16,
        /// [`PROTOCOL_VERSION`].
        supported: u16,
    },
    /// A valid payload of another message type than the one expected.
    #[error("expected a {expected} message, got a {got} message")]
    WrongKind {
        /// The header's kind.
        got: MessageKind,
        /// The kind asked for.
        expected: MessageKind,
    },
    /// The header's kind byte names no message of this version.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// Longer than [`MAX_MESSAGE_BYTES`]; refused before decoding.
    #[error("message is {len} bytes, at most {max} accepted")]
    TooLarge {
        /// Length of the payload.
        len: usize,
        /// [`MAX_MESSAGE_BYTES`].
        max: usize,
    },
    /// The body is not a well-formed postcard encoding of the expected type.
    #[error("malformed message body: {0}")]
    Body(String),
    /// The body decoded but breaks a documented bound.
    #[error("invalid message: {0}")]
    Invalid(String),
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The message breaks a documented bound; its peers would refuse it.
    #[error("refusing to send an invalid message: {0}")]
    Invalid(String),
    /// The encoding is longer than [`MAX_MESSAGE_BYTES`]; send less per message.
    #[error("encoded {kind} message is {len} bytes, at most {max} allowed; split it")]
    TooLarge {
        /// The message's kind.
        kind: MessageKind,
        /// Length of the encoding.
        len: usize,
        /// [`MAX_MESSAGE_BYTES`].
        max: usize,
    },
    /// Postcard refused the value (not expected for Vidar's types).
    #[error("encoding a {kind} message: {reason}")]
    Body {
        /// The message's kind.
        kind: MessageKind,
        /// Postcard's error.
        reason: String,
    },
}

/// The header of a `kind` message of this build's protocol version.
fn header(kind: MessageKind) -> [u8; HEADER_LEN] {
    let [v0, v1] = PROTOCOL_VERSION.to_le_bytes();
    [MAGIC[0], MAGIC[1], v0, v1, kind as u8]
}

/// The header, then `m`'s postcard body. Validates `m` first.
pub fn encode<M: Message>(m: &M) -> Result<Vec<u8>, EncodeError> {
    m.validate()
        .map_err(|e| EncodeError::Invalid(format!("{}: {e}", M::KIND)))?;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&header(M::KIND));
    let out = postcard::to_io(m, out).map_err(|e| EncodeError::Body {
        kind: M::KIND,
        reason: e.to_string(),
    })?;
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(EncodeError::TooLarge {
            kind: M::KIND,
            len: out.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(out)
}

/// Reads and checks the header only: size, magic, version and kind. Returns the
/// version (one this build supports) and the kind, to dispatch on a key that
/// carries several message types or to log what a peer sent.
pub fn peek(bytes: &[u8]) -> Result<(u16, MessageKind), DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    let Some(&[m0, m1, v0, v1, kind]) = bytes.get(..HEADER_LEN) else {
        return Err(DecodeError::Truncated { len: bytes.len() });
    };
    if [m0, m1] != MAGIC {
        return Err(DecodeError::BadMagic { got: [m0, m1] });
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            got: version,
            supported: PROTOCOL_VERSION,
        });
    }
    Ok((version, MessageKind::try_from(kind)?))
}

/// Checks the header, decodes the body as an `M` (all of it: trailing bytes are
/// refused) and validates it.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    let (_, kind) = peek(bytes)?;
    if kind != M::KIND {
        return Err(DecodeError::WrongKind {
            got: kind,
            expected: M::KIND,
        });
    }
    let body = bytes.get(HEADER_LEN..).unwrap_or_default();
    let (m, rest) = postcard::take_from_bytes::<M>(body)
        .map_err(|e| DecodeError::Body(format!("{kind}: {e}")))?;
    if !rest.is_empty() {
        return Err(DecodeError::Body(format!(
            "{kind}: {} bytes left over after the message",
            rest.len()
        )));
    }
    m.validate()
        .map_err(|e| DecodeError::Invalid(format!("{kind}: {e}")))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{
        Crop, CropEncoding, MergeAnnounce, NodeStatus, Plan, ReidRequest, SyncBatch,
    };
    use crate::record::{CameraRecord, KeyedRecord, Record, RecordKey};
    use crate::UnixMs;
    use crate::{CameraId, IdentityId, NodeId, TrackId};

    fn plan() -> Plan {
        Plan {
            version: 3,
            issued_ms: UnixMs(1_700_000_000_000),
            reason: "node edge-2 joined".into(),
            streams: Vec::new(),
            bandwidth: Vec::new(),
            jobs: Vec::new(),
        }
    }

    fn err_of<M: Message + fmt::Debug>(bytes: &[u8]) -> DecodeError {
        match decode::<M>(bytes) {
            Ok(m) => panic!("decoded {m:?} from {bytes:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn header_layout() {
        let bytes = encode(&plan()).expect("encodes");
        let [v0, v1] = PROTOCOL_VERSION.to_le_bytes();
        assert_eq!(&bytes[..HEADER_LEN], &[b'V', b'D', v0, v1, 2]);
        assert_eq!(peek(&bytes), Ok((PROTOCOL_VERSION, MessageKind::Plan)));
    }

    #[test]
    fn kinds_round_trip_through_their_byte() {
        for k in MessageKind::ALL {
            assert_eq!(MessageKind::try_from(k as u8), Ok(k));
        }
        assert_eq!(MessageKind::try_from(0), Err(DecodeError::UnknownKind(0)));
    }

    #[test]
    fn truncated() {
        let e = err_of::<Plan>(b"VD\x01");
        assert_eq!(e, DecodeError::Truncated { len: 3 });
        assert_eq!(
            e.to_string(),
            "message is 3 bytes, shorter than the 5-byte header"
        );
    }

    #[test]
    fn bad_magic() {
        let e = err_of::<Plan>(b"{\"version\":1}");
        assert_eq!(e, DecodeError::BadMagic { got: *b"{\"" });
        assert_eq!(
            e.to_string(),
            "not a Vidar message: starts with [7b, 22], expected the magic bytes \"VD\""
        );
    }

    #[test]
    fn other_versions_refused() {
        let mut bytes = encode(&plan()).expect("encodes");
        bytes[2..4].copy_from_slice(&1u16.to_le_bytes());
        let e = err_of::<Plan>(&bytes);
        assert_eq!(
            e,
            DecodeError::UnsupportedVersion {
                got: 1,
                supported: PROTOCOL_VERSION
            }
        );
        assert_eq!(
            e.to_string(),
            format!("protocol version 1 is not supported (this build speaks version {PROTOCOL_VERSION}); run the same Vidar release on every node")
        );
        assert_eq!(peek(&bytes), Err(e));
    }

    #[test]
    fn wrong_kind() {
        let bytes = encode(&plan()).expect("encodes");
        let e = err_of::<NodeStatus>(&bytes);
        assert_eq!(
            e,
            DecodeError::WrongKind {
                got: MessageKind::Plan,
                expected: MessageKind::NodeStatus
            }
        );
        assert_eq!(
            e.to_string(),
            "expected a NodeStatus message, got a Plan message"
        );
    }

    #[test]
    fn unknown_kind() {
        let mut bytes = encode(&plan()).expect("encodes");
        bytes[4] = 200;
        let e = err_of::<Plan>(&bytes);
        assert_eq!(e, DecodeError::UnknownKind(200));
        assert_eq!(e.to_string(), "unknown message kind 200");
    }

    #[test]
    fn too_large_refused_before_decoding() {
        let mut bytes = encode(&plan()).expect("encodes");
        bytes.resize(MAX_MESSAGE_BYTES + 1, 0);
        let e = err_of::<Plan>(&bytes);
        assert_eq!(
            e,
            DecodeError::TooLarge {
                len: MAX_MESSAGE_BYTES + 1,
                max: MAX_MESSAGE_BYTES
            }
        );
        assert_eq!(
            e.to_string(),
            "message is 16777217 bytes, at most 16777216 accepted"
        );
    }

    #[test]
    fn too_large_refused_on_encode() {
        let side = 2400u32; // 2400 * 2400 * 3 bytes: over 16 MiB
        let req = ReidRequest {
            from: NodeId::new("edge-1").expect("id"),
            request_id: 1,
            crops: vec![Crop {
                camera: CameraId::new("c").expect("id"),
                track: TrackId(1),
                capture_ms: UnixMs(0),
                width: side,
                height: side,
                encoding: CropEncoding::Rgb8,
                data: vec![0; (side * side * 3) as usize],
            }],
        };
        let e = encode(&req)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            e,
            "encoded ReidRequest message is 17280027 bytes, at most 16777216 allowed; split it"
        );
    }

    #[test]
    fn body_truncated_and_trailing() {
        let bytes = encode(&plan()).expect("encodes");
        let e = err_of::<Plan>(&bytes[..bytes.len() - 3]);
        assert!(matches!(e, DecodeError::Body(_)), "{e:?}");
        assert!(
            e.to_string().starts_with("malformed message body: Plan: "),
            "{e}"
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            err_of::<Plan>(&long).to_string(),
            "malformed message body: Plan: 1 bytes left over after the message"
        );
    }

    #[test]
    fn huge_length_prefix_fails_without_allocating() {
        // A SyncBatch whose record vector claims u64::MAX / 2 elements.
        let mut bytes = header(MessageKind::SyncBatch).to_vec();
        bytes.extend_from_slice(&[1, b'n']); // node "n"
        bytes.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
        assert!(matches!(err_of::<SyncBatch>(&bytes), DecodeError::Body(_)));
    }

    #[test]
    fn invalid_names_the_field() {
        let bytes = postcard_with_header(
            MessageKind::MergeAnnounce,
            &MergeAnnounce {
                from: IdentityId(4),
                into: IdentityId(4),
                decided_ms: UnixMs(1),
            },
        );
        let e = err_of::<MergeAnnounce>(&bytes);
        assert_eq!(
            e.to_string(),
            "invalid message: MergeAnnounce: into: p4 is the identity merged away (from)"
        );
        // A record batch validates each record with the record's own rules, and
        // refuses records of another node.
        let batch = SyncBatch {
            node: NodeId::new("edge-1").expect("id"),
            records: vec![KeyedRecord {
                key: RecordKey {
                    node: NodeId::new("edge-2").expect("id"),
                    seq: 1,
                },
                record: Record::Camera(CameraRecord {
                    camera: CameraId::new("c").expect("id"),
                    name: String::new(),
                    recorded_ms: UnixMs(0),
                }),
            }],
            last_seq: 1,
            more: false,
        };
        let e = err_of::<SyncBatch>(&postcard_with_header(MessageKind::SyncBatch, &batch));
        assert_eq!(
            e.to_string(),
            "invalid message: SyncBatch: records[0].key.node: edge-2, but the batch is from edge-1"
        );
        assert!(matches!(encode(&batch), Err(EncodeError::Invalid(_))));
    }

    #[test]
    fn vectors_bounded_while_decoding() {
        use crate::messages::{Merges, MAX_MERGES};
        let m = MergeAnnounce {
            from: IdentityId(1),
            into: IdentityId(2),
            decided_ms: UnixMs(0),
        };
        let merges = Merges {
            merges: vec![m; MAX_MERGES + 1],
        };
        assert!(matches!(encode(&merges), Err(EncodeError::Invalid(_))));
        // Postcard reports serde's custom errors without their text.
        let e = err_of::<Merges>(&postcard_with_header(MessageKind::Merges, &merges));
        assert_eq!(
            e.to_string(),
            "malformed message body: Merges: Serde Deserialization Error"
        );
    }

    /// A payload that skips `encode`'s validation, as a hostile sender would.
    fn postcard_with_header<T: Serialize>(kind: MessageKind, m: &T) -> Vec<u8> {
        let mut out = header(kind).to_vec();
        out.extend(postcard::to_stdvec(m).expect("serialises"));
        out
    }
}
