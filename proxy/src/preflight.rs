//! What `check` verifies beyond the configuration itself, and `serve` before it
//! starts: that the vault exists, opens with its key, and holds an entry fit for its
//! venue for every account's `secret`. Each problem is placed at the setting that names
//! the missing thing (`[vault].file`, `[vault].key`, an account's `secret =`) and says
//! what to run, so that nothing `check` passes fails at start.

use std::path::Path;

use crate::config::{Account, Config, Diagnostic, KeySource};
use crate::vault::{self, Vault, VaultError};

/// Why the vault was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Its key is a passphrase typed at a prompt, and this run may not ask for it.
    NeedsPrompt,
}

/// Every problem with the vault the configuration names, or why it was not looked at.
/// `may_prompt` allows asking for a passphrase at the terminal (`check --vault`).
pub fn vault_problems(
    config: &Config,
    config_path: &Path,
    may_prompt: bool,
) -> Result<Vec<Diagnostic>, Skipped> {
    let settings = &config.vault;
    if settings.key == KeySource::Prompt && !may_prompt {
        return Err(Skipped::NeedsPrompt);
    }
    let init = format!("keyward --config {} vault init", config_path.display());
    if let KeySource::File(key_file) = &settings.key
        && !key_file.exists()
    {
        return Ok(vec![settings.key_at.error(format!(
            "the vault key file {} does not exist; `{init}` creates it with a new vault, or point [vault].key at the key file the vault was made with",
            key_file.display()
        ))]);
    }
    if !settings.file.exists() {
        return Ok(vec![settings.file_at.error(format!(
            "there is no vault at {}; run `{init}`, then `keyward vault add NAME --venue VENUE` for each account",
            settings.file.display()
        ))]);
    }
    let material = match vault::read_key(&settings.key) {
        Ok(material) => material,
        Err(error) => {
            return Ok(vec![
                settings.key_at.error(key_advice(&settings.key, &error)),
            ]);
        }
    };
    let opened = match Vault::open(&settings.file, &material) {
        Ok(opened) => opened,
        Err(error @ VaultError::WrongKey(_)) => {
            return Ok(vec![settings.key_at.error(format!(
                "{error}: this key does not open the vault at {}",
                settings.file.display()
            ))]);
        }
        Err(error) => return Ok(vec![settings.file_at.error(error.to_string())]),
    };
    // The key is not needed once the vault is open.
    drop(material);
    let names = opened.names();
    let problems = config
        .accounts
        .values()
        .filter_map(|account| entry_problem(&opened, &names, account))
        .collect();
    Ok(problems)
}

/// What is wrong with the entry `account.secret` names, if anything.
fn entry_problem(opened: &Vault, names: &[&str], account: &Account) -> Option<Diagnostic> {
    let secret = &account.secret;
    let venue = account.venue;
    let entry = match opened.entry(secret) {
        Ok(entry) => entry,
        Err(VaultError::NoEntry(_)) => {
            let hint = crate::config::suggest(secret, names);
            return Some(account.secret_at.error(format!(
                "the vault has no entry `{secret}`{hint}; add it with `keyward vault add {secret} --venue {venue}` (entries: {})",
                if names.is_empty() { "none yet".to_owned() } else { names.join(", ") }
            )));
        }
        Err(error) => return Some(account.secret_at.error(error.to_string())),
    };
    let fit = entry
        .credential()
        .map_err(VaultError::from)
        .and_then(|credential| {
            venue
                .adapter()
                .check_credential(&credential)
                .map_err(|unfit| VaultError::from(crate::credential::KeyError::from(unfit)))
        });
    fit.err().map(|error| {
        account.secret_at.error(format!(
            "vault entry `{secret}` cannot sign for {venue}: {error}; replace it with `keyward vault rotate {secret}`"
        ))
    })
}

/// A key that cannot be read, in words that say where to put it right.
fn key_advice(source: &KeySource, error: &VaultError) -> String {
    match source {
        KeySource::Env(variable) => format!(
            "{error}; set {variable} in keyward's environment to the vault's key or passphrase"
        ),
        KeySource::File(_) | KeySource::Prompt => error.to_string(),
    }
}
