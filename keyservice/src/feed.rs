//! The revocation feed: an ordered log of the key hashes whose lookup answer changed, which the
//! filter reads with `GET /v1/changes?after=<cursor>` to drop the cached answers that went stale.
//! This module holds its rules: the [`Cursor`], the decision between reading on and a reset
//! ([`plan_read`]), the retention window and the in-process wake-up signal of long-polls.
//!
//! # What is logged
//! Every mutation that changes what a lookup of some hash answers writes one change per affected
//! hash (every secret of the key), in the **same transaction** as the mutation itself, so a change
//! is in the log exactly when the mutation is committed:
//! - **revoke** (a repeated revoke changes nothing and logs nothing);
//! - **delete** (the secrets' hashes are read before the cascade removes them);
//! - **renew** (any new expiry, earlier or later, or none);
//! - **rotate**: the old secrets' answers now carry the grace end as their expiry.
//!
//! Not logged, and why:
//! - **The end of a rotation grace period** and a key's own **expiry**: the lookup answer of a
//!   rotated-out secret already carries the grace end as `expires_at` (the earlier of the key's
//!   expiry and the secret's retirement, see [`crate::keys::SecretMatch::expires_at`]), and the
//!   filter never caches a valid answer past `expires_at`. Nothing changes at that instant that
//!   the filter has not been told.
//! - **Creating a key** and the **new secret of a rotation**: a fresh random secret cannot have
//!   been looked up (and negatively cached) before it existed.
//! - **Permissions and tenant**: no endpoint changes them after creation.
//! - **OAuth clients and signing keys**: the filter caches no answer about a client (it verifies
//!   access tokens against the JWKS, which it refetches on an unknown `kid`), and a revoked
//!   client's issued tokens live out their short TTL by design.
//!
//! # Why the sequence cannot be read out of order
//! Each change takes its number from a single-row counter (`change_log.last_seq`), incremented
//! by an `UPDATE ... RETURNING` inside the writing transaction. The `UPDATE` takes that row's
//! write lock, held until commit, so a second writer waits at its own `UPDATE` until the first
//! has committed: numbers are handed out in commit order, and a reader that sees change `n`
//! committed has already been able to see every change below `n`. An autoincrement or sequence
//! id would not give this: two transactions can take ids 5 and 6 and commit 6 first, and a reader
//! that saw 6 and moved its cursor past it would never see 5. On SQLite every write transaction
//! is serialized anyway (`BEGIN IMMEDIATE`); on PostgreSQL, with concurrent writers on several
//! replicas, the counter keeps the guarantee at the cost of serializing only the writers that
//! change the log, which are rare admin calls. There the transactions run at READ COMMITTED: a
//! writer that waited for the counter's lock re-reads the row as committed before adding to it,
//! and readers take the head and the rows in one REPEATABLE READ snapshot.
//!
//! # Cursors and resets
//! A cursor is `<log id>:<seq>`: the log's identity (32 hex characters, generated once when the
//! database is created) and the last sequence number the reader has seen. The answer is a reset
//! (`reset: true`, no changes, a fresh cursor at the newest change) whenever the reader cannot be
//! told exactly what changed since its cursor ([`ResetReason`]): no cursor, a cursor of another
//! log (the database was replaced, or restored from a backup of another one), a cursor beyond the
//! newest change (restored from an older backup of this one), or a cursor older than what
//! retention has trimmed. On a reset the filter drops its whole cache.
//!
//! A backup of this same database restored *and then written to* past the reader's cursor before
//! the reader's next poll cannot be told apart from the original: give a restored database a new
//! log id (`UPDATE change_log SET log_id = lower(hex(randomblob(16)))`) so every reader resets.
//!
//! # Long-polls
//! `wait_ms` holds an empty answer until a change is committed or the wait ends. The wake-up is
//! [`ChangeSignal`], signalled by the store after each committed change in this process. On
//! PostgreSQL, where several replicas share the log, the writing transaction also sends
//! `pg_notify` with the change's number, which PostgreSQL delivers at commit; every replica keeps
//! a listening connection that signals its own [`ChangeSignal`] (see `store::postgres`), so a
//! revoke through one replica wakes the long-polls held by all of them within milliseconds. If
//! that connection drops, it reconnects by itself and wakes every long-poll once to read again.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use keygate_core::key::KeyHash;
use keygate_core::wire::{ChangesResponse, MAX_CHANGES_PER_ANSWER, MAX_CHANGES_WAIT_MS};
use tokio::sync::watch;

