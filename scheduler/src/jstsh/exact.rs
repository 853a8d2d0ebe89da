//! Exact JSTSH by depth-first branch and bound, for tests and small checks.
//!
//! Bound: the cost of the streams placed so far (node terms only grow as work is
//! added, in both cost models) plus, for each unplaced stream, its cheapest
//! uninflated cost `min_{x,y} T_kx + CL1/PS_x + CL2/PS_y + [x != y] D/R_xy`.

use super::eval::{stream_term, total, Loads};
use super::{greedy, improve, Problem};
use crate::error::{Result, SchedError};

struct Search<'a> {
    p: &'a Problem,
    order: Vec<usize>,
    /// `rest[d]`: lower bound on the cost added by streams `order[d..]`.
    rest: Vec<f64>,
    loads: Loads,
    cur: Vec<(usize, usize)>,
    best: Option<(f64, Vec<(usize, usize)>)>,
    visited: u64,
    budget: u64,
}

impl Search<'_> {
    fn node_sum(&self) -> f64 {
        (0..self.p.m)
            .map(|i| self.loads.node_term(self.p, i, self.p.cost))
            .sum()
    }

    fn dfs(&mut self, depth: usize, streams: f64) -> Result<()> {
        self.visited += 1;
        if self.visited > self.budget {
            return Err(SchedError::TooLarge(format!(
                "more than {} search nodes",
                self.budget
            )));
        }
        let bound = streams + self.node_sum() + self.rest[depth];
        let best = self.best.as_ref().map_or(f64::INFINITY, |b| b.0);
        if bound >= best * (1.0 - 1e-12) {
            return Ok(());
        }
        if depth == self.order.len() {
            self.best = Some((bound, self.cur.clone()));
            return Ok(());
        }
        let k = self.order[depth];
        let p = self.p;
        for x in 0..p.m {
            for y in 0..p.m {
                let s = stream_term(p, k, x, y);
                if !s.is_finite() {
                    continue;
                }
                self.loads.add(p, k, x, y);
                if self.loads.fits(p, x) && self.loads.fits(p, y) {
                    self.cur[k] = (x, y);
                    self.dfs(depth + 1, streams + s)?;
                }
                self.loads.remove(p, k, x, y);
            }
        }
        Ok(())
    }
}

/// The optimum of `p.cost`, exploring at most `budget` search nodes (the
/// improvement phase's plan is the first incumbent).
pub fn exact(p: &Problem, budget: u64) -> Result<Vec<(usize, usize)>> {
    let start = greedy::greedy(p)
        .ok()
        .map(|a| improve::local_search(p, a, improve::work_budget(p.k(), p.m)));
    exact_from(p, start, budget)
}

/// The optimum of `p.cost` from an optional feasible incumbent, exploring at
/// most `budget` search nodes.
pub fn exact_from(
    p: &Problem,
    start: Option<Vec<(usize, usize)>>,
    budget: u64,
) -> Result<Vec<(usize, usize)>> {
    let order = p.order();
    let mut rest = vec![0.0; order.len() + 1];
    for d in (0..order.len()).rev() {
        let k = order[d];
        let cheapest = (0..p.m)
            .flat_map(|x| (0..p.m).map(move |y| (x, y)))
            .map(|(x, y)| stream_term(p, k, x, y) + p.cl1[k] / p.ps[x] + p.cl2[k] / p.ps[y])
            .fold(f64::INFINITY, f64::min);
        rest[d] = rest[d + 1] + cheapest;
    }
    let start = start.map(|a| (total(p, &a, p.cost), a));
    let mut s = Search {
        p,
        order,
        rest,
        loads: Loads::new(p),
        cur: vec![(0, 0); p.k()],
        best: start,
        visited: 0,
        budget,
    };
    s.dfs(0, 0.0)?;
    s.best.map(|b| b.1).ok_or_else(|| {
        SchedError::Infeasible("no assignment satisfies memory and reachability".into())
    })
}
