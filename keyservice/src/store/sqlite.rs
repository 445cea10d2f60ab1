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
    change_seq, hash_blob, key_hash, log_head, page, sql, stored_seq, unix, AuditRow, Change,
    CredentialRow, HashedSecretRow, HolderRow, KeyTally, NewCredential, NewSigningKey, PerKind,
    RoleInsert, RoleRow, RotationWrite, SecretRow, SigningKeyRow, StoreError, Tables,
};
use crate::audit;
use crate::credentials::Kind;
use crate::feed::{self, LogHead, Page, Read};
use crate::keys::{KeyId, UsageBooking};
use crate::roles::Role;

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

    pub(super) async fn insert_credential(
        &self,
        new: &NewCredential<'_>,
        audit: &audit::Event,
    ) -> Result<(), StoreError> {
        let t = new.tables;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(sql(format!(
            "INSERT INTO {} (id, name, tenant, permissions, secret_hint, created_at, expires_at, \
             revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            t.credentials
        )))
        .bind(new.id)
        .bind(new.name)
        .bind(new.tenant)
        .bind(&new.permissions)
        .bind(new.secret_hint)
        .bind(new.created_at)
        .bind(new.expires_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql(format!(
            "INSERT INTO {} (hash, {}, created_at, retires_at) VALUES (?, ?, ?, NULL)",
            t.secrets, t.owner
        )))
        .bind(hash_blob(new.secret))
        .bind(new.id)
        .bind(new.created_at)
        .execute(&mut *tx)
        .await?;
        for role in new.roles {
            sqlx::query("INSERT INTO role_grants (holder_id, role_id) VALUES (?, ?)")
                .bind(new.id)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn list_credentials(
        &self,
        t: Tables,
        tenant: Option<&str>,
    ) -> Result<Vec<CredentialRow>, StoreError> {
        Ok(sqlx::query_as(sql(format!(
            "SELECT {} FROM {} c WHERE ? IS NULL OR c.tenant = ? ORDER BY c.created_at, c.id",
            t.columns(ROLES_SQL),
            t.credentials
        )))
        .bind(tenant)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn get_credential(
        &self,
        t: Tables,
        id: &str,
    ) -> Result<Option<CredentialRow>, StoreError> {
        fetch_credential(&mut *self.pool.acquire().await?, t, id).await
    }

    pub(super) async fn revoke_credential(
        &self,
        kind: Kind,
        t: Tables,
        id: &str,
        now: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<(Option<CredentialRow>, Option<u64>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(mut row) = fetch_credential(&mut tx, t, id).await? else {
            return Ok((None, None));
        };
        if row.revoked_at.is_some() {
            return Ok((Some(row), None));
        }
        sqlx::query(sql(format!(
            "UPDATE {} SET revoked_at = ? WHERE id = ?",
            t.credentials
        )))
        .bind(unix(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let logged = log_secret_changes(&mut tx, kind, t, id, now).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        row.revoked_at = Some(unix(now));
        Ok((Some(row), logged))
    }

    pub(super) async fn renew_credential(
        &self,
        kind: Kind,
        t: Tables,
        id: &str,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<(Change<CredentialRow>, Option<u64>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(mut row) = fetch_credential(&mut tx, t, id).await? else {
            return Ok((Change::NotFound, None));
        };
        if row.revoked_at.is_some() {
            return Ok((Change::Revoked(row), None));
        }
        sqlx::query(sql(format!(
            "UPDATE {} SET expires_at = ? WHERE id = ?",
            t.credentials
        )))
        .bind(expires_at.map(unix))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let logged = log_secret_changes(&mut tx, kind, t, id, now).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        row.expires_at = expires_at.map(unix);
        Ok((Change::Done(row), logged))
    }

    pub(super) async fn rotate_credential(
        &self,
        kind: Kind,
        t: Tables,
        id: &str,
        (new_secret, secret_hint): (&KeyHash, &str),
        (now, retires_at): (OffsetDateTime, OffsetDateTime),
        audit: &audit::Event,
    ) -> Result<(Change<CredentialRow>, Option<u64>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(mut row) = fetch_credential(&mut tx, t, id).await? else {
            return Ok((Change::NotFound, None));
        };
        if row.revoked_at.is_some() {
            return Ok((Change::Revoked(row), None));
        }
        // The old secrets' answers change (they now expire at the grace end); the new one has
        // never been looked up.
        let logged = log_secret_changes(&mut tx, kind, t, id, now).await?;
        sqlx::query(sql(format!(
            "UPDATE {} SET retires_at = MIN(IFNULL(retires_at, ?), ?) WHERE {} = ?",
            t.secrets, t.owner
        )))
        .bind(unix(retires_at))
        .bind(unix(retires_at))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql(format!(
            "INSERT INTO {} (hash, {}, created_at, retires_at) VALUES (?, ?, ?, NULL)",
            t.secrets, t.owner
        )))
        .bind(hash_blob(new_secret))
        .bind(id)
        .bind(unix(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql(format!(
            "UPDATE {} SET secret_hint = ? WHERE id = ?",
            t.credentials
        )))
        .bind(secret_hint)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        row.secret_hint = Some(secret_hint.to_owned());
        Ok((Change::Done(row), logged))
    }

    pub(super) async fn delete_credential(
        &self,
        kind: Kind,
        t: Tables,
        id: &str,
        now: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<(bool, Option<u64>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Logged before the cascade removes the secrets.
        let logged = log_secret_changes(&mut tx, kind, t, id, now).await?;
        sqlx::query("DELETE FROM role_grants WHERE holder_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(sql(format!("DELETE FROM {} WHERE id = ?", t.credentials)))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok((false, None));
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok((true, logged))
    }

    #[allow(clippy::type_complexity)]
    pub(super) async fn credential_secrets(
        &self,
        t: Tables,
        id: &str,
    ) -> Result<Option<(CredentialRow, Vec<(Vec<u8>, Option<i64>)>)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = fetch_credential(&mut tx, t, id).await? else {
            return Ok(None);
        };
        let secrets: Vec<(Vec<u8>, Option<i64>)> = sqlx::query_as(sql(format!(
            "SELECT hash, retires_at FROM {} WHERE {} = ?",
            t.secrets, t.owner
        )))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some((row, secrets)))
    }

    pub(super) async fn find_secret(
        &self,
        t: Tables,
        hash: &KeyHash,
    ) -> Result<Option<SecretRow>, StoreError> {
        static FIND_SECRET: PerKind = PerKind::new();
        let statement = FIND_SECRET.get(t, |t| {
            format!(
                "SELECT {}, s.retires_at FROM {} s JOIN {} c ON c.id = s.{} WHERE s.hash = ?",
                t.columns(ROLES_SQL),
                t.secrets,
                t.credentials,
                t.owner
            )
        });
        Ok(sqlx::query_as(statement)
            .bind(hash_blob(hash))
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The hashes travel as one JSON array of hex strings that `json_each` turns into rows and
    /// `unhex` (SQLite 3.41; the bundled one is newer) back into BLOBs: one statement whatever the
    /// batch size, prepared once per connection like [`SqliteStore::find_secret`]'s (an
    /// `IN (?, ?, …)` list would be a new statement for every size), and still one primary-key
    /// probe per hash.
    pub(super) async fn find_secrets(
        &self,
        t: Tables,
        hashes: &[KeyHash],
    ) -> Result<Vec<HashedSecretRow>, StoreError> {
        static FIND_SECRETS: PerKind = PerKind::new();
        let statement = FIND_SECRETS.get(t, |t| {
            format!(
                "SELECT s.hash, {}, s.retires_at FROM {} s JOIN {} c ON c.id = s.{} \
                 WHERE s.hash IN (SELECT unhex(value) FROM json_each(?))",
                t.columns(ROLES_SQL),
                t.secrets,
                t.credentials,
                t.owner
            )
        });
        // KeyHash serialises as its hex.
        let hashes = serde_json::to_string(hashes).map_err(StoreError::Encode)?;
        Ok(sqlx::query_as(statement)
            .bind(hashes)
            .fetch_all(&self.pool)
            .await?)
    }

    pub(super) async fn insert_role(
        &self,
        role: &Role,
        permissions: &str,
        audit: &audit::Event,
    ) -> Result<RoleInsert, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = sqlx::query(
            "INSERT INTO roles (id, tenant, name, description, permissions, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, name) DO NOTHING",
        )
        .bind(role.id.as_str())
        .bind(role.tenant.as_str())
        .bind(role.name.as_str())
        .bind(role.description.as_str())
        .bind(permissions)
        .bind(unix(role.created_at))
        .bind(unix(role.updated_at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(RoleInsert::NameTaken);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(RoleInsert::Done)
    }

    pub(super) async fn list_roles(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<RoleRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, tenant, name, description, permissions, created_at, updated_at FROM roles \
             WHERE ? IS NULL OR tenant = ? ORDER BY tenant, name",
        )
        .bind(tenant)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn get_role(&self, id: &str) -> Result<Option<RoleRow>, StoreError> {
        fetch_role(&mut *self.pool.acquire().await?, id).await
    }

    pub(super) async fn roles_named(
        &self,
        tenant: &str,
        names: &str,
    ) -> Result<Vec<RoleRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, tenant, name, description, permissions, created_at, updated_at FROM roles \
             WHERE tenant = ? AND name IN (SELECT value FROM json_each(?)) ORDER BY name",
        )
        .bind(tenant)
        .bind(names)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn update_role(
        &self,
        id: &str,
        description: &str,
        permissions: &str,
        now: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<(Option<RoleRow>, Option<u64>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let updated = sqlx::query(
            "UPDATE roles SET description = ?, permissions = ?, updated_at = ? WHERE id = ?",
        )
        .bind(description)
        .bind(permissions)
        .bind(unix(now))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok((None, None));
        }
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT s.hash FROM role_grants g JOIN key_secrets s ON s.key_id = g.holder_id \
             WHERE g.role_id = ? ORDER BY s.key_id, s.created_at, s.hash",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let hashes = hashes
            .into_iter()
            .map(|h| key_hash(h, "key secret hash"))
            .collect::<Result<Vec<_>, _>>()?;
        let logged = log_changes(&mut tx, &hashes, now).await?;
        insert_audit(&mut tx, audit).await?;
        let row = fetch_role(&mut tx, id).await?;
        tx.commit().await?;
        Ok((row, logged))
    }

    pub(super) async fn delete_role(
        &self,
        id: &str,
        audit: &audit::Event,
    ) -> Result<Option<Vec<HolderRow>>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if fetch_role(&mut tx, id).await?.is_none() {
            return Ok(None);
        }
        let holders: Vec<HolderRow> = sqlx::query_as(HOLDERS_SQL)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        if !holders.is_empty() {
            return Ok(Some(holders));
        }
        sqlx::query("DELETE FROM roles WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(Vec::new()))
    }

    pub(super) async fn record_audit(&self, event: &audit::Event) -> Result<(), StoreError> {
        insert_audit(&mut *self.pool.acquire().await?, event).await
    }

    pub(super) async fn audit_events(
        &self,
        filter: &audit::Filter,
    ) -> Result<Vec<AuditRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, at, actor, action, target_type, target_id, tenant, source, outcome, \
             request_id FROM audit_events \
             WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR actor = ?2) \
             AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR target_id = ?4) \
             AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at <= ?6) \
             AND (?7 IS NULL OR seq < ?7) \
             ORDER BY seq DESC LIMIT ?8",
        )
        .bind(filter.tenant.as_deref())
        .bind(filter.actor.as_deref())
        .bind(filter.action.as_deref())
        .bind(filter.target_id.as_deref())
        .bind(filter.since.map(unix))
        .bind(filter.until.map(unix))
        .bind(filter.before.map(stored_seq).transpose()?)
        .bind(i64::from(filter.limit) + 1)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn trim_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM audit_events WHERE at < ?")
            .bind(unix(before))
            .execute(&self.pool)
            .await?
            .rows_affected())
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
        audit: Option<&audit::Event>,
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
        if let Some(event) = audit {
            insert_audit(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(RotationWrite::Written)
    }
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

/// The roles a credential (`c`) holds, as a JSON array of `[name, [permission, ...]]`.
const ROLES_SQL: &str = "(SELECT json_group_array(json_array(r.name, json(r.permissions))) \
     FROM role_grants g JOIN roles r ON r.id = g.role_id WHERE g.holder_id = c.id)";

/// Every credential holding a role: `(id, name)`.
const HOLDERS_SQL: &str =
    "SELECT k.id, k.name FROM role_grants g JOIN keys k ON k.id = g.holder_id \
     WHERE g.role_id = ?1 \
     UNION ALL SELECT c.id, c.name FROM role_grants g JOIN clients c ON c.id = g.holder_id \
     WHERE g.role_id = ?1 \
     UNION ALL SELECT a.id, a.name FROM role_grants g JOIN tenant_admins a ON a.id = g.holder_id \
     WHERE g.role_id = ?1 ORDER BY 1";

async fn fetch_credential(
    conn: &mut SqliteConnection,
    t: Tables,
    id: &str,
) -> Result<Option<CredentialRow>, StoreError> {
    Ok(sqlx::query_as(sql(format!(
        "SELECT {} FROM {} c WHERE c.id = ?",
        t.columns(ROLES_SQL),
        t.credentials
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

async fn fetch_role(conn: &mut SqliteConnection, id: &str) -> Result<Option<RoleRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, tenant, name, description, permissions, created_at, updated_at FROM roles \
         WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// For a kind the filter caches, logs a change for every secret of credential `id`, current and
/// rotated out, inside the caller's write transaction.
async fn log_secret_changes(
    conn: &mut SqliteConnection,
    kind: Kind,
    t: Tables,
    id: &str,
    now: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    if !kind.is_cached_at_the_edge() {
        return Ok(None);
    }
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(sql(format!(
        "SELECT hash FROM {} WHERE {} = ? ORDER BY created_at, hash",
        t.secrets, t.owner
    )))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let hashes = rows
        .into_iter()
        .map(|hash| key_hash(hash, "secret hash"))
        .collect::<Result<Vec<_>, _>>()?;
    log_changes(conn, &hashes, now).await
}

async fn insert_audit(conn: &mut SqliteConnection, event: &audit::Event) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor, action, target_type, target_id, tenant, source, \
         outcome, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(unix(event.at))
    .bind(&event.actor)
    .bind(&event.action)
    .bind(event.target_type.as_deref())
    .bind(event.target_id.as_deref())
    .bind(event.tenant.as_deref())
    .bind(event.source.as_deref())
    .bind(event.outcome.as_str())
    .bind(event.request_id.as_deref())
    .execute(conn)
    .await?;
    Ok(())
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
