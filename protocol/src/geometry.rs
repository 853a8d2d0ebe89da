//! Boxes in pixel coordinates of the frame they were found in.

use serde::{Deserialize, Serialize};

/// An axis-aligned box: top-left corner, width and height, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge, pixels.
    pub x: f32,
    /// Top edge, pixels.
    pub y: f32,
    /// Width, pixels (non-negative).
    pub w: f32,
    /// Height, pixels (non-negative).
    pub h: f32,
}

impl BBox {
    /// Box from its corners (x1, y1) top-left and (x2, y2) bottom-right.
    pub fn from_corners(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        BBox {
            x: x1,
            y: y1,
            w: (x2 - x1).max(0.0),
            h: (y2 - y1).max(0.0),
        }
    }

    /// Area in square pixels.
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union with `other`, in 0..=1.
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

    /// The box clipped to a `width` x `height` frame.
    pub fn clip(&self, width: f32, height: f32) -> BBox {
        let x1 = self.x.clamp(0.0, width);
        let y1 = self.y.clamp(0.0, height);
        let x2 = (self.x + self.w).clamp(0.0, width);
        let y2 = (self.y + self.h).clamp(0.0, height);
        BBox::from_corners(x1, y1, x2, y2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half() {
        let a = BBox {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        let b = BBox { x: 20.0, ..a };
        assert_eq!(a.iou(&b), 0.0);
        let c = BBox { x: 5.0, ..a };
        assert!((a.iou(&c) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn clip_keeps_box_inside_frame() {
        let a = BBox {
            x: -5.0,
            y: 90.0,
            w: 20.0,
            h: 20.0,
        };
        let c = a.clip(100.0, 100.0);
        assert_eq!(
            c,
            BBox {
                x: 0.0,
                y: 90.0,
                w: 15.0,
                h: 10.0
            }
        );
    }
}
