//! A node's side of split training rounds: it answers the trainer's
//! [`TrainRequest`]s with its own crops, which never leave it. It runs the
//! layers before its cut on them, sends their activations, takes back their
//! gradient, runs its backward pass and steps its own optimiser, and hands
//! its node-side weights back at the end of the round for FedAvg.
//!
//! Transport-free: [`NodeTrainer::handle`] maps a request to its reply.
//! The edge node serves it on `train(node)` from a thread below the
//! priority of live analysis.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vidar_protocol::messages::{CutTime, TrainReply, TrainRequest, TrainStep, WireTensor};

use super::plan::{timed, warm_up};
use crate::data::Preprocess;
use crate::graph::{Cut, Graph};
use crate::split::Wire;
use crate::{Result, TrainError};

/// One crop a node holds: its JPEG, its pseudo-identity (a tracklet) and
/// its camera (numbered by the node).
#[derive(Debug, Clone)]
pub struct Crop {
    /// The crop as a JPEG.
    pub jpeg: Vec<u8>,
    /// Its tracklet.
    pub tracklet: u32,
    /// Its camera.
    pub camera: u32,
}

/// Where a node's crops come from, read again at every round.
pub type CropSource = Box<dyn Fn() -> Result<Vec<Crop>> + Send>;

/// The crops of a node's training file (`[training] collect`), at most
/// `limit` tracklets, newest first as the file gives them.
pub fn crops_from_training_file(path: &Path, limit: usize) -> Result<Vec<Crop>> {
    let tracklets = vidar_store::training::read_training(path, limit)
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let mut cameras: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (i, t) in tracklets.into_iter().enumerate() {
        let name = t.camera.as_str().to_string();
        let camera = cameras.iter().position(|c| *c == name).unwrap_or_else(|| {
            cameras.push(name);
            cameras.len() - 1
        });
        for s in t.samples {
            out.push(Crop {
                jpeg: s.jpeg,
                tracklet: u32::try_from(i).unwrap_or(u32::MAX),
                camera: u32::try_from(camera).unwrap_or(u32::MAX),
            });
        }
    }
    Ok(out)
}

/// What the node holds during a round.
struct Round {
    round: u64,
    graph: Graph,
    cut: Cut,
    opt: AdamW,
    crops: Vec<Crop>,
    /// Per camera, tracklets with at least `per_id` crops (indices into `crops`).
    groups: Vec<Vec<Vec<usize>>>,
    ids: usize,
    per_id: usize,
    rng: ChaCha8Rng,
    /// The last batch's number and activations, kept for its backward pass.
    pending: Option<(u32, Tensor)>,
    trained: u64,
    pace: Pace,
}

/// Sends at most `bytes_s` on average (0: no limit).
struct Pace {
    bytes_s: f64,
    free_at: Option<Instant>,
}

impl Pace {
    /// Waits until `bytes` may go.
    fn wait(&mut self, bytes: usize) {
        if self.bytes_s <= 0.0 {
            return;
        }
        let now = Instant::now();
        let from = self.free_at.map_or(now, |t| t.max(now));
        if from > now {
            std::thread::sleep(from - now);
        }
        self.free_at = Some(from + Duration::from_secs_f64(bytes as f64 / self.bytes_s));
    }
}

/// A node's split-training side.
pub struct NodeTrainer {
    model: String,
    path: PathBuf,
    pre: Preprocess,
    source: CropSource,
    device: Device,
    round: Option<Round>,
    /// The highest round begun (a stale request of an older one is refused).
    last_round: u64,
}

impl std::fmt::Debug for NodeTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTrainer")
            .field("model", &self.model)
            .field("path", &self.path)
            .field("round", &self.round.as_ref().map(|r| r.round))
            .finish_non_exhaustive()
    }
}

