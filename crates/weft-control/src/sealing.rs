//! Secrets at rest. The control plane keeps two secrets in its store — the CA's private
//! key and the key that signs tokens. In the embedded store they are as safe as the
//! data directory (created `0700`, readable by the control plane's user alone). In etcd,
//! which every replica and etcd's own operators can read, they are sealed with a key
//! the operator supplies (`--seal-key FILE`): AES-256-GCM, a fresh random nonce per
//! value, the store key as associated data so a sealed value cannot be moved to another
//! key.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::path::Path;

/// Marks a sealed value (so that a value written without a seal key is recognised).
const SEALED: &[u8] = b"weft-sealed-v1:";

/// Seals and opens secrets, or passes them through when no key was given.
pub struct Sealer {
    key: Option<LessSafeKey>,
}

/// Why a secret could not be read or the seal key loaded.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The seal key file is unusable.
    #[error("seal key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A sealed value does not open with this key.
    #[error("{0} is sealed with another key (check --seal-key)")]
    WrongKey(String),
    /// A sealed value was found but no key was given.
    #[error("{0} is sealed: start the control plane with --seal-key")]
    NoKey(String),
}

impl Sealer {
    /// Values stored as they are.
    pub fn none() -> Sealer {
        Sealer { key: None }
    }

    /// Whether values are sealed.
    pub fn is_sealing(&self) -> bool {
        self.key.is_some()
    }

    /// Loads a 32-byte key from `path`: 64 hex digits, or 32 raw bytes.
    pub fn from_file(path: &Path) -> Result<Sealer, SealError> {
        let err = |reason: String| SealError::Key {
            path: path.display().to_string(),
            reason,
        };
        let raw = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw);
        let hex = text.trim();
        let bytes = if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect()
        } else if raw.len() == 32 {
            raw
        } else {
            return Err(err(
                "expected 32 bytes or 64 hex digits (e.g. `openssl rand -hex 32`)".into(),
            ));
        };
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|e| err(e.to_string()))?;
        Ok(Sealer {
            key: Some(LessSafeKey::new(key)),
        })
    }

    /// `value` as stored under `store_key`.
    pub fn seal(&self, store_key: &str, value: &[u8]) -> Vec<u8> {
        let Some(key) = &self.key else {
            return value.to_vec();
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random number generator works");
        let mut data = value.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(store_key.as_bytes()),
            &mut data,
        )
        .expect("AES-GCM sealing of a small value cannot fail");
        let mut out = Vec::with_capacity(SEALED.len() + NONCE_LEN + data.len());
        out.extend_from_slice(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        out
    }

    /// The value stored under `store_key`, opened.
    pub fn open(&self, store_key: &str, stored: &[u8]) -> Result<Vec<u8>, SealError> {
        let Some(sealed) = stored.strip_prefix(SEALED) else {
            // Written before a seal key was given: readable, and resealed on next write.
            return Ok(stored.to_vec());
        };
        let Some(key) = &self.key else {
            return Err(SealError::NoKey(store_key.to_string()));
        };
        let wrong = || SealError::WrongKey(store_key.to_string());
        if sealed.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut data = data.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(store_key.as_bytes()), &mut data)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

/// `n` random bytes from the system's generator.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut out)
        .expect("the system's random number generator works");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("key");
        std::fs::write(
            &path,
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
        )
        .expect("write");
        Sealer::from_file(&path).expect("key loads")
    }

    #[test]
    fn sealed_values_open_only_under_their_key_and_seal_key() {
        let s = sealer();
        let sealed = s.seal("/weft/ca", b"secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(s.open("/weft/ca", &sealed).expect("opens"), b"secret");
        assert!(matches!(
            s.open("/weft/other", &sealed),
            Err(SealError::WrongKey(_))
        ));
        assert!(matches!(
            Sealer::none().open("/weft/ca", &sealed),
            Err(SealError::NoKey(_))
        ));
        assert_eq!(Sealer::none().seal("k", b"v"), b"v");
        assert_eq!(s.open("k", b"plain").expect("plain passes"), b"plain");
    }

    #[test]
    fn bad_key_files_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("short");
        std::fs::write(&path, "abc").expect("write");
        let e = Sealer::from_file(&path).err().expect("refused").to_string();
        assert!(e.contains("short") && e.contains("64 hex digits"), "{e}");
    }
}
