//! Encryption of secret values at rest: AES-256-GCM with a key id stored beside every row.
//!
//! A [`Keyring`] holds the current key (used to encrypt) and any previous keys (still accepted
//! for decryption, so rows written before a rotation stay readable). The key id is derived from
//! the key itself (the first 8 bytes of its SHA-256, in hex), so no id has to be configured and
//! two replicas given the same key agree on its id.
//!
//! Every ciphertext is bound to its row through the associated data (`proc id` and `key`): a
//! ciphertext copied onto another secret does not decrypt.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

/// Bytes in a key (AES-256).
pub const KEY_LEN: usize = 32;
/// Bytes in a nonce (the standard 96-bit GCM nonce).
const NONCE_LEN: usize = 12;

/// A problem with keys, key files or ciphertexts. Messages never include key material or
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A configured key is not base64 of exactly 32 bytes.
    #[error("{0}")]
    InvalidKey(String),
    /// The key file cannot be read, written or is too widely readable.
    #[error("key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A row was encrypted with a key this keyring does not have.
    #[error("no key with id {0} is configured (set it in PROCTOR_SECRET_PREVIOUS_KEYS)")]
    UnknownKey(String),
    /// The ciphertext does not decrypt with its key (tampered, or copied from another row).
    #[error("a stored secret failed authentication")]
    Corrupt,
    /// The system random number generator failed.
    #[error("cannot generate random bytes: {0}")]
    Random(String),
}

/// One AES-256 key and its derived id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: Aes256Gcm,
    encoded: String,
}

impl Key {
    fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|_| {
            KeyError::InvalidKey(format!(
                "a secret key must be {KEY_LEN} bytes, got {}",
                bytes.len()
            ))
        })?;
        let digest = Sha256::digest(bytes);
        Ok(Self {
            id: hex::encode(&digest[..8]),
            cipher,
            encoded: BASE64.encode(bytes),
        })
    }

    fn from_base64(encoded: &str) -> Result<Self, KeyError> {
        let bytes = BASE64.decode(encoded.trim()).map_err(|_| {
            KeyError::InvalidKey(
                "a secret key must be base64 (e.g. `openssl rand -base64 32`)".into(),
            )
        })?;
        Self::from_bytes(&bytes)
    }

    fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0_u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Self::from_bytes(&bytes)
    }
}

/// The keys as loaded: the current one first.
#[derive(Clone)]
struct Keys {
    current: Key,
    by_id: HashMap<String, Key>,
}

impl Keys {
    fn new(current: Key, previous: Vec<Key>) -> Self {
        let mut by_id: HashMap<String, Key> = previous
            .into_iter()
            .map(|key| (key.id.clone(), key))
            .collect();
        by_id.insert(current.id.clone(), current.clone());
        Self { current, by_id }
    }
}

/// Where the keys come from, which decides whether they can be reloaded or rotated in place.
enum Source {
    /// `PROCTOR_SECRET_KEY` and `PROCTOR_SECRET_PREVIOUS_KEYS`: fixed for the process lifetime.
    Configured,
    /// A key file in the data directory: one base64 key per line, the current key first.
    File(PathBuf),
}

/// The keys a process encrypts and decrypts secrets with.
pub struct Keyring {
    keys: RwLock<Keys>,
    source: Source,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current_key_id", &self.current_key_id())
            .finish_non_exhaustive()
    }
}

/// A value as stored: the id of the key that encrypted it, and nonce ‖ ciphertext ‖ tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Id of the encrypting key.
    pub key_id: String,
    /// Nonce followed by the ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl Keyring {
    /// A keyring from configured base64 keys.
    pub fn from_config(current: &str, previous: &[String]) -> Result<Self, KeyError> {
        let current = Key::from_base64(current)?;
        let previous = previous
            .iter()
            .map(|key| Key::from_base64(key))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            keys: RwLock::new(Keys::new(current, previous)),
            source: Source::Configured,
        })
    }

    /// The keyring kept in `path`, created with a fresh key (mode 0600) when missing. A file
    /// readable by group or others is refused, as ssh refuses such private keys.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        if !path.exists() {
            let key = Key::generate()?;
            write_key_file(path, &[&key])?;
        }
        let keys = read_key_file(path)?;
        Ok(Self {
            keys: RwLock::new(keys),
            source: Source::File(path.to_owned()),
        })
    }

    /// A keyring with one random key, for tests and throwaway servers.
    pub fn ephemeral() -> Result<Self, KeyError> {
        Ok(Self {
            keys: RwLock::new(Keys::new(Key::generate()?, Vec::new())),
            source: Source::Configured,
        })
    }

    fn keys(&self) -> Keys {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Id of the key new values are encrypted with.
    pub fn current_key_id(&self) -> String {
        self.keys().current.id
    }

    /// Encrypts `plaintext` with the current key, bound to `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Sealed, KeyError> {
        let keys = self.keys();
        let mut nonce = [0_u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
        let encrypted = keys
            .current
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Corrupt)?;
        let mut ciphertext = Vec::with_capacity(NONCE_LEN + encrypted.len());
        ciphertext.extend_from_slice(&nonce);
        ciphertext.extend_from_slice(&encrypted);
        Ok(Sealed {
            key_id: keys.current.id,
            ciphertext,
        })
    }

    /// Decrypts a stored value. A key file is re-read once when the key id is unknown, so a
    /// server keeps working after `proctord secrets rotate-key` ran beside it.
    pub fn open(&self, context: &str, sealed: &Sealed) -> Result<Vec<u8>, KeyError> {
        let key = match self.keys().by_id.get(&sealed.key_id) {
            Some(key) => key.clone(),
            None => {
                self.reload()?;
                self.keys()
                    .by_id
                    .get(&sealed.key_id)
                    .cloned()
                    .ok_or_else(|| KeyError::UnknownKey(sealed.key_id.clone()))?
            }
        };
        if sealed.ciphertext.len() < NONCE_LEN {
            return Err(KeyError::Corrupt);
        }
        let (nonce, encrypted) = sealed.ciphertext.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyError::Corrupt)?;
        key.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: encrypted,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Corrupt)
    }

    fn reload(&self) -> Result<(), KeyError> {
        if let Source::File(path) = &self.source {
            let keys = read_key_file(path)?;
            *self
                .keys
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        }
        Ok(())
    }

    /// Makes a new current key. With a key file, the new key is written first and every older
    /// key is kept for decryption. Configured keys cannot be rotated here: the operator sets a
    /// new `PROCTOR_SECRET_KEY` and moves the old one to `PROCTOR_SECRET_PREVIOUS_KEYS`.
    pub fn rotate_file_key(&self) -> Result<String, KeyError> {
        let Source::File(path) = &self.source else {
            return Err(KeyError::InvalidKey(
                "keys come from PROCTOR_SECRET_KEY: set a new PROCTOR_SECRET_KEY, move the old \
                 one to PROCTOR_SECRET_PREVIOUS_KEYS, then run rotate-key again"
                    .into(),
            ));
        };
        let keys = read_key_file(path)?;
        let new_key = Key::generate()?;
        let mut ordered: Vec<&Key> = vec![&new_key, &keys.current];
        ordered.extend(keys.by_id.values().filter(|key| key.id != keys.current.id));
        write_key_file(path, &ordered)?;
        self.reload()?;
        Ok(new_key.id)
    }

    /// Whether keys come from a key file (and [`Keyring::rotate_file_key`] applies).
    pub fn is_file_based(&self) -> bool {
        matches!(self.source, Source::File(_))
    }
}

