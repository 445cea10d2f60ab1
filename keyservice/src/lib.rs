//! keygate-keyservice: the companion service of the keygate filter. It issues and manages API
//! keys (admin API) and answers the filter's key lookups and usage reports.
//!
//! A service is [`app`] (the router over an [`AppState`]) plus [`run`] (serve on a listener
//! until a shutdown future completes). `main.rs` wires them to the command line; the API tests
//! start the same thing on port 0 with a temporary database and a manual clock.
//!
//! # Layout
//! - [`config`]: flags and environment variables (clap), checked into a [`config::Config`].
//! - [`startup`]: opens the store, settles the admin secret, builds the [`AppState`].
//! - [`store`]: [`store::KeyStore`], the SQLite database. The only module with SQL.
//! - [`keys`]: the key domain, pure: validation, status, expiry, lookup answers, usage booking.
//! - [`http`]: one module per area of the API, the auth extractors and the JSON error type.
//! - [`clock`]: where `now` comes from: the system clock, or a manual one in tests.
//! - [`entropy`]: the OS CSPRNG: key secrets, key ids, the generated admin secret.
//! - [`telemetry`]: log output.
//! - `migrations/` (next to `src/`): the schema, embedded at build time.

pub mod clock;
pub mod config;
pub mod entropy;
pub mod http;
pub mod keys;
pub mod startup;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::http::auth::Tokens;
use crate::keys::{CachePolicy, Lifetime};
use crate::store::KeyStore;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: KeyStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) tokens: Tokens,
    pub(crate) default_key_lifetime: Lifetime,
    pub(crate) cache: CachePolicy,
}

/// The service's router.
pub fn app(state: AppState) -> Router {
    http::router().with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then lets in-flight requests finish
/// and closes the database.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!("listening on {}", listener.local_addr()?);
    let store = state.store.clone();
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    store.close().await;
    tracing::info!("stopped");
    served
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
