//! Exchange credentials in memory and the signing primitives that use them.
//!
//! A [`Credential`] is deliberately not `Clone`, `Serialize` or `Display`, and its
//! `Debug` shows only the key type and a short fingerprint of the API key. Secret
//! bytes live in zeroizing buffers and are exposed only inside this module.

use std::fmt;

use base64::Engine as _;
use ring::signature::{self, Ed25519KeyPair, RsaKeyPair};
use zeroize::Zeroizing;

/// The kind of exchange key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A shared secret for HMAC.
    Hmac,
    /// An Ed25519 private key (PKCS#8 PEM).
    Ed25519,
    /// An RSA private key (PKCS#8 or PKCS#1 PEM).
    Rsa,
}

impl KeyKind {
    /// The name used in the vault and in listings.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hmac => "hmac",
            Self::Ed25519 => "ed25519",
            Self::Rsa => "rsa",
        }
    }

    /// Parses a key-type name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Hmac, Self::Ed25519, Self::Rsa]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// Why key material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The API key id cannot be sent in a header.
    #[error("the API key must be 1 to 256 printable ASCII characters")]
    ApiKey,
    /// The HMAC secret is empty or absurdly long.
    #[error("the API secret must be 1 to 1024 bytes")]
    HmacSecret,
    /// The text is not a PEM block of the expected label.
    #[error("expected a PEM private key ({0})")]
    Pem(&'static str),
    /// The key material does not parse as the stated type.
    #[error("the private key is not a valid {0} key")]
    Rejected(&'static str),
}

/// Why signing failed. Never carries key material or the signed payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The signature scheme needs a different key type.
    #[error("the account's key type cannot produce this signature")]
    WrongKeyKind,
    /// The crypto library refused the key or the operation.
    #[error("signing failed")]
    Failed,
    /// The API key cannot be put in a header.
    #[error("the account's API key is not a valid header value")]
    InvalidApiKey,
    /// The permit was issued for a different endpoint than the call being signed.
    #[error("the permit does not match the request being signed")]
    PermitMismatch,
}

/// An exchange API key and its secret.
pub struct Credential {
    api_key: String,
    kind: KeyKind,
    /// HMAC: the secret bytes. Ed25519/RSA: the private key's DER.
    secret: Zeroizing<Vec<u8>>,
    rsa_pkcs1: bool,
}

impl Credential {
    /// Validates the key material now, so a bad key is refused when it is stored
    /// rather than at the first order.
    pub fn new(api_key: &str, kind: KeyKind, secret: &[u8]) -> Result<Self, KeyError> {
        let api_key_ok =
            (1..=256).contains(&api_key.len()) && api_key.bytes().all(|b| b.is_ascii_graphic());
        if !api_key_ok {
            return Err(KeyError::ApiKey);
        }
        let (der, rsa_pkcs1) = match kind {
            KeyKind::Hmac => {
                if !(1..=1024).contains(&secret.len()) {
                    return Err(KeyError::HmacSecret);
                }
                (Zeroizing::new(secret.to_vec()), false)
            }
            KeyKind::Ed25519 => {
                let der = pem_block(secret, "PRIVATE KEY")
                    .ok_or(KeyError::Pem("PKCS#8 'PRIVATE KEY'"))?;
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                    .map_err(|_| KeyError::Rejected("Ed25519"))?;
                (der, false)
            }
            KeyKind::Rsa => {
                if let Some(der) = pem_block(secret, "PRIVATE KEY") {
                    RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError::Rejected("RSA"))?;
                    (der, false)
                } else if let Some(der) = pem_block(secret, "RSA PRIVATE KEY") {
                    RsaKeyPair::from_der(&der).map_err(|_| KeyError::Rejected("RSA"))?;
                    (der, true)
                } else {
                    return Err(KeyError::Pem(
                        "PKCS#8 'PRIVATE KEY' or PKCS#1 'RSA PRIVATE KEY'",
                    ));
                }
            }
        };
        Ok(Self {
            api_key: api_key.to_owned(),
            kind,
            secret: der,
            rsa_pkcs1,
        })
    }

    /// The API key id (sent to the exchange in a header; not the secret).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The key type.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// A short, stable fingerprint of the API key id for logs and listings.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.api_key)
    }

    /// HMAC-SHA256 of `message` under an HMAC secret.
    pub fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32], SignError> {
        if self.kind != KeyKind::Hmac {
            return Err(SignError::WrongKeyKind);
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
        let tag = ring::hmac::sign(&key, message);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// An Ed25519 signature, or an RSASSA-PKCS1-v1_5 SHA-256 signature, of `message`.
    pub fn sign_asymmetric(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match self.kind {
            KeyKind::Hmac => Err(SignError::WrongKeyKind),
            KeyKind::Ed25519 => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.secret)
                    .map_err(|_| SignError::Failed)?;
                Ok(pair.sign(message).as_ref().to_vec())
            }
            KeyKind::Rsa => {
                let pair = if self.rsa_pkcs1 {
                    RsaKeyPair::from_der(&self.secret)
                } else {
                    RsaKeyPair::from_pkcs8(&self.secret)
                }
                .map_err(|_| SignError::Failed)?;
                let mut out = vec![0u8; pair.public().modulus_len()];
                let rng = ring::rand::SystemRandom::new();
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(|_| SignError::Failed)?;
                Ok(out)
            }
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("api_key", &format_args!("fp:{}", self.fingerprint()))
            .field("kind", &self.kind)
            .field("secret", &format_args!("[redacted]"))
            .finish()
    }
}

