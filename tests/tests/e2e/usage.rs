//! Usage counts travel from the filter to the key service.

use std::time::Duration;

use keygate_e2e::{base_filter_config, Stack};
use serde_json::json;

use crate::eventually;

#[tokio::test]
async fn usage_counts_reach_the_key_service() -> anyhow::Result<()> {
    const REQUESTS: u64 = 5;
    let mut config = base_filter_config();
    config["usage"]["report_interval_secs"] = json!(1);
    let stack = Stack::start(config).await?;
    let (id, secret) = stack.create_key("acme", &["orders:read"]).await?;

    for _ in 0..REQUESTS {
        let reply = stack.get("/orders/1", &[("x-api-key", &secret)]).await?;
        assert_eq!(reply.status, 200, "{}", reply.summary());
    }

    let (stack, id) = (&stack, id.as_str());
    let usage = eventually(
        Duration::from_secs(20),
        "usage to reach the key service",
        || async move {
            let usage = stack.usage(id).await.ok()?;
            (usage["total"].as_u64()? >= REQUESTS).then_some(usage)
        },
    )
    .await;
    assert_eq!(usage["total"], REQUESTS, "{usage}");
    assert!(usage["last_used_at"].is_string(), "{usage}");
    Ok(())
}
