//! Vidar's placement algorithms, as specified in `docs/ALGORITHMS.md`.
//!
//! - [`jstsh`]: which node ingests each camera stream and where its re-ID runs
//!   (JSTSH with a local-search improvement phase; baselines NMNO, WMNO, NMWO).
//! - [`ents`]: streaming job DAGs over a multi-hop network (task allocation,
//!   Yen's K shortest paths, JRBA on a real LP, OTFS, OTFA; baselines LR, BR, TP).
//! - [`edgesplit`]: split federated training planning (Algorithm 6 with memory
//!   and exact bandwidth bisection; Vanilla FL, Adaptive FL, EdgeSplit-Fix) and
//!   the SplitPipe server model.
//! - [`sim`]: instance generators and discrete-event simulators for the
//!   published experiments.
//!
//! The crate is pure: no I/O, no clocks, no global state; randomness only through
//! seeded RNGs passed in. Every input type is serde-serialisable; the JSON form is
//! documented in `scheduler/README.md` and is the interface the master uses.

pub mod cluster;
pub mod edgesplit;
pub mod ents;
pub mod error;
pub mod jstsh;
pub mod sim;

pub use cluster::{Cluster, Link, Node, NodeId};
pub use error::{Result, SchedError};
