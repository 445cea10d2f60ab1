//! The revocation feed: a revoked key stops at every worker within a second although its cached
//! answer would live for minutes, and a feed reset (the key service's database replaced) drops
//! the whole cache.

use std::sync::Arc;
use std::time::Duration;

use keygate_e2e::{base_filter_config, Listener, Stack, StackOptions};
use serde_json::Value;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};

use crate::eventually;

/// Keep-alive connections that keep sending the hot key: enough that every worker holds some.
const CONNECTIONS: usize = 32;
/// What the issue demands: every worker answers 401 within this of the revoke's 200.
const REVOCATION_BOUND: Duration = Duration::from_secs(1);
/// Longer than any test here runs: an answer gone before this was dropped, not expired.
const LONG_TTL_SECS: u64 = 300;

/// Envoy with 4 workers, and valid answers cached for [`LONG_TTL_SECS`] by filter and service;
/// returned once the feed has its cursor (a second poll went out after the first answered).
async fn long_ttl_stack() -> anyhow::Result<Stack> {
    long_ttl_stack_with(Value::Null).await
}

/// [`long_ttl_stack`] with this `revocation` configuration (`null`: the defaults).
async fn long_ttl_stack_with(revocation: Value) -> anyhow::Result<Stack> {
    let mut config = base_filter_config();
    config["cache"]["ttl_secs"] = Value::from(LONG_TTL_SECS);
    if !revocation.is_null() {
        config["revocation"] = revocation;
    }
    let stack = Stack::start_with(StackOptions {
        workers: 4,
        keyservice_env: vec![(
            "KEYGATE_LOOKUP_CACHE_TTL_SECS".into(),
            LONG_TTL_SECS.to_string(),
        )],
        ..StackOptions::new(config)
    })
    .await?;
    eventually(Duration::from_secs(5), "the feed's second poll", || async {
        let polls = stack.counter("keygate.feed_poll").await.ok()?;
        (polls >= 2).then_some(())
    })
    .await;
    Ok(stack)
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?)
}

async fn status(client: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<u16> {
    let reply = client.get(url).header("x-api-key", key).send().await?;
    let status = reply.status().as_u16();
    reply.bytes().await?;
    Ok(status)
}

#[tokio::test]
async fn a_revoked_hot_key_is_refused_by_every_worker_within_a_second() -> anyhow::Result<()> {
    let stack = long_ttl_stack().await?;
    let (id, key) = stack.create_key("acme", &["orders:read"]).await?;
    let url = format!("http://{}/orders/1", stack.addr(Listener::Main)?);

    // Each connection warms up on its own keep-alive connection, waits for the others, then
    // sends until it is refused and reports how long after the revoke that was.
    let warm = Arc::new(Barrier::new(CONNECTIONS + 1));
    let revoked_at = Arc::new(tokio::sync::OnceCell::<Instant>::new());
    let mut connections = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (warm, revoked_at) = (Arc::clone(&warm), Arc::clone(&revoked_at));
        let (url, key) = (url.clone(), key.clone());
        connections.spawn(async move {
            let client = client()?;
            let mut warmed = Ok(());
            for _ in 0..5 {
                match status(&client, &url, &key).await {
                    Ok(200) => {}
                    Ok(s) => warmed = Err(anyhow::anyhow!("a valid key got {s} while warming up")),
                    Err(e) => warmed = Err(e),
                }
            }
            // Past the barrier even on failure, so the others are not left waiting.
            warm.wait().await;
            warmed?;
            loop {
                let s = status(&client, &url, &key).await?;
                if let Some(at) = revoked_at.get() {
                    if s == 401 {
                        return Ok(at.elapsed());
                    }
                    anyhow::ensure!(
                        at.elapsed() < Duration::from_secs(5),
                        "still {s} 5 s after the revoke"
                    );
                } else {
                    anyhow::ensure!(s == 200, "a valid key got {s} before the revoke");
                }
                sleep(Duration::from_millis(5)).await;
            }
        });
    }
    warm.wait().await;
    // Every connection has seen the key; now it is answered from the caches.
    let lookups_before = stack.counter("keygate.callout").await?;
    sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stack.counter("keygate.callout").await?,
        lookups_before,
        "the hot key is still being looked up, not served from cache"
    );
    assert!(stack.counter("keygate.cache_hit").await? > 0);

    stack.revoke(&id).await?;
    revoked_at
        .set(Instant::now())
        .map_err(|_| anyhow::anyhow!("revoke time set twice"))?;
    let mut slowest = Duration::ZERO;
    while let Some(took) = connections.join_next().await {
        slowest = slowest.max(took??);
    }
    println!(
        "revocation reached all {CONNECTIONS} connections (4 workers) {} ms after the revoke's 200",
        slowest.as_millis()
    );
    assert!(
        slowest < REVOCATION_BOUND,
        "the slowest connection was refused {slowest:?} after the revoke"
    );
    assert!(stack.counter("keygate.feed_changes").await? >= 1);
    Ok(())
}

#[tokio::test]
async fn a_feed_reset_drops_the_whole_cache() -> anyhow::Result<()> {
    let mut stack = long_ttl_stack().await?;
    let (_, key) = stack.create_key("acme", &["orders:read"]).await?;
    let url = format!("http://{}/orders/1", stack.addr(Listener::Main)?);
    let client = client()?;
    for _ in 0..10 {
        assert_eq!(status(&client, &url, &key).await?, 200);
    }
    let resets_before = stack.counter("keygate.feed_reset").await?;

    // A new, empty database: the filter's cursor names a log the service does not know, so its
    // next poll is answered with a reset. Without one, the key's cached 200 would last minutes.
    stack.stop_keyservice()?;
    let db = stack.keyservice().db_path().to_owned();
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    stack.start_keyservice().await?;

    let refused = eventually(
        Duration::from_secs(10),
        "the cached key to be refused",
        || {
            let (client, url, key) = (&client, &url, &key);
            async move {
                let s = status(client, url, key).await.ok()?;
                (s == 401).then_some(s)
            }
        },
    )
    .await;
    assert_eq!(refused, 401);
    assert!(stack.counter("keygate.feed_reset").await? > resets_before);
    Ok(())
}

#[tokio::test]
async fn cached_keys_are_not_served_past_max_stale_without_a_good_poll() -> anyhow::Result<()> {
    let mut stack =
        long_ttl_stack_with(serde_json::json!({"wait_ms": 500, "max_stale_secs": 2})).await?;
    let (_, key) = stack.create_key("acme", &["orders:read"]).await?;
    let url = format!("http://{}/orders/1", stack.addr(Listener::Main)?);
    let client = client()?;
    for _ in 0..10 {
        assert_eq!(status(&client, &url, &key).await?, 200);
    }
    // Polls keep succeeding past the bound: the long poll itself never makes the cache stale.
    sleep(Duration::from_secs(3)).await;
    assert_eq!(status(&client, &url, &key).await?, 200);

    // No feed, no lookups: served from cache up to the bound, then `failure_mode: closed`.
    stack.stop_keyservice()?;
    let stopped = Instant::now();
    assert_eq!(
        status(&client, &url, &key).await?,
        200,
        "the cached key is refused at once"
    );
    let refused = eventually(Duration::from_secs(6), "the cache to go stale", || {
        let (client, url, key) = (&client, &url, &key);
        async move {
            let s = status(client, url, key).await.ok()?;
            (s == 503).then_some(s)
        }
    })
    .await;
    assert_eq!(refused, 503);
    println!(
        "cached key refused {} ms after the key service stopped (max_stale_secs 2)",
        stopped.elapsed().as_millis()
    );
    Ok(())
}
