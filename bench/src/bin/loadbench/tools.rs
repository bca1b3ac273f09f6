//! Finding the external programs the benchmark drives (nginx, the load generator),
//! on `PATH` or where their installers put them.

use std::path::PathBuf;

/// `name` on `PATH`, in `~/.cargo/bin`, or at one of `also`.
pub(crate) fn find(name: &str, also: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin"));
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join(name))
        .chain(also.iter().map(PathBuf::from))
        .find(|candidate| candidate.is_file())
}
