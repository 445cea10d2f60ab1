//! The admin keys API under `/v1/keys`: create, list, get, revoke, renew, rotate, delete and
//! usage. Every handler takes [`AdminAuth`] first, so a request without the admin secret is
//! turned away before its body is read.
//!
//! A key's secret is in the response to create and rotate only; it is never stored or shown
//! again.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use keygate_core::key::ApiKey;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::info;

use super::auth::AdminAuth;
use super::error::ApiError;
use super::extract::{Json, KeyIdPath, Query};
use crate::keys::{self, DailyCount, Key, KeyStatus, Name, Tenant};
use crate::store::Change;
use crate::{entropy, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{id}", get(get_key).delete(delete_key))
        .route("/v1/keys/{id}/revoke", post(revoke_key))
        .route("/v1/keys/{id}/renew", post(renew_key))
        .route("/v1/keys/{id}/rotate", post(rotate_key))
        .route("/v1/keys/{id}/usage", get(key_usage))
}

/// A key as the admin API shows it: everything but its secrets.
#[derive(Debug, Serialize)]
struct KeyView {
    id: String,
    name: String,
    tenant: String,
    permissions: Vec<String>,
    status: KeyStatus,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
}

impl KeyView {
    fn new(key: &Key, now: OffsetDateTime) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name.as_str().to_owned(),
            tenant: key.tenant.to_string(),
            permissions: key
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            status: key.status(now),
            created_at: key.created_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// The answer to create and rotate: the key and its new secret, shown this once.
#[derive(Serialize)]
struct KeyWithSecret {
    #[serde(flatten)]
    key: KeyView,
    secret: String,
}

impl KeyWithSecret {
    /// `Cache-Control: no-store`: no proxy or client cache should keep the secret.
    fn respond(self, status: StatusCode) -> Response {
        let location = format!("/v1/keys/{}", self.key.id);
        let headers = [
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::LOCATION, location),
        ];
        (status, headers, axum::Json(self)).into_response()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyRequest {
    name: String,
    tenant: String,
    permissions: Vec<String>,
    expires_in_secs: Option<u64>,
    never_expires: Option<bool>,
}

async fn create_key(
    _: AdminAuth,
    State(state): State<AppState>,
    Json(request): Json<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let name = Name::parse(request.name)?;
    let tenant = Tenant::parse(request.tenant)?;
    let permissions = keys::parse_permissions(request.permissions)?;
    let expires_at = keys::expiry(
        now,
        request.expires_in_secs,
        request.never_expires.unwrap_or(false),
        state.default_key_lifetime,
    )?;
    let secret = entropy::api_key()?;
    let key = Key {
        id: entropy::key_id()?,
        name,
        tenant,
        permissions,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    state.store.insert_key(&key, &secret.hash()).await?;
    info!(key_id = %key.id, tenant = %key.tenant, "key created");
    Ok(with_secret(&key, secret, now).respond(StatusCode::CREATED))
}

fn with_secret(key: &Key, secret: ApiKey, now: OffsetDateTime) -> KeyWithSecret {
    KeyWithSecret {
        key: KeyView::new(key, now),
        secret: secret.expose_secret().to_owned(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFilter {
    tenant: Option<String>,
}

#[derive(Serialize)]
struct KeyList {
    keys: Vec<KeyView>,
}

async fn list_keys(
    _: AdminAuth,
    State(state): State<AppState>,
    Query(filter): Query<ListFilter>,
) -> Result<axum::Json<KeyList>, ApiError> {
    let tenant = filter.tenant.map(Tenant::parse).transpose()?;
    let now = state.clock.now();
    let keys = state.store.list_keys(tenant.as_ref()).await?;
    Ok(axum::Json(KeyList {
        keys: keys.iter().map(|k| KeyView::new(k, now)).collect(),
    }))
}

async fn get_key(
    _: AdminAuth,
    State(state): State<AppState>,
    KeyIdPath(id): KeyIdPath,
) -> Result<axum::Json<KeyView>, ApiError> {
    let key = state
        .store
        .get_key(&id)
        .await?
        .ok_or(ApiError::NotFound("key"))?;
    Ok(axum::Json(KeyView::new(&key, state.clock.now())))
}

async fn revoke_key(
    _: AdminAuth,
    State(state): State<AppState>,
    KeyIdPath(id): KeyIdPath,
) -> Result<axum::Json<KeyView>, ApiError> {
    let now = state.clock.now();
    let key = state
        .store
        .revoke_key(&id, now)
        .await?
        .ok_or(ApiError::NotFound("key"))?;
    info!(key_id = %id, "key revoked");
    Ok(axum::Json(KeyView::new(&key, now)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    expires_in_secs: Option<u64>,
    never_expires: Option<bool>,
}

/// Sets the expiry to `now + expires_in_secs` (or the default lifetime, or never). Works on an
/// expired key; never on a revoked one.
async fn renew_key(
    _: AdminAuth,
    State(state): State<AppState>,
    KeyIdPath(id): KeyIdPath,
    Json(request): Json<RenewRequest>,
) -> Result<axum::Json<KeyView>, ApiError> {
    let now = state.clock.now();
    let expires_at = keys::expiry(
        now,
        request.expires_in_secs,
        request.never_expires.unwrap_or(false),
        state.default_key_lifetime,
    )?;
    let key = applied(state.store.renew_key(&id, expires_at, now).await?)?;
    info!(key_id = %id, "key renewed");
    Ok(axum::Json(KeyView::new(&key, now)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    grace_period_secs: u64,
}

/// Issues a new secret. The old ones keep working until `now + grace_period_secs`, then answer
/// `expired`. Refused for a revoked key; allowed for an expired one (renew it to use the secret).
async fn rotate_key(
    _: AdminAuth,
    State(state): State<AppState>,
    KeyIdPath(id): KeyIdPath,
    Json(request): Json<RotateRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let retires_at = keys::grace_end(now, request.grace_period_secs)?;
    let secret = entropy::api_key()?;
    let key = applied(
        state
            .store
            .rotate_secret(&id, &secret.hash(), now, retires_at)
            .await?,
    )?;
    info!(key_id = %id, grace_period_secs = request.grace_period_secs, "key rotated");
    Ok(with_secret(&key, secret, now).respond(StatusCode::OK))
}

fn applied(change: Change<Key>) -> Result<Key, ApiError> {
    match change {
        Change::Done(key) => Ok(key),
        Change::NotFound => Err(ApiError::NotFound("key")),
        Change::Revoked(_) => Err(ApiError::Revoked("key")),
    }
}

async fn delete_key(
    _: AdminAuth,
    State(state): State<AppState>,
    KeyIdPath(id): KeyIdPath,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete_key(&id, state.clock.now()).await? {
        return Err(ApiError::NotFound("key"));
    }
    info!(key_id = %id, "key deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct UsageView {
    key_id: String,
    total: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    last_used_at: Option<OffsetDateTime>,
    daily: Vec<DailyCount>,
}

async fn key_usage(
    _: AdminAuth,
    State(state): State<AppState>,
    KeyIdPath(id): KeyIdPath,
) -> Result<axum::Json<UsageView>, ApiError> {
    let usage = state
        .store
        .usage(&id)
        .await?
        .ok_or(ApiError::NotFound("key"))?;
    Ok(axum::Json(UsageView {
        key_id: id.to_string(),
        total: usage.total(),
        last_used_at: usage.last_used_at,
        daily: usage.daily,
    }))
}
