//! JWT bearer tokens: the key service's own access tokens and an external IdP's (the stand-in of
//! tests/src/idp.rs), verified by the filter with JWKS it fetches through Envoy clusters. Key
//! rotation, the IdP going away, each way a token is refused, and the verified-token cache.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use keygate_e2e::idp::{self, IdpKey};
use keygate_e2e::stack::{IDP_PROVIDER, KEYSERVICE_PROVIDER};
use keygate_e2e::{
    base_filter_config, idp_provider, jwt_filter_config, keyservice_provider, raw_http,
    EchoedRequest, Listener, Reply, Stack, StackOptions,
};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::{
    assert_turned_away_at_once, assert_unauthorized, eventually, flushed_counter, CHALLENGE,
};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// [`idp_provider`] with a 10 s refresh (the shortest allowed) and unknown-kid refetches never
/// held back, so rotations show within seconds.
fn fast_idp_provider() -> Value {
    let mut provider = idp_provider();
    provider["jwks"]["remote"]["refresh_secs"] = json!(REFRESH_SECS);
    provider["jwks"]["remote"]["min_refetch_interval_secs"] = json!(0);
    provider
}
const REFRESH_SECS: u64 = 10;

/// [`base_filter_config`] with `providers` only.
fn config_with(providers: &[Value]) -> Value {
    let mut config = base_filter_config();
    config["jwt"] = json!({ "providers": providers });
    config
}

/// The upstream's view of an allowed request.
fn upstream_of(reply: &Reply) -> EchoedRequest {
    assert_eq!(reply.status, 200, "{}", reply.summary());
    reply
        .upstream()
        .expect("the answer comes from the upstream")
}

fn permissions_of(upstream: &EchoedRequest) -> BTreeSet<&str> {
    upstream
        .header("x-keygate-permissions")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .collect()
}

/// A 401 `invalid_token` whose `detail` is `detail`.
fn assert_invalid_token(reply: &Reply, detail: &str, token: &str) {
    assert_unauthorized(reply, "invalid_token", Some(token));
    assert_eq!(reply.json()["detail"], detail, "{}", reply.summary());
}

/// A 403 for a permission the credential lacks.
fn assert_insufficient_scope(reply: &Reply, missing: &[&str]) {
    assert_eq!(reply.status, 403, "{}", reply.summary());
    assert_eq!(reply.json()["error"], "forbidden", "{}", reply.summary());
    assert_eq!(
        reply.json()["reason"],
        "insufficient_permissions",
        "{}",
        reply.summary()
    );
    assert_eq!(reply.json()["missing_permissions"], json!(missing));
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(CHALLENGE) && challenge.contains("error=\"insufficient_scope\""),
        "WWW-Authenticate: {challenge:?}"
    );
    assert!(reply.upstream().is_none(), "a 403 came from the upstream");
}

/// `token` with its payload replaced by `change(payload)`, the header and signature kept.
fn with_payload(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url payload"))
            .expect("JSON payload");
    change(&mut payload);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).expect("JSON"));
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// `token` with one character in the middle of its signature changed.
fn with_tampered_signature(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').expect("three parts");
    let mut signature = signature.as_bytes().to_vec();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == b'A' {
        b'B'
    } else {
        b'A'
    };
    format!("{signed}.{}", String::from_utf8(signature).expect("ASCII"))
}

/// An unsigned token (`alg: none`) with otherwise valid claims.
fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("JSON"));
    format!("{header}.{payload}.")
}

