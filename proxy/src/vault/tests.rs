//! The vault file: round trips, refusal of wrong keys and damaged files (every bit
//! flip and every truncation), rotation, re-keying, reopening on reload, and
//! concurrent writers.

use super::*;

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyward-vault-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn entry(secret: &[u8]) -> Entry {
    Entry {
        api_key: "APIKEYCANARY".into(),
        kind: KeyKind::Hmac,
        secret: Zeroizing::new(secret.to_vec()),
        passphrase: None,
        venue: Some("binance-spot".into()),
        created: 1_800_000_000,
    }
}

const FAST: Argon2Params = Argon2Params {
    memory_kib: MIN_ARGON2_MEMORY_KIB,
    iterations: 1,
    parallelism: 1,
};

fn raw_key(dir: &Path) -> (PathBuf, KeyMaterial) {
    let key_path = dir.join("master.key");
    generate_key_file(&key_path).unwrap();
    let material = read_key(&KeySource::File(key_path.clone())).unwrap();
    (key_path, material)
}

fn passphrase(text: &str) -> KeyMaterial {
    KeyMaterial::Passphrase(Zeroizing::new(text.as_bytes().to_vec()))
}

#[test]
fn round_trips_with_a_key_file_and_never_stores_plaintext() {
    let dir = temp("raw");
    let (_, material) = raw_key(&dir);
    let path = dir.join("v.vault");
    let mut vault = Vault::create(&path, &material, FAST).unwrap();
    let mut with_passphrase = entry(b"SECRETCANARY");
    with_passphrase.passphrase = Some(Zeroizing::new(b"PASSPHRASECANARY".to_vec()));
    vault.add("main", &with_passphrase).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains("CANARY"), "{text}");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let reopened = Vault::open(&path, &material).unwrap();
    let got = reopened.entry("main").unwrap();
    assert_eq!(got.api_key, "APIKEYCANARY");
    assert_eq!(&got.secret[..], b"SECRETCANARY");
    assert_eq!(
        got.passphrase.as_deref().unwrap().as_slice(),
        b"PASSPHRASECANARY"
    );
    assert_eq!(got.venue.as_deref(), Some("binance-spot"));
    let credential = got.credential().unwrap();
    assert!(credential.has_passphrase());
    let printed = format!("{got:?}{reopened:?}{credential:?}{material:?}");
    assert!(!printed.contains("CANARY"), "{printed}");
    let info = reopened.list().unwrap();
    assert_eq!(info[0].kind, "hmac");
    assert_eq!(info[0].fingerprint.len(), 8);
    assert!(info[0].passphrase);
    assert!(matches!(
        vault.add("main", &entry(b"x")),
        Err(VaultError::Exists(_))
    ));
    vault.remove("main").unwrap();
    assert!(matches!(vault.entry("main"), Err(VaultError::NoEntry(_))));
    assert!(matches!(vault.remove("main"), Err(VaultError::NoEntry(_))));
}

#[test]
fn wrong_keys_and_modes_are_refused() {
    let dir = temp("pass");
    let path = dir.join("v.vault");
    let material = passphrase("correct horse battery");
    let mut vault = Vault::create(&path, &material, FAST).unwrap();
    vault.add("main", &entry(b"s")).unwrap();
    assert!(matches!(
        Vault::open(&path, &passphrase("wrong")),
        Err(VaultError::WrongKey(_))
    ));
    let raw = KeyMaterial::Raw(Box::new(Zeroizing::new([7u8; 32])));
    assert!(matches!(Vault::open(&path, &raw), Err(VaultError::Key(_))));

    for mode in [0o644, 0o640, 0o604, 0o620] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let err = Vault::open(&path, &material).unwrap_err().to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        Vault::create(&path, &material, FAST),
        Err(VaultError::AlreadyInitialised(_))
    ));
    assert!(matches!(
        Vault::create(
            &dir.join("weak.vault"),
            &material,
            Argon2Params {
                memory_kib: 1024,
                ..FAST
            }
        ),
        Err(VaultError::Argon2(_))
    ));
}

#[test]
fn a_file_of_another_user_is_refused() {
    let dir = temp("owner");
    let (_, material) = raw_key(&dir);
    let path = dir.join("v.vault");
    Vault::create(&path, &material, FAST).unwrap();
    // Only root can give a file away; elsewhere this case cannot be set up.
    if std::os::unix::fs::chown(&path, Some(54_321), None).is_err() {
        eprintln!("skipped: not running as root, cannot chown the vault to another user");
        return;
    }
    let err = Vault::open(&path, &material).unwrap_err().to_string();
    assert!(
        err.contains("belongs to uid 54321") && err.contains("chown"),
        "{err}"
    );
}

