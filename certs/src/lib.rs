//! keyward's TLS material: a local certificate authority, the listener's server
//! certificate, and the rustls configurations for the bot listener and for the
//! upstream client. One crypto provider, ring, everywhere.
//!
//! Files in the TLS directory:
//! - `ca.pem`: the CA certificate bots trust;
//! - `ca.key`: its private key (mode 0600), kept to issue server certificates;
//! - `server.pem`: the server certificate followed by the CA certificate;
//! - `server.key`: the server's private key (mode 0600);
//! - `issued/` and `clients.crl.pem`: bot client certificates issued and revoked
//!   (see [`clients`]).

#![forbid(unsafe_code)]

pub mod clients;
pub mod inspect;

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

/// The CA certificate's file name.
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file name.
pub const CA_KEY: &str = "ca.key";
/// The server certificate chain's file name.
pub const SERVER_CERT: &str = "server.pem";
/// The server key's file name.
pub const SERVER_KEY: &str = "server.key";

const CA_COMMON_NAME: &str = "keyward local CA";
const CA_VALIDITY_DAYS: i64 = 3650;
const SERVER_VALIDITY_DAYS: i64 = 397;

/// Why TLS material could not be created or loaded. One variant per operator mistake.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file holds no certificate or no key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
    /// Generating or signing a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("TLS configuration refused: {0}")]
    Tls(#[from] rustls::Error),
    /// A configured name cannot go into a certificate.
    #[error("`{0}` cannot be a certificate name (use letters, digits, '-' and '_', at most 64)")]
    Name(String),
    /// A validity period that ends before it starts.
    #[error("the certificate would expire before it becomes valid")]
    Validity,
    /// No CA to sign with.
    #[error("{}: no CA here; run `keyward certs init` first", .0.display())]
    NoCa(PathBuf),
    /// `revoke` found nothing to revoke.
    #[error(
        "no unrevoked certificate was issued for `{0}`; `keyward certs list` shows what was issued"
    )]
    NothingToRevoke(String),
    /// The system's random source failed.
    #[error("the system random source failed")]
    Random,
    /// The client CA or a revocation list cannot be used to check bots' certificates.
    #[error("client certificate checking cannot be set up: {0}")]
    ClientVerifier(String),
}

/// The one crypto provider: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What [`init`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// True if a new CA was created.
    pub created_ca: bool,
    /// True if a new server certificate was issued.
    pub issued_server: bool,
    /// The CA certificate bots should trust.
    pub ca_path: PathBuf,
}

/// Creates what is missing in `dir`: the CA (only when absent, or with `force`) and a
/// server certificate covering localhost, 127.0.0.1, ::1 and `names`.
pub fn init(dir: &Path, names: &[String], force: bool) -> Result<InitReport, CertsError> {
    fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let ca_cert = dir.join(CA_CERT);
    let ca_key = dir.join(CA_KEY);
    let have_ca = ca_cert.is_file() && ca_key.is_file();
    let created_ca = force || !have_ca;
    if created_ca {
        set_aside_ledger(dir)?;
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key, key.serialize_pem().as_bytes())?;
        write_public(&ca_cert, cert.pem().as_bytes())?;
    }
    let server_cert = dir.join(SERVER_CERT);
    let server_key = dir.join(SERVER_KEY);
    let issued_server = created_ca || !server_cert.is_file() || !server_key.is_file();
    if issued_server {
        reissue_server(dir, names)?;
    }
    if created_ca || !clients::crl_path(dir).is_file() {
        clients::write_crl(dir, OffsetDateTime::now_utc())?;
    }
    Ok(InitReport {
        created_ca,
        issued_server,
        ca_path: ca_cert,
    })
}

/// Issues a new server certificate from the existing CA (never a new CA): for
/// renewal before the old one expires, or for new `names`.
pub fn reissue_server(dir: &Path, names: &[String]) -> Result<(), CertsError> {
    let server_cert = dir.join(SERVER_CERT);
    let server_key = dir.join(SERVER_KEY);
    let ca_cert = dir.join(CA_CERT);
    let ca_key = dir.join(CA_KEY);
    if !ca_cert.is_file() || !ca_key.is_file() {
        return Err(CertsError::NoCa(dir.to_path_buf()));
    }
    let key_pair = KeyPair::from_pem(&inspect::read(&ca_key)?)?;
    let ca_pem = inspect::read(&ca_cert)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &key_pair)?;
    let key = KeyPair::generate()?;
    let cert = server_params(names)?.signed_by(&key, &issuer)?;
    // The key first: each write is atomic, and a reload between the two finds a
    // pair that does not match, fails, and keeps the old one until the second lands.
    write_private(&server_key, key.serialize_pem().as_bytes())?;
    write_public(&server_cert, format!("{}{ca_pem}", cert.pem()).as_bytes())
}

