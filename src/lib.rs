//! keygate: a proxy-wasm filter that checks API keys and JWTs at the edge.
//!
//! This crate is glue only: every decision lives in `keygate-core`, which has no proxy-wasm
//! dependency and is tested natively. Each callback here reads what the host has, asks the core,
//! and carries out the answer.
//!
//! # Layout
//! - `lib.rs`: the entry point and the panic hook.
//! - [`root`]: `FilterRoot` — configure, tick (orphaned lookups, JWKS, usage reports).
//! - [`http`]: `RequestFilter` — one request: plan, cache, lookup or JWT, verdict.
//! - [`lookup`]: sending a key lookup past the circuit breaker, and finishing its waiters.
//! - [`jwt`]: per-worker JWKS copies, their background fetch, requests parked for keys.
//! - [`act`]: carrying out a verdict on a stream.
//! - [`worker`]: state a worker's VM shares between its contexts; the shared-data cache access.
//! - [`shared`]: the one compare-and-swap loop over shared data.
//! - [`metrics`]: Envoy counters.
//! - [`host`]: the only module that calls the host; every call is fallible.
//!
//! Modules depend downward in that list, never upward: `root` → `http` → `lookup`/`jwt` →
//! `act` → `worker` → `shared` → `host`.

pub mod act;
pub mod host;
pub mod http;
pub mod jwt;
pub mod lookup;
pub mod metrics;
pub mod root;
pub mod shared;
pub mod worker;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // Replaces the SDK's hook (which unwraps the log call) with one that cannot itself fail.
    std::panic::set_hook(Box::new(|info| {
        host::log_critical(&format!("panic, the VM is now unusable: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(root::FilterRoot::new(context_id)));
}}
