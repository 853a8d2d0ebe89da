//! Local-search state for the improvement phase: an assignment with its node
//! loads and cached node terms, O(1) delta evaluation of a move, and a descent
//! that re-examines only what a move can have changed.
//!
//! Delta evaluation: a move changes the stream terms of the moved streams and
//! the node terms of at most four nodes per stream; everything else is read
//! from the caches, so evaluating a move allocates nothing and costs a few
//! inflation calls.
//!
//! Re-examination ("don't look" bookkeeping, exact for single-stream moves):
//! every load change of a node is stamped. After stream `k` was examined and
//! had no improving move, a move of `k` can only become improving when one of
//! the nodes it would touch changed since: if its own nodes changed, all of its
//! moves are examined again; otherwise only the moves onto changed nodes. A
//! pass in which nothing changed costs O(K), and a kick's descent costs about
//! the neighbourhood of the few nodes it touched, not a full pass.
//!
//! All work (moves examined, streams visited) is counted against a budget that
//! the caller sizes from the instance, so the run time is bounded and
//! deterministic.

use super::eval::{fits_counts, node_term, stream_term, transfer, Ingress, Loads};
use super::Problem;

/// A stream's placement change: `(stream, from, to)`.
pub(super) type Change = (usize, (usize, usize), (usize, usize));

/// Pending change of one node: work (wu/frame), fps-weighted work, model
/// counts, and the transfer times (plain and fps-weighted) into it.
#[derive(Clone, Copy, Default)]
struct NodeDelta {
    node: usize,
    work: f64,
    fwork: f64,
    det: i32,
    reid: i32,
    t: f64,
    ft: f64,
}

/// Node changes of at most two streams (at most eight distinct nodes).
#[derive(Default)]
struct Deltas {
    d: [NodeDelta; 8],
    n: usize,
}

impl Deltas {
    fn add(&mut self, x: NodeDelta) {
        let slot = match self.d[..self.n].iter().position(|e| e.node == x.node) {
            Some(s) => s,
            None => {
                self.d[self.n] = NodeDelta {
                    node: x.node,
                    ..NodeDelta::default()
                };
                self.n += 1;
                self.n - 1
            }
        };
        let e = &mut self.d[slot];
        e.work += x.work;
        e.fwork += x.fwork;
        e.det += x.det;
        e.reid += x.reid;
        e.t += x.t;
        e.ft += x.ft;
    }

    fn change(&mut self, p: &Problem, (k, (x, y), (x2, y2)): Change) {
        let (c1, c0, c2, f) = (p.cl1[k], p.cl0[k], p.cl2[k], p.fps[k]);
        // Detection moves the stream's frames (and the link they load);
        // re-ID only work.
        let det = |node: usize, sign: f64| {
            let t = sign * transfer(p, k, node);
            NodeDelta {
                node,
                work: sign * c1,
                fwork: sign * f * (c1 + c0),
                det: sign as i32,
                reid: 0,
                t,
                ft: f * t,
            }
        };
        let reid = |node: usize, sign: f64| NodeDelta {
            node,
            work: sign * c2,
            fwork: sign * f * c2,
            reid: sign as i32,
            ..NodeDelta::default()
        };
        self.add(det(x, -1.0));
        self.add(reid(y, -1.0));
        self.add(det(x2, 1.0));
        self.add(reid(y2, 1.0));
    }
}

/// An assignment under local search.
pub(super) struct Search<'a> {
    p: &'a Problem,
    /// Current `(detect node, re-ID node)` per stream.
    pub a: Vec<(usize, usize)>,
    loads: Loads,
    /// Cached `node_term` of every node.
    term: Vec<f64>,
    /// Work done so far (moves examined + streams visited).
    pub work: u64,
    /// Work allowed.
    pub budget: u64,
    /// Examine every `(i, j)` pair for a stream (small instances), or only
    /// `(i, y)`, `(x, j)`, `(i, i)`.
    full: bool,
    /// Try exchanging the placements of two streams (quadratic; small instances).
    swaps: bool,
    /// Try exchanging the roles of two nodes (O(K M^2); small instances).
    roles: bool,
    /// Nodes in the order their load changed; a node's stamp is its position + 1.
    log: Vec<usize>,
    /// Latest stamp of each node.
    changed_at: Vec<usize>,
    /// Stamp at which each stream was last examined.
    seen_at: Vec<usize>,
    /// Scratch marks for deduplicating changed nodes (generation counter).
    mark: Vec<u64>,
    generation: u64,
    scratch: Vec<usize>,
    order: Vec<usize>,
}

