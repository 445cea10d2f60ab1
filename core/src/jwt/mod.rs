//! JWT verification: compact JWS tokens checked against an issuer's JWKS and a provider policy.
//!
//! Pure and clock-free: the caller fetches and caches the JWKS and passes `now`. The crypto is
//! RustCrypto only, because `ring` does not run in Envoy's V8 Wasm VM.
//!
//! What is refused, beyond a bad signature: `alg: none`; a header `alg` other than the one the
//! key is pinned to (so no RSA-key-as-HMAC-secret confusion and no curve swapping); any `crit`;
//! duplicate member names in header or payload; non-canonical base64url; tokens over the size
//! cap; and RSA keys under 2048 bits. Keys come only from the JWKS: `jku`, `x5u`, `jwk` and `x5c`
//! header parameters are ignored.
//!
//! - [`jwk`]: JWKS parsing and per-key signature checks.
//! - [`policy`]: what a provider's tokens must say, and where its claims are.
//! - `verify`: the pipeline behind [`verify()`]; `claims`: the claim checks.
//! - `b64`, `json`: strict base64url and duplicate-refusing JSON.

mod alg;
mod b64;
mod claims;
mod ec;
mod eddsa;
mod error;
mod json;
pub mod jwk;
pub mod policy;
mod rsassa;
mod verify;

#[cfg(test)]
mod test_bytes;
#[cfg(test)]
mod test_keys;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod wycheproof;

pub use alg::Algorithm;
pub use error::JwtError;
pub use jwk::{Jwks, JwksError, SkipReason, SkippedKey};
pub use policy::{PermissionsClaim, PolicyError, ProviderPolicy};
pub use verify::{verify, VerifiedToken};

/// True when `s` has the shape of a compact JWS: three dot-separated base64url parts, the first
/// two non-empty. The signature part may be empty so that unsigned (`alg: none`) tokens still
/// reach [`verify()`] and are refused there with their own reason.
pub fn looks_like_jwt(s: &str) -> bool {
    let mut parts = s.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => {
            !header.is_empty()
                && !payload.is_empty()
                && [header, payload, signature]
                    .iter()
                    .all(|part| part.bytes().all(b64::is_url_safe_symbol))
        }
        _ => false,
    }
}

/// The `iss` claim of a token, read without verifying anything: only to pick which provider's
/// keys and policy to verify it with. `verify` then checks `iss` again, under the signature.
pub fn peek_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = b64::decode_token_part(payload).ok()?;
    match json::parse_object(&bytes).ok()?.get("iss")? {
        serde_json::Value::String(iss) => Some(iss.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod peek_tests {
    use super::*;

    #[test]
    fn peek_issuer_reads_iss_without_verifying() {
        // {"alg":"none"} . {"iss":"https://idp.example","sub":"a"} . (no signature)
        let token = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYSJ9.";
        assert_eq!(peek_issuer(token).as_deref(), Some("https://idp.example"));
        assert_eq!(peek_issuer("a.b.c"), None);
        assert_eq!(peek_issuer("nodots"), None);
    }
}
