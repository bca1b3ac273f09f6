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
    init_with_cheap_argon2(&cfg);
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

/// `vault init` with the least Argon2id cost allowed (tests run unoptimised).
fn init_with_cheap_argon2(cfg: &str) {
    let (code, _, err) = run_cli(
        &[
            "--config",
            cfg,
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
}

/// The SEC1 key of the Coinbase ES256 vector in ../shared/venues/vectors.json.
const EC_SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKwf3Uox30cRWzRBOPoPOH5p0Gpb0Dt8zUKXUEM5fMkGoAoGCCqGSM49\nAwEHoUQDQgAEbAtpLlSZYVOwYICz+uEyxcS29vRIujiES/gQ1DC7FV4zK4JuYE9v\nqDyGZQYjdXHLM7I6f/QnnOITL+dXYWBHRA==\n-----END EC PRIVATE KEY-----\n";

/// A vault with the canary entry, keyed by a generated key file, or by `passphrase`
/// written to `pass.txt`.
fn initialised(tag: &str, passphrase: Option<&str>) -> (TempDir, String) {
    let dir = TempDir::new(tag);
    let key = match passphrase {
        Some(text) => {
            let file = dir.path().join("pass.txt");
            std::fs::write(&file, format!("{text}\n")).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            "file:pass.txt"
        }
        None => "file:master.key",
    };
    let cfg = config(dir.path(), key);
    init_with_cheap_argon2(&cfg);
    let json = format!(
        "{{\"api_key\": \"{}\", \"api_secret\": \"{}\", \"passphrase\": \"{}\"}}",
        canary::API_KEY,
        canary::SECRET,
        canary::PASSPHRASE
    );
    let (code, _, err) = run_cli_with_input(
        &["--config", &cfg, "vault", "add", "spot"],
        fixed_now(),
        json.as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    (dir, cfg)
}

/// Runs a reading and a writing vault command, and `serve`, against a vault that
/// cannot be opened: each must fail (`serve` with 64, at the vault's settings) with
/// `expected` in its message and leave the file exactly as it was.
fn refused_untouched(cfg: &str, vault: &std::path::Path, expected: &str) {
    let before = std::fs::read(vault).unwrap();
    let modified = std::fs::metadata(vault).unwrap().modified().unwrap();
    let json = "{\"api_key\": \"k\", \"api_secret\": \"s\"}";
    for (args, input) in [
        (vec!["vault", "list"], ""),
        (vec!["vault", "add", "another"], json),
        (vec!["vault", "rotate", "spot"], json),
        (vec!["vault", "passwd", "--new-key", "file:other.key"], ""),
        (vec!["serve"], ""),
    ] {
        let mut argv = vec!["--config", cfg];
        argv.extend(&args);
        let (code, out, err) = run_cli_with_input(&argv, fixed_now(), input.as_bytes());
        // `serve` stops at what `check` reports, as a configuration problem.
        let wanted = if args == ["serve"] { 64 } else { 1 };
        assert_eq!(code, wanted, "{args:?}: {out}{err}");
        assert!(
            err.contains(expected),
            "{args:?}: expected `{expected}` in: {err}"
        );
        assert!(!format!("{out}{err}").contains(canary::SECRET));
        assert_eq!(
            std::fs::read(vault).unwrap(),
            before,
            "{args:?} changed the vault"
        );
        assert_eq!(
            std::fs::metadata(vault).unwrap().modified().unwrap(),
            modified
        );
    }
}

#[test]
fn damaged_or_wrongly_keyed_vaults_are_refused_and_left_untouched() {
    let (dir, cfg) = initialised("vault-damaged", None);
    let vault = dir.path().join("keyward.vault");
    let original = std::fs::read(&vault).unwrap();

    // One flipped bit inside the entry's ciphertext.
    let text = String::from_utf8(original.clone()).unwrap();
    let entries = text.find("\"entries\"").unwrap();
    let at = entries + text[entries..].find("\"ciphertext\"").unwrap() + 40;
    let mut flipped = original.clone();
    flipped[at] ^= 0x01;
    std::fs::write(&vault, &flipped).unwrap();
    refused_untouched(&cfg, &vault, "damaged or was tampered with");

    std::fs::write(&vault, &original[..original.len() * 2 / 3]).unwrap();
    refused_untouched(&cfg, &vault, "not a readable keyward vault: it ends early");

    std::fs::write(&vault, &original).unwrap();
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused_untouched(&cfg, &vault, "chmod 600");
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o600)).unwrap();

    let key = dir.path().join("master.key");
    let right_key = std::fs::read(&key).unwrap();
    std::fs::write(&key, [0x5a; 32]).unwrap();
    refused_untouched(&cfg, &vault, "the vault key or passphrase is wrong");
    std::fs::write(&key, &right_key).unwrap();
    let (code, out, err) = run_cli(&["--config", &cfg, "vault", "list"], fixed_now());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("+passphrase"), "{out}");

    // And a passphrase vault with the wrong passphrase.
    let (dir, cfg) = initialised("vault-wrong-pass", Some("the right passphrase"));
    std::fs::write(
        dir.path().join("pass.txt"),
        "not the passphrase it was made with\n",
    )
    .unwrap();
    refused_untouched(
        &cfg,
        &dir.path().join("keyward.vault"),
        "the vault key or passphrase is wrong",
    );
}

