//! The roles API under `/v1/roles`: create, list, get, update and delete, for the super-admin
//! and for tenant admins within their tenant and their own permissions (see
//! [`crate::access`]). Editing a role changes what its holders may do at once: lookups read roles
//! with the key, and every secret of every key holding the role goes to the change log, so the
//! filters drop their cached answers. A role that someone holds cannot be deleted (409, with the
//! holders).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::credentials::{audited, names, ListFilter};
use super::error::{ApiError, ErrorBody, RoleInUseBody};
use super::extract::{Json, Query, RoleIdPath};
use crate::audit::{self, Action, Outcome};
use crate::keys::{self, Tenant, ValidationError};
use crate::roles::{Description, Role, RoleId, RoleName};
use crate::store::{RoleDelete, RoleInsert};
use crate::{entropy, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_role, list_roles))
        .routes(routes!(get_role, update_role, delete_role))
}

/// A role.
#[derive(Debug, Serialize, ToSchema)]
struct RoleView {
    /// `rol_` and 16 hex characters.
    id: String,
    tenant: String,
    /// Unique within the tenant; what keys and clients name in their `roles`.
    name: String,
    description: String,
    permissions: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

impl From<&Role> for RoleView {
    fn from(role: &Role) -> Self {
        Self {
            id: role.id.to_string(),
            tenant: role.tenant.to_string(),
            name: role.name.to_string(),
            description: role.description.as_str().to_owned(),
            permissions: names(&role.permissions),
            created_at: role.created_at,
            updated_at: role.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct RoleList {
    roles: Vec<RoleView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRoleRequest {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._:-]+$",
        example = "acme"
    )]
    tenant: String,
    /// 1 to 64 characters from `A-Z a-z 0-9 : . _ -`, unique in the tenant.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9:._-]+$",
        example = "orders-reader"
    )]
    name: String,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    description: String,
    /// At most 100.
    #[schema(value_type = Vec<keygate_core::permission::Permission>, max_items = 100)]
    permissions: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRoleRequest {
    /// At most 500 characters.
    #[schema(max_length = 500)]
    description: String,
    /// The role's whole new set; at most 100.
    #[schema(value_type = Vec<keygate_core::permission::Permission>, max_items = 100)]
    permissions: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/roles",
    tag = "roles",
    summary = "Create a role",
    request_body = CreateRoleRequest,
    security(("admin_secret" = [])),
    responses(
        (status = 201, description = "the role", body = RoleView),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "another tenant, or permissions above the tenant admin's own", body = ErrorBody),
        (status = 409, description = "the tenant has a role of that name", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn create_role(
    admin: Admin,
    State(state): State<AppState>,
    Json(request): Json<CreateRoleRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let mut event = audit::Event::new(&admin.context, now, Action::RoleCreate, Outcome::Success);
    if let Ok(tenant) = Tenant::parse(request.tenant.clone()) {
        event = event.tenant(tenant);
    }
    let result = async {
        let tenant = Tenant::parse(request.tenant)?;
        admin.actor.acts_in(&tenant)?;
        let name = RoleName::parse(request.name).map_err(ValidationError::from)?;
        let description =
            Description::parse(request.description).map_err(ValidationError::from)?;
        let permissions = keys::parse_permissions(request.permissions)?;
        admin.actor.may_grant(&permissions)?;
        let role = Role {
            id: entropy::role_id()?,
            tenant,
            name,
            description,
            permissions,
            created_at: now,
            updated_at: now,
        };
        let done = event.clone().target("role", &role.id);
        match state.store.insert_role(&role, &done).await? {
            RoleInsert::Done => {}
            RoleInsert::NameTaken => return Err(ApiError::NameTaken("role")),
        }
        tracing::info!(role_id = %role.id, tenant = %role.tenant, actor = admin.actor.id(), "role created");
        let location = format!("/v1/roles/{}", role.id);
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            axum::Json(RoleView::from(&role)),
        )
            .into_response())
    }
    .await;
    audited(&state, &event, result).await
}

#[utoipa::path(
    get,
    path = "/v1/roles",
    tag = "roles",
    summary = "List roles",
    params(ListFilter),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the roles, by tenant and name", body = RoleList),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "a tenant admin named another tenant", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn list_roles(
    admin: Admin,
    State(state): State<AppState>,
    Query(filter): Query<ListFilter>,
) -> Result<axum::Json<RoleList>, ApiError> {
    let requested = filter.tenant.map(Tenant::parse).transpose()?;
    let tenant = admin.actor.scope(requested)?;
    let roles = state.store.list_roles(tenant.as_ref()).await?;
    Ok(axum::Json(RoleList {
        roles: roles.iter().map(RoleView::from).collect(),
    }))
}

