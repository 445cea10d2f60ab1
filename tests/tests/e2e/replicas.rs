//! Several key service replicas on one PostgreSQL behind Envoy's key service cluster, with the
//! health checks and outlier detection README.md's "Running at scale" gives: one replica is
//! killed, and the edge goes on serving every key through the other.

use std::time::Duration;

use keygate_e2e::envoy::tail;
use keygate_e2e::{base_filter_config, Envoy, KeyService, Stack, StackOptions};
use keygate_testdb::TestDatabase;
use tokio::time::{sleep, Instant};

/// Longer than the test runs: an answer gone before this was dropped, not expired.
const LONG_TTL_SECS: u64 = 300;
/// Keys created (and made hot) through each replica before the kill.
const KEYS_PER_REPLICA: usize = 8;
/// New keys that must each be served on their first request once the cluster has moved.
const NEW_KEYS: usize = 30;
/// Health checks every 1 s with `unhealthy_threshold: 2`, and outlier detection after two
/// refused connections: the dead replica is out after about 2 s; this leaves room for a loaded
/// machine.
const TAKEN_OUT_WITHIN: Duration = Duration::from_secs(6);

/// The `health_flags` Envoy's `/clusters` reports for the key service endpoint at `replica`
/// (`healthy`, or `/failed_active_hc`, `/failed_outlier_check`…).
async fn health_flags(envoy: &Envoy, replica: &KeyService) -> anyhow::Result<String> {
    let (status, clusters) = envoy.admin_get("/clusters").await?;
    anyhow::ensure!(status == 200, "/clusters answered {status}");
    let prefix = format!("keygate_keyservice::{}::health_flags::", replica.addr());
    clusters
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no endpoint {} in /clusters", replica.addr()))
}

/// Waits until Envoy's cluster holds replica `i` healthy: its first health check at start-up,
/// or after a restart its next check and the end of its ejection.
async fn until_healthy(stack: &Stack, i: usize) -> anyhow::Result<()> {
    const PATIENCE: Duration = Duration::from_secs(20);
    let replica = stack.keyservice_at(i)?;
    let started = Instant::now();
    loop {
        let flags = health_flags(stack.envoy(), replica).await?;
        if flags == "healthy" {
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            anyhow::bail!(
                "replica {i} is still {flags} in Envoy's cluster after {PATIENCE:?}; its log \
                 ends:\n{}\nEnvoy's log ends:\n{}",
                tail(&replica.log(), 20),
                tail(&stack.envoy_log(), 20)
            );
        }
        sleep(Duration::from_millis(100)).await;
    }
}

async fn status(stack: &Stack, key: &str) -> anyhow::Result<u16> {
    Ok(stack.get("/orders/1", &[("x-api-key", key)]).await?.status)
}

