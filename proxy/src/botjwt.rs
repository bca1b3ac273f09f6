//! Bots that sign their own requests (Coinbase): the EC P-256 keys keyward issues to
//! them, and the verification of the ES256 JWT a bot presents as
//! `Authorization: Bearer <JWT>`.
//!
//! Coinbase's clients cannot send a plain API key: they sign a fresh JWT per request
//! with their private key. keyward issues each such bot its own P-256 key, keeps only
//! the public half (`"p256:<base64 SPKI>"` in the bot's `tokens`), and verifies every
//! JWT in full: signature, lifetime, issuer, key name and the request it is bound to.
//! Any doubt is a refusal; the JWT itself is never forwarded.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use base64::Engine as _;
use keyward_policy::{BotKey, Denied, P256_KEY_PREFIX};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use zeroize::Zeroizing;

use keyward_venues::json::Json;

/// DER prefix of a P-256 SubjectPublicKeyInfo with an uncompressed point: SEQUENCE {
/// SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Coinbase's JWTs live 120 s; keyward refuses any that claims longer.
pub const MAX_LIFETIME_S: u64 = 120;
/// How far in the future `nbf` may be (clock skew between bot and keyward).
pub const NBF_SKEW_S: u64 = 5;
/// A JWT longer than this is not one a Coinbase client produces.
const MAX_JWT_LEN: usize = 2048;
/// Most unexpired JWTs remembered for replay detection.
const REPLAY_CAPACITY: usize = 100_000;

/// Parses `"p256:<base64 SPKI>"`.
pub fn parse_public_key(text: &str) -> Option<BotKey> {
    let encoded = text.strip_prefix(P256_KEY_PREFIX)?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let point = der.strip_prefix(&SPKI_PREFIX[..])?;
    // A point off the curve parses here and then fails every verification.
    BotKey::from_point(point)
}

/// `"p256:<base64 SPKI>"` of a key, as the configuration stores it.
pub fn format_public_key(key: &BotKey) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.point());
    format!(
        "{P256_KEY_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

/// A freshly generated key pair: the public key, and the private key as a SEC1
/// `EC PRIVATE KEY` PEM (the form Coinbase CDP keys take, which both the official SDK
/// and ccxt load).
pub fn generate() -> Option<(BotKey, Zeroizing<String>)> {
    let rng = SystemRandom::new();
    let algorithm = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(algorithm, &rng).ok()?;
    let pair = EcdsaKeyPair::from_pkcs8(algorithm, pkcs8.as_ref(), &rng).ok()?;
    let point = pair.public_key().as_ref().to_vec();
    // The inner ECPrivateKey of ring's PKCS#8 starts `02 01 01 04 20 <scalar>`.
    let marker = [0x02, 0x01, 0x01, 0x04, 0x20];
    let at = pkcs8
        .as_ref()
        .windows(marker.len())
        .position(|w| w == marker)?
        + marker.len();
    let scalar = pkcs8.as_ref().get(at..at + 32)?;
    let mut der = Zeroizing::new(Vec::with_capacity(121));
    der.extend_from_slice(&[0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20]);
    der.extend_from_slice(scalar);
    der.extend_from_slice(&[
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0xa1, 0x44, 0x03,
        0x42, 0x00,
    ]);
    der.extend_from_slice(&point);
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*der));
    let mut pem = Zeroizing::new(String::from("-----BEGIN EC PRIVATE KEY-----\n"));
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).ok()?);
        pem.push('\n');
    }
    pem.push_str("-----END EC PRIVATE KEY-----\n");
    Some((BotKey::from_point(&point)?, pem))
}

/// True if a bearer value has a JWT's shape (three base64url parts, a JSON header),
/// as opposed to a keyward token.
pub fn looks_like_jwt(value: &str) -> bool {
    value.starts_with("eyJ")
        && value.split('.').count() == 3
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A JWT split and decoded, not yet verified.
pub struct Unverified<'a> {
    signing_input: &'a str,
    signature: Vec<u8>,
    /// Header `kid`: the key name that selects bot and key.
    pub kid: String,
    sub: String,
    iss: String,
    aud: Option<String>,
    nbf: u64,
    exp: u64,
    /// The request it is bound to; none for a WebSocket subscription's.
    uri: Option<String>,
}

