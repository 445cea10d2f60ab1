//! Who is calling the admin API, and what they may do there, pure.
//!
//! - The **super-admin** holds the admin secret: everything, in every tenant.
//! - A **tenant admin** holds a `kgta_…` secret the super-admin issued
//!   ([`crate::credentials::TenantAdminId`]). It acts only in its own tenant: its lists are
//!   that tenant's, another tenant's records do not exist for it (404), and naming another tenant
//!   is refused (403). It may only hand out what it holds itself: every permission a key,
//!   client or role it creates, edits, renews or rotates would grant, directly or through roles,
//!   must be among its own effective permissions (exact names: permissions are compared as
//!   strings, `orders:*` is not a wildcard). It may revoke and delete its tenant's credentials,
//!   which only takes power away. Tenant admins, signing keys and the audit of failed sign-ins
//!   are the super-admin's alone.
//!
//! Every check answers [`Denied`], which the HTTP layer turns into 403 with the reason.

use crate::credentials::{Credential, TenantAdminId};
use crate::keys::{Permission, Tenant};

/// A tenant admin as it authenticated: its record with its roles read at this request.
pub type TenantAdmin = Credential<TenantAdminId>;

/// The caller of an admin endpoint.
#[derive(Debug, Clone)]
pub enum Actor {
    SuperAdmin,
    TenantAdmin(Box<TenantAdmin>),
}

/// The audit log's name for the super-admin.
pub const SUPER_ADMIN: &str = "admin";

/// Why an authenticated admin may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("a tenant admin acts only in its own tenant")]
    OtherTenant,
    #[error("cannot grant permissions you do not hold: {}", .0.join(", "))]
    AboveOwn(Vec<String>),
    #[error("only the super-admin (the admin secret) can do this")]
    SuperAdminOnly,
}

impl Actor {
    /// `admin`, or the tenant admin's id: the audit log's `actor`.
    pub fn id(&self) -> &str {
        match self {
            Self::SuperAdmin => SUPER_ADMIN,
            Self::TenantAdmin(admin) => admin.id.as_str(),
        }
    }

    /// The tenant it is confined to; `None` for the super-admin.
    pub fn tenant(&self) -> Option<&Tenant> {
        match self {
            Self::SuperAdmin => None,
            Self::TenantAdmin(admin) => Some(&admin.tenant),
        }
    }

    /// What it may grant; `None`: anything.
    pub fn grantable(&self) -> Option<Vec<Permission>> {
        match self {
            Self::SuperAdmin => None,
            Self::TenantAdmin(admin) => Some(admin.effective_permissions()),
        }
    }

    /// The tenant a listing covers: what was asked for (`None`: all) for the super-admin; its own
    /// for a tenant admin, which may name it but no other.
    pub fn scope(&self, requested: Option<Tenant>) -> Result<Option<Tenant>, Denied> {
        match self.tenant() {
            None => Ok(requested),
            Some(own) => match requested {
                Some(other) if &other != own => Err(Denied::OtherTenant),
                _ => Ok(Some(own.clone())),
            },
        }
    }

    /// Whether a record of `tenant` exists for it at all (if not, the HTTP layer answers 404,
    /// as for an id that exists nowhere).
    pub fn sees(&self, tenant: &Tenant) -> bool {
        self.tenant().is_none_or(|own| own == tenant)
    }

    /// Whether it may create something in `tenant`.
    pub fn acts_in(&self, tenant: &Tenant) -> Result<(), Denied> {
        if self.sees(tenant) {
            Ok(())
        } else {
            Err(Denied::OtherTenant)
        }
    }

    /// Whether it may hand out every one of `permissions`, the whole effective set of what it
    /// creates or empowers.
    pub fn may_grant(&self, permissions: &[Permission]) -> Result<(), Denied> {
        let Some(own) = self.grantable() else {
            return Ok(());
        };
        let above: Vec<String> = permissions
            .iter()
            .filter(|p| !own.contains(p))
            .map(|p| p.as_str().to_owned())
            .collect();
        if above.is_empty() {
            Ok(())
        } else {
            Err(Denied::AboveOwn(above))
        }
    }

    pub fn is_super_admin(&self) -> Result<(), Denied> {
        match self {
            Self::SuperAdmin => Ok(()),
            Self::TenantAdmin(_) => Err(Denied::SuperAdminOnly),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::credentials::HeldRole;
    use crate::keys::{parse_permissions, Name};
    use crate::roles::RoleName;

    fn permissions(names: &[&str]) -> Vec<Permission> {
        parse_permissions(names.iter().map(|s| (*s).to_owned()).collect()).unwrap()
    }

    fn tenant(s: &str) -> Tenant {
        Tenant::parse(s.into()).unwrap()
    }

    fn tenant_admin() -> Actor {
        Actor::TenantAdmin(Box::new(Credential {
            id: TenantAdminId::from_random([1; 8]),
            name: Name::parse("acme ops".into()).unwrap(),
            tenant: tenant("acme"),
            permissions: permissions(&["orders:read"]),
            roles: vec![HeldRole {
                name: RoleName::parse("writer".into()).unwrap(),
                permissions: permissions(&["orders:write"]),
            }],
            secret_hint: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        }))
    }

    #[test]
    fn the_super_admin_may_do_anything_anywhere() {
        let actor = Actor::SuperAdmin;
        assert_eq!(actor.id(), "admin");
        assert_eq!(actor.scope(None), Ok(None));
        assert_eq!(actor.scope(Some(tenant("x"))), Ok(Some(tenant("x"))));
        assert!(actor.sees(&tenant("x")));
        assert_eq!(actor.may_grant(&permissions(&["*", "admin"])), Ok(()));
        assert_eq!(actor.is_super_admin(), Ok(()));
    }

    #[test]
    fn a_tenant_admin_is_confined_to_its_tenant() {
        let actor = tenant_admin();
        assert_eq!(actor.scope(None), Ok(Some(tenant("acme"))));
        assert_eq!(actor.scope(Some(tenant("acme"))), Ok(Some(tenant("acme"))));
        assert_eq!(actor.scope(Some(tenant("evil"))), Err(Denied::OtherTenant));
        assert!(actor.sees(&tenant("acme")));
        assert!(!actor.sees(&tenant("acme2")));
        assert!(!actor.sees(&tenant("ACME")));
        assert_eq!(actor.acts_in(&tenant("evil")), Err(Denied::OtherTenant));
        assert_eq!(actor.is_super_admin(), Err(Denied::SuperAdminOnly));
    }

    #[test]
    fn a_tenant_admin_grants_only_what_it_holds_directly_or_through_roles() {
        let actor = tenant_admin();
        assert_eq!(actor.may_grant(&[]), Ok(()));
        assert_eq!(
            actor.may_grant(&permissions(&["orders:read", "orders:write"])),
            Ok(())
        );
        assert_eq!(
            actor.may_grant(&permissions(&["orders:read", "orders:*", "admin"])),
            Err(Denied::AboveOwn(vec!["orders:*".into(), "admin".into()]))
        );
    }
}
