//! Tests of the merge decisions.

use super::*;
use vidar_protocol::{CameraId, UnixMs};

fn ann(id: u64, node: &str, seen_ms: i64, e: &[f32]) -> IdentityAnnounce {
    IdentityAnnounce {
        identity: IdentityId(id),
        node: NodeId::new(node).expect("id"),
        // Each node has its own camera here.
        camera: CameraId::new(&format!("cam-{node}")).expect("id"),
        seen_ms: UnixMs(seen_ms),
        embedding: e.to_vec(),
        model: "test-model".into(),
    }
}

#[test]
fn never_merges_across_models_or_people_on_one_camera_at_once() {
    let mut book = MergeBook::new(0.9);
    let e = [1.0, 0.0, 0.0];
    assert!(book
        .observe(&ann(1, "a", 1000, &e), UnixMs(1000))
        .is_empty());
    // Another model's vector of the same length: not compared.
    let other_model = IdentityAnnounce {
        model: "other-model".into(),
        ..ann(2, "b", 2000, &e)
    };
    assert!(book.observe(&other_model, UnixMs(2000)).is_empty());
    // Same camera, 1 s apart: two people on screen together.
    let same_camera = IdentityAnnounce {
        camera: CameraId::new("cam-a").expect("id"),
        ..ann(3, "c", 2000, &e)
    };
    assert!(book.observe(&same_camera, UnixMs(2000)).is_empty());
    // The same look on another camera later: merged.
    let m = book.observe(&ann(4, "d", 30_000, &e), UnixMs(30_000));
    assert!(!m.is_empty(), "{m:?}");
}

fn pairs(m: &[MergeAnnounce]) -> Vec<(u64, u64)> {
    m.iter().map(|m| (m.from.0, m.into.0)).collect()
}

#[test]
fn merges_later_into_earlier_across_nodes_only() {
    let mut b = MergeBook::new(0.8);
    assert!(b
        .observe(&ann(10, "a", 100, &[1.0, 0.0]), UnixMs(1000))
        .is_empty());
    // Same node, same look: not merged (the node's own gallery decides).
    assert!(b
        .observe(&ann(11, "a", 50, &[1.0, 0.01]), UnixMs(1001))
        .is_empty());
    // Other node, dissimilar: nothing.
    assert!(b
        .observe(&ann(20, "b", 90, &[0.0, 1.0]), UnixMs(1002))
        .is_empty());
    // Other node, similar to 10 and 11 (11 is more similar, and earlier): into 11.
    let m = b.observe(&ann(21, "b", 200, &[2.0, 0.02]), UnixMs(1003));
    assert_eq!(pairs(&m), vec![(21, 11)]);
    assert_eq!(b.root(IdentityId(21)), IdentityId(11));
    // Announced again: already one with 11, and never joined to 10, which
    // node a (11's minter) keeps apart from 11.
    assert!(b
        .observe(&ann(21, "b", 200, &[2.0, 0.02]), UnixMs(1004))
        .is_empty());
    assert!(
        b.observe(&ann(22, "c", 300, &[1.0, 0.0]), UnixMs(1005))
            .len()
            == 1
    );
    assert_ne!(b.root(IdentityId(10)), b.root(IdentityId(11)));
}

#[test]
fn identities_kept_apart_by_an_operator_are_never_merged_again() {
    let mut b = MergeBook::new(0.8);
    b.observe(&ann(1, "a", 100, &[1.0, 0.0]), UnixMs(0));
    b.keep_apart(IdentityId(1), IdentityId(2));
    // The same look from another node: kept apart, not merged.
    assert!(b
        .observe(&ann(2, "b", 200, &[1.0, 0.0]), UnixMs(1))
        .is_empty());
    // 3 joins 1 (minted earlier); 2 stays apart from the joined root too.
    assert_eq!(
        pairs(&b.observe(&ann(3, "c", 50, &[1.0, 0.0]), UnixMs(2))),
        [(1, 3)]
    );
    assert!(b.kept_apart(IdentityId(3), IdentityId(2)));
    assert!(b
        .observe(&ann(2, "b", 200, &[1.0, 0.0]), UnixMs(3))
        .is_empty());
    // An operator's merge wins over both, in the operator's direction.
    assert_eq!(
        pairs(&b.operator_merge(IdentityId(3), IdentityId(2), UnixMs(4))),
        [(3, 2), (1, 2)]
    );
    assert_eq!(b.root(IdentityId(1)), IdentityId(2));
    assert!(b
        .operator_merge(IdentityId(1), IdentityId(2), UnixMs(5))
        .is_empty());
}

