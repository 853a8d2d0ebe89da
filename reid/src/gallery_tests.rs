//! Tests of the gallery: matching, constraints, bounds, model tags, properties.

use super::*;

fn cam(s: &str) -> CameraId {
    CameraId::new(s).expect("camera id")
}

fn emb(v: &[f32]) -> Embedding {
    Embedding::normalized(v)
}

fn small() -> GalleryConfig {
    GalleryConfig {
        match_threshold: 0.9,
        confident_threshold: 0.97,
        ambiguity_margin: 0.05,
        max_identities: 3,
        max_age_s: 10,
        update_weight: 0.5,
        max_prototypes: 2,
        prototype_merge: 0.99,
        transit_min_samples: 2,
        transit_slack_ms: 100,
        node_prefix: 7,
        crowd_step: 0.0,
        crowd_reference: 12,
        overlap_on_confident: false,
        transit_weight: 0.0,
        transit_horizon_s: 60,
        same_camera_margin: 0.0,
        unseen_route_after: 0,
    }
}

fn track<'a>(
    e: &'a Embedding,
    c: &'a CameraId,
    track: u64,
    from: UnixMs,
    to: UnixMs,
) -> TrackQuery<'a> {
    TrackQuery {
        embedding: e,
        camera: c,
        track: Some(TrackId(track)),
        first_ms: from,
        last_ms: to,
    }
}

#[test]
fn matches_same_person_and_mints_for_new_ones() {
    let mut g = Gallery::new(small()).expect("gallery");
    let a = g
        .assign(&emb(&[1.0, 0.0, 0.0]), &cam("a"), UnixMs(0))
        .expect("assign");
    let Assignment::New {
        id: first,
        closest: None,
    } = a
    else {
        panic!("{a:?}")
    };
    assert_eq!(first.0 >> 48, 7, "node prefix in the id");
    let b = g
        .assign(&emb(&[0.99, 0.1, 0.0]), &cam("b"), UnixMs(100))
        .expect("assign");
    assert!(
        matches!(b, Assignment::Matched { id, similarity } if id == first && similarity > 0.99)
    );
    assert_eq!(
        g.get(first).map(|i| (i.sightings, i.camera.as_str())),
        Some((2, "b"))
    );
    let c = g
        .assign(&emb(&[0.0, 1.0, 0.0]), &cam("a"), UnixMs(200))
        .expect("assign");
    assert!(matches!(c, Assignment::New { closest: Some(s), .. } if s < 0.2));
    assert_ne!(c.id(), first);
    assert!(
        g.assign(&emb(&[1.0, 0.0]), &cam("a"), UnixMs(0)).is_err(),
        "dimension mismatch"
    );
}

#[test]
fn ambiguous_matches_mint_a_new_identity() {
    let mut g = Gallery::new(small()).expect("gallery");
    // cos(x, y) ~0.83: two people.
    let x = g
        .assign(&emb(&[1.0, 0.3, 0.0]), &cam("a"), UnixMs(0))
        .expect("assign")
        .id();
    let y = g
        .assign(&emb(&[1.0, -0.3, 0.0]), &cam("a"), UnixMs(0))
        .expect("assign")
        .id();
    assert_ne!(x, y);
    // ~0.958 to both: above threshold, but too close to call.
    let z = g
        .assign(&emb(&[1.0, 0.0, 0.0]), &cam("a"), UnixMs(0))
        .expect("assign");
    assert!(matches!(z, Assignment::New { .. }), "{z:?}");
}

#[test]
fn one_person_minted_twice_does_not_make_a_match_ambiguous() {
    let mut g = Gallery::new(small()).expect("gallery");
    let (a, b) = (cam("a"), cam("b"));
    // One person's track broken in two while the first still ran: the
    // second could not take the first's identity (concurrent), so the same
    // person holds two identities, their views confidently one (cos 0.999).
    let (v1, v2) = (emb(&[1.0, 0.05, 0.0]), emb(&[1.0, 0.1, 0.0]));
    let first = g
        .assign_track(&track(&v1, &a, 1, UnixMs(0), UnixMs(1_000)))
        .expect("ok")
        .id();
    let second = g
        .assign_track(&track(&v2, &a, 2, UnixMs(900), UnixMs(2_000)))
        .expect("ok")
        .id();
    assert_ne!(first, second);
    // Seen on the other camera later: close to both, and not ambiguous.
    let q = emb(&[1.0, 0.07, 0.0]);
    let m = g
        .assign_track(&track(&q, &b, 3, UnixMs(9_000), UnixMs(9_500)))
        .expect("ok");
    assert!(matches!(m, Assignment::Matched { .. }), "{m:?}");
    // Two different people that close stay ambiguous (the test above).
}

#[test]
fn two_tracks_on_screen_together_never_share_an_identity() {
    let mut g = Gallery::new(small()).expect("gallery");
    let c = cam("a");
    let e = emb(&[1.0, 0.0, 0.0]);
    let first = g
        .assign_track(&track(&e, &c, 1, UnixMs(0), UnixMs(1000)))
        .expect("assign");
    // The same look, another track on the same camera at the same time: a second person.
    let twin = emb(&[1.0, 0.01, 0.0]);
    let second = g
        .assign_track(&track(&twin, &c, 2, UnixMs(500), UnixMs(1500)))
        .expect("assign");
    assert!(matches!(second, Assignment::New { .. }), "{second:?}");
    assert_ne!(first.id(), second.id());
    assert_eq!(
        g.exclusion(first.id(), &track(&twin, &c, 2, UnixMs(500), UnixMs(1500))),
        Some(Excluded::Concurrent)
    );
    // Track 1 goes on until 3 s (observe extends its appearance) ...
    g.observe(first.id(), &track(&e, &c, 1, UnixMs(0), UnixMs(3000)));
    // ... so a third track at 2-2.5 s cannot take it either; the twin identity is
    // free again once track 2 ended at 1.5 s.
    let third = g
        .assign_track(&track(&e, &c, 3, UnixMs(2000), UnixMs(2500)))
        .expect("assign");
    assert_ne!(third.id(), first.id());
    // After track 1 ended, a later track may have its identity again
    // (here three identities share one look, so the margin rule mints).
    assert_eq!(
        g.exclusion(first.id(), &track(&e, &c, 4, UnixMs(3500), UnixMs(4000))),
        None
    );
    assert_eq!(
        g.exclusion(first.id(), &track(&e, &c, 4, UnixMs(2900), UnixMs(4000))),
        Some(Excluded::Concurrent)
    );
}

