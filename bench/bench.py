#!/usr/bin/env python3
"""The measurement behind `make bench`; bench/run.sh installs and builds, then runs this. See
bench/run.sh's header for what is measured and how to read the table.

Phases: fixtures (keys seeded in bulk, tokens minted) -> every Envoy started and every row checked
-> interleaved rounds of all rows -> paired windows (close rows) -> single-connection latency ->
forged-token flood (valid tokens beside one forged token, sent over and over) -> cache memory ->
key service alone -> revocation (bench/revocation.py) -> native benchmarks -> report
(bench/results/).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# No __pycache__ folders in bench/ or scripts/.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import pgserver  # noqa: E402
import report  # noqa: E402
import revocation  # noqa: E402
import rows as R  # noqa: E402
from harness import (ENVOY_CPU, LOAD_CPU, BenchError, Envoy, Proc,  # noqa: E402
                     cpu_busy_seconds, envoy_validate, free_port, http_request, wait_http, wrk)
from render import render  # noqa: E402  (scripts/render.py, the repository's template rule)

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
LUA = BENCH / "lua"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
ENVOY_BIN = os.environ.get("ENVOY_BIN", str(REPO / ".venv" / "bin" / "envoy"))
SERVER = TARGET / "release" / "keygate-server"
TOOL = TARGET / "release" / "keygate-bench"
KEYGATE_WASM = TARGET / "wasm32-wasip1" / "release" / "keygate.wasm"
NOOP_WASM = TARGET / "wasm32-wasip1" / "release" / "noop_filter.wasm"

#: A window during which other processes took more than this share of a CPU is run again (at
#: most RETRIES_PER_RUN times, and Settings.retry_budget times per run).
# keygate adds its per-request counters (cache_hit, jwt_cache_hit, jwt_rejected_cache_hit,
# allowed, public) to Envoy's on
# each worker's tick (at most 1 s apart): a row's path check reads them after waiting this long.
COUNTER_FLUSH_S = 1.1
NOISY = 0.10
RETRIES_PER_RUN = 2
#: Longest wait before one window for both CPUs to be free of other work (Bench.wait_quiet); the
#: run's total wait is Settings.quiet_budget.
QUIET_MAX_WAIT = 10.0
#: The forged-token flood (Bench.flood): valid tokens of this algorithm, each a verified-token
#: cache hit, while a second client sends one forged token of it over and over; against keygate
#: as configured by default (a refused token is remembered per worker) and with the worker caches
#: off (`cache.worker_max_entries: 0`: nothing remembered, every forged copy verified).
FLOOD_ALG = "ES256"
FLOOD_ENVOYS = (("keygate", "refusals remembered (default)"),
                ("keygate-shared", "worker caches off: every forged copy verified"))


@dataclass
class Settings:
    quick: bool
    rounds: int
    seconds: int
    warmup: int
    connections: int
    pair_rounds: int
    pair_seconds: int
    latency_rounds: int
    latency_seconds: int
    db_keys: int
    cycle_keys: int
    warm_keys: int
    jwt_tokens: int
    rsa_tokens: int
    ks_rounds: int
    ks_seconds: int
    ks_connections: int
    criterion_warmup: float
    criterion_seconds: float
    quiet_budget: float = 120.0
    retry_budget: int = 20

    @staticmethod
    def from_env() -> "Settings":
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        s = Settings(
            quick=quick,
            rounds=1 if quick else 3,
            seconds=2 if quick else 3,
            warmup=1,
            connections=32,
            pair_rounds=2 if quick else 6,
            pair_seconds=2 if quick else 3,
            # Many short windows: one noisy window then moves the median of differences less.
            latency_rounds=3 if quick else 8,
            latency_seconds=1,
            # The warm keys and the hit key must all be in the database.
            db_keys=100_000 if quick else 1_001_000,
            cycle_keys=20_000 if quick else 100_000,
            warm_keys=20_000 if quick else 1_000_000,
            jwt_tokens=10_000 if quick else 30_000,
            rsa_tokens=5_000 if quick else 10_000,
            ks_rounds=1 if quick else 3,
            ks_seconds=2 if quick else 4,
            ks_connections=32,
            criterion_warmup=0.1 if quick else 0.5,
            criterion_seconds=0.3 if quick else 1.5,
            quiet_budget=30.0 if quick else 120.0,
            retry_budget=6 if quick else 20,
        )
        for name in ("rounds", "seconds", "connections"):
            value = os.environ.get(f"BENCH_{name.upper()}")
            if value:
                setattr(s, name, int(value))
        return s


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tool(*args: str) -> None:
    subprocess.run([str(TOOL), *args], check=True, stdin=subprocess.DEVNULL)


def unknown_key(n: int) -> str:
    """A key of valid format and checksum that no database holds (see core/src/key.rs)."""
    stem = "kg_" + hashlib.sha256(f"keygate-bench/unknown/{n}".encode()).hexdigest()[:40]
    return stem + hashlib.sha256(stem.encode()).digest()[:4].hex()


def tampered(token: str) -> str:
    """The token with one signature character changed: well-formed, bad signature."""
    head, sig = token.rsplit(".", 1)
    i = len(sig) // 2
    return f"{head}.{sig[:i]}{'A' if sig[i] != 'A' else 'B'}{sig[i + 1:]}"


def first_lines(src: Path, dst: Path, start: int, count: int) -> Path:
    with open(src) as f:
        lines = f.read().splitlines()[start:start + count]
    if len(lines) < count:
        raise BenchError(f"{src} has fewer than {start + count} lines")
    dst.write_text("\n".join(lines) + "\n")
    return dst


@dataclass
class Fixtures:
    work: Path
    admin_secret: str
    filter_token: str
    hit_key: str
    unknown_key: str
    cycle_keys: Path
    warm_1k: Path
    warm_rest: Path
    warm_all: Path
    api_key_auth_keys: list[str]
    hashes: Path
    jwks: dict
    tokens: dict[str, Path]
    hit_token: dict[str, str]
    bad_token: dict[str, str]
    alone_db: Path
    db: Path


def make_fixtures(s: Settings, work: Path) -> Fixtures:
    db = work / "keys.db"
    secrets_file = work / "secrets.txt"
    t0 = time.monotonic()
    tool("seed-keys", "--db", str(db), "--count", str(s.db_keys),
         "--secrets-out", str(secrets_file),
         "--secret-count", str(max(s.cycle_keys, s.warm_keys, 1000) + 1),
         "--hashes-out", str(work / "hashes.txt"), "--hash-count", str(min(100_000, s.db_keys)))
    log(f"seeded {s.db_keys:,} keys in {time.monotonic() - t0:.1f} s")
    alone_db = work / "keys-alone.db"
    shutil.copyfile(db, alone_db)
    t0 = time.monotonic()
    tool("mint-jwts", "--dir", str(work / "jwt"), "--count", str(s.jwt_tokens),
         "--rsa-count", str(s.rsa_tokens), "--issuer", R.ISSUER, "--audience", R.AUDIENCE)
    log(f"minted {s.jwt_tokens:,} EdDSA/ES256/ES384 and {s.rsa_tokens:,} RS256/RS512/PS256 "
        f"tokens in {time.monotonic() - t0:.1f} s")
    with open(secrets_file) as f:
        all_secrets = f.read().splitlines()
    tokens = {alg: work / "jwt" / f"tokens-{alg}.txt" for alg in R.NEW_TOKEN_ALGORITHMS}
    hit_token = {alg: p.read_text().split("\n", 1)[0] for alg, p in tokens.items()}
    return Fixtures(
        work=work,
        admin_secret="bench-admin-" + secrets.token_hex(16),
        filter_token="bench-filter-" + secrets.token_hex(16),
        hit_key=all_secrets[0],
        unknown_key=unknown_key(0),
        # Key 0 is the cache-hit key; the others are for rows that want a new key each time.
        cycle_keys=first_lines(secrets_file, work / "keys-cycle.txt", 1, s.cycle_keys),
        warm_1k=first_lines(secrets_file, work / "keys-warm-1k.txt", 1, 1000),
        warm_rest=first_lines(secrets_file, work / "keys-warm-rest.txt", 1001,
                              max(s.warm_keys - 1000, 1)),
        warm_all=first_lines(secrets_file, work / "keys-warm-all.txt", 1, s.warm_keys),
        api_key_auth_keys=all_secrets[:1000],
        hashes=work / "hashes.txt",
        jwks=json.loads((work / "jwt" / "jwks.json").read_text()),
        tokens=tokens,
        hit_token=hit_token,
        bad_token={alg: tampered(t) for alg, t in hit_token.items()},
        alone_db=alone_db,
        db=db,
    )


def start_keyservice(work: Path, admin_secret: str, filter_token: str, database: str | Path,
                     cpu: str, name: str) -> tuple[Proc, int]:
    """keygate-server on `database`: an SQLite file, or a postgres:// URL."""
    port = free_port()
    env = dict(os.environ,
               KEYGATE_LISTEN=f"127.0.0.1:{port}",
               KEYGATE_ADMIN_SECRET=admin_secret,
               KEYGATE_FILTER_TOKEN=filter_token,
               # Entries must outlive the run so the cache rows stay hits.
               KEYGATE_LOOKUP_CACHE_TTL_SECS="3600",
               NO_COLOR="1")
    env.pop("KEYGATE_DATABASE_URL", None)
    env.pop("KEYGATE_DB_PATH", None)
    if isinstance(database, str):
        env["KEYGATE_DATABASE_URL"] = database
    else:
        env["KEYGATE_DB_PATH"] = str(database)
    proc = Proc(name, [str(SERVER)], work / f"{name}.log", env=env, cpu=cpu)
    wait_http(proc, port, "/healthz")
    return proc, port