#[test]
fn every_bit_flip_and_every_truncation_is_refused() {
    let dir = temp("flip");
    let (_, material) = raw_key(&dir);
    let path = dir.join("v.vault");
    let mut vault = Vault::create(&path, &material, FAST).unwrap();
    vault.add("main", &entry(b"SECRETCANARY")).unwrap();
    vault.add("second", &entry(b"another secret")).unwrap();
    let original = fs::read(&path).unwrap();
    let mut refusals = std::collections::BTreeMap::<&'static str, usize>::new();
    for byte in 0..original.len() {
        for bit in 0..8 {
            let mut damaged = original.clone();
            damaged[byte] ^= 1 << bit;
            let outcome = parse_file(&path, &damaged).and_then(|file| {
                let key = derive(&file.kdf, &material)?;
                let vault = Vault::unlock(&path, file, key)?;
                vault.entry("main").map(|_| ())?;
                vault.entry("second").map(|_| ())
            });
            let kind = match outcome {
                Ok(()) => panic!("a flip of bit {bit} of byte {byte} went unnoticed"),
                Err(VaultError::Unreadable { .. }) => "unreadable",
                Err(VaultError::Version { .. }) => "version",
                Err(VaultError::WrongKey(_)) => "wrong key",
                Err(VaultError::Damaged(_)) => "damaged",
                Err(VaultError::Key(_)) => "key",
                Err(VaultError::NoEntry(_)) => "no entry",
                Err(other) => panic!("byte {byte} bit {bit}: unexpected {other}"),
            };
            *refusals.entry(kind).or_default() += 1;
        }
    }
    assert!(
        refusals["damaged"] > 0 && refusals["unreadable"] > 0,
        "{refusals:?}"
    );
    for len in 0..original.len() - 1 {
        let outcome = parse_file(&path, &original[..len]);
        assert!(
            matches!(outcome, Err(VaultError::Unreadable { .. })),
            "truncated to {len} bytes: {outcome:?}"
        );
    }
    // The real path reports a truncated file in a sentence.
    fs::write(&path, &original[..original.len() / 2]).unwrap();
    let err = Vault::open(&path, &material).unwrap_err().to_string();
    assert!(
        err.contains("not a readable keyward vault") && err.contains("ends early"),
        "{err}"
    );
}

#[test]
fn entries_cannot_be_moved_dropped_or_rolled_back() {
    let dir = temp("swap");
    let (_, material) = raw_key(&dir);
    let path = dir.join("v.vault");
    let mut vault = Vault::create(&path, &material, FAST).unwrap();
    vault.add("main", &entry(b"old secret")).unwrap();
    vault.add("other", &entry(b"other secret")).unwrap();
    let before: FileFormat = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    vault.rotate("main", &entry(b"new secret")).unwrap();
    let after: FileFormat = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();

    let mut tampered = Vec::new();
    let mut renamed = after.entries.clone();
    renamed[0].name = "other".into();
    renamed[1].name = "main".into();
    tampered.push(renamed);
    tampered.push(vec![after.entries[1].clone()]);
    tampered.push(vec![before.entries[0].clone(), after.entries[1].clone()]);
    tampered.push(vec![after.entries[0].clone(), after.entries[0].clone()]);
    for entries in tampered {
        let file = FileFormat {
            format: FORMAT.into(),
            version: VERSION,
            kdf: after.kdf.clone(),
            key_check: after.key_check.clone(),
            entries,
            integrity: after.integrity.clone(),
        };
        let key = derive(&file.kdf, &material).unwrap();
        assert!(matches!(
            Vault::unlock(&path, file, key),
            Err(VaultError::Damaged(_))
        ));
    }
}

#[test]
fn rotate_replaces_and_returns_the_old_entry() {
    let dir = temp("rotate");
    let (_, material) = raw_key(&dir);
    let path = dir.join("v.vault");
    let mut vault = Vault::create(&path, &material, FAST).unwrap();
    assert!(matches!(
        vault.rotate("main", &entry(b"x")),
        Err(VaultError::NoEntry(_))
    ));
    vault.add("main", &entry(b"first")).unwrap();
    let mut next = entry(b"second");
    next.api_key = "NEWKEY".into();
    let old = vault.rotate("main", &next).unwrap();
    assert_eq!(&old.secret[..], b"first");
    let reopened = Vault::open(&path, &material).unwrap();
    let now = reopened.entry("main").unwrap();
    assert_eq!(
        (now.api_key.as_str(), &now.secret[..]),
        ("NEWKEY", &b"second"[..])
    );
    let mut bad = entry(b"not a pem");
    bad.kind = KeyKind::Ed25519;
    assert!(matches!(
        vault.rotate("main", &bad),
        Err(VaultError::Material(_))
    ));
    assert_eq!(
        &Vault::open(&path, &material)
            .unwrap()
            .entry("main")
            .unwrap()
            .secret[..],
        b"second"
    );
}

