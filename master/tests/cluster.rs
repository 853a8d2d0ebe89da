//! The master with fake edges on in-process zenoh sessions over 127.0.0.1:
//! membership, plans (and their reassignment when a node dies), record sync
//! (exactly once, overlapping replies, resume after a master restart) and
//! garbage on the status keys.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vidar_config::Config;

use common::*;
use vidar_link::{LinkSettings, Mode};
use vidar_master::{Master, MasterConfig};
use vidar_protocol::messages::{LinkRate, Plan, QueryReply, QueryRequest, SyncBatch, SyncRequest};
use vidar_protocol::{wire, IdentityId, Keys, NodeId, UnixMs};
use vidar_store::{Reader, Record, WriterConfig};
use zenoh::Wait;

/// A fake edge node: a zenoh peer listening on a port the kernel picks
/// ([`FakeEdge::endpoint`]), with a liveliness
/// token, a status publisher, and sync/query queryables over a real store file.
struct FakeEdge {
    node: NodeId,
    session: zenoh::Session,
    token: Option<zenoh::liveliness::LivelinessToken>,
    stop: Arc<AtomicBool>,
    status: Option<JoinHandle<()>>,
    _sync: zenoh::query::Queryable<()>,
    _query: Option<zenoh::query::Queryable<()>>,
    /// `after_seq` of every sync request received.
    afters: Arc<Mutex<Vec<u64>>>,
    /// Highest `ack_through` received.
    acked: Arc<Mutex<u64>>,
    /// The links its status reports (what its probes would measure).
    links: Arc<Mutex<Vec<LinkRate>>>,
    /// How many records behind its database its status reports its last
    /// seq (0: up to date; more: records written after its last status).
    status_behind: Arc<AtomicU64>,
    /// While set, it sends no status (its token stays).
    muted: Arc<AtomicBool>,
    /// The plan version its status says it runs.
    plan_version: Arc<AtomicU64>,
}

impl FakeEdge {
    fn start(site: &str, name: &str, db: &Path, serve_queries: bool) -> FakeEdge {
        FakeEdge::start_forging(site, name, db, serve_queries, None)
    }

    /// Where the master connects to it (`tcp/127.0.0.1:PORT`).
    fn endpoint(&self) -> String {
        self.session
            .info()
            .locators()
            .wait()
            .into_iter()
            .map(|l| l.to_string())
            .find(|l| l.starts_with("tcp/127.0.0.1:"))
            .expect("a loopback locator")
    }