#[tokio::test]
async fn key_service_token_reaches_the_upstream_as_the_client_without_the_token(
) -> anyhow::Result<()> {
    let stack = Stack::start(jwt_filter_config()).await?;
    let (client_id, secret) = stack
        .create_client("acme", &["orders:read", "orders:write"])
        .await?;
    let token = stack.token(&client_id, &secret, None).await?;

    let get = stack
        .get("/orders/42", &[("authorization", &bearer(&token))])
        .await?;
    let post = stack
        .request(
            Method::POST,
            "/orders",
            &[("authorization", &bearer(&token))],
        )
        .await?;
    let admin = stack
        .get("/admin/users", &[("authorization", &bearer(&token))])
        .await?;

    let upstream = upstream_of(&get);
    assert_eq!(upstream.header("x-keygate-auth"), Some("jwt"));
    assert_eq!(
        upstream.header("x-keygate-subject"),
        Some(client_id.as_str())
    );
    assert_eq!(
        upstream.header("x-keygate-provider"),
        Some(KEYSERVICE_PROVIDER)
    );
    assert_eq!(upstream.header("x-keygate-tenant"), Some("acme"));
    assert_eq!(
        permissions_of(&upstream),
        BTreeSet::from(["orders:read", "orders:write"])
    );
    assert_eq!(
        upstream.header("authorization"),
        None,
        "the token reached the upstream"
    );
    assert!(!get.body.contains(&token), "the token reached the upstream");
    upstream_of(&post);
    assert_insufficient_scope(&admin, &["admin"]);
    Ok(())
}

#[tokio::test]
async fn token_narrowed_by_scope_lacks_the_other_permissions_and_gets_403() -> anyhow::Result<()> {
    let stack = Stack::start(jwt_filter_config()).await?;
    let (client_id, secret) = stack
        .create_client("acme", &["orders:read", "orders:write"])
        .await?;
    let token = stack
        .token(&client_id, &secret, Some("orders:read"))
        .await?;

    let read = stack
        .get("/orders/42", &[("authorization", &bearer(&token))])
        .await?;
    let write = stack
        .request(
            Method::POST,
            "/orders",
            &[("authorization", &bearer(&token))],
        )
        .await?;

    assert_eq!(
        permissions_of(&upstream_of(&read)),
        BTreeSet::from(["orders:read"])
    );
    assert_insufficient_scope(&write, &["orders:write"]);
    Ok(())
}

#[tokio::test]
async fn revoked_client_can_no_longer_get_tokens() -> anyhow::Result<()> {
    let stack = Stack::start(jwt_filter_config()).await?;
    let (client_id, secret) = stack.create_client("acme", &["orders:read"]).await?;
    let issued = stack.token(&client_id, &secret, None).await?;

    stack.revoke_client(&client_id).await?;
    let (status, body) = stack.token_request(&client_id, &secret, None).await?;

    assert_eq!(
        (status, &body["error"]),
        (401, &json!("invalid_client")),
        "{body}"
    );
    assert!(body.get("access_token").is_none(), "{body}");
    // A token issued before the revocation is self-contained and lives out its short TTL.
    let reply = stack
        .get("/orders/1", &[("authorization", &bearer(&issued))])
        .await?;
    upstream_of(&reply);
    Ok(())
}

#[tokio::test]
async fn idp_token_passes_with_the_jwks_the_idp_serves() -> anyhow::Result<()> {
    let stack = Stack::start(jwt_filter_config()).await?;
    let token = stack
        .idp_key()
        .token("svc-billing", "globex", &["orders:read"])?;

    let reply = stack
        .get("/orders/7", &[("authorization", &bearer(&token))])
        .await?;

    let upstream = upstream_of(&reply);
    assert_eq!(upstream.header("x-keygate-auth"), Some("jwt"));
    assert_eq!(upstream.header("x-keygate-provider"), Some(IDP_PROVIDER));
    assert_eq!(upstream.header("x-keygate-subject"), Some("svc-billing"));
    assert_eq!(upstream.header("x-keygate-tenant"), Some("globex"));
    assert_eq!(permissions_of(&upstream), BTreeSet::from(["orders:read"]));
    assert_eq!(upstream.header("authorization"), None);
    assert!(stack.idp().jwks_requests() >= 1, "the IdP was never asked");
    assert!(stack.counter("keygate.jwks_fetch").await? >= 1);
    Ok(())
}

