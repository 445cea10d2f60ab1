//! Who gets through: credentials in each place the filter takes them, each way a key can be
//! invalid, permissions, public routes, and what the upstream gets to see.

use std::time::Duration;

use keygate_core::key::{ApiKey, KEY_RANDOM_BYTES};
use keygate_e2e::{base_filter_config, Stack};
use reqwest::Method;
use serde_json::json;
use tokio::time::{sleep, Instant};

use crate::{assert_unauthorized, eventually, CHALLENGE};

/// Well-formed (the checksum holds) but never issued.
fn unknown_key() -> String {
    ApiKey::from_random([0x5a; KEY_RANDOM_BYTES])
        .expose_secret()
        .to_owned()
}

/// `key` with one checksum character changed: malformed, caught without a callout.
fn with_bad_checksum(key: &str) -> String {
    let (stem, last) = key.split_at(key.len() - 1);
    format!("{stem}{}", if last == "0" { "1" } else { "0" })
}

#[tokio::test]
async fn request_without_a_key_is_rejected_with_401_and_a_challenge() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;

    let reply = stack.get("/orders/42", &[]).await?;

    assert_unauthorized(&reply, "missing_credential", None);
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        !challenge.contains("error="),
        "no credential was sent, so no error: {challenge:?}"
    );
    assert!(stack.upstream_requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn valid_key_reaches_the_upstream_with_identity_headers_and_without_the_key(
) -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let (id, secret) = stack.create_key("acme", &["orders:read"]).await?;

    let reply = stack.get("/orders/42", &[("x-api-key", &secret)]).await?;

    assert_eq!(reply.status, 200, "{}", reply.summary());
    let upstream = reply
        .upstream()
        .expect("the answer comes from the upstream");
    assert_eq!(upstream.path, "/orders/42");
    assert_eq!(upstream.header("x-keygate-key-id"), Some(id.as_str()));
    assert_eq!(upstream.header("x-keygate-tenant"), Some("acme"));
    assert_eq!(
        upstream.header("x-keygate-permissions"),
        Some("orders:read")
    );
    assert_eq!(upstream.header("x-keygate-auth"), Some("api_key"));
    assert_eq!(
        upstream.header("x-api-key"),
        None,
        "the key reached the upstream"
    );
    assert!(
        !reply.body.contains(&secret),
        "the key reached the upstream: {}",
        reply.body
    );
    Ok(())
}

#[tokio::test]
async fn key_in_the_query_is_accepted_and_cut_out_of_the_path() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let (_, secret) = stack.create_key("acme", &["orders:read"]).await?;

    let reply = stack
        .get(&format!("/orders/42?api_key={secret}&a=1"), &[])
        .await?;

    assert_eq!(reply.status, 200, "{}", reply.summary());
    let upstream = reply
        .upstream()
        .expect("the answer comes from the upstream");
    assert_eq!(upstream.path, "/orders/42?a=1");
    assert_eq!(upstream.header("x-keygate-tenant"), Some("acme"));
    Ok(())
}

#[tokio::test]
async fn key_as_a_bearer_token_is_accepted_and_not_forwarded() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let (id, secret) = stack.create_key("acme", &["orders:read"]).await?;

    let reply = stack
        .get(
            "/orders/42",
            &[("authorization", &format!("Bearer {secret}"))],
        )
        .await?;

    assert_eq!(reply.status, 200, "{}", reply.summary());
    let upstream = reply
        .upstream()
        .expect("the answer comes from the upstream");
    assert_eq!(upstream.header("x-keygate-key-id"), Some(id.as_str()));
    assert_eq!(
        upstream.header("authorization"),
        None,
        "the key reached the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_key_is_rejected_with_401() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let key = unknown_key();

    let reply = stack.get("/orders/42", &[("x-api-key", &key)]).await?;

    assert_unauthorized(&reply, "unknown_key", Some(&key));
    assert!(stack.upstream_requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn key_with_a_bad_checksum_is_rejected_with_401() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let (_, secret) = stack.create_key("acme", &["orders:read"]).await?;
    let broken = with_bad_checksum(&secret);

    let reply = stack.get("/orders/42", &[("x-api-key", &broken)]).await?;

    assert_unauthorized(&reply, "malformed_key", Some(&broken));
    Ok(())
}

#[tokio::test]
async fn malformed_key_is_rejected_without_a_callout() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let (_, secret) = stack.create_key("acme", &["orders:read"]).await?;
    // One real lookup first, so the callout counter exists and its reading means something.
    let reply = stack.get("/orders/42", &[("x-api-key", &secret)]).await?;
    assert_eq!(reply.status, 200, "{}", reply.summary());
    let callouts = stack.counter("keygate.callout").await?;
    assert!(callouts >= 1, "the valid key made no callout?");

    for malformed in [
        with_bad_checksum(&secret),
        "kg_short".to_owned(),
        secret.to_uppercase(),
    ] {
        let reply = stack
            .get("/orders/42", &[("x-api-key", &malformed)])
            .await?;
        assert_unauthorized(&reply, "malformed_key", Some(&malformed));
    }

    assert_eq!(
        stack.counter("keygate.callout").await?,
        callouts,
        "a malformed key made a callout"
    );
    Ok(())
}

