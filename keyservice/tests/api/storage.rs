use serde_json::Value;
use sqlx::Connection;

use crate::helpers::{spawn_app, Backend};

/// Every file SQLite keeps for the database: the main file, the WAL and its index.
fn database_files(db_path: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db_path.display());
        if let Ok(content) = std::fs::read(path) {
            bytes.extend(content);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn database_file_holds_no_raw_key() {
    let app = spawn_app(Backend::Sqlite).await;
    let key = app.create_default_key().await;
    let id = key["id"].as_str().unwrap();
    let rotated: Value = app
        .admin_post(
            &format!("/v1/keys/{id}/rotate"),
            &serde_json::json!({"grace_period_secs": 60}),
        )
        .await
        .json()
        .await
        .unwrap();
    let secrets = [
        key["secret"].as_str().unwrap().to_owned(),
        rotated["secret"].as_str().unwrap().to_owned(),
        app.admin_secret.clone(),
    ];
    let db_path = app.db_path();

    let check = |when: &str| {
        let bytes = database_files(&db_path);
        assert!(!bytes.is_empty());
        assert!(
            contains(&bytes, id),
            "sanity: the key id is stored ({when})"
        );
        for secret in &secrets {
            // The random part alone: no prefix, no checksum.
            let random = &secret[secret.len() - 48..secret.len() - 8];
            assert!(
                !contains(&bytes, random),
                "a raw secret is in the database files ({when})"
            );
        }
    };
    check("while running");
    let _dir = app.stop().await;
    check("after shutdown");
}

#[tokio::test]
async fn database_is_created_with_parent_folders_in_wal_mode() {
    let app = spawn_app(Backend::Sqlite).await;
    assert!(app.db_path().exists());
    let url = format!("sqlite://{}", app.db_path().display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    db.close().await.unwrap();
}
