//! End-to-end checks of [`verify()`] with tokens minted by the `jsonwebtoken` crate (ring
//! backend), an implementation independent of the RustCrypto code under test. Hand-built headers
//! and payloads (for `crit`, duplicate names, wrong types) are still signed by jsonwebtoken.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{crypto, encode, Algorithm as J, EncodingKey, Header};
use serde_json::{json, Value};

use super::test_keys::*;
use super::*;

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://idp.example.com/";
const AUD: &str = "https://api.example.com";
const HMAC_SECRET: &[u8; 64] = b"keygate-test-hmac-secret-that-is-sixty-four-bytes-long-exactly!!";

// --- fixtures ------------------------------------------------------------------------------

fn rsa_jwk(kid: &str, n: &str, alg: Option<&str>) -> Value {
    let mut jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "n": n, "e": "AQAB"});
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    jwk
}

fn p256_jwk(kid: &str) -> Value {
    json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": P256_X, "y": P256_Y})
}

fn p384_jwk(kid: &str) -> Value {
    json!({"kty": "EC", "kid": kid, "crv": "P-384", "x": P384_X, "y": P384_Y})
}

fn ed25519_jwk(kid: &str) -> Value {
    json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": ED25519_X})
}

fn oct_jwk(kid: &str, alg: &str, secret: &[u8]) -> Value {
    json!({"kty": "oct", "kid": kid, "alg": alg, "k": URL_SAFE_NO_PAD.encode(secret)})
}

fn remote_jwks(keys: Vec<Value>) -> Jwks {
    Jwks::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

fn local_jwks(keys: Vec<Value>) -> Jwks {
    Jwks::parse_local(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

/// One key per algorithm, each under its own `kid`; the RSA key appears six times, pinned to a
/// different algorithm each time.
fn every_key() -> Jwks {
    let jwks = local_jwks(vec![
        rsa_jwk("rs256", RSA_A_N, None),
        rsa_jwk("rs384", RSA_A_N, Some("RS384")),
        rsa_jwk("rs512", RSA_A_N, Some("RS512")),
        rsa_jwk("ps256", RSA_A_N, Some("PS256")),
        rsa_jwk("ps384", RSA_A_N, Some("PS384")),
        rsa_jwk("ps512", RSA_A_N, Some("PS512")),
        p256_jwk("es256"),
        p384_jwk("es384"),
        ed25519_jwk("eddsa"),
        oct_jwk("hs256", "HS256", HMAC_SECRET),
        oct_jwk("hs384", "HS384", HMAC_SECRET),
        oct_jwk("hs512", "HS512", HMAC_SECRET),
    ]);
    assert_eq!(jwks.skipped(), []);
    jwks
}

fn rsa_a() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_A_PEM.as_bytes()).unwrap()
}

fn rsa_b() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_B_PEM.as_bytes()).unwrap()
}

fn p256() -> EncodingKey {
    EncodingKey::from_ec_pem(P256_PEM.as_bytes()).unwrap()
}

fn p384() -> EncodingKey {
    EncodingKey::from_ec_pem(P384_PEM.as_bytes()).unwrap()
}

fn ed25519() -> EncodingKey {
    EncodingKey::from_ed_pem(ED25519_PEM.as_bytes()).unwrap()
}

fn hmac() -> EncodingKey {
    EncodingKey::from_secret(HMAC_SECRET)
}

fn policy() -> ProviderPolicy {
    ProviderPolicy::new("idp", ISS, vec![AUD.to_owned()]).unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "user-1",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 600,
    })
}

fn claims_with(name: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[name] = value;
    claims
}

