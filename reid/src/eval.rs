//! Re-ID evaluation: the cross-camera retrieval protocol behind
//! `vidar-edge eval reid`, and the data it reads.
//!
//! A data folder holds images and a `labels.csv` whose header names at least
//! the columns `file`, `person_id` (an integer) and `camera` (an integer);
//! other columns are ignored. Every image queries the gallery of the images
//! taken by *other* cameras (or only the images of one query camera do, with
//! [`Protocol::query_camera`]); a query with no true match in its gallery is
//! left out, as in the usual Market-1501 / CUHK protocols.
//!
//! Reported: rank-1 and rank-5 (CMC), mAP, and verification figures over every
//! cross-camera pair of images: the true-match rate at a false-match rate of
//! 1 % and 0.1 %, with the cosine threshold that gives it. The same figures
//! for *tracklets* (the mean embedding of one person's images on one camera,
//! which is what the gallery compares when it decides per track) are the
//! calibration of the gallery's thresholds.
//!
//! Pure: embeddings in, numbers out. Loading images and running the model is
//! the caller's (the edge node's command uses the node's own embedder).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Embedding;

/// Errors reading an evaluation folder.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The folder or its labels file cannot be read.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A line of the labels file is malformed.
    #[error("{path}:{line}: {message}")]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Too little data to evaluate.
    #[error("{0}")]
    Empty(String),
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledImage {
    /// Path relative to the data folder, as written in the labels file.
    pub file: String,
    /// Person id.
    pub person: u64,
    /// Camera index.
    pub camera: u32,
}

/// Reads `DIR/labels.csv`.
pub fn read_labels(dir: &Path) -> Result<Vec<LabelledImage>, EvalError> {
    if !dir.is_dir() {
        return Err(EvalError::Io {
            path: dir.to_path_buf(),
            message: "not a directory (expected a folder of images with a labels.csv)".into(),
        });
    }
    let path = dir.join("labels.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| EvalError::Io {
        path: path.clone(),
        message: format!("cannot read the labels file: {e}"),
    })?;
    parse_labels(&text, &path)
}

/// Parses a labels file's text; `path` names it in errors.
pub fn parse_labels(text: &str, path: &Path) -> Result<Vec<LabelledImage>, EvalError> {
    let bad = |line: usize, message: String| EvalError::Labels {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(bad(
            1,
            "empty: expected a header with file,person_id,camera".into(),
        ));
    };
    let names: Vec<&str> = header.split(',').map(|c| c.trim()).collect();
    let col = |want: &str| {
        names
            .iter()
            .position(|n| n.trim_start_matches('\u{feff}') == want)
            .ok_or_else(|| bad(1, format!("header {header:?} has no column {want:?}")))
    };
    let (cf, cp, cc) = (col("file")?, col("person_id")?, col("camera")?);
    let mut out = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let cells: Vec<&str> = line.split(',').map(|c| c.trim()).collect();
        let get = |c: usize, what: &str| {
            cells
                .get(c)
                .copied()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(n, format!("no {what} value")))
        };
        let file = get(cf, "file")?;
        if Path::new(file).is_absolute() || file.split(['/', '\\']).any(|p| p == "..") {
            return Err(bad(
                n,
                format!("file {file:?} must be relative to the folder"),
            ));
        }
        let person = get(cp, "person_id")?;
        let person = person.parse::<u64>().map_err(|_| {
            bad(
                n,
                format!("person_id {person:?} is not a non-negative integer"),
            )
        })?;
        let camera = get(cc, "camera")?;
        let camera = camera.parse::<u32>().map_err(|_| {
            bad(
                n,
                format!("camera {camera:?} is not a non-negative integer"),
            )
        })?;
        out.push(LabelledImage {
            file: file.to_owned(),
            person,
            camera,
        });
    }
    if out.is_empty() {
        return Err(bad(1, "no images listed".into()));
    }
    Ok(out)
}

/// An inclusive range of person ids (defined beside the other ids, so the
/// test camera's composite scenes take it too).
pub use vidar_protocol::ids::IdRange;

