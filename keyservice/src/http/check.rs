//! The ext_authz check, any method on `/v1/check` and `/v1/check/{*path}`: an API key check for
//! proxies without the Wasm filter (Envoy's `ext_authz` HTTP service appends the original path to
//! its `path_prefix`), and the baseline the filter is benchmarked against.
//!
//! It decides as the filter does, by calling keygate-core with the filter configuration in
//! [`CHECK_CONFIG`]: [`decision::plan`] finds the credential (`x-api-key`, or `Authorization:
//! Bearer kg_...`; two different ones are ambiguous) and normalizes the forwarded path (a path
//! the filter would refuse is refused here too, 400 `bad_path`); the key is looked up by its
//! hash like a lookup; [`decision::judge`] checks the permissions the proxy names in
//! `x-keygate-required-permissions` (comma-separated). The answers:
//! - 200, empty, with the identity headers `x-keygate-auth: api_key`, `x-keygate-key-id`,
//!   `x-keygate-tenant` and `x-keygate-permissions` (comma-separated) for the proxy to copy
//!   upstream (`allowed_upstream_headers`), and `x-envoy-auth-headers-to-remove` listing what the
//!   proxy must cut from the request before it goes upstream: the headers that carried the key,
//!   and every client-sent header that spells the identity prefix (`x-keygate-*`, `x_keygate_*`,
//!   any case: [`decision::spoofed_headers`]) except the identity headers this answer sets, which
//!   Envoy overwrites (it applies removals *after* it sets the answer's headers, so listing them
//!   would remove the real ones). The check only sees the client headers the proxy forwards:
//!   Envoy must list the identity prefix in `authorization_request.allowed_headers`.
//! - 401 `{"error":"unauthorized","reason":...}` with `WWW-Authenticate`;
//! - 403 `{"error":"forbidden","reason":"insufficient_permissions","missing_permissions":[...]}`.
//!
//! The bodies and headers are keygate-core's [`Denial`] and [`decision::Grant`], the filter's
//! own. No token is needed: the caller proves only its own key. Usage is not counted here (the
//! filter's reports do that).

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use keygate_core::cache;
use keygate_core::config::{ConfigError, FilterConfig};
use keygate_core::decision::{self, Denial, DenyReason, Outcome, Plan, RequestView, Verdict};
use keygate_core::hostmap::Header;
use keygate_core::permission::Permission;
use tracing::{debug, warn};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use crate::keys;
use crate::AppState;

const CHECK_PREFIX: &str = "/v1/check";
const REQUIRED_PERMISSIONS_HEADER: &str = "x-keygate-required-permissions";
/// Envoy's ext_authz HTTP service removes the request headers an OK answer lists here
/// (comma-separated) before the request goes upstream.
const HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// The filter configuration the check decides with: keys from `x-api-key` or a bearer `kg_`
/// token (never the query: ext_authz cannot rewrite it), no JWT providers, one rule that every
/// path needs a valid key, identity headers under `x-keygate-`, credentials stripped. The key
/// service section is required by the format and unused here.
pub const CHECK_CONFIG: &str = r#"{
    "key_service": {"cluster": "unused", "token": "unused"},
    "api_keys": {"headers": ["x-api-key"], "query_params": [], "bearer": true},
    "forwarding": {"header_prefix": "x-keygate-", "strip_credentials": true},
    "routes": [{"prefix": "/", "permissions": []}]
}"#;

static CONFIG: LazyLock<Result<FilterConfig, ConfigError>> =
    LazyLock::new(|| FilterConfig::from_json(CHECK_CONFIG.as_bytes()));

/// `/v1/check` is documented from [`check`]'s attribute but answers any method, CONNECT and
/// extension methods included (the proxy forwards the original one), so its method router is
/// `any` rather than the documented list. The forwarded-path routes cannot be expressed in
/// OpenAPI (a multi-segment wildcard); the operation's description names them.
#[allow(clippy::disallowed_methods)]
pub fn router() -> OpenApiRouter<AppState> {
    let (schemas, mut paths, _) = routes!(check);
    // One handler for every method; OpenAPI wants an operationId per operation.
    for item in paths.paths.values_mut() {
        for (method, operation) in [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("options", &mut item.options),
            ("head", &mut item.head),
            ("patch", &mut item.patch),
            ("trace", &mut item.trace),
        ] {
            if let Some(operation) = operation {
                operation.operation_id = Some(format!("check_{method}"));
            }
        }
    }
    OpenApiRouter::new()
        .routes((schemas, paths, any(check)))
        // The catch-all needs a non-empty rest; `/` forwarded under the prefix gives `/v1/check/`.
        .route("/v1/check/", any(check))
        .route("/v1/check/{*path}", any(check))
}

