//! Hostile input: SQL in text fields is data, stored verbatim and harmless.

#![allow(clippy::unwrap_used)] // a test crate: a panic is how a helper reports failure

mod common;

use common::*;
use proptest::prelude::*;
use vidar_store::{Reader, Record, TimeRange};

const ATTACKS: &[&str] = &[
    "'); DROP TABLE sightings; --",
    "Robert'); DELETE FROM cameras WHERE ('1'='1",
    "\" OR 1=1 --",
    "x'; UPDATE node_seq SET next_seq = 1; --",
    "%' OR camera_id LIKE '%",
    "name with \0 nul and 'quotes' and ;",
    "ATTACH DATABASE '/tmp/pwned.db' AS p; --",
    "日本語のカメラ 🎥",
];

#[test]
fn sql_in_text_fields_is_stored_verbatim_and_harmless() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "h.db");
    let w = writer(&path, "edge-1");
    w.submit(Record::Sighting(sighting(1, "cam-0", 1, 0, 10, 2)))?;
    for (k, name) in ATTACKS.iter().enumerate() {
        w.submit(camera(&format!("cam-{k}"), name, k as i64))?;
    }
    let last = w.flush()?.last_seq;
    w.shutdown()?;

    let r = Reader::open(&path)?;
    let names: Vec<String> = r.cameras()?.into_iter().map(|c| c.value.name).collect();
    assert_eq!(
        names,
        ATTACKS.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    // The tables and the counter are intact.
    assert_eq!(
        r.trajectory(vidar_protocol::IdentityId(1), TimeRange::all(), 10)?
            .len(),
        1
    );
    assert_eq!(r.last_seq(&node("edge-1"))?, last);
    assert!(!std::path::Path::new("/tmp/pwned.db").exists());
    Ok(())
}

#[test]
fn hostile_ids_never_reach_sql() {
    // Ids are validated by vidar-protocol before any query can bind them.
    for bad in ["a'; DROP TABLE x; --", "cam/../1", "", "a b"] {
        assert!(vidar_protocol::CameraId::new(bad).is_err(), "{bad:?}");
        assert!(vidar_protocol::NodeId::new(bad).is_err(), "{bad:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_name_roundtrips_verbatim(names in prop::collection::vec("\\PC{0,64}", 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir, "p.db");
        let w = writer(&path, "edge-1");
        for (k, n) in names.iter().enumerate() {
            w.submit(camera(&format!("c{k}"), n, 0)).unwrap();
        }
        w.shutdown().unwrap();
        let back: Vec<String> = Reader::open(&path).unwrap().cameras().unwrap().into_iter().map(|c| c.value.name).collect();
        prop_assert_eq!(back, names);
    }
}