impl<'a> Search<'a> {
    /// A search from a feasible assignment.
    pub fn new(p: &'a Problem, a: Vec<(usize, usize)>, budget: u64) -> Self {
        let k = p.k();
        let (m, kk) = (p.m as u64, k as u64);
        let mut s = Self {
            p,
            loads: Loads::new(p),
            term: vec![0.0; p.m],
            a: Vec::new(),
            work: 0,
            budget,
            full: kk * m * m <= super::improve::FULL_PAIR_WORK,
            swaps: k <= super::improve::SWAP_LIMIT,
            roles: kk * m * m <= super::improve::FULL_PAIR_WORK,
            log: Vec::new(),
            changed_at: vec![0; p.m],
            seen_at: vec![0; k],
            mark: vec![0; p.m],
            generation: 0,
            scratch: Vec::with_capacity(p.m),
            order: p.order(),
        };
        s.reset(&a);
        s
    }

    /// Replaces the assignment with `a` (a local optimum, or a fresh start:
    /// `fresh` makes every stream be examined again).
    pub fn reset_to(&mut self, a: &[(usize, usize)], fresh: bool) {
        self.a.clear();
        self.a.extend_from_slice(a);
        let l = &mut self.loads;
        for v in [&mut l.work, &mut l.util, &mut l.tsum, &mut l.link] {
            v.iter_mut().for_each(|w| *w = 0.0);
        }
        for v in [&mut l.ndet, &mut l.nreid] {
            v.iter_mut().for_each(|w| *w = 0);
        }
        for (k, &(x, y)) in a.iter().enumerate() {
            self.loads.add(self.p, k, x, y);
        }
        for i in 0..self.p.m {
            self.term[i] = self.loads.node_term(self.p, i, self.p.cost);
        }
        let stamp = self.log.len();
        let seen = if fresh { 0 } else { stamp };
        if fresh {
            // Stamp every node so that everything is examined again.
            for i in 0..self.p.m {
                self.log.push(i);
                self.changed_at[i] = self.log.len();
            }
        }
        self.seen_at.iter_mut().for_each(|s| *s = seen);
    }

    /// Starts afresh from `a`.
    pub fn reset(&mut self, a: &[(usize, usize)]) {
        self.reset_to(a, true);
    }

    /// True while work is left.
    pub fn has_budget(&self) -> bool {
        self.work < self.budget
    }

    /// Exact objective of the current assignment (recomputed from the caches).
    pub fn cost(&self) -> f64 {
        let s: f64 = (self.a.iter().enumerate())
            .map(|(k, &(x, y))| stream_term(self.p, k, x, y))
            .sum();
        s + self.term.iter().sum::<f64>()
    }

    fn node_delta(&self, d: &Deltas) -> Option<f64> {
        let (p, l) = (self.p, &self.loads);
        let mut sum = 0.0;
        for e in &d.d[..d.n] {
            if e.det == 0 && e.reid == 0 && e.work.abs() < 1e-12 && e.t.abs() < 1e-12 {
                continue;
            }
            let i = e.node;
            let (nd, nr) = (l.ndet[i] as i32 + e.det, l.nreid[i] as i32 + e.reid);
            if (e.det > 0 || e.reid > 0) && !fits_counts(p, i, nd as u32, nr as u32) {
                return None;
            }
            let ingress = Ingress {
                tsum: l.tsum[i] + e.t,
                link: l.link[i] + e.ft,
            };
            let t = node_term(
                p,
                i,
                l.work[i] + e.work,
                l.util[i] + e.fwork / p.ps[i],
                ingress,
                p.cost,
            );
            sum += t - self.term[i];
        }
        Some(sum)
    }

    /// Objective change of `changes` (at most two streams), `None` when infeasible.
    pub fn delta(&mut self, changes: &[Change]) -> Option<f64> {
        self.work += 1;
        let p = self.p;
        let mut d = Deltas::default();
        let mut st = 0.0;
        for &c in changes {
            d.change(p, c);
            let (k, (x, y), (x2, y2)) = c;
            st += stream_term(p, k, x2, y2) - stream_term(p, k, x, y);
        }
        if !st.is_finite() {
            return None;
        }
        self.node_delta(&d).map(|n| n + st)
    }

    fn touch(&mut self, i: usize) {
        self.log.push(i);
        self.changed_at[i] = self.log.len();
    }

    /// Applies `changes` (assumed feasible).
    pub fn apply(&mut self, changes: &[Change]) {
        let p = self.p;
        for &(k, (x, y), (x2, y2)) in changes {
            self.loads.remove(p, k, x, y);
            self.loads.add(p, k, x2, y2);
            self.a[k] = (x2, y2);
        }
        for &(_, (x, y), (x2, y2)) in changes {
            for i in [x, y, x2, y2] {
                self.term[i] = self.loads.node_term(p, i, p.cost);
                self.touch(i);
            }
        }
    }

