"""Processes and measurements for bench/bench.py: Envoy, the key service and wrk, each pinned to
a CPU, and what the kernel says each process spent (/proc/<pid>/stat, /proc/<pid>/status).

Only processes started here are ever stopped, by their own pid.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Envoy gets CPU 0 to itself; the load generator (and the key service, when a row calls it) share
# CPU 1.
ENVOY_CPU = "0"
LOAD_CPU = "1"

_running: list["Proc"] = []


def _stop_all() -> None:
    for proc in reversed(_running):
        proc.stop()


atexit.register(_stop_all)
# A Ctrl-C or a kill of the driver still stops what it started.
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, lambda signum, frame: (_stop_all(), os._exit(128 + signum)))


class BenchError(Exception):
    """A measurement that cannot be trusted; the run stops with this message."""


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now and never handed out before in this run (the kernel may offer the same
    ephemeral port twice once the probe socket is closed)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class Proc:
    """A child process, optionally pinned to a CPU, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict | None = None,
                 cpu: str | None = None, stop_signal: int = signal.SIGTERM, **as_user):
        """`as_user`: Popen's user, group and extra_groups, to run the process as another user."""
        self.name = name
        self.log = log
        self.stop_signal = stop_signal
        if cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, start_new_session=True, **as_user)
        self.pid = self.popen.pid
        _running.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the whole process (all its threads) so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kib(self, field: str) -> int:
        """A `kB` line of /proc/<pid>/status, such as VmRSS or VmHWM."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise BenchError(f"{self.name}: no {field} in /proc/{self.pid}/status")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self in _running:
            _running.remove(self)
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(self.stop_signal)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def cpu_busy_seconds(cpu: str) -> float:
    """Time CPU `cpu` spent on processes or taken by the hypervisor (user, nice, system, steal),
    from /proc/stat. Interrupt and softirq time is left out: it is mostly the loopback traffic
    under test (about 5-10% of a CPU at 10,000 req/s through two hops), which no process's
    rusage includes, so counting it would flag every busy row as disturbed by other work."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                user, nice, system, _idle, _iowait, _irq, _softirq, steal = (
                    int(x) for x in line.split()[1:9])
                return (user + nice + system + steal) / CLK_TCK
    raise BenchError(f"no cpu{cpu} in /proc/stat")


def http_request(port: int, path: str, headers: dict[str, str] | None = None,
                 method: str = "GET", body: bytes | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_http(proc: Proc, port: int, path: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited at start-up; its log ends:\n{proc.log_tail()}")
        try:
            status, _, _ = http_request(port, path)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{proc.name} not up after {timeout:.0f} s; its log ends:\n{proc.log_tail()}")


def envoy_validate(envoy_bin: str, config: Path) -> None:
    out = subprocess.run([envoy_bin, "--mode", "validate", "--disable-hot-restart", "-c",
                          str(config)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise BenchError(f"envoy --mode validate -c {config} failed:\n"
                         f"{(out.stdout + out.stderr)[-3000:]}")


class Envoy:
    """One Envoy: one worker thread (`--concurrency 1`), pinned to CPU 0."""

    def __init__(self, name: str, envoy_bin: str, config: Path, workdir: Path,
                 admin_port: int, listen_port: int):
        self.name = name
        self.admin_port = admin_port
        self.port = listen_port
        self.proc = Proc(f"envoy[{name}]", [
            envoy_bin, "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
            "--log-level", "warning",
        ], workdir / f"envoy-{name}.log", cpu=ENVOY_CPU)

    def wait_ready(self) -> None:
        wait_http(self.proc, self.admin_port, "/ready")

    def stats(self, pattern: str) -> dict[str, int]:
        """Counters and gauges whose name matches the regex `pattern`."""
        query = urllib.parse.urlencode({"format": "json", "filter": pattern})
        status, _, body = http_request(self.admin_port, f"/stats?{query}")
        if status != 200:
            raise BenchError(f"envoy[{self.name}] admin /stats answered {status}")
        return {s["name"]: s["value"] for s in json.loads(body).get("stats", [])
                if isinstance(s.get("value"), int)}


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    #: CPU time wrk itself used, over the run's length (1.0: its CPU was saturated).
    client_util: float
    raw: str

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def wrk(url: str, *, connections: int, seconds: int, script: Path, lua_dir: Path,
        args: tuple[str, ...] = (), headers: tuple[str, ...] = (),
        until=None) -> WrkResult:
    """One wrk run (one thread, pinned to CPU 1); its results come from report.lua's JSON line.

    With `until` (a callable), wrk is interrupted (SIGINT, after which it still reports) as soon
    as `until()` is true, polled every 0.2 s: wrk's own `-d` sleep cannot be cut short from Lua.
    """
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
            "--latency", "-s", str(script)]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    if args:
        argv += ["--", *args]
    env = dict(os.environ, KG_BENCH_LUA=str(lua_dir))
    # wrk is the only child reaped during the run (taskset execs it), so the children's rusage
    # delta is wrk's own CPU time.
    before = _children_cpu()
    popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, stdin=subprocess.DEVNULL)
    try:
        if until is not None:
            deadline = time.monotonic() + seconds + 5
            while popen.poll() is None and time.monotonic() < deadline:
                if until():
                    popen.send_signal(signal.SIGINT)
                    break
                time.sleep(0.2)
        stdout, stderr = popen.communicate(timeout=seconds + 60)
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if popen.returncode not in (0, -signal.SIGINT) or line is None:
        raise BenchError(f"wrk failed ({popen.returncode}): {' '.join(argv)}\n"
                         f"{stdout[-2000:]}{stderr[-2000:]}")
    r = json.loads(line.removeprefix("WRKJSON "))
    seconds_run = r["duration_us"] / 1e6
    return WrkResult(
        requests=r["requests"], seconds=seconds_run, rps=r["requests"] / seconds_run,
        p50_ms=r["p50_us"] / 1000, p90_ms=r["p90_us"] / 1000, p99_ms=r["p99_us"] / 1000,
        non_2xx=r["status"], socket_errors=r["connect"] + r["read"] + r["write"] + r["timeout"],
        client_util=(_children_cpu() - before) / seconds_run if seconds_run > 0 else 0.0,
        raw=stdout)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
