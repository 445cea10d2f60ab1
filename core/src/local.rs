//! A per-worker cache of prepared outcomes, in front of the shared-data cache.
//!
//! Shared data is the cache of record: every worker sees it, and its lifetimes are the policy
//! ([`crate::cache`]). But reading it costs a host call and decoding the entry, and the decoded
//! identity must then be turned into headers. A worker that saw a credential recently keeps the
//! [`Outcome`] ready here, under the same hash, until the shared entry's own `fresh_until` and
//! never longer: a revoked or expired key stops working here exactly when it would have stopped
//! working in shared data.
//!
//! Bounded: a full cache drops its stale entries (one sweep a second at most) and admits a new
//! entry only into the room that frees; the entries it holds stay. So a flood of distinct
//! credentials neither grows the map nor churns it, and no request pays for emptying it. A
//! credential left out is served from shared data as before, and gets in once room frees (every
//! entry goes stale within its shared entry's lifetime, `cache.ttl_secs` at most).
//!
//! API keys are kept under their SHA-256 ([`crate::key::KeyHash`], computed anyway). Tokens are kept under a
//! [`TokenTag`], so that a hit does not have to SHA-256 a whole token (the costliest step of a
//! token cache hit as Wasm).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use crate::decision::Outcome;

/// A worker's name for a bearer token: two independent, randomly keyed 64-bit hashes of it
/// (std's `RandomState`, a keyed SipHash made to resist chosen collisions). The keys never leave
/// the worker's memory, so a client cannot craft a token that shares another token's tag, and
/// 128 bits make a chance collision negligible. Not stored anywhere else, never logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenTag(u64, u64);

/// Makes [`TokenTag`]s with this worker's two random keys.
#[derive(Debug, Clone)]
pub struct Tagger {
    a: RandomState,
    b: RandomState,
}

impl Tagger {
    /// `a` and `b` must be independently seeded (two `RandomState::new()` are).
    pub fn new(a: RandomState, b: RandomState) -> Self {
        Self { a, b }
    }

    pub fn tag(&self, token: &str) -> TokenTag {
        TokenTag(self.a.hash_one(token), self.b.hash_one(token))
    }
}

#[derive(Debug)]
pub struct LocalCache<K> {
    map: HashMap<K, (u64, Outcome)>,
    capacity: usize,
    /// When a full cache last dropped its stale entries (unix seconds).
    swept_at: u64,
}

