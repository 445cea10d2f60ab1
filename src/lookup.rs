//! Key lookups at the key service: sending one alone, or a batch from the root context, past the
//! circuit breaker, for the requests that wait on them, and finishing them with the answer. Who
//! waits on what, and which lookups are batched, is `keygate_core::lookups`; whether a lookup may
//! go out is `keygate_core::breaker`.

use keygate_core::breaker::{Breaker, Gate};
use keygate_core::cache::{self, Entry};
use keygate_core::decision::{self, Outcome};
use keygate_core::key::KeyHash;
use keygate_core::lookups::{self, Callout, Finished, Waiter};
use keygate_core::wire::{
    LookupBatchRequest, LookupBatchResponse, LookupRequest, LookupResponse, MAX_LOOKUP_BATCH,
};

use crate::act;
use crate::host;
use crate::shared;
use crate::worker::Worker;

/// Largest answer read per key looked up; anything bigger is treated as a failed lookup.
const MAX_LOOKUP_BODY: usize = 64 * 1024;

/// Sends the lookup of `hash` alone from the current context `sender`, whose answer then
/// arrives in `sender`'s `on_http_call_response`. When it cannot go (breaker open, host
/// refused), the requests waiting on it are returned, to be answered "unavailable".
pub fn send(worker: &Worker, hash: &KeyHash, sender: u32, now: u64) -> Result<(), Vec<Waiter>> {
    let callout = Callout {
        hashes: vec![*hash],
        batch: false,
    };
    send_callout(worker, callout, sender, now)
}

/// Sends every queued lookup, up to [`MAX_LOOKUP_BATCH`] keys per callout, from `sender`: the
/// root context, whose callouts no client can cancel by going away. Returns the requests
/// waiting on batches that could not go, to be answered "unavailable".
pub fn send_batches(worker: &Worker, sender: u32, now: u64) -> Vec<Waiter> {
    let mut unsent = Vec::new();
    loop {
        let hashes = worker.lookups.borrow_mut().take_batch(MAX_LOOKUP_BATCH);
        if hashes.is_empty() {
            return unsent;
        }
        let callout = Callout {
            hashes,
            batch: true,
        };
        if let Err(waiters) = send_callout(worker, callout, sender, now) {
            unsent.extend(waiters);
        }
    }
}

/// Sends `callout`'s keys as one lookup callout past the breaker.
fn send_callout(
    worker: &Worker,
    callout: Callout,
    sender: u32,
    now: u64,
) -> Result<(), Vec<Waiter>> {
    let unsent = |callout: &Callout| {
        let mut lookups = worker.lookups.borrow_mut();
        callout
            .hashes
            .iter()
            .flat_map(|h| lookups.send_failed(h))
            .collect::<Vec<_>>()
    };
    if !breaker_allows(worker, now) {
        worker.metrics.inc(worker.metrics.callout_skipped);
        return Err(unsent(&callout));
    }
    let ks = &worker.config.key_service;
    let (path, body) = match (callout.batch, callout.hashes.as_slice()) {
        (false, [hash]) => (
            &ks.lookup_path,
            serde_json::to_vec(&LookupRequest { key_hash: *hash }),
        ),
        _ => (
            &ks.lookup_batch_path,
            serde_json::to_vec(&LookupBatchRequest {
                key_hashes: callout.hashes.clone(),
            }),
        ),
    };
    match worker.post_to_key_service(path, &body.unwrap_or_default()) {
        Ok(token) => {
            for hash in &callout.hashes {
                worker.note_lookup_sent(hash);
            }
            worker.metrics.inc(worker.metrics.callout);
            if callout.batch {
                worker.metrics.inc(worker.metrics.lookup_batch);
                let keys = callout.hashes.len();
                worker
                    .metrics
                    .inc_by(worker.metrics.lookup_batch_keys, keys);
            }
            worker
                .lookups
                .borrow_mut()
                .sent_callout(callout, token, sender, now);
            Ok(())
        }
        Err(e) => {
            log::warn!("lookup for {} not sent: {e}", keys_of(&callout.hashes));
            worker.metrics.inc(worker.metrics.callout_failure);
            record(worker, false, now);
            Err(unsent(&callout))
        }
    }
}

