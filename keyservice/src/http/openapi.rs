//! The OpenAPI 3.1 document and its explorer.
//!
//! [`ApiDoc`] is the frame: title, version, tags and the security schemes. The paths and schemas
//! come from the handlers' `#[utoipa::path]` attributes through [`super::api`], the same list the
//! router is built from. [`docs_router`] serves the document at [`OPENAPI_PATH`] and swagger-ui at
//! [`DOCS_PATH`], whose files are inside the binary (utoipa-swagger-ui's `vendored` feature): no
//! CDN, and a Content-Security-Policy that lets the page load only from this origin.

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::Modify;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::AppState;

pub const OPENAPI_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// Sent with every `/docs` answer. Scripts, styles and the document come from this origin only;
/// swagger-ui sets inline styles and draws some icons from `data:` URLs.
pub const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "keygate key service",
        description = "Issues and manages API keys and OAuth 2.0 client credentials, and answers \
            the keygate filter's lookups. Errors are `{\"error\", \"message\"}` (schema `Error`), \
            except the token endpoint's, which follow RFC 6749 (schema `OAuthError`).",
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "keys", description = "API keys (admin secret)"),
        (name = "clients", description = "OAuth clients (admin secret)"),
        (name = "signing keys", description = "Access-token signing keys (admin secret)"),
        (name = "filter", description = "The filter's lookups, usage reports and revocation feed (filter token)"),
        (name = "oauth", description = "The token endpoint (client credentials)"),
        (name = "discovery", description = "JWKS and authorization server metadata (public)"),
        (name = "check", description = "ext_authz API key check (the caller's own key)"),
        (name = "health", description = "Liveness and database reachability (public)"),
        (name = "metrics", description = "Prometheus metrics (metrics token)"),
    )
)]
pub struct ApiDoc;

/// The credentials the operations name in their `security`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(description.to_owned());
            SecurityScheme::Http(scheme)
        };
        components.add_security_scheme(
            "admin_secret",
            bearer("The admin secret (KEYGATE_ADMIN_SECRET or --admin-secret-file)"),
        );
        components.add_security_scheme(
            "filter_token",
            bearer("The filter token (KEYGATE_FILTER_TOKEN), shared with the Envoy filter"),
        );
        components.add_security_scheme(
            "metrics_token",
            bearer("The metrics token (KEYGATE_METRICS_TOKEN); /metrics is 404 without one"),
        );
        components.add_security_scheme(
            "api_key",
            bearer("An API key (kg_...), as Bearer or in x-api-key"),
        );
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some(
            "client_secret_basic: client_id and client_secret, form-urlencoded, as HTTP Basic"
                .to_owned(),
        );
        components.add_security_scheme("client_credentials", SecurityScheme::Http(basic));
    }
}

/// `/openapi.json` and `/docs` (swagger-ui, its files from the binary).
pub fn docs_router(document: Document) -> Router<AppState> {
    // No validator badge: swagger-ui would send the document to an outside validator.
    let config = Config::from(OPENAPI_PATH)
        .validator_url("none")
        .persist_authorization(false);
    let ui = SwaggerUi::new(DOCS_PATH)
        .url(OPENAPI_PATH, document)
        .config(config);
    Router::from(ui).layer(axum::middleware::map_response(with_csp))
}

async fn with_csp(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    );
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