    /// Like [`FakeEdge::start`]; with `forge = Some(seq)` its sync replies
    /// also carry a copy of its last record under `seq` and claim `seq` as
    /// its last (what a forged reply did in issue 16), while its status
    /// reports its true last seq.
    fn start_forging(
        site: &str,
        name: &str,
        db: &Path,
        serve_queries: bool,
        forge: Option<u64>,
    ) -> FakeEdge {
        let node = node(name);
        let keys = Keys::new(site).expect("site");
        let settings = LinkSettings {
            site: site.into(),
            mode: Some(Mode::Peer),
            listen: vec!["tcp/127.0.0.1:0".into()],
            ..LinkSettings::default()
        };
        let session = settings.open_session(Mode::Peer).expect("edge session");
        let afters = Arc::new(Mutex::new(Vec::new()));
        let acked = Arc::new(Mutex::new(0u64));
        let reader = Mutex::new(Reader::open(db).expect("edge reader"));
        let (n, a, k) = (node.clone(), afters.clone(), acked.clone());
        let sync = session
            .declare_queryable(keys.sync(&node))
            .callback(move |q| {
                let Some(bytes) = q.payload().map(|p| p.to_bytes()) else {
                    return;
                };
                let Ok(req) = wire::decode::<SyncRequest>(&bytes) else {
                    return;
                };
                a.lock().expect("lock").push(req.after_seq);
                let mut acked = k.lock().expect("lock");
                *acked = (*acked).max(req.ack_through);
                drop(acked);
                let r = reader.lock().expect("lock");
                let last = r.last_seq(&n).expect("last seq");
                // Two replies: one overlapping what the master holds, then the right one.
                for after in [req.after_seq.saturating_sub(3), req.after_seq] {
                    let mut records = r
                        .records_after(&n, after, req.max_records as usize)
                        .expect("records");
                    let more = records.last().is_some_and(|x| x.key.seq < last);
                    let mut claimed = last;
                    if let (Some(seq), Some(mut copy)) = (forge, records.last().cloned()) {
                        copy.key.seq = seq;
                        records.push(copy);
                        claimed = seq;
                    }
                    let batch = SyncBatch {
                        node: n.clone(),
                        records,
                        last_seq: claimed,
                        more,
                    };
                    let bytes = wire::encode(&batch).expect("encode");
                    q.reply(q.key_expr().clone(), bytes).wait().expect("reply");
                }
            })
            .wait()
            .expect("sync queryable");
        let query = serve_queries.then(|| {
            let reader = Mutex::new(Reader::open(db).expect("edge reader"));
            let n = node.clone();
            session
                .declare_queryable(keys.query(&node))
                .callback(move |q| {
                    let Some(bytes) = q.payload().map(|p| p.to_bytes()) else {
                        return;
                    };
                    let Ok(_req) = wire::decode::<QueryRequest>(&bytes) else {
                        return;
                    };
                    // Everything it has: the master must filter and deduplicate.
                    let records = reader
                        .lock()
                        .expect("lock")
                        .records_after(&n, 0, 10_000)
                        .expect("records");
                    let bytes = wire::encode(&QueryReply { records }).expect("encode");
                    q.reply(q.key_expr().clone(), bytes).wait().expect("reply");
                })
                .wait()
                .expect("query queryable")
        });
        let token = session
            .liveliness()
            .declare_token(keys.node_alive(&node))
            .wait()
            .expect("token");
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, n, k) = (session.clone(), stop.clone(), node.clone(), keys.clone());
        let status_reader = Reader::open(db).expect("edge reader");
        let links: Arc<Mutex<Vec<LinkRate>>> = Arc::default();
        let l = links.clone();
        let status_behind: Arc<AtomicU64> = Arc::default();
        let behind = status_behind.clone();
        let muted: Arc<AtomicBool> = Arc::default();
        let mute = muted.clone();
        let plan_version: Arc<AtomicU64> = Arc::default();
        let runs = plan_version.clone();
        let status = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if mute.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let last = status_reader.last_seq(&n).expect("last seq");
                let last = last.saturating_sub(behind.load(Ordering::Relaxed));
                let mut status = status_of(&n, last);
                status.links = l.lock().expect("lock").clone();
                status.plan_version = runs.load(Ordering::Relaxed);
                let bytes = wire::encode(&status).expect("encode");
                let _ = s.put(k.status(&n), bytes).wait();
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        FakeEdge {
            node,
            session,
            token: Some(token),
            stop,
            status: Some(status),
            _sync: sync,
            _query: query,
            afters,
            acked,
            links,
            status_behind,
            muted,
            plan_version,
        }
    }

    /// From now on its status reports `mbit_s` to each of `peers`.
    fn report_links(&self, peers: &[&FakeEdge], mbit_s: f64) {
        *self.links.lock().expect("lock") = peers
            .iter()
            .map(|p| LinkRate {
                to: p.node.clone(),
                mbit_s,
                rtt_ms: 2.0,
                upload_mbit_s: mbit_s,
            })
            .collect();
    }

    /// The node dies: token gone, no more status.
    fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.status.take() {
            let _ = t.join();
        }
        if let Some(t) = self.token.take() {
            t.undeclare().wait().expect("undeclare");
        }
    }
}

impl Drop for FakeEdge {
    fn drop(&mut self) {
        self.kill();
        let _ = self.session.close().wait();
    }
}

fn edge_db(dir: &Path, name: &str, records: Vec<Record>) -> PathBuf {
    let path = dir.join(format!("{name}.db"));
    let w = WriterConfig::new(&path, node(name))
        .build(&())
        .expect("edge writer");
    for r in records {
        w.submit(r).expect("submit");
    }
    w.flush().expect("flush");
    w.shutdown().expect("shutdown");
    path
}

