//! `route::normalize_path` and `RouteTable::lookup` on any `:path`.
//!
//! The policy (route module docs): the path is forwarded unchanged, so it is refused unless every
//! server that splits on `/` and decodes once reads the same segments. Invariants, beyond "never
//! panics":
//! - Second implementation: [`reference`] applies the policy segment by segment, written apart
//!   from the real one; both accept the same paths, with the same decoded form.
//! - Shape: an accepted path starts with `/`, has as many `/` as the raw path before its query,
//!   and holds no empty segment (but one trailing), no `.` or `..` segment, no `? # ; \` and no
//!   control character.
//! - Idempotence: an accepted path's normalized form, with its `%` escaped as `%25`, normalizes to
//!   itself; without a `%` it is already canonical (borrowed, no allocation).
//! - Re-encoding: percent-encoding unreserved ASCII bytes (letters, digits, `-._~`) of the input,
//!   in either hex case, changes nothing: same normalized path or same error, same rule.
//! - Trie vs linear scan: the trie lookup picks the rule a linear scan over the rules (method,
//!   route name, then `RoutePattern::matches`) picks.
//!
//! The input is the raw path as bytes; which bytes get re-encoded, the method and the route name
//! come from a hash of it, so every corpus file is a plain path.

#![no_main]

use std::sync::OnceLock;

use keygate_core::route::{normalize_path, NormalizedPath, PathError, RawRoute, RouteTable};
use libfuzzer_sys::fuzz_target;

/// The demo's and the unit tests' rules together, with a catch-all only in the case-insensitive
/// table so the case-sensitive one also exercises "unmatched".
const ROUTES: &str = r#"[
    {"path": "/healthz", "public": true},
    {"prefix": "/public/", "public": true},
    {"methods": ["GET"], "path": "/orders/*/items", "permissions": ["orders:read"]},
    {"methods": ["GET"], "path": "/orders/*", "permissions": ["orders:read"]},
    {"methods": ["POST", "PUT"], "path": "/orders", "permissions": ["orders:write"]},
    {"prefix": "/admin/", "permissions": ["admin"]},
    {"prefix": "/a.b/~x-y_z/*/", "permissions": ["odd"]},
    {"route_name": "reports", "permissions": []},
    {"methods": ["DELETE"], "prefix": "/*/x", "permissions": ["del"]}
]"#;
const CATCH_ALL: &str = r#"{"prefix": "/", "public": true}"#;

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "get", "DELETE", "PUT"];
const ROUTE_NAMES: [Option<&str>; 3] = [None, Some("reports"), Some("other")];

struct Table {
    raw: Vec<RawRoute>,
    compiled: RouteTable,
}

fn tables() -> &'static [Table; 2] {
    static TABLES: OnceLock<[Table; 2]> = OnceLock::new();
    TABLES.get_or_init(|| {
        let build = |json: &str, case_sensitive: bool| {
            let raw: Vec<RawRoute> = serde_json::from_str(json).expect("fixed routes parse");
            let compiled = RouteTable::compile(&raw, case_sensitive).expect("fixed routes compile");
            Table { raw, compiled }
        };
        let with_catch_all = format!("{}, {CATCH_ALL}]", ROUTES.trim_end().trim_end_matches(']'));
        [build(ROUTES, true), build(&with_catch_all, false)]
    })
}

/// The glue to the API under test: the one line to change if `normalize_path` changes shape.
fn normalize(raw: &str) -> Result<NormalizedPath<'_>, PathError> {
    normalize_path(raw)
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let mut rng = Rng::seeded(data);
    let method = METHODS[rng.below(METHODS.len())];
    let route_name = ROUTE_NAMES[rng.below(ROUTE_NAMES.len())];

    let first = normalize(raw);
    let outcome = first.as_ref().map(|path| rules(path, method, route_name));

    let want = reference(raw);
    assert_eq!(
        first.as_ref().map(NormalizedPath::as_str).ok(),
        want.as_deref(),
        "policy and reference disagree on {raw:?}"
    );

    if let Ok(path) = &first {
        let text = path.as_str();
        let before_query = raw.split_once('?').map_or(raw, |(path, _)| path);
        assert!(text.starts_with('/'), "{raw:?} -> {text:?}");
        assert_eq!(
            text.matches('/').count(),
            before_query.matches('/').count(),
            "segments not one-to-one: {raw:?} -> {text:?}"
        );
        assert!(!text.contains("//"), "{raw:?} -> {text:?}");
        assert!(
            !text.contains(['?', '#', ';', '\\']) && !text.chars().any(|c| c.is_ascii_control()),
            "{raw:?} -> {text:?}"
        );
        assert!(
            text.split('/').all(|s| s != "." && s != ".."),
            "{raw:?} -> {text:?}"
        );
        let again_raw = text.replace('%', "%25");
        let again = normalize(&again_raw);
        assert_eq!(
            again.as_ref().map(NormalizedPath::as_str),
            Ok(text),
            "not idempotent: {raw:?} -> {text:?} -> {again:?}"
        );
        if again_raw == text {
            assert!(
                again.as_ref().is_ok_and(NormalizedPath::is_borrowed),
                "normalized form {text:?} (of {raw:?}) is not canonical"
            );
        }
    }

    let reencoded = reencode_unreserved(raw, &mut rng);
    let second = normalize(&reencoded);
    assert_eq!(
        first.as_ref().map(NormalizedPath::as_str),
        second.as_ref().map(NormalizedPath::as_str),
        "re-encoding unreserved bytes changed the outcome: {raw:?} vs {reencoded:?}"
    );
    let second_outcome = second.as_ref().map(|path| rules(path, method, route_name));
    assert_eq!(outcome, second_outcome, "{raw:?} vs {reencoded:?}");
});

