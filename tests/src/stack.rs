//! [`Stack`]: one whole keygate deployment for one test. An echo upstream (in-process), the real
//! `keygate-server`, an external IdP stand-in (in-process, see [`crate::idp`]), and a real Envoy
//! running `keygate.wasm` from the rendered `envoy/e2e.yaml`, all on ports of their own in
//! 127.0.0.1. Dropping the stack stops everything; if the test is failing, the tails of the Envoy
//! and key service logs are printed first.
//!
//! A stack can also be a small fleet ([`StackOptions::envoys`], [`StackOptions::keyservices`]):
//! several Envoys with the same filter configuration, and several key service replicas on one
//! database, each Envoy's key service cluster listing the replicas [`Routing`] gives it. The
//! client helpers use the first Envoy and the first replica.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::task::JoinSet;

use crate::echo::{spawn_echo, EchoHandle, EchoedRequest};
use crate::envoy::{tail, Envoy, StartOutcome, WORKERS};
use crate::idp::{Idp, IdpKey, IDP_AUDIENCE, IDP_ISSUER, IDP_JWKS_PATH, IDP_TENANT_CLAIM};
use crate::keyservice::{
    KeyService, FILTER_TOKEN, KEYSERVICE_AUDIENCE, KEYSERVICE_ISSUER, KEYSERVICE_JWKS_PATH,
};
use crate::raw_http::{self, Reply};
use crate::{artifacts, template};

/// The Envoy cluster name of the key service in `envoy/e2e.yaml`.
pub const KEYSERVICE_CLUSTER: &str = "keygate_keyservice";
/// The Envoy cluster of the IdP stand-in in `envoy/e2e.yaml`.
pub const IDP_CLUSTER: &str = "keygate_idp";
/// The provider name of the key service's tokens in [`keyservice_provider`].
pub const KEYSERVICE_PROVIDER: &str = "keygate";
/// The provider name of the IdP stand-in's tokens in [`idp_provider`].
pub const IDP_PROVIDER: &str = "idp";
/// The `kid` of the key the IdP stand-in publishes and signs with from the start.
pub const IDP_FIRST_KID: &str = "idp-key-1";

/// The two listeners of `envoy/e2e.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Envoy normalises the path first (`normalize_path`, `merge_slashes`, escaped slashes
    /// rejected), as in production.
    Main,
    /// No path normalisation by Envoy: the filter's own path handling is all there is.
    Raw,
}

impl Listener {
    pub fn name(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Raw => "raw",
        }
    }
}

/// The filter configuration the tests start from: the routes of the demo, the key service cluster
/// of `envoy/e2e.yaml`, and usage reports rare enough not to show up in callout counts. The
/// harness fills in `key_service.token`.
pub fn base_filter_config() -> Value {
    json!({
        "key_service": {"cluster": KEYSERVICE_CLUSTER, "timeout_ms": 1000},
        "cache": {"ttl_secs": 60, "negative_ttl_secs": 10},
        "usage": {"report_interval_secs": 600},
        "failure_mode": "closed",
        "unmatched": "deny",
        "routes": [
            {"path": "/healthz", "public": true},
            {"prefix": "/public/", "public": true},
            {"methods": ["GET"], "path": "/orders/*", "permissions": ["orders:read"]},
            {"methods": ["POST"], "path": "/orders", "permissions": ["orders:write"]},
            {"prefix": "/admin/", "permissions": ["admin"]}
        ]
    })
}

/// The JWT provider for the key service's own access tokens: its issuer and audience, its JWKS
/// fetched through the key service cluster, the tenant from the `tenant` claim.
pub fn keyservice_provider() -> Value {
    json!({
        "name": KEYSERVICE_PROVIDER,
        "issuer": KEYSERVICE_ISSUER,
        "audiences": [KEYSERVICE_AUDIENCE],
        "jwks": {"remote": {"cluster": KEYSERVICE_CLUSTER, "path": KEYSERVICE_JWKS_PATH}},
        "tenant_claim": "tenant"
    })
}

