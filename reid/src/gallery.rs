//! The gallery of known identities. Identities are decided per *track*: the
//! caller hands in the quality-weighted mean embedding of a track's best crops
//! with the track's camera and time span ([`TrackQuery`]), and the gallery
//! matches it against a few prototypes per identity, with a threshold and a
//! margin over the runner-up, under two hard constraints:
//!
//! - an identity is never given to two tracks that overlap in time on one
//!   camera (two people on screen at once are two people);
//! - an identity is never given to a track that is physically impossible
//!   given where the identity was last seen: on another camera at the same
//!   time (unless that pair of cameras has been seen to overlap), or sooner
//!   than the shortest transit learned for that pair of cameras. Transit times
//!   are learned per ordered camera pair from confident matches only.
//!
//! Every identity carries the tag of the model that made its embeddings
//! ([`Gallery::with_model`]); vectors of another model are refused, never
//! compared. Bounded: at most `max_identities` (least recently seen evicted),
//! `max_prototypes` per identity, a few appearances per identity, a bounded
//! transit sample per camera pair. Pure and synchronous: time is passed in
//! (milliseconds of capture time), so behaviour is reproducible.

use std::collections::HashMap;

use serde::Deserialize;
use vidar_config::{Config, Problem, Problems};
use vidar_protocol::{CameraId, IdentityId, TrackId, UnixMs};

use crate::{Embedding, ReidError};

/// Settings of a [`Gallery`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GalleryConfig {
    /// Lowest cosine similarity (-1..1) between a track's mean embedding and an
    /// identity's prototype that counts as the same person. Default 0.64: the
    /// threshold for 1 % false matches between tracklets (mean embedding of
    /// one person's images on one camera) of the default model (OSNet x0.25
    /// MSMT17 combineall) on CUHK01, all 700 ids (0.637), measured by
    /// `vidar-edge eval reid` (docs/benchmarks.md, "Re-ID accuracy").
    pub match_threshold: f32,
    /// Similarity at or above which a match is *confident*: only those teach
    /// the hard transit rules (the shortest transit between two cameras,
    /// see `transit_min_samples`), and only those witness that two
    /// cameras' views overlap (a person on both at once): such a match is
    /// still refused until `transit_min_samples` witnesses make up at least
    /// half of what the pair has taught, so one false match never gives an
    /// identity to two people on screen at once. Default 0.72
    /// (tracklets, 0.1 % false matches, same measurement: 0.719).
    pub confident_threshold: f32,
    /// The best identity must beat the runner-up by this much, else a new
    /// identity is minted rather than guessing. Default 0.03.
    pub ambiguity_margin: f32,
    /// Most identities kept; the least recently seen is evicted. Default 10000.
    pub max_identities: usize,
    /// Identities unseen for this long are dropped by [`Gallery::expire`], in seconds. Default 1800.
    pub max_age_s: u64,
    /// Weight of a new track in the prototype it is folded into, 0..1. Default 0.3.
    pub update_weight: f32,
    /// Prototypes (distinct views) kept per identity, 1..=16. Default 4.
    pub max_prototypes: usize,
    /// A track this similar to an existing prototype is folded into it instead
    /// of becoming a new prototype. Default 0.85.
    pub prototype_merge: f32,
    /// Confident transits needed before a camera pair's learned minimum is
    /// enforced. Default 3.
    pub transit_min_samples: usize,
    /// Slack below the shortest learned transit that is still accepted, ms. Default 2000.
    pub transit_slack_ms: u64,
    /// This node's prefix in minted ids (the top 16 bits), so that nodes never mint the same id. Default 0.
    pub node_prefix: u16,
    /// How far the match threshold rises per tenfold growth of the crowd a
    /// track is compared with. With N allowed identities, the chance that
    /// some stranger clears a fixed threshold grows about N-fold, so above
    /// `crowd_reference` identities the threshold is `match_threshold +
    /// crowd_step * log10(N / crowd_reference)`, capped at
    /// `confident_threshold`; a decision looked at again (a minted track's
    /// later views) takes `confident_threshold` raised the same way. 0 keeps
    /// them fixed. Default 0.082: the default model's calibrated thresholds
    /// (tracklets, CUHK01) lie 0.082 apart per tenfold fewer false matches
    /// (0.637 at 1 %, 0.719 at 0.1 %). Measured through the node
    /// (docs/benchmarks.md, "A threshold that grows with the crowd"):
    /// cross-camera identity F1 +0.06 to +0.12 on a 30-person scene, no
    /// change beyond noise on 12-person scenes (mean 0.769 vs 0.768 over five
    /// seeds).
    pub crowd_step: f32,
    /// Allowed identities up to which `match_threshold` applies as it is. Default 12.
    pub crowd_reference: usize,
    /// Let one confident match join two cameras' tracks that overlap in
    /// time before the overlap is learned (the rule before session 8).
    /// Default false: measured on the 12-person composite scenes (five
    /// seeds each), on: 3 of 15 runs gave one identity to two people on
    /// screen at once; off: 0 of 5, at a lower median F1 (0.691 against
    /// 0.783; mean 0.735 against 0.762), since a track that lingers on one
    /// camera while its person appears on the next also counts as overlap.
    pub overlap_on_confident: bool,
    /// How far a camera pair's learned transit times move a candidate's
    /// score, in similarity per tenfold odds (the scale of `crowd_step`).
    /// A track that begins on one camera when the pair's learned transits
    /// say people arrive from where a candidate was last seen is up to
    /// tenfold likelier that person (+`transit_weight`); one that begins
    /// far from every learned transit, up to about three times less likely
    /// (-`transit_weight / 2`: a stop, a detour or a late detection makes
    /// an unusual transit weaker evidence against a person than a usual
    /// one is for them). The odds are the learned transit density (a
    /// kernel estimate over the pair's transits from matches whose
    /// similarity alone cleared `match_threshold`) against a stranger's,
    /// taken as even over `transit_horizon_s`. Only pairs with at least
    /// `transit_min_samples` such transits weigh in; a candidate last seen
    /// on the track's own camera is not moved. A match the prior tipped
    /// teaches nothing, so the prior never teaches itself. 0 turns it off. Default 0.082 (the default model's
    /// calibration, as `crowd_step`); measured in docs/benchmarks.md
    /// ("Transit times as a prior").
    pub transit_weight: f32,
    /// Span over which a stranger's last sighting is taken as equally
    /// likely at any time, seconds (the prior's reference density is one
    /// over it). Default 60.
    pub transit_horizon_s: u64,
    /// How much higher every threshold is for a view made on the track's
    /// own camera. Two different people seen by one camera share its
    /// angle, light and background, so they look more alike than across
    /// cameras: at the same false-match rate the bar is higher. Every
    /// threshold (match, confident, a minted track's later looks) is
    /// raised by it for such a view: a candidate's score is its similarity
    /// less the margin, so that views of both kinds are weighed by the
    /// same odds. Default 0.05: for the default model on CUHK01, ids 1-700,
    /// tracklets of different people on one camera need 0.689 for 1 %
    /// false matches and 0.769 for 0.1 %, against 0.637 and 0.719 across
    /// cameras (`vidar-edge eval reid`). 0 turns it off.
    pub same_camera_margin: f32,
    /// Tracks a camera must have decided before a route into it that has
    /// carried no match counts as unlikely. A candidate last seen on a
    /// camera from which none of those tracks came (no match that cleared
    /// `match_threshold` on appearance alone) is weighed as a transit far
    /// from every learned one, -`transit_weight / 2`; the penalty shrinks
    /// with each matched transit of the route and is gone once the pair has
    /// the `transit_min_samples` that its transit prior needs. A camera
    /// where people enter a site decides many tracks of strangers, and a
    /// look-alike last seen where people leave is not taken for one of them
    /// on appearance barely over the bar. 0 (the default) turns it off;
    /// 10 is the value measured in docs/benchmarks.md ("A route no match
    /// has taken"): better on a 30-person scene, worse on a 12-person one
    /// (returning people are held back until the route has its first
    /// matches), no better in all.
    pub unseen_route_after: usize,
}