/// The rule each table picks, checked against a linear scan.
fn rules(path: &NormalizedPath<'_>, method: &str, route_name: Option<&str>) -> [Option<usize>; 2] {
    tables().each_ref().map(|table| {
        let got = table
            .compiled
            .lookup(method, path, route_name)
            .map(|route| route.index());
        let want = reference_lookup(table, method, path, route_name);
        assert_eq!(
            got, want,
            "trie and linear scan disagree on {path:?} {method} {route_name:?}"
        );
        got
    })
}

fn reference_lookup(
    table: &Table,
    method: &str,
    path: &NormalizedPath<'_>,
    route_name: Option<&str>,
) -> Option<usize> {
    let case_sensitive = table.compiled.case_sensitive();
    table
        .raw
        .iter()
        .zip(table.compiled.routes())
        .position(|(raw, route)| {
            let method_ok = raw.methods.as_ref().is_none_or(|listed| {
                listed.iter().any(|m| {
                    m.eq_ignore_ascii_case(method)
                        || (m == "GET" && method.eq_ignore_ascii_case("HEAD"))
                })
            });
            let name_ok = raw
                .route_name
                .as_deref()
                .is_none_or(|want| route_name == Some(want));
            let path_ok = route
                .pattern()
                .is_none_or(|pattern| pattern.matches(path, case_sensitive));
            method_ok && name_ok && path_ok
        })
}

/// The policy again, segment by segment: the decoded path, or `None` for a refusal.
fn reference(raw: &str) -> Option<String> {
    let path = match raw.find('?') {
        Some(at) => &raw[..at],
        None => raw,
    };
    let rest = path.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    let mut out = String::from("/");
    for (i, segment) in segments.iter().enumerate() {
        let bytes = decode_segment(segment)?;
        let text = String::from_utf8(bytes).ok()?;
        let empty_inside = text.is_empty() && i != last;
        if empty_inside || text == "." || text == ".." {
            return None;
        }
        if i > 0 {
            out.push('/');
        }
        out.push_str(&text);
    }
    Some(out)
}

/// One raw segment decoded once, or `None` when any byte of it, raw or decoded, is refused.
fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    let refused = |b: u8| b"/\\;?#".contains(&b) || b < 0x20 || b == 0x7f;
    let raw = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                return None;
            }
            let decoded = u8::from_str_radix(hex, 16).ok()?;
            if refused(decoded) {
                return None;
            }
            out.push(decoded);
            i += 3;
        } else {
            if refused(b) {
                return None;
            }
            out.push(b);
            i += 1;
        }
    }
    // A decoded '%' that starts an escape would be decoded again by a second decoder.
    for (at, &b) in out.iter().enumerate() {
        let next_two = out.get(at + 1..at + 3);
        if b == b'%' && next_two.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return None;
        }
    }
    Some(out)
}

/// Percent-encodes some unreserved ASCII bytes, never the two after a `%` (that would change an
/// existing escape rather than add one).
fn reencode_unreserved(raw: &str, rng: &mut Rng) -> String {
    let mut out = Vec::with_capacity(raw.len() * 3);
    let mut escape_left = 0;
    for &b in raw.as_bytes() {
        if escape_left > 0 {
            escape_left -= 1;
            out.push(b);
            continue;
        }
        if b == b'%' {
            escape_left = 2;
            out.push(b);
            continue;
        }
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if unreserved && rng.bit() {
            let hex = if rng.bit() {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            };
            out.extend_from_slice(hex.as_bytes());
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced, by ASCII")
}

/// xorshift64*, seeded with FNV-1a of the input: deterministic per input.
struct Rng(u64);

impl Rng {
    fn seeded(data: &[u8]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Self(h | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bit(&mut self) -> bool {
        self.next() >> 63 == 1
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
