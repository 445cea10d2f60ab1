use keygate_keyservice::signing::SigningAlg;
use reqwest::StatusCode;
use serde_json::{json, Value};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::helpers::{
    backend_tests, error_code, jwt_part, oauth_error, spawn_app, spawn_app_with, verify_token,
    Backend, Options, ISSUER, START_UNIX, TOKEN_AUDIENCE, TOKEN_TTL_SECS,
};

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

/// HTTP Basic client id and secret.
type Basic<'a> = (&'a str, &'a str);
/// A form parameter.
type Param<'a> = (&'a str, &'a str);

fn id_and_secret(client: &Value) -> (&str, &str) {
    (
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap(),
    )
}

async fn token_by_http_basic_is_an_rfc_9068_jwt_for_the_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let (id, secret) = id_and_secret(&client);

    let response = app.token_request(Some((id, secret)), &[GRANT]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], TOKEN_TTL_SECS);
    assert_eq!(body["scope"], "orders:read orders:write");
    let token = body["access_token"].as_str().unwrap();

    let jwks = app.jwks().await;
    let kid = jwks["keys"][0]["kid"].as_str().unwrap();
    let header = jwt_part(token, 0);
    assert_eq!(header, json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}));
    let claims = jwt_part(token, 1);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert_eq!(jti.len(), 32);
    assert_eq!(
        claims,
        json!({
            "iss": ISSUER,
            "sub": id,
            "aud": TOKEN_AUDIENCE,
            "exp": START_UNIX + TOKEN_TTL_SECS as i64,
            "iat": START_UNIX,
            "jti": jti,
            "client_id": id,
            "tenant": "acme",
            "permissions": ["orders:read", "orders:write"],
            "scope": "orders:read orders:write",
        })
    );

    let verified = verify_token(token, &jwks, START_UNIX).unwrap();
    assert_eq!(verified.subject, id);
    assert_eq!(verified.tenant.as_deref(), Some("acme"));
    assert_eq!(verified.permissions, ["orders:read", "orders:write"]);
    assert_eq!(verified.kid.as_deref(), Some(kid));

    // A second token has its own id.
    let again = app.token_for(&client, &[]).await;
    let again = jwt_part(again["access_token"].as_str().unwrap(), 1);
    assert_ne!(again["jti"], claims["jti"]);
}

