//! The model directory: resolving it, verifying files against the manifest
//! (presence, size, sha256) and reading `.npy` side files. Never downloads.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::ModelError;
use crate::manifest::{FileEntry, Manifest};

/// Environment variable naming the model directory.
pub const MODEL_DIR_ENV: &str = "VIDAR_MODEL_DIR";

/// A directory holding the files of a [`Manifest`].
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
    manifest: Manifest,
}

impl ModelStore {
    /// A store at `dir` described by `manifest`.
    pub fn new(dir: impl Into<PathBuf>, manifest: Manifest) -> Self {
        Self {
            dir: dir.into(),
            manifest,
        }
    }

    /// The built-in manifest at `$VIDAR_MODEL_DIR`.
    pub fn from_env() -> Result<Self, ModelError> {
        let dir = std::env::var_os(MODEL_DIR_ENV).ok_or(ModelError::ModelDirUnset)?;
        Ok(Self::new(dir, Manifest::builtin()?))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Path of `file` after checking size and sha256 against the manifest.
    pub fn verified_path(&self, file: &str) -> Result<PathBuf, ModelError> {
        let entry = self
            .manifest
            .file(file)
            .ok_or_else(|| ModelError::ManifestInvalid {
                origin: "manifest".into(),
                problems: vec![format!("file {file:?} is not listed under [[file]]")],
            })?;
        let path = self.dir.join(&entry.file);
        verify_file(&path, entry)?;
        Ok(path)
    }
}

/// Checks that `path` exists with the size and sha256 that `entry` states.
pub fn verify_file(path: &Path, entry: &FileEntry) -> Result<(), ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelError::FileMissing {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    if meta.len() != entry.size {
        return Err(ModelError::FileSize {
            path: path.to_owned(),
            expected: entry.size,
            actual: meta.len(),
        });
    }
    let actual = sha256_file(path).map_err(io)?;
    if actual != entry.sha256 {
        return Err(ModelError::Checksum {
            path: path.to_owned(),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Checks bytes already read from `path` against `entry` (size, then sha256).
pub fn verify_bytes(path: &Path, bytes: &[u8], entry: &FileEntry) -> Result<(), ModelError> {
    if bytes.len() as u64 != entry.size {
        return Err(ModelError::FileSize {
            path: path.to_owned(),
            expected: entry.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = hex(&Sha256::digest(bytes));
    if actual != entry.sha256 {
        return Err(ModelError::Checksum {
            path: path.to_owned(),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a little-endian float32, C-order, 2-d `.npy` file: returns (rows, cols, data).
pub fn read_npy_f32_2d(path: &Path) -> Result<(usize, usize, Vec<f32>), ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_npy_f32_2d(&bytes).map_err(|message| ModelError::Npy {
        path: path.to_owned(),
        message,
    })
}

fn parse_npy_f32_2d(bytes: &[u8]) -> Result<(usize, usize, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    if !header.contains("'descr': '<f4'") {
        return Err(format!(
            "expected little-endian float32 ('<f4'), header is {header}"
        ));
    }
    if !header.contains("'fortran_order': False") {
        return Err("expected C order".into());
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape in header")?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|e| format!("bad dim {s:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(format!("expected a 2-d array, shape is {dims:?}"));
    };
    let data = &bytes[start + header_len..];
    if data.len() != rows * cols * 4 {
        return Err(format!(
            "{} data bytes for shape ({rows}, {cols}): truncated",
            data.len()
        ));
    }
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((rows, cols, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(file: &str, content: &[u8]) -> FileEntry {
        FileEntry {
            file: file.into(),
            sha256: hex(&Sha256::digest(content)),
            size: content.len() as u64,
            source_sha256: None,
            recipe: "test".into(),
        }
    }

    #[test]
    fn verify_reports_missing_truncated_and_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.onnx");
        let good = entry("m.onnx", b"0123456789");
        let err = verify_file(&path, &good).expect_err("missing");
        assert!(matches!(err, ModelError::FileMissing { .. }), "{err}");
        assert!(err.to_string().contains("make models"));

        std::fs::write(&path, b"01234").expect("write");
        let err = verify_file(&path, &good).expect_err("truncated");
        assert!(
            matches!(
                err,
                ModelError::FileSize {
                    expected: 10,
                    actual: 5,
                    ..
                }
            ),
            "{err}"
        );

        std::fs::write(&path, b"0123456780").expect("write");
        let err = verify_file(&path, &good).expect_err("corrupt");
        assert!(matches!(err, ModelError::Checksum { .. }), "{err}");

        std::fs::write(&path, b"0123456789").expect("write");
        verify_file(&path, &good).expect("good file");
    }

    #[test]
    fn npy_round_trip_and_errors() {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let mut padded = header.to_string();
        let target = (10 + header.len() + 1).next_multiple_of(64) - 11;
        while padded.len() < target {
            padded.push(' ');
        }
        padded.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.5] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let (r, c, data) = parse_npy_f32_2d(&bytes).expect("parse");
        assert_eq!((r, c), (2, 3));
        assert_eq!(data[5], 6.5);
        let err = parse_npy_f32_2d(&bytes[..bytes.len() - 4]).expect_err("truncated");
        assert!(err.contains("truncated"), "{err}");
        assert!(parse_npy_f32_2d(b"PK\x03\x04 not npy").is_err());
    }
}