/// Which images query which.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Protocol {
    /// Only images of this camera query (their gallery is every other camera);
    /// `None`: every image queries.
    pub query_camera: Option<u32>,
}

/// The threshold for one target false-match rate and what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    /// Target false-match rate (share of different-person pairs accepted).
    pub fmr: f64,
    /// Lowest cosine similarity accepted at that rate (pairs strictly above it match).
    pub threshold: f32,
    /// Share of same-person pairs above the threshold.
    pub tmr: f64,
}

/// Verification figures over every cross-camera pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// Same-person pairs.
    pub genuine_pairs: usize,
    /// Different-person pairs.
    pub impostor_pairs: usize,
    /// Mean cosine of same-person pairs.
    pub genuine_mean: f64,
    /// Mean cosine of different-person pairs.
    pub impostor_mean: f64,
    /// At 1 % and 0.1 % false matches.
    pub points: Vec<OperatingPoint>,
}

/// The evaluation's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Images evaluated.
    pub images: usize,
    /// Distinct people.
    pub people: usize,
    /// Queries with at least one true match in their gallery.
    pub queries: usize,
    /// Share of queries whose closest gallery image is the same person.
    pub rank1: f64,
    /// Share of queries with the same person among the 5 closest.
    pub rank5: f64,
    /// Mean average precision.
    pub map: f64,
    /// Image pairs across cameras.
    pub pairs: Verification,
    /// Tracklet pairs (mean embedding per person and camera) across cameras.
    pub tracklets: Verification,
    /// Image pairs taken by one camera: the same view, light and
    /// background make different people look more alike there, so a match
    /// against a view from the query's own camera needs its own threshold
    /// (the gallery's `same_camera_margin`).
    pub same_camera_pairs: Verification,
    /// Tracklet pairs on one camera (different people only: a person has
    /// one tracklet per camera), the calibration of that threshold.
    pub same_camera_tracklets: Verification,
}

/// False-match rates reported.
pub const FMRS: [f64; 2] = [0.01, 0.001];

/// Evaluates `embeddings` (one per image, unit length) of images of `people`
/// on `cameras` under `protocol`.
pub fn evaluate(
    embeddings: &[Embedding],
    people: &[u64],
    cameras: &[u32],
    protocol: Protocol,
) -> Result<Metrics, EvalError> {
    let n = embeddings.len();
    if people.len() != n || cameras.len() != n {
        return Err(EvalError::Empty(format!(
            "{n} embeddings for {} labels and {} cameras",
            people.len(),
            cameras.len()
        )));
    }
    let (mut queries, mut hit1, mut hit5, mut ap_sum) = (0usize, 0usize, 0usize, 0f64);
    let mut ranked: Vec<(f32, bool)> = Vec::with_capacity(n);
    for q in 0..n {
        if protocol.query_camera.is_some_and(|c| c != cameras[q]) {
            continue;
        }
        ranked.clear();
        for g in 0..n {
            if cameras[g] != cameras[q] {
                ranked.push((embeddings[q].cosine(&embeddings[g]), people[g] == people[q]));
            }
        }
        let relevant = ranked.iter().filter(|r| r.1).count();
        if relevant == 0 {
            continue;
        }
        // Ties are broken against the query (a wrong match ranks first), so a
        // constant embedding cannot score.
        ranked.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        queries += 1;
        let first = ranked.iter().position(|r| r.1).unwrap_or(usize::MAX);
        hit1 += usize::from(first == 0);
        hit5 += usize::from(first < 5);
        let (mut found, mut precision_sum) = (0usize, 0f64);
        for (k, r) in ranked.iter().enumerate() {
            if r.1 {
                found += 1;
                precision_sum += found as f64 / (k + 1) as f64;
            }
        }
        ap_sum += precision_sum / relevant as f64;
    }
    if queries == 0 {
        return Err(EvalError::Empty(
            "no query has a match on another camera: nothing to evaluate (check the cameras and --ids)"
                .into(),
        ));
    }
    let pairs = verification(embeddings, people, cameras, Cameras::Across);
    let same_camera_pairs = verification(embeddings, people, cameras, Cameras::Same);
    let (t_emb, t_people, t_cams) = tracklets(embeddings, people, cameras);
    let tracklets = verification(&t_emb, &t_people, &t_cams, Cameras::Across);
    let same_camera_tracklets = verification(&t_emb, &t_people, &t_cams, Cameras::Same);
    let mut distinct: Vec<u64> = people.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    Ok(Metrics {
        images: n,
        people: distinct.len(),
        queries,
        rank1: hit1 as f64 / queries as f64,
        rank5: hit5 as f64 / queries as f64,
        map: ap_sum / queries as f64,
        pairs,
        tracklets,
        same_camera_pairs,
        same_camera_tracklets,
    })
}

