//! `GET /v1/changes`: the revocation feed the filter polls.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use keygate_core::key::KeyHash;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    backend_tests, error_code, spawn_app, spawn_app_with, Backend, Options,
    CHANGE_LOG_RETENTION_SECS, FILTER_TOKEN,
};

/// A bound far above what a prompt answer takes, even on a loaded machine.
const PROMPT: Duration = Duration::from_secs(5);

fn hash_of(key: &Value) -> String {
    KeyHash::of(key["secret"].as_str().unwrap().as_bytes()).to_hex()
}

fn id_of(key: &Value) -> &str {
    key["id"].as_str().unwrap()
}

fn seq_of(cursor: &str) -> u64 {
    cursor.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn log_of(cursor: &str) -> &str {
    cursor.split_once(':').unwrap().0
}

/// Revokes `key` through the admin API; the tests look at what the feed says of it.
async fn revoke(app: &crate::helpers::TestApp, key: &Value) -> reqwest::Response {
    app.admin_post(&format!("/v1/keys/{}/revoke", id_of(key)), &json!({}))
        .await
}

fn hashes(answer: &Value) -> Vec<String> {
    answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect()
}

async fn first_read_without_a_cursor_resets_to_the_current_cursor(backend: Backend) {
    let app = spawn_app(backend).await;
    let answer = app.changes(None, "").await;
    assert_eq!(answer["reset"], true);
    assert_eq!(answer["more"], false);
    assert_eq!(answer["changes"], json!([]));
    let cursor = answer["cursor"].as_str().unwrap();
    assert_eq!(log_of(cursor).len(), 32);
    assert_eq!(seq_of(cursor), 0);

    // Reading on from it: nothing new, no reset, the same cursor.
    let again = app.changes(Some(cursor), "").await;
    assert_eq!(
        again,
        json!({"cursor": cursor, "changes": [], "reset": false, "more": false})
    );
}

async fn revoked_key_hash_is_listed_after_the_cursor(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let cursor = app.change_cursor().await;

    let revoked = revoke(&app, &key).await;
    assert_eq!(revoked.status(), StatusCode::OK);

    let answer = app.changes(Some(&cursor), "").await;
    assert_eq!(hashes(&answer), [hash_of(&key)]);
    assert_eq!(answer["reset"], false);
    assert_eq!(answer["more"], false);
    let next = answer["cursor"].as_str().unwrap();
    assert_eq!(log_of(next), log_of(&cursor));
    assert_eq!(seq_of(next), seq_of(&cursor) + 1);

    // A second revoke changes no answer, so it logs nothing.
    revoke(&app, &key).await;
    let after = app.changes(Some(next), "").await;
    assert_eq!(hashes(&after), Vec::<String>::new());
    assert_eq!(after["cursor"], next);
}

async fn delete_renew_and_rotate_list_every_affected_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let deleted = app.create_default_key().await;
    let renewed = app.create_default_key().await;
    let rotated = app.create_default_key().await;
    let cursor = app.change_cursor().await;

    let response = app
        .admin_delete(&format!("/v1/keys/{}", id_of(&deleted)))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .admin_post(
            &format!("/v1/keys/{}/renew", id_of(&renewed)),
            &json!({"expires_in_secs": 60}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .admin_post(
            &format!("/v1/keys/{}/rotate", id_of(&rotated)),
            &json!({"grace_period_secs": 120}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let new_secret: Value = response.json().await.unwrap();

    let answer = app.changes(Some(&cursor), "").await;
    // The old secret of the rotated key; its new one was never seen by anyone.
    assert_eq!(
        hashes(&answer),
        [hash_of(&deleted), hash_of(&renewed), hash_of(&rotated)]
    );
    assert_eq!(seq_of(answer["cursor"].as_str().unwrap()), 3);

    // The end of the grace period needs no change: the old secret's answer already expires then.
    let old = app.lookup(rotated["secret"].as_str().unwrap()).await;
    assert_eq!(old["expires_at"], crate::helpers::START_UNIX + 120);
    assert!(old["cache_ttl_secs"].as_u64().unwrap() <= 120);

    // Revoking the rotated key lists both its secrets.
    revoke(&app, &rotated).await;
    let answer = app
        .changes(Some(answer["cursor"].as_str().unwrap()), "")
        .await;
    let mut listed = hashes(&answer);
    listed.sort();
    let mut expected = vec![hash_of(&rotated), hash_of(&new_secret)];
    expected.sort();
    assert_eq!(listed, expected);
}

async fn failed_mutations_log_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let cursor = app.change_cursor().await;
    revoke(&app, &key).await;
    let cursor = app.changes(Some(&cursor), "").await["cursor"]
        .as_str()
        .unwrap()
        .to_owned();

    // Renewing or rotating a revoked key is refused (409); deleting an unknown one is 404.
    let renew = app
        .admin_post(&format!("/v1/keys/{}/renew", id_of(&key)), &json!({}))
        .await;
    assert_eq!(renew.status(), StatusCode::CONFLICT);
    let rotate = app
        .admin_post(
            &format!("/v1/keys/{}/rotate", id_of(&key)),
            &json!({"grace_period_secs": 1}),
        )
        .await;
    assert_eq!(rotate.status(), StatusCode::CONFLICT);
    let missing = app.admin_delete("/v1/keys/key_0000000000000000").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.create_default_key().await;

    let answer = app.changes(Some(&cursor), "").await;
    assert_eq!(answer["changes"], json!([]));
    assert_eq!(answer["cursor"], cursor);
}

async fn a_cursor_older_than_the_trimmed_log_resets(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.create_default_key().await;
    let second = app.create_default_key().await;
    let before_trim = app.change_cursor().await;
    revoke(&app, &first).await;
    let at_first = app.changes(Some(&before_trim), "").await["cursor"]
        .as_str()
        .unwrap()
        .to_owned();

    // The first revoke falls out of the window; the second is recent.
    app.advance(i64::try_from(CHANGE_LOG_RETENTION_SECS).unwrap() + 1);
    revoke(&app, &second).await;
    assert_eq!(app.state.trim_change_log().await.unwrap(), 1);

    let answer = app.changes(Some(&before_trim), "").await;
    assert_eq!(answer["reset"], true);
    assert_eq!(answer["changes"], json!([]));
    assert_eq!(seq_of(answer["cursor"].as_str().unwrap()), 2);

    // A reader that had seen everything up to the trimmed point missed nothing.
    let answer = app.changes(Some(&at_first), "").await;
    assert_eq!(answer["reset"], false);
    assert_eq!(hashes(&answer), [hash_of(&second)]);

    // Trimming again finds nothing old enough.
    assert_eq!(app.state.trim_change_log().await.unwrap(), 0);
}

async fn a_cursor_of_another_log_resets(backend: Backend) {
    let app = spawn_app(backend).await;
    let other = spawn_app(backend).await;
    let key = app.create_default_key().await;
    revoke(&app, &key).await;
    let foreign = other.change_cursor().await;
    let own = app.change_cursor().await;
    assert_ne!(
        log_of(&foreign),
        log_of(&own),
        "each database has its own log id"
    );
    assert_eq!(seq_of(&foreign), 0);

    // The foreign cursor's number is within this log's range, yet it means nothing here.
    let answer = app.changes(Some(&foreign), "").await;
    assert_eq!(answer["reset"], true);
    assert_eq!(answer["changes"], json!([]));
    assert_eq!(answer["cursor"], own);
}

async fn a_cursor_beyond_the_newest_change_resets(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    revoke(&app, &key).await;
    let cursor = app.change_cursor().await;
    assert_eq!(seq_of(&cursor), 1);

    // As if the service had been restored from a backup older than what the reader saw.
    let ahead = format!("{}:2", log_of(&cursor));
    let answer = app.changes(Some(&ahead), "").await;
    assert_eq!(answer["reset"], true);
    assert_eq!(answer["cursor"], cursor);
}

async fn a_database_restored_from_an_older_backup_resets_newer_cursors(backend: Backend) {
    const ADMIN: &str = "admin-secret-for-restore";
    let options = |database| Options {
        database,
        admin_secret: Some(ADMIN.to_owned()),
        ..Options::default()
    };
    let app = spawn_app_with(backend, options(None)).await;
    let first = app.create_default_key().await;
    let second = app.create_default_key().await;
    revoke(&app, &first).await;
    let database = app.stop().await;
    // A cold backup: the service is stopped, so the database is at rest.
    let backup = database.snapshot();

    let app = spawn_app_with(backend, options(Some(database))).await;
    revoke(&app, &second).await;
    let newest = app.change_cursor().await;
    assert_eq!(seq_of(&newest), 2);
    app.stop().await;

    let app = spawn_app_with(backend, options(Some(backup))).await;
    let answer = app.changes(Some(&newest), "").await;
    assert_eq!(answer["reset"], true);
    assert_eq!(answer["cursor"], format!("{}:1", log_of(&newest)));
}

async fn the_log_and_its_cursors_survive_a_restart(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let cursor = app.change_cursor().await;
    revoke(&app, &key).await;
    let dir = app.stop().await;

    let app = spawn_app_with(
        backend,
        Options {
            database: Some(dir),
            ..Options::default()
        },
    )
    .await;
    let answer = app.changes(Some(&cursor), "").await;
    assert_eq!(answer["reset"], false);
    assert_eq!(hashes(&answer), [hash_of(&key)]);
}

async fn changes_come_in_pages_with_more_set_until_the_last(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(app.create_default_key().await);
    }
    let mut cursor = app.change_cursor().await;
    for key in &keys {
        revoke(&app, key).await;
    }

    let mut pages = Vec::new();
    let mut listed = Vec::new();
    loop {
        let answer = app.changes(Some(&cursor), "&limit=2").await;
        assert_eq!(answer["reset"], false);
        pages.push((hashes(&answer).len(), answer["more"].as_bool().unwrap()));
        listed.extend(hashes(&answer));
        cursor = answer["cursor"].as_str().unwrap().to_owned();
        if answer["more"] == false {
            break;
        }
    }
    assert_eq!(pages, [(2, true), (2, true), (1, false)]);
    let expected: Vec<String> = keys.iter().map(hash_of).collect();
    assert_eq!(listed, expected);
    assert_eq!(seq_of(&cursor), 5);

    // Without `limit`, all of them in one answer (up to the cap of 1000).
    let all = app
        .changes(Some(&format!("{}:0", log_of(&cursor))), "")
        .await;
    assert_eq!(hashes(&all), expected);
    assert_eq!(all["more"], false);
}

async fn long_poll_returns_as_soon_as_a_revoke_commits_during_the_wait(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let cursor = app.change_cursor().await;

    let started = Instant::now();
    // The poll has read the log, found nothing, and is waiting.
    let poll = app.held_changes_poll(&cursor).await;

    let revoked_at = Instant::now();
    let response = revoke(&app, &key).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = poll.await.unwrap();
    let answered_after = revoked_at.elapsed();
    assert_eq!(hashes(&answer), [hash_of(&key)]);
    assert_eq!(answer["reset"], false);
    assert!(
        answered_after < PROMPT,
        "answered {answered_after:?} after the revoke (poll started {:?} ago)",
        started.elapsed()
    );
    assert_eq!(app.state.change_signal().parked(), 0);
}

async fn long_poll_with_nothing_new_answers_empty_when_its_wait_ends(backend: Backend) {
    let app = spawn_app(backend).await;
    let cursor = app.change_cursor().await;
    let started = Instant::now();
    let answer = app.changes(Some(&cursor), "&wait_ms=300").await;
    let took = started.elapsed();
    assert_eq!(
        answer,
        json!({"cursor": cursor, "changes": [], "reset": false, "more": false})
    );
    assert!(
        took >= Duration::from_millis(300),
        "returned after {took:?}"
    );
    assert!(took < PROMPT, "returned after {took:?}");
}

async fn a_reset_is_answered_at_once_even_with_a_wait(backend: Backend) {
    let app = spawn_app(backend).await;
    let started = Instant::now();
    let answer = app.changes(None, "wait_ms=20000").await;
    assert_eq!(answer["reset"], true);
    assert!(started.elapsed() < PROMPT);
}

async fn shutdown_ends_a_waiting_long_poll(backend: Backend) {
    let app = spawn_app(backend).await;
    let cursor = app.change_cursor().await;
    let poll = app.held_changes_poll(&cursor).await;

    let started = Instant::now();
    app.stop().await;
    let answer = poll.await.unwrap();
    assert!(
        started.elapsed() < PROMPT,
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(answer["changes"], json!([]));
    assert_eq!(answer["cursor"], cursor);
}

async fn changes_need_the_filter_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin_secret = app.admin_secret.clone();
    for token in ["wrong-token", admin_secret.as_str()] {
        let response = app.changes_raw(token, "").await;
        assert_eq!(
            error_code(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized"
        );
    }
    let response = app.client.get(app.url("/v1/changes")).send().await.unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(
        error_code(response, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
}

async fn malformed_cursor_or_limit_is_a_json_400_naming_the_parameter(backend: Backend) {
    let app = spawn_app(backend).await;
    let log = log_of(&app.change_cursor().await).to_owned();
    for (query, parameter) in [
        ("after=nonsense".to_owned(), "after"),
        (format!("after={log}"), "after"),
        (format!("after={log}%3A-1"), "after"),
        (format!("after={}%3A1", log.to_uppercase()), "after"),
        (format!("after={log}%3A1&limit=0"), "limit"),
        (format!("after={log}%3A1&wait_ms=soon"), "wait_ms"),
        ("before=1".to_owned(), "before"),
    ] {
        let response = app.changes_raw(FILTER_TOKEN, &query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "bad_request", "{query}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(parameter), "{query}: {message}");
    }
}

async fn concurrent_revokes_are_numbered_without_gaps_each_hash_once(backend: Backend) {
    const KEYS: usize = 40;
    let app = spawn_app(backend).await;
    let mut keys = Vec::new();
    for _ in 0..KEYS {
        keys.push(app.create_default_key().await);
    }
    let start = app.change_cursor().await;

    let mut revokes = tokio::task::JoinSet::new();
    for key in &keys {
        let request = app
            .as_admin(
                app.client
                    .post(app.url(&format!("/v1/keys/{}/revoke", id_of(key)))),
            )
            .json(&json!({}));
        revokes.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = revokes.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }

    // One change per answer: every cursor must be exactly one past the previous.
    let mut cursor = start.clone();
    let mut seen = Vec::new();
    loop {
        let answer = app.changes(Some(&cursor), "&limit=1").await;
        assert_eq!(answer["reset"], false);
        let next = answer["cursor"].as_str().unwrap().to_owned();
        match hashes(&answer).as_slice() {
            [] => {
                assert_eq!(next, cursor);
                break;
            }
            [hash] => {
                assert_eq!(seq_of(&next), seq_of(&cursor) + 1, "a gap after {cursor}");
                seen.push(hash.clone());
            }
            more => panic!("limit=1 answered {} changes", more.len()),
        }
        cursor = next;
    }
    assert_eq!(seen.len(), KEYS);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), KEYS, "a hash was listed twice");
    let expected: HashSet<String> = keys.iter().map(hash_of).collect();
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
    assert_eq!(seq_of(&cursor), seq_of(&start) + KEYS as u64);
}

backend_tests!(
    a_database_restored_from_an_older_backup_resets_newer_cursors,
    first_read_without_a_cursor_resets_to_the_current_cursor,
    revoked_key_hash_is_listed_after_the_cursor,
    delete_renew_and_rotate_list_every_affected_secret,
    failed_mutations_log_nothing,
    a_cursor_older_than_the_trimmed_log_resets,
    a_cursor_of_another_log_resets,
    a_cursor_beyond_the_newest_change_resets,
    the_log_and_its_cursors_survive_a_restart,
    changes_come_in_pages_with_more_set_until_the_last,
    long_poll_returns_as_soon_as_a_revoke_commits_during_the_wait,
    long_poll_with_nothing_new_answers_empty_when_its_wait_ends,
    a_reset_is_answered_at_once_even_with_a_wait,
    shutdown_ends_a_waiting_long_poll,
    changes_need_the_filter_token,
    malformed_cursor_or_limit_is_a_json_400_naming_the_parameter,
);
backend_tests!(multi_thread; concurrent_revokes_are_numbered_without_gaps_each_hash_once);
