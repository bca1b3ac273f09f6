//! The `config` target: TOML text into the loader `keyward check`, start-up and reload
//! use ([`Config::load_from`], here over in-memory files so an `include` pattern never
//! walks the real disk).
//!
//! Input: the main file's text; each line `#@include` starts the text of another file,
//! `bots.d/<n>.toml` beside it (what `include = ["bots.d/*.toml"]` picks up).
//!
//! Checked: no panic; a refused load has at least one error, each positioned inside its
//! file; the same text gives the same diagnostics twice; an accepted configuration has
//! only warnings, every bot on a declared account, and every grant a catalogued endpoint
//! of that account's venue and never a floor class (money movement, key management).

use std::path::{Path, PathBuf};

use keyward::config::{Config, Diagnostics, InMemory, Severity};

/// Where the main file seems to be.
const MAIN: &str = "/keyward/keyward.toml";
/// What separates files in the input.
pub const FILE_SEPARATOR: &str = "\n#@include\n";

/// The in-memory files an input stands for.
pub fn files_of(text: &str) -> (InMemory, Vec<(PathBuf, String)>) {
    let mut files = InMemory::new();
    let mut listed = Vec::new();
    for (index, part) in text.split(FILE_SEPARATOR).enumerate() {
        let path = if index == 0 {
            PathBuf::from(MAIN)
        } else {
            PathBuf::from(format!("/keyward/bots.d/{}.toml", index - 1))
        };
        files.insert(path.clone(), part);
        listed.push((path, part.to_owned()));
    }
    (files, listed)
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (files, listed) = files_of(text);
    let now = keyward_tests::fixed_now();
    match Config::load_from(&files, Path::new(MAIN), now) {
        Ok(config) => check_accepted(&config),
        Err(diagnostics) => {
            check_refused(&diagnostics, &listed);
            let again = Config::load_from(&files, Path::new(MAIN), now)
                .err()
                .expect("the same text loads the second time");
            assert_eq!(
                diagnostics.to_string(),
                again.to_string(),
                "the same text gives other diagnostics"
            );
        }
    }
}

fn check_refused(diagnostics: &Diagnostics, files: &[(PathBuf, String)]) {
    assert!(diagnostics.has_errors(), "a refused load without an error");
    for item in diagnostics.items() {
        let Some((_, text)) = files.iter().find(|(path, _)| *path == item.file) else {
            continue;
        };
        let lines = text.split('\n').count();
        assert!(
            (1..=lines).contains(&item.line) && item.column >= 1,
            "diagnostic outside its file: {item}"
        );
        let line = text.split('\n').nth(item.line - 1).unwrap_or_default();
        assert!(
            item.column <= line.chars().count() + 1,
            "diagnostic column past the end of its line: {item}"
        );
    }
}

fn check_accepted(config: &Config) {
    assert!(
        config
            .warnings
            .iter()
            .all(|w| w.severity == Severity::Warning),
        "an accepted configuration carries an error"
    );
    for bot in config.policy.bots() {
        let account = config
            .account_of(bot)
            .unwrap_or_else(|| panic!("bot {} on an undeclared account", bot.name()));
        let catalogue = account.venue.adapter().catalogue();
        for grant in bot.grants() {
            assert!(
                !grant.endpoint.class.is_floor(),
                "bot {} granted {} ({:?})",
                bot.name(),
                grant.endpoint.key,
                grant.endpoint.class
            );
            let spec = catalogue.by_key(&grant.endpoint.key).unwrap_or_else(|| {
                panic!(
                    "bot {} granted {}, not in the catalogue",
                    bot.name(),
                    grant.endpoint.key
                )
            });
            assert_eq!(
                spec.class, grant.endpoint.class,
                "a grant with the wrong class"
            );
        }
    }
}
