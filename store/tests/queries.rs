//! Every query, against a real file.

#![allow(clippy::unwrap_used)] // a test crate: a panic is how a helper reports failure

mod common;

use common::*;
use vidar_protocol::{IdentityId, UnixMs};
use vidar_store::{Reader, Record, TimeRange};

const A: u64 = 1 << 63 | 11; // an id with the top bit set, as minted with a high node prefix
const B: u64 = 22;
const C: u64 = 33;
const D: u64 = 44;

/// Two nodes' worth of sightings; A, B and C are one person by two merges, D is someone else.
fn fixture(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = db(dir, "q.db");
    let w = writer(&path, "edge-1");
    let s = |id, camera: &str, track, first, last| {
        Record::Sighting(sighting(id, camera, track, first, last, 4))
    };
    for r in [
        s(A, "cam-a", 1, 1_000, 2_000),
        s(D, "cam-a", 2, 1_500, 2_500),
        s(B, "cam-b", 3, 3_000, 4_000),
        s(C, "cam-c", 4, 5_000, 6_000),
        s(A, "cam-a", 5, 7_000, 8_000),
        s(D, "cam-b", 6, 9_000, 9_500),
        merge(B, A, 10_000),
        merge(A, C, 10_001),
        snapshot(A, "cam-a", 1_200),
        snapshot(C, "cam-c", 5_100),
        snapshot(D, "cam-a", 1_600),
        camera("cam-a", "old name", 0),
        camera("cam-b", "Yard", 0),
        camera("cam-a", "Lobby", 50),
        identity(A, "cam-a", 1_000, 8),
    ] {
        w.submit(r).unwrap();
    }
    w.shutdown().unwrap();
    path
}

fn spans(v: &[vidar_store::Stored<vidar_store::Sighting>]) -> Vec<(u64, i64)> {
    v.iter()
        .map(|s| (s.value.identity.0, s.value.first_ms.ms()))
        .collect()
}

#[test]
fn trajectory_follows_merges_in_both_directions_in_time_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let r = Reader::open(fixture(&dir))?;
    let want = vec![(A, 1_000), (B, 3_000), (C, 5_000), (A, 7_000)];
    for who in [A, B, C] {
        let t = r.trajectory(IdentityId(who), TimeRange::all(), 100)?;
        assert_eq!(spans(&t), want, "asked for {who}");
    }
    let cams: Vec<String> = r
        .trajectory(IdentityId(B), TimeRange::all(), 100)?
        .iter()
        .map(|s| s.value.camera.to_string())
        .collect();
    assert_eq!(cams, ["cam-a", "cam-b", "cam-c", "cam-a"]);
    assert_eq!(
        spans(&r.trajectory(IdentityId(D), TimeRange::all(), 100)?),
        vec![(D, 1_500), (D, 9_000)]
    );
    assert_eq!(
        r.identity_cluster(IdentityId(C))?,
        vec![IdentityId(B), IdentityId(C), IdentityId(A)]
    );
    assert!(r
        .trajectory(IdentityId(999), TimeRange::all(), 100)?
        .is_empty());
    Ok(())
}

#[test]
fn trajectory_range_is_by_overlap_and_limit_holds() -> TestResult {
    let dir = tempfile::tempdir()?;
    let r = Reader::open(fixture(&dir))?;
    // [1900, 3001) overlaps A's first sighting (ends 2000) and B's (starts 3000).
    let t = r.trajectory(
        IdentityId(A),
        TimeRange::new(UnixMs(1_900), UnixMs(3_001)),
        100,
    )?;
    assert_eq!(spans(&t), vec![(A, 1_000), (B, 3_000)]);
    // End is exclusive, and a sighting that ended before the start is out.
    let t = r.trajectory(
        IdentityId(A),
        TimeRange::new(UnixMs(2_001), UnixMs(3_000)),
        100,
    )?;
    assert!(t.is_empty(), "{t:?}");
    assert_eq!(r.trajectory(IdentityId(A), TimeRange::all(), 2)?.len(), 2);
    // The box path comes back as written.
    let full = r.trajectory(IdentityId(A), TimeRange::new(UnixMs(0), UnixMs(1_001)), 1)?;
    assert_eq!(full[0].value, sighting(A, "cam-a", 1, 1_000, 2_000, 4));
    Ok(())
}

#[test]
fn sightings_by_camera_and_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    let r = Reader::open(fixture(&dir))?;
    let a = r.sightings_by_camera(&cam("cam-a"), TimeRange::all(), 100)?;
    assert_eq!(spans(&a), vec![(A, 1_000), (D, 1_500), (A, 7_000)]);
    let a = r.sightings_by_camera(
        &cam("cam-a"),
        TimeRange::new(UnixMs(2_100), UnixMs(7_000)),
        100,
    )?;
    assert_eq!(spans(&a), vec![(D, 1_500)]);
    assert!(r
        .sightings_by_camera(&cam("cam-z"), TimeRange::all(), 100)?
        .is_empty());
    let any = r.sightings_in_range(TimeRange::new(UnixMs(1_600), UnixMs(5_000)), 100)?;
    assert_eq!(spans(&any), vec![(A, 1_000), (D, 1_500), (B, 3_000)]);
    assert_eq!(r.sightings_in_range(TimeRange::all(), 4)?.len(), 4);
    Ok(())
}

