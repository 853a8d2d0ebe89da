//! Ingest from a real `vidar-camera` RTSP server on 127.0.0.1: frame counts,
//! timestamps, reconnect after the camera dies, slow consumers.

mod common;

use common::*;
use std::time::{Duration, Instant};
use vidar_pipeline::Ingest;
use vidar_protocol::StreamState;

#[test]
fn ingests_720p30_with_right_count_and_timestamps() {
    let _g = serial();
    let camera = CameraProc::start(0, &["cam=synthetic:?width=1280&height=720&fps=30&seed=3"]);
    let mut cfg = fast_config("c720", &camera.url("cam"));
    cfg.queue_capacity = 8;
    let ingest = Ingest::start(cfg).expect("start");
    let st = wait_status(&ingest, Duration::from_secs(10), |s| {
        s.state == StreamState::Streaming
    });
    assert_eq!(st.state, StreamState::Streaming, "{st:?}");
    // Skip the start-up burst, then measure 4 s of steady streaming.
    collect_for(&ingest, Duration::from_millis(500), |_| ());
    let bytes_before = ingest.status().counters.bytes;
    let frames = collect_for(&ingest, Duration::from_secs(4), |f| {
        (
            f.seq,
            f.pts,
            f.width,
            f.height,
            f.age(),
            f.pixels().len(),
            f.stride,
            f.layout,
        )
    });
    let n = frames.len() as f64;
    assert!(
        (100.0..=130.0).contains(&n),
        "expected ~120 frames in 4 s at 30 fps, got {n}"
    );
    // The encoded stream's bytes (RTP) are counted as they arrive: at
    // least a small packet per frame, at most five times the camera's 4
    // Mbit/s target.
    let bytes = ingest.status().counters.bytes - bytes_before;
    assert!(
        bytes as f64 > n * 100.0 && (bytes as f64) < 4.0 * 5.0 * 4e6 / 8.0,
        "{bytes} bytes in 4 s"
    );
    for w in frames.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].0 + 1,
            "sequence numbers are consecutive with a fast consumer"
        );
    }
    let mut deltas: Vec<f64> = frames
        .windows(2)
        .filter_map(|w| Some((w[1].1? - w[0].1?).as_secs_f64() * 1000.0))
        .collect();
    deltas.sort_by(f64::total_cmp);
    let median = deltas[deltas.len() / 2];
    assert!(
        (30.0..=36.7).contains(&median),
        "median pts step {median} ms, expected 33.3"
    );
    for (_, _, w, h, age, len, stride, layout) in &frames {
        assert_eq!((*w, *h), (1280, 720));
        // An RTSP camera is read in the decoder's own I420 by default
        // (`pixel_format = "auto"`): a full-width luma plane and two
        // half-size chroma planes, all inside the buffer.
        let vidar_pipeline::Layout::I420(planes) = layout else {
            panic!("RTSP frames are I420 by default, got {layout:?}");
        };
        assert!(*stride >= 1280 && planes.strides[1] >= 640 && planes.strides[2] >= 640);
        assert!(
            *len >= layout.needed(*stride, 720),
            "{len} bytes for {layout:?}"
        );
        assert!(
            *age < Duration::from_millis(1000),
            "capture-to-consumer age {age:?}"
        );
    }
    let st = ingest.status();
    assert_eq!(st.counters.reconnects, 0);
    assert_eq!(st.counters.dropped, 0, "a fast consumer loses nothing");
    assert!(st.decoder.is_some_and(|d| d.contains("dec")));
}

#[test]
fn resumes_after_camera_is_killed_and_restarted() {
    let _g = serial();
    let mount = "cam=synthetic:?width=320&height=240&fps=30";
    // The kernel picks the port; the camera comes back on the same one.
    let mut camera = CameraProc::start(0, &[mount]);
    let port = camera.port;
    let ingest = Ingest::start(fast_config("crecon", &camera.url("cam"))).expect("start");
    let st = wait_status(&ingest, Duration::from_secs(10), |s| s.counters.frames > 30);
    assert!(st.counters.frames > 30, "{st:?}");

    camera.kill();
    let st = wait_status(&ingest, Duration::from_secs(10), |s| {
        s.state != StreamState::Streaming
    });
    assert_ne!(
        st.state,
        StreamState::Streaming,
        "the loss is noticed: {st:?}"
    );
    assert!(st.last_error.is_some(), "the reason is reported: {st:?}");
    let before = st.counters.frames;

    std::thread::sleep(Duration::from_secs(1));
    let _camera = CameraProc::start(port, &[mount]);
    let st = wait_status(&ingest, Duration::from_secs(20), |s| {
        s.state == StreamState::Streaming && s.counters.frames > before + 30
    });
    assert_eq!(
        st.state,
        StreamState::Streaming,
        "ingest resumed by itself: {st:?}"
    );
    assert!(
        st.counters.reconnects >= 1,
        "the reconnect is counted: {st:?}"
    );
    // Sequence numbers continue across the reconnect.
    let f = ingest
        .recv_timeout(Duration::from_secs(2))
        .expect("frame after reconnect");
    assert!(f.seq >= before);
}