/// A CA being replaced takes its issued client certificates' ledger with it: moved
/// aside (not deleted), since the new CA cannot revoke what the old one signed.
fn set_aside_ledger(dir: &Path) -> Result<(), CertsError> {
    let ledger = dir.join(clients::ISSUED_DIR);
    if ledger.is_dir() {
        let aside = dir.join(format!(
            "{}-replaced-{}",
            clients::ISSUED_DIR,
            OffsetDateTime::now_utc().unix_timestamp()
        ));
        fs::rename(&ledger, &aside).map_err(|source| io(&aside, source))?;
    }
    Ok(())
}

fn ca_params() -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    // A random suffix tells one keyward's CA from another's: with equal names, a
    // certificate from the wrong CA would be refused for its signature rather than
    // named as coming from an unknown issuer.
    name.push(
        DnType::CommonName,
        format!("{CA_COMMON_NAME} {}", inspect::hex(&random_bytes::<4>()?)),
    );
    name.push(DnType::OrganizationName, "keyward");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    Ok(params)
}

fn server_params(names: &[String]) -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "keyward");
    params.distinguished_name = name;
    let mut sans = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
    ];
    for extra in names {
        let san = match extra.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                extra
                    .clone()
                    .try_into()
                    .map_err(|_| CertsError::Name(extra.clone()))?,
            ),
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(SERVER_VALIDITY_DAYS);
    Ok(params)
}

/// How the bot listener checks client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// The CA bundle client certificates must chain to.
    pub ca: PathBuf,
    /// Revocation lists to apply. With any, a certificate whose status none of them
    /// can tell is refused; with none, nothing is checked for revocation.
    pub crls: Vec<PathBuf>,
}

/// The bot listener's configuration from `dir`: TLS 1.3 only (every client keyward
/// serves speaks it; nothing older is offered), ALPN `h2` then `http/1.1`; with
/// `clients`, a client certificate is required.
pub fn server_config(
    dir: &Path,
    clients: Option<&ClientAuth>,
) -> Result<Arc<ServerConfig>, CertsError> {
    let chain = load_certs(&dir.join(SERVER_CERT))?;
    let key = load_key(&dir.join(SERVER_KEY))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(clients) => builder.with_client_cert_verifier(client_verifier(clients)?),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub(crate) fn client_verifier(
    clients: &ClientAuth,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, CertsError> {
    use rustls_pki_types::CertificateRevocationListDer;
    let mut roots = RootCertStore::empty();
    for cert in load_certs(&clients.ca)? {
        roots.add(cert)?;
    }
    let mut crls = Vec::new();
    for path in &clients.crls {
        let found: Vec<CertificateRevocationListDer<'static>> =
            CertificateRevocationListDer::pem_file_iter(path)
                .map_err(|e| pem_error(path, &e, "cannot read the revocation list"))?
                .collect::<Result<_, _>>()
                .map_err(|e| pem_error(path, &e, "invalid revocation list PEM"))?;
        if found.is_empty() {
            return Err(CertsError::Pem {
                path: path.clone(),
                what: "no X509 CRL block found",
            });
        }
        crls.extend(found);
    }
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .with_crls(crls)
            // keyward's CA issues bot certificates directly; there are no
            // intermediates whose revocation would need checking.
            .only_check_end_entity_revocation();
    builder
        .build()
        .map_err(|e| CertsError::ClientVerifier(e.to_string()))
}

/// The upstream client's configuration: the web PKI roots, or only the CA in
/// `custom_ca` (testnets and tests). TLS 1.2 and 1.3, since exchanges' edges vary.
pub fn client_config(custom_ca: Option<&Path>) -> Result<Arc<ClientConfig>, CertsError> {
    let mut roots = RootCertStore::empty();
    match custom_ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // ALPN is left to the HTTP client, which offers exactly the protocols it speaks.
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, &e, "cannot read certificates"))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(path, &e, "invalid certificate PEM"))?;
    if certs.is_empty() {
        return Err(CertsError::Pem {
            path: path.to_path_buf(),
            what: "no CERTIFICATE block found",
        });
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| pem_error(path, &e, "no usable PRIVATE KEY block found"))
}

