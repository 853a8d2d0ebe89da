//! Axis-aligned boxes in image pixels: the system-wide `vidar_protocol::BBox`
//! (`x, y` = top-left corner, `w, h` = size, as in the MOT Challenge format)
//! plus the few helpers the tracker needs. Must not know about tracks or files.

pub use vidar_protocol::BBox;

/// What the tracker needs from a box beyond `vidar_protocol::BBox`'s own
/// methods (`area`, `iou`, `clip`). Bring it into scope to call them.
pub trait BoxExt: Sized {
    /// A box from its top-left corner and size.
    fn new(x: f32, y: f32, w: f32, h: f32) -> Self;
    /// A box from its centre and size.
    fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self;
    /// Centre of the box.
    fn center(&self) -> (f32, f32);
    /// True when every coordinate is finite and the size is positive.
    fn is_valid(&self) -> bool;
    /// Intersection over union computed in `f64`, as `motmetrics`' `boxiou`
    /// does (used by scoring, not tracking).
    fn iou_f64(&self, other: &BBox) -> f64;
}

impl BoxExt for BBox {
    fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        BBox { x, y, w, h }
    }

    fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        BBox {
            x: cx - w / 2.0,
            y: cy - h / 2.0,
            w,
            h,
        }
    }

    fn center(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    fn is_valid(&self) -> bool {
        self.x.is_finite()
            && self.y.is_finite()
            && self.w.is_finite()
            && self.h.is_finite()
            && self.w > 0.0
            && self.h > 0.0
    }

    fn iou_f64(&self, other: &BBox) -> f64 {
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
