//! Exchange credentials in memory and the signing primitives that use them.
//!
//! A [`Credential`] is deliberately not `Clone`, `Serialize` or `Display`, and its
//! `Debug` shows only the key type and a short fingerprint of the API key. Its secret
//! and passphrase are held shielded ([`crate::shield`]) and opened only inside the
//! signing primitives below, each of which builds the key state it needs, uses it for
//! one message, and lets it go.

use std::fmt;

use base64::Engine as _;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use zeroize::Zeroizing;

pub use keyward_venues::{KeyKind, SignError};
use keyward_venues::{KeyUnfit, Signer, hex};

use crate::shield::{MAX_SECRET_BYTES, Sealed, ShieldError};

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
    /// The passphrase cannot be sent in a header.
    #[error("the passphrase must be 1 to 256 printable ASCII characters")]
    Passphrase,
    /// The secret could not be held in protected memory.
    #[error("{0}")]
    Shield(#[from] ShieldError),
    /// The venue issues its HMAC secret as base64 text (Kraken) and this one is not
    /// valid padded base64 of at least one byte.
    #[error(
        "the API secret must be the base64 text the exchange issued (standard alphabet, padded)"
    )]
    NotBase64,
}

impl From<KeyUnfit> for KeyError {
    fn from(unfit: KeyUnfit) -> Self {
        match unfit {
            KeyUnfit::NotBase64 => Self::NotBase64,
        }
    }
}

impl From<ShieldError> for SignError {
    fn from(_: ShieldError) -> Self {
        Self::Failed
    }
}

/// How the shielded private key bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// HMAC secret bytes as given.
    Raw,
    /// PKCS#8 DER (Ed25519, RSA, EC).
    Pkcs8,
    /// PKCS#1 `RSAPrivateKey` DER.
    Pkcs1,
    /// EC P-256: the 32-byte private scalar followed by the 65-byte public point.
    EcScalarAndPoint,
}

/// An exchange API key and its secret.
pub struct Credential {
    api_key: String,
    kind: KeyKind,
    encoding: Encoding,
    secret: Sealed,
    passphrase: Option<Sealed>,
}

impl Credential {
    /// Validates the key material now, so a bad key is refused when it is stored
    /// rather than at the first order, then shields it.
    pub fn new(api_key: &str, kind: KeyKind, secret: &[u8]) -> Result<Self, KeyError> {
        if !header_safe(api_key.as_bytes()) {
            return Err(KeyError::ApiKey);
        }
        let (material, encoding) = decode_private_key(kind, secret)?;
        Ok(Self {
            api_key: api_key.to_owned(),
            kind,
            encoding,
            secret: Sealed::seal(&material)?,
            passphrase: None,
        })
    }

    /// Adds the passphrase some venues (OKX, KuCoin) send with every request.
    pub fn with_passphrase(mut self, passphrase: &[u8]) -> Result<Self, KeyError> {
        if !header_safe(passphrase) {
            return Err(KeyError::Passphrase);
        }
        self.passphrase = Some(Sealed::seal(passphrase)?);
        Ok(self)
    }

    /// The API key id (sent to the exchange in a header; not the secret).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The key type.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// True if the entry carries a passphrase.
    pub fn has_passphrase(&self) -> bool {
        self.passphrase.is_some()
    }