fn joined(from: u64, into: u64, node: &str) -> IdentityJoined {
    IdentityJoined {
        from: IdentityId(from),
        into: IdentityId(into),
        node: NodeId::new(node).expect("id"),
        decided_ms: UnixMs(0),
    }
}

#[test]
fn a_node_joins_away_only_what_it_minted_and_never_what_an_operator_separated() {
    let mut b = MergeBook::new(0.9);
    // Node a minted 1, then 2 (unlike 1: the book would never join them,
    // one node minted both); node b minted 3, like 2: merged into 2.
    b.observe(&ann(1, "a", 100, &[1.0, 0.0, 0.0]), UnixMs(0));
    b.observe(&ann(2, "a", 200, &[0.0, 1.0, 0.0]), UnixMs(1));
    assert_eq!(
        pairs(&b.observe(&ann(3, "b", 300, &[0.0, 1.0, 0.0]), UnixMs(2))),
        [(3, 2)]
    );
    // Node a's gallery joined its mint 2 to 1 (a track's later views):
    // 2's cluster, 3 included, joins 1, against the one-minter rule.
    assert_eq!(
        b.node_join(&joined(2, 1, "a"), UnixMs(3)),
        Ok(vec![
            MergeAnnounce {
                from: IdentityId(2),
                into: IdentityId(1),
                decided_ms: UnixMs(3)
            },
            MergeAnnounce {
                from: IdentityId(3),
                into: IdentityId(1),
                decided_ms: UnixMs(3)
            }
        ])
    );
    assert_eq!(b.root(IdentityId(3)), IdentityId(1));
    // Said again: one already.
    assert_eq!(b.node_join(&joined(2, 1, "a"), UnixMs(4)), Ok(Vec::new()));
    // Node b may not join away a's mint, nor one nobody announced.
    b.observe(&ann(4, "a", 400, &[0.0, 0.0, 1.0]), UnixMs(5));
    assert_eq!(
        b.node_join(&joined(4, 1, "b"), UnixMs(6)),
        Err(JoinRefused::NotItsMint)
    );
    assert_eq!(
        b.node_join(&joined(99, 1, "b"), UnixMs(6)),
        Err(JoinRefused::NotItsMint)
    );
    // An operator separated 4 from 1: node a's word does not undo it.
    b.keep_apart(IdentityId(4), IdentityId(1));
    assert_eq!(
        b.node_join(&joined(4, 3, "a"), UnixMs(7)),
        Err(JoinRefused::KeptApart)
    );
    assert_ne!(b.root(IdentityId(4)), b.root(IdentityId(1)));
    // Aged out of the window: no longer known as a's mint.
    let later = UnixMs(5 + MAX_AGE_MS + 1);
    assert_eq!(
        b.node_join(&joined(4, 2, "a"), later),
        Err(JoinRefused::NotItsMint)
    );
}

#[test]
fn no_chains_when_a_root_is_merged_away() {
    let mut b = MergeBook::new(0.9);
    b.observe(&ann(1, "a", 500, &[1.0, 0.0, 0.0]), UnixMs(0));
    assert_eq!(
        pairs(&b.observe(&ann(2, "b", 600, &[1.0, 0.0, 0.0]), UnixMs(1))),
        vec![(2, 1)]
    );
    // 3 from node c was minted before 1: 1 joins 3, and 2 is re-pointed to 3.
    let m = b.observe(&ann(3, "c", 100, &[1.0, 0.01, 0.0]), UnixMs(2));
    assert_eq!(pairs(&m), vec![(1, 3), (2, 3)]);
    assert_eq!(b.root(IdentityId(2)), IdentityId(3));
    assert_eq!(b.root(IdentityId(1)), IdentityId(3));
}

#[test]
fn deterministic_and_ages_out() {
    let run = || {
        let mut b = MergeBook::new(0.8);
        let mut all = Vec::new();
        for (k, (node, e)) in [("a", [1.0, 0.0]), ("b", [1.0, 0.0]), ("c", [0.99, 0.1])]
            .iter()
            .enumerate()
        {
            all.extend(pairs(
                &b.observe(&ann(k as u64 + 1, node, 100, e), UnixMs(0)),
            ));
        }
        all
    };
    assert_eq!(run(), run());
    assert_eq!(run(), vec![(2, 1), (3, 1)]);
    let mut b = MergeBook::new(0.8);
    b.observe(&ann(1, "a", 0, &[1.0]), UnixMs(0));
    assert!(b
        .observe(&ann(2, "b", 0, &[1.0]), UnixMs(MAX_AGE_MS + 1))
        .is_empty());
    // Zero or mismatched embeddings are never merged.
    assert!(b
        .observe(&ann(3, "c", 0, &[0.0]), UnixMs(MAX_AGE_MS + 2))
        .is_empty());
    assert!(b
        .observe(&ann(4, "c", 0, &[1.0, 0.0]), UnixMs(MAX_AGE_MS + 3))
        .is_empty());
}

