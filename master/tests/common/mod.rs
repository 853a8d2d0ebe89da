//! Helpers shared by the master's integration tests: free ports, unique sites,
//! configs, a tiny HTTP/1.1 client and record builders.
#![allow(dead_code)]

pub mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use vidar_config::Config;

use vidar_master::MasterConfig;
use vidar_protocol::messages::{NodeCapacity, NodeLoad, NodeStatus};
use vidar_protocol::{BBox, CameraId, IdentityId, NodeId, TrackId, UnixMs};
use vidar_store::{BoxPoint, IdentityRecord, Record, Sighting, Snapshot};

static N: AtomicU32 = AtomicU32::new(0);

/// A site name no other test (or test process) uses.
pub fn unique_site() -> String {
    format!(
        "t{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A master config on `db`, zenoh and HTTP on ports the kernel picks (see
/// [`zenoh_endpoint`] and `Master::http_addr`); `auth = "none"` unless
/// `extra` configures users, tokens or auth.
pub fn config(db: &Path, site: &str, extra: &str) -> MasterConfig {
    let open = if ["auth =", "[[users]]", "[[tokens]]"]
        .iter()
        .any(|k| extra.contains(k))
    {
        ""
    } else {
        "auth = \"none\""
    };
    let text = format!(
        r#"
database = {db:?}
http_addr = "127.0.0.1:0"
{open}
{extra}
[cluster]
site = "{site}"
listen = ["tcp/127.0.0.1:0"]
"#,
        db = db.display().to_string(),
    );
    MasterConfig::parse(&text, Path::new("test.toml")).expect("valid test config")
}

/// Where a peer connects to `m`'s zenoh router (`tcp/127.0.0.1:PORT`).
pub fn zenoh_endpoint(m: &vidar_master::Master) -> String {
    m.zenoh_locators()
        .into_iter()
        .find(|l| l.starts_with("tcp/127.0.0.1:"))
        .unwrap_or_else(|| panic!("no loopback locator in {:?}", m.zenoh_locators()))
}

/// GET (or POST) `path`; returns the status code and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<u8>) {
    let r = request(addr, method, path, &[], b"");
    (r.status, r.body)
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `method path` with extra `headers` and `body`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // A `Host` in `headers` replaces the address.
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or(addr.to_string(), |(_, v)| v.to_string());
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send request");
    s.write_all(body).expect("send body");
    // Read to the end, or to Content-Length (some servers keep the connection).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk).expect("read reply");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| buf.len() >= end + 4 + len) {
                break;
            }
        }
    }
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let mut body = buf[head_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body,
    }
}

/// A small real JPEG: a grey scene with a darker "person" in `person` (x, y, w, h).
pub fn jpeg(width: u32, height: u32, person: (u32, u32, u32, u32), shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let (px, py, pw, ph) = person;
        if x >= px && x < px + pw && y >= py && y < py + ph {
            image::Rgb([40, 60, 160])
        } else {
            image::Rgb([shade, shade, shade.saturating_add(20)])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode JPEG");
    out.into_inner()
}

/// A `password_hash` for `password` (few iterations: tests log in fast).
pub fn password_hash(password: &str) -> String {
    vidar_master::password::PasswordHash::create(password, 1000)
        .expect("random salt")
        .encode()
}

/// `[[users]]` and `[[tokens]]` for the UI tests: ann (viewer, "ann-pw"),
/// root (admin, "root-pw"), tokens "viewer-token" and "admin-token".
pub fn users_toml() -> String {
    use sha2::{Digest, Sha256};
    let digest = |t: &str| {
        Sha256::digest(t.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    format!(
        "[[users]]\nname = \"ann\"\nrole = \"viewer\"\npassword_hash = \"{}\"\n\
         [[users]]\nname = \"root\"\nrole = \"admin\"\npassword_hash = \"{}\"\n\
         [[tokens]]\nname = \"tool\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n\
         [[tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n",
        password_hash("ann-pw"),
        password_hash("root-pw"),
        digest("viewer-token"),
        digest("admin-token"),
    )
}

/// Logs `user` in; returns the `Cookie` header value of the session.
pub fn login(addr: SocketAddr, user: &str, password: &str) -> String {
    let body = format!("user={user}&password={password}");
    let r = request(
        addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 303, "login of {user}: {}", r.text());
    let cookie = r.header("set-cookie").expect("a session cookie");
    cookie.split(';').next().expect("cookie pair").to_string()
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// GET `path` as JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = http(addr, "GET", path);
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (code, v)
}

/// Waits until `f` is true, at most `limit`.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

pub fn node(s: &str) -> NodeId {
    NodeId::new(s).expect("valid id")
}

pub fn cam(s: &str) -> CameraId {
    CameraId::new(s).expect("valid id")
}

pub fn sighting(identity: u64, camera: &str, first_ms: i64, last_ms: i64) -> Record {
    Record::Sighting(Sighting {
        identity: IdentityId(identity),
        camera: cam(camera),
        track: TrackId(identity),
        first_ms: UnixMs(first_ms),
        last_ms: UnixMs(last_ms),
        path: vec![BoxPoint {
            t_ms: UnixMs(first_ms),
            bbox: BBox {
                x: 1.0,
                y: 2.0,
                w: 3.0,
                h: 4.0,
            },
        }],
    })
}

pub fn identity(identity: u64, camera: &str, first_seen_ms: i64) -> Record {
    Record::Identity(IdentityRecord {
        identity: IdentityId(identity),
        camera: cam(camera),
        first_seen_ms: UnixMs(first_seen_ms),
        embedding: vec![1.0, 0.0, 0.0],
        model: "test-model".into(),
    })
}

pub fn snapshot(identity: u64, camera: &str, t_ms: i64) -> Record {
    Record::Snapshot(Snapshot {
        identity: IdentityId(identity),
        camera: cam(camera),
        t_ms: UnixMs(t_ms),
        jpeg: vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3],
    })
}

/// A global database at `dir/global.db` holding `records`, written as node
/// `edge-a`'s.
pub fn seed_database(dir: &Path, records: Vec<Record>) -> std::path::PathBuf {
    let db = dir.join("global.db");
    let w = vidar_store::WriterConfig::new(&db, node("edge-a"))
        .build(&())
        .expect("writer");
    for r in records {
        w.write(r).expect("write");
    }
    w.shutdown().expect("shutdown");
    db
}

/// A fake node's status: a 4-core box with room, reporting `records_last_seq`.
pub fn status_of(node: &NodeId, records_last_seq: u64) -> NodeStatus {
    NodeStatus {
        node: node.clone(),
        sent_ms: UnixMs::now(),
        started_ms: UnixMs(1),
        plan_version: 0,
        capacity: NodeCapacity {
            cores: 4,
            memory_mb: 8192,
            detect_fps: 60.0,
            reid_crops_per_s: 100.0,
            reid_service: true,
            jpeg_encode_cost: 0.6,
            jpeg_decode_cost: 0.3,
            detect_cores: 4.0,
        },
        load: NodeLoad {
            cameras: Vec::new(),
            detect_busy: 0.2,
            reid_busy: 0.1,
            cpu_cores: 0.0,
            job_cpu_cores: 0.0,
            reid_queue: 0,
            records_last_seq,
            unsynced: 0,
        },
        links: Vec::new(),
        metrics_addr: None,
        job_flows: Vec::new(),
    }
}
