//! The web UI's API and authentication on a real master (temp global
//! database, real HTTP): 401s and redirects, logins, roles, bearer tokens,
//! session expiry, the login rate limit, tiles over zenoh, CSV/JSON exports
//! with hostile values, and 400s on malformed parameters.

mod common;

use std::time::Duration;

use common::*;
use vidar_link::{LinkSettings, Mode};
use vidar_master::Master;
use vidar_protocol::messages::{CameraTile, TileBox};
use vidar_protocol::{wire, BBox, IdentityId, Keys, StreamState, TrackId, UnixMs};
use zenoh::Wait;

struct Site {
    _dir: tempfile::TempDir,
    master: Master,
    site: String,
    zenoh: String,
}

/// A master with users and tokens on a database holding identity 1 on
/// cameras `lobby` and `-dock` (a name a spreadsheet would take for a formula).
fn site(extra: &str) -> Site {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = seed_database(
        dir.path(),
        vec![
            sighting(1, "lobby", 1_000, 2_500),
            sighting(1, "-dock", 5_000, 6_000),
            sighting(2, "lobby", 3_000, 3_500),
            identity(1, "lobby", 1_000),
            snapshot(1, "lobby", 1_500),
        ],
    );
    let site = unique_site();
    let extra = format!("{extra}\n{}", users_toml());
    let cfg = config(&db, &site, &extra);
    let master = Master::start(&cfg).expect("master starts");
    let zenoh = zenoh_endpoint(&master);
    Site {
        _dir: dir,
        master,
        site,
        zenoh,
    }
}

fn get(a: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(a, "GET", path, headers, b"")
}

#[test]
fn unauthenticated_requests_are_refused() {
    let s = site("");
    let a = s.master.http_addr();
    for path in [
        "/api/trajectory?identity=1",
        "/api/sightings?camera=lobby",
        "/api/nodes",
        "/api/plan",
        "/api/tiles",
        "/api/tiles/lobby.jpg",
        "/api/events",
        "/api/trajectory.csv?identity=1",
        "/api/snapshot/1",
        "/api/floorplan",
        "/api/me",
    ] {
        let r = get(a, path, &[]);
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(r.json()["error"].as_str().is_some(), "{path}");
        assert!(r.header("www-authenticate").is_some(), "{path}");
    }
    let r = request(a, "POST", "/api/sync", &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(get(a, "/metrics", &[]).status, 401);
    // A wrong or foreign Authorization header is refused, not ignored.
    for auth in ["Bearer nope", "Basic YW5uOmFubi1wdw==", "Bearer"] {
        let r = get(a, "/api/plan", &[("Authorization", auth)]);
        assert_eq!(r.status, 401, "{auth}");
    }
    // Pages redirect to the login page; it and the assets are open.
    let r = get(a, "/", &[]);
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    let r = get(a, "/login", &[]);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("name=\"password\""));
    assert!(r
        .header("content-security-policy")
        .is_some_and(|c| c.contains("script-src 'self'")));
    assert_eq!(get(a, "/static/app.js", &[]).status, 200);
    assert_eq!(get(a, "/healthz", &[]).status, 200);
    // A forged cookie is no session.
    let r = get(a, "/api/plan", &[("Cookie", "vidar_session=00ff")]);
    assert_eq!(r.status, 401);
    s.master.shutdown().expect("clean shutdown");
}

