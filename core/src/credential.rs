//! Finding the credential in a request, and what to cut out before forwarding it.
//!
//! Policy:
//! - API keys are read from the configured headers, the configured query parameters
//!   (percent-decoded, names too, so `api%5Fkey=` is still `api_key`), and `Authorization: Bearer`
//!   when the value carries the key prefix (`kg_`). The scheme is case-insensitive.
//! - The same key sent twice (say header and query) is one credential. Two different values, in any
//!   places, are ambiguous: the request is refused rather than guessed at.
//! - With JWT providers configured, any other `Authorization: Bearer` value is a JWT; one that is
//!   not shaped like a JWT is refused. Two `Authorization` headers, or a JWT and an API key
//!   together, are ambiguous.
//! - Without providers, an `Authorization` header that is not a bearer key is not ours: it is left
//!   alone.
//! - Every place that carried the credential is listed in [`Strip`], so the upstream never sees it.
//! - Header values arrive as bytes. One that is not UTF-8 is read with each bad byte replaced by
//!   U+FFFD, which neither a key nor a JWT may contain: such a credential is refused as malformed,
//!   and it still counts as a credential for ambiguity and stripping.

use std::borrow::Cow;

use crate::config::ApiKeySources;
pub use crate::hostmap::Header;
use crate::jwt;
use crate::key::{self, KeyFormatError, UncheckedKey};

const AUTHORIZATION: &[u8] = b"authorization";

/// The credential a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key of the right shape; its checksum is checked when its hash is not cached.
    ApiKey(UncheckedKey),
    /// A compact JWS, not yet verified.
    Jwt(String),
}

/// Why the request's credential cannot be used. Carries nothing of the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("more than one credential in the request")]
    Ambiguous,
    #[error("malformed API key: {0}")]
    MalformedKey(KeyFormatError),
    #[error("bearer token is not a well-formed JWT")]
    MalformedToken,
}

/// What to remove from the request before it goes upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strip {
    /// Header names to remove (all values).
    pub headers: Vec<String>,
    /// The new `:path`, when query parameters were cut out of it.
    pub path: Option<String>,
}

/// The outcome of looking for a credential: what was found (if anything) and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub credential: Result<Option<Credential>, CredentialError>,
    pub strip: Strip,
}

