//! `Service::start()`: the real key service in-process on port 0, on a temporary SQLite file,
//! with a known admin secret; and `keygate`, the real CLI binary, run as a subprocess against
//! it with a clean environment.

use std::path::Path;
use std::process::Command;

use clap::Parser as _;
use keygate_keyservice::clock::SystemClock;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const ADMIN_SECRET: &str = "cli-test-admin-secret-0123456789";
pub const FILTER_TOKEN: &str = "cli-test-filter-token";

/// A running key service. Stops when dropped.
pub struct Service {
    pub url: String,
    runtime: tokio::runtime::Runtime,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: TempDir,
}

/// What one `keygate` run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and gives stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "keygate failed: {self:?}");
        self.stdout
    }

    /// Asserts success and parses stdout as JSON.
    pub fn json(self) -> Value {
        let stdout = self.ok();
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }
}

impl Service {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keygate.db");
        let cli = keygate_keyservice::config::Cli::try_parse_from([
            "keygate-server".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--db-path".as_ref(),
            db.as_os_str(),
            "--filter-token".as_ref(),
            FILTER_TOKEN.as_ref(),
        ])
        .unwrap();
        let config = cli.into_config(Some(ADMIN_SECRET.into())).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        let (url, server) = runtime.block_on(async {
            let prepared =
                keygate_keyservice::startup::prepare(&config, std::sync::Arc::new(SystemClock))
                    .await
                    .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let server = tokio::spawn(keygate_keyservice::run(listener, prepared.state, async {
                let _ = stop.await;
            }));
            (url, server)
        });
        Self {
            url,
            runtime,
            shutdown: Some(shutdown),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Runs `keygate args…` against this service with the admin secret in
    /// `KEYGATE_ADMIN_SECRET`.
    pub fn keygate(&self, args: &[&str]) -> Run {
        self.keygate_with_env(&[("KEYGATE_ADMIN_SECRET", ADMIN_SECRET)], args)
    }

    /// `keygate args… --output json`, asserted to succeed, stdout parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        self.keygate(&args).json()
    }

    /// Runs `keygate args…` against this service with only `env` set (and `KEYGATE_URL`).
    pub fn keygate_with_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut all = vec![("KEYGATE_URL", self.url.as_str())];
        all.extend_from_slice(env);
        keygate(&all, args)
    }

    /// Reports `count` uses of `key_id` as the filter does.
    pub fn report_usage(&self, key_id: &str, count: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body =
            serde_json::json!({"entries": [{"key_id": key_id, "count": count, "last_used": now}]});
        let status = self.runtime.block_on(async {
            reqwest::Client::new()
                .post(format!("{}/v1/usage", self.url))
                .bearer_auth(FILTER_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    }

    /// Stops the service and waits until it no longer listens.
    pub fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server).unwrap().unwrap();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Runs the `keygate` binary with exactly `env` as its environment.
pub fn keygate(env: &[(&str, &str)], args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A file holding `contents`, with Unix mode `mode`.
pub fn secret_file(dir: &Path, contents: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join("secret");
    std::fs::write(&path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = mode;
    path
}

/// The value of `field` in a JSON answer, as a string.
pub fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{field}` in {value}"))
        .to_owned()
}
