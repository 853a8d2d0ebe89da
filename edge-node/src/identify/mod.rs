//! Re-identification on its own dedicated thread, so that embedding crops of
//! new tracks overlaps with detecting the next frames instead of delaying them.
//!
//! Identity is decided per track, not per crop. The analysis thread moves a
//! frame (no pixel copy: the frame owns its decoded buffer) with the boxes of
//! the tracks whose crop in it is worth embedding (chosen by quality: size,
//! detection score, not truncated, not overlapping another person; again when
//! the view improves) to the worker; at most [`QUEUE`] such jobs wait, beyond
//! that the job is not sent and those tracks are tried again on a later frame.
//! The worker embeds the crops, keeps a quality-weighted mean per track, and
//! once a track has [`MIN_CROPS`] crops (or the analysis asks, for a track
//! that has been on screen a while) decides its identity from that mean in the
//! gallery (threshold, margin over the runner-up, never an identity held by a
//! concurrent track on the camera, never a physically impossible one; a
//! runner-up that is the best's own person minted twice does not count). A
//! track whose decision minted a new identity is not settled: its later views
//! are embedded too, and it joins a known identity when its mean matches one
//! at the confident threshold ([`worker`]'s `reconsider`). It
//! records new identities (with the model tag), keeps the track's best crop as
//! its snapshot, sends each (camera, track, identity) back, and when the
//! analysis reports the track ended, closes its appearance and folds its final
//! mean into the identity's prototypes.
//!
//! In a cluster the same worker also: sends the crops of a camera whose plan
//! names another node's re-ID service there (JPEG crops, within the plan's
//! bandwidth share, falling back to local embedding on timeout or refusal);
//! serves other nodes' crops; keeps the bounded replica of identities other
//! nodes announce; applies the master's merges; learns operators' splits
//! of its own sightings ([`corrections`]); and announces the identities it
//! mints. The gallery has one owner, this thread, so none of this locks.

#[cfg(test)]
mod collect_tests;
mod corrections;
mod handle;
mod jobs;
mod remote;
#[cfg(test)]
pub(crate) mod testing;
mod worker;

pub use handle::{Identifier, Inbox, ModelSwap};
pub use jobs::{ClusterReid, Identified, Job, RemoteDone, RemoteJob, TrackCrop};

pub use jobs::{MIN_CROPS, QUEUE, REMOTE_CROP_SIDE};
