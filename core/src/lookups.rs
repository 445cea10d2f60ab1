//! Key lookups in flight, per worker: which paused requests wait on which key's callout, who
//! sent each callout, and when nobody is left to finish them. The filter sends callouts and
//! finishes requests as this table says; every decision here takes `now`.
//!
//! Envoy ties a callout to the stream that sent it: when that stream ends (the client reset it),
//! the callout is cancelled with it and its answer never comes. So a lookup whose sender went
//! away is *orphaned*: the next request for the same key sends it again and becomes its sender,
//! and otherwise the root context sends it at its next tick. No later request ever joins a lookup
//! that cannot answer, and a request that went away holds no place under the cap.

use std::collections::HashMap;

use crate::credential::Strip;
use crate::key::KeyHash;
use crate::route::Permission;

/// Past the lookup timeout, how long a sent lookup may stay unanswered before its waiters are
/// answered "unavailable". Envoy answers every callout by its timeout; this is a backstop.
pub const ORPHAN_GRACE_SECS: u64 = 1;

/// Whether a lookup that failed with this callout status (`None`: no answer at all) is worth
/// sending once more. Envoy answers 503 itself when it could not connect to the replica it picked
/// or lost the connection before an answer (a replica killed or restarting), and a key service
/// that cannot reach its database answers 503 too: another replica, or the same a moment later,
/// may answer. A timeout (504) is not retried: the waiting requests have waited long enough. Any
/// other status is an answer the key service would give again.
pub fn worth_another_try(status: Option<u16>) -> bool {
    matches!(status, None | Some(503))
}

/// A paused request waiting for a key's lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    pub context_id: u32,
    pub required: Vec<Permission>,
    pub strip: Strip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Admitted while enough callouts were out: it goes out with the next batch
    /// ([`Lookups::take_batch`]).
    Queued,
    /// Admitted, the callout not yet sent (between [`Lookups::admit`] or `take_batch` and
    /// `sent`).
    Unsent,
    /// A callout is out, sent by context `sender`; its answer finishes every waiter.
    Sent { token: u32, sender: u32, at: u64 },
    /// Its sender went away, and its callout with it: it must be sent again.
    Orphaned,
}

#[derive(Debug)]
struct Pending {
    state: State,
    waiters: Vec<Waiter>,
    /// Sent again after a failed attempt ([`Lookups::retry`]); it is not sent a third time.
    retried: bool,
}

/// One lookup callout: the keys it asks for, in the order they were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub hashes: Vec<KeyHash>,
    /// Sent as a batch (`POST /v1/lookups`, answered in order), even when it holds one key;
    /// otherwise a single lookup of `hashes[0]`.
    pub batch: bool,
}

/// A callout's answer arrived: each key it asked for, in the order sent, with the requests that
/// still wait on it (none, when all went away: its answer is still worth caching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub batch: bool,
    pub lookups: Vec<(KeyHash, Vec<Waiter>)>,
}

/// What a request that missed the caches does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Another request's lookup of the same key is out or about to go: wait for it.
    Joined,
    /// Send the lookup (then call [`Lookups::sent`] or [`Lookups::send_failed`]).
    Send,
    /// Enough callouts are out: the lookup goes with the next batch. `wake`: this is the first
    /// key of that batch, so whoever sends batches must be told (once per batch).
    Batch { wake: bool },
    /// Too many lookups in flight: answer "unavailable" now rather than pile up.
    Full,
}

/// The lookups in flight from one worker, by key hash.
#[derive(Debug)]
pub struct Lookups {
    entries: HashMap<KeyHash, Pending>,
    /// The callouts out, by token.
    callouts: HashMap<u32, Callout>,
    /// Keys admitted for the next batch, oldest first. An entry may have left meanwhile (its
    /// waiters went away); [`Lookups::take_batch`] skips it.
    queue: Vec<KeyHash>,
    /// The batch sender was woken and has not taken the queue since.
    woken: bool,
    /// The waiters of all entries together.
    waiting: usize,
    /// At most this many keys looked up at once.
    max: usize,
    /// With fewer callouts than this out, a new lookup goes out at once on its own.
    unbatched: usize,
    /// The callout timeout, seconds.
    timeout_secs: u64,
}

