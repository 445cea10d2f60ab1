use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn check(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = app.client.request(method, app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Asserts a 401 in the filter's shape and returns its `reason`.
async fn denied(response: Response, challenge: &str) -> String {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], challenge);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    body["reason"].as_str().unwrap().to_owned()
}

const INVALID_TOKEN: &str = r#"Bearer realm="keygate", error="invalid_token""#;

#[tokio::test]
async fn check_allows_a_valid_key_with_identity_headers_on_any_method_and_path() {
    let app = spawn_app().await;
    let key = app
        .create_key(
            &json!({"name": "ci", "tenant": "acme", "permissions": ["orders:read", "admin"]}),
        )
        .await;
    let secret = key["secret"].as_str().unwrap();
    let bearer = format!("Bearer {secret}");
    for (method, path, header) in [
        (Method::GET, "/v1/check/orders/1?x=1", ("x-api-key", secret)),
        (Method::POST, "/v1/check", ("x-api-key", secret)),
        (
            Method::DELETE,
            "/v1/check/a/b/c",
            ("authorization", bearer.as_str()),
        ),
        (Method::HEAD, "/v1/check/", ("x-api-key", secret)),
    ] {
        let response = check(&app, method.clone(), path, &[header]).await;
        assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
        let headers = response.headers();
        assert_eq!(headers["x-keygate-key-id"], key["id"].as_str().unwrap());
        assert_eq!(headers["x-keygate-tenant"], "acme");
        assert_eq!(headers["x-keygate-permissions"], "orders:read,admin");
        assert_eq!(headers["x-keygate-auth"], "api_key");
    }
}

#[tokio::test]
async fn check_denies_missing_malformed_unknown_revoked_and_expired_keys_with_401() {
    let app = spawn_app().await;
    let revoked = app.create_default_key().await;
    app.admin_post(
        &format!("/v1/keys/{}/revoke", revoked["id"].as_str().unwrap()),
        &json!({}),
    )
    .await;
    let expiring = app
        .create_key(
            &json!({"name": "ci", "tenant": "acme", "permissions": [], "expires_in_secs": 5}),
        )
        .await;
    let never_issued = keygate_core::key::ApiKey::from_random([9; 20]);
    app.advance(5);

    let response = check(&app, Method::GET, "/v1/check/x", &[]).await;
    assert_eq!(
        denied(response, r#"Bearer realm="keygate""#).await,
        "missing_credential"
    );
    for (key, reason) in [
        ("kg_nope", "malformed_key"),
        (never_issued.expose_secret(), "unknown_key"),
        (revoked["secret"].as_str().unwrap(), "revoked_key"),
        (expiring["secret"].as_str().unwrap(), "expired_key"),
    ] {
        let response = check(&app, Method::GET, "/v1/check/x", &[("x-api-key", key)]).await;
        assert_eq!(denied(response, INVALID_TOKEN).await, reason);
    }
    let other = app.create_default_key().await;
    let bearer = format!("Bearer {}", other["secret"].as_str().unwrap());
    let response = check(
        &app,
        Method::GET,
        "/v1/check/x",
        &[
            ("x-api-key", revoked["secret"].as_str().unwrap()),
            ("authorization", &bearer),
        ],
    )
    .await;
    assert_eq!(
        denied(response, INVALID_TOKEN).await,
        "ambiguous_credential"
    );
}

#[tokio::test]
async fn check_answers_403_when_the_key_lacks_a_required_permission() {
    let app = spawn_app().await;
    let key = app.create_default_key().await;
    let secret = key["secret"].as_str().unwrap();

    let allowed = check(
        &app,
        Method::GET,
        "/v1/check/orders",
        &[
            ("x-api-key", secret),
            ("x-keygate-required-permissions", "orders:read"),
        ],
    )
    .await;
    assert_eq!(allowed.status(), StatusCode::OK);

    let response = check(
        &app,
        Method::GET,
        "/v1/check/orders",
        &[
            ("x-api-key", secret),
            (
                "x-keygate-required-permissions",
                "orders:read, orders:write,admin",
            ),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="keygate", error="insufficient_scope""#
    );
    assert!(response.headers().get("x-keygate-key-id").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    assert_eq!(
        body["missing_permissions"],
        json!(["orders:write", "admin"])
    );
}
