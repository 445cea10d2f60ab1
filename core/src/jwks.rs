//! When to fetch a remote JWKS, shared by every worker through one small record in Envoy shared
//! data.
//!
//! - Keys are fetched at start, then every `refresh_secs`, before they go stale.
//! - One worker fetches at a time: a worker takes a lease by compare-and-swap on the record
//!   (`next_fetch_at` moved past the fetch timeout), so workers don't all fetch at once, and a
//!   fetch that never answers frees the lease by itself.
//! - A failed fetch keeps the old keys (they are a separate shared-data value, only replaced by a
//!   good fetch) and retries with exponential backoff: 1 s, 2 s, 4 s, … up to 60 s.
//! - A token with an unknown `kid` may pull the next fetch forward to now, at most once per
//!   `min_refetch_interval_secs`: an IdP's key rotation is picked up at once, and a stream of junk
//!   kids causes no fetch storm.

use crate::config::{Fingerprint, Provider};
use crate::credential::Strip;
use crate::jwt::UnverifiedToken;
use crate::key::KeyHash;
use crate::local::TokenTag;
use crate::route::Permission;

/// Longest wait between retries of a failing fetch.
pub const MAX_BACKOFF_SECS: u64 = 60;
/// How long past a provider's fetch timeout a request waits for its keys.
pub const WAIT_GRACE_SECS: u64 = 2;
const ENCODED_LEN: usize = 32;

/// The shared fetch schedule of one provider. All times are unix seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchSchedule {
    /// Last successful fetch; 0 = never.
    pub fetched_at: u64,
    /// No worker starts a fetch before this.
    pub next_fetch_at: u64,
    /// Failed fetches in a row.
    pub failures: u32,
    /// Last time an unknown `kid` pulled a fetch forward.
    pub last_kid_refetch: u64,
    /// Bumped by every successful fetch: a worker re-reads the keys only when it changes.
    pub generation: u32,
}

impl FetchSchedule {
    pub fn due(&self, now: u64) -> bool {
        now >= self.next_fetch_at
    }

    /// Takes the fetch lease: nobody else starts a fetch until this one had time to answer.
    pub fn lease(&mut self, now: u64, timeout_secs: u64) {
        self.next_fetch_at = now + timeout_secs + 1;
    }

    pub fn on_success(&mut self, now: u64, refresh_secs: u64) {
        self.fetched_at = now;
        self.generation = self.generation.wrapping_add(1);
        self.failures = 0;
        self.next_fetch_at = now + refresh_secs;
    }

    pub fn on_failure(&mut self, now: u64) {
        self.failures = self.failures.saturating_add(1);
        let backoff = 1u64
            .checked_shl(self.failures - 1)
            .unwrap_or(MAX_BACKOFF_SECS);
        self.next_fetch_at = now + backoff.min(MAX_BACKOFF_SECS);
    }

    /// An unknown `kid` asks for a fetch now. Granted at most once per `min_interval_secs`;
    /// returns whether it was.
    pub fn request_refetch(&mut self, now: u64, min_interval_secs: u64) -> bool {
        let allowed =
            self.last_kid_refetch == 0 || now >= self.last_kid_refetch + min_interval_secs;
        if allowed {
            self.last_kid_refetch = now;
            self.next_fetch_at = self.next_fetch_at.min(now);
        }
        allowed
    }

    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[0..8].copy_from_slice(&self.fetched_at.to_le_bytes());
        out[8..16].copy_from_slice(&self.next_fetch_at.to_le_bytes());
        out[16..20].copy_from_slice(&self.failures.to_le_bytes());
        out[20..28].copy_from_slice(&self.last_kid_refetch.to_le_bytes());
        out[28..32].copy_from_slice(&self.generation.to_le_bytes());
        out
    }

    /// Unreadable bytes give the default schedule: fetch now.
    pub fn decode(bytes: &[u8]) -> Self {
        let u64_at = |i: usize| {
            bytes
                .get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let u32_at = |i: usize| {
            bytes
                .get(i..i + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
        };
        if bytes.len() != ENCODED_LEN {
            return Self::default();
        }
        Self {
            fetched_at: u64_at(0).unwrap_or(0),
            next_fetch_at: u64_at(8).unwrap_or(0),
            failures: u32_at(16).unwrap_or(0),
            last_kid_refetch: u64_at(20).unwrap_or(0),
            generation: u32_at(28).unwrap_or(0),
        }
    }
}

/// A request that waits for a provider's keys: its first fetch, or a refetch for an unknown
/// `kid`.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub context_id: u32,
    /// Index in `jwt.providers`.
    pub provider: usize,
    /// Parsed, so that its payload is not parsed again when it is verified.
    pub token: UnverifiedToken,
    pub hash: KeyHash,
    pub tag: TokenTag,
    pub required: Vec<Permission>,
    pub strip: Strip,
}

