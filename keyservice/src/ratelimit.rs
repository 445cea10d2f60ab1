//! [`FailureLimiter`]: slows down secret guessing at the token endpoint.
//!
//! Failed client authentications (wrong secret, unknown client) are counted per client id and per
//! source IP over a sliding window. Once a client id or an IP has [`FailurePolicy`]'s maximum of
//! failures in the window, every attempt for it is refused with 429 and `Retry-After` (even one
//! with the right secret, so a guesser cannot tell a hit) until the oldest failure leaves the
//! window. A success clears the client's count, not the IP's.
//!
//! The state is in memory, per process, and bounded: past [`FailurePolicy::max_tracked`] keys,
//! the key whose latest failure is oldest is forgotten. Time is an argument.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use time::{Duration, OffsetDateTime};

use crate::clients::ClientId;

/// How many failures are tolerated, and for how long they count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    pub window: Duration,
    /// Failures per client id within the window before the id is locked.
    pub max_per_client: usize,
    /// Failures per source IP within the window before the IP is locked. Higher than per client:
    /// many clients may share an address (NAT, a proxy in front of the service).
    pub max_per_ip: usize,
    /// Client ids (and, separately, IPs) remembered at most.
    pub max_tracked: usize,
}

impl Default for FailurePolicy {
    /// 5 failures per client id and 20 per IP within a minute; 10 000 of each tracked.
    fn default() -> Self {
        Self {
            window: Duration::seconds(60),
            max_per_client: 5,
            max_per_ip: 20,
            max_tracked: 10_000,
        }
    }
}

/// The answer to a locked client id or IP: retry after this many seconds (at least 1).
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
    clients: Windows<ClientId>,
    ips: Windows<IpAddr>,
}

impl FailureLimiter {
    pub fn new(policy: FailurePolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(State::default()),
        }
    }

    /// `Err` when the client id or the IP is locked at `now`; the longer wait wins.
    pub fn check(
        &self,
        client: Option<&ClientId>,
        ip: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<(), RetryAfter> {
        let p = &self.policy;
        let mut state = self.lock();
        let waits = [
            client.and_then(|c| state.clients.locked_for(c, p.max_per_client, p.window, now)),
            ip.and_then(|ip| state.ips.locked_for(&ip, p.max_per_ip, p.window, now)),
        ];
        match waits.into_iter().flatten().max() {
            Some(wait) => Err(RetryAfter(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication. `client` is `None` when the id was malformed: such a
    /// guess counts against the IP only.
    pub fn record_failure(
        &self,
        client: Option<&ClientId>,
        ip: Option<IpAddr>,
        now: OffsetDateTime,
    ) {
        let p = &self.policy;
        let mut state = self.lock();
        if let Some(client) = client {
            state.clients.record(
                client.clone(),
                p.max_per_client,
                p.window,
                p.max_tracked,
                now,
            );
        }
        if let Some(ip) = ip {
            state
                .ips
                .record(ip, p.max_per_ip, p.window, p.max_tracked, now);
        }
    }

    /// Forgets the client's failures after it authenticated.
    pub fn record_success(&self, client: &ClientId) {
        self.lock().clients.entries.remove(client);
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
    use crate::clients::CLIENT_ID_RANDOM_BYTES;

    /// 2026-11-22T10:00:00Z
    const NOW_UNIX: i64 = 1_795_341_600;
    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn at(offset_secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW_UNIX + offset_secs).unwrap()
    }

    fn client(byte: u8) -> ClientId {
        ClientId::from_random([byte; CLIENT_ID_RANDOM_BYTES])
    }

    fn policy() -> FailurePolicy {
        FailurePolicy {
            window: Duration::seconds(60),
            max_per_client: 3,
            max_per_ip: 5,
            max_tracked: 4,
        }
    }

    #[test]
    fn client_is_locked_after_max_failures_until_the_oldest_leaves_the_window() {
        let limiter = FailureLimiter::new(policy());
        let c = client(1);
        for t in [0, 10, 20] {
            assert_eq!(limiter.check(Some(&c), Some(IP), at(t)), Ok(()));
            limiter.record_failure(Some(&c), Some(IP), at(t));
        }
        assert_eq!(limiter.check(Some(&c), None, at(20)), Err(RetryAfter(40)));
        assert_eq!(
            limiter.check(Some(&c), Some(OTHER_IP), at(59)),
            Err(RetryAfter(1))
        );
        // The failure at 0 has left the window; the one at 10 leaves at 70.
        assert_eq!(limiter.check(Some(&c), Some(IP), at(60)), Ok(()));
        limiter.record_failure(Some(&c), Some(IP), at(60));
        assert_eq!(limiter.check(Some(&c), None, at(60)), Err(RetryAfter(10)));
        // Other clients are not affected.
        assert_eq!(limiter.check(Some(&client(2)), None, at(60)), Ok(()));
    }

    #[test]
    fn ip_is_locked_across_client_ids_and_malformed_ids() {
        let limiter = FailureLimiter::new(policy());
        for (i, t) in (0..5).enumerate() {
            let id = (i % 2 == 0).then(|| client(i as u8));
            limiter.record_failure(id.as_ref(), Some(IP), at(t));
        }
        assert_eq!(
            limiter.check(Some(&client(9)), Some(IP), at(5)),
            Err(RetryAfter(55))
        );
        assert_eq!(
            limiter.check(Some(&client(9)), Some(OTHER_IP), at(5)),
            Ok(())
        );
    }

    #[test]
    fn success_clears_the_client_count() {
        let limiter = FailureLimiter::new(policy());
        let c = client(1);
        limiter.record_failure(Some(&c), Some(IP), at(0));
        limiter.record_failure(Some(&c), Some(IP), at(1));
        limiter.record_success(&c);
        limiter.record_failure(Some(&c), Some(IP), at(2));
        limiter.record_failure(Some(&c), Some(IP), at(3));
        assert_eq!(limiter.check(Some(&c), None, at(3)), Ok(()));
    }

    #[test]
    fn tracked_keys_are_bounded_forgetting_the_stalest() {
        let limiter = FailureLimiter::new(policy());
        let first = client(0);
        for _ in 0..3 {
            limiter.record_failure(Some(&first), None, at(0));
        }
        for i in 1..=4u8 {
            limiter.record_failure(Some(&client(i)), None, at(i64::from(i)));
        }
        let state = limiter.lock();
        assert_eq!(state.clients.entries.len(), 4);
        assert!(!state.clients.entries.contains_key(&first));
    }
}
