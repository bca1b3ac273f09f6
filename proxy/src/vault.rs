//! The vault file: exchange credentials encrypted at rest.
//!
//! Format (JSON, `"format": "keyward-vault"`, `"version": 1`):
//! - `kdf`: how the file key is made: Argon2id over a passphrase with its cost and
//!   salt, or a raw 32-byte key;
//! - `key_check`: a constant sealed under the file key, which tells a wrong key from a
//!   damaged file;
//! - `entries`: one AES-256-GCM ciphertext per entry with the entry's name as
//!   associated data, so an entry cannot be moved under another name;
//! - `integrity`: an AES-GCM tag over the kdf and every entry's name, nonce and
//!   ciphertext, so that dropping, duplicating, reordering or swapping in an entry
//!   from another version of the file is detected.
//!
//! Entry plaintexts use a small binary layout rather than JSON, so no parser makes
//! stray copies of secrets. AES-GCM comes from the `aes-gcm` crate with its `zeroize`
//! feature, which clears the expanded round keys and GHASH key on drop. Writes are
//! atomic (temp file, fsync, rename, fsync of the directory) and refuse to overwrite
//! a file that changed since it was read; the vault and its key file must be mode
//! 0600 and owned by the user keyward runs as.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut as _, Aes256Gcm, KeyInit as _, Nonce, Tag};
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::KeySource;
use crate::credential::{Credential, KeyError, KeyKind, fingerprint};
use crate::shield::Sealed as Shielded;

const FORMAT: &str = "keyward-vault";
const VERSION: u32 = 1;
const CHECK_AAD: &[u8] = b"keyward-vault key check";
const CHECK_PLAINTEXT: &[u8] = b"keyward vault key check v1";
const INTEGRITY_DOMAIN: &[u8] = b"keyward-vault/1 integrity\0";
const ENTRY_LAYOUT: u8 = 1;
const TAG_BYTES: usize = 16;

/// Default Argon2id cost: 128 MiB and 7 passes, about half a second on the 2-core
/// machine keyward is developed on (measured in docs/operations.md, "The file"). Memory is kept at
/// 128 MiB so the unlock fits a small sidecar's memory limit; passes buy the time.
pub const DEFAULT_ARGON2: Argon2Params = Argon2Params {
    memory_kib: 131_072,
    iterations: 7,
    parallelism: 1,
};

/// The least memory `vault init` and `vault passwd` accept for Argon2id.
pub const MIN_ARGON2_MEMORY_KIB: u32 = 8_192;
/// Bounds on the cost read from a file, so a tampered header cannot make keyward
/// allocate or spin without limit.
const MAX_ARGON2_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_ARGON2_ITERATIONS: u32 = 64;
const MAX_ARGON2_PARALLELISM: u32 = 16;

/// Argon2id cost parameters, stored in the vault so it can always be reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

/// Why a vault operation failed. Messages never include key material.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error(
        "{path} is readable or writable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: String,
        /// Its mode bits.
        mode: u32,
    },
    /// The file belongs to another user.
    #[error(
        "{path} belongs to uid {owner}, but keyward runs as uid {running}; run `chown {running} {path}`"
    )]
    Owner {
        /// The file.
        path: String,
        /// Its owner.
        owner: u32,
        /// The user keyward runs as.
        running: u32,
    },
    /// The file does not parse as a vault.
    #[error("{path} is not a readable keyward vault: {detail}; restore it from a backup")]
    Unreadable {
        /// The file.
        path: String,
        /// Where parsing stopped.
        detail: String,
    },
    /// The file is a vault of another version.
    #[error("{path} is a keyward vault of version {version}, which this keyward does not read")]
    Version {
        /// The file.
        path: String,
        /// Its version.
        version: u32,
    },
    /// The key or passphrase does not open the vault.
    #[error("the vault key or passphrase is wrong for {0}")]
    WrongKey(String),
    /// The file fails its integrity check: damaged or tampered with.
    #[error(
        "{0} is damaged or was tampered with (integrity check failed); restore it from a backup"
    )]
    Damaged(String),
    /// The key source yields nothing usable.
    #[error("vault key: {0}")]
    Key(String),
    /// No entry with this name.
    #[error("the vault has no entry `{0}`; add it with `keyward vault add {0}`")]
    NoEntry(String),
    /// An entry with this name exists already.
    #[error("the vault already has an entry `{0}`; use `keyward vault rotate {0}` to replace it")]
    Exists(String),
    /// The vault file exists already.
    #[error("{0} already exists; keyward will not overwrite a vault")]
    AlreadyInitialised(String),
    /// Someone else changed the file between reading and writing it.
    #[error("{0} changed while this command ran; nothing was written, run the command again")]
    Conflict(String),
    /// The key material is invalid for its type.
    #[error("{0}")]
    Material(#[from] KeyError),
    /// Argon2id parameters out of bounds.
    #[error("Argon2id parameters: {0}")]
    Argon2(String),
    /// The vault was re-keyed since a running keyward unlocked it.
    #[error(
        "{0} was re-keyed (keyward vault passwd) since keyward started and its key came from \
         an environment variable or a prompt; restart keyward to unlock it"
    )]
    Rekeyed(String),
    /// The crypto library or the system random generator failed.
    #[error("vault cryptography failed")]
    Crypto,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    format: String,
    version: u32,
    kdf: Kdf,
    key_check: Sealed,
    entries: Vec<NamedSealed>,
    integrity: Sealed,
}

