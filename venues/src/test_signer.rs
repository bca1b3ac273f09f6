//! A [`Signer`] over key bytes in plain memory, for this crate's tests and the fuzz
//! targets (feature `test-signer`). It exists so venues can be tested without the
//! proxy; production signing always goes through the proxy's shielded credential.

use std::fmt;

use base64::Engine as _;
use http::HeaderValue;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair};

use crate::sign::{KeyKind, SignError, Signer};

/// A test key: an HMAC secret as bytes, or an Ed25519 or EC P-256 key as PKCS#8 DER.
#[derive(Clone)]
pub struct TestSigner {
    api_key: String,
    kind: KeyKind,
    secret: Vec<u8>,
    passphrase: Option<String>,
}

impl TestSigner {
    /// An HMAC key.
    pub fn hmac(api_key: &str, secret: &[u8]) -> Self {
        Self::new(api_key, KeyKind::Hmac, secret)
    }

    /// A key of `kind`: HMAC secret bytes, or PKCS#8 DER for Ed25519 and EC P-256.
    pub fn new(api_key: &str, kind: KeyKind, secret: &[u8]) -> Self {
        Self {
            api_key: api_key.to_owned(),
            kind,
            secret: secret.to_vec(),
            passphrase: None,
        }
    }

    /// A fresh Ed25519 key.
    pub fn generated_ed25519(api_key: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap_or_else(|_| unreachable!());
        Self::new(api_key, KeyKind::Ed25519, der.as_ref())
    }

    /// A fresh EC P-256 key.
    pub fn generated_ec_p256(api_key: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap_or_else(|_| unreachable!());
        Self::new(api_key, KeyKind::EcP256, der.as_ref())
    }

    /// The same key with a passphrase (OKX).
    #[must_use]
    pub fn with_passphrase(mut self, passphrase: &str) -> Self {
        self.passphrase = Some(passphrase.to_owned());
        self
    }

    /// The uncompressed public key of an EC P-256 key.
    pub fn ec_public_key(&self) -> Option<Vec<u8>> {
        let rng = ring::rand::SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &self.secret,
            &rng,
        )
        .ok()?;
        Some(signature::KeyPair::public_key(&pair).as_ref().to_vec())
    }

    fn mac(algorithm: ring::hmac::Algorithm, key: &[u8], message: &[u8]) -> [u8; 64] {
        let tag = ring::hmac::sign(&ring::hmac::Key::new(algorithm, key), message);
        let mut out = [0u8; 64];
        out[..tag.as_ref().len()].copy_from_slice(tag.as_ref());
        out
    }
}

impl fmt::Debug for TestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestSigner")
            .field("api_key", &self.api_key)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Signer for TestSigner {
    fn api_key(&self) -> &str {
        &self.api_key
    }

    fn kind(&self) -> KeyKind {
        self.kind
    }

    fn has_passphrase(&self) -> bool {
        self.passphrase.is_some()
    }

    fn passphrase_header(&self) -> Result<HeaderValue, SignError> {
        let passphrase = self.passphrase.as_ref().ok_or(SignError::NoPassphrase)?;
        let mut value = HeaderValue::from_str(passphrase).map_err(|_| SignError::Failed)?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32], SignError> {
        if self.kind != KeyKind::Hmac {
            return Err(SignError::WrongKeyKind);
        }
        let tag = Self::mac(ring::hmac::HMAC_SHA256, &self.secret, message);
        let mut out = [0u8; 32];
        out.copy_from_slice(&tag[..32]);
        Ok(out)
    }

    fn hmac_sha512_base64_key(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        if self.kind != KeyKind::Hmac {
            return Err(SignError::WrongKeyKind);
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(&self.secret)
            .ok()
            .filter(|key| !key.is_empty())
            .ok_or(SignError::SecretNotBase64)?;
        Ok(Self::mac(ring::hmac::HMAC_SHA512, &key, message))
    }

    fn secret_is_base64(&self) -> bool {
        self.kind == KeyKind::Hmac
            && base64::engine::general_purpose::STANDARD
                .decode(&self.secret)
                .is_ok_and(|key| !key.is_empty())
    }

    fn sign_asymmetric(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = ring::rand::SystemRandom::new();
        match self.kind {
            KeyKind::Ed25519 => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.secret)
                    .map_err(|_| SignError::Failed)?;
                Ok(pair.sign(message).as_ref().to_vec())
            }
            KeyKind::EcP256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &self.secret,
                    &rng,
                )
                .map_err(|_| SignError::Failed)?;
                let signed = pair.sign(&rng, message).map_err(|_| SignError::Failed)?;
                Ok(signed.as_ref().to_vec())
            }
            KeyKind::Hmac | KeyKind::Rsa => Err(SignError::WrongKeyKind),
        }
    }
}
