//! `GET /healthz`: 200 `{"status":"ok"}` when the database answers, 503 JSON when not. No
//! authentication, so load balancers and orchestrators can call it.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::error::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(health))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn health(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    state.store.ping().await?;
    Ok(axum::Json(Health { status: "ok" }))
}
