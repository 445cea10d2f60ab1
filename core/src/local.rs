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

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, RandomState};

use crate::cache::KeysDigest;
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

/// How long a worker remembers a rejected token, in seconds. Every refusal remembered stays
/// true for as long as the keys do ([`RejectedTokens::remembers`]), so this only turns the set
/// over; the set is emptied when the keys change ([`RejectedTokens::keys_are`]).
pub const REJECTED_TTL_SECS: u64 = 300;

/// The tokens this worker refused after checking their signature, by [`TokenTag`], with the
/// refusal: the same token sent again is refused the same way after a map lookup, without
/// verifying its signature again (an ES256 or RS256 verification costs hundreds of microseconds
/// as Wasm; the lookup well under one). A flood of one forged token then costs one verification
/// per worker per [`REJECTED_TTL_SECS`].
///
/// Per worker, in Wasm memory, rather than in shared data: a hit then costs no host call, and
/// remembering costs no shared-data write, so a flood of distinct forged tokens cannot make every
/// worker contend on shared data's locks either. The price is that each worker verifies a given
/// token once (Envoy runs a few workers), which is nothing against a flood.
///
/// Bounded at `capacity` tokens, oldest out first. All entries live equally long, so the oldest
/// is also the first to go stale. Unlike [`LocalCache`], a full set still admits: otherwise
/// `capacity` distinct forged tokens sent once per TTL (a one-off cost) would keep the set full
/// and leave a flood of one token unremembered. Here, to push a token out an attacker must have
/// `capacity` other tokens refused after it, each costing a full verification: what sending
/// distinct tokens costs anyway, so eviction buys a flood nothing. A token pushed out is simply
/// verified again. Memory: at most `capacity` entries of a tag, a time and a [`JwtError`]
/// (100 to 150 bytes each with the map's and the queue's overhead: at most about 600 KiB per
/// worker at the default 4,096).
///
/// Never makes a valid token fail: only refusals that depend on nothing but the token's bytes,
/// the keys and the configuration (fixed for a worker's life) are kept, or that time can only
/// make more true (`Expired`); the set is emptied when the keys change; and a tag is 128 keyed
/// bits, so no token can be crafted to share a valid one's. What is not remembered, and why:
/// - refusals found before the signature check (malformed, `alg: none`, unknown `kid`, no
///   matching key, ...): they cost a parse, no more than the lookup saves, and an unknown `kid`
///   may be known after the next fetch;
/// - `NotYetValid` and `IssuedInFuture`: time makes them false.
#[derive(Debug)]
pub struct RejectedTokens {
    refused: HashMap<TokenTag, (u64, JwtError)>,
    /// Tags in the order they were remembered, with their `fresh_until`: an item whose time is
    /// not its tag's in `refused` any more is a leftover of an earlier stay, dropped when it
    /// comes out.
    order: VecDeque<(TokenTag, u64)>,
    capacity: usize,
    /// The keys the refusals were found with.
    keys: KeysDigest,
}

impl RejectedTokens {
    /// A set of at most `capacity` tokens (`cache.worker_max_entries`); 0 remembers none.
    pub fn new(capacity: usize) -> Self {
        Self {
            refused: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            keys: KeysDigest::default(),
        }
    }

    /// Whether a refusal for `error` is remembered: it must hold for as long as the keys do.
    /// Every variant is named, so a new one needs a decision.
    pub fn remembers(error: &JwtError) -> bool {
        match error {
            // Found after the signature check, from the token, the keys and the configuration.
            JwtError::BadSignature
            | JwtError::WrongIssuer
            | JwtError::WrongAudience
            | JwtError::MissingClaim(_)
            | JwtError::InvalidClaim(_) => true,
            // Past `exp` plus the skew now, past it at every later time.
            JwtError::Expired => true,
            // Time makes these false.
            JwtError::NotYetValid | JwtError::IssuedInFuture => false,
            // Found before any signature check: as cheap as a lookup, and `UnknownKid` may pass
            // after a refetch. (A payload that is not JSON under a good signature is also
            // `Malformed`: only the key's owner can make one.)
            JwtError::TooLarge { .. }
            | JwtError::Malformed(_)
            | JwtError::AlgNone
            | JwtError::UnsupportedAlgorithm
            | JwtError::Crit
            | JwtError::UnknownKid
            | JwtError::NoMatchingKey
            | JwtError::AmbiguousKey
            | JwtError::AlgorithmMismatch => false,
        }
    }

