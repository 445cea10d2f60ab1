//! The revocation feed for the filter: `GET /v1/changes?after=<cursor>&limit=<n>&wait_ms=<n>`,
//! with [`FilterAuth`] like the lookups. Rules (cursors, resets, what is logged) are in
//! [`crate::feed`]; this module reads the log and holds long-polls.
//!
//! Only key hashes are sent, never keys; logs name how many changes went out, not which.

use axum::extract::State;
use keygate_core::wire::ChangesResponse;
use serde::Deserialize;
use tokio::time::Instant;
use tracing::debug;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::FilterAuth;
use super::error::{ApiError, ErrorBody};
use super::extract::Query;
use crate::feed::{self, Cursor, Page};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(changes))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    /// The cursor of the previous answer; absent on a reader's first request.
    #[param(pattern = "^[0-9a-f]{32}:[0-9]+$")]
    after: Option<String>,
    /// Most changes wanted in this answer (at most 1000 are sent).
    #[param(minimum = 1)]
    limit: Option<u64>,
    /// How long to hold an answer with nothing new, in milliseconds.
    wait_ms: Option<u64>,
}

/// Answers the changes after the cursor at once; or, when there are none and `wait_ms` is given,
/// when the first one is committed in this process, at the end of the wait, or at shutdown,
/// whichever comes first. A reset is answered at once.
#[utoipa::path(
    get,
    path = "/v1/changes",
    tag = "filter",
    summary = "The revocation feed: key hashes whose lookup answer changed",
    params(ChangesQuery),
    security(("filter_token" = [])),
    responses(
        (status = 200, description = "the changes after the cursor, or a reset", body = ChangesResponse),
        (status = 400, description = "malformed cursor, limit or query", body = ErrorBody),
        (status = 401, description = "no or wrong filter token", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn changes(
    _: FilterAuth,
    State(state): State<AppState>,
    Query(query): Query<ChangesQuery>,
) -> Result<axum::Json<ChangesResponse>, ApiError> {
    let after = query
        .after
        .as_deref()
        .map(Cursor::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limit = feed::page_limit(query.limit).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let deadline = Instant::now() + feed::long_poll_wait(query.wait_ms);
    let signal = state.store.change_signal();
    // Subscribed before reading: a change committed between the read and the wait still wakes it.
    let mut woken = signal.subscribe();
    let page = loop {
        let page = state.store.read_changes(after.as_ref(), limit).await?;
        if !page.is_idle() || signal.is_closing() || Instant::now() >= deadline {
            break page;
        }
        let _parked = signal.park();
        match tokio::time::timeout_at(deadline, woken.changed()).await {
            Ok(Ok(())) => {
                woken.borrow_and_update();
            }
            // The wait is over, or the signal is gone (never while the store lives).
            Ok(Err(_)) | Err(_) => break page,
        }
    };
    log(&page);
    Ok(axum::Json(page.into_response()))
}

fn log(page: &Page) {
    match page.reset {
        Some(reason) => debug!(reason = reason.as_str(), "changes: reset"),
        None => debug!(
            changes = page.changes.len(),
            more = page.more,
            "changes: read"
        ),
    }
}