#[test]
fn logins_sessions_and_roles() {
    let s = site("");
    let a = s.master.http_addr();
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    for body in [
        "user=ann&password=wrong",
        "user=nobody&password=ann-pw",
        "user=ann&password=",
    ] {
        let r = request(a, "POST", "/login", &form, body.as_bytes());
        assert_eq!(r.status, 401, "{body}");
        assert!(r.text().contains("Wrong user name or password"), "{body}");
        assert!(r.header("set-cookie").is_none());
    }
    let r = request(a, "POST", "/login", &form, b"user=ann");
    assert_eq!(r.status, 400);
    // An injected user name is escaped in the page, never echoed raw.
    let r = request(
        a,
        "POST",
        "/login",
        &form,
        b"user=%3Cscript%3Ealert(1)%3C%2Fscript%3E&password=x",
    );
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("<script>alert"));

    let r = request(a, "POST", "/login", &form, b"user=ann&password=ann-pw");
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    let set = r.header("set-cookie").expect("cookie");
    for attr in ["vidar_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let ann = set.split(';').next().expect("pair").to_string();
    let c = [("Cookie", ann.as_str())];
    let r = get(a, "/api/trajectory?identity=1", &c);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["sightings"].as_array().map(|x| x.len()), Some(2));
    let r = get(a, "/", &c);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("/static/app.js"));
    assert_eq!(get(a, "/login", &c).status, 303, "logged in: no login page");
    let me = get(a, "/api/me", &c).json();
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("ann"), Some("viewer"))
    );
    assert_eq!(get(a, "/metrics", &c).status, 200);
    // A viewer may not change state.
    let r = request(a, "POST", "/api/sync", &c, b"");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("admin")));

    let root = login(a, "root", "root-pw");
    let c = [("Cookie", root.as_str())];
    assert_eq!(request(a, "POST", "/api/sync", &c, b"").status, 202);
    // ... but not from another site's page.
    let evil = [("Cookie", root.as_str()), ("Origin", "http://evil.example")];
    assert_eq!(request(a, "POST", "/api/sync", &evil, b"").status, 403);
    let same = format!("http://{a}");
    let ok = [("Cookie", root.as_str()), ("Origin", same.as_str())];
    assert_eq!(request(a, "POST", "/api/sync", &ok, b"").status, 202);

    // Logging out ends the session at once.
    let r = request(a, "POST", "/logout", &[("Cookie", ann.as_str())], b"");
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    assert!(r
        .header("set-cookie")
        .is_some_and(|v| v.contains("Max-Age=0")));
    let r = get(a, "/api/plan", &[("Cookie", ann.as_str())]);
    assert_eq!(r.status, 401);
    assert_eq!(
        get(a, "/api/plan", &c).status,
        200,
        "root's session is unaffected"
    );
    s.master.shutdown().expect("clean shutdown");
}

#[test]
fn bearer_tokens_carry_their_role() {
    let s = site("");
    let a = s.master.http_addr();
    let viewer = [("Authorization", "Bearer viewer-token")];
    let admin = [("Authorization", "bearer admin-token")];
    assert_eq!(get(a, "/api/trajectory?identity=p1", &viewer).status, 200);
    assert_eq!(get(a, "/metrics", &viewer).status, 200);
    assert_eq!(request(a, "POST", "/api/sync", &viewer, b"").status, 403);
    assert_eq!(request(a, "POST", "/api/sync", &admin, b"").status, 202);
    // Token callers are not browsers: no Origin check applies to them.
    let admin_origin = [
        ("Authorization", "Bearer admin-token"),
        ("Origin", "http://elsewhere"),
    ];
    assert_eq!(
        request(a, "POST", "/api/sync", &admin_origin, b"").status,
        202
    );
    s.master.shutdown().expect("clean shutdown");
}

#[test]
fn wrong_bearer_tokens_are_slowed_down() {
    let s = site("");
    let a = s.master.http_addr();
    let wrong = [("Authorization", "Bearer guess")];
    for _ in 0..10 {
        assert_eq!(get(a, "/api/nodes", &wrong).status, 401);
    }
    let r = get(a, "/api/nodes", &[("Authorization", "Bearer viewer-token")]);
    assert_eq!(r.status, 429, "even a right token waits: {}", r.text());
    assert!(r.header("retry-after").is_some());
    // A session from the same address is not a token: not slowed.
    let ann = login(a, "ann", "ann-pw");
    assert_eq!(
        get(a, "/api/nodes", &[("Cookie", ann.as_str())]).status,
        200
    );
    s.master.shutdown().expect("clean shutdown");
}

#[test]
fn sessions_expire() {
    let s = site("session_ttl_s = 1\nsession_idle_s = 1");
    let a = s.master.http_addr();
    let ann = login(a, "ann", "ann-pw");
    let c = [("Cookie", ann.as_str())];
    assert_eq!(get(a, "/api/plan", &c).status, 200);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(get(a, "/api/plan", &c).status, 401);
    let r = get(a, "/", &c);
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    s.master.shutdown().expect("clean shutdown");
}

#[test]
fn failed_logins_are_rate_limited() {
    let s = site("");
    let a = s.master.http_addr();
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    for _ in 0..5 {
        let r = request(a, "POST", "/login", &form, b"user=ann&password=guess");
        assert_eq!(r.status, 401);
    }
    // Locked: even the right password waits.
    let r = request(a, "POST", "/login", &form, b"user=ann&password=ann-pw");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    // Another user from the same address is not locked yet.
    login(a, "root", "root-pw");
    s.master.shutdown().expect("clean shutdown");
}

