//! What to do with a request. The filter's glue reads what the host has, calls [`plan`], and
//! carries out the result; after a cache hit or a lookup it calls [`judge`]. Nothing here does I/O.

use std::rc::Rc;

use crate::cache::{Answer, Identity, Principal};
use crate::config::{FailureMode, FilterConfig, Forwarding, IdentityHeader, Provider, Unmatched};
use crate::credential::{self, Credential, CredentialError, Strip};
use crate::hostmap::{self, Header};
use crate::jwt::{JwtError, VerifiedToken};
use crate::key::{KeyHash, UncheckedKey};
use crate::route::{normalize_path, Access, Permission};
use crate::wire::InvalidReason;

/// What the host tells us about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Every request header as the host has it, pseudo-headers (`:method`, `:path`) included.
    pub headers: &'a [Header<'a>],
    /// Envoy's route name, when the config matches on it. Read before the filter changes any
    /// header: each change clears Envoy's route cache.
    pub route_name: Option<&'a str>,
}

/// The first step for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<'c> {
    /// Answer now; nothing goes upstream.
    Deny(Denial),
    /// Public route: forward with credentials stripped and no identity.
    Forward(Strip),
    /// Protected route with a key of the right shape: find the answer for `hash` in the cache;
    /// on a miss, [`before_lookup`] then the key service; then [`judge`] it against `required`.
    CheckKey {
        key: UncheckedKey,
        hash: KeyHash,
        required: &'c [Permission],
        strip: Strip,
    },
    /// Protected route with a JWT: find it in the verified-token cache (by its
    /// [`crate::local::TokenTag`] in the worker, else by its SHA-256 in shared data), else verify
    /// it, then [`judge`] it against `required`.
    CheckJwt {
        token: String,
        required: &'c [Permission],
        strip: Strip,
    },
}

/// The final step for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward, adding the grant's identity headers.
    Allow(Rc<Grant>),
    /// Forward with no identity: the key service could not answer and `failure_mode` is `open`.
    AllowUnverified,
    Deny(Denial),
}

/// Why a request is turned away. Each reason has its own status, body and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// 400: a path the filter will not interpret (encoded slash and the like).
    BadPath,
    /// 401
    MissingCredential,
    /// 401: format or checksum wrong; no callout was made.
    MalformedKey,
    /// 401: two different credentials.
    AmbiguousCredential,
    /// 401: a bearer token that is not shaped like a JWT.
    MalformedToken,
    /// 401: a JWT that failed verification (the denial's `detail` says why).
    InvalidToken,
    /// 401
    UnknownKey,
    /// 401
    RevokedKey,
    /// 401
    ExpiredKey,
    /// 403: the key lacks a permission the route requires.
    Forbidden,
    /// 403: no route rule matches and `unmatched` is `deny`.
    NoRouteRule,
    /// 503: the key service cannot answer, or too many lookups are already in flight.
    Unavailable,
}

impl DenyReason {
    pub fn status(self) -> u32 {
        match self {
            Self::BadPath => 400,
            Self::MissingCredential
            | Self::MalformedKey
            | Self::AmbiguousCredential
            | Self::MalformedToken
            | Self::InvalidToken
            | Self::UnknownKey
            | Self::RevokedKey
            | Self::ExpiredKey => 401,
            Self::Forbidden | Self::NoRouteRule => 403,
            Self::Unavailable => 503,
        }
    }

    /// Stable snake_case name, used in bodies and metric names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadPath => "bad_path",
            Self::MissingCredential => "missing_credential",
            Self::MalformedKey => "malformed_key",
            Self::AmbiguousCredential => "ambiguous_credential",
            Self::MalformedToken => "malformed_token",
            Self::InvalidToken => "invalid_token",
            Self::UnknownKey => "unknown_key",
            Self::RevokedKey => "revoked_key",
            Self::ExpiredKey => "expired_key",
            Self::Forbidden => "insufficient_permissions",
            Self::NoRouteRule => "no_route_rule",
            Self::Unavailable => "unavailable",
        }
    }

    pub const ALL: [Self; 12] = [
        Self::BadPath,
        Self::MissingCredential,
        Self::MalformedKey,
        Self::AmbiguousCredential,
        Self::MalformedToken,
        Self::InvalidToken,
        Self::UnknownKey,
        Self::RevokedKey,
        Self::ExpiredKey,
        Self::Forbidden,
        Self::NoRouteRule,
        Self::Unavailable,
    ];
}

