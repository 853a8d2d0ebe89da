//! The trainable graph against arithmetic and against ONNX Runtime:
//! gradients against finite differences (f64, a small graph with every
//! operator OSNet uses), split steps against the unsplit step, weights
//! written back and run by ONNX Runtime, and training lowering the loss on
//! the real re-ID model.

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vidar_config::Config;
use vidar_train::loss::{batch_hard_triplet, scalar};
use vidar_train::split::Step;
use vidar_train::{Graph, TrainError};

mod common;
use common::{input, small_model};

const LABELS: [u32; 4] = [0, 0, 1, 1];

fn loss(out: &Tensor) -> vidar_train::Result<Tensor> {
    // A margin no sample meets, so every anchor's term is active.
    batch_hard_triplet(out, &LABELS, 5.0)
}

#[test]
fn gradients_match_finite_differences() {
    let g = Graph::from_model(small_model(7), "small", &Device::Cpu, DType::F64).expect("graph");
    let x = input(11, DType::F64);
    let step = Step::unsplit(&g, &x, loss).expect("step");
    let eps = 1e-6;
    let mut checked = 0;
    for p in g.params() {
        if !p.trainable {
            continue;
        }
        let grad: Vec<f64> = step
            .grad(&p.var)
            .unwrap_or_else(|| panic!("no gradient for {}", p.name))
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("grad");
        let base: Vec<f64> = p
            .var
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("v");
        let shape = p.var.as_tensor().dims().to_vec();
        for i in 0..base.len() {
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                p.var
                    .set(&Tensor::from_vec(v, shape.clone(), &Device::Cpu).expect("t"))
                    .expect("set");
                scalar(&loss(&g.forward(&x).expect("fwd")).expect("loss")).expect("scalar")
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            let analytic = grad[i];
            assert!(
                (numeric - analytic).abs() <= 1e-6 + 1e-4 * numeric.abs(),
                "{}[{i}]: autodiff {analytic}, finite differences {numeric}",
                p.name
            );
            checked += 1;
        }
        p.var
            .set(&Tensor::from_vec(base, shape, &Device::Cpu).expect("t"))
            .expect("restore");
    }
    // Running statistics are not trained; everything else is checked.
    assert_eq!(g.params().iter().filter(|p| !p.trainable).count(), 2);
    assert!(checked > 150, "checked {checked} values");
}

#[test]
fn split_steps_equal_the_unsplit_step_at_every_cut() {
    let g = Graph::from_model(small_model(3), "small", &Device::Cpu, DType::F64).expect("graph");
    let x = input(5, DType::F64);
    let whole = Step::unsplit(&g, &x, loss).expect("unsplit");
    let cuts = g.cuts();
    // The gate's branch makes some places no cut: two tensors cross there.
    assert!(cuts.len() >= 6 && cuts.len() < g.len() + 1, "{cuts:?}");
    assert!(
        matches!(g.cut(6), Err(TrainError::Invalid(_))),
        "inside the gate"
    );
    for cut in cuts {
        let s = Step::split(&g, cut, &x, true, loss).expect("split");
        // The activations travel as f32.
        assert!(
            (s.loss - whole.loss).abs() < 1e-6,
            "cut {}: loss {} vs {}",
            cut.at,
            s.loss,
            whole.loss
        );
        for p in g.params().iter().filter(|p| p.trainable) {
            let a = whole.grad(&p.var).expect("whole grad");
            let b = s
                .grad(&p.var)
                .unwrap_or_else(|| panic!("cut {}: no grad for {}", cut.at, p.name));
            let d = (a - b)
                .and_then(|d| d.abs())
                .and_then(|d| d.max_all())
                .expect("diff");
            let d: f64 = d.to_scalar().expect("scalar");
            // The activations travel as f32.
            assert!(d < 1e-5, "cut {}: {} differs by {d}", cut.at, p.name);
        }
        if cut.at > 0 && cut.at < g.len() {
            assert!(
                s.up_bytes > 0 && s.down_bytes == s.up_bytes,
                "cut {}",
                cut.at
            );
        }
    }
}

