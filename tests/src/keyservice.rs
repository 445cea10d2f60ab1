//! The real `keygate-server` binary, on a port of its own and a database in the test's temporary
//! directory, plus a client for its admin API and its token endpoint. It can be stopped and started
//! again on the same port and database, to take the key service away from the filter. Several
//! replicas can run on one database ([`KeyService::start_replica`]), each with its own port, log
//! and extra arguments (a `--database-url`, say).
//!
//! It always runs with [`KEYSERVICE_ISSUER`] and [`KEYSERVICE_AUDIENCE`], so a filter
//! configuration can name its tokens' issuer before the service has a port (as in production,
//! where the issuer is the public URL, not the listen address).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::time::{sleep, Instant};

use crate::artifacts;
use crate::envoy::tail;

/// The admin secret every test key service runs with.
pub const ADMIN_SECRET: &str = "e2e-admin-secret-7f3c9a1d5b2e4f6a8c0d1e2f3a4b5c6d";
/// The token the filter presents to the key service in every test.
pub const FILTER_TOKEN: &str = "e2e-filter-token-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// `iss` of the access tokens every test key service issues (`KEYGATE_ISSUER`).
pub const KEYSERVICE_ISSUER: &str = "http://keyservice.keygate.test";
/// `aud` of those tokens (`KEYGATE_TOKEN_AUDIENCE`).
pub const KEYSERVICE_AUDIENCE: &str = "keygate";
/// Where the key service publishes the keys that verify its tokens.
pub const KEYSERVICE_JWKS_PATH: &str = "/.well-known/jwks.json";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// A `keygate-server` process (or a stopped one that can be started again).
#[derive(Debug)]
pub struct KeyService {
    addr: SocketAddr,
    db_path: PathBuf,
    log_path: PathBuf,
    extra_env: Vec<(String, String)>,
    extra_args: Vec<String>,
    child: Option<Child>,
    client: reqwest::Client,
}

impl KeyService {
    /// Starts `keygate-server` on a free port with its database in `dir`, and waits for
    /// `/healthz`. `extra_env` is passed on (e.g. `KEYGATE_LOOKUP_CACHE_TTL_SECS`).
    pub async fn start(dir: &Path, extra_env: Vec<(String, String)>) -> Result<Self> {
        Self::start_replica(dir, "keyservice", extra_env, Vec::new()).await
    }

