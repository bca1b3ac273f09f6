//! The documentation's links: every relative link in the Markdown files that make up
//! keyward's documentation (README.md, CONTRIBUTING.md, docs/, fuzz/README.md and any
//! Markdown under deploy/) must name a file that exists and, where it names an anchor,
//! a heading of that file as GitHub renders it. GitHub reports neither: a moved page
//! is a 404 and a renamed heading a link that lands at the top of the page.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The workspace root: the tests package is one of its members.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits inside the workspace")
        .to_path_buf()
}

/// The Markdown files that are documentation. Files under target/ (vendored crates'
/// READMEs) and test fixtures are not: their links are someone else's.
fn documentation(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![
        root.join("README.md"),
        root.join("CONTRIBUTING.md"),
        root.join("fuzz/README.md"),
    ];
    markdown_under(&root.join("docs"), &mut files);
    markdown_under(&root.join("deploy"), &mut files);
    files
}

fn markdown_under(dir: &Path, files: &mut Vec<PathBuf>) {
    // A directory that is missing holds no Markdown, which is no error.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            markdown_under(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "md") {
            files.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Each line of a Markdown text with whether it belongs to a fenced code block (the
/// fences included): headings and links there are examples, not structure.
fn fenced(text: &str) -> Vec<(&str, bool)> {
    let mut open: Option<(char, usize)> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        // Fences inside list items are indented; no prose line starts with three
        // backticks or tildes, so any indentation is taken as a fence.
        let trimmed = line.trim();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        // A backtick fence's info string holds no backtick: "```x```" is a code span.
        let info = trimmed.get(run..).unwrap_or("");
        match (open, marker) {
            (None, Some(m)) if run >= 3 && !(m == '`' && info.contains('`')) => {
                open = Some((m, run));
                lines.push((line, true));
            }
            (Some((m, len)), Some(c)) if c == m && run >= len && run == trimmed.chars().count() => {
                open = None;
                lines.push((line, true));
            }
            (Some(_), _) => lines.push((line, true)),
            (None, _) => lines.push((line, false)),
        }
    }
    lines
}

/// GitHub's anchor for a heading's text: link syntax gives way to the link's text,
/// then lower case, every character but letters, digits, spaces, hyphens and
/// underscores dropped (backticks, brackets, punctuation), each space a hyphen.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(start) = rest.find("](") {
        let Some(end) = rest[start..].find(')') else {
            break;
        };
        text.push_str(&rest[..start]);
        rest = &rest[start + end + 1..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's ATX headings, in order; a repeated heading gets
/// -1, -2, ... as GitHub numbers them.
fn anchors(text: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    for (line, code) in fenced(text) {
        if code {
            continue;
        }
        let Some(text) = heading(line) else {
            continue;
        };
        let base = slug(text);
        let mut anchor = base.clone();
        let mut n = 0;
        while anchors.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        anchors.push(anchor);
    }
    anchors
}

/// The text of an ATX heading (`## Text`, an optional closing run of `#` dropped).
fn heading(line: &str) -> Option<&str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let line = &line[indent..];
    let level = line.len() - line.trim_start_matches('#').len();
    if indent > 3 || !(1..=6).contains(&level) {
        return None;
    }
    let text = &line[level..];
    if !text.is_empty() && !text.starts_with(' ') {
        return None;
    }
    let text = text.trim();
    let closed = text.trim_end_matches('#');
    Some(if closed.is_empty() || closed.ends_with(' ') {
        closed.trim_end()
    } else {
        text
    })
}

/// A link found in a Markdown text: the line its target is on, and the target.
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// Every relative link target outside code: inline links `[text](target)` (images
/// too) and reference definitions `[label]: target`. Web and mail links are left out.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    // Code spans may run over a line break but never past the end of a paragraph, so
    // they are blanked out a paragraph (a run of lines outside fences) at a time.
    let mut paragraph: Vec<&str> = Vec::new();
    let mut first = 1;
    let lines = fenced(text);
    for (index, &(line, code)) in lines.iter().enumerate() {
        if code || line.trim().is_empty() {
            links_in(&paragraph.join("\n"), first, &mut found);
            paragraph.clear();
            first = index + 2;
        } else {
            paragraph.push(line);
        }
    }
    links_in(&paragraph.join("\n"), first, &mut found);
    found.retain(|link| {
        !["http://", "https://", "mailto:"]
            .iter()
            .any(|scheme| link.target.starts_with(scheme))
    });
    found
}

fn links_in(paragraph: &str, first_line: usize, found: &mut Vec<Link>) {
    let text = without_code_spans(paragraph);
    let line_of = |at: usize| first_line + text[..at].matches('\n').count();
    let mut from = 0;
    while let Some(at) = text[from..].find("](") {
        let start = from + at + 2;
        let target = destination(&text[start..]);
        if !target.is_empty() {
            found.push(Link {
                line: line_of(start),
                target: target.to_string(),
            });
        }
        from = start;
    }
    for (offset, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some(end) = trimmed.find("]: ")
        {
            let target = trimmed[end + 3..].split_whitespace().next().unwrap_or("");
            if !target.is_empty() {
                found.push(Link {
                    line: first_line + offset,
                    target: target.to_string(),
                });
            }
        }
    }
}

