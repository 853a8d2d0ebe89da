//! Signatures on what the master sends (plans, merges): ed25519 through
//! `ring`, whose key handling is audited and already in the tree (rustls).
//!
//! A signed payload is an envelope around the plain wire encoding:
//! `"VS"`, version byte 1, the 64-byte signature, then the body. The
//! signature covers a domain tag, the full zenoh key (which names the site)
//! and the body, so a plan signed for one site or key is worthless on
//! another. Replays of an old plan are harmless: nodes keep the newest
//! version they have seen, and refuse versions too far ahead.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// The first bytes of a signed envelope (plain messages start with `"VD"`).
pub const MAGIC: [u8; 2] = *b"VS";
const VERSION: u8 = 1;
const SIG_LEN: usize = 64;
const HEADER_LEN: usize = MAGIC.len() + 1 + SIG_LEN;
const DOMAIN: &[u8] = b"vidar-signed-v1\0";

/// Why a payload's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Expected a signed envelope, got something else.
    #[error("not signed: a signed envelope from the master was expected on this key")]
    Unsigned,
    /// An envelope of a version this build does not know.
    #[error("signed envelope version {0}, this build knows 1")]
    Version(u8),
    /// The signature does not verify with the pinned master key.
    #[error("bad signature: not signed by this site's master key")]
    BadSignature,
    /// A key file could not be used.
    #[error("signing key: {0}")]
    Key(String),
}

/// The master's signing key.
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public", &hex(&self.public_key()))
            .finish_non_exhaustive()
    }
}

fn signed_bytes(key: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + key.len() + 1 + body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(key.as_bytes());
    m.push(0);
    m.extend_from_slice(body);
    m
}

impl Signer {
    /// A new random key, as PKCS#8 bytes (to be stored, then loaded with
    /// [`Signer::from_pkcs8`]).
    pub fn generate() -> Result<Vec<u8>, SignError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| SignError::Key(format!("generating: {e}")))
    }

    /// Loads a key from its PKCS#8 bytes.
    pub fn from_pkcs8(der: &[u8]) -> Result<Signer, SignError> {
        Ed25519KeyPair::from_pkcs8(der)
            .map(|pair| Signer { pair })
            .map_err(|e| SignError::Key(format!("not an ed25519 PKCS#8 key: {e}")))
    }

    /// The public half, for nodes to pin.
    pub fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        k
    }

    /// `body` (a wire encoding) wrapped in an envelope signed for `key`.
    pub fn seal(&self, key: &str, body: &[u8]) -> Vec<u8> {
        let sig = self.pair.sign(&signed_bytes(key, body));
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(sig.as_ref());
        out.extend_from_slice(body);
        out
    }
}

/// The master's public key, pinned by a node.
#[derive(Debug, Clone)]
pub struct Authority {
    key: [u8; 32],
}

impl Authority {
    /// Pins `key`.
    pub fn new(key: [u8; 32]) -> Authority {
        Authority { key }
    }

    /// The body of `bytes` received on `key`, if it is an envelope signed by
    /// the pinned key for exactly that key.
    pub fn open<'a>(&self, key: &str, bytes: &'a [u8]) -> Result<&'a [u8], SignError> {
        let body = envelope(bytes)?;
        let sig = &bytes[MAGIC.len() + 1..HEADER_LEN];
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(&signed_bytes(key, body), sig)
            .map_err(|_| SignError::BadSignature)?;
        Ok(body)
    }
}

/// The body of an envelope, unverified; `Unsigned` if `bytes` is none.
fn envelope(bytes: &[u8]) -> Result<&[u8], SignError> {
    if bytes.len() < HEADER_LEN || bytes[..MAGIC.len()] != MAGIC {
        return Err(SignError::Unsigned);
    }
    if bytes[MAGIC.len()] != VERSION {
        return Err(SignError::Version(bytes[MAGIC.len()]));
    }
    Ok(&bytes[HEADER_LEN..])
}

/// What a link does about signatures: sign (the master), verify (a node
/// that pins the master's key), or neither (plaintext on loopback).
#[derive(Debug, Default)]
pub(crate) struct Trust {
    pub(crate) signer: Option<Signer>,
    pub(crate) authority: Option<Authority>,
    /// The keys whose payloads are signed by the master.
    pub(crate) signed_keys: Vec<String>,
}

