//! Key lookups at the key service: sending one (past the circuit breaker) for the requests that
//! wait on it, and finishing them with its answer. Who waits on what is
//! `keygate_core::lookups`; whether a lookup may go out is `keygate_core::breaker`.

use keygate_core::breaker::{Breaker, Gate};
use keygate_core::cache::{self, Entry};
use keygate_core::decision::{self, Outcome};
use keygate_core::key::KeyHash;
use keygate_core::lookups::{self, Waiter};
use keygate_core::wire::{LookupRequest, LookupResponse};

use crate::act;
use crate::host;
use crate::shared;
use crate::worker::Worker;

/// Largest lookup answer read; anything bigger is treated as a failed lookup.
const MAX_LOOKUP_BODY: usize = 64 * 1024;

/// Sends the lookup of `hash` from the current context `sender`, whose answer then arrives in
/// `sender`'s `on_http_call_response`. When it cannot go (breaker open, host refused), the
/// requests waiting on it are returned, to be answered "unavailable".
pub fn send(worker: &Worker, hash: &KeyHash, sender: u32, now: u64) -> Result<(), Vec<Waiter>> {
    if !breaker_allows(worker, now) {
        worker.metrics.inc(worker.metrics.callout_skipped);
        return Err(worker.lookups.borrow_mut().send_failed(hash));
    }
    let body = serde_json::to_vec(&LookupRequest { key_hash: *hash }).unwrap_or_default();
    match worker.post_to_key_service(&worker.config.key_service.lookup_path, &body) {
        Ok(token) => {
            worker.note_lookup_sent(hash);
            worker.metrics.inc(worker.metrics.callout);
            worker.lookups.borrow_mut().sent(hash, token, sender, now);
            Ok(())
        }
        Err(e) => {
            log::warn!("lookup for key {} not sent: {e}", hash.short());
            worker.metrics.inc(worker.metrics.callout_failure);
            record(worker, false, now);
            Err(worker.lookups.borrow_mut().send_failed(hash))
        }
    }
}

/// What became of a callout answer [`on_answer`] was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Not a lookup.
    NotALookup,
    /// Every request waiting on it was finished.
    Finished,
    /// The attempt failed and the lookup went out again from the same context: its requests
    /// wait on.
    SentAgain,
}

/// Handles callout `token`'s answer if it is a lookup: caches it and finishes every request
/// waiting on it; or, the first time it failed as [`lookups::worth_another_try`] says, sends it
/// again from `sender` (the context whose callback this is), and only the second attempt's
/// outcome goes to the circuit breaker. The caller makes its own stream current again
/// afterwards.
pub fn on_answer(worker: &Worker, token: u32, sender: u32, body_size: usize, now: u64) -> Answered {
    let status = host::call_response_status().ok().flatten();
    if lookups::worth_another_try(status) {
        let again = worker.lookups.borrow_mut().retry(token);
        if let Some(hash) = again {
            log::warn!(
                "lookup for key {} failed: status {status:?}; sending it again",
                hash.short()
            );
            worker.metrics.inc(worker.metrics.callout_failure);
            worker.metrics.inc(worker.metrics.callout_retry);
            // The breaker counts failed lookups, not attempts: this one's second attempt tells.
            return match send(worker, &hash, sender, now) {
                Ok(()) => Answered::SentAgain,
                Err(waiters) => {
                    let unavailable = decision::unavailable(&worker.config);
                    act::finish_waiters(worker, waiters, |_| unavailable.clone(), now);
                    Answered::Finished
                }
            };
        }
    }
    let Some((hash, waiters)) = worker.lookups.borrow_mut().answered(token) else {
        return Answered::NotALookup;
    };
    let answer = read_answer(worker, &hash, status, body_size, now);
    record(worker, answer.is_some(), now);
    if answer.is_none() {
        worker.metrics.inc(worker.metrics.callout_failure);
    }
    act::finish_waiters(
        worker,
        waiters,
        |w| match &answer {
            Some(outcome) => decision::judge(outcome, &w.required),
            None => decision::unavailable(&worker.config),
        },
        now,
    );
    Answered::Finished
}

/// Reads the key service's answer and caches it; `None` when the lookup failed in any way.
fn read_answer(
    worker: &Worker,
    hash: &KeyHash,
    status: Option<u16>,
    body_size: usize,
    now: u64,
) -> Option<Outcome> {
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
    if !worker.lookup_answer_cacheable(hash) {
        log::info!(
            "lookup for key {} answered, not cached: the key changed meanwhile",
            hash.short()
        );
    } else if let Some(entry) = Entry::from_lookup(*hash, &response, &worker.config.cache, now) {
        worker.cache_put(&worker.keys, *hash, &entry, &outcome, now);
    }
    Some(outcome)
}

/// Whether the breaker lets a lookup go out now; a probe goes only if this worker wins it.
fn breaker_allows(worker: &Worker, now: u64) -> bool {
    let probe_timeout = worker.config.key_service.timeout.as_secs();
    let (bytes, cas) = match host::shared_get(&worker.breaker_key) {
        Ok(v) => v,
        // Shared data unreadable: the breaker cannot hold anything back.
        Err(_) => return true,
    };
    let mut breaker = Breaker::decode(bytes.as_deref().unwrap_or_default());
    match breaker.gate(now, probe_timeout) {
        Gate::Call => true,
        Gate::Skip => false,
        Gate::Probe => host::shared_set(&worker.breaker_key, &breaker.encode(), cas).is_ok(),
    }
}

/// Tells the breaker how a lookup went.
fn record(worker: &Worker, success: bool, now: u64) {
    shared::update(&worker.breaker_key, |current| {
        let mut breaker = Breaker::decode(current.unwrap_or_default());
        let changed = if success {
            breaker.on_success()
        } else {
            breaker.on_failure(now);
            true
        };
        changed.then(|| breaker.encode().to_vec())
    });
}
