//! The route table: which configured rule a request falls under, and what that rule demands.
//!
//! The filter configuration's `routes` list compiles once, at load, into a [`RouteTable`]; a bad
//! rule fails the load with a [`RouteError`] that names it (`routes[3].path: must start with
//! '/'`). Per request, [`normalize_path`] turns the `:path` into a [`NormalizedPath`] (or a
//! [`PathError`], answered with 400) and [`RouteTable::lookup`] returns the first rule that
//! matches, or `None`, for the caller to apply `unmatched`.
//!
//! # Rules
//!
//! A rule matches when every condition it sets holds:
//! - `methods`: the request method is listed, compared ignoring ASCII case. `GET` also admits
//!   `HEAD`, because servers answer `HEAD` with their `GET` handler.
//! - `path`: the path has exactly the pattern's segments. A trailing slash is ignored:
//!   `/healthz` matches `/healthz` and `/healthz/`.
//! - `prefix`: the path starts with the pattern's segments, whole segments only: `/admin/` and
//!   `/admin` both match `/admin`, `/admin/` and `/admin/users`, never `/administrator`.
//! - `route_name`: the Envoy route name is exactly this.
//!
//! In `path` and `prefix`, a segment `*` matches exactly one non-empty segment. Patterns are
//! written decoded (no `%`), without query, fragment or `;` parameters, with no `.`, `..` or
//! empty segments. With `case_sensitive_paths: false` (the default) literal segments compare
//! ignoring ASCII case. A rule is either `public: true` or lists `permissions`, all of which the
//! credential must carry; an empty list admits any valid credential.
//!
//! # Path normalization
//!
//! Matching must see the path the upstream will serve, or a request could be matched as a public
//! rule while reaching a protected one. The filter forwards the path unchanged, matches its own
//! segments, each percent-decoded once ([`normalize_path`]), and refuses (400) whatever servers
//! could split, join or resolve differently:
//! - The query (from the first `?`) is cut off. A `#` before it is refused: Envoy rejects or strips
//!   fragments, so one that arrives here would be forwarded and mean something else upstream.
//! - Every `%XX` is decoded once, in either hex case: `%61dmin` is `admin`.
//! - Refused: `;` raw or encoded (servlet containers strip `;params`, others keep them), `.` and
//!   `..` segments raw or encoded, empty segments (one trailing `/` is fine), encoded `/ \ ? #`,
//!   a raw `\` or `#`, control characters raw or encoded, malformed escapes, double encoding
//!   (`%252F`), and escapes that do not decode to UTF-8 (overlong `%C0%AE`).
//! - Case is kept; with `case_sensitive_paths: false`, `/ADMIN/x` matches `/admin/` rules.
//!
//! What servers still read differently is the case of letters (where the table ignores it) and
//! escapes (a server that routes on the raw path does not take `he%61lth` for `health`). When
//! such a reading lands on a later rule than the first match, [`RouteTable::lookup`] demands
//! that rule's access too. Not modeled: Unicode case folding or normalization, Windows name
//! equivalences (trailing dots, short names), and escapes of the sub-delimiters a pattern may
//! contain (`/a%2Bb` is `/a+b` here, not to a server routing on the raw path).
//!
//! Envoy should normalize first. Set, on the HTTP connection manager: `normalize_path: true`,
//! `merge_slashes: true` and `path_with_escaped_slashes_action: REJECT_REQUEST`. This module's
//! policy is the backstop when those are missing. `tests/tests/e2e/path_oracle.rs` checks it
//! against an upstream's view, with and without Envoy's normalization.
//!
//! # Lookup cost
//!
//! Rules are indexed in a segment trie built at load (literal children sorted, lowercased when
//! case-insensitive, plus one `*` child per node). A lookup walks only the branches the path can
//! match and keeps the lowest rule index that matches, so the first rule still wins. It does not
//! allocate; its cost grows with the path's depth and the logarithm of the rule count.

mod path;

use std::cmp::Ordering;
use std::fmt;

use serde::Deserialize;

pub use path::{normalize_path, NormalizedPath, PathError};
// Defined in `crate::permission`; re-exported here, where rule code has always found it.
pub use crate::permission::{Permission, PermissionError};

/// One entry of the configuration's `routes`, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub methods: Option<Vec<String>>,
    pub path: Option<String>,
    pub prefix: Option<String>,
    pub route_name: Option<String>,
    pub public: Option<bool>,
    pub permissions: Option<Vec<String>>,
}

/// A rule that failed to compile, named as in the configuration: `routes[3].path: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("routes[{index}]{field}: {problem}")]
pub struct RouteError {
    index: usize,
    field: RouteField,
    problem: RouteProblem,
}

impl RouteError {
    /// Position of the rule in `routes`, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Where in the configuration, such as `routes[3].path` or `routes[0]` for the whole rule.
    pub fn field(&self) -> String {
        format!("routes[{}]{}", self.index, self.field)
    }

    /// What is wrong, without the location, such as `must start with '/'`.
    pub fn message(&self) -> String {
        self.problem.to_string()
    }

    pub fn rule_field(&self) -> RouteField {
        self.field
    }

    pub fn problem(&self) -> &RouteProblem {
        &self.problem
    }
}

/// The field of a rule a [`RouteError`] is about. Displays as it is written after `routes[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteField {
    /// The rule as a whole (a missing or conflicting field).
    Rule,
    Methods,
    /// `methods[i]`
    Method(usize),
    Path,
    Prefix,
    RouteName,
    Public,
    Permissions,
    /// `permissions[i]`
    Permission(usize),
}

impl fmt::Display for RouteField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rule => Ok(()),
            Self::Methods => f.write_str(".methods"),
            Self::Method(i) => write!(f, ".methods[{i}]"),
            Self::Path => f.write_str(".path"),
            Self::Prefix => f.write_str(".prefix"),
            Self::RouteName => f.write_str(".route_name"),
            Self::Public => f.write_str(".public"),
            Self::Permissions => f.write_str(".permissions"),
            Self::Permission(i) => write!(f, ".permissions[{i}]"),
        }
    }
}

/// What is wrong with a rule's field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteProblem {
    #[error("set at least one of `path`, `prefix` or `route_name`")]
    NoMatcher,
    #[error("set `path` or `prefix`, not both")]
    PathAndPrefix,
    #[error("set `public: true` or `permissions` (an empty list admits any valid credential)")]
    NoAccess,
    #[error("set `public: true` or `permissions`, not both")]
    PublicAndPermissions,
    #[error(
        "`public: false` means nothing: remove it and set `permissions` \
         (an empty list admits any valid credential)"
    )]
    PublicFalse,
    #[error("must list at least one method; remove the field to match every method")]
    NoMethods,
    #[error("{0:?} is not an uppercase HTTP method such as \"GET\"")]
    Method(String),
    #[error("must not be empty")]
    EmptyRouteName,
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error(transparent)]
    Permission(#[from] PermissionError),
}

