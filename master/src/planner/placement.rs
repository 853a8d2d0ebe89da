//! Placements of a [`Mapped`] problem: the re-ID rules, feasibility, the
//! cheapest spot of one stream with the others fixed, and the stability
//! search that keeps the previous plan where it is still good.
//!
//! A placement is one `(detect node, re-ID node)` pair of scheduler indices per
//! stream; costs are JSTSH's load-aware objective.

use std::collections::HashMap;

use vidar_scheduler::jstsh::{Loads, Objective};

use super::model::Mapped;
use super::PlanOutput;

impl Mapped {
    /// May a stream detected on `x` run its re-ID on `y`?
    pub(super) fn reid_allowed(&self, x: usize, y: usize) -> bool {
        if x == y {
            self.has_reid[y]
        } else {
            self.serves[y]
        }
    }

    /// Models fit every node, every stream reaches its nodes, re-ID rules hold.
    pub(super) fn feasible(&self, a: &[(usize, usize)]) -> bool {
        let p = &self.problem;
        let loads = Loads::of(p, a);
        (0..p.m).all(|i| loads.fits(p, i))
            && a.iter().enumerate().all(|(k, &(x, y))| {
                self.reid_allowed(x, y) && (p.t[k][x] + p.hop(k, x, y)).is_finite()
            })
    }

    /// The cheapest feasible `(detect, re-ID)` for stream `k`, all others fixed;
    /// with `move_detect` false only its re-ID node changes.
    pub(super) fn best_spot(
        &self,
        a: &[(usize, usize)],
        k: usize,
        move_detect: bool,
    ) -> Option<(usize, usize)> {
        let p = &self.problem;
        let xs: Vec<usize> = if move_detect {
            (0..p.m).filter(|&i| p.t[k][i].is_finite()).collect()
        } else {
            vec![a[k].0]
        };
        let mut trial = a.to_vec();
        let mut best: Option<((usize, usize), f64)> = None;
        for &x in &xs {
            for y in (0..p.m).filter(|&y| self.reid_allowed(x, y)) {
                trial[k] = (x, y);
                if !self.feasible(&trial) {
                    continue;
                }
                let c = Objective::of(p, &trial).load_aware_cost;
                if c.is_finite() && best.is_none_or(|(_, b)| c < b) {
                    best = Some(((x, y), c));
                }
            }
        }
        best.map(|(s, _)| s)
    }

    /// The previous plan where still valid, the rest placed one by one at their
    /// cheapest spot (starting from `fresh`); with how many cameras moved.
    /// `None` when no previous placement is usable.
    pub(super) fn sticky(
        &self,
        prev: &PlanOutput,
        fresh: &[(usize, usize)],
    ) -> Option<(Vec<(usize, usize)>, usize)> {
        let p = &self.problem;
        let before: HashMap<&str, (Option<usize>, Option<usize>)> = prev
            .streams
            .iter()
            .map(|s| {
                (
                    s.camera.as_str(),
                    (
                        self.index.get(&s.node).copied(),
                        self.index.get(&s.reid_node).copied(),
                    ),
                )
            })
            .collect();
        let mut a = fresh.to_vec();
        let mut moved = Vec::new();
        for (k, id) in self.cameras.iter().enumerate() {
            match before.get(id.as_str()) {
                Some(&(Some(x), Some(y))) if p.t[k][x].is_finite() && self.reid_allowed(x, y) => {
                    a[k] = (x, y);
                }
                _ => moved.push(k),
            }
        }
        if moved.len() == p.k() {
            return None;
        }
        for &k in &moved {
            if let Some(s) = self.best_spot(&a, k, true) {
                a[k] = s;
            }
        }
        Some((a, moved.len()))
    }
}
