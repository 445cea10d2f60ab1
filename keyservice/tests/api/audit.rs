//! The audit log: every change with who, what, where and which request; refusals and failed
//! sign-ins too; filters, paging, retention, and never a secret.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{backend_tests, error_code, rfc3339, spawn_app, start_time, Backend};

async fn every_change_is_recorded_with_actor_target_tenant_source_and_request_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .as_admin(app.client.post(app.url("/v1/keys")))
        .header("x-request-id", "req-42.a_b")
        .json(&json!({"name": "ci", "tenant": "acme", "permissions": ["orders:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-request-id"], "req-42.a_b");
    let key: Value = response.json().await.unwrap();
    let id = key["id"].as_str().unwrap();
    app.advance(1);
    app.admin_post(
        &format!("/v1/keys/{id}/rotate"),
        &json!({"grace_period_secs": 0}),
    )
    .await;
    app.admin_post(
        &format!("/v1/keys/{id}/renew"),
        &json!({"never_expires": true}),
    )
    .await;
    app.admin_post(&format!("/v1/keys/{id}/revoke"), &json!({}))
        .await;
    // A second revocation changes nothing and records nothing.
    app.admin_post(&format!("/v1/keys/{id}/revoke"), &json!({}))
        .await;
    app.admin_delete(&format!("/v1/keys/{id}")).await;

    let events = app.audit(&format!("target_id={id}")).await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "key.delete",
            "key.revoke",
            "key.renew",
            "key.rotate",
            "key.create"
        ]
    );
    let created = events.last().unwrap();
    assert_eq!(created["actor"], "admin");
    assert_eq!(created["target_type"], "key");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["source"], "127.0.0.1");
    assert_eq!(created["outcome"], "success");
    assert_eq!(created["request_id"], "req-42.a_b");
    assert_eq!(created["at"], rfc3339(start_time()));
    // Requests without an id get one, echoed and recorded.
    let generated = events[0]["request_id"].as_str().unwrap();
    assert_eq!(generated.len(), 16, "{generated}");
    assert!(events
        .windows(2)
        .all(|w| w[0]["id"].as_u64() > w[1]["id"].as_u64()));

    // Roles, clients and tenant admins alike.
    let role = app.create_role("acme", "reader", &[]).await;
    app.create_default_client().await;
    app.create_tenant_admin(&json!({"name": "a", "tenant": "acme", "permissions": []}))
        .await;
    for action in ["role.create", "client.create", "tenant_admin.create"] {
        let found = app.audit(&format!("action={action}")).await;
        assert_eq!(found.len(), 1, "{action}");
        assert_eq!(found[0]["tenant"], "acme");
    }
    assert_eq!(
        app.audit("action=role.create").await[0]["target_id"],
        role["id"]
    );
}

