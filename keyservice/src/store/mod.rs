//! [`KeyStore`]: the database, and the only module with SQL in it. One type over two backends:
//! - [`sqlite`] (the default): one embedded file, for a single process;
//! - [`postgres`]: a shared server, for several replicas of the key service behind a load
//!   balancer (`--database-url postgres://…`).
//!
//! Each backend has its own migrations (`migrations/sqlite/`, `migrations/postgres/`), applied at
//! start-up, and its own SQL; this module holds what they share: the error type, the row types
//! and their conversions, and the dispatch.
//!
//! Key and client secrets are stored only as their SHA-256 ([`KeyHash`], 32-byte BLOB/BYTEA),
//! looked up through the primary-key index on the hash; signing keys as PKCS#8 DER, which the
//! service needs to sign. Times are Unix seconds.
//!
//! Every mutation that changes a lookup answer appends the affected key hashes to the change log
//! in its own transaction, numbered from the single-row counter (see [`crate::feed`] for why),
//! and wakes the long-polls once committed: those of this process directly, and on PostgreSQL
//! those of every replica through `NOTIFY` (see [`postgres`]).

mod postgres;
mod sqlite;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keygate_core::key::KeyHash;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::audit::{self, Outcome};
use crate::credentials::{
    Credential, CredentialId, HeldRole, Kind, SecretMatch, StoredSecret, WithSecrets,
};
use crate::feed::{ChangeSignal, Cursor, LogHead, Page};
use crate::keys::{
    parse_permissions, DailyCount, KeyId, KeyStatus, KeyUsage, Name, Permission, Tenant,
    UsageBooking,
};
use crate::roles::{Description, Holder, Role, RoleId, RoleName};
use crate::rotation::KeySchedule;
use crate::signing::SigningAlg;

pub use postgres::CONNECT_PATIENCE;

const ADMIN_SECRET_SETTING: &str = "admin_secret_sha256";

/// Which database the store runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file; missing parent folders are created.
    Sqlite(PathBuf),
    /// A PostgreSQL server, shared by every replica.
    Postgres(DatabaseUrl),
}

/// A `postgres://` or `postgresql://` URL. It may carry a password, so `Debug` and `Display`
/// show it with the password replaced.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// `None` unless the URL names PostgreSQL.
    pub fn parse(url: &str) -> Option<Self> {
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        postgres.then(|| Self(url.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "***".to_owned();
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
                None => self.0.clone(),
            },
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

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
    /// PostgreSQL did not answer within [`postgres::CONNECT_PATIENCE`] of start-up.
    #[error("cannot connect to PostgreSQL at {url} (gave up after {waited:?})")]
    Connect {
        url: String,
        waited: Duration,
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
    /// The `kind` label of `keygate_database_errors_total`: one word per variant.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CreateDir { .. } => "create_dir",
            Self::Open { .. } => "open",
            Self::Connect { .. } => "connect",
            Self::Migrate(_) => "migrate",
            Self::Unavailable(_) => "unavailable",
            Self::Query(_) => "query",
            Self::Encode(_) => "encode",
            Self::Corrupt(_) => "corrupt",
        }
    }

    /// True when the failure is operational (busy, full disk, I/O) rather than a bug or corrupt
    /// data: the HTTP layer answers 503 instead of 500.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_transient(&e) {
            Self::Unavailable(e)
        } else {
            Self::Query(e)
        }
    }
}

/// Whether a failure describes the moment (busy, full, unreachable, restarting) rather than the
/// query, on either backend.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                postgres::is_transient_sqlstate(pg.code())
            } else {
                db.code()
                    .and_then(|code| code.parse::<i32>().ok())
                    .is_some_and(sqlite::is_transient_sqlite_code)
            }
        }
        _ => false,
    }
}

/// The labels of `keygate_database_errors_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`StoreError::kind`].
    pub kind: &'static str,
}

