//! Split training rounds, trainer and nodes in one process: the same
//! `NodeTrainer` the edge node serves over zenoh, answering the same
//! `TrainRequest`s, on a small graph with every operator the trainer
//! implements and JPEG crops as a node keeps them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use candle_core::{DType, Device};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vidar_protocol::messages::{CutTime, TrainReply, TrainRequest, TrainStep, WireTensor};
use vidar_scheduler::edgesplit::SplitAlgorithm;
use vidar_train::data::Preprocess;
use vidar_train::rounds::plan::{plan_round, Candidate};
use vidar_train::rounds::{Crop, NodePart, NodeTrainer, RoundConfig, Trainer, Transport};
use vidar_train::Graph;

mod common;

const MODEL: &str = "small";

/// Six people per camera, two cameras, four crops each: a pattern per
/// person, noise per crop, as 8x8 JPEGs.
fn crops(seed: u64) -> Vec<Crop> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for camera in 0..2u32 {
        for person in 0..6u32 {
            for _ in 0..4 {
                let img = image::RgbImage::from_fn(8, 8, |x, y| {
                    let on = (x * 3 + y * 5 + person * 7) % 4 < 2;
                    let base = if on { 200.0 } else { 40.0 };
                    let mut v =
                        |c: f32| (base + c + rng.gen_range(-25.0f32..25.0)).clamp(0.0, 255.0) as u8;
                    image::Rgb([v(0.0), v(10.0 * camera as f32), v(-10.0)])
                });
                let mut jpeg = std::io::Cursor::new(Vec::new());
                img.write_to(&mut jpeg, image::ImageFormat::Jpeg)
                    .expect("jpeg");
                out.push(Crop {
                    jpeg: jpeg.into_inner(),
                    tracklet: camera * 100 + person,
                    camera,
                });
            }
        }
    }
    out
}

fn graph() -> Graph {
    Graph::from_model(common::small_model(9), MODEL, &Device::Cpu, DType::F32).expect("graph")
}

/// The small model written as a node keeps its model file.
fn model_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("small.onnx");
    std::fs::write(&path, graph().to_onnx().expect("encode")).expect("write");
    path
}

fn node(path: &std::path::Path, seed: u64) -> NodeTrainer {
    let pre = Preprocess::new(8, 8, [0.5; 3], [0.25; 3]);
    NodeTrainer::new(MODEL, path, pre, Box::new(move || Ok(crops(seed))))
}

/// Calls the nodes in this process; records every reply, and can make a
/// node fall silent after a number of requests.
struct Local {
    nodes: HashMap<String, Mutex<NodeTrainer>>,
    silent_after: HashMap<String, usize>,
    asked: Mutex<HashMap<String, usize>>,
    replies: Mutex<Vec<(String, TrainReply)>>,
}

impl Local {
    fn new(nodes: Vec<(&str, NodeTrainer)>) -> Self {
        Self {
            nodes: nodes
                .into_iter()
                .map(|(n, t)| (n.to_string(), Mutex::new(t)))
                .collect(),
            silent_after: HashMap::new(),
            asked: Mutex::new(HashMap::new()),
            replies: Mutex::new(Vec::new()),
        }
    }
}

impl Transport for Local {
    fn ask(
        &self,
        node: &str,
        req: &TrainRequest,
        _timeout: Duration,
    ) -> Result<TrainReply, String> {
        let n = {
            let mut asked = self.asked.lock().expect("ok");
            let n = asked.entry(node.to_string()).or_default();
            *n += 1;
            *n
        };
        if self.silent_after.get(node).is_some_and(|&k| n > k) {
            return Err("no reply within the timeout".into());
        }
        let t = self.nodes.get(node).ok_or("no such node")?;
        let reply = t.lock().expect("ok").handle(req.clone());
        self.replies
            .lock()
            .expect("ok")
            .push((node.to_string(), reply.clone()));
        Ok(reply)
    }
}

fn config(batches: u32) -> RoundConfig {
    RoundConfig {
        model: MODEL.into(),
        batches,
        ids: 4,
        per_id: 2,
        lr: 1e-2,
        margin: 0.5,
        timeout: Duration::from_secs(10),
    }
}

