//! The callers of the service and how they prove who they are: [`Admin`] (the admin secret, or
//! a tenant admin's secret, for the admin API: keys, clients, roles, tenant admins, audit),
//! [`FilterAuth`] (the filter token, for lookups, usage and the change feed) and [`MetricsAuth`]
//! (the metrics token, for `/metrics`). Each accepts only its own tokens.
//!
//! A request to the admin API without a valid secret is recorded in the audit log
//! (`auth.failure`), at most [`crate::audit::FAILURES_PER_WINDOW`] a minute.
//!
//! Tokens are compared as SHA-256 digests with a constant-time equality, so neither timing nor
//! length tells an attacker how close a guess was.
//!
//! [`single_authorization`] is the one reading of the `Authorization` header for every endpoint
//! that authenticates by it (these extractors, the token endpoint's HTTP Basic, the ext_authz
//! check). Two headers, or one whose value holds a comma (how proxies fold repeated headers), are
//! ambiguous and refused, never resolved by picking one: the filter does the same, and a proxy
//! and the service that pick differently would each check a different credential.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use keygate_core::key::KeyHash;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::extract::{PeerIp, RequestId};
use crate::access::Actor;
use crate::audit;
use crate::credentials::{Kind, TenantAdminId};
use crate::AppState;

/// The SHA-256 of each accepted bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub admin: KeyHash,
    pub filter: KeyHash,
    /// `None`: `/metrics` is off.
    pub metrics: Option<KeyHash>,
}

/// Proof that the request carries the admin secret or a live tenant admin's secret: who it
/// is, and the audit context of the request.
#[derive(Debug, Clone)]
pub struct Admin {
    pub actor: Actor,
    pub context: audit::Context,
}

/// Proof that the request carries the filter token.
#[derive(Debug)]
pub struct FilterAuth;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let context = |actor: &str| audit::Context {
            actor: actor.to_owned(),
            source: PeerIp::of(parts).0,
            request_id: RequestId::of(parts),
        };
        let actor = match presented_token(parts, "admin") {
            Ok(Some(token)) if matches(token, &state.tokens.admin) => Ok(Actor::SuperAdmin),
            Ok(Some(token)) if token.starts_with(Kind::TenantAdmin.secret_prefix()) => {
                tenant_admin(parts, state, token).await
            }
            Ok(presented) => Err(refused(parts, "admin", presented.is_some())),
            Err(e) => Err(e),
        };
        match actor {
            Ok(actor) => Ok(Self {
                context: context(actor.id()),
                actor,
            }),
            Err(e) => {
                if matches!(e, ApiError::Unauthorized | ApiError::AmbiguousAuthorization) {
                    let event = audit::Event::new(
                        &context("anonymous"),
                        state.clock.now(),
                        audit::Action::AuthFailure,
                        audit::Outcome::Failure,
                    );
                    record_failure(state, &event).await;
                }
                Err(e)
            }
        }
    }
}

/// The tenant admin whose secret (`presented`) the request carries, if it is live.
async fn tenant_admin(parts: &Parts, state: &AppState, presented: &str) -> Result<Actor, ApiError> {
    let found = state
        .store
        .find_secret::<TenantAdminId>(&KeyHash::of(presented.as_bytes()))
        .await?;
    match found {
        Some(found) if found.is_live(state.clock.now()) => {
            Ok(Actor::TenantAdmin(Box::new(found.credential)))
        }
        _ => {
            tracing::warn!(
                path = parts.uri.path(),
                "rejected request with an unknown, revoked or expired tenant admin secret"
            );
            Err(ApiError::Unauthorized)
        }
    }
}

