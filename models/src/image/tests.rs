//! Resizing tests: both filters against their definitions, strides,
//! regions, and I420 against its RGB conversion.

use super::*;

fn gradient(w: u32, h: u32, stride: usize) -> Vec<u8> {
    let mut data = vec![0u8; stride * h as usize];
    for y in 0..h as usize {
        for x in 0..w as usize {
            let p = y * stride + x * 3;
            data[p] = (x * 255 / w as usize) as u8;
            data[p + 1] = (y * 255 / h as usize) as u8;
            data[p + 2] = 77;
        }
        // Garbage in the padding must not leak into the output.
        for b in &mut data[y * stride + w as usize * 3..(y + 1) * stride] {
            *b = 255;
        }
    }
    data
}

#[test]
fn padded_strides_resize_like_packed_frames() {
    let (w, h) = (64u32, 48u32);
    let packed = gradient(w, h, w as usize * 3);
    let mut resizer = FrameResizer::new();
    let mut want = vec![0u8; 30 * 20 * 3];
    resizer
        .resize(
            RgbFrame::packed(w, h, &packed).expect("frame"),
            None,
            &mut want,
            30,
            20,
        )
        .expect("resize");
    for stride in [w as usize * 3 + 3, w as usize * 3 + 4, w as usize * 3 + 64] {
        let data = gradient(w, h, stride);
        let frame = RgbFrame::new(w, h, stride, &data).expect("frame");
        let mut got = vec![0u8; 30 * 20 * 3];
        resizer
            .resize(frame, None, &mut got, 30, 20)
            .expect("resize");
        assert_eq!(got, want, "stride {stride}");
    }
}

#[test]
fn region_crop_reads_the_region() {
    let (w, h) = (40u32, 40u32);
    let mut data = vec![0u8; (w * h * 3) as usize];
    // Right half red, left half black.
    for y in 0..h as usize {
        for x in 20..w as usize {
            data[(y * w as usize + x) * 3] = 200;
        }
    }
    let frame = RgbFrame::packed(w, h, &data).expect("frame");
    let mut out = vec![0u8; 8 * 8 * 3];
    let region = Region {
        x: 20.0,
        y: 0.0,
        w: 20.0,
        h: 40.0,
    };
    FrameResizer::new()
        .resize(frame, Some(region), &mut out, 8, 8)
        .expect("resize");
    assert!(out.chunks(3).all(|p| p[0] == 200 && p[1] == 0));
}

