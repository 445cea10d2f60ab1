//! The admin signing-keys API: `GET /v1/signing-keys` lists the access-token signing keys (public
//! facts only) and `POST /v1/signing-keys/rotate` forces a rotation now. Both take [`Admin`] and are the super-admin's alone.
//!
//! A forced rotation is for a suspected key compromise or an urgent algorithm change, so unlike a
//! scheduled one it is not pre-published: the new key signs at once. The old keys stay in the
//! JWKS until every token they signed has expired, and pending keys are deleted. Verifiers that
//! cached the JWKS see an unknown `kid` and must refetch it (keygate's filter does).

use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;
use tracing::info;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::credentials::audited;
use super::error::{ApiError, ErrorBody};
use crate::audit::{self, Action, Outcome};
use crate::rotation::KeySchedule;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_signing_keys))
        .routes(routes!(rotate_signing_keys))
}

/// Where a key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum SigningKeyStatus {
    /// Published, not signing yet.
    Pending,
    /// The key that signs now.
    Active,
    /// Signs no more; published until its tokens have expired.
    Retiring,
    /// Out of the JWKS; deleted at the next rotation check.
    Retired,
}

#[derive(Debug, Serialize, ToSchema)]
struct SigningKeyView {
    kid: String,
    alg: &'static str,
    status: SigningKeyStatus,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    activates_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    retires_at: Option<OffsetDateTime>,
}

impl SigningKeyView {
    fn new(key: &KeySchedule, signer: Option<&str>, now: OffsetDateTime) -> Self {
        let status = if !key.is_published(now) {
            SigningKeyStatus::Retired
        } else if signer == Some(key.kid.as_str()) {
            SigningKeyStatus::Active
        } else if key.retires_at.is_none() && key.activates_at > now {
            SigningKeyStatus::Pending
        } else {
            SigningKeyStatus::Retiring
        };
        Self {
            kid: key.kid.clone(),
            alg: key.alg.name(),
            status,
            created_at: key.created_at,
            activates_at: key.activates_at,
            retires_at: key.retires_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct SigningKeyList {
    signing_keys: Vec<SigningKeyView>,
}

fn list(state: &AppState, now: OffsetDateTime) -> SigningKeyList {
    let signer = state.keyring.signer(now);
    let signer = signer.as_ref().map(|k| k.kid());
    SigningKeyList {
        signing_keys: state
            .keyring
            .schedules()
            .iter()
            .map(|k| SigningKeyView::new(k, signer, now))
            .collect(),
    }
}

#[utoipa::path(
    get,
    path = "/v1/signing-keys",
    tag = "signing keys",
    summary = "List the access-token signing keys (public facts only)",
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "the signing keys", body = SigningKeyList),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "not the super-admin", body = ErrorBody)
    )
)]
async fn list_signing_keys(
    admin: Admin,
    State(state): State<AppState>,
) -> Result<axum::Json<SigningKeyList>, ApiError> {
    admin.actor.is_super_admin()?;
    Ok(axum::Json(list(&state, state.clock.now())))
}

/// Answers with every key after the rotation; the new one is `active`.
#[utoipa::path(
    post,
    path = "/v1/signing-keys/rotate",
    tag = "signing keys",
    summary = "Force a rotation now: a new key signs at once",
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "every key after the rotation", body = SigningKeyList),
        (status = 401, description = "no or wrong admin secret", body = ErrorBody),
        (status = 403, description = "not the super-admin", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn rotate_signing_keys(
    admin: Admin,
    State(state): State<AppState>,
) -> Result<axum::Json<SigningKeyList>, ApiError> {
    let now = state.clock.now();
    let event = audit::Event::new(
        &admin.context,
        now,
        Action::SigningKeyRotate,
        Outcome::Success,
    );
    let result = async {
        admin.actor.is_super_admin()?;
        let created = state.keyring.force_rotation(now, &event).await?;
        info!(kid = created.kid, "signing keys rotated by an operator");
        Ok(axum::Json(list(&state, now)))
    }
    .await;
    audited(&state, &event, result).await
}