impl fmt::Debug for Unverified<'_> {
    // The signed parts and the signature together are a bearer credential for two
    // minutes; a debug print names the key and nothing else.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unverified")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Decodes a JWT's parts under a strict grammar: exactly the header fields
/// `alg` (ES256), `kid`, `typ` (JWT) and `nonce`, exactly the claims `sub`, `iss`,
/// `nbf`, `exp`, the request as `uri` or as a one-element `uris` (absent from a
/// WebSocket subscription's JWT), plus an optional `iat` and an optional one-element
/// `aud`; no duplicate keys. These are the forms
/// the official SDKs (`iss` "cdp") and ccxt (`iss` "coinbase-cloud", `aud`
/// `["retail_rest_api_proxy"]`) produce; what each claim must say is checked in
/// [`verify`].
pub fn decode(jwt: &str) -> Result<Unverified<'_>, Denied> {
    let invalid = Denied::AuthInvalid;
    if jwt.len() > MAX_JWT_LEN || !looks_like_jwt(jwt) {
        return Err(invalid);
    }
    let (signing_input, signature) = jwt.rsplit_once('.').ok_or(Denied::AuthInvalid)?;
    let (header, claims) = signing_input.split_once('.').ok_or(Denied::AuthInvalid)?;
    let part = |text: &str| -> Result<Vec<(String, Json)>, Denied> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| Denied::AuthInvalid)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Denied::AuthInvalid)?;
        match Json::parse(text) {
            Ok(Json::Object(fields)) => Ok(fields),
            _ => Err(Denied::AuthInvalid),
        }
    };
    let mut alg = None;
    let mut kid = None;
    for (name, value) in part(header)? {
        match (name.as_str(), value) {
            ("alg", Json::String(v)) => alg = Some(v),
            ("kid", Json::String(v)) => kid = Some(v),
            ("typ", Json::String(v)) if v == "JWT" => {}
            ("nonce", Json::String(_)) => {}
            _ => return Err(invalid),
        }
    }
    if alg.as_deref() != Some("ES256") {
        return Err(invalid);
    }
    let (mut sub, mut iss, mut nbf, mut exp, mut uri) = (None, None, None, None, None);
    let mut aud = None;
    let seconds = |value: i128| u64::try_from(value).map_err(|_| Denied::AuthInvalid);
    // A one-element list, as `aud` and `uris` are written; anything else is refused
    // rather than read one way or another.
    let only = |items: Vec<Json>| match <[Json; 1]>::try_from(items) {
        Ok([Json::String(v)]) => Ok(v),
        _ => Err(Denied::AuthInvalid),
    };
    for (name, value) in part(claims)? {
        match (name.as_str(), value) {
            ("sub", Json::String(v)) => sub = Some(v),
            ("iss", Json::String(v)) => iss = Some(v),
            ("nbf", Json::Integer(v)) => nbf = Some(seconds(v)?),
            ("exp", Json::Integer(v)) => exp = Some(seconds(v)?),
            ("uri", Json::String(v)) if uri.is_none() => uri = Some(v),
            ("uris", Json::Array(items)) if uri.is_none() => uri = Some(only(items)?),
            ("aud", Json::Array(items)) => aud = Some(only(items)?),
            ("iat", Json::Integer(_)) => {}
            _ => return Err(invalid),
        }
    }
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Denied::AuthInvalid)?;
    match (kid, sub, iss, nbf, exp) {
        (Some(kid), Some(sub), Some(iss), Some(nbf), Some(exp)) => Ok(Unverified {
            signing_input,
            signature,
            kid,
            sub,
            iss,
            aud,
            nbf,
            exp,
            uri,
        }),
        _ => Err(invalid),
    }
}