#[tokio::test]
async fn request_sent_before_any_keys_are_loaded_waits_for_the_first_fetch() -> anyhow::Result<()> {
    let mut provider = idp_provider();
    // Long enough for the held fetch to still be in flight when the test releases it.
    provider["jwks"]["remote"]["timeout_ms"] = json!(8000);
    let options = StackOptions {
        hold_idp_jwks: true,
        ..StackOptions::new(config_with(&[provider]))
    };
    let stack = Stack::start_with(options).await?;
    let token = stack.idp_key().token("svc", "acme", &["orders:read"])?;

    let header = bearer(&token);
    let headers = [("authorization", header.as_str())];
    let stack = &stack;
    let request = stack.get("/orders/1", &headers);
    let release = async {
        // The request is inside Envoy and the filter's first fetch is at the IdP, unanswered:
        // nobody can have keys yet. Then the IdP answers.
        eventually(
            Duration::from_secs(20),
            "the request and the first JWKS fetch to be in flight",
            || async move {
                let active = stack.counter("main.downstream_rq_active").await.ok()?;
                (active >= 1 && stack.idp().jwks_requests() >= 1).then_some(())
            },
        )
        .await;
        stack.idp().release();
    };
    let (reply, ()) = tokio::join!(request, release);

    let upstream = upstream_of(&reply?);
    assert_eq!(upstream.header("x-keygate-subject"), Some("svc"));
    Ok(())
}

/// The requests waiting for a provider's keys are bounded per worker: each holds its token, so
/// without a bound a flood of tokens sent while the IdP cannot answer would fill the VM's memory
/// and stop the filter. Past `max_waiting_requests` a request gets 503 at once; a token
/// longer than its provider's `max_token_bytes` gets 401 at once rather than waiting; and a
/// waiting client that goes away frees its place.
#[tokio::test]
async fn requests_waiting_for_keys_are_bounded_and_the_rest_are_answered_at_once(
) -> anyhow::Result<()> {
    let mut provider = idp_provider();
    // Requests wait for the held first fetch up to this plus 2 s: far longer than the test's
    // steps before it releases the IdP.
    provider["jwks"]["remote"]["timeout_ms"] = json!(12_000);
    provider["max_token_bytes"] = json!(2_048);
    // The key service's provider takes tokens up to 8 KiB.
    let mut config = config_with(&[provider, keyservice_provider()]);
    config["max_waiting_requests"] = json!(2);
    // The bound is per worker: one worker takes every request.
    let options = StackOptions {
        hold_idp_jwks: true,
        workers: 1,
        ..StackOptions::new(config)
    };
    let stack = Stack::start_with(options).await?;
    let token = stack.idp_key().token("svc", "acme", &["orders:read"])?;
    let addr = stack.addr(Listener::Main)?;
    let wait = |token: &str| {
        let header = bearer(token);
        tokio::spawn(async move {
            raw_http::send(addr, "GET", "/orders/1", &[("authorization", &header)]).await
        })
    };
    let stack = &stack;
    let waiting = |n: u64| async move {
        eventually(
            Duration::from_secs(20),
            &format!("{n} requests waiting for the first JWKS fetch"),
            || async move {
                let active = stack.counter("main.downstream_rq_active").await.ok()?;
                (active == n && stack.idp().jwks_requests() >= 1).then_some(())
            },
        )
        .await;
    };

    let first = wait(&token);
    let second = wait(&token);
    waiting(2).await;

    // The bound is reached: a third request is answered 503 at once, not at the deadline.
    let header = bearer(&token);
    let deadline = Duration::from_secs(14);
    assert_turned_away_at_once(
        stack,
        "/orders/1",
        &[("authorization", &header)],
        &token,
        deadline,
    )
    .await?;

    // A token longer than its provider takes is refused at once, by its size alone, rather
    // than waiting for keys (or, here, being turned away as one too many): whether no provider
    // takes it (over 8 KiB) or only its own does not (over 2 KiB).
    for pad in [9_000, 3_000] {
        let long = with_payload(&token, |p| p["pad"] = json!("x".repeat(pad)));
        let reply = stack
            .get("/orders/1", &[("authorization", &bearer(&long))])
            .await?;
        assert_invalid_token(&reply, "too_large", &long);
    }

    // The first client goes away: its place is free, and the next request waits in it.
    first.abort();
    waiting(1).await;
    let fourth = wait(&token);
    waiting(2).await;

    stack.idp().release();
    for reply in [second.await??, fourth.await??] {
        assert_eq!(upstream_of(&reply).header("x-keygate-subject"), Some("svc"));
    }
    assert!(stack.envoy_ready().await, "Envoy is not ready any more");
    Ok(())
}

