//! Identity measures over sightings whose true person is known: pairwise
//! precision/recall/F1 (two sightings share an identity iff they are the same
//! person), per-person completeness, per-identity purity, and identities
//! given to two people at the same time.
//!
//! A sighting without an identity counts as an identity of its own.

use crate::{ratio, Sighting, UnixMs};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Pairwise identity scores over a set of sighting pairs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairScores {
    /// Pairs considered.
    pub pairs: u64,
    /// Pairs of the same true person.
    pub same_person: u64,
    /// Pairs given the same identity.
    pub same_identity: u64,
    /// Pairs of the same person given the same identity.
    pub true_pairs: u64,
    /// `true_pairs / same_identity`.
    pub precision: Option<f64>,
    /// `true_pairs / same_person`.
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall.
    pub f1: Option<f64>,
}

/// How one true person's sightings were labelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonScore {
    /// True person.
    pub person_id: u64,
    /// Their (matched) sightings.
    pub sightings: usize,
    /// Cameras they were sighted on.
    pub cameras: usize,
    /// The identity most of their sightings carry (`None` if that is "no identity").
    pub majority_identity: Option<u64>,
    /// Distinct identities among their sightings (each missing one counts).
    pub identities: usize,
    /// Share of their sightings under the majority identity.
    pub completeness: f64,
    /// Each of their sightings, in time order: where a trajectory broke.
    pub trail: Vec<TrailEntry>,
}

/// One sighting of a true person: its camera, track, identity and span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrailEntry {
    /// Camera.
    pub camera: String,
    /// Track id on that camera.
    pub track_id: u64,
    /// Identity it carries (`None`: none).
    pub identity: Option<u64>,
    /// First time of its path, ms (`None`: empty path).
    pub first_ms: Option<UnixMs>,
    /// Last time of its path, ms.
    pub last_ms: Option<UnixMs>,
}

/// Who one identity was given to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityScore {
    /// Identity.
    pub identity: u64,
    /// Its (matched) sightings.
    pub sightings: usize,
    /// The person most of them are.
    pub majority_person: u64,
    /// Distinct people among them.
    pub people: usize,
    /// Share of its sightings from the majority person.
    pub purity: f64,
}

/// One identity given to two different people whose sightings overlap in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The identity.
    pub identity: u64,
    /// One person (the smaller id).
    pub person_a: u64,
    /// Camera and track of `person_a`'s sighting.
    pub sighting_a: (String, u64),
    /// The other person.
    pub person_b: u64,
    /// Camera and track of `person_b`'s sighting.
    pub sighting_b: (String, u64),
    /// Length of the overlap, ms.
    pub overlap_ms: u64,
}

#[derive(Debug)]
pub(crate) struct IdentityReport {
    pub cross_camera: PairScores,
    pub same_camera: PairScores,
    pub people: Vec<PersonScore>,
    pub identities: Vec<IdentityScore>,
    pub unmatched: usize,
    pub without_identity: usize,
    pub conflicting_identities: usize,
    pub conflicts: Vec<Conflict>,
}

/// Identity key: a real identity, or the sighting's own index when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Id(u64),
    Own(usize),
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Counts pairs with equal `key`, split into same-camera and cross-camera.
fn count_pairs<K: std::hash::Hash + Eq>(items: impl Iterator<Item = (K, usize)>) -> (u64, u64) {
    let mut total: HashMap<K, u64> = HashMap::new();
    let mut per_cam: HashMap<(K, usize), u64> = HashMap::new();
    for (k, cam) in items {
        *per_cam.entry((k, cam)).or_default() += 1;
    }
    let mut same = 0;
    for ((k, _), n) in per_cam {
        same += pairs(n);
        *total.entry(k).or_default() += n;
    }
    let all: u64 = total.into_values().map(pairs).sum();
    (same, all - same)
}

fn finish(pairs: u64, same_person: u64, same_identity: u64, true_pairs: u64) -> PairScores {
    let precision = ratio(true_pairs as usize, same_identity as usize);
    let recall = ratio(true_pairs as usize, same_person as usize);
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    PairScores {
        pairs,
        same_person,
        same_identity,
        true_pairs,
        precision,
        recall,
        f1,
    }
}

