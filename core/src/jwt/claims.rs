//! Checks a verified payload against a [`ProviderPolicy`] and reads the claims keygate needs.
//!
//! Types are strict: a NumericDate is a JSON number (a fraction is fine, a string is not), `iss`
//! and the subject are strings, `aud` is a string or an array of strings. Times compare with the
//! policy's skew, in whole seconds: a fractional date is rounded up, which for a whole-second
//! `now` gives exactly the RFC 7519 comparison against the real value.

use serde_json::{Map, Value};

use super::policy::{PermissionsClaim, ProviderPolicy};
use super::JwtError;

/// The claims of an accepted payload.
#[derive(Debug)]
pub(crate) struct Claims {
    pub(crate) subject: String,
    pub(crate) tenant: Option<String>,
    pub(crate) permissions: Vec<String>,
    pub(crate) expires_at: u64,
    pub(crate) issuer: String,
}

pub(crate) fn check(
    payload: &Map<String, Value>,
    policy: &ProviderPolicy,
    now: u64,
) -> Result<Claims, JwtError> {
    let now = i128::from(now);
    let skew = i128::from(policy.clock_skew_secs());

    // RFC 7519 4.1.4: reject on or after `exp`.
    let exp = numeric_date(payload, "exp")?.ok_or_else(|| missing("exp"))?;
    if now >= i128::from(exp) + skew {
        return Err(JwtError::Expired);
    }
    // RFC 7519 4.1.5: reject before `nbf`.
    if let Some(nbf) = numeric_date(payload, "nbf")? {
        if i128::from(nbf) > now + skew {
            return Err(JwtError::NotYetValid);
        }
    }
    // A token issued in the future comes from a broken clock or a forger's.
    if let Some(iat) = numeric_date(payload, "iat")? {
        if i128::from(iat) > now + skew {
            return Err(JwtError::IssuedInFuture);
        }
    }

    let issuer = string_claim(payload, "iss")?.ok_or_else(|| missing("iss"))?;
    if issuer != policy.issuer() {
        return Err(JwtError::WrongIssuer);
    }

    let accepted = |aud: &str| policy.audiences().iter().any(|a| a == aud);
    let aud_ok = match payload.get("aud") {
        None => return Err(missing("aud")),
        Some(Value::String(aud)) => accepted(aud),
        Some(Value::Array(auds)) => {
            let mut any = false;
            for aud in auds {
                let aud = aud.as_str().ok_or(invalid("aud"))?;
                any |= accepted(aud);
            }
            any
        }
        Some(_) => return Err(invalid("aud")),
    };
    if !aud_ok {
        return Err(JwtError::WrongAudience);
    }

    let subject_claim = policy.subject_claim();
    let subject = string_claim(payload, subject_claim)?.ok_or_else(|| missing(subject_claim))?;
    if subject.is_empty() {
        return Err(invalid(subject_claim));
    }

    let tenant = match policy.tenant_claim() {
        Some(claim) => match string_claim(payload, claim)? {
            Some("") => return Err(invalid(claim)),
            other => other.map(str::to_owned),
        },
        None => None,
    };

    Ok(Claims {
        subject: subject.to_owned(),
        tenant,
        permissions: permissions(payload, policy.permissions_claims())?,
        expires_at: u64::try_from(exp).unwrap_or(0),
        issuer: issuer.to_owned(),
    })
}

/// The union of every configured permissions claim, in order of first appearance, without
/// duplicates or empty entries. An absent claim contributes nothing; a mistyped one is an error.
fn permissions(
    payload: &Map<String, Value>,
    claims: &[PermissionsClaim],
) -> Result<Vec<String>, JwtError> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |p: &str| {
        if !p.is_empty() && !out.iter().any(|q| q == p) {
            out.push(p.to_owned());
        }
    };
    for claim in claims {
        match claim {
            PermissionsClaim::Array(name) => match payload.get(name) {
                None => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        add(item.as_str().ok_or(invalid(name))?);
                    }
                }
                Some(_) => return Err(invalid(name)),
            },
            PermissionsClaim::SpaceSeparated(name) => {
                if let Some(list) = string_claim(payload, name)? {
                    list.split(' ').for_each(&mut add);
                }
            }
        }
    }
    Ok(out)
}

/// A NumericDate claim in whole seconds, rounded up and clamped to `i64`.
fn numeric_date(payload: &Map<String, Value>, name: &str) -> Result<Option<i64>, JwtError> {
    let Some(value) = payload.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = value else {
        return Err(invalid(name));
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    if n.is_u64() {
        return Ok(Some(i64::MAX));
    }
    match n.as_f64() {
        // `as` saturates, and ceil keeps the RFC comparison exact for whole-second `now`.
        Some(f) if f.is_finite() => Ok(Some(f.ceil() as i64)),
        _ => Err(invalid(name)),
    }
}

/// A claim that must be a string when present.
fn string_claim<'a>(
    payload: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, JwtError> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name)),
    }
}

fn missing(name: &str) -> JwtError {
    JwtError::MissingClaim(name.to_owned())
}

fn invalid(name: &str) -> JwtError {
    JwtError::InvalidClaim(name.to_owned())
}
