//! The improvement phase after the greedy: iterated local search on a work budget.
//!
//! The descent ([`super::search`]) relocates a stream's detection node, re-ID
//! node or both, exchanges two streams' nodes and exchanges two nodes' roles
//! (the last two on small instances), always respecting memory; moves are
//! evaluated by their O(1) cost change. It starts from the greedy's plan and
//! from the greedy's plan with re-ID made local, then iterates: kick from the
//! best plan found (re-place a few streams or evacuate a node; on small
//! instances also exchange two nodes' roles, restart in a random model
//! configuration, or re-place every stream at random), descend, keep if better. All of it draws on one budget of work units that
//! grows with the instance (`PASSES` full passes, at least a floor that grows
//! with `K * M` from `MIN_WORK` to `MAX_FLOOR`), so the
//! run time is bounded and deterministic (the kicks use a fixed seed).
//!
//! On tiny instances (at most `2^EXACT_BITS` complete assignments) the result
//! is then handed to the branch and bound as its incumbent; when the bound
//! closes within `EXACT_NODES` search nodes the plan is optimal.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::eval::{stream_term, Loads};
use super::search::Search;
use super::Problem;

/// At most this many `K * M^2` move evaluations per pass: every `(i, j)` pair is a candidate.
pub(super) const FULL_PAIR_WORK: u64 = 200_000;
/// At most this many streams: pairwise stream swaps are tried (quadratic).
pub(super) const SWAP_LIMIT: usize = 150;
/// Full neighbourhood passes the budget pays for.
const PASSES: u64 = 4;
/// Budget floor per stream-node pair: small instances get many kicks, more as
/// their search space grows (clamped to `MIN_WORK..=MAX_FLOOR`).
const FLOOR_PER_PAIR: u64 = 10_000;
/// Smallest budget.
const MIN_WORK: u64 = 50_000;
/// Largest floor (above it only the passes term grows).
const MAX_FLOOR: u64 = 1_000_000;
/// At most this many `K * M^2`: the kicks include restarts and role exchanges.
const RESTART_LIMIT: usize = 400;
/// Instances with at most `2^EXACT_BITS` assignments get an exact polish.
const EXACT_BITS: f64 = 22.0;
/// Search nodes the exact polish may explore.
const EXACT_NODES: u64 = 400_000;

/// Work units the search may spend on `k` streams and `m` nodes.
pub fn work_budget(k: usize, m: usize) -> u64 {
    let (k, m) = (k as u64, m as u64);
    let neighbourhood = if k * m * m <= FULL_PAIR_WORK {
        m * m
    } else {
        3 * m
    };
    let floor = (FLOOR_PER_PAIR * k * m).clamp(MIN_WORK, MAX_FLOOR);
    (PASSES * k * neighbourhood).max(floor)
}

/// A fresh plan in a random model configuration: every node gets a random set
/// of models that fits its memory (none, detector, re-ID, both), then each
/// stream, in a random or workload order, takes the pair of hosting nodes that
/// adds least to the objective. Memory decides which nodes may host which
/// model, and moving from one configuration to another takes many streams'
/// moves at once (often through much worse plans), so this is the restart that
/// reaches other basins. `None` when the configuration cannot place a stream.
fn configuration_start(p: &Problem, rng: &mut ChaCha8Rng) -> Option<Vec<(usize, usize)>> {
    let (det, reid) = (p.models.detector, p.models.reid);
    let mut roles = Vec::with_capacity(p.m);
    for i in 0..p.m {
        let opts = [(false, false), (true, false), (false, true), (true, true)];
        let fits = |&&(d, r): &&(bool, bool)| {
            (if d { det } else { 0 }) + (if r { reid } else { 0 }) <= p.mem[i]
        };
        let n = opts.iter().filter(fits).count();
        let pick = rng.gen_range(0..n);
        roles.push(*opts.iter().filter(fits).nth(pick)?);
    }
    let mut order = p.order();
    if rng.gen_bool(0.5) {
        order.shuffle(rng);
    }
    let mut loads = Loads::new(p);
    let mut a = vec![(0, 0); p.k()];
    for k in order {
        let mut best = (f64::INFINITY, None);
        for (i, _) in roles.iter().enumerate().filter(|(_, r)| r.0) {
            for (j, _) in roles.iter().enumerate().filter(|(_, r)| r.1) {
                let s = stream_term(p, k, i, j);
                if !s.is_finite() {
                    continue;
                }
                loads.add(p, k, i, j);
                let mut d = s + loads.node_term(p, i, p.cost);
                if j != i {
                    d += loads.node_term(p, j, p.cost);
                }
                loads.remove(p, k, i, j);
                d -= loads.node_term(p, i, p.cost);
                if j != i {
                    d -= loads.node_term(p, j, p.cost);
                }
                if d < best.0 {
                    best = (d, Some((i, j)));
                }
            }
        }
        let (i, j) = best.1?;
        loads.add(p, k, i, j);
        a[k] = (i, j);
    }
    Some(a)
}

