//! Every message through the public codec: round trips, and hostile bytes
//! (random, truncated, corrupted) that must be refused without a panic.

use proptest::prelude::*;
use vidar_protocol::messages::*;
use vidar_protocol::record::*;
use vidar_protocol::wire::{decode, encode, peek, DecodeError, Message, MessageKind};
use vidar_protocol::{
    BBox, CameraId, IdentityId, JobId, NodeId, StageId, StreamState, TrackId, UnixMs,
};

fn node(s: &str) -> NodeId {
    NodeId::new(s).expect("valid id")
}

fn cam(s: &str) -> CameraId {
    CameraId::new(s).expect("valid id")
}

const BOX: BBox = BBox {
    x: 10.0,
    y: 20.5,
    w: 30.0,
    h: 60.25,
};

fn node_status() -> NodeStatus {
    NodeStatus {
        node: node("edge-1"),
        sent_ms: UnixMs(1_700_000_001_000),
        started_ms: UnixMs(1_700_000_000_000),
        plan_version: 4,
        capacity: NodeCapacity {
            cores: 8,
            memory_mb: 16_384,
            detect_fps: 61.5,
            reid_crops_per_s: 410.0,
            reid_service: true,
            jpeg_encode_cost: 0.6,
            jpeg_decode_cost: 0.3,
            detect_cores: 4.0,
        },
        load: NodeLoad {
            cameras: vec![
                CameraLoad {
                    camera: cam("lobby"),
                    state: StreamState::Streaming,
                    fps: 25.0,
                    analysed_fps: 12.5,
                    dropped: 3,
                    reconnects: 1,
                    tracks: 2,
                    bitrate_bps: 2_200_000.0,
                    persons: 3.5,
                    detect_share: 0.5,
                },
                CameraLoad {
                    camera: cam("dock"),
                    state: StreamState::BackingOff,
                    fps: 0.0,
                    analysed_fps: 0.0,
                    dropped: 0,
                    reconnects: 7,
                    tracks: 0,
                    bitrate_bps: 0.0,
                    persons: 0.0,
                    detect_share: 0.0,
                },
            ],
            detect_busy: 0.7,
            reid_busy: 0.1,
            cpu_cores: 3.2,
            job_cpu_cores: 0.9,
            reid_queue: 5,
            records_last_seq: 1234,
            unsynced: 20,
        },
        links: vec![LinkRate {
            to: node("edge-2"),
            mbit_s: 94.2,
            rtt_ms: 0.8,
            upload_mbit_s: 97.0,
        }],
        metrics_addr: Some("10.0.0.5:9100".into()),
        job_flows: vec![JobFlowLoad {
            job: JobId::new("attributes").expect("id"),
            to_stage: StageId::new("det").expect("id"),
            items: 120,
            bytes: 4_800_000,
        }],
    }
}

fn plan() -> Plan {
    Plan {
        version: 5,
        issued_ms: UnixMs(1_700_000_002_000),
        reason: "edge-3 left".into(),
        streams: vec![
            StreamAssignment {
                camera: cam("lobby"),
                source: "rtsp://10.0.0.20/stream1".into(),
                node: node("edge-1"),
                reid_node: node("edge-1"),
            },
            StreamAssignment {
                camera: cam("dock"),
                source: "file:///data/dock.mp4".into(),
                node: node("edge-2"),
                reid_node: node("edge-1"),
            },
        ],
        bandwidth: vec![BandwidthShare {
            from: node("edge-2"),
            to: node("edge-1"),
            bytes_per_s: 2_000_000,
        }],
        jobs: Vec::new(),
    }
}

fn reid_request() -> ReidRequest {
    ReidRequest {
        from: node("edge-2"),
        request_id: 77,
        crops: vec![
            Crop {
                camera: cam("dock"),
                track: TrackId(3),
                capture_ms: UnixMs(1_700_000_001_500),
                width: 2,
                height: 3,
                encoding: CropEncoding::Rgb8,
                data: (0..18).collect(),
            },
            Crop {
                camera: cam("dock"),
                track: TrackId(4),
                capture_ms: UnixMs(1_700_000_001_500),
                width: 64,
                height: 128,
                encoding: CropEncoding::Jpeg,
                data: vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9],
            },
        ],
    }
}

