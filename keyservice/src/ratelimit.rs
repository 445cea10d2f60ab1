//! [`FailureLimiter`]: slows down secret guessing at the token endpoint, without letting anyone
//! lock a client out.
//!
//! Failed client authentications (wrong secret, unknown client) are counted over a sliding window
//! against two keys: the pair (client id, [`Source`]) and the source alone. Once a pair or a
//! source has [`FailurePolicy`]'s maximum of failures in the window, every attempt from that
//! source (for that client, or for any client) is refused with 429 and `Retry-After` (even one
//! with the right secret, so a guesser cannot tell a hit) until the oldest failure leaves the
//! window. A success clears its pair's count, not the source's.
//!
//! Nothing is counted against a client id alone. Client ids are not secret, so such a lock would
//! let anyone lock the real client out with a few wrong secrets a minute; failures from one
//! source never deny another. What bounds guessing is the per-source limit: a source gets
//! [`FailurePolicy::max_per_source`] guesses per window whatever ids it tries, against secrets of
//! 256 random bits.
//!
//! The state is in memory, per process, and bounded: past [`FailurePolicy::max_tracked`] keys,
//! the key whose latest failure is oldest is forgotten. Time is an argument.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};

use time::{Duration, OffsetDateTime};

use crate::clients::ClientId;

/// How many failures are tolerated, and for how long they count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    pub window: Duration,
    /// Failures for one client id from one source within the window before that source is
    /// refused for that client.
    pub max_per_client_and_source: usize,
    /// Failures from one source within the window, whatever the client ids, before the source is
    /// refused for every client. Higher than per pair: many clients may share an address (NAT).
    pub max_per_source: usize,
    /// Pairs (and, separately, sources) remembered at most.
    pub max_tracked: usize,
}

impl Default for FailurePolicy {
    /// 5 failures per client id and source and 20 per source within a minute; 10 000 of each
    /// tracked.
    fn default() -> Self {
        Self {
            window: Duration::seconds(60),
            max_per_client_and_source: 5,
            max_per_source: 20,
            max_tracked: 10_000,
        }
    }
}

/// Where a request comes from, as the limiter counts it: an IPv4 address, or the /64 prefix of an
/// IPv6 address (one host commonly holds a whole /64, and counting single addresses would let
/// it take a fresh one for every guess). An IPv4-mapped IPv6 address counts as its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6Prefix(u64),
    /// The server did not record the peer (only when the router is served without
    /// [`crate::run`]): all such requests count as one source.
    Unknown,
}