/// A refusal, ready to send. The body never carries the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
    /// For 403: the permissions the route required and the key lacks.
    pub missing: Vec<String>,
    /// For an invalid JWT: why, as a short code such as `expired` or `bad_signature`.
    pub detail: Option<&'static str>,
}

impl Denial {
    pub fn new(reason: DenyReason) -> Self {
        Self {
            reason,
            missing: Vec::new(),
            detail: None,
        }
    }

    pub fn status(&self) -> u32 {
        self.reason.status()
    }

    /// Response headers (RFC 6750 `WWW-Authenticate` on 401 and on a permission 403).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("content-type", "application/json".to_owned())];
        let challenge = match self.reason {
            DenyReason::MissingCredential => Some(r#"Bearer realm="keygate""#),
            DenyReason::Forbidden => Some(r#"Bearer realm="keygate", error="insufficient_scope""#),
            r if r.status() == 401 => Some(r#"Bearer realm="keygate", error="invalid_token""#),
            _ => None,
        };
        if let Some(c) = challenge {
            h.push(("www-authenticate", c.to_owned()));
        }
        if self.reason == DenyReason::Unavailable {
            h.push(("retry-after", "1".to_owned()));
        }
        h
    }

    pub fn body(&self) -> String {
        let error = match self.status() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            _ => "unavailable",
        };
        let mut body = serde_json::json!({ "error": error, "reason": self.reason.as_str() });
        if !self.missing.is_empty() {
            body["missing_permissions"] = serde_json::json!(self.missing);
        }
        if let Some(detail) = self.detail {
            body["detail"] = serde_json::json!(detail);
        }
        body.to_string()
    }
}

/// Decides the first step for a request.
pub fn plan<'c>(cfg: &'c FilterConfig, req: &RequestView<'_>) -> Plan<'c> {
    // A `:path` that is missing or not UTF-8 cannot be matched, so it cannot be let through.
    let Some(raw_path) = hostmap::text(req.headers, ":path") else {
        return Plan::Deny(Denial::new(DenyReason::BadPath));
    };
    let Ok(path) = normalize_path(raw_path) else {
        return Plan::Deny(Denial::new(DenyReason::BadPath));
    };
    // A method that is not text matches no rule that lists methods.
    let method = hostmap::text(req.headers, ":method").unwrap_or("");
    let access = match cfg.routes.lookup(method, &path, req.route_name) {
        Some(route) => route.access(),
        None if cfg.unmatched == Unmatched::Allow => &Access::Public,
        None => return Plan::Deny(Denial::new(DenyReason::NoRouteRule)),
    };
    let extracted = credential::extract(&cfg.api_keys, cfg.jwt.enabled(), req.headers, raw_path);
    let strip = if cfg.forwarding.strip_credentials {
        extracted.strip
    } else {
        Strip::default()
    };
    let required = match access {
        Access::Public => return Plan::Forward(strip),
        Access::Requires(required) => required.as_slice(),
    };
    match extracted.credential {
        Ok(Some(Credential::ApiKey(key))) => Plan::CheckKey {
            hash: key.hash(),
            key,
            required,
            strip,
        },
        Ok(None) => Plan::Deny(Denial::new(DenyReason::MissingCredential)),
        Err(CredentialError::Ambiguous) => Plan::Deny(Denial::new(DenyReason::AmbiguousCredential)),
        Err(CredentialError::MalformedKey(_)) => Plan::Deny(Denial::new(DenyReason::MalformedKey)),
        Ok(Some(Credential::Jwt(token))) => Plan::CheckJwt {
            token,
            required,
            strip,
        },
        Err(CredentialError::MalformedToken) => Plan::Deny(Denial::new(DenyReason::MalformedToken)),
    }
}

/// A credential's answer, prepared once for all the requests that carry it: the filter keeps
/// it per worker ([`crate::local::LocalCache`]) so a cache hit only checks permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Valid(Rc<Grant>),
    Invalid(InvalidReason),
}

