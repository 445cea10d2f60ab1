//! JSON Web Key Sets (RFC 7517): parsing keys once, and the signature check each key performs.
//!
//! Every usable key is pinned to one algorithm when the set is parsed: its `alg` member if it has
//! one, otherwise the only algorithm its type implies (RSA: RS256, EC P-256: ES256, EC P-384:
//! ES384, OKP Ed25519: EdDSA, oct: HS256). A token then has to name exactly that algorithm, so the
//! token header can never turn an RSA public key into an HMAC secret or pick a curve.
//!
//! Keys keygate cannot use are skipped with a [`SkipReason`] rather than failing the whole set, so
//! one exotic key in an issuer's JWKS does not lock out every token. Only a document that is not a
//! JSON object with a `keys` array is an error.

use std::fmt;

use hmac::{Hmac, Mac};
// rsa's own sha2 (0.11) only names the digest (its OID and size); the hashing is sha2 0.10's.
use rsa::sha2 as rsa_sha2;
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, Pkcs1v15Sign, PublicKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::alg::Algorithm;
use super::b64;
use super::ec;
use super::eddsa;
use super::json::{self, JsonError};
use super::rsassa;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits: bounds the cost of one verification.
pub const MAX_RSA_BITS: usize = 4096;

/// Why a JWKS document could not be read at all. Carries nothing of the document, which may hold
/// HMAC secrets.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error("JWKS has an object with two members of the same name")]
    DuplicateMember,
    #[error("JWKS is not a JSON object")]
    NotAnObject,
    #[error("JWKS has no `keys` array")]
    NoKeys,
}

impl From<JsonError> for JwksError {
    fn from(e: JsonError) -> Self {
        match e {
            JsonError::Syntax(e) => Self::Json(e),
            JsonError::DuplicateMember => Self::DuplicateMember,
            JsonError::NotAnObject => Self::NotAnObject,
        }
    }
}

/// Why one key of a JWKS was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("entry is not a JSON object")]
    NotAnObject,
    #[error("`{0}` is missing or malformed")]
    Malformed(&'static str),
    #[error("key type is not RSA, EC, OKP or oct")]
    UnsupportedKeyType,
    #[error("curve is not P-256, P-384 or Ed25519")]
    UnsupportedCurve,
    #[error("key is not for signatures (`use` is not `sig`)")]
    NotForSignatures,
    #[error("`key_ops` does not include `verify`")]
    NotForVerification,
    #[error("`alg` is `none` or not supported")]
    UnsupportedAlgorithm,
    #[error("`alg` does not fit the key type or curve")]
    AlgorithmMismatch,
    #[error("RSA modulus is shorter than 2048 bits")]
    RsaKeyTooSmall,
    #[error("RSA modulus is longer than 4096 bits")]
    RsaKeyTooLarge,
    #[error("public key is invalid (bad exponent, point not on the curve, weak key)")]
    InvalidKey,
    #[error("symmetric (oct) key in a JWKS that did not come from the filter's own configuration")]
    SymmetricKeyNotAllowed,
    #[error("HMAC secret is shorter than the hash output")]
    HmacSecretTooShort,
}

/// A key that was left out of a [`Jwks`], with its position and `kid` so the operator can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in the `keys` array.
    pub index: usize,
    pub kid: Option<String>,
    pub reason: SkipReason,
}

/// The usable keys of a JWKS, each pinned to one algorithm.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
    skipped: Vec<SkippedKey>,
}

impl Jwks {
    /// Parses a JWKS fetched from an issuer. Symmetric (`oct`) keys are skipped: a secret served
    /// over the network, possibly to everyone, is no secret.
    pub fn parse(json: &[u8]) -> Result<Self, JwksError> {
        Self::parse_with(json, false)
    }

    /// Parses a JWKS written in the filter's own configuration, where `oct` keys (HMAC secrets
    /// for HS256/384/512) are allowed.
    pub fn parse_local(json: &[u8]) -> Result<Self, JwksError> {
        Self::parse_with(json, true)
    }

    fn parse_with(json: &[u8], allow_symmetric: bool) -> Result<Self, JwksError> {
        let doc = json::parse_object(json)?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(JwksError::NoKeys);
        };
        let mut jwks = Self::default();
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(entry) = entry else {
                jwks.skipped.push(SkippedKey {
                    index,
                    kid: None,
                    reason: SkipReason::NotAnObject,
                });
                continue;
            };
            match Jwk::parse(entry, allow_symmetric) {
                Ok(key) => jwks.keys.push(key),
                Err(reason) => jwks.skipped.push(SkippedKey {
                    index,
                    kid: entry.get("kid").and_then(Value::as_str).map(str::to_owned),
                    reason,
                }),
            }
        }
        Ok(jwks)
    }

    /// True when a usable key has this `kid`. The filter uses it to refetch a JWKS when a token
    /// names a key it has not seen (issuer key rotation).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that were left out, and why. Worth a log line at configuration or fetch time.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// The `kid` and pinned algorithm of each usable key, for logs.
    pub fn keys(&self) -> impl Iterator<Item = (Option<&str>, Algorithm)> {
        self.keys.iter().map(|k| (k.kid.as_deref(), k.alg))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Jwk> {
        self.keys.iter()
    }
}

