//! Signing-key rotation policy, pure: given the keys on record and `now`, which key signs, which
//! keys the JWKS publishes, and what to generate, retire or delete.
//!
//! A key's life:
//! 1. **Pending**: generated and published at least [`RotationPolicy::pre_publish`] (the longest a
//!    verifier may have cached the JWKS, or a token lives, plus clock skew) before its
//!    `activates_at`, so verifiers already know it when the first token signed with it arrives.
//! 2. **Signing**: from `activates_at` on, the latest activated key that is not retiring signs.
//!    Its successor is generated `pre_publish` before `activates_at + rotation_period`.
//! 3. **Retiring**: once a later key has activated it signs nothing more, and stays published
//!    until `retires_at` = the successor's `activates_at` (its last possible signature) + token
//!    TTL + clock skew: until the last token it signed has expired everywhere.
//! 4. **Deleted** at `retires_at`, private key and all.
//!
//! A forced rotation ([`forced_rotation`]) skips the pre-publication: the new key signs at once,
//! the old ones retire as above, and pending keys (which never signed) are deleted. Verifiers
//! that cached the JWKS meet an unknown `kid` and must refetch it (keygate's filter does).
//!
//! Changing the configured algorithm counts as a rotation that is due now: a key of the new
//! algorithm is pre-published and takes over after `pre_publish`.

use keygate_core::jwt::policy::DEFAULT_CLOCK_SKEW_SECS;
use time::{Duration, OffsetDateTime};

use crate::signing::SigningAlg;

/// `Cache-Control: max-age` of the JWKS document, in seconds.
pub const JWKS_MAX_AGE_SECS: u64 = 300;
/// Clock skew verifiers allow on `exp` (keygate's filter: 60 s by default).
pub const CLOCK_SKEW_SECS: u64 = DEFAULT_CLOCK_SKEW_SECS;
/// Shortest rotation period accepted: one hour.
pub const MIN_ROTATION_SECS: u64 = 60 * 60;
/// Longest rotation period accepted: ten years.
pub const MAX_ROTATION_SECS: u64 = 10 * 365 * 24 * 60 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RotationConfigError {
    #[error(
        "must be between {MIN_ROTATION_SECS} and {MAX_ROTATION_SECS}, and longer than the \
         pre-publication lead of {pre_publish_secs} s (the longer of the token TTL and the JWKS \
         max-age of {JWKS_MAX_AGE_SECS} s, plus {CLOCK_SKEW_SECS} s skew)"
    )]
    Period { pre_publish_secs: u64 },
}

/// When keys are generated, take over and leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// The algorithm of new keys.
    pub alg: SigningAlg,
    /// How long a key signs before its successor takes over.
    pub rotation_period: Duration,
    /// How long before it signs a new key is published.
    pub pre_publish: Duration,
    /// How long a key stays published after its last possible signature: token TTL + skew.
    pub retire_after: Duration,
}

impl RotationPolicy {
    pub fn new(
        alg: SigningAlg,
        rotation_secs: u64,
        token_ttl_secs: u64,
    ) -> Result<Self, RotationConfigError> {
        let pre_publish_secs = token_ttl_secs.max(JWKS_MAX_AGE_SECS) + CLOCK_SKEW_SECS;
        if !(MIN_ROTATION_SECS..=MAX_ROTATION_SECS).contains(&rotation_secs)
            || rotation_secs <= pre_publish_secs
        {
            return Err(RotationConfigError::Period { pre_publish_secs });
        }
        Ok(Self {
            alg,
            rotation_period: secs(rotation_secs),
            pre_publish: secs(pre_publish_secs),
            retire_after: secs(token_ttl_secs.saturating_add(CLOCK_SKEW_SECS)),
        })
    }
}

/// Callers bound `s` far below `i64::MAX`.
fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
}

/// The times of one signing key on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchedule {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: OffsetDateTime,
    /// From when it may sign.
    pub activates_at: OffsetDateTime,
    /// Set once a later key has taken over (or a forced rotation retired it): it signs nothing
    /// more, and leaves the JWKS at this instant.
    pub retires_at: Option<OffsetDateTime>,
}

