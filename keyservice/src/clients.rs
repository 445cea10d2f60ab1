//! The OAuth 2.0 client domain (client credentials, RFC 6749 section 4.4), pure: client ids and
//! secrets, the client record, and how a presented secret authenticates a client.
//!
//! A client is to the token endpoint what an API key is to the filter, and follows the same rules:
//! names, tenants and permissions are validated as for keys ([`crate::keys`]), status is
//! [`KeyStatus`], and rotation keeps the old secret valid for a grace period. Secrets are stored
//! only as their SHA-256.

use std::fmt;

use keygate_core::key::KeyHash;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::keys::{KeyStatus, Name, Permission, Tenant};

const CLIENT_ID_PREFIX: &str = "kgc_";
/// Random bytes in a client id.
pub const CLIENT_ID_RANDOM_BYTES: usize = 8;
const CLIENT_SECRET_PREFIX: &str = "kgcs_";
/// Random bytes in a client secret (256 bits).
pub const CLIENT_SECRET_RANDOM_BYTES: usize = 32;

/// A client id: `kgc_` and 16 lowercase hex characters. Not a secret; safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(CLIENT_ID_PREFIX)?;
        let well_formed = hex.len() == CLIENT_ID_RANDOM_BYTES * 2 && is_lower_hex(hex);
        well_formed.then(|| Self(s.to_owned()))
    }

    pub fn from_random(random: [u8; CLIENT_ID_RANDOM_BYTES]) -> Self {
        Self(format!("{CLIENT_ID_PREFIX}{}", hex(&random)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client secret: `kgcs_` and 64 lowercase hex characters. Shown once, at creation or rotation;
/// only its [`KeyHash`] is stored. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn from_random(random: [u8; CLIENT_SECRET_RANDOM_BYTES]) -> Self {
        Self(format!("{CLIENT_SECRET_PREFIX}{}", hex(&random)))
    }

    /// The secret itself. Handle with care.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0.as_bytes())
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What an OAuth client may ask tokens for, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    pub name: Name,
    pub tenant: Tenant,
    /// The most a token can carry; a token request can only narrow it.
    pub permissions: Vec<Permission>,
    pub created_at: OffsetDateTime,
    /// `None`: never expires.
    pub expires_at: Option<OffsetDateTime>,
    /// Once set, never cleared: revocation is final.
    pub revoked_at: Option<OffsetDateTime>,
}

impl Client {
    pub fn status(&self, now: OffsetDateTime) -> KeyStatus {
        KeyStatus::at(self.revoked_at, self.expires_at, now)
    }
}

/// One stored secret of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub hash: KeyHash,
    /// `None` for the current secret; the end of the grace period for a rotated-out one.
    pub retires_at: Option<OffsetDateTime>,
}

/// A client with every secret it has had (current and retiring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub client: Client,
    pub secrets: Vec<StoredSecret>,
}

/// Why client authentication failed. All of them answer `invalid_client`; the distinction is for
/// logs and for the failure limiter (only a wrong secret or an unknown id counts as a guess).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    #[error("unknown client")]
    UnknownClient,
    #[error("wrong client secret")]
    WrongSecret,
    #[error("client is revoked")]
    Revoked,
    #[error("client is expired")]
    Expired,
}