/// Names looked-up keys in a log line: the first key's short hash, and how many others.
fn keys_of(hashes: &[KeyHash]) -> String {
    match hashes {
        [] => "no key".to_owned(),
        [one] => format!("key {}", one.short()),
        [first, rest @ ..] => format!("key {} and {} others", first.short(), rest.len()),
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

/// Handles callout `token`'s answer if it is a lookup: caches each key's answer and finishes
/// every request waiting on them; or, the first time it failed as
/// [`lookups::worth_another_try`] says, sends it again from `sender` (the context whose
/// callback this is), and only the second attempt's outcome goes to the circuit breaker. The
/// caller makes its own stream current again afterwards.
pub fn on_answer(worker: &Worker, token: u32, sender: u32, body_size: usize, now: u64) -> Answered {
    let status = host::call_response_status().ok().flatten();
    if lookups::worth_another_try(status) {
        let again = worker.lookups.borrow_mut().retry(token);
        if let Some(callout) = again {
            log::warn!(
                "lookup for {} failed: status {status:?}; sending it again",
                keys_of(&callout.hashes)
            );
            worker.metrics.inc(worker.metrics.callout_failure);
            worker.metrics.inc(worker.metrics.callout_retry);
            // The breaker counts failed lookups, not attempts: this one's second attempt tells.
            return match send_callout(worker, callout, sender, now) {
                Ok(()) => Answered::SentAgain,
                Err(waiters) => {
                    let unavailable = decision::unavailable(&worker.config);
                    act::finish_waiters(worker, waiters, |_| unavailable.clone(), now);
                    Answered::Finished
                }
            };
        }
    }
    let Some(finished) = worker.lookups.borrow_mut().answered(token) else {
        return Answered::NotALookup;
    };
    let answers = read_answers(worker, &finished, status, body_size, now);
    record(worker, answers.is_some(), now);
    if answers.is_none() {
        worker.metrics.inc(worker.metrics.callout_failure);
    }
    let unavailable = decision::unavailable(&worker.config);
    for (i, (_, waiters)) in finished.lookups.into_iter().enumerate() {
        let outcome = answers.as_ref().and_then(|a| a.get(i));
        act::finish_waiters(
            worker,
            waiters,
            |w| match outcome {
                Some(outcome) => decision::judge(outcome, &w.required),
                None => unavailable.clone(),
            },
            now,
        );
    }
    Answered::Finished
}

/// Reads the key service's answer to `finished` and caches each key's; one outcome per key in
/// order, or `None` when the lookup failed in any way (a batch answered for some keys only
/// fails whole).
fn read_answers(
    worker: &Worker,
    finished: &Finished,
    status: Option<u16>,
    body_size: usize,
    now: u64,
) -> Option<Vec<Outcome>> {
    let hashes: Vec<KeyHash> = finished.lookups.iter().map(|(h, _)| *h).collect();
    if status != Some(200) {
        log::warn!("lookup for {} failed: status {status:?}", keys_of(&hashes));
        return None;
    }
    let limit = MAX_LOOKUP_BODY.saturating_mul(hashes.len().max(1));
    if body_size > limit {
        log::warn!("lookup answer too large ({body_size} bytes)");
        return None;
    }
    let body = host::call_response_body(body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    let responses = if finished.batch {
        match serde_json::from_slice::<LookupBatchResponse>(&body) {
            Ok(r) if r.answers.len() == hashes.len() => r.answers,
            Ok(r) => {
                log::warn!(
                    "batch lookup answer has {} answers for {} keys",
                    r.answers.len(),
                    hashes.len()
                );
                return None;
            }
            Err(e) => {
                log::warn!("batch lookup answer unreadable: {e}");
                return None;
            }
        }
    } else {
        match serde_json::from_slice::<LookupResponse>(&body) {
            Ok(r) => vec![r],
            Err(e) => {
                log::warn!("lookup answer unreadable: {e}");
                return None;
            }
        }
    };
    Some(
        hashes
            .iter()
            .zip(&responses)
            .map(|(hash, response)| keep_answer(worker, hash, response, now))
            .collect(),
    )
}

/// Caches the key service's answer for `hash` (unless the key changed while it was looked up)
/// and prepares it for judging requests.
fn keep_answer(worker: &Worker, hash: &KeyHash, response: &LookupResponse, now: u64) -> Outcome {
    let outcome = Outcome::prepare(&worker.config, cache::answer_of(response, now));
    if !worker.lookup_answer_cacheable(hash) {
        log::info!(
            "lookup for key {} answered, not cached: the key changed meanwhile",
            hash.short()
        );
    } else if let Some(entry) = Entry::from_lookup(*hash, response, &worker.config.cache, now) {
        worker.cache_put(&worker.keys, *hash, &entry, &outcome, now);
    }
    outcome
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
