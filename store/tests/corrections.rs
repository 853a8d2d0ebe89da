//! Operators' corrections: followed by queries, undone by reverts, kept for
//! good, and read back as the audit trail; against a real file.

#![allow(clippy::unwrap_used)] // a test crate: a panic is how a helper reports failure

mod common;

use std::time::Duration;

use common::*;
use vidar_protocol::{IdentityId, UnixMs};
use vidar_store::{Correction, CorrectionAction, Reader, Record, RecordKey, SplitScope, TimeRange};

const A: u64 = 11;
const B: u64 = 22;
const D: u64 = 44;
const E: u64 = 55;

fn key(seq: u64) -> RecordKey {
    RecordKey {
        node: node("edge-1"),
        seq,
    }
}

fn correction(action: CorrectionAction, t: i64) -> Record {
    Record::Correction(Correction {
        action,
        actor: "ann".into(),
        reason: "two people in one identity".into(),
        decided_ms: UnixMs(t),
    })
}

fn split(seq: u64, from: u64, into: u64, t: i64) -> Record {
    correction(
        CorrectionAction::Split {
            sighting: key(seq),
            from: IdentityId(from),
            into: IdentityId(into),
            scope: SplitScope::Sighting,
        },
        t,
    )
}

fn split_track(seq: u64, from: u64, into: u64, t: i64) -> Record {
    correction(
        CorrectionAction::Split {
            sighting: key(seq),
            from: IdentityId(from),
            into: IdentityId(into),
            scope: SplitScope::Track,
        },
        t,
    )
}

/// Seqs 1..=5: A on cam-a, D on cam-a, B on cam-b, A on cam-a, D on cam-b;
/// seq 6 merges B into A. `more` follows, from seq 7 on.
fn fixture(dir: &tempfile::TempDir, more: Vec<Record>) -> std::path::PathBuf {
    let path = db(dir, "c.db");
    let w = writer(&path, "edge-1");
    let s = |id, camera: &str, track, first, last| {
        Record::Sighting(sighting(id, camera, track, first, last, 3))
    };
    for r in [
        s(A, "cam-a", 1, 1_000, 2_000),
        s(D, "cam-a", 2, 1_500, 2_500),
        s(B, "cam-b", 3, 3_000, 4_000),
        s(A, "cam-a", 5, 7_000, 8_000),
        s(D, "cam-b", 6, 9_000, 9_500),
        merge(B, A, 10_000),
    ]
    .into_iter()
    .chain(more)
    {
        w.submit(r).unwrap();
    }
    w.shutdown().unwrap();
    path
}

fn firsts(r: &Reader, who: u64) -> Vec<i64> {
    r.trajectory(IdentityId(who), TimeRange::all(), 100)
        .unwrap()
        .iter()
        .map(|s| s.value.first_ms.ms())
        .collect()
}

fn seen(r: &Reader) -> Vec<(u64, u64)> {
    r.identities_in_range(TimeRange::all(), 100)
        .unwrap()
        .iter()
        .map(|i| (i.identity.0, i.sightings))
        .collect()
}

#[test]
fn a_split_sighting_leaves_its_identity_for_the_new_one_everywhere() -> TestResult {
    let dir = tempfile::tempdir()?;
    let r = Reader::open(fixture(&dir, vec![split(4, A, E, 20_000)]))?;
    assert_eq!(firsts(&r, A), [1_000, 3_000]);
    assert_eq!(firsts(&r, B), [1_000, 3_000], "merges still followed");
    assert_eq!(firsts(&r, E), [7_000]);
    assert_eq!(seen(&r), [(A, 1), (D, 2), (B, 1), (E, 1)]);
    let c = r.corrections_in_force()?;
    assert_eq!(c.identity_of(&key(4), IdentityId(A)), IdentityId(E));
    assert_eq!(c.identity_of(&key(1), IdentityId(A)), IdentityId(A));
    // Records themselves never change.
    let t = r.trajectory(IdentityId(E), TimeRange::all(), 100)?;
    assert_eq!(t[0].value.identity, IdentityId(A));
    // The limit holds after split sightings are left out.
    assert_eq!(
        r.trajectory(IdentityId(A), TimeRange::all(), 1)?.len(),
        1,
        "limit"
    );
    Ok(())
}