fn reid_reply() -> ReidReply {
    ReidReply {
        request_id: 77,
        served_by: node("edge-1"),
        results: vec![ReidAnswer {
            camera: cam("dock"),
            track: TrackId(3),
            identity: IdentityId(9),
            similarity: 0.83,
            minted: false,
        }],
        error: Some("crop 1: model busy".into()),
    }
}

fn identity_announce() -> IdentityAnnounce {
    IdentityAnnounce {
        identity: IdentityId(10),
        node: node("edge-1"),
        camera: cam("lobby"),
        seen_ms: UnixMs(1_700_000_001_600),
        embedding: vec![0.5, -0.25, 0.125, 0.0],
        model: "test-model".into(),
    }
}

fn records(n: &NodeId) -> Vec<KeyedRecord> {
    let key = |seq| RecordKey {
        node: n.clone(),
        seq,
    };
    vec![
        KeyedRecord {
            key: key(11),
            record: Record::Camera(CameraRecord {
                camera: cam("lobby"),
                name: "Lobby, east door".into(),
                recorded_ms: UnixMs(1_700_000_000_000),
            }),
        },
        KeyedRecord {
            key: key(12),
            record: Record::Sighting(Sighting {
                identity: IdentityId(9),
                camera: cam("lobby"),
                track: TrackId(3),
                first_ms: UnixMs(1_700_000_000_100),
                last_ms: UnixMs(1_700_000_000_300),
                path: vec![
                    BoxPoint {
                        t_ms: UnixMs(1_700_000_000_100),
                        bbox: BOX,
                    },
                    BoxPoint {
                        t_ms: UnixMs(1_700_000_000_300),
                        bbox: BOX,
                    },
                ],
            }),
        },
        KeyedRecord {
            key: key(13),
            record: Record::Identity(IdentityRecord {
                identity: IdentityId(9),
                camera: cam("lobby"),
                first_seen_ms: UnixMs(1_700_000_000_100),
                embedding: vec![1.0, 0.0],
                model: "test-model".into(),
            }),
        },
        KeyedRecord {
            key: key(14),
            record: Record::Snapshot(Snapshot {
                identity: IdentityId(9),
                camera: cam("lobby"),
                t_ms: UnixMs(1_700_000_000_200),
                jpeg: vec![0xFF, 0xD8, 0xFF, 0xD9],
            }),
        },
        KeyedRecord {
            key: key(15),
            record: Record::Track(TrackRecord {
                camera: cam("lobby"),
                track: TrackId(3),
                first_ms: UnixMs(1_700_000_000_100),
                last_ms: UnixMs(1_700_000_000_300),
                identity: None,
            }),
        },
        KeyedRecord {
            key: key(16),
            record: Record::Merge(IdentityMerge {
                from: IdentityId(9),
                into: IdentityId(2),
                decided_ms: UnixMs(1_700_000_000_400),
            }),
        },
        KeyedRecord {
            key: key(17),
            record: Record::Correction(Correction {
                action: CorrectionAction::Split {
                    sighting: key(12),
                    from: IdentityId(9),
                    into: IdentityId(10),
                    scope: SplitScope::Track,
                },
                actor: "ann".into(),
                reason: "two people".into(),
                decided_ms: UnixMs(1_700_000_000_500),
            }),
        },
        KeyedRecord {
            key: key(18),
            record: Record::JobResult(JobResult {
                job: vidar_protocol::JobId::new("attributes").expect("id"),
                stage: vidar_protocol::StageId::new("out").expect("id"),
                camera: cam("lobby"),
                captured_ms: UnixMs(1_700_000_000_000),
                item: 3,
                kind: DataKind::Tensors,
                items: vec![JobVector {
                    bbox: None,
                    track: Some(TrackId(2)),
                    values: vec![0.25, -1.0],
                }],
            }),
        },
    ]
}

fn sync_batch() -> SyncBatch {
    let n = node("edge-1");
    SyncBatch {
        records: records(&n),
        node: n,
        last_seq: 20,
        more: true,
    }
}

/// The smallest JPEG-looking bytes whose frame header (SOF0) says `w` x `h`.
fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&[0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]);
    v
}