/// Replica 0 is killed (SIGKILL) with keys hot at the edge and its long-poll of the feed possibly
/// held. Every cached key is served throughout; Envoy takes the dead replica out of the cluster
/// within [`TAKEN_OUT_WITHIN`]; from then on every new key, created through the survivor, is
/// served on its first request, and a revoke through the survivor still reaches the edge within
/// a second. Started again, the replica is taken back.
#[tokio::test]
async fn a_killed_replica_is_taken_out_and_the_edge_serves_every_cached_and_new_key(
) -> anyhow::Result<()> {
    let database = TestDatabase::create();
    let mut config = base_filter_config();
    config["cache"]["ttl_secs"] = LONG_TTL_SECS.into();
    let mut stack = Stack::start_with(StackOptions {
        keyservices: 2,
        keyservice_health_checks: true,
        keyservice_args: vec!["--database-url".into(), database.url().into()],
        keyservice_env: vec![
            (
                "KEYGATE_LOOKUP_CACHE_TTL_SECS".into(),
                LONG_TTL_SECS.to_string(),
            ),
            (
                "KEYGATE_LOG".into(),
                "info,keygate_keyservice::http::changes=debug".into(),
            ),
        ],
        ..StackOptions::new(config)
    })
    .await?;
    for replica in 0..2 {
        until_healthy(&stack, replica).await?;
    }

    // Keys created through either replica, looked up (round-robin over both) and cached.
    let mut hot = Vec::new();
    for replica in 0..2 {
        for _ in 0..KEYS_PER_REPLICA {
            let (id, key) = stack
                .keyservice_at(replica)?
                .create_key("acme", &["orders:read"])
                .await?;
            assert_eq!(
                status(&stack, &key).await?,
                200,
                "a new key before the kill"
            );
            hot.push((id, key));
        }
    }
    let lookups = stack.counter("keygate.callout").await?;
    for (_, key) in &hot {
        assert_eq!(status(&stack, key).await?, 200);
    }
    assert_eq!(
        stack.counter("keygate.callout").await?,
        lookups,
        "the hot keys are not served from the cache"
    );

    stack.stop_replica(0)?;
    let killed = Instant::now();
    // Cached keys do not depend on any replica.
    for (_, key) in &hot {
        assert_eq!(
            status(&stack, key).await?,
            200,
            "a cached key right after the kill"
        );
    }

    // New keys meanwhile: a lookup sent to the dead replica fails, and is sent once more; both
    // attempts may reach it (503, fail closed) until Envoy has taken it out on the main thread
    // and its workers have the new host set.
    let survivor = stack.keyservice_at(1)?;
    let dead = stack.keyservice_at(0)?;
    let mut refused_meanwhile = 0;
    let mut taken_out = None;
    loop {
        assert!(
            killed.elapsed() < TAKEN_OUT_WITHIN,
            "new keys still refused {TAKEN_OUT_WITHIN:?} after the kill (the killed replica's \
             health flags: {taken_out:?})"
        );
        if taken_out.is_none() {
            let flags = health_flags(stack.envoy(), dead).await?;
            if flags != "healthy" {
                println!(
                    "the killed replica was taken out ({flags}) {} ms after the kill",
                    killed.elapsed().as_millis()
                );
                taken_out = Some(flags);
            }
        }
        let (_, key) = survivor.create_key("acme", &["orders:read"]).await?;
        match status(&stack, &key).await? {
            200 if taken_out.is_some() => break,
            200 => {}
            503 => refused_meanwhile += 1,
            other => panic!("a new key got {other} while the replica was being taken out"),
        }
        sleep(Duration::from_millis(20)).await;
    }
    println!(
        "new keys served again {} ms after the kill; {refused_meanwhile} got 503 meanwhile",
        killed.elapsed().as_millis()
    );

    // From now on the survivor answers every lookup.
    for _ in 0..NEW_KEYS {
        let (_, key) = survivor.create_key("acme", &["orders:read"]).await?;
        let reply = stack.get("/orders/1", &[("x-api-key", &key)]).await?;
        assert_eq!(
            reply.status,
            200,
            "a new key after the dead replica was taken out: {}; Envoy's log ends:\n{}\nthe \
             survivor's log ends:\n{}",
            reply.summary(),
            tail(&stack.envoy_log(), 10),
            tail(&survivor.log(), 20)
        );
    }
    for (_, key) in &hot {
        assert_eq!(
            status(&stack, key).await?,
            200,
            "a cached key after the kill"
        );
    }

    // The feed goes on through the survivor: a revoke there reaches the edge.
    let (id, key) = &hot[0];
    survivor.revoke(id).await?;
    let revoked = Instant::now();
    while status(&stack, key).await? != 401 {
        if revoked.elapsed() > Duration::from_secs(5) {
            let mut counters = Vec::new();
            for name in ["feed_poll", "feed_poll_failure", "feed_changes", "callout"] {
                let value = stack.counter(&format!("keygate.{name}")).await?;
                counters.push(format!("{name} {value}"));
            }
            anyhow::bail!(
                "the revoked key is still allowed 5 s after the revoke; {}; Envoy's log ends:\n{}\n\
                 the survivor's log ends:\n{}",
                counters.join(", "),
                stack
                    .envoy_log()
                    .lines()
                    .filter(|line| line.contains("wasm log"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                tail(&survivor.log(), 30)
            );
        }
        sleep(Duration::from_millis(20)).await;
    }
    let took = revoked.elapsed();
    println!(
        "a revoke through the survivor refused at the edge after {} ms",
        took.as_millis()
    );
    assert!(
        took < Duration::from_secs(1),
        "a revoke through the survivor took {took:?} to reach the edge"
    );
    for (_, key) in &hot[1..] {
        assert_eq!(status(&stack, key).await?, 200, "a key never revoked");
    }

    // Back in rotation once it answers its health checks again and its ejection (the README's
    // `base_ejection_time`, 5 s) has run out.
    stack.start_replica(0).await?;
    until_healthy(&stack, 0).await?;
    drop(stack);
    drop(database);
    Ok(())
}
