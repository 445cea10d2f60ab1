//! The filter configuration, in two stages: [`RawConfig`] is exactly the JSON an operator writes
//! (unknown fields rejected, defaults explicit), and [`FilterConfig`] is what the filter runs on,
//! compiled once at configure time. Every error names the field it is about, so a broken config
//! makes Envoy refuse it with a log line an operator can act on.

use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::jwt::{Jwks, PermissionsClaim, ProviderPolicy};
use crate::route::{RawRoute, RouteTable};
use crate::wire;

/// A configuration error. `Display` reads `field.path: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The configuration as written. See the README's configuration reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub key_service: RawKeyService,
    #[serde(default)]
    pub api_keys: RawApiKeys,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub failure_mode: FailureMode,
    #[serde(default)]
    pub forwarding: RawForwarding,
    #[serde(default)]
    pub usage: RawUsage,
    #[serde(default)]
    pub unmatched: Unmatched,
    #[serde(default)]
    pub case_sensitive_paths: bool,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub jwt: RawJwt,
    #[serde(default)]
    pub revocation: RawRevocation,
    /// Per worker: requests paused at once, waiting for a key lookup or a provider's keys.
    #[serde(default = "default_max_waiting_requests")]
    pub max_waiting_requests: usize,
}

/// The key service's revocation feed (`keygate_core::feed`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "default_wait_ms")]
    pub wait_ms: u64,
    #[serde(default = "default_max_stale_secs")]
    pub max_stale_secs: u64,
}

impl Default for RawRevocation {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_ms: default_poll_interval_ms(),
            wait_ms: default_wait_ms(),
            max_stale_secs: default_max_stale_secs(),
        }
    }
}

fn default_poll_interval_ms() -> u64 {
    500
}
fn default_wait_ms() -> u64 {
    5000
}
fn default_max_stale_secs() -> u64 {
    300
}

/// JWT bearer tokens. No providers: tokens are not looked for, and `Authorization` headers that
/// are not API keys pass through untouched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// Verified tokens cached at once (shared by all workers).
    #[serde(default = "default_max_entries")]
    pub cache_max_entries: u64,
}

impl Default for RawJwt {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            cache_max_entries: default_max_entries(),
        }
    }
}

fn default_max_waiting_requests() -> usize {
    4096
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: RawJwksSource,
    /// Claims holding a JSON array of permissions.
    #[serde(default = "default_permissions_claims")]
    pub permissions_claims: Vec<String>,
    /// Claims holding space-separated permissions, like OAuth's `scope`.
    #[serde(default = "default_scope_claims")]
    pub scope_claims: Vec<String>,
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    #[serde(default)]
    pub tenant_claim: Option<String>,
    #[serde(default = "default_clock_skew_secs")]
    pub clock_skew_secs: u64,
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Keep the `Authorization` header on the way upstream.
    #[serde(default)]
    pub forward_token: bool,
}

fn default_permissions_claims() -> Vec<String> {
    vec!["permissions".to_owned()]
}
fn default_scope_claims() -> Vec<String> {
    vec!["scope".to_owned()]
}
fn default_subject_claim() -> String {
    crate::jwt::policy::DEFAULT_SUBJECT_CLAIM.to_owned()
}
fn default_clock_skew_secs() -> u64 {
    crate::jwt::policy::DEFAULT_CLOCK_SKEW_SECS
}
fn default_max_token_bytes() -> usize {
    crate::jwt::policy::DEFAULT_MAX_TOKEN_BYTES
}

/// Where a provider's keys come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawJwksSource {
    /// A JWKS document written into the config. May hold `oct` (HMAC) keys.
    Inline(serde_json::Value),
    /// A JWKS fetched through an Envoy cluster and kept fresh in the background.
    Remote(RawRemoteJwks),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    pub cluster: String,
    pub path: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_jwks_bytes")]
    pub max_bytes: usize,
    /// Shortest time between two fetches caused by unknown `kid`s.
    #[serde(default = "default_min_refetch_secs")]
    pub min_refetch_interval_secs: u64,
}

fn default_refresh_secs() -> u64 {
    300
}
fn default_max_jwks_bytes() -> usize {
    64 * 1024
}
fn default_min_refetch_secs() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyService {
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    pub token: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_lookup_path")]
    pub lookup_path: String,
    #[serde(default = "default_usage_path")]
    pub usage_path: String,
    #[serde(default = "default_max_pending_lookups")]
    pub max_pending_lookups: usize,
    #[serde(default = "default_lookup_batch_path")]
    pub lookup_batch_path: String,
    #[serde(default = "default_unbatched_lookups")]
    pub unbatched_lookups: usize,
}

fn default_timeout_ms() -> u64 {
    1000
}
fn default_lookup_path() -> String {
    wire::LOOKUP_PATH.to_owned()
}
fn default_usage_path() -> String {
    wire::USAGE_PATH.to_owned()
}
fn default_max_pending_lookups() -> usize {
    1024
}
fn default_lookup_batch_path() -> String {
    wire::LOOKUP_BATCH_PATH.to_owned()
}
fn default_unbatched_lookups() -> usize {
    UNBATCHED_LOOKUPS
}

/// Per worker, lookup callouts out at once before new misses are batched: a miss on a quiet
/// worker goes out at once on its own, and under load the misses of one event-loop turn share
/// one callout.
pub const UNBATCHED_LOOKUPS: usize = 2;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    #[serde(default = "default_key_headers")]
    pub headers: Vec<String>,
    #[serde(default = "default_key_query_params")]
    pub query_params: Vec<String>,
    #[serde(default = "default_true")]
    pub bearer: bool,
}

