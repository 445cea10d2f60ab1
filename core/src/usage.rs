//! Per-key request counts between two usage reports. The filter records each allowed request
//! here and sends a batch from `on_tick`; it never calls out per request for accounting.

use std::collections::HashMap;

use crate::wire::{UsageEntry, UsageReport};

/// What becomes of a usage report once the key service answered (`None`: no answer at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFate {
    Delivered,
    /// Refused as it is (too large, malformed, unauthorized): sending it again cannot help.
    Dropped,
    /// Put back, to go again with the next report.
    Retry,
}

impl ReportFate {
    pub fn of(status: Option<u16>) -> Self {
        match status {
            Some(200..=299) => Self::Delivered,
            Some(code @ 400..=499) if code != 408 && code != 429 => Self::Dropped,
            _ => Self::Retry,
        }
    }
}

/// Counts per key id, bounded so a failing key service cannot make it grow without end.
#[derive(Debug, Default)]
pub struct UsageBook {
    counts: HashMap<String, (u64, u64)>,
    dropped: u64,
}

/// Distinct keys held between reports; requests of further keys are counted in `dropped`.
pub const MAX_KEYS: usize = 100_000;
/// Entries in one report: about 30 KB of JSON, well under the key service's 64 KiB body limit.
pub const MAX_REPORT_ENTRIES: usize = 400;

impl UsageBook {
    /// Counts one request by `key_id` at `now` (unix seconds).
    pub fn record(&mut self, key_id: &str, now: u64) {
        self.add(key_id, 1, now);
    }

    fn add(&mut self, key_id: &str, count: u64, last_used: u64) {
        if let Some((c, last)) = self.counts.get_mut(key_id) {
            *c = c.saturating_add(count);
            *last = (*last).max(last_used);
        } else if self.counts.len() < MAX_KEYS {
            self.counts.insert(key_id.to_owned(), (count, last_used));
        } else {
            self.dropped = self.dropped.saturating_add(count);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Distinct keys waiting to be reported.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether to send a report now, the last one having gone at `last_report` (unix seconds):
    /// every `interval_secs`, or at once while more keys wait than one report holds, so a backlog
    /// drains a batch per tick. Never with nothing to report.
    pub fn report_due(&self, last_report: u64, interval_secs: u64, now: u64) -> bool {
        let backlog = self.counts.len() > MAX_REPORT_ENTRIES;
        !self.is_empty() && (backlog || now >= last_report.saturating_add(interval_secs))
    }

    /// Requests not counted because the book was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes up to [`MAX_REPORT_ENTRIES`] keys' counts as one report; the rest wait for the next.
    pub fn drain(&mut self) -> UsageReport {
        let taken: Vec<String> = self
            .counts
            .keys()
            .take(MAX_REPORT_ENTRIES)
            .cloned()
            .collect();
        let mut entries: Vec<UsageEntry> = taken
            .into_iter()
            .filter_map(|key_id| {
                let (count, last_used) = self.counts.remove(&key_id)?;
                Some(UsageEntry {
                    key_id,
                    count,
                    last_used,
                })
            })
            .collect();
        entries.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        UsageReport { entries }
    }

    /// Puts back a report that could not be delivered, so its counts go out with the next one.
    pub fn restore(&mut self, report: UsageReport) {
        for e in report.entries {
            self.add(&e.key_id, e.count, e.last_used);
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_report_is_due_each_interval_or_at_once_with_a_backlog() {
        let mut book = UsageBook::default();
        assert!(!book.report_due(0, 10, 1_000), "nothing to report");
        book.record("key_1", 1_000);
        assert!(!book.report_due(995, 10, 1_000));
        assert!(book.report_due(990, 10, 1_000));
        for n in 0..=MAX_REPORT_ENTRIES {
            book.record(&format!("key_{n}"), 1_000);
        }
        assert!(
            book.report_due(999, 10, 1_000),
            "a backlog goes at the next tick"
        );
    }

    #[test]
    fn a_report_is_retried_unless_the_service_refused_it_as_it_is() {
        use super::ReportFate::*;
        let cases = [
            (Some(200), Delivered),
            (Some(204), Delivered),
            (Some(400), Dropped),
            (Some(401), Dropped),
            (Some(413), Dropped),
            (Some(408), Retry),
            (Some(429), Retry),
            (Some(500), Retry),
            (Some(503), Retry),
            (Some(302), Retry),
            (None, Retry),
        ];
        for (status, fate) in cases {
            assert_eq!(ReportFate::of(status), fate, "{status:?}");
        }
    }

    use super::*;

    #[test]
    fn counts_accumulate_per_key_with_latest_use() {
        let mut book = UsageBook::default();
        book.record("a", 10);
        book.record("a", 12);
        book.record("b", 11);
        let report = book.drain();
        assert_eq!(
            report.entries,
            [
                UsageEntry {
                    key_id: "a".into(),
                    count: 2,
                    last_used: 12
                },
                UsageEntry {
                    key_id: "b".into(),
                    count: 1,
                    last_used: 11
                },
            ]
        );
        assert!(book.is_empty());
    }

    #[test]
    fn undelivered_report_is_merged_into_the_next() {
        let mut book = UsageBook::default();
        book.record("a", 10);
        let failed = book.drain();
        book.record("a", 20);
        book.restore(failed);
        assert_eq!(
            book.drain().entries,
            [UsageEntry {
                key_id: "a".into(),
                count: 2,
                last_used: 20
            }]
        );
    }

    #[test]
    fn reports_are_split_into_bounded_batches() {
        let mut book = UsageBook::default();
        for i in 0..MAX_REPORT_ENTRIES * 2 + 5 {
            book.record(&format!("key_{i:016x}"), 1);
        }
        let sizes: Vec<usize> =
            std::iter::from_fn(|| (!book.is_empty()).then(|| book.drain().entries.len())).collect();
        assert_eq!(sizes, [MAX_REPORT_ENTRIES, MAX_REPORT_ENTRIES, 5]);
        let mut full = UsageBook::default();
        for i in 0..MAX_REPORT_ENTRIES {
            full.record(&format!("key_{i:016x}"), u64::MAX / 2);
        }
        let json = serde_json::to_vec(&full.drain()).unwrap_or_default();
        assert!(json.len() < 48 * 1024, "{} bytes", json.len());
    }

    #[test]
    fn book_is_bounded() {
        let mut book = UsageBook::default();
        for i in 0..MAX_KEYS + 10 {
            book.record(&i.to_string(), 1);
        }
        assert_eq!(book.dropped(), 10);
        assert_eq!(book.len(), MAX_KEYS);
    }
}
