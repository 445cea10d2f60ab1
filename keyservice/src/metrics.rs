//! [`Metrics`]: the series `GET /metrics` exposes, in the OpenMetrics text format Prometheus
//! scrapes (see the README for the list). Each series has one place that records it:
//! - requests and their latency: the request middleware in [`crate::http`];
//! - lookups by outcome: the lookup handler ([`crate::http::filter`]);
//! - token requests by outcome: the token endpoint ([`crate::http::oauth`]);
//! - database errors by kind: the store, as its backends answer ([`crate::store::ErrorCounts`]);
//! - keys by status: counted by the database at scrape time ([`Metrics::encode`]);
//! - failed authentications past the audit log's cap: [`crate::http::auth`].
//!
//! Labels are bounded: the route is the matched route template (`/v1/keys/{id}`), never the raw
//! path; statuses, outcomes and kinds are fixed words or numbers. No label carries a key, a
//! client id or a tenant.

use std::sync::Arc;
use std::time::Duration;

use keygate_core::wire::LookupResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::keys::KeyStatus;
use crate::store::{ErrorCounts, KeyCounts};

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency histogram's buckets, in seconds: lookups take well under a
/// millisecond to a few; token grants with RSA keys tens; `/v1/changes` long-polls up to their
/// wait.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// What `/v1/lookup` answers: `valid`, or the reason it is not.
const LOOKUP_OUTCOMES: [&str; 4] = ["valid", "unknown", "revoked", "expired"];

/// The token endpoint's outcomes that need no bug or outage to happen; `/metrics` shows them
/// from 0 on. Others (`payload_too_large`, `unavailable`, `internal`) appear when they occur.
const TOKEN_OUTCOMES: [&str; 6] = [
    "issued",
    "invalid_request",
    "invalid_client",
    "unsupported_grant_type",
    "invalid_scope",
    "slow_down",
];

const KEY_STATUSES: [KeyStatus; 3] = [KeyStatus::Active, KeyStatus::Revoked, KeyStatus::Expired];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The service's metrics. Cheap to clone: clones record into the same series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    lookups: Family<OutcomeLabels, Counter>,
    token_requests: Family<OutcomeLabels, Counter>,
    keys: Family<StatusLabels, Gauge>,
    audit_dropped: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    /// The service's series, with the store's error counts among them.
    pub fn new(database_errors: &ErrorCounts) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let lookups = Family::<OutcomeLabels, Counter>::default();
        let token_requests = Family::<OutcomeLabels, Counter>::default();
        let keys = Family::<StatusLabels, Gauge>::default();
        let audit_dropped = Counter::default();
        for outcome in LOOKUP_OUTCOMES {
            let _ = lookups.get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in TOKEN_OUTCOMES {
            let _ = token_requests.get_or_create(&OutcomeLabels { outcome });
        }

        let mut registry = Registry::with_prefix("keygate");
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status",
            requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from the request head to the response head, by route template",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "lookups",
            "Answers of /v1/lookup, by outcome (valid, unknown, revoked, expired)",
            lookups.clone(),
        );
        registry.register(
            "token_requests",
            "Client credentials requests to /oauth/token, by outcome (issued, or the error code)",
            token_requests.clone(),
        );
        registry.register(
            "database_errors",
            "Failed database calls, by kind (unavailable, query, corrupt)",
            database_errors.clone(),
        );
        registry.register(
            "keys",
            "API keys by status (active, revoked, expired), counted at scrape time",
            keys.clone(),
        );
        registry.register(
            "audit_dropped",
            "Failed authentications not written to the audit log: past the per-minute cap",
            audit_dropped.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            lookups,
            token_requests,
            keys,
            audit_dropped,
        }
    }

    /// One failed authentication the audit log had no room for this minute.
    pub fn audit_dropped(&self) {
        self.audit_dropped.inc();
    }

    /// One answered request. `route` is the matched route template.
    pub fn record_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One `/v1/lookup` answer.
    pub fn record_lookup(&self, answer: &LookupResponse) {
        let outcome = match answer {
            LookupResponse::Valid { .. } => "valid",
            LookupResponse::Invalid { reason, .. } => reason.as_str(),
        };
        self.lookups.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// One token request: `issued`, or the error code it was answered with.
    pub fn record_token_request(&self, outcome: &'static str) {
        self.token_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The exposition text, with `keygate_keys` set from `keys` (counted just before). `None`
    /// (the count failed) leaves `keygate_keys` out rather than show stale numbers; the failure
    /// shows in `keygate_database_errors_total`.
    pub fn encode(&self, keys: Option<KeyCounts>) -> String {
        match keys {
            Some(counts) => {
                for status in KEY_STATUSES {
                    let count = i64::try_from(counts.get(status)).unwrap_or(i64::MAX);
                    self.keys
                        .get_or_create(&StatusLabels {
                            status: status.as_str(),
                        })
                        .set(count);
                }
            }
            None => self.keys.clear(),
        }
        let mut text = String::new();
        // Writing to a String cannot fail, and every label value here encodes.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use keygate_core::wire::InvalidReason;

    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .map(|l| &l[series.len() + 1..])
    }

    #[test]
    fn requests_are_counted_by_route_and_status_with_latency_in_buckets() {
        let metrics = Metrics::new(&ErrorCounts::default());
        metrics.record_request("/v1/keys/{id}", 200, Duration::from_micros(700));
        metrics.record_request("/v1/keys/{id}", 404, Duration::from_millis(3));
        let text = metrics.encode(None);
        assert_eq!(
            line(
                &text,
                r#"keygate_http_requests_total{route="/v1/keys/{id}",status="200"}"#
            ),
            Some("1")
        );
        let bucket = |le: &str| {
            line(
                &text,
                &format!(
                    r#"keygate_http_request_duration_seconds_bucket{{le="{le}",route="/v1/keys/{{id}}"}}"#
                ),
            )
        };
        assert_eq!(bucket("0.0005"), Some("0"));
        assert_eq!(bucket("0.001"), Some("1"));
        assert_eq!(bucket("0.005"), Some("2"));
        assert_eq!(bucket("+Inf"), Some("2"));
        assert_eq!(
            line(
                &text,
                r#"keygate_http_request_duration_seconds_count{route="/v1/keys/{id}"}"#
            ),
            Some("2")
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn lookups_are_counted_by_outcome_from_zero() {
        let metrics = Metrics::new(&ErrorCounts::default());
        metrics.record_lookup(&LookupResponse::Invalid {
            reason: InvalidReason::Revoked,
            cache_ttl_secs: 10,
        });
        let text = metrics.encode(None);
        assert_eq!(
            line(&text, r#"keygate_lookups_total{outcome="revoked"}"#),
            Some("1")
        );
        assert_eq!(
            line(&text, r#"keygate_lookups_total{outcome="valid"}"#),
            Some("0")
        );
    }

    #[test]
    fn key_gauges_follow_the_latest_count_and_vanish_when_it_fails() {
        let metrics = Metrics::new(&ErrorCounts::default());
        let text = metrics.encode(Some(KeyCounts {
            active: 3,
            revoked: 1,
            expired: 0,
        }));
        assert_eq!(line(&text, r#"keygate_keys{status="active"}"#), Some("3"));
        assert_eq!(line(&text, r#"keygate_keys{status="revoked"}"#), Some("1"));
        assert_eq!(line(&text, r#"keygate_keys{status="expired"}"#), Some("0"));
        let text = metrics.encode(None);
        assert_eq!(line(&text, r#"keygate_keys{status="active"}"#), None);
    }
}
