//! The Python interpreter with the real exchange clients (ccxt, python-binance,
//! binance-sdk-spot) installed: `KEYWARD_PYTHON` if set, otherwise a virtualenv under
//! `target/` created on first use from the pinned `tests/clients/requirements.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The interpreter, creating the virtualenv if needed. Panics with the reason if it
/// cannot be had: these tests must not pass by not running.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(create).clone()
}

fn create() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYWARD_PYTHON") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = root.join("target/keyward-pyvenv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/clients/requirements.txt");
    let stamp = venv.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/clients/requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return python;
    }
    let run = |cmd: &mut Command, what: &str| {
        let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            status.success(),
            "{what} failed ({status}); the client-compatibility tests need PyPI or KEYWARD_PYTHON"
        );
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r tests/clients/requirements.txt",
    );
    std::fs::write(&stamp, wanted).expect("venv stamp");
    python
}
