//! How upstream servers read a request path, written naively and independently of the filter, for
//! the differential path test (`tests/tests/e2e/path_oracle.rs`).
//!
//! Each [`Reading`] is one server's way of turning the path it received into segments: decode
//! once or not at all, resolve `.`/`..` or not, merge `//` or not, strip `;params` first (servlet
//! containers), treat `\` as a separator (Windows servers), re-parse at a decoded `?` or `#`,
//! decode twice, compare case or not. [`RuleSet::readings`] maps a received path through every
//! reading to the first rule that matches, and [`RuleSet::consensus`] says whether they agree, and which rules a path can reach.
//! A path the filter forwards must land on the same rule whichever server of one kind reads it;
//! where kinds differ (case compared or ignored, path decoded or routed as received), the filter
//! must demand what every rule they land on demands. That is the filter's guarantee, checked from
//! the outside.
//!
//! Rule semantics follow the README: `path` matches exactly those segments (a trailing slash
//! ignored), `prefix` whole leading segments, `*` one non-empty segment, first rule wins. Only
//! ASCII case is folded; Unicode case folding is documented as not modelled.

use std::collections::BTreeSet;

/// One rule of the route table under test, as the naive matcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// A short name for messages.
    pub name: &'static str,
    pub kind: RuleKind,
    /// Decoded, `/`-separated, no trailing slash (as in the filter config).
    pub pattern: &'static str,
    /// `None`: public.
    pub permission: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Path,
    Prefix,
}

/// How one kind of server reads a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reading {
    /// Decode once, re-parse at a decoded `?`/`#`, resolve dot segments (RFC 3986 section 5.2.4,
    /// empty segments kept), case-sensitive.
    DecodeThenResolve,
    /// Go's `net/http` ServeMux: `URL.Path` is decoded once (`%2F` becomes `/`, a bad escape is a
    /// 400), then `path.Clean` merges slashes and resolves dots; case-sensitive; `;` is literal.
    GoServeMux,
    /// Express: routes match the raw path, not decoded, no dot resolution, case-insensitive by
    /// default, trailing slash optional.
    Express,
    /// Flask (Werkzeug): `PATH_INFO` decoded once (`%2F` included), slashes merged, no dot
    /// resolution, case-sensitive.
    Flask,
    /// Tomcat: `;params` stripped from each raw segment, then decoded, merged and resolved;
    /// case-sensitive. (Tomcat refuses `%2F` by default; reading it as `/` only adds a reading.)
    TomcatSemicolons,
    /// A Windows-style server: decode once, `\` is a separator, merge, resolve, case-insensitive.
    BackslashCaseInsensitive,
    /// RFC 3986 normalization proper: unreserved escapes decoded (so `%2e` is `.`), dot segments
    /// resolved on the still-encoded path, then each segment decoded (`%2F` stays inside its
    /// segment); case-sensitive.
    Rfc3986,
    /// A server behind a second decoding layer: decode twice, merge, resolve; case-sensitive.
    DecodeTwice,
}

impl Reading {
    pub const ALL: [Reading; 8] = [
        Self::DecodeThenResolve,
        Self::GoServeMux,
        Self::Express,
        Self::Flask,
        Self::TomcatSemicolons,
        Self::BackslashCaseInsensitive,
        Self::Rfc3986,
        Self::DecodeTwice,
    ];

    /// Compares literal segments ignoring ASCII case.
    pub fn case_insensitive(self) -> bool {
        matches!(self, Self::Express | Self::BackslashCaseInsensitive)
    }

    /// Percent-decodes before routing; the others route on the path as received.
    pub fn decodes(self) -> bool {
        !matches!(self, Self::Express)
    }

