//! The differential path test: thousands of generated paths through a real Envoy and the real
//! filter, each judged against what the echo upstream actually received.
//!
//! For every path, sent with a key holding every permission: a refusal (400 from the filter or
//! Envoy, Envoy's 404) is one-to-one by definition. A path that reaches the upstream is read the
//! ways real servers read paths ([`keygate_e2e::upstream_paths`]: decode once or not, resolve dot
//! segments or not, strip `;params`, `\` as a separator, compare case or not, ...). Servers of
//! one kind must all pick the same rule; the filter must demand exactly what the rules picked by
//! the kinds demand: a key holding only that permission reaches the upstream, a key holding every
//! other permission gets 403, no key reaches the upstream only if all are public. A 403 for a
//! path no rule matches must agree with the servers too. Any disagreement fails the test, with
//! the first cases printed.
//!
//! Both listeners of `envoy/e2e.yaml` run it: `main` (Envoy's normalization on, escaped slashes
//! rejected) and `raw` (all off: the filter alone). Paths come from a seeded generator (dot
//! segments raw and encoded in both hex cases, `;params` and `..;`, every byte 0x00-0xFF
//! percent-encoded, doubled slashes, case changes, trailing slashes, queries) plus a systematic
//! pass of every byte in three places and of every letter of the rules' paths in the other case
//! or percent-encoded. Both values of `case_sensitive_paths` run, each on a stack of its own.
//! Requests go over a few keep-alive connections.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use keygate_e2e::raw_http::KeepAlive;
use keygate_e2e::upstream_paths::{Consensus, Rule, RuleKind, RuleSet};
use keygate_e2e::{base_filter_config, Listener, Reply, Stack};
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// Seed of the generator: the same paths every run.
const SEED: u64 = 0x6b65_7967_6174_6521;
/// Generated paths per listener, on top of the every-byte pass (3 x 256 x 2 hex cases) and the
/// variants of the rules' own paths.
const GENERATED: usize = 6000;
/// Keep-alive connections per listener.
const CONNECTIONS: usize = 8;
/// Mismatches printed in full.
const SHOWN: usize = 20;

/// The route table under test. Each protected rule needs its own permission, so a key tells which
/// rule the filter applied. `/admin/health` is public and shadows the `/admin` prefix; `/orders/*`
/// and `/orders/*/items` differ in depth only.
fn rules(case_sensitive: bool) -> RuleSet {
    let rule = |name, kind, pattern, permission| Rule {
        name,
        kind,
        pattern,
        permission,
    };
    RuleSet {
        rules: vec![
            rule("public", RuleKind::Prefix, "/public", None),
            rule("admin-health", RuleKind::Path, "/admin/health", None),
            rule("order", RuleKind::Path, "/orders/*", Some("orders:read")),
            rule(
                "items",
                RuleKind::Path,
                "/orders/*/items",
                Some("items:read"),
            ),
            rule("admin", RuleKind::Prefix, "/admin", Some("admin")),
            rule(
                "reports",
                RuleKind::Prefix,
                "/reports/daily",
                Some("reports:read"),
            ),
        ],
        case_sensitive,
    }
}

fn filter_config(rules: &RuleSet) -> Value {
    let mut config = base_filter_config();
    config["routes"] = rules
        .rules
        .iter()
        .map(|rule| {
            let mut json = match rule.kind {
                RuleKind::Path => json!({"path": rule.pattern}),
                RuleKind::Prefix => json!({"prefix": rule.pattern}),
            };
            match rule.permission {
                Some(permission) => json["permissions"] = json!([permission]),
                None => json["public"] = json!(true),
            }
            json
        })
        .collect();
    config["case_sensitive_paths"] = json!(rules.case_sensitive);
    config
}

/// The keys of the test, by what they hold.
struct Keys {
    all: String,
    /// Permission -> a key holding only it.
    only: BTreeMap<&'static str, String>,
    /// Permission -> a key holding every permission but it.
    all_but: BTreeMap<&'static str, String>,
}

