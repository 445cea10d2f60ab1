use reqwest::StatusCode;
use serde_json::{json, Value};
use time::Duration;

use crate::helpers::{
    backend_tests, error_code, oauth_error, rfc3339, spawn_app, start_time, Backend,
    DEFAULT_KEY_TTL_SECS, FILTER_TOKEN,
};

async fn create_client_returns_the_secret_once_with_the_client_view(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .admin_post(
            "/v1/clients",
            &json!({"name": "billing", "tenant": "acme", "permissions": ["orders:read", "orders:*"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();

    let id = created["client_id"].as_str().unwrap();
    assert!(id.starts_with("kgc_") && id.len() == 20, "{id}");
    assert_eq!(location, format!("/v1/clients/{id}"));
    let secret = created["client_secret"].as_str().unwrap();
    assert!(
        secret.starts_with("kgcs_") && secret.len() == 69,
        "{secret}"
    );
    let default_expiry = start_time() + Duration::seconds(DEFAULT_KEY_TTL_SECS as i64);
    let view = json!({
        "client_id": id,
        "name": "billing",
        "tenant": "acme",
        "permissions": ["orders:read", "orders:*"],
        "roles": [],
        "effective_permissions": ["orders:read", "orders:*"],
        "status": "active",
        "prefix": format!("{}…", &created["client_secret"].as_str().unwrap()[..9]),
        "created_at": rfc3339(start_time()),
        "expires_at": rfc3339(default_expiry),
        "revoked_at": null,
        "last_used_at": null,
    });
    let mut without_secret = created.clone();
    without_secret
        .as_object_mut()
        .unwrap()
        .remove("client_secret");
    assert_eq!(without_secret, view);

    let fetched: Value = app.admin_get(&location).await.json().await.unwrap();
    assert_eq!(fetched, view);
}

async fn create_client_rejects_invalid_fields_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let bad_bodies = [
        json!({"name": "", "tenant": "acme", "permissions": []}),
        json!({"name": "ci", "tenant": "ac me", "permissions": []}),
        json!({"name": "ci", "tenant": "acme", "permissions": ["a b"]}),
        json!({"name": "ci", "tenant": "acme", "permissions": [], "expires_in_secs": 0}),
        json!({"name": "ci", "tenant": "acme", "permissions": [], "expires_in_secs": 5, "never_expires": true}),
        json!({"tenant": "acme", "permissions": []}),
        json!({"name": "ci", "tenant": "acme", "permissions": [], "client_secret": "mine"}),
    ];
    for body in bad_bodies {
        let response = app.admin_post("/v1/clients", &body).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{body}"
        );
    }
    let list: Value = app.admin_get("/v1/clients").await.json().await.unwrap();
    assert_eq!(list, json!({"clients": []}));
}

async fn list_clients_filters_by_tenant_and_never_returns_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_default_client().await;
    // Listed oldest first; within one second, by id.
    app.advance(1);
    let b = app
        .create_client(&json!({"name": "other", "tenant": "globex", "permissions": []}))
        .await;

    let response = app.admin_get("/v1/clients").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains("secret"), "{text}");
    for client in [&a, &b] {
        assert!(!text.contains(&client["client_secret"].as_str().unwrap()[5..]));
    }
    let all: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&Value> = all["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["client_id"])
        .collect();
    assert_eq!(ids, [&a["client_id"], &b["client_id"]]);

    let globex: Value = app
        .admin_get("/v1/clients?tenant=globex")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(globex["clients"].as_array().unwrap().len(), 1);
    assert_eq!(globex["clients"][0]["client_id"], b["client_id"]);
    let response = app.admin_get("/v1/clients?tenant=bad%20tenant").await;
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "bad_request"
    );
}

