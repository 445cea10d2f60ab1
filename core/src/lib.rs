//! keygate-core: the decisions keygate makes, with no I/O and no proxy-wasm.
//!
//! The filter (root crate) and the key service (`keyservice/`) both depend on this crate, so the
//! key format and the wire protocol are defined once.
//!
//! # Layout
//! - [`jwt`]: JWT verification against a JWKS and a provider policy; time is an argument.
//! - [`config`]: the filter configuration, raw JSON to compiled [`config::FilterConfig`].
//! - [`hostmap`]: the proxy-wasm serialized header map; header values stay bytes.
//! - [`credential`]: finding the credential in a request, and what to strip before forwarding.
//! - [`decision`]: [`decision::plan`] and [`decision::judge`], the filter's decisions.
//! - [`jwks`]: when to fetch a remote JWKS, shared by all workers.
//! - [`feed`]: polling the key service's revocation feed, shared by all workers, and what each
//!   worker drops from its cache.
//! - [`cache`]: the lookup cache's policy and byte format in Envoy shared data.
//! - [`lookups`]: key lookups in flight per worker, who waits on them, and their orphans.
//! - [`breaker`]: the circuit breaker in front of the key service, shared by all workers.
//! - [`usage`]: per-key request counts between usage reports.
//! - [`key`]: the API key format and [`key::KeyHash`].
//! - [`wire`]: lookup and usage messages between filter and key service.
//! - [`permission`]: [`permission::Permission`], one rule for route rules, keys and clients.
//! - [`route`]: the `routes` rule table, and the path normalization it matches against.

#![forbid(unsafe_code)]

pub mod breaker;
pub mod cache;
pub mod config;
pub mod credential;
pub mod decision;
pub mod feed;
pub mod hostmap;
pub mod jwks;
pub mod jwt;
pub mod key;
pub mod local;
pub mod lookups;
pub mod permission;
pub mod route;
pub mod usage;
pub mod wire;
