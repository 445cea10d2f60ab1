//! JWT glue: each worker's copy of every provider's keys, kept in step with the shared JWKS that
//! one worker at a time fetches (the schedule is in `keygate_core::jwks`), and the requests parked
//! until keys arrive.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use keygate_core::cache::{Answer, Entry};
use keygate_core::config::{KeySource, Provider, RemoteJwks};
use keygate_core::credential::Strip;
use keygate_core::decision::{self, Denial, DenyReason, Outcome, Verdict};
use keygate_core::jwks::{self, FetchSchedule};
use keygate_core::jwt::{self, Jwks, JwtError, VerifiedToken};
use keygate_core::key::KeyHash;
use keygate_core::local::TokenTag;
use keygate_core::route::Permission;

use crate::host::{self, HostResult};
use crate::http;
use crate::worker::Worker;

const CAS_ATTEMPTS: usize = 3;

/// One provider's keys as this worker last saw them.
pub struct ProviderState {
    keys: RefCell<Option<Rc<Jwks>>>,
    /// The shared schedule's generation those keys came from.
    generation: Cell<Option<u32>>,
    /// The callout token of this worker's fetch in flight.
    pub fetch_in_flight: Cell<Option<u32>>,
}

impl ProviderState {
    pub fn new(provider: &Provider) -> Self {
        let keys = match &provider.keys {
            KeySource::Inline(jwks) => Some(Rc::new(jwks.clone())),
            KeySource::Remote(_) => None,
        };
        Self {
            keys: RefCell::new(keys),
            generation: Cell::new(None),
            fetch_in_flight: Cell::new(None),
        }
    }
}

/// A request waiting for a provider's keys: the first fetch, or a refetch for an unknown `kid`.
pub struct JwtWaiter {
    pub context_id: u32,
    pub provider: usize,
    pub token: String,
    pub hash: KeyHash,
    pub tag: TokenTag,
    pub required: Vec<Permission>,
    pub strip: Strip,
    /// Unix seconds after which it is answered with what there is.
    pub deadline: u64,
    /// The key generation it was parked on; new keys make it try again.
    pub seen_generation: Option<u32>,
}

/// The outcome of verifying a token with what this worker has.
pub enum JwtCheck {
    Verified(VerifiedToken),
    Rejected(JwtError),
    /// A remote provider whose keys have not arrived yet.
    NoKeys,
}

fn remote(provider: &Provider) -> Option<&RemoteJwks> {
    match &provider.keys {
        KeySource::Remote(r) => Some(r),
        KeySource::Inline(_) => None,
    }
}

impl Worker {
    /// Brings this worker's copy of a remote provider's keys up to the shared generation.
    pub fn sync_keys(&self, index: usize) {
        let (Some(provider), Some(state)) = (
            self.config.jwt.providers.get(index),
            self.providers.get(index),
        ) else {
            return;
        };
        if remote(provider).is_none() {
            return;
        }
        let schedule = match host::shared_get(&jwks::schedule_key(provider.name())) {
            Ok((Some(bytes), _)) => FetchSchedule::decode(&bytes),
            Ok((None, _)) => return,
            Err(e) => return log::warn!("{e}"),
        };
        if schedule.fetched_at == 0 || state.generation.get() == Some(schedule.generation) {
            return;
        }
        match host::shared_get(&jwks::keys_key(provider.name())) {
            Ok((Some(bytes), _)) => match Jwks::parse(&bytes) {
                Ok(parsed) if !parsed.is_empty() => {
                    *state.keys.borrow_mut() = Some(Rc::new(parsed));
                    state.generation.set(Some(schedule.generation));
                }
                Ok(_) => log::warn!(
                    "provider {}: shared JWKS has no usable key",
                    provider.name()
                ),
                Err(e) => log::warn!("provider {}: shared JWKS unreadable: {e}", provider.name()),
            },
            Ok((None, _)) => {}
            Err(e) => log::warn!("{e}"),
        }
    }

    pub fn keys_generation(&self, index: usize) -> Option<u32> {
        self.providers.get(index).and_then(|s| s.generation.get())
    }