impl Default for RawApiKeys {
    fn default() -> Self {
        Self {
            headers: default_key_headers(),
            query_params: default_key_query_params(),
            bearer: true,
        }
    }
}

fn default_key_headers() -> Vec<String> {
    vec!["x-api-key".to_owned()]
}
fn default_key_query_params() -> Vec<String> {
    vec!["api_key".to_owned()]
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Unset: [`DEFAULT_TTL_SECS`] with the revocation feed on, [`DEFAULT_TTL_SECS_WITHOUT_FEED`]
    /// with it off.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    #[serde(default = "default_negative_ttl_secs")]
    pub negative_ttl_secs: u64,
    /// Answers each worker keeps ready in front of shared data, per cache (keys, tokens).
    #[serde(default = "default_worker_max_entries")]
    pub worker_max_entries: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: default_max_entries(),
            ttl_secs: None,
            negative_ttl_secs: default_negative_ttl_secs(),
            worker_max_entries: default_worker_max_entries(),
        }
    }
}

fn default_worker_max_entries() -> u64 {
    4096
}

fn default_max_entries() -> u64 {
    10_000
}
/// Valid keys' cache lifetime by default while the revocation feed is on: the feed, not the
/// lifetime, bounds how long a revoked key is served, so the lifetime only bounds what the feed
/// does not carry (nothing today) and how long an unused key holds memory.
pub const DEFAULT_TTL_SECS: u64 = 300;
/// With the feed off, the lifetime is how long a revoked key may still be served: the 30 s the
/// key service's `--lookup-cache-ttl-secs` allowed by default before the feed.
pub const DEFAULT_TTL_SECS_WITHOUT_FEED: u64 = 30;
fn default_negative_ttl_secs() -> u64 {
    10
}

/// What to do when the key service cannot answer a lookup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Answer 503. Keys already in the cache keep working until their entry ends.
    #[default]
    Closed,
    /// Let the request through, without identity headers.
    Open,
}

/// What to do with a request that no route rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    #[default]
    Deny,
    /// Treat it as public.
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwarding {
    #[serde(default = "default_header_prefix")]
    pub header_prefix: String,
    #[serde(default = "default_true")]
    pub strip_credentials: bool,
    #[serde(default = "IdentityHeader::all")]
    pub identity_headers: Vec<IdentityHeader>,
}

impl Default for RawForwarding {
    fn default() -> Self {
        Self {
            header_prefix: default_header_prefix(),
            strip_credentials: true,
            identity_headers: IdentityHeader::all(),
        }
    }
}

/// One identity header an allowed request may carry upstream, named by what follows
/// `forwarding.header_prefix`. Each is one header write per allowed request, so an operator
/// whose upstream reads only some of them can send only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityHeader {
    /// `api_key` or `jwt`.
    Auth,
    /// The API key's id.
    KeyId,
    /// The token's `sub`.
    Subject,
    /// The name of the JWT provider that issued the token.
    Provider,
    /// The credential's tenant, when it has one.
    Tenant,
    /// The credential's permissions, comma-separated (always sent when chosen, even empty).
    Permissions,
}

impl IdentityHeader {
    pub fn all() -> Vec<Self> {
        vec![
            Self::Auth,
            Self::KeyId,
            Self::Subject,
            Self::Provider,
            Self::Tenant,
            Self::Permissions,
        ]
    }

    /// The header's name after the prefix.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::KeyId => "key-id",
            Self::Subject => "subject",
            Self::Provider => "provider",
            Self::Tenant => "tenant",
            Self::Permissions => "permissions",
        }
    }
}

fn default_header_prefix() -> String {
    "x-keygate-".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// 0 turns usage reporting off.
    #[serde(default = "default_report_interval_secs")]
    pub report_interval_secs: u64,
}

impl Default for RawUsage {
    fn default() -> Self {
        Self {
            report_interval_secs: default_report_interval_secs(),
        }
    }
}

fn default_report_interval_secs() -> u64 {
    10
}

/// The compiled configuration the filter runs on.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub key_service: KeyServiceConfig,
    pub api_keys: ApiKeySources,
    pub cache: CachePolicy,
    /// Entries each worker keeps in its own cache in front of shared data, for keys and for
    /// tokens alike (`keygate_core::local`); 0 turns the worker caches off.
    pub worker_cache_entries: usize,
    pub failure_mode: FailureMode,
    pub forwarding: Forwarding,
    /// `None` when usage reporting is off.
    pub usage_interval: Option<Duration>,
    pub unmatched: Unmatched,
    pub routes: RouteTable,
    pub jwt: JwtConfig,
    /// The revocation feed; `None` when it is off.
    pub revocation: Option<Revocation>,
    /// Per worker: requests paused at once, waiting for a key lookup or for a JWT provider's
    /// keys. Each holds what it needs to be finished (a token, a rewritten path), so this bounds
    /// what a flood can make the VM hold; past it, a request that would wait answers 503 at once.
    pub max_waiting_requests: usize,
    /// Names this configuration's state in shared data (caches, JWKS, breaker). Shared data
    /// belongs to the `vm_id`, so it outlives a configuration change and is common to every
    /// listener with that `vm_id`: an answer cached under one configuration must not be read
    /// under another, which might have dropped a provider, narrowed `audiences` or point at
    /// another key service.
    pub fingerprint: Fingerprint,
}