fn edge_records(from: i64, n: i64) -> Vec<Record> {
    (from..from + n)
        .map(|i| match i % 3 {
            0 => identity(i as u64, "c1", i * 100),
            _ => sighting(
                i as u64,
                if i % 2 == 0 { "c1" } else { "c2" },
                i * 100,
                i * 100 + 50,
            ),
        })
        .collect()
}

/// A master connecting to the fake edges at `edges` (their endpoints).
fn master_config(db: &Path, site: &str, edges: &[String]) -> MasterConfig {
    let connect: Vec<String> = edges.iter().map(|e| format!("{e:?}")).collect();
    let text = format!(
        r#"
database = {db:?}
http_addr = "127.0.0.1:0"
auth = "none"
sync_every_s = 0.3
sync_batch = 7
node_timeout_s = 2
plan_every_s = 30

[cluster]
site = "{site}"
listen = ["tcp/127.0.0.1:0"]
connect = [{connect}]

[[cameras]]
camera = "c1"
source = "rtsp://127.0.0.1/c1"

[[cameras]]
camera = "c2"
source = "rtsp://admin:pa@ss@127.0.0.1/c2"

[[cameras]]
camera = "c3"
source = "rtsp://127.0.0.1/c3"
"#,
        db = db.display().to_string(),
        connect = connect.join(", "),
    );
    MasterConfig::parse(&text, Path::new("cluster-test.toml")).expect("valid config")
}

/// Whether `master` has a plan over `nodes` nodes within 15 s.
fn plan_over(master: &Master, nodes: usize) -> bool {
    let ctx = master.context();
    wait_for(Duration::from_secs(15), || {
        ctx.plans.current().is_some_and(|c| c.nodes.len() == nodes)
    })
}

fn all_records(db: &Path, n: &NodeId) -> Vec<vidar_store::KeyedRecord> {
    Reader::open(db)
        .expect("reader")
        .records_after(n, 0, 100_000)
        .expect("records")
}

