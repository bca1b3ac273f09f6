//! The vault file: exchange credentials encrypted at rest.
//!
//! Format (JSON, versioned): a header naming the key derivation (Argon2id over a
//! passphrase, with its parameters and salt, or a raw 32-byte key file), a check value
//! that tells a wrong key from a damaged file, and one AES-256-GCM ciphertext per entry
//! with the entry's name as associated data, so an entry cannot be moved under another
//! name. Entry plaintexts use a small binary layout rather than JSON, so no parser
//! makes stray copies of secrets. Writes are atomic and the file must be mode 0600.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::KeySource;
use crate::secret::{Credential, KeyError, KeyKind, fingerprint};

const FORMAT: &str = "keyward-vault";
const VERSION: u32 = 1;
const CHECK_AAD: &[u8] = b"keyward-vault-check";
const CHECK_PLAINTEXT: &[u8] = b"keyward vault key check v1";
const ENTRY_LAYOUT: u8 = 1;

/// Default Argon2id cost: 64 MiB, 3 passes, one lane.
pub const DEFAULT_ARGON2: Argon2Params = Argon2Params {
    memory_kib: 65_536,
    iterations: 3,
    parallelism: 1,
};

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
    #[error("{path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: String,
        /// Its mode bits.
        mode: u32,
    },
    /// The file is not a keyward vault of a known version.
    #[error("{0} is not a keyward vault (or was written by a newer keyward)")]
    Format(String),
    /// The key or passphrase does not open the vault.
    #[error("the vault key or passphrase is wrong")]
    WrongKey,
    /// An entry fails authentication: damaged or tampered with.
    #[error("vault entry `{0}` is damaged or was tampered with")]
    Damaged(String),
    /// The key source yields nothing usable.
    #[error("vault key: {0}")]
    Key(String),
    /// No entry with this name.
    #[error("the vault has no entry `{0}`; add it with `keyward vault add {0}`")]
    NoEntry(String),
    /// An entry with this name exists already.
    #[error("the vault already has an entry `{0}`; remove it first")]
    Exists(String),
    /// The vault file exists already.
    #[error("{0} already exists; keyward will not overwrite a vault")]
    AlreadyInitialised(String),
    /// The key material is invalid for its type.
    #[error("{0}")]
    Material(#[from] KeyError),
    /// The crypto library failed.
    #[error("vault cryptography failed")]
    Crypto,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    format: String,
    version: u32,
    kdf: Kdf,
    check: Sealed,
    entries: Vec<NamedSealed>,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// The credential, with its key material validated.
    pub fn credential(&self) -> Result<Credential, KeyError> {
        Credential::new(&self.api_key, self.kind, &self.secret)
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
}

/// An opened vault: its file key and sealed entries. Entries are decrypted one at a
/// time, on demand.
pub struct Vault {
    path: PathBuf,
    kdf: Kdf,
    key: LessSafeKey,
    check: Sealed,
    entries: Vec<NamedSealed>,
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
    Raw(Zeroizing<[u8; 32]>),
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
/// 64 hex digits) is a raw key; anything else in a file is a passphrase.
pub fn read_key(source: &KeySource) -> Result<KeyMaterial, VaultError> {
    match source {
        KeySource::File(path) => {
            check_permissions(path)?;
            let bytes = Zeroizing::new(fs::read(path).map_err(|e| io(path, e))?);
            Ok(classify(bytes))
        }
        KeySource::Env(name) => {
            let value = std::env::var_os(name).ok_or_else(|| {
                VaultError::Key(format!("environment variable {name} is not set"))
            })?;
            let bytes = Zeroizing::new(value.into_encoded_bytes());
            Ok(classify(bytes))
        }
        KeySource::Prompt => {
            let text = Zeroizing::new(
                rpassword::prompt_password("keyward vault passphrase: ").map_err(|e| {
                    VaultError::Key(format!("cannot read the passphrase from the terminal: {e}"))
                })?,
            );
            Ok(KeyMaterial::Passphrase(Zeroizing::new(
                text.as_bytes().to_vec(),
            )))
        }
    }
}

fn classify(bytes: Zeroizing<Vec<u8>>) -> KeyMaterial {
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if trimmed.len() == 64 && trimmed.iter().all(u8::is_ascii_hexdigit) {
        let mut key = Zeroizing::new([0u8; 32]);
        for (i, pair) in trimmed.chunks_exact(2).enumerate() {
            let hex = |c: u8| match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => c - b'A' + 10,
            };
            key[i] = (hex(pair[0]) << 4) | hex(pair[1]);
        }
        return KeyMaterial::Raw(key);
    }
    if bytes.len() == 32 {
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&bytes);
        return KeyMaterial::Raw(key);
    }
    KeyMaterial::Passphrase(Zeroizing::new(trimmed.to_vec()))
}

