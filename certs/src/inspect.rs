//! Reading certificates back: who they name, who issued them, their serial and when
//! they expire. For `certs list`, expiry warnings and metrics, and for binding a bot
//! to the client certificate it presented.

use std::fs;
use std::path::Path;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::{CertsError, io};

/// What keyward needs to know of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common name (empty if it has none, or more than one).
    pub subject: String,
    /// The issuer's common name.
    pub issuer: String,
    /// The serial number, lowercase hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// True for a CA certificate.
    pub is_ca: bool,
}

impl CertInfo {
    /// Whole days from `now` until it expires (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

/// Every certificate in a PEM file, in order.
pub fn inspect_pem(path: &Path) -> Result<Vec<CertInfo>, CertsError> {
    crate::load_certs(path)?
        .iter()
        .map(|der| {
            inspect_der(der).ok_or_else(|| CertsError::Pem {
                path: path.to_path_buf(),
                what: "a certificate that cannot be parsed",
            })
        })
        .collect()
}

/// One DER certificate, or None if it is not a well-formed X.509 certificate.
pub fn inspect_der(der: &[u8]) -> Option<CertInfo> {
    let (rest, cert) = X509Certificate::from_der(der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let validity = cert.validity();
    Some(CertInfo {
        subject: single_common_name(cert.subject()).unwrap_or_default(),
        issuer: single_common_name(cert.issuer()).unwrap_or_default(),
        serial: hex(cert.raw_serial()),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        is_ca: cert.is_ca(),
    })
}

/// The subject common name of a certificate a bot presented: the bot it was issued
/// for. None when the certificate has no common name or several, so an ambiguous
/// certificate names nobody.
pub fn client_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    single_common_name(cert.subject())
}

fn single_common_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    let mut names = name.iter_common_name();
    let first = names.next()?.as_str().ok()?.to_owned();
    names.next().is_none().then_some(first)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Reads a whole small file.
pub(crate) fn read(path: &Path) -> Result<String, CertsError> {
    fs::read_to_string(path).map_err(|source| io(path, source))
}