impl Trust {
    fn covers(&self, key: &str) -> bool {
        self.signed_keys.iter().any(|k| k == key)
    }

    /// What to send on `key`: sealed when this link signs and `key` is signed.
    pub(crate) fn seal(&self, key: &str, body: Vec<u8>) -> Vec<u8> {
        match &self.signer {
            Some(s) if self.covers(key) => s.seal(key, &body),
            _ => body,
        }
    }

    /// [`Trust::open`], with a refusal counted in `garbage` (and `None`).
    pub(crate) fn body<'a>(
        &self,
        garbage: &crate::Garbage,
        key: &str,
        bytes: &'a [u8],
    ) -> Option<&'a [u8]> {
        self.open(key, bytes)
            .map_err(|e| garbage.refuse(key, &e))
            .ok()
    }

    /// The message inside `bytes` received on `key`. On a signed key, a link
    /// that pins the master's key accepts only valid envelopes; one that pins
    /// none (plaintext on loopback) takes the body of an envelope unverified.
    pub(crate) fn open<'a>(&self, key: &str, bytes: &'a [u8]) -> Result<&'a [u8], SignError> {
        if !self.covers(key) {
            return Ok(bytes);
        }
        match &self.authority {
            Some(a) => a.open(key, bytes),
            None => match envelope(bytes) {
                Ok(body) => Ok(body),
                Err(SignError::Unsigned) => Ok(bytes),
                Err(e) => Err(e),
            },
        }
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from lower- or upper-case hex.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_pkcs8(&Signer::generate().expect("key")).expect("loads")
    }

    #[test]
    fn sealed_payloads_open_only_with_the_right_key_and_key_expression() {
        let s = signer();
        let a = Authority::new(s.public_key());
        let sealed = s.seal("vidar/a/plan", b"VD body");
        assert_eq!(a.open("vidar/a/plan", &sealed), Ok(&b"VD body"[..]));
        // Another site's key, another signer, a flipped bit, no envelope.
        assert_eq!(
            a.open("vidar/b/plan", &sealed),
            Err(SignError::BadSignature)
        );
        let other = Authority::new(signer().public_key());
        assert_eq!(
            other.open("vidar/a/plan", &sealed),
            Err(SignError::BadSignature)
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            a.open("vidar/a/plan", &flipped),
            Err(SignError::BadSignature)
        );
        assert_eq!(a.open("vidar/a/plan", b"VD body"), Err(SignError::Unsigned));
        let mut v2 = sealed;
        v2[2] = 2;
        assert_eq!(a.open("vidar/a/plan", &v2), Err(SignError::Version(2)));
    }

    #[test]
    fn trust_signs_and_checks_only_its_keys() {
        let s = signer();
        let public = s.public_key();
        let master = Trust {
            signer: Some(s),
            authority: None,
            signed_keys: vec!["k/plan".into()],
        };
        let node = Trust {
            signer: None,
            authority: Some(Authority::new(public)),
            signed_keys: vec!["k/plan".into()],
        };
        let loopback = Trust {
            signed_keys: vec!["k/plan".into()],
            ..Trust::default()
        };
        let sealed = master.seal("k/plan", b"VDx".to_vec());
        assert_ne!(sealed, b"VDx");
        assert_eq!(node.open("k/plan", &sealed), Ok(&b"VDx"[..]));
        assert_eq!(loopback.open("k/plan", &sealed), Ok(&b"VDx"[..]));
        assert_eq!(loopback.open("k/plan", b"VDx"), Ok(&b"VDx"[..]));
        assert_eq!(node.open("k/plan", b"VDx"), Err(SignError::Unsigned));
        // Other keys pass untouched both ways.
        assert_eq!(master.seal("k/status", b"VDy".to_vec()), b"VDy");
        assert_eq!(node.open("k/status", b"VDy"), Ok(&b"VDy"[..]));
    }

    #[test]
    fn hex_round_trips() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&b)), Some(b.to_vec()));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
