//! The keyed chain: the keyring (HMAC keys by id, one active, and the
//! Ed25519 seed that signs checkpoints) and the MAC every new event carries.
//!
//! The SHA-256 chain (`hash`, `prev_hash`) is public: anyone who can insert a
//! row can recompute it. The MAC is HMAC-SHA-256 with a secret that is not in
//! the database, over a domain-separation tag, the stream, the sequence, the
//! key id and the event's `hash` — and since `hash` covers `prev_hash`, the
//! MACs key the whole chain. Rotation adds a key and makes it active: old
//! events keep their key id and keep verifying with their key.
//!
//! The keyring is a TOML document (a file, or the same text in an
//! environment variable for secret stores):
//!
//! ```toml
//! active = "k2"
//! checkpoint_seed = "<64 hex: the Ed25519 signing seed>"
//! [hmac]
//! k1 = "<hex, at least 32 bytes>"
//! k2 = "<hex>"
//! # Public keys of earlier checkpoint seeds, so that their checkpoints keep verifying.
//! [checkpoint_public_keys]
//! old = "<64 hex>"
//! ```
//!
//! Nothing here prints a secret: `Debug` shows key ids and the public key only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use sha2::Sha256;

/// Domain separation of the event MAC (changing the input's layout means a new tag).
const MAC_TAG: &[u8] = b"dispatch-api/event-mac/v1";

/// Shortest HMAC key accepted, bytes.
const MIN_KEY_BYTES: usize = 32;

/// Why a keyring cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The document does not parse or misses a field.
    #[error("the chain keyring is invalid: {0}")]
    Invalid(String),
    /// The file cannot be read or written.
    #[error("the chain keyring at {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How a MAC check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacFailure {
    /// The event names a key id the keyring does not hold.
    UnknownKey,
    /// The MAC is absent, malformed or does not match.
    Mismatch,
}

/// The chain's keys. Cloning shares nothing secret beyond the process.
#[derive(Clone)]
pub struct ChainKeys {
    active: String,
    hmac: BTreeMap<String, HmacKey>,
    signing: SigningKey,
    /// The signing key's public key and the older ones, by hex.
    verifying: Vec<VerifyingKey>,
}

/// An HMAC key and its keyed state: the key's inner and outer blocks are
/// hashed once here, not again for every event a MAC is made or checked for.
#[derive(Clone)]
struct HmacKey {
    secret: Vec<u8>,
    keyed: Hmac<Sha256>,
}

impl HmacKey {
    fn new(secret: Vec<u8>) -> HmacKey {
        let keyed =
            <Hmac<Sha256> as Mac>::new_from_slice(&secret).expect("HMAC takes any key length");
        HmacKey { secret, keyed }
    }
}

impl std::fmt::Debug for ChainKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainKeys")
            .field("active", &self.active)
            .field("key_ids", &self.hmac.keys().collect::<Vec<_>>())
            .field("checkpoint_public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    active: Option<String>,
    checkpoint_seed: Option<String>,
    #[serde(default)]
    hmac: BTreeMap<String, String>,
    #[serde(default)]
    checkpoint_public_keys: BTreeMap<String, String>,
}

