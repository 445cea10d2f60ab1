//! What the admin API does with a credential, for every kind alike: create, list, get, revoke,
//! renew, rotate, delete. [`admin`](super::admin) (keys), [`clients`](super::clients) and
//! [`tenant_admins`](super::tenant_admins) each declare their routes and documentation and call
//! these, so the three kinds follow one set of rules, the console's and the CLI's included:
//!
//! - the caller ([`Admin`]) is the super-admin or a tenant admin, and [`crate::access`] decides
//!   what it may see and grant;
//! - a change is recorded in the audit log in the same transaction as the change; a refusal
//!   (400, 403, 404, 409) on its own ([`audited`]);
//! - a secret is in the answer to create and rotate only, with `Cache-Control: no-store`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::auth::Admin;
use super::error::{ApiError, ErrorChain};
use crate::audit::{self, Action, Outcome};
use crate::credentials::{self, Credential, CredentialId, HeldRole, IssuedSecret, Kind};
use crate::keys::{self, KeyStatus, Name, Permission, Tenant, ValidationError};
use crate::roles::{self, Role};
use crate::store::Change;
use crate::{entropy, AppState};

/// A kind of credential as the admin API serves it.
pub(super) trait Served: CredentialId {
    /// The collection's path, `/v1/keys`.
    const COLLECTION: &'static str;
    /// How a record is shown.
    type View: Serialize;
    /// How a record is shown with its new secret (create, rotate).
    type WithSecret: Serialize;

    fn view(credential: &Credential<Self>, now: OffsetDateTime) -> Self::View;
    fn with_secret(
        credential: &Credential<Self>,
        secret: &IssuedSecret,
        now: OffsetDateTime,
    ) -> Self::WithSecret;
}

/// The fields every kind shows, after its id.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CredentialFields {
    name: String,
    tenant: String,
    /// Granted directly.
    permissions: Vec<String>,
    /// Names of the roles held, of the same tenant.
    roles: Vec<String>,
    /// `permissions` and every role's, without repeats: what the credential may do.
    effective_permissions: Vec<String>,
    status: KeyStatus,
    /// The visible start of the current secret, e.g. `kg_3f9a…`, to tell secrets apart; null for
    /// credentials created before it was kept.
    prefix: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
    /// The last request the filter reported (API keys; null for the other kinds).
    #[serde(with = "time::serde::rfc3339::option")]
    last_used_at: Option<OffsetDateTime>,
}

impl CredentialFields {
    pub(super) fn new<I>(c: &Credential<I>, now: OffsetDateTime) -> Self {
        Self {
            name: c.name.as_str().to_owned(),
            tenant: c.tenant.to_string(),
            permissions: names(&c.permissions),
            roles: c.roles.iter().map(|r| r.name.to_string()).collect(),
            effective_permissions: names(&c.effective_permissions()),
            status: c.status(now),
            prefix: c.secret_hint.clone(),
            created_at: c.created_at,
            expires_at: c.expires_at,
            revoked_at: c.revoked_at,
            last_used_at: c.last_used_at,
        }
    }
}