    /// The segments this server routes on, or `None` if it would refuse the path itself. The
    /// path is what the server received: the query (from the first `?`) and a fragment are cut
    /// off here.
    pub fn segments(self, received: &str) -> Option<Vec<String>> {
        let path = received.split(['?', '#']).next().unwrap_or_default();
        let path = path.as_bytes();
        let segments = match self {
            Self::DecodeThenResolve => {
                let decoded = cut_reparsed(decode(path));
                resolve(split(&decoded, false))
            }
            Self::GoServeMux => resolve(merge(split(&decode_strict(path)?, false))),
            Self::Express => split(path, false),
            Self::Flask => merge(split(&decode(path), false)),
            Self::TomcatSemicolons => {
                let stripped = strip_params(path);
                resolve(merge(split(&decode(&stripped), false)))
            }
            Self::BackslashCaseInsensitive => resolve(merge(split(&decode(path), true))),
            Self::Rfc3986 => {
                let unreserved = decode_unreserved(path);
                resolve(split(&unreserved, false))
                    .into_iter()
                    .map(|segment| decode(&segment))
                    .collect()
            }
            Self::DecodeTwice => resolve(merge(split(&decode(&decode(path)), false))),
        };
        Some(
            segments
                .into_iter()
                .map(|segment| String::from_utf8_lossy(&segment).into_owned())
                .collect(),
        )
    }
}

/// The rules in order; the first that matches wins.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// The filter's `case_sensitive_paths`. True declares upstreams that compare case exactly,
    /// so every reading does. False (the default) expects either kind of upstream: each reading
    /// is taken with case compared and with case ignored.
    pub case_sensitive: bool,
}

/// How a reading compared literal segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Case {
    Exact,
    Folded,
}

/// What the readings of one path say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consensus {
    /// The readings agree on the path's structure: among the servers of one kind (comparing case
    /// or not, decoding or not), every one that routes it picks the same rule. The rules of the
    /// kinds (indices, ascending) are what the filter must demand together: an upstream of any
    /// kind may serve the path.
    Rules(Vec<usize>),
    /// No reading matches any rule.
    Unmatched,
    /// Readings of the same kind route the path to different rules: servers split or resolve it
    /// differently, and the filter must refuse it.
    Ambiguous(Vec<(Reading, Case, Option<usize>)>),
}

impl RuleSet {
    /// The first rule matching `segments`.
    pub fn match_segments(&self, segments: &[String], case: Case) -> Option<usize> {
        self.rules
            .iter()
            .position(|rule| rule_matches(rule, segments, case == Case::Folded))
    }

    /// Each reading's rule for the received path (`None`: no rule), in each way of comparing
    /// case that applies; readings that refuse the path are left out.
    pub fn readings(&self, received: &str) -> Vec<(Reading, Case, Option<usize>)> {
        let mut out = Vec::new();
        for reading in Reading::ALL {
            let Some(segments) = reading.segments(received) else {
                continue;
            };
            let cases: &[Case] = match (self.case_sensitive, reading.case_insensitive()) {
                (true, _) => &[Case::Exact],
                (false, true) => &[Case::Folded],
                (false, false) => &[Case::Exact, Case::Folded],
            };
            for &case in cases {
                out.push((reading, case, self.match_segments(&segments, case)));
            }
        }
        out
    }

    /// Whether every server routes `received` alike (see [`Consensus`]). A reading that matches
    /// nothing serves nothing of the table (a 404 upstream) and does not count against agreement.
    pub fn consensus(&self, received: &str) -> Consensus {
        let readings = self.readings(received);
        let mut rules = BTreeSet::new();
        for case in [Case::Exact, Case::Folded] {
            for decodes in [true, false] {
                let chosen: BTreeSet<usize> = readings
                    .iter()
                    .filter(|(reading, c, _)| *c == case && reading.decodes() == decodes)
                    .filter_map(|(_, _, rule)| *rule)
                    .collect();
                if chosen.len() > 1 {
                    return Consensus::Ambiguous(readings);
                }
                rules.extend(chosen);
            }
        }
        if rules.is_empty() {
            Consensus::Unmatched
        } else {
            Consensus::Rules(rules.into_iter().collect())
        }
    }
}

fn rule_matches(rule: &Rule, segments: &[String], case_insensitive: bool) -> bool {
    let pattern: Vec<&str> = rule.pattern.split('/').skip(1).collect();
    // One trailing slash is the same path; a `path` rule ignores it, a `prefix` rule too.
    let segments = match segments.split_last() {
        Some((last, rest)) if last.is_empty() => rest,
        _ => segments,
    };
    let fits = |want: &str, got: &String| {
        if want == "*" {
            !got.is_empty()
        } else if case_insensitive {
            want.eq_ignore_ascii_case(got)
        } else {
            want == got
        }
    };
    match rule.kind {
        RuleKind::Path => {
            segments.len() == pattern.len() && pattern.iter().zip(segments).all(|(w, g)| fits(w, g))
        }
        RuleKind::Prefix => {
            segments.len() >= pattern.len() && pattern.iter().zip(segments).all(|(w, g)| fits(w, g))
        }
    }
}

