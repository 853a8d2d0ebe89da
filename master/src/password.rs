//! Password hashes: PBKDF2-HMAC-SHA256 in the configuration form
//! `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`, and comparison of
//! secrets in constant time.
//!
//! Pure: no I/O but the system's random source for fresh salts, no clock, no
//! HTTP. Hashing is slow on purpose: callers run [`PasswordHash::verify`] on
//! the blocking pool. Who may log in, and sessions, are [`crate::http::auth`]'s;
//! the configuration validates hashes with [`PasswordHash::parse`].

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// PBKDF2 iterations of `vidar-master hash-password` (OWASP's 2023 figure).
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// Fewest PBKDF2 iterations accepted in a configured hash.
pub const MIN_ITERATIONS: u32 = 1_000;
/// Most PBKDF2 iterations accepted (a login must not take minutes).
pub const MAX_ITERATIONS: u32 = 10_000_000;

type HmacSha256 = Hmac<Sha256>;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const B64_NO_PAD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// PBKDF2-HMAC-SHA256 with a 32-byte output (one block, RFC 8018).
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(key) = HmacSha256::new_from_slice(password) else {
        return [0; 32];
    };
    let mut mac = key.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut mac = key.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// Whether `a == b`, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A parsed `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PasswordHash(pbkdf2-sha256, {} iterations)",
            self.iterations
        )
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).or_else(|_| B64_NO_PAD.decode(s)).ok()
}

impl PasswordHash {
    /// Parses a configured hash, saying what is wrong with it.
    pub fn parse(s: &str) -> Result<PasswordHash, String> {
        let parts: Vec<&str> = s.split('$').collect();
        let [scheme, iterations, salt, hash] = parts[..] else {
            return Err("expected pbkdf2-sha256$<iterations>$<salt base64>$<hash base64> (run `vidar-master hash-password`)".into());
        };
        if scheme != "pbkdf2-sha256" {
            return Err(format!(
                "scheme {scheme:?}, only pbkdf2-sha256 is supported"
            ));
        }
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(n))
            .ok_or_else(|| {
                format!("iterations {iterations:?}, {MIN_ITERATIONS}..={MAX_ITERATIONS} expected")
            })?;
        let salt = b64(salt)
            .filter(|s| s.len() >= 8)
            .ok_or("salt: base64 of at least 8 bytes expected")?;
        let hash = b64(hash)
            .filter(|h| h.len() == 32)
            .ok_or("hash: base64 of 32 bytes expected")?;
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Hashes `password` with a fresh random 16-byte salt.
    pub fn create(password: &str, iterations: u32) -> Result<PasswordHash, String> {
        let mut salt = vec![0u8; 16];
        rand::rngs::OsRng
            .try_fill_bytes(&mut salt)
            .map_err(|e| format!("the system's random source failed: {e}"))?;
        let hash = pbkdf2_sha256(password.as_bytes(), &salt, iterations).to_vec();
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// The configuration form.
    pub fn encode(&self) -> String {
        format!(
            "pbkdf2-sha256${}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.hash)
        )
    }

    /// A hash that costs `iterations` to check like a real one (zero salt and
    /// hash): checked for unknown users so that they take as long as known ones.
    pub fn placeholder(iterations: u32) -> PasswordHash {
        PasswordHash {
            iterations,
            salt: vec![0; 16],
            hash: vec![0; 32],
        }
    }

    /// Its PBKDF2 iterations.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Whether `password` matches (slow: run it on the blocking pool).
    pub fn verify(&self, password: &str) -> bool {
        let got = pbkdf2_sha256(password.as_bytes(), &self.salt, self.iterations);
        constant_time_eq(&got, &self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hexs(b: &[u8]) -> String {
        use std::fmt::Write;
        b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
    }

    #[test]
    fn pbkdf2_matches_known_vectors() {
        // RFC 7914 section 11 (first 32 bytes) and the common SHA-256 vectors.
        assert_eq!(
            hexs(&pbkdf2_sha256(b"passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        assert_eq!(
            hexs(&pbkdf2_sha256(b"password", b"salt", 1)),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
        assert_eq!(
            hexs(&pbkdf2_sha256(b"password", b"salt", 4096)),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn hashes_round_trip_and_bad_ones_are_explained() {
        let h = PasswordHash::create("s3cret", 1000).expect("random");
        let text = h.encode();
        assert!(text.starts_with("pbkdf2-sha256$1000$"), "{text}");
        let back = PasswordHash::parse(&text).expect("parses");
        assert!(back.verify("s3cret"));
        assert!(!back.verify("s3cret "));
        assert!(!back.verify(""));
        for (bad, why) in [
            ("plain", "expected pbkdf2-sha256$"),
            ("md5$1000$c2FsdHNhbHQ=$aGFzaA==", "scheme"),
            ("pbkdf2-sha256$10$c2FsdHNhbHQ=$aGFzaA==", "iterations"),
            ("pbkdf2-sha256$1000$!!$aGFzaA==", "salt"),
            ("pbkdf2-sha256$1000$c2FsdHNhbHQ=$aGFzaA==", "hash"),
        ] {
            let e = PasswordHash::parse(bad).err().unwrap_or_default();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
