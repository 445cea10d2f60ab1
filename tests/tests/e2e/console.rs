//! The web console in a real browser (Debian's Chromium, driven by playwright-core from
//! `tests/console/console.test.mjs`) against the real stack: sign in with the admin secret,
//! create an API key, read its secret from the page, see it pass Envoy, revoke it in the console
//! (confirming the dialog) and see Envoy refuse it; a name holding markup renders as text; roles
//! (a held one lists its holders), a tenant admin who sees only its tenant and cannot grant a role
//! above its own, the audit log; sign-out forgets the secret. Screenshots of every page land in
//! `target/console-screenshots/`.

use std::process::Stdio;
use std::time::Duration;

use keygate_e2e::artifacts::{console_test_script, node, target_dir, workspace_root};
use keygate_e2e::keyservice::ADMIN_SECRET;
use keygate_e2e::{base_filter_config, Listener, Stack};
use reqwest::Method;
use serde_json::{json, Value};

/// Chromium's start plus every step's wait; the script stops at its first failure well before.
const BROWSER_TEST_LIMIT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn the_console_creates_a_key_that_passes_envoy_and_revokes_it_in_the_browser(
) -> anyhow::Result<()> {
    let script = console_test_script()?;
    let mut config = base_filter_config();
    // The key's page charts its requests: reports every second instead of every ten minutes.
    config["usage"]["report_interval_secs"] = json!(1);
    let stack = Stack::start(config).await?;
    let screenshots = target_dir().join("console-screenshots");
    // Only this run's pictures.
    let _ = std::fs::remove_dir_all(&screenshots);

    let run = tokio::process::Command::new(node())
        .arg(&script)
        .current_dir(workspace_root())
        .env("KEYGATE_URL", stack.keyservice().url(""))
        .env("KEYGATE_ADMIN_SECRET", ADMIN_SECRET)
        .env(
            "KEYGATE_ENVOY_URL",
            format!("http://{}", stack.addr(Listener::Main)?),
        )
        .env("KEYGATE_SCREENSHOTS", &screenshots)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_TEST_LIMIT, run)
        .await
        .map_err(|_| anyhow::anyhow!("the browser test ran past {BROWSER_TEST_LIMIT:?}"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "node {} failed ({}); screenshots in {}",
        script.display(),
        output.status,
        screenshots.display()
    );

    // What the browser did went through the API: the key it made is revoked in the service.
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(serde_json::from_str)
        .transpose()?
        .ok_or_else(|| anyhow::anyhow!("the script printed no RESULT line"))?;
    let id = result["key_id"].as_str().unwrap_or_default();
    let (status, key) = stack
        .admin(Method::GET, &format!("/v1/keys/{id}"), None)
        .await?;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["status"], "revoked", "{key}");
    assert_eq!(key["name"], "checkout service (e2e)", "{key}");
    for shot in [
        "1-sign-in",
        "2-tokens",
        "3-create-token",
        "4-secret-shown-once",
        "5-token-detail",
        "6-confirm-revoke",
        "7-roles",
        "8-audit",
        "9-tenant-admin-create",
        "10-role-in-use",
    ] {
        let path = screenshots.join(format!("{shot}.png"));
        assert!(path.is_file(), "no screenshot {}", path.display());
    }
    Ok(())
}
