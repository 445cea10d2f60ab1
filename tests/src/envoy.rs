//! A real Envoy process: validating a config, starting one and waiting until it serves, reading
//! its admin endpoint (readiness, listeners, stats) and its log.
//!
//! Envoy runs with `--disable-hot-restart`, so parallel Envoys share no memory region and need no
//! `--base-id`, and with its admin and listeners on port 0: the actual ports are read back from
//! `--admin-address-path` and the admin `/listeners` endpoint, so there is no port to race for.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::time::{sleep, Instant};

use crate::artifacts;

/// How long Envoy may take to load the `.wasm` and open its listeners. Generous: two cores, and
/// other tests start their Envoys at the same time.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
/// `--concurrency` unless a test asks otherwise.
pub const WORKERS: usize = 2;

/// A running Envoy; killed when dropped.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    admin: SocketAddr,
    listeners: BTreeMap<String, SocketAddr>,
    log_path: PathBuf,
    client: reqwest::Client,
    workers: usize,
}

/// How a start attempt ended.
#[derive(Debug)]
pub enum StartOutcome {
    /// Admin says ready and every listener accepts connections.
    Ready(Envoy),
    /// Envoy exited before it was ready (a refused config ends here).
    Exited { status: ExitStatus, log: String },
}

impl Envoy {
    /// `envoy --mode validate -c config`: loads everything, the `.wasm` and its configuration
    /// included, without opening a port. The error carries Envoy's output.
    pub fn validate(config: &Path) -> Result<()> {
        let output = Command::new(artifacts::envoy()?)
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(config)
            .stdin(Stdio::null())
            .output()
            .context("running envoy --mode validate")?;
        if !output.status.success() {
            bail!(
                "envoy --mode validate -c {} failed ({}):\n{}{}",
                config.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Starts Envoy on `config` and waits until it serves; fails if it exits first.
    pub async fn start(config: &Path, workdir: &Path) -> Result<Self> {
        match Self::try_start(config, workdir).await? {
            StartOutcome::Ready(envoy) => Ok(envoy),
            StartOutcome::Exited { status, log } => {
                bail!(
                    "Envoy exited at start-up ({status}); its log ends:\n{}",
                    tail(&log, 40)
                )
            }
        }
    }

    /// Starts Envoy on `config` (files go to `workdir`) and waits until it is ready or has exited.
    pub async fn try_start(config: &Path, workdir: &Path) -> Result<StartOutcome> {
        Self::try_start_with_workers(config, workdir, WORKERS).await
    }

    /// [`start`](Self::start) with `workers` worker threads (`--concurrency`): one worker means
    /// one Wasm VM serves every request, for tests that follow a VM's life.
    pub async fn start_with_workers(config: &Path, workdir: &Path, workers: usize) -> Result<Self> {
        match Self::try_start_with_workers(config, workdir, workers).await? {
            StartOutcome::Ready(envoy) => Ok(envoy),
            StartOutcome::Exited { status, log } => {
                bail!(
                    "Envoy exited at start-up ({status}); its log ends:\n{}",
                    tail(&log, 40)
                )
            }
        }
    }

    pub async fn try_start_with_workers(
        config: &Path,
        workdir: &Path,
        workers: usize,
    ) -> Result<StartOutcome> {
        let log_path = workdir.join("envoy.log");
        let admin_path = workdir.join("envoy-admin-address");
        let log = File::create(&log_path).context("creating envoy.log")?;
        let child = Command::new(artifacts::envoy()?)
            .arg("-c")
            .arg(config)
            .arg("--concurrency")
            .arg(workers.to_string())
            .arg("--disable-hot-restart")
            .args(["--component-log-level", "wasm:debug"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning envoy")?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut starting = Starting {
            child: Some(child),
            log_path,
            client,
            workers,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = starting.child_mut()?.try_wait()? {
                let log = read_log(&starting.log_path);
                return Ok(StartOutcome::Exited { status, log });
            }
            if let Some(envoy) = starting.ready(&admin_path).await? {
                return Ok(StartOutcome::Ready(envoy));
            }
            if Instant::now() > deadline {
                bail!(
                    "Envoy not ready after {STARTUP_TIMEOUT:?}; its log ends:\n{}",
                    tail(&read_log(&starting.log_path), 40)
                );
            }
            sleep(POLL).await;
        }
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The bound address of the listener called `name` in the config.
    pub fn listener(&self, name: &str) -> Result<SocketAddr> {
        self.listeners.get(name).copied().with_context(|| {
            format!(
                "Envoy has no listener {name:?}; it has {:?}",
                self.listeners
            )
        })
    }

    pub fn listeners(&self) -> &BTreeMap<String, SocketAddr> {
        &self.listeners
    }

    /// `GET` on the admin endpoint: status and body.
    pub async fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        admin_get(&self.client, self.admin, path).await
    }

    /// Admin `/ready` answers 200 (`LIVE`).
    pub async fn is_ready(&self) -> bool {
        matches!(self.admin_get("/ready").await, Ok((200, _)))
    }

    /// Every counter and gauge from admin `/stats?format=json`, by full name.
    pub async fn stats(&self) -> Result<BTreeMap<String, u64>> {
        let (status, body) = self.admin_get("/stats?format=json").await?;
        if status != 200 {
            bail!("admin /stats answered {status}");
        }
        let json: Value = serde_json::from_str(&body).context("admin /stats is not JSON")?;
        Ok(json["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|stat| Some((stat["name"].as_str()?.to_owned(), stat["value"].as_u64()?)))
            .collect())
    }

    /// Its worker threads (`--concurrency`).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The connections each worker thread holds open on the listener called `name`, by worker
    /// index (`listener.<name>.worker_<i>.downstream_cx_active`; the listener must set
    /// `stat_prefix: <name>`, as `envoy/e2e.yaml` does). Envoy hands each accepted connection to
    /// one worker for its whole life, so this tells which workers a client's keep-alive
    /// connections reach.
    pub async fn connections_per_worker(&self, name: &str) -> Result<Vec<u64>> {
        let stats = self.stats().await?;
        (0..self.workers)
            .map(|worker| {
                let stat = format!("listener.{name}.worker_{worker}.downstream_cx_active");
                stats
                    .get(&stat)
                    .copied()
                    .with_context(|| format!("Envoy has no stat {stat}"))
            })
            .collect()
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Envoy process that is not ready yet; killed if dropped before it becomes an [`Envoy`].
struct Starting {
    child: Option<Child>,
    log_path: PathBuf,
    client: reqwest::Client,
    workers: usize,
}

impl Starting {
    fn child_mut(&mut self) -> Result<&mut Child> {
        self.child
            .as_mut()
            .context("Envoy process already handed over")
    }

    /// `Some` once admin is ready and every listener accepts connections.
    async fn ready(&mut self, admin_path: &Path) -> Result<Option<Envoy>> {
        let Some(admin) = std::fs::read_to_string(admin_path)
            .ok()
            .and_then(|text| text.trim().parse::<SocketAddr>().ok())
        else {
            return Ok(None);
        };
        if !matches!(admin_get(&self.client, admin, "/ready").await, Ok((200, _))) {
            return Ok(None);
        }
        let Ok((200, body)) = admin_get(&self.client, admin, "/listeners?format=json").await else {
            return Ok(None);
        };
        let listeners = parse_listeners(&body)?;
        for addr in listeners.values() {
            if addr.port() == 0 || tokio::net::TcpStream::connect(addr).await.is_err() {
                return Ok(None);
            }
        }
        let child = self
            .child
            .take()
            .context("Envoy process already handed over")?;
        Ok(Some(Envoy {
            child,
            admin,
            listeners,
            log_path: self.log_path.clone(),
            client: self.client.clone(),
            workers: self.workers,
        }))
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn admin_get(
    client: &reqwest::Client,
    admin: SocketAddr,
    path: &str,
) -> Result<(u16, String)> {
    let response = client.get(format!("http://{admin}{path}")).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// Admin `/listeners?format=json`: `{"listener_statuses":[{"name", "local_address":
/// {"socket_address": {"address", "port_value"}}}]}`.
fn parse_listeners(body: &str) -> Result<BTreeMap<String, SocketAddr>> {
    let json: Value = serde_json::from_str(body).context("admin /listeners is not JSON")?;
    let mut listeners = BTreeMap::new();
    for status in json["listener_statuses"].as_array().into_iter().flatten() {
        let socket = &status["local_address"]["socket_address"];
        let (Some(name), Some(ip), Some(port)) = (
            status["name"].as_str(),
            socket["address"].as_str(),
            socket["port_value"].as_u64(),
        ) else {
            continue;
        };
        let addr = format!("{ip}:{port}")
            .parse()
            .with_context(|| format!("listener {name} address"))?;
        listeners.insert(name.to_owned(), addr);
    }
    Ok(listeners)
}

fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
