//! The operators a [`Graph`](crate::Graph) runs: each ONNX node parsed into
//! an [`Op`] at load (attributes checked, anything unsupported named), and
//! run on candle tensors, which record what `backward()` needs.

use candle_core::{Device, Tensor, D};

use crate::onnx_pb as pb;
use crate::{Result, TrainError};

/// `TensorProto.DataType.FLOAT`.
pub(crate) const FLOAT: i32 = 1;

/// An operator with its attributes, as it runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Conv {
        pad: usize,
        stride: usize,
        dilation: usize,
        group: usize,
    },
    Relu,
    Sigmoid,
    Add,
    Mul,
    GlobalAveragePool,
    AveragePool {
        kernel: usize,
        stride: usize,
    },
    MaxPool {
        kernel: usize,
        stride: usize,
        pad: usize,
    },
    Flatten {
        axis: usize,
    },
    Gemm {
        trans_b: bool,
        alpha: f64,
        beta: f64,
    },
    BatchNorm {
        epsilon: f64,
    },
    Shape,
    Gather,
    Unsqueeze,
    Concat,
    Reshape,
    Constant(Vec<i64>),
}

/// A value flowing through the graph: a float tensor, or integers (shapes).
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// A float tensor.
    F(Tensor),
    /// Integers (a shape).
    I(Vec<i64>),
}

impl Value {
    pub(crate) fn float(&self) -> Result<&Tensor> {
        match self {
            Value::F(t) => Ok(t),
            Value::I(_) => Err(TrainError::Invalid(
                "integers where a tensor belongs".into(),
            )),
        }
    }

    pub(crate) fn ints(&self) -> Result<&[i64]> {
        match self {
            Value::I(v) => Ok(v),
            Value::F(_) => Err(TrainError::Invalid("a tensor where integers belong".into())),
        }
    }
}

/// `TensorProto.DataType.INT64`.
pub(crate) const INT64: i32 = 7;

/// An integer initialiser's values (raw or `int64_data`).
pub(crate) fn int_values(t: &pb::TensorProto) -> std::result::Result<Vec<i64>, String> {
    match &t.raw_data {
        Some(raw) if !raw.is_empty() => {
            if raw.len() % 8 != 0 {
                return Err(format!("{} bytes of int64 data", raw.len()));
            }
            Ok(raw
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect())
        }
        _ => Ok(t.int64_data.clone()),
    }
}

/// An initialiser's values (float only).
pub(crate) fn initializer(
    t: &pb::TensorProto,
    device: &Device,
) -> std::result::Result<Tensor, String> {
    if t.data_type != Some(FLOAT) {
        return Err(format!(
            "data type {:?}, only float (1) is trainable",
            t.data_type
        ));
    }
    if t.data_location == Some(1) {
        return Err("stored outside the model file; only embedded weights are read".into());
    }
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<std::result::Result<_, _>>()?;
    let count: usize = dims.iter().product();
    let values: Vec<f32> = match &t.raw_data {
        Some(raw) if !raw.is_empty() => {
            if raw.len() != count * 4 {
                return Err(format!("{} bytes of data for {count} floats", raw.len()));
            }
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        }
        _ => {
            if t.float_data.len() != count {
                return Err(format!("{} floats for shape {dims:?}", t.float_data.len()));
            }
            t.float_data.clone()
        }
    };
    Tensor::from_vec(values, dims, device).map_err(|e| e.to_string())
}

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

