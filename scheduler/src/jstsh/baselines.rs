//! The published baselines: NMNO, WMNO (re-ID local) and NMWO (re-ID by stage 2).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::eval::Loads;
use super::greedy::{best_reid, can_detect};
use super::Problem;
use crate::error::{Result, SchedError};

/// True when node `i` can take stream `k` with both stages local.
fn can_host_both(p: &Problem, loads: &Loads, k: usize, i: usize) -> bool {
    if !p.t[k][i].is_finite() {
        return false;
    }
    let need = if loads.ndet[i] > 0 {
        0
    } else {
        p.models.detector
    } + if loads.nreid[i] > 0 { 0 } else { p.models.reid };
    loads.memory(p, i) + need <= p.mem[i]
}

fn none(k: usize, what: &str) -> SchedError {
    SchedError::Infeasible(format!(
        "stream #{k}: no reachable node has memory for {what}"
    ))
}

/// NMNO: each stream on a random node that can host it with re-ID local.
pub fn nmno(p: &Problem, seed: u64) -> Result<Vec<(usize, usize)>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut loads = Loads::new(p);
    let mut out = Vec::with_capacity(p.k());
    for k in 0..p.k() {
        let cands: Vec<usize> = (0..p.m)
            .filter(|&i| can_host_both(p, &loads, k, i))
            .collect();
        let &i = cands
            .choose(&mut rng)
            .ok_or_else(|| none(k, "a detector and a re-ID model"))?;
        loads.add(p, k, i, i);
        out.push((i, i));
    }
    Ok(out)
}

/// WMNO: each stream on the node with the smallest frame transfer time, re-ID local.
pub fn wmno(p: &Problem) -> Result<Vec<(usize, usize)>> {
    let mut loads = Loads::new(p);
    let mut out = Vec::with_capacity(p.k());
    for k in 0..p.k() {
        let i = (0..p.m)
            .filter(|&i| can_host_both(p, &loads, k, i))
            .min_by(|&a, &b| p.t[k][a].total_cmp(&p.t[k][b]))
            .ok_or_else(|| none(k, "a detector and a re-ID model"))?;
        loads.add(p, k, i, i);
        out.push((i, i));
    }
    Ok(out)
}

/// NMWO: random stream placement, then stage 2 of the greedy for re-ID.
pub fn nmwo(p: &Problem, seed: u64) -> Result<Vec<(usize, usize)>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut loads = Loads::new(p);
    let mut x = Vec::with_capacity(p.k());
    for k in 0..p.k() {
        let cands: Vec<usize> = (0..p.m)
            .filter(|&i| p.t[k][i].is_finite() && can_detect(p, &loads, i))
            .collect();
        let &i = cands
            .choose(&mut rng)
            .ok_or_else(|| none(k, "a detector"))?;
        loads.det(p, k, i, 1.0);
        x.push(i);
    }
    let mut out = vec![(0, 0); p.k()];
    for k in p.order() {
        let j = best_reid(p, &loads, k, x[k])?;
        loads.reid(p, k, j, 1.0);
        out[k] = (x[k], j);
    }
    Ok(out)
}
