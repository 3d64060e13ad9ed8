//! Anchoring the log (SPEC §8): the daemon's Ed25519 signing key, the checkpoints it signs
//! (`{seq, head, ts}`), and the check that a log extends every checkpoint given.
//!
//! A hash chain alone proves nothing to someone who can write the database: they can cut the
//! tail or recompute every hash after an edit. A checkpoint handed to a witness the other
//! party controls pins the head at that moment, so a later log must contain exactly that
//! record at that seq.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{canonical_json, Broken, Entry, Verified, GENESIS};

/// The signing key's file in `state_dir`.
pub const KEY_FILE: &str = "audit-signing.key";

/// The key algorithm's name in the one-line public key form `ed25519 BASE64`.
const ALGORITHM: &str = "ed25519";

/// What the secret key file starts with, before the base64 seed.
const SECRET_PREFIX: &str = "ed25519-secret";

/// Signed bytes start with this, so a checkpoint signature can never be replayed as a
/// signature over anything else.
const DOMAIN: &[u8] = b"tandem audit checkpoint v1\n";

/// A problem with the signing key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("audit key {path}: {message}")]
    File { path: String, message: String },
    #[error("no audit key at {0}: start `tandem serve` once or run `tandem audit key`; to verify elsewhere, pass --key")]
    Missing(String),
    #[error("no randomness available for a new audit key: {0}")]
    Random(String),
}

fn file_error(path: &Path, message: impl Into<String>) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The daemon's signing key. Its `Debug` never shows the secret.
pub struct AuditKey(SigningKey);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditKey({} [secret redacted])", self.public())
    }
}

impl AuditKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<AuditKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(AuditKey(SigningKey::from_bytes(&seed)))
    }

    /// Reads the key in `state_dir`; refuses a key file others may read.
    pub fn load(state_dir: &Path) -> Result<AuditKey, KeyError> {
        let path = state_dir.join(KEY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing(path.display().to_string()))
            }
            Err(e) => return Err(file_error(&path, format!("cannot read: {e}"))),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map_err(|e| file_error(&path, format!("cannot stat: {e}")))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(file_error(
                    &path,
                    format!(
                        "others may read it (mode {:o}); `chmod 600` it",
                        mode & 0o777
                    ),
                ));
            }
        }
        let b64 = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .map(str::trim)
            .ok_or_else(|| file_error(&path, format!("expected `{SECRET_PREFIX} BASE64`")))?;
        let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| file_error(&path, "the key is not 32 bytes of base64"))?;
        Ok(AuditKey(SigningKey::from_bytes(&seed)))
    }

    /// Reads the key in `state_dir`, or makes one there (mode 0600 in a 0700 folder). Two
    /// processes starting at once end up with the same key: the file appears whole or not
    /// at all, and the loser of the race reads the winner's.
    pub fn load_or_create(state_dir: &Path) -> Result<AuditKey, KeyError> {
        ensure_private_dir(state_dir)?;
        match AuditKey::load(state_dir) {
            Err(KeyError::Missing(_)) => {}
            other => return other,
        }
        let key = AuditKey::generate()?;
        let path = state_dir.join(KEY_FILE);
        let tmp: PathBuf = state_dir.join(format!("{KEY_FILE}.{}.tmp", std::process::id()));
        let text = format!(
            "{SECRET_PREFIX} {}\n",
            base64::engine::general_purpose::STANDARD.encode(key.0.to_bytes())
        );
        write_private(&tmp, text.as_bytes())?;
        let linked = std::fs::hard_link(&tmp, &path);
        // The temporary name is only a staging place; failing to remove it leaves a
        // private file behind and changes nothing else.
        if let Err(e) = std::fs::remove_file(&tmp) {
            tracing::warn!(path = %tmp.display(), error = %e, "cannot remove a staging file");
        }
        match linked {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => AuditKey::load(state_dir),
            Err(e) => Err(file_error(&path, format!("cannot create: {e}"))),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `{seq, head, ts}`.
    pub fn sign(&self, seq: u64, head: &str, ts: &str) -> Checkpoint {
        let signature = self.0.sign(&signed_bytes(seq, head, ts));
        Checkpoint {
            seq,
            head: head.to_string(),
            ts: ts.to_string(),
            key: self.public().to_string(),
            signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        }
    }
}

/// Creates `dir` if needed and makes it 0700: it holds the database and the signing key.
fn ensure_private_dir(dir: &Path) -> Result<(), KeyError> {
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, format!("cannot create: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| file_error(dir, format!("cannot make it private (0700): {e}")))?;
    }
    Ok(())
}

/// Writes a new file readable by its owner only, durably.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| file_error(path, format!("cannot create: {e}")))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| file_error(path, format!("cannot write: {e}")))
}