impl Keys {
    async fn create(stack: &Stack, rules: &RuleSet) -> anyhow::Result<Self> {
        let permissions: Vec<&'static str> = rules
            .rules
            .iter()
            .filter_map(|rule| rule.permission)
            .collect();
        let (_, all) = stack.create_key("acme", &permissions).await?;
        let mut only = BTreeMap::new();
        let mut all_but = BTreeMap::new();
        for &permission in &permissions {
            only.insert(permission, stack.create_key("acme", &[permission]).await?.1);
            let others: Vec<&str> = permissions
                .iter()
                .copied()
                .filter(|p| *p != permission)
                .collect();
            all_but.insert(permission, stack.create_key("acme", &others).await?.1);
        }
        Ok(Self { all, only, all_but })
    }
}

/// A splitmix64 generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Segment names of the rules, and near misses.
const NAMES: &[&str] = &[
    "admin", "admin", "orders", "orders", "public", "public", "health", "items", "reports",
    "daily", "42", "x", "a.b", "...", ".x", "adminx", "café",
];
/// Dot segments and their disguises.
const DOTS: &[&str] = &[
    ".",
    "..",
    "..",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2E%2E",
    "%2e%2E",
    ".%2e",
    "%2E.",
    "..;",
    "..;x=1",
    ".;",
    "%2e%2e;",
    "..%3b",
    "..%00",
    "..%2f",
    "..%5c",
    "..\\",
    "%252e%252e",
    "%c0%ae%c0%ae",
];
/// Oddities inserted inside a segment.
const ODDITIES: &[&str] = &[
    ";",
    ";jsessionid=1",
    "%3b",
    "%3B",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "%3f",
    "%3F",
    "%23",
    "%25",
    "%252F",
    "%252e",
    "%zz",
    "%",
    "%2",
    "~",
    "@",
    ":",
    "!",
    "$",
    "&",
    "'",
    "(",
    "*",
    "+",
    ",",
    "=",
    "é",
    "%C3%A9",
    "%c3%a9",
    "%e2%80%ae",
];
const QUERIES: &[&str] = &["?x=1", "?x=/../admin", "?a=%2e%2e%2fadmin&b=;", "?", "?#"];

/// Percent-encodes `byte` in upper or lower hex.
fn escape(byte: u8, upper: bool) -> String {
    if upper {
        format!("%{byte:02X}")
    } else {
        format!("%{byte:02x}")
    }
}

/// One segment, mutated.
fn segment(rng: &mut Rng) -> String {
    let base = match rng.below(10) {
        0..=5 => rng.pick(NAMES).to_owned(),
        6..=8 => rng.pick(DOTS).to_owned(),
        _ => String::new(),
    };
    let mut out = String::new();
    for c in base.chars() {
        let mut c = c.to_string();
        if rng.chance(15) {
            c = c.to_uppercase();
        }
        if c.is_ascii() && rng.chance(12) {
            let upper = rng.chance(50);
            c = c.bytes().map(|b| escape(b, upper)).collect();
        }
        out.push_str(&c);
    }
    if rng.chance(10) {
        let at = char_boundary(&out, rng.below(out.len() + 1));
        let upper = rng.chance(50);
        out.insert_str(at, &escape(rng.below(256) as u8, upper));
    }
    if rng.chance(10) {
        let at = char_boundary(&out, rng.below(out.len() + 1));
        out.insert_str(at, rng.pick(ODDITIES));
    }
    out
}

