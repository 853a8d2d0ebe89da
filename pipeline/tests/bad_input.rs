//! Bad input gives a clear error and never a panic; live sources keep retrying.

mod common;

use common::*;
use std::io::Write;
use std::time::Duration;
use vidar_pipeline::camera::encode_scene_to_file;
use vidar_pipeline::{Ingest, IngestConfig, SceneSpec};
use vidar_protocol::StreamState;

#[test]
fn unparseable_urls_are_refused_at_start() {
    for url in [
        "rtsp://",
        "rtsp://cam:70000/x",
        "http://cam/x",
        "rtsp://ca m/x",
    ] {
        let err = Ingest::start(fast_config("c", url))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("invalid source URL") || err.contains("unsupported scheme"),
            "{url}: {err}"
        );
        assert!(err.contains("camera c"), "names the camera: {err}");
    }
}

#[test]
fn refused_connection_is_reported_and_retried() {
    let port = unused_port(); // nothing listens there
    let ingest = Ingest::start(fast_config(
        "crefuse",
        &format!("rtsp://127.0.0.1:{port}/x"),
    ))
    .expect("start");
    let st = wait_status(&ingest, Duration::from_secs(8), |s| {
        s.counters.reconnects >= 2
    });
    assert!(st.counters.reconnects >= 2, "keeps retrying: {st:?}");
    assert!(matches!(
        st.state,
        StreamState::BackingOff | StreamState::Connecting
    ));
    let err = st.last_error.unwrap_or_default();
    assert!(
        err.contains("Could not open resource") || err.contains("connect"),
        "{err}"
    );
}

#[test]
fn server_that_accepts_and_sends_nothing_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).ok();
        let end = std::time::Instant::now() + Duration::from_secs(12);
        while std::time::Instant::now() < end {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        held.len()
    });
    let mut cfg = fast_config("csilent", &format!("rtsp://127.0.0.1:{port}/x"));
    cfg.connect_timeout_ms = 1500;
    let ingest = Ingest::start(cfg).expect("start");
    let st = wait_status(&ingest, Duration::from_secs(8), |s| s.last_error.is_some());
    let err = st.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("no frame within 1500 ms")
            || err.contains("timeout")
            || err.contains("Timeout"),
        "{st:?}"
    );
    assert_eq!(st.counters.frames, 0);
    drop(ingest);
    assert!(
        holder.join().expect("holder") >= 1,
        "the client did connect"
    );
}

#[test]
fn file_that_is_not_video_fails_clearly() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("notes.mp4");
    std::fs::write(
        &path,
        b"this is not a video, just text pretending to be one\n".repeat(50),
    )
    .expect("write");
    let ingest = Ingest::start(fast_config("ctext", path.to_str().expect("utf8"))).expect("start");
    let st = wait_status(&ingest, Duration::from_secs(5), |s| {
        s.state == StreamState::Failed
    });
    assert_eq!(st.state, StreamState::Failed, "{st:?}");
    assert!(st.last_error.is_some_and(|e| !e.is_empty()));

    let missing = dir.path().join("missing.mkv");
    let ingest =
        Ingest::start(fast_config("cmiss", missing.to_str().expect("utf8"))).expect("start");
    let st = wait_status(&ingest, Duration::from_secs(5), |s| {
        s.state == StreamState::Failed
    });
    let err = st.last_error.unwrap_or_default();
    assert!(
        err.contains("no such file") && err.contains("missing.mkv"),
        "{err}"
    );
}

fn encoded_clip(dir: &std::path::Path, name: &str, frames: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    let spec = SceneSpec {
        width: 320,
        height: 240,
        fps: 30,
        ..Default::default()
    };
    encode_scene_to_file(&spec, frames, &path).expect("encode");
    path
}

fn run_file(id: &str, path: &std::path::Path) -> vidar_protocol::StreamStatus {
    let mut cfg = IngestConfig::new(cam(id), path.to_str().expect("utf8"));
    cfg.realtime = false;
    cfg.loop_file = false;
    cfg.queue_capacity = 256;
    let ingest = Ingest::start(cfg).expect("start");
    wait_status(&ingest, Duration::from_secs(20), |s| {
        matches!(s.state, StreamState::Stopped | StreamState::Failed)
    })
}

#[test]
fn truncated_h264_file_gives_the_frames_it_has() {
    let dir = tempfile::tempdir().expect("tmp");
    let full = encoded_clip(dir.path(), "full.h264", 90);
    let bytes = std::fs::read(&full).expect("read");
    let cut = dir.path().join("cut.h264");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).expect("write");
    let whole = run_file("cfull", &full);
    assert_eq!(whole.state, StreamState::Stopped, "{whole:?}");
    assert_eq!(whole.counters.frames, 90);
    let st = run_file("ccut", &cut);
    assert_eq!(st.state, StreamState::Stopped, "ends cleanly: {st:?}");
    assert!(st.counters.frames > 20 && st.counters.frames < 90, "{st:?}");

    // A truncated Matroska file as well.
    let mkv = encoded_clip(dir.path(), "full.mkv", 90);
    let bytes = std::fs::read(&mkv).expect("read");
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let st = run_file("cmkv", &cut);
    assert!(
        matches!(st.state, StreamState::Stopped | StreamState::Failed),
        "{st:?}"
    );
    assert!(st.counters.frames > 10, "{st:?}");
}

#[test]
fn corrupted_h264_file_is_decoded_around_the_damage() {
    let dir = tempfile::tempdir().expect("tmp");
    let full = encoded_clip(dir.path(), "clip.h264", 90);
    let mut bytes = std::fs::read(&full).expect("read");
    // Overwrite 10 % of the stream, in the middle, with pseudo-random garbage.
    let (a, b) = (bytes.len() * 4 / 10, bytes.len() / 2);
    let mut x: u32 = 12345;
    for byte in &mut bytes[a..b] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    let bad = dir.path().join("bad.h264");
    std::fs::File::create(&bad)
        .and_then(|mut f| f.write_all(&bytes))
        .expect("write");
    let st = run_file("ccorrupt", &bad);
    assert_eq!(st.state, StreamState::Stopped, "{st:?}");
    assert!(
        st.counters.frames >= 45,
        "frames before and after the damage: {st:?}"
    );
}

#[test]
fn invalid_config_names_every_problem() {
    let mut cfg = IngestConfig::new(cam("cbad"), "rtsp://host/x");
    cfg.queue_capacity = 0;
    cfg.width = Some(100);
    let err = Ingest::start(cfg)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("queue_capacity") && err.contains("height"),
        "{err}"
    );
}