fn values(g: &Graph, p: usize) -> Vec<f32> {
    g.params()[p]
        .var
        .as_tensor()
        .flatten_all()
        .expect("ok")
        .to_vec1()
        .expect("ok")
}

fn weights_of(replies: &[(String, TrainReply)], node: &str) -> (u64, Vec<WireTensor>) {
    replies
        .iter()
        .find_map(|(n, r)| match r {
            TrainReply::Weights { crops, params } if n == node => Some((*crops, params.clone())),
            _ => None,
        })
        .expect("weights")
}

#[test]
fn a_round_over_two_nodes_at_different_cuts_trains_both_sides_and_averages_the_node_sides() {
    let dir = tempfile::tempdir().expect("ok");
    let path = model_file(dir.path());
    let local = Local::new(vec![("a", node(&path, 1)), ("b", node(&path, 2))]);
    let trainer = Trainer::new(graph()).expect("ok");
    let g = trainer.graph();
    let (shallow, deep) = (2, 4);
    let only_a = g.params_of(0..shallow);
    let a_and_b_differ = g.params_of(shallow..deep);
    let rest = g.params_of(deep..g.len());
    assert!(!only_a.is_empty() && !a_and_b_differ.is_empty() && !rest.is_empty());
    let before_rest = values(g, rest[0]);
    let parts = vec![
        NodePart {
            node: "a".into(),
            cut: deep,
            share_bytes_s: 0.0,
        },
        NodePart {
            node: "b".into(),
            cut: shallow,
            share_bytes_s: 0.0,
        },
    ];
    let report = trainer
        .round(1, &parts, &config(3), &local, 7)
        .expect("round");
    assert_eq!(report.completed(), 2, "{:?}", report.nodes);
    for o in &report.nodes {
        assert_eq!((o.batches, o.crops), (3, 3 * 8), "{o:?}");
        assert!(o.up_bytes > 0 && o.down_bytes > 0 && o.loss > 0.0, "{o:?}");
    }
    // Node a sends deeper (smaller) activations but more weights.
    assert_ne!(report.nodes[0].up_bytes, report.nodes[1].up_bytes);
    assert_ne!(
        values(g, rest[0]),
        before_rest,
        "the trainer's layers did not train"
    );
    let replies = local.replies.lock().expect("ok");
    let (ca, wa) = weights_of(&replies, "a");
    let (cb, wb) = weights_of(&replies, "b");
    assert_eq!((ca, cb), (24, 24));
    // A parameter both nodes trained: the crops-weighted mean of theirs.
    let p = only_a[0];
    let name = &g.params()[p].name;
    let of = |w: &[WireTensor]| {
        w.iter()
            .find(|t| &t.name == name)
            .expect("ok")
            .values
            .clone()
    };
    let (va, vb) = (of(&wa), of(&wb));
    let got = values(g, p);
    assert_ne!(va, vb, "the two nodes trained on different crops");
    for i in 0..got.len() {
        let want = 0.5 * va[i] + 0.5 * vb[i];
        assert!(
            (got[i] - want).abs() < 1e-5,
            "{i}: {} against {want}",
            got[i]
        );
    }
    // One only a trained on its side, b left to the trainer: a's copy and
    // the trainer's, half each; so not a's copy alone.
    let q = a_and_b_differ[0];
    let qa = {
        let name = &g.params()[q].name;
        wa.iter()
            .find(|t| &t.name == name)
            .expect("ok")
            .values
            .clone()
    };
    assert_ne!(values(g, q), qa);
}

#[test]
fn the_loss_falls_over_rounds() {
    let dir = tempfile::tempdir().expect("ok");
    let path = model_file(dir.path());
    let local = Local::new(vec![("a", node(&path, 1)), ("b", node(&path, 2))]);
    let trainer = Trainer::new(graph()).expect("ok");
    let parts = vec![
        NodePart {
            node: "a".into(),
            cut: 4,
            share_bytes_s: 0.0,
        },
        NodePart {
            node: "b".into(),
            cut: 2,
            share_bytes_s: 0.0,
        },
    ];
    let losses: Vec<f64> = (1..=8)
        .map(|r| {
            trainer
                .round(r, &parts, &config(4), &local, r)
                .expect("round")
                .loss()
        })
        .collect();
    let first = (losses[0] + losses[1]) / 2.0;
    let last = (losses[6] + losses[7]) / 2.0;
    assert!(last < first, "{losses:?}");
}

