//! State one worker's VM shares between its root context and its request contexts: the compiled
//! config, metric ids, the caches, lookups in flight, requests waiting for JWT keys, and usage
//! counts.
//!
//! Envoy runs one VM per worker thread, so this is per worker; the caches of record live in
//! shared data, common to all workers, and each worker keeps the outcomes it used recently ready
//! in front of them (`keygate_core::local`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{Hash, RandomState};
use std::rc::Rc;

use keygate_core::breaker;
use keygate_core::cache::{self, CacheLayout, Entry, KeysDigest};
use keygate_core::config::{FilterConfig, KeySource, Provider};
use keygate_core::decision::Outcome;
use keygate_core::feed::Seen;
use keygate_core::jwks::ParkedTokens;
use keygate_core::jwt::Jwks;
use keygate_core::key::KeyHash;
use keygate_core::local::{LocalCache, RejectedTokens, Tagger, TokenTag};
use keygate_core::lookups::Lookups;
use keygate_core::usage::UsageBook;

use crate::host;
use crate::metrics::Metrics;
use crate::shared;

pub struct Worker {
    pub config: FilterConfig,
    /// The API key lookup cache, kept in the worker under each key's hash.
    pub keys: Cache<KeyHash>,
    /// The verified-token cache, kept in the worker under each token's tag.
    pub tokens: Cache<TokenTag>,
    pub tagger: Tagger,
    /// Tokens refused here after their signature was checked (forged ones first of all),
    /// refused again the same way without verifying; emptied whenever the keys change.
    pub rejected: RefCell<RejectedTokens>,
    pub metrics: Metrics,
    /// Per JWT provider, in config order: this worker's copy of its keys.
    pub providers: Vec<ProviderKeys>,
    /// Requests waiting for a provider's keys.
    pub parked: RefCell<ParkedTokens>,
    /// Key lookups in flight from this worker.
    pub lookups: RefCell<Lookups>,
    /// This worker's shared queue, whose root context sends batched lookups when woken through
    /// it (`None`: the host refused it, and every lookup goes out on its own).
    pub batch_queue: Option<u32>,
    /// Shared-data key of the key service's circuit breaker.
    pub breaker_key: String,
    pub usage: RefCell<UsageBook>,
    /// This worker's view of the revocation feed.
    pub feed: FeedView,
    /// Unix seconds as the root context last read them (see [`Worker::now`]); 0 before the
    /// first read.
    clock: Cell<u64>,
}

/// What this worker knows of the revocation feed (`keygate_core::feed`).
pub struct FeedView {
    /// The feed record's epoch and generation this worker's key cache is in step with.
    pub seen: Cell<Option<Seen>>,
    /// The callout token of this worker's poll in flight.
    pub poll_in_flight: Cell<Option<u32>>,
    /// Whether cached key answers may be served (the stale-if-error bound), as of the last tick.
    pub serve_cached: Cell<bool>,
    /// Per key lookup in flight: the feed's state this worker had acted on when it was first
    /// sent, to tell whether its answer may be cached.
    pub lookups_seen: RefCell<HashMap<KeyHash, Seen>>,
}

/// One cache: its table in shared data, and this worker's prepared outcomes in front of it.
pub struct Cache<K> {
    layout: RefCell<CacheLayout>,
    local: RefCell<LocalCache<K>>,
}

impl<K: Eq + Hash + Copy> Cache<K> {
    fn new(layout: CacheLayout, worker_entries: usize) -> Self {
        Self {
            layout: RefCell::new(layout),
            local: RefCell::new(LocalCache::new(worker_entries)),
        }
    }

    /// This worker's fresh outcome for `key`, if it has one.
    pub fn local(&self, key: &K, now: u64) -> Option<Outcome> {
        self.local.borrow().get(key, now).cloned()
    }

    /// Forgets this worker's copy for `key`.
    pub fn forget(&self, key: &K) {
        self.local.borrow_mut().remove(key);
    }

    /// Forgets every copy this worker holds.
    pub fn forget_all(&self) {
        self.local.borrow_mut().clear();
    }

    /// The shared-data key of the bucket that holds `hash`.
    pub fn bucket_key(&self, hash: &KeyHash) -> String {
        self.layout.borrow().bucket_key(hash)
    }

    /// Moves the cache to another shared table, forgetting this worker's copies, which were
    /// made under the old one.
    pub fn relayout(&self, layout: CacheLayout) {
        if *self.layout.borrow() != layout {
            *self.layout.borrow_mut() = layout;
            self.local.borrow_mut().clear();
        }
    }
}

/// One provider's keys as this worker last saw them.
pub struct ProviderKeys {
    pub keys: RefCell<Option<Rc<Jwks>>>,
    /// The JWKS document those keys came from, for a remote provider.
    pub document: RefCell<Option<Vec<u8>>>,
    /// The shared schedule's generation those keys came from.
    pub generation: Cell<Option<u32>>,
    /// The callout token of this worker's fetch in flight.
    pub fetch_in_flight: Cell<Option<u32>>,
}

impl ProviderKeys {
    fn new(provider: &Provider) -> Self {
        let keys = match &provider.keys {
            KeySource::Inline(jwks) => Some(Rc::new(jwks.clone())),
            KeySource::Remote(_) => None,
        };
        Self {
            keys: RefCell::new(keys),
            document: RefCell::new(None),
            generation: Cell::new(None),
            fetch_in_flight: Cell::new(None),
        }
    }
}

