//! The key service's database under failure, with real processes: PostgreSQL restarted under
//! load, and the key service killed while keys are created as fast as possible. Neither may lose
//! a write the service acknowledged.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keygate_e2e::keyservice::ADMIN_SECRET;
use keygate_e2e::KeyService;
use keygate_testdb::{PgCluster, TestDatabase};
use reqwest::Method;
use serde_json::json;
use tokio::time::{sleep, Instant};

/// Writers creating keys at once.
const WRITERS: usize = 4;
/// A bound far above what recovery takes, even on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// What the writers saw: the ids of the keys answered 201, and how many calls got each other
/// outcome.
#[derive(Default)]
struct Tally {
    created: Mutex<Vec<String>>,
    unavailable: AtomicUsize,
    /// Neither 201 nor 503 (a 500 would be a bug).
    other: Mutex<Vec<String>>,
    /// No HTTP answer at all (the process is gone).
    unanswered: AtomicUsize,
}

impl Tally {
    fn created(&self) -> usize {
        self.created.lock().unwrap().len()
    }
}

/// Creates keys through `url` from [`WRITERS`] tasks, as fast as the service answers, until
/// `stop`.
fn start_writers(
    url: String,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|_| {
            let url = url.clone();
            let tally = tally.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(20))
                    .build()
                    .unwrap();
                while !stop.load(Ordering::SeqCst) {
                    let sent = client
                        .post(&url)
                        .bearer_auth(ADMIN_SECRET)
                        .json(&json!({"name": "load", "tenant": "acme", "permissions": []}))
                        .send()
                        .await;
                    let response = match sent {
                        Ok(response) => response,
                        Err(_) => {
                            tally.unanswered.fetch_add(1, Ordering::SeqCst);
                            sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    match response.status().as_u16() {
                        201 => {
                            let body: serde_json::Value = match response.json().await {
                                Ok(body) => body,
                                // The answer was cut off: not acknowledged.
                                Err(_) => continue,
                            };
                            let id = body["id"].as_str().unwrap().to_owned();
                            tally.created.lock().unwrap().push(id);
                        }
                        503 => {
                            tally.unavailable.fetch_add(1, Ordering::SeqCst);
                        }
                        status => {
                            let body = response.text().await.unwrap_or_default();
                            tally.other.lock().unwrap().push(format!("{status} {body}"));
                        }
                    }
                }
            })
        })
        .collect()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged key is there, and listed once.
async fn assert_all_present(service: &KeyService, created: &[String]) {
    eprintln!("checking {} acknowledged keys", created.len());
    let unique: HashSet<&String> = created.iter().collect();
    assert_eq!(unique.len(), created.len(), "one id acknowledged twice");
    let (status, listed) = service.admin(Method::GET, "/v1/keys", None).await.unwrap();
    assert_eq!(status, 200);
    let listed: HashSet<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    let missing: Vec<&String> = created
        .iter()
        .filter(|id| !listed.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged keys are gone: {missing:?}",
        missing.len(),
        created.len()
    );
}

#[tokio::test]
async fn postgres_restarted_under_load_gets_503s_then_recovers_and_loses_no_acknowledged_write() {
    let cluster = PgCluster::start();
    let url = cluster.create_database("keygate");
    let dir = tempfile::tempdir().unwrap();
    let service = KeyService::start(dir.path(), vec![("KEYGATE_DATABASE_URL".to_owned(), url)])
        .await
        .unwrap();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(service.url("/v1/keys"), tally.clone(), stop.clone());
    until("keys created before the restart", || tally.created() >= 20).await;

    let cluster = Arc::new(cluster);
    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop_server())
        .await
        .unwrap();
    until("a 503 while PostgreSQL is down", || {
        tally.unavailable.load(Ordering::SeqCst) > 0
    })
    .await;
    let (health, _) = service.admin(Method::GET, "/healthz", None).await.unwrap();
    assert_eq!(health, 503, "/healthz while PostgreSQL is down");
    let before_restart = tally.created();

    let starting = cluster.clone();
    tokio::task::spawn_blocking(move || starting.start_server())
        .await
        .unwrap();
    // Recovered by itself: new keys are created again.
    until("keys created after the restart", || {
        tally.created() >= before_restart + 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }

    let other = tally.other.lock().unwrap().clone();
    assert!(
        other.is_empty(),
        "answers other than 201 and 503: {other:?}"
    );
    assert_eq!(
        tally.unanswered.load(Ordering::SeqCst),
        0,
        "the service stopped answering"
    );
    let created = tally.created.lock().unwrap().clone();
    assert_all_present(&service, &created).await;
}

async fn killed_while_creating_keys_keeps_every_acknowledged_key(extra_env: Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut service = KeyService::start(dir.path(), extra_env).await.unwrap();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(service.url("/v1/keys"), tally.clone(), stop.clone());
    until("keys created before the kill", || tally.created() >= 50).await;
    // SIGKILL, with requests in flight.
    service.stop().unwrap();
    until("the writers to notice", || {
        tally.unanswered.load(Ordering::SeqCst) > 0
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }

    service.start_again().await.unwrap();
    let other = tally.other.lock().unwrap().clone();
    assert!(
        other.is_empty(),
        "answers other than 201 and 503: {other:?}"
    );
    let created = tally.created.lock().unwrap().clone();
    assert_all_present(&service, &created).await;
}

#[tokio::test]
async fn sqlite_key_service_killed_while_creating_keys_keeps_every_acknowledged_key() {
    killed_while_creating_keys_keeps_every_acknowledged_key(Vec::new()).await;
}

#[tokio::test]
async fn postgres_key_service_killed_while_creating_keys_keeps_every_acknowledged_key() {
    let database = TestDatabase::create();
    killed_while_creating_keys_keeps_every_acknowledged_key(vec![(
        "KEYGATE_DATABASE_URL".to_owned(),
        database.url().to_owned(),
    )])
    .await;
}
