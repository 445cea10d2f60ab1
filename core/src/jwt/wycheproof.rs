//! Wycheproof known-answer tests (C2SP/wycheproof, trimmed copies in `core/tests/wycheproof/`,
//! see the README there), run through the same path the filter takes: the key goes through
//! [`Jwks::parse`] as a JWK pinned to the JWS algorithm, and the signature through
//! [`Jwk::verify`](super::jwk::Jwk), which `verify()` calls with the token's signing input.
//!
//! Every `valid` vector must verify and every `invalid` one must fail. Policy for `acceptable`:
//! refused. The only ones in these files are PKCS#1 v1.5 signatures whose DigestInfo omits the
//! NULL parameters (`MissingNull`); RFC 8017 section 9.2 encodes it with the NULL, and keygate
//! accepts exactly one encoding per signature.
//!
//! ECDSA signatures with a high `s` are `valid` in Wycheproof and keygate accepts them, as
//! JOSE (RFC 7518 section 3.4) does not ask for low-`s`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::Jwks;

#[derive(Deserialize)]
struct VectorFile {
    alg: String,
    source: String,
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    key: GroupKey,
    /// `[tcId, msg hex, sig hex, result]`.
    tests: Vec<(u32, String, String, String)>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum GroupKey {
    /// SEC1 uncompressed point, hex.
    Ec { uncompressed: String },
    /// Big-endian modulus and exponent, hex (the modulus with a leading zero byte).
    Rsa { n: String, e: String },
    /// Raw Ed25519 public key, hex.
    Ed25519 { pk: String },
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwk(alg: &str, key: &GroupKey) -> serde_json::Value {
    match key {
        GroupKey::Ec { uncompressed } => {
            let point = unhex(uncompressed);
            let width = (point.len() - 1) / 2;
            let crv = match alg {
                "ES256" => "P-256",
                "ES384" => "P-384",
                other => panic!("EC key for {other}"),
            };
            json!({"kty": "EC", "crv": crv, "alg": alg,
                   "x": b64(&point[1..1 + width]), "y": b64(&point[1 + width..])})
        }
        GroupKey::Rsa { n, e } => {
            let n = unhex(n);
            let first = n.iter().position(|&b| b != 0).unwrap();
            json!({"kty": "RSA", "alg": alg, "n": b64(&n[first..]), "e": b64(&unhex(e))})
        }
        GroupKey::Ed25519 { pk } => {
            json!({"kty": "OKP", "crv": "Ed25519", "alg": alg, "x": b64(&unhex(pk))})
        }
    }
}

/// Runs every vector of one file; returns how many were valid and invalid (refused acceptable
/// ones count as invalid).
fn run(file: &str) -> (usize, usize) {
    let vectors: VectorFile = serde_json::from_str(file).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in &vectors.groups {
        let doc = json!({ "keys": [jwk(&vectors.alg, &group.key)] }).to_string();
        let jwks = Jwks::parse(doc.as_bytes()).unwrap();
        let Some(key) = jwks.iter().next() else {
            // A key keygate refuses (e.g. a small-order point) must carry no valid vector.
            for (id, _, _, result) in &group.tests {
                assert_ne!(result, "valid", "{} tcId {id}: key refused", vectors.source);
                invalid += 1;
            }
            continue;
        };
        assert_eq!(key.alg.name(), vectors.alg);
        for (id, msg, sig, result) in &group.tests {
            let verified = key.verify(&unhex(msg), &unhex(sig)).is_ok();
            let expected = match result.as_str() {
                "valid" => true,
                "invalid" | "acceptable" => false,
                other => panic!("tcId {id}: result {other}"),
            };
            assert_eq!(
                verified, expected,
                "{} tcId {id} ({result}) verified: {verified}",
                vectors.source
            );
            if expected {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
    }
    (valid, invalid)
}

macro_rules! vectors {
    ($name:literal) => {
        include_str!(concat!("../../tests/wycheproof/", $name, ".json"))
    };
}

#[test]
fn wycheproof_ecdsa_p256_sha256_p1363() {
    assert_eq!(
        run(vectors!("ecdsa_secp256r1_sha256_p1363_test")),
        (173, 89)
    );
}

#[test]
fn wycheproof_ecdsa_p384_sha384_p1363() {
    assert_eq!(
        run(vectors!("ecdsa_secp384r1_sha384_p1363_test")),
        (193, 87)
    );
}

#[test]
fn wycheproof_rsa_pkcs1v15_2048_sha256() {
    // 9 valid; 249 invalid and 1 acceptable (MissingNull), refused.
    assert_eq!(run(vectors!("rsa_signature_2048_sha256_test")), (9, 250));
}

#[test]
fn wycheproof_rsa_pss_2048_sha256_mgf1_32() {
    assert_eq!(run(vectors!("rsa_pss_2048_sha256_mgf1_32_test")), (63, 45));
}

#[test]
fn wycheproof_ed25519() {
    assert_eq!(run(vectors!("ed25519_test")), (88, 63));
}
