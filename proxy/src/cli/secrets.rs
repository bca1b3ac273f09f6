//! `keyward vault init|add|rotate|list|remove|passwd`: exchange secrets at rest.
//! Secrets arrive as JSON on stdin or at prompts that do not echo, go straight into
//! zeroizing buffers, and leave only as fingerprints.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Failure, Io, load};
use crate::config::KeySource;
use crate::credential::{KeyKind, fingerprint};
use crate::vault::{self, Argon2Params, Entry, KeyMaterial, Vault};

/// Shortest passphrase `init` and `passwd` accept, from any source.
const MIN_PASSPHRASE_CHARS: usize = 12;

fn fail(error: impl std::fmt::Display) -> Failure {
    Failure::runtime(error.to_string())
}

/// The configuration and its vault, opened with [vault].key.
fn open_vault(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
) -> Result<(crate::config::Config, Vault), Failure> {
    let config = load(io, path, now)?;
    let material = vault::read_key(&config.vault.key).map_err(fail)?;
    let opened = Vault::open(&config.vault.file, &material).map_err(fail)?;
    Ok((config, opened))
}

/// `vault init`: an empty vault keyed by [vault].key.
pub(crate) fn init(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    argon2: Argon2Params,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    if config.vault.file.exists() {
        return Err(fail(vault::VaultError::AlreadyInitialised(
            config.vault.file.display().to_string(),
        )));
    }
    if let KeySource::File(key_file) = &config.vault.key
        && !key_file.exists()
    {
        vault::generate_key_file(key_file).map_err(fail)?;
        io.note(format_args!(
            "generated a random 32-byte key file at {} (mode 0600); keep a copy offline",
            key_file.display()
        ));
    }
    let material = match &config.vault.key {
        KeySource::Prompt => new_passphrase()?,
        source => strong_enough(vault::read_key(source).map_err(fail)?)?,
    };
    Vault::create(&config.vault.file, &material, argon2).map_err(fail)?;
    io.out(format_args!(
        "created an empty vault at {}",
        config.vault.file.display()
    ));
    Ok(())
}

/// The JSON `vault add` and `vault rotate` read from stdin.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntryJson {
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

/// The options of `vault add` and `vault rotate`.
#[derive(Debug)]
pub(crate) struct NewKey<'a> {
    pub(crate) key_type: Option<&'a str>,
    pub(crate) venue: Option<String>,
    pub(crate) secret_file: Option<&'a Path>,
}

/// `vault add NAME`.
pub(crate) fn add(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    name: &str,
    options: &NewKey<'_>,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    check_entry_name(name)?;
    let kind = key_kind(options.key_type.unwrap_or("hmac"))?;
    let material = vault::read_key(&config.vault.key).map_err(fail)?;
    let mut opened = Vault::open(&config.vault.file, &material).map_err(fail)?;
    if opened.names().contains(&name) {
        return Err(fail(vault::VaultError::Exists(name.to_owned())));
    }
    let entry = read_entry(io, now, kind, options.venue.clone(), options.secret_file)?;
    opened.add(name, &entry).map_err(fail)?;
    io.out(format_args!(
        "added `{name}` ({}, API key fp:{}) to {}",
        kind.name(),
        fingerprint(&entry.api_key),
        config.vault.file.display()
    ));
    Ok(())
}

/// `vault rotate NAME`: replace an entry's key.
pub(crate) fn rotate(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    name: &str,
    options: &NewKey<'_>,
) -> Result<(), Failure> {
    let (config, mut opened) = open_vault(io, path, now)?;
    let current = opened.entry(name).map_err(fail)?;
    let kind = match options.key_type {
        Some(name) => key_kind(name)?,
        None => current.kind,
    };
    let venue = options.venue.clone().or_else(|| current.venue.clone());
    drop(current);
    let entry = read_entry(io, now, kind, venue, options.secret_file)?;
    let old = opened.rotate(name, &entry).map_err(fail)?;
    io.out(format_args!(
        "rotated `{name}`: API key fp:{} -> fp:{} ({}) in {}",
        fingerprint(&old.api_key),
        fingerprint(&entry.api_key),
        kind.name(),
        config.vault.file.display()
    ));
    io.note(
        "a running keyward keeps signing with the old key until it reloads: send it SIGHUP \
         or POST /reload on its admin listener, then revoke the old key at the exchange",
    );
    Ok(())
}

fn check_entry_name(name: &str) -> Result<(), Failure> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Failure::runtime(
            "entry names are 1 to 64 of a-z, 0-9, '-' and '_'",
        ))
    }
}