/// Records a failed authentication, unless this minute's allowance is spent. A failure to record
/// is logged; the request is refused either way.
pub(crate) async fn record_failure(state: &AppState, event: &audit::Event) {
    let admitted = state
        .failure_audit
        .lock()
        .map(|mut audit| audit.admit(event.at))
        .unwrap_or(false);
    if !admitted {
        state.metrics.audit_dropped();
        return;
    }
    if let Err(e) = state.store.record_audit(event).await {
        tracing::error!(error = %super::error::ErrorChain(&e), "cannot record a failed authentication");
    }
}

/// Proof that the request carries the metrics token. Without a configured token `/metrics` does
/// not exist: 404, as for any unknown route.
#[derive(Debug)]
pub struct MetricsAuth;

impl FromRequestParts<AppState> for MetricsAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match &state.tokens.metrics {
            Some(expected) => check(parts, expected, "metrics").map(|()| Self),
            None => Err(ApiError::NotFound("route")),
        }
    }
}

impl FromRequestParts<AppState> for FilterAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check(parts, &state.tokens.filter, "filter").map(|()| Self)
    }
}

/// Why a request's `Authorization` cannot be read as one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthorizationError {
    #[error("more than one Authorization header, or credentials separated by a comma")]
    Ambiguous,
    #[error("the Authorization header is not visible ASCII")]
    NotText,
}

/// The request's one `Authorization` value, `None` when it has none.
///
/// No credential this service accepts contains a comma (secrets are checked for it at start-up;
/// Basic credentials are base64; keys and client secrets are hex), so a comma can only mean two
/// credentials folded into one header.
pub(crate) fn single_authorization(
    headers: &HeaderMap,
) -> Result<Option<&str>, AuthorizationError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return if headers.contains_key(header::AUTHORIZATION) {
            Err(AuthorizationError::Ambiguous)
        } else {
            Ok(None)
        };
    };
    let value = value.to_str().map_err(|_| AuthorizationError::NotText)?;
    if value.contains(',') {
        return Err(AuthorizationError::Ambiguous);
    }
    Ok(Some(value))
}

fn check(parts: &Parts, expected: &KeyHash, caller: &'static str) -> Result<(), ApiError> {
    match presented_token(parts, caller)? {
        Some(token) if matches(token, expected) => Ok(()),
        presented => Err(refused(parts, caller, presented.is_some())),
    }
}

/// The bearer token of the request's one `Authorization` header; `None` without one (or with
/// one that is not visible ASCII). Two are refused.
fn presented_token<'a>(
    parts: &'a Parts,
    caller: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    match single_authorization(&parts.headers) {
        Ok(value) => Ok(value.and_then(bearer_token)),
        Err(AuthorizationError::NotText) => Ok(None),
        Err(AuthorizationError::Ambiguous) => {
            tracing::warn!(
                caller,
                path = parts.uri.path(),
                "rejected request with an ambiguous Authorization header"
            );
            Err(ApiError::AmbiguousAuthorization)
        }
    }
}

fn refused(parts: &Parts, caller: &'static str, token_sent: bool) -> ApiError {
    tracing::warn!(
        caller,
        path = parts.uri.path(),
        token_sent,
        "rejected request without a valid bearer token"
    );
    ApiError::Unauthorized
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
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::HeaderValue;

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
    fn authorization_must_be_one_header_with_one_credential() {
        let mut headers = HeaderMap::new();
        assert_eq!(single_authorization(&headers), Ok(None));
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        assert_eq!(single_authorization(&headers), Ok(Some("Bearer a")));
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        assert_eq!(
            single_authorization(&headers),
            Err(AuthorizationError::Ambiguous)
        );

        let one = |value: &'static [u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(value).unwrap(),
            );
            single_authorization(&headers).map(|v| v.map(str::to_owned))
        };
        assert_eq!(
            one(b"Bearer a, Bearer b"),
            Err(AuthorizationError::Ambiguous)
        );
        assert_eq!(one(b"Bearer a,"), Err(AuthorizationError::Ambiguous));
        assert_eq!(one(b"Bearer \xa1"), Err(AuthorizationError::NotText));
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
