//! `audit list` (filters, pages) and `audit tail`.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{text, Service, ADMIN_SECRET};

/// Longest a test waits for `audit tail` to print what it should.
const TAIL_PATIENCE: Duration = Duration::from_secs(20);

fn create_key(service: &Service, name: &str) -> String {
    text(
        &service.json(&["keys", "create", "--name", name, "--tenant", "acme"]),
        "id",
    )
}

fn actions(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| text(e, "action"))
        .collect()
}

#[test]
fn audit_list_filters_by_action_target_and_time() {
    let service = Service::start();
    let kept = create_key(&service, "kept");
    let revoked = create_key(&service, "revoked");
    service.json(&["keys", "revoke", &revoked]);

    let page = service.json(&["audit", "list", "--action", "key.revoke"]);
    assert_eq!(actions(&page), ["key.revoke"]);
    assert_eq!(page["events"][0]["target_id"], revoked.as_str());
    assert_eq!(page["events"][0]["actor"], "admin");
    assert_eq!(page["next"], Value::Null);

    let about_kept = service.json(&["audit", "list", "--target-id", &kept]);
    assert_eq!(actions(&about_kept), ["key.create"]);

    let table = service.keygate(&["audit", "list", "--tenant", "acme"]).ok();
    assert!(table.starts_with("AT "), "{table}");
    assert_eq!(table.matches("key.create").count(), 2, "{table}");

    let recent = service.json(&["audit", "list", "--since", "1h", "--action", "key.create"]);
    assert_eq!(actions(&recent).len(), 2);
    let old = service.json(&["audit", "list", "--until", "1h"]);
    assert_eq!(actions(&old).len(), 0, "{old}");
}

#[test]
fn audit_list_prints_the_next_cursor_and_all_follows_it() {
    let service = Service::start();
    let ids: Vec<String> = ["a", "b", "c"]
        .into_iter()
        .map(|name| create_key(&service, name))
        .collect();
    let filter = ["audit", "list", "--action", "key.create"];

    let first = service.json(&[&filter[..], &["--limit", "2"]].concat());
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    // Newest first.
    assert_eq!(first["events"][0]["target_id"], ids[2].as_str());
    let cursor = text(&first, "next");

    let table = service.keygate(&[&filter[..], &["--limit", "2"]].concat());
    assert!(
        table.stderr.contains(&format!("--after {cursor}")),
        "{table:?}"
    );
    assert_eq!(table.ok().lines().count(), 3, "a header and two events");

    let second = service.json(&[&filter[..], &["--limit", "2", "--after", &cursor]].concat());
    assert_eq!(second["events"].as_array().unwrap().len(), 1);
    assert_eq!(second["events"][0]["target_id"], ids[0].as_str());

    let all = service.json(&[&filter[..], &["--limit", "1", "--all"]].concat());
    let targets: Vec<String> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| text(e, "target_id"))
        .collect();
    assert_eq!(targets, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    assert_eq!(all["next"], Value::Null);
}

#[cfg(unix)]
#[test]
fn audit_tail_prints_new_events_as_they_come_and_stops_on_ctrl_c() {
    let service = Service::start();
    let before = create_key(&service, "before");

    let mut tail = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .env_clear()
        .env("KEYGATE_URL", &service.url)
        .env("KEYGATE_ADMIN_SECRET", ADMIN_SECRET)
        .args([
            "audit",
            "tail",
            "--tenant",
            "acme",
            "--interval",
            "1",
            "-n",
            "5",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, events) = mpsc::channel::<Value>();
    let stdout = BufReader::new(tail.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            let event = serde_json::from_str(&line.unwrap()).unwrap();
            if lines.send(event).is_err() {
                break;
            }
        }
    });

    // The latest events first: the key made before the tail started.
    let first = events.recv_timeout(TAIL_PATIENCE).unwrap();
    assert_eq!(first["action"], "key.create");
    assert_eq!(first["target_id"], before.as_str());

    // Then what happens while it runs, oldest first, each once.
    let after = create_key(&service, "after");
    service.json(&["keys", "revoke", &after]);
    let created = events.recv_timeout(TAIL_PATIENCE).unwrap();
    assert_eq!(
        (created["action"].as_str(), created["target_id"].as_str()),
        (Some("key.create"), Some(after.as_str()))
    );
    let revoked = events.recv_timeout(TAIL_PATIENCE).unwrap();
    assert_eq!(revoked["action"], "key.revoke");

    let interrupt = Command::new("kill")
        .args(["-INT", &tail.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let status = tail.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    reader.join().unwrap();
    assert!(
        events.try_recv().is_err(),
        "no event was printed twice or late"
    );
}