#[test]
fn the_newest_split_wins_and_a_revert_undoes_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    // 7: 4 -> E, 8: 4 -> D (newer), 9: revert 8, so 4 is E's again.
    let revert = correction(CorrectionAction::Revert { correction: key(8) }, 40_000);
    let r = Reader::open(fixture(
        &dir,
        vec![split(4, A, E, 20_000), split(4, E, D, 30_000), revert],
    ))?;
    assert_eq!(firsts(&r, E), [7_000]);
    assert_eq!(firsts(&r, D), [1_500, 9_000]);
    let (c, reverted) = r.correction(&key(8))?.unwrap();
    assert!(reverted);
    assert!(matches!(c.action, CorrectionAction::Split { .. }));
    assert!(!r.correction(&key(7))?.unwrap().1);
    assert!(r.correction(&key(99))?.is_none());
    // The audit trail: everything, reverts included, newest first.
    let all = r.corrections(None, UnixMs::MIN, UnixMs::MAX, 100)?;
    assert_eq!(
        all.iter()
            .map(|c| (c.key.seq, c.reverted))
            .collect::<Vec<_>>(),
        [(9, false), (8, true), (7, false)]
    );
    assert_eq!(all[2].correction.actor, "ann");
    let of_d = r.corrections(Some(IdentityId(D)), UnixMs::MIN, UnixMs::MAX, 100)?;
    assert_eq!(
        of_d.iter().map(|c| c.key.seq).collect::<Vec<_>>(),
        [9, 8],
        "its revert too"
    );
    Ok(())
}

#[test]
fn an_operator_merge_joins_trajectories_until_reverted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let m = correction(
        CorrectionAction::Merge {
            from: IdentityId(D),
            into: IdentityId(A),
        },
        20_000,
    );
    let path = fixture(&dir, vec![m]);
    let r = Reader::open(&path)?;
    assert_eq!(firsts(&r, D), [1_000, 1_500, 3_000, 7_000, 9_000]);
    assert_eq!(firsts(&r, B), [1_000, 1_500, 3_000, 7_000, 9_000]);
    let mut cluster = r.identity_cluster(IdentityId(A))?;
    cluster.sort();
    assert_eq!(cluster, [IdentityId(A), IdentityId(B), IdentityId(D)]);
    drop(r);
    let w = writer(&path, "edge-1");
    w.write(correction(
        CorrectionAction::Revert { correction: key(7) },
        30_000,
    ))?;
    w.shutdown()?;
    let r = Reader::open(&path)?;
    assert_eq!(firsts(&r, D), [1_500, 9_000]);
    assert_eq!(firsts(&r, A), [1_000, 3_000, 7_000]);
    Ok(())
}

#[test]
fn corrections_are_never_pruned_and_travel_as_records() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = fixture(&dir, vec![split(4, A, E, 1)]);
    let w = writer(&path, "edge-1");
    let acked = w.advance_cursor(&node("master"), 7)?;
    let report = w.prune_acknowledged_at(acked, Duration::from_secs(1), UnixMs(1_000_000))?;
    assert_eq!(report.deleted, 6, "all but the correction");
    w.shutdown()?;
    let r = Reader::open(&path)?;
    let left = r.records_after(&node("edge-1"), 0, 100)?;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, key(7));
    assert_eq!(left[0].record, split(4, A, E, 1));
    Ok(())
}