#[test]
fn identities_seen_in_a_range() -> TestResult {
    let dir = tempfile::tempdir()?;
    let r = Reader::open(fixture(&dir))?;
    let seen = r.identities_in_range(TimeRange::new(UnixMs(1_000), UnixMs(5_000)), 100)?;
    let ids: Vec<u64> = seen.iter().map(|s| s.identity.0).collect();
    assert_eq!(ids, vec![A, D, B]);
    let all = r.identities_in_range(TimeRange::all(), 100)?;
    let d = all.iter().find(|s| s.identity.0 == D).ok_or("D missing")?;
    assert_eq!(
        (d.first_ms, d.last_ms, d.sightings, d.cameras),
        (UnixMs(1_500), UnixMs(9_500), 2, 2)
    );
    let a = all.iter().find(|s| s.identity.0 == A).ok_or("A missing")?;
    assert_eq!((a.sightings, a.cameras), (2, 1));
    assert!(r
        .identities_in_range(TimeRange::new(UnixMs(20_000), UnixMs(30_000)), 100)?
        .is_empty());
    Ok(())
}

#[test]
fn snapshots_cameras_and_embeddings() -> TestResult {
    let dir = tempfile::tempdir()?;
    let r = Reader::open(fixture(&dir))?;
    let snaps = r.snapshots(IdentityId(B), 10)?;
    assert_eq!(
        snaps.iter().map(|s| s.value.t_ms.ms()).collect::<Vec<_>>(),
        vec![1_200, 5_100]
    );
    assert_eq!(
        Record::Snapshot(snaps[0].value.clone()),
        snapshot(A, "cam-a", 1_200)
    );
    assert_eq!(r.snapshots(IdentityId(D), 10)?.len(), 1);

    let cams = r.cameras()?;
    let names: Vec<(&str, &str)> = cams
        .iter()
        .map(|c| (c.value.camera.as_str(), c.value.name.as_str()))
        .collect();
    assert_eq!(names, vec![("cam-a", "Lobby"), ("cam-b", "Yard")]);

    let ids = r.identity_records(IdentityId(A))?;
    assert_eq!(ids.len(), 1);
    assert_eq!(
        Record::Identity(ids[0].value.clone()),
        identity(A, "cam-a", 1_000, 8)
    );
    Ok(())
}

#[test]
fn the_newest_snapshot_of_each_identity_since_a_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "snaps.db");
    let w = writer(&path, "edge-1");
    for r in [
        snapshot(A, "cam-a", 1_200),
        snapshot(A, "cam-b", 4_000),
        snapshot(D, "cam-a", 1_600),
        snapshot(C, "cam-c", 500),
    ] {
        w.submit(r)?;
    }
    w.shutdown()?;
    let r = Reader::open(&path)?;
    let got = |since, limit| -> Result<Vec<(u64, i64)>, vidar_store::StoreError> {
        Ok(r.latest_snapshots(UnixMs(since), limit)?
            .iter()
            .map(|s| (s.value.identity.0, s.value.t_ms.ms()))
            .collect())
    };
    // Newest first, one per identity; C's only one is older than `since`.
    assert_eq!(got(1_000, 10)?, vec![(A, 4_000), (D, 1_600)]);
    assert_eq!(got(1_000, 1)?, vec![(A, 4_000)]);
    assert_eq!(got(0, 10)?.len(), 3);
    assert!(got(5_000, 10)?.is_empty());
    Ok(())
}

#[test]
fn merge_cycles_terminate() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "cyc.db");
    let w = writer(&path, "master");
    for r in [
        merge(1, 2, 0),
        merge(2, 3, 0),
        merge(3, 1, 0),
        Record::Sighting(sighting(3, "cam-a", 1, 0, 5, 1)),
    ] {
        w.submit(r)?;
    }
    w.shutdown()?;
    let r = Reader::open(&path)?;
    assert_eq!(r.identity_cluster(IdentityId(1))?.len(), 3);
    assert_eq!(r.trajectory(IdentityId(1), TimeRange::all(), 10)?.len(), 1);
    Ok(())
}

#[test]
fn highest_identity_in_a_minting_range_for_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "ids.db");
    let w = writer(&path, "edge-1");
    let prefix = |p: u64, n: u64| p << 48 | n;
    for r in [
        identity(prefix(3, 7), "cam-a", 0, 4),
        Record::Sighting(sighting(prefix(3, 9), "cam-a", 1, 0, 5, 1)),
        identity(prefix(4, 1), "cam-a", 0, 4),
        identity(prefix(0x8001, 5), "cam-a", 0, 4),
        identity(prefix(0x8001, 2), "cam-a", 0, 4),
        identity(prefix(0x7FFF, 8), "cam-a", 0, 4),
    ] {
        w.submit(r)?;
    }
    w.shutdown()?;
    let r = Reader::open(&path)?;
    let range = |p: u64| (IdentityId(p << 48), ((p + 1) << 48) - 1);
    let max = |p: u64| {
        let (lo, hi) = range(p);
        r.max_identity_between(lo, IdentityId(hi))
    };
    assert_eq!(
        max(3)?,
        Some(IdentityId(prefix(3, 9))),
        "sightings count too"
    );
    assert_eq!(max(4)?, Some(IdentityId(prefix(4, 1))));
    assert_eq!(max(5)?, None);
    assert_eq!(
        max(0x8001)?,
        Some(IdentityId(prefix(0x8001, 5))),
        "top-bit ids order as u64"
    );
    // A range across 2^63 takes both halves.
    let across = r.max_identity_between(
        IdentityId(prefix(0x7FFF, 0)),
        IdentityId(prefix(0x8000, 0xFFFF)),
    )?;
    assert_eq!(across, Some(IdentityId(prefix(0x7FFF, 8))));
    let all = r.max_identity_between(IdentityId(0), IdentityId(u64::MAX))?;
    assert_eq!(all, Some(IdentityId(prefix(0x8001, 5))));
    Ok(())
}