#[tokio::test]
async fn expired_key_is_rejected_with_401_even_if_it_was_cached() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let created = stack
        .create_key_with(json!({"name": "short", "tenant": "acme", "permissions": ["orders:read"], "expires_in_secs": 3}))
        .await?;
    let created_at = Instant::now();
    let secret = created["secret"].as_str().expect("secret").to_owned();

    // Valid now, and cached (the cache TTL is 60 s): the filter must not serve it past expiry.
    let reply = stack.get("/orders/42", &[("x-api-key", &secret)]).await?;
    assert_eq!(reply.status, 200, "{}", reply.summary());

    // Real time has to pass here; one extra second covers expiry being stored in whole seconds.
    sleep((created_at + Duration::from_secs(4)).saturating_duration_since(Instant::now())).await;

    let reply = stack.get("/orders/42", &[("x-api-key", &secret)]).await?;
    assert_unauthorized(&reply, "expired_key", Some(&secret));
    Ok(())
}

#[tokio::test]
async fn revoked_key_is_rejected_with_401_once_the_cache_entry_ends() -> anyhow::Result<()> {
    const TTL_SECS: u64 = 2;
    let mut config = base_filter_config();
    config["cache"]["ttl_secs"] = json!(TTL_SECS);
    let stack = Stack::start(config).await?;
    let (id, secret) = stack.create_key("acme", &["orders:read"]).await?;
    let reply = stack.get("/orders/42", &[("x-api-key", &secret)]).await?;
    assert_eq!(reply.status, 200, "{}", reply.summary());

    stack.revoke(&id).await?;
    let revoked_at = Instant::now();
    let (stack, key) = (&stack, secret.as_str());
    let reply = eventually(
        Duration::from_secs(TTL_SECS + 10),
        "the revoked key to be refused",
        || async move {
            let reply = stack.get("/orders/42", &[("x-api-key", key)]).await.ok()?;
            (reply.status != 200).then_some(reply)
        },
    )
    .await;
    let took = revoked_at.elapsed();

    println!("revocation took effect after {took:?} (filter cache ttl_secs {TTL_SECS})");
    assert_unauthorized(&reply, "revoked_key", Some(&secret));
    assert!(
        took <= Duration::from_millis(TTL_SECS * 1000 + 1500),
        "revocation took {took:?}, more than the cache TTL of {TTL_SECS} s"
    );
    Ok(())
}

#[tokio::test]
async fn key_without_the_route_permission_is_refused_with_403() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let (_, secret) = stack.create_key("acme", &["orders:read"]).await?;

    let post = stack
        .request(Method::POST, "/orders", &[("x-api-key", &secret)])
        .await?;
    let admin = stack.get("/admin/users", &[("x-api-key", &secret)]).await?;

    for (reply, missing) in [(post, "orders:write"), (admin, "admin")] {
        assert_eq!(reply.status, 403, "{}", reply.summary());
        assert_eq!(reply.json()["error"], "forbidden");
        assert_eq!(reply.json()["missing_permissions"], json!([missing]));
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with(CHALLENGE),
            "WWW-Authenticate: {challenge:?}"
        );
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "WWW-Authenticate: {challenge:?}"
        );
    }
    assert!(stack.upstream_requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn public_routes_are_served_without_a_key() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;

    for path in ["/healthz", "/public/info", "/public/deep/er?x=1"] {
        let reply = stack.get(path, &[]).await?;
        assert_eq!(reply.status, 200, "{path}: {}", reply.summary());
        let upstream = reply
            .upstream()
            .expect("the answer comes from the upstream");
        assert_eq!(upstream.path, path);
        assert_eq!(upstream.header("x-keygate-key-id"), None);
    }
    Ok(())
}