/// Mean embedding (renormalised) per (person, camera), in first-seen order.
fn tracklets(
    embeddings: &[Embedding],
    people: &[u64],
    cameras: &[u32],
) -> (Vec<Embedding>, Vec<u64>, Vec<u32>) {
    let mut index: HashMap<(u64, u32), usize> = HashMap::new();
    let mut sums: Vec<Vec<f32>> = Vec::new();
    let mut keys: Vec<(u64, u32)> = Vec::new();
    for ((e, &p), &c) in embeddings.iter().zip(people).zip(cameras) {
        let k = *index.entry((p, c)).or_insert_with(|| {
            sums.push(vec![0.0; e.len()]);
            keys.push((p, c));
            sums.len() - 1
        });
        for (s, x) in sums[k].iter_mut().zip(e.as_slice()) {
            *s += x;
        }
    }
    (
        sums.iter().map(|s| Embedding::normalized(s)).collect(),
        keys.iter().map(|k| k.0).collect(),
        keys.iter().map(|k| k.1).collect(),
    )
}

/// Which pairs a [`Verification`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cameras {
    /// Pairs taken by two different cameras.
    Across,
    /// Pairs taken by one camera.
    Same,
}

fn verification(
    embeddings: &[Embedding],
    people: &[u64],
    cameras: &[u32],
    which: Cameras,
) -> Verification {
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for i in 0..embeddings.len() {
        for j in i + 1..embeddings.len() {
            if (cameras[i] == cameras[j]) != (which == Cameras::Same) {
                continue;
            }
            let s = embeddings[i].cosine(&embeddings[j]);
            if people[i] == people[j] {
                genuine.push(s);
            } else {
                impostor.push(s);
            }
        }
    }
    let mean = |v: &[f32]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
        }
    };
    let (gm, im) = (mean(&genuine), mean(&impostor));
    impostor.sort_unstable_by(|a, b| b.total_cmp(a));
    let points = FMRS
        .iter()
        .filter(|_| !impostor.is_empty())
        .map(|&fmr| {
            let threshold = threshold_at(&impostor, fmr);
            let accepted = genuine.iter().filter(|&&s| s > threshold).count();
            OperatingPoint {
                fmr,
                threshold,
                tmr: if genuine.is_empty() {
                    0.0
                } else {
                    accepted as f64 / genuine.len() as f64
                },
            }
        })
        .collect();
    Verification {
        genuine_pairs: genuine.len(),
        impostor_pairs: impostor.len(),
        genuine_mean: gm,
        impostor_mean: im,
        points,
    }
}

