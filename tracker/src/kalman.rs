//! Constant-velocity Kalman filter for one box, on fixed-size nalgebra matrices.
//!
//! The filter owns only its constants ([`MotionConfig`]); it keeps no per-track
//! data. [`BoxKalmanFilter::predict`] and [`BoxKalmanFilter::update`] take a
//! [`KalmanState`] and return a new one, so a track is just a value that the
//! tracker stores next to its other fields.
//!
//! # State and measurement
//! State `x = [cx, cy, w, h, vcx, vcy, vw, vh]` (pixels and pixels/frame):
//! box centre, width and height, and their velocities. Measurement
//! `z = [cx, cy, w, h]`. One step is one frame (`dt = 1`); a gap of `k`
//! frames is `k` predictions.
//!
//! Width and height (not aspect ratio and height as in DeepSORT) are
//! filtered, as in BoT-SORT: a person's aspect ratio changes with every step,
//! and a separate width noise follows that better.
//!
//! # Noise, scaled with box size
//! As in SORT/DeepSORT-family trackers, standard deviations are proportional
//! to the box's own size, so the filter behaves the same for a person 40 px
//! tall far away and 400 px tall close to the camera. With
//! `sp = std_weight_position` (default 1/40), `sv = std_weight_velocity`
//! (default 1/160) and `sm = std_weight_measurement` (default 1/10), and
//! `s = w` for the `x`/`w` axes, `s = h` for `y`/`h`:
//! - initial covariance: position std `2·sp·s`, velocity std `10·sv·s`
//!   (velocity is unknown at birth, hence large);
//! - process noise `Q` per step: position std `sp·s`, velocity std `sv·s`;
//! - measurement noise `R`: std `sm·s`.
//!
//! SORT uses 1/20 for both `sp` and `sm`. Ours keeps them apart because a
//! person's motion and a detector's jitter are different things: people
//! walk smoothly at 25 fps, while detectors' boxes jitter by 3 to 12% of
//! their size (`tracker/eval`'s levels). With `sm = 1/20` a detection 12%
//! off lies outside the chi-square 0.999 gate often (about a third of the
//! time in steady state, by our estimate), so true matches were rejected
//! and tracks split; with 1/10 over 97% are kept (a unit test checks it),
//! and the smoother boxes score better at every level
//! (`tracker/eval/ablation.md`).

use nalgebra::{SMatrix, SVector};
use serde::{Deserialize, Serialize};

use crate::geometry::{BBox, BoxExt};

/// 8-dimensional state vector `[cx, cy, w, h, vcx, vcy, vw, vh]`.
pub type StateVector = SVector<f64, 8>;
/// 8x8 state covariance.
pub type StateMatrix = SMatrix<f64, 8, 8>;
/// 4-dimensional measurement `[cx, cy, w, h]`.
pub type MeasVector = SVector<f64, 4>;
/// 4x4 measurement-space covariance.
pub type MeasMatrix = SMatrix<f64, 4, 4>;

/// 0.95 quantile of the chi-square distribution with 4 degrees of freedom:
/// the textbook Mahalanobis gate for a 4-dimensional measurement.
pub const CHI2_95_4DOF: f64 = 9.4877;
/// 0.99 quantile of the chi-square distribution with 4 degrees of freedom.
pub const CHI2_99_4DOF: f64 = 13.2767;
/// 0.999 quantile of the chi-square distribution with 4 degrees of freedom:
/// the tracker's default gate. A 0.95 gate wrongly rejects one true match in
/// twenty whenever motion departs from the model (a person stopping or
/// turning), which costs identity switches; IoU already rejects far pairs.
pub const CHI2_999_4DOF: f64 = 18.4668;

/// Smallest size (pixels) used to scale noise, so a degenerate box never
/// yields a zero (singular) covariance.
const MIN_NOISE_SCALE: f64 = 1.0;

