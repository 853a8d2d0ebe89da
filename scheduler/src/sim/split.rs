//! EdgeSplit setups: block-level profiles of LeNet, VGG16, ResNet50 and
//! ResNet101 on 32x32 CIFAR-style inputs, and heterogeneous training devices.
//! Work is in GFLOP (1 wu = 1 GFLOP); figures are per-block approximations.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::gib;
use crate::edgesplit::{Cut, Device, ModelProfile, SplitInstance};

/// Samples per batch.
pub const BATCH: f64 = 128.0;
/// Framework overhead of a training process on a device (bytes).
const RUNTIME_BYTES: f64 = 300e6;

/// Per block: (name, forward GFLOP per sample, activation floats per sample at its output, parameters).
type Block = (&'static str, f64, f64, f64);

fn blocks(name: &str) -> Option<&'static [Block]> {
    const LENET: &[Block] = &[
        ("conv1", 0.0003, 4704.0, 156.0),
        ("conv2", 0.0010, 1600.0, 2416.0),
        ("fc1", 0.0001, 120.0, 48_120.0),
        ("fc2", 0.00002, 84.0, 10_164.0),
        ("fc3", 0.000002, 10.0, 850.0),
    ];
    const VGG16: &[Block] = &[
        ("block1", 0.040, 16_384.0, 38_720.0),
        ("block2", 0.078, 8_192.0, 221_440.0),
        ("block3", 0.087, 4_096.0, 1_475_328.0),
        ("block4", 0.087, 2_048.0, 5_899_776.0),
        ("block5", 0.022, 512.0, 7_079_424.0),
        ("classifier", 0.0003, 10.0, 5_130.0),
    ];
    const RESNET50: &[Block] = &[
        ("stem", 0.002, 65_536.0, 1_728.0),
        ("layer1", 0.22, 262_144.0, 215_808.0),
        ("layer2", 0.33, 131_072.0, 1_219_584.0),
        ("layer3", 0.47, 65_536.0, 7_098_368.0),
        ("layer4", 0.26, 32_768.0, 14_964_736.0),
        ("fc", 0.00002, 10.0, 20_490.0),
    ];
    const RESNET101: &[Block] = &[
        ("stem", 0.002, 65_536.0, 1_728.0),
        ("layer1", 0.22, 262_144.0, 215_808.0),
        ("layer2", 0.33, 131_072.0, 1_219_584.0),
        ("layer3", 1.80, 65_536.0, 26_090_496.0),
        ("layer4", 0.26, 32_768.0, 14_964_736.0),
        ("fc", 0.00002, 10.0, 20_490.0),
    ];
    match name {
        "lenet" => Some(LENET),
        "vgg16" => Some(VGG16),
        "resnet50" => Some(RESNET50),
        "resnet101" => Some(RESNET101),
        _ => None,
    }
}

/// Model names with profiles.
pub const MODELS: [&str; 4] = ["lenet", "vgg16", "resnet50", "resnet101"];

/// The profile of a named model (`None` for an unknown name). Training memory
/// of layers `1..=j`: weights, gradients and two optimiser moments (16 B per
/// parameter), the stored activations of a batch (4 B per float, twice for
/// intermediate buffers), plus the runtime.
pub fn profile(name: &str) -> Option<ModelProfile> {
    let b = blocks(name)?;
    let total: f64 = b.iter().map(|x| x.1).sum();
    let mut cuts = Vec::new();
    let (mut flops, mut params, mut acts) = (0.0, 0.0, 0.0);
    for (j, &(layer, f, a, p)) in b.iter().enumerate() {
        flops += f;
        params += p;
        acts += a;
        let last = j + 1 == b.len();
        cuts.push(Cut {
            layer: layer.into(),
            device_work: flops * BATCH,
            server_work: (total - flops).max(0.0) * BATCH,
            activation_bytes: if last { 0.0 } else { a * 4.0 * BATCH },
            param_bytes: params * 4.0,
            train_memory: (params * 16.0 + acts * 8.0 * BATCH + RUNTIME_BYTES) as u64,
        });
    }
    Some(ModelProfile {
        name: name.into(),
        cuts,
    })
}

/// `m` devices: Raspberry-Pi-class (2 GFLOP/s training, 2 GiB), Jetson-Nano-class
/// (8, 4 GiB) and Xavier-class (25, 8 GiB), drawn with a seed; the server gives
/// each device `1000 / m` GFLOP/s (its GPU shared); `batches` per round.
pub fn instance(
    seed: u64,
    model: &str,
    m: usize,
    bandwidth_mbit: f64,
    batches: u32,
) -> Option<SplitInstance> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let devices = (0..m)
        .map(|i| {
            let (speed, memory) = match rng.gen_range(0..3) {
                0 => (2.0, gib(2.0)),
                1 => (8.0, gib(4.0)),
                _ => (25.0, gib(8.0)),
            };
            Device {
                id: format!("d{i}"),
                speed,
                memory,
            }
        })
        .collect();
    Some(SplitInstance {
        devices,
        server_speed: 1000.0 / m as f64,
        model: profile(model)?,
        batches,
        bandwidth: super::mbit(bandwidth_mbit),
    })
}
