//! Following the master's model refreshes: the newest signed
//! [`ModelRefresh`] for this node's re-ID model is fetched (in chunks, from
//! the master's file service), checked against its signed size and
//! sha256, built into a new ONNX Runtime session on this thread, and handed
//! to the re-ID worker, which swaps between two jobs: detection, tracking
//! and ingest never wait for any of it.

use super::shared::Shared;
use crate::identify::Inbox;
use crate::refresh::{Outcome, Refresher};
use crate::telemetry::NodeMetrics;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_protocol::messages::{ModelChunk, ModelChunkRequest, ModelRefresh, MAX_MODEL_CHUNK};
use vidar_reid::Embedder;

/// How often a node asks the master for the refresh in force until it has
/// an answer (the master also repeats it every 30 s).
const ASK_EVERY: Duration = Duration::from_secs(10);
/// How long one chunk may take.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(20);
/// Tries per chunk before the fetch fails for now.
const CHUNK_TRIES: u32 = 3;

/// Applies the master's model refreshes to this node's re-ID worker.
pub(super) struct ModelFollower {
    pub(super) shared: Arc<Shared>,
    pub(super) inbox: Inbox,
    pub(super) metrics: Arc<NodeMetrics>,
    pub(super) refresher: Refresher,
    /// Serial of the refresh applied (restored at start, or 0).
    pub(super) applied: u64,
    /// sha256 of the weights the worker runs.
    pub(super) running: Option<String>,
    /// Serials refused for good: not asked about again.
    pub(super) refused: HashSet<u64>,
}

impl ModelFollower {
    /// Applies the refreshes that arrive on `rx` until a `None` (the stop)
    /// or `stop`; asks the master for the one in force at start and every
    /// [`ASK_EVERY`] until one arrives.
    pub(super) fn run(
        mut self,
        rx: Receiver<Option<ModelRefresh>>,
        stop: &vidar_runtime::Shutdown,
    ) {
        let mut heard = false;
        let mut asked: Option<Instant> = None;
        while !stop.is_triggered() {
            if !heard && asked.is_none_or(|at| at.elapsed() >= ASK_EVERY) {
                asked = Some(Instant::now());
                let keys = self.shared.link.keys().clone();
                if let Some(r) = self
                    .shared
                    .link
                    .fetch::<ModelRefresh>(&keys.models(), Duration::from_secs(3))
                    .into_iter()
                    .max_by_key(|r| r.serial)
                {
                    heard = true;
                    self.apply(r, stop);
                }
                continue;
            }
            let wait = if heard {
                Duration::from_secs(3600)
            } else {
                asked.map_or(Duration::ZERO, |at| ASK_EVERY.saturating_sub(at.elapsed()))
            };
            match rx.recv_timeout(wait) {
                Ok(Some(r)) => {
                    heard = true;
                    self.apply(r, stop);
                }
                Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Applies `r` if it is newer than what runs, for this node, and its
    /// file is the one the master signed.
    fn apply(&mut self, r: ModelRefresh, stop: &vidar_runtime::Shutdown) {
        if r.serial <= self.applied || self.refused.contains(&r.serial) {
            return;
        }
        if self.running.as_deref() == Some(r.sha256.as_str()) {
            // These weights run already (the refresh was applied before a
            // restart, or it rolls back to what runs).
            self.done(&r);
            return;
        }
        let built = match self.refresher.build_local(&r) {
            Ok(Some(e)) => Ok(e),
            Ok(None) => self
                .fetch(&r)
                .and_then(|bytes| self.refresher.accept(&r, &bytes)),
            Err(o) => Err(o),
        };
        let embedder = match built {
            Ok(e) => e,
            Err(Outcome::Refused(why)) => {
                self.refused.insert(r.serial);
                self.metrics
                    .model_refreshes_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(serial = r.serial, version = %r.version, %why, "model refresh refused");
                return;
            }
            Err(Outcome::Failed(why)) => {
                self.metrics
                    .model_refreshes_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(serial = r.serial, version = %r.version, %why, "model refresh failed; tried again when the master repeats it");
                return;
            }
        };
        let mut offered: Box<dyn Embedder> = Box::new(embedder);
        // This node's recent identities as the new model sees them (from
        // their snapshots), so the gallery knows them again after the swap.
        let views = self.refresher.reembed(offered.as_mut());
        let mut swap = crate::identify::ModelSwap {
            embedder: offered,
            views,
        };
        // The worker's inbox may be full for a moment: offer it until taken.
        loop {
            match self.inbox.model(swap) {
                Ok(()) => break,
                Err(back) => {
                    if stop.wait_timeout(Duration::from_millis(50)) {
                        return;
                    }
                    swap = back;
                }
            }
        }
        if let Err(e) = self.refresher.remember(&r) {
            tracing::warn!(error = %e, dir = %self.refresher.dir().display(), "model refresh applied but not recorded: after a restart the configured model runs until the master sends it again");
        }
        self.running = Some(r.sha256.clone());
        self.metrics
            .model_refreshes_applied
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(serial = r.serial, model = %r.model, version = %r.version, sha256 = %r.sha256, "model refresh applied");
        self.done(&r);
    }

    fn done(&mut self, r: &ModelRefresh) {
        self.applied = r.serial;
        self.metrics
            .model_refresh_serial
            .store(r.serial, Ordering::Relaxed);
    }

    /// The file of `r` from the master, in chunks; every chunk must be the
    /// next part of that file (the whole is checked against the signed
    /// sha256 after).
    fn fetch(&self, r: &ModelRefresh) -> Result<Vec<u8>, Outcome> {
        let keys = self.shared.link.keys().clone();
        let key = keys.model_files();
        let mut bytes: Vec<u8> = Vec::new();
        bytes
            .try_reserve_exact(r.size as usize)
            .map_err(|e| Outcome::Failed(format!("{} bytes for the file: {e}", r.size)))?;
        while (bytes.len() as u64) < r.size {
            let offset = bytes.len() as u64;
            let len = (r.size - offset).min(MAX_MODEL_CHUNK as u64) as u32;
            let ask = ModelChunkRequest {
                sha256: r.sha256.clone(),
                offset,
                len,
            };
            let mut last = String::new();
            let mut got = None;
            for _ in 0..CHUNK_TRIES {
                match self.shared.link.request::<ModelChunkRequest, ModelChunk>(
                    &key,
                    &ask,
                    CHUNK_TIMEOUT,
                ) {
                    Ok(c) => {
                        got = Some(c);
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            let c = got.ok_or_else(|| {
                Outcome::Failed(format!(
                    "bytes {offset}.. of {} from the master: {last}",
                    r.sha256
                ))
            })?;
            if c.sha256 != r.sha256 || c.offset != offset || c.total != r.size || c.bytes.is_empty()
            {
                return Err(Outcome::Failed(format!(
                    "the master's file service answered bytes {}.. of {} ({} bytes, total {}) when asked for bytes {offset}.. of {} (total {})",
                    c.offset,
                    c.sha256,
                    c.bytes.len(),
                    c.total,
                    r.sha256,
                    r.size
                )));
            }
            let take = c.bytes.len().min((r.size - offset) as usize);
            bytes.extend_from_slice(&c.bytes[..take]);
        }
        Ok(bytes)
    }
}
