//! [`Permission`]: a permission name such as `orders:read`, defined once for the filter's route
//! rules and the key service's keys and clients.
//!
//! One rule: 1 to [`MAX_PERMISSION_LEN`] bytes from `A-Z a-z 0-9 : . _ * -`. No commas or
//! spaces, because permissions travel upstream in one comma-separated header and in the
//! space-separated OAuth `scope`; nothing outside visible ASCII, so a permission reads the same in
//! a header, a log line and a JWT claim.

use std::fmt;

/// Longest permission accepted, in bytes. The key service has always capped what it stores here;
/// a route rule may not demand one no key could hold.
pub const MAX_PERMISSION_LEN: usize = 128;

/// Why a permission string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_PERMISSION_LEN} characters")]
    TooLong,
    #[error("{0:?} may only contain A-Z a-z 0-9 and `:._*-`")]
    Charset(String),
}

/// A permission, such as `orders:read`: see the module docs for the rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(String);

impl Permission {
    pub fn parse(s: &str) -> Result<Self, PermissionError> {
        if s.is_empty() {
            return Err(PermissionError::Empty);
        }
        if s.len() > MAX_PERMISSION_LEN {
            return Err(PermissionError::TooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'*' | b'-'))
        {
            return Err(PermissionError::Charset(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A string of 1 to [`MAX_PERMISSION_LEN`] characters from `A-Z a-z 0-9 : . _ * -`, as
/// [`Permission::parse`] checks.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Permission {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_PERMISSION_LEN))
            .pattern(Some("^[A-Za-z0-9:._*-]+$"))
            .examples(["orders:read"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Permission {}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn permissions_from_the_alphabet_up_to_the_length_cap_are_accepted() {
        for ok in ["orders:read", "orders:*", "a.b_c-d", "X"] {
            assert_eq!(Permission::parse(ok).unwrap().as_str(), ok);
        }
        let longest = "p".repeat(MAX_PERMISSION_LEN);
        assert!(Permission::parse(&longest).is_ok());
    }

    #[test]
    fn empty_long_and_off_alphabet_permissions_are_refused() {
        assert_eq!(Permission::parse(""), Err(PermissionError::Empty));
        assert_eq!(
            Permission::parse(&"p".repeat(MAX_PERMISSION_LEN + 1)),
            Err(PermissionError::TooLong)
        );
        for bad in ["a,b", "a b", "ordérs", "a\nb", "a/b", "a\u{200b}"] {
            assert!(
                matches!(Permission::parse(bad), Err(PermissionError::Charset(_))),
                "{bad:?}"
            );
        }
    }
}
