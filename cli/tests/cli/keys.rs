use serde_json::Value;

use crate::helpers::{text, Service};

fn create_key(service: &Service) -> Value {
    service.json(&[
        "keys",
        "create",
        "--name",
        "ci",
        "--tenant",
        "acme",
        "--permission",
        "orders:read,orders:write",
        "--expires-in",
        "30d",
    ])
}

#[test]
fn a_key_goes_through_create_list_get_renew_rotate_usage_revoke_and_delete() {
    let service = Service::start();
    let created = create_key(&service);
    let id = text(&created, "id");
    let first_secret = text(&created, "secret");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(
        created["permissions"],
        serde_json::json!(["orders:read", "orders:write"])
    );
    assert!(created["expires_at"].is_string());

    let listed = service.json(&["keys", "list", "--tenant", "acme"]);
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert!(
        listed["keys"][0].get("secret").is_none(),
        "a list shows no secret"
    );
    let other_tenant = service.json(&["keys", "list", "--tenant", "globex"]);
    assert_eq!(other_tenant["keys"], serde_json::json!([]));

    let got = service.json(&["keys", "get", &id]);
    assert_eq!(got["name"], "ci");
    assert_eq!(got["status"], "active");
    let prefix = format!("{}…", &first_secret[..7]);
    assert_eq!(got["prefix"], prefix.as_str());
    let table = service.keygate(&["keys", "get", &id]).ok();
    assert!(table.contains(&prefix), "{table}");
    assert!(!table.contains(&first_secret[7..]), "{table}");

    let renewed = service.json(&["keys", "renew", &id, "--never-expires"]);
    assert_eq!(renewed["expires_at"], Value::Null);

    service.report_usage(&id, 3);
    let usage = service.json(&["keys", "usage", &id]);
    assert_eq!(usage["key_id"], id.as_str());
    assert_eq!(usage["total"], 3);
    let usage_table = service.keygate(&["keys", "usage", &id]).ok();
    assert!(usage_table.contains("total         3"), "{usage_table}");
    assert!(usage_table.contains("DAY (UTC)"), "{usage_table}");

    let rotated = service.json(&["keys", "rotate", &id, "--grace-period", "1h"]);
    assert_eq!(rotated["id"], id.as_str());
    assert_ne!(text(&rotated, "secret"), first_secret);

    let revoked = service.json(&["keys", "revoke", &id]);
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());

    let deleted = service.keygate(&["keys", "delete", &id]).ok();
    assert_eq!(deleted.trim(), format!("Deleted key {id}."));
    let gone = service.keygate(&["keys", "get", &id]);
    assert_eq!(gone.code, 4, "{gone:?}");
}

#[test]
fn a_new_key_in_table_mode_shows_its_secret_once_with_a_note() {
    let service = Service::start();
    let run = service.keygate(&[
        "keys",
        "create",
        "--name",
        "ci",
        "--tenant",
        "acme",
        "--permission",
        "orders:read",
    ]);
    let stdout = run.ok();
    let secret = stdout
        .lines()
        .find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["secret", value] => Some(value),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no secret line in {stdout}"));
    assert!(secret.starts_with("kg_"), "{secret}");
    assert_eq!(stdout.matches(secret).count(), 1, "{stdout}");
    assert!(stdout.contains("shown this once"), "{stdout}");

    // The secret printed is the key's: nothing else shows it again.
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("id "))
        .unwrap()
        .trim()
        .to_owned();
    let got = service.keygate(&["keys", "get", &id]).ok();
    assert!(!got.contains(secret), "{got}");
    assert!(!got.contains("shown this once"), "{got}");
}

#[test]
fn the_key_list_table_has_aligned_columns_under_a_header() {
    let service = Service::start();
    let first = create_key(&service);
    let second = service.json(&[
        "keys",
        "create",
        "--name",
        "a much longer name",
        "--tenant",
        "acme",
        "--never-expires",
    ]);
    let table = service.keygate(&["keys", "list"]).ok();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID "), "{table}");
    let status_column = lines[0].find("STATUS").unwrap();
    for line in &lines[1..] {
        assert_eq!(&line[status_column..status_column + 6], "active", "{table}");
    }
    for id in [&first, &second].map(|k| text(k, "id")) {
        assert!(lines[1..].iter().any(|l| l.starts_with(&id)), "{table}");
    }
    assert!(table.contains("never"), "{table}");
}

#[test]
fn renewing_a_revoked_key_is_refused_with_exit_4_and_the_services_message() {
    let service = Service::start();
    let id = text(&create_key(&service), "id");
    service.keygate(&["keys", "revoke", &id]).ok();
    let run = service.keygate(&["keys", "renew", &id, "--expires-in", "1d"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("409"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}
