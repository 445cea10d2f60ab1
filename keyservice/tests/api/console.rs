//! `/console`: the page and its files are served from the binary with a strict CSP and the other
//! security headers, with the right content types; anything else under it is 404, and no request
//! path reaches the file system. `--hide-console` turns it off, `--hide-docs` does not. The
//! console's routes are not in the OpenAPI document. (Its behaviour in a browser is tested end to
//! end in tests/tests/e2e/console.rs.)

use std::path::PathBuf;

use keygate_keyservice::http::console::{ASSETS, CONSOLE_CSP};
use reqwest::Response;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{spawn_app, spawn_app_with, Backend, Options, TestApp};

/// The console serves no data of its own: one backend is enough.
const BACKEND: Backend = Backend::Sqlite;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn console_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("console")
}

async fn get(app: &TestApp, path: &str) -> Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} on {}", response.url()))
        .to_str()
        .unwrap()
}

fn assert_security_headers(response: &Response) {
    assert_eq!(header(response, "content-security-policy"), CSP);
    assert_eq!(CONSOLE_CSP, CSP);
    assert_eq!(header(response, "x-frame-options"), "DENY");
    assert_eq!(header(response, "x-content-type-options"), "nosniff");
    assert_eq!(header(response, "referrer-policy"), "no-referrer");
    assert!(response.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn the_console_page_is_served_with_a_strict_csp_and_not_stored() {
    let app = spawn_app(BACKEND).await;
    for path in ["/console", "/console/"] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_security_headers(&response);
        assert_eq!(
            header(&response, "content-type"),
            "text/html; charset=utf-8"
        );
        assert_eq!(header(&response, "cache-control"), "no-store");
        let html = response.text().await.unwrap();
        let on_disk = std::fs::read_to_string(console_dir().join("index.html")).unwrap();
        assert_eq!(html, on_disk, "the binary serves another index.html");
        assert!(html.contains(r#"<script type="module" src="/console/assets/app.js">"#));
    }
}

#[tokio::test]
async fn every_console_file_is_served_from_the_binary_with_its_content_type() {
    let app = spawn_app(BACKEND).await;
    // Every file in keyservice/console/ is served, and nothing else.
    let mut on_disk: Vec<String> = std::fs::read_dir(console_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "index.html")
        .collect();
    on_disk.sort();
    let mut served: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
    served.sort();
    assert_eq!(
        served, on_disk,
        "keyservice/console/ and the served files differ"
    );

    for name in &on_disk {
        let response = get(&app, &format!("/console/assets/{name}")).await;
        assert_eq!(response.status(), 200, "{name}");
        assert_security_headers(&response);
        let expected = match name.rsplit_once('.').unwrap().1 {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("no content type expected for .{other} ({name})"),
        };
        assert_eq!(header(&response, "content-type"), expected, "{name}");
        let body = response.bytes().await.unwrap();
        assert_eq!(
            body.as_ref(),
            std::fs::read(console_dir().join(name)).unwrap(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn unknown_console_files_are_404_with_the_security_headers() {
    let app = spawn_app(BACKEND).await;
    for path in [
        "/console/assets/nope.js",
        "/console/assets/index.html",
        "/console/assets/APP.JS",
        "/console/assets/app.js.map",
    ] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_security_headers(&response);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path}");
    }
    // Not a console route at all: the service's JSON 404.
    let response = get(&app, "/console/tokens").await;
    assert_eq!(response.status(), 404);
}

/// Sends `path` as is (an HTTP client would resolve the dot segments first) and returns the
/// status line and the whole answer.
async fn raw_get(app: &TestApp, path: &str) -> (String, String) {
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    (status, answer)
}

#[tokio::test]
async fn no_request_path_reaches_the_file_system() {
    let app = spawn_app(BACKEND).await;
    for path in [
        "/console/assets/../../Cargo.toml",
        "/console/assets/../console/app.js",
        "/console/assets/..%2F..%2FCargo.toml",
        "/console/assets/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/console/assets/..%5c..%5cCargo.toml",
        "/console/assets/%2Fetc%2Fpasswd",
        "/console/assets/app.js%00.css",
        "/console/../Cargo.toml",
        "/console/assets//etc/passwd",
    ] {
        let (status, answer) = raw_get(&app, path).await;
        assert!(
            status.starts_with("HTTP/1.1 404") || status.starts_with("HTTP/1.1 400"),
            "{path}: {status}"
        );
        assert!(!answer.contains("[package]"), "{path} served Cargo.toml");
        assert!(!answer.contains("root:"), "{path} served /etc/passwd");
    }
}

#[tokio::test]
async fn the_console_routes_are_not_in_the_openapi_document() {
    let app = spawn_app(BACKEND).await;
    let doc: Value = get(&app, "/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(!paths.is_empty());
    assert!(
        paths.keys().all(|p| !p.starts_with("/console")),
        "{:?}",
        paths.keys()
    );
}

#[tokio::test]
async fn hide_console_turns_the_console_off_and_hide_docs_does_not() {
    let hidden = spawn_app_with(
        BACKEND,
        Options {
            hide_console: true,
            ..Options::default()
        },
    )
    .await;
    for path in ["/console", "/console/", "/console/assets/app.js"] {
        let response = get(&hidden, path).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "not_found");
    }
    assert_eq!(get(&hidden, "/openapi.json").await.status(), 200);

    let no_docs = spawn_app_with(
        BACKEND,
        Options {
            hide_docs: true,
            ..Options::default()
        },
    )
    .await;
    assert_eq!(get(&no_docs, "/console").await.status(), 200);
    assert_eq!(get(&no_docs, "/openapi.json").await.status(), 404);
}
