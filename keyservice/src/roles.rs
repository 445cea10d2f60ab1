//! Roles, pure: a role is a named set of permissions within one tenant (`{tenant, name,
//! description, permissions}`). Keys, clients and tenant admins hold roles as well as direct
//! permissions; what they may do is the union (see
//! [`crate::credentials::Credential::effective_permissions`]). A role is read with its holders
//! every time, so editing it changes what they may do at once (and, through the change log, at
//! the edge as soon as the filters' caches hear of it).

use std::fmt;

use time::OffsetDateTime;

use crate::credentials::{format_id, parse_id, Kind, ID_RANDOM_BYTES};
use crate::keys::{hides_text, Permission, Tenant};

const ROLE_ID_PREFIX: &str = "rol_";
/// Longest role name, in bytes.
pub const MAX_ROLE_NAME_LEN: usize = 64;
/// Longest role description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Most roles one credential may hold.
pub const MAX_ROLES: usize = 20;

/// Why a role field is not acceptable. Names the field, never echoes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error(
        "each role name must be 1 to {MAX_ROLE_NAME_LEN} characters from `A-Z a-z 0-9 : . _ -`"
    )]
    Name,
    #[error("`description` must be at most {MAX_DESCRIPTION_CHARS} characters, without control or invisible ones")]
    Description,
    #[error("a credential may hold at most {MAX_ROLES} roles")]
    TooMany,
}

/// A role id: `rol_` and 16 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleId(String);

impl RoleId {
    pub fn parse(s: &str) -> Option<Self> {
        parse_id(s, ROLE_ID_PREFIX).map(Self)
    }

    pub fn from_random(random: [u8; ID_RANDOM_BYTES]) -> Self {
        Self(format_id(ROLE_ID_PREFIX, &random))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role's name, unique within its tenant: what keys and clients name in their `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(s: String) -> Result<Self, RoleError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_ROLE_NAME_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s))
        } else {
            Err(RoleError::Name)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the role names a request grants, dropping repeats, in first-seen order.
pub fn parse_role_names(raw: Vec<String>) -> Result<Vec<RoleName>, RoleError> {
    if raw.len() > MAX_ROLES {
        return Err(RoleError::TooMany);
    }
    let mut out: Vec<RoleName> = Vec::with_capacity(raw.len());
    for s in raw {
        let name = RoleName::parse(s)?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// What a role is for, shown to admins: up to [`MAX_DESCRIPTION_CHARS`] characters, possibly
/// none, with nothing that hides or reorders text (as for names).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    pub fn parse(s: String) -> Result<Self, RoleError> {
        if s.chars().count() > MAX_DESCRIPTION_CHARS || s.chars().any(hides_text) {
            return Err(RoleError::Description);
        }
        Ok(Self(s))
    }

    /// As read back from the database.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub id: RoleId,
    pub tenant: Tenant,
    pub name: RoleName,
    pub description: Description,
    pub permissions: Vec<Permission>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A credential that holds a role: why the role cannot be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub kind: Kind,
    pub id: String,
    pub name: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn role_names_take_the_permission_alphabet_without_the_star() {
        assert!(RoleName::parse("billing.reader:v2_x-y".into()).is_ok());
        for bad in [
            "",
            "a b",
            "a,b",
            "orders:*",
            "ünï",
            &"r".repeat(MAX_ROLE_NAME_LEN + 1),
        ] {
            assert_eq!(RoleName::parse(bad.into()), Err(RoleError::Name), "{bad:?}");
        }
    }

    #[test]
    fn role_lists_drop_repeats_and_are_capped() {
        let names = parse_role_names(vec!["b".into(), "a".into(), "b".into()]).unwrap();
        let names: Vec<&str> = names.iter().map(RoleName::as_str).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(
            parse_role_names(vec!["r".into(); MAX_ROLES + 1]),
            Err(RoleError::TooMany)
        );
    }

    #[test]
    fn descriptions_may_be_empty_but_not_hide_text() {
        assert!(Description::parse(String::new()).is_ok());
        assert!(Description::parse("Reads orders – für alle".into()).is_ok());
        assert_eq!(
            Description::parse("a\u{202e}b".into()),
            Err(RoleError::Description)
        );
        assert_eq!(
            Description::parse("d".repeat(MAX_DESCRIPTION_CHARS + 1)),
            Err(RoleError::Description)
        );
    }

    #[test]
    fn role_ids_round_trip() {
        let id = RoleId::from_random([0x0f; ID_RANDOM_BYTES]);
        assert_eq!(id.as_str(), "rol_0f0f0f0f0f0f0f0f");
        assert_eq!(RoleId::parse(id.as_str()), Some(id));
        assert_eq!(RoleId::parse("key_0f0f0f0f0f0f0f0f"), None);
    }
}
