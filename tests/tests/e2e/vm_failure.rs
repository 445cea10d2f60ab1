//! What Envoy does with a Wasm VM that failed, under each `failure_policy`. keygate must never
//! panic, so the test-only panic filter (`tests/panic-filter`) fails on purpose when a request
//! carries `x-test-panic: 1`, and names its VM instance in `x-test-vm` otherwise. Envoy runs one
//! worker, so one VM serves every request and its replacement is visible as a new id.
//!
//! - `FAIL_RELOAD` (what keygate's configs use): after the backoff a new VM serves, and every
//!   later request passes through it.
//! - `FAIL_CLOSED`: every later request gets 503, for good.
//! - `FAIL_OPEN`: every later request skips the filter and reaches the upstream unchecked, with
//!   whatever headers the client sent: the reason the README forbids it for keygate.

use std::time::Duration;

use keygate_e2e::envoy::tail;
use keygate_e2e::{artifacts, raw_http, spawn_echo, template, EchoHandle, Envoy, Reply};
use tempfile::TempDir;
use tokio::time::{sleep, Instant};

/// The line of `tests/fixtures/wasm-failure.yaml` each test replaces with its policy.
const POLICY_LINE: &str = "failure_policy: FAIL_RELOAD";
/// How long a replaced VM may take to serve; the fixture's backoff starts at 0.2 s.
const RELOAD_BOUND: Duration = Duration::from_secs(5);
/// Part of the panic filter's panic message, which its panic hook logs through Envoy.
const PANIC_MARK: &str = "asked this VM";

/// Envoy with one worker, running the panic filter under one failure policy.
pub(crate) struct Single {
    envoy: Envoy,
    echo: EchoHandle,
    _dir: TempDir,
}

impl Single {
    pub(crate) async fn start(policy: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("keygate-vm-").tempdir()?;
        let (upstream, echo) = spawn_echo().await?;
        let text = std::fs::read_to_string(artifacts::wasm_failure_template())?;
        assert_eq!(text.matches(POLICY_LINE).count(), 1, "fixture changed");
        let text = text.replace(POLICY_LINE, &format!("failure_policy: {policy}"));
        let wasm = artifacts::panic_filter_wasm()?.display().to_string();
        let rendered = template::render(
            &text,
            &[
                ("UPSTREAM_PORT", &upstream.port().to_string()),
                ("WASM_PATH", &wasm),
                ("FILTER_CONFIG", "\"\""),
            ],
        )?;
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, rendered)?;
        let envoy = Envoy::start_with_workers(&config, dir.path(), 1).await?;
        Ok(Self {
            envoy,
            echo,
            _dir: dir,
        })
    }

    async fn send(&self, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        self.get("/x", headers).await
    }

    pub(crate) async fn get(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        raw_http::send(self.envoy.listener("main")?, "GET", path, headers).await
    }

    /// A normal request answered 200 by the upstream through the filter: the VM's id.
    async fn vm(&self) -> anyhow::Result<String> {
        let reply = self.send(&[]).await?;
        assert_eq!(reply.status, 200, "{}", reply.summary());
        let id = reply.header("x-test-vm").expect("no x-test-vm").to_owned();
        let upstream = reply.upstream().expect("not from the upstream");
        assert_eq!(upstream.header("x-test-vm"), Some(id.as_str()));
        Ok(id)
    }

    /// Sends the request that kills the VM; what came back, for the record.
    async fn panic(&self) -> String {
        match self.send(&[("x-test-panic", "1")]).await {
            Ok(reply) => format!("{} {}", reply.status, reply.body.trim()),
            Err(error) => format!("no response: {error:#}"),
        }
    }

    fn log_tail(&self) -> String {
        tail(&self.envoy.log(), 30)
    }
}

