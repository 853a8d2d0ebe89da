//! A health registry: what `/healthz` reports, and what happens when a
//! subsystem dies.
//!
//! A subsystem is either checked (a closure, evaluated on every report and
//! by the watchdog once a second) or reports itself ([`Subsystem::failed`]).
//! Its [`Policy`] says what a failure does:
//! - [`Policy::Report`]: `/healthz` turns red until it recovers;
//! - [`Policy::Stop`]: red, and the process stops with a failure
//!   ([`Shutdown::fail`]) so its supervisor (systemd, Kubernetes) restarts it;
//! - [`Policy::Restart`]: for threads started with [`Health::supervise`]: the
//!   thread is started again after a backoff, at most `max` times in a row,
//!   then the process stops as under `Stop`.
//!
//! Nothing fails silently: every failure is logged with the subsystem's name.

use crate::shutdown::Shutdown;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a subsystem's failure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Turn `/healthz` red.
    Report,
    /// Turn `/healthz` red and stop the process with a failure.
    Stop,
    /// Start the thread again (after 1 s, doubling up to 30 s), at most
    /// `max` times in a row; then stop the process with a failure.
    Restart {
        /// Restarts allowed in a row (a run of 60 s resets the count).
        max: u32,
    },
}

type Check = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

struct Entry {
    name: String,
    policy: Policy,
    check: Option<Check>,
    /// Set by the subsystem itself (or by the watchdog on a failed check).
    failed: Option<String>,
    /// Restarts so far.
    restarts: u32,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<Vec<Entry>>,
}

/// The registry; cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
    shutdown: Shutdown,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

/// One subsystem's handle to report its own failure.
#[derive(Debug, Clone)]
pub struct Subsystem {
    health: Health,
    name: String,
}

/// A report for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// Every subsystem: its name and why it failed, if it did.
    pub subsystems: Vec<(String, Option<String>)>,
    /// The process is stopping.
    pub stopping: bool,
}

impl HealthReport {
    /// Whether every subsystem is well and the process is not stopping.
    pub fn ok(&self) -> bool {
        !self.stopping && self.subsystems.iter().all(|(_, f)| f.is_none())
    }

    /// Plain text: `ok` or `unhealthy`, then one line per subsystem.
    pub fn text(&self) -> String {
        let mut out = String::from(if self.ok() { "ok\n" } else { "unhealthy\n" });
        if self.stopping {
            out.push_str("process: stopping\n");
        }
        for (name, failed) in &self.subsystems {
            match failed {
                None => {
                    let _ = writeln!(out, "{name}: ok");
                }
                Some(why) => {
                    let _ = writeln!(out, "{name}: FAILED: {why}");
                }
            }
        }
        out
    }
}

