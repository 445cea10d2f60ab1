//! The filter's Envoy stats (proxy-wasm counters). Envoy shows them under `wasmcustom.keygate.*`.
//!
//! The counters a request can bump whatever it costs to send (`allowed`, `public`, `cache_hit`,
//! `jwt_cache_hit`, `jwt_verified`, and the refusals: `denied.*`, `jwt_rejected.*`,
//! `jwt_rejected_cache_hit` and `overloaded`, which a flood bumps on every request) are
//! [`Tally`]s: counted in the worker's memory and added to Envoy's counters by
//! [`Metrics::flush`] on the root context's tick, one host call per counter that moved per tick
//! instead of one per request. Envoy's view of them lags by at most one tick (1 s; 250 ms with the
//! revocation feed, 200 ms with a remote JWKS); counts not yet flushed when the VM stops are lost.
//! Events that cost far more than a host call (callouts, JWKS fetches, feed polls, usage reports)
//! go to Envoy at once.

use std::cell::Cell;

use keygate_core::decision::DenyReason;
use keygate_core::jwt::JwtError;

use crate::host::{self, HostResult};

/// Counter ids, defined once per VM at configure time.
#[derive(Debug, Clone)]
pub struct Metrics {
    allowed: Tally,
    public: Tally,
    denied: Vec<(DenyReason, Tally)>,
    jwt_rejected: Vec<(&'static str, Tally)>,
    pub jwt_verified: Tally,
    pub jwt_cache_hit: Tally,
    /// Tokens refused as this worker had refused them before, without verifying
    /// (`keygate_core::local::RejectedTokens`): a flood of one forged token shows here.
    pub jwt_rejected_cache_hit: Tally,
    /// Requests answered 503 at once because one of the worker's bounds on waiting was reached
    /// (`key_service.max_pending_lookups`, `max_waiting_requests`): a flood of new keys, or of
    /// tokens while an identity provider is unreachable, shows here.
    pub overloaded: Tally,
    pub jwks_fetch: u32,
    pub jwks_fetch_failure: u32,
    pub cache_hit: Tally,
    pub cache_miss: u32,
    pub callout: u32,
    pub callout_failure: u32,
    /// Lookups sent a second time after a failed attempt (`lookups::worth_another_try`).
    pub callout_retry: u32,
    /// Lookups not sent because the circuit breaker was open.
    pub callout_skipped: u32,
    /// Lookup callouts sent as batches (`key_service.unbatched_lookups`), and the keys in them.
    pub lookup_batch: u32,
    pub lookup_batch_keys: u32,
    pub coalesced: u32,
    pub failure_open: u32,
    pub usage_report_failure: u32,
    /// Revocation feed polls sent, failed, and resets answered.
    pub feed_poll: u32,
    pub feed_poll_failure: u32,
    pub feed_reset: u32,
    /// Changed key hashes the feed delivered.
    pub feed_changes: u32,
}

impl Metrics {
    pub fn define() -> HostResult<Self> {
        let mut denied = Vec::with_capacity(DenyReason::ALL.len());
        for reason in DenyReason::ALL {
            denied.push((
                reason,
                Tally::define(&format!("keygate.denied.{}", reason.as_str()))?,
            ));
        }
        let mut jwt_rejected = Vec::with_capacity(JwtError::REASONS.len());
        for reason in JwtError::REASONS {
            jwt_rejected.push((
                reason,
                Tally::define(&format!("keygate.jwt_rejected.{reason}"))?,
            ));
        }
        Ok(Self {
            jwt_rejected,
            jwt_verified: Tally::define("keygate.jwt_verified")?,
            jwt_cache_hit: Tally::define("keygate.jwt_cache_hit")?,
            jwt_rejected_cache_hit: Tally::define("keygate.jwt_rejected_cache_hit")?,
            overloaded: Tally::define("keygate.overloaded")?,
            jwks_fetch: host::define_counter("keygate.jwks_fetch")?,
            jwks_fetch_failure: host::define_counter("keygate.jwks_fetch_failure")?,
            allowed: Tally::define("keygate.allowed")?,
            public: Tally::define("keygate.public")?,
            denied,
            cache_hit: Tally::define("keygate.cache_hit")?,
            cache_miss: host::define_counter("keygate.cache_miss")?,
            callout: host::define_counter("keygate.callout")?,
            callout_failure: host::define_counter("keygate.callout_failure")?,
            callout_retry: host::define_counter("keygate.callout_retry")?,
            callout_skipped: host::define_counter("keygate.callout_skipped")?,
            lookup_batch: host::define_counter("keygate.lookup_batch")?,
            lookup_batch_keys: host::define_counter("keygate.lookup_batch_keys")?,
            coalesced: host::define_counter("keygate.coalesced")?,
            failure_open: host::define_counter("keygate.failure_open")?,
            usage_report_failure: host::define_counter("keygate.usage_report_failure")?,
            feed_poll: host::define_counter("keygate.feed_poll")?,
            feed_poll_failure: host::define_counter("keygate.feed_poll_failure")?,
            feed_reset: host::define_counter("keygate.feed_reset")?,
            feed_changes: host::define_counter("keygate.feed_changes")?,
        })
    }

