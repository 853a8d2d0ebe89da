//! Split federated training of the site's re-ID model (EdgeSplit, issue
//! 13), run by the master: it is the trainer.
//!
//! An operator asks for rounds (`POST /api/training`). The master's
//! training thread then:
//! 1. asks every live node for its profile on `train(node)` (nodes take part
//!    only with `[training] rounds`): the node side's time per crop at each
//!    candidate cut, measured on the node under its own CPU limits, and how
//!    many samples it holds;
//! 2. times the same cuts itself ([`vidar_train::rounds::plan::candidates`]);
//! 3. per round, plans every node's cut and share of `bandwidth_mbit_s` with
//!    `algorithm` (EdgeSplit's Algorithm 6 by default, or a baseline), and
//!    runs the round ([`vidar_train::rounds::Trainer`]) over zenoh: the nodes
//!    train the layers before their cut on their own crops (which never
//!    leave them), the master the rest, FedAvg at the end; a node that fails
//!    a step is dropped from that round;
//! 4. writes the trained weights into the same ONNX graph and adds them to
//!    the model registry as a new version whose parent is the deployed one,
//!    with the rounds' figures as its metrics. Nothing is deployed: the
//!    operator measures the candidate on a held-out set
//!    (`vidar-edge eval reid --weights`) before promoting it (docs/deploy.md,
//!    "Split training rounds").
//!
//! `GET /api/training` shows what runs and every round's figures: each
//! node's cut, share, batches, bytes, time against the plan's prediction,
//! and why a node was dropped.

mod service;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use vidar_config::{Problem, Problems};
use vidar_scheduler::edgesplit::SplitAlgorithm;

pub use service::TrainingService;

/// Rounds kept for `GET /api/training`.
pub const KEPT_ROUNDS: usize = 200;
/// Most rounds one request may ask for.
pub const MAX_ROUNDS: u32 = 1000;

/// `[training]` of the master's configuration: split training rounds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// The manifest model trained. Default the nodes' default re-ID model.
    pub model: String,
    /// Candidate cuts (nodes of the graph before the cut, as `vidar-train
    /// cuts` lists them); the plan picks one per node per round. The
    /// baselines that train the whole model on the node (`vanilla_fl`,
    /// `adaptive_fl`) take the last, so it should be the whole model.
    /// Default: after OSNet x0.25's conv1, conv2, conv3 and conv5, and the
    /// whole model (396).
    pub cuts: Vec<usize>,
    /// Batches per node per round. Default 20.
    pub batches: u32,
    /// Pseudo-identities (a node's tracklets) per batch. Default 8.
    pub ids: u32,
    /// Crops per pseudo-identity. Default 4.
    pub per_id: u32,
    /// Learning rate, both sides (AdamW). Default 1e-4.
    pub lr: f64,
    /// Triplet margin. Default 0.3.
    pub margin: f64,
    /// The master's link capacity given to training, Mbit/s, shared among
    /// the nodes by the plan. Default 10.
    pub bandwidth_mbit_s: f64,
    /// How rounds are planned: `edgesplit` (Algorithm 6), or a baseline:
    /// `edgesplit_fix`, `adaptive_fl`, `vanilla_fl`. Default `edgesplit`.
    pub algorithm: SplitAlgorithm,
    /// How long a node may take over one step, seconds. Default 300.
    pub step_timeout_s: f64,
    /// Crops per batch when nodes and the master time the cuts. Default 8.
    pub profile_batch: u32,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            model: "osnet-x0-25-msmt17-combineall".into(),
            cuts: vec![3, 131, 259, 387, 396],
            batches: 20,
            ids: 8,
            per_id: 4,
            lr: 1e-4,
            margin: 0.3,
            bandwidth_mbit_s: 10.0,
            algorithm: SplitAlgorithm::Edgesplit,
            step_timeout_s: 300.0,
            profile_batch: 8,
        }
    }
}

