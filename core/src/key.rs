//! The API key format, shared by the key service (which mints keys) and the filter (which checks
//! them before spending a callout).
//!
//! A key reads `kg_<40 hex: 160 random bits><8 hex: checksum>`. The checksum is the first four
//! bytes of SHA-256 over `kg_<40 hex>`: it lets the filter turn away typos and junk with no
//! callout, and lets secret scanners recognise a leaked key. The checksum is not a secret and adds
//! no strength; the 160 random bits do.
//!
//! Keys are stored and looked up only as [`KeyHash`], the SHA-256 of the whole key string.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix every keygate API key starts with. It also tells a key apart from a JWT in an
/// `Authorization: Bearer` header.
pub const KEY_PREFIX: &str = "kg_";
/// Bytes of randomness in a key.
pub const KEY_RANDOM_BYTES: usize = 20;
const RANDOM_HEX_LEN: usize = KEY_RANDOM_BYTES * 2;
const CHECKSUM_HEX_LEN: usize = 8;
/// Length of a well-formed key string.
pub const KEY_LEN: usize = KEY_PREFIX.len() + RANDOM_HEX_LEN + CHECKSUM_HEX_LEN;

/// Why a string is not an API key. Carries nothing of the input, so it is safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("API key does not start with `kg_`")]
    Prefix,
    #[error("API key has the wrong length")]
    Length,
    #[error("API key has a character that is not lowercase hex")]
    Charset,
    #[error("API key checksum does not match")]
    Checksum,
}

/// A well-formed API key. The secret itself is never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Checks prefix, length, alphabet and checksum. Cheap: one SHA-256 over 43 bytes.
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        UncheckedKey::parse(s)?.check()
    }

    /// Builds a key from fresh random bytes. The caller supplies the randomness (the key service
    /// uses the OS CSPRNG) so this crate stays free of I/O.
    pub fn from_random(random: [u8; KEY_RANDOM_BYTES]) -> Self {
        let mut stem = String::with_capacity(KEY_LEN);
        stem.push_str(KEY_PREFIX);
        push_hex(&mut stem, &random);
        let checksum = checksum_hex(&stem);
        stem.push_str(&checksum);
        Self(stem)
    }

    /// The key as the client sends it. Handle with care: this is the secret.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the key: the only form in which a key is stored or leaves the edge.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0.as_bytes())
    }
}

/// A string of a key's shape (prefix, length, alphabet) whose checksum is not checked yet.
///
/// The filter checks the checksum only when the key's hash is not in its cache: every cached
/// hash came from a key that passed the check before its lookup, so a cache hit needs no second
/// SHA-256, and a key that fails the check is still turned away before any callout.
#[derive(Clone, PartialEq, Eq)]
pub struct UncheckedKey(String);

impl UncheckedKey {
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        let body = s.strip_prefix(KEY_PREFIX).ok_or(KeyFormatError::Prefix)?;
        if s.len() != KEY_LEN {
            return Err(KeyFormatError::Length);
        }
        if !body.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(KeyFormatError::Charset);
        }
        Ok(Self(s.to_owned()))
    }

    /// The SHA-256 of the key, as [`ApiKey::hash`].
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0.as_bytes())
    }

    /// The key, once its checksum matches.
    pub fn check(self) -> Result<ApiKey, KeyFormatError> {
        let (stem, checksum) = self.0.split_at(KEY_PREFIX.len() + RANDOM_HEX_LEN);
        if checksum_hex(stem) != checksum {
            return Err(KeyFormatError::Checksum);
        }
        Ok(ApiKey(self.0))
    }
}

impl From<ApiKey> for UncheckedKey {
    fn from(key: ApiKey) -> Self {
        Self(key.0)
    }
}

impl fmt::Debug for UncheckedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UncheckedKey(<redacted>)")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// True when `s` claims to be a keygate key (has the prefix), well-formed or not. Used to route an
/// `Authorization: Bearer` value to the key path rather than the JWT path.
pub fn looks_like_api_key(s: &str) -> bool {
    s.starts_with(KEY_PREFIX)
}

fn checksum_hex(stem: &str) -> String {
    let digest = Sha256::digest(stem.as_bytes());
    let mut out = String::with_capacity(CHECKSUM_HEX_LEN);
    push_hex(&mut out, &digest[..CHECKSUM_HEX_LEN / 2]);
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

/// SHA-256 of a secret (an API key, a client secret, a token), as 32 raw bytes. Serialised as 64
/// lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        push_hex(&mut out, &self.0);
        out
    }

    /// The first 8 hex characters: enough to correlate log lines, far too little to find the key.
    pub fn short(&self) -> String {
        let mut out = String::with_capacity(8);
        push_hex(&mut out, &self.0[..4]);
        out
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0])?;
            let lo = hex_value(pair[1])?;
            out[i] = (hi << 4) | lo;
        }
        Some(Self(out))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", self.short())
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for KeyHash {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some("SHA-256 of a secret, as 64 lowercase hex characters"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for KeyHash {}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANDOM: [u8; KEY_RANDOM_BYTES] = [7; KEY_RANDOM_BYTES];

    #[test]
    fn minted_key_parses_back() {
        let key = ApiKey::from_random(RANDOM);
        assert_eq!(key.expose_secret().len(), KEY_LEN);
        assert_eq!(ApiKey::parse(key.expose_secret()), Ok(key));
    }

    #[test]
    fn one_changed_character_fails_the_checksum() {
        let key = ApiKey::from_random(RANDOM);
        let mut s = key.expose_secret().to_owned();
        s.replace_range(5..6, if &s[5..6] == "0" { "1" } else { "0" });
        assert_eq!(ApiKey::parse(&s), Err(KeyFormatError::Checksum));
    }

    #[test]
    fn malformed_keys_are_told_apart() {
        assert_eq!(ApiKey::parse("sk_abc"), Err(KeyFormatError::Prefix));
        assert_eq!(ApiKey::parse("kg_abc"), Err(KeyFormatError::Length));
        let upper = ApiKey::from_random(RANDOM)
            .expose_secret()
            .to_uppercase()
            .replace("KG_", "kg_");
        assert_eq!(ApiKey::parse(&upper), Err(KeyFormatError::Charset));
        assert_eq!(ApiKey::parse(""), Err(KeyFormatError::Prefix));
        // Multi-byte input of the right byte length must not split a char boundary.
        let odd = format!("kg_{}", "é".repeat((KEY_LEN - 3) / 2));
        assert!(ApiKey::parse(&odd).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKey::from_random(RANDOM);
        assert!(!format!("{key:?}").contains(&key.expose_secret()[3..]));
    }

    #[test]
    fn key_hash_round_trips_through_hex_and_json() {
        let h = ApiKey::from_random(RANDOM).hash();
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        let json = serde_json::to_string(&h).unwrap_or_default();
        assert_eq!(serde_json::from_str::<KeyHash>(&json).ok(), Some(h));
        assert!(serde_json::from_str::<KeyHash>("\"zz\"").is_err());
    }
}