/// The first 8 bytes of the SHA-256 of the configuration's JSON bytes, as 16 hex digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    pub fn of(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut out = [0; 8];
        out.copy_from_slice(&digest[..8]);
        Self(out)
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Compiled JWT settings. `providers` empty: JWTs are off.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub providers: Vec<Provider>,
    /// Layout of the verified-token cache (only `max_entries` is used).
    pub cache: CachePolicy,
    /// The largest of the providers' `max_token_bytes`: a longer token is refused before any
    /// work on it, since no provider would take it.
    pub max_token_bytes: usize,
}

impl JwtConfig {
    pub fn enabled(&self) -> bool {
        !self.providers.is_empty()
    }

    /// Refuses a token longer than any provider takes, before any work on it (a token is
    /// parsed to read its `iss` before its provider, and so its own limit, is known).
    pub fn check_token_size(&self, token: &str) -> Result<(), crate::jwt::JwtError> {
        crate::jwt::check_size(token, self.max_token_bytes)
    }

    /// The provider whose issuer is `iss`.
    pub fn provider_for(&self, iss: &str) -> Option<(usize, &Provider)> {
        self.providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.policy.issuer() == iss)
    }
}

/// One identity provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub policy: ProviderPolicy,
    pub keys: KeySource,
    pub forward_token: bool,
}

impl Provider {
    pub fn name(&self) -> &str {
        self.policy.name()
    }

    /// Where its keys are fetched from; `None` for inline keys.
    pub fn remote(&self) -> Option<&RemoteJwks> {
        match &self.keys {
            KeySource::Remote(r) => Some(r),
            KeySource::Inline(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum KeySource {
    Inline(Jwks),
    Remote(RemoteJwks),
}

#[derive(Debug, Clone)]
pub struct RemoteJwks {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub refresh_secs: u64,
    pub timeout: Duration,
    pub max_bytes: usize,
    pub min_refetch_interval_secs: u64,
}

/// How the filter reads the key service's revocation feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Polls start at most this often (a long poll held this long is followed at once).
    pub poll_interval: Duration,
    /// How long the key service may hold a poll open for changes.
    pub wait_ms: u64,
    /// Cached key answers are not served past this since the last good poll.
    pub max_stale_secs: u64,
    /// The poll's callout timeout: `wait_ms` plus `key_service.timeout_ms`, so it always
    /// exceeds the long-poll wait.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct KeyServiceConfig {
    pub cluster: String,
    pub authority: String,
    /// `Authorization` header value for lookups and usage reports: `Bearer <token>`.
    pub authorization: String,
    pub timeout: Duration,
    pub lookup_path: String,
    pub usage_path: String,
    /// Per worker: lookups in flight at once. Past it, new misses answer 503 instead of piling up.
    pub max_pending_lookups: usize,
    /// `POST` path of batch lookups ([`wire::LookupBatchRequest`]).
    pub lookup_batch_path: String,
    /// Per worker: while fewer lookup callouts than this are out, a new miss is looked up at once
    /// on its own; beyond, misses wait for the end of the worker's event-loop turn and go out
    /// together, up to [`wire::MAX_LOOKUP_BATCH`] keys per callout. 0 batches every lookup.
    pub unbatched_lookups: usize,
}

/// Where API keys are looked for. Header names are lowercase, as Envoy presents them.
#[derive(Debug, Clone)]
pub struct ApiKeySources {
    pub headers: Vec<String>,
    pub query_params: Vec<String>,
    pub bearer: bool,
}

/// Cache bounds and lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub max_entries: u64,
    pub ttl_secs: u64,
    pub negative_ttl_secs: u64,
}

#[derive(Debug, Clone)]
pub struct Forwarding {
    /// Lowercase. Client headers starting with it are always removed.
    pub header_prefix: String,
    pub strip_credentials: bool,
    /// The identity headers an allowed request gets, each at most once; client headers under
    /// the prefix are removed whether or not they are chosen here.
    pub identity_headers: Vec<IdentityHeader>,
}

impl Forwarding {
    pub fn sends(&self, header: IdentityHeader) -> bool {
        self.identity_headers.contains(&header)
    }
}

impl FilterConfig {
    /// Parses and compiles the JSON configuration, and fingerprints its bytes. Errors name the
    /// field, e.g. `routes[2].path: must start with '/'` or `cache.max_entries: unknown field`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let path = e.path().to_string();
            // The root is ".", and an unknown member with an empty name is "" (`{"": 1}`).
            let field = if path == "." || path.is_empty() {
                "configuration".to_owned()
            } else {
                path
            };
            ConfigError::new(field, e.into_inner().to_string())
        })?;
        // Whitespace may follow the document; anything else is refused, not ignored.
        de.end()
            .map_err(|e| ConfigError::new("configuration", e.to_string()))?;
        let mut config = Self::try_from(raw)?;
        config.fingerprint = Fingerprint::of(bytes);
        Ok(config)
    }
}

