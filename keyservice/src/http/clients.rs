//! The OAuth clients API under `/v1/clients`: create, list, get, revoke, renew, rotate and
//! delete, for the super-admin and for tenant admins within their tenant. Every handler takes
//! [`Admin`] first, so a request without a valid secret is turned away before its body is read;
//! what follows is [`credentials`], the same for every kind of credential.
//!
//! A client's secret is in the response to create and rotate only; it is never stored or shown
//! again. A client's effective permissions are the most an access token it asks for can carry.

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
use crate::clients::ClientId;
use crate::credentials::{Credential, IssuedSecret};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_client, list_clients))
        .routes(routes!(get_client, delete_client))
        .routes(routes!(revoke_client))
        .routes(routes!(renew_client))
        .routes(routes!(rotate_client))
}

/// A client as the admin API shows it: everything but its secrets. The id is `client_id`, the
/// name OAuth clients are configured with.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ClientView {
    /// `kgc_` and 16 hex characters.
    client_id: String,
    #[serde(flatten)]
    fields: CredentialFields,
}

/// The answer to create and rotate: the client and its new secret, shown this once.
#[derive(Serialize, ToSchema)]
pub(super) struct ClientWithSecret {
    #[serde(flatten)]
    client: ClientView,
    /// `kgcs_…`: what the client authenticates with at the token endpoint. Not shown again.
    client_secret: String,
}

impl Served for ClientId {
    const COLLECTION: &'static str = "/v1/clients";
    type View = ClientView;
    type WithSecret = ClientWithSecret;

    fn view(key: &Credential<Self>, now: OffsetDateTime) -> ClientView {
        ClientView {
            client_id: key.id.to_string(),
            fields: CredentialFields::new(key, now),
        }
    }

    fn with_secret(
        key: &Credential<Self>,
        secret: &IssuedSecret,
        now: OffsetDateTime,
    ) -> ClientWithSecret {
        ClientWithSecret {
            client: Self::view(key, now),
            client_secret: secret.expose_secret().to_owned(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct ClientList {
    clients: Vec<ClientView>,
}

#[utoipa::path(
    post,
    path = "/v1/clients",
    tag = "clients",
    summary = "Create an OAuth client; its secret is in this answer only",
    request_body = CreateCredentialRequest,
    security(("admin_secret" = [])),
    responses(
        (status = 201, description = "the client and its secret, shown this once", body = ClientWithSecret),
        (status = 400, description = "malformed request: bad JSON, query or field, or an unknown role", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "another tenant, or permissions above the tenant admin's own", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn create_client(
    admin: Admin,
    State(state): State<AppState>,
    Json(request): Json<CreateCredentialRequest>,
) -> Result<Response, ApiError> {
    credentials::create::<ClientId>(admin, state, request).await
}

#[utoipa::path(
    get,
    path = "/v1/clients",
    tag = "clients",
    summary = "List OAuth clients",
    params(ListFilter),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the clients", body = ClientList),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "a tenant admin named another tenant", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn list_clients(
    admin: Admin,
    State(state): State<AppState>,
    Query(filter): Query<ListFilter>,
) -> Result<axum::Json<ClientList>, ApiError> {
    Ok(axum::Json(ClientList {
        clients: credentials::list::<ClientId>(&admin, &state, filter).await?,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/clients/{id}",
    tag = "clients",
    summary = "Get an OAuth client",
    params(("id" = String, Path, description = "the client id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the client", body = ClientView),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such client (or another tenant's)", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn get_client(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<ClientId>,
) -> Result<axum::Json<ClientView>, ApiError> {
    credentials::get(admin, state, id).await
}

#[utoipa::path(
    post,
    path = "/v1/clients/{id}/revoke",
    tag = "clients",
    summary = "Revoke an OAuth client (final; again is a no-op)",
    params(("id" = String, Path, description = "the client id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the revoked client", body = ClientView),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such client (or another tenant's)", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn revoke_client(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<ClientId>,
) -> Result<axum::Json<ClientView>, ApiError> {
    credentials::revoke(admin, state, id).await
}

/// Sets the expiry to `now + expires_in_secs` (or the default lifetime, or never). Works on an
/// expired client; never on a revoked one.
#[utoipa::path(
    post,
    path = "/v1/clients/{id}/renew",
    tag = "clients",
    summary = "Set a new expiry",
    request_body = RenewRequest,
    params(("id" = String, Path, description = "the client id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the renewed client", body = ClientView),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "the client holds permissions above the tenant admin's own", body = ErrorBody),
        (status = 404, description = "no such client (or another tenant's)", body = ErrorBody),
        (status = 409, description = "the client is revoked", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn renew_client(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<ClientId>,
    Json(request): Json<RenewRequest>,
) -> Result<axum::Json<ClientView>, ApiError> {
    credentials::renew(admin, state, id, request).await
}

/// Issues a new secret. The old ones keep working until `now + grace_period_secs`, then answer
/// `invalid_client`. Refused for a revoked client; allowed for an expired one.
#[utoipa::path(
    post,
    path = "/v1/clients/{id}/rotate",
    tag = "clients",
    summary = "Issue a new secret; the old ones work for a grace period",
    request_body = RotateRequest,
    params(("id" = String, Path, description = "the client id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the client and its new secret, shown this once", body = ClientWithSecret),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "the client holds permissions above the tenant admin's own", body = ErrorBody),
        (status = 404, description = "no such client (or another tenant's)", body = ErrorBody),
        (status = 409, description = "the client is revoked", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn rotate_client(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<ClientId>,
    Json(request): Json<RotateRequest>,
) -> Result<Response, ApiError> {
    credentials::rotate(admin, state, id, request).await
}

#[utoipa::path(
    delete,
    path = "/v1/clients/{id}",
    tag = "clients",
    summary = "Delete an OAuth client",
    params(("id" = String, Path, description = "the client id")),
    security(("admin_secret" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such client (or another tenant's)", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn delete_client(
    admin: Admin,
    State(state): State<AppState>,
    IdPath(id): IdPath<ClientId>,
) -> Result<StatusCode, ApiError> {
    credentials::delete(admin, state, id).await
}
