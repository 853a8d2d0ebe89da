//! The published two-stage greedy (stage 1: streams + detection, stage 2: re-ID),
//! comparing nodes with the configured cost (load-aware: with the load already
//! placed plus this stream's).

use super::eval::{inflation, Loads};
use super::{CostModel, Problem};
use crate::error::{Result, SchedError};

/// Time of `work` more on node `i` given `loads`, under `p.cost`, with
/// `alongside` more wu per frame loading it besides (ingest work).
pub(super) fn stage_time(
    p: &Problem,
    loads: &Loads,
    i: usize,
    k: usize,
    work: f64,
    alongside: f64,
) -> f64 {
    let base = work / p.ps[i];
    match p.cost {
        CostModel::Published => base,
        CostModel::LoadAware => {
            base * inflation(loads.util[i] + p.fps[k] * (work + alongside) / p.ps[i])
        }
    }
}

/// Time to move one frame of stream `k` to node `i` given `loads`: `T_ik`,
/// inflated by `i`'s link with this stream on it when streams share it
/// (load-aware cost, [`Problem::shared_ingress`]).
pub(super) fn transfer_time(p: &Problem, loads: &Loads, i: usize, k: usize) -> f64 {
    let t = p.t[k][i];
    match p.cost {
        CostModel::LoadAware if p.shared_ingress && t.is_finite() => {
            t * inflation(loads.link[i] + p.fps[k] * t)
        }
        _ => t,
    }
}

/// True when node `i` can take one more detection (hosts a detector or has room for one).
pub(super) fn can_detect(p: &Problem, loads: &Loads, i: usize) -> bool {
    loads.ndet[i] > 0 || loads.memory(p, i) + p.models.detector <= p.mem[i]
}

/// True when node `i` can take one more re-ID (hosts a re-ID model or has room for one).
pub(super) fn can_reid(p: &Problem, loads: &Loads, i: usize) -> bool {
    loads.nreid[i] > 0 || loads.memory(p, i) + p.models.reid <= p.mem[i]
}

/// Nodes that could open a re-ID model now, and whether any re-ID model is deployed.
struct ReidRoom {
    deployed: bool,
    free: usize,
}

impl ReidRoom {
    fn of(p: &Problem, loads: &Loads) -> Self {
        Self {
            deployed: loads.nreid.iter().any(|&n| n > 0),
            free: (0..p.m)
                .filter(|&j| loads.memory(p, j) + p.models.reid <= p.mem[j])
                .count(),
        }
    }

    /// True when opening a detector on `i` still leaves room for a re-ID model
    /// somewhere (a fix: the published stage 1 can fill every node with
    /// detectors, and stage 2 then has nowhere to put re-ID).
    fn after_detector(&self, p: &Problem, loads: &Loads, i: usize) -> bool {
        if loads.ndet[i] > 0 || self.deployed {
            return true;
        }
        let here = loads.memory(p, i) + p.models.reid <= p.mem[i];
        self.free > usize::from(here)
            || loads.memory(p, i) + p.models.detector + p.models.reid <= p.mem[i]
    }
}

/// Stage 1 for stream `k`: the best detection node, or an error when none fits.
pub(super) fn best_detect(p: &Problem, loads: &Loads, k: usize) -> Result<usize> {
    let room = ReidRoom::of(p, loads);
    (0..p.m)
        .filter(|&i| {
            p.t[k][i].is_finite() && can_detect(p, loads, i) && room.after_detector(p, loads, i)
        })
        .map(|i| {
            (
                i,
                transfer_time(p, loads, i, k) + stage_time(p, loads, i, k, p.cl1[k], p.cl0[k]),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
        .ok_or_else(|| {
            SchedError::Infeasible(format!(
                "stream #{k}: no reachable node has memory for a detector"
            ))
        })
}

/// Stage 2 for stream `k` detected on `x`: the best re-ID node.
pub(super) fn best_reid(p: &Problem, loads: &Loads, k: usize, x: usize) -> Result<usize> {
    (0..p.m)
        .filter(|&j| p.hop(k, x, j).is_finite() && can_reid(p, loads, j))
        .map(|j| {
            (
                j,
                p.hop(k, x, j) + stage_time(p, loads, j, k, p.cl2[k], 0.0),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(j, _)| j)
        .ok_or_else(|| {
            SchedError::Infeasible(format!(
                "stream #{k}: no node reachable from its detector can host re-ID"
            ))
        })
}

/// The two-stage greedy. Returns `(detect node, re-ID node)` per stream.
pub fn greedy(p: &Problem) -> Result<Vec<(usize, usize)>> {
    let order = p.order();
    let mut loads = Loads::new(p);
    let mut x = vec![usize::MAX; p.k()];
    for &k in &order {
        let i = best_detect(p, &loads, k)?;
        loads.det(p, k, i, 1.0);
        x[k] = i;
    }
    let mut assign = vec![(0, 0); p.k()];
    for &k in &order {
        let j = best_reid(p, &loads, k, x[k])?;
        loads.reid(p, k, j, 1.0);
        assign[k] = (x[k], j);
    }
    Ok(assign)
}
