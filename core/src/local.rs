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
use crate::jwt::JwtError;

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

/// A bounded map of `K` to a `V` that is fresh until its own time; by default the prepared
/// [`Outcome`] of a credential.
#[derive(Debug)]
pub struct LocalCache<K, V = Outcome> {
    map: HashMap<K, (u64, V)>,
    capacity: usize,
    /// When a full cache last dropped its stale entries (unix seconds).
    swept_at: u64,
}

impl<K: Eq + Hash + Copy, V> LocalCache<K, V> {
    /// A cache of at most `capacity` entries (`cache.worker_max_entries`); 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity,
            swept_at: 0,
        }
    }

    /// The outcome for `hash` while it is fresh (`now < fresh_until`).
    pub fn get(&self, key: &K, now: u64) -> Option<&V> {
        match self.map.get(key) {
            Some((fresh_until, outcome)) if now < *fresh_until => Some(outcome),
            _ => None,
        }
    }

    /// Keeps `outcome` for `key` until `fresh_until` (unix seconds, exclusive).
    pub fn put(&mut self, key: K, fresh_until: u64, outcome: V, now: u64) {
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

/// How long a worker remembers a forged token, in seconds. A signature that failed under a set
/// of keys fails under it forever, so this only turns the set over; the set is emptied when
/// the keys change (`clear`).
pub const FORGED_TTL_SECS: u64 = 300;

/// The tokens whose signature failed on this worker, by [`TokenTag`]: the same forged token sent
/// again is refused after a map lookup, without verifying its signature again (an ES256 or
/// RS256 verification costs hundreds of microseconds as Wasm; the lookup well under one).
///
/// Per worker, in Wasm memory, rather than in shared data: remembering costs no host call and no
/// shared-data write, so a flood of distinct forged tokens cannot make every worker contend on
/// shared data either, and each worker verifies a given forged token at most once per
/// [`FORGED_TTL_SECS`]. Bounded like [`LocalCache`] (it is one): a full set admits new tokens
/// only as old ones go stale, and a token left out is simply verified again.
///
/// Only [`JwtError::BadSignature`] is remembered. Every other refusal is either cheaper than a
/// verification (it comes before it) or depends on the time (`exp`, `nbf`), and a token refused
/// for an unknown `kid` may pass once the keys are refetched. A bad signature depends on the
/// token's bytes and the keys alone, so the caller must [`clear`](Self::clear) the set when the
/// keys it verifies with change.
#[derive(Debug)]
pub struct ForgedTokens {
    seen: LocalCache<TokenTag, ()>,
}

impl ForgedTokens {
    /// A set of at most `capacity` tokens (`cache.worker_max_entries`); 0 remembers none.
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: LocalCache::new(capacity),
        }
    }

    /// True when `tag`'s token failed its signature check here within [`FORGED_TTL_SECS`].
    pub fn contains(&self, tag: &TokenTag, now: u64) -> bool {
        self.seen.get(tag, now).is_some()
    }

    /// Notes how `tag`'s token was refused; remembers it if its signature failed.
    pub fn note(&mut self, tag: TokenTag, error: &JwtError, now: u64) {
        if *error == JwtError::BadSignature {
            self.seen
                .put(tag, now.saturating_add(FORGED_TTL_SECS), (), now);
        }
    }

    /// Forgets every token: the keys changed, and a signature that failed may now verify.
    pub fn clear(&mut self) {
        self.seen.clear();
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
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

    fn tagger() -> Tagger {
        Tagger::new(RandomState::new(), RandomState::new())
    }

    #[test]
    fn a_token_with_a_bad_signature_is_remembered_for_the_ttl_and_not_after() {
        let t = tagger();
        let mut forged = ForgedTokens::new(10);
        forged.note(t.tag("a.b.forged"), &JwtError::BadSignature, NOW);
        assert!(forged.contains(&t.tag("a.b.forged"), NOW));
        assert!(forged.contains(&t.tag("a.b.forged"), NOW + FORGED_TTL_SECS - 1));
        assert!(!forged.contains(&t.tag("a.b.forged"), NOW + FORGED_TTL_SECS));
        assert!(!forged.contains(&t.tag("a.b.other"), NOW));
    }

    #[test]
    fn only_a_bad_signature_is_remembered() {
        let t = tagger();
        let mut forged = ForgedTokens::new(10);
        for (n, error) in [
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::UnknownKid,
            JwtError::WrongAudience,
            JwtError::Malformed("payload is not a JSON object"),
            JwtError::AlgNone,
        ]
        .iter()
        .enumerate()
        {
            let token = format!("a.b.{n}");
            forged.note(t.tag(&token), error, NOW);
            assert!(!forged.contains(&t.tag(&token), NOW), "{error}");
        }
        assert!(forged.is_empty());
    }

    #[test]
    fn the_forged_set_is_bounded_and_emptied_when_the_keys_change() {
        let t = tagger();
        let mut forged = ForgedTokens::new(100);
        for n in 0..1_000 {
            forged.note(t.tag(&format!("a.b.{n}")), &JwtError::BadSignature, NOW);
            assert!(forged.len() <= 100);
        }
        assert!(forged.contains(&t.tag("a.b.0"), NOW));
        // Room frees as entries go stale.
        let later = NOW + FORGED_TTL_SECS;
        forged.note(t.tag("a.b.late"), &JwtError::BadSignature, later);
        assert!(forged.contains(&t.tag("a.b.late"), later));
        forged.clear();
        assert!(!forged.contains(&t.tag("a.b.late"), later));
    }

    #[test]
    fn capacity_zero_remembers_no_forged_token() {
        let t = tagger();
        let mut forged = ForgedTokens::new(0);
        forged.note(t.tag("a.b.c"), &JwtError::BadSignature, NOW);
        assert!(!forged.contains(&t.tag("a.b.c"), NOW));
    }
}