impl Default for GalleryConfig {
    fn default() -> Self {
        Self {
            match_threshold: 0.64,
            confident_threshold: 0.72,
            ambiguity_margin: 0.03,
            max_identities: 10_000,
            max_age_s: 1800,
            update_weight: 0.3,
            max_prototypes: 4,
            prototype_merge: 0.85,
            transit_min_samples: 3,
            transit_slack_ms: 2000,
            node_prefix: 0,
            crowd_step: 0.082,
            crowd_reference: 12,
            overlap_on_confident: false,
            transit_weight: 0.082,
            transit_horizon_s: 60,
            same_camera_margin: 0.05,
            unseen_route_after: 0,
        }
    }
}

impl Config for GalleryConfig {
    type Output = Gallery;
    /// The tag of the model whose embeddings the gallery will hold.
    type Context = str;
    type Error = ReidError;

    fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        p.within("match_threshold", self.match_threshold, -1.0, 1.0);
        p.within("confident_threshold", self.confident_threshold, -1.0, 1.0);
        p.within("ambiguity_margin", self.ambiguity_margin, 0.0, 1.0);
        p.within("update_weight", self.update_weight, 0.0, 1.0);
        p.within("prototype_merge", self.prototype_merge, -1.0, 1.0);
        p.within("crowd_step", self.crowd_step, 0.0, 1.0);
        p.within("transit_weight", self.transit_weight, 0.0, 1.0);
        if self.transit_horizon_s == 0 {
            p.push("transit_horizon_s", "must be > 0");
        }
        if self.crowd_reference == 0 {
            p.push("crowd_reference", "must be > 0");
        }
        p.within("same_camera_margin", self.same_camera_margin, 0.0, 1.0);
        if self.confident_threshold < self.match_threshold {
            p.push(
                "confident_threshold",
                format!(
                    "{} must be at least match_threshold ({})",
                    self.confident_threshold, self.match_threshold
                ),
            );
        }
        if self.max_identities == 0 {
            p.push("max_identities", "must be > 0");
        }
        if self.max_age_s == 0 {
            p.push("max_age_s", "must be > 0");
        }
        if !(1..=16).contains(&self.max_prototypes) {
            p.push(
                "max_prototypes",
                format!("must be in 1..=16, got {}", self.max_prototypes),
            );
        }
        p.into_vec()
    }

    /// An empty gallery for the embeddings of the model tagged `model`.
    fn build(&self, model: &str) -> Result<Gallery, ReidError> {
        Gallery::with_model(self.clone(), model)
    }
}

/// Where an identity was minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// By this gallery.
    Local,
    /// By another node, received as a replica.
    Remote,
}

/// One track (or a remote sighting) that carried an identity: where and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appearance {
    /// Camera.
    pub camera: CameraId,
    /// Track id on that camera (None when unknown, e.g. a restored identity).
    pub track: Option<TrackId>,
    /// First time seen, ms.
    pub first_ms: UnixMs,
    /// Last time seen, ms.
    pub last_ms: UnixMs,
}

/// `last_ms` of an appearance whose track is still open (on screen now).
pub const OPEN: UnixMs = UnixMs::MAX;

/// Appearances kept per identity (the most recent).
const MAX_APPEARANCES: usize = 16;
/// Transit samples kept per ordered camera pair.
const MAX_TRANSITS: usize = 64;
/// Smallest kernel width of the transit prior, ms.
const MIN_BANDWIDTH_MS: f64 = 1000.0;
/// Smallest kernel width of the transit prior as a share of the mean
/// learned transit: walking speeds vary by about a quarter, and transits are
/// measured between detections, which lag a person's entering the view.
const RELATIVE_BANDWIDTH: f64 = 0.25;
/// Most the transit prior takes away, in tenfold odds (it gives at most 1):
/// an unusual transit (a stop, a detour, a late detection) is weaker
/// evidence against a person than a usual one is for them.
const MAX_PENALTY_DECADES: f64 = 0.5;

/// One distinct view of an identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Prototype {
    /// The view's embedding.
    pub embedding: Embedding,
    /// The camera every track folded into this view was seen by (None:
    /// several, or not known, e.g. the mean an identity was stored as).
    pub camera: Option<CameraId>,
}

impl Prototype {
    /// A view made on `camera` (None: unknown).
    pub fn new(embedding: Embedding, camera: Option<CameraId>) -> Self {
        Self { embedding, camera }
    }
}

/// A known person.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Global id.
    pub id: IdentityId,
    /// Representative embedding (normalised mean of the prototypes): what is
    /// stored and announced.
    pub embedding: Embedding,
    /// Distinct views, at most `max_prototypes`; never empty.
    pub prototypes: Vec<Prototype>,
    /// Tag of the model that made the embeddings.
    pub model: String,
    /// Camera of the latest sighting.
    pub camera: CameraId,
    /// First sighting, ms.
    pub first_seen_ms: UnixMs,
    /// Latest sighting, ms.
    pub last_seen_ms: UnixMs,
    /// Number of tracks (sightings) folded in.
    pub sightings: u64,
    /// Minted here or elsewhere.
    pub origin: Origin,
    /// Recent appearances, oldest first, at most [`MAX_APPEARANCES`].
    pub appearances: Vec<Appearance>,
}

