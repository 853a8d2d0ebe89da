//! What the master's `/healthz` reports, and what a dead service does: the
//! global database writer and the service threads (plans, sync, merges) are
//! watched by a [`vidar_runtime::Health`] registry. Any of them stopping while
//! the master is not shutting down turns `/healthz` red and stops the master
//! with a failure (policy `Stop`), so its supervisor (systemd, Kubernetes)
//! restarts it instead of it serving stale answers.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use vidar_runtime::{Health, Policy, Shutdown};
use vidar_store::WriterHandle;

/// The service threads, by name; `Master` joins them at shutdown.
pub type Threads = Arc<Mutex<Vec<(&'static str, JoinHandle<()>)>>>;

/// Registers the master's checks: the writer, and every thread in `threads`
/// (one check per name) that must run until `stopping` is triggered.
pub fn watch(health: &Health, writer: &WriterHandle, threads: &Threads, stopping: &Shutdown) {
    let w = writer.clone();
    health.check("database writer", Policy::Stop, move || match w.stopped() {
        Some(why) => Err(format!("stopped: {why}")),
        None => Ok(()),
    });
    let names: Vec<&'static str> = threads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(n, _)| *n)
        .collect();
    for name in names {
        let (threads, stopping) = (Arc::clone(threads), stopping.clone());
        health.check(name, Policy::Stop, move || {
            if stopping.is_triggered() {
                return Ok(());
            }
            let g = threads.lock().unwrap_or_else(|p| p.into_inner());
            match g.iter().find(|(n, _)| *n == name) {
                Some((_, t)) if t.is_finished() => Err("the service thread exited".into()),
                _ => Ok(()),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vidar_config::Config;

    #[test]
    fn a_service_thread_that_exits_turns_healthz_red_and_stops_the_master() {
        let dir = tempfile::tempdir().expect("tmp");
        let node = vidar_protocol::NodeId::new("master").expect("id");
        let writer = vidar_store::WriterConfig::new(dir.path().join("g.db"), node)
            .build(&())
            .expect("writer");
        let stopping = Shutdown::new();
        let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
        let sync = std::thread::spawn(move || {
            // Runs until told to exit, as the sync thread does until it fails.
            let _ = exit_rx.recv();
        });
        let stop = stopping.clone();
        let plans = std::thread::spawn(move || stop.wait());
        let threads: Threads = Arc::new(Mutex::new(vec![("plans", plans), ("sync", sync)]));
        let shutdown = Shutdown::new();
        let health = Health::new(&shutdown);
        watch(&health, &writer.handle(), &threads, &stopping);
        assert!(health.report().ok(), "{:?}", health.report());
        drop(exit_tx); // the sync thread ends
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !threads
            .lock()
            .unwrap()
            .iter()
            .any(|(n, t)| *n == "sync" && t.is_finished())
        {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        let report = health.report();
        assert!(!report.ok());
        assert!(
            report
                .text()
                .contains("sync: FAILED: the service thread exited"),
            "{}",
            report.text()
        );
        assert!(report.text().contains("plans: ok"), "{}", report.text());
        let reason = shutdown.reason().expect("the master stops");
        assert!(reason.failure && reason.why.contains("sync"), "{reason:?}");
        // An orderly stop is not a failure of the threads.
        stopping.trigger("test");
        let healthy_again = health.report();
        assert!(
            healthy_again.subsystems.iter().all(|(_, f)| f.is_none()),
            "{healthy_again:?}"
        );
        for (_, t) in threads.lock().unwrap().drain(..) {
            t.join().expect("joined");
        }
    }
}
