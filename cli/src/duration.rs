//! Durations and times as people type them: `90` or `90s`, `15m`, `12h`, `30d` for lifetimes and
//! grace periods; RFC 3339 or an age (`2h`: two hours ago) for the audit log's `--since` and
//! `--until`. These are clap value parsers; their errors are clap's usage errors.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds in a duration such as `90`, `90s`, `15m`, `12h` or `30d`.
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => {
            return Err(format!(
                "`{text}` is not a duration: a number of seconds, or a number with s, m, h or d"
            ))
        }
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: it has no number, or one too large"))?;
    count
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

/// `text` as the RFC 3339 time the service filters by: an RFC 3339 time as given, or an age
/// counted back from now.
pub fn parse_since(text: &str) -> Result<String, String> {
    time_at(text, OffsetDateTime::now_utc())
}

/// [`parse_since`] at `now`.
fn time_at(text: &str, now: OffsetDateTime) -> Result<String, String> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return at.format(&Rfc3339).map_err(|e| e.to_string());
    }
    let age = parse_duration_secs(text).map_err(|_| {
        format!("`{text}` is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor an age (2h, 7d)")
    })?;
    let age = i64::try_from(age)
        .ok()
        .and_then(|secs| now.checked_sub(time::Duration::seconds(secs)))
        .ok_or_else(|| format!("`{text}` is too far back"))?;
    age.format(&Rfc3339).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22T10:00:00Z
    const NOW_UNIX: i64 = 1_795_341_600;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW_UNIX).unwrap()
    }

    #[test]
    fn a_bare_number_is_seconds_and_units_scale_it() {
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("15m"), Ok(900));
        assert_eq!(parse_duration_secs("12h"), Ok(43_200));
        assert_eq!(parse_duration_secs("30d"), Ok(2_592_000));
        assert_eq!(parse_duration_secs("0"), Ok(0));
    }

    #[test]
    fn unknown_units_missing_numbers_and_overflow_are_refused() {
        for bad in [
            "",
            "d",
            "1w",
            "1.5h",
            "-1",
            "1 d",
            "99999999999999999999",
            "18446744073709551615d",
        ] {
            assert!(parse_duration_secs(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn an_rfc_3339_time_is_kept_and_an_age_counts_back_from_now() {
        assert_eq!(
            time_at("2026-12-01T00:00:00Z", now()).unwrap(),
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(time_at("2h", now()).unwrap(), "2026-11-22T08:00:00Z");
        assert_eq!(time_at("1d", now()).unwrap(), "2026-11-21T10:00:00Z");
    }

    #[test]
    fn a_time_that_is_neither_is_refused_by_name() {
        let error = time_at("yesterday", now()).unwrap_err();
        assert!(error.contains("yesterday"), "{error}");
    }
}
