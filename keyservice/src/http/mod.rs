//! The HTTP edge: one module per area, each owning its routes, plus what they share.
//!
//! - [`admin`] serves the keys API, [`clients`] the OAuth clients API and [`tenant_admins`] the
//!   tenant admins API, all three through [`credentials`] (admin or tenant admin secret).
//! - [`roles`] serves the roles API, [`audit`] the audit log and [`me`] `/v1/me` (admin or tenant
//!   admin secret).
//! - [`signing_keys`] lists and force-rotates the token signing keys (admin secret).
//! - [`filter`] serves lookup and usage (filter token).
//! - [`changes`] serves the revocation feed (filter token).
//! - [`oauth`] serves the token endpoint (client credentials).
//! - [`discovery`] serves the JWKS and the authorization server metadata (public).
//! - [`check`] serves the ext_authz API key check (the caller's own key).
//! - [`health`] serves `/healthz`.
//! - [`metrics`] serves `/metrics` (metrics token).
//! - [`openapi`] has the OpenAPI document's frame ([`openapi::ApiDoc`]: info, security schemes)
//!   and serves it at `/openapi.json` with the explorer at `/docs`.
//! - [`console`] serves the web console at `/console` (its files from the binary; not API
//!   routes, so not in the document).
//! - [`auth`] has the [`auth::Admin`], [`auth::FilterAuth`] and [`auth::MetricsAuth`]
//!   extractors.
//! - [`error`] has [`error::ApiError`], the one error response type, and its token endpoint
//!   shape [`error::OAuthError`].
//! - [`extract`] has JSON, query and path extractors that reject with [`error::ApiError`], and
//!   the peer address.
//!
//! Each module's router is a `utoipa_axum` `OpenApiRouter` built with `routes!` from handlers
//! carrying `#[utoipa::path]`: one declaration adds a route and documents it, so the document
//! cannot miss a route or drift from it. `.route()` is a disallowed method (clippy.toml) for
//! that reason.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod changes;
pub mod check;
pub mod clients;
pub mod console;
pub mod credentials;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod filter;
pub mod health;
pub mod me;
pub mod metrics;
pub mod oauth;
pub mod openapi;
pub mod roles;
pub mod signing_keys;
pub mod tenant_admins;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use axum::http::HeaderValue;

use self::error::ApiError;
use self::extract::RequestId;
use crate::metrics::Metrics;
use crate::AppState;

/// Largest request body accepted. Key requests, token requests and usage batches are far smaller.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Whether `/openapi.json` and `/docs` are served (`--hide-docs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Docs {
    Served,
    Hidden,
}

/// Every API route with its documentation: the one list both the router and the OpenAPI
/// document come from.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(admin::router())
        .merge(clients::router())
        .merge(tenant_admins::router())
        .merge(roles::router())
        .merge(audit::router())
        .merge(me::router())
        .merge(signing_keys::router())
        .merge(filter::router())
        .merge(changes::router())
        .merge(oauth::router())
        .merge(discovery::router())
        .merge(check::router())
        .merge(health::router())
        .merge(metrics::router())
}

/// All routes, with JSON 404/405 answers, the body size limit and deadline (see
/// [`body_deadline`]), and a log line and the request metrics per request.
pub fn router(
    body_timeout: Duration,
    docs: Docs,
    console: console::Console,
    metrics: Metrics,
) -> Router<AppState> {
    let (api, document) = api().split_for_parts();
    let router = match docs {
        Docs::Served => api.merge(openapi::docs_router(document)),
        Docs::Hidden => api,
    };
    let router = match console {
        console::Console::Served => router.merge(console::router()),
        console::Console::Hidden => router,
    };
    router
        .fallback(|| async { ApiError::NotFound("route") })
        // Must come after every route: it applies to the routes registered so far.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            BodyTimeout(body_timeout),
            body_deadline,
        ))
        .layer(middleware::from_fn_with_state(metrics, log_request))
        .layer(middleware::from_fn(request_id))
}

/// Gives every request an id (the caller's `X-Request-Id` if acceptable, else a fresh one; see
/// [`RequestId`]), for handlers and the audit log, and sends it back in `X-Request-Id`.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| RequestId::from_caller(v.as_bytes()))
        .or_else(|| {
            crate::entropy::bytes::<8>()
                .ok()
                .map(|b| RequestId(crate::credentials::hex(&b)))
        });
    if let Some(id) = &id {
        request.extensions_mut().insert(id.clone());
    }
    let mut response = next.run(request).await;
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id.0).ok()) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

const REQUEST_ID: &str = "x-request-id";

/// How long a request body may take, from the request head.
#[derive(Debug, Clone, Copy)]
struct BodyTimeout(Duration);

/// Reads the whole request body, at most [`MAX_BODY_BYTES`], before any handler runs, and answers
/// 408 ([`ApiError::RequestTimeout`]) when it has not arrived within the deadline: a client that
/// sends less than its `Content-Length`, or trickles it, cannot hold a handler (and its
/// connection) open. Every body the service accepts is small, so buffering costs nothing the
/// handlers would not spend anyway. A larger body is 413, as the extractors would answer.
async fn body_deadline(
    State(BodyTimeout(timeout)): State<BodyTimeout>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = Limited::new(body, MAX_BODY_BYTES).collect();
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return ApiError::PayloadTooLarge.into_response();
        }
        // The client reset or sent a malformed chunked body; it will hardly read the answer.
        Ok(Err(e)) => {
            return ApiError::BadRequest(format!("cannot read the body: {e}")).into_response()
        }
        Err(_) => return ApiError::RequestTimeout.into_response(),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Logs method, route template, status and latency, and counts them in the request metrics
/// (`keygate_http_requests_total`, `keygate_http_request_duration_seconds`). The route template
/// (`/v1/keys/{id}`), not the raw path: a client could put anything in a path, a key included,
/// and the metrics' labels must stay few.
async fn log_request(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(
        %method,
        route,
        status,
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    metrics.record_request(&route, status, elapsed);
    response
}
