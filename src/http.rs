//! The per-request context. Each callback reads what the host has, asks the core what to do, and
//! carries out the answer; it decides nothing itself.

use std::rc::Rc;

use keygate_core::cache::{self, Entry};
use keygate_core::config::KeySource;
use keygate_core::credential::Strip;
use keygate_core::decision::{self, Denial, DenyReason, Outcome, Plan, RequestView, Verdict};
use keygate_core::hostmap;
use keygate_core::jwt::{self, JwtError};
use keygate_core::key::{KeyHash, UncheckedKey};
use keygate_core::route::Permission;
use keygate_core::wire::{LookupRequest, LookupResponse};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host::{self, HostResult};
use crate::jwt::{JwtCheck, JwtWaiter};
use crate::worker::{Pending, Waiter, Worker};

/// How long past the fetch timeout a request waits for a provider's keys.
const JWKS_WAIT_GRACE_SECS: u64 = 2;

/// Largest lookup answer read; anything bigger is treated as a failed lookup.
const MAX_LOOKUP_BODY: usize = 64 * 1024;

/// One request through the filter.
pub struct RequestFilter {
    worker: Rc<Worker>,
    context_id: u32,
    /// Set while this request owns a lookup in flight.
    lookup: Option<OwnLookup>,
}

struct OwnLookup {
    token: u32,
    hash: KeyHash,
    required: Vec<Permission>,
    strip: Strip,
}

impl RequestFilter {
    pub fn new(worker: Rc<Worker>, context_id: u32) -> Self {
        Self {
            worker,
            context_id,
            lookup: None,
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
            Plan::Deny(denial) => deny(&worker, &denial),
            Plan::Forward(strip) => {
                apply_strip(&strip)?;
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
        let now = host::now_secs()?;
        let cached = worker
            .keys
            .local(&hash, now)
            .or_else(|| worker.cache_shared(&worker.keys, hash, &hash, now));
        if let Some(outcome) = cached {
            worker.metrics.inc(worker.metrics.cache_hit);
            return carry_out(worker, decision::judge(&outcome, required), &strip, now);
        }
        if let Some(denial) = decision::before_lookup(key) {
            return deny(worker, &denial);
        }
        worker.metrics.inc(worker.metrics.cache_miss);

        // Borrows of `pending` stay short: no host call runs while one is held, so a callback
        // the host might deliver inline can never find it borrowed.
        let in_flight = {
            let mut pending = worker.pending.borrow_mut();
            match pending.get_mut(&hash) {
                Some(p) => {
                    p.waiters.push(Waiter {
                        context_id: self.context_id,
                        required: required.to_vec(),
                        strip,
                    });
                    drop(pending);
                    worker.metrics.inc(worker.metrics.coalesced);
                    return Ok(Action::Pause);
                }
                None => pending.len(),
            }
        };
        if in_flight >= worker.config.key_service.max_pending_lookups {
            log::warn!("too many lookups in flight; answering 503");
            return carry_out(worker, decision::unavailable(&worker.config), &strip, now);
        }
        match dispatch_lookup(worker, &hash) {
            Ok(token) => {
                worker.metrics.inc(worker.metrics.callout);
                worker.pending.borrow_mut().insert(
                    hash,
                    Pending {
                        started: now,
                        waiters: Vec::new(),
                    },
                );
                self.lookup = Some(OwnLookup {
                    token,
                    hash,
                    required: required.to_vec(),
                    strip,
                });
                Ok(Action::Pause)
            }
            Err(e) => {
                log::warn!("lookup for key {} not sent: {e}", hash.short());
                worker.metrics.inc(worker.metrics.callout_failure);
                carry_out(worker, decision::unavailable(&worker.config), &strip, now)
            }
        }
    }

    fn check_jwt(
        &mut self,
        worker: &Worker,
        token: String,
        required: &[Permission],
        strip: Strip,
    ) -> HostResult<Action> {
        let now = host::now_secs()?;
        // The worker's own copy first, by tag: a hit then never hashes the whole token.
        let tag = worker.tagger.tag(&token);
        if let Some(outcome) = worker.tokens.local(&tag, now) {
            return token_hit(worker, &outcome, required, strip, now);
        }
        let hash = KeyHash::of(token.as_bytes());
        if let Some(outcome) = worker.cache_shared(&worker.tokens, tag, &hash, now) {
            return token_hit(worker, &outcome, required, strip, now);
        }
        let provider =
            jwt::peek_issuer(&token).and_then(|iss| worker.config.jwt.provider_for(&iss));
        let Some((index, provider)) = provider else {
            return carry_out(worker, crate::jwt::unknown_issuer(), &strip, now);
        };
        // Verified, rejected, or parked until the provider's keys (re)arrive.
        match worker.verify_jwt(index, &token, now) {
            JwtCheck::Verified(v) => {
                let verdict = worker.accept_token(&hash, tag, v, required, now);
                return carry_out(worker, verdict, &worker.strip_for(index, strip), now);
            }
            JwtCheck::Rejected(JwtError::UnknownKid) if worker.request_refetch(index, now) => {}
            JwtCheck::Rejected(e) => {
                return carry_out(worker, worker.reject_token(&e), &strip, now);
            }
            JwtCheck::NoKeys => {}
        }
        let timeout = match &provider.keys {
            KeySource::Remote(r) => r.timeout.as_secs(),
            KeySource::Inline(_) => 0,
        };
        worker.jwt_waiters.borrow_mut().push(JwtWaiter {
            context_id: self.context_id,
            provider: index,
            token,
            hash,
            tag,
            required: required.to_vec(),
            strip,
            deadline: now + timeout + JWKS_WAIT_GRACE_SECS,
            seen_generation: worker.keys_generation(index),
        });
        Ok(Action::Pause)
    }

    /// Reads the key service's answer; `None` when the lookup failed in any way.
    fn read_lookup(&self, hash: &KeyHash, body_size: usize, now: u64) -> Option<Outcome> {
        let worker = &self.worker;
        let status = host::call_response_status().ok().flatten();
        if status != Some(200) {
            log::warn!("lookup for key {} failed: status {status:?}", hash.short());
            return None;
        }
        if body_size > MAX_LOOKUP_BODY {
            log::warn!("lookup answer too large ({body_size} bytes)");
            return None;
        }
        let body = host::call_response_body(body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let response: LookupResponse = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("lookup answer unreadable: {e}");
                return None;
            }
        };
        let outcome = Outcome::prepare(&worker.config, cache::answer_of(&response, now));
        if let Some(entry) = Entry::from_lookup(*hash, &response, &worker.config.cache, now) {
            worker.cache_put(&worker.keys, *hash, &entry, &outcome, now);
        }
        Some(outcome)
    }
}

/// A token found in the verified-token cache: the provider's `forward_token` decides the strip.
fn token_hit(
    worker: &Worker,
    outcome: &Outcome,
    required: &[Permission],
    strip: Strip,
    now: u64,
) -> HostResult<Action> {
    worker.metrics.inc(worker.metrics.jwt_cache_hit);
    let strip = match outcome {
        Outcome::Valid(grant) => match grant.provider {
            Some(i) => worker.strip_for(i, strip),
            None => strip,
        },
        Outcome::Invalid(_) => strip,
    };
    carry_out(worker, decision::judge(outcome, required), &strip, now)
}

fn dispatch_lookup(worker: &Worker, hash: &KeyHash) -> HostResult<u32> {
    let body = serde_json::to_vec(&LookupRequest { key_hash: *hash }).unwrap_or_default();
    worker.post_to_key_service(&worker.config.key_service.lookup_path, &body)
}

impl Context for RequestFilter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(own) = self.lookup.take_if(|l| l.token == token) else {
            return;
        };
        let worker = Rc::clone(&self.worker);
        let now = host::now_secs().ok();
        let answer = now.and_then(|now| self.read_lookup(&own.hash, body_size, now));
        if answer.is_none() {
            worker.metrics.inc(worker.metrics.callout_failure);
        }
        let now = now.unwrap_or(0);
        let verdict_for = |required: &[Permission]| match &answer {
            Some(outcome) => decision::judge(outcome, required),
            None => decision::unavailable(&worker.config),
        };

