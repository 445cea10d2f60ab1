use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_check_answers_ok_without_credentials() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
}