#[test]
fn a_tile_must_be_the_size_its_jpeg_says_and_a_sane_size() {
    let ok = vidar_protocol::encode(&camera_tile()).expect("encodes");
    assert!(vidar_protocol::decode::<CameraTile>(&ok).is_ok());
    // Issue 16: a fake 60000x60000 tile was shown in the UI.
    let huge = CameraTile {
        width: 60000,
        height: 60000,
        jpeg: jpeg_header(60000, 60000),
        ..camera_tile()
    };
    // The same validation runs when encoding and when decoding.
    let e = vidar_protocol::encode(&huge).expect_err("refused");
    assert!(e.to_string().contains("width: 60000"), "{e}");
    // A JPEG of another size than the message says.
    let lying = CameraTile {
        jpeg: jpeg_header(4000, 4000),
        ..camera_tile()
    };
    let e = vidar_protocol::encode(&lying).expect_err("refused");
    assert!(e.to_string().contains("4000x4000"), "{e}");
    assert_eq!(
        vidar_protocol::messages::jpeg_size(&jpeg_header(640, 360)),
        Some((640, 360))
    );
    assert_eq!(
        vidar_protocol::messages::jpeg_size(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]),
        None
    );
}

fn camera_tile() -> CameraTile {
    CameraTile {
        camera: cam("lobby"),
        node: node("edge-1"),
        captured_ms: UnixMs(1_700_000_001_000),
        state: StreamState::Streaming,
        fps: 25.0,
        dropped: 3,
        width: 640,
        height: 360,
        jpeg: jpeg_header(640, 360),
        boxes: vec![
            TileBox {
                bbox: BOX,
                track: TrackId(3),
                identity: Some(IdentityId(9)),
            },
            TileBox {
                bbox: BOX,
                track: TrackId(4),
                identity: None,
            },
        ],
    }
}

/// One encoding of every message kind, with its kind.
fn all_encoded() -> Vec<(MessageKind, Vec<u8>)> {
    fn enc<M: Message>(m: &M) -> (MessageKind, Vec<u8>) {
        (M::KIND, encode(m).expect("sample encodes"))
    }
    let range = TimeRange::new(UnixMs(1_700_000_000_000), UnixMs(1_700_000_100_000));
    vec![
        enc(&node_status()),
        enc(&plan()),
        enc(&reid_request()),
        enc(&reid_reply()),
        enc(&identity_announce()),
        enc(&MergeAnnounce {
            from: IdentityId(9),
            into: IdentityId(2),
            decided_ms: UnixMs(5),
        }),
        enc(&Merges {
            merges: vec![MergeAnnounce {
                from: IdentityId(8),
                into: IdentityId(2),
                decided_ms: UnixMs(6),
            }],
        }),
        enc(&SyncRequest {
            after_seq: 10,
            max_records: 500,
            ack_through: 10,
        }),
        enc(&sync_batch()),
        enc(&camera_tile()),
        enc(&QueryRequest::Trajectory {
            identity: IdentityId(9),
            range,
        }),
        enc(&QueryReply {
            records: records(&node("edge-1")),
        }),
        enc(&split_announce()),
        enc(&keep_apart()),
        enc(&identity_joined()),
        enc(&link_probe()),
        enc(&LinkProbeReply {
            seq: 4,
            received: 3,
        }),
        enc(&identity_seen()),
        enc(&model_refresh()),
        enc(&model_chunk_request()),
        enc(&model_chunk()),
        enc(&job_item()),
        enc(&TrainRequest {
            round: 3,
            step: TrainStep::Begin {
                model: "osnet-x0-25-msmt17-combineall".into(),
                cut: 5,
                params: vec![WireTensor {
                    name: "conv1.weight".into(),
                    shape: vec![2, 2],
                    values: vec![0.1, -0.2, 0.3, 0.0],
                }],
                lr: 1e-4,
                ids: 8,
                per_id: 4,
                seed: 9,
                share_bytes_s: 1.0e6,
            },
        }),
        enc(&TrainReply::Activations {
            batch: 2,
            labels: vec![4, 4],
            activations: WireTensor {
                name: String::new(),
                shape: vec![2, 3],
                values: vec![1.0; 6],
            },
        }),
    ]
}

