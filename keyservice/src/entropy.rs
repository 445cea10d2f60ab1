//! The one place that reads the operating system's CSPRNG (through `getrandom`, the source
//! `rand`'s `OsRng` uses). Key secrets, key ids and the generated admin secret all come from here.

use keygate_core::key::{ApiKey, KEY_RANDOM_BYTES};

use crate::config::Secret;
use crate::keys::{KeyId, KEY_ID_RANDOM_BYTES};

/// Bytes of randomness in a generated admin secret.
const ADMIN_SECRET_RANDOM_BYTES: usize = 32;
const ADMIN_SECRET_PREFIX: &str = "kgadmin_";

#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct EntropyError(#[source] getrandom::Error);

fn random<const N: usize>() -> Result<[u8; N], EntropyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(EntropyError)?;
    Ok(bytes)
}

/// A fresh API key secret.
pub fn api_key() -> Result<ApiKey, EntropyError> {
    Ok(ApiKey::from_random(random::<KEY_RANDOM_BYTES>()?))
}

/// A fresh key id.
pub fn key_id() -> Result<KeyId, EntropyError> {
    Ok(KeyId::from_random(random::<KEY_ID_RANDOM_BYTES>()?))
}

/// A fresh admin secret: `kgadmin_` and 64 hex characters (256 bits).
pub fn admin_secret() -> Result<Secret, EntropyError> {
    let mut s = String::from(ADMIN_SECRET_PREFIX);
    for b in random::<ADMIN_SECRET_RANDOM_BYTES>()? {
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
        let id = key_id().unwrap();
        assert_eq!(KeyId::parse(id.as_str()), Some(id));
        let admin = admin_secret().unwrap();
        assert_eq!(admin.expose().len(), ADMIN_SECRET_PREFIX.len() + 64);
    }
}
