//! `GET /metrics`: the metrics token, and what a scrape shows after known traffic.

use std::collections::{BTreeMap, HashMap};

use reqwest::{Response, StatusCode};
use serde_json::json;

use std::sync::Arc;

use keygate_keyservice::clock::ManualClock;
use keygate_keyservice::startup::StartupError;

use crate::helpers::{
    backend_tests, error_code, prepare_with, spawn_app, spawn_app_with, start_time, Backend,
    Options, TestApp, TestDb, FILTER_TOKEN, METRICS_TOKEN,
};

/// One sample of the exposition: metric name and labels.
type Series = (String, BTreeMap<String, String>);

/// Parses OpenMetrics text into samples, checking each family's `# TYPE` line comes first and
/// the text ends with `# EOF`.
fn parse(text: &str) -> (HashMap<Series, f64>, HashMap<String, String>) {
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end");
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        let mut parsed = BTreeMap::new();
        // No label value here holds `",`: routes, numbers and fixed words.
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once("=\"").unwrap();
            parsed.insert(key.to_owned(), value.trim_end_matches('"').to_owned());
        }
        assert!(
            types.keys().any(|family| name.starts_with(family.as_str())),
            "{name} comes before its # TYPE"
        );
        let value: f64 = value.parse().unwrap();
        assert!(
            samples.insert((name.to_owned(), parsed), value).is_none(),
            "{line} twice"
        );
    }
    (samples, types)
}

struct Scrape {
    samples: HashMap<Series, f64>,
    types: HashMap<String, String>,
}

