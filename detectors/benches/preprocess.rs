//! Micro-benchmarks of the work around inference: resizing a camera frame into
//! the SSD input, and decoding + NMS of the raw SSD output.

use criterion::{criterion_group, criterion_main, Criterion};
use vidar_detectors::bench::{synthetic_frame, synthetic_i420};
use vidar_detectors::postprocess::{decode_raw, Anchor, DecodeParams, RawSsd};
use vidar_detectors::{Filter, FrameResizer, I420Frame, Picture, RgbFrame, YuvToRgb};

fn resize(c: &mut Criterion) {
    let mut dst = vec![0u8; 300 * 300 * 3];
    for (w, h) in [(1280u32, 720u32), (1920, 1080), (768, 576)] {
        let rgb = synthetic_frame(w, h);
        let yuv = synthetic_i420(w, h);
        let frames: [(&str, Picture<'_>); 2] = [
            ("RGB", RgbFrame::packed(w, h, &rgb).expect("frame").into()),
            (
                "I420",
                I420Frame::packed(w, h, &yuv, YuvToRgb::default())
                    .expect("frame")
                    .into(),
            ),
        ];
        for (name, frame) in frames {
            for filter in [Filter::Antialiased, Filter::Sampled] {
                let mut resizer = FrameResizer::with_filter(filter);
                c.bench_function(
                    &format!("resize {w}x{h} {name} {filter:?} -> 300x300"),
                    |b| {
                        b.iter(|| {
                            resizer
                                .resize(frame, None, &mut dst, 300, 300)
                                .expect("resize")
                        })
                    },
                );
            }
        }
    }
}

fn decode(c: &mut Criterion) {
    // 1917 anchors on a grid, 91 classes, ~60 person candidates above 0.3.
    let anchors: Vec<Anchor> = (0..1917)
        .map(|i| Anchor {
            yc: (i % 40) as f32 / 40.0,
            xc: (i / 40) as f32 / 48.0,
            h: 0.1,
            w: 0.05,
        })
        .collect();
    let encodings: Vec<f32> = (0..1917 * 4)
        .map(|i| ((i % 7) as f32 - 3.0) * 0.1)
        .collect();
    let scores: Vec<f32> = (0..1917 * 91)
        .map(|i| {
            if i % 91 == 1 && (i / 91) % 32 == 0 {
                0.9
            } else {
                0.01
            }
        })
        .collect();
    let params = DecodeParams {
        class: 1,
        score_threshold: 0.3,
        iou_threshold: 0.6,
        max_detections: 50,
        scales: [10.0, 10.0, 5.0, 5.0],
    };
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    c.bench_function("decode + NMS, 1917 anchors", |b| {
        b.iter(|| {
            out.clear();
            let raw = RawSsd {
                encodings: &encodings,
                scores: &scores,
                classes: 91,
            };
            decode_raw(raw, &anchors, &params, 1280, 720, &mut scratch, &mut out);
        })
    });
}

criterion_group!(benches, resize, decode);
criterion_main!(benches);
