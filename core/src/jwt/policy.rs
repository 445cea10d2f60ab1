//! What one identity provider's tokens must say to be accepted, and where their claims live.

/// Default tolerance for clocks that disagree, applied to `exp`, `nbf` and `iat`.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 60;
/// Default cap on the length of a compact token.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Default claim holding the subject.
pub const DEFAULT_SUBJECT_CLAIM: &str = "sub";

/// A claim that carries permissions. Several may be configured; their values are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionsClaim {
    /// A JSON array of strings, such as Auth0's `permissions` or Azure AD's `roles`.
    Array(String),
    /// One string of space-separated values, such as OAuth 2.0's `scope` (RFC 8693 section 4.2).
    SpaceSeparated(String),
}

/// Why a provider policy cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("provider name is empty")]
    EmptyName,
    #[error("issuer is empty")]
    EmptyIssuer,
    #[error("no audience is accepted: list at least one")]
    NoAudiences,
    #[error("an accepted audience is empty")]
    EmptyAudience,
}

/// How tokens from one provider are checked. Built once, at configuration time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPolicy {
    name: String,
    issuer: String,
    /// Never empty: a token must be meant for us.
    audiences: Vec<String>,
    subject_claim: String,
    tenant_claim: Option<String>,
    permissions_claims: Vec<PermissionsClaim>,
    clock_skew_secs: u64,
    max_token_bytes: usize,
}

impl ProviderPolicy {
    /// A policy that accepts tokens whose `iss` is `issuer` and whose `aud` names at least one of
    /// `audiences`. Subject from `sub`, no tenant, no permissions, 60 s skew, 8 KiB tokens; change
    /// them with the `with_*` methods.
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        audiences: Vec<String>,
    ) -> Result<Self, PolicyError> {
        let name = name.into();
        let issuer = issuer.into();
        if name.is_empty() {
            return Err(PolicyError::EmptyName);
        }
        if issuer.is_empty() {
            return Err(PolicyError::EmptyIssuer);
        }
        if audiences.is_empty() {
            return Err(PolicyError::NoAudiences);
        }
        if audiences.iter().any(String::is_empty) {
            return Err(PolicyError::EmptyAudience);
        }
        Ok(Self {
            name,
            issuer,
            audiences,
            subject_claim: DEFAULT_SUBJECT_CLAIM.to_owned(),
            tenant_claim: None,
            permissions_claims: Vec::new(),
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        })
    }

    /// Reads the subject from `claim` instead of `sub`.
    pub fn with_subject_claim(mut self, claim: impl Into<String>) -> Self {
        self.subject_claim = claim.into();
        self
    }

    /// Reads the tenant from `claim` (a string; absent means no tenant).
    pub fn with_tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.tenant_claim = Some(claim.into());
        self
    }

    /// Adds a claim to read permissions from.
    pub fn with_permissions_claim(mut self, claim: PermissionsClaim) -> Self {
        self.permissions_claims.push(claim);
        self
    }

    pub fn with_clock_skew_secs(mut self, secs: u64) -> Self {
        self.clock_skew_secs = secs;
        self
    }

    pub fn with_max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// The provider's name in the configuration, reported in [`super::VerifiedToken::provider`].
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    pub fn subject_claim(&self) -> &str {
        &self.subject_claim
    }

    pub fn tenant_claim(&self) -> Option<&str> {
        self.tenant_claim.as_deref()
    }

    pub fn permissions_claims(&self) -> &[PermissionsClaim] {
        &self.permissions_claims
    }

    pub fn clock_skew_secs(&self) -> u64 {
        self.clock_skew_secs
    }

    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn auds(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn policy_needs_a_name_an_issuer_and_a_non_empty_audience() {
        let iss = "https://idp.example";
        assert_eq!(
            ProviderPolicy::new("", iss, auds(&["api"])),
            Err(PolicyError::EmptyName)
        );
        assert_eq!(
            ProviderPolicy::new("idp", "", auds(&["api"])),
            Err(PolicyError::EmptyIssuer)
        );
        assert_eq!(
            ProviderPolicy::new("idp", iss, auds(&[])),
            Err(PolicyError::NoAudiences)
        );
        assert_eq!(
            ProviderPolicy::new("idp", iss, auds(&["api", ""])),
            Err(PolicyError::EmptyAudience)
        );
    }

    #[test]
    fn new_policy_has_the_documented_defaults() {
        let policy = ProviderPolicy::new("idp", "https://idp.example", auds(&["api"])).unwrap();
        assert_eq!(policy.subject_claim(), "sub");
        assert_eq!(policy.tenant_claim(), None);
        assert!(policy.permissions_claims().is_empty());
        assert_eq!(policy.clock_skew_secs(), 60);
        assert_eq!(policy.max_token_bytes(), 8192);
    }
}
