//! A small graph with every operator the trainer implements, for tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vidar_train::onnx_pb as pb;

fn attr_i(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: Some(name.into()),
        i: Some(i),
        r#type: Some(2),
        ..Default::default()
    }
}

fn attr_is(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(7),
        ..Default::default()
    }
}

fn node(op: &str, ins: &[&str], out: &str, attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        op_type: Some(op.into()),
        name: Some(out.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn tensor(
    name: &str,
    dims: &[i64],
    rng: &mut ChaCha8Rng,
    scale: f32,
    offset: f32,
) -> pb::TensorProto {
    let n: i64 = dims.iter().product();
    pb::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        float_data: (0..n)
            .map(|_| offset + scale * rng.gen_range(-1.0f32..1.0))
            .collect(),
        ..Default::default()
    }
}

fn value(name: &str) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: Some(name.into()),
        ..Default::default()
    }
}

/// A small graph with OSNet's operators: a conv, a depthwise conv, an
/// overlapping padded max pool, a channel gate (GAP, 1x1 conv, sigmoid,
/// mul), a residual add, an average pool, GAP, flatten, Gemm and
/// BatchNormalization.
pub fn small_model(seed: u64) -> pb::ModelProto {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pads1 = attr_is("pads", &[1, 1, 1, 1]);
    let nodes = vec![
        node(
            "Conv",
            &["x", "w1", "b1"],
            "c1",
            vec![pads1.clone(), attr_is("kernel_shape", &[3, 3])],
        ),
        node("Relu", &["c1"], "r1", vec![]),
        node(
            "Conv",
            &["r1", "wd", "bd"],
            "dw",
            vec![pads1.clone(), attr_i("group", 4)],
        ),
        node(
            "MaxPool",
            &["dw"],
            "mp",
            vec![
                attr_is("kernel_shape", &[3, 3]),
                attr_is("strides", &[2, 2]),
                pads1,
            ],
        ),
        node("GlobalAveragePool", &["mp"], "g", vec![]),
        node("Conv", &["g", "wg", "bg"], "gc", vec![]),
        node("Sigmoid", &["gc"], "gs", vec![]),
        node("Mul", &["mp", "gs"], "gated", vec![]),
        node("Add", &["gated", "mp"], "res", vec![]),
        node(
            "AveragePool",
            &["res"],
            "ap",
            vec![
                attr_is("kernel_shape", &[2, 2]),
                attr_is("strides", &[2, 2]),
            ],
        ),
        node("GlobalAveragePool", &["ap"], "gap", vec![]),
        node("Flatten", &["gap"], "flat", vec![attr_i("axis", 1)]),
        node(
            "Gemm",
            &["flat", "wf", "bf"],
            "fc",
            vec![attr_i("transB", 1)],
        ),
        node(
            "BatchNormalization",
            &["fc", "bn_s", "bn_b", "bn_m", "bn_v"],
            "y",
            vec![],
        ),
    ];
    let init = vec![
        tensor("w1", &[4, 3, 3, 3], &mut rng, 0.5, 0.0),
        tensor("b1", &[4], &mut rng, 0.1, 0.0),
        tensor("wd", &[4, 1, 3, 3], &mut rng, 0.5, 0.0),
        tensor("bd", &[4], &mut rng, 0.1, 0.0),
        tensor("wg", &[4, 4, 1, 1], &mut rng, 0.5, 0.0),
        tensor("bg", &[4], &mut rng, 0.1, 0.0),
        tensor("wf", &[5, 4], &mut rng, 0.5, 0.0),
        tensor("bf", &[5], &mut rng, 0.1, 0.0),
        tensor("bn_s", &[5], &mut rng, 0.2, 1.0),
        tensor("bn_b", &[5], &mut rng, 0.1, 0.0),
        tensor("bn_m", &[5], &mut rng, 0.1, 0.0),
        tensor("bn_v", &[5], &mut rng, 0.2, 1.0),
    ];
    pb::ModelProto {
        ir_version: Some(8),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(pb::GraphProto {
            name: Some("small".into()),
            node: nodes,
            initializer: init,
            input: vec![value("x")],
            output: vec![value("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn input(seed: u64, dtype: DType) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f64> = (0..4 * 3 * 8 * 8)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    Tensor::from_vec(v, (4, 3, 8, 8), &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("input")
}
