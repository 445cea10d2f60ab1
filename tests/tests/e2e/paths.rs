//! Path tricks: spellings of an `/admin/` path that a naive prefix match would take for public or
//! for something else. Sent byte for byte, mostly through the `raw` listener, where Envoy does no
//! normalisation and the filter's own path handling is all that stands in the way.

use keygate_e2e::{base_filter_config, Listener, Stack};

const TRICKS: &[&str] = &[
    "/public/../admin/x",
    "/public/./../admin/x",
    "/public/%2e%2e/admin/x",
    "/public/%2E%2E/admin/x",
    "/public/..;/admin/x",
    "/public/..%2fadmin",
    "/public/..%2Fadmin/x",
    "/public/%2e%2e%2fadmin/x",
    "//admin/x",
    "/admin;x=1/y",
    "/ADMIN/x",
    "/Admin/x",
    "/%61dmin/x",
];

/// Sends every trick through `listener`, without a key and with a key that lacks `admin`, and
/// asserts none is answered 2xx and none reaches the upstream.
async fn assert_tricks_are_refused(stack: &Stack, listener: Listener) -> anyhow::Result<()> {
    let (_, secret) = stack.create_key("acme", &["orders:read"]).await?;
    let before = stack.upstream_requests().len();
    let mut let_through = Vec::new();
    for path in TRICKS {
        for headers in [vec![], vec![("x-api-key", secret.as_str())]] {
            let reply = stack.raw(listener, "GET", path, &headers).await?;
            if (200..300).contains(&reply.status) || reply.upstream().is_some() {
                let_through.push(format!(
                    "{path} (key: {}) -> {}",
                    !headers.is_empty(),
                    reply.summary()
                ));
            }
        }
    }
    assert!(
        let_through.is_empty(),
        "path tricks got through on {listener:?}:\n{}",
        let_through.join("\n")
    );
    let reached: Vec<_> = stack
        .upstream_requests()
        .into_iter()
        .skip(before)
        .map(|r| r.path)
        .collect();
    assert!(
        reached.is_empty(),
        "path tricks reached the upstream on {listener:?}: {reached:?}"
    );
    Ok(())
}

#[tokio::test]
async fn path_tricks_never_reach_the_upstream_without_envoy_normalisation() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;
    // The raw listener does serve ordinary requests: the refusals below are the filter's doing.
    let reply = stack
        .raw(Listener::Raw, "GET", "/public/info?x=1", &[])
        .await?;
    assert_eq!(reply.status, 200, "{}", reply.summary());
    assert_eq!(
        reply.upstream().map(|u| u.path).as_deref(),
        Some("/public/info?x=1")
    );

    assert_tricks_are_refused(&stack, Listener::Raw).await
}

#[tokio::test]
async fn path_tricks_never_reach_the_upstream_with_envoy_normalisation() -> anyhow::Result<()> {
    let stack = Stack::start(base_filter_config()).await?;

    assert_tricks_are_refused(&stack, Listener::Main).await
}