/// Why a `path` or `prefix` pattern is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must start with '/'")]
    NotAbsolute,
    #[error("must not contain {0:?}: write the decoded path, without query or `;` parameters")]
    ForbiddenChar(char),
    #[error("must not contain `.` or `..` segments")]
    DotSegment,
    #[error("must not contain an empty segment (`//`)")]
    EmptySegment,
    #[error("must not end with '/': trailing slashes are ignored, and `prefix` matches a subtree")]
    TrailingSlash,
    #[error("`*` must be a whole segment")]
    PartialWildcard,
}

/// What a matched rule demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No credential needed; one that is sent is not checked.
    Public,
    /// A valid credential carrying every listed permission. Empty: any valid credential.
    Requires(Vec<Permission>),
}

/// Whether a pattern must match the whole path or a leading part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    /// From the rule's `path`.
    Exact,
    /// From the rule's `prefix`.
    Prefix,
}

/// A parsed `path` or `prefix` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    source: String,
    kind: PatternKind,
    segments: Vec<PatternSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternSegment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    Any,
}

impl RoutePattern {
    pub fn parse(source: &str, kind: PatternKind) -> Result<Self, PatternError> {
        let body = source.strip_prefix('/').ok_or(PatternError::NotAbsolute)?;
        if let Some(c) = source.chars().find(|&c| !is_pattern_char(c)) {
            return Err(PatternError::ForbiddenChar(c));
        }
        let (body, trailing_slash) = match body.strip_suffix('/') {
            Some(body) => (body, true),
            None => (body, false),
        };
        if trailing_slash && body.is_empty() {
            return Err(PatternError::EmptySegment);
        }
        if trailing_slash && kind == PatternKind::Exact {
            return Err(PatternError::TrailingSlash);
        }
        let segments = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/')
                .map(|segment| match segment {
                    "" => Err(PatternError::EmptySegment),
                    "." | ".." => Err(PatternError::DotSegment),
                    "*" => Ok(PatternSegment::Any),
                    s if s.contains('*') => Err(PatternError::PartialWildcard),
                    s => Ok(PatternSegment::Literal(s.to_owned())),
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Self {
            source: source.to_owned(),
            kind,
            segments,
        })
    }

    /// The pattern as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn kind(&self) -> PatternKind {
        self.kind
    }

    /// Matches by walking the segments; [`RouteTable::lookup`] uses its index instead.
    pub fn matches(&self, path: &NormalizedPath<'_>, case_sensitive: bool) -> bool {
        self.matches_reading(path, case_sensitive, false)
    }

    /// [`matches`](Self::matches), or with `escapes_opaque` as a server that routes on the raw
    /// path reads it: a segment sent with a `%` escape equals no literal, only `*`.
    fn matches_reading(
        &self,
        path: &NormalizedPath<'_>,
        case_sensitive: bool,
        escapes_opaque: bool,
    ) -> bool {
        let mut request = path.segments();
        for (index, segment) in self.segments.iter().enumerate() {
            let Some(actual) = request.next() else {
                return false;
            };
            if let PatternSegment::Literal(literal) = segment {
                if escapes_opaque && path.segment_was_escaped(index) {
                    return false;
                }
                let equal = if case_sensitive {
                    literal == actual
                } else {
                    literal.eq_ignore_ascii_case(actual)
                };
                if !equal {
                    return false;
                }
            }
        }
        self.kind == PatternKind::Prefix || request.next().is_none()
    }
}

/// RFC 3986 `pchar` without `%` and `;`: unreserved, sub-delims, `:` and `@`.
fn is_pattern_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,=:@/".contains(c)
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    index: usize,
    /// Uppercase; includes `HEAD` whenever `GET` is listed. `None`: every method.
    methods: Option<Vec<String>>,
    pattern: Option<RoutePattern>,
    route_name: Option<String>,
    access: Access,
}

impl Route {
    fn compile(index: usize, raw: &RawRoute) -> Result<Self, RouteError> {
        let fail = |field, problem| RouteError {
            index,
            field,
            problem,
        };
        let methods = raw
            .methods
            .as_deref()
            .map(compile_methods)
            .transpose()
            .map_err(|(field, problem)| fail(field, problem))?;
        let pattern = match (&raw.path, &raw.prefix) {
            (Some(_), Some(_)) => return Err(fail(RouteField::Rule, RouteProblem::PathAndPrefix)),
            (Some(path), None) => Some(
                RoutePattern::parse(path, PatternKind::Exact)
                    .map_err(|e| fail(RouteField::Path, e.into()))?,
            ),
            (None, Some(prefix)) => Some(
                RoutePattern::parse(prefix, PatternKind::Prefix)
                    .map_err(|e| fail(RouteField::Prefix, e.into()))?,
            ),
            (None, None) => None,
        };
        if raw.route_name.as_deref() == Some("") {
            return Err(fail(RouteField::RouteName, RouteProblem::EmptyRouteName));
        }
        if pattern.is_none() && raw.route_name.is_none() {
            return Err(fail(RouteField::Rule, RouteProblem::NoMatcher));
        }
        let access = match (raw.public, &raw.permissions) {
            (Some(false), _) => return Err(fail(RouteField::Public, RouteProblem::PublicFalse)),
            (Some(true), Some(_)) => {
                return Err(fail(RouteField::Rule, RouteProblem::PublicAndPermissions))
            }
            (Some(true), None) => Access::Public,
            (None, None) => return Err(fail(RouteField::Rule, RouteProblem::NoAccess)),
            (None, Some(listed)) => {
                let mut permissions: Vec<Permission> = Vec::with_capacity(listed.len());
                for (i, permission) in listed.iter().enumerate() {
                    let permission = Permission::parse(permission)
                        .map_err(|e| fail(RouteField::Permission(i), e.into()))?;
                    if !permissions.contains(&permission) {
                        permissions.push(permission);
                    }
                }
                Access::Requires(permissions)
            }
        };
        Ok(Self {
            index,
            methods,
            pattern,
            route_name: raw.route_name.clone(),
            access,
        })
    }

    /// Position of the rule in the configuration's `routes`, from 0: for logs and stats.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    pub fn is_public(&self) -> bool {
        self.access == Access::Public
    }

    pub fn pattern(&self) -> Option<&RoutePattern> {
        self.pattern.as_ref()
    }

    pub fn route_name(&self) -> Option<&str> {
        self.route_name.as_deref()
    }

    /// The conditions the index does not cover: method and route name.
    fn accepts(&self, method: &str, route_name: Option<&str>) -> bool {
        let method_ok = self.methods.as_ref().is_none_or(|methods| {
            methods
                .iter()
                .any(|listed| listed.eq_ignore_ascii_case(method))
        });
        let name_ok = self
            .route_name
            .as_deref()
            .is_none_or(|wanted| route_name == Some(wanted));
        method_ok && name_ok
    }

    /// Every condition, without the index: the reference the table's lookup must agree with.
    #[cfg(test)]
    fn matches(
        &self,
        method: &str,
        path: &NormalizedPath<'_>,
        route_name: Option<&str>,
        case_sensitive: bool,
    ) -> bool {
        self.matches_reading(
            method,
            path,
            route_name,
            Reading::new(case_sensitive, false),
        )
    }

    /// Every condition, the path read as `reading` says.
    fn matches_reading(
        &self,
        method: &str,
        path: &NormalizedPath<'_>,
        route_name: Option<&str>,
        reading: Reading,
    ) -> bool {
        self.accepts(method, route_name)
            && self.pattern.as_ref().is_none_or(|pattern| {
                pattern.matches_reading(path, reading.case_sensitive, reading.escapes_opaque)
            })
    }
}

