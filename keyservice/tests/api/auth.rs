use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    backend_tests, error_code, prepare, spawn_app, spawn_app_with, Backend, Options, TestDb,
    FILTER_TOKEN,
};
use keygate_keyservice::clock::ManualClock;
use keygate_keyservice::startup::StartupError;

async fn admin_secret_is_not_accepted_on_lookup(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let response = app
        .lookup_raw(&app.admin_secret, key["secret"].as_str().unwrap())
        .await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"keygate-keyservice\""
    );
    assert_eq!(
        error_code(response, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );

    let response = app
        .client
        .post(app.url("/v1/usage"))
        .bearer_auth(&app.admin_secret)
        .json(&json!({"entries": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
}

async fn filter_token_is_not_accepted_on_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let id = key["id"].as_str().unwrap();
    let requests = [
        app.client.get(app.url("/v1/keys")),
        app.client
            .post(app.url("/v1/keys"))
            .json(&json!({"name": "x", "tenant": "t", "permissions": []})),
        app.client.get(app.url(&format!("/v1/keys/{id}"))),
        app.client.post(app.url(&format!("/v1/keys/{id}/revoke"))),
        app.client
            .post(app.url(&format!("/v1/keys/{id}/renew")))
            .json(&json!({})),
        app.client
            .post(app.url(&format!("/v1/keys/{id}/rotate")))
            .json(&json!({"grace_period_secs": 0})),
        app.client.get(app.url(&format!("/v1/keys/{id}/usage"))),
        app.client.delete(app.url(&format!("/v1/keys/{id}"))),
    ];
    for request in requests {
        let response = request.bearer_auth(FILTER_TOKEN).send().await.unwrap();
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized"
        );
    }
    // Nothing happened to the key.
    let view: Value = app
        .admin_get(&format!("/v1/keys/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "active");
}

async fn admin_endpoints_need_the_exact_bearer_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let wrong = format!("{}x", app.admin_secret);
    for authorization in [
        None,
        Some("Basic abc".to_owned()),
        Some("Bearer".to_owned()),
        Some(format!("Bearer {wrong}")),
    ] {
        let mut request = app.client.get(app.url("/v1/keys"));
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized",
            "{authorization:?}"
        );
    }
    let response = app
        .client
        .get(app.url("/v1/keys"))
        .header("authorization", format!("bearer {}", app.admin_secret))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn credentials_are_checked_before_the_body_is_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .post(app.url("/v1/keys"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
}

async fn admin_secret_survives_restart(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(app.generated_admin_secret);
    let secret = app.admin_secret.clone();
    let key = app.create_default_key().await;
    let data_dir = app.stop().await;

    let mut app = spawn_app_with(
        backend,
        Options {
            database: Some(data_dir),
            ..Options::default()
        },
    )
    .await;
    assert!(
        !app.generated_admin_secret,
        "a restart must not generate a second admin secret"
    );
    app.admin_secret = secret;
    let view: Value = app
        .admin_get(&format!("/v1/keys/{}", key["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["id"], key["id"]);
    assert_eq!(
        app.lookup(key["secret"].as_str().unwrap()).await["status"],
        "valid"
    );
}

async fn configured_admin_secret_is_used_and_not_stored(backend: Backend) {
    let configured = "configured-admin-secret".to_owned();
    let app = spawn_app_with(
        backend,
        Options {
            admin_secret: Some(configured.clone()),
            ..Options::default()
        },
    )
    .await;
    assert!(!app.generated_admin_secret);
    assert_eq!(app.admin_get("/v1/keys").await.status(), StatusCode::OK);
    let data_dir = app.stop().await;

    // Nothing was stored, so a start without it generates one, and the configured one stops working.
    let mut app = spawn_app_with(
        backend,
        Options {
            database: Some(data_dir),
            ..Options::default()
        },
    )
    .await;
    assert!(app.generated_admin_secret);
    assert_eq!(app.admin_get("/v1/keys").await.status(), StatusCode::OK);
    app.admin_secret = configured;
    assert_eq!(
        app.admin_get("/v1/keys").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn filter_token_equal_to_the_admin_secret_is_refused_at_start(backend: Backend) {
    let test_db = TestDb::new(backend);
    let db = test_db.database();
    let clock = || std::sync::Arc::new(ManualClock::new(crate::helpers::start_time()));

    let refused = prepare(&db, Some("same-secret"), "same-secret", clock()).await;
    assert!(matches!(
        refused,
        Err(StartupError::FilterTokenIsAdminSecret)
    ));

    let generated = prepare(&db, None, FILTER_TOKEN, clock()).await.unwrap();
    let admin = generated
        .generated_admin_secret
        .as_ref()
        .unwrap()
        .expose()
        .to_owned();
    drop(generated);
    let refused = prepare(&db, None, &admin, clock()).await;
    assert!(matches!(
        refused,
        Err(StartupError::FilterTokenIsAdminSecret)
    ));
}

async fn ambiguous_authorization_is_refused_with_401_even_when_one_value_is_right(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = format!("Bearer {}", app.admin_secret);
    let filter = format!("Bearer {FILTER_TOKEN}");
    // Each pair: the right value first, then a second one; and the two folded with a comma, as
    // a proxy merging repeated headers would send them.
    for (path, right) in [("/v1/keys", &admin), ("/v1/lookup", &filter)] {
        for second in [right.clone(), "Bearer someone-else".to_owned()] {
            let two_headers = app
                .client
                .post(app.url(path))
                .header("authorization", right)
                .header("authorization", &second)
                .json(&json!({"key_hash": "00".repeat(32)}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                error_code(two_headers, StatusCode::UNAUTHORIZED).await,
                "unauthorized",
                "{path}: two headers"
            );
            let folded = app
                .client
                .post(app.url(path))
                .header("authorization", format!("{right}, {second}"))
                .json(&json!({"key_hash": "00".repeat(32)}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                error_code(folded, StatusCode::UNAUTHORIZED).await,
                "unauthorized",
                "{path}: folded"
            );
        }
    }
    // One header still works on both.
    let response = app.admin_get("/v1/keys").await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app.lookup_raw(FILTER_TOKEN, "kg_unknown").await;
    assert_eq!(response.status(), StatusCode::OK);
}

backend_tests!(
    admin_secret_is_not_accepted_on_lookup,
    filter_token_is_not_accepted_on_admin,
    admin_endpoints_need_the_exact_bearer_secret,
    credentials_are_checked_before_the_body_is_read,
    admin_secret_survives_restart,
    configured_admin_secret_is_used_and_not_stored,
    filter_token_equal_to_the_admin_secret_is_refused_at_start,
    ambiguous_authorization_is_refused_with_401_even_when_one_value_is_right,
);
