//! An ONNX graph made trainable: its float initialisers become candle
//! [`Var`]s and its nodes run as candle operations, so `backward()` gives
//! every initialiser's gradient. The operators are those the re-ID models of
//! `models/manifest.toml` use (OSNet with BatchNorm folded into its convs):
//! Conv (any group: candle runs a grouped conv as one conv per group,
//! which measured faster here than a depthwise conv as nine shifted
//! products), Relu, Sigmoid, Add,
//! Mul (with broadcasting), GlobalAveragePool, AveragePool, MaxPool (padding
//! by edge replication, which is what padding with -inf gives a max), Flatten
//! Gemm and BatchNormalization (inference form: its running statistics
//! stay as they are, its scale and shift train), plus the integer shape
//! arithmetic PyTorch exports for `x.view(x.size(0), -1)` (Shape, Gather,
//! Unsqueeze, Concat, Constant, Reshape). Anything else is refused at load,
//! naming the node.
//!
//! A graph can be cut after any node where exactly one tensor crosses from
//! the nodes before to the nodes after ([`Graph::cuts`]): the layers before
//! run on an edge node, those after on the trainer, and only that tensor
//! and its gradient travel.
//!
//! [`Graph::to_onnx`] writes the current weights back into the original
//! model: the same inputs, outputs, nodes and attributes, only the
//! initialisers' data replaced.

use std::collections::HashMap;
use std::ops::Range;

use candle_core::{DType, Device, Tensor, Var};
use prost::Message;

use crate::onnx_pb as pb;
use crate::ops::{apply, initializer, int_values, parse_op, Op, Value, FLOAT, INT64};
use crate::{Result, TrainError};

/// Where a tensor comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The graph's input.
    Input,
    /// A trainable initialiser.
    Param(usize),
    /// An integer initialiser (shape arithmetic).
    Ints(usize),
    /// The output of a node.
    Node(usize),
}

#[derive(Debug, Clone)]
struct Node {
    op: Op,
    inputs: Vec<usize>,
    output: usize,
}

/// A trainable initialiser.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name in the ONNX graph.
    pub name: String,
    /// Its value (the variable gradients are taken for).
    pub var: Var,
    /// Its index in the graph's initialiser list.
    init: usize,
    /// Whether training changes it (BatchNormalization's running
    /// statistics do not).
    pub trainable: bool,
}

/// A place to cut the graph: the first `at` nodes on one side, the rest on
/// the other, with one tensor crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Nodes before the cut (0: the trainer runs everything; the node
    /// count: the edge node runs everything).
    pub at: usize,
    slot: usize,
}

/// A trainable ONNX graph.
#[derive(Debug)]
pub struct Graph {
    origin: String,
    model: pb::ModelProto,
    params: Vec<Param>,
    ints: Vec<Vec<i64>>,
    nodes: Vec<Node>,
    sources: Vec<Source>,
    input: usize,
    output: usize,
    /// Per slot: the last node that reads it (`nodes.len()` for the output).
    last_use: Vec<usize>,
    /// Per cut position 0..=n: the one tensor crossing it, if one.
    crossing: Vec<Option<usize>>,
    device: Device,
}

impl Graph {
    /// Reads an ONNX file.
    pub fn load(path: &std::path::Path, device: &Device, dtype: DType) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::Decode {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_bytes(&bytes, &path.display().to_string(), device, dtype)
    }

    /// Decodes an ONNX model (`origin` names it in errors). Float
    /// initialisers become variables of `dtype`.
    pub fn from_bytes(bytes: &[u8], origin: &str, device: &Device, dtype: DType) -> Result<Self> {
        let model = pb::ModelProto::decode(bytes).map_err(|e| TrainError::Decode {
            origin: origin.into(),
            message: e.to_string(),
        })?;
        Self::from_model(model, origin, device, dtype)
    }

