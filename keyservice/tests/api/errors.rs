use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{backend_tests, error_code, spawn_app, Backend};

async fn malformed_json_gets_json_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .as_admin(app.client.post(app.url("/v1/keys")))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response, StatusCode::BAD_REQUEST).await,
        "bad_request"
    );
}

async fn missing_field_error_names_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .admin_post("/v1/keys", &json!({"name": "ci", "permissions": []}))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("tenant"),
        "{body}"
    );
}

async fn wrong_content_type_gets_json_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .as_admin(app.client.post(app.url("/v1/keys")))
        .header("content-type", "text/plain")
        .body(r#"{"name": "ci", "tenant": "acme", "permissions": []}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await,
        "unsupported_media_type"
    );
}

async fn oversized_body_gets_json_413(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"name": "n".repeat(70 * 1024), "tenant": "acme", "permissions": []});
    let response = app.admin_post("/v1/keys", &body).await;
    assert_eq!(
        error_code(response, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
}

async fn unknown_route_gets_json_404(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/", "/v1/nope", "/v1/keys/key_0000000000000000/nope"] {
        let response = app.admin_get(path).await;
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "not_found",
            "{path}"
        );
    }
}

async fn wrong_method_gets_json_405_with_allow(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .as_admin(app.client.put(app.url("/v1/keys")))
        .send()
        .await
        .unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(
        error_code(response, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );

    let response = app.client.get(app.url("/v1/lookup")).send().await.unwrap();
    assert_eq!(
        error_code(response, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
}

async fn database_failure_answers_json_500_without_details(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    // Break the schema behind the service's back.
    app.database
        .execute("ALTER TABLE keys RENAME TO keys_gone")
        .await;

    let response = app.admin_get("/v1/keys").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "internal", "message": "internal error"})
    );

    let response = app
        .lookup_raw(
            crate::helpers::FILTER_TOKEN,
            key["secret"].as_str().unwrap(),
        )
        .await;
    assert_eq!(
        error_code(response, StatusCode::INTERNAL_SERVER_ERROR).await,
        "internal"
    );
}

// SQLite only: a writer there gives up after its busy timeout. PostgreSQL's writers wait for a
// lock for as long as it is held; its 503s are for a server that is down or full (see
// `postgres_restart`).
#[tokio::test]
async fn locked_database_answers_json_503() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = format!("sqlite://{}", app.db_path().display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut db)
        .await
        .unwrap();

    // Waits out the busy timeout, then gives up.
    let response = app
        .admin_post(
            "/v1/keys",
            &json!({"name": "ci", "tenant": "acme", "permissions": []}),
        )
        .await;
    assert_eq!(
        error_code(response, StatusCode::SERVICE_UNAVAILABLE).await,
        "unavailable"
    );

    sqlx::query("ROLLBACK").execute(&mut db).await.unwrap();
    app.create_default_key().await;
}

/// serde reads a struct from an array of its fields; the API takes objects only (schemathesis
/// found a renew answered 200 for `[null, null]`).
async fn a_json_array_in_place_of_an_object_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app
        .create_key(&json!({"name": "ci", "tenant": "acme", "permissions": []}))
        .await;
    let id = key["id"].as_str().unwrap();
    for (path, body) in [
        (format!("/v1/keys/{id}/renew"), json!([null, null])),
        (format!("/v1/keys/{id}/rotate"), json!([60])),
        (
            "/v1/keys".to_owned(),
            json!(["ci", "acme", [], [], null, null]),
        ),
    ] {
        let response = app.admin_post(&path, &body).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(
            answer["message"], "the body must be a JSON object",
            "{path}"
        );
    }
    // Whitespace before the object is fine.
    let response = app
        .as_admin(app.client.post(app.url(&format!("/v1/keys/{id}/renew"))))
        .header("content-type", "application/json")
        .body(" \n {}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

backend_tests!(
    a_json_array_in_place_of_an_object_is_refused,
    malformed_json_gets_json_error,
    missing_field_error_names_the_field,
    wrong_content_type_gets_json_error,
    oversized_body_gets_json_413,
    unknown_route_gets_json_404,
    wrong_method_gets_json_405_with_allow,
    database_failure_answers_json_500_without_details,
);