/// What a valid credential lets through: its permissions, and the identity headers the
/// upstream gets, built once.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    /// Header names and values, made header-safe, in the order they are set.
    pub identity_headers: Vec<(String, String)>,
    /// The API key to count usage against; `None` for a JWT.
    pub key_id: Option<String>,
    /// For a JWT, the index in `jwt.providers` of the provider that issued it (its
    /// `forward_token` decides whether the token goes upstream).
    pub provider: Option<usize>,
    permissions: Vec<String>,
}

impl Grant {
    pub fn holds(&self, permission: &Permission) -> bool {
        self.permissions.iter().any(|p| p == permission.as_str())
    }
}

impl Outcome {
    pub fn prepare(cfg: &FilterConfig, answer: Answer) -> Self {
        match answer {
            Answer::Valid(identity) => Self::Valid(Rc::new(Grant {
                identity_headers: identity_headers(&cfg.forwarding, &identity),
                provider: match &identity.principal {
                    Principal::Jwt { provider, .. } => {
                        cfg.jwt.providers.iter().position(|p| p.name() == provider)
                    }
                    Principal::ApiKey { .. } => None,
                },
                key_id: match identity.principal {
                    Principal::ApiKey { key_id } => Some(key_id),
                    Principal::Jwt { .. } => None,
                },
                permissions: identity.permissions,
            })),
            Answer::Invalid(reason) => Self::Invalid(reason),
        }
    }
}

/// Before a lookup for a key the cache did not have: a key whose checksum does not match is a
/// typo or junk, turned away with no callout.
pub fn before_lookup(key: UncheckedKey) -> Option<Denial> {
    key.check()
        .err()
        .map(|_| Denial::new(DenyReason::MalformedKey))
}

/// Decides the final step once the credential's answer is known.
pub fn judge(outcome: &Outcome, required: &[Permission]) -> Verdict {
    let grant = match outcome {
        Outcome::Valid(grant) => grant,
        Outcome::Invalid(reason) => {
            return Verdict::Deny(Denial::new(match reason {
                InvalidReason::Unknown => DenyReason::UnknownKey,
                InvalidReason::Revoked => DenyReason::RevokedKey,
                InvalidReason::Expired => DenyReason::ExpiredKey,
            }))
        }
    };
    if required.iter().all(|p| grant.holds(p)) {
        return Verdict::Allow(Rc::clone(grant));
    }
    Verdict::Deny(Denial {
        reason: DenyReason::Forbidden,
        missing: required
            .iter()
            .filter(|p| !grant.holds(p))
            .map(|p| p.as_str().to_owned())
            .collect(),
        detail: None,
    })
}

/// The identity a verified token stands for.
pub fn jwt_identity(token: VerifiedToken) -> Identity {
    Identity {
        principal: Principal::Jwt {
            subject: token.subject,
            provider: token.provider,
        },
        tenant: token.tenant,
        permissions: token.permissions,
        expires_at: Some(token.expires_at),
    }
}

/// The final step for a token that failed verification: 401 `invalid_token`, with the reason.
pub fn token_rejected(error: &JwtError) -> Verdict {
    Verdict::Deny(Denial {
        reason: DenyReason::InvalidToken,
        missing: Vec::new(),
        detail: Some(error.reason()),
    })
}

/// A token whose issuer no provider has: 401 `invalid_token`, `unknown_issuer`.
pub fn unknown_issuer() -> Verdict {
    let mut d = Denial::new(DenyReason::InvalidToken);
    d.detail = Some("unknown_issuer");
    Verdict::Deny(d)
}

