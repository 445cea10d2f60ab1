//! The PostgreSQL backend: one server shared by every replica of the key service.
//!
//! # Transactions
//! Transactions run at PostgreSQL's default, READ COMMITTED. A write that reads first locks the
//! row it read (`SELECT ... FOR UPDATE`), so two replicas changing one key queue up instead of
//! both acting on what they read (a second revoke sees the first and logs nothing).
//!
//! The change log's numbers come from the single-row counter, bumped with
//! `UPDATE change_log SET last_seq = last_seq + n ... RETURNING` inside the writing transaction.
//! The row lock is held to commit, so a writer on another replica waits at its own `UPDATE`; under
//! READ COMMITTED that `UPDATE`, once the lock is free, re-reads the row as committed (not as of
//! its statement's snapshot) and adds to the new `last_seq`. Numbers therefore follow commit
//! order, and a reader that sees change `n` can already see every change below `n`
//! ([`crate::feed`]). Readers take the log's head and rows in one REPEATABLE READ snapshot.
//!
//! # Waking the long-polls of every replica
//! A writing transaction that logs changes also runs `pg_notify('keygate_changes', <last seq>)`;
//! PostgreSQL delivers it at commit, and not at all on rollback. Each process keeps one
//! connection listening on that channel ([`relay_notifications`]) and signals its own
//! [`ChangeSignal`]. When that connection drops, it reconnects by itself and wakes every
//! long-poll once, so a change committed while it was not listening is read then.
//!
//! # Failures
//! Connection loss, an administrator's shutdown, too many connections and serialization
//! failures are [`StoreError::Unavailable`] (503). The pool checks a connection before handing
//! it out and opens new ones as needed, so the service recovers by itself once PostgreSQL is
//! back. At start-up it waits up to [`CONNECT_PATIENCE`] for PostgreSQL to answer (a database
//! started at the same time, by the same orchestrator), then gives up with a message naming the
//! URL (without its password).

use std::sync::Arc;
use std::time::Duration;

use keygate_core::key::KeyHash;
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{
    change_seq, hash_blob, key_hash, log_head, page, sql, stored_seq, unix, AuditRow, Change,
    CredentialRow, DatabaseUrl, HashedSecretRow, HolderRow, KeyTally, NewCredential, NewSigningKey,
    PerKind, RoleInsert, RoleRow, RotationWrite, SecretRow, SigningKeyRow, StoreError, Tables,
};
use crate::audit;
use crate::credentials::Kind;
use crate::feed::{self, ChangeSignal, LogHead, Page, Read};
use crate::keys::{KeyId, UsageBooking};
use crate::roles::{Role, RoleId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long start-up keeps trying to reach PostgreSQL before giving up.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(30);
/// The first pause between start-up attempts; it doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(250);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(4);
/// How long a request waits for a connection (free, or newly opened) before giving up (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests' connections; the notification listener holds one more.
const MAX_CONNECTIONS: u32 = 16;
/// The `NOTIFY` channel of committed changes; the payload is the last sequence number logged.
const CHANNEL: &str = "keygate_changes";
/// The `NOTIFY` channel of committed signing-key rotations: every replica's key ring reloads.
const SIGNING_KEYS_CHANNEL: &str = "keygate_signing_keys";
/// The transaction-level advisory lock a signing-key rotation holds, so replicas rotate one at a
/// time (an arbitrary constant: "kg" "rot" in ASCII).
const ROTATION_LOCK: i64 = 0x006b_6772_6f74;

/// SQLSTATEs that describe the server or the moment, not the query: worth retrying later.
pub(super) fn is_transient_sqlstate(code: &str) -> bool {
    // Class 08: connection exception. Class 53: insufficient resources (53300: too many
    // connections). 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
    // 40001, 40P01: serialization failure, deadlock. 55P03: lock not available.
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03"
        )
}

