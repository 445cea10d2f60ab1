//! Times each step of keygate's cache-hit path as Wasm. Build for `wasm32-wasip1` and run in V8
//! with `bench/hotpath/run.mjs`; natively it runs too (`cargo run --release -p
//! keygate-bench-hotpath`), which gives the native/V8 ratio per step.

// A timing harness's fixtures are fixed: a broken one should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod jwt_fixtures;

use std::hint::black_box;
use std::time::Instant;

use keygate_core::cache::{self, Entry};
use keygate_core::config::{CachePolicy, FilterConfig};
use keygate_core::decision::{self, Outcome, Plan, RequestView};
use keygate_core::hostmap;
use keygate_core::jwt::{self, Jwks, ProviderPolicy, UnverifiedToken};
use keygate_core::key::{ApiKey, KeyHash, KEY_RANDOM_BYTES};
use keygate_core::local::{LocalCache, Tagger};
use keygate_core::route::normalize_path;
use keygate_core::usage::UsageBook;
use keygate_core::wire::{LookupRequest, LookupResponse};
use std::hash::RandomState;

const NOW: u64 = 1_800_000_000;

fn time(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(iters));
    }
    println!("{name:<40} {best:>9.0} ns");
}

fn main() {
    // The same 10 rules as `make bench` and core/benches.
    let cfg = FilterConfig::from_json(
        format!(
            r#"{{"key_service": {{"cluster": "ks", "token": "t"}}, "routes": {}}}"#,
            include_str!("../../base-rules.json")
        )
        .as_bytes(),
    )
    .unwrap();
    let key = ApiKey::from_random([7; KEY_RANDOM_BYTES]);
    let secret = key.expose_secret().to_owned();
    let raw: Vec<(&str, &str)> = vec![
        (":authority", "127.0.0.1:10000"),
        (":path", "/orders/42"),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-api-key", &secret),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"),
    ];
    let pairs: Vec<(&[u8], &[u8])> = raw
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    // The bytes the host hands over, decoded per request as the filter does.
    let serialized = hostmap::encode(&pairs);
    let headers = hostmap::decode(&serialized).unwrap();
    let response = LookupResponse::Valid {
        key_id: "key_0123456789abcdef".to_owned(),
        tenant: "bench".to_owned(),
        permissions: vec!["orders:read".to_owned()],
        expires_at: None,
        cache_ttl_secs: 60,
    };
    let policy = CachePolicy {
        max_entries: 10_000,
        ttl_secs: 60,
        negative_ttl_secs: 10,
    };
    let entry = Entry::from_lookup(key.hash(), &response, &policy, NOW).unwrap();
    let bucket = cache::insert(None, &entry, NOW).unwrap();
    let layout = cache::CacheLayout::keys(&policy, cfg.fingerprint, 0);
    let hash = key.hash();
    let token = "eyJhbGciOiJFZERTQSIsImtpZCI6ImJlbmNoLWVkIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5iZW5jaCIsInN1YiI6InVzZXItMDAwMDEiLCJhdWQiOiJiZW5jaC1hcGkiLCJleHAiOjE4MDAwMDAwMDAsImlhdCI6MTcwMDAwMDAwMCwicGVybWlzc2lvbnMiOlsib3JkZXJzOnJlYWQiXSwidGVuYW50IjoiYmVuY2gifQ.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl";

    let n = 20_000;
    time("hostmap::decode (request headers)", n, || {
        black_box(hostmap::decode(black_box(&serialized)).ok());
    });
    time("spoofed_headers scan", n, || {
        black_box(decision::spoofed_headers(&cfg, black_box(&headers)).count());
    });
    time("normalize_path", n, || {
        black_box(normalize_path(black_box("/orders/42")).ok());
    });
    time("ApiKey::parse (checksum SHA-256)", n, || {
        black_box(ApiKey::parse(black_box(&secret)).ok());
    });
    time("KeyHash::of(key) (SHA-256, 51 B)", n, || {
        black_box(KeyHash::of(black_box(secret.as_bytes())));
    });
    time("KeyHash::of(token) (SHA-256, JWT)", n, || {
        black_box(KeyHash::of(black_box(token.as_bytes())));
    });
    let view = RequestView {
        headers: &headers,
        route_name: None,
    };
    time("decision::plan (whole)", n, || {
        black_box(decision::plan(&cfg, black_box(&view)));
    });
    time("bucket_key", n, || {
        black_box(layout.bucket_key(black_box(&hash)));
    });
    time("cache::find (decode identity)", n, || {
        black_box(cache::find(black_box(&bucket), &hash, NOW));
    });
    let answer = cache::find(&bucket, &hash, NOW).unwrap();
    let Plan::CheckKey { required, .. } = decision::plan(&cfg, &view) else {
        panic!()
    };
    time("Outcome::prepare (identity headers)", n, || {
        black_box(Outcome::prepare(&cfg, black_box(answer.clone())));
    });
    let outcome = Outcome::prepare(&cfg, answer.clone());
    time("decision::judge", n, || {
        black_box(decision::judge(black_box(&outcome), required));
    });
    let mut local = LocalCache::new(4096);
    local.put(hash, NOW + 60, outcome.clone(), NOW);
    time("LocalCache::get", n, || {
        black_box(local.get(black_box(&hash), NOW).cloned());
    });
    let tagger = Tagger::new(RandomState::new(), RandomState::new());
    time("Tagger::tag(token)", n, || {
        black_box(tagger.tag(black_box(token)));
    });
    let mut book = UsageBook::default();
    time("UsageBook::record", n, || {
        book.record(black_box("key_0123456789abcdef"), NOW);
    });
    time("whole hit path (plan, local get, judge, record)", n, || {
        let v = hostmap::decode(&serialized).unwrap();
        let view = RequestView {
            headers: &v,
            route_name: None,
        };
        black_box(decision::spoofed_headers(&cfg, &v).count());
        if let Plan::CheckKey { hash, required, .. } = decision::plan(&cfg, &view) {
            let outcome = local.get(&hash, NOW).cloned().unwrap();
            let verdict = decision::judge(&outcome, required);
            if let decision::Verdict::Allow(grant) = &verdict {
                book.record(grant.key_id.as_deref().unwrap(), NOW);
            }
            black_box(verdict);
        }
    });

    // Loading a JWKS (configuration or refetch); EC and Ed25519 keys' tables are built on first use,
    // below.
    time("Jwks::parse (3 RSA, P-256, P-384, Ed25519)", 20, || {
        black_box(Jwks::parse(black_box(jwt_fixtures::JWKS.as_bytes())).ok());
    });

    // The miss path's own work (a callout's request and answer), as `src/lookup.rs` does it.
    let answer_json = serde_json::to_vec(&response).unwrap();
    time("miss: LookupRequest to JSON", n, || {
        black_box(
            serde_json::to_vec(&LookupRequest {
                key_hash: black_box(hash),
            })
            .ok(),
        );
    });
    time("miss: LookupResponse from JSON", n, || {
        black_box(serde_json::from_slice::<LookupResponse>(black_box(&answer_json)).ok());
    });
    time("miss: prepare + Entry::from_lookup", n, || {
        let r: LookupResponse = response.clone();
        black_box(Outcome::prepare(&cfg, cache::answer_of(&r, NOW)));
        black_box(Entry::from_lookup(hash, &r, &policy, NOW));
    });
    let full = {
        let mut b = None;
        for i in 0..4u8 {
            let e =
                Entry::from_lookup(KeyHash::from_bytes([i; 32]), &response, &policy, NOW).unwrap();
            b = cache::insert(b.as_deref(), &e, NOW);
        }
        b.unwrap()
    };
    time("miss: cache::insert into a full bucket", n, || {
        black_box(cache::insert(Some(black_box(&full)), &entry, NOW));
    });
    let mut fresh = UsageBook::default();
    let ids: Vec<String> = (0..n).map(|i| format!("key_{i:016x}")).collect();
    let mut i = 0usize;
    time("miss: UsageBook::record (a new key)", n, || {
        fresh.record(&ids[i % ids.len()], NOW);
        i += 1;
    });

    // One uncached verification per algorithm: the whole `jwt::verify` (parse, signature,
    // claims), as the filter runs it on a verified-token cache miss.
    let jwks = Jwks::parse(jwt_fixtures::JWKS.as_bytes()).unwrap();
    let jwt_policy = ProviderPolicy::new(
        "bench",
        "https://issuer.bench",
        vec!["bench-api".to_owned()],
    )
    .unwrap();
    // An EC or Ed25519 key's first verification also builds its table (once per key per JWKS
    // load). The Ed25519 key alone, so its parse (a decompression) does not drown in the RSA
    // keys'.
    for (alg, token) in jwt_fixtures::TOKENS {
        if alg.starts_with("ES") {
            time(&format!("Jwks::parse + first {alg}"), 20, || {
                let fresh = Jwks::parse(jwt_fixtures::JWKS.as_bytes()).unwrap();
                black_box(jwt::verify(black_box(token), &fresh, &jwt_policy, NOW).ok());
            });
        }
    }
    let ed25519_jwks = jwt_fixtures::JWKS_ED25519.as_bytes();
    time("Jwks::parse (Ed25519 only)", 200, || {
        black_box(Jwks::parse(black_box(ed25519_jwks)).ok());
    });
    time("Jwks::parse (Ed25519 only) + first EdDSA", 200, || {
        let fresh = Jwks::parse(ed25519_jwks).unwrap();
        black_box(
            jwt::verify(
                black_box(jwt_fixtures::TOKENS[5].1),
                &fresh,
                &jwt_policy,
                NOW,
            )
            .ok(),
        );
    });
    // The filter parses the payload first (its `iss` picks the provider) and once only.
    let (_, eddsa_token) = jwt_fixtures::TOKENS[5];
    time("UnverifiedToken::parse (EdDSA token)", n, || {
        black_box(UnverifiedToken::parse(black_box(eddsa_token).to_owned()).ok());
    });
    let unverified = UnverifiedToken::parse(eddsa_token.to_owned()).unwrap();
    time("UnverifiedToken::verify EdDSA", 200, || {
        black_box(unverified.verify(&jwks, &jwt_policy, NOW).ok());
    });
    for (alg, token) in jwt_fixtures::TOKENS {
        jwt::verify(token, &jwks, &jwt_policy, NOW).unwrap();
        time(&format!("jwt::verify {alg}"), 200, || {
            black_box(jwt::verify(black_box(token), &jwks, &jwt_policy, NOW).ok());
        });
    }
}
