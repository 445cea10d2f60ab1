//! Revocation feed glue: one worker per Envoy at a time polls the key service's change feed
//! (the lease, cursor and recent changes are `keygate_core::feed::FeedState`, in shared data),
//! removes changed keys from the shared key cache, and every worker on its tick drops its own
//! copies of what changed.

use keygate_core::cache::{self, CacheLayout};
use keygate_core::feed::{self, FeedState, Invalidation};
use keygate_core::key::KeyHash;
use keygate_core::wire::ChangesResponse;

use crate::host;
use crate::shared;
use crate::worker::Worker;

/// Largest feed answer read: a full answer of hex hashes, with room to spare.
const MAX_FEED_BODY: usize = 256 * 1024;

impl Worker {
    fn feed_key(&self) -> String {
        feed::feed_key(self.config.fingerprint)
    }

    /// The shared feed record; a missing or unreadable one is the default (nothing known).
    fn feed_state(&self) -> FeedState {
        match host::shared_get(&self.feed_key()) {
            Ok((Some(bytes), _)) => FeedState::decode(&bytes).unwrap_or_default(),
            Ok((None, _)) => FeedState::default(),
            Err(e) => {
                log::warn!("feed state: {e}");
                FeedState::default()
            }
        }
    }

    /// Changes the shared feed record with compare-and-swap; `change` returns false to leave it.
    fn update_feed(&self, mut change: impl FnMut(&mut FeedState) -> bool) -> bool {
        shared::update(&self.feed_key(), |bytes| {
            let mut state = bytes.and_then(FeedState::decode).unwrap_or_default();
            change(&mut state).then(|| state.encode())
        })
    }

    /// Brings this worker's key cache in step with the feed record: drops what changed since it
    /// last looked (or everything, after a reset or when too far behind), and notes whether
    /// cached answers may still be served. One shared-data read when nothing moved.
    pub fn sync_feed(&self, now_secs: u64) {
        let Some(revocation) = &self.config.revocation else {
            return;
        };
        let mut state = self.feed_state();
        if state.started_at == 0 {
            self.update_feed(|s| s.start(now_secs));
            state.start(now_secs);
        }
        let seen = self.feed.seen.get();
        match state.catch_up(seen) {
            Invalidation::Nothing => {}
            Invalidation::Keys(hashes) => {
                for hash in &hashes {
                    self.keys.forget(hash);
                }
            }
            Invalidation::All => {
                if seen.is_some() {
                    log::info!("revocation feed: dropping this worker's whole key cache");
                }
                self.keys.relayout(CacheLayout::keys(
                    &self.config.cache,
                    self.config.fingerprint,
                    state.epoch,
                ));
                self.keys.forget_all();
            }
        }
        self.feed.seen.set(Some(state.seen()));
        self.prune_lookups_seen();
        let serve = state.serve_cached(now_secs, revocation.max_stale_secs);
        if serve != self.feed.serve_cached.get() {
            if serve {
                log::info!("revocation feed: polled again; cached key answers are served");
            } else {
                log::warn!(
                    "revocation feed: no good poll for {} s; cached key answers are not served",
                    revocation.max_stale_secs
                );
            }
        }
        self.feed.serve_cached.set(serve);
    }

    /// Notes the feed state a lookup of `hash` is sent under (the first send's, if sent again).
    pub fn note_lookup_sent(&self, hash: &KeyHash) {
        if let Some(seen) = self.feed.seen.get() {
            self.feed
                .lookups_seen
                .borrow_mut()
                .entry(*hash)
                .or_insert(seen);
        }
    }

    /// Whether the answer to the lookup of `hash`, now arriving, may be cached: not when the
    /// feed says the key changed after the lookup was sent (the answer may predate the change).
    /// One shared-data read per answer, with the feed on.
    pub fn lookup_answer_cacheable(&self, hash: &KeyHash) -> bool {
        let sent_under = self.feed.lookups_seen.borrow_mut().remove(hash);
        if self.config.revocation.is_none() {
            return true;
        }
        match sent_under {
            Some(seen) => !self.feed_state().changed_since(seen, hash),
            None => false,
        }
    }

    /// Forgets what was noted for lookups no longer in flight (never answered, or dropped).
    fn prune_lookups_seen(&self) {
        let lookups = self.lookups.borrow();
        self.feed
            .lookups_seen
            .borrow_mut()
            .retain(|hash, _| lookups.contains(hash));
    }

    /// Whether cached key answers may be served now (always, with the feed off).
    pub fn serve_cached_keys(&self) -> bool {
        self.feed.serve_cached.get()
    }