/// What to strip for a token found in the verified-token cache: as for the provider that issued
/// it ([`strip_for_provider`]).
pub fn strip_for_cached_token(cfg: &FilterConfig, outcome: &Outcome, strip: Strip) -> Strip {
    let provider = match outcome {
        Outcome::Valid(grant) => grant.provider.and_then(|i| cfg.jwt.providers.get(i)),
        Outcome::Invalid(_) => None,
    };
    match provider {
        Some(p) => strip_for_provider(strip, p),
        None => strip,
    }
}

/// What to strip once a token is verified: the `Authorization` header goes unless the provider
/// forwards tokens.
pub fn strip_for_provider(mut strip: Strip, provider: &Provider) -> Strip {
    if provider.forward_token {
        strip.headers.retain(|h| h != "authorization");
    }
    strip
}

/// The final step when the key service cannot answer: 503, or through without identity when the
/// operator chose `failure_mode: open`.
pub fn unavailable(cfg: &FilterConfig) -> Verdict {
    match cfg.failure_mode {
        FailureMode::Closed => Verdict::Deny(Denial::new(DenyReason::Unavailable)),
        FailureMode::Open => Verdict::AllowUnverified,
    }
}

/// Names of client-sent headers under the identity prefix: they are removed from every request,
/// so an upstream can trust any identity header it sees. `_` counts as `-` and case is ignored:
/// CGI-style upstreams (Rack, WSGI, PHP) read `x_keygate_tenant` as `X-Keygate-Tenant`.
pub fn spoofed_headers<'a>(
    cfg: &'a FilterConfig,
    headers: &'a [Header<'a>],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let prefix = cfg.forwarding.header_prefix.as_bytes();
    headers
        .iter()
        .map(|(n, _)| *n)
        .filter(move |n| spells_prefix(n, prefix))
}

/// True when `name` starts with `prefix`, reading `_` as `-` and ignoring ASCII case.
fn spells_prefix(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len()
        && name.iter().zip(prefix).all(|(&n, &p)| {
            let n = if n == b'_' { b'-' } else { n };
            n.eq_ignore_ascii_case(&p)
        })
}

/// Whether a permission can go upstream in the comma-separated permissions header. One with a
/// comma would read as two; one with bytes outside visible ASCII would arrive changed. No rule
/// can demand such a permission (see [`Permission`]), so leaving it out changes no decision.
fn fits_permissions_header(permission: &str) -> bool {
    !permission.is_empty()
        && permission
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',')
}

fn identity_headers(forwarding: &Forwarding, id: &Identity) -> Vec<(String, String)> {
    let mut h = Vec::with_capacity(forwarding.identity_headers.len());
    let mut add = |header: IdentityHeader, value: String| {
        if forwarding.sends(header) {
            h.push((
                format!("{}{}", forwarding.header_prefix, header.suffix()),
                value,
            ));
        }
    };
    match &id.principal {
        Principal::ApiKey { key_id } => {
            add(IdentityHeader::Auth, "api_key".to_owned());
            add(IdentityHeader::KeyId, header_safe(key_id));
        }
        Principal::Jwt { subject, provider } => {
            add(IdentityHeader::Auth, "jwt".to_owned());
            add(IdentityHeader::Subject, header_safe(subject));
            add(IdentityHeader::Provider, header_safe(provider));
        }
    }
    if let Some(tenant) = &id.tenant {
        add(IdentityHeader::Tenant, header_safe(tenant));
    }
    let permissions: Vec<&str> = id
        .permissions
        .iter()
        .map(String::as_str)
        .filter(|p| fits_permissions_header(p))
        .collect();
    add(IdentityHeader::Permissions, permissions.join(","));
    h
}

