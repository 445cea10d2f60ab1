//! Roles: named permission sets of a tenant, held by keys, clients and tenant admins.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{backend_tests, error_code, spawn_app, Backend};

async fn a_keys_lookup_carries_its_roles_permissions_and_an_edit_changes_them_at_once(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let role = app.create_role("acme", "reader", &["orders:read"]).await;
    assert_eq!(role["tenant"], "acme");
    assert!(role["id"].as_str().unwrap().starts_with("rol_"));
    let key = app
        .create_key(
            &json!({"name": "ci", "tenant": "acme", "permissions": ["audit"], "roles": ["reader"]}),
        )
        .await;
    assert_eq!(key["roles"], json!(["reader"]));
    assert_eq!(key["permissions"], json!(["audit"]));
    assert_eq!(
        key["effective_permissions"],
        json!(["audit", "orders:read"])
    );
    let secret = key["secret"].as_str().unwrap();
    assert_eq!(
        app.lookup(secret).await["permissions"],
        json!(["audit", "orders:read"])
    );

    let cursor = app.change_cursor().await;
    let path = format!("/v1/roles/{}", role["id"].as_str().unwrap());
    let response = app
        .call(
            &app.admin_secret,
            Method::PUT,
            &path,
            Some(&json!({"description": "reads and writes", "permissions": ["orders:read", "orders:write"]})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(
        updated["permissions"],
        json!(["orders:read", "orders:write"])
    );
    assert_eq!(updated["description"], "reads and writes");

    // At once in lookups...
    assert_eq!(
        app.lookup(secret).await["permissions"],
        json!(["audit", "orders:read", "orders:write"])
    );
    // ...and in the change feed, so filters drop what they cached.
    let changes = app.changes(Some(&cursor), "").await;
    let hash = keygate_core::key::KeyHash::of(secret.as_bytes()).to_hex();
    assert_eq!(changes["changes"], json!([hash]), "{changes}");

    // A key without the role is not in the feed; a role edit with no key holder logs nothing.
    let cursor = app.change_cursor().await;
    let lonely = app.create_role("acme", "lonely", &["x"]).await;
    let response = app
        .call(
            &app.admin_secret,
            Method::PUT,
            &format!("/v1/roles/{}", lonely["id"].as_str().unwrap()),
            Some(&json!({"description": "", "permissions": ["y"]})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.changes(Some(&cursor), "").await["changes"], json!([]));
}

async fn a_clients_tokens_carry_its_roles_permissions(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_role("acme", "billing", &["invoices:read"]).await;
    let client = app
        .create_client(
            &json!({"name": "billing", "tenant": "acme", "permissions": [], "roles": ["billing"]}),
        )
        .await;
    assert_eq!(client["effective_permissions"], json!(["invoices:read"]));
    let token = app.token_for(&client, &[]).await;
    assert_eq!(token["scope"], "invoices:read");
    let narrowed = app.token_for(&client, &[("scope", "invoices:read")]).await;
    assert_eq!(narrowed["scope"], "invoices:read");
}

async fn roles_must_exist_in_the_credentials_own_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_role("globex", "reader", &["orders:read"]).await;
    for body in [
        json!({"name": "ci", "tenant": "acme", "permissions": [], "roles": ["reader"]}),
        json!({"name": "ci", "tenant": "acme", "permissions": [], "roles": ["nope"]}),
        json!({"name": "ci", "tenant": "acme", "permissions": [], "roles": ["bad name"]}),
        json!({"name": "ci", "tenant": "acme", "permissions": [], "roles": "reader"}),
    ] {
        for path in ["/v1/keys", "/v1/clients"] {
            let response = app.admin_post(path, &body).await;
            assert_eq!(
                error_code(response, StatusCode::BAD_REQUEST).await,
                "bad_request",
                "{path} {body}"
            );
        }
    }
    let keys: Value = app.admin_get("/v1/keys").await.json().await.unwrap();
    assert_eq!(keys["keys"], json!([]));
    let clients: Value = app.admin_get("/v1/clients").await.json().await.unwrap();
    assert_eq!(clients["clients"], json!([]));
}

async fn a_held_role_cannot_be_deleted_and_409_names_its_holders(backend: Backend) {
    let app = spawn_app(backend).await;
    let role = app.create_role("acme", "reader", &["orders:read"]).await;
    let path = format!("/v1/roles/{}", role["id"].as_str().unwrap());
    let key = app
        .create_key(
            &json!({"name": "ci key", "tenant": "acme", "permissions": [], "roles": ["reader"]}),
        )
        .await;
    let client = app
        .create_client(
            &json!({"name": "ci client", "tenant": "acme", "permissions": [], "roles": ["reader"]}),
        )
        .await;

    let response = app.admin_delete(&path).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "role_in_use");
    let mut holders = body["holders"].as_array().unwrap().clone();
    holders.sort_by_key(|h| h["type"].as_str().unwrap().to_owned());
    assert_eq!(
        holders,
        [
            json!({"type": "client", "id": client["client_id"], "name": "ci client"}),
            json!({"type": "key", "id": key["id"], "name": "ci key"}),
        ]
    );
    assert_eq!(app.admin_get(&path).await.status(), StatusCode::OK);

    // Deleting the holders frees the role.
    let key_path = format!("/v1/keys/{}", key["id"].as_str().unwrap());
    assert_eq!(
        app.admin_delete(&key_path).await.status(),
        StatusCode::NO_CONTENT
    );
    let client_path = format!("/v1/clients/{}", client["client_id"].as_str().unwrap());
    assert_eq!(
        app.admin_delete(&client_path).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.admin_delete(&path).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        error_code(app.admin_get(&path).await, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

async fn role_names_are_unique_per_tenant_and_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_role("acme", "reader", &["orders:read"]).await;
    app.create_role("globex", "reader", &["orders:read"]).await;
    let again = app
        .admin_post(
            "/v1/roles",
            &json!({"tenant": "acme", "name": "reader", "permissions": []}),
        )
        .await;
    assert_eq!(error_code(again, StatusCode::CONFLICT).await, "conflict");
    for body in [
        json!({"tenant": "acme", "name": "", "permissions": []}),
        json!({"tenant": "acme", "name": "a b", "permissions": []}),
        json!({"tenant": "acme", "name": "ok", "permissions": ["a b"]}),
        json!({"tenant": "acme", "name": "ok", "description": "x\u{202e}y", "permissions": []}),
        json!({"tenant": "ac me", "name": "ok", "permissions": []}),
        json!({"tenant": "acme", "name": "ok"}),
    ] {
        let response = app.admin_post("/v1/roles", &body).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{body}"
        );
    }
    let listed: Value = app
        .admin_get("/v1/roles?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["reader"]);
    let all: Value = app.admin_get("/v1/roles").await.json().await.unwrap();
    assert_eq!(all["roles"].as_array().unwrap().len(), 2);
    for missing in ["/v1/roles/rol_0000000000000000", "/v1/roles/nope"] {
        assert_eq!(
            error_code(app.admin_get(missing).await, StatusCode::NOT_FOUND).await,
            "not_found"
        );
    }
}

backend_tests!(
    a_keys_lookup_carries_its_roles_permissions_and_an_edit_changes_them_at_once,
    a_clients_tokens_carry_its_roles_permissions,
    roles_must_exist_in_the_credentials_own_tenant,
    a_held_role_cannot_be_deleted_and_409_names_its_holders,
    role_names_are_unique_per_tenant_and_checked,
);
