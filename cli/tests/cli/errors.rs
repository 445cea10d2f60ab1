//! Exit codes and the handling of the secret.

use crate::helpers::{keygate, secret_file, Service, ADMIN_SECRET};

#[test]
fn a_wrong_secret_exits_3_with_the_services_message_and_without_the_secret() {
    let service = Service::start();
    let wrong = "not-the-admin-secret";
    let run = service.keygate_with_env(&[("KEYGATE_ADMIN_SECRET", wrong)], &["keys", "list"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    assert!(run.stderr.contains("unauthorized"), "{}", run.stderr);
    assert!(
        !run.stderr.contains(wrong) && !run.stdout.contains(wrong),
        "{run:?}"
    );
}

#[test]
fn an_unknown_id_exits_4() {
    let service = Service::start();
    for args in [
        ["keys", "get", "key_0000000000000000"],
        ["keys", "revoke", "key_0000000000000000"],
        ["clients", "delete", "kgc_0000000000000000"],
    ] {
        let run = service.keygate(&args);
        assert_eq!(run.code, 4, "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("keygate: "), "{}", run.stderr);
    }
}

#[test]
fn an_id_with_a_slash_stays_one_path_segment() {
    let service = Service::start();
    let run = service.keygate(&["keys", "get", "../clients"]);
    assert_eq!(run.code, 4, "{run:?}");
}

#[test]
fn a_service_that_is_down_exits_5() {
    let service = Service::start();
    let url = service.url.clone();
    service.stop();
    let run = keygate(
        &[
            ("KEYGATE_URL", &url),
            ("KEYGATE_ADMIN_SECRET", ADMIN_SECRET),
        ],
        &["keys", "list"],
    );
    assert_eq!(run.code, 5, "{run:?}");
    assert!(
        run.stderr.contains("cannot reach the key service"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_flags_and_values_exit_2_before_any_request() {
    // No service at all: a usage error must not need one.
    let env = [
        ("KEYGATE_URL", "http://127.0.0.1:9"),
        ("KEYGATE_ADMIN_SECRET", ADMIN_SECRET),
    ];
    for args in [
        vec!["keys", "frobnicate"],
        vec!["keys", "create", "--tenant", "acme"],
        vec!["keys", "renew", "kid", "--expires-in", "soon"],
        vec!["keys", "rotate", "kid"],
        vec!["audit", "list", "--limit", "0"],
        vec!["audit", "list", "--since", "yesterday"],
        vec!["--output", "yaml", "whoami"],
        vec!["--url", "https://keys.example.com", "whoami"],
    ] {
        let run = keygate(&env, &args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
    }
}

#[test]
fn the_secret_is_not_accepted_as_a_flag() {
    let service = Service::start();
    for flag in ["--secret", "--admin-secret", "--token"] {
        let run = service.keygate_with_env(&[], &[flag, ADMIN_SECRET, "keys", "list"]);
        assert_eq!(run.code, 2, "{flag}: {run:?}");
    }
}

#[test]
fn no_secret_exits_2_and_names_where_to_put_it() {
    let service = Service::start();
    let run = service.keygate_with_env(&[], &["keys", "list"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("KEYGATE_ADMIN_SECRET"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--secret-file"), "{}", run.stderr);
}

#[test]
fn the_secret_file_gives_the_secret_and_wins_over_the_variable() {
    let service = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let path = secret_file(dir.path(), &format!("{ADMIN_SECRET}\n"), 0o600);
    let path = path.to_str().unwrap();
    let run = service.keygate_with_env(
        &[("KEYGATE_ADMIN_SECRET", "a-wrong-one")],
        &["keys", "list", "--secret-file", path],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = service.keygate_with_env(&[("KEYGATE_SECRET_FILE", path)], &["keys", "list"]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[cfg(unix)]
#[test]
fn a_secret_file_readable_by_others_is_refused_with_exit_2() {
    let service = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let path = secret_file(dir.path(), ADMIN_SECRET, 0o644);
    let run = service.keygate_with_env(
        &[],
        &["keys", "list", "--secret-file", path.to_str().unwrap()],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("chmod 600"), "{}", run.stderr);
    assert!(!run.stderr.contains(ADMIN_SECRET), "{}", run.stderr);
}

#[test]
fn a_server_refusal_of_a_bad_value_exits_4_with_its_message() {
    let service = Service::start();
    let run = service.keygate(&[
        "keys",
        "create",
        "--name",
        "ci",
        "--tenant",
        "not a tenant!",
    ]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("bad_request"), "{}", run.stderr);
}

#[test]
fn a_service_that_never_answers_exits_5_after_the_timeout() {
    // Connections complete in the kernel's backlog, and nothing ever reads them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let run = keygate(
        &[
            ("KEYGATE_URL", &url),
            ("KEYGATE_ADMIN_SECRET", ADMIN_SECRET),
        ],
        &["keys", "list", "--timeout", "1"],
    );
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("within 1 s"), "{}", run.stderr);
}