impl TrainingConfig {
    /// Every wrong value, by key (under `training.`).
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        if self.model.is_empty() {
            p.push("model", "empty");
        }
        if self.cuts.is_empty() || self.cuts.contains(&0) {
            p.push(
                "cuts",
                format!(
                    "{:?}: at least one, none 0 (a node never sends its crops)",
                    self.cuts
                ),
            );
        }
        if !(1..=100_000).contains(&self.batches) {
            p.push("batches", format!("{}: 1..=100000 allowed", self.batches));
        }
        if self.ids < 2 || self.per_id < 2 || self.ids * self.per_id > 1024 {
            p.push(
                "ids",
                format!(
                    "ids {} x per_id {}: at least 2 of each, at most 1024 crops a batch",
                    self.ids, self.per_id
                ),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1.0) {
            p.push("lr", format!("{}: 0 < lr <= 1 allowed", self.lr));
        }
        if !(self.margin.is_finite() && self.margin > 0.0 && self.margin <= 2.0) {
            p.push(
                "margin",
                format!("{}: 0 < margin <= 2 allowed", self.margin),
            );
        }
        if !(self.bandwidth_mbit_s.is_finite() && self.bandwidth_mbit_s > 0.0) {
            p.push(
                "bandwidth_mbit_s",
                format!("{}: a positive number expected", self.bandwidth_mbit_s),
            );
        }
        if !(self.step_timeout_s.is_finite() && (1.0..=3600.0).contains(&self.step_timeout_s)) {
            p.push(
                "step_timeout_s",
                format!("{}: 1..=3600 allowed", self.step_timeout_s),
            );
        }
        if !(1..=256).contains(&self.profile_batch) {
            p.push(
                "profile_batch",
                format!("{}: 1..=256 allowed", self.profile_batch),
            );
        }
        p.into_vec()
    }
}

/// One node's part in a finished round, as `GET /api/training` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRound {
    /// The node.
    pub node: String,
    /// Its cut.
    pub cut: usize,
    /// Its share of the link, Mbit/s (0: none set).
    pub share_mbit_s: f64,
    /// Batches it completed.
    pub batches: u32,
    /// Crops it trained on.
    pub crops: u64,
    /// Bytes it sent the master.
    pub up_bytes: u64,
    /// Bytes the master sent it.
    pub down_bytes: u64,
    /// Mean loss of its batches.
    pub loss: f64,
    /// Its round time, seconds.
    pub seconds: f64,
    /// What the plan predicted for it, seconds.
    pub predicted_s: f64,
    /// Its speed in the plan's model (the master = 1).
    pub speed: f64,
    /// Why it was dropped, if it was.
    pub dropped: Option<String>,
}

/// A finished round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundSummary {
    /// The round.
    pub round: u64,
    /// How it was planned.
    pub algorithm: SplitAlgorithm,
    /// Wall time, seconds.
    pub seconds: f64,
    /// The plan's round time, seconds.
    pub predicted_s: f64,
    /// Mean loss over every node's batches.
    pub loss: f64,
    /// Per node.
    pub nodes: Vec<NodeRound>,
}

/// What the training thread is doing and has done.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrainingState {
    /// Whether rounds are running.
    pub running: bool,
    /// Rounds asked for by the request in progress.
    pub asked: u32,
    /// Rounds of it done.
    pub done: u32,
    /// Nodes left out of the run, and why (no `[training] rounds`, no
    /// samples, no answer).
    pub left_out: Vec<(String, String)>,
    /// The last rounds, oldest first (at most [`KEPT_ROUNDS`]).
    pub rounds: VecDeque<RoundSummary>,
    /// The registry version the last run added, if any.
    pub candidate: Option<String>,
    /// Why the last run stopped early, if it did.
    pub error: Option<String>,
    /// Totals since start: rounds, bytes up, bytes down, nodes dropped.
    pub totals: Totals,
}

/// Totals since the master started.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    /// Rounds finished.
    pub rounds: u64,
    /// Bytes the nodes sent the master.
    pub up_bytes: u64,
    /// Bytes the master sent the nodes.
    pub down_bytes: u64,
    /// Node rounds that ended with the node dropped.
    pub dropped: u64,
}

/// A request for rounds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// How many rounds.
    pub rounds: u32,
    /// How to plan them (default: the configured `algorithm`).
    #[serde(default)]
    pub algorithm: Option<SplitAlgorithm>,
}

/// The handle the API holds.
#[derive(Debug, Clone)]
pub struct Training {
    state: Arc<Mutex<TrainingState>>,
    requests: std::sync::mpsc::SyncSender<RunRequest>,
}

impl Training {
    /// What runs and has run.
    pub fn state(&self) -> TrainingState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks for rounds; refused (with why) when some are running or the
    /// request is out of bounds.
    pub fn start(&self, req: RunRequest) -> Result<(), String> {
        if req.rounds == 0 || req.rounds > MAX_ROUNDS {
            return Err(format!("rounds: {}, 1..={MAX_ROUNDS} allowed", req.rounds));
        }
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.running {
                return Err(format!(
                    "rounds are running ({} of {} done)",
                    s.done, s.asked
                ));
            }
            s.running = true;
            s.asked = req.rounds;
            s.done = 0;
            s.error = None;
        }
        self.requests.try_send(req).map_err(|e| {
            self.state.lock().unwrap_or_else(|p| p.into_inner()).running = false;
            format!("the training thread does not take requests: {e}")
        })
    }

    fn update(&self, f: impl FnOnce(&mut TrainingState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }
}
