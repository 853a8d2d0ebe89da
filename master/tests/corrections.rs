//! Operators' corrections through the HTTP API on a real global database:
//! split, merge and revert change what queries answer, are audited, keep
//! the hard rules, are refused by name when wrong, and reach the nodes over
//! a real zenoh session.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use vidar_link::{LinkSettings, Mode};
use vidar_master::Master;
use vidar_protocol::messages::{KeepApart, Merges, SplitAnnounce};
use vidar_protocol::{Keys, MessageKind};

/// Seqs 1..=4 of edge-a: 1 on c1 [1, 2] s, 1 on c2 [5, 6] s, 2 on c1
/// [3, 3.5] s, 3 on c1 [1.5, 1.8] s (with 1 on screen); identity records.
fn seeded(extra: &str) -> (tempfile::TempDir, Master, String, String) {
    seeded_with(
        vec![
            sighting(1, "c1", 1_000, 2_000),
            sighting(1, "c2", 5_000, 6_000),
            sighting(2, "c1", 3_000, 3_500),
            sighting(3, "c1", 1_500, 1_800),
            identity(1, "c1", 1_000),
            identity(2, "c1", 3_000),
            identity(3, "c1", 1_500),
        ],
        extra,
    )
}

/// A master on a global database holding `records` (edge-a's, from seq 1).
fn seeded_with(
    records: Vec<vidar_store::Record>,
    extra: &str,
) -> (tempfile::TempDir, Master, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = seed_database(dir.path(), records);
    let site = unique_site();
    let m = Master::start(&config(&db, &site, extra)).expect("master starts");
    let zenoh = zenoh_endpoint(&m);
    (dir, m, site, zenoh)
}

/// A node's session with the master's router (plaintext on loopback).
fn node_link(site: &str, zenoh: &str) -> vidar_link::Link {
    LinkSettings {
        site: site.to_string(),
        mode: Some(Mode::Client),
        connect: vec![zenoh.to_string()],
        ..LinkSettings::default()
    }
    .open(Mode::Client)
    .expect("node link")
}