#[test]
fn slow_consumer_drops_frames_but_latency_and_memory_stay_flat() {
    let _g = serial();
    let camera = CameraProc::start(0, &["cam=synthetic:?width=640&height=360&fps=30"]);
    let mut cfg = fast_config("cslow", &camera.url("cam"));
    cfg.queue_capacity = 2;
    let ingest = Ingest::start(cfg).expect("start");
    let st = wait_status(&ingest, Duration::from_secs(10), |s| {
        s.state == StreamState::Streaming
    });
    assert_eq!(st.state, StreamState::Streaming);

    // A consumer that needs 150 ms per frame (~6.7 fps against 30 fps).
    let start = Instant::now();
    let mut ages = Vec::new();
    let mut rss = Vec::new();
    let mut max_depth = 0;
    while start.elapsed() < Duration::from_secs(9) {
        if let Some(f) = ingest.recv_timeout(Duration::from_millis(500)) {
            ages.push((start.elapsed(), f.age()));
            std::thread::sleep(Duration::from_millis(150));
        }
        max_depth = max_depth.max(ingest.status().queue_depth);
        if start.elapsed() > Duration::from_secs(2) {
            rss.push(rss_kib());
        }
    }
    let st = ingest.status();
    assert!(
        st.counters.dropped > 100,
        "frames the consumer could not take are dropped and counted: {st:?}"
    );
    assert!(max_depth <= 2, "queue bounded: {max_depth}");
    let early: Vec<_> = ages
        .iter()
        .filter(|(t, _)| *t < Duration::from_secs(3))
        .map(|a| a.1)
        .collect();
    let late: Vec<_> = ages
        .iter()
        .filter(|(t, _)| *t > Duration::from_secs(6))
        .map(|a| a.1)
        .collect();
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    assert!(!early.is_empty() && !late.is_empty());
    // Each frame waits at most queue capacity x consumer period, plus transport.
    assert!(
        max(&late) < Duration::from_millis(700),
        "late ages {late:?}"
    );
    assert!(
        max(&late) < max(&early) + Duration::from_millis(300),
        "latency does not build up: early {early:?} late {late:?}"
    );
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    assert!(
        last < first + 20_000,
        "RSS grew from {first} KiB to {last} KiB"
    );
}

#[test]
fn resolution_change_mid_stream_is_followed() {
    let _g = serial();
    let camera = CameraProc::start(0, &["cam=synthetic:?width=640&height=480&fps=30&switch=45"]);
    let ingest = Ingest::start(fast_config("cres", &camera.url("cam"))).expect("start");
    let sizes = collect_for(&ingest, Duration::from_secs(7), |f| {
        (
            f.width,
            f.height,
            f.pixels().len() >= f.stride * f.height as usize,
        )
    });
    assert!(
        sizes.iter().all(|s| s.2),
        "every frame's buffer matches its size"
    );
    assert!(sizes.contains(&(640, 480, true)), "full size seen");
    assert!(
        sizes.contains(&(320, 240, true)),
        "half size seen after the change"
    );
    let st = ingest.status();
    assert_eq!(st.state, StreamState::Streaming, "{st:?}");
}

#[test]
fn fixed_output_size_scales_every_frame() {
    let _g = serial();
    let camera = CameraProc::start(0, &["cam=synthetic:?width=640&height=480&fps=30&switch=30"]);
    let mut cfg = fast_config("cscale", &camera.url("cam"));
    cfg.width = Some(300);
    cfg.height = Some(200);
    let ingest = Ingest::start(cfg).expect("start");
    let sizes = collect_for(&ingest, Duration::from_secs(4), |f| (f.width, f.height));
    assert!(sizes.len() > 60, "{}", sizes.len());
    assert!(sizes.iter().all(|s| *s == (300, 200)), "{sizes:?}");
}

