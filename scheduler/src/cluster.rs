//! The cluster snapshot shared by every algorithm: nodes (capacity, memory) and
//! links (bandwidth), undirected or one-way. Also the indexed form the
//! algorithms work on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SchedError};

/// A node's name: non-empty, ASCII letters, digits, `-`, `_`, `.`, `:` only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// Validates and wraps a name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if ok {
            Ok(Self(name))
        } else {
            Err(SchedError::Invalid(vec![format!(
                "bad id {name:?}: use 1-128 of [A-Za-z0-9-_.:]"
            )]))
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = SchedError;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One edge node (or server) as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique name.
    pub id: NodeId,
    /// Compute capacity `PS`, work units per second (wu/s).
    pub capacity: f64,
    /// Memory the scheduler may fill, bytes (`Ravail`, or `Rmax` of an empty node).
    pub memory: u64,
}

/// A link between two nodes: undirected (both directions share its
/// bandwidth), or one-way from `a` to `b`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// One end (the sending end of a one-way link).
    pub a: NodeId,
    /// The other end (the receiving end of a one-way link).
    pub b: NodeId,
    /// Bandwidth in bytes/s: shared by both directions, or the one
    /// direction of a one-way link.
    pub bandwidth: f64,
    /// Carries bytes from `a` to `b` only (default false). A full-duplex
    /// access link is two one-way links, one each way: its upload and its
    /// download do not share a rate. Paths follow the direction; JSTSH,
    /// which needs a symmetric rate between nodes, refuses one-way links
    /// (give it `rates` instead).
    #[serde(default, skip_serializing_if = "is_false")]
    pub one_way: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Link {
    /// An undirected link.
    pub fn new(a: NodeId, b: NodeId, bandwidth: f64) -> Self {
        Self {
            a,
            b,
            bandwidth,
            one_way: false,
        }
    }

    /// A one-way link from `a` to `b`.
    pub fn one_way(a: NodeId, b: NodeId, bandwidth: f64) -> Self {
        Self {
            a,
            b,
            bandwidth,
            one_way: true,
        }
    }
}

/// A snapshot of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The nodes; their order is the index order used in plans' internals.
    pub nodes: Vec<Node>,
    /// The links: per pair of nodes, one undirected link or at most one
    /// one-way link each way; default none.
    #[serde(default)]
    pub links: Vec<Link>,
}

impl Cluster {
    /// Reports every problem at once: duplicate ids, bad numbers, dangling links.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if seen.insert(n.id.clone(), i).is_some() {
                out.push(format!("node {} appears twice", n.id));
            }
            if !(n.capacity.is_finite() && n.capacity > 0.0) {
                out.push(format!(
                    "node {}: capacity {} must be finite and > 0",
                    n.id, n.capacity
                ));
            }
        }
        if self.nodes.is_empty() {
            out.push("cluster has no nodes".into());
        }
        let mut pairs = HashMap::new();
        for l in &self.links {
            for end in [&l.a, &l.b] {
                if !seen.contains_key(end) {
                    out.push(format!("link {}-{}: unknown node {end}", l.a, l.b));
                }
            }
            if l.a == l.b {
                out.push(format!(
                    "link {}-{}: a link needs two different nodes",
                    l.a, l.b
                ));
            }
            if !(l.bandwidth.is_finite() && l.bandwidth > 0.0) {
                out.push(format!(
                    "link {}-{}: bandwidth {} must be finite and > 0",
                    l.a, l.b, l.bandwidth
                ));
            }
            // The directions each link carries: a pair has one undirected
            // link or at most one one-way link each way.
            let back = (!l.one_way).then_some((&l.b, &l.a));
            let mut twice = false;
            for way in std::iter::once((&l.a, &l.b)).chain(back) {
                twice |= pairs.insert(way, ()).is_some();
            }
            if twice {
                out.push(format!("link {}-{} appears twice", l.a, l.b));
            }
        }
        out
    }

    /// Validates and builds the indexed form.
    pub fn index(&self) -> Result<Graph> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(SchedError::Invalid(problems));
        }
        Ok(Graph::new(self))
    }

    /// The indexed form of a cluster whose [`Cluster::problems`] are known to be none.
    pub(crate) fn index_unchecked(&self) -> Graph {
        Graph::new(self)
    }
}

/// The cluster in index form: node `i` is `cluster.nodes[i]`, link `l` is `cluster.links[l]`.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Node index by id.
    pub index: BTreeMap<NodeId, usize>,
    /// Capacity per node (wu/s).
    pub capacity: Vec<f64>,
    /// Schedulable memory per node (bytes).
    pub memory: Vec<u64>,
    /// Link endpoints `(a, b)` by link index (a one-way link carries from
    /// `a` to `b`).
    pub ends: Vec<(usize, usize)>,
    /// Link bandwidth by link index (bytes/s).
    pub bandwidth: Vec<f64>,
    /// `adj[u]` = list of `(neighbour, link index)` reachable from `u`, in
    /// link order (deterministic).
    pub adj: Vec<Vec<(usize, usize)>>,
}

