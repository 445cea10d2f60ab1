//! The admin keys API under `/v1/keys`: create, list, get, revoke, renew, rotate, delete and
//! usage, for the super-admin and for tenant admins within their tenant. Every handler takes
//! [`Admin`] first, so a request without a valid secret is turned away before its body is read;
//! what follows is [`credentials`], the same for every kind of credential.
//!
//! A key's secret is in the response to create and rotate only; it is never stored or shown
//! again.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::credentials::{
    self, CreateCredentialRequest, CredentialFields, ListFilter, RenewRequest, RotateRequest,
    Served,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{IdPath, Json, Query};
use crate::credentials::{Credential, IssuedSecret};
use crate::keys::{DailyCount, KeyId};
use crate::AppState;

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
pub(super) struct KeyView {
    /// `key_` and 16 hex characters.
    id: String,
    #[serde(flatten)]
    fields: CredentialFields,
}

/// The answer to create and rotate: the key and its new secret, shown this once.
#[derive(Serialize, ToSchema)]
pub(super) struct KeyWithSecret {
    #[serde(flatten)]
    key: KeyView,
    /// `kg_…`: what callers send. Not shown again.
    secret: String,
}

impl Served for KeyId {
    const COLLECTION: &'static str = "/v1/keys";
    type View = KeyView;
    type WithSecret = KeyWithSecret;

    fn view(key: &Credential<Self>, now: OffsetDateTime) -> KeyView {
        KeyView {
            id: key.id.to_string(),
            fields: CredentialFields::new(key, now),
        }
    }

    fn with_secret(
        key: &Credential<Self>,
        secret: &IssuedSecret,
        now: OffsetDateTime,
    ) -> KeyWithSecret {
        KeyWithSecret {
            key: Self::view(key, now),
            secret: secret.expose_secret().to_owned(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct KeyList {
    keys: Vec<KeyView>,
}

#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    summary = "Create a key; its secret is in this answer only",
    request_body = CreateCredentialRequest,
    security(("admin_secret" = [])),
    responses(
        (status = 201, description = "the key and its secret, shown this once", body = KeyWithSecret),
        (status = 400, description = "malformed request: bad JSON, query or field, or an unknown role", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "another tenant, or permissions above the tenant admin's own", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn create_key(
    admin: Admin,
    State(state): State<AppState>,
    Json(request): Json<CreateCredentialRequest>,
) -> Result<Response, ApiError> {
    credentials::create::<KeyId>(admin, state, request).await
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
        (status = 403, description = "a tenant admin named another tenant", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn list_keys(
    admin: Admin,
    State(state): State<AppState>,
    Query(filter): Query<ListFilter>,
) -> Result<axum::Json<KeyList>, ApiError> {
    Ok(axum::Json(KeyList {
        keys: credentials::list::<KeyId>(&admin, &state, filter).await?,
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
        (status = 404, description = "no such key (or another tenant's)", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn get_key(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<KeyId>,
) -> Result<axum::Json<KeyView>, ApiError> {
    credentials::get(admin, state, id).await
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
        (status = 404, description = "no such key (or another tenant's)", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn revoke_key(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<KeyId>,
) -> Result<axum::Json<KeyView>, ApiError> {
    credentials::revoke(admin, state, id).await
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
        (status = 403, description = "the key holds permissions above the tenant admin's own", body = ErrorBody),
        (status = 404, description = "no such key (or another tenant's)", body = ErrorBody),
        (status = 409, description = "the key is revoked", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn renew_key(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<KeyId>,
    Json(request): Json<RenewRequest>,
) -> Result<axum::Json<KeyView>, ApiError> {
    credentials::renew(admin, state, id, request).await
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
        (status = 403, description = "the key holds permissions above the tenant admin's own", body = ErrorBody),
        (status = 404, description = "no such key (or another tenant's)", body = ErrorBody),
        (status = 409, description = "the key is revoked", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn rotate_key(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<KeyId>,
    Json(request): Json<RotateRequest>,
) -> Result<Response, ApiError> {
    credentials::rotate(admin, state, id, request).await
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
        (status = 404, description = "no such key (or another tenant's)", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn delete_key(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<KeyId>,
) -> Result<StatusCode, ApiError> {
    credentials::delete(admin, state, id).await
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
        (status = 404, description = "no such key (or another tenant's)", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn key_usage(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<KeyId>,
) -> Result<axum::Json<UsageView>, ApiError> {
    credentials::visible(&admin, &state, &id).await?;
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