#[tokio::test]
async fn idp_key_rotation_new_kid_passes_at_once_and_old_key_until_it_is_dropped(
) -> anyhow::Result<()> {
    let stack = Stack::start(config_with(&[fast_idp_provider()])).await?;
    let old = stack.idp_key();
    let old_token = |stack: &Stack| stack.idp_key().token("svc", "acme", &["orders:read"]);
    let seen = old.token("svc", "acme", &["orders:read"])?;
    upstream_of(
        &stack
            .get("/orders/1", &[("authorization", &bearer(&seen))])
            .await?,
    );

    // The IdP publishes a new key and signs with it: the unknown kid pulls a refetch while the
    // request waits, so the new token passes at once.
    let new = IdpKey::generate("idp-key-2")?;
    stack.idp().publish(&[old, &new]);
    let fetches = stack.idp().jwks_requests();
    let new_token = new.token("svc", "acme", &["orders:read"])?;
    let reply = stack
        .get("/orders/1", &[("authorization", &bearer(&new_token))])
        .await?;
    upstream_of(&reply);
    assert!(
        stack.idp().jwks_requests() > fetches,
        "the new kid passed without a refetch?"
    );
    // The old key is still published: new tokens signed with it pass too.
    upstream_of(
        &stack
            .get(
                "/orders/1",
                &[("authorization", &bearer(&old_token(&stack)?))],
            )
            .await?,
    );

    // The IdP drops the old key. The filter keeps it until its next refresh; after that, a token
    // it has never seen signed with the old key is refused.
    stack.idp().publish(&[&new]);
    let dropped_at = Instant::now();
    let (refused, token) = eventually(
        Duration::from_secs(REFRESH_SECS + 20),
        "a new token signed with the dropped key to be refused",
        || async {
            let token = old_token(&stack).ok()?;
            let reply = stack
                .get("/orders/1", &[("authorization", &bearer(&token))])
                .await
                .ok()?;
            (reply.status != 200).then_some((reply, token))
        },
    )
    .await;
    let took = dropped_at.elapsed();
    println!("the dropped key was refused after {took:?} (refresh_secs {REFRESH_SECS})");
    assert_invalid_token(&refused, "unknown_kid", &token);
    assert!(
        took <= Duration::from_secs(REFRESH_SECS + 10),
        "the dropped key was still accepted {took:?} later, refresh_secs is {REFRESH_SECS}"
    );

    // New-key tokens keep passing. A token verified before the drop is not served from the
    // verified-token cache: cached answers hold only for the keys that produced them.
    upstream_of(
        &stack
            .get(
                "/orders/1",
                &[(
                    "authorization",
                    &bearer(&new.token("svc", "acme", &["orders:read"])?),
                )],
            )
            .await?,
    );
    let again = stack
        .get("/orders/1", &[("authorization", &bearer(&seen))])
        .await?;
    assert_invalid_token(&again, "unknown_kid", &seen);
    Ok(())
}