    /// A short, stable fingerprint of the API key id for logs and listings.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.api_key)
    }

    /// Runs `use_passphrase` with the passphrase in plaintext (it goes into a header,
    /// so the caller builds a sensitive header value from it and nothing else).
    pub fn with_passphrase_text<R>(
        &self,
        use_passphrase: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, SignError> {
        let sealed = self.passphrase.as_ref().ok_or(SignError::NoPassphrase)?;
        Ok(sealed.with_secret(use_passphrase)?)
    }

    /// HMAC-SHA256 of `message` under an HMAC secret.
    pub fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32], SignError> {
        self.hmac(ring::hmac::HMAC_SHA256, message).map(|tag| {
            let mut out = [0u8; 32];
            out.copy_from_slice(&tag[..32]);
            out
        })
    }

    /// HMAC-SHA512 of `message` under an HMAC secret.
    pub fn hmac_sha512(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        self.hmac(ring::hmac::HMAC_SHA512, message)
    }

    /// HMAC-SHA512 of `message` keyed with the base64-decoded secret (Kraken issues
    /// its secrets as base64 text and keys the HMAC with the decoded bytes). The
    /// decoded key lives only inside this call and is zeroed after it.
    pub fn hmac_sha512_base64_key(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        if self.kind != KeyKind::Hmac {
            return Err(SignError::WrongKeyKind);
        }
        self.secret
            .with_secret(|secret| {
                with_base64_key(secret, |key| {
                    let tag = ring::hmac::sign(
                        &ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key),
                        message,
                    );
                    let mut out = [0u8; 64];
                    out.copy_from_slice(tag.as_ref());
                    out
                })
                .ok_or(SignError::SecretNotBase64)
            })
            .map_err(SignError::from)?
    }

    /// Checks, without revealing it, that the secret is an HMAC secret in padded
    /// standard base64 (what [`Credential::hmac_sha512_base64_key`] needs), so a venue
    /// can refuse a bad secret when it is loaded rather than at the first order.
    pub fn check_base64_secret(&self) -> Result<(), KeyError> {
        if self.kind != KeyKind::Hmac {
            return Err(KeyError::NotBase64);
        }
        let decodes = self
            .secret
            .with_secret(|secret| with_base64_key(secret, |_| ()).is_some())?;
        if decodes {
            Ok(())
        } else {
            Err(KeyError::NotBase64)
        }
    }

    fn hmac(
        &self,
        algorithm: ring::hmac::Algorithm,
        message: &[u8],
    ) -> Result<[u8; 64], SignError> {
        if self.kind != KeyKind::Hmac {
            return Err(SignError::WrongKeyKind);
        }
        self.secret
            .with_secret(|secret| {
                let tag = ring::hmac::sign(&ring::hmac::Key::new(algorithm, secret), message);
                let mut out = [0u8; 64];
                out[..tag.as_ref().len()].copy_from_slice(tag.as_ref());
                out
            })
            .map_err(SignError::from)
    }

    /// An Ed25519 signature, an RSASSA-PKCS1-v1_5 SHA-256 signature, or an ECDSA
    /// P-256 SHA-256 signature (fixed-width r||s) of `message`.
    pub fn sign_asymmetric(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = ring::rand::SystemRandom::new();
        let (kind, encoding) = (self.kind, self.encoding);
        self.secret
            .with_secret(|der| -> Result<Vec<u8>, SignError> {
                match (kind, encoding) {
                    (KeyKind::Ed25519, _) => {
                        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                            .map_err(|_| SignError::Failed)?;
                        Ok(pair.sign(message).as_ref().to_vec())
                    }
                    (KeyKind::Rsa, encoding) => {
                        let pair = if encoding == Encoding::Pkcs1 {
                            RsaKeyPair::from_der(der)
                        } else {
                            RsaKeyPair::from_pkcs8(der)
                        }
                        .map_err(|_| SignError::Failed)?;
                        let mut out = vec![0u8; pair.public().modulus_len()];
                        pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                            .map_err(|_| SignError::Failed)?;
                        Ok(out)
                    }
                    (KeyKind::EcP256, encoding) => {
                        let pair = ec_pair(der, encoding).map_err(|_| SignError::Failed)?;
                        let signed = pair.sign(&rng, message).map_err(|_| SignError::Failed)?;
                        Ok(signed.as_ref().to_vec())
                    }
                    (KeyKind::Hmac, _) => Err(SignError::WrongKeyKind),
                }
            })?
    }
}

impl Signer for Credential {
    fn api_key(&self) -> &str {
        &self.api_key
    }

    fn kind(&self) -> KeyKind {
        self.kind
    }

    fn has_passphrase(&self) -> bool {
        self.passphrase.is_some()
    }

    fn passphrase_header(&self) -> Result<http::HeaderValue, SignError> {
        let mut value = self
            .with_passphrase_text(http::HeaderValue::from_bytes)?
            .map_err(|_| SignError::Failed)?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32], SignError> {
        Self::hmac_sha256(self, message)
    }

    fn hmac_sha512_base64_key(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        Self::hmac_sha512_base64_key(self, message)
    }

