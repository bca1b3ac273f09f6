//! Where the loader gets configuration text: the filesystem in production, or a set of
//! files held in memory, so the fuzzer (and tests) can load any text without writing
//! files and without an `include` pattern ever walking the real disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The files a configuration load may read.
pub trait ConfigFiles {
    /// The whole text of `path`.
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// Why `path` must not be trusted to decide what bots may do (one sentence each).
    fn ownership_problems(&self, path: &Path) -> Vec<String>;
    /// The files matching a glob `pattern`, in any order; the error says why the
    /// pattern is not a valid glob.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String>;
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl ConfigFiles for Disk {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    /// Whoever can write the configuration can grant anything: it must belong to
    /// keyward's user (or root) and be writable by no one else (corpus OPS-016).
    fn ownership_problems(&self, path: &Path) -> Vec<String> {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let mut problems = Vec::new();
        let Ok(metadata) = std::fs::metadata(path) else {
            return problems;
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            problems.push(format!(
                "the file is writable by group or others (mode {mode:o}), so they could \
                 grant bots anything; run `chmod go-w {}`",
                path.display()
            ));
        }
        let running = crate::sys::effective_uid();
        if metadata.uid() != running && metadata.uid() != 0 {
            problems.push(format!(
                "the file belongs to uid {}, but keyward runs as uid {running}; it must \
                 belong to keyward's user or to root (`chown {running} {}`)",
                metadata.uid(),
                path.display()
            ));
        }
        problems
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        glob::glob(pattern)
            .map(|paths| paths.filter_map(Result::ok).collect())
            .map_err(|e| e.msg.to_owned())
    }
}

/// Files held in memory, trusted as if owned by keyward's user with mode 0600.
#[derive(Debug, Clone, Default)]
pub struct InMemory {
    files: BTreeMap<PathBuf, String>,
}

impl InMemory {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the file at `path`.
    pub fn insert(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) {
        self.files.insert(path.into(), text.into());
    }
}

impl ConfigFiles for InMemory {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    fn ownership_problems(&self, _path: &Path) -> Vec<String> {
        Vec::new()
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let pattern = glob::Pattern::new(pattern).map_err(|e| e.msg.to_owned())?;
        // glob::glob walks one path component at a time, so its `*` never crosses a
        // `/`; matching whole paths needs that said explicitly.
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        Ok(self
            .files
            .keys()
            .filter(|path| pattern.matches_path_with(path, options))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_globs_like_the_disk() {
        let dir = std::env::temp_dir().join(format!("keyward-files-{}", std::process::id()));
        let files = [
            "bots.d/a.toml",
            "bots.d/.hidden.toml",
            "bots.d/sub/b.toml",
            "other.toml",
        ];
        let mut memory = InMemory::new();
        for file in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, file).unwrap();
            memory.insert(path, file);
        }
        for pattern in [
            "bots.d/*.toml",
            "*/*.toml",
            "**/*.toml",
            "bots.d/[ab].toml",
            "*",
        ] {
            let pattern = dir.join(pattern).to_string_lossy().into_owned();
            let mut on_disk = Disk.glob(&pattern).unwrap();
            on_disk.retain(|p| p.is_file());
            on_disk.sort();
            let mut in_memory = memory.glob(&pattern).unwrap();
            in_memory.sort();
            assert_eq!(in_memory, on_disk, "{pattern}");
        }
        assert!(memory.glob("[").is_err() && Disk.glob("[").is_err());
        let other = dir.join("other.toml");
        assert_eq!(memory.read(&other).unwrap(), Disk.read(&other).unwrap());
        assert!(memory.read(&dir.join("none.toml")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
