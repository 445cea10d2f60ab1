//! keygate: a proxy-wasm filter that checks API keys and JWTs at the edge.
//!
//! This crate is glue only: every decision lives in `keygate-core`, which has no proxy-wasm
//! dependency and is tested natively. Each callback here reads what the host has, asks the core,
//! and carries out the answer.
//!
//! # Layout
//! - `lib.rs`: the entry point: keygate's logger, the panic hook, the root context.
//! - [`root`]: `FilterRoot` — configure, tick (orphaned lookups, JWKS, revocation feed, usage
//!   reports).
//! - [`http`]: `RequestFilter` — one request: plan, cache, lookup or JWT, verdict.
//! - [`lookup`]: sending a key lookup past the circuit breaker, and finishing its waiters.
//! - [`jwt`]: per-worker JWKS copies, their background fetch, requests parked for keys.
//! - [`feed`]: the revocation feed: one poller per Envoy, every worker drops what changed.
//! - [`act`]: carrying out a verdict on a stream.
//! - [`worker`]: state a worker's VM shares between its contexts; the shared-data cache access.
//! - [`shared`]: the one compare-and-swap loop over shared data.
//! - [`metrics`]: Envoy counters.
//! - [`host`]: the only module that calls the host (the proxy-wasm ABI, and the SDK for HTTP
//!   calls); every call is fallible, and so is logging.
//!
//! Modules depend downward in that list, never upward: `root` → `http` → `lookup`/`jwt`/`feed` →
//! `act` → `worker` → `shared` → `host`.

pub mod act;
pub mod feed;
pub mod host;
pub mod http;
pub mod jwt;
pub mod lookup;
pub mod metrics;
pub mod root;
pub mod shared;
pub mod worker;

use std::fmt::Write as _;

proxy_wasm::main! {{
    // Not `proxy_wasm::set_log_level`: the SDK's logger and panic hook unwrap the status of
    // `proxy_log`, so a failed log line would itself panic.
    host::install_logger();
    // A hook that cannot itself fail: the message is built with `write!` (a failing `Display`
    // truncates it; `format!` would panic) and a failed log call is dropped.
    std::panic::set_hook(Box::new(|info| {
        let mut message = String::from("panic, the VM is now unusable: ");
        let _ = write!(message, "{info}");
        host::log_critical(&message);
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(root::FilterRoot::new(context_id)));
}}