impl Graph {
    fn new(c: &Cluster) -> Self {
        let index: BTreeMap<NodeId, usize> = c
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        let mut adj = vec![Vec::new(); c.nodes.len()];
        let mut ends = Vec::with_capacity(c.links.len());
        for (l, link) in c.links.iter().enumerate() {
            let (a, b) = (index[&link.a], index[&link.b]);
            adj[a].push((b, l));
            if !link.one_way {
                adj[b].push((a, l));
            }
            ends.push((a, b));
        }
        Self {
            index,
            capacity: c.nodes.iter().map(|n| n.capacity).collect(),
            memory: c.nodes.iter().map(|n| n.memory).collect(),
            ends,
            bandwidth: c.links.iter().map(|l| l.bandwidth).collect(),
            adj,
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.capacity.len()
    }

    /// True when there are no nodes (never for a validated cluster).
    pub fn is_empty(&self) -> bool {
        self.capacity.is_empty()
    }

    /// Fewest-hop path from `s` to `t` as link indices (BFS, ties by link order),
    /// skipping links whose `usable` flag is false. `None` when unreachable.
    pub fn bfs_path(
        &self,
        s: usize,
        t: usize,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<Vec<usize>> {
        if s == t {
            return Some(Vec::new());
        }
        let mut prev: Vec<Option<(usize, usize)>> = vec![None; self.len()];
        let mut seen = vec![false; self.len()];
        seen[s] = true;
        let mut q = VecDeque::from([s]);
        while let Some(u) = q.pop_front() {
            for &(v, l) in &self.adj[u] {
                if seen[v] || !usable(l) {
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

    /// Rate between every pair of nodes: the bottleneck bandwidth of the widest
    /// path (`INFINITY` on the diagonal, 0 when unreachable). JSTSH's `R_ij`.
    ///
    /// A maximum spanning forest holds a widest path between every pair of
    /// nodes, so this is Kruskal's forest and one walk of it per node:
    /// O(E log E + n^2) instead of a bottleneck Dijkstra per node.
    pub fn widest_rates(&self) -> Vec<Vec<f64>> {
        let n = self.len();
        let mut order: Vec<usize> = (0..self.bandwidth.len()).collect();
        order.sort_by(|&a, &b| self.bandwidth[b].total_cmp(&self.bandwidth[a]));
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(parent: &mut [usize], mut u: usize) -> usize {
            while parent[u] != u {
                parent[u] = parent[parent[u]];
                u = parent[u];
            }
            u
        }
        let mut tree: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        for l in order {
            let (a, b) = self.ends[l];
            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
            if ra != rb {
                parent[ra] = rb;
                tree[a].push((b, self.bandwidth[l]));
                tree[b].push((a, self.bandwidth[l]));
            }
        }
        let mut r = vec![vec![0.0; n]; n];
        let mut stack = Vec::with_capacity(n);
        for (s, row) in r.iter_mut().enumerate() {
            row[s] = f64::INFINITY;
            stack.push(s);
            while let Some(u) = stack.pop() {
                for &(v, bw) in &tree[u] {
                    if row[v] == 0.0 && v != s {
                        row[v] = row[u].min(bw);
                        stack.push(v);
                    }
                }
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Bottleneck Dijkstra from every node: the reference for `widest_rates`.
    fn dijkstra_rates(g: &Graph) -> Vec<Vec<f64>> {
        let n = g.len();
        (0..n)
            .map(|s| {
                let mut best = vec![0.0f64; n];
                let mut done = vec![false; n];
                best[s] = f64::INFINITY;
                while let Some(u) = (0..n)
                    .filter(|&u| !done[u] && best[u] > 0.0)
                    .max_by(|&a, &b| best[a].total_cmp(&best[b]))
                {
                    done[u] = true;
                    for &(v, l) in &g.adj[u] {
                        best[v] = best[v].max(best[u].min(g.bandwidth[l]));
                    }
                }
                best
            })
            .collect()
    }

    proptest! {
        #[test]
        fn widest_rates_match_bottleneck_dijkstra(
            n in 1usize..12,
            links in prop::collection::vec((0usize..12, 0usize..12, 1.0f64..100.0), 0..30),
        ) {
            let nodes: Vec<Node> = (0..n)
                .map(|i| Node { id: NodeId::new(format!("n{i}")).expect("valid"), capacity: 1.0, memory: 1 })
                .collect();
            let mut seen = std::collections::BTreeSet::new();
            let links: Vec<Link> = links
                .into_iter()
                .map(|(a, b, bw)| (a % n, b % n, bw))
                .filter(|&(a, b, _)| a != b && seen.insert((a.min(b), a.max(b))))
                .map(|(a, b, bandwidth)| Link::new(nodes[a].id.clone(), nodes[b].id.clone(), bandwidth))
                .collect();
            let g = Cluster { nodes, links }.index().expect("valid cluster");
            prop_assert_eq!(g.widest_rates(), dijkstra_rates(&g));
        }
    }
}
