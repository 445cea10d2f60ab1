//! A rule keyed on Envoy's route name (`route_name`) holds while the filter removes headers.
//!
//! Every request header the filter removes (client-sent `x-keygate-*`, the credential) clears
//! Envoy's route cache. The filter reads the route name before any removal, so a `route_name`
//! rule sees the route the client's request was routed by, whatever an Envoy version does with
//! the name once the cache is cleared (were it gone, the rule would stop matching: 403 for every
//! key with `unmatched: deny`, an open route with `unmatched: allow`). `envoy/e2e.yaml` sends
//! `/reports/` through a route named `reports`; nothing else in the filter config below matches
//! `/reports/`, so only the route name can make the rule apply.
//!
//! The last test measures what Envoy 1.40 itself does on a removal, with a filter other than
//! keygate: the name read after it is still the old one, but the route that forwards can change.

use keygate_e2e::{base_filter_config, Listener, Stack};
use serde_json::json;

use crate::assert_unauthorized;
use crate::vm_failure::Single;

fn config() -> serde_json::Value {
    let mut config = base_filter_config();
    config["routes"].as_array_mut().expect("routes").insert(
        0,
        json!({"route_name": "reports", "permissions": ["reports:read"]}),
    );
    config
}

/// Two spoofed identity headers and, with `secret`, the key header: up to three removals before
/// the request is forwarded.
fn spoofed(secret: Option<&str>) -> Vec<(String, String)> {
    let mut headers = vec![
        ("x-keygate-tenant".to_owned(), "evil".to_owned()),
        ("X-Keygate-Key-Id".to_owned(), "key_forged".to_owned()),
    ];
    if let Some(secret) = secret {
        headers.push(("x-api-key".to_owned(), secret.to_owned()));
    }
    headers
}

#[tokio::test]
async fn a_route_name_rule_applies_while_spoofed_headers_and_the_key_are_removed(
) -> anyhow::Result<()> {
    let stack = Stack::start(config()).await?;
    let (with_id, with) = stack.create_key("acme", &["reports:read"]).await?;
    let (_, without) = stack.create_key("acme", &["orders:read"]).await?;

    let stack = &stack;
    for listener in [Listener::Main, Listener::Raw] {
        let send = |secret: Option<&str>| {
            let headers = spoofed(secret);
            async move {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                stack
                    .raw(listener, "GET", "/reports/q1?x=1", &headers)
                    .await
            }
        };

        let allowed = send(Some(&with)).await?;
        assert_eq!(allowed.status, 200, "{listener:?}: {}", allowed.summary());
        let upstream = allowed.upstream().expect("from the upstream");
        assert_eq!(
            upstream.header("x-keygate-tenant"),
            Some("acme"),
            "{listener:?}"
        );
        assert_eq!(upstream.header("x-keygate-key-id"), Some(with_id.as_str()));
        assert_eq!(
            upstream.header("x-keygate-permissions"),
            Some("reports:read")
        );
        assert_eq!(
            upstream.header("x-api-key"),
            None,
            "the key reached the upstream"
        );
        assert!(
            !upstream
                .headers
                .values()
                .any(|v| v == "evil" || v == "key_forged"),
            "a spoofed header reached the upstream: {:?}",
            upstream.headers
        );

        // Forbidden by this rule (it names the missing permission), not unmatched.
        let denied = send(Some(&without)).await?;
        assert_eq!(denied.status, 403, "{listener:?}: {}", denied.summary());
        assert_eq!(
            denied.json()["missing_permissions"],
            json!(["reports:read"])
        );
        assert!(denied.upstream().is_none());

        let anonymous = send(None).await?;
        assert_unauthorized(&anonymous, "missing_credential", None);
    }

    // The rule is the route's, not the path's: the same key on the unnamed route matches nothing.
    let other = stack
        .raw(Listener::Main, "GET", "/other/q1", &[("x-api-key", &with)])
        .await?;
    assert_eq!(other.status, 403, "{}", other.summary());
    assert_eq!(other.json()["reason"], "no_route_rule");
    Ok(())
}

/// What a filter reads as `xds.route_name` after it removes a request header, measured on Envoy
/// itself with the test-only panic filter (tests/panic-filter): it reads the route name, removes
/// one request header, reads it again, and the routes of `tests/fixtures/wasm-failure.yaml` tell
/// the upstream which one forwarded the request.
///
/// Envoy 1.40: the name read in the same callback after the removal is still the name read
/// before, so neither order loses it. But the removal clears the route cache and the router
/// resolves the route again: when a route matches on a header the filter removes, the request
/// leaves through another route than the one whose name the filter judged.
#[tokio::test]
async fn a_removed_header_can_change_the_route_but_not_the_route_name_a_filter_reads(
) -> anyhow::Result<()> {
    let envoy = Single::start("FAIL_CLOSED").await?;
    let probe = |removed: &'static str| {
        let envoy = &envoy;
        async move {
            let headers = [
                ("x-test-route-probe", removed),
                ("x-remove-me", "1"),
                ("x-other", "1"),
            ];
            let reply = envoy.get("/named/x", &headers).await?;
            assert_eq!(reply.status, 200, "{}", reply.summary());
            let forwarded_by = reply
                .upstream()
                .and_then(|u| u.header("x-test-route").map(str::to_owned));
            anyhow::Ok((
                reply.header("x-test-route-before").map(str::to_owned),
                reply.header("x-test-route-after").map(str::to_owned),
                forwarded_by,
            ))
        }
    };
    let some = |name: &str| Some(name.to_owned());

    // A header the route does not match on: the same route before, after, and for forwarding.
    let (before, after, forwarded_by) = probe("x-other").await?;
    assert_eq!(before, some("named-by-header"));
    assert_eq!(after, some("named-by-header"));
    assert_eq!(forwarded_by, some("named-by-header"));

    // The header the route matches on: the filter still reads the first route's name, and the
    // request leaves through the other route.
    let (before, after, forwarded_by) = probe("x-remove-me").await?;
    println!(
        "route name before the removal {before:?}, after {after:?}, forwarded by {forwarded_by:?}"
    );
    assert_eq!(before, some("named-by-header"));
    assert_eq!(after, some("named-by-header"));
    assert_eq!(forwarded_by, some("named"));
    Ok(())
}
