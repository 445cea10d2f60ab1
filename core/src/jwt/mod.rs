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
pub use verify::{check_size, verify, UnverifiedToken, VerifiedToken};

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod unverified_tests {
    use super::*;

    #[test]
    fn an_unverified_token_reads_iss_without_verifying() {
        // {"alg":"none"} . {"iss":"https://idp.example","sub":"a"} . (no signature)
        let token = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYSJ9.";
        let parsed = UnverifiedToken::parse(token.to_owned()).unwrap();
        assert_eq!(parsed.issuer(), Some("https://idp.example"));
        // {"iss":1}: an issuer that is not a string is no issuer.
        let token = "eyJhbGciOiJub25lIn0.eyJpc3MiOjF9.";
        assert_eq!(
            UnverifiedToken::parse(token.to_owned()).unwrap().issuer(),
            None
        );
        assert_eq!(format!("{parsed:?}"), "UnverifiedToken { .. }");
        for bad in [
            "a.b.c",
            "nodots",
            "a.eyJpc3MiOiJ4In0",
            "a.eyJpc3MiOiJ4In0.b.c",
        ] {
            assert!(UnverifiedToken::parse(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn size_is_checked_against_the_providers_limit_before_its_keys_are_needed() {
        let token = "eyJhbGciOiJub25lIn0.eyJpc3MiOjF9.";
        let parsed = UnverifiedToken::parse(token.to_owned()).unwrap();
        let at = ProviderPolicy::new("idp", "https://idp", vec!["api".to_owned()])
            .unwrap()
            .with_max_token_bytes(token.len());
        assert_eq!(parsed.check_size(&at), Ok(()));
        let below = at.clone().with_max_token_bytes(token.len() - 1);
        let limit = token.len() - 1;
        assert_eq!(parsed.check_size(&below), Err(JwtError::TooLarge { limit }));
        assert_eq!(check_size(token, limit), Err(JwtError::TooLarge { limit }));
        assert_eq!(check_size(token, token.len()), Ok(()));
    }
}