impl Identity {
    /// An identity with one view, seen once on `camera` at `seen_ms`.
    pub fn single(
        id: IdentityId,
        embedding: Embedding,
        model: &str,
        camera: CameraId,
        seen_ms: UnixMs,
        origin: Origin,
    ) -> Identity {
        Identity {
            id,
            prototypes: vec![Prototype::new(embedding.clone(), Some(camera.clone()))],
            embedding,
            model: model.to_owned(),
            appearances: vec![Appearance {
                camera: camera.clone(),
                track: None,
                first_ms: seen_ms,
                last_ms: seen_ms,
            }],
            camera,
            first_seen_ms: seen_ms,
            last_seen_ms: seen_ms,
            sightings: 1,
            origin,
        }
    }

    /// Highest cosine similarity of `e` to a prototype.
    pub fn similarity(&self, e: &Embedding) -> f32 {
        self.prototypes
            .iter()
            .map(|p| p.embedding.cosine(e))
            .fold(f32::MIN, f32::max)
    }

    /// How strongly `e`, seen on `camera`, matches this identity, on the
    /// cross-camera scale: the highest similarity to a prototype, a view
    /// made on `camera` itself counting `same_camera_margin` less (see
    /// [`GalleryConfig::same_camera_margin`]).
    pub fn evidence(&self, e: &Embedding, camera: &CameraId, same_camera_margin: f32) -> f32 {
        self.prototypes
            .iter()
            .map(|p| {
                let s = p.embedding.cosine(e);
                if p.camera.as_ref() == Some(camera) {
                    s - same_camera_margin
                } else {
                    s
                }
            })
            .fold(f32::MIN, f32::max)
    }
}

/// A track to identify: its mean embedding and where and when it is.
#[derive(Debug, Clone, Copy)]
pub struct TrackQuery<'a> {
    /// Quality-weighted mean of the track's crop embeddings, unit length.
    pub embedding: &'a Embedding,
    /// The track's camera.
    pub camera: &'a CameraId,
    /// The track's id on that camera (tracks are told apart by it); None for
    /// a one-crop query that is its own track ([`Gallery::assign`]).
    pub track: Option<TrackId>,
    /// First time the track was seen, ms.
    pub first_ms: UnixMs,
    /// Latest time the track was seen, ms.
    pub last_ms: UnixMs,
}

/// Why a known identity was not given to a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// Another track on the same camera holds it at the same time.
    Concurrent,
    /// It was on another camera at the same time, and that pair of cameras is
    /// not known to overlap.
    Elsewhere,
    /// It was on another camera too recently for the learned transit time.
    TooSoon,
}

/// What [`Gallery::assign_track`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Assignment {
    /// Same person as a known identity.
    Matched {
        /// The identity.
        id: IdentityId,
        /// Cosine similarity to its closest prototype, on the cross-camera
        /// scale ([`Identity::evidence`]: less `same_camera_margin` for a
        /// view from the track's own camera).
        similarity: f32,
    },
    /// A new identity was minted.
    New {
        /// The new id.
        id: IdentityId,
        /// Score of the closest allowed identity, if any (below threshold or
        /// ambiguous): its similarity moved by the transit prior.
        closest: Option<f32>,
    },
}

impl Assignment {
    /// The identity assigned either way.
    pub fn id(&self) -> IdentityId {
        match *self {
            Assignment::Matched { id, .. } | Assignment::New { id, .. } => id,
        }
    }
}

/// The most recent transit samples, ms (negative: the views overlapped in
/// time), at most [`MAX_TRANSITS`].
#[derive(Debug, Default, Clone)]
struct Ring {
    samples: Vec<i64>,
    /// Next slot to overwrite once full.
    next: usize,
}

impl Ring {
    fn add(&mut self, dt: i64) {
        if self.samples.len() < MAX_TRANSITS {
            self.samples.push(dt);
        } else {
            self.samples[self.next] = dt;
            self.next = (self.next + 1) % MAX_TRANSITS;
        }
    }
    /// Samples where the views did not overlap.
    fn transits(&self) -> impl Iterator<Item = i64> + '_ {
        self.samples.iter().copied().filter(|&d| d >= 0)
    }
}

/// Learned transit times of one ordered camera pair.
#[derive(Debug, Default, Clone)]
struct Transits {
    /// From confident matches only: the hard rules (shortest transit,
    /// overlapping views) rest on these.
    confident: Ring,
    /// From every match that cleared the match threshold on appearance
    /// alone (confident ones included): the prior's density rests on these.
    matched: Ring,
}

impl Transits {
    fn add(&mut self, dt: i64, confident: bool) {
        if confident {
            self.confident.add(dt);
        }
        self.matched.add(dt);
    }
    /// Shortest confident transit (samples where the views did not overlap).
    fn min_transit(&self) -> Option<i64> {
        self.confident.transits().min()
    }
    /// Confident samples where the views did not overlap.
    fn transits(&self) -> usize {
        self.confident.transits().count()
    }
    /// Matches the route has carried, views overlapping or not.
    fn matches(&self) -> usize {
        self.matched.samples.len()
    }
    /// Density of the pair's transits at `dt` (per ms), a Gaussian kernel
    /// estimate over the matched samples where the views did not overlap;
    /// `None` with fewer than `need` of them. Bandwidth: Silverman's rule,
    /// at least [`MIN_BANDWIDTH_MS`] (capture times jitter by frames and
    /// detections) and [`RELATIVE_BANDWIDTH`] of the mean transit.
    fn density(&self, dt: i64, need: usize) -> Option<f64> {
        let n = self.matched.transits().count();
        if n < need.max(1) {
            return None;
        }
        let xs = || self.matched.transits().map(|d| d as f64);
        let mean = xs().sum::<f64>() / n as f64;
        let var = xs().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        let h = (1.06 * var.sqrt() * (n as f64).powf(-0.2))
            .max(MIN_BANDWIDTH_MS)
            .max(RELATIVE_BANDWIDTH * mean);
        let k: f64 = xs()
            .map(|x| {
                let z = (dt as f64 - x) / h;
                (-0.5 * z * z).exp()
            })
            .sum();
        Some(k / (n as f64 * h * (2.0 * std::f64::consts::PI).sqrt()))
    }
    /// The views are known to overlap: at least `need` confident witnesses of
    /// a person on both cameras at once, and at least half of all samples
    /// (a pair whose views do not overlap collects true transits far faster
    /// than false witnesses).
    fn overlap_known(&self, need: usize) -> bool {
        let all = self.confident.samples.len();
        let overlaps = all - self.transits();
        overlaps >= need && 2 * overlaps >= all
    }
}

/// One identity a decision weighed ([`Gallery::candidates`]).
#[derive(Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The identity.
    pub id: IdentityId,
    /// Cosine similarity to its closest prototype, on the cross-camera
    /// scale ([`Identity::evidence`]).
    pub similarity: f32,
    /// What the transit prior adds to it.
    pub prior: f32,
    /// Why it may not be given to the track (None: allowed).
    pub excluded: Option<Excluded>,
}

