//! The static street behind a composite scene: an image file, or the
//! per-pixel median of frames spread over a video (which removes the people
//! walking in it). Decoding a video uses GStreamer; the median itself and the
//! rest of the scene do not, so tests pass a buffer in.

use super::CompositeError;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::path::Path;

/// Image extensions loaded as a still background rather than decoded as video.
const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "ppm", "bmp"];
/// No frame for this long while decoding the background video means it is broken.
const DECODE_STALL_MS: u64 = 20_000;

/// A packed RGB background; its size is the frame size of the scene.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Background {
    /// Width, pixels (even).
    pub width: u32,
    /// Height, pixels (even).
    pub height: u32,
    /// Packed RGB, `width * 3` bytes a row.
    pub rgb: Vec<u8>,
}

impl Background {
    /// Wraps a packed RGB buffer; sides must be even (for I420 encoding) and
    /// in 16..=7680.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Background, String> {
        for (name, v) in [("width", width), ("height", height)] {
            if !(16..=7680).contains(&v) || v % 2 != 0 {
                return Err(format!("{name} {v} must be even and in 16..=7680"));
            }
        }
        if rgb.len() != width as usize * height as usize * 3 {
            return Err(format!(
                "{} bytes for {width}x{height} RGB (expected {})",
                rgb.len(),
                width as usize * height as usize * 3
            ));
        }
        Ok(Background { width, height, rgb })
    }

    /// A background of one colour.
    pub fn solid(width: u32, height: u32, colour: [u8; 3]) -> Result<Background, String> {
        Background::from_rgb(
            width,
            height,
            colour.repeat(width as usize * height as usize),
        )
    }

    /// The per-pixel median of equally sized packed RGB frames.
    pub fn median(width: u32, height: u32, frames: &[Vec<u8>]) -> Result<Background, String> {
        let len = width as usize * height as usize * 3;
        if frames.is_empty() || frames.iter().any(|f| f.len() != len) {
            return Err(format!(
                "median needs frames of {len} bytes, got {} frames",
                frames.len()
            ));
        }
        let mut out = vec![0u8; len];
        let mut values = vec![0u8; frames.len()];
        let mid = frames.len() / 2;
        for (i, o) in out.iter_mut().enumerate() {
            for (v, f) in values.iter_mut().zip(frames) {
                *v = f[i];
            }
            *o = *values.select_nth_unstable(mid).1;
        }
        Background::from_rgb(width, height, out)
    }

    /// Loads an image file, or the median of `frames` frames spread over a
    /// video file.
    pub fn load(path: &Path, frames: u32) -> Result<Background, CompositeError> {
        let err = |reason: String| CompositeError::Background {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(err(
                "no such file (give background=PATH: an image, or a video to take the median of)"
                    .into(),
            ));
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            let img = super::labels::load_image(path).map_err(|e| err(e.to_string()))?;
            // Crop to even sides, as the encoder needs.
            let (w, h) = (img.width & !1, img.height & !1);
            let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
            for row in img
                .rgb
                .chunks_exact(img.width as usize * 3)
                .take(h as usize)
            {
                rgb.extend_from_slice(&row[..w as usize * 3]);
            }
            return Background::from_rgb(w, h, rgb).map_err(err);
        }
        let (w, h, decoded) = decode_spread(path, frames).map_err(err)?;
        Background::median(w, h, &decoded).map_err(err)
    }
}

/// Decodes about `count` frames spread evenly over a video, as packed RGB
/// with even sides.
fn decode_spread(path: &Path, count: u32) -> Result<(u32, u32, Vec<Vec<u8>>), String> {
    gst::init().map_err(|e| format!("GStreamer failed to initialise: {e}"))?;
    let loc = path.to_string_lossy().replace('"', "\\\"");
    let desc = format!(
        "filesrc location=\"{loc}\" ! decodebin ! videoconvert ! videoscale ! \
         video/x-raw,format=RGB ! appsink name=sink sync=false max-buffers=4"
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let result = pull_spread(&pipeline, count);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn pull_spread(pipeline: &gst::Pipeline, count: u32) -> Result<(u32, u32, Vec<Vec<u8>>), String> {
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Paused)
        .map_err(|e| format!("cannot decode as video: {e}"))?;
    let bus = pipeline.bus().ok_or("no bus")?;
    // Wait for preroll to learn the duration.
    let _ = pipeline.state(gst::ClockTime::from_seconds(10));
    if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            return Err(format!("cannot decode as video: {}", e.error()));
        }
    }
    let duration = pipeline.query_duration::<gst::ClockTime>();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot decode as video: {e}"))?;
    let mut frames = Vec::new();
    let mut size = None;
    let mut step = 5u64;
    let mut skip = 0u64;
    let mut idle_ms = 0u64;
    while frames.len() < count as usize {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Err(format!("cannot decode as video: {}", e.error()));
            }
        }
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) else {
            if sink.is_eos() {
                break;
            }
            idle_ms += 200;
            if idle_ms >= DECODE_STALL_MS {
                return Err(format!("no frame for {} s", DECODE_STALL_MS / 1000));
            }
            continue;
        };
        idle_ms = 0;
        let info = sample
            .caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
            .ok_or("no video caps")?;
        if size.is_none() {
            let fps = info.fps();
            let total = match (duration, fps.numer(), fps.denom()) {
                (Some(d), n, dn) if n > 0 && dn > 0 => {
                    d.nseconds() as f64 / 1e9 * f64::from(n) / f64::from(dn)
                }
                _ => 0.0,
            };
            if total > 0.0 {
                step = ((total / f64::from(count)).floor() as u64).max(1);
            }
            size = Some((info.width() & !1, info.height() & !1));
        }
        let (w, h) = size.unwrap_or((0, 0));
        if (info.width() & !1, info.height() & !1) != (w, h) {
            return Err("frame size changes mid-video".into());
        }
        // Keep one frame, skip `step - 1`.
        if skip > 0 {
            skip -= 1;
            continue;
        }
        skip = step - 1;
        let buffer = sample.buffer().ok_or("sample without buffer")?;
        let map = buffer.map_readable().map_err(|e| e.to_string())?;
        let stride = info.stride().first().copied().unwrap_or(0).max(0) as usize;
        let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
        for y in 0..h as usize {
            let row = map
                .as_slice()
                .get(y * stride..y * stride + w as usize * 3)
                .ok_or("short video frame")?;
            rgb.extend_from_slice(row);
        }
        frames.push(rgb);
    }
    let (w, h) = size.ok_or("no video frames")?;
    if frames.len() < 3 {
        return Err(format!("only {} frames decoded, need 3", frames.len()));
    }
    Ok((w, h, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_removes_a_passer_by() {
        let bg = [50u8, 60, 70].repeat(16 * 16);
        let mut frames = vec![bg.clone(); 5];
        // A "person" on two of five frames, at different places.
        frames[1][0..30].fill(255);
        frames[3][300..360].fill(0);
        let m = Background::median(16, 16, &frames).expect("median");
        assert_eq!(m.rgb, bg);
        assert!(Background::median(16, 16, &[]).is_err());
        assert!(Background::from_rgb(15, 16, vec![0; 15 * 16 * 3]).is_err());
    }
}