/// The bytes a checkpoint signature covers: the domain tag, then the canonical JSON of
/// `{head, seq, ts}`.
fn signed_bytes(seq: u64, head: &str, ts: &str) -> Vec<u8> {
    let body = serde_json::json!({"seq": seq, "head": head, "ts": ts});
    let mut out = DOMAIN.to_vec();
    out.extend_from_slice(canonical_json(&body).as_bytes());
    out
}

/// A public key, shown and read as `ed25519 BASE64`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ALGORITHM} {}",
            base64::engine::general_purpose::STANDARD.encode(self.0.to_bytes())
        )
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = String;

    /// `ed25519 BASE64` (as `tandem audit key` prints it) or the bare base64.
    fn from_str(s: &str) -> Result<PublicKey, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let b64 = match words.as_slice() {
            [alg, b64] if *alg == ALGORITHM => *b64,
            [b64] => *b64,
            _ => return Err(format!("expected `{ALGORITHM} BASE64`, got `{s}`")),
        };
        let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("`{b64}` is not 32 bytes of base64"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| format!("`{b64}` is not an Ed25519 public key"))
    }
}

/// A signed statement that the log's record `seq` had hash `head` at `ts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: u64,
    pub head: String,
    /// RFC 3339 UTC.
    pub ts: String,
    /// The signer's public key, `ed25519 BASE64`.
    pub key: String,
    /// Base64 Ed25519 signature over the domain tag and the canonical JSON of
    /// `{head, seq, ts}`.
    pub signature: String,
}

impl Checkpoint {
    /// Checks that `trusted` signed this checkpoint. A checkpoint signed by any other key
    /// fails, even when its own signature is sound.
    pub fn check_signature(&self, trusted: &PublicKey) -> Result<(), String> {
        let named: PublicKey = self
            .key
            .parse()
            .map_err(|e| format!("checkpoint for seq {}: key: {e}", self.seq))?;
        if &named != trusted {
            return Err(format!(
                "checkpoint for seq {} is signed by {named}, not by the trusted key {trusted}",
                self.seq
            ));
        }
        let signature: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "checkpoint for seq {}: the signature is not 64 bytes of base64",
                    self.seq
                )
            })?;
        trusted
            .0
            .verify(
                &signed_bytes(self.seq, &self.head, &self.ts),
                &Signature::from_bytes(&signature),
            )
            .map_err(|_| {
                format!(
                    "checkpoint for seq {}: the signature does not match its content",
                    self.seq
                )
            })
    }
}

/// Reads checkpoints from a file's text: one JSON document, or JSON lines of several (as a
/// file witness writes them).
pub fn parse_checkpoints(text: &str) -> Result<Vec<Checkpoint>, String> {
    if let Ok(one) = serde_json::from_str::<Checkpoint>(text) {
        return Ok(vec![one]);
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cp = serde_json::from_str::<Checkpoint>(line)
            .map_err(|e| format!("line {} is not a checkpoint: {e}", i + 1))?;
        out.push(cp);
    }
    if out.is_empty() {
        return Err("no checkpoint in it".into());
    }
    Ok(out)
}

/// Why an anchored verification failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorError {
    /// A checkpoint is not one the trusted key signed.
    BadCheckpoint(String),
    /// The log is broken, or does not extend a checkpoint.
    Broken(Broken),
}

/// Verifies a log (or a party's redacted export of it) against checkpoints: each must be
/// signed by `trusted`, and the log must extend each one (its record `seq` exists and its
/// hash is the checkpoint's `head`). The chain itself is checked as [`super::verify`] does.
pub fn verify_anchored<I>(
    entries: I,
    checkpoints: &[Checkpoint],
    trusted: &PublicKey,
) -> Result<Verified, AnchorError>
where
    I: IntoIterator<Item = Result<Entry, Broken>>,
{
    for cp in checkpoints {
        cp.check_signature(trusted)
            .map_err(AnchorError::BadCheckpoint)?;
    }
    verify_against(entries, checkpoints).map_err(AnchorError::Broken)
}