/// The role `id` if the caller may see it; 404 as for one that does not exist otherwise.
async fn visible(admin: &Admin, state: &AppState, id: &RoleId) -> Result<Role, ApiError> {
    state
        .store
        .get_role(id)
        .await?
        .filter(|r| admin.actor.sees(&r.tenant))
        .ok_or(ApiError::NotFound("role"))
}

#[utoipa::path(
    get,
    path = "/v1/roles/{id}",
    tag = "roles",
    summary = "Get a role",
    params(("id" = String, Path, description = "the role id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the role", body = RoleView),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such role (or another tenant's)", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn get_role(
    admin: Admin,
    State(state): State<AppState>,
    RoleIdPath(id): RoleIdPath,
) -> Result<axum::Json<RoleView>, ApiError> {
    Ok(axum::Json(RoleView::from(
        &visible(&admin, &state, &id).await?,
    )))
}

/// Replaces the description and the permissions. Every holder's lookups answer with the new
/// set at once; filters that cached an answer drop it when the change feed reaches them.
#[utoipa::path(
    put,
    path = "/v1/roles/{id}",
    tag = "roles",
    summary = "Change a role's description and permissions",
    request_body = UpdateRoleRequest,
    params(("id" = String, Path, description = "the role id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the role as it is now", body = RoleView),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "permissions above the tenant admin's own", body = ErrorBody),
        (status = 404, description = "no such role (or another tenant's)", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn update_role(
    admin: Admin,
    State(state): State<AppState>,
    RoleIdPath(id): RoleIdPath,
    Json(request): Json<UpdateRoleRequest>,
) -> Result<axum::Json<RoleView>, ApiError> {
    let now = state.clock.now();
    let mut event = audit::Event::new(&admin.context, now, Action::RoleUpdate, Outcome::Success)
        .target("role", &id);
    let result = async {
        let role = visible(&admin, &state, &id).await?;
        event.tenant = Some(role.tenant.to_string());
        let description = Description::parse(request.description).map_err(ValidationError::from)?;
        let permissions = keys::parse_permissions(request.permissions)?;
        admin.actor.may_grant(&permissions)?;
        let updated = state
            .store
            .update_role(&id, &description, &permissions, now, &event)
            .await?
            .ok_or(ApiError::NotFound("role"))?;
        tracing::info!(role_id = %id, actor = admin.actor.id(), "role updated");
        Ok(axum::Json(RoleView::from(&updated)))
    }
    .await;
    audited(&state, &event, result).await
}

#[utoipa::path(
    delete,
    path = "/v1/roles/{id}",
    tag = "roles",
    summary = "Delete a role no one holds",
    params(("id" = String, Path, description = "the role id")),
    security(("admin_secret" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such role (or another tenant's)", body = ErrorBody),
        (status = 409, description = "credentials hold the role; they are listed", body = RoleInUseBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn delete_role(
    admin: Admin,
    State(state): State<AppState>,
    RoleIdPath(id): RoleIdPath,
) -> Result<StatusCode, ApiError> {
    let now = state.clock.now();
    let mut event = audit::Event::new(&admin.context, now, Action::RoleDelete, Outcome::Success)
        .target("role", &id);
    let result = async {
        let role = visible(&admin, &state, &id).await?;
        event.tenant = Some(role.tenant.to_string());
        match state.store.delete_role(&id, &event).await? {
            RoleDelete::Deleted => {
                tracing::info!(role_id = %id, actor = admin.actor.id(), "role deleted");
                Ok(StatusCode::NO_CONTENT)
            }
            RoleDelete::NotFound => Err(ApiError::NotFound("role")),
            RoleDelete::InUse(holders) => Err(ApiError::RoleInUse(holders)),
        }
    }
    .await;
    audited(&state, &event, result).await
}