async fn refusals_are_recorded_with_their_outcome(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app
        .create_tenant_admin(
            &json!({"name": "a", "tenant": "acme", "permissions": ["orders:read"]}),
        )
        .await;
    let secret = admin["secret"].as_str().unwrap();
    let admin_id = admin["id"].as_str().unwrap();
    let globex = app
        .create_key(&json!({"name": "g", "tenant": "globex", "permissions": []}))
        .await;
    let revoked = app.create_default_key().await;
    let revoked_id = revoked["id"].as_str().unwrap();
    app.admin_post(&format!("/v1/keys/{revoked_id}/revoke"), &json!({}))
        .await;

    let over = json!({"name": "x", "tenant": "acme", "permissions": ["admin"]});
    app.call(secret, Method::POST, "/v1/keys", Some(&over))
        .await;
    let globex_id = globex["id"].as_str().unwrap();
    app.call(
        secret,
        Method::POST,
        &format!("/v1/keys/{globex_id}/revoke"),
        None,
    )
    .await;
    app.admin_post(&format!("/v1/keys/{revoked_id}/renew"), &json!({}))
        .await;
    app.admin_post(
        "/v1/keys",
        &json!({"name": "", "tenant": "acme", "permissions": []}),
    )
    .await;

    let by_admin = app.audit(&format!("actor={admin_id}")).await;
    let outcomes: Vec<(&str, &str)> = by_admin
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [("key.revoke", "not_found"), ("key.create", "denied")]
    );
    // The other tenant's name is not given away in a tenant admin's failed probe.
    assert_eq!(by_admin[0]["tenant"], Value::Null);
    assert_eq!(by_admin[1]["tenant"], "acme");
    let renew = app.audit("action=key.renew").await;
    assert_eq!(renew[0]["outcome"], "conflict");
    let invalid = app.audit("action=key.create&actor=admin").await;
    assert_eq!(invalid[0]["outcome"], "invalid");
    // The globex key is untouched.
    let after: Value = app
        .admin_get(&format!("/v1/keys/{globex_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["status"], "active");
}

async fn failed_sign_ins_are_recorded_but_a_flood_cannot_fill_the_disk(backend: Backend) {
    let app = spawn_app(backend).await;
    for _ in 0..75 {
        let response = app.call("kgta_guess", Method::GET, "/v1/keys", None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let cap = keygate_keyservice::audit::FAILURES_PER_WINDOW as usize;
    let recorded = app.audit("action=auth.failure&limit=500").await;
    assert_eq!(recorded.len(), cap);
    assert_eq!(recorded[0]["actor"], "anonymous");
    assert_eq!(recorded[0]["outcome"], "failure");
    // The next minute records again.
    app.advance(60);
    app.call("wrong", Method::GET, "/v1/keys", None).await;
    assert_eq!(
        app.audit("action=auth.failure&limit=500").await.len(),
        cap + 1
    );

    // A failed token request is recorded with the client as actor, when it names one.
    let client = app.create_default_client().await;
    let response = app
        .token_request(
            Some((client["client_id"].as_str().unwrap(), "kgcs_wrong")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let failures = app.audit("action=token.failure").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["actor"], client["client_id"]);
    assert_eq!(failures[0]["tenant"], "acme");
}

async fn the_log_filters_pages_and_keeps_no_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut secrets = vec![app.admin_secret.clone()];
    for i in 0..7 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        let key = app
            .create_key(&json!({"name": format!("k{i}"), "tenant": tenant, "permissions": []}))
            .await;
        secrets.push(key["secret"].as_str().unwrap().to_owned());
        app.advance(10);
    }
    let client = app.create_default_client().await;
    secrets.push(client["client_secret"].as_str().unwrap().to_owned());
    let admin = app
        .create_tenant_admin(&json!({"name": "a", "tenant": "acme", "permissions": []}))
        .await;
    secrets.push(admin["secret"].as_str().unwrap().to_owned());
    let rotated: Value = app
        .admin_post(
            &format!(
                "/v1/keys/{}/rotate",
                app.audit("action=key.create").await[0]["target_id"]
                    .as_str()
                    .unwrap()
            ),
            &json!({"grace_period_secs": 0}),
        )
        .await
        .json()
        .await
        .unwrap();
    secrets.push(rotated["secret"].as_str().unwrap().to_owned());
    app.call(&secrets[1], Method::GET, "/v1/keys", None).await;

    // Pages of 3, newest first, following `next` to the end, cover the whole log once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(cursor) => format!("/v1/audit?limit=3&after={cursor}"),
            None => "/v1/audit?limit=3".to_owned(),
        };
        let page: Value = app.admin_get(&query).await.json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 3);
        seen.extend(events.iter().cloned());
        match page["next"].as_str() {
            Some(cursor) => after = Some(cursor.to_owned()),
            None => break,
        }
    }
    let all = app.audit("limit=500").await;
    assert_eq!(seen, all);
    assert_eq!(all.len(), 7 + 1 + 1 + 1 + 1);
    let text = serde_json::to_string(&all).unwrap();
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret is in the audit log"
        );
    }

    assert_eq!(app.audit("tenant=globex").await.len(), 3);
    assert_eq!(app.audit("tenant=acme&action=key.create").await.len(), 4);
    let since = rfc3339(start_time() + time::Duration::seconds(20));
    let until = rfc3339(start_time() + time::Duration::seconds(40));
    let window = app
        .audit(&format!("since={since}&until={until}&action=key.create"))
        .await;
    assert_eq!(window.len(), 3);

    for bad in [
        "limit=0",
        "limit=501",
        "after=abc",
        "after=0",
        "since=yesterday",
        "tenant=a%20b",
        "color=red",
    ] {
        let response = app.admin_get(&format!("/v1/audit?{bad}")).await;
        assert_eq!(
            error_code(response, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{bad}"
        );
    }
    let response = app.call("nope", Method::GET, "/v1/audit", None).await;
    assert_eq!(
        error_code(response, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
}

async fn events_are_append_only_written_with_the_change_and_trimmed_after_retention(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let key = app.create_default_key().await;
    let id = key["id"].as_str().unwrap();
    let refused = app
        .database
        .try_execute("UPDATE audit_events SET actor = 'someone else'")
        .await;
    assert!(refused.unwrap_err().contains("append-only"));

    // Without the audit table, a change cannot be made: the record and the change are one.
    app.database
        .execute("ALTER TABLE audit_events RENAME TO audit_events_gone")
        .await;
    let response = app
        .admin_post(&format!("/v1/keys/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    app.database
        .execute("ALTER TABLE audit_events_gone RENAME TO audit_events")
        .await;
    let after: Value = app
        .admin_get(&format!("/v1/keys/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["status"], "active");
    assert_eq!(
        app.lookup(key["secret"].as_str().unwrap()).await["status"],
        "valid"
    );

    // Retention: 90 days by default.
    app.advance(89 * 24 * 60 * 60);
    app.create_default_key().await;
    assert_eq!(app.state.trim_audit_log().await.unwrap(), 0);
    app.advance(2 * 24 * 60 * 60);
    assert_eq!(app.state.trim_audit_log().await.unwrap(), 1);
    let left = app.audit("").await;
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0]["at"],
        rfc3339(start_time() + time::Duration::days(89))
    );
}

backend_tests!(
    every_change_is_recorded_with_actor_target_tenant_source_and_request_id,
    refusals_are_recorded_with_their_outcome,
    failed_sign_ins_are_recorded_but_a_flood_cannot_fill_the_disk,
    the_log_filters_pages_and_keeps_no_secret,
    events_are_append_only_written_with_the_change_and_trimmed_after_retention,
);
