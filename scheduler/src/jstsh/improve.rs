//! The improvement phase after the greedy: best-improvement local search over
//! relocating a stream's detection node, re-ID node or both, and swapping the
//! detection (or re-ID) nodes of two streams, always respecting memory. It runs
//! from the greedy's plan and from the greedy's plan with re-ID made local, keeps
//! the better local optimum, then iterates: kick (re-place a few streams, or
//! evacuate a node, exchange two nodes' roles), descend again, keep if better.
//! The descent also exchanges two nodes' roles on small instances. Each move's cost change is O(1) (see
//! [`super::eval`]), so a pass costs O(K * M) on large instances.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::eval::{stream_term, total, Loads};
use super::Problem;

/// Passes over all streams before giving up (a local optimum is usually reached in a few).
const MAX_PASSES: usize = 30;
/// Above this many `K * M * M` evaluations per pass, relocations try `(i, y)`, `(x, j)`, `(i, i)` only.
const FULL_PAIR_BUDGET: usize = 200_000;
/// Above this many streams, pairwise swaps are skipped (quadratic).
const SWAP_LIMIT: usize = 150;

/// One stream's change: `(stream, from, to)`.
type Change = (usize, (usize, usize), (usize, usize));

/// Applies `changes`, returns the objective change if the result is feasible,
/// and leaves the loads applied only when `keep` and feasible.
fn try_changes(p: &Problem, loads: &mut Loads, changes: &[Change], keep: bool) -> Option<f64> {
    let mut nodes: Vec<usize> = changes
        .iter()
        .flat_map(|&(_, (a, b), (c, d))| [a, b, c, d])
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let node_sum = |l: &Loads| {
        nodes
            .iter()
            .map(|&i| l.node_term(p, i, p.cost))
            .sum::<f64>()
    };
    let before = node_sum(loads)
        + changes
            .iter()
            .map(|&(k, (x, y), _)| stream_term(p, k, x, y))
            .sum::<f64>();
    for &(k, (x, y), _) in changes {
        loads.remove(p, k, x, y);
    }
    for &(k, _, (x, y)) in changes {
        loads.add(p, k, x, y);
    }
    let streams = changes
        .iter()
        .map(|&(k, _, (x, y))| stream_term(p, k, x, y))
        .sum::<f64>();
    let ok = streams.is_finite() && nodes.iter().all(|&i| loads.fits(p, i));
    let delta = node_sum(loads) + streams - before;
    if !(ok && keep) {
        for &(k, _, (x, y)) in changes {
            loads.remove(p, k, x, y);
        }
        for &(k, (x, y), _) in changes {
            loads.add(p, k, x, y);
        }
    }
    ok.then_some(delta)
}

/// Local search from `a` to a local optimum of `p.cost`.
fn local_search(p: &Problem, mut a: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let mut loads = Loads::of(p, &a);
    let order = p.order();
    let full = p.k() * p.m * p.m <= FULL_PAIR_BUDGET;
    let mut cands = Vec::with_capacity(p.m * p.m);
    for _ in 0..MAX_PASSES {
        let mut improved = false;
        let eps = 1e-9 * (1.0 + total(p, &a, p.cost).abs());
        for &k in &order {
            let (x, y) = a[k];
            cands.clear();
            if full {
                cands.extend((0..p.m).flat_map(|i| (0..p.m).map(move |j| (i, j))));
            } else {
                cands.extend((0..p.m).flat_map(|i| [(i, y), (x, i), (i, i)]));
            }
            let mut best = (-eps, None);
            for &to in &cands {
                if to == (x, y) || !p.t[k][to.0].is_finite() {
                    continue;
                }
                if let Some(d) = try_changes(p, &mut loads, &[(k, (x, y), to)], false) {
                    if d < best.0 {
                        best = (d, Some(to));
                    }
                }
            }
            if let Some(to) = best.1 {
                try_changes(p, &mut loads, &[(k, (x, y), to)], true);
                a[k] = to;
                improved = true;
            }
        }
        if p.k() <= SWAP_LIMIT {
            for k1 in 0..p.k() {
                for k2 in k1 + 1..p.k() {
                    let ((x1, y1), (x2, y2)) = (a[k1], a[k2]);
                    for (n1, n2) in [((x2, y1), (x1, y2)), ((x1, y2), (x2, y1))] {
                        if n1 == a[k1] {
                            continue;
                        }
                        let ch = [(k1, a[k1], n1), (k2, a[k2], n2)];
                        if try_changes(p, &mut loads, &ch, false).is_some_and(|d| d < -eps) {
                            try_changes(p, &mut loads, &ch, true);
                            a[k1] = n1;
                            a[k2] = n2;
                            improved = true;
                            break;
                        }
                    }
                }
            }
        }
        if p.m * p.m * p.k() <= FULL_PAIR_BUDGET {
            improved |= swap_roles(p, &mut a, &mut loads, eps);
        }
        if !improved {
            break;
        }
    }
    a
}