/// The JWT provider for the IdP stand-in: its JWKS fetched through [`IDP_CLUSTER`], the tenant
/// from [`IDP_TENANT_CLAIM`]. Refresh and refetch intervals are the defaults; tests that rotate
/// keys shorten them.
pub fn idp_provider() -> Value {
    json!({
        "name": IDP_PROVIDER,
        "issuer": IDP_ISSUER,
        "audiences": [IDP_AUDIENCE],
        "jwks": {"remote": {"cluster": IDP_CLUSTER, "path": IDP_JWKS_PATH}},
        "tenant_claim": IDP_TENANT_CLAIM
    })
}

/// [`base_filter_config`] accepting JWTs from both [`keyservice_provider`] and [`idp_provider`].
pub fn jwt_filter_config() -> Value {
    let mut config = base_filter_config();
    config["jwt"] = json!({"providers": [keyservice_provider(), idp_provider()]});
    config
}

/// Which key service replicas each Envoy's key service cluster lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Every Envoy lists every replica (Envoy balances between them).
    EveryReplica,
    /// Envoy `i` lists replica `i % replicas` only: what one Envoy writes through its replica
    /// must reach the others through theirs.
    OnePerEnvoy,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The filter configuration; `key_service.token` and `key_service.cluster` are filled in when
    /// absent.
    pub filter_config: Value,
    /// The Envoy config template (placeholders `KEYSERVICE_PORT`, `UPSTREAM_PORT`, `IDP_PORT`,
    /// `WASM_PATH`, `FILTER_CONFIG`).
    pub template: PathBuf,
    /// Extra environment for `keygate-server` (every replica).
    pub keyservice_env: Vec<(String, String)>,
    /// Extra command-line arguments for `keygate-server` (every replica), e.g. a
    /// `--database-url` they all share.
    pub keyservice_args: Vec<String>,
    /// Key service processes, all on one database (`keygate.db` in the stack's directory unless
    /// `keyservice_args`/`keyservice_env` say otherwise). At least one.
    pub keyservices: usize,
    /// Which replicas each Envoy's key service cluster lists.
    pub routing: Routing,
    /// The key service cluster health-checks `/healthz` and ejects failing replicas, with the
    /// settings the README's "Running at scale" gives. Off by default: with one replica Envoy
    /// would route to it anyway (panic mode), and the failure tests want no extra traffic.
    pub keyservice_health_checks: bool,
    /// Envoys, each with [`workers`](Self::workers) workers and the same filter configuration
    /// (each has its own shared data, hence its own poller of the revocation feed). At least one.
    pub envoys: usize,
    /// The IdP stand-in holds its JWKS answers from the start, so the filter has no keys for its
    /// provider until the test calls [`Idp::release`].
    pub hold_idp_jwks: bool,
    /// Envoy's worker threads (`--concurrency`), each with its own Wasm VM.
    pub workers: usize,
    /// The raw listener's filter configuration, when it differs from `filter_config` (the two
    /// listeners share one `vm_id`, hence one shared data).
    pub raw_filter_config: Option<Value>,
}

impl StackOptions {
    pub fn new(filter_config: Value) -> Self {
        Self {
            filter_config,
            template: artifacts::e2e_template(),
            keyservice_env: Vec::new(),
            keyservice_args: Vec::new(),
            keyservices: 1,
            routing: Routing::EveryReplica,
            keyservice_health_checks: false,
            envoys: 1,
            hold_idp_jwks: false,
            workers: WORKERS,
            raw_filter_config: None,
        }
    }

    /// Envoy with no filter at all, straight to the upstream: tests the harness alone.
    pub fn passthrough() -> Self {
        Self {
            template: artifacts::passthrough_template(),
            ..Self::new(base_filter_config())
        }
    }
}

/// How [`Stack::try_start_with`] ended.
pub enum Started {
    Running(Box<Stack>),
    /// Envoy exited before serving; `log` is all it wrote.
    EnvoyRefused {
        status: ExitStatus,
        log: String,
    },
}

/// A running deployment. See the module docs.
pub struct Stack {
    envoy: Envoy,
    /// The Envoys after the first.
    more_envoys: Vec<Envoy>,
    keyservice: KeyService,
    /// The key service replicas after the first.
    replicas: Vec<KeyService>,
    echo: EchoHandle,
    idp: Idp,
    idp_key: IdpKey,
    client: reqwest::Client,
    config_path: PathBuf,
    // Last: removed after the processes using it are gone.
    dir: TempDir,
}

impl Stack {
    /// Starts a stack with `filter_config` on `envoy/e2e.yaml`.
    pub async fn start(filter_config: Value) -> Result<Self> {
        Self::start_with(StackOptions::new(filter_config)).await
    }

