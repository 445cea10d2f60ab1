//! `hostmap::decode` and `hostmap::encode`: the proxy-wasm serialized header map, the first thing
//! the filter reads of every request.
//!
//! Invariants, beyond "never panics" (and no allocation the buffer cannot back):
//! - Decode then encode: a buffer that decodes encodes back to exactly the same bytes, except that
//!   the empty buffer (an empty map) encodes as a zero count.
//! - Encode then decode: headers built from the input (split into pairs, see below) encode to a
//!   buffer that decodes to the same headers.
//! - `values` and `text` agree with a plain filter over the decoded pairs.
//!
//! The input is read twice: as a serialized map, and as `name\0value\0name\0value...` pairs.

#![no_main]

use keygate_core::hostmap::{self, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(headers) = hostmap::decode(data) {
        let again = hostmap::encode(&headers);
        if data.is_empty() {
            assert!(headers.is_empty());
            assert_eq!(again, [0, 0, 0, 0]);
        } else {
            assert_eq!(again, data, "decode then encode changed the bytes");
        }
        check_lookups(&headers);
    }

    let mut parts = data.split(|&b| b == 0);
    let mut pairs: Vec<Header<'_>> = Vec::new();
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        pairs.push((name, value));
    }
    let bytes = hostmap::encode(&pairs);
    let decoded = hostmap::decode(&bytes);
    assert_eq!(
        decoded.as_deref(),
        Ok(&pairs[..]),
        "encode then decode lost headers"
    );
});

fn check_lookups(headers: &[Header<'_>]) {
    for name in [":path", ":method", "authorization", "x-api-key"] {
        let got: Vec<&[u8]> = hostmap::values(headers, name).collect();
        let want: Vec<&[u8]> = headers
            .iter()
            .filter(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(got, want);
        let text = hostmap::text(headers, name);
        let first = want.first().and_then(|v| std::str::from_utf8(v).ok());
        assert_eq!(text, first);
    }
}
