//! Bot client certificates: issuing them from keyward's CA, the ledger of what was
//! issued, and revocation.
//!
//! The ledger (`issued/` in the TLS directory) is the source of truth: one
//! `<serial>.pem` per issued certificate (public, no key) and a `<serial>.revoked`
//! marker holding the revocation time. The revocation list the bot listener loads
//! (`clients.crl.pem`) is derived from it, so a lost or damaged list is rebuilt with
//! every revocation still in it, never silently emptied.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::inspect::{CertInfo, inspect_der, read};
use crate::{CA_CERT, CA_KEY, CertsError, io, write_private, write_public};

/// The ledger directory inside the TLS directory.
pub const ISSUED_DIR: &str = "issued";
/// The revocation list of client certificates issued by keyward's CA.
pub const CRL_FILE: &str = "clients.crl.pem";
/// How far ahead the list's `nextUpdate` lies. keyward rewrites the list on every
/// revocation and does not treat an old list as stale; the field is required.
const CRL_HORIZON_DAYS: i64 = 3650;
/// Longest bot name that goes into a certificate.
const MAX_BOT_NAME: usize = 64;

/// A newly issued client certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
    /// What it says.
    pub info: CertInfo,
}

/// One certificate in the ledger.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    /// What it says.
    pub info: CertInfo,
    /// When it was revoked, if it was.
    pub revoked: Option<OffsetDateTime>,
}

/// The revocation list's path in `dir`.
pub fn crl_path(dir: &Path) -> PathBuf {
    dir.join(CRL_FILE)
}

/// Issues a client certificate naming `bot`, valid from `not_before` to `not_after`,
/// signed by the CA in `dir`; writes `<bot>.pem` and `<bot>.key` into `out` and the
/// certificate into the ledger.
pub fn issue_client(
    dir: &Path,
    bot: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    out: &Path,
) -> Result<Issued, CertsError> {
    let valid_name = !bot.is_empty()
        && bot.len() <= MAX_BOT_NAME
        && bot
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        return Err(CertsError::Name(bot.to_owned()));
    }
    if not_after <= not_before {
        return Err(CertsError::Validity);
    }
    let ca_key = load_ca_key(dir)?;
    let issuer = ca_issuer(dir, &ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, bot);
    name.push(DnType::OrganizationName, "keyward bot");
    params.distinguished_name = name;
    params.serial_number = Some(random_serial()?);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let info = inspect_der(cert.der()).ok_or(CertsError::Validity)?;
    let ledger = dir.join(ISSUED_DIR);
    fs::create_dir_all(&ledger).map_err(|source| io(&ledger, source))?;
    write_public(
        &ledger.join(format!("{}.pem", info.serial)),
        cert.pem().as_bytes(),
    )?;
    fs::create_dir_all(out).map_err(|source| io(out, source))?;
    let cert_path = out.join(format!("{bot}.pem"));
    let key_path = out.join(format!("{bot}.key"));
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_public(&cert_path, cert.pem().as_bytes())?;
    if !crl_path(dir).is_file() {
        write_crl(dir, not_before.max(OffsetDateTime::now_utc()))?;
    }
    Ok(Issued {
        cert: cert_path,
        key: key_path,
        info,
    })
}

/// Every certificate in the ledger, oldest expiry first.
pub fn ledger(dir: &Path) -> Result<Vec<LedgerEntry>, CertsError> {
    let ledger = dir.join(ISSUED_DIR);
    let entries = match fs::read_dir(&ledger) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io(&ledger, source)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| io(&ledger, source))?.path();
        if path.extension().is_none_or(|e| e != "pem") {
            continue;
        }
        let certs = crate::load_certs(&path)?;
        let info = certs
            .first()
            .and_then(|der| inspect_der(der))
            .ok_or_else(|| CertsError::Pem {
                path: path.clone(),
                what: "a certificate that cannot be parsed",
            })?;
        let marker = path.with_extension("revoked");
        let revoked = if marker.exists() {
            let text = read(&marker)?;
            let when =
                OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
                    .map_err(|_| CertsError::Pem {
                        path: marker.clone(),
                        what: "a revocation time in RFC 3339",
                    })?;
            Some(when)
        } else {
            None
        };
        found.push(LedgerEntry { info, revoked });
    }
    found.sort_by(|a, b| {
        (a.info.not_after, &a.info.serial).cmp(&(b.info.not_after, &b.info.serial))
    });
    Ok(found)
}