fn job_spec() -> JobSpec {
    let stage = |name: &str, kind: StageKind, input: Option<&str>| JobStage {
        name: vidar_protocol::StageId::new(name).expect("id"),
        kind,
        input: input.map(|i| vidar_protocol::StageId::new(i).expect("id")),
        camera: (kind == StageKind::Source).then(|| cam("lobby")),
        model: (kind == StageKind::Onnx).then(|| "osnet-x0-25-msmt17".to_string()),
        sink: (kind == StageKind::Sink).then_some(SinkKind::Records),
    };
    JobSpec {
        id: vidar_protocol::JobId::new("attributes").expect("id"),
        rate: 2.0,
        stages: vec![
            stage("cam", StageKind::Source, None),
            stage("det", StageKind::Detect, Some("cam")),
            stage("attr", StageKind::Onnx, Some("det")),
            stage("out", StageKind::Sink, Some("attr")),
        ],
    }
}

fn plan_with_job() -> Plan {
    Plan {
        jobs: vec![JobAssignment {
            spec: job_spec(),
            nodes: vec![
                node("edge-1"),
                node("edge-2"),
                node("edge-2"),
                node("edge-1"),
            ],
            flows: vec![
                JobFlow {
                    to_stage: vidar_protocol::StageId::new("det").expect("id"),
                    bytes_per_s: 500_000,
                },
                JobFlow {
                    to_stage: vidar_protocol::StageId::new("out").expect("id"),
                    bytes_per_s: 20_000,
                },
            ],
            predicted_rate: 2.0,
        }],
        ..plan()
    }
}

fn job_item() -> JobItem {
    JobItem {
        job: vidar_protocol::JobId::new("attributes").expect("id"),
        to_stage: vidar_protocol::StageId::new("attr").expect("id"),
        from: node("edge-2"),
        camera: cam("lobby"),
        seq: 12,
        captured_ms: UnixMs(1_700_000_000_500),
        data: JobData::Crops(vec![JobCrop {
            bbox: BBox {
                x: 1.0,
                y: 2.0,
                w: 30.0,
                h: 80.0,
            },
            score: 0.9,
            track: Some(TrackId(3)),
            width: 30,
            height: 80,
            jpeg: vec![0xFF, 0xD8, 0xFF, 0xD9],
        }]),
    }
}

fn model_refresh() -> ModelRefresh {
    ModelRefresh {
        serial: 3,
        model: "osnet-x0-25-msmt17-combineall".into(),
        version: "site-2".into(),
        parent: Some("site-1".into()),
        sha256: "ab".repeat(32),
        size: 920_270,
        issued_ms: UnixMs(1_700_000_000_000),
    }
}

fn model_chunk_request() -> ModelChunkRequest {
    ModelChunkRequest {
        sha256: "ab".repeat(32),
        offset: 1 << 20,
        len: 1 << 20,
    }
}

fn model_chunk() -> ModelChunk {
    ModelChunk {
        sha256: "ab".repeat(32),
        offset: 4,
        total: 10,
        bytes: vec![1, 2, 3, 4, 5, 6],
    }
}

fn identity_seen() -> IdentitySeen {
    IdentitySeen {
        identity: IdentityId(10),
        node: node("edge-1"),
        camera: cam("lobby"),
        track: TrackId(4),
        first_ms: UnixMs(1_700_000_001_600),
        last_ms: Some(UnixMs(1_700_000_004_000)),
    }
}

fn link_probe() -> LinkProbe {
    LinkProbe {
        from: node("edge-2"),
        seq: 4,
        pad: vec![7; 3],
    }
}

fn identity_joined() -> IdentityJoined {
    IdentityJoined {
        from: IdentityId(10),
        into: IdentityId(2),
        node: node("edge-1"),
        decided_ms: UnixMs(9),
    }
}

fn keep_apart() -> KeepApart {
    KeepApart {
        from: IdentityId(10),
        into: IdentityId(2),
        view: Some(identity_announce()),
        decided_ms: UnixMs(8),
    }
}