/// How the file key is derived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "lowercase", deny_unknown_fields)]
enum Kdf {
    /// Argon2id over a passphrase.
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        salt: String,
    },
    /// A raw 32-byte key.
    Raw,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedSealed {
    name: String,
    nonce: String,
    ciphertext: String,
}

impl NamedSealed {
    fn sealed(&self) -> Sealed {
        Sealed {
            nonce: self.nonce.clone(),
            ciphertext: self.ciphertext.clone(),
        }
    }
}

/// One decrypted entry.
pub struct Entry {
    /// The exchange API key id.
    pub api_key: String,
    /// The key type.
    pub kind: KeyKind,
    /// The secret (HMAC secret or PEM private key).
    pub secret: Zeroizing<Vec<u8>>,
    /// A passphrase some exchanges require alongside the key.
    pub passphrase: Option<Zeroizing<Vec<u8>>>,
    /// Venue the operator said it belongs to, if any.
    pub venue: Option<String>,
    /// Unix seconds when it was added.
    pub created: u64,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field(
                "api_key",
                &format_args!("fp:{}", fingerprint(&self.api_key)),
            )
            .field("kind", &self.kind)
            .field("secret", &format_args!("[redacted]"))
            .field(
                "passphrase",
                &format_args!(
                    "{}",
                    if self.passphrase.is_some() {
                        "[redacted]"
                    } else {
                        "none"
                    }
                ),
            )
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// The credential, with its key material validated and shielded.
    pub fn credential(&self) -> Result<Credential, KeyError> {
        let credential = Credential::new(&self.api_key, self.kind, &self.secret)?;
        match &self.passphrase {
            Some(passphrase) => credential.with_passphrase(passphrase),
            None => Ok(credential),
        }
    }
}

/// What `vault list` shows for an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Entry name.
    pub name: String,
    /// Venue, if recorded.
    pub venue: Option<String>,
    /// Key type name.
    pub kind: &'static str,
    /// Unix seconds when added.
    pub created: u64,
    /// Short fingerprint of the API key id.
    pub fingerprint: String,
    /// True if the entry carries a passphrase.
    pub passphrase: bool,
}

/// The 32-byte file key, zeroed on drop. A cipher is built from it per operation and
/// zeroized when that operation ends. Boxed, and so is [`KeyMaterial::Raw`]: moving a
/// `Vault` or a `Result` holding one then copies a pointer, not the key, so no stale
/// copy is left in a stack frame where nothing would zero it.
struct FileKey(Box<Zeroizing<[u8; 32]>>);

impl FileKey {
    fn cipher(&self) -> Aes256Gcm {
        // By reference: a by-value conversion would leave a copy of the key on the stack.
        let key: &[u8; 32] = &self.0;
        Aes256Gcm::new(<&aes_gcm::Key<Aes256Gcm>>::from(key))
    }
}

/// An opened vault: its file key and sealed entries. Entries are decrypted one at a
/// time, on demand.
pub struct Vault {
    path: PathBuf,
    kdf: Kdf,
    key: FileKey,
    key_check: Sealed,
    entries: Vec<NamedSealed>,
    /// The integrity value the file had when it was read (None when created here).
    read_integrity: Option<Sealed>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("entries", &names)
            .finish_non_exhaustive()
    }
}

