//! The master's services at rest: asleep on their channels, woken by what
//! they wait for (an announcement, a round falling due, the stop), never
//! polling a flag. This file holds one test, so the threads it finds by name
//! in this process are its master's.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vidar_master::Master;
use vidar_testkit::process::voluntary_switches as switches;

/// The service threads the master starts, by name.
const SERVICES: [&str; 3] = ["vidar-plans", "vidar-sync", "vidar-merges"];

/// With every timer an hour away, the plans, sync and merge threads sleep
/// through three seconds (the merge thread's 2 s catch-up look wakes it at
/// most twice), where the old stop-flag polling woke each one every 100-200
/// ms (15-30 wakes); and the stop then wakes them all at once.
#[test]
fn services_sleep_until_woken_and_the_stop_wakes_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = seed_database(dir.path(), vec![sighting(1, "c1", 1_000, 2_000)]);
    let extra = "sync_every_s = 3600.0\nplan_every_s = 3600.0";
    let cfg = config(&db, &unique_site(), extra);
    let m = Master::start(&cfg).expect("master starts");
    // Every service is past its first round and waiting.
    std::thread::sleep(Duration::from_millis(500));
    let before: Vec<Vec<u64>> = SERVICES.iter().map(|s| switches(s)).collect();
    for (name, b) in SERVICES.iter().zip(&before) {
        assert_eq!(b.len(), 1, "one {name} thread in this process: {b:?}");
    }
    std::thread::sleep(Duration::from_secs(3));
    for (name, b) in SERVICES.iter().zip(&before) {
        let after = switches(name);
        let woke = after.first().copied().unwrap_or(0).saturating_sub(b[0]);
        assert!(
            woke <= 5,
            "{name} woke {woke} times in 3 s with nothing to do: it polls"
        );
    }
    let t0 = Instant::now();
    m.shutdown().expect("a clean stop");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
    for name in SERVICES {
        assert!(
            switches(name).is_empty(),
            "{name} still runs after the stop"
        );
    }
}