impl ClientAuthError {
    /// True for failures that could be someone guessing secrets.
    pub fn is_guess(self) -> bool {
        matches!(self, Self::UnknownClient | Self::WrongSecret)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownClient => "unknown_client",
            Self::WrongSecret => "wrong_secret",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// Checks `presented` (the SHA-256 of the secret the caller sent) against the client's secrets
/// that have not retired by `now`.
///
/// Every stored secret is compared, each in constant time, and an unknown client is compared
/// against a dummy, so the time taken says nothing about how close a guess was. The secret is
/// checked before the status: a caller without the secret does not learn that a client exists
/// or is revoked.
pub fn authenticate<'a>(
    found: Option<&'a ClientCredentials>,
    presented: &KeyHash,
    now: OffsetDateTime,
) -> Result<&'a Client, ClientAuthError> {
    let Some(found) = found else {
        let dummy = KeyHash::from_bytes([0; 32]);
        let _ = bool::from(presented.as_bytes().ct_eq(dummy.as_bytes()));
        return Err(ClientAuthError::UnknownClient);
    };
    let mut matched = subtle::Choice::from(0);
    for secret in &found.secrets {
        let live = secret.retires_at.is_none_or(|at| at > now);
        matched |= presented.as_bytes().ct_eq(secret.hash.as_bytes())
            & subtle::Choice::from(u8::from(live));
    }
    if !bool::from(matched) {
        return Err(ClientAuthError::WrongSecret);
    }
    match found.client.status(now) {
        KeyStatus::Active => Ok(&found.client),
        KeyStatus::Revoked => Err(ClientAuthError::Revoked),
        KeyStatus::Expired => Err(ClientAuthError::Expired),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::keys::parse_permissions;

    /// 2026-11-22T10:00:00Z
    const NOW_UNIX: i64 = 1_795_341_600;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW_UNIX).unwrap()
    }

    fn secret(byte: u8) -> ClientSecret {
        ClientSecret::from_random([byte; CLIENT_SECRET_RANDOM_BYTES])
    }

    fn credentials(secrets: Vec<StoredSecret>) -> ClientCredentials {
        ClientCredentials {
            client: Client {
                id: ClientId::from_random([0xab; CLIENT_ID_RANDOM_BYTES]),
                name: Name::parse("billing".into()).unwrap(),
                tenant: Tenant::parse("acme".into()).unwrap(),
                permissions: parse_permissions(vec!["orders:read".into()]).unwrap(),
                created_at: now(),
                expires_at: Some(now() + Duration::days(1)),
                revoked_at: None,
            },
            secrets,
        }
    }

    fn current(s: &ClientSecret) -> StoredSecret {
        StoredSecret {
            hash: s.hash(),
            retires_at: None,
        }
    }

    #[test]
    fn client_ids_round_trip_and_reject_junk() {
        let id = ClientId::from_random([0x0f; CLIENT_ID_RANDOM_BYTES]);
        assert_eq!(id.as_str(), "kgc_0f0f0f0f0f0f0f0f");
        assert_eq!(ClientId::parse(id.as_str()), Some(id));
        for junk in [
            "",
            "kgc_",
            "key_0f0f0f0f0f0f0f0f",
            "kgc_0F0F0F0F0F0F0F0F",
            "kgc_0f0f0f0f0f0f0f0f0",
        ] {
            assert_eq!(ClientId::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn client_secrets_are_long_and_redacted_in_debug() {
        let s = secret(0x11);
        assert_eq!(s.expose_secret().len(), CLIENT_SECRET_PREFIX.len() + 64);
        assert!(s.expose_secret().starts_with("kgcs_"));
        assert_eq!(format!("{s:?}"), "ClientSecret(<redacted>)");
        assert_eq!(s.hash(), KeyHash::of(s.expose_secret().as_bytes()));
    }

    #[test]
    fn only_a_live_secret_of_an_active_client_authenticates() {
        let (old, new) = (secret(1), secret(2));
        let found = credentials(vec![
            StoredSecret {
                hash: old.hash(),
                retires_at: Some(now() + Duration::seconds(10)),
            },
            current(&new),
        ]);
        assert!(authenticate(Some(&found), &new.hash(), now()).is_ok());
        assert!(authenticate(Some(&found), &old.hash(), now()).is_ok());
        let later = now() + Duration::seconds(10);
        assert_eq!(
            authenticate(Some(&found), &old.hash(), later),
            Err(ClientAuthError::WrongSecret)
        );
        assert_eq!(
            authenticate(Some(&found), &secret(3).hash(), now()),
            Err(ClientAuthError::WrongSecret)
        );
        assert_eq!(
            authenticate(None, &new.hash(), now()),
            Err(ClientAuthError::UnknownClient)
        );
    }

    #[test]
    fn revoked_and_expired_clients_fail_after_the_secret_check() {
        let s = secret(1);
        let mut found = credentials(vec![current(&s)]);
        let after_expiry = now() + Duration::days(1);
        assert_eq!(
            authenticate(Some(&found), &s.hash(), after_expiry),
            Err(ClientAuthError::Expired)
        );
        found.client.revoked_at = Some(now());
        assert_eq!(
            authenticate(Some(&found), &s.hash(), now()),
            Err(ClientAuthError::Revoked)
        );
        // Without the secret, a revoked client looks like any wrong guess.
        assert_eq!(
            authenticate(Some(&found), &secret(9).hash(), now()),
            Err(ClientAuthError::WrongSecret)
        );
        assert!(ClientAuthError::WrongSecret.is_guess());
        assert!(!ClientAuthError::Revoked.is_guess());
    }
}
