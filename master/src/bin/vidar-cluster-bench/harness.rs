//! What every measurement needs: percentiles, child processes (the shared
//! `vidar_testkit::process` harness: ports picked by the kernel and read from
//! each child's ready file, output in a log file, killed when dropped), a
//! site of one master and its edges on loopback, a tiny HTTP GET and metric
//! lookup and polling.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The `q` quantile (0..=1) of `sorted`, nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub use vidar_testkit::process::Proc;

/// How long a process may take to start serving.
const START: Duration = Duration::from_secs(120);

/// Starts `bin` from next to this binary (`vidar_testkit::process`: output
/// in `dir/name.log`, found by its ready file).
pub fn spawn(dir: &Path, name: &str, bin: &str, args: &[&str]) -> Result<Proc> {
    let exe = std::env::current_exe()?.with_file_name(bin);
    if !exe.is_file() {
        bail!(
            "{} not found: build every binary (`cargo build --release --workspace --bins`)",
            exe.display()
        );
    }
    Ok(Proc::spawn(dir, name, &exe, args)?)
}

/// Waits for `p`'s ready file.
pub fn ready(p: &mut Proc) -> Result<vidar_testkit::process::Ready> {
    p.wait_ready(START).map_err(anyhow::Error::msg)
}

pub use vidar_testkit::http::{get as http_get, metric};

/// Polls `f` every 20 ms until it gives a value, at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if t0.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A site name no other run of this process or another uses: `prefix`, the
/// pid and a counter.
pub fn site_name(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

/// A site of one master (and its edges) on loopback.
pub struct Site {
    /// The zenoh site name.
    pub site: String,
    /// The master's zenoh port (0 until [`Site::master`] started it).
    pub zport: u16,
    /// The master's HTTP port (0 until [`Site::master`] started it).
    pub http: u16,
    /// The site CA directory, when the site runs over mutual TLS.
    pub ca: Option<PathBuf>,
}

impl Site {
    /// A fresh site name.
    pub fn new() -> Result<Site> {
        Ok(Site {
            site: site_name("b"),
            zport: 0,
            http: 0,
            ca: None,
        })
    }

    /// A site over mutual TLS: a fresh CA in `dir` with `nodes` enrolled.
    pub fn secure(dir: &Path, nodes: &[&str]) -> Result<Site> {
        let mut site = Site::new()?;
        let ca = dir.join(format!("ca-{}", site.site));
        vidar_link::pki::init_ca(&ca, &site.site, 30)?;
        for n in nodes {
            vidar_link::pki::enroll(&ca, &vidar_protocol::NodeId::new(n)?, 30)?;
        }
        site.ca = Some(ca);
        Ok(site)
    }

    /// The master's `[cluster]` endpoint and bundle lines.
    fn master_cluster(&self) -> String {
        match &self.ca {
            None => format!("listen = [\"tcp/127.0.0.1:{}\"]\n", self.zport),
            Some(ca) => format!(
                "listen = [\"tls/127.0.0.1:{}\"]\nbundle = \"{}\"\n",
                self.zport,
                ca.join("master").display()
            ),
        }
    }

    /// An edge's `[cluster]` endpoint and bundle lines.
    fn edge_cluster(&self, id: &str) -> Result<String> {
        Ok(match &self.ca {
            None => format!(
                "connect = [\"tcp/127.0.0.1:{}\"]\nlisten = [\"tcp/127.0.0.1:0\"]\n",
                self.zport
            ),
            Some(ca) => format!(
                "connect = [\"tls/127.0.0.1:{}\"]\nbundle = \"{}\"\n",
                self.zport,
                ca.join("nodes").join(id).display()
            ),
        })
    }

    /// Starts a `vidar-master` for `cameras` (`(id, url)`), syncing every
    /// `sync_every` s, on ports the kernel picks; waits until it serves.
    pub fn master(
        &mut self,
        dir: &Path,
        cameras: &[(String, String)],
        sync_every: f64,
    ) -> Result<Proc> {
        let mut toml = format!(
            "database = \"{db}\"\nhttp_addr = \"127.0.0.1:{http}\"\nsync_every_s = {sync_every}\n\
             node_timeout_s = 3\nauth = \"none\"\n[cluster]\nsite = \"{site}\"\n{cluster}",
            db = dir.join(format!("global-{}.db", self.site)).display(),
            http = self.http,
            site = self.site,
            cluster = self.master_cluster()
        );
        for (c, src) in cameras {
            toml.push_str(&format!(
                "[[cameras]]\ncamera = \"{c}\"\nsource = \"{src}\"\n"
            ));
        }
        let cfg = dir.join(format!("master-{}.toml", self.site));
        std::fs::write(&cfg, toml)?;
        let cfg = cfg.to_string_lossy().to_string();
        let mut p = spawn(
            dir,
            &format!("master-{}", self.site),
            "vidar-master",
            &["run", "--config", &cfg],
        )?;
        let r = ready(&mut p)?;
        self.http = r
            .http
            .context("the master announced no HTTP address")?
            .port();
        self.zport = r
            .zenoh_port()
            .context("the master announced no zenoh locator")?;
        Ok(p)
    }

    /// Starts a `vidar-edge` `id` on database `db`, metrics on port `metrics`
    /// (0: the kernel's pick; a restarted node passes the one it had); waits
    /// until it serves and returns it with its metrics port.
    pub fn edge(&self, dir: &Path, id: &str, db: &Path, metrics: u16) -> Result<(Proc, u16)> {
        let toml = format!(
            "node_id = \"{id}\"\ndatabase = \"{db}\"\nmetrics_addr = \"127.0.0.1:{metrics}\"\n\
             inference_workers = 1\n[models.runtime]\nintra_threads = 1\n[detector]\nmax_batch = 1\n\
             [cluster]\nsite = \"{site}\"\n{cluster}\
             [sharing]\nstatus_every_ms = 250\ndetect_fps = 30.0\nreid_crops_per_s = 30.0\n\
             [sharing.ingest]\ntransport = \"tcp\"\nbackoff_initial_ms = 100\nbackoff_max_ms = 500\n",
            db = db.display(),
            site = self.site,
            cluster = self.edge_cluster(id)?,
        );
        let cfg = dir.join(format!("{id}-{}.toml", self.site));
        std::fs::write(&cfg, toml)?;
        let cfg = cfg.to_string_lossy().to_string();
        let mut p = spawn(
            dir,
            &format!("{id}-{}", self.site),
            "vidar-edge",
            &["run", "--config", &cfg],
        )?;
        let r = ready(&mut p)?;
        let port = r
            .http
            .context("the edge announced no /metrics address")?
            .port();
        Ok((p, port))
    }
}