impl KeySchedule {
    /// Whether the JWKS lists the key at `now`: pending, signing and retiring keys are.
    pub fn is_published(&self, now: OffsetDateTime) -> bool {
        self.retires_at.is_none_or(|at| at > now)
    }

    fn is_pending(&self, now: OffsetDateTime) -> bool {
        self.retires_at.is_none() && self.activates_at > now
    }

    fn is_activated(&self, now: OffsetDateTime) -> bool {
        self.retires_at.is_none() && self.activates_at <= now
    }

    /// Activation order; ties (two keys activated in the same second) broken by creation, then
    /// kid, so every caller picks the same signer.
    fn order(&self) -> (OffsetDateTime, OffsetDateTime, &str) {
        (self.activates_at, self.created_at, &self.kid)
    }
}

/// The key that signs at `now`: the latest activated key that is not retiring.
pub fn signer(keys: &[KeySchedule], now: OffsetDateTime) -> Option<&KeySchedule> {
    keys.iter()
        .filter(|k| k.is_activated(now))
        .max_by(|a, b| a.order().cmp(&b.order()))
}

/// What to change in the key store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationPlan {
    /// Generate a key of the policy's algorithm that signs from this instant on.
    pub generate: Option<OffsetDateTime>,
    /// Keys that sign no more, with the instant each leaves the JWKS.
    pub retire: Vec<(String, OffsetDateTime)>,
    /// Keys to delete: past their retirement, or pending keys that will never sign.
    pub delete: Vec<String>,
}

impl RotationPlan {
    pub fn is_empty(&self) -> bool {
        self.generate.is_none() && self.retire.is_empty() && self.delete.is_empty()
    }
}

/// The scheduled rotation at `now`. Running it again right after applying it yields an empty
/// plan, so it can run at start and on any interval.
pub fn plan_rotation(
    keys: &[KeySchedule],
    now: OffsetDateTime,
    policy: &RotationPolicy,
) -> RotationPlan {
    let mut plan = RotationPlan {
        delete: retired(keys, now),
        ..RotationPlan::default()
    };

    // Every activated key but the latest stopped signing when the next one activated.
    let mut activated: Vec<&KeySchedule> = keys.iter().filter(|k| k.is_activated(now)).collect();
    activated.sort_by(|a, b| a.order().cmp(&b.order()));
    for pair in activated.windows(2) {
        if let [done, next] = pair {
            plan.retire
                .push((done.kid.clone(), next.activates_at + policy.retire_after));
        }
    }

    // A pending key of another algorithm (the configuration changed) will never sign.
    let mut successor_pending = false;
    for key in keys.iter().filter(|k| k.is_pending(now)) {
        if key.alg == policy.alg {
            successor_pending = true;
        } else {
            plan.delete.push(key.kid.clone());
        }
    }

    plan.generate = match activated.last() {
        // First start, or every key retired: nothing has been signed that a new key must wait
        // for, so it signs at once.
        None => Some(now),
        Some(_) if successor_pending => None,
        Some(current) if current.alg != policy.alg => Some(now + policy.pre_publish),
        Some(current) => {
            let takeover = current.activates_at + policy.rotation_period;
            (now >= takeover - policy.pre_publish).then(|| takeover.max(now + policy.pre_publish))
        }
    };
    plan
}

/// A rotation now, on an operator's request: a new key signs from `now`, every activated key
/// retires as usual (published until its tokens have expired), and pending keys are deleted.
pub fn forced_rotation(
    keys: &[KeySchedule],
    now: OffsetDateTime,
    policy: &RotationPolicy,
) -> RotationPlan {
    let mut delete = retired(keys, now);
    delete.extend(
        keys.iter()
            .filter(|k| k.is_pending(now))
            .map(|k| k.kid.clone()),
    );
    RotationPlan {
        generate: Some(now),
        retire: keys
            .iter()
            .filter(|k| k.is_activated(now))
            .map(|k| (k.kid.clone(), now + policy.retire_after))
            .collect(),
        delete,
    }
}