    /// Builds from a decoded model.
    pub fn from_model(
        model: pb::ModelProto,
        origin: &str,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let bad = |message: String| TrainError::Graph {
            origin: origin.into(),
            message,
        };
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| bad("the model has no graph".into()))?;
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut sources = Vec::new();
        let mut params = Vec::new();
        let mut ints = Vec::new();
        for (i, t) in graph.initializer.iter().enumerate() {
            let name = t.name.clone().unwrap_or_default();
            if t.data_type == Some(INT64) {
                let v = int_values(t).map_err(|m| bad(format!("initialiser {name:?}: {m}")))?;
                names.insert(name.clone(), sources.len());
                sources.push(Source::Ints(ints.len()));
                ints.push(v);
                continue;
            }
            let tensor = initializer(t, device)
                .map_err(|m| bad(format!("initialiser {name:?}: {m}")))?
                .to_dtype(dtype)?;
            names.insert(name.clone(), sources.len());
            sources.push(Source::Param(params.len()));
            params.push(Param {
                name,
                var: Var::from_tensor(&tensor)?,
                init: i,
                trainable: true,
            });
        }
        let inputs: Vec<&str> = graph
            .input
            .iter()
            .filter_map(|v| v.name.as_deref())
            .filter(|n| !names.contains_key(*n))
            .collect();
        let [input_name] = inputs[..] else {
            return Err(bad(format!(
                "the graph must have one input besides its initialisers, not {inputs:?}"
            )));
        };
        let input = sources.len();
        names.insert(input_name.to_string(), input);
        sources.push(Source::Input);
        let mut nodes = Vec::with_capacity(graph.node.len());
        for (j, n) in graph.node.iter().enumerate() {
            let label = n.name.clone().unwrap_or_else(|| format!("#{j}"));
            let op_type = n.op_type.clone().unwrap_or_default();
            let unsupported = |message: String| TrainError::Unsupported {
                origin: origin.into(),
                node: label.clone(),
                op: op_type.clone(),
                message,
            };
            let op = parse_op(n, &op_type).map_err(unsupported)?;
            let ins = n
                .input
                .iter()
                .filter(|i| !i.is_empty())
                .map(|i| {
                    names.get(i).copied().ok_or_else(|| {
                        bad(format!(
                            "node {label:?} reads {i:?} before anything makes it"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let [out] = &n.output[..] else {
                return Err(bad(format!("node {label:?} must have one output")));
            };
            if matches!(op, Op::BatchNorm { .. }) {
                // Running mean and variance: statistics, not weights.
                for &s in ins.iter().skip(3) {
                    if let Source::Param(p) = sources[s] {
                        params[p].trainable = false;
                    }
                }
            }
            let output = sources.len();
            names.insert(out.clone(), output);
            sources.push(Source::Node(j));
            nodes.push(Node {
                op,
                inputs: ins,
                output,
            });
        }
        let outputs: Vec<&str> = graph
            .output
            .iter()
            .filter_map(|v| v.name.as_deref())
            .collect();
        let [output_name] = outputs[..] else {
            return Err(bad(format!(
                "the graph must have one output, not {outputs:?}"
            )));
        };
        let output = *names
            .get(output_name)
            .ok_or_else(|| bad(format!("output {output_name:?} is never made")))?;
        let n = nodes.len();
        let mut last_use = vec![0usize; sources.len()];
        for (j, node) in nodes.iter().enumerate() {
            for &s in &node.inputs {
                last_use[s] = last_use[s].max(j);
            }
        }
        last_use[output] = n;
        // Which activations cross each cut: made before it (or the input),
        // read at or after it.
        let made = |s: usize| match sources[s] {
            Source::Input => Some(0),
            Source::Node(j) => Some(j + 1),
            Source::Param(_) | Source::Ints(_) => None,
        };
        let crossing = (0..=n)
            .map(|k| {
                let live: Vec<usize> = (0..sources.len())
                    .filter(|&s| made(s).is_some_and(|m| m <= k) && last_use[s] >= k)
                    .collect();
                match live[..] {
                    [s] => Some(s),
                    _ => None,
                }
            })
            .collect::<Vec<_>>();
        let mut g = Self {
            origin: origin.into(),
            model,
            params,
            ints,
            nodes,
            sources,
            input,
            output,
            last_use,
            crossing,
            device: device.clone(),
        };
        // A cut whose two sides share a parameter is no cut.
        for k in 0..=n {
            if g.crossing[k].is_some() {
                let before = g.params_of(0..k);
                let after = g.params_of(k..n);
                if before.iter().any(|p| after.contains(p)) {
                    g.crossing[k] = None;
                }
            }
        }
        Ok(g)
    }

    /// Where the graph can be cut, in order (0 and the node count included).
    pub fn cuts(&self) -> Vec<Cut> {
        self.crossing
            .iter()
            .enumerate()
            .filter_map(|(at, s)| s.map(|slot| Cut { at, slot }))
            .collect()
    }

    /// The cut after `at` nodes, or an error naming the nearest ones.
    pub fn cut(&self, at: usize) -> Result<Cut> {
        match self.crossing.get(at).copied().flatten() {
            Some(slot) => Ok(Cut { at, slot }),
            None => {
                let cuts = self.cuts();
                let lo = cuts.iter().rev().find(|c| c.at < at).map(|c| c.at);
                let hi = cuts.iter().find(|c| c.at > at).map(|c| c.at);
                Err(TrainError::Invalid(format!(
                    "{}: the graph cannot be cut after {at} of its {} nodes (more than one \
                     tensor crosses there); the nearest cuts are {lo:?} and {hi:?}",
                    self.origin,
                    self.nodes.len()
                )))
            }
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The trainable initialisers.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Indices (into [`Graph::params`]) of the trainable parameters the nodes in `range` read.
    pub fn params_of(&self, range: Range<usize>) -> Vec<usize> {
        let mut out: Vec<usize> = self.nodes[range]
            .iter()
            .flat_map(|n| n.inputs.iter())
            .filter_map(|&s| match self.sources[s] {
                Source::Param(p) if self.params[p].trainable => Some(p),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The variables of the parameters in `which`.
    pub fn vars(&self, which: &[usize]) -> Vec<Var> {
        which.iter().map(|&p| self.params[p].var.clone()).collect()
    }

    /// The cut before every node: what crosses it is the graph's input.
    pub fn start(&self) -> Cut {
        Cut {
            at: 0,
            slot: self.input,
        }
    }

    /// The cut after every node: what crosses it is the graph's output.
    pub fn end(&self) -> Cut {
        Cut {
            at: self.nodes.len(),
            slot: self.output,
        }
    }

    /// The whole graph on `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(self.start(), self.end(), x)
    }

    /// The nodes between two cuts, `x` being the tensor crossing `from`;
    /// returns the tensor crossing `to`.
    pub fn run(&self, from: Cut, to: Cut, x: &Tensor) -> Result<Tensor> {
        if from.at > to.at {
            return Err(TrainError::Invalid(format!(
                "cut {} comes after cut {}",
                from.at, to.at
            )));
        }
        let mut vals: Vec<Option<Value>> = vec![None; self.sources.len()];
        vals[from.slot] = Some(Value::F(x.clone()));
        for j in from.at..to.at {
            let node = &self.nodes[j];
            let mut ins = Vec::with_capacity(node.inputs.len());
            for &s in &node.inputs {
                ins.push(match self.sources[s] {
                    Source::Param(p) => Value::F(self.params[p].var.as_tensor().clone()),
                    Source::Ints(i) => Value::I(self.ints[i].clone()),
                    _ => vals[s].clone().ok_or_else(|| {
                        TrainError::Invalid(format!(
                            "node {j} reads a tensor made before cut {}",
                            from.at
                        ))
                    })?,
                });
            }
            vals[node.output] = Some(apply(&node.op, &ins)?);
            // Activations nothing later reads are dropped as soon as possible.
            for &s in &node.inputs {
                if self.last_use[s] == j
                    && matches!(self.sources[s], Source::Node(_) | Source::Input)
                {
                    vals[s] = None;
                }
            }
        }
        match vals[to.slot].take() {
            Some(Value::F(t)) => Ok(t),
            _ => Err(TrainError::Invalid(format!("cut {} made no tensor", to.at))),
        }
    }

    /// Sets each parameter in `which` to the weighted mean of the same
    /// parameter in `others` (FedAvg; `weights`, one per model, e.g. each
    /// node's sample count).
    pub fn average_from(&self, others: &[&Graph], weights: &[f64], which: &[usize]) -> Result<()> {
        if others.is_empty() || others.len() != weights.len() {
            return Err(TrainError::Invalid(
                "averaging needs one weight per model and at least one model".into(),
            ));
        }
        let total: f64 = weights.iter().sum();
        for &p in which {
            let mut acc: Option<Tensor> = None;
            for (g, w) in others.iter().zip(weights) {
                let t = g
                    .params
                    .get(p)
                    .ok_or_else(|| TrainError::Invalid(format!("parameter {p} missing")))?
                    .var
                    .as_tensor()
                    .affine(w / total, 0.0)?;
                acc = Some(match acc {
                    None => t,
                    Some(a) => (a + t)?,
                });
            }
            if let Some(a) = acc {
                self.params[p]
                    .var
                    .set(&a.to_dtype(self.params[p].var.dtype())?)?;
            }
        }
        Ok(())
    }

    /// The model with the current weights as its initialisers (f32), encoded.
    pub fn to_onnx(&self) -> Result<Vec<u8>> {
        let mut model = self.model.clone();
        let graph = model
            .graph
            .as_mut()
            .ok_or_else(|| TrainError::Invalid("the model has no graph".into()))?;
        for p in &self.params {
            let values: Vec<f32> = p
                .var
                .as_tensor()
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?;
            let t = &mut graph.initializer[p.init];
            let mut raw = Vec::with_capacity(values.len() * 4);
            for v in values {
                raw.extend_from_slice(&v.to_le_bytes());
            }
            t.float_data.clear();
            t.raw_data = Some(raw);
            t.data_type = Some(FLOAT);
        }
        Ok(model.encode_to_vec())
    }

    /// The device the graph's variables live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}
