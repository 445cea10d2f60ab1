//! The token endpoint, `POST /oauth/token`: the OAuth 2.0 client credentials grant (RFC 6749
//! section 4.4), answering with an RFC 9068 JWT access token.
//!
//! The request is `application/x-www-form-urlencoded` with `grant_type=client_credentials`, an
//! optional `scope` (space-separated; it can only narrow the client's permissions) and an
//! optional `audience` (which must be the configured one). The client authenticates with HTTP
//! Basic (`client_secret_basic`, RFC 6749 section 2.3.1: id and secret form-urlencoded, then
//! Basic) or with `client_id` and `client_secret` in the body (`client_secret_post`), not both.
//!
//! Order of checks: the request's shape, the failure limiter (a source locked for this client id,
//! or for all, gets 429 whatever it sends), the client's secret, then the grant. The source is
//! the TCP peer's address ([`PeerIp`]). Failed authentications are logged with the client id
//! (when well-formed) and the source; a secret is never logged.
//! Errors are [`OAuthError`]s.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keygate_core::key::KeyHash;
use serde::Serialize;
use tracing::{info, warn};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::auth::{record_failure, single_authorization, AuthorizationError};
use super::error::{ApiError, ErrorBody, OAuthError, OAuthErrorBody};
use super::extract::{CallerRequestId, PeerIp};
use crate::audit::{self, Action, Outcome};
use crate::clients::ClientId;
use crate::credentials::{self, Kind};
use crate::ratelimit::Source;
use crate::token::{self, AccessTokenClaims, ACCESS_TOKEN_TYP};
use crate::{entropy, AppState};

pub const TOKEN_PATH: &str = "/oauth/token";
const GRANT_TYPE: &str = "client_credentials";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_token).layer(DefaultBodyLimit::max(MAX_TOKEN_BODY_BYTES)))
}

/// The form the token endpoint reads ([`parse_form`]); for the OpenAPI document only.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TokenRequest {
    /// Only `client_credentials`.
    #[schema(example = "client_credentials")]
    grant_type: String,
    /// Space-separated permissions, a subset of the client's; all of them when absent.
    scope: Option<String>,
    /// Must be the configured audience when present.
    audience: Option<String>,
    /// With `client_secret`, instead of HTTP Basic (`client_secret_post`).
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// RFC 6749 section 5.1.
#[derive(Serialize, ToSchema)]
struct TokenResponse {
    access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    token_type: &'static str,
    expires_in: u64,
    scope: String,
}

/// Grants, and counts the outcome in `keygate_token_requests_total`: `issued`, or the error code
/// of the answer.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oauth",
    summary = "Issue an access token (client credentials grant)",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client_credentials" = []), ()),
    responses(
        (status = 200, description = "an RFC 9068 JWT access token", body = TokenResponse),
        (status = 400, description = "invalid_request, unsupported_grant_type or invalid_scope", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 429, description = "slow_down: too many failed authentications", body = OAuthErrorBody),
        (status = 500, description = "internal error", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody)
    )
)]
async fn issue_token(
    State(state): State<AppState>,
    PeerIp(peer): PeerIp,
    CallerRequestId(request_id): CallerRequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = audit::Context {
        actor: String::new(),
        source: peer,
        request_id,
    };
    let result = grant(&state, caller, &headers, body).await;
    state.metrics.record_token_request(match &result {
        Ok(_) => "issued",
        Err(e) => e.code(),
    });
    result
}

