//! The OAuth 2.0 client (client credentials, RFC 6749 section 4.4): a [`Credential`] whose
//! secrets authenticate at the token endpoint. A client is to the token endpoint what an API key
//! is to the filter, and follows the same rules (see [`crate::credentials`]): a client secret
//! (`kgcs_` and 64 hex characters) is stored only as its SHA-256, and rotation keeps the old
//! secret valid for a grace period.

use crate::credentials::{credential_id, Credential, Kind};

credential_id!(
    /// A client id: `kgc_` and 16 lowercase hex characters. Not a secret; safe to log.
    ClientId,
    "kgc_",
    Kind::Client
);

/// What an OAuth client may ask tokens for, and until when. Its effective permissions are the
/// most a token can carry; a token request can only narrow them.
pub type Client = Credential<ClientId>;
