//! JWT glue: each worker's copy of every provider's keys, kept in step with the shared JWKS that
//! one worker at a time fetches (the schedule is in `keygate_core::jwks`), and the requests parked
//! until keys arrive (`keygate_core::jwks::ParkedTokens` holds them and says when they are ready;
//! `Worker::room_to_wait` bounds them).

use std::rc::Rc;

use keygate_core::cache::{Answer, CacheLayout, Entry};
use keygate_core::config::{Provider, RemoteJwks};
use keygate_core::credential::Strip;
use keygate_core::decision::{self, Outcome, Verdict};
use keygate_core::jwks::{self, FetchSchedule};
use keygate_core::jwt::{Jwks, JwtError, UnverifiedToken, VerifiedToken};
use keygate_core::key::KeyHash;
use keygate_core::local::TokenTag;
use keygate_core::route::Permission;

use crate::act;
use crate::host::{self, HostResult};
use crate::shared;
use crate::worker::{ProviderKeys, Worker};

/// The outcome of verifying a token with what this worker has.
pub enum JwtCheck {
    Verified(VerifiedToken),
    Rejected(JwtError),
    /// A remote provider whose keys have not arrived yet.
    NoKeys,
}

impl Worker {
    fn provider(&self, index: usize) -> Option<(&Provider, &ProviderKeys)> {
        Some((
            self.config.jwt.providers.get(index)?,
            self.providers.get(index)?,
        ))
    }

    /// Brings this worker's copy of a remote provider's keys up to the shared generation. New
    /// keys move the verified-token cache to a new table: a token verified with a key that is
    /// gone is verified again.
    pub fn sync_keys(&self, index: usize) {
        let Some((provider, state)) = self.provider(index) else {
            return;
        };
        if provider.remote().is_none() {
            return;
        }
        let fp = self.config.fingerprint;
        let schedule = match host::shared_get(&jwks::schedule_key(fp, provider.name())) {
            Ok((Some(bytes), _)) => FetchSchedule::decode(&bytes),
            Ok((None, _)) => return,
            Err(e) => return log::warn!("{e}"),
        };
        if schedule.fetched_at == 0 || state.generation.get() == Some(schedule.generation) {
            return;
        }
        match host::shared_get(&jwks::keys_key(fp, provider.name())) {
            Ok((Some(bytes), _)) => match Jwks::parse(&bytes) {
                Ok(parsed) if !parsed.is_empty() => {
                    *state.keys.borrow_mut() = Some(Rc::new(parsed));
                    *state.document.borrow_mut() = Some(bytes);
                    state.generation.set(Some(schedule.generation));
                    // A signature that failed under the old keys may verify under the new, and a
                    // token verified with a key that is gone is verified again.
                    let digest = self.keys_digest();
                    self.rejected.borrow_mut().keys_are(digest);
                    self.tokens
                        .relayout(CacheLayout::tokens(&self.config.jwt.cache, fp, digest));
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
    pub fn verify_jwt(&self, index: usize, token: &UnverifiedToken, now: u64) -> JwtCheck {
        let Some((provider, state)) = self.provider(index) else {
            return JwtCheck::NoKeys;
        };
        let keys = state.keys.borrow().clone();
        match keys {
            Some(keys) => match token.verify(&keys, &provider.policy, now) {
                Ok(v) => JwtCheck::Verified(v),
                Err(e) => JwtCheck::Rejected(e),
            },
            None => JwtCheck::NoKeys,
        }
    }

    /// Changes a provider's shared schedule with compare-and-swap. `change` returns false to
    /// leave it as it is. Returns whether a change was written.
    fn update_schedule(
        &self,
        provider: &Provider,
        change: impl Fn(&mut FetchSchedule) -> bool,
    ) -> bool {
        let key = jwks::schedule_key(self.config.fingerprint, provider.name());
        shared::update(&key, |bytes| {
            let mut schedule = bytes.map(FetchSchedule::decode).unwrap_or_default();
            change(&mut schedule).then(|| schedule.encode().to_vec())
        })
    }

    /// An unknown `kid`: pull the next fetch forward, if the rate limit allows.
    pub fn request_refetch(&self, index: usize, now: u64) -> bool {
        let Some((provider, _)) = self.provider(index) else {
            return false;
        };
        let Some(r) = provider.remote() else {
            return false;
        };
        self.update_schedule(provider, |s| {
            s.request_refetch(now, r.min_refetch_interval_secs)
        })
    }

    /// Starts the fetches that are due and that this worker wins the lease for.
    pub fn start_due_fetches(&self, now: u64) {
        for (index, (provider, state)) in self
            .config
            .jwt
            .providers
            .iter()
            .zip(&self.providers)
            .enumerate()
        {
            let Some(r) = provider.remote() else {
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
        let Some((provider, state)) = self.provider(index) else {
            return;
        };
        state.fetch_in_flight.set(None);
        let Some(r) = provider.remote() else { return };
        match read_jwks(r, body_size) {
            Ok((bytes, parsed)) => {
                let key = jwks::keys_key(self.config.fingerprint, provider.name());
                if let Err(e) = host::shared_set(&key, &bytes, None) {
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

    /// Finishes the parked requests that are ready: keys arrived or changed, or their wait is
    /// over. The caller makes its own stream current again afterwards.
    pub fn settle_parked(&self, now: u64) {
        let ready = self
            .parked
            .borrow_mut()
            .take_ready(|provider| self.keys_generation(provider), now);
        for p in ready {
            let r = p.request;
            let verdict = match self.verify_jwt(r.provider, &r.token, now) {
                JwtCheck::Verified(v) => self.accept_token(&r.hash, r.tag, v, &r.required, now),
                JwtCheck::Rejected(e) => self.reject_token(r.tag, &e, now),
                JwtCheck::NoKeys => decision::unavailable(&self.config),
            };
            let strip = self.strip_for(r.provider, r.strip);
            if host::set_effective_context(r.context_id).is_ok() {
                act::finish_paused(self, verdict, &strip, now);
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
        self.metrics.jwt_verified.count();
        let identity = decision::jwt_identity(token);
        let outcome = Outcome::prepare(&self.config, Answer::Valid(identity.clone()));
        if let Some(entry) = Entry::verified(*hash, identity, now) {
            self.cache_put(&self.tokens, tag, &entry, &outcome, now);
        }
        decision::judge(&outcome, required)
    }

    /// Refuses a token its verification refused, and remembers how if the refusal lasts
    /// (`keygate_core::local::RejectedTokens`).
    pub fn reject_token(&self, tag: TokenTag, error: &JwtError, now: u64) -> Verdict {
        self.rejected.borrow_mut().note(tag, error, now);
        self.refuse_token(error)
    }

    /// The refusal of a token for `error`, counted: the same answer whether it was just
    /// verified or remembered.
    pub fn refuse_token(&self, error: &JwtError) -> Verdict {
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