/// Writes a fresh random 32-byte key file (mode 0600); refuses to overwrite one.
pub fn generate_key_file(path: &Path) -> Result<(), VaultError> {
    let mut key = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(&mut *key)
        .map_err(|_| VaultError::Crypto)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))?;
    file.write_all(&*key).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
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
        let kdf = match material {
            KeyMaterial::Raw(_) => Kdf::Raw,
            KeyMaterial::Passphrase(_) => {
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
        };
        let key = derive(&kdf, material)?;
        let check = seal(&key, CHECK_AAD, CHECK_PLAINTEXT)?;
        let vault = Self {
            path: path.to_path_buf(),
            kdf,
            key,
            check,
            entries: Vec::new(),
        };
        vault.save()?;
        Ok(vault)
    }

    /// Opens the vault at `path` with `material`, refusing a file others may read.
    pub fn open(path: &Path, material: &KeyMaterial) -> Result<Self, VaultError> {
        check_permissions(path)?;
        let text = fs::read_to_string(path).map_err(|e| io(path, e))?;
        let file: FileFormat = serde_json::from_str(&text)
            .map_err(|_| VaultError::Format(path.display().to_string()))?;
        if file.format != FORMAT || file.version != VERSION {
            return Err(VaultError::Format(path.display().to_string()));
        }
        let key = derive(&file.kdf, material)?;
        let check = open_sealed(&key, CHECK_AAD, &file.check).map_err(|_| VaultError::WrongKey)?;
        if check.as_slice() != CHECK_PLAINTEXT {
            return Err(VaultError::WrongKey);
        }
        Ok(Self {
            path: path.to_path_buf(),
            kdf: file.kdf,
            key,
            check: file.check,
            entries: file.entries,
        })
    }

    /// Decrypts one entry.
    pub fn entry(&self, name: &str) -> Result<Entry, VaultError> {
        let sealed = self
            .entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| VaultError::NoEntry(name.to_owned()))?;
        let plain = open_sealed(&self.key, name.as_bytes(), &sealed.sealed())
            .map_err(|_| VaultError::Damaged(name.to_owned()))?;
        decode_entry(&plain).ok_or_else(|| VaultError::Damaged(name.to_owned()))
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
                })
            })
            .collect()
    }

    /// Adds an entry after validating its key material; refuses an existing name.
    pub fn add(&mut self, name: &str, entry: &Entry) -> Result<(), VaultError> {
        if self.entries.iter().any(|e| e.name == name) {
            return Err(VaultError::Exists(name.to_owned()));
        }
        entry.credential()?;
        let plain = encode_entry(entry);
        let sealed = seal(&self.key, name.as_bytes(), &plain)?;
        self.entries.push(NamedSealed {
            name: name.to_owned(),
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
        });
        self.save()
    }

    /// Removes an entry.
    pub fn remove(&mut self, name: &str) -> Result<(), VaultError> {
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name);
        if self.entries.len() == before {
            return Err(VaultError::NoEntry(name.to_owned()));
        }
        self.save()
    }

    /// Entry names.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    fn save(&self) -> Result<(), VaultError> {
        let file = FileFormat {
            format: FORMAT.to_owned(),
            version: VERSION,
            kdf: self.kdf.clone(),
            check: self.check.clone(),
            entries: self.entries.clone(),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|_| VaultError::Crypto)?;
        write_atomically(&self.path, text.as_bytes())
    }
}

fn derive(kdf: &Kdf, material: &KeyMaterial) -> Result<LessSafeKey, VaultError> {
    let mut key = Zeroizing::new([0u8; 32]);
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
                .map_err(|_| VaultError::Format("the vault's salt".to_owned()))?;
            let params = argon2::Params::new(*memory_kib, *iterations, *parallelism, Some(32))
                .map_err(|e| VaultError::Key(format!("invalid Argon2id parameters: {e}")))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(passphrase, &salt, &mut *key)
                .map_err(|_| VaultError::Crypto)?;
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
    let unbound = UnboundKey::new(&AES_256_GCM, &key[..]).map_err(|_| VaultError::Crypto)?;
    Ok(LessSafeKey::new(unbound))
}

fn seal(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, VaultError> {
    let mut nonce = [0u8; 12];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| VaultError::Crypto)?;
    let mut buffer = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buffer,
    )
    .map_err(|_| VaultError::Crypto)?;
    Ok(Sealed {
        nonce: b64(&nonce),
        ciphertext: b64(&buffer),
    })
}

fn open_sealed(
    key: &LessSafeKey,
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
    let plain_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buffer,
        )
        .map_err(|_| VaultError::Crypto)?
        .len();
    buffer.truncate(plain_len);
    Ok(buffer)
}

/// `[layout][kind][created u64][api_key u16+bytes][secret u32+bytes][passphrase u16+bytes][venue u16+bytes]`
fn encode_entry(entry: &Entry) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(64 + entry.secret.len()));
    out.push(ENTRY_LAYOUT);
    out.push(match entry.kind {
        KeyKind::Hmac => 1,
        KeyKind::Ed25519 => 2,
        KeyKind::Rsa => 3,
    });
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
    field(
        entry
            .passphrase
            .as_deref()
            .map_or(&[][..], |p| p.as_slice()),
        false,
    );
    field(entry.venue.as_deref().unwrap_or_default().as_bytes(), false);
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
    let kind = match take(1)?[0] {
        1 => KeyKind::Hmac,
        2 => KeyKind::Ed25519,
        3 => KeyKind::Rsa,
        _ => return None,
    };
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
    Some(Entry {
        api_key,
        kind,
        secret,
        passphrase,
        venue: (!venue.is_empty()).then_some(venue),
        created,
    })
}

