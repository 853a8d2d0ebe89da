//! SSD output decoding: the box coder against anchors, score filtering and greedy
//! non-maximum suppression, for the raw model form. Pure functions on slices.

use vidar_protocol::BBox;

use crate::Detection;

/// An SSD anchor in normalised coordinates (centre and size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    /// Centre y.
    pub yc: f32,
    /// Centre x.
    pub xc: f32,
    /// Height.
    pub h: f32,
    /// Width.
    pub w: f32,
}

/// A box in normalised corner form (0..1 of the frame), as SSD models output them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormBox {
    /// Top.
    pub ymin: f32,
    /// Left.
    pub xmin: f32,
    /// Bottom.
    pub ymax: f32,
    /// Right.
    pub xmax: f32,
}

impl NormBox {
    /// Pixel box in a `width` x `height` frame, clipped to it.
    pub fn to_pixels(self, width: u32, height: u32) -> BBox {
        let (w, h) = (width as f32, height as f32);
        BBox::from_corners(self.xmin * w, self.ymin * h, self.xmax * w, self.ymax * h).clip(w, h)
    }

    fn area(&self) -> f32 {
        (self.ymax - self.ymin).max(0.0) * (self.xmax - self.xmin).max(0.0)
    }

    /// Intersection over union.
    pub fn iou(&self, other: &NormBox) -> f32 {
        let ih = self.ymax.min(other.ymax) - self.ymin.max(other.ymin);
        let iw = self.xmax.min(other.xmax) - self.xmin.max(other.xmin);
        if ih <= 0.0 || iw <= 0.0 {
            return 0.0;
        }
        let inter = ih * iw;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// Decodes one SSD box encoding (ty, tx, th, tw) against its anchor with the usual box coder.
pub fn decode_box(enc: [f32; 4], anchor: &Anchor, scales: [f32; 4]) -> NormBox {
    let yc = enc[0] / scales[0] * anchor.h + anchor.yc;
    let xc = enc[1] / scales[1] * anchor.w + anchor.xc;
    let h = (enc[2] / scales[2]).exp() * anchor.h;
    let w = (enc[3] / scales[3]).exp() * anchor.w;
    NormBox {
        ymin: yc - h / 2.0,
        xmin: xc - w / 2.0,
        ymax: yc + h / 2.0,
        xmax: xc + w / 2.0,
    }
}

/// A candidate before NMS: normalised box and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Box in normalised coordinates.
    pub bbox: NormBox,
    /// Class score.
    pub score: f32,
}

/// Greedy NMS in place: sorts by score (descending, stable), keeps a box unless it
/// overlaps a kept one by more than `iou_threshold`, stops at `max_keep`.
pub fn nms(candidates: &mut Vec<Candidate>, iou_threshold: f32, max_keep: usize) {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = 0;
    for i in 0..candidates.len() {
        if kept == max_keep {
            break;
        }
        let c = candidates[i];
        if candidates[..kept]
            .iter()
            .all(|k| k.bbox.iou(&c.bbox) <= iou_threshold)
        {
            candidates[kept] = c;
            kept += 1;
        }
    }
    candidates.truncate(kept);
}

/// Raw SSD outputs of one image: per-anchor encodings and class scores.
#[derive(Debug, Clone, Copy)]
pub struct RawSsd<'a> {
    /// `[anchors * 4]` encodings (ty, tx, th, tw).
    pub encodings: &'a [f32],
    /// `[anchors * classes]` scores, sigmoid already applied.
    pub scores: &'a [f32],
    /// Number of classes in `scores` (91 for COCO with background).
    pub classes: usize,
}

/// Settings of [`decode_raw`].
#[derive(Debug, Clone, Copy)]
pub struct DecodeParams {
    /// Class whose boxes are kept.
    pub class: usize,
    /// Minimum score.
    pub score_threshold: f32,
    /// NMS IoU threshold.
    pub iou_threshold: f32,
    /// Most detections kept.
    pub max_detections: usize,
    /// Box coder scales (y, x, h, w).
    pub scales: [f32; 4],
}