fn char_boundary(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// One generated path: usually starting at a rule's first segment, then a few mutated segments.
fn generated_path(rng: &mut Rng) -> String {
    let mut path = String::new();
    let count = 1 + rng.below(5);
    for i in 0..count {
        path.push('/');
        if rng.chance(6) {
            path.push('/');
        }
        if i == 0 && rng.chance(50) {
            let first = rng.pick(&["admin", "orders", "public", "reports"]);
            path.push_str(&case_changed(rng, first));
        } else {
            path.push_str(&segment(rng));
        }
    }
    if rng.chance(20) {
        path.push('/');
    }
    if rng.chance(8) {
        path.push_str(rng.pick(QUERIES));
    }
    path
}

fn case_changed(rng: &mut Rng, name: &str) -> String {
    if !rng.chance(25) {
        return name.to_owned();
    }
    name.chars()
        .map(|c| {
            if rng.chance(40) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// Every byte, percent-encoded in both hex cases, in three places that decide between rules.
fn every_byte_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for byte in 0..=255u8 {
        for upper in [false, true] {
            let e = escape(byte, upper);
            paths.push(format!("/admin{e}/x"));
            paths.push(format!("/public/{e}/admin/x"));
            paths.push(format!("/orders/1{e}/items"));
        }
    }
    paths
}

/// Each letter and digit of the rules' own paths in the other case and percent-encoded (both hex
/// cases): where a server comparing case, or one routing on the raw path, picks another rule.
fn literal_variant_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for base in [
        "/admin/health",
        "/admin/x",
        "/orders/1",
        "/orders/1/items",
        "/reports/daily/x",
        "/public/x",
    ] {
        for (at, c) in base
            .char_indices()
            .filter(|(_, c)| c.is_ascii_alphanumeric())
        {
            let (head, tail) = (&base[..at], &base[at + 1..]);
            let flipped = if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            paths.push(format!("{head}{flipped}{tail}"));
            for upper in [false, true] {
                paths.push(format!("{head}{}{tail}", escape(c as u8, upper)));
                paths.push(format!("{head}{}{tail}", escape(flipped as u8, upper)));
            }
        }
    }
    paths
}

fn all_paths() -> Vec<String> {
    let mut rng = Rng(SEED);
    let mut paths = every_byte_paths();
    paths.extend(literal_variant_paths());
    paths.extend((0..GENERATED).map(|_| generated_path(&mut rng)));
    paths
}

/// What the filter and Envoy did with a path sent with the all-permissions key.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tried: usize,
    /// 400 (filter or Envoy) or Envoy's 404.
    refused: usize,
    /// 403 with every permission: no rule matched.
    unmatched: usize,
    forwarded: usize,
    /// Forwarded paths that servers of different kinds (comparing case or not, decoding or not)
    /// route to different rules: the filter must demand the permissions of all of them.
    joined: usize,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.tried += other.tried;
        self.refused += other.refused;
        self.unmatched += other.unmatched;
        self.forwarded += other.forwarded;
        self.joined += other.joined;
    }
}

/// Whatever the upstream saw, if the request reached it. Envoy sets
/// `x-envoy-upstream-service-time` only on answers from the upstream, so a path the echo server's
/// own HTTP parser refused still counts as reached.
fn reached(reply: &Reply) -> Option<Option<String>> {
    if let Some(echoed) = reply.upstream() {
        return Some(Some(echoed.path));
    }
    reply.header("x-envoy-upstream-service-time").map(|_| None)
}

fn is_refusal(reply: &Reply) -> bool {
    matches!(reply.status, 400 | 404) && reached(reply).is_none()
}

struct Probe<'a> {
    conn: KeepAlive,
    keys: &'a Keys,
    rules: &'a RuleSet,
    listener: Listener,
}