#[tokio::test]
async fn with_the_idp_down_keys_already_fetched_keep_working() -> anyhow::Result<()> {
    let mut stack = Stack::start(config_with(&[fast_idp_provider()])).await?;
    let token = |stack: &Stack| stack.idp_key().token("svc", "acme", &["orders:read"]);
    upstream_of(
        &stack
            .get("/orders/1", &[("authorization", &bearer(&token(&stack)?))])
            .await?,
    );

    stack.stop_idp().await;
    // A kid the filter does not know pulls a refetch now, which fails; without new keys the
    // token is refused once its wait is over.
    let stranger = IdpKey::generate("never-published")?.token("svc", "acme", &["orders:read"])?;
    let reply = stack
        .get("/orders/1", &[("authorization", &bearer(&stranger))])
        .await?;
    assert_invalid_token(&reply, "unknown_kid", &stranger);
    let stack_ref = &stack;
    eventually(
        Duration::from_secs(REFRESH_SECS + 20),
        "a failed JWKS fetch in the stats",
        || async move {
            let failures = stack_ref.counter("keygate.jwks_fetch_failure").await.ok()?;
            (failures >= 1).then_some(())
        },
    )
    .await;

    // The keys fetched before the IdP went away still verify new tokens.
    let reply = stack
        .get("/orders/1", &[("authorization", &bearer(&token(&stack)?))])
        .await?;
    assert_eq!(
        reply.status,
        200,
        "known key while the IdP is down: {}",
        reply.summary()
    );
    assert!(stack.envoy_ready().await, "Envoy is not ready any more");

    // The IdP comes back with a new key: the filter picks it up.
    let new = IdpKey::generate("idp-key-2")?;
    stack.idp().publish(&[stack.idp_key(), &new]);
    stack.start_idp().await?;
    let (stack, new) = (&stack, &new);
    eventually(
        Duration::from_secs(30),
        "a token signed with the IdP's new key to pass",
        || async move {
            let token = new.token("svc", "acme", &["orders:read"]).ok()?;
            let reply = stack
                .get("/orders/1", &[("authorization", &bearer(&token))])
                .await
                .ok()?;
            (reply.status == 200).then_some(())
        },
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn bad_tokens_are_rejected_with_401() -> anyhow::Result<()> {
    let stack = Stack::start(jwt_filter_config()).await?;
    let key = stack.idp_key();
    let good = idp::claims("svc", "acme", &["orders:read"]);
    let now = idp::unix_now();
    let signed = |change: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        change(&mut claims);
        key.sign(&claims)
    };
    let valid = key.sign(&good)?;
    // Confirms the keys are loaded, so every refusal below is about the token.
    upstream_of(
        &stack
            .get("/orders/1", &[("authorization", &bearer(&valid))])
            .await?,
    );
    let hs256_under_the_ec_kid = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(key.kid().to_owned());
        let secret = serde_json::to_vec(key.jwk())?;
        jsonwebtoken::encode(
            &header,
            &good,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )?
    };

    // (what, token, reason, detail)
    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        ("not a JWT", "not-a-jwt".to_owned(), "malformed_token", None),
        ("two parts", "abc.def".to_owned(), "malformed_token", None),
        (
            "tampered signature",
            with_tampered_signature(&valid),
            "invalid_token",
            Some("bad_signature"),
        ),
        (
            "payload changed under the signature",
            with_payload(&valid, |c| c["permissions"] = json!(["admin"])),
            "invalid_token",
            Some("bad_signature"),
        ),
        (
            "expired an hour ago",
            signed(&|c| {
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            })?,
            "invalid_token",
            Some("expired"),
        ),
        (
            "wrong audience",
            signed(&|c| c["aud"] = json!("https://someone-else.example"))?,
            "invalid_token",
            Some("wrong_audience"),
        ),
        (
            "alg none",
            unsigned(&good),
            "invalid_token",
            Some("alg_none"),
        ),
        (
            "HS256 under the EC key's kid",
            hs256_under_the_ec_kid,
            "invalid_token",
            Some("alg_mismatch"),
        ),
        (
            "issuer no provider has",
            signed(&|c| c["iss"] = json!("https://evil.example/"))?,
            "invalid_token",
            Some("unknown_issuer"),
        ),
        (
            "key the IdP never published",
            IdpKey::generate("never-published")?.sign(&good)?,
            "invalid_token",
            Some("unknown_kid"),
        ),
    ];
    let upstream_before = stack.upstream_requests().len();
    for (what, token, reason, detail) in &cases {
        let reply = stack
            .get("/orders/1", &[("authorization", &bearer(token))])
            .await?;
        assert_eq!(reply.status, 401, "{what}: {}", reply.summary());
        assert_eq!(
            reply.json()["reason"],
            *reason,
            "{what}: {}",
            reply.summary()
        );
        assert_eq!(
            reply.json()["detail"].as_str(),
            *detail,
            "{what}: {}",
            reply.summary()
        );
        assert_unauthorized(&reply, reason, Some(token));
    }
    assert_eq!(
        stack.upstream_requests().len(),
        upstream_before,
        "a bad token reached the upstream"
    );
    assert!(flushed_counter(&stack, "keygate.jwt_rejected.bad_signature").await? >= 2);
    assert!(stack.counter("keygate.jwt_rejected.expired").await? >= 1);
    Ok(())
}