fn claims_without(name: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn mint(alg: J, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn mint_rs256(claims: &Value) -> String {
    mint(J::RS256, Some("rs256"), claims, &rsa_a())
}

/// Signs raw header and payload text, so tests can send JSON that serde would never produce.
fn sign_raw(header: &str, payload: &str, alg: J, key: &EncodingKey) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{signature}")
}

fn parts(token: &str) -> [String; 3] {
    let v: Vec<String> = token.split('.').map(str::to_owned).collect();
    v.try_into().unwrap()
}

/// [`verify()`], and the same answer from [`UnverifiedToken::verify`] whenever the token's
/// payload parses (as the filter verifies: payload parsed first, to pick the provider).
fn check(token: &str) -> Result<VerifiedToken, JwtError> {
    let (jwks, policy) = (every_key(), policy());
    let result = verify(token, &jwks, &policy, NOW);
    if let Ok(unverified) = UnverifiedToken::parse(token.to_owned()) {
        assert_eq!(unverified.verify(&jwks, &policy, NOW), result, "{token}");
    }
    result
}

fn check_claims(claims: &Value) -> Result<VerifiedToken, JwtError> {
    check(&mint_rs256(claims))
}

fn assert_accepted(alg: J, kid: &str, key: &EncodingKey) {
    let token = mint(alg, Some(kid), &claims(), key);
    let verified = check(&token).unwrap();
    assert_eq!(verified.subject, "user-1");
    assert_eq!(verified.kid.as_deref(), Some(kid));
}

// --- every algorithm -----------------------------------------------------------------------

#[test]
fn rs256_token_is_accepted() {
    assert_accepted(J::RS256, "rs256", &rsa_a());
}

#[test]
fn rs384_token_is_accepted() {
    assert_accepted(J::RS384, "rs384", &rsa_a());
}

#[test]
fn rs512_token_is_accepted() {
    assert_accepted(J::RS512, "rs512", &rsa_a());
}

#[test]
fn ps256_token_is_accepted() {
    assert_accepted(J::PS256, "ps256", &rsa_a());
}

#[test]
fn ps384_token_is_accepted() {
    assert_accepted(J::PS384, "ps384", &rsa_a());
}

#[test]
fn ps512_token_is_accepted() {
    assert_accepted(J::PS512, "ps512", &rsa_a());
}

#[test]
fn es256_token_is_accepted() {
    assert_accepted(J::ES256, "es256", &p256());
}

#[test]
fn es384_token_is_accepted() {
    assert_accepted(J::ES384, "es384", &p384());
}

#[test]
fn eddsa_token_is_accepted() {
    assert_accepted(J::EdDSA, "eddsa", &ed25519());
}

#[test]
fn hs256_token_is_accepted_with_a_secret_from_local_config() {
    assert_accepted(J::HS256, "hs256", &hmac());
}

#[test]
fn hs384_token_is_accepted_with_a_secret_from_local_config() {
    assert_accepted(J::HS384, "hs384", &hmac());
}

#[test]
fn hs512_token_is_accepted_with_a_secret_from_local_config() {
    assert_accepted(J::HS512, "hs512", &hmac());
}

#[test]
fn verified_token_carries_subject_tenant_permissions_expiry_issuer_provider_and_kid() {
    let policy = policy()
        .with_tenant_claim("org")
        .with_permissions_claim(PermissionsClaim::Array("permissions".into()));
    let mut claims = claims_with("org", json!("acme"));
    claims["permissions"] = json!(["read:orders"]);
    let token = mint_rs256(&claims);
    let verified = verify(&token, &every_key(), &policy, NOW).unwrap();
    assert_eq!(
        verified,
        VerifiedToken {
            subject: "user-1".into(),
            tenant: Some("acme".into()),
            permissions: vec!["read:orders".into()],
            expires_at: NOW + 600,
            issuer: ISS.into(),
            provider: "idp".into(),
            kid: Some("rs256".into()),
        }
    );
}

// --- algorithm attacks ---------------------------------------------------------------------

#[test]
fn unsigned_alg_none_token_is_rejected() {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rs256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    let token = format!("{header}.{payload}.");
    assert!(looks_like_jwt(&token));
    assert_eq!(check(&token), Err(JwtError::AlgNone));
}

#[test]
fn alg_none_in_any_case_is_rejected_even_with_a_valid_signature_attached() {
    let valid = parts(&mint_rs256(&claims()));
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"rs256"}}"#));
        let token = format!("{header}.{}.{}", valid[1], valid[2]);
        assert_eq!(check(&token), Err(JwtError::AlgNone), "{alg}");
    }
}

#[test]
fn hs256_token_signed_with_the_rsa_public_key_as_secret_is_rejected() {
    let confused = EncodingKey::from_secret(RSA_A_PUBLIC_PEM.as_bytes());
    let jwks = remote_jwks(vec![rsa_jwk("rsa", RSA_A_N, None)]);
    let with_kid = mint(J::HS256, Some("rsa"), &claims(), &confused);
    assert_eq!(
        verify(&with_kid, &jwks, &policy(), NOW),
        Err(JwtError::AlgorithmMismatch)
    );
    let without_kid = mint(J::HS256, None, &claims(), &confused);
    assert_eq!(
        verify(&without_kid, &jwks, &policy(), NOW),
        Err(JwtError::NoMatchingKey)
    );
}

#[test]
fn hs256_token_signed_with_the_raw_rsa_modulus_as_secret_is_rejected() {
    let modulus = URL_SAFE_NO_PAD.decode(RSA_A_N).unwrap();
    let token = mint(
        J::HS256,
        Some("rs256"),
        &claims(),
        &EncodingKey::from_secret(&modulus),
    );
    assert_eq!(check(&token), Err(JwtError::AlgorithmMismatch));
}

#[test]
fn rsa_key_without_alg_accepts_rs256_only() {
    let jwks = remote_jwks(vec![rsa_jwk("rsa", RSA_A_N, None)]);
    for alg in [J::RS384, J::RS512, J::PS256, J::PS384, J::PS512] {
        let token = mint(alg, Some("rsa"), &claims(), &rsa_a());
        assert_eq!(
            verify(&token, &jwks, &policy(), NOW),
            Err(JwtError::AlgorithmMismatch),
            "{alg:?}"
        );
    }
}

#[test]
fn rsa_key_pinned_to_ps256_rejects_an_rs256_token() {
    let token = mint(J::RS256, Some("ps256"), &claims(), &rsa_a());
    assert_eq!(check(&token), Err(JwtError::AlgorithmMismatch));
}

#[test]
fn es256_token_is_rejected_by_a_p384_key() {
    let token = mint(J::ES256, Some("es384"), &claims(), &p256());
    assert_eq!(check(&token), Err(JwtError::AlgorithmMismatch));
    let only_p384 = remote_jwks(vec![p384_jwk("p384")]);
    let token = mint(J::ES256, None, &claims(), &p256());
    assert_eq!(
        verify(&token, &only_p384, &policy(), NOW),
        Err(JwtError::NoMatchingKey)
    );
}

#[test]
fn es384_token_is_rejected_by_a_p256_key() {
    let token = mint(J::ES384, Some("es256"), &claims(), &p384());
    assert_eq!(check(&token), Err(JwtError::AlgorithmMismatch));
    let only_p256 = remote_jwks(vec![p256_jwk("p256")]);
    let token = mint(J::ES384, None, &claims(), &p384());
    assert_eq!(
        verify(&token, &only_p256, &policy(), NOW),
        Err(JwtError::NoMatchingKey)
    );
}

