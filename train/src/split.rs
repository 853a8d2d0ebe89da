//! One training step split at a cut, as EdgeSplit runs it: the edge node
//! runs the layers before the cut and sends their output (the
//! activations); the trainer runs the rest, the loss and its backward pass,
//! and sends back the gradient of the loss with respect to those
//! activations; the node runs its backward pass from that gradient. Only
//! the activations and their gradient cross, as plain `f32` buffers
//! ([`Wire`]), so what is counted here is what a link carries.
//!
//! [`Step::unsplit`] is the same step in one piece; the tests check that the
//! two give the same loss and gradients.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use crate::graph::{Cut, Graph};
use crate::Result;

/// A tensor as it travels: its shape and its values as `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

impl Wire {
    /// A tensor's values, detached from any graph.
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        Ok(Self {
            shape: t.dims().to_vec(),
            values: t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
        })
    }

    /// Bytes on the link (4 per value).
    pub fn bytes(&self) -> usize {
        self.values.len() * 4
    }

    /// Back into a tensor of `dtype` on the graph's device, as the
    /// receiver makes it.
    pub fn into_tensor(self, graph: &Graph, dtype: DType) -> Result<Tensor> {
        self.on(graph.device(), dtype)
    }

    /// Back into a tensor of `dtype` on `device`.
    pub fn on(self, device: &Device, dtype: DType) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.values, self.shape, device)?.to_dtype(dtype)?)
    }
}

/// The trainer's half of a split step: the layers after `cut` on what the
/// node sent (`received`), the loss, its backward pass, and the gradient of
/// the loss for `received` to send back (zeros where nothing after the cut
/// depends on it). Returns the loss, the trainer's gradients and that one.
pub fn trainer_half(
    graph: &Graph,
    cut: Cut,
    received: &Tensor,
    loss: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<(f64, GradStore, Tensor)> {
    let received = Var::from_tensor(received)?;
    let out = graph.run(cut, graph.end(), received.as_tensor())?;
    let l = loss(&out)?;
    let value = crate::loss::scalar(&l)?;
    let grads = l.backward()?;
    let back = match grads.get(received.as_tensor()) {
        Some(g) => g.clone(),
        None => received.as_tensor().zeros_like()?,
    };
    Ok((value, grads, back))
}

/// What one step gives: the loss, the gradients of both sides, and what
/// crossed the cut.
#[derive(Debug)]
pub struct Step {
    /// The loss of the batch.
    pub loss: f64,
    /// Gradients of the node side's parameters (none when the cut is 0).
    pub node: Option<GradStore>,
    /// Gradients of the trainer side's parameters.
    pub trainer: GradStore,
    /// Bytes of activations sent node to trainer.
    pub up_bytes: usize,
    /// Bytes of gradient sent trainer to node.
    pub down_bytes: usize,
}

impl Step {
    /// The step split at `cut`: `loss` maps the graph's output to a
    /// scalar. With `node_trains` false the node side stays as it is (only
    /// its forward pass runs, and no gradient is sent back).
    pub fn split(
        graph: &Graph,
        cut: Cut,
        input: &Tensor,
        node_trains: bool,
        loss: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Self> {
        let dtype = input.dtype();
        // The edge node.
        let act = graph.run(graph.start(), cut, input)?;
        let up = Wire::from_tensor(&act)?;
        let up_bytes = up.bytes();
        // The trainer: the activations as a variable, to get their gradient.
        let (value, trainer, back) =
            trainer_half(graph, cut, &up.into_tensor(graph, dtype)?, loss)?;
        if cut.at == 0 || !node_trains {
            return Ok(Self {
                loss: value,
                node: None,
                trainer,
                up_bytes,
                down_bytes: 0,
            });
        }
        let grad = Wire::from_tensor(&back)?;
        let down_bytes = grad.bytes();
        // The edge node again: backward from the gradient it received.
        let g = grad.into_tensor(graph, dtype)?;
        let node = Some((&act * &g)?.sum_all()?.backward()?);
        Ok(Self {
            loss: value,
            node,
            trainer,
            up_bytes,
            down_bytes,
        })
    }

    /// The same step in one piece (everything on the trainer).
    pub fn unsplit(
        graph: &Graph,
        input: &Tensor,
        loss: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Self> {
        let out = graph.forward(input)?;
        let l = loss(&out)?;
        Ok(Self {
            loss: crate::loss::scalar(&l)?,
            node: None,
            trainer: l.backward()?,
            up_bytes: 0,
            down_bytes: 0,
        })
    }

    /// The gradient of `var` from whichever side computed it.
    pub fn grad(&self, var: &Var) -> Option<&Tensor> {
        self.node
            .as_ref()
            .and_then(|n| n.get(var.as_tensor()))
            .or_else(|| self.trainer.get(var.as_tensor()))
    }
}
