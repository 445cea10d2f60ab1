//! `GET /metrics`: the Prometheus exposition ([`crate::metrics`]), behind [`MetricsAuth`] (the
//! metrics token; 404 when none is configured). `keygate_keys` is counted by the database on
//! each scrape, at the clock's `now`.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::auth::MetricsAuth;
use super::error::ErrorChain;
use crate::metrics::CONTENT_TYPE;
use crate::AppState;

pub const METRICS_PATH: &str = "/metrics";

pub fn router() -> Router<AppState> {
    Router::new().route(METRICS_PATH, get(scrape))
}

/// Always 200 once authenticated: a failed key count leaves `keygate_keys` out (and counts as a
/// database error) rather than fail the scrape, so the other series still arrive during an
/// outage.
async fn scrape(_: MetricsAuth, State(state): State<AppState>) -> impl IntoResponse {
    let keys = match state.store.count_keys(state.clock.now()).await {
        Ok(counts) => Some(counts),
        Err(e) => {
            tracing::warn!(error = %ErrorChain(&e), "metrics: cannot count keys");
            None
        }
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        state.metrics.encode(keys),
    )
}
