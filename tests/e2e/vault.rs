//! `keyward vault` and `keyward certs init` from the command line: secrets go in
//! encrypted, come out only as fingerprints, bad material and loose permissions are
//! refused with a sentence that says what to do.

use std::os::unix::fs::PermissionsExt as _;

use keyward_tests::{TempDir, canary, fixed_now, run_cli, run_cli_with_input};

const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIIJEYWtGBrhACmb9Dvy+qa8WEf0lQOl1s4CLIAB9m89u\n-----END PRIVATE KEY-----\n";

fn config(dir: &std::path::Path, key: &str) -> String {
    let path = dir.join("keyward.toml");
    std::fs::write(
        &path,
        format!("[vault]\nfile = \"keyward.vault\"\nkey = \"{key}\"\n\n[tls]\ndir = \"tls\"\n"),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn vault_commands_keep_secrets_encrypted_and_out_of_every_output() {
    let dir = TempDir::new("vault-cli");
    let cfg = config(dir.path(), "file:master.key");
    let (code, out, err) = run_cli(&["--config", &cfg, "vault", "init"], fixed_now());
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("generated a random 32-byte key file"), "{err}");
    let vault = dir.path().join("keyward.vault");
    assert_eq!(
        std::fs::metadata(&vault).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let (code, _, err) = run_cli(&["--config", &cfg, "vault", "init"], fixed_now());
    assert_eq!(code, 1);
    assert!(err.contains("will not overwrite a vault"), "{err}");

    let json = format!(
        "{{\"api_key\": \"{}\", \"api_secret\": \"{}\"}}",
        canary::API_KEY,
        canary::SECRET
    );
    let (code, out, err) = run_cli_with_input(
        &[
            "--config",
            &cfg,
            "vault",
            "add",
            "spot",
            "--venue",
            "binance-spot",
        ],
        fixed_now(),
        json.as_bytes(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let ed = serde_json::json!({"api_key": "ed-key", "api_secret": ED25519_PEM}).to_string();
    let (code, _, err) = run_cli_with_input(
        &[
            "--config",
            &cfg,
            "vault",
            "add",
            "ed",
            "--key-type",
            "ed25519",
        ],
        fixed_now(),
        ed.as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    let bad = serde_json::json!({"api_key": "k", "api_secret": "not a key"}).to_string();
    let (code, _, err) = run_cli_with_input(
        &["--config", &cfg, "vault", "add", "bad", "--key-type", "rsa"],
        fixed_now(),
        bad.as_bytes(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("expected a PEM private key"),
        "invalid key material refused at add: {err}"
    );
    let (code, _, err) = run_cli_with_input(
        &["--config", &cfg, "vault", "add", "spot"],
        fixed_now(),
        json.as_bytes(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("already has an entry `spot`"), "{err}");
    let (code, _, err) = run_cli_with_input(
        &["--config", &cfg, "vault", "add", "x"],
        fixed_now(),
        b"{\"key\": 1}",
    );
    assert_eq!(code, 1);
    assert!(err.contains("stdin must be JSON"), "{err}");

    let (code, out, err) = run_cli(&["--config", &cfg, "vault", "list"], fixed_now());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("spot") && out.contains("binance-spot") && out.contains("hmac"),
        "{out}"
    );
    assert!(out.contains("ed") && out.contains("ed25519"), "{out}");
    let everything = format!("{out}{err}{}", std::fs::read_to_string(&vault).unwrap());
    assert!(
        !everything.contains(canary::SECRET) && !everything.contains(canary::API_KEY),
        "{everything}"
    );
    assert!(!everything.contains("MC4CAQAwBQYDK2Vw"));

    let (code, _, _) = run_cli(&["--config", &cfg, "vault", "remove", "ed"], fixed_now());
    assert_eq!(code, 0);
    let (_, out, _) = run_cli(&["--config", &cfg, "vault", "list"], fixed_now());
    assert!(!out.contains("ed25519"), "{out}");

    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run_cli(&["--config", &cfg, "vault", "list"], fixed_now());
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("run `chmod 600 {}`", vault.display())),
        "{err}"
    );
}

#[test]
fn a_passphrase_vault_stores_its_argon2id_parameters() {
    let dir = TempDir::new("vault-pass");
    let passphrase = dir.path().join("passphrase");
    std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    std::fs::set_permissions(&passphrase, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = config(dir.path(), "file:passphrase");
    let (code, _, err) = run_cli(
        &[
            "--config",
            &cfg,
            "vault",
            "init",
            "--argon2-memory-kib",
            "8192",
            "--argon2-iterations",
            "1",
        ],
        fixed_now(),
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(dir.path().join("keyward.vault")).unwrap();
    assert!(
        text.contains("\"algorithm\": \"argon2id\"") && text.contains("\"memory_kib\": 8192"),
        "{text}"
    );
    let json = "{\"api_key\": \"k\", \"api_secret\": \"s\"}";
    let (code, _, err) = run_cli_with_input(
        &["--config", &cfg, "vault", "add", "main"],
        fixed_now(),
        json.as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    std::fs::write(&passphrase, "a different passphrase\n").unwrap();
    let (code, _, err) = run_cli(&["--config", &cfg, "vault", "list"], fixed_now());
    assert_eq!(code, 1);
    assert!(
        err.contains("the vault key or passphrase is wrong"),
        "{err}"
    );
}

#[test]
fn certs_init_creates_the_ca_once() {
    let dir = TempDir::new("certs-cli");
    let cfg = config(dir.path(), "file:master.key");
    let (code, out, err) = run_cli(&["--config", &cfg, "certs", "init"], fixed_now());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("created a new CA and server certificate"),
        "{out}"
    );
    let ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let (code, out, _) = run_cli(&["--config", &cfg, "certs", "init"], fixed_now());
    assert_eq!(code, 0);
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(std::fs::read(dir.path().join("tls/ca.pem")).unwrap(), ca);
}
