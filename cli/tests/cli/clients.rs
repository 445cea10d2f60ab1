use serde_json::Value;

use crate::helpers::{text, Service};

#[test]
fn a_client_goes_through_create_list_get_rotate_revoke_and_delete() {
    let service = Service::start();
    let created = service.json(&[
        "clients",
        "create",
        "--name",
        "billing",
        "--tenant",
        "acme",
        "--permission",
        "orders:read",
    ]);
    let id = text(&created, "client_id");
    let first_secret = text(&created, "client_secret");

    let listed = service.json(&["clients", "list"]);
    assert_eq!(listed["clients"][0]["client_id"], id.as_str());
    assert!(listed["clients"][0].get("client_secret").is_none());
    let table = service.keygate(&["clients", "list"]).ok();
    assert!(table.lines().nth(1).unwrap().starts_with(&id), "{table}");

    let got = service.keygate(&["clients", "get", &id]).ok();
    assert!(
        got.contains(&format!("client id    {id}")) || got.contains(&id),
        "{got}"
    );
    assert!(got.contains("billing"), "{got}");

    let renewed = service.json(&["clients", "renew", &id, "--expires-in", "2h"]);
    assert_eq!(renewed["client_id"], id.as_str());
    assert_ne!(renewed["expires_at"], created["expires_at"]);

    let rotated = service.json(&["clients", "rotate", &id, "--grace-period", "0"]);
    assert_ne!(text(&rotated, "client_secret"), first_secret);

    let revoked = service.json(&["clients", "revoke", &id]);
    assert_eq!(revoked["status"], "revoked");

    let deleted = service.keygate(&["clients", "delete", &id, "--output", "json"]);
    assert_eq!(deleted.ok(), "", "a delete prints nothing in JSON mode");
    let gone = service.keygate(&["clients", "get", &id]);
    assert_eq!(gone.code, 4, "{gone:?}");
}

#[test]
fn a_new_client_in_table_mode_shows_its_secret_once_with_a_note() {
    let service = Service::start();
    let stdout = service
        .keygate(&["clients", "create", "--name", "billing", "--tenant", "acme"])
        .ok();
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("client secret"))
        .unwrap_or_else(|| panic!("no client secret line in {stdout}"))
        .trim();
    assert!(!secret.is_empty());
    assert_eq!(stdout.matches(secret).count(), 1, "{stdout}");
    assert!(stdout.contains("shown this once"), "{stdout}");
}

#[test]
fn an_empty_client_list_says_so_and_its_json_is_an_empty_array() {
    let service = Service::start();
    assert_eq!(service.keygate(&["clients", "list"]).ok(), "No clients.\n");
    let listed: Value = service.json(&["clients", "list"]);
    assert_eq!(listed["clients"], serde_json::json!([]));
}