def envoy_filters(s: Settings, fx: Fixtures, ks_port: int) -> dict[str, tuple[list, list]]:
    """Each Envoy: its HTTP filters (router last) and clusters."""
    ks = [R.keyservice_cluster(ks_port)]

    def keygate(**kw) -> dict:
        return R.wasm_filter("keygate", KEYGATE_WASM, R.keygate_config(fx.filter_token, fx.jwks,
                                                                       **kw))

    jwks_json = json.dumps(fx.jwks)
    return {
        "baseline": ([R.ROUTER], []),
        "noop": ([R.wasm_filter("noop", NOOP_WASM), R.ROUTER], []),
        "probe": ([R.wasm_filter("probe", NOOP_WASM, "hostcalls"), R.ROUTER], []),
        "keygate": ([keygate(), R.ROUTER], ks),
        "keygate-1000-rules": ([keygate(rules=1000), R.ROUTER], ks),
        # Every hit read from shared data, as when the worker's own cache lacks the key.
        "keygate-shared": ([keygate(worker_cache_entries=0), R.ROUTER], ks),
        "keygate-miss": ([keygate(cache_entries=R.MISS_CACHE_ENTRIES,
                                  jwt_cache_entries=R.MISS_CACHE_ENTRIES,
                                  worker_cache_entries=0), R.ROUTER], ks),
        # Usage reporting off, so the memory growth is the cache's alone. Sized 8x the keys: a
        # bucket holds 4 entries, so at lower headroom some buckets overflow (see report.py).
        "keygate-memory": ([keygate(cache_entries=memory_cache_entries(s), cache_ttl_secs=3600,
                                    usage_interval_secs=0), R.ROUTER], ks),
        "api_key_auth": ([R.api_key_auth_filter(fx.api_key_auth_keys), R.ROUTER], []),
        "jwt_authn-cache": ([R.jwt_authn_filter(jwks_json, cache=True), R.ROUTER], []),
        "jwt_authn": ([R.jwt_authn_filter(jwks_json, cache=False), R.ROUTER], []),
        "ext_authz": ([R.ext_authz_filter(ks_port), R.ROUTER], ks),
    }


def noise(m: dict) -> float:
    """How much of a CPU other processes took during a run, on the busier of the two CPUs."""
    return max(m["other_util"], m.get("other_load_util", 0.0))


def memory_cache_entries(s: Settings) -> int:
    return 8 * s.warm_keys


