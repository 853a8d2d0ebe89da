//! Tests of `models`.
use super::*;
use std::os::unix::fs::PermissionsExt;

fn registry_with(dir: &Path, files: &[(&str, &[u8])]) -> Registry {
    std::fs::create_dir_all(dir).expect("dir");
    let mut r = Registry::load(dir).expect("empty registry");
    for (v, bytes) in files {
        let f = dir.join(format!("{v}.in"));
        std::fs::write(&f, bytes).expect("write");
        r.add(dir, &f, "osnet", v, None, BTreeMap::new())
            .expect("added");
    }
    r
}

#[test]
fn versions_are_added_once_promoted_rolled_back_and_saved() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("models");
    let mut r = registry_with(&dir, &[("v1", b"one"), ("v2", b"two")]);
    assert_eq!(r.refresh(), None, "nothing deployed");
    let e = r.rollback().expect_err("nothing to roll back").to_string();
    assert!(e.contains("nothing is deployed"), "{e}");
    let f = dir.join("v1.in");
    let e = r
        .add(&dir, &f, "osnet", "v1", None, BTreeMap::new())
        .expect_err("twice")
        .to_string();
    assert!(e.contains("exists already"), "{e}");
    let e = r.promote("v9", None).expect_err("unknown").to_string();
    assert!(e.contains("v9"), "{e}");

    let s1 = r.promote("v1", None).expect("promote").serial;
    let e = r.rollback().expect_err("only one").to_string();
    assert!(e.contains("nothing to roll back to"), "{e}");
    let s2 = r.promote("v2", None).expect("promote").serial;
    assert!(s2 > s1);
    let refresh = r.refresh().expect("deployed");
    assert_eq!(
        (
            refresh.version.as_str(),
            refresh.sha256.clone(),
            refresh.size
        ),
        ("v2", sha256_hex(b"two"), 3)
    );
    let back = r.rollback().expect("rollback");
    assert_eq!(back.version, "v1");
    assert!(back.serial > s2);
    r.save(&dir).expect("save");
    let again = Registry::load(&dir).expect("load");
    assert_eq!(again, r);
    // The file is kept under its checksum, private.
    let kept = dir.join(format!("{}.onnx", sha256_hex(b"one")));
    assert_eq!(std::fs::read(&kept).expect("kept"), b"one");
    let mode = std::fs::metadata(&kept).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn a_gated_promotion_needs_the_metric_and_a_better_value() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_path_buf();
    let mut r = registry_with(&dir, &[("plain", b"p")]);
    let add = |r: &mut Registry, v: &str, rank1: f64| {
        let f = dir.join(format!("{v}.in"));
        std::fs::write(&f, v.as_bytes()).expect("write");
        r.add(
            &dir,
            &f,
            "osnet",
            v,
            None,
            BTreeMap::from([("rank1".to_string(), rank1)]),
        )
        .expect("added");
    };
    add(&mut r, "good", 0.85);
    add(&mut r, "worse", 0.80);
    add(&mut r, "better", 0.90);
    let e = r
        .promote("plain", Some("rank1"))
        .expect_err("no metric")
        .to_string();
    assert!(e.contains("no rank1") && e.contains("--weights"), "{e}");
    // Nothing deployed yet: nothing to beat.
    r.promote("good", Some("rank1")).expect("first");
    let e = r
        .promote("worse", Some("rank1"))
        .expect_err("worse")
        .to_string();
    assert!(e.contains("does not beat") && e.contains("0.85"), "{e}");
    let e = r
        .promote("good", Some("rank1"))
        .expect_err("equal")
        .to_string();
    assert!(e.contains("does not beat"), "{e}");
    assert_eq!(r.refresh().map(|x| x.version), Some("good".into()));
    r.promote("better", Some("rank1")).expect("better");
    r.promote("worse", None).expect("forced");
    assert_eq!(r.refresh().map(|x| x.version), Some("worse".into()));
}

#[test]
fn a_rollback_after_a_rollback_goes_further_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_path_buf();
    let mut r = registry_with(&dir, &[("a", b"a"), ("b", b"b"), ("c", b"c")]);
    for v in ["a", "b", "c"] {
        r.promote(v, None).expect("promote");
    }
    assert_eq!(r.rollback().expect("back").version, "b");
    assert_eq!(r.rollback().expect("back").version, "a");
    let e = r.rollback().expect_err("no further").to_string();
    assert!(e.contains("nothing to roll back to"), "{e}");
}

#[test]
fn a_damaged_registry_is_refused_naming_the_file_and_the_fault() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let mut r = registry_with(dir, &[("a", b"a")]);
    r.promote("a", None).expect("promote");
    r.save(dir).expect("save");
    let path = dir.join(REGISTRY);
    let good = std::fs::read_to_string(&path).expect("read");
    for (bad, want) in [
        ("{not json".to_string(), "registry.json"),
        (good.replace("\"format\": 1", "\"format\": 9"), "format 9"),
        (
            good.replace(
                "\"version\": \"a\",\n      \"model\"",
                "\"version\": \"z\",\n      \"model\"",
            ),
            "unknown version",
        ),
        (good.replace(&sha256_hex(b"a"), "xyz"), "sha256"),
    ] {
        std::fs::write(&path, &bad).expect("write");
        let e = Registry::load(dir).expect_err(want).to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn only_the_deployed_file_is_served_and_only_within_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let big: Vec<u8> = (0..2_500u32).map(|i| (i % 251) as u8).collect();
    let mut r = registry_with(dir, &[("a", &big), ("b", b"other")]);
    r.promote("a", None).expect("promote");
    let deployed = r.refresh();
    let ask = |offset, len| ModelChunkRequest {
        sha256: sha256_hex(&big),
        offset,
        len,
    };
    let c = chunk(dir, deployed.as_ref(), &ask(0, 1000)).expect("first");
    assert_eq!(
        (c.offset, c.total, c.bytes.as_slice()),
        (0, 2500, &big[..1000])
    );
    let c = chunk(dir, deployed.as_ref(), &ask(2000, 1000)).expect("last");
    assert_eq!(c.bytes.as_slice(), &big[2000..], "cut at the end");
    let e = chunk(dir, deployed.as_ref(), &ask(2500, 10)).expect_err("past");
    assert!(e.contains("past the file"), "{e}");
    let other = ModelChunkRequest {
        sha256: sha256_hex(b"other"),
        offset: 0,
        len: 10,
    };
    let e = chunk(dir, deployed.as_ref(), &other).expect_err("not deployed");
    assert!(e.contains("not the model deployed"), "{e}");
    assert!(chunk(dir, None, &ask(0, 10)).is_err(), "nothing deployed");
}

#[test]
fn two_writers_editing_at_once_lose_none_of_each_others_versions() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("w.onnx");
    std::fs::write(&file, b"weights").expect("write");
    let models = dir.path().join("models");
    std::thread::scope(|s| {
        for w in 0..2 {
            let (models, file) = (&models, &file);
            s.spawn(move || {
                for k in 0..10 {
                    Registry::edit(models, |r| {
                        r.add(
                            models,
                            file,
                            "m",
                            &format!("w{w}-{k}"),
                            None,
                            BTreeMap::new(),
                        )
                        .map(|_| ())
                    })
                    .expect("edit");
                }
            });
        }
    });
    let r = Registry::load(&models).expect("load");
    assert_eq!(r.versions.len(), 20);
    // A failing edit saves nothing.
    let e = Registry::edit(&models, |r| {
        r.rollback()?;
        Ok(())
    });
    assert!(e.is_err());
    assert_eq!(Registry::load(&models).expect("load"), r);
}