#[test]
fn a_node_that_falls_silent_mid_round_is_dropped_and_the_others_finish_it() {
    let dir = tempfile::tempdir().expect("ok");
    let path = model_file(dir.path());
    let mut local = Local::new(vec![("a", node(&path, 1)), ("b", node(&path, 2))]);
    // b answers Begin and one batch (forward, backward), then nothing.
    local.silent_after.insert("b".into(), 3);
    let trainer = Trainer::new(graph()).expect("ok");
    let cut = 4;
    let parts = vec![
        NodePart {
            node: "a".into(),
            cut,
            share_bytes_s: 0.0,
        },
        NodePart {
            node: "b".into(),
            cut,
            share_bytes_s: 0.0,
        },
    ];
    let report = trainer
        .round(1, &parts, &config(3), &local, 1)
        .expect("round");
    assert_eq!(report.completed(), 1);
    let b = &report.nodes[1];
    assert_eq!(b.batches, 1);
    assert!(
        b.dropped.as_deref().is_some_and(|w| w.contains("timeout")),
        "{b:?}"
    );
    // Only a's weights are averaged: its node side is the model's now.
    let (_, wa) = weights_of(&local.replies.lock().expect("ok"), "a");
    let g = trainer.graph();
    for p in g.params_of(0..cut) {
        let name = &g.params()[p].name;
        let want = &wa.iter().find(|t| &t.name == name).expect("ok").values;
        assert_eq!(&values(g, p), want, "{name}");
    }
    // With every node silent the round fails, naming each.
    local.silent_after.insert("a".into(), 0);
    local.silent_after.insert("b".into(), 0);
    let e = trainer
        .round(2, &parts, &config(1), &local, 2)
        .expect_err("an error")
        .to_string();
    assert!(
        e.contains("a: ") && e.contains("b: ") && e.contains("no node completed"),
        "{e}"
    );
}

#[test]
fn a_node_refuses_what_it_cannot_do_by_name() {
    let dir = tempfile::tempdir().expect("ok");
    let path = model_file(dir.path());
    let mut n = node(&path, 1);
    let g = graph();
    let mine = g.params_of(0..4);
    let params = vidar_train::rounds::node::params_to_wire(&g, &mine).expect("ok");
    let begin = |round, model: &str, cut, params: Vec<WireTensor>| TrainRequest {
        round,
        step: TrainStep::Begin {
            model: model.into(),
            cut,
            params,
            lr: 1e-3,
            ids: 4,
            per_id: 2,
            seed: 1,
            share_bytes_s: 0.0,
        },
    };
    let refused = |r: TrainReply| match r {
        TrainReply::Refused { why } => why,
        other => panic!("not refused: {other:?}"),
    };
    let why = refused(n.handle(begin(1, "other", 4, params.clone())));
    assert!(
        why.contains("\"other\"") && why.contains("\"small\""),
        "{why}"
    );
    let why = refused(n.handle(begin(1, MODEL, 0, vec![])));
    assert!(why.contains("cut 0") && why.contains("crops"), "{why}");
    let mut wrong = params.clone();
    wrong[0].shape.push(1);
    let why = refused(n.handle(begin(1, MODEL, 4, wrong)));
    assert!(
        why.contains(&format!("{:?}", wrong_name(&params))) && why.contains("shape"),
        "{why}"
    );
    let why = refused(n.handle(begin(1, MODEL, 4, params[1..].to_vec())));
    assert!(why.contains("parameters sent"), "{why}");
    // A good round; then a backward of another batch, and a stale round.
    assert!(matches!(
        n.handle(begin(5, MODEL, 4, params.clone())),
        TrainReply::Begun {
            samples: 48,
            tracklets: 12
        }
    ));
    let fwd = n.handle(TrainRequest {
        round: 5,
        step: TrainStep::Forward { batch: 0 },
    });
    let TrainReply::Activations {
        activations,
        labels,
        ..
    } = fwd
    else {
        panic!("{fwd:?}")
    };
    assert_eq!(labels.len(), 8);
    // Labels come in pairs of one tracklet, all of one camera.
    assert!(labels.chunks(2).all(|p| p[0] == p[1]));
    assert!(labels.iter().all(|l| l / 100 == labels[0] / 100));
    let grad = WireTensor {
        values: vec![0.0; activations.values.len()],
        ..activations
    };
    let why = refused(n.handle(TrainRequest {
        round: 5,
        step: TrainStep::Backward { batch: 1, grad },
    }));
    assert!(why.contains("batch 1") && why.contains("batch 0"), "{why}");
    let why = refused(n.handle(begin(4, MODEL, 4, params)));
    assert!(why.contains("round 5 was already begun"), "{why}");
    let why = refused(n.handle(TrainRequest {
        round: 6,
        step: TrainStep::Finish,
    }));
    assert!(why.contains("round 6"), "{why}");
}

