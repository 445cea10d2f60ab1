use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    backend_tests, error_code, jwt_part, spawn_app, spawn_app_with, verify_token, Backend, Options,
    FILTER_TOKEN, ISSUER, LEAD_SECS, ROTATION_SECS, START_UNIX, TOKEN_TTL_SECS,
};

async fn token_kid(app: &crate::helpers::TestApp, client: &Value) -> String {
    let body = app.token_for(client, &[]).await;
    jwt_part(body["access_token"].as_str().unwrap(), 0)["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn jwks_publishes_the_signing_key_without_private_members(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_object().unwrap();
    let mut members: Vec<&str> = key.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"]);
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(
        key["kid"].as_str().unwrap().len(),
        43,
        "a SHA-256 thumbprint"
    );
}

async fn openid_configuration_points_at_the_token_endpoint_and_jwks(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "public, max-age=300");
        let metadata: Value = response.json().await.unwrap();
        assert_eq!(
            metadata,
            json!({
                "issuer": ISSUER,
                "jwks_uri": format!("{ISSUER}/.well-known/jwks.json"),
                "token_endpoint": format!("{ISSUER}/oauth/token"),
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "id_token_signing_alg_values_supported": ["EdDSA"],
            }),
            "{path}"
        );
    }
}

async fn signing_keys_survive_restart(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin_secret = app.admin_secret.clone();
    let client = app.create_default_client().await;
    let kids = app.published_kids().await;
    let token = app.token_for(&client, &[]).await;
    let data_dir = app.stop().await;

    let mut app = spawn_app_with(
        backend,
        Options {
            database: Some(data_dir),
            ..Options::default()
        },
    )
    .await;
    app.admin_secret = admin_secret;
    assert_eq!(app.published_kids().await, kids);
    assert_eq!(token_kid(&app, &client).await, kids[0]);
    // A token issued before the restart still verifies against the JWKS served after it.
    verify_token(
        token["access_token"].as_str().unwrap(),
        &app.jwks().await,
        START_UNIX,
    )
    .unwrap();
}

async fn scheduled_rotation_pre_publishes_switches_then_retires_the_old_key(backend: Backend) {
    let app = spawn_app(backend).await;
    // Outlives a rotation period (the default client expires after 15 days).
    let client = app
        .create_client(&json!({
            "name": "long-lived", "tenant": "acme", "permissions": [], "never_expires": true,
        }))
        .await;
    let first = app.published_kids().await;
    assert_eq!(first.len(), 1);

    // Due: the successor is published a full lead before it signs.
    let takeover = ROTATION_SECS as i64;
    app.advance(takeover - LEAD_SECS);
    app.check_signing_keys().await;
    let both = app.published_kids().await;
    assert_eq!(both.len(), 2);
    assert_eq!(both[0], first[0]);
    let old_token = app.token_for(&client, &[]).await;
    assert_eq!(token_kid(&app, &client).await, first[0]);

    // At the takeover the new key signs, by the clock alone.
    app.advance(LEAD_SECS);
    assert_eq!(token_kid(&app, &client).await, both[1]);
    app.check_signing_keys().await;
    assert_eq!(app.published_kids().await, both);
    // The JWKS served now still verifies a token the old key signed (checked within its life).
    verify_token(
        old_token["access_token"].as_str().unwrap(),
        &app.jwks().await,
        START_UNIX + takeover - LEAD_SECS,
    )
    .unwrap();

    // Once the old key's last token has expired (TTL + skew after its last signature), it goes.
    app.advance(LEAD_SECS - 1);
    app.check_signing_keys().await;
    assert_eq!(app.published_kids().await, both);
    app.advance(1);
    app.check_signing_keys().await;
    assert_eq!(app.published_kids().await, [both[1].clone()]);
}

async fn forced_rotation_signs_with_a_new_key_at_once_and_keeps_the_old_one_published(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let old_token = app.token_for(&client, &[]).await;
    let old_kid = app.published_kids().await.remove(0);

    let response = app
        .client
        .post(app.url("/v1/signing-keys/rotate"))
        .bearer_auth(FILTER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );

    let response = app.admin_post("/v1/signing-keys/rotate", &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = response.json().await.unwrap();
    let keys = listed["signing_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], old_kid.as_str());
    assert_eq!(keys[0]["status"], "retiring");
    assert_eq!(
        keys[0]["retires_at"],
        crate::helpers::rfc3339(crate::helpers::start_time() + time::Duration::seconds(LEAD_SECS))
    );
    assert_eq!(keys[1]["status"], "active");
    assert_eq!(keys[1]["alg"], "EdDSA");
    let new_kid = keys[1]["kid"].as_str().unwrap();

    assert_eq!(token_kid(&app, &client).await, new_kid);
    assert_eq!(app.published_kids().await, [old_kid.as_str(), new_kid]);
    verify_token(
        old_token["access_token"].as_str().unwrap(),
        &app.jwks().await,
        START_UNIX,
    )
    .unwrap();

    app.advance(TOKEN_TTL_SECS as i64 + 60);
    app.check_signing_keys().await;
    assert_eq!(app.published_kids().await, [new_kid]);
    let listed: Value = app
        .admin_get("/v1/signing-keys")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["signing_keys"].as_array().unwrap().len(), 1);
}

backend_tests!(
    jwks_publishes_the_signing_key_without_private_members,
    openid_configuration_points_at_the_token_endpoint_and_jwks,
    signing_keys_survive_restart,
    scheduled_rotation_pre_publishes_switches_then_retires_the_old_key,
    forced_rotation_signs_with_a_new_key_at_once_and_keeps_the_old_one_published,
);
