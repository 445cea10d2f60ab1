use keygate_core::key::ApiKey;
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::Duration;

use crate::helpers::{
    backend_tests, error_code, rfc3339, spawn_app, start_time, Backend, DEFAULT_KEY_TTL_SECS,
};

async fn create_key_returns_the_secret_once_with_the_key_view(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .admin_post(
            "/v1/keys",
            &json!({"name": "ci", "tenant": "acme", "permissions": ["orders:read", "orders:*"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();

    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("key_") && id.len() == 20, "{id}");
    assert_eq!(location, format!("/v1/keys/{id}"));
    assert!(ApiKey::parse(created["secret"].as_str().unwrap()).is_ok());
    let default_expiry = start_time() + Duration::seconds(DEFAULT_KEY_TTL_SECS as i64);
    let secret = created["secret"].as_str().unwrap();
    let view = json!({
        "id": id,
        "name": "ci",
        "tenant": "acme",
        "permissions": ["orders:read", "orders:*"],
        "roles": [],
        "effective_permissions": ["orders:read", "orders:*"],
        "status": "active",
        "prefix": format!("{}…", &secret[..7]),
        "created_at": rfc3339(start_time()),
        "expires_at": rfc3339(default_expiry),
        "revoked_at": null,
        "last_used_at": null,
    });
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(without_secret, view);

    let fetched: Value = app.admin_get(&location).await.json().await.unwrap();
    assert_eq!(fetched, view);
}

async fn key_lifetime_can_be_chosen_or_unlimited(backend: Backend) {
    let app = spawn_app(backend).await;
    let short = app
        .create_key(&json!({"name": "a", "tenant": "t", "permissions": [], "expires_in_secs": 60}))
        .await;
    assert_eq!(
        short["expires_at"],
        rfc3339(start_time() + Duration::seconds(60))
    );
    let forever = app
        .create_key(&json!({"name": "b", "tenant": "t", "permissions": [], "never_expires": true}))
        .await;
    assert_eq!(forever["expires_at"], Value::Null);

    app.advance(61);
    let short: Value = app
        .admin_get(&format!("/v1/keys/{}", short["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(short["status"], "expired");
}

async fn create_rejects_invalid_fields_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let long_name = "n".repeat(201);
    let bad_bodies = [
        json!({"name": "", "tenant": "acme", "permissions": []}),
        json!({"name": long_name, "tenant": "acme", "permissions": []}),
        json!({"name": "line\nbreak", "tenant": "acme", "permissions": []}),
        json!({"name": "ci", "tenant": "", "permissions": []}),
        json!({"name": "ci", "tenant": "ac me", "permissions": []}),
        json!({"name": "ci", "tenant": "acme", "permissions": ["orders:read,admin"]}),
        json!({"name": "ci", "tenant": "acme", "permissions": [""]}),
        json!({"name": "ci", "tenant": "acme", "permissions": ["x"], "expires_in_secs": 0}),
        json!({"name": "ci", "tenant": "acme", "permissions": ["x"], "expires_in_secs": 1_000_000_000_000u64}),
        json!({"name": "ci", "tenant": "acme", "permissions": ["x"], "expires_in_secs": 5, "never_expires": true}),
        json!({"name": "ci", "tenant": "acme", "permissions": ["x"], "expires_in_secs": -5}),
        json!({"tenant": "acme", "permissions": []}),
        json!({"name": "ci", "tenant": "acme", "permissions": [], "admin": true}),
        json!(["not", "an", "object"]),
    ];
    for body in bad_bodies {
        let response = app.admin_post("/v1/keys", &body).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{body}"
        );
    }
    let list: Value = app.admin_get("/v1/keys").await.json().await.unwrap();
    assert_eq!(list, json!({"keys": []}));
}

async fn list_never_returns_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_default_key().await;
    let b = app.create_default_key().await;
    let response = app.admin_get("/v1/keys").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for key in [&a, &b] {
        let secret = key["secret"].as_str().unwrap();
        assert!(!text.contains(&secret[3..]), "list leaks a secret");
    }
    assert!(!text.contains("secret"));
    let list: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&a["id"].as_str().unwrap()) && ids.contains(&b["id"].as_str().unwrap()));
}

async fn list_filters_by_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = app
        .create_key(&json!({"name": "a", "tenant": "acme", "permissions": []}))
        .await;
    app.create_key(&json!({"name": "b", "tenant": "globex", "permissions": []}))
        .await;

    let list: Value = app
        .admin_get("/v1/keys?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["id"], acme["id"]);
    let list: Value = app
        .admin_get("/v1/keys?tenant=initech")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!({"keys": []}));

    // A misspelt filter must not silently list every tenant's keys.
    let response = app.admin_get("/v1/keys?tenat=acme").await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "bad_request"
    );
    let response = app.admin_get("/v1/keys?tenant=a%20b").await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "bad_request"
    );
}

