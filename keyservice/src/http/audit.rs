//! `GET /v1/audit`: the audit log, newest first, filtered and paged (see [`crate::audit`]). A
//! tenant admin reads its own tenant's events only; events without a tenant (failed sign-ins,
//! refusals of unknown ids) are the super-admin's.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ErrorBody};
use super::extract::Query;
use crate::audit::{self, MAX_PAGE};
use crate::keys::Tenant;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Only this tenant's events. A tenant admin reads its own tenant's only.
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    tenant: Option<String>,
    /// `admin`, a tenant admin id or a client id.
    #[param(max_length = 200)]
    actor: Option<String>,
    /// e.g. `key.revoke`.
    #[param(max_length = 64)]
    action: Option<String>,
    /// The id of the key, client, tenant admin or role acted on.
    #[param(max_length = 200)]
    target_id: Option<String>,
    /// RFC 3339; events at or after.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<OffsetDateTime>,
    /// RFC 3339; events at or before.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<OffsetDateTime>,
    /// The `next` of the previous page.
    #[param(max_length = 20)]
    after: Option<String>,
    /// 1 to 500; 100 when absent.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// One audit record. Never holds a secret.
#[derive(Debug, Serialize, ToSchema)]
struct EventView {
    /// Its place in the log; higher is newer.
    id: u64,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    /// `admin`, a tenant admin id, `anonymous` (failed sign-in) or a client id (failed token
    /// request).
    actor: String,
    /// `key.create`, `client.revoke`, `role.update`, `tenant_admin.delete`, `auth.failure`, …
    action: String,
    /// `key`, `client`, `tenant_admin`, `role` or `signing_key`.
    target_type: Option<String>,
    target_id: Option<String>,
    tenant: Option<String>,
    /// The caller's address as the service saw it.
    source: Option<String>,
    /// `success`, `denied`, `not_found`, `conflict`, `invalid` or `failure`.
    outcome: &'static str,
    /// The request's `X-Request-Id`.
    request_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct AuditPage {
    events: Vec<EventView>,
    /// The `after` of the next page; null on the last.
    next: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    summary = "Read the audit log, newest first",
    params(AuditQuery),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "a page of events", body = AuditPage),
        (status = 400, description = "malformed request: bad JSON, query or field", body = ErrorBody),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "a tenant admin named another tenant", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn list_audit(
    admin: Admin,
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let requested = query.tenant.map(Tenant::parse).transpose()?;
    let tenant = admin.actor.scope(requested)?;
    let limit = query.limit.unwrap_or(audit::DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "`limit` must be between 1 and {MAX_PAGE}"
        )));
    }
    let before = match query.after.as_deref() {
        None => None,
        Some(after) => Some(audit::parse_cursor(after).ok_or_else(|| {
            ApiError::BadRequest("`after` is not a cursor this service handed out".into())
        })?),
    };
    let filter = audit::Filter {
        tenant: tenant.map(|t| t.to_string()),
        actor: query.actor,
        action: query.action,
        target_id: query.target_id,
        since: query.since,
        until: query.until,
        before,
        limit,
    };
    let (page, more) = state.store.audit_events(&filter).await?;
    let next = audit::next_cursor(&page, more);
    Ok(axum::Json(AuditPage {
        events: page
            .into_iter()
            .map(|r| EventView {
                id: r.seq,
                at: r.event.at,
                actor: r.event.actor,
                action: r.event.action,
                target_type: r.event.target_type,
                target_id: r.event.target_id,
                tenant: r.event.tenant,
                source: r.event.source,
                outcome: r.event.outcome.as_str(),
                request_id: r.event.request_id,
            })
            .collect(),
        next,
    }))
}
