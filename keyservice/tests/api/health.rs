use serde_json::{json, Value};

use crate::helpers::{backend_tests, spawn_app, Backend};

async fn health_check_answers_ok_without_credentials(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
}

backend_tests!(health_check_answers_ok_without_credentials,);
