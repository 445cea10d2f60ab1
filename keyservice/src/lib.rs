//! keygate-keyservice: the companion service of the keygate filter. It issues and manages API
//! keys (admin API) and answers the filter's key lookups and usage reports. It is also a small
//! OAuth 2.0 authorization server for machine clients: client credentials (admin API), a token
//! endpoint issuing short-lived RFC 9068 JWT access tokens, and the JWKS and metadata to verify
//! them. For proxies without the Wasm filter it answers Envoy `ext_authz` API key checks.
//!
//! A service is [`app`] (the router over an [`AppState`]) plus [`run`] (serve on a listener
//! until a shutdown future completes, rotating signing keys and trimming the change log in the
//! background). `main.rs` wires
//! them to the command line; the API tests start the same thing on port 0 with a temporary
//! database and a manual clock.
//!
//! # Layout
//! - [`config`]: flags and environment variables (clap), checked into a [`config::Config`].
//! - [`startup`]: opens the store, settles the admin secret, brings the signing keys up to date,
//!   builds the [`AppState`].
//! - [`store`]: [`store::KeyStore`], the database: an SQLite file by default, PostgreSQL with
//!   `--database-url`. The only module with SQL.
//! - [`keys`]: the key domain, pure: validation, status, expiry, lookup answers, usage booking.
//! - [`feed`]: the revocation feed's rules: what is logged, cursors, resets, retention, the
//!   long-poll signal.
//! - [`clients`]: the OAuth client domain, pure: ids, secrets, client authentication.
//! - [`token`]: access tokens, pure: claims (RFC 9068), lifetime, scope narrowing.
//! - [`signing`]: signing keys: generation, PKCS#8, JWK, JWS signing (EdDSA, ES256, RS256).
//! - [`rotation`]: the signing-key rotation policy, pure: `plan_rotation(keys, now, policy)`.
//! - [`keyring`]: [`keyring::KeyRing`], the signing keys in memory, rotated against the store.
//! - [`metrics`]: [`metrics::Metrics`], the Prometheus series of `/metrics`.
//! - [`ratelimit`]: [`ratelimit::FailureLimiter`], failed client authentications per
//!   (client id, source address) and per source address.
//! - [`server`]: the accept loop: connection cap, header read timeout, graceful shutdown.
//! - [`http`]: one module per area of the API, the auth extractors and the JSON error type.
//! - [`clock`]: where `now` comes from: the system clock, or a manual one in tests.
//! - [`entropy`]: the OS CSPRNG: secrets, ids, token ids, signing keys, the admin secret.
//! - [`telemetry`]: log output.
//! - `migrations/sqlite/`, `migrations/postgres/` (next to `src/`): the schema of each backend,
//!   embedded at build time.

#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod clients;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod entropy;
pub mod feed;
pub mod http;
pub mod keyring;
pub mod keys;
pub mod metrics;
pub mod ratelimit;
pub mod roles;
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
use crate::feed::{ChangeSignal, Retention};
use crate::http::auth::Tokens;
use crate::keyring::KeyRing;
use crate::keys::{CachePolicy, Lifetime};
use crate::metrics::Metrics;
use crate::ratelimit::FailureLimiter;
use crate::store::{KeyStore, StoreError};
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
    /// How long the change log keeps a change.
    pub(crate) change_log_retention: Retention,
    /// How long the audit log keeps an event.
    pub(crate) audit_retention: audit::Retention,
    /// How many failed authentications the audit log still takes this minute.
    pub(crate) failure_audit: Arc<std::sync::Mutex<audit::FailureAudit>>,
    pub(crate) metrics: Metrics,
    /// `--hide-docs`: the router leaves out `/openapi.json` and `/docs`.
    pub(crate) hide_docs: bool,
    /// `--hide-console`: the router leaves out `/console`.
    pub(crate) hide_console: bool,
}

impl AppState {
    /// The signing keys, for running a rotation check outside the background schedule (tests
    /// with a manual clock do).
    pub fn keyring(&self) -> &KeyRing {
        &self.keyring
    }

    /// Trims the change log to the retention window now, as the background task does every
    /// [`feed::TRIM_INTERVAL`]. Returns how many changes went.
    pub async fn trim_change_log(&self) -> Result<u64, StoreError> {
        let before = self.change_log_retention.cutoff(self.clock.now());
        self.store.trim_changes(before).await
    }

    /// Deletes the audit events older than the retention now, as the background task does
    /// with the change log's trim. Returns how many went.
    pub async fn trim_audit_log(&self) -> Result<u64, StoreError> {
        let before = self.audit_retention.cutoff(self.clock.now());
        self.store.trim_audit(before).await
    }

    /// The wake-up signal of this process's `/v1/changes` long-polls.
    pub fn change_signal(&self) -> &ChangeSignal {
        self.store.change_signal()
    }

    /// Runs [`AppState::trim_change_log`] and [`AppState::trim_audit_log`] every
    /// [`feed::TRIM_INTERVAL`], forever. A failure is
    /// logged and retried at the next tick; readers whose cursor is trimmed meanwhile reset.
    async fn trim_change_log_periodically(self) {
        let mut ticks = tokio::time::interval(feed::TRIM_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.trim_change_log().await {
                Ok(0) => {}
                Ok(trimmed) => tracing::debug!(trimmed, "change log trimmed"),
                Err(e) => {
                    tracing::error!(
                        error = %http::error::ErrorChain(&e),
                        "change log trim failed"
                    );
                }
            }
            match self.trim_audit_log().await {
                Ok(0) => {}
                Ok(trimmed) => tracing::debug!(trimmed, "audit log trimmed"),
                Err(e) => {
                    tracing::error!(
                        error = %http::error::ErrorChain(&e),
                        "audit log trim failed"
                    );
                }
            }
        }
    }
}

/// The service's router.
pub fn app(state: AppState) -> Router {
    let docs = if state.hide_docs {
        http::Docs::Hidden
    } else {
        http::Docs::Served
    };
    let console = if state.hide_console {
        http::console::Console::Hidden
    } else {
        http::console::Console::Served
    };
    http::router(
        state.limits.request_body_timeout,
        docs,
        console,
        state.metrics.clone(),
    )
    .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then ends the `/v1/changes`
/// long-polls, lets in-flight requests finish and closes the database. Meanwhile it checks the
/// signing keys for rotation every [`keyring::CHECK_INTERVAL`] and trims the change log every
/// [`feed::TRIM_INTERVAL`]. Records each connection's peer address (the token endpoint's
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
    let trim = tokio::spawn(state.clone().trim_change_log_periodically());
    let limits = state.limits;
    let changes = state.store.clone();
    let shutdown = async move {
        shutdown.await;
        // A long-poll would otherwise hold the graceful shutdown for up to its whole wait.
        changes.change_signal().close();
    };
    server::serve(listener, app(state), limits, shutdown).await;
    rotation.abort();
    let _ = rotation.await;
    trim.abort();
    let _ = trim.await;
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
