//! `credential::extract` and `decision::plan` on any request headers, under two fixed configs
//! (API keys in a header, the query and `Authorization: Bearer`, with and without JWT providers).
//!
//! Invariants, beyond "never panics":
//! - Provenance: an API key found is one of the request's own candidate values (a key header's
//!   trimmed value, a bearer token, a decoded query value of a key parameter); a JWT found is a
//!   substring of an `Authorization` value.
//! - Stripping is complete: the request with every header in `strip.headers` removed and the path
//!   replaced by `strip.path` carries no credential at all (`Ok(None)`), whatever the outcome,
//!   so a public route never forwards one.
//! - A denial's body is one of the fixed JSON bodies (known keys, a known reason) and never holds
//!   the credential.
//!
//! The input is text-like: one header per line, `name value` (the first space splits; values are
//! bytes). The `:path` header is the path; which config applies comes from a hash of the input.

#![no_main]

use std::sync::OnceLock;

use keygate_core::config::FilterConfig;
use keygate_core::credential::{self, Credential, Header};
use keygate_core::decision::{self, DenyReason, Plan, RequestView};
use keygate_core::key::KeyHash;
use libfuzzer_sys::fuzz_target;

/// Keys anywhere, JWTs from one HMAC provider, every path protected but `/public/`.
const WITH_JWT: &str = r#"{
    "key_service": {"cluster": "ks", "token": "t"},
    "routes": [
        {"prefix": "/public/", "public": true},
        {"methods": ["GET"], "path": "/orders/*", "permissions": ["orders:read"]},
        {"prefix": "/", "permissions": []}
    ],
    "jwt": {"providers": [{"name": "local", "issuer": "https://idp.example", "audiences": ["api"],
        "jwks": {"inline": {"keys": [{"kty": "oct", "kid": "hs", "alg": "HS256",
            "k": "a2V5Z2F0ZS1mdXp6LWhtYWMtc2VjcmV0LXRoaXJ0eS10d28"}]}}}]}
}"#;

/// Two key headers, two query parameters, no bearer keys and no JWTs; unmatched paths public.
const KEYS_ONLY: &str = r#"{
    "key_service": {"cluster": "ks", "token": "t"},
    "api_keys": {"headers": ["x-api-key", "X-Key-2"], "query_params": ["api_key", "k"],
        "bearer": false},
    "unmatched": "allow",
    "routes": [{"prefix": "/admin", "permissions": ["admin"]}]
}"#;

fn configs() -> &'static [FilterConfig; 2] {
    static CONFIGS: OnceLock<[FilterConfig; 2]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        [WITH_JWT, KEYS_ONLY]
            .map(|json| FilterConfig::from_json(json.as_bytes()).expect("fixed config compiles"))
    })
}

fuzz_target!(|data: &[u8]| {
    let headers: Vec<Header<'_>> = data
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| match line.iter().position(|&b| b == b' ') {
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (line, &b""[..]),
        })
        .collect();
    let cfg = &configs()[usize::from(data.iter().fold(0u8, |a, &b| a ^ b) & 1)];
    let path = headers
        .iter()
        .find(|(n, _)| *n == b":path")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .unwrap_or("/");

    let extracted = credential::extract(&cfg.api_keys, cfg.jwt.enabled(), &headers, path);
    let secret = match &extracted.credential {
        Ok(Some(Credential::ApiKey(key))) => {
            let hash = key.hash();
            let found = candidates(cfg, &headers, path).find(|c| KeyHash::of(c.as_bytes()) == hash);
            assert!(
                found.is_some(),
                "the key found is none of the request's candidate values"
            );
            found
        }
        Ok(Some(Credential::Jwt(token))) => {
            assert!(
                headers
                    .iter()
                    .any(|(n, v)| *n == b"authorization" && contains(v, token.as_bytes())),
                "the token found is in no Authorization header"
            );
            Some(token.clone())
        }
        _ => None,
    };

    let stripped: Vec<Header<'_>> = headers
        .iter()
        .filter(|(n, _)| !extracted.strip.headers.iter().any(|s| s.as_bytes() == *n))
        .copied()
        .collect();
    let stripped_path = extracted.strip.path.as_deref().unwrap_or(path);
    let again = credential::extract(&cfg.api_keys, cfg.jwt.enabled(), &stripped, stripped_path);
    assert_eq!(
        again.credential,
        Ok(None),
        "a credential survives stripping (first outcome: {:?}, strip: {:?})",
        extracted.credential,
        extracted.strip
    );

    let view = RequestView {
        headers: &headers,
        route_name: None,
    };
    if let Plan::Deny(denial) = decision::plan(cfg, &view) {
        let body = denial.body();
        let json: serde_json::Value = serde_json::from_str(&body).expect("a denial body is JSON");
        let reason = json["reason"].as_str().unwrap_or_default();
        assert!(
            DenyReason::ALL.iter().any(|r| r.as_str() == reason),
            "{body}"
        );
        assert!(
            json.as_object().is_some_and(|o| o.keys().all(|k| [
                "error",
                "reason",
                "missing_permissions",
                "detail"
            ]
            .contains(&k.as_str()))),
            "{body}"
        );
        if let Some(secret) = &secret {
            assert!(
                !body.contains(secret.as_str()),
                "a denial echoes the credential"
            );
        }
    }
});

/// Every value the request offers as an API key, decoded as `extract` decodes it.
fn candidates<'a>(
    cfg: &'a FilterConfig,
    headers: &'a [Header<'a>],
    path: &'a str,
) -> impl Iterator<Item = String> + 'a {
    let from_headers = headers.iter().filter_map(move |(name, value)| {
        let value = String::from_utf8_lossy(value);
        if cfg.api_keys.headers.iter().any(|h| h.as_bytes() == *name) {
            Some(value.trim().to_owned())
        } else if *name == b"authorization" {
            credential::bearer_token(&value).map(str::to_owned)
        } else {
            None
        }
    });
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let from_query = query.split('&').filter_map(move |pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        cfg.api_keys
            .query_params
            .contains(&form_decode(name))
            .then(|| form_decode(value))
    });
    from_headers.chain(from_query)
}

/// `application/x-www-form-urlencoded` decoding, written apart from the one in core.
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        let byte = hex.filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
        match (b[i], byte.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