#[test]
fn malformed_corrections_are_refused_by_name() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "bad.db");
    let w = writer(&path, "edge-1");
    let into_itself = split(1, A, A, 0);
    let e = w.write(into_itself).unwrap_err().to_string();
    assert!(
        e.contains("invalid correction record") && e.contains("into itself"),
        "{e}"
    );
    let mut no_actor = split(1, A, E, 0);
    if let Record::Correction(c) = &mut no_actor {
        c.actor.clear();
    }
    let e = w.write(no_actor).unwrap_err().to_string();
    assert!(e.contains("actor"), "{e}");
    let mut control = split(1, A, E, 0);
    if let Record::Correction(c) = &mut control {
        c.reason = "ok\u{1b}[31m".into();
    }
    assert!(w.write(control).is_err());
    w.shutdown()?;
    Ok(())
}

/// Seqs 7-9: one track of A on cam-c (id 9) recorded in 10-s pieces; seq 10
/// the same track id after a restart, also A. Then `more`, then a piece that
/// ends the first track, recorded after them.
fn pieces(dir: &tempfile::TempDir, more: Vec<Record>) -> std::path::PathBuf {
    let s = |first, last| Record::Sighting(sighting(A, "cam-c", 9, first, last, 3));
    let mut all = vec![
        s(20_000, 30_000),
        s(30_000, 40_000),
        s(40_000, 50_000),
        s(70_000, 71_000),
    ];
    all.extend(more);
    all.push(s(50_000, 54_000));
    fixture(dir, all)
}

fn in_trajectory(r: &Reader, who: u64) -> Vec<u64> {
    r.trajectory(IdentityId(who), TimeRange::all(), 100)
        .unwrap()
        .iter()
        .map(|s| s.key.seq)
        .collect()
}

#[test]
fn a_track_split_moves_every_piece_of_the_track_and_only_that_track() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Seq 11 splits the middle piece's track off A into E; seq 12, the
    // track's last piece, is recorded after the split.
    let r = Reader::open(pieces(&dir, vec![split_track(8, A, E, 60_000)]))?;
    assert_eq!(in_trajectory(&r, E), [7, 8, 9, 12], "the whole track");
    assert_eq!(
        in_trajectory(&r, A),
        [1, 3, 4, 10],
        "B's via the merge, the reused id stays"
    );
    let c = r.corrections_in_force()?;
    for seq in [7, 8, 9, 12] {
        assert_eq!(c.identity_of(&key(seq), IdentityId(A)), IdentityId(E));
    }
    assert!(!c.is_split(&key(10)));
    assert_eq!(c.split_count(), 4);
    let seen = seen(&r);
    assert!(seen.contains(&(E, 4)), "{seen:?}");
    let pieces: Vec<u64> = r
        .track_pieces(&key(12))?
        .iter()
        .map(|s| s.key.seq)
        .collect();
    assert_eq!(pieces, [7, 8, 9, 12]);
    assert!(r.track_pieces(&key(99))?.is_empty());
    let (stored, _) = r.correction(&key(11))?.unwrap();
    assert!(matches!(
        stored.action,
        CorrectionAction::Split {
            scope: SplitScope::Track,
            ..
        }
    ));
    Ok(())
}

#[test]
fn a_sighting_split_moves_one_piece_and_a_later_track_split_wins() -> TestResult {
    let dir = tempfile::tempdir()?;
    // 11: piece 8 alone into D; 12: the track (named by piece 7) into E,
    // newer, so piece 8 follows it; 13: revert 12, piece 8 is D's again.
    let revert = correction(
        CorrectionAction::Revert {
            correction: key(12),
        },
        80_000,
    );
    let r = Reader::open(pieces(
        &dir,
        vec![split(8, A, D, 60_000), split_track(7, A, E, 70_000), revert],
    ))?;
    assert!(in_trajectory(&r, E).is_empty());
    assert_eq!(in_trajectory(&r, D), [2, 5, 8]);
    assert_eq!(in_trajectory(&r, A), [1, 3, 4, 7, 9, 14, 10], "time order");
    Ok(())
}