/// Refuses a vault or key file that group or others can read.
pub fn check_permissions(path: &Path) -> Result<(), VaultError> {
    let mode = fs::metadata(path)
        .map_err(|e| io(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(VaultError::Permissions {
            path: path.display().to_string(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

/// Temp file (0600) in the same directory, fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = path.with_extension("tmp-keyward");
    let _ = fs::remove_file(&temp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| io(&temp, e))?;
    file.write_all(bytes).map_err(|e| io(&temp, e))?;
    file.sync_all().map_err(|e| io(&temp, e))?;
    drop(file);
    fs::rename(&temp, path).map_err(|e| io(path, e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
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
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keyward-vault-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entry(secret: &[u8]) -> Entry {
        Entry {
            api_key: "APIKEYCANARY".into(),
            kind: KeyKind::Hmac,
            secret: Zeroizing::new(secret.to_vec()),
            passphrase: None,
            venue: Some("binance-spot".into()),
            created: 1_800_000_000,
        }
    }

    const FAST: Argon2Params = Argon2Params {
        memory_kib: 8192,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn round_trips_with_a_key_file_and_never_stores_plaintext() {
        let dir = temp("raw");
        let key_path = dir.join("master.key");
        generate_key_file(&key_path).unwrap();
        let material = read_key(&KeySource::File(key_path)).unwrap();
        let path = dir.join("v.vault");
        let mut vault = Vault::create(&path, &material, FAST).unwrap();
        vault.add("main", &entry(b"SECRETCANARY")).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("SECRETCANARY") && !text.contains("APIKEYCANARY"));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let reopened = Vault::open(&path, &material).unwrap();
        let got = reopened.entry("main").unwrap();
        assert_eq!(got.api_key, "APIKEYCANARY");
        assert_eq!(&got.secret[..], b"SECRETCANARY");
        assert_eq!(got.venue.as_deref(), Some("binance-spot"));
        assert!(!format!("{got:?}{reopened:?}").contains("CANARY"));
        let info = reopened.list().unwrap();
        assert_eq!(info[0].kind, "hmac");
        assert_eq!(info[0].fingerprint.len(), 8);
        assert!(matches!(
            vault.add("main", &entry(b"x")),
            Err(VaultError::Exists(_))
        ));
        vault.remove("main").unwrap();
        assert!(matches!(vault.entry("main"), Err(VaultError::NoEntry(_))));
    }

    #[test]
    fn passphrases_wrong_keys_tampering_and_modes_are_refused() {
        let dir = temp("pass");
        let path = dir.join("v.vault");
        let material = KeyMaterial::Passphrase(Zeroizing::new(b"correct horse".to_vec()));
        let mut vault = Vault::create(&path, &material, FAST).unwrap();
        vault.add("main", &entry(b"s")).unwrap();
        let wrong = KeyMaterial::Passphrase(Zeroizing::new(b"wrong".to_vec()));
        assert!(matches!(
            Vault::open(&path, &wrong),
            Err(VaultError::WrongKey)
        ));
        let raw = KeyMaterial::Raw(Zeroizing::new([7u8; 32]));
        assert!(matches!(Vault::open(&path, &raw), Err(VaultError::Key(_))));

        // Moving a ciphertext under another name fails its associated data.
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"name\": \"main\"", "\"name\": \"other\"");
        write_atomically(&path, text.as_bytes()).unwrap();
        let moved = Vault::open(&path, &material).unwrap();
        assert!(matches!(moved.entry("other"), Err(VaultError::Damaged(_))));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Vault::open(&path, &material).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(matches!(
            Vault::create(&path, &material, FAST),
            Err(VaultError::AlreadyInitialised(_))
        ));
    }

    #[test]
    fn invalid_key_material_is_refused_at_add() {
        let dir = temp("material");
        let material = KeyMaterial::Raw(Zeroizing::new([1u8; 32]));
        let mut vault = Vault::create(&dir.join("v.vault"), &material, FAST).unwrap();
        let mut bad = entry(b"not a pem");
        bad.kind = KeyKind::Ed25519;
        assert!(matches!(
            vault.add("ed", &bad),
            Err(VaultError::Material(_))
        ));
        assert!(vault.names().is_empty());
    }

    #[test]
    fn hex_key_files_are_raw_keys() {
        let bytes = Zeroizing::new(format!("{}\n", "ab".repeat(32)).into_bytes());
        assert!(matches!(classify(bytes), KeyMaterial::Raw(k) if k[0] == 0xab));
        let bytes = Zeroizing::new(b"a passphrase\n".to_vec());
        assert!(matches!(classify(bytes), KeyMaterial::Passphrase(p) if &p[..] == b"a passphrase"));
    }
}
