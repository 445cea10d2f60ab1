//! Access tokens, pure: what a client-credentials token says (RFC 9068's JWT profile), how long it
//! lives, and which permissions a token request may have.
//!
//! A token carries the client's tenant and the granted permissions twice: as the `permissions`
//! array and as the space-separated `scope` string RFC 9068 section 2.2.3 asks for, so verifiers
//! configured for either claim read the same set. Its lifetime is the configured TTL, cut to the
//! client's expiry.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

use crate::clients::Client;
use crate::keys::Permission;

/// The JOSE `typ` of an access token (RFC 9068 section 2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Longest access-token lifetime the service accepts: one day. Access tokens cannot be revoked,
/// so they are meant to be short-lived.
pub const MAX_TOKEN_TTL_SECS: u64 = 24 * 60 * 60;
const MAX_ISSUER_LEN: usize = 512;
const MAX_AUDIENCE_LEN: usize = 256;

/// Why an issuer, audience or lifetime is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenConfigError {
    #[error("must be an http:// or https:// URL with a host and no query or fragment")]
    Issuer,
    #[error("must be 1 to {MAX_AUDIENCE_LEN} printable ASCII characters without spaces")]
    Audience,
    #[error("must be between 1 and {MAX_TOKEN_TTL_SECS}")]
    Ttl,
}

/// The `iss` of every token and the base of the discovery URLs: an `http://` or `https://` URL
/// with a host, no query and no fragment. Kept exactly as configured, since verifiers compare
/// `iss` as a string; a trailing slash is dropped only when building URLs under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer(String);

impl Issuer {
    pub fn parse(s: &str) -> Result<Self, TokenConfigError> {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or(TokenConfigError::Issuer)?;
        let host = rest.split('/').next().unwrap_or_default();
        let ok = !host.is_empty()
            && s.len() <= MAX_ISSUER_LEN
            && s.bytes().all(|b| b.is_ascii_graphic())
            && !s.contains(['?', '#']);
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(TokenConfigError::Issuer)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL of `path` (which starts with `/`) under the issuer.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0.trim_end_matches('/'))
    }
}

impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `aud` of every token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience(String);

impl Audience {
    pub fn parse(s: &str) -> Result<Self, TokenConfigError> {
        let ok =
            !s.is_empty() && s.len() <= MAX_AUDIENCE_LEN && s.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(TokenConfigError::Audience)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What every access token says about its issuer, and how long it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    pub issuer: Issuer,
    pub audience: Audience,
    /// 1 to [`MAX_TOKEN_TTL_SECS`].
    ttl_secs: u64,
}

impl TokenPolicy {
    pub fn new(
        issuer: Issuer,
        audience: Audience,
        ttl_secs: u64,
    ) -> Result<Self, TokenConfigError> {
        if ttl_secs == 0 || ttl_secs > MAX_TOKEN_TTL_SECS {
            return Err(TokenConfigError::Ttl);
        }
        Ok(Self {
            issuer,
            audience,
            ttl_secs,
        })
    }

    /// The longest a token lives.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// When a token issued at `now` to `client` expires: `now + ttl`, but never after the client
    /// does. The client is active, so this is always after `now`.
    pub fn expires_at(&self, client: &Client, now: OffsetDateTime) -> OffsetDateTime {
        let full = now + time::Duration::seconds(i64::try_from(self.ttl_secs).unwrap_or(i64::MAX));
        client.expires_at.map_or(full, |at| at.min(full))
    }
}

/// Why a requested scope cannot be granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The scope string has an empty entry (two spaces in a row, or a leading or trailing space)
    /// or a character RFC 6749 section 3.3 does not allow.
    #[error("`scope` must be permission names separated by single spaces")]
    Malformed,
    /// A requested scope is not among the client's permissions. Names what was asked, which the
    /// caller sent and so may see again.
    #[error("the client does not hold `{0}`")]
    NotHeld(String),
}

/// The permissions a token gets: all of the client's when no `scope` is requested, else exactly
/// the requested ones (repeats dropped, order kept), each of which the client must hold verbatim.
/// A wildcard such as `orders:*` is only granted when asked for by that name.
pub fn grant_scope(
    held: &[Permission],
    requested: Option<&str>,
) -> Result<Vec<Permission>, ScopeError> {
    let Some(requested) = requested else {
        return Ok(held.to_vec());
    };
    let mut granted: Vec<Permission> = Vec::new();
    for entry in requested.split(' ') {
        // RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let well_formed = !entry.is_empty()
            && entry
                .bytes()
                .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e));
        if !well_formed {
            return Err(ScopeError::Malformed);
        }
        let Some(permission) = held.iter().find(|p| p.as_str() == entry) else {
            return Err(ScopeError::NotHeld(entry.to_owned()));
        };
        if !granted.contains(permission) {
            granted.push(permission.clone());
        }
    }
    Ok(granted)
}

/// The `scope` value of a grant: permission names joined by single spaces.
pub fn scope_string(granted: &[Permission]) -> String {
    let names: Vec<&str> = granted.iter().map(Permission::as_str).collect();
    names.join(" ")
}

/// The claims of an access token (RFC 9068 section 2.2), in the order they are serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    /// The client id: a client-credentials token has no user (RFC 9068 section 2.2).
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub tenant: String,
    pub permissions: Vec<String>,
    /// The same permissions, space-separated.
    pub scope: String,
}

