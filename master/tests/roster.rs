//! The site's roster changes while the master runs, under mutual TLS from a
//! site CA: a node enrolled with the real `vidar-master enroll` command is
//! let in and planned on within seconds; one taken off with `vidar-master
//! revoke` is cut off at once: it leaves, its cameras are planned on the
//! others, and nothing it sends reaches the master any more. No restart.
//! (The nodes are in-process zenoh clients with real node bundles.)

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use vidar_link::{AliveToken, Link, LinkSettings, Mode};
use vidar_master::{Master, MasterConfig};
use vidar_protocol::Keys;

/// A node over TLS with its bundle: a liveliness token and a status every
/// 200 ms.
struct TlsNode {
    link: Link,
    _token: AliveToken,
    stop: Arc<AtomicBool>,
    status: Option<JoinHandle<()>>,
}

impl TlsNode {
    fn start(site: &str, ca: &Path, port: u16, name: &str) -> TlsNode {
        let link = LinkSettings {
            site: site.into(),
            connect: vec![format!("tls/127.0.0.1:{port}")],
            bundle: Some(ca.join("nodes").join(name)),
            ..LinkSettings::default()
        }
        .open(Mode::Client)
        .expect("node link");
        let id = node(name);
        let keys = Keys::new(site).expect("site");
        let token = link.alive(&keys.node_alive(&id)).expect("token");
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (link.clone(), stop.clone());
        let status = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _ = l.put(&keys.status(&id), &status_of(&id, 0));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        TlsNode {
            link,
            _token: token,
            stop,
            status: Some(status),
        }
    }
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.status.take() {
            let _ = t.join();
        }
        self.link.close();
    }
}

/// Runs the real `vidar-master` command; returns what it printed.
fn cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vidar-master"))
        .args(args)
        .output()
        .expect("vidar-master runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "vidar-master {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn planned(master: &Master) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = master
        .context()
        .plans
        .current()
        .map(|c| {
            c.plan
                .streams
                .iter()
                .map(|s| (s.camera.to_string(), s.node.to_string()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn live(master: &Master) -> Vec<String> {
    let mut v: Vec<String> = master
        .context()
        .membership
        .live()
        .into_iter()
        .map(|s| s.node.to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn nodes_enrolled_and_revoked_while_the_master_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = unique_site();
    let ca = dir.path().join("ca");
    let ca_arg = ca.to_string_lossy().to_string();
    cli(&[
        "ca", "init", "--dir", &ca_arg, "--site", &site, "--enroll", "a",
    ]);
    let text = format!(
        r#"
database = {db:?}
http_addr = "127.0.0.1:0"
auth = "none"
node_timeout_s = 2
plan_every_s = 30

[cluster]
site = "{site}"
listen = ["tls/127.0.0.1:0"]
bundle = {bundle:?}

[[cameras]]
camera = "c1"
source = "rtsp://127.0.0.1/c1"

[[cameras]]
camera = "c2"
source = "rtsp://127.0.0.1/c2"
"#,
        db = dir.path().join("global.db").display().to_string(),
        bundle = ca.join("master").display().to_string(),
    );
    let cfg = MasterConfig::parse(&text, Path::new("roster-test.toml")).expect("config");
    let master = Master::start(&cfg).expect("master starts");
    let port: u16 = master
        .zenoh_locators()
        .iter()
        .find_map(|l| l.strip_prefix("tls/127.0.0.1:")?.parse().ok())
        .unwrap_or_else(|| panic!("no TLS locator in {:?}", master.zenoh_locators()));
    let metric = |name: &str| -> Option<f64> {
        let (_, body) = http(master.http_addr(), "GET", "/metrics");
        vidar_runtime::metrics::value(&String::from_utf8_lossy(&body), name, &[])
    };
    let _a = TlsNode::start(&site, &ca, port, "a");
    assert!(
        wait_for(Duration::from_secs(15), || planned(&master).len() == 2),
        "no plan over a: {:?}",
        planned(&master)
    );
    assert_eq!(metric("vidar_master_enrolled_nodes"), Some(1.0));

    // A node with a bundle that the master's roster does not name yet (as
    // if its bundle were copied before the roster): kept out, and counted.
    vidar_link::pki::enroll(&ca, &node("b"), 30).expect("bundle for b");
    std::fs::write(ca.join("master").join("enrolled"), "a\n").expect("roster without b");
    let b = TlsNode::start(&site, &ca, port, "b");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(live(&master), vec!["a"], "b got in before it was enrolled");

    // `vidar-master enroll b`: within seconds, b is live and planned on.
    let said = cli(&["enroll", "b", "--dir", &ca_arg]);
    assert!(said.contains("within 2 s"), "{said}");
    assert!(
        wait_for(Duration::from_secs(20), || live(&master) == ["a", "b"]),
        "b was not let in: live {:?}",
        live(&master)
    );
    assert_eq!(metric("vidar_master_enrolled_nodes"), Some(2.0));
    // Two cameras over two equal nodes: one each.
    assert!(
        wait_for(Duration::from_secs(20), || {
            let p = planned(&master);
            p.iter().any(|(_, n)| n == "a") && p.iter().any(|(_, n)| n == "b")
        }),
        "b was not planned on: {:?}",
        planned(&master)
    );

    // `vidar-master revoke b`: b leaves, both cameras go to a, and b's
    // statuses (it keeps sending, and reconnects) never bring it back.
    let said = cli(&["revoke", "b", "--dir", &ca_arg]);
    assert!(said.contains("cuts it off"), "{said}");
    assert!(
        wait_for(Duration::from_secs(20), || {
            live(&master) == ["a"] && planned(&master).iter().all(|(_, n)| n == "a")
        }),
        "b was not cut off: live {:?}, plan {:?}",
        live(&master),
        planned(&master)
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(live(&master), vec!["a"], "a revoked node came back");
    assert!(master
        .context()
        .membership
        .snapshot()
        .iter()
        .all(|n| n.node.as_str() != "b"));
    assert_eq!(metric("vidar_master_enrolled_nodes"), Some(1.0));
    drop(b);

    // A roster file that cannot be parsed keeps the roster in force.
    std::fs::write(ca.join("master").join("enrolled"), "a\nnot an id!\n").expect("write");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(live(&master), vec!["a"], "a broken roster shut a out");
    assert_eq!(metric("vidar_master_enrolled_nodes"), Some(1.0));
    master.shutdown().expect("clean shutdown");
}