fn invalid(msg: impl Into<String>) -> KeyringError {
    KeyringError::Invalid(msg.into())
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn seed_from_hex(hex_seed: &str, what: &str) -> Result<[u8; 32], KeyringError> {
    let bytes = hex::decode(hex_seed.trim()).map_err(|_| invalid(format!("{what} is not hex")))?;
    bytes
        .try_into()
        .map_err(|_| invalid(format!("{what} must be 32 bytes (64 hex digits)")))
}

impl ChainKeys {
    /// Parses a keyring document (see the module's docs).
    pub fn from_toml(text: &str) -> Result<ChainKeys, KeyringError> {
        let doc: Document = toml::from_str(text).map_err(|e| {
            // toml's message may quote the offending line, which may hold a secret.
            invalid(format!(
                "not a keyring document ({})",
                e.message().lines().next().unwrap_or("")
            ))
        })?;
        Self::from_document(doc)
    }

    fn from_document(doc: Document) -> Result<ChainKeys, KeyringError> {
        let mut hmac = BTreeMap::new();
        for (id, hex_key) in &doc.hmac {
            if !valid_key_id(id) {
                return Err(invalid(format!(
                    "key id {id:?}: use letters, digits, '-', '_', '.' (at most 64)"
                )));
            }
            let key = hex::decode(hex_key.trim())
                .map_err(|_| invalid(format!("hmac key {id} is not hex")))?;
            if key.len() < MIN_KEY_BYTES {
                return Err(invalid(format!(
                    "hmac key {id} is shorter than {MIN_KEY_BYTES} bytes"
                )));
            }
            hmac.insert(id.clone(), HmacKey::new(key));
        }
        let active = doc
            .active
            .ok_or_else(|| invalid("`active` (the key id new events are keyed with) is missing"))?;
        if !hmac.contains_key(&active) {
            return Err(invalid(format!(
                "the active key {active:?} is not in [hmac]"
            )));
        }
        let seed = seed_from_hex(
            doc.checkpoint_seed
                .as_deref()
                .ok_or_else(|| invalid("`checkpoint_seed` is missing"))?,
            "checkpoint_seed",
        )?;
        let signing = SigningKey::from_bytes(&seed);
        let mut verifying = vec![signing.verifying_key()];
        for (name, hex_pub) in &doc.checkpoint_public_keys {
            let bytes = seed_from_hex(hex_pub, &format!("checkpoint public key {name}"))?;
            verifying.push(
                VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| invalid(format!("checkpoint public key {name} is not a key")))?,
            );
        }
        Ok(ChainKeys {
            active,
            hmac,
            signing,
            verifying,
        })
    }

    /// Reads the keyring: the file and/or the document in an environment
    /// variable (merged: the variable's `active` and seed win, and a key id
    /// may not name two different secrets).
    pub fn from_sources(
        file: Option<&Path>,
        inline: Option<&str>,
    ) -> Result<Option<ChainKeys>, KeyringError> {
        let parse = |text: &str| -> Result<Document, KeyringError> {
            toml::from_str(text).map_err(|e| {
                invalid(format!(
                    "not a keyring document ({})",
                    e.message().lines().next().unwrap_or("")
                ))
            })
        };
        let from_file = match file {
            Some(path) => Some(parse(&std::fs::read_to_string(path).map_err(
                |source| KeyringError::Io {
                    path: path.to_path_buf(),
                    source,
                },
            )?)?),
            None => None,
        };
        let from_env = inline.map(parse).transpose()?;
        let doc = match (from_file, from_env) {
            (None, None) => return Ok(None),
            (Some(d), None) | (None, Some(d)) => d,
            (Some(mut f), Some(e)) => {
                for (id, key) in e.hmac {
                    match f.hmac.get(&id) {
                        Some(other) if !other.trim().eq_ignore_ascii_case(key.trim()) => {
                            return Err(invalid(format!(
                                "key id {id} names different secrets in the file and DISPATCH_CHAIN_KEYRING"
                            )))
                        }
                        _ => {
                            f.hmac.insert(id, key);
                        }
                    }
                }
                f.checkpoint_public_keys.extend(e.checkpoint_public_keys);
                f.active = e.active.or(f.active);
                f.checkpoint_seed = e.checkpoint_seed.or(f.checkpoint_seed);
                f
            }
        };
        Self::from_document(doc).map(Some)
    }

    /// A fresh keyring: one random HMAC key (a random id) and a random seed.
    pub fn generate() -> ChainKeys {
        let mut rng = rand::thread_rng();
        let mut key = vec![0u8; 32];
        rng.fill_bytes(&mut key);
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let id = format!("k-{:08x}", rng.next_u32());
        let signing = SigningKey::from_bytes(&seed);
        ChainKeys {
            active: id.clone(),
            hmac: BTreeMap::from([(id, HmacKey::new(key))]),
            verifying: vec![signing.verifying_key()],
            signing,
        }
    }

    /// The keyring as a document [`ChainKeys::from_toml`] reads back. It
    /// holds the secrets: write it only to a file of mode 0600 or a secret store.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# dispatch-api chain keyring: keep secret (docs/07, README \"Chain keys\").\n",
        );
        out.push_str(&format!("active = \"{}\"\n", self.active));
        out.push_str(&format!(
            "checkpoint_seed = \"{}\"\n\n[hmac]\n",
            hex::encode(self.signing.to_bytes())
        ));
        for (id, key) in &self.hmac {
            out.push_str(&format!("{id} = \"{}\"\n", hex::encode(&key.secret)));
        }
        if self.verifying.len() > 1 {
            out.push_str("\n[checkpoint_public_keys]\n");
            for (i, k) in self.verifying.iter().enumerate().skip(1) {
                out.push_str(&format!("old{i} = \"{}\"\n", hex::encode(k.to_bytes())));
            }
        }
        out
    }

    /// A keyring with `id` added as a new active key (rotation; tests and tooling).
    pub fn rotated(&self, id: &str) -> ChainKeys {
        let mut key = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        let mut next = self.clone();
        next.hmac.insert(id.to_string(), HmacKey::new(key));
        next.active = id.to_string();
        next
    }

    /// This keyring without the HMAC key `id` (tests: a keyring that lost a key).
    pub fn without(&self, id: &str) -> ChainKeys {
        let mut next = self.clone();
        next.hmac.remove(id);
        next
    }

    /// The id new events are keyed with.
    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Every key id held.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.hmac.keys().map(String::as_str)
    }

    fn mac_with(
        key: &HmacKey,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
        key_id: &str,
        hash: &str,
    ) -> Hmac<Sha256> {
        let mut m = key.keyed.clone();
        // Length-prefixed fields: no two inputs share an encoding.
        m.update(MAC_TAG);
        for field in [
            aggregate_type.as_bytes(),
            aggregate_id.as_bytes(),
            &sequence.to_be_bytes(),
            key_id.as_bytes(),
            hash.as_bytes(),
        ] {
            m.update(&(field.len() as u64).to_be_bytes());
            m.update(field);
        }
        m
    }

    /// The MAC (hex) of an event's `hash` under the active key; with its key id.
    pub fn mac(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
        hash: &str,
    ) -> (&str, String) {
        let key = &self.hmac[&self.active];
        let m = Self::mac_with(
            key,
            aggregate_type,
            aggregate_id,
            sequence,
            &self.active,
            hash,
        );
        (&self.active, hex::encode(m.finalize().into_bytes()))
    }

    /// Checks an event's MAC against its key (constant-time comparison).
    pub fn verify_mac(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
        key_id: &str,
        hash: &str,
        mac: Option<&str>,
    ) -> Result<(), MacFailure> {
        let key = self.hmac.get(key_id).ok_or(MacFailure::UnknownKey)?;
        let given = mac
            .and_then(|m| hex::decode(m).ok())
            .ok_or(MacFailure::Mismatch)?;
        Self::mac_with(key, aggregate_type, aggregate_id, sequence, key_id, hash)
            .verify_slice(&given)
            .map_err(|_| MacFailure::Mismatch)
    }

    /// Signs `message` with the checkpoint seed.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }

    /// The checkpoint signing key's public key (hex).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    /// Whether `signature` (hex) over `message` was made by `signer` (hex
    /// public key), a key this keyring trusts.
    pub fn verify_signature(&self, signer: &str, message: &[u8], signature: &str) -> bool {
        let Some(key) = self
            .verifying
            .iter()
            .find(|k| hex::encode(k.to_bytes()) == signer)
        else {
            return false;
        };
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(message, &sig).is_ok()
    }
}

