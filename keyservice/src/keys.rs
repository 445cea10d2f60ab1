//! The key domain: validated names, the key record, its status, expiry and rotation arithmetic,
//! the answer to a lookup and how usage is booked.
//!
//! Everything here is pure. The current time is always an argument (`now`), so the rules can be
//! tested at any instant without sleeping.

use std::fmt;

pub use keygate_core::permission::{Permission, MAX_PERMISSION_LEN};
use keygate_core::wire::{InvalidReason, LookupResponse, UsageEntry};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::credentials::{self, credential_id, Credential, Kind, ID_RANDOM_BYTES};

/// Longest lifetime a key may be given at creation or renewal: ten years.
pub const MAX_KEY_LIFETIME_SECS: u64 = 10 * 365 * 24 * 60 * 60;
/// Longest grace period for the old secret of a rotated key: one year.
pub const MAX_GRACE_PERIOD_SECS: u64 = 365 * 24 * 60 * 60;
/// Longest cache TTL the service hands out: one day.
pub const MAX_CACHE_TTL_SECS: u64 = 24 * 60 * 60;

const MAX_NAME_CHARS: usize = 200;
const MAX_TENANT_LEN: usize = 64;
const MAX_PERMISSIONS: usize = 100;
/// Random bytes in a key id.
pub const KEY_ID_RANDOM_BYTES: usize = ID_RANDOM_BYTES;

/// Why a request's field is not acceptable. The message names the field and never echoes its
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("`name` must be 1 to {MAX_NAME_CHARS} characters")]
    Name,
    /// Names the refused code point, never the name.
    #[error(
        "`name` must not contain U+{0:04X}: control, format (bidi, zero-width) and line or \
         paragraph separator characters hide or reorder text"
    )]
    NameHiddenCharacter(u32),
    #[error("`tenant` must be 1 to {MAX_TENANT_LEN} characters from `A-Z a-z 0-9 . _ : -`")]
    Tenant,
    #[error(
        "each permission must be 1 to {MAX_PERMISSION_LEN} characters from `A-Z a-z 0-9 : . _ * -`"
    )]
    Permission,
    #[error("a key may hold at most {MAX_PERMISSIONS} permissions")]
    TooManyPermissions,
    #[error("`expires_in_secs` must be between 1 and {MAX_KEY_LIFETIME_SECS}")]
    Lifetime,
    #[error("`expires_in_secs` and `never_expires: true` exclude each other")]
    ConflictingExpiry,
    #[error("`grace_period_secs` must be at most {MAX_GRACE_PERIOD_SECS}")]
    GracePeriod,
    #[error(transparent)]
    Role(#[from] crate::roles::RoleError),
}

credential_id!(
    /// A key id: `key_` and 16 lowercase hex characters. Not a secret; safe to log.
    KeyId,
    "key_",
    Kind::Key
);

/// A human label for a key or an OAuth client: 1 to [`MAX_NAME_CHARS`] characters, any script,
/// but nothing that hides or reorders text. Refused are the Unicode general categories Cc
/// (controls), Cf (format: the bidi controls U+202A..U+202E, U+2066..U+2069, U+200E, U+200F,
/// U+061C; the zero-width U+200B..U+200D, U+2060; the BOM U+FEFF; tag characters), Zl and Zp
/// (line and paragraph separators). An admin reading a list of names, in a terminal or a
/// console, then sees the text that was stored: `invoice\u{202E}fdp.exe` cannot pose as
/// `invoiceexe.pdf`, nor `ci\u{200B}` as `ci`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// The check for names that come in through the API.
    pub fn parse(s: String) -> Result<Self, ValidationError> {
        let chars = s.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(ValidationError::Name);
        }
        if let Some(c) = s.chars().find(|&c| hides_text(c)) {
            return Err(ValidationError::NameHiddenCharacter(u32::from(c)));
        }
        Ok(Self(s))
    }

    /// A name read back from the database, taken as it is. Names stored before [`Name::parse`]
    /// refused format characters may hold some; they still load (a name is only shown, never
    /// matched on), so no key or client stored earlier becomes unreadable.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `c` is in a general category that [`Name`] refuses: Cc, Cf, Zl or Zp.
