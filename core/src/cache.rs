//! The lookup cache's policy and its byte format in Envoy shared data.
//!
//! Shared data is a process-wide map shared by all worker threads, with compare-and-swap writes and
//! no delete. So the cache is a fixed-size, 4-way set-associative table: the key hash picks one of
//! `ceil(max_entries / 4)` buckets, and each bucket is one shared-data value holding at most four
//! entries. The set of shared-data keys never grows past the bucket count, and a bucket never holds
//! more than four bounded entries, so memory stays bounded however many distinct keys arrive.
//!
//! Eviction inside a bucket: the same hash is replaced in place; then a free way; then an entry that
//! is no longer fresh. Past that, a negative entry (unknown, revoked, expired) may only displace
//! another negative entry, so a flood of bad keys cannot push good keys out; a positive entry
//! displaces the entry that goes stale soonest, negatives first.
//!
//! Lifetimes: a valid answer lives `min(config ttl, service cache_ttl_secs)` and never past the
//! key's expiry; an invalid answer lives `min(config negative ttl, service cache_ttl_secs)`.

use sha2::{Digest, Sha256};

use crate::config::{CachePolicy, Fingerprint};
use crate::key::KeyHash;
use crate::wire::{InvalidReason, LookupResponse};

/// Entries per bucket.
pub const WAYS: usize = 4;
const MAGIC: &[u8; 3] = b"KG1";
/// Longest id, tenant or permission the cache will hold; longer answers are used but not cached.
const MAX_FIELD: usize = 256;
const MAX_PERMISSIONS: usize = 128;
const NEVER: u64 = u64::MAX;

/// Who a valid credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    pub tenant: Option<String>,
    pub permissions: Vec<String>,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<u64>,
}

/// The caller behind a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An API key issued by the key service.
    ApiKey { key_id: String },
    /// A JWT, verified against `provider`'s keys.
    Jwt { subject: String, provider: String },
}

impl Principal {
    fn fields(&self) -> [&str; 2] {
        match self {
            Self::ApiKey { key_id } => [key_id, ""],
            Self::Jwt { subject, provider } => [subject, provider],
        }
    }
}

/// A lookup answer, as cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Valid(Identity),
    Invalid(InvalidReason),
}

/// One cache entry: the answer for `hash`, fresh until `fresh_until` (unix seconds, exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub hash: KeyHash,
    pub fresh_until: u64,
    pub answer: Answer,
}

impl Entry {
    /// Turns the key service's answer into a cache entry. `None` when it must not be cached (zero
    /// lifetime, or fields too long to store); [`answer_of`] still gives the answer to use now.
    pub fn from_lookup(
        hash: KeyHash,
        response: &LookupResponse,
        policy: &CachePolicy,
        now: u64,
    ) -> Option<Self> {
        let answer = answer_of(response, now);
        let ttl = match (&answer, response) {
            (Answer::Valid(_), LookupResponse::Valid { cache_ttl_secs, .. }) => {
                policy.ttl_secs.min(*cache_ttl_secs)
            }
            (_, LookupResponse::Valid { .. }) => policy.negative_ttl_secs,
            (_, LookupResponse::Invalid { cache_ttl_secs, .. }) => {
                policy.negative_ttl_secs.min(*cache_ttl_secs)
            }
        };
        let mut fresh_until = now.saturating_add(ttl);
        if let Answer::Valid(identity) = &answer {
            if let Some(expires_at) = identity.expires_at {
                fresh_until = fresh_until.min(expires_at);
            }
            if !fits(identity) {
                return None;
            }
        }
        (fresh_until > now).then_some(Self {
            hash,
            fresh_until,
            answer,
        })
    }
}

impl Entry {
    /// A verified token's identity, cached under the token's hash until the token expires.
    /// `None` when it has no expiry, is already expired, or is too large to cache.
    pub fn verified(hash: KeyHash, identity: Identity, now: u64) -> Option<Self> {
        let fresh_until = identity.expires_at?;
        (fresh_until > now && fits(&identity)).then_some(Self {
            hash,
            fresh_until,
            answer: Answer::Valid(identity),
        })
    }
}