/// Where the keyring came from (for the one start-up log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringSource {
    /// `DISPATCH_CHAIN_KEYS_FILE` and/or `DISPATCH_CHAIN_KEYRING`.
    Configured,
    /// The keyring under the data folder, made by an earlier run.
    DataDir(PathBuf),
    /// Created just now under the data folder.
    Created(PathBuf),
}

/// The keyring's place under the data folder.
pub fn default_keyring_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("chain-keyring.toml")
}

/// The configured keyring, else the one under `data_dir`; when there is
/// none and `create` is set, a fresh one written there (mode 0600, never
/// replacing one another process wrote first).
pub fn load_keyring(
    file: Option<&Path>,
    inline: Option<&str>,
    data_dir: &Path,
    create: bool,
) -> Result<Option<(ChainKeys, KeyringSource)>, KeyringError> {
    if let Some(keys) = ChainKeys::from_sources(file, inline)? {
        return Ok(Some((keys, KeyringSource::Configured)));
    }
    let path = default_keyring_path(data_dir);
    let io = |source| KeyringError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return Ok(Some((
                ChainKeys::from_toml(&text)?,
                KeyringSource::DataDir(path),
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let dir = path.parent().expect("the keyring path has a folder");
    std::fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    let keys = ChainKeys::generate();
    // Written aside, then linked into place: a replica starting at the same
    // moment either links first or finds ours, never a half-written file.
    let tmp = dir.join(format!(
        ".chain-keyring.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(keys.to_toml().as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Some((keys, KeyringSource::Created(path)))),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            Ok(Some((
                ChainKeys::from_toml(&text)?,
                KeyringSource::DataDir(path),
            )))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests;
