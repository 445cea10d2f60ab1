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
    /// Admitted, the callout not yet sent (only between [`Lookups::admit`] and `sent`).
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

/// What a request that missed the caches does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Another request's lookup of the same key is out: wait for it.
    Joined,
    /// Send the lookup (then call [`Lookups::sent`] or [`Lookups::send_failed`]).
    Send,
    /// Too many lookups in flight: answer "unavailable" now rather than pile up.
    Full,
}

/// The lookups in flight from one worker, by key hash.
#[derive(Debug)]
pub struct Lookups {
    entries: HashMap<KeyHash, Pending>,
    /// The waiters of all entries together.
    waiting: usize,
    /// At most this many keys looked up at once.
    max: usize,
    /// The callout timeout, seconds.
    timeout_secs: u64,
}

impl Lookups {
    pub fn new(max: usize, timeout_secs: u64) -> Self {
        Self {
            entries: HashMap::new(),
            waiting: 0,
            max,
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

    /// Removes `hash`'s entry and its waiters from the count.
    fn take(&mut self, hash: &KeyHash) -> Option<Pending> {
        let p = self.entries.remove(hash)?;
        self.waiting = self.waiting.saturating_sub(p.waiters.len());
        Some(p)
    }

    /// A request missed the caches for `hash`. `Joined` and `Send` keep `waiter` until the
    /// lookup is answered; `Full` drops it.
    pub fn admit(&mut self, hash: KeyHash, waiter: Waiter) -> Admit {
        if let Some(p) = self.entries.get_mut(&hash) {
            p.waiters.push(waiter);
            self.waiting = self.waiting.saturating_add(1);
            return match p.state {
                State::Sent { .. } | State::Unsent => Admit::Joined,
                State::Orphaned => {
                    p.state = State::Unsent;
                    Admit::Send
                }
            };
        }
        if self.entries.len() >= self.max {
            return Admit::Full;
        }
        self.entries.insert(
            hash,
            Pending {
                state: State::Unsent,
                waiters: vec![waiter],
                retried: false,
            },
        );
        self.waiting = self.waiting.saturating_add(1);
        Admit::Send
    }

    /// Whether a lookup of `hash` is waiting to go out or in flight.
    pub fn contains(&self, hash: &KeyHash) -> bool {
        self.entries.contains_key(hash)
    }

    /// The lookup of `hash` went out as callout `token`, sent by context `sender`.
    pub fn sent(&mut self, hash: &KeyHash, token: u32, sender: u32, now: u64) {
        if let Some(p) = self.entries.get_mut(hash) {
            p.state = State::Sent {
                token,
                sender,
                at: now,
            };
        }
    }

    /// The lookup of `hash` could not be sent: its waiters are answered now.
    pub fn send_failed(&mut self, hash: &KeyHash) -> Vec<Waiter> {
        self.take(hash).map(|p| p.waiters).unwrap_or_default()
    }

    /// Callout `token` answered: the key and the requests to finish with that answer. `None`
    /// when `token` is not a lookup of this table.
    pub fn answered(&mut self, token: u32) -> Option<(KeyHash, Vec<Waiter>)> {
        let hash = *self
            .entries
            .iter()
            .find(|(_, p)| matches!(p.state, State::Sent { token: t, .. } if t == token))?
            .0;
        let p = self.take(&hash)?;
        Some((hash, p.waiters))
    }

    /// Callout `token` failed in a way another attempt may not: Envoy could not get an answer
    /// from the replica it picked ([`worth_another_try`]). The first time, the lookup keeps its
    /// waiters and becomes `Unsent`, and its key is returned: the same sender sends it again at
    /// once (then [`Lookups::sent`] or [`Lookups::send_failed`]), and Envoy's load balancer picks
    /// again. `None` when `token` is not a lookup of this table, or was already sent again: then
    /// it is finished as answered.
    pub fn retry(&mut self, token: u32) -> Option<KeyHash> {
        let (hash, p) = self
            .entries
            .iter_mut()
            .find(|(_, p)| matches!(p.state, State::Sent { token: t, .. } if t == token))?;
        if p.retried {
            return None;
        }
        p.retried = true;
        p.state = State::Unsent;
        Some(*hash)
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
        if matches!(p.state, State::Sent { sender, .. } if sender == context_id) {
            p.state = State::Orphaned;
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
        let stale: Vec<KeyHash> = self
            .entries
            .iter()
            .filter(|(_, p)| matches!(p.state, State::Sent { at, .. } if at + limit < now))
            .map(|(h, _)| *h)
            .collect();
        stale
            .iter()
            .filter_map(|h| self.take(h))
            .flat_map(|p| p.waiters)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: u64 = 2;
    const ROOT: u32 = 1;

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

    fn ids(waiters: &[Waiter]) -> Vec<u32> {
        waiters.iter().map(|w| w.context_id).collect()
    }

    #[test]
    fn second_request_for_a_key_joins_the_first_lookup() {
        let mut l = Lookups::new(8, TIMEOUT);
        assert_eq!(l.admit(hash(1), waiter(10)), Admit::Send);
        l.sent(&hash(1), 7, 10, 100);
        assert_eq!(l.admit(hash(1), waiter(11)), Admit::Joined);
        let (h, waiters) = l.answered(7).unwrap();
        assert_eq!(h, hash(1));
        assert_eq!(ids(&waiters), [10, 11]);
        assert!(l.is_empty());
    }

    #[test]
    fn a_failed_lookup_is_sent_once_more_with_its_waiters_then_finished() {
        let mut l = Lookups::new(8, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        assert_eq!(l.retry(8), None, "not a lookup");
        assert_eq!(l.retry(7), Some(hash(1)));
        // Unsent meanwhile: a request for the same key joins rather than sending its own.
        assert_eq!(l.admit(hash(1), waiter(12)), Admit::Joined);
        assert_eq!(l.answered(7), None, "the failed callout finishes nobody");
        l.sent(&hash(1), 9, 10, 100);
        // The second attempt failing too is finished as answered, with every waiter.
        assert_eq!(l.retry(9), None);
        let (h, waiters) = l.answered(9).unwrap();
        assert_eq!(h, hash(1));
        assert_eq!(ids(&waiters), [10, 11, 12]);
        assert!(l.is_empty());
    }

    #[test]
    fn a_retry_that_cannot_be_sent_returns_every_waiter() {
        let mut l = Lookups::new(8, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        assert_eq!(l.retry(7), Some(hash(1)));
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
        let mut l = Lookups::new(8, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        assert_eq!(l.answered(8), None);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_request_after_the_sender_went_away_sends_again_and_finishes_earlier_waiters() {
        let mut l = Lookups::new(8, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        l.gone(&hash(1), 10);
        // The cancelled callout's token no longer finishes anyone.
        assert_eq!(l.admit(hash(1), waiter(12)), Admit::Send);
        l.sent(&hash(1), 9, 12, 101);
        assert_eq!(l.answered(7), None);
        let (_, waiters) = l.answered(9).unwrap();
        assert_eq!(ids(&waiters), [11, 12]);
    }

    #[test]
    fn the_root_sends_orphans_that_still_have_waiters() {
        let mut l = Lookups::new(8, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        l.gone(&hash(1), 10);
        assert_eq!(l.take_orphans(), [hash(1)]);
        // Taken once: the next tick does not send it twice.
        assert_eq!(l.take_orphans(), []);
        l.sent(&hash(1), 20, ROOT, 101);
        let (_, waiters) = l.answered(20).unwrap();
        assert_eq!(ids(&waiters), [11]);
    }

    #[test]
    fn a_lookup_nobody_waits_for_frees_its_place_under_the_cap() {
        let mut l = Lookups::new(2, TIMEOUT);
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
        let mut l = Lookups::new(8, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        l.gone(&hash(1), 11);
        let (_, waiters) = l.answered(7).unwrap();
        assert_eq!(ids(&waiters), [10]);
    }

    #[test]
    fn gone_after_the_answer_touches_a_newer_lookup_of_the_same_key_not() {
        let mut l = Lookups::new(8, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.answered(7).unwrap();
        l.admit(hash(1), waiter(11));
        l.sent(&hash(1), 8, 11, 101);
        l.gone(&hash(1), 10);
        assert_eq!(ids(&l.answered(8).unwrap().1), [11]);
    }

    #[test]
    fn a_failed_send_answers_every_waiter() {
        let mut l = Lookups::new(8, TIMEOUT);
        l.admit(hash(1), waiter(10));
        l.sent(&hash(1), 7, 10, 100);
        l.admit(hash(1), waiter(11));
        l.gone(&hash(1), 10);
        assert_eq!(l.admit(hash(1), waiter(12)), Admit::Send);
        assert_eq!(ids(&l.send_failed(&hash(1))), [11, 12]);
        assert!(l.is_empty());
    }

    #[test]
    fn an_unanswered_lookup_expires_after_timeout_and_grace() {
        let mut l = Lookups::new(8, TIMEOUT);
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
        let mut l = Lookups::new(4, TIMEOUT);
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
        for step in 0..20_000u32 {
            let key = hash(u8::try_from(next(6)).unwrap());
            let context = 10 + u32::try_from(next(12)).unwrap();
            match next(8) {
                0 | 1 => {
                    if l.admit(key, waiter(context)) == Admit::Send {
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
        }
    }
}