#[test]
fn membership_plan_sync_and_failover() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = unique_site();
    let keys = Keys::new(&site).expect("site");
    let db1 = edge_db(dir.path(), "edge-1", edge_records(1, 30));
    let db2 = edge_db(dir.path(), "edge-2", Vec::new());
    let edge1 = FakeEdge::start(&site, "edge-1", &db1, true);
    let mut edge2 = FakeEdge::start(&site, "edge-2", &db2, false);
    let (p1, p2) = (edge1.endpoint(), edge2.endpoint());
    let global = dir.path().join("global.db");
    let cfg = master_config(&global, &site, &[p1.clone(), p2]);
    let master = Master::start(&cfg).expect("master starts");
    let ctx = master.context().clone();

    // A plan over both nodes, every camera placed once, published on the key.
    let plans_seen: Arc<Mutex<Vec<Plan>>> = Arc::new(Mutex::new(Vec::new()));
    let ps = plans_seen.clone();
    let _plan_sub = edge1
        .session
        .declare_subscriber(keys.plan())
        .callback(move |s| {
            if let Ok(p) = wire::decode::<Plan>(&s.payload().to_bytes()) {
                ps.lock().expect("lock").push(p);
            }
        })
        .wait()
        .expect("plan subscriber");
    assert!(
        plan_over(&master, 2),
        "no plan over both nodes: {:?}",
        ctx.plans.current()
    );
    let current = ctx.plans.current().expect("plan");
    let mut cams: Vec<String> = current
        .plan
        .streams
        .iter()
        .map(|s| s.camera.to_string())
        .collect();
    cams.sort();
    assert_eq!(cams, vec!["c1", "c2", "c3"]);
    assert!(wait_for(Duration::from_secs(5), || plans_seen
        .lock()
        .expect("lock")
        .iter()
        .any(|p| p.version == current.plan.version)));
    // The plan queryable answers late joiners.
    let replies = edge1
        .session
        .get(keys.plan())
        .timeout(Duration::from_secs(2))
        .wait()
        .expect("get plan");
    let reply = replies.recv().expect("a plan reply");
    let sample = reply.result().expect("ok reply");
    let queried: Plan = wire::decode(&sample.payload().to_bytes()).expect("plan");
    assert!(queried.version >= current.plan.version);
    assert!(
        queried
            .streams
            .iter()
            .all(|s| !vidar_protocol::secret::has_credentials(&s.source)),
        "a plan on the wire carries no camera credentials: {queried:?}"
    );
    let (code, v) = get_json(master.http_addr(), "/api/plan");
    assert_eq!(code, 200);
    assert_eq!(v["version"].as_u64(), Some(current.plan.version), "{v}");
    assert_eq!(v["streams"].as_array().map(|s| s.len()), Some(3), "{v}");
    // The cameras as planned: the measured figures in place of the
    // configured ones.
    let planned = v["planned"].as_array().expect("planned cameras");
    assert_eq!(planned.len(), 3, "{v}");
    assert!(
        planned
            .iter()
            .all(|c| c["ingest_work"].as_f64().is_some_and(|w| w >= 0.0)
                && c["detect_share"]
                    .as_f64()
                    .is_some_and(|s| s > 0.0 && s <= 1.0)),
        "{v}"
    );
    // The planner's algorithm and what its model predicts for the plan.
    assert_eq!(v["algorithm"], "jstsh", "{v}");
    assert!(
        v["predicted"]["mean_fps"].as_f64().is_some_and(|f| f > 0.0),
        "{v}"
    );
    assert!(
        v["predicted"]["mean_latency"]
            .as_f64()
            .is_some_and(|l| l > 0.0),
        "{v}"
    );
    // Camera credentials are never shown, whatever the password holds.
    let shown = v.to_string();
    assert!(
        !shown.contains("admin") && !shown.contains("pa@ss") && shown.contains("***@127.0.0.1/c2"),
        "{shown}"
    );

    // Every record of edge-1 exactly once in the global database, despite the
    // overlapping double replies; acknowledged back to the edge.
    let want = all_records(&db1, &edge1.node);
    assert_eq!(want.len(), 30);
    assert!(
        wait_for(Duration::from_secs(20), || all_records(
            &global,
            &edge1.node
        ) == want),
        "global has {} of 30 records",
        all_records(&global, &edge1.node).len()
    );
    assert!(wait_for(Duration::from_secs(5), || *edge1
        .acked
        .lock()
        .expect("lock")
        == 30));
    let counts = |db: &Path| Reader::open(db).expect("reader").counts().expect("counts");
    assert_eq!(counts(&global), counts(&db1));
    let sync = ctx.sync.nodes();
    assert_eq!(sync.get(&edge1.node).and_then(|s| s.lag_records), Some(0));

    // Queries ask edges: edge-1 answers (its records are already synced, so no
    // duplicates), edge-2 serves no query queryable.
    let (code, v) = get_json(master.http_addr(), "/api/sightings?camera=c1");
    assert_eq!(code, 200, "{v}");
    let s = v["sightings"].as_array().expect("sightings");
    let mut keys_seen: Vec<u64> = s.iter().filter_map(|x| x["seq"].as_u64()).collect();
    let n = keys_seen.len();
    keys_seen.dedup();
    assert_eq!(keys_seen.len(), n, "duplicates in {v}");
    assert!(s.iter().all(|x| x["camera"] == "c1" && x["synced"] == true));
    let unanswered: Vec<&str> = v["edges_unanswered"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["node"].as_str())
        .collect();
    assert_eq!(unanswered, vec!["edge-2"]);

    // Garbage and a wrong protocol version on the status keys: counted, ignored.
    let mut wrong_version = wire::encode(&status_of(&edge1.node, 0)).expect("encode");
    wrong_version[2] = 0x63;
    for bytes in [b"garbage".to_vec(), wrong_version] {
        edge1
            .session
            .put(keys.status(&edge1.node), bytes)
            .wait()
            .expect("put");
    }
    assert!(wait_for(Duration::from_secs(5), || ctx
        .link
        .garbage()
        .refused()
        >= 2));
    assert_eq!(ctx.membership.live().len(), 2);

    // edge-2 dies: its cameras move to edge-1 within a few seconds.
    let killed = Instant::now();
    edge2.kill();
    assert!(
        wait_for(Duration::from_secs(5), || ctx.plans.current().is_some_and(
            |c| c
                .plan
                .streams
                .iter()
                .all(|s| s.node == edge1.node && s.reid_node == edge1.node)
        )),
        "cameras not reassigned: {:?}",
        ctx.plans.current()
    );
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(3), "reassignment took {took:?}");
    let (_, metrics) = http(master.http_addr(), "GET", "/metrics");
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    assert!(metrics.contains("vidar_master_nodes_live 1"), "{metrics}");
    assert!(
        metrics.contains("vidar_master_sync_lag_records{node=\"edge-1\"} 0"),
        "{metrics}"
    );
    master.shutdown().expect("clean shutdown");

    // More records while the master is down; a new master resumes at the cursor.
    let w = WriterConfig::new(&db1, edge1.node.clone())
        .build(&())
        .expect("writer");
    for r in edge_records(100, 12) {
        w.submit(r).expect("submit");
    }
    w.flush().expect("flush");
    w.shutdown().expect("shutdown");
    edge1.afters.lock().expect("lock").clear();
    let master = Master::start(&master_config(&global, &site, &[p1])).expect("restart");
    let want = all_records(&db1, &edge1.node);
    assert_eq!(want.len(), 42);
    assert!(
        wait_for(Duration::from_secs(20), || all_records(
            &global,
            &edge1.node
        ) == want),
        "after restart global has {} of 42",
        all_records(&global, &edge1.node).len()
    );
    let first = edge1.afters.lock().expect("lock").first().copied();
    assert_eq!(
        first,
        Some(30),
        "the restarted master must resume at its cursor"
    );
    master.shutdown().expect("clean shutdown");
}

