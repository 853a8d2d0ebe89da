//! Remote re-ID round trip over zenoh on loopback, excluding inference: a
//! router session (as the master runs) and two peer sessions; the client
//! sends `ReidRequest`s of 8 JPEG-sized crops to the server's queryable, which
//! decodes them and answers a `ReidReply` of 8 identities. Secured (a CA
//! directory given), the router has the master's bundle and the two nodes are
//! its clients over mutual TLS, through its access list, as in production.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vidar_link::{LinkSettings, Mode, Responder};
use vidar_protocol::messages::{Crop, CropEncoding, ReidAnswer, ReidReply, ReidRequest};
use vidar_protocol::{wire, CameraId, IdentityId, Keys, NodeId, TrackId, UnixMs};

use crate::harness::{percentile, site_name};

/// One run's numbers.
#[derive(Debug, Clone, Copy)]
pub struct RoundTrip {
    /// Round trip percentiles, ms.
    pub p50: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Slowest, ms.
    pub max: f64,
    /// Crops/s with 4 requests in flight.
    pub crops_s: f64,
    /// Bytes of one encoded request.
    pub bytes: usize,
}

/// p50/p99 of `requests` requests of 8 crops of `crop_bytes` one at a time,
/// and crops/s with 4 requests in flight, as table rows.
pub fn round_trip(
    requests: usize,
    crop_bytes: usize,
    rows: &mut Vec<(String, String, String)>,
) -> Result<()> {
    let r = measure(requests, crop_bytes, None, false)?;
    let how = format!(
        "{} requests of 8 crops x {} B ({} B encoded), one at a time, router + 2 peers on loopback, no inference",
        requests, crop_bytes, r.bytes
    );
    rows.push((
        "remote re-ID round trip p50 / p99 / max, ms".into(),
        format!("{:.2} / {:.2} / {:.2}", r.p50, r.p99, r.max),
        how,
    ));
    rows.push((
        "remote re-ID crops/s (transport + codec bound)".into(),
        format!("{:.0}", r.crops_s),
        "4 requests of 8 crops in flight for 3 s".into(),
    ));
    eprintln!("re-ID round trip done: p99 {:.2} ms", r.p99);
    Ok(())
}

/// One run: plaintext peers (or clients of the router, `clients`), or (with
/// a CA directory whose `server` and `client` nodes are enrolled) clients
/// over mutual TLS.
pub fn measure(
    requests: usize,
    crop_bytes: usize,
    ca: Option<&Path>,
    clients: bool,
) -> Result<RoundTrip> {
    // The router listens on a port the kernel picks; the others connect to it.
    let (site, router) = match ca {
        None => {
            let site = site_name("bench");
            let router = LinkSettings {
                site: site.clone(),
                listen: vec!["tcp/127.0.0.1:0".into()],
                ..Default::default()
            }
            .open(Mode::Router)?;
            (site, router)
        }
        Some(ca) => {
            let master = vidar_link::Bundle::load(&ca.join("master"))?;
            let router = LinkSettings {
                site: master.site.clone(),
                listen: vec!["tls/127.0.0.1:0".into()],
                bundle: Some(master.dir.clone()),
                ..Default::default()
            }
            .open(Mode::Router)?;
            (master.site, router)
        }
    };
    let port: u16 = router
        .locators()
        .iter()
        .find_map(|l| vidar_config::ready::locator_port(l))
        .context("the router listens nowhere")?;
    let peer = |name: &str| -> Result<vidar_link::Link> {
        Ok(match ca {
            None if clients => LinkSettings {
                site: site.clone(),
                connect: vec![format!("tcp/127.0.0.1:{port}")],
                mode: Some(Mode::Client),
                ..Default::default()
            }
            .open(Mode::Client)?,
            None => LinkSettings {
                site: site.clone(),
                connect: vec![format!("tcp/127.0.0.1:{port}")],
                listen: vec!["tcp/127.0.0.1:0".into()],
                ..Default::default()
            }
            .open(Mode::Peer)?,
            Some(ca) => LinkSettings {
                site: site.clone(),
                connect: vec![format!("tls/127.0.0.1:{port}")],
                bundle: Some(ca.join("nodes").join(name)),
                ..Default::default()
            }
            .open(Mode::Peer)?,
        })
    };
    let server = peer("server")?;
    let client = peer("client")?;
    let keys = Keys::new(&site)?;
    // The plan-free bench serves anyone; the node's own pairing check is
    // tested in edge-node.
    let node = NodeId::new("server")?;
    let key = keys.reid(&node, &NodeId::new("client")?);
    let served_by = node.clone();
    let _service = server.serve(
        &keys.reid_served_by(&node),
        move |req: ReidRequest, answer: Responder<ReidReply>| {
            answer.reply(Ok(ReidReply {
                request_id: req.request_id,
                served_by: served_by.clone(),
                results: req
                    .crops
                    .iter()
                    .enumerate()
                    .map(|(i, c)| ReidAnswer {
                        camera: c.camera.clone(),
                        track: c.track,
                        identity: IdentityId(1000 + i as u64),
                        similarity: 0.9,
                        minted: false,
                    })
                    .collect(),
                error: None,
            }))
        },
    )?;
    // Let the peers discover each other's queryable.
    std::thread::sleep(Duration::from_millis(1500));
    let camera = CameraId::new("cam")?;
    // A JPEG-like payload: SOI marker, then bytes that do not compress.
    let mut data = vec![0xFF, 0xD8];
    let mut x: u32 = 0x1234_5678;
    while data.len() < crop_bytes {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push((x & 0xFF) as u8);
    }
    let from = NodeId::new("client")?;
    let make = |id: u64| ReidRequest {
        from: from.clone(),
        request_id: id,
        crops: (0..8)
            .map(|t| Crop {
                camera: camera.clone(),
                track: TrackId(t),
                capture_ms: UnixMs(0),
                width: 64,
                height: 160,
                encoding: CropEncoding::Jpeg,
                data: data.clone(),
            })
            .collect(),
    };
    let timeout = Duration::from_secs(2);
    // Warm-up.
    for i in 0..50 {
        client.request::<ReidRequest, ReidReply>(&key, &make(i), timeout)?;
    }
    let mut rtts = Vec::with_capacity(requests);
    let bytes = wire::encode(&make(0))?.len();
    for i in 0..requests {
        let req = make(i as u64);
        let t0 = Instant::now();
        let reply: ReidReply = client.request(&key, &req, timeout)?;
        rtts.push(t0.elapsed().as_secs_f64() * 1000.0);
        if reply.results.len() != 8 {
            bail!("reply with {} answers", reply.results.len());
        }
    }
    rtts.sort_by(f64::total_cmp);
    // Throughput: 4 requesters at once for 3 s.
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let client = client.clone();
        let key = key.clone();
        let done = Arc::clone(&done);
        let stop = Arc::clone(&stop);
        let req = make(t);
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if client
                    .request::<ReidRequest, ReidReply>(&key, &req, timeout)
                    .is_ok()
                {
                    done.fetch_add(8, Ordering::Relaxed);
                }
            }
        }));
    }
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let crops_s = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    client.close();
    server.close();
    router.close();
    Ok(RoundTrip {
        p50: percentile(&rtts, 0.5),
        p99: percentile(&rtts, 0.99),
        max: percentile(&rtts, 1.0),
        crops_s,
        bytes,
    })
}