/// Looks for an API key in `headers` and the query of `path`, and, when `jwt_enabled`, for a
/// JWT in `Authorization: Bearer`.
pub fn extract(
    sources: &ApiKeySources,
    jwt_enabled: bool,
    headers: &[Header<'_>],
    path: &str,
) -> Extracted {
    let mut found: Vec<Cow<'_, str>> = Vec::new();
    let mut tokens: Vec<Cow<'_, str>> = Vec::new();
    let mut bearer_headers = 0;
    // Set by an `Authorization` value that holds two credentials. The request is then ambiguous,
    // but the loop goes on, so that every other credential still lands in `strip`.
    let mut folded = false;
    let mut strip = Strip::default();

    for &(name, value) in headers {
        if let Some(source) = sources.headers.iter().find(|h| h.as_bytes() == name) {
            found.push(trimmed(String::from_utf8_lossy(value)));
            push_unique(&mut strip.headers, source);
        } else if name == AUTHORIZATION && (sources.bearer || jwt_enabled) {
            let Some(token) = bearer_of(String::from_utf8_lossy(value)) else {
                continue;
            };
            // Envoy folds a repeated `Authorization` header into one value joined by commas;
            // neither keys nor JWTs contain one, so a comma means two credentials.
            if token.contains(',') {
                push_unique(&mut strip.headers, "authorization");
                folded = true;
                continue;
            }
            if sources.bearer && key::looks_like_api_key(&token) {
                found.push(token);
            } else if jwt_enabled {
                tokens.push(token);
            } else {
                continue;
            }
            bearer_headers += 1;
            push_unique(&mut strip.headers, "authorization");
        }
    }

    if let Some((before, query)) = path.split_once('?') {
        if !sources.query_params.is_empty() {
            let (kept, removed) = split_query(query, &sources.query_params);
            if !removed.is_empty() {
                found.extend(removed.into_iter().map(Cow::Owned));
                strip.path = Some(if kept.is_empty() {
                    before.to_owned()
                } else {
                    format!("{before}?{kept}")
                });
            }
        }
    }

    let authorization_count = headers.iter().filter(|(n, _)| *n == AUTHORIZATION).count();
    if folded || (bearer_headers > 0 && authorization_count > 1) {
        return Extracted {
            credential: Err(CredentialError::Ambiguous),
            strip,
        };
    }
    if let Some((first, rest)) = tokens.split_first() {
        let credential = if !found.is_empty() || rest.iter().any(|t| t != first) {
            Err(CredentialError::Ambiguous)
        } else if jwt::looks_like_jwt(first) {
            Ok(Some(Credential::Jwt(first.clone().into_owned())))
        } else {
            Err(CredentialError::MalformedToken)
        };
        return Extracted { credential, strip };
    }

    let credential = match found.split_first() {
        None => Ok(None),
        Some((first, rest)) if rest.iter().any(|v| v != first) => Err(CredentialError::Ambiguous),
        Some((first, _)) => UncheckedKey::parse(first)
            .map(|k| Some(Credential::ApiKey(k)))
            .map_err(CredentialError::MalformedKey),
    };
    Extracted { credential, strip }
}

/// A value with surrounding whitespace cut off, borrowed when it was borrowed.
fn trimmed(value: Cow<'_, str>) -> Cow<'_, str> {
    match value {
        Cow::Borrowed(v) => Cow::Borrowed(v.trim()),
        Cow::Owned(v) => Cow::Owned(v.trim().to_owned()),
    }
}

/// [`bearer_token`] of a value that may be borrowed from the host's buffer, still borrowed.
fn bearer_of(value: Cow<'_, str>) -> Option<Cow<'_, str>> {
    match value {
        Cow::Borrowed(v) => bearer_token(v).map(Cow::Borrowed),
        Cow::Owned(v) => bearer_token(&v).map(|t| Cow::Owned(t.to_owned())),
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

fn push_unique(list: &mut Vec<String>, name: &str) {
    if !list.iter().any(|n| n == name) {
        list.push(name.to_owned());
    }
}

/// Splits a raw query into the text to keep (other parameters, byte for byte, in order) and the
/// decoded values of the parameters named in `names`.
fn split_query(query: &str, names: &[String]) -> (String, Vec<String>) {
    let mut kept = String::with_capacity(query.len());
    let mut removed = Vec::new();
    for pair in query.split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(raw_name);
        if names.contains(&name) {
            removed.push(percent_decode(raw_value));
            continue;
        }
        if !kept.is_empty() {
            kept.push('&');
        }
        kept.push_str(pair);
    }
    (kept, removed)
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte. Invalid escapes
/// stay as they are; invalid UTF-8 is replaced, so a mangled key fails its checksum, not this.
fn percent_decode(s: &str) -> String {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex_digit(hi).zip(hex_digit(lo)),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((hi, lo)), _) => {
                out.push((hi << 4) | lo);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::key::{ApiKey, KEY_RANDOM_BYTES};

    fn sources() -> ApiKeySources {
        ApiKeySources {
            headers: vec!["x-api-key".into()],
            query_params: vec!["api_key".into()],
            bearer: true,
        }
    }

    fn key(n: u8) -> ApiKey {
        ApiKey::from_random([n; KEY_RANDOM_BYTES])
    }

    fn h<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        (name.as_bytes(), value.as_bytes())
    }

    #[test]
    fn no_credential_is_none_and_strips_nothing() {
        let x = extract(&sources(), false, &[h("accept", "*/*")], "/orders?x=1");
        assert_eq!(x.credential, Ok(None));
        assert_eq!(x.strip, Strip::default());
    }

    #[test]
    fn key_in_header_is_found_and_the_header_stripped() {
        let k = key(1);
        let x = extract(
            &sources(),
            false,
            &[h("x-api-key", k.expose_secret())],
            "/o",
        );
        assert_eq!(x.credential, Ok(Some(Credential::ApiKey(k.into()))));
        assert_eq!(x.strip.headers, ["x-api-key"]);
        assert_eq!(x.strip.path, None);
    }

    #[test]
    fn key_in_query_is_cut_out_and_the_rest_kept_byte_for_byte() {
        let k = key(2);
        let path = format!("/o?a=1&api_key={}&b=%20x+y&c", k.expose_secret());
        let x = extract(&sources(), false, &[], &path);
        assert_eq!(x.credential, Ok(Some(Credential::ApiKey(k.into()))));
        assert_eq!(x.strip.path.as_deref(), Some("/o?a=1&b=%20x+y&c"));
    }

    #[test]
    fn only_query_param_leaves_no_question_mark() {
        let k = key(2);
        let x = extract(
            &sources(),
            false,
            &[],
            &format!("/o?api_key={}", k.expose_secret()),
        );
        assert_eq!(x.strip.path.as_deref(), Some("/o"));
    }

    #[test]
    fn encoded_param_name_and_value_are_decoded() {
        let k = key(3);
        let encoded: String = k.expose_secret().replace('_', "%5F");
        let x = extract(&sources(), false, &[], &format!("/o?api%5Fkey={encoded}"));
        assert_eq!(x.credential, Ok(Some(Credential::ApiKey(k.into()))));
        assert_eq!(x.strip.path.as_deref(), Some("/o"));
    }

    #[test]
    fn bearer_key_is_accepted_with_any_scheme_case() {
        let k = key(4);
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let v = format!("{scheme} {}", k.expose_secret());
            let x = extract(&sources(), false, &[h("authorization", &v)], "/");
            assert_eq!(x.credential, Ok(Some(Credential::ApiKey(k.clone().into()))));
            assert_eq!(x.strip.headers, ["authorization"]);
        }
    }

    #[test]
    fn other_authorization_is_left_alone() {
        for v in ["Basic dXNlcjpwYXNz", "Bearer eyJhbGciOi.x.y", "Bearer"] {
            let x = extract(&sources(), false, &[h("authorization", v)], "/");
            assert_eq!(x.credential, Ok(None), "{v}");
            assert!(x.strip.headers.is_empty());
        }
    }

    #[test]
    fn bearer_off_ignores_authorization() {
        let mut s = sources();
        s.bearer = false;
        let v = format!("Bearer {}", key(5).expose_secret());
        assert_eq!(
            extract(&s, false, &[h("authorization", &v)], "/").credential,
            Ok(None)
        );
    }

    #[test]
    fn two_different_credentials_are_ambiguous() {
        let (a, b) = (key(6), key(7));
        let x = extract(
            &sources(),
            false,
            &[h("x-api-key", a.expose_secret())],
            &format!("/o?api_key={}", b.expose_secret()),
        );
        assert_eq!(x.credential, Err(CredentialError::Ambiguous));
        // Everything that carried a credential is still stripped.
        assert_eq!(x.strip.headers, ["x-api-key"]);
        assert_eq!(x.strip.path.as_deref(), Some("/o"));
    }

    #[test]
    fn repeated_query_param_with_two_values_is_ambiguous() {
        let path = format!(
            "/o?api_key={}&api_key={}",
            key(6).expose_secret(),
            key(7).expose_secret()
        );
        assert_eq!(
            extract(&sources(), false, &[], &path).credential,
            Err(CredentialError::Ambiguous)
        );
    }

    #[test]
    fn repeated_header_with_two_values_is_ambiguous() {
        let (k6, k7) = (key(6), key(7));
        let headers = [
            h("x-api-key", k6.expose_secret()),
            h("x-api-key", k7.expose_secret()),
        ];
        assert_eq!(
            extract(&sources(), false, &headers, "/").credential,
            Err(CredentialError::Ambiguous)
        );
    }

    #[test]
    fn the_same_key_twice_is_one_credential() {
        let k = key(8);
        let x = extract(
            &sources(),
            false,
            &[h("x-api-key", k.expose_secret())],
            &format!("/o?api_key={}", k.expose_secret()),
        );
        assert_eq!(x.credential, Ok(Some(Credential::ApiKey(k.into()))));
    }

    #[test]
    fn malformed_key_is_reported_without_the_key() {
        let x = extract(&sources(), false, &[h("x-api-key", "kg_nothex")], "/");
        assert_eq!(
            x.credential,
            Err(CredentialError::MalformedKey(KeyFormatError::Length))
        );
        let x = extract(&sources(), false, &[h("x-api-key", "")], "/");
        assert!(matches!(
            x.credential,
            Err(CredentialError::MalformedKey(_))
        ));
    }

    const JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";

    #[test]
    fn bearer_jwt_is_found_when_providers_exist() {
        let v = format!("bearer {JWT}");
        let x = extract(&sources(), true, &[h("authorization", &v)], "/");
        assert_eq!(x.credential, Ok(Some(Credential::Jwt(JWT.to_owned()))));
        assert_eq!(x.strip.headers, ["authorization"]);
        // Without providers, it is not ours.
        assert_eq!(
            extract(&sources(), false, &[h("authorization", &v)], "/").credential,
            Ok(None)
        );
    }

    #[test]
    fn bearer_that_is_not_a_jwt_is_malformed() {
        for v in [
            "Bearer not-a-jwt",
            "Bearer a.b",
            "Bearer a.b.c.d",
            "Bearer a+b.c.d",
        ] {
            let x = extract(&sources(), true, &[h("authorization", v)], "/");
            assert_eq!(x.credential, Err(CredentialError::MalformedToken), "{v}");
        }
    }

    #[test]
    fn jwt_with_an_api_key_is_ambiguous() {
        let v = format!("Bearer {JWT}");
        let k1 = key(1);
        let headers = [h("authorization", &v), h("x-api-key", k1.expose_secret())];
        let x = extract(&sources(), true, &headers, "/");
        assert_eq!(x.credential, Err(CredentialError::Ambiguous));
    }

    #[test]
    fn two_authorization_headers_are_ambiguous() {
        let v = format!("Bearer {JWT}");
        let headers = [
            h("authorization", &v),
            h("authorization", "Basic dXNlcjpwYXNz"),
        ];
        let x = extract(&sources(), true, &headers, "/");
        assert_eq!(x.credential, Err(CredentialError::Ambiguous));
        let headers = [h("authorization", &v), h("authorization", &v)];
        assert_eq!(
            extract(&sources(), true, &headers, "/").credential,
            Err(CredentialError::Ambiguous)
        );
    }

    #[test]
    fn authorization_headers_folded_by_envoy_are_ambiguous() {
        let v = format!("Bearer {JWT},Bearer {JWT}x");
        let x = extract(&sources(), true, &[h("authorization", &v)], "/");
        assert_eq!(x.credential, Err(CredentialError::Ambiguous));
        assert_eq!(x.strip.headers, ["authorization"]);
    }

    #[test]
    fn a_folded_authorization_header_still_strips_every_other_credential() {
        // Found by the credential fuzz target: the ambiguity returned early, before the key
        // header and the query were read, so a public route forwarded the key upstream.
        let k = key(3);
        let path = format!("/public/x?api_key={}&q=1", k.expose_secret());
        let headers = [
            h("authorization", "Bearer a,b"),
            h("x-api-key", k.expose_secret()),
        ];
        let x = extract(&sources(), false, &headers, &path);
        assert_eq!(x.credential, Err(CredentialError::Ambiguous));
        assert_eq!(x.strip.headers, ["authorization", "x-api-key"]);
        assert_eq!(x.strip.path.as_deref(), Some("/public/x?q=1"));
    }

    #[test]
    fn basic_auth_passes_through_even_with_providers() {
        let x = extract(
            &sources(),
            true,
            &[h("authorization", "Basic dXNlcjpwYXNz")],
            "/",
        );
        assert_eq!(x.credential, Ok(None));
        assert!(x.strip.headers.is_empty());
    }

    #[test]
    fn percent_decoding_handles_edge_cases() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a+b%2Bc"), "a b+c");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
