//! An external identity provider stand-in: a real HTTP server on 127.0.0.1 that publishes a JWKS
//! at [`IDP_JWKS_PATH`], and ES256 keys that sign its tokens with `jsonwebtoken` (ring), a
//! different implementation from the filter's verifier.
//!
//! A test changes what the JWKS lists ([`Idp::publish`]) to rotate keys, stops and starts the
//! server ([`Idp::stop`], [`Idp::start_again`]) to take the IdP away (stopping closes the listener
//! and every open connection, so Envoy's next fetch is refused, as with a real outage), and can hold
//! JWKS answers back ([`Idp::hold`], [`Idp::release`]) to keep the filter without keys for a while.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The `iss` of the stand-in's tokens (what a provider's `issuer` must say).
pub const IDP_ISSUER: &str = "https://idp.keygate.test/";
/// The `aud` of the stand-in's tokens by default.
pub const IDP_AUDIENCE: &str = "https://orders.keygate.test";
/// Where the stand-in serves its JWKS.
pub const IDP_JWKS_PATH: &str = "/jwks.json";
/// The claim the stand-in puts the tenant in (as Auth0 does with `org_id`).
pub const IDP_TENANT_CLAIM: &str = "org_id";
/// How long the stand-in's tokens live by default.
const TOKEN_LIFETIME_SECS: u64 = 300;

/// An ES256 signing key of the IdP, with its public JWK.
pub struct IdpKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl IdpKey {
    /// A fresh P-256 key named `kid`.
    pub fn generate(kid: &str) -> Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow!("generating a P-256 key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow!("reading back the generated P-256 key"))?;
        // An uncompressed SEC1 point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 0x04 {
            bail!(
                "unexpected P-256 public key encoding ({} bytes)",
                point.len()
            );
        }
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
            "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Ok(Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// A compact JWS of `claims`, header `{"alg":"ES256","typ":"JWT","kid":…}`.
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).context("signing a token")
    }

    /// A fresh token for `subject` with `permissions` and tenant `tenant`, valid for five minutes:
    /// [`claims`] signed with this key.
    pub fn token(&self, subject: &str, tenant: &str, permissions: &[&str]) -> Result<String> {
        self.sign(&claims(subject, tenant, permissions))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The claims of a token the stand-in issues now: `iss`, `aud`, `sub`, `iat`, `exp`, a `jti` that
/// makes every token distinct (so a token is never one the filter has cached already), the tenant
/// in [`IDP_TENANT_CLAIM`] and `permissions` as an array. Tests change them before signing.
pub fn claims(subject: &str, tenant: &str, permissions: &[&str]) -> Value {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let now = unix_now();
    json!({
        "iss": IDP_ISSUER,
        "aud": IDP_AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_SECS,
        "jti": format!("{now}-{}", SERIAL.fetch_add(1, Ordering::Relaxed)),
        IDP_TENANT_CLAIM: tenant,
        "permissions": permissions,
    })
}

/// What the server shares with the test.
struct Published {
    jwks: Mutex<Value>,
    /// JWKS requests received, answered or not.
    requests: AtomicUsize,
    /// `true` while JWKS answers are held back.
    held: watch::Sender<bool>,
}

/// The IdP stand-in's HTTP server. Stopped when dropped.
pub struct Idp {
    addr: SocketAddr,
    published: Arc<Published>,
    server: Option<JoinHandle<()>>,
}

impl Idp {
    /// Starts serving an empty JWKS on a free port of 127.0.0.1.
    pub async fn start() -> Result<Self> {
        let listener = bind("127.0.0.1:0".parse()?)?;
        let mut idp = Self {
            addr: listener.local_addr()?,
            published: Arc::new(Published {
                jwks: Mutex::new(Value::Null),
                requests: AtomicUsize::new(0),
                held: watch::Sender::new(false),
            }),
            server: None,
        };
        idp.publish(&[]);
        idp.serve(listener);
        Ok(idp)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on the JWKS lists exactly `keys`.
    pub fn publish(&self, keys: &[&IdpKey]) {
        let jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        *self
            .published
            .jwks
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = jwks;
    }

    /// How many JWKS requests arrived (including held ones).
    pub fn jwks_requests(&self) -> usize {
        self.published.requests.load(Ordering::SeqCst)
    }

    /// Holds JWKS answers back until [`release`](Self::release): the IdP accepts the requests and
    /// answers none of them.
    pub fn hold(&self) {
        self.published.held.send_replace(true);
    }

    /// Answers the held JWKS requests, and later ones at once.
    pub fn release(&self) {
        self.published.held.send_replace(false);
    }

    /// Stops serving: closes the listener and every open connection, so connections are refused
    /// until [`start_again`](Self::start_again).
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            // Wait until the task (and with it the listener and the connections) is gone.
            let _ = server.await;
        }
    }

    /// Serves again on the same port, with the same JWKS.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.server.is_some() {
            bail!("the IdP stand-in is already running");
        }
        let listener = bind(self.addr)?;
        self.serve(listener);
        Ok(())
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = Router::new()
            .route(IDP_JWKS_PATH, get(jwks))
            .with_state(Arc::clone(&self.published));
        self.server = Some(tokio::spawn(async move {
            // Connections live in this task's JoinSet: aborting the task drops them all.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors or the like: try again soon rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let service = TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A listener on `addr` with `SO_REUSEADDR`, so a restart can take the same port back at once.
fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding the IdP stand-in to {addr}"))?;
    Ok(socket.listen(64)?)
}

async fn jwks(State(published): State<Arc<Published>>) -> Json<Value> {
    published.requests.fetch_add(1, Ordering::SeqCst);
    // Never fails: the sender lives in `published`, which this handler holds.
    let _ = published.held.subscribe().wait_for(|held| !held).await;
    Json(
        published
            .jwks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn tokens_verify_with_the_published_jwk() {
        let key = IdpKey::generate("k1").unwrap();
        let token = key.token("svc", "acme", &["orders:read"]).unwrap();

        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk().clone()).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[IDP_AUDIENCE]);
        validation.set_issuer(&[IDP_ISSUER]);
        let decoded = jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_jwk(&jwk).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.header.kid.as_deref(), Some("k1"));
        assert_eq!(decoded.claims["org_id"], "acme");
        assert_eq!(decoded.claims["permissions"], json!(["orders:read"]));
    }

    #[test]
    fn every_token_is_distinct() {
        let key = IdpKey::generate("k1").unwrap();
        let a = key.token("svc", "acme", &[]).unwrap();
        let b = key.token("svc", "acme", &[]).unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn jwks_follows_publish_and_stop_refuses_connections() {
        let mut idp = Idp::start().await.unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("http://{}{IDP_JWKS_PATH}", idp.addr());
        let key = IdpKey::generate("k1").unwrap();

        let empty: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        idp.publish(&[&key]);
        let one: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(empty, json!({"keys": []}));
        assert_eq!(one["keys"][0]["kid"], "k1");
        assert_eq!(idp.jwks_requests(), 2);

        idp.stop().await;
        assert!(client.get(&url).send().await.is_err(), "still answering");
        idp.start_again().await.unwrap();
        let again: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(again, one);
    }

    #[tokio::test]
    async fn held_answers_come_on_release() {
        let idp = Idp::start().await.unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("http://{}{IDP_JWKS_PATH}", idp.addr());
        idp.hold();

        let request = tokio::spawn(async move { client.get(&url).send().await });
        while idp.jwks_requests() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!request.is_finished(), "answered while held");
        idp.release();

        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
}
