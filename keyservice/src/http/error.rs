//! [`ApiError`]: every error answer the service gives, as `{"error": "<code>", "message": "..."}`.
//!
//! Axum's own rejections (bad JSON, wrong content type, oversized body, bad query string) and its
//! 404/405 fallbacks are mapped here too, so clients never see a plain-text error.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::entropy::EntropyError;
use crate::keys::ValidationError;
use crate::store::StoreError;

const WWW_AUTHENTICATE: HeaderValue =
    HeaderValue::from_static("Bearer realm=\"keygate-keyservice\"");

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
    /// 404 `not_found`: no such key, or no such route.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 405 `method_not_allowed` (axum adds the `Allow` header).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `revoked`: the key is revoked, and revocation is final.
    #[error("the key is revoked; revocation is final")]
    Revoked,
    /// 413 `payload_too_large`
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415 `unsupported_media_type`: the body is not `Content-Type: application/json`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// 503 `unavailable`: the database is busy, full or unreachable. The cause is logged, not
    /// sent.
    #[error("the key store is unavailable, try again later")]
    Unavailable(#[source] StoreError),
    /// 500 `internal`. The cause is logged, not sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: &'a str,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Revoked => (StatusCode::CONFLICT, "revoked"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %ErrorChain(&self), "request failed");
        }
        let message = self.to_string();
        let mut response = (
            status,
            axum::Json(ErrorBody {
                error: code,
                message: &message,
            }),
        )
            .into_response();
        if let Self::Unauthorized = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, WWW_AUTHENTICATE);
        }
        response
    }
}

/// Displays an error with all its sources: `a: b: c`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

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
