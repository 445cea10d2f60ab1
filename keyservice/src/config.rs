//! Start-up configuration in two stages: [`Cli`] is what clap reads from flags and environment
//! variables; [`Cli::into_config`] checks it into the [`Config`] the service runs with, failing
//! with a message that names the flag.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use keygate_core::key::KeyHash;

use crate::audit;
use crate::feed::{Retention, MAX_RETENTION_SECS, MIN_RETENTION_SECS};

/// Longest audit retention: ten years.
const MAX_AUDIT_RETENTION_DAYS: u32 = 3650;
use crate::keys::{CachePolicy, Lifetime, MAX_CACHE_TTL_SECS, MAX_KEY_LIFETIME_SECS};
use crate::ratelimit::FailurePolicy;
use crate::rotation::{RotationConfigError, RotationPolicy};
use crate::server::ConnectionLimits;
use crate::signing::SigningAlg;
use crate::store::{Database, DatabaseUrl};
use crate::token::{Audience, Issuer, TokenConfigError, TokenPolicy};

/// The admin secret is read from the environment only, never from a flag, so it does not show up
/// in process listings.
pub const ADMIN_SECRET_ENV: &str = "KEYGATE_ADMIN_SECRET";

const MAX_SECRET_LEN: usize = 1024;
/// Longest header or body timeout: an hour is already far past any honest client.
const MAX_TIMEOUT_SECS: u64 = 3600;
/// Largest connection cap: tokio's semaphore holds at most `usize::MAX >> 3` permits, and more
/// than this many sockets would exhaust any file descriptor limit first.
const MAX_CONNECTIONS: usize = 1 << 20;

const AFTER_HELP: &str = "\
Environment only:
  KEYGATE_ADMIN_SECRET
          Bearer secret for the admin API (/v1/keys, /v1/clients, /v1/signing-keys). When set (or --admin-secret-file is
          given) it is used as is and nothing about it is stored. When neither is set, a secret
          is generated on first start, printed once on stdout, and only its SHA-256 is kept in
          the database; later starts reuse it. Setting the variable overrides a stored secret.

Every flag can also be set with the environment variable shown next to it.";

