//! The crate's error type: what failed and with what input.

use thiserror::Error;

/// Everything a scheduler call can fail with.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SchedError {
    /// The instance breaks its own rules; every problem found is listed.
    #[error("invalid instance: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// No placement satisfies the memory (or reachability) constraints.
    #[error("no feasible placement: {0}")]
    Infeasible(String),
    /// The LP solver failed on a problem that should be solvable.
    #[error("LP solver failed on {what}: {message}")]
    Lp {
        /// Which LP (e.g. "JRBA with 12 flows").
        what: String,
        /// The solver's message.
        message: String,
    },
    /// An exact search would exceed its node budget.
    #[error("exact search too large: {0}")]
    TooLarge(String),
}

/// Result alias for the crate.
pub type Result<T> = std::result::Result<T, SchedError>;
