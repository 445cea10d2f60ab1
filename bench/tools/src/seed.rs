//! `seed-keys`: valid API keys in bulk, straight into the key service's tables.
//!
//! The store itself opens the database first, so the schema and its migration record are the
//! real ones and a later `keygate-server` start finds nothing to do. Rows go in with multi-row
//! `INSERT`s inside one transaction, with `synchronous = OFF`: a million keys take seconds.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use keygate_core::key::{ApiKey, KeyHash, KEY_RANDOM_BYTES};
use keygate_keyservice::store::KeyStore;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite};

/// Rows per `INSERT`: 7 bound values each, well under SQLite's 32766 variables.
const ROWS_PER_STATEMENT: u64 = 1000;
const TENANT: &str = "bench";
const PERMISSIONS: &str = r#"["orders:read"]"#;

pub struct Seed {
    pub db: PathBuf,
    pub count: u64,
    pub secrets_out: PathBuf,
    pub secret_count: u64,
    pub hashes_out: PathBuf,
    pub hash_count: u64,
}

/// Key number `i`: the same in every run, so fixtures can be reused and compared.
pub fn key(i: u64) -> ApiKey {
    let digest = Sha256::digest(format!("keygate-bench/key/{i}").as_bytes());
    let mut random = [0u8; KEY_RANDOM_BYTES];
    random.copy_from_slice(&digest[..KEY_RANDOM_BYTES]);
    ApiKey::from_random(random)
}

/// A valid key id (`key_` and 16 lowercase hex), unique per key number.
fn key_id(i: u64) -> String {
    format!("key_{i:016x}")
}

pub async fn run(args: Seed) -> Result<()> {
    ensure!(
        args.secret_count <= args.count,
        "--secret-count exceeds --count"
    );
    ensure!(
        args.hash_count <= args.count,
        "--hash-count exceeds --count"
    );
    KeyStore::open(&args.db)
        .await
        .with_context(|| format!("opening {} with the key service's store", args.db.display()))?
        .close()
        .await;

    let mut conn = SqliteConnectOptions::new()
        .filename(&args.db)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .connect()
        .await?;
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let mut secrets = BufWriter::new(File::create(&args.secrets_out)?);
    let mut tx = conn.begin().await?;
    let mut start = 0;
    while start < args.count {
        let end = (start + ROWS_PER_STATEMENT).min(args.count);
        let rows: Vec<(u64, ApiKey)> = (start..end).map(|i| (i, key(i))).collect();
        for (i, key) in &rows {
            if *i < args.secret_count {
                writeln!(secrets, "{}", key.expose_secret())?;
            }
        }

        let mut keys: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO keys (id, name, tenant, permissions, created_at, expires_at, revoked_at) ",
        );
        keys.push_values(&rows, |mut row, (i, _)| {
            row.push_bind(key_id(*i))
                .push_bind(format!("bench-{i}"))
                .push_bind(TENANT)
                .push_bind(PERMISSIONS)
                .push_bind(now)
                .push_bind(None::<i64>)
                .push_bind(None::<i64>);
        });
        keys.build().execute(&mut *tx).await?;

        let mut hashes: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO key_secrets (hash, key_id, created_at, retires_at) ");
        hashes.push_values(&rows, |mut row, (i, key)| {
            row.push_bind(key.hash().as_bytes().to_vec())
                .push_bind(key_id(*i))
                .push_bind(now)
                .push_bind(None::<i64>);
        });
        hashes.build().execute(&mut *tx).await?;
        start = end;
    }
    tx.commit().await?;
    secrets.flush()?;
    conn.close().await?;

    // Evenly spaced key numbers: the secrets table is keyed by hash, so these land all over it.
    let mut hashes = BufWriter::new(File::create(&args.hashes_out)?);
    for j in 0..args.hash_count {
        let i =
            u64::try_from(u128::from(j) * u128::from(args.count) / u128::from(args.hash_count))?;
        writeln!(hashes, "{}", KeyHash::to_hex(&key(i).hash()))?;
    }
    hashes.flush()?;
    Ok(())
}