fn key_kind(name: &str) -> Result<KeyKind, Failure> {
    KeyKind::from_name(name).ok_or_else(|| {
        Failure::runtime(format!(
            "--key-type must be one of {}, not `{name}`",
            KeyKind::ALL.map(KeyKind::name).join(", ")
        ))
    })
}

/// The new entry, from stdin JSON or from prompts on a terminal, and the secret from
/// `--secret-file` when given.
fn read_entry(
    io: &mut Io<'_>,
    now: SystemTime,
    kind: KeyKind,
    venue: Option<String>,
    secret_file: Option<&Path>,
) -> Result<Entry, Failure> {
    let (api_key, secret, passphrase) = if io.interactive {
        let api_key = prompt_visible("API key: ")?;
        let secret = match secret_file {
            Some(_) => None,
            None => Some(prompt_hidden("API secret: ")?),
        };
        let passphrase = prompt_hidden("API passphrase (OKX, KuCoin; empty if none): ")?;
        let passphrase = (!passphrase.is_empty()).then_some(passphrase);
        (api_key, secret, passphrase)
    } else {
        let mut text = Zeroizing::new(String::new());
        io.input
            .read_to_string(&mut text)
            .map_err(|e| Failure::runtime(format!("cannot read stdin: {e}")))?;
        let parsed: NewEntryJson = serde_json::from_str(&text).map_err(|_| {
            Failure::runtime(
                "stdin must be JSON {\"api_key\": \"...\", \"api_secret\": \"...\"} \
                 (\"passphrase\" optional; no other fields)",
            )
        })?;
        (
            parsed.api_key,
            parsed.api_secret.map(|s| s.0),
            parsed.passphrase.map(|s| s.0),
        )
    };
    let secret: Zeroizing<Vec<u8>> = match (secret_file, secret) {
        (Some(_), Some(_)) => {
            return Err(Failure::runtime(
                "give the secret either in api_secret or with --secret-file, not both",
            ));
        }
        (Some(file), None) => {
            vault::check_permissions(file).map_err(fail)?;
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
    Ok(Entry {
        api_key: api_key.trim().to_owned(),
        kind,
        secret,
        passphrase: passphrase.map(|p| Zeroizing::new(p.as_bytes().to_vec())),
        venue,
        created: now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// `vault list`.
pub(crate) fn list(io: &mut Io<'_>, path: &Path, now: SystemTime) -> Result<(), Failure> {
    let (_, opened) = open_vault(io, path, now)?;
    let entries = opened.list().map_err(fail)?;
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
            "{:<20} venue {:<14} type {:<8} created {created}  key fp:{}{}",
            entry.name,
            entry.venue.as_deref().unwrap_or("-"),
            entry.kind,
            entry.fingerprint,
            if entry.passphrase {
                "  +passphrase"
            } else {
                ""
            }
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
    let (config, mut opened) = open_vault(io, path, now)?;
    opened.remove(name).map_err(fail)?;
    io.out(format_args!(
        "removed `{name}` from {}",
        config.vault.file.display()
    ));
    Ok(())
}

/// `vault passwd`: re-key the vault.
pub(crate) fn passwd(
    io: &mut Io<'_>,
    path: &Path,
    now: SystemTime,
    new_key: Option<&str>,
    argon2: Argon2Params,
) -> Result<(), Failure> {
    let config = load(io, path, now)?;
    let target = match new_key {
        Some(text) => parse_key_source(text)?,
        None => match &config.vault.key {
            KeySource::Env(_) => {
                return Err(Failure::runtime(
                    "the vault key comes from an environment variable; say where the new one \
                     comes from with --new-key prompt, --new-key file:PATH or --new-key env:VARIABLE",
                ));
            }
            other => other.clone(),
        },
    };
    let current = vault::read_key(&config.vault.key).map_err(fail)?;
    let mut opened = Vault::open(&config.vault.file, &current).map_err(fail)?;
    drop(current);
    let in_place = matches!((&target, &config.vault.key), (KeySource::File(new), KeySource::File(old)) if new == old);
    match (&target, in_place) {
        (KeySource::Prompt, _) => {
            let material = new_passphrase()?;
            opened.rekey(&material, argon2).map_err(fail)?;
            io.out(format_args!(
                "re-keyed {} under the new passphrase",
                config.vault.file.display()
            ));
        }
        (KeySource::File(key_file), true) => {
            // The old key stays valid until the vault is rewritten under the new one,
            // so a failure at any step leaves a vault that one of the two files opens.
            let staged = with_suffix(key_file, ".new");
            vault::generate_key_file(&staged).map_err(|e| {
                Failure::runtime(format!(
                    "{e} (if a previous passwd was interrupted, the vault is keyed by whichever \
                     of {} and {} opens it)",
                    key_file.display(),
                    staged.display()
                ))
            })?;
            let material = vault::read_key(&KeySource::File(staged.clone())).map_err(fail)?;
            if let Err(error) = opened.rekey(&material, argon2) {
                let _ = std::fs::remove_file(&staged);
                return Err(fail(error));
            }
            std::fs::rename(&staged, key_file).map_err(|e| {
                Failure::runtime(format!(
                    "the vault is now keyed by {}, but it could not be moved to {}: {e}; move it by hand",
                    staged.display(),
                    key_file.display()
                ))
            })?;
            io.out(format_args!(
                "re-keyed {} under a new random key in {}",
                config.vault.file.display(),
                key_file.display()
            ));
        }
        (KeySource::File(key_file), false) => {
            if !key_file.exists() {
                vault::generate_key_file(key_file).map_err(fail)?;
                io.note(format_args!(
                    "generated a random 32-byte key file at {}",
                    key_file.display()
                ));
            }
            let material = vault::read_key(&target).map_err(fail)?;
            opened.rekey(&material, argon2).map_err(fail)?;
            io.out(format_args!(
                "re-keyed {} under {}; set [vault].key = \"file:{}\" in the configuration",
                config.vault.file.display(),
                key_file.display(),
                key_file.display()
            ));
        }
        (KeySource::Env(variable), _) => {
            let material = strong_enough(vault::read_key(&target).map_err(fail)?)?;
            opened.rekey(&material, argon2).map_err(fail)?;
            io.out(format_args!(
                "re-keyed {} under the key in ${variable}; set [vault].key = \"env:{variable}\" \
                 in the configuration if it changed",
                config.vault.file.display()
            ));
        }
    }
    io.note(
        "a running keyward whose key came from a prompt or an environment variable must be \
         restarted to unlock the re-keyed vault; one reading a key file picks it up on reload",
    );
    Ok(())
}

fn parse_key_source(text: &str) -> Result<KeySource, Failure> {
    if text == "prompt" {
        return Ok(KeySource::Prompt);
    }
    if let Some(file) = text.strip_prefix("file:").filter(|f| !f.is_empty()) {
        return Ok(KeySource::File(PathBuf::from(file)));
    }
    if let Some(variable) = text
        .strip_prefix("env:")
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Ok(KeySource::Env(variable.to_owned()));
    }
    Err(Failure::runtime(format!(
        "--new-key must be \"prompt\", \"file:PATH\" or \"env:VARIABLE\", not `{text}`"
    )))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn new_passphrase() -> Result<KeyMaterial, Failure> {
    let first = prompt_hidden("new vault passphrase: ")?;
    let second = prompt_hidden("repeat the passphrase: ")?;
    if first != second {
        return Err(Failure::runtime(
            "the passphrases differ; nothing was changed",
        ));
    }
    strong_enough(KeyMaterial::Passphrase(Zeroizing::new(
        first.as_bytes().to_vec(),
    )))
}

/// The one rule for a new vault key, wherever it comes from (a prompt, an environment
/// variable, a file): a passphrase has at least [`MIN_PASSPHRASE_CHARS`] characters; a
/// raw 32-byte key is strong by construction.
fn strong_enough(material: KeyMaterial) -> Result<KeyMaterial, Failure> {
    if let KeyMaterial::Passphrase(bytes) = &material {
        // Counted in place: a lossy conversion could copy the secret out of its
        // zeroizing buffer.
        let chars = std::str::from_utf8(bytes).map_or(bytes.len(), |text| {
            text.trim_end_matches('\n').chars().count()
        });
        if chars < MIN_PASSPHRASE_CHARS {
            return Err(Failure::runtime(format!(
                "use a passphrase of at least {MIN_PASSPHRASE_CHARS} characters (this one has \
                 {chars}); nothing was changed"
            )));
        }
    }
    Ok(material)
}

fn prompt_hidden(prompt: &str) -> Result<Zeroizing<String>, Failure> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|e| Failure::runtime(format!("cannot read from the terminal: {e}")))
}

fn prompt_visible(prompt: &str) -> Result<String, Failure> {
    use std::io::Write as _;
    let mut err = std::io::stderr();
    let _ = err.write_all(prompt.as_bytes());
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::runtime(format!("cannot read from the terminal: {e}")))?;
    Ok(line.trim().to_owned())
}
