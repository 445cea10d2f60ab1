//! The key service's revocation feed as the filter reads it, shared by every worker through one
//! record in Envoy shared data ([`FeedState`], under [`feed_key`]).
//!
//! - One worker per Envoy polls: a worker whose tick finds the poll due takes a lease by
//!   compare-and-swap on the record (`next_poll_ms` moved past the long-poll wait, the callout
//!   timeout and a grace), sends `GET /v1/changes?after=<cursor>&wait_ms=<n>`, and writes the
//!   answer back. A poller that dies frees the lease by itself when it runs out.
//! - The record carries the cursor, and the last [`RECENT_CAPACITY`] changed key hashes with a
//!   `generation` that counts every hash ever appended. Each worker remembers the generation it
//!   last acted on ([`Seen`]); on each tick it reads the record and drops what changed since
//!   ([`FeedState::catch_up`]), or its whole cache when it fell further behind than the record
//!   holds.
//! - A `reset` answer (the service cannot say what changed since the cursor) bumps `epoch`, which
//!   names the shared key cache's table: the new table starts empty, and every worker drops its
//!   own copies.
//! - Stale-if-error: cached answers are served while the last good poll is at most
//!   `max_stale_secs` old ([`FeedState::serve_cached`]); before the first one, counting from when
//!   the first worker found the feed.
//!
//! Times: the schedule is in unix milliseconds (polls are sub-second), the staleness bound in
//! unix seconds, as the caches are.

use crate::config::{Fingerprint, Revocation};
use crate::key::KeyHash;
use crate::wire::{ChangesResponse, CHANGES_PATH};

/// Changed hashes the record keeps for workers that are behind; further behind drops all.
pub const RECENT_CAPACITY: usize = 256;
/// Lease past the long-poll wait and the callout timeout, for the answer to be handled.
pub const LEASE_GRACE_MS: u64 = 1000;
/// Longest wait between retries of a failing poll.
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// Longest cursor kept; a longer one is treated as none (the next poll resets).
pub const MAX_CURSOR: usize = 256;
const MAGIC: &[u8; 3] = b"KF1";
const HEADER_LEN: usize = 3 + 8 * 5 + 4 * 2;

/// The shared-data key of the feed record of configuration `config`.
pub fn feed_key(config: Fingerprint) -> String {
    format!("keygate.feed.{config}")
}

/// The feed's shared record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedState {
    /// No worker starts a poll before this (unix ms): the lease of the poll in flight, or the
    /// time of the next one.
    pub next_poll_ms: u64,
    /// When the poll in flight (or the last one) was sent (unix ms).
    pub sent_ms: u64,
    /// Last successful poll (unix seconds); 0 = never.
    pub polled_at: u64,
    /// When the first worker found the feed (unix seconds); 0 = not yet.
    pub started_at: u64,
    /// Hashes ever appended to `recent`.
    pub generation: u64,
    /// Failed polls in a row.
    pub failures: u32,
    /// Bumped by every reset; names the key cache's table in shared data.
    pub epoch: u32,
    /// Where the next poll continues; `None` asks the service for its current cursor.
    pub cursor: Option<String>,
    /// The last changed hashes, oldest first, at most [`RECENT_CAPACITY`].
    pub recent: Vec<KeyHash>,
}

/// What a worker last acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub epoch: u32,
    pub generation: u64,
}

/// What a worker must drop from its own key cache to catch up with the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Nothing,
    /// These hashes changed; drop their entries.
    Keys(Vec<KeyHash>),
    /// Drop everything (a reset, or further behind than the record holds).
    All,
}

impl FeedState {
    /// Notes when the feed was first found, for the staleness bound. Returns whether it changed.
    pub fn start(&mut self, now_secs: u64) -> bool {
        let fresh = self.started_at == 0;
        if fresh {
            self.started_at = now_secs;
        }
        fresh
    }