/// A [`TokenRequest`] parked, and when to try it again.
#[derive(Debug, Clone)]
pub struct ParkedToken {
    pub request: TokenRequest,
    /// Unix seconds after which it is answered with what there is.
    deadline: u64,
    /// The key generation it was parked on; new keys make it try again.
    seen_generation: Option<u32>,
}

impl ParkedToken {
    /// Parks `request` at `now`, when the worker's copy of `provider`'s keys is at `generation`.
    /// It waits at most the provider's fetch timeout and [`WAIT_GRACE_SECS`].
    pub fn park(
        request: TokenRequest,
        provider: &Provider,
        generation: Option<u32>,
        now: u64,
    ) -> Self {
        let timeout = provider.remote().map_or(0, |r| r.timeout.as_secs());
        Self {
            request,
            deadline: now + timeout + WAIT_GRACE_SECS,
            seen_generation: generation,
        }
    }

    /// Whether to try it again now: its keys changed since it was parked (`generation` is the
    /// worker's current one), or its wait is over.
    pub fn ready(&self, generation: Option<u32>, now: u64) -> bool {
        now >= self.deadline || (generation.is_some() && generation != self.seen_generation)
    }
}

/// The requests of one worker parked until their providers' keys arrive. Each holds its token
/// and parsed payload; how many may wait at once is the worker's bound on waiting requests
/// (`FilterConfig::max_waiting_requests`), shared with the key lookups.
#[derive(Debug, Default)]
pub struct ParkedTokens {
    entries: Vec<ParkedToken>,
}

impl ParkedTokens {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn park(&mut self, token: ParkedToken) {
        self.entries.push(token);
    }

    /// Takes out the parked requests that are [`ParkedToken::ready`] at `now`; `generation`
    /// gives the worker's current key generation of a provider, by index.
    pub fn take_ready(
        &mut self,
        generation: impl Fn(usize) -> Option<u32>,
        now: u64,
    ) -> Vec<ParkedToken> {
        let (ready, waiting) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|p: &ParkedToken| p.ready(generation(p.request.provider), now));
        self.entries = waiting;
        ready
    }

    /// Forgets the request of stream `context_id`, which ended while parked: its place and
    /// its memory are free at once, not at its deadline.
    pub fn gone(&mut self, context_id: u32) {
        self.entries.retain(|p| p.request.context_id != context_id);
    }
}

/// Shared-data key of a provider's schedule, under the configuration that names it (two
/// listeners may give the same provider name different JWKS addresses).
pub fn schedule_key(config: Fingerprint, provider: &str) -> String {
    format!("keygate.jwks.{config}.{provider}.schedule")
}

/// Shared-data key of a provider's last good JWKS document.
pub fn keys_key(config: Fingerprint, provider: &str) -> String {
    format!("keygate.jwks.{config}.{provider}.keys")
}

#[cfg(test)]
mod tests {

    fn provider(jwks: &str) -> crate::config::Provider {
        let json = format!(
            r#"{{"key_service":{{"cluster":"ks","token":"t"}},"jwt":{{"providers":[{{"name":"idp","issuer":"i","audiences":["a"],"jwks":{jwks}}}]}}}}"#
        );
        let mut cfg = crate::config::FilterConfig::from_json(json.as_bytes()).unwrap();
        cfg.jwt.providers.remove(0)
    }

    fn parked(generation: Option<u32>) -> ParkedToken {
        parked_from(3, generation)
    }

