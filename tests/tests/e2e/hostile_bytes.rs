//! Hostile bytes cannot stop the filter. Header values, header names, paths and queries carrying
//! bytes 0x80-0xFF (obs-text, which Envoy passes on HTTP/1.1 and HTTP/2) or control characters go
//! through a real Envoy, over HTTP/1.1 and over HTTP/2 cleartext, to public and protected routes,
//! each request several times per worker on fresh connections. Envoy's codec may refuse a request
//! itself; whatever reaches the filter must get a 400 or 401 with a small JSON body, or pass a
//! public route. Never a 5xx, never a dead VM: afterwards every worker still answers a valid key.
//!
//! Each case's outcome on both protocols is printed (`--nocapture`), which records what Envoy
//! refuses before the filter runs.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keygate_e2e::idp::IDP_ISSUER;
use keygate_e2e::raw_h2::{self, H2Outcome};
use keygate_e2e::{jwt_filter_config, raw_http, Listener, Reply, Stack};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// `--concurrency` of the test Envoy (tests/src/envoy.rs).
const WORKERS: usize = 2;
/// Each hostile request goes this many times, each on a fresh connection: the kernel spreads new
/// connections over the workers, so every worker's VM sees each case.
const REPEATS: usize = 4 * WORKERS;
/// Requests in flight at once.
const IN_FLIGHT: usize = 16;

/// Lines Envoy writes when a Wasm VM fails: the filter's panic hook, a trap, a failed callback.
const VM_FAILURE_MARKS: &[&str] = &[
    "panic",
    "VM is now unusable",
    "Uncaught",
    "wasm vm failed",
    "Plugin configured to fail",
];

/// One hostile request, before it is written for a protocol.
#[derive(Debug, Clone)]
struct Case {
    what: String,
    listener: Listener,
    path: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The route is protected: nothing in these requests is a valid credential, so reaching the
    /// upstream is a breach.
    protected: bool,
}

/// What happened to one request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    /// Envoy's codec or connection manager refused it: a non-JSON 4xx, a reset, a GOAWAY, a close.
    Envoy(String),
    /// The filter answered `status` with `{"error": error, ...}`.
    Filter(u16, String),
    /// The upstream answered.
    Upstream(u16),
    /// Anything else: always a failure.
    Other(String),
}

impl Seen {
    fn of_reply(reply: &Reply) -> Self {
        if reply.upstream().is_some() {
            return Self::Upstream(reply.status);
        }
        let json = reply.json();
        if let Some(error) = json["error"].as_str() {
            return Self::Filter(reply.status, error.to_owned());
        }
        if (400..500).contains(&reply.status) {
            return Self::Envoy(format!("{} {}", reply.status, reply.body.trim()));
        }
        Self::Other(reply.summary())
    }

    fn of_h2(outcome: &H2Outcome) -> Self {
        match outcome {
            H2Outcome::Response(reply) => Self::of_reply(reply),
            other => Self::Envoy(other.summary()),
        }
    }

    /// Why this outcome breaks the promise, if it does.
    fn problem(&self, protected: bool) -> Option<String> {
        match self {
            Self::Envoy(_) => None,
            Self::Filter(400, error) if error == "bad_request" => None,
            Self::Filter(401, error) if error == "unauthorized" => None,
            // A path such as `/healthz\xc3\xa9` is valid UTF-8 (`/healthzé`) that no rule
            // matches: `unmatched: deny` turns it away, which is a refusal like any other.
            Self::Filter(403, error) if error == "forbidden" => None,
            Self::Filter(status, error) => Some(format!("the filter answered {status} {error}")),
            Self::Upstream(status) if protected => Some(format!(
                "a protected route reached the upstream ({status}) without a credential"
            )),
            Self::Upstream(status) if *status >= 500 => Some(format!("upstream {status}")),
            Self::Upstream(_) => None,
            Self::Other(summary) => Some(format!("unexpected answer {summary}")),
        }
    }
}

/// Bytes shown readably: printable ASCII as is, the rest as `\xNN`.
fn shown(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            0x21..=0x7e => char::from(*b).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

fn high_bytes() -> Vec<u8> {
    (0x80..=0xff).collect()
}

/// Control characters that can sit inside a header line: CR and LF end it instead.
fn control_bytes() -> Vec<u8> {
    (0x00..0x20)
        .chain([0x7f])
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect()
}

/// The routes of `base_filter_config()`: two public, two protected.
const ROUTES: &[(&str, bool)] = &[
    ("/healthz", false),
    ("/public/x", false),
    ("/orders/1", true),
    ("/admin/x", true),
];

/// A JWT-shaped token with `inject` inside segment `segment` (0 header, 1 payload, 2 signature).
fn jwt_with(segment: usize, inject: &[u8]) -> Vec<u8> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"idp-key-1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"x","sub":"y","exp":4102444800}"#);
    let mut parts = [header.into_bytes(), payload.into_bytes(), b"c2ln".to_vec()];
    parts[segment].extend_from_slice(inject);
    parts.join(&b"."[..])
}

