//! The revocation feed's shared record (`keygate_core::feed::FeedState`), which every worker of an
//! Envoy reads on each tick and the poller rewrites after each answer.
//!
//! Invariants, beyond "never panics":
//! - Any bytes decode or are refused; a record that decodes encodes back to one that decodes to
//!   the same record (when its cursor is within the length the encoder keeps).
//! - Applied answers keep the record bounded (`recent` at most `RECENT_CAPACITY` hashes), and a
//!   worker that acted on an earlier state is told to drop every hash changed since, or
//!   everything: never too little.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use keygate_core::config::Revocation;
use keygate_core::feed::{FeedState, Invalidation, MAX_CURSOR, RECENT_CAPACITY};
use keygate_core::key::KeyHash;
use keygate_core::wire::ChangesResponse;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    raw: &'a [u8],
    answers: Vec<Answer>,
}

#[derive(Debug, Arbitrary)]
struct Answer {
    cursor: String,
    /// Hash seeds: a few distinct values, so repeats happen.
    changes: Vec<u8>,
    reset: bool,
    more: bool,
    elapsed_ms: u16,
}

const MAX_ANSWERS: usize = 16;

fn feed() -> Revocation {
    Revocation {
        poll_interval: Duration::from_millis(500),
        wait_ms: 5_000,
        max_stale_secs: 300,
        timeout: Duration::from_millis(6_000),
    }
}

fn round_trips(state: &FeedState) {
    let again = FeedState::decode(&state.encode());
    if state.cursor.as_ref().is_none_or(|c| c.len() <= MAX_CURSOR)
        && state.recent.len() <= RECENT_CAPACITY
    {
        assert_eq!(
            again.as_ref(),
            Some(state),
            "encode then decode changed the record"
        );
    } else {
        assert!(again.is_some(), "an encoded record does not decode");
    }
}

fuzz_target!(|input: Input<'_>| {
    if let Some(state) = FeedState::decode(input.raw) {
        round_trips(&state);
    }
    let feed = feed();
    // A generation near u64::MAX (2^64 changes) cannot happen; the count saturates there.
    let mut state = FeedState::decode(input.raw)
        .filter(|s| s.generation < u64::MAX / 2)
        .unwrap_or_default();
    let mut now_ms = 1_800_000_000_000;
    for answer in input.answers.iter().take(MAX_ANSWERS) {
        let before = state.seen();
        now_ms += u64::from(answer.elapsed_ms);
        let changes: Vec<KeyHash> = answer
            .changes
            .iter()
            .map(|n| KeyHash::from_bytes([n % 16; 32]))
            .collect();
        let response = ChangesResponse {
            cursor: answer.cursor.clone(),
            changes: if answer.reset {
                Vec::new()
            } else {
                changes.clone()
            },
            reset: answer.reset,
            more: answer.more,
        };
        state.lease(now_ms, &feed);
        state.on_answer(&response, now_ms, &feed);
        assert!(
            state.recent.len() <= RECENT_CAPACITY,
            "recent grew past its bound"
        );
        round_trips(&state);
        match state.catch_up(Some(before)) {
            Invalidation::All => {}
            Invalidation::Nothing => assert!(
                answer.reset || changes.is_empty(),
                "changes were applied but a worker is told to drop nothing"
            ),
            Invalidation::Keys(dropped) => {
                assert!(!answer.reset, "a reset must drop everything");
                for hash in &changes {
                    assert!(dropped.contains(hash), "a changed hash is not dropped");
                }
            }
        }
    }
});
