//! The writer's page cache is bounded by `WriterTuning::cache_kib`: SQLite's
//! own heap (`sqlite_memory_bytes`, process-wide, so only one test of this
//! file opens databases) stays near the cap however much is written, and a larger cap lets it
//! grow past it.

mod common;

use common::*;
use vidar_config::Config;
use vidar_store::{Record, WriterConfig};

/// Writes 30,000 sightings of 20 boxes (about 20 MB of pages) through a
/// writer whose cache holds at most `cache_kib`; SQLite's heap once done.
fn heap_after_writing(dir: &tempfile::TempDir, name: &str, cache_kib: u32) -> u64 {
    let path = db(dir, name);
    let mut c = WriterConfig::new(&path, node("edge-1"));
    c.tuning.cache_kib = cache_kib;
    let w = c.build(&()).expect("writer opens");
    let t0 = 1_700_000_000_000i64;
    for i in 0..30_000u64 {
        let first = t0 + i as i64 * 100;
        // Identities spread over the id space, as minted ones are: the
        // identity index takes inserts everywhere, not only at its end.
        let id = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1;
        w.submit(Record::Sighting(sighting(
            id,
            "cam-1",
            i,
            first,
            first + 2_000,
            20,
        )))
        .expect("submit");
    }
    w.flush().expect("flush");
    let used = vidar_store::sqlite_memory_bytes();
    w.shutdown().expect("shutdown");
    used
}

#[test]
fn the_writer_cache_stays_within_its_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = heap_after_writing(&dir, "small.db", 1024);
    let large = heap_after_writing(&dir, "large.db", 32 * 1024);
    assert!(
        small < 3 << 20,
        "a 1 MiB cache: SQLite holds {small} bytes after writing about 20 MB"
    );
    assert!(
        large > small + (6 << 20),
        "a 32 MiB cache keeps more of the same pages: {large} vs {small} bytes"
    );
}

#[test]
fn a_cache_size_out_of_range_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = WriterConfig::new(db(&dir, "e.db"), node("edge-1"));
    c.tuning.cache_kib = 16;
    let e = c.build(&()).expect_err("refused");
    assert!(e.to_string().contains("tuning.cache_kib"), "{e}");
}
