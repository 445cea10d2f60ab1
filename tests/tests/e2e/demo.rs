//! `make run`: the demo script starts everything and the commands it prints work as printed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keygate_e2e::artifacts;
use keygate_e2e::keyservice::free_port;
use tokio::time::{sleep, Instant};

/// The demo script's process; stopped like Ctrl-C would (its trap kills what it started).
struct Demo(Child);

impl Demo {
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        // bash's builtin kill: no procps needed.
        let _ = Command::new("bash")
            .args(["-c", &format!("kill -TERM {}", self.0.id())])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn demo_commands_work_as_printed() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("keygate-demo-").tempdir()?;
    let ports = [free_port()?, free_port()?, free_port()?, free_port()?].map(|a| a.port());
    let output_path = dir.path().join("run-demo.out");
    let output = std::fs::File::create(&output_path)?;
    let mut demo = Demo(
        Command::new("bash")
            .arg(artifacts::workspace_root().join("scripts/run-demo.sh"))
            .env("KEYGATE_DEMO_DIR", dir.path())
            .env("KEYGATE_DEMO_ENVOY_PORT", ports[0].to_string())
            .env("KEYGATE_DEMO_ADMIN_PORT", ports[1].to_string())
            .env("KEYGATE_DEMO_KEYSERVICE_PORT", ports[2].to_string())
            .env("KEYGATE_DEMO_ECHO_PORT", ports[3].to_string())
            .env("KEYGATE_SERVER_BIN", artifacts::keygate_server()?)
            .env("KEYGATE_ECHO_BIN", env!("CARGO_BIN_EXE_keygate-echo"))
            .env("KEYGATE_WASM", artifacts::filter_wasm()?)
            .env("ENVOY_BIN", artifacts::envoy()?)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()?,
    );

    // The script writes commands.sh once every service answers.
    let commands = dir.path().join("commands.sh");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !commands.exists() {
        if let Some(status) = demo.0.try_wait()? {
            panic!("run-demo.sh exited ({status}):\n{}", read(&output_path));
        }
        assert!(
            Instant::now() < deadline,
            "run-demo.sh not ready in 90 s:\n{}",
            read(&output_path)
        );
        sleep(Duration::from_millis(100)).await;
    }
    let printed = read(&output_path);
    assert!(
        printed.contains(&read(&commands)),
        "the printed commands differ from commands.sh:\n{printed}"
    );

    // As pasted into a shell: bash reading the commands, nothing else.
    let run = tokio::process::Command::new("bash")
        .arg(&commands)
        .stdin(Stdio::null())
        .output();
    let run = tokio::time::timeout(Duration::from_secs(60), run).await??;
    let out = String::from_utf8_lossy(&run.stdout);
    let statuses: Vec<&str> = out
        .lines()
        .filter_map(|line| line.strip_prefix("HTTP/1.1 "))
        .map(|rest| rest.get(..3).unwrap_or(rest))
        .collect();
    let context = format!(
        "output:\n{out}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Key: allowed, no key, revoked. Token: allowed, missing permission. The demo caches valid
    // keys for 5 minutes and its revoke step retries for 2 s at most, so the revoked key's 401
    // comes from the revocation feed, not from the cache running out.
    assert_eq!(statuses, ["200", "401", "401", "200", "403"], "{context}");
    assert!(out.contains(r#""x-keygate-tenant":"acme""#), "{context}");
    assert!(out.contains(r#""status":"revoked""#), "{context}");

    // The token's call reached the upstream as the client, without the token.
    let client_id = out
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|json| json["client_id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no client was created; {context}"));
    for identity in [
        r#""x-keygate-auth":"jwt""#.to_owned(),
        r#""x-keygate-provider":"keygate""#.to_owned(),
        format!(r#""x-keygate-subject":"{client_id}""#),
    ] {
        assert!(out.contains(&identity), "no {identity} upstream; {context}");
    }
    assert!(
        !out.contains(r#""authorization":"#),
        "the token reached the upstream; {context}"
    );
    assert!(
        out.contains(r#""missing_permissions":["orders:write"]"#),
        "{context}"
    );

    // Ctrl-C (here: SIGTERM, which the script treats alike) stops every process it started.
    let status = demo.terminate();
    assert!(status.is_some(), "run-demo.sh did not stop");
    for port in ports {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still taken after the demo stopped:\n{}",
            read(&output_path)
        );
    }
    Ok(())
}