/// A kick: changes the current plan of `s` at random, keeping it feasible.
fn kick(s: &mut Search, p: &Problem, rng: &mut ChaCha8Rng, small: bool) {
    let k = s.a.len();
    // Small instances: half the kicks are configuration restarts.
    let kind = match small {
        true if rng.gen_bool(0.5) => 3,
        true => [0, 1, 2, 4][rng.gen_range(0..4)],
        false => rng.gen_range(0..2),
    };
    match kind {
        0 => {
            for _ in 0..rng.gen_range(1..=3) {
                let st = rng.gen_range(0..k);
                for _ in 0..4 {
                    if s.try_move(st, (rng.gen_range(0..p.m), rng.gen_range(0..p.m))) {
                        break;
                    }
                }
            }
        }
        1 => {
            // Evacuate one node: the multi-stream move single relocations cannot
            // make when memory is tight.
            let victim = rng.gen_range(0..p.m);
            for st in 0..k {
                let (x, y) = s.a[st];
                if x != victim && y != victim {
                    continue;
                }
                for _ in 0..2 * p.m * p.m {
                    let to = (rng.gen_range(0..p.m), rng.gen_range(0..p.m));
                    if to.0 != victim && to.1 != victim && s.try_move(st, to) {
                        break;
                    }
                }
            }
        }
        2 if p.m >= 2 => {
            let i = rng.gen_range(0..p.m);
            let j = (i + rng.gen_range(1..p.m)) % p.m;
            if s.role_delta(i, j).is_some() {
                s.apply_roles(i, j);
            }
        }
        3 => {
            s.work += (k * p.m * p.m) as u64;
            if let Some(a) = configuration_start(p, rng) {
                s.reset(&a);
            }
        }
        _ => {
            // Restart: every stream at a random feasible place.
            for st in 0..k {
                for _ in 0..4 {
                    if s.try_move(st, (rng.gen_range(0..p.m), rng.gen_range(0..p.m))) {
                        break;
                    }
                }
            }
        }
    }
}

/// Iterated local search from `start` within `budget` work units; never
/// returns a worse plan than `start`.
pub fn local_search(p: &Problem, start: Vec<(usize, usize)>, budget: u64) -> Vec<(usize, usize)> {
    if start.is_empty() {
        return start;
    }
    let local: Vec<(usize, usize)> = start.iter().map(|&(x, _)| (x, x)).collect();
    let mut s = Search::new(p, start, budget);
    s.descend();
    let mut best = s.a.clone();
    let mut best_cost = s.cost();
    if super::eval::feasible(p, &local) {
        s.reset(&local);
        s.descend();
        let c = s.cost();
        if c < best_cost {
            best.clone_from(&s.a);
            best_cost = c;
        }
    }
    s.reset_to(&best, false);
    let small = p.k() * p.m * p.m <= RESTART_LIMIT;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_1234);
    while s.has_budget() {
        kick(&mut s, p, &mut rng, small);
        s.descend();
        let c = s.cost();
        if c < best_cost * (1.0 - 1e-12) {
            best.clone_from(&s.a);
            best_cost = c;
        } else {
            s.reset_to(&best, false);
        }
    }
    best
}

/// The improvement phase: iterated local search on the instance's budget, then
/// an exact polish on tiny instances.
pub fn improve(p: &Problem, start: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let best = local_search(p, start, work_budget(p.k(), p.m));
    let bits = p.k() as f64 * ((p.m * p.m) as f64).log2();
    if bits <= EXACT_BITS {
        if let Ok(opt) = super::exact::exact_from(p, Some(best.clone()), EXACT_NODES) {
            return opt;
        }
    }
    best
}