impl Lookups {
    /// `max` keys looked up at once at most; a new lookup goes out on its own while fewer than
    /// `unbatched` callouts are out, and with the next batch otherwise.
    pub fn new(max: usize, unbatched: usize, timeout_secs: u64) -> Self {
        Self {
            entries: HashMap::new(),
            callouts: HashMap::new(),
            queue: Vec::new(),
            woken: false,
            waiting: 0,
            max,
            unbatched,
            timeout_secs,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Requests waiting on all lookups together (the worker bounds them with the requests
    /// parked for JWT keys).
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Callouts out now.
    pub fn callouts(&self) -> usize {
        self.callouts.len()
    }

    /// Removes `hash`'s entry and its waiters from the count.
    fn take(&mut self, hash: &KeyHash) -> Option<Pending> {
        let p = self.entries.remove(hash)?;
        self.waiting = self.waiting.saturating_sub(p.waiters.len());
        Some(p)
    }

    /// A request missed the caches for `hash`. `Joined`, `Send` and `Batch` keep `waiter`
    /// until the lookup is answered; `Full` drops it.
    pub fn admit(&mut self, hash: KeyHash, waiter: Waiter) -> Admit {
        if let Some(p) = self.entries.get_mut(&hash) {
            p.waiters.push(waiter);
            self.waiting = self.waiting.saturating_add(1);
            return match p.state {
                State::Sent { .. } | State::Unsent | State::Queued => Admit::Joined,
                State::Orphaned => {
                    p.state = State::Unsent;
                    Admit::Send
                }
            };
        }
        if self.entries.len() >= self.max {
            return Admit::Full;
        }
        let batched = self.callouts.len() >= self.unbatched;
        self.entries.insert(
            hash,
            Pending {
                state: if batched {
                    State::Queued
                } else {
                    State::Unsent
                },
                waiters: vec![waiter],
                retried: false,
            },
        );
        self.waiting = self.waiting.saturating_add(1);
        if !batched {
            return Admit::Send;
        }
        self.queue.push(hash);
        let wake = !self.woken;
        self.woken = true;
        Admit::Batch { wake }
    }

    /// Up to `max` queued keys, oldest first, for one batch callout: each becomes `Unsent` until
    /// [`Lookups::sent_batch`] or [`Lookups::send_failed`]. Empty once the queue is; the next
    /// queued key then wakes the sender again.
    pub fn take_batch(&mut self, max: usize) -> Vec<KeyHash> {
        let mut batch = Vec::new();
        let mut taken = 0;
        for hash in &self.queue {
            if batch.len() == max {
                break;
            }
            taken += 1;
            if let Some(p) = self.entries.get_mut(hash) {
                if p.state == State::Queued {
                    p.state = State::Unsent;
                    batch.push(*hash);
                }
            }
        }
        self.queue.drain(..taken);
        if self.queue.is_empty() {
            self.woken = false;
        }
        batch
    }

    /// Whether a lookup of `hash` is waiting to go out or in flight.
    pub fn contains(&self, hash: &KeyHash) -> bool {
        self.entries.contains_key(hash)
    }

    /// The lookup of `hash` went out alone as callout `token`, sent by context `sender`.
    pub fn sent(&mut self, hash: &KeyHash, token: u32, sender: u32, now: u64) {
        self.sent_callout(
            Callout {
                hashes: vec![*hash],
                batch: false,
            },
            token,
            sender,
            now,
        );
    }

    /// The lookups of `hashes` went out together, in this order, as batch callout `token`.
    pub fn sent_batch(&mut self, hashes: Vec<KeyHash>, token: u32, sender: u32, now: u64) {
        self.sent_callout(
            Callout {
                hashes,
                batch: true,
            },
            token,
            sender,
            now,
        );
    }

    /// `callout` went out as callout `token`, sent by context `sender`.
    pub fn sent_callout(&mut self, callout: Callout, token: u32, sender: u32, now: u64) {
        for hash in &callout.hashes {
            if let Some(p) = self.entries.get_mut(hash) {
                p.state = State::Sent {
                    token,
                    sender,
                    at: now,
                };
            }
        }
        self.callouts.insert(token, callout);
    }

    /// The lookup of `hash` could not be sent: its waiters are answered now.
    pub fn send_failed(&mut self, hash: &KeyHash) -> Vec<Waiter> {
        self.take(hash).map(|p| p.waiters).unwrap_or_default()
    }

    /// Whether `hash`'s entry waits on callout `token`.
    fn waits_on(&self, hash: &KeyHash, token: u32) -> bool {
        self.entries
            .get(hash)
            .is_some_and(|p| matches!(p.state, State::Sent { token: t, .. } if t == token))
    }

    /// Callout `token` answered: each key it asked for, with the requests to finish with its
    /// answer. `None` when `token` is not a lookup callout of this table (or no longer is: its
    /// keys were sent again or expired).
    pub fn answered(&mut self, token: u32) -> Option<Finished> {
        let callout = self.callouts.remove(&token)?;
        let lookups = callout
            .hashes
            .into_iter()
            .map(|hash| {
                let waiters = if self.waits_on(&hash, token) {
                    self.take(&hash).map(|p| p.waiters).unwrap_or_default()
                } else {
                    Vec::new()
                };
                (hash, waiters)
            })
            .collect();
        Some(Finished {
            batch: callout.batch,
            lookups,
        })
    }

    /// Callout `token` failed in a way another attempt may not: Envoy could not get an answer
    /// from the replica it picked ([`worth_another_try`]). The first time, its lookups that
    /// still have waiters keep them and become `Unsent` (the others are dropped), and the callout is returned: the same sender sends it
    /// again at once (then [`Lookups::sent`], [`Lookups::sent_batch`] or
    /// [`Lookups::send_failed`]), and Envoy's load balancer picks again. `None` when `token` is
    /// not a lookup callout of this table, or was already sent again: then it is finished as
    /// answered.
    pub fn retry(&mut self, token: u32) -> Option<Callout> {
        let callout = self.callouts.get(&token)?;
        let (live, unwanted): (Vec<KeyHash>, Vec<KeyHash>) = callout
            .hashes
            .iter()
            .filter(|h| self.waits_on(h, token))
            .partition(|h| self.entries.get(h).is_some_and(|p| !p.waiters.is_empty()));
        if live.is_empty()
            || live
                .iter()
                .any(|h| self.entries.get(h).is_some_and(|p| p.retried))
        {
            return None;
        }
        let batch = callout.batch;
        self.callouts.remove(&token);
        // Keys nobody waits for any more are not worth another attempt.
        for hash in &unwanted {
            self.take(hash);
        }
        for hash in &live {
            if let Some(p) = self.entries.get_mut(hash) {
                p.retried = true;
                p.state = State::Unsent;
            }
        }
        Some(Callout {
            hashes: live,
            batch,
        })
    }

    /// Request `context_id`, which waited on `hash`, ended. It waits no more; if it sent the
    /// lookup, the lookup is orphaned (or dropped, when nobody else waits).
    pub fn gone(&mut self, hash: &KeyHash, context_id: u32) {
        let Some(p) = self.entries.get_mut(hash) else {
            return;
        };
        let before = p.waiters.len();
        p.waiters.retain(|w| w.context_id != context_id);
        self.waiting = self.waiting.saturating_sub(before - p.waiters.len());
        if let State::Sent { sender, token, .. } = p.state {
            if sender == context_id {
                // Envoy cancelled the callout with its stream: no answer will come.
                p.state = State::Orphaned;
                self.callouts.remove(&token);
            }
        }
        if p.waiters.is_empty() && !matches!(p.state, State::Sent { .. }) {
            self.take(hash);
        }
    }

    /// Orphaned lookups that still have waiters: the root context sends them again, and each
    /// becomes `Unsent` until it calls [`Lookups::sent`] or [`Lookups::send_failed`].
    pub fn take_orphans(&mut self) -> Vec<KeyHash> {
        self.entries
            .iter_mut()
            .filter(|(_, p)| p.state == State::Orphaned)
            .map(|(hash, p)| {
                p.state = State::Unsent;
                *hash
            })
            .collect()
    }

    /// Lookups sent longer ago than the timeout and its grace, still unanswered: removed, and
    /// their waiters returned to be answered "unavailable".
    pub fn expire(&mut self, now: u64) -> Vec<Waiter> {
        let limit = self.timeout_secs + ORPHAN_GRACE_SECS;
        let stale: Vec<(KeyHash, u32)> = self
            .entries
            .iter()
            .filter_map(|(h, p)| match p.state {
                State::Sent { at, token, .. } if at + limit < now => Some((*h, token)),
                _ => None,
            })
            .collect();
        let mut waiters = Vec::new();
        for (hash, token) in stale {
            self.callouts.remove(&token);
            if let Some(p) = self.take(&hash) {
                waiters.extend(p.waiters);
            }
        }
        waiters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: u64 = 2;
    const ROOT: u32 = 1;
    /// Never batched: every lookup goes out on its own.
    const ALONE: usize = usize::MAX;

    fn hash(n: u8) -> KeyHash {
        KeyHash::of(&[n])
    }

    fn waiter(context_id: u32) -> Waiter {
        Waiter {
            context_id,
            required: Vec::new(),
            strip: Strip::default(),
        }
    }

    /// The one key a single lookup's answer finishes, with its waiters.
    fn single(finished: Option<Finished>) -> Option<(KeyHash, Vec<Waiter>)> {
        let f = finished?;
        assert!(!f.batch);
        assert_eq!(f.lookups.len(), 1);
        f.lookups.into_iter().next()
    }

    fn ids(waiters: &[Waiter]) -> Vec<u32> {
        waiters.iter().map(|w| w.context_id).collect()
    }

    #[test]
    fn second_request_for_a_key_joins_the_first_lookup() {
        let mut l = Lookups::new(8, ALONE, TIMEOUT);
        assert_eq!(l.admit(hash(1), waiter(10)), Admit::Send);
        l.sent(&hash(1), 7, 10, 100);
        assert_eq!(l.admit(hash(1), waiter(11)), Admit::Joined);
        let (h, waiters) = single(l.answered(7)).unwrap();
        assert_eq!(h, hash(1));
        assert_eq!(ids(&waiters), [10, 11]);
        assert!(l.is_empty());
    }

    #[test]
    fn a_failed_lookup_is_sent_once_more_with_its_waiters_then_finished() {
        let mut l = Lookups::new(8, ALONE, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        assert_eq!(l.retry(8), None, "not a lookup");
        assert_eq!(l.retry(7).map(|c| c.hashes), Some(vec![hash(1)]));
        // Unsent meanwhile: a request for the same key joins rather than sending its own.
        assert_eq!(l.admit(hash(1), waiter(12)), Admit::Joined);
        assert_eq!(
            single(l.answered(7)),
            None,
            "the failed callout finishes nobody"
        );
        l.sent(&hash(1), 9, 10, 100);
        // The second attempt failing too is finished as answered, with every waiter.
        assert_eq!(l.retry(9), None);
        let (h, waiters) = single(l.answered(9)).unwrap();
        assert_eq!(h, hash(1));
        assert_eq!(ids(&waiters), [10, 11, 12]);
        assert!(l.is_empty());
    }

    #[test]
    fn a_retry_that_cannot_be_sent_returns_every_waiter() {
        let mut l = Lookups::new(8, ALONE, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        assert_eq!(l.retry(7).map(|c| c.hashes), Some(vec![hash(1)]));
        assert_eq!(ids(&l.send_failed(&hash(1))), [10, 11]);
        assert!(l.is_empty());
    }

    #[test]
    fn only_unreachable_or_unavailable_replicas_are_worth_another_try() {
        assert!(worth_another_try(None));
        assert!(worth_another_try(Some(503)));
        for status in [200, 400, 401, 403, 404, 429, 500, 502, 504] {
            assert!(!worth_another_try(Some(status)), "{status}");
        }
    }

    #[test]
    fn an_unknown_token_is_not_a_lookup() {
        let mut l = Lookups::new(8, ALONE, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        assert_eq!(single(l.answered(8)), None);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_request_after_the_sender_went_away_sends_again_and_finishes_earlier_waiters() {
        let mut l = Lookups::new(8, ALONE, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        l.gone(&hash(1), 10);
        // The cancelled callout's token no longer finishes anyone.
        assert_eq!(l.admit(hash(1), waiter(12)), Admit::Send);
        l.sent(&hash(1), 9, 12, 101);
        assert_eq!(single(l.answered(7)), None);
        let (_, waiters) = single(l.answered(9)).unwrap();
        assert_eq!(ids(&waiters), [11, 12]);
    }

    #[test]
    fn the_root_sends_orphans_that_still_have_waiters() {
        let mut l = Lookups::new(8, ALONE, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        l.gone(&hash(1), 10);
        assert_eq!(l.take_orphans(), [hash(1)]);
        // Taken once: the next tick does not send it twice.
        assert_eq!(l.take_orphans(), []);
        l.sent(&hash(1), 20, ROOT, 101);
        let (_, waiters) = single(l.answered(20)).unwrap();
        assert_eq!(ids(&waiters), [11]);
    }

    #[test]
    fn a_lookup_nobody_waits_for_frees_its_place_under_the_cap() {
        let mut l = Lookups::new(2, ALONE, TIMEOUT);
        for (n, ctx) in [(1, 10), (2, 11)] {
            assert_eq!(l.admit(hash(n), waiter(ctx)), Admit::Send);
            l.sent(&hash(n), u32::from(n), ctx, 100);
        }
        assert_eq!(l.admit(hash(3), waiter(12)), Admit::Full);
        l.gone(&hash(1), 10);
        l.gone(&hash(2), 11);
        assert!(l.is_empty());
        assert_eq!(l.take_orphans(), []);
        assert_eq!(l.admit(hash(3), waiter(12)), Admit::Send);
    }

    #[test]
    fn a_waiter_that_went_away_is_not_finished() {
        let mut l = Lookups::new(8, ALONE, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        l.gone(&hash(1), 11);
        let (_, waiters) = single(l.answered(7)).unwrap();
        assert_eq!(ids(&waiters), [10]);
    }

    #[test]
    fn gone_after_the_answer_touches_a_newer_lookup_of_the_same_key_not() {
        let mut l = Lookups::new(8, ALONE, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        single(l.answered(7)).unwrap();
        l.admit(hash(1), waiter(11));
        l.sent(&hash(1), 8, 11, 101);
        l.gone(&hash(1), 10);
        assert_eq!(ids(&single(l.answered(8)).unwrap().1), [11]);
    }

    #[test]
    fn a_failed_send_answers_every_waiter() {
        let mut l = Lookups::new(8, ALONE, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        l.gone(&hash(1), 10);
        assert_eq!(l.admit(hash(1), waiter(12)), Admit::Send);
        assert_eq!(ids(&l.send_failed(&hash(1))), [11, 12]);
        assert!(l.is_empty());
    }

    #[test]
    fn past_the_unbatched_callouts_new_keys_go_out_together_in_order() {
        let mut l = Lookups::new(8, 1, TIMEOUT);
        assert_eq!(l.admit(hash(1), waiter(10)), Admit::Send);
        l.sent(&hash(1), 7, 10, 100);
        assert_eq!(l.callouts(), 1);
        // One callout is out: the next keys wait for a batch, and only the first wakes its
        // sender.
        assert_eq!(l.admit(hash(2), waiter(11)), Admit::Batch { wake: true });
        assert_eq!(l.admit(hash(3), waiter(12)), Admit::Batch { wake: false });
        assert_eq!(l.admit(hash(2), waiter(13)), Admit::Joined);
        assert_eq!(l.take_batch(64), [hash(2), hash(3)]);
        assert_eq!(l.take_batch(64), []);
        // Between taking and sending, a request for a batched key joins it.
        assert_eq!(l.admit(hash(3), waiter(14)), Admit::Joined);
        l.sent_batch(vec![hash(2), hash(3)], 8, ROOT, 100);
        assert_eq!(l.callouts(), 2);
        // The queue was taken: the next batched key wakes the sender again.
        assert_eq!(l.admit(hash(4), waiter(15)), Admit::Batch { wake: true });
        let f = l.answered(8).unwrap();
        assert!(f.batch);
        let keys: Vec<(KeyHash, Vec<u32>)> = f.lookups.iter().map(|(h, w)| (*h, ids(w))).collect();
        assert_eq!(keys, [(hash(2), vec![11, 13]), (hash(3), vec![12, 14])]);
        assert_eq!(l.callouts(), 1);
        assert_eq!(single(l.answered(7)).unwrap().0, hash(1));
        assert_eq!(l.callouts(), 0);
        assert_eq!(l.take_batch(64), [hash(4)]);
    }

    #[test]
    fn a_batch_takes_at_most_its_size_oldest_first_and_skips_keys_nobody_waits_for() {
        let mut l = Lookups::new(8, 0, TIMEOUT);
        for n in 1..=5 {
            assert!(matches!(
                l.admit(hash(n), waiter(u32::from(n))),
                Admit::Batch { .. }
            ));
        }
        l.gone(&hash(2), 2);
        assert!(
            !l.contains(&hash(2)),
            "a queued key nobody waits for is dropped"
        );
        assert_eq!(l.take_batch(2), [hash(1), hash(3)]);
        // Keys are still queued: the sender is not woken again, it takes the rest itself.
        assert_eq!(l.admit(hash(6), waiter(6)), Admit::Batch { wake: false });
        assert_eq!(l.take_batch(2), [hash(4), hash(5)]);
        assert_eq!(l.take_batch(2), [hash(6)]);
        assert_eq!(l.take_batch(2), []);
        assert_eq!(l.waiting(), 5);
    }

    #[test]
    fn a_failed_batch_is_sent_once_more_with_the_keys_still_waiting() {
        let mut l = Lookups::new(8, 0, TIMEOUT);
        for n in 1..=3 {
            l.admit(hash(n), waiter(u32::from(n)));
        }
        let batch = l.take_batch(64);
        l.sent_batch(batch, 7, ROOT, 100);
        // Everyone waiting for key 2 left; its answer would still be cached, but it is not
        // worth a second attempt.
        l.gone(&hash(2), 2);
        let again = l.retry(7).unwrap();
        assert!(again.batch);
        assert_eq!(again.hashes, [hash(1), hash(3)]);
        assert_eq!(l.callouts(), 0);
        l.sent_batch(again.hashes, 9, ROOT, 101);
        assert_eq!(l.retry(9), None, "sent twice already");
        let f = l.answered(9).unwrap();
        let keys: Vec<(KeyHash, Vec<u32>)> = f.lookups.iter().map(|(h, w)| (*h, ids(w))).collect();
        assert_eq!(keys, [(hash(1), vec![1]), (hash(3), vec![3])]);
        // Key 2 left with the first callout.
        assert!(l.is_empty(), "{:?}", l.entries.keys().collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_key_nobody_waits_for_any_more_is_still_answered_for_the_cache() {
        let mut l = Lookups::new(8, 0, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.admit(hash(2), waiter(11));
        let batch = l.take_batch(64);
        l.sent_batch(batch, 7, ROOT, 100);
        l.gone(&hash(1), 10);
        // The root sent it: the callout is not cancelled with any request.
        assert_eq!(l.callouts(), 1);
        let f = l.answered(7).unwrap();
        let keys: Vec<(KeyHash, Vec<u32>)> = f.lookups.iter().map(|(h, w)| (*h, ids(w))).collect();
        assert_eq!(keys, [(hash(1), vec![]), (hash(2), vec![11])]);
        assert!(l.is_empty());
    }

    #[test]
    fn an_unanswered_batch_expires_whole() {
        let mut l = Lookups::new(8, 0, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.admit(hash(2), waiter(11));
        let batch = l.take_batch(64);
        l.sent_batch(batch, 7, ROOT, 100);
        let mut expired = ids(&l.expire(100 + TIMEOUT + ORPHAN_GRACE_SECS + 1));
        expired.sort_unstable();
        assert_eq!(expired, [10, 11]);
        assert_eq!(l.callouts(), 0);
        assert_eq!(l.answered(7), None, "a late answer finishes nobody");
    }

    #[test]
    fn an_unanswered_lookup_expires_after_timeout_and_grace() {
        let mut l = Lookups::new(8, ALONE, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        let last_patient = 100 + TIMEOUT + ORPHAN_GRACE_SECS;
        assert_eq!(l.expire(last_patient), []);
        assert_eq!(ids(&l.expire(last_patient + 1)), [10]);
        assert!(l.is_empty());
    }

    /// `waiting()` is kept as a count; it must always be the waiters of every entry together,
    /// whatever sequence of requests, answers, retries, departures and expiries leads there.
    #[test]
    fn the_count_of_waiting_requests_follows_every_operation() {
        let mut l = Lookups::new(4, 2, TIMEOUT);
        // A small deterministic generator (xorshift), so a failure replays.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut tokens = 0u32;
        let mut now = 100;
        let mut woken = false;
        for step in 0..20_000u32 {
            let key = hash(u8::try_from(next(6)).unwrap());
            let context = 10 + u32::try_from(next(12)).unwrap();
            match next(8) {
                0 | 1 => {
                    let admitted = l.admit(key, waiter(context));
                    if admitted == (Admit::Batch { wake: true }) {
                        assert!(!woken, "woken twice for one batch at step {step}");
                        woken = true;
                    }
                    if admitted == Admit::Send {
                        tokens += 1;
                        if next(5) == 0 {
                            l.send_failed(&key);
                        } else {
                            l.sent(&key, tokens, context, now);
                        }
                    }
                }
                2 => {
                    let token = u32::try_from(next(u64::from(tokens) + 1)).unwrap();
                    if l.retry(token).is_none() {
                        l.answered(token);
                    }
                }
                3 => {
                    let token = u32::try_from(next(u64::from(tokens) + 1)).unwrap();
                    l.answered(token);
                }
                4 | 5 => l.gone(&key, context),
                6 if next(2) == 0 => {
                    woken = false;
                    loop {
                        let batch = l.take_batch(2);
                        if batch.is_empty() {
                            break;
                        }
                        tokens += 1;
                        if next(5) == 0 {
                            for h in &batch {
                                l.send_failed(h);
                            }
                        } else {
                            l.sent_batch(batch, tokens, ROOT, now);
                        }
                    }
                }
                6 => {
                    for orphan in l.take_orphans() {
                        tokens += 1;
                        l.sent(&orphan, tokens, ROOT, now);
                    }
                }
                _ => {
                    now += next(3);
                    l.expire(now);
                }
            }
            let counted: usize = l.entries.values().map(|p| p.waiters.len()).sum();
            assert_eq!(l.waiting(), counted, "after step {step}");
            // Every callout counted as out has a key waiting on it, and every key sent waits on
            // a callout counted as out: the batching decision sees the truth.
            for (token, callout) in &l.callouts {
                assert!(
                    callout.hashes.iter().any(|h| l.waits_on(h, *token)),
                    "callout {token} counted but nothing waits on it, after step {step}"
                );
            }
            for p in l.entries.values() {
                if let State::Sent { token, .. } = p.state {
                    assert!(l.callouts.contains_key(&token), "after step {step}");
                }
            }
            // A queued key is in the queue, and the queue is only non-empty once woken.
            for (h, p) in &l.entries {
                if p.state == State::Queued {
                    assert!(l.queue.contains(h) && l.woken, "after step {step}");
                }
            }
        }
    }
}