#[tokio::test]
async fn forged_token_sent_again_is_refused_identically_without_a_second_verification(
) -> anyhow::Result<()> {
    // One worker, so every copy reaches the VM that refused the first.
    let stack = Stack::start_with(StackOptions {
        workers: 1,
        ..StackOptions::new(jwt_filter_config())
    })
    .await?;
    let key = stack.idp_key();
    let valid = key.sign(&idp::claims("svc", "acme", &["orders:read"]))?;
    upstream_of(
        &stack
            .get("/orders/1", &[("authorization", &bearer(&valid))])
            .await?,
    );
    let forged = with_tampered_signature(&valid);
    let header = bearer(&forged);
    let header = [("authorization", header.as_str())];

    let first = stack.get("/orders/1", &header).await?;
    assert_invalid_token(&first, "bad_signature", &forged);
    assert_eq!(
        flushed_counter(&stack, "keygate.jwt_rejected_cache_hit").await?,
        0
    );
    let rejected = flushed_counter(&stack, "keygate.jwt_rejected.bad_signature").await?;

    // The same forged token N times: verified once, then N - 1 lookups, each answered as the
    // first; the genuine token still passes in between.
    const N: u64 = 20;
    for n in 1..N {
        let again = stack.get("/orders/1", &header).await?;
        assert_invalid_token(&again, "bad_signature", &forged);
        assert_eq!(again.body, first.body, "copy {n}: the refusal differs");
        assert_eq!(
            again.header("www-authenticate"),
            first.header("www-authenticate")
        );
        if n % 5 == 0 {
            upstream_of(
                &stack
                    .get("/orders/1", &[("authorization", &bearer(&valid))])
                    .await?,
            );
        }
    }
    assert_eq!(
        flushed_counter(&stack, "keygate.jwt_rejected_cache_hit").await?,
        N - 1
    );
    assert_eq!(
        flushed_counter(&stack, "keygate.jwt_rejected.bad_signature").await?,
        rejected + N - 1,
        "a remembered refusal is counted like a verified one"
    );
    // Another forgery of the same token is not the same token: verified, and refused.
    let other = with_payload(&valid, |c| c["permissions"] = json!(["admin"]));
    let reply = stack
        .get("/orders/1", &[("authorization", &bearer(&other))])
        .await?;
    assert_invalid_token(&reply, "bad_signature", &other);
    assert_eq!(
        flushed_counter(&stack, "keygate.jwt_rejected_cache_hit").await?,
        N - 1
    );

    // A genuine token past its expiry stays expired: remembered too, with its own reason.
    let mut claims = idp::claims("svc", "acme", &["orders:read"]);
    claims["exp"] = json!(idp::unix_now() - 3600);
    let expired = key.sign(&claims)?;
    let expired_bearer = bearer(&expired);
    let expired_header = [("authorization", expired_bearer.as_str())];
    let first_expired = stack.get("/orders/1", &expired_header).await?;
    assert_invalid_token(&first_expired, "expired", &expired);
    let again = stack.get("/orders/1", &expired_header).await?;
    assert_invalid_token(&again, "expired", &expired);
    assert_eq!(again.body, first_expired.body);
    assert_eq!(
        flushed_counter(&stack, "keygate.jwt_rejected_cache_hit").await?,
        N
    );
    // The genuine token is untouched by its forgeries.
    upstream_of(
        &stack
            .get("/orders/1", &[("authorization", &bearer(&valid))])
            .await?,
    );
    Ok(())
}