    fn parked_from(context_id: u32, generation: Option<u32>) -> ParkedToken {
        let request = TokenRequest {
            context_id,
            provider: 0,
            // {"alg":"none"} . {"iss":"i"} . (no signature)
            token: UnverifiedToken::parse("eyJhbGciOiJub25lIn0.eyJpc3MiOiJpIn0.".to_owned())
                .unwrap(),
            hash: KeyHash::of(b"t"),
            tag: crate::local::Tagger::new(Default::default(), Default::default()).tag("t"),
            required: Vec::new(),
            strip: Strip::default(),
        };
        let remote = provider(r#"{"remote":{"cluster":"idp","path":"/jwks","timeout_ms":3000}}"#);
        ParkedToken::park(request, &remote, generation, NOW)
    }

    #[test]
    fn a_parked_token_waits_for_new_keys_or_its_deadline() {
        let p = parked(None);
        assert!(!p.ready(None, NOW));
        assert!(p.ready(Some(1), NOW), "first keys arrived");
        let deadline = NOW + 3 + WAIT_GRACE_SECS;
        assert!(!p.ready(None, deadline - 1));
        assert!(p.ready(None, deadline));

        let refetch = parked(Some(4));
        assert!(!refetch.ready(Some(4), NOW), "the same keys as when parked");
        assert!(refetch.ready(Some(5), NOW));
    }

    #[test]
    fn parked_requests_leave_when_ready_or_gone() {
        let mut parked = ParkedTokens::default();
        parked.park(parked_from(1, None));
        parked.park(parked_from(2, Some(7)));
        parked.park(parked_from(3, None));
        assert_eq!(parked.len(), 3);

        // A stream that ended leaves at once.
        parked.gone(1);
        parked.gone(99);
        assert_eq!(parked.len(), 2);

        // Provider 0's keys arrive: only the request parked on older keys is ready; the one
        // parked on generation 7 waits for a change.
        let ready = parked.take_ready(|_| Some(7), NOW);
        let ids: Vec<u32> = ready.iter().map(|p| p.request.context_id).collect();
        assert_eq!(ids, [3]);
        assert_eq!(parked.len(), 1);
        // Its deadline frees the last one.
        let deadline = NOW + 3 + WAIT_GRACE_SECS;
        assert!(parked.take_ready(|_| Some(7), deadline - 1).is_empty());
        assert_eq!(parked.take_ready(|_| Some(7), deadline).len(), 1);
        assert!(parked.is_empty());
    }

    #[test]
    fn shared_keys_are_named_by_the_configuration() {
        let a = Fingerprint::of(b"a");
        let b = Fingerprint::of(b"b");
        assert_ne!(schedule_key(a, "idp"), schedule_key(b, "idp"));
        assert_ne!(keys_key(a, "idp"), keys_key(b, "idp"));
        assert_ne!(keys_key(a, "idp"), schedule_key(a, "idp"));
    }

    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_new_schedule_is_due_at_once() {
        assert!(FetchSchedule::default().due(NOW));
        assert_eq!(FetchSchedule::decode(b"junk"), FetchSchedule::default());
    }

    #[test]
    fn lease_blocks_other_workers_until_the_fetch_timed_out() {
        let mut s = FetchSchedule::default();
        s.lease(NOW, 1);
        assert!(!s.due(NOW + 1));
        assert!(s.due(NOW + 2));
    }

    #[test]
    fn success_schedules_the_refresh_and_clears_failures() {
        let mut s = FetchSchedule {
            failures: 3,
            ..Default::default()
        };
        s.on_success(NOW, 300);
        assert_eq!(
            (s.fetched_at, s.next_fetch_at, s.failures),
            (NOW, NOW + 300, 0)
        );
        assert_eq!(s.generation, 1);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_cap() {
        let mut s = FetchSchedule::default();
        let waits: Vec<u64> = (0..9)
            .map(|_| {
                s.on_failure(NOW);
                s.next_fetch_at - NOW
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        for _ in 0..100 {
            s.on_failure(NOW);
        }
        assert_eq!(s.next_fetch_at - NOW, MAX_BACKOFF_SECS);
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let mut s = FetchSchedule::default();
        s.on_success(NOW, 300);
        assert!(s.request_refetch(NOW + 5, 30));
        assert!(s.due(NOW + 5));
        s.on_success(NOW + 5, 300);
        assert!(!s.request_refetch(NOW + 20, 30), "too soon");
        assert!(!s.due(NOW + 20));
        assert!(s.request_refetch(NOW + 35, 30));
    }

    #[test]
    fn schedule_round_trips_through_bytes() {
        let s = FetchSchedule {
            fetched_at: 1,
            next_fetch_at: 2,
            failures: 3,
            last_kid_refetch: 4,
            generation: 5,
        };
        assert_eq!(FetchSchedule::decode(&s.encode()), s);
    }
}