#[test]
fn records_written_after_a_nodes_status_wait_for_the_next_one_and_are_not_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = unique_site();
    let db = edge_db(dir.path(), "edge-8", edge_records(1, 12));
    let edge = FakeEdge::start(&site, "edge-8", &db, false);
    // Its status trails its database by 4 records, as a status sent just
    // before the node wrote them does.
    edge.status_behind.store(4, Ordering::Relaxed);
    let global = dir.path().join("global.db");
    let cfg = master_config(&global, &site, &[edge.endpoint()]);
    let master = Master::start(&cfg).expect("master starts");
    let ctx = master.context().clone();
    let n = node("edge-8");
    let cursor = || ctx.sync.nodes().get(&n).map(|s| s.cursor);
    assert!(
        wait_for(Duration::from_secs(30), || cursor() == Some(8)),
        "synced up to what the status reports: cursor {:?}",
        cursor()
    );
    // A few more rounds at the stale status: nothing past it taken, and
    // nothing counted as refused (the node did nothing wrong).
    let rounds = edge.afters.lock().expect("lock").len();
    assert!(
        wait_for(Duration::from_secs(30), || edge
            .afters
            .lock()
            .expect("lock")
            .len()
            >= rounds + 2),
        "more sync rounds"
    );
    assert_eq!(all_records(&global, &n).len(), 8);
    assert_eq!(ctx.sync.beyond(), 0, "ordinary records refused as forged");
    edge.status_behind.store(0, Ordering::Relaxed);
    assert!(
        wait_for(Duration::from_secs(30), || all_records(&global, &n).len()
            == 12),
        "the rest once the status reports it: {} of 12",
        all_records(&global, &n).len()
    );
    assert_eq!(cursor(), Some(12));
    assert_eq!(ctx.sync.beyond(), 0);
    master.shutdown().expect("clean shutdown");
}

#[test]
fn a_forged_sync_reply_never_moves_the_cursor_past_the_nodes_own_last_seq() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = unique_site();
    let db = edge_db(dir.path(), "edge-9", edge_records(1, 12));
    let forged = 1u64 << 62;
    let edge = FakeEdge::start_forging(&site, "edge-9", &db, false, Some(forged));
    let global = dir.path().join("global.db");
    let cfg = master_config(&global, &site, &[edge.endpoint()]);
    let master = Master::start(&cfg).expect("master starts");
    let ctx = master.context().clone();
    let n = node("edge-9");
    assert!(
        wait_for(Duration::from_secs(30), || all_records(&global, &n).len() == 12
            && ctx.sync.beyond() > 0),
        "the node's 12 records synced, the forged one refused: {} stored, {} refused, sync {:?}, members {:?}",
        all_records(&global, &n).len(),
        ctx.sync.beyond(),
        ctx.sync.nodes(),
        ctx.membership.snapshot()
    );
    let stored = all_records(&global, &n);
    assert!(
        stored.iter().all(|r| r.key.seq <= 12),
        "nothing past the node's last seq"
    );
    let cursor = ctx.sync.nodes().get(&n).map(|s| s.cursor);
    assert_eq!(
        cursor,
        Some(12),
        "the cursor stops at the node's own last seq"
    );
    master.shutdown().expect("clean shutdown");
}

