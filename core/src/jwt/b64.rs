//! base64url decoding for JWS parts (RFC 7515 section 2: no padding, URL-safe alphabet).
//!
//! Token parts are decoded strictly so that one token has exactly one spelling: no `=`, no `+` or
//! `/`, no whitespace, and the unused trailing bits of the last symbol must be zero. Key material in
//! a JWKS tolerates `=` padding, since it comes from the issuer, not the client.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

const TOKEN: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

const JWK: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes one part of a compact JWS, rejecting every non-canonical spelling.
pub(crate) fn decode_token_part(part: &str) -> Result<Vec<u8>, base64::DecodeError> {
    TOKEN.decode(part)
}

/// Decodes a base64url member of a JWK (`n`, `e`, `x`, `y`, `k`); padding is tolerated.
pub(crate) fn decode_jwk_member(value: &str) -> Result<Vec<u8>, base64::DecodeError> {
    JWK.decode(value)
}

/// True for the 64 symbols of the base64url alphabet.
pub(crate) fn is_url_safe_symbol(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_unpadded_base64url_decodes() {
        assert_eq!(decode_token_part("eyJhIjoxfQ").unwrap(), br#"{"a":1}"#);
        assert_eq!(decode_token_part("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode_token_part("").unwrap(), b"");
    }

    #[test]
    fn token_part_with_padding_is_rejected() {
        assert!(decode_token_part("eyJhIjoxfQ==").is_err());
    }

    #[test]
    fn token_part_with_standard_alphabet_symbols_is_rejected() {
        assert!(decode_token_part("+_8").is_err());
        assert!(decode_token_part("-/8").is_err());
    }

    #[test]
    fn token_part_with_whitespace_is_rejected() {
        for part in ["eyJh IjoxfQ", "eyJhIjoxfQ\n", " eyJhIjoxfQ", "eyJh\tIjoxfQ"] {
            assert!(decode_token_part(part).is_err(), "{part:?}");
        }
    }

    #[test]
    fn token_part_with_nonzero_trailing_bits_is_rejected() {
        // "-_8" is canonical for [0xfb, 0xff]; "-_9" carries a stray low bit in its last symbol.
        assert!(decode_token_part("-_9").is_err());
    }

    #[test]
    fn token_part_of_impossible_length_is_rejected() {
        assert!(decode_token_part("eyJhI").is_err());
    }

    #[test]
    fn jwk_member_may_be_padded_but_not_use_the_standard_alphabet() {
        assert_eq!(decode_jwk_member("AQAB").unwrap(), [1, 0, 1]);
        assert_eq!(decode_jwk_member("-_8=").unwrap(), [0xfb, 0xff]);
        assert!(decode_jwk_member("+/8=").is_err());
    }
}