impl Probe<'_> {
    async fn send(&mut self, path: &str, key: Option<&str>) -> anyhow::Result<Reply> {
        match key {
            Some(key) => self.conn.send("GET", path, &[("x-api-key", key)]).await,
            None => self.conn.send("GET", path, &[]).await,
        }
    }

    /// Sends `path` as described in the module docs; pushes a line per disagreement.
    async fn check(
        &mut self,
        path: &str,
        counts: &mut Counts,
        mismatches: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        counts.tried += 1;
        let all = self.send(path, Some(&self.keys.all.clone())).await?;
        let mut problem = |what: String| mismatches.push(format!("{path:?}: {what}"));
        if is_refusal(&all) {
            counts.refused += 1;
            return Ok(());
        }
        let Some(received) = reached(&all) else {
            if all.status == 403 && all.json()["reason"] == "no_route_rule" {
                counts.unmatched += 1;
                // Without Envoy's normalization the filter saw the path as sent, so the servers'
                // readings of it must find no rule either.
                if self.listener == Listener::Raw {
                    if let Some(what) = self.unmatched_disagreement(path) {
                        problem(what);
                    }
                }
            } else {
                problem(format!("all-permissions key got {}", all.summary()));
            }
            return Ok(());
        };
        counts.forwarded += 1;
        let received = match (received, self.listener) {
            (Some(received), _) => received,
            // The upstream's parser refused it; on `raw` it received the path as sent.
            (None, Listener::Raw) => path.to_owned(),
            (None, Listener::Main) => {
                problem(format!(
                    "forwarded, but the upstream could not parse it: {}",
                    all.summary()
                ));
                return Ok(());
            }
        };
        if self.listener == Listener::Raw && received != path {
            problem(format!("forwarded as {received:?}, not as sent"));
        }
        let reached_rules = match self.rules.consensus(&received) {
            Consensus::Rules(rules) => rules,
            Consensus::Unmatched => {
                problem(format!(
                    "forwarded as {received:?}, which no server routes to any rule"
                ));
                return Ok(());
            }
            Consensus::Ambiguous(readings) => {
                let readings: Vec<String> = readings
                    .iter()
                    .map(|(reading, case, rule)| {
                        let name = rule.map_or("none", |i| self.rules.rules[i].name);
                        format!("{reading:?}/{case:?}->{name}")
                    })
                    .collect();
                problem(format!(
                    "forwarded as {received:?}, which servers route differently: {}",
                    readings.join(", ")
                ));
                return Ok(());
            }
        };
        if reached_rules.len() > 1 {
            counts.joined += 1;
        }
        // What the filter must demand: every permission of every rule an upstream may serve.
        let names: Vec<&str> = reached_rules
            .iter()
            .map(|&i| self.rules.rules[i].name)
            .collect();
        let names = names.join("+");
        let demanded: Vec<&'static str> = reached_rules
            .iter()
            .filter_map(|&i| self.rules.rules[i].permission)
            .collect();
        let anonymous = self.send(path, None).await?;
        if demanded.is_empty() {
            if reached(&anonymous).is_none() {
                problem(format!(
                    "upstream rule {names} (as {received:?}) is public, but no key got {}",
                    anonymous.summary()
                ));
            }
            return Ok(());
        }
        if reached(&anonymous).is_some() {
            problem(format!(
                "upstream rule {names} (as {received:?}) needs {demanded:?}, but no key reached it"
            ));
        }
        if let [permission] = demanded.as_slice() {
            let only = self.keys.only[permission].clone();
            let reply = self.send(path, Some(&only)).await?;
            if reached(&reply).is_none() || reply.status != 200 {
                problem(format!(
                    "upstream rule {names} (as {received:?}): a key with only {permission} got {}",
                    reply.summary()
                ));
            }
        }
        for permission in demanded {
            let all_but = self.keys.all_but[permission].clone();
            let reply = self.send(path, Some(&all_but)).await?;
            if reached(&reply).is_some() || reply.status != 403 {
                problem(format!(
                    "upstream rule {names} (as {received:?}): a key with all but {permission} got {}",
                    reply.summary()
                ));
            }
        }
        Ok(())
    }

    /// Why a path the filter matched to no rule is still routed somewhere by some server.
    fn unmatched_disagreement(&self, path: &str) -> Option<String> {
        match self.rules.consensus(path) {
            Consensus::Unmatched => None,
            Consensus::Rules(rules) => Some(format!(
                "filter found no rule, servers route it to {:?}",
                rules
                    .iter()
                    .map(|&i| self.rules.rules[i].name)
                    .collect::<Vec<_>>()
            )),
            // Ambiguous paths should be refused (400), not answered as unmatched; but a 403 for
            // every key is still safe, so it is reported only if some server reads it as public.
            Consensus::Ambiguous(readings) => readings
                .iter()
                .filter_map(|(_, _, rule)| *rule)
                .any(|index| self.rules.rules[index].permission.is_none())
                .then(|| "filter found no rule, some server reads it as public".to_owned()),
        }
    }
}