async fn unknown_or_malformed_key_ids_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/v1/keys/key_0000000000000000",
        "/v1/keys/not-a-key-id",
        "/v1/keys/key_0000000000000000/usage",
    ] {
        let response = app.admin_get(path).await;
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "not_found",
            "{path}"
        );
    }
    for path in [
        "/v1/keys/key_0000000000000000/revoke",
        "/v1/keys/key_0000000000000000/renew",
    ] {
        let response = app.admin_post(path, &json!({})).await;
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "not_found",
            "{path}"
        );
    }
    let response = app
        .admin_post(
            "/v1/keys/key_0000000000000000/rotate",
            &json!({"grace_period_secs": 0}),
        )
        .await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

async fn revoke_is_final_and_idempotent(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let revoke = format!("/v1/keys/{}/revoke", key["id"].as_str().unwrap());

    app.advance(10);
    let response = app.admin_post(&revoke, &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let revoked: Value = response.json().await.unwrap();
    assert_eq!(revoked["status"], "revoked");
    let revoked_at = rfc3339(start_time() + Duration::seconds(10));
    assert_eq!(revoked["revoked_at"], revoked_at);

    app.advance(10);
    let again: Value = app
        .admin_post(&revoke, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "revoked");
    assert_eq!(
        again["revoked_at"], revoked_at,
        "a second revoke must keep the first time"
    );
}

async fn renew_never_unrevokes(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let id = key["id"].as_str().unwrap();
    app.admin_post(&format!("/v1/keys/{id}/revoke"), &json!({}))
        .await;

    for body in [
        json!({}),
        json!({"expires_in_secs": 3600}),
        json!({"never_expires": true}),
    ] {
        let response = app.admin_post(&format!("/v1/keys/{id}/renew"), &body).await;
        assert_eq!(error_code(response, StatusCode::CONFLICT).await, "revoked");
    }
    let response = app
        .admin_post(
            &format!("/v1/keys/{id}/rotate"),
            &json!({"grace_period_secs": 0}),
        )
        .await;
    assert_eq!(error_code(response, StatusCode::CONFLICT).await, "revoked");

    let view: Value = app
        .admin_get(&format!("/v1/keys/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "revoked");
    let answer = app.lookup(key["secret"].as_str().unwrap()).await;
    assert_eq!(answer["reason"], "revoked");
}

async fn renew_brings_an_expired_key_back_with_a_new_expiry(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app
        .create_key(
            &json!({"name": "ci", "tenant": "acme", "permissions": [], "expires_in_secs": 60}),
        )
        .await;
    let id = key["id"].as_str().unwrap();
    let secret = key["secret"].as_str().unwrap();
    app.advance(120);
    assert_eq!(app.lookup(secret).await["reason"], "expired");

    let renewed: Value = app
        .admin_post(
            &format!("/v1/keys/{id}/renew"),
            &json!({"expires_in_secs": 3600}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renewed["status"], "active");
    assert_eq!(
        renewed["expires_at"],
        rfc3339(start_time() + Duration::seconds(120 + 3600))
    );
    assert_eq!(app.lookup(secret).await["status"], "valid");

    let renewed: Value = app
        .admin_post(&format!("/v1/keys/{id}/renew"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let default_expiry = start_time() + Duration::seconds(120 + DEFAULT_KEY_TTL_SECS as i64);
    assert_eq!(renewed["expires_at"], rfc3339(default_expiry));

    let renewed: Value = app
        .admin_post(
            &format!("/v1/keys/{id}/renew"),
            &json!({"never_expires": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renewed["expires_at"], Value::Null);
}

async fn rotated_key_old_secret_valid_during_grace_then_expired(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let id = key["id"].as_str().unwrap();
    let old = key["secret"].as_str().unwrap();

    let response = app
        .admin_post(
            &format!("/v1/keys/{id}/rotate"),
            &json!({"grace_period_secs": 300}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let rotated: Value = response.json().await.unwrap();
    assert_eq!(rotated["id"], key["id"]);
    assert_eq!(rotated["status"], "active");
    let new = rotated["secret"].as_str().unwrap();
    assert!(ApiKey::parse(new).is_ok());
    assert_ne!(new, old);

    let answer = app.lookup(old).await;
    assert_eq!(answer["status"], "valid");
    assert_eq!(answer["key_id"], key["id"]);
    assert_eq!(answer["expires_at"], crate::helpers::START_UNIX + 300);
    let answer = app.lookup(new).await;
    assert_eq!(answer["status"], "valid");
    assert_eq!(
        answer["expires_at"],
        crate::helpers::START_UNIX + DEFAULT_KEY_TTL_SECS as i64
    );

    app.advance(299);
    let answer = app.lookup(old).await;
    assert_eq!(
        (answer["status"].as_str(), answer["cache_ttl_secs"].as_u64()),
        (Some("valid"), Some(1))
    );
    app.advance(1);
    assert_eq!(app.lookup(old).await["reason"], "expired");
    assert_eq!(app.lookup(new).await["status"], "valid");
}

async fn rotating_again_never_extends_an_older_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let id = key["id"].as_str().unwrap();
    let first = key["secret"].as_str().unwrap();
    let rotate = format!("/v1/keys/{id}/rotate");

    let second: Value = app
        .admin_post(&rotate, &json!({"grace_period_secs": 100}))
        .await
        .json()
        .await
        .unwrap();
    app.admin_post(&rotate, &json!({"grace_period_secs": 1000}))
        .await;
    assert_eq!(
        app.lookup(first).await["expires_at"],
        crate::helpers::START_UNIX + 100
    );
    assert_eq!(
        app.lookup(second["secret"].as_str().unwrap()).await["expires_at"],
        crate::helpers::START_UNIX + 1000
    );

    // A zero grace period retires every older secret at once.
    let fourth: Value = app
        .admin_post(&rotate, &json!({"grace_period_secs": 0}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.lookup(first).await["reason"], "expired");
    assert_eq!(
        app.lookup(second["secret"].as_str().unwrap()).await["reason"],
        "expired"
    );
    assert_eq!(
        app.lookup(fourth["secret"].as_str().unwrap()).await["status"],
        "valid"
    );

    let response = app
        .admin_post(&rotate, &json!({"grace_period_secs": 366 * 24 * 3600}))
        .await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "bad_request"
    );
    let response = app.admin_post(&rotate, &json!({})).await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "bad_request"
    );
}

async fn deleted_key_lookups_are_unknown(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let id = key["id"].as_str().unwrap();
    let rotated: Value = app
        .admin_post(
            &format!("/v1/keys/{id}/rotate"),
            &json!({"grace_period_secs": 600}),
        )
        .await
        .json()
        .await
        .unwrap();

    let response = app.admin_delete(&format!("/v1/keys/{id}")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());

    for secret in [&key["secret"], &rotated["secret"]] {
        assert_eq!(
            app.lookup(secret.as_str().unwrap()).await["reason"],
            "unknown"
        );
    }
    let response = app.admin_get(&format!("/v1/keys/{id}")).await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let response = app.admin_delete(&format!("/v1/keys/{id}")).await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

backend_tests!(
    create_key_returns_the_secret_once_with_the_key_view,
    key_lifetime_can_be_chosen_or_unlimited,
    create_rejects_invalid_fields_and_stores_nothing,
    list_never_returns_secrets,
    list_filters_by_tenant,
    unknown_or_malformed_key_ids_are_404,
    revoke_is_final_and_idempotent,
    renew_never_unrevokes,
    renew_brings_an_expired_key_back_with_a_new_expiry,
    rotated_key_old_secret_valid_during_grace_then_expired,
    rotating_again_never_extends_an_older_secret,
    deleted_key_lookups_are_unknown,
);
