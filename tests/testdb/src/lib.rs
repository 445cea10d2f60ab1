//! keygate-testdb: a fresh PostgreSQL database for each test that needs one.
//!
//! [`TestDatabase::create`] makes a database `kg_<unique>` and drops it again when the value is
//! dropped. The cluster it lives on is, once per test process:
//! - `KEYGATE_TEST_DATABASE_URL` when set (`postgres://postgres@127.0.0.1:5432/test`): a
//!   database on that server the URL's user can `CREATE DATABASE` from;
//! - otherwise a throwaway cluster of this process's own: `initdb` and `pg_ctl` (from `PATH` or
//!   Debian's `/usr/lib/postgresql/<version>/bin`) in a temporary folder, listening on a free
//!   port of 127.0.0.1 with its Unix socket in that folder, trust auth, no fsync. A watchdog shell
//!   stops it and removes the folder once this process has exited. PostgreSQL refuses to run as
//!   root, so under root every PostgreSQL command runs as the `postgres` user (`runuser`).
//!
//! Databases are made and dropped with `psql`, so this crate needs nothing but std and is usable
//! from any test, async or not. Failures panic with what went wrong: it is test support.
//!
//! [`PgCluster`] is a throwaway cluster of a test's own, for tests that stop and restart
//! PostgreSQL.
//!
//! # Layout
//! One file: [`TestDatabase`], the process's cluster (`Cluster`), [`PgCluster`], the tool lookup.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The server every [`TestDatabase`] of the process is created on.
pub const TEST_DATABASE_URL_ENV: &str = "KEYGATE_TEST_DATABASE_URL";

/// A database of its own for one test, dropped (with `FORCE`) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database on the process's cluster, starting that first if needed.
    pub fn create() -> Self {
        let cluster = Cluster::get();
        let name = unique_name();
        cluster.psql(&format!("CREATE DATABASE {name}"));
        let url = cluster.url_of(&name);
        Self { name, url }
    }

    /// A new database holding what this one holds now (`CREATE DATABASE … TEMPLATE`): a cold
    /// backup. Nobody may be connected to this one meanwhile.
    pub fn copy(&self) -> Self {
        let cluster = Cluster::get();
        let name = unique_name();
        cluster.psql(&format!("CREATE DATABASE {name} TEMPLATE {}", self.name));
        let url = cluster.url_of(&name);
        Self { name, url }
    }

    /// `postgres://…/kg_<unique>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(cluster) = CLUSTER.get() {
            // Best effort: a failing drop must not turn a passing test into a panic.
            let _ = cluster.try_psql(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "kg_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// Where the process's [`TestDatabase`]s live.
struct Cluster {
    /// A URL to a database of the cluster to run `CREATE DATABASE` from.
    admin_url: String,
    psql: PathBuf,
    /// The throwaway cluster, when there is no `KEYGATE_TEST_DATABASE_URL`. Never dropped (a
    /// static): its watchdog stops it.
    _own: Option<PgCluster>,
}

impl Cluster {
    fn get() -> &'static Cluster {
        CLUSTER.get_or_init(|| match std::env::var(TEST_DATABASE_URL_ENV) {
            Ok(url) if !url.is_empty() => Cluster {
                admin_url: url,
                psql: tool("psql"),
                _own: None,
            },
            _ => {
                let own = PgCluster::start();
                Cluster {
                    admin_url: own.admin_url(),
                    psql: own.psql.clone(),
                    _own: Some(own),
                }
            }
        })
    }

    /// The admin URL with its database name replaced by `name`.
    fn url_of(&self, name: &str) -> String {
        url_with_database(&self.admin_url, name)
    }

    fn psql(&self, sql: &str) {
        if let Err(e) = psql(&self.psql, &self.admin_url, sql) {
            panic!("{e}");
        }
    }

    fn try_psql(&self, sql: &str) -> Result<(), String> {
        psql(&self.psql, &self.admin_url, sql)
    }
}

/// `url` with its database name replaced by `name`, its query kept.
fn url_with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("{url:?} is not a URL"));
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, format!("?{query}")),
        None => (rest, String::new()),
    };
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    format!("{scheme}://{authority}/{name}{query}")
}

fn psql(program: &Path, url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new(program)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A throwaway PostgreSQL cluster: its own folder, port and server process, which a test may
/// stop and start again (failure injection). Stopped and removed when dropped, and by a watchdog
/// once the test process has exited, however it ends.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
    pg_ctl: PathBuf,
    psql: PathBuf,
}

impl PgCluster {
    /// `initdb`, then starts the server on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let initdb = tool("initdb");
        let as_postgres = running_as_root();
        let dir = std::env::temp_dir().join(format!("keygate-pg-{}", unique_name()));
        std::fs::create_dir_all(&dir).expect("create the cluster folder");
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&dir);
            run(chown, "chown postgres");
        }
        let data = dir.join("data");
        let mut init = pg_command(&initdb, as_postgres);
        init.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        run(init, "initdb");
        let cluster = Self {
            dir,
            data,
            port: free_port(),
            as_postgres,
            pg_ctl: tool("pg_ctl"),
            psql: tool("psql"),
        };
        cluster.start_server();
        cluster.watch();
        cluster
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        if let Err(e) = psql(
            &self.psql,
            &self.admin_url(),
            &format!("CREATE DATABASE {name}"),
        ) {
            panic!("{e}");
        }
        url_with_database(&self.admin_url(), name)
    }

    /// Stops the server (`-m fast`: rolls back open transactions and cuts every connection, as
    /// a restart by an operator does). Data stays.
    pub fn stop_server(&self) {
        let mut stop = pg_command(&self.pg_ctl, self.as_postgres);
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"]);
        run(stop, "pg_ctl stop");
    }

    /// Starts the server again, on the same port.
    pub fn start_server(&self) {
        let mut start = pg_command(&self.pg_ctl, self.as_postgres);
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=500",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        run(start, "pg_ctl start");
    }

    /// Stops the cluster once this process is gone (tests have no reliable exit hook). Detached
    /// from the test's output, so the test runner does not wait for it.
    // Never waited for: it outlives this process by design.
    #[allow(clippy::zombie_processes)]
    fn watch(&self) {
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {runas}{pg_ctl} -D '{data}' -m immediate stop; rm -rf '{dir}'",
            pid = std::process::id(),
            runas = if self.as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl = self.pg_ctl.display(),
            data = self.data.display(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster's watchdog");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut stop = pg_command(&self.pg_ctl, self.as_postgres);
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL program: from `PATH`, else the newest of Debian's versioned folders.
fn tool(name: &str) -> PathBuf {
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if let Some(path) = in_path {
        return path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .iter()
        .rev()
        .map(|v| v.join("bin").join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no `{name}`: install PostgreSQL (Debian: apt-get install postgresql) or set \
                 {TEST_DATABASE_URL_ENV}"
            )
        })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when this process is root.
fn pg_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_the_server_and_query_and_swap_the_name() {
        assert_eq!(
            url_with_database(
                "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
                "kg_1"
            ),
            "postgres://postgres@127.0.0.1:5432/kg_1?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432", "kg_2"),
            "postgres://postgres@127.0.0.1:5432/kg_2"
        );
    }
}
