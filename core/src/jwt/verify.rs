//! The verification pipeline for one compact JWS: size, shape, header, key, signature, claims.
//!
//! A payload that does not parse is refused only after its signature has verified.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::alg::Algorithm;
use super::b64;
use super::claims;
use super::json::{self, JsonError};
use super::jwk::{Jwk, Jwks};
use super::policy::ProviderPolicy;
use super::JwtError;

/// What an accepted token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// From the policy's subject claim (default `sub`); never empty.
    pub subject: String,
    /// From the policy's tenant claim, if one is configured and the token has it.
    pub tenant: Option<String>,
    /// Union of the policy's permissions claims, first appearance first, no duplicates.
    pub permissions: Vec<String>,
    /// `exp` in whole seconds, rounded up. The token stays acceptable while
    /// `now < expires_at + clock skew`: a cache must not keep it longer.
    pub expires_at: u64,
    pub issuer: String,
    /// The name of the provider whose policy accepted the token.
    pub provider: String,
    /// The `kid` of the key that verified the signature (which the token may not have named).
    pub kid: Option<String>,
}

/// Verifies a compact JWS `token` with the keys of `jwks` and checks its claims against `policy`
/// at time `now` (seconds since the Unix epoch).
pub fn verify(
    token: &str,
    jwks: &Jwks,
    policy: &ProviderPolicy,
    now: u64,
) -> Result<VerifiedToken, JwtError> {
    verify_parts(token, None, jwks, policy, now)
}

/// Refuses a `token` longer than `limit` bytes: the first check of every verification, and one
/// that needs no key, so it also runs before a token waits for its provider's keys.
pub fn check_size(token: &str, limit: usize) -> Result<(), JwtError> {
    if token.len() > limit {
        return Err(JwtError::TooLarge { limit });
    }
    Ok(())
}

/// A compact JWS whose payload has been decoded and parsed, and nothing else checked: enough to
/// read `iss` and so pick the provider whose keys and policy verify it, without decoding and
/// parsing the payload a second time for [`UnverifiedToken::verify`]. `Debug` shows neither the
/// token nor its claims.
#[derive(Clone)]
pub struct UnverifiedToken {
    token: String,
    payload: Map<String, Value>,
}

impl UnverifiedToken {
    /// Fails when `token` is not three dot-separated parts or its payload is not a canonical
    /// base64url, duplicate-free JSON object.
    pub fn parse(token: String) -> Result<Self, JwtError> {
        let parts = Parts::split(&token)?;
        let payload = parse_payload(&decode_payload(parts.payload_b64)?)?;
        Ok(Self { token, payload })
    }

    /// [`check_size`] against `policy`'s limit, before waiting for its keys.
    pub fn check_size(&self, policy: &ProviderPolicy) -> Result<(), JwtError> {
        check_size(&self.token, policy.max_token_bytes())
    }

    /// The `iss` claim, unverified: only to pick which provider's keys and policy to verify the
    /// token with. [`UnverifiedToken::verify`] then checks `iss` again, under the signature.
    pub fn issuer(&self) -> Option<&str> {
        self.payload.get("iss").and_then(Value::as_str)
    }

    /// [`verify()`] of the same token, with the same result, reusing the parsed payload.
    pub fn verify(
        &self,
        jwks: &Jwks,
        policy: &ProviderPolicy,
        now: u64,
    ) -> Result<VerifiedToken, JwtError> {
        verify_parts(&self.token, Some(&self.payload), jwks, policy, now)
    }
}

impl std::fmt::Debug for UnverifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnverifiedToken").finish_non_exhaustive()
    }
}

/// The one pipeline behind [`verify()`] and [`UnverifiedToken::verify`]. `parsed` is the
/// token's payload when the caller has already parsed it; either way a payload that is not a
/// JSON object is refused only once the signature verified, as RFC 7515 orders it.
fn verify_parts(
    token: &str,
    parsed: Option<&Map<String, Value>>,
    jwks: &Jwks,
    policy: &ProviderPolicy,
    now: u64,
) -> Result<VerifiedToken, JwtError> {
    check_size(token, policy.max_token_bytes())?;
    let parts = Parts::split(token)?;
    let header = Header::parse(parts.header_b64)?;
    let key = select_key(jwks, header.alg, header.kid.as_deref())?;

    // The payload's base64url is refused before the signature is checked, as it always was; its
    // JSON only after.
    let payload = match parsed {
        Some(payload) => Payload::Parsed(payload),
        None => Payload::Decoded(decode_payload(parts.payload_b64)?),
    };
    let signature = b64::decode_token_part(parts.signature_b64)
        .map_err(|_| JwtError::Malformed("signature is not canonical base64url"))?;
    key.verify(parts.signing_input.as_bytes(), &signature)
        .map_err(|_| JwtError::BadSignature)?;

    let payload = match payload {
        Payload::Parsed(payload) => Cow::Borrowed(payload),
        Payload::Decoded(bytes) => Cow::Owned(parse_payload(&bytes)?),
    };
    let claims = claims::check(&payload, policy, now)?;
    Ok(VerifiedToken {
        subject: claims.subject,
        tenant: claims.tenant,
        permissions: claims.permissions,
        expires_at: claims.expires_at,
        issuer: claims.issuer,
        provider: policy.name().to_owned(),
        kid: key.kid.clone(),
    })
}