/// keygate key service: issues API keys and answers the keygate filter's lookups; issues OAuth 2.0
/// client credentials and short-lived JWT access tokens (POST /oauth/token, JWKS at
/// /.well-known/jwks.json); checks API keys for Envoy's ext_authz (/v1/check).
#[derive(Debug, Parser)]
#[command(name = "keygate-server", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Address and port to listen on.
    #[arg(long, env = "KEYGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// SQLite database file. Missing parent folders are created.
    #[arg(long, env = "KEYGATE_DB_PATH", default_value = "./data/keygate.db")]
    pub db_path: PathBuf,

    /// PostgreSQL to store keys in instead of the SQLite file: `postgres://user:password@host/db`
    /// (any libpq-style URL sqlx accepts). Every replica of the service points at the same one.
    /// When unset, --db-path is used.
    #[arg(long, env = "KEYGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// File holding the admin secret (surrounding whitespace is ignored). An alternative to
    /// KEYGATE_ADMIN_SECRET; setting both is an error.
    #[arg(long, env = "KEYGATE_ADMIN_SECRET_FILE")]
    pub admin_secret_file: Option<PathBuf>,

    /// Token the filter sends to /v1/lookup, /v1/usage and /v1/changes as `Authorization: Bearer
    /// <token>`.
    /// Required; must differ from the admin secret. Prefer the environment variable: flags show
    /// up in process listings.
    #[arg(long, env = "KEYGATE_FILTER_TOKEN", hide_env_values = true, value_parser = Secret::parse)]
    pub filter_token: Secret,

    /// Token Prometheus sends to GET /metrics as `Authorization: Bearer <token>`. When unset,
    /// /metrics answers 404. Must differ from the admin secret and the filter token. Prefer the
    /// environment variable: flags show up in process listings.
    #[arg(long, env = "KEYGATE_METRICS_TOKEN", hide_env_values = true, value_parser = Secret::parse)]
    pub metrics_token: Option<Secret>,

    /// Lifetime of a new or renewed key when the request names none, in seconds (default: 15
    /// days).
    #[arg(
        long = "default-ttl-secs",
        env = "KEYGATE_DEFAULT_KEY_TTL_SECS",
        default_value_t = 1_296_000
    )]
    pub default_key_ttl_secs: u64,

    /// Longest the filter may cache a valid lookup answer, in seconds. Never past the key's
    /// expiry. Minutes by default: filters that read the revocation feed drop a changed key's
    /// answer within a second however long it may live; a filter without the feed keeps its own
    /// shorter lifetime (30 s by default).
    #[arg(long, env = "KEYGATE_LOOKUP_CACHE_TTL_SECS", default_value_t = 300)]
    pub lookup_cache_ttl_secs: u64,

    /// How long the filter may cache an invalid lookup answer (unknown, revoked, expired), in
    /// seconds.
    #[arg(long, env = "KEYGATE_NEGATIVE_CACHE_TTL_SECS", default_value_t = 10)]
    pub negative_cache_ttl_secs: u64,

    /// `iss` of access tokens, and the base URL of the token endpoint and JWKS in the discovery
    /// document: an http:// or https:// URL without query or fragment, as verifiers will see
    /// it. Default: http://<--listen>, which only suits local use.
    #[arg(long, env = "KEYGATE_ISSUER")]
    pub issuer: Option<String>,

    /// `aud` of access tokens: what verifiers must accept.
    #[arg(long, env = "KEYGATE_TOKEN_AUDIENCE", default_value = "keygate")]
    pub token_audience: String,

    /// Lifetime of access tokens, in seconds (at most one day). Never past the client's expiry.
    /// Tokens cannot be revoked, so keep it short.
    #[arg(long, env = "KEYGATE_TOKEN_TTL_SECS", default_value_t = 300)]
    pub token_ttl_secs: u64,

    /// Algorithm of new access-token signing keys. Changing it rotates to a key of the new
    /// algorithm (pre-published first); keys of the old one stay published until their tokens
    /// have expired.
    #[arg(
        long,
        env = "KEYGATE_SIGNING_ALG",
        value_enum,
        ignore_case = true,
        default_value_t = SigningAlg::EdDsa
    )]
    pub signing_alg: SigningAlg,

    /// How long a signing key signs before the next one takes over, in seconds (default: 30
    /// days). The next key is published in the JWKS max(token TTL, 300 s) + 60 s before it
    /// signs; an old key stays published until its last token has expired.
    #[arg(
        long,
        env = "KEYGATE_SIGNING_KEY_ROTATION_SECS",
        default_value_t = 2_592_000
    )]
    pub signing_key_rotation_secs: u64,

    /// Longest wait for a client's request line and headers, in seconds, from the connection's
    /// start or its previous response. A connection that takes longer is closed.
    #[arg(long, env = "KEYGATE_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Longest wait for a whole request body, in seconds, from the request head; past it the
    /// answer is 408 and the connection is closed.
    #[arg(long, env = "KEYGATE_REQUEST_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub request_body_timeout_secs: u64,

    /// Connections served at once. More wait in the listen backlog until one closes (idle and
    /// slow ones are closed by the timeouts above).
    #[arg(long, env = "KEYGATE_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,

    /// How long the change log (GET /v1/changes, the revocation feed) keeps a change, in seconds
    /// (default: one day). A filter whose cursor is older than that drops its whole cache.
    #[arg(
        long,
        env = "KEYGATE_CHANGE_LOG_RETENTION_SECS",
        default_value_t = 86_400
    )]
    pub change_log_retention_secs: u64,

    /// How long the audit log (GET /v1/audit) keeps an event, in days (1 to 3650).
    #[arg(
        long,
        env = "KEYGATE_AUDIT_RETENTION_DAYS",
        default_value_t = audit::DEFAULT_RETENTION_DAYS
    )]
    pub audit_retention_days: u32,

    /// Log line format on stderr.
    #[arg(long, env = "KEYGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Which logs to write, in tracing's EnvFilter syntax (e.g. `info`,
    /// `keygate_keyservice=debug`).
    #[arg(long, env = "KEYGATE_LOG", default_value = "info")]
    pub log: String,

    /// Serve neither the OpenAPI document (`/openapi.json`) nor the explorer (`/docs`): both 404.
    #[arg(
        long,
        env = "KEYGATE_HIDE_DOCS",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub hide_docs: bool,

    /// Serve no web console (`/console`): it 404s. The console has no powers of its own (it calls
    /// the same API with the secret its user signs in with); hide it where nobody should sign in
    /// from a browser.
    #[arg(
        long,
        env = "KEYGATE_HIDE_CONSOLE",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub hide_console: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Pretty,
    /// One JSON object per event.
    Json,
}