pub(crate) fn hides_text(c: char) -> bool {
    use icu_properties::props::GeneralCategory;
    matches!(
        icu_properties::CodePointMapData::<GeneralCategory>::new().get(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// The tenant a key belongs to. The filter forwards it upstream in a header, so the alphabet is
/// kept header- and log-safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(String);

impl Tenant {
    pub fn parse(s: String) -> Result<Self, ValidationError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_TENANT_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Self(s))
        } else {
            Err(ValidationError::Tenant)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a permission list, dropping repeats while keeping the first-seen order. An empty list
/// is allowed: such a key passes routes that only require authentication.
pub fn parse_permissions(raw: Vec<String>) -> Result<Vec<Permission>, ValidationError> {
    if raw.len() > MAX_PERMISSIONS {
        return Err(ValidationError::TooManyPermissions);
    }
    let mut out: Vec<Permission> = Vec::with_capacity(raw.len());
    for s in raw {
        let permission = Permission::parse(&s).map_err(|_| ValidationError::Permission)?;
        if !out.contains(&permission) {
            out.push(permission);
        }
    }
    Ok(out)
}

/// What an API key grants, and when: the filter's credential (see [`crate::credentials`]).
pub type Key = Credential<KeyId>;

/// Where a key (or an OAuth client: same rules) stands at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

impl KeyStatus {
    /// The status of a credential (API key or OAuth client) with these times: revocation wins
    /// over expiry; a credential is expired from its `expires_at` second on.
    pub fn at(
        revoked_at: Option<OffsetDateTime>,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Self {
        if revoked_at.is_some() {
            Self::Revoked
        } else if expires_at.is_some_and(|at| at <= now) {
            Self::Expired
        } else {
            Self::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// The expiry a create or renew request asks for: `never_expires`, an explicit lifetime, or the
/// configured default.
pub fn expiry(
    now: OffsetDateTime,
    expires_in_secs: Option<u64>,
    never_expires: bool,
    default_lifetime: Lifetime,
) -> Result<Option<OffsetDateTime>, ValidationError> {
    match (never_expires, expires_in_secs) {
        (true, Some(_)) => Err(ValidationError::ConflictingExpiry),
        (true, None) => Ok(None),
        (false, None) => Ok(Some(now + default_lifetime.0)),
        (false, Some(secs)) => Ok(Some(now + Lifetime::from_secs(secs)?.0)),
    }
}

/// When the old secret of a key rotated at `now` stops working.
pub fn grace_end(
    now: OffsetDateTime,
    grace_period_secs: u64,
) -> Result<OffsetDateTime, ValidationError> {
    if grace_period_secs > MAX_GRACE_PERIOD_SECS {
        return Err(ValidationError::GracePeriod);
    }
    Ok(now + secs(grace_period_secs))
}

/// A key lifetime: between one second and [`MAX_KEY_LIFETIME_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(Duration);

impl Lifetime {
    pub fn from_secs(s: u64) -> Result<Self, ValidationError> {
        if s == 0 || s > MAX_KEY_LIFETIME_SECS {
            return Err(ValidationError::Lifetime);
        }
        Ok(Self(secs(s)))
    }
}

/// Seconds to a [`Duration`]; callers bound `s` well below `i64::MAX`.
fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
}

/// How long the filter may cache lookup answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Upper bound for valid answers; the answer never outlives the key or secret either.
    pub valid_ttl_secs: u64,
    /// For unknown, revoked and expired answers.
    pub invalid_ttl_secs: u64,
}

/// A key found by the hash of one of its secrets.
pub type SecretMatch = credentials::SecretMatch<KeyId>;

/// The answer to a lookup. A revoked key is reported as revoked whichever of its secrets was
/// used; a secret past its grace period is reported as expired.
pub fn lookup_answer(
    found: Option<&SecretMatch>,
    now: OffsetDateTime,
    cache: CachePolicy,
) -> LookupResponse {
    let invalid = |reason| LookupResponse::Invalid {
        reason,
        cache_ttl_secs: cache.invalid_ttl_secs,
    };
    let Some(found) = found else {
        return invalid(InvalidReason::Unknown);
    };
    if found.credential.revoked_at.is_some() {
        return invalid(InvalidReason::Revoked);
    }
    let expires_at = found.expires_at();
    let secs_left = match expires_at {
        None => u64::MAX,
        Some(at) => match u64::try_from((at - now).whole_seconds()) {
            Ok(left) if left > 0 => left,
            _ => return invalid(InvalidReason::Expired),
        },
    };
    LookupResponse::Valid {
        key_id: found.credential.id.to_string(),
        tenant: found.credential.tenant.to_string(),
        permissions: found
            .credential
            .effective_permissions()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        expires_at: expires_at.and_then(|at| u64::try_from(at.unix_timestamp()).ok()),
        cache_ttl_secs: cache.valid_ttl_secs.min(secs_left),
    }
}

/// Requests to book against one key on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBooking {
    pub key_id: KeyId,
    pub day: String,
    pub count: i64,
    pub last_used: OffsetDateTime,
}

impl UsageBooking {
    /// `None` for an entry that cannot be booked: a malformed key id (no key can have it), a
    /// zero count, or a timestamp outside the calendar.
    pub fn from_entry(entry: &UsageEntry) -> Option<Self> {
        if entry.count == 0 {
            return None;
        }
        let key_id = KeyId::parse(&entry.key_id)?;
        let last_used = i64::try_from(entry.last_used)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())?;
        Some(Self {
            key_id,
            day: utc_day(last_used),
            count: i64::try_from(entry.count).unwrap_or(i64::MAX),
            last_used,
        })
    }
}

/// `YYYY-MM-DD` of the UTC day `t` falls on.
pub fn utc_day(t: OffsetDateTime) -> String {
    let d = t.to_offset(time::UtcOffset::UTC).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Requests counted for one key on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DailyCount {
    /// `YYYY-MM-DD`
    pub day: String,
    pub count: u64,
}

/// What the filter reported for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    pub last_used_at: Option<OffsetDateTime>,
    /// Oldest day first.
    pub daily: Vec<DailyCount>,
}

impl KeyUsage {
    pub fn total(&self) -> u64 {
        self.daily
            .iter()
            .fold(0u64, |sum, d| sum.saturating_add(d.count))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 2026-11-22T10:00:00Z
    const NOW_UNIX: i64 = 1_795_341_600;
    const DAY: i64 = 24 * 60 * 60;
    const CACHE: CachePolicy = CachePolicy {
        valid_ttl_secs: 30,
        invalid_ttl_secs: 10,
    };

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW_UNIX).unwrap()
    }

    fn key(expires_in: Option<i64>) -> Key {
        Key {
            id: KeyId::from_random([0xab; KEY_ID_RANDOM_BYTES]),
            name: Name::parse("ci".into()).unwrap(),
            tenant: Tenant::parse("acme".into()).unwrap(),
            permissions: parse_permissions(vec!["orders:read".into()]).unwrap(),
            roles: vec![],
            secret_hint: None,
            created_at: now(),
            expires_at: expires_in.map(|s| now() + Duration::seconds(s)),
            revoked_at: None,
            last_used_at: None,
        }
    }

    fn current(key: Key) -> SecretMatch {
        SecretMatch {
            credential: key,
            retires_at: None,
        }
    }

    #[test]
    fn key_ids_round_trip_and_reject_junk() {
        let id = KeyId::from_random([0x0f; KEY_ID_RANDOM_BYTES]);
        assert_eq!(id.as_str(), "key_0f0f0f0f0f0f0f0f");
        assert_eq!(KeyId::parse(id.as_str()), Some(id));
        for junk in [
            "",
            "key_",
            "key_0F0F0F0F0F0F0F0F",
            "key_0f0f0f0f0f0f0f0f0",
            "kex_0f0f0f0f0f0f0f0f",
        ] {
            assert_eq!(KeyId::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn names_tenants_and_permissions_are_checked() {
        assert!(Name::parse("Billing job (prod) – ü".into()).is_ok());
        assert!(Name::parse("Zoë 日本".into()).is_ok());
        assert_eq!(Name::parse(String::new()), Err(ValidationError::Name));
        assert_eq!(
            Name::parse("a\nb".into()),
            Err(ValidationError::NameHiddenCharacter(0x0a))
        );
        assert_eq!(
            Name::parse("x".repeat(MAX_NAME_CHARS + 1)),
            Err(ValidationError::Name)
        );

        assert!(Tenant::parse("acme-eu.prod_1:x".into()).is_ok());
        for bad in ["", "ac me", "acme,evil", "acme\r\n"] {
            assert_eq!(
                Tenant::parse(bad.into()),
                Err(ValidationError::Tenant),
                "{bad:?}"
            );
        }

        assert!(parse_permissions(vec!["orders:*".into()]).is_ok());
        let too_long = "p".repeat(MAX_PERMISSION_LEN + 1);
        for bad in ["", "a,b", "a b", "ordérs", too_long.as_str()] {
            assert_eq!(
                parse_permissions(vec![bad.into()]),
                Err(ValidationError::Permission),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_refuse_every_character_that_hides_or_reorders_text() {
        let refused = [
            // Cc
            '\u{0}',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            // Cf: bidi controls
            '\u{202a}',
            '\u{202e}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200e}',
            '\u{200f}',
            '\u{061c}',
            // Cf: zero-width, BOM, soft hyphen, a tag character
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{2060}',
            '\u{feff}',
            '\u{ad}',
            '\u{e0041}',
            // Zl, Zp
            '\u{2028}',
            '\u{2029}',
        ];
        for c in refused {
            assert_eq!(
                Name::parse(format!("ci{c}job")),
                Err(ValidationError::NameHiddenCharacter(u32::from(c))),
                "U+{:04X}",
                u32::from(c)
            );
        }
        let message = Name::parse("a\u{202e}b".into()).unwrap_err().to_string();
        assert!(
            message.contains("`name`") && message.contains("U+202E"),
            "{message}"
        );
    }

    #[test]
    fn stored_names_load_even_when_they_break_todays_rule() {
        let stored = "legacy\u{200b}name".to_owned();
        assert_eq!(Name::from_stored(stored.clone()).as_str(), stored);
    }

    #[test]
    fn permission_lists_drop_repeats_and_are_capped() {
        let parsed = parse_permissions(vec!["b".into(), "a".into(), "b".into()]).unwrap();
        let names: Vec<_> = parsed.iter().map(Permission::as_str).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(parse_permissions(vec![]), Ok(vec![]));
        let many = vec!["p".to_owned(); MAX_PERMISSIONS + 1];
        assert_eq!(
            parse_permissions(many),
            Err(ValidationError::TooManyPermissions)
        );
    }

    #[test]
    fn status_is_revoked_before_expired_and_expired_at_the_expiry_second() {
        let mut k = key(Some(60));
        assert_eq!(k.status(now()), KeyStatus::Active);
        assert_eq!(k.status(now() + Duration::seconds(59)), KeyStatus::Active);
        assert_eq!(k.status(now() + Duration::seconds(60)), KeyStatus::Expired);
        k.revoked_at = Some(now());
        assert_eq!(k.status(now() + Duration::seconds(60)), KeyStatus::Revoked);
        assert_eq!(
            key(None).status(now() + Duration::days(100_000)),
            KeyStatus::Active
        );
    }

    #[test]
    fn expiry_uses_the_default_an_explicit_lifetime_or_never() {
        let default = Lifetime::from_secs(15 * DAY as u64).unwrap();
        assert_eq!(
            expiry(now(), None, false, default),
            Ok(Some(now() + Duration::days(15)))
        );
        assert_eq!(
            expiry(now(), Some(60), false, default),
            Ok(Some(now() + Duration::seconds(60)))
        );
        assert_eq!(expiry(now(), None, true, default), Ok(None));
        assert_eq!(
            expiry(now(), Some(60), true, default),
            Err(ValidationError::ConflictingExpiry)
        );
        assert_eq!(
            expiry(now(), Some(0), false, default),
            Err(ValidationError::Lifetime)
        );
        assert_eq!(
            expiry(now(), Some(u64::MAX), false, default),
            Err(ValidationError::Lifetime)
        );
    }

    #[test]
    fn grace_period_is_bounded() {
        assert_eq!(grace_end(now(), 0), Ok(now()));
        assert_eq!(grace_end(now(), 3600), Ok(now() + Duration::hours(1)));
        assert_eq!(
            grace_end(now(), MAX_GRACE_PERIOD_SECS + 1),
            Err(ValidationError::GracePeriod)
        );
    }

    #[test]
    fn valid_answer_ttl_is_capped_by_the_seconds_left() {
        let answer = lookup_answer(Some(&current(key(Some(12)))), now(), CACHE);
        let LookupResponse::Valid {
            cache_ttl_secs,
            expires_at,
            permissions,
            ..
        } = answer
        else {
            unreachable!("expected a valid answer, got {answer:?}");
        };
        assert_eq!(cache_ttl_secs, 12);
        assert_eq!(expires_at, Some(NOW_UNIX as u64 + 12));
        assert_eq!(permissions, ["orders:read"]);

        let answer = lookup_answer(Some(&current(key(None))), now(), CACHE);
        assert!(matches!(
            answer,
            LookupResponse::Valid {
                cache_ttl_secs: 30,
                expires_at: None,
                ..
            }
        ));
    }

    #[test]
    fn retiring_secret_expires_at_the_earlier_of_key_expiry_and_grace_end() {
        let found = SecretMatch {
            credential: key(Some(DAY)),
            retires_at: Some(now() + Duration::seconds(5)),
        };
        let answer = lookup_answer(Some(&found), now(), CACHE);
        assert!(
            matches!(
                answer,
                LookupResponse::Valid {
                    cache_ttl_secs: 5,
                    ..
                }
            ),
            "{answer:?}"
        );
        let later = now() + Duration::seconds(5);
        assert_eq!(
            lookup_answer(Some(&found), later, CACHE),
            LookupResponse::Invalid {
                reason: InvalidReason::Expired,
                cache_ttl_secs: 10
            }
        );
    }

    #[test]
    fn invalid_answers_carry_the_negative_ttl() {
        let invalid = |reason| LookupResponse::Invalid {
            reason,
            cache_ttl_secs: 10,
        };
        assert_eq!(
            lookup_answer(None, now(), CACHE),
            invalid(InvalidReason::Unknown)
        );
        let mut revoked = key(Some(-5));
        revoked.revoked_at = Some(now());
        assert_eq!(
            lookup_answer(Some(&current(revoked)), now(), CACHE),
            invalid(InvalidReason::Revoked)
        );
        assert_eq!(
            lookup_answer(Some(&current(key(Some(0)))), now(), CACHE),
            invalid(InvalidReason::Expired)
        );
    }

    #[test]
    fn usage_entries_are_booked_on_the_utc_day_of_last_use() {
        let entry = |key_id: &str, count, last_used| UsageEntry {
            key_id: key_id.into(),
            count,
            last_used,
        };
        let id = "key_abababababababab";
        // 2026-11-22T23:59:59Z and one second later.
        let late = UsageBooking::from_entry(&entry(id, 3, 1_795_391_999)).unwrap();
        assert_eq!((late.day.as_str(), late.count), ("2026-11-22", 3));
        let next = UsageBooking::from_entry(&entry(id, u64::MAX, 1_795_392_000)).unwrap();
        assert_eq!((next.day.as_str(), next.count), ("2026-11-23", i64::MAX));

        assert_eq!(UsageBooking::from_entry(&entry(id, 0, 1_795_392_000)), None);
        assert_eq!(
            UsageBooking::from_entry(&entry("nope", 1, 1_795_392_000)),
            None
        );
        assert_eq!(UsageBooking::from_entry(&entry(id, 1, u64::MAX)), None);
    }

    #[test]
    fn usage_total_saturates() {
        let usage = KeyUsage {
            last_used_at: None,
            daily: vec![
                DailyCount {
                    day: "2026-11-21".into(),
                    count: u64::MAX,
                },
                DailyCount {
                    day: "2026-11-22".into(),
                    count: 1,
                },
            ],
        };
        assert_eq!(usage.total(), u64::MAX);
    }
}