#[test]
fn merges_and_corrections_from_an_edge_are_never_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = unique_site();
    // An edge's records with a merge and a correction of its own among them
    // (a compromised node rewriting who is who), the last one a forgery too.
    let mut records = edge_records(1, 5);
    records.insert(
        2,
        Record::Merge(vidar_store::IdentityMerge {
            from: IdentityId(1),
            into: IdentityId(2),
            decided_ms: UnixMs(0),
        }),
    );
    records.push(Record::Correction(vidar_store::Correction {
        action: vidar_store::CorrectionAction::Merge {
            from: IdentityId(4),
            into: IdentityId(5),
        },
        actor: "edge".into(),
        reason: String::new(),
        decided_ms: UnixMs(0),
    }));
    let db = edge_db(dir.path(), "edge-7", records);
    let edge = FakeEdge::start(&site, "edge-7", &db, false);
    let global = dir.path().join("global.db");
    let master =
        Master::start(&master_config(&global, &site, &[edge.endpoint()])).expect("master starts");
    let ctx = master.context().clone();
    let n = node("edge-7");
    assert!(
        wait_for(Duration::from_secs(30), || ctx
            .sync
            .nodes()
            .get(&n)
            .is_some_and(|s| s.cursor == 7)),
        "the cursor passes all 7 seqs: {:?}",
        ctx.sync.nodes()
    );
    let stored: Vec<u64> = all_records(&global, &n).iter().map(|r| r.key.seq).collect();
    assert_eq!(stored, [1, 2, 4, 5, 6], "the node's own records only");
    assert_eq!(ctx.sync.masters_only(), 2);
    let reader = Reader::open(&global).expect("reader");
    assert_eq!(
        reader.identity_cluster(IdentityId(1)).expect("cluster"),
        [IdentityId(1)]
    );
    assert_eq!(
        reader.identity_cluster(IdentityId(4)).expect("cluster"),
        [IdentityId(4)]
    );
    master.shutdown().expect("clean shutdown");
}