/// Material the vault key is made from, as read from its source.
pub enum KeyMaterial {
    /// A passphrase for Argon2id.
    Passphrase(Zeroizing<Vec<u8>>),
    /// A raw 32-byte key.
    Raw(Box<Zeroizing<[u8; 32]>>),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Passphrase(_) => "KeyMaterial::Passphrase([redacted])",
            Self::Raw(_) => "KeyMaterial::Raw([redacted])",
        })
    }
}

/// Reads key material from its configured source. A file holding exactly 32 bytes (or
/// 64 hex digits) is a raw key; anything else in a file is a passphrase. An
/// environment variable is read here and nowhere else: a running keyward keeps the
/// derived key shielded for reloads instead of reading the variable again.
pub fn read_key(source: &KeySource) -> Result<KeyMaterial, VaultError> {
    match source {
        KeySource::File(path) if !path.exists() => Err(VaultError::Key(format!(
            "the key file {} named by [vault].key does not exist; `keyward vault init` creates one with a new vault, or set [vault].key to the file the vault was made with",
            path.display()
        ))),
        KeySource::File(path) => {
            check_permissions(path)?;
            let bytes = Zeroizing::new(fs::read(path).map_err(|e| io(path, e))?);
            classify(bytes)
        }
        KeySource::Env(name) => {
            let value = std::env::var_os(name).ok_or_else(|| {
                VaultError::Key(format!("environment variable {name} is not set"))
            })?;
            let bytes = Zeroizing::new(value.into_encoded_bytes());
            classify(bytes)
        }
        // Without a terminal the prompt fails with ENXIO ("No such device or
        // address"), which says nothing about the setting behind it.
        KeySource::Prompt if !std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            Err(VaultError::Key(
                "[vault].key is \"prompt\", but there is no terminal to ask for the passphrase on; run keyward in a terminal, or set [vault].key to \"file:PATH\" or \"env:VARIABLE\" (a service or container has no terminal)".to_owned(),
            ))
        }
        KeySource::Prompt => {
            let text = Zeroizing::new(
                rpassword::prompt_password("keyward vault passphrase: ").map_err(|e| {
                    VaultError::Key(format!("cannot read the passphrase from the terminal: {e}"))
                })?,
            );
            classify(Zeroizing::new(text.as_bytes().to_vec()))
        }
    }
}

fn classify(bytes: Zeroizing<Vec<u8>>) -> Result<KeyMaterial, VaultError> {
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if trimmed.len() == 64 && trimmed.iter().all(u8::is_ascii_hexdigit) {
        let mut key = Box::new(Zeroizing::new([0u8; 32]));
        for (slot, pair) in key.iter_mut().zip(trimmed.chunks_exact(2)) {
            let nibble = |c: u8| match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => c - b'A' + 10,
            };
            *slot = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        return Ok(KeyMaterial::Raw(key));
    }
    if bytes.len() == 32 {
        let mut key = Box::new(Zeroizing::new([0u8; 32]));
        key.copy_from_slice(&bytes);
        return Ok(KeyMaterial::Raw(key));
    }
    if trimmed.is_empty() {
        return Err(VaultError::Key("the key source is empty".to_owned()));
    }
    Ok(KeyMaterial::Passphrase(Zeroizing::new(trimmed.to_vec())))
}

/// Writes a fresh random 32-byte key file (mode 0600); refuses to overwrite one.
pub fn generate_key_file(path: &Path) -> Result<(), VaultError> {
    let mut key = Box::new(Zeroizing::new([0u8; 32]));
    SystemRandom::new()
        .fill(&mut key[..])
        .map_err(|_| VaultError::Crypto)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))?;
    file.write_all(&key[..]).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
}

impl Argon2Params {
    /// Refuses parameters too weak to create a vault with, or out of bounds.
    pub fn for_new_vault(self) -> Result<Self, VaultError> {
        if self.memory_kib < MIN_ARGON2_MEMORY_KIB {
            return Err(VaultError::Argon2(format!(
                "at least {MIN_ARGON2_MEMORY_KIB} KiB of memory (asked for {})",
                self.memory_kib
            )));
        }
        self.within_bounds()
    }