async fn grant(
    state: &AppState,
    mut caller: audit::Context,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::from(OAuthError::InvalidRequest("cannot read the request body"))
        }
    })?;
    if !is_form(headers) {
        return Err(OAuthError::InvalidRequest(
            "expected Content-Type: application/x-www-form-urlencoded",
        )
        .into());
    }
    let form = parse_form(&body)?;
    let presented = presented_credentials(headers, &form)?;

    let client_id = ClientId::parse(&presented.client_id);
    let source = Source::of(caller.source);
    if let Err(wait) = state.auth_failures.check(client_id.as_ref(), source, now) {
        warn!(
            client_id = client_id.as_ref().map(ClientId::as_str),
            %source,
            retry_after_secs = wait.0,
            "token request refused: too many failed client authentications"
        );
        return Err(OAuthError::SlowDown {
            retry_after_secs: wait.0,
        }
        .into());
    }
    let found = match &client_id {
        Some(id) => state.store.with_secrets(id).await?,
        None => None,
    };
    let presented_hash = KeyHash::of(presented.client_secret.as_bytes());
    let client = match credentials::authenticate(found.as_ref(), &presented_hash, now) {
        Ok(client) => client,
        Err(failure) => {
            if failure.is_guess() {
                state
                    .auth_failures
                    .record_failure(client_id.as_ref(), source, now);
            }
            log_failure(client_id.as_ref(), source, failure.as_str());
            // The client id only when well-formed: whatever else was sent stays out of the log.
            caller.actor = client_id
                .as_ref()
                .map_or_else(|| "anonymous".to_owned(), ToString::to_string);
            let mut event = audit::Event::new(&caller, now, Action::TokenFailure, Outcome::Failure);
            if let Some(found) = &found {
                event = event
                    .target(Kind::Client.as_str(), &found.credential.id)
                    .tenant(&found.credential.tenant);
            }
            record_failure(state, &event).await;
            return Err(OAuthError::InvalidClient.into());
        }
    };
    state.auth_failures.record_success(&client.id, source);

    match form.get("grant_type").map(String::as_str) {
        None => return Err(OAuthError::InvalidRequest("`grant_type` is required").into()),
        Some(GRANT_TYPE) => {}
        Some(_) => return Err(OAuthError::UnsupportedGrantType.into()),
    }
    if form
        .get("audience")
        .is_some_and(|aud| aud != state.access_tokens.audience.as_str())
    {
        return Err(OAuthError::InvalidRequest(
            "`audience` is not an audience this server issues for",
        )
        .into());
    }
    let granted = token::grant_scope(
        &client.effective_permissions(),
        form.get("scope").map(String::as_str),
    )
    .map_err(|e| OAuthError::InvalidScope(e.to_string()))?;

    let signer = state.keyring.signer(now).ok_or_else(|| {
        ApiError::Internal("no signing key is active; check the key rotation logs".into())
    })?;
    let claims = AccessTokenClaims::new(
        &state.access_tokens,
        client,
        &granted,
        entropy::token_id()?,
        now,
    );
    let access_token = signer.sign_jwt(ACCESS_TOKEN_TYP, &claims)?;
    info!(
        client_id = %client.id,
        jti = claims.jti,
        kid = signer.kid(),
        scope = claims.scope,
        "access token issued"
    );
    let headers = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ];
    let response = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: claims.expires_in(),
        scope: claims.scope,
    };
    Ok((headers, axum::Json(response)).into_response())
}

fn log_failure(client_id: Option<&ClientId>, source: Source, reason: &'static str) {
    warn!(
        client_id = client_id.map(ClientId::as_str),
        client_id_well_formed = client_id.is_some(),
        %source,
        reason,
        "client authentication failed"
    );
}

