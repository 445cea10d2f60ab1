//! Turns a request's `:path` into the [`NormalizedPath`] that route patterns are matched against.
//! The policy, and why it is safe, is in the [`route`](super) module docs.

use std::borrow::Cow;
use std::fmt;

/// Why a request path is refused. The filter answers `400 {"error":"bad_request"}`. Carries
/// nothing of the input, so it is safe to log and to use as a stats suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("path contains a fragment ('#'), raw or encoded")]
    Fragment,
    #[error("path contains an encoded '?' (%3F)")]
    EncodedQuestionMark,
    #[error("path contains an encoded slash (%2F)")]
    EncodedSlash,
    #[error("path contains a backslash")]
    Backslash,
    #[error("path contains an encoded backslash (%5C)")]
    EncodedBackslash,
    #[error("path contains ';' (path parameters), raw or encoded")]
    Semicolon,
    #[error("path contains a control character, raw or encoded")]
    ControlCharacter,
    #[error("path contains a malformed percent-encoding")]
    InvalidPercentEncoding,
    #[error("path contains a double percent-encoding (%25 followed by two hex digits)")]
    DoubleEncoding,
    #[error("path decodes to bytes that are not UTF-8")]
    InvalidUtf8,
    #[error("path has a '.' or '..' segment, raw or encoded")]
    DotSegment,
    #[error("path has an empty segment ('//')")]
    EmptySegment,
}

impl PathError {
    /// A short `snake_case` name, for stats and structured logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAbsolute => "not_absolute",
            Self::Fragment => "fragment",
            Self::EncodedQuestionMark => "encoded_question_mark",
            Self::EncodedSlash => "encoded_slash",
            Self::Backslash => "backslash",
            Self::EncodedBackslash => "encoded_backslash",
            Self::Semicolon => "semicolon",
            Self::ControlCharacter => "control_character",
            Self::InvalidPercentEncoding => "invalid_percent_encoding",
            Self::DoubleEncoding => "double_encoding",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::DotSegment => "dot_segment",
            Self::EmptySegment => "empty_segment",
        }
    }
}

/// A request path as route matching sees it: no query, each segment percent-decoded once. It
/// starts with `/`, may end with `/`, and has no empty, `.` or `..` segment; case is as sent.
///
/// Its segments are those of the raw path, one for one: the filter forwards the raw path
/// unchanged, and every server that splits on `/` and decodes once reads the same segments.
/// It is a matching key, not a URL: a segment may hold a decoded space or `%`, so never forward
/// it. Borrows the raw path when that has nothing to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath<'a> {
    path: Cow<'a, str>,
    /// Bit `k` set: segment `k` (as [`segments`](Self::segments) counts them) was sent with a
    /// `%` escape. Bit 63 stands for segment 63 and every later one.
    escaped: u64,
}

impl NormalizedPath<'_> {
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The non-empty segments, in order; `/` has none.
    pub fn segments(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.path.split('/').filter(|segment| !segment.is_empty())
    }

    /// Whether segment `index` (from 0, as [`segments`](Self::segments) counts) was sent with
    /// a `%` escape. A server that routes on the raw path compares it as sent, so it cannot equal
    /// a rule's literal segment there.
    pub fn segment_was_escaped(&self, index: usize) -> bool {
        self.escaped & (1 << index.min(63)) != 0
    }

    /// True when some segment was sent with a `%` escape.
    pub fn has_escapes(&self) -> bool {
        self.escaped != 0
    }

    /// True when no allocation was needed because the raw path had nothing to decode.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.path, Cow::Borrowed(_))
    }

    pub fn into_owned(self) -> NormalizedPath<'static> {
        NormalizedPath {
            path: Cow::Owned(self.path.into_owned()),
            escaped: self.escaped,
        }
    }
}

impl fmt::Display for NormalizedPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

/// Reads the `:path` of a request (query allowed) for matching, or refuses it. See the
/// [`route`](super) module docs for the policy.
pub fn normalize_path(raw: &str) -> Result<NormalizedPath<'_>, PathError> {
    let path = raw.split_once('?').map_or(raw, |(path, _query)| path);
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    for byte in path.bytes() {
        match byte {
            b'#' => return Err(PathError::Fragment),
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            b if b.is_ascii_control() => return Err(PathError::ControlCharacter),
            _ => {}
        }
    }
    let (decoded, escaped) = if path.contains('%') {
        (Cow::Owned(percent_decode(path)?), escaped_segments(path))
    } else {
        (Cow::Borrowed(path), 0)
    };
    check_segments(&decoded)?;
    Ok(NormalizedPath {
        path: decoded,
        escaped,
    })
}

