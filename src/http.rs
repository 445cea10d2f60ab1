//! The per-request context. Each callback reads what the host has, asks the core what to do, and
//! carries out the answer; it decides nothing itself.

use std::rc::Rc;

use keygate_core::credential::Strip;
use keygate_core::decision::{self, Outcome, Plan, RequestView};
use keygate_core::hostmap;
use keygate_core::jwks::{ParkedToken, TokenRequest};
use keygate_core::jwt::{self, JwtError};
use keygate_core::key::{KeyHash, UncheckedKey};
use keygate_core::lookups::{Admit, Waiter};
use keygate_core::route::Permission;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::act::{self, carry_out, fail_closed};
use crate::host::{self, HostResult};
use crate::jwt::JwtCheck;
use crate::lookup;
use crate::worker::Worker;

/// One request through the filter.
pub struct RequestFilter {
    worker: Rc<Worker>,
    context_id: u32,
    /// The key whose lookup this request waits on (or waited on): when the stream ends, it
    /// leaves that lookup, which then no longer counts on it.
    waiting_on: Option<KeyHash>,
    /// Parked until its JWT provider's keys arrive: when the stream ends, its place goes.
    parked: bool,
}

impl RequestFilter {
    pub fn new(worker: Rc<Worker>, context_id: u32) -> Self {
        Self {
            worker,
            context_id,
            waiting_on: None,
            parked: false,
        }
    }

    fn on_request(&mut self) -> HostResult<Action> {
        // Envoy's route name first: every header change below clears its route cache.
        let worker = Rc::clone(&self.worker);
        let cfg = &worker.config;
        let route_name = if cfg.routes.uses_route_names() {
            host::route_name()?
        } else {
            None
        };
        let serialized = host::request_headers()?;
        let headers = match hostmap::decode(&serialized) {
            Ok(headers) => headers,
            Err(e) => {
                log::error!("request headers unreadable: {e}; answering 503");
                return Ok(fail_closed());
            }
        };
        for name in decision::spoofed_headers(cfg, &headers) {
            host::remove_request_header(name)?;
        }
        let view = RequestView {
            headers: &headers,
            route_name: route_name.as_deref(),
        };
        match decision::plan(cfg, &view) {
            Plan::Deny(denial) => act::deny(&worker, &denial),
            Plan::Forward(strip) => {
                act::apply_strip(&strip)?;
                worker.metrics.public();
                Ok(Action::Continue)
            }
            Plan::CheckKey {
                key,
                hash,
                required,
                strip,
            } => self.check_key(&worker, key, hash, required, strip),
            Plan::CheckJwt {
                token,
                required,
                strip,
            } => self.check_jwt(&worker, token, required, strip),
        }
    }

    fn check_key(
        &mut self,
        worker: &Worker,
        key: UncheckedKey,
        hash: KeyHash,
        required: &[Permission],
        strip: Strip,
    ) -> HostResult<Action> {
        let now = worker.now()?;
        // Past the revocation feed's stale-if-error bound, cached answers are a miss.
        let cached = if worker.serve_cached_keys() {
            worker
                .keys
                .local(&hash, now)
                .or_else(|| worker.cache_shared(&worker.keys, hash, &hash, now))
        } else {
            None
        };
        if let Some(outcome) = cached {
            worker.metrics.cache_hit.count();
            return carry_out(worker, decision::judge(&outcome, required), &strip, now);
        }
        if let Some(denial) = decision::before_lookup(key) {
            return act::deny(worker, &denial);
        }
        worker.metrics.inc(worker.metrics.cache_miss);
        // A miss reads the clock afresh: the lookup's deadline and the breaker count from now.
        let now = worker.read_clock()?;
        if !worker.room_to_wait() {
            return overloaded(worker, "max_waiting_requests", &strip, now);
        }

        let me = Waiter {
            context_id: self.context_id,
            required: required.to_vec(),
            strip,
        };
        // Borrows of `lookups` stay short: no host call runs while one is held, so a callback
        // the host might deliver inline can never find it borrowed.
        let admitted = worker.lookups.borrow_mut().admit(hash, me.clone());
        match admitted {
            Admit::Joined => {
                worker.metrics.inc(worker.metrics.coalesced);
                self.waiting_on = Some(hash);
                Ok(Action::Pause)
            }
            Admit::Batch { wake } => {
                if wake {
                    worker.wake_batch_sender();
                }
                self.waiting_on = Some(hash);
                Ok(Action::Pause)
            }
            Admit::Full => overloaded(worker, "key_service.max_pending_lookups", &me.strip, now),
            Admit::Send => match lookup::send(worker, &hash, self.context_id, now) {
                Ok(()) => {
                    self.waiting_on = Some(hash);
                    Ok(Action::Pause)
                }
                Err(waiters) => {
                    // Others may have waited on an orphaned lookup of this key: they are paused.
                    let others = waiters
                        .into_iter()
                        .filter(|w| w.context_id != self.context_id)
                        .collect();
                    let unavailable = decision::unavailable(&worker.config);
                    act::finish_waiters(worker, others, |_| unavailable.clone(), now);
                    host::set_effective_context(self.context_id)?;
                    carry_out(worker, unavailable, &me.strip, now)
                }
            },
        }
    }

