//! One pass of a video file through a real node, every frame analysed in
//! order (the ingest queue blocks, so nothing is dropped): what `bench
//! pipeline` times and `bench capacity`'s agreement observes.

use crate::config::EdgeConfig;
use crate::node;
use anyhow::{anyhow, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_protocol::StreamState;

/// The longest a pass may take.
const LIMIT: Duration = Duration::from_secs(1800);

/// A node named `name` with one camera reading `video` to its end as fast
/// as the node takes it, the raw SSD, `threads` intra-op threads, motion
/// gating and adaptive rates off, its database in the temporary directory.
/// Callers change what their run needs before building it.
pub(super) fn file_config(
    name: &str,
    video: &Path,
    threads: usize,
) -> Result<(EdgeConfig, PathBuf)> {
    let db = std::env::temp_dir().join(format!("vidar-{name}-{}.db", std::process::id()));
    let toml = format!(
        "node_id = \"{name}\"\ndatabase = \"{db}\"\nmetrics_addr = \"127.0.0.1:0\"\n\
         [models.runtime]\nintra_threads = {threads}\n[detector]\nmodel = \"ssd-mobilenet-v2-person\"\n\
         [[cameras]]\ncamera = \"{name}\"\nsource = \"{video}\"\nrealtime = false\nloop_file = false\n\
         queue_policy = \"block\"\nqueue_capacity = 4\n\
         [motion]\nenabled = false\n[detection_rate]\nadaptive = false\n",
        db = db.display(),
        video = video.display()
    );
    Ok((EdgeConfig::parse(&toml, &format!("bench {name}"))?, db))
}

/// What a pass did.
pub(super) struct FilePass {
    /// From the start of the analysis loop to its last frame analysed.
    pub(super) wall: Duration,
    /// Frames the camera decoded (all analysed).
    pub(super) decoded: u64,
    /// Frames its ingest queue dropped (0 with a blocking queue).
    pub(super) dropped: u64,
}

/// Runs `built` (from [`file_config`]) until its camera has reached the end
/// of the file and every decoded frame was analysed, calling `tick` about
/// every 100 ms meanwhile and until the loop has ended; then stops it and
/// removes `db`, whether the pass succeeded or not.
pub(super) fn play_file(built: node::Built, db: &Path, mut tick: impl FnMut()) -> Result<FilePass> {
    let (statuses, cams) = (Arc::clone(&built.statuses), built.cameras.clone());
    let stop = vidar_runtime::Shutdown::new();
    let (st, board) = (stop.clone(), Arc::clone(&statuses));
    let t0 = Instant::now();
    let analysis = built.analysis;
    let worker = std::thread::spawn(move || analysis.run_with_status(&st, &board));
    let analysed = || {
        cams.first()
            .map_or(0, |c| c.1.analysed.load(Ordering::Relaxed))
    };
    let outcome = loop {
        std::thread::sleep(Duration::from_millis(100));
        tick();
        let snap = statuses.snapshot();
        let Some((_, status)) = snap.first() else {
            continue;
        };
        if status.state == StreamState::Failed {
            break Err(anyhow!("ingest failed: {:?}", status.last_error));
        }
        if status.state == StreamState::Stopped && analysed() >= status.counters.frames {
            break Ok(FilePass {
                wall: t0.elapsed(),
                decoded: status.counters.frames,
                dropped: status.counters.dropped,
            });
        }
        if t0.elapsed() > LIMIT {
            break Err(anyhow!(
                "the video did not finish in {} min",
                LIMIT.as_secs() / 60
            ));
        }
    };
    stop.trigger("benchmark pass done");
    // The loop may still hand `tick`'s source work while it ends.
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        tick();
    }
    tick();
    let joined = worker.join().map_err(|_| anyhow!("analysis panicked"));
    super::harness::remove_db(db);
    joined?;
    outcome
}
