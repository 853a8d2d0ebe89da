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
            tracing::warn!(error = %e, "pruning acknowledged records failed");
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
