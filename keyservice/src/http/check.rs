//! The ext_authz check, any method on `/v1/check` and `/v1/check/{*path}`: an API key check for
//! proxies without the Wasm filter (Envoy's `ext_authz` HTTP service appends the original path to
//! its `path_prefix`), and the baseline the filter is benchmarked against.
//!
//! The key comes from `x-api-key` or `Authorization: Bearer kg_...` (one credential; two
//! different ones are ambiguous). It is checked like a lookup (one indexed query by its hash) and
//! answered like the filter would:
//! - 200, empty, with `x-keygate-key-id`, `x-keygate-tenant`, `x-keygate-permissions`
//!   (comma-separated) and `x-keygate-auth: api_key` for the proxy to copy upstream
//!   (`allowed_upstream_headers`);
//! - 401 `{"error":"unauthorized","reason":...}` with `WWW-Authenticate`;
//! - 403 `{"error":"forbidden","reason":"insufficient_permissions","missing_permissions":[...]}`
//!   when the proxy names required permissions in `x-keygate-required-permissions`
//!   (comma-separated) and the key lacks one.
//!
//! The bodies and headers are keygate-core's [`Denial`], the filter's own. No token is needed:
//! the caller proves only its own key. Usage is not counted here (the filter's reports do that).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use keygate_core::decision::{Denial, DenyReason};
use keygate_core::key::{ApiKey, KEY_PREFIX};
use keygate_core::wire::{InvalidReason, LookupResponse};
use tracing::debug;

use super::auth::{bearer_token, single_authorization, AuthorizationError};
use super::error::ApiError;
use crate::keys;
use crate::AppState;

const API_KEY_HEADER: &str = "x-api-key";
const REQUIRED_PERMISSIONS_HEADER: &str = "x-keygate-required-permissions";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/check", any(check))
        // The catch-all needs a non-empty rest; `/` forwarded under the prefix gives `/v1/check/`.
        .route("/v1/check/", any(check))
        .route("/v1/check/{*path}", any(check))
}

async fn check(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let key = match presented_key(&headers) {
        Ok(Some(key)) => key,
        Ok(None) => return Ok(deny(Denial::new(DenyReason::MissingCredential))),
        Err(reason) => return Ok(deny(Denial::new(reason))),
    };
    let now = state.clock.now();
    let found = state.store.find_secret(&key.hash()).await?;
    let answer = keys::lookup_answer(found.as_ref(), now, state.cache);
    let LookupResponse::Valid {
        key_id,
        tenant,
        permissions,
        ..
    } = answer
    else {
        let reason = match answer {
            LookupResponse::Invalid {
                reason: InvalidReason::Revoked,
                ..
            } => DenyReason::RevokedKey,
            LookupResponse::Invalid {
                reason: InvalidReason::Expired,
                ..
            } => DenyReason::ExpiredKey,
            _ => DenyReason::UnknownKey,
        };
        debug!(reason = reason.as_str(), "check: denied");
        return Ok(deny(Denial::new(reason)));
    };

    let missing: Vec<String> = required_permissions(&headers)
        .filter(|p| !permissions.iter().any(|held| held == p))
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        debug!(key_id, "check: forbidden");
        let mut denial = Denial::new(DenyReason::Forbidden);
        denial.missing = missing;
        return Ok(deny(denial));
    }
    debug!(key_id, "check: allowed");
    let identity = [
        ("x-keygate-key-id", key_id),
        ("x-keygate-tenant", tenant),
        ("x-keygate-permissions", permissions.join(",")),
        ("x-keygate-auth", "api_key".to_owned()),
    ];
    let mut response = StatusCode::OK.into_response();
    for (name, value) in identity {
        // Ids, tenants and permissions are validated to header-safe alphabets when stored.
        if let Ok(value) = HeaderValue::try_from(value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    Ok(response)
}

/// The one API key the request carries, if any. An `Authorization` header that is not a bearer
/// `kg_` key belongs to someone else (the upstream, say) and is ignored.
fn presented_key(headers: &HeaderMap) -> Result<Option<ApiKey>, DenyReason> {
    let mut values: Vec<&str> = Vec::new();
    for value in headers.get_all(API_KEY_HEADER) {
        values.push(value.to_str().map_err(|_| DenyReason::MalformedKey)?.trim());
    }
    let authorization = match single_authorization(headers) {
        Ok(value) => value,
        Err(AuthorizationError::Ambiguous) => return Err(DenyReason::AmbiguousCredential),
        // Not text, so not a key of ours: someone else's (the upstream's), as below.
        Err(AuthorizationError::NotText) => None,
    };
    if let Some(token) = authorization.and_then(bearer_token) {
        if token.starts_with(KEY_PREFIX) {
            values.push(token);
        }
    }
    let Some(first) = values.first() else {
        return Ok(None);
    };
    if values.iter().any(|v| v != first) {
        return Err(DenyReason::AmbiguousCredential);
    }
    ApiKey::parse(first)
        .map(Some)
        .map_err(|_| DenyReason::MalformedKey)
}

/// The proxy's `x-keygate-required-permissions`: comma-separated, blanks ignored.
fn required_permissions(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(REQUIRED_PERMISSIONS_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

fn deny(denial: Denial) -> Response {
    let status = u16::try_from(denial.status())
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = (status, denial.body()).into_response();
    for (name, value) in denial.headers() {
        if let Ok(value) = HeaderValue::try_from(value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn key_is_read_from_x_api_key_or_a_bearer_kg_token() {
        assert_eq!(presented_key(&HeaderMap::new()), Ok(None));
        // Not ours: a JWT for the upstream.
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer eyJhbGciOi.x.y")])),
            Ok(None)
        );
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "nope")])),
            Err(DenyReason::MalformedKey)
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer kg_short")])),
            Err(DenyReason::MalformedKey)
        );
        assert_eq!(
            presented_key(&headers(&[
                ("x-api-key", "kg_a"),
                ("authorization", "Bearer kg_b")
            ])),
            Err(DenyReason::AmbiguousCredential)
        );
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "kg_a"), ("x-api-key", "kg_b")])),
            Err(DenyReason::AmbiguousCredential)
        );
        assert_eq!(
            presented_key(&headers(&[
                ("authorization", "Bearer eyJhbGciOi.x.y"),
                ("authorization", "Bearer kg_b")
            ])),
            Err(DenyReason::AmbiguousCredential)
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer kg_a, Bearer kg_b")])),
            Err(DenyReason::AmbiguousCredential)
        );
    }

    #[test]
    fn required_permissions_are_comma_separated_and_trimmed() {
        let h = headers(&[
            (REQUIRED_PERMISSIONS_HEADER, " a, ,b "),
            (REQUIRED_PERMISSIONS_HEADER, "c"),
        ]);
        assert_eq!(
            required_permissions(&h).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn a_valid_key_in_both_places_is_one_credential() {
        let key = ApiKey::from_random([7; keygate_core::key::KEY_RANDOM_BYTES]);
        let secret = key.expose_secret();
        let bearer = format!("Bearer {secret}");
        assert_eq!(
            presented_key(&headers(&[
                ("x-api-key", secret),
                ("authorization", &bearer)
            ])),
            Ok(Some(key))
        );
    }
}
