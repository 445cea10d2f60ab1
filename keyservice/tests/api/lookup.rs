use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    backend_tests, error_code, spawn_app, Backend, DEFAULT_KEY_TTL_SECS, FILTER_TOKEN,
    LOOKUP_CACHE_TTL_SECS, NEGATIVE_CACHE_TTL_SECS, START_UNIX,
};

async fn valid_key_lookup_returns_identity_and_ttl(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app
        .create_key(
            &json!({"name": "ci", "tenant": "acme", "permissions": ["orders:read", "admin"]}),
        )
        .await;
    let answer = app.lookup(key["secret"].as_str().unwrap()).await;
    assert_eq!(
        answer,
        json!({
            "status": "valid",
            "key_id": key["id"],
            "tenant": "acme",
            "permissions": ["orders:read", "admin"],
            "expires_at": START_UNIX + DEFAULT_KEY_TTL_SECS as i64,
            "cache_ttl_secs": LOOKUP_CACHE_TTL_SECS,
        })
    );
}

async fn never_expiring_key_lookup_has_no_expiry(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app
        .create_key(
            &json!({"name": "ci", "tenant": "acme", "permissions": [], "never_expires": true}),
        )
        .await;
    let answer = app.lookup(key["secret"].as_str().unwrap()).await;
    assert_eq!(answer["status"], "valid");
    assert_eq!(answer["expires_at"], Value::Null);
    assert_eq!(answer["cache_ttl_secs"], LOOKUP_CACHE_TTL_SECS);
}

async fn revoked_key_lookup_is_invalid_with_reason_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    app.admin_post(
        &format!("/v1/keys/{}/revoke", key["id"].as_str().unwrap()),
        &json!({}),
    )
    .await;
    let answer = app.lookup(key["secret"].as_str().unwrap()).await;
    assert_eq!(
        answer,
        json!({"status": "invalid", "reason": "revoked", "cache_ttl_secs": NEGATIVE_CACHE_TTL_SECS})
    );
}

async fn expired_key_lookup_ttl_never_past_expiry(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app
        .create_key(
            &json!({"name": "ci", "tenant": "acme", "permissions": [], "expires_in_secs": 12}),
        )
        .await;
    let secret = key["secret"].as_str().unwrap();

    let answer = app.lookup(secret).await;
    assert_eq!(
        (answer["status"].as_str(), answer["cache_ttl_secs"].as_u64()),
        (Some("valid"), Some(12))
    );
    app.advance(5);
    assert_eq!(app.lookup(secret).await["cache_ttl_secs"], 7);
    app.advance(7);
    assert_eq!(
        app.lookup(secret).await,
        json!({"status": "invalid", "reason": "expired", "cache_ttl_secs": NEGATIVE_CACHE_TTL_SECS})
    );
}

async fn unknown_key_lookup_is_invalid_with_reason_unknown(backend: Backend) {
    let app = spawn_app(backend).await;
    let answer = app.lookup("kg_never_issued").await;
    assert_eq!(
        answer,
        json!({"status": "invalid", "reason": "unknown", "cache_ttl_secs": NEGATIVE_CACHE_TTL_SECS})
    );
}

async fn malformed_lookup_gets_json_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        json!({"key_hash": "abc"}),
        json!({}),
        json!({"key_hash": "0".repeat(64), "extra": 1}),
    ] {
        let response = app
            .client
            .post(app.url("/v1/lookup"))
            .bearer_auth(FILTER_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{body}"
        );
    }
}

backend_tests!(
    valid_key_lookup_returns_identity_and_ttl,
    never_expiring_key_lookup_has_no_expiry,
    revoked_key_lookup_is_invalid_with_reason_revoked,
    expired_key_lookup_ttl_never_past_expiry,
    unknown_key_lookup_is_invalid_with_reason_unknown,
    malformed_lookup_gets_json_400,
);