/// Characters of a log id: 16 random bytes in lowercase hex.
pub const LOG_ID_LEN: usize = 32;
/// Shortest retention window accepted: a minute.
pub const MIN_RETENTION_SECS: u64 = 60;
/// Longest retention window accepted: a year.
pub const MAX_RETENTION_SECS: u64 = 365 * 24 * 60 * 60;
/// How often the background task trims the log.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(60);

/// The identity of one change log: 32 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogId(String);

impl LogId {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == LOG_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a reader of the log stands: `<log id>:<seq>`, having seen every change up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub log_id: LogId,
    pub seq: u64,
}

/// A cursor that is not `<32 lowercase hex characters>:<decimal number>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "`after` must be a cursor from an earlier answer: <{LOG_ID_LEN} hex characters>:<sequence \
     number>"
)]
pub struct CursorError;

impl Cursor {
    pub fn parse(s: &str) -> Result<Self, CursorError> {
        let (log_id, seq) = s.split_once(':').ok_or(CursorError)?;
        let log_id = LogId::parse(log_id).ok_or(CursorError)?;
        // Digits only: `u64::from_str` would also take a sign.
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CursorError);
        }
        let seq = seq.parse().map_err(|_| CursorError)?;
        Ok(Self { log_id, seq })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.log_id.as_str(), self.seq)
    }
}

/// The state of the log at one instant (one read transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    pub log_id: LogId,
    /// The newest change's number; 0 before the first.
    pub last_seq: u64,
    /// Every change up to this number has been trimmed; 0 before the first trim.
    pub trimmed_through: u64,
}

impl LogHead {
    /// A cursor past every change so far.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            log_id: self.log_id.clone(),
            seq: self.last_seq,
        }
    }
}

/// Why a reader must drop its cache and start over from the newest change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The request had no cursor: a reader's first read.
    NoCursor,
    /// The cursor names another log: the database was replaced.
    OtherLog,
    /// The cursor is past the newest change: the database was restored from an older backup.
    AheadOfLog,
    /// Changes after the cursor have been trimmed.
    Trimmed,
}

impl ResetReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCursor => "no_cursor",
            Self::OtherLog => "other_log",
            Self::AheadOfLog => "ahead_of_log",
            Self::Trimmed => "trimmed",
        }
    }
}

/// What to answer a read from `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The changes numbered above this one.
    After(u64),
    Reset(ResetReason),
}

/// Whether the log still holds every change after `after`.
pub fn plan_read(after: Option<&Cursor>, head: &LogHead) -> Read {
    match after {
        None => Read::Reset(ResetReason::NoCursor),
        Some(c) if c.log_id != head.log_id => Read::Reset(ResetReason::OtherLog),
        Some(c) if c.seq > head.last_seq => Read::Reset(ResetReason::AheadOfLog),
        Some(c) if c.seq < head.trimmed_through => Read::Reset(ResetReason::Trimmed),
        Some(c) => Read::After(c.seq),
    }
}

/// One answer of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub cursor: Cursor,
    /// Oldest change first.
    pub changes: Vec<KeyHash>,
    pub reset: Option<ResetReason>,
    pub more: bool,
}

impl Page {
    /// A reset to the newest change.
    pub fn reset(head: &LogHead, reason: ResetReason) -> Self {
        Self {
            cursor: head.cursor(),
            changes: Vec::new(),
            reset: Some(reason),
            more: false,
        }
    }

    /// Nothing new after the reader's cursor: what a long-poll waits on.
    pub fn is_idle(&self) -> bool {
        self.reset.is_none() && self.changes.is_empty()
    }

    pub fn into_response(self) -> ChangesResponse {
        ChangesResponse {
            cursor: self.cursor.to_string(),
            changes: self.changes,
            reset: self.reset.is_some(),
            more: self.more,
        }
    }
}

/// `limit` was 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`limit` must be at least 1 (at most {MAX_CHANGES_PER_ANSWER} are sent)")]
pub struct LimitError;

