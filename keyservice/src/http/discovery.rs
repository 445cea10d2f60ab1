//! Discovery, without authentication: the JWKS that verifies access tokens
//! (`/.well-known/jwks.json`) and the authorization server metadata that points at it and at the
//! token endpoint (`/.well-known/openid-configuration`, and the same document at RFC 8414's
//! `/.well-known/oauth-authorization-server`).
//!
//! The JWKS lists pending, signing and retiring keys (see [`crate::rotation`]); both documents
//! may be cached for [`crate::rotation::JWKS_MAX_AGE_SECS`].

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::oauth::TOKEN_PATH;
use crate::signing::PublicJwk;
use crate::AppState;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(jwks))
        .routes(routes!(openid_configuration))
        .routes(routes!(oauth_authorization_server))
}

/// `Cache-Control` of both documents: [`crate::rotation::JWKS_MAX_AGE_SECS`], which the rotation's
/// pre-publication lead accounts for.
const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("public, max-age=300");

fn cache_control() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, CACHE_CONTROL)]
}

#[derive(Serialize, ToSchema)]
struct JwksDocument {
    keys: Vec<PublicJwk>,
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    summary = "The public keys that verify access tokens",
    responses((status = 200, description = "the JWKS", body = JwksDocument))
)]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let keys = state.keyring.published(state.clock.now());
    (cache_control(), axum::Json(JwksDocument { keys }))
}

/// RFC 8414 / OpenID Connect Discovery metadata for a client-credentials-only server: there is no
/// authorization endpoint, so no response types. No ID tokens are issued either;
/// `id_token_signing_alg_values_supported` (which OpenID Connect requires) lists the algorithms
/// of the published access-token keys, which is what verifiers read it for.
#[derive(Serialize, ToSchema)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
    #[schema(value_type = Vec<String>)]
    grant_types_supported: [&'static str; 1],
    #[schema(value_type = Vec<String>)]
    token_endpoint_auth_methods_supported: [&'static str; 2],
    #[schema(value_type = Vec<String>)]
    id_token_signing_alg_values_supported: Vec<&'static str>,
}

#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "discovery",
    summary = "OpenID Connect Discovery metadata",
    responses((status = 200, description = "the metadata", body = Metadata))
)]
async fn openid_configuration(state: State<AppState>) -> impl IntoResponse {
    metadata(state)
}

#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    summary = "RFC 8414 authorization server metadata (the same document)",
    responses((status = 200, description = "the metadata", body = Metadata))
)]
async fn oauth_authorization_server(state: State<AppState>) -> impl IntoResponse {
    metadata(state)
}

fn metadata(State(state): State<AppState>) -> impl IntoResponse {
    let issuer = &state.access_tokens.issuer;
    let mut algs: Vec<&'static str> = Vec::new();
    for jwk in state.keyring.published(state.clock.now()) {
        if !algs.contains(&jwk.alg) {
            algs.push(jwk.alg);
        }
    }
    let document = Metadata {
        issuer: issuer.as_str().to_owned(),
        jwks_uri: issuer.url(JWKS_PATH),
        token_endpoint: issuer.url(TOKEN_PATH),
        grant_types_supported: ["client_credentials"],
        token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
        id_token_signing_alg_values_supported: algs,
    };
    (cache_control(), axum::Json(document))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::JWKS_MAX_AGE_SECS;

    #[test]
    fn cache_control_matches_the_max_age_rotation_plans_for() {
        assert_eq!(
            CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECS}").as_str()
        );
    }
}
