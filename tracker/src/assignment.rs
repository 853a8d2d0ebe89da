//! Optimal assignment (linear sum assignment) on rectangular cost matrices.
//!
//! Our own implementation of the shortest-augmenting-path form of
//! Jonker-Volgenant (Crouse, "On implementing 2D rectangular assignment
//! algorithms", IEEE TAES 2016) — the algorithm behind SciPy's
//! `linear_sum_assignment`, mirrored step for step (including its tie
//! breaking), so our scoring agrees with `motmetrics` pair for pair.
//!
//! Why not a crate: `pathfinding::kuhn_munkres` needs integer (`Ord`) weights
//! and square-or-wide matrices, and `lapjv` needs square `ndarray` matrices;
//! both would still need the gating and the decomposition below, which is
//! where the speed comes from. The solver is ~150 lines and tested against
//! brute force (proptest).
//!
//! Tracking cost matrices are sparse once gated: a detection can only match
//! the few tracks around it. [`solve_gated`] and [`solve_max_matching`] split
//! the bipartite graph of allowed pairs into connected components and solve
//! each on its own, so 200 people per frame cost about as much as 200 tiny
//! problems rather than one 200x200 one.
//!
//! This module must not know about tracks or boxes: it sees numbers only.

/// A dense row-major cost matrix. Non-finite entries (`f64::INFINITY`, NaN)
/// mark pairs that may not be matched.
#[derive(Debug, Clone, PartialEq)]
pub struct CostMatrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl CostMatrix {
    /// A `rows x cols` matrix with every pair forbidden.
    pub fn forbidden(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![f64::INFINITY; rows * cols],
        }
    }

    /// A matrix from row-major data; `None` if the length is not `rows * cols`.
    pub fn from_row_major(rows: usize, cols: usize, data: Vec<f64>) -> Option<Self> {
        (data.len() == rows * cols).then_some(Self { rows, cols, data })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The cost of pair `(r, c)`.
    pub fn get(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    /// Sets the cost of pair `(r, c)`.
    pub fn set(&mut self, r: usize, c: usize, value: f64) {
        self.data[r * self.cols + c] = value;
    }

    /// Resizes to `rows x cols` with every pair forbidden, reusing the allocation.
    pub fn reset(&mut self, rows: usize, cols: usize) {
        self.rows = rows;
        self.cols = cols;
        self.data.clear();
        self.data.resize(rows * cols, f64::INFINITY);
    }

    /// The finite entries as `(row, col, cost)`.
    fn entries(&self) -> Vec<(usize, usize, f64)> {
        let mut out = Vec::new();
        for r in 0..self.rows {
            for c in 0..self.cols {
                let v = self.get(r, c);
                if v.is_finite() {
                    out.push((r, c, v));
                }
            }
        }
        out
    }
}

/// The result of an assignment: matched `(row, col)` pairs sorted by row,
/// and the rows and columns left unmatched (ascending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Matched `(row, col)` pairs, ascending by row.
    pub matches: Vec<(usize, usize)>,
    /// Rows without a match, ascending.
    pub unmatched_rows: Vec<usize>,
    /// Columns without a match, ascending.
    pub unmatched_cols: Vec<usize>,
}

impl Assignment {
    fn from_matches(mut matches: Vec<(usize, usize)>, rows: usize, cols: usize) -> Self {
        matches.sort_unstable();
        let mut row_used = vec![false; rows];
        let mut col_used = vec![false; cols];
        for &(r, c) in &matches {
            row_used[r] = true;
            col_used[c] = true;
        }
        Self {
            matches,
            unmatched_rows: (0..rows).filter(|&r| !row_used[r]).collect(),
            unmatched_cols: (0..cols).filter(|&c| !col_used[c]).collect(),
        }
    }
}

/// Minimum-cost assignment where a pair may match only if its cost is
/// strictly below `threshold`, and leaving a row or column unmatched costs
/// `threshold / 2` each (the `cost_limit` semantics of `lapjv` used by
/// SORT/ByteTrack). Equivalently: minimises `Σ (cost - threshold)` over
/// matched pairs, so a pair is worth matching exactly when it is cheaper
/// than the threshold.
pub fn solve_gated(cost: &CostMatrix, threshold: f64) -> Assignment {
    solve_gated_sparse(cost.rows, cost.cols, &cost.entries(), threshold)
}

