//! The key service going away, and many requests at once.

use std::time::Duration;

use keygate_e2e::{base_filter_config, Stack};
use serde_json::json;

use crate::{assert_unauthorized, eventually, flushed_counter};

#[tokio::test]
async fn with_the_key_service_down_cached_keys_pass_and_uncached_keys_get_503() -> anyhow::Result<()>
{
    let mut stack = Stack::start(base_filter_config()).await?;
    let (_, cached) = stack.create_key("acme", &["orders:read"]).await?;
    let (_, uncached) = stack.create_key("acme", &["orders:read"]).await?;
    let reply = stack.get("/orders/1", &[("x-api-key", &cached)]).await?;
    assert_eq!(reply.status, 200, "{}", reply.summary());

    stack.stop_keyservice()?;

    let reply = stack.get("/orders/1", &[("x-api-key", &cached)]).await?;
    assert_eq!(
        reply.status,
        200,
        "cached key while the key service is down: {}",
        reply.summary()
    );
    let reply = stack.get("/orders/1", &[("x-api-key", &uncached)]).await?;
    assert_eq!(
        reply.status,
        503,
        "uncached key while the key service is down: {}",
        reply.summary()
    );
    assert_eq!(reply.json()["error"], "unavailable");
    assert!(!reply.body.contains(&uncached));
    assert!(stack.envoy_ready().await, "Envoy is not ready any more");
    assert!(stack.counter("keygate.callout_failure").await? >= 1);

    // Not remembered as a failure: once the key service is back, the same key works.
    stack.start_keyservice().await?;
    let (stack, key) = (&stack, uncached.as_str());
    eventually(
        Duration::from_secs(15),
        "the uncached key to pass again",
        || async move {
            let reply = stack.get("/orders/1", &[("x-api-key", key)]).await.ok()?;
            (reply.status == 200).then_some(())
        },
    )
    .await;

    // SPEC.md lists this counter for answers the key service could not give.
    assert!(
        flushed_counter(stack, "keygate.denied.unavailable").await? >= 1,
        "no keygate.denied.unavailable stat"
    );
    Ok(())
}

#[tokio::test]
async fn failure_mode_open_lets_uncached_keys_through_while_the_key_service_is_down(
) -> anyhow::Result<()> {
    let mut config = base_filter_config();
    config["failure_mode"] = json!("open");
    let mut stack = Stack::start(config).await?;
    let (_, uncached) = stack.create_key("acme", &["orders:read"]).await?;

    stack.stop_keyservice()?;

    let reply = stack.get("/orders/1", &[("x-api-key", &uncached)]).await?;
    assert_eq!(reply.status, 200, "{}", reply.summary());
    let upstream = reply
        .upstream()
        .expect("the answer comes from the upstream");
    assert_eq!(
        upstream.header("x-api-key"),
        None,
        "the key reached the upstream"
    );
    assert_eq!(
        upstream.header("x-keygate-tenant"),
        None,
        "no identity is known, none may be claimed"
    );
    // Failing open is about the key service: a request with no key at all is still refused.
    assert_unauthorized(
        &stack.get("/orders/1", &[]).await?,
        "missing_credential",
        None,
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_requests_with_one_fresh_key_make_at_most_one_lookup_per_worker(
) -> anyhow::Result<()> {
    const REQUESTS: usize = 50;
    // Envoy runs with --concurrency 2: one Wasm VM, hence at most one lookup, per worker.
    const WORKERS: u64 = 2;
    let stack = Stack::start(base_filter_config()).await?;
    let (_, secret) = stack.create_key("acme", &["orders:read"]).await?;
    let before = stack.counter("keygate.callout").await?;

    let replies = stack
        .get_many("/orders/7", &[("x-api-key", &secret)], REQUESTS)
        .await?;

    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "statuses: {statuses:?}");
    let lookups = stack.counter("keygate.callout").await? - before;
    println!("{REQUESTS} concurrent requests with one fresh key made {lookups} lookup(s)");
    assert!(
        (1..=WORKERS).contains(&lookups),
        "{lookups} lookups for {REQUESTS} requests with one key"
    );
    Ok(())
}