/// Changes per answer: as asked, at most [`MAX_CHANGES_PER_ANSWER`] (also the default).
pub fn page_limit(requested: Option<u64>) -> Result<usize, LimitError> {
    match requested {
        None => Ok(MAX_CHANGES_PER_ANSWER),
        Some(0) => Err(LimitError),
        Some(n) => Ok(
            usize::try_from(n).map_or(MAX_CHANGES_PER_ANSWER, |n| n.min(MAX_CHANGES_PER_ANSWER))
        ),
    }
}

/// How long a read with nothing new is held: `wait_ms`, at most [`MAX_CHANGES_WAIT_MS`].
pub fn long_poll_wait(wait_ms: Option<u64>) -> Duration {
    Duration::from_millis(wait_ms.unwrap_or(0).min(MAX_CHANGES_WAIT_MS))
}

/// How long changes are kept: between [`MIN_RETENTION_SECS`] and [`MAX_RETENTION_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(time::Duration);

/// A retention window out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be between {MIN_RETENTION_SECS} and {MAX_RETENTION_SECS}")]
pub struct RetentionError;

impl Retention {
    pub fn from_secs(secs: u64) -> Result<Self, RetentionError> {
        if !(MIN_RETENTION_SECS..=MAX_RETENTION_SECS).contains(&secs) {
            return Err(RetentionError);
        }
        let secs = i64::try_from(secs).map_err(|_| RetentionError)?;
        Ok(Self(time::Duration::seconds(secs)))
    }

    /// Changes made before this instant may be trimmed at `now`.
    pub fn cutoff(self, now: time::OffsetDateTime) -> time::OffsetDateTime {
        now.saturating_sub(self.0)
    }
}

/// Wakes the long-polls of this process when a change is committed, or when the service shuts
/// down (so a held request does not hold up a graceful shutdown).
#[derive(Debug)]
pub struct ChangeSignal {
    /// The newest sequence number committed by this process; every change wakes the receivers.
    newest: watch::Sender<u64>,
    closing: AtomicBool,
    /// Long-polls waiting right now.
    parked: AtomicUsize,
}

impl Default for ChangeSignal {
    fn default() -> Self {
        Self {
            newest: watch::Sender::new(0),
            closing: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
        }
    }
}

impl ChangeSignal {
    /// Called after a commit that logged changes up to `seq`.
    pub fn committed(&self, seq: u64) {
        self.newest
            .send_modify(|newest| *newest = (*newest).max(seq));
    }

    /// Wakes every long-poll to read the log again, without a number: changes may have been
    /// committed that this process was not told about (its PostgreSQL listener reconnected).
    pub fn wake_all(&self) {
        self.newest.send_modify(|_| {});
    }

    /// Wakes every long-poll for good: they answer what they have.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.newest.send_modify(|_| {});
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// A receiver that has seen everything signalled so far. Take it before reading the log, so
    /// a commit between the read and the wait still wakes the wait.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// Counts one waiting long-poll until the guard is dropped.
    pub fn park(&self) -> Parked<'_> {
        self.parked.fetch_add(1, Ordering::SeqCst);
        Parked(self)
    }

    /// How many long-polls are waiting right now.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }
}

