//! The SQLite backend: one embedded file, the default.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a write is on disk before it is
//! acknowledged and a crash loses none. Writes that read first run in `BEGIN IMMEDIATE`
//! transactions, taking the write lock up front instead of failing on an upgrade; every write
//! transaction is therefore serialized, which also orders the change log.

use std::path::Path;
use std::time::Duration;

use keygate_core::key::KeyHash;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Connection;
use time::OffsetDateTime;

use super::{
    change_seq, hash_blob, key_hash, log_head, page, stored_seq, unix, Change, ClientRow, KeyRow,
    KeyTally, NewSigningKey, RotationWrite, SecretRow, SigningKeyRow, StoreError,
};
use crate::clients::{Client, ClientId};
use crate::feed::{self, LogHead, Page, Read};
use crate::keys::{Key, KeyId, UsageBooking};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another connection's write lock before giving up (503).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a free connection before giving up (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: u32 = 4;
/// How much of the database file each connection reads through a memory map rather than
/// `pread`: 256 MiB, about a million keys with their index. Past the page cache (2 MB per
/// connection), a lookup by hash in a large table otherwise costs several `pread` calls; mapped,
/// it reads the kernel's page cache directly, and the pages are shared by the connections.
const MMAP_BYTES: u64 = 256 * 1024 * 1024;

/// SQLite primary result codes (the low byte of an extended code) that describe the machine, not
/// the query: NOMEM, BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN.
pub(super) fn is_transient_sqlite_code(extended: i32) -> bool {
    matches!(extended & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14)
}