def define_rows(fx: Fixtures) -> list[R.Row]:
    key = R.Static("x-api-key", fx.hit_key)
    rows = [
        R.Row("baseline", "1", "Envoy alone (baseline)", "baseline", key, open=True),
        R.Row("noop", "2", "no-op Wasm filter (floor)", "noop", key, open=True),
        R.Row("probe", "2b", "Wasm filter making only keygate's hit-path host calls", "probe", key,
              open=True),
        R.Row("kg-key-hit", "3", "keygate API key, cache hit", "keygate", key,
              bad=fx.unknown_key, expect=("cache_hit", 0.99)),
        R.Row("kg-key-hit-1000", "3b", "keygate API key, cache hit, 1,000 rules",
              "keygate-1000-rules", key, bad=fx.unknown_key, expect=("cache_hit", 0.99)),
        R.Row("kg-key-hit-shared", "3c", "keygate API key, cache hit, worker cache off",
              "keygate-shared", key, bad=fx.unknown_key, expect=("cache_hit", 0.99)),
        R.Row("kg-key-miss", "4", "keygate API key, new key each request (callout)",
              "keygate-miss", R.Cycle(fx.cycle_keys, "x-api-key", _first(fx.cycle_keys)),
              bad=fx.unknown_key, keyservice=True, expect=("looked_up", 0.97)),
    ]
    for alg in R.ALGORITHMS:
        rows.append(R.Row(f"kg-jwt-hit-{alg}", "5", f"keygate JWT {alg}, cache hit", "keygate",
                          R.Static("authorization", "Bearer " + fx.hit_token[alg]),
                          bad="Bearer " + fx.bad_token[alg], expect=("jwt_cache_hit", 0.99)))
    for alg in R.NEW_TOKEN_ALGORITHMS:
        rows.append(R.Row(f"kg-jwt-new-{alg}", "6", f"keygate JWT {alg}, new token each request",
                          "keygate-miss",
                          R.Cycle(fx.tokens[alg], "authorization", fx.hit_token[alg], "Bearer "),
                          bad="Bearer " + fx.bad_token[alg], expect=("jwt_verified", 0.97)))
    rows.append(R.Row("api-key-auth", "7", "Envoy api_key_auth, 1,000 keys", "api_key_auth", key,
                      bad=fx.unknown_key))
    for alg in R.ALGORITHMS:
        rows.append(R.Row(f"jwt-authn-cache-{alg}", "8", f"Envoy jwt_authn {alg}, jwt_cache_config",
                          "jwt_authn-cache",
                          R.Static("authorization", "Bearer " + fx.hit_token[alg]),
                          bad="Bearer " + fx.bad_token[alg]))
    for alg in R.NEW_TOKEN_ALGORITHMS:
        rows.append(R.Row(f"jwt-authn-{alg}", "8", f"Envoy jwt_authn {alg}, no cache, new token each request",
                          "jwt_authn",
                          R.Cycle(fx.tokens[alg], "authorization", fx.hit_token[alg], "Bearer "),
                          bad="Bearer " + fx.bad_token[alg]))
    rows.append(R.Row("ext-authz", "9", "Envoy ext_authz (HTTP) -> key service /v1/check",
                      "ext_authz", key, bad=fx.unknown_key, keyservice=True))
    return rows