        let waiters = worker
            .pending
            .borrow_mut()
            .remove(&own.hash)
            .map(|p| p.waiters);
        for w in waiters.unwrap_or_default() {
            if host::set_effective_context(w.context_id).is_ok() {
                finish_paused(&worker, verdict_for(&w.required), &w.strip, now);
            }
        }
        if let Err(e) = host::set_effective_context(self.context_id) {
            log::warn!("{e}");
            return;
        }
        finish_paused(&worker, verdict_for(&own.required), &own.strip, now);
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

/// Finishes a request that was paused: carry out the verdict, then resume it if it goes upstream.
pub fn finish_paused(worker: &Worker, verdict: Verdict, strip: &Strip, now: u64) {
    let result = carry_out(worker, verdict, strip, now).and_then(|action| match action {
        Action::Continue => host::resume_request(),
        _ => Ok(()),
    });
    if let Err(e) = result {
        log::error!("{e}; answering 503");
        fail_closed();
    }
}

/// Carries out a verdict on the current stream. `Continue` means: let it go upstream.
fn carry_out(worker: &Worker, verdict: Verdict, strip: &Strip, now: u64) -> HostResult<Action> {
    match verdict {
        Verdict::Allow(grant) => {
            apply_strip(strip)?;
            // Every header under the identity prefix was removed when the request arrived.
            for (name, value) in &grant.identity_headers {
                host::add_request_header(name, value)?;
            }
            worker.metrics.allowed();
            if let Some(id) = grant.key_id.as_deref() {
                if worker.config.usage_interval.is_some() {
                    worker.usage.borrow_mut().record(id, now);
                }
            }
            Ok(Action::Continue)
        }
        Verdict::AllowUnverified => {
            apply_strip(strip)?;
            worker.metrics.inc(worker.metrics.failure_open);
            Ok(Action::Continue)
        }
        Verdict::Deny(denial) => deny(worker, &denial),
    }
}

fn deny(worker: &Worker, denial: &Denial) -> HostResult<Action> {
    worker.metrics.denied(denial.reason);
    host::send_response(denial.status(), &denial.headers(), &denial.body())?;
    Ok(Action::Pause)
}

fn apply_strip(strip: &Strip) -> HostResult<()> {
    for name in &strip.headers {
        host::remove_request_header(name.as_bytes())?;
    }
    if let Some(path) = &strip.path {
        host::set_request_header(":path", path)?;
    }
    Ok(())
}

/// Last resort when the host refuses a call mid-request: answer 503 and never forward. If even
/// that fails, the request stays paused until Envoy's stream timeout; it is never let through.
pub fn fail_closed() -> Action {
    let denial = Denial::new(DenyReason::Unavailable);
    if let Err(e) = host::send_response(denial.status(), &denial.headers(), &denial.body()) {
        log::error!("{e}");
    }
    Action::Pause
}

/// The request context handed out when the filter has no valid configuration: fails closed.
pub struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        fail_closed()
    }
}
