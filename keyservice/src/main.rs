//! `keygate-server`: reads the configuration, then runs the key service until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use keygate_keyservice::clock::SystemClock;
use keygate_keyservice::config::{Cli, ADMIN_SECRET_ENV};
use keygate_keyservice::{shutdown_signal, startup, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Cli::parse().into_config(std::env::var_os(ADMIN_SECRET_ENV))?;
    telemetry::init(config.log_format, &config.log_filter)?;
    let prepared = startup::prepare(&config, Arc::new(SystemClock)).await?;
    if let Some(secret) = &prepared.generated_admin_secret {
        startup::print_generated_admin_secret(secret, &mut std::io::stdout().lock())
            .context("cannot print the generated admin secret; set KEYGATE_ADMIN_SECRET instead")?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    keygate_keyservice::run(listener, prepared.state, shutdown_signal()).await?;
    Ok(())
}