/// [`solve_gated`] on a sparse matrix given as `(row, col, cost)` entries
/// (at most one per pair; pairs not listed are forbidden). Runs in time
/// proportional to the entries plus the squares of the connected
/// components, never `rows x cols`: what the tracker uses every frame.
pub fn solve_gated_sparse(
    rows: usize,
    cols: usize,
    entries: &[(usize, usize, f64)],
    threshold: f64,
) -> Assignment {
    let allowed: Vec<(usize, usize, f64)> = entries
        .iter()
        .copied()
        .filter(|&(r, c, v)| r < rows && c < cols && v.is_finite() && v < threshold)
        .collect();
    // Fast path for the common case in tracking: a row and a column that
    // only see each other form a 1x1 component, matched directly.
    let mut row_degree = vec![0_u32; rows];
    let mut col_degree = vec![0_u32; cols];
    for &(r, c, _) in &allowed {
        row_degree[r] += 1;
        col_degree[c] += 1;
    }
    let mut matches = Vec::new();
    let mut rest = Vec::new();
    for &(r, c, v) in &allowed {
        if row_degree[r] == 1 && col_degree[c] == 1 {
            matches.push((r, c));
        } else {
            rest.push((r, c, v));
        }
    }
    for comp in components(rows, cols, &rest) {
        solve_component_gated(&comp, threshold, &mut matches);
    }
    Assignment::from_matches(matches, rows, cols)
}

/// Maximum-cardinality assignment over finite entries, and among those the
/// one of minimum total cost (the semantics `motmetrics` uses for CLEAR-MOT).
pub fn solve_max_matching(cost: &CostMatrix) -> Assignment {
    let mut matches = Vec::new();
    for comp in components(cost.rows, cost.cols, &cost.entries()) {
        let (nr, nc) = (comp.rows.len(), comp.cols.len());
        if nr == 1 && nc == 1 {
            matches.push((comp.rows[0], comp.cols[0]));
            continue;
        }
        let max_abs = comp.entries.iter().fold(0.0_f64, |m, e| m.max(e.2.abs()));
        // Same large constant as motmetrics' `add_expensive_edges`: one
        // forbidden pair always costs more than any feasible alternative.
        let large = 2.0 * nr.min(nc) as f64 * (max_abs + 1.0) + 1.0;
        let mut sub = vec![large; nr * nc];
        let mut feasible = vec![false; nr * nc];
        for &(i, j, v) in &comp.entries {
            sub[i * nc + j] = v;
            feasible[i * nc + j] = true;
        }
        for (i, j) in lsap_dense(&sub, nr, nc) {
            if feasible[i * nc + j] {
                matches.push((comp.rows[i], comp.cols[j]));
            }
        }
    }
    Assignment::from_matches(matches, cost.rows, cost.cols)
}

