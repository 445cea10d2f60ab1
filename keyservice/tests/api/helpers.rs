//! `spawn_app(backend)`: the real service on port 0, on a temporary SQLite file or a fresh
//! PostgreSQL database ([`Backend`]), with a generated admin secret and a manual clock; and a
//! client that speaks to it over real HTTP.
//!
//! Every API test runs on both backends: it is an `async fn name(backend: Backend)`, and
//! [`backend_tests!`] makes the `#[tokio::test]`s `name::sqlite` and `name::postgres` of it
//! (`cargo test -p keygate-keyservice --test api ::postgres` runs the PostgreSQL half). The
//! PostgreSQL comes from `keygate-testdb`: `KEYGATE_TEST_DATABASE_URL`, or a throwaway cluster.

use std::path::PathBuf;
use std::sync::Arc;

use keygate_core::jwt::{verify, Jwks, JwtError, PermissionsClaim, ProviderPolicy, VerifiedToken};
use keygate_core::key::KeyHash;
use keygate_keyservice::clock::{Clock, ManualClock};
use keygate_keyservice::config::{Config, LogFormat, Secret};
use keygate_keyservice::feed::Retention;
use keygate_keyservice::keys::{CachePolicy, Lifetime};
use keygate_keyservice::ratelimit::FailurePolicy;
use keygate_keyservice::rotation::RotationPolicy;
use keygate_keyservice::server::ConnectionLimits;
use keygate_keyservice::signing::SigningAlg;
use keygate_keyservice::startup::{self, Prepared, StartupError};
use keygate_keyservice::store::{Database, DatabaseUrl};
use keygate_keyservice::token::{Audience, Issuer, TokenPolicy};
use keygate_keyservice::AppState;
use keygate_testdb::TestDatabase;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const FILTER_TOKEN: &str = "test-filter-token";
/// The `/metrics` token of apps started with [`Options::metrics_token`] set to it.
pub const METRICS_TOKEN: &str = "test-metrics-token";
/// 2026-11-22T10:00:00Z
pub const START_UNIX: i64 = 1_795_341_600;
pub const LOOKUP_CACHE_TTL_SECS: u64 = 30;
pub const NEGATIVE_CACHE_TTL_SECS: u64 = 10;
pub const DEFAULT_KEY_TTL_SECS: u64 = 15 * 24 * 60 * 60;
pub const ISSUER: &str = "https://keygate.test";
pub const TOKEN_AUDIENCE: &str = "keygate-tests";
pub const TOKEN_TTL_SECS: u64 = 300;
pub const ROTATION_SECS: u64 = 30 * 24 * 60 * 60;
/// Pre-publication lead and retirement delay for the tests' 300 s tokens: 300 s (the longer of
/// the token TTL and the JWKS max-age) + 60 s skew.
pub const LEAD_SECS: i64 = 360;
pub const CHANGE_LOG_RETENTION_SECS: u64 = 24 * 60 * 60;