/// Compact: `id:similarity+prior` and the exclusion, for decision logs.
impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{:.3}{:+.3}", self.id.0, self.similarity, self.prior)?;
        match self.excluded {
            Some(e) => write!(f, ":{e:?}"),
            None => Ok(()),
        }
    }
}

/// The closest allowed identity of a track, as [`Gallery::scan`] finds it.
#[derive(Debug, Clone, Copy)]
struct Found {
    id: IdentityId,
    /// Its similarity moved by the transit prior: what decides.
    score: f32,
    /// Cosine similarity to its closest prototype, on the cross-camera
    /// scale ([`Identity::evidence`]).
    similarity: f32,
    /// Score of the closest allowed identity of another person.
    second: Option<f32>,
    /// Identities allowed (the crowd).
    crowd: usize,
}

/// A bounded set of identities with track-level matching.
#[derive(Debug)]
pub struct Gallery {
    config: GalleryConfig,
    model: String,
    identities: Vec<Identity>,
    index: HashMap<IdentityId, usize>,
    next_seq: u64,
    dim: Option<usize>,
    /// Learned transits, by camera left and then camera reached (looked up
    /// by reference on every candidate: no key is built per lookup).
    transits: HashMap<CameraId, HashMap<CameraId, Transits>>,
    /// Tracks decided per camera (matched or minted): how much the absence
    /// of a route into it says (see [`GalleryConfig::unseen_route_after`]).
    decided: HashMap<CameraId, usize>,
}

const SEQ_BITS: u32 = 48;

impl Gallery {
    /// An empty gallery for embeddings of an untagged model (tests); nodes use [`Gallery::with_model`].
    pub fn new(config: GalleryConfig) -> Result<Self, ReidError> {
        Self::with_model(config, "")
    }