/// A refusal of the check, keygate-core's [`Denial`] as the filter sends it; for the OpenAPI
/// document only.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CheckDenial {
    /// `unauthorized` (401) or `forbidden` (403).
    error: String,
    /// Why, e.g. `missing_credential`, `unknown_key`, `revoked_key`, `insufficient_permissions`.
    reason: String,
    /// For 403: the required permissions the key lacks.
    missing_permissions: Option<Vec<String>>,
    detail: Option<String>,
}

/// Also answered under `/v1/check/` and `/v1/check/{*path}` (the forwarded original path), with
/// any HTTP method.
#[utoipa::path(
    method(get, post, put, delete, patch, head, options, trace),
    path = "/v1/check",
    tag = "check",
    summary = "ext_authz: check the caller's own API key (x-api-key or Bearer kg_...)",
    params(
        ("x-api-key" = Option<String>, Header, description = "the API key"),
        ("x-keygate-required-permissions" = Option<String>, Header, description = "comma-separated permissions the route needs")
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "allowed; identity in x-keygate-* headers, empty body"),
        (status = 400, description = "a path the filter would refuse", body = CheckDenial),
        (status = 401, description = "no, unknown, revoked or expired key", body = CheckDenial),
        (status = 403, description = "the key lacks a required permission", body = CheckDenial),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn check(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cfg = match &*CONFIG {
        Ok(cfg) => cfg,
        Err(e) => return Err(ApiError::Internal(Box::new(e.clone()))),
    };
    let path = forwarded_path(&uri);
    let request = request_headers(&method, &path, &headers);
    let view = RequestView {
        headers: &request,
        route_name: None,
    };
    let (hash, strip) = match decision::plan(cfg, &view) {
        Plan::CheckKey {
            key, hash, strip, ..
        } => match decision::before_lookup(key) {
            Some(denial) => return Ok(deny(denial)),
            None => (hash, strip),
        },
        Plan::Deny(denial) => return Ok(deny(denial)),
        // CHECK_CONFIG has no public rule and no JWT provider.
        Plan::Forward(_) | Plan::CheckJwt { .. } => {
            return Ok(deny(Denial::new(DenyReason::MissingCredential)))
        }
    };
    let now = state.clock.now();
    let found = state.store.find_secret(&hash).await?;
    let answer = keys::lookup_answer(found.as_ref(), now, state.cache);
    let now_unix = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let outcome = Outcome::prepare(cfg, cache::answer_of(&answer, now_unix));
    let verdict = match required_permissions(&headers) {
        Ok(required) => decision::judge(&outcome, &required),
        // A proxy configuration error. No key can hold such a permission: once the key is
        // known good (401 comes first), it is missing, as the filter's load would have said.
        Err(unreadable) => match decision::judge(&outcome, &[]) {
            Verdict::Allow(_) => {
                warn!("check: x-keygate-required-permissions names a malformed permission");
                let mut denial = Denial::new(DenyReason::Forbidden);
                denial.missing = unreadable;
                Verdict::Deny(denial)
            }
            refused => refused,
        },
    };
    let grant = match verdict {
        Verdict::Allow(grant) => grant,
        Verdict::Deny(denial) => {
            debug!(reason = denial.reason.as_str(), "check: denied");
            return Ok(deny(denial));
        }
        // judge never answers it; only an unreachable key service does.
        Verdict::AllowUnverified => return Ok(deny(Denial::new(DenyReason::Unavailable))),
    };
    debug!(key_id = grant.key_id.as_deref(), "check: allowed");

    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    for (name, value) in &grant.identity_headers {
        // Core makes values header-safe; names are the prefix and fixed suffixes.
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            out.insert(name, value);
        }
    }
    let mut remove: Vec<&str> = Vec::new();
    let spoofed = decision::spoofed_headers(cfg, &request)
        .filter_map(|name| std::str::from_utf8(name).ok())
        .filter(|name| !grant.identity_headers.iter().any(|(set, _)| set == name));
    for name in strip.headers.iter().map(String::as_str).chain(spoofed) {
        if !remove.contains(&name) {
            remove.push(name);
        }
    }
    if !remove.is_empty() {
        if let Ok(value) = HeaderValue::try_from(remove.join(", ")) {
            out.insert(HEADERS_TO_REMOVE, value);
        }
    }
    Ok(response)
}

