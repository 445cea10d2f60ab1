//! Lookups whose client went away, batched lookups, and the circuit breaker in front of a key
//! service that is down.
//! One Envoy worker, so that every request shares one Wasm VM and its table of lookups in flight.

use std::time::{Duration, Instant};

use keygate_core::key::{ApiKey, KEY_RANDOM_BYTES};
use keygate_e2e::{base_filter_config, raw_http, Listener, Stack, StackOptions};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::sleep;

use crate::{assert_turned_away_at_once, eventually};

/// Long enough for a request to reach the filter and its lookup to go out.
const SETTLE: Duration = Duration::from_millis(300);

async fn one_worker(config: serde_json::Value) -> anyhow::Result<Stack> {
    Stack::start_with(StackOptions {
        workers: 1,
        ..StackOptions::new(config)
    })
    .await
}

/// Sends `GET /orders/1` with `key` and leaves the connection open without reading.
async fn request_and_hold(stack: &Stack, key: &str) -> anyhow::Result<TcpStream> {
    let mut conn = TcpStream::connect(stack.addr(Listener::Main)?).await?;
    let request = format!("GET /orders/1 HTTP/1.1\r\nhost: localhost\r\nx-api-key: {key}\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    Ok(conn)
}

#[tokio::test]
async fn a_request_that_joined_a_lookup_whose_sender_reset_still_gets_the_answer(
) -> anyhow::Result<()> {
    let stack = one_worker(base_filter_config()).await?;
    let (_, key) = stack.create_key("acme", &["orders:read"]).await?;

    // The key service answers nothing while frozen: the first request's lookup stays out.
    stack.keyservice().freeze()?;
    let sender = request_and_hold(&stack, &key).await?;
    sleep(SETTLE).await;
    let headers = [("x-api-key", key.as_str())];
    let waiting = stack.get("/orders/1", &headers);
    let meanwhile = async {
        sleep(SETTLE).await;
        // The sender's client goes away; Envoy cancels its callout with its stream.
        drop(sender);
        sleep(SETTLE).await;
        stack.keyservice().thaw()
    };
    let (reply, thawed) = tokio::join!(waiting, meanwhile);
    thawed?;
    let reply = reply?;
    assert_eq!(
        reply.status,
        200,
        "the waiting request got {} although the key service is healthy",
        reply.summary()
    );
    assert!(
        stack.counter("keygate.coalesced").await? >= 1,
        "it never joined"
    );
    Ok(())
}

#[tokio::test]
async fn requests_that_went_away_hold_no_place_under_max_pending_lookups() -> anyhow::Result<()> {
    let mut config = base_filter_config();
    config["key_service"]["max_pending_lookups"] = json!(2);
    let stack = one_worker(config).await?;
    let (_, first) = stack.create_key("acme", &["orders:read"]).await?;
    let (_, second) = stack.create_key("acme", &["orders:read"]).await?;
    let (_, third) = stack.create_key("acme", &["orders:read"]).await?;

    stack.keyservice().freeze()?;
    let a = request_and_hold(&stack, &first).await?;
    let b = request_and_hold(&stack, &second).await?;
    sleep(SETTLE).await;
    drop((a, b));
    sleep(SETTLE).await;
    stack.keyservice().thaw()?;

    // Well inside the lookup timeout (1 s) and its grace: before, both places were still taken
    // and this answered 503 at once.
    let reply = stack.get("/orders/1", &[("x-api-key", &third)]).await?;
    assert_eq!(reply.status, 200, "{}", reply.summary());
    Ok(())
}

#[tokio::test]
async fn with_the_key_service_down_the_breaker_bounds_the_callouts() -> anyhow::Result<()> {
    const REQUESTS: u64 = 200;
    let mut stack = Stack::start(base_filter_config()).await?;
    let (_, key) = stack.create_key("acme", &["orders:read"]).await?;
    stack.stop_keyservice()?;
    let callouts_before = stack.counter("keygate.callout").await?;

    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..REQUESTS {
        statuses.push(stack.get("/orders/1", &[("x-api-key", &key)]).await?.status);
    }
    let elapsed = started.elapsed();
    assert!(statuses.iter().all(|s| *s == 503), "statuses: {statuses:?}");
    let callouts = stack.counter("keygate.callout").await? - callouts_before;
    let skipped = stack.counter("keygate.callout_skipped").await?;
    println!(
        "{REQUESTS} requests in {elapsed:?} with the key service down: {callouts} callouts, \
         {skipped} skipped"
    );
    // 3 failed lookups open it, each of two attempts; then at most one probe per second, the
    // shortest pause (a failed probe's second attempt finds the breaker open again).
    let bound = 2 * 3 + elapsed.as_secs() + 1;
    assert!(
        callouts <= bound,
        "{callouts} callouts in {elapsed:?}, bound {bound}"
    );
    // A failed lookup is sent once more (or skipped, once the breaker is open).
    let retries = stack.counter("keygate.callout_retry").await?;
    assert!(retries >= 1, "a refused connection is worth another try");
    assert_eq!(
        callouts + skipped,
        REQUESTS + retries,
        "every attempt either called or was counted"
    );

    // The key service is back: the next probe closes the breaker.
    stack.start_keyservice().await?;
    let (stack, key) = (&stack, key.as_str());
    eventually(
        Duration::from_secs(20),
        "the key to pass once the key service is back",
        || async move {
            let reply = stack.get("/orders/1", &[("x-api-key", key)]).await.ok()?;
            (reply.status == 200).then_some(())
        },
    )
    .await;
    Ok(())
}

/// Requests waiting on lookups count under `max_waiting_requests` (with those waiting for JWT
/// keys): requests joining one lookup of a stalled key service are not capped by
/// `max_pending_lookups`, and each holds what it needs to be finished (a rewritten path may be
/// tens of KiB). Past the bound a request gets 503 at once, and one that went away frees its
/// place.
#[tokio::test]
async fn requests_joining_lookups_are_bounded_by_max_waiting_requests() -> anyhow::Result<()> {
    let mut config = base_filter_config();
    config["max_waiting_requests"] = json!(2);
    // The frozen key service's lookup stays out far longer than the test's steps.
    config["key_service"]["timeout_ms"] = json!(8_000);
    let stack = one_worker(config).await?;
    let (_, key) = stack.create_key("acme", &["orders:read"]).await?;
    let headers = [("x-api-key", key.as_str())];

    stack.keyservice().freeze()?;
    let _first = request_and_hold(&stack, &key).await?;
    let second = request_and_hold(&stack, &key).await?;
    sleep(SETTLE).await;

    // Its lookup would wait up to the 8 s timeout.
    let timeout = Duration::from_secs(8);
    assert_turned_away_at_once(&stack, "/orders/1", &headers, &key, timeout).await?;

    // The second client goes away: its place is free, and the next request waits in it and
    // gets the answer once the key service answers.
    drop(second);
    sleep(SETTLE).await;
    let waiting = stack.get("/orders/1", &headers);
    let meanwhile = async {
        sleep(SETTLE).await;
        stack.keyservice().thaw()
    };
    let (reply, thawed) = tokio::join!(waiting, meanwhile);
    thawed?;
    let reply = reply?;
    assert_eq!(reply.status, 200, "{}", reply.summary());
    Ok(())
}

/// Past `key_service.unbatched_lookups` callouts out, the misses of one event-loop turn go out
/// together as one `POST /v1/lookups` from the root context. Each request must still get its own
/// key's answer: its identity at the upstream, its permissions, its refusal. Every answer is
/// cached, and a client that goes away cancels nobody else's lookup.
#[tokio::test]
async fn batched_lookups_answer_each_request_with_its_own_key() -> anyhow::Result<()> {
    let mut config = base_filter_config();
    config["key_service"]["unbatched_lookups"] = json!(1);
    // The frozen key service's lookups stay out far longer than the test's steps.
    config["key_service"]["timeout_ms"] = json!(8_000);
    let stack = one_worker(config).await?;
    let addr = stack.addr(Listener::Main)?;

    // (key, the status it must get, the key id the upstream must see)
    let mut cases: Vec<(String, u16, Option<String>)> = Vec::new();
    for tenant in ["acme", "globex", "initech", "umbrella", "hooli", "stark"] {
        let (id, key) = stack.create_key(tenant, &["orders:read"]).await?;
        cases.push((key, 200, Some(id)));
    }
    let (_, elsewhere) = stack.create_key("acme", &["billing:read"]).await?;
    cases.push((elsewhere, 403, None));
    let (revoked_id, revoked) = stack.create_key("acme", &["orders:read"]).await?;
    stack.revoke(&revoked_id).await?;
    cases.push((revoked, 401, None));
    let never_issued = ApiKey::from_random([0x6b; KEY_RANDOM_BYTES]);
    cases.push((never_issued.expose_secret().to_owned(), 401, None));
    let (_, quitter) = stack.create_key("acme", &["orders:read"]).await?;
    let (_, holder) = stack.create_key("acme", &["orders:read"]).await?;

    // One lookup alone, held out by the frozen key service: every miss after it is batched.
    stack.keyservice().freeze()?;
    let _held = request_and_hold(&stack, &holder).await?;
    sleep(SETTLE).await;
    let gone = request_and_hold(&stack, &quitter).await?;
    let replies: Vec<_> = cases
        .iter()
        .map(|(key, _, _)| {
            let key = key.clone();
            tokio::spawn(async move {
                raw_http::send(addr, "GET", "/orders/1", &[("x-api-key", &key)]).await
            })
        })
        .collect();
    sleep(SETTLE).await;
    // A batched request's client goes away before the answer: the batch is the root's, so
    // nobody else's lookup is cancelled with it.
    drop(gone);
    sleep(SETTLE).await;
    stack.keyservice().thaw()?;

    for ((key, status, id), reply) in cases.iter().zip(replies) {
        let reply = reply.await??;
        let shown = &key[..10];
        assert_eq!(reply.status, *status, "{shown}…: {}", reply.summary());
        let seen = reply
            .upstream()
            .and_then(|u| u.header("x-keygate-key-id").map(str::to_owned));
        assert_eq!(&seen, id, "{shown}… reached the upstream as someone else");
    }
    let batched = stack.counter("keygate.lookup_batch_keys").await?;
    let batches = stack.counter("keygate.lookup_batch").await?;
    let callouts = stack.counter("keygate.callout").await?;
    println!("{batched} keys in {batches} batches, {callouts} callouts in all");
    assert_eq!(
        batched,
        u64::try_from(cases.len() + 1)?,
        "every miss after the held one went in a batch"
    );
    assert_eq!(callouts, 1 + batches, "one callout alone, the rest batched");

    // Every answer of the batches was cached, the quitter's included: nothing is looked up again.
    for (key, status, _) in &cases {
        let reply = stack.get("/orders/1", &[("x-api-key", key)]).await?;
        assert_eq!(reply.status, *status, "{}", reply.summary());
    }
    let reply = stack.get("/orders/1", &[("x-api-key", &quitter)]).await?;
    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert_eq!(stack.counter("keygate.callout").await?, callouts);
    Ok(())
}

/// The root context sends a batch as soon as the worker's event-loop turn ends (woken through the
/// worker's shared queue), not at its next tick. With every lookup batched and the tick at 1 s,
/// 20 new keys one after another would wait about 10 s for ticks; woken, they take a few
/// milliseconds each.
#[tokio::test]
async fn a_batch_goes_out_when_its_turn_ends_not_at_the_next_tick() -> anyhow::Result<()> {
    const KEYS: u64 = 20;
    let mut config = base_filter_config();
    config["key_service"]["unbatched_lookups"] = json!(0);
    // Without the revocation feed (or a remote JWKS) the tick is 1 s.
    config["revocation"] = json!({"enabled": false});
    let stack = one_worker(config).await?;
    let mut keys = Vec::new();
    for _ in 0..KEYS {
        keys.push(stack.create_key("acme", &["orders:read"]).await?.1);
    }

    let started = Instant::now();
    for key in &keys {
        let reply = stack.get("/orders/1", &[("x-api-key", key)]).await?;
        assert_eq!(reply.status, 200, "{}", reply.summary());
    }
    let elapsed = started.elapsed();
    assert_eq!(
        stack.counter("keygate.lookup_batch").await?,
        KEYS,
        "each lookup went out as a batch of its own"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "{KEYS} batched lookups took {elapsed:?}: they waited for ticks"
    );
    Ok(())
}
