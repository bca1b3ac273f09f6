//! The Python interpreter with the real exchange clients (ccxt and each venue's SDK)
//! installed: `KEYWARD_PYTHON` if set, otherwise a virtualenv under `target/` created
//! on first use from the pinned `tests/clients/requirements.txt`; and how the client
//! scripts in `tests/clients/` are run and their refusals judged.

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

/// Runs `tests/clients/<script>` with `args` and `env` (inherited `CURL_CA_BUNDLE`
/// removed, so only the CA a test names is trusted) and returns the JSON it prints;
/// panics with its output if it fails.
pub async fn run_client(
    script: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, std::ffi::OsString)>,
) -> serde_json::Value {
    let python = tokio::task::spawn_blocking(python)
        .await
        .expect("python lookup");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(script);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(path)
            .args(args)
            .env_remove("CURL_CA_BUNDLE")
            .envs(env)
            .output()
            .expect("run the client script")
    })
    .await
    .expect("client script task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script}: {e}: {stdout}"))
}

/// A client script's report of a refused call (`classes`: the exception's classes,
/// `message`: its text): it raised every one of `classes`, and keyward's reason shows
/// in the message as `marker` (e.g. `keyward: symbol_not_allowed`).
pub fn assert_refused(
    client: &str,
    what: &str,
    result: &serde_json::Value,
    classes: &[&str],
    marker: &str,
) {
    let raised: Vec<&str> = result["classes"]
        .as_array()
        .unwrap_or_else(|| panic!("{client}: {what} was not refused: {result}"))
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    for class in classes {
        assert!(
            raised.contains(class),
            "{client}: {what} raised {raised:?}, expected {class}"
        );
    }
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(marker),
        "{client}: {what}: keyward's reason ({marker}) is not shown: {message}"
    );
}