/// Header values must be visible ASCII or space; anything else is replaced, never passed raw.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::key::{ApiKey, KEY_RANDOM_BYTES};

    const CONFIG: &str = r#"{
        "key_service": {"cluster": "ks", "token": "t"},
        "routes": [
            {"path": "/healthz", "public": true},
            {"prefix": "/public/", "public": true},
            {"methods": ["GET"], "path": "/orders/*", "permissions": ["orders:read"]},
            {"methods": ["POST"], "path": "/orders", "permissions": ["orders:write"]},
            {"prefix": "/admin/", "permissions": ["admin", "audit"]},
            {"prefix": "/me", "permissions": []}
        ]
    }"#;

    fn config() -> FilterConfig {
        FilterConfig::from_json(CONFIG.as_bytes()).unwrap()
    }

    fn key() -> ApiKey {
        ApiKey::from_random([9; KEY_RANDOM_BYTES])
    }

    fn h<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        (name.as_bytes(), value.as_bytes())
    }

    fn plan_for<'c>(
        cfg: &'c FilterConfig,
        method: &str,
        path: &str,
        headers: &[Header<'_>],
    ) -> Plan<'c> {
        let mut all = vec![h(":method", method), h(":path", path)];
        all.extend_from_slice(headers);
        plan(
            cfg,
            &RequestView {
                headers: &all,
                route_name: None,
            },
        )
    }

    fn denied(p: &Plan<'_>) -> Option<DenyReason> {
        match p {
            Plan::Deny(d) => Some(d.reason),
            _ => None,
        }
    }

    fn identity(permissions: &[&str]) -> Answer {
        Answer::Valid(Identity {
            principal: Principal::ApiKey {
                key_id: "key_1".into(),
            },
            tenant: Some("acme".into()),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            expires_at: None,
        })
    }

    fn perms(list: &[&str]) -> Vec<Permission> {
        list.iter().map(|p| Permission::parse(p).unwrap()).collect()
    }

    #[test]
    fn public_route_forwards_without_a_credential() {
        let cfg = config();
        assert_eq!(
            plan_for(&cfg, "GET", "/healthz", &[]),
            Plan::Forward(Strip::default())
        );
    }

    #[test]
    fn public_route_still_strips_a_credential() {
        let cfg = config();
        let k = key();
        let p = plan_for(
            &cfg,
            "GET",
            "/public/x",
            &[h("x-api-key", k.expose_secret())],
        );
        assert_eq!(
            p,
            Plan::Forward(Strip {
                headers: vec!["x-api-key".into()],
                path: None
            })
        );
    }

    #[test]
    fn protected_route_without_credential_is_401() {
        let cfg = config();
        assert_eq!(
            denied(&plan_for(&cfg, "GET", "/orders/1", &[])),
            Some(DenyReason::MissingCredential)
        );
    }

    #[test]
    fn protected_route_with_key_asks_for_its_hash_and_permissions() {
        let cfg = config();
        let k = key();
        let p = plan_for(
            &cfg,
            "GET",
            "/orders/1",
            &[h("x-api-key", k.expose_secret())],
        );
        let Plan::CheckKey {
            key,
            hash,
            required,
            strip,
        } = p
        else {
            panic!("{p:?}")
        };
        assert_eq!(hash, k.hash());
        assert_eq!(required, perms(&["orders:read"]).as_slice());
        assert_eq!(strip.headers, ["x-api-key"]);
        assert_eq!(before_lookup(key), None);
    }

    #[test]
    fn key_with_a_wrong_checksum_is_401_before_its_lookup() {
        let cfg = config();
        let k = key();
        let mut typo = k.expose_secret().to_owned();
        let last = if typo.ends_with('0') { "1" } else { "0" };
        typo.replace_range(typo.len() - 1.., last);
        let p = plan_for(&cfg, "GET", "/orders/1", &[h("x-api-key", &typo)]);
        let Plan::CheckKey { key, hash, .. } = p else {
            panic!("{p:?}")
        };
        assert_ne!(hash, k.hash());
        let denial = before_lookup(key).expect("a checksum mismatch is refused");
        assert_eq!(
            (denial.reason, denial.status()),
            (DenyReason::MalformedKey, 401)
        );
    }

    #[test]
    fn malformed_and_ambiguous_credentials_are_401_before_any_lookup() {
        let cfg = config();
        let p = plan_for(&cfg, "GET", "/orders/1", &[h("x-api-key", "kg_0000")]);
        assert_eq!(denied(&p), Some(DenyReason::MalformedKey));
        let k = key();
        let other = ApiKey::from_random([1; KEY_RANDOM_BYTES]);
        let path = format!("/orders/1?api_key={}", other.expose_secret());
        let p = plan_for(&cfg, "GET", &path, &[h("x-api-key", k.expose_secret())]);
        assert_eq!(denied(&p), Some(DenyReason::AmbiguousCredential));
    }

    #[test]
    fn unmatched_request_is_denied_unless_configured_otherwise() {
        let cfg = config();
        assert_eq!(
            denied(&plan_for(&cfg, "GET", "/nowhere", &[])),
            Some(DenyReason::NoRouteRule)
        );
        assert_eq!(
            denied(&plan_for(&cfg, "DELETE", "/orders", &[])),
            Some(DenyReason::NoRouteRule)
        );
        let open = CONFIG.replacen('{', r#"{"unmatched": "allow","#, 1);
        let cfg = FilterConfig::from_json(open.as_bytes()).unwrap();
        assert_eq!(
            plan_for(&cfg, "GET", "/nowhere", &[]),
            Plan::Forward(Strip::default())
        );
    }

    #[test]
    fn path_tricks_never_land_on_a_public_rule() {
        let cfg = config();
        for path in ["/ADMIN/x", "/%41dmin/x"] {
            let p = plan_for(&cfg, "GET", path, &[]);
            assert_eq!(denied(&p), Some(DenyReason::MissingCredential), "{path}");
        }
        for path in [
            "/public/../admin/x",
            "/public/%2e%2e/admin/x",
            "/public/%2E%2E/admin/x",
            "//admin/x",
            "/admin;x=1/y",
            "/public/..;/admin/x",
            "/admin/%2e%2e;/orders/1",
            "/./admin/x",
            "/public/..%2fadmin/x",
            "/admin%2Fx",
            "/public\\..\\admin",
            "/admin%3F",
            "/admin%23",
        ] {
            assert_eq!(
                denied(&plan_for(&cfg, "GET", path, &[])),
                Some(DenyReason::BadPath),
                "{path}"
            );
        }
    }

    #[test]
    fn valid_key_with_all_permissions_is_allowed_with_identity_headers() {
        let cfg = config();
        let v = judge(
            &Outcome::prepare(&cfg, identity(&["orders:read", "x"])),
            &perms(&["orders:read"]),
        );
        let Verdict::Allow(grant) = v else {
            panic!("{v:?}")
        };
        assert_eq!(grant.key_id.as_deref(), Some("key_1"));
        assert_eq!(grant.provider, None);
        assert_eq!(
            grant.identity_headers,
            [
                ("x-keygate-auth".to_owned(), "api_key".to_owned()),
                ("x-keygate-key-id".to_owned(), "key_1".to_owned()),
                ("x-keygate-tenant".to_owned(), "acme".to_owned()),
                (
                    "x-keygate-permissions".to_owned(),
                    "orders:read,x".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn only_the_chosen_identity_headers_are_sent_in_their_fixed_order() {
        let cfg = FilterConfig::from_json(
            br#"{"key_service": {"cluster": "ks", "token": "t"},
                 "forwarding": {"identity_headers": ["permissions", "key-id", "subject"]},
                 "routes": [{"prefix": "/", "permissions": []}]}"#,
        )
        .unwrap();
        let v = judge(&Outcome::prepare(&cfg, identity(&["a", "b"])), &[]);
        let Verdict::Allow(grant) = v else {
            panic!("{v:?}")
        };
        // A key has no subject: the headers chosen are those this credential has.
        assert_eq!(
            grant.identity_headers,
            [
                ("x-keygate-key-id".to_owned(), "key_1".to_owned()),
                ("x-keygate-permissions".to_owned(), "a,b".to_owned()),
            ]
        );
        // Client headers under the prefix are still removed, chosen or not.
        let spoofed = [h("x-keygate-tenant", "evil"), h("x-keygate-auth", "jwt")];
        assert_eq!(spoofed_headers(&cfg, &spoofed).count(), 2);

        let none = FilterConfig::from_json(
            br#"{"key_service": {"cluster": "ks", "token": "t"},
                 "forwarding": {"identity_headers": []},
                 "routes": [{"prefix": "/", "permissions": []}]}"#,
        )
        .unwrap();
        let v = judge(&Outcome::prepare(&none, identity(&["a"])), &[]);
        let Verdict::Allow(grant) = v else {
            panic!("{v:?}")
        };
        assert!(grant.identity_headers.is_empty());
        assert_eq!(grant.key_id.as_deref(), Some("key_1"));
    }

    #[test]
    fn missing_permission_is_403_naming_what_is_missing() {
        let cfg = config();
        let v = judge(
            &Outcome::prepare(&cfg, identity(&["admin"])),
            &perms(&["admin", "audit"]),
        );
        let Verdict::Deny(d) = v else { panic!("{v:?}") };
        assert_eq!(d.status(), 403);
        assert_eq!(d.missing, ["audit"]);
        assert!(d.body().contains("audit"));
        assert!(d
            .headers()
            .iter()
            .any(|(n, v)| *n == "www-authenticate" && v.contains("insufficient_scope")));
    }

    #[test]
    fn invalid_keys_are_401_with_their_reason() {
        let cfg = config();
        for (reason, expected) in [
            (InvalidReason::Unknown, DenyReason::UnknownKey),
            (InvalidReason::Revoked, DenyReason::RevokedKey),
            (InvalidReason::Expired, DenyReason::ExpiredKey),
        ] {
            let v = judge(&Outcome::prepare(&cfg, Answer::Invalid(reason)), &[]);
            let Verdict::Deny(d) = v else { panic!("{v:?}") };
            assert_eq!((d.reason, d.status()), (expected, 401));
            assert!(d.headers().iter().any(|(_, v)| v.contains("invalid_token")));
        }
    }

    #[test]
    fn key_service_down_is_503_or_open_by_config() {
        let cfg = config();
        let Verdict::Deny(d) = unavailable(&cfg) else {
            panic!()
        };
        assert_eq!(d.status(), 503);
        let open = CONFIG.replacen('{', r#"{"failure_mode": "open","#, 1);
        let cfg = FilterConfig::from_json(open.as_bytes()).unwrap();
        assert_eq!(unavailable(&cfg), Verdict::AllowUnverified);
    }

    #[test]
    fn spoofed_identity_headers_are_found_by_prefix() {
        let cfg = config();
        let headers = [
            h("x-keygate-tenant", "evil"),
            h("accept", "*/*"),
            h("x-keygate-key-id", "k"),
        ];
        let found: Vec<&[u8]> = spoofed_headers(&cfg, &headers).collect();
        assert_eq!(found, [&b"x-keygate-tenant"[..], b"x-keygate-key-id"]);
    }

    #[test]
    fn underscore_and_mixed_case_spellings_of_identity_headers_are_spoofed_too() {
        let cfg = config();
        let headers = [
            h("x_keygate_tenant", "evil"),
            h("x-keygate_permissions", "admin"),
            h("X_KeyGate-Auth", "api_key"),
            h("x-keygatetenant", "not ours"),
            h("x_keygat", "too short"),
        ];
        let found: Vec<&[u8]> = spoofed_headers(&cfg, &headers).collect();
        assert_eq!(
            found,
            [
                &b"x_keygate_tenant"[..],
                b"x-keygate_permissions",
                b"X_KeyGate-Auth"
            ]
        );
    }

    #[test]
    fn a_permission_that_would_split_or_change_upstream_is_left_out_of_the_header() {
        let cfg = config();
        let identity = Identity {
            principal: Principal::Jwt {
                subject: "s".into(),
                provider: "p".into(),
            },
            tenant: None,
            permissions: vec![
                "orders:read".into(),
                "admin,orders:write".into(),
                "caf\u{e9}".into(),
                "api://x/read".into(),
            ],
            expires_at: None,
        };
        let Outcome::Valid(grant) = Outcome::prepare(&cfg, Answer::Valid(identity)) else {
            panic!()
        };
        let header = grant
            .identity_headers
            .iter()
            .find(|(n, _)| n == "x-keygate-permissions")
            .map(|(_, v)| v.as_str());
        assert_eq!(header, Some("orders:read,api://x/read"));
        // Held, but never enough to pass a rule for `admin`.
        assert!(!grant.holds(&Permission::parse("admin").unwrap()));
    }

    #[test]
    fn a_path_or_method_that_is_not_utf8_is_refused_or_matches_no_method_rule() {
        let cfg = config();
        let reason = |headers: &[Header<'_>]| {
            denied(&plan(
                &cfg,
                &RequestView {
                    headers,
                    route_name: None,
                },
            ))
        };
        let bad_path = [h(":method", "GET"), (b":path", b"/orders/\xff")];
        assert_eq!(reason(&bad_path), Some(DenyReason::BadPath));
        assert_eq!(reason(&[h(":method", "GET")]), Some(DenyReason::BadPath));
        let bad_method = [(&b":method"[..], &b"G\xe9T"[..]), h(":path", "/orders/1")];
        assert_eq!(reason(&bad_method), Some(DenyReason::NoRouteRule));
    }

    #[test]
    fn bodies_never_echo_the_key() {
        let cfg = config();
        let k = key();
        let p = plan_for(
            &cfg,
            "GET",
            "/orders/1",
            &[h("x-api-key", &k.expose_secret()[..20])],
        );
        let Plan::Deny(d) = p else { panic!() };
        assert!(!d.body().contains(&k.expose_secret()[3..20]));
    }

    #[test]
    fn header_values_are_made_safe() {
        assert_eq!(header_safe("a\r\nb c"), "a??b c");
    }

    #[test]
    fn a_cached_token_keeps_authorization_only_for_a_provider_that_forwards_it() {
        let json = r#"{
            "key_service": {"cluster": "ks", "token": "t"},
            "jwt": {"providers": [
                {"name": "keep", "issuer": "a", "audiences": ["x"], "forward_token": true,
                 "jwks": {"remote": {"cluster": "idp", "path": "/jwks"}}},
                {"name": "drop", "issuer": "b", "audiences": ["x"],
                 "jwks": {"remote": {"cluster": "idp", "path": "/jwks"}}}
            ]}
        }"#;
        let cfg = FilterConfig::from_json(json.as_bytes()).unwrap();
        let strip = Strip {
            headers: vec!["authorization".into(), "x-api-key".into()],
            path: None,
        };
        let token_of = |provider: &str| {
            Outcome::prepare(
                &cfg,
                Answer::Valid(Identity {
                    principal: Principal::Jwt {
                        subject: "s".into(),
                        provider: provider.into(),
                    },
                    tenant: None,
                    permissions: Vec::new(),
                    expires_at: Some(1),
                }),
            )
        };
        let kept = strip_for_cached_token(&cfg, &token_of("keep"), strip.clone());
        assert_eq!(kept.headers, ["x-api-key"]);
        let dropped = strip_for_cached_token(&cfg, &token_of("drop"), strip.clone());
        assert_eq!(dropped, strip);
        // A provider removed from the configuration forwards nothing.
        let gone = strip_for_cached_token(&cfg, &token_of("removed"), strip.clone());
        assert_eq!(gone, strip);
    }

    #[test]
    fn a_token_from_an_unknown_issuer_is_invalid() {
        let Verdict::Deny(d) = unknown_issuer() else {
            panic!("allowed")
        };
        assert_eq!((d.status(), d.detail), (401, Some("unknown_issuer")));
    }
}
