//! The upstream behind Envoy in the demo and the tests: answers every request with 200 and a JSON
//! [`EchoedRequest`] of what reached it (method, path with query, all headers). That is how a test
//! sees which identity headers the filter added and which credentials it stripped.
//!
//! In-process ([`spawn_echo`]) it also keeps a log of every request, so a test can prove a request
//! never reached the upstream at all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The value of [`EchoedRequest::echoed_by`]: tells an upstream answer from a filter answer.
pub const ECHO_MARK: &str = "keygate-echo";

/// What the upstream received, as it answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoedRequest {
    /// Always [`ECHO_MARK`].
    pub echoed_by: String,
    pub method: String,
    /// Path and query exactly as received.
    pub path: String,
    /// Lower-case names; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
}

impl EchoedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Every request an in-process echo server answered, oldest first.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<EchoedRequest>>>);

impl RequestLog {
    fn push(&self, request: EchoedRequest) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
    }

    pub fn snapshot(&self) -> Vec<EchoedRequest> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The echo service. With a `log`, every request is also recorded there (the binary runs without
/// one, so it does not grow without bound).
pub fn app(log: Option<RequestLog>) -> Router {
    Router::new().fallback(echo).with_state(log)
}

/// Serves [`app`] on `listener` until the task is dropped or the listener fails.
pub async fn serve(listener: TcpListener, log: Option<RequestLog>) -> std::io::Result<()> {
    axum::serve(listener, app(log)).await
}

async fn echo(
    State(log): State<Option<RequestLog>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Json<EchoedRequest> {
    let mut seen = BTreeMap::<String, String>::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        seen.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let request = EchoedRequest {
        echoed_by: ECHO_MARK.to_owned(),
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: seen,
    };
    if let Some(log) = log {
        log.push(request.clone());
    }
    Json(request)
}

/// An echo server running on the current tokio runtime; stopped when dropped.
#[derive(Debug)]
pub struct EchoHandle {
    task: JoinHandle<()>,
    log: RequestLog,
}

impl EchoHandle {
    /// Every request that reached this upstream so far.
    pub fn requests(&self) -> Vec<EchoedRequest> {
        self.log.snapshot()
    }
}

impl Drop for EchoHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an echo server on a free port of 127.0.0.1.
pub async fn spawn_echo() -> std::io::Result<(SocketAddr, EchoHandle)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let log = RequestLog::default();
    let served = log.clone();
    let task = tokio::spawn(async move {
        // The server only ends when the task is aborted; an accept error leaves the test to fail on
        // its requests, with a clearer message than anything we could say here.
        let _ = serve(listener, Some(served)).await;
    });
    Ok((addr, EchoHandle { task, log }))
}