/// The answer to act on now. A "valid" answer whose expiry has already passed is expired.
pub fn answer_of(response: &LookupResponse, now: u64) -> Answer {
    match response {
        LookupResponse::Valid {
            expires_at: Some(at),
            ..
        } if *at <= now => Answer::Invalid(InvalidReason::Expired),
        LookupResponse::Valid {
            key_id,
            tenant,
            permissions,
            expires_at,
            ..
        } => Answer::Valid(Identity {
            principal: Principal::ApiKey {
                key_id: key_id.clone(),
            },
            tenant: Some(tenant.clone()),
            permissions: permissions.clone(),
            expires_at: *expires_at,
        }),
        LookupResponse::Invalid { reason, .. } => Answer::Invalid(*reason),
    }
}

fn fits(identity: &Identity) -> bool {
    identity
        .principal
        .fields()
        .iter()
        .all(|f| f.len() <= MAX_FIELD)
        && identity
            .tenant
            .as_ref()
            .is_none_or(|t| t.len() <= MAX_FIELD)
        && identity.permissions.len() <= MAX_PERMISSIONS
        && identity.permissions.iter().all(|p| p.len() <= MAX_FIELD)
}

/// Maps hashes to shared-data keys. API keys and verified tokens are two tables with their own
/// bounds, so a flood of one cannot evict the other. Both are named by the configuration's
/// fingerprint: an answer is only read under the configuration that cached it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLayout {
    buckets: u64,
    namespace: String,
}

impl CacheLayout {
    /// The API key lookup cache, in the table of the revocation feed's `epoch`
    /// ([`crate::feed`]): a feed reset moves it to an empty table.
    pub fn keys(policy: &CachePolicy, config: Fingerprint, epoch: u32) -> Self {
        Self::new(policy, format!("keygate.k.{config}.{epoch}."))
    }

    /// The verified-token cache, for tokens verified with the JWKS documents whose digest is
    /// `keys` ([`KeysDigest`]): when a provider's keys change, tokens are verified again.
    pub fn tokens(policy: &CachePolicy, config: Fingerprint, keys: KeysDigest) -> Self {
        Self::new(policy, format!("keygate.t.{config}.{keys}."))
    }

    fn new(policy: &CachePolicy, namespace: String) -> Self {
        let ways = WAYS as u64;
        Self {
            buckets: policy.max_entries.div_ceil(ways).max(1),
            namespace,
        }
    }

    pub fn bucket_count(&self) -> u64 {
        self.buckets
    }

    /// The shared-data key of the bucket that holds `hash`.
    pub fn bucket_key(&self, hash: &KeyHash) -> String {
        let b = hash.as_bytes();
        let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        format!("{}{}", self.namespace, n % self.buckets)
    }
}

/// A digest of the JWKS documents a worker verifies tokens with, one per remote provider in
/// config order (inline keys are part of the configuration's fingerprint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeysDigest(u64);

impl KeysDigest {
    /// `documents[i]` is remote provider i's JWKS bytes, `None` before its first fetch.
    pub fn of<'a>(documents: impl IntoIterator<Item = Option<&'a [u8]>>) -> Self {
        let mut h = Sha256::new();
        for doc in documents {
            match doc {
                Some(bytes) => {
                    h.update([1]);
                    h.update((bytes.len() as u64).to_le_bytes());
                    h.update(bytes);
                }
                None => h.update([0]),
            }
        }
        let d = h.finalize();
        Self(u64::from_le_bytes([
            d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7],
        ]))
    }
}

impl std::fmt::Display for KeysDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Finds a fresh answer for `hash` in a bucket's bytes. Unreadable bytes are a miss.
pub fn find(bucket: &[u8], hash: &KeyHash, now: u64) -> Option<Answer> {
    find_entry(bucket, hash, now).map(|e| e.answer)
}

/// [`find`], with the entry's lifetime: an entry found here may be kept elsewhere until its
/// `fresh_until`, never longer.
pub fn find_entry(bucket: &[u8], hash: &KeyHash, now: u64) -> Option<Entry> {
    let mut r = Reader::bucket(bucket)?;
    while let Some(raw) = r.raw_entry() {
        if raw.hash == hash.as_bytes() {
            return (raw.fresh_until > now)
                .then(|| raw.decode_answer())
                .flatten()
                .map(|answer| Entry {
                    hash: *hash,
                    fresh_until: raw.fresh_until,
                    answer,
                });
        }
    }
    None
}