    /// How `tag`'s token was refused here within [`REJECTED_TTL_SECS`], if it was.
    pub fn refusal(&self, tag: &TokenTag, now: u64) -> Option<&JwtError> {
        match self.refused.get(tag) {
            Some((fresh_until, error)) if now < *fresh_until => Some(error),
            _ => None,
        }
    }

    /// Notes how `tag`'s token was refused at `now`, with the keys last given to
    /// [`keys_are`](Self::keys_are); remembers it if [`remembers`](Self::remembers) says so.
    pub fn note(&mut self, tag: TokenTag, error: &JwtError, now: u64) {
        if self.capacity == 0 || !Self::remembers(error) || self.refusal(&tag, now).is_some() {
            return;
        }
        while let Some(&(oldest, fresh_until)) = self.order.front() {
            if fresh_until > now && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            if self
                .refused
                .get(&oldest)
                .is_some_and(|(t, _)| *t == fresh_until)
            {
                self.refused.remove(&oldest);
            }
        }
        let fresh_until = now.saturating_add(REJECTED_TTL_SECS);
        self.refused.insert(tag, (fresh_until, error.clone()));
        self.order.push_back((tag, fresh_until));
    }

    /// Tells the set which keys tokens are verified with now (the digest the verified-token
    /// cache is named by). Different keys forget every token: a signature that failed may now
    /// verify.
    pub fn keys_are(&mut self, keys: KeysDigest) {
        if self.keys != keys {
            self.keys = keys;
            self.refused.clear();
            self.order.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.refused.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refused.is_empty()
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

    /// The digest of a made-up JWKS document numbered `n`.
    fn keys(n: u64) -> KeysDigest {
        let document = n.to_le_bytes();
        KeysDigest::of([Some(&document[..])])
    }

    fn rejected(capacity: usize) -> RejectedTokens {
        let mut r = RejectedTokens::new(capacity);
        r.keys_are(keys(1));
        r
    }

    #[test]
    fn a_token_with_a_bad_signature_is_refused_again_the_same_way_for_the_ttl_and_not_after() {
        let t = tagger();
        let mut r = rejected(10);
        r.note(t.tag("a.b.forged"), &JwtError::BadSignature, NOW);
        let forged = t.tag("a.b.forged");
        assert_eq!(r.refusal(&forged, NOW), Some(&JwtError::BadSignature));
        assert!(r.refusal(&forged, NOW + REJECTED_TTL_SECS - 1).is_some());
        assert_eq!(r.refusal(&forged, NOW + REJECTED_TTL_SECS), None);
        assert_eq!(r.refusal(&t.tag("a.b.other"), NOW), None);
    }

    #[test]
    fn refusals_found_after_the_signature_that_time_cannot_undo_are_remembered_with_their_reason() {
        let t = tagger();
        let mut r = rejected(10);
        for (n, error) in [
            JwtError::Expired,
            JwtError::WrongAudience,
            JwtError::WrongIssuer,
            JwtError::MissingClaim("sub".to_owned()),
            JwtError::InvalidClaim("exp".to_owned()),
        ]
        .iter()
        .enumerate()
        {
            let tag = t.tag(&format!("a.b.{n}"));
            r.note(tag, error, NOW);
            assert_eq!(r.refusal(&tag, NOW), Some(error), "{error}");
        }
    }

    #[test]
    fn refusals_time_can_undo_or_found_before_the_signature_are_not_remembered() {
        let t = tagger();
        let mut r = rejected(10);
        for (n, error) in [
            JwtError::NotYetValid,
            JwtError::IssuedInFuture,
            JwtError::UnknownKid,
            JwtError::NoMatchingKey,
            JwtError::AmbiguousKey,
            JwtError::AlgorithmMismatch,
            JwtError::Malformed("payload is not a JSON object"),
            JwtError::AlgNone,
            JwtError::UnsupportedAlgorithm,
            JwtError::Crit,
            JwtError::TooLarge { limit: 8192 },
        ]
        .iter()
        .enumerate()
        {
            let tag = t.tag(&format!("a.b.{n}"));
            r.note(tag, error, NOW);
            assert_eq!(r.refusal(&tag, NOW), None, "{error}");
        }
        assert!(r.is_empty());
    }

    #[test]
    fn new_keys_forget_every_refusal_and_the_same_keys_keep_them() {
        let t = tagger();
        let mut r = rejected(10);
        r.note(t.tag("a.b.c"), &JwtError::BadSignature, NOW);
        r.keys_are(keys(1));
        assert!(r.refusal(&t.tag("a.b.c"), NOW).is_some());
        r.keys_are(keys(2));
        assert_eq!(r.refusal(&t.tag("a.b.c"), NOW), None);
        assert!(r.is_empty());
        // Back to the first keys: what was forgotten stays forgotten, and is verified again.
        r.keys_are(keys(1));
        assert_eq!(r.refusal(&t.tag("a.b.c"), NOW), None);
    }

    #[test]
    fn a_full_set_admits_a_new_token_in_place_of_the_oldest() {
        let t = tagger();
        let mut r = rejected(100);
        for n in 0..1_000 {
            r.note(t.tag(&format!("a.b.{n}")), &JwtError::BadSignature, NOW);
            assert!(r.len() <= 100 && r.order.len() <= 100);
        }
        assert_eq!(r.refusal(&t.tag("a.b.899"), NOW), None);
        for n in 900..1_000 {
            assert!(r.refusal(&t.tag(&format!("a.b.{n}")), NOW).is_some());
        }
        // A set filled once cannot keep out the token flooded next.
        r.note(t.tag("a.b.flood"), &JwtError::BadSignature, NOW + 1);
        assert!(r.refusal(&t.tag("a.b.flood"), NOW + 1).is_some());
    }

    #[test]
    fn a_token_noted_again_after_its_entry_went_stale_is_remembered_anew() {
        let t = tagger();
        let mut r = rejected(2);
        let tag = t.tag("a.b.c");
        r.note(tag, &JwtError::BadSignature, NOW);
        let later = NOW + REJECTED_TTL_SECS;
        r.note(tag, &JwtError::BadSignature, later);
        r.note(t.tag("a.b.d"), &JwtError::BadSignature, later);
        assert!(r.refusal(&tag, later + REJECTED_TTL_SECS - 1).is_some());
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn capacity_zero_remembers_no_rejected_token() {
        let t = tagger();
        let mut r = rejected(0);
        r.note(t.tag("a.b.c"), &JwtError::BadSignature, NOW);
        assert_eq!(r.refusal(&t.tag("a.b.c"), NOW), None);
    }

    /// Random notes, key changes and clock steps on a small set, against what it promises: never
    /// over capacity; a refusal it gives is the last one noted for that token since the keys
    /// last changed, within the TTL; and a token stays until `capacity` other tokens were
    /// remembered after it (each of which cost a verification), its TTL ends, or the keys change.
    #[test]
    fn random_use_keeps_the_bound_and_the_promises() {
        const CAPACITY: usize = 8;
        let t = tagger();
        let errors = [
            JwtError::BadSignature,
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::UnknownKid,
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut r = rejected(CAPACITY);
        let mut generation = 1;
        let mut now = NOW;
        // Per token: when it was last remembered and with what, and the remembered notes since.
        let mut noted: HashMap<u64, (u64, JwtError)> = HashMap::new();
        let mut log: Vec<u64> = Vec::new();
        for _ in 0..20_000 {
            match next(100) {
                0 => {
                    let before = generation;
                    generation += next(2);
                    r.keys_are(keys(generation));
                    if generation != before {
                        noted.clear();
                        log.clear();
                    }
                }
                1..=10 => now += next(REJECTED_TTL_SECS / 2),
                _ => {
                    let token = next(20);
                    let tag = t.tag(&format!("h.p.{token}"));
                    let error = &errors[usize::try_from(next(4)).unwrap_or(0)];
                    let fresh = r.refusal(&tag, now).is_some();
                    r.note(tag, error, now);
                    if RejectedTokens::remembers(error) && !fresh {
                        noted.insert(token, (now, error.clone()));
                        log.push(token);
                    }
                }
            }
            assert!(r.len() <= CAPACITY && r.order.len() <= CAPACITY);
            for token in 0..20 {
                let tag = t.tag(&format!("h.p.{token}"));
                let got = r.refusal(&tag, now);
                let Some((at, error)) = noted.get(&token) else {
                    assert_eq!(got, None, "token {token} was never remembered");
                    continue;
                };
                let within_ttl = now < at + REJECTED_TTL_SECS;
                if !within_ttl {
                    assert_eq!(got, None);
                    continue;
                }
                if let Some(got) = got {
                    assert_eq!(got, error);
                }
                let last = log.iter().rposition(|n| n == &token).unwrap_or(0);
                if log.len() - last - 1 < CAPACITY {
                    assert!(got.is_some(), "token {token} pushed out too soon");
                }
            }
        }
    }
}