    /// An empty gallery for embeddings made by the model tagged `model`.
    pub fn with_model(config: GalleryConfig, model: &str) -> Result<Self, ReidError> {
        config.check()?;
        Ok(Self {
            config,
            model: model.to_owned(),
            identities: Vec::new(),
            index: HashMap::new(),
            next_seq: 1,
            dim: None,
            transits: HashMap::new(),
            decided: HashMap::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &GalleryConfig {
        &self.config
    }

    /// The model tag every identity here carries.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The embedder now runs the model tagged `model` (a model refresh).
    /// Vectors of two models are never compared, so every identity here
    /// (made of the old model's vectors) is retired: a person seen again gets
    /// a new identity, which the master's merges and the operators may join
    /// to the old one. What is not about appearance stays: the learned
    /// transits between cameras, and the id sequence (no id is reused).
    /// Returns how many identities were retired (0 if the tag is unchanged).
    pub fn remodel(&mut self, model: &str) -> usize {
        if model == self.model {
            return 0;
        }
        let retired = self.identities.len();
        self.identities.clear();
        self.index.clear();
        self.dim = None;
        self.model = model.to_owned();
        retired
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// The identity `id`, if known.
    pub fn get(&self, id: IdentityId) -> Option<&Identity> {
        self.index.get(&id).map(|&i| &self.identities[i])
    }

    /// All identities, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Identity> {
        self.identities.iter()
    }

    fn check(&mut self, e: &Embedding, model: &str) -> Result<(), ReidError> {
        if model != self.model {
            return Err(ReidError::ModelMismatch {
                expected: self.model.clone(),
                actual: model.to_owned(),
            });
        }
        match self.dim {
            None => {
                self.dim = Some(e.len());
                Ok(())
            }
            Some(d) if d == e.len() => Ok(()),
            Some(d) => Err(ReidError::Dimension {
                expected: d,
                actual: e.len(),
            }),
        }
    }

    /// Why `ident` cannot be the person of `q`, if it cannot.
    fn excluded(&self, ident: &Identity, q: &TrackQuery<'_>, similarity: f32) -> Option<Excluded> {
        for a in &ident.appearances {
            if a.camera == *q.camera {
                if a.track != q.track && a.first_ms <= q.last_ms && q.first_ms <= a.last_ms {
                    return Some(Excluded::Concurrent);
                }
                continue;
            }
            // Transit from the appearance's camera to the query's.
            let dt = q.first_ms.since(a.last_ms);
            if q.last_ms < a.first_ms {
                // The query ended before this appearance began: the reverse
                // transit applies; without it, only overlap rules below.
                let back = a.first_ms.since(q.last_ms);
                if let Some(why) = self.transit_rule(q.camera, &a.camera, back, similarity) {
                    return Some(why);
                }
                continue;
            }
            if let Some(why) = self.transit_rule(&a.camera, q.camera, dt, similarity) {
                return Some(why);
            }
        }
        None
    }

    fn transit_rule(
        &self,
        from: &CameraId,
        to: &CameraId,
        dt: i64,
        similarity: f32,
    ) -> Option<Excluded> {
        let learned = self.transits.get(from).and_then(|m| m.get(to));
        if dt < 0 {
            // Seen on both cameras at once: only where the views are known to
            // overlap, however similar (confident matches witness an
            // overlap, see `assign_track`, but never decide one alone).
            let known = learned.is_some_and(|t| t.overlap_known(self.config.transit_min_samples))
                || (self.config.overlap_on_confident
                    && similarity >= self.config.confident_threshold);
            return (!known).then_some(Excluded::Elsewhere);
        }
        let n = learned.map_or(0, Transits::transits);
        let min = learned.and_then(Transits::min_transit);
        if n >= self.config.transit_min_samples {
            if let Some(m) = min {
                if dt + (self.config.transit_slack_ms as i64) < m
                    && similarity < self.config.confident_threshold
                {
                    return Some(Excluded::TooSoon);
                }
            }
        }
        None
    }

    /// The closest allowed identity for `q` and the runner-up's similarity.
    /// The runner-up is the closest allowed identity of *another person*: an
    /// identity whose representative embedding is confidently the best's
    /// (at least `confident_threshold`) is the same person minted twice (a
    /// track broken by an occlusion), and does not make the choice ambiguous.
    pub fn best_match(&self, q: &TrackQuery<'_>) -> Option<(IdentityId, f32, Option<f32>)> {
        self.best_match_except(q, None)
    }

    /// [`best_match`](Self::best_match) leaving out the identity `skip`.
    pub fn best_match_except(
        &self,
        q: &TrackQuery<'_>,
        skip: Option<IdentityId>,
    ) -> Option<(IdentityId, f32, Option<f32>)> {
        self.closest(q, skip)
            .map(|(id, s, second, _)| (id, s, second))
    }

    /// How much a crowd of `candidates` allowed identities raises the
    /// thresholds (see [`GalleryConfig::crowd_step`]).
    pub fn crowd_raise(&self, candidates: usize) -> f32 {
        let c = &self.config;
        if c.crowd_step <= 0.0 || candidates <= c.crowd_reference {
            return 0.0;
        }
        c.crowd_step * (candidates as f32 / c.crowd_reference as f32).log10()
    }

    /// The match threshold for a track that `candidates` identities may be
    /// given to: `match_threshold` raised by the crowd, at most
    /// `confident_threshold`.
    pub fn threshold(&self, candidates: usize) -> f32 {
        let c = &self.config;
        (c.match_threshold + self.crowd_raise(candidates))
            .min(c.confident_threshold.max(c.match_threshold))
    }

    /// [`best_match_except`](Self::best_match_except), and how many
    /// identities were allowed (the crowd the decision is made in). The
    /// scores are similarities moved by the transit prior
    /// ([`transit_prior`](Self::transit_prior)): what decisions compare.
    pub fn closest(
        &self,
        q: &TrackQuery<'_>,
        skip: Option<IdentityId>,
    ) -> Option<(IdentityId, f32, Option<f32>, usize)> {
        self.scan(q, skip)
            .0
            .map(|f| (f.id, f.score, f.second, f.crowd))
    }

    /// How the learned transit times move `ident`'s score for the track
    /// `q`, in similarity, from -`transit_weight / 2` to +`transit_weight` (see
    /// [`GalleryConfig::transit_weight`]). 0 when the prior is off, when the
    /// identity was last seen on `q`'s camera or is still on screen, and
    /// when that camera pair has learned fewer than `transit_min_samples`
    /// transits, unless the pair is a route few matches have taken (see
    /// [`GalleryConfig::unseen_route_after`]).
    pub fn transit_prior(&self, ident: &Identity, q: &TrackQuery<'_>) -> f32 {
        let w = self.config.transit_weight;
        if w <= 0.0 {
            return 0.0;
        }
        let Some(last) = ident.appearances.iter().max_by_key(|a| a.last_ms) else {
            return 0.0;
        };
        if last.last_ms >= OPEN || last.camera == *q.camera {
            return 0.0;
        }
        let dt = q.first_ms.since(last.last_ms);
        if dt < 0 {
            return 0.0;
        }
        let route = self
            .transits
            .get(&last.camera)
            .and_then(|m| m.get(q.camera));
        let Some(density) = route.and_then(|t| t.density(dt, self.config.transit_min_samples))
        else {
            return self.unseen_route(route.map_or(0, Transits::matches), q.camera);
        };
        let horizon_ms = self.config.transit_horizon_s as f64 * 1000.0;
        let decades = (density * horizon_ms)
            .max(1e-12)
            .log10()
            .clamp(-MAX_PENALTY_DECADES, 1.0);
        w * decades as f32
    }

    /// What a candidate last seen on a camera whose route to `to` has
    /// carried only `matches` matches loses (see
    /// [`GalleryConfig::unseen_route_after`]): -`transit_weight / 2` for a
    /// route never taken, shrinking to 0 at `transit_min_samples` matches;
    /// 0 until `to` has decided `unseen_route_after` tracks.
    fn unseen_route(&self, matches: usize, to: &CameraId) -> f32 {
        let after = self.config.unseen_route_after;
        let need = self.config.transit_min_samples.max(1);
        if after == 0 || matches >= need || self.decided.get(to).copied().unwrap_or(0) < after {
            return 0.0;
        }
        let unseen = (need - matches) as f32 / need as f32;
        -self.config.transit_weight * MAX_PENALTY_DECADES as f32 * unseen
    }

    /// The closest allowed identity (see [`Found`]), and the identity `q`
    /// matches best at or above `confident_threshold` among those refused
    /// only for being on another camera at the same time (a witness that
    /// the views overlap, see [`GalleryConfig::confident_threshold`]). One
    /// pass: similarity and rules once per identity; the runner-up is
    /// picked from the allowed ones. The transit prior is weighed only for
    /// identities it could lift into a decision (similarity at least
    /// `match_threshold - ambiguity_margin - transit_weight`); below that
    /// the score is the similarity.
    fn scan(
        &self,
        q: &TrackQuery<'_>,
        skip: Option<IdentityId>,
    ) -> (Option<Found>, Option<(IdentityId, f32)>) {
        let confident = self.config.confident_threshold;
        let relevant =
            self.config.match_threshold - self.config.ambiguity_margin - self.config.transit_weight;
        let margin = self.config.same_camera_margin;
        let mut witness: Option<(IdentityId, f32)> = None;
        // (index, score, similarity)
        let allowed: Vec<(usize, f32, f32)> = self
            .identities
            .iter()
            .enumerate()
            .filter_map(|(k, ident)| {
                if Some(ident.id) == skip {
                    return None;
                }
                let s = ident.evidence(q.embedding, q.camera, margin);
                match self.excluded(ident, q, s) {
                    None if s >= relevant => Some((k, s + self.transit_prior(ident, q), s)),
                    None => Some((k, s, s)),
                    Some(Excluded::Elsewhere) if s >= confident => {
                        if witness.is_none_or(|w| s > w.1) {
                            witness = Some((ident.id, s));
                        }
                        None
                    }
                    Some(_) => None,
                }
            })
            .collect();
        let Some(&(k, score, similarity)) =
            allowed.iter().reduce(|b, x| if x.1 > b.1 { x } else { b })
        else {
            return (None, witness);
        };
        let top = &self.identities[k];
        let same_person = self.config.confident_threshold;
        let second = allowed
            .iter()
            .filter(|&&(j, _, _)| {
                j != k && self.identities[j].embedding.cosine(&top.embedding) < same_person
            })
            .map(|&(_, x, _)| x)
            .reduce(f32::max);
        let found = Found {
            id: top.id,
            score,
            similarity,
            second,
            crowd: allowed.len(),
        };
        (Some(found), witness)
    }

    /// The `n` identities most similar to `q`, most similar first, each with
    /// its similarity, what the transit prior adds to it, and why it may not
    /// be given to `q` (None: allowed): what a decision weighed, for logs
    /// and diagnosis (not on the hot path).
    pub fn candidates(&self, q: &TrackQuery<'_>, n: usize) -> Vec<Candidate> {
        let margin = self.config.same_camera_margin;
        let mut all: Vec<Candidate> = self
            .identities
            .iter()
            .map(|i| {
                let s = i.evidence(q.embedding, q.camera, margin);
                Candidate {
                    id: i.id,
                    similarity: s,
                    prior: self.transit_prior(i, q),
                    excluded: self.excluded(i, q, s),
                }
            })
            .collect();
        all.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        all.truncate(n);
        all
    }

    /// Why identity `id` may not be given to `q` (None: allowed, or unknown id).
    pub fn exclusion(&self, id: IdentityId, q: &TrackQuery<'_>) -> Option<Excluded> {
        let ident = self.get(id)?;
        let s = ident.evidence(q.embedding, q.camera, self.config.same_camera_margin);
        self.excluded(ident, q, s)
    }

    /// Decides the identity of a track: the closest allowed identity when it
    /// clears the threshold and the margin, else a new one. Records the track
    /// as an appearance of that identity (so concurrent tracks cannot take it)
    /// and folds its embedding into the identity's prototypes.
    pub fn assign_track(&mut self, q: &TrackQuery<'_>) -> Result<Assignment, ReidError> {
        let model = self.model.clone();
        self.check(q.embedding, &model)?;
        let (found, witness) = self.scan(q, None);
        // Counted by reference: the camera's id is cloned once, not per track.
        match self.decided.get_mut(q.camera) {
            Some(n) => *n += 1,
            None => {
                self.decided.insert(q.camera.clone(), 1);
            }
        }
        if let Some(f) = found {
            let clear = f
                .second
                .is_none_or(|s| f.score - s >= self.config.ambiguity_margin);
            if f.score >= self.threshold(f.crowd) && clear {
                // Learned from appearance alone: the prior never teaches
                // itself. Confident matches also teach the hard rules.
                if f.similarity >= self.config.match_threshold {
                    let confident = f.similarity >= self.config.confident_threshold;
                    self.learn_transit(f.id, q, confident);
                }
                self.observe(f.id, q);
                self.fold(f.id, q.embedding, Some(q.camera));
                return Ok(Assignment::Matched {
                    id: f.id,
                    similarity: f.similarity,
                });
            }
        }
        // Refused only for being on another camera at once, yet confident
        // and clearly better than any allowed identity: a witness that the
        // two views overlap.
        if let Some((w, ws)) = witness {
            if found.is_none_or(|f| ws - f.score >= self.config.ambiguity_margin) {
                self.learn_transit(w, q, true);
            }
        }
        let id = self.mint();
        let mut ident = Identity::single(
            id,
            q.embedding.clone(),
            &model,
            q.camera.clone(),
            q.first_ms,
            Origin::Local,
        );
        ident.appearances[0].track = q.track;
        ident.appearances[0].last_ms = q.last_ms.max(q.first_ms);
        ident.last_seen_ms = if q.last_ms >= OPEN {
            q.first_ms
        } else {
            q.last_ms.max(q.first_ms)
        };
        self.insert(ident);
        Ok(Assignment::New {
            id,
            closest: found.map(|f| f.score),
        })
    }

    /// One-crop convenience: `e` seen on `camera` at `now_ms` as its own track.
    pub fn assign(
        &mut self,
        e: &Embedding,
        camera: &CameraId,
        now_ms: UnixMs,
    ) -> Result<Assignment, ReidError> {
        self.assign_track(&TrackQuery {
            embedding: e,
            camera,
            track: None,
            first_ms: now_ms,
            last_ms: now_ms,
        })
    }

    /// The track `q`, already given identity `id`, was seen until `q.last_ms`:
    /// extends its appearance (or adds it).
    pub fn observe(&mut self, id: IdentityId, q: &TrackQuery<'_>) {
        let Some(&k) = self.index.get(&id) else {
            return;
        };
        let ident = &mut self.identities[k];
        let seen = if q.last_ms >= OPEN {
            q.first_ms
        } else {
            q.last_ms
        };
        ident.last_seen_ms = ident.last_seen_ms.max(seen);
        ident.first_seen_ms = ident.first_seen_ms.min(q.first_ms);
        ident.camera = q.camera.clone();
        if let Some(a) = ident
            .appearances
            .iter_mut()
            .find(|a| a.camera == *q.camera && a.track == q.track && q.track.is_some())
        {
            a.last_ms = a.last_ms.max(q.last_ms);
            return;
        }
        ident.sightings += 1;
        push_appearance(
            &mut ident.appearances,
            Appearance {
                camera: q.camera.clone(),
                track: q.track,
                first_ms: q.first_ms,
                last_ms: q.last_ms,
            },
        );
    }

    /// The track `track` on `camera`, which carried `id`, ended at `last_ms`
    /// (its appearance was open until now).
    pub fn close_track(
        &mut self,
        id: IdentityId,
        camera: &CameraId,
        track: TrackId,
        last_ms: UnixMs,
    ) {
        let Some(&k) = self.index.get(&id) else {
            return;
        };
        let ident = &mut self.identities[k];
        if let Some(a) = ident
            .appearances
            .iter_mut()
            .find(|a| a.camera == *camera && a.track == Some(track))
        {
            a.last_ms = last_ms.max(a.first_ms);
        }
        if ident.last_seen_ms >= OPEN || ident.last_seen_ms < last_ms {
            ident.last_seen_ms = last_ms;
        }
    }

    /// Another node's track `track` on `camera`, which that node's re-ID gave
    /// `id`, is on screen from `first_ms` until `last_ms` (its end, or for
    /// a track still open, until when it counts as on screen unless heard
    /// of again). Kept as an appearance of `id`, so that the hard rules and
    /// the transit prior know where the person is now; nothing is folded
    /// into the embedding and nothing is learned. A later word on the same
    /// track replaces `last_ms` (a closed track ends before its lease did).
    /// False when `id` is not known here.
    pub fn seen_elsewhere(
        &mut self,
        id: IdentityId,
        camera: &CameraId,
        track: TrackId,
        first_ms: UnixMs,
        last_ms: UnixMs,
    ) -> bool {
        let Some(&k) = self.index.get(&id) else {
            return false;
        };
        let ident = &mut self.identities[k];
        let last_ms = last_ms.max(first_ms);
        if let Some(a) = ident
            .appearances
            .iter_mut()
            .find(|a| a.camera == *camera && a.track == Some(track))
        {
            a.first_ms = a.first_ms.min(first_ms);
            a.last_ms = last_ms;
            return true;
        }
        push_appearance(
            &mut ident.appearances,
            Appearance {
                camera: camera.clone(),
                track: Some(track),
                first_ms,
                last_ms,
            },
        );
        true
    }

    /// Folds a track's final embedding into identity `id`'s prototypes (the
    /// view improved after the decision). Refused for another model's vectors.
    pub fn refine(
        &mut self,
        id: IdentityId,
        e: &Embedding,
        camera: &CameraId,
    ) -> Result<(), ReidError> {
        let model = self.model.clone();
        self.check(e, &model)?;
        self.fold(id, e, Some(camera));
        Ok(())
    }

    fn fold(&mut self, id: IdentityId, e: &Embedding, camera: Option<&CameraId>) {
        let Some(&k) = self.index.get(&id) else {
            return;
        };
        let (w, merge, max) = (
            self.config.update_weight,
            self.config.prototype_merge,
            self.config.max_prototypes,
        );
        let ident = &mut self.identities[k];
        let closest = ident
            .prototypes
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.embedding.cosine(e)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match closest {
            Some((i, s)) if s >= merge => {
                let p = &mut ident.prototypes[i];
                p.embedding = p.embedding.blend(e, w);
                if p.camera.as_ref() != camera {
                    p.camera = None;
                }
            }
            _ => {
                ident
                    .prototypes
                    .push(Prototype::new(e.clone(), camera.cloned()));
                if ident.prototypes.len() > max {
                    merge_closest_pair(&mut ident.prototypes);
                }
            }
        }
        ident.embedding = mean(&ident.prototypes);
    }

    fn learn_transit(&mut self, id: IdentityId, q: &TrackQuery<'_>, confident: bool) {
        let Some(ident) = self.get(id) else {
            return;
        };
        // The latest appearance on another camera that began before this track.
        let Some(prev) = ident
            .appearances
            .iter()
            .filter(|a| a.camera != *q.camera && a.first_ms <= q.first_ms)
            .max_by_key(|a| a.last_ms)
        else {
            return;
        };
        // Still open there: seen on both at once (the views overlap).
        let dt = q.first_ms.since(prev.last_ms).max(-3_600_000);
        let from = prev.camera.clone();
        self.transits
            .entry(from)
            .or_default()
            .entry(q.camera.clone())
            .or_default()
            .add(dt, confident);
    }

    /// Shortest learned transit from `from` to `to` and how many samples it rests on.
    pub fn transit(&self, from: &CameraId, to: &CameraId) -> Option<(i64, usize)> {
        let t = self.transits.get(from)?.get(to)?;
        Some((t.min_transit()?, t.transits()))
    }

    /// Whether the views of `from` and `to` are known to overlap in time.
    pub fn overlap_known(&self, from: &CameraId, to: &CameraId) -> bool {
        self.transits
            .get(from)
            .and_then(|m| m.get(to))
            .is_some_and(|t| t.overlap_known(self.config.transit_min_samples))
    }

    /// The range of ids this gallery mints (its node prefix), inclusive.
    pub fn id_range(&self) -> (IdentityId, IdentityId) {
        let base = u64::from(self.config.node_prefix) << SEQ_BITS;
        (IdentityId(base), IdentityId(base | ((1 << SEQ_BITS) - 1)))
    }

    /// Continues minting after `last` (the highest id this node stored before
    /// a restart), so that ids are never reused. Ids of other prefixes are ignored.
    pub fn resume_after(&mut self, last: IdentityId) {
        let (lo, hi) = self.id_range();
        if last >= lo && last <= hi {
            self.next_seq = self.next_seq.max((last.0 & ((1 << SEQ_BITS) - 1)) + 1);
        }
    }

    fn mint(&mut self) -> IdentityId {
        let id = (u64::from(self.config.node_prefix) << SEQ_BITS)
            | (self.next_seq & ((1 << SEQ_BITS) - 1));
        self.next_seq += 1;
        IdentityId(id)
    }

    fn insert(&mut self, ident: Identity) {
        if self.identities.len() >= self.config.max_identities {
            if let Some(oldest) = self
                .identities
                .iter()
                .enumerate()
                .min_by_key(|(_, i)| (i.last_seen_ms, i.id))
                .map(|(k, _)| k)
            {
                tracing::debug!(
                    evicted = self.identities[oldest].id.0,
                    "gallery full, evicting least recently seen"
                );
                self.remove_at(oldest);
            }
        }
        self.index.insert(ident.id, self.identities.len());
        self.identities.push(ident);
    }

    fn remove_at(&mut self, k: usize) -> Identity {
        let removed = self.identities.swap_remove(k);
        self.index.remove(&removed.id);
        if let Some(moved) = self.identities.get(k) {
            self.index.insert(moved.id, k);
        }
        removed
    }

    fn sanitize(&self, ident: &mut Identity) {
        if ident.prototypes.is_empty() {
            ident
                .prototypes
                .push(Prototype::new(ident.embedding.clone(), None));
        }
        ident.prototypes.truncate(self.config.max_prototypes);
        if ident.appearances.len() > MAX_APPEARANCES {
            let cut = ident.appearances.len() - MAX_APPEARANCES;
            ident.appearances.drain(..cut);
        }
    }

    /// Adds or refreshes an identity published by another node (the newer
    /// sighting wins). Another model's identity is refused.
    pub fn upsert_remote(&mut self, mut ident: Identity) -> Result<(), ReidError> {
        self.check(&ident.embedding, &ident.model.clone())?;
        self.sanitize(&mut ident);
        ident.origin = Origin::Remote;
        match self.index.get(&ident.id) {
            Some(&k) => {
                let known = &self.identities[k];
                if ident.last_seen_ms >= known.last_seen_ms {
                    ident.origin = known.origin;
                    // Keep what this node knows of where the person was.
                    let mut appearances = known.appearances.clone();
                    for a in ident.appearances.drain(..) {
                        if !appearances.contains(&a) {
                            appearances.push(a);
                        }
                    }
                    appearances.sort_by_key(|a| a.last_ms);
                    ident.appearances = appearances;
                    self.sanitize(&mut ident);
                    self.identities[k] = ident;
                }
            }
            None => self.insert(ident),
        }
        Ok(())
    }

    /// Puts back an identity this node knew before a restart (from its own
    /// database), keeping its origin; an identity already present is kept.
    /// Another model's identity is refused.
    pub fn restore(&mut self, mut ident: Identity) -> Result<(), ReidError> {
        self.check(&ident.embedding, &ident.model.clone())?;
        self.sanitize(&mut ident);
        if !self.index.contains_key(&ident.id) {
            self.insert(ident);
        }
        Ok(())
    }

    /// Applies a merge decided by the master: `from` becomes part of `into`.
    /// Returns false when `from` is unknown here.
    pub fn merge(&mut self, from: IdentityId, into: IdentityId) -> bool {
        if from == into {
            return false;
        }
        let Some(&k) = self.index.get(&from) else {
            return false;
        };
        let gone = self.remove_at(k);
        match self.index.get(&into) {
            Some(&t) => {
                let max = self.config.max_prototypes;
                let target = &mut self.identities[t];
                target.prototypes.extend(gone.prototypes);
                while target.prototypes.len() > max {
                    merge_closest_pair(&mut target.prototypes);
                }
                target.embedding = mean(&target.prototypes);
                target.sightings += gone.sightings;
                target.first_seen_ms = target.first_seen_ms.min(gone.first_seen_ms);
                target.appearances.extend(gone.appearances);
                target.appearances.sort_by_key(|a| a.last_ms);
                if target.appearances.len() > MAX_APPEARANCES {
                    let cut = target.appearances.len() - MAX_APPEARANCES;
                    target.appearances.drain(..cut);
                }
                if gone.last_seen_ms > target.last_seen_ms {
                    target.last_seen_ms = gone.last_seen_ms;
                    target.camera = gone.camera;
                }
            }
            None => self.insert(Identity { id: into, ..gone }),
        }
        true
    }

    /// Learns an operator's split: the track `a`, shown under `from`, is
    /// another person, `into`. The appearance leaves `from` (its rules no
    /// longer apply to that person); when the track's view `e` is known,
    /// `from`'s views that look like it (at least `match_threshold`) go, one
    /// view always staying, and `into` is known from now on by `e` (new, or
    /// refreshed). Returns whether `into` is new here. An `e` of another
    /// size is refused before anything changes.
    pub fn split_off(
        &mut self,
        from: IdentityId,
        into: IdentityId,
        a: &Appearance,
        e: Option<&Embedding>,
    ) -> Result<bool, ReidError> {
        if let Some(e) = e {
            let model = self.model.clone();
            self.check(e, &model)?;
        }
        let threshold = self.config.match_threshold;
        if let Some(&k) = self.index.get(&from) {
            let ident = &mut self.identities[k];
            ident
                .appearances
                .retain(|x| !(x.camera == a.camera && x.track == a.track && a.track.is_some()));
            if let Some(e) = e {
                keep_unlike(&mut ident.prototypes, e, threshold);
                ident.embedding = mean(&ident.prototypes);
            }
        }
        let Some(e) = e else {
            return Ok(false);
        };
        let seen = a.last_ms.min(OPEN.add_ms(-1)).max(a.first_ms);
        if self.index.contains_key(&into) {
            self.fold(into, e, Some(&a.camera));
            self.observe(
                into,
                &TrackQuery {
                    embedding: e,
                    camera: &a.camera,
                    track: a.track,
                    first_ms: a.first_ms,
                    last_ms: seen,
                },
            );
            return Ok(false);
        }
        let mut ident = Identity::single(
            into,
            e.clone(),
            &self.model,
            a.camera.clone(),
            a.first_ms,
            Origin::Local,
        );
        ident.appearances[0].track = a.track;
        ident.appearances[0].last_ms = seen;
        ident.last_seen_ms = seen;
        self.insert(ident);
        Ok(true)
    }

    /// Undoes an operator's merge of `from` into `into` that this gallery
    /// applied ([`Gallery::merge`]): `into`'s views that look like `view`
    /// (at least `match_threshold`) go, one view always staying, and `from`
    /// is known again by `view`. Returns whether `from` came back. Nothing
    /// changes when `from` is known here already (the merge never reached
    /// this gallery, or was undone), or when there is no view; a view of
    /// another model or size is refused before anything changes.
    pub fn keep_apart(
        &mut self,
        from: IdentityId,
        into: IdentityId,
        view: Option<Identity>,
    ) -> Result<bool, ReidError> {
        let Some(mut view) = view else {
            return Ok(false);
        };
        if from == into || view.id != from || self.index.contains_key(&from) {
            return Ok(false);
        }
        self.check(&view.embedding, &view.model.clone())?;
        self.sanitize(&mut view);
        if let Some(&k) = self.index.get(&into) {
            let threshold = self.config.match_threshold;
            let e = view.embedding.clone();
            let target = &mut self.identities[k];
            keep_unlike(&mut target.prototypes, &e, threshold);
            target.embedding = mean(&target.prototypes);
        }
        self.insert(view);
        Ok(true)
    }

    /// Drops identities unseen for more than `max_age_s`; returns how many.
    /// An identity whose track is still open (on screen now) stays, however
    /// long ago that track began: dropping it would lose the rule that no
    /// other track on that camera may take it meanwhile.
    pub fn expire(&mut self, now_ms: UnixMs) -> usize {
        let max_age_ms =
            i64::try_from(self.config.max_age_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let before = self.identities.len();
        self.identities.retain(|i| {
            now_ms.since(i.last_seen_ms) <= max_age_ms
                || i.appearances.iter().any(|a| a.last_ms >= OPEN)
        });
        if self.identities.len() != before {
            self.index = self
                .identities
                .iter()
                .enumerate()
                .map(|(k, i)| (i.id, k))
                .collect();
        }
        before - self.identities.len()
    }
}

/// Adds `a` to an identity's appearances; when they are full, the one that
/// ended first goes.
fn push_appearance(appearances: &mut Vec<Appearance>, a: Appearance) {
    if appearances.len() >= MAX_APPEARANCES {
        if let Some(k) = (0..appearances.len()).min_by_key(|&k| appearances[k].last_ms) {
            appearances.remove(k);
        }
    }
    appearances.push(a);
}

/// Normalised mean of the views `v` (non-empty).
fn mean(v: &[Prototype]) -> Embedding {
    let dim = v.first().map_or(0, |p| p.embedding.len());
    let mut sum = vec![0f32; dim];
    for p in v {
        for (s, x) in sum.iter_mut().zip(p.embedding.as_slice()) {
            *s += x;
        }
    }
    Embedding::normalized(&sum)
}

/// Drops the views at least `threshold` alike to `e`, the least alike always
/// staying (an identity keeps one view).
fn keep_unlike(prototypes: &mut Vec<Prototype>, e: &Embedding, threshold: f32) {
    let least = prototypes
        .iter()
        .enumerate()
        .min_by(|x, y| x.1.embedding.cosine(e).total_cmp(&y.1.embedding.cosine(e)))
        .map(|(i, _)| i);
    let mut i = 0;
    prototypes.retain(|p| {
        let keep = Some(i) == least || p.embedding.cosine(e) < threshold;
        i += 1;
        keep
    });
}

/// Replaces the two most similar prototypes by their mean (keeps views diverse).
fn merge_closest_pair(p: &mut Vec<Prototype>) {
    let mut best = (0, 1, f32::MIN);
    for i in 0..p.len() {
        for j in i + 1..p.len() {
            let s = p[i].embedding.cosine(&p[j].embedding);
            if s > best.2 {
                best = (i, j, s);
            }
        }
    }
    let (i, j, _) = best;
    if j < p.len() {
        let gone = p.swap_remove(j);
        p[i].embedding = p[i].embedding.blend(&gone.embedding, 0.5);
        if p[i].camera != gone.camera {
            p[i].camera = None;
        }
    }
}

#[cfg(test)]
#[path = "gallery_tests.rs"]
mod tests;