/// Polls normal requests until one passes through a VM other than `old`: its id and how long
/// that took; every answer before it is pushed to `seen`.
async fn next_vm(
    single: &Single,
    old: &str,
    seen: &mut Vec<u16>,
) -> anyhow::Result<(String, Duration)> {
    let started = Instant::now();
    loop {
        let reply = single.send(&[]).await?;
        match reply.header("x-test-vm") {
            Some(id) if reply.status == 200 && id != old => {
                return Ok((id.to_owned(), started.elapsed()));
            }
            _ => seen.push(reply.status),
        }
        assert!(
            started.elapsed() < RELOAD_BOUND,
            "no new VM within {RELOAD_BOUND:?}; answers meanwhile: {seen:?}\n{}",
            single.log_tail()
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn under_fail_reload_a_failed_vm_is_replaced_and_serves_every_later_request(
) -> anyhow::Result<()> {
    let single = Single::start("FAIL_RELOAD").await?;
    let first = single.vm().await?;
    assert_eq!(single.vm().await?, first, "one worker, one VM");

    let panicked = single.panic().await;
    let mut seen = Vec::new();
    let (second, took) = next_vm(&single, &first, &mut seen).await?;
    println!("FAIL_RELOAD: panic answered {panicked}; new VM after {took:?}, answers before it: {seen:?}");
    assert!(
        seen.iter().all(|status| *status == 503),
        "while the VM was down: {seen:?}"
    );
    for _ in 0..20 {
        assert_eq!(
            single.vm().await?,
            second,
            "a later request left the new VM"
        );
    }

    // And again: the replacement fails and is replaced in turn.
    let panicked = single.panic().await;
    let mut seen = Vec::new();
    let (third, took) = next_vm(&single, &second, &mut seen).await?;
    println!("FAIL_RELOAD again: panic answered {panicked}; new VM after {took:?}, answers before it: {seen:?}");
    assert_ne!(third, first);
    assert_eq!(single.vm().await?, third);
    assert!(
        single.envoy.log().contains(PANIC_MARK),
        "the panic is not in Envoy's log:\n{}",
        single.log_tail()
    );
    Ok(())
}

#[tokio::test]
async fn under_fail_closed_a_failed_vm_answers_503_for_good() -> anyhow::Result<()> {
    let single = Single::start("FAIL_CLOSED").await?;
    single.vm().await?;
    let reached = single.echo.requests().len();

    let panicked = single.panic().await;
    println!("FAIL_CLOSED: panic answered {panicked}");
    let started = Instant::now();
    let mut statuses = Vec::new();
    // Longer than FAIL_RELOAD needs to come back.
    while started.elapsed() < Duration::from_secs(2) {
        statuses.push(single.send(&[]).await?.status);
        sleep(Duration::from_millis(100)).await;
    }
    assert!(
        statuses.iter().all(|status| *status == 503),
        "after the panic: {statuses:?}\n{}",
        single.log_tail()
    );
    assert_eq!(
        single.echo.requests().len(),
        reached,
        "a request reached the upstream after the VM failed"
    );
    Ok(())
}

#[tokio::test]
async fn under_fail_open_a_failed_vm_lets_requests_through_unchecked() -> anyhow::Result<()> {
    let single = Single::start("FAIL_OPEN").await?;
    single.vm().await?;

    let panicked = single.panic().await;
    println!("FAIL_OPEN: panic answered {panicked}");
    // The danger, measured: the filter is skipped, so nothing it would add or remove is added or
    // removed. For keygate, a spoofed identity header would reach the upstream as if set by it.
    for _ in 0..5 {
        let reply = single.send(&[("x-keygate-tenant", "evil")]).await?;
        assert_eq!(reply.status, 200, "{}", reply.summary());
        let upstream = reply.upstream().expect("not from the upstream");
        assert_eq!(upstream.header("x-test-vm"), None, "the filter ran");
        assert_eq!(reply.header("x-test-vm"), None, "the filter ran");
        assert_eq!(upstream.header("x-keygate-tenant"), Some("evil"));
    }
    Ok(())
}
