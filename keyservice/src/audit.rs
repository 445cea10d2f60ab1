//! The audit log's rules, pure: what an event records, how the log is read (filters, newest
//! first, cursors), how long it is kept, and how failed sign-ins are recorded without letting a
//! flood fill the disk.
//!
//! Every state-changing admin call that passes authentication is recorded: a change in the
//! same transaction as the change itself (so the log never claims a change that did not happen,
//! nor misses one that did), a refusal (403, 404, 409, 400) on its own. Failed authentication to
//! the admin API and failed client authentication at the token endpoint are recorded too, at
//! most [`FAILURES_PER_WINDOW`] per [`FAILURE_WINDOW`] ([`FailureAudit`]). Events hold ids, names
//! of actions and addresses, never a secret: the types that hold secrets cannot be put in one.

use std::fmt;
use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use crate::credentials::Kind;

/// How long events are kept by default: 90 days.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Largest page of [`crate::store::KeyStore::audit_events`].
pub const MAX_PAGE: u32 = 500;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 100;
/// Failed authentications recorded per window, at most; the rest are counted, not recorded.
pub const FAILURES_PER_WINDOW: u32 = 60;
/// The window of [`FAILURES_PER_WINDOW`].
pub const FAILURE_WINDOW: Duration = Duration::minutes(1);

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create(Kind),
    Revoke(Kind),
    Renew(Kind),
    Rotate(Kind),
    Delete(Kind),
    RoleCreate,
    RoleUpdate,
    RoleDelete,
    SigningKeyRotate,
    /// A request to the admin API without a valid admin or tenant admin secret.
    AuthFailure,
    /// A token request whose client did not authenticate.
    TokenFailure,
}

impl fmt::Display for Action {
    /// `key.create`, `client.revoke`, `tenant_admin.delete`, `role.update`, `auth.failure`, …
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (target, verb) = match self {
            Self::Create(k) => (k.as_str(), "create"),
            Self::Revoke(k) => (k.as_str(), "revoke"),
            Self::Renew(k) => (k.as_str(), "renew"),
            Self::Rotate(k) => (k.as_str(), "rotate"),
            Self::Delete(k) => (k.as_str(), "delete"),
            Self::RoleCreate => ("role", "create"),
            Self::RoleUpdate => ("role", "update"),
            Self::RoleDelete => ("role", "delete"),
            Self::SigningKeyRotate => ("signing_key", "rotate"),
            Self::AuthFailure => ("auth", "failure"),
            Self::TokenFailure => ("token", "failure"),
        };
        write!(f, "{target}.{verb}")
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// 403: the caller may not do it.
    Denied,
    /// 404.
    NotFound,
    /// 409: revoked, in use, or a name taken.
    Conflict,
    /// 400: the request was malformed.
    Invalid,
    /// Authentication failed.
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Invalid => "invalid",
            Self::Failure => "failure",
        }
    }
}

/// Who did it, from where, in which request: the same for every event of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// `admin`, a tenant admin id, or for a token failure the client id as sent (when it is a
    /// well-formed one).
    pub actor: String,
    pub source: Option<IpAddr>,
    pub request_id: Option<String>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub tenant: Option<String>,
    pub source: Option<String>,
    pub outcome: Outcome,
    pub request_id: Option<String>,
}

impl Event {
    pub fn new(context: &Context, at: OffsetDateTime, action: Action, outcome: Outcome) -> Self {
        Self {
            at,
            actor: context.actor.clone(),
            action: action.to_string(),
            target_type: None,
            target_id: None,
            tenant: None,
            source: context.source.map(|ip| ip.to_string()),
            outcome,
            request_id: context.request_id.clone(),
        }
    }

    /// The record a target of `target_type` with `id` is named by.
    pub fn target(mut self, target_type: &str, id: impl fmt::Display) -> Self {
        self.target_type = Some(target_type.to_owned());
        self.target_id = Some(id.to_string());
        self
    }

