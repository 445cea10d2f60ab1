//! `seed-keys`: valid API keys in bulk, straight into the key service's tables, on SQLite or
//! PostgreSQL.
//!
//! The store itself opens the database first, so the schema and its migration record are the
//! real ones and a later `keygate-server` start finds nothing to do. Rows go in inside one
//! transaction that does not wait for its flush (SQLite `synchronous = OFF`, PostgreSQL
//! `synchronous_commit = off`): SQLite with multi-row `INSERT`s, PostgreSQL with `INSERT …
//! SELECT FROM UNNEST` of one array per column. A million keys take seconds.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use keygate_core::key::{ApiKey, KeyHash, KEY_RANDOM_BYTES};
use keygate_keyservice::store::{Database, KeyStore};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgConnection, QueryBuilder, Sqlite, SqliteConnection};

/// Rows per SQLite `INSERT`: 7 bound values each, well under SQLite's 32766 variables.
const SQLITE_ROWS_PER_STATEMENT: u64 = 1000;
/// Rows per PostgreSQL statement: each column is one array parameter, so only memory bounds it.
const POSTGRES_ROWS_PER_STATEMENT: u64 = 10_000;
const TENANT: &str = "bench";
const PERMISSIONS: &str = r#"["orders:read"]"#;

pub struct Seed {
    pub database: Database,
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

/// Keys `start..end` with their numbers; writes the secrets of those below `secret_count`.
fn batch(
    start: u64,
    end: u64,
    secret_count: u64,
    secrets: &mut impl Write,
) -> Result<Vec<(u64, ApiKey)>> {
    let rows: Vec<(u64, ApiKey)> = (start..end).map(|i| (i, key(i))).collect();
    for (i, key) in &rows {
        if *i < secret_count {
            writeln!(secrets, "{}", key.expose_secret())?;
        }
    }
    Ok(rows)
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
    KeyStore::open(&args.database)
        .await
        .with_context(|| format!("opening {:?} with the key service's store", args.database))?
        .close()
        .await;

    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let mut secrets = BufWriter::new(File::create(&args.secrets_out)?);
    match &args.database {
        Database::Sqlite(path) => {
            let mut conn = SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Off)
                .connect()
                .await?;
            insert_sqlite(&mut conn, &args, now, &mut secrets).await?;
            conn.close().await?;
        }
        Database::Postgres(url) => {
            let options: PgConnectOptions = url.expose().parse()?;
            let mut conn = options.connect().await?;
            insert_postgres(&mut conn, &args, now, &mut secrets).await?;
            conn.close().await?;
        }
    }
    secrets.flush()?;

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

async fn insert_sqlite(
    conn: &mut SqliteConnection,
    args: &Seed,
    now: i64,
    secrets: &mut impl Write,
) -> Result<()> {
    let mut tx = conn.begin().await?;
    let mut start = 0;
    while start < args.count {
        let end = (start + SQLITE_ROWS_PER_STATEMENT).min(args.count);
        let rows = batch(start, end, args.secret_count, secrets)?;

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
    Ok(())
}

async fn insert_postgres(
    conn: &mut PgConnection,
    args: &Seed,
    now: i64,
    secrets: &mut impl Write,
) -> Result<()> {
    let mut tx = conn.begin().await?;
    // Durability of the load is not under test: the bench only starts once this has committed.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let mut start = 0;
    while start < args.count {
        let end = (start + POSTGRES_ROWS_PER_STATEMENT).min(args.count);
        let rows = batch(start, end, args.secret_count, secrets)?;
        let ids: Vec<String> = rows.iter().map(|(i, _)| key_id(*i)).collect();
        let names: Vec<String> = rows.iter().map(|(i, _)| format!("bench-{i}")).collect();
        let hashes: Vec<Vec<u8>> = rows
            .iter()
            .map(|(_, key)| key.hash().as_bytes().to_vec())
            .collect();
        sqlx::query(
            "INSERT INTO keys (id, name, tenant, permissions, created_at, expires_at, revoked_at) \
             SELECT id, name, $3, $4, $5, NULL, NULL FROM UNNEST($1::text[], $2::text[]) AS t (id, name)",
        )
        .bind(&ids)
        .bind(&names)
        .bind(TENANT)
        .bind(PERMISSIONS)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO key_secrets (hash, key_id, created_at, retires_at) \
             SELECT hash, key_id, $3, NULL FROM UNNEST($1::bytea[], $2::text[]) AS t (hash, key_id)",
        )
        .bind(&hashes)
        .bind(&ids)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        start = end;
    }
    tx.commit().await?;
    Ok(())
}