/// Runs every path through `listener` on [`CONNECTIONS`] connections at once.
async fn run(
    addr: SocketAddr,
    listener: Listener,
    keys: Arc<Keys>,
    rules: Arc<RuleSet>,
    paths: &[String],
) -> anyhow::Result<(Counts, Vec<String>)> {
    let mut tasks = JoinSet::new();
    for part in paths.chunks(paths.len().div_ceil(CONNECTIONS)) {
        let part = part.to_vec();
        let (keys, rules) = (Arc::clone(&keys), Arc::clone(&rules));
        tasks.spawn(async move {
            let mut probe = Probe {
                conn: KeepAlive::new(addr),
                keys: &keys,
                rules: &rules,
                listener,
            };
            let mut counts = Counts::default();
            let mut mismatches = Vec::new();
            for path in &part {
                probe.check(path, &mut counts, &mut mismatches).await?;
            }
            anyhow::Ok((counts, mismatches))
        });
    }
    let mut counts = Counts::default();
    let mut mismatches = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (part_counts, part_mismatches) = done??;
        counts.add(part_counts);
        mismatches.extend(part_mismatches);
    }
    Ok((counts, mismatches))
}

/// One stack with the rules in one case mode; both listeners. Returns the report lines and the
/// mismatches.
async fn run_stack(
    case_sensitive: bool,
    paths: &[String],
) -> anyhow::Result<(String, Vec<String>)> {
    let rules = rules(case_sensitive);
    let stack = Stack::start(filter_config(&rules)).await?;
    let keys = Arc::new(Keys::create(&stack, &rules).await?);
    let rules = Arc::new(rules);
    let mode = if case_sensitive {
        "case_sensitive_paths: true"
    } else {
        "case_sensitive_paths: false"
    };
    let mut report = String::new();
    let mut mismatches = Vec::new();
    for listener in [Listener::Main, Listener::Raw] {
        let started = Instant::now();
        let (counts, found) = run(
            stack.addr(listener)?,
            listener,
            Arc::clone(&keys),
            Arc::clone(&rules),
            paths,
        )
        .await?;
        writeln!(
            report,
            "{mode}, listener {}: {} paths tried, {} refused (400/404), {} unmatched (403), {} forwarded ({} needing several rules' permissions), {} mismatches, {:.1?}",
            listener.name(),
            counts.tried,
            counts.refused,
            counts.unmatched,
            counts.forwarded,
            counts.joined,
            found.len(),
            started.elapsed()
        )?;
        assert_eq!(counts.tried, paths.len());
        mismatches.extend(
            found
                .into_iter()
                .map(|m| format!("[{mode}, {}] {m}", listener.name())),
        );
    }
    Ok((report, mismatches))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_the_filter_applies_is_the_rule_every_upstream_reading_routes_to(
) -> anyhow::Result<()> {
    let paths = all_paths();
    let mut report = String::new();
    let mut mismatches = Vec::new();
    for case_sensitive in [false, true] {
        let (lines, found) = run_stack(case_sensitive, &paths).await?;
        report.push_str(&lines);
        mismatches.extend(found);
    }
    println!("{report}");
    assert!(
        mismatches.is_empty(),
        "{} mismatches between the filter's rule and the upstream's; the first {SHOWN}:\n{}\n{report}",
        mismatches.len(),
        mismatches
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

#[test]
fn the_generator_is_deterministic_and_covers_the_tricks() {
    let (a, b) = (all_paths(), all_paths());
    assert_eq!(a, b);
    let has = |needle: &str| a.iter().any(|p| p.contains(needle));
    for needle in [
        "/../", "%2e%2e", "%2E", "..;", "//", "%00", "%ff", "%FF", "%2f", "ADMIN", "?x=",
    ] {
        assert!(has(needle), "no generated path contains {needle:?}");
    }
}
