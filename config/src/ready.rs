//! How a started Vidar process tells whoever started it where it listens.
//!
//! Give a listener port 0 (`http_addr = "127.0.0.1:0"`,
//! `listen = ["tls/127.0.0.1:0"]`, `vidar-camera --port 0`) and the kernel
//! picks a free port when the process binds it: no port is chosen by one
//! process and bound by another, so none can be taken in between. The
//! process then writes what it bound to the file named by
//! [`READY_FILE_ENV`] (`VIDAR_READY_FILE`), once everything serves: a
//! supervisor, test harness or deployment script waits for that file
//! instead of polling ports. Without the variable nothing is written.
//!
//! The file is a few `key=value` lines, written to a temporary name and
//! renamed into place, so a reader never sees half of it:
//!
//! ```text
//! pid=4242
//! http=127.0.0.1:43121
//! zenoh=tls/127.0.0.1:39517
//! ```
//!
//! Keys: `pid`; `http` (the master's API and UI, or an edge's `/metrics`);
//! `zenoh` (one line per locator the cluster session listens on);
//! `rtsp` (`vidar-camera`'s server). Unknown keys are skipped by [`Ready::parse`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The environment variable naming the ready file.
pub const READY_FILE_ENV: &str = "VIDAR_READY_FILE";

/// What a process listens on, once it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// The process id.
    pub pid: u32,
    /// Its HTTP server.
    pub http: Option<SocketAddr>,
    /// Locators its zenoh session listens on (`tcp/…` or `tls/…`).
    pub zenoh: Vec<String>,
    /// Its RTSP server.
    pub rtsp: Option<SocketAddr>,
}

impl Ready {
    /// This process, listening on nothing yet.
    pub fn this_process() -> Ready {
        Ready {
            pid: std::process::id(),
            ..Ready::default()
        }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut s = format!("pid={}\n", self.pid);
        if let Some(a) = self.http {
            let _ = writeln!(s, "http={a}");
        }
        for z in &self.zenoh {
            let _ = writeln!(s, "zenoh={z}");
        }
        if let Some(a) = self.rtsp {
            let _ = writeln!(s, "rtsp={a}");
        }
        s
    }

    /// Reads [`Ready::render`]'s text; an error names the line that is wrong.
    pub fn parse(text: &str) -> Result<Ready, String> {
        let mut r = Ready::default();
        let addr = |n: usize, v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|e| format!("line {n}: {v:?} is not an address: {e}"))
        };
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("line {n}: {line:?} is not key=value"));
            };
            match k {
                "pid" => {
                    r.pid = v.parse().map_err(|e| format!("line {n}: pid {v:?}: {e}"))?;
                }
                "http" => r.http = Some(addr(n, v)?),
                "rtsp" => r.rtsp = Some(addr(n, v)?),
                "zenoh" => r.zenoh.push(v.to_string()),
                _ => {}
            }
        }
        if r.pid == 0 {
            return Err("no pid line".into());
        }
        Ok(r)
    }

    /// The port of the first zenoh locator announced.
    pub fn zenoh_port(&self) -> Option<u16> {
        self.zenoh.iter().find_map(|l| locator_port(l))
    }

    /// Writes the file named by [`READY_FILE_ENV`], if set; returns its path.
    pub fn announce(&self) -> std::io::Result<Option<PathBuf>> {
        match std::env::var_os(READY_FILE_ENV) {
            Some(p) if !p.is_empty() => {
                let path = PathBuf::from(p);
                self.write_to(&path)?;
                Ok(Some(path))
            }
            _ => Ok(None),
        }
    }

    /// Writes the file at `path`: a temporary file next to it, renamed into place.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, path)
    }
}

/// The port of a zenoh locator (`tls/127.0.0.1:7447`, `tcp/[::1]:7448`).
pub fn locator_port(locator: &str) -> Option<u16> {
    locator.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_the_bad_line() {
        let r = Ready {
            pid: 42,
            http: Some("127.0.0.1:8080".parse().expect("addr")),
            zenoh: vec!["tls/127.0.0.1:7447".into(), "tcp/[::1]:7448".into()],
            rtsp: None,
        };
        assert_eq!(Ready::parse(&r.render()), Ok(r.clone()));
        assert_eq!(r.zenoh_port(), Some(7447));
        assert_eq!(locator_port("tcp/[::1]:7448"), Some(7448));
        assert_eq!(locator_port("tcp/nowhere"), None);
        let dir = std::env::temp_dir().join(format!("vidar-ready-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("x.ready");
        r.write_to(&path).expect("write");
        let back = std::fs::read_to_string(&path).expect("read");
        assert_eq!(Ready::parse(&back), Ok(r));
        assert!(!dir.join("x.ready.tmp").exists());
        std::fs::remove_dir_all(&dir).expect("clean");
        assert_eq!(
            Ready::parse("pid=1\nhttp=localhost"),
            Err("line 2: \"localhost\" is not an address: invalid socket address syntax".into())
        );
        assert_eq!(
            Ready::parse("http=127.0.0.1:1\n"),
            Err("no pid line".into())
        );
        assert!(Ready::parse("pid=1\nnew_key=x\n").is_ok());
    }
}