#[test]
fn exports_escape_and_parameters_are_checked() {
    let s = site("");
    let a = s.master.http_addr();
    let t = [("Authorization", "Bearer viewer-token")];
    let r = get(a, "/api/trajectory.csv?identity=p1", &t);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/csv")));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"trajectory-p1.csv\"")
    );
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "identity,camera,node,seq,first_ms,last_ms,duration_ms,first_utc,last_utc,synced",
            "1,lobby,edge-a,1,1000,2500,1500,1970-01-01T00:00:01.000Z,1970-01-01T00:00:02.500Z,true",
            "1,'-dock,edge-a,2,5000,6000,1000,1970-01-01T00:00:05.000Z,1970-01-01T00:00:06.000Z,true",
        ],
        "{text}"
    );
    let r = get(a, "/api/trajectory.json?identity=1&from=0&to=4000", &t);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-disposition")
        .is_some_and(|v| v.starts_with("attachment")));
    assert_eq!(r.json()["sightings"].as_array().map(|x| x.len()), Some(1));
    // An identity nobody saw is an empty export, not an error.
    let r = get(a, "/api/trajectory.csv?identity=77", &t);
    assert_eq!((r.status, r.text().lines().count()), (200, 1));

    for (path, param) in [
        ("/api/trajectory.csv?identity=abc", Some("identity")),
        ("/api/trajectory.csv", Some("identity")),
        ("/api/trajectory.csv?identity=1&from=-4", Some("from")),
        ("/api/trajectory.csv?identity=1&from=9&to=1", Some("to")),
        ("/api/trajectory.json?identity=1&limit=0", Some("limit")),
        ("/api/trajectory.csv?identity=1&camera=x", None),
        ("/api/trajectory.csv?identity=1%27%3B--", Some("identity")),
        ("/api/tiles/%3Cimg%20src%3Dx%3E.jpg", Some("camera")),
        ("/api/tiles/a%2Fb.jpg", Some("camera")),
        ("/api/sightings?camera=%3Cscript%3E", Some("camera")),
    ] {
        let r = get(a, path, &t);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["parameter"].as_str(), param, "{path}: {v}");
        // Error messages are JSON strings: never HTML a browser would run.
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    }
    assert_eq!(get(a, "/api/tiles/nowhere.jpg", &t).status, 404);
    assert_eq!(get(a, "/api/tiles/lobby", &t).status, 404);
    let fp = get(a, "/api/floorplan", &t).json();
    assert_eq!(fp["configured"], false);
    assert_eq!(get(a, "/api/floorplan.png", &t).status, 404);
    s.master.shutdown().expect("clean shutdown");
}

#[test]
fn tiles_from_zenoh_are_served_and_garbage_is_counted() {
    let s = site("");
    let a = s.master.http_addr();
    let t = [("Authorization", "Bearer viewer-token")];
    let edge = LinkSettings {
        site: s.site.clone(),
        connect: vec![s.zenoh.clone()],
        ..LinkSettings::default()
    }
    .open_session(Mode::Peer)
    .expect("edge session");
    let keys = Keys::new(&s.site).expect("keys");
    let jpeg = jpeg(160, 120, (60, 20, 40, 90), 120);
    let tile = |captured_ms: UnixMs| CameraTile {
        camera: cam("lobby"),
        node: node("edge-a"),
        captured_ms,
        state: StreamState::Streaming,
        fps: 9.5,
        dropped: 3,
        width: 160,
        height: 120,
        jpeg: jpeg.clone(),
        boxes: vec![TileBox {
            bbox: BBox {
                x: 60.0,
                y: 20.0,
                w: 40.0,
                h: 90.0,
            },
            track: TrackId(4),
            identity: Some(IdentityId(1)),
        }],
    };
    let key = keys.tile(&node("edge-a"), &cam("lobby"));
    let mut n = 0i64;
    let seen = wait_for(Duration::from_secs(10), || {
        n += 1;
        let bytes = wire::encode(&tile(UnixMs(1_000 + n))).expect("encode");
        edge.put(&key, bytes).wait().expect("put");
        std::thread::sleep(Duration::from_millis(100));
        get(a, "/api/tiles", &t).json()["tiles"]
            .as_array()
            .is_some_and(|x| !x.is_empty())
    });
    assert!(seen, "no tile arrived");
    let v = get(a, "/api/tiles", &t).json();
    let m = &v["tiles"][0];
    assert_eq!(m["camera"], "lobby");
    assert_eq!(m["node"], "edge-a");
    assert_eq!(m["state"], "streaming");
    assert_eq!(m["dropped"], 3);
    assert_eq!(m["stale"], false);
    // Identity ids are exact decimal strings in JSON (they exceed 2^53).
    assert_eq!(m["boxes"][0]["identity"], "1");
    assert_eq!(m["boxes"][0]["bbox"]["w"], 40.0);
    let r = get(a, "/api/tiles/lobby.jpg", &t);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(r.body, jpeg);

    // Garbage, and a tile whose key names another camera, are refused and counted.
    let before = s.master.context().link.garbage().refused();
    edge.put(&key, vec![1u8, 2, 3]).wait().expect("put");
    let other = keys.tile(&node("edge-a"), &cam("dock"));
    edge.put(&other, wire::encode(&tile(UnixMs(99))).expect("encode"))
        .wait()
        .expect("put");
    assert!(wait_for(Duration::from_secs(5), || {
        s.master.context().link.garbage().refused() > before
            && s.master.context().ui.tiles.mismatched() > 0
    }));
    let v = get(a, "/api/tiles", &t).json();
    assert_eq!(v["tiles"].as_array().map(|x| x.len()), Some(1), "{v}");
    edge.close().wait().expect("close");
    s.master.shutdown().expect("clean shutdown");
}

