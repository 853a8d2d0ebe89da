//! What this node's queryables answer: sync batches and queries from its
//! database.

use std::sync::Mutex;
use std::time::Duration;
use vidar_protocol::messages::SYNC_BATCH_BYTES;
use vidar_protocol::messages::{QueryReply, QueryRequest, SyncBatch, SyncRequest};
use vidar_protocol::record::{KeyedRecord, Record};
use vidar_protocol::NodeId;
use vidar_store::{Reader, WriterHandle};

/// Opens the database for reading once, on first use.
pub(super) fn with_reader<T>(
    slot: &Mutex<Option<Reader>>,
    db: &std::path::Path,
    f: impl FnOnce(&Reader) -> Result<T, vidar_store::StoreError>,
) -> Result<T, String> {
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        *guard = Some(Reader::open(db).map_err(|e| e.to_string())?);
    }
    match guard.as_ref() {
        Some(r) => f(r).map_err(|e| e.to_string()),
        None => Err("database not open".into()),
    }
}

pub(super) fn serve_sync(
    node: &NodeId,
    reader: &Mutex<Option<Reader>>,
    db: &std::path::Path,
    store: &WriterHandle,
    req: &SyncRequest,
    retention: Duration,
) -> Result<SyncBatch, String> {
    if req.ack_through > 0 {
        // The master committed everything up to ack_through: those records
        // may go once past retention. Never beyond what we have written.
        let upto = req.ack_through.min(store.stats().last_seq);
        if let Err(e) = store.prune_acknowledged(upto, retention) {
            // A request that arrives while the node shuts down finds the
            // writer stopped: nothing is lost (the records stay until a
            // later acknowledgement prunes them), and a writer that failed
            // is reported where it failed.
            match store.stopped() {
                Some(why) => tracing::debug!(why, "writer stopped; pruning left for later"),
                None => tracing::warn!(error = %e, "pruning acknowledged records failed"),
            }
        }
    }
    let max = (req.max_records as usize).max(1);
    let (records, last_seq) = with_reader(reader, db, |r| {
        let recs = r.records_after_within(node, req.after_seq, max, SYNC_BATCH_BYTES)?;
        let last = r.last_seq(node)?;
        Ok((recs, last))
    })?;
    // Every seq of this node up to last_seq exists (pruning only removes
    // acknowledged ones), so a batch ending below it leaves more to fetch.
    let more = records.last().is_some_and(|r| r.key.seq < last_seq);
    Ok(SyncBatch {
        node: node.clone(),
        records,
        last_seq,
        more,
    })
}

/// Most records one query answer carries.
const QUERY_LIMIT: usize = 10_000;

pub(super) fn serve_query(
    reader: &Mutex<Option<Reader>>,
    db: &std::path::Path,
    req: &QueryRequest,
) -> Result<QueryReply, String> {
    let sightings = with_reader(reader, db, |r| match req {
        QueryRequest::Trajectory { identity, range } => {
            r.trajectory(*identity, *range, QUERY_LIMIT)
        }
        QueryRequest::SightingsByCamera { camera, range } => {
            r.sightings_by_camera(camera, *range, QUERY_LIMIT)
        }
        QueryRequest::IdentitiesInRange { range } => r.sightings_in_range(*range, QUERY_LIMIT),
    })?;
    Ok(QueryReply {
        records: sightings
            .into_iter()
            .map(|s| KeyedRecord {
                key: s.key,
                record: Record::Sighting(s.value),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidar_protocol::record::Sighting;
    use vidar_protocol::{CameraId, IdentityId, TrackId, UnixMs};
    use vidar_store::{Writer, WriterConfig};

    /// A sync request can arrive after the node's writer has stopped (the
    /// node shutting down while the master syncs): it is still answered
    /// from the database, with every record the master asked for.
    #[test]
    fn a_sync_after_the_writer_stopped_is_answered_from_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("edge.db");
        let node = NodeId::new("n1").expect("id");
        let writer = Writer::open(&WriterConfig::new(&db, node.clone())).expect("open");
        let store = writer.handle();
        for i in 0..3 {
            store
                .write(Record::Sighting(Sighting {
                    identity: IdentityId(1),
                    camera: CameraId::new("c").expect("id"),
                    track: TrackId(i),
                    first_ms: UnixMs(1_000 * i as i64),
                    last_ms: UnixMs(1_000 * i as i64 + 500),
                    path: Vec::new(),
                }))
                .expect("write");
        }
        writer.shutdown().expect("shutdown");
        assert!(store.stopped().is_some());
        let reader = Mutex::new(None);
        let req = SyncRequest {
            after_seq: 1,
            ack_through: 1,
            max_records: 10,
        };
        let batch = serve_sync(&node, &reader, &db, &store, &req, Duration::ZERO)
            .expect("answered after the writer stopped");
        let seqs: Vec<u64> = batch.records.iter().map(|r| r.key.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
        assert_eq!(batch.last_seq, 3);
        assert!(!batch.more);
    }
}
