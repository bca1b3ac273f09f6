//! `keyward vault init|add|list|remove`: exchange secrets at rest.

use std::path::Path;
use std::time::SystemTime;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Failure, Io, load};
use crate::config::KeySource;
use crate::secret::KeyKind;
use crate::vault::{self, Argon2Params, Entry, KeyMaterial, Vault};

/// `vault init`: an empty vault keyed by [vault].key.
pub(crate) fn init(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    argon2: Argon2Params,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    if let KeySource::File(key_file) = &config.vault.key
        && !key_file.exists()
    {
        vault::generate_key_file(key_file).map_err(|e| Failure::runtime(e.to_string()))?;
        io.note(format_args!(
            "generated a random 32-byte key file at {} (mode 0600)",
            key_file.display()
        ));
    }
    let material = match &config.vault.key {
        KeySource::Prompt => {
            let first = prompt_hidden("new vault passphrase: ")?;
            let second = prompt_hidden("repeat the passphrase: ")?;
            if first != second {
                return Err(Failure::runtime(
                    "the passphrases differ; nothing was created",
                ));
            }
            if first.len() < 12 {
                return Err(Failure::runtime(
                    "use a passphrase of at least 12 characters",
                ));
            }
            KeyMaterial::Passphrase(Zeroizing::new(first.as_bytes().to_vec()))
        }
        source => vault::read_key(source).map_err(|e| Failure::runtime(e.to_string()))?,
    };
    Vault::create(&config.vault.file, &material, argon2)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    io.out(format_args!(
        "created an empty vault at {}",
        config.vault.file.display()
    ));
    Ok(())
}

/// The JSON `vault add` reads from stdin.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    api_key: String,
    api_secret: Option<SecretText>,
    passphrase: Option<SecretText>,
}

/// Secret text that is zeroized when dropped.
struct SecretText(Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Self(Zeroizing::new(s)))
    }
}

/// `vault add NAME`.
pub(crate) fn add(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    name: &str,
    key_type: &str,
    venue: Option<String>,
    secret_file: Option<&Path>,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    let kind = KeyKind::from_name(key_type).ok_or_else(|| {
        Failure::runtime(format!(
            "--key-type must be hmac, ed25519 or rsa, not `{key_type}`"
        ))
    })?;
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid_name {
        return Err(Failure::runtime(
            "entry names are 1 to 64 of a-z, 0-9, '-' and '_'",
        ));
    }
    let (api_key, secret, passphrase) = if io.interactive {
        let api_key = prompt_visible("API key: ")?;
        let secret = match secret_file {
            Some(_) => None,
            None => Some(prompt_hidden("API secret: ")?),
        };
        (api_key, secret, None)
    } else {
        let mut text = Zeroizing::new(String::new());
        io.input
            .read_to_string(&mut text)
            .map_err(|e| Failure::runtime(format!("cannot read stdin: {e}")))?;
        let parsed: NewEntry = serde_json::from_str(&text).map_err(|_| {
            Failure::runtime("stdin must be JSON {\"api_key\": \"...\", \"api_secret\": \"...\"} (\"passphrase\" optional)")
        })?;
        (
            parsed.api_key,
            parsed.api_secret.map(|s| s.0),
            parsed.passphrase.map(|s| s.0),
        )
    };
    let secret: Zeroizing<Vec<u8>> = match (secret_file, secret) {
        (Some(file), _) => {
            vault::check_permissions(file).map_err(|e| Failure::runtime(e.to_string()))?;
            Zeroizing::new(
                std::fs::read(file)
                    .map_err(|e| Failure::runtime(format!("{}: {e}", file.display())))?,
            )
        }
        (None, Some(secret)) => Zeroizing::new(secret.as_bytes().to_vec()),
        (None, None) => {
            return Err(Failure::runtime(
                "no api_secret given (or use --secret-file)",
            ));
        }
    };
    let material =
        vault::read_key(&config.vault.key).map_err(|e| Failure::runtime(e.to_string()))?;
    let mut opened =
        Vault::open(&config.vault.file, &material).map_err(|e| Failure::runtime(e.to_string()))?;
    let entry = Entry {
        api_key: api_key.trim().to_owned(),
        kind,
        secret,
        passphrase: passphrase.map(|p| Zeroizing::new(p.as_bytes().to_vec())),
        venue,
        created: now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    opened
        .add(name, &entry)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    io.out(format_args!(
        "added `{name}` ({}, API key fingerprint {}) to {}",
        kind.name(),
        crate::secret::fingerprint(&entry.api_key),
        config.vault.file.display()
    ));
    Ok(())
}

/// `vault list`.
pub(crate) fn list(io: &mut Io<'_>, path: &Path, now: SystemTime) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    let material =
        vault::read_key(&config.vault.key).map_err(|e| Failure::runtime(e.to_string()))?;
    let opened =
        Vault::open(&config.vault.file, &material).map_err(|e| Failure::runtime(e.to_string()))?;
    let entries = opened.list().map_err(|e| Failure::runtime(e.to_string()))?;
    if entries.is_empty() {
        io.out("the vault is empty; add a key with `keyward vault add NAME`");
    }
    for entry in entries {
        let created =
            time::OffsetDateTime::from_unix_timestamp(i64::try_from(entry.created).unwrap_or(0))
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
        io.out(format_args!(
            "{:<20} venue {:<14} type {:<8} created {created}  key fp:{}",
            entry.name,
            entry.venue.as_deref().unwrap_or("-"),
            entry.kind,
            entry.fingerprint
        ));
    }
    Ok(())
}

/// `vault remove NAME`.
pub(crate) fn remove(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    name: &str,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    let material =
        vault::read_key(&config.vault.key).map_err(|e| Failure::runtime(e.to_string()))?;
    let mut opened =
        Vault::open(&config.vault.file, &material).map_err(|e| Failure::runtime(e.to_string()))?;
    opened
        .remove(name)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    io.out(format_args!(
        "removed `{name}` from {}",
        config.vault.file.display()
    ));
    Ok(())
}

fn prompt_hidden(prompt: &str) -> Result<Zeroizing<String>, Failure> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|e| Failure::runtime(format!("cannot read from the terminal: {e}")))
}

fn prompt_visible(prompt: &str) -> Result<String, Failure> {
    eprint_prompt(prompt);
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::runtime(format!("cannot read from the terminal: {e}")))?;
    Ok(line.trim().to_owned())
}

fn eprint_prompt(prompt: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr();
    let _ = err.write_all(prompt.as_bytes());
    let _ = err.flush();
}
