//! Which crops of a track go to re-ID: quality of a crop, and when one is wanted.

use vidar_protocol::BBox;

/// Crops of one track embedded at most.
pub const MAX_CROPS: u32 = 8;
/// Detections between two crops of one track (different views, not the same frame twice).
pub const GAP: u32 = 3;
/// Crops below this quality are not embedded.
pub const MIN_QUALITY: f32 = 0.15;
/// After the decision, a crop is embedded only when it beats the best so far by this factor.
pub const IMPROVE: f32 = 1.3;
/// A track on screen this long without a decision is decided with the crops it has, ms.
pub const DECIDE_AFTER_MS: i64 = 1000;
/// Box height at which size stops adding quality, pixels (half the embedder's input).
pub const FULL_HEIGHT: f32 = 128.0;

/// Quality of the crop `b` (detection `score`) in a `w` x `h` frame among
/// the other `boxes` of the frame, 0..1: detection score, times size,
/// times how free it is of other people, quartered when the box is cut by
/// the frame's edge.
pub fn quality(b: &BBox, score: f32, w: f32, h: f32, boxes: &[BBox]) -> f32 {
    if !(b.w > 0.0 && b.h > 0.0) {
        return 0.0;
    }
    let size = (b.h / FULL_HEIGHT).clamp(0.0, 1.0).sqrt();
    let mut covered = 0f32;
    for o in boxes {
        if o == b {
            continue;
        }
        let ix = (b.x + b.w).min(o.x + o.w) - b.x.max(o.x);
        let iy = (b.y + b.h).min(o.y + o.h) - b.y.max(o.y);
        if ix > 0.0 && iy > 0.0 {
            covered = covered.max(ix * iy / (b.w * b.h));
        }
    }
    let free = (1.0 - covered).max(0.0).powi(2);
    let edge = 2.0;
    let cut = b.x <= edge || b.y <= edge || b.x + b.w >= w - edge || b.y + b.h >= h - edge;
    score.clamp(0.0, 1.0) * size * free * if cut { 0.25 } else { 1.0 }
}

/// Whether a crop of quality `q` should go to re-ID now, for a track that
/// has `sent` crops (best `best`), `since` detections since the last one,
/// and an identity or not.
pub fn wanted(q: f32, sent: u32, best: f32, since: u32, decided: bool) -> bool {
    if q < MIN_QUALITY || sent >= MAX_CROPS {
        return false;
    }
    if sent == 0 {
        return true;
    }
    if since < GAP {
        return false;
    }
    !decided || q > best * IMPROVE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f32, y: f32, w: f32, h: f32) -> BBox {
        BBox { x, y, w, h }
    }

    #[test]
    fn quality_prefers_big_whole_unoccluded_confident_people() {
        let (w, h) = (768.0, 576.0);
        let clean = b(100.0, 100.0, 60.0, 150.0);
        let q = quality(&clean, 0.9, w, h, &[clean]);
        assert!((q - 0.9).abs() < 1e-6, "{q}");
        // Smaller: less.
        let small = b(100.0, 100.0, 20.0, 40.0);
        assert!(quality(&small, 0.9, w, h, &[small]) < 0.6 * q);
        // Half covered by another person: a quarter.
        let other = b(130.0, 100.0, 60.0, 150.0);
        let covered = quality(&clean, 0.9, w, h, &[clean, other]);
        assert!((covered - 0.9 * 0.25).abs() < 1e-3, "{covered}");
        // Cut by the frame's edge.
        let cut = b(0.0, 100.0, 60.0, 150.0);
        assert!((quality(&cut, 0.9, w, h, &[cut]) - 0.225).abs() < 1e-6);
        // Lower score: lower quality.
        assert!(quality(&clean, 0.5, w, h, &[clean]) < q);
        assert_eq!(quality(&b(0.0, 0.0, 0.0, 10.0), 0.9, w, h, &[]), 0.0);
    }

    #[test]
    fn crops_are_spaced_bounded_and_after_the_decision_only_better_views() {
        assert!(wanted(0.5, 0, 0.0, 0, false), "the first good crop goes");
        assert!(!wanted(0.1, 0, 0.0, 9, false), "below MIN_QUALITY");
        assert!(
            !wanted(0.5, 1, 0.5, GAP - 1, false),
            "too soon after the last"
        );
        assert!(wanted(0.5, 1, 0.5, GAP, false), "undecided: more views");
        assert!(
            !wanted(0.6, 2, 0.5, GAP, true),
            "decided: not better enough"
        );
        assert!(
            wanted(0.7, 2, 0.5, GAP, true),
            "decided: a clearly better view"
        );
        assert!(!wanted(0.9, MAX_CROPS, 0.1, 99, false), "bounded");
    }
}