#[test]
fn impossible_transits_are_refused_and_confident_ones_learned() {
    let mut cfg = small();
    cfg.max_identities = 100;
    let mut g = Gallery::new(cfg).expect("gallery");
    let (a, b) = (cam("a"), cam("b"));
    let e = emb(&[1.0, 0.0, 0.0, 0.0]);
    let id = g
        .assign_track(&track(&e, &a, 1, UnixMs(0), UnixMs(1000)))
        .expect("assign")
        .id();
    // Similar (0.95 < confident 0.97) on camera b while still on camera a: refused.
    let near = emb(&[1.0, 0.33, 0.0, 0.0]);
    assert!(near.cosine(&e) > 0.9 && near.cosine(&e) < 0.97);
    let q = track(&near, &b, 9, UnixMs(500), UnixMs(800));
    assert_eq!(g.exclusion(id, &q), Some(Excluded::Elsewhere));
    assert_ne!(g.assign_track(&q).expect("assign").id(), id);
    // Confident matches teach the a -> b transit: 5 s, then 6 s.
    let mut t = 10_000i64;
    let mut learned = Vec::new();
    for (k, gap) in [5000i64, 6000].iter().enumerate() {
        let e_k = emb(&[0.0, 0.0, 1.0 + k as f32, 1.0]);
        let (person, again) = walk(&mut g, (&a, &b), (&e_k, &e_k), 100 + k as u64, t, *gap);
        assert_eq!(again.id(), person, "confident match across cameras");
        learned.push(person);
        t += 20_000;
    }
    assert_eq!(g.transit(&a, &b), Some((5000, 2)));
    // Now a non-confident match 1 s after leaving a is too soon for a -> b.
    let p = emb(&[0.0, 1.0, 0.0, 0.0]);
    let pid = g
        .assign_track(&track(&p, &a, 300, UnixMs(100_000), UnixMs(101_000)))
        .expect("assign")
        .id();
    let p_near = emb(&[0.0, 1.0, 0.33, 0.0]);
    let soon = track(&p_near, &b, 301, UnixMs(102_000), UnixMs(103_000));
    assert_eq!(g.exclusion(pid, &soon), Some(Excluded::TooSoon));
    // ... but 4.95 s later is within the slack of the learned minimum.
    let ok = track(&p_near, &b, 302, UnixMs(105_950), UnixMs(106_500));
    assert_eq!(g.exclusion(pid, &ok), None);
    assert_eq!(g.assign_track(&ok).expect("assign").id(), pid);
}

/// Two cameras whose views overlap: one person on both at once. A single
/// match, however confident, does not give one identity to two tracks on
/// screen at once (a false one would merge two people); it witnesses the
/// overlap, and once `transit_min_samples` witnesses make up at least half
/// of what the pair taught, people on both at once are matched.
#[test]
fn overlapping_views_are_learned_from_witnesses_never_from_one_match() {
    let mut g = Gallery::new(small()).expect("gallery"); // transit_min_samples 2
    let (a, b) = (cam("a"), cam("b"));
    let looks = [
        emb(&[1.0, 0.0, 0.0, 0.0]),
        emb(&[0.0, 1.0, 0.0, 0.0]),
        emb(&[0.0, 0.0, 1.0, 0.0]),
    ];
    let mut t = 0i64;
    let mut outcome = Vec::new();
    for (k, e) in looks.iter().enumerate() {
        let on_a = g
            .assign_track(&track(e, &a, 10 + k as u64, UnixMs(t), OPEN))
            .expect("assign")
            .id();
        // The same look on b while still on a (similarity 1.0 > confident 0.97).
        let on_b = g
            .assign_track(&track(
                e,
                &b,
                20 + k as u64,
                UnixMs(t + 500),
                UnixMs(t + 900),
            ))
            .expect("assign")
            .id();
        outcome.push((on_a == on_b, g.overlap_known(&a, &b)));
        t += 10_000;
    }
    assert_eq!(
        outcome,
        [(false, false), (false, true), (true, true)],
        "refused twice (each a witness), matched once the overlap is known"
    );

    // A pair whose views do not overlap: true transits outnumber a false
    // witness, which then cannot open it.
    let (c, d) = (cam("c"), cam("d"));
    let mut t = 100_000i64;
    for k in 0..3u64 {
        let e = emb(&[1.0, 1.0, k as f32, 0.0]);
        let first = g
            .assign_track(&track(&e, &c, 30 + k, UnixMs(t), UnixMs(t + 1000)))
            .expect("assign")
            .id();
        let later = g
            .assign_track(&track(&e, &d, 40 + k, UnixMs(t + 6000), UnixMs(t + 7000)))
            .expect("assign")
            .id();
        assert_eq!(first, later, "confident transit c -> d");
        t += 20_000;
    }
    let e = emb(&[1.0, 1.0, 0.0, 5.0]);
    for k in 0..2u64 {
        let on_c = g
            .assign_track(&track(&e, &c, 50 + k, UnixMs(t), OPEN))
            .expect("assign")
            .id();
        let on_d = g
            .assign_track(&track(&e, &d, 60 + k, UnixMs(t + 100), UnixMs(t + 200)))
            .expect("assign")
            .id();
        assert_ne!(
            on_c, on_d,
            "two witnesses against three transits: still refused"
        );
        g.close_track(on_c, &c, TrackId(50 + k), UnixMs(t + 300));
        t += 20_000;
    }
    assert!(!g.overlap_known(&c, &d));
    assert_eq!(g.transit(&c, &d), Some((5000, 3)));

    // The old rule, by choice: one confident match joins them at once.
    let mut old = Gallery::new(GalleryConfig {
        overlap_on_confident: true,
        ..small()
    })
    .expect("gallery");
    let e = emb(&[1.0, 0.0, 0.0, 0.0]);
    let on_a = old
        .assign_track(&track(&e, &a, 1, UnixMs(0), OPEN))
        .expect("assign")
        .id();
    let on_b = old
        .assign_track(&track(&e, &b, 2, UnixMs(500), UnixMs(900)))
        .expect("assign")
        .id();
    assert_eq!(on_a, on_b);
}

