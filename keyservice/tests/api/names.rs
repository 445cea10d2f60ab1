//! Names that would hide or reorder their text are refused at every way in (key and OAuth client
//! creation; the API has no rename), and names stored before the rule still load.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{backend_tests, error_code, spawn_app, spawn_app_with, Backend, Options};

/// One of each class the rule refuses: bidi overrides and isolates, the marks, zero-width
/// characters and the BOM, other controls and format characters, line and paragraph separators.
const HIDDEN: [(char, &str); 17] = [
    ('\u{202e}', "right-to-left override"),
    ('\u{202a}', "left-to-right embedding"),
    ('\u{2066}', "left-to-right isolate"),
    ('\u{2067}', "right-to-left isolate"),
    ('\u{2068}', "first strong isolate"),
    ('\u{2069}', "pop directional isolate"),
    ('\u{200e}', "left-to-right mark"),
    ('\u{200f}', "right-to-left mark"),
    ('\u{061c}', "arabic letter mark"),
    ('\u{200b}', "zero width space"),
    ('\u{200c}', "zero width non-joiner"),
    ('\u{200d}', "zero width joiner"),
    ('\u{2060}', "word joiner"),
    ('\u{feff}', "byte order mark"),
    ('\u{1b}', "escape (Cc)"),
    ('\u{2028}', "line separator (Zl)"),
    ('\u{2029}', "paragraph separator (Zp)"),
];

async fn refused_with_400_naming_the_field(response: reqwest::Response, c: char, what: &str) {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "bad_request", "{what}: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("`name`"), "{what}: {message}");
    assert!(
        message.contains(&format!("U+{:04X}", u32::from(c))),
        "{what}: {message}"
    );
}

async fn key_names_with_characters_that_hide_text_are_refused_with_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for (c, what) in HIDDEN {
        let response = app
            .admin_post(
                "/v1/keys",
                &json!({"name": format!("invoice{c}fdp.exe"), "tenant": "acme", "permissions": []}),
            )
            .await;
        refused_with_400_naming_the_field(response, c, what).await;
    }
    let listed: Value = app
        .admin_get("/v1/keys?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["keys"], json!([]), "a refused key was stored");
}

async fn client_names_with_characters_that_hide_text_are_refused_with_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for (c, what) in HIDDEN {
        let response = app
            .admin_post(
                "/v1/clients",
                &json!({"name": format!("billing{c}"), "tenant": "acme", "permissions": []}),
            )
            .await;
        refused_with_400_naming_the_field(response, c, what).await;
    }
}

async fn names_in_any_script_are_accepted_as_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let name = "Zoë 日本 – Ωmega (prod)";
    let key = app
        .create_key(&json!({"name": name, "tenant": "acme", "permissions": []}))
        .await;
    assert_eq!(key["name"], name);
    let client = app
        .create_client(&json!({"name": name, "tenant": "acme", "permissions": []}))
        .await;
    assert_eq!(client["name"], name);
}

async fn names_stored_before_the_rule_still_load(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let client = app.create_default_client().await;
    let key_id = key["id"].as_str().unwrap().to_owned();
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let secret = key["secret"].as_str().unwrap().to_owned();
    let admin_secret = app.admin_secret.clone();
    let data_dir = app.stop().await;

    // What an older version may have stored: a name with a bidi override and a zero-width space.
    let legacy = "legacy\u{202e}\u{200b}name";
    // The database holds this one key and this one client.
    data_dir
        .execute("UPDATE keys SET name = 'legacy\u{202e}\u{200b}name'")
        .await;
    data_dir
        .execute("UPDATE clients SET name = 'legacy\u{202e}\u{200b}name'")
        .await;

    let app = spawn_app_with(
        backend,
        Options {
            database: Some(data_dir),
            admin_secret: Some(admin_secret),
            ..Options::default()
        },
    )
    .await;
    let response = app.admin_get(&format!("/v1/keys/{key_id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["name"], legacy);
    let response = app.admin_get(&format!("/v1/clients/{client_id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["name"], legacy);
    let listed: Value = app
        .admin_get("/v1/keys?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["keys"][0]["name"], legacy);
    // And the key still works.
    assert_eq!(app.lookup(&secret).await["status"], "valid");
    assert_eq!(
        error_code(
            app.admin_post(
                "/v1/keys",
                &json!({"name": legacy, "tenant": "acme", "permissions": []})
            )
            .await,
            StatusCode::BAD_REQUEST
        )
        .await,
        "bad_request",
        "a stored legacy name is no licence to create another"
    );
}

backend_tests!(
    key_names_with_characters_that_hide_text_are_refused_with_400,
    client_names_with_characters_that_hide_text_are_refused_with_400,
    names_in_any_script_are_accepted_as_sent,
    names_stored_before_the_rule_still_load,
);
