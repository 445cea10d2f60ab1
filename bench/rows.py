"""The pieces bench/bench.py builds its rows from: the HTTP filters (and the key service
cluster) each Envoy configuration puts in front of the router, keygate's configuration and route
table, and the Row type (a request sent through one Envoy, with the credential it carries).

Every row sends `GET /orders/42` with one credential header, so Envoy parses the same bytes in
each; the baseline and the no-op rows send keygate's API key too, which nothing reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ISSUER = "https://issuer.bench"
AUDIENCE = "bench-api"
PATH = "/orders/42"
#: The cache-hit rows' algorithms (a hit costs the same whatever signed the token).
ALGORITHMS = ("EdDSA", "ES256", "RS256")
#: The "new token each request" rows': every algorithm keygate verifies with a public key.
NEW_TOKEN_ALGORITHMS = ("EdDSA", "ES256", "ES384", "RS256", "RS512", "PS256")
#: Minted `--rsa-count` tokens each (RSA signing is the slow part), and slow to verify.
RSA_ALGORITHMS = ("RS256", "RS512", "PS256")
#: Small caches for the "every request new" rows: with thousands of distinct credentials cycling
#: through 1,000 entries (250 four-way buckets), a credential is always evicted before it recurs.
#: Those rows also run with no worker cache, which would keep the first credentials it saw and
#: serve them again when the cycle wraps.
MISS_CACHE_ENTRIES = 1000

ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def keyservice_cluster(port: int) -> dict:
    return {
        "name": "keygate_keyservice",
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "load_assignment": {
            "cluster_name": "keygate_keyservice",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def wasm_filter(name: str, wasm: Path, configuration: str | None = None) -> dict:
    """A Wasm filter loaded as README.md shows for keygate (V8, local file)."""
    config: dict = {
        "name": name,
        "root_id": name,
        "vm_config": {
            "vm_id": name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(wasm)}},
        },
    }
    if configuration is not None:
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": configuration,
        }
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                         "config": config},
    }


def base_rules() -> list[dict]:
    """keygate's 10-rule table (bench/base-rules.json, shared with core/benches and
    bench/hotpath); `GET /orders/42` matches the second to last."""
    return json.loads((Path(__file__).resolve().parent / "base-rules.json").read_text())


def route_rules(n: int) -> list[dict]:
    """`n` rules: generated ones first, then the 10 base rules (core/benches/core.rs builds the
    same list for the native route benchmark)."""
    shapes = [
        lambda i: {"methods": ["GET"], "path": f"/svc{i}/orders/*", "permissions": [f"svc{i}:read"]},
        lambda i: {"prefix": f"/svc{i}/admin", "permissions": [f"svc{i}:admin"]},
        lambda i: {"methods": ["POST"], "path": f"/svc{i}/items", "permissions": [f"svc{i}:write"]},
        lambda i: {"methods": ["GET"], "path": f"/orders/*/svc{i}", "permissions": [f"svc{i}:read"]},
    ]
    return [shapes[i % 4](i) for i in range(max(n - 10, 0))] + base_rules()


def keygate_config(filter_token: str, jwks: dict, *, rules: int = 10,
                   cache_entries: int | None = None, jwt_cache_entries: int | None = None,
                   cache_ttl_secs: int | None = None, usage_interval_secs: int | None = None,
                   worker_cache_entries: int | None = None) -> str:
    """keygate's configuration: defaults everywhere except what a row needs to differ."""
    jwt: dict = {"providers": [{
        "name": "bench", "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": {"inline": jwks},
    }]}
    if jwt_cache_entries is not None:
        jwt["cache_max_entries"] = jwt_cache_entries
    config: dict = {
        "key_service": {"cluster": "keygate_keyservice", "authority": "keyservice",
                        "token": filter_token},
        "routes": route_rules(rules),
        "jwt": jwt,
    }
    cache: dict = {}
    if cache_entries is not None:
        cache["max_entries"] = cache_entries
    if cache_ttl_secs is not None:
        cache["ttl_secs"] = cache_ttl_secs
    if worker_cache_entries is not None:
        cache["worker_max_entries"] = worker_cache_entries
    if cache:
        config["cache"] = cache
    if usage_interval_secs is not None:
        config["usage"] = {"report_interval_secs": usage_interval_secs}
    return json.dumps(config)


def api_key_auth_filter(keys: list[str]) -> dict:
    return {
        "name": "envoy.filters.http.api_key_auth",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
            "credentials": [{"key": k, "client": f"client-{i}"} for i, k in enumerate(keys)],
            "key_sources": [{"header": "x-api-key"}],
        },
    }


def jwt_authn_filter(jwks_json: str, cache: bool) -> dict:
    provider: dict = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": jwks_json},
    }
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1000}
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


def ext_authz_filter(keyservice_port: int) -> dict:
    """ext_authz (HTTP) asking the key service's `/v1/check` on every request, with the same
    permission requirement as keygate's rule."""
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": False,
            "allowed_headers": {"patterns": [{"exact": "x-api-key"}]},
            "http_service": {
                "server_uri": {"uri": f"http://127.0.0.1:{keyservice_port}",
                               "cluster": "keygate_keyservice", "timeout": "1s"},
                "path_prefix": "/v1/check",
                "authorization_request": {"headers_to_add": [
                    {"key": "x-keygate-required-permissions", "value": "orders:read"}]},
                "authorization_response": {"allowed_upstream_headers": {"patterns": [
                    {"prefix": "x-keygate-"}]}},
            },
        },
    }


@dataclass(frozen=True)
class Static:
    """The same credential on every request (wrk -H)."""
    header: str
    value: str


@dataclass(frozen=True)
class Cycle:
    """The next credential of a file on every request (bench/lua/cycle.lua)."""
    file: Path
    header: str
    first: str
    prefix: str = ""


@dataclass
class Row:
    key: str
    number: str
    label: str
    envoy: str
    credential: Static | Cycle
    #: A credential of the right shape that must be refused (unknown key, bad signature).
    bad: str | None = None
    #: No auth filter: every request is expected to pass (baseline, no-op).
    open: bool = False
    keyservice: bool = False
    #: keygate counter (name after `keygate.`) that must rise by at least this much per request,
    #: proving the row takes the path it claims (a hit, a callout, a verification).
    expect: tuple[str, float] | None = None
    #: Next line of a Cycle file to send.
    offset: int = 0
    runs: list = field(default_factory=list)

    def header_value(self, value: str) -> str:
        prefix = self.credential.prefix if isinstance(self.credential, Cycle) else ""
        return prefix + value
