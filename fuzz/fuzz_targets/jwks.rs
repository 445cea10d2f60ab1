//! `Jwks::parse` (a JWKS fetched from an issuer) and `Jwks::parse_local` (one written in the
//! filter's configuration) on any bytes, then `jwt::verify` with every key that was kept.
//!
//! Invariants, beyond "never panics" (in parsing, or in verifying with fuzzed key material):
//! - The two parsers read the same document: both fail or both succeed, and account for the same
//!   entries, each either kept or skipped with its index.
//! - They differ only in symmetric keys: the keys `parse` keeps are exactly the non-HMAC keys
//!   `parse_local` keeps, in order, and each HMAC key `parse_local` keeps is skipped by `parse`
//!   as `SymmetricKeyNotAllowed`.
//! - `has_kid` agrees with the `kid`s that `keys` lists.
//! - A token with a made-up signature is never accepted by a parsed key.

#![no_main]

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use keygate_core::jwt::{self, Algorithm, Jwks, ProviderPolicy, SkipReason};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let remote = Jwks::parse(data);
    let local = Jwks::parse_local(data);
    let (remote, local) = match (remote, local) {
        (Ok(remote), Ok(local)) => (remote, local),
        (Err(_), Err(_)) => return,
        (remote, local) => panic!("parsers disagree: {remote:?} vs {local:?}"),
    };

    let entries = local.len() + local.skipped().len();
    assert_eq!(remote.len() + remote.skipped().len(), entries);
    let local_skipped: BTreeSet<usize> = local.skipped().iter().map(|s| s.index).collect();
    let remote_skipped: BTreeSet<usize> = remote.skipped().iter().map(|s| s.index).collect();
    assert_eq!(
        local_skipped.len(),
        local.skipped().len(),
        "an index skipped twice"
    );
    assert!(local_skipped.iter().all(|&i| i < entries));
    assert!(remote_skipped.is_superset(&local_skipped));

    let is_hmac =
        |alg: Algorithm| matches!(alg, Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512);
    let local_public: Vec<_> = local.keys().filter(|(_, alg)| !is_hmac(*alg)).collect();
    let remote_keys: Vec<_> = remote.keys().collect();
    assert_eq!(remote_keys, local_public);
    let hmac_keys = local.len() - local_public.len();
    let refused = remote
        .skipped()
        .iter()
        .filter(|s| {
            s.reason == SkipReason::SymmetricKeyNotAllowed && !local_skipped.contains(&s.index)
        })
        .count();
    assert_eq!(refused, hmac_keys);

    for jwks in [&remote, &local] {
        for (kid, _) in jwks.keys() {
            if let Some(kid) = kid {
                assert!(jwks.has_kid(kid));
            }
        }
        assert!(
            !jwks.has_kid("\u{0}not-a-kid")
                || jwks.keys().any(|(k, _)| k == Some("\u{0}not-a-kid"))
        );
    }

    // Verify with each kept key (at most a few, the RSA ones are slow) a token whose signature
    // has the right length but was never made by a private key.
    let policy =
        ProviderPolicy::new("p", "https://idp.example", vec!["api".into()]).expect("fixed policy");
    let payload = URL_SAFE_NO_PAD
        .encode(br#"{"iss":"https://idp.example","aud":"api","sub":"u","exp":1700000600}"#);
    for (kid, alg) in local.keys().take(4) {
        let mut header = serde_json::json!({ "alg": alg.name() });
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let len = match alg {
            Algorithm::Es256 | Algorithm::EdDsa | Algorithm::Hs512 => 64,
            Algorithm::Es384 | Algorithm::Hs384 => 48,
            Algorithm::Hs256 => 32,
            _ => 256,
        };
        let signature: Vec<u8> = data.iter().copied().cycle().take(len).collect();
        let token = format!(
            "{}.{payload}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(signature)
        );
        let result = jwt::verify(&token, &local, &policy, NOW);
        if !is_hmac(alg) {
            assert!(
                result.is_err(),
                "a made-up signature verified under a public key"
            );
        }
    }
});