pub(super) fn names(permissions: &[Permission]) -> Vec<String> {
    permissions.iter().map(|p| p.as_str().to_owned()).collect()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateCredentialRequest {
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
    /// Granted directly; at most 100. None (absent or empty): the credential holds what its
    /// roles grant, or passes only routes that require no permission.
    #[serde(default)]
    #[schema(value_type = Vec<keygate_core::permission::Permission>, max_items = 100)]
    permissions: Vec<String>,
    /// Names of roles of the same tenant; at most 20.
    #[serde(default)]
    #[schema(max_items = 20)]
    roles: Vec<String>,
    /// Lifetime from now, 1 s to 10 years (`keys::MAX_KEY_LIFETIME_SECS`); the default lifetime
    /// when absent. Not with `never_expires: true`.
    #[schema(minimum = 1, maximum = 315_360_000)]
    expires_in_secs: Option<u64>,
    never_expires: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListFilter {
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    /// Only this tenant's records. A tenant admin sees its own tenant's only.
    pub(super) tenant: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RenewRequest {
    /// Lifetime from now, 1 s to 10 years; the default lifetime when absent. Not with
    /// `never_expires: true`.
    #[schema(minimum = 1, maximum = 315_360_000)]
    expires_in_secs: Option<u64>,
    never_expires: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateRequest {
    /// At most one year (`keys::MAX_GRACE_PERIOD_SECS`).
    #[schema(maximum = 31_536_000)]
    grace_period_secs: u64,
}

/// `Cache-Control: no-store` (no cache should keep the secret) and `Location`.
fn with_secret_response<I: Served>(
    status: StatusCode,
    credential: &Credential<I>,
    secret: &IssuedSecret,
    now: OffsetDateTime,
) -> Response {
    let location = format!("{}/{}", I::COLLECTION, credential.id);
    let headers = [
        (header::CACHE_CONTROL, "no-store".to_owned()),
        (header::LOCATION, location),
    ];
    (
        status,
        headers,
        axum::Json(I::with_secret(credential, secret, now)),
    )
        .into_response()
}

/// Records `event` with the outcome `result`'s refusal stands for; a success was recorded by
/// the store with the change, and a 5xx (the database failing) is not recorded.
pub(super) async fn audited<T>(
    state: &AppState,
    event: &audit::Event,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Err(e) = &result {
        let outcome = match e {
            ApiError::BadRequest(_) => Some(Outcome::Invalid),
            ApiError::Forbidden(_) => Some(Outcome::Denied),
            ApiError::NotFound(_) => Some(Outcome::NotFound),
            ApiError::Revoked(_) | ApiError::NameTaken(_) | ApiError::RoleInUse(_) => {
                Some(Outcome::Conflict)
            }
            _ => None,
        };
        if let Some(outcome) = outcome {
            let refused = event.clone().ended(outcome);
            if let Err(e) = state.store.record_audit(&refused).await {
                tracing::error!(error = %ErrorChain(&e), "cannot record a refused admin call");
            }
        }
    }
    result
}

/// Only the super-admin manages tenant admins.
fn may_manage<I: CredentialId>(admin: &Admin) -> Result<(), ApiError> {
    if I::KIND == Kind::TenantAdmin {
        admin.actor.is_super_admin()?;
    }
    Ok(())
}

/// The roles named in a request, which must all exist in `tenant`, and whether `admin` may grant
/// the permissions and roles together.
pub(super) async fn resolve_grant(
    admin: &Admin,
    state: &AppState,
    tenant: &Tenant,
    permissions: Vec<String>,
    roles: Vec<String>,
) -> Result<(Vec<Permission>, Vec<Role>), ApiError> {
    let permissions = keys::parse_permissions(permissions)?;
    let names = roles::parse_role_names(roles).map_err(ValidationError::from)?;
    let found = state.store.roles_named(tenant, &names).await?;
    if let Some(missing) = names.iter().find(|n| !found.iter().any(|r| &&r.name == n)) {
        return Err(ApiError::BadRequest(format!(
            "tenant `{tenant}` has no role `{missing}`"
        )));
    }
    let effective =
        credentials::effective(&permissions, found.iter().map(|r| r.permissions.as_slice()));
    admin.actor.may_grant(&effective)?;
    Ok((permissions, found))
}

pub(super) async fn create<I: Served>(
    admin: Admin,
    state: AppState,
    request: CreateCredentialRequest,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let mut event = audit::Event::new(
        &admin.context,
        now,
        Action::Create(I::KIND),
        Outcome::Success,
    );
    if let Ok(tenant) = Tenant::parse(request.tenant.clone()) {
        event = event.tenant(tenant);
    }
    let result = create_checked::<I>(&admin, &state, request, now, &event).await;
    audited(&state, &event, result).await
}

async fn create_checked<I: Served>(
    admin: &Admin,
    state: &AppState,
    request: CreateCredentialRequest,
    now: OffsetDateTime,
    event: &audit::Event,
) -> Result<Response, ApiError> {
    may_manage::<I>(admin)?;
    let name = Name::parse(request.name)?;
    let tenant = Tenant::parse(request.tenant)?;
    admin.actor.acts_in(&tenant)?;
    let expires_at = keys::expiry(
        now,
        request.expires_in_secs,
        request.never_expires.unwrap_or(false),
        state.default_key_lifetime,
    )?;
    let (permissions, roles) =
        resolve_grant(admin, state, &tenant, request.permissions, request.roles).await?;
    let secret = entropy::secret(I::KIND)?;
    let credential: Credential<I> = Credential {
        id: entropy::credential_id()?,
        name,
        tenant,
        permissions,
        roles: roles
            .iter()
            .map(|r| HeldRole {
                name: r.name.clone(),
                permissions: r.permissions.clone(),
            })
            .collect(),
        secret_hint: Some(secret.hint(I::KIND)),
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    let role_ids: Vec<_> = roles.into_iter().map(|r| r.id).collect();
    let done = event.clone().target(I::KIND.as_str(), &credential.id);
    state
        .store
        .insert(&credential, &role_ids, &secret.hash(), &done)
        .await?;
    tracing::info!(
        kind = I::KIND.as_str(),
        id = %credential.id,
        tenant = %credential.tenant,
        actor = admin.actor.id(),
        "credential created"
    );
    Ok(with_secret_response(
        StatusCode::CREATED,
        &credential,
        &secret,
        now,
    ))
}

pub(super) async fn list<I: Served>(
    admin: &Admin,
    state: &AppState,
    filter: ListFilter,
) -> Result<Vec<I::View>, ApiError> {
    may_manage::<I>(admin)?;
    let requested = filter.tenant.map(Tenant::parse).transpose()?;
    let tenant = admin.actor.scope(requested)?;
    let now = state.clock.now();
    let found = state.store.list::<I>(tenant.as_ref()).await?;
    Ok(found.iter().map(|c| I::view(c, now)).collect())
}

/// The credential `id` if the caller may see it; 404 as for one that does not exist otherwise.
pub(super) async fn visible<I: Served>(
    admin: &Admin,
    state: &AppState,
    id: &I,
) -> Result<Credential<I>, ApiError> {
    may_manage::<I>(admin)?;
    state
        .store
        .get(id)
        .await?
        .filter(|c| admin.actor.sees(&c.tenant))
        .ok_or(ApiError::NotFound(I::KIND.noun()))
}

pub(super) async fn get<I: Served>(
    admin: Admin,
    state: AppState,
    id: I,
) -> Result<axum::Json<I::View>, ApiError> {
    let found = visible(&admin, &state, &id).await?;
    Ok(axum::Json(I::view(&found, state.clock.now())))
}

/// The audit event of a change to credential `id`, before its tenant is known.
fn change_event<I: CredentialId>(
    admin: &Admin,
    now: OffsetDateTime,
    action: Action,
    id: &I,
) -> audit::Event {
    audit::Event::new(&admin.context, now, action, Outcome::Success).target(I::KIND.as_str(), id)
}

pub(super) async fn revoke<I: Served>(
    admin: Admin,
    state: AppState,
    id: I,
) -> Result<axum::Json<I::View>, ApiError> {
    let now = state.clock.now();
    let mut event = change_event(&admin, now, Action::Revoke(I::KIND), &id);
    let result = async {
        let target = visible(&admin, &state, &id).await?;
        event.tenant = Some(target.tenant.to_string());
        let revoked = state
            .store
            .revoke(&id, now, &event)
            .await?
            .ok_or(ApiError::NotFound(I::KIND.noun()))?;
        tracing::info!(kind = I::KIND.as_str(), %id, actor = admin.actor.id(), "credential revoked");
        Ok(axum::Json(I::view(&revoked, now)))
    }
    .await;
    audited(&state, &event, result).await
}

pub(super) async fn renew<I: Served>(
    admin: Admin,
    state: AppState,
    id: I,
    request: RenewRequest,
) -> Result<axum::Json<I::View>, ApiError> {
    let now = state.clock.now();
    let mut event = change_event(&admin, now, Action::Renew(I::KIND), &id);
    let result = async {
        let target = visible(&admin, &state, &id).await?;
        event.tenant = Some(target.tenant.to_string());
        // Extending a credential's life hands out its power again.
        admin.actor.may_grant(&target.effective_permissions())?;
        let expires_at = keys::expiry(
            now,
            request.expires_in_secs,
            request.never_expires.unwrap_or(false),
            state.default_key_lifetime,
        )?;
        let renewed = applied::<I>(state.store.renew(&id, expires_at, now, &event).await?)?;
        tracing::info!(kind = I::KIND.as_str(), %id, actor = admin.actor.id(), "credential renewed");
        Ok(axum::Json(I::view(&renewed, now)))
    }
    .await;
    audited(&state, &event, result).await
}

pub(super) async fn rotate<I: Served>(
    admin: Admin,
    state: AppState,
    id: I,
    request: RotateRequest,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let mut event = change_event(&admin, now, Action::Rotate(I::KIND), &id);
    let result = async {
        let target = visible(&admin, &state, &id).await?;
        event.tenant = Some(target.tenant.to_string());
        // A new secret is the credential's whole power in the caller's hands.
        admin.actor.may_grant(&target.effective_permissions())?;
        let retires_at = keys::grace_end(now, request.grace_period_secs)?;
        let secret = entropy::secret(I::KIND)?;
        let rotated = applied::<I>(
            state
                .store
                .rotate(
                    &id,
                    &secret.hash(),
                    &secret.hint(I::KIND),
                    now,
                    retires_at,
                    &event,
                )
                .await?,
        )?;
        tracing::info!(
            kind = I::KIND.as_str(),
            %id,
            actor = admin.actor.id(),
            grace_period_secs = request.grace_period_secs,
            "credential secret rotated"
        );
        Ok(with_secret_response(StatusCode::OK, &rotated, &secret, now))
    }
    .await;
    audited(&state, &event, result).await
}

pub(super) async fn delete<I: Served>(
    admin: Admin,
    state: AppState,
    id: I,
) -> Result<StatusCode, ApiError> {
    let now = state.clock.now();
    let mut event = change_event(&admin, now, Action::Delete(I::KIND), &id);
    let result = async {
        let target = visible(&admin, &state, &id).await?;
        event.tenant = Some(target.tenant.to_string());
        if !state.store.delete(&id, now, &event).await? {
            return Err(ApiError::NotFound(I::KIND.noun()));
        }
        tracing::info!(kind = I::KIND.as_str(), %id, actor = admin.actor.id(), "credential deleted");
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    audited(&state, &event, result).await
}

fn applied<I: CredentialId>(change: Change<Credential<I>>) -> Result<Credential<I>, ApiError> {
    match change {
        Change::Done(c) => Ok(c),
        Change::NotFound => Err(ApiError::NotFound(I::KIND.noun())),
        Change::Revoked(_) => Err(ApiError::Revoked(I::KIND.noun())),
    }
}
