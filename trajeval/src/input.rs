//! Ground truth from the text of the files `vidar-camera --ground-truth DIR`
//! writes for one mount: `<mount>.frames.csv` (`frame,unix_ms`, every pushed
//! frame) and `<mount>.gt.csv` (`frame,unix_ms,person_id,x,y,w,h,visibility`).
//! Columns are found by header name; extra columns are ignored. The caller
//! reads the files.

use crate::{BBox, GtBox, GtFrame};
use std::collections::BTreeMap;

/// Why a ground-truth file was refused; names the file kind and the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: {reason}")]
pub struct InputError {
    /// `frames.csv` or `gt.csv`.
    pub file: &'static str,
    /// 1-based line number (1 = header).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Rows of a CSV text as field maps by header name.
fn rows<'a>(
    file: &'static str,
    text: &'a str,
    needed: &[&str],
) -> Result<Vec<(usize, Vec<&'a str>)>, InputError> {
    let err = |line, reason: String| InputError { file, line, reason };
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, h)| h.trim_end_matches('\r'))
        .ok_or_else(|| err(1, "empty file".into()))?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let mut idx = Vec::new();
    for n in needed {
        idx.push(
            cols.iter()
                .position(|c| c == n)
                .ok_or_else(|| err(1, format!("header {header:?} has no column {n:?}")))?,
        );
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let mut v = Vec::with_capacity(idx.len());
        for &j in &idx {
            v.push(*f.get(j).ok_or_else(|| {
                err(
                    i + 1,
                    format!("{} fields, header has {}", f.len(), cols.len()),
                )
            })?);
        }
        out.push((i + 1, v));
    }
    Ok(out)
}

fn num<T: std::str::FromStr>(
    file: &'static str,
    line: usize,
    name: &str,
    v: &str,
) -> Result<T, InputError> {
    v.parse().map_err(|_| InputError {
        file,
        line,
        reason: format!("{name} {v:?} is not a number"),
    })
}

/// Builds the ground-truth frames of `camera` from the two files' text.
pub fn parse_ground_truth(
    camera: &str,
    frames_csv: &str,
    gt_csv: &str,
) -> Result<Vec<GtFrame>, InputError> {
    let mut frames: BTreeMap<u64, GtFrame> = BTreeMap::new();
    for (line, f) in rows("frames.csv", frames_csv, &["frame", "unix_ms"])? {
        let frame = num("frames.csv", line, "frame", f[0])?;
        let unix_ms = num("frames.csv", line, "unix_ms", f[1])?;
        frames.insert(
            frame,
            GtFrame {
                camera: camera.to_string(),
                frame,
                unix_ms,
                boxes: Vec::new(),
            },
        );
    }
    let cols = ["frame", "person_id", "x", "y", "w", "h", "visibility"];
    for (line, f) in rows("gt.csv", gt_csv, &cols)? {
        let frame: u64 = num("gt.csv", line, "frame", f[0])?;
        let person_id = num("gt.csv", line, "person_id", f[1])?;
        let v: Vec<f32> = f[2..]
            .iter()
            .zip(&cols[2..])
            .map(|(v, n)| num::<f32>("gt.csv", line, n, v))
            .collect::<Result<_, _>>()?;
        let target = frames.get_mut(&frame).ok_or_else(|| InputError {
            file: "gt.csv",
            line,
            reason: format!("frame {frame} is not in frames.csv"),
        })?;
        target.boxes.push(GtBox {
            person_id,
            bbox: BBox {
                x: v[0],
                y: v[1],
                w: v[2],
                h: v[3],
            },
            visibility: v[4],
        });
    }
    Ok(frames.into_values().collect())
}