    pub async fn start_with(options: StackOptions) -> Result<Self> {
        match Self::try_start_with(options).await? {
            Started::Running(stack) => Ok(*stack),
            Started::EnvoyRefused { status, log } => {
                bail!(
                    "Envoy exited at start-up ({status}); its log ends:\n{}",
                    tail(&log, 40)
                )
            }
        }
    }

    /// Like [`start_with`](Self::start_with), but Envoy refusing the config is an outcome, not an
    /// error: for tests of bad filter configurations.
    pub async fn try_start_with(options: StackOptions) -> Result<Started> {
        if options.envoys == 0 || options.keyservices == 0 {
            bail!("a stack needs at least one Envoy and one key service");
        }
        let dir = tempfile::Builder::new().prefix("keygate-e2e-").tempdir()?;
        let (echo_addr, echo) = spawn_echo().await.context("starting the echo upstream")?;
        // One at a time: the first creates the database, the others find it made.
        let keyservice = KeyService::start_replica(
            dir.path(),
            "keyservice",
            options.keyservice_env.clone(),
            options.keyservice_args.clone(),
        )
        .await?;
        let mut replicas = Vec::new();
        for i in 1..options.keyservices {
            replicas.push(
                KeyService::start_replica(
                    dir.path(),
                    &format!("keyservice-{i}"),
                    options.keyservice_env.clone(),
                    options.keyservice_args.clone(),
                )
                .await?,
            );
        }
        // The IdP publishes its first key before Envoy starts, so the first fetch finds it.
        let idp = Idp::start().await.context("starting the IdP stand-in")?;
        let idp_key = IdpKey::generate(IDP_FIRST_KID)?;
        idp.publish(&[&idp_key]);
        if options.hold_idp_jwks {
            idp.hold();
        }
        let all_replicas: Vec<SocketAddr> = std::iter::once(&keyservice)
            .chain(&replicas)
            .map(KeyService::addr)
            .collect();
        let mut envoys = Vec::new();
        let mut config_path = PathBuf::new();
        for i in 0..options.envoys {
            let keyservices = match options.routing {
                Routing::EveryReplica => all_replicas.clone(),
                Routing::OnePerEnvoy => all_replicas
                    .get(i % all_replicas.len())
                    .copied()
                    .into_iter()
                    .collect(),
            };
            let ports = Ports {
                keyservices,
                upstream: echo_addr,
                idp: idp.addr(),
            };
            // The first Envoy's files lie in the stack's directory, the others' in `envoy-<i>/`.
            let workdir = if i == 0 {
                dir.path().to_owned()
            } else {
                let sub = dir.path().join(format!("envoy-{i}"));
                std::fs::create_dir_all(&sub)?;
                sub
            };
            let path = render_config(&options, &workdir, &ports)?;
            if i == 0 {
                config_path = path.clone();
            }
            match Envoy::try_start_with_workers(&path, &workdir, options.workers).await? {
                StartOutcome::Ready(envoy) => {
                    if polls_feed(&options) {
                        until_feed_answered(&envoy).await?;
                    }
                    envoys.push(envoy)
                }
                StartOutcome::Exited { status, log } => {
                    return Ok(Started::EnvoyRefused { status, log })
                }
            }
        }
        let mut envoys = envoys.into_iter();
        let envoy = envoys.next().context("no Envoy started")?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Started::Running(Box::new(Self {
            envoy,
            more_envoys: envoys.collect(),
            keyservice,
            replicas,
            echo,
            idp,
            idp_key,
            client,
            config_path,
            dir,
        })))
    }

    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    pub fn keyservice(&self) -> &KeyService {
        &self.keyservice
    }

    /// Every Envoy of the stack, the first ([`envoy`](Self::envoy)) first.
    pub fn envoys(&self) -> impl Iterator<Item = &Envoy> {
        std::iter::once(&self.envoy).chain(&self.more_envoys)
    }

    /// Envoy number `i` (0 is [`envoy`](Self::envoy)).
    pub fn envoy_at(&self, i: usize) -> Result<&Envoy> {
        self.envoys()
            .nth(i)
            .with_context(|| format!("the stack has no Envoy {i}"))
    }

    /// Every key service replica, the first ([`keyservice`](Self::keyservice)) first.
    pub fn keyservices(&self) -> impl Iterator<Item = &KeyService> {
        std::iter::once(&self.keyservice).chain(&self.replicas)
    }

    /// Replica number `i` (0 is [`keyservice`](Self::keyservice)).
    pub fn keyservice_at(&self, i: usize) -> Result<&KeyService> {
        self.keyservices()
            .nth(i)
            .with_context(|| format!("the stack has no key service {i}"))
    }

    fn keyservice_at_mut(&mut self, i: usize) -> Result<&mut KeyService> {
        std::iter::once(&mut self.keyservice)
            .chain(&mut self.replicas)
            .nth(i)
            .with_context(|| format!("the stack has no key service {i}"))
    }

    /// Kills replica `i`; the other replicas and the Envoys keep running.
    pub fn stop_replica(&mut self, i: usize) -> Result<()> {
        self.keyservice_at_mut(i)?.stop()
    }

    /// Starts replica `i` again on the same port and arguments.
    pub async fn start_replica(&mut self, i: usize) -> Result<()> {
        self.keyservice_at_mut(i)?.start_again().await
    }

    /// Like [`counter`](Self::counter), on Envoy number `i`.
    pub async fn counter_at(&self, i: usize, suffix: &str) -> Result<u64> {
        Ok(sum_stat(&self.envoy_at(i)?.stats().await?, suffix))
    }

    /// The rendered Envoy config this stack runs.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// The bound address of `listener`.
    pub fn addr(&self, listener: Listener) -> Result<SocketAddr> {
        self.envoy.listener(listener.name())
    }

    /// `GET path` through the main listener with `headers`.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Reply> {
        self.request(Method::GET, path, headers).await
    }

    /// A request through the main listener, sent with reqwest (the path is parsed as a URL, so
    /// dot segments are resolved: use [`raw`](Self::raw) for path tricks).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let url = format!("http://{}{path}", self.addr(Listener::Main)?);
        send(&self.client, method, &url, headers).await
    }

    /// A request written byte for byte, through `listener`.
    pub async fn raw(
        &self,
        listener: Listener,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        raw_http::send(self.addr(listener)?, method, path, headers).await
    }

    /// `n` concurrent `GET path` through the main listener, each on its own connection.
    pub async fn get_many(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        n: usize,
    ) -> Result<Vec<Reply>> {
        let url = format!("http://{}{path}", self.addr(Listener::Main)?);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut requests = JoinSet::new();
        for _ in 0..n {
            // A client per request: one connection each, so the requests really are concurrent.
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(15))
                .build()?;
            let (url, headers) = (url.clone(), headers.clone());
            requests.spawn(async move {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                send(&client, Method::GET, &url, &headers).await
            });
        }
        let mut replies = Vec::with_capacity(n);
        while let Some(reply) = requests.join_next().await {
            replies.push(reply??);
        }
        Ok(replies)
    }

    /// Every request the upstream received so far.
    pub fn upstream_requests(&self) -> Vec<EchoedRequest> {
        self.echo.requests()
    }

    /// Envoy counters and gauges by full name.
    pub async fn stats(&self) -> Result<BTreeMap<String, u64>> {
        self.envoy.stats().await
    }

    /// The value of the stat whose name is `suffix` or ends with `.suffix` (custom Wasm metrics may
    /// carry a prefix such as `wasmcustom.`), summed if several match; 0 if none exists yet.
    pub async fn counter(&self, suffix: &str) -> Result<u64> {
        Ok(sum_stat(&self.stats().await?, suffix))
    }

    /// Envoy's log so far.
    pub fn envoy_log(&self) -> String {
        self.envoy.log()
    }

    /// Admin `/ready` answers 200.
    pub async fn envoy_ready(&self) -> bool {
        self.envoy.is_ready().await
    }

    pub async fn create_key(&self, tenant: &str, permissions: &[&str]) -> Result<(String, String)> {
        self.keyservice.create_key(tenant, permissions).await
    }

    pub async fn create_key_with(&self, body: Value) -> Result<Value> {
        self.keyservice.create_key_with(body).await
    }

    pub async fn revoke(&self, id: &str) -> Result<()> {
        self.keyservice.revoke(id).await
    }

    pub async fn usage(&self, id: &str) -> Result<Value> {
        self.keyservice.usage(id).await
    }

    /// An admin call to the key service with the admin secret.
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        self.keyservice.admin(method, path, body).await
    }

    /// `POST /v1/clients`: `(client_id, client_secret)` of a new client.
    pub async fn create_client(
        &self,
        tenant: &str,
        permissions: &[&str],
    ) -> Result<(String, String)> {
        self.keyservice.create_client(tenant, permissions).await
    }

    pub async fn revoke_client(&self, id: &str) -> Result<()> {
        self.keyservice.revoke_client(id).await
    }

    /// An access token from the key service's token endpoint (client credentials, HTTP Basic).
    pub async fn token(
        &self,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
    ) -> Result<String> {
        self.keyservice.token(client_id, client_secret, scope).await
    }

    /// A token request whatever its outcome: status and JSON body.
    pub async fn token_request(
        &self,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
    ) -> Result<(u16, Value)> {
        self.keyservice
            .token_request(client_id, client_secret, scope)
            .await
    }

    /// The IdP stand-in: change its JWKS with [`Idp::publish`].
    pub fn idp(&self) -> &Idp {
        &self.idp
    }

    /// The key the IdP stand-in published at start ([`IDP_FIRST_KID`]).
    pub fn idp_key(&self) -> &IdpKey {
        &self.idp_key
    }

    /// Takes the IdP stand-in away: its port refuses connections.
    pub async fn stop_idp(&mut self) {
        self.idp.stop().await;
    }

    /// Brings the IdP stand-in back on the same port, with the same JWKS.
    pub async fn start_idp(&mut self) -> Result<()> {
        self.idp.start_again().await
    }

    /// Kills the key service; Envoy keeps running.
    pub fn stop_keyservice(&mut self) -> Result<()> {
        self.keyservice.stop()
    }

    /// Starts the key service again on the same port and database.
    pub async fn start_keyservice(&mut self) -> Result<()> {
        self.keyservice.start_again().await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- envoy log ({}), last lines ---\n{}\n--- key service log, last lines ---\n{}\n--- (stack dir {}) ---",
                self.envoy.log_path().display(),
                tail(&self.envoy.log(), 60),
                tail(&self.keyservice.log(), 30),
                self.dir.path().display()
            );
            for envoy in &self.more_envoys {
                eprintln!(
                    "--- envoy log ({}), last lines ---\n{}",
                    envoy.log_path().display(),
                    tail(&envoy.log(), 30)
                );
            }
        }
    }
}

