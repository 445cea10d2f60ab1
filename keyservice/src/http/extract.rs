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
use crate::clients::ClientId;
use crate::keys::KeyId;

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

/// The `{id}` path segment as a [`KeyId`]. A malformed id names no key, so it answers 404 like
/// an unknown one.
#[derive(Debug)]
pub struct KeyIdPath(pub KeyId);

impl<S> FromRequestParts<S> for KeyIdPath
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        KeyId::parse(&id).map(Self).ok_or(ApiError::NotFound("key"))
    }
}

/// The `{id}` path segment as a [`ClientId`]; a malformed id answers 404 like an unknown one.
#[derive(Debug)]
pub struct ClientIdPath(pub ClientId);

impl<S> FromRequestParts<S> for ClientIdPath
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        ClientId::parse(&id)
            .map(Self)
            .ok_or(ApiError::NotFound("client"))
    }
}

/// The IP address of the TCP peer, when the server records it ([`crate::run`] does). Forwarding
/// headers such as `X-Forwarded-For` are not trusted: behind a proxy this is the proxy.
#[derive(Debug, Clone, Copy)]
pub struct PeerIp(pub Option<IpAddr>);

impl<S> FromRequestParts<S> for PeerIp
where
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(Self(peer.map(|ConnectInfo(addr)| addr.ip())))
    }
}
