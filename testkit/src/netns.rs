//! A network namespace joined to the host by a veth pair shaped with `tc
//! tbf`, for tests and benchmarks on real, constrained links (root only;
//! `netem` is not available, so no delay or loss).

use std::path::Path;
use std::process::Command;

/// Runs a command that must succeed.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (iproute2 missing? run deploy/setup.sh)"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to the host by a shaped veth pair; deleted
/// (with its end of the pair) when dropped.
#[derive(Debug)]
pub struct Namespace {
    name: String,
    host_if: String,
}

impl Namespace {
    /// Creates namespace `name` with the pair `<ifs>h` (host, `host_ip`/30)
    /// and `<ifs>n` (inside, `ns_ip`/30), each way limited to `rate_mbit`.
    pub fn create(name: &str, ifs: &str, host_ip: &str, ns_ip: &str, rate_mbit: f64) -> Namespace {
        let name = name.to_string();
        let ns = Namespace {
            name: name.clone(),
            host_if: format!("{ifs}h"),
        };
        let ns_if = format!("{ifs}n");
        sh(&["ip", "netns", "add", &name]);
        sh(&[
            "ip",
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        sh(&["ip", "link", "set", &ns_if, "netns", &name]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &ns.host_if,
        ]);
        sh(&["ip", "link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", name.as_str()];
            all.extend_from_slice(args);
            sh(&all);
        };
        inside(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        inside(&["ip", "link", "set", &ns_if, "up"]);
        inside(&["ip", "link", "set", "lo", "up"]);
        // Each way: a small bucket (one burst barely lifts a 64 KiB probe),
        // and queueing rather than drops.
        let rate = format!("{rate_mbit}mbit");
        let tbf = [
            "tbf",
            "rate",
            rate.as_str(),
            "burst",
            "5kb",
            "latency",
            "1s",
        ];
        let mut out = vec!["tc", "qdisc", "add", "dev", ns.host_if.as_str(), "root"];
        out.extend_from_slice(&tbf);
        sh(&out);
        let mut back = vec!["tc", "qdisc", "add", "dev", ns_if.as_str(), "root"];
        back.extend_from_slice(&tbf);
        inside(&back);
        ns
    }

    /// `program args...` run inside the namespace.
    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        c
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// Whether this process runs as root (`ip netns` and `tc` need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
