//! The circuit breaker in front of the key service, shared by every worker of an Envoy.
//!
//! When the key service is down, every cache miss would otherwise make a callout that fails:
//! a probe once saw 11,332 callouts in about 4 s. After [`THRESHOLD`] failures in a row the
//! breaker opens: no lookup is sent (each skipped one answers as `failure_mode` says) until the
//! backoff has passed. Then one worker wins a probe lease and sends one lookup; its success
//! closes the breaker, its failure opens it again for twice as long, up to [`MAX_BACKOFF_SECS`].
//! So while the key service is down, one Envoy sends at most one lookup per backoff period.
//!
//! The state is a few bytes in shared data, changed with compare-and-swap; this module only
//! decides, with `now` passed in.

use crate::config::Fingerprint;

/// Failed lookups in a row that open the breaker.
pub const THRESHOLD: u32 = 3;
/// The first open period; each further failure doubles it.
pub const MIN_BACKOFF_SECS: u64 = 1;
pub const MAX_BACKOFF_SECS: u64 = 16;

const ENCODED_LEN: usize = 20;

/// What a cache miss may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: send the lookup.
    Call,
    /// Half-open: this caller holds the probe lease (write the new state first) and sends it.
    Probe,
    /// Open: do not send it.
    Skip,
}

/// The breaker's state, as stored in shared data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaker {
    /// Failed lookups since the last success.
    failures: u32,
    /// Unix seconds until which it stays open.
    open_until: u64,
    /// Unix seconds until which a probe is in flight; nobody else probes before then.
    probe_until: u64,
}

impl Breaker {
    /// Whether a lookup may go out now. `Probe` changed the state: store it (with CAS) before
    /// sending, and send only if the store won.
    pub fn gate(&mut self, now: u64, probe_timeout_secs: u64) -> Gate {
        if self.failures < THRESHOLD {
            return Gate::Call;
        }
        if now < self.open_until || now < self.probe_until {
            return Gate::Skip;
        }
        self.probe_until = now.saturating_add(probe_timeout_secs.max(1));
        Gate::Probe
    }

    /// A lookup answered. Returns whether the state changed (and needs storing).
    pub fn on_success(&mut self) -> bool {
        let changed = *self != Self::default();
        *self = Self::default();
        changed
    }

    /// A lookup failed (not sent, timed out, or not answered 200).
    pub fn on_failure(&mut self, now: u64) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= THRESHOLD {
            let doublings = (self.failures - THRESHOLD).min(8);
            let backoff = (MIN_BACKOFF_SECS << doublings).min(MAX_BACKOFF_SECS);
            self.open_until = now.saturating_add(backoff);
            self.probe_until = 0;
        }
    }

    pub fn is_open(&self) -> bool {
        self.failures >= THRESHOLD
    }

    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0; ENCODED_LEN];
        out[..4].copy_from_slice(&self.failures.to_le_bytes());
        out[4..12].copy_from_slice(&self.open_until.to_le_bytes());
        out[12..].copy_from_slice(&self.probe_until.to_le_bytes());
        out
    }

    /// Any bytes decode; what is not a stored state reads as closed.
    pub fn decode(bytes: &[u8]) -> Self {
        let Ok(b) = <[u8; ENCODED_LEN]>::try_from(bytes) else {
            return Self::default();
        };
        let u64_at = |i: usize| {
            let mut a = [0; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Self {
            failures: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            open_until: u64_at(4),
            probe_until: u64_at(12),
        }
    }
}

/// Shared-data key of the breaker of the configuration `config` (each names its key service).
pub fn breaker_key(config: Fingerprint) -> String {
    format!("keygate.b.{config}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE_TIMEOUT: u64 = 2;

    fn failed(times: u32, now: u64) -> Breaker {
        let mut b = Breaker::default();
        for _ in 0..times {
            b.on_failure(now);
        }
        b
    }

    #[test]
    fn lookups_go_out_until_the_threshold() {
        let mut b = failed(THRESHOLD - 1, 100);
        assert_eq!(b.gate(100, PROBE_TIMEOUT), Gate::Call);
        b.on_failure(100);
        assert_eq!(b.gate(100, PROBE_TIMEOUT), Gate::Skip);
    }

    #[test]
    fn after_the_backoff_exactly_one_caller_probes() {
        let mut b = failed(THRESHOLD, 100);
        assert_eq!(
            b.gate(100 + MIN_BACKOFF_SECS - 1, PROBE_TIMEOUT),
            Gate::Skip
        );
        let at = 100 + MIN_BACKOFF_SECS;
        assert_eq!(b.gate(at, PROBE_TIMEOUT), Gate::Probe);
        assert_eq!(b.gate(at, PROBE_TIMEOUT), Gate::Skip);
        assert_eq!(b.gate(at + PROBE_TIMEOUT - 1, PROBE_TIMEOUT), Gate::Skip);
        // A probe that never reported back does not hold the lease for ever.
        assert_eq!(b.gate(at + PROBE_TIMEOUT, PROBE_TIMEOUT), Gate::Probe);
    }

    #[test]
    fn each_failed_probe_doubles_the_backoff_up_to_the_cap() {
        let mut b = failed(THRESHOLD, 0);
        let mut now = 0;
        let mut periods = Vec::new();
        for _ in 0..8 {
            let open_until = b.open_until;
            periods.push(open_until - now);
            now = open_until;
            assert_eq!(b.gate(now, PROBE_TIMEOUT), Gate::Probe);
            b.on_failure(now);
        }
        assert_eq!(periods, [1, 2, 4, 8, 16, 16, 16, 16]);
    }

    #[test]
    fn a_success_closes_it() {
        let mut b = failed(THRESHOLD + 2, 100);
        assert!(b.on_success());
        assert_eq!(b.gate(100, PROBE_TIMEOUT), Gate::Call);
        assert!(!b.on_success(), "closed stays closed without a write");
    }

    #[test]
    fn the_state_round_trips_and_junk_reads_as_closed() {
        let mut b = failed(THRESHOLD, 1_700_000_000);
        b.gate(1_700_000_001, PROBE_TIMEOUT);
        assert_eq!(Breaker::decode(&b.encode()), b);
        assert_eq!(Breaker::decode(b"junk"), Breaker::default());
        assert_eq!(Breaker::decode(&[]), Breaker::default());
    }

    #[test]
    fn at_most_one_lookup_per_backoff_while_down() {
        // Every caller that may call does, and every call fails: count calls over 60 s.
        let mut b = Breaker::default();
        let mut calls = 0;
        for now in 1_000..1_060 {
            for _ in 0..1_000 {
                match b.gate(now, PROBE_TIMEOUT) {
                    Gate::Call | Gate::Probe => {
                        calls += 1;
                        b.on_failure(now);
                    }
                    Gate::Skip => {}
                }
            }
        }
        // THRESHOLD to open, then probes after 1+2+4+8+16 s and every 16 s: 6 probes in 60 s.
        assert!(calls <= THRESHOLD + 6, "{calls} calls");
    }
}
