//! The master's database care (issue 16): a damaged global database stops
//! the master at start with a message saying so; `vidar-master backup` and
//! `check-database` work on real files.

mod common;

use common::{config, unique_site};
use std::path::Path;
use std::process::Command;
use vidar_config::Config;
use vidar_master::Master;
use vidar_protocol::{CameraId, NodeId, UnixMs};
use vidar_store::{CameraRecord, Record, WriterConfig};

fn filled(db: &Path) {
    let w = WriterConfig::new(db, NodeId::new("edge-a").expect("id"))
        .build(&())
        .expect("writer");
    let h = w.handle();
    for i in 0..3000i64 {
        h.submit(Record::Camera(CameraRecord {
            camera: CameraId::new(&format!("c{i}")).expect("id"),
            name: format!("camera {i}, a name long enough to fill a few pages"),
            recorded_ms: UnixMs(i),
        }))
        .expect("submit");
    }
    h.flush().expect("flush");
    w.shutdown().expect("shutdown");
}

fn master_bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vidar-master"))
        .args(args)
        .output()
        .expect("vidar-master runs")
}

#[test]
fn backup_and_check_from_the_command_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("global.db");
    filled(&db);
    let copy = tmp.path().join("copy.db");
    let (db_s, copy_s) = (db.to_string_lossy(), copy.to_string_lossy());
    let out = master_bin(&["backup", "--database", &db_s, "--to", &copy_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("checked"));
    let out = master_bin(&["check-database", &copy_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Over an existing file: refused, the file untouched.
    let before = std::fs::read(&copy).expect("copy");
    let out = master_bin(&["backup", "--database", &db_s, "--to", &copy_s]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    assert_eq!(std::fs::read(&copy).expect("copy"), before);
}

#[test]
fn a_damaged_database_stops_the_master_at_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("global.db");
    filled(&db);
    let mut bytes = std::fs::read(&db).expect("read");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16 * 1024] {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).expect("write");
    let cfg = config(&db, &unique_site(), "");
    let err = Master::start(&cfg).expect_err("a damaged database is refused");
    let text = format!("{err:#}");
    assert!(text.contains("global.db"), "{text}");
    let out = master_bin(&["check-database", &db.to_string_lossy()]);
    assert!(
        !out.status.success(),
        "check-database passed a damaged file"
    );
}
