//! A broken filter configuration stops Envoy at start-up, with a log line naming the field.

use keygate_e2e::{base_filter_config, Stack, StackOptions, Started};
use serde_json::{json, Value};

/// The lines the filter itself logged (Envoy prefixes them with `wasm log`).
fn filter_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains("wasm log"))
        .collect()
}

/// Starts a stack on `config` and returns Envoy's log, asserting Envoy refused to run.
async fn refusal_log(config: Value) -> anyhow::Result<String> {
    match Stack::try_start_with(StackOptions::new(config)).await? {
        Started::EnvoyRefused { status, log } => {
            assert!(!status.success(), "Envoy exited successfully: {status}");
            Ok(log)
        }
        Started::Running(stack) => {
            panic!(
                "Envoy serves with a bad filter config; its log:\n{}",
                stack.envoy_log()
            )
        }
    }
}

#[tokio::test]
async fn filter_config_with_an_unknown_field_is_refused_at_start_up() -> anyhow::Result<()> {
    let mut config = base_filter_config();
    config["cache"]["ttl_second"] = json!(5);

    let log = refusal_log(config).await?;

    assert!(
        filter_lines(&log)
            .iter()
            .any(|line| line.contains("ttl_second")),
        "Envoy's log does not name the unknown field:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn filter_config_with_a_bad_route_pattern_is_refused_at_start_up() -> anyhow::Result<()> {
    let mut config = base_filter_config();
    config["routes"][0] = json!({"path": "orders/*", "permissions": ["orders:read"]});

    let log = refusal_log(config).await?;

    assert!(
        filter_lines(&log)
            .iter()
            .any(|line| line.contains("routes[0].path")),
        "Envoy's log does not name the field:\n{log}"
    );
    Ok(())
}