#[test]
fn rekey_moves_every_entry_to_the_new_key() {
    let dir = temp("rekey");
    let old = passphrase("the first passphrase");
    let path = dir.join("v.vault");
    let mut vault = Vault::create(&path, &old, FAST).unwrap();
    vault.add("a", &entry(b"secret a")).unwrap();
    vault.add("b", &entry(b"secret b")).unwrap();
    let new = passphrase("the second passphrase");
    vault.rekey(&new, FAST).unwrap();
    assert!(matches!(
        Vault::open(&path, &old),
        Err(VaultError::WrongKey(_))
    ));
    let reopened = Vault::open(&path, &new).unwrap();
    assert_eq!(&reopened.entry("b").unwrap().secret[..], b"secret b");
    // And from a passphrase to a key file.
    let (_, raw) = raw_key(&dir);
    let mut reopened = reopened;
    reopened.rekey(&raw, FAST).unwrap();
    assert_eq!(
        &Vault::open(&path, &raw).unwrap().entry("a").unwrap().secret[..],
        b"secret a"
    );
}

#[test]
fn a_running_keyward_reopens_with_a_kept_key_until_rekeyed() {
    let dir = temp("reopen");
    let path = dir.join("v.vault");
    let material = passphrase("kept passphrase");
    let mut vault = Vault::create(&path, &material, FAST).unwrap();
    vault.add("main", &entry(b"first")).unwrap();
    let reopen = vault
        .reopener(&KeySource::Env("KEYWARD_TEST_UNUSED".into()))
        .unwrap();
    assert!(!reopen.reads_key_file());
    assert!(!format!("{reopen:?}").contains("passphrase"));
    let mut writer = Vault::open(&path, &material).unwrap();
    writer.rotate("main", &entry(b"second")).unwrap();
    assert_eq!(
        &reopen.open().unwrap().entry("main").unwrap().secret[..],
        b"second"
    );
    writer.rekey(&passphrase("a different one"), FAST).unwrap();
    assert!(matches!(reopen.open(), Err(VaultError::Rekeyed(_))));

    let dir = temp("reopen-file");
    let (key_path, raw) = raw_key(&dir);
    let path = dir.join("v.vault");
    let vault = Vault::create(&path, &raw, FAST).unwrap();
    let reopen = vault.reopener(&KeySource::File(key_path)).unwrap();
    assert!(reopen.reads_key_file());
    assert!(reopen.open().unwrap().names().is_empty());
}

#[test]
fn concurrent_writers_never_overwrite_each_other() {
    let dir = temp("conflict");
    let (_, material) = raw_key(&dir);
    let path = dir.join("v.vault");
    Vault::create(&path, &material, FAST).unwrap();
    let mut first = Vault::open(&path, &material).unwrap();
    let mut second = Vault::open(&path, &material).unwrap();
    first.add("a", &entry(b"a")).unwrap();
    let before = fs::read(&path).unwrap();
    assert!(matches!(
        second.add("b", &entry(b"b")),
        Err(VaultError::Conflict(_))
    ));
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "the file is left as it was"
    );
    assert!(
        second.names().is_empty(),
        "the failed add is undone in memory too"
    );
    first.add("c", &entry(b"c")).unwrap();
    let names = Vault::open(&path, &material).unwrap().names().join(",");
    assert_eq!(names, "a,c");
}

#[test]
fn invalid_key_material_is_refused_at_add() {
    let dir = temp("material");
    let (_, material) = raw_key(&dir);
    let mut vault = Vault::create(&dir.join("v.vault"), &material, FAST).unwrap();
    for (kind, secret) in [
        (KeyKind::Ed25519, &b"not a pem"[..]),
        (
            KeyKind::Rsa,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ),
        (
            KeyKind::EcP256,
            b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        ),
        (KeyKind::Hmac, b""),
    ] {
        let mut bad = entry(secret);
        bad.kind = kind;
        assert!(
            matches!(vault.add("bad", &bad), Err(VaultError::Material(_))),
            "{kind:?}"
        );
    }
    let mut bad_passphrase = entry(b"s");
    bad_passphrase.passphrase = Some(Zeroizing::new(b"has a space".to_vec()));
    assert!(matches!(
        vault.add("bad", &bad_passphrase),
        Err(VaultError::Material(KeyError::Passphrase))
    ));
    assert!(vault.names().is_empty());
}

#[test]
fn key_sources_are_classified() {
    let hex = Zeroizing::new(format!("{}\n", "ab".repeat(32)).into_bytes());
    assert!(matches!(classify(hex), Ok(KeyMaterial::Raw(k)) if k[0] == 0xab));
    let text = Zeroizing::new(b"a passphrase\n".to_vec());
    assert!(matches!(classify(text), Ok(KeyMaterial::Passphrase(p)) if &p[..] == b"a passphrase"));
    assert!(matches!(
        classify(Zeroizing::new(b"\n".to_vec())),
        Err(VaultError::Key(_))
    ));
    let dir = temp("env");
    let missing = read_key(&KeySource::Env("KEYWARD_TEST_SURELY_UNSET_VARIABLE".into()));
    assert!(missing.unwrap_err().to_string().contains("is not set"));
    let key_path = dir.join("loose.key");
    fs::write(&key_path, [1u8; 32]).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = read_key(&KeySource::File(key_path))
        .unwrap_err()
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
}