    fn within_bounds(self) -> Result<Self, VaultError> {
        let ok = (1..=MAX_ARGON2_MEMORY_KIB).contains(&self.memory_kib)
            && (1..=MAX_ARGON2_ITERATIONS).contains(&self.iterations)
            && (1..=MAX_ARGON2_PARALLELISM).contains(&self.parallelism);
        if ok {
            Ok(self)
        } else {
            Err(VaultError::Argon2(format!(
                "memory up to {MAX_ARGON2_MEMORY_KIB} KiB, 1 to {MAX_ARGON2_ITERATIONS} passes, \
                 1 to {MAX_ARGON2_PARALLELISM} lanes"
            )))
        }
    }
}

fn new_kdf(material: &KeyMaterial, argon2: Argon2Params) -> Result<Kdf, VaultError> {
    Ok(match material {
        KeyMaterial::Raw(_) => Kdf::Raw,
        KeyMaterial::Passphrase(_) => {
            let argon2 = argon2.for_new_vault()?;
            let mut salt = [0u8; 16];
            SystemRandom::new()
                .fill(&mut salt)
                .map_err(|_| VaultError::Crypto)?;
            Kdf::Argon2id {
                memory_kib: argon2.memory_kib,
                iterations: argon2.iterations,
                parallelism: argon2.parallelism,
                salt: b64(&salt),
            }
        }
    })
}

impl Vault {
    /// Creates an empty vault at `path` keyed by `material`.
    pub fn create(
        path: &Path,
        material: &KeyMaterial,
        argon2: Argon2Params,
    ) -> Result<Self, VaultError> {
        if path.exists() {
            return Err(VaultError::AlreadyInitialised(path.display().to_string()));
        }
        let kdf = new_kdf(material, argon2)?;
        let key = derive(&kdf, material)?;
        let key_check = seal(&key, CHECK_AAD, CHECK_PLAINTEXT)?;
        let mut vault = Self {
            path: path.to_path_buf(),
            kdf,
            key,
            key_check,
            entries: Vec::new(),
            read_integrity: None,
        };
        vault.save(true)?;
        Ok(vault)
    }

    /// Opens the vault at `path` with `material`, refusing a file others may read.
    pub fn open(path: &Path, material: &KeyMaterial) -> Result<Self, VaultError> {
        let file = read_file(path)?;
        let key = derive(&file.kdf, material)?;
        Self::unlock(path, file, key)
    }

    fn unlock(path: &Path, file: FileFormat, key: FileKey) -> Result<Self, VaultError> {
        let shown = path.display().to_string();
        let check = open_sealed(&key, CHECK_AAD, &file.key_check)
            .map_err(|_| VaultError::WrongKey(shown.clone()))?;
        if check.as_slice() != CHECK_PLAINTEXT {
            return Err(VaultError::WrongKey(shown));
        }
        let tag = open_sealed(
            &key,
            &integrity_aad(&file.kdf, &file.entries),
            &file.integrity,
        )
        .map_err(|_| VaultError::Damaged(shown.clone()))?;
        let mut names: Vec<&str> = file.entries.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        if !tag.is_empty() || names.windows(2).any(|w| w[0] == w[1]) {
            return Err(VaultError::Damaged(shown));
        }
        Ok(Self {
            path: path.to_path_buf(),
            kdf: file.kdf,
            key,
            key_check: file.key_check,
            entries: file.entries,
            read_integrity: Some(file.integrity),
        })
    }