/// Exchanges the whole roles of two nodes (every stage on `i` goes to `j` and
/// back) when that lowers the cost: the move that turns a detector node into a
/// re-ID node and vice versa, impossible one stream at a time under tight memory.
fn swap_roles(p: &Problem, a: &mut [(usize, usize)], loads: &mut Loads, eps: f64) -> bool {
    let swap = |n: usize, i: usize, j: usize| {
        if n == i {
            j
        } else if n == j {
            i
        } else {
            n
        }
    };
    let mut improved = false;
    for i in 0..p.m {
        for j in i + 1..p.m {
            let ch: Vec<Change> = a
                .iter()
                .enumerate()
                .filter(|(_, &(x, y))| x == i || x == j || y == i || y == j)
                .map(|(k, &(x, y))| (k, (x, y), (swap(x, i, j), swap(y, i, j))))
                .collect();
            if ch.is_empty() {
                continue;
            }
            if try_changes(p, loads, &ch, false).is_some_and(|d| d < -eps) {
                try_changes(p, loads, &ch, true);
                for &(k, _, to) in &ch {
                    a[k] = to;
                }
                improved = true;
            }
        }
    }
    improved
}

/// Iterated local search rounds on an instance with `k` streams and `m` nodes:
/// many on small instances, none on huge ones (where the greedy + one descent
/// must fit a few milliseconds).
fn kicks(k: usize, m: usize) -> usize {
    (40_000 / (k * m).max(1)).min(300)
}

/// A kick: re-place 1-3 random streams at random feasible pairs, or move every
/// stage off one random node (the multi-stream move that single relocations
/// cannot make when memory is tight).
// `a[k]` is read and written while `loads` is borrowed mutably; an index loop is clearest.
#[allow(clippy::needless_range_loop)]
fn perturb(p: &Problem, a: &mut [(usize, usize)], rng: &mut ChaCha8Rng) {
    let mut loads = Loads::of(p, a);
    let kind = rng.gen_range(0..3);
    if kind == 2 && p.m >= 2 {
        // Exchange two random nodes' roles outright (a 3-cycle of roles is two of these).
        let i = rng.gen_range(0..p.m);
        let j = (i + rng.gen_range(1..p.m)) % p.m;
        let swap = |n: usize| {
            if n == i {
                j
            } else if n == j {
                i
            } else {
                n
            }
        };
        let ch: Vec<Change> = a
            .iter()
            .enumerate()
            .map(|(k, &(x, y))| (k, (x, y), (swap(x), swap(y))))
            .collect();
        if try_changes(p, &mut loads, &ch, true).is_some() {
            for &(k, _, to) in &ch {
                a[k] = to;
            }
        }
    } else if kind == 1 {
        let victim = rng.gen_range(0..p.m);
        for k in 0..a.len() {
            let (x, y) = a[k];
            if x != victim && y != victim {
                continue;
            }
            let mut opts: Vec<(usize, usize)> = (0..p.m)
                .flat_map(|i| (0..p.m).map(move |j| (i, j)))
                .filter(|&(i, j)| i != victim && j != victim)
                .collect();
            opts.shuffle(rng);
            for to in opts {
                if try_changes(p, &mut loads, &[(k, (x, y), to)], true).is_some() {
                    a[k] = to;
                    break;
                }
            }
        }
    } else {
        for _ in 0..rng.gen_range(1..=3) {
            let k = rng.gen_range(0..a.len());
            let to = (rng.gen_range(0..p.m), rng.gen_range(0..p.m));
            if try_changes(p, &mut loads, &[(k, a[k], to)], true).is_some() {
                a[k] = to;
            }
        }
    }
}

/// Improves a feasible assignment; never returns a worse one. Deterministic:
/// the kicks use a fixed seed.
pub fn improve(p: &Problem, start: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let local: Vec<(usize, usize)> = start.iter().map(|&(x, _)| (x, x)).collect();
    let mut best = local_search(p, start);
    let mut best_cost = total(p, &best, p.cost);
    if super::eval::feasible(p, &local) {
        let other = local_search(p, local);
        let c = total(p, &other, p.cost);
        if c < best_cost {
            (best, best_cost) = (other, c);
        }
    }
    if best.is_empty() {
        return best;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_1234);
    for _ in 0..kicks(p.k(), p.m) {
        let mut a = best.clone();
        perturb(p, &mut a, &mut rng);
        let a = local_search(p, a);
        let c = total(p, &a, p.cost);
        if c < best_cost * (1.0 - 1e-12) {
            (best, best_cost) = (a, c);
        }
    }
    best
}