/// A waiting long-poll, counted in [`ChangeSignal::parked`] while it lives.
#[derive(Debug)]
pub struct Parked<'a>(&'a ChangeSignal);

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LOG: &str = "0123456789abcdef0123456789abcdef";
    const OTHER_LOG: &str = "fedcba9876543210fedcba9876543210";

    fn head(last_seq: u64, trimmed_through: u64) -> LogHead {
        LogHead {
            log_id: LogId::parse(LOG).unwrap(),
            last_seq,
            trimmed_through,
        }
    }

    fn cursor(s: &str) -> Cursor {
        Cursor::parse(s).unwrap()
    }

    #[test]
    fn cursors_round_trip_through_their_text() {
        let c = cursor(&format!("{LOG}:42"));
        assert_eq!(c.log_id.as_str(), LOG);
        assert_eq!(c.seq, 42);
        assert_eq!(c.to_string(), format!("{LOG}:42"));
        assert_eq!(cursor(&format!("{LOG}:0")).seq, 0);
        let max = format!("{LOG}:{}", u64::MAX);
        assert_eq!(cursor(&max).to_string(), max);
    }

    #[test]
    fn malformed_cursors_are_refused_naming_after() {
        for junk in [
            String::new(),
            LOG.to_owned(),
            format!("{LOG}:"),
            format!("{LOG}:+1"),
            format!("{LOG}:-1"),
            format!("{LOG}: 1"),
            format!("{LOG}:1:2"),
            format!("{LOG}:18446744073709551616"),
            format!("{}:1", LOG.to_uppercase()),
            format!("{}:1", &LOG[1..]),
            format!("{LOG}0:1"),
            format!("{}g:1", &LOG[1..]),
            ":1".to_owned(),
        ] {
            assert_eq!(Cursor::parse(&junk), Err(CursorError), "{junk:?}");
        }
        assert!(CursorError.to_string().contains("`after`"));
    }

    #[test]
    fn a_cursor_within_the_log_reads_on() {
        assert_eq!(
            plan_read(Some(&cursor(&format!("{LOG}:5"))), &head(9, 0)),
            Read::After(5)
        );
        // At the newest change, and exactly at the trimmed point: nothing was missed.
        assert_eq!(
            plan_read(Some(&cursor(&format!("{LOG}:9"))), &head(9, 3)),
            Read::After(9)
        );
        assert_eq!(
            plan_read(Some(&cursor(&format!("{LOG}:3"))), &head(9, 3)),
            Read::After(3)
        );
        assert_eq!(
            plan_read(Some(&cursor(&format!("{LOG}:0"))), &head(0, 0)),
            Read::After(0)
        );
    }

    #[test]
    fn a_reader_that_cannot_know_what_changed_resets() {
        let h = head(9, 3);
        assert_eq!(plan_read(None, &h), Read::Reset(ResetReason::NoCursor));
        assert_eq!(
            plan_read(Some(&cursor(&format!("{OTHER_LOG}:5"))), &h),
            Read::Reset(ResetReason::OtherLog)
        );
        assert_eq!(
            plan_read(Some(&cursor(&format!("{LOG}:10"))), &h),
            Read::Reset(ResetReason::AheadOfLog)
        );
        assert_eq!(
            plan_read(Some(&cursor(&format!("{LOG}:2"))), &h),
            Read::Reset(ResetReason::Trimmed)
        );
        let page = Page::reset(&h, ResetReason::Trimmed).into_response();
        assert_eq!(page.cursor, format!("{LOG}:9"));
        assert!(page.reset && page.changes.is_empty() && !page.more);
    }

    #[test]
    fn page_size_and_wait_are_capped() {
        assert_eq!(page_limit(None), Ok(MAX_CHANGES_PER_ANSWER));
        assert_eq!(page_limit(Some(2)), Ok(2));
        assert_eq!(page_limit(Some(u64::MAX)), Ok(MAX_CHANGES_PER_ANSWER));
        assert_eq!(page_limit(Some(0)), Err(LimitError));
        assert_eq!(long_poll_wait(None), Duration::ZERO);
        assert_eq!(long_poll_wait(Some(250)), Duration::from_millis(250));
        assert_eq!(
            long_poll_wait(Some(u64::MAX)),
            Duration::from_millis(MAX_CHANGES_WAIT_MS)
        );
    }

    #[test]
    fn retention_is_bounded_and_counts_back_from_now() {
        assert!(Retention::from_secs(59).is_err());
        assert!(Retention::from_secs(MAX_RETENTION_SECS + 1).is_err());
        let now = time::OffsetDateTime::from_unix_timestamp(1_795_341_600).unwrap();
        let day = Retention::from_secs(86_400).unwrap();
        assert_eq!(day.cutoff(now).unix_timestamp(), 1_795_341_600 - 86_400);
    }

    #[tokio::test]
    async fn the_signal_wakes_waiters_on_commit_and_on_close() {
        let signal = ChangeSignal::default();
        let mut rx = signal.subscribe();
        assert!(!rx.has_changed().unwrap());
        signal.committed(3);
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        // An older commit signalled late still wakes, and never moves the value back.
        signal.committed(2);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 3);
        signal.close();
        assert!(rx.has_changed().unwrap() && signal.is_closing());
        {
            let _parked = signal.park();
            assert_eq!(signal.parked(), 1);
        }
        assert_eq!(signal.parked(), 0);
    }
}