#[test]
fn unsupported_operators_and_broken_graphs_are_named() {
    let mut m = small_model(1);
    let graph = m.graph.as_mut().expect("graph");
    graph.node[1].op_type = Some("LeakyRelu".into());
    let e = Graph::from_model(m, "bad.onnx", &Device::Cpu, DType::F32).expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains("bad.onnx") && text.contains("r1") && text.contains("LeakyRelu"),
        "{text}"
    );

    let mut m = small_model(1);
    m.graph.as_mut().expect("graph").node[0].input[0] = "nothing".into();
    let e = Graph::from_model(m, "bad.onnx", &Device::Cpu, DType::F32).expect_err("refused");
    assert!(e.to_string().contains("\"nothing\""), "{e}");

    let e = Graph::from_bytes(
        b"\xff\xff not protobuf",
        "junk.onnx",
        &Device::Cpu,
        DType::F32,
    )
    .expect_err("refused");
    assert!(
        e.to_string().starts_with("junk.onnx: not an ONNX model"),
        "{e}"
    );
}

/// The default re-ID model's file, from `$VIDAR_MODEL_DIR`.
fn osnet() -> (vidar_models::ModelStore, String, std::path::PathBuf) {
    let store = vidar_models::ModelStore::from_env().expect("VIDAR_MODEL_DIR (make models)");
    let name = vidar_reid::EmbedderConfig::default().model;
    let spec = store.manifest().model(&name).expect("default model");
    let path = store.verified_path(&spec.file).expect("model file");
    (store, name, path)
}

#[test]
fn written_weights_run_in_onnx_runtime_as_in_the_trainer() {
    let (store, name, path) = osnet();
    let g = Graph::load(&path, &Device::Cpu, DType::F32).expect("graph");
    // New weights: every trainable parameter scaled by 1.05.
    for p in g.params().iter().filter(|p| p.trainable) {
        let v = p.var.as_tensor().affine(1.05, 0.0).expect("scale");
        p.var.set(&v).expect("set");
    }
    let bytes = g.to_onnx().expect("onnx");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("new.onnx"), &bytes).expect("write");
    let manifest = store
        .manifest()
        .refreshed(
            &name,
            "new.onnx",
            &vidar_models::store::sha256_bytes(&bytes),
            bytes.len() as u64,
        )
        .expect("same graph as the model's");
    let embed = |store: vidar_models::ModelStore, rgb: &[u8]| {
        let factory =
            vidar_models::SessionFactory::new(store, vidar_models::RuntimeConfig::default())
                .expect("factory");
        let config = vidar_reid::EmbedderConfig {
            model: name.clone(),
            ..Default::default()
        };
        let mut e = config.build(&factory).expect("embedder");
        let frame = vidar_models::image::RgbFrame::packed(128, 256, rgb).expect("frame");
        let crop = vidar_reid::Crop {
            frame: frame.into(),
            bbox: vidar_protocol::BBox {
                x: 0.0,
                y: 0.0,
                w: 128.0,
                h: 256.0,
            },
        };
        use vidar_reid::Embedder;
        e.embed(&[crop]).expect("embed").remove(0)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let rgb: Vec<u8> = (0..128 * 256 * 3).map(|_| rng.gen()).collect();
    let ort_new = embed(vidar_models::ModelStore::new(dir.path(), manifest), &rgb);
    let (store2, _, _) = osnet();
    let ort_old = embed(store2, &rgb);
    // The trainer's own forward pass on the same input.
    let spec = store.manifest().model(&name).expect("spec");
    let mut pre = vidar_train::data::Preprocess::for_model(spec).expect("pre");
    let chw = pre.chw(128, 256, &rgb).expect("chw");
    let x = Tensor::from_vec(chw, (1, 3, 256, 128), &Device::Cpu).expect("x");
    let out: Vec<Vec<f32>> = g.forward(&x).expect("fwd").to_vec2().expect("values");
    let mine = vidar_reid::Embedding::normalized(&out[0]);
    let same = mine.cosine(&ort_new);
    assert!(
        same > 0.9999,
        "trainer vs ONNX Runtime on the written model: cosine {same}"
    );
    // And the file really holds the new weights, not the old ones.
    let old = ort_old.cosine(&ort_new);
    assert!(
        old < 0.9999,
        "written model equals the original (cosine {old})"
    );
}

