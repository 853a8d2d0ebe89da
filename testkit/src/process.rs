//! Child processes for tests and benchmarks: started with their output in a
//! log file, found by the ready file they write, killed when dropped.
//!
//! Ports without races: give every listener port 0 in the child's config
//! (`http_addr = "127.0.0.1:0"`, `listen = ["tls/127.0.0.1:0"]`,
//! `vidar-camera --port 0`). The child binds, the kernel picks the port, and
//! the child writes what it bound to its ready file
//! (`vidar_config::ready`, `VIDAR_READY_FILE`); [`Proc::wait_ready`] reads
//! it. Nothing chooses a port for another process to bind later, so nothing
//! can take it in between. (A process restarted "on the same port" is the
//! one case left: see [`crate::ports`].)

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use vidar_config::ready::Ready;
use vidar_config::ready::READY_FILE_ENV;

/// The binary `name` built beside `anchor` (a test's
/// `env!("CARGO_BIN_EXE_...")`: every binary of the workspace lands in one
/// folder); panics, saying how to build it, when it is not there.
pub fn sibling_bin(anchor: &str, name: &str) -> PathBuf {
    let p = Path::new(anchor).with_file_name(name);
    assert!(
        p.is_file(),
        "{} missing: build every binary first (`cargo build --workspace --bins`, as `make test` does)",
        p.display()
    );
    p
}

/// A child process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    ready: PathBuf,
}

impl Proc {
    /// Starts `program` with `args` in a fresh ready-file slot: stdout and
    /// stderr appended to `dir/NAME.log`, the ready file at `dir/NAME.ready`.
    pub fn spawn(dir: &Path, name: &str, program: &Path, args: &[&str]) -> std::io::Result<Proc> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Proc::spawn_command(dir, name, cmd)
    }

    /// [`Proc::spawn`] of a prepared command (its environment, say).
    pub fn spawn_command(dir: &Path, name: &str, mut cmd: Command) -> std::io::Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let ready = dir.join(format!("{name}.ready"));
        match std::fs::remove_file(&ready) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let out = File::options().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let child = cmd
            .env(READY_FILE_ENV, &ready)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("starting {name} ({:?}): {e}", cmd.get_program()),
                )
            })?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log,
            ready,
        })
    }

    /// The name it was started under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until it has written its ready file (everything it listens on
    /// serves); an error, with the end of its log, when it exits first or
    /// `limit` passes.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<Ready, String> {
        let t0 = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.ready) {
                return Ready::parse(&text).map_err(|e| {
                    format!("{}: ready file {}: {e}", self.name, self.ready.display())
                });
            }
            if let Some(status) = self.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before it was ready\n{}",
                    self.name,
                    self.tail(4000)
                ));
            }
            if t0.elapsed() > limit {
                return Err(format!(
                    "{} not ready after {limit:?}\n{}",
                    self.name,
                    self.tail(4000)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, as a crash or a power cut would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (an orderly stop); SIGKILL when it has not exited within
    /// `limit`. Returns how it exited (None: it had to be killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.try_wait() {
            return Some(s);
        }
        // kill(1): the workspace has no unsafe code, so no libc::kill.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// Everything it wrote so far (stdout and stderr, all its lives).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `bytes` of its log, headed by its name.
    pub fn tail(&self, bytes: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(bytes)));
            let mut raw = Vec::new();
            let _ = f.read_to_end(&mut raw);
            text = String::from_utf8_lossy(&raw).into_owned();
        }
        format!("--- {} ({}) ---\n{text}", self.name, self.log.display())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Voluntary context switches of each thread of this process named `name`
/// (from `/proc/self/task/*/status`): a thread that sleeps and is woken
/// switches once per wake, so the difference over an idle interval counts
/// its wake-ups. Tests use it to tell a thread that polls from one that
/// sleeps until woken. Empty where no thread has that name.
pub fn voluntary_switches(name: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        if let Some(n) = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
        {
            out.push(n);
        }
    }
    out
}

/// Calls `f` every 250 ms until it gives a value; panics after `limit`
/// naming `what`, with `logs()` (the processes' log tails) in the message.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    logs: &dyn Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, name: &str, script: &str) -> Proc {
        Proc::spawn(dir, name, Path::new("/bin/sh"), &["-c", script]).expect("spawn sh")
    }

    /// A thread woken 20 times through a channel counts at least 20 switches
    /// more; one asleep counts none.
    #[test]
    fn voluntary_switches_count_a_named_threads_wakes() {
        let (tx, rx) = std::sync::mpsc::channel::<bool>();
        let t = std::thread::Builder::new()
            .name("vk-sleeper".into())
            .spawn(move || while rx.recv().unwrap_or(false) {})
            .expect("thread");
        std::thread::sleep(Duration::from_millis(100));
        let before = voluntary_switches("vk-sleeper");
        assert_eq!(before.len(), 1, "{before:?}");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(voluntary_switches("vk-sleeper"), before, "asleep: no wakes");
        for _ in 0..20 {
            tx.send(true).expect("send");
            std::thread::sleep(Duration::from_millis(5));
        }
        let after = voluntary_switches("vk-sleeper");
        assert!(after[0] >= before[0] + 20, "{before:?} -> {after:?}");
        tx.send(false).expect("send");
        t.join().expect("join");
        assert!(voluntary_switches("vk-sleeper").is_empty());
        assert!(voluntary_switches("no-such-thread").is_empty());
    }

    #[test]
    fn waits_for_the_ready_file_and_reports_an_early_exit_with_its_log() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut p = sh(
            dir.path(),
            "ok",
            "echo starting; sleep 0.2; printf 'pid=%s\\nhttp=127.0.0.1:4242\\n' $$ > \"$VIDAR_READY_FILE\"; sleep 30",
        );
        let r = p.wait_ready(Duration::from_secs(20)).expect("ready");
        assert_eq!(r.pid, p.pid());
        assert_eq!(r.http, Some("127.0.0.1:4242".parse().expect("addr")));
        assert!(p.log().contains("starting"));
        assert_eq!(
            p.terminate(Duration::from_secs(10)).map(|s| s.success()),
            Some(false)
        );

        let mut bad = sh(dir.path(), "bad", "echo 'no config here' >&2; exit 3");
        let e = bad
            .wait_ready(Duration::from_secs(20))
            .expect_err("exits first");
        assert!(
            e.contains("bad exited") && e.contains("no config here"),
            "{e}"
        );

        // A restart under the same name never reads the previous life's file.
        let mut again = sh(dir.path(), "ok", "sleep 30");
        let e = again
            .wait_ready(Duration::from_millis(300))
            .expect_err("not ready");
        assert!(e.contains("not ready"), "{e}");
    }
}