#[test]
fn prototypes_are_bounded_and_keep_distinct_views() {
    let mut g = Gallery::new(small()).expect("gallery");
    let c = cam("a");
    let front = emb(&[1.0, 0.0, 0.0, 0.0]);
    let id = g
        .assign_track(&track(&front, &c, 1, UnixMs(0), UnixMs(10)))
        .expect("assign")
        .id();
    // Views close enough to match (> 0.9) but distinct (< prototype_merge 0.99).
    for (k, v) in [
        [1.0, 0.3, 0.0, 0.0],
        [1.0, 0.0, 0.3, 0.0],
        [1.0, 0.0, 0.0, 0.3],
    ]
    .iter()
    .enumerate()
    {
        let e = emb(v);
        let t = 1000 * (k as i64 + 1);
        let got = g
            .assign_track(&track(&e, &c, 2 + k as u64, UnixMs(t), UnixMs(t + 10)))
            .expect("assign");
        assert_eq!(got.id(), id);
    }
    let ident = g.get(id).expect("identity");
    assert_eq!(ident.prototypes.len(), 2, "max_prototypes");
    assert!(
        (ident
            .embedding
            .as_slice()
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            - 1.0)
            .abs()
            < 1e-4
    );
    assert!(ident.appearances.len() <= MAX_APPEARANCES);
}

#[test]
fn a_new_model_retires_the_old_vectors_and_keeps_transits_and_ids() {
    let mut g = Gallery::with_model(small(), "osnet@aaaa").expect("gallery");
    let (a, b) = (cam("a"), cam("b"));
    let e = emb(&[1.0, 0.0, 0.0]);
    let id = g.assign(&e, &a, UnixMs(0)).expect("assign").id();
    // Two transits a -> b teach the pair.
    for k in 0..2u64 {
        let t = 1_000 + k as i64 * 10_000;
        g.assign_track(&track(&e, &b, k + 10, UnixMs(t + 500), UnixMs(t + 900)))
            .expect("assign");
        g.assign_track(&track(&e, &a, k + 20, UnixMs(t + 5_000), UnixMs(t + 5_100)))
            .expect("assign");
    }
    let transits = g.transit(&a, &b);
    assert!(transits.is_some(), "the pair learned its transits");
    assert!(
        g.remodel("osnet@aaaa") == 0 && g.len() == 1,
        "same tag: nothing changes"
    );
    assert_eq!(g.remodel("osnet@bbbb"), 1);
    assert!(g.is_empty() && g.get(id).is_none());
    assert_eq!(g.model(), "osnet@bbbb");
    assert_eq!(g.transit(&a, &b), transits, "transits are not appearance");
    // The old model's vectors are refused; the same look is a new person
    // under a new id; a vector of another size is fine for a new model.
    let old = Identity::single(
        IdentityId(99),
        e.clone(),
        "osnet@aaaa",
        a.clone(),
        UnixMs(5),
        Origin::Remote,
    );
    assert!(matches!(
        g.upsert_remote(old),
        Err(ReidError::ModelMismatch { .. })
    ));
    let next = g
        .assign(&emb(&[1.0, 0.0, 0.0, 0.0]), &a, UnixMs(60_000))
        .expect("assign");
    assert!(
        matches!(next, Assignment::New { closest: None, .. }),
        "{next:?}"
    );
    assert!(next.id().0 > id.0, "ids are never reused");
}

#[test]
fn another_models_vectors_are_never_compared() {
    let mut g = Gallery::with_model(small(), "osnet@5a73fd97").expect("gallery");
    let c = cam("a");
    let e = emb(&[1.0, 0.0, 0.0]);
    let id = g.assign(&e, &c, UnixMs(0)).expect("assign").id();
    assert_eq!(g.get(id).map(|i| i.model.as_str()), Some("osnet@5a73fd97"));
    let foreign = Identity::single(
        IdentityId(99),
        e.clone(),
        "mobilenet@672d8c82",
        c.clone(),
        UnixMs(5),
        Origin::Remote,
    );
    assert!(matches!(
        g.upsert_remote(foreign.clone()),
        Err(ReidError::ModelMismatch { .. })
    ));
    assert!(matches!(
        g.restore(foreign),
        Err(ReidError::ModelMismatch { .. })
    ));
    assert!(g.get(IdentityId(99)).is_none());
}

#[test]
fn bounded_size_evicts_least_recently_seen_and_ageing_expires() {
    let mut g = Gallery::new(small()).expect("gallery");
    let ids: Vec<_> = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        .iter()
        .enumerate()
        .map(|(t, v)| {
            g.assign(&emb(v), &cam("a"), UnixMs(t as i64 * 1000))
                .expect("assign")
                .id()
        })
        .collect();
    // See the first again so the second is the oldest.
    g.assign(&emb(&[1.0, 0.0, 0.0]), &cam("a"), UnixMs(5000))
        .expect("assign");
    let fourth = g
        .assign(&emb(&[1.0, 1.0, 1.0]), &cam("a"), UnixMs(6000))
        .expect("assign")
        .id();
    assert_eq!(g.len(), 3);
    assert!(g.get(ids[1]).is_none() && g.get(ids[0]).is_some() && g.get(fourth).is_some());
    // max_age 10 s: at 14.5 s the third (seen at 2 s) is too old.
    assert_eq!(g.expire(UnixMs(14_500)), 1);
    assert!(g.get(ids[2]).is_none() && g.get(ids[0]).is_some());
    assert_eq!(g.expire(UnixMs(100_000)), 2);
    assert!(g.is_empty());
}

/// A person on screen for longer than `max_age_s` keeps their identity:
/// only identities unseen that long age out.
#[test]
fn an_identity_on_screen_does_not_age_out() {
    let mut g = Gallery::new(small()).expect("gallery");
    let (a, e) = (cam("a"), emb(&[1.0, 0.0, 0.0]));
    let open = g
        .assign_track(&track(&e, &a, 7, UnixMs(1_000), OPEN))
        .expect("assign")
        .id();
    let gone = g
        .assign(&emb(&[0.0, 1.0, 0.0]), &a, UnixMs(1_000))
        .expect("assign")
        .id();
    // max_age 10 s; 60 s later only the one seen once is dropped.
    assert_eq!(g.expire(UnixMs(61_000)), 1);
    assert!(g.get(open).is_some() && g.get(gone).is_none());
    // Once its track closes, it ages like any other.
    g.close_track(open, &a, TrackId(7), UnixMs(61_000));
    assert_eq!(g.expire(UnixMs(70_000)), 0);
    assert_eq!(g.expire(UnixMs(72_000)), 1);
    assert!(g.is_empty());
}

