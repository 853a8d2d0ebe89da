//! One job's worker on this node: its own thread, running the job's stages
//! placed here, each item through every stage here that follows, and
//! sending what a stage on another node takes through that flow's token
//! bucket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vidar_protocol::messages::jobs::CheckedJob;
use vidar_protocol::messages::{JobAssignment, JobItem};
use vidar_protocol::{NodeId, UnixMs};

use super::stages::{Builders, Data, Exec, Item};
use super::{Hub, Input, StageStats, WORKER_QUEUE};
use crate::bandwidth::TokenBucket;

/// What every worker of a node shares.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// This node.
    pub me: NodeId,
    /// The cluster link.
    pub link: vidar_link::Link,
    /// Taps and metrics.
    pub hub: Arc<Hub>,
    /// Model and store access.
    pub builders: Builders,
    /// The bytes this node's jobs send to each other node (the link prober
    /// adds what was sent to a peer while it timed a probe to that peer).
    pub sent: Arc<crate::bandwidth::SentTo>,
}

/// A running worker.
pub struct Handle {
    /// The placement it runs (its shares as last sent).
    pub assignment: Arc<JobAssignment>,
    /// Its inbox.
    pub tx: SyncSender<Input>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("job", &self.assignment.spec.id)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Stops the worker and waits for it.
    pub fn stop(mut self, hub: &Hub) {
        hub.untap(&self.assignment.spec.id);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Outgoing flow into a stage on another node.
struct Flow {
    publisher: vidar_link::Publisher<JobItem>,
    bucket: TokenBucket,
    /// What all flows to the receiving node send (this one's share is
    /// counted in it while the flow lives).
    sent: Arc<crate::bandwidth::PeerSent>,
    share: u64,
}

impl Flow {
    fn set_share(&mut self, share: u64) {
        self.sent.share.fetch_add(share, Ordering::Relaxed);
        self.sent.share.fetch_sub(self.share, Ordering::Relaxed);
        self.share = share;
        self.bucket.set_rate(share);
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.sent.share.fetch_sub(self.share, Ordering::Relaxed);
    }
}

struct Worker {
    ctx: Ctx,
    a: Arc<JobAssignment>,
    checked: CheckedJob,
    /// Per stage, the stages that take its output.
    consumers: Vec<Vec<usize>>,
    execs: Vec<Option<Exec>>,
    stats: Vec<Arc<StageStats>>,
    flows: HashMap<usize, Flow>,
    seq: u64,
}

/// Starts the worker of `a` (whose stages some run here), checked as `checked`.
pub fn spawn(ctx: &Ctx, a: Arc<JobAssignment>, checked: CheckedJob) -> std::io::Result<Handle> {
    let (tx, rx) = std::sync::mpsc::sync_channel(WORKER_QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let n = a.spec.stages.len();
    let mut consumers = vec![Vec::new(); n];
    for (i, p) in checked.inputs.iter().enumerate() {
        if let Some(p) = p {
            consumers[*p].push(i);
        }
    }
    let stats = a
        .spec
        .stages
        .iter()
        .map(|s| ctx.hub.stats(&a.spec.id, &s.name))
        .collect();
    let w = Worker {
        ctx: ctx.clone(),
        a: Arc::clone(&a),
        checked,
        consumers,
        execs: (0..n).map(|_| None).collect(),
        stats,
        flows: HashMap::new(),
        seq: 0,
    };
    let source_here = a.nodes.get(w.checked.source) == Some(&ctx.me);
    let camera = a.spec.camera().cloned();
    let stop2 = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(format!("job-{}", a.spec.id))
        .spawn(move || w.run(rx, &stop2))?;
    if let (true, Some(camera)) = (source_here, camera) {
        ctx.hub.tap(&a.spec.id, &camera, a.spec.rate, tx.clone());
    }
    Ok(Handle {
        assignment: a,
        tx,
        stop,
        thread: Some(thread),
    })
}

impl Worker {
    fn here(&self, i: usize) -> bool {
        self.a.nodes.get(i) == Some(&self.ctx.me)
    }

    /// Loads the models of the stages here and declares the flows out.
    fn start(&mut self) {
        let id = self.a.spec.id.clone();
        for i in 0..self.a.spec.stages.len() {
            let stage = &self.a.spec.stages[i];
            if self.here(i) {
                match Exec::build(&self.ctx.builders, &self.ctx.link, &self.ctx.me, &id, stage) {
                    Ok(e) => self.execs[i] = Some(e),
                    Err(e) => {
                        tracing::warn!(job = %id, stage = %stage.name, error = %format!("{e:#}"), "job stage cannot start; its items fail")
                    }
                }
            }
            // A flow from here into a stage elsewhere.
            let from_here = self.checked.inputs[i].is_some_and(|p| self.here(p));
            if from_here && !self.here(i) {
                let Some(to) = self.a.nodes.get(i) else {
                    continue;
                };
                let share = self.a.share_into(&stage.name).unwrap_or(0);
                self.stats[i].share.store(share, Ordering::Relaxed);
                let key = self.ctx.link.keys().job(to, &self.ctx.me);
                match self.ctx.link.publisher::<JobItem>(&key) {
                    Ok(publisher) => {
                        let mut flow = Flow {
                            publisher,
                            bucket: TokenBucket::new(share),
                            sent: self.ctx.sent.counter(to),
                            share: 0,
                        };
                        flow.set_share(share);
                        self.flows.insert(i, flow);
                    }
                    Err(e) => {
                        tracing::warn!(job = %id, stage = %stage.name, error = %e, "declaring a job flow")
                    }
                }
            }
        }
        tracing::info!(job = %id, stages = self.execs.iter().filter(|e| e.is_some()).count(), flows_out = self.flows.len(), "job started here");
    }

    fn run(mut self, rx: Receiver<Input>, stop: &AtomicBool) {
        let mut cpu_at = crate::cpu::thread_cpu();
        self.start();
        while !stop.load(Ordering::Relaxed) {
            // This thread's CPU since the last turn (model loads included).
            self.count_cpu(&mut cpu_at);
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Input::Frame(f)) => {
                    self.seq += 1;
                    let item = Item {
                        camera: f.camera,
                        seq: self.seq,
                        captured_ms: UnixMs(f.captured_ms),
                        data: Data::Frame(f.rgb),
                    };
                    let src = self.checked.source;
                    self.stats[src].items.fetch_add(1, Ordering::Relaxed);
                    self.emit(src, item);
                }
                Ok(Input::Remote(item)) => {
                    let Some(i) = self
                        .a
                        .spec
                        .stages
                        .iter()
                        .position(|s| s.name == item.to_stage)
                    else {
                        continue;
                    };
                    match Item::from_wire(*item) {
                        Ok(item) => self.process(i, item),
                        Err(e) => {
                            self.stats[i].errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(job = %self.a.spec.id, error = e, "job item not decoded");
                        }
                    }
                }
                Ok(Input::Shares(flows)) => self.reshare(&flows),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.count_cpu(&mut cpu_at);
        tracing::info!(job = %self.a.spec.id, "job stopped here");
    }

    /// Adds this thread's CPU time since `at` to the jobs' total.
    fn count_cpu(&self, at: &mut Duration) {
        let now = crate::cpu::thread_cpu();
        let ns = u64::try_from(now.saturating_sub(*at).as_nanos()).unwrap_or(u64::MAX);
        self.ctx.hub.cpu_ns.fetch_add(ns, Ordering::Relaxed);
        *at = now;
    }

    /// The plan moved the shares only: the buckets take the new rates.
    fn reshare(&mut self, flows: &[vidar_protocol::messages::JobFlow]) {
        for (i, flow) in self.flows.iter_mut() {
            let name = &self.a.spec.stages[*i].name;
            let share = flows
                .iter()
                .find(|f| &f.to_stage == name)
                .map_or(0, |f| f.bytes_per_s);
            flow.set_share(share);
            self.stats[*i].share.store(share, Ordering::Relaxed);
        }
    }

    /// Runs stage `i` (here) on `item` and passes the result on.
    fn process(&mut self, i: usize, item: Item) {
        let stats = Arc::clone(&self.stats[i]);
        let Some(exec) = self.execs[i].as_mut() else {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        stats.items.fetch_add(1, Ordering::Relaxed);
        let name = self.a.spec.stages[i].name.clone();
        match exec.run(
            item,
            self.checked.takes[i],
            &self.a.spec.id,
            &name,
            &self.ctx.me,
        ) {
            Ok(Some(out)) => self.emit(i, out),
            Ok(None) => {}
            Err(e) => {
                let n = stats.errors.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(job = %self.a.spec.id, stage = %name, error = e, errors = n, "job stage failed on an item");
                }
            }
        }
    }

    /// Hands stage `from`'s output to every stage that takes it.
    fn emit(&mut self, from: usize, item: Item) {
        let n = self.consumers[from].len();
        let last = n.saturating_sub(1);
        let mut item = Some(item);
        for k in 0..n {
            let c = self.consumers[from][k];
            let one = if k == last { item.take() } else { item.clone() };
            let Some(one) = one else { break };
            if self.here(c) {
                self.process(c, one);
            } else {
                self.send(c, one);
            }
        }
    }

    /// Sends `item` to the node of stage `to`, within the flow's share.
    fn send(&mut self, to: usize, item: Item) {
        let stats = Arc::clone(&self.stats[to]);
        let Some(flow) = self.flows.get_mut(&to) else {
            stats.flow_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let name = &self.a.spec.stages[to].name;
        let wire = match item.to_wire(&self.a.spec.id, name, &self.ctx.me) {
            Ok(w) => w,
            Err(e) => {
                stats.flow_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %format!("{e:#}"), "job item not encoded");
                return;
            }
        };
        let encoded = match vidar_link::Encoded::new(&wire) {
            Ok(e) => e,
            Err(e) => {
                stats.flow_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "job item refused by its own checks");
                return;
            }
        };
        stats.offered_items.fetch_add(1, Ordering::Relaxed);
        stats
            .offered_bytes
            .fetch_add(encoded.len() as u64, Ordering::Relaxed);
        if !flow.bucket.take_owing_at(encoded.len(), Instant::now()) {
            stats.flow_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match flow.publisher.put_encoded(&encoded) {
            Ok(()) => {
                stats
                    .flow_bytes
                    .fetch_add(encoded.len() as u64, Ordering::Relaxed);
                flow.sent
                    .bytes
                    .fetch_add(encoded.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                stats.flow_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "job item not sent");
            }
        }
    }
}
