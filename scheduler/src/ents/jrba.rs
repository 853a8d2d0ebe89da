//! JRBA: joint routing and bandwidth allocation. The path choice is relaxed into
//! an LP (minimise `TH` s.t. per-link load `<= B_l * TH`), solved with `good_lp`
//! on the pure-Rust microlp simplex (maintained, no C toolchain, fast enough for
//! hundreds of flows); each flow then takes its heaviest LP path and links are
//! shared in proportion to volume.

use good_lp::{microlp, variable, Expression, ProblemVariables, Solution, SolverModel, Variable};

use super::paths::k_shortest_paths;
use crate::cluster::Graph;
use crate::error::{Result, SchedError};

/// A flow to route: bytes per item from `src` to `dst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowDemand {
    /// Sending node index.
    pub src: usize,
    /// Receiving node index.
    pub dst: usize,
    /// Bytes per item, `V_f` (> 0).
    pub volume: f64,
}

/// JRBA's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct JrbaResult {
    /// The LP optimum `TH*`: a lower bound on any routing's period (s).
    pub lp_bound: f64,
    /// Chosen path per flow (link indices).
    pub paths: Vec<Vec<usize>>,
    /// Bandwidth per flow (bytes/s).
    pub bandwidth: Vec<f64>,
    /// `max_f V_f / b_f` of the rounded plan (s).
    pub period: f64,
}

/// Links below this fraction of their nominal bandwidth count as full.
const FULL: f64 = 1e-9;

/// Routes `flows` over links with `avail[l]` bytes/s free, `k` candidate paths
/// each. `Ok(None)` when some flow has no usable route.
pub fn jrba(
    g: &Graph,
    avail: &[f64],
    flows: &[FlowDemand],
    k: usize,
) -> Result<Option<JrbaResult>> {
    if flows.is_empty() {
        return Ok(Some(JrbaResult {
            lp_bound: 0.0,
            paths: Vec::new(),
            bandwidth: Vec::new(),
            period: 0.0,
        }));
    }
    let usable = |l: usize| avail[l] > FULL * g.bandwidth[l];
    let mut cands = Vec::with_capacity(flows.len());
    for f in flows {
        let ps = k_shortest_paths(g, f.src, f.dst, k.max(1), &usable);
        if ps.is_empty() {
            return Ok(None);
        }
        cands.push(ps);
    }
    // Scale bytes so that the LP's numbers are near 1.
    let scale = avail
        .iter()
        .copied()
        .filter(|&b| b > 0.0)
        .fold(0.0, f64::max)
        .max(1.0);
    let mut vars = ProblemVariables::new();
    let th = vars.add(variable().min(0.0));
    let mut link_load: Vec<Expression> = vec![Expression::from(0.0); g.bandwidth.len()];
    let mut used = vec![false; g.bandwidth.len()];
    let mut m: Vec<Vec<Variable>> = Vec::with_capacity(flows.len());
    let mut per_flow = Vec::with_capacity(flows.len());
    for (f, ps) in flows.iter().zip(&cands) {
        let q = vars.add(variable().min(f.volume / scale));
        let ms: Vec<Variable> = ps.iter().map(|_| vars.add(variable().min(0.0))).collect();
        for (p, &v) in ps.iter().zip(&ms) {
            for &l in p {
                link_load[l] += v;
                used[l] = true;
            }
        }
        per_flow.push((q, ms.clone()));
        m.push(ms);
    }
    let mut model = vars.minimise(th).using(microlp);
    for (l, load) in link_load.into_iter().enumerate() {
        if used[l] {
            model = model.with((load - (avail[l] / scale) * th).leq(0.0));
        }
    }
    for (q, ms) in per_flow {
        let sum: Expression = ms.iter().copied().sum();
        model = model.with((sum - q).eq(0.0));
    }
    let sol = model.solve().map_err(|e| SchedError::Lp {
        what: format!("JRBA with {} flows", flows.len()),
        message: e.to_string(),
    })?;
    let lp_bound = sol.value(th);
    let paths: Vec<Vec<usize>> = m
        .iter()
        .zip(&cands)
        .map(|(ms, ps)| {
            let best = (0..ms.len())
                .max_by(|&a, &b| sol.value(ms[a]).total_cmp(&sol.value(ms[b])))
                .unwrap_or(0);
            ps[best].clone()
        })
        .collect();
    let bandwidth = proportional_shares(avail, flows, &paths);
    let period = period(flows, &bandwidth);
    Ok(Some(JrbaResult {
        lp_bound,
        paths,
        bandwidth,
        period,
    }))
}

/// On every link, each crossing flow gets `B_l * V_f / sum V`; a flow's share is
/// its smallest over its path.
pub fn proportional_shares(avail: &[f64], flows: &[FlowDemand], paths: &[Vec<usize>]) -> Vec<f64> {
    let mut vol = vec![0.0; avail.len()];
    for (f, p) in flows.iter().zip(paths) {
        for &l in p {
            vol[l] += f.volume;
        }
    }
    flows
        .iter()
        .zip(paths)
        .map(|(f, p)| {
            p.iter()
                .map(|&l| avail[l] * f.volume / vol[l])
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}

/// On every link, each crossing flow gets `B_l / n_l`; a flow's share is its smallest over its path.
pub fn equal_shares(avail: &[f64], paths: &[Vec<usize>]) -> Vec<f64> {
    let mut n = vec![0usize; avail.len()];
    for p in paths {
        for &l in p {
            n[l] += 1;
        }
    }
    paths
        .iter()
        .map(|p| {
            p.iter()
                .map(|&l| avail[l] / n[l] as f64)
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}

/// `max_f V_f / b_f` (0 for no flows).
pub fn period(flows: &[FlowDemand], bandwidth: &[f64]) -> f64 {
    flows
        .iter()
        .zip(bandwidth)
        .map(|(f, b)| f.volume / b)
        .fold(0.0, f64::max)
}
