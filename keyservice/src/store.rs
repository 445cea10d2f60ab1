//! [`KeyStore`]: the SQLite database, and the only module with SQL in it.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a write is on disk before it is
//! acknowledged and a crash loses none. Writes that read first run in `BEGIN IMMEDIATE`
//! transactions, taking the write lock up front instead of failing on an upgrade.
//!
//! Key and client secrets are stored only as their SHA-256 ([`KeyHash`], 32-byte BLOBs); signing
//! keys as PKCS#8 DER, which the service needs to sign. Times are Unix seconds.
//!
//! Every mutation that changes a lookup answer appends the affected key hashes to the change log
//! in its own transaction, numbered from the single-row counter (see [`crate::feed`] for why),
//! and signals the long-polls of this process once committed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keygate_core::key::KeyHash;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Connection;
use time::OffsetDateTime;

use crate::clients::{Client, ClientCredentials, ClientId, StoredSecret};
use crate::feed::{self, ChangeSignal, Cursor, LogHead, LogId, Page, Read};
use crate::keys::{
    parse_permissions, DailyCount, Key, KeyId, KeyUsage, Name, Permission, SecretMatch, Tenant,
    UsageBooking,
};
use crate::rotation::KeySchedule;
use crate::signing::SigningAlg;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a statement waits for another connection's write lock before giving up (503).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a free connection before giving up (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: u32 = 4;
const ADMIN_SECRET_SETTING: &str = "admin_secret_sha256";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database folder {}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the database {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the database schema")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Busy, locked, full, read-only or unreachable: worth retrying later.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database query failed")]
    Query(#[source] sqlx::Error),
    #[error("cannot encode permissions")]
    Encode(#[source] serde_json::Error),
    #[error("a stored row is invalid: {0}")]
    Corrupt(&'static str),
}

impl StoreError {
    /// True when the failure is operational (busy, full disk, I/O) rather than a bug or corrupt
    /// data: the HTTP layer answers 503 instead of 500.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let transient = match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => db
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(is_transient_sqlite_code),
            _ => false,
        };
        if transient {
            Self::Unavailable(e)
        } else {
            Self::Query(e)
        }
    }
}

/// SQLite primary result codes (the low byte of an extended code) that describe the machine, not
/// the query: NOMEM, BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN.
fn is_transient_sqlite_code(extended: i32) -> bool {
    matches!(extended & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14)
}

/// What happened to a change requested for one key or client (`T`).
#[derive(Debug)]
pub enum Change<T> {
    Done(T),
    NotFound,
    /// The key or client is revoked; revocation is final, so the change was not made.
    Revoked(T),
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    tenant: String,
    permissions: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct SecretRow {
    #[sqlx(flatten)]
    key: KeyRow,
    retires_at: Option<i64>,
}

impl TryFrom<KeyRow> for Key {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        Ok(Key {
            id: KeyId::parse(&row.id).ok_or(StoreError::Corrupt("key id"))?,
            name: Name::from_stored(row.name),
            tenant: Tenant::parse(row.tenant).map_err(|_| StoreError::Corrupt("tenant"))?,
            permissions: decode_permissions(&row.permissions)?,
            created_at: from_unix(row.created_at)?,
            expires_at: row.expires_at.map(from_unix).transpose()?,
            revoked_at: row.revoked_at.map(from_unix).transpose()?,
        })
    }
}