/// `t` as the message carries it (see [`Wire`]), named `name`.
pub fn wire(t: &Tensor, name: &str) -> Result<WireTensor> {
    let w = Wire::from_tensor(t)?;
    let shape = w
        .shape
        .iter()
        .map(|&d| {
            u32::try_from(d)
                .map_err(|_| TrainError::Invalid(format!("{name}: dimension {d} too large")))
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok(WireTensor {
        name: name.to_string(),
        shape,
        values: w.values,
    })
}

/// A received tensor as an `f32` tensor on `device`.
pub fn from_wire(w: WireTensor, device: &Device) -> Result<Tensor> {
    let shape = w.shape.iter().map(|&d| d as usize).collect();
    Wire {
        shape,
        values: w.values,
    }
    .on(device, DType::F32)
}

/// The trainable parameters in `which` as tensors to send, by name.
pub fn params_to_wire(graph: &Graph, which: &[usize]) -> Result<Vec<WireTensor>> {
    which
        .iter()
        .map(|&p| {
            let param = &graph.params()[p];
            wire(param.var.as_tensor(), &param.name)
        })
        .collect()
}

/// The tensors of `got` for the parameters in `which`, in that order:
/// each must be sent once, by name, in the graph's shape.
pub fn tensors_for(graph: &Graph, which: &[usize], got: Vec<WireTensor>) -> Result<Vec<Tensor>> {
    if got.len() != which.len() {
        return Err(TrainError::Invalid(format!(
            "{} parameters sent, this side of the cut has {}",
            got.len(),
            which.len()
        )));
    }
    let mut by_name: std::collections::HashMap<String, WireTensor> =
        got.into_iter().map(|t| (t.name.clone(), t)).collect();
    which
        .iter()
        .map(|&p| {
            let param = &graph.params()[p];
            let t = by_name.remove(&param.name).ok_or_else(|| {
                TrainError::Invalid(format!("parameter {:?} not sent", param.name))
            })?;
            let want: Vec<u32> = param.var.dims().iter().map(|&d| d as u32).collect();
            if t.shape != want {
                return Err(TrainError::Invalid(format!(
                    "parameter {:?}: shape {:?} sent, the graph has {:?}",
                    param.name, t.shape, want
                )));
            }
            Ok(from_wire(t, graph.device())?.to_dtype(param.var.dtype())?)
        })
        .collect()
}

/// Sets the parameters in `which` from `got` (see [`tensors_for`]).
pub fn params_from_wire(graph: &Graph, which: &[usize], got: Vec<WireTensor>) -> Result<()> {
    let tensors = tensors_for(graph, which, got)?;
    for (&p, t) in which.iter().zip(tensors) {
        graph.params()[p].var.set(&t)?;
    }
    Ok(())
}

impl NodeTrainer {
    /// The node's side for manifest model `model`, whose graph is the ONNX
    /// file at `path` (the file the node runs); its crops come from
    /// `source`, prepared as `pre` says.
    pub fn new(model: &str, path: &Path, pre: Preprocess, source: CropSource) -> Self {
        Self {
            model: model.to_string(),
            path: path.to_path_buf(),
            pre,
            source,
            device: Device::Cpu,
            round: None,
            last_round: 0,
        }
    }

    /// The round in progress, if any.
    pub fn round(&self) -> Option<u64> {
        self.round.as_ref().map(|r| r.round)
    }

    /// Answers one request. Whatever goes wrong is a `Refused` naming it;
    /// a refused step ends the node's part in that round.
    pub fn handle(&mut self, req: TrainRequest) -> TrainReply {
        let round = req.round;
        match self.step(req) {
            Ok(r) => r,
            Err(e) => {
                if self.round() == Some(round) {
                    self.round = None;
                }
                TrainReply::Refused { why: e.to_string() }
            }
        }
    }

    fn check_model(&self, model: &str) -> Result<()> {
        if model != self.model {
            return Err(TrainError::Invalid(format!(
                "model {model:?}: this node trains {:?}",
                self.model
            )));
        }
        Ok(())
    }

    fn load(&self) -> Result<Graph> {
        Graph::load(&self.path, &self.device, DType::F32)
    }

    fn step(&mut self, req: TrainRequest) -> Result<TrainReply> {
        match req.step {
            TrainStep::Profile { model, cuts, batch } => {
                self.check_model(&model)?;
                self.profile(&cuts, batch as usize)
            }
            TrainStep::Begin {
                model,
                cut,
                params,
                lr,
                ids,
                per_id,
                seed,
                share_bytes_s,
            } => {
                self.check_model(&model)?;
                if req.round <= self.last_round {
                    return Err(TrainError::Invalid(format!(
                        "round {}: round {} was already begun here",
                        req.round, self.last_round
                    )));
                }
                self.round = None;
                let graph = self.load()?;
                let cut = graph.cut(cut as usize)?;
                if cut.at == 0 {
                    return Err(TrainError::Invalid(
                        "cut 0: the node would send its crops themselves".into(),
                    ));
                }
                let mine = graph.params_of(0..cut.at);
                params_from_wire(&graph, &mine, params)?;
                let opt = AdamW::new(
                    graph.vars(&mine),
                    ParamsAdamW {
                        lr: f64::from(lr),
                        weight_decay: 5e-4,
                        ..ParamsAdamW::default()
                    },
                )?;
                let crops = (self.source)()?;
                let groups = groups(&crops, per_id as usize);
                let tracklets: usize = groups.iter().map(Vec::len).sum();
                let samples: usize = groups.iter().flatten().map(Vec::len).sum();
                if !groups.iter().any(|g| g.len() >= 2) {
                    return Err(TrainError::Invalid(format!(
                        "{} crops, but no camera has two tracklets of {per_id}+ crops: nothing to train on",
                        crops.len()
                    )));
                }
                self.last_round = req.round;
                self.round = Some(Round {
                    round: req.round,
                    graph,
                    cut,
                    opt,
                    crops,
                    groups,
                    ids: ids as usize,
                    per_id: per_id as usize,
                    rng: ChaCha8Rng::seed_from_u64(seed),
                    pending: None,
                    trained: 0,
                    pace: Pace {
                        bytes_s: share_bytes_s,
                        free_at: None,
                    },
                });
                Ok(TrainReply::Begun {
                    samples: samples as u64,
                    tracklets: tracklets as u64,
                })
            }
            TrainStep::Forward { batch } => {
                let pre = &mut self.pre;
                let r = current(&mut self.round, req.round)?;
                let (items, labels) = r.draw();
                let x = input(pre, &r.crops, &items, &mut r.rng, &self.device)?;
                let act = r.graph.run(r.graph.start(), r.cut, &x)?;
                let activations = wire(&act, "")?;
                r.pending = Some((batch, act));
                r.pace.wait(activations.bytes());
                Ok(TrainReply::Activations {
                    batch,
                    labels,
                    activations,
                })
            }
            TrainStep::Backward { batch, grad } => {
                let r = current(&mut self.round, req.round)?;
                let (b, act) = r.pending.take().ok_or_else(|| {
                    TrainError::Invalid(format!(
                        "batch {batch}: no forward pass to go back through"
                    ))
                })?;
                if b != batch {
                    return Err(TrainError::Invalid(format!(
                        "batch {batch}: the last forward pass was batch {b}"
                    )));
                }
                let want: Vec<u32> = act.dims().iter().map(|&d| d as u32).collect();
                if grad.shape != want {
                    return Err(TrainError::Invalid(format!(
                        "gradient of shape {:?} for activations of shape {want:?}",
                        grad.shape
                    )));
                }
                let g = from_wire(grad, &self.device)?;
                let grads = (&act * &g)?.sum_all()?.backward()?;
                r.opt.step(&grads)?;
                r.trained += act.dim(0)? as u64;
                Ok(TrainReply::Applied { batch })
            }
            TrainStep::Finish => {
                let r = current(&mut self.round, req.round)?;
                let mine = r.graph.params_of(0..r.cut.at);
                let params = params_to_wire(&r.graph, &mine)?;
                let crops = r.trained;
                self.round = None;
                Ok(TrainReply::Weights { crops, params })
            }
            TrainStep::Abort => {
                if self.round() == Some(req.round) {
                    self.round = None;
                }
                Ok(TrainReply::Applied { batch: 0 })
            }
        }
    }

    /// Times the node side at each of `cuts` on a batch of `batch` crops
    /// (its own, or noise when it holds fewer).
    fn profile(&mut self, cuts: &[u32], batch: usize) -> Result<TrainReply> {
        let graph = self.load()?;
        let crops = (self.source)()?;
        let groups = groups(&crops, 2);
        let tracklets = groups.iter().map(Vec::len).sum::<usize>() as u64;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = if crops.len() >= batch {
            let items: Vec<usize> = (0..batch).collect();
            input(&mut self.pre, &crops, &items, &mut rng, &self.device)?
        } else {
            Tensor::randn(
                0f32,
                1.0,
                (batch, 3, self.pre.height, self.pre.width),
                &self.device,
            )?
        };
        warm_up(&graph, &x)?;
        let mut times = Vec::with_capacity(cuts.len());
        for &c in cuts {
            let cut = graph.cut(c as usize)?;
            let (_, forward) = timed(&graph, graph.start(), cut, &x)?;
            let t1 = Instant::now();
            if cut.at > 0 {
                let act = graph.run(graph.start(), cut, &x)?;
                let _grads = act.sum_all()?.backward()?;
            }
            let train = t1.elapsed().as_secs_f64();
            times.push(CutTime {
                cut: c,
                forward_s: forward / batch as f64,
                train_s: train / batch as f64,
            });
        }
        Ok(TrainReply::Profile {
            samples: crops.len() as u64,
            tracklets,
            times,
        })
    }
}

fn current(round: &mut Option<Round>, want: u64) -> Result<&mut Round> {
    match round {
        Some(r) if r.round != want => Err(TrainError::Invalid(format!(
            "round {want}: this node is in round {}",
            r.round
        ))),
        Some(r) => Ok(r),
        None => Err(TrainError::Invalid(format!(
            "round {want}: not begun on this node"
        ))),
    }
}

/// Per camera, the tracklets with at least `k` crops.
fn groups(crops: &[Crop], k: usize) -> Vec<Vec<Vec<usize>>> {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<u32, BTreeMap<u32, Vec<usize>>> = BTreeMap::new();
    for (i, c) in crops.iter().enumerate() {
        by.entry(c.camera)
            .or_default()
            .entry(c.tracklet)
            .or_default()
            .push(i);
    }
    by.into_values()
        .map(|t| t.into_values().filter(|v| v.len() >= k.max(1)).collect())
        .collect()
}

impl Round {
    /// A P x K batch of one camera (P at most the camera's tracklets):
    /// crop indices and their labels.
    fn draw(&mut self) -> (Vec<usize>, Vec<u32>) {
        let cams: Vec<usize> = (0..self.groups.len())
            .filter(|&c| self.groups[c].len() >= 2)
            .collect();
        let cam = cams[self.rng.gen_range(0..cams.len())];
        let group = &self.groups[cam];
        let mut order: Vec<usize> = (0..group.len()).collect();
        order.shuffle(&mut self.rng);
        let mut items = Vec::with_capacity(self.ids * self.per_id);
        let mut labels = Vec::with_capacity(self.ids * self.per_id);
        for &t in order.iter().take(self.ids) {
            let mut members = group[t].clone();
            members.shuffle(&mut self.rng);
            for &i in members.iter().take(self.per_id) {
                items.push(i);
                labels.push(self.crops[i].tracklet);
            }
        }
        (items, labels)
    }
}

/// The crops `items` as the model's input, each mirrored at random.
fn input(
    pre: &mut Preprocess,
    crops: &[Crop],
    items: &[usize],
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor> {
    let (h, w) = (pre.height, pre.width);
    let mut data = Vec::with_capacity(items.len() * 3 * h * w);
    for &i in items {
        let chw = pre.jpeg(&crops[i].jpeg, &format!("crop {i}"))?;
        if rng.gen_bool(0.5) {
            for row in chw.chunks_exact(w) {
                data.extend(row.iter().rev());
            }
        } else {
            data.extend_from_slice(&chw);
        }
    }
    Ok(Tensor::from_vec(data, (items.len(), 3, h, w), device)?)
}