    /// Moves stream `k` to `to` when that is feasible; returns whether it moved.
    pub fn try_move(&mut self, k: usize, to: (usize, usize)) -> bool {
        let ch = [(k, self.a[k], to)];
        if to != self.a[k] && self.delta(&ch).is_some() {
            self.apply(&ch);
            true
        } else {
            false
        }
    }

    fn consider(&mut self, k: usize, to: (usize, usize), best: &mut (f64, Option<(usize, usize)>)) {
        let from = self.a[k];
        if to == from || !self.p.t[k][to.0].is_finite() {
            return;
        }
        if let Some(d) = self.delta(&[(k, from, to)]) {
            if d < best.0 {
                *best = (d, Some(to));
            }
        }
    }

    /// Examines stream `k`'s moves (all, or those onto nodes changed since it
    /// was last examined) and applies the best improving one.
    fn examine(&mut self, k: usize, eps: f64) -> bool {
        self.work += 1;
        let (x, y) = self.a[k];
        let since = self.seen_at[k];
        let stamp = self.log.len();
        if stamp == since {
            return false;
        }
        self.seen_at[k] = stamp;
        let m = self.p.m;
        let all = self.changed_at[x] > since || self.changed_at[y] > since || stamp - since >= m;
        let mut changed = std::mem::take(&mut self.scratch);
        changed.clear();
        if all {
            changed.extend(0..m);
        } else {
            self.generation += 1;
            for t in since..stamp {
                let i = self.log[t];
                if self.mark[i] != self.generation {
                    self.mark[i] = self.generation;
                    changed.push(i);
                }
            }
        }
        let mut best = (-eps, None);
        if self.full {
            for &n in &changed {
                for j in 0..m {
                    self.consider(k, (n, j), &mut best);
                    if !all {
                        // (n, j) over all n already covers every pair when `all`.
                        self.consider(k, (j, n), &mut best);
                    }
                }
            }
        } else {
            self.best_restricted(k, &changed, &mut best);
        }
        self.scratch = changed;
        match best.1 {
            Some(to) => {
                self.apply(&[(k, (x, y), to)]);
                true
            }
            None => false,
        }
    }

    /// Objective change of adding `w` wu/frame of stream `k` to node `n`
    /// (negative `w` removes), with its detection (`det` 1: added, -1:
    /// removed, 0: only re-ID moves) and so its frames on `n`'s link and
    /// its ingest work on `n`'s load.
    #[inline]
    fn add_term(&self, k: usize, n: usize, w: f64, det: f64) -> f64 {
        let (p, l) = (self.p, &self.loads);
        let u = l.util[n] + p.fps[k] * (w + det * p.cl0[k]) / p.ps[n];
        let t = det * transfer(p, k, n);
        let ingress = Ingress {
            tsum: l.tsum[n] + t,
            link: l.link[n] + p.fps[k] * t,
        };
        node_term(p, n, l.work[n] + w, u, ingress, p.cost) - self.term[n]
    }

    /// The best of stream `k`'s moves `(n, y)`, `(x, n)`, `(n, n)` for `n` in
    /// `nodes`, each a removal (computed once) plus one node's addition.
    pub(super) fn best_restricted(
        &mut self,
        k: usize,
        nodes: &[usize],
        best: &mut (f64, Option<(usize, usize)>),
    ) {
        let (p, l) = (self.p, &self.loads);
        let (x, y) = self.a[k];
        let (c1, c2) = (p.cl1[k], p.cl2[k]);
        let st0 = stream_term(p, k, x, y);
        let rdet = self.add_term(k, x, -c1, -1.0) - st0;
        let rreid = self.add_term(k, y, -c2, 0.0) - st0;
        let rboth = if x == y {
            self.add_term(k, x, -c1 - c2, -1.0)
        } else {
            self.add_term(k, x, -c1, -1.0) + self.add_term(k, y, -c2, 0.0)
        } - st0;
        let mut evals = 0;
        for &n in nodes {
            let det = l.ndet[n] > 0 || fits_counts(p, n, 1, l.nreid[n]);
            let reid = l.nreid[n] > 0 || fits_counts(p, n, l.ndet[n], 1);
            let both = fits_counts(p, n, 1, 1);
            let mut cand = |d: f64, to: (usize, usize)| {
                evals += 1;
                if d < best.0 {
                    *best = (d, Some(to));
                }
            };
            if p.t[k][n].is_finite() {
                if n != x && det {
                    cand(
                        rdet + self.add_term(k, n, c1, 1.0) + stream_term(p, k, n, y),
                        (n, y),
                    );
                }
                if n != x && n != y && both {
                    cand(
                        rboth + self.add_term(k, n, c1 + c2, 1.0) + p.t[k][n],
                        (n, n),
                    );
                }
            }
            if n != y && reid {
                cand(
                    rreid + self.add_term(k, n, c2, 0.0) + stream_term(p, k, x, n),
                    (x, n),
                );
            }
        }
        self.work += evals;
    }

