//! MOT Challenge text format: reader and writer for ground truth,
//! detections and tracker results.
//!
//! One object per line: `frame, id, left, top, width, height, conf, a, b, c`
//! where `a, b, c` are world coordinates in MOT15 and class/visibility in
//! MOT16+ (kept as read, `-1` when absent). Detection files use `id = -1`.
//! Fields may be separated by commas and/or whitespace (as `motmetrics`
//! accepts). The only I/O in this crate: callers pass any `Read`/`Write`.

use std::io::{BufRead, BufReader, Read, Write};

use crate::error::MotError;
use crate::geometry::{BBox, BoxExt};

/// One line of a MOT file.
#[derive(Debug, Clone, PartialEq)]
pub struct MotRecord {
    /// Frame number (1-based in MOT Challenge files).
    pub frame: u64,
    /// Object or track id; -1 for detections.
    pub id: i64,
    /// The box, in pixels.
    pub bbox: BBox,
    /// Confidence: detection score, or the ground truth's "consider" flag.
    pub conf: f32,
    /// Columns 8-10 as read (world x/y/z, or class/visibility); -1 if absent.
    pub extra: [f32; 3],
}

impl MotRecord {
    /// A record with `extra` columns set to -1.
    pub fn new(frame: u64, id: i64, bbox: BBox, conf: f32) -> Self {
        Self {
            frame,
            id,
            bbox,
            conf,
            extra: [-1.0; 3],
        }
    }
}

fn parse_err(line: usize, message: impl Into<String>, text: &str) -> MotError {
    MotError::Parse {
        line,
        message: message.into(),
        text: text.to_owned(),
    }
}

fn parse_integer(field: &str, name: &str, line: usize, text: &str) -> Result<i64, MotError> {
    let v: f64 = field
        .parse()
        .map_err(|_| parse_err(line, format!("{name} is not a number"), text))?;
    if v.fract() != 0.0 || !v.is_finite() || v.abs() > 9.0e15 {
        return Err(parse_err(line, format!("{name} is not an integer"), text));
    }
    Ok(v as i64)
}

/// Reads every record of a MOT file. Blank lines and lines starting with
/// `#` are skipped; anything else malformed is an error naming the line.
pub fn read_mot(reader: impl Read) -> Result<Vec<MotRecord>, MotError> {
    let mut out = Vec::new();
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line_no = index + 1;
        let line = line?;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|f| !f.is_empty())
            .collect();
        if fields.len() < 6 {
            return Err(parse_err(
                line_no,
                format!("expected at least 6 fields, got {}", fields.len()),
                text,
            ));
        }
        let frame = parse_integer(fields[0], "frame", line_no, text)?;
        let frame =
            u64::try_from(frame).map_err(|_| parse_err(line_no, "frame is negative", text))?;
        let id = parse_integer(fields[1], "id", line_no, text)?;
        let mut nums = [0.0_f32; 8];
        for (slot, (i, field)) in nums.iter_mut().zip(fields.iter().enumerate().skip(2)) {
            *slot = field.parse().map_err(|_| {
                parse_err(line_no, format!("field {} is not a number", i + 1), text)
            })?;
        }
        let present = fields.len() - 2;
        let conf = if present > 4 { nums[4] } else { 1.0 };
        let mut extra = [-1.0_f32; 3];
        for (k, slot) in extra.iter_mut().enumerate() {
            if present > 5 + k {
                *slot = nums[5 + k];
            }
        }
        let bbox = BBox::new(nums[0], nums[1], nums[2], nums[3]);
        if !(bbox.x.is_finite() && bbox.y.is_finite() && bbox.w.is_finite() && bbox.h.is_finite()) {
            return Err(parse_err(line_no, "box has a non-finite coordinate", text));
        }
        out.push(MotRecord {
            frame,
            id,
            bbox,
            conf,
            extra,
        });
    }
    Ok(out)
}

/// Writes records as comma-separated MOT lines, boxes with two decimals.
pub fn write_mot(mut writer: impl Write, records: &[MotRecord]) -> Result<(), MotError> {
    for r in records {
        writeln!(
            writer,
            "{},{},{:.2},{:.2},{:.2},{:.2},{:.4},{},{},{}",
            r.frame,
            r.id,
            r.bbox.x,
            r.bbox.y,
            r.bbox.w,
            r.bbox.h,
            r.conf,
            r.extra[0],
            r.extra[1],
            r.extra[2]
        )?;
    }
    writer.flush()?;
    Ok(())
}

/// Groups records by frame, ascending, keeping file order within a frame.
pub fn by_frame(records: &[MotRecord]) -> Vec<(u64, Vec<&MotRecord>)> {
    let mut sorted: Vec<&MotRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.frame); // stable
    let mut out: Vec<(u64, Vec<&MotRecord>)> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some((f, v)) if *f == r.frame => v.push(r),
            _ => out.push((r.frame, vec![r])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mot15_and_mot16_lines() {
        let text = "\
# comment
1,2,399,182,121,229,1,-1,-1,-1
1 3 63.5 153 82 288 0.5
2,-1,10,20,30,40

3,4,1,2,3,4,1,1,0.25
";
        let r = read_mot(text.as_bytes()).expect("valid");
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            MotRecord::new(1, 2, BBox::new(399.0, 182.0, 121.0, 229.0), 1.0)
        );
        assert_eq!(r[1].bbox.x, 63.5);
        assert_eq!(r[1].conf, 0.5);
        assert_eq!(r[2].id, -1);
        assert_eq!(r[2].conf, 1.0);
        assert_eq!(r[3].extra, [1.0, 0.25, -1.0]);
    }

    #[test]
    fn errors_name_the_line() {
        let err = read_mot("1,2,3,4,5,6\n1,2,3\n".as_bytes()).expect_err("short line");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = read_mot("1.5,2,3,4,5,6\n".as_bytes()).expect_err("fractional frame");
        assert!(err.to_string().contains("frame is not an integer"), "{err}");
        let err = read_mot("1,2,x,4,5,6\n".as_bytes()).expect_err("bad number");
        assert!(err.to_string().contains("field 3"), "{err}");
    }

    #[test]
    fn write_then_read_round_trips() {
        let recs = vec![
            MotRecord::new(1, 7, BBox::new(1.25, 2.5, 30.0, 60.75), 0.9),
            MotRecord::new(2, 7, BBox::new(3.0, 4.0, 30.0, 61.0), 1.0),
        ];
        let mut buf = Vec::new();
        write_mot(&mut buf, &recs).expect("write");
        let back = read_mot(buf.as_slice()).expect("read");
        assert_eq!(back, recs);
    }

    #[test]
    fn groups_by_frame_in_order() {
        let recs = vec![
            MotRecord::new(2, 1, BBox::new(0.0, 0.0, 1.0, 1.0), 1.0),
            MotRecord::new(1, 5, BBox::new(0.0, 0.0, 1.0, 1.0), 1.0),
            MotRecord::new(1, 3, BBox::new(0.0, 0.0, 1.0, 1.0), 1.0),
        ];
        let g = by_frame(&recs);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0, 1);
        assert_eq!(g[0].1.iter().map(|r| r.id).collect::<Vec<_>>(), vec![5, 3]);
    }
}
