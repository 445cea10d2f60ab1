//! Native cost of the work keygate-core does per request, for `bench/run.sh` (which runs this with
//! short measurement times and reads criterion's `estimates.json`, so the benchmark names below
//! are what the report looks up).
//!
//! - `api_key/*`: a key hit is `ApiKey::parse` (format and checksum, inside `decision::plan`),
//!   `KeyHash::of` and `cache::find` on the bucket's bytes; `cache/insert` is the miss path's
//!   bucket rewrite.
//! - `decision/*`: the whole of `plan` (path, route, credential, hash), `prepare` (identity
//!   headers, once per credential and worker) and `judge` (permissions) for a typical request,
//!   with the 10-rule table.
//! - `route_lookup/{10,100,1000}`: `normalize_path` plus `RouteTable::lookup` of `GET /orders/42`,
//!   whose rule comes after all the generated ones (the same table shape as the end-to-end rows).
//! - `jwt_verify/{EdDSA,ES256,RS256}`: `jwt::verify` of a token minted with jsonwebtoken (ring).
//! - `jwt/worker_cache_hit`: a verified-token hit in the worker's cache: `Tagger::tag` and
//!   `LocalCache::get`; `jwt/cache_hit`: one in shared data: `KeyHash::of(token)` and
//!   `cache::find`. `api_key/worker_cache_hit` is the key's: `KeyHash::of` and `LocalCache::get`.
//!
//! Everything the filter does on the host (shared-data reads, header maps, the Wasm boundary) is
//! not here; the end-to-end rows measure it.

// A benchmark's setup has nothing to recover from: a broken fixture should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use jsonwebtoken::{Algorithm as J, EncodingKey, Header as JwtHeader};
use keygate_core::cache::{self, Answer, Entry, Identity, Principal};
use keygate_core::config::{CachePolicy, FilterConfig};
use keygate_core::decision::{self, Plan, RequestView};
use keygate_core::hostmap;
use keygate_core::jwt::{self, Jwks, PermissionsClaim, ProviderPolicy};
use keygate_core::key::{ApiKey, KeyHash, KEY_RANDOM_BYTES};
use keygate_core::local::{LocalCache, Tagger};
use keygate_core::route::{normalize_path, RawRoute, RouteTable};
use keygate_core::wire::LookupResponse;
use serde_json::{json, Value};
use std::hash::RandomState;

/// The crate's own test keys (PKCS#8 private keys and their public JWK members).
#[path = "../src/jwt/test_keys.rs"]
#[allow(dead_code)]
mod test_keys;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://issuer.bench";
const AUD: &str = "bench-api";
const POLICY: CachePolicy = CachePolicy {
    max_entries: 10_000,
    ttl_secs: 60,
    negative_ttl_secs: 10,
};

/// The 10 rules of the end-to-end rows (bench/base-rules.json, shared with bench/rows.py and
/// bench/hotpath); `GET /orders/42` matches the second to last.
const BASE_RULES: &str = include_str!("../../bench/base-rules.json");

fn base_rules() -> Vec<Value> {
    serde_json::from_str(BASE_RULES).expect("bench/base-rules.json is a JSON array")
}

/// `n` rules: generated ones first (four shapes, some sharing the `/orders` branch of the trie),
/// then the 10 base rules. bench/rows.py builds the same list for Envoy.
fn rules(n: usize) -> Vec<Value> {
    let mut out: Vec<Value> = (0..n.saturating_sub(10))
        .map(|i| match i % 4 {
            0 => json!({"methods": ["GET"], "path": format!("/svc{i}/orders/*"), "permissions": [format!("svc{i}:read")]}),
            1 => json!({"prefix": format!("/svc{i}/admin"), "permissions": [format!("svc{i}:admin")]}),
            2 => json!({"methods": ["POST"], "path": format!("/svc{i}/items"), "permissions": [format!("svc{i}:write")]}),
            _ => json!({"methods": ["GET"], "path": format!("/orders/*/svc{i}"), "permissions": [format!("svc{i}:read")]}),
        })
        .collect();
    out.extend(base_rules());
    out
}

fn config() -> FilterConfig {
    let raw = json!({
        "key_service": {"cluster": "keygate_keyservice", "token": "t"},
        "routes": base_rules(),
    });
    FilterConfig::from_json(raw.to_string().as_bytes()).expect("bench config is valid")
}

