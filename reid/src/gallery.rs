//! The gallery of known identities: cosine matching with a threshold and an
//! ambiguity margin, bounded size (least recently seen evicted first), ageing,
//! replicas of other nodes' identities, merges, and minting of cluster-unique
//! global identity ids. Pure and synchronous: time is passed in (milliseconds of
//! capture time), so behaviour is reproducible.

use std::collections::HashMap;

use serde::Deserialize;
use vidar_protocol::{CameraId, IdentityId};

use crate::{Embedding, ReidError};

/// Settings of a [`Gallery`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GalleryConfig {
    /// Lowest cosine similarity (-1..1) that counts as the same person. Default 0.8
    /// (for the MobileNetV2 default embedder; OSNet separates people better and usually wants ~0.6).
    pub match_threshold: f32,
    /// The best match must beat the second best identity by this much, else a new identity
    /// is minted rather than guessing. Default 0.02.
    pub ambiguity_margin: f32,
    /// Most identities kept; the least recently seen is evicted. Default 10000.
    pub max_identities: usize,
    /// Identities unseen for this long are dropped by [`Gallery::expire`], in seconds. Default 1800.
    pub max_age_s: u64,
    /// Weight of a new sighting in the identity's running embedding, 0..1. Default 0.1.
    pub update_weight: f32,
    /// This node's prefix in minted ids (the top 16 bits), so that nodes never mint the same id. Default 0.
    pub node_prefix: u16,
}

impl Default for GalleryConfig {
    fn default() -> Self {
        Self {
            match_threshold: 0.8,
            ambiguity_margin: 0.02,
            max_identities: 10_000,
            max_age_s: 1800,
            update_weight: 0.1,
            node_prefix: 0,
        }
    }
}

