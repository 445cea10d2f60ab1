//! The wire protocol between the filter and the key service. Both sides use these types, so they
//! cannot drift.
//!
//! The filter authenticates to each of these endpoints with `Authorization: Bearer <filter
//! token>`, a token of its own that is not the admin secret.

use serde::{Deserialize, Serialize};

use crate::key::KeyHash;

/// `POST`: is this key hash valid, and for whom?
pub const LOOKUP_PATH: &str = "/v1/lookup";
/// `POST`: several key hashes at once ([`LookupBatchRequest`]), answered in order. The filter
/// sends the lookups that missed within one turn of its worker's event loop together.
pub const LOOKUP_BATCH_PATH: &str = "/v1/lookups";
/// The most key hashes one [`LookupBatchRequest`] carries.
pub const MAX_LOOKUP_BATCH: usize = 64;
/// `POST`: a batch of per-key request counts from the filter.
pub const USAGE_PATH: &str = "/v1/usage";
/// `GET`: the key hashes whose lookup answer changed since a cursor (the revocation feed).
/// Query parameters: `after=<cursor>` (absent: only the current cursor, with `reset: true`),
/// `limit=<n>` (at most [`MAX_CHANGES_PER_ANSWER`], the default), `wait_ms=<n>` (long-poll, at
/// most [`MAX_CHANGES_WAIT_MS`]).
pub const CHANGES_PATH: &str = "/v1/changes";
/// The most key hashes one [`ChangesResponse`] carries; `more: true` says there are others.
pub const MAX_CHANGES_PER_ANSWER: usize = 1000;
/// The longest a `GET /v1/changes` long-poll is held (`wait_ms` above it is capped).
pub const MAX_CHANGES_WAIT_MS: u64 = 25_000;

/// Body of a lookup. Only the hash travels: the raw key never leaves the edge.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    pub key_hash: KeyHash,
}

/// Body of a batch lookup: 1 to [`MAX_LOOKUP_BATCH`] hashes. A hash may appear more than once;
/// each place gets its answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupBatchRequest {
    pub key_hashes: Vec<KeyHash>,
}

/// Answer to a batch lookup: `answers[i]` answers `key_hashes[i]`, exactly as a single lookup of
/// it would.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupBatchResponse {
    pub answers: Vec<LookupResponse>,
}

/// Answer to a lookup. `cache_ttl_secs` is the longest the filter may cache this answer; the filter
/// also never caches a valid answer past `expires_at`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LookupResponse {
    Valid {
        key_id: String,
        tenant: String,
        permissions: Vec<String>,
        /// Unix seconds; `None` for a key that never expires. For a rotated-out key this is the
        /// end of its grace period.
        expires_at: Option<u64>,
        cache_ttl_secs: u64,
    },
    Invalid {
        reason: InvalidReason,
        cache_ttl_secs: u64,
    },
}

/// Why a key hash is not valid.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReason {
    Unknown,
    Revoked,
    Expired,
}

impl InvalidReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// A batch of usage counts, sent from the filter's `on_tick`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    pub entries: Vec<UsageEntry>,
}

/// Requests made with one key since the last report. The key service books `count` on the UTC day
/// of `last_used`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageEntry {
    pub key_id: String,
    pub count: u64,
    /// Unix seconds of the latest request counted here.
    pub last_used: u64,
}

/// Answer to `GET /v1/changes`.
///
/// The cursor is opaque to the filter: it sends back the last one it got. Whenever `reset` is
/// true the filter cannot know what changed (first read, the log was trimmed past its cursor, or
/// the key service now runs on another or an older database), so it drops every cached answer
/// and continues from `cursor`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesResponse {
    /// Where to continue: `after=<cursor>` on the next request.
    pub cursor: String,
    /// Hashes whose lookup answer changed after the request's cursor, oldest change first; a hash
    /// may appear more than once. Empty when `reset` is true.
    pub changes: Vec<KeyHash>,
    /// Drop the whole cache: the changes since the request's cursor are unknown.
    pub reset: bool,
    /// More changes are waiting: ask again at once with `cursor`.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_response_has_a_status_tag() {
        let valid = LookupResponse::Valid {
            key_id: "key_1".into(),
            tenant: "acme".into(),
            permissions: vec!["orders:read".into()],
            expires_at: Some(1_800_000_000),
            cache_ttl_secs: 60,
        };
        let json = serde_json::to_value(&valid).unwrap_or_default();
        assert_eq!(json["status"], "valid");
        let invalid: LookupResponse =
            serde_json::from_str(r#"{"status":"invalid","reason":"revoked","cache_ttl_secs":5}"#)
                .unwrap_or(valid);
        assert_eq!(
            invalid,
            LookupResponse::Invalid {
                reason: InvalidReason::Revoked,
                cache_ttl_secs: 5
            }
        );
    }

    #[test]
    fn changes_response_lists_hashes_as_hex() {
        let answer = ChangesResponse {
            cursor: "0123456789abcdef0123456789abcdef:7".into(),
            changes: vec![KeyHash::from_bytes([0xab; 32])],
            reset: false,
            more: true,
        };
        let json = serde_json::to_value(&answer).unwrap_or_default();
        assert_eq!(json["changes"][0], "ab".repeat(32));
        assert_eq!(json["more"], true);
        let back: Option<ChangesResponse> = serde_json::from_value(json).ok();
        assert_eq!(back, Some(answer));
    }
}
