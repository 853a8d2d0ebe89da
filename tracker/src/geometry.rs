//! Axis-aligned boxes in image pixels and their overlap measures.
//!
//! Owns the one box type the tracker speaks (`x, y` = top-left corner, `w, h` =
//! size, as in the MOT Challenge format). Must not know about tracks or files.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in pixels: top-left corner `(x, y)`, width `w`, height `h`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge, pixels.
    pub x: f32,
    /// Top edge, pixels.
    pub y: f32,
    /// Width, pixels.
    pub w: f32,
    /// Height, pixels.
    pub h: f32,
}

impl BBox {
    /// A box from its top-left corner and size.
    pub const fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        Self { x, y, w, h }
    }

    /// A box from its centre and size.
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self {
            x: cx - w / 2.0,
            y: cy - h / 2.0,
            w,
            h,
        }
    }

    /// Centre of the box.
    pub fn center(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    /// Area in square pixels (0 for degenerate boxes).
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// True when every coordinate is finite and the size is positive.
    pub fn is_valid(&self) -> bool {
        self.x.is_finite()
            && self.y.is_finite()
            && self.w.is_finite()
            && self.h.is_finite()
            && self.w > 0.0
            && self.h > 0.0
    }

    /// Intersection over union, in `[0, 1]`; 0 when either box is degenerate.
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// Intersection over union computed in `f64`, matching `motmetrics`'
    /// `boxiou` bit for bit on `f32` inputs (used by scoring, not tracking).
    pub fn iou_f64(&self, other: &BBox) -> f64 {
        let (ax, ay, aw, ah) = (
            f64::from(self.x),
            f64::from(self.y),
            f64::from(self.w),
            f64::from(self.h),
        );
        let (bx, by, bw, bh) = (
            f64::from(other.x),
            f64::from(other.y),
            f64::from(other.w),
            f64::from(other.h),
        );
        let ix = ((ax + aw).min(bx + bw) - ax.max(bx)).max(0.0);
        let iy = ((ay + ah).min(by + bh) - ay.max(by)).max(0.0);
        let inter = ix * iy;
        let union = aw * ah + bw * bh - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_boxes_is_one() {
        let a = BBox::new(10.0, 20.0, 30.0, 40.0);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert!((a.iou_f64(&a) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn iou_of_disjoint_boxes_is_zero() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        let b = BBox::new(10.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&b), 0.0);
        assert_eq!(a.iou_f64(&b), 0.0);
    }

    #[test]
    fn iou_of_half_overlap() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        let b = BBox::new(5.0, 0.0, 10.0, 10.0);
        // 50 / 150
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn centre_round_trips() {
        let a = BBox::from_center(50.0, 60.0, 20.0, 40.0);
        assert_eq!(a, BBox::new(40.0, 40.0, 20.0, 40.0));
        assert_eq!(a.center(), (50.0, 60.0));
    }

    #[test]
    fn validity() {
        assert!(BBox::new(0.0, 0.0, 1.0, 1.0).is_valid());
        assert!(!BBox::new(0.0, 0.0, 0.0, 1.0).is_valid());
        assert!(!BBox::new(f32::NAN, 0.0, 1.0, 1.0).is_valid());
    }
}