/// Constants of the motion model. Every field has a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MotionConfig {
    /// Position noise as a fraction of the box size (unitless). Default 1/40.
    pub std_weight_position: f64,
    /// Velocity noise per frame as a fraction of the box size (unitless). Default 1/160.
    pub std_weight_velocity: f64,
    /// Measurement noise (the detector's jitter) as a fraction of the box
    /// size (unitless). Default 1/10.
    pub std_weight_measurement: f64,
    /// Squared-Mahalanobis gate (4 dof) beyond which a detection may not be
    /// matched to a track. Default 18.4668 (chi-square 0.999 quantile).
    pub gating_threshold: f64,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            std_weight_position: 1.0 / 40.0,
            std_weight_velocity: 1.0 / 160.0,
            std_weight_measurement: 1.0 / 10.0,
            gating_threshold: CHI2_999_4DOF,
        }
    }
}

/// Mean and covariance of one track's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KalmanState {
    /// State mean `[cx, cy, w, h, vcx, vcy, vw, vh]`.
    pub mean: StateVector,
    /// State covariance.
    pub covariance: StateMatrix,
}

impl KalmanState {
    /// The box at the state mean (size clamped to at least 1 px).
    pub fn bbox(&self) -> BBox {
        let m = &self.mean;
        BBox::from_center(
            m[0] as f32,
            m[1] as f32,
            m[2].max(1.0) as f32,
            m[3].max(1.0) as f32,
        )
    }
}

/// The state projected into measurement space, pre-factored for gating.
#[derive(Debug, Clone, Copy)]
pub struct Projection {
    /// Projected mean `[cx, cy, w, h]`.
    pub mean: MeasVector,
    /// Variance of the projected centre x, `S₀₀` (bounds the gate's reach).
    pub var_cx: f64,
    /// Inverse of the innovation covariance.
    pub inv_covariance: MeasMatrix,
}

impl Projection {
    /// Squared Mahalanobis distance of a measured box from this projection.
    pub fn squared_mahalanobis(&self, z: &BBox) -> f64 {
        let d = measurement(z) - self.mean;
        (d.transpose() * self.inv_covariance * d)[(0, 0)]
    }
}

/// The constant-velocity box filter: constants only, no per-track data.
#[derive(Debug, Clone, Copy)]
pub struct BoxKalmanFilter {
    config: MotionConfig,
}

/// Inverse of a symmetric 4x4 matrix through its Cholesky factor `L`
/// (`S⁻¹ = L⁻ᵀ L⁻¹`), unrolled for this size; `None` unless the matrix is
/// positive definite and finite. About 100 flops, several times faster than
/// nalgebra's generic decompositions at this size.
// Index loops mirror the textbook Cholesky and triangular-inverse formulas.
#[allow(clippy::needless_range_loop)]
fn invert_spd4(m: &MeasMatrix) -> Option<MeasMatrix> {
    let mut l = [[0.0_f64; 4]; 4];
    for j in 0..4 {
        let mut d = m[(j, j)];
        for k in 0..j {
            d -= l[j][k] * l[j][k];
        }
        if !(d.is_finite() && d > 0.0) {
            return None;
        }
        let djj = d.sqrt();
        l[j][j] = djj;
        for i in j + 1..4 {
            let mut s = m[(i, j)];
            for k in 0..j {
                s -= l[i][k] * l[j][k];
            }
            l[i][j] = s / djj;
        }
    }
    let mut li = [[0.0_f64; 4]; 4];
    for i in 0..4 {
        li[i][i] = 1.0 / l[i][i];
        for j in 0..i {
            let mut s = 0.0;
            for k in j..i {
                s -= l[i][k] * li[k][j];
            }
            li[i][j] = s / l[i][i];
        }
    }
    let mut out = MeasMatrix::zeros();
    for i in 0..4 {
        for j in 0..=i {
            let mut s = 0.0;
            for row in li.iter().skip(i) {
                s += row[i] * row[j];
            }
            out[(i, j)] = s;
            out[(j, i)] = s;
        }
    }
    out.iter().all(|v| v.is_finite()).then_some(out)
}

/// `[cx, cy, w, h]` of a box.
pub fn measurement(b: &BBox) -> MeasVector {
    let (cx, cy) = b.center();
    MeasVector::new(f64::from(cx), f64::from(cy), f64::from(b.w), f64::from(b.h))
}