#[tokio::test]
async fn a_token_refused_under_old_keys_passes_once_the_idp_publishes_its_key_under_the_same_kid(
) -> anyhow::Result<()> {
    // The IdP replaces a key's material but keeps its kid. A token signed with the new material
    // fails the old key's signature check, so the filter remembers it as forged; once the JWKS
    // is refetched that memory must not refuse it.
    let stack = Stack::start_with(StackOptions {
        workers: 1,
        ..StackOptions::new(config_with(&[fast_idp_provider()]))
    })
    .await?;
    let old = stack.idp_key();
    upstream_of(
        &stack
            .get(
                "/orders/1",
                &[(
                    "authorization",
                    &bearer(&old.token("svc", "acme", &["orders:read"])?),
                )],
            )
            .await?,
    );
    let replacement = IdpKey::generate(old.kid())?;
    let token = replacement.token("svc", "acme", &["orders:read"])?;
    let header = bearer(&token);
    let header = [("authorization", header.as_str())];
    for _ in 0..2 {
        let reply = stack.get("/orders/1", &header).await?;
        assert_invalid_token(&reply, "bad_signature", &token);
    }
    assert_eq!(
        flushed_counter(&stack, "keygate.jwt_rejected_cache_hit").await?,
        1,
        "the second copy was not remembered"
    );

    stack.idp().publish(&[&replacement]);
    let published_at = Instant::now();
    eventually(
        Duration::from_secs(REFRESH_SECS + 20),
        "the token signed with the republished key to pass",
        || async {
            let reply = stack.get("/orders/1", &header).await.ok()?;
            (reply.status == 200).then_some(())
        },
    )
    .await;
    println!(
        "the republished key's token passed {:?} after the JWKS changed (refresh_secs {REFRESH_SECS})",
        published_at.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn token_with_an_api_key_or_a_second_authorization_header_is_rejected_with_401(
) -> anyhow::Result<()> {
    let stack = Stack::start(jwt_filter_config()).await?;
    let (_, api_key) = stack.create_key("acme", &["orders:read"]).await?;
    let token = stack.idp_key().token("svc", "acme", &["orders:read"])?;
    let other = stack.idp_key().token("svc", "acme", &["orders:read"])?;

    let with_key = stack
        .get(
            "/orders/1",
            &[("authorization", &bearer(&token)), ("x-api-key", &api_key)],
        )
        .await?;
    // Two header lines, written as they are. Envoy joins repeated `Authorization` lines into one
    // value (`Bearer a,Bearer b`) before the filter sees them; the filter reads the comma as two
    // credentials.
    let two_tokens = stack
        .raw(
            Listener::Main,
            "GET",
            "/orders/1",
            &[
                ("authorization", &bearer(&token)),
                ("authorization", &bearer(&other)),
            ],
        )
        .await?;
    let token_twice = stack
        .raw(
            Listener::Main,
            "GET",
            "/orders/1",
            &[
                ("authorization", &bearer(&token)),
                ("authorization", &bearer(&token)),
            ],
        )
        .await?;

    assert_unauthorized(&with_key, "ambiguous_credential", Some(&token));
    assert!(!with_key.body.contains(&api_key));
    for (what, reply) in [("two tokens", two_tokens), ("one token twice", token_twice)] {
        assert_eq!(reply.status, 401, "{what}: {}", reply.summary());
        assert_unauthorized(&reply, "ambiguous_credential", Some(&token));
    }
    assert!(stack.upstream_requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn token_is_stripped_before_the_upstream_unless_its_provider_forwards_it(
) -> anyhow::Result<()> {
    let mut forwarding = idp_provider();
    forwarding["forward_token"] = json!(true);
    let stack = Stack::start(config_with(&[keyservice_provider(), forwarding])).await?;
    let (client_id, secret) = stack.create_client("acme", &["orders:read"]).await?;
    let stripped = stack.token(&client_id, &secret, None).await?;
    let forwarded = stack.idp_key().token("svc", "acme", &["orders:read"])?;

    // The second round is served from the verified-token cache, which must strip alike.
    for round in ["verified", "cached"] {
        let from_keyservice = stack
            .get("/orders/1", &[("authorization", &bearer(&stripped))])
            .await?;
        let from_idp = stack
            .get("/orders/1", &[("authorization", &bearer(&forwarded))])
            .await?;

        let upstream = upstream_of(&from_keyservice);
        assert_eq!(upstream.header("authorization"), None, "{round}");
        let upstream = upstream_of(&from_idp);
        assert_eq!(
            upstream.header("authorization"),
            Some(bearer(&forwarded).as_str()),
            "{round}"
        );
        assert_eq!(
            upstream.header("x-keygate-provider"),
            Some(IDP_PROVIDER),
            "{round}"
        );
    }
    assert_eq!(flushed_counter(&stack, "keygate.jwt_cache_hit").await?, 2);
    Ok(())
}

#[tokio::test]
async fn reused_token_is_verified_once_and_then_served_from_the_cache() -> anyhow::Result<()> {
    let stack = Stack::start(jwt_filter_config()).await?;
    let (client_id, secret) = stack.create_client("acme", &["orders:read"]).await?;
    let token = stack.token(&client_id, &secret, None).await?;
    let header = bearer(&token);
    let header = [("authorization", header.as_str())];

    let first = upstream_of(&stack.get("/orders/1", &header).await?);
    let verified = flushed_counter(&stack, "keygate.jwt_verified").await?;
    let hits = stack.counter("keygate.jwt_cache_hit").await?;
    let second = upstream_of(&stack.get("/orders/1", &header).await?);

    assert!(verified >= 1, "the first request verified nothing");
    assert_eq!(
        flushed_counter(&stack, "keygate.jwt_verified").await?,
        verified,
        "the reused token was verified again"
    );
    assert_eq!(
        flushed_counter(&stack, "keygate.jwt_cache_hit").await?,
        hits + 1
    );
    assert_eq!(second.header("x-keygate-subject"), Some(client_id.as_str()));
    for name in [
        "x-keygate-auth",
        "x-keygate-subject",
        "x-keygate-provider",
        "x-keygate-tenant",
        "x-keygate-permissions",
    ] {
        assert_eq!(first.header(name), second.header(name), "{name}");
    }
    Ok(())
}

#[tokio::test]
async fn a_token_cached_under_one_configuration_is_not_accepted_under_another_sharing_the_vm_id(
) -> anyhow::Result<()> {
    // Both listeners run one vm_id, hence one shared data; the raw listener's provider has
    // narrowed its audiences, so the same token is not valid there.
    let main = config_with(&[idp_provider()]);
    let mut narrowed = idp_provider();
    narrowed["audiences"] = json!(["another-api"]);
    let raw = config_with(&[narrowed]);
    let stack = Stack::start_with(StackOptions {
        raw_filter_config: Some(raw),
        ..StackOptions::new(main)
    })
    .await?;
    let token = stack.idp_key().token("svc", "acme", &["orders:read"])?;
    let auth = bearer(&token);
    let headers = [("authorization", auth.as_str())];

    // Verified and cached under the main listener's configuration, on every worker.
    for _ in 0..4 {
        upstream_of(
            &stack
                .raw(Listener::Main, "GET", "/orders/1", &headers)
                .await?,
        );
    }
    for _ in 0..4 {
        let reply = stack
            .raw(Listener::Raw, "GET", "/orders/1", &headers)
            .await?;
        assert_invalid_token(&reply, "wrong_audience", &token);
    }
    Ok(())
}