#[tokio::test]
async fn unmatched_route_is_denied_even_with_a_valid_key() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let (_, secret) = stack.create_key("acme", &["orders:read"]).await?;

    let anonymous = stack.get("/elsewhere", &[]).await?;
    let with_key = stack.get("/elsewhere", &[("x-api-key", &secret)]).await?;

    for reply in [anonymous, with_key] {
        assert!(
            matches!(reply.status, 401 | 403 | 404),
            "{}",
            reply.summary()
        );
    }
    assert!(stack.upstream_requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn identity_headers_sent_by_the_client_are_removed() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let (id, secret) = stack.create_key("acme", &["orders:read"]).await?;
    let spoofed = [
        ("x-keygate-tenant", "evil"),
        ("x-keygate-key-id", "key_0000000000000000"),
        ("x-keygate-permissions", "admin"),
        ("X-Keygate-Auth", "api_key"),
    ];

    let public = stack.get("/public/info", &spoofed).await?;
    let mut with_key = spoofed.to_vec();
    with_key.push(("x-api-key", &secret));
    let protected = stack.get("/orders/42", &with_key).await?;

    assert_eq!(public.status, 200, "{}", public.summary());
    let upstream = public
        .upstream()
        .expect("the answer comes from the upstream");
    let leaked: Vec<_> = upstream
        .headers
        .keys()
        .filter(|h| h.starts_with("x-keygate-"))
        .collect();
    assert!(
        leaked.is_empty(),
        "client-sent identity headers reached the upstream: {leaked:?}"
    );

    assert_eq!(protected.status, 200, "{}", protected.summary());
    let upstream = protected
        .upstream()
        .expect("the answer comes from the upstream");
    assert_eq!(upstream.header("x-keygate-tenant"), Some("acme"));
    assert_eq!(upstream.header("x-keygate-key-id"), Some(id.as_str()));
    assert_eq!(
        upstream.header("x-keygate-permissions"),
        Some("orders:read")
    );
    Ok(())
}

#[tokio::test]
async fn two_different_credentials_are_rejected_as_ambiguous() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let (_, first) = stack.create_key("acme", &["orders:read"]).await?;
    let (_, second) = stack.create_key("acme", &["orders:read"]).await?;

    let header_and_query = stack
        .get(
            &format!("/orders/42?api_key={second}"),
            &[("x-api-key", &first)],
        )
        .await?;
    let header_and_bearer = stack
        .get(
            "/orders/42",
            &[
                ("x-api-key", &first),
                ("authorization", &format!("Bearer {second}")),
            ],
        )
        .await?;

    assert_unauthorized(&header_and_query, "ambiguous_credential", Some(&first));
    assert_unauthorized(&header_and_bearer, "ambiguous_credential", Some(&first));
    assert!(stack.upstream_requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn repeated_query_keys_with_different_values_are_rejected() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    let (_, first) = stack.create_key("acme", &["orders:read"]).await?;
    let (_, second) = stack.create_key("acme", &["orders:read"]).await?;

    let reply = stack
        .get(&format!("/orders/42?api_key={first}&api_key={second}"), &[])
        .await?;

    assert_unauthorized(&reply, "ambiguous_credential", Some(&first));
    assert!(stack.upstream_requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn only_the_chosen_identity_headers_reach_the_upstream_and_spoofed_ones_never(
) -> anyhow::Result<()> {
    let mut config = base_filter_config();
    config["forwarding"] = json!({"identity_headers": ["key-id", "tenant"]});
    let stack = Stack::start(config).await?;
    let (id, secret) = stack.create_key("acme", &["orders:read"]).await?;

    // The client sends the headers the filter was told not to set: they must not survive.
    let reply = stack
        .get(
            "/orders/42",
            &[
                ("x-api-key", &secret),
                ("x-keygate-permissions", "admin"),
                ("x-keygate-auth", "jwt"),
            ],
        )
        .await?;

    assert_eq!(reply.status, 200, "{}", reply.summary());
    let upstream = reply
        .upstream()
        .expect("the answer comes from the upstream");
    let mut identity: Vec<_> = upstream
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with("x-keygate-"))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    identity.sort_unstable();
    assert_eq!(
        identity,
        [
            ("x-keygate-key-id", id.as_str()),
            ("x-keygate-tenant", "acme")
        ]
    );
    Ok(())
}