    /// Decrypts one entry.
    pub fn entry(&self, name: &str) -> Result<Entry, VaultError> {
        let sealed = self
            .entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| VaultError::NoEntry(name.to_owned()))?;
        let damaged = || VaultError::Damaged(format!("{} (entry `{name}`)", self.path.display()));
        let plain =
            open_sealed(&self.key, name.as_bytes(), &sealed.sealed()).map_err(|_| damaged())?;
        decode_entry(&plain).ok_or_else(damaged)
    }

    /// Every entry's public description.
    pub fn list(&self) -> Result<Vec<EntryInfo>, VaultError> {
        self.entries
            .iter()
            .map(|sealed| {
                let entry = self.entry(&sealed.name)?;
                Ok(EntryInfo {
                    name: sealed.name.clone(),
                    venue: entry.venue.clone(),
                    kind: entry.kind.name(),
                    created: entry.created,
                    fingerprint: fingerprint(&entry.api_key),
                    passphrase: entry.passphrase.is_some(),
                })
            })
            .collect()
    }

    /// Adds an entry after validating its key material; refuses an existing name.
    pub fn add(&mut self, name: &str, entry: &Entry) -> Result<(), VaultError> {
        if self.entries.iter().any(|e| e.name == name) {
            return Err(VaultError::Exists(name.to_owned()));
        }
        let sealed = self.seal_entry(name, entry)?;
        self.entries.push(sealed);
        self.save(false).inspect_err(|_| {
            self.entries.pop();
        })
    }

    /// Replaces an existing entry (after validating the new key material) and returns
    /// the entry it replaced.
    pub fn rotate(&mut self, name: &str, entry: &Entry) -> Result<Entry, VaultError> {
        let old = self.entry(name)?;
        let sealed = self.seal_entry(name, entry)?;
        let before = self.entries.clone();
        for slot in &mut self.entries {
            if slot.name == name {
                *slot = sealed.clone();
            }
        }
        if let Err(error) = self.save(false) {
            self.entries = before;
            return Err(error);
        }
        Ok(old)
    }

    /// Removes an entry.
    pub fn remove(&mut self, name: &str) -> Result<(), VaultError> {
        let before = self.entries.clone();
        self.entries.retain(|e| e.name != name);
        if self.entries.len() == before.len() {
            return Err(VaultError::NoEntry(name.to_owned()));
        }
        self.save(false).inspect_err(|_| self.entries = before)
    }

    /// Re-keys the file: every entry is decrypted with the current key and sealed
    /// under one derived from `material`, with a fresh salt.
    pub fn rekey(
        &mut self,
        material: &KeyMaterial,
        argon2: Argon2Params,
    ) -> Result<(), VaultError> {
        let kdf = new_kdf(material, argon2)?;
        let key = derive(&kdf, material)?;
        let mut entries = Vec::with_capacity(self.entries.len());
        for sealed in &self.entries {
            let plain = open_sealed(&self.key, sealed.name.as_bytes(), &sealed.sealed())
                .map_err(|_| VaultError::Damaged(self.path.display().to_string()))?;
            let resealed = seal(&key, sealed.name.as_bytes(), &plain)?;
            entries.push(NamedSealed {
                name: sealed.name.clone(),
                nonce: resealed.nonce,
                ciphertext: resealed.ciphertext,
            });
        }
        let key_check = seal(&key, CHECK_AAD, CHECK_PLAINTEXT)?;
        let old_key_check = std::mem::replace(&mut self.key_check, key_check);
        let old_kdf = std::mem::replace(&mut self.kdf, kdf);
        let old_key = std::mem::replace(&mut self.key, key);
        let old_entries = std::mem::replace(&mut self.entries, entries);
        if let Err(error) = self.save(false) {
            self.key_check = old_key_check;
            self.kdf = old_kdf;
            self.key = old_key;
            self.entries = old_entries;
            return Err(error);
        }
        Ok(())
    }

    /// Entry names.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// What a running keyward needs to open this vault again on reload without the
    /// key source: the key file's path, or (for `env:` and `prompt`) the derived file
    /// key, shielded.
    pub fn reopener(&self, source: &KeySource) -> Result<Reopen, VaultError> {
        let how = match source {
            KeySource::File(path) => ReopenKey::File(path.clone()),
            KeySource::Env(_) | KeySource::Prompt => ReopenKey::Kept {
                kdf: self.kdf.clone(),
                key: Shielded::seal(&self.key.0[..]).map_err(|_| VaultError::Crypto)?,
            },
        };
        Ok(Reopen {
            path: self.path.clone(),
            how,
        })
    }

    fn seal_entry(&self, name: &str, entry: &Entry) -> Result<NamedSealed, VaultError> {
        entry.credential()?;
        let plain = encode_entry(entry);
        let sealed = seal(&self.key, name.as_bytes(), &plain)?;
        Ok(NamedSealed {
            name: name.to_owned(),
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
        })
    }

    fn save(&mut self, new_file: bool) -> Result<(), VaultError> {
        let integrity = seal(&self.key, &integrity_aad(&self.kdf, &self.entries), &[])?;
        let file = FileFormat {
            format: FORMAT.to_owned(),
            version: VERSION,
            kdf: self.kdf.clone(),
            key_check: self.key_check.clone(),
            entries: self.entries.clone(),
            integrity: integrity.clone(),
        };
        let mut text = serde_json::to_string_pretty(&file).map_err(|_| VaultError::Crypto)?;
        text.push('\n');
        let expected = if new_file {
            Expected::Absent
        } else {
            Expected::Integrity(self.read_integrity.as_ref())
        };
        write_atomically(&self.path, text.as_bytes(), &expected)?;
        self.read_integrity = Some(integrity);
        Ok(())
    }
}