/// Compiles a parsed configuration; its fingerprint is left zero ([`FilterConfig::from_json`]
/// sets it from the bytes).
impl TryFrom<RawConfig> for FilterConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let ks = raw.key_service;
        non_empty("key_service.cluster", &ks.cluster)?;
        non_empty("key_service.token", &ks.token)?;
        if !ks.token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                "key_service.token",
                "must be printable ASCII",
            ));
        }
        if !(1..=60_000).contains(&ks.timeout_ms) {
            return Err(ConfigError::new(
                "key_service.timeout_ms",
                "must be 1 to 60000",
            ));
        }
        for (field, path) in [
            ("key_service.lookup_path", &ks.lookup_path),
            ("key_service.usage_path", &ks.usage_path),
            ("key_service.lookup_batch_path", &ks.lookup_batch_path),
        ] {
            if !path.starts_with('/') || path.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(ConfigError::new(field, "must be an absolute path"));
            }
        }
        if ks.max_pending_lookups == 0 {
            return Err(ConfigError::new(
                "key_service.max_pending_lookups",
                "must be at least 1",
            ));
        }
        if ks.unbatched_lookups > 1_000_000 {
            return Err(ConfigError::new(
                "key_service.unbatched_lookups",
                "must be 0 (batch every lookup) to 1000000",
            ));
        }
        let authority = ks.authority.unwrap_or_else(|| ks.cluster.clone());
        non_empty("key_service.authority", &authority)?;

        let forwarding = compile_forwarding(raw.forwarding)?;
        let api_keys = compile_api_keys(raw.api_keys, &forwarding.header_prefix)?;
        let worker_cache_entries = match usize::try_from(raw.cache.worker_max_entries) {
            Ok(n) if n <= 1_000_000 => n,
            _ => {
                return Err(ConfigError::new(
                    "cache.worker_max_entries",
                    "must be 0 (off) to 1000000",
                ))
            }
        };
        let cache = compile_cache(raw.cache, raw.revocation.enabled)?;
        let routes = RouteTable::compile(&raw.routes, raw.case_sensitive_paths)
            .map_err(|e| ConfigError::new(e.field(), e.message()))?;
        let jwt = compile_jwt(raw.jwt)?;
        let revocation = compile_revocation(&raw.revocation, ks.timeout_ms)?;
        if !(1..=1_000_000).contains(&raw.max_waiting_requests) {
            return Err(ConfigError::new(
                "max_waiting_requests",
                "must be 1 to 1000000",
            ));
        }

        Ok(Self {
            key_service: KeyServiceConfig {
                cluster: ks.cluster,
                authority,
                authorization: format!("Bearer {}", ks.token),
                timeout: Duration::from_millis(ks.timeout_ms),
                lookup_path: ks.lookup_path,
                usage_path: ks.usage_path,
                max_pending_lookups: ks.max_pending_lookups,
                lookup_batch_path: ks.lookup_batch_path,
                unbatched_lookups: ks.unbatched_lookups,
            },
            api_keys,
            cache,
            worker_cache_entries,
            failure_mode: raw.failure_mode,
            forwarding,
            usage_interval: match raw.usage.report_interval_secs {
                0 => None,
                secs if secs <= 3600 => Some(Duration::from_secs(secs)),
                _ => {
                    return Err(ConfigError::new(
                        "usage.report_interval_secs",
                        "must be 0 (off) to 3600",
                    ))
                }
            },
            unmatched: raw.unmatched,
            routes,
            jwt,
            revocation,
            max_waiting_requests: raw.max_waiting_requests,
            fingerprint: Fingerprint::default(),
        })
    }
}

fn non_empty(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    Ok(())
}

/// An HTTP header name token (RFC 9110), lowercase as Envoy presents names.
fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\''
                )
                || matches!(b, b'*' | b'+' | b'^' | b'`' | b'|' | b'~')
        })
}

fn compile_forwarding(raw: RawForwarding) -> Result<Forwarding, ConfigError> {
    let prefix = raw.header_prefix.to_ascii_lowercase();
    if prefix.len() < 3 || !is_header_name(&prefix) {
        return Err(ConfigError::new(
            "forwarding.header_prefix",
            "must be a header-name prefix of at least 3 characters, such as x-keygate-",
        ));
    }
    for (i, header) in raw.identity_headers.iter().enumerate() {
        if raw.identity_headers[..i].contains(header) {
            return Err(ConfigError::new(
                format!("forwarding.identity_headers[{i}]"),
                format!("{} is listed twice", header.suffix()),
            ));
        }
    }
    Ok(Forwarding {
        header_prefix: prefix,
        strip_credentials: raw.strip_credentials,
        identity_headers: raw.identity_headers,
    })
}

fn compile_api_keys(raw: RawApiKeys, prefix: &str) -> Result<ApiKeySources, ConfigError> {
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (i, name) in raw.headers.iter().enumerate() {
        let field = format!("api_keys.headers[{i}]");
        let lower = name.to_ascii_lowercase();
        if !is_header_name(&lower) {
            return Err(ConfigError::new(field, "must be a header name"));
        }
        if lower == "authorization" {
            return Err(ConfigError::new(
                field,
                "use api_keys.bearer for the Authorization header",
            ));
        }
        if lower.starts_with(prefix) {
            return Err(ConfigError::new(
                field,
                "must not start with forwarding.header_prefix",
            ));
        }
        headers.push(lower);
    }
    for (i, name) in raw.query_params.iter().enumerate() {
        if name.is_empty()
            || name
                .bytes()
                .any(|b| !b.is_ascii_graphic() || b"&=#?%+".contains(&b))
        {
            return Err(ConfigError::new(
                format!("api_keys.query_params[{i}]"),
                "must be a plain query parameter name",
            ));
        }
    }
    if headers.is_empty() && raw.query_params.is_empty() && !raw.bearer {
        return Err(ConfigError::new(
            "api_keys",
            "needs at least one of headers, query_params or bearer",
        ));
    }
    Ok(ApiKeySources {
        headers,
        query_params: raw.query_params,
        bearer: raw.bearer,
    })
}