fn wrong_name(params: &[WireTensor]) -> String {
    params[0].name.clone()
}

#[test]
fn a_node_profiles_its_side_at_each_cut() {
    let dir = tempfile::tempdir().expect("ok");
    let path = model_file(dir.path());
    let mut n = node(&path, 1);
    let r = n.handle(TrainRequest {
        round: 0,
        step: TrainStep::Profile {
            model: MODEL.into(),
            cuts: vec![2, 4],
            batch: 8,
        },
    });
    let TrainReply::Profile {
        samples,
        tracklets,
        times,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!((samples, tracklets), (48, 12));
    assert_eq!(times.iter().map(|t| t.cut).collect::<Vec<_>>(), vec![2, 4]);
    assert!(
        times.iter().all(|t| t.forward_s > 0.0 && t.train_s > 0.0),
        "{times:?}"
    );
}

#[test]
fn edgesplit_gives_a_slow_node_a_shallower_cut_and_beats_the_baselines_it_contains() {
    // Three cuts: shallow (big activations), middle, the whole model.
    let cands = vec![
        Candidate {
            cut: 10,
            node_forward_s: 0.010,
            rest_forward_s: 0.040,
            bytes_per_crop: 130e3,
            param_bytes: 1e4,
        },
        Candidate {
            cut: 20,
            node_forward_s: 0.030,
            rest_forward_s: 0.020,
            bytes_per_crop: 50e3,
            param_bytes: 1e5,
        },
        Candidate {
            cut: 30,
            node_forward_s: 0.050,
            rest_forward_s: 0.0,
            bytes_per_crop: 2e3,
            param_bytes: 8e5,
        },
    ];
    let times = |slow: f64| -> Vec<CutTime> {
        cands
            .iter()
            .map(|c| CutTime {
                cut: c.cut as u32,
                forward_s: c.node_forward_s * slow,
                train_s: 3.0 * c.node_forward_s * slow,
            })
            .collect()
    };
    let nodes = vec![
        ("fast".to_string(), times(1.0)),
        ("slow".to_string(), times(8.0)),
    ];
    let plan = |a| plan_round(&cands, &nodes, 32, 10, 2.5e6, a).expect("plan");
    let es = plan(SplitAlgorithm::Edgesplit);
    assert!(
        (es.speeds[0] - 1.0).abs() < 1e-9 && (es.speeds[1] - 0.125).abs() < 1e-9,
        "{:?}",
        es.speeds
    );
    assert!(
        es.parts[1].cut < es.parts[0].cut || es.parts[0].cut == es.parts[1].cut,
        "{es:?}"
    );
    assert!(
        es.parts[1].cut < 30,
        "the slow node must not train the whole model: {es:?}"
    );
    let total: f64 = es.parts.iter().map(|p| p.share_bytes_s).sum();
    assert!(total <= 2.5e6 * (1.0 + 1e-9));
    for baseline in [
        SplitAlgorithm::VanillaFl,
        SplitAlgorithm::AdaptiveFl,
        SplitAlgorithm::EdgesplitFix,
    ] {
        let b = plan(baseline);
        assert!(
            es.predicted_s <= b.predicted_s + 1e-9,
            "{baseline:?}: {} > {}",
            es.predicted_s,
            b.predicted_s
        );
    }
    assert!(plan(SplitAlgorithm::VanillaFl)
        .parts
        .iter()
        .all(|p| p.cut == 30));
}