impl Scrape {
    /// The value of `name{labels}`, panicking when the series is missing.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?}"))
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// The `(le, cumulative count)` buckets of one histogram series, in `le` order.
    fn buckets(&self, name: &str, route: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|((n, labels), _)| *n == bucket && labels["route"] == route)
            .map(|((_, labels), count)| {
                let le = match labels["le"].as_str() {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().unwrap(),
                };
                (le, *count)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

async fn scrape_raw(app: &TestApp, token: Option<&str>) -> Response {
    let mut request = app.client.get(app.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn scrape(app: &TestApp) -> (Scrape, String) {
    let response = scrape_raw(app, Some(METRICS_TOKEN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let (samples, types) = parse(&text);
    (Scrape { samples, types }, text)
}

async fn spawn_with_metrics(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        Options {
            metrics_token: Some(METRICS_TOKEN.to_owned()),
            ..Options::default()
        },
    )
    .await
}

async fn metrics_need_their_own_token(backend: Backend) {
    let app = spawn_with_metrics(backend).await;
    let admin = app.admin_secret.clone();
    for token in [None, Some("wrong-token"), Some(&*admin), Some(FILTER_TOKEN)] {
        let response = scrape_raw(&app, token).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"keygate-keyservice\""
        );
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized",
            "{token:?}"
        );
    }
    // The metrics token opens nothing else.
    let response = app
        .client
        .get(app.url("/v1/keys"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape_raw(&app, Some(METRICS_TOKEN)).await.status(),
        StatusCode::OK
    );
}

async fn metrics_token_equal_to_another_secret_is_refused_at_start(backend: Backend) {
    let db = TestDb::new(backend);
    for metrics_token in ["admin-secret", FILTER_TOKEN] {
        let options = Options {
            admin_secret: Some("admin-secret".to_owned()),
            metrics_token: Some(metrics_token.to_owned()),
            ..Options::default()
        };
        let refused = prepare_with(
            &db.database(),
            &options,
            Arc::new(ManualClock::new(start_time())),
        )
        .await;
        assert!(
            matches!(refused, Err(StartupError::MetricsTokenReused)),
            "{metrics_token}"
        );
    }
}

async fn metrics_are_off_without_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    for token in [None, Some(FILTER_TOKEN), Some(&*app.admin_secret)] {
        let response = scrape_raw(&app, token).await;
        assert_eq!(
            error_code(response, StatusCode::NOT_FOUND).await,
            "not_found"
        );
    }
}

async fn a_scrape_counts_requests_lookups_grants_keys_and_database_errors(backend: Backend) {
    let app = spawn_with_metrics(backend).await;
    let active = app.create_default_key().await;
    // Revoked, then past its expiry too: it counts as revoked, as its status says.
    let revoked = app
        .create_key(&json!({
            "name": "gone", "tenant": "acme", "permissions": [], "expires_in_secs": 60,
        }))
        .await;
    let expiring = app
        .create_key(&json!({
            "name": "short", "tenant": "acme", "permissions": [], "expires_in_secs": 60,
        }))
        .await;
    let secret = |key: &serde_json::Value| key["secret"].as_str().unwrap().to_owned();

    // Lookups: 2 valid, 1 unknown, 1 revoked, 1 expired.
    assert_eq!(app.lookup(&secret(&active)).await["status"], "valid");
    assert_eq!(app.lookup(&secret(&active)).await["status"], "valid");
    assert_eq!(app.lookup("kg_not_a_key_at_all").await["reason"], "unknown");
    let revoke = format!("/v1/keys/{}/revoke", revoked["id"].as_str().unwrap());
    assert_eq!(
        app.admin_post(&revoke, &json!({})).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.lookup(&secret(&revoked)).await["reason"], "revoked");
    app.advance(60);
    assert_eq!(app.lookup(&secret(&expiring)).await["reason"], "expired");

    // Token requests: one issued, one with a wrong secret.
    let client = app.create_default_client().await;
    app.token_for(&client, &[]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let refused = app
        .token_request(
            Some((client_id, "wrong-secret")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // A path holding something secret-looking, which must not become a label.
    let probe = app
        .client
        .get(app.url("/v1/kg_path_probe_secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::NOT_FOUND);

    // A failing query: the usage table is gone behind the service's back.
    app.database.execute("DROP TABLE usage_daily").await;
    let usage = format!("/v1/keys/{}/usage", active["id"].as_str().unwrap());
    assert_eq!(
        app.admin_get(&usage).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );

    let (m, text) = scrape(&app).await;

    for (outcome, count) in [
        ("valid", 2.0),
        ("unknown", 1.0),
        ("revoked", 1.0),
        ("expired", 1.0),
    ] {
        assert_eq!(
            m.value("keygate_lookups_total", &[("outcome", outcome)]),
            count,
            "{outcome}"
        );
    }
    assert_eq!(
        m.value("keygate_token_requests_total", &[("outcome", "issued")]),
        1.0
    );
    assert_eq!(
        m.value(
            "keygate_token_requests_total",
            &[("outcome", "invalid_client")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "keygate_token_requests_total",
            &[("outcome", "invalid_scope")]
        ),
        0.0
    );

    // Counted by the database at the scrape, at the service clock's now (60 s on).
    assert_eq!(m.value("keygate_keys", &[("status", "active")]), 1.0);
    assert_eq!(m.value("keygate_keys", &[("status", "revoked")]), 1.0);
    assert_eq!(m.value("keygate_keys", &[("status", "expired")]), 1.0);
    let get_revoked = format!("/v1/keys/{}", revoked["id"].as_str().unwrap());
    let view: serde_json::Value = app.admin_get(&get_revoked).await.json().await.unwrap();
    assert_eq!(view["status"], "revoked");

    assert_eq!(
        m.value("keygate_database_errors_total", &[("kind", "query")]),
        1.0
    );
    assert_eq!(
        m.value("keygate_database_errors_total", &[("kind", "unavailable")]),
        0.0
    );

    let requests = |route: &str, status: &str| {
        m.get(
            "keygate_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("/v1/lookup", "200"), Some(5.0));
    assert_eq!(requests("/v1/keys", "201"), Some(3.0));
    assert_eq!(requests("/v1/keys/{id}/revoke", "200"), Some(1.0));
    assert_eq!(requests("/v1/clients", "201"), Some(1.0));
    assert_eq!(requests("/oauth/token", "200"), Some(1.0));
    assert_eq!(requests("/oauth/token", "401"), Some(1.0));
    assert_eq!(requests("/v1/keys/{id}/usage", "500"), Some(1.0));
    assert_eq!(requests("<unmatched>", "404"), Some(1.0));
    // A scrape is counted once answered: this one is not in its own text.
    assert_eq!(requests("/metrics", "200"), None);

    // The latency histogram: five lookups, cumulative buckets ending at +Inf.
    let name = "keygate_http_request_duration_seconds";
    assert_eq!(m.types[name], "histogram");
    assert_eq!(m.types["keygate_lookups"], "counter");
    assert_eq!(m.types["keygate_keys"], "gauge");
    let buckets = m.buckets(name, "/v1/lookup");
    assert_eq!(
        buckets.iter().map(|(le, _)| *le).collect::<Vec<_>>(),
        keygate_keyservice::metrics::LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .collect::<Vec<_>>()
    );
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().unwrap().1, 5.0);
    assert_eq!(
        m.value(&format!("{name}_count"), &[("route", "/v1/lookup")]),
        5.0
    );
    let sum = m.value(&format!("{name}_sum"), &[("route", "/v1/lookup")]);
    assert!(sum > 0.0 && sum < 30.0, "{sum}");

    // Nothing secret, nor any id, in the text.
    let client_secret = client["client_secret"].as_str().unwrap();
    for secret in [
        app.admin_secret.as_str(),
        FILTER_TOKEN,
        METRICS_TOKEN,
        &secret(&active),
        &secret(&revoked),
        &secret(&expiring),
        client_secret,
        client_id,
        active["id"].as_str().unwrap(),
        "kg_path_probe_secret",
        "acme",
    ] {
        assert!(!text.contains(secret), "the scrape shows {secret}");
    }

    // The next scrape sees the previous one.
    let (m, _) = scrape(&app).await;
    assert_eq!(
        m.value(
            "keygate_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ),
        1.0
    );
}

async fn a_batch_lookup_counts_each_answer(backend: Backend) {
    let app = spawn_with_metrics(backend).await;
    let key = app.create_default_key().await;
    let secret = key["secret"].as_str().unwrap();
    let answers = app
        .lookup_batch(&[secret, "kg_unknown", secret, "kg_unknown", "kg_other"])
        .await;
    assert_eq!(answers.len(), 5);

    let (m, _) = scrape(&app).await;
    for (outcome, count) in [
        ("valid", 2.0),
        ("unknown", 3.0),
        ("revoked", 0.0),
        ("expired", 0.0),
    ] {
        assert_eq!(
            m.value("keygate_lookups_total", &[("outcome", outcome)]),
            count,
            "{outcome}"
        );
    }
    assert_eq!(
        m.value(
            "keygate_http_requests_total",
            &[("route", "/v1/lookups"), ("status", "200")]
        ),
        1.0
    );
}

backend_tests!(
    metrics_need_their_own_token,
    metrics_token_equal_to_another_secret_is_refused_at_start,
    metrics_are_off_without_a_token,
    a_scrape_counts_requests_lookups_grants_keys_and_database_errors,
    a_batch_lookup_counts_each_answer,
);