/// The bit set of [`NormalizedPath::segment_was_escaped`]. Encoded slashes are refused, so the
/// raw path's segments are the decoded path's, one for one.
fn escaped_segments(raw: &str) -> u64 {
    raw.split('/')
        .filter(|segment| !segment.is_empty())
        .enumerate()
        .filter(|(_, segment)| segment.contains('%'))
        .fold(0, |bits, (index, _)| bits | 1 << index.min(63))
}

/// Refuses the segments servers disagree about. After decoding, a `/` can only come from the raw
/// path (an encoded one is refused), so these are the client's own segments.
fn check_segments(path: &str) -> Result<(), PathError> {
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        match segment {
            // `/a/` has one trailing empty segment, which every server reads alike.
            "" if segments.peek().is_some() => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

/// Decodes every `%XX` once and refuses what would change the path's structure for a server that
/// decodes: separators (`/ \ ; ? #`), control characters, and a second layer of escapes.
fn percent_decode(path: &str) -> Result<String, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'%' {
            out.push(byte);
            continue;
        }
        let hi = bytes.next().and_then(hex_value);
        let lo = bytes.next().and_then(hex_value);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(PathError::InvalidPercentEncoding);
        };
        let decoded = (hi << 4) | lo;
        match decoded {
            b'/' => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::EncodedBackslash),
            b';' => return Err(PathError::Semicolon),
            b'?' => return Err(PathError::EncodedQuestionMark),
            b'#' => return Err(PathError::Fragment),
            b if b.is_ascii_control() => return Err(PathError::ControlCharacter),
            _ => out.push(decoded),
        }
    }
    // A raw '%' always starts an escape, so any '%' here came from "%25". Followed by two hex
    // digits it is an escape for whoever decodes a second time: "%252F" would become '/'.
    if out
        .windows(3)
        .any(|w| matches!(w, [b'%', hi, lo] if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit()))
    {
        return Err(PathError::DoubleEncoding);
    }
    // Overlong forms such as "%C0%AE" ('.' to some old decoders) are not UTF-8 and end here.
    String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn normalized(raw: &str) -> String {
        normalize_path(raw)
            .map(|path| path.as_str().to_owned())
            .unwrap_or_else(|error| format!("error: {error:?}"))
    }

    #[test]
    fn canonical_paths_are_borrowed_unchanged() {
        for raw in [
            "/",
            "/healthz",
            "/orders/42/items",
            "/admin/",
            "/a.b/c..d/...",
            "/ünï",
        ] {
            let path = normalize_path(raw).unwrap();
            assert_eq!(path.as_str(), raw);
            assert!(path.is_borrowed(), "{raw} should not allocate");
        }
    }

    #[test]
    fn query_is_cut_off_without_allocating() {
        let path = normalize_path("/orders/42?x=/../admin&y=%2F#z").unwrap();
        assert_eq!(path.as_str(), "/orders/42");
        assert!(path.is_borrowed());
    }

    #[test]
    fn paths_that_do_not_start_with_a_slash_are_refused() {
        for raw in ["", "*", "admin", "?x=1", "http://host/admin"] {
            assert_eq!(normalize_path(raw), Err(PathError::NotAbsolute), "{raw}");
        }
    }

    #[test]
    fn a_fragment_in_the_path_is_refused() {
        assert_eq!(
            normalize_path("/public/x#/../../admin"),
            Err(PathError::Fragment)
        );
        assert_eq!(normalized("/public?q=#frag"), "/public");
    }

    #[test]
    fn unreserved_characters_are_decoded_in_any_case() {
        assert_eq!(normalized("/%61dmin/%7Euser/%2d%2E%5f"), "/admin/~user/-._");
        assert_eq!(normalized("/%41DMIN"), "/ADMIN");
    }

    #[test]
    fn other_octets_are_decoded_too() {
        assert_eq!(normalized("/a%40b/c%20d/%25/%7E"), "/a@b/c d/%/~");
        assert_eq!(normalized("/caf%C3%A9"), "/café");
    }

    #[test]
    fn dot_segments_are_refused_raw_or_encoded() {
        for raw in [
            "/public/../admin/x",
            "/./admin",
            "/..",
            "/admin/x/..",
            "/admin/x/.",
            "/public/%2e%2e/admin/x",
            "/public/%2E%2E/admin",
            "/public/.%2e/admin",
            "/%2e/admin",
            "/../admin?x=1",
        ] {
            assert_eq!(normalize_path(raw), Err(PathError::DotSegment), "{raw}");
        }
        // Dots inside a segment are just characters.
        assert_eq!(normalized("/a.b/c..d/.../.x/x."), "/a.b/c..d/.../.x/x.");
    }

    #[test]
    fn empty_segments_are_refused_but_one_trailing_slash_is_kept() {
        for raw in ["//admin/x", "/admin///x", "/admin//", "//"] {
            assert_eq!(normalize_path(raw), Err(PathError::EmptySegment), "{raw}");
        }
        assert_eq!(normalized("/admin/"), "/admin/");
        assert_eq!(normalized("/"), "/");
    }

    #[test]
    fn path_parameters_are_refused_raw_or_encoded() {
        // Servlet containers strip `;params` before resolving `..`; Go, Express and Flask keep
        // them. `/admin/..;/orders/1` is `/orders/1` to one and inside `/admin/` to the other.
        for raw in [
            "/admin;jsessionid=1/x",
            "/admin/users;v=2",
            "/public/..;/admin",
            "/admin/%2e%2e;/orders/1",
            "/;x/admin",
            "/admin%3Bx/y",
            "/admin%3bx/y",
        ] {
            assert_eq!(normalize_path(raw), Err(PathError::Semicolon), "{raw}");
        }
        assert_eq!(normalized("/orders/1?a=1;b=2"), "/orders/1");
    }

    #[test]
    fn encoded_question_marks_and_hashes_are_refused() {
        // An upstream that decodes, then parses again, would end the path there: `/admin%3F`
        // is served as `/admin`.
        assert_eq!(
            normalize_path("/admin%3F/x"),
            Err(PathError::EncodedQuestionMark)
        );
        assert_eq!(
            normalize_path("/admin%3f"),
            Err(PathError::EncodedQuestionMark)
        );
        assert_eq!(normalize_path("/admin%23/x"), Err(PathError::Fragment));
    }

    #[test]
    fn encoded_slashes_and_backslashes_are_refused() {
        assert_eq!(normalize_path("/admin%2Fx"), Err(PathError::EncodedSlash));
        assert_eq!(
            normalize_path("/public/..%2fadmin"),
            Err(PathError::EncodedSlash)
        );
        assert_eq!(
            normalize_path("/admin%5cx"),
            Err(PathError::EncodedBackslash)
        );
        assert_eq!(
            normalize_path("/public\\..\\admin"),
            Err(PathError::Backslash)
        );
    }

    #[test]
    fn control_characters_are_refused_raw_or_encoded() {
        for raw in ["/admin%00", "/a%0Ab", "/a%7f", "/a\tb", "/a\u{0}b"] {
            assert_eq!(
                normalize_path(raw),
                Err(PathError::ControlCharacter),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn malformed_percent_encodings_are_refused() {
        for raw in ["/a%", "/a%2", "/a%zz", "/a%2g", "/%%41"] {
            assert_eq!(
                normalize_path(raw),
                Err(PathError::InvalidPercentEncoding),
                "{raw}"
            );
        }
    }

    #[test]
    fn double_encodings_and_encoded_semicolons_are_refused() {
        assert_eq!(
            normalize_path("/public/..%252Fadmin"),
            Err(PathError::DoubleEncoding)
        );
        assert_eq!(
            normalize_path("/%252e%252e/admin"),
            Err(PathError::DoubleEncoding)
        );
        assert_eq!(normalize_path("/%25%32%46"), Err(PathError::DoubleEncoding));
    }

    #[test]
    fn octets_that_are_not_utf8_are_refused() {
        assert_eq!(
            normalize_path("/%C0%AE%C0%AE/admin"),
            Err(PathError::InvalidUtf8)
        );
        assert_eq!(normalize_path("/%FF"), Err(PathError::InvalidUtf8));
    }

    #[test]
    fn segments_sent_with_escapes_are_remembered() {
        let path = normalize_path("/a/%62/c%20d/e?x=%41").unwrap();
        let escaped: Vec<bool> = (0..5).map(|k| path.segment_was_escaped(k)).collect();
        assert_eq!(escaped, [false, true, true, false, false]);
        assert!(path.has_escapes());
        let plain = normalize_path("/a/b?x=%41").unwrap();
        assert!(!plain.has_escapes());
        let deep = format!("{}/%41", "/x".repeat(70));
        let deep = normalize_path(&deep).unwrap();
        assert!(deep.segment_was_escaped(70) && deep.segment_was_escaped(63));
        assert!(!deep.segment_was_escaped(62));
    }

    #[test]
    fn segments_skip_the_empty_ends() {
        let path = normalize_path("/orders/42/items/").unwrap();
        assert_eq!(
            path.segments().collect::<Vec<_>>(),
            ["orders", "42", "items"]
        );
        assert_eq!(normalize_path("/").unwrap().segments().count(), 0);
    }
}