fn compile_jwt(raw: RawJwt) -> Result<JwtConfig, ConfigError> {
    if !(1..=10_000_000).contains(&raw.cache_max_entries) {
        return Err(ConfigError::new(
            "jwt.cache_max_entries",
            "must be 1 to 10000000",
        ));
    }
    let mut providers: Vec<Provider> = Vec::with_capacity(raw.providers.len());
    for (i, p) in raw.providers.into_iter().enumerate() {
        let at = |field: &str| format!("jwt.providers[{i}].{field}");
        let provider = compile_provider(p, &at)?;
        if providers.iter().any(|q| q.name() == provider.name()) {
            return Err(ConfigError::new(at("name"), "is used by another provider"));
        }
        if providers
            .iter()
            .any(|q| q.policy.issuer() == provider.policy.issuer())
        {
            return Err(ConfigError::new(
                at("issuer"),
                "is used by another provider",
            ));
        }
        providers.push(provider);
    }
    let max_token_bytes = providers
        .iter()
        .map(|p| p.policy.max_token_bytes())
        .max()
        .unwrap_or(0);
    Ok(JwtConfig {
        providers,
        cache: CachePolicy {
            max_entries: raw.cache_max_entries,
            ttl_secs: 0,
            negative_ttl_secs: 0,
        },
        max_token_bytes,
    })
}

fn compile_provider(
    raw: RawProvider,
    at: &dyn Fn(&str) -> String,
) -> Result<Provider, ConfigError> {
    let name_ok = (1..=64).contains(&raw.name.len())
        && raw
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(ConfigError::new(
            at("name"),
            "must be 1 to 64 of A-Z a-z 0-9 - _ .",
        ));
    }
    let mut policy =
        ProviderPolicy::new(&raw.name, &raw.issuer, raw.audiences.clone()).map_err(|e| {
            let field = match e {
                crate::jwt::PolicyError::EmptyIssuer => "issuer",
                crate::jwt::PolicyError::EmptyName => "name",
                _ => "audiences",
            };
            ConfigError::new(at(field), e.to_string())
        })?;
    for (i, c) in raw.permissions_claims.iter().enumerate() {
        non_empty(&at(&format!("permissions_claims[{i}]")), c)?;
        policy = policy.with_permissions_claim(PermissionsClaim::Array(c.clone()));
    }
    for (i, c) in raw.scope_claims.iter().enumerate() {
        non_empty(&at(&format!("scope_claims[{i}]")), c)?;
        policy = policy.with_permissions_claim(PermissionsClaim::SpaceSeparated(c.clone()));
    }
    non_empty(&at("subject_claim"), &raw.subject_claim)?;
    policy = policy.with_subject_claim(raw.subject_claim);
    if let Some(tenant) = raw.tenant_claim {
        non_empty(&at("tenant_claim"), &tenant)?;
        policy = policy.with_tenant_claim(tenant);
    }
    if raw.clock_skew_secs > 600 {
        return Err(ConfigError::new(at("clock_skew_secs"), "must be 0 to 600"));
    }
    policy = policy.with_clock_skew_secs(raw.clock_skew_secs);
    if !(256..=65_536).contains(&raw.max_token_bytes) {
        return Err(ConfigError::new(
            at("max_token_bytes"),
            "must be 256 to 65536",
        ));
    }
    policy = policy.with_max_token_bytes(raw.max_token_bytes);

    let keys = match raw.jwks {
        RawJwksSource::Inline(doc) => {
            let field = at("jwks.inline");
            let bytes =
                serde_json::to_vec(&doc).map_err(|e| ConfigError::new(&field, e.to_string()))?;
            let jwks =
                Jwks::parse_local(&bytes).map_err(|e| ConfigError::new(&field, e.to_string()))?;
            if jwks.is_empty() {
                let why: Vec<String> = jwks
                    .skipped()
                    .iter()
                    .map(|k| format!("keys[{}]: {}", k.index, k.reason))
                    .collect();
                return Err(ConfigError::new(
                    field,
                    format!("no usable key ({})", why.join("; ")),
                ));
            }
            KeySource::Inline(jwks)
        }
        RawJwksSource::Remote(r) => {
            non_empty(&at("jwks.remote.cluster"), &r.cluster)?;
            if !r.path.starts_with('/') || r.path.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(ConfigError::new(
                    at("jwks.remote.path"),
                    "must be an absolute path",
                ));
            }
            if !(10..=86_400).contains(&r.refresh_secs) {
                return Err(ConfigError::new(
                    at("jwks.remote.refresh_secs"),
                    "must be 10 to 86400",
                ));
            }
            if !(1..=60_000).contains(&r.timeout_ms) {
                return Err(ConfigError::new(
                    at("jwks.remote.timeout_ms"),
                    "must be 1 to 60000",
                ));
            }
            if !(1024..=1_048_576).contains(&r.max_bytes) {
                return Err(ConfigError::new(
                    at("jwks.remote.max_bytes"),
                    "must be 1024 to 1048576",
                ));
            }
            if r.min_refetch_interval_secs > 3600 {
                return Err(ConfigError::new(
                    at("jwks.remote.min_refetch_interval_secs"),
                    "must be 0 to 3600",
                ));
            }
            let authority = r.authority.unwrap_or_else(|| r.cluster.clone());
            KeySource::Remote(RemoteJwks {
                cluster: r.cluster,
                authority,
                path: r.path,
                refresh_secs: r.refresh_secs,
                timeout: Duration::from_millis(r.timeout_ms),
                max_bytes: r.max_bytes,
                min_refetch_interval_secs: r.min_refetch_interval_secs,
            })
        }
    };
    Ok(Provider {
        policy,
        keys,
        forward_token: raw.forward_token,
    })
}

