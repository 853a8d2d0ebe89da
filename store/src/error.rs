//! Errors of the store. Every variant names the database file it is about.

use std::path::PathBuf;

pub use vidar_protocol::record::InvalidRecord;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but is not an SQLite database, or its header is corrupt.
    #[error("{}: not a Vidar database (not SQLite, or its header is corrupt): {source}", path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// SQLite's complaint.
        source: rusqlite::Error,
    },
    /// A valid SQLite file that belongs to something else.
    #[error("{}: an SQLite database, but not Vidar's: {reason}", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// How we could tell.
        reason: String,
    },
    /// The database was written by a newer Vidar; this build will not touch it.
    #[error("{}: schema version {found} is newer than this build supports ({supported}); run a Vidar release that knows it", path.display())]
    TooNew {
        /// The file.
        path: PathBuf,
        /// `PRAGMA user_version` of the file.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// A read-only open of a database that still needs migrating.
    #[error("{}: schema version {found}, this build reads {expected}; open it with a Writer first to migrate", path.display())]
    NeedsMigration {
        /// The file.
        path: PathBuf,
        /// `PRAGMA user_version` of the file.
        found: u32,
        /// The version this build needs.
        expected: u32,
    },
    /// A migration failed; the database is left at its previous version.
    #[error("{}: migration to schema version {version} failed: {source}", path.display())]
    Migration {
        /// The file.
        path: PathBuf,
        /// The version being applied.
        version: u32,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// An SQLite call failed.
    #[error("{}: {context}: {source}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What the store was doing.
        context: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the store was doing.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A record broke a documented bound.
    #[error(transparent)]
    Invalid(#[from] InvalidRecord),
    /// A batch handed to `upsert_batch` is not a batch from `peer`.
    #[error("upsert batch from {peer}: {reason}")]
    BadBatch {
        /// The peer the batch was said to come from.
        peer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The writer thread has stopped (shut down, or failed); nothing more is accepted.
    #[error("{}: writer stopped: {reason}", path.display())]
    WriterStopped {
        /// The file.
        path: PathBuf,
        /// Why it stopped.
        reason: String,
    },
    /// `try_submit` found the writer's queue full; the record was not taken.
    #[error("{}: writer queue full ({capacity} messages)", path.display())]
    QueueFull {
        /// The file.
        path: PathBuf,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The writer configuration is unusable; every problem is listed.
    #[error("invalid store writer config: {0}")]
    Config(#[from] vidar_config::Invalid),
    /// SQLite's integrity check found damage.
    #[error("{}: damaged ({} problem(s), first: {}); restore it from a backup (docs/deploy.md)", path.display(), problems.len(), problems.first().map_or("", |p| p.as_str()))]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the check reported, at most 20 lines.
        problems: Vec<String>,
    },
}

pub(crate) fn sqlite<'a>(
    path: &'a std::path::Path,
    context: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        context,
        source,
    }
}