    /// Starts one replica: `keygate-server` on a free port, logging to `dir/<name>.log`, on the
    /// database `dir/keygate.db` that every replica started in `dir` shares (unless `extra_args`
    /// or `extra_env` point it elsewhere), and waits for `/healthz`.
    pub async fn start_replica(
        dir: &Path,
        name: &str,
        extra_env: Vec<(String, String)>,
        extra_args: Vec<String>,
    ) -> Result<Self> {
        let mut service = Self {
            addr: free_port()?,
            db_path: dir.join("keygate.db"),
            log_path: dir.join(format!("{name}.log")),
            extra_env,
            extra_args,
            child: None,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        service.start_again().await?;
        Ok(service)
    }

    /// Starts the process again (same port, same database) after [`stop`](Self::stop).
    pub async fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("key service is already running");
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new(artifacts::keygate_server()?)
            .env("KEYGATE_LISTEN", self.addr.to_string())
            .env("KEYGATE_DB_PATH", &self.db_path)
            .env("KEYGATE_ADMIN_SECRET", ADMIN_SECRET)
            .env("KEYGATE_FILTER_TOKEN", FILTER_TOKEN)
            .env("KEYGATE_ISSUER", KEYSERVICE_ISSUER)
            .env("KEYGATE_TOKEN_AUDIENCE", KEYSERVICE_AUDIENCE)
            .env("NO_COLOR", "1")
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning keygate-server")?;
        self.child = Some(child);
        self.wait_healthy().await
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "keygate-server exited at start-up ({status}); its log ends:\n{}",
                    self.log_tail()
                );
            }
            let healthy = self.client.get(self.url("/healthz")).send().await;
            if matches!(healthy, Ok(ref r) if r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "keygate-server not healthy after {STARTUP_TIMEOUT:?}; its log ends:\n{}",
                    self.log_tail()
                );
            }
            sleep(POLL).await;
        }
    }

    /// Kills the process; the port then refuses connections.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing keygate-server")?;
            child.wait()?;
        }
        Ok(())
    }

    /// Freezes the process (SIGSTOP): the kernel still accepts connections, nobody answers.
    pub fn freeze(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Lets a frozen process run on (SIGCONT).
    pub fn thaw(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, which: &str) -> Result<()> {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .context("keygate-server is not running")?;
        let status = Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill {which} {pid}: {status}");
        }
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SQLite database file (its `-wal` and `-shm` files lie next to it).
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        tail(&self.log(), 30)
    }

    /// An admin call with the admin secret: status and JSON body (`Null` when empty).
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_SECRET);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling key service {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `POST /v1/keys` with `body`; the created key (`id`, `secret`, ...).
    pub async fn create_key_with(&self, body: Value) -> Result<Value> {
        let (status, created) = self.admin(Method::POST, "/v1/keys", Some(body)).await?;
        if status != 201 {
            bail!("POST /v1/keys answered {status}: {created}");
        }
        Ok(created)
    }

    /// Creates an active key for `tenant` with `permissions`: `(id, secret)`.
    pub async fn create_key(&self, tenant: &str, permissions: &[&str]) -> Result<(String, String)> {
        let created = self
            .create_key_with(json!({"name": "e2e", "tenant": tenant, "permissions": permissions}))
            .await?;
        match (created["id"].as_str(), created["secret"].as_str()) {
            (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
            _ => bail!("POST /v1/keys answer lacks id or secret: {created}"),
        }
    }

    /// `POST /v1/keys/{id}/revoke`.
    pub async fn revoke(&self, id: &str) -> Result<()> {
        let (status, body) = self
            .admin(Method::POST, &format!("/v1/keys/{id}/revoke"), None)
            .await?;
        if status != 200 {
            bail!("revoking {id} answered {status}: {body}");
        }
        Ok(())
    }

    /// `POST /v1/clients`: an active OAuth client for `tenant` holding `permissions`,
    /// `(client_id, client_secret)`.
    pub async fn create_client(
        &self,
        tenant: &str,
        permissions: &[&str],
    ) -> Result<(String, String)> {
        let body = json!({"name": "e2e", "tenant": tenant, "permissions": permissions});
        let (status, created) = self.admin(Method::POST, "/v1/clients", Some(body)).await?;
        if status != 201 {
            bail!("POST /v1/clients answered {status}: {created}");
        }
        match (
            created["client_id"].as_str(),
            created["client_secret"].as_str(),
        ) {
            (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
            _ => bail!("POST /v1/clients answer lacks client_id or client_secret: {created}"),
        }
    }

    /// `POST /v1/clients/{id}/revoke`.
    pub async fn revoke_client(&self, id: &str) -> Result<()> {
        let (status, body) = self
            .admin(Method::POST, &format!("/v1/clients/{id}/revoke"), None)
            .await?;
        if status != 200 {
            bail!("revoking client {id} answered {status}: {body}");
        }
        Ok(())
    }

    /// `POST /oauth/token` with `grant_type=client_credentials` (and `scope` if given), the client
    /// authenticating with HTTP Basic: status and JSON body, whatever they are.
    pub async fn token_request(
        &self,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut form = "grant_type=client_credentials".to_owned();
        if let Some(scope) = scope {
            form.push_str("&scope=");
            form.push_str(&form_encode(scope));
        }
        let response = self
            .client
            .post(self.url("/oauth/token"))
            .basic_auth(form_encode(client_id), Some(form_encode(client_secret)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .context("calling the token endpoint")?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// An access token for the client (client credentials grant, HTTP Basic), narrowed to `scope`
    /// if given; an error unless the token endpoint answers 200.
    pub async fn token(
        &self,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
    ) -> Result<String> {
        let (status, body) = self.token_request(client_id, client_secret, scope).await?;
        match body["access_token"].as_str() {
            Some(token) if status == 200 => Ok(token.to_owned()),
            _ => bail!("POST /oauth/token answered {status}: {body}"),
        }
    }

    /// `GET /v1/keys/{id}/usage`.
    pub async fn usage(&self, id: &str) -> Result<Value> {
        let (status, body) = self
            .admin(Method::GET, &format!("/v1/keys/{id}/usage"), None)
            .await?;
        if status != 200 {
            bail!("usage of {id} answered {status}: {body}");
        }
        Ok(body)
    }
}

impl Drop for KeyService {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 section 2.3.1 asks for it
/// inside HTTP Basic too): unreserved characters as they are, space as `+`, the rest `%XX`.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A port on 127.0.0.1 that was free a moment ago. The key service must be told its port up front
/// (Envoy's cluster points at it, and a restart must come back on it).
pub fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(form_encode("orders:read admin"), "orders%3Aread+admin");
        assert_eq!(form_encode("kgc_AZaz09-._~"), "kgc_AZaz09-._~");
    }
}