#[test]
fn an_operators_split_moves_the_person_off_and_the_gallery_learns_them() {
    let mut g = Gallery::new(GalleryConfig {
        max_prototypes: 4,
        ..small()
    })
    .expect("gallery");
    let (c1, c2) = (cam("c1"), cam("c2"));
    let (ann, bob) = (emb(&[1.0, 0.0, 0.0]), emb(&[0.0, 1.0, 0.0]));
    let ann_id = g
        .assign_track(&track(&ann, &c1, 1, UnixMs(0), UnixMs(100)))
        .expect("ok")
        .id();
    // Bob was wrongly given Ann's identity (say, through a loose threshold):
    // his view is one of her prototypes now, and his track her appearance.
    g.observe(ann_id, &track(&bob, &c2, 2, UnixMs(500), UnixMs(600)));
    g.refine(ann_id, &bob, &c2).expect("same model");
    assert_eq!(g.get(ann_id).map(|i| i.prototypes.len()), Some(2));
    // Before the split, Bob's next track matches Ann.
    assert_eq!(
        g.best_match(&track(&bob, &c1, 3, UnixMs(900), UnixMs(950)))
            .map(|m| m.0),
        Some(ann_id)
    );

    let bob_id = IdentityId(42);
    let seen = Appearance {
        camera: c2.clone(),
        track: Some(TrackId(2)),
        first_ms: UnixMs(500),
        last_ms: UnixMs(600),
    };
    assert!(g.split_off(ann_id, bob_id, &seen, Some(&bob)).expect("ok"));
    let a = g.get(ann_id).expect("Ann stays");
    assert_eq!(a.prototypes.len(), 1, "Bob's view left Ann");
    assert!(a.appearances.iter().all(|x| x.track != Some(TrackId(2))));
    assert!(a.embedding.cosine(&ann) > 0.99);
    // Bob is known now: his next track matches him, not Ann.
    let m = g
        .assign_track(&track(&bob, &c1, 3, UnixMs(900), UnixMs(950)))
        .expect("ok");
    assert_eq!(m.id(), bob_id);
    let ann_again = g
        .assign_track(&track(&ann, &c1, 4, UnixMs(2_000), UnixMs(2_100)))
        .expect("ok");
    assert_eq!(ann_again.id(), ann_id);
    // A split never leaves an identity without a view.
    let only = Appearance {
        track: Some(TrackId(4)),
        ..seen.clone()
    };
    assert!(!g.split_off(ann_id, bob_id, &only, Some(&ann)).expect("ok"));
    assert_eq!(g.get(ann_id).map(|i| i.prototypes.len()), Some(1));
    // A view of another size is refused before anything changes.
    let before = g.get(ann_id).cloned();
    assert!(g
        .split_off(ann_id, IdentityId(43), &seen, Some(&emb(&[1.0, 0.0])))
        .is_err());
    assert_eq!(g.get(ann_id).cloned(), before);
    assert!(g.get(IdentityId(43)).is_none());
}

#[test]
fn remote_replicas_and_merges() {
    let mut g = Gallery::new(small()).expect("gallery");
    let local = g
        .assign(&emb(&[1.0, 0.0, 0.0]), &cam("a"), UnixMs(0))
        .expect("assign")
        .id();
    let mut remote = Identity::single(
        IdentityId(3 << 48 | 1),
        emb(&[0.0, 1.0, 0.0]),
        "",
        cam("b"),
        UnixMs(10),
        Origin::Local,
    );
    remote.last_seen_ms = UnixMs(20);
    remote.appearances[0].last_ms = UnixMs(20);
    remote.sightings = 4;
    g.upsert_remote(remote.clone()).expect("upsert");
    assert_eq!(g.get(remote.id).map(|i| i.origin), Some(Origin::Remote));
    // A sighting on this node of the remote person keeps the remote id.
    let m = g
        .assign(&emb(&[0.05, 1.0, 0.0]), &cam("a"), UnixMs(30))
        .expect("assign");
    assert_eq!(m.id(), remote.id);
    // An older replica does not overwrite newer local knowledge.
    g.upsert_remote(Identity {
        last_seen_ms: UnixMs(5),
        ..remote.clone()
    })
    .expect("upsert");
    assert_eq!(g.get(remote.id).map(|i| i.last_seen_ms), Some(UnixMs(30)));
    assert!(g.merge(local, remote.id));
    assert!(g.get(local).is_none());
    let merged = g.get(remote.id).expect("merged");
    assert_eq!(merged.sightings, 6);
    assert_eq!(merged.first_seen_ms, UnixMs(0));
    assert!(merged.prototypes.len() <= 2);
    assert!(!g.merge(local, remote.id), "already merged");
}

#[test]
fn an_undone_merge_takes_the_person_apart_again() {
    let mut g = Gallery::new(small()).expect("gallery");
    let (ann, bob) = (emb(&[1.0, 0.0, 0.0]), emb(&[0.0, 1.0, 0.0]));
    let ann_id = g.assign(&ann, &cam("a"), UnixMs(0)).expect("assign").id();
    let bob_id = g.assign(&bob, &cam("b"), UnixMs(10)).expect("assign").id();
    assert_ne!(ann_id, bob_id);
    let bob_view = g.get(bob_id).cloned().expect("Bob");
    // The wrong merge: Bob's views join Ann, and Bob matches Ann now.
    assert!(g.merge(bob_id, ann_id));
    let m = g.assign(&bob, &cam("b"), UnixMs(20)).expect("assign");
    assert_eq!(m.id(), ann_id);
    // Undone: Bob is back, Ann lost his views, each matches their own.
    assert!(g
        .keep_apart(bob_id, ann_id, Some(bob_view.clone()))
        .expect("ok"));
    assert!(g.get(ann_id).expect("Ann").embedding.cosine(&ann) > 0.99);
    assert_eq!(
        g.assign(&bob, &cam("b"), UnixMs(30)).expect("assign").id(),
        bob_id
    );
    assert_eq!(
        g.assign(&ann, &cam("a"), UnixMs(40)).expect("assign").id(),
        ann_id
    );
    // Once only: Bob is known, so a second undo changes nothing.
    let before = g.get(ann_id).cloned();
    assert!(!g
        .keep_apart(bob_id, ann_id, Some(bob_view.clone()))
        .expect("ok"));
    assert_eq!(g.get(ann_id).cloned(), before);
    // Without a view, or with another person's, nothing moves.
    assert!(!g.keep_apart(IdentityId(77), ann_id, None).expect("ok"));
    assert!(!g
        .keep_apart(IdentityId(77), ann_id, Some(bob_view))
        .expect("ok"));
    // A view of another size is refused.
    let odd = Identity::single(
        IdentityId(78),
        emb(&[1.0, 0.0]),
        "",
        cam("a"),
        UnixMs(0),
        Origin::Remote,
    );
    assert!(g.keep_apart(IdentityId(78), ann_id, Some(odd)).is_err());
    assert!(g.get(IdentityId(78)).is_none());
}

