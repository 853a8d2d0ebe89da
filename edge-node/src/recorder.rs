//! The recorder: turns what analysis found into records for the local
//! database (one writer thread, batched). Analysis never waits on SQLite.

use crate::telemetry::NodeMetrics;
use anyhow::Result;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vidar_config::Config;
use vidar_protocol::{BBox, CameraId, IdentityId, NodeId, TrackId, UnixMs};
use vidar_store::{
    BoxPoint, CameraRecord, IdentityRecord, Record, Sighting, Snapshot, TrackRecord, Writer,
    WriterConfig, WriterHandle,
};

/// A finished (or split) sighting of one track.
#[derive(Debug, Clone)]
pub struct SightingOut {
    /// Camera.
    pub camera: CameraId,
    /// Track id within the camera's tracker.
    pub track: TrackId,
    /// Identity assigned by re-ID, if any.
    pub identity: Option<IdentityId>,
    /// First time, ms since the Unix epoch.
    pub first_ms: UnixMs,
    /// Last time, ms since the Unix epoch.
    pub last_ms: UnixMs,
    /// Box path: (capture time, box).
    pub path: Vec<(UnixMs, BBox)>,
}

/// Writes records through the store's single writer thread (batched
/// transactions). Submitting blocks only when the writer's bounded queue is
/// full, i.e. when the disk cannot keep up: then analysis slows down and the
/// ingest queues drop frames (counted), rather than records being lost.
#[derive(Debug)]
pub struct Recorder {
    handle: WriterHandle,
    /// The owner of the writer thread (None in shared copies).
    writer: Option<Writer>,
    metrics: Arc<NodeMetrics>,
}

impl Recorder {
    /// Opens (creating or migrating) the database at `path` for `node`.
    pub fn open(path: &Path, node: &NodeId, metrics: Arc<NodeMetrics>) -> Result<Recorder> {
        Recorder::open_with(&WriterConfig::new(path, node.clone()), metrics)
    }

    /// Opens the database `config` describes, with its writer settings.
    pub fn open_with(config: &WriterConfig, metrics: Arc<NodeMetrics>) -> Result<Recorder> {
        if let Some(dir) = config.path.parent() {
            vidar_store::create_private_dir(dir)?;
        }
        let writer = config.build(&())?;
        Ok(Recorder {
            handle: writer.handle(),
            writer: Some(writer),
            metrics,
        })
    }

    /// A handle on the writer, for its statistics.
    pub fn writer(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Another recorder on the same writer, for another thread. Closing it
    /// does not stop the writer; closing the original does.
    pub fn share(&self) -> Recorder {
        Recorder {
            handle: self.handle.clone(),
            writer: None,
            metrics: Arc::clone(&self.metrics),
        }
    }

    fn submit(&self, record: Record) {
        let kind = record.kind();
        match self.handle.submit(record) {
            Ok(()) => {
                self.metrics
                    .records_submitted
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(kind, error = %e, "record not written");
            }
        }
    }

    /// Records that `camera` is served by this node.
    pub fn camera(&self, camera: &CameraId, name: &str) {
        self.submit(Record::Camera(CameraRecord {
            camera: camera.clone(),
            name: name.chars().take(200).collect(),
            recorded_ms: UnixMs::now(),
        }));
    }

    /// Records a sighting; one without an identity (re-ID never ran, e.g. a
    /// box too small to embed) is kept as a track record only.
    pub fn sighting(&self, s: SightingOut) {
        let track = s.track;
        let (first_ms, last_ms) = (s.first_ms, s.last_ms.max(s.first_ms));
        match s.identity {
            Some(identity) => self.submit(Record::Sighting(Sighting {
                identity,
                camera: s.camera,
                track,
                first_ms,
                last_ms,
                path: s
                    .path
                    .into_iter()
                    .map(|(t_ms, bbox)| BoxPoint { t_ms, bbox })
                    .collect(),
            })),
            None => self.submit(Record::Track(TrackRecord {
                camera: s.camera,
                track,
                first_ms,
                last_ms,
                identity: None,
            })),
        }
    }

    /// Records a new identity with its embedding.
    pub fn identity(
        &self,
        id: IdentityId,
        camera: &CameraId,
        ms: UnixMs,
        embedding: &[f32],
        model: &str,
    ) {
        self.submit(Record::Identity(IdentityRecord {
            identity: id,
            camera: camera.clone(),
            first_seen_ms: ms,
            embedding: embedding.to_vec(),
            model: model.to_owned(),
        }));
    }

    /// Records what reached a job's `records` sink for one frame.
    pub fn job_result(&self, r: vidar_store::JobResult) {
        self.submit(Record::JobResult(r));
    }

    /// Records a snapshot (JPEG) of an identity.
    pub fn snapshot(&self, id: IdentityId, camera: &CameraId, ms: UnixMs, jpeg: Vec<u8>) {
        self.submit(Record::Snapshot(Snapshot {
            identity: id,
            camera: camera.clone(),
            t_ms: ms,
            jpeg,
        }));
    }

    /// Commits everything submitted and stops the writer.
    pub fn close(self) {
        let Some(writer) = self.writer else { return };
        match writer.shutdown() {
            Ok(stats) => tracing::info!(
                records = stats.records,
                last_seq = stats.last_seq,
                "database flushed"
            ),
            Err(e) => tracing::error!(error = %e, "flushing the database failed"),
        }
    }
}