fn compile_revocation(
    raw: &RawRevocation,
    timeout_ms: u64,
) -> Result<Option<Revocation>, ConfigError> {
    if !raw.enabled {
        return Ok(None);
    }
    if !(50..=60_000).contains(&raw.poll_interval_ms) {
        return Err(ConfigError::new(
            "revocation.poll_interval_ms",
            "must be 50 to 60000",
        ));
    }
    if raw.wait_ms > wire::MAX_CHANGES_WAIT_MS {
        return Err(ConfigError::new(
            "revocation.wait_ms",
            format!("must be 0 (no long poll) to {}", wire::MAX_CHANGES_WAIT_MS),
        ));
    }
    if !(1..=86_400).contains(&raw.max_stale_secs) {
        return Err(ConfigError::new(
            "revocation.max_stale_secs",
            "must be 1 to 86400",
        ));
    }
    let timeout_ms = raw.wait_ms + timeout_ms;
    if raw.max_stale_secs.saturating_mul(1000) <= timeout_ms {
        // A healthy long poll answers only when its wait ends: the bound must outlast one.
        return Err(ConfigError::new(
            "revocation.max_stale_secs",
            "must exceed revocation.wait_ms plus key_service.timeout_ms",
        ));
    }
    Ok(Some(Revocation {
        poll_interval: Duration::from_millis(raw.poll_interval_ms),
        wait_ms: raw.wait_ms,
        max_stale_secs: raw.max_stale_secs,
        timeout: Duration::from_millis(timeout_ms),
    }))
}

