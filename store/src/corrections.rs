//! Operators' corrections as queries see them.
//!
//! A correction is a record like any other ([`Correction`], table
//! `corrections`, written by the master's own writer), kept for good as the
//! audit trail. The ones *in force* are those not reverted (view
//! `corrections_in_force`): a split moves one sighting to another identity
//! (the newest split of a sighting wins), a merge links two identities the
//! way the master's own merges do. Records themselves never change: a
//! sighting keeps its recorded identity, and [`Corrections::identity_of`]
//! says whom it belongs to now.
//!
//! [`Corrections`] is loaded once per query (they are operator actions, so
//! few; at most [`MAX_IN_FORCE`] are followed) and applied to the global
//! database's rows and to the edges' not yet synchronised ones alike.

use std::collections::HashMap;

use rusqlite::params;
use vidar_protocol::{IdentityId, UnixMs};

use crate::error::StoreError;
use crate::reader::Reader;
use crate::reader::Span;
use crate::record::{Correction, RecordKey, Sighting, Stored};
use crate::rows::{self, id_to_sql, seq_to_sql};

/// Most corrections in force that queries follow (the newest win).
pub const MAX_IN_FORCE: usize = 100_000;

/// The corrections in force, for applying to sightings.
#[derive(Debug, Default, Clone)]
pub struct Corrections {
    /// Sighting key -> the identity it belongs to now.
    splits: HashMap<RecordKey, IdentityId>,
}

impl Corrections {
    /// Builds the view from the sightings splits moved, oldest split first
    /// (a later split of a sighting overrides an earlier one). A split of a
    /// whole track names each of its pieces ([`Reader::corrections_in_force`]
    /// finds them).
    pub fn from_moves(moves: impl IntoIterator<Item = (RecordKey, IdentityId)>) -> Corrections {
        Corrections {
            splits: moves.into_iter().collect(),
        }
    }

    /// Whom the sighting keyed `key`, recorded under `recorded`, belongs to now.
    pub fn identity_of(&self, key: &RecordKey, recorded: IdentityId) -> IdentityId {
        self.splits.get(key).copied().unwrap_or(recorded)
    }

    /// Whether a split in force moved the sighting keyed `key`.
    pub fn is_split(&self, key: &RecordKey) -> bool {
        self.splits.contains_key(key)
    }

    /// Sightings moved by splits in force.
    pub fn split_count(&self) -> usize {
        self.splits.len()
    }

    /// True when no correction is in force.
    pub fn is_empty(&self) -> bool {
        self.splits.is_empty()
    }
}

/// A correction in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    /// Its record key.
    pub key: RecordKey,
    /// The correction.
    pub correction: Correction,
    /// Whether a later revert undid it.
    pub reverted: bool,
}

