//! Extractors whose rejections are [`ApiError`]s, so a bad body, query string or path answers in
//! the service's JSON error format instead of axum's plain text; and [`PeerIp`].

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::credentials::CredentialId;
use crate::roles::RoleId;

/// `axum::Json` with an [`ApiError`] rejection, for bodies that are JSON objects. Responses use
/// `axum::Json` directly.
///
/// serde reads a struct from a JSON array too (its fields in order: `[null, null]` is a renew
/// request), which no client means and the OpenAPI document does not allow; such a body is 400.
/// The body is already in memory ([`super::body_deadline`]), so looking at it costs nothing.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?
            .to_bytes();
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        let req = Request::from_parts(parts, Body::from(bytes.clone()));
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        // After axum's checks, so a wrong content type is still 415 and malformed JSON still
        // says where it is.
        if first != Some(&b'{') {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".to_owned(),
            ));
        }
        Ok(Self(value))
    }
}

/// `axum::extract::Query` with an [`ApiError`] rejection.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The `{id}` path segment as a credential id of kind `I`. A malformed id names nothing, so it
/// answers 404 like an unknown one.
#[derive(Debug)]
pub struct IdPath<I>(pub I);

impl<S, I> FromRequestParts<S> for IdPath<I>
where
    S: Send + Sync,
    I: CredentialId,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        I::parse(&id)
            .map(Self)
            .ok_or(ApiError::NotFound(I::KIND.noun()))
    }
}

/// The `{id}` path segment as a [`RoleId`]; a malformed id answers 404 like an unknown one.
#[derive(Debug)]
pub struct RoleIdPath(pub RoleId);

impl<S> FromRequestParts<S> for RoleIdPath
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        RoleId::parse(&id)
            .map(Self)
            .ok_or(ApiError::NotFound("role"))
    }
}

/// The IP address of the TCP peer, when the server records it ([`crate::run`] does). Forwarding
/// headers such as `X-Forwarded-For` are not trusted: behind a proxy this is the proxy.
#[derive(Debug, Clone, Copy)]
pub struct PeerIp(pub Option<IpAddr>);

impl PeerIp {
    pub fn of(parts: &Parts) -> Self {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Self(peer.map(|ConnectInfo(addr)| addr.ip()))
    }
}

impl<S> FromRequestParts<S> for PeerIp
where
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self::of(parts))
    }
}

/// The request's [`RequestId`], if the middleware gave it one (it always does in the service).
#[derive(Debug, Clone)]
pub struct CallerRequestId(pub Option<String>);

impl<S> FromRequestParts<S> for CallerRequestId
where
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(RequestId::of(parts)))
    }
}

/// The request's id: the caller's `X-Request-Id` when it is a plain token (1 to 64 of
/// `A-Z a-z 0-9 . _ -`), else one the service made up. Set by the request middleware in
/// [`crate::http`], sent back in the response's `X-Request-Id`, and recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Longest `X-Request-Id` taken from a caller.
const MAX_REQUEST_ID_LEN: usize = 64;

impl RequestId {
    /// The caller's id if it is acceptable.
    pub fn from_caller(value: &[u8]) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= MAX_REQUEST_ID_LEN
            && value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| Self(String::from_utf8_lossy(value).into_owned()))
    }

    /// The id the middleware attached to the request, if any.
    pub fn of(parts: &Parts) -> Option<String> {
        parts.extensions.get::<Self>().map(|id| id.0.clone())
    }
}
