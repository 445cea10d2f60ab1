//! Roles, tenant admins and `whoami`.

use serde_json::Value;

use crate::helpers::{text, Service};

fn create_role(service: &Service, name: &str, permissions: &str) -> Value {
    service.json(&[
        "roles",
        "create",
        "--tenant",
        "acme",
        "--name",
        name,
        "--description",
        "reads orders",
        "--permission",
        permissions,
    ])
}

/// A tenant admin of `acme` holding `roles`; gives its create answer (with `secret`).
fn create_tenant_admin(service: &Service, roles: &str) -> Value {
    service.json(&[
        "tenant-admins",
        "create",
        "--tenant",
        "acme",
        "--name",
        "acme ops",
        "--role",
        roles,
    ])
}

#[test]
fn whoami_tells_the_super_admin_from_a_tenant_admin() {
    let service = Service::start();
    let me = service.json(&["whoami"]);
    assert_eq!(me["kind"], "super_admin");
    assert_eq!(me["permissions"], Value::Null);
    let table = service.keygate(&["whoami"]).ok();
    assert!(table.contains("any permission"), "{table}");

    create_role(&service, "orders-reader", "orders:read");
    let admin = create_tenant_admin(&service, "orders-reader");
    let secret = text(&admin, "secret");
    assert!(secret.starts_with("kgta_"), "{secret}");
    let me = service
        .keygate_with_env(
            &[("KEYGATE_ADMIN_SECRET", &secret)],
            &["whoami", "--output", "json"],
        )
        .json();
    assert_eq!(me["kind"], "tenant_admin");
    assert_eq!(me["id"], admin["id"]);
    assert_eq!(me["tenant"], "acme");
    assert_eq!(me["roles"], serde_json::json!(["orders-reader"]));
}

#[test]
fn a_role_goes_through_create_list_get_update_and_delete() {
    let service = Service::start();
    let role = create_role(&service, "orders-reader", "orders:read");
    let id = text(&role, "id");
    assert!(id.starts_with("rol_"), "{id}");

    let listed = service.json(&["roles", "list", "--tenant", "acme"]);
    assert_eq!(listed["roles"][0]["id"], id.as_str());
    let table = service.keygate(&["roles", "list"]).ok();
    assert!(table.lines().nth(1).unwrap().starts_with(&id), "{table}");
    assert_eq!(
        service.json(&["roles", "get", &id])["name"],
        "orders-reader"
    );

    // What an update does not name is kept.
    let described = service.json(&["roles", "update", &id, "--description", "reads all orders"]);
    assert_eq!(described["description"], "reads all orders");
    assert_eq!(described["permissions"], serde_json::json!(["orders:read"]));
    let widened = service.json(&[
        "roles",
        "update",
        &id,
        "--permission",
        "orders:read,orders:list",
    ]);
    assert_eq!(widened["description"], "reads all orders");
    assert_eq!(
        widened["permissions"],
        serde_json::json!(["orders:read", "orders:list"])
    );
    let emptied = service.json(&["roles", "update", &id, "--no-permissions"]);
    assert_eq!(emptied["permissions"], serde_json::json!([]));

    assert_eq!(
        service.keygate(&["roles", "delete", &id]).ok().trim(),
        format!("Deleted role {id}.")
    );
    assert_eq!(service.keygate(&["roles", "get", &id]).code, 4);
}

#[test]
fn a_role_held_by_a_key_is_not_deleted_and_its_holders_are_named() {
    let service = Service::start();
    let role = text(&create_role(&service, "orders-reader", "orders:read"), "id");
    let key = service.json(&[
        "keys",
        "create",
        "--name",
        "ci",
        "--tenant",
        "acme",
        "--role",
        "orders-reader",
        "--permission",
        "orders:write",
    ]);
    assert_eq!(key["roles"], serde_json::json!(["orders-reader"]));
    let effective = key["effective_permissions"].as_array().unwrap();
    assert!(effective.contains(&"orders:read".into()), "{key}");
    assert!(effective.contains(&"orders:write".into()), "{key}");

    let run = service.keygate(&["roles", "delete", &role]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("role_in_use"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("key {}", text(&key, "id"))),
        "{}",
        run.stderr
    );
}

#[test]
fn a_tenant_admin_goes_through_create_list_get_renew_rotate_revoke_and_delete() {
    let service = Service::start();
    create_role(&service, "orders-reader", "orders:read");
    let stdout = service
        .keygate(&[
            "tenant-admins",
            "create",
            "--tenant",
            "acme",
            "--name",
            "acme ops",
            "--role",
            "orders-reader",
        ])
        .ok();
    assert!(stdout.contains("shown this once"), "{stdout}");
    let secret = stdout
        .lines()
        .find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["secret", value] => Some(value.to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no secret line in {stdout}"));
    assert!(secret.starts_with("kgta_"), "{secret}");

    let listed = service.json(&["tenant-admins", "list", "--tenant", "acme"]);
    let id = text(&listed["tenant_admins"][0], "id");
    assert!(listed["tenant_admins"][0].get("secret").is_none());
    assert_eq!(
        service.json(&["tenant-admins", "get", &id])["name"],
        "acme ops"
    );

    let renewed = service.json(&["tenant-admins", "renew", &id, "--never-expires"]);
    assert_eq!(renewed["expires_at"], Value::Null);
    let rotated = service.json(&["tenant-admins", "rotate", &id, "--grace-period", "0"]);
    let new_secret = text(&rotated, "secret");
    assert_ne!(new_secret, secret);
    let old_one = service.keygate_with_env(&[("KEYGATE_ADMIN_SECRET", &secret)], &["whoami"]);
    assert_eq!(old_one.code, 3, "retired at once: {old_one:?}");
    let secret = new_secret;
    let me = service
        .keygate_with_env(
            &[("KEYGATE_ADMIN_SECRET", &secret)],
            &["whoami", "-o", "json"],
        )
        .json();
    assert_eq!(me["id"], id.as_str());

    let revoked = service.json(&["tenant-admins", "revoke", &id]);
    assert_eq!(revoked["status"], "revoked");
    let refused = service.keygate_with_env(&[("KEYGATE_ADMIN_SECRET", &secret)], &["whoami"]);
    assert_eq!(refused.code, 3, "{refused:?}");

    service.keygate(&["tenant-admins", "delete", &id]).ok();
    assert_eq!(service.keygate(&["tenant-admins", "get", &id]).code, 4);
}

#[test]
fn a_tenant_admin_granting_beyond_its_permissions_exits_3() {
    let service = Service::start();
    create_role(&service, "orders-reader", "orders:read");
    let secret = text(&create_tenant_admin(&service, "orders-reader"), "secret");
    let as_tenant_admin = [("KEYGATE_ADMIN_SECRET", secret.as_str())];

    let allowed = service.keygate_with_env(
        &as_tenant_admin,
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--tenant",
            "acme",
            "--permission",
            "orders:read",
        ],
    );
    assert_eq!(allowed.code, 0, "{allowed:?}");
    let beyond = service.keygate_with_env(
        &as_tenant_admin,
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--tenant",
            "acme",
            "--permission",
            "orders:write",
        ],
    );
    assert_eq!(beyond.code, 3, "{beyond:?}");
    assert!(beyond.stderr.contains("403"), "{}", beyond.stderr);
    let tenant_admins = service.keygate_with_env(&as_tenant_admin, &["tenant-admins", "list"]);
    assert_eq!(tenant_admins.code, 3, "super admin only: {tenant_admins:?}");
}