/// Splits an absolute path into its segments after the leading `/` (empty ones kept).
fn split(path: &[u8], backslash_too: bool) -> Vec<Vec<u8>> {
    let path = path.strip_prefix(b"/").unwrap_or(path);
    path.split(|&b| b == b'/' || (backslash_too && b == b'\\'))
        .map(<[u8]>::to_vec)
        .collect()
}

/// Drops empty segments but keeps a trailing slash (as one trailing empty segment).
fn merge(segments: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let trailing = segments.len() > 1 && segments.last().is_some_and(Vec::is_empty);
    let mut out: Vec<Vec<u8>> = segments.into_iter().filter(|s| !s.is_empty()).collect();
    if trailing {
        out.push(Vec::new());
    }
    out
}

/// RFC 3986 `remove_dot_segments` on a list of segments: `.` dropped, `..` drops the previous
/// segment (never above the root); a dot segment at the end leaves a trailing slash.
fn resolve(segments: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.into_iter().enumerate() {
        match segment.as_slice() {
            b"." => {}
            b".." => {
                out.pop();
            }
            _ => {
                out.push(segment);
                continue;
            }
        }
        if i == last {
            out.push(Vec::new());
        }
    }
    out
}

/// Percent-decodes once; an escape that is not two hex digits stays as it is.
fn decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(byte) = escape_at(bytes, i) {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Like [`decode`], but a bad escape refuses the path (Go answers 400).
fn decode_strict(bytes: &[u8]) -> Option<Vec<u8>> {
    let bad = (0..bytes.len()).any(|i| bytes[i] == b'%' && escape_at(bytes, i).is_none());
    (!bad).then(|| decode(bytes))
}

/// The byte `%XX` at `i` stands for, if `bytes[i..]` starts with a well-formed escape.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    match bytes.get(i..i + 3)? {
        [b'%', hi, lo] => Some(hex(*hi)? << 4 | hex(*lo)?),
        _ => None,
    }
}