    /// Verifies `token` with provider `index`'s keys as this worker has them.
    pub fn verify_jwt(&self, index: usize, token: &str, now: u64) -> JwtCheck {
        let (Some(provider), Some(state)) = (
            self.config.jwt.providers.get(index),
            self.providers.get(index),
        ) else {
            return JwtCheck::NoKeys;
        };
        let keys = state.keys.borrow().clone();
        match keys {
            Some(keys) => match jwt::verify(token, &keys, &provider.policy, now) {
                Ok(v) => JwtCheck::Verified(v),
                Err(e) => JwtCheck::Rejected(e),
            },
            None => JwtCheck::NoKeys,
        }
    }

    /// Reads, changes and writes a provider's shared schedule with compare-and-swap. `change`
    /// returns false to leave it as it is. Returns whether a change was written.
    fn update_schedule(
        &self,
        provider: &Provider,
        change: impl Fn(&mut FetchSchedule) -> bool,
    ) -> bool {
        let key = jwks::schedule_key(provider.name());
        for _ in 0..CAS_ATTEMPTS {
            let (bytes, cas) = match host::shared_get(&key) {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("{e}");
                    return false;
                }
            };
            let mut schedule = bytes
                .as_deref()
                .map(FetchSchedule::decode)
                .unwrap_or_default();
            if !change(&mut schedule) {
                return false;
            }
            match host::shared_set(&key, &schedule.encode(), cas) {
                Ok(()) => return true,
                Err(e) if e.is_cas_mismatch() => continue,
                Err(e) => {
                    log::warn!("{e}");
                    return false;
                }
            }
        }
        false
    }

    /// An unknown `kid`: pull the next fetch forward, if the rate limit allows.
    pub fn request_refetch(&self, index: usize, now: u64) -> bool {
        let Some(provider) = self.config.jwt.providers.get(index) else {
            return false;
        };
        let Some(r) = remote(provider) else {
            return false;
        };
        self.update_schedule(provider, |s| {
            s.request_refetch(now, r.min_refetch_interval_secs)
        })
    }

    /// Starts the fetches that are due and that this worker wins the lease for.
    pub fn start_due_fetches(&self, now: u64) {
        for (index, provider) in self.config.jwt.providers.iter().enumerate() {
            let (Some(r), Some(state)) = (remote(provider), self.providers.get(index)) else {
                continue;
            };
            self.sync_keys(index);
            if state.fetch_in_flight.get().is_some() {
                continue;
            }
            let timeout_secs = r.timeout.as_secs();
            let leased = self.update_schedule(provider, |s| {
                let due = s.due(now);
                if due {
                    s.lease(now, timeout_secs);
                }
                due
            });
            if !leased {
                continue;
            }
            match fetch(r) {
                Ok(token) => {
                    self.metrics.inc(self.metrics.jwks_fetch);
                    state.fetch_in_flight.set(Some(token));
                }
                Err(e) => {
                    log::warn!("provider {}: JWKS fetch not sent: {e}", provider.name());
                    self.metrics.inc(self.metrics.jwks_fetch_failure);
                    self.update_schedule(provider, |s| {
                        s.on_failure(now);
                        true
                    });
                }
            }
        }
    }

    /// The provider whose fetch answered with callout `token`, if any.
    pub fn fetch_owner(&self, token: u32) -> Option<usize> {
        self.providers
            .iter()
            .position(|s| s.fetch_in_flight.get() == Some(token))
    }

    /// Stores a fetched JWKS for every worker, or backs off. Old keys stay on any failure.
    pub fn on_fetch_response(&self, index: usize, body_size: usize, now: u64) {
        let (Some(provider), Some(state)) = (
            self.config.jwt.providers.get(index),
            self.providers.get(index),
        ) else {
            return;
        };
        state.fetch_in_flight.set(None);
        let Some(r) = remote(provider) else { return };
        match read_jwks(r, body_size) {
            Ok((bytes, parsed)) => {
                if let Err(e) = host::shared_set(&jwks::keys_key(provider.name()), &bytes, None) {
                    log::warn!("provider {}: {e}", provider.name());
                }
                let refresh = r.refresh_secs;
                self.update_schedule(provider, |s| {
                    s.on_success(now, refresh);
                    true
                });
                log::info!(
                    "provider {}: JWKS fetched, {} keys",
                    provider.name(),
                    parsed.len()
                );
                for skipped in parsed.skipped() {
                    log::info!(
                        "provider {}: JWKS key {} skipped: {}",
                        provider.name(),
                        skipped.index,
                        skipped.reason
                    );
                }
                self.sync_keys(index);
            }
            Err(why) => {
                log::warn!(
                    "provider {}: JWKS fetch failed: {why}; keeping old keys",
                    provider.name()
                );
                self.metrics.inc(self.metrics.jwks_fetch_failure);
                self.update_schedule(provider, |s| {
                    s.on_failure(now);
                    true
                });
            }
        }
    }

    /// Finishes the parked requests that can be finished: keys arrived or changed, or their
    /// deadline passed. The caller restores its own effective context afterwards.
    pub fn settle_jwt_waiters(&self, now: u64) {
        let ready: Vec<JwtWaiter> = {
            let mut waiters = self.jwt_waiters.borrow_mut();
            let (ready, waiting) = waiters.drain(..).partition(|w: &JwtWaiter| {
                let generation = self.keys_generation(w.provider);
                now >= w.deadline || (generation.is_some() && generation != w.seen_generation)
            });
            *waiters = waiting;
            ready
        };
        for w in ready {
            let verdict = match self.verify_jwt(w.provider, &w.token, now) {
                JwtCheck::Verified(v) => self.accept_token(&w.hash, w.tag, v, &w.required, now),
                JwtCheck::Rejected(e) => self.reject_token(&e),
                JwtCheck::NoKeys => decision::unavailable(&self.config),
            };
            let strip = self.strip_for(w.provider, w.strip);
            if host::set_effective_context(w.context_id).is_ok() {
                http::finish_paused(self, verdict, &strip, now);
            }
        }
    }

    /// Caches a verified token's identity and judges it against the route.
    pub fn accept_token(
        &self,
        hash: &KeyHash,
        tag: TokenTag,
        token: VerifiedToken,
        required: &[Permission],
        now: u64,
    ) -> Verdict {
        self.metrics.inc(self.metrics.jwt_verified);
        let identity = decision::jwt_identity(token);
        let outcome = Outcome::prepare(&self.config, Answer::Valid(identity.clone()));
        if let Some(entry) = Entry::verified(*hash, identity, now) {
            self.cache_put(&self.tokens, tag, &entry, &outcome, now);
        }
        decision::judge(&outcome, required)
    }

    pub fn reject_token(&self, error: &JwtError) -> Verdict {
        self.metrics.jwt_rejected(error.reason());
        log::debug!("token rejected: {}", error.reason());
        decision::token_rejected(error)
    }

    /// Strips for a token verified by provider `index` (keeps `Authorization` if it forwards).
    pub fn strip_for(&self, index: usize, strip: Strip) -> Strip {
        match self.config.jwt.providers.get(index) {
            Some(p) => decision::strip_for_provider(strip, p),
            None => strip,
        }
    }
}

/// 401 for a token no provider issued.
pub fn unknown_issuer() -> Verdict {
    let mut d = Denial::new(DenyReason::InvalidToken);
    d.detail = Some("unknown_issuer");
    Verdict::Deny(d)
}

fn fetch(r: &RemoteJwks) -> HostResult<u32> {
    host::dispatch_http_call(
        &r.cluster,
        vec![
            (":method", "GET"),
            (":path", &r.path),
            (":authority", &r.authority),
            ("accept", "application/json"),
        ],
        &[],
        r.timeout,
    )
}

fn read_jwks(r: &RemoteJwks, body_size: usize) -> Result<(Vec<u8>, Jwks), String> {
    let status = host::call_response_status().map_err(|e| e.to_string())?;
    if status != Some(200) {
        return Err(format!("status {status:?}"));
    }
    if body_size > r.max_bytes {
        return Err(format!(
            "{body_size} bytes is over max_bytes {}",
            r.max_bytes
        ));
    }
    let bytes = host::call_response_body(body_size)
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let parsed = Jwks::parse(&bytes).map_err(|e| e.to_string())?;
    if parsed.is_empty() {
        return Err("no usable key in the JWKS".to_owned());
    }
    Ok((bytes, parsed))
}