#[test]
fn identities_operators_separated_stay_apart_after_a_restart() {
    use vidar_config::Config;
    use vidar_store::{Correction, CorrectionAction, Record, RecordKey, WriterConfig};
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("g.db");
    let w = WriterConfig::new(&db, NodeId::new("master").expect("id"))
        .build(&())
        .expect("writer");
    let c = |action| {
        Record::Correction(Correction {
            action,
            actor: "ann".into(),
            reason: String::new(),
            decided_ms: UnixMs(0),
        })
    };
    let key = |seq| RecordKey {
        node: NodeId::new("master").expect("id"),
        seq,
    };
    let id = IdentityId;
    for r in [
        // 1: a split in force; 2: a split undone by 3; 4: a merge undone by 5;
        // 6: a merge in force.
        c(CorrectionAction::Split {
            sighting: key(90),
            from: id(1),
            into: id(2),
            scope: vidar_store::SplitScope::Track,
        }),
        c(CorrectionAction::Split {
            sighting: key(91),
            from: id(3),
            into: id(4),
            scope: vidar_store::SplitScope::Sighting,
        }),
        c(CorrectionAction::Revert { correction: key(2) }),
        c(CorrectionAction::Merge {
            from: id(5),
            into: id(6),
        }),
        c(CorrectionAction::Revert { correction: key(4) }),
        c(CorrectionAction::Merge {
            from: id(7),
            into: id(8),
        }),
    ] {
        w.write(r).expect("write");
    }
    w.shutdown().expect("shutdown");
    let reader = vidar_store::Reader::open(&db).expect("reader");
    let mut pairs = apart_pairs(&reader).expect("read");
    pairs.sort();
    assert_eq!(pairs, [(id(1), id(2)), (id(5), id(6))]);
}

#[test]
fn the_window_counts_what_it_holds_and_empties_with_age() {
    let mut b = MergeBook::new(0.99);
    assert_eq!(b.window(), (0, 0));
    let e: Vec<f32> = (0..512).map(|i| (i as f32).sin()).collect();
    for i in 0..10 {
        let mut v = e.clone();
        v[i] += 5.0; // ten different people
        b.observe(&ann(i as u64 + 1, "a", i as i64 * 10_000, &v), UnixMs(0));
    }
    let (held, bytes) = b.window();
    assert_eq!(held, 10);
    assert!(bytes >= 10 * 512 * 4, "{bytes}");
    assert!(bytes < 10 * 512 * 4 * 2, "{bytes}");
    // An hour later every one of them has aged out.
    b.observe(&ann(99, "a", 0, &e), UnixMs(MAX_AGE_MS + 1));
    assert_eq!(b.window().0, 1);
}

/// The first-seen times and minting nodes stay bounded by the window and
/// the merged map: an identity merged away, aged out of the window, then
/// dropped from the merged map is forgotten (it stayed forever before).
#[test]
fn what_the_book_remembers_stays_bounded_over_many_merges() {
    let (window, merged) = (4, 8);
    let mut b = MergeBook::with_limits(0.9, window, merged);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut merges = 0;
    for k in 0..2000u64 {
        // One person seen by node a, then by node b: one merge per pair.
        let e: Vec<f32> = (0..32).map(|_| next()).collect();
        let t = 10_000 * k as i64;
        b.observe(&ann(2 * k + 1, "a", t, &e), UnixMs(t));
        merges += b
            .observe(&ann(2 * k + 2, "b", t + 100, &e), UnixMs(t + 100))
            .len();
    }
    assert!(merges >= 1900, "pairs merged: {merges}");
    let (first_seen, minted_by) = b.held();
    let bound = 2 * (window + 1 + 2 * merged) + 64;
    assert!(
        first_seen <= bound && minted_by <= bound,
        "first_seen {first_seen}, minted_by {minted_by} (bound {bound}) after 4000 identities"
    );
}