impl BoxKalmanFilter {
    /// A filter with the given constants.
    pub fn new(config: MotionConfig) -> Self {
        Self { config }
    }

    /// The constants in use.
    pub fn config(&self) -> &MotionConfig {
        &self.config
    }

    /// Per-axis size scale `[w, h, w, h]` of a state or measurement.
    fn scales(w: f64, h: f64) -> [f64; 4] {
        let w = w.abs().max(MIN_NOISE_SCALE);
        let h = h.abs().max(MIN_NOISE_SCALE);
        [w, h, w, h]
    }

    /// A new state from a first measurement, with zero velocity.
    pub fn initiate(&self, z: &BBox) -> KalmanState {
        let m = measurement(z);
        let mut mean = StateVector::zeros();
        mean.fixed_rows_mut::<4>(0).copy_from(&m);
        let s = Self::scales(m[2], m[3]);
        let (sp, sv) = (
            self.config.std_weight_position,
            self.config.std_weight_velocity,
        );
        let mut covariance = StateMatrix::zeros();
        for i in 0..4 {
            covariance[(i, i)] = (2.0 * sp * s[i]).powi(2);
            covariance[(i + 4, i + 4)] = (10.0 * sv * s[i]).powi(2);
        }
        KalmanState { mean, covariance }
    }

    /// One frame ahead under constant velocity.
    pub fn predict(&self, state: &KalmanState) -> KalmanState {
        let s = Self::scales(state.mean[2], state.mean[3]);
        let (sp, sv) = (
            self.config.std_weight_position,
            self.config.std_weight_velocity,
        );
        // x' = F x and P' = F P Fᵀ with F = [[I, I], [0, I]] (4x4 blocks),
        // written out blockwise: 48 additions instead of two 8x8 products.
        let mut mean = state.mean;
        for i in 0..4 {
            mean[i] += mean[i + 4];
        }
        let p = &state.covariance;
        let a = p.fixed_view::<4, 4>(0, 0);
        let b = p.fixed_view::<4, 4>(0, 4);
        let bt = p.fixed_view::<4, 4>(4, 0);
        let c = p.fixed_view::<4, 4>(4, 4);
        let b_c = b + c;
        let bt_c = bt + c;
        let mut covariance = StateMatrix::zeros();
        covariance
            .fixed_view_mut::<4, 4>(0, 0)
            .copy_from(&(a + b + bt_c));
        covariance.fixed_view_mut::<4, 4>(0, 4).copy_from(&b_c);
        covariance.fixed_view_mut::<4, 4>(4, 0).copy_from(&bt_c);
        covariance.fixed_view_mut::<4, 4>(4, 4).copy_from(&c);
        for i in 0..4 {
            covariance[(i, i)] += (sp * s[i]).powi(2);
            covariance[(i + 4, i + 4)] += (sv * s[i]).powi(2);
        }
        KalmanState { mean, covariance }
    }

    /// Innovation covariance `S = H P Hᵀ + R` and projected mean.
    fn innovation(&self, state: &KalmanState) -> (MeasVector, MeasMatrix) {
        let mean = state.mean.fixed_rows::<4>(0).into_owned();
        let mut cov: MeasMatrix = state.covariance.fixed_view::<4, 4>(0, 0).into_owned();
        let s = Self::scales(state.mean[2], state.mean[3]);
        for i in 0..4 {
            cov[(i, i)] += (self.config.std_weight_measurement * s[i]).powi(2);
        }
        (mean, cov)
    }

    /// The state in measurement space, with the inverse innovation
    /// covariance for gating. `None` only if the covariance lost positive
    /// definiteness (a numerical failure the caller should treat as "reset").
    pub fn project(&self, state: &KalmanState) -> Option<Projection> {
        let (mean, cov) = self.innovation(state);
        Some(Projection {
            mean,
            inv_covariance: invert_spd4(&cov)?,
            var_cx: cov[(0, 0)],
        })
    }