/// Decodes the boxes of one class above threshold, NMS, pixel coordinates; `scratch` is reused.
pub fn decode_raw(
    raw: RawSsd<'_>,
    anchors: &[Anchor],
    params: &DecodeParams,
    frame_w: u32,
    frame_h: u32,
    scratch: &mut Vec<Candidate>,
    out: &mut Vec<Detection>,
) {
    scratch.clear();
    for (i, anchor) in anchors.iter().enumerate() {
        let score = raw.scores[i * raw.classes + params.class];
        if score < params.score_threshold {
            continue;
        }
        let e = &raw.encodings[i * 4..i * 4 + 4];
        scratch.push(Candidate {
            bbox: decode_box([e[0], e[1], e[2], e[3]], anchor, params.scales),
            score,
        });
    }
    nms(scratch, params.iou_threshold, params.max_detections);
    out.extend(scratch.iter().map(|c| Detection {
        bbox: c.bbox.to_pixels(frame_w, frame_h),
        score: c.score,
        class_id: params.class as u32,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nb(ymin: f32, xmin: f32, ymax: f32, xmax: f32) -> NormBox {
        NormBox {
            ymin,
            xmin,
            ymax,
            xmax,
        }
    }

    #[test]
    fn zero_encoding_decodes_to_the_anchor() {
        let a = Anchor {
            yc: 0.5,
            xc: 0.25,
            h: 0.2,
            w: 0.1,
        };
        let b = decode_box([0.0; 4], &a, [10.0, 10.0, 5.0, 5.0]);
        assert!((b.ymin - 0.4).abs() < 1e-6 && (b.xmax - 0.3).abs() < 1e-6);
        // ty = 10 moves the centre by one anchor height; th = 5 * ln 2 doubles the height.
        let b = decode_box(
            [10.0, 0.0, 5.0 * 2f32.ln(), 0.0],
            &a,
            [10.0, 10.0, 5.0, 5.0],
        );
        assert!((b.ymin - 0.5).abs() < 1e-6 && (b.ymax - 0.9).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_best_of_overlapping_and_all_disjoint() {
        let mut c = vec![
            Candidate {
                bbox: nb(0.0, 0.0, 0.5, 0.5),
                score: 0.7,
            },
            Candidate {
                bbox: nb(0.0, 0.0, 0.5, 0.52),
                score: 0.9,
            },
            Candidate {
                bbox: nb(0.6, 0.6, 0.9, 0.9),
                score: 0.6,
            },
            Candidate {
                bbox: nb(0.0, 0.25, 0.5, 0.75),
                score: 0.8,
            },
        ];
        nms(&mut c, 0.6, 10);
        let scores: Vec<f32> = c.iter().map(|c| c.score).collect();
        // 0.7 overlaps 0.9 with IoU ~0.96; 0.8 overlaps 0.9 by ~0.49: kept.
        assert_eq!(scores, vec![0.9, 0.8, 0.6]);
        nms(&mut c, 0.6, 2);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn decode_raw_filters_class_and_threshold_and_scales_to_pixels() {
        let anchors = [
            Anchor {
                yc: 0.5,
                xc: 0.5,
                h: 0.5,
                w: 0.25,
            },
            Anchor {
                yc: 0.2,
                xc: 0.2,
                h: 0.1,
                w: 0.1,
            },
        ];
        let encodings = [0.0f32; 8];
        // Two classes: background, person.
        let scores = [0.1, 0.8, 0.9, 0.3];
        let params = DecodeParams {
            class: 1,
            score_threshold: 0.5,
            iou_threshold: 0.6,
            max_detections: 10,
            scales: [10.0, 10.0, 5.0, 5.0],
        };
        let mut out = Vec::new();
        let raw = RawSsd {
            encodings: &encodings,
            scores: &scores,
            classes: 2,
        };
        decode_raw(raw, &anchors, &params, 400, 200, &mut Vec::new(), &mut out);
        assert_eq!(out.len(), 1);
        let d = out[0];
        assert_eq!(d.class_id, 1);
        assert!((d.bbox.x - 150.0).abs() < 1e-3 && (d.bbox.w - 100.0).abs() < 1e-3);
        assert!((d.bbox.y - 50.0).abs() < 1e-3 && (d.bbox.h - 100.0).abs() < 1e-3);
    }
}
