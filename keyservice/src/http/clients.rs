//! The admin clients API under `/v1/clients`: create, list, get, revoke, rotate and delete OAuth
//! clients (client credentials). Every handler takes [`AdminAuth`] first.
//!
//! A client's secret is in the response to create and rotate only; only its SHA-256 is stored.
//! Revoking or deleting a client stops new tokens at once; tokens already issued stay valid until
//! they expire (at most the token TTL): they are self-contained JWTs.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::info;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::AdminAuth;
use super::error::{ApiError, ErrorBody};
use super::extract::{ClientIdPath, Json, Query};
use crate::clients::{Client, ClientSecret};
use crate::keys::{self, KeyStatus, Name, Tenant};
use crate::store::Change;
use crate::{entropy, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_client, list_clients))
        .routes(routes!(get_client, delete_client))
        .routes(routes!(revoke_client))
        .routes(routes!(rotate_client))
}

/// A client as the admin API shows it: everything but its secrets. The id is `client_id`, the
/// name OAuth clients are configured with.
#[derive(Debug, Serialize, ToSchema)]
struct ClientView {
    client_id: String,
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

impl ClientView {
    fn new(client: &Client, now: OffsetDateTime) -> Self {
        Self {
            client_id: client.id.to_string(),
            name: client.name.as_str().to_owned(),
            tenant: client.tenant.to_string(),
            permissions: client
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            status: client.status(now),
            created_at: client.created_at,
            expires_at: client.expires_at,
            revoked_at: client.revoked_at,
        }
    }
}

/// The answer to create and rotate: the client and its new secret, shown this once.
#[derive(Serialize, ToSchema)]
struct ClientWithSecret {
    #[serde(flatten)]
    client: ClientView,
    client_secret: String,
}

impl ClientWithSecret {
    fn new(client: &Client, secret: ClientSecret, now: OffsetDateTime) -> Self {
        Self {
            client: ClientView::new(client, now),
            client_secret: secret.expose_secret().to_owned(),
        }
    }

    /// `Cache-Control: no-store`: no proxy or client cache should keep the secret.
    fn respond(self, status: StatusCode) -> Response {
        let location = format!("/v1/clients/{}", self.client.client_id);
        let headers = [
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::LOCATION, location),
        ];
        (status, headers, axum::Json(self)).into_response()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateClientRequest {
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

/// Validated like a key: same name, tenant and permission rules, same default lifetime.
#[utoipa::path(
    post,
    path = "/v1/clients",
    tag = "clients",
    summary = "Create an OAuth client; its secret is in this answer only",
    request_body = CreateClientRequest,
    security(("admin_secret" = [])),
    responses(
        (status = 201, description = "the client and its secret, shown this once", body = ClientWithSecret),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn create_client(
    _: AdminAuth,
    State(state): State<AppState>,
    Json(request): Json<CreateClientRequest>,
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
    let secret = entropy::client_secret()?;
    let client = Client {
        id: entropy::client_id()?,
        name,
        tenant,
        permissions,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    state.store.insert_client(&client, &secret.hash()).await?;
    info!(client_id = %client.id, tenant = %client.tenant, "client created");
    Ok(ClientWithSecret::new(&client, secret, now).respond(StatusCode::CREATED))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListFilter {
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    /// Only this tenant's clients.
    tenant: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ClientList {
    clients: Vec<ClientView>,
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
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn list_clients(
    _: AdminAuth,
    State(state): State<AppState>,
    Query(filter): Query<ListFilter>,
) -> Result<axum::Json<ClientList>, ApiError> {
    let tenant = filter.tenant.map(Tenant::parse).transpose()?;
    let now = state.clock.now();
    let clients = state.store.list_clients(tenant.as_ref()).await?;
    Ok(axum::Json(ClientList {
        clients: clients.iter().map(|c| ClientView::new(c, now)).collect(),
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
        (status = 404, description = "no such client", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn get_client(
    _: AdminAuth,
    State(state): State<AppState>,
    ClientIdPath(id): ClientIdPath,
) -> Result<axum::Json<ClientView>, ApiError> {
    let client = state
        .store
        .get_client(&id)
        .await?
        .ok_or(ApiError::NotFound("client"))?;
    Ok(axum::Json(ClientView::new(&client, state.clock.now())))
}

#[utoipa::path(
    post,
    path = "/v1/clients/{id}/revoke",
    tag = "clients",
    summary = "Revoke an OAuth client (final)",
    params(("id" = String, Path, description = "the client id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the revoked client", body = ClientView),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such client", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn revoke_client(
    _: AdminAuth,
    State(state): State<AppState>,
    ClientIdPath(id): ClientIdPath,
) -> Result<axum::Json<ClientView>, ApiError> {
    let now = state.clock.now();
    let client = state
        .store
        .revoke_client(&id, now)
        .await?
        .ok_or(ApiError::NotFound("client"))?;
    info!(client_id = %id, "client revoked");
    Ok(axum::Json(ClientView::new(&client, now)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ClientRotateRequest)]
struct RotateRequest {
    /// At most one year (`keys::MAX_GRACE_PERIOD_SECS`).
    #[schema(maximum = 31_536_000)]
    grace_period_secs: u64,
}

/// Issues a new secret. The old ones keep authenticating until `now + grace_period_secs`.
/// Refused for a revoked client.
#[utoipa::path(
    post,
    path = "/v1/clients/{id}/rotate",
    tag = "clients",
    summary = "Issue a new client secret; the old one works for a grace period",
    request_body = RotateRequest,
    params(("id" = String, Path, description = "the client id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the client and its new secret, shown this once", body = ClientWithSecret),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 404, description = "no such client", body = ErrorBody),
        (status = 409, description = "the client is revoked", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn rotate_client(
    _: AdminAuth,
    State(state): State<AppState>,
    ClientIdPath(id): ClientIdPath,
    Json(request): Json<RotateRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let retires_at = keys::grace_end(now, request.grace_period_secs)?;
    let secret = entropy::client_secret()?;
    let change = state
        .store
        .rotate_client_secret(&id, &secret.hash(), now, retires_at)
        .await?;
    let client = match change {
        Change::Done(client) => client,
        Change::NotFound => return Err(ApiError::NotFound("client")),
        Change::Revoked(_) => return Err(ApiError::Revoked("client")),
    };
    info!(client_id = %id, grace_period_secs = request.grace_period_secs, "client secret rotated");
    Ok(ClientWithSecret::new(&client, secret, now).respond(StatusCode::OK))
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
        (status = 404, description = "no such client", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn delete_client(
    _: AdminAuth,
    State(state): State<AppState>,
    ClientIdPath(id): ClientIdPath,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete_client(&id).await? {
        return Err(ApiError::NotFound("client"));
    }
    info!(client_id = %id, "client deleted");
    Ok(StatusCode::NO_CONTENT)
}