/// A payload as far as the caller took it.
enum Payload<'a> {
    Parsed(&'a Map<String, Value>),
    Decoded(Vec<u8>),
}

/// A token's three parts. The signing input is the token's own text up to the last dot
/// (RFC 7515 section 5.2).
struct Parts<'a> {
    signing_input: &'a str,
    header_b64: &'a str,
    payload_b64: &'a str,
    signature_b64: &'a str,
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Result<Self, JwtError> {
        const NOT_THREE_PARTS: JwtError = JwtError::Malformed("not three dot-separated parts");
        let (signing_input, signature_b64) = token.rsplit_once('.').ok_or(NOT_THREE_PARTS)?;
        let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(NOT_THREE_PARTS)?;
        if payload_b64.contains('.') {
            return Err(NOT_THREE_PARTS);
        }
        Ok(Self {
            signing_input,
            header_b64,
            payload_b64,
            signature_b64,
        })
    }
}

fn decode_payload(payload_b64: &str) -> Result<Vec<u8>, JwtError> {
    b64::decode_token_part(payload_b64)
        .map_err(|_| JwtError::Malformed("payload is not canonical base64url"))
}

fn parse_payload(bytes: &[u8]) -> Result<Map<String, Value>, JwtError> {
    json::parse_object(bytes).map_err(|e| {
        JwtError::Malformed(match e {
            JsonError::DuplicateMember => "payload has a duplicate member name",
            JsonError::Syntax(_) | JsonError::NotAnObject => "payload is not a JSON object",
        })
    })
}

/// The JOSE header members keygate acts on. `jku`, `x5u`, `jwk` and `x5c` are ignored on purpose:
/// keys come only from the configured JWKS, never from the token.
struct Header {
    alg: Algorithm,
    kid: Option<String>,
}

impl Header {
    fn parse(header_b64: &str) -> Result<Self, JwtError> {
        let bytes = b64::decode_token_part(header_b64)
            .map_err(|_| JwtError::Malformed("header is not canonical base64url"))?;
        let header: Map<String, Value> = json::parse_object(&bytes).map_err(|e| {
            JwtError::Malformed(match e {
                JsonError::DuplicateMember => "header has a duplicate member name",
                JsonError::Syntax(_) | JsonError::NotAnObject => "header is not a JSON object",
            })
        })?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) if name.eq_ignore_ascii_case("none") => {
                return Err(JwtError::AlgNone)
            }
            Some(Value::String(name)) => {
                Algorithm::from_name(name).ok_or(JwtError::UnsupportedAlgorithm)?
            }
            Some(_) => return Err(JwtError::Malformed("header `alg` is not a string")),
            None => return Err(JwtError::Malformed("header has no `alg`")),
        };
        // RFC 7515 section 4.1.11: a recipient must reject `crit` members it does not understand,
        // and keygate understands no extension.
        if header.contains_key("crit") {
            return Err(JwtError::Crit);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(JwtError::Malformed("header `kid` is not a string")),
        };
        Ok(Self { alg, kid })
    }
}

/// The one key that may verify a token with this `alg` and `kid`. The key's pinned algorithm
/// must equal the header's; the header never chooses a key type.
fn select_key<'a>(jwks: &'a Jwks, alg: Algorithm, kid: Option<&str>) -> Result<&'a Jwk, JwtError> {
    let mut named = false;
    let mut found: Option<&Jwk> = None;
    for key in jwks.iter() {
        if let Some(kid) = kid {
            if key.kid.as_deref() != Some(kid) {
                continue;
            }
            named = true;
        }
        if key.alg != alg {
            continue;
        }
        if found.is_some() {
            return Err(JwtError::AmbiguousKey);
        }
        found = Some(key);
    }
    match (found, kid, named) {
        (Some(key), _, _) => Ok(key),
        (None, Some(_), false) => Err(JwtError::UnknownKid),
        (None, Some(_), true) => Err(JwtError::AlgorithmMismatch),
        (None, None, _) => Err(JwtError::NoMatchingKey),
    }
}
