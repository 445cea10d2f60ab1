//! Start-up: open the store, settle which admin secret is accepted, bring the signing keys up to
//! date (generating the first one on a new database), and build the [`AppState`].
//!
//! The admin secret, in order of precedence:
//! 1. `KEYGATE_ADMIN_SECRET` or `--admin-secret-file`: used as is; nothing is stored, and a hash
//!    stored earlier is ignored (which is also how an operator replaces a lost secret).
//! 2. The hash stored in the database by an earlier start.
//! 3. Otherwise a new secret is generated, its hash stored, and the secret handed back in
//!    [`Prepared::generated_admin_secret`] for `main` to print once.

use std::io::{self, Write};
use std::sync::Arc;

use tracing::info;

use crate::clock::Clock;
use crate::config::{Config, Secret};
use crate::entropy::{self, EntropyError};
use crate::http::auth::Tokens;
use crate::keyring::{KeyRing, KeyRingError};
use crate::metrics::Metrics;
use crate::ratelimit::FailureLimiter;
use crate::store::{KeyStore, StoreError};
use crate::AppState;

/// A service ready to [`crate::run`].
pub struct Prepared {
    pub state: AppState,
    /// A secret generated on this start. Show it to the operator once; it cannot be recovered.
    pub generated_admin_secret: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the key store")]
    Store(#[from] StoreError),
    #[error("cannot generate the admin secret")]
    Entropy(#[from] EntropyError),
    #[error("the filter token must differ from the admin secret")]
    FilterTokenIsAdminSecret,
    #[error("the metrics token must differ from the admin secret and the filter token")]
    MetricsTokenReused,
    #[error("cannot prepare the access-token signing keys")]
    SigningKeys(#[from] KeyRingError),
}

pub async fn prepare(config: &Config, clock: Arc<dyn Clock>) -> Result<Prepared, StartupError> {
    let store = KeyStore::open(&config.database).await?;
    match build(config, store.clone(), clock).await {
        Ok(prepared) => Ok(prepared),
        Err(e) => {
            store.close().await;
            Err(e)
        }
    }
}

async fn build(
    config: &Config,
    store: KeyStore,
    clock: Arc<dyn Clock>,
) -> Result<Prepared, StartupError> {
    let (tokens, generated_admin_secret) = settle(config, &store).await?;
    let keyring = KeyRing::open(store.clone(), config.rotation, clock.now()).await?;
    let metrics = Metrics::new(store.errors());
    Ok(Prepared {
        state: AppState {
            store,
            clock,
            tokens,
            default_key_lifetime: config.default_key_lifetime,
            cache: config.cache,
            access_tokens: config.access_tokens.clone(),
            keyring,
            auth_failures: Arc::new(FailureLimiter::new(config.auth_failures)),
            limits: config.limits,
            change_log_retention: config.change_log_retention,
            audit_retention: config.audit_retention,
            failure_audit: Arc::default(),
            metrics,
            hide_docs: config.hide_docs,
            hide_console: config.hide_console,
        },
        generated_admin_secret,
    })
}

async fn settle(
    config: &Config,
    store: &KeyStore,
) -> Result<(Tokens, Option<Secret>), StartupError> {
    let (admin, generated) = match &config.admin_secret {
        Some(secret) => {
            info!("admin secret: configured");
            (secret.hash(), None)
        }
        None => match store.admin_secret_hash().await? {
            Some(stored) => {
                info!("admin secret: the one generated on first start");
                (stored, None)
            }
            None => {
                let secret = entropy::admin_secret()?;
                let stored = store.init_admin_secret_hash(&secret.hash()).await?;
                // Another process sharing the database may have stored its own first.
                if stored == secret.hash() {
                    info!("admin secret: generated now, printed once on stdout");
                    (stored, Some(secret))
                } else {
                    (stored, None)
                }
            }
        },
    };
    let filter = config.filter_token.hash();
    if filter == admin {
        return Err(StartupError::FilterTokenIsAdminSecret);
    }
    let metrics = config.metrics_token.as_ref().map(Secret::hash);
    if metrics.is_some_and(|m| m == admin || m == filter) {
        return Err(StartupError::MetricsTokenReused);
    }
    Ok((
        Tokens {
            admin,
            filter,
            metrics,
        },
        generated,
    ))
}

/// Prints a generated admin secret for the operator, clearly and once.
pub fn print_generated_admin_secret(secret: &Secret, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "========================================================================"
    )?;
    writeln!(
        out,
        "keygate-server generated the admin secret. It is shown only this once:"
    )?;
    writeln!(out)?;
    writeln!(out, "    {}", secret.expose())?;
    writeln!(out)?;
    writeln!(
        out,
        "Send it as `Authorization: Bearer <secret>` to /v1/keys. Only its SHA-256"
    )?;
    writeln!(out, "is stored. To replace it, set KEYGATE_ADMIN_SECRET.")?;
    writeln!(
        out,
        "========================================================================"
    )?;
    out.flush()
}