/// The request a JWT must be bound to: method, the host the bot addressed keyward as,
/// and the path without its query.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// Method.
    pub method: &'a str,
    /// `Host` (HTTP/1) or `:authority` (HTTP/2), exactly as sent.
    pub host: &'a str,
    /// Canonical path.
    pub path: &'a str,
}

/// The issuers and audiences of the JWT forms keyward accepts, as pairs: the SDKs'
/// (`iss` "cdp", no `aud`, or `cdp_service` as the newer SDKs write it) and ccxt's
/// (`iss` "coinbase-cloud", `aud` `retail_rest_api_proxy`).
const FORMS: &[(&str, Option<&str>)] = &[
    ("cdp", None),
    ("cdp", Some("cdp_service")),
    ("coinbase-cloud", Some("retail_rest_api_proxy")),
];

/// Verifies a decoded JWT with the bot's key: ES256 over exactly the bytes sent, `sub`
/// equal to `kid`, issuer and audience one of `FORMS`, the request (`uri` or the one
/// `uris`) naming this very request, `nbf` not in the
/// future, `exp` not passed and at most [`MAX_LIFETIME_S`] after `nbf`, and not seen
/// before within its lifetime.
pub fn verify(
    jwt: &Unverified<'_>,
    key: &BotKey,
    binding: Binding<'_>,
    now: SystemTime,
) -> Result<Seen, Denied> {
    let expected_uri = format!("{} {}{}", binding.method, binding.host, binding.path);
    if jwt.uri.as_deref() != Some(expected_uri.as_str()) {
        return Err(Denied::AuthInvalid);
    }
    verify_claims(jwt, key, now)
}

/// Verifies the JWT of a WebSocket subscription (Coinbase's user channel), which
/// names no request: everything [`verify`] checks but the request, and a JWT that
/// does name one is refused (it was made for a REST request, not for this).
pub fn verify_stream(jwt: &Unverified<'_>, key: &BotKey, now: SystemTime) -> Result<Seen, Denied> {
    if jwt.uri.is_some() {
        return Err(Denied::AuthInvalid);
    }
    verify_claims(jwt, key, now)
}

fn verify_claims(jwt: &Unverified<'_>, key: &BotKey, now: SystemTime) -> Result<Seen, Denied> {
    let public =
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key.point());
    if jwt.signature.len() != 64
        || public
            .verify(jwt.signing_input.as_bytes(), &jwt.signature)
            .is_err()
    {
        return Err(Denied::AuthInvalid);
    }
    let form = (jwt.iss.as_str(), jwt.aud.as_deref());
    if jwt.sub != jwt.kid || !FORMS.contains(&form) {
        return Err(Denied::AuthInvalid);
    }
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if jwt.exp <= jwt.nbf || jwt.exp - jwt.nbf > MAX_LIFETIME_S {
        return Err(Denied::AuthInvalid);
    }
    if jwt.nbf > now_s.saturating_add(NBF_SKEW_S) {
        return Err(Denied::AuthInvalid);
    }
    if jwt.exp <= now_s {
        return Err(Denied::AuthExpired);
    }
    remember(jwt.signing_input.as_bytes(), jwt.exp, now_s)
}

/// A verified JWT as replay detection names it: the SHA-256 of its signed part (the
/// signature being malleable), and when it expires (seconds since the epoch). Kept
/// by the replica, and by every replica through the shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// SHA-256 of the header and claims as sent.
    pub digest: [u8; 32],
    /// Its `exp`.
    pub expires: u64,
}