fn key(n: u8) -> ApiKey {
    ApiKey::from_random([n; KEY_RANDOM_BYTES])
}

fn valid_lookup(key_id: &str) -> LookupResponse {
    LookupResponse::Valid {
        key_id: key_id.to_owned(),
        tenant: "bench".to_owned(),
        permissions: vec!["orders:read".to_owned()],
        expires_at: None,
        cache_ttl_secs: 60,
    }
}

/// A full bucket (4 entries) whose last entry is `target`'s: the longest scan a hit can take.
fn full_bucket_ending_with(target: &ApiKey) -> Vec<u8> {
    let mut bucket: Option<Vec<u8>> = None;
    for n in 1..=3u8 {
        let entry = Entry::from_lookup(
            key(n).hash(),
            &valid_lookup("key_0000000000000001"),
            &POLICY,
            NOW,
        )
        .expect("cacheable");
        bucket = cache::insert(bucket.as_deref(), &entry, NOW);
    }
    let entry = Entry::from_lookup(
        target.hash(),
        &valid_lookup("key_00000000000000ff"),
        &POLICY,
        NOW,
    )
    .expect("cacheable");
    cache::insert(bucket.as_deref(), &entry, NOW).expect("room in the bucket")
}

/// The request headers serialized as the host hands them over.
fn request_headers(secret: &str) -> Vec<u8> {
    let pairs: Vec<(&[u8], &[u8])> = [
        (":authority", "127.0.0.1:10000"),
        (":path", "/orders/42"),
        (":method", "GET"),
        (":scheme", "http"),
        ("user-agent", "wrk"),
        ("accept", "*/*"),
        ("x-api-key", secret),
        ("x-request-id", "6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
    .collect();
    hostmap::encode(&pairs)
}

fn api_key(c: &mut Criterion) {
    let target = key(0xff);
    let secret = target.expose_secret().to_owned();
    let bucket = full_bucket_ending_with(&target);

    c.bench_function("api_key/parse", |b| {
        b.iter(|| ApiKey::parse(black_box(&secret)).expect("valid key"))
    });
    let mut local = LocalCache::new(4096);
    let cached = cache::find(&bucket, &target.hash(), NOW).expect("hit");
    local.put(
        target.hash(),
        NOW + 60,
        decision::Outcome::prepare(&config(), cached),
        NOW,
    );
    c.bench_function("api_key/worker_cache_hit", |b| {
        b.iter(|| {
            let hash = KeyHash::of(black_box(secret.as_bytes()));
            local.get(&hash, NOW).expect("hit").clone()
        })
    });
    c.bench_function("api_key/hash_and_find", |b| {
        b.iter(|| {
            let hash = KeyHash::of(black_box(secret.as_bytes()));
            cache::find(black_box(&bucket), &hash, NOW).expect("hit")
        })
    });
    let hash = target.hash();
    c.bench_function("cache/find", |b| {
        b.iter(|| cache::find(black_box(&bucket), black_box(&hash), NOW).expect("hit"))
    });
    let newcomer = Entry::from_lookup(
        key(0xee).hash(),
        &valid_lookup("key_00000000000000ee"),
        &POLICY,
        NOW,
    )
    .expect("cacheable");
    c.bench_function("cache/insert", |b| {
        b.iter(|| cache::insert(Some(black_box(&bucket)), black_box(&newcomer), NOW + 1))
    });

    let cfg = config();
    let serialized = request_headers(&secret);
    let headers = hostmap::decode(&serialized).expect("well-formed map");
    let view = RequestView {
        headers: &headers,
        route_name: None,
    };
    c.bench_function("decision/plan", |b| {
        b.iter(|| match decision::plan(&cfg, black_box(&view)) {
            Plan::CheckKey { hash, .. } => hash,
            other => panic!("unexpected plan {other:?}"),
        })
    });
    let answer = cache::find(&bucket, &hash, NOW).expect("hit");
    let Plan::CheckKey { required, .. } = decision::plan(&cfg, &view) else {
        panic!("not a key check")
    };
    c.bench_function("decision/prepare", |b| {
        b.iter(|| decision::Outcome::prepare(&cfg, black_box(answer.clone())))
    });
    let outcome = decision::Outcome::prepare(&cfg, answer);
    c.bench_function("decision/judge", |b| {
        b.iter(|| decision::judge(black_box(&outcome), black_box(required)))
    });
}

fn route_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for n in [10usize, 100, 1000] {
        let raw: Vec<RawRoute> =
            serde_json::from_value(Value::Array(rules(n))).expect("rules parse");
        let table = RouteTable::compile(&raw, false).expect("rules compile");
        let expected = n - 2;
        group.bench_with_input(BenchmarkId::from_parameter(n), &table, |b, table| {
            b.iter(|| {
                let path = normalize_path(black_box("/orders/42")).expect("canonical path");
                let route = table.lookup("GET", &path, None).expect("a rule matches");
                assert_eq!(route.index(), expected);
            })
        });
    }
    group.finish();
}

fn jwks() -> Jwks {
    use test_keys::*;
    let keys = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": ED25519_X, "kid": "bench-eddsa", "alg": "EdDSA"},
        {"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "kid": "bench-es256", "alg": "ES256"},
        {"kty": "RSA", "n": RSA_A_N, "e": "AQAB", "kid": "bench-rs256", "alg": "RS256"},
    ]});
    Jwks::parse_local(keys.to_string().as_bytes()).expect("bench JWKS parses")
}

