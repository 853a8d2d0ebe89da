//! The floor plan the UI draws trajectories on: its image (PNG or JPEG) and
//! where each camera is on it, loaded once at start from a validated
//! `[floor_plan]`. Served by [`super::export`]'s routes.

use std::path::Path;

use axum::body::Bytes;
use serde::Serialize;
use vidar_protocol::CameraId;

use crate::config::web::MAX_FLOOR_PLAN_BYTES;
use crate::config::FloorPlanConfig;

/// A camera's place on the floor plan.
#[derive(Debug, Clone, Serialize)]
pub struct FloorCamera {
    /// The camera.
    pub camera: CameraId,
    /// Image pixels from the left.
    pub x: f64,
    /// Image pixels from the top.
    pub y: f64,
}

/// The floor plan image and where the cameras are on it.
#[derive(Debug)]
pub struct FloorPlan {
    image: Bytes,
    content_type: &'static str,
    cameras: Vec<FloorCamera>,
}

impl FloorPlan {
    /// Reads the image of a validated `[floor_plan]`.
    pub fn load(c: &FloorPlanConfig) -> Result<FloorPlan, String> {
        let image = read_image(&c.image)?;
        let content_type = if image.starts_with(b"\x89PNG\r\n\x1a\n") {
            "image/png"
        } else if image.starts_with(&[0xFF, 0xD8, 0xFF]) {
            "image/jpeg"
        } else {
            return Err(format!(
                "floor_plan.image: {} is neither PNG nor JPEG",
                c.image.display()
            ));
        };
        let cameras = c
            .cameras
            .iter()
            .enumerate()
            .map(|(i, fc)| {
                Ok(FloorCamera {
                    camera: CameraId::new(&fc.camera)
                        .map_err(|e| format!("floor_plan.cameras[{i}].camera: {e}"))?,
                    x: fc.x,
                    y: fc.y,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(FloorPlan {
            image: image.into(),
            content_type,
            cameras,
        })
    }

    /// The image's bytes (cheap: shared).
    pub fn image(&self) -> Bytes {
        self.image.clone()
    }

    /// The image's content type, `image/png` or `image/jpeg`.
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }

    /// Where the cameras are on the image.
    pub fn cameras(&self) -> &[FloorCamera] {
        &self.cameras
    }
}

fn read_image(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("floor_plan.image: reading {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FLOOR_PLAN_BYTES {
        return Err(format!("floor_plan.image: {} is too large", path.display()));
    }
    Ok(bytes)
}