/// One usable key. `alg` always fits `material` (checked in [`Jwk::parse`]).
#[derive(Debug, Clone)]
pub(crate) struct Jwk {
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
    material: Material,
}

#[derive(Clone)]
enum Material {
    Rsa(PublicKey),
    P256(ec::Key<p256::NistP256>),
    P384(ec::Key<p384::NistP384>),
    Ed25519(eddsa::Key),
    Hmac(Vec<u8>),
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa(key) => write!(f, "Rsa({} bits)", key.n().bit_width_vartime()),
            Self::P256(_) => f.write_str("P256"),
            Self::P384(_) => f.write_str("P384"),
            Self::Ed25519(_) => f.write_str("Ed25519"),
            Self::Hmac(_) => f.write_str("Hmac(<redacted>)"),
        }
    }
}

/// The signature did not verify under the key. Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadSignature;

impl Jwk {
    fn parse(entry: &Map<String, Value>, allow_symmetric: bool) -> Result<Self, SkipReason> {
        let kty = string_member(entry, "kty")?.ok_or(SkipReason::Malformed("kty"))?;
        let kid = string_member(entry, "kid")?.map(str::to_owned);
        if let Some(key_use) = string_member(entry, "use")? {
            if key_use != "sig" {
                return Err(SkipReason::NotForSignatures);
            }
        }
        if let Some(ops) = entry.get("key_ops") {
            let ops = ops.as_array().ok_or(SkipReason::Malformed("key_ops"))?;
            if !ops.iter().any(|op| op.as_str() == Some("verify")) {
                return Err(SkipReason::NotForVerification);
            }
        }
        let declared = match string_member(entry, "alg")? {
            Some(name) => Some(Algorithm::from_name(name).ok_or(SkipReason::UnsupportedAlgorithm)?),
            None => None,
        };

        let (implied, material) = match kty {
            "RSA" => {
                let n = BoxedUint::from_be_slice_vartime(&bytes_member(entry, "n")?);
                let e = BoxedUint::from_be_slice_vartime(&bytes_member(entry, "e")?);
                let bits = usize::try_from(n.bit_width_vartime()).unwrap_or(usize::MAX);
                if bits < MIN_RSA_BITS {
                    return Err(SkipReason::RsaKeyTooSmall);
                }
                if bits > MAX_RSA_BITS {
                    return Err(SkipReason::RsaKeyTooLarge);
                }
                let key = PublicKey::new_with_size_limits(n, e, MIN_RSA_BITS..=MAX_RSA_BITS)
                    .map_err(|_| SkipReason::InvalidKey)?;
                (Algorithm::Rs256, Material::Rsa(key))
            }
            "EC" => match string_member(entry, "crv")? {
                Some("P-256") => {
                    let point = sec1_point(entry, 32)?;
                    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                        .map_err(|_| SkipReason::InvalidKey)?;
                    (
                        Algorithm::Es256,
                        Material::P256(ec::Key::new(*key.as_affine())),
                    )
                }
                Some("P-384") => {
                    let point = sec1_point(entry, 48)?;
                    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                        .map_err(|_| SkipReason::InvalidKey)?;
                    (
                        Algorithm::Es384,
                        Material::P384(ec::Key::new(*key.as_affine())),
                    )
                }
                Some(_) => return Err(SkipReason::UnsupportedCurve),
                None => return Err(SkipReason::Malformed("crv")),
            },
            "OKP" => match string_member(entry, "crv")? {
                Some("Ed25519") => {
                    let x: [u8; 32] = bytes_member(entry, "x")?
                        .try_into()
                        .map_err(|_| SkipReason::Malformed("x"))?;
                    let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                        .map_err(|_| SkipReason::InvalidKey)?;
                    // A small-order (weak) key is refused here.
                    let key = eddsa::Key::new(key).ok_or(SkipReason::InvalidKey)?;
                    (Algorithm::EdDsa, Material::Ed25519(key))
                }
                Some(_) => return Err(SkipReason::UnsupportedCurve),
                None => return Err(SkipReason::Malformed("crv")),
            },
            "oct" => {
                if !allow_symmetric {
                    return Err(SkipReason::SymmetricKeyNotAllowed);
                }
                (Algorithm::Hs256, Material::Hmac(bytes_member(entry, "k")?))
            }
            _ => return Err(SkipReason::UnsupportedKeyType),
        };

        let alg = declared.unwrap_or(implied);
        let fits = match (&material, alg) {
            (Material::Rsa(_), a) => matches!(
                a,
                Algorithm::Rs256
                    | Algorithm::Rs384
                    | Algorithm::Rs512
                    | Algorithm::Ps256
                    | Algorithm::Ps384
                    | Algorithm::Ps512
            ),
            (Material::P256(_), a) => a == Algorithm::Es256,
            (Material::P384(_), a) => a == Algorithm::Es384,
            (Material::Ed25519(_), a) => a == Algorithm::EdDsa,
            (Material::Hmac(_), a) => {
                matches!(a, Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512)
            }
        };
        if !fits {
            return Err(SkipReason::AlgorithmMismatch);
        }
        if let Material::Hmac(secret) = &material {
            // RFC 7518 section 3.2: the key must be at least as long as the hash output.
            let min = match alg {
                Algorithm::Hs384 => 48,
                Algorithm::Hs512 => 64,
                _ => 32,
            };
            if secret.len() < min {
                return Err(SkipReason::HmacSecretTooShort);
            }
        }
        Ok(Self { kid, alg, material })
    }