/// How a running keyward reopens its vault on reload.
pub struct Reopen {
    path: PathBuf,
    how: ReopenKey,
}

enum ReopenKey {
    File(PathBuf),
    Kept { kdf: Kdf, key: Shielded },
}

impl fmt::Debug for Reopen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reopen")
            .field("path", &self.path)
            .field(
                "key",
                &match &self.how {
                    ReopenKey::File(path) => path.display().to_string(),
                    ReopenKey::Kept { .. } => "[kept, shielded]".to_owned(),
                },
            )
            .finish()
    }
}

impl Reopen {
    /// The vault file this reopens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the key is re-read from its file on each reload.
    pub fn reads_key_file(&self) -> bool {
        matches!(self.how, ReopenKey::File(_))
    }

    /// Opens the vault as it is on disk now.
    pub fn open(&self) -> Result<Vault, VaultError> {
        match &self.how {
            ReopenKey::File(key_path) => {
                let material = read_key(&KeySource::File(key_path.clone()))?;
                Vault::open(&self.path, &material)
            }
            ReopenKey::Kept { kdf, key } => {
                let file = read_file(&self.path)?;
                if &file.kdf != kdf {
                    return Err(VaultError::Rekeyed(self.path.display().to_string()));
                }
                let mut bytes = Box::new(Zeroizing::new([0u8; 32]));
                key.with_secret(|k| {
                    if let Some(src) = k.get(..32) {
                        bytes.copy_from_slice(src);
                    }
                })
                .map_err(|_| VaultError::Crypto)?;
                Vault::unlock(&self.path, file, FileKey(bytes))
            }
        }
    }
}

fn read_file(path: &Path) -> Result<FileFormat, VaultError> {
    check_permissions(path)?;
    let bytes = fs::read(path).map_err(|e| io(path, e))?;
    parse_file(path, &bytes)
}

fn parse_file(path: &Path, bytes: &[u8]) -> Result<FileFormat, VaultError> {
    let shown = path.display().to_string();
    // The version is read first, so a future format is named as such rather than
    // reported as damage.
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
    }
    let unreadable = |e: serde_json::Error| VaultError::Unreadable {
        path: shown.clone(),
        detail: format!(
            "{} at line {}, column {}",
            match e.classify() {
                serde_json::error::Category::Eof => "it ends early",
                serde_json::error::Category::Syntax => "invalid JSON",
                _ => "unexpected content",
            },
            e.line(),
            e.column()
        ),
    };
    let header: Header = serde_json::from_slice(bytes).map_err(unreadable)?;
    if header.format != FORMAT {
        return Err(VaultError::Unreadable {
            path: shown,
            detail: "its format is not \"keyward-vault\"".to_owned(),
        });
    }
    if header.version != VERSION {
        return Err(VaultError::Version {
            path: shown,
            version: header.version,
        });
    }
    let file: FileFormat = serde_json::from_slice(bytes).map_err(unreadable)?;
    if let Kdf::Argon2id {
        memory_kib,
        iterations,
        parallelism,
        ..
    } = file.kdf
    {
        Argon2Params {
            memory_kib,
            iterations,
            parallelism,
        }
        .within_bounds()
        .map_err(|_| VaultError::Damaged(shown))?;
    }
    Ok(file)
}

