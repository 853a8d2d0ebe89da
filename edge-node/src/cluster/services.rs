//! Queryables this node serves: sync batches and queries, plus the typed
//! declare/reply helpers.

use super::shared::Shared;
use anyhow::Result;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vidar_link::zenoh::{self, Wait};
use vidar_protocol::messages::SYNC_BATCH_BYTES;
use vidar_protocol::messages::{QueryReply, QueryRequest, SyncBatch, SyncRequest};
use vidar_protocol::record::{KeyedRecord, Record};
use vidar_protocol::{wire, NodeId};
use vidar_store::{Reader, WriterHandle};

/// Declares a queryable at `key` whose requests decode as `Q` (refused ones
/// are counted and answered with an error) and go to `handle`.
pub(super) fn declare_service<Q: vidar_protocol::Message + 'static>(
    shared: &Arc<Shared>,
    key: String,
    handle: impl Fn(Q, zenoh::query::Query, String) + Send + Sync + 'static,
) -> Result<zenoh::query::Queryable<()>> {
    let sh = Arc::clone(shared);
    let what = Q::KIND.as_str();
    shared
        .session
        .declare_queryable(&key)
        .callback(move |query| {
            let key = query.key_expr().to_string();
            match query
                .payload()
                .map(|p| p.to_bytes())
                .and_then(|b| sh.garbage.decode::<Q>(&key, &b))
            {
                Some(req) => handle(req, query, key),
                None => {
                    let _ = query.reply_err(format!("expected a {what}")).wait();
                }
            }
        })
        .wait()
        .map_err(|e| anyhow::anyhow!("declaring the {what} queryable at {key}: {e}"))
}

/// Replies with an encoded message, or an error reply.
pub(super) fn reply<M: vidar_protocol::Message>(
    query: &zenoh::query::Query,
    key: &str,
    answer: Result<M, String>,
) {
    let sent = match answer.and_then(|m| wire::encode(&m).map_err(|e| e.to_string())) {
        Ok(bytes) => query.reply(key, bytes).wait(),
        Err(e) => query.reply_err(e).wait(),
    };
    if let Err(e) = sent {
        tracing::debug!(key, error = %e, "reply not sent");
    }
}

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
