//! The site's keys: a certificate authority, the master's signing key, and
//! one bundle per process (`vidar-master ca init`, `vidar-master enroll`).
//!
//! Certificates come from `rcgen` (the rustls project's generator, pure Rust,
//! no OpenSSL on the box); signatures from `ring` (see [`crate::sign`]).
//!
//! A CA directory:
//!
//! | path                 | what                                                   |
//! |----------------------|--------------------------------------------------------|
//! | `ca.pem`, `ca.key`   | the site CA (ECDSA P-256); `ca.key` is 0600: keep it offline once nodes are enrolled |
//! | `signing.key`        | the master's ed25519 key for plans and merges (0600)   |
//! | `master/`            | the master's bundle, with `enrolled`: one node id per line |
//! | `nodes/<id>/`        | a node's bundle, to copy to that node (then delete here) |
//!
//! A bundle (`[cluster] bundle = DIR`): `bundle.toml` (site, name, role, the
//! master's public key), `ca.pem`, `cert.pem`, `key.pem` (0600); the master's
//! also holds `signing.key` and `enrolled`. A certificate's common name is the
//! process's identity in the ACL: `master`, or the node id.

use crate::sign::{hex, unhex, Authority, Signer};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use vidar_protocol::{Keys, NodeId, UnixMs};

/// The common name of the master's certificate (no node may take it).
pub const MASTER_NAME: &str = "master";
/// Default validity of a process certificate, days.
pub const DEFAULT_DAYS: u32 = 730;
/// Validity of the site CA, days.
const CA_DAYS: u32 = 3650;
/// The master's roster file in its bundle.
const ENROLLED: &str = "enrolled";
/// A certificate expiring sooner than this is warned about at start, days.
pub const WARN_DAYS: i64 = 30;

/// Why keys could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be used.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A request that cannot be honoured (a bad name, an existing CA...).
    #[error("{0}")]
    Invalid(String),
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> PkiError {
    PkiError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Which side of the site a bundle is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The master: signs plans and merges, routes, enforces the roster.
    Master,
    /// An edge node.
    Node,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    site: String,
    name: String,
    role: Role,
    master_public_key: String,
}

/// A loaded bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Where it is.
    pub dir: PathBuf,
    /// The site it belongs to.
    pub site: String,
    /// Its certificate's common name: `master` or the node id.
    pub name: String,
    /// Master or node.
    pub role: Role,
    /// When its certificate expires.
    pub not_after: UnixMs,
    master_public_key: [u8; 32],
}

impl Bundle {
    /// Loads the bundle in `dir`: its description, and checks that its files
    /// exist and that its private keys are readable by their owner only.
    pub fn load(dir: &Path) -> Result<Bundle, PkiError> {
        let toml_path = dir.join("bundle.toml");
        let text = std::fs::read_to_string(&toml_path).map_err(|e| file_err(&toml_path, e))?;
        let f: BundleFile = toml::from_str(&text).map_err(|e| file_err(&toml_path, e))?;
        let key = unhex(&f.master_public_key)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| {
                file_err(
                    &toml_path,
                    "master_public_key: expected 64 hex digits (an ed25519 public key)",
                )
            })?;
        if f.role == Role::Node && f.name == MASTER_NAME {
            return Err(file_err(&toml_path, "a node bundle cannot be named master"));
        }
        let cert = dir.join("cert.pem");
        let (not_after, when) = not_after(&cert)?;
        let b = Bundle {
            dir: dir.to_path_buf(),
            site: f.site,
            name: f.name,
            role: f.role,
            not_after,
            master_public_key: key,
        };
        std::fs::metadata(b.ca_file()).map_err(|e| file_err(&b.ca_file(), e))?;
        let renew = match b.role {
            Role::Master => "`vidar-master ca renew-master`".to_string(),
            Role::Node => format!("`vidar-master enroll {}`", b.name),
        };
        let left_ms = not_after - UnixMs::now();
        if left_ms <= 0 {
            return Err(file_err(
                &cert,
                format!("the certificate expired on {when}; renew it with {renew} and install the new bundle"),
            ));
        }
        if left_ms < WARN_DAYS * 86_400_000 {
            tracing::warn!(
                certificate = %cert.display(),
                days_left = left_ms / 86_400_000,
                "the certificate expires on {when}; renew it with {renew}"
            );
        }
        let mut private = vec![b.key_file()];
        if b.role == Role::Master {
            private.push(dir.join("signing.key"));
        }
        for p in private {
            let mode = std::fs::metadata(&p)
                .map_err(|e| file_err(&p, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(file_err(
                    &p,
                    format!(
                        "private key readable by others (mode {:o}): chmod 600 it",
                        mode & 0o777
                    ),
                ));
            }
        }
        Ok(b)
    }