#[test]
fn silent_nodes_hold_up_neither_sync_nor_queries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = unique_site();
    let keys = Keys::new(&site).expect("site");
    let db = edge_db(dir.path(), "edge-1", edge_records(1, 20));
    let edge = FakeEdge::start(&site, "edge-1", &db, true);
    // Four nodes that are alive but never answer a sync request or a query
    // (issue 16: silent queryables and ghost tokens froze sync rounds and
    // API queries for everyone). Their names sort before edge-1, so a
    // sequential round asks them first.
    let held: Arc<Mutex<Vec<zenoh::query::Query>>> = Arc::default();
    let mut ghosts = Vec::new();
    for i in 0..4 {
        let ghost = node(&format!("a-ghost-{i}"));
        let silent: Vec<_> = [keys.sync(&ghost), keys.query(&ghost)]
            .into_iter()
            .map(|key| {
                let h = held.clone();
                edge.session
                    .declare_queryable(key)
                    .callback(move |q| h.lock().expect("lock").push(q))
                    .wait()
                    .expect("silent queryable")
            })
            .collect();
        let t = edge
            .session
            .liveliness()
            .declare_token(keys.node_alive(&ghost))
            .wait()
            .expect("token");
        ghosts.push((silent, t));
    }
    let global = dir.path().join("global.db");
    let cfg = master_config(&global, &site, &[edge.endpoint()]);
    let started = Instant::now();
    let master = Master::start(&cfg).expect("master starts");
    let n = node("edge-1");
    assert!(
        wait_for(Duration::from_secs(30), || all_records(&global, &n).len()
            == 20),
        "edge-1 never synced"
    );
    let took = started.elapsed();
    // One request timeout is 5 s; four silent nodes asked one after the
    // other would hold edge-1 back 20 s.
    assert!(
        took < Duration::from_secs(12),
        "edge-1 synced only after {took:?}"
    );

    // API queries: the ghosts are asked once and time out (listed as asked
    // and unanswered), then left alone for their back-off (listed as not
    // asked), so a query no longer waits a timeout for them each time;
    // edge-1 is asked every time.
    let unanswered = |v: &serde_json::Value| -> Vec<(String, bool)> {
        v["edges_unanswered"]
            .as_array()
            .expect("list")
            .iter()
            .map(|u| {
                (
                    u["node"].as_str().unwrap_or("?").to_owned(),
                    u["asked"].as_bool().expect("asked"),
                )
            })
            .collect()
    };
    let ghost_names: Vec<String> = (0..4).map(|i| format!("a-ghost-{i}")).collect();
    // One query; every ghost unanswered, asked this time or not.
    let query = |ghosts_asked: bool| {
        let (code, v) = get_json(master.http_addr(), "/api/sightings?camera=c1");
        assert_eq!(code, 200, "{v}");
        let mut got = unanswered(&v);
        got.sort();
        let want: Vec<(String, bool)> = ghost_names
            .iter()
            .map(|g| (g.clone(), ghosts_asked))
            .collect();
        assert_eq!(got, want, "{v}");
        v
    };
    let first = query(true);
    let second = query(false);
    let asked = |v: &serde_json::Value| v["edges_asked"].as_array().expect("asked").len();
    assert_eq!((asked(&first), asked(&second)), (5, 5));
    assert_eq!(
        second["sightings"].as_array().map(Vec::len),
        first["sightings"].as_array().map(Vec::len),
        "the same answer from the database and edge-1"
    );
    master.shutdown().expect("clean shutdown");
    drop(ghosts);
}

#[test]
fn a_link_that_slows_down_replans_and_a_steady_one_does_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = unique_site();
    let db1 = edge_db(dir.path(), "edge-1", Vec::new());
    let db2 = edge_db(dir.path(), "edge-2", Vec::new());
    let edge1 = FakeEdge::start(&site, "edge-1", &db1, true);
    let edge2 = FakeEdge::start(&site, "edge-2", &db2, true);
    edge1.report_links(&[&edge2], 50.0);
    edge2.report_links(&[&edge1], 40.0);
    let cfg = master_config(
        &dir.path().join("global.db"),
        &site,
        &[edge1.endpoint(), edge2.endpoint()],
    );
    let master = Master::start(&cfg).expect("master starts");
    let ctx = master.context().clone();
    assert!(plan_over(&master, 2), "no plan over both nodes");
    // Settled: the measured pair (at the lower report, 40 Mbit/s) is what
    // the plan was made with; 4 s of steady links replan nothing (the
    // periodic replan is 30 s away, the load triggers quiet).
    std::thread::sleep(Duration::from_secs(2));
    let steady = ctx.plans.counters().replans;
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        ctx.plans.counters().replans,
        steady,
        "a steady link replanned"
    );
    // The link drops to a tenth at one end: a replan within seconds.
    edge2.report_links(&[&edge1], 4.0);
    assert!(
        wait_for(Duration::from_secs(10), || ctx.plans.counters().replans
            > steady),
        "no replan after the link fell from 40 to 4 Mbit/s: {:?}",
        ctx.plans.counters()
    );
    // The nodes' reports reach the API as sent.
    let (code, v) = get_json(master.http_addr(), "/api/nodes");
    assert_eq!(code, 200);
    let links: Vec<f64> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["status"]["links"][0]["mbit_s"].as_f64())
        .collect();
    assert!(links.contains(&4.0) && links.contains(&50.0), "{v}");
    master.shutdown().expect("clean shutdown");
}

/// `(camera, node, re-ID node)` of each stream of `p`.
fn placement(p: &Plan) -> Vec<(String, String, String)> {
    (p.streams.iter())
        .map(|s| {
            (
                s.camera.to_string(),
                s.node.to_string(),
                s.reid_node.to_string(),
            )
        })
        .collect()
}

