//! `GET /healthz`: 200 `{"status":"ok"}` when the database answers, 503 JSON when not. No
//! authentication, so load balancers and orchestrators can call it.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "Whether the service and its database answer",
    responses(
        (status = 200, description = "healthy", body = Health),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn health(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    state.store.ping().await?;
    Ok(axum::Json(Health { status: "ok" }))
}