fn retired(keys: &[KeySchedule], now: OffsetDateTime) -> Vec<String> {
    keys.iter()
        .filter(|k| !k.is_published(now))
        .map(|k| k.kid.clone())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 2026-11-22T10:00:00Z
    const NOW_UNIX: i64 = 1_795_341_600;
    const DAY: i64 = 24 * 60 * 60;
    const TTL: u64 = 300;
    const PERIOD: u64 = 30 * DAY as u64;

    fn at(offset_secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW_UNIX + offset_secs).unwrap()
    }

    fn policy() -> RotationPolicy {
        RotationPolicy::new(SigningAlg::EdDsa, PERIOD, TTL).unwrap()
    }

    fn key(kid: &str, activates: i64, retires: Option<i64>) -> KeySchedule {
        KeySchedule {
            kid: kid.into(),
            alg: SigningAlg::EdDsa,
            created_at: at(activates.min(0)),
            activates_at: at(activates),
            retires_at: retires.map(at),
        }
    }

    /// Applies a plan the way the key ring does, naming a generated key `name`.
    fn apply(keys: &mut Vec<KeySchedule>, plan: &RotationPlan, name: &str, now: OffsetDateTime) {
        keys.retain(|k| !plan.delete.contains(&k.kid));
        for (kid, retires_at) in &plan.retire {
            if let Some(k) = keys.iter_mut().find(|k| &k.kid == kid) {
                k.retires_at = Some(*retires_at);
            }
        }
        if let Some(activates_at) = plan.generate {
            keys.push(KeySchedule {
                kid: name.into(),
                alg: SigningAlg::EdDsa,
                created_at: now,
                activates_at,
                retires_at: None,
            });
        }
    }

    #[test]
    fn policy_leads_cover_token_ttl_jwks_cache_and_skew() {
        let p = policy();
        assert_eq!(p.pre_publish, Duration::seconds(300 + 60));
        assert_eq!(p.retire_after, Duration::seconds(300 + 60));
        let long_ttl = RotationPolicy::new(SigningAlg::EdDsa, PERIOD, 3600).unwrap();
        assert_eq!(long_ttl.pre_publish, Duration::seconds(3600 + 60));
        assert_eq!(long_ttl.retire_after, Duration::seconds(3600 + 60));
        assert!(RotationPolicy::new(SigningAlg::EdDsa, 60, TTL).is_err());
        assert!(RotationPolicy::new(SigningAlg::EdDsa, 7200, 7200).is_err());
        assert!(RotationPolicy::new(SigningAlg::EdDsa, MAX_ROTATION_SECS + 1, TTL).is_err());
    }

    #[test]
    fn first_start_generates_a_key_that_signs_at_once() {
        let plan = plan_rotation(&[], at(0), &policy());
        assert_eq!(
            plan,
            RotationPlan {
                generate: Some(at(0)),
                ..RotationPlan::default()
            }
        );
    }

    #[test]
    fn nothing_to_do_while_the_signer_is_young() {
        let keys = [key("a", -DAY, None)];
        assert!(plan_rotation(&keys, at(0), &policy()).is_empty());
        // One second before the successor is due.
        let due = PERIOD as i64 - 360;
        assert!(plan_rotation(&keys, at(due - DAY - 1), &policy()).is_empty());
    }

    #[test]
    fn successor_is_pre_published_one_token_ttl_plus_skew_before_it_signs() {
        let keys = vec![key("a", 0, None)];
        let takeover = PERIOD as i64;
        let due = takeover - 360;
        let plan = plan_rotation(&keys, at(due), &policy());
        assert_eq!(
            plan,
            RotationPlan {
                generate: Some(at(takeover)),
                ..RotationPlan::default()
            }
        );

        let mut keys = keys;
        apply(&mut keys, &plan, "b", at(due));
        // Published from now on, but "a" still signs until the takeover.
        assert!(keys.iter().all(|k| k.is_published(at(due))));
        assert_eq!(signer(&keys, at(takeover - 1)).unwrap().kid, "a");
        assert_eq!(signer(&keys, at(takeover)).unwrap().kid, "b");
        // Running again before the takeover changes nothing.
        assert!(plan_rotation(&keys, at(due + 10), &policy()).is_empty());
    }

    #[test]
    fn a_late_run_still_pre_publishes_for_the_full_lead() {
        // The service was down past the takeover instant: the old key keeps signing until the
        // new one has been published for the whole lead.
        let keys = [key("a", 0, None)];
        let late = PERIOD as i64 + DAY;
        let plan = plan_rotation(&keys, at(late), &policy());
        assert_eq!(plan.generate, Some(at(late + 360)));
    }

    #[test]
    fn superseded_key_retires_after_its_last_token_expires_then_is_deleted() {
        let takeover = PERIOD as i64;
        let mut keys = vec![key("a", 0, None), key("b", takeover, None)];
        let plan = plan_rotation(&keys, at(takeover + 5), &policy());
        // Last signature by "a" at the takeover; its tokens live TTL, verifiers allow skew.
        assert_eq!(plan.retire, vec![("a".to_owned(), at(takeover + 300 + 60))]);
        assert_eq!(plan.generate, None);
        assert!(plan.delete.is_empty());
        apply(&mut keys, &plan, "-", at(takeover + 5));

        let last_moment = at(takeover + 359);
        assert!(keys.iter().all(|k| k.is_published(last_moment)));
        assert!(plan_rotation(&keys, last_moment, &policy()).is_empty());

        let gone = at(takeover + 360);
        assert!(!keys[0].is_published(gone));
        let plan = plan_rotation(&keys, gone, &policy());
        assert_eq!(plan.delete, vec!["a".to_owned()]);
        assert_eq!(plan.generate, None);
    }

    #[test]
    fn a_changed_algorithm_pre_publishes_a_new_key_and_drops_pending_old_ones() {
        let es256 = RotationPolicy {
            alg: SigningAlg::Es256,
            ..policy()
        };
        let keys = [key("a", 0, None)];
        assert_eq!(
            plan_rotation(&keys, at(10), &es256).generate,
            Some(at(10 + 360))
        );

        let pending_eddsa = [key("a", 0, None), key("b", DAY, None)];
        let plan = plan_rotation(&pending_eddsa, at(10), &es256);
        assert_eq!(plan.delete, vec!["b".to_owned()]);
        assert_eq!(plan.generate, Some(at(10 + 360)));
    }

    #[test]
    fn forced_rotation_signs_at_once_and_keeps_old_keys_published() {
        let mut keys = vec![
            key("old", -2 * DAY, Some(100)),
            key("gone", -3 * DAY, Some(-1)),
            key("a", -DAY, None),
            key("pending", 60, None),
        ];
        let plan = forced_rotation(&keys, at(0), &policy());
        assert_eq!(plan.generate, Some(at(0)));
        assert_eq!(plan.retire, vec![("a".to_owned(), at(360))]);
        let mut deleted = plan.delete.clone();
        deleted.sort();
        assert_eq!(deleted, ["gone", "pending"]);

        apply(&mut keys, &plan, "new", at(0));
        assert_eq!(signer(&keys, at(0)).unwrap().kid, "new");
        let published: Vec<&str> = keys
            .iter()
            .filter(|k| k.is_published(at(0)))
            .map(|k| k.kid.as_str())
            .collect();
        assert_eq!(published, ["old", "a", "new"]);
        // The scheduled policy agrees with the outcome.
        assert!(plan_rotation(&keys, at(1), &policy()).is_empty());
    }

    #[test]
    fn signer_ties_are_broken_the_same_way_every_time() {
        let keys = [key("b", 0, None), key("a", 0, None)];
        assert_eq!(signer(&keys, at(0)).unwrap().kid, "b");
        let reversed = [key("a", 0, None), key("b", 0, None)];
        assert_eq!(signer(&reversed, at(0)).unwrap().kid, "b");
        assert!(signer(&[key("p", 10, None)], at(0)).is_none());
    }
}