/// Revokes every unrevoked certificate issued for `bot` (only the one with `serial`,
/// if given) and rewrites the revocation list. Returns what it revoked.
pub fn revoke(
    dir: &Path,
    bot: &str,
    serial: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<CertInfo>, CertsError> {
    let targets: Vec<CertInfo> = ledger(dir)?
        .into_iter()
        .filter(|e| e.revoked.is_none() && e.info.subject == bot)
        .filter(|e| serial.is_none_or(|s| e.info.serial.eq_ignore_ascii_case(s)))
        .map(|e| e.info)
        .collect();
    if targets.is_empty() {
        return Err(CertsError::NothingToRevoke(bot.to_owned()));
    }
    let when = now
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| CertsError::Validity)?;
    for info in &targets {
        let marker = dir
            .join(ISSUED_DIR)
            .join(format!("{}.revoked", info.serial));
        write_public(&marker, when.as_bytes())?;
    }
    write_crl(dir, now)?;
    Ok(targets)
}

/// Writes the revocation list from the ledger, signed by the CA.
pub fn write_crl(dir: &Path, now: OffsetDateTime) -> Result<(), CertsError> {
    let mut revoked_certs = Vec::new();
    for entry in ledger(dir)? {
        if let Some(when) = entry.revoked {
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&unhex(&entry.info.serial)),
                revocation_time: when,
                reason_code: None,
                invalidity_date: None,
            });
        }
    }
    let ca_key = load_ca_key(dir)?;
    let issuer = ca_issuer(dir, &ca_key)?;
    let number = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(u64::MAX);
    let crl = CertificateRevocationListParams {
        this_update: now,
        next_update: now + Duration::days(CRL_HORIZON_DAYS),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)?;
    write_public(&crl_path(dir), crl.pem()?.as_bytes())
}

fn load_ca_key(dir: &Path) -> Result<KeyPair, CertsError> {
    let path = dir.join(CA_KEY);
    if !path.is_file() {
        return Err(CertsError::NoCa(dir.to_path_buf()));
    }
    Ok(KeyPair::from_pem(&read(&path)?)?)
}

/// The CA exactly as its certificate says (name, key identifier method, key usages),
/// so what it signs chains to the certificate bots and keyward trust.
fn ca_issuer<'k>(dir: &Path, key: &'k KeyPair) -> Result<Issuer<'static, &'k KeyPair>, CertsError> {
    let path = dir.join(CA_CERT);
    if !path.is_file() {
        return Err(CertsError::NoCa(dir.to_path_buf()));
    }
    Ok(Issuer::from_ca_cert_pem(&read(&path)?, key)?)
}