#[test]
fn a_restarted_master_takes_back_the_plan_in_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = unique_site();
    let edges: Vec<FakeEdge> = ["edge-1", "edge-2", "edge-3"]
        .iter()
        .map(|n| FakeEdge::start(&site, n, &edge_db(dir.path(), n, Vec::new()), false))
        .collect();
    let endpoints: Vec<String> = edges.iter().map(FakeEdge::endpoint).collect();
    let global = dir.path().join("global.db");
    let cfg = master_config(&global, &site, &endpoints);
    let master = Master::start(&cfg).expect("master starts");
    let ctx = master.context().clone();
    assert!(
        plan_over(&master, 3),
        "no plan over the three nodes: {:?}",
        ctx.plans.current()
    );
    // Saved as it is in force (a replan may still follow the joins).
    let saved = cfg.state_dir().join("plan.json");
    let mut before = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            let c = ctx.plans.current().expect("a plan");
            let on_disk = vidar_master::plans::saved::load(&saved).ok().flatten();
            before = Some(c.plan.clone());
            on_disk.is_some_and(|s| s.plan == c.plan)
        }),
        "the plan in force is not in {}",
        saved.display()
    );
    let before = before.expect("the plan in force");
    master.shutdown().expect("clean shutdown");

    // The node of the first camera reports a second after the others
    // (within node_timeout_s): a master planning from whoever spoke first
    // would move that camera off it.
    let late = (edges.iter())
        .find(|e| e.node == before.streams[0].node)
        .expect("the first camera's node");
    late.muted.store(true, Ordering::Relaxed);
    let master = Master::start(&cfg).expect("master restarts");
    let ctx = master.context().clone();
    // The plan in force, at once, before any node reported.
    let at_start = ctx.plans.current().expect("the saved plan taken back");
    assert_eq!(at_start.plan, before);
    // The cameras as planned before: the held figures (here the configured
    // ones: the fake nodes measure nothing).
    assert_eq!(ctx.plans.planned().len(), 3, "{:?}", ctx.plans.planned());
    std::thread::sleep(Duration::from_secs(1));
    late.muted.store(false, Ordering::Relaxed);
    assert!(
        wait_for(Duration::from_secs(15), || ctx.plans.counters().replans
            >= 1
            && ctx.membership.live().len() == 3),
        "no replan over the three nodes after the restart: {:?}",
        ctx.plans.counters()
    );
    std::thread::sleep(Duration::from_secs(1));
    let after = ctx.plans.current().expect("a plan");
    assert_eq!(
        placement(&after.plan),
        placement(&before),
        "the restart moved cameras ({})",
        after.plan.reason
    );
    assert_eq!(
        after.plan.version, before.version,
        "a new version for the same placement"
    );
    assert_eq!(
        ctx.plans.counters().versions,
        0,
        "{:?}",
        ctx.plans.counters()
    );
    master.shutdown().expect("clean shutdown");

    // A node running a newer plan than the saved one (the state was not
    // saved after it): the saved plan is not the one in force, and the
    // first plan is placed afresh, newer than what the node runs.
    let newer = before.version + 1_000;
    edges[1].plan_version.store(newer, Ordering::Relaxed);
    let master = Master::start(&cfg).expect("master restarts");
    let ctx = master.context().clone();
    assert!(
        wait_for(Duration::from_secs(15), || ctx
            .plans
            .current()
            .is_some_and(|c| c.nodes.len() == 3 && c.plan.version > newer)),
        "the stale saved plan kept: {:?}",
        ctx.plans.current()
    );
    master.shutdown().expect("clean shutdown");
    edges[1].plan_version.store(0, Ordering::Relaxed);

    // A damaged state file is named and ignored: the master plans afresh.
    std::fs::write(&saved, b"{ damaged").expect("damage");
    let master = Master::start(&cfg).expect("master starts on a damaged state");
    let ctx = master.context().clone();
    assert!(
        ctx.plans.current().is_none(),
        "nothing taken from a damaged file"
    );
    assert!(
        wait_for(Duration::from_secs(15), || ctx.plans.current().is_some_and(
            |c| c.nodes.len() == 3 && c.plan.version > before.version
        )),
        "no fresh plan: {:?}",
        ctx.plans.current()
    );
    master.shutdown().expect("clean shutdown");
}
