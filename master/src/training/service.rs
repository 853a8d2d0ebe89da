//! The training thread: runs the rounds an operator asks for (see the
//! module above) and carries their steps over zenoh.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use candle_core::{DType, Device};
use vidar_protocol::messages::{CutTime, TrainReply, TrainRequest, TrainStep};
use vidar_protocol::{Keys, NodeId, UnixMs};
use vidar_scheduler::edgesplit::SplitAlgorithm;
use vidar_train::data::Preprocess;
use vidar_train::rounds::plan::{candidates, plan_round, Candidate};
use vidar_train::rounds::{RoundConfig, Trainer, Transport};
use vidar_train::Graph;

use super::{
    NodeRound, RoundSummary, RunRequest, Training, TrainingConfig, TrainingState, KEPT_ROUNDS,
};
use crate::membership::Membership;
use crate::models::Registry;

/// What the training service needs.
#[derive(Debug)]
pub struct TrainingService {
    /// The site link (the master's own session: nodes accept its steps).
    pub link: vidar_link::Link,
    /// The site's keys.
    pub keys: Keys,
    /// Who is live.
    pub membership: Membership,
    /// The registry's folder (the deployed weights; the candidate goes there).
    pub models_dir: PathBuf,
    /// `[training]`.
    pub config: TrainingConfig,
    /// Triggered to stop.
    pub stop: vidar_runtime::Shutdown,
}

impl TrainingService {
    /// Starts the thread; the handle takes requests.
    pub fn spawn(self) -> std::io::Result<(Training, JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let handle = Training {
            state: Arc::new(Mutex::new(TrainingState::default())),
            requests: tx,
        };
        let h = handle.clone();
        let thread = std::thread::Builder::new()
            .name("vidar-training".into())
            .spawn(move || self.run(&h, &rx))?;
        Ok((handle, thread))
    }

    fn run(&self, handle: &Training, rx: &Receiver<RunRequest>) {
        while !self.stop.is_triggered() {
            let req = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let algorithm = req.algorithm.unwrap_or(self.config.algorithm);
            let outcome = self.rounds(handle, req.rounds, algorithm);
            handle.update(|s| {
                s.running = false;
                match outcome {
                    Ok(version) => s.candidate = Some(version),
                    Err(e) => {
                        tracing::warn!(error = %e, "split training stopped");
                        s.error = Some(e);
                    }
                }
            });
        }
    }

    /// The base weights: the deployed version's file, else the shipped one.
    fn base(&self) -> Result<(PathBuf, Option<String>, vidar_models::ModelSpec), String> {
        let store =
            vidar_models::ModelStore::from_env().map_err(|e| format!("the model folder: {e}"))?;
        let spec = store
            .manifest()
            .model(&self.config.model)
            .map_err(|e| e.to_string())?
            .clone();
        let registry = Registry::load(&self.models_dir).map_err(|e| e.to_string())?;
        if let Some((_, v)) = registry
            .deployed()
            .filter(|(_, v)| v.model == self.config.model)
        {
            let path = self.models_dir.join(format!("{}.onnx", v.sha256));
            return Ok((path, Some(v.version.clone()), spec));
        }
        let path = store.verified_path(&spec.file).map_err(|e| e.to_string())?;
        Ok((path, None, spec))
    }

