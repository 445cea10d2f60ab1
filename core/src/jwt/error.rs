//! Why a token was refused.

/// Why a token was refused. `Display` never includes the token or any value taken from it (claim
/// names in messages come from the configuration), so errors are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is longer than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token is unsigned (`alg: none`)")]
    AlgNone,
    #[error("token algorithm is not supported")]
    UnsupportedAlgorithm,
    #[error("token header has `crit` parameters, and keygate understands none")]
    Crit,
    #[error("no key has the token's `kid`")]
    UnknownKid,
    #[error("no key fits the token's algorithm")]
    NoMatchingKey,
    #[error("more than one key fits the token, and no `kid` tells them apart")]
    AmbiguousKey,
    #[error("the key named by `kid` is pinned to a different algorithm")]
    AlgorithmMismatch,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("token was issued in the future (`iat`)")]
    IssuedInFuture,
    #[error("token issuer is not the provider's")]
    WrongIssuer,
    #[error("token audience is not one we accept")]
    WrongAudience,
    #[error("token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("token claim `{0}` has the wrong type or value")]
    InvalidClaim(String),
}

impl JwtError {
    /// Every value [`JwtError::reason`] can return, to declare metrics up front.
    pub const REASONS: [&'static str; 17] = [
        "too_large",
        "malformed",
        "alg_none",
        "unsupported_alg",
        "crit",
        "unknown_kid",
        "no_matching_key",
        "ambiguous_key",
        "alg_mismatch",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "issued_in_future",
        "wrong_issuer",
        "wrong_audience",
        "missing_claim",
        "invalid_claim",
    ];

    /// A short, stable code for metrics and the `x-keygate-reason` style of log field.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::AlgNone => "alg_none",
            Self::UnsupportedAlgorithm => "unsupported_alg",
            Self::Crit => "crit",
            Self::UnknownKid => "unknown_kid",
            Self::NoMatchingKey => "no_matching_key",
            Self::AmbiguousKey => "ambiguous_key",
            Self::AlgorithmMismatch => "alg_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
        }
    }
}