#[derive(Debug)]
pub(super) struct PgStore {
    pool: PgPool,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Connects, retrying while PostgreSQL does not answer, for at most [`CONNECT_PATIENCE`].
async fn connect(url: &DatabaseUrl) -> Result<PgPool, StoreError> {
    let started = tokio::time::Instant::now();
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS + 1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(true)
            .connect(url.expose())
            .await;
        let error = match attempt {
            Ok(pool) => return Ok(pool),
            Err(e) => e,
        };
        let waited = started.elapsed();
        if !super::is_transient(&error) || waited + pause > CONNECT_PATIENCE {
            return Err(StoreError::Connect {
                url: url.redacted(),
                waited,
                source: error,
            });
        }
        tracing::warn!(
            url = %url,
            error = %error,
            retry_in_ms = pause.as_millis(),
            "PostgreSQL does not answer yet"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// Listens for committed changes and signing-key rotations of every replica and signals this
/// process's long-polls and key ring, until the pool closes. Reconnects by itself.
async fn relay_notifications(
    pool: PgPool,
    signal: Arc<ChangeSignal>,
    signing_keys: Arc<watch::Sender<u64>>,
) {
    while !pool.is_closed() {
        if let Err(e) = listen(&pool, &signal, &signing_keys).await {
            if pool.is_closed() {
                break;
            }
            tracing::warn!(error = %e, "change notifications interrupted; listening again");
            tokio::time::sleep(FIRST_RETRY_PAUSE).await;
        }
        // Changes may have been committed while nobody listened: every long-poll reads again,
        // and the key ring reloads.
        signal.wake_all();
        signing_keys.send_modify(|n| *n += 1);
    }
}

async fn listen(
    pool: &PgPool,
    signal: &ChangeSignal,
    signing_keys: &watch::Sender<u64>,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, SIGNING_KEYS_CHANNEL]).await?;
    signal.wake_all();
    signing_keys.send_modify(|n| *n += 1);
    while let Some(notification) = listener.try_recv().await? {
        if notification.channel() == SIGNING_KEYS_CHANNEL {
            signing_keys.send_modify(|n| *n += 1);
            continue;
        }
        match notification.payload().parse::<u64>() {
            Ok(seq) => signal.committed(seq),
            Err(_) => signal.wake_all(),
        }
    }
    // The connection was lost; the caller listens again.
    Ok(())
}

impl PgStore {
    pub(super) async fn open(
        url: &DatabaseUrl,
        signal: Arc<ChangeSignal>,
        signing_keys: Arc<watch::Sender<u64>>,
    ) -> Result<Self, StoreError> {
        let pool = connect(url).await?;
        // Replicas starting together: the migrator holds an advisory lock while it runs.
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        let listener = tokio::spawn(relay_notifications(pool.clone(), signal, signing_keys));
        Ok(Self { pool, listener })
    }

