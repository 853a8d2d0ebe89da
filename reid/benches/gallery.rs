//! Micro-benchmark of identity assignment: a linear cosine scan over the gallery.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vidar_protocol::{CameraId, UnixMs};
use vidar_reid::{Embedding, Gallery, GalleryConfig};

fn pseudo_random(seed: u64, dim: usize) -> Embedding {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let v: Vec<f32> = (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    Embedding::normalized(&v)
}

fn assign(c: &mut Criterion) {
    let camera = CameraId::new("bench").expect("camera");
    let mut group = c.benchmark_group("gallery assign (1280-d)");
    for size in [100usize, 1_000, 10_000] {
        let mut gallery = Gallery::new(GalleryConfig {
            max_identities: size,
            // Random vectors are near-orthogonal: every probe below mints (and evicts) an identity.
            match_threshold: 0.99,
            ..GalleryConfig::default()
        })
        .expect("gallery");
        for i in 0..size as u64 {
            gallery
                .assign(&pseudo_random(i, 1280), &camera, UnixMs(i as i64))
                .expect("fill");
        }
        let probe = pseudo_random(u64::MAX, 1280);
        let mut t = UnixMs(size as i64);
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                t = t.add_ms(1);
                gallery.assign(&probe, &camera, t).expect("assign")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, assign);
criterion_main!(benches);
