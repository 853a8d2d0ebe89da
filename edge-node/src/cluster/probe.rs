//! The link prober and the probe service: the rounds that
//! [`super::links`] keeps the findings of (see there for the method and the
//! traffic bound).

use super::links::{Also, PeerLink, MIN_GAP};
use super::shared::Shared;
use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Unbounded};
use std::time::{Duration, Instant};
use vidar_link::Responder;
use vidar_protocol::messages::{LinkProbe, LinkProbeReply};
use vidar_protocol::NodeId;

/// How long a probe may take before the round counts as failed.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Answers probes addressed to this node, from the node the key names.
pub(super) fn answer(sh: &Shared, req: LinkProbe, answer: Responder<LinkProbeReply>) {
    let Some((target, asker)) = sh.link.keys().probe_from_key(answer.key()) else {
        let why = format!("{}: not a probe key of this site", answer.key());
        answer.reply(Err(why));
        return;
    };
    if target != sh.node || req.from != asker {
        let why = format!(
            "a probe from {} sent as {asker} to {target} (this is {})",
            req.from, sh.node
        );
        tracing::debug!(key = answer.key(), why, "link probe refused");
        answer.reply(Err(why));
        return;
    }
    answer.reply(Ok(LinkProbeReply {
        seq: req.seq,
        received: u32::try_from(req.pad.len()).unwrap_or(u32::MAX),
    }));
}

/// The prober: one round at a time to the peers of the plan in force, until
/// `stop`.
pub(super) fn run(sh: &Shared, stop: &vidar_runtime::Shutdown) {
    let keys = sh.link.keys().clone();
    let mut probe = LinkProbe {
        from: sh.node.clone(),
        seq: 0,
        pad: Vec::new(),
    };
    let mut last: Option<NodeId> = None;
    loop {
        let peers: BTreeSet<NodeId> = {
            let routes = sh.routes.lock().unwrap_or_else(|p| p.into_inner());
            routes.peers.clone()
        };
        sh.links.with(|m| m.retain(|p, _| peers.contains(p)));
        // Round robin: the first peer after the last one probed.
        let next = last
            .as_ref()
            .and_then(|l| peers.range((Excluded(l), Unbounded)).next())
            .or_else(|| peers.iter().next())
            .cloned();
        let Some(peer) = next else {
            if stop.wait_timeout(MIN_GAP) {
                return;
            }
            continue;
        };
        let size = sh.links.with(|m| m.entry(peer.clone()).or_default().size);
        let key = keys.probe(&peer, &sh.node);
        // How long a probe padded to `pad` took, and the bytes this node's
        // jobs sent meanwhile to the same peer and to any peer.
        let mut time = |pad: usize| -> Result<(Duration, Also), String> {
            if stop.is_triggered() {
                return Err("stopping".into());
            }
            probe.seq = probe.seq.wrapping_add(1);
            probe.pad.resize(pad, 0);
            sh.links.sent(pad);
            let (j0, _) = sh.links.job_bytes.get(&peer);
            let (all0, _) = sh.links.job_bytes.total();
            let t0 = Instant::now();
            let r: LinkProbeReply = sh
                .link
                .request(&key, &probe, TIMEOUT)
                .map_err(|e| e.to_string())?;
            let took = t0.elapsed();
            // What the jobs handed the link meanwhile, but no more than their
            // shares carry in that time: a bucket's burst (a second of its
            // rate) handed in a probe's few milliseconds, or items the
            // link's queue dropped, never crossed in that time, and counting
            // them would read the pair faster than it is, which raises the
            // shares, which hands more: a loop that reached Gbit/s over
            // 5 Mbit/s links on the testbed.
            let (j1, share) = sh.links.job_bytes.get(&peer);
            let cap = (share as f64 * took.as_secs_f64()) as u64;
            let meanwhile = j1.saturating_sub(j0).min(cap);
            // And to every peer: what left by this node's own link.
            let (all1, shares) = sh.links.job_bytes.total();
            let cap = (shares as f64 * took.as_secs_f64()) as u64;
            let all = all1.saturating_sub(all0).min(cap).max(meanwhile);
            if r.seq != probe.seq || r.received as usize != pad {
                return Err(format!(
                    "answer {} of {} bytes to probe {} of {pad}",
                    r.seq, r.received, probe.seq
                ));
            }
            let bytes = |b: u64| usize::try_from(b).unwrap_or(usize::MAX);
            Ok((
                took,
                Also {
                    peer: bytes(meanwhile),
                    all: bytes(all),
                },
            ))
        };
        // The round trip, then padded probes, larger while too quick to
        // time, then the round trip again: the lower of the two is the
        // round's (other traffic queued at one of them is gone at the other).
        let mut sent = 0;
        let round = time(0).and_then(|(rtt, _)| {
            let mut bytes = size;
            let (padded, extra) = loop {
                let (padded, extra) = time(bytes)?;
                sent += bytes;
                match PeerLink::grow(rtt, padded, bytes) {
                    Some(more) => bytes = more,
                    None => break (padded, extra),
                }
            };
            Ok((rtt.min(time(0)?.0), padded, bytes, extra))
        });
        let gap = sh.links.with(|m| {
            let l = m.entry(peer.clone()).or_default();
            match round {
                Ok((rtt, padded, bytes, extra)) => l.observe_sharing(rtt, padded, bytes, extra),
                Err(e) => {
                    l.failed();
                    tracing::debug!(peer = %peer, error = %e, "link probe failed");
                }
            }
            l.gap_after(sent.max(size))
        });
        last = Some(peer);
        if stop.wait_timeout(gap) {
            return;
        }
    }
}
