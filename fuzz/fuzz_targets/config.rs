//! `FilterConfig::from_json`: the filter configuration, raw JSON to compiled config, on any bytes.
//!
//! Invariants, beyond "never panics":
//! - A refusal names a field and says what is wrong (neither is empty).
//! - Formatting does not matter: a config that compiles, re-serialized as compact JSON (there is
//!   no serializer for the compiled config, so through `serde_json::Value`), compiles again to
//!   the same config (but for its fingerprint, which names the bytes), and so does the same
//!   document pretty-printed.
//! - A compiled config works: its route table answers a lookup and its JWKS keys list.

#![no_main]

use keygate_core::config::{FilterConfig, KeySource};
use keygate_core::route::normalize_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = match FilterConfig::from_json(data) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(!e.field.is_empty() && !e.message.is_empty(), "{e:?}");
            return;
        }
    };
    let value: serde_json::Value =
        serde_json::from_slice(data).expect("a config that compiles is JSON");
    let compact = serde_json::to_vec(&value).expect("a Value serializes");
    let pretty = serde_json::to_vec_pretty(&value).expect("a Value serializes");
    for again in [compact, pretty] {
        let again = FilterConfig::from_json(&again);
        match again {
            Ok(mut again) => {
                // The fingerprint names the bytes, which differ; nothing else may.
                again.fingerprint = cfg.fingerprint;
                assert_eq!(
                    format!("{again:?}"),
                    format!("{cfg:?}"),
                    "re-serialized config compiles differently"
                )
            }
            Err(e) => panic!("re-serialized config no longer compiles: {e}"),
        }
    }

    if let Ok(path) = normalize_path("/orders/42/items?x=1") {
        let _ = cfg.routes.lookup("GET", &path, Some("reports"));
    }
    for provider in &cfg.jwt.providers {
        if let KeySource::Inline(jwks) = &provider.keys {
            assert!(!jwks.is_empty(), "a provider compiled without a usable key");
            let _ = jwks.keys().count();
        }
    }
});