    /// The site CA certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// This process's certificate.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// This process's private key.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The pinned master key.
    pub fn authority(&self) -> Authority {
        Authority::new(self.master_public_key)
    }

    /// The master's signing key (master bundles only).
    pub fn signer(&self) -> Result<Option<Signer>, PkiError> {
        if self.role != Role::Master {
            return Ok(None);
        }
        let p = self.dir.join("signing.key");
        let text = std::fs::read_to_string(&p).map_err(|e| file_err(&p, e))?;
        let der = unhex(&text).ok_or_else(|| file_err(&p, "expected hex"))?;
        let s = Signer::from_pkcs8(&der).map_err(|e| file_err(&p, e))?;
        if s.public_key() != self.master_public_key {
            return Err(file_err(
                &p,
                "does not match master_public_key in bundle.toml",
            ));
        }
        Ok(Some(s))
    }

    /// The enrolled nodes (master bundles only; empty for a node).
    pub fn enrolled(&self) -> Result<Vec<NodeId>, PkiError> {
        if self.role != Role::Master {
            return Ok(Vec::new());
        }
        read_roster(&self.dir.join(ENROLLED))
    }
}

fn read_roster(path: &Path) -> Result<Vec<NodeId>, PkiError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_err(path, e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let id = NodeId::new(line)
            .map_err(|e| file_err(path, format!("line {}: {line:?}: {e}", i + 1)))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

fn write_roster(path: &Path, nodes: &[NodeId]) -> Result<(), PkiError> {
    let mut text = String::from(
        "# Nodes enrolled in this site, one id per line (vidar-master enroll / revoke).\n\
         # The master reads it at start: restart it after a change.\n",
    );
    for n in nodes {
        text.push_str(n.as_str());
        text.push('\n');
    }
    write_file(path, text.as_bytes(), 0o644)
}

/// Writes `bytes` to `path` with `mode`, through a temporary file renamed
/// into place (a crash leaves the old file or the new one, never half).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

fn private_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| file_err(dir, e))
}

fn rcgen_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError::Invalid(format!("{what}: {e}"))
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back: clocks of small boxes drift.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(i64::from(days));
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    site: String,
    master_public_key: String,
}