    pub fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_poll_ms
    }

    /// Takes the poll lease at `now_ms`: nobody else polls until this poll had time to answer
    /// (its long-poll wait, its callout timeout, and [`LEASE_GRACE_MS`]).
    pub fn lease(&mut self, now_ms: u64, feed: &Revocation) {
        self.sent_ms = now_ms;
        self.next_poll_ms = now_ms
            .saturating_add(duration_ms(feed.timeout))
            .saturating_add(LEASE_GRACE_MS);
    }

    /// The path and query of the next poll: no cursor asks for the current one.
    pub fn request_path(&self, feed: &Revocation) -> String {
        match &self.cursor {
            Some(cursor) => format!(
                "{CHANGES_PATH}?after={}&wait_ms={}",
                percent_encode(cursor),
                feed.wait_ms
            ),
            None => CHANGES_PATH.to_owned(),
        }
    }

    /// Records a good answer received at `now_ms`: the new cursor, the changed hashes for the
    /// workers, or on `reset` a new epoch (everything cached is dropped). The very first poll's
    /// reset too: an answer cached before it may predate a change its cursor already covers
    /// (the first poll can come late, when it failed or its replica died), and the price is one
    /// more lookup of the few keys looked up before it. The next poll is at
    /// once when there is more to read or something changed (a change often comes with others),
    /// else `poll_interval` after this one was sent: a long poll that was held that long is
    /// followed at once, and a service that does not hold polls is asked at that pace.
    pub fn on_answer(&mut self, answer: &ChangesResponse, now_ms: u64, feed: &Revocation) {
        if answer.reset {
            self.epoch = self.epoch.wrapping_add(1);
            self.recent.clear();
        } else if !answer.reset {
            self.recent.extend_from_slice(&answer.changes);
            let excess = self.recent.len().saturating_sub(RECENT_CAPACITY);
            self.recent.drain(..excess);
            self.generation = self.generation.saturating_add(answer.changes.len() as u64);
        }
        self.polled_at = now_ms / 1000;
        self.failures = 0;
        self.cursor = (!answer.cursor.is_empty() && answer.cursor.len() <= MAX_CURSOR)
            .then(|| answer.cursor.clone());
        self.next_poll_ms = if answer.more || !answer.changes.is_empty() {
            now_ms
        } else {
            self.sent_ms
                .saturating_add(duration_ms(feed.poll_interval))
                .max(now_ms)
        };
    }

    /// A failed poll at `now_ms`: the cursor stays, and the next try backs off 0.5 s, 1 s, 2 s,
    /// … up to [`MAX_BACKOFF_MS`].
    pub fn on_failure(&mut self, now_ms: u64) {
        self.failures = self.failures.saturating_add(1);
        let backoff = 500u64
            .checked_shl(self.failures.saturating_sub(1).min(16))
            .unwrap_or(MAX_BACKOFF_MS)
            .min(MAX_BACKOFF_MS);
        self.next_poll_ms = now_ms.saturating_add(backoff);
    }

    /// The service refused the poll as malformed (`400`): the cursor is one it cannot read, so
    /// the next poll goes without one and is answered with a reset. Backs off as a failure.
    pub fn on_refused(&mut self, now_ms: u64) {
        self.cursor = None;
        self.on_failure(now_ms);
    }

    /// Whether cached key answers may be served at `now_secs`: the last good poll (or, before
    /// the first, the feed's start) is at most `max_stale_secs` old. A feed nobody has found yet
    /// has nothing to be stale against.
    pub fn serve_cached(&self, now_secs: u64, max_stale_secs: u64) -> bool {
        let since = self.polled_at.max(self.started_at);
        since == 0 || now_secs <= since.saturating_add(max_stale_secs)
    }

    /// What a worker that last acted on `seen` must drop; `None` is a worker that has not
    /// looked yet, whose cache may hold anything.
    pub fn catch_up(&self, seen: Option<Seen>) -> Invalidation {
        let Some(seen) = seen else {
            return Invalidation::All;
        };
        if seen.epoch != self.epoch || seen.generation > self.generation {
            return Invalidation::All;
        }
        let behind = self.generation - seen.generation;
        match usize::try_from(behind) {
            Ok(0) => Invalidation::Nothing,
            Ok(n) if n <= self.recent.len() => {
                Invalidation::Keys(self.recent[self.recent.len() - n..].to_vec())
            }
            _ => Invalidation::All,
        }
    }

    /// Whether `hash`'s answer may have changed since a worker that had acted on `seen` sent a
    /// lookup for it: an answer that left the key service before the change must not be cached
    /// after the feed removed the old entry. Unknown (a reset, or further back than the record
    /// holds) counts as changed.
    pub fn changed_since(&self, seen: Seen, hash: &KeyHash) -> bool {
        match self.catch_up(Some(seen)) {
            Invalidation::Nothing => false,
            Invalidation::Keys(changed) => changed.contains(hash),
            Invalidation::All => true,
        }
    }

    pub fn seen(&self) -> Seen {
        Seen {
            epoch: self.epoch,
            generation: self.generation,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let cursor = self.cursor.as_deref().unwrap_or("");
        let cursor = &cursor.as_bytes()[..cursor.len().min(MAX_CURSOR)];
        let recent = &self.recent[self.recent.len().saturating_sub(RECENT_CAPACITY)..];
        let mut out = Vec::with_capacity(HEADER_LEN + 4 + cursor.len() + 32 * recent.len());
        out.extend_from_slice(MAGIC);
        for n in [
            self.next_poll_ms,
            self.sent_ms,
            self.polled_at,
            self.started_at,
            self.generation,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&self.failures.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&(cursor.len() as u16).to_le_bytes());
        out.extend_from_slice(cursor);
        out.extend_from_slice(&(recent.len() as u16).to_le_bytes());
        for hash in recent {
            out.extend_from_slice(hash.as_bytes());
        }
        out
    }

    /// `None` for bytes that are not a whole record.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = bytes.strip_prefix(MAGIC)?;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = r.split_at_checked(n)?;
            r = tail;
            Some(head)
        };
        let mut u64s = [0u64; 5];
        for n in &mut u64s {
            *n = u64::from_le_bytes(take(8)?.try_into().ok()?);
        }
        let failures = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let epoch = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let cursor_len = usize::from(u16::from_le_bytes(take(2)?.try_into().ok()?));
        let cursor = String::from_utf8(take(cursor_len)?.to_vec()).ok()?;
        let count = usize::from(u16::from_le_bytes(take(2)?.try_into().ok()?));
        if count > RECENT_CAPACITY {
            return None;
        }
        let recent = (0..count)
            .map(|_| Some(KeyHash::from_bytes(take(32)?.try_into().ok()?)))
            .collect::<Option<Vec<_>>>()?;
        if !r.is_empty() {
            return None;
        }
        let [next_poll_ms, sent_ms, polled_at, started_at, generation] = u64s;
        Some(Self {
            next_poll_ms,
            sent_ms,
            polled_at,
            started_at,
            generation,
            failures,
            epoch,
            cursor: (!cursor.is_empty()).then_some(cursor),
            recent,
        })
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Percent-encodes all but RFC 3986 unreserved characters, for a query value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NOW_MS: u64 = 1_800_000_000_000;
    const NOW: u64 = NOW_MS / 1000;

    fn feed() -> Revocation {
        Revocation {
            poll_interval: Duration::from_millis(500),
            wait_ms: 5000,
            max_stale_secs: 300,
            timeout: Duration::from_millis(6000),
        }
    }

    fn hash(n: u32) -> KeyHash {
        KeyHash::of(&n.to_le_bytes())
    }

    fn answer(cursor: &str, changes: Vec<KeyHash>) -> ChangesResponse {
        ChangesResponse {
            cursor: cursor.into(),
            changes,
            reset: false,
            more: false,
        }
    }

    fn reset(cursor: &str) -> ChangesResponse {
        ChangesResponse {
            reset: true,
            ..answer(cursor, vec![])
        }
    }

    #[test]
    fn a_new_feed_is_due_at_once_and_a_lease_holds_past_wait_and_timeout() {
        let mut s = FeedState::default();
        assert!(s.due(NOW_MS));
        s.lease(NOW_MS, &feed());
        assert!(!s.due(NOW_MS + 6000));
        assert!(!s.due(NOW_MS + 6000 + LEASE_GRACE_MS - 1));
        assert!(
            s.due(NOW_MS + 6000 + LEASE_GRACE_MS),
            "a dead poller's lease runs out"
        );
    }

    #[test]
    fn the_first_poll_asks_for_the_cursor_and_later_polls_continue_from_it() {
        let mut s = FeedState::default();
        assert_eq!(s.request_path(&feed()), "/v1/changes");
        s.on_answer(&reset("abc:7"), NOW_MS, &feed());
        assert_eq!(
            s.request_path(&feed()),
            "/v1/changes?after=abc%3A7&wait_ms=5000"
        );
    }

    #[test]
    fn an_empty_answer_schedules_the_next_poll_an_interval_after_the_last_was_sent() {
        let mut s = FeedState::default();
        s.lease(NOW_MS, &feed());
        s.on_answer(&answer("c:1", vec![]), NOW_MS + 100, &feed());
        assert_eq!(s.next_poll_ms, NOW_MS + 500);
        // A long poll held past the interval is followed at once.
        s.lease(NOW_MS + 500, &feed());
        s.on_answer(&answer("c:1", vec![]), NOW_MS + 5500, &feed());
        assert_eq!(s.next_poll_ms, NOW_MS + 5500);
    }

    #[test]
    fn changes_or_more_are_followed_by_a_poll_at_once() {
        let mut s = FeedState::default();
        s.lease(NOW_MS, &feed());
        s.on_answer(&answer("c:2", vec![hash(1)]), NOW_MS + 10, &feed());
        assert!(s.due(NOW_MS + 10));
        s.lease(NOW_MS + 10, &feed());
        let more = ChangesResponse {
            more: true,
            ..answer("c:2", vec![])
        };
        s.on_answer(&more, NOW_MS + 20, &feed());
        assert!(s.due(NOW_MS + 20));
    }

    #[test]
    fn failures_keep_the_cursor_and_back_off_to_a_bound() {
        let mut s = FeedState::default();
        s.on_answer(&answer("c:3", vec![]), NOW_MS, &feed());
        s.on_failure(NOW_MS);
        assert_eq!(s.next_poll_ms, NOW_MS + 500);
        s.on_failure(NOW_MS);
        assert_eq!(s.next_poll_ms, NOW_MS + 1000);
        for _ in 0..40 {
            s.on_failure(NOW_MS);
        }
        assert_eq!(s.next_poll_ms, NOW_MS + MAX_BACKOFF_MS);
        assert_eq!(s.cursor.as_deref(), Some("c:3"));
        s.on_answer(&answer("c:4", vec![]), NOW_MS, &feed());
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn a_refused_cursor_is_dropped_so_the_next_poll_resets() {
        let mut s = FeedState::default();
        s.on_answer(&answer("c:3", vec![]), NOW_MS, &feed());
        s.on_refused(NOW_MS);
        assert_eq!(s.cursor, None);
        assert_eq!(s.request_path(&feed()), "/v1/changes");
        assert!(!s.due(NOW_MS));
    }

    #[test]
    fn a_worker_behind_by_a_few_changes_drops_just_those() {
        let mut s = FeedState::default();
        s.on_answer(&answer("c:1", vec![hash(1), hash(2)]), NOW_MS, &feed());
        let seen = s.seen();
        assert_eq!(s.catch_up(Some(seen)), Invalidation::Nothing);
        s.on_answer(&answer("c:2", vec![hash(3)]), NOW_MS, &feed());
        s.on_answer(&answer("c:3", vec![hash(4), hash(5)]), NOW_MS, &feed());
        assert_eq!(
            s.catch_up(Some(seen)),
            Invalidation::Keys(vec![hash(3), hash(4), hash(5)])
        );
        assert_eq!(s.catch_up(Some(s.seen())), Invalidation::Nothing);
    }

    #[test]
    fn a_worker_further_behind_than_the_record_holds_drops_everything() {
        let mut s = FeedState::default();
        let seen = s.seen();
        let many: Vec<KeyHash> = (0..RECENT_CAPACITY as u32).map(hash).collect();
        s.on_answer(&answer("c:1", many.clone()), NOW_MS, &feed());
        assert_eq!(s.catch_up(Some(seen)), Invalidation::Keys(many));
        s.on_answer(&answer("c:2", vec![hash(9999)]), NOW_MS, &feed());
        assert_eq!(s.recent.len(), RECENT_CAPACITY, "the record stays bounded");
        assert_eq!(s.recent.last(), Some(&hash(9999)));
        assert_eq!(s.catch_up(Some(seen)), Invalidation::All);
    }

    #[test]
    fn the_first_poll_drops_what_was_cached_before_it() {
        // A key looked up (and cached) while the first poll was failing, then revoked before
        // the poll got through: the reset's cursor is past the revoke, so only dropping the
        // cache keeps the revoked answer from being served until its TTL.
        let mut s = FeedState::default();
        let seen = s.seen();
        s.on_failure(NOW_MS);
        s.on_answer(&reset("c:5"), NOW_MS + 500, &feed());
        assert_eq!(s.epoch, 1);
        assert_eq!(s.catch_up(Some(seen)), Invalidation::All);
        assert_eq!(s.catch_up(Some(s.seen())), Invalidation::Nothing);
        // A refused cursor later is a reset as well.
        s.on_refused(NOW_MS + 1000);
        s.on_answer(&reset("c:5"), NOW_MS + 1500, &feed());
        assert_eq!(s.epoch, 2);
    }

    #[test]
    fn a_reset_moves_the_epoch_and_every_worker_drops_everything() {
        let mut s = FeedState::default();
        s.on_answer(&answer("c:1", vec![hash(1)]), NOW_MS, &feed());
        let seen = s.seen();
        s.on_answer(&reset("d:0"), NOW_MS, &feed());
        assert_eq!(s.epoch, 1);
        assert!(s.recent.is_empty());
        assert_eq!(s.catch_up(Some(seen)), Invalidation::All);
        assert_eq!(s.catch_up(Some(s.seen())), Invalidation::Nothing);
        assert_eq!(s.cursor.as_deref(), Some("d:0"));
    }

    #[test]
    fn a_lookup_answer_is_cacheable_unless_its_key_changed_since_it_was_sent() {
        let mut s = FeedState::default();
        s.on_answer(&answer("c:1", vec![hash(1)]), NOW_MS, &feed());
        let at_send = s.seen();
        assert!(!s.changed_since(at_send, &hash(2)));
        s.on_answer(&answer("c:2", vec![hash(3)]), NOW_MS, &feed());
        assert!(s.changed_since(at_send, &hash(3)));
        assert!(
            !s.changed_since(at_send, &hash(1)),
            "changed before the lookup was sent"
        );
        s.on_refused(NOW_MS);
        s.on_answer(&reset("d:0"), NOW_MS, &feed());
        assert!(
            s.changed_since(at_send, &hash(2)),
            "a reset changes everything"
        );
    }

    #[test]
    fn a_worker_that_never_looked_drops_everything() {
        assert_eq!(FeedState::default().catch_up(None), Invalidation::All);
    }

    #[test]
    fn a_generation_ahead_of_the_record_drops_everything() {
        let s = FeedState::default();
        let ahead = Seen {
            epoch: 0,
            generation: 5,
        };
        assert_eq!(s.catch_up(Some(ahead)), Invalidation::All);
    }

    #[test]
    fn cached_answers_are_served_up_to_max_stale_past_the_last_good_poll() {
        let mut s = FeedState::default();
        assert!(s.serve_cached(NOW, 300), "no feed found yet");
        s.start(NOW);
        assert!(s.serve_cached(NOW + 300, 300));
        assert!(
            !s.serve_cached(NOW + 301, 300),
            "never polled: counts from start"
        );
        s.on_answer(&answer("c:1", vec![]), (NOW + 200) * 1000, &feed());
        assert!(s.serve_cached(NOW + 500, 300));
        assert!(!s.serve_cached(NOW + 501, 300));
        s.on_failure((NOW + 400) * 1000);
        assert!(
            s.serve_cached(NOW + 500, 300),
            "a failure does not move the bound"
        );
    }

    #[test]
    fn start_is_noted_once() {
        let mut s = FeedState::default();
        assert!(s.start(NOW));
        assert!(!s.start(NOW + 10));
        assert_eq!(s.started_at, NOW);
    }

    #[test]
    fn the_record_round_trips() {
        let mut s = FeedState::default();
        s.start(NOW);
        s.lease(NOW_MS, &feed());
        s.on_answer(&answer("abc:12", vec![hash(1), hash(2)]), NOW_MS, &feed());
        s.on_failure(NOW_MS);
        s.epoch = 7;
        assert_eq!(FeedState::decode(&s.encode()), Some(s.clone()));
        assert_eq!(
            FeedState::decode(&FeedState::default().encode()),
            Some(FeedState::default())
        );
    }

    #[test]
    fn unreadable_records_decode_to_none() {
        let bytes = FeedState::default().encode();
        assert_eq!(FeedState::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(FeedState::decode(b"junk"), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(FeedState::decode(&longer), None);
        let mut too_many = bytes;
        let at = too_many.len() - 2;
        too_many[at..].copy_from_slice(&(RECENT_CAPACITY as u16 + 1).to_le_bytes());
        assert_eq!(FeedState::decode(&too_many), None);
    }

    #[test]
    fn an_overlong_cursor_is_dropped_so_the_next_poll_resets() {
        let mut s = FeedState::default();
        s.on_answer(
            &answer(&"x".repeat(MAX_CURSOR + 1), vec![]),
            NOW_MS,
            &feed(),
        );
        assert_eq!(s.cursor, None);
    }

    #[test]
    fn feed_records_are_named_by_configuration() {
        assert_ne!(
            feed_key(Fingerprint::of(b"a")),
            feed_key(Fingerprint::of(b"b"))
        );
    }
}
