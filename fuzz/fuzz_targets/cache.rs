//! The lookup cache's bytes in Envoy shared data (`cache::find_entry`, `cache::insert`): any bytes
//! as a bucket, and buckets built by a sequence of inserts of entries made the way the filter
//! makes them (`Entry::from_lookup`, `Entry::verified`), built with `arbitrary`.
//!
//! Invariants, beyond "never panics" (on any bucket bytes):
//! - Round trip: right after an insert, looking the entry's hash up gives the entry back (an
//!   `expires_at` of `u64::MAX` reads back as `None`: the format's "never", the same moment).
//! - An insert never changes another hash's answer, except by evicting it (then it is a miss).
//! - A negative entry never displaces a fresh positive one, and the only insert the policy may
//!   refuse is a negative one, into a bucket of fresh entries.
//! - `cache::remove` (the revocation feed's) forgets that entry and changes no other.

#![no_main]

use arbitrary::Arbitrary;
use keygate_core::cache::{self, Answer, Entry, Identity, Principal};
use keygate_core::config::CachePolicy;
use keygate_core::key::KeyHash;
use keygate_core::wire::{InvalidReason, LookupResponse};
use libfuzzer_sys::fuzz_target;

const BASE: u64 = 1_800_000_000;
const POLICY: CachePolicy = CachePolicy {
    max_entries: 100,
    ttl_secs: 60,
    negative_ttl_secs: 10,
};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Looked into and inserted into as it is, before the built bucket.
    raw_bucket: &'a [u8],
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// A key service answer for API key hash `hash` (one of a few, so they collide).
    Lookup {
        hash: u8,
        response: Response,
        /// Seconds since the previous op.
        elapsed: u8,
    },
    /// A verified JWT's identity.
    Token {
        hash: u8,
        subject: String,
        provider: String,
        tenant: Option<String>,
        permissions: Vec<String>,
        expires_in: u64,
        elapsed: u8,
    },
}

#[derive(Debug, Arbitrary)]
enum Response {
    Valid {
        key_id: String,
        tenant: String,
        permissions: Vec<String>,
        expires_in: Option<u64>,
        cache_ttl_secs: u64,
    },
    Invalid {
        reason: u8,
        cache_ttl_secs: u64,
    },
}

const HASHES: u8 = 8;
const MAX_OPS: usize = 12;

fn hash(n: u8) -> KeyHash {
    KeyHash::from_bytes([n % HASHES; 32])
}

fuzz_target!(|input: Input<'_>| {
    let mut now = BASE;
    for n in 0..HASHES {
        let _ = cache::find_entry(input.raw_bucket, &hash(n), now);
    }

    let mut bucket: Option<Vec<u8>> = None;
    // A bucket has four ways and there are eight hashes: a dozen inserts reach every eviction
    // case, and longer sequences would only slow the run down.
    for op in input.ops.into_iter().take(MAX_OPS) {
        let (entry, elapsed) = match op {
            Op::Lookup {
                hash: h,
                response,
                elapsed,
            } => {
                let response = match response {
                    Response::Valid {
                        key_id,
                        tenant,
                        permissions,
                        expires_in,
                        cache_ttl_secs,
                    } => LookupResponse::Valid {
                        key_id,
                        tenant,
                        permissions,
                        expires_at: expires_in.map(|s| now.saturating_add(s)),
                        cache_ttl_secs,
                    },
                    Response::Invalid {
                        reason,
                        cache_ttl_secs,
                    } => LookupResponse::Invalid {
                        reason: [
                            InvalidReason::Unknown,
                            InvalidReason::Revoked,
                            InvalidReason::Expired,
                        ][usize::from(reason % 3)],
                        cache_ttl_secs,
                    },
                };
                (
                    Entry::from_lookup(hash(h), &response, &POLICY, now),
                    elapsed,
                )
            }
            Op::Token {
                hash: h,
                subject,
                provider,
                tenant,
                permissions,
                expires_in,
                elapsed,
            } => {
                let identity = Identity {
                    principal: Principal::Jwt { subject, provider },
                    tenant,
                    permissions,
                    expires_at: Some(now.saturating_add(expires_in)),
                };
                (Entry::verified(hash(h), identity, now), elapsed)
            }
        };
        now += u64::from(elapsed);
        let Some(entry) = entry else { continue };

        // Any bytes as the old bucket: the entry still goes in, or the policy says no.
        if let Some(bytes) = cache::insert(Some(input.raw_bucket), &entry, now) {
            let _ = cache::find_entry(&bytes, &entry.hash, now);
        }

        let before: Vec<Option<Entry>> = (0..HASHES)
            .map(|n| {
                bucket
                    .as_deref()
                    .and_then(|b| cache::find_entry(b, &hash(n), now))
            })
            .collect();
        let Some(after) = cache::insert(bucket.as_deref(), &entry, now) else {
            assert!(
                matches!(entry.answer, Answer::Invalid(_)),
                "a positive entry was refused"
            );
            let fresh = before.iter().filter(|e| e.is_some()).count();
            assert_eq!(fresh, cache::WAYS, "refused with a free or stale way");
            continue;
        };
        let found = cache::find_entry(&after, &entry.hash, now);
        if entry.fresh_until > now {
            assert_eq!(
                found,
                Some(as_stored(entry.clone())),
                "insert then find lost the entry"
            );
        } else {
            assert_eq!(found, None, "a stale entry was found");
        }
        for n in 0..HASHES {
            let h = hash(n);
            if h == entry.hash {
                continue;
            }
            let old = &before[usize::from(n)];
            let new = cache::find_entry(&after, &h, now);
            assert!(
                new.is_none() || new == *old,
                "an insert changed another entry"
            );
            let displaced_positive = matches!(
                old,
                Some(Entry {
                    answer: Answer::Valid(_),
                    ..
                })
            ) && new.is_none();
            assert!(
                !(displaced_positive && matches!(entry.answer, Answer::Invalid(_))),
                "a negative entry displaced a fresh positive one"
            );
        }
        // Removing the entry (the revocation feed does) forgets it and keeps every other one.
        if let Some(removed) = cache::remove(&after, &entry.hash) {
            assert_eq!(
                cache::find_entry(&removed, &entry.hash, now),
                None,
                "a removed entry is still found"
            );
            for n in 0..HASHES {
                let h = hash(n);
                if h != entry.hash {
                    assert_eq!(
                        cache::find_entry(&removed, &h, now),
                        cache::find_entry(&after, &h, now),
                        "removing one entry changed another"
                    );
                }
            }
        }
        bucket = Some(after);
    }
});

/// The entry as the byte format keeps it: `u64::MAX` is the encoding of "never expires".
fn as_stored(mut entry: Entry) -> Entry {
    if let Answer::Valid(identity) = &mut entry.answer {
        if identity.expires_at == Some(u64::MAX) {
            identity.expires_at = None;
        }
    }
    entry
}
