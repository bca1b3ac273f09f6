//! The one way a venue reaches key material: a [`Signer`] that signs a message for it.
//!
//! Venue code builds the bytes an exchange signs and places the results in headers or
//! parameters; it never holds a secret. The proxy's shielded credential implements
//! [`Signer`], so "venues never read the vault" is a property of the types: no venue
//! can name the type that holds a secret, only this trait.

use std::fmt;

use http::HeaderValue;

/// The kind of exchange key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A shared secret for HMAC.
    Hmac,
    /// An Ed25519 private key (PKCS#8 PEM).
    Ed25519,
    /// An RSA private key (PKCS#8 or PKCS#1 PEM).
    Rsa,
    /// An ECDSA P-256 private key (SEC1 `EC PRIVATE KEY` or PKCS#8 PEM), as Coinbase
    /// issues them.
    EcP256,
}

impl KeyKind {
    /// Every kind, in the order listings show them.
    pub const ALL: [Self; 4] = [Self::Hmac, Self::Ed25519, Self::Rsa, Self::EcP256];

    /// The name used in the vault and in listings.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hmac => "hmac",
            Self::Ed25519 => "ed25519",
            Self::Rsa => "rsa",
            Self::EcP256 => "ec-p256",
        }
    }

    /// Parses a key-type name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
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
    /// The venue needs a passphrase and the vault entry has none.
    #[error("the account's vault entry has no passphrase, which this venue requires")]
    NoPassphrase,
    /// The venue keys its HMAC with the base64-decoded secret and the secret is not
    /// valid base64.
    #[error("the account's secret is not the base64 text this venue issues")]
    SecretNotBase64,
    /// keyward answers this request itself (a question about the API key): it is
    /// never signed, so never sent.
    #[error("keyward answers this request itself; it is never sent")]
    AnsweredByKeyward,
}

/// Why a venue cannot use a key at all, found when the key is loaded rather than at
/// the first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyUnfit {
    /// The venue keys its HMAC with the base64-decoded secret (Kraken) and this
    /// secret is not padded standard base64 of at least one byte.
    #[error(
        "the API secret must be the base64 text the exchange issued (standard alphabet, padded)"
    )]
    NotBase64,
}

/// An exchange API key that signs. Each method opens the secret for one message and
/// lets it go; nothing here returns the secret itself, and `Debug` must not show it.
pub trait Signer: fmt::Debug {
    /// The API key id (sent to the exchange in a header; not the secret).
    fn api_key(&self) -> &str;

    /// The key type.
    fn kind(&self) -> KeyKind;

    /// True if the key carries a passphrase (OKX sends one with every request).
    fn has_passphrase(&self) -> bool;

    /// The passphrase as a header value marked sensitive, the only form in which it
    /// leaves the signer.
    fn passphrase_header(&self) -> Result<HeaderValue, SignError>;

    /// HMAC-SHA256 of `message` under an HMAC secret.
    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32], SignError>;

    /// HMAC-SHA512 of `message` keyed with the base64-decoded secret (Kraken issues
    /// its secrets as base64 text and keys the HMAC with the decoded bytes).
    fn hmac_sha512_base64_key(&self, message: &[u8]) -> Result<[u8; 64], SignError>;

    /// True if the secret is an HMAC secret in padded standard base64, which
    /// [`Signer::hmac_sha512_base64_key`] needs.
    fn secret_is_base64(&self) -> bool;

    /// An Ed25519 signature, an RSASSA-PKCS1-v1_5 SHA-256 signature, or an ECDSA
    /// P-256 SHA-256 signature (fixed-width r||s) of `message`.
    fn sign_asymmetric(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// Lowercase hex, as exchanges take hex signatures.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}