async fn token_by_client_secret_in_the_body_works_too(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let (id, secret) = id_and_secret(&client);
    let response = app
        .token_request(None, &[GRANT, ("client_id", id), ("client_secret", secret)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let verified = verify_token(
        body["access_token"].as_str().unwrap(),
        &app.jwks().await,
        START_UNIX,
    )
    .unwrap();
    assert_eq!(verified.subject, id);
}

async fn issued_tokens_verify_for_every_signing_algorithm(backend: Backend) {
    for (alg, kty) in [
        (SigningAlg::EdDsa, "OKP"),
        (SigningAlg::Es256, "EC"),
        (SigningAlg::Rs256, "RSA"),
    ] {
        let app = spawn_app_with(
            backend,
            Options {
                signing_alg: alg,
                ..Options::default()
            },
        )
        .await;
        let client = app.create_default_client().await;
        let body = app.token_for(&client, &[]).await;
        let token = body["access_token"].as_str().unwrap();
        let jwks = app.jwks().await;
        assert_eq!(jwks["keys"][0]["kty"], kty);
        assert_eq!(jwks["keys"][0]["alg"], alg.name());
        assert_eq!(jwt_part(token, 0)["alg"], alg.name());
        assert_eq!(jwt_part(token, 0)["typ"], "at+jwt");
        let verified = verify_token(token, &jwks, START_UNIX + 10).unwrap();
        assert_eq!(
            verified.subject,
            client["client_id"].as_str().unwrap(),
            "{alg}"
        );
    }
}

async fn wrong_secret_or_unknown_client_is_401_invalid_client_with_a_basic_challenge(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let (id, secret) = id_and_secret(&client);
    let wrong = format!("{secret}x");
    let attempts: [(Option<Basic>, Vec<Param>); 5] = [
        (Some((id, &wrong)), vec![GRANT]),
        (Some(("kgc_0000000000000000", secret)), vec![GRANT]),
        (Some(("not-a-client-id", secret)), vec![GRANT]),
        (
            None,
            vec![GRANT, ("client_id", id), ("client_secret", &wrong)],
        ),
        (None, vec![GRANT, ("client_id", id)]),
    ];
    for (basic, form) in attempts {
        let response = app.token_request(basic, &form).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Basic realm=\"keygate\""
        );
        assert_eq!(
            oauth_error(response, StatusCode::UNAUTHORIZED).await,
            "invalid_client",
            "{basic:?} {form:?}"
        );
    }
    let response = app
        .client
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .bearer_auth(secret)
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(
        oauth_error(response, StatusCode::UNAUTHORIZED).await,
        "invalid_client"
    );
}

async fn both_client_authentication_methods_at_once_is_invalid_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let (id, secret) = id_and_secret(&client);
    let response = app
        .token_request(
            Some((id, secret)),
            &[GRANT, ("client_id", id), ("client_secret", secret)],
        )
        .await;
    assert_eq!(
        oauth_error(response, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
}

async fn malformed_token_requests_are_invalid_request_or_unsupported_grant_type(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let creds = Some(id_and_secret(&client));

    let response = app.token_request(creds, &[]).await;
    assert_eq!(
        oauth_error(response, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
    let response = app
        .token_request(creds, &[("grant_type", "password")])
        .await;
    assert_eq!(
        oauth_error(response, StatusCode::BAD_REQUEST).await,
        "unsupported_grant_type"
    );
    let response = app.token_request(creds, &[GRANT, GRANT]).await;
    assert_eq!(
        oauth_error(response, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
    let response = app
        .token_request(creds, &[GRANT, ("audience", "someone-else")])
        .await;
    assert_eq!(
        oauth_error(response, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
    let (id, secret) = id_and_secret(&client);
    let response = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        oauth_error(response, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
    // The configured audience, named explicitly, is fine.
    let response = app
        .token_request(creds, &[GRANT, ("audience", TOKEN_AUDIENCE)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn requested_scope_narrows_the_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let body = app.token_for(&client, &[("scope", "orders:read")]).await;
    assert_eq!(body["scope"], "orders:read");
    let token = body["access_token"].as_str().unwrap();
    let claims = jwt_part(token, 1);
    assert_eq!(claims["permissions"], json!(["orders:read"]));
    assert_eq!(claims["scope"], "orders:read");
    let verified = verify_token(token, &app.jwks().await, START_UNIX).unwrap();
    assert_eq!(verified.permissions, ["orders:read"]);
}

async fn scope_the_client_does_not_hold_is_invalid_scope(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let creds = Some(id_and_secret(&client));
    for scope in ["orders:read admin", "admin", "orders:read  orders:write"] {
        let response = app.token_request(creds, &[GRANT, ("scope", scope)]).await;
        assert_eq!(
            oauth_error(response, StatusCode::BAD_REQUEST).await,
            "invalid_scope",
            "{scope}"
        );
    }
}

async fn revoked_or_expired_clients_cannot_get_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let revoked = app.create_default_client().await;
    let expiring = app
        .create_client(&json!({
            "name": "short", "tenant": "acme", "permissions": [], "expires_in_secs": 100,
        }))
        .await;
    app.admin_post(
        &format!(
            "/v1/clients/{}/revoke",
            revoked["client_id"].as_str().unwrap()
        ),
        &json!({}),
    )
    .await;
    let response = app
        .token_request(Some(id_and_secret(&revoked)), &[GRANT])
        .await;
    assert_eq!(
        oauth_error(response, StatusCode::UNAUTHORIZED).await,
        "invalid_client"
    );

    // Before expiry, the token is cut to the client's remaining lifetime.
    app.advance(40);
    let body = app.token_for(&expiring, &[]).await;
    assert_eq!(body["expires_in"], 60);
    assert_eq!(
        jwt_part(body["access_token"].as_str().unwrap(), 1)["exp"],
        START_UNIX + 100
    );
    app.advance(60);
    let response = app
        .token_request(Some(id_and_secret(&expiring)), &[GRANT])
        .await;
    assert_eq!(
        oauth_error(response, StatusCode::UNAUTHORIZED).await,
        "invalid_client"
    );
}

async fn repeated_failures_lock_the_client_until_the_window_passes(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let (id, secret) = id_and_secret(&client);
    let wrong = format!("{secret}x");
    for _ in 0..5 {
        let response = app.token_request(Some((id, &wrong)), &[GRANT]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    app.advance(20);
    // Locked: even the right secret is refused, and the answer says when to come back.
    let response = app.token_request(Some((id, secret)), &[GRANT]).await;
    assert_eq!(response.headers()["retry-after"], "40");
    assert_eq!(
        oauth_error(response, StatusCode::TOO_MANY_REQUESTS).await,
        "slow_down"
    );
    // Another client from the same address is not locked (the per-address limit is higher).
    let other = app.create_default_client().await;
    app.token_for(&other, &[]).await;

    app.advance(40);
    let response = app.token_request(Some((id, secret)), &[GRANT]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn folded_basic_authorization_is_invalid_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let (id, secret) = id_and_secret(&client);
    let basic = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    let response = app
        .client
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("{basic}, {basic}"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(
        oauth_error(response, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
}

async fn token_request_with_thousands_of_parameters_is_invalid_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let mut form: Vec<(String, String)> =
        (0..2_000).map(|i| (format!("p{i}"), "v".into())).collect();
    form.push(("grant_type".into(), "client_credentials".into()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let response = app.token_request(Some(id_and_secret(&client)), &form).await;
    assert_eq!(
        oauth_error(response, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );
}

async fn token_request_body_over_the_limit_is_413_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let (id, secret) = id_and_secret(&client);
    // 100 000 parameters: refused by size before any parsing.
    let body = (0..100_000)
        .map(|i| format!("p{i}="))
        .collect::<Vec<_>>()
        .join("&");
    let response = app
        .client
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth(id, Some(secret))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
}

/// A client bound to `ip` (any 127.0.0.0/8 address reaches the service on Linux), so tests can
/// speak from several sources.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

async fn failures_from_one_source_never_lock_the_client_out_for_another(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.create_default_client().await;
    let (id, secret) = id_and_secret(&client);
    let wrong = format!("{secret}x");
    let (attacker, owner) = (client_from([127, 0, 0, 2]), client_from([127, 0, 0, 3]));
    let token_request = |from: &reqwest::Client, secret: &str| {
        from.post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .basic_auth(id, Some(secret))
            .body("grant_type=client_credentials")
            .send()
    };
    let mut throttled = 0;
    for _ in 0..30 {
        let response = token_request(&attacker, &wrong).await.unwrap();
        match response.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // The attacker is throttled, even when it finally sends the right secret...
    assert!(throttled >= 20, "only {throttled} of 30 throttled");
    let response = token_request(&attacker, secret).await.unwrap();
    assert_eq!(
        oauth_error(response, StatusCode::TOO_MANY_REQUESTS).await,
        "slow_down"
    );
    // ...while the owner, from another address, gets its token at once.
    let response = token_request(&owner, secret).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

backend_tests!(
    token_by_http_basic_is_an_rfc_9068_jwt_for_the_client,
    token_by_client_secret_in_the_body_works_too,
    issued_tokens_verify_for_every_signing_algorithm,
    wrong_secret_or_unknown_client_is_401_invalid_client_with_a_basic_challenge,
    both_client_authentication_methods_at_once_is_invalid_request,
    malformed_token_requests_are_invalid_request_or_unsupported_grant_type,
    requested_scope_narrows_the_token,
    scope_the_client_does_not_hold_is_invalid_scope,
    revoked_or_expired_clients_cannot_get_tokens,
    repeated_failures_lock_the_client_until_the_window_passes,
    folded_basic_authorization_is_invalid_request,
    token_request_with_thousands_of_parameters_is_invalid_request,
    token_request_body_over_the_limit_is_413_json,
    failures_from_one_source_never_lock_the_client_out_for_another,
);
