//! Adaptive detection rates (`[detection_rate]`) through the real loop: the
//! fake detector costs real time per frame (a sleep it reports as
//! inference), so the controller measures a real capacity and the cameras
//! really offer more than it.

use super::*;

/// One worker at 25 ms a frame (40 frames/s) and three 20 fps cameras (60
/// frames/s offered): the two empty cameras give up rate, the one with
/// people on screen keeps every frame, and no frame is lost.
#[test]
fn under_load_quiet_cameras_are_detected_less_often_and_the_busy_one_keeps_its_rate() {
    let (mut busy, s_busy) = Cam::new("street");
    let (mut yard, s_yard) = Cam::new("yard");
    let (mut gate, s_gate) = Cam::new("gate");
    let metrics: Vec<_> = [&s_busy, &s_yard, &s_gate]
        .iter()
        .map(|s| Arc::clone(&s.metrics))
        .collect();
    let lp = start_pool(vec![s_busy, s_yard, s_gate], 1, None, 1, 1, 1);
    lp.log.cost_us.store(25_000, Ordering::SeqCst);
    let t0 = t0();
    let began = Instant::now();
    let frames = 160u64;
    for i in 0..frames {
        let x = 20.0 + (i % 40) as f32 * 6.0;
        busy.send(t0, &[person(RED, x, 20.0), person(GREEN, 280.0 - x, 120.0)]);
        yard.send(t0, &[]);
        gate.send(t0, &[]);
        let next = began + Duration::from_millis(50 * (i + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let interval: Vec<u64> = metrics
        .iter()
        .map(|m| m.detection_interval.load(Ordering::SeqCst))
        .collect();
    assert_eq!(
        interval[0], 1,
        "the busy camera keeps every frame: {interval:?}"
    );
    assert!(
        interval[1] >= 2 && interval[2] >= 2,
        "the empty cameras are slowed: {interval:?}"
    );
    assert!(
        interval.iter().all(|&k| k <= 10),
        "never below 2 fps: {interval:?}"
    );
    for cam in [&busy, &yard, &gate] {
        until("every frame analysed", || lp.analysed(&cam.id) == frames);
    }
    let detected = metrics[0].detected.load(Ordering::SeqCst);
    assert_eq!(detected, frames, "every frame of the busy camera detected");
    assert!(
        metrics[1].detected.load(Ordering::SeqCst) < frames * 2 / 3,
        "the yard's frames were mostly tracked, not detected"
    );
    let _ = lp.finish();
}