    fn rounds(
        &self,
        handle: &Training,
        rounds: u32,
        algorithm: SplitAlgorithm,
    ) -> Result<String, String> {
        let c = &self.config;
        let (path, parent, spec) = self.base()?;
        let graph = Graph::load(&path, &Device::Cpu, DType::F32).map_err(|e| e.to_string())?;
        let pre = Preprocess::for_model(&spec).map_err(|e| e.to_string())?;
        let transport = Zenoh {
            link: &self.link,
            keys: &self.keys,
            stop: &self.stop,
        };
        let timeout = Duration::from_secs_f64(c.step_timeout_s);
        let mut profiles: BTreeMap<String, Vec<CutTime>> = BTreeMap::new();
        let mut left_out: BTreeMap<String, String> = BTreeMap::new();
        self.profile_new(&transport, timeout, &mut profiles, &mut left_out);
        handle.update(|s| s.left_out = left_out.clone().into_iter().collect());
        if profiles.is_empty() {
            return Err(format!(
                "no node takes part: {}",
                left_out
                    .iter()
                    .map(|(n, w)| format!("{n}: {w}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        let hw = (pre.height, pre.width);
        let cands: Vec<Candidate> =
            candidates(&graph, &c.cuts, c.profile_batch as usize, hw).map_err(|e| e.to_string())?;
        let trainer = Trainer::new(graph).map_err(|e| e.to_string())?;
        let config = RoundConfig {
            model: c.model.clone(),
            batches: c.batches,
            ids: c.ids,
            per_id: c.per_id,
            lr: c.lr,
            margin: c.margin,
            timeout,
        };
        let crops = (c.ids * c.per_id) as usize;
        let bandwidth = c.bandwidth_mbit_s * 125_000.0;
        let first_round = UnixMs::now().ms().max(1) as u64;
        let mut losses = Vec::new();
        for k in 0..rounds {
            if self.stop.is_triggered() {
                return Err("the master is stopping".into());
            }
            // Nodes that left are out of this round; new or returning ones
            // are profiled and in.
            if k > 0 {
                self.profile_new(&transport, timeout, &mut profiles, &mut left_out);
                handle.update(|s| s.left_out = left_out.clone().into_iter().collect());
            }
            let live: BTreeSet<String> = self
                .membership
                .live()
                .iter()
                .map(|s| s.node.as_str().to_string())
                .collect();
            let taking: Vec<(String, Vec<CutTime>)> = profiles
                .iter()
                .filter(|(n, _)| live.contains(*n))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect();
            if taking.is_empty() {
                return Err(format!("round {}: no node that takes part is live", k + 1));
            }
            let plan = plan_round(&cands, &taking, crops, c.batches, bandwidth, algorithm)
                .map_err(|e| e.to_string())?;
            let round = first_round + u64::from(k);
            let report = trainer
                .round(round, &plan.parts, &config, &transport, round)
                .map_err(|e| format!("round {}: {e}", k + 1))?;
            losses.push(report.loss());
            // A dropped node is profiled again before it takes part again.
            for o in report.nodes.iter().filter(|o| o.dropped.is_some()) {
                profiles.remove(&o.node);
            }
            let summary = RoundSummary {
                round,
                algorithm,
                seconds: report.seconds,
                predicted_s: plan.predicted_s,
                loss: report.loss(),
                nodes: report
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, o)| NodeRound {
                        node: o.node.clone(),
                        cut: o.cut,
                        share_mbit_s: plan.parts[i].share_bytes_s / 125_000.0,
                        batches: o.batches,
                        crops: o.crops,
                        up_bytes: o.up_bytes,
                        down_bytes: o.down_bytes,
                        loss: o.loss,
                        seconds: o.seconds,
                        predicted_s: plan.node_predicted_s[i],
                        speed: plan.speeds[i],
                        dropped: o.dropped.clone(),
                    })
                    .collect(),
            };
            tracing::info!(
                round = k + 1,
                of = rounds,
                seconds = report.seconds,
                predicted_s = plan.predicted_s,
                loss = report.loss(),
                nodes = report.completed(),
                "split training round done"
            );
            handle.update(|s| {
                s.done = k + 1;
                s.totals.rounds += 1;
                for n in &summary.nodes {
                    s.totals.up_bytes += n.up_bytes;
                    s.totals.down_bytes += n.down_bytes;
                    s.totals.dropped += u64::from(n.dropped.is_some());
                }
                if s.rounds.len() >= KEPT_ROUNDS {
                    s.rounds.pop_front();
                }
                s.rounds.push_back(summary);
            });
        }
        self.candidate(&trainer, parent.as_deref(), rounds, algorithm, &losses)
    }

    /// Asks every live node not in `profiles` for its profile: those that
    /// can train go in `profiles`, the others in `left_out` with why.
    fn profile_new(
        &self,
        transport: &Zenoh<'_>,
        timeout: Duration,
        profiles: &mut BTreeMap<String, Vec<CutTime>>,
        left_out: &mut BTreeMap<String, String>,
    ) {
        let c = &self.config;
        let cuts: Vec<u32> = c.cuts.iter().map(|&k| k as u32).collect();
        for status in self.membership.live() {
            let node = status.node.as_str().to_string();
            if profiles.contains_key(&node) {
                continue;
            }
            let ask = TrainRequest {
                round: 0,
                step: TrainStep::Profile {
                    model: c.model.clone(),
                    cuts: cuts.clone(),
                    batch: c.profile_batch,
                },
            };
            let why = match transport.ask(&node, &ask, timeout) {
                Ok(TrainReply::Profile {
                    tracklets, times, ..
                }) if tracklets >= 2 => {
                    left_out.remove(&node);
                    profiles.insert(node, times);
                    continue;
                }
                Ok(TrainReply::Profile { tracklets, .. }) => {
                    format!("{tracklets} tracklet(s) with crops: too few to train")
                }
                Ok(TrainReply::Refused { why }) => why,
                Ok(_) => "answered something else than its profile".into(),
                Err(e) => format!("no profile ({e}): is [training] rounds on?"),
            };
            left_out.insert(node, why);
        }
    }

    /// The trained weights as a registry version (not deployed).
    fn candidate(
        &self,
        trainer: &Trainer,
        parent: Option<&str>,
        rounds: u32,
        algorithm: SplitAlgorithm,
        losses: &[f64],
    ) -> Result<String, String> {
        let bytes = trainer.graph().to_onnx().map_err(|e| e.to_string())?;
        let version = format!(
            "{}-{}-{}",
            self.config.model,
            algorithm.name(),
            UnixMs::now().ms()
        );
        vidar_store::create_private_dir(&self.models_dir)
            .map_err(|e| format!("{}: {e}", self.models_dir.display()))?;
        let tmp = tempfile::NamedTempFile::new_in(&self.models_dir)
            .map_err(|e| format!("{}: {e}", self.models_dir.display()))?;
        std::fs::write(tmp.path(), &bytes).map_err(|e| format!("{}: {e}", tmp.path().display()))?;
        let mut metrics = BTreeMap::new();
        metrics.insert("rounds".to_string(), f64::from(rounds));
        if let (Some(first), Some(last)) = (losses.first(), losses.last()) {
            metrics.insert("loss_first_round".to_string(), *first);
            metrics.insert("loss_last_round".to_string(), *last);
        }
        Registry::edit(&self.models_dir, |r| {
            r.add(
                &self.models_dir,
                tmp.path(),
                &self.config.model,
                &version,
                parent,
                metrics,
            )
            .map(|_| ())
        })
        .map_err(|e| e.to_string())?;
        tracing::info!(%version, parent, "split training candidate added to the registry (not deployed)");
        Ok(version)
    }
}

/// Steps over zenoh, on `train(node)`.
struct Zenoh<'a> {
    link: &'a vidar_link::Link,
    keys: &'a Keys,
    stop: &'a vidar_runtime::Shutdown,
}

impl Transport for Zenoh<'_> {
    fn ask(&self, node: &str, req: &TrainRequest, timeout: Duration) -> Result<TrainReply, String> {
        if self.stop.is_triggered() {
            return Err("the master is stopping".into());
        }
        let id = NodeId::new(node).map_err(|e| format!("{node:?}: {e}"))?;
        // Waited for in slices, so a master that stops does not wait out a
        // slow node's step.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.link
            .request_then::<TrainRequest, TrainReply>(
                &self.keys.train(&id),
                req,
                timeout,
                move |r| {
                    let _ = tx.send(r);
                },
            )
            .map_err(|e| e.to_string())?;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(r) => return r.map_err(|e| e.to_string()),
                Err(RecvTimeoutError::Timeout) if self.stop.is_triggered() => {
                    return Err("the master is stopping".into())
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err("the request was dropped".into()),
            }
        }
    }
}