#[test]
fn rotate_replaces_a_key_and_passwd_rekeys_the_vault() {
    let (dir, cfg) = initialised("vault-rotate", None);
    let (code, out, err) = run_cli_with_input(
        &["--config", &cfg, "vault", "rotate", "nothing"],
        fixed_now(),
        b"{\"api_key\": \"k\", \"api_secret\": \"s\"}",
    );
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("has no entry `nothing`"), "{err}");
    let (code, out, err) = run_cli_with_input(
        &["--config", &cfg, "vault", "rotate", "spot"],
        fixed_now(),
        b"{\"api_key\": \"NEWKEY\", \"api_secret\": \"new secret\"}",
    );
    assert_eq!(code, 0, "{err}");
    let old_fp = keyward::credential::fingerprint(canary::API_KEY);
    let new_fp = keyward::credential::fingerprint("NEWKEY");
    assert!(
        out.contains(&format!("fp:{old_fp} -> fp:{new_fp}")),
        "{out}"
    );
    assert!(err.contains("SIGHUP"), "{err}");

    // A new EC key (Coinbase style) is validated and listed by type.
    let ec = serde_json::json!({"api_key": "organizations/x/apiKeys/y", "api_secret": EC_SEC1_PEM})
        .to_string();
    let (code, _, err) = run_cli_with_input(
        &[
            "--config",
            &cfg,
            "vault",
            "add",
            "cb",
            "--key-type",
            "ec-p256",
            "--venue",
            "coinbase",
        ],
        fixed_now(),
        ec.as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    let broken = EC_SEC1_PEM.replace("MHcCAQEEIKwf", "MHcCAQEEIKwg");
    let broken = serde_json::json!({"api_key": "k", "api_secret": broken}).to_string();
    let (code, _, err) = run_cli_with_input(
        &["--config", &cfg, "vault", "rotate", "cb"],
        fixed_now(),
        broken.as_bytes(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("not a valid EC P-256 key"), "{err}");

    // passwd in place: a new key file, the old one no longer opens the vault.
    let key = dir.path().join("master.key");
    let old_key = std::fs::read(&key).unwrap();
    let (code, out, err) = run_cli(&["--config", &cfg, "vault", "passwd"], fixed_now());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("re-keyed"), "{out}");
    assert_ne!(std::fs::read(&key).unwrap(), old_key);
    assert!(!dir.path().join("master.key.new").exists());
    let (code, out, err) = run_cli(&["--config", &cfg, "vault", "list"], fixed_now());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("fp:{new_fp}")) && out.contains("ec-p256"),
        "{out}"
    );
    let vault = dir.path().join("keyward.vault");
    let material = keyward::vault::KeyMaterial::Raw(Box::new(zeroize::Zeroizing::new(
        old_key.try_into().unwrap(),
    )));
    assert!(keyward::vault::Vault::open(&vault, &material).is_err());

    // A bad --new-key is refused before anything is touched.
    let before = std::fs::read(&vault).unwrap();
    let (code, _, err) = run_cli(
        &["--config", &cfg, "vault", "passwd", "--new-key", "ftp:x"],
        fixed_now(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("--new-key must be"), "{err}");
    assert_eq!(std::fs::read(&vault).unwrap(), before);

    // passwd to another key file, which the configuration must then name.
    let elsewhere = dir.path().join("elsewhere.key");
    let new_key = format!("file:{}", elsewhere.display());
    let (code, out, err) = run_cli(
        &["--config", &cfg, "vault", "passwd", "--new-key", &new_key],
        fixed_now(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("set [vault].key"), "{out}");
    let (code, _, err) = run_cli(&["--config", &cfg, "vault", "list"], fixed_now());
    assert_eq!(code, 1);
    assert!(
        err.contains("the vault key or passphrase is wrong"),
        "{err}"
    );
    let cfg = config(dir.path(), "file:elsewhere.key");
    let (code, out, err) = run_cli(&["--config", &cfg, "vault", "list"], fixed_now());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cb "), "{out}");
}

/// One passphrase rule for every new vault key, wherever it comes from: a passphrase
/// read from a file (or an environment variable) is held to the length `passwd`
/// demands at its prompt; a raw 32-byte key is strong by construction.
#[test]
fn a_short_passphrase_is_refused_from_every_source() {
    let dir = TempDir::new("vault-short");
    let key = dir.path().join("pass.txt");
    let cfg = config(dir.path(), &format!("file:{}", key.display()));
    for (passphrase, accepted) in [
        ("hunter2\n", false),
        ("correct horse battery staple\n", true),
    ] {
        std::fs::write(&key, passphrase).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (code, out, err) = run_cli(&["--config", &cfg, "vault", "init"], fixed_now());
        if accepted {
            assert_eq!(code, 0, "{out}{err}");
        } else {
            assert_eq!(code, 1, "{out}{err}");
            assert!(
                err.contains("at least 12 characters (this one has 7)"),
                "{err}"
            );
            assert!(!err.contains("hunter2"));
            assert!(!dir.path().join("keyward.vault").exists());
        }
    }
}

/// `check` opens the vault the configuration names and reports, at the setting that
/// names it, a missing key file, a missing vault and every account whose entry is
/// missing or misspelt; `serve` stops at the same problems with the same exit code.
#[test]
fn check_and_serve_report_vault_problems_at_their_lines() {
    let dir = TempDir::new("vault-check");
    let path = dir.path().join("keyward.toml");
    let text = "[server]\nlisten = \"127.0.0.1:1\"\n\n[vault]\nfile = \"keyward.vault\"\nkey = \"file:master.key\"\n\n[accounts.main]\nvenue = \"binance-spot\"\nsecret = \"binance-mian\"\n";
    std::fs::write(&path, text).unwrap();
    let cfg = path.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        run_cli(&all, fixed_now())
    };
    // No key file (and no vault): at `key =`, saying what creates it.
    let (code, _, err) = run(&["check"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("keyward.toml:6:7: error: the vault key file"),
        "{err}"
    );
    assert!(err.contains("vault init"), "{err}");
    // A key file but no vault: at `file =`.
    keyward::vault::generate_key_file(&dir.path().join("master.key")).unwrap();
    let (code, _, err) = run(&["check"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("keyward.toml:5:8: error: there is no vault at"),
        "{err}"
    );
    assert!(err.contains("vault init"), "{err}");
    // A vault without the account's entry, and an entry one letter away.
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    let (code, _, err) = run(&["vault", "init"]);
    assert_eq!(code, 0, "{err}");
    let json = format!(
        "{{\"api_key\": \"{}\", \"api_secret\": \"{}\"}}",
        canary::API_KEY,
        canary::SECRET
    );
    let (code, _, err) = run_cli_with_input(
        &[
            "--config",
            cfg,
            "vault",
            "add",
            "binance-main",
            "--venue",
            "binance-spot",
        ],
        fixed_now(),
        json.as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    for command in [&["check"][..], &["serve"][..]] {
        let (code, out, err) = run(command);
        assert_eq!(code, 64, "{command:?}: {out}{err}");
        assert!(
            err.contains(
                "keyward.toml:10:10: error: the vault has no entry `binance-mian` (did you mean `binance-main`?)"
            ),
            "{command:?}: {err}"
        );
        assert!(
            err.contains("vault add binance-mian --venue binance-spot"),
            "{err}"
        );
        assert!(!err.contains(canary::SECRET) && !out.contains(canary::SECRET));
    }
    std::fs::write(&path, text.replace("binance-mian", "binance-main")).unwrap();
    let (code, out, err) = run(&["check"]);
    assert_eq!(code, 0, "{out}{err}");
    // A passphrase vault is checked only when check may ask for the passphrase.
    std::fs::write(&path, text.replace("file:master.key", "prompt")).unwrap();
    let (code, _, err) = run(&["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the vault was not checked"), "{err}");
}

/// Errors that say what to do: a key file that is not there outside `check`, a
/// passphrase prompt with no terminal to ask on, and a bot port another process holds,
/// each naming its setting (and its line, where it is written) and the fix.
#[test]
fn start_and_key_errors_name_the_setting_and_the_fix() {
    let dir = TempDir::new("vault-errors");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = listener.local_addr().unwrap();
    let path = dir.path().join("keyward.toml");
    let text = format!(
        "[server]\nlisten = \"{taken}\"\n\n[vault]\nfile = \"keyward.vault\"\nkey = \"file:master.key\"\n\n[accounts.main]\nvenue = \"binance-spot\"\nsecret = \"main\"\n"
    );
    std::fs::write(&path, &text).unwrap();
    let cfg = path.to_str().unwrap();
    // The key file is missing: `vault list` says which setting and what creates it.
    let (code, _, err) = run_cli(&["--config", cfg, "vault", "list"], fixed_now());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("named by [vault].key does not exist"), "{err}");
    assert!(err.contains("vault init"), "{err}");
    assert!(!err.contains("os error"), "{err}");
    // The bot port is taken: `serve` names `listen`, its line, and what to do.
    keyward_tests::launch::write_vault_with(dir.path(), &["main"]);
    let (code, _, err) = run_cli(&["--config", cfg, "serve"], fixed_now());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "keyward.toml:2:10: cannot listen on {taken} (`listen`)"
        )),
        "{err}"
    );
    assert!(err.contains("set another port in `listen`"), "{err}");
    drop(listener);
    // A passphrase prompt without a terminal (a service, a container).
    std::fs::write(&path, text.replace("file:master.key", "prompt")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward-e2e"))
        .args(["--config", cfg, "vault", "list"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("there is no terminal to ask for the passphrase on"),
        "{err}"
    );
    assert!(err.contains("\"file:PATH\" or \"env:VARIABLE\""), "{err}");
    assert!(!err.contains("os error"), "{err}");
}
