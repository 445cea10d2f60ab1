//! `GET /metrics`: the Prometheus exposition ([`crate::metrics`]), behind [`MetricsAuth`] (the
//! metrics token; 404 when none is configured). `keygate_keys` is counted by the database on
//! each scrape, at the clock's `now`.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::MetricsAuth;
use super::error::{ErrorBody, ErrorChain};
use crate::metrics::CONTENT_TYPE;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    summary = "Prometheus metrics, OpenMetrics text (README: Metrics)",
    security(("metrics_token" = [])),
    responses(
        (status = 200, description = "the exposition",
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, description = "no or wrong metrics token", body = ErrorBody),
        (status = 404, description = "no metrics token is configured", body = ErrorBody),
        (status = 500, description = "internal error", body = ErrorBody)
    )
)]
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