/// Creates a site CA and the master's signing key and bundle in `dir` (which
/// must not hold a CA yet). Returns the master's bundle directory.
pub fn init_ca(dir: &Path, site: &str, days: u32) -> Result<PathBuf, PkiError> {
    Keys::new(site).map_err(|e| PkiError::Invalid(format!("site {site:?}: {e}")))?;
    if dir.join("ca.key").exists() {
        return Err(PkiError::Invalid(format!(
            "{} already holds a CA (ca.key): refusing to replace it; enrolled nodes trust it",
            dir.display()
        )));
    }
    private_dir(dir)?;
    let ca_key = KeyPair::generate().map_err(rcgen_err("generating the CA key"))?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err("CA"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Vidar site CA ({site})"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut p, CA_DAYS);
    let ca_cert = p
        .self_signed(&ca_key)
        .map_err(rcgen_err("signing the CA"))?;
    write_file(&dir.join("ca.pem"), ca_cert.pem().as_bytes(), 0o644)?;
    write_file(
        &dir.join("ca.key"),
        ca_key.serialize_pem().as_bytes(),
        0o600,
    )?;

    let signing = Signer::generate().map_err(|e| PkiError::Invalid(e.to_string()))?;
    let public = Signer::from_pkcs8(&signing)
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .public_key();
    write_file(&dir.join("signing.key"), hex(&signing).as_bytes(), 0o600)?;
    let site_file = SiteFile {
        site: site.to_string(),
        master_public_key: hex(&public),
    };
    let text = toml::to_string(&site_file).map_err(|e| PkiError::Invalid(e.to_string()))?;
    write_file(&dir.join("site.toml"), text.as_bytes(), 0o644)?;

    let issuer = Issuer::new(p, ca_key);
    let master = issue(dir, &issuer, MASTER_NAME, Role::Master, days)?;
    write_roster(&master.join(ENROLLED), &[])?;
    Ok(master)
}

/// When the PEM certificate in `path` expires, and that time as a date.
fn not_after(path: &Path) -> Result<(UnixMs, String), PkiError> {
    let pem = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| file_err(path, format!("not a PEM certificate: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| file_err(path, format!("not an X.509 certificate: {e}")))?;
    let t = cert.validity().not_after;
    Ok((UnixMs(t.timestamp().saturating_mul(1000)), t.to_string()))
}

/// Renews the master's certificate (a new key, `days` of validity) in
/// `dir/master`, keeping the site's signing key (which nodes pin) and the
/// roster. Nodes need nothing new: they trust the CA, not the certificate.
/// Returns the bundle directory; restart the master to use it.
pub fn renew_master(dir: &Path, days: u32) -> Result<PathBuf, PkiError> {
    // `issue` rewrites the certificate, key and bundle files, never the roster.
    issue(dir, &load_issuer(dir)?, MASTER_NAME, Role::Master, days)
}

/// The site of the CA in `dir`.
pub fn ca_site(dir: &Path) -> Result<String, PkiError> {
    load_site(dir).map(|s| s.site)
}

fn load_site(dir: &Path) -> Result<SiteFile, PkiError> {
    let p = dir.join("site.toml");
    let text = std::fs::read_to_string(&p).map_err(|e| {
        file_err(
            &p,
            format!("{e} (is this a CA directory made by `vidar-master ca init`?)"),
        )
    })?;
    toml::from_str(&text).map_err(|e| file_err(&p, e))
}

fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let kp = dir.join("ca.key");
    let key_pem = std::fs::read_to_string(&kp).map_err(|e| file_err(&kp, e))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| file_err(&kp, e))?;
    let cp = dir.join("ca.pem");
    let cert_pem = std::fs::read_to_string(&cp).map_err(|e| file_err(&cp, e))?;
    Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| file_err(&cp, e))
}

/// Issues (or renews) `node`'s bundle under `dir/nodes/<node>` and adds the
/// node to the master's roster. Returns the bundle directory.
pub fn enroll(dir: &Path, node: &NodeId, days: u32) -> Result<PathBuf, PkiError> {
    if node.as_str() == MASTER_NAME {
        return Err(PkiError::Invalid(format!(
            "node id {MASTER_NAME:?} is the master's certificate name; choose another"
        )));
    }
    let issuer = load_issuer(dir)?;
    let nodes = dir.join("nodes");
    private_dir(&nodes)?;
    let bundle = issue(dir, &issuer, node.as_str(), Role::Node, days)?;
    let roster = dir.join(MASTER_NAME).join(ENROLLED);
    let mut ids = read_roster(&roster)?;
    if !ids.contains(node) {
        ids.push(node.clone());
        write_roster(&roster, &ids)?;
    }
    Ok(bundle)
}

