//! The figures a plan takes from what the nodes measure of their cameras
//! (people per frame, detector runs per frame) in place of the configured
//! ones, each held against small moves so plans do not follow every crowd.

use std::collections::BTreeMap;

use vidar_protocol::CameraId;

use crate::planner::{NodeView, SiteCamera};

/// A camera's planned people per frame moves to the measured figure only
/// when that differs by more than this share of the planned one (at least
/// one person's worth): crowds come and go, plans should not follow each.
pub const PERSONS_CHANGE: f64 = 0.25;

/// Sets each camera's `persons` to what the node that ingests it measures
/// (its configured value until then), held in `held` until the measure
/// moves by more than [`PERSONS_CHANGE`].
pub fn measured_persons(
    cameras: &mut [SiteCamera],
    views: &[NodeView],
    held: &mut BTreeMap<CameraId, f64>,
) {
    let moved = |m: f64, h: f64| (m - h).abs() > PERSONS_CHANGE * h.max(1.0);
    let set = |c: &mut SiteCamera, h: f64| c.persons = h;
    hold(cameras, views, held, |v| &v.camera_persons, moved, set);
}

/// A camera's planned detector runs per frame move to the measured share
/// only when it differs by more than this (a camera whose motion comes and
/// goes moves between about 0.6 and 1).
pub const DETECT_SHARE_CHANGE: f64 = 0.15;

/// Sets each camera's `detect_share` to what the node that ingests it
/// measures (1, every frame, until then), held in `held` until the measure
/// moves by more than [`DETECT_SHARE_CHANGE`].
pub fn measured_detect_shares(
    cameras: &mut [SiteCamera],
    views: &[NodeView],
    held: &mut BTreeMap<CameraId, f64>,
) {
    let moved = |m: f64, h: f64| (m - h).abs() > DETECT_SHARE_CHANGE;
    let set = |c: &mut SiteCamera, h: f64| c.detect_share = h;
    hold(
        cameras,
        views,
        held,
        |v| &v.camera_detect_shares,
        moved,
        set,
    );
}

/// Gives each camera with a held figure that figure (`set`): the one its
/// node measures (in `of`), which replaces the held one when
/// `moved(measured, held)`.
fn hold(
    cameras: &mut [SiteCamera],
    views: &[NodeView],
    held: &mut BTreeMap<CameraId, f64>,
    of: impl Fn(&NodeView) -> &[(CameraId, f64)],
    moved: impl Fn(f64, f64) -> bool,
    set: impl Fn(&mut SiteCamera, f64),
) {
    for c in cameras.iter_mut() {
        let measured = views
            .iter()
            .flat_map(&of)
            .find(|(id, _)| *id == c.camera)
            .map(|(_, p)| *p);
        if let Some(m) = measured {
            let h = held.entry(c.camera.clone()).or_insert(m);
            if moved(m, *h) {
                *h = m;
            }
        }
        if let Some(&h) = held.get(&c.camera) {
            set(c, h);
        }
    }
}
