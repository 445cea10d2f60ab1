//! Two replicas of the key service on one PostgreSQL database: what one writes, the other
//! answers; the change log stays gapless and in commit order under concurrent writers on both;
//! a revoke through one wakes the long-polls held by the other (`LISTEN`/`NOTIFY`); replicas
//! due for a signing-key rotation at once add one successor between them.
//! PostgreSQL only: an SQLite file belongs to one process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use keygate_core::key::KeyHash;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    form_encode, spawn_app_with, Backend, Options, TestApp, TestDb, FILTER_TOKEN, LEAD_SECS,
    ROTATION_SECS,
};

const ADMIN: &str = "admin-secret-shared-by-the-replicas";

/// Two apps on one fresh database, as two replicas behind a load balancer.
async fn two_replicas() -> (TestApp, TestApp) {
    let database = TestDb::new(Backend::Postgres);
    let replica = || Options {
        database: Some(database.clone()),
        admin_secret: Some(ADMIN.to_owned()),
        ..Options::default()
    };
    let a = spawn_app_with(Backend::Postgres, replica()).await;
    let b = spawn_app_with(Backend::Postgres, replica()).await;
    (a, b)
}

fn hash_of(key: &Value) -> String {
    KeyHash::of(key["secret"].as_str().unwrap().as_bytes()).to_hex()
}