def med_of(runs: list[dict], key: str) -> float:
    values = sorted(r[key] for r in runs)
    return values[len(values) // 2] if values else 0.0


def _first(path: Path) -> str:
    return path.read_text().split("\n", 1)[0]


def check_row(row: R.Row, envoy: Envoy) -> None:
    """Before anything is timed: no credential (and a wrong one) is refused, the right one
    passes. A row that lets everything through would measure nothing."""
    cred = row.credential
    good = cred.value if isinstance(cred, R.Static) else row.header_value(cred.first)
    status, _, body = http_request(envoy.port, R.PATH, {cred.header: good})
    if status != 200:
        raise BenchError(f"row {row.number} {row.label}: a request with a valid credential got "
                         f"{status} ({body[:200]!r}); nothing to measure")
    if row.open:
        return
    for what, headers in (("no credential", {}), ("a wrong credential", {cred.header: row.bad})):
        status, _, body = http_request(envoy.port, R.PATH, headers)
        if status not in (401, 403):
            raise BenchError(f"row {row.number} {row.label}: a request with {what} got {status}, "
                             "not 401/403: the filter lets it through, so this row would "
                             "measure nothing")
    if isinstance(cred, R.Cycle):
        row.offset = 1


def keygate_counters(envoy: Envoy) -> dict[str, int]:
    """keygate's counters summed over workers, plus `looked_up`: keys looked up at the key
    service, alone (one callout each) or in batches (`key_service.unbatched_lookups`)."""
    out: dict[str, int] = {}
    for name, value in envoy.stats("keygate\\.").items():
        short = name.split("keygate.", 1)[1]
        out[short] = out.get(short, 0) + value
    out["looked_up"] = (out.get("callout", 0) - out.get("lookup_batch", 0)
                        + out.get("lookup_batch_keys", 0))
    return out


class Bench:
    def __init__(self, s: Settings, fx: Fixtures):
        self.s = s
        self.fx = fx
        self.envoys: dict[str, Envoy] = {}
        self.keyservice: Proc | None = None
        self.retries = 0
        self.quiet_waited = 0.0

    def wait_quiet(self) -> None:
        """Waits until other processes leave both CPUs alone, within QUIET_MAX_WAIT and the run's
        quiet budget: on a shared machine this keeps most windows clean."""
        t0 = time.monotonic()
        while True:
            waited = time.monotonic() - t0
            if waited > QUIET_MAX_WAIT or self.quiet_waited + waited > self.s.quiet_budget:
                break
            a0, b0 = cpu_busy_seconds(ENVOY_CPU), cpu_busy_seconds(LOAD_CPU)
            time.sleep(0.3)
            a1, b1 = cpu_busy_seconds(ENVOY_CPU), cpu_busy_seconds(LOAD_CPU)
            if max(a1 - a0, b1 - b0) / 0.3 < 0.10:
                break
        self.quiet_waited += time.monotonic() - t0

    def send(self, row: R.Row, seconds: int, connections: int, until=None,
             cycle_file: Path | None = None, limit: int = 0):
        envoy = self.envoys[row.envoy]
        url = f"http://127.0.0.1:{envoy.port}{R.PATH}"
        cred = row.credential
        if isinstance(cred, R.Static) and cycle_file is None:
            return wrk(url, connections=connections, seconds=seconds, script=LUA / "report.lua",
                       lua_dir=LUA, headers=(f"{cred.header}: {cred.value}",), until=until)
        file = cycle_file or cred.file
        prefix = cred.prefix if isinstance(cred, R.Cycle) else ""
        result = wrk(url, connections=connections, seconds=seconds, script=LUA / "cycle.lua",
                     lua_dir=LUA, args=(str(file), cred.header, str(row.offset), prefix,
                                        str(limit)), until=until)
        if cycle_file is None:
            row.offset += result.requests + connections
        return result

    def measure(self, row: R.Row, seconds: int, connections: int, warmup: int = 0,
                quiet: bool = True) -> dict:
        envoy = self.envoys[row.envoy]
        if quiet:
            self.wait_quiet()
        if warmup:
            self.send(row, warmup, connections)
            if row.expect:
                time.sleep(COUNTER_FLUSH_S)
        before = keygate_counters(envoy) if row.expect else {}
        e0 = envoy.proc.cpu_seconds()
        b0, l0 = cpu_busy_seconds(ENVOY_CPU), cpu_busy_seconds(LOAD_CPU)
        k0 = self.keyservice.cpu_seconds() if row.keyservice and self.keyservice else None
        r = self.send(row, seconds, connections)
        b1, l1 = cpu_busy_seconds(ENVOY_CPU), cpu_busy_seconds(LOAD_CPU)
        e1 = envoy.proc.cpu_seconds()
        k1 = self.keyservice.cpu_seconds() if k0 is not None and self.keyservice else None
        if r.requests == 0:
            raise BenchError(f"row {row.number} {row.label}: no request completed")
        m = {
            "rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors,
            "requests": r.requests, "seconds": r.seconds,
            "cpu_us": (e1 - e0) / r.requests * 1e6, "envoy_util": (e1 - e0) / r.seconds,
            "wrk_util": r.client_util,
            # CPU used by anything else meanwhile, on Envoy's CPU and on the load CPU (beside wrk
            # and the key service): the noise gauges.
            "other_util": max(0.0, (b1 - b0) - (e1 - e0)) / r.seconds,
            "other_load_util": max(0.0, (l1 - l0) - r.client_util * r.seconds
                                   - ((k1 - k0) if k1 is not None and k0 is not None else 0.0))
            / r.seconds,
            "ks_us": (k1 - k0) / r.requests * 1e6 if k1 is not None and k0 is not None else None,
        }
        if row.expect:
            name, least = row.expect
            time.sleep(COUNTER_FLUSH_S)
            after = keygate_counters(envoy)
            share = (after.get(name, 0) - before.get(name, 0)) / r.requests
            m["path_share"] = share
            if share < least:
                raise BenchError(
                    f"row {row.number} {row.label}: keygate.{name} rose by {share:.2f} per "
                    f"request, expected at least {least}: the row is not taking the path it is "
                    f"named for (counters: {after})")
        if r.errors > 0.1 * r.requests:
            raise BenchError(f"row {row.number} {row.label}: {r.errors} of {r.requests} requests "
                             "failed; the row measures its error path")
        return m

    # ---------------------------------------------------------------------------------------

    def start(self, rows: list[R.Row]) -> None:
        s, fx = self.s, self.fx
        self.keyservice, ks_port = start_keyservice(fx.work, fx.admin_secret, fx.filter_token,
                                                    fx.db, LOAD_CPU, "keyservice")
        base = (BENCH / "envoy" / "base.yaml").read_text()
        configs: dict[str, tuple[Path, int, int]] = {}
        for name, (filters, clusters) in envoy_filters(s, fx, ks_port).items():
            admin, listen = free_port(), free_port()
            path = fx.work / f"envoy-{name}.yaml"
            path.write_text(render(base, {
                "ADMIN_PORT": str(admin), "LISTEN_PORT": str(listen),
                "HTTP_FILTERS": json.dumps(filters), "CLUSTERS": json.dumps(clusters)}))
            envoy_validate(ENVOY_BIN, path)
            configs[name] = (path, admin, listen)
        log(f"{len(configs)} Envoy configs pass `envoy --mode validate`")
        for name, (path, admin, listen) in configs.items():
            self.envoys[name] = Envoy(name, ENVOY_BIN, path, fx.work, admin, listen)
        for envoy in self.envoys.values():
            envoy.wait_ready()
        log(f"{len(self.envoys)} Envoys up (each --concurrency 1, on CPU {ENVOY_CPU})")
        for row in rows:
            check_row(row, self.envoys[row.envoy])
        log(f"all {len(rows)} rows checked: no credential and a wrong one refused, the right one "
            "accepted")

    def rounds(self, rows: list[R.Row]) -> None:
        """Every row once per round, round-robin, each round starting at a different row. A run
        during which other processes took more than NOISY of Envoy's CPU is run again (the
        quietest attempt is kept), within a budget, since the machine may be shared."""
        s = self.s
        for r in range(s.rounds):
            shift = r * len(rows) // max(s.rounds, 1)
            for row in rows[shift:] + rows[:shift]:
                m = self.measure(row, s.seconds, s.connections, warmup=s.warmup)
                for _ in range(RETRIES_PER_RUN):
                    if noise(m) <= NOISY or self.retries >= s.retry_budget:
                        break
                    self.retries += 1
                    log(f"  other work took {noise(m):.0%} of a CPU meanwhile; running again")
                    again = self.measure(row, s.seconds, s.connections, warmup=s.warmup)
                    m = min(m, again, key=noise)
                row.runs.append(m)
                log(f"round {r + 1}/{s.rounds} {row.number:>2} {row.label}: {m['rps']:8.0f} req/s"
                    f"  {m['cpu_us']:6.1f} us CPU/req  p99 {m['p99_ms']:.2f} ms"
                    f"  (other work: {noise(m):.0%})")

    def paired(self, by_key: dict[str, R.Row], keys: list[str], rounds: int, seconds: int,
               connections: int) -> dict[str, list[dict]]:
        """Short windows alternating between rows (ABC, CBA, ...), so drift hits all alike."""
        out: dict[str, list[dict]] = {k: [] for k in keys}
        for r in range(rounds):
            order = keys if r % 2 == 0 else list(reversed(keys))
            for _ in range(RETRIES_PER_RUN + 1):
                window = {k: self.measure(by_key[k], seconds, connections) for k in order}
                worst = max(noise(m) for m in window.values())
                if worst <= NOISY or self.retries >= self.s.retry_budget:
                    break
                self.retries += 1
                log(f"  other work took {worst:.0%} of a CPU in this round; running it again")
            for k in keys:
                out[k].append(window[k])
        return out

    def flood(self) -> dict:
        """Valid traffic's req/s and latency alone, then while another client floods one forged
        token (a tampered signature, so each copy that is verified costs a full verification),
        for each of FLOOD_ENVOYS; windows alternate, so drift hits both alike. Each side gets
        half of s.connections."""
        s, fx = self.s, self.fx
        half = max(s.connections // 2, 1)
        out: dict = {"alg": FLOOD_ALG, "connections": half, "seconds": s.pair_seconds,
                     "envoys": {}}
        for name, label in FLOOD_ENVOYS:
            envoy = self.envoys[name]
            valid = R.Row(f"flood-valid-{name}", "f", label, name,
                          R.Static("authorization", "Bearer " + fx.hit_token[FLOOD_ALG]))
            forged = R.Row(f"flood-forged-{name}", "f", label, name,
                           R.Static("authorization", "Bearer " + fx.bad_token[FLOOD_ALG]))
            self.send(valid, 1, half)  # the valid token verified and cached
            alone, flooded, floods = [], [], []
            for _ in range(s.pair_rounds):
                alone.append(self.measure(valid, s.pair_seconds, half))
                time.sleep(COUNTER_FLUSH_S)
                before = keygate_counters(envoy)
                result: dict = {}
                flooder = threading.Thread(target=lambda: result.update(
                    run=self.send(forged, s.pair_seconds + 2, half)))
                flooder.start()
                time.sleep(0.5)
                # The flood is the other work now: no waiting for quiet CPUs.
                flooded.append(self.measure(valid, s.pair_seconds, half, quiet=False))
                flooder.join()
                time.sleep(COUNTER_FLUSH_S)
                after = keygate_counters(envoy)
                run = result.get("run")
                if run is None or run.requests == 0:
                    raise BenchError(f"flood on {name}: the flooding client sent nothing")

                def rose(counter: str) -> int:
                    return after.get(counter, 0) - before.get(counter, 0)

                refused = rose("jwt_rejected.bad_signature")
                if refused < 0.9 * run.requests:
                    raise BenchError(f"flood on {name}: {refused} of {run.requests} forged "
                                     "copies were refused as bad signatures")
                floods.append({"rps": run.rps, "requests": run.requests, "refused": refused,
                               "remembered": rose("jwt_rejected_cache_hit"),
                               "valid_hits": rose("jwt_cache_hit")})
            out["envoys"][name] = {"label": label, "alone": alone, "flooded": flooded,
                                   "floods": floods}
            remembered = (sum(f["remembered"] for f in floods)
                          / max(sum(f["requests"] for f in floods), 1))
            log(f"flood {name}: valid {med_of(alone, 'rps'):.0f} req/s alone, "
                f"{med_of(flooded, 'rps'):.0f} flooded; forged {med_of(floods, 'rps'):.0f} req/s, "
                f"{remembered:.0%} remembered")
        return out

    def memory(self, kg_hit_row: R.Row) -> dict:
        """RSS of an Envoy whose keygate cache is warmed, through the filter, with 1,000 then
        `warm_keys` distinct valid keys (each one callout), and the hit cost at each size."""
        s, fx = self.s, self.fx
        envoy = self.envoys["keygate-memory"]
        row = R.Row("mem", "m", "keygate, warm cache", "keygate-memory", kg_hit_row.credential)
        self.send(row, 1, 8)  # one key cached; VM, pools and buffers warmed
        time.sleep(1)
        rss_start = envoy.proc.status_kib("VmRSS")

        def warm(file: Path, count: int) -> int:
            """Sends each key of `file` once (each a miss and a lookup)."""
            start = keygate_counters(envoy).get("looked_up", 0)
            progress = {"value": start, "at": time.monotonic()}

            def done() -> bool:
                value = keygate_counters(envoy).get("looked_up", 0)
                if value != progress["value"]:
                    progress.update(value=value, at=time.monotonic())
                # Done when every key went out, or when nothing moved for 3 s.
                return value - start >= count or time.monotonic() - progress["at"] > 3

            self.send(row, 600, 16, until=done, cycle_file=file, limit=count)
            return keygate_counters(envoy).get("looked_up", 0) - start

        def hits(file: Path) -> dict:
            before = keygate_counters(envoy)
            e0 = envoy.proc.cpu_seconds()
            r = self.send(row, s.seconds, s.connections, cycle_file=file)
            e1 = envoy.proc.cpu_seconds()
            time.sleep(COUNTER_FLUSH_S)
            after = keygate_counters(envoy)
            share = (after.get("cache_hit", 0) - before.get("cache_hit", 0)) / max(r.requests, 1)
            if share < 0.97:
                raise BenchError(f"memory: only {share:.2f} of the requests over warm keys were "
                                 "cache hits")
            return {"rps": r.rps, "cpu_us": (e1 - e0) / r.requests * 1e6, "p99_ms": r.p99_ms,
                    "hit_share": share, "errors": r.errors, "envoy_util": (e1 - e0) / r.seconds,
                    "wrk_util": r.client_util}

        t0 = time.monotonic()
        callouts_1k = warm(fx.warm_1k, 1000)
        time.sleep(1)
        rss_1k = envoy.proc.status_kib("VmRSS")
        hits_1k = hits(fx.warm_1k)
        callouts_all = callouts_1k
        if s.warm_keys > 1000:
            callouts_all += warm(fx.warm_rest, s.warm_keys - 1000)
        warm_seconds = time.monotonic() - t0
        time.sleep(2)
        rss_all = envoy.proc.status_kib("VmRSS")
        hits_all = hits(fx.warm_all)
        entries = s.warm_keys - 1000
        return {
            "cache_entries": memory_cache_entries(s),
            "rss_start_kib": rss_start, "rss_1k_kib": rss_1k, "rss_all_kib": rss_all,
            "warm_keys": s.warm_keys, "callouts": callouts_all, "warm_seconds": warm_seconds,
            "bytes_per_entry": (rss_all - rss_1k) * 1024 / entries if entries > 0 else None,
            "hits_1k": hits_1k, "hits_all": hits_all,
        }

    def stop_all(self) -> None:
        for envoy in self.envoys.values():
            envoy.proc.stop()
        if self.keyservice:
            self.keyservice.stop()


#: The small database of the key service lookup matrix; the large one has Settings.db_keys.
SMALL_KEYS = 1_000


@dataclass
class KsTarget:
    """One key service of the lookup matrix: a backend, a database of `keys` keys, and the
    hashes its lookups draw from (`min(100k, keys)` of them, spread evenly over the keys)."""
    backend: str
    keys: int
    database: str | Path
    hashes: Path
    proc: Proc | None = None
    port: int = 0


def keyservice_backends() -> list[str]:
    """SQLite always; PostgreSQL when this keygate-server has `--database-url`."""
    out = subprocess.run([str(SERVER), "--help"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL).stdout
    return ["sqlite", "postgres"] if "--database-url" in out else ["sqlite"]


def seed(work: Path, target_db: str | Path, count: int, name: str) -> Path:
    """`count` keys into `target_db` (an SQLite path or a postgres:// URL); their hashes file."""
    hashes = work / f"hashes-{name}.txt"
    where = (["--database-url", target_db] if isinstance(target_db, str)
             else ["--db", str(target_db)])
    t0 = time.monotonic()
    tool("seed-keys", *where, "--count", str(count),
         "--secrets-out", str(work / f"secrets-{name}.txt"), "--secret-count", "1",
         "--hashes-out", str(hashes), "--hash-count", str(min(100_000, count)))
    log(f"  seeded {count:,} keys ({name}) in {time.monotonic() - t0:.1f} s")
    return hashes


def keyservice_alone(s: Settings, work: Path, admin_secret: str, filter_token: str,
                     sqlite_large: tuple[Path, Path] | None = None) -> dict:
    """The key service by itself: lookups over SMALL_KEYS and over s.db_keys keys, and key
    creations, on each backend. The key service (and PostgreSQL) on CPU 0, wrk on CPU 1.

    `sqlite_large`: an SQLite database of s.db_keys keys and its hashes file, if the run made
    one already (a copy of the Envoy rows' database); otherwise one is seeded here."""
    out: dict = {"small_keys": SMALL_KEYS, "large_keys": s.db_keys, "backends": {}}
    for backend in keyservice_backends():
        log(f"key service alone on {backend}: {SMALL_KEYS:,} and {s.db_keys:,} keys")
        pg = None
        targets: list[KsTarget] = []
        try:
            if backend == "sqlite":
                small_db = work / "alone-small.db"
                targets.append(KsTarget(backend, SMALL_KEYS, small_db,
                                        seed(work, small_db, SMALL_KEYS, "sqlite-small")))
                if sqlite_large:
                    targets.append(KsTarget(backend, s.db_keys, *sqlite_large))
                else:
                    large_db = work / "alone-large.db"
                    targets.append(KsTarget(backend, s.db_keys, large_db,
                                            seed(work, large_db, s.db_keys, "sqlite-large")))
            else:
                # PostgreSQL beside the key service on CPU 0: one service's cost is both.
                pg = pgserver.PgServer.start(work, ENVOY_CPU)
                for size, keys in (("small", SMALL_KEYS), ("large", s.db_keys)):
                    # The seeder opens the database with the key service's store first, so the
                    # schema is the real one (its migrations), then bulk-inserts the rows.
                    url = pg.fresh_database(f"kgbench_{size}")
                    hashes = seed(work, url, keys, f"postgres-{size}")
                    pg.analyze(f"kgbench_{size}")
                    targets.append(KsTarget(backend, keys, url, hashes))
            out["backends"][backend] = measure_backend(s, work, admin_secret, filter_token,
                                                       targets, pg)
        finally:
            for target in targets:
                if target.proc:
                    target.proc.stop()
            if pg:
                if pg.proc is None:
                    for size in ("small", "large"):
                        pg.drop_database(f"kgbench_{size}")
                pg.stop()
    return out


def measure_backend(s: Settings, work: Path, admin_secret: str, filter_token: str,
                    targets: list[KsTarget], pg: "pgserver.PgServer | None") -> dict:
    """Both sizes' key services up at once, their lookup runs interleaved (a different size
    first each round), then key creations on the large database."""
    for t in targets:
        t.proc, t.port = start_keyservice(work, admin_secret, filter_token, t.database,
                                          ENVOY_CPU, f"keyservice-alone-{t.backend}-{t.keys}")
        status, _, body = http_request(t.port, "/v1/lookup", {
            "authorization": f"Bearer {filter_token}", "content-type": "application/json"},
            "POST", json.dumps({"key_hash": _first(t.hashes)}).encode())
        if status != 200 or b'"valid"' not in body:
            raise BenchError(f"key service ({t.backend}, {t.keys:,} keys): lookup of a seeded "
                             f"key answered {status} {body[:200]!r}")

    def run(t: KsTarget, script: str, seconds: int, connections: int, headers: tuple,
            args: tuple = ()) -> dict:
        assert t.proc is not None
        c0 = t.proc.cpu_seconds()
        p0 = pg.cpu_seconds() if pg else None
        b0 = cpu_busy_seconds(ENVOY_CPU)
        r = wrk(f"http://127.0.0.1:{t.port}/", connections=connections, seconds=seconds,
                script=LUA / script, lua_dir=LUA, headers=headers, args=args)
        c1 = t.proc.cpu_seconds()
        p1 = pg.cpu_seconds() if pg else None
        b1 = cpu_busy_seconds(ENVOY_CPU)
        if r.errors > 0.1 * max(r.requests, 1):
            raise BenchError(f"key service ({t.backend}, {t.keys:,} keys) {script}: {r.errors} "
                             f"of {r.requests} failed")
        m = {"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors,
             "cpu_us": (c1 - c0) / max(r.requests, 1) * 1e6, "util": (c1 - c0) / r.seconds,
             "requests": r.requests}
        if p0 is not None and p1 is not None:
            m["db_cpu_us"] = (p1 - p0) / max(r.requests, 1) * 1e6
            m["db_util"] = (p1 - p0) / r.seconds
        # CPU 0 time nobody under test used: other processes on this shared machine.
        m["other_util"] = max(0.0, (b1 - b0) / r.seconds - m["util"] - m.get("db_util", 0.0))
        return m

    filter_auth = (f"authorization: Bearer {filter_token}",)
    for t in targets:  # warm-up: the database's pages into memory
        run(t, "lookup.lua", 1, s.ks_connections, filter_auth, (str(t.hashes),))
    lookups: dict[int, list[dict]] = {t.keys: [] for t in targets}
    for i in range(s.ks_rounds):
        for t in targets[i % len(targets):] + targets[:i % len(targets)]:
            lookups[t.keys].append(run(t, "lookup.lua", s.ks_seconds, s.ks_connections,
                                       filter_auth, (str(t.hashes),)))
    large = targets[-1]
    assert large.proc is not None
    creates = run(large, "create.lua", s.ks_seconds, 16,
                  (f"authorization: Bearer {admin_secret}",))
    out = {"sizes": {str(t.keys): {"keys": t.keys, "lookups": lookups[t.keys],
                                   "hashes": min(100_000, t.keys)} for t in targets},
           "creates": creates, "hwm_kib": large.proc.status_kib("VmHWM"),
           "rss_kib": large.proc.status_kib("VmRSS"),
           # RSS splits into the process's own memory and pages of mapped files (SQLite's
           # mmap_size): those are the kernel's page cache, shared and reclaimable.
           "rss_anon_kib": large.proc.status_kib("RssAnon"),
           "rss_file_kib": large.proc.status_kib("RssFile")}
    if pg:
        out["server"] = pg.describe()
    return out


def native(s: Settings, work: Path) -> dict[str, float]:
    """core/benches/core.rs (criterion), pinned to CPU 0; medians in nanoseconds."""
    home = work / "criterion"
    env = dict(os.environ, CRITERION_HOME=str(home))
    args = ["--warm-up-time", str(s.criterion_warmup), "--measurement-time",
            str(s.criterion_seconds), "--noplot"]
    # run.sh passes the built benchmark binary, so no cargo (and no wait for its build lock)
    # runs while measuring.
    exe = os.environ.get("BENCH_CORE_EXE")
    argv = [exe, "--bench", *args] if exe else [
        "cargo", "bench", "--quiet", "-p", "keygate-core", "--bench", "core", "--", *args]
    with open(work / "criterion.log", "w") as out:
        subprocess.run(["taskset", "-c", ENVOY_CPU, *argv], cwd=REPO, env=env, check=True,
                       stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    out = {}
    for estimates in home.rglob("new/estimates.json"):
        name = json.loads((estimates.parent / "benchmark.json").read_text())["full_id"]
        out[name] = json.loads(estimates.read_text())["median"]["point_estimate"]
    return out


def machine() -> dict:
    def cmd(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                                  stdin=subprocess.DEVNULL).stdout.strip()
        except OSError:
            return "?"

    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                  if ln.startswith("model name")), "?")
    mem = next((ln.split(":", 1)[1].strip() for ln in open("/proc/meminfo")
                if ln.startswith("MemTotal")), "?")
    rev = cmd("git", "rev-parse", "--short", "HEAD")
    if cmd("git", "status", "--porcelain"):
        rev += " (uncommitted changes)"
    wasm = KEYGATE_WASM.read_bytes() if KEYGATE_WASM.exists() else b""
    return {
        "wasm": (f"{len(wasm):,} bytes, sha256 {hashlib.sha256(wasm).hexdigest()[:16]}"
                 if wasm else "not built"),
        "nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(), "memory": mem,
        "envoy": cmd(ENVOY_BIN, "--version").replace(ENVOY_BIN, "").strip(" :"),
        "rustc": cmd("rustc", "--version"), "git": rev,
    }


def main(only: str | None = None) -> int:
    s = Settings.from_env()
    t_start = time.monotonic()
    loadavg_start = os.getloadavg()
    work = Path(os.environ.get("BENCH_WORK_DIR") or tempfile.mkdtemp(prefix="keygate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"{'quick' if s.quick else 'full'} run; work files in {work}")
    # Versions now, before anything runs: the tree may change while the run goes on.
    info = machine()
    phases: dict[str, float] = {}

    def phase(name: str, t0: float) -> None:
        phases[name] = time.monotonic() - t0

    if only == "keyservice":
        t0 = time.monotonic()
        alone = keyservice_alone(s, work, "bench-admin-" + secrets.token_hex(16),
                                 "bench-filter-" + secrets.token_hex(16))
        phase("key service alone", t0)
        info["loadavg_start"] = " ".join(f"{x:.2f}" for x in loadavg_start)
        info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        wall = time.monotonic() - t_start
        raw = {"settings": s.__dict__, "machine": info, "phases": phases, "wall_seconds": wall,
               "only": only, "keyservice_alone": alone}
        save(raw, f"{time.strftime('%Y%m%d-%H%M%S')}-{only}", latest=False)
        finish(work)
        return 0

    if only == "flood":
        return flood_only(s, work, info)

    t0 = time.monotonic()
    fx = make_fixtures(s, work)
    phase("fixtures", t0)
    rows = define_rows(fx)
    by_key = {r.key: r for r in rows}
    bench = Bench(s, fx)
    try:
        t0 = time.monotonic()
        bench.start(rows)
        phase("start and check", t0)

        t0 = time.monotonic()
        bench.rounds(rows)
        phase("rounds", t0)

        t0 = time.monotonic()
        log(f"paired windows: {s.pair_rounds} x {s.pair_seconds} s, alternating")
        paired = bench.paired(by_key, ["baseline", "noop", "probe", "kg-key-hit", "kg-key-hit-1000",
                                       "kg-key-hit-shared"]
                              + [f"kg-jwt-hit-{alg}" for alg in R.ALGORITHMS],
                              s.pair_rounds, s.pair_seconds, s.connections)
        log("single-connection latency")
        latency = bench.paired(by_key, ["baseline", "noop", "kg-key-hit"], s.latency_rounds,
                               s.latency_seconds, 1)
        # Part 7's uncached-JWT targets, in windows alternating keygate, jwt_authn and Envoy
        # alone on the same tokens: a new-token row's cost swings by a third from window to
        # window on a shared machine, more than three unpaired rounds can settle.
        new_keys = ["baseline"] + [k for alg in report.part7_uncached_targets()
                                   for k in (f"kg-jwt-new-{alg}", f"jwt-authn-{alg}")]
        log(f"new tokens, paired: {s.pair_rounds} x {s.pair_seconds} s over {len(new_keys)} rows")
        paired_new = bench.paired(by_key, new_keys, s.pair_rounds, s.pair_seconds, s.connections)
        phase("paired windows", t0)

        t0 = time.monotonic()
        log(f"forged-token flood: valid {FLOOD_ALG} hits beside one forged token, "
            f"{s.pair_rounds} x {s.pair_seconds} s")
        flooded = bench.flood()
        phase("forged-token flood", t0)

        t0 = time.monotonic()
        log(f"cache memory: warming {s.warm_keys:,} keys through the filter")
        memory = bench.memory(by_key["kg-key-hit"])
        phase("cache memory", t0)
        usage = {name: keygate_counters(e) for name, e in bench.envoys.items()
                 if name.startswith("keygate")}
        usage_statuses = usage_report_statuses(work / "keyservice.log")
        rss = {name: e.proc.status_kib("VmRSS") for name, e in bench.envoys.items()}
    finally:
        bench.stop_all()

    t0 = time.monotonic()
    alone = keyservice_alone(s, work, fx.admin_secret, fx.filter_token, (fx.alone_db, fx.hashes))
    phase("key service alone", t0)

    t0 = time.monotonic()
    log("revocation: 2 Envoys x 4 workers, keys hot on every worker, revoked one by one")
    revoked = revocation.measure(s.quick, work, fx.admin_secret, fx.filter_token)
    phase("revocation", t0)

    t0 = time.monotonic()
    log("native benchmarks (criterion)")
    natives = native(s, work)
    phase("native", t0)

    info["loadavg_start"] = " ".join(f"{x:.2f}" for x in loadavg_start)
    info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["retries"] = bench.retries
    info["quiet_waited"] = round(bench.quiet_waited)
    wall = time.monotonic() - t_start
    raw = {"settings": s.__dict__, "machine": info, "phases": phases, "wall_seconds": wall,
           "rows": [{"key": r.key, "number": r.number, "label": r.label,
                     "keyservice": r.keyservice, "expect": r.expect, "runs": r.runs}
                    for r in rows],
           "paired": paired, "paired_new_tokens": paired_new, "latency": latency, "memory": memory, "keyservice_alone": alone,
           "native_ns": natives, "keygate": usage, "usage_report_statuses": usage_statuses,
           "envoy_rss_kib": rss, "revocation": revoked, "flood": flooded}
    save(raw, time.strftime("%Y%m%d-%H%M%S"), latest=True)
    finish(work)
    return 0


def flood_only(s: Settings, work: Path, info: dict) -> int:
    """The forged-token flood alone (`bench/bench.py --only flood`): a few tokens minted, the two
    Envoys it uses, no key service (JWT hits never call it). Printed, not saved."""
    tool("mint-jwts", "--dir", str(work / "jwt"), "--count", "10", "--rsa-count", "1",
         "--issuer", R.ISSUER, "--audience", R.AUDIENCE)
    tokens = {alg: work / "jwt" / f"tokens-{alg}.txt" for alg in R.NEW_TOKEN_ALGORITHMS}
    hit_token = {alg: _first(p) for alg, p in tokens.items()}
    none = work / "none.txt"
    none.write_text("")
    fx = Fixtures(work=work, admin_secret="", filter_token="bench-filter-" + secrets.token_hex(16),
                  hit_key="", unknown_key="", cycle_keys=none, warm_1k=none, warm_rest=none,
                  warm_all=none, api_key_auth_keys=[], hashes=none,
                  jwks=json.loads((work / "jwt" / "jwks.json").read_text()), tokens=tokens,
                  hit_token=hit_token,
                  bad_token={alg: tampered(t) for alg, t in hit_token.items()},
                  alone_db=none, db=none)
    bench = Bench(s, fx)
    names = [name for name, _ in FLOOD_ENVOYS]
    try:
        base = (BENCH / "envoy" / "base.yaml").read_text()
        for name, (filters, clusters) in envoy_filters(s, fx, free_port()).items():
            if name not in names:
                continue
            admin, listen = free_port(), free_port()
            path = work / f"envoy-{name}.yaml"
            path.write_text(render(base, {
                "ADMIN_PORT": str(admin), "LISTEN_PORT": str(listen),
                "HTTP_FILTERS": json.dumps(filters), "CLUSTERS": json.dumps(clusters)}))
            envoy_validate(ENVOY_BIN, path)
            bench.envoys[name] = Envoy(name, ENVOY_BIN, path, work, admin, listen)
        for envoy in bench.envoys.values():
            envoy.wait_ready()
        flooded = bench.flood()
    finally:
        bench.stop_all()
    print(report.render_flood(flooded))
    log(f"machine: {info['cpu']}, git {info['git']}")
    finish(work)
    return 0


def save(raw: dict, stamp: str, latest: bool) -> None:
    """bench/results/<stamp>.json and .md (and latest.md, for a whole run); prints the report."""
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    (results / f"{stamp}.json").write_text(json.dumps(raw, indent=1, default=str))
    doc = render_raw(raw)
    (results / f"{stamp}.md").write_text(doc)
    if latest:
        (results / "latest.md").write_text(doc)
    print(doc)
    log(f"done in {raw['wall_seconds'] / 60:.1f} min; saved bench/results/{stamp}.md"
        + (" and latest.md" if latest else ""))


def finish(work: Path) -> None:
    if os.environ.get("BENCH_KEEP_WORK", "") in ("", "0") and "BENCH_WORK_DIR" not in os.environ:
        shutil.rmtree(work, ignore_errors=True)


def usage_report_statuses(keyservice_log: Path) -> dict[str, int]:
    """How the key service answered the filters' usage reports, by status, from its log."""
    out: dict[str, int] = {}
    for line in keyservice_log.read_text(errors="replace").splitlines():
        if 'route="/v1/usage"' in line and "status=" in line:
            status = line.split("status=", 1)[1].split()[0]
            out[status] = out.get(status, 0) + 1
    return out


def render_raw(raw: dict) -> str:
    """The report from a run's raw figures (bench/results/<timestamp>.json)."""
    s = Settings(**raw["settings"])
    if raw.get("only") == "keyservice":
        return report.render_keyservice_only(s, raw["machine"], raw["keyservice_alone"],
                                             raw["phases"], raw["wall_seconds"])
    rows = [R.Row(r["key"], r["number"], r["label"], "", None, keyservice=r["keyservice"],
                  expect=tuple(r["expect"]) if r["expect"] else None, runs=r["runs"])
            for r in raw["rows"]]
    return report.render(s, raw["machine"], rows, raw["paired"], raw["latency"], raw["memory"],
                         raw["keyservice_alone"], raw["native_ns"], raw["keygate"],
                         raw["phases"], raw["wall_seconds"], raw.get("usage_report_statuses", {}),
                         raw.get("envoy_rss_kib", {}),
                         raw.get("paired_new_tokens")) + report.render_flood(
                             raw.get("flood")) + revocation.render_section(raw.get("revocation"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        # Re-renders a saved run: bench/bench.py --render bench/results/<timestamp>.json
        print(render_raw(json.loads(Path(sys.argv[2]).read_text())))
        sys.exit(0)
    # Only the key service phase (its own fixtures; no Envoy, no .wasm needed):
    #   bench/bench.py --only keyservice
    only = None
    # Only the forged-token flood (a few tokens minted, two Envoys; needs the .wasm):
    #   bench/bench.py --only flood
    if len(sys.argv) == 3 and sys.argv[1] == "--only" and sys.argv[2] in ("keyservice", "flood"):
        only = sys.argv[2]
    elif len(sys.argv) > 1:
        print("usage: bench/bench.py [--only keyservice|flood | --render RESULTS.json]",
              file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(main(only))
    except BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)
