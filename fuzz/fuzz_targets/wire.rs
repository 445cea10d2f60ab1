//! The lookup and usage messages between filter and key service (`wire`), as JSON, on any bytes;
//! then what the filter does with a decoded answer (`cache::answer_of`, `Entry::from_lookup`) and
//! with a usage report it puts back (`UsageBook::restore`).
//!
//! Invariants, beyond "never panics":
//! - Round trip: a message that decodes, encoded and decoded again, is the same message, for
//!   `LookupRequest`, `LookupResponse`, `LookupBatchRequest`, `LookupBatchResponse` and
//!   `UsageReport`.
//! - `answer_of` never calls an answer valid past its `expires_at`; a cache entry made from it is
//!   fresh now, never outlives the configured or served TTL, nor a valid key's expiry.
//! - `UsageBook`: a report restored into an empty book and drained comes back summed per key
//!   (saturating), with the latest `last_used`, sorted and without duplicates (checked against a
//!   `BTreeMap`).

#![no_main]

use std::collections::BTreeMap;

use keygate_core::cache::{answer_of, Answer, Entry};
use keygate_core::config::CachePolicy;
use keygate_core::key::KeyHash;
use keygate_core::usage::{UsageBook, MAX_REPORT_ENTRIES};
use keygate_core::wire::{
    LookupBatchRequest, LookupBatchResponse, LookupRequest, LookupResponse, UsageReport,
};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_800_000_000;
const POLICY: CachePolicy = CachePolicy {
    max_entries: 100,
    ttl_secs: 60,
    negative_ttl_secs: 10,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<LookupRequest>(data) {
        let bytes = serde_json::to_vec(&request).expect("a request serializes");
        assert_eq!(
            serde_json::from_slice::<LookupRequest>(&bytes).ok(),
            Some(request)
        );
    }

    if let Ok(response) = serde_json::from_slice::<LookupResponse>(data) {
        let bytes = serde_json::to_vec(&response).expect("a response serializes");
        assert_eq!(
            serde_json::from_slice::<LookupResponse>(&bytes)
                .ok()
                .as_ref(),
            Some(&response)
        );
        check_answer(&response);
    }

    if let Ok(request) = serde_json::from_slice::<LookupBatchRequest>(data) {
        let bytes = serde_json::to_vec(&request).expect("a batch request serializes");
        assert_eq!(
            serde_json::from_slice::<LookupBatchRequest>(&bytes).ok(),
            Some(request)
        );
    }

    if let Ok(batch) = serde_json::from_slice::<LookupBatchResponse>(data) {
        let bytes = serde_json::to_vec(&batch).expect("a batch answer serializes");
        assert_eq!(
            serde_json::from_slice::<LookupBatchResponse>(&bytes)
                .ok()
                .as_ref(),
            Some(&batch)
        );
        for response in &batch.answers {
            check_answer(response);
        }
    }

    if let Ok(report) = serde_json::from_slice::<UsageReport>(data) {
        let bytes = serde_json::to_vec(&report).expect("a report serializes");
        assert_eq!(
            serde_json::from_slice::<UsageReport>(&bytes).ok().as_ref(),
            Some(&report)
        );
        check_usage(report);
    }
});

fn check_answer(response: &LookupResponse) {
    let answer = answer_of(response, NOW);
    if let (Answer::Valid(identity), LookupResponse::Valid { expires_at, .. }) = (&answer, response)
    {
        assert_eq!(identity.expires_at, *expires_at);
        assert!(
            expires_at.is_none_or(|at| at > NOW),
            "valid past its expiry"
        );
    }
    let hash = KeyHash::of(b"kg_fuzz");
    if let Some(entry) = Entry::from_lookup(hash, response, &POLICY, NOW) {
        assert!(entry.fresh_until > NOW);
        assert_eq!(entry.answer, answer);
        let served_ttl = match response {
            LookupResponse::Valid { cache_ttl_secs, .. }
            | LookupResponse::Invalid { cache_ttl_secs, .. } => *cache_ttl_secs,
        };
        let ttl = entry.fresh_until - NOW;
        assert!(ttl <= POLICY.ttl_secs.max(POLICY.negative_ttl_secs));
        match &entry.answer {
            Answer::Valid(identity) => {
                assert!(ttl <= served_ttl.min(POLICY.ttl_secs));
                assert!(identity.expires_at.is_none_or(|at| entry.fresh_until <= at));
            }
            Answer::Invalid(_) => assert!(ttl <= POLICY.negative_ttl_secs),
        }
    }
}

fn check_usage(report: UsageReport) {
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in &report.entries {
        let slot = want.entry(e.key_id.clone()).or_insert((0, 0));
        slot.0 = slot.0.saturating_add(e.count);
        slot.1 = slot.1.max(e.last_used);
    }
    let mut book = UsageBook::default();
    book.restore(report);
    assert_eq!(book.len(), want.len());
    let mut got: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    while !book.is_empty() {
        let drained = book.drain();
        assert!(!drained.entries.is_empty() && drained.entries.len() <= MAX_REPORT_ENTRIES);
        assert!(
            drained
                .entries
                .windows(2)
                .all(|w| w[0].key_id < w[1].key_id),
            "not sorted, or a key twice"
        );
        for e in drained.entries {
            assert!(
                got.insert(e.key_id, (e.count, e.last_used)).is_none(),
                "a key in two reports"
            );
        }
    }
    assert_eq!(got, want);
}
