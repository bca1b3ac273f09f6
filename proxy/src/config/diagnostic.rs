//! Configuration problems with their place: file, line, column, and one sentence; and
//! the helpers that find a mistake's place in a table and word it (serde's errors
//! rephrased, "did you mean" suggestions).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::DeTable;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The configuration is refused.
    Error,
    /// Loaded, but probably not what the operator meant.
    Warning,
}

/// One problem, positioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file it is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and how to mend it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {label}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// A configuration file's text, for turning byte spans into lines and columns.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path as the operator gave it (or as the include resolved it).
    pub path: PathBuf,
    /// Full text.
    pub text: Arc<str>,
    /// Byte offset of the start of each line, found once: every bot records where its
    /// keys are, and counting lines from the top of the file for each of them made
    /// loading 10,000 bots take minutes.
    line_starts: Arc<[usize]>,
}

/// Where a setting is written: checks made after loading (the vault's entries, its
/// key) report their problems at the setting that names the thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Place {
    /// An error at this place.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

impl Source {
    /// Where a span of this file is.
    pub fn place(&self, span: &Range<usize>) -> Place {
        let (line, column) = self.position(span.start);
        Place {
            file: self.path.clone(),
            line,
            column,
        }
    }

    /// A file's text and where it came from.
    pub fn new(path: PathBuf, text: Arc<str>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Self {
            path,
            text,
            line_starts,
        }
    }

    /// 1-based (line, column) of a byte offset; columns count characters.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        // An offset inside a character counts as that character's start.
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // Lines that start at or before the offset: at least the first, at 0.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }
}

/// Every problem found in one load, in the order found.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Records an error at a span of `source`.
    pub fn error(&mut self, source: &Source, span: Range<usize>, message: impl Into<String>) {
        self.push(Severity::Error, source, span, message.into());
    }

    /// Records a warning at a span of `source`.
    pub fn warning(&mut self, source: &Source, span: Range<usize>, message: impl Into<String>) {
        self.push(Severity::Warning, source, span, message.into());
    }

    /// Records an error about a file as a whole (line 1, column 1).
    pub fn file_error(&mut self, path: &Path, message: impl Into<String>) {
        self.items.push(Diagnostic {
            severity: Severity::Error,
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: message.into(),
        });
    }

    fn push(&mut self, severity: Severity, source: &Source, span: Range<usize>, message: String) {
        let (line, column) = source.position(span.start);
        let duplicate = self.items.iter().any(|d| {
            d.file == source.path && d.line == line && d.column == column && d.message == message
        });
        if !duplicate {
            self.items.push(Diagnostic {
                severity,
                file: source.path.clone(),
                line,
                column,
                message,
            });
        }
    }

    /// Orders problems by file (in `files` order), then line and column.
    pub fn sort(&mut self, files: &[PathBuf]) {
        let rank = |file: &Path| files.iter().position(|f| f == file).unwrap_or(usize::MAX);
        self.items
            .sort_by_key(|d| (rank(&d.file), d.line, d.column));
    }

    /// True if any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Every problem.
    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// Adds a problem found after loading, already placed.
    pub fn add(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// Only the warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            writeln!(f, "{item}")?;
        }
        Ok(())
    }
}

pub(super) fn contains(outer: Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

pub(super) fn remove_key(table: &mut DeTable<'_>, key: &str) {
    let found = table.keys().find(|k| k.get_ref() == key).cloned();
    if let Some(found) = found {
        table.remove(&found);
    }
}

pub(super) fn key_span(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(k, _)| k.span())
}

pub(super) fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    backticked_all(rest).into_iter().next()
}

pub(super) fn backticked_all(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// What a key's value looks like, appended to type errors.
pub(super) fn key_hint(key: &str) -> &'static str {
    match key {
        "rate" | "order_rate" => "; write it as a string such as \"10/s\"",
        "max_order_notional" => "; write it as a string such as \"500\"",
        "tokens" | "revoked_tokens" => "; write a list of \"sha256:...\" digests",
        "allow" => "; write a list of classes such as [\"read\", \"trade\"]",
        "endpoints" => "; write a list such as [\"GET /api/v3/myTrades\"]",
        "symbols" => "; write a list such as [\"BTCUSDT\"]",
        "order_types" => "; write a list such as [\"LIMIT\"]",
        "expires" => "; write a time such as 2027-02-19T00:00:00Z",
        "unsafe_listen" => "; write true or false",
        _ => "",
    }
}

/// Rephrases serde's type errors ("invalid type: integer `5`, expected a string").
pub(super) fn describe_serde(message: &str) -> String {
    let message = message.trim_end();
    match message.strip_prefix("invalid type: ") {
        Some(rest) => match rest.split_once(", expected ") {
            Some((found, expected)) => format!("expected {expected}, found {found}"),
            None => rest.to_owned(),
        },
        None => message.to_owned(),
    }
}

/// "; did you mean `x`?" when a known word is within a small edit distance.
pub(super) fn suggestion(word: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map_or_else(String::new, |(_, k)| format!(" (did you mean `{k}`?)"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let source = Source::new("k.toml".into(), Arc::from("a = 1\nbé = \"x\"\n"));
        assert_eq!(source.position(0), (1, 1));
        assert_eq!(source.position(6), (2, 1));
        assert_eq!(source.position(12), (2, 6));
        assert_eq!(source.position(15), (2, 9));
        assert_eq!(source.position(16), (3, 1));
        assert_eq!(source.position(99), (3, 1));
        // Inside `é`: the position of `é`.
        assert_eq!(source.position(8), (2, 2));
        assert_eq!(source.position(7), (2, 2));
    }
}
