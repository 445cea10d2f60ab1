#!/usr/bin/env python3
"""Compares builds of keygate on the hit paths, for optimisation work: `make bench` answers "how
does keygate compare with Envoy's own filters", this answers "did my change make the hit path
cheaper", in a few minutes.

    python3 bench/compare.py [--rounds N] [--seconds S] [--probe GROUPS ...] [--miss]
                             A.wasm[@JSON] [B.wasm[@JSON] ...]

Each .wasm gets its own Envoy with keygate's bench configuration (10 rules, an inline EdDSA
JWKS), beside Envoy alone and the no-op Wasm filter; `@JSON` merges members into that build's
configuration, objects member by member (`keygate.wasm@{"key_service":{"unbatched_lookups":0}}`
keeps the bench's cluster and token), so one build can also be compared with itself under two
settings. `--miss` adds, per build, the miss path of
`make bench` row 4 (every request a new valid key, each a callout) and Envoy's ext_authz asking
the key service on every request (row 9). `--rotate N` adds, per build, hits cycling over N
keys, each first looked up once through that build (so with N above the worker cache's size a
hit reads shared data and replaces a worker-cache entry). `--new-tokens ALGS` adds, per build and
algorithm (EdDSA,ES256,...), the new-token-each-request row of `make bench` row 6, beside Envoy's
jwt_authn without cache on the same tokens (row 8). `--probe` adds the no-op filter making only
the listed host-call groups (bench/noop-filter: headers, header, clock, shared, remove, set,
metrics), to price host calls one group at a time. Every row is checked as in `make bench` (no
credential refused, the right one passes, keygate's counters show the named path). Then short
windows alternate over all rows (order reversed every round) and the report gives, per row, the
median over rounds of its difference to the baseline in the same round: Envoy CPU µs per
request, and the req/s ratio. Same CPU layout as bench/run.sh (Envoy on CPU 0, wrk on CPU 1).

Needs what `make bench` builds (run it, or `make wasm` and the bench crates in release, once).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench as B  # noqa: E402
import rows as R  # noqa: E402


def merged(base: dict, extra: dict) -> dict:
    """`base` with `extra`'s members: an object merged into an object member by member,
    anything else replacing what `base` has."""
    out = dict(base)
    for name, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(name), dict):
            out[name] = merged(out[name], value)
        else:
            out[name] = value
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wasm", nargs="+", help="keygate .wasm builds to compare, each with an "
                    "optional @JSON of configuration members")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--probe", action="append", default=[],
                    help="host-call groups for one more no-op row, e.g. headers,set")
    ap.add_argument("--no-jwt", action="store_true", help="API key rows only")
    ap.add_argument("--miss", action="store_true", help="add the miss path and ext_authz rows")
    ap.add_argument("--new-tokens", default="",
                    help="comma-separated algorithms for new-token rows, e.g. EdDSA,ES256,RS256")
    ap.add_argument("--rotate", type=int, default=0,
                    help="add hits cycling over this many keys (at most 50,000), warmed first")
    args = ap.parse_args()
    builds: list[tuple[Path, dict]] = []
    for spec in args.wasm:
        path, _, extra = spec.partition("@")
        builds.append((Path(path), json.loads(extra) if extra else {}))

    s = B.Settings.from_env()
    new_tokens = [a for a in args.new_tokens.split(",") if a]
    unknown = sorted(set(new_tokens) - set(R.NEW_TOKEN_ALGORITHMS))
    if unknown:
        ap.error(f"--new-tokens: unknown {unknown}; one of {R.NEW_TOKEN_ALGORITHMS}")
    # Tokens enough for every new-token row to outlast the verified-token cache (as in make bench).
    tokens = 10_000 if new_tokens else 10
    s.db_keys, s.cycle_keys, s.warm_keys, s.jwt_tokens, s.rsa_tokens = (
        60_000, 50_000, 1100, tokens, tokens)
    work = Path(tempfile.mkdtemp(prefix="keygate-compare-"))
    fx = B.make_fixtures(s, work)

    names = [f"{i}:{w.name}{'@' if extra else ''}" for i, (w, extra) in enumerate(builds)]
    rotating = B.first_lines(fx.cycle_keys, work / "keys-rotate.txt", 0, max(args.rotate, 1))
    key = R.Static("x-api-key", fx.hit_key)
    token = R.Static("authorization", "Bearer " + fx.hit_token["EdDSA"])
    rows = [R.Row("baseline", "1", "Envoy alone", "baseline", key, open=True),
            R.Row("noop", "2", "no-op Wasm", "noop", key, open=True)]
    for groups in args.probe:
        rows.append(R.Row(f"probe:{groups}", "2b", f"no-op + host calls {groups}",
                          f"probe:{groups}", key, open=True))
    for name in names:
        rows.append(R.Row(f"key {name}", "3", f"key hit {name}", name, key, bad=fx.unknown_key,
                          expect=("cache_hit", 0.99)))
        if not args.no_jwt:
            rows.append(R.Row(f"jwt {name}", "5", f"JWT EdDSA hit {name}", name, token,
                              bad="Bearer " + fx.bad_token["EdDSA"],
                              expect=("jwt_cache_hit", 0.99)))
        if args.rotate:
            rows.append(R.Row(f"rotate {name}", "3r", f"key hit over {args.rotate:,} keys {name}",
                              name, R.Cycle(rotating, "x-api-key", B._first(rotating)),
                              bad=fx.unknown_key, expect=("cache_hit", 0.97)))
        if args.miss:
            rows.append(R.Row(f"miss {name}", "4", f"key miss (callout) {name}", f"miss {name}",
                              R.Cycle(fx.cycle_keys, "x-api-key", B._first(fx.cycle_keys)),
                              bad=fx.unknown_key, keyservice=True, expect=("looked_up", 0.97)))
        for alg in new_tokens:
            rows.append(R.Row(f"new-{alg} {name}", "6", f"JWT {alg} new token {name}",
                              f"miss {name}",
                              R.Cycle(fx.tokens[alg], "authorization", fx.hit_token[alg], "Bearer "),
                              bad="Bearer " + fx.bad_token[alg], expect=("jwt_verified", 0.97)))
    for alg in new_tokens:
        rows.append(R.Row(f"jwt_authn-{alg}", "8", f"jwt_authn {alg} new token, no cache",
                          "jwt_authn",
                          R.Cycle(fx.tokens[alg], "authorization", fx.hit_token[alg], "Bearer "),
                          bad="Bearer " + fx.bad_token[alg]))
    if args.miss:
        rows.append(R.Row("ext_authz", "9", "ext_authz -> key service", "ext_authz", key,
                          bad=fx.unknown_key, keyservice=True))

    def filters(ks_port: int) -> dict:
        ks = [R.keyservice_cluster(ks_port)]
        out = {"baseline": ([R.ROUTER], []),
               "noop": ([R.wasm_filter("noop", B.NOOP_WASM), R.ROUTER], [])}
        for groups in args.probe:
            out[f"probe:{groups}"] = (
                [R.wasm_filter("probe", B.NOOP_WASM, f"hostcalls:{groups}"), R.ROUTER], [])
        for name, (wasm, extra) in zip(names, builds):
            def config(**kw) -> str:
                c = json.loads(R.keygate_config(fx.filter_token, fx.jwks, **kw))
                return json.dumps(merged(c, extra))
            out[name] = ([R.wasm_filter("keygate", wasm.resolve(), config()), R.ROUTER], ks)
            if args.miss or new_tokens:
                small = config(cache_entries=R.MISS_CACHE_ENTRIES,
                               jwt_cache_entries=R.MISS_CACHE_ENTRIES, worker_cache_entries=0)
                out[f"miss {name}"] = (
                    [R.wasm_filter("keygate", wasm.resolve(), small), R.ROUTER], ks)
        if args.miss:
            out["ext_authz"] = ([R.ext_authz_filter(ks_port), R.ROUTER], ks)
        if new_tokens:
            out["jwt_authn"] = ([R.jwt_authn_filter(json.dumps(fx.jwks), cache=False), R.ROUTER], [])
        return out

    B.envoy_filters = lambda _s, _fx, ks_port: filters(ks_port)
    bench = B.Bench(s, fx)
    try:
        bench.start(rows)
        for row in rows:
            if row.key.startswith("rotate "):
                B.log(f"{row.label}: looking up {args.rotate:,} keys once")
                envoy = bench.envoys[row.envoy]
                seen = {"value": -1, "at": time.monotonic()}

                def warmed() -> bool:
                    # Keys the row check already looked up need no callout: done once the
                    # callouts stop rising.
                    value = B.keygate_counters(envoy).get("callout", 0)
                    if value != seen["value"]:
                        seen.update(value=value, at=time.monotonic())
                    return time.monotonic() - seen["at"] > 2

                bench.send(row, 600, 16, until=warmed, cycle_file=rotating, limit=args.rotate)
                row.offset = 0
        for row in rows:  # warm every VM and connection pool once
            bench.measure(row, 1, args.connections)
        keys = [r.key for r in rows]
        by_key = {r.key: r for r in rows}
        B.log(f"{args.rounds} rounds of {args.seconds} s windows over {len(rows)} rows")
        paired = bench.paired(by_key, keys, args.rounds, args.seconds, args.connections)
    finally:
        bench.stop_all()

    base = paired["baseline"]
    print(f"\n{args.rounds} rounds x {args.seconds} s, {args.connections} connections; "
          "medians of per-round differences to Envoy alone\n")
    print("| row | Δ Envoy CPU µs/req | req/s × baseline | req/s | key service µs/req |")
    print("|---|---:|---:|---:|---:|")
    for k in keys:
        runs = paired[k]
        d_cpu = statistics.median(m["cpu_us"] - b["cpu_us"] for m, b in zip(runs, base))
        ratio = statistics.median(m["rps"] / b["rps"] for m, b in zip(runs, base))
        rps = statistics.median(m["rps"] for m in runs)
        ks = [m["ks_us"] for m in runs if m.get("ks_us") is not None]
        ks_us = f"{statistics.median(ks):.1f}" if ks else ""
        print(f"| {by_key[k].label} | {d_cpu:+.2f} | {ratio:.3f} | {rps:,.0f} | {ks_us} |")
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for kind in ("key", "jwt", "miss", "rotate", *(f"new-{a}" for a in new_tokens)):
                if f"{kind} {a}" not in paired or f"{kind} {b}" not in paired:
                    continue
                d = statistics.median(y["cpu_us"] - x["cpu_us"] for x, y in
                                      zip(paired[f"{kind} {a}"], paired[f"{kind} {b}"]))
                print(f"\n{kind}, {b} minus {a}: {d:+.2f} µs Envoy CPU/req (median of pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
