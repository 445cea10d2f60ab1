//! State one worker's VM shares between its root context and its request contexts: the compiled
//! config, metric ids, lookups in flight (to coalesce misses), and usage counts.
//!
//! Envoy runs one VM per worker thread, so this is per worker; the key cache itself lives in
//! shared data, common to all workers.

use std::cell::RefCell;
use std::collections::HashMap;

use keygate_core::cache::{self, Answer, CacheLayout, Entry};
use keygate_core::config::FilterConfig;
use keygate_core::credential::Strip;
use keygate_core::key::KeyHash;
use keygate_core::route::Permission;
use keygate_core::usage::UsageBook;
use proxy_wasm::types::Status;

use crate::host;
use crate::jwt::{JwtWaiter, ProviderState};
use crate::metrics::Metrics;

/// How often a CAS write to a cache bucket is retried when another worker wrote in between.
const CAS_ATTEMPTS: usize = 3;

pub struct Worker {
    pub config: FilterConfig,
    /// The API key lookup cache.
    pub key_layout: CacheLayout,
    /// The verified-token cache.
    pub token_layout: CacheLayout,
    pub metrics: Metrics,
    /// Per JWT provider, in config order: this worker's copy of its keys.
    pub providers: Vec<ProviderState>,
    /// Requests waiting for a provider's keys.
    pub jwt_waiters: RefCell<Vec<JwtWaiter>>,
    /// Lookups in flight from this worker, by key hash.
    pub pending: RefCell<HashMap<KeyHash, Pending>>,
    pub usage: RefCell<UsageBook>,
}

/// A lookup in flight. The request that dispatched it finishes the `waiters` when it answers.
pub struct Pending {
    /// Unix seconds when the callout was sent.
    pub started: u64,
    pub waiters: Vec<Waiter>,
}

/// A paused request waiting on another request's lookup of the same key.
pub struct Waiter {
    pub context_id: u32,
    pub required: Vec<Permission>,
    pub strip: Strip,
}

impl Worker {
    pub fn new(config: FilterConfig, metrics: Metrics) -> Self {
        Self {
            key_layout: CacheLayout::keys(&config.cache),
            token_layout: CacheLayout::tokens(&config.jwt.cache),
            providers: config
                .jwt
                .providers
                .iter()
                .map(ProviderState::new)
                .collect(),
            jwt_waiters: RefCell::new(Vec::new()),
            config,
            metrics,
            pending: RefCell::new(HashMap::new()),
            usage: RefCell::new(UsageBook::default()),
        }
    }

    /// `POST`s a JSON body to the key service at `path`, with the filter's token. The answer
    /// arrives in `on_http_call_response` of the calling context.
    pub fn post_to_key_service(&self, path: &str, body: &[u8]) -> host::HostResult<u32> {
        let ks = &self.config.key_service;
        host::dispatch_http_call(
            &ks.cluster,
            vec![
                (":method", "POST"),
                (":path", path),
                (":authority", &ks.authority),
                ("content-type", "application/json"),
                ("authorization", &ks.authorization),
            ],
            body,
            ks.timeout,
        )
    }

    /// The cached answer for `hash`, if one is fresh. A host failure is a miss.
    pub fn cache_get(&self, layout: &CacheLayout, hash: &KeyHash, now: u64) -> Option<Answer> {
        match host::shared_get(&layout.bucket_key(hash)) {
            Ok((Some(bytes), _)) => cache::find(&bytes, hash, now),
            Ok((None, _)) => None,
            Err(e) => {
                log::warn!("cache read: {e}");
                None
            }
        }
    }

    /// Stores an entry, retrying when another worker wrote the bucket in between. Best effort: a
    /// lost write costs one more lookup later, nothing else.
    pub fn cache_put(&self, layout: &CacheLayout, entry: &Entry, now: u64) {
        let key = layout.bucket_key(&entry.hash);
        for _ in 0..CAS_ATTEMPTS {
            let (current, cas) = match host::shared_get(&key) {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("cache read: {e}");
                    return;
                }
            };
            let Some(bytes) = cache::insert(current.as_deref(), entry, now) else {
                return;
            };
            match host::shared_set(&key, &bytes, cas) {
                Ok(()) => return,
                Err(e) if e.status == Status::CasMismatch => continue,
                Err(e) => {
                    log::warn!("cache write: {e}");
                    return;
                }
            }
        }
    }
}