    pub(super) async fn close(&self) {
        self.listener.abort();
        self.pool.close().await;
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub(super) async fn init_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql(format!(
            "INSERT INTO {} (id, name, tenant, permissions, secret_hint, created_at, expires_at, \
             revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
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
            "INSERT INTO {} (hash, {}, created_at, retires_at) VALUES ($1, $2, $3, NULL)",
            t.secrets, t.owner
        )))
        .bind(hash_blob(new.secret))
        .bind(new.id)
        .bind(new.created_at)
        .execute(&mut *tx)
        .await?;
        let roles: Vec<&str> = new.roles.iter().map(RoleId::as_str).collect();
        sqlx::query(
            "INSERT INTO role_grants (holder_id, role_id) SELECT $1, role FROM UNNEST($2::text[]) AS role",
        )
        .bind(new.id)
        .bind(&roles)
        .execute(&mut *tx)
        .await?;
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
            "SELECT {} FROM {} c WHERE $1::text IS NULL OR c.tenant = $1 \
             ORDER BY c.created_at, c.id",
            t.columns(ROLES_SQL),
            t.credentials
        )))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn get_credential(
        &self,
        t: Tables,
        id: &str,
    ) -> Result<Option<CredentialRow>, StoreError> {
        fetch_credential(&mut *self.pool.acquire().await?, t, id, false).await
    }

    pub(super) async fn revoke_credential(
        &self,
        kind: Kind,
        t: Tables,
        id: &str,
        now: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<(Option<CredentialRow>, Option<u64>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(mut row) = fetch_credential(&mut tx, t, id, true).await? else {
            return Ok((None, None));
        };
        if row.revoked_at.is_some() {
            return Ok((Some(row), None));
        }
        sqlx::query(sql(format!(
            "UPDATE {} SET revoked_at = $1 WHERE id = $2",
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
        let mut tx = self.pool.begin().await?;
        let Some(mut row) = fetch_credential(&mut tx, t, id, true).await? else {
            return Ok((Change::NotFound, None));
        };
        if row.revoked_at.is_some() {
            return Ok((Change::Revoked(row), None));
        }
        sqlx::query(sql(format!(
            "UPDATE {} SET expires_at = $1 WHERE id = $2",
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
        let mut tx = self.pool.begin().await?;
        let Some(mut row) = fetch_credential(&mut tx, t, id, true).await? else {
            return Ok((Change::NotFound, None));
        };
        if row.revoked_at.is_some() {
            return Ok((Change::Revoked(row), None));
        }
        // The old secrets' answers change (they now expire at the grace end); the new one has
        // never been looked up.
        let logged = log_secret_changes(&mut tx, kind, t, id, now).await?;
        sqlx::query(sql(format!(
            "UPDATE {} SET retires_at = LEAST(COALESCE(retires_at, $1), $1) WHERE {} = $2",
            t.secrets, t.owner
        )))
        .bind(unix(retires_at))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql(format!(
            "INSERT INTO {} (hash, {}, created_at, retires_at) VALUES ($1, $2, $3, NULL)",
            t.secrets, t.owner
        )))
        .bind(hash_blob(new_secret))
        .bind(id)
        .bind(unix(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(sql(format!(
            "UPDATE {} SET secret_hint = $1 WHERE id = $2",
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
        let mut tx = self.pool.begin().await?;
        if fetch_credential(&mut tx, t, id, true).await?.is_none() {
            return Ok((false, None));
        }
        // Logged before the cascade removes the secrets; the row's lock keeps a rotation from
        // adding one meanwhile.
        let logged = log_secret_changes(&mut tx, kind, t, id, now).await?;
        sqlx::query("DELETE FROM role_grants WHERE holder_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(sql(format!("DELETE FROM {} WHERE id = $1", t.credentials)))
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
        let Some(row) = fetch_credential(&mut tx, t, id, false).await? else {
            return Ok(None);
        };
        let secrets: Vec<(Vec<u8>, Option<i64>)> = sqlx::query_as(sql(format!(
            "SELECT hash, retires_at FROM {} WHERE {} = $1",
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
                "SELECT {}, s.retires_at FROM {} s JOIN {} c ON c.id = s.{} WHERE s.hash = $1",
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

    /// The hashes travel as one `bytea[]`: one statement whatever the batch size, answered
    /// through the primary-key index.
    pub(super) async fn find_secrets(
        &self,
        t: Tables,
        hashes: &[KeyHash],
    ) -> Result<Vec<HashedSecretRow>, StoreError> {
        static FIND_SECRETS: PerKind = PerKind::new();
        let statement = FIND_SECRETS.get(t, |t| {
            format!(
                "SELECT s.hash, {}, s.retires_at FROM {} s JOIN {} c ON c.id = s.{} \
                 WHERE s.hash = ANY($1)",
                t.columns(ROLES_SQL),
                t.secrets,
                t.credentials,
                t.owner
            )
        });
        let hashes: Vec<Vec<u8>> = hashes.iter().map(hash_blob).collect();
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
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO roles (id, tenant, name, description, permissions, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, name) DO NOTHING",
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
             WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant, name",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn get_role(&self, id: &str) -> Result<Option<RoleRow>, StoreError> {
        fetch_role(&mut *self.pool.acquire().await?, id, false).await
    }

    pub(super) async fn roles_named(
        &self,
        tenant: &str,
        names: &str,
    ) -> Result<Vec<RoleRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, tenant, name, description, permissions, created_at, updated_at FROM roles \
             WHERE tenant = $1 AND name IN (SELECT jsonb_array_elements_text($2::jsonb)) \
             ORDER BY name",
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
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE roles SET description = $1, permissions = $2, updated_at = $3 WHERE id = $4",
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
             WHERE g.role_id = $1 ORDER BY s.key_id, s.created_at, s.hash",
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
        let row = fetch_role(&mut tx, id, false).await?;
        tx.commit().await?;
        Ok((row, logged))
    }

    pub(super) async fn delete_role(
        &self,
        id: &str,
        audit: &audit::Event,
    ) -> Result<Option<Vec<HolderRow>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The row lock conflicts with the key-share lock a new grant's foreign key takes, so a
        // credential cannot start holding the role between the check and the delete.
        if fetch_role(&mut tx, id, true).await?.is_none() {
            return Ok(None);
        }
        let holders: Vec<HolderRow> = sqlx::query_as(HOLDERS_SQL)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        if !holders.is_empty() {
            return Ok(Some(holders));
        }
        sqlx::query("DELETE FROM roles WHERE id = $1")
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
             WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR actor = $2) \
             AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR target_id = $4) \
             AND ($5::bigint IS NULL OR at >= $5) AND ($6::bigint IS NULL OR at <= $6) \
             AND ($7::bigint IS NULL OR seq < $7) \
             ORDER BY seq DESC LIMIT $8",
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
        Ok(sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(unix(before))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub(super) async fn count_keys(&self, now: OffsetDateTime) -> Result<KeyTally, StoreError> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), COUNT(revoked_at), \
             COUNT(CASE WHEN revoked_at IS NULL AND expires_at <= $1 THEN 1 END) FROM keys",
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
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let head = fetch_log_head(&mut tx).await?;
        let from = match feed::plan_read(after, &head) {
            Read::Reset(reason) => return Ok(Page::reset(&head, reason)),
            Read::After(seq) => seq,
        };
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, key_hash FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
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
        let mut tx = self.pool.begin().await?;
        let through: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM changes WHERE changed_at < $1")
                .bind(unix(before))
                .fetch_one(&mut *tx)
                .await?;
        let Some(through) = through else {
            return Ok(0);
        };
        let deleted = sqlx::query("DELETE FROM changes WHERE seq <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE change_log SET trimmed_through = GREATEST(trimmed_through, $1) WHERE id = 1",
        )
        .bind(through)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    pub(super) async fn record_usage(
        &self,
        bookings: &[UsageBooking],
    ) -> Result<usize, StoreError> {
        let key_ids: Vec<&str> = bookings.iter().map(|b| b.key_id.as_str()).collect();
        let days: Vec<&str> = bookings.iter().map(|b| b.day.as_str()).collect();
        let counts: Vec<i64> = bookings.iter().map(|b| b.count).collect();
        let last_used: Vec<i64> = bookings.iter().map(|b| unix(b.last_used)).collect();
        // Bookings of one key and day are summed first (an upsert may touch a row only once per
        // statement); counts saturate at i64::MAX instead of overflowing.
        let booked: i64 = sqlx::query_scalar(
            "WITH b AS ( \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
                 AS b (key_id, day, count, last_used) \
             ), touched AS ( \
                 UPDATE keys SET last_used_at = GREATEST(keys.last_used_at, m.last_used) \
                 FROM (SELECT key_id, MAX(last_used) AS last_used FROM b GROUP BY key_id) AS m \
                 WHERE keys.id = m.key_id RETURNING keys.id \
             ), booked AS ( \
                 INSERT INTO usage_daily (key_id, day, count) \
                 SELECT b.key_id, b.day, LEAST(SUM(b.count), 9223372036854775807)::bigint \
                 FROM b JOIN touched ON touched.id = b.key_id GROUP BY b.key_id, b.day \
                 ON CONFLICT (key_id, day) DO UPDATE SET count = \
                 LEAST(usage_daily.count::numeric + excluded.count, 9223372036854775807)::bigint \
             ) \
             SELECT count(*) FROM b JOIN touched ON touched.id = b.key_id",
        )
        .bind(&key_ids)
        .bind(&days)
        .bind(&counts)
        .bind(&last_used)
        .fetch_one(&self.pool)
        .await?;
        Ok(usize::try_from(booked).unwrap_or(0))
    }

    #[allow(clippy::type_complexity)]
    pub(super) async fn usage(
        &self,
        id: &KeyId,
    ) -> Result<Option<(Option<i64>, Vec<(String, i64)>)>, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let last_used: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_used_at FROM keys WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(last_used) = last_used else {
            return Ok(None);
        };
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT day, count FROM usage_daily WHERE key_id = $1 ORDER BY day")
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some((last_used, rows)))
    }

    pub(super) async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kid, alg, private_der, created_at, activates_at, retires_at \
             FROM signing_keys ORDER BY activates_at, created_at, inserted",
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ROTATION_LOCK)
            .execute(&mut *tx)
            .await?;
        let stored: Vec<String> = sqlx::query_scalar("SELECT kid FROM signing_keys ORDER BY kid")
            .fetch_all(&mut *tx)
            .await?;
        if stored != planned_from {
            return Ok(RotationWrite::Stale);
        }
        for kid in delete {
            sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .execute(&mut *tx)
                .await?;
        }
        for (kid, retires_at) in retire {
            sqlx::query(
                "UPDATE signing_keys SET retires_at = LEAST(COALESCE(retires_at, $1), $1) \
                 WHERE kid = $2",
            )
            .bind(unix(*retires_at))
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(key) = new_key {
            sqlx::query(
                "INSERT INTO signing_keys \
                 (kid, alg, private_der, public_jwk, created_at, activates_at, retires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL)",
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
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(SIGNING_KEYS_CHANNEL)
            .execute(&mut *tx)
            .await?;
        if let Some(event) = audit {
            insert_audit(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(RotationWrite::Written)
    }
}

/// Appends one change per hash inside the caller's transaction, numbered from the counter (see
/// the module docs for why this is commit order), and queues the notification that wakes every
/// replica's long-polls at commit. Returns the last number taken, `None` if nothing was logged.
async fn log_changes(
    conn: &mut PgConnection,
    hashes: &[KeyHash],
    now: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    if hashes.is_empty() {
        return Ok(None);
    }
    let n = i64::try_from(hashes.len()).map_err(|_| StoreError::Corrupt("change count"))?;
    let last: i64 = sqlx::query_scalar(
        "UPDATE change_log SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
    )
    .bind(n)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::Corrupt("change log"))?;
    let first = last - n + 1;
    let blobs: Vec<Vec<u8>> = hashes.iter().map(hash_blob).collect();
    sqlx::query(
        "INSERT INTO changes (seq, key_hash, changed_at) \
         SELECT $1 + ord - 1, hash, $3 FROM UNNEST($2::bytea[]) WITH ORDINALITY AS h (hash, ord)",
    )
    .bind(first)
    .bind(&blobs)
    .bind(unix(now))
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(last.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(Some(change_seq(last)?))
}

async fn fetch_log_head(conn: &mut PgConnection) -> Result<LogHead, StoreError> {
    let (log_id, last_seq, trimmed_through): (String, i64, i64) =
        sqlx::query_as("SELECT log_id, last_seq, trimmed_through FROM change_log WHERE id = 1")
            .fetch_optional(conn)
            .await?
            .ok_or(StoreError::Corrupt("change log"))?;
    log_head(&log_id, last_seq, trimmed_through)
}

/// The roles a credential (`c`) holds, as a JSON array of `[name, [permission, ...]]`.
const ROLES_SQL: &str =
    "(SELECT COALESCE(json_agg(json_build_array(r.name, r.permissions::json)), \
     '[]'::json)::text FROM role_grants g JOIN roles r ON r.id = g.role_id \
     WHERE g.holder_id = c.id)";

/// Every credential holding a role: `(id, name)`.
const HOLDERS_SQL: &str =
    "SELECT k.id, k.name FROM role_grants g JOIN keys k ON k.id = g.holder_id \
     WHERE g.role_id = $1 \
     UNION ALL SELECT c.id, c.name FROM role_grants g JOIN clients c ON c.id = g.holder_id \
     WHERE g.role_id = $1 \
     UNION ALL SELECT a.id, a.name FROM role_grants g JOIN tenant_admins a ON a.id = g.holder_id \
     WHERE g.role_id = $1 ORDER BY 1";

/// A credential; with `lock`, its row stays locked until the transaction ends.
async fn fetch_credential(
    conn: &mut PgConnection,
    t: Tables,
    id: &str,
    lock: bool,
) -> Result<Option<CredentialRow>, StoreError> {
    let lock = if lock { " FOR UPDATE OF c" } else { "" };
    Ok(sqlx::query_as(sql(format!(
        "SELECT {} FROM {} c WHERE c.id = $1{lock}",
        t.columns(ROLES_SQL),
        t.credentials
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// A role; with `lock`, its row stays locked until the transaction ends.
async fn fetch_role(
    conn: &mut PgConnection,
    id: &str,
    lock: bool,
) -> Result<Option<RoleRow>, StoreError> {
    let sql = if lock {
        "SELECT id, tenant, name, description, permissions, created_at, updated_at FROM roles \
         WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT id, tenant, name, description, permissions, created_at, updated_at FROM roles \
         WHERE id = $1"
    };
    Ok(sqlx::query_as(sql).bind(id).fetch_optional(conn).await?)
}

/// For a kind the filter caches, logs a change for every secret of credential `id`, current and
/// rotated out, inside the caller's transaction.
async fn log_secret_changes(
    conn: &mut PgConnection,
    kind: Kind,
    t: Tables,
    id: &str,
    now: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    if !kind.is_cached_at_the_edge() {
        return Ok(None);
    }
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(sql(format!(
        "SELECT hash FROM {} WHERE {} = $1 ORDER BY created_at, hash",
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

async fn insert_audit(conn: &mut PgConnection, event: &audit::Event) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor, action, target_type, target_id, tenant, source, \
         outcome, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
    fn operational_postgres_failures_are_transient() {
        for code in [
            "08006", "08001", "57P01", "57P03", "53300", "40001", "40P01",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        // Unique violation, syntax error, undefined table: bugs or bad data, not the moment.
        for code in ["23505", "42601", "42P01"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }
}
