//! The admin keys API under `/v1/keys`: create, list, get, revoke, renew, rotate, delete and
//! usage. Every handler takes [`AdminAuth`] first, so a request without the admin secret is
//! turned away before its body is read.
//!
//! A key's secret is in the response to create and rotate only; it is never stored or shown
//! again.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use keygate_core::key::ApiKey;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::info;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::AdminAuth;
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, KeyIdPath, Query};
use crate::keys::{self, DailyCount, Key, KeyStatus, Name, Tenant};
use crate::store::Change;
use crate::{entropy, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, delete_key))
        .routes(routes!(revoke_key))
        .routes(routes!(renew_key))
        .routes(routes!(rotate_key))
        .routes(routes!(key_usage))
}

/// A key as the admin API shows it: everything but its secrets.
#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Serialize, ToSchema)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateKeyRequest {
    /// 1 to 200 characters, no control or invisible ones (`keys::Name`).
    #[schema(min_length = 1, max_length = 200, example = "billing backend")]
    name: String,
    /// Letters, digits and `. _ : -`, at most 64 bytes (`keys::Tenant`).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._:-]+$",
        example = "acme"
    )]
    tenant: String,
    /// At most 100.
    #[schema(value_type = Vec<keygate_core::permission::Permission>, max_items = 100)]
    permissions: Vec<String>,
    /// Lifetime from now, 1 s to 10 years (`keys::MAX_KEY_LIFETIME_SECS`); the default lifetime
    /// when absent. Not with `never_expires: true`.
    #[schema(minimum = 1, maximum = 315_360_000)]
    expires_in_secs: Option<u64>,
    never_expires: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    summary = "Create a key; its secret is in this answer only",
    request_body = CreateKeyRequest,
    security(("admin_secret" = [])),
    responses(
        (status = 201, description = "the key and its secret, shown this once", body = KeyWithSecret),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListFilter {
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    /// Only this tenant's keys.
    tenant: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct KeyList {
    keys: Vec<KeyView>,
}

#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    summary = "List keys",
    params(ListFilter),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the keys", body = KeyList),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
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

#[utoipa::path(
    get,
    path = "/v1/keys/{id}",
    tag = "keys",
    summary = "Get a key",
    params(("id" = String, Path, description = "the key id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the key", body = KeyView),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
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

#[utoipa::path(
    post,
    path = "/v1/keys/{id}/revoke",
    tag = "keys",
    summary = "Revoke a key (final; again is a no-op)",
    params(("id" = String, Path, description = "the key id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the revoked key", body = KeyView),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    /// Lifetime from now, 1 s to 10 years; the default lifetime when absent. Not with
    /// `never_expires: true`.
    #[schema(minimum = 1, maximum = 315_360_000)]
    expires_in_secs: Option<u64>,
    never_expires: Option<bool>,
}

/// Sets the expiry to `now + expires_in_secs` (or the default lifetime, or never). Works on an
/// expired key; never on a revoked one.
#[utoipa::path(
    post,
    path = "/v1/keys/{id}/renew",
    tag = "keys",
    summary = "Set a new expiry",
    request_body = RenewRequest,
    params(("id" = String, Path, description = "the key id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the renewed key", body = KeyView),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
        (status = 409, description = "the key is revoked", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// At most one year (`keys::MAX_GRACE_PERIOD_SECS`).
    #[schema(maximum = 31_536_000)]
    grace_period_secs: u64,
}

/// Issues a new secret. The old ones keep working until `now + grace_period_secs`, then answer
/// `expired`. Refused for a revoked key; allowed for an expired one (renew it to use the secret).
#[utoipa::path(
    post,
    path = "/v1/keys/{id}/rotate",
    tag = "keys",
    summary = "Issue a new secret; the old ones work for a grace period",
    request_body = RotateRequest,
    params(("id" = String, Path, description = "the key id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the key and its new secret, shown this once", body = KeyWithSecret),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
        (status = 409, description = "the key is revoked", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
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

#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "keys",
    summary = "Delete a key and its usage",
    params(("id" = String, Path, description = "the key id")),
    security(("admin_secret" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
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

#[derive(Serialize, ToSchema)]
struct UsageView {
    key_id: String,
    total: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    last_used_at: Option<OffsetDateTime>,
    daily: Vec<DailyCount>,
}

#[utoipa::path(
    get,
    path = "/v1/keys/{id}/usage",
    tag = "keys",
    summary = "Requests counted for a key, per UTC day",
    params(("id" = String, Path, description = "the key id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the key's usage", body = UsageView),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
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
