//! The two callers of the service and how they prove who they are: [`AdminAuth`] (the admin
//! secret, for `/v1/keys`) and [`FilterAuth`] (the filter token, for lookups and usage). Each
//! accepts only its own token.
//!
//! Tokens are compared as SHA-256 digests with a constant-time equality, so neither timing nor
//! length tells an attacker how close a guess was.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use keygate_core::key::KeyHash;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::AppState;

/// The SHA-256 of each accepted bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub admin: KeyHash,
    pub filter: KeyHash,
}

/// Proof that the request carries the admin secret.
#[derive(Debug)]
pub struct AdminAuth;

/// Proof that the request carries the filter token.
#[derive(Debug)]
pub struct FilterAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check(parts, &state.tokens.admin, "admin").map(|()| Self)
    }
}

impl FromRequestParts<AppState> for FilterAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check(parts, &state.tokens.filter, "filter").map(|()| Self)
    }
}

fn check(parts: &Parts, expected: &KeyHash, caller: &'static str) -> Result<(), ApiError> {
    let presented = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if matches(token, expected) => Ok(()),
        presented => {
            tracing::warn!(
                caller,
                path = parts.uri.path(),
                token_sent = presented.is_some(),
                "rejected request without a valid bearer token"
            );
            Err(ApiError::Unauthorized)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn matches(presented: &str, expected: &KeyHash) -> bool {
    let presented = KeyHash::of(presented.as_bytes());
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_is_taken_from_the_header_value() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn only_the_exact_token_matches() {
        let expected = KeyHash::of(b"s3cret-token");
        assert!(matches("s3cret-token", &expected));
        assert!(!matches("s3cret-toke", &expected));
        assert!(!matches("s3cret-token ", &expected));
        assert!(!matches("", &expected));
    }
}