fn int(n: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

fn float(n: &pb::NodeProto, name: &str, default: f64) -> f64 {
    attr(n, name).and_then(|a| a.f).map_or(default, f64::from)
}

/// One value for every axis of an ints attribute (`pads`: begins and ends),
/// or an error saying the sides differ.
fn same(n: &pb::NodeProto, name: &str, default: i64) -> std::result::Result<usize, String> {
    let v = attr(n, name).map(|a| a.ints.clone()).unwrap_or_default();
    let first = v.first().copied().unwrap_or(default);
    if v.iter().any(|&x| x != first) {
        return Err(format!(
            "{name} {v:?}: only the same value on every side is supported"
        ));
    }
    usize::try_from(first).map_err(|_| format!("{name} {first} is negative"))
}

pub(crate) fn parse_op(n: &pb::NodeProto, op: &str) -> std::result::Result<Op, String> {
    if let Some(a) = attr(n, "auto_pad") {
        let v = a.s.as_deref().unwrap_or_default();
        if !v.is_empty() && v != b"NOTSET" {
            return Err("auto_pad is not supported (give pads)".into());
        }
    }
    let no_ceil = || {
        if int(n, "ceil_mode", 0) != 0 {
            Err("ceil_mode = 1 is not supported".to_string())
        } else {
            Ok(())
        }
    };
    Ok(match op {
        "Conv" => Op::Conv {
            pad: same(n, "pads", 0)?,
            stride: same(n, "strides", 1)?,
            dilation: same(n, "dilations", 1)?,
            group: usize::try_from(int(n, "group", 1)).map_err(|_| "negative group")?,
        },
        "Relu" => Op::Relu,
        "Sigmoid" => Op::Sigmoid,
        "Add" => Op::Add,
        "Mul" => Op::Mul,
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "AveragePool" => {
            no_ceil()?;
            if same(n, "pads", 0)? != 0 {
                return Err("padded average pooling is not supported".into());
            }
            Op::AveragePool {
                kernel: same(n, "kernel_shape", 1)?,
                stride: same(n, "strides", 1)?,
            }
        }
        "MaxPool" => {
            no_ceil()?;
            if same(n, "dilations", 1)? != 1 {
                return Err("dilated max pooling is not supported".into());
            }
            let (kernel, pad) = (same(n, "kernel_shape", 1)?, same(n, "pads", 0)?);
            if pad >= kernel {
                return Err(format!("pads {pad} must be below the kernel {kernel}"));
            }
            Op::MaxPool {
                kernel,
                stride: same(n, "strides", 1)?,
                pad,
            }
        }
        "Flatten" => Op::Flatten {
            axis: usize::try_from(int(n, "axis", 1)).map_err(|_| "a negative axis")?,
        },
        "Gemm" => {
            if int(n, "transA", 0) != 0 {
                return Err("transA = 1 is not supported".into());
            }
            Op::Gemm {
                trans_b: int(n, "transB", 0) != 0,
                alpha: float(n, "alpha", 1.0),
                beta: float(n, "beta", 1.0),
            }
        }
        "BatchNormalization" => {
            if int(n, "training_mode", 0) != 0 {
                return Err("training_mode = 1 is not supported".into());
            }
            Op::BatchNorm {
                epsilon: float(n, "epsilon", 1e-5),
            }
        }
        "Shape" => Op::Shape,
        "Gather" => {
            if int(n, "axis", 0) != 0 {
                return Err("Gather only along axis 0 (of a shape)".into());
            }
            Op::Gather
        }
        "Unsqueeze" => Op::Unsqueeze,
        "Concat" => Op::Concat,
        "Reshape" => {
            if int(n, "allowzero", 0) != 0 {
                return Err("allowzero = 1 is not supported".into());
            }
            Op::Reshape
        }
        "Constant" => {
            let t = attr(n, "value")
                .and_then(|a| a.t.as_ref())
                .ok_or("a Constant other than an integer `value` tensor")?;
            if t.data_type != Some(INT64) {
                return Err("only integer constants (shape arithmetic) are supported".into());
            }
            Op::Constant(int_values(t)?)
        }
        other => {
            return Err(format!(
                "operator {other:?} is not implemented by the trainer"
            ))
        }
    })
}

pub(crate) fn apply(op: &Op, ins: &[Value]) -> Result<Value> {
    if ins.is_empty() && !matches!(op, Op::Constant(_)) {
        return Err(TrainError::Invalid(format!("{op:?} without an input")));
    }
    let f = |i: usize| -> Result<&Tensor> {
        ins.get(i)
            .ok_or_else(|| TrainError::Invalid(format!("{op:?}: input {i} missing")))?
            .float()
    };
    let i = |k: usize| -> Result<&[i64]> {
        ins.get(k)
            .ok_or_else(|| TrainError::Invalid(format!("{op:?}: input {k} missing")))?
            .ints()
    };
    Ok(match op {
        Op::Shape => Value::I(f(0)?.dims().iter().map(|&d| d as i64).collect()),
        Op::Gather => {
            let (data, idx) = (i(0)?, i(1)?);
            let out = idx
                .iter()
                .map(|&k| {
                    let k = if k < 0 { k + data.len() as i64 } else { k };
                    usize::try_from(k)
                        .ok()
                        .and_then(|k| data.get(k).copied())
                        .ok_or_else(|| {
                            TrainError::Invalid(format!("Gather index {k} out of range"))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            Value::I(out)
        }
        // Integers are kept as vectors; a scalar made one is already one.
        Op::Unsqueeze => Value::I(i(0)?.to_vec()),
        Op::Concat => {
            let mut out = Vec::new();
            for k in 0..ins.len() {
                out.extend_from_slice(i(k)?);
            }
            Value::I(out)
        }
        Op::Constant(v) => Value::I(v.clone()),
        Op::Reshape => {
            let x = f(0)?;
            let target = i(1)?;
            let mut dims = Vec::with_capacity(target.len());
            let mut infer = None;
            for (k, &d) in target.iter().enumerate() {
                dims.push(match d {
                    0 => x.dim(k)?,
                    -1 if infer.is_none() => {
                        infer = Some(k);
                        1
                    }
                    d if d > 0 => d as usize,
                    d => return Err(TrainError::Invalid(format!("Reshape to {target:?}: {d}"))),
                });
            }
            if let Some(k) = infer {
                let known: usize = dims.iter().product();
                dims[k] = x.elem_count() / known.max(1);
            }
            Value::F(x.reshape(dims)?)
        }
        _ => {
            let mut floats = Vec::with_capacity(ins.len());
            for k in 0..ins.len() {
                floats.push(f(k)?.clone());
            }
            Value::F(apply_float(op, &floats)?)
        }
    })
}

fn arity_f(ins: &[Tensor], lo: usize, hi: usize, op: &Op) -> Result<()> {
    if ins.len() < lo || ins.len() > hi {
        return Err(TrainError::Invalid(format!(
            "{op:?} takes {lo}-{hi} inputs, not {}",
            ins.len()
        )));
    }
    Ok(())
}

fn apply_float(op: &Op, ins: &[Tensor]) -> Result<Tensor> {
    Ok(match *op {
        Op::Conv {
            pad,
            stride,
            dilation,
            group,
        } => {
            arity_f(ins, 2, 3, op)?;
            let (x, w) = (&ins[0], &ins[1]);
            let co = w.dim(0)?;
            let y = x.conv2d(w, pad, stride, dilation, group)?;
            match ins.get(2) {
                Some(b) => y.broadcast_add(&b.reshape((1, co, 1, 1))?)?,
                None => y,
            }
        }
        Op::Relu => ins[0].relu()?,
        Op::Sigmoid => candle_nn::ops::sigmoid(&ins[0])?,
        Op::Add => {
            arity_f(ins, 2, 2, op)?;
            ins[0].broadcast_add(&ins[1])?
        }
        Op::Mul => {
            arity_f(ins, 2, 2, op)?;
            ins[0].broadcast_mul(&ins[1])?
        }
        Op::GlobalAveragePool => ins[0].mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?,
        Op::AveragePool { kernel, stride } => {
            ins[0].avg_pool2d_with_stride((kernel, kernel), (stride, stride))?
        }
        Op::MaxPool {
            kernel,
            stride,
            pad,
        } => {
            // Replicating the edge is padding with -inf for a max: the
            // copied pixel is inside every window that reaches the padding.
            let x = if pad > 0 {
                ins[0]
                    .pad_with_same(2, pad, pad)?
                    .pad_with_same(3, pad, pad)?
            } else {
                ins[0].clone()
            };
            if kernel == stride {
                x.max_pool2d_with_stride((kernel, kernel), (stride, stride))?
            } else {
                // candle has no backward for overlapping windows: the max of
                // the shifted copies, then every `stride`-th row and column.
                let (_, _, h, w) = x.dims4()?;
                if h < kernel || w < kernel {
                    return Err(TrainError::Invalid(format!(
                        "a {kernel}x{kernel} max pool over {h}x{w}"
                    )));
                }
                let (hf, wf) = (h + 1 - kernel, w + 1 - kernel);
                let mut acc: Option<Tensor> = None;
                for i in 0..kernel {
                    for j in 0..kernel {
                        let v = x.narrow(2, i, hf)?.narrow(3, j, wf)?;
                        acc = Some(match acc {
                            None => v,
                            Some(a) => a.maximum(&v)?,
                        });
                    }
                }
                let full = acc.ok_or_else(|| TrainError::Invalid("an empty kernel".into()))?;
                let full = every(&full, 2, stride, (hf - 1) / stride + 1)?;
                every(&full, 3, stride, (wf - 1) / stride + 1)?
            }
        }
        Op::Flatten { axis } => ins[0].flatten_from(axis)?,
        Op::BatchNorm { epsilon } => {
            arity_f(ins, 5, 5, op)?;
            let x = &ins[0];
            let c = x.dim(1)?;
            let mut shape = vec![1usize; x.rank()];
            shape[1] = c;
            let p = |t: &Tensor| t.reshape(shape.clone());
            let inv = (p(&ins[4])? + epsilon)?.sqrt()?.recip()?;
            let scale = p(&ins[1])?.mul(&inv)?;
            x.broadcast_sub(&p(&ins[3])?)?
                .broadcast_mul(&scale)?
                .broadcast_add(&p(&ins[2])?)?
        }
        Op::Shape | Op::Gather | Op::Unsqueeze | Op::Concat | Op::Reshape | Op::Constant(_) => {
            return Err(TrainError::Invalid(format!(
                "{op:?} is not a float operation"
            )))
        }
        Op::Gemm {
            trans_b,
            alpha,
            beta,
        } => {
            arity_f(ins, 2, 3, op)?;
            let b = if trans_b { ins[1].t()? } else { ins[1].clone() };
            let mut y = ins[0].matmul(&b)?;
            if alpha != 1.0 {
                y = y.affine(alpha, 0.0)?;
            }
            match ins.get(2) {
                Some(c) if beta != 0.0 => y.broadcast_add(&c.affine(beta, 0.0)?)?,
                _ => y,
            }
        }
    })
}

/// Elements 0, `stride`, 2 `stride`, ... (`count` of them) along `dim`.
fn every(t: &Tensor, dim: usize, stride: usize, count: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(t.narrow(dim, 0, count)?);
    }
    let need = count * stride;
    let len = t.dim(dim)?;
    let t = if len >= need {
        t.narrow(dim, 0, need)?
    } else {
        t.pad_with_zeros(dim, 0, need - len)?
    };
    let mut shape = t.dims().to_vec();
    shape[dim] = count;
    shape.insert(dim + 1, stride);
    Ok(t.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)?)
}
