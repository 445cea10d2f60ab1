use keygate_core::key::KeyHash;
use keygate_core::wire::MAX_LOOKUP_BATCH;
use keygate_keyservice::keys::KeyId;
use keygate_keyservice::store::KeyStore;
use reqwest::{Response, StatusCode};
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
    let bodies = [
        json!({"key_hash": "abc"}),
        json!({}),
        json!({"key_hash": "0".repeat(64), "extra": 1}),
    ];
    assert_each_is_a_400(&app, "/v1/lookup", &bodies).await;
}

/// Each of `bodies`, posted to `path` with the filter token, gets a JSON 400 `bad_request`.
async fn assert_each_is_a_400(app: &crate::helpers::TestApp, path: &str, bodies: &[Value]) {
    for body in bodies {
        let response = app
            .client
            .post(app.url(path))
            .bearer_auth(FILTER_TOKEN)
            .json(body)
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

/// The secrets of, in order: a valid key, a revoked key, an expired key, a key rotated with a
/// grace period (its old secret, then its new one), and a never-issued key; created on `app`,
/// with the clock moved past the expired key's expiry.
async fn keys_in_every_state(app: &crate::helpers::TestApp) -> [String; 6] {
    let secret = |key: &Value| key["secret"].as_str().unwrap().to_owned();
    let valid = app.create_default_key().await;
    let revoked = app.create_default_key().await;
    let revoke = format!("/v1/keys/{}/revoke", revoked["id"].as_str().unwrap());
    assert_eq!(
        app.admin_post(&revoke, &json!({})).await.status(),
        StatusCode::OK
    );
    let expiring = app
        .create_key(
            &json!({"name": "ci", "tenant": "acme", "permissions": [], "expires_in_secs": 12}),
        )
        .await;
    let rotated = app
        .create_key(&json!({"name": "ci", "tenant": "acme", "permissions": ["orders:write"]}))
        .await;
    let rotate = format!("/v1/keys/{}/rotate", rotated["id"].as_str().unwrap());
    let response = app
        .admin_post(&rotate, &json!({"grace_period_secs": 60}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let new_secret: Value = response.json().await.unwrap();
    app.advance(12);
    [
        secret(&valid),
        secret(&revoked),
        secret(&expiring),
        secret(&rotated),
        secret(&new_secret),
        "kg_never_issued".to_owned(),
    ]
}

async fn a_batch_answers_each_hash_as_a_single_lookup_does(backend: Backend) {
    let app = spawn_app(backend).await;
    let [valid, revoked, expired, old_secret, new_secret, unknown] =
        keys_in_every_state(&app).await;
    // Repeats, of a known key and of an unknown one, are answered in each place.
    let batch = [
        &valid,
        &revoked,
        &expired,
        &unknown,
        &valid,
        &old_secret,
        &unknown,
        &new_secret,
    ]
    .map(String::as_str);

    let answers = app.lookup_batch(&batch).await;
    let mut singles = Vec::new();
    for secret in batch {
        singles.push(app.lookup(secret).await);
    }
    assert_eq!(answers, singles);
    let outcomes: Vec<&str> = answers
        .iter()
        .map(|a| a["reason"].as_str().or(a["status"].as_str()).unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["valid", "revoked", "expired", "unknown", "valid", "valid", "unknown", "valid"]
    );
    // The old secret is valid until its grace period ends, 60 s after the rotation.
    assert_eq!(answers[5]["expires_at"], START_UNIX + 60);
    assert_eq!(answers[5]["key_id"], answers[7]["key_id"]);
}

/// The 400 body of a refused batch, checked to be the service's error shape.
async fn bad_request_message(response: Response) -> String {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "bad_request", "{body}");
    body["message"].as_str().unwrap().to_owned()
}

async fn a_batch_of_no_hashes_or_more_than_the_most_is_a_400_naming_key_hashes(backend: Backend) {
    let app = spawn_app(backend).await;
    let hashes = |n: usize| -> Value {
        (0..n)
            .map(|i| KeyHash::of(format!("kg_{i}").as_bytes()).to_hex())
            .collect()
    };
    for n in [0, MAX_LOOKUP_BATCH + 1] {
        let response = app.lookup_batch_raw(FILTER_TOKEN, hashes(n)).await;
        let message = bad_request_message(response).await;
        assert!(message.contains("`key_hashes`"), "{n} hashes: {message}");
    }
    // The most is allowed.
    let response = app
        .lookup_batch_raw(FILTER_TOKEN, hashes(MAX_LOOKUP_BATCH))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["answers"].as_array().unwrap().len(), MAX_LOOKUP_BATCH);

    // Malformed bodies are refused like on /v1/lookup.
    let bodies = [
        json!({"key_hashes": ["abc"]}),
        json!({"key_hashes": "0".repeat(64)}),
        json!({}),
        json!({"key_hash": "0".repeat(64)}),
        json!({"key_hashes": ["0".repeat(64)], "extra": 1}),
    ];
    assert_each_is_a_400(&app, "/v1/lookups", &bodies).await;
}

async fn a_batch_needs_the_filter_token_and_refuses_the_admin_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let hashes = json!([KeyHash::of(key["secret"].as_str().unwrap().as_bytes()).to_hex()]);

    let response = app
        .client
        .post(app.url("/v1/lookups"))
        .json(&json!({ "key_hashes": hashes }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response, StatusCode::UNAUTHORIZED).await,
        "unauthorized",
        "no token"
    );
    for token in ["wrong-token", app.admin_secret.as_str()] {
        let response = app.lookup_batch_raw(token, hashes.clone()).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"keygate-keyservice\""
        );
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized"
        );
    }
    // The token is checked before the body: a malformed one is still a 401.
    let response = app.lookup_batch_raw("wrong-token", json!([])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// The store's batch read, on its own: each place holds what `find_secret` finds for its hash.
async fn find_secrets_finds_what_find_secret_finds_in_the_order_asked(backend: Backend) {
    let app = spawn_app(backend).await;
    let [valid, revoked, expired, old_secret, new_secret, unknown] =
        keys_in_every_state(&app).await;
    let database = app.stop().await;
    let store = KeyStore::open(&database.database()).await.unwrap();

    let hashes: Vec<KeyHash> = [
        &unknown,
        &new_secret,
        &valid,
        &revoked,
        &unknown,
        &expired,
        &old_secret,
        &valid,
    ]
    .iter()
    .map(|s| KeyHash::of(s.as_bytes()))
    .collect();
    let found = store.find_secrets::<KeyId>(&hashes).await.unwrap();
    assert_eq!(found.len(), hashes.len());
    for (hash, found) in hashes.iter().zip(&found) {
        assert_eq!(
            found,
            &store.find_secret::<KeyId>(hash).await.unwrap(),
            "{}",
            hash.short()
        );
    }
    let known: Vec<bool> = found.iter().map(Option::is_some).collect();
    assert_eq!(known, [false, true, true, true, false, true, true, true]);
    assert_eq!(found[2], found[7]);
    assert!(store.find_secrets::<KeyId>(&[]).await.unwrap().is_empty());
}

backend_tests!(
    valid_key_lookup_returns_identity_and_ttl,
    never_expiring_key_lookup_has_no_expiry,
    revoked_key_lookup_is_invalid_with_reason_revoked,
    expired_key_lookup_ttl_never_past_expiry,
    unknown_key_lookup_is_invalid_with_reason_unknown,
    malformed_lookup_gets_json_400,
    a_batch_answers_each_hash_as_a_single_lookup_does,
    a_batch_of_no_hashes_or_more_than_the_most_is_a_400_naming_key_hashes,
    a_batch_needs_the_filter_token_and_refuses_the_admin_secret,
    find_secrets_finds_what_find_secret_finds_in_the_order_asked,
);
