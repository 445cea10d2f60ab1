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

use crate::{eventually, flushed_counter};

/// Keep-alive connections that keep sending the hot key: enough that every worker holds some.
const CONNECTIONS: usize = 32;
/// What the issue demands: every worker answers 401 within this of the revoke's 200.
const REVOCATION_BOUND: Duration = Duration::from_secs(1);
/// Longer than any test here runs: an answer gone before this was dropped, not expired.
const LONG_TTL_SECS: u64 = 300;

/// Envoy with 4 workers, and valid answers cached for [`LONG_TTL_SECS`] by filter and service
/// (the stack starts once the feed has its cursor).
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
    assert!(flushed_counter(&stack, "keygate.cache_hit").await? > 0);

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

/// Keys made hot on every connection of the fleet test; all but the last are revoked in turn.
const FLEET_KEYS: usize = 3;
/// Keep-alive connections opened to each Envoy at first; more are opened (up to
/// [`MAX_FLEET_CONNECTIONS`]) until every worker holds [`CONNECTIONS_PER_WORKER`].
const FLEET_CONNECTIONS: usize = 24;
const MAX_FLEET_CONNECTIONS: usize = 96;
const CONNECTIONS_PER_WORKER: u64 = 2;
const FLEET_WORKERS: usize = 4;

/// One keep-alive connection to one Envoy: a client that only ever sends one request at a time,
/// so its pool holds the one connection it opened first.
#[derive(Clone)]
struct Connection {
    client: reqwest::Client,
    url: String,
    envoy: usize,
}

impl Connection {
    async fn status(&self, key: &str) -> anyhow::Result<u16> {
        status(&self.client, &self.url, key).await
    }
}

/// Opens keep-alive connections to Envoy `envoy` (each sends every key twice) until every
/// worker holds at least [`CONNECTIONS_PER_WORKER`] of them, by Envoy's own per-worker counts.
async fn connect_every_worker(
    stack: &Stack,
    envoy: usize,
    keys: &[String],
) -> anyhow::Result<Vec<Connection>> {
    let url = format!(
        "http://{}/orders/1",
        stack.envoy_at(envoy)?.listener(Listener::Main.name())?
    );
    let mut connections = Vec::new();
    loop {
        let batch = if connections.is_empty() {
            FLEET_CONNECTIONS
        } else {
            8
        };
        for _ in 0..batch {
            let connection = Connection {
                client: client()?,
                url: url.clone(),
                envoy,
            };
            for key in keys.iter().chain(keys) {
                let s = connection.status(key).await?;
                anyhow::ensure!(s == 200, "a valid key got {s} while warming up");
            }
            connections.push(connection);
        }
        let per_worker = stack
            .envoy_at(envoy)?
            .connections_per_worker(Listener::Main.name())
            .await?;
        let held: u64 = per_worker.iter().sum();
        anyhow::ensure!(
            held == connections.len() as u64,
            "Envoy {envoy} holds {held} connections, the test opened {}: a connection was \
             replaced, so a worker may have been missed",
            connections.len()
        );
        if per_worker.iter().all(|&n| n >= CONNECTIONS_PER_WORKER) {
            println!("Envoy {envoy}: connections per worker {per_worker:?}");
            return Ok(connections);
        }
        anyhow::ensure!(
            connections.len() < MAX_FLEET_CONNECTIONS,
            "after {} connections, Envoy {envoy}'s workers hold {per_worker:?}",
            connections.len()
        );
    }
}

