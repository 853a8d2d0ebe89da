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
use crate::record::{Correction, CorrectionAction, RecordKey, Sighting, Stored};
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
    /// Builds the view from corrections in force, oldest first (later splits
    /// of one sighting override earlier ones).
    pub fn from_in_force<'a>(in_force: impl IntoIterator<Item = &'a Correction>) -> Corrections {
        let mut splits = HashMap::new();
        for c in in_force {
            if let CorrectionAction::Split { sighting, into, .. } = &c.action {
                splits.insert(sighting.clone(), *into);
            }
        }
        Corrections { splits }
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
    /// The corrections in force, applied by every query of sightings.
    pub fn corrections_in_force(&self) -> Result<Corrections, StoreError> {
        let sql = format!(
            "SELECT {} FROM corrections_in_force WHERE action = 'split'
             ORDER BY decided_ms DESC, node_id DESC, seq DESC LIMIT {MAX_IN_FORCE}",
            rows::CORRECTION_COLUMNS
        );
        let mut rows = self.correction_rows(&sql, params![], "corrections_in_force")?;
        rows.reverse();
        Ok(Corrections::from_in_force(rows.iter().map(|s| &s.value)))
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
                        reverted: r.get(10)?,
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
                Ok((rows::correction_row(r)?.value, r.get::<_, bool>(10)?))
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

    fn correction_rows(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        what: &'static str,
    ) -> Result<Vec<Stored<Correction>>, StoreError> {
        let mut stmt = self.conn().prepare_cached(sql).map_err(self.err(what))?;
        let rows = stmt
            .query_map(p, rows::correction_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err(what))?;
        Ok(rows)
    }
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

    fn split(seq: u64, from: u64, into: u64) -> Correction {
        Correction {
            action: CorrectionAction::Split {
                sighting: key(seq),
                from: IdentityId(from),
                into: IdentityId(into),
            },
            actor: "ann".into(),
            reason: String::new(),
            decided_ms: UnixMs(0),
        }
    }

    #[test]
    fn the_newest_split_of_a_sighting_wins_and_others_keep_their_identity() {
        let merge = Correction {
            action: CorrectionAction::Merge {
                from: IdentityId(1),
                into: IdentityId(2),
            },
            ..split(0, 0, 1)
        };
        let c = Corrections::from_in_force(&[split(5, 1, 7), merge, split(5, 7, 9)]);
        assert_eq!(c.identity_of(&key(5), IdentityId(1)), IdentityId(9));
        assert_eq!(c.identity_of(&key(6), IdentityId(1)), IdentityId(1));
        assert!(c.is_split(&key(5)) && !c.is_split(&key(6)));
        assert_eq!(c.split_count(), 1);
    }
}
