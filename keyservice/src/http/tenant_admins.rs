//! The tenant admins API under `/v1/tenant-admins`: create, list, get, revoke, renew, rotate
//! and delete, for the super-admin only (a tenant admin gets 403). A tenant admin's secret
//! (`kgta_…`) opens the admin API within its tenant and up to its own effective permissions
//! (see [`crate::access`]). Every handler takes [`Admin`] first; what follows is
//! [`credentials`], the same for every kind of credential.
//!
//! The secret is in the response to create and rotate only; it is never stored or shown again.

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
use crate::credentials::{Credential, IssuedSecret, TenantAdminId};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant_admin, list_tenant_admins))
        .routes(routes!(get_tenant_admin, delete_tenant_admin))
        .routes(routes!(revoke_tenant_admin))
        .routes(routes!(renew_tenant_admin))
        .routes(routes!(rotate_tenant_admin))
}

/// A tenant admin as the admin API shows it: everything but its secrets.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TenantAdminView {
    /// `kta_` and 16 hex characters.
    id: String,
    #[serde(flatten)]
    fields: CredentialFields,
}

/// The answer to create and rotate: the tenant admin and its new secret, shown this once.
#[derive(Serialize, ToSchema)]
pub(super) struct TenantAdminWithSecret {
    #[serde(flatten)]
    tenant_admin: TenantAdminView,
    /// `kgta_…`: the bearer token of the admin API for this tenant admin. Not shown again.
    secret: String,
}

impl Served for TenantAdminId {
    const COLLECTION: &'static str = "/v1/tenant-admins";
    type View = TenantAdminView;
    type WithSecret = TenantAdminWithSecret;

    fn view(key: &Credential<Self>, now: OffsetDateTime) -> TenantAdminView {
        TenantAdminView {
            id: key.id.to_string(),
            fields: CredentialFields::new(key, now),
        }
    }

    fn with_secret(
        key: &Credential<Self>,
        secret: &IssuedSecret,
        now: OffsetDateTime,
    ) -> TenantAdminWithSecret {
        TenantAdminWithSecret {
            tenant_admin: Self::view(key, now),
            secret: secret.expose_secret().to_owned(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct TenantAdminList {
    tenant_admins: Vec<TenantAdminView>,
}

#[utoipa::path(
    post,
    path = "/v1/tenant-admins",
    tag = "tenant-admins",
    summary = "Create a tenant admin; its secret is in this answer only",
    request_body = CreateCredentialRequest,
    security(("admin_secret" = [])),
    responses(
        (status = 201, description = "the tenant admin and its secret, shown this once", body = TenantAdminWithSecret),
        (status = 400, description = "malformed request: bad JSON, query or field, or an unknown role", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "not the super-admin", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn create_tenant_admin(
    admin: Admin,
    State(state): State<AppState>,
    Json(request): Json<CreateCredentialRequest>,
) -> Result<Response, ApiError> {
    credentials::create::<TenantAdminId>(admin, state, request).await
}

#[utoipa::path(
    get,
    path = "/v1/tenant-admins",
    tag = "tenant-admins",
    summary = "List tenant admins",
    params(ListFilter),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the tenant admins", body = TenantAdminList),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "not the super-admin", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn list_tenant_admins(
    admin: Admin,
    State(state): State<AppState>,
    Query(filter): Query<ListFilter>,
) -> Result<axum::Json<TenantAdminList>, ApiError> {
    Ok(axum::Json(TenantAdminList {
        tenant_admins: credentials::list::<TenantAdminId>(&admin, &state, filter).await?,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/tenant-admins/{id}",
    tag = "tenant-admins",
    summary = "Get a tenant admin",
    params(("id" = String, Path, description = "the tenant admin id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the tenant admin", body = TenantAdminView),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "not the super-admin", body = ErrorBody),
        (status = 404, description = "no such tenant admin", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn get_tenant_admin(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<TenantAdminId>,
) -> Result<axum::Json<TenantAdminView>, ApiError> {
    credentials::get(admin, state, id).await
}

#[utoipa::path(
    post,
    path = "/v1/tenant-admins/{id}/revoke",
    tag = "tenant-admins",
    summary = "Revoke a tenant admin (final; again is a no-op)",
    params(("id" = String, Path, description = "the tenant admin id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the revoked tenant admin", body = TenantAdminView),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "not the super-admin", body = ErrorBody),
        (status = 404, description = "no such tenant admin", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn revoke_tenant_admin(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<TenantAdminId>,
) -> Result<axum::Json<TenantAdminView>, ApiError> {
    credentials::revoke(admin, state, id).await
}

/// Sets the expiry to `now + expires_in_secs` (or the default lifetime, or never). Works on an
/// expired tenant admin; never on a revoked one.
#[utoipa::path(
    post,
    path = "/v1/tenant-admins/{id}/renew",
    tag = "tenant-admins",
    summary = "Set a new expiry",
    request_body = RenewRequest,
    params(("id" = String, Path, description = "the tenant admin id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the renewed tenant admin", body = TenantAdminView),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "not the super-admin", body = ErrorBody),
        (status = 404, description = "no such tenant admin", body = ErrorBody),
        (status = 409, description = "the tenant admin is revoked", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn renew_tenant_admin(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<TenantAdminId>,
    Json(request): Json<RenewRequest>,
) -> Result<axum::Json<TenantAdminView>, ApiError> {
    credentials::renew(admin, state, id, request).await
}

/// Issues a new secret. The old ones keep working until `now + grace_period_secs`, then answer
/// refused. Refused for a revoked tenant admin.
#[utoipa::path(
    post,
    path = "/v1/tenant-admins/{id}/rotate",
    tag = "tenant-admins",
    summary = "Issue a new secret; the old ones work for a grace period",
    request_body = RotateRequest,
    params(("id" = String, Path, description = "the tenant admin id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the tenant admin and its new secret, shown this once", body = TenantAdminWithSecret),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "not the super-admin", body = ErrorBody),
        (status = 404, description = "no such tenant admin", body = ErrorBody),
        (status = 409, description = "the tenant admin is revoked", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn rotate_tenant_admin(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<TenantAdminId>,
    Json(request): Json<RotateRequest>,
) -> Result<Response, ApiError> {
    credentials::rotate(admin, state, id, request).await
}

#[utoipa::path(
    delete,
    path = "/v1/tenant-admins/{id}",
    tag = "tenant-admins",
    summary = "Delete a tenant admin",
    params(("id" = String, Path, description = "the tenant admin id")),
    security(("admin_secret" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "not the super-admin", body = ErrorBody),
        (status = 404, description = "no such tenant admin", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn delete_tenant_admin(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<TenantAdminId>,
) -> Result<StatusCode, ApiError> {
    credentials::delete(admin, state, id).await
}
