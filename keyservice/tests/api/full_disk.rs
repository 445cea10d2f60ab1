//! A full disk: writes answer a JSON 503, nothing already stored is lost or corrupted, and the
//! service takes writes again once space comes back. The disk is a real, tiny tmpfs, filled for
//! real, so SQLite meets a real ENOSPC. Mounting needs root (as CI has); elsewhere the test says
//! it was skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{spawn_app_with, Backend, Options, TestDb};

/// A tmpfs of `size_kib` mounted on a fresh temporary folder, unmounted on drop.
struct TinyDisk {
    dir: Arc<tempfile::TempDir>,
}

impl TinyDisk {
    fn mount(size_kib: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let uid = Command::new("id").arg("-u").output().unwrap();
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "root could not mount a tmpfs");
        Some(Self { dir: Arc::new(dir) })
    }

    /// Writes a file until the disk says it is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = [0u8; 4096];
        while file
            .write_all(&block)
            .and_then(|()| file.sync_all())
            .is_ok()
        {}
        path
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn key_body(n: usize) -> Value {
    json!({"name": format!("k{n}"), "tenant": "acme", "permissions": ["orders:read"]})
}

async fn integrity(db_path: &Path) -> String {
    let url = format!("sqlite://{}?mode=ro", db_path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn full_disk_answers_503_json_and_loses_no_stored_key() {
    let Some(disk) = TinyDisk::mount(2048) else {
        return;
    };
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            database: Some(TestDb::Sqlite(disk.dir.clone())),
            ..Options::default()
        },
    )
    .await;
    let response = app.admin_post("/v1/keys", &key_body(0)).await;
    let status = response.status();
    let stored: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let stored_secret = stored["secret"].as_str().unwrap().to_owned();

    let filler = disk.fill();
    let mut created = vec![stored_secret.clone()];
    let mut refused = None;
    for n in 1..200 {
        let response = app.admin_post("/v1/keys", &key_body(n)).await;
        match response.status() {
            StatusCode::CREATED => {
                let body: Value = response.json().await.unwrap();
                created.push(body["secret"].as_str().unwrap().to_owned());
            }
            status => {
                let body: Value = response.json().await.unwrap();
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("a full disk never refused a write");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    assert!(
        !body.to_string().contains(disk.dir.path().to_str().unwrap()),
        "the cause is logged, not echoed: {body}"
    );

    // Reads still work on a full disk, and every key acknowledged before is intact.
    for secret in &created {
        assert_eq!(app.lookup(secret).await["status"], "valid");
    }

    // Space comes back: writes work again, and the database is sound.
    std::fs::remove_file(filler).unwrap();
    let response = app.admin_post("/v1/keys", &key_body(999)).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a write after space came back: {body}"
    );
    for secret in &created {
        assert_eq!(app.lookup(secret).await["status"], "valid");
    }
    let listed: Value = app.admin_get("/v1/keys").await.json().await.unwrap();
    assert_eq!(listed["keys"].as_array().unwrap().len(), created.len() + 1);
    assert_eq!(integrity(&app.db_path()).await, "ok");
}
