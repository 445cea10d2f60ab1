//! [`ApiError`]: every error answer the service gives, as `{"error": "<code>", "message": "..."}`,
//! except the token endpoint's, which are [`OAuthError`]s in RFC 6749's shape
//! (`{"error": "<code>", "error_description": "..."}`).
//!
//! Axum's own rejections (bad JSON, wrong content type, oversized body, bad query string) and its
//! 404/405 fallbacks are mapped here too, so clients never see a plain-text error.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::access::Denied;
use crate::entropy::EntropyError;
use crate::keyring::KeyRingError;
use crate::keys::ValidationError;
use crate::roles::Holder;
use crate::signing::SigningError;
use crate::store::StoreError;

const WWW_AUTHENTICATE: HeaderValue =
    HeaderValue::from_static("Bearer realm=\"keygate-keyservice\"");
/// The token endpoint's challenge (RFC 6749 section 5.2: 401 names the scheme the client may use).
const BASIC_CHALLENGE: HeaderValue = HeaderValue::from_static("Basic realm=\"keygate\"");

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: malformed JSON, a bad query string, or a field that fails validation.
    /// The message says what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `unauthorized`, with `WWW-Authenticate: Bearer`: no bearer token, or not the one this
    /// endpoint accepts.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 401 `unauthorized`, with `WWW-Authenticate: Bearer`: two `Authorization` headers, or
    /// credentials separated by a comma. Refused rather than guessed at, even if one is right.
    #[error("send exactly one Authorization header with one credential")]
    AmbiguousAuthorization,
    /// 403 `forbidden`: a tenant admin asked for something outside its tenant or above its own
    /// permissions, or for what only the super-admin may do. The message says which.
    #[error("{0}")]
    Forbidden(#[from] Denied),
    /// 404 `not_found`: no such key, client, role, tenant admin or route.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409 `conflict`: the name is taken in this tenant.
    #[error("the tenant has a {0} of that name already")]
    NameTaken(&'static str),
    /// 409 `role_in_use`, with the body's `holders`: credentials hold the role.
    #[error("the role is held by {} credential(s); take it from them first", .0.len())]
    RoleInUse(Vec<Holder>),
    /// 405 `method_not_allowed` (axum adds the `Allow` header).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `revoked`: the key or client is revoked, and revocation is final.
    #[error("the {0} is revoked; revocation is final")]
    Revoked(&'static str),
    /// 408 `request_timeout`, with `Connection: close`: the body did not arrive in time.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 413 `payload_too_large`
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415 `unsupported_media_type`: the body is not `Content-Type: application/json`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The token endpoint's errors, in their own shape; see [`OAuthError`].
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// 503 `unavailable`: the database is busy, full or unreachable. The cause is logged, not
    /// sent.
    #[error("the key store is unavailable, try again later")]
    Unavailable(#[source] StoreError),
    /// 500 `internal`. The cause is logged, not sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The body of every error but the token endpoint's: a stable code and a human-readable message.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody<'a> {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`, `revoked`,
    /// `conflict`, `role_in_use`,
    /// `request_timeout`, `payload_too_large`, `unsupported_media_type`, `unavailable` or
    /// `internal`.
    #[schema(value_type = String, example = "not_found")]
    error: &'static str,
    #[schema(value_type = String, example = "key not found")]
    message: &'a str,
}

impl ApiError {
    /// The `error` code of the answer, as sent.
    pub(crate) fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized | Self::AmbiguousAuthorization => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::NameTaken(_) => (StatusCode::CONFLICT, "conflict"),
            Self::RoleInUse(_) => (StatusCode::CONFLICT, "role_in_use"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Revoked(_) => (StatusCode::CONFLICT, "revoked"),
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::OAuth(e) => (e.status(), e.code()),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The body of 409 `role_in_use`: the usual error body and who holds the role.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RoleInUseError)]
pub(crate) struct RoleInUseBody<'a> {
    /// `role_in_use`
    #[schema(value_type = String, example = "role_in_use")]
    error: &'static str,
    #[schema(value_type = String)]
    message: &'a str,
    holders: Vec<HolderView>,
}

/// A credential holding a role.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct HolderView {
    /// `key`, `client` or `tenant_admin`.
    #[serde(rename = "type")]
    #[schema(example = "key")]
    kind: &'static str,
    id: String,
    name: String,
}

impl From<&Holder> for HolderView {
    fn from(h: &Holder) -> Self {
        Self {
            kind: h.kind.as_str(),
            id: h.id.clone(),
            name: h.name.clone(),
        }
    }
}

/// An error answer of the token endpoint (RFC 6749 section 5.2), sent as
/// `{"error": "<code>", "error_description": "..."}` with `Cache-Control: no-store`.
///
/// `invalid_grant` is never sent: the client credentials grant has no grant to be invalid, and a
/// revoked or expired client is `invalid_client`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// 400 `invalid_request`: wrong content type, a missing, repeated or malformed parameter, or
    /// two client authentication methods at once.
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// 401 `invalid_client` with `WWW-Authenticate: Basic realm="keygate"`: no client
    /// authentication, an unknown client, a wrong secret, or a revoked or expired client. One
    /// answer for all, so a caller without the secret learns nothing about the client.
    #[error("client authentication failed")]
    InvalidClient,
    /// 400 `unsupported_grant_type`: anything but `client_credentials`.
    #[error("only grant_type=client_credentials is supported")]
    UnsupportedGrantType,
    /// 400 `invalid_scope`: a malformed scope, or one the client does not hold.
    #[error("{0}")]
    InvalidScope(String),
    /// 429 `slow_down` with `Retry-After`: too many failed client authentications from this
    /// source address, for this client id or for all. `slow_down` is the registered OAuth error code for "back off"
    /// (RFC 8628 section 3.5); RFC 6749 has none.
    #[error("too many failed client authentications; retry after {retry_after_secs} s")]
    SlowDown { retry_after_secs: u64 },
}