impl<K: Eq + Hash + Copy> LocalCache<K> {
    /// A cache of at most `capacity` entries (`cache.worker_max_entries`); 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity,
            swept_at: 0,
        }
    }

    /// The outcome for `hash` while it is fresh (`now < fresh_until`).
    pub fn get(&self, key: &K, now: u64) -> Option<&Outcome> {
        match self.map.get(key) {
            Some((fresh_until, outcome)) if now < *fresh_until => Some(outcome),
            _ => None,
        }
    }

    /// Keeps `outcome` for `key` until `fresh_until` (unix seconds, exclusive).
    pub fn put(&mut self, key: K, fresh_until: u64, outcome: Outcome, now: u64) {
        if fresh_until <= now || self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            if now > self.swept_at {
                self.swept_at = now;
                self.map.retain(|_, (until, _)| now < *until);
            }
            if self.map.len() >= self.capacity {
                return;
            }
        }
        self.map.insert(key, (fresh_until, outcome));
    }

    /// Forgets `key`'s entry: its answer changed at the key service.
    pub fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Forgets everything: what it held was prepared under keys or a configuration that no
    /// longer hold.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyHash;
    use crate::wire::InvalidReason;

    const NOW: u64 = 1_800_000_000;

    fn hash(n: u32) -> KeyHash {
        KeyHash::of(&n.to_le_bytes())
    }

    fn revoked() -> Outcome {
        Outcome::Invalid(InvalidReason::Revoked)
    }

    #[test]
    fn token_tags_are_stable_per_worker_and_differ_between_workers_and_tokens() {
        let worker = Tagger::new(RandomState::new(), RandomState::new());
        let other = Tagger::new(RandomState::new(), RandomState::new());
        assert_eq!(worker.tag("a.b.c"), worker.tag("a.b.c"));
        assert_ne!(worker.tag("a.b.c"), worker.tag("a.b.d"));
        assert_ne!(worker.tag("a.b.c"), other.tag("a.b.c"));
        let TokenTag(x, y) = worker.tag("a.b.c");
        assert_ne!(x, y, "the two halves are keyed independently");
    }

    #[test]
    fn tokens_are_cached_under_their_tag() {
        let tagger = Tagger::new(RandomState::new(), RandomState::new());
        let mut c = LocalCache::new(10);
        c.put(tagger.tag("a.b.c"), NOW + 5, revoked(), NOW);
        assert!(c.get(&tagger.tag("a.b.c"), NOW).is_some());
        assert!(c.get(&tagger.tag("a.b.C"), NOW).is_none());
    }

    #[test]
    fn entry_is_served_until_its_fresh_until_and_not_at_it() {
        let mut c = LocalCache::new(10);
        c.put(hash(1), NOW + 5, revoked(), NOW);
        assert_eq!(c.get(&hash(1), NOW + 4), Some(&revoked()));
        assert_eq!(c.get(&hash(1), NOW + 5), None);
        assert_eq!(c.get(&hash(2), NOW), None);
    }

    #[test]
    fn an_entry_already_stale_is_not_kept() {
        let mut c = LocalCache::new(10);
        c.put(hash(1), NOW, revoked(), NOW);
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_cache_drops_stale_entries_first() {
        let mut c = LocalCache::new(3);
        c.put(hash(1), NOW + 1, revoked(), NOW);
        c.put(hash(2), NOW + 100, revoked(), NOW);
        c.put(hash(3), NOW + 100, revoked(), NOW);
        c.put(hash(4), NOW + 100, revoked(), NOW + 2);
        assert_eq!(c.len(), 3);
        assert!(c.get(&hash(2), NOW + 2).is_some());
        assert!(c.get(&hash(4), NOW + 2).is_some());
    }

    #[test]
    fn a_full_cache_of_fresh_entries_keeps_them_and_stays_bounded() {
        let mut c = LocalCache::new(100);
        for n in 0..10_000 {
            c.put(hash(n), NOW + 100, revoked(), NOW);
            assert!(c.len() <= 100);
        }
        assert!(c.get(&hash(0), NOW).is_some());
        assert!(c.get(&hash(9_999), NOW).is_none());
    }

    #[test]
    fn room_freed_by_stale_entries_is_found_at_most_once_a_second() {
        let mut c = LocalCache::new(2);
        c.put(hash(1), NOW + 1, revoked(), NOW);
        c.put(hash(2), NOW + 100, revoked(), NOW);
        // Full at NOW: the sweep finds nothing stale, and is not tried again within NOW.
        c.put(hash(3), NOW + 100, revoked(), NOW);
        assert!(c.get(&hash(3), NOW).is_none());
        // A second later hash(1) is stale: the sweep makes room.
        c.put(hash(3), NOW + 100, revoked(), NOW + 1);
        assert!(c.get(&hash(3), NOW + 1).is_some());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn replacing_an_entry_in_a_full_cache_keeps_the_others() {
        let mut c = LocalCache::new(2);
        c.put(hash(1), NOW + 100, revoked(), NOW);
        c.put(hash(2), NOW + 100, revoked(), NOW);
        c.put(
            hash(2),
            NOW + 200,
            Outcome::Invalid(InvalidReason::Expired),
            NOW,
        );
        assert_eq!(c.len(), 2);
        assert!(c.get(&hash(1), NOW).is_some());
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut c = LocalCache::new(0);
        c.put(hash(1), NOW + 100, revoked(), NOW);
        assert!(c.is_empty());
        assert_eq!(c.get(&hash(1), NOW), None);
    }

    #[test]
    fn a_removed_entry_is_gone_and_the_others_stay() {
        let mut c = LocalCache::new(10);
        c.put(hash(1), NOW + 100, revoked(), NOW);
        c.put(hash(2), NOW + 100, revoked(), NOW);
        c.remove(&hash(1));
        c.remove(&hash(3));
        assert_eq!(c.get(&hash(1), NOW), None);
        assert!(c.get(&hash(2), NOW).is_some());
    }
}