impl Worker {
    pub fn new(config: FilterConfig, metrics: Metrics, batch_queue: Option<u32>) -> Self {
        let providers: Vec<ProviderKeys> =
            config.jwt.providers.iter().map(ProviderKeys::new).collect();
        let fingerprint = config.fingerprint;
        Self {
            keys: Cache::new(
                CacheLayout::keys(&config.cache, fingerprint, 0),
                config.worker_cache_entries,
            ),
            tokens: Cache::new(
                CacheLayout::tokens(&config.jwt.cache, fingerprint, KeysDigest::default()),
                config.worker_cache_entries,
            ),
            // std seeds each RandomState from the host's randomness (WASI random_get).
            tagger: Tagger::new(RandomState::new(), RandomState::new()),
            rejected: RefCell::new(RejectedTokens::new(config.worker_cache_entries)),
            providers,
            parked: RefCell::new(ParkedTokens::default()),
            lookups: RefCell::new(Lookups::new(
                config.key_service.max_pending_lookups,
                match batch_queue {
                    Some(_) => config.key_service.unbatched_lookups,
                    None => usize::MAX,
                },
                config.key_service.timeout.as_secs(),
            )),
            batch_queue,
            breaker_key: breaker::breaker_key(fingerprint),
            config,
            metrics,
            usage: RefCell::new(UsageBook::default()),
            feed: FeedView {
                seen: Cell::new(None),
                poll_in_flight: Cell::new(None),
                serve_cached: Cell::new(true),
                lookups_seen: RefCell::new(HashMap::new()),
            },
            clock: Cell::new(0),
        }
    }

    /// Records the wall clock, in unix seconds, as the root context read it: on configure and
    /// at the start of every tick.
    pub fn set_clock(&self, now: u64) {
        self.clock.set(now);
    }

    /// Reads the host's clock, and keeps it for [`Worker::now`]: for the paths that cost a
    /// callout or a verification anyway, and want the time now.
    pub fn read_clock(&self) -> host::HostResult<u64> {
        let now = host::now_secs()?;
        self.clock.set(now);
        Ok(now)
    }

    /// The time a request's cache and expiry decisions use: the clock as of the last tick, so
    /// a cache hit makes no clock read of its own (one host call fewer per request).
    ///
    /// Why that is safe: every expiry in the filter is counted in whole seconds, so decisions
    /// already trail the real time by up to 1 s; this adds at most one tick period (1 s, 250 ms
    /// with the revocation feed, 200 ms with a remote JWKS), since the tick runs on this
    /// worker's own thread between its requests. What the lag can do is serve a cached answer
    /// up to that long past its end:
    /// - a key's answer ends at the earlier of its TTL and the key's `expires_at`; a key may
    ///   work for under one more tick past its expiry (the key service's own clock and the
    ///   network already blur that instant by as much);
    /// - a verified token's entry ends at its `exp`, while a verification accepts it up to
    ///   `clock_skew_secs` (60 s by default) past `exp`, so the lag stays far inside what
    ///   verification allows anyway (and verification itself reads the clock afresh);
    /// - revocation does not wait for clocks: the feed drops changed keys on the tick.
    ///
    /// Misses and verifications read the clock afresh ([`Worker::read_clock`]). Before the
    /// first tick (or if the clock could not be read then) this reads the host's clock.
    pub fn now(&self) -> host::HostResult<u64> {
        match self.clock.get() {
            0 => self.read_clock(),
            now => Ok(now),
        }
    }

    /// The digest of the remote JWKS documents this worker now verifies tokens with.
    pub fn keys_digest(&self) -> KeysDigest {
        let documents: Vec<Option<Vec<u8>>> = self
            .config
            .jwt
            .providers
            .iter()
            .zip(&self.providers)
            .filter(|(p, _)| p.remote().is_some())
            .map(|(_, state)| state.document.borrow().clone())
            .collect();
        KeysDigest::of(documents.iter().map(Option::as_deref))
    }

    /// `POST`s a JSON body to the key service at `path`, with the filter's token. The answer
    /// arrives in `on_http_call_response` of the calling context.
    /// Tells the root context that lookups wait for a batch; it sends them once this event-loop
    /// turn's other ready events have run. If the host refuses, the next tick sends them.
    pub fn wake_batch_sender(&self) {
        if let Some(queue) = self.batch_queue {
            if let Err(e) = host::enqueue(queue, &[]) {
                log::warn!("batched lookups wait for the next tick: {e}");
            }
        }
    }

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

    /// Whether one more request may pause here, waiting for a key lookup or for a JWT
    /// provider's keys: `max_waiting_requests` bounds both together.
    pub fn room_to_wait(&self) -> bool {
        let waiting = self.lookups.borrow().waiting() + self.parked.borrow().len();
        waiting < self.config.max_waiting_requests
    }

    /// `GET`s `path` from the key service with the filter's token, with callout `timeout`.
    pub fn get_from_key_service(
        &self,
        path: &str,
        timeout: std::time::Duration,
    ) -> host::HostResult<u32> {
        let ks = &self.config.key_service;
        host::dispatch_http_call(
            &ks.cluster,
            vec![
                (":method", "GET"),
                (":path", path),
                (":authority", &ks.authority),
                ("authorization", &ks.authorization),
            ],
            &[],
            timeout,
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
        let bucket = cache.layout.borrow().bucket_key(hash);
        let entry = match host::shared_get(&bucket) {
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
    /// for the other workers. Best effort: a lost write costs one more lookup later.
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
        let bucket = cache.layout.borrow().bucket_key(&entry.hash);
        shared::update(&bucket, |current| cache::insert(current, entry, now));
    }
}
