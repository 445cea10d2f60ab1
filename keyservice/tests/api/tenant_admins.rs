//! Tenant admins: credentials the super-admin issues, which manage one tenant and hand out no
//! more than they hold. Every cross-tenant and escalation attempt here must fail, and leave the
//! other tenant's records as they were.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{backend_tests, error_code, spawn_app, Backend, TestApp};

/// An acme tenant admin holding `orders:read` directly and `orders:write` through role `ops`,
/// with a globex key, client and role beside it. Returns (its secret, the globex key, the globex
/// client, the globex role).
async fn acme_admin_beside_globex(app: &TestApp) -> (String, Value, Value, Value) {
    app.create_role("acme", "ops", &["orders:write"]).await;
    let admin = app
        .create_tenant_admin(&json!({"name": "acme ops", "tenant": "acme", "permissions": ["orders:read"], "roles": ["ops"]}))
        .await;
    let secret = admin["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("kgta_"), "{secret}");
    assert!(admin["id"].as_str().unwrap().starts_with("kta_"));
    assert_eq!(
        admin["effective_permissions"],
        json!(["orders:read", "orders:write"])
    );
    let key = app
        .create_key(
            &json!({"name": "globex key", "tenant": "globex", "permissions": ["orders:read"]}),
        )
        .await;
    let client = app
        .create_client(
            &json!({"name": "globex client", "tenant": "globex", "permissions": ["orders:read"]}),
        )
        .await;
    let role = app.create_role("globex", "reader", &["orders:read"]).await;
    (secret, key, client, role)
}

async fn status(
    app: &TestApp,
    secret: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> StatusCode {
    app.call(secret, method, path, body.as_ref()).await.status()
}

async fn me_says_who_a_secret_belongs_to_and_what_it_may_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let (secret, ..) = acme_admin_beside_globex(&app).await;
    let me: Value = app.admin_get("/v1/me").await.json().await.unwrap();
    assert_eq!(
        me,
        json!({"kind": "super_admin", "id": null, "name": null, "tenant": null, "roles": [], "permissions": null})
    );
    let response = app.call(&secret, Method::GET, "/v1/me", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["kind"], "tenant_admin");
    assert_eq!(me["tenant"], "acme");
    assert_eq!(me["roles"], json!(["ops"]));
    assert_eq!(me["permissions"], json!(["orders:read", "orders:write"]));
    let wrong = app.call("kgta_0000", Method::GET, "/v1/me", None).await;
    assert_eq!(
        error_code(wrong, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
}

async fn another_tenants_records_do_not_exist_for_a_tenant_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    let (secret, key, client, role) = acme_admin_beside_globex(&app).await;
    let own = app
        .create_key(&json!({"name": "acme key", "tenant": "acme", "permissions": ["orders:read"]}))
        .await;

    // Lists are its own tenant's, whatever it asks for.
    let keys: Value = app
        .call(&secret, Method::GET, "/v1/keys", None)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&Value> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["id"])
        .collect();
    assert_eq!(ids, [&own["id"]]);
    for path in [
        "/v1/keys?tenant=acme",
        "/v1/clients",
        "/v1/roles",
        "/v1/audit",
    ] {
        assert_eq!(
            status(&app, &secret, Method::GET, path, None).await,
            StatusCode::OK,
            "{path}"
        );
    }
    let clients: Value = app
        .call(&secret, Method::GET, "/v1/clients", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(clients["clients"], json!([]));
    let roles: Value = app
        .call(&secret, Method::GET, "/v1/roles", None)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&Value> = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["name"])
        .collect();
    assert_eq!(names, [&json!("ops")]);
    for path in [
        "/v1/keys?tenant=globex",
        "/v1/clients?tenant=globex",
        "/v1/roles?tenant=globex",
        "/v1/audit?tenant=globex",
    ] {
        let response = app.call(&secret, Method::GET, path, None).await;
        assert_eq!(
            error_code(response, StatusCode::FORBIDDEN).await,
            "forbidden",
            "{path}"
        );
    }

    // Another tenant's ids answer 404 for every verb, as ids that exist nowhere do.
    let key_id = key["id"].as_str().unwrap();
    let client_id = client["client_id"].as_str().unwrap();
    let role_id = role["id"].as_str().unwrap();
    let attempts = [
        (Method::GET, format!("/v1/keys/{key_id}"), None),
        (Method::GET, format!("/v1/keys/{key_id}/usage"), None),
        (Method::POST, format!("/v1/keys/{key_id}/revoke"), None),
        (
            Method::POST,
            format!("/v1/keys/{key_id}/renew"),
            Some(json!({"never_expires": true})),
        ),
        (
            Method::POST,
            format!("/v1/keys/{key_id}/rotate"),
            Some(json!({"grace_period_secs": 0})),
        ),
        (Method::DELETE, format!("/v1/keys/{key_id}"), None),
        (Method::GET, format!("/v1/clients/{client_id}"), None),
        (
            Method::POST,
            format!("/v1/clients/{client_id}/revoke"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/clients/{client_id}/rotate"),
            Some(json!({"grace_period_secs": 0})),
        ),
        (Method::DELETE, format!("/v1/clients/{client_id}"), None),
        (Method::GET, format!("/v1/roles/{role_id}"), None),
        (
            Method::PUT,
            format!("/v1/roles/{role_id}"),
            Some(json!({"description": "", "permissions": []})),
        ),
        (Method::DELETE, format!("/v1/roles/{role_id}"), None),
    ];
    for (method, path, body) in attempts {
        let response = app
            .call(&secret, method.clone(), &path, body.as_ref())
            .await;
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "not_found",
            "{method} {path}"
        );
    }
    // ...and nothing changed.
    let after: Value = app
        .admin_get(&format!("/v1/keys/{key_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["status"], "active");
    assert_eq!(after["prefix"], key["prefix"]);
    assert_eq!(
        app.lookup(key["secret"].as_str().unwrap()).await["status"],
        "valid"
    );
    let role_after: Value = app
        .admin_get(&format!("/v1/roles/{role_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(role_after["permissions"], json!(["orders:read"]));
    app.token_for(&client, &[]).await;

    // Nor can it create anything in another tenant.
    for (path, body) in [
        (
            "/v1/keys",
            json!({"name": "x", "tenant": "globex", "permissions": []}),
        ),
        (
            "/v1/clients",
            json!({"name": "x", "tenant": "globex", "permissions": []}),
        ),
        (
            "/v1/roles",
            json!({"tenant": "globex", "name": "x", "permissions": []}),
        ),
    ] {
        let response = app.call(&secret, Method::POST, path, Some(&body)).await;
        assert_eq!(
            error_code(response, StatusCode::FORBIDDEN).await,
            "forbidden",
            "{path}"
        );
    }
    let globex: Value = app
        .admin_get("/v1/keys?tenant=globex")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(globex["keys"].as_array().unwrap().len(), 1);
}

async fn a_tenant_admin_grants_only_what_it_holds(backend: Backend) {
    let app = spawn_app(backend).await;
    let (secret, ..) = acme_admin_beside_globex(&app).await;
    app.create_role("acme", "everything", &["orders:read", "admin"])
        .await;
    app.create_role("acme", "writer", &["orders:write"]).await;

    // Within its own rights: created, direct or through a role.
    for (path, body) in [
        (
            "/v1/keys",
            json!({"name": "a", "tenant": "acme", "permissions": ["orders:read"]}),
        ),
        (
            "/v1/keys",
            json!({"name": "b", "tenant": "acme", "permissions": [], "roles": ["writer", "ops"]}),
        ),
        (
            "/v1/clients",
            json!({"name": "c", "tenant": "acme", "permissions": ["orders:write"]}),
        ),
        (
            "/v1/roles",
            json!({"tenant": "acme", "name": "mine", "permissions": ["orders:read"]}),
        ),
    ] {
        let response = app.call(&secret, Method::POST, path, Some(&body)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{path} {body}");
    }

    // Above them: refused, naming what it lacks, and nothing stored.
    let keys_before: Value = app.admin_get("/v1/keys").await.json().await.unwrap();
    for (path, body, lacking) in [
        (
            "/v1/keys",
            json!({"name": "x", "tenant": "acme", "permissions": ["orders:delete"]}),
            "orders:delete",
        ),
        (
            "/v1/keys",
            json!({"name": "x", "tenant": "acme", "permissions": ["*"]}),
            "*",
        ),
        (
            "/v1/keys",
            json!({"name": "x", "tenant": "acme", "permissions": ["orders:*"]}),
            "orders:*",
        ),
        (
            "/v1/keys",
            json!({"name": "x", "tenant": "acme", "permissions": [], "roles": ["everything"]}),
            "admin",
        ),
        (
            "/v1/clients",
            json!({"name": "x", "tenant": "acme", "permissions": ["admin"]}),
            "admin",
        ),
        (
            "/v1/roles",
            json!({"tenant": "acme", "name": "up", "permissions": ["admin"]}),
            "admin",
        ),
    ] {
        let response = app.call(&secret, Method::POST, path, Some(&body)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path} {body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "forbidden");
        assert!(
            answer["message"].as_str().unwrap().contains(lacking),
            "{answer}"
        );
    }
    let keys_after: Value = app.admin_get("/v1/keys").await.json().await.unwrap();
    assert_eq!(keys_before, keys_after);
    let roles: Value = app
        .admin_get("/v1/roles?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    assert!(!roles.to_string().contains("\"up\""));

    // Nor by editing a role: not even the one it holds itself.
    let all: Value = app
        .admin_get("/v1/roles?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    let ops = all["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ops")
        .unwrap();
    let ops_path = format!("/v1/roles/{}", ops["id"].as_str().unwrap());
    let response = app
        .call(
            &secret,
            Method::PUT,
            &ops_path,
            Some(&json!({"description": "", "permissions": ["orders:write", "admin"]})),
        )
        .await;
    assert_eq!(
        error_code(response, StatusCode::FORBIDDEN).await,
        "forbidden"
    );
    let me: Value = app
        .call(&secret, Method::GET, "/v1/me", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["permissions"], json!(["orders:read", "orders:write"]));
}

async fn a_tenant_admin_cannot_renew_or_rotate_a_credential_above_its_own_rights(backend: Backend) {
    let app = spawn_app(backend).await;
    let (secret, ..) = acme_admin_beside_globex(&app).await;
    let strong = app
        .create_key(&json!({"name": "strong", "tenant": "acme", "permissions": ["billing:admin"]}))
        .await;
    let strong_client = app
        .create_client(
            &json!({"name": "strong", "tenant": "acme", "permissions": ["billing:admin"]}),
        )
        .await;
    let key_path = format!("/v1/keys/{}", strong["id"].as_str().unwrap());
    let client_path = format!(
        "/v1/clients/{}",
        strong_client["client_id"].as_str().unwrap()
    );
    for (path, body) in [
        (
            format!("{key_path}/rotate"),
            json!({"grace_period_secs": 0}),
        ),
        (format!("{key_path}/renew"), json!({"never_expires": true})),
        (
            format!("{client_path}/rotate"),
            json!({"grace_period_secs": 0}),
        ),
        (
            format!("{client_path}/renew"),
            json!({"never_expires": true}),
        ),
    ] {
        let response = app.call(&secret, Method::POST, &path, Some(&body)).await;
        assert_eq!(
            error_code(response, StatusCode::FORBIDDEN).await,
            "forbidden",
            "{path}"
        );
    }
    // The old secret still works and the expiry did not move.
    assert_eq!(
        app.lookup(strong["secret"].as_str().unwrap()).await["status"],
        "valid"
    );
    let after: Value = app.admin_get(&key_path).await.json().await.unwrap();
    assert_eq!(after["expires_at"], strong["expires_at"]);
    assert_eq!(after["prefix"], strong["prefix"]);

    // Taking power away is allowed in its tenant.
    assert_eq!(
        status(
            &app,
            &secret,
            Method::POST,
            &format!("{key_path}/revoke"),
            None
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, &secret, Method::DELETE, &client_path, None).await,
        StatusCode::NO_CONTENT
    );

    // Its own tenant's keys within its rights: rotate works.
    let weak = app
        .create_key(&json!({"name": "weak", "tenant": "acme", "permissions": ["orders:read"]}))
        .await;
    let response = app
        .call(
            &secret,
            Method::POST,
            &format!("/v1/keys/{}/rotate", weak["id"].as_str().unwrap()),
            Some(&json!({"grace_period_secs": 0})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn tenant_admins_signing_keys_and_failed_sign_ins_are_the_super_admins_alone(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (secret, ..) = acme_admin_beside_globex(&app).await;
    let admins: Value = app
        .admin_get("/v1/tenant-admins")
        .await
        .json()
        .await
        .unwrap();
    let own_id = admins["tenant_admins"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let attempts = [
        (Method::GET, "/v1/tenant-admins".to_owned(), None),
        (
            Method::POST,
            "/v1/tenant-admins".to_owned(),
            Some(json!({"name": "x", "tenant": "acme", "permissions": []})),
        ),
        (Method::GET, format!("/v1/tenant-admins/{own_id}"), None),
        (
            Method::POST,
            format!("/v1/tenant-admins/{own_id}/rotate"),
            Some(json!({"grace_period_secs": 0})),
        ),
        (
            Method::POST,
            format!("/v1/tenant-admins/{own_id}/renew"),
            Some(json!({"never_expires": true})),
        ),
        (Method::DELETE, format!("/v1/tenant-admins/{own_id}"), None),
        (Method::GET, "/v1/signing-keys".to_owned(), None),
        (Method::POST, "/v1/signing-keys/rotate".to_owned(), None),
    ];
    for (method, path, body) in attempts {
        let response = app
            .call(&secret, method.clone(), &path, body.as_ref())
            .await;
        assert_eq!(
            error_code(response, StatusCode::FORBIDDEN).await,
            "forbidden",
            "{method} {path}"
        );
    }
    let admins_after: Value = app
        .admin_get("/v1/tenant-admins")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admins_after, admins);
    // Failed sign-ins have no tenant: a tenant admin does not see them.
    app.call("wrong", Method::GET, "/v1/keys", None).await;
    let audit: Value = app
        .call(&secret, Method::GET, "/v1/audit?action=auth.failure", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"], json!([]));
    assert_eq!(app.audit("action=auth.failure").await.len(), 1);
}

async fn a_tenant_admin_secret_stops_working_when_revoked_expired_rotated_or_deleted(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = app
        .create_tenant_admin(
            &json!({"name": "a", "tenant": "acme", "permissions": [], "expires_in_secs": 60}),
        )
        .await;
    let secret = admin["secret"].as_str().unwrap().to_owned();
    let path = format!("/v1/tenant-admins/{}", admin["id"].as_str().unwrap());
    assert_eq!(
        status(&app, &secret, Method::GET, "/v1/keys", None).await,
        StatusCode::OK
    );
    // A tenant admin secret is no admin secret anywhere else.
    assert_eq!(
        app.lookup_raw(&secret, "kg_x").await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.advance(60);
    assert_eq!(
        status(&app, &secret, Method::GET, "/v1/keys", None).await,
        StatusCode::UNAUTHORIZED
    );

    let renewed = app
        .admin_post(&format!("{path}/renew"), &json!({"never_expires": true}))
        .await;
    assert_eq!(renewed.status(), StatusCode::OK);
    assert_eq!(
        status(&app, &secret, Method::GET, "/v1/keys", None).await,
        StatusCode::OK
    );

    let rotated: Value = app
        .admin_post(&format!("{path}/rotate"), &json!({"grace_period_secs": 30}))
        .await
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(
        status(&app, &secret, Method::GET, "/v1/keys", None).await,
        StatusCode::OK
    );
    app.advance(30);
    assert_eq!(
        status(&app, &secret, Method::GET, "/v1/keys", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&app, &new_secret, Method::GET, "/v1/keys", None).await,
        StatusCode::OK
    );

    assert_eq!(
        app.admin_post(&format!("{path}/revoke"), &json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        status(&app, &new_secret, Method::GET, "/v1/keys", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.admin_delete(&path).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        status(&app, &new_secret, Method::GET, "/v1/me", None).await,
        StatusCode::UNAUTHORIZED
    );
}

async fn editing_a_tenant_admins_role_changes_its_rights_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (secret, ..) = acme_admin_beside_globex(&app).await;
    let body = json!({"name": "x", "tenant": "acme", "permissions": ["orders:write"]});
    assert_eq!(
        status(&app, &secret, Method::POST, "/v1/keys", Some(body.clone())).await,
        StatusCode::CREATED
    );
    let roles: Value = app
        .admin_get("/v1/roles?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    let ops = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ops")
        .unwrap();
    let response = app
        .call(
            &app.admin_secret,
            Method::PUT,
            &format!("/v1/roles/{}", ops["id"].as_str().unwrap()),
            Some(&json!({"description": "", "permissions": []})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        status(&app, &secret, Method::POST, "/v1/keys", Some(body)).await,
        StatusCode::FORBIDDEN
    );
}

backend_tests!(
    me_says_who_a_secret_belongs_to_and_what_it_may_grant,
    another_tenants_records_do_not_exist_for_a_tenant_admin,
    a_tenant_admin_grants_only_what_it_holds,
    a_tenant_admin_cannot_renew_or_rotate_a_credential_above_its_own_rights,
    tenant_admins_signing_keys_and_failed_sign_ins_are_the_super_admins_alone,
    a_tenant_admin_secret_stops_working_when_revoked_expired_rotated_or_deleted,
    editing_a_tenant_admins_role_changes_its_rights_at_once,
);
