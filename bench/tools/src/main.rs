//! keygate-bench: fixtures for `bench/run.sh`, made natively and fast.
//!
//! - `seed-keys`: puts many valid API keys into a key service database (SQLite or PostgreSQL) in
//!   one transaction (the admin API would take one fsync per key), and writes some of their
//!   secrets and hashes out for the load generator.
//! - `mint-jwts`: makes an Ed25519, a P-256 and an RSA key pair, writes their public JWKS, and
//!   mints many distinct tokens per algorithm, signed with `jsonwebtoken` (ring).
//!
//! Both are deterministic where it matters to the run (key *i* is the same key in every run) and
//! neither is part of keygate: they only feed the benchmark.

mod mint;
mod seed;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keygate_keyservice::store::{Database, DatabaseUrl};

#[derive(Parser)]
#[command(about = "Fixtures for bench/run.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bulk-inserts `count` active, never-expiring keys (tenant `bench`, permission
    /// `orders:read`) into the key service database (the SQLite file `db`, or the PostgreSQL
    /// database at `database_url`), creating its schema with the store's own migrations.
    SeedKeys {
        #[arg(
            long,
            required_unless_present = "database_url",
            conflicts_with = "database_url"
        )]
        db: Option<PathBuf>,
        /// `postgres://…`: an existing (empty) PostgreSQL database.
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long)]
        count: u64,
        /// Writes the secrets of keys 0..secret_count here, one per line.
        #[arg(long)]
        secrets_out: PathBuf,
        #[arg(long)]
        secret_count: u64,
        /// Writes the SHA-256 (hex) of `hash_count` keys spread evenly over all of them.
        #[arg(long)]
        hashes_out: PathBuf,
        #[arg(long)]
        hash_count: u64,
    },
    /// Writes `jwks.json` and `tokens-<ALG>.txt` (EdDSA, ES256, ES384, RS256, RS512, PS256) into
    /// `dir`.
    MintJwts {
        #[arg(long)]
        dir: PathBuf,
        /// Tokens per algorithm.
        #[arg(long)]
        count: usize,
        /// RS256, RS512 and PS256 tokens, when fewer are wanted (RSA signing is the slow part).
        #[arg(long)]
        rsa_count: Option<usize>,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        audience: String,
        /// Token lifetime: long enough to outlast the run.
        #[arg(long, default_value_t = 6 * 3600)]
        lifetime_secs: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::SeedKeys {
            db,
            database_url,
            count,
            secrets_out,
            secret_count,
            hashes_out,
            hash_count,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let database = match (db, database_url) {
                (_, Some(url)) => Database::Postgres(
                    DatabaseUrl::parse(&url)
                        .context("--database-url must start with postgres:// or postgresql://")?,
                ),
                (Some(path), None) => Database::Sqlite(path),
                (None, None) => anyhow::bail!("give --db or --database-url"),
            };
            runtime.block_on(seed::run(seed::Seed {
                database,
                count,
                secrets_out,
                secret_count,
                hashes_out,
                hash_count,
            }))
        }
        Command::MintJwts {
            dir,
            count,
            rsa_count,
            issuer,
            audience,
            lifetime_secs,
        } => mint::run(&mint::Mint {
            dir,
            count,
            rsa_count: rsa_count.unwrap_or(count),
            issuer,
            audience,
            lifetime_secs,
        }),
    }
}
