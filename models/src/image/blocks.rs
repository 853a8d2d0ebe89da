//! An RGB8 image rewritten as 2x2 pixel blocks, for models whose input is
//! laid out that way (`nhwc-s2d2` in the manifest): their first convolution
//! then reads 12 contiguous bytes per block instead of gathering 3 per pixel.

use super::ImageError;

/// Bytes of one packed RGB8 pixel.
const PIXEL: usize = 3;

/// Writes the packed RGB8 image `src` (`width x height`, rows without
/// padding) into `dst` as 2x2 pixel blocks (TensorFlow's `space_to_depth`
/// with block 2): block `(by, bx)` is 12 bytes at `(by * width / 2 + bx) * 12`,
/// its top-left, top-right, bottom-left and bottom-right pixels in that order.
pub fn space_to_depth(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut [u8],
) -> Result<(), ImageError> {
    let len = width * height * PIXEL;
    if width % 2 != 0 || height % 2 != 0 {
        return Err(ImageError(format!(
            "{width}x{height}: 2x2 blocks need an even width and height"
        )));
    }
    if src.len() != len || dst.len() != len {
        return Err(ImageError(format!(
            "{width}x{height} RGB8 is {len} bytes; source {}, destination {}",
            src.len(),
            dst.len()
        )));
    }
    let row = width * PIXEL;
    let pair = 2 * PIXEL;
    for (rows, blocks) in src.chunks_exact(2 * row).zip(dst.chunks_exact_mut(2 * row)) {
        let (top, bottom) = rows.split_at(row);
        for ((block, t), b) in blocks
            .chunks_exact_mut(2 * pair)
            .zip(top.chunks_exact(pair))
            .zip(bottom.chunks_exact(pair))
        {
            block[..pair].copy_from_slice(t);
            block[pair..].copy_from_slice(b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hold_their_four_pixels_in_row_then_column_order() {
        let (w, h) = (6, 4);
        // Each byte names its pixel and channel: (y * 10 + x) * 4 + c.
        let src: Vec<u8> = (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| (0..3).map(move |c| ((y * 10 + x) * 4 + c) as u8))
            })
            .collect();
        let mut dst = vec![0; src.len()];
        space_to_depth(&src, w, h, &mut dst).expect("even size");
        for by in 0..h / 2 {
            for bx in 0..w / 2 {
                let block = &dst[(by * w / 2 + bx) * 12..][..12];
                for (k, (dy, dx)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                    let (y, x) = (2 * by + dy, 2 * bx + dx);
                    for c in 0..3 {
                        assert_eq!(
                            block[k * 3 + c],
                            ((y * 10 + x) * 4 + c) as u8,
                            "block ({by}, {bx}), pixel {k}, channel {c}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn odd_sizes_and_wrong_buffers_are_refused_with_the_size() {
        let mut dst = vec![0; 5 * 4 * 3];
        let e = space_to_depth(&[0; 5 * 4 * 3], 5, 4, &mut dst).expect_err("odd width");
        assert!(e.0.contains("5x4"), "{e}");
        let e = space_to_depth(&[0; 10], 4, 4, &mut dst).expect_err("short source");
        assert!(e.0.contains("48 bytes"), "{e}");
    }
}