/// One connected component of the graph of allowed pairs, with its entries
/// in local indices (`rows[i]`, `cols[j]` give the global ones).
#[derive(Debug)]
struct Component {
    rows: Vec<usize>,
    cols: Vec<usize>,
    entries: Vec<(usize, usize, f64)>,
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Connected components of the bipartite graph whose edges are `entries`
/// (rows are nodes `0..rows`, columns `rows..rows+cols`). Rows and columns
/// without an entry are left out: they can only stay unmatched.
fn components(rows: usize, cols: usize, entries: &[(usize, usize, f64)]) -> Vec<Component> {
    let mut parent: Vec<usize> = (0..rows + cols).collect();
    for &(r, c, _) in entries {
        let (a, b) = (find(&mut parent, r), find(&mut parent, rows + c));
        if a != b {
            parent[a.max(b)] = a.min(b);
        }
    }
    const NONE: usize = usize::MAX;
    let mut comp_of_root = vec![NONE; rows + cols];
    let mut local = vec![NONE; rows + cols];
    let mut comps: Vec<Component> = Vec::new();
    for &(r, c, v) in entries {
        let root = find(&mut parent, r);
        if comp_of_root[root] == NONE {
            comp_of_root[root] = comps.len();
            comps.push(Component {
                rows: Vec::new(),
                cols: Vec::new(),
                entries: Vec::new(),
            });
        }
        let comp = &mut comps[comp_of_root[root]];
        if local[r] == NONE {
            local[r] = comp.rows.len();
            comp.rows.push(r);
        }
        if local[rows + c] == NONE {
            local[rows + c] = comp.cols.len();
            comp.cols.push(c);
        }
        comp.entries.push((local[r], local[rows + c], v));
    }
    // Ascending global order inside each component, so ties break as in a
    // solve of the whole matrix (SciPy scans columns in index order).
    for comp in &mut comps {
        let mut row_order: Vec<usize> = (0..comp.rows.len()).collect();
        row_order.sort_unstable_by_key(|&i| comp.rows[i]);
        let mut col_order: Vec<usize> = (0..comp.cols.len()).collect();
        col_order.sort_unstable_by_key(|&j| comp.cols[j]);
        let mut new_row = vec![0; comp.rows.len()];
        for (new, &old) in row_order.iter().enumerate() {
            new_row[old] = new;
        }
        let mut new_col = vec![0; comp.cols.len()];
        for (new, &old) in col_order.iter().enumerate() {
            new_col[old] = new;
        }
        comp.rows.sort_unstable();
        comp.cols.sort_unstable();
        for e in &mut comp.entries {
            *e = (new_row[e.0], new_col[e.1], e.2);
        }
    }
    comps
}

/// Solves one component of [`solve_gated`] by adding one private "stay
/// unmatched" column per row, at cost `threshold`.
fn solve_component_gated(comp: &Component, threshold: f64, out: &mut Vec<(usize, usize)>) {
    let (nr, nc) = (comp.rows.len(), comp.cols.len());
    if nr == 1 && nc == 1 {
        // Allowed by construction of the component.
        out.push((comp.rows[0], comp.cols[0]));
        return;
    }
    let width = nc + nr;
    // Any solution using a forbidden pair costs more than leaving every row
    // unmatched (nr * threshold), so it is never optimal.
    let max_abs = comp
        .entries
        .iter()
        .fold(threshold.abs(), |m, e| m.max(e.2.abs()));
    let large = 2.0 * (nr as f64 + 1.0) * (max_abs + 1.0) + 1.0;
    let mut sub = vec![large; nr * width];
    for &(i, j, v) in &comp.entries {
        sub[i * width + j] = v;
    }
    for i in 0..nr {
        sub[i * width + nc + i] = threshold;
    }
    for (i, j) in lsap_dense(&sub, nr, width) {
        if j < nc && sub[i * width + j] < threshold {
            out.push((comp.rows[i], comp.cols[j]));
        }
    }
}

/// Dense rectangular linear sum assignment on finite costs: assigns
/// `min(nr, nc)` pairs of minimum total cost. Returns `(row, col)` pairs.
///
/// Mirrors SciPy's `rectangular_lsap.cpp` (tall matrices are transposed,
/// columns scanned in the same order, same tie breaking).
pub(crate) fn lsap_dense(cost: &[f64], nr: usize, nc: usize) -> Vec<(usize, usize)> {
    if nr == 0 || nc == 0 {
        return Vec::new();
    }
    if nr > nc {
        let mut t = vec![0.0; nr * nc];
        for r in 0..nr {
            for c in 0..nc {
                t[c * nr + r] = cost[r * nc + c];
            }
        }
        let mut pairs: Vec<(usize, usize)> = lsap_wide(&t, nc, nr)
            .into_iter()
            .map(|(c, r)| (r, c))
            .collect();
        pairs.sort_unstable();
        return pairs;
    }
    lsap_wide(cost, nr, nc)
}

/// Shortest augmenting path LSAP for `nr <= nc`.
fn lsap_wide(cost: &[f64], nr: usize, nc: usize) -> Vec<(usize, usize)> {
    const NONE: usize = usize::MAX;
    let mut u = vec![0.0_f64; nr];
    let mut v = vec![0.0_f64; nc];
    let mut shortest = vec![f64::INFINITY; nc];
    let mut path = vec![NONE; nc];
    let mut col4row = vec![NONE; nr];
    let mut row4col = vec![NONE; nc];
    let mut sr = vec![false; nr];
    let mut sc = vec![false; nc];
    let mut remaining = vec![0_usize; nc];

    for cur_row in 0..nr {
        let mut min_val = 0.0_f64;
        let mut i = cur_row;
        for (it, slot) in remaining.iter_mut().enumerate() {
            *slot = nc - it - 1;
        }
        let mut num_remaining = nc;
        sr.fill(false);
        sc.fill(false);
        shortest.fill(f64::INFINITY);
        let mut sink = NONE;
        while sink == NONE {
            let mut index = NONE;
            let mut lowest = f64::INFINITY;
            sr[i] = true;
            let row = &cost[i * nc..(i + 1) * nc];
            for (it, &j) in remaining[..num_remaining].iter().enumerate() {
                let r = min_val + row[j] - u[i] - v[j];
                if r < shortest[j] {
                    path[j] = i;
                    shortest[j] = r;
                }
                if shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == NONE) {
                    lowest = shortest[j];
                    index = it;
                }
            }
            min_val = lowest;
            if index == NONE {
                // Only reachable with non-finite costs, which callers replace.
                return Vec::new();
            }
            let j = remaining[index];
            if row4col[j] == NONE {
                sink = j;
            } else {
                i = row4col[j];
            }
            sc[j] = true;
            num_remaining -= 1;
            remaining[index] = remaining[num_remaining];
        }
        u[cur_row] += min_val;
        for r in 0..nr {
            if sr[r] && r != cur_row {
                u[r] += min_val - shortest[col4row[r]];
            }
        }
        for c in 0..nc {
            if sc[c] {
                v[c] -= min_val - shortest[c];
            }
        }
        let mut j = sink;
        loop {
            let r = path[j];
            row4col[j] = r;
            std::mem::swap(&mut col4row[r], &mut j);
            if r == cur_row {
                break;
            }
        }
    }
    col4row.into_iter().enumerate().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every partial injective map rows -> cols over allowed pairs.
    fn all_matchings(
        cost: &CostMatrix,
        allowed: &dyn Fn(f64) -> bool,
        row: usize,
        used: &mut Vec<bool>,
        current: &mut Vec<(usize, usize)>,
        out: &mut Vec<Vec<(usize, usize)>>,
    ) {
        if row == cost.rows() {
            out.push(current.clone());
            return;
        }
        all_matchings(cost, allowed, row + 1, used, current, out);
        for c in 0..cost.cols() {
            if !used[c] && allowed(cost.get(row, c)) {
                used[c] = true;
                current.push((row, c));
                all_matchings(cost, allowed, row + 1, used, current, out);
                current.pop();
                used[c] = false;
            }
        }
    }

