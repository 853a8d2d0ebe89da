//! Yen's K shortest simple paths by hop count (BFS as the spur search).

use std::collections::VecDeque;

use crate::cluster::Graph;

/// Fewest-hop path from `s` to `t` avoiding banned nodes and links; links as indices.
fn bfs(
    g: &Graph,
    s: usize,
    t: usize,
    node_ok: &[bool],
    link_ok: &dyn Fn(usize) -> bool,
) -> Option<Vec<usize>> {
    if s == t {
        return Some(Vec::new());
    }
    let mut prev: Vec<Option<(usize, usize)>> = vec![None; g.len()];
    let mut seen = vec![false; g.len()];
    seen[s] = true;
    let mut q = VecDeque::from([s]);
    while let Some(u) = q.pop_front() {
        for &(v, l) in &g.adj[u] {
            if seen[v] || !node_ok[v] || !link_ok(l) {
                continue;
            }
            seen[v] = true;
            prev[v] = Some((u, l));
            if v == t {
                let mut path = Vec::new();
                let mut cur = t;
                while let Some((p, l)) = prev[cur] {
                    path.push(l);
                    cur = p;
                }
                path.reverse();
                return Some(path);
            }
            q.push_back(v);
        }
    }
    None
}

/// Node sequence of a link path starting at `s`.
pub fn nodes_of(g: &Graph, s: usize, links: &[usize]) -> Vec<usize> {
    let mut out = vec![s];
    let mut cur = s;
    for &l in links {
        let (a, b) = g.ends[l];
        cur = if a == cur { b } else { a };
        out.push(cur);
    }
    out
}

/// Up to `k` loop-free paths from `s` to `t` over usable links, fewest hops
/// first (ties: first found), each as link indices. Empty when unreachable.
pub fn k_shortest_paths(
    g: &Graph,
    s: usize,
    t: usize,
    k: usize,
    link_ok: &dyn Fn(usize) -> bool,
) -> Vec<Vec<usize>> {
    let all = vec![true; g.len()];
    let Some(first) = bfs(g, s, t, &all, link_ok) else {
        return Vec::new();
    };
    let mut found = vec![first];
    let mut cands: Vec<Vec<usize>> = Vec::new();
    while found.len() < k {
        let last = found.last().expect("found is never empty").clone();
        let last_nodes = nodes_of(g, s, &last);
        for i in 0..last.len() {
            let spur = last_nodes[i];
            let root = &last[..i];
            let banned_links: Vec<usize> = found
                .iter()
                .filter(|p| p.len() > i && &p[..i] == root)
                .map(|p| p[i])
                .collect();
            let mut node_ok = vec![true; g.len()];
            for &n in &last_nodes[..i] {
                node_ok[n] = false;
            }
            let ok = |l: usize| link_ok(l) && !banned_links.contains(&l);
            if let Some(spur_path) = bfs(g, spur, t, &node_ok, &ok) {
                let mut p = root.to_vec();
                p.extend(spur_path);
                if !found.contains(&p) && !cands.contains(&p) {
                    cands.push(p);
                }
            }
        }
        if cands.is_empty() {
            break;
        }
        let best = (0..cands.len())
            .min_by_key(|&i| cands[i].len())
            .expect("cands is not empty");
        found.push(cands.remove(best));
    }
    found
}