    /// Corrects a predicted state with a measured box.
    ///
    /// Standard form: `K = P Hᵀ S⁻¹`, `x' = x + K (z - H x)`,
    /// `P' = P - K H P`, then `P'` is re-symmetrised so rounding cannot make
    /// it drift from symmetric. `H` selects the first four state entries, so
    /// `P Hᵀ` and `H P` are just blocks of `P`. If `S` is not positive
    /// definite (only reachable through NaN input), the track restarts from
    /// the measurement.
    pub fn update(&self, state: &KalmanState, z: &BBox) -> KalmanState {
        match self.project(state) {
            Some(projection) => self.update_projected(state, &projection, z),
            None => self.initiate(z),
        }
    }

    /// [`update`](Self::update) reusing the projection of the same state
    /// (the tracker computes it for gating anyway, so `S⁻¹` is not computed
    /// twice). `projection` must come from `self.project(state)`.
    pub fn update_projected(
        &self,
        state: &KalmanState,
        projection: &Projection,
        z: &BBox,
    ) -> KalmanState {
        let (proj_mean, s_inv) = (projection.mean, projection.inv_covariance);
        let pht: SMatrix<f64, 8, 4> = state.covariance.fixed_view::<8, 4>(0, 0).into_owned();
        let hp: SMatrix<f64, 4, 8> = state.covariance.fixed_view::<4, 8>(0, 0).into_owned();
        let k = pht * s_inv;
        let innovation = measurement(z) - proj_mean;
        let mean = state.mean + k * innovation;
        let mut covariance = state.covariance - k * hp;
        covariance = (covariance + covariance.transpose()) * 0.5;
        KalmanState { mean, covariance }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Cholesky;
    use proptest::prelude::*;

    /// The textbook matrices, to check the blockwise code against.
    fn transition() -> StateMatrix {
        let mut f = StateMatrix::identity();
        for i in 0..4 {
            f[(i, i + 4)] = 1.0;
        }
        f
    }

    proptest! {
        #[test]
        fn blockwise_predict_and_update_match_textbook_form(
            x in 0f64..600.0, y in 0f64..400.0, w in 5f64..200.0, h in 5f64..300.0,
            steps in 1usize..5, dz in prop::array::uniform4(-10f64..10.0),
        ) {
            let kf = filter();
            let b = BBox::new(x as f32, y as f32, w as f32, h as f32);
            let mut state = kf.initiate(&b);
            state.covariance[(0, 4)] = 0.3;
            state.covariance[(4, 0)] = 0.3;
            let f = transition();
            for _ in 0..steps {
                let fast = kf.predict(&state);
                let slow_cov = f * state.covariance * f.transpose();
                let slow_mean = f * state.mean;
                prop_assert!((fast.mean - slow_mean).abs().max() < 1e-9);
                // Only the process noise on the diagonal differs.
                let diff = fast.covariance - slow_cov;
                prop_assert!((diff - StateMatrix::from_diagonal(&diff.diagonal())).abs().max() < 1e-9);
                state = fast;
            }
            let z = BBox::new((x + dz[0]) as f32, (y + dz[1]) as f32, (w + dz[2]).max(1.0) as f32, (h + dz[3]).max(1.0) as f32);
            let fast = kf.update(&state, &z);
            let mut hm = SMatrix::<f64, 4, 8>::zeros();
            for i in 0..4 {
                hm[(i, i)] = 1.0;
            }
            let (_, s) = kf.innovation(&state);
            let k = state.covariance * hm.transpose() * s.try_inverse().expect("invertible");
            let slow_mean = state.mean + k * (measurement(&z) - hm * state.mean);
            let slow_cov = (StateMatrix::identity() - k * hm) * state.covariance;
            prop_assert!((fast.mean - slow_mean).abs().max() < 1e-6);
            prop_assert!((fast.covariance - slow_cov).abs().max() < 1e-6);
        }
    }

    proptest! {
        #[test]
        fn spd_inverse_matches_nalgebra(a in prop::array::uniform16(-3f64..3.0), shift in 0.1f64..5.0) {
            // A Aᵀ + shift·I is symmetric positive definite.
            let a = MeasMatrix::from_row_slice(&a);
            let m = a * a.transpose() + MeasMatrix::identity() * shift;
            let ours = invert_spd4(&m).expect("positive definite");
            let reference = m.try_inverse().expect("invertible");
            prop_assert!((ours - reference).abs().max() < 1e-8 * (1.0 + reference.abs().max()));
        }
    }

    #[test]
    fn non_positive_definite_innovation_is_rejected() {
        assert!(invert_spd4(&MeasMatrix::identity()).is_some());
        assert!(invert_spd4(&-MeasMatrix::identity()).is_none());
        // Symmetric and invertible but indefinite.
        let indefinite = MeasMatrix::from_diagonal(&MeasVector::new(1.0, 1.0, -1.0, 1.0));
        assert!(invert_spd4(&indefinite).is_none());
        let mut m = MeasMatrix::identity();
        m[(3, 3)] = f64::NAN;
        assert!(invert_spd4(&m).is_none());
    }

    fn filter() -> BoxKalmanFilter {
        BoxKalmanFilter::new(MotionConfig::default())
    }

    fn is_positive_definite(m: &StateMatrix) -> bool {
        (m - m.transpose()).abs().max() < 1e-6 && Cholesky::new(*m).is_some()
    }

    #[test]
    fn constant_velocity_box_is_predicted_within_a_pixel_after_ten_steps() {
        let kf = filter();
        let (vx, vy) = (3.0_f32, -1.5_f32);
        let at = |t: f32| BBox::new(100.0 + vx * t, 200.0 + vy * t, 40.0, 100.0);
        let mut state = kf.initiate(&at(0.0));
        for t in 1..=10 {
            state = kf.predict(&state);
            state = kf.update(&state, &at(t as f32));
        }
        // Ten observed steps; now predict the 11th without a measurement.
        let predicted = kf.predict(&state).bbox();
        let truth = at(11.0);
        for (p, t) in [
            (predicted.x, truth.x),
            (predicted.y, truth.y),
            (predicted.w, truth.w),
            (predicted.h, truth.h),
        ] {
            assert!(
                (p - t).abs() < 1.0,
                "predicted {predicted:?}, truth {truth:?}"
            );
        }
    }

    #[test]
    fn covariance_stays_positive_definite() {
        let kf = filter();
        let mut state = kf.initiate(&BBox::new(0.0, 0.0, 30.0, 80.0));
        for t in 0..500 {
            state = kf.predict(&state);
            assert!(is_positive_definite(&state.covariance), "after predict {t}");
            // Measurements only every third frame, with a varying size.
            if t % 3 == 0 {
                let s = 1.0 + 0.2 * ((t as f32) * 0.1).sin();
                state = kf.update(
                    &state,
                    &BBox::new(t as f32, 0.5 * t as f32, 30.0 * s, 80.0 * s),
                );
                assert!(is_positive_definite(&state.covariance), "after update {t}");
            }
        }
    }

    #[test]
    fn update_pulls_mean_towards_measurement_and_shrinks_uncertainty() {
        let kf = filter();
        let state = kf.predict(&kf.initiate(&BBox::new(0.0, 0.0, 50.0, 100.0)));
        let updated = kf.update(&state, &BBox::new(10.0, 0.0, 50.0, 100.0));
        assert!(updated.mean[0] > state.mean[0] && updated.mean[0] < 35.0);
        assert!(updated.covariance[(0, 0)] < state.covariance[(0, 0)]);
    }

    #[test]
    fn gating_distance_grows_with_offset() {
        let kf = filter();
        let state = kf.predict(&kf.initiate(&BBox::new(0.0, 0.0, 50.0, 100.0)));
        let proj = kf.project(&state).expect("positive definite");
        let near = proj.squared_mahalanobis(&BBox::new(1.0, 0.0, 50.0, 100.0));
        let far = proj.squared_mahalanobis(&BBox::new(60.0, 0.0, 50.0, 100.0));
        assert!(near < CHI2_95_4DOF);
        assert!(far > CHI2_95_4DOF);
        assert!(far > near);
    }
}