/// Records a verified JWT's signed part (header with its random nonce, and claims)
/// until it expires; a second presentation is a replay and is refused. The signature
/// is not the key: ECDSA signatures are malleable (`s` and `n - s` both verify), so a
/// replay could carry a different one. When the cache is full of unexpired entries,
/// refuse rather than forget: only bots with valid keys can fill it.
fn remember(signed: &[u8], exp: u64, now_s: u64) -> Result<Seen, Denied> {
    static SEEN: OnceLock<Mutex<HashMap<[u8; 32], u64>>> = OnceLock::new();
    let digest = ring::digest::digest(&ring::digest::SHA256, signed);
    let mut id = [0u8; 32];
    id.copy_from_slice(digest.as_ref());
    let mut seen = SEEN
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .map_err(|_| Denied::AuthInvalid)?;
    if seen.len() >= REPLAY_CAPACITY {
        seen.retain(|_, expiry| *expiry > now_s);
    }
    if seen.len() >= REPLAY_CAPACITY {
        return Err(Denied::AuthInvalid);
    }
    match seen.insert(id, exp) {
        Some(_) => Err(Denied::AuthInvalid),
        None => Ok(Seen {
            digest: id,
            expires: exp,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{Credential, KeyKind};
    use std::time::Duration;

    /// Signs a JWT as coinbase-advanced-py does, with `key`.
    fn sign(credential: &Credential, kid: &str, claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let header = format!(
            r#"{{"alg":"ES256","kid":"{kid}","nonce":"{}","typ":"JWT"}}"#,
            keyward_venues::hex(&rand_bytes())
        );
        let input = format!("{}.{}", b64(&header), b64(claims));
        let sig = credential.sign_asymmetric(input.as_bytes()).unwrap();
        format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        )
    }

    fn rand_bytes() -> [u8; 16] {
        use ring::rand::SecureRandom as _;
        let mut out = [0u8; 16];
        SystemRandom::new().fill(&mut out).unwrap();
        out
    }

    fn claims(kid: &str, nbf: u64, exp: u64, uri: &str) -> String {
        format!(r#"{{"sub":"{kid}","iss":"cdp","nbf":{nbf},"exp":{exp},"uri":"{uri}"}}"#)
    }

    const BINDING: Binding<'static> = Binding {
        method: "GET",
        host: "127.0.0.1:8448",
        path: "/api/v3/brokerage/accounts",
    };

    /// `n - s` for a P-256 signature `r || s`: a second signature of the same bytes.
    fn malleate(signature: &[u8]) -> Vec<u8> {
        const N: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2,
            0xfc, 0x63, 0x25, 0x51,
        ];
        let mut out = signature[..32].to_vec();
        let s = &signature[32..];
        let mut negated = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut digit = i16::from(N[i]) - i16::from(s[i]) - borrow;
            borrow = i16::from(digit < 0);
            if digit < 0 {
                digit += 256;
            }
            negated[i] = u8::try_from(digit).unwrap();
        }
        out.extend_from_slice(&negated);
        out
    }

    #[test]
    fn a_replay_with_the_malleated_signature_is_still_a_replay() {
        let (key, pem) = generate().unwrap();
        let credential = Credential::new("k", KeyKind::EcP256, pem.as_bytes()).unwrap();
        let kid = key.key_name("cb");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let uri = "GET 127.0.0.1:8448/api/v3/brokerage/accounts";
        let good = sign(
            &credential,
            &kid,
            &claims(&kid, 1_700_000_000, 1_700_000_120, uri),
        );
        let (input, signature) = good.rsplit_once('.').unwrap();
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap();
        let other = malleate(&signature);
        let twin = format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&other)
        );
        // The twin verifies on its own: it is the same JWT to anyone but a byte compare.
        let public =
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key.point());
        assert!(public.verify(input.as_bytes(), &other).is_ok());
        assert_eq!(
            verify(&decode(&good).unwrap(), &key, BINDING, now).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            verify(&decode(&twin).unwrap(), &key, BINDING, now),
            Err(Denied::AuthInvalid)
        );
        assert_eq!(
            format!("{:?}", decode(&twin).unwrap()),
            format!("Unverified {{ kid: {kid:?}, .. }}")
        );
    }

    /// A WebSocket subscription's JWT names no request: one that does (made for a
    /// REST call) is refused on a stream, and one that does not is refused for REST.
    #[test]
    fn stream_jwts_name_no_request_and_rest_jwts_must() {
        let (key, pem) = generate().unwrap();
        let credential = Credential::new("k", KeyKind::EcP256, pem.as_bytes()).unwrap();
        let kid = key.key_name("cb");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let stream_claims =
            format!(r#"{{"sub":"{kid}","iss":"cdp","nbf":1700000000,"exp":1700000120}}"#);
        let for_stream = sign(&credential, &kid, &stream_claims);
        assert_eq!(
            verify(&decode(&for_stream).unwrap(), &key, BINDING, now),
            Err(Denied::AuthInvalid)
        );
        assert_eq!(
            verify_stream(&decode(&for_stream).unwrap(), &key, now).map(|_| ()),
            Ok(())
        );
        // Seen once: presenting it again is a replay.
        assert_eq!(
            verify_stream(&decode(&for_stream).unwrap(), &key, now),
            Err(Denied::AuthInvalid)
        );
        let uri = "GET 127.0.0.1:8448/api/v3/brokerage/accounts";
        let for_rest = sign(
            &credential,
            &kid,
            &claims(&kid, 1_700_000_000, 1_700_000_120, uri),
        );
        assert_eq!(
            verify_stream(&decode(&for_rest).unwrap(), &key, now),
            Err(Denied::AuthInvalid)
        );
    }

    #[test]
    fn generated_keys_round_trip_and_load_as_coinbase_keys() {
        let (key, pem) = generate().unwrap();
        assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        let text = format_public_key(&key);
        assert_eq!(parse_public_key(&text), Some(key));
        assert!(parse_public_key(&text.replace("p256:", "p384:")).is_none());
        assert!(parse_public_key("p256:AAAA").is_none());
        let credential = Credential::new("k", KeyKind::EcP256, pem.as_bytes()).unwrap();
        assert_eq!(
            crate::credential::ec_public_key(&credential).unwrap(),
            key.point().to_vec()
        );
    }

    #[test]
    fn verifies_a_good_jwt_once_and_refuses_every_deviation() {
        let (key, pem) = generate().unwrap();
        let credential = Credential::new("k", KeyKind::EcP256, pem.as_bytes()).unwrap();
        let kid = key.key_name("cb");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let uri = "GET 127.0.0.1:8448/api/v3/brokerage/accounts";
        let good = sign(
            &credential,
            &kid,
            &claims(&kid, 1_700_000_000, 1_700_000_120, uri),
        );
        let decoded = decode(&good).unwrap();
        assert_eq!(decoded.kid, kid);
        assert_eq!(verify(&decoded, &key, BINDING, now).map(|_| ()), Ok(()));
        assert_eq!(
            verify(&decoded, &key, BINDING, now),
            Err(Denied::AuthInvalid),
            "a replay is refused"
        );
        let check = |jwt: String, binding: Binding<'_>| {
            decode(&jwt).and_then(|d| verify(&d, &key, binding, now).map(|_| ()))
        };
        let fresh =
            |nbf: u64, exp: u64, uri: &str| sign(&credential, &kid, &claims(&kid, nbf, exp, uri));
        // Expired, too long, from the future.
        assert_eq!(
            check(fresh(1_699_999_800, 1_699_999_920, uri), BINDING),
            Err(Denied::AuthExpired)
        );
        assert_eq!(
            check(fresh(1_700_000_000, 1_700_000_121, uri), BINDING),
            Err(Denied::AuthInvalid)
        );
        assert_eq!(
            check(fresh(1_700_000_060, 1_700_000_180, uri), BINDING),
            Err(Denied::AuthInvalid)
        );
        assert_eq!(
            check(fresh(1_700_000_003, 1_700_000_123, uri), BINDING),
            Ok(()),
            "a small skew is tolerated"
        );
        // Bound to another request.
        for other in [
            "POST 127.0.0.1:8448/api/v3/brokerage/accounts",
            "GET api.coinbase.com/api/v3/brokerage/accounts",
            "GET 127.0.0.1:8448/api/v3/brokerage/orders",
        ] {
            assert_eq!(
                check(fresh(1_700_000_000, 1_700_000_120, other), BINDING),
                Err(Denied::AuthInvalid),
                "{other}"
            );
        }
        // sub differs from kid; wrong issuer; unknown claim; another key.
        let bad_sub =
            format!(r#"{{"sub":"x","iss":"cdp","nbf":1700000000,"exp":1700000120,"uri":"{uri}"}}"#);
        assert!(check(sign(&credential, &kid, &bad_sub), BINDING).is_err());
        let bad_iss =
            claims(&kid, 1_700_000_000, 1_700_000_120, uri).replace("cdp", "coinbase-cloud");
        assert!(check(sign(&credential, &kid, &bad_iss), BINDING).is_err());
        let extra = claims(&kid, 1_700_000_000, 1_700_000_120, uri).replace("{", r#"{"aud":"x","#);
        assert!(check(sign(&credential, &kid, &extra), BINDING).is_err());
        let dup = claims(&kid, 1_700_000_000, 1_700_000_120, uri).replace("{", r#"{"iss":"cdp","#);
        assert!(check(sign(&credential, &kid, &dup), BINDING).is_err());
        // The forms clients produce: ccxt's (issuer coinbase-cloud with its audience,
        // iat) and the newer SDKs' (audience cdp_service, the request as `uris`).
        let ccxt = claims(&kid, 1_700_000_000, 1_700_000_120, uri).replace(
            r#""iss":"cdp""#,
            r#""aud":["retail_rest_api_proxy"],"iss":"coinbase-cloud","iat":1700000000"#,
        );
        assert_eq!(check(sign(&credential, &kid, &ccxt), BINDING), Ok(()));
        let uris = claims(&kid, 1_700_000_000, 1_700_000_120, uri)
            .replace(r#""uri":"#, r#""aud":["cdp_service"],"uris":["#)
            .replace(r#""}"#, r#""]}"#);
        assert_eq!(check(sign(&credential, &kid, &uris), BINDING), Ok(()));
        // An issuer with another's audience, two audiences, two requests, or both
        // `uri` and `uris`: refused, never read one way or another.
        for wrong in [
            ccxt.replace("retail_rest_api_proxy", "cdp_service"),
            ccxt.replace(
                r#"["retail_rest_api_proxy"]"#,
                r#"["retail_rest_api_proxy","cdp_service"]"#,
            ),
            uris.replace(r#""uris":["#, r#""uris":["GET 127.0.0.1:8448/x","#),
            uris.replace(r#""uris":["#, &format!(r#""uri":"{uri}","uris":["#)),
        ] {
            assert!(
                check(sign(&credential, &kid, &wrong), BINDING).is_err(),
                "{wrong}"
            );
        }
        let (_, other_pem) = generate().unwrap();
        let other = Credential::new("k", KeyKind::EcP256, other_pem.as_bytes()).unwrap();
        assert!(
            check(
                sign(
                    &other,
                    &kid,
                    &claims(&kid, 1_700_000_000, 1_700_000_120, uri)
                ),
                BINDING
            )
            .is_err()
        );
        // Tampered payload; alg none.
        let tampered = fresh(1_700_000_000, 1_700_000_120, uri);
        let mut parts: Vec<&str> = tampered.split('.').collect();
        let swapped = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims(
            &kid,
            1_700_000_000,
            1_700_000_120,
            "GET 127.0.0.1:8448/api/v3/brokerage/orders",
        ));
        parts[1] = &swapped;
        assert!(check(parts.join("."), BINDING).is_err());
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k"}"#),
            parts[1]
        );
        assert!(decode(&none).is_err());
        assert!(!looks_like_jwt(
            "kw_a_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        ));
    }
}