fn compile_methods(listed: &[String]) -> Result<Vec<String>, (RouteField, RouteProblem)> {
    if listed.is_empty() {
        return Err((RouteField::Methods, RouteProblem::NoMethods));
    }
    let mut methods: Vec<String> = Vec::with_capacity(listed.len() + 1);
    for (i, method) in listed.iter().enumerate() {
        let is_token = !method.is_empty()
            && method
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
        if !is_token {
            return Err((RouteField::Method(i), RouteProblem::Method(method.clone())));
        }
        if !methods.contains(method) {
            methods.push(method.clone());
        }
    }
    let has = |m: &str| methods.iter().any(|listed| listed == m);
    if has("GET") && !has("HEAD") {
        methods.push("HEAD".to_owned());
    }
    Ok(methods)
}

/// The compiled `routes`: first match wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
    case_sensitive: bool,
    uses_route_names: bool,
    root: Node,
    /// By rule: `Some` when another server's reading of a path this rule matches can land on a
    /// later rule that demands more (see [`RouteTable::lookup`]): this rule with the access of
    /// all such later rules too.
    guarded: Vec<Option<Route>>,
}

/// One way a server can read a path, for [`RouteTable::lookup`]'s second opinions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    case_sensitive: bool,
    /// Routes on the raw path: a segment sent with a `%` escape matches no literal.
    escapes_opaque: bool,
}

impl Reading {
    fn new(case_sensitive: bool, escapes_opaque: bool) -> Self {
        Self {
            case_sensitive,
            escapes_opaque,
        }
    }
}

/// A trie node: rules whose pattern ends here, and children by next segment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    /// Sorted by key; keys are ASCII-lowercased when the table is case-insensitive.
    literals: Vec<(String, Node)>,
    any: Option<Box<Node>>,
    /// Rule indices, ascending, of `path` patterns that end here.
    exact: Vec<usize>,
    /// Rule indices, ascending, of `prefix` patterns that end here (and of rules with neither).
    prefix: Vec<usize>,
    /// Lowest rule index anywhere under this node, to skip subtrees that cannot win.
    first_rule: usize,
}

impl Node {
    fn new() -> Self {
        Self {
            literals: Vec::new(),
            any: None,
            exact: Vec::new(),
            prefix: Vec::new(),
            first_rule: usize::MAX,
        }
    }

    fn insert(&mut self, route: &Route, case_sensitive: bool) {
        let mut node = self;
        node.first_rule = node.first_rule.min(route.index);
        let (segments, kind) = match &route.pattern {
            Some(pattern) => (pattern.segments.as_slice(), pattern.kind),
            None => (&[][..], PatternKind::Prefix),
        };
        for segment in segments {
            node = match segment {
                PatternSegment::Any => node.any.get_or_insert_with(|| Box::new(Node::new())),
                PatternSegment::Literal(literal) => {
                    let key = if case_sensitive {
                        literal.clone()
                    } else {
                        literal.to_ascii_lowercase()
                    };
                    let at = match node.literals.binary_search_by(|(k, _)| k.cmp(&key)) {
                        Ok(at) => at,
                        Err(at) => {
                            node.literals.insert(at, (key, Node::new()));
                            at
                        }
                    };
                    // In bounds: `at` was just found or inserted.
                    &mut node.literals[at].1
                }
            };
            node.first_rule = node.first_rule.min(route.index);
        }
        match kind {
            PatternKind::Exact => node.exact.push(route.index),
            PatternKind::Prefix => node.prefix.push(route.index),
        }
    }

    fn literal_child(&self, segment: &str, case_sensitive: bool) -> Option<&Node> {
        let found = if case_sensitive {
            self.literals
                .binary_search_by(|(key, _)| key.as_str().cmp(segment))
        } else {
            self.literals
                .binary_search_by(|(key, _)| cmp_folded(key, segment))
        };
        found
            .ok()
            .and_then(|at| self.literals.get(at))
            .map(|(_, child)| child)
    }
}

/// Orders a lowercase `key` against `segment` as if `segment` were lowercased, without copying it.
fn cmp_folded(key: &str, segment: &str) -> Ordering {
    key.bytes()
        .cmp(segment.bytes().map(|b| b.to_ascii_lowercase()))
}

/// What a lookup checks at each candidate rule, beyond the path.
struct Request<'r> {
    method: &'r str,
    route_name: Option<&'r str>,
}

impl RouteTable {
    /// Compiles the configuration's `routes`; `case_sensitive` is `case_sensitive_paths`.
    pub fn compile(raw: &[RawRoute], case_sensitive: bool) -> Result<Self, RouteError> {
        let routes = raw
            .iter()
            .enumerate()
            .map(|(index, raw)| Route::compile(index, raw))
            .collect::<Result<Vec<_>, _>>()?;
        let mut root = Node::new();
        for route in &routes {
            root.insert(route, case_sensitive);
        }
        let uses_route_names = routes.iter().any(|route| route.route_name.is_some());
        let guarded = guarded_routes(&routes, case_sensitive);
        Ok(Self {
            routes,
            case_sensitive,
            uses_route_names,
            root,
            guarded,
        })
    }

    /// The first rule that matches, or `None` (the caller applies `unmatched`). `route_name` is
    /// the Envoy route name, when the host knows it. Does not allocate.
    ///
    /// Servers can read one path two more ways than the filter matches it: comparing case
    /// exactly where the table ignores case, and routing on the raw path, where a segment sent
    /// as `he%61lth` is not the literal `health`. When either reading lands on a later rule than
    /// the first match, the answer is the first match demanding the access of every later rule
    /// it can be read as (`/admin/HEALTH` or `/admin/he%61lth` under a public `/admin/health`
    /// and a protected `/admin/` prefix needs the prefix's permissions). The rule index stays the
    /// first match's. Those readings scan the rules in order, and run only for rules that such a
    /// later rule can shadow, found at load.
    pub fn lookup(
        &self,
        method: &str,
        path: &NormalizedPath<'_>,
        route_name: Option<&str>,
    ) -> Option<&Route> {
        let request = Request { method, route_name };
        let mut best = usize::MAX;
        self.walk(&self.root, path.segments(), &request, &mut best);
        let found = self.routes.get(best)?;
        let Some(guarded) = self.guarded.get(best).and_then(Option::as_ref) else {
            return Some(found);
        };
        let readings = [
            (!self.case_sensitive).then(|| Reading::new(true, false)),
            path.has_escapes()
                .then(|| Reading::new(self.case_sensitive, true)),
            (!self.case_sensitive && path.has_escapes()).then(|| Reading::new(true, true)),
        ];
        let demands_more = |other: &Route| !covers(&found.access, &other.access);
        let elsewhere = readings.into_iter().flatten().any(|reading| {
            self.routes
                .iter()
                .find(|route| route.matches_reading(method, path, route_name, reading))
                .is_some_and(demands_more)
        });
        Some(if elsewhere { guarded } else { found })
    }