    fn secret_is_base64(&self) -> bool {
        self.check_base64_secret().is_ok()
    }

    fn sign_asymmetric(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Self::sign_asymmetric(self, message)
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

/// Runs `use_key` with the strict padded standard base64 decoding of `text` (at
/// least one byte), or returns `None`. Whitespace and the URL-safe alphabet are
/// refused: the secret is exactly the text the exchange issued. The decoded key is
/// on the stack (which the shield scrubs after use) and zeroed when done, never on
/// the heap.
fn with_base64_key<R>(text: &[u8], use_key: impl FnOnce(&[u8]) -> R) -> Option<R> {
    // HMAC secrets are at most 1024 bytes of text, so at most 768 decoded.
    let mut key = Zeroizing::new([0u8; 768]);
    let length = base64::engine::general_purpose::STANDARD
        .decode_slice(text, &mut key[..])
        .ok()?;
    let key = key.get(..length).filter(|k| !k.is_empty())?;
    Some(use_key(key))
}

fn header_safe(text: &[u8]) -> bool {
    (1..=256).contains(&text.len()) && text.iter().all(u8::is_ascii_graphic)
}

/// Parses and validates `secret` as a `kind` key, returning the bytes to shield.
fn decode_private_key(
    kind: KeyKind,
    secret: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, Encoding), KeyError> {
    let decoded = match kind {
        KeyKind::Hmac => {
            if !(1..=1024).contains(&secret.len()) {
                return Err(KeyError::HmacSecret);
            }
            (Zeroizing::new(secret.to_vec()), Encoding::Raw)
        }
        KeyKind::Ed25519 => {
            let der =
                pem_block(secret, "PRIVATE KEY").ok_or(KeyError::Pem("PKCS#8 'PRIVATE KEY'"))?;
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                .map_err(|_| KeyError::Rejected("Ed25519"))?;
            (der, Encoding::Pkcs8)
        }
        KeyKind::Rsa => {
            if let Some(der) = pem_block(secret, "PRIVATE KEY") {
                RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError::Rejected("RSA"))?;
                (der, Encoding::Pkcs8)
            } else if let Some(der) = pem_block(secret, "RSA PRIVATE KEY") {
                RsaKeyPair::from_der(&der).map_err(|_| KeyError::Rejected("RSA"))?;
                (der, Encoding::Pkcs1)
            } else {
                return Err(KeyError::Pem(
                    "PKCS#8 'PRIVATE KEY' or PKCS#1 'RSA PRIVATE KEY'",
                ));
            }
        }
        KeyKind::EcP256 => {
            let decoded = if let Some(der) = pem_block(secret, "EC PRIVATE KEY") {
                (sec1_scalar_and_point(&der)?, Encoding::EcScalarAndPoint)
            } else if let Some(der) = pem_block(secret, "PRIVATE KEY") {
                (der, Encoding::Pkcs8)
            } else {
                return Err(KeyError::Pem(
                    "SEC1 'EC PRIVATE KEY' or PKCS#8 'PRIVATE KEY'",
                ));
            };
            ec_pair(&decoded.0, decoded.1).map_err(|_| KeyError::Rejected("EC P-256"))?;
            decoded
        }
    };
    if decoded.0.len() > MAX_SECRET_BYTES {
        return Err(KeyError::Shield(ShieldError::TooLarge));
    }
    Ok(decoded)
}

fn ec_pair(bytes: &[u8], encoding: Encoding) -> Result<EcdsaKeyPair, ring::error::KeyRejected> {
    let rng = ring::rand::SystemRandom::new();
    let algorithm = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    match (encoding, bytes.split_at_checked(32)) {
        (Encoding::EcScalarAndPoint, Some((scalar, point))) => {
            EcdsaKeyPair::from_private_key_and_public_key(algorithm, scalar, point, &rng)
        }
        _ => EcdsaKeyPair::from_pkcs8(algorithm, bytes, &rng),
    }
}

/// The public key of an EC P-256 credential, uncompressed (for tests and listings).
pub fn ec_public_key(credential: &Credential) -> Option<Vec<u8>> {
    if credential.kind != KeyKind::EcP256 {
        return None;
    }
    let encoding = credential.encoding;
    credential
        .secret
        .with_secret(|bytes| {
            ec_pair(bytes, encoding)
                .ok()
                .map(|pair| pair.public_key().as_ref().to_vec())
        })
        .ok()
        .flatten()
}

/// OID 1.2.840.10045.3.1.7 (prime256v1), DER-encoded content.
const P256_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Reads SEC1 `ECPrivateKey` (RFC 5915): version 1, the private scalar, optional
/// curve parameters (which must name P-256) and the public key, which keyward needs.
fn sec1_scalar_and_point(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let rejected = KeyError::Rejected("EC P-256");
    let (sequence, rest) = der_item(der, 0x30).ok_or(rejected.clone())?;
    if !rest.is_empty() {
        return Err(rejected);
    }
    let (version, fields) = der_item(sequence, 0x02).ok_or(rejected.clone())?;
    let (scalar, mut fields) = der_item(fields, 0x04).ok_or(rejected.clone())?;
    if version != [1] || scalar.len() != 32 {
        return Err(rejected);
    }
    let mut point = None;
    if let Some((parameters, after)) = der_item(fields, 0xa0) {
        let (oid, tail) = der_item(parameters, 0x06).ok_or(rejected.clone())?;
        if oid != P256_OID || !tail.is_empty() {
            return Err(KeyError::Rejected("EC P-256 (the key is on another curve)"));
        }
        fields = after;
    }
    if let Some((public, after)) = der_item(fields, 0xa1) {
        let (bits, tail) = der_item(public, 0x03).ok_or(rejected.clone())?;
        match bits.split_first() {
            Some((0, point_bytes)) if point_bytes.len() == 65 && tail.is_empty() => {
                point = Some(point_bytes);
            }
            _ => return Err(rejected),
        }
        fields = after;
    }
    if !fields.is_empty() {
        return Err(rejected);
    }
    let point = point.ok_or(KeyError::Rejected(
        "EC P-256 (the key must include its public key)",
    ))?;
    let mut out = Zeroizing::new(Vec::with_capacity(97));
    out.extend_from_slice(scalar);
    out.extend_from_slice(point);
    Ok(out)
}

/// One DER item with `tag`: its content and what follows it.
fn der_item(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&n, rest) = rest.split_first()?;
            (usize::from(n), rest)
        }
        0x82 => {
            let (bytes, rest) = rest.split_at_checked(2)?;
            (usize::from(u16::from_be_bytes([bytes[0], bytes[1]])), rest)
        }
        _ => return None,
    };
    rest.split_at_checked(length)
}

