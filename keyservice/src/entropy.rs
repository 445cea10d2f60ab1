//! The one place that reads the operating system's CSPRNG (through `getrandom`, the source
//! `rand`'s `OsRng` uses). Credential ids and secrets (keys, clients, tenant admins), role ids,
//! token ids, signing keys and the generated admin secret all come from here.

use keygate_core::key::{ApiKey, KEY_RANDOM_BYTES};

use crate::config::Secret;
use crate::credentials::{CredentialId, IssuedSecret, Kind, ID_RANDOM_BYTES, SECRET_RANDOM_BYTES};
use crate::roles::RoleId;

/// Bytes of randomness in a generated admin secret.
const ADMIN_SECRET_RANDOM_BYTES: usize = 32;
const ADMIN_SECRET_PREFIX: &str = "kgadmin_";
/// Bytes of randomness in an access token's `jti`.
const TOKEN_ID_RANDOM_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct EntropyError(#[source] getrandom::Error);

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], EntropyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(EntropyError)?;
    Ok(bytes)
}

/// The OS CSPRNG as a `rand_core` 0.6 RNG, for RSA key generation and signature blinding, which
/// take one. It reads `getrandom` too, and panics if the OS generator fails: RSA offers no
/// fallible alternative.
pub fn rng() -> rand_core::OsRng {
    rand_core::OsRng
}

/// A fresh API key secret.
pub fn api_key() -> Result<ApiKey, EntropyError> {
    Ok(ApiKey::from_random(bytes::<KEY_RANDOM_BYTES>()?))
}

/// A fresh id of a credential kind (`key_…`, `kgc_…`, `kta_…`).
pub fn credential_id<I: CredentialId>() -> Result<I, EntropyError> {
    Ok(I::from_random(bytes::<ID_RANDOM_BYTES>()?))
}

/// A fresh secret of a credential kind: an API key (`kg_…`), a client secret (`kgcs_…`) or a
/// tenant admin secret (`kgta_…`).
pub fn secret(kind: Kind) -> Result<IssuedSecret, EntropyError> {
    Ok(match kind {
        Kind::Key => IssuedSecret::api_key(&api_key()?),
        Kind::Client | Kind::TenantAdmin => {
            IssuedSecret::prefixed(kind, bytes::<SECRET_RANDOM_BYTES>()?)
        }
    })
}

/// A fresh role id.
pub fn role_id() -> Result<RoleId, EntropyError> {
    Ok(RoleId::from_random(bytes::<ID_RANDOM_BYTES>()?))
}

/// A fresh access token id (`jti`): 32 hex characters (128 bits).
pub fn token_id() -> Result<String, EntropyError> {
    Ok(bytes::<TOKEN_ID_RANDOM_BYTES>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A fresh admin secret: `kgadmin_` and 64 hex characters (256 bits).
pub fn admin_secret() -> Result<Secret, EntropyError> {
    let mut s = String::from(ADMIN_SECRET_PREFIX);
    for b in bytes::<ADMIN_SECRET_RANDOM_BYTES>()? {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(Secret::from_generated(s))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn minted_values_are_well_formed_and_differ() {
        let (a, b) = (api_key().unwrap(), api_key().unwrap());
        assert_ne!(a, b);
        assert_eq!(ApiKey::parse(a.expose_secret()).as_ref(), Ok(&a));
        let id: crate::keys::KeyId = credential_id().unwrap();
        assert_eq!(crate::keys::KeyId::parse(id.as_str()), Some(id));
        let admin = admin_secret().unwrap();
        assert_eq!(admin.expose().len(), ADMIN_SECRET_PREFIX.len() + 64);
        let client: crate::clients::ClientId = credential_id().unwrap();
        assert_eq!(
            crate::clients::ClientId::parse(client.as_str()),
            Some(client)
        );
        for kind in [Kind::Key, Kind::Client, Kind::TenantAdmin] {
            let (a, b) = (secret(kind).unwrap(), secret(kind).unwrap());
            assert_ne!(a, b);
            assert!(a.expose_secret().starts_with(kind.secret_prefix()));
        }
        let role = role_id().unwrap();
        assert_eq!(RoleId::parse(role.as_str()), Some(role));
        let (a, b) = (token_id().unwrap(), token_id().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