#[test]
fn invalid_config_lists_every_problem() {
    let err = Gallery::new(GalleryConfig {
        match_threshold: 2.0,
        max_identities: 0,
        update_weight: -1.0,
        max_prototypes: 0,
        ..GalleryConfig::default()
    })
    .expect_err("invalid")
    .to_string();
    assert!(
        err.contains("match_threshold")
            && err.contains("max_identities")
            && err.contains("update_weight")
            && err.contains("max_prototypes")
    );
    let err = Gallery::new(GalleryConfig {
        match_threshold: 0.8,
        confident_threshold: 0.7,
        ..GalleryConfig::default()
    })
    .expect_err("invalid")
    .to_string();
    assert!(err.contains("confident_threshold"), "{err}");
}

#[test]
fn resumes_minting_after_a_stored_id() {
    let cfg = GalleryConfig {
        node_prefix: 3,
        ..GalleryConfig::default()
    };
    let mut g = Gallery::new(cfg).expect("gallery");
    let (lo, hi) = g.id_range();
    assert_eq!(lo.0 >> 48, 3);
    assert_eq!(hi.0 >> 48, 3);
    g.resume_after(IdentityId(lo.0 + 41));
    g.resume_after(IdentityId(5)); // another node's id: ignored
    let e = Embedding::normalized(&[1.0, 0.0, 0.0]);
    let cam = CameraId::new("c").expect("cam");
    let id = g.assign(&e, &cam, UnixMs(0)).expect("assign").id();
    assert_eq!(id, IdentityId(lo.0 + 42));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A track: look (one of a few people), camera, start, length.
        Track(usize, usize, i64, i64),
        /// A replica from another node, possibly of another model.
        Remote(usize, usize, i64, bool),
        Merge(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..4, 0usize..3, 0i64..1_000, 0i64..3_000)
                .prop_map(|(p, c, t, d)| Op::Track(p, c, t, d)),
            1 => (0usize..4, 0usize..3, 0i64..20_000, any::<bool>())
                .prop_map(|(p, c, t, m)| Op::Remote(p, c, t, m)),
            1 => (0usize..8, 0usize..8).prop_map(|(a, b)| Op::Merge(a, b)),
        ]
    }

    fn look(p: usize, jitter: i64) -> Embedding {
        let mut v = [0.05f32; 6];
        v[p] = 1.0;
        v[5] = (jitter % 7) as f32 * 0.02;
        Embedding::normalized(&v)
    }

    proptest! {
        /// Whatever happens, two tracks that overlap in time on one camera
        /// never end up with the same identity from `assign_track`, and
        /// no identity of another model enters the gallery.
        #[test]
        fn no_concurrent_sharing_and_no_model_mixing(ops in proptest::collection::vec(op(), 1..60)) {
            let cfg = GalleryConfig { max_identities: 50, ..GalleryConfig::default() };
            let mut g = Gallery::with_model(cfg, "m1").expect("gallery");
            let cams = [CameraId::new("c0").expect("c"), CameraId::new("c1").expect("c"), CameraId::new("c2").expect("c")];
            // (camera, start, end, identity) of every decided track.
            let mut decided: Vec<(usize, i64, i64, IdentityId)> = Vec::new();
            let mut ids: Vec<IdentityId> = Vec::new();
            for (n, o) in ops.iter().enumerate() {
                match *o {
                    Op::Track(p, c, t, d) => {
                        // Tracks are decided roughly in time order, as on a node.
                        let t = n as i64 * 500 + t;
                        let e = look(p, t);
                        let q = TrackQuery { embedding: &e, camera: &cams[c], track: Some(TrackId(n as u64 + 1)), first_ms: UnixMs(t), last_ms: UnixMs(t + d) };
                        let id = g.assign_track(&q).expect("assign").id();
                        decided.push((c, t, t + d, id));
                        ids.push(id);
                    }
                    Op::Remote(p, c, t, other_model) => {
                        let model = if other_model { "m2" } else { "m1" };
                        let ident = Identity::single(IdentityId(1 << 60 | n as u64), look(p, t), model, cams[c].clone(), UnixMs(t), Origin::Remote);
                        let r = g.upsert_remote(ident);
                        prop_assert_eq!(r.is_ok(), !other_model);
                    }
                    Op::Merge(a, b) => {
                        if let (Some(&x), Some(&y)) = (ids.get(a), ids.get(b)) {
                            g.merge(x, y);
                        }
                    }
                }
                prop_assert!(g.iter().all(|i| i.model == "m1"));
                prop_assert!(g.iter().all(|i| !i.prototypes.is_empty() && i.prototypes.len() <= g.config().max_prototypes));
            }
            // Merges are the master's decisions and may join anything; check
            // the gallery's own decisions only when no merge happened.
            if !ops.iter().any(|o| matches!(o, Op::Merge(..))) {
                for (i, a) in decided.iter().enumerate() {
                    for b in &decided[i + 1..] {
                        if a.0 == b.0 && a.1 <= b.2 && b.1 <= a.2 {
                            prop_assert_ne!(a.3, b.3, "tracks {:?} and {:?} overlap on one camera", a, b);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_threshold_rises_with_the_crowd_a_track_is_compared_with() {
    let cfg = GalleryConfig {
        match_threshold: 0.6,
        confident_threshold: 0.9,
        crowd_step: 0.1,
        crowd_reference: 10,
        max_identities: 1000,
        // One camera throughout: judged on the cross-camera scale here.
        same_camera_margin: 0.0,
        ..GalleryConfig::default()
    };
    let g = Gallery::new(cfg.clone()).expect("gallery");
    assert_eq!(g.threshold(0), 0.6);
    assert_eq!(g.threshold(10), 0.6);
    assert!(
        (g.threshold(100) - 0.7).abs() < 1e-6,
        "{}",
        g.threshold(100)
    );
    assert_eq!(
        g.threshold(1_000_000),
        0.9,
        "capped at the confident threshold"
    );
    let fixed = Gallery::new(GalleryConfig {
        crowd_step: 0.0,
        ..cfg.clone()
    })
    .expect("gallery");
    assert_eq!(fixed.threshold(1_000_000), 0.6);

    // 100 people, each on an axis of their own; a track whose similarity
    // to person 0 is 0.65 joins them in a crowd of 10 but not of 100.
    let dim = 128;
    let axis = |k: usize, w: f32| {
        let mut v = vec![0.0; dim];
        v[k] = 1.0;
        v[127] = w;
        emb(&v)
    };
    let c = cam("c");
    let decide = |crowd: usize| {
        let mut g = Gallery::new(cfg.clone()).expect("gallery");
        for k in 0..crowd {
            let e = axis(k, 0.0);
            g.assign_track(&track(
                &e,
                &c,
                k as u64 + 1,
                UnixMs(k as i64 * 10),
                UnixMs(k as i64 * 10 + 5),
            ))
            .expect("assign");
        }
        assert_eq!(g.len(), crowd);
        // cos = 1 / sqrt(1 + w^2) = 0.65
        let w = (1.0f32 / (0.65 * 0.65) - 1.0).sqrt();
        let q = axis(0, w);
        let a = g
            .assign_track(&track(&q, &c, 999, UnixMs(100_000), UnixMs(100_100)))
            .expect("assign");
        matches!(a, Assignment::Matched { .. })
    };
    assert!(decide(10), "a crowd of 10 keeps the base threshold");
    assert!(!decide(100), "a crowd of 100 asks for 0.7");
}

/// A gallery that learned the a -> b transit (7, 8 and 9 s, three confident
/// people), then saw P leave a at 101 s and Q leave a at 61 s.
fn taught(weight: f32) -> (Gallery, IdentityId, IdentityId) {
    let cfg = prior_config(weight);
    let mut g = Gallery::new(cfg).expect("gallery");
    let (a, b) = (cam("a"), cam("b"));
    for (id, again) in three_walk_a_to_b(&mut g, (&a, &b), 0.0) {
        assert_eq!(again.id(), id, "confident match teaches a -> b");
    }
    let p = seen(&mut g, &axis(0, 0.0), &a, 1, 100_000);
    let q = seen(&mut g, &axis(1, 0.0), &a, 2, 60_000);
    (g, p, q)
}

/// Unit vector along `k` with `w` on the last axis (16 dimensions).
fn axis(k: usize, w: f32) -> Embedding {
    let mut v = vec![0.0; 16];
    v[k] = 1.0;
    v[15] = w;
    emb(&v)
}

/// A track on camera `b` that began at 109 s (8 s after P left a).
fn at_109<'a>(e: &'a Embedding, b: &'a CameraId) -> TrackQuery<'a> {
    track(e, b, 99, UnixMs(109_000), OPEN)
}

#[test]
fn a_learned_transit_time_tips_a_close_call_and_an_unlikely_one_needs_more() {
    let b = cam("b");
    // Equally like P and Q (0.66 each), on b 8 s after P left a: P arrives
    // when the learned transits say people do, Q 48 s after leaving.
    let mut v = vec![0.0; 16];
    (v[0], v[1], v[15]) = (1.0, 1.0, 0.544);
    let both = emb(&v);
    let (g, p, q) = taught(0.1);
    let (pi, qi) = (g.get(p).expect("p"), g.get(q).expect("q"));
    let similarity = pi.similarity(&both);
    assert!((similarity - 0.66).abs() < 0.005 && (qi.similarity(&both) - 0.66).abs() < 0.005);
    let near = |x: f32, y: f32| (x - y).abs() < 1e-6;
    assert!(
        near(g.transit_prior(pi, &at_109(&both, &b)), 0.1),
        "tenfold likelier, capped"
    );
    assert!(
        near(g.transit_prior(qi, &at_109(&both, &b)), -0.05),
        "less likely, capped at half the bonus"
    );
    let (mut g, ..) = taught(0.1);
    assert_eq!(
        g.assign_track(&at_109(&both, &b)).expect("assign"),
        Assignment::Matched { id: p, similarity },
        "the prior tips a tie; the similarity reported is the appearance's"
    );
    let (mut off, ..) = taught(0.0);
    let tie = off.assign_track(&at_109(&both, &b)).expect("assign");
    assert!(
        matches!(tie, Assignment::New { .. }),
        "without the prior the tie mints: {tie:?}"
    );

    // Like Q alone (0.64, over the 0.6 threshold), but 48 s after Q left:
    // less likely, so 0.64 is not enough.
    let like_q = axis(1, 1.2);
    let (mut g, _, q) = taught(0.1);
    assert!((g.get(q).expect("q").similarity(&like_q) - 0.64).abs() < 0.005);
    let late = g.assign_track(&at_109(&like_q, &b)).expect("assign");
    assert!(matches!(late, Assignment::New { .. }), "{late:?}");
    let (mut off, _, q) = taught(0.0);
    assert_eq!(
        off.assign_track(&at_109(&like_q, &b)).expect("assign").id(),
        q
    );

    // Last seen on the track's own camera: the prior does not apply.
    let (g, ..) = taught(0.1);
    let seen_on_b = g
        .iter()
        .find(|i| i.camera == b)
        .expect("a person last seen on b");
    assert_eq!(g.transit_prior(seen_on_b, &at_109(&both, &b)), 0.0);
}

#[test]
fn matches_below_confident_teach_the_prior_but_not_the_hard_rules() {
    let cfg = prior_config(0.1);
    let mut g = Gallery::new(cfg).expect("gallery");
    let (a, b) = (cam("a"), cam("b"));
    // Three people matched a -> b at 0.8: over the threshold, not confident.
    for (id, again) in three_walk_a_to_b(&mut g, (&a, &b), 0.75) {
        assert!(
            matches!(again, Assignment::Matched { id: m, similarity } if m == id && similarity < 0.9),
            "{again:?}"
        );
    }
    assert_eq!(
        g.transit(&a, &b),
        None,
        "the hard rules learn from confident matches only"
    );
    let p = seen(&mut g, &axis(0, 0.0), &a, 1, 100_000);
    let like_p = axis(0, 1.0);
    let prior = g.transit_prior(g.get(p).expect("p"), &at_109(&like_p, &b));
    assert!(
        (prior - 0.1).abs() < 1e-6,
        "the prior learned from them: {prior}"
    );
    // Nothing is too soon: 1 s after leaving is allowed by the hard rules.
    let soon = track(&like_p, &b, 98, UnixMs(102_000), OPEN);
    assert_eq!(g.exclusion(p, &soon), None);
}

/// A camera where people enter decides many strangers' tracks, none of
/// them someone last seen at the exit: a look-alike of such a person needs
/// more than the bar there, less with each match the route carries.
#[test]
fn a_route_no_match_has_taken_needs_more_than_the_bar() {
    let (entry, exit) = (cam("entry"), cam("exit"));
    // P leaves the exit at 1 s; three strangers enter meanwhile.
    let with_p = |after: usize| {
        let config = GalleryConfig {
            unseen_route_after: after,
            ..prior_config(0.1)
        };
        let mut g = Gallery::new(config).expect("gallery");
        let p = seen(&mut g, &axis(0, 0.0), &exit, 1, 0);
        for k in 0..3 {
            seen(
                &mut g,
                &axis(3 + k, 0.0),
                &entry,
                10 + k as u64,
                2_000 * k as i64,
            );
        }
        (g, p)
    };
    // 0.63 to P: over the 0.6 bar, under it plus half the weight (0.05).
    let like_p = axis(0, 1.2327);
    let at = |e, k, t| track(e, &entry, k, UnixMs(t), UnixMs(t + 1000));
    let prior = |g: &Gallery, p, q: &TrackQuery<'_>| g.transit_prior(g.get(p).expect("p"), q);

    let (mut g, p) = with_p(3);
    let q = at(&like_p, 50, 60_000);
    assert!((g.get(p).expect("p").similarity(&like_p) - 0.63).abs() < 0.005);
    assert!(
        (prior(&g, p, &q) + 0.05).abs() < 1e-6,
        "{}",
        prior(&g, p, &q)
    );
    let a = g.assign_track(&q).expect("assign");
    assert!(matches!(a, Assignment::New { .. }), "{a:?}");
    let (mut off, p) = with_p(0);
    assert_eq!(
        off.assign_track(&q).expect("assign").id(),
        p,
        "off: a match"
    );
    let (few, p) = with_p(4);
    assert_eq!(
        prior(&few, p, &q),
        0.0,
        "three tracks decided say too little"
    );

    // R returns from the exit to the entry, plainly: the route has carried
    // one match of the three its prior needs.
    let (mut g, p) = with_p(3);
    let r = seen(&mut g, &axis(7, 0.0), &exit, 60, 100_000);
    assert_eq!(seen(&mut g, &axis(7, 0.0), &entry, 61, 130_000), r);
    let q = at(&like_p, 62, 200_000);
    assert!(
        (prior(&g, p, &q) + 0.05 * 2.0 / 3.0).abs() < 1e-6,
        "{}",
        prior(&g, p, &q)
    );
    // A candidate last seen on the track's own camera is not moved.
    assert_eq!(prior(&g, r, &at(&like_p, 63, 300_000)), 0.0);
}

/// A person seen as `first` on `a` for 1 s from `t` ms (track `k`), then as
/// `then` on `b` for 1 s from `gap` ms after leaving (track `k + 100`): the
/// identity given on `a`, and what the track on `b` was given.
fn walk(
    g: &mut Gallery,
    (a, b): (&CameraId, &CameraId),
    (first, then): (&Embedding, &Embedding),
    k: u64,
    t: i64,
    gap: i64,
) -> (IdentityId, Assignment) {
    let id = seen(g, first, a, k, t);
    let leave = t + 1000;
    let again = g
        .assign_track(&track(
            then,
            b,
            k + 100,
            UnixMs(leave + gap),
            UnixMs(leave + gap + 1000),
        ))
        .expect("assign");
    (id, again)
}

/// The identity given to `e`, seen on `c` (track `k`) for 1 s from `t` ms.
fn seen(g: &mut Gallery, e: &Embedding, c: &CameraId, k: u64, t: i64) -> IdentityId {
    g.assign_track(&track(e, c, k, UnixMs(t), UnixMs(t + 1000)))
        .expect("assign")
        .id()
}

/// People 3, 4 and 5 ([`axis`]) walk from `a` (at 0, 20 and 40 s) to `b`,
/// 7, 8 and 9 s after leaving, seen there with `w` on the last axis: what
/// [`walk`] returns for each.
fn three_walk_a_to_b(
    g: &mut Gallery,
    cams: (&CameraId, &CameraId),
    w: f32,
) -> Vec<(IdentityId, Assignment)> {
    [7000i64, 8000, 9000]
        .into_iter()
        .enumerate()
        .map(|(k, gap)| {
            let (here, there) = (axis(3 + k, 0.0), axis(3 + k, w));
            walk(
                g,
                cams,
                (&here, &there),
                10 + k as u64,
                20_000 * k as i64,
                gap,
            )
        })
        .collect()
}

/// Thresholds 0.6 / 0.9, margin 0.05, three transits before any rule, the
/// transit prior at `weight`, no crowd rule.
fn prior_config(weight: f32) -> GalleryConfig {
    GalleryConfig {
        match_threshold: 0.6,
        confident_threshold: 0.9,
        ambiguity_margin: 0.05,
        max_identities: 100,
        transit_min_samples: 3,
        transit_slack_ms: 1000,
        crowd_step: 0.0,
        transit_weight: weight,
        transit_horizon_s: 60,
        same_camera_margin: 0.0,
        ..GalleryConfig::default()
    }
}

/// Another node's word of where one of its identities is: while its track
/// is open there, a look-alike on this node's camera is not given it; once
/// the track has ended, the transit is measured from its end, not from when
/// the identity was announced.
#[test]
fn where_another_node_sees_an_identity_holds_it_and_times_its_transit() {
    let mut g = Gallery::new(small()).expect("gallery");
    let (a, b) = (cam("a"), cam("b"));
    let e = emb(&[1.0, 0.0, 0.0, 0.0]);
    let remote = IdentityId(9 << SEQ_BITS | 1);
    // Announced when minted at t = 0 on the other node's camera a.
    g.upsert_remote(Identity::single(
        remote,
        e.clone(),
        "",
        a.clone(),
        UnixMs(0),
        Origin::Remote,
    ))
    .expect("upsert");
    assert!(!g.seen_elsewhere(IdentityId(5), &a, TrackId(3), UnixMs(0), UnixMs(10)));
    // Its track on a is open, leased until t = 30 s.
    assert!(g.seen_elsewhere(remote, &a, TrackId(3), UnixMs(0), UnixMs(30_000)));
    let held = g
        .assign_track(&track(&e, &b, 1, UnixMs(4_000), OPEN))
        .expect("assign");
    assert_ne!(held.id(), remote, "on screen at a: not given at b at once");
    assert_eq!(
        g.exclusion(remote, &track(&e, &b, 1, UnixMs(4_000), OPEN)),
        Some(Excluded::Elsewhere)
    );
    // The track ends at 5 s: the lease gives way to its end.
    assert!(g.seen_elsewhere(remote, &a, TrackId(3), UnixMs(0), UnixMs(5_000)));
    let ident = g.get(remote).expect("kept");
    assert_eq!(
        ident
            .appearances
            .iter()
            .filter(|x| x.track == Some(TrackId(3)))
            .map(|x| (x.first_ms, x.last_ms))
            .collect::<Vec<_>>(),
        [(UnixMs(0), UnixMs(5_000))],
        "one appearance per track, its end replaced"
    );
    let later = g
        .assign_track(&track(&e, &b, 2, UnixMs(11_000), UnixMs(12_000)))
        .expect("assign");
    assert_eq!(later.id(), remote, "after its end, the same person at b");
    assert_eq!(
        g.transit(&a, &b).map(|t| t.0),
        Some(6_000),
        "the transit runs from the end on a (5 s), not the announcement (0 s)"
    );
}

/// A view made on the track's own camera must clear the same-camera bar;
/// the same similarity to a view from another camera is a match. Two
/// strangers on one camera share its angle and light, so at equal false
/// matches the bar there is higher (`same_camera_margin`).
#[test]
fn a_view_from_the_tracks_own_camera_needs_the_same_camera_bar() {
    let config = GalleryConfig {
        match_threshold: 0.6,
        confident_threshold: 0.9,
        same_camera_margin: 0.15,
        ambiguity_margin: 0.05,
        crowd_step: 0.0,
        transit_weight: 0.0,
        ..GalleryConfig::default()
    };
    // `at(c)`: cosine c to [1, 0, 0].
    let at = |c: f32| emb(&[c, (1.0 - c * c).sqrt(), 0.0]);
    let (a, b) = (cam("a"), cam("b"));
    // A gallery that knows Ann from one track on camera a.
    let with_ann = |config: &GalleryConfig| {
        let mut g = Gallery::new(config.clone()).expect("gallery");
        let ann = g
            .assign_track(&track(&at(1.0), &a, 1, UnixMs(0), UnixMs(1_000)))
            .expect("ann")
            .id();
        (g, ann)
    };
    let later = |e, c| track(e, c, 2, UnixMs(60_000), UnixMs(61_000));
    // 0.7 to Ann's view from camera a: enough across cameras...
    let (mut g, ann) = with_ann(&config);
    let q = at(0.7);
    let across = g.assign_track(&later(&q, &b)).expect("across");
    assert!(
        matches!(across, Assignment::Matched { id, .. } if id == ann),
        "{across:?}"
    );
    // ...not on camera a itself, where it counts 0.15 less.
    let (mut g, ann) = with_ann(&config);
    let listed = g.candidates(&later(&q, &a), 3);
    let ann_listed = listed.iter().find(|c| c.id == ann).expect("Ann listed");
    assert!((ann_listed.similarity - 0.55).abs() < 1e-3, "{listed:?}");
    let same = g.assign_track(&later(&q, &a)).expect("same");
    assert!(matches!(same, Assignment::New { .. }), "{same:?}");
    // A clearly similar view on one camera (0.8) is still a match.
    let (mut g, ann) = with_ann(&config);
    let q8 = at(0.8);
    let close = g.assign_track(&later(&q8, &a)).expect("close");
    assert!(
        matches!(close, Assignment::Matched { id, .. } if id == ann),
        "{close:?}"
    );
    // With no margin, one camera is judged as any other.
    let (mut g, ann) = with_ann(&GalleryConfig {
        same_camera_margin: 0.0,
        ..config.clone()
    });
    let same = g.assign_track(&later(&q, &a)).expect("same");
    assert!(
        matches!(same, Assignment::Matched { id, .. } if id == ann),
        "{same:?}"
    );
    // A negative margin is refused, by name.
    let err = Gallery::new(GalleryConfig {
        same_camera_margin: -0.1,
        ..config
    })
    .expect_err("negative margin");
    assert!(err.to_string().contains("same_camera_margin"), "{err}");
}

/// Views keep the camera they were made on; merging views of two cameras
/// leaves one of unknown camera, judged on the cross-camera scale.
#[test]
fn views_remember_their_camera_until_two_cameras_blend() {
    let config = GalleryConfig {
        match_threshold: 0.6,
        confident_threshold: 0.9,
        same_camera_margin: 0.15,
        prototype_merge: 0.95,
        max_prototypes: 2,
        crowd_step: 0.0,
        transit_weight: 0.0,
        ..GalleryConfig::default()
    };
    let (a, b) = (cam("a"), cam("b"));
    let mut g = Gallery::new(config).expect("gallery");
    let id = g
        .assign_track(&track(&emb(&[1.0, 0.0, 0.0]), &a, 1, UnixMs(0), UnixMs(1)))
        .expect("first")
        .id();
    let on = |g: &Gallery| {
        g.get(id)
            .map(|i| {
                i.prototypes
                    .iter()
                    .map(|p| p.camera.as_ref().map(|c| c.as_str().to_owned()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(on(&g), vec![Some("a".to_owned())]);
    // A distinct view from camera b is a second prototype, tagged b.
    g.refine(id, &emb(&[0.8, 0.6, 0.0]), &b).expect("refine");
    assert_eq!(on(&g), vec![Some("a".to_owned()), Some("b".to_owned())]);
    // A view from b nearly the same as a's (>= prototype_merge) blends
    // into it: that view is now of both cameras.
    g.refine(id, &emb(&[1.0, 0.02, 0.0]), &b).expect("refine");
    assert_eq!(on(&g), vec![None, Some("b".to_owned())]);
    // A third distinct view: the two closest views merge, within the bound.
    g.refine(id, &emb(&[0.0, 0.0, 1.0]), &a).expect("refine");
    assert_eq!(on(&g).len(), 2);
}