    pub fn tenant(mut self, tenant: impl fmt::Display) -> Self {
        self.tenant = Some(tenant.to_string());
        self
    }

    /// The same event with another outcome.
    pub fn ended(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

/// An event as stored, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub seq: u64,
    pub event: Event,
}

/// Which events to read: all filters must match. Newest first, from before `before`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub tenant: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// The cursor: only events with a lower `seq`.
    pub before: Option<u64>,
    pub limit: u32,
}

/// A cursor: the `seq` of the last event of a page, as text. Opaque to clients.
pub fn cursor(seq: u64) -> String {
    seq.to_string()
}

/// Reads a cursor back; `None` if it is not one this service handed out.
pub fn parse_cursor(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&seq| seq > 0)
}

/// The cursor of the page after `page`, if there are more events.
pub fn next_cursor(page: &[Recorded], more: bool) -> Option<String> {
    if !more {
        return None;
    }
    page.last().map(|r| cursor(r.seq))
}

/// How long events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(Duration);

impl Retention {
    pub fn days(days: u32) -> Self {
        Self(Duration::days(i64::from(days)))
    }

    /// Events before this are deleted.
    pub fn cutoff(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.0
    }
}

/// Records at most [`FAILURES_PER_WINDOW`] failed authentications per [`FAILURE_WINDOW`] in this
/// process; beyond that they are only counted (`keygate_audit_dropped_total`). A flood of bad
/// secrets then costs at most 60 rows a minute per replica, about 86,000 a day, which the
/// retention trims like any other.
#[derive(Debug, Default)]
pub struct FailureAudit {
    window_start: Option<OffsetDateTime>,
    recorded: u32,
}

impl FailureAudit {
    /// Whether a failure at `now` is recorded.
    pub fn admit(&mut self, now: OffsetDateTime) -> bool {
        let fresh = self
            .window_start
            .is_none_or(|start| now >= start + FAILURE_WINDOW || now < start);
        if fresh {
            self.window_start = Some(now);
            self.recorded = 0;
        }
        if self.recorded >= FAILURES_PER_WINDOW {
            return false;
        }
        self.recorded += 1;
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 2026-11-22T10:00:00Z
    const NOW_UNIX: i64 = 1_795_341_600;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW_UNIX).unwrap()
    }

    #[test]
    fn actions_are_named_target_dot_verb() {
        assert_eq!(Action::Create(Kind::Key).to_string(), "key.create");
        assert_eq!(
            Action::Delete(Kind::TenantAdmin).to_string(),
            "tenant_admin.delete"
        );
        assert_eq!(Action::RoleUpdate.to_string(), "role.update");
        assert_eq!(Action::AuthFailure.to_string(), "auth.failure");
        assert_eq!(Action::TokenFailure.to_string(), "token.failure");
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        assert_eq!(parse_cursor(&cursor(42)), Some(42));
        for junk in ["", "0", "-1", "1e3", "abc", "184467440737095516160", " 1"] {
            assert_eq!(parse_cursor(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn failures_are_recorded_up_to_the_cap_per_window() {
        let mut audit = FailureAudit::default();
        let recorded = (0..200).filter(|_| audit.admit(now())).count();
        assert_eq!(recorded, FAILURES_PER_WINDOW as usize);
        assert!(!audit.admit(now() + Duration::seconds(59)));
        assert!(audit.admit(now() + FAILURE_WINDOW));
        // A clock stepped back starts a new window rather than locking recording out.
        let mut audit = FailureAudit::default();
        for _ in 0..FAILURES_PER_WINDOW {
            audit.admit(now());
        }
        assert!(audit.admit(now() - Duration::hours(1)));
    }

    #[test]
    fn retention_cuts_off_the_configured_days() {
        assert_eq!(
            Retention::days(90).cutoff(now()),
            now() - Duration::days(90)
        );
    }
}