impl Source {
    pub fn of(ip: Option<IpAddr>) -> Self {
        match ip {
            None => Self::Unknown,
            Some(IpAddr::V4(v4)) => Self::V4(v4),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Prefix((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => write!(f, "{v4}"),
            Self::V6Prefix(prefix) => {
                write!(f, "{}/64", Ipv6Addr::from_bits(u128::from(*prefix) << 64))
            }
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// The answer to a locked pair or source: retry after this many seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// Failure counts, shared by all requests.
#[derive(Debug)]
pub struct FailureLimiter {
    policy: FailurePolicy,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    pairs: Windows<(ClientId, Source)>,
    sources: Windows<Source>,
}

impl FailureLimiter {
    pub fn new(policy: FailurePolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(State::default()),
        }
    }

    /// `Err` when `source` is locked for `client`, or for everyone, at `now`; the longer wait
    /// wins. `client` is `None` when the presented id was malformed.
    pub fn check(
        &self,
        client: Option<&ClientId>,
        source: Source,
        now: OffsetDateTime,
    ) -> Result<(), RetryAfter> {
        let p = &self.policy;
        let mut state = self.lock();
        let waits = [
            client.and_then(|c| {
                state.pairs.locked_for(
                    &(c.clone(), source),
                    p.max_per_client_and_source,
                    p.window,
                    now,
                )
            }),
            state
                .sources
                .locked_for(&source, p.max_per_source, p.window, now),
        ];
        match waits.into_iter().flatten().max() {
            Some(wait) => Err(RetryAfter(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication. `client` is `None` when the id was malformed: such a
    /// guess counts against the source only.
    pub fn record_failure(&self, client: Option<&ClientId>, source: Source, now: OffsetDateTime) {
        let p = &self.policy;
        let mut state = self.lock();
        if let Some(client) = client {
            state.pairs.record(
                (client.clone(), source),
                p.max_per_client_and_source,
                p.window,
                p.max_tracked,
                now,
            );
        }
        state
            .sources
            .record(source, p.max_per_source, p.window, p.max_tracked, now);
    }

    /// Forgets the failures of `client` from `source` after it authenticated from there.
    pub fn record_success(&self, client: &ClientId, source: Source) {
        self.lock().pairs.entries.remove(&(client.clone(), source));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Recent failure times per key, oldest first, at most the limit per key.
#[derive(Debug)]
struct Windows<K> {
    entries: HashMap<K, VecDeque<OffsetDateTime>>,
}

impl<K> Default for Windows<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Windows<K> {
    /// Seconds until `key` may try again, if it has `max` failures within the window.
    fn locked_for(
        &mut self,
        key: &K,
        max: usize,
        window: Duration,
        now: OffsetDateTime,
    ) -> Option<u64> {
        let times = self.entries.get_mut(key)?;
        prune(times, window, now);
        if times.is_empty() {
            self.entries.remove(key);
            return None;
        }
        if times.len() < max {
            return None;
        }
        let oldest = *times.front()?;
        let wait = (oldest + window - now).whole_seconds();
        Some(u64::try_from(wait).unwrap_or(0).max(1))
    }

    fn record(
        &mut self,
        key: K,
        max: usize,
        window: Duration,
        max_tracked: usize,
        now: OffsetDateTime,
    ) {
        if !self.entries.contains_key(&key) && self.entries.len() >= max_tracked {
            self.make_room(window, now);
        }
        let times = self.entries.entry(key).or_default();
        prune(times, window, now);
        times.push_back(now);
        // Only the latest `max` matter: they decide both the lock and its end.
        while times.len() > max {
            times.pop_front();
        }
    }

    /// Drops keys with no failure in the window; if none, the one whose latest failure is oldest.
    fn make_room(&mut self, window: Duration, now: OffsetDateTime) {
        self.entries.retain(|_, times| {
            prune(times, window, now);
            !times.is_empty()
        });
        if self.entries.is_empty() {
            return;
        }
        let stalest = self
            .entries
            .iter()
            .min_by_key(|(_, times)| times.back().copied())
            .map(|(key, _)| key.clone());
        if let Some(key) = stalest {
            self.entries.remove(&key);
        }
    }
}

fn prune(times: &mut VecDeque<OffsetDateTime>, window: Duration, now: OffsetDateTime) {
    while times.front().is_some_and(|&t| t + window <= now) {
        times.pop_front();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::credentials::ID_RANDOM_BYTES as CLIENT_ID_RANDOM_BYTES;

    /// 2026-11-22T10:00:00Z
    const NOW_UNIX: i64 = 1_795_341_600;
    const SOURCE: Source = Source::V4(Ipv4Addr::new(192, 0, 2, 1));
    const OTHER_SOURCE: Source = Source::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn at(offset_secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW_UNIX + offset_secs).unwrap()
    }

    fn client(byte: u8) -> ClientId {
        ClientId::from_random([byte; CLIENT_ID_RANDOM_BYTES])
    }

    fn policy() -> FailurePolicy {
        FailurePolicy {
            window: Duration::seconds(60),
            max_per_client_and_source: 3,
            max_per_source: 5,
            max_tracked: 4,
        }
    }

    #[test]
    fn pair_is_locked_after_max_failures_until_the_oldest_leaves_the_window() {
        let limiter = FailureLimiter::new(policy());
        let c = client(1);
        for t in [0, 10, 20] {
            assert_eq!(limiter.check(Some(&c), SOURCE, at(t)), Ok(()));
            limiter.record_failure(Some(&c), SOURCE, at(t));
        }
        assert_eq!(limiter.check(Some(&c), SOURCE, at(20)), Err(RetryAfter(40)));
        assert_eq!(limiter.check(Some(&c), SOURCE, at(59)), Err(RetryAfter(1)));
        // The failure at 0 has left the window; the one at 10 leaves at 70.
        assert_eq!(limiter.check(Some(&c), SOURCE, at(60)), Ok(()));
        limiter.record_failure(Some(&c), SOURCE, at(60));
        assert_eq!(limiter.check(Some(&c), SOURCE, at(60)), Err(RetryAfter(10)));
        // Other clients from the same source are not affected (below the source's limit).
        assert_eq!(limiter.check(Some(&client(2)), SOURCE, at(60)), Ok(()));
    }

    #[test]
    fn failures_from_one_source_never_deny_another() {
        let limiter = FailureLimiter::new(policy());
        let c = client(1);
        for t in 0..50 {
            limiter.record_failure(Some(&c), SOURCE, at(t));
            limiter.record_failure(None, SOURCE, at(t));
        }
        assert!(limiter.check(Some(&c), SOURCE, at(50)).is_err());
        assert!(limiter.check(Some(&client(2)), SOURCE, at(50)).is_err());
        assert_eq!(limiter.check(Some(&c), OTHER_SOURCE, at(50)), Ok(()));
        assert_eq!(limiter.check(None, OTHER_SOURCE, at(50)), Ok(()));
    }

    #[test]
    fn source_is_locked_across_client_ids_and_malformed_ids() {
        let limiter = FailureLimiter::new(policy());
        for (i, t) in (0..5).enumerate() {
            let id = (i % 2 == 0).then(|| client(i as u8));
            limiter.record_failure(id.as_ref(), SOURCE, at(t));
        }
        assert_eq!(
            limiter.check(Some(&client(9)), SOURCE, at(5)),
            Err(RetryAfter(55))
        );
        assert_eq!(limiter.check(None, SOURCE, at(5)), Err(RetryAfter(55)));
        assert_eq!(limiter.check(Some(&client(9)), OTHER_SOURCE, at(5)), Ok(()));
    }

    #[test]
    fn success_clears_the_pair_count_but_not_the_source_count() {
        let limiter = FailureLimiter::new(FailurePolicy {
            max_per_source: 4,
            ..policy()
        });
        let c = client(1);
        limiter.record_failure(Some(&c), SOURCE, at(0));
        limiter.record_failure(Some(&c), SOURCE, at(1));
        limiter.record_success(&c, SOURCE);
        limiter.record_failure(Some(&c), SOURCE, at(2));
        assert_eq!(limiter.check(Some(&c), SOURCE, at(2)), Ok(()));
        limiter.record_failure(Some(&c), SOURCE, at(3));
        assert_eq!(limiter.check(Some(&c), SOURCE, at(3)), Err(RetryAfter(57)));
    }

    #[test]
    fn ipv6_sources_are_counted_per_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(Some(a)), Source::of(Some(b)));
        assert_ne!(Source::of(Some(a)), Source::of(Some(c)));
        assert_eq!(Source::of(Some(a)).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Source::of(Some(mapped)), SOURCE);
        assert_eq!(Source::of(None), Source::Unknown);
    }

    #[test]
    fn tracked_keys_are_bounded_forgetting_the_stalest() {
        let limiter = FailureLimiter::new(policy());
        let first = client(0);
        for _ in 0..3 {
            limiter.record_failure(Some(&first), SOURCE, at(0));
        }
        for i in 1..=4u8 {
            limiter.record_failure(Some(&client(i)), OTHER_SOURCE, at(i64::from(i)));
        }
        let state = limiter.lock();
        assert_eq!(state.pairs.entries.len(), 4);
        assert!(!state.pairs.entries.contains_key(&(first, SOURCE)));
    }
}