fn pem_error(path: &Path, error: &rustls_pki_types::pem::Error, what: &'static str) -> CertsError {
    match error {
        rustls_pki_types::pem::Error::Io(e) => CertsError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(e.kind(), e.to_string()),
        },
        _ => CertsError::Pem {
            path: path.to_path_buf(),
            what,
        },
    }
}

pub(crate) fn io(path: &Path, source: std::io::Error) -> CertsError {
    CertsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<(), CertsError> {
    write_file(path, bytes, 0o644)
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertsError> {
    write_file(path, bytes, 0o600)
}

/// `N` bytes from the system's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], CertsError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertsError::Random)?;
    Ok(bytes)
}

/// Writes through a temporary file created with its final mode, so a private key is
/// never readable by others, not even for a moment.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertsError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let temp = path.with_extension("tmp-keyward");
    let _ = fs::remove_file(&temp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .map_err(|source| io(&temp, source))?;
    file.write_all(bytes).map_err(|source| io(&temp, source))?;
    file.sync_all().map_err(|source| io(&temp, source))?;
    fs::rename(&temp, path).map_err(|source| io(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keyward-certs-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn init_creates_a_ca_and_a_server_certificate_once() {
        let dir = temp("init");
        let report = init(
            &dir,
            &["keyward.local".to_owned(), "10.1.2.3".to_owned()],
            false,
        )
        .unwrap();
        assert!(report.created_ca && report.issued_server);
        let ca_before = fs::read(dir.join(CA_CERT)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        for key in [CA_KEY, SERVER_KEY] {
            let mode = fs::metadata(dir.join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        let again = init(&dir, &[], false).unwrap();
        assert!(!again.created_ca && !again.issued_server);
        assert_eq!(
            fs::read(dir.join(CA_CERT)).unwrap(),
            ca_before,
            "an existing CA is never replaced"
        );
        fs::remove_file(dir.join(SERVER_CERT)).unwrap();
        let reissue = init(&dir, &[], false).unwrap();
        assert!(!reissue.created_ca && reissue.issued_server);
        assert_eq!(fs::read(dir.join(CA_CERT)).unwrap(), ca_before);
        assert!(server_config(&dir, None).is_ok());
        assert_chains(&dir);
        assert!(client_config(Some(&dir.join(CA_CERT))).is_ok());
        let forced = init(&dir, &[], true).unwrap();
        assert!(forced.created_ca);
        assert_ne!(fs::read(dir.join(CA_CERT)).unwrap(), ca_before);
        let _ = fs::remove_dir_all(&dir);
    }

    /// The server certificate verifies against the CA bots trust, for each name.
    fn assert_chains(dir: &Path) {
        use rustls::client::danger::ServerCertVerifier as _;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            {
                let mut roots = RootCertStore::empty();
                roots
                    .add(load_certs(&dir.join(CA_CERT)).unwrap()[0].clone())
                    .unwrap();
                Arc::new(roots)
            },
            provider(),
        )
        .build()
        .unwrap();
        let chain = load_certs(&dir.join(SERVER_CERT)).unwrap();
        for name in ["localhost", "127.0.0.1"] {
            verifier
                .verify_server_cert(
                    &chain[0],
                    &chain[1..],
                    &rustls_pki_types::ServerName::try_from(name).unwrap(),
                    &[],
                    rustls_pki_types::UnixTime::now(),
                )
                .unwrap();
        }
    }

    #[test]
    fn a_reissued_server_certificate_chains_to_the_same_ca() {
        let dir = temp("reissue");
        init(&dir, &[], false).unwrap();
        let ca = fs::read(dir.join(CA_CERT)).unwrap();
        let before = fs::read(dir.join(SERVER_CERT)).unwrap();
        reissue_server(&dir, &["keyward.internal".to_owned()]).unwrap();
        assert_ne!(fs::read(dir.join(SERVER_CERT)).unwrap(), before);
        assert_eq!(fs::read(dir.join(CA_CERT)).unwrap(), ca);
        assert_chains(&dir);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_or_bad_files_are_named() {
        let dir = temp("bad");
        fs::create_dir_all(&dir).unwrap();
        let err = server_config(&dir, None).unwrap_err().to_string();
        assert!(err.contains("server.pem"), "{err}");
        fs::write(dir.join(SERVER_CERT), "not pem").unwrap();
        let err = server_config(&dir, None).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE block"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }
}