fn seq_of(cursor: &str) -> u64 {
    cursor.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn changes_of(answer: &Value) -> Vec<String> {
    answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn postgres_a_key_created_through_one_replica_is_found_through_the_other() {
    let (a, b) = two_replicas().await;
    let key = a.create_default_key().await;
    let answer = b.lookup(key["secret"].as_str().unwrap()).await;
    assert_eq!(answer["status"], "valid", "{answer}");
    assert_eq!(answer["key_id"], key["id"], "{answer}");

    let response = b
        .admin_post(
            &format!("/v1/keys/{}/revoke", key["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = a.lookup(key["secret"].as_str().unwrap()).await;
    assert_eq!(answer["reason"], "revoked", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_revokes_and_renews_on_two_replicas_reach_a_reader_once_in_order() {
    const KEYS: usize = 30;
    const RENEWS_PER_KEY: usize = 3;
    let (a, b) = two_replicas().await;
    let mut keys = Vec::new();
    for i in 0..KEYS {
        let app = if i % 2 == 0 { &a } else { &b };
        keys.push(app.create_default_key().await);
    }
    let start = a.change_cursor().await;

    // The reader pages through replica A while the writers run, in small pages, each answer
    // checked against the one before: the cursor moves by exactly the changes it lists.
    // Once the writers are done: the head the reader must reach.
    let (done, mut head_seq) = tokio::sync::watch::channel(None::<u64>);
    let reader = {
        let client = a.client.clone();
        let base = a.address.clone();
        let start = start.clone();
        tokio::spawn(async move {
            let mut cursor = start;
            let mut seen: Vec<String> = Vec::new();
            loop {
                if head_seq
                    .borrow_and_update()
                    .is_some_and(|head| seq_of(&cursor) >= head)
                {
                    return (cursor, seen);
                }
                let url = format!(
                    "{base}/v1/changes?after={}&limit=3&wait_ms=300",
                    form_encode(&cursor)
                );
                let response = client
                    .get(url)
                    .bearer_auth(FILTER_TOKEN)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let answer: Value = response.json().await.unwrap();
                assert_eq!(answer["reset"], false, "{answer}");
                let next = answer["cursor"].as_str().unwrap().to_owned();
                let changes = changes_of(&answer);
                assert_eq!(
                    seq_of(&next) - seq_of(&cursor),
                    changes.len() as u64,
                    "a gap between {cursor} and {next}: {answer}"
                );
                seen.extend(changes);
                cursor = next;
            }
        })
    };

    // Every key: renewed RENEWS_PER_KEY times and revoked once, the calls spread over both
    // replicas and all in flight at once. A renew that lands after the revoke is refused (409)
    // and logs nothing.
    let mut writes = tokio::task::JoinSet::new();
    for (i, key) in keys.iter().enumerate() {
        let id = key["id"].as_str().unwrap().to_owned();
        let hash = hash_of(key);
        for n in 0..=RENEWS_PER_KEY {
            let app = if (i + n) % 2 == 0 { &a } else { &b };
            let (path, body) = if n == RENEWS_PER_KEY / 2 {
                (format!("/v1/keys/{id}/revoke"), json!({}))
            } else {
                (
                    format!("/v1/keys/{id}/renew"),
                    json!({"expires_in_secs": 3600 + n}),
                )
            };
            let request = app.as_admin(app.client.post(app.url(&path))).json(&body);
            let hash = hash.clone();
            writes.spawn(async move { (hash, request.send().await.unwrap().status()) });
        }
    }
    let mut expected: HashMap<String, usize> = HashMap::new();
    while let Some(write) = writes.join_next().await {
        let (hash, status) = write.unwrap();
        match status {
            StatusCode::OK => *expected.entry(hash).or_default() += 1,
            StatusCode::CONFLICT => {}
            other => panic!("a write answered {other}"),
        }
    }
    let logged: usize = expected.values().sum();
    let head = a.change_cursor().await;
    assert_eq!(seq_of(&head) - seq_of(&start), logged as u64);

    done.send_replace(Some(seq_of(&head)));
    let (cursor, seen) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the reader never caught up")
        .unwrap();
    assert_eq!(cursor, head, "the reader went past the head");
    let mut counted: HashMap<String, usize> = HashMap::new();
    for hash in seen {
        *counted.entry(hash).or_default() += 1;
    }
    assert_eq!(
        counted, expected,
        "changes listed more or less often than made"
    );
}

#[tokio::test]
async fn postgres_a_revoke_through_one_replica_wakes_a_long_poll_held_by_the_other() {
    let (a, b) = two_replicas().await;
    let key = a.create_default_key().await;
    let cursor = b.change_cursor().await;

    let poll = b.held_changes_poll(&cursor).await;

    let response = a
        .admin_post(
            &format!("/v1/keys/{}/revoke", key["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let revoked = Instant::now();
    let answer = poll.await.unwrap();
    let woke_after = revoked.elapsed();
    assert_eq!(changes_of(&answer), [hash_of(&key)]);
    // The wait was 20 s: only the notification can answer it this soon.
    assert!(
        woke_after < Duration::from_millis(500),
        "the long-poll on B answered {woke_after:?} after the revoke on A"
    );
}

/// Both replicas find the rotation due at the same moment and plan from the same keys; the
/// store's rotation lock and check let one write its successor, and the other, finding its plan
/// stale, plans again and has nothing to do. Without that check each would add a key of its
/// own, and the later one would take over signing from the earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_due_for_a_rotation_at_once_add_one_successor() {
    let (a, b) = two_replicas().await;
    let first = a.published_kids().await;
    assert_eq!(
        first.len(),
        1,
        "replicas starting on an empty database: {first:?}"
    );
    assert_eq!(b.published_kids().await, first);

    for round in 1..=3 {
        let due = ROTATION_SECS as i64 - LEAD_SECS;
        a.advance(due);
        b.advance(due);
        tokio::join!(a.check_signing_keys(), b.check_signing_keys());
        // Each reloads what the other wrote at its next check.
        a.check_signing_keys().await;
        b.check_signing_keys().await;
        let kids = a.published_kids().await;
        assert_eq!(kids.len(), 2, "round {round}: published {kids:?}");
        assert_eq!(b.published_kids().await, kids, "round {round}");
        // Past the takeover and the old key's retirement: one key again.
        a.advance(2 * LEAD_SECS);
        b.advance(2 * LEAD_SECS);
        a.check_signing_keys().await;
        b.check_signing_keys().await;
        assert_eq!(a.published_kids().await.len(), 1, "round {round}");
    }
}

/// A forced rotation (a key thought compromised) through replica A: replica B publishes the new
/// key and signs with it within a second, not at its next minute check, because A's commit
/// `NOTIFY`s every replica's key ring.
#[tokio::test]
async fn postgres_a_forced_rotation_through_one_replica_is_published_and_used_by_the_other_at_once()
{
    let (a, b) = two_replicas().await;
    let client = b.create_default_client().await;
    let before = b.published_kids().await;
    assert_eq!(before.len(), 1);

    let response = a.admin_post("/v1/signing-keys/rotate", &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated = Instant::now();
    let listed: Value = response.json().await.unwrap();
    let new_kid = listed["signing_keys"][1]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_kid, before[0]);

    loop {
        let published = b.published_kids().await;
        if published.contains(&new_kid) {
            break;
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(1),
            "replica B still publishes {published:?} a second after the rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = b.token_for(&client, &[]).await;
    let header = crate::helpers::jwt_part(token["access_token"].as_str().unwrap(), 0);
    assert_eq!(
        header["kid"],
        new_kid.as_str(),
        "replica B signs with the new key"
    );
}