impl Reader {
    /// The corrections in force, applied by every query of sightings: each
    /// sighting a split moved (every piece of a split track, view
    /// `split_pieces`), newest splits first up to [`MAX_IN_FORCE`] sightings.
    pub fn corrections_in_force(&self) -> Result<Corrections, StoreError> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!(
                "SELECT node_id, seq, into_identity FROM split_pieces
                 ORDER BY decided_ms DESC, cnode DESC, cseq DESC LIMIT {MAX_IN_FORCE}"
            ))
            .map_err(self.err("preparing split_pieces"))?;
        let mut moves = stmt
            .query_map([], |r| {
                Ok((rows::key_at(r)?, IdentityId(rows::id_at(r, 2)?)))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err("querying split_pieces"))?;
        moves.reverse();
        Ok(Corrections::from_moves(moves))
    }

    /// The pieces of the track the sighting keyed `key` belongs to (itself
    /// included), in time order: the sightings of its node, camera and track
    /// id joined to it seam to seam (see [`crate::SplitScope::Track`]).
    /// Empty when the sighting is not stored.
    pub fn track_pieces(&self, key: &RecordKey) -> Result<Vec<Span>, StoreError> {
        let Some(seq) = seq_to_sql(key.seq) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {cols} FROM sightings s WHERE EXISTS (SELECT 1 FROM sightings t
                 WHERE t.node_id = ?1 AND t.seq = ?2 AND s.node_id = t.node_id
                   AND s.camera_id = t.camera_id AND s.track_id = t.track_id)
             ORDER BY s.seq",
            cols = rows::SPAN_COLUMNS
        );
        let mut stmt = self
            .conn()
            .prepare_cached(&sql)
            .map_err(self.err("preparing track_pieces"))?;
        let same_id: Vec<Span> = stmt
            .query_map(params![key.node.as_str(), seq], rows::span_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying track_pieces"))?;
        Ok(seamed(same_id, key))
    }

    /// The audit trail: corrections (reverts included) decided in
    /// `[from_ms, to_ms)`, newest first, at most `limit`, each with whether a
    /// revert undid it; only those naming `identity` (as from or into, or
    /// reverting one that does) when given.
    pub fn corrections(
        &self,
        identity: Option<IdentityId>,
        from_ms: UnixMs,
        to_ms: UnixMs,
        limit: usize,
    ) -> Result<Vec<Audited>, StoreError> {
        let sql = format!(
            "SELECT {}, EXISTS (SELECT 1 FROM corrections r WHERE r.action = 'revert'
                 AND r.target_node = c.node_id AND r.target_seq = c.seq)
             FROM corrections c
             WHERE decided_ms >= ?1 AND decided_ms < ?2
               AND (?3 IS NULL OR from_identity = ?3 OR into_identity = ?3
                    OR EXISTS (SELECT 1 FROM corrections t WHERE c.action = 'revert'
                        AND t.node_id = c.target_node AND t.seq = c.target_seq
                        AND (t.from_identity = ?3 OR t.into_identity = ?3)))
             ORDER BY decided_ms DESC, node_id DESC, seq DESC LIMIT ?4",
            rows::CORRECTION_COLUMNS
        );
        let limit = limit.min(crate::reader::MAX_QUERY_ROWS) as i64;
        let mut stmt = self
            .conn()
            .prepare_cached(&sql)
            .map_err(self.err("preparing corrections"))?;
        let rows = stmt
            .query_map(
                params![from_ms, to_ms, identity.map(|i| id_to_sql(i.0)), limit],
                |r| {
                    let c = rows::correction_row(r)?;
                    Ok(Audited {
                        key: c.key,
                        correction: c.value,
                        reverted: r.get(11)?,
                    })
                },
            )
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying corrections"))?;
        Ok(rows)
    }

    /// The correction keyed `key`, if stored, and whether a revert undid it.
    pub fn correction(&self, key: &RecordKey) -> Result<Option<(Correction, bool)>, StoreError> {
        let Some(seq) = seq_to_sql(key.seq) else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {}, EXISTS (SELECT 1 FROM corrections r WHERE r.action = 'revert'
                 AND r.target_node = c.node_id AND r.target_seq = c.seq)
             FROM corrections c WHERE node_id = ?1 AND seq = ?2",
            rows::CORRECTION_COLUMNS
        );
        let mut stmt = self
            .conn()
            .prepare_cached(&sql)
            .map_err(self.err("preparing correction"))?;
        let mut found = stmt
            .query_map(params![key.node.as_str(), seq], |r| {
                Ok((rows::correction_row(r)?.value, r.get::<_, bool>(11)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err("querying correction"))?;
        Ok(found.pop())
    }

    /// The sighting keyed `key`, if stored.
    pub fn sighting(&self, key: &RecordKey) -> Result<Option<Stored<Sighting>>, StoreError> {
        let Some(seq) = seq_to_sql(key.seq) else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {} FROM sightings WHERE node_id = ?1 AND seq = ?2",
            rows::SIGHTING_COLUMNS
        );
        let mut stmt = self
            .conn()
            .prepare_cached(&sql)
            .map_err(self.err("preparing sighting"))?;
        let mut found: Vec<Stored<Sighting>> = stmt
            .query_map(params![key.node.as_str(), seq], rows::sighting_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying sighting"))?;
        Ok(found.pop())
    }

    /// Whether `identity` is known here: recorded on a sighting or an
    /// identity record, or made by a correction.
    pub fn identity_known(&self, identity: IdentityId) -> Result<bool, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sightings WHERE identity_id = ?1)
                     OR EXISTS (SELECT 1 FROM identities WHERE identity_id = ?1)
                     OR EXISTS (SELECT 1 FROM corrections WHERE into_identity = ?1)",
            )
            .and_then(|mut s| s.query_row([id_to_sql(identity.0)], |r| r.get(0)))
            .map_err(self.err("looking up an identity"))
    }

    /// The highest identity in `lo..=hi` that a correction made (splits
    /// into new identities), so the master mints past it.
    pub fn max_corrected_into(
        &self,
        lo: IdentityId,
        hi: IdentityId,
    ) -> Result<Option<IdentityId>, StoreError> {
        // Ids below 2^63 only: their i64 bits order like the ids.
        let (lo, hi) = (lo.0.min(i64::MAX as u64), hi.0.min(i64::MAX as u64));
        let v: Option<i64> = self
            .conn()
            .prepare_cached(
                "SELECT max(into_identity) FROM corrections
                 WHERE action = 'split' AND into_identity BETWEEN ?1 AND ?2",
            )
            .and_then(|mut s| s.query_row(params![id_to_sql(lo), id_to_sql(hi)], |r| r.get(0)))
            .map_err(self.err("finding the highest corrected identity"))?;
        Ok(v.and_then(|v| u64::try_from(v).ok()).map(IdentityId))
    }
}