    /// First-improvement exchange of two streams' detection (or re-ID) nodes.
    fn swap_pass(&mut self, eps: f64) -> bool {
        let mut improved = false;
        for k1 in 0..self.a.len() {
            for k2 in k1 + 1..self.a.len() {
                if !self.has_budget() {
                    return improved;
                }
                let ((x1, y1), (x2, y2)) = (self.a[k1], self.a[k2]);
                for (n1, n2) in [((x2, y1), (x1, y2)), ((x1, y2), (x2, y1))] {
                    if n1 == self.a[k1] {
                        continue;
                    }
                    let ch = [(k1, (x1, y1), n1), (k2, (x2, y2), n2)];
                    if self.delta(&ch).is_some_and(|d| d < -eps) {
                        self.apply(&ch);
                        improved = true;
                        break;
                    }
                }
            }
        }
        improved
    }

    /// Objective change of exchanging the roles of nodes `i` and `j` (every
    /// stage on `i` goes to `j` and back), `None` when infeasible.
    pub fn role_delta(&mut self, i: usize, j: usize) -> Option<f64> {
        let (p, l) = (self.p, &self.loads);
        self.work += self.a.len() as u64;
        if !fits_counts(p, i, l.ndet[j], l.nreid[j]) || !fits_counts(p, j, l.ndet[i], l.nreid[i]) {
            return None;
        }
        // What the streams detected on `j` would put on `i`'s link, and back.
        let (mut on_i, mut on_j) = (Ingress::default(), Ingress::default());
        let mut d = 0.0;
        for (k, &(x, y)) in self.a.iter().enumerate() {
            if x == i || x == j || y == i || y == j {
                let (x2, y2) = (swap(x, i, j), swap(y, i, j));
                d += stream_term(p, k, x2, y2) - stream_term(p, k, x, y);
                let to = if x2 == i {
                    &mut on_i
                } else if x2 == j {
                    &mut on_j
                } else {
                    continue;
                };
                let t = transfer(p, k, x2);
                to.tsum += t;
                to.link += p.fps[k] * t;
            }
        }
        let ti = node_term(p, i, l.work[j], l.util[j] * p.ps[j] / p.ps[i], on_i, p.cost);
        let tj = node_term(p, j, l.work[i], l.util[i] * p.ps[i] / p.ps[j], on_j, p.cost);
        d += ti + tj - self.term[i] - self.term[j];
        d.is_finite().then_some(d)
    }

    /// Exchanges the roles of nodes `i` and `j` (assumed feasible).
    pub fn apply_roles(&mut self, i: usize, j: usize) {
        for k in 0..self.a.len() {
            let (x, y) = self.a[k];
            if x == i || x == j || y == i || y == j {
                let to = (swap(x, i, j), swap(y, i, j));
                self.loads.remove(self.p, k, x, y);
                self.loads.add(self.p, k, to.0, to.1);
                self.a[k] = to;
            }
        }
        // Stamping `i` and `j` makes every stream on them be examined in full.
        for n in [i, j] {
            self.term[n] = self.loads.node_term(self.p, n, self.p.cost);
            self.touch(n);
        }
    }

    fn roles_pass(&mut self, eps: f64) -> bool {
        let mut improved = false;
        for i in 0..self.p.m {
            for j in i + 1..self.p.m {
                if self.has_budget() && self.role_delta(i, j).is_some_and(|d| d < -eps) {
                    self.apply_roles(i, j);
                    improved = true;
                }
            }
        }
        improved
    }

    /// Descends to a local optimum (or until the budget runs out).
    pub fn descend(&mut self) {
        loop {
            let eps = 1e-9 * (1.0 + self.cost().abs());
            let mut improved = false;
            for idx in 0..self.order.len() {
                if !self.has_budget() {
                    return;
                }
                improved |= self.examine(self.order[idx], eps);
            }
            if self.swaps {
                improved |= self.swap_pass(eps);
            }
            if self.roles {
                improved |= self.roles_pass(eps);
            }
            if !improved {
                return;
            }
        }
    }
}

/// Node `n` with `i` and `j` exchanged.
pub(super) fn swap(n: usize, i: usize, j: usize) -> usize {
    if n == i {
        j
    } else if n == j {
        i
    } else {
        n
    }
}