    fn check_jwt(
        &mut self,
        worker: &Worker,
        token: String,
        required: &[Permission],
        strip: Strip,
    ) -> HostResult<Action> {
        let now = worker.now()?;
        // A token longer than any provider takes is refused before any work on it.
        if let Err(e) = worker.config.jwt.check_token_size(&token) {
            return carry_out(worker, worker.refuse_token(&e), &strip, now);
        }
        // The worker's own copy first, by tag: a hit then never hashes the whole token.
        let tag = worker.tagger.tag(&token);
        if let Some(outcome) = worker.tokens.local(&tag, now) {
            return token_hit(worker, &outcome, required, strip, now);
        }
        // A token already refused here after its signature check (a forged one, say) is refused
        // as it was then, unverified.
        let remembered = worker.rejected.borrow().refusal(&tag, now).cloned();
        if let Some(error) = remembered {
            worker.metrics.jwt_rejected_cache_hit.count();
            return carry_out(worker, worker.refuse_token(&error), &strip, now);
        }
        let hash = KeyHash::of(token.as_bytes());
        if let Some(outcome) = worker.cache_shared(&worker.tokens, tag, &hash, now) {
            return token_hit(worker, &outcome, required, strip, now);
        }
        // A verification reads the clock afresh, so `nbf` and `exp` are judged on the time now
        // whatever `clock_skew_secs` is.
        let now = worker.read_clock()?;
        // The payload is parsed once: for its issuer, which picks the provider, and then for
        // the claims, once the signature verified.
        let token = jwt::UnverifiedToken::parse(token).ok();
        let issuer = token.as_ref().and_then(jwt::UnverifiedToken::issuer);
        let provider = issuer.and_then(|iss| worker.config.jwt.provider_for(iss));
        let (Some(token), Some((index, provider))) = (token, provider) else {
            return carry_out(worker, decision::unknown_issuer(), &strip, now);
        };
        // Verified, rejected, or parked until the provider's keys (re)arrive.
        match worker.verify_jwt(index, &token, now) {
            JwtCheck::Verified(v) => {
                let verdict = worker.accept_token(&hash, tag, v, required, now);
                return carry_out(worker, verdict, &worker.strip_for(index, strip), now);
            }
            JwtCheck::Rejected(JwtError::UnknownKid) if worker.request_refetch(index, now) => {}
            JwtCheck::Rejected(e) => {
                return carry_out(worker, worker.reject_token(tag, &e, now), &strip, now);
            }
            JwtCheck::NoKeys => {}
        }
        // No keys to verify with yet: only what needs none is checked before it waits.
        if let Err(e) = token.check_size(&provider.policy) {
            return carry_out(worker, worker.refuse_token(&e), &strip, now);
        }
        if !worker.room_to_wait() {
            return overloaded(worker, "max_waiting_requests", &strip, now);
        }
        let request = TokenRequest {
            context_id: self.context_id,
            provider: index,
            token,
            hash,
            tag,
            required: required.to_vec(),
            strip,
        };
        let parked = ParkedToken::park(request, provider, worker.keys_generation(index), now);
        worker.parked.borrow_mut().park(parked);
        self.parked = true;
        Ok(Action::Pause)
    }
}

/// A request that would wait, turned away at once because the worker's bound `setting` is
/// reached: 503 (or through, under `failure_mode: open`), counted, and logged at most once per
/// tick, since a flood reaches this on every request.
fn overloaded(worker: &Worker, setting: &str, strip: &Strip, now: u64) -> HostResult<Action> {
    if worker.metrics.overloaded.count_first() {
        log::warn!("{setting} reached: answering unavailable rather than waiting");
    }
    carry_out(worker, decision::unavailable(&worker.config), strip, now)
}

/// A token found in the verified-token cache.
fn token_hit(
    worker: &Worker,
    outcome: &Outcome,
    required: &[Permission],
    strip: Strip,
    now: u64,
) -> HostResult<Action> {
    worker.metrics.jwt_cache_hit.count();
    let strip = decision::strip_for_cached_token(&worker.config, outcome, strip);
    carry_out(worker, decision::judge(outcome, required), &strip, now)
}

impl Context for RequestFilter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let worker = Rc::clone(&self.worker);
        let now = match host::now_secs() {
            Ok(now) => now,
            Err(e) => return log::warn!("{e}"),
        };
        match lookup::on_answer(&worker, token, self.context_id, body_size, now) {
            lookup::Answered::NotALookup => {}
            // Still the sender of the lookup it waits on.
            lookup::Answered::SentAgain => {}
            lookup::Answered::Finished => {
                self.waiting_on = None;
                if let Err(e) = host::set_effective_context(self.context_id) {
                    log::warn!("{e}");
                }
            }
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(hash) = self.waiting_on.take() {
            self.worker
                .lookups
                .borrow_mut()
                .gone(&hash, self.context_id);
        }
        if self.parked {
            self.worker.parked.borrow_mut().gone(self.context_id);
        }
        true
    }
}

impl HttpContext for RequestFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.on_request() {
            Ok(action) => action,
            Err(e) => {
                log::error!("{e}; answering 503");
                fail_closed()
            }
        }
    }
}

/// The request context handed out when the filter has no valid configuration: fails closed.
pub struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        fail_closed()
    }
}
