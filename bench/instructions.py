#!/usr/bin/env python3
"""Instructions per request on the miss path, counted with callgrind: repeatable on a busy
machine, where the CPU-time rows of compare.py --miss drift by tens of microseconds.

    python3 bench/instructions.py N VARIANT...

VARIANT is a keygate .wasm (the miss row of `make bench`: every request a new valid key, the
miss row's small caches, no worker cache), `ext_authz` (row 9), or `probe=FILE.wasm` (any other
Wasm filter, given `full:<filter token>` as its configuration). One key service and, per variant,
one Envoy (`--concurrency 1`) run under callgrind; after a warm-up of N/5 requests both counters
are zeroed, N requests go over one keep-alive connection, and the instructions each process ran
meanwhile (all threads, Envoy's JIT code included) are divided by N. Background work (ticks,
feed polls, usage reports) is counted too, so use N of 1,000 or more and compare variants of
one run; figures still move by about 2% from run to run. Envoy must be the real binary, not the
.venv wrapper script (ENVOY_REAL_BIN, else the envoy package's `_bin/envoy` under .venv).
Needs valgrind and the release key service (`cargo build --release -p keygate-keyservice`).
Envoy starts in about 2 minutes under callgrind (it compiles the .wasm).
"""
import glob
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import bench as B  # noqa: E402
import rows as R  # noqa: E402
from harness import free_port  # noqa: E402
from render import render  # noqa: E402


N = int(sys.argv[1]); variants = sys.argv[2:]
ENVOY = os.environ.get("ENVOY_REAL_BIN") or next(iter(sorted(glob.glob(
    str(BENCH.parent / ".venv/lib/python*/site-packages/envoy/_bin/envoy")))), "envoy")
s = B.Settings.from_env()
s.db_keys, s.cycle_keys, s.warm_keys, s.jwt_tokens, s.rsa_tokens = 60_000, 50_000, 10, 10, 10
work = Path(tempfile.mkdtemp(prefix="keygate-cg-"))
fx = B.make_fixtures(s, work)
keys = [l for l in Path(fx.cycle_keys).read_text().split("\n") if l]
port = free_port()
env = dict(os.environ, KEYGATE_LISTEN=f"127.0.0.1:{port}", KEYGATE_ADMIN_SECRET=fx.admin_secret,
           KEYGATE_FILTER_TOKEN=fx.filter_token, KEYGATE_LOOKUP_CACHE_TTL_SECS="3600", NO_COLOR="1",
           KEYGATE_DB_PATH=str(fx.db))
env.pop("KEYGATE_DATABASE_URL", None)
ks = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/ks.%p",
                       str(B.SERVER)],
                      env=env, stdout=open(work / "ks.log", "w"), stderr=subprocess.STDOUT)
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2); c.request("GET", "/healthz")
        if c.getresponse().status == 200: break
    except Exception: time.sleep(0.2)
base = (BENCH / "envoy" / "base.yaml").read_text()
cluster = [R.keyservice_cluster(port)]
def total(pid):
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True)
    time.sleep(1)
    files = sorted(work.glob(f"*.{pid}.*"), key=os.path.getmtime)
    txt = files[-1].read_text(errors="replace")
    m = re.search(r"^summary: (\d+)", txt, re.M) or re.search(r"^totals: (\d+)", txt, re.M)
    return int(m.group(1))
def zero(pid):
    subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True)
ki = 0
for v in variants:
    if v == "ext_authz":
        filters = [R.ext_authz_filter(port), R.ROUTER]; cycle = False
    elif v.startswith("probe="):
        filters = [R.wasm_filter("probe", Path(v[6:]), "full:" + fx.filter_token), R.ROUTER]; cycle = False
    else:
        c = R.keygate_config(fx.filter_token, fx.jwks, cache_entries=R.MISS_CACHE_ENTRIES,
                             jwt_cache_entries=R.MISS_CACHE_ENTRIES, worker_cache_entries=0)
        filters = [R.wasm_filter("keygate", Path(v).resolve(), c), R.ROUTER]; cycle = True
    admin, listen = free_port(), free_port()
    cfg = work / f"envoy-{len(list(work.glob('envoy-*')))}.yaml"
    cfg.write_text(render(base, {"ADMIN_PORT": str(admin), "LISTEN_PORT": str(listen),
                                 "HTTP_FILTERS": json.dumps(filters), "CLUSTERS": json.dumps(cluster)}))
    ep = subprocess.Popen(["valgrind", "--tool=callgrind", "--smc-check=all", f"--callgrind-out-file={work}/envoy.%p",
                           ENVOY, "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warning"],
                          stdout=open(work / f"envoy-{v.replace('/', '_')}.log", "w"), stderr=subprocess.STDOUT)
    t0 = time.time()
    for _ in range(3000):
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5); c.request("GET", "/ready")
            if c.getresponse().status == 200: break
        except Exception: time.sleep(0.5)
    print(f"{v}: envoy ready in {time.time()-t0:.0f}s", flush=True)
    conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=60)
    def send(n):
        global ki
        codes = {}
        for _ in range(n):
            key = keys[ki % len(keys)] if cycle else fx.hit_key
            ki += 1
            conn.request("GET", R.PATH, headers={"x-api-key": key})
            r = conn.getresponse(); r.read(); codes[r.status] = codes.get(r.status, 0) + 1
        return codes
    send(max(N // 5, 20)); time.sleep(2)
    zero(ep.pid); zero(ks.pid)
    t0 = time.time(); codes = send(N); el = time.time() - t0
    e = total(ep.pid); k = total(ks.pid)
    print(f"RESULT {v}: {N} requests {codes} in {el:.0f}s: envoy {e/N:,.0f} Ir/req, keyservice {k/N:,.0f} Ir/req", flush=True)
    ep.terminate(); ep.wait()
ks.terminate(); ks.wait()
print("work", work)