#[test]
fn training_lowers_the_loss_on_the_real_model() {
    let (_, _, path) = osnet();
    let g = Graph::load(&path, &Device::Cpu, DType::F32).expect("graph");
    // The trainer's side from the last cut before the embedding head (the
    // pooled features): cheap in a debug build, and it is the real head.
    let cut = *g
        .cuts()
        .iter()
        .rev()
        .find(|c| c.at < g.len() - 4)
        .expect("a late cut");
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    // Four crops of two people: each person's two crops share a pattern.
    let mut pixels = vec![0f32; 4 * 3 * 256 * 128];
    for (i, px) in pixels.chunks_mut(3 * 256 * 128).enumerate() {
        let person = i / 2;
        for (k, v) in px.iter_mut().enumerate() {
            let base = if (k / 997 + person) % 2 == 0 {
                1.0
            } else {
                -1.0
            };
            *v = base + 0.5 * rng.gen_range(-1.0f32..1.0);
        }
    }
    let x = Tensor::from_vec(pixels, (4, 3, 256, 128), &Device::Cpu).expect("x");
    let params = ParamsAdamW {
        lr: 1e-3,
        ..Default::default()
    };
    let mut opt = AdamW::new(g.vars(&g.params_of(cut.at..g.len())), params).expect("opt");
    let first = g.cuts()[0];
    let act = g.run(first, cut, &x).expect("node side");
    let last = *g.cuts().last().expect("cuts");
    let step_loss = |g: &Graph| {
        scalar(
            &batch_hard_triplet(&g.run(cut, last, &act).expect("fwd"), &LABELS, 1.0).expect("loss"),
        )
        .expect("scalar")
    };
    let before = step_loss(&g);
    for _ in 0..20 {
        let out = g.run(cut, last, &act).expect("fwd");
        let l = batch_hard_triplet(&out, &LABELS, 1.0).expect("loss");
        opt.backward_step(&l).expect("step");
    }
    let after = step_loss(&g);
    assert!(after < 0.5 * before, "loss {before} -> {after}");
}

fn flat(g: &Graph) -> Vec<f64> {
    g.params()
        .iter()
        .flat_map(|p| {
            p.var
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f64>())
                .expect("values")
        })
        .collect()
}

#[test]
fn fedavg_of_identical_models_is_the_identity_and_weights_are_honoured() {
    let dev = Device::Cpu;
    let a = Graph::from_model(small_model(5), "a", &dev, DType::F64).expect("a");
    let b = Graph::from_model(small_model(5), "b", &dev, DType::F64).expect("b");
    let all: Vec<usize> = (0..a.params().len()).collect();
    let before = flat(&a);
    a.average_from(&[&a, &b], &[3.0, 1.0], &all)
        .expect("average");
    assert_eq!(
        flat(&a),
        before,
        "the mean of identical models changed them"
    );

    // Two different models, weighted 3:1, on the node side's parameters only.
    let c = Graph::from_model(small_model(6), "c", &dev, DType::F64).expect("c");
    let node = a.params_of(0..4);
    let (va, vc) = (flat(&a), flat(&c));
    let out = Graph::from_model(small_model(5), "out", &dev, DType::F64).expect("out");
    out.average_from(&[&a, &c], &[3.0, 1.0], &node)
        .expect("average");
    let vo = flat(&out);
    let mut at = 0;
    for (k, p) in out.params().iter().enumerate() {
        let n = p.var.elem_count();
        for i in at..at + n {
            let want = if node.contains(&k) {
                0.75 * va[i] + 0.25 * vc[i]
            } else {
                va[i]
            };
            assert!(
                (vo[i] - want).abs() < 1e-12,
                "{}: {} vs {want}",
                p.name,
                vo[i]
            );
        }
        at += n;
    }
    assert!(matches!(
        out.average_from(&[&a], &[1.0, 2.0], &node),
        Err(TrainError::Invalid(_))
    ));
}
