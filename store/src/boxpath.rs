//! The compact encoding of a sighting's box path (column `sightings.path`).
//!
//! Format, version 1, all little-endian:
//!
//! ```text
//! byte 0          format version, 1
//! then, per point (20 bytes each, in time order):
//!   u32           capture time minus the sighting's first_ms, milliseconds
//!   f32 x 4       box x, y, w, h in pixels
//! ```
//!
//! So a 10 s track at 10 fps costs 2 KB, against ~10 KB as JSON. Offsets fit a
//! `u32` because a sighting spans at most [`crate::MAX_SIGHTING_SPAN_MS`]. A blob
//! of another length or version is refused, never guessed at.

use vidar_protocol::{BBox, UnixMs};

use crate::record::BoxPoint;

/// The format version written by [`encode`].
pub const FORMAT_VERSION: u8 = 1;
/// Bytes per point.
pub const POINT_BYTES: usize = 20;

/// Encodes `path` relative to `first_ms`. The caller has validated the sighting
/// (points in `[first_ms, first_ms + MAX_SIGHTING_SPAN_MS]`); offsets outside
/// `u32` are clamped rather than wrapped.
pub fn encode(first_ms: UnixMs, path: &[BoxPoint]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + path.len() * POINT_BYTES);
    out.push(FORMAT_VERSION);
    for p in path {
        let dt = p.t_ms.since(first_ms).clamp(0, i64::from(u32::MAX));
        let dt = u32::try_from(dt).unwrap_or(u32::MAX);
        out.extend_from_slice(&dt.to_le_bytes());
        for v in [p.bbox.x, p.bbox.y, p.bbox.w, p.bbox.h] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Decodes a blob written by [`encode`]; the error says what is wrong with it.
pub fn decode(first_ms: UnixMs, blob: &[u8]) -> Result<Vec<BoxPoint>, String> {
    let Some((&version, body)) = blob.split_first() else {
        return Err("empty box path blob".to_string());
    };
    if version != FORMAT_VERSION {
        return Err(format!(
            "box path format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    if body.len() % POINT_BYTES != 0 {
        return Err(format!(
            "box path body is {} bytes, not a multiple of {POINT_BYTES}",
            body.len()
        ));
    }
    let word = |c: &[u8], i: usize| -> [u8; 4] {
        let mut w = [0u8; 4];
        w.copy_from_slice(&c[i * 4..i * 4 + 4]);
        w
    };
    Ok(body
        .chunks_exact(POINT_BYTES)
        .map(|c| BoxPoint {
            t_ms: first_ms.add_ms(i64::from(u32::from_le_bytes(word(c, 0)))),
            bbox: BBox {
                x: f32::from_le_bytes(word(c, 1)),
                y: f32::from_le_bytes(word(c, 2)),
                w: f32::from_le_bytes(word(c, 3)),
                h: f32::from_le_bytes(word(c, 4)),
            },
        })
        .collect())
}

/// Encodes an embedding as consecutive little-endian `f32` (column `identities.embedding`).
pub fn encode_f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes [`encode_f32s`]; `dim` is the stored dimension, checked against the length.
pub fn decode_f32s(blob: &[u8], dim: usize) -> Result<Vec<f32>, String> {
    if blob.len() != dim * 4 {
        return Err(format!(
            "embedding blob is {} bytes, dimension {dim} needs {}",
            blob.len(),
            dim * 4
        ));
    }
    Ok(blob
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn point(t_ms: i64, x: f32) -> BoxPoint {
        BoxPoint {
            t_ms: UnixMs(t_ms),
            bbox: BBox {
                x,
                y: x + 1.0,
                w: 10.5,
                h: 20.25,
            },
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let blob = encode(UnixMs(1_000), &[point(1_000, 1.0), point(1_040, 2.0)]);
        assert_eq!(blob.len(), 1 + 2 * POINT_BYTES);
        assert_eq!(blob[0], 1);
        assert_eq!(&blob[21..25], &40u32.to_le_bytes());
        assert_eq!(&blob[25..29], &2.0f32.to_le_bytes());
    }

    #[test]
    fn refuses_bad_blobs() {
        assert!(decode(UnixMs(0), &[]).is_err());
        assert!(decode(UnixMs(0), &[2]).unwrap_err().contains("version 2"));
        assert!(decode(UnixMs(0), &[1, 0, 0])
            .unwrap_err()
            .contains("multiple of 20"));
        assert!(decode_f32s(&[0; 7], 2).is_err());
    }

    proptest! {
        #[test]
        fn path_roundtrips(first in -1_000_000_000_000i64..1_000_000_000_000,
                           pts in prop::collection::vec((0i64..3_600_000, -1e4f32..1e4), 0..50)) {
            let mut pts = pts;
            pts.sort_by_key(|p| p.0);
            let path: Vec<BoxPoint> = pts.iter().map(|&(dt, x)| point(first + dt, x)).collect();
            prop_assert_eq!(decode(UnixMs(first), &encode(UnixMs(first), &path)), Ok(path));
        }

        #[test]
        fn embedding_roundtrips(v in prop::collection::vec(-1.0f32..1.0, 1..600)) {
            prop_assert_eq!(decode_f32s(&encode_f32s(&v), v.len()), Ok(v));
        }
    }
}