    /// Sends the next poll, if it is due and this worker wins the lease.
    pub fn poll_feed_if_due(&self, now_ms: u64) {
        let Some(revocation) = &self.config.revocation else {
            return;
        };
        if self.feed.poll_in_flight.get().is_some() {
            return;
        }
        let mut path = None;
        let leased = self.update_feed(|s| {
            s.start(now_ms / 1000);
            let due = s.due(now_ms);
            if due {
                s.lease(now_ms, revocation);
                path = Some(s.request_path(revocation));
            }
            due
        });
        let (true, Some(path)) = (leased, path) else {
            return;
        };
        match self.get_from_key_service(&path, revocation.timeout) {
            Ok(token) => {
                self.metrics.inc(self.metrics.feed_poll);
                self.feed.poll_in_flight.set(Some(token));
            }
            Err(e) => {
                log::warn!("revocation feed: poll not sent: {e}");
                self.metrics.inc(self.metrics.feed_poll_failure);
                self.update_feed(|s| {
                    s.on_failure(now_ms);
                    true
                });
            }
        }
    }

    /// Whether callout `token` is this worker's poll; if so it is no longer in flight.
    pub fn take_feed_poll(&self, token: u32) -> bool {
        let mine = self.feed.poll_in_flight.get() == Some(token);
        if mine {
            self.feed.poll_in_flight.set(None);
        }
        mine
    }

    /// Handles the poll's answer: removes each changed key from the shared key cache, then
    /// publishes the changes (or the reset) in the feed record for every worker, catches this
    /// worker up, and polls again if that is due at once. The shared entries go first, so a
    /// worker that sees the new generation can no longer read an old answer from shared data.
    pub fn on_feed_answer(&self, body_size: usize, now_ms: u64) {
        let Some(revocation) = &self.config.revocation else {
            return;
        };
        let answer = match read_changes(body_size) {
            Ok(answer) => answer,
            Err(why) => {
                log::warn!("revocation feed: poll failed: {why}");
                self.metrics.inc(self.metrics.feed_poll_failure);
                let refused = matches!(why, PollError::Status(Some(400)));
                self.update_feed(|s| {
                    if refused {
                        s.on_refused(now_ms);
                    } else {
                        s.on_failure(now_ms);
                    }
                    true
                });
                return;
            }
        };
        if answer.reset {
            log::info!("revocation feed: reset");
            self.metrics.inc(self.metrics.feed_reset);
        } else if !answer.changes.is_empty() {
            let epoch = self.feed_state().epoch;
            let layout = CacheLayout::keys(&self.config.cache, self.config.fingerprint, epoch);
            for hash in &answer.changes {
                remove_shared(&layout, hash);
            }
            self.metrics
                .inc_by(self.metrics.feed_changes, answer.changes.len());
        }
        self.update_feed(|s| {
            s.on_answer(&answer, now_ms, revocation);
            true
        });
        self.sync_feed(now_ms / 1000);
        self.poll_feed_if_due(now_ms);
    }
}

/// Removes `hash`'s entry from its shared bucket, if there is one.
fn remove_shared(layout: &CacheLayout, hash: &KeyHash) {
    shared::update(&layout.bucket_key(hash), |bytes| {
        bytes.and_then(|b| cache::remove(b, hash))
    });
}

/// Why a poll gave no usable answer.
#[derive(Debug)]
enum PollError {
    /// Not 200; `None` when the callout itself failed (reset, timeout).
    Status(Option<u16>),
    Host(host::HostError),
    TooLarge(usize),
    Unreadable(serde_json::Error),
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(Some(s)) => write!(f, "status {s}"),
            Self::Status(None) => write!(f, "no answer"),
            Self::Host(e) => write!(f, "{e}"),
            Self::TooLarge(n) => write!(f, "answer of {n} bytes is too large"),
            Self::Unreadable(e) => write!(f, "unreadable answer: {e}"),
        }
    }
}

/// The poll answer being delivered, if it is a good one.
fn read_changes(body_size: usize) -> Result<ChangesResponse, PollError> {
    let status = host::call_response_status().map_err(PollError::Host)?;
    if status != Some(200) {
        return Err(PollError::Status(status));
    }
    if body_size > MAX_FEED_BODY {
        return Err(PollError::TooLarge(body_size));
    }
    let body = host::call_response_body(body_size)
        .map_err(PollError::Host)?
        .unwrap_or_default();
    serde_json::from_slice(&body).map_err(PollError::Unreadable)
}