#[test]
fn unsupported_header_alg_is_rejected() {
    for alg in ["ES512", "RS1", "HS1", "Ed25519", "rs256"] {
        let header = format!(r#"{{"alg":"{alg}","kid":"rs256"}}"#);
        let token = sign_raw(&header, &claims().to_string(), J::RS256, &rsa_a());
        assert_eq!(check(&token), Err(JwtError::UnsupportedAlgorithm), "{alg}");
    }
}

// --- signature attacks ---------------------------------------------------------------------

#[test]
fn tampered_signature_is_rejected() {
    for (alg, kid, key) in [
        (J::RS256, "rs256", rsa_a()),
        (J::PS256, "ps256", rsa_a()),
        (J::ES256, "es256", p256()),
        (J::ES384, "es384", p384()),
        (J::EdDSA, "eddsa", ed25519()),
        (J::HS256, "hs256", hmac()),
    ] {
        let [h, p, s] = parts(&mint(alg, Some(kid), &claims(), &key));
        let mut sig = URL_SAFE_NO_PAD.decode(&s).unwrap();
        sig[5] ^= 0x01;
        let token = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(check(&token), Err(JwtError::BadSignature), "{alg:?}");
    }
}

#[test]
fn truncated_or_empty_signature_is_rejected() {
    for (alg, kid, key) in [
        (J::RS256, "rs256", rsa_a()),
        (J::ES256, "es256", p256()),
        (J::EdDSA, "eddsa", ed25519()),
        (J::HS256, "hs256", hmac()),
    ] {
        let [h, p, s] = parts(&mint(alg, Some(kid), &claims(), &key));
        let sig = URL_SAFE_NO_PAD.decode(&s).unwrap();
        let short = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(&sig[..sig.len() - 1]));
        assert_eq!(check(&short), Err(JwtError::BadSignature), "{alg:?}");
        assert_eq!(
            check(&format!("{h}.{p}.")),
            Err(JwtError::BadSignature),
            "{alg:?}"
        );
    }
}