pub(crate) fn score(sightings: &[Sighting], persons: &[Option<u64>]) -> IdentityReport {
    let mut cams: BTreeMap<&str, usize> = BTreeMap::new();
    // (sighting index, person, identity key, camera index)
    let mut items = Vec::new();
    let mut unmatched = 0;
    let mut without_identity = 0;
    for (i, (s, p)) in sightings.iter().zip(persons).enumerate() {
        let Some(p) = *p else {
            unmatched += 1;
            continue;
        };
        let key = match s.identity {
            Some(id) => Key::Id(id),
            None => {
                without_identity += 1;
                Key::Own(i)
            }
        };
        let n = cams.len();
        let cam = *cams.entry(s.camera.as_str()).or_insert(n);
        items.push((i, p, key, cam));
    }
    let (sp_same, sp_cross) = count_pairs(items.iter().map(|x| (x.1, x.3)));
    let (si_same, si_cross) = count_pairs(items.iter().map(|x| (x.2, x.3)));
    let (tp_same, tp_cross) = count_pairs(items.iter().map(|x| ((x.1, x.2), x.3)));
    let n = items.len() as u64;
    let mut per_cam: HashMap<usize, u64> = HashMap::new();
    for x in &items {
        *per_cam.entry(x.3).or_default() += 1;
    }
    let same_cam_pairs: u64 = per_cam.values().map(|&c| pairs(c)).sum();
    let same_camera = finish(same_cam_pairs, sp_same, si_same, tp_same);
    let cross_camera = finish(pairs(n) - same_cam_pairs, sp_cross, si_cross, tp_cross);

    // Completeness per person.
    let mut by_person: BTreeMap<u64, Vec<(Key, usize, usize)>> = BTreeMap::new();
    for x in &items {
        by_person.entry(x.1).or_default().push((x.2, x.3, x.0));
    }
    let people = by_person
        .into_iter()
        .map(|(person_id, v)| {
            let mut counts: BTreeMap<Key, usize> = BTreeMap::new();
            for (k, _, _) in &v {
                *counts.entry(*k).or_default() += 1;
            }
            let (major, top) = counts
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(k, c)| (*k, *c))
                .unwrap_or((Key::Own(0), 0));
            let mut c: Vec<usize> = v.iter().map(|x| x.1).collect();
            c.sort_unstable();
            c.dedup();
            let mut trail: Vec<TrailEntry> = v
                .iter()
                .map(|x| {
                    let s = &sightings[x.2];
                    let span = span(s);
                    TrailEntry {
                        camera: s.camera.clone(),
                        track_id: s.track_id,
                        identity: s.identity,
                        first_ms: span.map(|r| r.0),
                        last_ms: span.map(|r| r.1),
                    }
                })
                .collect();
            trail.sort_by_key(|t| t.first_ms);
            PersonScore {
                person_id,
                sightings: v.len(),
                cameras: c.len(),
                majority_identity: match major {
                    Key::Id(id) => Some(id),
                    Key::Own(_) => None,
                },
                identities: counts.len(),
                completeness: top as f64 / v.len() as f64,
                trail,
            }
        })
        .collect();

    // Purity per identity; conflicts.
    let mut by_identity: BTreeMap<u64, Vec<(usize, u64)>> = BTreeMap::new();
    for x in &items {
        if let Key::Id(id) = x.2 {
            by_identity.entry(id).or_default().push((x.0, x.1));
        }
    }
    let mut conflicts = Vec::new();
    let mut conflicting_identities = 0;
    let mut identities = Vec::new();
    for (identity, v) in by_identity {
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for (_, p) in &v {
            *counts.entry(*p).or_default() += 1;
        }
        let (major, top) = counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(p, c)| (*p, *c))
            .unwrap_or((0, 0));
        identities.push(IdentityScore {
            identity,
            sightings: v.len(),
            majority_person: major,
            people: counts.len(),
            purity: top as f64 / v.len() as f64,
        });
        let before = conflicts.len();
        for (a, &(sa, pa)) in v.iter().enumerate() {
            for &(sb, pb) in &v[a + 1..] {
                if pa == pb {
                    continue;
                }
                let (Some(ra), Some(rb)) = (span(&sightings[sa]), span(&sightings[sb])) else {
                    continue;
                };
                let lo = ra.0.max(rb.0);
                let hi = ra.1.min(rb.1);
                if lo <= hi {
                    let ((pa, sa), (pb, sb)) = if pa < pb {
                        ((pa, sa), (pb, sb))
                    } else {
                        ((pb, sb), (pa, sa))
                    };
                    let label = |s: usize| (sightings[s].camera.clone(), sightings[s].track_id);
                    conflicts.push(Conflict {
                        identity,
                        person_a: pa,
                        sighting_a: label(sa),
                        person_b: pb,
                        sighting_b: label(sb),
                        overlap_ms: hi.abs_diff(lo),
                    });
                }
            }
        }
        if conflicts.len() > before {
            conflicting_identities += 1;
        }
    }
    IdentityReport {
        cross_camera,
        same_camera,
        people,
        identities,
        unmatched,
        without_identity,
        conflicting_identities,
        conflicts,
    }
}

/// First and last time of a sighting's path.
fn span(s: &Sighting) -> Option<(UnixMs, UnixMs)> {
    let lo = s.path.iter().map(|p| p.0).min()?;
    let hi = s.path.iter().map(|p| p.0).max()?;
    Some((lo, hi))
}