/// Point-sampled bilinear in floating point: the definition `Filter::Sampled` computes in fixed point.
fn sampled_reference(
    frame: &RgbFrame<'_>,
    (x, y, w, h): (u32, u32, u32, u32),
    dst_w: u32,
    dst_h: u32,
) -> Vec<f64> {
    let taps = |d: u32, len: u32, out: u32| {
        let s = (f64::from(d) + 0.5) * f64::from(len) / f64::from(out) - 0.5;
        let s = s.clamp(0.0, f64::from(len - 1));
        let i = s.floor() as u32;
        (i, (i + 1).min(len - 1), s - f64::from(i))
    };
    let px = |sx: u32, sy: u32, c: usize| {
        f64::from(frame.data[(y + sy) as usize * frame.stride + (x + sx) as usize * 3 + c])
    };
    let mut out = Vec::new();
    for dy in 0..dst_h {
        let (y0, y1, fy) = taps(dy, h, dst_h);
        for dx in 0..dst_w {
            let (x0, x1, fx) = taps(dx, w, dst_w);
            for c in 0..3 {
                let top = px(x0, y0, c) * (1.0 - fx) + px(x1, y0, c) * fx;
                let bottom = px(x0, y1, c) * (1.0 - fx) + px(x1, y1, c) * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    out
}

#[test]
fn sampled_bilinear_matches_its_definition_within_one_level() {
    let noise = |h: u32, stride: usize| {
        let mut data = vec![0u8; stride * h as usize];
        let mut state = 0x2545_f491_u32;
        for b in &mut data {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *b = (state >> 24) as u8;
        }
        data
    };
    let mut resizer = FrameResizer::with_filter(Filter::Sampled);
    // Downscales as cameras into detectors, odd ratios, upscales, one-pixel
    // edges, padded strides and regions, reusing one resizer throughout.
    let cases = [
        (192, 108, 192 * 3, None, 30, 30),
        (77, 51, 77 * 3 + 5, None, 30, 20),
        (40, 30, 40 * 3, None, 64, 48),
        (1, 9, 3, None, 4, 4),
        (9, 1, 27, None, 4, 4),
        (
            64,
            48,
            64 * 3 + 64,
            Some(Region {
                x: 10.0,
                y: 5.0,
                w: 21.0,
                h: 33.0,
            }),
            16,
            32,
        ),
        (192, 108, 192 * 3, None, 30, 30),
    ];
    for (w, h, stride, region, dw, dh) in cases {
        let data = noise(h, stride);
        let frame = RgbFrame::new(w, h, stride, &data).expect("frame");
        let mut got = vec![0u8; (dw * dh * 3) as usize];
        resizer
            .resize(frame, region, &mut got, dw, dh)
            .expect("resize");
        let want = sampled_reference(&frame, pixel_region(w, h, region), dw, dh);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(&g, &r)| (f64::from(g) - r).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1.0,
            "{w}x{h} -> {dw}x{dh} {region:?}: off by {worst}"
        );
    }
}

#[test]
fn sampled_bilinear_keeps_flat_colours_and_refuses_a_short_destination() {
    let data = [17u8, 130, 250].repeat(50 * 40);
    let frame = RgbFrame::packed(50, 40, &data).expect("frame");
    let mut resizer = FrameResizer::with_filter(Filter::Sampled);
    let mut out = vec![0u8; 7 * 5 * 3];
    resizer.resize(frame, None, &mut out, 7, 5).expect("resize");
    assert!(out.chunks(3).all(|p| p == [17, 130, 250]), "{out:?}");
    let e = resizer
        .resize(frame, None, &mut out[1..], 7, 5)
        .expect_err("short");
    assert!(e.to_string().contains("7x5"), "{e}");
}

#[test]
fn short_buffers_are_refused() {
    assert!(RgbFrame::new(10, 10, 30, &[0u8; 299]).is_err());
    assert!(RgbFrame::new(10, 10, 29, &[0u8; 300]).is_err());
    assert!(RgbFrame::new(10, 10, 32, &[0u8; 32 * 9 + 30]).is_ok());
}

/// An I420 frame of `w` x `h` with padded strides: luma from `luma(x, y)`,
/// chroma from `chroma(cx, cy)` (U, V), garbage in the padding.
fn i420(
    w: u32,
    h: u32,
    luma: impl Fn(u32, u32) -> u8,
    chroma: impl Fn(u32, u32) -> (u8, u8),
) -> (Vec<u8>, [usize; 3], [usize; 3]) {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (ys, cs) = (w as usize + 7, cw as usize + 5);
    let offsets = [0, ys * h as usize, ys * h as usize + cs * ch as usize];
    let mut data = vec![251u8; offsets[2] + cs * ch as usize];
    for y in 0..h {
        for x in 0..w {
            data[y as usize * ys + x as usize] = luma(x, y);
        }
    }
    for y in 0..ch {
        for x in 0..cw {
            let (u, v) = chroma(x, y);
            data[offsets[1] + y as usize * cs + x as usize] = u;
            data[offsets[2] + y as usize * cs + x as usize] = v;
        }
    }
    (data, offsets, [ys, cs, cs])
}

#[test]
fn i420_resizes_as_its_rgb_conversion_does_when_chroma_is_flat() {
    // With flat chroma (and no channel clamped at 0 or 255) the
    // conversion is affine in luma alone, so resizing the planes and then
    // converting equals converting and then resizing, up to rounding. (At
    // less than half the frame's size the antialiased I420 path reduces
    // first, a different filter: `reduction_*` below.)
    let colour = YuvToRgb::new(YuvMatrix::Bt601, false);
    for (w, h) in [(96u32, 64u32), (77, 51)] {
        let (data, offsets, strides) = i420(
            w,
            h,
            |x, y| (40 + (x * 7 + y * 13) % 180) as u8,
            |_, _| (120, 136),
        );
        let frame = I420Frame::from_buffer(w, h, &data, offsets, strides, colour).expect("i420");
        let rgb = Picture::from(frame).to_rgb();
        let packed = RgbFrame::packed(w, h, &rgb).expect("rgb");
        for filter in [Filter::Antialiased, Filter::Sampled] {
            let mut resizer = FrameResizer::with_filter(filter);
            for region in [
                None,
                Some(Region {
                    x: 11.0,
                    y: 7.0,
                    w: 33.0,
                    h: 29.0,
                }),
            ] {
                let (mut want, mut got) = (vec![0u8; 50 * 36 * 3], vec![0u8; 50 * 36 * 3]);
                resizer
                    .resize(packed, region, &mut want, 50, 36)
                    .expect("rgb resize");
                resizer
                    .resize(frame, region, &mut got, 50, 36)
                    .expect("i420 resize");
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(&g, &r)| (i32::from(g) - i32::from(r)).abs())
                    .max()
                    .unwrap_or(0);
                assert!(worst <= 2, "{w}x{h} {filter:?} {region:?}: off by {worst}");
            }
        }
    }
}

#[test]
fn i420_keeps_the_chroma_detail_the_models_size_can_hold() {
    // A 160 x 160 frame of one-chroma-sample-wide stripes (red, blue, red,
    // ...) into 80 x 80: the chroma plane is 80 x 80, as the output, so each
    // output column keeps its own stripe's colour, as resizing the frame's
    // full-size RGB would (chroma kept at half the output's size would
    // average every two stripes into one purple).
    let colour = YuvToRgb::new(YuvMatrix::Bt601, true);
    let (red, blue) = ([76u8, 85, 255], [29u8, 255, 107]);
    let stripe = |cx: u32| if cx % 2 == 0 { red } else { blue };
    let (data, offsets, strides) = i420(
        160,
        160,
        |x, _| stripe(x / 2)[0],
        |cx, _| {
            let c = stripe(cx);
            (c[1], c[2])
        },
    );
    let frame = I420Frame::from_buffer(160, 160, &data, offsets, strides, colour).expect("i420");
    let (want_red, want_blue) = (
        colour.rgb(red[0], red[1], red[2]),
        colour.rgb(blue[0], blue[1], blue[2]),
    );
    for filter in [Filter::Antialiased, Filter::Sampled] {
        let mut out = vec![0u8; 80 * 80 * 3];
        FrameResizer::with_filter(filter)
            .resize(frame, None, &mut out, 80, 80)
            .expect("resize");
        for (x, px) in out[40 * 80 * 3..41 * 80 * 3].chunks_exact(3).enumerate() {
            let want = if x % 2 == 0 { want_red } else { want_blue };
            if filter == Filter::Sampled {
                // Two luma pixels of one stripe and one chroma sample each.
                let off = px
                    .iter()
                    .zip(want)
                    .map(|(&a, b)| a.abs_diff(b))
                    .max()
                    .unwrap_or(0);
                assert!(off <= 3, "{filter:?} column {x}: {px:?}, want {want:?}");
            } else {
                // The convolution's support reaches the neighbouring
                // stripes' luma; the colours stay apart all the same.
                let (r, b) = (i32::from(px[0]), i32::from(px[2]));
                let apart = if x % 2 == 0 { r - b } else { b - r };
                assert!(apart > 100, "{filter:?} column {x}: {px:?}, want {want:?}");
            }
        }
    }
}

#[test]
fn i420_regions_read_their_own_chroma_at_odd_edges_too() {
    // Left half red, right half blue, split at column 40 (chroma column 20).
    let colour = YuvToRgb::new(YuvMatrix::Bt601, true);
    let (red, blue) = ([76u8, 85, 255], [29u8, 255, 107]);
    let (data, offsets, strides) = i420(
        80,
        40,
        |x, _| if x < 40 { red[0] } else { blue[0] },
        |cx, _| {
            let c = if cx < 20 { red } else { blue };
            (c[1], c[2])
        },
    );
    let frame = I420Frame::from_buffer(80, 40, &data, offsets, strides, colour).expect("i420");
    let want_red = colour.rgb(red[0], red[1], red[2]);
    let want_blue = colour.rgb(blue[0], blue[1], blue[2]);
    for filter in [Filter::Antialiased, Filter::Sampled] {
        let mut resizer = FrameResizer::with_filter(filter);
        for (x, want) in [
            (40.0, want_blue),
            (41.0, want_blue),
            (0.0, want_red),
            (1.0, want_red),
        ] {
            let mut out = vec![0u8; 8 * 8 * 3];
            let region = Region {
                x,
                y: 1.0,
                w: 37.0,
                h: 37.0,
            };
            resizer
                .resize(frame, Some(region), &mut out, 8, 8)
                .expect("resize");
            for p in out.chunks(3) {
                for k in 0..3 {
                    assert!(
                        (i32::from(p[k]) - i32::from(want[k])).abs() <= 1,
                        "{filter:?} x {x}: {p:?}, want {want:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn region_rgb_copies_the_rounded_region() {
    let data: Vec<u8> = (0..6 * 4 * 3).map(|i| i as u8).collect();
    let frame = RgbFrame::packed(6, 4, &data).expect("frame");
    let mut out = vec![9u8; 3];
    let region = Region {
        x: 1.4,
        y: 2.0,
        w: 2.0,
        h: 5.0,
    };
    let size = Picture::from(frame).region_rgb(Some(region), &mut out);
    assert_eq!(size, (2, 2));
    assert_eq!(out, [39, 40, 41, 42, 43, 44, 57, 58, 59, 60, 61, 62]);
}

/// A camera-like I420 frame: smooth shading, a few hard-edged blocks of
/// colour (people against a background), and sensor noise.
fn scene_i420(w: u32, h: u32) -> (Vec<u8>, [usize; 3], [usize; 3]) {
    let noise =
        |x: u32, y: u32| ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 13) % 7;
    let block = |x: u32, y: u32| {
        let (bx, by) = (x * 8 / w, y * 5 / h);
        (bx + by) % 3 == 0 && (x * 8 % w) > w / 5 && (y * 5 % h) > h / 8
    };
    i420(
        w,
        h,
        |x, y| {
            let shade = 60 + (x * 90 / w) as u8 + (y * 50 / h) as u8;
            let v = if block(x, y) { 215 } else { shade };
            v.saturating_add(noise(x, y) as u8)
        },
        |cx, cy| {
            if block(cx * 2, cy * 2) {
                (90, 170)
            } else {
                (128 + (cx * 20 / w) as u8, 120)
            }
        },
    )
}

#[test]
fn reduction_before_resizing_stays_within_a_few_levels_of_the_direct_filter() {
    // Camera frames to a detector's 300 x 300, the reduced path (box, then
    // bilinear) against the direct bilinear convolution of the same frame
    // converted to RGB: the same picture, up to the filters' difference at
    // hard edges. (Measured: mean 0.53-0.74 levels, 0.23-0.37 % of values
    // more than 24 apart, all at the blocks' one-pixel edges.)
    let colour = YuvToRgb::new(YuvMatrix::Bt709, false);
    for (w, h, region) in [
        (1280u32, 720u32, None),
        (1920, 1080, None),
        (768, 576, None),
        (
            1920,
            1080,
            Some(Region {
                x: 301.0,
                y: 97.0,
                w: 1203.0,
                h: 811.0,
            }),
        ),
    ] {
        let (data, offsets, strides) = scene_i420(w, h);
        let frame = I420Frame::from_buffer(w, h, &data, offsets, strides, colour).expect("i420");
        let rgb = Picture::from(frame).to_rgb();
        let packed = RgbFrame::packed(w, h, &rgb).expect("rgb");
        let mut resizer = FrameResizer::new();
        let (mut direct, mut reduced) = (vec![0u8; 300 * 300 * 3], vec![0u8; 300 * 300 * 3]);
        resizer
            .resize(packed, region, &mut direct, 300, 300)
            .expect("rgb");
        resizer
            .resize(frame, region, &mut reduced, 300, 300)
            .expect("i420");
        let diffs: Vec<i32> = reduced
            .iter()
            .zip(&direct)
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .collect();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        let far = diffs.iter().filter(|&&d| d > 24).count() as f64 / diffs.len() as f64;
        assert!(
            mean <= 1.0 && far <= 0.005,
            "{w}x{h} {region:?}: mean difference {mean:.2} levels, {:.3} % over 24",
            far * 100.0
        );
    }
}

#[test]
fn reduction_keeps_things_where_they_are() {
    // A bright 40 x 40 square on black, anywhere in a 1920 x 1080 frame and
    // in an odd region of it: its centre in the output is where the
    // geometry puts it, to a tenth of an output pixel, as with the direct
    // filter (a reduction that started its blocks at the wrong place, or
    // mapped the region wrongly, moves it).
    let colour = YuvToRgb::new(YuvMatrix::Bt601, true);
    let (w, h) = (1920u32, 1080u32);
    let (sx, sy) = (1333u32, 417u32);
    let (data, offsets, strides) = i420(
        w,
        h,
        |x, y| {
            if (sx..sx + 40).contains(&x) && (sy..sy + 40).contains(&y) {
                255
            } else {
                0
            }
        },
        |_, _| (128, 128),
    );
    let frame = I420Frame::from_buffer(w, h, &data, offsets, strides, colour).expect("i420");
    for region in [
        None,
        Some(Region {
            x: 1001.0,
            y: 203.0,
            w: 699.0,
            h: 611.0,
        }),
    ] {
        let (rx, ry, rw, rh) =
            region.map_or((0.0, 0.0, w as f64, h as f64), |r| (r.x, r.y, r.w, r.h));
        let mut out = vec![0u8; 300 * 300 * 3];
        FrameResizer::new()
            .resize(frame, region, &mut out, 300, 300)
            .expect("resize");
        let (mut mx, mut my, mut m) = (0.0, 0.0, 0.0);
        for (i, px) in out.chunks_exact(3).enumerate() {
            let v = f64::from(px[1]);
            mx += v * ((i % 300) as f64 + 0.5);
            my += v * ((i / 300) as f64 + 0.5);
            m += v;
        }
        let (cx, cy) = (mx / m, my / m);
        let want_x = (f64::from(sx) + 20.0 - rx) * 300.0 / rw;
        let want_y = (f64::from(sy) + 20.0 - ry) * 300.0 / rh;
        assert!(
            (cx - want_x).abs() < 0.1 && (cy - want_y).abs() < 0.1,
            "{region:?}: centre at ({cx:.2}, {cy:.2}), expected ({want_x:.2}, {want_y:.2})"
        );
    }
}

/// The old reduced path (box reduction, interleaved, `fast_image_resize`'s
/// four-channel convolution) into `dst`, for comparison with the row-by-row
/// one.
fn reduced_convolution(
    frame: &I420Frame<'_>,
    region: Option<Region>,
    dst: &mut [u8],
    w: u32,
    h: u32,
) {
    let px = pixel_region(frame.width(), frame.height(), region);
    let factors = reduce::factors(px.2, px.3, w, h).expect("reducible");
    let mut resizer = FrameResizer::new();
    let area = resizer
        .reduced
        .reduce([&frame.y, &frame.u, &frame.v], Area::of(px), factors)
        .expect("reduces");
    resizer
        .resize_reduced(frame.colour, area, dst, w, h)
        .expect("resizes");
}

#[test]
fn the_row_by_row_resize_is_the_reduced_convolution_within_rounding() {
    // The same filter on the same reduced planes, with weights rounded to
    // 1/128 and each pass rounded to a byte: camera sizes, regions at odd
    // offsets, outputs of other sizes. (Measured: at most 4 levels apart,
    // where the conversion to RGB multiplies a chroma rounding, mean under 0.1.)
    let colour = YuvToRgb::new(YuvMatrix::Bt709, false);
    let region = |x, y, w, h| Some(Region { x, y, w, h });
    for (w, h, region, (dw, dh)) in [
        (1280u32, 720u32, None, (300u32, 300u32)),
        (1920, 1080, None, (300, 300)),
        (768, 576, None, (300, 300)),
        (1920, 1080, region(301.0, 97.0, 1403.0, 811.0), (300, 300)),
        (1280, 720, region(3.0, 5.0, 997.0, 601.0), (320, 240)),
        (1920, 1080, None, (512, 288)),
        (1280, 720, None, (200, 200)),
    ] {
        let (data, offsets, strides) = scene_i420(w, h);
        let frame = I420Frame::from_buffer(w, h, &data, offsets, strides, colour).expect("i420");
        let n = (dw * dh * 3) as usize;
        let (mut old, mut new) = (vec![0u8; n], vec![0u8; n]);
        reduced_convolution(&frame, region, &mut old, dw, dh);
        let mut resizer = FrameResizer::new();
        let px = pixel_region(w, h, region);
        assert!(
            resizer.resize_separable(&frame, px, &mut new, (dw, dh), false),
            "{w}x{h} {region:?} to {dw}x{dh}: the row-by-row path applies"
        );
        let diffs: Vec<i32> = new
            .iter()
            .zip(&old)
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .collect();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        let max = diffs.iter().copied().max().unwrap_or(0);
        assert!(
            max <= 4 && mean <= 0.2,
            "{w}x{h} {region:?} to {dw}x{dh}: {max} levels apart at most, mean {mean:.3}"
        );
        // And through the resizer's entry point.
        let mut again = vec![0u8; n];
        resizer
            .resize(frame, region, &mut again, dw, dh)
            .expect("resize");
        assert_eq!(
            again, new,
            "{w}x{h} {region:?}: resize takes the row-by-row path"
        );
    }
}

#[test]
fn blocks_are_the_pixels_rewritten_on_every_path() {
    // Row by row (I420, reducible), the old reduced path (a geometry the
    // row-by-row tables do not take), an unreduced I420 frame, and RGB.
    let colour = YuvToRgb::new(YuvMatrix::Bt601, false);
    for (w, h, region, (dw, dh)) in [
        (1920u32, 1080u32, None, (300u32, 300u32)),
        (
            1280,
            720,
            Some(Region {
                x: 9.0,
                y: 7.0,
                w: 1001.0,
                h: 633.0,
            }),
            (300, 300),
        ),
        (2560, 1440, None, (300, 300)),
        (640, 400, None, (300, 300)),
    ] {
        let (data, offsets, strides) = scene_i420(w, h);
        let frame = I420Frame::from_buffer(w, h, &data, offsets, strides, colour).expect("i420");
        let rgb = Picture::from(frame).to_rgb();
        let packed = RgbFrame::packed(w, h, &rgb).expect("rgb");
        let n = (dw * dh * 3) as usize;
        for picture in [Picture::from(frame), Picture::from(packed)] {
            let mut resizer = FrameResizer::new();
            let (mut pixels, mut want, mut blocks) = (vec![0u8; n], vec![0u8; n], vec![0u8; n]);
            resizer
                .resize(picture, region, &mut pixels, dw, dh)
                .expect("pixels");
            space_to_depth(&pixels, dw as usize, dh as usize, &mut want).expect("s2d");
            resizer
                .resize_into(picture, region, &mut blocks, (dw, dh), Arrangement::Blocks)
                .expect("blocks");
            assert!(
                blocks == want,
                "{w}x{h} {region:?}: blocks differ from the pixels rewritten"
            );
        }
    }
    let (data, offsets, strides) = scene_i420(1280, 720);
    let frame = I420Frame::from_buffer(1280, 720, &data, offsets, strides, colour).expect("i420");
    let err = FrameResizer::new()
        .resize_into(
            frame.into(),
            None,
            &mut vec![0u8; 301 * 300 * 3],
            (301, 300),
            Arrangement::Blocks,
        )
        .expect_err("odd width");
    assert!(err.to_string().contains("301x300"), "{err}");
}

#[test]
fn a_geometry_out_of_the_row_by_row_reach_is_resized_the_old_way() {
    // 2560 x 1440 reduces to 640 x 360 for 300 x 300: 8 outputs' taps
    // span more than one shuffle's 16 bytes, so the old reduced path runs,
    // with the same result as calling it directly.
    let colour = YuvToRgb::new(YuvMatrix::Bt709, false);
    let (data, offsets, strides) = scene_i420(2560, 1440);
    let frame = I420Frame::from_buffer(2560, 1440, &data, offsets, strides, colour).expect("i420");
    let mut resizer = FrameResizer::new();
    let n = 300 * 300 * 3;
    let px = pixel_region(2560, 1440, None);
    assert!(!resizer.resize_separable(&frame, px, &mut vec![0u8; n], (300, 300), false));
    let (mut got, mut want) = (vec![0u8; n], vec![0u8; n]);
    resizer
        .resize(frame, None, &mut got, 300, 300)
        .expect("resize");
    reduced_convolution(&frame, None, &mut want, 300, 300);
    assert!(got == want, "the fallback is the old reduced path");
}