/// What the integrity tag covers: the kdf and every entry, length-prefixed.
fn integrity_aad(kdf: &Kdf, entries: &[NamedSealed]) -> Vec<u8> {
    let mut aad = INTEGRITY_DOMAIN.to_vec();
    let mut field = |bytes: &[u8]| {
        aad.extend_from_slice(&u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
        aad.extend_from_slice(bytes);
    };
    field(&serde_json::to_vec(kdf).unwrap_or_default());
    for entry in entries {
        field(entry.name.as_bytes());
        field(entry.nonce.as_bytes());
        field(entry.ciphertext.as_bytes());
    }
    aad
}

fn derive(kdf: &Kdf, material: &KeyMaterial) -> Result<FileKey, VaultError> {
    let mut key = Box::new(Zeroizing::new([0u8; 32]));
    match (kdf, material) {
        (Kdf::Raw, KeyMaterial::Raw(raw)) => key.copy_from_slice(&raw[..]),
        (
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
                salt,
            },
            KeyMaterial::Passphrase(passphrase),
        ) => {
            let salt = base64::engine::general_purpose::STANDARD
                .decode(salt)
                .map_err(|_| VaultError::Key("the vault's salt is not base64".to_owned()))?;
            let params = argon2::Params::new(*memory_kib, *iterations, *parallelism, Some(32))
                .map_err(|e| VaultError::Argon2(e.to_string()))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(passphrase, &salt, &mut key[..])
                .map_err(|e| VaultError::Argon2(e.to_string()))?;
        }
        (Kdf::Raw, KeyMaterial::Passphrase(_)) => {
            return Err(VaultError::Key(
                "this vault is keyed by a 32-byte key file, but the key source holds a passphrase"
                    .to_owned(),
            ));
        }
        (Kdf::Argon2id { .. }, KeyMaterial::Raw(_)) => {
            return Err(VaultError::Key(
                "this vault is keyed by a passphrase, but the key source holds a 32-byte key"
                    .to_owned(),
            ));
        }
    }
    Ok(FileKey(key))
}

fn seal(key: &FileKey, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, VaultError> {
    let mut nonce = [0u8; 12];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| VaultError::Crypto)?;
    // In place, so the plaintext copy becomes the ciphertext rather than lingering.
    let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_BYTES));
    buffer.extend_from_slice(plaintext);
    let tag = key
        .cipher()
        .encrypt_inout_detached(&Nonce::from(nonce), aad, InOutBuf::from(&mut buffer[..]))
        .map_err(|_| VaultError::Crypto)?;
    buffer.extend_from_slice(&tag);
    Ok(Sealed {
        nonce: b64(&nonce),
        ciphertext: b64(&buffer),
    })
}

fn open_sealed(
    key: &FileKey,
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let engine = base64::engine::general_purpose::STANDARD;
    let nonce: [u8; 12] = engine
        .decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(VaultError::Crypto)?;
    let mut buffer = Zeroizing::new(
        engine
            .decode(&sealed.ciphertext)
            .map_err(|_| VaultError::Crypto)?,
    );
    let plain_len = buffer
        .len()
        .checked_sub(TAG_BYTES)
        .ok_or(VaultError::Crypto)?;
    let tag: [u8; TAG_BYTES] = buffer[plain_len..]
        .try_into()
        .map_err(|_| VaultError::Crypto)?;
    key.cipher()
        .decrypt_inout_detached(
            &Nonce::from(nonce),
            aad,
            InOutBuf::from(&mut buffer[..plain_len]),
            &Tag::from(tag),
        )
        .map_err(|_| VaultError::Crypto)?;
    buffer.truncate(plain_len);
    Ok(buffer)
}

fn kind_code(kind: KeyKind) -> u8 {
    match kind {
        KeyKind::Hmac => 1,
        KeyKind::Ed25519 => 2,
        KeyKind::Rsa => 3,
        KeyKind::EcP256 => 4,
    }
}

/// `[layout][kind][created u64][api_key u16+bytes][secret u32+bytes][passphrase u16+bytes][venue u16+bytes]`
fn encode_entry(entry: &Entry) -> Zeroizing<Vec<u8>> {
    let passphrase = entry.passphrase.as_deref().map_or(&[][..], Vec::as_slice);
    let venue = entry.venue.as_deref().unwrap_or_default().as_bytes();
    let size = 2
        + 8
        + 2
        + entry.api_key.len()
        + 4
        + entry.secret.len()
        + 2
        + passphrase.len()
        + 2
        + venue.len();
    // Sized up front: a growing Vec would leave copies of the secret behind.
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.push(ENTRY_LAYOUT);
    out.push(kind_code(entry.kind));
    out.extend_from_slice(&entry.created.to_be_bytes());
    let mut field = |bytes: &[u8], wide: bool| {
        if wide {
            out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
        } else {
            out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
        }
        out.extend_from_slice(bytes);
    };
    field(entry.api_key.as_bytes(), false);
    field(&entry.secret, true);
    field(passphrase, false);
    field(venue, false);
    out
}

