//! The one shape of every credential the service issues: API keys (checked by the filter), OAuth
//! clients (at the token endpoint) and tenant admins (on the admin API). Each is a
//! [`Credential`] named by its own id type ([`crate::keys::KeyId`], [`crate::clients::ClientId`],
//! [`TenantAdminId`]), holds secrets stored only as their SHA-256, has a tenant, direct
//! permissions and roles, an expiry, and a revocation that is final. What differs between the
//! kinds is only which [`Kind`] they are: the store keeps each kind in its own tables, and the
//! HTTP layer serves each under its own path, through the same code.
//!
//! Pure: the time is always an argument.

use std::fmt;

use keygate_core::key::{ApiKey, KeyHash};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::keys::{KeyStatus, Name, Permission, Tenant};
use crate::roles::RoleName;

/// Which kind of credential a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Key,
    Client,
    TenantAdmin,
}

impl Kind {
    /// For messages: "key", "client", "tenant admin".
    pub fn noun(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Client => "client",
            Self::TenantAdmin => "tenant admin",
        }
    }

    /// For machines (audit `target_type`, role holders' `type`): `key`, `client`,
    /// `tenant_admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Client => "client",
            Self::TenantAdmin => "tenant_admin",
        }
    }

    /// Whether the filter caches lookup answers for this kind's secrets: only then does a change
    /// go to the revocation feed.
    pub fn is_cached_at_the_edge(self) -> bool {
        self == Self::Key
    }

    /// The visible start of every secret of this kind.
    pub fn secret_prefix(self) -> &'static str {
        match self {
            Self::Key => keygate_core::key::KEY_PREFIX,
            Self::Client => "kgcs_",
            Self::TenantAdmin => "kgta_",
        }
    }

    /// Parses the id of any kind, telling the kind by its prefix.
    pub fn of_id(id: &str) -> Option<Self> {
        if crate::keys::KeyId::parse(id).is_some() {
            Some(Self::Key)
        } else if crate::clients::ClientId::parse(id).is_some() {
            Some(Self::Client)
        } else if TenantAdminId::parse(id).is_some() {
            Some(Self::TenantAdmin)
        } else {
            None
        }
    }
}

/// The id type of one [`Kind`]: a prefix and 16 lowercase hex characters. Not a secret; safe to
/// log.
pub trait CredentialId:
    Clone + fmt::Debug + fmt::Display + PartialEq + Send + Sync + 'static
{
    const KIND: Kind;
    fn parse(s: &str) -> Option<Self>;
    fn from_random(random: [u8; ID_RANDOM_BYTES]) -> Self;
    fn as_str(&self) -> &str;
}

/// Random bytes in every credential id.
pub const ID_RANDOM_BYTES: usize = 8;

