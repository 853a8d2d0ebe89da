//! Database files are readable by their owner only (issue 16: they held
//! snapshots of people and embeddings, created 0644).

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use vidar_config::Config;
use vidar_protocol::{CameraId, NodeId, UnixMs};
use vidar_store::{create_private_dir, WriterConfig};
use vidar_store::{CameraRecord, Record};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn databases_and_their_folders_are_private() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("state/vidar");
    create_private_dir(&dir).expect("folder");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&tmp.path().join("state")), 0o700, "parents too");
    let db = dir.join("edge.db");
    let w = WriterConfig::new(&db, NodeId::new("n1").expect("id"))
        .build(&())
        .expect("writer");
    w.handle()
        .write(Record::Camera(CameraRecord {
            camera: CameraId::new("c1").expect("id"),
            name: "rtsp://cam/1".into(),
            recorded_ms: UnixMs(1),
        }))
        .expect("written");
    assert_eq!(mode(&db), 0o600, "the database");
    let wal = dir.join("edge.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600, "its write-ahead log");
    }
    w.shutdown().expect("shutdown");
    // An existing folder is left as the operator made it.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    create_private_dir(&shared).expect("exists");
    assert_eq!(mode(&shared), 0o755);
}