/// Failed database calls by [`StoreError::kind`], counted by [`KeyStore`] as its backends answer
/// (so background tasks' failures count too), exposed on `/metrics`. A row the backend returned
/// fine but the domain then refuses (`Corrupt`, from the `TryFrom` conversions here) is not
/// counted: only what the backends answer passes the one counting point, `dispatch!`.
pub type ErrorCounts = Family<ErrorLabels, Counter>;

/// The kinds a running store can fail with; `/metrics` shows them from 0 on. (The others happen
/// at start-up, before there is anything to scrape.)
const RUNTIME_ERROR_KINDS: [&str; 3] = ["unavailable", "query", "corrupt"];

/// Keys by status at one moment: what `keygate_keys` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCounts {
    pub active: u64,
    pub revoked: u64,
    pub expired: u64,
}

impl KeyCounts {
    pub fn get(&self, status: KeyStatus) -> u64 {
        match status {
            KeyStatus::Active => self.active,
            KeyStatus::Revoked => self.revoked,
            KeyStatus::Expired => self.expired,
        }
    }
}

/// The backends' key count: all keys, revoked keys, keys expired but not revoked (revocation
/// wins, as in [`KeyStatus::at`]). One pass without `GROUP BY`: on a million SQLite keys it takes
/// a third of the time of grouping by status.
type KeyTally = (i64, i64, i64);

/// What happened to a change requested for one credential (`T`).
#[derive(Debug)]
pub enum Change<T> {
    Done(T),
    NotFound,
    /// The credential is revoked; revocation is final, so the change was not made.
    Revoked(T),
}

/// What happened to a new role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleInsert {
    Done,
    /// The tenant has a role of that name already.
    NameTaken,
}

/// What happened to a role deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleDelete {
    Deleted,
    NotFound,
    /// Credentials hold it; nothing was deleted.
    InUse(Vec<Holder>),
}

/// The tables one [`Kind`] of credential lives in. The names are constants, never input, so the
/// backends may format them into SQL.
#[derive(Debug, Clone, Copy)]
struct Tables {
    kind: Kind,
    credentials: &'static str,
    secrets: &'static str,
    /// The column of `secrets` naming the credential.
    owner: &'static str,
    /// The column holding the last use, or `NULL` for kinds whose use is not reported.
    last_used: &'static str,
}

impl Tables {
    fn of(kind: Kind) -> Self {
        match kind {
            Kind::Key => Self {
                kind,
                credentials: "keys",
                secrets: "key_secrets",
                owner: "key_id",
                last_used: "c.last_used_at",
            },
            Kind::Client => Self {
                kind,
                credentials: "clients",
                secrets: "client_secrets",
                owner: "client_id",
                last_used: "NULL",
            },
            Kind::TenantAdmin => Self {
                kind,
                credentials: "tenant_admins",
                secrets: "tenant_admin_secrets",
                owner: "admin_id",
                last_used: "NULL",
            },
        }
    }

    /// The columns of a [`CredentialRow`] of table alias `c`, with `roles` computed by
    /// `roles_sql` (the backend's JSON aggregate over `role_grants`).
    fn columns(self, roles_sql: &str) -> String {
        format!(
            "c.id, c.name, c.tenant, c.permissions, c.secret_hint, c.created_at, c.expires_at, \
             c.revoked_at, {} AS last_used_at, {roles_sql} AS roles",
            self.last_used
        )
    }
}

/// A statement formatted from [`Tables`]' constant names and other constants only, never from
/// input: what sqlx asks dynamic SQL to be marked as.
fn sql(statement: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(statement)
}

/// A statement formatted once per [`Kind`] from [`Tables`]' constants and kept for the life of
/// the process, for queries on the lookup path: no formatting or allocation per query after the
/// first, and a `&'static str` sqlx takes as it is.
struct PerKind([OnceLock<String>; 3]);

impl PerKind {
    const fn new() -> Self {
        Self([OnceLock::new(), OnceLock::new(), OnceLock::new()])
    }

