//! keygate-keyservice: the companion service of the keygate filter. It issues and manages API
//! keys (admin API) and answers the filter's key lookups and usage reports. It is also a small
//! OAuth 2.0 authorization server for machine clients: client credentials (admin API), a token
//! endpoint issuing short-lived RFC 9068 JWT access tokens, and the JWKS and metadata to verify
//! them. For proxies without the Wasm filter it answers Envoy `ext_authz` API key checks.
//!
//! A service is [`app`] (the router over an [`AppState`]) plus [`run`] (serve on a listener
//! until a shutdown future completes, rotating signing keys in the background). `main.rs` wires
//! them to the command line; the API tests start the same thing on port 0 with a temporary
//! database and a manual clock.
//!
//! # Layout
//! - [`config`]: flags and environment variables (clap), checked into a [`config::Config`].
//! - [`startup`]: opens the store, settles the admin secret, brings the signing keys up to date,
//!   builds the [`AppState`].
//! - [`store`]: [`store::KeyStore`], the SQLite database. The only module with SQL.
//! - [`keys`]: the key domain, pure: validation, status, expiry, lookup answers, usage booking.
//! - [`clients`]: the OAuth client domain, pure: ids, secrets, client authentication.
//! - [`token`]: access tokens, pure: claims (RFC 9068), lifetime, scope narrowing.
//! - [`signing`]: signing keys: generation, PKCS#8, JWK, JWS signing (EdDSA, ES256, RS256).
//! - [`rotation`]: the signing-key rotation policy, pure: `plan_rotation(keys, now, policy)`.
//! - [`keyring`]: [`keyring::KeyRing`], the signing keys in memory, rotated against the store.
//! - [`ratelimit`]: [`ratelimit::FailureLimiter`], failed client authentications per
//!   (client id, source address) and per source address.
//! - [`server`]: the accept loop: connection cap, header read timeout, graceful shutdown.
//! - [`http`]: one module per area of the API, the auth extractors and the JSON error type.
//! - [`clock`]: where `now` comes from: the system clock, or a manual one in tests.
//! - [`entropy`]: the OS CSPRNG: secrets, ids, token ids, signing keys, the admin secret.
//! - [`telemetry`]: log output.
//! - `migrations/` (next to `src/`): the schema, embedded at build time.

#![forbid(unsafe_code)]

pub mod clients;
pub mod clock;
pub mod config;
pub mod entropy;
pub mod http;
pub mod keyring;
pub mod keys;
pub mod ratelimit;
pub mod rotation;
pub mod server;
pub mod signing;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod token;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::server::ConnectionLimits;

use crate::clock::Clock;
use crate::http::auth::Tokens;
use crate::keyring::KeyRing;
use crate::keys::{CachePolicy, Lifetime};
use crate::ratelimit::FailureLimiter;
use crate::store::KeyStore;
use crate::token::TokenPolicy;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: KeyStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) tokens: Tokens,
    pub(crate) default_key_lifetime: Lifetime,
    pub(crate) cache: CachePolicy,
    pub(crate) access_tokens: TokenPolicy,
    pub(crate) keyring: KeyRing,
    pub(crate) auth_failures: Arc<FailureLimiter>,
    pub(crate) limits: ConnectionLimits,
}

impl AppState {
    /// The signing keys, for running a rotation check outside the background schedule (tests
    /// with a manual clock do).
    pub fn keyring(&self) -> &KeyRing {
        &self.keyring
    }
}

/// The service's router.
pub fn app(state: AppState) -> Router {
    http::router(state.limits.request_body_timeout).with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then lets in-flight requests finish
/// and closes the database. Meanwhile it checks the signing keys for rotation every
/// [`keyring::CHECK_INTERVAL`]. Records each connection's peer address (the token endpoint's
/// failure limiter counts per address). Connections are capped and timed as the state's
/// [`ConnectionLimits`] say (see [`server`]).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!("listening on {}", listener.local_addr()?);
    let store = state.store.clone();
    let rotation = tokio::spawn(
        state
            .keyring
            .clone()
            .rotate_periodically(state.clock.clone()),
    );
    let limits = state.limits;
    server::serve(listener, app(state), limits, shutdown).await;
    rotation.abort();
    let _ = rotation.await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