/// The threshold above which at most `fmr` of `impostor` (sorted, highest
/// first) lie.
fn threshold_at(impostor: &[f32], fmr: f64) -> f32 {
    let k = ((fmr * impostor.len() as f64).floor() as usize).min(impostor.len() - 1);
    impostor[k]
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} images, {} people, {} queries (gallery: the other cameras)",
            self.images, self.people, self.queries
        )?;
        writeln!(f)?;
        writeln!(f, "| rank-1 | rank-5 | mAP |")?;
        writeln!(f, "|---|---|---|")?;
        writeln!(
            f,
            "| {:.3} | {:.3} | {:.3} |",
            self.rank1, self.rank5, self.map
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| pairs | same / different | mean cosine same / different | TMR @ FMR 1 % (threshold) | TMR @ FMR 0.1 % (threshold) |"
        )?;
        writeln!(f, "|---|---|---|---|---|")?;
        for (what, v) in [
            ("images, across cameras", &self.pairs),
            ("tracklets, across cameras", &self.tracklets),
            ("images, one camera", &self.same_camera_pairs),
            ("tracklets, one camera", &self.same_camera_tracklets),
        ] {
            let point = |i: usize| {
                v.points.get(i).map_or("-".to_string(), |p| {
                    if v.genuine_pairs == 0 {
                        format!("- ({:.3})", p.threshold)
                    } else {
                        format!("{:.3} ({:.3})", p.tmr, p.threshold)
                    }
                })
            };
            writeln!(
                f,
                "| {what} | {} / {} | {:.3} / {:.3} | {} | {} |",
                v.genuine_pairs,
                v.impostor_pairs,
                v.genuine_mean,
                v.impostor_mean,
                point(0),
                point(1)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(v: &[f32]) -> Embedding {
        Embedding::normalized(v)
    }

    #[test]
    fn labels_parse_by_header_and_name_bad_lines() {
        let p = Path::new("/data/labels.csv");
        let ok = parse_labels(
            "camera,file,extra,person_id\n0,a.png,x,0001\n\n1,sub/b.jpg,y,12\n",
            p,
        )
        .expect("valid");
        assert_eq!(
            ok,
            vec![
                LabelledImage {
                    file: "a.png".into(),
                    person: 1,
                    camera: 0
                },
                LabelledImage {
                    file: "sub/b.jpg".into(),
                    person: 12,
                    camera: 1
                }
            ]
        );
        let err = |text: &str| parse_labels(text, p).expect_err(text).to_string();
        assert!(err("").contains("empty"));
        assert!(err("file,camera\na,0\n").contains("no column \"person_id\""));
        assert!(
            err("file,person_id,camera\na.png,x7,0\n").contains("labels.csv:2: person_id \"x7\"")
        );
        assert!(err("file,person_id,camera\na.png,1\n").contains(":2: no camera value"));
        assert!(err("file,person_id,camera\n../a.png,1,0\n").contains("relative"));
        assert!(err("file,person_id,camera\n").contains("no images"));
    }

    #[test]
    fn id_ranges() {
        assert_eq!("1-200".parse(), Ok(IdRange { lo: 1, hi: 200 }));
        assert_eq!("7".parse(), Ok(IdRange { lo: 7, hi: 7 }));
        assert!("5-1".parse::<IdRange>().is_err());
        assert!("a-3".parse::<IdRange>().is_err());
    }

    #[test]
    fn perfect_and_useless_embeddings() {
        // Three people, two cameras, one image each; person k points along axis k.
        let people = [1, 2, 3, 1, 2, 3];
        let cams = [0, 0, 0, 1, 1, 1];
        let good: Vec<Embedding> = people
            .iter()
            .zip(cams)
            .map(|(&p, c)| {
                let mut v = [0.05f32; 4];
                v[p as usize] = 1.0;
                v[0] = c as f32 * 0.1;
                e(&v)
            })
            .collect();
        let m = evaluate(&good, &people, &cams, Protocol::default()).expect("metrics");
        assert_eq!((m.queries, m.rank1, m.rank5, m.map), (6, 1.0, 1.0, 1.0));
        assert_eq!(m.pairs.genuine_pairs, 3);
        assert_eq!(m.pairs.impostor_pairs, 6);
        assert!(m.pairs.points.iter().all(|p| p.tmr == 1.0));
        // Identical embeddings for everyone: ties rank a wrong match first.
        let same = vec![e(&[1.0, 0.0]); 6];
        let m = evaluate(&same, &people, &cams, Protocol::default()).expect("metrics");
        assert_eq!(m.rank1, 0.0);
        assert!(m.pairs.points.iter().all(|p| p.tmr == 0.0));
        // Only camera 0 queries.
        let m = evaluate(
            &good,
            &people,
            &cams,
            Protocol {
                query_camera: Some(0),
            },
        )
        .expect("metrics");
        assert_eq!(m.queries, 3);
    }

    #[test]
    fn average_precision_and_ranks() {
        // Query q (cam 0, person 1); gallery on cam 1: impostor 0.9, match 0.8,
        // impostor 0.7, match 0.6 -> AP = (1/2 + 2/4) / 2 = 0.5, rank-1 miss.
        let q = e(&[1.0, 0.0, 0.0]);
        let at = |c: f32| e(&[c, (1.0 - c * c).sqrt(), 0.0]);
        let emb = vec![q, at(0.9), at(0.8), at(0.7), at(0.6)];
        let people = [1, 2, 1, 3, 1];
        let cams = [0, 1, 1, 1, 1];
        let m = evaluate(
            &emb,
            &people,
            &cams,
            Protocol {
                query_camera: Some(0),
            },
        )
        .expect("metrics");
        assert_eq!(m.queries, 1);
        assert_eq!(m.rank1, 0.0);
        assert_eq!(m.rank5, 1.0);
        assert!((m.map - 0.5).abs() < 1e-9, "{}", m.map);
    }

    #[test]
    fn pairs_on_one_camera_are_counted_apart_from_pairs_across() {
        // Two people, two images each on camera 0 and one on camera 1. On
        // camera 0 the two people look alike (same view): their impostor
        // pairs there score higher than across cameras.
        let people = [1, 1, 2, 2, 1, 2];
        let cams = [0, 0, 0, 0, 1, 1];
        let emb = vec![
            e(&[1.0, 0.5, 0.0, 0.0]),
            e(&[1.0, 0.4, 0.0, 0.0]),
            e(&[0.9, 0.0, 0.5, 0.0]),
            e(&[0.9, 0.0, 0.4, 0.0]),
            e(&[0.0, 1.0, 0.0, 0.3]),
            e(&[0.0, 0.0, 1.0, 0.3]),
        ];
        let m = evaluate(&emb, &people, &cams, Protocol::default()).expect("metrics");
        // Across: 2 x 2 x 2 = 8 pairs, 4 genuine. One camera: camera 0 has
        // 6 pairs (2 genuine), camera 1 one impostor pair.
        assert_eq!((m.pairs.genuine_pairs, m.pairs.impostor_pairs), (4, 4));
        let one = &m.same_camera_pairs;
        assert_eq!((one.genuine_pairs, one.impostor_pairs), (2, 5));
        assert!(one.impostor_mean > m.pairs.impostor_mean);
        // Tracklets: one per person and camera, so one camera holds only
        // impostor pairs (one on each camera).
        let t = &m.same_camera_tracklets;
        assert_eq!((t.genuine_pairs, t.impostor_pairs), (0, 2));
        assert_eq!(m.tracklets.genuine_pairs, 2);
        let shown = m.to_string();
        assert!(
            shown.contains("| tracklets, one camera | 0 / 2 |"),
            "{shown}"
        );
    }

    #[test]
    fn no_cross_camera_match_is_an_error() {
        let emb = vec![e(&[1.0, 0.0]), e(&[0.0, 1.0])];
        assert!(evaluate(&emb, &[1, 2], &[0, 1], Protocol::default()).is_err());
    }

    #[test]
    fn thresholds_follow_the_impostor_distribution() {
        let imp: Vec<f32> = (0..1000).rev().map(|i| i as f32 / 1000.0).collect();
        // 1 % of 1000 = 10 above: the 11th highest is the threshold.
        assert_eq!(threshold_at(&imp, 0.01), 0.989);
        assert_eq!(imp.iter().filter(|&&s| s > 0.989).count(), 10);
        assert_eq!(threshold_at(&imp, 0.001), 0.998);
    }
}