#[test]
fn tampered_payload_is_rejected() {
    let [h, _, s] = parts(&mint_rs256(&claims()));
    let forged = URL_SAFE_NO_PAD.encode(claims_with("sub", json!("admin")).to_string());
    assert_eq!(
        check(&format!("{h}.{forged}.{s}")),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn tampered_header_is_rejected() {
    let [_, p, s] = parts(&mint_rs256(&claims()));
    let forged = URL_SAFE_NO_PAD.encode(r#"{"kid":"rs256","alg":"RS256"}"#);
    assert_eq!(
        check(&format!("{forged}.{p}.{s}")),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn token_signed_by_another_rsa_key_under_a_known_kid_is_rejected() {
    let token = mint(J::RS256, Some("rs256"), &claims(), &rsa_b());
    assert_eq!(check(&token), Err(JwtError::BadSignature));
}

#[test]
fn token_signed_with_another_hmac_secret_is_rejected() {
    let other = EncodingKey::from_secret(&[7u8; 64]);
    let token = mint(J::HS256, Some("hs256"), &claims(), &other);
    assert_eq!(check(&token), Err(JwtError::BadSignature));
}

// --- key selection -------------------------------------------------------------------------

#[test]
fn unknown_kid_is_rejected_and_reported_by_has_kid() {
    let jwks = every_key();
    assert!(jwks.has_kid("rs256"));
    assert!(!jwks.has_kid("rotated-key"));
    let token = mint(J::RS256, Some("rotated-key"), &claims(), &rsa_a());
    assert_eq!(check(&token), Err(JwtError::UnknownKid));
}

#[test]
fn token_without_kid_is_rejected_when_two_keys_fit_its_alg() {
    let jwks = remote_jwks(vec![
        rsa_jwk("a", RSA_A_N, None),
        rsa_jwk("b", RSA_B_N, None),
    ]);
    let token = mint(J::RS256, None, &claims(), &rsa_a());
    assert_eq!(
        verify(&token, &jwks, &policy(), NOW),
        Err(JwtError::AmbiguousKey)
    );
}

#[test]
fn token_without_kid_is_accepted_when_exactly_one_key_fits_its_alg() {
    let jwks = remote_jwks(vec![
        rsa_jwk("a", RSA_A_N, None),
        rsa_jwk("b", RSA_B_N, Some("PS256")),
        p256_jwk("p"),
        ed25519_jwk("e"),
    ]);
    let token = mint(J::RS256, None, &claims(), &rsa_a());
    let verified = verify(&token, &jwks, &policy(), NOW).unwrap();
    assert_eq!(verified.kid.as_deref(), Some("a"));
}

#[test]
fn kid_shared_by_keys_of_different_algorithms_selects_by_alg() {
    let jwks = remote_jwks(vec![
        rsa_jwk("current", RSA_B_N, Some("PS256")),
        rsa_jwk("current", RSA_A_N, Some("RS256")),
    ]);
    let token = mint(J::RS256, Some("current"), &claims(), &rsa_a());
    assert!(verify(&token, &jwks, &policy(), NOW).is_ok());
}

#[test]
fn kid_shared_by_two_keys_of_the_same_alg_is_ambiguous() {
    let jwks = remote_jwks(vec![
        rsa_jwk("current", RSA_B_N, None),
        rsa_jwk("current", RSA_A_N, None),
    ]);
    let token = mint(J::RS256, Some("current"), &claims(), &rsa_a());
    assert_eq!(
        verify(&token, &jwks, &policy(), NOW),
        Err(JwtError::AmbiguousKey)
    );
}

#[test]
fn token_against_an_empty_jwks_finds_no_key() {
    let jwks = remote_jwks(vec![]);
    let token = mint(J::RS256, None, &claims(), &rsa_a());
    assert_eq!(
        verify(&token, &jwks, &policy(), NOW),
        Err(JwtError::NoMatchingKey)
    );
}

// --- header parameters ---------------------------------------------------------------------

#[test]
fn crit_header_is_rejected_even_when_the_signature_is_valid() {
    for header in [
        r#"{"alg":"RS256","kid":"rs256","crit":["exp"],"exp":1}"#,
        r#"{"alg":"RS256","kid":"rs256","crit":["b64"],"b64":false}"#,
        r#"{"alg":"RS256","kid":"rs256","crit":[]}"#,
    ] {
        let token = sign_raw(header, &claims().to_string(), J::RS256, &rsa_a());
        assert_eq!(check(&token), Err(JwtError::Crit), "{header}");
    }
}

#[test]
fn jku_x5u_jwk_and_x5c_header_parameters_never_supply_a_key() {
    let attacker_jwk = rsa_jwk("rs256", RSA_B_N, None);
    let header = json!({
        "alg": "RS256",
        "kid": "rs256",
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "jwk": attacker_jwk,
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    })
    .to_string();
    let by_attacker = sign_raw(&header, &claims().to_string(), J::RS256, &rsa_b());
    assert_eq!(check(&by_attacker), Err(JwtError::BadSignature));
    let by_issuer = sign_raw(&header, &claims().to_string(), J::RS256, &rsa_a());
    assert!(check(&by_issuer).is_ok());
}

#[test]
fn typ_and_cty_header_parameters_are_accepted() {
    let header = r#"{"alg":"RS256","kid":"rs256","typ":"at+jwt","cty":"JWT"}"#;
    let token = sign_raw(header, &claims().to_string(), J::RS256, &rsa_a());
    assert!(check(&token).is_ok());
}

#[test]
fn header_without_alg_or_with_a_mistyped_alg_or_kid_is_malformed() {
    for header in [
        r#"{"kid":"rs256"}"#,
        r#"{"alg":["RS256"],"kid":"rs256"}"#,
        r#"{"alg":"RS256","kid":7}"#,
    ] {
        let token = sign_raw(header, &claims().to_string(), J::RS256, &rsa_a());
        assert!(
            matches!(check(&token), Err(JwtError::Malformed(_))),
            "{header}"
        );
    }
}

// --- time claims ---------------------------------------------------------------------------

#[test]
fn token_is_expired_exactly_at_exp_plus_skew() {
    assert_eq!(
        check_claims(&claims_with("exp", json!(NOW - 60))),
        Err(JwtError::Expired)
    );
}

#[test]
fn token_is_accepted_one_second_before_exp_plus_skew() {
    let verified = check_claims(&claims_with("exp", json!(NOW - 59))).unwrap();
    assert_eq!(verified.expires_at, NOW - 59);
}

#[test]
fn token_is_expired_exactly_at_exp_with_zero_skew() {
    let policy = policy().with_clock_skew_secs(0);
    let token = mint_rs256(&claims_with("exp", json!(NOW)));
    assert_eq!(
        verify(&token, &every_key(), &policy, NOW),
        Err(JwtError::Expired)
    );
    assert!(verify(&token, &every_key(), &policy, NOW - 1).is_ok());
}

#[test]
fn token_is_accepted_when_nbf_is_exactly_skew_ahead() {
    assert!(check_claims(&claims_with("nbf", json!(NOW + 60))).is_ok());
}

#[test]
fn token_is_not_yet_valid_when_nbf_is_beyond_the_skew() {
    assert_eq!(
        check_claims(&claims_with("nbf", json!(NOW + 61))),
        Err(JwtError::NotYetValid)
    );
}

#[test]
fn token_is_accepted_when_iat_is_exactly_skew_ahead() {
    assert!(check_claims(&claims_with("iat", json!(NOW + 60))).is_ok());
}

#[test]
fn token_issued_in_the_future_beyond_the_skew_is_rejected() {
    assert_eq!(
        check_claims(&claims_with("iat", json!(NOW + 61))),
        Err(JwtError::IssuedInFuture)
    );
}

#[test]
fn token_without_exp_is_rejected() {
    assert_eq!(
        check_claims(&claims_without("exp")),
        Err(JwtError::MissingClaim("exp".into()))
    );
}

#[test]
fn token_without_nbf_or_iat_is_accepted() {
    let mut claims = claims_without("nbf");
    claims.as_object_mut().unwrap().remove("iat");
    assert!(check_claims(&claims).is_ok());
}

#[test]
fn string_numeric_dates_are_rejected() {
    for name in ["exp", "nbf", "iat"] {
        let claims = claims_with(name, json!((NOW + 600).to_string()));
        assert_eq!(
            check_claims(&claims),
            Err(JwtError::InvalidClaim(name.into())),
            "{name}"
        );
    }
    assert_eq!(
        check_claims(&claims_with("exp", json!(null))),
        Err(JwtError::InvalidClaim("exp".into()))
    );
}

#[test]
fn fractional_exp_is_honoured_to_the_fraction() {
    // Valid while now < exp + skew: NOW < NOW - 59.5 + 60 holds, NOW < NOW - 60.5 + 60 does not.
    let verified = check_claims(&claims_with("exp", json!(NOW as f64 - 59.5))).unwrap();
    assert_eq!(verified.expires_at, NOW - 59);
    assert_eq!(
        check_claims(&claims_with("exp", json!(NOW as f64 - 60.5))),
        Err(JwtError::Expired)
    );
}

#[test]
fn fractional_nbf_and_iat_are_honoured_to_the_fraction() {
    assert!(check_claims(&claims_with("nbf", json!(NOW as f64 + 59.5))).is_ok());
    assert_eq!(
        check_claims(&claims_with("nbf", json!(NOW as f64 + 60.5))),
        Err(JwtError::NotYetValid)
    );
    assert_eq!(
        check_claims(&claims_with("iat", json!(NOW as f64 + 60.5))),
        Err(JwtError::IssuedInFuture)
    );
}

#[test]
fn negative_exp_is_expired() {
    assert_eq!(
        check_claims(&claims_with("exp", json!(-1))),
        Err(JwtError::Expired)
    );
}

// --- issuer, audience, subject, tenant, permissions ----------------------------------------

#[test]
fn wrong_issuer_is_rejected() {
    for iss in [
        "https://evil.example/",
        "https://idp.example.com",
        "HTTPS://IDP.EXAMPLE.COM/",
    ] {
        assert_eq!(
            check_claims(&claims_with("iss", json!(iss))),
            Err(JwtError::WrongIssuer),
            "{iss}"
        );
    }
}

#[test]
fn missing_or_mistyped_issuer_is_rejected() {
    assert_eq!(
        check_claims(&claims_without("iss")),
        Err(JwtError::MissingClaim("iss".into()))
    );
    assert_eq!(
        check_claims(&claims_with("iss", json!([ISS]))),
        Err(JwtError::InvalidClaim("iss".into()))
    );
}

#[test]
fn audience_array_intersecting_the_accepted_list_is_accepted() {
    let policy = ProviderPolicy::new("idp", ISS, vec!["other".into(), AUD.into()]).unwrap();
    let token = mint_rs256(&claims_with("aud", json!(["unrelated", AUD])));
    assert!(verify(&token, &every_key(), &policy, NOW).is_ok());
}

#[test]
fn wrong_audience_is_rejected() {
    for aud in [json!("https://other.example"), json!(["a", "b"]), json!([])] {
        assert_eq!(
            check_claims(&claims_with("aud", aud.clone())),
            Err(JwtError::WrongAudience),
            "{aud}"
        );
    }
}

#[test]
fn missing_or_mistyped_audience_is_rejected() {
    assert_eq!(
        check_claims(&claims_without("aud")),
        Err(JwtError::MissingClaim("aud".into()))
    );
    for aud in [json!(1), json!([AUD, 1]), json!({"aud": AUD})] {
        assert_eq!(
            check_claims(&claims_with("aud", aud.clone())),
            Err(JwtError::InvalidClaim("aud".into())),
            "{aud}"
        );
    }
}

#[test]
fn subject_comes_from_the_configured_claim() {
    let policy = policy().with_subject_claim("email");
    let token = mint_rs256(&claims_with("email", json!("a@example.com")));
    let verified = verify(&token, &every_key(), &policy, NOW).unwrap();
    assert_eq!(verified.subject, "a@example.com");
    let token = mint_rs256(&claims());
    assert_eq!(
        verify(&token, &every_key(), &policy, NOW),
        Err(JwtError::MissingClaim("email".into()))
    );
}

#[test]
fn empty_or_mistyped_subject_is_rejected() {
    assert_eq!(
        check_claims(&claims_with("sub", json!(""))),
        Err(JwtError::InvalidClaim("sub".into()))
    );
    assert_eq!(
        check_claims(&claims_with("sub", json!(42))),
        Err(JwtError::InvalidClaim("sub".into()))
    );
}

#[test]
fn tenant_is_optional_but_must_be_a_non_empty_string() {
    let policy = policy().with_tenant_claim("org");
    let run = |claims: &Value| verify(&mint_rs256(claims), &every_key(), &policy, NOW);
    assert_eq!(run(&claims()).unwrap().tenant, None);
    assert_eq!(
        run(&claims_with("org", json!("acme")))
            .unwrap()
            .tenant
            .as_deref(),
        Some("acme")
    );
    for bad in [json!(7), json!(""), json!(["acme"])] {
        assert_eq!(
            run(&claims_with("org", bad)),
            Err(JwtError::InvalidClaim("org".into()))
        );
    }
}

#[test]
fn permissions_are_the_union_of_an_array_claim_and_a_scope_string() {
    let policy = policy()
        .with_permissions_claim(PermissionsClaim::Array("permissions".into()))
        .with_permissions_claim(PermissionsClaim::SpaceSeparated("scope".into()));
    let mut claims = claims_with("permissions", json!(["read:orders", "write:orders", ""]));
    claims["scope"] = json!("openid  read:orders profile ");
    let verified = verify(&mint_rs256(&claims), &every_key(), &policy, NOW).unwrap();
    assert_eq!(
        verified.permissions,
        ["read:orders", "write:orders", "openid", "profile"]
    );
}

#[test]
fn absent_permissions_claims_give_no_permissions() {
    let policy = policy()
        .with_permissions_claim(PermissionsClaim::Array("permissions".into()))
        .with_permissions_claim(PermissionsClaim::SpaceSeparated("scope".into()));
    let verified = verify(&mint_rs256(&claims()), &every_key(), &policy, NOW).unwrap();
    assert!(verified.permissions.is_empty());
}

#[test]
fn mistyped_permissions_claims_are_rejected() {
    let policy = policy()
        .with_permissions_claim(PermissionsClaim::Array("permissions".into()))
        .with_permissions_claim(PermissionsClaim::SpaceSeparated("scope".into()));
    let run = |claims: &Value| verify(&mint_rs256(claims), &every_key(), &policy, NOW);
    assert_eq!(
        run(&claims_with("permissions", json!("read:orders"))),
        Err(JwtError::InvalidClaim("permissions".into()))
    );
    assert_eq!(
        run(&claims_with("permissions", json!(["read", 1]))),
        Err(JwtError::InvalidClaim("permissions".into()))
    );
    assert_eq!(
        run(&claims_with("scope", json!(["read"]))),
        Err(JwtError::InvalidClaim("scope".into()))
    );
}

// --- duplicate member names ----------------------------------------------------------------

#[test]
fn duplicate_member_in_the_header_is_rejected() {
    for header in [
        r#"{"alg":"RS256","kid":"rs256","kid":"rs256"}"#,
        r#"{"alg":"HS256","alg":"RS256","kid":"rs256"}"#,
    ] {
        let token = sign_raw(header, &claims().to_string(), J::RS256, &rsa_a());
        assert_eq!(
            check(&token),
            Err(JwtError::Malformed("header has a duplicate member name")),
            "{header}"
        );
    }
}

#[test]
fn duplicate_member_in_the_payload_is_rejected() {
    let header = r#"{"alg":"RS256","kid":"rs256"}"#;
    let claims = claims().to_string();
    let body = claims.trim_start_matches('{');
    for payload in [
        format!(r#"{{"sub":"admin",{body}"#),
        format!(r#"{{"exp":9999999999,{body}"#),
        format!(r#"{{"extra":{{"a":1,"a":2}},{body}"#),
    ] {
        let token = sign_raw(header, &payload, J::RS256, &rsa_a());
        assert_eq!(
            check(&token),
            Err(JwtError::Malformed("payload has a duplicate member name")),
            "{payload}"
        );
    }
}

#[test]
fn payload_that_is_not_a_json_object_is_rejected_after_its_signature_verifies() {
    let header = r#"{"alg":"RS256","kid":"rs256"}"#;
    for payload in ["[]", "\"sub\"", "{", "{} {}"] {
        let token = sign_raw(header, payload, J::RS256, &rsa_a());
        assert_eq!(
            check(&token),
            Err(JwtError::Malformed("payload is not a JSON object")),
            "{payload}"
        );
    }
}

// --- base64url and shape -------------------------------------------------------------------

#[test]
fn padded_token_parts_are_rejected() {
    let [h, p, s] = parts(&mint(J::HS256, Some("hs256"), &claims(), &hmac()));
    for token in [
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}==.{s}"),
        format!("{h}.{p}.{s}="),
    ] {
        assert!(
            matches!(check(&token), Err(JwtError::Malformed(_))),
            "{token}"
        );
    }
}

#[test]
fn standard_alphabet_signature_is_rejected() {
    let [h, p, s] = parts(&mint_rs256(&claims()));
    let standard = STANDARD_NO_PAD.encode(URL_SAFE_NO_PAD.decode(&s).unwrap());
    assert_ne!(standard, s, "fixture signature should contain `-` or `_`");
    assert_eq!(
        check(&format!("{h}.{p}.{standard}")),
        Err(JwtError::Malformed("signature is not canonical base64url"))
    );
}

#[test]
fn plus_or_slash_anywhere_is_rejected() {
    let [h, p, s] = parts(&mint_rs256(&claims()));
    for token in [
        format!("{h}.{p}.+{}", &s[1..]),
        format!("{h}.{p}./{}", &s[1..]),
        format!("{h}.+{}.{s}", &p[1..]),
        format!("/{}.{p}.{s}", &h[1..]),
    ] {
        assert!(
            matches!(check(&token), Err(JwtError::Malformed(_))),
            "{token}"
        );
    }
}

#[test]
fn whitespace_inside_or_around_the_token_is_rejected() {
    let token = mint_rs256(&claims());
    let [h, p, s] = parts(&token);
    let (p1, p2) = p.split_at(8);
    for token in [
        format!("{h}.{p1}\n{p2}.{s}"),
        format!("{h}.{p1} {p2}.{s}"),
        format!("{h} .{p}.{s}"),
        format!("{token}\n"),
        format!(" {token}"),
    ] {
        assert!(
            matches!(check(&token), Err(JwtError::Malformed(_))),
            "{token:?}"
        );
    }
}

#[test]
fn signature_with_nonzero_trailing_bits_is_rejected_as_malformed() {
    let [h, p, s] = parts(&mint_rs256(&claims()));
    // 256 signature bytes end in one lone byte: the last symbol carries 2 data bits and 4 bits
    // that must be zero. Setting one of them gives a second spelling of the same signature.
    assert_eq!(s.len() % 4, 2);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = s.as_bytes()[s.len() - 1];
    let index = ALPHABET.iter().position(|&c| c == last).unwrap();
    let bent = char::from(ALPHABET[index | 1]);
    let token = format!("{h}.{p}.{}{bent}", &s[..s.len() - 1]);
    assert_eq!(
        check(&token),
        Err(JwtError::Malformed("signature is not canonical base64url"))
    );
}

#[test]
fn token_without_exactly_three_parts_is_malformed() {
    let [h, p, s] = parts(&mint_rs256(&claims()));
    for token in [
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}.{p}.{s}"),
        String::new(),
        "..".to_owned(),
    ] {
        assert!(
            matches!(check(&token), Err(JwtError::Malformed(_))),
            "{token}"
        );
    }
}

#[test]
fn token_over_the_size_cap_is_rejected_before_parsing() {
    let token = mint_rs256(&claims());
    let at_cap = policy().with_max_token_bytes(token.len());
    assert!(verify(&token, &every_key(), &at_cap, NOW).is_ok());
    let below = policy().with_max_token_bytes(token.len() - 1);
    assert_eq!(
        verify(&token, &every_key(), &below, NOW),
        Err(JwtError::TooLarge {
            limit: token.len() - 1
        })
    );
}

#[test]
fn token_over_the_default_8_kib_is_rejected() {
    let big = mint_rs256(&claims_with("padding", json!("x".repeat(8 * 1024))));
    assert_eq!(check(&big), Err(JwtError::TooLarge { limit: 8192 }));
}

// --- errors --------------------------------------------------------------------------------

#[test]
fn error_messages_never_contain_the_token_or_its_claims() {
    let secretish = "evil-marker";
    let mut claims = claims_with("iss", json!(secretish));
    claims["sub"] = json!(secretish);
    let token = mint(J::RS256, Some(secretish), &claims, &rsa_a());
    let known_kid = mint_rs256(&claims);
    let [h, p, s] = parts(&known_kid);
    let bad_sig = format!("{h}.{p}.{}", &s[..s.len() - 4]);
    for token in [token, known_kid, bad_sig] {
        let err = check(&token).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains(secretish), "{text}");
        for part in token.split('.').filter(|part| part.len() > 3) {
            assert!(!text.contains(part), "{text}");
        }
    }
}

#[test]
fn every_error_has_a_listed_unique_reason_code() {
    let all = [
        JwtError::TooLarge { limit: 1 },
        JwtError::Malformed("x"),
        JwtError::AlgNone,
        JwtError::UnsupportedAlgorithm,
        JwtError::Crit,
        JwtError::UnknownKid,
        JwtError::NoMatchingKey,
        JwtError::AmbiguousKey,
        JwtError::AlgorithmMismatch,
        JwtError::BadSignature,
        JwtError::Expired,
        JwtError::NotYetValid,
        JwtError::IssuedInFuture,
        JwtError::WrongIssuer,
        JwtError::WrongAudience,
        JwtError::MissingClaim("x".into()),
        JwtError::InvalidClaim("x".into()),
    ];
    let reasons: Vec<&str> = all.iter().map(JwtError::reason).collect();
    assert_eq!(reasons, JwtError::REASONS);
}

// --- JWKS parsing --------------------------------------------------------------------------

fn skipped_reasons(jwks: &Jwks) -> Vec<SkipReason> {
    jwks.skipped().iter().map(|s| s.reason).collect()
}

#[test]
fn remote_jwks_skips_symmetric_keys_and_local_jwks_keeps_them() {
    let keys = vec![oct_jwk("hs", "HS256", HMAC_SECRET)];
    let remote = remote_jwks(keys.clone());
    assert!(remote.is_empty());
    assert_eq!(
        remote.skipped(),
        [SkippedKey {
            index: 0,
            kid: Some("hs".into()),
            reason: SkipReason::SymmetricKeyNotAllowed
        }]
    );
    assert_eq!(local_jwks(keys).len(), 1);
}

#[test]
fn rsa_key_under_2048_bits_is_skipped() {
    let jwks = remote_jwks(vec![rsa_jwk("small", RSA_SMALL_N, None)]);
    assert_eq!(skipped_reasons(&jwks), [SkipReason::RsaKeyTooSmall]);
}

#[test]
fn encryption_and_non_verify_keys_are_skipped() {
    let mut enc = rsa_jwk("enc", RSA_A_N, None);
    enc["use"] = json!("enc");
    let mut wrap = p256_jwk("wrap");
    wrap["key_ops"] = json!(["wrapKey"]);
    let mut verify_op = p256_jwk("verify");
    verify_op["key_ops"] = json!(["verify"]);
    let jwks = remote_jwks(vec![enc, wrap, verify_op]);
    assert_eq!(
        skipped_reasons(&jwks),
        [SkipReason::NotForSignatures, SkipReason::NotForVerification]
    );
    assert!(jwks.has_kid("verify"));
}

#[test]
fn unsupported_key_types_and_curves_are_skipped_without_failing_the_set() {
    let jwks = remote_jwks(vec![
        json!({"kty": "OKP", "crv": "X25519", "x": ED25519_X}),
        json!({"kty": "OKP", "crv": "Ed448", "x": ED25519_X}),
        json!({"kty": "EC", "crv": "P-521", "x": P384_X, "y": P384_Y}),
        json!({"kty": "EC", "crv": "secp256k1", "x": P256_X, "y": P256_Y}),
        json!({"kty": "PQ", "pub": "AA"}),
        json!("not an object"),
        p256_jwk("ok"),
    ]);
    assert_eq!(
        skipped_reasons(&jwks),
        [
            SkipReason::UnsupportedCurve,
            SkipReason::UnsupportedCurve,
            SkipReason::UnsupportedCurve,
            SkipReason::UnsupportedCurve,
            SkipReason::UnsupportedKeyType,
            SkipReason::NotAnObject,
        ]
    );
    assert_eq!(jwks.len(), 1);
}

#[test]
fn jwk_whose_alg_contradicts_its_key_type_or_curve_is_skipped() {
    let mut p256_as_es384 = p256_jwk("p256");
    p256_as_es384["alg"] = json!("ES384");
    let mut p384_as_es256 = p384_jwk("p384");
    p384_as_es256["alg"] = json!("ES256");
    let mut ed_as_es256 = ed25519_jwk("ed");
    ed_as_es256["alg"] = json!("ES256");
    let jwks = local_jwks(vec![
        rsa_jwk("rsa-as-hmac", RSA_A_N, Some("HS256")),
        rsa_jwk("rsa-as-ec", RSA_A_N, Some("ES256")),
        p256_as_es384,
        p384_as_es256,
        ed_as_es256,
        oct_jwk("hmac-as-rsa", "RS256", HMAC_SECRET),
    ]);
    assert_eq!(skipped_reasons(&jwks), [SkipReason::AlgorithmMismatch; 6]);
}

#[test]
fn jwk_with_alg_none_or_unknown_is_skipped() {
    let jwks = remote_jwks(vec![
        rsa_jwk("none", RSA_A_N, Some("none")),
        rsa_jwk("rsa1_5", RSA_A_N, Some("RSA1_5")),
    ]);
    assert_eq!(
        skipped_reasons(&jwks),
        [SkipReason::UnsupportedAlgorithm; 2]
    );
}

#[test]
fn malformed_key_members_are_skipped() {
    let short_x = URL_SAFE_NO_PAD.encode([1u8; 31]);
    let jwks = remote_jwks(vec![
        json!({"kty": "RSA", "e": "AQAB"}),
        json!({"kty": "RSA", "n": RSA_A_N, "e": "AQ+B"}),
        json!({"kty": "EC", "crv": "P-256", "x": short_x, "y": P256_Y}),
        json!({"kty": "EC", "x": P256_X, "y": P256_Y}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": short_x}),
        json!({"kty": 1}),
        json!({"kty": "RSA", "kid": 5, "n": RSA_A_N, "e": "AQAB"}),
    ]);
    assert_eq!(
        skipped_reasons(&jwks),
        [
            SkipReason::Malformed("n"),
            SkipReason::Malformed("e"),
            SkipReason::Malformed("x"),
            SkipReason::Malformed("crv"),
            SkipReason::Malformed("x"),
            SkipReason::Malformed("kty"),
            SkipReason::Malformed("kid"),
        ]
    );
}

#[test]
fn ec_point_off_the_curve_is_skipped() {
    let mut y = URL_SAFE_NO_PAD.decode(P256_Y).unwrap();
    y[31] ^= 1;
    let jwks = remote_jwks(vec![json!({
        "kty": "EC", "crv": "P-256", "x": P256_X, "y": URL_SAFE_NO_PAD.encode(y)
    })]);
    assert_eq!(skipped_reasons(&jwks), [SkipReason::InvalidKey]);
}

#[test]
fn rsa_key_with_an_even_or_tiny_exponent_is_skipped() {
    let jwks = remote_jwks(vec![
        json!({"kty": "RSA", "n": RSA_A_N, "e": "AQAA"}),
        json!({"kty": "RSA", "n": RSA_A_N, "e": "AQ"}),
    ]);
    assert_eq!(skipped_reasons(&jwks), [SkipReason::InvalidKey; 2]);
}

#[test]
fn small_order_ed25519_key_is_skipped() {
    // The identity point: every signature "verifies" under it with a lax verifier.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let jwks = remote_jwks(vec![
        json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(identity)}),
    ]);
    assert_eq!(skipped_reasons(&jwks), [SkipReason::InvalidKey]);
}

#[test]
fn hmac_secret_shorter_than_the_hash_is_skipped() {
    let jwks = local_jwks(vec![
        oct_jwk("a", "HS256", &HMAC_SECRET[..31]),
        oct_jwk("b", "HS384", &HMAC_SECRET[..47]),
        oct_jwk("c", "HS512", &HMAC_SECRET[..63]),
        oct_jwk("d", "HS512", HMAC_SECRET),
    ]);
    assert_eq!(skipped_reasons(&jwks), [SkipReason::HmacSecretTooShort; 3]);
    assert_eq!(jwks.len(), 1);
}

#[test]
fn padded_base64url_in_jwk_members_is_tolerated() {
    let mut jwk = p256_jwk("p");
    jwk["x"] = json!(format!("{P256_X}="));
    let n_pad = "=".repeat((4 - RSA_A_N.len() % 4) % 4);
    let jwks = remote_jwks(vec![
        jwk,
        json!({"kty": "RSA", "n": format!("{RSA_A_N}{n_pad}"), "e": "AQAB"}),
    ]);
    assert_eq!(jwks.skipped(), []);
    assert_eq!(jwks.len(), 2);
}

#[test]
fn jwks_that_is_not_a_json_object_with_keys_fails_to_parse() {
    assert!(matches!(Jwks::parse(b"{"), Err(JwksError::Json(_))));
    assert!(matches!(Jwks::parse(b"[]"), Err(JwksError::NotAnObject)));
    assert!(matches!(Jwks::parse(b"{}"), Err(JwksError::NoKeys)));
    assert!(matches!(
        Jwks::parse(br#"{"keys":{}}"#),
        Err(JwksError::NoKeys)
    ));
    assert!(matches!(
        Jwks::parse(br#"{"keys":[],"keys":[]}"#),
        Err(JwksError::DuplicateMember)
    ));
}

#[test]
fn jwks_debug_output_redacts_hmac_secrets() {
    let jwks = local_jwks(vec![oct_jwk("hs", "HS256", HMAC_SECRET)]);
    let debug = format!("{jwks:?}");
    assert!(debug.contains("redacted"));
    assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(HMAC_SECRET)));
    assert!(!debug.contains("107, 101, 121")); // "key" as bytes
}

#[test]
fn jwks_lists_each_usable_key_with_its_pinned_algorithm() {
    let jwks = remote_jwks(vec![rsa_jwk("r", RSA_A_N, None), p384_jwk("p")]);
    let keys: Vec<_> = jwks.keys().collect();
    assert_eq!(
        keys,
        [(Some("r"), Algorithm::Rs256), (Some("p"), Algorithm::Es384)]
    );
}

// --- looks_like_jwt ------------------------------------------------------------------------

#[test]
fn compact_jws_looks_like_a_jwt() {
    assert!(looks_like_jwt(&mint_rs256(&claims())));
    assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
    assert!(looks_like_jwt("eyJh.eyJi."));
}

#[test]
fn api_keys_and_other_strings_do_not_look_like_a_jwt() {
    for s in [
        "kg_0123456789abcdef0123456789abcdef0123456789abcdef",
        "",
        "..",
        ".eyJi.c2ln",
        "eyJh..c2ln",
        "eyJh.eyJi",
        "a.b.c.d.e",
        "eyJh.eyJi.c2ln=",
        "eyJh.ey+i.c2ln",
        "eyJh.eyJi.c2 ln",
    ] {
        assert!(!looks_like_jwt(s), "{s}");
    }
}