/// Returns the bucket's new bytes with `entry` in it, following the eviction policy in the module
/// docs, or `None` when the policy keeps the bucket as it is.
pub fn insert(bucket: Option<&[u8]>, entry: &Entry, now: u64) -> Option<Vec<u8>> {
    let mut entries: Vec<RawEntry<'_>> = Vec::with_capacity(WAYS);
    if let Some(mut r) = bucket.and_then(Reader::bucket) {
        while let Some(raw) = r.raw_entry() {
            if entries.len() < WAYS {
                entries.push(raw);
            }
        }
    }
    let new = encode_entry(entry);
    let slot = if let Some(i) = entries.iter().position(|e| e.hash == entry.hash.as_bytes()) {
        Some(i)
    } else if entries.len() < WAYS {
        None
    } else if let Some(i) = entries.iter().position(|e| e.fresh_until <= now) {
        Some(i)
    } else {
        let candidates = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(entry.answer, Answer::Valid(_)) || e.tag == TAG_INVALID);
        let victim = candidates.min_by_key(|(_, e)| (e.tag == TAG_VALID, e.fresh_until));
        Some(victim?.0)
    };

    let mut out = Vec::with_capacity(4 + new.len() * WAYS);
    out.extend_from_slice(MAGIC);
    let kept: Vec<&[u8]> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != slot)
        .map(|(_, e)| e.bytes)
        .collect();
    out.push(u8::try_from(kept.len() + 1).unwrap_or(u8::MAX));
    for bytes in kept {
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(&new);
    Some(out)
}

/// Returns the bucket's new bytes without `hash`'s entry, or `None` when it holds none (or is
/// unreadable: nothing to remove).
pub fn remove(bucket: &[u8], hash: &KeyHash) -> Option<Vec<u8>> {
    let mut r = Reader::bucket(bucket)?;
    let mut kept: Vec<&[u8]> = Vec::with_capacity(WAYS);
    let mut found = false;
    while let Some(raw) = r.raw_entry() {
        if raw.hash == hash.as_bytes() {
            found = true;
        } else if kept.len() < WAYS {
            kept.push(raw.bytes);
        }
    }
    if !found {
        return None;
    }
    let mut out = Vec::with_capacity(bucket.len());
    out.extend_from_slice(MAGIC);
    out.push(u8::try_from(kept.len()).unwrap_or(u8::MAX));
    for bytes in kept {
        out.extend_from_slice(bytes);
    }
    Some(out)
}

const TAG_VALID: u8 = 1;
const TAG_INVALID: u8 = 2;
const PRINCIPAL_KEY: u8 = 1;
const PRINCIPAL_JWT: u8 = 2;

fn encode_entry(entry: &Entry) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    let tag = match &entry.answer {
        Answer::Valid(id) => {
            body.extend_from_slice(&id.expires_at.unwrap_or(NEVER).to_le_bytes());
            match &id.principal {
                Principal::ApiKey { key_id } => {
                    body.push(PRINCIPAL_KEY);
                    put_str(&mut body, key_id);
                }
                Principal::Jwt { subject, provider } => {
                    body.push(PRINCIPAL_JWT);
                    put_str(&mut body, subject);
                    put_str(&mut body, provider);
                }
            }
            match &id.tenant {
                Some(t) => {
                    body.push(1);
                    put_str(&mut body, t);
                }
                None => body.push(0),
            }
            put_u16(&mut body, id.permissions.len());
            for p in &id.permissions {
                put_str(&mut body, p);
            }
            TAG_VALID
        }
        Answer::Invalid(reason) => {
            body.push(match reason {
                InvalidReason::Unknown => 0,
                InvalidReason::Revoked => 1,
                InvalidReason::Expired => 2,
            });
            TAG_INVALID
        }
    };
    let mut out = Vec::with_capacity(43 + body.len());
    out.extend_from_slice(entry.hash.as_bytes());
    out.extend_from_slice(&entry.fresh_until.to_le_bytes());
    out.push(tag);
    put_u16(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Lengths are bounded by [`fits`] before anything is encoded; saturating keeps this total anyway.
fn put_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    put_u16(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// An entry located in a bucket, body not yet decoded.
struct RawEntry<'a> {
    hash: &'a [u8],
    fresh_until: u64,
    tag: u8,
    body: &'a [u8],
    /// The whole encoded entry, to copy it unchanged into a rewritten bucket.
    bytes: &'a [u8],
}

impl RawEntry<'_> {
    fn decode_answer(&self) -> Option<Answer> {
        let mut r = Reader {
            buf: self.body,
            remaining: 0,
        };
        match self.tag {
            TAG_VALID => {
                let expires_at = r.u64()?;
                let principal = match *r.take(1)?.first()? {
                    PRINCIPAL_KEY => Principal::ApiKey {
                        key_id: r.string()?,
                    },
                    PRINCIPAL_JWT => Principal::Jwt {
                        subject: r.string()?,
                        provider: r.string()?,
                    },
                    _ => return None,
                };
                let tenant = match *r.take(1)?.first()? {
                    0 => None,
                    _ => Some(r.string()?),
                };
                let n = usize::from(r.u16()?);
                let permissions = (0..n).map(|_| r.string()).collect::<Option<Vec<_>>>()?;
                Some(Answer::Valid(Identity {
                    principal,
                    tenant,
                    permissions,
                    expires_at: (expires_at != NEVER).then_some(expires_at),
                }))
            }
            TAG_INVALID => Some(Answer::Invalid(match r.take(1)?.first()? {
                0 => InvalidReason::Unknown,
                1 => InvalidReason::Revoked,
                _ => InvalidReason::Expired,
            })),
            _ => None,
        }
    }
}