/// A 320 x 240 H.264 clip of a synthetic scene, `frames` frames at `fps`.
fn small_clip(dir: &std::path::Path, fps: u32, frames: u64) -> std::path::PathBuf {
    let clip = dir.join("clip.mkv");
    let spec = vidar_pipeline::SceneSpec {
        width: 320,
        height: 240,
        fps,
        ..Default::default()
    };
    vidar_pipeline::camera::encode_scene_to_file(&spec, frames, &clip).expect("encode");
    clip
}

#[test]
fn camera_loops_a_file_seamlessly() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let clip = small_clip(dir.path(), 30, 45);
    let camera = CameraProc::start(0, &[&format!("file={}", clip.display())]);
    let ingest = Ingest::start(fast_config("cfile", &camera.url("file"))).expect("start");
    let st = wait_status(&ingest, Duration::from_secs(10), |s| {
        s.state == StreamState::Streaming
    });
    assert_eq!(st.state, StreamState::Streaming, "{st:?}");
    let frames = collect_for(&ingest, Duration::from_secs(4), |f| (f.width, f.height));
    // 4 s at 30 fps is ~120 frames: the 45-frame clip looped without a break.
    assert!(frames.len() >= 100, "{} frames", frames.len());
    assert!(frames.iter().all(|s| *s == (320, 240)));
    assert_eq!(ingest.status().counters.reconnects, 0);
}

#[test]
fn camera_serves_a_non_h264_file_by_transcoding_it_once() {
    let _g = serial();
    let vtest = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
    assert!(
        std::path::Path::new(vtest).is_file(),
        "{vtest} missing: run deploy/setup.sh (Debian package opencv-doc)"
    );
    // vtest.avi is MPEG-4 part 2 at 10 fps; the camera re-encodes it to H.264.
    let camera = CameraProc::start(0, &[&format!("street={vtest}")]);
    let ingest = Ingest::start(fast_config("cvtest", &camera.url("street"))).expect("start");
    let st = wait_status(&ingest, Duration::from_secs(10), |s| {
        s.state == StreamState::Streaming
    });
    assert_eq!(st.state, StreamState::Streaming, "{st:?}");
    let frames = collect_for(&ingest, Duration::from_secs(3), |f| (f.width, f.height));
    assert!(
        (25..=35).contains(&frames.len()),
        "~10 fps: {} frames in 3 s",
        frames.len()
    );
    assert!(frames.iter().all(|s| *s == (768, 576)));
}

/// `at` on the monotonic clock GStreamer's system clock reads, ms.
fn monotonic_ms(at: Instant) -> f64 {
    use gstreamer::prelude::ClockExt;
    let now = Instant::now();
    let now_ms = gstreamer::SystemClock::obtain().time().nseconds() as f64 / 1e6;
    now_ms - now.saturating_duration_since(at).as_secs_f64() * 1000.0
}

#[test]
fn phased_mounts_send_on_the_cameras_clock_whenever_a_client_connects() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tmp");
    let clip = small_clip(dir.path(), 10, 30);
    let camera = CameraProc::start(
        0,
        &[
            &format!("a={}#phase=0.02", clip.display()),
            &format!("b={}#start=1#phase=0.07", clip.display()),
            "s=synthetic:?width=320&height=240&fps=10#phase=0.045",
        ],
    );
    // Where each frame left the decoder within the camera's 100 ms frame
    // period, less the mount's phase: transport and decoding only, a few ms,
    // on every connection (the stream restarts when its last client leaves).
    let mut seen = Vec::new();
    for connection in 0..2 {
        for (mount, phase_ms) in [("a", 20.0), ("b", 70.0), ("s", 45.0)] {
            let ingest = Ingest::start(fast_config(mount, &camera.url(mount))).expect("start");
            let st = wait_status(&ingest, Duration::from_secs(10), |s| {
                s.state == StreamState::Streaming
            });
            assert_eq!(st.state, StreamState::Streaming, "{st:?}");
            collect_for(&ingest, Duration::from_millis(500), |_| ());
            let mut late: Vec<f64> = collect_for(&ingest, Duration::from_secs(2), |f| {
                (monotonic_ms(f.decoded_at) - phase_ms).rem_euclid(100.0)
            });
            drop(ingest);
            assert!(late.len() >= 15, "{mount}: {} frames in 2 s", late.len());
            late.sort_by(f64::total_cmp);
            let median = late[late.len() / 2];
            seen.push((connection, mount, median));
            assert!(
                median < 20.0,
                "{mount}, connection {connection}: frames decoded {median:.1} ms past the \
                 mount's phase (median; all: {late:?})"
            );
        }
    }
    eprintln!("median ms past the phase: {seen:?}");
}