impl Health {
    /// An empty registry whose stopping policies trigger `shutdown`, with a
    /// watchdog thread evaluating checks once a second until it is triggered.
    pub fn new(shutdown: &Shutdown) -> Health {
        let health = Health {
            inner: Arc::new(Inner::default()),
            shutdown: shutdown.clone(),
        };
        let h = health.clone();
        let spawned = std::thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                while !h.shutdown.wait_timeout(Duration::from_secs(1)) {
                    h.report();
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "health watchdog not started; checks run on /healthz only");
        }
        health
    }

    fn push(&self, name: &str, policy: Policy, check: Option<Check>) {
        let mut g = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|e| e.name != name);
        g.push(Entry {
            name: name.to_string(),
            policy,
            check,
            failed: None,
            restarts: 0,
        });
    }

    /// Registers a subsystem that reports itself.
    pub fn register(&self, name: &str, policy: Policy) -> Subsystem {
        self.push(name, policy, None);
        Subsystem {
            health: self.clone(),
            name: name.to_string(),
        }
    }

    /// Registers a subsystem checked by `check` (Err: why it is unwell).
    pub fn check(
        &self,
        name: &str,
        policy: Policy,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.push(name, policy, Some(Box::new(check)));
    }

    /// Removes a subsystem (it ended on purpose).
    pub fn remove(&self, name: &str) {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e| e.name != name);
    }

    /// Evaluates every check and reports.
    pub fn report(&self) -> HealthReport {
        let mut stop = Vec::new();
        let mut g = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut subsystems = Vec::with_capacity(g.len());
        for e in g.iter_mut() {
            if let Some(check) = &e.check {
                match check() {
                    Ok(()) => {
                        if e.failed.take().is_some() {
                            tracing::info!(subsystem = %e.name, "recovered");
                        }
                    }
                    Err(why) => {
                        if e.failed.is_none() {
                            if e.policy == Policy::Report {
                                tracing::warn!(subsystem = %e.name, error = %why, "unhealthy");
                            } else {
                                tracing::error!(subsystem = %e.name, error = %why, "unhealthy");
                            }
                            if e.policy != Policy::Report {
                                stop.push(format!("{}: {why}", e.name));
                            }
                        }
                        e.failed = Some(why);
                    }
                }
            }
            subsystems.push((e.name.clone(), e.failed.clone()));
        }
        drop(g);
        for why in stop {
            self.shutdown.fail(why);
        }
        HealthReport {
            subsystems,
            stopping: self.shutdown.is_triggered(),
        }
    }

    /// Runs `body` on a thread named `name` under `policy`: when it returns
    /// or panics before the process is stopping, that is a failure
    /// (restarted under [`Policy::Restart`]).
    pub fn supervise(
        &self,
        name: &str,
        policy: Policy,
        body: impl Fn(&Shutdown) + Send + Sync + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let sub = self.register(name, policy);
        let shutdown = self.shutdown.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut backoff = Duration::from_secs(1);
                loop {
                    let started = std::time::Instant::now();
                    let outcome = catch_unwind(AssertUnwindSafe(|| body(&shutdown)));
                    if shutdown.is_triggered() {
                        return;
                    }
                    let why = match outcome {
                        Ok(()) => "the thread exited".to_string(),
                        Err(p) => format!("the thread panicked: {}", panic_text(&p)),
                    };
                    if started.elapsed() >= Duration::from_secs(60) {
                        sub.reset_restarts();
                        backoff = Duration::from_secs(1);
                    }
                    if !sub.failed_and_restart(&why) {
                        return;
                    }
                    if shutdown.wait_timeout(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    sub.recovered();
                }
            })
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Subsystem {
    fn with_entry<T>(&self, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut g = self
            .health
            .inner
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        g.iter_mut().find(|e| e.name == self.name).map(f)
    }

    /// Reports a failure: `/healthz` turns red; under `Stop` (or `Restart`,
    /// which only [`Health::supervise`] can honour) the process stops.
    pub fn failed(&self, why: &str) {
        if !self.failed_and_restart(why) {
            return;
        }
        // Not supervised: nobody restarts it.
        self.health.shutdown.fail(format!("{}: {why}", self.name));
    }

    /// Marks it failed; true when the policy says to restart it now.
    fn failed_and_restart(&self, why: &str) -> bool {
        tracing::error!(subsystem = %self.name, error = why, "subsystem failed");
        let decision = self.with_entry(|e| {
            e.failed = Some(why.to_string());
            match e.policy {
                Policy::Report => (false, false),
                Policy::Stop => (false, true),
                Policy::Restart { max } if e.restarts < max => {
                    e.restarts += 1;
                    (true, false)
                }
                Policy::Restart { .. } => (false, true),
            }
        });
        match decision {
            Some((restart, stop)) => {
                if stop {
                    self.health.shutdown.fail(format!("{}: {why}", self.name));
                }
                if restart {
                    tracing::warn!(subsystem = %self.name, "restarting");
                }
                restart
            }
            None => false,
        }
    }

    /// Clears a reported failure.
    pub fn recovered(&self) {
        self.with_entry(|e| e.failed = None);
    }

    fn reset_restarts(&self) {
        self.with_entry(|e| e.restarts = 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_failed_check_turns_red_and_stops_under_stop() {
        let s = Shutdown::new();
        let h = Health::new(&s);
        let broken = Arc::new(Mutex::new(None::<String>));
        let b = Arc::clone(&broken);
        h.check("streams", Policy::Report, || Ok(()));
        h.check("database writer", Policy::Stop, move || {
            match &*b.lock().unwrap() {
                Some(why) => Err(why.clone()),
                None => Ok(()),
            }
        });
        let r = h.report();
        assert!(r.ok(), "{r:?}");
        assert!(r.text().starts_with("ok\n"));
        *broken.lock().unwrap() = Some("disk I/O error".into());
        let r = h.report();
        assert!(!r.ok());
        assert!(
            r.text().contains("database writer: FAILED: disk I/O error"),
            "{}",
            r.text()
        );
        let reason = s.reason().expect("stopping");
        assert!(reason.failure);
        assert!(reason.why.contains("database writer"), "{reason:?}");
    }

    #[test]
    fn report_policy_only_turns_red_and_recovers() {
        let s = Shutdown::new();
        let h = Health::new(&s);
        let sub = h.register("camera lobby", Policy::Report);
        sub.failed("no frames for 30 s");
        assert!(!h.report().ok());
        assert!(!s.is_triggered(), "Report does not stop the process");
        sub.recovered();
        assert!(h.report().ok());
    }

    #[test]
    fn a_supervised_thread_is_restarted_then_the_process_stops() {
        let s = Shutdown::new();
        let h = Health::new(&s);
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        let t = h
            .supervise("sync", Policy::Restart { max: 1 }, move |_| {
                r.fetch_add(1, Ordering::SeqCst);
                panic!("sync thread bug");
            })
            .expect("spawned");
        t.join().expect("supervisor ends");
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one restart");
        let reason = s.reason().expect("stopped after the restarts ran out");
        assert!(
            reason.failure && reason.why.contains("panicked"),
            "{reason:?}"
        );
        assert!(!h.report().ok());
    }

    #[test]
    fn a_supervised_thread_that_ends_on_shutdown_is_not_a_failure() {
        let s = Shutdown::new();
        let h = Health::new(&s);
        let t = h
            .supervise("status", Policy::Stop, |stop| stop.wait())
            .expect("spawned");
        s.trigger("test");
        t.join().expect("ends");
        assert!(!s.reason().expect("reason").failure);
        let r = h.report();
        assert!(r.subsystems.iter().all(|(_, f)| f.is_none()), "{r:?}");
    }
}