/// The chain walk with checkpoints whose signatures were already checked.
pub(super) fn verify_against<I>(entries: I, checkpoints: &[Checkpoint]) -> Result<Verified, Broken>
where
    I: IntoIterator<Item = Result<Entry, Broken>>,
{
    let mut by_seq: BTreeMap<u64, Vec<&Checkpoint>> = BTreeMap::new();
    for cp in checkpoints {
        by_seq.entry(cp.seq).or_default().push(cp);
    }
    let differs = |seq: u64| Broken {
        seq,
        reason: format!(
            "record {seq} differs from the checkpoint (edited, inserted, deleted or recomputed)"
        ),
    };
    if by_seq
        .get(&0)
        .is_some_and(|cps| cps.iter().any(|c| c.head != GENESIS))
    {
        return Err(differs(0));
    }
    let verified = super::walk(entries, |seq, hash| {
        match by_seq.get(&seq) {
            Some(cps) if cps.iter().any(|c| c.head != hash) => return Err(differs(seq)),
            _ => {}
        }
        Ok(())
    })?;
    if let Some((&last, _)) = by_seq.last_key_value() {
        if last > verified.count {
            return Err(Broken {
                seq: verified.count + 1,
                reason: format!(
                    "log ends at seq {} but checkpoint covers {last}",
                    verified.count
                ),
            });
        }
    }
    Ok(Verified {
        checkpoints: checkpoints.len(),
        ..verified
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::chain;

    #[test]
    fn a_checkpoint_verifies_only_under_its_own_key() {
        let key = AuditKey::generate().unwrap();
        let other = AuditKey::generate().unwrap();
        let cp = key.sign(7, "ab", "2026-12-02T00:00:00Z");
        cp.check_signature(&key.public()).unwrap();
        assert!(cp.check_signature(&other.public()).is_err());
        // Re-signed by another key but claiming the first: the signature gives it away.
        let mut forged = other.sign(7, "ab", "2026-12-02T00:00:00Z");
        forged.key = key.public().to_string();
        assert!(forged.check_signature(&key.public()).is_err());
        let mut edited = cp.clone();
        edited.seq = 8;
        assert!(edited.check_signature(&key.public()).is_err());
        let shown = key.public().to_string();
        assert!(shown.starts_with("ed25519 "), "{shown}");
        assert_eq!(shown.parse::<PublicKey>().unwrap(), key.public());
    }

    #[test]
    fn checkpoints_parse_from_one_document_or_json_lines() {
        let key = AuditKey::generate().unwrap();
        let a = key.sign(1, "a", "t");
        let b = key.sign(2, "b", "t");
        let pretty = serde_json::to_string_pretty(&a).unwrap();
        assert_eq!(parse_checkpoints(&pretty).unwrap(), vec![a.clone()]);
        let lines = format!(
            "{}\n{}\n",
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(parse_checkpoints(&lines).unwrap(), vec![a, b]);
        assert!(parse_checkpoints("{\"seq\": 1}\n").is_err());
        assert!(parse_checkpoints("\n").is_err());
    }

    #[test]
    fn the_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let key = AuditKey::load_or_create(&state).unwrap();
        let again = AuditKey::load_or_create(&state).unwrap();
        assert_eq!(key.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&state.join(KEY_FILE)), 0o600);
            assert_eq!(mode(&state), 0o700);
            std::fs::set_permissions(state.join(KEY_FILE), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            let refused = AuditKey::load(&state).unwrap_err().to_string();
            assert!(refused.contains("chmod 600"), "{refused}");
        }
        assert!(format!("{key:?}").contains("redacted"));
        assert!(matches!(
            AuditKey::load(dir.path()),
            Err(KeyError::Missing(_))
        ));
    }

    #[test]
    fn a_log_must_extend_every_checkpoint() {
        let key = AuditKey::generate().unwrap();
        let log = chain(10);
        let full = || log.clone().into_iter().map(|r| Ok(Entry::Full(r)));
        let at = |n: usize| key.sign(n as u64, &log[n - 1].hash, "t");
        let ok = verify_anchored(full(), &[at(4), at(10)], &key.public()).unwrap();
        assert_eq!((ok.count, ok.checkpoints), (10, 2));

        let cut = verify_anchored(full().take(8), &[at(10)], &key.public()).unwrap_err();
        assert_eq!(
            cut,
            AnchorError::Broken(Broken {
                seq: 9,
                reason: "log ends at seq 8 but checkpoint covers 10".into()
            })
        );
        let wrong = key.sign(5, &log[3].hash, "t");
        match verify_anchored(full(), &[wrong], &key.public()).unwrap_err() {
            AnchorError::Broken(b) => {
                assert_eq!(b.seq, 5);
                assert!(b.reason.contains("differs from the checkpoint"), "{b:?}");
            }
            other => panic!("{other:?}"),
        }
        let stranger = AuditKey::generate().unwrap();
        let foreign = stranger.sign(10, &log[9].hash, "t");
        assert!(matches!(
            verify_anchored(full(), &[foreign], &key.public()),
            Err(AnchorError::BadCheckpoint(_))
        ));
        let empty = key.sign(0, GENESIS, "t");
        verify_anchored(full(), &[empty], &key.public()).unwrap();
    }
}