/// An inline link's destination: `<...>`, or up to the first space or the `)` that
/// closes the link (parentheses inside it balanced).
fn destination(after: &str) -> &str {
    if let Some(rest) = after.strip_prefix('<') {
        return rest.find('>').map_or("", |end| &rest[..end]);
    }
    let mut depth = 0;
    for (i, c) in after.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return &after[..i],
            ')' => depth -= 1,
            c if c.is_whitespace() => return &after[..i],
            _ => {}
        }
    }
    ""
}

/// The text with every code span's content (and its backticks) replaced by spaces,
/// line breaks kept so that positions still give line numbers. A run of backticks
/// opens a span only if a run of the same length closes it.
fn without_code_spans(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = text.as_bytes().to_vec();
    let run_at = |i: usize| bytes[i..].iter().take_while(|b| **b == b'`').count();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = run_at(i);
        let mut j = i + run;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let other = run_at(j);
                if other == run {
                    close = Some(j + other);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                for byte in &mut out[i..end] {
                    if *byte != b'\n' {
                        *byte = b' ';
                    }
                }
                i = end;
            }
            None => i += run,
        }
    }
    // Only ASCII bytes were replaced, by ASCII, inside whole characters: still UTF-8.
    String::from_utf8(out).expect("blanking code spans keeps the text UTF-8")
}

/// `%XX` escapes in a link's path, as a browser would decode them.
fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn every_relative_link_in_the_documentation_resolves() {
    let root = workspace();
    let mut headings: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in documentation(&root) {
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let dir = file.parent().expect("a file has a directory");
        for link in links(&read(&file)) {
            checked += 1;
            let (path, anchor) = match link.target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (link.target.as_str(), None),
            };
            let path = percent_decoded(path);
            let mut target = if path.is_empty() {
                file.clone()
            } else if let Some(from_root) = path.strip_prefix('/') {
                root.join(from_root)
            } else {
                dir.join(path.as_str())
            };
            let at = format!("{shown}:{}: ({})", link.line, link.target);
            if !target.exists() {
                broken.push(format!("{at}: no such file"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            // GitHub shows a directory's README.md, and its anchors, under the directory.
            if target.is_dir() {
                target = target.join("README.md");
            }
            if target.extension().is_none_or(|ext| ext != "md") || !target.is_file() {
                broken.push(format!("{at}: an anchor into a file that is not Markdown"));
                continue;
            }
            let known = headings
                .entry(target.clone())
                .or_insert_with(|| anchors(&read(&target)).into_iter().collect());
            if !known.contains(anchor) {
                broken.push(format!("{at}: no heading with the anchor #{anchor}"));
            }
        }
    }
    assert!(
        checked > 0,
        "no links found: is the workspace root {root:?}?"
    );
    assert!(
        broken.is_empty(),
        "{} broken link(s) in the documentation:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn anchors_are_githubs() {
    for (heading, anchor) in [
        ("Bybit (v5, spot and linear)", "bybit-v5-spot-and-linear"),
        ("The /sapi/ tree", "the-sapi-tree"),
        (
            "Coinbase Advanced Trade (`venue = \"coinbase\"`)",
            "coinbase-advanced-trade-venue--coinbase",
        ),
        (
            "Cancels stay inside the bot's orders",
            "cancels-stay-inside-the-bots-orders",
        ),
        (
            "Tuning, judged by instruction counts",
            "tuning-judged-by-instruction-counts",
        ),
        ("snake_case in [a link](a.md#x)", "snake_case-in-a-link"),
    ] {
        assert_eq!(slug(heading), anchor, "{heading}");
    }
    let page = "# Title\n\n## Notes\n\n```sh\n# a comment, not a heading\n```\n\n\
                ## Notes\n\n### The /sapi/ tree ###\n\n####### seven is no heading\n#hashtag\n";
    assert_eq!(
        anchors(page),
        ["title", "notes", "notes-1", "the-sapi-tree"],
        "{page}"
    );
}

#[test]
fn links_in_code_and_on_the_web_are_not_checked() {
    let page = [
        "See [a](a.md#x) and `[b](b.md)` and",
        "[c](https://example.com) [d](#local) ``code ` [e](e.md)``",
        "",
        "```md",
        "[f](f.md)",
        "```",
        "[g",
        "h](g%20h.md) `a span that",
        "runs on [i](i.md)` [j](<j.md>) ```x``` [l](l.md)",
        "",
        "[k]: k.md",
    ]
    .join("\n");
    let found = links(&page);
    let found: Vec<(usize, &str)> = found
        .iter()
        .map(|link| (link.line, link.target.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (1, "a.md#x"),
            (2, "#local"),
            (8, "g%20h.md"),
            (9, "j.md"),
            (9, "l.md"),
            (11, "k.md")
        ],
        "{page}"
    );
    assert_eq!(percent_decoded("g%20h.md"), "g h.md");
}