    fn get(&'static self, t: Tables, format: impl FnOnce(Tables) -> String) -> &'static str {
        let slot = match t.kind {
            Kind::Key => 0,
            Kind::Client => 1,
            Kind::TenantAdmin => 2,
        };
        self.0[slot].get_or_init(|| format(t))
    }
}

/// A credential row of any kind; `roles` is a JSON array of `[name, [permission, ...]]`.
#[derive(sqlx::FromRow)]
struct CredentialRow {
    id: String,
    name: String,
    tenant: String,
    permissions: String,
    secret_hint: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    roles: String,
}

#[derive(sqlx::FromRow)]
struct SecretRow {
    #[sqlx(flatten)]
    credential: CredentialRow,
    retires_at: Option<i64>,
}

/// A [`SecretRow`] with the hash it was found by, for lookups of several hashes at once.
#[derive(sqlx::FromRow)]
struct HashedSecretRow {
    hash: Vec<u8>,
    #[sqlx(flatten)]
    secret: SecretRow,
}

fn credential<I: CredentialId>(row: CredentialRow) -> Result<Credential<I>, StoreError> {
    Ok(Credential {
        id: I::parse(&row.id).ok_or(StoreError::Corrupt("credential id"))?,
        name: Name::from_stored(row.name),
        tenant: Tenant::parse(row.tenant).map_err(|_| StoreError::Corrupt("tenant"))?,
        permissions: decode_permissions(&row.permissions)?,
        roles: decode_held_roles(&row.roles)?,
        secret_hint: row.secret_hint,
        created_at: from_unix(row.created_at)?,
        expires_at: row.expires_at.map(from_unix).transpose()?,
        revoked_at: row.revoked_at.map(from_unix).transpose()?,
        last_used_at: row.last_used_at.map(from_unix).transpose()?,
    })
}

fn decode_held_roles(json: &str) -> Result<Vec<HeldRole>, StoreError> {
    let corrupt = || StoreError::Corrupt("held roles");
    let rows: Vec<(String, Vec<String>)> = serde_json::from_str(json).map_err(|_| corrupt())?;
    let mut roles = rows
        .into_iter()
        .map(|(name, permissions)| {
            Ok(HeldRole {
                name: RoleName::parse(name).map_err(|_| corrupt())?,
                permissions: parse_permissions(permissions).map_err(|_| corrupt())?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(roles)
}

#[derive(sqlx::FromRow)]
struct RoleRow {
    id: String,
    tenant: String,
    name: String,
    description: String,
    permissions: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<RoleRow> for Role {
    type Error = StoreError;

    fn try_from(row: RoleRow) -> Result<Self, StoreError> {
        Ok(Role {
            id: RoleId::parse(&row.id).ok_or(StoreError::Corrupt("role id"))?,
            tenant: Tenant::parse(row.tenant).map_err(|_| StoreError::Corrupt("tenant"))?,
            name: RoleName::parse(row.name).map_err(|_| StoreError::Corrupt("role name"))?,
            description: Description::from_stored(row.description),
            permissions: decode_permissions(&row.permissions)?,
            created_at: from_unix(row.created_at)?,
            updated_at: from_unix(row.updated_at)?,
        })
    }
}

/// A holder as the backends list it: `(holder id, name)`.
type HolderRow = (String, String);

fn holder(row: HolderRow) -> Result<Holder, StoreError> {
    let kind = Kind::of_id(&row.0).ok_or(StoreError::Corrupt("role holder id"))?;
    Ok(Holder {
        kind,
        id: row.0,
        name: row.1,
    })
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    seq: i64,
    at: i64,
    actor: String,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    tenant: Option<String>,
    source: Option<String>,
    outcome: String,
    request_id: Option<String>,
}

impl TryFrom<AuditRow> for audit::Recorded {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        let outcome = [
            Outcome::Success,
            Outcome::Denied,
            Outcome::NotFound,
            Outcome::Conflict,
            Outcome::Invalid,
            Outcome::Failure,
        ]
        .into_iter()
        .find(|o| o.as_str() == row.outcome)
        .ok_or(StoreError::Corrupt("audit outcome"))?;
        Ok(audit::Recorded {
            seq: change_seq(row.seq)?,
            event: audit::Event {
                at: from_unix(row.at)?,
                actor: row.actor,
                action: row.action,
                target_type: row.target_type,
                target_id: row.target_id,
                tenant: row.tenant,
                source: row.source,
                outcome,
                request_id: row.request_id,
            },
        })
    }
}

/// A new credential as the backends write it.
struct NewCredential<'a> {
    tables: Tables,
    id: &'a str,
    name: &'a str,
    tenant: &'a str,
    permissions: String,
    secret_hint: Option<&'a str>,
    created_at: i64,
    expires_at: Option<i64>,
    roles: &'a [RoleId],
    secret: &'a KeyHash,
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

/// What [`KeyStore::apply_rotation`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationWrite {
    Written,
    /// The stored keys were no longer those the plan was made from (another replica rotated
    /// meanwhile); nothing was written. Plan again from what is stored now.
    Stale,
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

fn key_hash(bytes: Vec<u8>, what: &'static str) -> Result<KeyHash, StoreError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Corrupt(what))?;
    Ok(KeyHash::from_bytes(bytes))
}

fn stored_seq(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt("change number"))
}

fn change_seq(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt("change number"))
}

fn converted<I: CredentialId>(
    change: Change<CredentialRow>,
) -> Result<Change<Credential<I>>, StoreError> {
    Ok(match change {
        Change::Done(row) => Change::Done(credential(row)?),
        Change::NotFound => Change::NotFound,
        Change::Revoked(row) => Change::Revoked(credential(row)?),
    })
}

fn log_head(log_id: &str, last_seq: i64, trimmed_through: i64) -> Result<LogHead, StoreError> {
    Ok(LogHead {
        log_id: crate::feed::LogId::parse(log_id).ok_or(StoreError::Corrupt("change log id"))?,
        last_seq: change_seq(last_seq)?,
        trimmed_through: change_seq(trimmed_through)?,
    })
}

/// A page of the log out of the rows read after `from` (at most `limit + 1`, to tell whether
/// there are more).
fn page(
    head: &LogHead,
    from: u64,
    rows: Vec<(i64, Vec<u8>)>,
    limit: usize,
) -> Result<Page, StoreError> {
    let more = rows.len() > limit;
    let mut seq = from;
    let mut changes = Vec::with_capacity(rows.len().min(limit));
    for (row_seq, hash) in rows.into_iter().take(limit) {
        seq = change_seq(row_seq)?;
        changes.push(key_hash(hash, "change key hash")?);
    }
    Ok(Page {
        cursor: Cursor {
            log_id: head.log_id.clone(),
            seq,
        },
        changes,
        reset: None,
        more,
    })
}

fn usage(last_used: Option<i64>, rows: Vec<(String, i64)>) -> Result<KeyUsage, StoreError> {
    let daily = rows
        .into_iter()
        .map(|(day, count)| {
            let count = u64::try_from(count).map_err(|_| StoreError::Corrupt("usage count"))?;
            Ok(DailyCount { day, count })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(KeyUsage {
        last_used_at: last_used.map(from_unix).transpose()?,
        daily,
    })
}

fn stored_secrets(rows: Vec<(Vec<u8>, Option<i64>)>) -> Result<Vec<StoredSecret>, StoreError> {
    rows.into_iter()
        .map(|(hash, retires_at)| {
            Ok(StoredSecret {
                hash: key_hash(hash, "secret hash")?,
                retires_at: retires_at.map(from_unix).transpose()?,
            })
        })
        .collect()
}

fn secret_match<I: CredentialId>(row: SecretRow) -> Result<SecretMatch<I>, StoreError> {
    Ok(SecretMatch {
        retires_at: row.retires_at.map(from_unix).transpose()?,
        credential: credential(row.credential)?,
    })
}

#[derive(Debug)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// The key database. Cheap to clone: clones share one connection pool and one change signal.
#[derive(Debug, Clone)]
pub struct KeyStore {
    backend: Arc<Backend>,
    changes: Arc<ChangeSignal>,
    /// Bumped when another process may have changed the signing keys (see
    /// [`KeyStore::signing_keys_changed`]).
    signing_keys: Arc<watch::Sender<u64>>,
    errors: ErrorCounts,
}

/// Calls the method of the same name on whichever backend the store runs on, and counts its
/// failure in [`KeyStore::errors`]: the one place every query passes.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        $self.counted(match &*$self.backend {
            Backend::Sqlite(store) => store.$method($($arg),*).await,
            Backend::Postgres(store) => store.$method($($arg),*).await,
        })
    };
}

impl KeyStore {
    /// Opens the database (creating an SQLite file and its folders if needed) and brings its
    /// schema up to date. On PostgreSQL it retries for [`CONNECT_PATIENCE`] while the server
    /// does not answer, then gives up with [`StoreError::Connect`].
    pub async fn open(database: &Database) -> Result<Self, StoreError> {
        let changes = Arc::new(ChangeSignal::default());
        let signing_keys = Arc::new(watch::Sender::new(0));
        let backend = match database {
            Database::Sqlite(path) => Backend::Sqlite(sqlite::SqliteStore::open(path).await?),
            Database::Postgres(url) => Backend::Postgres(
                postgres::PgStore::open(url, changes.clone(), signing_keys.clone()).await?,
            ),
        };
        let errors = ErrorCounts::default();
        for kind in RUNTIME_ERROR_KINDS {
            let _ = errors.get_or_create(&ErrorLabels { kind });
        }
        Ok(Self {
            backend: Arc::new(backend),
            changes,
            signing_keys,
            errors,
        })
    }