fn decode_entry(bytes: &[u8]) -> Option<Entry> {
    let mut rest = bytes;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    if take(1)? != [ENTRY_LAYOUT] {
        return None;
    }
    let code = take(1)?[0];
    let kind = KeyKind::ALL.into_iter().find(|k| kind_code(*k) == code)?;
    let created = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let api_len = usize::from(u16::from_be_bytes(take(2)?.try_into().ok()?));
    let api_key = String::from_utf8(take(api_len)?.to_vec()).ok()?;
    let secret_len = usize::try_from(u32::from_be_bytes(take(4)?.try_into().ok()?)).ok()?;
    let secret = Zeroizing::new(take(secret_len)?.to_vec());
    let pass_len = usize::from(u16::from_be_bytes(take(2)?.try_into().ok()?));
    let passphrase = take(pass_len)?;
    let passphrase = (!passphrase.is_empty()).then(|| Zeroizing::new(passphrase.to_vec()));
    let venue_len = usize::from(u16::from_be_bytes(take(2)?.try_into().ok()?));
    let venue = String::from_utf8(take(venue_len)?.to_vec()).ok()?;
    if !rest.is_empty() {
        return None;
    }
    Some(Entry {
        api_key,
        kind,
        secret,
        passphrase,
        venue: (!venue.is_empty()).then_some(venue),
        created,
    })
}

/// Refuses a vault or key file that group or others can read or write, or that
/// belongs to another user.
pub fn check_permissions(path: &Path) -> Result<(), VaultError> {
    let metadata = fs::metadata(path).map_err(|e| io(path, e))?;
    if systemd_credential(path) {
        return Ok(());
    }
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(VaultError::Permissions {
            path: path.display().to_string(),
            mode: mode & 0o777,
        });
    }
    let running = crate::sys::effective_uid();
    if metadata.uid() != running {
        return Err(VaultError::Owner {
            path: path.display().to_string(),
            owner: metadata.uid(),
            running,
        });
    }
    Ok(())
}

/// A file systemd passed with `LoadCredential=`: it sits in the unit's private
/// credentials directory (`$CREDENTIALS_DIRECTORY`, a root-owned directory nobody
/// else may write), owned by root, mode 0400, with an ACL that lets this service's
/// user alone read it. The ACL shows in the mode's group bits, so the usual check
/// would refuse it.
fn systemd_credential(path: &Path) -> bool {
    let Some(directory) = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from) else {
        return false;
    };
    let private = fs::metadata(&directory)
        .is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.permissions().mode() & 0o022 == 0);
    let owned =
        fs::metadata(path).is_ok_and(|m| m.uid() == 0 && m.permissions().mode() & 0o022 == 0);
    directory.is_absolute() && path.starts_with(&directory) && private && owned
}

/// What the file on disk must be when it is replaced.
enum Expected<'a> {
    /// No file yet.
    Absent,
    /// The file as it was read (its integrity value).
    Integrity(Option<&'a Sealed>),
}

/// Temp file (0600) in the same directory, fsync, rename, fsync of the directory;
/// the directory is locked meanwhile and the file compared with what was read, so
/// two commands never silently overwrite each other's work.
fn write_atomically(path: &Path, bytes: &[u8], expected: &Expected<'_>) -> Result<(), VaultError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir_handle = fs::File::open(dir).map_err(|e| io(dir, e))?;
    dir_handle.lock().map_err(|e| io(dir, e))?;
    let current = match fs::read(path) {
        Ok(current) => Some(current),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(path, e)),
    };
    let unchanged = match (expected, &current) {
        (Expected::Absent, None) => true,
        (Expected::Integrity(Some(read)), Some(current)) => {
            parse_file(path, current).is_ok_and(|file| &file.integrity == *read)
        }
        _ => false,
    };
    if !unchanged {
        return Err(match expected {
            Expected::Absent => VaultError::AlreadyInitialised(path.display().to_string()),
            Expected::Integrity(_) => VaultError::Conflict(path.display().to_string()),
        });
    }
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp-keyward");
    let temp = dir.join(temp_name);
    let _ = fs::remove_file(&temp);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io(&temp, e));
    }
    fs::rename(&temp, path).map_err(|e| io(path, e))?;
    dir_handle.sync_all().map_err(|e| io(dir, e))
}

fn io(path: &Path, source: std::io::Error) -> VaultError {
    VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests;