/// One HTTPS request trusting only `cert`; the raw answer.
fn https_get(addr: std::net::SocketAddr, cert: &std::path::Path, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    use tokio_rustls::rustls::{self, pki_types::CertificateDer};
    let pem = std::fs::read_to_string(cert).expect("cert");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
        .expect("cert base64");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(der)).expect("trust cert");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let method = if body.is_empty() { "GET" } else { "POST" };
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut out = Vec::new();
    // The server may close without close_notify: keep what arrived.
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn https_when_a_certificate_is_configured() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        eprintln!("SKIPPED: openssl cannot make a test certificate");
        return;
    }
    let s = site(&format!(
        "tls_cert = {:?}\ntls_key = {:?}",
        cert.display().to_string(),
        key.display().to_string()
    ));
    let a = s.master.http_addr();
    let r = https_get(a, &cert, "/login", "");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("name=\"password\""));
    let r = https_get(a, &cert, "/login", "user=ann&password=ann-pw");
    assert!(r.starts_with("HTTP/1.1 303"), "{r}");
    let cookie = r
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_default();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Under TLS: a __Host- cookie (no other host can plant it) and HSTS.
    assert!(cookie.contains("__Host-vidar_session="), "{cookie}");
    assert!(
        r.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{r}"
    );
    // Plain HTTP on the HTTPS port gets no answer.
    let mut plain = std::net::TcpStream::connect(a).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    std::io::Write::write_all(&mut plain, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut buf);
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    s.master.shutdown().expect("clean shutdown");
}

#[test]
fn misconfigured_tls_and_auth_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("g.db");
    let parse = |extra: &str| {
        let text = format!("database = {:?}\n{extra}\n", db.display().to_string());
        vidar_master::MasterConfig::parse(&text, std::path::Path::new("m.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let e = parse("");
    assert!(e.contains("users: none configured"), "{e}");
    let e = parse("auth = \"none\"\nhttp_addr = \"0.0.0.0:8080\"");
    assert!(
        e.contains("auth: \"none\" is only allowed with a loopback"),
        "{e}"
    );
    let e = parse(&format!(
        "tls_cert = \"/nonexistent.pem\"\n{}",
        users_toml()
    ));
    assert!(
        e.contains("tls_cert: /nonexistent.pem is not a readable file"),
        "{e}"
    );
    assert!(e.contains("tls_key: required with tls_cert"), "{e}");
    let e = parse("[[users]]\nname = \"x\"\nrole = \"root\"\npassword_hash = \"x\"\n");
    assert!(e.contains("role"), "{e}");
    let e = parse("[[users]]\nname = \"x\"\nrole = \"admin\"\npassword_hash = \"x\"\n");
    assert!(e.contains("users[0].password_hash"), "{e}");
}

#[test]
fn only_allowed_host_names_are_answered() {
    // The test master listens on loopback: loopback names only by default.
    let s = site("");
    let a = s.master.http_addr();
    let port = a.port();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let r = get(a, "/login", &[("Host", &host)]);
        assert_eq!(r.status, 200, "{host}");
    }
    // A DNS-rebinding page: its name, our address.
    for path in ["/login", "/api/plan", "/metrics", "/"] {
        let r = get(a, path, &[("Host", &format!("attacker.example:{port}"))]);
        assert_eq!(r.status, 421, "{path}: {}", r.text());
        assert!(r.text().contains("attacker.example"), "{path}");
    }
    // Probes answer any name.
    let r = get(a, "/healthz", &[("Host", "10.1.2.3:8080")]);
    assert_eq!(r.status, 200);
    s.master.shutdown().expect("clean shutdown");

    // A configured list replaces the default.
    let s = site("allowed_hosts = [\"vidar.example.com\"]");
    let a = s.master.http_addr();
    assert_eq!(
        get(a, "/login", &[("Host", "VIDAR.example.com:443")]).status,
        200
    );
    assert_eq!(get(a, "/login", &[("Host", &a.to_string())]).status, 421);
    s.master.shutdown().expect("clean shutdown");
}