/// A well-formed JWT whose header or payload JSON decodes to `inject` inside a string: the bytes
/// arrive only after base64url decoding.
fn jwt_decoding_to(segment: usize, inject: &[u8]) -> Vec<u8> {
    let mut header = br#"{"alg":"RS256","kid":""#.to_vec();
    let mut payload = br#"{"iss":"x","sub":""#.to_vec();
    let target = if segment == 0 {
        &mut header
    } else {
        &mut payload
    };
    target.extend_from_slice(inject);
    header.extend_from_slice(br#""}"#);
    payload.extend_from_slice(br#"","exp":4102444800}"#);
    [
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload),
        "c2ln".to_owned(),
    ]
    .join(".")
    .into_bytes()
}

/// A JWT of the IdP's issuer whose header (`segment` 0) or payload (1) holds a JSON array nested
/// `depth` levels deep. serde_json refuses JSON nested more than 128 levels; a parser without
/// such a bound would recurse until the Wasm stack ran out, a trap as fatal to the VM as a panic.
fn jwt_nested(segment: usize, depth: usize) -> Vec<u8> {
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let mut header = r#"{"alg":"RS256","kid":"idp-key-1"}"#.to_owned();
    let mut payload = format!(r#"{{"iss":"{IDP_ISSUER}","sub":"y","exp":4102444800}}"#);
    let target = if segment == 0 {
        &mut header
    } else {
        &mut payload
    };
    target.pop();
    target.push_str(&format!(r#","n":{nested}}}"#));
    [
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload),
        "c2ln".to_owned(),
    ]
    .join(".")
    .into_bytes()
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let header_case = |what: String, path: &str, protected, name: &[u8], value: Vec<u8>| Case {
        what,
        listener: Listener::Main,
        path: path.as_bytes().to_vec(),
        headers: vec![(name.to_vec(), value)],
        protected,
    };

    // Every single byte 0x80-0xFF and every control character, alone in a header value, on the
    // public route the issue's probe used.
    for byte in high_bytes().into_iter().chain(control_bytes()) {
        let value = vec![b'a', byte, b'z'];
        cases.push(header_case(
            format!("user-agent: {} on /healthz", shown(&value)),
            "/healthz",
            false,
            b"user-agent",
            value,
        ));
    }

    // Short hostile strings in the headers the filter reads, and in one it does not.
    let samples: Vec<Vec<u8>> = vec![
        b"\xa1\xb1".to_vec(),
        high_bytes(),
        b"kg_\xc3\x28\xff".to_vec(),
        b"a\x01b".to_vec(),
        b"a\x7fb".to_vec(),
        b"a\x00b".to_vec(),
        control_bytes(),
    ];
    for sample in &samples {
        for (path, protected) in ROUTES {
            let mut bearer = b"Bearer ".to_vec();
            bearer.extend_from_slice(sample);
            for (name, value) in [
                (&b"user-agent"[..], sample.clone()),
                (b"x-custom", sample.clone()),
                (b"x-api-key", sample.clone()),
                (b"authorization", sample.clone()),
                (b"authorization", bearer.clone()),
                (b"x-keygate-tenant", sample.clone()),
            ] {
                cases.push(header_case(
                    format!("{}: {} on {path}", shown(name), shown(&value)),
                    path,
                    *protected,
                    name,
                    value,
                ));
            }
            for segment in 0..3 {
                let mut raw = b"Bearer ".to_vec();
                raw.extend_from_slice(&jwt_with(segment, sample));
                cases.push(header_case(
                    format!(
                        "Bearer JWT, segment {segment} += {} on {path}",
                        shown(sample)
                    ),
                    path,
                    *protected,
                    b"authorization",
                    raw,
                ));
            }
            for segment in 0..2 {
                let mut encoded = b"Bearer ".to_vec();
                encoded.extend_from_slice(&jwt_decoding_to(segment, sample));
                cases.push(header_case(
                    format!(
                        "Bearer JWT, segment {segment} decodes to {} on {path}",
                        shown(sample)
                    ),
                    path,
                    *protected,
                    b"authorization",
                    encoded,
                ));
            }
        }
    }

    // JSON nested around serde_json's depth bound (128) and far past it (the deepest that fits
    // under the providers' 8 KiB token limit), in the header and the payload.
    for depth in [127, 128, 129, 2_500] {
        for segment in 0..2 {
            let mut bearer = b"Bearer ".to_vec();
            bearer.extend_from_slice(&jwt_nested(segment, depth));
            cases.push(header_case(
                format!("Bearer JWT, segment {segment} nests JSON {depth} deep on /orders/1"),
                "/orders/1",
                true,
                b"authorization",
                bearer,
            ));
        }
    }

    // Header names: obs-text and control characters in the name itself.
    for name in [
        &b"x-\xa1\xb1"[..],
        b"x-api-key\xff",
        b"\xc3\xa9",
        b"x-\x01",
        b"x-\x7f",
    ] {
        for (path, protected) in ROUTES {
            cases.push(header_case(
                format!("header name {} on {path}", shown(name)),
                path,
                *protected,
                name,
                b"1".to_vec(),
            ));
        }
    }

    // Paths and queries, through both listeners: the raw one does no normalisation.
    for sample in [
        &b"\xa1\xb1"[..],
        b"\xff",
        b"\xc3\xa9",
        b"\x01",
        b"\x7f",
        b"\x00",
        b"\x1b",
    ] {
        for (path, protected) in ROUTES {
            for listener in [Listener::Main, Listener::Raw] {
                let mut in_path = path.as_bytes().to_vec();
                in_path.extend_from_slice(sample);
                let mut in_segment = path.as_bytes().to_vec();
                in_segment.extend_from_slice(b"/");
                in_segment.extend_from_slice(sample);
                let mut in_query = path.as_bytes().to_vec();
                in_query.extend_from_slice(b"?q=");
                in_query.extend_from_slice(sample);
                let mut in_key = path.as_bytes().to_vec();
                in_key.extend_from_slice(b"?api_key=");
                in_key.extend_from_slice(sample);
                for full in [in_path, in_segment, in_query, in_key] {
                    cases.push(Case {
                        what: format!("path {} on {}", shown(&full), listener.name()),
                        listener,
                        path: full,
                        headers: Vec::new(),
                        protected: *protected,
                    });
                }
            }
        }
    }
    cases
}

fn h1_request(case: &Case) -> Vec<u8> {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(&case.path);
    request.extend_from_slice(b" HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (name, value) in &case.headers {
        request.extend_from_slice(name);
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    H1,
    H2,
}

async fn send_once(addr: SocketAddr, case: &Case, protocol: Protocol) -> Seen {
    match protocol {
        Protocol::H1 => match raw_http::send_bytes(addr, &h1_request(case)).await {
            Ok(reply) => Seen::of_reply(&reply),
            Err(error) => Seen::Envoy(format!("no HTTP/1.1 response: {error:#}")),
        },
        Protocol::H2 => {
            let extra: Vec<(&[u8], &[u8])> = case
                .headers
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .collect();
            match raw_h2::get(addr, &case.path, &extra).await {
                Ok(outcome) => Seen::of_h2(&outcome),
                Err(error) => Seen::Other(format!("h2 client error: {error:#}")),
            }
        }
    }
}

/// Sends every case [`REPEATS`] times over `protocol`; returns, per case, the distinct outcomes.
async fn run_all(
    stack: &Stack,
    cases: &[Case],
    protocol: Protocol,
) -> anyhow::Result<Vec<BTreeSet<Seen>>> {
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for (index, case) in cases.iter().enumerate() {
        let addr = stack.addr(case.listener)?;
        for _ in 0..REPEATS {
            let (case, limit) = (case.clone(), Arc::clone(&limit));
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (index, send_once(addr, &case, protocol).await)
            });
        }
    }
    let mut seen = vec![BTreeSet::new(); cases.len()];
    while let Some(done) = tasks.join_next().await {
        let (index, outcome) = done?;
        seen[index].insert(outcome);
    }
    Ok(seen)
}

fn describe(outcomes: &BTreeSet<Seen>) -> String {
    outcomes
        .iter()
        .map(|seen| match seen {
            Seen::Envoy(what) => format!("Envoy refused: {}", first_line(what)),
            Seen::Filter(status, error) => format!("filter {status} {error}"),
            Seen::Upstream(status) => format!("upstream {status}"),
            Seen::Other(what) => format!("OTHER {}", first_line(what)),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or_default();
    &line[..line.len().min(120)]
}

/// Lines of Envoy's log that say a Wasm VM failed.
fn vm_failures(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| VM_FAILURE_MARKS.iter().any(|mark| line.contains(mark)))
        .map(|line| line.chars().take(300).collect())
        .collect()
}

/// Every worker still answers a valid key: many fresh connections at once, on both protocols.
async fn assert_every_worker_answers_a_valid_key(stack: &Stack, secret: &str) {
    let replies = stack
        .get_many("/orders/1", &[("x-api-key", secret)], 16 * WORKERS)
        .await
        .expect("valid requests over HTTP/1.1");
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "valid key over HTTP/1.1 after the hostile requests: {statuses:?}"
    );
    let addr = stack.addr(Listener::Main).expect("main listener");
    let mut tasks = JoinSet::new();
    for _ in 0..16 * WORKERS {
        let secret = secret.to_owned();
        tasks.spawn(async move {
            raw_h2::get(addr, b"/orders/1", &[(b"x-api-key", secret.as_bytes())]).await
        });
    }
    let mut h2 = Vec::new();
    while let Some(done) = tasks.join_next().await {
        h2.push(done.expect("task").expect("h2 request").summary());
    }
    assert!(
        h2.iter().all(|s| s.starts_with("200 ")),
        "valid key over HTTP/2 after the hostile requests: {h2:?}"
    );
}

/// Runs every case over `protocol`, prints what happened, and asserts the promise.
async fn assert_hostile_bytes_never_stop_the_filter(protocol: Protocol) -> anyhow::Result<()> {
    let stack = Stack::start(jwt_filter_config()).await?;
    let (_, secret) = stack.create_key("acme", &["orders:read"]).await?;
    // Warm: the key works on every worker before anything hostile arrives.
    assert_every_worker_answers_a_valid_key(&stack, &secret).await;

    let cases = cases();
    let seen = run_all(&stack, &cases, protocol).await?;

    let mut problems = Vec::new();
    println!(
        "{protocol:?}: {} cases, each sent {REPEATS} times",
        cases.len()
    );
    for (case, outcomes) in cases.iter().zip(&seen) {
        println!("{protocol:?} {:<70} -> {}", case.what, describe(outcomes));
        for outcome in outcomes {
            if let Some(problem) = outcome.problem(case.protected) {
                problems.push(format!("{}: {problem}", case.what));
            }
        }
    }
    let failures = vm_failures(&stack.envoy_log());
    assert!(
        failures.is_empty(),
        "Envoy logged Wasm VM failures over {protocol:?} ({} lines), first:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        problems.is_empty(),
        "{} hostile requests over {protocol:?} were mishandled, first:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_every_worker_answers_a_valid_key(&stack, &secret).await;
    let failures = vm_failures(&stack.envoy_log());
    assert!(failures.is_empty(), "VM failures: {failures:?}");
    Ok(())
}

#[tokio::test]
async fn hostile_header_path_and_query_bytes_over_http1_never_stop_the_filter() -> anyhow::Result<()>
{
    assert_hostile_bytes_never_stop_the_filter(Protocol::H1).await
}

#[tokio::test]
async fn hostile_header_path_and_query_bytes_over_http2_never_stop_the_filter() -> anyhow::Result<()>
{
    assert_hostile_bytes_never_stop_the_filter(Protocol::H2).await
}

/// The issue's probe on its own, so a regression names itself: `User-Agent: \xa1\xb1` on the
/// public `/healthz`, once per worker and more, then a valid key on every worker.
#[tokio::test]
async fn a_header_byte_above_0x7f_never_stops_the_filter() -> anyhow::Result<()> {
    let stack = Stack::start(jwt_filter_config()).await?;
    let (_, secret) = stack.create_key("acme", &["orders:read"]).await?;
    let addr = stack.addr(Listener::Main)?;
    let request = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nuser-agent: \xa1\xb1\r\n\r\n";
    for _ in 0..REPEATS {
        let reply = raw_http::send_bytes(addr, request).await?;
        assert_eq!(
            reply.status,
            200,
            "User-Agent: \\xa1\\xb1 on /healthz: {}",
            reply.summary()
        );
        assert!(reply.upstream().is_some(), "{}", reply.summary());
    }
    assert_every_worker_answers_a_valid_key(&stack, &secret).await;
    let failures = vm_failures(&stack.envoy_log());
    assert!(failures.is_empty(), "VM failures: {failures:?}");
    Ok(())
}