/// Decodes only escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`), as RFC 3986 section
/// 6.2.2.2 allows a normalizer to.
fn decode_unreserved(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match escape_at(bytes, i) {
            Some(byte) if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// A server that decodes and then parses the result as a URL again ends the path at a decoded
/// `?` or `#`.
fn cut_reparsed(mut decoded: Vec<u8>) -> Vec<u8> {
    if let Some(end) = decoded.iter().position(|&b| b == b'?' || b == b'#') {
        decoded.truncate(end);
    }
    decoded
}

/// Tomcat: removes `;` and what follows it up to the next `/`, in every raw segment.
fn strip_params(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut skipping = false;
    for &b in path {
        match b {
            b'/' => {
                skipping = false;
                out.push(b);
            }
            b';' => skipping = true,
            _ if !skipping => out.push(b),
            _ => {}
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn segments(reading: Reading, path: &str) -> Vec<String> {
        reading.segments(path).unwrap()
    }

    fn rules() -> RuleSet {
        RuleSet {
            rules: vec![
                Rule {
                    name: "public",
                    kind: RuleKind::Prefix,
                    pattern: "/public",
                    permission: None,
                },
                Rule {
                    name: "orders",
                    kind: RuleKind::Path,
                    pattern: "/orders/*",
                    permission: Some("orders:read"),
                },
                Rule {
                    name: "admin",
                    kind: RuleKind::Prefix,
                    pattern: "/admin",
                    permission: Some("admin"),
                },
            ],
            case_sensitive: true,
        }
    }

    #[test]
    fn decoding_readings_resolve_encoded_dot_segments() {
        assert_eq!(
            segments(Reading::DecodeThenResolve, "/public/%2e%2E/admin/x"),
            ["admin", "x"]
        );
        assert_eq!(
            segments(Reading::Rfc3986, "/public/%2e%2E/admin/x"),
            ["admin", "x"]
        );
        assert_eq!(
            segments(Reading::Express, "/public/%2e%2E/admin/x"),
            ["public", "%2e%2E", "admin", "x"]
        );
    }

    #[test]
    fn servlet_reading_strips_parameters_before_resolving() {
        assert_eq!(
            segments(Reading::TomcatSemicolons, "/public/..;/admin/x"),
            ["admin", "x"]
        );
        assert_eq!(
            segments(Reading::GoServeMux, "/public/..;/admin/x"),
            ["public", "..;", "admin", "x"]
        );
    }

    #[test]
    fn go_merges_slashes_refuses_bad_escapes_and_keeps_a_trailing_slash() {
        assert_eq!(
            segments(Reading::GoServeMux, "//admin//x/"),
            ["admin", "x", ""]
        );
        assert_eq!(Reading::GoServeMux.segments("/a%zz"), None);
        assert_eq!(segments(Reading::GoServeMux, "/a/b/.."), ["a", ""]);
    }

    #[test]
    fn encoded_separators_split_for_decoding_servers_only() {
        assert_eq!(
            segments(Reading::DecodeThenResolve, "/public/..%2Fadmin"),
            ["admin"]
        );
        assert_eq!(
            segments(Reading::Rfc3986, "/public/..%2Fadmin"),
            ["public", "../admin"]
        );
        assert_eq!(
            segments(Reading::BackslashCaseInsensitive, "/public\\..\\admin"),
            ["admin"]
        );
        assert_eq!(
            segments(Reading::DecodeThenResolve, "/admin%3F/x"),
            ["admin"]
        );
        assert_eq!(
            segments(Reading::DecodeTwice, "/public/..%252Fadmin"),
            ["admin"]
        );
    }

    #[test]
    fn rules_match_whole_segments_and_ignore_one_trailing_slash() {
        let rules = rules();
        let rule =
            |path: &str| rules.match_segments(&segments(Reading::Express, path), Case::Exact);
        assert_eq!(rule("/admin"), Some(2));
        assert_eq!(rule("/admin/"), Some(2));
        assert_eq!(rule("/administrator"), None);
        assert_eq!(rule("/orders/1/"), Some(1));
        assert_eq!(rule("/orders/1/2"), None);
        assert_eq!(rule("/orders//"), None);
        assert_eq!(rule("/ADMIN/x"), None);
        assert_eq!(
            rules.match_segments(&segments(Reading::Express, "/ADMIN/x"), Case::Folded),
            Some(2)
        );
    }

    #[test]
    fn servers_disagreeing_make_a_path_ambiguous() {
        let rules = rules();
        assert_eq!(
            rules.consensus("/admin/x?y=/../public"),
            Consensus::Rules(vec![2])
        );
        assert_eq!(rules.consensus("/%61dmin/x"), Consensus::Rules(vec![2]));
        assert_eq!(rules.consensus("/nothing"), Consensus::Unmatched);
        assert!(matches!(
            rules.consensus("/public/..;/admin/x"),
            Consensus::Ambiguous(_)
        ));
        assert!(matches!(
            rules.consensus("/public/%2e%2e/admin"),
            Consensus::Ambiguous(_)
        ));
    }

    #[test]
    fn an_escaped_letter_can_need_two_rules() {
        let mut rules = rules();
        rules.rules.insert(
            0,
            Rule {
                name: "admin-health",
                kind: RuleKind::Path,
                pattern: "/admin/health",
                permission: None,
            },
        );
        // Decoding servers serve the health endpoint, Express its `/admin` subtree.
        assert_eq!(
            rules.consensus("/admin/he%61lth"),
            Consensus::Rules(vec![0, 3])
        );
        assert_eq!(rules.consensus("/%61dmin/x"), Consensus::Rules(vec![3]));
    }

    #[test]
    fn ignoring_case_a_path_can_need_two_rules() {
        let mut rules = rules();
        rules.rules.insert(
            0,
            Rule {
                name: "admin-health",
                kind: RuleKind::Path,
                pattern: "/admin/health",
                permission: None,
            },
        );
        assert_eq!(rules.consensus("/admin/HEALTH"), Consensus::Rules(vec![3]));
        // Ignoring case, case-sensitive upstreams serve it under `/admin`, case-insensitive ones
        // as the health endpoint.
        rules.case_sensitive = false;
        assert_eq!(
            rules.consensus("/admin/HEALTH"),
            Consensus::Rules(vec![0, 3])
        );
        assert_eq!(rules.consensus("/admin/health"), Consensus::Rules(vec![0]));
        assert_eq!(rules.consensus("/ADMIN/x"), Consensus::Rules(vec![3]));
    }
}
