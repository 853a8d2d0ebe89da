//! The labelled folder: `labels.csv` (columns found by header name, at least
//! `file,person_id,camera`; others ignored) and the person images next to it.
//! Reads only; images are decoded in memory and never written anywhere.

use super::CompositeError;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vidar_protocol::ids::IdRange;

/// One row of `labels.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRow {
    /// Image file, relative to the folder.
    pub file: String,
    /// Person id (numeric; leading zeros allowed).
    pub person_id: u64,
    /// Data-set camera index.
    pub camera: u32,
}

/// The parsed labels of one folder.
#[derive(Debug, Clone)]
pub struct Labels {
    /// The folder.
    pub dir: PathBuf,
    /// Rows in file order.
    pub rows: Vec<LabelRow>,
}

/// A decoded RGB image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Packed RGB, `width * 3` bytes a row.
    pub rgb: Vec<u8>,
}

/// One person of the scene: their id and one image per scene camera.
#[derive(Debug, Clone)]
pub struct PersonImages {
    /// Person id from the labels.
    pub person_id: u64,
    /// Image file (relative to the folder) for each scene camera, in order.
    pub files: Vec<String>,
    /// The decoded images, one per scene camera.
    pub images: Vec<RgbImage>,
}

impl Labels {
    /// Reads `DIR/labels.csv`.
    pub fn read(dir: &Path) -> Result<Labels, CompositeError> {
        let err = |path: &Path, reason: String| CompositeError::Labels {
            path: path.to_path_buf(),
            reason,
        };
        if !dir.is_dir() {
            return Err(err(dir, "no such directory".into()));
        }
        let path = dir.join("labels.csv");
        let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))?;
        Labels::parse(dir, &text).map_err(|reason| err(&path, reason))
    }

    /// Parses the text of `labels.csv` for the folder `dir`.
    pub fn parse(dir: &Path, text: &str) -> Result<Labels, String> {
        let mut lines = text.lines().enumerate();
        let header = lines
            .next()
            .map(|(_, l)| l.trim_end_matches('\r'))
            .ok_or("empty file (expected a header with file,person_id,camera)")?;
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        let find = |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .ok_or(format!("header {header:?} has no column {name:?}"))
        };
        let (fi, pi, ci) = (find("file")?, find("person_id")?, find("camera")?);
        let mut rows = Vec::new();
        for (i, line) in lines {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let n = i + 1;
            let get = |j: usize| {
                f.get(j).copied().ok_or(format!(
                    "line {n}: {} fields, header has {}",
                    f.len(),
                    cols.len()
                ))
            };
            let file = get(fi)?;
            if file.is_empty() || file.contains("..") || file.starts_with('/') {
                return Err(format!("line {n}: file {file:?} must be a relative name"));
            }
            let person_id = get(pi)?
                .parse::<u64>()
                .map_err(|_| format!("line {n}: person_id {:?} is not an integer", f[pi]))?;
            let camera = get(ci)?
                .parse::<u32>()
                .map_err(|_| format!("line {n}: camera {:?} is not an integer", f[ci]))?;
            rows.push(LabelRow {
                file: file.to_string(),
                person_id,
                camera,
            });
        }
        if rows.is_empty() {
            return Err("no rows after the header".into());
        }
        Ok(Labels {
            dir: dir.to_path_buf(),
            rows,
        })
    }

    /// Image files of each person on each camera `0..cameras`, for the people
    /// (with ids in `ids`, when given) who have at least one image on every
    /// one of them; sorted by id.
    fn candidates(&self, cameras: u32, ids: Option<IdRange>) -> Vec<(u64, Vec<Vec<&str>>)> {
        let mut by_person: BTreeMap<u64, Vec<Vec<&str>>> = BTreeMap::new();
        let wanted = |id: u64| ids.is_none_or(|r| r.contains(id));
        for r in &self.rows {
            if r.camera < cameras && wanted(r.person_id) {
                let e = by_person
                    .entry(r.person_id)
                    .or_insert_with(|| vec![Vec::new(); cameras as usize]);
                e[r.camera as usize].push(r.file.as_str());
            }
        }
        by_person
            .into_iter()
            .filter(|(_, c)| c.iter().all(|f| !f.is_empty()))
            .map(|(id, mut c)| {
                for files in &mut c {
                    files.sort_unstable();
                }
                (id, c)
            })
            .collect()
    }

    /// Draws `count` people (seeded) among those with images on cameras
    /// `0..cameras` (and ids in `ids`, when given), picks one image of each
    /// on each camera, and decodes them.
    pub fn select(
        &self,
        cameras: u32,
        count: u32,
        seed: u64,
        ids: Option<IdRange>,
    ) -> Result<Vec<PersonImages>, CompositeError> {
        let mut cands = self.candidates(cameras, ids);
        let available = cands.len();
        if available < count as usize {
            let present: std::collections::BTreeSet<u32> =
                self.rows.iter().map(|r| r.camera).collect();
            return Err(CompositeError::NoPeople {
                path: self.dir.clone(),
                reason: format!(
                    "count={count} people needed with images on every camera 0..{cameras}{}, \
                     {available} found (cameras in labels.csv: {present:?})",
                    ids.map(|r| format!(" and ids {r}")).unwrap_or_default()
                ),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5e1e_c7ed);
        cands.shuffle(&mut rng);
        cands.truncate(count as usize);
        let mut people = Vec::with_capacity(cands.len());
        for (person_id, per_cam) in cands {
            let mut files = Vec::with_capacity(per_cam.len());
            let mut images = Vec::with_capacity(per_cam.len());
            for options in per_cam {
                let file = options[rng.gen_range(0..options.len())];
                images.push(load_image(&self.dir.join(file))?);
                files.push(file.to_string());
            }
            people.push(PersonImages {
                person_id,
                files,
                images,
            });
        }
        Ok(people)
    }
}

/// Decodes an image file (PNG, JPEG, ...) to packed RGB.
pub fn load_image(path: &Path) -> Result<RgbImage, CompositeError> {
    let err = |reason: String| CompositeError::Image {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(err("no such file".into()));
    }
    let img = image::ImageReader::open(path)
        .map_err(|e| err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?
        .decode()
        .map_err(|e| err(e.to_string()))?
        .to_rgb8();
    let (width, height) = img.dimensions();
    if width < 2 || height < 2 {
        return Err(err(format!("{width}x{height} is too small")));
    }
    Ok(RgbImage {
        width,
        height,
        rgb: img.into_raw(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_columns_by_name_and_reports_bad_lines() {
        let l = Labels::parse(
            Path::new("/d"),
            "sha,camera,file,person_id\nx,1,a.png,0007\r\ny,0,b.png,7\n\n",
        )
        .expect("labels");
        assert_eq!(l.rows.len(), 2);
        assert_eq!(l.rows[0].person_id, 7);
        assert_eq!(l.rows[0].camera, 1);
        let c = l.candidates(2, None);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1, vec![vec!["b.png"], vec!["a.png"]]);
        assert!(l.candidates(3, None).is_empty());
        for (text, what) in [
            ("", "empty"),
            ("file,camera\na,0", "person_id"),
            ("file,person_id,camera\na.png,x,0", "line 2"),
            ("file,person_id,camera\na.png,1", "line 2"),
            ("file,person_id,camera\n../a.png,1,0", "relative"),
            ("file,person_id,camera\n", "no rows"),
        ] {
            let e = Labels::parse(Path::new("/d"), text).expect_err(text);
            assert!(e.contains(what), "{text:?}: {e}");
        }
    }
}
