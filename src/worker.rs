//! State one worker's VM shares between its root context and its request contexts: the compiled
//! config, metric ids, lookups in flight (to coalesce misses), and usage counts.
//!
//! Envoy runs one VM per worker thread, so this is per worker; the caches of record live in
//! shared data, common to all workers, and each worker keeps the outcomes it used recently ready
//! in front of them (`keygate_core::local`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, RandomState};

use keygate_core::cache::{self, CacheLayout, Entry};
use keygate_core::config::FilterConfig;
use keygate_core::credential::Strip;
use keygate_core::decision::Outcome;
use keygate_core::key::KeyHash;
use keygate_core::local::{LocalCache, Tagger, TokenTag};
use keygate_core::route::Permission;
use keygate_core::usage::UsageBook;

use crate::host;
use crate::jwt::{JwtWaiter, ProviderState};
use crate::metrics::Metrics;

/// How often a CAS write to a cache bucket is retried when another worker wrote in between.
const CAS_ATTEMPTS: usize = 3;

pub struct Worker {
    pub config: FilterConfig,
    /// The API key lookup cache, kept in the worker under each key's hash.
    pub keys: Cache<KeyHash>,
    /// The verified-token cache, kept in the worker under each token's tag.
    pub tokens: Cache<TokenTag>,
    pub tagger: Tagger,
    pub metrics: Metrics,
    /// Per JWT provider, in config order: this worker's copy of its keys.
    pub providers: Vec<ProviderState>,
    /// Requests waiting for a provider's keys.
    pub jwt_waiters: RefCell<Vec<JwtWaiter>>,
    /// Lookups in flight from this worker, by key hash.
    pub pending: RefCell<HashMap<KeyHash, Pending>>,
    pub usage: RefCell<UsageBook>,
}

/// One cache: its table in shared data, and this worker's prepared outcomes in front of it.
pub struct Cache<K> {
    layout: CacheLayout,
    local: RefCell<LocalCache<K>>,
}

impl<K: Eq + Hash + Copy> Cache<K> {
    fn new(layout: CacheLayout, worker_entries: usize) -> Self {
        Self {
            layout,
            local: RefCell::new(LocalCache::new(worker_entries)),
        }
    }

    /// This worker's fresh outcome for `key`, if it has one.
    pub fn local(&self, key: &K, now: u64) -> Option<Outcome> {
        self.local.borrow().get(key, now).cloned()
    }
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
            keys: Cache::new(
                CacheLayout::keys(&config.cache),
                config.worker_cache_entries,
            ),
            tokens: Cache::new(
                CacheLayout::tokens(&config.jwt.cache),
                config.worker_cache_entries,
            ),
            // std seeds each RandomState from the host's randomness (WASI random_get).
            tagger: Tagger::new(RandomState::new(), RandomState::new()),
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

    /// Shared data's fresh outcome for `hash`, if it has one; then kept in this worker under
    /// `key` until the shared entry's end. A host failure is a miss.
    pub fn cache_shared<K: Eq + Hash + Copy>(
        &self,
        cache: &Cache<K>,
        key: K,
        hash: &KeyHash,
        now: u64,
    ) -> Option<Outcome> {
        let entry = match host::shared_get(&cache.layout.bucket_key(hash)) {
            Ok((Some(bytes), _)) => cache::find_entry(&bytes, hash, now)?,
            Ok((None, _)) => return None,
            Err(e) => {
                log::warn!("cache read: {e}");
                return None;
            }
        };
        let outcome = Outcome::prepare(&self.config, entry.answer);
        cache
            .local
            .borrow_mut()
            .put(key, entry.fresh_until, outcome.clone(), now);
        Some(outcome)
    }

    /// Caches `outcome`, the prepared answer of `entry`: here under `key`, and in shared data
    /// for the other workers.
    pub fn cache_put<K: Eq + Hash + Copy>(
        &self,
        cache: &Cache<K>,
        key: K,
        entry: &Entry,
        outcome: &Outcome,
        now: u64,
    ) {
        cache
            .local
            .borrow_mut()
            .put(key, entry.fresh_until, outcome.clone(), now);
        self.shared_put(&cache.layout, entry, now);
    }

    /// Stores an entry in shared data, retrying when another worker wrote the bucket in between.
    /// Best effort: a lost write costs one more lookup later, nothing else.
    fn shared_put(&self, layout: &CacheLayout, entry: &Entry, now: u64) {
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
                Err(e) if e.is_cas_mismatch() => continue,
                Err(e) => {
                    log::warn!("cache write: {e}");
                    return;
                }
            }
        }
    }
}