impl GalleryConfig {
    /// Every problem at once.
    pub fn validate(&self) -> Result<(), ReidError> {
        let mut problems = Vec::new();
        if !(-1.0..=1.0).contains(&self.match_threshold) {
            problems.push(format!(
                "match_threshold must be in -1..=1, got {}",
                self.match_threshold
            ));
        }
        if !(0.0..=1.0).contains(&self.ambiguity_margin) {
            problems.push(format!(
                "ambiguity_margin must be in 0..=1, got {}",
                self.ambiguity_margin
            ));
        }
        if self.max_identities == 0 {
            problems.push("max_identities must be > 0".into());
        }
        if self.max_age_s == 0 {
            problems.push("max_age_s must be > 0".into());
        }
        if !(0.0..=1.0).contains(&self.update_weight) {
            problems.push(format!(
                "update_weight must be in 0..=1, got {}",
                self.update_weight
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ReidError::Config(problems))
        }
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

/// A known person.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Global id.
    pub id: IdentityId,
    /// Running mean of the sightings' embeddings, L2-normalised.
    pub embedding: Embedding,
    /// Camera of the latest sighting.
    pub camera: CameraId,
    /// First sighting, ms.
    pub first_seen_ms: u64,
    /// Latest sighting, ms.
    pub last_seen_ms: u64,
    /// Number of sightings merged into `embedding`.
    pub sightings: u64,
    /// Minted here or elsewhere.
    pub origin: Origin,
}

/// What [`Gallery::assign`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Assignment {
    /// Same person as a known identity.
    Matched {
        /// The identity.
        id: IdentityId,
        /// Cosine similarity to it.
        similarity: f32,
    },
    /// A new identity was minted.
    New {
        /// The new id.
        id: IdentityId,
        /// Similarity of the closest known identity, if any (below threshold or ambiguous).
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

/// A bounded set of identities with cosine matching.
#[derive(Debug)]
pub struct Gallery {
    config: GalleryConfig,
    identities: Vec<Identity>,
    index: HashMap<IdentityId, usize>,
    next_seq: u64,
    dim: Option<usize>,
}

const SEQ_BITS: u32 = 48;

impl Gallery {
    /// An empty gallery.
    pub fn new(config: GalleryConfig) -> Result<Self, ReidError> {
        config.validate()?;
        Ok(Self {
            config,
            identities: Vec::new(),
            index: HashMap::new(),
            next_seq: 1,
            dim: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &GalleryConfig {
        &self.config
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

    fn check_dim(&mut self, e: &Embedding) -> Result<(), ReidError> {
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

    /// The closest identity and the similarity of the runner-up.
    pub fn best_match(&self, e: &Embedding) -> Option<(IdentityId, f32, Option<f32>)> {
        let mut best: Option<(IdentityId, f32)> = None;
        let mut second: Option<f32> = None;
        for ident in &self.identities {
            let s = ident.embedding.cosine(e);
            match best {
                Some((_, b)) if s <= b => second = Some(second.map_or(s, |x: f32| x.max(s))),
                _ => {
                    if let Some((_, b)) = best {
                        second = Some(second.map_or(b, |x: f32| x.max(b)));
                    }
                    best = Some((ident.id, s));
                }
            }
        }
        best.map(|(id, s)| (id, s, second))
    }

    /// Matches a sighting to a known identity or mints a new one, and records it.
    pub fn assign(
        &mut self,
        e: &Embedding,
        camera: &CameraId,
        now_ms: u64,
    ) -> Result<Assignment, ReidError> {
        self.check_dim(e)?;
        let found = self.best_match(e);
        if let Some((id, sim, second)) = found {
            let clear = second.is_none_or(|s| sim - s >= self.config.ambiguity_margin);
            if sim >= self.config.match_threshold && clear {
                let w = self.config.update_weight;
                let i = self.index[&id];
                let ident = &mut self.identities[i];
                ident.embedding = ident.embedding.blend(e, w);
                ident.camera = camera.clone();
                ident.last_seen_ms = ident.last_seen_ms.max(now_ms);
                ident.sightings += 1;
                return Ok(Assignment::Matched {
                    id,
                    similarity: sim,
                });
            }
        }
        let id = self.mint();
        self.insert(Identity {
            id,
            embedding: e.clone(),
            camera: camera.clone(),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            sightings: 1,
            origin: Origin::Local,
        });
        Ok(Assignment::New {
            id,
            closest: found.map(|(_, s, _)| s),
        })
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

    /// Adds or refreshes an identity published by another node (the newer sighting wins).
    pub fn upsert_remote(&mut self, mut ident: Identity) -> Result<(), ReidError> {
        self.check_dim(&ident.embedding)?;
        ident.origin = Origin::Remote;
        match self.index.get(&ident.id) {
            Some(&k) => {
                if ident.last_seen_ms >= self.identities[k].last_seen_ms {
                    ident.origin = self.identities[k].origin;
                    self.identities[k] = ident;
                }
            }
            None => self.insert(ident),
        }
        Ok(())
    }

    /// Puts back an identity this node knew before a restart (from its own
    /// database), keeping its origin; an identity already present is kept.
    pub fn restore(&mut self, ident: Identity) -> Result<(), ReidError> {
        self.check_dim(&ident.embedding)?;
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
                let target = &mut self.identities[t];
                let total = (target.sightings + gone.sightings) as f32;
                target.embedding = target
                    .embedding
                    .blend(&gone.embedding, gone.sightings as f32 / total);
                target.sightings += gone.sightings;
                target.first_seen_ms = target.first_seen_ms.min(gone.first_seen_ms);
                if gone.last_seen_ms > target.last_seen_ms {
                    target.last_seen_ms = gone.last_seen_ms;
                    target.camera = gone.camera;
                }
            }
            None => self.insert(Identity { id: into, ..gone }),
        }
        true
    }

    /// Drops identities unseen for more than `max_age_s`; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let max_age_ms = self.config.max_age_s.saturating_mul(1000);
        let before = self.identities.len();
        self.identities
            .retain(|i| now_ms.saturating_sub(i.last_seen_ms) <= max_age_ms);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(s: &str) -> CameraId {
        CameraId::new(s).expect("camera id")
    }

    fn emb(v: &[f32]) -> Embedding {
        Embedding::normalized(v)
    }

    fn small() -> GalleryConfig {
        GalleryConfig {
            match_threshold: 0.9,
            ambiguity_margin: 0.05,
            max_identities: 3,
            max_age_s: 10,
            update_weight: 0.5,
            node_prefix: 7,
        }
    }

    #[test]
    fn matches_same_person_and_mints_for_new_ones() {
        let mut g = Gallery::new(small()).expect("gallery");
        let a = g
            .assign(&emb(&[1.0, 0.0, 0.0]), &cam("a"), 0)
            .expect("assign");
        let Assignment::New {
            id: first,
            closest: None,
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(first.0 >> 48, 7, "node prefix in the id");
        let b = g
            .assign(&emb(&[0.99, 0.1, 0.0]), &cam("b"), 100)
            .expect("assign");
        assert!(
            matches!(b, Assignment::Matched { id, similarity } if id == first && similarity > 0.99)
        );
        assert_eq!(
            g.get(first).map(|i| (i.sightings, i.camera.as_str())),
            Some((2, "b"))
        );
        let c = g
            .assign(&emb(&[0.0, 1.0, 0.0]), &cam("a"), 200)
            .expect("assign");
        assert!(matches!(c, Assignment::New { closest: Some(s), .. } if s < 0.2));
        assert_ne!(c.id(), first);
        assert!(
            g.assign(&emb(&[1.0, 0.0]), &cam("a"), 0).is_err(),
            "dimension mismatch"
        );
    }

    #[test]
    fn ambiguous_matches_mint_a_new_identity() {
        let mut g = Gallery::new(small()).expect("gallery");
        // cos(x, y) ~0.83: two people.
        let x = g
            .assign(&emb(&[1.0, 0.3, 0.0]), &cam("a"), 0)
            .expect("assign")
            .id();
        let y = g
            .assign(&emb(&[1.0, -0.3, 0.0]), &cam("a"), 0)
            .expect("assign")
            .id();
        assert_ne!(x, y);
        // ~0.958 to both: above threshold, but too close to call.
        let z = g
            .assign(&emb(&[1.0, 0.0, 0.0]), &cam("a"), 0)
            .expect("assign");
        assert!(matches!(z, Assignment::New { .. }), "{z:?}");
    }

    #[test]
    fn bounded_size_evicts_least_recently_seen_and_ageing_expires() {
        let mut g = Gallery::new(small()).expect("gallery");
        let ids: Vec<_> = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
            .iter()
            .enumerate()
            .map(|(t, v)| {
                g.assign(&emb(v), &cam("a"), t as u64 * 1000)
                    .expect("assign")
                    .id()
            })
            .collect();
        // See the first again so the second is the oldest.
        g.assign(&emb(&[1.0, 0.0, 0.0]), &cam("a"), 5000)
            .expect("assign");
        let fourth = g
            .assign(&emb(&[1.0, 1.0, 1.0]), &cam("a"), 6000)
            .expect("assign")
            .id();
        assert_eq!(g.len(), 3);
        assert!(g.get(ids[1]).is_none() && g.get(ids[0]).is_some() && g.get(fourth).is_some());
        // max_age 10 s: at 14.5 s the third (seen at 2 s) is too old.
        assert_eq!(g.expire(14_500), 1);
        assert!(g.get(ids[2]).is_none() && g.get(ids[0]).is_some());
        assert_eq!(g.expire(100_000), 2);
        assert!(g.is_empty());
    }

    #[test]
    fn remote_replicas_and_merges() {
        let mut g = Gallery::new(small()).expect("gallery");
        let local = g
            .assign(&emb(&[1.0, 0.0, 0.0]), &cam("a"), 0)
            .expect("assign")
            .id();
        let remote = Identity {
            id: IdentityId(3 << 48 | 1),
            embedding: emb(&[0.0, 1.0, 0.0]),
            camera: cam("b"),
            first_seen_ms: 10,
            last_seen_ms: 20,
            sightings: 4,
            origin: Origin::Local,
        };
        g.upsert_remote(remote.clone()).expect("upsert");
        assert_eq!(g.get(remote.id).map(|i| i.origin), Some(Origin::Remote));
        // A sighting on this node of the remote person keeps the remote id.
        let m = g
            .assign(&emb(&[0.05, 1.0, 0.0]), &cam("a"), 30)
            .expect("assign");
        assert_eq!(m.id(), remote.id);
        // An older replica does not overwrite newer local knowledge.
        g.upsert_remote(Identity {
            last_seen_ms: 5,
            ..remote.clone()
        })
        .expect("upsert");
        assert_eq!(g.get(remote.id).map(|i| i.last_seen_ms), Some(30));
        assert!(g.merge(local, remote.id));
        assert!(g.get(local).is_none());
        let merged = g.get(remote.id).expect("merged");
        assert_eq!(merged.sightings, 6);
        assert_eq!(merged.first_seen_ms, 0);
        assert!(!g.merge(local, remote.id), "already merged");
    }

    #[test]
    fn invalid_config_lists_every_problem() {
        let err = Gallery::new(GalleryConfig {
            match_threshold: 2.0,
            max_identities: 0,
            update_weight: -1.0,
            ..GalleryConfig::default()
        })
        .expect_err("invalid")
        .to_string();
        assert!(
            err.contains("match_threshold")
                && err.contains("max_identities")
                && err.contains("update_weight")
        );
    }

    #[test]
    fn resumes_minting_after_a_stored_id() {
        let cfg = GalleryConfig {
            node_prefix: 3,
            ..GalleryConfig::default()
        };
        let mut g = Gallery::new(cfg).expect("gallery");
        let (lo, hi) = g.id_range();
        assert_eq!(lo.0 >> 48, 3);
        assert_eq!(hi.0 >> 48, 3);
        g.resume_after(IdentityId(lo.0 + 41));
        g.resume_after(IdentityId(5)); // another node's id: ignored
        let e = Embedding::normalized(&[1.0, 0.0, 0.0]);
        let cam = CameraId::new("c").expect("cam");
        let id = g.assign(&e, &cam, 0).expect("assign").id();
        assert_eq!(id, IdentityId(lo.0 + 42));
    }
}