/// Revokes `id` through the admin API while every connection keeps sending `key`, and returns
/// how long after the revoke's 200 the slowest connection was first refused (zero for one
/// refused before the 200 arrived).
async fn revoke_and_time(
    stack: &Stack,
    connections: &[Connection],
    id: &str,
    key: &str,
) -> anyhow::Result<Duration> {
    let sending = Arc::new(Barrier::new(connections.len() + 1));
    let revoking = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let revoked_at = Arc::new(tokio::sync::OnceCell::<Instant>::new());
    let mut tasks = JoinSet::new();
    for connection in connections {
        let (connection, key) = (connection.clone(), key.to_owned());
        let (sending, revoking, revoked_at) = (
            Arc::clone(&sending),
            Arc::clone(&revoking),
            Arc::clone(&revoked_at),
        );
        tasks.spawn(async move {
            let mut first = Some(sending);
            loop {
                let s = connection.status(&key).await?;
                if let Some(sending) = first.take() {
                    // Every connection has sent once before the revoke goes out.
                    sending.wait().await;
                }
                if s == 200 {
                    if let Some(at) = revoked_at.get() {
                        anyhow::ensure!(
                            at.elapsed() < Duration::from_secs(5),
                            "Envoy {} still allows the key 5 s after the revoke",
                            connection.envoy
                        );
                    }
                } else {
                    anyhow::ensure!(
                        s == 401 && revoking.load(std::sync::atomic::Ordering::SeqCst),
                        "Envoy {}: the key got {s} before the revoke",
                        connection.envoy
                    );
                    return Ok(revoked_at.get().map_or(Duration::ZERO, Instant::elapsed));
                }
                sleep(Duration::from_millis(5)).await;
            }
        });
    }
    sending.wait().await;
    revoking.store(true, std::sync::atomic::Ordering::SeqCst);
    stack.revoke(id).await?;
    revoked_at
        .set(Instant::now())
        .map_err(|_| anyhow::anyhow!("revoke time set twice"))?;
    let mut slowest = Duration::ZERO;
    while let Some(took) = tasks.join_next().await {
        slowest = slowest.max(took??);
    }
    Ok(slowest)
}

/// The fleet test: `options` starts 2 Envoys of [`FLEET_WORKERS`] workers; [`FLEET_KEYS`] keys
/// are made hot on every worker of both (each worker holds connections that sent every key, and
/// a further round on every connection makes no lookup), then all but the last are revoked in
/// turn. Every connection must answer 401 within [`REVOCATION_BOUND`] of each revoke's 200, and
/// the key left must still be allowed everywhere. Returns the slowest delay.
async fn revoke_hot_keys_across_envoys(options: StackOptions, what: &str) -> anyhow::Result<()> {
    let stack = Stack::start_with(options).await?;
    let mut ids = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..FLEET_KEYS {
        let (id, key) = stack.create_key("acme", &["orders:read"]).await?;
        ids.push(id);
        keys.push(key);
    }
    let mut connections = Vec::new();
    for envoy in 0..2 {
        connections.extend(connect_every_worker(&stack, envoy, &keys).await?);
    }

    // Hot: another round of every key on every connection is served without a lookup.
    let lookups_before = [
        stack.counter_at(0, "keygate.callout").await?,
        stack.counter_at(1, "keygate.callout").await?,
    ];
    for connection in &connections {
        for key in &keys {
            assert_eq!(connection.status(key).await?, 200);
        }
    }
    for (envoy, before) in lookups_before.into_iter().enumerate() {
        assert_eq!(
            stack.counter_at(envoy, "keygate.callout").await?,
            before,
            "Envoy {envoy} still looks the hot keys up"
        );
    }

    let mut slowest = Duration::ZERO;
    for (id, key) in ids.iter().zip(&keys).take(FLEET_KEYS - 1) {
        let took = revoke_and_time(&stack, &connections, id, key).await?;
        println!(
            "{what}: a revoke reached all {} connections (2 Envoys x {FLEET_WORKERS} workers) \
             {} ms after its 200",
            connections.len(),
            took.as_millis()
        );
        slowest = slowest.max(took);
    }
    println!(
        "{what}: slowest of {} revocations: {} ms",
        FLEET_KEYS - 1,
        slowest.as_millis()
    );
    assert!(
        slowest < REVOCATION_BOUND,
        "{what}: the slowest connection was refused {slowest:?} after a revoke"
    );
    // Only what was revoked was dropped.
    let kept = keys.last().map(String::as_str).unwrap_or_default();
    for connection in &connections {
        assert_eq!(
            connection.status(kept).await?,
            200,
            "Envoy {}: a key never revoked is refused",
            connection.envoy
        );
    }
    for envoy in 0..2 {
        assert!(stack.counter_at(envoy, "keygate.feed_changes").await? >= 2);
    }
    Ok(())
}