/// Bounds-checked reading; every failure is `None`.
struct Reader<'a> {
    buf: &'a [u8],
    remaining: usize,
}

impl<'a> Reader<'a> {
    fn bucket(bytes: &'a [u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (&count, buf) = rest.split_first()?;
        Some(Self {
            buf,
            remaining: usize::from(count).min(WAYS),
        })
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Option<u64> {
        let b: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }

    fn string(&mut self) -> Option<String> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    fn raw_entry(&mut self) -> Option<RawEntry<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let start = self.buf;
        let hash = self.take(32)?;
        let fresh_until = self.u64()?;
        let tag = *self.take(1)?.first()?;
        let len = usize::from(self.u16()?);
        let body = self.take(len)?;
        let bytes = &start[..start.len() - self.buf.len()];
        Some(RawEntry {
            hash,
            fresh_until,
            tag,
            body,
            bytes,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const POLICY: CachePolicy = CachePolicy {
        max_entries: 8,
        ttl_secs: 60,
        negative_ttl_secs: 10,
    };

    fn hash(n: u8) -> KeyHash {
        KeyHash::from_bytes([n; 32])
    }

    fn valid(expires_at: Option<u64>, cache_ttl_secs: u64) -> LookupResponse {
        LookupResponse::Valid {
            key_id: "key_1".into(),
            tenant: "acme".into(),
            permissions: vec!["orders:read".into(), "orders:write".into()],
            expires_at,
            cache_ttl_secs,
        }
    }

    fn invalid(reason: InvalidReason) -> LookupResponse {
        LookupResponse::Invalid {
            reason,
            cache_ttl_secs: 30,
        }
    }

    fn entry(n: u8, response: &LookupResponse) -> Entry {
        Entry::from_lookup(hash(n), response, &POLICY, NOW).unwrap()
    }

    #[test]
    fn valid_entry_lives_the_shorter_ttl_and_never_past_expiry() {
        assert_eq!(entry(1, &valid(None, 300)).fresh_until, NOW + 60);
        assert_eq!(entry(1, &valid(None, 5)).fresh_until, NOW + 5);
        assert_eq!(entry(1, &valid(Some(NOW + 7), 300)).fresh_until, NOW + 7);
    }

    #[test]
    fn negative_entry_lives_the_negative_ttl() {
        assert_eq!(
            entry(1, &invalid(InvalidReason::Revoked)).fresh_until,
            NOW + 10
        );
        let off = CachePolicy {
            negative_ttl_secs: 0,
            ..POLICY
        };
        let r = invalid(InvalidReason::Unknown);
        assert_eq!(Entry::from_lookup(hash(1), &r, &off, NOW), None);
    }

    #[test]
    fn valid_answer_already_expired_is_treated_as_expired() {
        let r = valid(Some(NOW), 300);
        assert_eq!(answer_of(&r, NOW), Answer::Invalid(InvalidReason::Expired));
        assert_eq!(entry(1, &r).answer, Answer::Invalid(InvalidReason::Expired));
    }

    #[test]
    fn inserted_entry_is_found_until_it_goes_stale() {
        let e = entry(1, &valid(Some(NOW + 1000), 60));
        let bucket = insert(None, &e, NOW).unwrap();
        assert_eq!(find(&bucket, &hash(1), NOW), Some(e.answer.clone()));
        assert_eq!(find(&bucket, &hash(1), NOW + 59), Some(e.answer));
        assert_eq!(find(&bucket, &hash(1), NOW + 60), None);
        assert_eq!(find(&bucket, &hash(2), NOW), None);
    }

    #[test]
    fn same_hash_is_replaced_in_place() {
        let b = insert(None, &entry(1, &valid(None, 60)), NOW).unwrap();
        let b = insert(Some(&b), &entry(1, &invalid(InvalidReason::Revoked)), NOW).unwrap();
        assert_eq!(
            find(&b, &hash(1), NOW),
            Some(Answer::Invalid(InvalidReason::Revoked))
        );
        assert_eq!(b[3], 1, "one entry, not two");
    }

    #[test]
    fn flood_of_negative_entries_never_evicts_fresh_positive_ones() {
        let mut b = insert(None, &entry(1, &valid(None, 60)), NOW).unwrap();
        for n in 10..200u8 {
            if let Some(next) = insert(Some(&b), &entry(n, &invalid(InvalidReason::Unknown)), NOW) {
                b = next;
            }
            assert!(b[3] as usize <= WAYS);
            assert!(b.len() < 512, "bucket stays small: {}", b.len());
        }
        assert!(matches!(find(&b, &hash(1), NOW), Some(Answer::Valid(_))));
    }

    #[test]
    fn bucket_full_of_fresh_positives_refuses_a_negative() {
        let mut b = None;
        for n in 1..=WAYS as u8 {
            b = insert(b.as_deref(), &entry(n, &valid(None, 60)), NOW);
        }
        let b = b.unwrap();
        assert_eq!(
            insert(Some(&b), &entry(99, &invalid(InvalidReason::Unknown)), NOW),
            None
        );
    }

    #[test]
    fn positive_entry_evicts_a_negative_first_then_the_soonest_stale() {
        let mut b = insert(None, &entry(1, &valid(None, 30)), NOW).unwrap();
        b = insert(Some(&b), &entry(2, &invalid(InvalidReason::Unknown)), NOW).unwrap();
        b = insert(Some(&b), &entry(3, &valid(None, 20)), NOW).unwrap();
        b = insert(Some(&b), &entry(4, &valid(None, 40)), NOW).unwrap();
        b = insert(Some(&b), &entry(5, &valid(None, 60)), NOW).unwrap();
        assert_eq!(find(&b, &hash(2), NOW), None, "negative went first");
        b = insert(Some(&b), &entry(6, &valid(None, 60)), NOW).unwrap();
        assert_eq!(find(&b, &hash(3), NOW), None, "then the one stale soonest");
        for n in [1, 4, 5, 6] {
            assert!(find(&b, &hash(n), NOW).is_some(), "{n}");
        }
    }

    #[test]
    fn stale_entry_is_reused_before_anything_fresh() {
        let mut b = None;
        for n in 1..=WAYS as u8 {
            b = insert(b.as_deref(), &entry(n, &valid(None, 60)), NOW);
        }
        let later = NOW + 61;
        let e = Entry::from_lookup(hash(9), &invalid(InvalidReason::Unknown), &POLICY, later);
        let b = insert(b.as_deref(), &e.unwrap(), later).unwrap();
        assert!(find(&b, &hash(9), later).is_some());
    }

    #[test]
    fn garbage_bytes_are_a_miss_and_get_overwritten() {
        for junk in [&b""[..], b"KG1", b"KG1\x04abc", b"nonsense", &[0xff; 100]] {
            assert_eq!(find(junk, &hash(1), NOW), None);
            let b = insert(Some(junk), &entry(1, &valid(None, 60)), NOW).unwrap();
            assert!(find(&b, &hash(1), NOW).is_some());
        }
    }

    #[test]
    fn truncated_bucket_never_panics() {
        let mut b = insert(None, &entry(1, &valid(None, 60)), NOW).unwrap();
        b = insert(Some(&b), &entry(2, &valid(None, 60)), NOW).unwrap();
        for cut in 0..b.len() {
            let _ = find(&b[..cut], &hash(2), NOW);
            let _ = insert(Some(&b[..cut]), &entry(3, &valid(None, 60)), NOW);
        }
    }

    #[test]
    fn oversized_identity_is_used_but_not_cached() {
        let r = LookupResponse::Valid {
            key_id: "k".repeat(1000),
            tenant: "t".into(),
            permissions: vec![],
            expires_at: None,
            cache_ttl_secs: 60,
        };
        assert_eq!(Entry::from_lookup(hash(1), &r, &POLICY, NOW), None);
        assert!(matches!(answer_of(&r, NOW), Answer::Valid(_)));
    }

    #[test]
    fn jwt_identity_round_trips_and_lives_until_the_token_expires() {
        let identity = Identity {
            principal: Principal::Jwt {
                subject: "svc-a".into(),
                provider: "idp".into(),
            },
            tenant: None,
            permissions: vec!["orders:read".into()],
            expires_at: Some(NOW + 300),
        };
        let e = Entry::verified(hash(7), identity.clone(), NOW).unwrap();
        let b = insert(None, &e, NOW).unwrap();
        assert_eq!(
            find(&b, &hash(7), NOW + 299),
            Some(Answer::Valid(identity.clone()))
        );
        assert_eq!(find(&b, &hash(7), NOW + 300), None);
        let expired = Identity {
            expires_at: Some(NOW),
            ..identity
        };
        assert_eq!(Entry::verified(hash(7), expired, NOW), None);
    }

    #[test]
    fn layout_spreads_keys_over_a_fixed_number_of_buckets() {
        let layout = CacheLayout::keys(
            &CachePolicy {
                max_entries: 10,
                ..POLICY
            },
            Fingerprint::of(b"{}"),
            0,
        );
        assert_eq!(layout.bucket_count(), 3);
        let keys: std::collections::HashSet<String> =
            (0..=255u8).map(|n| layout.bucket_key(&hash(n))).collect();
        assert!(keys.len() <= 3);
        assert!(keys.iter().all(|k| k.starts_with("keygate.k.")));
        let tokens = CacheLayout::tokens(&POLICY, Fingerprint::of(b"{}"), KeysDigest::default());
        assert!(tokens.bucket_key(&hash(1)).starts_with("keygate.t."));
    }

    #[test]
    fn another_configuration_or_other_keys_read_other_buckets() {
        let config = Fingerprint::of(br#"{"a": 1}"#);
        let other_config = Fingerprint::of(br#"{"a": 2}"#);
        let keys = KeysDigest::of([Some(&b"{\"keys\": [1]}"[..])]);
        let other_keys = KeysDigest::of([Some(&b"{\"keys\": [2]}"[..])]);
        assert_ne!(keys, KeysDigest::of([None]));
        let key_of = |layout: CacheLayout| layout.bucket_key(&hash(1));
        assert_ne!(
            key_of(CacheLayout::keys(&POLICY, config, 0)),
            key_of(CacheLayout::keys(&POLICY, other_config, 0))
        );
        assert_ne!(
            key_of(CacheLayout::keys(&POLICY, config, 0)),
            key_of(CacheLayout::keys(&POLICY, config, 1)),
            "a feed reset moves the key cache to another table"
        );
        let tokens = key_of(CacheLayout::tokens(&POLICY, config, keys));
        assert_ne!(
            tokens,
            key_of(CacheLayout::tokens(&POLICY, other_config, keys))
        );
        assert_ne!(
            tokens,
            key_of(CacheLayout::tokens(&POLICY, config, other_keys))
        );
        assert_eq!(tokens, key_of(CacheLayout::tokens(&POLICY, config, keys)));
    }

    #[test]
    fn removing_an_entry_keeps_the_others_and_a_missing_one_changes_nothing() {
        let mut b = insert(None, &entry(1, &valid(None, 300)), NOW).unwrap();
        b = insert(Some(&b), &entry(2, &invalid(InvalidReason::Revoked)), NOW).unwrap();
        b = insert(Some(&b), &entry(3, &valid(None, 300)), NOW).unwrap();
        let without = remove(&b, &hash(2)).unwrap();
        assert_eq!(find(&without, &hash(2), NOW), None);
        assert!(find(&without, &hash(1), NOW).is_some());
        assert!(find(&without, &hash(3), NOW).is_some());
        assert_eq!(remove(&without, &hash(2)), None);
        let empty = remove(&remove(&without, &hash(1)).unwrap(), &hash(3)).unwrap();
        assert_eq!(find(&empty, &hash(1), NOW), None);
        let again = insert(Some(&empty), &entry(4, &valid(None, 300)), NOW).unwrap();
        assert!(find(&again, &hash(4), NOW).is_some());
    }

    #[test]
    fn removing_from_garbage_changes_nothing() {
        assert_eq!(remove(b"junk", &hash(1)), None);
        assert_eq!(remove(b"KG1\x04", &hash(1)), None);
    }
}
