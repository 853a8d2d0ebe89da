//! DCEI setups for JSTSH: the published testbed (strong 8 GB and weak 4 GB
//! devices, cameras, shaped links with 30 % variance), workloads driven by the
//! number of people in view, and small random instances for tests.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{gib, mbit, vary};
use crate::cluster::{Cluster, Link, Node, NodeId};
use crate::jstsh::{CameraStream, CostModel, DirectRates, ModelMemory, StreamInstance};

/// Capacity of the strong device class (wu/s; 1 wu ~ 1 GFLOP of inference).
pub const STRONG_CAPACITY: f64 = 40.0;
/// Capacity of the weak device class (wu/s).
pub const WEAK_CAPACITY: f64 = 16.0;
/// SSD-MobileNet-V2 detection + Kalman tracking per frame (wu).
pub const DETECT_WORK: f64 = 1.5;
/// OSNet work per person crop (wu).
pub const REID_WORK_PER_PERSON: f64 = 0.6;
/// Fraction of frames on which a person's crop is re-identified (new or uncertain tracks).
pub const REID_CALL_RATE: f64 = 0.25;
/// Bytes of one JPEG person crop.
pub const CROP_BYTES: f64 = 20_000.0;
/// Bytes of one encoded 1080p frame.
pub const FRAME_BYTES: f64 = 40_000.0;
/// Camera frame rate.
pub const FPS: f64 = 10.0;

/// The testbed's device `i` (0-based): strong, strong, weak, strong, weak, ...
/// (3 strong + 2 weak for the 5-device runs, as published).
pub fn device(i: usize) -> Node {
    let strong = !matches!(i, 2 | 4 | 6);
    Node {
        id: NodeId::new(format!("dev{i}")).expect("generated ids are valid"),
        capacity: if strong {
            STRONG_CAPACITY
        } else {
            WEAK_CAPACITY
        },
        // RAM minus ~2 GiB of OS and pipeline buffers.
        memory: if strong { gib(6.0) } else { gib(2.0) },
    }
}

/// A stream with `people` persons in view.
pub fn stream(id: usize, people: f64, camera_rates: BTreeMap<NodeId, f64>) -> CameraStream {
    CameraStream {
        id: format!("cam{id}"),
        fps: FPS,
        frame_bytes: FRAME_BYTES,
        camera_rates,
        detect_work: DETECT_WORK,
        ingest_work: 0.0,
        reid_work: people * REID_WORK_PER_PERSON * REID_CALL_RATE,
        crop_bytes: people * CROP_BYTES * REID_CALL_RATE,
    }
}

/// The testbed: `devices` devices in a full mesh shaped to `bandwidth_mbit`
/// (±30 %), `people[k]` persons in view of camera `k`. Cameras reach every device
/// over the same shaped network.
pub fn testbed(
    seed: u64,
    devices: usize,
    people: &[f64],
    bandwidth_mbit: f64,
    cost: CostModel,
) -> StreamInstance {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nodes: Vec<Node> = (0..devices).map(device).collect();
    let mut links = Vec::new();
    for a in 0..devices {
        for b in a + 1..devices {
            links.push(Link::new(
                nodes[a].id.clone(),
                nodes[b].id.clone(),
                vary(&mut rng, mbit(bandwidth_mbit), 0.3),
            ));
        }
    }
    let streams = people
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let rates = nodes
                .iter()
                .map(|d| (d.id.clone(), vary(&mut rng, mbit(bandwidth_mbit), 0.3)))
                .collect();
            stream(k, n, rates)
        })
        .collect();
    StreamInstance {
        cluster: Cluster { nodes, links },
        models: ModelMemory {
            detector: gib(1.5),
            reid: gib(1.2),
        },
        streams,
        cost,
        rates: None,
        shared_ingress: false,
    }
}

/// A small random instance (for tests and gap measurements): `m` nodes of random
/// capacity and memory in a full mesh of random rates, `k` streams of random
/// workloads; memory is tight enough that some nodes host only one model.
pub fn random_instance(seed: u64, m: usize, k: usize, cost: CostModel) -> StreamInstance {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nodes: Vec<Node> = (0..m)
        .map(|i| Node {
            id: NodeId::new(format!("n{i}")).expect("generated ids are valid"),
            capacity: rng.gen_range(10.0..60.0),
            memory: [gib(1.5), gib(2.0), gib(3.0), gib(6.0)][rng.gen_range(0..4)],
        })
        .collect();
    let mut links = Vec::new();
    for a in 0..m {
        for b in a + 1..m {
            links.push(Link::new(
                nodes[a].id.clone(),
                nodes[b].id.clone(),
                mbit(rng.gen_range(2.0..40.0)),
            ));
        }
    }
    let streams = (0..k)
        .map(|s| {
            let rates = nodes
                .iter()
                .map(|n| (n.id.clone(), mbit(rng.gen_range(2.0..40.0))))
                .collect();
            let mut st = stream(s, rng.gen_range(0.0..12.0), rates);
            st.fps = rng.gen_range(5.0..15.0);
            st.detect_work = rng.gen_range(0.5..2.5);
            st
        })
        .collect();
    StreamInstance {
        cluster: Cluster { nodes, links },
        models: ModelMemory {
            detector: gib(1.5),
            reid: gib(1.2),
        },
        streams,
        cost,
        rates: None,
        shared_ingress: false,
    }
}

/// [`random_instance`] with its node-to-node numbers read as direct
/// end-to-end rates (`rates`, each pair given once, so the same both ways)
/// instead of links: what each pair really gets when no node relays crops
/// for another (the widest-path model of the links overrates a pair whose
/// detour through a third node is wider).
pub fn random_direct_instance(seed: u64, m: usize, k: usize, cost: CostModel) -> StreamInstance {
    let mut inst = random_instance(seed, m, k, cost);
    let mut rates = DirectRates::new();
    for l in std::mem::take(&mut inst.cluster.links) {
        rates.entry(l.a).or_default().insert(l.b, l.bandwidth);
    }
    inst.rates = Some(rates);
    inst
}

/// [`random_direct_instance`] where the streams a node ingests share its
/// link ([`StreamInstance::shared_ingress`]): every stream reaches node `i`
/// at one rate, `i`'s link (2-40 Mbit/s), so that a few 3.2 Mbit/s streams
/// can fill a slow one, as in the running system.
pub fn random_shared_instance(seed: u64, m: usize, k: usize, cost: CostModel) -> StreamInstance {
    let mut inst = random_direct_instance(seed, m, k, cost);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let link: Vec<f64> = (0..m).map(|_| mbit(rng.gen_range(2.0..40.0))).collect();
    for st in &mut inst.streams {
        for (i, n) in inst.cluster.nodes.iter().enumerate() {
            if let Some(r) = st.camera_rates.get_mut(&n.id) {
                *r = link[i];
            }
        }
    }
    inst.shared_ingress = true;
    inst
}