    /// Lowers `best` to the lowest index of a rule under `node` that matches the rest of the path.
    fn walk<'p, I>(&self, node: &Node, mut segments: I, request: &Request<'_>, best: &mut usize)
    where
        I: Iterator<Item = &'p str> + Clone,
    {
        if node.first_rule >= *best {
            return;
        }
        self.consider(&node.prefix, request, best);
        match segments.next() {
            None => self.consider(&node.exact, request, best),
            Some(segment) => {
                if let Some(child) = node.literal_child(segment, self.case_sensitive) {
                    self.walk(child, segments.clone(), request, best);
                }
                if let Some(any) = &node.any {
                    self.walk(any, segments, request, best);
                }
            }
        }
    }

    fn consider(&self, candidates: &[usize], request: &Request<'_>, best: &mut usize) {
        for &index in candidates {
            if index >= *best {
                return;
            }
            let accepted = self
                .routes
                .get(index)
                .is_some_and(|route| route.accepts(request.method, request.route_name));
            if accepted {
                *best = index;
                return;
            }
        }
    }

    /// The rules, in configuration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn case_sensitive(&self) -> bool {
        self.case_sensitive
    }

    /// True when some rule matches on `route_name`: only then need the filter ask Envoy for it.
    pub fn uses_route_names(&self) -> bool {
        self.uses_route_names
    }
}

/// [`RouteTable::guarded`]: for each rule, the later rules another reading of one of its paths
/// can land on (see [`can_shadow`]) and that demand something it does not.
fn guarded_routes(routes: &[Route], case_sensitive: bool) -> Vec<Option<Route>> {
    routes
        .iter()
        .enumerate()
        .map(|(i, first)| {
            let mut access = first.access.clone();
            for later in &routes[i + 1..] {
                if !covers(&access, &later.access) && can_shadow(first, later, case_sensitive) {
                    access = access_union(&access, &later.access);
                }
            }
            (access != first.access).then(|| Route {
                access,
                ..first.clone()
            })
        })
        .collect()
}

