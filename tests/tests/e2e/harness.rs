//! The harness on its own, with an Envoy that has no filter (tests/fixtures/passthrough.yaml): when
//! these pass and others fail, the failure is in keygate, not in the test machinery.

use std::time::Duration;

use keygate_core::key::ApiKey;
use keygate_e2e::{spawn_echo, Envoy, Listener, Stack, StackOptions};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn echo_upstream_answers_with_what_it_received() -> anyhow::Result<()> {
    let (addr, echo) = spawn_echo().await?;
    let client = reqwest::Client::builder().no_proxy().build()?;

    let response = client
        .post(format!("http://{addr}/a/b?c=1&d"))
        .header("x-one", "1")
        .header("x-twice", "a")
        .header("x-twice", "b")
        .body("ignored")
        .send()
        .await?;

    assert_eq!(response.status(), 200);
    let echoed: keygate_e2e::EchoedRequest = response.json().await?;
    assert_eq!(echoed.method, "POST");
    assert_eq!(echoed.path, "/a/b?c=1&d");
    assert_eq!(echoed.header("x-one"), Some("1"));
    assert_eq!(echoed.header("X-Twice"), Some("a, b"));
    assert_eq!(echo.requests(), vec![echoed]);
    Ok(())
}

#[tokio::test]
async fn harness_runs_a_whole_stack_without_the_filter() -> anyhow::Result<()> {
    let mut stack = Stack::start_with(StackOptions::passthrough()).await?;

    // Envoy to the upstream, through both listeners.
    let reply = stack.get("/anything?x=1", &[("x-test", "yes")]).await?;
    assert_eq!(reply.status, 200, "{}", reply.summary());
    let upstream = reply
        .upstream()
        .expect("the answer comes from the upstream");
    assert_eq!(upstream.path, "/anything?x=1");
    assert_eq!(upstream.header("x-test"), Some("yes"));
    // The raw client sends dot segments as they are; only the main listener normalises them.
    let raw = stack
        .raw(Listener::Raw, "GET", "/public/../admin/x", &[])
        .await?;
    assert_eq!(
        raw.upstream().map(|u| u.path).as_deref(),
        Some("/public/../admin/x"),
        "{}",
        raw.summary()
    );
    let main = stack
        .raw(Listener::Main, "GET", "/public/../admin/x", &[])
        .await?;
    assert_eq!(
        main.upstream().map(|u| u.path).as_deref(),
        Some("/admin/x"),
        "{}",
        main.summary()
    );
    assert_eq!(stack.upstream_requests().len(), 3);

    // The key service's admin API.
    let (id, secret) = stack.create_key("acme", &["orders:read"]).await?;
    assert!(ApiKey::parse(&secret).is_ok(), "not a keygate key");
    stack.revoke(&id).await?;
    let (status, view) = stack
        .admin(Method::GET, &format!("/v1/keys/{id}"), None)
        .await?;
    assert_eq!(
        (status, view["status"].as_str()),
        (200, Some("revoked")),
        "{view}"
    );
    assert_eq!(stack.usage(&id).await?["total"], 0);

    // Its token endpoint: a client, a token, a narrowed token, and no token once revoked.
    let (client_id, client_secret) = stack.create_client("acme", &["orders:read", "x"]).await?;
    let token = stack.token(&client_id, &client_secret, None).await?;
    assert_eq!(token.split('.').count(), 3, "not a compact JWT: {token}");
    let (status, narrowed) = stack
        .token_request(&client_id, &client_secret, Some("orders:read"))
        .await?;
    assert_eq!((status, &narrowed["scope"]), (200, &json!("orders:read")));
    stack.revoke_client(&client_id).await?;
    let (status, _) = stack
        .token_request(&client_id, &client_secret, None)
        .await?;
    assert_eq!(status, 401, "a revoked client got a token");

    // Stop and start the key service: same port, same database.
    stack.stop_keyservice()?;
    let down = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    assert!(
        down.get(stack.keyservice().url("/healthz"))
            .send()
            .await
            .is_err(),
        "still answering"
    );
    stack.start_keyservice().await?;
    let (status, _) = stack
        .admin(Method::GET, &format!("/v1/keys/{id}"), None)
        .await?;
    assert_eq!(status, 200, "the key is gone after a restart");

    // Envoy's admin: readiness, stats, log.
    assert!(stack.envoy_ready().await);
    assert!(stack.counter("main.downstream_rq_total").await? >= 1);
    assert!(stack.stats().await?.contains_key("server.live"));
    assert!(!stack.envoy_log().is_empty());
    Ok(())
}

#[tokio::test]
async fn envoy_validate_accepts_a_good_config_and_reports_a_bad_one() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackOptions::passthrough()).await?;
    Envoy::validate(stack.config_path())?;

    let broken = tempfile::NamedTempFile::new()?;
    std::fs::write(
        broken.path(),
        "static_resources: {clusters: [{name: x, type: NOPE}]}\n",
    )?;
    let error = Envoy::validate(broken.path()).expect_err("a broken config validated");
    assert!(format!("{error:#}").contains("NOPE"), "{error:#}");
    Ok(())
}