#[derive(Debug)]
pub(super) struct SqliteStore {
    pool: SqlitePool,
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

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, creating missing parent folders, and
    /// brings the schema up to date.
    pub(super) async fn open(path: &Path) -> Result<Self, StoreError> {
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
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("mmap_size", MMAP_BYTES.to_string());
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
        Ok(Self { pool })
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub(super) async fn init_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn insert_key(
        &self,
        key: &Key,
        permissions: &str,
        secret: &KeyHash,
    ) -> Result<(), StoreError> {
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

    pub(super) async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, tenant, permissions, created_at, expires_at, revoked_at FROM keys \
             WHERE ? IS NULL OR tenant = ? ORDER BY created_at, id",
        )
        .bind(tenant)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)
    }

    /// All keys, the revoked ones, and those expired at `now` but not revoked, in one pass.
    pub(super) async fn count_keys(&self, now: OffsetDateTime) -> Result<KeyTally, StoreError> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), COUNT(revoked_at), \
             COUNT(CASE WHEN revoked_at IS NULL AND expires_at <= ? THEN 1 END) FROM keys",
        )
        .bind(unix(now))
        .fetch_one(&self.pool)
        .await?)
    }

    pub(super) async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRow>, StoreError> {
        fetch_key(&mut *self.pool.acquire().await?, id).await
    }

    pub(super) async fn revoke_key(
        &self,
        id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<(Option<Key>, Option<u64>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(key) = fetch_key(&mut tx, id).await? else {
            return Ok((None, None));
        };
        let key = Key::try_from(key)?;
        if key.revoked_at.is_some() {
            return Ok((Some(key), None));
        }
        sqlx::query("UPDATE keys SET revoked_at = ? WHERE id = ?")
            .bind(unix(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let hashes = key_hashes(&mut tx, id).await?;
        let logged = log_changes(&mut tx, &hashes, now).await?;
        tx.commit().await?;
        Ok((
            Some(Key {
                revoked_at: Some(now),
                ..key
            }),
            logged,
        ))
    }

    pub(super) async fn renew_key(
        &self,
        id: &KeyId,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<(Change<Key>, Option<u64>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(key) = fetch_key(&mut tx, id).await? else {
            return Ok((Change::NotFound, None));
        };
        let key = Key::try_from(key)?;
        if key.revoked_at.is_some() {
            return Ok((Change::Revoked(key), None));
        }
        sqlx::query("UPDATE keys SET expires_at = ? WHERE id = ?")
            .bind(expires_at.map(unix))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let hashes = key_hashes(&mut tx, id).await?;
        let logged = log_changes(&mut tx, &hashes, now).await?;
        tx.commit().await?;
        Ok((Change::Done(Key { expires_at, ..key }), logged))
    }

    pub(super) async fn rotate_secret(
        &self,
        id: &KeyId,
        new_secret: &KeyHash,
        now: OffsetDateTime,
        retires_at: OffsetDateTime,
    ) -> Result<(Change<Key>, Option<u64>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(key) = fetch_key(&mut tx, id).await? else {
            return Ok((Change::NotFound, None));
        };
        let key = Key::try_from(key)?;
        if key.revoked_at.is_some() {
            return Ok((Change::Revoked(key), None));
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
        let logged = log_changes(&mut tx, &old_hashes, now).await?;
        tx.commit().await?;
        Ok((Change::Done(key), logged))
    }

    pub(super) async fn delete_key(
        &self,
        id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<(bool, Option<u64>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Read before the cascade removes them.
        let hashes = key_hashes(&mut tx, id).await?;
        let done = sqlx::query("DELETE FROM keys WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok((false, None));
        }
        let logged = log_changes(&mut tx, &hashes, now).await?;
        tx.commit().await?;
        Ok((true, logged))
    }

    pub(super) async fn read_changes(
        &self,
        after: Option<&feed::Cursor>,
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
        page(&head, from, rows, limit)
    }

    pub(super) async fn change_log_head(&self) -> Result<LogHead, StoreError> {
        fetch_log_head(&mut *self.pool.acquire().await?).await
    }

    pub(super) async fn trim_changes(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
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

    pub(super) async fn find_secret(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<SecretRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT k.id, k.name, k.tenant, k.permissions, k.created_at, k.expires_at, k.revoked_at, \
             s.retires_at FROM key_secrets s JOIN keys k ON k.id = s.key_id WHERE s.hash = ?",
        )
        .bind(hash_blob(hash))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Two statements whatever the batch's size: the bookings go in as one JSON array, which
    /// `json_each` turns back into rows. (SQLite has no data-modifying CTE to make it one.)
    pub(super) async fn record_usage(
        &self,
        bookings: &[UsageBooking],
    ) -> Result<usize, StoreError> {
        let batch: Vec<serde_json::Value> = bookings
            .iter()
            .map(|b| serde_json::json!([b.key_id.as_str(), b.day, b.count, unix(b.last_used)]))
            .collect();
        let batch = serde_json::Value::Array(batch).to_string();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE keys SET last_used_at = MAX(IFNULL(last_used_at, b.last_used), b.last_used) \
             FROM (SELECT value ->> 0 AS key_id, MAX(value ->> 3) AS last_used \
                   FROM json_each(?) GROUP BY 1) AS b \
             WHERE keys.id = b.key_id",
        )
        .bind(&batch)
        .execute(&mut *tx)
        .await?;
        // Row by row, so several bookings of one day add up; saturates at i64::MAX instead of
        // overflowing. `WHERE true` lets the parser tell the upsert's ON from a join's.
        let booked = sqlx::query(
            "INSERT INTO usage_daily (key_id, day, count) \
             SELECT b.value ->> 0, b.value ->> 1, b.value ->> 2 FROM json_each(?) AS b \
             JOIN keys ON keys.id = b.value ->> 0 WHERE true \
             ON CONFLICT (key_id, day) DO UPDATE SET count = CASE \
             WHEN count > 9223372036854775807 - excluded.count THEN 9223372036854775807 \
             ELSE count + excluded.count END",
        )
        .bind(&batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(usize::try_from(booked).unwrap_or(usize::MAX))
    }

    #[allow(clippy::type_complexity)]
    pub(super) async fn usage(
        &self,
        id: &KeyId,
    ) -> Result<Option<(Option<i64>, Vec<(String, i64)>)>, StoreError> {
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
        Ok(Some((last_used, rows)))
    }

    pub(super) async fn insert_client(
        &self,
        client: &Client,
        permissions: &str,
        secret: &KeyHash,
    ) -> Result<(), StoreError> {
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

    pub(super) async fn list_clients(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<ClientRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, tenant, permissions, created_at, expires_at, revoked_at \
             FROM clients WHERE ? IS NULL OR tenant = ? ORDER BY created_at, id",
        )
        .bind(tenant)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn get_client(&self, id: &ClientId) -> Result<Option<ClientRow>, StoreError> {
        fetch_client(&mut *self.pool.acquire().await?, id).await
    }

    pub(super) async fn revoke_client(
        &self,
        id: &ClientId,
        now: OffsetDateTime,
    ) -> Result<Option<ClientRow>, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE clients SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? \
             RETURNING id, name, tenant, permissions, created_at, expires_at, revoked_at",
        )
        .bind(unix(now))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn rotate_client_secret(
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
        let client = Client::try_from(client)?;
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

    pub(super) async fn delete_client(&self, id: &ClientId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM clients WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    #[allow(clippy::type_complexity)]
    pub(super) async fn client_credentials(
        &self,
        id: &ClientId,
    ) -> Result<Option<(Client, Vec<(Vec<u8>, Option<i64>)>)>, StoreError> {
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
        Ok(Some((Client::try_from(client)?, rows)))
    }

    pub(super) async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kid, alg, private_der, created_at, activates_at, retires_at \
             FROM signing_keys ORDER BY activates_at, created_at, rowid",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn apply_rotation(
        &self,
        planned_from: &[String],
        new_key: Option<NewSigningKey<'_>>,
        retire: &[(String, OffsetDateTime)],
        delete: &[String],
    ) -> Result<RotationWrite, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let stored: Vec<String> = sqlx::query_scalar("SELECT kid FROM signing_keys ORDER BY kid")
            .fetch_all(&mut *tx)
            .await?;
        if stored != planned_from {
            return Ok(RotationWrite::Stale);
        }
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
        Ok(RotationWrite::Written)
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

/// Appends one change per hash, inside the caller's write transaction, numbering each from the
/// single-row counter (see [`crate::feed`]). Returns the last number taken, `None` if there was
/// nothing to log.
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
        last = Some(change_seq(seq)?);
    }
    Ok(last)
}

async fn fetch_log_head(conn: &mut SqliteConnection) -> Result<LogHead, StoreError> {
    let (log_id, last_seq, trimmed_through): (String, i64, i64) =
        sqlx::query_as("SELECT log_id, last_seq, trimmed_through FROM change_log WHERE id = 1")
            .fetch_optional(conn)
            .await?
            .ok_or(StoreError::Corrupt("change log"))?;
    log_head(&log_id, last_seq, trimmed_through)
}

async fn fetch_client(
    conn: &mut SqliteConnection,
    id: &ClientId,
) -> Result<Option<ClientRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, name, tenant, permissions, created_at, expires_at, revoked_at FROM clients \
         WHERE id = ?",
    )
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?)
}

async fn fetch_key(conn: &mut SqliteConnection, id: &KeyId) -> Result<Option<KeyRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, name, tenant, permissions, created_at, expires_at, revoked_at FROM keys \
         WHERE id = ?",
    )
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?)
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