fn mint(alg: J, kid: &str, key: &EncodingKey) -> String {
    let mut header = JwtHeader::new(alg);
    header.kid = Some(kid.to_owned());
    let claims = json!({
        "iss": ISS, "aud": AUD, "sub": "client-1", "iat": NOW, "exp": NOW + 3600,
        "jti": "bench-1", "permissions": ["orders:read"],
    });
    jsonwebtoken::encode(&header, &claims, key).expect("minting works")
}

fn jwt_verify(c: &mut Criterion) {
    use test_keys::*;
    let jwks = jwks();
    let policy = ProviderPolicy::new("bench", ISS, vec![AUD.to_owned()])
        .expect("valid policy")
        .with_permissions_claim(PermissionsClaim::Array("permissions".to_owned()));
    let tokens = [
        (
            "EdDSA",
            mint(
                J::EdDSA,
                "bench-eddsa",
                &EncodingKey::from_ed_pem(ED25519_PEM.as_bytes()).unwrap(),
            ),
        ),
        (
            "ES256",
            mint(
                J::ES256,
                "bench-es256",
                &EncodingKey::from_ec_pem(P256_PEM.as_bytes()).unwrap(),
            ),
        ),
        (
            "RS256",
            mint(
                J::RS256,
                "bench-rs256",
                &EncodingKey::from_rsa_pem(RSA_A_PEM.as_bytes()).unwrap(),
            ),
        ),
    ];
    let mut group = c.benchmark_group("jwt_verify");
    for (name, token) in &tokens {
        jwt::verify(token, &jwks, &policy, NOW).expect("token verifies");
        group.bench_with_input(BenchmarkId::from_parameter(name), token, |b, token| {
            b.iter(|| jwt::verify(black_box(token), &jwks, &policy, NOW).expect("verifies"))
        });
    }
    group.finish();

    let (_, token) = &tokens[0];
    let verified = jwt::verify(token, &jwks, &policy, NOW).expect("token verifies");
    let identity = decision::jwt_identity(verified);
    let entry = Entry::verified(KeyHash::of(token.as_bytes()), identity, NOW).expect("cacheable");
    let bucket = cache::insert(None, &entry, NOW).expect("empty bucket takes it");
    let tagger = Tagger::new(RandomState::new(), RandomState::new());
    let mut local = LocalCache::new(4096);
    let outcome = decision::Outcome::prepare(
        &config(),
        cache::find(&bucket, &entry.hash, NOW).expect("hit"),
    );
    local.put(tagger.tag(token), NOW + 60, outcome, NOW);
    c.bench_function("jwt/worker_cache_hit", |b| {
        b.iter(|| {
            local
                .get(&tagger.tag(black_box(token)), NOW)
                .expect("hit")
                .clone()
        })
    });
    c.bench_function("jwt/cache_hit", |b| {
        b.iter(|| {
            let hash = KeyHash::of(black_box(token.as_bytes()));
            match cache::find(black_box(&bucket), &hash, NOW) {
                Some(Answer::Valid(Identity {
                    principal: Principal::Jwt { .. },
                    ..
                })) => {}
                other => panic!("expected a cached token, got {other:?}"),
            }
        })
    });
}

criterion_group!(benches, api_key, route_lookup, jwt_verify);
criterion_main!(benches);
