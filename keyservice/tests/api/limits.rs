//! Slow clients over real TCP sockets: the header read timeout, the request body deadline and
//! the connection cap. The timeouts are set to one second, so each test takes a few seconds.

use std::time::{Duration, Instant};

use keygate_keyservice::server::ConnectionLimits;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{backend_tests, spawn_app_with, Backend, Options, TestApp};

const TIMEOUT: Duration = Duration::from_secs(1);
/// Timers fire a little early or late; this much either way is still "at the timeout".
const SLACK: Duration = Duration::from_millis(200);
/// Longer than any test waits for the server to act.
const PATIENCE: Duration = Duration::from_secs(5);

async fn spawn_limited(backend: Backend, max_connections: usize) -> TestApp {
    spawn_app_with(
        backend,
        Options {
            limits: ConnectionLimits {
                header_read_timeout: TIMEOUT,
                request_body_timeout: TIMEOUT,
                max_connections,
            },
            ..Options::default()
        },
    )
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// A connection that sends the start of a request head and never its end.
async fn stalled_client(app: &TestApp) -> TcpStream {
    let mut stream = connect(app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: keygate\r\nX-Slow: ")
        .await
        .unwrap();
    stream
}

/// Everything the server sends until it closes the connection. Fails if it is still open after
/// [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server kept a stalled connection open");
    received
}

async fn a_client_that_never_finishes_its_headers_is_disconnected_after_the_header_timeout(
    backend: Backend,
) {
    let app = spawn_limited(backend, 16).await;
    let started = Instant::now();
    let mut stream = stalled_client(&app).await;
    read_until_closed(&mut stream).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed + SLACK >= TIMEOUT,
        "closed after {elapsed:?}, before the timeout"
    );
}

async fn a_body_shorter_than_its_content_length_gets_408_json_after_the_body_timeout(
    backend: Backend,
) {
    let app = spawn_limited(backend, 16).await;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /v1/keys HTTP/1.1\r\nHost: keygate\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        app.admin_secret
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let response = String::from_utf8(read_until_closed(&mut stream).await).unwrap();
    let elapsed = started.elapsed();

    assert!(
        response.starts_with("HTTP/1.1 408 "),
        "not a 408: {response:?}"
    );
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"], "request_timeout");
    assert!(body["message"].is_string(), "{body}");
    assert!(
        elapsed + SLACK >= TIMEOUT,
        "answered after {elapsed:?}, before the timeout"
    );
}

async fn stalled_clients_beyond_the_connection_cap_hold_a_legitimate_request_only_until_the_header_timeout(
    backend: Backend,
) {
    const CAP: usize = 4;
    const EXTRA: usize = 2;
    let app = spawn_limited(backend, CAP).await;
    let mut stalled = Vec::new();
    for _ in 0..CAP + EXTRA {
        stalled.push(stalled_client(&app).await);
    }

    let started = Instant::now();
    let response = tokio::time::timeout(PATIENCE, app.client.get(app.url("/healthz")).send())
        .await
        .expect("/healthz did not answer while slow clients were connected")
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    // Without the cap, it would have been served at once; without the header timeout, never.
    assert!(
        elapsed + SLACK >= TIMEOUT,
        "served after {elapsed:?}: the {CAP} stalled connections did not hold the cap"
    );
    assert!(
        elapsed <= 2 * TIMEOUT + SLACK,
        "served only after {elapsed:?}: stalled connections outlived the header timeout"
    );

    // Every stalled client, the ones that waited in the backlog included, is dropped in its turn.
    for stream in &mut stalled {
        read_until_closed(stream).await;
    }
}

async fn shutdown_lets_a_request_in_flight_finish_then_closes_its_connection(backend: Backend) {
    let app = spawn_limited(backend, 16).await;
    let mut stream = connect(&app).await;
    let body = r#"{"name":"ci","tenant":"acme","permissions":[]}"#;
    let head = format!(
        "POST /v1/keys HTTP/1.1\r\nHost: keygate\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.admin_secret,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Short pauses only to order events: the head is read, then shutdown starts, then the body
    // arrives, all well within the one-second body timeout.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(body.as_bytes()).await.unwrap();

    let response = String::from_utf8(read_until_closed(&mut stream).await).unwrap();
    assert!(response.starts_with("HTTP/1.1 201 "), "{response:?}");
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("shutdown did not complete")
        .unwrap();
}

backend_tests!(
    stalled_clients_beyond_the_connection_cap_hold_a_legitimate_request_only_until_the_header_timeout,
    a_client_that_never_finishes_its_headers_is_disconnected_after_the_header_timeout,
    a_body_shorter_than_its_content_length_gets_408_json_after_the_body_timeout,
    shutdown_lets_a_request_in_flight_finish_then_closes_its_connection,
);