fn split_announce() -> SplitAnnounce {
    SplitAnnounce {
        sighting: RecordKey {
            node: node("edge-1"),
            seq: 12,
        },
        camera: cam("lobby"),
        track: TrackId(3),
        first_ms: UnixMs(1_700_000_000_100),
        last_ms: UnixMs(1_700_000_000_300),
        from: IdentityId(9),
        into: IdentityId(10),
        decided_ms: UnixMs(7),
    }
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(m: M) {
    let bytes = encode(&m).expect("encodes");
    assert_eq!(peek(&bytes).map(|(_, k)| k), Ok(M::KIND));
    assert_eq!(decode::<M>(&bytes), Ok(m));
}

#[test]
fn every_message_round_trips() {
    round_trip(node_status());
    round_trip(NodeStatus {
        links: Vec::new(),
        metrics_addr: None,
        job_flows: Vec::new(),
        ..node_status()
    });
    round_trip(plan());
    round_trip(reid_request());
    round_trip(reid_reply());
    round_trip(ReidReply {
        error: None,
        ..reid_reply()
    });
    round_trip(identity_announce());
    round_trip(MergeAnnounce {
        from: IdentityId(9),
        into: IdentityId(2),
        decided_ms: UnixMs(5),
    });
    round_trip(Merges { merges: Vec::new() });
    round_trip(SyncRequest {
        after_seq: 0,
        max_records: 1,
        ack_through: 0,
    });
    round_trip(sync_batch());
    round_trip(SyncBatch {
        records: Vec::new(),
        node: node("edge-1"),
        last_seq: 0,
        more: false,
    });
    round_trip(camera_tile());
    round_trip(CameraTile {
        jpeg: Vec::new(),
        boxes: Vec::new(),
        state: StreamState::Connecting,
        ..camera_tile()
    });
    let range = TimeRange::new(UnixMs(1), UnixMs(2));
    round_trip(QueryRequest::Trajectory {
        identity: IdentityId(9),
        range,
    });
    round_trip(QueryRequest::SightingsByCamera {
        camera: cam("dock"),
        range: TimeRange::all(),
    });
    round_trip(QueryRequest::IdentitiesInRange { range });
    round_trip(QueryReply {
        records: records(&node("edge-1")),
    });
    round_trip(split_announce());
    assert!(encode(&SplitAnnounce {
        into: IdentityId(9),
        ..split_announce()
    })
    .is_err());
    round_trip(keep_apart());
    round_trip(KeepApart {
        view: None,
        ..keep_apart()
    });
    // The view must be of the identity kept apart, and valid itself.
    for bad in [
        KeepApart {
            into: IdentityId(10),
            ..keep_apart()
        },
        KeepApart {
            from: IdentityId(11),
            ..keep_apart()
        },
        KeepApart {
            view: Some(IdentityAnnounce {
                embedding: vec![f32::NAN],
                ..identity_announce()
            }),
            ..keep_apart()
        },
    ] {
        assert!(encode(&bad).is_err(), "{bad:?}");
    }
    round_trip(identity_joined());
    // An identity does not join itself.
    assert!(encode(&IdentityJoined {
        into: IdentityId(10),
        ..identity_joined()
    })
    .is_err());
    round_trip(link_probe());
    // A probe's filler is bounded.
    let big = LinkProbe {
        pad: vec![0; MAX_PROBE_BYTES + 1],
        ..link_probe()
    };
    assert!(encode(&big).is_err());
    round_trip(LinkProbe {
        pad: vec![0; MAX_PROBE_BYTES],
        ..link_probe()
    });
    round_trip(identity_seen());
    round_trip(IdentitySeen {
        last_ms: None,
        ..identity_seen()
    });
    // A track does not end before it began.
    assert!(encode(&IdentitySeen {
        last_ms: Some(UnixMs(1_700_000_001_599)),
        ..identity_seen()
    })
    .is_err());
    round_trip(model_refresh());
    round_trip(ModelRefresh {
        parent: None,
        ..model_refresh()
    });
    round_trip(plan_with_job());
    round_trip(job_item());
    // A plan whose job does not check is refused, naming the job and stage.
    let mut bad = plan_with_job();
    bad.jobs[0].spec.stages[2].model = None;
    let e = encode(&bad).expect_err("invalid job").to_string();
    assert!(
        e.contains("jobs[0]: job attributes, stage attr (onnx): `model` is missing"),
        "{e}"
    );
    let mut bad = plan_with_job();
    bad.jobs[0].nodes.pop();
    let e = encode(&bad).expect_err("stage without node").to_string();
    assert!(e.contains("jobs[0].nodes: 3 entries for 4 stages"), "{e}");
    round_trip(model_chunk_request());
    round_trip(model_chunk());
    round_trip(ModelChunk {
        offset: 0,
        total: MAX_MODEL_CHUNK as u64,
        bytes: vec![7; MAX_MODEL_CHUNK],
        ..model_chunk()
    });
    // Refused, each naming its field.
    for (m, want) in [
        (
            ModelRefresh {
                sha256: "AB".repeat(32),
                ..model_refresh()
            },
            "sha256",
        ),
        (
            ModelRefresh {
                sha256: "ab".into(),
                ..model_refresh()
            },
            "sha256",
        ),
        (
            ModelRefresh {
                size: 0,
                ..model_refresh()
            },
            "size",
        ),
        (
            ModelRefresh {
                size: MAX_MODEL_BYTES + 1,
                ..model_refresh()
            },
            "size",
        ),
        (
            ModelRefresh {
                version: String::new(),
                ..model_refresh()
            },
            "version",
        ),
        (
            ModelRefresh {
                model: "m".repeat(MAX_MODEL_NAME + 1),
                ..model_refresh()
            },
            "model",
        ),
    ] {
        let e = encode(&m).expect_err("invalid refresh").to_string();
        assert!(e.contains(want), "{e}");
    }
    for (m, want) in [
        (
            ModelChunkRequest {
                len: 0,
                ..model_chunk_request()
            },
            "len",
        ),
        (
            ModelChunkRequest {
                len: MAX_MODEL_CHUNK as u32 + 1,
                ..model_chunk_request()
            },
            "len",
        ),
        (
            ModelChunkRequest {
                offset: MAX_MODEL_BYTES,
                ..model_chunk_request()
            },
            "offset",
        ),
    ] {
        let e = encode(&m).expect_err("invalid request").to_string();
        assert!(e.contains(want), "{e}");
    }
    let past_end = ModelChunk {
        offset: 5,
        ..model_chunk()
    };
    let e = encode(&past_end).expect_err("past the end").to_string();
    assert!(e.contains("ends past the file"), "{e}");
    // Every kind is covered once.
    let kinds: Vec<MessageKind> = all_encoded().into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, MessageKind::ALL);
}