/// First 8 hex digits of SHA-256 of an API key id.
pub fn fingerprint(api_key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, api_key.as_bytes());
    hex(&digest.as_ref()[..4])
}

/// Decodes the first PEM block with `label` into zeroizing DER.
fn pem_block(text: &[u8], label: &str) -> Option<Zeroizing<Vec<u8>>> {
    let text = std::str::from_utf8(text).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let mut body = Zeroizing::new(String::with_capacity(stop - start));
    body.extend(
        text[start..stop]
            .chars()
            .filter(|c| !c.is_ascii_whitespace()),
    );
    let mut der = Zeroizing::new(Vec::with_capacity(body.len() / 4 * 3 + 3));
    base64::engine::general_purpose::STANDARD
        .decode_vec(body.as_bytes(), &mut der)
        .ok()?;
    Some(der)
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

    /// The SEC1 key of the Coinbase ES256 vector in ../shared/venues/vectors.json.
    const EC_SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKwf3Uox30cRWzRBOPoPOH5p0Gpb0Dt8zUKXUEM5fMkGoAoGCCqGSM49\nAwEHoUQDQgAEbAtpLlSZYVOwYICz+uEyxcS29vRIujiES/gQ1DC7FV4zK4JuYE9v\nqDyGZQYjdXHLM7I6f/QnnOITL+dXYWBHRA==\n-----END EC PRIVATE KEY-----\n";

    fn verify_p256(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public)
            .verify(message, signature)
            .is_ok()
    }

    #[test]
    fn ec_p256_keys_sign_in_both_encodings() {
        let sec1 = Credential::new("k", KeyKind::EcP256, EC_SEC1_PEM.as_bytes()).unwrap();
        let public = ec_public_key(&sec1).unwrap();
        assert_eq!(public.len(), 65);
        let signed = sec1.sign_asymmetric(b"message").unwrap();
        assert_eq!(signed.len(), 64, "fixed-width r||s");
        assert!(verify_p256(&public, b"message", &signed));
        assert!(!verify_p256(&public, b"other", &signed));

        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let from_pkcs8 = Credential::new("k", KeyKind::EcP256, pem.as_bytes()).unwrap();
        let public = ec_public_key(&from_pkcs8).unwrap();
        assert!(verify_p256(
            &public,
            b"m",
            &from_pkcs8.sign_asymmetric(b"m").unwrap()
        ));
        assert_eq!(from_pkcs8.hmac_sha256(b"m"), Err(SignError::WrongKeyKind));
    }

    #[test]
    fn sec1_keys_on_other_curves_or_without_a_public_key_are_refused() {
        let der = pem_block(EC_SEC1_PEM.as_bytes(), "EC PRIVATE KEY").unwrap();
        // Change the curve OID's last byte (P-256 is ...03 01 07).
        let mut other_curve = der.to_vec();
        let at = other_curve
            .windows(P256_OID.len())
            .position(|w| w == P256_OID)
            .unwrap();
        other_curve[at + P256_OID.len() - 1] = 0x08;
        assert!(matches!(
            sec1_scalar_and_point(&other_curve),
            Err(KeyError::Rejected(reason)) if reason.contains("another curve")
        ));
        // Drop the [1] public key (a1 44 | 03 42 00 | 65-byte point) and fix the outer length.
        let mut no_public = der[..der.len() - 70].to_vec();
        no_public[1] -= 70;
        assert!(matches!(
            sec1_scalar_and_point(&no_public),
            Err(KeyError::Rejected(reason)) if reason.contains("public key")
        ));
        assert!(sec1_scalar_and_point(&der[..der.len() - 1]).is_err());
    }

    #[test]
    fn hmac_sha512_and_passphrases() {
        let c = Credential::new("k", KeyKind::Hmac, b"key").unwrap();
        let expected = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA512, b"key"),
            b"The quick brown fox jumps over the lazy dog",
        );
        assert_eq!(
            &c.hmac_sha512(b"The quick brown fox jumps over the lazy dog")
                .unwrap()[..],
            expected.as_ref()
        );
        assert_eq!(
            c.with_passphrase_text(<[u8]>::len),
            Err(SignError::NoPassphrase)
        );
        let c = c.with_passphrase(b"PASSPHRASECANARY").unwrap();
        assert_eq!(
            c.with_passphrase_text(<[u8]>::to_vec).unwrap(),
            b"PASSPHRASECANARY"
        );
        assert!(!format!("{c:?}").contains("CANARY"));
        let c = Credential::new("k", KeyKind::Hmac, b"key").unwrap();
        assert_eq!(c.with_passphrase(b"").unwrap_err(), KeyError::Passphrase);
    }

    #[test]
    fn hmac_sha512_with_a_base64_secret() {
        let c = Credential::new("k", KeyKind::Hmac, b"a2V5").unwrap();
        assert_eq!(c.check_base64_secret(), Ok(()));
        let expected = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA512, b"key"),
            b"message",
        );
        assert_eq!(
            &c.hmac_sha512_base64_key(b"message").unwrap()[..],
            expected.as_ref()
        );
        for bad in [&b"abc"[..], b"a2V5\n", b"a2V", b"-_==", b"===="] {
            let c = Credential::new("k", KeyKind::Hmac, bad).unwrap();
            assert_eq!(c.check_base64_secret(), Err(KeyError::NotBase64), "{bad:?}");
            assert_eq!(
                c.hmac_sha512_base64_key(b"m"),
                Err(SignError::SecretNotBase64),
                "{bad:?}"
            );
        }
        let ed = Credential::new("k", KeyKind::Ed25519, ED25519_PEM.as_bytes()).unwrap();
        assert_eq!(
            ed.hmac_sha512_base64_key(b"m"),
            Err(SignError::WrongKeyKind)
        );
        assert_eq!(ed.check_base64_secret(), Err(KeyError::NotBase64));
    }
}