impl AccessTokenClaims {
    /// The claims of a token issued to `client` at `now` for `granted`, identified by `jti`.
    pub fn new(
        policy: &TokenPolicy,
        client: &Client,
        granted: &[Permission],
        jti: String,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            iss: policy.issuer.as_str().to_owned(),
            sub: client.id.to_string(),
            aud: policy.audience.as_str().to_owned(),
            exp: policy.expires_at(client, now).unix_timestamp(),
            iat: now.unix_timestamp(),
            jti,
            client_id: client.id.to_string(),
            tenant: client.tenant.to_string(),
            permissions: granted.iter().map(|p| p.as_str().to_owned()).collect(),
            scope: scope_string(granted),
        }
    }

    /// Seconds from issue to expiry: the token response's `expires_in`.
    pub fn expires_in(&self) -> u64 {
        u64::try_from(self.exp - self.iat).unwrap_or(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::clients::ClientId;
    use crate::credentials::ID_RANDOM_BYTES as CLIENT_ID_RANDOM_BYTES;
    use crate::keys::{parse_permissions, Name, Tenant};

    /// 2026-11-22T10:00:00Z
    const NOW_UNIX: i64 = 1_795_341_600;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW_UNIX).unwrap()
    }

    fn permissions(names: &[&str]) -> Vec<Permission> {
        parse_permissions(names.iter().map(|s| (*s).to_owned()).collect()).unwrap()
    }

    fn client(expires_in: Option<i64>) -> Client {
        Client {
            id: ClientId::from_random([0x01; CLIENT_ID_RANDOM_BYTES]),
            name: Name::parse("billing".into()).unwrap(),
            tenant: Tenant::parse("acme".into()).unwrap(),
            permissions: permissions(&["orders:read", "orders:write"]),
            roles: vec![],
            secret_hint: None,
            created_at: now(),
            expires_at: expires_in.map(|s| now() + Duration::seconds(s)),
            revoked_at: None,
            last_used_at: None,
        }
    }

    fn policy(ttl: u64) -> TokenPolicy {
        TokenPolicy::new(
            Issuer::parse("https://auth.example.com").unwrap(),
            Audience::parse("keygate").unwrap(),
            ttl,
        )
        .unwrap()
    }

    #[test]
    fn issuers_are_http_urls_without_query_or_fragment() {
        for good in [
            "https://auth.example.com",
            "http://127.0.0.1:8080",
            "https://example.com/tenants/acme/",
        ] {
            assert!(Issuer::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "auth.example.com",
            "ftp://example.com",
            "https://",
            "https:///path",
            "https://example.com/?x=1",
            "https://example.com/#frag",
            "https://exa mple.com",
        ] {
            assert_eq!(Issuer::parse(bad), Err(TokenConfigError::Issuer), "{bad}");
        }
        let issuer = Issuer::parse("https://example.com/base/").unwrap();
        assert_eq!(issuer.as_str(), "https://example.com/base/");
        assert_eq!(
            issuer.url("/oauth/token"),
            "https://example.com/base/oauth/token"
        );
    }

    #[test]
    fn audience_and_ttl_are_bounded() {
        assert!(Audience::parse("keygate").is_ok());
        assert_eq!(Audience::parse(""), Err(TokenConfigError::Audience));
        assert_eq!(Audience::parse("a b"), Err(TokenConfigError::Audience));
        let (iss, aud) = (
            Issuer::parse("https://x").unwrap(),
            Audience::parse("a").unwrap(),
        );
        assert_eq!(
            TokenPolicy::new(iss.clone(), aud.clone(), 0),
            Err(TokenConfigError::Ttl)
        );
        assert_eq!(
            TokenPolicy::new(iss, aud, MAX_TOKEN_TTL_SECS + 1),
            Err(TokenConfigError::Ttl)
        );
    }

    #[test]
    fn no_scope_grants_every_permission_of_the_client() {
        let held = permissions(&["orders:read", "orders:write"]);
        assert_eq!(grant_scope(&held, None), Ok(held.clone()));
        assert_eq!(grant_scope(&[], None), Ok(vec![]));
    }

    #[test]
    fn requested_scope_can_only_narrow() {
        let held = permissions(&["orders:read", "orders:write", "orders:*"]);
        assert_eq!(
            grant_scope(&held, Some("orders:write orders:read orders:write")),
            Ok(permissions(&["orders:write", "orders:read"]))
        );
        assert_eq!(
            grant_scope(&held, Some("orders:read admin")),
            Err(ScopeError::NotHeld("admin".into()))
        );
        // A wildcard is a name like any other: holding it grants nothing it does not spell.
        assert_eq!(
            grant_scope(&permissions(&["orders:*"]), Some("orders:read")),
            Err(ScopeError::NotHeld("orders:read".into()))
        );
        for malformed in [
            "",
            " orders:read",
            "orders:read  orders:write",
            "orders:read ",
            "a\"b",
        ] {
            assert_eq!(
                grant_scope(&held, Some(malformed)),
                Err(ScopeError::Malformed),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn claims_follow_rfc_9068_and_never_outlive_the_client() {
        let granted = permissions(&["orders:read", "orders:write"]);
        let claims =
            AccessTokenClaims::new(&policy(300), &client(None), &granted, "jti-1".into(), now());
        assert_eq!(
            serde_json::to_value(&claims).unwrap(),
            serde_json::json!({
                "iss": "https://auth.example.com",
                "sub": "kgc_0101010101010101",
                "aud": "keygate",
                "exp": NOW_UNIX + 300,
                "iat": NOW_UNIX,
                "jti": "jti-1",
                "client_id": "kgc_0101010101010101",
                "tenant": "acme",
                "permissions": ["orders:read", "orders:write"],
                "scope": "orders:read orders:write",
            })
        );
        assert_eq!(claims.expires_in(), 300);

        let ending = client(Some(42));
        let claims = AccessTokenClaims::new(&policy(300), &ending, &granted, "jti-2".into(), now());
        assert_eq!(claims.exp, NOW_UNIX + 42);
        assert_eq!(claims.expires_in(), 42);
    }
}
