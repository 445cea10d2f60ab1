use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{backend_tests, spawn_app, Backend, TestApp};

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

async fn check_allows_a_valid_key_with_identity_headers_on_any_method_and_path(backend: Backend) {
    let app = spawn_app(backend).await;
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

async fn check_denies_missing_malformed_unknown_revoked_and_expired_keys_with_401(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
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

async fn check_answers_403_when_the_key_lacks_a_required_permission(backend: Backend) {
    let app = spawn_app(backend).await;
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

const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// What the upstream receives when Envoy's ext_authz (HTTP service, `allowed_upstream_headers`
/// matching the `x-keygate-` prefix) acts on `response`: it sets the answer's identity headers
/// on the client's request, then removes the headers the answer lists in
/// `x-envoy-auth-headers-to-remove`, in that order (Envoy's `ext_authz.cc`, `onComplete`).
fn upstream_headers(client: &[(&str, &str)], response: &Response) -> Vec<(String, String)> {
    let mut upstream: Vec<(String, String)> = client
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
        .collect();
    for (name, value) in response.headers() {
        if name.as_str().starts_with("x-keygate-") {
            upstream.retain(|(n, _)| n != name.as_str());
            upstream.push((name.as_str().to_owned(), value.to_str().unwrap().to_owned()));
        }
    }
    let removed: Vec<String> = response
        .headers()
        .get(HEADERS_TO_REMOVE)
        .map(|v| {
            v.to_str()
                .unwrap()
                .split(',')
                .map(|n| n.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    upstream.retain(|(n, _)| !removed.contains(n));
    upstream
}

async fn check_tells_the_proxy_to_remove_spoofed_identity_and_credential_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let secret = key["secret"].as_str().unwrap();
    let bearer = format!("Bearer {secret}");
    for credential in [("x-api-key", secret), ("authorization", bearer.as_str())] {
        let client = [
            credential,
            ("x-keygate-tenant", "evil"),
            ("X_Keygate_Tenant", "evil"),
            ("x-KEYGATE_subject", "evil"),
            ("X-Keygate-Provider", "evil"),
            ("x-keygate-auth", "jwt"),
            ("accept", "application/json"),
        ];
        let response = check(&app, Method::GET, "/v1/check/orders/1", &client).await;
        assert_eq!(response.status(), StatusCode::OK);
        let removed = response.headers()[HEADERS_TO_REMOVE].to_str().unwrap();
        for name in [
            credential.0,
            "x_keygate_tenant",
            "x-keygate_subject",
            "x-keygate-provider",
        ] {
            assert!(
                removed.split(", ").any(|n| n == name),
                "{name} not in {removed:?}"
            );
        }
        // Envoy removes after it sets: listing a header the answer sets would remove the real one.
        for name in ["x-keygate-tenant", "x-keygate-auth", "x-keygate-key-id"] {
            assert!(
                !removed.split(", ").any(|n| n == name),
                "{name} in {removed:?}"
            );
        }

        let upstream = upstream_headers(&client, &response);
        let get = |name: &str| -> Vec<&str> {
            upstream
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert!(
            upstream.iter().all(|(_, v)| v != "evil"),
            "a spoofed header reaches the upstream: {upstream:?}"
        );
        assert_eq!(get("x-keygate-tenant"), ["acme"]);
        assert_eq!(get("x-keygate-auth"), ["api_key"]);
        assert_eq!(get("x-keygate-key-id"), [key["id"].as_str().unwrap()]);
        assert!(get(credential.0).is_empty(), "the credential goes upstream");
        assert_eq!(get("accept"), ["application/json"]);
    }
}

async fn check_denials_carry_no_headers_to_remove_and_bad_paths_are_refused_like_the_filter(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let secret = key["secret"].as_str().unwrap();
    let response = check(
        &app,
        Method::GET,
        "/v1/check/x",
        &[("x-keygate-tenant", "evil")],
    )
    .await;
    assert!(response.headers().get(HEADERS_TO_REMOVE).is_none());
    assert_eq!(
        denied(response, r#"Bearer realm="keygate""#).await,
        "missing_credential"
    );

    // An encoded slash: servers disagree on it, so the filter refuses it, and so does the check.
    let response = check(
        &app,
        Method::GET,
        "/v1/check/a%2Fb",
        &[("x-api-key", secret)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "bad_path");
}

async fn check_treats_a_malformed_required_permission_as_missing_after_authenticating(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let secret = key["secret"].as_str().unwrap();
    let required = ("x-keygate-required-permissions", "orders:read, orders read");

    let response = check(
        &app,
        Method::GET,
        "/v1/check/orders",
        &[("x-api-key", secret), required],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["missing_permissions"], json!(["orders read"]));

    let never_issued = keygate_core::key::ApiKey::from_random([3; 20]);
    let response = check(
        &app,
        Method::GET,
        "/v1/check/orders",
        &[("x-api-key", never_issued.expose_secret()), required],
    )
    .await;
    assert_eq!(denied(response, INVALID_TOKEN).await, "unknown_key");
}

backend_tests!(
    check_allows_a_valid_key_with_identity_headers_on_any_method_and_path,
    check_denies_missing_malformed_unknown_revoked_and_expired_keys_with_401,
    check_answers_403_when_the_key_lacks_a_required_permission,
    check_tells_the_proxy_to_remove_spoofed_identity_and_credential_headers,
    check_denials_carry_no_headers_to_remove_and_bad_paths_are_refused_like_the_filter,
    check_treats_a_malformed_required_permission_as_missing_after_authenticating,
);
