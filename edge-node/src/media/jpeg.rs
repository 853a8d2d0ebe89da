//! JPEG crops and snapshots of frames, and crops received from other nodes.

use vidar_detectors::{Picture, Region};
use vidar_protocol::messages::{Crop as WireCrop, CropEncoding};
use vidar_protocol::BBox;

/// Longest side of a crop from another node that is decoded, pixels (they
/// send at most `REMOTE_CROP_SIDE`, 160; the embedder's input is 256x128).
pub const MAX_DECODED_SIDE: u32 = 1024;

/// Longest side of a snapshot, pixels.
pub const SNAPSHOT_MAX_SIDE: u32 = 128;

/// A small JPEG of the box `b` in `frame` (longest side ≤ [`SNAPSHOT_MAX_SIDE`]).
/// The whole person with a margin (10 % of the width on each side, 5 % of
/// the height above and below), so no head or feet are cut off.
pub fn snapshot_jpeg<'f>(frame: impl Into<Picture<'f>>, b: &BBox) -> Option<Vec<u8>> {
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
pub fn crop_jpeg<'f>(
    frame: impl Into<Picture<'f>>,
    b: &BBox,
    max_side: u32,
    quality: u8,
) -> Option<Vec<u8>> {
    let frame = frame.into();
    let c = b.clip(frame.width() as f32, frame.height() as f32);
    let (w, h) = (c.w as usize, c.h as usize);
    if w < 2 || h < 2 {
        return None;
    }
    // Whole pixels (the region's rounding leaves them as they are).
    let region = Region {
        x: f64::from(c.x.trunc()),
        y: f64::from(c.y.trunc()),
        w: w as f64,
        h: h as f64,
    };
    let mut crop = Vec::new();
    let (cw, ch) = frame.region_rgb(Some(region), &mut crop);
    let scale = (max_side as f32 / cw.max(ch) as f32).min(1.0);
    let (tw, th) = (
        ((cw as f32 * scale) as u32).max(1),
        ((ch as f32 * scale) as u32).max(1),
    );
    if (tw, th) == (cw, ch) {
        return encode_rgb(&crop, cw, ch, quality).ok();
    }
    let img = image::RgbImage::from_raw(cw, ch, crop)?;
    let small = image::imageops::resize(&img, tw, th, image::imageops::FilterType::Triangle);
    encode_rgb(small.as_raw(), tw, th, quality).ok()
}

/// Packed RGB (`width x height`, rows without padding) as a baseline JPEG at
/// `quality` (1-100), its chroma at half resolution both ways (4:2:0, as the
/// cameras' H.264 already is).
///
/// `jpeg-encoder` with its AVX2 path (chosen at run time) rather than the
/// `image` crate's encoder: 3x faster on vtest.avi's frames, and 4:2:0 makes
/// them 15 % smaller than `image`'s 4:4:4 (docs/benchmarks.md, "The camera
/// box profiled, not configured"; `cargo bench -p vidar-edge-node --bench jpeg`).
pub fn encode_rgb(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>, String> {
    let side = |side: u32| u16::try_from(side).ok().filter(|s| *s > 0);
    let (Some(w), Some(h)) = (side(width), side(height)) else {
        return Err(format!(
            "a JPEG is 1 to 65535 pixels a side, not {width}x{height}"
        ));
    };
    let needed = usize::from(w) * usize::from(h) * 3;
    if rgb.len() != needed {
        return Err(format!(
            "{width}x{height} RGB needs {needed} bytes, got {}",
            rgb.len()
        ));
    }
    let mut out = Vec::with_capacity(needed / 8);
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| format!("encoding a {width}x{height} JPEG: {e}"))?;
    Ok(out)
}