    /// Counting must never fail a request: a failed increment is logged and dropped.
    pub fn inc(&self, id: u32) {
        if let Err(e) = host::increment_counter(id) {
            log::debug!("{e}");
        }
    }

    pub fn inc_by(&self, id: u32, n: usize) {
        if let Err(e) = host::add_to_counter(id, i64::try_from(n).unwrap_or(i64::MAX)) {
            log::debug!("{e}");
        }
    }

    pub fn allowed(&self) {
        self.allowed.count();
    }

    pub fn public(&self) {
        self.public.count();
    }

    /// Adds the tallies counted since the last flush to Envoy's counters. Called on the tick.
    pub fn flush(&self) {
        let named = [
            &self.allowed,
            &self.public,
            &self.cache_hit,
            &self.jwt_cache_hit,
            &self.jwt_rejected_cache_hit,
            &self.jwt_verified,
            &self.overloaded,
        ];
        let by_reason = self.denied.iter().map(|(_, t)| t);
        let by_jwt_reason = self.jwt_rejected.iter().map(|(_, t)| t);
        for tally in named.into_iter().chain(by_reason).chain(by_jwt_reason) {
            tally.flush();
        }
    }

    pub fn jwt_rejected(&self, reason: &str) {
        if let Some((_, tally)) = self.jwt_rejected.iter().find(|(r, _)| *r == reason) {
            tally.count();
        }
    }

    pub fn denied(&self, reason: DenyReason) {
        if let Some((_, tally)) = self.denied.iter().find(|(r, _)| *r == reason) {
            tally.count();
        }
    }
}

/// A counter bumped per request: counted here, added to Envoy's on the tick.
#[derive(Debug, Clone)]
pub struct Tally {
    id: u32,
    pending: Cell<u64>,
}

impl Tally {
    fn define(name: &str) -> HostResult<Self> {
        Ok(Self {
            id: host::define_counter(name)?,
            pending: Cell::new(0),
        })
    }

    /// One more, without a host call.
    pub fn count(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }

    /// One more; true when it is the first since the last flush, so that what a flood bumps on
    /// every request is logged at most once per tick.
    pub fn count_first(&self) -> bool {
        let first = self.pending.get() == 0;
        self.count();
        first
    }

    /// Adds what was counted since the last flush to Envoy's counter (no host call if nothing).
    fn flush(&self) {
        let n = self.pending.take();
        if n == 0 {
            return;
        }
        if let Err(e) = host::add_to_counter(self.id, i64::try_from(n).unwrap_or(i64::MAX)) {
            log::debug!("{e}");
        }
    }
}