#[test]
fn plan_helpers() {
    let p = plan();
    let e1 = node("edge-1");
    let e2 = node("edge-2");
    let on_e1: Vec<&str> = p.streams_for(&e1).map(|s| s.camera.as_str()).collect();
    assert_eq!(on_e1, ["lobby"]);
    assert_eq!(p.reid_node_for(&cam("dock")), Some(&e1));
    assert_eq!(p.reid_node_for(&cam("nowhere")), None);
    assert_eq!(p.share(&e2, &e1), Some(2_000_000));
    assert_eq!(p.share(&e1, &e2), None);
}

#[test]
fn invalid_messages_refused_with_the_field() {
    let cases: Vec<(String, String)> = vec![
        (
            encode(&Plan {
                streams: vec![plan().streams[0].clone(), plan().streams[0].clone()],
                ..plan()
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
            "refusing to send an invalid message: Plan: streams[1].camera: lobby is assigned more than once".into(),
        ),
        (
            {
                let mut m = node_status();
                m.load.detect_busy = f64::NAN;
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: NodeStatus: load.detect_busy: NaN is outside 0..=1".into(),
        ),
        (
            {
                let mut m = node_status();
                m.load.cameras[0].persons = -1.0;
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: NodeStatus: load.cameras[0].persons: -1 is not a finite non-negative number".into(),
        ),
        (
            {
                let mut m = node_status();
                m.load.cameras[1].detect_share = 1.5;
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: NodeStatus: load.cameras[1].detect_share: 1.5 is outside 0..=1".into(),
        ),
        (
            {
                let mut m = node_status();
                m.links[0].upload_mbit_s = f64::INFINITY;
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: NodeStatus: links[0].upload_mbit_s: inf is not a finite non-negative number".into(),
        ),
        (
            {
                let mut m = node_status();
                m.capacity.jpeg_decode_cost = -0.5;
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: NodeStatus: capacity.jpeg_decode_cost: -0.5 is not a finite non-negative number".into(),
        ),
        (
            {
                let mut m = node_status();
                m.load.job_cpu_cores = f64::NAN;
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: NodeStatus: load.job_cpu_cores: NaN is not a finite non-negative number".into(),
        ),
        (
            {
                let mut m = node_status();
                m.capacity.detect_cores = -1.0;
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: NodeStatus: capacity.detect_cores: -1 is not a finite non-negative number".into(),
        ),
        (
            {
                let mut m = node_status();
                m.job_flows[0].items = 0;
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: NodeStatus: job_flows[0] (job attributes, stage det): 4800000 bytes in 0 items".into(),
        ),
        (
            {
                let mut m = reid_request();
                m.crops[0].data.pop();
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: ReidRequest: crops[0].data: 17 bytes, an RGB 2x3 crop has 18".into(),
        ),
        (
            {
                let mut m = reid_request();
                m.crops[1].data.clear();
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: ReidRequest: crops[1].data: 0 bytes that do not start with a JPEG SOI marker".into(),
        ),
        (
            {
                let mut m = identity_announce();
                m.embedding[2] = f32::INFINITY;
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: IdentityAnnounce: embedding[2]: inf is not finite".into(),
        ),
        (
            {
                let mut m = sync_batch();
                m.records.swap(0, 1);
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: SyncBatch: records[1].key.seq: 11 after 12, seqs must increase".into(),
        ),
        (
            {
                let mut m = sync_batch();
                if let Record::Track(t) = &mut m.records[4].record {
                    t.last_ms = UnixMs(0);
                }
                encode(&m).err().map(|e| e.to_string()).unwrap_or_default()
            },
            "refusing to send an invalid message: SyncBatch: records[4].record: invalid track record: last_ms 0 is before first_ms 1700000000100".into(),
        ),
        (
            encode(&SyncRequest {
                after_seq: 0,
                max_records: 0,
                ack_through: 0,
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
            "refusing to send an invalid message: SyncRequest: max_records: 0, 1..=100000 allowed".into(),
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

/// Decodes `bytes` as every message type; none may panic.
fn decode_as_everything(bytes: &[u8]) -> Vec<Result<(), DecodeError>> {
    vec![
        decode::<NodeStatus>(bytes).map(drop),
        decode::<Plan>(bytes).map(drop),
        decode::<ReidRequest>(bytes).map(drop),
        decode::<ReidReply>(bytes).map(drop),
        decode::<IdentityAnnounce>(bytes).map(drop),
        decode::<MergeAnnounce>(bytes).map(drop),
        decode::<Merges>(bytes).map(drop),
        decode::<SyncRequest>(bytes).map(drop),
        decode::<SyncBatch>(bytes).map(drop),
        decode::<CameraTile>(bytes).map(drop),
        decode::<QueryRequest>(bytes).map(drop),
        decode::<QueryReply>(bytes).map(drop),
        decode::<SplitAnnounce>(bytes).map(drop),
        decode::<KeepApart>(bytes).map(drop),
        decode::<IdentityJoined>(bytes).map(drop),
        decode::<LinkProbe>(bytes).map(drop),
        decode::<LinkProbeReply>(bytes).map(drop),
        decode::<IdentitySeen>(bytes).map(drop),
        decode::<ModelRefresh>(bytes).map(drop),
        decode::<ModelChunkRequest>(bytes).map(drop),
        decode::<ModelChunk>(bytes).map(drop),
    ]
}

#[test]
fn every_truncation_is_refused() {
    for (kind, bytes) in all_encoded() {
        for cut in 0..bytes.len() {
            let results = decode_as_everything(&bytes[..cut]);
            assert!(
                results.iter().all(|r| r.is_err()),
                "{kind} cut at {cut} of {} decoded",
                bytes.len()
            );
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = peek(&bytes);
        let _ = decode_as_everything(&bytes);
    }

    /// A valid header followed by random bytes reaches the body decoder of every kind.
    #[test]
    fn random_bodies_never_panic(
        kind in proptest::sample::select(MessageKind::ALL.to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = vec![b'V', b'D', 5, 0, kind as u8];
        bytes.extend(body);
        let _ = decode_as_everything(&bytes);
    }

    /// Valid messages with a few bytes overwritten: refused or decoded, never a panic.
    #[test]
    fn corrupted_messages_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let all = all_encoded();
        let (_, mut bytes) = all[pick.index(all.len())].clone();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let _ = decode_as_everything(&bytes);
        let _ = decode_as_everything(&bytes[..cut.index(bytes.len() + 1)]);
    }
}