/// The original request's path, as Envoy appended it to `path_prefix`: `/` when nothing was.
fn forwarded_path(uri: &Uri) -> String {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let rest = path_and_query
        .strip_prefix(CHECK_PREFIX)
        .unwrap_or(path_and_query);
    if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    }
}

/// The request as the filter would see it: `:method` and `:path` pseudo-headers, then every
/// header, values as bytes. Names are lowercase (HTTP/1 names are case-insensitive and hyper
/// lowercases them).
fn request_headers<'a>(
    method: &'a Method,
    path: &'a str,
    headers: &'a HeaderMap,
) -> Vec<Header<'a>> {
    let mut out: Vec<Header<'a>> = Vec::with_capacity(headers.len() + 2);
    out.push((b":method", method.as_str().as_bytes()));
    out.push((b":path", path.as_bytes()));
    for (name, value) in headers {
        out.push((name.as_str().as_bytes(), value.as_bytes()));
    }
    out
}

/// The proxy's `x-keygate-required-permissions`: comma-separated, blanks ignored, repeats
/// dropped. `Err` lists the entries that are not permissions (no key can hold them).
fn required_permissions(headers: &HeaderMap) -> Result<Vec<Permission>, Vec<String>> {
    let mut required: Vec<Permission> = Vec::new();
    let mut unreadable: Vec<String> = Vec::new();
    for value in headers.get_all(REQUIRED_PERMISSIONS_HEADER) {
        let value = String::from_utf8_lossy(value.as_bytes());
        for entry in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match Permission::parse(entry) {
                Ok(permission) if !required.contains(&permission) => required.push(permission),
                Ok(_) => {}
                Err(_) => unreadable.push(entry.to_owned()),
            }
        }
    }
    if unreadable.is_empty() {
        Ok(required)
    } else {
        Err(unreadable)
    }
}

fn deny(denial: Denial) -> Response {
    let status = u16::try_from(denial.status())
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = (status, denial.body()).into_response();
    for (name, value) in denial.headers() {
        if let Ok(value) = HeaderValue::try_from(value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_check_configuration_compiles() {
        let cfg = CONFIG.as_ref().unwrap();
        assert_eq!(cfg.api_keys.headers, ["x-api-key"]);
        assert!(cfg.api_keys.query_params.is_empty());
        assert!(cfg.api_keys.bearer);
        assert!(!cfg.jwt.enabled());
        assert_eq!(cfg.forwarding.header_prefix, "x-keygate-");
    }

    #[test]
    fn the_forwarded_path_is_what_follows_the_prefix() {
        for (uri, path) in [
            ("/v1/check", "/"),
            ("/v1/check/", "/"),
            ("/v1/check/orders/1?x=1", "/orders/1?x=1"),
            ("/v1/check?x=1", "/?x=1"),
        ] {
            assert_eq!(forwarded_path(&uri.parse().unwrap()), path, "{uri}");
        }
    }

    #[test]
    fn required_permissions_are_comma_separated_trimmed_and_parsed() {
        let h = headers(&[
            (REQUIRED_PERMISSIONS_HEADER, " a, ,b,a "),
            (REQUIRED_PERMISSIONS_HEADER, "c"),
        ]);
        let names: Vec<String> = required_permissions(&h)
            .unwrap()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let h = headers(&[(REQUIRED_PERMISSIONS_HEADER, "a, b c,ok")]);
        assert_eq!(required_permissions(&h), Err(vec!["b c".to_owned()]));
    }
}
