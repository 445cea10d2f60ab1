//! `/openapi.json` and `/docs`: the document is OpenAPI 3.1, generated from the same list the
//! router is built from, and every operation it lists is served; the explorer is served from the
//! binary under a self-only CSP; `--hide-docs` turns both off.

use std::collections::BTreeSet;

use keygate_core::wire::{CHANGES_PATH, LOOKUP_BATCH_PATH, LOOKUP_PATH, USAGE_PATH};
use keygate_keyservice::http::discovery::JWKS_PATH;
use keygate_keyservice::http::oauth::TOKEN_PATH;
use keygate_keyservice::http::openapi::DOCS_CSP;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{backend_tests, spawn_app, spawn_app_with, Backend, Options, METRICS_TOKEN};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &crate::helpers::TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Every `(method, path)` the document lists.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), operation.clone()));
            }
        }
    }
    out
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

async fn the_document_is_openapi_3_1_with_every_ref_and_scheme_defined(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;

    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
    // What the service serves is what the code generates.
    let generated = serde_json::to_value(keygate_keyservice::http::api().into_openapi()).unwrap();
    assert_eq!(doc, generated);

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} names no schema"
        );
    }

    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for scheme in [
        "admin_secret",
        "filter_token",
        "metrics_token",
        "client_credentials",
    ] {
        assert!(schemes.contains_key(scheme), "no security scheme {scheme}");
    }
    assert_eq!(schemes["admin_secret"]["scheme"], "bearer");
    assert_eq!(schemes["client_credentials"]["scheme"], "basic");

    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let at = format!("{method} {path}");
        assert!(ids.insert(operation["operationId"].as_str().unwrap().to_owned()));
        let responses = operation["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{at}: no responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{at}: no success response"
        );
        for requirement in operation["security"].as_array().into_iter().flatten() {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(
                    schemes.contains_key(scheme),
                    "{at}: unknown scheme {scheme}"
                );
            }
        }
        // Each `{param}` of the path is a declared path parameter.
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let declared = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["in"] == "path" && p["name"] == name && p["required"] == true);
                assert!(declared, "{at}: path parameter {name} undeclared");
            }
        }
        // Every error answer is documented with its body.
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert!(schema.is_string(), "{at} {status}: no JSON error body");
            }
        }
    }
}

/// The document lists the routes the router has: each documented operation reaches a handler
/// (not the router's 404 or 405), and the paths the filter and clients are built against are
/// among them. The router and the document come from one list (`http::api`), and a bare
/// `.route()` is refused by clippy (keyservice/clippy.toml), so a route cannot go undocumented.
async fn every_documented_operation_is_served_and_the_wire_paths_are_documented(backend: Backend) {
    // With a metrics token: without one, `/metrics` answers as if it were not routed.
    let app = spawn_app_with(
        backend,
        Options {
            metrics_token: Some(METRICS_TOKEN.to_owned()),
            ..Options::default()
        },
    )
    .await;
    let doc = document(&app).await;
    let operations = operations(&doc);
    assert!(
        operations.len() >= 25,
        "only {} operations",
        operations.len()
    );

    let paths: BTreeSet<&str> = operations.iter().map(|(_, p, _)| p.as_str()).collect();
    for wire in [
        LOOKUP_PATH,
        LOOKUP_BATCH_PATH,
        USAGE_PATH,
        CHANGES_PATH,
        TOKEN_PATH,
        JWKS_PATH,
        "/healthz",
    ] {
        assert!(paths.contains(wire), "{wire} is not documented");
    }

    for (method, path, operation) in &operations {
        let url = app.url(&path.replace("{id}", "kg_unknown"));
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_ne!(status, 405, "{method} {path}: not routed");
        if status == 404 && method != Method::HEAD {
            let body: Value = response.json().await.unwrap();
            assert_ne!(
                body["message"], "route not found",
                "{method} {path}: not routed"
            );
        }
        // An operation documented as needing the admin secret, the filter token or the metrics
        // token refuses a request without it.
        let schemes: Vec<&str> = operation["security"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
            .collect();
        if schemes == ["admin_secret"]
            || schemes == ["filter_token"]
            || schemes == ["metrics_token"]
        {
            assert_eq!(status, 401, "{method} {path} answered without credentials");
        }
    }
}

async fn the_explorer_is_served_from_the_binary_under_a_self_only_csp(backend: Backend) {
    let app = spawn_app(backend).await;
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-security-policy"], DOCS_CSP);
    assert!(DOCS_CSP.starts_with("default-src 'self';"));
    assert!(!DOCS_CSP.contains("http"));
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );

    for asset in [
        "swagger-ui.css",
        "index.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-initializer.js",
    ] {
        let response = app
            .client
            .get(app.url(&format!("/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(response.headers()["content-security-policy"], DOCS_CSP);
        assert!(!response.bytes().await.unwrap().is_empty(), "{asset}");
    }
    let initializer = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"));
    assert!(
        !initializer.contains("http://") && !initializer.contains("https://"),
        "{initializer}"
    );
}

async fn hide_docs_turns_off_the_document_and_the_explorer(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            hide_docs: true,
            ..Options::default()
        },
    )
    .await;
    for path in ["/openapi.json", "/docs", "/docs/", "/docs/swagger-ui.css"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "not_found");
    }
    // The API itself is still there.
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// The bounds the document states are the ones the service checks.
async fn documented_bounds_are_the_services_constants(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    for schema in ["CreateCredentialRequest", "RenewRequest"] {
        assert_eq!(
            schemas[schema]["properties"]["expires_in_secs"]["maximum"],
            keygate_keyservice::keys::MAX_KEY_LIFETIME_SECS,
            "{schema}"
        );
    }
    assert_eq!(
        schemas["RotateRequest"]["properties"]["grace_period_secs"]["maximum"],
        keygate_keyservice::keys::MAX_GRACE_PERIOD_SECS
    );
    assert_eq!(
        schemas["Permission"]["maxLength"],
        keygate_core::permission::MAX_PERMISSION_LEN
    );
    assert_eq!(
        schemas["CreateCredentialRequest"]["properties"]["roles"]["maxItems"],
        keygate_keyservice::roles::MAX_ROLES
    );
    assert_eq!(
        schemas["CreateRoleRequest"]["properties"]["name"]["maxLength"],
        keygate_keyservice::roles::MAX_ROLE_NAME_LEN
    );
    assert_eq!(
        schemas["UpdateRoleRequest"]["properties"]["description"]["maxLength"],
        keygate_keyservice::roles::MAX_DESCRIPTION_CHARS
    );
}

backend_tests!(
    documented_bounds_are_the_services_constants,
    the_document_is_openapi_3_1_with_every_ref_and_scheme_defined,
    every_documented_operation_is_served_and_the_wire_paths_are_documented,
    the_explorer_is_served_from_the_binary_under_a_self_only_csp,
    hide_docs_turns_off_the_document_and_the_explorer,
);