    /// Checks a JWS signature over `signing_input` with this key under its pinned algorithm.
    pub(crate) fn verify(
        &self,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), BadSignature> {
        let ok = match (&self.material, self.alg) {
            (Material::Rsa(key), alg) => {
                let input = signing_input;
                // Both checks refuse a signature that is not exactly as long as the modulus.
                match alg {
                    Algorithm::Rs256 => {
                        let prefix = Pkcs1v15Sign::new::<rsa_sha2::Sha256>().prefix;
                        rsassa::pkcs1v15(key, &prefix, &Sha256::digest(input), signature)
                    }
                    Algorithm::Rs384 => {
                        let prefix = Pkcs1v15Sign::new::<rsa_sha2::Sha384>().prefix;
                        rsassa::pkcs1v15(key, &prefix, &Sha384::digest(input), signature)
                    }
                    Algorithm::Rs512 => {
                        let prefix = Pkcs1v15Sign::new::<rsa_sha2::Sha512>().prefix;
                        rsassa::pkcs1v15(key, &prefix, &Sha512::digest(input), signature)
                    }
                    // RFC 7518 section 3.5: MGF1 with the same hash, salt as long as the hash.
                    Algorithm::Ps256 => {
                        rsassa::pss::<Sha256>(key, &Sha256::digest(input), signature)
                    }
                    Algorithm::Ps384 => {
                        rsassa::pss::<Sha384>(key, &Sha384::digest(input), signature)
                    }
                    Algorithm::Ps512 => {
                        rsassa::pss::<Sha512>(key, &Sha512::digest(input), signature)
                    }
                    _ => false,
                }
            }
            // JWS ECDSA signatures are the fixed-width R || S (RFC 7518 section 3.4), never DER.
            (Material::P256(key), Algorithm::Es256) => {
                ec::verify_es256(key, signing_input, signature)
            }
            (Material::P384(key), Algorithm::Es384) => {
                ec::verify_es384(key, signing_input, signature)
            }
            // As strict as ed25519-dalek's `verify_strict`: no small-order points, no
            // non-canonical encodings.
            (Material::Ed25519(key), Algorithm::EdDsa) => {
                eddsa::verify(key, signing_input, signature)
            }
            (Material::Hmac(secret), Algorithm::Hs256) => {
                hmac_matches::<Hmac<Sha256>>(secret, signing_input, signature)
            }
            (Material::Hmac(secret), Algorithm::Hs384) => {
                hmac_matches::<Hmac<Sha384>>(secret, signing_input, signature)
            }
            (Material::Hmac(secret), Algorithm::Hs512) => {
                hmac_matches::<Hmac<Sha512>>(secret, signing_input, signature)
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(BadSignature)
        }
    }
}

/// Constant-time HMAC check: `verify_slice` compares in constant time and insists on the full
/// tag length.
fn hmac_matches<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8], tag: &[u8]) -> bool {
    match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(input);
            mac.verify_slice(tag).is_ok()
        }
        // HMAC takes keys of any length; unreachable, but a refusal is the safe answer.
        Err(_) => false,
    }
}

/// A member that must be a string when present.
fn string_member<'a>(
    entry: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, SkipReason> {
    match entry.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SkipReason::Malformed(name)),
    }
}

/// A required, non-empty base64url member.
fn bytes_member(entry: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, SkipReason> {
    string_member(entry, name)?
        .and_then(|s| b64::decode_jwk_member(s).ok())
        .filter(|bytes| !bytes.is_empty())
        .ok_or(SkipReason::Malformed(name))
}

/// The uncompressed SEC1 encoding `04 || x || y` of an EC JWK, each coordinate exactly
/// `width` bytes (RFC 7518 section 6.2.1.2).
fn sec1_point(entry: &Map<String, Value>, width: usize) -> Result<Vec<u8>, SkipReason> {
    let x = bytes_member(entry, "x")?;
    let y = bytes_member(entry, "y")?;
    if x.len() != width {
        return Err(SkipReason::Malformed("x"));
    }
    if y.len() != width {
        return Err(SkipReason::Malformed("y"));
    }
    let mut point = Vec::with_capacity(1 + 2 * width);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}
