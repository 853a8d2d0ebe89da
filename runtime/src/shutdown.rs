//! One shutdown token per process.
//!
//! Triggered by SIGINT/SIGTERM ([`Shutdown::on_signals`]), by a subsystem
//! that failed under a stopping policy ([`Shutdown::fail`]), or by the
//! program. Threads wait on it with [`Shutdown::wait_timeout`], which returns
//! at once when it is triggered (no polling in sleep loops); async tasks await
//! [`Shutdown::triggered`]. It remembers why, and whether the process should
//! exit with a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why the process is stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// What asked for it.
    pub why: String,
    /// The process should exit with a failure status.
    pub failure: bool,
}

#[derive(Debug)]
struct Inner {
    /// Set with `reason`: a lock-free check for hot loops.
    flag: AtomicBool,
    reason: Mutex<Option<Reason>>,
    changed: Condvar,
    tx: tokio::sync::watch::Sender<bool>,
}

/// A cloneable shutdown token; every clone sees the same state.
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<Inner>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A token not yet triggered.
    pub fn new() -> Shutdown {
        let (tx, _) = tokio::sync::watch::channel(false);
        Shutdown(Arc::new(Inner {
            flag: AtomicBool::new(false),
            reason: Mutex::new(None),
            changed: Condvar::new(),
            tx,
        }))
    }

    fn set(&self, reason: Reason) {
        let mut g = self.0.reason.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *g {
            // A failure after an orderly stop still makes the exit a failure.
            Some(r) => r.failure |= reason.failure,
            None => *g = Some(reason),
        }
        self.0.flag.store(true, Ordering::Release);
        drop(g);
        self.0.changed.notify_all();
        self.0.tx.send_replace(true);
    }

    /// Asks for an orderly stop.
    pub fn trigger(&self, why: impl Into<String>) {
        self.set(Reason {
            why: why.into(),
            failure: false,
        });
    }

    /// Asks for a stop because something failed: the process should exit
    /// with a failure status.
    pub fn fail(&self, why: impl Into<String>) {
        self.set(Reason {
            why: why.into(),
            failure: true,
        });
    }

    /// Whether a stop was asked for (one atomic load: fine in hot loops).
    pub fn is_triggered(&self) -> bool {
        self.0.flag.load(Ordering::Acquire)
    }

    /// Why the process is stopping, once it is.
    pub fn reason(&self) -> Option<Reason> {
        self.0
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits up to `d`; true as soon as a stop is asked for (at once when it
    /// already was), false when `d` passed first.
    pub fn wait_timeout(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.0.reason.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if g.is_some() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self
                .0
                .changed
                .wait_timeout(g, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Waits until a stop is asked for.
    pub fn wait(&self) {
        while !self.wait_timeout(Duration::from_secs(3600)) {}
    }

    /// Resolves when a stop is asked for.
    pub async fn triggered(&self) {
        let mut rx = self.0.tx.subscribe();
        // The sender lives in `self`, so this only ends with `true`.
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Triggers the token on SIGINT or SIGTERM (a second signal while
    /// stopping exits at once, for a stop that hangs).
    pub fn on_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let token = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if token.is_triggered() {
                        tracing::warn!(signal = sig, "second signal while stopping: exiting now");
                        std::process::exit(130);
                    }
                    let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                    tracing::info!(signal = name, "stopping");
                    token.trigger(name);
                }
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_when_triggered_and_failures_stick() {
        let s = Shutdown::new();
        assert!(!s.wait_timeout(Duration::from_millis(10)));
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                assert!(s.wait_timeout(Duration::from_secs(30)));
                t.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        s.trigger("test");
        let waited = waiter.join().expect("waiter");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert_eq!(s.reason().map(|r| r.failure), Some(false));
        s.fail("writer died");
        let r = s.reason().expect("reason");
        assert_eq!(r.why, "test");
        assert!(r.failure, "a later failure makes the exit a failure");
        assert!(s.wait_timeout(Duration::ZERO));
    }

    #[test]
    fn async_waiters_wake_too() {
        let s = Shutdown::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let s2 = s.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            s2.trigger("later");
        });
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), s.triggered())
                .await
                .expect("woken");
        });
        // Already triggered: resolves at once.
        rt.block_on(s.triggered());
    }
}