/// First 8 hex digits of SHA-256 of an API key id.
pub fn fingerprint(api_key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, api_key.as_bytes());
    hex(&digest.as_ref()[..4])
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Decodes the first PEM block with `label` into zeroizing DER.
fn pem_block(text: &[u8], label: &str) -> Option<Zeroizing<Vec<u8>>> {
    let text = std::str::from_utf8(text).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: Zeroizing<String> = Zeroizing::new(
        text[start..stop]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .ok()?;
    Some(Zeroizing::new(der))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIIJEYWtGBrhACmb9Dvy+qa8WEf0lQOl1s4CLIAB9m89u\n-----END PRIVATE KEY-----\n";

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credential::new("APIKEYCANARY", KeyKind::Hmac, b"SECRETCANARY").unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("SECRETCANARY"), "{printed}");
        assert!(!printed.contains("APIKEYCANARY"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn refuses_bad_material_at_construction() {
        assert_eq!(
            Credential::new("", KeyKind::Hmac, b"s").unwrap_err(),
            KeyError::ApiKey
        );
        assert_eq!(
            Credential::new("k y", KeyKind::Hmac, b"s").unwrap_err(),
            KeyError::ApiKey
        );
        assert_eq!(
            Credential::new("k", KeyKind::Hmac, b"").unwrap_err(),
            KeyError::HmacSecret
        );
        assert!(matches!(
            Credential::new("k", KeyKind::Ed25519, b"not pem").unwrap_err(),
            KeyError::Pem(_)
        ));
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            Credential::new("k", KeyKind::Ed25519, garbage.as_bytes()).unwrap_err(),
            KeyError::Rejected(_)
        ));
        assert!(matches!(
            Credential::new("k", KeyKind::Rsa, ED25519_PEM.as_bytes()).unwrap_err(),
            KeyError::Rejected(_)
        ));
        assert!(Credential::new("k", KeyKind::Ed25519, ED25519_PEM.as_bytes()).is_ok());
    }

    #[test]
    fn primitives_refuse_the_wrong_key_kind() {
        let hmac = Credential::new("k", KeyKind::Hmac, b"s").unwrap();
        assert_eq!(hmac.sign_asymmetric(b"x"), Err(SignError::WrongKeyKind));
        let ed = Credential::new("k", KeyKind::Ed25519, ED25519_PEM.as_bytes()).unwrap();
        assert_eq!(ed.hmac_sha256(b"x"), Err(SignError::WrongKeyKind));
    }
}