async fn unknown_or_malformed_client_ids_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/v1/clients/kgc_0000000000000000",
        "/v1/clients/key_0000000000000000",
        "/v1/clients/nope",
    ] {
        let response = app.admin_get(path).await;
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "not_found",
            "{path}"
        );
    }
    let response = app
        .admin_post("/v1/clients/kgc_0000000000000000/revoke", &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .admin_post(
            "/v1/clients/kgc_0000000000000000/rotate",
            &json!({"grace_period_secs": 0}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app.admin_delete("/v1/clients/kgc_0000000000000000").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

async fn revoked_client_stays_revoked_and_cannot_rotate(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let id = client["client_id"].as_str().unwrap();

    let revoked: Value = app
        .admin_post(&format!("/v1/clients/{id}/revoke"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revoked_at"], rfc3339(start_time()));

    app.advance(10);
    let again: Value = app
        .admin_post(&format!("/v1/clients/{id}/revoke"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["revoked_at"], rfc3339(start_time()));

    let response = app
        .admin_post(
            &format!("/v1/clients/{id}/rotate"),
            &json!({"grace_period_secs": 60}),
        )
        .await;
    assert_eq!(error_code(response, StatusCode::CONFLICT).await, "revoked");
}

async fn rotated_client_secret_old_one_works_during_grace_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let id = client["client_id"].as_str().unwrap();
    let old = client["client_secret"].as_str().unwrap();

    let response = app
        .admin_post(
            &format!("/v1/clients/{id}/rotate"),
            &json!({"grace_period_secs": 120}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let rotated: Value = response.json().await.unwrap();
    assert_eq!(rotated["client_id"], client["client_id"]);
    let new = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new, old);

    let grant = [("grant_type", "client_credentials")];
    for secret in [old, new] {
        let response = app.token_request(Some((id, secret)), &grant).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    app.advance(120);
    let response = app.token_request(Some((id, old)), &grant).await;
    assert_eq!(
        oauth_error(response, StatusCode::UNAUTHORIZED).await,
        "invalid_client"
    );
    let response = app.token_request(Some((id, new)), &grant).await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn deleted_client_is_gone_and_its_secret_authenticates_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let id = client["client_id"].as_str().unwrap();

    let response = app.admin_delete(&format!("/v1/clients/{id}")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app.admin_get(&format!("/v1/clients/{id}")).await;
    assert_eq!(
        error_code(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let response = app
        .token_request(
            Some((id, client["client_secret"].as_str().unwrap())),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(
        oauth_error(response, StatusCode::UNAUTHORIZED).await,
        "invalid_client"
    );
}

async fn client_endpoints_need_the_admin_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let id = client["client_id"].as_str().unwrap();
    let requests = [
        app.client.get(app.url("/v1/clients")),
        app.client
            .post(app.url("/v1/clients"))
            .json(&json!({"name": "x", "tenant": "t", "permissions": []})),
        app.client.get(app.url(&format!("/v1/clients/{id}"))),
        app.client
            .post(app.url(&format!("/v1/clients/{id}/revoke"))),
        app.client
            .post(app.url(&format!("/v1/clients/{id}/rotate")))
            .json(&json!({"grace_period_secs": 0})),
        app.client.delete(app.url(&format!("/v1/clients/{id}"))),
    ];
    for request in requests {
        let response = request.bearer_auth(FILTER_TOKEN).send().await.unwrap();
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized"
        );
    }
    let view: Value = app
        .admin_get(&format!("/v1/clients/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "active");
}

// SQLite only: it reads the database's files.
#[tokio::test]
async fn database_holds_no_raw_client_secret() {
    let app = spawn_app(Backend::Sqlite).await;
    let client = app.create_default_client().await;
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    let db_path = app.db_path();
    let _dir = app.stop().await;
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(content) = std::fs::read(format!("{}{suffix}", db_path.display())) {
            bytes.extend(content);
        }
    }
    let random = &secret.as_bytes()[5..];
    assert!(!bytes.windows(random.len()).any(|w| w == random));
    let id = client["client_id"].as_str().unwrap().as_bytes();
    assert!(bytes.windows(id.len()).any(|w| w == id), "sanity");
}

backend_tests!(
    create_client_returns_the_secret_once_with_the_client_view,
    create_client_rejects_invalid_fields_and_stores_nothing,
    list_clients_filters_by_tenant_and_never_returns_secrets,
    unknown_or_malformed_client_ids_are_404,
    revoked_client_stays_revoked_and_cannot_rotate,
    rotated_client_secret_old_one_works_during_grace_only,
    deleted_client_is_gone_and_its_secret_authenticates_nothing,
    client_endpoints_need_the_admin_secret,
);
