//! What the shaped-link tests share: a network namespace behind a
//! `tc`-shaped veth pair, and a site CA with its nodes enrolled.

use std::path::PathBuf;
use vidar_protocol::NodeId;
use vidar_testkit::netns::{is_root, Namespace};

/// A shaped link and a site for one test.
pub struct ShapedSite {
    /// The namespace (deleted when dropped).
    pub ns: Namespace,
    /// The host's end of the pair.
    pub host_ip: String,
    /// The namespace's end of the pair.
    pub ns_ip: String,
    /// The test's files (deleted when dropped).
    pub dir: tempfile::TempDir,
    /// The site's name.
    pub site: String,
    /// The site CA's folder (`ca/master`, `ca/nodes/<node>`).
    pub ca: PathBuf,
}

/// Asserts root, then makes namespace `<name>-<tag>` behind a pair shaped
/// to `rate_mbit` each way on `10.<octet>.x.y/30` (unique to this process),
/// and a site CA with `nodes` enrolled.
pub fn shaped_site(name: &str, octet: u8, rate_mbit: f64, nodes: &[&str]) -> ShapedSite {
    assert!(
        is_root(),
        "this test shapes a link in a network namespace (ip netns, tc): run it as root, as CI does"
    );
    vidar_testkit::require_node_env();
    let tag = std::process::id() % 10_000;
    let subnet = format!("10.{octet}.{}", tag % 64 * 4);
    let (host_ip, ns_ip) = (format!("{subnet}.1"), format!("{subnet}.2"));
    let short = format!("v{}{tag}", &name[..1]);
    let ns = Namespace::create(
        &format!("vidar-{name}-{tag}"),
        &short,
        &host_ip,
        &ns_ip,
        rate_mbit,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let site = format!("{}{tag}", &name[..1]);
    let ca = dir.path().join("ca");
    vidar_link::pki::init_ca(&ca, &site, 30).expect("ca init");
    for n in nodes {
        vidar_link::pki::enroll(&ca, &NodeId::new(n).expect("id"), 30).expect("enroll");
    }
    ShapedSite {
        ns,
        host_ip,
        ns_ip,
        dir,
        site,
        ca,
    }
}

/// How long a process may take to start serving.
pub const START: std::time::Duration = std::time::Duration::from_secs(120);

/// A binary of this workspace.
pub fn bin(name: &str) -> PathBuf {
    vidar_testkit::process::sibling_bin(env!("CARGO_BIN_EXE_vidar-edge"), name)
}

/// A started master.
pub struct Master {
    /// Its process.
    pub proc: vidar_testkit::process::Proc,
    /// Its API's port on 127.0.0.1.
    pub http: u16,
    /// Its zenoh router, `host_ip:port`.
    pub router: String,
}

/// A started edge node.
pub struct Edge {
    /// Its process.
    pub proc: vidar_testkit::process::Proc,
    /// Its `/metrics` address.
    pub metrics: std::net::SocketAddr,
}

impl ShapedSite {
    /// Starts the master on the host (its router on the host's end of the
    /// pair, mutual TLS, no login), with `cameras` (`[[cameras]]` entries).
    pub fn start_master(&self, cameras: &str) -> Master {
        let toml = format!(
            "master_id = \"master\"\ndatabase = \"{db}\"\nhttp_addr = \"127.0.0.1:0\"\n\
             sync_every_s = 2\nplan_every_s = 60\nnode_timeout_s = 5\nauth = \"none\"\n\
             [cluster]\nsite = \"{site}\"\nlisten = [\"tls/{host}:0\"]\nbundle = \"{bundle}\"\n{cameras}",
            db = self.dir.path().join("global.db").display(),
            site = self.site,
            host = self.host_ip,
            bundle = self.ca.join("master").display(),
        );
        let cfg = self.dir.path().join("master.toml");
        std::fs::write(&cfg, toml).expect("master config");
        let mut proc = vidar_testkit::process::Proc::spawn(
            self.dir.path(),
            "master",
            &bin("vidar-master"),
            &["run", "--config", &cfg.to_string_lossy()],
        )
        .expect("spawn the master");
        let ready = proc.wait_ready(START).unwrap_or_else(|e| panic!("{e}"));
        let http = ready.http.expect("the master announces its API").port();
        let zport = ready
            .zenoh_port()
            .unwrap_or_else(|| panic!("no zenoh locator in {ready:?}"));
        Master {
            proc,
            http,
            router: format!("{}:{zport}", self.host_ip),
        }
    }

    /// Starts an edge node per `(id, inside the namespace, detect_fps,
    /// reid_crops_per_s, more [sharing] keys as TOML lines)`, connected to
    /// `router`, and waits until each serves.
    pub fn start_edges(&self, router: &str, nodes: &[(&str, bool, f64, f64, &str)]) -> Vec<Edge> {
        let mut procs = Vec::new();
        for &(id, inside, fps, reid, sharing) in nodes {
            let metrics = if inside {
                self.ns_ip.as_str()
            } else {
                "127.0.0.1"
            };
            let toml = format!(
                "node_id = \"{id}\"\ndatabase = \"{db}\"\nmetrics_addr = \"{metrics}:0\"\n\
                 detection_interval = 5\ninference_workers = 1\n[models.runtime]\nintra_threads = 1\n\
                 [detector]\nmax_batch = 1\n\
                 [cluster]\nsite = \"{site}\"\nconnect = [\"tls/{router}\"]\nbundle = \"{bundle}\"\n\
                 [sharing]\nstatus_every_ms = 500\ntile_every_ms = 0\n\
                 detect_fps = {fps}\nreid_crops_per_s = {reid}\n{sharing}\n\
                 [sharing.ingest]\ntransport = \"tcp\"\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n",
                db = self.dir.path().join(format!("{id}.db")).display(),
                site = self.site,
                bundle = self.ca.join("nodes").join(id).display(),
            );
            let cfg = self.dir.path().join(format!("{id}.toml"));
            std::fs::write(&cfg, toml).expect("edge config");
            let cfg = cfg.to_string_lossy().to_string();
            let args = ["run", "--config", cfg.as_str()];
            let cmd = if inside {
                self.ns.command(&bin("vidar-edge"), &args)
            } else {
                let mut c = std::process::Command::new(bin("vidar-edge"));
                c.args(args);
                c
            };
            procs.push(
                vidar_testkit::process::Proc::spawn_command(self.dir.path(), id, cmd)
                    .expect("spawn an edge"),
            );
        }
        procs
            .into_iter()
            .map(|mut proc| {
                let ready = proc.wait_ready(START).unwrap_or_else(|e| panic!("{e}"));
                let metrics = ready.http.expect("an edge announces /metrics");
                Edge { proc, metrics }
            })
            .collect()
    }
}