fn read_key_file(path: &Path) -> Result<Keys, KeyError> {
    let fail = |message: String| KeyError::KeyFile {
        path: path.to_owned(),
        message,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| fail(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "is readable by others (mode {:o}); run `chmod 600 {}`",
                mode & 0o777,
                path.display()
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut keys = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| Key::from_base64(line).map_err(|e| fail(e.to_string())));
    let current = keys
        .next()
        .ok_or_else(|| fail("holds no key".to_owned()))??;
    let previous = keys.collect::<Result<Vec<_>, _>>()?;
    Ok(Keys::new(current, previous))
}

fn write_key_file(path: &Path, keys: &[&Key]) -> Result<(), KeyError> {
    let fail = |e: std::io::Error| KeyError::KeyFile {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut text = String::from(
        "# Proctor secret keys (AES-256, base64). The first key encrypts; the others decrypt\n\
         # values written before a rotation. Losing this file makes stored secrets unreadable.\n",
    );
    for key in keys {
        text.push_str(&key.encoded);
        text.push('\n');
    }
    // Write a private temporary file, then rename it over the old one: never a half-written
    // or world-readable key file.
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary).map_err(fail)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_are_bound_to_their_row() {
        let keyring = Keyring::ephemeral().unwrap();
        let sealed = keyring.seal("proc:1:TOKEN", b"hunter2").unwrap();
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(keyring.open("proc:1:TOKEN", &sealed).unwrap(), b"hunter2");
        assert!(matches!(
            keyring.open("proc:2:TOKEN", &sealed),
            Err(KeyError::Corrupt)
        ));
        let again = keyring.seal("proc:1:TOKEN", b"hunter2").unwrap();
        assert_ne!(
            again.ciphertext, sealed.ciphertext,
            "a fresh nonce every time"
        );
    }

    #[test]
    fn previous_keys_still_decrypt() {
        let old = BASE64.encode([1_u8; 32]);
        let new = BASE64.encode([2_u8; 32]);
        let before = Keyring::from_config(&old, &[]).unwrap();
        let sealed = before.seal("c", b"v").unwrap();
        let after = Keyring::from_config(&new, std::slice::from_ref(&old)).unwrap();
        assert_ne!(after.current_key_id(), sealed.key_id);
        assert_eq!(after.open("c", &sealed).unwrap(), b"v");
        let without = Keyring::from_config(&new, &[]).unwrap();
        assert!(matches!(
            without.open("c", &sealed),
            Err(KeyError::UnknownKey(_))
        ));
    }

    #[test]
    fn bad_keys_are_rejected_without_echoing_them() {
        let error = Keyring::from_config("not base64 !!", &[]).unwrap_err();
        assert!(!error.to_string().contains("not base64 !!"));
        let short = BASE64.encode([0_u8; 16]);
        let error = Keyring::from_config(&short, &[]).unwrap_err();
        assert!(error.to_string().contains("32 bytes"), "{error}");
    }

    #[test]
    fn a_key_file_is_created_private_and_rotated_in_place() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("secret.key");
        let keyring = Keyring::from_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = keyring.seal("c", b"v").unwrap();
        let old_id = keyring.current_key_id();

        // A second process (the rotate-key command) rotates the file...
        let rotator = Keyring::from_file(&path).unwrap();
        let new_id = rotator.rotate_file_key().unwrap();
        assert_ne!(new_id, old_id);
        let resealed = rotator.seal("c", b"v").unwrap();
        // ...and the first one still reads both old and new values.
        assert_eq!(keyring.open("c", &sealed).unwrap(), b"v");
        assert_eq!(keyring.open("c", &resealed).unwrap(), b"v");
        assert_eq!(
            keyring.current_key_id(),
            new_id,
            "reloaded on the unknown id"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("secret.key");
        Keyring::from_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Keyring::from_file(&path).unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }
}