    /// Failed database calls so far, by kind (shared with every clone of this store).
    pub fn errors(&self) -> &ErrorCounts {
        &self.errors
    }

    fn counted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            self.errors
                .get_or_create(&ErrorLabels { kind: e.kind() })
                .inc();
        }
        result
    }

    /// Wakes the long-polls of this process (see [`crate::feed`]).
    pub fn change_signal(&self) -> &ChangeSignal {
        &self.changes
    }

    /// Changes when another replica may have changed the signing keys: a rotation it committed
    /// (PostgreSQL `NOTIFY` on its channel), or notifications possibly missed while the listener
    /// reconnected. An SQLite file belongs to one process, so there it never changes. The
    /// [`crate::keyring::KeyRing`] reloads on it.
    pub fn signing_keys_changed(&self) -> watch::Receiver<u64> {
        self.signing_keys.subscribe()
    }

    /// Waits for in-flight queries and closes every connection (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        match &*self.backend {
            Backend::Sqlite(store) => store.close().await,
            Backend::Postgres(store) => store.close().await,
        }
    }

    /// A trivial query, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    /// The stored SHA-256 of the generated admin secret, if one was generated.
    pub async fn admin_secret_hash(&self) -> Result<Option<KeyHash>, StoreError> {
        let value = dispatch!(self.setting(ADMIN_SECRET_SETTING))?;
        value
            .map(|hex| KeyHash::from_hex(&hex).ok_or(StoreError::Corrupt("admin secret hash")))
            .transpose()
    }

    /// Stores `hash` as the admin secret hash unless one is already stored, and returns the one
    /// that is stored afterwards: `hash` itself, or the earlier one if another process won a race.
    pub async fn init_admin_secret_hash(&self, hash: &KeyHash) -> Result<KeyHash, StoreError> {
        dispatch!(self.init_setting(ADMIN_SECRET_SETTING, &hash.to_hex()))?;
        self.admin_secret_hash()
            .await?
            .ok_or(StoreError::Corrupt("admin secret hash"))
    }

    /// How many keys are active, revoked and expired at `now`, counted by the database.
    pub async fn count_keys(&self, now: OffsetDateTime) -> Result<KeyCounts, StoreError> {
        let (total, revoked, expired) = dispatch!(self.count_keys(now))?;
        let count = |n: i64| u64::try_from(n).map_err(|_| StoreError::Corrupt("key count"));
        let (total, revoked, expired) = (count(total)?, count(revoked)?, count(expired)?);
        Ok(KeyCounts {
            active: total.saturating_sub(revoked).saturating_sub(expired),
            revoked,
            expired,
        })
    }

    /// Stores a new credential with its first secret and the roles it holds (ids of roles of
    /// its tenant), and records `audit` in the same transaction.
    pub async fn insert<I: CredentialId>(
        &self,
        credential: &Credential<I>,
        roles: &[RoleId],
        secret: &KeyHash,
        audit: &audit::Event,
    ) -> Result<(), StoreError> {
        let new = NewCredential {
            tables: Tables::of(I::KIND),
            id: credential.id.as_str(),
            name: credential.name.as_str(),
            tenant: credential.tenant.as_str(),
            permissions: encode_permissions(&credential.permissions)?,
            secret_hint: credential.secret_hint.as_deref(),
            created_at: unix(credential.created_at),
            expires_at: credential.expires_at.map(unix),
            roles,
            secret,
        };
        dispatch!(self.insert_credential(&new, audit))
    }

    /// All credentials of one kind, or those of one tenant, oldest first.
    pub async fn list<I: CredentialId>(
        &self,
        tenant: Option<&Tenant>,
    ) -> Result<Vec<Credential<I>>, StoreError> {
        let rows =
            dispatch!(self.list_credentials(Tables::of(I::KIND), tenant.map(Tenant::as_str)))?;
        rows.into_iter().map(credential).collect()
    }

    pub async fn get<I: CredentialId>(&self, id: &I) -> Result<Option<Credential<I>>, StoreError> {
        dispatch!(self.get_credential(Tables::of(I::KIND), id.as_str()))?
            .map(credential)
            .transpose()
    }

    /// Revokes a credential; a second revocation keeps the first `revoked_at` and records
    /// nothing. `None` if there is no such credential. For a key, the first revocation logs a
    /// change for each of its secrets.
    pub async fn revoke<I: CredentialId>(
        &self,
        id: &I,
        now: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<Option<Credential<I>>, StoreError> {
        let (row, logged) = dispatch!(self.revoke_credential(
            I::KIND,
            Tables::of(I::KIND),
            id.as_str(),
            now,
            audit
        ))?;
        self.signal(logged);
        row.map(credential).transpose()
    }

    /// Sets a new expiry (`None`: never) on a credential that is not revoked; for a key, logs a
    /// change for each of its secrets.
    pub async fn renew<I: CredentialId>(
        &self,
        id: &I,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<Change<Credential<I>>, StoreError> {
        let (change, logged) = dispatch!(self.renew_credential(
            I::KIND,
            Tables::of(I::KIND),
            id.as_str(),
            expires_at,
            now,
            audit
        ))?;
        self.signal(logged);
        converted(change)
    }

    /// Gives a credential a new secret. Its older secrets retire at `retires_at` (or earlier, if
    /// they were already retiring sooner); for a key, a change is logged for each of them (their
    /// lookup answers now expire at the grace end).
    pub async fn rotate<I: CredentialId>(
        &self,
        id: &I,
        new_secret: &KeyHash,
        secret_hint: &str,
        now: OffsetDateTime,
        retires_at: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<Change<Credential<I>>, StoreError> {
        let (change, logged) = dispatch!(self.rotate_credential(
            I::KIND,
            Tables::of(I::KIND),
            id.as_str(),
            (new_secret, secret_hint),
            (now, retires_at),
            audit
        ))?;
        self.signal(logged);
        converted(change)
    }

    /// Deletes a credential with its secrets, roles and (for a key) usage, logging a change for
    /// each of a key's secrets. `false` if there was no such credential.
    pub async fn delete<I: CredentialId>(
        &self,
        id: &I,
        now: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<bool, StoreError> {
        let (deleted, logged) = dispatch!(self.delete_credential(
            I::KIND,
            Tables::of(I::KIND),
            id.as_str(),
            now,
            audit
        ))?;
        self.signal(logged);
        Ok(deleted)
    }

    /// A credential with all its secrets, for authentication by id and secret (the token
    /// endpoint).
    pub async fn with_secrets<I: CredentialId>(
        &self,
        id: &I,
    ) -> Result<Option<WithSecrets<I>>, StoreError> {
        match dispatch!(self.credential_secrets(Tables::of(I::KIND), id.as_str()))? {
            Some((row, secrets)) => Ok(Some(WithSecrets {
                credential: credential(row)?,
                secrets: stored_secrets(secrets)?,
            })),
            None => Ok(None),
        }
    }

    /// The credential of one kind one of whose secrets hashes to `hash`: a key's lookup, a tenant
    /// admin's sign-in.
    pub async fn find_secret<I: CredentialId>(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<SecretMatch<I>>, StoreError> {
        dispatch!(self.find_secret(Tables::of(I::KIND), hash))?
            .map(secret_match)
            .transpose()
    }

    /// [`KeyStore::find_secret`] for several hashes in one query: the filter's batch lookup.
    /// `answers[i]` is the match of `hashes[i]`, so a hash given twice is answered twice.
    pub async fn find_secrets<I: CredentialId>(
        &self,
        hashes: &[KeyHash],
    ) -> Result<Vec<Option<SecretMatch<I>>>, StoreError> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let found = dispatch!(self.find_secrets(Tables::of(I::KIND), hashes))?
            .into_iter()
            .map(|row| {
                Ok((
                    key_hash(row.hash, "secret hash")?,
                    secret_match(row.secret)?,
                ))
            })
            .collect::<Result<HashMap<KeyHash, SecretMatch<I>>, StoreError>>()?;
        Ok(hashes.iter().map(|hash| found.get(hash).cloned()).collect())
    }

    /// Tells the long-polls of this process about a committed change up to `logged`.
    fn signal(&self, logged: Option<u64>) {
        if let Some(seq) = logged {
            self.changes.committed(seq);
        }
    }

    /// The changes after `after`, at most `limit`, or a reset (see [`crate::feed::plan_read`]).
    /// The log's head and its rows are read in one snapshot, so they agree.
    pub async fn read_changes(
        &self,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        dispatch!(self.read_changes(after, limit))
    }

    /// The log's identity and where it stands.
    pub async fn change_log_head(&self) -> Result<LogHead, StoreError> {
        dispatch!(self.change_log_head())
    }

    /// Deletes the changes made before `before` (and any numbered below one of them), and
    /// records how far the log is trimmed, so older cursors reset. Returns how many went.
    pub async fn trim_changes(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        dispatch!(self.trim_changes(before))
    }

    /// Books a batch of usage with one statement per table, whatever its size. Bookings for
    /// keys that no longer exist are skipped. Returns how many were booked.
    pub async fn record_usage(&self, bookings: &[UsageBooking]) -> Result<usize, StoreError> {
        if bookings.is_empty() {
            return Ok(0);
        }
        dispatch!(self.record_usage(bookings))
    }

    /// Usage of one key, or `None` if there is no such key.
    pub async fn usage(&self, id: &KeyId) -> Result<Option<KeyUsage>, StoreError> {
        match dispatch!(self.usage(id))? {
            Some((last_used, rows)) => Ok(Some(usage(last_used, rows)?)),
            None => Ok(None),
        }
    }

    /// Stores a new role, recording `audit` with it, unless its tenant has one of that name.
    pub async fn insert_role(
        &self,
        role: &Role,
        audit: &audit::Event,
    ) -> Result<RoleInsert, StoreError> {
        let permissions = encode_permissions(&role.permissions)?;
        dispatch!(self.insert_role(role, &permissions, audit))
    }

    /// All roles, or those of one tenant, by tenant and name.
    pub async fn list_roles(&self, tenant: Option<&Tenant>) -> Result<Vec<Role>, StoreError> {
        let rows = dispatch!(self.list_roles(tenant.map(Tenant::as_str)))?;
        rows.into_iter().map(Role::try_from).collect()
    }

    pub async fn get_role(&self, id: &RoleId) -> Result<Option<Role>, StoreError> {
        dispatch!(self.get_role(id.as_str()))?
            .map(Role::try_from)
            .transpose()
    }

    /// The roles of `tenant` with these names (those that exist).
    pub async fn roles_named(
        &self,
        tenant: &Tenant,
        names: &[RoleName],
    ) -> Result<Vec<Role>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = names.iter().map(RoleName::as_str).collect();
        let names = serde_json::to_string(&names).map_err(StoreError::Encode)?;
        let rows = dispatch!(self.roles_named(tenant.as_str(), &names))?;
        rows.into_iter().map(Role::try_from).collect()
    }

    /// Sets a role's description and permissions, records `audit`, and logs a change for every
    /// secret of every key holding it, so filters drop their cached answers. `None` if there is
    /// no such role.
    pub async fn update_role(
        &self,
        id: &RoleId,
        description: &Description,
        permissions: &[Permission],
        now: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<Option<Role>, StoreError> {
        let encoded = encode_permissions(permissions)?;
        let (row, logged) =
            dispatch!(self.update_role(id.as_str(), description.as_str(), &encoded, now, audit))?;
        self.signal(logged);
        row.map(Role::try_from).transpose()
    }

    /// Deletes a role no credential holds, recording `audit` with it.
    pub async fn delete_role(
        &self,
        id: &RoleId,
        audit: &audit::Event,
    ) -> Result<RoleDelete, StoreError> {
        match dispatch!(self.delete_role(id.as_str(), audit))? {
            None => Ok(RoleDelete::NotFound),
            Some(holders) if holders.is_empty() => Ok(RoleDelete::Deleted),
            Some(holders) => Ok(RoleDelete::InUse(
                holders.into_iter().map(holder).collect::<Result<_, _>>()?,
            )),
        }
    }

    /// Records an event on its own: a refusal or a failed authentication, where no change
    /// carries it.
    pub async fn record_audit(&self, event: &audit::Event) -> Result<(), StoreError> {
        dispatch!(self.record_audit(event))
    }

    /// A page of the audit log, newest first, and whether there are more.
    pub async fn audit_events(
        &self,
        filter: &audit::Filter,
    ) -> Result<(Vec<audit::Recorded>, bool), StoreError> {
        let limit = usize::try_from(filter.limit).unwrap_or(usize::MAX);
        let rows = dispatch!(self.audit_events(filter))?;
        let more = rows.len() > limit;
        let page = rows
            .into_iter()
            .take(limit)
            .map(audit::Recorded::try_from)
            .collect::<Result<_, _>>()?;
        Ok((page, more))
    }

    /// Deletes the audit events before `before`. Returns how many went.
    pub async fn trim_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        dispatch!(self.trim_audit(before))
    }

    /// Every signing key on record, private keys included, in activation order (then insertion).
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let rows = dispatch!(self.signing_keys())?;
        rows.into_iter().map(StoredSigningKey::try_from).collect()
    }

    /// Carries out a rotation in one transaction: deletes, retirements (which never move an
    /// earlier `retires_at` later) and the new key; but only if the stored kids are still
    /// `planned_from`, checked in the same transaction after taking the rotation lock (SQLite's
    /// write lock; a PostgreSQL advisory lock), so replicas sharing a database rotate one at a
    /// time and never both add a successor. An operator's `audit` event goes with it.
    pub async fn apply_rotation(
        &self,
        planned_from: &[String],
        new_key: Option<NewSigningKey<'_>>,
        retire: &[(String, OffsetDateTime)],
        delete: &[String],
        audit: Option<&audit::Event>,
    ) -> Result<RotationWrite, StoreError> {
        let mut planned_from = planned_from.to_vec();
        planned_from.sort_unstable();
        dispatch!(self.apply_rotation(&planned_from, new_key, retire, delete, audit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_shown_without_their_password() {
        let url =
            DatabaseUrl::parse("postgres://kg:s3cret@db.internal:5432/keygate?sslmode=require")
                .unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://kg:***@db.internal:5432/keygate?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let plain = DatabaseUrl::parse("postgresql://postgres@127.0.0.1/test").unwrap();
        assert_eq!(plain.to_string(), "postgresql://postgres@127.0.0.1/test");
        assert_eq!(DatabaseUrl::parse("mysql://x@y/z"), None);
        assert_eq!(DatabaseUrl::parse("./data/keygate.db"), None);
    }
}
