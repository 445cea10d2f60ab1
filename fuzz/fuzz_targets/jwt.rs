//! `jwt::verify` (and `UnverifiedToken`, `looks_like_jwt`) with a fixed JWKS and a fixed provider
//! policy, at a fixed `now`.
//!
//! The JWKS holds two HMAC keys, whose secrets the target knows, and three public keys (RSA,
//! P-256, Ed25519) whose private halves it does not. So that the claim checks are reached, most
//! inputs are a JOSE header and a payload that the target signs itself.
//!
//! Invariants, beyond "never panics":
//! - An accepted token carries a valid signature under a key the target holds: recomputing the
//!   HMAC of its signing input with one of the two secrets gives its signature. (Signing with
//!   anything else, such as the RSA modulus as an HMAC secret, must never be accepted.)
//! - Flipping one bit of an accepted token's signature, or changing one byte of its payload part,
//!   gets it rejected.
//! - What an accepted token yields obeys the policy: the issuer is the provider's, the subject is
//!   not empty, `now` is before expiry plus skew, permissions are non-empty and unique;
//!   `UnverifiedToken` reads the same issuer and `looks_like_jwt` is true.
//! - Whenever `UnverifiedToken::parse` takes a token, its `verify` answers exactly as
//!   `jwt::verify` does, accepted or refused and why (the filter verifies that way).
//!
//! Input: first byte `S` (sign with the HS256 secret), `T` (HS512), `C` (HMAC with the RSA
//! modulus, the classic key confusion), then `header JSON \n payload JSON`; any other first byte:
//! the whole input is a token.

#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use keygate_core::jwt::{self, Jwks, PermissionsClaim, ProviderPolicy};
use libfuzzer_sys::fuzz_target;
use sha2::{Sha256, Sha512};

const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://idp.example";
const SKEW: u64 = 60;
const HS256_SECRET: &[u8] = b"keygate-fuzz-hmac-secret-thirty-two";
const HS512_SECRET: &[u8] = b"keygate-fuzz-hmac-secret-for-hs512-needs-sixty-four-bytes-at-least";
/// From core's test keys (`RSA_A_N`, `P256_X`/`P256_Y`, `ED25519_X`).
const RSA_N: &str = "vSvinfYJD19caauXFsGjC4HuWnh1nSqN-YXXamgQ-fjG8EYcI7JWED0LeqgcBRyUPeVPLqwd4-bgrfO0YxbTSvjlZUjTN7mlAPi6Zz6cAfyKQDiAQhpV4F3EVnKa1hSlWUCGwsrHmfen9Kv3k4OStjbSDYzTQWAIrGgNESEYfgIwyC0-R1VRzoAzZNTJ0mhJF4uWI-OUVcUCjbaZ_FlwPFUYHaxcYeJYC0zgDPbzY_SKvR-d_eOiEEf240cWRUqxLZ2ba4KA2bOr1dzrWGmo7CKSsm1KyuT5qxY67EMnMzCAxHESW4nH9cTANOOFsyOWDksYfFCSR6shbAZCAgstkQ";
const P256_X: &str = "M3naHXj1uGDE0K-Mk4C2gjMNMcFNzn2vVAs482oSgZ8";
const P256_Y: &str = "lsIJrN8t_tcfVaFTqdzu2nxUCx3xl_Da1zkDc7z4B0A";
const ED25519_X: &str = "YpA9K4l-o8tsu_Feo8uVCD48Bt5pnyd_bxs5-6lIXKM";