/// Takes `node` off the master's roster and deletes its bundle from `dir`.
/// Returns whether it was enrolled. The master must be restarted.
pub fn revoke(dir: &Path, node: &NodeId) -> Result<bool, PkiError> {
    load_site(dir)?;
    let roster = dir.join(MASTER_NAME).join(ENROLLED);
    let mut ids = read_roster(&roster)?;
    let before = ids.len();
    ids.retain(|n| n != node);
    let was = ids.len() != before;
    if was {
        write_roster(&roster, &ids)?;
    }
    let b = dir.join("nodes").join(node.as_str());
    if b.exists() {
        std::fs::remove_dir_all(&b).map_err(|e| file_err(&b, e))?;
    }
    Ok(was)
}

/// Writes the bundle of `name` (a certificate from `issuer`, the CA, the
/// site's public key; the signing key for the master).
fn issue(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    name: &str,
    role: Role,
    days: u32,
) -> Result<PathBuf, PkiError> {
    let site = load_site(dir)?;
    let out = match role {
        Role::Master => dir.join(MASTER_NAME),
        Role::Node => dir.join("nodes").join(name),
    };
    private_dir(&out)?;
    let key = KeyPair::generate().map_err(rcgen_err("generating a key"))?;
    // A DNS name only where the id is one ('_' is not); identity is the CN.
    let sans = if name.contains('_') {
        Vec::new()
    } else {
        vec![name.to_string()]
    };
    let mut p = CertificateParams::new(sans).map_err(rcgen_err(name))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(
        DnType::OrganizationName,
        format!("Vidar site {}", site.site),
    );
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, days);
    let cert = p.signed_by(&key, issuer).map_err(rcgen_err(name))?;
    let ca = dir.join("ca.pem");
    let ca_pem = std::fs::read(&ca).map_err(|e| file_err(&ca, e))?;
    write_file(&out.join("ca.pem"), &ca_pem, 0o644)?;
    write_file(&out.join("cert.pem"), cert.pem().as_bytes(), 0o644)?;
    write_file(&out.join("key.pem"), key.serialize_pem().as_bytes(), 0o600)?;
    if role == Role::Master {
        let sk = dir.join("signing.key");
        let bytes = std::fs::read(&sk).map_err(|e| file_err(&sk, e))?;
        write_file(&out.join("signing.key"), &bytes, 0o600)?;
    }
    let f = BundleFile {
        site: site.site,
        name: name.to_string(),
        role,
        master_public_key: site.master_public_key,
    };
    let text = format!(
        "# Vidar site bundle for {name:?}: written by vidar-master; point [cluster] bundle at this directory.\n{}",
        toml::to_string(&f).map_err(|e| PkiError::Invalid(e.to_string()))?
    );
    write_file(&out.join("bundle.toml"), text.as_bytes(), 0o644)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).expect("id")
    }

    #[test]
    fn a_site_is_created_nodes_enrolled_and_revoked() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("ca");
        let master = init_ca(&dir, "plant", 30).expect("ca init");
        let m = Bundle::load(&master).expect("master bundle");
        assert_eq!(
            (m.role, m.name.as_str(), m.site.as_str()),
            (Role::Master, "master", "plant")
        );
        let signer = m.signer().expect("loads").expect("master signs");
        assert!(m.enrolled().expect("roster").is_empty());
        assert_eq!(ca_site(&dir).expect("site"), "plant");
        // Private files are the owner's only.
        for f in [
            "ca.key",
            "signing.key",
            "master/key.pem",
            "master/signing.key",
        ] {
            let mode = std::fs::metadata(dir.join(f))
                .expect(f)
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{f} mode {mode:o}");
        }
        assert!(
            init_ca(&dir, "plant", 30).is_err(),
            "a CA is never replaced"
        );

        let b = enroll(&dir, &id("edge-1"), 30).expect("enroll");
        enroll(&dir, &id("edge_2"), 30).expect("enroll");
        enroll(&dir, &id("edge-1"), 30).expect("renewal");
        let n = Bundle::load(&b).expect("node bundle");
        assert_eq!((n.role, n.name.as_str()), (Role::Node, "edge-1"));
        assert!(n.signer().expect("none").is_none());
        // The node pins the master's key: what the master seals, it opens.
        let sealed = signer.seal("vidar/plant/plan", b"VDx");
        assert_eq!(
            n.authority().open("vidar/plant/plan", &sealed),
            Ok(&b"VDx"[..])
        );
        assert_eq!(
            m.enrolled().expect("roster"),
            vec![id("edge-1"), id("edge_2")]
        );

        assert!(enroll(&dir, &id("master"), 30).is_err());
        assert!(revoke(&dir, &id("edge-1")).expect("revoke"));
        assert!(!revoke(&dir, &id("edge-1")).expect("again"));
        assert_eq!(m.enrolled().expect("roster"), vec![id("edge_2")]);
        assert!(Bundle::load(&b).is_err(), "the bundle is gone");
    }

    #[test]
    fn loading_names_the_file_and_refuses_readable_keys() {
        let tmp = tempfile::tempdir().expect("tmp");
        let e = Bundle::load(tmp.path()).expect_err("empty dir");
        assert!(e.to_string().contains("bundle.toml"), "{e}");
        let dir = tmp.path().join("ca");
        init_ca(&dir, "s", 30).expect("ca");
        let b = enroll(&dir, &id("n1"), 30).expect("enroll");
        std::fs::set_permissions(b.join("key.pem"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let e = Bundle::load(&b).expect_err("readable key");
        assert!(
            e.to_string().contains("key.pem") && e.to_string().contains("chmod 600"),
            "{e}"
        );
        std::fs::write(dir.join("master").join(ENROLLED), "edge-1\nbad id\n").expect("write");
        let e = Bundle::load(&dir.join("master"))
            .expect("loads")
            .enrolled()
            .expect_err("bad line");
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(
            init_ca(&tmp.path().join("x"), "a/b", 30).is_err(),
            "bad site"
        );
    }

    #[test]
    fn the_master_certificate_is_renewed_keeping_the_roster_and_the_pinned_key() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("ca");
        let master = init_ca(&dir, "plant", 20).expect("ca init");
        let node = enroll(&dir, &id("edge-1"), 400).expect("enroll");
        let old = Bundle::load(&master).expect("master bundle");
        let old_key = std::fs::read(master.join("key.pem")).expect("key");
        let day = 86_400_000;
        assert!(
            (old.not_after - UnixMs::now() - 20 * day).abs() < day,
            "{old:?}"
        );

        assert_eq!(renew_master(&dir, 400).expect("renewed"), master);
        let new = Bundle::load(&master).expect("renewed bundle");
        assert!(
            (new.not_after - UnixMs::now() - 400 * day).abs() < day,
            "{new:?}"
        );
        assert_ne!(
            std::fs::read(master.join("key.pem")).expect("key"),
            old_key,
            "a new key"
        );
        assert_eq!(new.enrolled().expect("roster"), vec![id("edge-1")]);
        // Nodes keep their bundles: the master's seal still opens with the pinned key.
        let sealed = new
            .signer()
            .expect("loads")
            .expect("signs")
            .seal("vidar/plant/plan", b"VDx");
        let n = Bundle::load(&node).expect("node bundle");
        assert_eq!(
            n.authority().open("vidar/plant/plan", &sealed),
            Ok(&b"VDx"[..])
        );
        assert!(
            renew_master(&tmp.path().join("none"), 30).is_err(),
            "no CA there"
        );
    }

    #[test]
    fn an_expired_certificate_is_refused_naming_how_to_renew_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("ca");
        init_ca(&dir, "plant", 30).expect("ca init");
        // Valid for 0 days: expired once the second it was issued in is over.
        let b = enroll(&dir, &id("edge-1"), 0).expect("enroll");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let e = Bundle::load(&b).expect_err("expired");
        let text = e.to_string();
        assert!(
            text.contains("cert.pem")
                && text.contains("expired on")
                && text.contains("vidar-master enroll edge-1"),
            "{text}"
        );
        enroll(&dir, &id("edge-1"), 30).expect("renewed");
        assert!(Bundle::load(&b).is_ok(), "a renewed bundle loads");
    }
}
