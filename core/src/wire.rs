//! The wire protocol between the filter and the key service. Both sides use these types, so they
//! cannot drift.
//!
//! The filter authenticates to both endpoints with `Authorization: Bearer <filter token>`, a
//! token of its own that is not the admin secret.

use serde::{Deserialize, Serialize};

use crate::key::KeyHash;

/// `POST`: is this key hash valid, and for whom?
pub const LOOKUP_PATH: &str = "/v1/lookup";
/// `POST`: a batch of per-key request counts from the filter.
pub const USAGE_PATH: &str = "/v1/usage";

/// Body of a lookup. Only the hash travels: the raw key never leaves the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    pub key_hash: KeyHash,
}

/// Answer to a lookup. `cache_ttl_secs` is the longest the filter may cache this answer; the filter
/// also never caches a valid answer past `expires_at`.
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    pub entries: Vec<UsageEntry>,
}

/// Requests made with one key since the last report. The key service books `count` on the UTC day
/// of `last_used`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageEntry {
    pub key_id: String,
    pub count: u64,
    /// Unix seconds of the latest request counted here.
    pub last_used: u64,
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
}