/// The value of the stat whose name is `suffix` or ends with `.suffix`, summed if several match.
/// Whether the stack's filter reads the revocation feed: on unless its configuration turns it
/// off, in every template that loads the filter.
fn polls_feed(options: &StackOptions) -> bool {
    options.template == artifacts::e2e_template()
        && options.filter_config["revocation"]["enabled"] != Value::Bool(false)
}

/// Waits until `envoy`'s filter has its first answer from the revocation feed (a second poll
/// went out). That answer is a reset, which drops every key cached before it: a test's own
/// lookups come after it, so none is dropped under the test's feet.
async fn until_feed_answered(envoy: &Envoy) -> Result<()> {
    const PATIENCE: Duration = Duration::from_secs(10);
    let started = tokio::time::Instant::now();
    loop {
        if sum_stat(&envoy.stats().await?, "keygate.feed_poll") >= 2 {
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            bail!(
                "the filter had no answer from the revocation feed {PATIENCE:?} after Envoy \
                 started; its log ends:\n{}",
                tail(&envoy.log(), 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sum_stat(stats: &BTreeMap<String, u64>, suffix: &str) -> u64 {
    let dotted = format!(".{suffix}");
    stats
        .iter()
        .filter(|(name, _)| *name == suffix || name.ends_with(&dotted))
        .map(|(_, value)| value)
        .sum()
}

/// Where the stack's own services listen, for one Envoy's config.
struct Ports {
    /// The key service replicas this Envoy's cluster lists (at least one).
    keyservices: Vec<SocketAddr>,
    upstream: SocketAddr,
    idp: SocketAddr,
}

/// The key service cluster's `lb_endpoints` for `replicas`, as JSON (a YAML flow sequence).
fn lb_endpoints(replicas: &[SocketAddr]) -> Value {
    replicas
        .iter()
        .map(|addr| {
            json!({"endpoint": {"address": {"socket_address": {
                "address": addr.ip().to_string(),
                "port_value": addr.port()
            }}}})
        })
        .collect()
}

/// The key service cluster's `health_checks` and `outlier_detection` (JSON, i.e. flow YAML) as
/// README.md's "Running at scale" sets them, or none.
fn keyservice_health(enabled: bool) -> (Value, Value) {
    if !enabled {
        return (json!([]), Value::Null);
    }
    (
        json!([{"timeout": "0.5s", "interval": "1s", "no_traffic_interval": "1s",
                "unhealthy_threshold": 2, "healthy_threshold": 1,
                "http_health_check": {"path": "/healthz"}}]),
        json!({"consecutive_local_origin_failure": 2, "split_external_local_origin_errors": true,
               "consecutive_5xx": 3, "base_ejection_time": "5s", "max_ejection_percent": 50}),
    )
}

/// Renders `options.template` into `dir/envoy.yaml`.
fn render_config(options: &StackOptions, dir: &std::path::Path, ports: &Ports) -> Result<PathBuf> {
    let template_path = &options.template;
    let text = std::fs::read_to_string(template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    // Only ask for the .wasm when the template loads it, so the harness self-test runs without it.
    let wasm = if text.contains("${WASM_PATH}") {
        artifacts::filter_wasm()?.display().to_string()
    } else {
        String::new()
    };
    // The filter configuration travels as a JSON string inside the YAML; a JSON string literal is
    // also a valid YAML scalar.
    let quoted = |config: &Value| -> Result<String> {
        let config = with_credentials(config.clone());
        Ok(serde_json::to_string(&serde_json::to_string(&config)?)?)
    };
    let filter_config = quoted(&options.filter_config)?;
    let raw_filter_config = quoted(
        options
            .raw_filter_config
            .as_ref()
            .unwrap_or(&options.filter_config),
    )?;
    let first_keyservice = ports
        .keyservices
        .first()
        .context("an Envoy without a key service")?;
    let keyservice_port = first_keyservice.port().to_string();
    let keyservice_endpoints = serde_json::to_string(&lb_endpoints(&ports.keyservices))?;
    let (health_checks, outlier_detection) = keyservice_health(options.keyservice_health_checks);
    let (health_checks, outlier_detection) = (
        serde_json::to_string(&health_checks)?,
        serde_json::to_string(&outlier_detection)?,
    );
    let upstream_port = ports.upstream.port().to_string();
    let idp_port = ports.idp.port().to_string();
    let rendered = template::render(
        &text,
        &[
            ("KEYSERVICE_PORT", &keyservice_port),
            ("KEYSERVICE_ENDPOINTS", &keyservice_endpoints),
            ("KEYSERVICE_HEALTH_CHECKS", &health_checks),
            ("KEYSERVICE_OUTLIER_DETECTION", &outlier_detection),
            ("UPSTREAM_PORT", &upstream_port),
            ("IDP_PORT", &idp_port),
            ("WASM_PATH", &wasm),
            ("FILTER_CONFIG", &filter_config),
            ("RAW_FILTER_CONFIG", &raw_filter_config),
        ],
    )
    .with_context(|| format!("rendering {}", template_path.display()))?;
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, rendered)?;
    Ok(path)
}

/// Fills in `key_service.cluster` and `key_service.token` when the test left them out.
fn with_credentials(mut config: Value) -> Value {
    if let Some(key_service) = config
        .as_object_mut()
        .map(|c| c.entry("key_service").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    {
        key_service
            .entry("cluster")
            .or_insert_with(|| json!(KEYSERVICE_CLUSTER));
        key_service
            .entry("token")
            .or_insert_with(|| json!(FILTER_TOKEN));
    }
    config
}

async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Reply> {
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("requesting {url}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response.text().await?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_filled_in_but_never_overwritten() {
        let filled = with_credentials(json!({"routes": []}));
        assert_eq!(filled["key_service"]["token"], FILTER_TOKEN);
        assert_eq!(filled["key_service"]["cluster"], KEYSERVICE_CLUSTER);
        let kept = with_credentials(json!({"key_service": {"token": "mine", "cluster": "c"}}));
        assert_eq!(kept["key_service"]["token"], "mine");
        assert_eq!(kept["key_service"]["cluster"], "c");
    }
}