/// Declares a credential id type: `prefix` and [`ID_RANDOM_BYTES`] bytes in lowercase hex.
macro_rules! credential_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $crate::credentials::CredentialId for $name {
            const KIND: $crate::credentials::Kind = $kind;

            fn parse(s: &str) -> Option<Self> {
                $crate::credentials::parse_id(s, $prefix).map(Self)
            }

            fn from_random(random: [u8; $crate::credentials::ID_RANDOM_BYTES]) -> Self {
                Self($crate::credentials::format_id($prefix, &random))
            }

            fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl $name {
            pub fn parse(s: &str) -> Option<Self> {
                <Self as $crate::credentials::CredentialId>::parse(s)
            }

            pub fn from_random(random: [u8; $crate::credentials::ID_RANDOM_BYTES]) -> Self {
                <Self as $crate::credentials::CredentialId>::from_random(random)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use credential_id;

pub(crate) fn parse_id(s: &str, prefix: &str) -> Option<String> {
    let hex = s.strip_prefix(prefix)?;
    let well_formed = hex.len() == ID_RANDOM_BYTES * 2 && is_lower_hex(hex);
    well_formed.then(|| s.to_owned())
}

pub(crate) fn format_id(prefix: &str, random: &[u8]) -> String {
    format!("{prefix}{}", hex(random))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

credential_id!(
    /// A tenant admin id: `kta_` and 16 lowercase hex characters.
    TenantAdminId,
    "kta_",
    Kind::TenantAdmin
);

/// A role a credential holds, with the permissions the role had when the credential was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRole {
    pub name: RoleName,
    pub permissions: Vec<Permission>,
}

/// What a credential grants, and when. The same record for every [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential<I> {
    pub id: I,
    pub name: Name,
    pub tenant: Tenant,
    /// Granted directly.
    pub permissions: Vec<Permission>,
    /// Granted through roles of the same tenant, by name order.
    pub roles: Vec<HeldRole>,
    /// The visible start of the current secret (`kg_3f9a…`), to tell secrets apart in a list.
    pub secret_hint: Option<String>,
    pub created_at: OffsetDateTime,
    /// `None`: never expires.
    pub expires_at: Option<OffsetDateTime>,
    /// Once set, never cleared: revocation is final.
    pub revoked_at: Option<OffsetDateTime>,
    /// The last request the filter reported for it (API keys only).
    pub last_used_at: Option<OffsetDateTime>,
}

impl<I> Credential<I> {
    pub fn status(&self, now: OffsetDateTime) -> KeyStatus {
        KeyStatus::at(self.revoked_at, self.expires_at, now)
    }

    /// The direct permissions, then each role's in role order, without repeats: what a lookup,
    /// an access token or a tenant admin's own rights amount to.
    pub fn effective_permissions(&self) -> Vec<Permission> {
        effective(
            &self.permissions,
            self.roles.iter().map(|r| r.permissions.as_slice()),
        )
    }
}

/// The union of `direct` and every set in `through_roles`, first-seen order.
pub fn effective<'a>(
    direct: &[Permission],
    through_roles: impl IntoIterator<Item = &'a [Permission]>,
) -> Vec<Permission> {
    let mut out = direct.to_vec();
    for set in through_roles {
        for p in set {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
    }
    out
}

/// A freshly issued secret of some kind, shown once. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedSecret(String);

/// Random bytes in a client or tenant admin secret (256 bits).
pub const SECRET_RANDOM_BYTES: usize = 32;
/// Characters of the secret after its prefix that [`IssuedSecret::hint`] shows: 16 bits of
/// 160 or 256, enough to tell a list's secrets apart, too few to matter to a guesser.
const HINT_CHARS: usize = 4;

impl IssuedSecret {
    /// An API key (the filter's format, with its checksum).
    pub fn api_key(key: &ApiKey) -> Self {
        Self(key.expose_secret().to_owned())
    }

    /// A client or tenant admin secret: the kind's prefix and 64 lowercase hex characters.
    pub fn prefixed(kind: Kind, random: [u8; SECRET_RANDOM_BYTES]) -> Self {
        Self(format!("{}{}", kind.secret_prefix(), hex(&random)))
    }

    /// The secret itself. Handle with care.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0.as_bytes())
    }

    /// The prefix and the first few characters after it, then `…`.
    pub fn hint(&self, kind: Kind) -> String {
        let prefix = kind.secret_prefix();
        let shown: String = self
            .0
            .get(prefix.len()..)
            .unwrap_or_default()
            .chars()
            .take(HINT_CHARS)
            .collect();
        format!("{prefix}{shown}…")
    }
}

impl fmt::Debug for IssuedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IssuedSecret(<redacted>)")
    }
}

/// One stored secret of a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub hash: KeyHash,
    /// `None` for the current secret; the end of the grace period for a rotated-out one.
    pub retires_at: Option<OffsetDateTime>,
}

/// A credential with every secret it has had (current and retiring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithSecrets<I> {
    pub credential: Credential<I>,
    pub secrets: Vec<StoredSecret>,
}

/// A credential found by the hash of one of its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMatch<I> {
    pub credential: Credential<I>,
    /// `None` for the current secret; the end of the grace period for a rotated-out one.
    pub retires_at: Option<OffsetDateTime>,
}

impl<I> SecretMatch<I> {
    /// The earlier of the credential's expiry and the secret's retirement.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        match (self.credential.expires_at, self.retires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the secret is usable at `now`: the credential is active and the secret has not
    /// retired.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.credential.status(now) == KeyStatus::Active
            && self.retires_at.is_none_or(|at| at > now)
    }
}

