//! Model refreshes: the master deploys new weights for a manifest model
//! (signed, on `models()`), and serves the file in chunks (on
//! `model_files()`) that a node checks against the signed size and sha256
//! before it builds anything from them.

use serde::{Deserialize, Serialize};

use super::check_text;
use crate::time::UnixMs;
use crate::wire::{Message, MessageKind};

/// Largest model file a refresh may name, in bytes.
pub const MAX_MODEL_BYTES: u64 = 256 * 1024 * 1024;
/// Most bytes of a model file in one [`ModelChunk`].
pub const MAX_MODEL_CHUNK: usize = 1024 * 1024;
/// Longest model name or version, in bytes.
pub const MAX_MODEL_NAME: usize = 128;

/// The weights every node must now run for one manifest model: a new
/// version, or (a rollback) an older one. Signed by the master; a node
/// takes it only if `serial` is above every refresh it has applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRefresh {
    /// Increases with every deployment the master makes (promote or rollback).
    pub serial: u64,
    /// The manifest model these weights are for (`osnet-x0-25-msmt17-combineall`):
    /// same inputs, outputs and pre-processing.
    pub model: String,
    /// The version deployed (the registry's name for these weights).
    pub version: String,
    /// The version it was trained from, if any.
    pub parent: Option<String>,
    /// Lower-case hex sha256 of the ONNX file.
    pub sha256: String,
    /// Size of the ONNX file, bytes.
    pub size: u64,
    /// When the master deployed it.
    pub issued_ms: UnixMs,
}

/// Whether `s` is 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_sha(field: &str, s: &str) -> Result<(), String> {
    if is_sha256_hex(s) {
        Ok(())
    } else {
        Err(format!(
            "{field}: {:?} is not 64 lower-case hex digits",
            s.get(..s.len().min(80)).unwrap_or("")
        ))
    }
}

fn check_name(field: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{field}: empty"));
    }
    check_text(field, s, MAX_MODEL_NAME)
}

impl Message for ModelRefresh {
    const KIND: MessageKind = MessageKind::ModelRefresh;

    fn validate(&self) -> Result<(), String> {
        check_name("model", &self.model)?;
        check_name("version", &self.version)?;
        if let Some(p) = &self.parent {
            check_name("parent", p)?;
        }
        check_sha("sha256", &self.sha256)?;
        if self.size == 0 || self.size > MAX_MODEL_BYTES {
            return Err(format!(
                "size: {} bytes, 1..={MAX_MODEL_BYTES} allowed",
                self.size
            ));
        }
        Ok(())
    }
}

/// A node asking the master for part of a model file (answered with a [`ModelChunk`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelChunkRequest {
    /// The file, by its sha256.
    pub sha256: String,
    /// First byte wanted.
    pub offset: u64,
    /// Bytes wanted, 1..=[`MAX_MODEL_CHUNK`].
    pub len: u32,
}

impl Message for ModelChunkRequest {
    const KIND: MessageKind = MessageKind::ModelChunkRequest;

    fn validate(&self) -> Result<(), String> {
        check_sha("sha256", &self.sha256)?;
        if self.len == 0 || self.len as usize > MAX_MODEL_CHUNK {
            return Err(format!("len: {}, 1..={MAX_MODEL_CHUNK} allowed", self.len));
        }
        if self.offset >= MAX_MODEL_BYTES {
            return Err(format!(
                "offset: {} is past the largest model ({MAX_MODEL_BYTES} bytes)",
                self.offset
            ));
        }
        Ok(())
    }
}

/// Part of a model file. Not trusted by itself: the node checks the whole
/// file against the signed [`ModelRefresh`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelChunk {
    /// The file, by its sha256.
    pub sha256: String,
    /// Where `bytes` start in the file.
    pub offset: u64,
    /// The whole file's size.
    pub total: u64,
    /// The bytes, at most [`MAX_MODEL_CHUNK`].
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_MODEL_CHUNK>")]
    pub bytes: Vec<u8>,
}

impl Message for ModelChunk {
    const KIND: MessageKind = MessageKind::ModelChunk;

    fn validate(&self) -> Result<(), String> {
        check_sha("sha256", &self.sha256)?;
        if self.bytes.len() > MAX_MODEL_CHUNK {
            return Err(format!(
                "bytes: {} bytes, at most {MAX_MODEL_CHUNK} allowed",
                self.bytes.len()
            ));
        }
        if self.total > MAX_MODEL_BYTES {
            return Err(format!(
                "total: {} bytes, at most {MAX_MODEL_BYTES} allowed",
                self.total
            ));
        }
        let end = self.offset.saturating_add(self.bytes.len() as u64);
        if end > self.total {
            return Err(format!(
                "offset {} + {} bytes ends past the file's {} bytes",
                self.offset,
                self.bytes.len(),
                self.total
            ));
        }
        Ok(())
    }
}