/// The checked configuration the service starts from.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The SQLite file (`--db-path`), or PostgreSQL when `--database-url` is set.
    pub database: Database,
    /// From `KEYGATE_ADMIN_SECRET` or `--admin-secret-file`. `None`: use the hash stored in the
    /// database, generating a secret on first start.
    pub admin_secret: Option<Secret>,
    pub filter_token: Secret,
    /// The bearer token of `/metrics`; `None` turns `/metrics` off.
    pub metrics_token: Option<Secret>,
    pub default_key_lifetime: Lifetime,
    pub cache: CachePolicy,
    /// Issuer, audience and lifetime of access tokens.
    pub access_tokens: TokenPolicy,
    /// Algorithm and schedule of the signing keys.
    pub rotation: RotationPolicy,
    /// When the token endpoint stops answering a source address that keeps failing to
    /// authenticate (for one client id, or for any). Not a flag: the defaults suit.
    pub auth_failures: FailurePolicy,
    /// Timeouts and the connection cap.
    pub limits: ConnectionLimits,
    /// How long the change log keeps a change.
    pub change_log_retention: Retention,
    /// How long the audit log keeps an event.
    pub audit_retention: audit::Retention,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// `--hide-docs`: no `/openapi.json`, no `/docs`.
    pub hide_docs: bool,
    /// `--hide-console`: no `/console`.
    pub hide_console: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("set either {ADMIN_SECRET_ENV} or --admin-secret-file, not both")]
    AdminSecretTwice,
    #[error("cannot read --admin-secret-file {path}")]
    AdminSecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{ADMIN_SECRET_ENV} / --admin-secret-file: {0}")]
    AdminSecret(#[source] SecretError),
    #[error("--default-ttl-secs must be between 1 and {MAX_KEY_LIFETIME_SECS}")]
    DefaultLifetime,
    #[error("{flag} must be at most {MAX_CACHE_TTL_SECS}")]
    CacheTtl { flag: &'static str },
    #[error("--issuer {0}")]
    Issuer(#[source] TokenConfigError),
    #[error("--token-audience {0}")]
    TokenAudience(#[source] TokenConfigError),
    #[error("--token-ttl-secs {0}")]
    TokenTtl(#[source] TokenConfigError),
    #[error("--signing-key-rotation-secs {0}")]
    Rotation(#[source] RotationConfigError),
    #[error("{flag} must be between 1 and {MAX_TIMEOUT_SECS}")]
    Timeout { flag: &'static str },
    #[error("--max-connections must be between 1 and {MAX_CONNECTIONS}")]
    MaxConnections,
    #[error(
        "--change-log-retention-secs must be between {MIN_RETENTION_SECS} and {MAX_RETENTION_SECS}"
    )]
    ChangeLogRetention,
    #[error("--audit-retention-days must be between 1 and {MAX_AUDIT_RETENTION_DAYS}")]
    AuditRetention,
    #[error("--database-url / KEYGATE_DATABASE_URL must start with postgres:// or postgresql://")]
    DatabaseUrl,
}

impl Cli {
    /// Checks the parsed flags. `admin_secret_env` is the value of [`ADMIN_SECRET_ENV`], passed in
    /// so tests need not touch the process environment.
    pub fn into_config(self, admin_secret_env: Option<OsString>) -> Result<Config, ConfigError> {
        let admin_secret = match (admin_secret_env, &self.admin_secret_file) {
            (Some(_), Some(_)) => return Err(ConfigError::AdminSecretTwice),
            (Some(value), None) => {
                let value = value
                    .into_string()
                    .map_err(|_| ConfigError::AdminSecret(SecretError))?;
                Some(Secret::parse(&value).map_err(ConfigError::AdminSecret)?)
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    ConfigError::AdminSecretFile {
                        path: path.clone(),
                        source,
                    }
                })?;
                Some(Secret::parse(text.trim()).map_err(ConfigError::AdminSecret)?)
            }
            (None, None) => None,
        };
        let default_key_lifetime = Lifetime::from_secs(self.default_key_ttl_secs)
            .map_err(|_| ConfigError::DefaultLifetime)?;
        let cache_ttl = |secs: u64, flag| {
            if secs > MAX_CACHE_TTL_SECS {
                Err(ConfigError::CacheTtl { flag })
            } else {
                Ok(secs)
            }
        };
        let issuer = match &self.issuer {
            Some(issuer) => Issuer::parse(issuer),
            None => Issuer::parse(&format!("http://{}", self.listen)),
        }
        .map_err(ConfigError::Issuer)?;
        let audience = Audience::parse(&self.token_audience).map_err(ConfigError::TokenAudience)?;
        let access_tokens = TokenPolicy::new(issuer, audience, self.token_ttl_secs)
            .map_err(ConfigError::TokenTtl)?;
        let rotation = RotationPolicy::new(
            self.signing_alg,
            self.signing_key_rotation_secs,
            self.token_ttl_secs,
        )
        .map_err(ConfigError::Rotation)?;
        let timeout = |secs: u64, flag| {
            if (1..=MAX_TIMEOUT_SECS).contains(&secs) {
                Ok(Duration::from_secs(secs))
            } else {
                Err(ConfigError::Timeout { flag })
            }
        };
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(ConfigError::MaxConnections);
        }
        let limits = ConnectionLimits {
            header_read_timeout: timeout(
                self.header_read_timeout_secs,
                "--header-read-timeout-secs",
            )?,
            request_body_timeout: timeout(
                self.request_body_timeout_secs,
                "--request-body-timeout-secs",
            )?,
            max_connections: self.max_connections,
        };
        let database = match &self.database_url {
            Some(url) => {
                Database::Postgres(DatabaseUrl::parse(url).ok_or(ConfigError::DatabaseUrl)?)
            }
            None => Database::Sqlite(self.db_path),
        };
        let change_log_retention = Retention::from_secs(self.change_log_retention_secs)
            .map_err(|_| ConfigError::ChangeLogRetention)?;
        if !(1..=MAX_AUDIT_RETENTION_DAYS).contains(&self.audit_retention_days) {
            return Err(ConfigError::AuditRetention);
        }
        Ok(Config {
            listen: self.listen,
            database,
            admin_secret,
            filter_token: self.filter_token,
            metrics_token: self.metrics_token,
            default_key_lifetime,
            cache: CachePolicy {
                valid_ttl_secs: cache_ttl(self.lookup_cache_ttl_secs, "--lookup-cache-ttl-secs")?,
                invalid_ttl_secs: cache_ttl(
                    self.negative_cache_ttl_secs,
                    "--negative-cache-ttl-secs",
                )?,
            },
            access_tokens,
            rotation,
            auth_failures: FailurePolicy::default(),
            limits,
            change_log_retention,
            audit_retention: audit::Retention::days(self.audit_retention_days),
            log_format: self.log_format,
            log_filter: self.log,
            hide_docs: self.hide_docs,
            hide_console: self.hide_console,
        })
    }
}

/// A bearer secret (admin secret or filter token). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {MAX_SECRET_LEN} printable ASCII characters without spaces or commas")]
pub struct SecretError;

impl Secret {
    /// Accepts what can travel in `Authorization: Bearer <secret>`: printable ASCII, no spaces.
    /// No commas either: a comma in `Authorization` reads as two folded credentials, which every
    /// endpoint refuses.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_SECRET_LEN
            && s.bytes().all(|b| b.is_ascii_graphic() && b != b',');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(SecretError)
        }
    }

    pub(crate) fn from_generated(s: String) -> Self {
        Self(s)
    }

    /// The secret itself. Handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 the service compares presented tokens against.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    const FILTER_TOKEN: &str = "filter-token-for-tests";

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("keygate-server").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_spec() {
        let config = parse(&["--filter-token", FILTER_TOKEN])
            .unwrap()
            .into_config(None)
            .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config.database,
            Database::Sqlite(PathBuf::from("./data/keygate.db"))
        );
        assert_eq!(
            config.default_key_lifetime,
            Lifetime::from_secs(15 * 24 * 3600).unwrap()
        );
        assert_eq!(
            config.cache,
            CachePolicy {
                valid_ttl_secs: 300,
                invalid_ttl_secs: 10
            }
        );
        assert!(config.admin_secret.is_none());
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(
            config.access_tokens.issuer.as_str(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(config.access_tokens.audience.as_str(), "keygate");
        assert_eq!(config.access_tokens.ttl_secs(), 300);
        assert_eq!(
            config.rotation,
            RotationPolicy::new(SigningAlg::EdDsa, 30 * 24 * 3600, 300).unwrap()
        );
        assert_eq!(config.limits, ConnectionLimits::default());
        assert_eq!(
            config.change_log_retention,
            Retention::from_secs(86_400).unwrap()
        );
    }

    #[test]
    fn a_database_url_selects_postgres_and_must_name_it() {
        let config = parse(&[
            "--filter-token",
            FILTER_TOKEN,
            "--database-url",
            "postgres://kg:pw@db:5432/keygate",
        ])
        .unwrap()
        .into_config(None)
        .unwrap();
        assert_eq!(
            config.database,
            Database::Postgres(DatabaseUrl::parse("postgres://kg:pw@db:5432/keygate").unwrap())
        );
        let wrong = parse(&[
            "--filter-token",
            FILTER_TOKEN,
            "--database-url",
            "db.sqlite",
        ])
        .unwrap()
        .into_config(None);
        assert!(matches!(wrong, Err(ConfigError::DatabaseUrl)));
    }

    #[test]
    fn change_log_retention_is_parsed_and_checked_naming_the_flag() {
        let config = parse(&[
            "--filter-token",
            FILTER_TOKEN,
            "--change-log-retention-secs",
            "3600",
        ])
        .unwrap()
        .into_config(None)
        .unwrap();
        assert_eq!(
            config.change_log_retention,
            Retention::from_secs(3600).unwrap()
        );
        for value in ["0", "59", "31536001"] {
            let err = parse(&[
                "--filter-token",
                FILTER_TOKEN,
                "--change-log-retention-secs",
                value,
            ])
            .unwrap()
            .into_config(None)
            .unwrap_err();
            assert!(
                err.to_string().contains("--change-log-retention-secs"),
                "{err}"
            );
        }
    }

    #[test]
    fn connection_limits_are_parsed_and_checked_naming_the_flag() {
        let config = parse(&[
            "--filter-token",
            FILTER_TOKEN,
            "--header-read-timeout-secs",
            "2",
            "--request-body-timeout-secs",
            "3",
            "--max-connections",
            "4",
        ])
        .unwrap()
        .into_config(None)
        .unwrap();
        assert_eq!(
            config.limits,
            ConnectionLimits {
                header_read_timeout: Duration::from_secs(2),
                request_body_timeout: Duration::from_secs(3),
                max_connections: 4,
            }
        );
        for (flag, value) in [
            ("--header-read-timeout-secs", "0"),
            ("--request-body-timeout-secs", "0"),
            ("--request-body-timeout-secs", "3601"),
            ("--max-connections", "0"),
        ] {
            let err = parse(&["--filter-token", FILTER_TOKEN, flag, value])
                .unwrap()
                .into_config(None)
                .unwrap_err();
            assert!(err.to_string().contains(flag), "{flag}: {err}");
        }
    }

    #[test]
    fn token_flags_are_parsed_and_checked_naming_the_flag() {
        let config = parse(&[
            "--filter-token",
            FILTER_TOKEN,
            "--issuer",
            "https://auth.example.com",
            "--token-audience",
            "orders-api",
            "--token-ttl-secs",
            "60",
            "--signing-alg",
            "es256",
        ])
        .unwrap()
        .into_config(None)
        .unwrap();
        assert_eq!(
            config.access_tokens.issuer.as_str(),
            "https://auth.example.com"
        );
        assert_eq!(config.access_tokens.audience.as_str(), "orders-api");
        assert_eq!(config.access_tokens.ttl_secs(), 60);
        assert_eq!(config.rotation.alg, SigningAlg::Es256);
        assert!(parse(&["--filter-token", FILTER_TOKEN, "--signing-alg", "HS256"]).is_err());

        for (flag, value) in [
            ("--issuer", "auth.example.com"),
            ("--token-audience", "two words"),
            ("--token-ttl-secs", "0"),
            ("--signing-key-rotation-secs", "60"),
        ] {
            let err = parse(&["--filter-token", FILTER_TOKEN, flag, value])
                .unwrap()
                .into_config(None)
                .unwrap_err();
            assert!(err.to_string().contains(flag), "{err}");
        }
    }

    #[test]
    fn help_documents_every_environment_variable() {
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "KEYGATE_LISTEN",
            "KEYGATE_DB_PATH",
            "KEYGATE_ADMIN_SECRET",
            "KEYGATE_ADMIN_SECRET_FILE",
            "KEYGATE_FILTER_TOKEN",
            "KEYGATE_METRICS_TOKEN",
            "KEYGATE_DEFAULT_KEY_TTL_SECS",
            "KEYGATE_LOOKUP_CACHE_TTL_SECS",
            "KEYGATE_NEGATIVE_CACHE_TTL_SECS",
            "KEYGATE_ISSUER",
            "KEYGATE_TOKEN_AUDIENCE",
            "KEYGATE_TOKEN_TTL_SECS",
            "KEYGATE_SIGNING_ALG",
            "KEYGATE_SIGNING_KEY_ROTATION_SECS",
            "KEYGATE_HEADER_READ_TIMEOUT_SECS",
            "KEYGATE_REQUEST_BODY_TIMEOUT_SECS",
            "KEYGATE_MAX_CONNECTIONS",
            "KEYGATE_CHANGE_LOG_RETENTION_SECS",
            "KEYGATE_LOG_FORMAT",
            "KEYGATE_LOG",
            "KEYGATE_HIDE_DOCS",
            "KEYGATE_HIDE_CONSOLE",
        ] {
            assert!(help.contains(var), "--help does not mention {var}");
        }
    }

    #[test]
    fn filter_token_is_required_and_checked() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--filter-token", ""]).is_err());
        assert!(parse(&["--filter-token", "has space"]).is_err());
        assert!(parse(&["--filter-token", "has,comma"]).is_err());
    }

    #[test]
    fn metrics_token_is_optional_checked_and_hidden() {
        let off = parse(&["--filter-token", FILTER_TOKEN]).unwrap();
        assert_eq!(off.into_config(None).unwrap().metrics_token, None);
        let on = parse(&[
            "--filter-token",
            FILTER_TOKEN,
            "--metrics-token",
            "scrape-me",
        ])
        .unwrap();
        assert!(!format!("{on:?}").contains("scrape-me"));
        assert_eq!(
            on.into_config(None).unwrap().metrics_token,
            Some(Secret::parse("scrape-me").unwrap())
        );
        for bad in ["", "has space", "has,comma"] {
            assert!(
                parse(&["--filter-token", FILTER_TOKEN, "--metrics-token", bad]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn admin_secret_comes_from_env_or_file_but_not_both() {
        let cli = || parse(&["--filter-token", FILTER_TOKEN]).unwrap();
        let config = cli().into_config(Some("admin-secret".into())).unwrap();
        assert_eq!(
            config.admin_secret,
            Some(Secret::parse("admin-secret").unwrap())
        );
        assert!(matches!(
            cli().into_config(Some("".into())),
            Err(ConfigError::AdminSecret(_))
        ));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin");
        std::fs::write(&file, "from-file\n").unwrap();
        let file = file.to_str().unwrap();
        let with_file =
            || parse(&["--filter-token", FILTER_TOKEN, "--admin-secret-file", file]).unwrap();
        let config = with_file().into_config(None).unwrap();
        assert_eq!(
            config.admin_secret,
            Some(Secret::parse("from-file").unwrap())
        );
        assert!(matches!(
            with_file().into_config(Some("x".into())),
            Err(ConfigError::AdminSecretTwice)
        ));
    }

    #[test]
    fn out_of_range_durations_are_refused_naming_the_flag() {
        let err = parse(&["--filter-token", FILTER_TOKEN, "--default-ttl-secs", "0"])
            .unwrap()
            .into_config(None)
            .unwrap_err();
        assert!(err.to_string().contains("--default-ttl-secs"));
        let err = parse(&[
            "--filter-token",
            FILTER_TOKEN,
            "--negative-cache-ttl-secs",
            "999999",
        ])
        .unwrap()
        .into_config(None)
        .unwrap_err();
        assert!(err.to_string().contains("--negative-cache-ttl-secs"));
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let cli = parse(&["--filter-token", FILTER_TOKEN]).unwrap();
        assert!(!format!("{cli:?}").contains(FILTER_TOKEN));
    }
}