/// Why a presented secret does not authenticate. The distinction is for logs and for the
/// failure limiter (only a wrong secret or an unknown id counts as a guess); callers answer all
/// of them alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretCheckError {
    #[error("unknown credential")]
    Unknown,
    #[error("wrong secret")]
    WrongSecret,
    #[error("revoked")]
    Revoked,
    #[error("expired")]
    Expired,
}

impl SecretCheckError {
    /// True for failures that could be someone guessing secrets.
    pub fn is_guess(self) -> bool {
        matches!(self, Self::Unknown | Self::WrongSecret)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown_client",
            Self::WrongSecret => "wrong_secret",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// Checks `presented` (the SHA-256 of the secret the caller sent) against the credential's
/// secrets that have not retired by `now`.
///
/// Every stored secret is compared, each in constant time, and an unknown credential is compared
/// against a dummy, so the time taken says nothing about how close a guess was. The secret is
/// checked before the status: a caller without the secret does not learn that a credential
/// exists or is revoked.
pub fn authenticate<'a, I>(
    found: Option<&'a WithSecrets<I>>,
    presented: &KeyHash,
    now: OffsetDateTime,
) -> Result<&'a Credential<I>, SecretCheckError> {
    let Some(found) = found else {
        let dummy = KeyHash::from_bytes([0; 32]);
        let _ = bool::from(presented.as_bytes().ct_eq(dummy.as_bytes()));
        return Err(SecretCheckError::Unknown);
    };
    let mut matched = subtle::Choice::from(0);
    for secret in &found.secrets {
        let live = secret.retires_at.is_none_or(|at| at > now);
        matched |= presented.as_bytes().ct_eq(secret.hash.as_bytes())
            & subtle::Choice::from(u8::from(live));
    }
    if !bool::from(matched) {
        return Err(SecretCheckError::WrongSecret);
    }
    match found.credential.status(now) {
        KeyStatus::Active => Ok(&found.credential),
        KeyStatus::Revoked => Err(SecretCheckError::Revoked),
        KeyStatus::Expired => Err(SecretCheckError::Expired),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::clients::ClientId;
    use crate::keys::{parse_permissions, KeyId};

    /// 2026-11-22T10:00:00Z
    const NOW_UNIX: i64 = 1_795_341_600;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW_UNIX).unwrap()
    }

    fn permissions(names: &[&str]) -> Vec<Permission> {
        parse_permissions(names.iter().map(|s| (*s).to_owned()).collect()).unwrap()
    }

    fn secret(byte: u8) -> IssuedSecret {
        IssuedSecret::prefixed(Kind::Client, [byte; SECRET_RANDOM_BYTES])
    }

    fn credential() -> Credential<ClientId> {
        Credential {
            id: ClientId::from_random([0xab; ID_RANDOM_BYTES]),
            name: Name::parse("billing".into()).unwrap(),
            tenant: Tenant::parse("acme".into()).unwrap(),
            permissions: permissions(&["orders:read"]),
            roles: vec![],
            secret_hint: None,
            created_at: now(),
            expires_at: Some(now() + Duration::days(1)),
            revoked_at: None,
            last_used_at: None,
        }
    }

    fn with(secrets: Vec<StoredSecret>) -> WithSecrets<ClientId> {
        WithSecrets {
            credential: credential(),
            secrets,
        }
    }

    fn current(s: &IssuedSecret) -> StoredSecret {
        StoredSecret {
            hash: s.hash(),
            retires_at: None,
        }
    }

    #[test]
    fn ids_of_each_kind_round_trip_tell_their_kind_and_reject_junk() {
        let key = KeyId::from_random([0x0f; ID_RANDOM_BYTES]);
        let client = ClientId::from_random([0x0f; ID_RANDOM_BYTES]);
        let admin = TenantAdminId::from_random([0x0f; ID_RANDOM_BYTES]);
        assert_eq!(key.as_str(), "key_0f0f0f0f0f0f0f0f");
        assert_eq!(client.as_str(), "kgc_0f0f0f0f0f0f0f0f");
        assert_eq!(admin.as_str(), "kta_0f0f0f0f0f0f0f0f");
        assert_eq!(Kind::of_id(key.as_str()), Some(Kind::Key));
        assert_eq!(Kind::of_id(client.as_str()), Some(Kind::Client));
        assert_eq!(Kind::of_id(admin.as_str()), Some(Kind::TenantAdmin));
        for junk in [
            "",
            "kta_",
            "key_0f0f0f0f0f0f0f0f",
            "kta_0F0F0F0F0F0F0F0F",
            "kta_0f0f0f0f0f0f0f0f0",
        ] {
            assert_eq!(TenantAdminId::parse(junk), None, "{junk}");
        }
        assert_eq!(Kind::of_id("rol_0f0f0f0f0f0f0f0f"), None);
    }

    #[test]
    fn secrets_are_prefixed_hinted_and_redacted_in_debug() {
        let s = IssuedSecret::prefixed(Kind::TenantAdmin, [0x11; SECRET_RANDOM_BYTES]);
        assert_eq!(s.expose_secret().len(), "kgta_".len() + 64);
        assert!(s.expose_secret().starts_with("kgta_1111"));
        assert_eq!(s.hint(Kind::TenantAdmin), "kgta_1111…");
        assert_eq!(format!("{s:?}"), "IssuedSecret(<redacted>)");
        assert_eq!(s.hash(), KeyHash::of(s.expose_secret().as_bytes()));
        let key = ApiKey::from_random([0xab; keygate_core::key::KEY_RANDOM_BYTES]);
        assert_eq!(IssuedSecret::api_key(&key).hint(Kind::Key), "kg_abab…");
    }

    #[test]
    fn effective_permissions_are_the_union_in_first_seen_order() {
        let mut c = credential();
        c.roles = vec![
            HeldRole {
                name: RoleName::parse("a".into()).unwrap(),
                permissions: permissions(&["orders:write", "orders:read"]),
            },
            HeldRole {
                name: RoleName::parse("b".into()).unwrap(),
                permissions: permissions(&["audit"]),
            },
        ];
        let names: Vec<String> = c
            .effective_permissions()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        assert_eq!(names, ["orders:read", "orders:write", "audit"]);
    }

    #[test]
    fn only_a_live_secret_of_an_active_credential_authenticates() {
        let (old, new) = (secret(1), secret(2));
        let found = with(vec![
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
            Err(SecretCheckError::WrongSecret)
        );
        assert_eq!(
            authenticate(Some(&found), &secret(3).hash(), now()),
            Err(SecretCheckError::WrongSecret)
        );
        assert_eq!(
            authenticate::<ClientId>(None, &new.hash(), now()),
            Err(SecretCheckError::Unknown)
        );
    }

    #[test]
    fn revoked_and_expired_credentials_fail_after_the_secret_check() {
        let s = secret(1);
        let mut found = with(vec![current(&s)]);
        let after_expiry = now() + Duration::days(1);
        assert_eq!(
            authenticate(Some(&found), &s.hash(), after_expiry),
            Err(SecretCheckError::Expired)
        );
        found.credential.revoked_at = Some(now());
        assert_eq!(
            authenticate(Some(&found), &s.hash(), now()),
            Err(SecretCheckError::Revoked)
        );
        // Without the secret, a revoked credential looks like any wrong guess.
        assert_eq!(
            authenticate(Some(&found), &secret(9).hash(), now()),
            Err(SecretCheckError::WrongSecret)
        );
        assert!(SecretCheckError::WrongSecret.is_guess());
        assert!(!SecretCheckError::Revoked.is_guess());
    }

    #[test]
    fn a_match_is_live_until_the_earlier_of_expiry_and_retirement() {
        let found = SecretMatch {
            credential: credential(),
            retires_at: Some(now() + Duration::seconds(5)),
        };
        assert_eq!(found.expires_at(), Some(now() + Duration::seconds(5)));
        assert!(found.is_live(now()));
        assert!(!found.is_live(now() + Duration::seconds(5)));
    }
}
