//! JPEG encoding of camera frames: `media::encode_rgb` (jpeg-encoder, 4:2:0,
//! AVX2 chosen at run time) against the `image` crate's encoder (4:4:4),
//! which Vidar used before, at quality 80 on the six vtest.avi frames
//! `make models` writes. The two are interleaved, A B A B, over rounds; the
//! median ratio and its range are printed with bytes and PSNR.
//!
//! `VIDAR_MODEL_DIR=.cache/models cargo bench -p vidar-edge-node --bench jpeg`

use std::time::Instant;

fn frames() -> Vec<image::RgbImage> {
    let dir = std::env::var("VIDAR_MODEL_DIR").unwrap_or_else(|_| ".cache/models".into());
    [0, 2, 4, 30, 60, 90]
        .iter()
        .map(|i| {
            let path = format!("{dir}/vtest/frame_{i:04}.png");
            image::open(&path)
                .unwrap_or_else(|e| panic!("{path}: {e} (run `make models`)"))
                .to_rgb8()
        })
        .collect()
}

fn image_crate(f: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
    f.write_with_encoder(enc).expect("encodes");
    out.into_inner()
}

fn vidar(f: &image::RgbImage) -> Vec<u8> {
    vidar_edge_node::media::encode_rgb(f.as_raw(), f.width(), f.height(), 80).expect("encodes")
}

fn psnr(a: &image::RgbImage, jpeg: &[u8]) -> f64 {
    let b = vidar_edge_node::media::decode_jpeg(jpeg, a.width(), a.height()).expect("decodes");
    let mse = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0f64.powi(2) / mse.max(1e-9)).log10()
}

/// Seconds per frame over `reps` passes of `frames`.
fn time(frames: &[image::RgbImage], reps: usize, enc: fn(&image::RgbImage) -> Vec<u8>) -> f64 {
    let t0 = Instant::now();
    for _ in 0..reps {
        for f in frames {
            std::hint::black_box(enc(f));
        }
    }
    t0.elapsed().as_secs_f64() / (reps * frames.len()) as f64
}

fn main() {
    let frames = frames();
    let (w, h) = frames[0].dimensions();
    let mean = |enc: fn(&image::RgbImage) -> Vec<u8>| {
        let (mut bytes, mut db) = (0.0, 0.0);
        for f in &frames {
            let j = enc(f);
            bytes += j.len() as f64;
            db += psnr(f, &j);
        }
        let n = frames.len() as f64;
        (bytes / n, db / n)
    };
    let ((ib, idb), (vb, vdb)) = (mean(image_crate), mean(vidar));
    println!("{w}x{h}, quality 80, {} frames", frames.len());
    println!("image crate (4:4:4): {ib:.0} bytes, PSNR {idb:.2} dB");
    println!(
        "jpeg-encoder (4:2:0): {vb:.0} bytes ({:.2}x), PSNR {vdb:.2} dB",
        vb / ib
    );
    let mut ratios = Vec::new();
    for round in 1..=7 {
        let a = time(&frames, 5, image_crate);
        let b = time(&frames, 5, vidar);
        println!(
            "round {round}: image crate {:.2} ms, jpeg-encoder {:.2} ms, {:.2}x",
            a * 1e3,
            b * 1e3,
            a / b
        );
        ratios.push(a / b);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "image crate / jpeg-encoder time: median {:.2}x (range {:.2}-{:.2})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}
