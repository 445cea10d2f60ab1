use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{backend_tests, error_code, spawn_app, Backend, FILTER_TOKEN};

/// 2026-11-22T23:59:59Z and the next second, the first of 2026-11-23.
const LAST_SECOND_OF_DAY_1: u64 = 1_795_391_999;
const FIRST_SECOND_OF_DAY_2: u64 = 1_795_392_000;

async fn new_key_has_no_usage(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let usage: Value = app
        .admin_get(&format!("/v1/keys/{}/usage", key["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        usage,
        json!({"key_id": key["id"], "total": 0, "last_used_at": null, "daily": []})
    );
}

async fn usage_counts_are_booked_per_day(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let id = key["id"].as_str().unwrap();

    let response = app
        .report_usage(json!([
            {"key_id": id, "count": 3, "last_used": LAST_SECOND_OF_DAY_1},
            {"key_id": id, "count": 2, "last_used": FIRST_SECOND_OF_DAY_2},
        ]))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .report_usage(json!([{"key_id": id, "count": 4, "last_used": LAST_SECOND_OF_DAY_1}]))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let usage: Value = app
        .admin_get(&format!("/v1/keys/{id}/usage"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        usage,
        json!({
            "key_id": id,
            "total": 9,
            // The older report did not move last use backwards.
            "last_used_at": "2026-11-23T00:00:00Z",
            "daily": [{"day": "2026-11-22", "count": 7}, {"day": "2026-11-23", "count": 2}],
        })
    );
}

async fn usage_for_unknown_or_deleted_keys_is_ignored(backend: Backend) {
    let app = spawn_app(backend).await;
    let kept = app.create_default_key().await;
    let deleted = app.create_default_key().await;
    let kept_id = kept["id"].as_str().unwrap();
    let deleted_id = deleted["id"].as_str().unwrap();
    app.admin_delete(&format!("/v1/keys/{deleted_id}")).await;

    let response = app
        .report_usage(json!([
            {"key_id": deleted_id, "count": 5, "last_used": LAST_SECOND_OF_DAY_1},
            {"key_id": "key_0000000000000000", "count": 5, "last_used": LAST_SECOND_OF_DAY_1},
            {"key_id": "not a key id", "count": 5, "last_used": LAST_SECOND_OF_DAY_1},
            {"key_id": kept_id, "count": 1, "last_used": u64::MAX},
            {"key_id": kept_id, "count": 0, "last_used": LAST_SECOND_OF_DAY_1},
            {"key_id": kept_id, "count": 2, "last_used": LAST_SECOND_OF_DAY_1},
        ]))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let usage: Value = app
        .admin_get(&format!("/v1/keys/{kept_id}/usage"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["total"], 2);
    assert_eq!(usage["daily"], json!([{"day": "2026-11-22", "count": 2}]));
}

async fn empty_usage_report_is_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.report_usage(json!([])).await.status(),
        StatusCode::NO_CONTENT
    );
}

async fn malformed_usage_report_gets_json_400_and_books_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let id = key["id"].as_str().unwrap();
    for body in [
        json!({"entries": [{"key_id": id, "count": 1, "last_used": LAST_SECOND_OF_DAY_1}], "extra": true}),
        json!({"entries": [{"key_id": id, "count": -1, "last_used": LAST_SECOND_OF_DAY_1}]}),
        json!({"entries": [{"key_id": id, "count": 1}]}),
    ] {
        let response = app
            .client
            .post(app.url("/v1/usage"))
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
    let usage: Value = app
        .admin_get(&format!("/v1/keys/{id}/usage"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["total"], 0);
}

backend_tests!(
    new_key_has_no_usage,
    usage_counts_are_booked_per_day,
    usage_for_unknown_or_deleted_keys_is_ignored,
    empty_usage_report_is_accepted,
    malformed_usage_report_gets_json_400_and_books_nothing,
);
