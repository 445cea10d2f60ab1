//! The filter's endpoints: key lookup (`POST /v1/lookup`, and `POST /v1/lookups` for several keys
//! at once) and usage reports (`POST /v1/usage`). All take [`FilterAuth`]: the filter token, and
//! never the admin secret.
//!
//! Only key hashes arrive here. Logs name key ids, or the first 8 hex characters of an unknown
//! hash.

use axum::extract::State;
use axum::http::StatusCode;
use keygate_core::key::KeyHash;
use keygate_core::wire::{
    LookupBatchRequest, LookupBatchResponse, LookupRequest, LookupResponse, UsageReport,
    MAX_LOOKUP_BATCH,
};
use time::OffsetDateTime;
use tracing::debug;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::FilterAuth;
use super::error::{ApiError, ErrorBody};
use super::extract::Json;
use crate::keys::{self, UsageBooking};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(lookup))
        .routes(routes!(lookup_batch))
        .routes(routes!(record_usage))
}

/// Valid and invalid answers are both 200; only a failure to answer is an error status.
#[utoipa::path(
    post,
    path = "/v1/lookup",
    tag = "filter",
    summary = "Look up a key by its SHA-256",
    request_body = LookupRequest,
    security(("filter_token" = [])),
    responses(
        (status = 200, description = "valid or invalid, with how long to cache it", body = LookupResponse),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "no or wrong filter token", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn lookup(
    _: FilterAuth,
    State(state): State<AppState>,
    Json(request): Json<LookupRequest>,
) -> Result<axum::Json<LookupResponse>, ApiError> {
    let now = state.clock.now();
    let found = state.store.find_secret(&request.key_hash).await?;
    Ok(axum::Json(answer(
        &state,
        &request.key_hash,
        found.as_ref(),
        now,
    )))
}

/// 1 to 64 hashes; `answers[i]` is exactly what `POST /v1/lookup` would answer for
/// `key_hashes[i]`, and a hash given twice is answered twice. The hashes are read in one query
/// and answered at one moment.
#[utoipa::path(
    post,
    path = "/v1/lookups",
    tag = "filter",
    summary = "Look up several keys by their SHA-256",
    request_body = LookupBatchRequest,
    security(("filter_token" = [])),
    responses(
        (status = 200, description = "one answer per hash, in the request's order", body = LookupBatchResponse),
        (status = 400, description = "malformed body, or not 1 to 64 `key_hashes`", body = ErrorBody),
        (status = 401, description = "no or wrong filter token", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn lookup_batch(
    _: FilterAuth,
    State(state): State<AppState>,
    Json(request): Json<LookupBatchRequest>,
) -> Result<axum::Json<LookupBatchResponse>, ApiError> {
    let hashes = request.key_hashes;
    if hashes.is_empty() || hashes.len() > MAX_LOOKUP_BATCH {
        return Err(ApiError::BadRequest(format!(
            "`key_hashes` must hold between 1 and {MAX_LOOKUP_BATCH} key hashes"
        )));
    }
    let now = state.clock.now();
    let found = state.store.find_secrets(&hashes).await?;
    let answers = hashes
        .iter()
        .zip(&found)
        .map(|(hash, found)| answer(&state, hash, found.as_ref(), now))
        .collect();
    Ok(axum::Json(LookupBatchResponse { answers }))
}

/// The answer to one key hash, counted in the lookup metrics and logged: the one place both
/// lookup endpoints answer a hash, so they cannot drift.
fn answer(
    state: &AppState,
    hash: &KeyHash,
    found: Option<&keys::SecretMatch>,
    now: OffsetDateTime,
) -> LookupResponse {
    let answer = keys::lookup_answer(found, now, state.cache);
    state.metrics.record_lookup(&answer);
    match (&answer, found) {
        (LookupResponse::Valid { key_id, .. }, _) => debug!(key_id, "lookup: valid"),
        (LookupResponse::Invalid { reason, .. }, Some(found)) => {
            debug!(key_id = %found.credential.id, reason = reason.as_str(), "lookup: invalid");
        }
        (LookupResponse::Invalid { reason, .. }, None) => {
            debug!(
                hash_prefix = hash.short(),
                reason = reason.as_str(),
                "lookup: invalid"
            );
        }
    }
    answer
}

/// Books the report in one transaction. Entries for keys deleted since (or that never existed)
/// are dropped: the filter cannot do anything better with them.
#[utoipa::path(
    post,
    path = "/v1/usage",
    tag = "filter",
    summary = "Book a batch of usage counts",
    request_body = UsageReport,
    security(("filter_token" = [])),
    responses(
        (status = 204, description = "booked"),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "no or wrong filter token", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn record_usage(
    _: FilterAuth,
    State(state): State<AppState>,
    Json(report): Json<UsageReport>,
) -> Result<StatusCode, ApiError> {
    let bookings: Vec<UsageBooking> = report
        .entries
        .iter()
        .filter_map(UsageBooking::from_entry)
        .collect();
    let booked = state.store.record_usage(&bookings).await?;
    debug!(entries = report.entries.len(), booked, "usage recorded");
    Ok(StatusCode::NO_CONTENT)
}