/// Of `same_id` (one node's sightings of one camera and track id, by seq),
/// the run joined seam to seam to the one keyed `key`, in time order.
fn seamed(same_id: Vec<Span>, key: &RecordKey) -> Vec<Span> {
    let Some(at) = same_id.iter().position(|s| &s.key == key) else {
        return Vec::new();
    };
    // Walk back, then forward, from the named piece: each step takes the
    // nearest piece in seq order that starts where the current one ended.
    let mut before = Vec::new();
    let mut cur = &same_id[at];
    for s in same_id[..at].iter().rev() {
        if s.last_ms == cur.first_ms {
            before.push(s.clone());
            cur = s;
        }
    }
    before.reverse();
    let mut out = before;
    out.push(same_id[at].clone());
    let mut cur = &same_id[at];
    for s in &same_id[at + 1..] {
        if s.first_ms == cur.last_ms {
            out.push(s.clone());
            cur = s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidar_protocol::NodeId;

    fn key(seq: u64) -> RecordKey {
        RecordKey {
            node: NodeId::new("edge-1").expect("valid"),
            seq,
        }
    }

    #[test]
    fn the_newest_split_of_a_sighting_wins_and_others_keep_their_identity() {
        let c = Corrections::from_moves([
            (key(5), IdentityId(7)),
            (key(4), IdentityId(7)),
            (key(5), IdentityId(9)),
        ]);
        assert_eq!(c.identity_of(&key(5), IdentityId(1)), IdentityId(9));
        assert_eq!(c.identity_of(&key(4), IdentityId(1)), IdentityId(7));
        assert_eq!(c.identity_of(&key(6), IdentityId(1)), IdentityId(1));
        assert!(c.is_split(&key(5)) && !c.is_split(&key(6)));
        assert_eq!(c.split_count(), 2);
    }

    fn span(seq: u64, first: i64, last: i64) -> Span {
        Span {
            key: key(seq),
            identity: IdentityId(1),
            camera: vidar_protocol::CameraId::new("c").expect("valid"),
            first_ms: UnixMs(first),
            last_ms: UnixMs(last),
        }
    }

    #[test]
    fn a_tracks_pieces_are_joined_seam_to_seam_and_a_reused_id_is_not() {
        // Seqs 1, 2 and 4: one track cut at 10 s, its last piece recorded
        // after seq 3, the same track id used again after a restart.
        let all = vec![
            span(1, 0, 10_000),
            span(2, 10_000, 20_000),
            span(3, 50_000, 51_000),
            span(4, 20_000, 25_000),
        ];
        let seqs = |v: Vec<Span>| v.iter().map(|s| s.key.seq).collect::<Vec<_>>();
        assert_eq!(seqs(seamed(all.clone(), &key(2))), [1, 2, 4]);
        assert_eq!(seqs(seamed(all.clone(), &key(1))), [1, 2, 4]);
        assert_eq!(seqs(seamed(all.clone(), &key(4))), [1, 2, 4]);
        assert_eq!(seqs(seamed(all.clone(), &key(3))), [3]);
        assert!(seamed(all, &key(9)).is_empty());
    }
}