/// A `clients` row: the same columns as `keys` but `last_used_at`.
#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    name: String,
    tenant: String,
    permissions: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;

    fn try_from(row: ClientRow) -> Result<Self, StoreError> {
        Ok(Client {
            id: ClientId::parse(&row.id).ok_or(StoreError::Corrupt("client id"))?,
            name: Name::from_stored(row.name),
            tenant: Tenant::parse(row.tenant).map_err(|_| StoreError::Corrupt("tenant"))?,
            permissions: decode_permissions(&row.permissions)?,
            created_at: from_unix(row.created_at)?,
            expires_at: row.expires_at.map(from_unix).transpose()?,
            revoked_at: row.revoked_at.map(from_unix).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SigningKeyRow {
    kid: String,
    alg: String,
    private_der: Vec<u8>,
    created_at: i64,
    activates_at: i64,
    retires_at: Option<i64>,
}

/// A signing key as stored: its schedule and its private key. `Debug` leaves the key out.
pub struct StoredSigningKey {
    pub schedule: KeySchedule,
    /// PKCS#8 DER.
    pub private_der: Vec<u8>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

/// A signing key to insert.
pub struct NewSigningKey<'a> {
    pub schedule: &'a KeySchedule,
    /// PKCS#8 DER.
    pub private_der: &'a [u8],
    /// The public JWK, JSON.
    pub public_jwk: &'a str,
}

impl TryFrom<SigningKeyRow> for StoredSigningKey {
    type Error = StoreError;

    fn try_from(row: SigningKeyRow) -> Result<Self, StoreError> {
        Ok(StoredSigningKey {
            schedule: KeySchedule {
                alg: SigningAlg::from_name(&row.alg)
                    .ok_or(StoreError::Corrupt("signing key algorithm"))?,
                kid: row.kid,
                created_at: from_unix(row.created_at)?,
                activates_at: from_unix(row.activates_at)?,
                retires_at: row.retires_at.map(from_unix).transpose()?,
            },
            private_der: row.private_der,
        })
    }
}

fn encode_permissions(permissions: &[Permission]) -> Result<String, StoreError> {
    let names: Vec<&str> = permissions.iter().map(Permission::as_str).collect();
    serde_json::to_string(&names).map_err(StoreError::Encode)
}

fn decode_permissions(json: &str) -> Result<Vec<Permission>, StoreError> {
    let names: Vec<String> =
        serde_json::from_str(json).map_err(|_| StoreError::Corrupt("permissions"))?;
    parse_permissions(names).map_err(|_| StoreError::Corrupt("permissions"))
}

fn from_unix(secs: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| StoreError::Corrupt("timestamp"))
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn hash_blob(hash: &KeyHash) -> Vec<u8> {
    hash.as_bytes().to_vec()
}

/// The key database. Cheap to clone: clones share one connection pool and one change signal.
#[derive(Debug, Clone)]
pub struct KeyStore {
    pool: SqlitePool,
    changes: Arc<ChangeSignal>,
}

/// Keeps a pooled connection only if it is out of any transaction.
///
/// On SQLITE_FULL or an I/O error SQLite may roll a transaction back by itself. sqlx does not see
/// that: its queued `ROLLBACK` then fails ("no transaction is active") and the connection keeps
/// counting an open transaction, so every later `BEGIN IMMEDIATE` on it is refused. A trivial
/// query first lets a rollback still queued from a dropped transaction run; a connection that still
/// claims a transaction after that is discarded, and the pool opens a fresh one.
async fn discard_if_stuck_in_transaction(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    sqlx::query("SELECT 1").execute(&mut *conn).await?;
    if conn.is_in_transaction() {
        tracing::warn!("discarding a database connection left in a failed transaction");
        return Ok(false);
    }
    Ok(true)
}

impl KeyStore {
    /// Opens (creating if needed) the database at `path`, creating missing parent folders, and
    /// brings the schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .before_acquire(|conn, _| Box::pin(discard_if_stuck_in_transaction(conn)))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Self {
            pool,
            changes: Arc::default(),
        })
    }

    /// Wakes the long-polls of this process (see [`crate::feed`]).
    pub fn change_signal(&self) -> &ChangeSignal {
        &self.changes
    }

    /// Waits for in-flight queries and closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A trivial query, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The stored SHA-256 of the generated admin secret, if one was generated.
    pub async fn admin_secret_hash(&self) -> Result<Option<KeyHash>, StoreError> {
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(ADMIN_SECRET_SETTING)
            .fetch_optional(&self.pool)
            .await?;
        value
            .map(|hex| KeyHash::from_hex(&hex).ok_or(StoreError::Corrupt("admin secret hash")))
            .transpose()
    }

    /// Stores `hash` as the admin secret hash unless one is already stored, and returns the one
    /// that is stored afterwards: `hash` itself, or the earlier one if another process won a race.
    pub async fn init_admin_secret_hash(&self, hash: &KeyHash) -> Result<KeyHash, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(ADMIN_SECRET_SETTING)
        .bind(hash.to_hex())
        .execute(&self.pool)
        .await?;
        self.admin_secret_hash()
            .await?
            .ok_or(StoreError::Corrupt("admin secret hash"))
    }

    /// Stores a new key with its first secret.
    pub async fn insert_key(&self, key: &Key, secret: &KeyHash) -> Result<(), StoreError> {
        let permissions = encode_permissions(&key.permissions)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO keys (id, name, tenant, permissions, created_at, expires_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(key.id.as_str())
        .bind(key.name.as_str())
        .bind(key.tenant.as_str())
        .bind(permissions)
        .bind(unix(key.created_at))
        .bind(key.expires_at.map(unix))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO key_secrets (hash, key_id, created_at, retires_at) VALUES (?, ?, ?, NULL)",
        )
        .bind(hash_blob(secret))
        .bind(key.id.as_str())
        .bind(unix(key.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// All keys, or those of one tenant, oldest first.
    pub async fn list_keys(&self, tenant: Option<&Tenant>) -> Result<Vec<Key>, StoreError> {
        let tenant = tenant.map(Tenant::as_str);
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT id, name, tenant, permissions, created_at, expires_at, revoked_at FROM keys \
             WHERE ? IS NULL OR tenant = ? ORDER BY created_at, id",
        )
        .bind(tenant)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Key::try_from).collect()
    }

    pub async fn get_key(&self, id: &KeyId) -> Result<Option<Key>, StoreError> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT id, name, tenant, permissions, created_at, expires_at, revoked_at FROM keys \
             WHERE id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Key::try_from).transpose()
    }

    /// Revokes a key; a second revocation keeps the first `revoked_at`. `None` if there is no
    /// such key.
    /// The first revocation logs a change for each of the key's secrets.
    pub async fn revoke_key(
        &self,
        id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<Option<Key>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(key) = fetch_key(&mut tx, id).await? else {
            return Ok(None);
        };
        if key.revoked_at.is_some() {
            return Ok(Some(key));
        }
        sqlx::query("UPDATE keys SET revoked_at = ? WHERE id = ?")
            .bind(unix(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let hashes = key_hashes(&mut tx, id).await?;
        self.commit_logged(tx, &hashes, now).await?;
        Ok(Some(Key {
            revoked_at: Some(now),
            ..key
        }))
    }

    /// Sets a new expiry (`None`: never) on a key that is not revoked, logging a change for each
    /// of its secrets.
    pub async fn renew_key(
        &self,
        id: &KeyId,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Change<Key>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(key) = fetch_key(&mut tx, id).await? else {
            return Ok(Change::NotFound);
        };
        if key.revoked_at.is_some() {
            return Ok(Change::Revoked(key));
        }
        sqlx::query("UPDATE keys SET expires_at = ? WHERE id = ?")
            .bind(expires_at.map(unix))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let hashes = key_hashes(&mut tx, id).await?;
        self.commit_logged(tx, &hashes, now).await?;
        Ok(Change::Done(Key { expires_at, ..key }))
    }

    /// Gives a key a new secret. Its older secrets retire at `retires_at` (or earlier, if they
    /// were already retiring sooner), and a change is logged for each of them: their lookup
    /// answers now expire at the grace end.
    pub async fn rotate_secret(
        &self,
        id: &KeyId,
        new_secret: &KeyHash,
        now: OffsetDateTime,
        retires_at: OffsetDateTime,
    ) -> Result<Change<Key>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(key) = fetch_key(&mut tx, id).await? else {
            return Ok(Change::NotFound);
        };
        if key.revoked_at.is_some() {
            return Ok(Change::Revoked(key));
        }
        let old_hashes = key_hashes(&mut tx, id).await?;
        sqlx::query(
            "UPDATE key_secrets SET retires_at = MIN(IFNULL(retires_at, ?), ?) WHERE key_id = ?",
        )
        .bind(unix(retires_at))
        .bind(unix(retires_at))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO key_secrets (hash, key_id, created_at, retires_at) VALUES (?, ?, ?, NULL)",
        )
        .bind(hash_blob(new_secret))
        .bind(id.as_str())
        .bind(unix(now))
        .execute(&mut *tx)
        .await?;
        self.commit_logged(tx, &old_hashes, now).await?;
        Ok(Change::Done(key))
    }

    /// Deletes a key with its secrets and usage, logging a change for each secret. `false` if
    /// there was no such key.
    pub async fn delete_key(&self, id: &KeyId, now: OffsetDateTime) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Read before the cascade removes them.
        let hashes = key_hashes(&mut tx, id).await?;
        let done = sqlx::query("DELETE FROM keys WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.commit_logged(tx, &hashes, now).await?;
        Ok(true)
    }

    /// Tells the long-polls of this process about a committed change.
    /// Logs a change for each of `hashes` in `tx`, commits it, and wakes the feed's long-polls.
    async fn commit_logged(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Sqlite>,
        hashes: &[KeyHash],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let logged = log_changes(&mut tx, hashes, now).await?;
        tx.commit().await?;
        if let Some(seq) = logged {
            self.changes.committed(seq);
        }
        Ok(())
    }

    /// The changes after `after`, at most `limit`, or a reset (see [`feed::plan_read`]). The log's
    /// head and its rows are read in one transaction, so they agree.
    pub async fn read_changes(
        &self,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let mut tx = self.pool.begin().await?;
        let head = fetch_log_head(&mut tx).await?;
        let from = match feed::plan_read(after, &head) {
            Read::Reset(reason) => return Ok(Page::reset(&head, reason)),
            Read::After(seq) => seq,
        };
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, key_hash FROM changes WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(stored_seq(from)?)
                .bind(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let more = rows.len() > limit;
        let mut seq = from;
        let mut changes = Vec::with_capacity(rows.len().min(limit));
        for (row_seq, hash) in rows.into_iter().take(limit) {
            seq = u64::try_from(row_seq).map_err(|_| StoreError::Corrupt("change number"))?;
            changes.push(key_hash(hash, "change key hash")?);
        }
        Ok(Page {
            cursor: Cursor {
                log_id: head.log_id,
                seq,
            },
            changes,
            reset: None,
            more,
        })
    }

    /// The log's identity and where it stands.
    pub async fn change_log_head(&self) -> Result<LogHead, StoreError> {
        fetch_log_head(&mut *self.pool.acquire().await?).await
    }

    /// Deletes the changes made before `before` (and any numbered below one of them), and
    /// records how far the log is trimmed, so older cursors reset. Returns how many went.
    pub async fn trim_changes(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let through: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM changes WHERE changed_at < ?")
                .bind(unix(before))
                .fetch_one(&mut *tx)
                .await?;
        let Some(through) = through else {
            return Ok(0);
        };
        let deleted = sqlx::query("DELETE FROM changes WHERE seq <= ?")
            .bind(through)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE change_log SET trimmed_through = MAX(trimmed_through, ?) WHERE id = 1")
            .bind(through)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// The key one of whose secrets hashes to `hash`.
    pub async fn find_secret(&self, hash: &KeyHash) -> Result<Option<SecretMatch>, StoreError> {
        let row: Option<SecretRow> = sqlx::query_as(
            "SELECT k.id, k.name, k.tenant, k.permissions, k.created_at, k.expires_at, k.revoked_at, \
             s.retires_at FROM key_secrets s JOIN keys k ON k.id = s.key_id WHERE s.hash = ?",
        )
        .bind(hash_blob(hash))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SecretMatch {
                retires_at: row.retires_at.map(from_unix).transpose()?,
                key: Key::try_from(row.key)?,
            })
        })
        .transpose()
    }

    /// Books a batch of usage in one transaction. Bookings for keys that no longer exist are
    /// skipped. Returns how many were booked.
    pub async fn record_usage(&self, bookings: &[UsageBooking]) -> Result<usize, StoreError> {
        if bookings.is_empty() {
            return Ok(0);
        }
        let mut booked = 0;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for booking in bookings {
            let touched = sqlx::query(
                "UPDATE keys SET last_used_at = MAX(IFNULL(last_used_at, ?), ?) WHERE id = ?",
            )
            .bind(unix(booking.last_used))
            .bind(unix(booking.last_used))
            .bind(booking.key_id.as_str())
            .execute(&mut *tx)
            .await?;
            if touched.rows_affected() == 0 {
                continue;
            }
            // Saturates at i64::MAX instead of overflowing.
            sqlx::query(
                "INSERT INTO usage_daily (key_id, day, count) VALUES (?, ?, ?) \
                 ON CONFLICT (key_id, day) DO UPDATE SET count = CASE \
                 WHEN count > 9223372036854775807 - excluded.count THEN 9223372036854775807 \
                 ELSE count + excluded.count END",
            )
            .bind(booking.key_id.as_str())
            .bind(booking.day.as_str())
            .bind(booking.count)
            .execute(&mut *tx)
            .await?;
            booked += 1;
        }
        tx.commit().await?;
        Ok(booked)
    }

    /// Usage of one key, or `None` if there is no such key.
    pub async fn usage(&self, id: &KeyId) -> Result<Option<KeyUsage>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let last_used: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_used_at FROM keys WHERE id = ?")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(last_used) = last_used else {
            return Ok(None);
        };
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT day, count FROM usage_daily WHERE key_id = ? ORDER BY day")
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let daily = rows
            .into_iter()
            .map(|(day, count)| {
                let count = u64::try_from(count).map_err(|_| StoreError::Corrupt("usage count"))?;
                Ok(DailyCount { day, count })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(KeyUsage {
            last_used_at: last_used.map(from_unix).transpose()?,
            daily,
        }))
    }

    /// Stores a new client with its first secret.
    pub async fn insert_client(&self, client: &Client, secret: &KeyHash) -> Result<(), StoreError> {
        let permissions = encode_permissions(&client.permissions)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO clients (id, name, tenant, permissions, created_at, expires_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(client.id.as_str())
        .bind(client.name.as_str())
        .bind(client.tenant.as_str())
        .bind(permissions)
        .bind(unix(client.created_at))
        .bind(client.expires_at.map(unix))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO client_secrets (hash, client_id, created_at, retires_at) \
             VALUES (?, ?, ?, NULL)",
        )
        .bind(hash_blob(secret))
        .bind(client.id.as_str())
        .bind(unix(client.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// All clients, or those of one tenant, oldest first.
    pub async fn list_clients(&self, tenant: Option<&Tenant>) -> Result<Vec<Client>, StoreError> {
        let tenant = tenant.map(Tenant::as_str);
        let rows: Vec<ClientRow> = sqlx::query_as(
            "SELECT id, name, tenant, permissions, created_at, expires_at, revoked_at \
             FROM clients WHERE ? IS NULL OR tenant = ? ORDER BY created_at, id",
        )
        .bind(tenant)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Client::try_from).collect()
    }

    pub async fn get_client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        fetch_client(&mut *self.pool.acquire().await?, id).await
    }

    /// Revokes a client; a second revocation keeps the first `revoked_at`. `None` if there is no
    /// such client.
    pub async fn revoke_client(
        &self,
        id: &ClientId,
        now: OffsetDateTime,
    ) -> Result<Option<Client>, StoreError> {
        let row: Option<ClientRow> = sqlx::query_as(
            "UPDATE clients SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? \
             RETURNING id, name, tenant, permissions, created_at, expires_at, revoked_at",
        )
        .bind(unix(now))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Client::try_from).transpose()
    }

    /// Gives a client a new secret. Its older secrets retire at `retires_at` (or earlier, if they
    /// were already retiring sooner).
    pub async fn rotate_client_secret(
        &self,
        id: &ClientId,
        new_secret: &KeyHash,
        now: OffsetDateTime,
        retires_at: OffsetDateTime,
    ) -> Result<Change<Client>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(client) = fetch_client(&mut tx, id).await? else {
            return Ok(Change::NotFound);
        };
        if client.revoked_at.is_some() {
            return Ok(Change::Revoked(client));
        }
        sqlx::query(
            "UPDATE client_secrets SET retires_at = MIN(IFNULL(retires_at, ?), ?) \
             WHERE client_id = ?",
        )
        .bind(unix(retires_at))
        .bind(unix(retires_at))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO client_secrets (hash, client_id, created_at, retires_at) \
             VALUES (?, ?, ?, NULL)",
        )
        .bind(hash_blob(new_secret))
        .bind(id.as_str())
        .bind(unix(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Change::Done(client))
    }

    /// Deletes a client with its secrets. `false` if there was no such client.
    pub async fn delete_client(&self, id: &ClientId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM clients WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A client with all its secrets, for authentication at the token endpoint.
    pub async fn client_credentials(
        &self,
        id: &ClientId,
    ) -> Result<Option<ClientCredentials>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(client) = fetch_client(&mut tx, id).await? else {
            return Ok(None);
        };
        let rows: Vec<(Vec<u8>, Option<i64>)> =
            sqlx::query_as("SELECT hash, retires_at FROM client_secrets WHERE client_id = ?")
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let secrets = rows
            .into_iter()
            .map(|(hash, retires_at)| {
                let hash: [u8; 32] = hash
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("client secret hash"))?;
                Ok(StoredSecret {
                    hash: KeyHash::from_bytes(hash),
                    retires_at: retires_at.map(from_unix).transpose()?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(ClientCredentials { client, secrets }))
    }

    /// Every signing key on record, private keys included, in activation order (then insertion).
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let rows: Vec<SigningKeyRow> = sqlx::query_as(
            "SELECT kid, alg, private_der, created_at, activates_at, retires_at \
             FROM signing_keys ORDER BY activates_at, created_at, rowid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(StoredSigningKey::try_from).collect()
    }

    /// Carries out a rotation in one transaction: deletes, retirements (which never move an
    /// earlier `retires_at` later) and the new key.
    pub async fn apply_rotation(
        &self,
        new_key: Option<NewSigningKey<'_>>,
        retire: &[(String, OffsetDateTime)],
        delete: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for kid in delete {
            sqlx::query("DELETE FROM signing_keys WHERE kid = ?")
                .bind(kid)
                .execute(&mut *tx)
                .await?;
        }
        for (kid, retires_at) in retire {
            sqlx::query(
                "UPDATE signing_keys SET retires_at = MIN(IFNULL(retires_at, ?), ?) WHERE kid = ?",
            )
            .bind(unix(*retires_at))
            .bind(unix(*retires_at))
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(key) = new_key {
            sqlx::query(
                "INSERT INTO signing_keys \
                 (kid, alg, private_der, public_jwk, created_at, activates_at, retires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, NULL)",
            )
            .bind(&key.schedule.kid)
            .bind(key.schedule.alg.name())
            .bind(key.private_der)
            .bind(key.public_jwk)
            .bind(unix(key.schedule.created_at))
            .bind(unix(key.schedule.activates_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The hashes of every secret of a key, current and rotated out.
async fn key_hashes(conn: &mut SqliteConnection, id: &KeyId) -> Result<Vec<KeyHash>, StoreError> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT hash FROM key_secrets WHERE key_id = ? ORDER BY created_at, hash",
    )
    .bind(id.as_str())
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|hash| key_hash(hash, "key secret hash"))
        .collect()
}

fn key_hash(bytes: Vec<u8>, what: &'static str) -> Result<KeyHash, StoreError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Corrupt(what))?;
    Ok(KeyHash::from_bytes(bytes))
}

fn stored_seq(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt("change number"))
}

/// Appends one change per hash, inside the caller's write transaction, numbering each from the
/// single-row counter: its row lock makes later writers wait until this transaction commits, so
/// numbers follow commit order (see [`crate::feed`]). Returns the last number taken, `None` if
/// there was nothing to log.
async fn log_changes(
    conn: &mut SqliteConnection,
    hashes: &[KeyHash],
    now: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    let mut last = None;
    for hash in hashes {
        let seq: i64 = sqlx::query_scalar(
            "UPDATE change_log SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq",
        )
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::Corrupt("change log"))?;
        sqlx::query("INSERT INTO changes (seq, key_hash, changed_at) VALUES (?, ?, ?)")
            .bind(seq)
            .bind(hash_blob(hash))
            .bind(unix(now))
            .execute(&mut *conn)
            .await?;
        last = Some(u64::try_from(seq).map_err(|_| StoreError::Corrupt("change number"))?);
    }
    Ok(last)
}

async fn fetch_log_head(conn: &mut SqliteConnection) -> Result<LogHead, StoreError> {
    let (log_id, last_seq, trimmed_through): (String, i64, i64) =
        sqlx::query_as("SELECT log_id, last_seq, trimmed_through FROM change_log WHERE id = 1")
            .fetch_optional(conn)
            .await?
            .ok_or(StoreError::Corrupt("change log"))?;
    let seq = |n: i64| u64::try_from(n).map_err(|_| StoreError::Corrupt("change number"));
    Ok(LogHead {
        log_id: LogId::parse(&log_id).ok_or(StoreError::Corrupt("change log id"))?,
        last_seq: seq(last_seq)?,
        trimmed_through: seq(trimmed_through)?,
    })
}

async fn fetch_client(
    conn: &mut sqlx::SqliteConnection,
    id: &ClientId,
) -> Result<Option<Client>, StoreError> {
    let row: Option<ClientRow> = sqlx::query_as(
        "SELECT id, name, tenant, permissions, created_at, expires_at, revoked_at FROM clients \
         WHERE id = ?",
    )
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    row.map(Client::try_from).transpose()
}

async fn fetch_key(
    conn: &mut sqlx::SqliteConnection,
    id: &KeyId,
) -> Result<Option<Key>, StoreError> {
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT id, name, tenant, permissions, created_at, expires_at, revoked_at FROM keys WHERE id = ?",
    )
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    row.map(Key::try_from).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operational_sqlite_failures_are_transient() {
        const SQLITE_BUSY: i32 = 5;
        const SQLITE_FULL: i32 = 13;
        const SQLITE_IOERR_WRITE: i32 = 10 | (3 << 8);
        const SQLITE_CONSTRAINT_UNIQUE: i32 = 19 | (8 << 8);
        const SQLITE_ERROR: i32 = 1;
        for code in [SQLITE_BUSY, SQLITE_FULL, SQLITE_IOERR_WRITE] {
            assert!(is_transient_sqlite_code(code), "{code}");
        }
        for code in [SQLITE_CONSTRAINT_UNIQUE, SQLITE_ERROR] {
            assert!(!is_transient_sqlite_code(code), "{code}");
        }
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::from(sqlx::Error::RowNotFound).is_transient());
    }
}
