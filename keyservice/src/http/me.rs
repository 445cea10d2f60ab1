//! `GET /v1/me`: who the presented admin secret belongs to and what it may grant. The console and
//! the CLI check a secret with it at sign-in (401: wrong secret) and offer only what the answer
//! allows; the API enforces the same rules either way.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::credentials::names;
use super::error::{ApiError, ErrorBody};
use crate::access::Actor;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ActorKind {
    SuperAdmin,
    TenantAdmin,
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
struct Me {
    kind: ActorKind,
    /// The tenant admin's id; null for the super-admin.
    id: Option<String>,
    name: Option<String>,
    /// The one tenant a tenant admin acts in; null for the super-admin (every tenant).
    tenant: Option<String>,
    /// Roles a tenant admin holds.
    roles: Vec<String>,
    /// What it may grant: a tenant admin's effective permissions; null for the super-admin
    /// (anything).
    permissions: Option<Vec<String>>,
}

#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "admin",
    summary = "Who this admin secret belongs to, and what it may grant",
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the caller", body = Me),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn me(admin: Admin) -> Result<axum::Json<Me>, ApiError> {
    Ok(axum::Json(match &admin.actor {
        Actor::SuperAdmin => Me {
            kind: ActorKind::SuperAdmin,
            id: None,
            name: None,
            tenant: None,
            roles: Vec::new(),
            permissions: None,
        },
        Actor::TenantAdmin(ta) => Me {
            kind: ActorKind::TenantAdmin,
            id: Some(ta.id.to_string()),
            name: Some(ta.name.as_str().to_owned()),
            tenant: Some(ta.tenant.to_string()),
            roles: ta.roles.iter().map(|r| r.name.to_string()).collect(),
            permissions: Some(names(&ta.effective_permissions())),
        },
    }))
}
