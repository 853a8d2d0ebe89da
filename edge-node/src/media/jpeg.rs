//! JPEG crops and snapshots of frames, and crops received from other nodes.

use vidar_detectors::RgbFrame;
use vidar_protocol::messages::{Crop as WireCrop, CropEncoding};
use vidar_protocol::BBox;

/// Longest side of a snapshot, pixels.
pub const SNAPSHOT_MAX_SIDE: u32 = 128;

/// A small JPEG of the box `b` in `frame` (longest side ≤ [`SNAPSHOT_MAX_SIDE`]).
/// The whole person with a margin (10 % of the width on each side, 5 % of
/// the height above and below), so no head or feet are cut off.
pub fn snapshot_jpeg(frame: &RgbFrame<'_>, b: &BBox) -> Option<Vec<u8>> {
    let (mx, my) = (b.w * 0.10, b.h * 0.05);
    let wide = BBox {
        x: b.x - mx,
        y: b.y - my,
        w: b.w + 2.0 * mx,
        h: b.h + 2.0 * my,
    };
    crop_jpeg(frame, &wide, SNAPSHOT_MAX_SIDE, 85)
}

/// A JPEG of the box `b` in `frame`, scaled down so its longest side is at
/// most `max_side`, at `quality` (1-100).
pub fn crop_jpeg(frame: &RgbFrame<'_>, b: &BBox, max_side: u32, quality: u8) -> Option<Vec<u8>> {
    let c = b.clip(frame.width() as f32, frame.height() as f32);
    let (x0, y0) = (c.x as usize, c.y as usize);
    let (w, h) = (c.w as usize, c.h as usize);
    if w < 2 || h < 2 {
        return None;
    }
    let mut crop = Vec::with_capacity(w * h * 3);
    let data = frame.data();
    for y in y0..y0 + h {
        let row = data.get(y * frame.stride() + x0 * 3..y * frame.stride() + (x0 + w) * 3)?;
        crop.extend_from_slice(row);
    }
    let img = image::RgbImage::from_raw(w as u32, h as u32, crop)?;
    let scale = (max_side as f32 / w.max(h) as f32).min(1.0);
    let (tw, th) = (
        ((w as f32 * scale) as u32).max(1),
        ((h as f32 * scale) as u32).max(1),
    );
    let small = image::imageops::resize(&img, tw, th, image::imageops::FilterType::Triangle);
    let mut out = std::io::Cursor::new(Vec::new());
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    small.write_with_encoder(enc).ok()?;
    Some(out.into_inner())
}

/// Size of a crop of `bbox` scaled as [`crop_jpeg`] scales it.
pub fn jpeg_size(bbox: &BBox, max_side: u32) -> (u32, u32) {
    let (w, h) = (bbox.w.max(1.0), bbox.h.max(1.0));
    let scale = (max_side as f32 / w.max(h)).min(1.0);
    (((w * scale) as u32).max(1), ((h * scale) as u32).max(1))
}

/// Decodes a crop received from another node into RGB.
pub fn decode_crop(c: &WireCrop) -> Result<image::RgbImage, String> {
    match c.encoding {
        CropEncoding::Jpeg => {
            image::load_from_memory_with_format(&c.data, image::ImageFormat::Jpeg)
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("not a JPEG: {e}"))
        }
        CropEncoding::Rgb8 => image::RgbImage::from_raw(c.width, c.height, c.data.clone())
            .ok_or_else(|| {
                format!(
                    "{}x{} RGB needs {} bytes, got {}",
                    c.width,
                    c.height,
                    c.width as usize * c.height as usize * 3,
                    c.data.len()
                )
            }),
    }
}