fn compile_cache(raw: RawCache, feed: bool) -> Result<CachePolicy, ConfigError> {
    let ttl_secs = raw.ttl_secs.unwrap_or(if feed {
        DEFAULT_TTL_SECS
    } else {
        DEFAULT_TTL_SECS_WITHOUT_FEED
    });
    if !(1..=10_000_000).contains(&raw.max_entries) {
        return Err(ConfigError::new(
            "cache.max_entries",
            "must be 1 to 10000000",
        ));
    }
    if !(1..=86_400).contains(&ttl_secs) {
        return Err(ConfigError::new("cache.ttl_secs", "must be 1 to 86400"));
    }
    if raw.negative_ttl_secs > 3600 {
        return Err(ConfigError::new(
            "cache.negative_ttl_secs",
            "must be 0 (off) to 3600",
        ));
    }
    Ok(CachePolicy {
        max_entries: raw.max_entries,
        ttl_secs,
        negative_ttl_secs: raw.negative_ttl_secs,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"key_service":{"cluster":"ks","token":"t0ken"}}"#;

    fn err(json: &str) -> ConfigError {
        FilterConfig::from_json(json.as_bytes()).expect_err("config should be refused")
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = FilterConfig::from_json(MINIMAL.as_bytes()).unwrap();
        assert_eq!(c.key_service.authority, "ks");
        assert_eq!(c.key_service.authorization, "Bearer t0ken");
        assert_eq!(c.key_service.timeout, Duration::from_millis(1000));
        assert_eq!(c.key_service.lookup_path, "/v1/lookup");
        assert_eq!(c.api_keys.headers, ["x-api-key"]);
        assert_eq!(c.api_keys.query_params, ["api_key"]);
        assert!(c.api_keys.bearer);
        assert_eq!(
            c.cache,
            CachePolicy {
                max_entries: 10_000,
                ttl_secs: DEFAULT_TTL_SECS,
                negative_ttl_secs: 10
            }
        );
        assert_eq!(DEFAULT_TTL_SECS, 300);
        assert_eq!(c.worker_cache_entries, 4096);
        assert_eq!(c.max_waiting_requests, 4096);
        assert_eq!(c.key_service.lookup_batch_path, "/v1/lookups");
        assert_eq!(c.key_service.unbatched_lookups, 2);
        assert_eq!(c.failure_mode, FailureMode::Closed);
        assert_eq!(c.forwarding.header_prefix, "x-keygate-");
        assert!(c.forwarding.strip_credentials);
        assert_eq!(c.usage_interval, Some(Duration::from_secs(10)));
        assert_eq!(c.unmatched, Unmatched::Deny);
    }

    #[test]
    fn text_after_the_configuration_is_refused() {
        // Found by the config fuzz target: a second document after the first (a paste gone
        // wrong) was ignored, and the filter ran on the first alone.
        let e = err(&format!("{MINIMAL}{MINIMAL}"));
        assert_eq!(e.field, "configuration");
        assert!(e.message.contains("trailing characters"), "{e}");
        let e = err(&format!("{MINIMAL} x"));
        assert_eq!(e.field, "configuration");
        assert!(FilterConfig::from_json(format!("{MINIMAL} \n").as_bytes()).is_ok());
    }

    #[test]
    fn an_unknown_field_with_an_empty_name_is_still_placed() {
        // Found by the config fuzz target: `{"": 1}` gave an error whose field was empty.
        let e = err(r#"{"":1,"key_service":{"cluster":"ks","token":"t"}}"#);
        assert_eq!(e.field, "configuration");
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let e = err(r#"{"key_service":{"cluster":"ks","token":"t","timeout":5}}"#);
        assert_eq!(e.field, "key_service.timeout");
        assert!(e.message.contains("unknown field"), "{e}");
        let e = err(r#"{"key_service":{"cluster":"ks","token":"t"},"cahce":{}}"#);
        assert!(e.to_string().contains("cahce"), "{e}");
    }

    #[test]
    fn missing_required_field_is_named() {
        let e = err(r#"{"key_service":{"cluster":"ks"}}"#);
        assert!(e.to_string().contains("token"), "{e}");
        let e = err("{}");
        assert!(e.to_string().contains("key_service"), "{e}");
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let e = err(r#"{"key_service":{"cluster":"ks","token":"t"},"cache":{"ttl_secs":"60"}}"#);
        assert_eq!(e.field, "cache.ttl_secs");
    }

    #[test]
    fn lookup_batching_settings_are_checked_by_field() {
        let with =
            |extra: &str| format!(r#"{{"key_service":{{"cluster":"ks","token":"t",{extra}}}}}"#);
        let c = FilterConfig::from_json(with(r#""unbatched_lookups":0"#).as_bytes()).unwrap();
        assert_eq!(c.key_service.unbatched_lookups, 0, "0 batches every lookup");
        let e = err(&with(r#""unbatched_lookups":1000001"#));
        assert_eq!(e.field, "key_service.unbatched_lookups");
        let e = err(&with(r#""lookup_batch_path":"v1/lookups""#));
        assert_eq!(e.field, "key_service.lookup_batch_path");
    }

    #[test]
    fn out_of_range_values_are_refused_by_field() {
        let cases = [
            (r#""cache":{"max_entries":0}"#, "cache.max_entries"),
            (r#""cache":{"ttl_secs":0}"#, "cache.ttl_secs"),
            (r#""max_waiting_requests":0"#, "max_waiting_requests"),
            (r#""max_waiting_requests":1000001"#, "max_waiting_requests"),
            (
                r#""cache":{"worker_max_entries":1000001}"#,
                "cache.worker_max_entries",
            ),
            (
                r#""api_keys":{"headers":["bad header"]}"#,
                "api_keys.headers[0]",
            ),
            (
                r#""api_keys":{"headers":["authorization"]}"#,
                "api_keys.headers[0]",
            ),
            (
                r#""api_keys":{"headers":["x-keygate-key"]}"#,
                "api_keys.headers[0]",
            ),
            (
                r#""api_keys":{"query_params":["a&b"]}"#,
                "api_keys.query_params[0]",
            ),
            (
                r#""api_keys":{"headers":[],"query_params":[],"bearer":false}"#,
                "api_keys",
            ),
            (
                r#""forwarding":{"identity_headers":["key-id","email"]}"#,
                "forwarding.identity_headers[1]",
            ),
            (
                r#""forwarding":{"identity_headers":["tenant","key-id","tenant"]}"#,
                "forwarding.identity_headers[2]",
            ),
            (
                r#""forwarding":{"header_prefix":"x"}"#,
                "forwarding.header_prefix",
            ),
            (r#""failure_mode":"maybe""#, "failure_mode"),
            (
                r#""usage":{"report_interval_secs":99999}"#,
                "usage.report_interval_secs",
            ),
        ];
        for (extra, field) in cases {
            let json = format!(r#"{{"key_service":{{"cluster":"ks","token":"t"}},{extra}}}"#);
            assert_eq!(err(&json).field, field, "{json}");
        }
        let e = err(r#"{"key_service":{"cluster":"ks","token":"t","timeout_ms":0}}"#);
        assert_eq!(e.field, "key_service.timeout_ms");
    }

    #[test]
    fn route_errors_name_the_rule() {
        let e = err(
            r#"{"key_service":{"cluster":"ks","token":"t"},"routes":[{"path":"/ok","public":true},{"path":"nope","public":true}]}"#,
        );
        assert!(e.field.starts_with("routes[1]"), "{e}");
    }

    const HS_JWKS: &str = r#"{"keys":[{"kty":"oct","alg":"HS256","kid":"k1","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0"}]}"#;

    fn with_provider(provider: &str) -> Result<FilterConfig, ConfigError> {
        let json = format!(
            r#"{{"key_service":{{"cluster":"ks","token":"t"}},"jwt":{{"providers":[{provider}]}}}}"#
        );
        FilterConfig::from_json(json.as_bytes())
    }

    #[test]
    fn jwt_providers_compile_with_defaults() {
        let inline = format!(
            r#"{{"name":"local","issuer":"https://a","audiences":["api"],"jwks":{{"inline":{HS_JWKS}}}}}"#
        );
        let remote = r#"{"name":"idp","issuer":"https://b","audiences":["api"],"jwks":{"remote":{"cluster":"idp","path":"/jwks"}}}"#;
        let c = with_provider(&format!("{inline},{remote}")).unwrap();
        assert!(c.jwt.enabled());
        assert_eq!(c.jwt.providers.len(), 2);
        assert_eq!(c.jwt.provider_for("https://b").map(|(i, _)| i), Some(1));
        assert_eq!(c.jwt.providers[1].policy.clock_skew_secs(), 60);
        let KeySource::Remote(r) = &c.jwt.providers[1].keys else {
            panic!()
        };
        assert_eq!((r.refresh_secs, r.authority.as_str()), (300, "idp"));
        assert!(!c.jwt.providers[0].forward_token);
        assert_eq!(c.jwt.max_token_bytes, 8192);
        assert!(!FilterConfig::from_json(MINIMAL.as_bytes())
            .unwrap()
            .jwt
            .enabled());
    }

    #[test]
    fn the_longest_token_any_provider_takes_is_the_largest_limit() {
        let provider = |name: &str, max: usize| {
            format!(
                r#"{{"name":"{name}","issuer":"https://{name}","audiences":["api"],"max_token_bytes":{max},"jwks":{{"inline":{HS_JWKS}}}}}"#
            )
        };
        let c =
            with_provider(&format!("{},{}", provider("a", 300), provider("b", 20_000))).unwrap();
        assert_eq!(c.jwt.max_token_bytes, 20_000);
        let none = FilterConfig::from_json(MINIMAL.as_bytes()).unwrap();
        assert_eq!(none.jwt.max_token_bytes, 0);
    }

    #[test]
    fn the_fingerprint_is_of_the_bytes() {
        let a = FilterConfig::from_json(MINIMAL.as_bytes()).unwrap();
        let same = FilterConfig::from_json(MINIMAL.as_bytes()).unwrap();
        let spaced = format!("{MINIMAL} ");
        let b = FilterConfig::from_json(spaced.as_bytes()).unwrap();
        assert_eq!(a.fingerprint, same.fingerprint);
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.to_string().len(), 16);
    }

    #[test]
    fn jwt_provider_errors_name_the_field() {
        let cases = [
            (
                r#"{"name":"a","issuer":"","audiences":["x"],"jwks":{"remote":{"cluster":"c","path":"/j"}}}"#,
                "jwt.providers[0].issuer",
            ),
            (
                r#"{"name":"a","issuer":"i","audiences":[],"jwks":{"remote":{"cluster":"c","path":"/j"}}}"#,
                "jwt.providers[0].audiences",
            ),
            (
                r#"{"name":"a b","issuer":"i","audiences":["x"],"jwks":{"remote":{"cluster":"c","path":"/j"}}}"#,
                "jwt.providers[0].name",
            ),
            (
                r#"{"name":"a","issuer":"i","audiences":["x"],"jwks":{"remote":{"cluster":"c","path":"j"}}}"#,
                "jwt.providers[0].jwks.remote.path",
            ),
            (
                r#"{"name":"a","issuer":"i","audiences":["x"],"jwks":{"inline":{"keys":[]}}}"#,
                "jwt.providers[0].jwks.inline",
            ),
            (
                r#"{"name":"a","issuer":"i","audiences":["x"],"jwks":{"inline":{"nokeys":1}}}"#,
                "jwt.providers[0].jwks.inline",
            ),
            (
                r#"{"name":"a","issuer":"i","audiences":["x"],"jwks":{"remote":{"cluster":"c","path":"/j","bogus":1}}}"#,
                "jwt.providers[0].jwks.remote.bogus",
            ),
            (
                r#"{"name":"a","issuer":"i","audiences":["x"],"jwks":{"remote":{"cluster":"c","path":"/j"}},"clock_skew_secs":9999}"#,
                "jwt.providers[0].clock_skew_secs",
            ),
            (
                r#"{"name":"a","issuer":"i","audiences":["x"],"jwks":{"file":"x"}}"#,
                "jwt.providers[0].jwks",
            ),
        ];
        for (provider, field) in cases {
            let e = with_provider(provider).expect_err(provider);
            assert_eq!(e.field, field, "{e}");
        }
        let dup = r#"{"name":"a","issuer":"i","audiences":["x"],"jwks":{"remote":{"cluster":"c","path":"/j"}}}"#;
        let e = with_provider(&format!("{dup},{dup}")).unwrap_err();
        assert_eq!(e.field, "jwt.providers[1].name");
    }

    #[test]
    fn not_json_is_refused() {
        assert!(!err("not json").to_string().is_empty());
        assert!(!err("").to_string().is_empty());
    }

    #[test]
    fn revocation_feed_is_on_by_default_and_its_timeout_exceeds_the_wait() {
        let c = FilterConfig::from_json(MINIMAL.as_bytes()).unwrap();
        let r = c.revocation.unwrap();
        assert_eq!(r.poll_interval, Duration::from_millis(500));
        assert_eq!(r.wait_ms, 5000);
        assert_eq!(r.max_stale_secs, 300);
        assert_eq!(r.timeout, Duration::from_millis(5000 + 1000));
    }

    #[test]
    fn revocation_feed_can_be_turned_off() {
        let c = FilterConfig::from_json(
            br#"{"key_service":{"cluster":"ks","token":"t"},"revocation":{"enabled":false}}"#,
        )
        .unwrap();
        assert!(c.revocation.is_none());
    }

    #[test]
    fn valid_keys_are_cached_for_minutes_only_while_the_feed_is_on() {
        let ttl = |json: &str| {
            FilterConfig::from_json(json.as_bytes())
                .unwrap()
                .cache
                .ttl_secs
        };
        let off = r#"{"key_service":{"cluster":"ks","token":"t"},"revocation":{"enabled":false}"#;
        assert_eq!(ttl(MINIMAL), DEFAULT_TTL_SECS);
        assert_eq!(ttl(&format!("{off}}}")), DEFAULT_TTL_SECS_WITHOUT_FEED);
        assert_eq!(DEFAULT_TTL_SECS_WITHOUT_FEED, 30);
        // A lifetime written out is kept, feed or not.
        assert_eq!(ttl(&format!(r#"{off},"cache":{{"ttl_secs":600}}}}"#)), 600);
        assert_eq!(
            ttl(r#"{"key_service":{"cluster":"ks","token":"t"},"cache":{"ttl_secs":7}}"#),
            7
        );
    }

    #[test]
    fn revocation_errors_name_the_field() {
        for (body, field) in [
            (r#"{"poll_interval_ms":10}"#, "revocation.poll_interval_ms"),
            (r#"{"wait_ms":25001}"#, "revocation.wait_ms"),
            (r#"{"max_stale_secs":0}"#, "revocation.max_stale_secs"),
            (
                r#"{"wait_ms":5000,"max_stale_secs":6}"#,
                "revocation.max_stale_secs",
            ),
            (r#"{"interval":1}"#, "revocation.interval"),
        ] {
            let json =
                format!(r#"{{"key_service":{{"cluster":"ks","token":"t"}},"revocation":{body}}}"#);
            assert_eq!(err(&json).field, field, "{body}");
        }
    }
}