/// `application/x-www-form-urlencoded`, parameters such as `; charset=UTF-8` allowed.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, then percent
/// escapes. `None` when the result is not UTF-8.
fn form_decode(component: &str) -> Option<String> {
    let plus_as_space = component.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Most parameters a token request may carry. The grant reads at most five (`grant_type`,
/// `scope`, `audience`, `client_id`, `client_secret`); RFC 6749 has clients send others that
/// are ignored (`resource`, say), but never dozens.
const MAX_FORM_PARAMS: usize = 32;

/// Largest token request body. Room for a `scope` naming the most permissions a client can hold,
/// each percent-encoded; far below the service-wide limit, since this body is read before the
/// client has authenticated.
pub const MAX_TOKEN_BODY_BYTES: usize = 32 * 1024;

/// The body's parameters, in one pass: linear in the body's length. Per RFC 6749 section 3.2, a
/// parameter without a value counts as absent and a parameter sent twice is an error (which one
/// would count is ambiguous); unknown parameters are kept (and ignored). More than
/// [`MAX_FORM_PARAMS`] is an error too.
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    const NOT_A_FORM: OAuthError =
        OAuthError::InvalidRequest("the body is not application/x-www-form-urlencoded UTF-8");
    let body = std::str::from_utf8(body).map_err(|_| NOT_A_FORM)?;
    let mut params = HashMap::new();
    for (count, pair) in body.split('&').filter(|p| !p.is_empty()).enumerate() {
        if count == MAX_FORM_PARAMS {
            return Err(OAuthError::InvalidRequest("too many request parameters"));
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(name).ok_or(NOT_A_FORM)?;
        let value = form_decode(value).ok_or(NOT_A_FORM)?;
        match params.entry(name) {
            Entry::Occupied(_) => {
                return Err(OAuthError::InvalidRequest(
                    "a request parameter is repeated; send each at most once",
                ))
            }
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
    }
    params.retain(|_, value| !value.is_empty());
    Ok(params)
}

/// What the caller presented to authenticate. The secret is only hashed, never logged.
struct Presented {
    client_id: String,
    client_secret: String,
}

/// The client credentials of the request, from HTTP Basic or from the body, not both.
fn presented_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Presented, OAuthError> {
    let basic = match single_authorization(headers) {
        Ok(None) => None,
        Ok(Some(value)) => Some(basic_credentials(value).ok_or(OAuthError::InvalidClient)?),
        Err(AuthorizationError::NotText) => return Err(OAuthError::InvalidClient),
        // RFC 6749 section 5.2: more than one authentication is `invalid_request`.
        Err(AuthorizationError::Ambiguous) => {
            return Err(OAuthError::InvalidRequest(
                "send exactly one Authorization header with one credential",
            ))
        }
    };
    let in_body = (form.get("client_id"), form.get("client_secret"));
    match (basic, in_body) {
        (Some(basic), (None, None)) => Ok(basic),
        // Some clients repeat their id in the body next to Basic; harmless when it agrees.
        (Some(basic), (Some(id), None)) if *id == basic.client_id => Ok(basic),
        (Some(_), _) => Err(OAuthError::InvalidRequest(
            "use one client authentication method: HTTP Basic or client_secret in the body",
        )),
        (None, (Some(id), Some(secret))) => Ok(Presented {
            client_id: id.clone(),
            client_secret: secret.clone(),
        }),
        // No secret: public clients are not supported.
        (None, _) => Err(OAuthError::InvalidClient),
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 section 2.3.1). `None` for any
/// other scheme or a malformed value.
fn basic_credentials(value: &str) -> Option<Presented> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let presented = Presented {
        client_id: form_decode(id)?,
        client_secret: form_decode(secret)?,
    };
    (!presented.client_id.is_empty()).then_some(presented)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn form(body: &str) -> Result<HashMap<String, String>, OAuthError> {
        parse_form(body.as_bytes())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn form_values_are_decoded_and_empty_ones_count_as_absent() {
        let params = form("grant_type=client_credentials&scope=a%3Ab+c&audience=&x").unwrap();
        assert_eq!(params["grant_type"], "client_credentials");
        assert_eq!(params["scope"], "a:b c");
        assert!(!params.contains_key("audience"));
        assert!(!params.contains_key("x"));
        assert!(form("").unwrap().is_empty());
    }

    #[test]
    fn repeated_or_undecodable_parameters_are_invalid_requests() {
        for bad in [
            "scope=a&scope=b",
            "scope=&scope=b",
            "scope=%FF",
            "scope=%E2%82",
        ] {
            assert!(
                matches!(form(bad), Err(OAuthError::InvalidRequest(_))),
                "{bad}"
            );
        }
        assert!(parse_form(b"scope=\xff").is_err());
    }

    #[test]
    fn a_hundred_thousand_parameters_are_refused_without_quadratic_work() {
        let many = (0..100_000)
            .map(|i| format!("p{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        assert!(matches!(form(&many), Err(OAuthError::InvalidRequest(_))));
        let at_most = (0..MAX_FORM_PARAMS)
            .map(|i| format!("p{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(form(&at_most).unwrap().len(), MAX_FORM_PARAMS);
        // A repeat is found however far apart the two are.
        let between = (0..MAX_FORM_PARAMS - 3)
            .map(|i| format!("p{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        let repeated = format!("scope=a&{between}&scope=b");
        assert!(matches!(
            form(&repeated),
            Err(OAuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // id "a:b" and secret "p+q%" encoded as RFC 6749 section 2.3.1 says.
        let value = format!("Basic {}", STANDARD.encode("a%3Ab:p%2Bq%25"));
        let presented = basic_credentials(&value).unwrap();
        assert_eq!(presented.client_id, "a:b");
        assert_eq!(presented.client_secret, "p+q%");

        let lower = format!("basic {}", STANDARD.encode("id:secret"));
        assert!(basic_credentials(&lower).is_some());
        for bad in [
            "Bearer abc".to_owned(),
            "Basic !!!".to_owned(),
            format!("Basic {}", STANDARD.encode("no-colon")),
            format!("Basic {}", STANDARD.encode(":secret")),
        ] {
            assert!(basic_credentials(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn exactly_one_client_authentication_method_is_accepted() {
        let basic = format!("Basic {}", STANDARD.encode("id:secret"));
        let with_basic = headers(&[("authorization", &basic)]);
        let none = HeaderMap::new();

        let only_basic = presented_credentials(&with_basic, &form("").unwrap()).unwrap();
        assert_eq!(
            (
                only_basic.client_id.as_str(),
                only_basic.client_secret.as_str()
            ),
            ("id", "secret")
        );
        let only_post =
            presented_credentials(&none, &form("client_id=id&client_secret=secret").unwrap())
                .unwrap();
        assert_eq!(only_post.client_id, "id");
        assert!(presented_credentials(&with_basic, &form("client_id=id").unwrap()).is_ok());

        assert!(matches!(
            presented_credentials(
                &with_basic,
                &form("client_id=id&client_secret=secret").unwrap()
            ),
            Err(OAuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            presented_credentials(&with_basic, &form("client_id=other").unwrap()),
            Err(OAuthError::InvalidRequest(_))
        ));
        let twice = headers(&[("authorization", &basic), ("authorization", &basic)]);
        assert!(matches!(
            presented_credentials(&twice, &form("").unwrap()),
            Err(OAuthError::InvalidRequest(_))
        ));
        for body in ["", "client_id=id", "client_secret=secret"] {
            assert!(matches!(
                presented_credentials(&none, &form(body).unwrap()),
                Err(OAuthError::InvalidClient)
            ));
        }
        let bearer = headers(&[("authorization", "Bearer abc")]);
        assert!(matches!(
            presented_credentials(&bearer, &form("").unwrap()),
            Err(OAuthError::InvalidClient)
        ));
    }

    #[test]
    fn only_form_content_types_are_accepted() {
        assert!(is_form(&headers(&[(
            "content-type",
            "application/x-www-form-urlencoded"
        )])));
        assert!(is_form(&headers(&[(
            "content-type",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
        )])));
        assert!(!is_form(&headers(&[("content-type", "application/json")])));
        assert!(!is_form(&HeaderMap::new()));
    }
}