/// 16 random bytes, positive and with no leading zero byte, so the serial reads back
/// as the same hex it was written with.
fn random_serial() -> Result<SerialNumber, CertsError> {
    let mut bytes = crate::random_bytes::<16>()?;
    bytes[0] = 0x40 | (bytes[0] & 0x3f);
    Ok(SerialNumber::from_slice(&bytes))
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientAuth, init, load_certs};
    use rustls_pki_types::UnixTime;

    fn temp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("keyward-clients-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// The verifier the bot listener would use, asked directly about one certificate.
    fn verdict(dir: &Path, ca_dir: &Path, cert: &Path) -> Result<(), String> {
        let auth = ClientAuth {
            ca: ca_dir.join(CA_CERT),
            crls: vec![crl_path(ca_dir)],
        };
        let verifier = crate::client_verifier(&auth).map_err(|e| e.to_string())?;
        let chain = load_certs(cert).map_err(|e| e.to_string())?;
        let _ = dir;
        verifier
            .verify_client_cert(&chain[0], &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn issued_certificates_verify_until_revoked_and_the_ledger_rebuilds_the_list() {
        let dir = temp("issue");
        init(&dir, &[], false).unwrap();
        assert!(crl_path(&dir).is_file(), "init writes an empty list");
        let out = dir.join("out");
        let now = OffsetDateTime::now_utc();
        let a = issue_client(
            &dir,
            "a",
            now - Duration::hours(1),
            now + Duration::days(30),
            &out,
        )
        .unwrap();
        assert_eq!(a.info.subject, "a");
        assert!(
            a.info.issuer.starts_with("keyward local CA "),
            "{}",
            a.info.issuer
        );
        assert_eq!(a.info.serial.len(), 32);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&a.key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A second certificate for the same bot (into another directory: issuing
        // writes `<bot>.pem` and would replace the first file).
        let a2 = issue_client(
            &dir,
            "a",
            now - Duration::hours(1),
            now + Duration::days(30),
            &dir.join("out2"),
        )
        .unwrap();
        let b = issue_client(
            &dir,
            "b",
            now - Duration::hours(1),
            now + Duration::days(30),
            &out,
        )
        .unwrap();
        assert_eq!(verdict(&dir, &dir, &b.cert), Ok(()));
        assert_eq!(
            crate::inspect::client_name(&load_certs(&b.cert).unwrap()[0]),
            Some("b".to_owned())
        );

        // Revoking one serial leaves the other certificate of the same bot valid.
        let revoked = revoke(&dir, "a", Some(&a.info.serial), now).unwrap();
        assert_eq!(revoked.len(), 1);
        let refused = verdict(&dir, &dir, &a.cert).unwrap_err();
        assert!(refused.contains("Revoked"), "{refused}");
        assert_eq!(verdict(&dir, &dir, &b.cert), Ok(()));
        assert_eq!(verdict(&dir, &dir, &a2.cert), Ok(()));
        let listed = ledger(&dir).unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed.iter().filter(|e| e.revoked.is_some()).count(), 1);
        // Revoking again finds only what is left.
        assert_eq!(
            revoke(&dir, "a", None, now).unwrap()[0].serial,
            a2.info.serial
        );
        assert!(matches!(
            revoke(&dir, "a", None, now),
            Err(CertsError::NothingToRevoke(_))
        ));

        // A lost list is rebuilt from the ledger at the next init, revocations kept.
        fs::remove_file(crl_path(&dir)).unwrap();
        init(&dir, &[], false).unwrap();
        assert!(
            verdict(&dir, &dir, &a.cert)
                .unwrap_err()
                .contains("Revoked")
        );
        assert_eq!(verdict(&dir, &dir, &b.cert), Ok(()));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn expired_foreign_and_malformed_names_are_refused() {
        let dir = temp("refuse");
        let other = temp("other-ca");
        init(&dir, &[], false).unwrap();
        init(&other, &[], false).unwrap();
        let now = OffsetDateTime::now_utc();
        let expired = issue_client(
            &dir,
            "a",
            now - Duration::days(2),
            now - Duration::days(1),
            &dir.join("out"),
        )
        .unwrap();
        assert!(
            verdict(&dir, &dir, &expired.cert)
                .unwrap_err()
                .contains("Expired")
        );
        let foreign = issue_client(
            &other,
            "a",
            now - Duration::hours(1),
            now + Duration::days(1),
            &other.join("out"),
        )
        .unwrap();
        let v = verdict(&dir, &dir, &foreign.cert);
        assert!(v.clone().unwrap_err().contains("UnknownIssuer"), "{v:?}");
        for bad in ["", "a b", "a/b", "ä", &"x".repeat(65)] {
            assert!(matches!(
                issue_client(&dir, bad, now, now + Duration::days(1), &dir),
                Err(CertsError::Name(_))
            ));
        }
        assert!(matches!(
            issue_client(&dir, "a", now, now, &dir),
            Err(CertsError::Validity)
        ));
        assert!(matches!(
            issue_client(&temp("none"), "a", now, now + Duration::days(1), &dir),
            Err(CertsError::NoCa(_))
        ));
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&other);
    }

    #[test]
    fn replacing_the_ca_sets_the_old_ledger_aside() {
        let dir = temp("force");
        init(&dir, &[], false).unwrap();
        let now = OffsetDateTime::now_utc();
        issue_client(&dir, "a", now, now + Duration::days(1), &dir.join("out")).unwrap();
        init(&dir, &[], true).unwrap();
        assert!(ledger(&dir).unwrap().is_empty());
        let aside = fs::read_dir(&dir).unwrap().filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("issued-replaced-")
        });
        assert!(aside, "the old ledger is kept");
        let _ = fs::remove_dir_all(&dir);
    }
}