pub fn start_time() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(START_UNIX).unwrap()
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Which database an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates, for each `async fn name(backend: Backend)` listed, the tests `name::sqlite` and
/// `name::postgres`. A leading `multi_thread;` runs them on a multi-threaded runtime.
macro_rules! backend_tests {
    (multi_thread; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}
pub(crate) use backend_tests;

/// A database that outlives the apps started on it (restarts). Clones share it; the last one
/// dropped removes it.
#[derive(Debug, Clone)]
pub enum TestDb {
    /// The folder holding `nested/keygate.db` (a folder that does not exist yet: the service
    /// must create it).
    Sqlite(Arc<TempDir>),
    Postgres(Arc<TestDatabase>),
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::Sqlite(Arc::new(tempfile::tempdir().unwrap())),
            Backend::Postgres => Self::Postgres(Arc::new(TestDatabase::create())),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// What the service is configured with.
    pub fn database(&self) -> Database {
        match self {
            Self::Sqlite(dir) => Database::Sqlite(dir.path().join("nested").join("keygate.db")),
            Self::Postgres(db) => Database::Postgres(DatabaseUrl::parse(db.url()).unwrap()),
        }
    }

    /// The SQLite file. Panics on PostgreSQL: for tests about the file itself.
    pub fn sqlite_path(&self) -> PathBuf {
        match self.database() {
            Database::Sqlite(path) => path,
            Database::Postgres(_) => panic!("not an SQLite database"),
        }
    }

    /// A cold backup: a new database holding what this one holds now. Stop the apps on it first.
    pub fn snapshot(&self) -> Self {
        match self {
            Self::Sqlite(_) => {
                let copy = Self::new(Backend::Sqlite);
                let to = copy.sqlite_path();
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(self.sqlite_path(), &to).unwrap();
                copy
            }
            Self::Postgres(db) => Self::Postgres(Arc::new(db.copy())),
        }
    }

    /// Runs `sql` behind the service's back and says how it went, as the database words it.
    pub async fn try_execute(&self, sql: &'static str) -> Result<(), String> {
        let result = match self.database() {
            Database::Sqlite(path) => {
                let url = format!("sqlite://{}", path.display());
                let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(sql).execute(&mut db).await.map(drop)
            }
            Database::Postgres(url) => {
                let mut db = sqlx::PgConnection::connect(url.expose()).await.unwrap();
                sqlx::query(sql).execute(&mut db).await.map(drop)
            }
        };
        result.map_err(|e| e.to_string())
    }

    /// Runs `sql` on the database behind the service's back, on a connection of its own.
    pub async fn execute(&self, sql: &'static str) {
        match self.database() {
            Database::Sqlite(path) => {
                let url = format!("sqlite://{}", path.display());
                let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(sql).execute(&mut db).await.unwrap();
                db.close().await.unwrap();
            }
            Database::Postgres(url) => {
                let mut db = sqlx::PgConnection::connect(url.expose()).await.unwrap();
                sqlx::query(sql).execute(&mut db).await.unwrap();
                db.close().await.unwrap();
            }
        }
    }
}

/// Where and how to start the service.
pub struct Options {
    /// Reuse the database of an earlier app (a restart), or share one with another app (a
    /// second replica, PostgreSQL only).
    pub database: Option<TestDb>,
    /// As if `KEYGATE_ADMIN_SECRET` were set.
    pub admin_secret: Option<String>,
    pub filter_token: String,
    pub signing_alg: SigningAlg,
    /// Timeouts and connection cap; the flags' defaults unless a test needs them short.
    pub limits: ConnectionLimits,
    /// As if `KEYGATE_METRICS_TOKEN` were set; `None`: `/metrics` is off.
    pub metrics_token: Option<String>,
    /// `--hide-docs`.
    pub hide_docs: bool,
    /// `--hide-console`.
    pub hide_console: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            database: None,
            admin_secret: None,
            filter_token: FILTER_TOKEN.to_owned(),
            signing_alg: SigningAlg::EdDsa,
            limits: ConnectionLimits::default(),
            metrics_token: None,
            hide_docs: false,
            hide_console: false,
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_secret: String,
    /// Whether this start generated the admin secret (rather than finding one stored).
    pub generated_admin_secret: bool,
    pub clock: Arc<ManualClock>,
    pub database: TestDb,
    /// The running service's state, for what tests drive by hand (key rotation checks).
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, mut options: Options) -> TestApp {
    let database = options
        .database
        .take()
        .unwrap_or_else(|| TestDb::new(backend));
    assert_eq!(
        database.backend(),
        backend,
        "the app's database is of another backend"
    );
    let clock = Arc::new(ManualClock::new(start_time()));
    let admin_secret = options.admin_secret.clone();
    let prepared = prepare_with(&database.database(), &options, clock.clone())
        .await
        .unwrap();
    let generated = prepared
        .generated_admin_secret
        .as_ref()
        .map(|s| s.expose().to_owned());
    let admin_secret = match (generated.clone(), admin_secret) {
        (Some(s), _) | (None, Some(s)) => s,
        // A restart on a database with a generated secret: the caller knows it.
        (None, None) => String::new(),
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stop) = oneshot::channel::<()>();
    let state = prepared.state.clone();
    let server = tokio::spawn(keygate_keyservice::run(listener, prepared.state, async {
        let _ = stop.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        admin_secret,
        generated_admin_secret: generated.is_some(),
        clock,
        database,
        state,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// What `main` does between parsing flags and binding, with test settings.
pub async fn prepare(
    database: &Database,
    admin_secret: Option<&str>,
    filter_token: &str,
    clock: Arc<ManualClock>,
) -> Result<Prepared, StartupError> {
    let options = Options {
        admin_secret: admin_secret.map(str::to_owned),
        filter_token: filter_token.to_owned(),
        ..Options::default()
    };
    prepare_with(database, &options, clock).await
}

/// [`prepare`] with every setting of `options` (its `database` aside: that is `database`).
pub async fn prepare_with(
    database: &Database,
    options: &Options,
    clock: Arc<ManualClock>,
) -> Result<Prepared, StartupError> {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: database.clone(),
        admin_secret: options
            .admin_secret
            .as_deref()
            .map(|s| Secret::parse(s).unwrap()),
        filter_token: Secret::parse(&options.filter_token).unwrap(),
        metrics_token: options
            .metrics_token
            .as_deref()
            .map(|s| Secret::parse(s).unwrap()),
        default_key_lifetime: Lifetime::from_secs(DEFAULT_KEY_TTL_SECS).unwrap(),
        cache: CachePolicy {
            valid_ttl_secs: LOOKUP_CACHE_TTL_SECS,
            invalid_ttl_secs: NEGATIVE_CACHE_TTL_SECS,
        },
        access_tokens: TokenPolicy::new(
            Issuer::parse(ISSUER).unwrap(),
            Audience::parse(TOKEN_AUDIENCE).unwrap(),
            TOKEN_TTL_SECS,
        )
        .unwrap(),
        rotation: RotationPolicy::new(options.signing_alg, ROTATION_SECS, TOKEN_TTL_SECS).unwrap(),
        auth_failures: FailurePolicy::default(),
        limits: options.limits,
        change_log_retention: Retention::from_secs(CHANGE_LOG_RETENTION_SECS).unwrap(),
        audit_retention: keygate_keyservice::audit::Retention::days(
            keygate_keyservice::audit::DEFAULT_RETENTION_DAYS,
        ),
        log_format: LogFormat::Pretty,
        log_filter: "info".into(),
        hide_docs: options.hide_docs,
        hide_console: options.hide_console,
    };
    startup::prepare(&config, clock).await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Moves the service's clock forward.
    pub fn advance(&self, secs: i64) {
        self.clock.advance(Duration::seconds(secs));
    }

    pub fn as_admin(&self, request: RequestBuilder) -> RequestBuilder {
        request.bearer_auth(&self.admin_secret)
    }

    /// A request with `secret` as the bearer token (a tenant admin's, a wrong one).
    pub async fn call(
        &self,
        secret: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(secret);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    /// Creates a role as the super-admin and returns it.
    pub async fn create_role(&self, tenant: &str, name: &str, permissions: &[&str]) -> Value {
        let response = self
            .admin_post(
                "/v1/roles",
                &json!({"tenant": tenant, "name": name, "description": "", "permissions": permissions}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// Creates a tenant admin as the super-admin and returns the 201 body (with `secret`).
    pub async fn create_tenant_admin(&self, body: &Value) -> Value {
        let response = self.admin_post("/v1/tenant-admins", body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// The audit events matching `query` (e.g. `action=key.create`), newest first, as the
    /// super-admin reads them.
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let response = self.admin_get(&format!("/v1/audit?{query}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        page["events"].as_array().unwrap().clone()
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        self.as_admin(self.client.get(self.url(path)))
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Response {
        self.as_admin(self.client.post(self.url(path)))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_delete(&self, path: &str) -> Response {
        self.as_admin(self.client.delete(self.url(path)))
            .send()
            .await
            .unwrap()
    }

    /// Creates a key and returns the 201 body (the key view plus `secret`).
    pub async fn create_key(&self, body: &Value) -> Value {
        let response = self.admin_post("/v1/keys", body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// A key for tenant `acme` with `orders:read`, default expiry.
    pub async fn create_default_key(&self) -> Value {
        self.create_key(&json!({"name": "ci", "tenant": "acme", "permissions": ["orders:read"]}))
            .await
    }

    pub async fn lookup_raw(&self, token: &str, key_secret: &str) -> Response {
        let key_hash = KeyHash::of(key_secret.as_bytes()).to_hex();
        self.client
            .post(self.url("/v1/lookup"))
            .bearer_auth(token)
            .json(&json!({ "key_hash": key_hash }))
            .send()
            .await
            .unwrap()
    }

    /// Looks a key secret up as the filter does and returns the 200 body.
    pub async fn lookup(&self, key_secret: &str) -> Value {
        let response = self.lookup_raw(FILTER_TOKEN, key_secret).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// `POST /v1/lookups` with `token` and this `key_hashes` value, as it is (hex strings, or
    /// whatever a test wants to send).
    pub async fn lookup_batch_raw(&self, token: &str, key_hashes: Value) -> Response {
        self.client
            .post(self.url("/v1/lookups"))
            .bearer_auth(token)
            .json(&json!({ "key_hashes": key_hashes }))
            .send()
            .await
            .unwrap()
    }

    /// Looks the key secrets up at once as the filter does and returns the 200 body's answers.
    pub async fn lookup_batch(&self, key_secrets: &[&str]) -> Vec<Value> {
        let hashes: Vec<String> = key_secrets
            .iter()
            .map(|s| KeyHash::of(s.as_bytes()).to_hex())
            .collect();
        let response = self.lookup_batch_raw(FILTER_TOKEN, json!(hashes)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["answers"].as_array().unwrap().clone()
    }

    pub async fn report_usage(&self, entries: Value) -> Response {
        self.client
            .post(self.url("/v1/usage"))
            .bearer_auth(FILTER_TOKEN)
            .json(&json!({ "entries": entries }))
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/changes` with the filter token and this query string (`after=…&limit=…`).
    pub async fn changes_raw(&self, token: &str, query: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/changes?{query}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/changes` as the filter, after `cursor` (none: `None`), with `extra` query
    /// parameters (`&limit=2`); returns the 200 body.
    pub async fn changes(&self, cursor: Option<&str>, extra: &str) -> Value {
        let after = cursor.map_or_else(String::new, |c| format!("after={}", form_encode(c)));
        let response = self
            .changes_raw(FILTER_TOKEN, &format!("{after}{extra}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// A filter's long-poll of `/v1/changes` after `cursor`, held for up to 20 s, sent from a
    /// task; returns once this app holds it (it read the log, found nothing, and waits). The
    /// task answers the 200 body.
    pub async fn held_changes_poll(&self, cursor: &str) -> tokio::task::JoinHandle<Value> {
        let client = self.client.clone();
        let url = self.url(&format!(
            "/v1/changes?after={}&wait_ms=20000",
            form_encode(cursor)
        ));
        let poll = tokio::spawn(async move {
            let response = client
                .get(url)
                .bearer_auth(FILTER_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        });
        let started = std::time::Instant::now();
        while self.state.change_signal().parked() < 1 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "the long-poll never parked"
            );
            tokio::task::yield_now().await;
        }
        poll
    }

    /// The feed's current cursor, as a filter's first request gets it.
    pub async fn change_cursor(&self) -> String {
        let answer = self.changes(None, "").await;
        assert_eq!(answer["reset"], true);
        answer["cursor"].as_str().unwrap().to_owned()
    }

    /// Runs the signing-key rotation check now, as the background task does every minute.
    pub async fn check_signing_keys(&self) {
        self.state
            .keyring()
            .rotate_if_due(self.clock.now())
            .await
            .unwrap();
    }

    /// Creates an OAuth client and returns the 201 body (the client view plus `client_secret`).
    pub async fn create_client(&self, body: &Value) -> Value {
        let response = self.admin_post("/v1/clients", body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// A client for tenant `acme` with `orders:read` and `orders:write`, default expiry.
    pub async fn create_default_client(&self) -> Value {
        self.create_client(&json!({
            "name": "billing",
            "tenant": "acme",
            "permissions": ["orders:read", "orders:write"],
        }))
        .await
    }

    /// `POST /oauth/token` with `form` as the body and, if given, HTTP Basic credentials
    /// (form-urlencoded first, as RFC 6749 section 2.3.1 says).
    pub async fn token_request(
        &self,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Response {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .client
            .post(self.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(form_encode(id), Some(form_encode(secret)));
        }
        request.send().await.unwrap()
    }

    /// A token for `client` (a create answer) by HTTP Basic; returns the 200 body.
    pub async fn token_for(&self, client: &Value, form: &[(&str, &str)]) -> Value {
        let mut form = form.to_vec();
        form.push(("grant_type", "client_credentials"));
        let response = self
            .token_request(
                Some((
                    client["client_id"].as_str().unwrap(),
                    client["client_secret"].as_str().unwrap(),
                )),
                &form,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The JWKS document as served.
    pub async fn jwks(&self) -> Value {
        let response = self
            .client
            .get(self.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The kids the JWKS lists, in order.
    pub async fn published_kids(&self) -> Vec<String> {
        self.jwks().await["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The SQLite file (panics on PostgreSQL).
    pub fn db_path(&self) -> PathBuf {
        self.database.sqlite_path()
    }

    /// Sends the shutdown signal and waits for the server to finish and close the database.
    pub async fn stop(mut self) -> TestDb {
        self.shutdown_and_wait().await;
        self.database.clone()
    }

    async fn shutdown_and_wait(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one component.
pub fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Asserts RFC 6749's error shape (section 5.2) and returns the `error` code.
pub async fn oauth_error(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error_description"].is_string(),
        "no error_description in {body}"
    );
    body["error"].as_str().unwrap().to_owned()
}

/// Asserts the service's error shape and returns the `error` code.
pub async fn error_code(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].is_string(), "no message in {body}");
    body["error"].as_str().unwrap().to_owned()
}

/// The accepted token's identity, checked by keygate-core's verifier (independent of the
/// service's signer) against `jwks` at `now`, with the tests' issuer and audience.
pub fn verify_token(token: &str, jwks: &Value, now: i64) -> Result<VerifiedToken, JwtError> {
    let jwks = Jwks::parse(jwks.to_string().as_bytes()).unwrap();
    assert!(jwks.skipped().is_empty(), "{:?}", jwks.skipped());
    let policy = ProviderPolicy::new("keygate", ISSUER, vec![TOKEN_AUDIENCE.to_owned()])
        .unwrap()
        .with_tenant_claim("tenant")
        .with_permissions_claim(PermissionsClaim::Array("permissions".into()));
    verify(token, &jwks, &policy, u64::try_from(now).unwrap())
}

/// The decoded JSON of a compact JWS's header (`0`) or payload (`1`).
pub fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(index).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