/// Decodes a JPEG that says it is `width x height` (from another node):
/// refused unless its header says the same size; the decoder's memory is
/// capped to that size, so a small file claiming a huge image is refused
/// before any pixel is allocated. The caller bounds the size.
pub fn decode_jpeg(data: &[u8], width: u32, height: u32) -> Result<image::RgbImage, String> {
    let (w, h) = vidar_protocol::messages::jpeg_size(data)
        .ok_or_else(|| "not a JPEG: no frame header".to_string())?;
    if (w, h) != (width, height) {
        return Err(format!(
            "the JPEG is {w}x{h}, the item says {width}x{height}"
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // RGB output plus the decoder's own buffers.
    limits.max_alloc = Some(u64::from(width) * u64::from(height) * 3 * 4 + (1 << 20));
    let mut r =
        image::ImageReader::with_format(std::io::Cursor::new(data), image::ImageFormat::Jpeg);
    r.limits(limits);
    r.decode()
        .map(|i| i.to_rgb8())
        .map_err(|e| format!("not a JPEG: {e}"))
}

/// Decodes a crop received from another node into RGB.
///
/// A crop is decoded only when its declared size is at most
/// [`MAX_DECODED_SIDE`] a side and, for a JPEG, its header says the same
/// size; the decoder's memory is capped to it. A small file claiming a huge
/// image is refused before any pixel is allocated.
pub fn decode_crop(c: &WireCrop) -> Result<image::RgbImage, String> {
    if c.width > MAX_DECODED_SIDE || c.height > MAX_DECODED_SIDE {
        return Err(format!(
            "{}x{} is larger than a person crop ({MAX_DECODED_SIDE} pixels a side at most)",
            c.width, c.height
        ));
    }
    match c.encoding {
        CropEncoding::Jpeg => decode_jpeg(&c.data, c.width, c.height),
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

#[cfg(test)]
mod tests {
    use super::*;
    use vidar_detectors::RgbFrame;
    use vidar_protocol::UnixMs;
    use vidar_protocol::{CameraId, TrackId};

    fn crop(data: Vec<u8>, width: u32, height: u32) -> WireCrop {
        WireCrop {
            camera: CameraId::new("c").expect("id"),
            track: TrackId(1),
            capture_ms: UnixMs(0),
            width,
            height,
            encoding: CropEncoding::Jpeg,
            data,
        }
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let px = vec![120u8; (w * h * 3) as usize];
        let frame = RgbFrame::packed(w, h, &px).expect("frame");
        let full = BBox {
            x: 0.0,
            y: 0.0,
            w: w as f32,
            h: h as f32,
        };
        crop_jpeg(frame, &full, w.max(h), 90).expect("jpeg")
    }

    #[test]
    fn pictures_encode_with_half_resolution_chroma_and_decode_close_to_themselves() {
        for (w, h) in [(640u32, 480u32), (33, 17), (1, 1)] {
            // Colour that changes smoothly, an edge, and grain in brightness,
            // like a camera's frame.
            let px: Vec<u8> = (0..w * h * 3)
                .map(|i| {
                    let (p, c) = (i / 3, i % 3);
                    let (x, y) = (p % w, p / w);
                    let edge = if x > w / 2 { 70 } else { 0 };
                    let colour = (x * (c + 1) / 8 + y * (3 - c) / 8) % 120;
                    (colour + edge + (p * 7) % 5 + 20) as u8
                })
                .collect();
            let jpeg = encode_rgb(&px, w, h, 80).expect("encodes");
            let sof = jpeg
                .windows(2)
                .position(|m| m == [0xFF, 0xC0])
                .expect("a baseline JPEG");
            // SOF0: length (2), precision (1), height, width (2 each), three
            // components of (id, sampling, table): luma 2x2, chroma 1x1.
            assert_eq!(jpeg[sof + 9], 3, "{w}x{h}: three components");
            let sampling: Vec<u8> = (0..3).map(|k| jpeg[sof + 11 + 3 * k]).collect();
            assert_eq!(sampling, [0x22, 0x11, 0x11], "{w}x{h}");
            let back = decode_jpeg(&jpeg, w, h).expect("decodes at its size");
            let mse = px
                .iter()
                .zip(back.as_raw())
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum::<f64>()
                / px.len() as f64;
            let psnr = 10.0 * (255.0f64.powi(2) / mse.max(1e-9)).log10();
            assert!(psnr > 30.0, "{w}x{h}: PSNR {psnr:.1} dB");
        }
    }

    #[test]
    fn pictures_a_jpeg_cannot_hold_are_refused_and_named() {
        let e = encode_rgb(&[], 0, 4, 80).expect_err("no width");
        assert!(e.contains("0x4"), "{e}");
        let e = encode_rgb(&[0; 3], 70_000, 1, 80).expect_err("too wide");
        assert!(e.contains("70000x1"), "{e}");
        let e = encode_rgb(&[0; 10], 2, 2, 80).expect_err("short");
        assert!(e.contains("needs 12 bytes, got 10"), "{e}");
    }

    #[test]
    fn a_crop_is_decoded_only_at_its_declared_size() {
        let ok = decode_crop(&crop(jpeg(40, 100), 40, 100)).expect("decodes");
        assert_eq!(ok.dimensions(), (40, 100));
        let e = decode_crop(&crop(jpeg(40, 100), 40, 90)).expect_err("size differs");
        assert!(e.contains("40x100") && e.contains("40x90"), "{e}");
        assert!(decode_crop(&crop(b"junk".to_vec(), 4, 4)).is_err());
    }

    #[test]
    fn a_small_file_claiming_a_huge_image_is_refused_before_decoding() {
        // A valid 16x16 JPEG whose header is rewritten to claim 4000x4000
        // (the 856-byte bomb of issue 16 did the same).
        let mut bomb = jpeg(16, 16);
        let sof = bomb
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline SOF0 marker");
        // SOF0: FF C0, length (2), precision (1), height (2), width (2).
        bomb[sof + 5..sof + 7].copy_from_slice(&4000u16.to_be_bytes());
        bomb[sof + 7..sof + 9].copy_from_slice(&4000u16.to_be_bytes());
        assert!(bomb.len() < 2000);
        let e = decode_crop(&crop(bomb.clone(), 160, 160)).expect_err("refused");
        assert!(e.contains("4000x4000"), "{e}");
        // Declaring the huge size too does not help.
        let e = decode_crop(&crop(bomb, 4000, 4000)).expect_err("refused");
        assert!(e.contains("larger than a person crop"), "{e}");
    }
}
