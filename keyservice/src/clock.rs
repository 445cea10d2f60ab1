//! Where the service gets the time. Handlers ask the [`Clock`] in the app state once per request
//! and pass `now` down, so tests can move time with a [`ManualClock`] instead of sleeping.

use std::sync::{Mutex, PoisonError};

use time::{Duration, OffsetDateTime};

/// A source of the current time, in whole seconds (the resolution of everything stored and sent).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The system clock, for production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        whole_seconds(OffsetDateTime::now_utc())
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(whole_seconds(start)),
        }
    }

    pub fn set(&self, to: OffsetDateTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = whole_seconds(to);
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = whole_seconds(now.saturating_add(by));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_in_whole_seconds() {
        let start = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(1_500);
        let clock = ManualClock::new(start);
        assert_eq!(clock.now().unix_timestamp(), 1);
        assert_eq!(clock.now().nanosecond(), 0);
        clock.advance(Duration::seconds(60));
        assert_eq!(clock.now().unix_timestamp(), 61);
        clock.set(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(clock.now(), OffsetDateTime::UNIX_EPOCH);
    }

    #[test]
    fn system_clock_has_no_subsecond_part() {
        assert_eq!(SystemClock.now().nanosecond(), 0);
    }
}