    fn matrices() -> impl Strategy<Value = CostMatrix> {
        (0usize..=5, 0usize..=5).prop_flat_map(|(r, c)| {
            prop::collection::vec(
                prop_oneof![
                    4 => (0u32..100).prop_map(|v| f64::from(v) / 100.0),
                    1 => Just(f64::INFINITY),
                ],
                r * c,
            )
            .prop_map(move |data| CostMatrix::from_row_major(r, c, data).expect("sized"))
        })
    }

    fn check_consistent(a: &Assignment, rows: usize, cols: usize) {
        let mut seen_r = vec![false; rows];
        let mut seen_c = vec![false; cols];
        for &(r, c) in &a.matches {
            assert!(!seen_r[r] && !seen_c[c], "row or column used twice");
            seen_r[r] = true;
            seen_c[c] = true;
        }
        assert_eq!(a.matches.len() + a.unmatched_rows.len(), rows);
        assert_eq!(a.matches.len() + a.unmatched_cols.len(), cols);
    }

    proptest! {
        #[test]
        fn gated_matches_brute_force(cost in matrices(), thr_pct in 1u32..=100) {
            let thr = f64::from(thr_pct) / 100.0;
            let allowed = |v: f64| v.is_finite() && v < thr;
            let mut all = Vec::new();
            all_matchings(&cost, &allowed, 0, &mut vec![false; cost.cols()], &mut Vec::new(), &mut all);
            let objective = |m: &[(usize, usize)]| m.iter().map(|&(r, c)| cost.get(r, c) - thr).sum::<f64>();
            let best = all.iter().map(|m| objective(m)).fold(f64::INFINITY, f64::min);
            let got = solve_gated(&cost, thr);
            check_consistent(&got, cost.rows(), cost.cols());
            prop_assert!(got.matches.iter().all(|&(r, c)| allowed(cost.get(r, c))));
            prop_assert!((objective(&got.matches) - best).abs() < 1e-9,
                "got {:?} = {}, best {}", got.matches, objective(&got.matches), best);
        }

        #[test]
        fn sparse_entries_give_the_dense_answer(cost in matrices(), thr_pct in 1u32..=100) {
            let thr = f64::from(thr_pct) / 100.0;
            let entries = cost.entries();
            prop_assert_eq!(
                solve_gated_sparse(cost.rows(), cost.cols(), &entries, thr),
                solve_gated(&cost, thr)
            );
            // Order of entries does not matter.
            let reversed: Vec<_> = entries.iter().rev().copied().collect();
            let a = solve_gated_sparse(cost.rows(), cost.cols(), &reversed, thr);
            let objective = |m: &[(usize, usize)]| m.iter().map(|&(r, c)| cost.get(r, c) - thr).sum::<f64>();
            prop_assert!((objective(&a.matches) - objective(&solve_gated(&cost, thr).matches)).abs() < 1e-9);
        }

        #[test]
        fn max_matching_matches_brute_force(cost in matrices()) {
            let allowed = |v: f64| v.is_finite();
            let mut all = Vec::new();
            all_matchings(&cost, &allowed, 0, &mut vec![false; cost.cols()], &mut Vec::new(), &mut all);
            let best_len = all.iter().map(Vec::len).max().unwrap_or(0);
            let sum = |m: &[(usize, usize)]| m.iter().map(|&(r, c)| cost.get(r, c)).sum::<f64>();
            let best_sum = all.iter().filter(|m| m.len() == best_len).map(|m| sum(m)).fold(f64::INFINITY, f64::min);
            let got = solve_max_matching(&cost);
            check_consistent(&got, cost.rows(), cost.cols());
            prop_assert_eq!(got.matches.len(), best_len);
            if best_len > 0 {
                prop_assert!((sum(&got.matches) - best_sum).abs() < 1e-9);
            }
        }

        #[test]
        fn dense_solver_is_optimal_on_full_matrices(
            (r, c, data) in (1usize..=5, 1usize..=5).prop_flat_map(|(r, c)|
                (Just(r), Just(c), prop::collection::vec(-50i32..50, r * c)))
        ) {
            let data: Vec<f64> = data.into_iter().map(f64::from).collect();
            let cost = CostMatrix::from_row_major(r, c, data.clone()).expect("sized");
            let mut all = Vec::new();
            all_matchings(&cost, &|v: f64| v.is_finite(), 0, &mut vec![false; c], &mut Vec::new(), &mut all);
            let best = all.iter().filter(|m| m.len() == r.min(c))
                .map(|m| m.iter().map(|&(i, j)| cost.get(i, j)).sum::<f64>())
                .fold(f64::INFINITY, f64::min);
            let got = lsap_dense(&data, r, c);
            prop_assert_eq!(got.len(), r.min(c));
            let total: f64 = got.iter().map(|&(i, j)| cost.get(i, j)).sum();
            prop_assert!((total - best).abs() < 1e-9);
        }
    }

    #[test]
    fn gated_leaves_expensive_pairs_unmatched() {
        let cost = CostMatrix::from_row_major(2, 2, vec![0.1, 0.9, 0.9, 0.95]).expect("sized");
        let a = solve_gated(&cost, 0.8);
        assert_eq!(a.matches, vec![(0, 0)]);
        assert_eq!(a.unmatched_rows, vec![1]);
        assert_eq!(a.unmatched_cols, vec![1]);
    }

    #[test]
    fn empty_inputs() {
        let a = solve_gated(&CostMatrix::forbidden(0, 3), 0.5);
        assert!(a.matches.is_empty());
        assert_eq!(a.unmatched_cols, vec![0, 1, 2]);
        let b = solve_max_matching(&CostMatrix::forbidden(2, 0));
        assert_eq!(b.unmatched_rows, vec![0, 1]);
    }
}