impl OAuthError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::InvalidRequest(_) | Self::UnsupportedGrantType | Self::InvalidScope(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::SlowDown { .. } => "slow_down",
        }
    }
}

/// The token endpoint's error body (RFC 6749 section 5.2).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OAuthError)]
pub(crate) struct OAuthErrorBody<'a> {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, `invalid_scope` or
    /// `slow_down`.
    #[schema(value_type = String, example = "invalid_client")]
    error: &'static str,
    #[schema(value_type = String)]
    error_description: &'a str,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let description = self.to_string();
        let mut response = (
            self.status(),
            [
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (header::PRAGMA, HeaderValue::from_static("no-cache")),
            ],
            axum::Json(OAuthErrorBody {
                error: self.code(),
                error_description: &description,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        match self {
            Self::InvalidClient => {
                headers.insert(header::WWW_AUTHENTICATE, BASIC_CHALLENGE);
            }
            Self::SlowDown { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::OAuth(e) = self {
            return e.into_response();
        }
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %ErrorChain(&self), "request failed");
        }
        let message = self.to_string();
        let mut response = match &self {
            Self::RoleInUse(holders) => (
                status,
                axum::Json(RoleInUseBody {
                    error: code,
                    message: &message,
                    holders: holders.iter().map(HolderView::from).collect(),
                }),
            )
                .into_response(),
            _ => (
                status,
                axum::Json(ErrorBody {
                    error: code,
                    message: &message,
                }),
            )
                .into_response(),
        };
        match self {
            Self::Unauthorized | Self::AmbiguousAuthorization => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, WWW_AUTHENTICATE);
            }
            // The rest of the body may still come; the connection cannot be reused.
            Self::RequestTimeout => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// Displays an error with all its sources: `a: b: c`.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            Self::Unavailable(e)
        } else {
            Self::Internal(Box::new(e))
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl From<EntropyError> for ApiError {
    fn from(e: EntropyError) -> Self {
        Self::Internal(Box::new(e))
    }
}

impl From<SigningError> for ApiError {
    fn from(e: SigningError) -> Self {
        Self::Internal(Box::new(e))
    }
}

impl From<KeyRingError> for ApiError {
    fn from(e: KeyRingError) -> Self {
        match e {
            KeyRingError::Store(e) => Self::from(e),
            e => Self::Internal(Box::new(e)),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            status if status.is_server_error() => Self::Internal(Box::new(rejection)),
            _ => Self::BadRequest(rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        if rejection.status().is_server_error() {
            Self::Internal(Box::new(rejection))
        } else {
            Self::BadRequest(rejection.body_text())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_never_echo_their_cause() {
        let cause = std::io::Error::other("disk /secret/path exploded");
        let response = ApiError::Internal(Box::new(cause)).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let unavailable = ApiError::from(StoreError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(
            unavailable.status_and_code(),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert_eq!(
            unavailable.to_string(),
            "the key store is unavailable, try again later"
        );
    }

    #[test]
    fn unauthorized_carries_a_bearer_challenge() {
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            WWW_AUTHENTICATE
        );
    }

    #[test]
    fn error_chain_joins_sources() {
        let inner = std::io::Error::other("inner");
        let outer = StoreError::CreateDir {
            path: "/x".into(),
            source: inner,
        };
        assert_eq!(
            ErrorChain(&outer).to_string(),
            "cannot create the database folder /x: inner"
        );
    }
}
