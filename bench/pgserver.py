"""PostgreSQL for the key service benchmark (bench/bench.py keyservice_alone): a throwaway
cluster of the run's own, or the server BENCH_DATABASE_URL names.

The throwaway cluster is made with Debian's `initdb` in a temporary folder and runs as one
`postgres` process started here (so it is pinned like any other Proc, and stopped by its pid),
listening on a free port of 127.0.0.1, with its Unix socket in its own folder. It is configured as
a production server would be for durability: fsync, synchronous_commit and full_page_writes on
(the defaults), so a key creation waits for its WAL flush as it would in production; memory sized
for the data (shared_buffers 1 GB, the 1M-key tables fit). PostgreSQL refuses to run as root, so
under root its commands run as the `postgres` user.

Databases are made and dropped with `psql`.
"""

from __future__ import annotations

import os
import pwd
import signal
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

from harness import BenchError, Proc, free_port

#: Server settings of the throwaway cluster, beside port, socket folder and listen address. The
#: durability settings are PostgreSQL's defaults, written out so the report can list them.
SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "1GB",
    "effective_cache_size": "4GB",
    "work_mem": "16MB",
    "max_connections": "100",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "wal_compression": "on",
    "jit": "off",
}

#: What the report shows of the server actually serving the run (`SHOW name`).
SHOWN = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method",
         "shared_buffers", "max_connections", "max_wal_size", "checkpoint_timeout", "jit")


def _bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    if not versions:
        raise BenchError("PostgreSQL's initdb not found (apt-get install postgresql), and "
                         "BENCH_DATABASE_URL is not set")
    return versions[-1].parent


def _as_postgres() -> dict:
    """Popen arguments that run a command as the `postgres` user when this process is root."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


class PgServer:
    """A PostgreSQL server to make the benchmark's databases on: `url_of(name)` connects to one."""

    def __init__(self, admin_url: str, proc: Proc | None, folder: Path | None):
        #: A URL of a database to run `CREATE DATABASE` from.
        self.admin_url = admin_url
        #: The throwaway cluster's postmaster, None for BENCH_DATABASE_URL.
        self.proc = proc
        self.folder = folder

    @staticmethod
    def start(work: Path, cpu: str) -> "PgServer":
        """BENCH_DATABASE_URL's server when set, else a throwaway cluster pinned to `cpu`."""
        url = os.environ.get("BENCH_DATABASE_URL")
        if url:
            return PgServer(url, None, None)
        bin_dir = _bin_dir()
        # Not inside `work`: that folder is private to this user, and the server runs as another.
        folder = Path(tempfile.mkdtemp(prefix="keygate-bench-pg-"))
        data, sock = folder / "data", folder / "sock"
        data.mkdir()
        sock.mkdir()
        as_pg = _as_postgres()
        if as_pg:
            for path in (folder, data, sock):
                os.chown(path, as_pg["user"], as_pg["group"])
        out = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL, **as_pg)
        if out.returncode != 0:
            raise BenchError(f"initdb failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        port = free_port()
        argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sock}"]
        for name, value in SETTINGS.items():
            argv += ["-c", f"{name}={value}"]
        # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients to leave.
        proc = Proc("postgres", argv, work / "postgres.log", cpu=cpu, stop_signal=signal.SIGINT,
                    **as_pg)
        server = PgServer(f"postgres://postgres@127.0.0.1:{port}/postgres", proc, folder)
        deadline = time.monotonic() + 60
        while server._try_psql("SELECT 1").returncode != 0:
            if not proc.alive():
                raise BenchError(f"postgres exited at start-up; its log ends:\n{proc.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"postgres not up after 60 s; its log ends:\n{proc.log_tail()}")
            time.sleep(0.2)
        return server

    def url_of(self, database: str) -> str:
        parts = urllib.parse.urlsplit(self.admin_url)
        return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))

    def _try_psql(self, sql: str, database: str | None = None) -> subprocess.CompletedProcess:
        url = self.url_of(database) if database else self.admin_url
        return subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url,
                               "-c", sql], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)

    def psql(self, sql: str, database: str | None = None) -> str:
        out = self._try_psql(sql, database)
        if out.returncode != 0:
            raise BenchError(f"psql {sql!r} failed: {out.stderr.strip()[-1000:]}")
        return out.stdout.strip()

    def fresh_database(self, name: str) -> str:
        """An empty database `name` (dropped first if a previous run left it); its URL."""
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.psql(f"CREATE DATABASE {name}")
        return self.url_of(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def analyze(self, database: str) -> None:
        """Table statistics and the visibility map after a bulk load, as autovacuum would make
        them in time."""
        self.psql("VACUUM ANALYZE", database)

    def describe(self) -> dict:
        """The server's settings that matter to the figures, for the report."""
        out = {name: self.psql(f"SHOW {name}") for name in SHOWN}
        out["cluster"] = ("throwaway (initdb in a temporary folder)" if self.proc
                          else "BENCH_DATABASE_URL")
        return out

    def cpu_seconds(self) -> float | None:
        """CPU time of the whole cluster (postmaster and every backend) so far; None when the
        server is not ours."""
        if self.proc is None:
            return None
        total = _pid_cpu(self.proc.pid, reaped=True)
        for pid in _children(self.proc.pid):
            try:
                total += _pid_cpu(pid)
            except OSError:
                pass  # a backend that just ended: the postmaster's reaped time has it
        return total

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _pid_cpu(pid: int, reaped: bool = False) -> float:
    """utime + stime of `pid`, plus those of its reaped children (cutime + cstime) if `reaped`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")