/// [`StackOptions`] for the fleet: 2 Envoys × [`FLEET_WORKERS`] workers, answers cached for
/// [`LONG_TTL_SECS`] by filter and service, `revocation` as given (`null`: the defaults).
fn fleet_options(revocation: Value) -> StackOptions {
    let mut config = base_filter_config();
    config["cache"]["ttl_secs"] = Value::from(LONG_TTL_SECS);
    if !revocation.is_null() {
        config["revocation"] = revocation;
    }
    StackOptions {
        envoys: 2,
        workers: FLEET_WORKERS,
        keyservice_env: vec![(
            "KEYGATE_LOOKUP_CACHE_TTL_SECS".into(),
            LONG_TTL_SECS.to_string(),
        )],
        ..StackOptions::new(config)
    }
}

#[tokio::test]
async fn revoked_hot_keys_are_refused_by_every_worker_of_two_envoys_within_a_second(
) -> anyhow::Result<()> {
    revoke_hot_keys_across_envoys(fleet_options(Value::Null), "2 Envoys, one key service").await
}

/// Each Envoy's cluster lists a different replica of the key service, both on one PostgreSQL
/// database: keys created and revoked through replica 0 are looked up, and their changes polled,
/// through replica 1 by the second Envoy, with the feed's defaults. Replica 1's held long-poll is
/// woken by replica 0's commit (`LISTEN`/`NOTIFY`), not by its own next poll.
#[tokio::test]
async fn a_revoke_through_one_replica_reaches_an_envoy_polling_another_within_a_second(
) -> anyhow::Result<()> {
    let database = keygate_testdb::TestDatabase::create();
    let options = StackOptions {
        keyservices: 2,
        routing: keygate_e2e::Routing::OnePerEnvoy,
        keyservice_args: vec!["--database-url".into(), database.url().into()],
        ..fleet_options(Value::Null)
    };
    revoke_hot_keys_across_envoys(options, "2 Envoys, 2 replicas on one PostgreSQL").await
}

/// A role edit reaches the edge through the feed: a key whose role gains a permission is let
/// through a route needing it, and refused again when the role loses it, although the filter
/// would cache the key's answer for minutes.
#[tokio::test]
async fn editing_a_keys_role_changes_what_it_may_do_at_the_edge_within_a_second(
) -> anyhow::Result<()> {
    let stack = long_ttl_stack().await?;
    let (status_code, role) = stack
        .admin(
            reqwest::Method::POST,
            "/v1/roles",
            Some(serde_json::json!({"tenant": "acme", "name": "orders", "permissions": ["orders:read"]})),
        )
        .await?;
    assert_eq!(status_code, 201, "{role}");
    let role_path = format!("/v1/roles/{}", role["id"].as_str().unwrap_or_default());
    let key = stack
        .create_key_with(serde_json::json!({"name": "ci", "tenant": "acme", "permissions": [], "roles": ["orders"]}))
        .await?;
    let secret = key["secret"].as_str().unwrap_or_default().to_owned();
    let client = client()?;
    let read = format!("http://{}/orders/1", stack.addr(Listener::Main)?);
    let admin_route = format!("http://{}/admin/x", stack.addr(Listener::Main)?);
    assert_eq!(status(&client, &read, &secret).await?, 200);
    // Cached now, with its permissions, for LONG_TTL_SECS.
    assert_eq!(status(&client, &admin_route, &secret).await?, 403);

    for (permissions, admin_status) in [
        (vec!["orders:read", "admin"], 200),
        (vec!["orders:read"], 403),
    ] {
        let (code, body) = stack
            .admin(
                reqwest::Method::PUT,
                &role_path,
                Some(serde_json::json!({"description": "", "permissions": permissions})),
            )
            .await?;
        assert_eq!(code, 200, "{body}");
        let edited = Instant::now();
        eventually(REVOCATION_BOUND, "the role edit at the edge", || async {
            (status(&client, &admin_route, &secret).await.ok() == Some(admin_status)).then_some(())
        })
        .await;
        eprintln!(
            "role edit ({admin_status}) reached the edge in {:?}",
            edited.elapsed()
        );
    }
    assert_eq!(status(&client, &read, &secret).await?, 200);
    Ok(())
}
