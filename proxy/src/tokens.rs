//! Bot tokens on the operator's side: minting them, and recording their digests in the
//! configuration file that defines the bot, preserving its comments and layout.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use keyward_policy::{TOKEN_PREFIX, TokenDigest};
use ring::rand::{SecureRandom, SystemRandom};
use toml_edit::{Array, DocumentMut, Item, Value};
use zeroize::Zeroizing;

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The OS random generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not TOML that toml_edit can edit.
    #[error("{path}: cannot edit: {message}")]
    Edit {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// No digest matched a revoke request.
    #[error("bot {bot} has no active token matching {prefix}")]
    NoMatch {
        /// Bot name.
        bot: String,
        /// The digest prefix given.
        prefix: String,
    },
}

/// A freshly minted token: `kw_<bot>_<43 base64url characters>` from 32 OS-random bytes.
pub fn mint(bot: &str) -> Result<Zeroizing<String>, TokenError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(&mut *bytes)
        .map_err(|_| TokenError::Random)?;
    let secret = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*bytes));
    Ok(Zeroizing::new(format!(
        "{TOKEN_PREFIX}{bot}_{}",
        secret.as_str()
    )))
}

/// Appends `digest` to `[bots.BOT].tokens` in `file` and optionally sets `expires`.
pub fn add_digest(
    file: &Path,
    bot: &str,
    digest: &TokenDigest,
    expires: Option<&str>,
) -> Result<String, TokenError> {
    add_entry(file, bot, &digest.to_string(), expires)
}

/// Appends an entry (a digest, or a coinbase bot's `p256:` public key) to
/// `[bots.BOT].tokens` in `file` and optionally sets `expires`.
pub fn add_entry(
    file: &Path,
    bot: &str,
    entry: &str,
    expires: Option<&str>,
) -> Result<String, TokenError> {
    edit(file, |doc| {
        let table = bot_table(doc, bot)?;
        let tokens = table
            .entry("tokens")
            .or_insert(Item::Value(Value::Array(Array::new())));
        let array = tokens.as_array_mut().ok_or("`tokens` is not an array")?;
        array.push(entry);
        if let Some(expires) = expires {
            table.insert("expires", toml_edit::value(expires));
        }
        Ok(())
    })
}

/// Moves active digests of `[bots.BOT]` whose text starts with `prefix` (all of them
/// when `prefix` is `None`) from `tokens` to `revoked_tokens`. Returns how many moved.
pub fn revoke(file: &Path, bot: &str, prefix: Option<&str>) -> Result<(usize, String), TokenError> {
    let mut moved = 0;
    let original = edit(file, |doc| {
        let table = bot_table(doc, bot)?;
        let active: Vec<String> = table
            .get("tokens")
            .and_then(Item::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let (revoking, keeping): (Vec<String>, Vec<String>) = active
            .into_iter()
            .partition(|d| prefix.is_none_or(|p| matches(d, bot, p)));
        moved = revoking.len();
        if moved == 0 {
            return Ok(());
        }
        let tokens = table
            .get_mut("tokens")
            .and_then(Item::as_array_mut)
            .ok_or("`tokens` is not an array")?;
        tokens.retain(|v| v.as_str().is_some_and(|d| keeping.iter().any(|k| k == d)));
        let revoked = table
            .entry("revoked_tokens")
            .or_insert(Item::Value(Value::Array(Array::new())))
            .as_array_mut()
            .ok_or("`revoked_tokens` is not an array")?;
        for digest in revoking {
            revoked.push(digest);
        }
        Ok(())
    })?;
    if moved == 0 {
        return Err(TokenError::NoMatch {
            bot: bot.to_owned(),
            prefix: prefix.unwrap_or("(any)").to_owned(),
        });
    }
    Ok((moved, original))
}

/// True if the entry `d` is the one `p` names: a digest prefix, or for a `p256:` key
/// (whose base64 starts alike for every key) its key id prefix or exact key name.
fn matches(d: &str, bot: &str, p: &str) -> bool {
    if d.starts_with(keyward_policy::P256_KEY_PREFIX) {
        return crate::botjwt::parse_public_key(d)
            .is_some_and(|key| key.id().starts_with(p) || key.key_name(bot) == p || d == p);
    }
    d.starts_with(p) || d.trim_start_matches("sha256:").starts_with(p)
}

/// Restores a file's previous text (used when an edit produced an invalid config).
pub fn restore(file: &Path, text: &str) -> Result<(), TokenError> {
    write_atomically(file, text)
}

fn bot_table<'d>(
    doc: &'d mut DocumentMut,
    bot: &str,
) -> Result<&'d mut toml_edit::Table, &'static str> {
    doc.get_mut("bots")
        .and_then(Item::as_table_like_mut)
        .and_then(|bots| bots.get_mut(bot))
        .and_then(Item::as_table_mut)
        .ok_or("the bot's table was not found in the file that defines it")
}

/// Applies `change` to the parsed file and writes it back; returns the original text.
fn edit(
    file: &Path,
    change: impl FnOnce(&mut DocumentMut) -> Result<(), &'static str>,
) -> Result<String, TokenError> {
    let display = file.display().to_string();
    let original = fs::read_to_string(file).map_err(|source| TokenError::Io {
        path: display.clone(),
        source,
    })?;
    let mut doc: DocumentMut =
        original
            .parse()
            .map_err(|e: toml_edit::TomlError| TokenError::Edit {
                path: display.clone(),
                message: e.message().to_owned(),
            })?;
    change(&mut doc).map_err(|message| TokenError::Edit {
        path: display.clone(),
        message: message.to_owned(),
    })?;
    write_atomically(file, &doc.to_string())?;
    Ok(original)
}

/// Writes via a temporary file in the same directory, fsyncs it, keeps the original's
/// permissions, renames it over the original and fsyncs the directory, so a crash
/// leaves either the old file or the new one, never half of each.
pub fn write_atomically(file: &Path, text: &str) -> Result<(), TokenError> {
    let io = |source| TokenError::Io {
        path: file.display().to_string(),
        source,
    };
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.keyward-tmp"));
    let permissions = fs::metadata(file).map(|m| m.permissions()).ok();
    let mut out = fs::File::create(&temp).map_err(io)?;
    out.write_all(text.as_bytes()).map_err(io)?;
    if let Some(permissions) = permissions {
        out.set_permissions(permissions).map_err(io)?;
    }
    out.sync_all().map_err(io)?;
    drop(out);
    fs::rename(&temp, file).map_err(io)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_the_documented_shape() {
        let token = mint("grid").unwrap();
        assert_eq!(keyward_policy::bot_name_of(&token), Some("grid"));
        assert_eq!(token.len(), "kw_grid_".len() + 43);
        assert_ne!(*mint("grid").unwrap(), *token);
    }
}
