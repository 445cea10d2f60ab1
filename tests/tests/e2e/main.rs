//! End-to-end tests: the real `keygate.wasm` in a real Envoy, the real `keygate-server`, the echo
//! upstream. Each test starts a stack of its own, so they run in parallel. Needs `make build` and
//! `make envoy` first (`make test` does both).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod config;
mod console;
mod database;
mod demo;
mod harness;
mod hostile_bytes;
mod jwt;
mod lookups;
mod path_oracle;
mod paths;
mod replicas;
mod resilience;
mod revocation;
mod route_name;
mod usage;
mod vm_failure;

use std::future::Future;
use std::time::Duration;

use keygate_e2e::{Reply, Stack};
use tokio::time::{sleep, Instant};

/// `WWW-Authenticate` on every 401 and 403 starts with this.
const CHALLENGE: &str = "Bearer realm=\"keygate\"";

/// Asserts a 401 from the filter with `reason`, and that the body does not echo `credential`.
fn assert_unauthorized(reply: &Reply, reason: &str, credential: Option<&str>) {
    assert_eq!(
        reply.status,
        401,
        "expected 401 {reason}, got {}",
        reply.summary()
    );
    let json = reply.json();
    assert_eq!(json["error"], "unauthorized", "{}", reply.summary());
    assert_eq!(json["reason"], reason, "{}", reply.summary());
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(CHALLENGE),
        "WWW-Authenticate: {challenge:?}"
    );
    if let Some(credential) = credential {
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "WWW-Authenticate: {challenge:?}"
        );
        assert!(
            !reply.body.contains(credential),
            "the 401 body echoes the key: {}",
            reply.body
        );
    }
    assert!(
        reply.upstream().is_none(),
        "a 401 came from the upstream: {}",
        reply.body
    );
}

/// Sends `GET path` with `headers` to a filter whose `max_waiting_requests` is reached, and
/// asserts that it is turned away at once: a 503 `unavailable` that does not echo `credential`,
/// well before `wait` (how long it would have waited had it been let in), counted in
/// `keygate.overloaded`.
async fn assert_turned_away_at_once(
    stack: &Stack,
    path: &str,
    headers: &[(&str, &str)],
    credential: &str,
    wait: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let reply = stack.get(path, headers).await?;
    let took = started.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.summary());
    assert_eq!(reply.json()["error"], "unavailable", "{}", reply.summary());
    assert!(
        !reply.body.contains(credential),
        "the 503 echoes the credential"
    );
    assert!(
        took < wait / 2,
        "the request past the bound took {took:?}, as if it waited (up to {wait:?})"
    );
    assert!(flushed_counter(stack, "keygate.overloaded").await? >= 1);
    Ok(())
}

/// The filter adds its per-request counters (`allowed`, `public`, `cache_hit`, `jwt_cache_hit`,
/// `jwt_rejected_cache_hit`) to Envoy's on each worker's tick, which is at most 1 s apart.
const COUNTER_FLUSH: Duration = Duration::from_millis(1200);

/// A per-request counter once every worker has flushed what it counted before this call.
async fn flushed_counter(stack: &Stack, name: &str) -> anyhow::Result<u64> {
    sleep(COUNTER_FLUSH).await;
    stack.counter(name).await
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}
