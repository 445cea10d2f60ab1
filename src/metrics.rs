//! The filter's Envoy stats (proxy-wasm counters). Envoy shows them under `wasmcustom.keygate.*`.

use keygate_core::decision::DenyReason;
use keygate_core::jwt::JwtError;

use crate::host::{self, HostResult};

/// Counter ids, defined once per VM at configure time.
#[derive(Debug, Clone)]
pub struct Metrics {
    allowed: u32,
    public: u32,
    denied: Vec<(DenyReason, u32)>,
    jwt_rejected: Vec<(&'static str, u32)>,
    pub jwt_verified: u32,
    pub jwt_cache_hit: u32,
    pub jwks_fetch: u32,
    pub jwks_fetch_failure: u32,
    pub cache_hit: u32,
    pub cache_miss: u32,
    pub callout: u32,
    pub callout_failure: u32,
    /// Lookups not sent because the circuit breaker was open.
    pub callout_skipped: u32,
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
                host::define_counter(&format!("keygate.denied.{}", reason.as_str()))?,
            ));
        }
        let mut jwt_rejected = Vec::with_capacity(JwtError::REASONS.len());
        for reason in JwtError::REASONS {
            jwt_rejected.push((
                reason,
                host::define_counter(&format!("keygate.jwt_rejected.{reason}"))?,
            ));
        }
        Ok(Self {
            jwt_rejected,
            jwt_verified: host::define_counter("keygate.jwt_verified")?,
            jwt_cache_hit: host::define_counter("keygate.jwt_cache_hit")?,
            jwks_fetch: host::define_counter("keygate.jwks_fetch")?,
            jwks_fetch_failure: host::define_counter("keygate.jwks_fetch_failure")?,
            allowed: host::define_counter("keygate.allowed")?,
            public: host::define_counter("keygate.public")?,
            denied,
            cache_hit: host::define_counter("keygate.cache_hit")?,
            cache_miss: host::define_counter("keygate.cache_miss")?,
            callout: host::define_counter("keygate.callout")?,
            callout_failure: host::define_counter("keygate.callout_failure")?,
            callout_skipped: host::define_counter("keygate.callout_skipped")?,
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
        self.inc(self.allowed);
    }

    pub fn public(&self) {
        self.inc(self.public);
    }

    pub fn jwt_rejected(&self, reason: &str) {
        if let Some((_, id)) = self.jwt_rejected.iter().find(|(r, _)| *r == reason) {
            self.inc(*id);
        }
    }

    pub fn denied(&self, reason: DenyReason) {
        if let Some((_, id)) = self.denied.iter().find(|(r, _)| *r == reason) {
            self.inc(*id);
        }
    }
}