struct Fixed {
    jwks: Jwks,
    policy: ProviderPolicy,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hs", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(HS256_SECRET)},
            {"kty": "oct", "kid": "hs512", "alg": "HS512", "k": URL_SAFE_NO_PAD.encode(HS512_SECRET)},
            {"kty": "RSA", "kid": "rs", "n": RSA_N, "e": "AQAB"},
            {"kty": "EC", "kid": "es", "crv": "P-256", "x": P256_X, "y": P256_Y},
            {"kty": "OKP", "crv": "Ed25519", "x": ED25519_X},
        ]});
        let jwks = Jwks::parse_local(doc.to_string().as_bytes()).expect("fixed JWKS parses");
        assert_eq!(jwks.len(), 5, "{:?}", jwks.skipped());
        let policy = ProviderPolicy::new("local", ISSUER, vec!["api".into(), "other".into()])
            .expect("fixed policy")
            .with_permissions_claim(PermissionsClaim::Array("permissions".into()))
            .with_permissions_claim(PermissionsClaim::SpaceSeparated("scope".into()))
            .with_tenant_claim("tid")
            .with_clock_skew_secs(SKEW);
        Fixed { jwks, policy }
    })
}

fuzz_target!(|data: &[u8]| {
    let token = match data.split_first() {
        Some((&mode @ (b'S' | b'T' | b'C'), rest)) => {
            let (header, payload) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &b""[..]),
            };
            let signing_input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(payload)
            );
            let signature = match mode {
                b'S' => hmac256(HS256_SECRET, &signing_input),
                b'T' => hmac512(HS512_SECRET, &signing_input),
                _ => {
                    let n = URL_SAFE_NO_PAD.decode(RSA_N).expect("fixed modulus");
                    hmac256(&n, &signing_input)
                }
            };
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }
        _ => match std::str::from_utf8(data) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
    };
    check(&token, data);
});

fn check(token: &str, data: &[u8]) {
    let Fixed { jwks, policy } = fixed();
    let _ = jwt::looks_like_jwt(token);
    let result = jwt::verify(token, jwks, policy, NOW);
    let unverified = jwt::UnverifiedToken::parse(token.to_owned());
    if let Ok(unverified) = &unverified {
        assert_eq!(unverified.verify(jwks, policy, NOW), result, "{token:?}");
    }
    let Ok(verified) = result else {
        return;
    };

    let (signing_input, signature_b64) = token.rsplit_once('.').expect("accepted: three parts");
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .expect("accepted: base64url");
    assert!(
        hmac256(HS256_SECRET, signing_input) == signature
            || hmac512(HS512_SECRET, signing_input) == signature,
        "accepted a token not signed by a key we hold: {token:?}"
    );
    assert!(jwt::looks_like_jwt(token), "{token:?}");
    let issuer = unverified.as_ref().ok().and_then(jwt::UnverifiedToken::issuer);
    assert_eq!(issuer, Some(ISSUER));
    assert_eq!(verified.issuer, ISSUER);
    assert_eq!(verified.provider, "local");
    assert!(!verified.subject.is_empty());
    assert!(u128::from(NOW) < u128::from(verified.expires_at) + u128::from(SKEW));
    assert!(verified.tenant.as_deref() != Some(""));
    for (i, p) in verified.permissions.iter().enumerate() {
        assert!(
            !p.is_empty() && !verified.permissions[..i].contains(p),
            "{:?}",
            verified.permissions
        );
    }

    // Tampering: one bit of the signature, or one byte of the payload part.
    let seed = data.iter().fold(0usize, |a, &b| {
        a.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let mut flipped = signature.clone();
    if let Some(byte) = flipped.get_mut(seed % signature.len().max(1)) {
        *byte ^= 1 << (seed % 8);
        let forged = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&flipped));
        assert!(
            jwt::verify(&forged, jwks, policy, NOW).is_err(),
            "a flipped signature bit was accepted"
        );
    }
    let (header_b64, payload_b64) = signing_input
        .split_once('.')
        .expect("accepted: three parts");
    let mut payload = payload_b64.as_bytes().to_vec();
    if let Some(byte) = payload.get_mut(seed % payload_b64.len().max(1)) {
        *byte = if *byte == b'A' { b'B' } else { b'A' };
        let payload = String::from_utf8(payload).expect("base64url is ASCII");
        let forged = format!("{header_b64}.{payload}.{signature_b64}");
        assert!(
            jwt::verify(&forged, jwks, policy, NOW).is_err(),
            "a changed payload was accepted"
        );
    }
}

fn hmac256(secret: &[u8], input: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hmac512(secret: &[u8], input: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}