/// Whether a request can match `first` as the filter reads it and match `later`, but not
/// `first`, as some server reads it: comparing case exactly (when the table ignores case) or
/// taking segments sent with an escape as they are.
fn can_shadow(first: &Route, later: &Route, case_sensitive: bool) -> bool {
    let methods_meet = match (&first.methods, &later.methods) {
        (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
        _ => true,
    };
    let names_meet = match (&first.route_name, &later.route_name) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    let (Some(a), b) = (&first.pattern, &later.pattern) else {
        // Without a pattern, `first` matches alike however the path is read.
        return false;
    };
    let no_segments = Vec::new();
    let (b_segments, b_kind) = match b {
        Some(b) => (&b.segments, b.kind),
        None => (&no_segments, PatternKind::Prefix),
    };
    let (a_len, b_len) = (a.segments.len(), b_segments.len());
    let lengths_meet = match (a.kind, b_kind) {
        (PatternKind::Exact, PatternKind::Exact) => a_len == b_len,
        (PatternKind::Exact, PatternKind::Prefix) => a_len >= b_len,
        (PatternKind::Prefix, PatternKind::Exact) => b_len >= a_len,
        (PatternKind::Prefix, PatternKind::Prefix) => true,
    };
    let segments_meet = a.segments.iter().zip(b_segments).all(|pair| match pair {
        (PatternSegment::Literal(x), PatternSegment::Literal(y)) => x.eq_ignore_ascii_case(y),
        _ => true,
    });
    // Some literal of `first` can be sent (escaped, or in another case) so that `first` does not
    // take it in that reading while `later` does.
    let can_differ = a.segments.iter().enumerate().any(|(k, segment)| {
        let PatternSegment::Literal(literal) = segment else {
            return false;
        };
        match b_segments.get(k) {
            None | Some(PatternSegment::Any) => true,
            Some(PatternSegment::Literal(other)) => !case_sensitive && other != literal,
        }
    });
    methods_meet && names_meet && lengths_meet && segments_meet && can_differ
}

/// Whether a request that satisfies `a` always satisfies `b`.
fn covers(a: &Access, b: &Access) -> bool {
    match (a, b) {
        (_, Access::Public) => true,
        (Access::Public, Access::Requires(_)) => false,
        (Access::Requires(have), Access::Requires(need)) => need.iter().all(|p| have.contains(p)),
    }
}

/// What satisfies both `a` and `b`.
fn access_union(a: &Access, b: &Access) -> Access {
    match (a, b) {
        (Access::Public, other) | (other, Access::Public) => other.clone(),
        (Access::Requires(a), Access::Requires(b)) => {
            let mut both = a.clone();
            both.extend(b.iter().filter(|p| !a.contains(p)).cloned());
            Access::Requires(both)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The `routes` of the example configuration in the spec.
    const SPEC_ROUTES: &str = r#"[
        {"path": "/healthz", "public": true},
        {"prefix": "/public/", "public": true},
        {"methods": ["GET"], "path": "/orders/*/items", "permissions": ["orders:read"]},
        {"prefix": "/admin/", "permissions": ["admin"]},
        {"route_name": "reports", "permissions": []}
    ]"#;

    /// A public subtree, a protected subtree, then everything else public: a path trick that
    /// escapes the protected rule lands on a public one, so the tests would see it.
    const TRICK_ROUTES: &str = r#"[
        {"prefix": "/public/", "public": true},
        {"prefix": "/admin/", "permissions": ["admin"]},
        {"prefix": "/", "public": true}
    ]"#;
    const TRICK_ADMIN: usize = 1;

    /// A valid rule, to put ahead of a bad one so errors must carry the right index.
    const GOOD_ROUTE: &str = r#"{"path": "/ok", "public": true}"#;

    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Refused(PathError),
        Rule(usize),
        Unmatched,
    }

    fn table(json: &str, case_sensitive: bool) -> RouteTable {
        let raw: Vec<RawRoute> = serde_json::from_str(json).unwrap();
        RouteTable::compile(&raw, case_sensitive).unwrap()
    }

    fn outcome(table: &RouteTable, method: &str, raw_path: &str, name: Option<&str>) -> Outcome {
        match normalize_path(raw_path) {
            Err(error) => Outcome::Refused(error),
            Ok(path) => match table.lookup(method, &path, name) {
                Some(route) => Outcome::Rule(route.index()),
                None => Outcome::Unmatched,
            },
        }
    }

    fn get(table: &RouteTable, raw_path: &str) -> Outcome {
        outcome(table, "GET", raw_path, None)
    }

    fn compile_error(bad_route: &str) -> String {
        let json = format!("[{GOOD_ROUTE}, {GOOD_ROUTE}, {GOOD_ROUTE}, {bad_route}]");
        let raw: Vec<RawRoute> = serde_json::from_str(&json).unwrap();
        match RouteTable::compile(&raw, false) {
            Ok(_) => format!("compiled: {bad_route}"),
            Err(error) => error.to_string(),
        }
    }

    /// Each trick must reach the protected rule or be refused, never a public rule.
    fn assert_protected_or_refused(tricks: &[&str]) {
        let table = table(TRICK_ROUTES, false);
        for trick in tricks {
            let got = get(&table, trick);
            assert!(
                matches!(got, Outcome::Rule(TRICK_ADMIN) | Outcome::Refused(_)),
                "{trick} -> {got:?}"
            );
        }
    }

    #[test]
    fn spec_example_routes_compile_with_their_access() {
        let table = table(SPEC_ROUTES, false);
        assert_eq!(table.len(), 5);
        assert!(table.routes()[0].is_public());
        let orders = &table.routes()[2];
        assert_eq!(
            orders.pattern().map(RoutePattern::as_str),
            Some("/orders/*/items")
        );
        assert_eq!(
            orders.access(),
            &Access::Requires(vec![Permission::parse("orders:read").unwrap()])
        );
        assert_eq!(table.routes()[4].access(), &Access::Requires(vec![]));
        assert_eq!(table.routes()[4].route_name(), Some("reports"));
    }

    #[test]
    fn exact_path_matches_only_that_path() {
        let table = table(SPEC_ROUTES, false);
        assert_eq!(get(&table, "/healthz"), Outcome::Rule(0));
        assert_eq!(get(&table, "/healthz?verbose=1"), Outcome::Rule(0));
        assert_eq!(get(&table, "/healthz/x"), Outcome::Unmatched);
        assert_eq!(get(&table, "/healthzz"), Outcome::Unmatched);
        assert_eq!(get(&table, "/"), Outcome::Unmatched);
    }

    #[test]
    fn exact_path_ignores_a_trailing_slash() {
        let table = table(SPEC_ROUTES, false);
        assert_eq!(get(&table, "/healthz/"), Outcome::Rule(0));
    }

    #[test]
    fn root_path_matches_only_the_root() {
        let table = table(r#"[{"path": "/", "public": true}]"#, true);
        assert_eq!(get(&table, "/"), Outcome::Rule(0));
        assert_eq!(get(&table, "//"), Outcome::Refused(PathError::EmptySegment));
        assert_eq!(get(&table, "/x"), Outcome::Unmatched);
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        for prefix in ["/admin/", "/admin"] {
            let json = format!(r#"[{{"prefix": "{prefix}", "permissions": ["admin"]}}]"#);
            let table = table(&json, true);
            for hit in ["/admin", "/admin/", "/admin/users", "/admin/users/7/"] {
                assert_eq!(get(&table, hit), Outcome::Rule(0), "{prefix} {hit}");
            }
            for miss in ["/administrator", "/adm", "/", "/x/admin"] {
                assert_eq!(get(&table, miss), Outcome::Unmatched, "{prefix} {miss}");
            }
        }
    }

    #[test]
    fn root_prefix_matches_every_path() {
        let table = table(r#"[{"prefix": "/", "public": true}]"#, true);
        for path in ["/", "/a", "/a/b/c/", "/%7Ex"] {
            assert_eq!(get(&table, path), Outcome::Rule(0), "{path}");
        }
    }

    #[test]
    fn wildcard_matches_exactly_one_non_empty_segment() {
        let table = table(SPEC_ROUTES, false);
        assert_eq!(get(&table, "/orders/42/items"), Outcome::Rule(2));
        assert_eq!(get(&table, "/orders/abc-9/items/"), Outcome::Rule(2));
        assert_eq!(
            get(&table, "/orders//items"),
            Outcome::Refused(PathError::EmptySegment)
        );
        for miss in ["/orders/42/x/items", "/orders/items", "/orders/42"] {
            assert_eq!(get(&table, miss), Outcome::Unmatched, "{miss}");
        }
    }

    #[test]
    fn wildcard_works_inside_a_prefix() {
        let table = table(
            r#"[{"prefix": "/tenants/*/admin/", "permissions": ["a"]}]"#,
            true,
        );
        assert_eq!(get(&table, "/tenants/acme/admin/users"), Outcome::Rule(0));
        assert_eq!(get(&table, "/tenants/acme/admin"), Outcome::Rule(0));
        assert_eq!(get(&table, "/tenants/admin/users"), Outcome::Unmatched);
    }

    #[test]
    fn methods_restrict_a_rule() {
        let table = table(SPEC_ROUTES, false);
        assert_eq!(
            outcome(&table, "GET", "/orders/1/items", None),
            Outcome::Rule(2)
        );
        assert_eq!(
            outcome(&table, "POST", "/orders/1/items", None),
            Outcome::Unmatched
        );
        assert_eq!(
            outcome(&table, "DELETE", "/orders/1/items", None),
            Outcome::Unmatched
        );
    }

    #[test]
    fn get_also_admits_head() {
        let table = table(SPEC_ROUTES, false);
        assert_eq!(
            outcome(&table, "HEAD", "/orders/1/items", None),
            Outcome::Rule(2)
        );
        let post_only = table_of(r#"{"methods": ["POST"], "path": "/x", "public": true}"#);
        assert_eq!(outcome(&post_only, "HEAD", "/x", None), Outcome::Unmatched);
    }

    fn table_of(route: &str) -> RouteTable {
        table(&format!("[{route}]"), false)
    }

    #[test]
    fn request_method_case_is_ignored() {
        let table = table_of(r#"{"methods": ["POST"], "path": "/x", "permissions": ["w"]}"#);
        assert_eq!(outcome(&table, "post", "/x", None), Outcome::Rule(0));
        assert_eq!(outcome(&table, "Post", "/x", None), Outcome::Rule(0));
    }

    #[test]
    fn route_name_rule_matches_only_that_route() {
        let table = table(SPEC_ROUTES, false);
        assert_eq!(
            outcome(&table, "GET", "/r/1", Some("reports")),
            Outcome::Rule(4)
        );
        assert_eq!(
            outcome(&table, "GET", "/r/1", Some("reports2")),
            Outcome::Unmatched
        );
        assert_eq!(outcome(&table, "GET", "/r/1", Some("")), Outcome::Unmatched);
        assert_eq!(outcome(&table, "GET", "/r/1", None), Outcome::Unmatched);
    }

    #[test]
    fn route_name_and_path_must_both_match() {
        let table = table_of(r#"{"route_name": "api", "prefix": "/v1/", "public": true}"#);
        assert_eq!(
            outcome(&table, "GET", "/v1/x", Some("api")),
            Outcome::Rule(0)
        );
        assert_eq!(
            outcome(&table, "GET", "/v2/x", Some("api")),
            Outcome::Unmatched
        );
        assert_eq!(
            outcome(&table, "GET", "/v1/x", Some("web")),
            Outcome::Unmatched
        );
    }

    #[test]
    fn first_matching_rule_wins() {
        let table = table(
            r#"[
                {"prefix": "/a/", "permissions": ["first"]},
                {"path": "/a/b", "public": true},
                {"prefix": "/", "public": true}
            ]"#,
            true,
        );
        assert_eq!(get(&table, "/a/b"), Outcome::Rule(0));
        assert_eq!(get(&table, "/b"), Outcome::Rule(2));
    }

    #[test]
    fn an_earlier_wildcard_rule_beats_a_later_literal_rule() {
        let table = table(
            r#"[
                {"path": "/*/items", "permissions": ["any"]},
                {"path": "/orders/items", "public": true},
                {"route_name": "r", "public": true}
            ]"#,
            true,
        );
        assert_eq!(get(&table, "/orders/items"), Outcome::Rule(0));
        assert_eq!(
            outcome(&table, "GET", "/orders/items", Some("r")),
            Outcome::Rule(0)
        );
        assert_eq!(
            outcome(&table, "GET", "/other", Some("r")),
            Outcome::Rule(2)
        );
    }

    #[test]
    fn a_rule_skipped_for_its_method_lets_a_later_rule_match() {
        let table = table(
            r#"[
                {"methods": ["POST", "PUT"], "prefix": "/orders/", "permissions": ["orders:write"]},
                {"prefix": "/orders/", "permissions": ["orders:read"]}
            ]"#,
            true,
        );
        assert_eq!(outcome(&table, "PUT", "/orders/1", None), Outcome::Rule(0));
        assert_eq!(outcome(&table, "GET", "/orders/1", None), Outcome::Rule(1));
    }

    #[test]
    fn case_insensitive_table_ignores_ascii_case_on_both_sides() {
        let table = table(
            r#"[{"prefix": "/Admin/", "permissions": ["admin"]}]"#,
            false,
        );
        for path in ["/admin/x", "/ADMIN/x", "/aDmIn", "/%41dmin/x"] {
            assert_eq!(get(&table, path), Outcome::Rule(0), "{path}");
        }
    }

    #[test]
    fn case_sensitive_table_compares_exactly() {
        let table = table(r#"[{"prefix": "/admin/", "permissions": ["admin"]}]"#, true);
        assert_eq!(get(&table, "/admin/x"), Outcome::Rule(0));
        assert_eq!(get(&table, "/ADMIN/x"), Outcome::Unmatched);
    }

    #[test]
    fn permissions_keep_their_order_without_duplicates() {
        let table = table_of(r#"{"path": "/x", "permissions": ["b", "a:*", "b"]}"#);
        let listed = match table.routes()[0].access() {
            Access::Requires(permissions) => permissions.iter().map(Permission::as_str).collect(),
            Access::Public => Vec::new(),
        };
        assert_eq!(listed, ["b", "a:*"]);
    }

    #[test]
    fn dot_segments_cannot_leave_a_public_prefix() {
        assert_protected_or_refused(&[
            "/public/../admin/x",
            "/public/./../admin",
            "/./admin",
            "/public/x/../../admin/y",
            "/admin/./x",
        ]);
        assert_eq!(
            get(&table(TRICK_ROUTES, false), "/public/../admin/x"),
            Outcome::Refused(PathError::DotSegment)
        );
    }

    #[test]
    fn encoded_dot_segments_cannot_leave_a_public_prefix() {
        assert_protected_or_refused(&[
            "/public/%2e%2e/admin/x",
            "/public/%2E%2E/admin",
            "/public/.%2E/admin",
            "/public/%2e./admin",
            "/public/%C0%AE%C0%AE/admin",
            "/public/%252e%252e/admin",
        ]);
        assert_eq!(
            get(&table(TRICK_ROUTES, false), "/public/%2E%2E/admin"),
            Outcome::Refused(PathError::DotSegment)
        );
    }

    #[test]
    fn dot_dot_beyond_the_root_stays_at_the_root() {
        assert_protected_or_refused(&["/../admin/x", "/public/../../../admin", "/../../admin"]);
        let table = table(TRICK_ROUTES, false);
        assert_eq!(normalize_path("/public/../.."), Err(PathError::DotSegment));
        assert_eq!(
            get(&table, "/admin/.."),
            Outcome::Refused(PathError::DotSegment)
        );
    }

    #[test]
    fn doubled_slashes_cannot_hide_a_protected_prefix() {
        assert_protected_or_refused(&["//admin/x", "///admin", "/admin//x", "/public//../admin"]);
        assert_eq!(
            get(&table(TRICK_ROUTES, false), "//admin/x"),
            Outcome::Refused(PathError::EmptySegment)
        );
    }

    #[test]
    fn path_parameters_cannot_hide_a_protected_prefix() {
        assert_protected_or_refused(&[
            "/admin;jsessionid=1/x",
            "/public/..;/admin",
            "/public;x/../admin",
            "/admin%3Bx/y",
            "/;x/admin/y",
        ]);
        assert_eq!(
            get(&table(TRICK_ROUTES, false), "/admin;jsessionid=1/x"),
            Outcome::Refused(PathError::Semicolon)
        );
    }

    #[test]
    fn letter_case_cannot_hide_a_protected_prefix_when_case_insensitive() {
        assert_protected_or_refused(&["/ADMIN/x", "/Admin/x", "/%41dmin/x", "/%61DMIN"]);
    }

    #[test]
    fn encoded_slashes_and_backslashes_are_refused() {
        let table = table(TRICK_ROUTES, false);
        for trick in [
            "/public/..%2fadmin",
            "/admin%2Fx",
            "/public%2F..%2Fadmin",
            "/public/..%5cadmin",
        ] {
            assert!(matches!(get(&table, trick), Outcome::Refused(_)), "{trick}");
        }
        assert_eq!(
            get(&table, "/admin%2Fx"),
            Outcome::Refused(PathError::EncodedSlash)
        );
        assert_eq!(
            get(&table, "/public\\..\\admin"),
            Outcome::Refused(PathError::Backslash)
        );
    }

    #[test]
    fn a_query_or_fragment_cannot_hide_a_protected_prefix() {
        let table = table(TRICK_ROUTES, false);
        assert_eq!(get(&table, "/admin/x?next=/public/"), Outcome::Rule(1));
        assert_eq!(
            get(&table, "/public/x#/../../admin"),
            Outcome::Refused(PathError::Fragment)
        );
    }

    #[test]
    fn rule_errors_name_the_rule_and_field() {
        let cases = [
            (
                r#"{"path": "admin", "public": true}"#,
                "routes[3].path: must start with '/'",
            ),
            (
                r#"{"path": "", "public": true}"#,
                "routes[3].path: must start with '/'",
            ),
            (
                r#"{"prefix": "x/", "public": true}"#,
                "routes[3].prefix: must start with '/'",
            ),
            (
                r#"{"public": true}"#,
                "routes[3]: set at least one of `path`, `prefix`",
            ),
            (
                r#"{"path": "/a", "prefix": "/b", "public": true}"#,
                "routes[3]: set `path` or `prefix`, not both",
            ),
            (
                r#"{"path": "/a"}"#,
                "routes[3]: set `public: true` or `permissions`",
            ),
            (
                r#"{"path": "/a", "public": true, "permissions": []}"#,
                "routes[3]: set `public: true` or `permissions`, not both",
            ),
            (
                r#"{"path": "/a", "public": false}"#,
                "routes[3].public: `public: false` means nothing",
            ),
            (
                r#"{"path": "/a", "public": false, "permissions": ["x"]}"#,
                "routes[3].public: ",
            ),
            (
                r#"{"methods": [], "path": "/a", "public": true}"#,
                "routes[3].methods: must list at least one method",
            ),
            (
                r#"{"methods": ["GET", "get"], "path": "/a", "public": true}"#,
                "routes[3].methods[1]: \"get\" is not an uppercase HTTP method",
            ),
            (
                r#"{"methods": [""], "path": "/a", "public": true}"#,
                "routes[3].methods[0]: \"\" is not",
            ),
            (
                r#"{"methods": ["GET /"], "path": "/a", "public": true}"#,
                "routes[3].methods[0]: ",
            ),
            (
                r#"{"path": "/a?b", "public": true}"#,
                "routes[3].path: must not contain '?'",
            ),
            (
                r#"{"path": "/a#b", "public": true}"#,
                "routes[3].path: must not contain '#'",
            ),
            (
                r#"{"path": "/a%2Fb", "public": true}"#,
                "routes[3].path: must not contain '%'",
            ),
            (
                r#"{"prefix": "/a;v=1/", "public": true}"#,
                "routes[3].prefix: must not contain ';'",
            ),
            (
                r#"{"path": "/a\\b", "public": true}"#,
                "routes[3].path: must not contain '\\\\'",
            ),
            (
                r#"{"path": "/a b", "public": true}"#,
                "routes[3].path: must not contain ' '",
            ),
            (
                r#"{"path": "/caf\u00e9", "public": true}"#,
                "routes[3].path: must not contain 'é'",
            ),
            (
                r#"{"path": "/a/../b", "public": true}"#,
                "routes[3].path: must not contain `.` or `..` segments",
            ),
            (
                r#"{"prefix": "/./a/", "public": true}"#,
                "routes[3].prefix: must not contain `.` or `..`",
            ),
            (
                r#"{"path": "/a//b", "public": true}"#,
                "routes[3].path: must not contain an empty segment",
            ),
            (
                r#"{"prefix": "//", "public": true}"#,
                "routes[3].prefix: must not contain an empty segment",
            ),
            (
                r#"{"prefix": "/a//", "public": true}"#,
                "routes[3].prefix: must not contain an empty segment",
            ),
            (
                r#"{"path": "/a/", "public": true}"#,
                "routes[3].path: must not end with '/'",
            ),
            (
                r#"{"path": "/orders/*x", "public": true}"#,
                "routes[3].path: `*` must be a whole segment",
            ),
            (
                r#"{"prefix": "/a**/", "public": true}"#,
                "routes[3].prefix: `*` must be a whole segment",
            ),
            (
                r#"{"route_name": "", "public": true}"#,
                "routes[3].route_name: must not be empty",
            ),
            (
                r#"{"path": "/a", "permissions": ["ok", ""]}"#,
                "routes[3].permissions[1]: must not be empty",
            ),
            (
                r#"{"path": "/a", "permissions": ["orders read"]}"#,
                "routes[3].permissions[0]: \"orders read\" may only contain",
            ),
        ];
        for (route, expected) in cases {
            let message = compile_error(route);
            assert!(
                message.starts_with(expected),
                "{route}\n  got: {message}\n want: {expected}"
            );
        }
    }

    #[test]
    fn rule_errors_carry_the_field_as_data() {
        let raw = [
            RawRoute {
                path: Some("/a".into()),
                public: Some(true),
                ..RawRoute::default()
            },
            RawRoute {
                path: Some("/b".into()),
                public: Some(false),
                ..RawRoute::default()
            },
        ];
        let error = RouteTable::compile(&raw, true).unwrap_err();
        assert_eq!(error.index(), 1);
        assert_eq!(error.rule_field(), RouteField::Public);
        assert_eq!(error.problem(), &RouteProblem::PublicFalse);
        assert_eq!(error.field(), "routes[1].public");
        assert!(error.message().starts_with("`public: false` means nothing"));
    }

    #[test]
    fn a_table_knows_whether_it_needs_route_names() {
        assert!(table(SPEC_ROUTES, false).uses_route_names());
        assert!(!table(TRICK_ROUTES, false).uses_route_names());
    }

    #[test]
    fn unknown_rule_fields_are_rejected() {
        let parsed =
            serde_json::from_str::<RawRoute>(r#"{"path": "/a", "public": true, "name": "x"}"#);
        assert!(parsed.is_err());
    }

    #[test]
    fn an_empty_table_matches_nothing() {
        let table = RouteTable::compile(&[], false).unwrap();
        assert!(table.is_empty());
        assert_eq!(get(&table, "/"), Outcome::Unmatched);
    }

    /// Deterministic xorshift, so the generated cases are the same on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    fn random_rule(rng: &mut Rng) -> RawRoute {
        let mut pattern = String::new();
        for _ in 0..rng.below(4) {
            pattern.push('/');
            pattern.push_str(rng.pick(&["a", "b", "A", "c", "*"]));
        }
        if pattern.is_empty() {
            pattern.push('/');
        }
        let mut raw = RawRoute::default();
        match rng.below(4) {
            0 => raw.path = Some(pattern),
            1 => raw.prefix = Some(pattern),
            2 => raw.route_name = Some(rng.pick(&["r1", "r2"]).to_owned()),
            _ => {
                raw.prefix = Some(pattern);
                raw.route_name = Some("r1".to_owned());
            }
        }
        match rng.below(4) {
            0 => raw.methods = Some(vec!["GET".to_owned()]),
            1 => raw.methods = Some(vec!["POST".to_owned(), "PUT".to_owned()]),
            _ => {}
        }
        match rng.below(4) {
            0 => raw.public = Some(true),
            1 => raw.permissions = Some(vec![]),
            _ => raw.permissions = Some(vec![rng.pick(&["p1", "p2"]).to_owned()]),
        }
        raw
    }

    /// A public exact path under a protected prefix, ignoring case.
    const SHADOW_ROUTES: &str = r#"[
        {"path": "/admin/health", "public": true},
        {"path": "/orders/export", "permissions": ["export"]},
        {"prefix": "/orders/", "permissions": ["orders:read"]},
        {"prefix": "/admin/", "permissions": ["admin"]}
    ]"#;

    fn access(table: &RouteTable, raw_path: &str) -> Option<Access> {
        let path = normalize_path(raw_path).unwrap();
        table
            .lookup("GET", &path, None)
            .map(|route| route.access().clone())
    }

    fn requires(permissions: &[&str]) -> Option<Access> {
        Some(Access::Requires(
            permissions
                .iter()
                .map(|p| Permission::parse(p).unwrap())
                .collect(),
        ))
    }

    #[test]
    fn a_path_only_letter_case_sends_elsewhere_needs_the_access_of_both_rules() {
        // Found by the differential path test (tests/tests/e2e/path_oracle.rs): `/admin/heaLtH`
        // was public, and a case-sensitive upstream serves it under `/admin/`.
        let table = table(SHADOW_ROUTES, false);
        assert_eq!(access(&table, "/admin/health"), Some(Access::Public));
        assert_eq!(access(&table, "/admin/heaLtH"), requires(&["admin"]));
        assert_eq!(access(&table, "/admin/HEALTH/"), requires(&["admin"]));
        assert_eq!(
            access(&table, "/orders/EXPORT"),
            requires(&["export", "orders:read"])
        );
        assert_eq!(access(&table, "/orders/export"), requires(&["export"]));
        // No rule matches with case compared: a case-sensitive upstream serves nothing of the
        // table there, so the case-insensitive rule alone applies.
        assert_eq!(access(&table, "/ADMIN/health"), Some(Access::Public));
        assert_eq!(access(&table, "/ADMIN/x"), requires(&["admin"]));
        // The rule index stays the first match's, for logs and stats.
        let path = normalize_path("/admin/HEALTH").unwrap();
        assert_eq!(table.lookup("GET", &path, None).map(Route::index), Some(0));
    }

    #[test]
    fn a_path_only_an_escape_sends_elsewhere_needs_the_access_of_both_rules() {
        // Found by the differential path test: `/admin/he%61lth` was public, and a server that
        // routes on the raw path (Express) serves it under `/admin/`.
        for case_sensitive in [true, false] {
            let table = table(SHADOW_ROUTES, case_sensitive);
            assert_eq!(access(&table, "/admin/he%61lth"), requires(&["admin"]));
            assert_eq!(access(&table, "/%61dmin/health"), Some(Access::Public));
            assert_eq!(access(&table, "/admin/health?x=%41"), Some(Access::Public));
            assert_eq!(
                access(&table, "/orders/%65xport"),
                requires(&["export", "orders:read"])
            );
        }
    }

    #[test]
    fn only_rules_another_reading_can_reach_are_joined() {
        let sensitive = table(SHADOW_ROUTES, true);
        assert_eq!(access(&sensitive, "/admin/HEALTH"), requires(&["admin"]));
        assert_eq!(access(&sensitive, "/admin/health"), Some(Access::Public));
        let guarded = |table: &RouteTable| -> Vec<usize> {
            (0..table.len())
                .filter(|&i| table.guarded[i].is_some())
                .collect()
        };
        assert_eq!(guarded(&sensitive), [0, 1]);
        assert!(guarded(&table(TRICK_ROUTES, false)).is_empty());
        // A rule on a route name meets every path on that route.
        let spec = table(SPEC_ROUTES, false);
        let path = normalize_path("/HEALTHZ").unwrap();
        let on = |name| spec.lookup("GET", &path, name).map(|r| r.access().clone());
        assert_eq!(on(None), Some(Access::Public));
        assert_eq!(on(Some("reports")), requires(&[]));
        // Disjoint methods or route names cannot meet.
        let apart = table(
            r#"[
                {"methods": ["GET"], "path": "/a/b", "public": true},
                {"methods": ["POST"], "prefix": "/a/", "permissions": ["x"]},
                {"route_name": "r1", "path": "/c/d", "public": true},
                {"route_name": "r2", "prefix": "/c/", "permissions": ["x"]}
            ]"#,
            false,
        );
        assert!(guarded(&apart).is_empty());
        // Only a reading that lands on a rule demanding more changes the answer.
        let layered = table(
            r#"[
                {"path": "/x/health", "public": true},
                {"prefix": "/x/", "public": true},
                {"prefix": "/", "permissions": ["p"]}
            ]"#,
            false,
        );
        assert_eq!(guarded(&layered), [0, 1]);
        assert_eq!(access(&layered, "/x/HEALTH"), Some(Access::Public));
        assert_eq!(access(&layered, "/X/health"), requires(&["p"]));
    }

    #[test]
    fn indexed_lookup_agrees_with_a_linear_scan() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let count = 1 + rng.below(40);
            let raw: Vec<RawRoute> = (0..count).map(|_| random_rule(&mut rng)).collect();
            let case_sensitive = round % 2 == 0;
            let table = RouteTable::compile(&raw, case_sensitive).unwrap();
            for _ in 0..50 {
                let mut raw_path = String::new();
                for _ in 0..rng.below(5) {
                    raw_path.push('/');
                    raw_path.push_str(rng.pick(&["a", "b", "c", "A", "x", "", "%61", "%41"]));
                }
                if raw_path.is_empty() || rng.below(4) == 0 {
                    raw_path.push('/');
                }
                let Ok(path) = normalize_path(&raw_path) else {
                    continue;
                };
                let method = rng.pick(&["GET", "HEAD", "POST", "put", "DELETE"]);
                let name = [None, Some("r1"), Some("r2")][rng.below(3)];
                let indexed = table.lookup(method, &path, name).map(Route::index);
                let linear = table
                    .routes()
                    .iter()
                    .find(|route| route.matches(method, &path, name, case_sensitive))
                    .map(Route::index);
                assert_eq!(indexed, linear, "{method} {raw_path} {name:?} in {raw:#?}");
                // The access demanded covers the rule every reading of the path picks, and is
                // the first match's own when all readings agree.
                let Some(found) = table.lookup(method, &path, name) else {
                    continue;
                };
                let readings = [
                    Reading::new(case_sensitive, false),
                    Reading::new(true, false),
                    Reading::new(case_sensitive, true),
                    Reading::new(true, true),
                ];
                let picked: Vec<&Route> = readings
                    .iter()
                    .filter_map(|&reading| {
                        table
                            .routes()
                            .iter()
                            .find(|route| route.matches_reading(method, &path, name, reading))
                    })
                    .collect();
                for other in &picked {
                    assert!(
                        covers(found.access(), other.access()),
                        "{method} {raw_path} {name:?}: {:?} misses rule {} in {raw:#?}",
                        found.access(),
                        other.index()
                    );
                }
                if picked.iter().all(|other| other.index() == found.index()) {
                    assert_eq!(found.access(), table.routes()[found.index()].access());
                }
            }
        }
    }

    #[test]
    fn a_thousand_rules_still_find_the_first_match() {
        let mut raw: Vec<RawRoute> = (0..500)
            .map(|i| RawRoute {
                prefix: Some(format!("/svc{i}/")),
                permissions: Some(vec![format!("svc{i}")]),
                ..RawRoute::default()
            })
            .collect();
        raw.extend((0..499).map(|i| RawRoute {
            methods: Some(vec!["GET".to_owned()]),
            path: Some(format!("/api/v1/items{i}/*")),
            permissions: Some(vec![]),
            ..RawRoute::default()
        }));
        raw.push(RawRoute {
            prefix: Some("/".to_owned()),
            public: Some(true),
            ..RawRoute::default()
        });
        let table = RouteTable::compile(&raw, false).unwrap();
        assert_eq!(table.len(), 1000);
        assert_eq!(get(&table, "/svc0/x"), Outcome::Rule(0));
        assert_eq!(get(&table, "/SVC499"), Outcome::Rule(499));
        assert_eq!(get(&table, "/api/v1/items498/7"), Outcome::Rule(998));
        assert_eq!(
            outcome(&table, "POST", "/api/v1/items0/7", None),
            Outcome::Rule(999)
        );
        assert_eq!(get(&table, "/svc500/x"), Outcome::Rule(999));
    }
}