fn post(m: &Master, body: &str, auth: &str) -> (u16, serde_json::Value) {
    let mut headers = vec![("Content-Type", "application/json")];
    if !auth.is_empty() {
        headers.push(("Authorization", auth));
    }
    let r = request(
        m.http_addr(),
        "POST",
        "/api/corrections",
        &headers,
        body.as_bytes(),
    );
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

fn trajectory(m: &Master, who: &str) -> Vec<(u64, String)> {
    let (code, v) = get_json(m.http_addr(), &format!("/api/trajectory?identity={who}"));
    assert_eq!(code, 200, "{v}");
    v["sightings"]
        .as_array()
        .expect("sightings")
        .iter()
        .map(|s| {
            (
                s["seq"].as_u64().unwrap_or(0),
                s["identity"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits (5 s at most) until `heard` holds `n` lines.
fn wait_to_hear(heard: &Mutex<Vec<String>>, n: usize) {
    let count = || heard.lock().expect("lock").len();
    assert!(
        wait_for(Duration::from_secs(5), || count() >= n),
        "{:?}",
        heard.lock().expect("lock")
    );
}

#[test]
fn split_merge_and_revert_change_answers_and_are_audited() {
    let (_dir, m, site, zenoh) = seeded("");
    // A node listening for what the master tells the nodes.
    let heard: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let link = node_link(&site, &zenoh);
    let keys = Keys::new(&site).expect("site");
    let h = heard.clone();
    let _sub = link
        .subscribe_any(&keys.merges(), move |p| match p.kind() {
            Some(MessageKind::SplitAnnounce) => {
                if let Some(s) = p.decode::<SplitAnnounce>() {
                    let line = format!("split {} {}->{}", s.sighting.seq, s.from, s.into);
                    h.lock().expect("lock").push(line);
                }
            }
            Some(MessageKind::KeepApart) => {
                if let Some(k) = p.decode::<KeepApart>() {
                    let view = k.view.map(|v| format!("{} from {}", v.identity, v.node));
                    let line = format!("apart {}->{} view {view:?}", k.from, k.into);
                    h.lock().expect("lock").push(line);
                }
            }
            Some(MessageKind::Merges) => {
                if let Some(ms) = p.decode::<Merges>() {
                    for x in ms.merges {
                        let line = format!("merge {}->{}", x.from, x.into);
                        h.lock().expect("lock").push(line);
                    }
                }
            }
            _ => {}
        })
        .expect("subscribe");
    std::thread::sleep(Duration::from_millis(500));

    let one = |seq: u64, who: &str| (seq, who.to_string());
    assert_eq!(trajectory(&m, "1"), [one(1, "1"), one(2, "1")]);
    // Split 1's c2 sighting off into a new identity (past every known id).
    let (code, v) = post(
        &m,
        r#"{"action":"split","node":"edge-a","seq":2,"from":"1","reason":"not the same coat"}"#,
        "",
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        (v["action"].as_str(), v["from"].as_str()),
        (Some("split"), Some("1"))
    );
    assert_eq!(v["into"], "4");
    assert_eq!(v["actor"], "anonymous");
    let split_seq = v["seq"].as_u64().expect("seq");
    assert_eq!(trajectory(&m, "1"), [one(1, "1")]);
    assert_eq!(trajectory(&m, "4"), [one(2, "4")]);
    let (_, t) = get_json(m.http_addr(), "/api/trajectory?identity=4");
    assert_eq!(t["sightings"][0]["recorded_identity"], "1");
    let (_, ids) = get_json(m.http_addr(), "/api/identities");
    let counts: Vec<(String, u64)> = ids["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .map(|i| {
            (
                i["identity"].as_str().unwrap_or("").into(),
                i["sightings"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        counts.contains(&("1".into(), 1)) && counts.contains(&("4".into(), 1)),
        "{counts:?}"
    );

    // A stale view, an unknown sighting, a second split of the same: refused by name.
    let (code, v) = post(
        &m,
        r#"{"action":"split","node":"edge-a","seq":2,"from":"1"}"#,
        "",
    );
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("shown under p4"),
        "{v}"
    );
    let (code, v) = post(
        &m,
        r#"{"action":"split","node":"edge-a","seq":99,"from":"1"}"#,
        "",
    );
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("edge-a/99"),
        "{v}"
    );
    // Moving 3's sighting (on c1 while 1 is there) to 1: two people at once.
    let (code, v) = post(
        &m,
        r#"{"action":"split","node":"edge-a","seq":4,"from":"3","into":"1"}"#,
        "",
    );
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("same time"),
        "{v}"
    );
    // Merging 3 into 1: the same rule.
    let (code, v) = post(&m, r#"{"action":"merge","from":"3","into":"1"}"#, "");
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("at once"), "{v}");
    // Bad bodies.
    for (body, want) in [
        (r#"{"action":"merge","from":"2","into":"2"}"#, 400),
        (r#"{"action":"merge","from":"2","into":"77"}"#, 404),
        (r#"{"action":"explode"}"#, 400),
        (r#"not json"#, 400),
        (r#"{"action":"revert","node":"edge-a","seq":3}"#, 404),
    ] {
        let (code, v) = post(&m, body, "");
        assert_eq!(code, want, "{body}: {v}");
        assert!(v["error"].is_string(), "{body}: {v}");
    }
    let long = format!(
        r#"{{"action":"merge","from":"2","into":"4","reason":"{}"}}"#,
        "x".repeat(2000)
    );
    let (code, v) = post(&m, &long, "");
    assert_eq!(
        (code, v["parameter"].as_str()),
        (400, Some("reason")),
        "{v}"
    );

    // Merge 2 into 4 (both on different cameras): one trajectory.
    let (code, v) = post(&m, r#"{"action":"merge","from":"2","into":"4"}"#, "");
    assert_eq!(code, 201, "{v}");
    let merge_seq = v["seq"].as_u64().expect("seq");
    assert_eq!(trajectory(&m, "4"), [one(3, "2"), one(2, "4")]);
    let (code, _) = post(&m, r#"{"action":"merge","from":"2","into":"4"}"#, "");
    assert_eq!(code, 409, "already one");

    // Revert the split: 1's sighting is 1's again, and 4 keeps 2 only.
    let revert =
        format!(r#"{{"action":"revert","node":"master","seq":{split_seq},"reason":"my mistake"}}"#);
    let (code, v) = post(&m, &revert, "");
    assert_eq!(code, 201, "{v}");
    let revert_seq = v["seq"].as_u64().expect("seq");
    assert_eq!(trajectory(&m, "1"), [one(1, "1"), one(2, "1")]);
    assert_eq!(trajectory(&m, "4"), [one(3, "2")]);
    let (code, _) = post(&m, &revert, "");
    assert_eq!(code, 409, "already reverted");
    let (code, _) = post(
        &m,
        &format!(r#"{{"action":"revert","node":"master","seq":{revert_seq}}}"#),
        "",
    );
    assert_eq!(code, 400, "a revert is not reverted");

    // The audit trail: newest first, reverted flags, by identity.
    let (code, v) = get_json(m.http_addr(), "/api/corrections");
    assert_eq!(code, 200, "{v}");
    let trail: Vec<(u64, String, bool)> = v["corrections"]
        .as_array()
        .expect("corrections")
        .iter()
        .map(|c| {
            (
                c["seq"].as_u64().unwrap_or(0),
                c["action"].as_str().unwrap_or("").into(),
                c["reverted"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            (revert_seq, "revert".into(), false),
            (merge_seq, "merge".into(), false),
            (split_seq, "split".into(), true),
        ]
    );
    assert_eq!(v["corrections"][2]["reason"], "not the same coat");
    let (_, v) = get_json(m.http_addr(), "/api/corrections?identity=2");
    assert_eq!(v["corrections"].as_array().map(|a| a.len()), Some(1));
    let (code, _) = get_json(m.http_addr(), "/api/corrections?identity=x");
    assert_eq!(code, 400);

    // The nodes heard the split and the merge (signed key, real session).
    wait_to_hear(&heard, 2);
    assert_eq!(
        *heard.lock().expect("lock"),
        ["split 2 p1->p4".to_string(), "merge p2->p4".to_string()]
    );
    let (_, body) = http(m.http_addr(), "GET", "/metrics");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("vidar_master_corrections_total 3"), "{text}");
    assert!(
        text.contains("vidar_master_corrections_refused_total 11"),
        "{text}"
    );

    // Undoing the merge: the nodes hear to take 2 apart again, with 2's
    // last recorded view (from edge-a's identity record).
    let undo = format!(r#"{{"action":"revert","node":"master","seq":{merge_seq}}}"#);
    let (code, v) = post(&m, &undo, "");
    assert_eq!(code, 201, "{v}");
    assert_eq!(trajectory(&m, "4"), Vec::<(u64, String)>::new());
    wait_to_hear(&heard, 3);
    assert_eq!(
        heard.lock().expect("lock")[2],
        r#"apart p2->p4 view Some("p2 from edge-a")"#
    );
    m.shutdown().expect("clean shutdown");
}

#[test]
fn only_admins_correct() {
    let (_dir, m, _site, _zenoh) = seeded(&users_toml());
    let body = r#"{"action":"merge","from":"2","into":"1"}"#;
    let (code, _) = post(&m, body, "");
    assert_eq!(code, 401);
    let (code, v) = post(&m, body, "Bearer viewer-token");
    assert_eq!(code, 403, "{v}");
    let (code, v) = get_json(m.http_addr(), "/api/corrections");
    assert_eq!(code, 401, "{v}");
    let (code, v) = post(&m, body, "Bearer admin-token");
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["actor"], "ops", "the token's name is the actor");
    m.shutdown().expect("clean shutdown");
}

#[test]
fn a_node_that_comes_back_is_sent_the_splits_of_its_sightings() {
    let (_dir, m, site, zenoh) = seeded("");
    // Two splits of edge-a's sightings while it is away; the second undone.
    let (code, v) = post(
        &m,
        r#"{"action":"split","node":"edge-a","seq":2,"from":"1"}"#,
        "",
    );
    assert_eq!(code, 201, "{v}");
    let (code, v) = post(
        &m,
        r#"{"action":"split","node":"edge-a","seq":3,"from":"2"}"#,
        "",
    );
    assert_eq!(code, 201, "{v}");
    let undo = format!(
        r#"{{"action":"revert","node":"master","seq":{}}}"#,
        v["seq"]
    );
    let (code, v) = post(&m, &undo, "");
    assert_eq!(code, 201, "{v}");
    // edge-a comes: it listens, then shows its liveliness token.
    let link = node_link(&site, &zenoh);
    let keys = Keys::new(&site).expect("site");
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let h = heard.clone();
    let _sub = link
        .subscribe::<SplitAnnounce>(&keys.merges(), move |_, s| {
            let line = format!("{} {}->{}", s.sighting.seq, s.from, s.into);
            h.lock().expect("lock").push(line);
        })
        .expect("subscribe");
    std::thread::sleep(Duration::from_millis(300));
    assert!(heard.lock().expect("lock").is_empty());
    let _alive = link
        .alive(&keys.node_alive(&node("edge-a")))
        .expect("token");
    assert!(
        wait_for(Duration::from_secs(10), || !heard
            .lock()
            .expect("lock")
            .is_empty()),
        "the split was not sent again"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(*heard.lock().expect("lock"), ["2 p1->p4".to_string()]);
    m.shutdown().expect("clean shutdown");
}

#[test]
fn a_split_moves_the_whole_track_unless_asked_for_one_piece() {
    // Seqs 1..=3 of edge-a: one track of 5 on c3 recorded in pieces;
    // seq 4: 7 on c3 while the track's last piece is.
    let (_dir, m, _site, _zenoh) = seeded_with(
        vec![
            sighting(5, "c3", 10_000, 20_000),
            sighting(5, "c3", 20_000, 30_000),
            sighting(5, "c3", 30_000, 32_000),
            sighting(7, "c3", 31_000, 31_500),
            identity(5, "c3", 10_000),
            identity(7, "c3", 31_000),
        ],
        "",
    );
    let piece = |seq: u64, who: &str| (seq, who.to_string());
    // Into 7: the track's last piece is on screen with 7, so refused; the
    // first piece alone is not.
    let (code, v) = post(
        &m,
        r#"{"action":"split","node":"edge-a","seq":2,"from":"5","into":"7"}"#,
        "",
    );
    assert_eq!(code, 409, "{v}");
    assert!(v.to_string().contains("same time"), "{v}");
    // No scope: the whole track, named by its middle piece.
    let (code, v) = post(
        &m,
        r#"{"action":"split","node":"edge-a","seq":2,"from":"5"}"#,
        "",
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["scope"], "track");
    let into = v["into"].as_str().expect("into").to_string();
    assert_eq!(
        trajectory(&m, &into),
        [piece(1, &into), piece(2, &into), piece(3, &into)]
    );
    assert!(trajectory(&m, "5").is_empty());
    let undo = format!(
        r#"{{"action":"revert","node":"master","seq":{}}}"#,
        v["seq"]
    );
    assert_eq!(post(&m, &undo, "").0, 201);
    assert_eq!(trajectory(&m, "5").len(), 3);
    // One piece, asked for.
    let (code, v) = post(
        &m,
        r#"{"action":"split","node":"edge-a","seq":1,"from":"5","into":"7","scope":"sighting"}"#,
        "",
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["scope"], "sighting");
    assert_eq!(trajectory(&m, "5"), [piece(2, "5"), piece(3, "5")]);
    assert_eq!(trajectory(&m, "7"), [piece(1, "7"), piece(4, "7")]);
    let (code, v) = post(
        &m,
        r#"{"action":"split","node":"edge-a","seq":1,"from":"7","scope":"piece"}"#,
        "",
    );
    assert_eq!(code, 400, "{v}");
    m.shutdown().expect("clean shutdown");
}

/// A node whose gallery joined an identity it minted to a known one (a
/// track's later views) says so: the master stores the merge, sends it to
/// the nodes, and its queries answer with one person. A join of another
/// node's mint, or put under another node's key, is refused and counted.
#[test]
fn a_nodes_join_of_its_own_mint_is_stored_sent_and_followed_by_queries() {
    use vidar_protocol::messages::{IdentityAnnounce, IdentityJoined};
    use vidar_protocol::{IdentityId, UnixMs};
    // edge-a's records: identity 1 on c1; later, its mint 7 on c2.
    let (_dir, m, site, zenoh) = seeded_with(
        vec![
            sighting(1, "c1", 1_000, 2_000),
            identity(1, "c1", 1_000),
            sighting(7, "c2", 9_000, 9_500),
            identity(7, "c2", 9_000),
        ],
        "",
    );
    let link = node_link(&site, &zenoh);
    let keys = Keys::new(&site).expect("site");
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let h = heard.clone();
    let _sub = link
        .subscribe::<Merges>(&keys.merges(), move |_, ms| {
            for x in ms.merges {
                h.lock()
                    .expect("lock")
                    .push(format!("merge {}->{}", x.from, x.into));
            }
        })
        .expect("subscribe");
    let (a, b) = (node("edge-a"), node("edge-b"));
    let announce = link
        .publisher::<IdentityAnnounce>(&keys.identities(&a))
        .expect("publisher");
    let joins_a = link
        .publisher::<IdentityJoined>(&keys.identities(&a))
        .expect("publisher");
    let joins_b = link
        .publisher::<IdentityJoined>(&keys.identities(&b))
        .expect("publisher");
    std::thread::sleep(Duration::from_millis(500));
    let metric = |name: &str| -> u64 {
        let (_, body) = http(m.http_addr(), "GET", "/metrics");
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    // edge-a announces its mint 7 (as it does at once), unlike anyone.
    announce
        .put(&IdentityAnnounce {
            identity: IdentityId(7),
            node: a.clone(),
            camera: cam("c2"),
            seen_ms: UnixMs(9_000),
            embedding: vec![0.0, 1.0, 0.0],
            model: "test-model".into(),
        })
        .expect("put");
    assert!(wait_for(Duration::from_secs(5), || metric(
        "vidar_master_identity_announcements_total"
    ) == 1));
    let join = |node: &vidar_protocol::NodeId| IdentityJoined {
        from: IdentityId(7),
        into: IdentityId(1),
        node: node.clone(),
        decided_ms: UnixMs(10_000),
    };
    // edge-b may not join a's mint, under its own key or under a's.
    joins_b.put(&join(&b)).expect("put");
    joins_a.put(&join(&b)).expect("put");
    std::thread::sleep(Duration::from_millis(500));
    assert!(heard.lock().expect("lock").is_empty());
    assert_eq!(metric("vidar_master_identity_joins_total"), 0);
    assert_eq!(trajectory(&m, "1"), [(1, "1".to_string())]);
    // edge-a's own word is taken: stored, sent, followed (the sighting keeps
    // the identity it was recorded under, and is in 1's trajectory).
    joins_a.put(&join(&a)).expect("put");
    wait_to_hear(&heard, 1);
    assert_eq!(*heard.lock().expect("lock"), ["merge p7->p1".to_string()]);
    assert_eq!(metric("vidar_master_identity_joins_total"), 1);
    assert_eq!(
        trajectory(&m, "1"),
        [(1, "1".to_string()), (3, "7".to_string())]
    );
    m.shutdown().expect("clean shutdown");
}
